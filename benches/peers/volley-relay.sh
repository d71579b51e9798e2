# shellcheck shell=bash disable=SC2034,SC2153  # variables shared with peers.sh, which sources this file
# Sourced by benches/peers.sh: Volley as a durable relay, the row set (e) of issue 18. The same
# smtp-source command as the Postfix relay rows (b) injects N messages into `volley serve`'s
# submission listener (from a relay network, as smtp-source speaks neither AUTH nor TLS); each
# message is synced in the spool before its 250, then delivered to a fresh smtp-sink. The time
# is from the start of the injection until smtp-sink has counted N, as for (b).
#
# Uses from peers.sh: N, SOURCE_SESSIONS, WORK, VOLLEY, SMTP_SOURCE, CLK_TCK, SINK_PORT, die,
# free_port, start_sink, stop_sink, timed, rate, cpu_pct, ROWS, SMTP_SOURCE_RATE, wait_sink_counted
# (postfix-relay.sh), relay_queue_dir (postfix-relay.sh: the spool goes where Postfix's queue
# goes for the same variant).

VRELAY_NOTES=()
declare -A VRELAY_RATE=()
VRELAY_PID=""

# vrelay_cpu PID: CPU seconds of the process so far (utime + stime).
vrelay_cpu() {
    local stat
    read -r -a stat <"/proc/$1/stat"
    echo "scale=2; (${stat[13]} + ${stat[14]}) / $CLK_TCK" | bc
}

vrelay_stop() {
    local tries=0
    if [[ -n $VRELAY_PID ]]; then
        kill -TERM "$VRELAY_PID" 2>/dev/null || true
        while kill -0 "$VRELAY_PID" 2>/dev/null; do
            ((++tries < 300)) || { kill -9 "$VRELAY_PID" 2>/dev/null || true; break; }
            sleep 0.1
        done
        wait "$VRELAY_PID" 2>/dev/null || true
        VRELAY_PID=""
    fi
}

# run_volley_relay VARIANT: one row for VARIANT ("disk" or "tmpfs": where the spool lives).
run_volley_relay() {
    local variant=$1 name=vrelay-$1 dir=$WORK/vrelay-$1 t0 t1 fstype
    local i_real i_user i_sys seconds cpu_volley api_port sub_port tries=0 delivered
    mkdir -p "$dir"
    relay_queue_dir "$variant" # sets RELAY_QUEUE (and RELAY_MOUNT): the state directory
    local state=$RELAY_QUEUE
    fstype=$(findmnt -n -o FSTYPE -T "$state" 2>/dev/null || stat -f -c %T "$state")
    start_sink "$name"
    api_port=$(free_port)
    sub_port=$(free_port)
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
    sed -e "s/@PORT@/$SINK_PORT/" -e "s/@TLS@/opportunistic/" "$PEERS/volley.toml.in" |
        sed -e "s|^state_dir = .*|state_dir = \"$state\"|" >"$dir/volley.toml"
    cat >>"$dir/volley.toml" <<EOF

[api]
listen = "127.0.0.1:$api_port"
token = "bench-token-0123456789abcdef"

[submission]
listen = "127.0.0.1:$sub_port"
tls_cert = "cert.pem"
tls_key = "key.pem"
hostname = "localhost"
relay_networks = ["127.0.0.0/8"]
relay_user = "bench"
max_connections = 1024
max_connections_per_ip = 1024
EOF
    echo "bench-password-0123456789" | "$VOLLEY" user add bench --from-domain sender.test --password-stdin \
        --config "$dir/volley.toml" >/dev/null || die "volley user add failed"
    "$VOLLEY" serve --config "$dir/volley.toml" >"$dir/serve.out" 2>"$dir/serve.err" &
    VRELAY_PID=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$sub_port") 2>/dev/null; do
        ((++tries < 500)) || die "volley serve's submission listener does not accept on 127.0.0.1:$sub_port: $(tail -n 5 "$dir/serve.err")"
        sleep 0.02
    done
    local cmd=("$SMTP_SOURCE" -d -s "$SOURCE_SESSIONS" -m "$N" -N -l 4096 -f bounces@sender.test -t rcpt@dest.test
        "127.0.0.1:$sub_port")
    echo "(e) volley relay, spool on $variant ($fstype, $state): ${cmd[*]}"
    t0=$(date +%s.%N)
    timed "$name-source" "${cmd[@]}"
    read -r i_real i_user i_sys <"$WORK/$name-source.time"
    wait_sink_counted "$name" || die "volley relay ($variant) stalled at $STALLED of $N: $(tail -n 5 "$dir/serve.err")"
    t1=$(date +%s.%N)
    seconds=$(echo "scale=3; ($t1 - $t0) / 1" | bc)
    cpu_volley=$(vrelay_cpu "$VRELAY_PID")
    vrelay_stop
    stop_sink "$name"
    delivered=$(cat "$state"/*/accounting.jsonl 2>/dev/null | grep -c '"outcome":"delivered"' || true)
    if [[ -n $RELAY_MOUNT ]]; then umount "$RELAY_MOUNT" 2>/dev/null || umount -l "$RELAY_MOUNT" || true; RELAY_MOUNT=""; fi
    rm -rf "$state"
    RELAY_QUEUE=""
    [[ $SINK_COUNT == "$N" ]] || die "smtp-sink counted $SINK_COUNT messages from the volley relay ($variant), expected $N"
    [[ $delivered == "$N" ]] || die "volley relay ($variant): $delivered delivered in the accounting logs, expected $N"
    local wall_rate ratio client_cpu
    wall_rate=$(rate "$N" "$seconds")
    VRELAY_RATE[$variant]=$wall_rate
    ratio=$(echo "scale=2; $wall_rate / $SMTP_SOURCE_RATE" | bc)
    client_cpu=$(echo "$i_user + $i_sys + $cpu_volley" | bc)
    ROWS+=("| volley relay (submission -> spool -> send), spool on $variant ($fstype) | — | $wall_rate | ${ratio/#./0.} | $seconds | $SINK_COUNT | $SINK_SESSIONS | $(cpu_pct "$seconds" "$client_cpu" 0) % | $(cpu_pct "$seconds" "$SINK_CPU" 0) % |")
    VRELAY_NOTES+=("- volley relay, spool on $variant ($fstype): injection by smtp-source took $i_real s ($(rate "$N" "$i_real") msg/s acknowledged, each synced before its 250), delivery to smtp-sink finished $(echo "scale=3; $seconds - $i_real" | bc | sed 's/^\./0./') s later; $delivered delivered in the accounting logs; volley CPU $cpu_volley s + smtp-source $(echo "$i_user + $i_sys" | bc | sed 's/^\./0./') s")
    echo "    $N messages relayed in $seconds s: $wall_rate msg/s (injection $i_real s; smtp-sink counted $SINK_COUNT in $SINK_SESSIONS sessions)"
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$dir"; fi
}
