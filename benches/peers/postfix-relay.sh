# shellcheck shell=bash disable=SC2034,SC2153  # variables shared with peers.sh, which sources this file
# Sourced by benches/peers.sh: Postfix as a relay, the peer "(b)" of issue 6. A private Postfix
# instance (its own config directory, queue, data directory and log, generated from
# postfix-relay-main.cf.in and postfix-relay-master.cf.in) accepts the same N messages from
# smtp-source on 127.0.0.1:<free port> and relays them to a fresh smtp-sink; the time is from the
# start of the injection until smtp-sink has counted N messages.
#
# Uses from peers.sh: N, SOURCE_SESSIONS, WORK, PEERS, SMTP_SOURCE, CLK_TCK, SINK_PORT, SINK_PID,
# die, free_port, start_sink, stop_sink, timed, rate, cpu_pct, ROWS, SMTP_SOURCE_RATE.
# Never touches the system instance (/etc/postfix, /var/spool/postfix); needs root (Postfix's
# master starts as root and drops to mail_owner = postfix).

RELAY_CONF=""     # config directory of the running instance, "" when none runs
RELAY_QUEUE=""    # its queue directory (removed on stop)
RELAY_MOUNT=""    # a tmpfs mounted for the queue (unmounted on stop)
RELAY_NOTES=()    # lines for RESULTS.md under the table
RELAY_VERSION=""  # Postfix's mail_version
declare -A RELAY_RATE=()

# relay_queue_dir VARIANT: makes the queue directory of the variant; sets RELAY_QUEUE (and
# RELAY_MOUNT when a tmpfs was mounted for it). "disk": under /var/tmp (on disk on Debian, unlike
# /tmp, which may be a tmpfs); "tmpfs": a fresh tmpfs mounted under /var/tmp, or a directory in
# /dev/shm when mounting is not allowed (containers).
relay_queue_dir() {
    local variant=$1
    RELAY_QUEUE=$(mktemp -d "/var/tmp/volley-relay-$variant.XXXXXX")
    chmod 755 "$RELAY_QUEUE"
    if [[ $variant == tmpfs ]]; then
        if mount -t tmpfs -o size=4g,mode=755 volley-relay "$RELAY_QUEUE" 2>/dev/null; then
            RELAY_MOUNT=$RELAY_QUEUE
        else
            rmdir "$RELAY_QUEUE"
            [[ $(stat -f -c %T /dev/shm) == tmpfs ]] || die "cannot mount a tmpfs and /dev/shm is not one"
            RELAY_QUEUE=$(mktemp -d /dev/shm/volley-relay-queue.XXXXXX)
            chmod 755 "$RELAY_QUEUE"
        fi
    fi
}

# relay_start VARIANT SINK_PORT: writes the config into $WORK/relay-VARIANT/conf, checks it with
# `postfix check`, starts the instance and waits until its smtpd accepts; sets RELAY_PORT.
relay_start() {
    local variant=$1 sink_port=$2 dir=$WORK/relay-$1 tries=0 file
    relay_queue_dir "$variant"
    RELAY_PORT=$(free_port)
    mkdir -p "$dir/conf" "$dir/data"
    chown postfix: "$dir/data"
    : >"$dir/maillog"
    for file in main master; do
        sed -e "s|@SMTPD_PORT@|$RELAY_PORT|g" -e "s|@SINK_PORT@|$sink_port|g" \
            -e "s|@QUEUE_DIR@|$RELAY_QUEUE|g" -e "s|@DATA_DIR@|$dir/data|g" \
            -e "s|@LOG_FILE@|$dir/maillog|g" -e "s|@RELAY_DIR@|$dir|g" \
            "$PEERS/postfix-relay-$file.cf.in" >"$dir/conf/$file.cf"
    done
    RELAY_CONF=$dir/conf
    RELAY_VERSION=$(postconf -c "$RELAY_CONF" -h mail_version)
    postfix -c "$RELAY_CONF" check >"$dir/check.out" 2>&1 || die "postfix check failed: $(tail -n 5 "$dir/check.out")"
    postfix -c "$RELAY_CONF" start >"$dir/start.out" 2>&1 || die "postfix start failed: $(tail -n 5 "$dir/maillog")"
    until (exec 3<>"/dev/tcp/127.0.0.1/$RELAY_PORT") 2>/dev/null; do
        ((++tries < 250)) || die "the Postfix relay does not accept on 127.0.0.1:$RELAY_PORT: $(tail -n 5 "$dir/maillog")"
        sleep 0.02
    done
}

# relay_cpu: CPU seconds of the instance so far: master, its live children, and the children it
# has reaped (/proc/PID/stat fields 14-17: utime, stime, cutime, cstime).
relay_cpu() {
    local master ticks=0 pid stat
    master=$(tr -d ' ' <"$RELAY_QUEUE/pid/master.pid")
    read -r -a stat <"/proc/$master/stat"
    ticks=$((stat[13] + stat[14] + stat[15] + stat[16]))
    for pid in $(pgrep -P "$master"); do
        read -r -a stat 2>/dev/null <"/proc/$pid/stat" || continue
        ticks=$((ticks + stat[13] + stat[14]))
    done
    echo "scale=2; $ticks / $CLK_TCK" | bc
}

# relay_stop: stops the running instance (if any), waits for its master to exit, unmounts the
# tmpfs and removes the queue directory. Safe to call twice; called from the EXIT trap.
relay_stop() {
    local master="" tries=0
    if [[ -n $RELAY_CONF ]]; then
        [[ -f $RELAY_QUEUE/pid/master.pid ]] && master=$(tr -d ' ' <"$RELAY_QUEUE/pid/master.pid")
        postfix -c "$RELAY_CONF" stop >/dev/null 2>&1 || true
        while [[ -n $master ]] && kill -0 "$master" 2>/dev/null; do
            ((++tries < 100)) || { kill -9 "$master" 2>/dev/null || true; break; }
            sleep 0.1
        done
        RELAY_CONF=""
    fi
    if [[ -n $RELAY_MOUNT ]]; then
        tries=0
        until umount "$RELAY_MOUNT" 2>/dev/null; do
            ((++tries < 50)) || { umount -l "$RELAY_MOUNT" || true; break; }
            sleep 0.1 # the daemons notice the master is gone and exit
        done
        RELAY_MOUNT=""
    fi
    if [[ -n $RELAY_QUEUE ]]; then rm -rf "$RELAY_QUEUE"; RELAY_QUEUE=""; fi
}

# sink_counted NAME: the number of messages smtp-sink has counted so far (its -c counter line).
sink_counted() {
    local count
    count=$(tail -c 200 "$WORK/$1.sink" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
    echo "${count:-0}"
}

# wait_sink_counted NAME: waits until smtp-sink NAME has counted N messages; fails (STALLED set
# to the count) after 120 s without progress.
wait_sink_counted() {
    local last=0 idle=0 count
    while count=$(sink_counted "$1") && ((count < N)); do
        if ((count == last)); then
            ((++idle < 1200)) || { STALLED=$count; return 1; }
        else
            last=$count idle=0
        fi
        sleep 0.1
    done
}

# run_postfix_relay VARIANT: one row of the table for VARIANT ("disk" or "tmpfs").
run_postfix_relay() {
    local variant=$1 name=relay-$1 dir=$WORK/relay-$1 t0 t1 fstype
    local i_real i_user i_sys seconds cpu_relay queue_state sent deferred bounced
    start_sink "$name"
    relay_start "$variant" "$SINK_PORT"
    fstype=$(findmnt -n -o FSTYPE -T "$RELAY_QUEUE" 2>/dev/null || stat -f -c %T "$RELAY_QUEUE")
    # -N: a distinct recipient per message (it prepends a sequence number to the local part;
    # smtp-source cannot vary the domain). -d, -s, -m, -l, -f as in (a).
    local cmd=("$SMTP_SOURCE" -d -s "$SOURCE_SESSIONS" -m "$N" -N -l 4096 -f bounces@sender.test -t rcpt@dest.test
        "127.0.0.1:$RELAY_PORT")
    echo "(b) Postfix relay, queue on $variant ($fstype, $RELAY_QUEUE): ${cmd[*]}"
    t0=$(date +%s.%N)
    timed "$name-source" "${cmd[@]}"
    read -r i_real i_user i_sys <"$WORK/$name-source.time"
    wait_sink_counted "$name" || die "Postfix relay ($variant) stalled at $STALLED of $N; queue: $(postqueue -c "$RELAY_CONF" -p | tail -n 3)"
    t1=$(date +%s.%N)
    seconds=$(echo "scale=3; ($t1 - $t0) / 1" | bc)
    cpu_relay=$(relay_cpu)
    queue_state=$(postqueue -c "$RELAY_CONF" -p 2>&1 | tail -n 1)
    # Stop the relay first: its cached connections to the sink close, so the sink counts them.
    relay_stop
    stop_sink "$name"
    [[ $SINK_COUNT == "$N" ]] || die "smtp-sink counted $SINK_COUNT messages from the Postfix relay ($variant), expected $N"
    [[ $queue_state == "Mail queue is empty" ]] || die "Postfix relay ($variant) queue not empty after delivery: $queue_state"
    sent=$(grep -c 'status=sent' "$dir/maillog" || true)
    deferred=$(grep -c 'status=deferred' "$dir/maillog" || true)
    bounced=$(grep -c 'status=bounced' "$dir/maillog" || true)
    [[ $sent == "$N" && $deferred == 0 && $bounced == 0 ]] \
        || die "Postfix relay ($variant) log: sent=$sent deferred=$deferred bounced=$bounced, expected sent=$N only; see $dir/maillog"
    local wall_rate ratio client_cpu
    wall_rate=$(rate "$N" "$seconds")
    RELAY_RATE[$variant]=$wall_rate
    ratio=$(echo "scale=2; $wall_rate / $SMTP_SOURCE_RATE" | bc)
    client_cpu=$(echo "$i_user + $i_sys + $cpu_relay" | bc)
    ROWS+=("| Postfix relay, queue on $variant ($fstype) | — | $wall_rate | ${ratio/#./0.} | $seconds | $SINK_COUNT | $SINK_SESSIONS | $(cpu_pct "$seconds" "$client_cpu" 0) % | $(cpu_pct "$seconds" "$SINK_CPU" 0) % |")
    RELAY_NOTES+=("- Postfix relay, queue on $variant ($fstype): injection by smtp-source took $i_real s ($(rate "$N" "$i_real") msg/s accepted), delivery to smtp-sink finished $(echo "scale=3; $seconds - $i_real" | bc | sed 's/^\./0./') s later; maillog: $sent sent, $deferred deferred, $bounced bounced; queue empty at the end; Postfix CPU $cpu_relay s + smtp-source $(echo "$i_user + $i_sys" | bc | sed 's/^\./0./') s")
    echo "    $N messages relayed in $seconds s: $wall_rate msg/s (injection $i_real s; smtp-sink counted $SINK_COUNT in $SINK_SESSIONS sessions)"
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$dir"; fi
}
