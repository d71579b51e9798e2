#!/usr/bin/env bash
# Peer comparison: Postfix's smtp-source and `volley send` each deliver N messages of ~4 KB into
# a fresh Postfix smtp-sink with the same flags, in one run, on this machine; the result is
# appended to benches/RESULTS.md. Only the ratio between rows of one run means anything: the
# absolute figures move with whatever else the machine is doing.
#
#   N=100000 benches/peers.sh            # default N=100000
#   SOURCE_SESSIONS=16 VOLLEY_TLS="opportunistic disabled" benches/peers.sh
#   VOLLEY_DKIM="rsa ed25519" benches/peers.sh   # extra volley rows with DKIM signing on
#   POSTFIX_RELAY="" benches/peers.sh            # skip the Postfix relay rows (the slow ones)
#
# Rows: (a) smtp-source -> smtp-sink; (b) smtp-source -> a private Postfix relay -> smtp-sink,
# queue on disk and queue in a tmpfs (benches/peers/postfix-relay.sh); (c) volley send ->
# smtp-sink. Every socket is on 127.0.0.0/8: smtp-sink and the relay listen on 127.0.0.1, volley
# sends from 127.0.0.2-5. Installs postfix (for smtp-sink/smtp-source and the relay), jq and bc
# when missing; never stops or reconfigures the system's Postfix.
#
# Row set (d), RECEIVERS=1 (default; RECEIVERS=0 skips it): issue 15's receiver mix
# (benches/scenarios/receivers.toml: providers with per-client caps and 421s, greylisting, 50 ms,
# 10,000 tail domains) delivered by volley and by a private Postfix relay into the same sinks
# (`volley-bench run --peer postfix`), against the ideal from the receivers' limits. Needs root.
set -euo pipefail

N=${N:-100000}
# smtp-source parallel sessions: 8-16 were its fastest on this 2-core machine (1, 2, 4, 8, 16,
# 32, 64 tried with -d); more sessions only add contention with smtp-sink for the CPUs.
SOURCE_SESSIONS=${SOURCE_SESSIONS:-16}
# One volley row per TLS policy. smtp-sink never offers STARTTLS, so both send in clear;
# `opportunistic` is the shipped default, `disabled` skips even looking for STARTTLS.
VOLLEY_TLS=${VOLLEY_TLS:-"opportunistic disabled"}
# Extra volley rows with every message DKIM-signed (a key made by `volley dkim keygen`), with the
# first TLS policy: "rsa" (RSA-2048), "ed25519", or both.
VOLLEY_DKIM=${VOLLEY_DKIM:-""}
# Postfix-as-a-relay rows, one per queue location: "disk" (/var/tmp), "tmpfs"; empty to skip.
# Needs root (Postfix's master starts as root).
POSTFIX_RELAY=${POSTFIX_RELAY-"disk tmpfs"}
# Issue 15's receiver mix, volley vs a private Postfix relay vs the ideal: 1 to run, 0 to skip.
RECEIVERS=${RECEIVERS:-1}
# Row set (e), issue 18: the same smtp-source injection into `volley serve`'s submission
# listener (spool synced before every 250) -> smtp-sink, one row per spool location: "disk"
# (/var/tmp), "tmpfs"; empty to skip. Compared with the Postfix relay rows of the same location.
VOLLEY_RELAY=${VOLLEY_RELAY-"disk"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/benches/peers
RESULTS=$ROOT/benches/RESULTS.md
VOLLEY=$ROOT/target/release/volley
SMTP_SINK=/usr/sbin/smtp-sink
SMTP_SOURCE=/usr/sbin/smtp-source
CLK_TCK=$(getconf CLK_TCK)

die() { echo "peers.sh: $*" >&2; exit 1; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
for v in $POSTFIX_RELAY; do [[ $v == disk || $v == tmpfs ]] || die "POSTFIX_RELAY: unknown variant '$v' (disk, tmpfs)"; done
for v in $VOLLEY_RELAY; do [[ $v == disk || $v == tmpfs ]] || die "VOLLEY_RELAY: unknown variant '$v' (disk, tmpfs)"; done
[[ $RECEIVERS == 0 || $RECEIVERS == 1 ]] || die "RECEIVERS must be 0 or 1 (got '$RECEIVERS')"
[[ $RECEIVERS == 0 || $(id -u) == 0 ]] || die "the receivers rows need root (a private Postfix relay); run as root or set RECEIVERS=0"
[[ -z $POSTFIX_RELAY || $(id -u) == 0 ]] || die "the Postfix relay rows need root; run as root or set POSTFIX_RELAY="
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=benches/peers/postfix-relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/peers/postfix-relay.sh"
# shellcheck source=benches/peers/volley-relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/peers/volley-relay.sh"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- prerequisites ------------------------------------------------------------------------------
ensure_packages() {
    local missing=()
    [[ -x $SMTP_SINK && -x $SMTP_SOURCE ]] || missing+=(postfix)
    command -v jq >/dev/null || missing+=(jq)
    command -v bc >/dev/null || missing+=(bc)
    command -v openssl >/dev/null || missing+=(openssl)
    ((${#missing[@]} == 0)) && return
    [[ $(id -u) == 0 ]] || die "needs ${missing[*]}; run as root or install them"
    # "No configuration": Postfix is installed for its test programs, never as a mail server.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# The system's Postfix is never stopped or touched: every Postfix here is a private instance on
# its own ports. When the system's master runs, the results say so (it may take some CPU).
system_postfix_note() {
    if pgrep -xf '/usr/lib/postfix/sbin/master -w' >/dev/null; then
        echo "the system's Postfix daemon was running (left alone)"
    else
        echo "the system's Postfix daemon was not running"
    fi
}

ensure_packages
SYSTEM_POSTFIX=$(system_postfix_note)

echo "building the release binary"
(cd "$ROOT" && cargo build --release --quiet -p volley -p volley-bench --bins)

WORK=$(mktemp -d /tmp/volley-peers.XXXXXX)
chmod 755 "$WORK"
SINK_PID=""
cleanup() {
    vrelay_stop
    relay_stop
    if [[ -n $SINK_PID ]]; then kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "work files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- smtp-sink ----------------------------------------------------------------------------------
# -c: running counters on stdout (sess/quit/mesg), the sink's own count of what it received.
# -m 512: simultaneous connections handled (volley opens up to 4 IPs x 32); no -d/-D: dumping to
# disk would make the sink, not the client, the bottleneck. -u nobody: required as root.
SINK_FLAGS=(-c -m 512)
[[ $(id -u) == 0 ]] && SINK_FLAGS=(-u nobody "${SINK_FLAGS[@]}")
SINK_PORT=""

# start_sink NAME: a fresh smtp-sink on 127.0.0.1:<free port>, counters in $WORK/NAME.sink.
start_sink() {
    local name=$1 tries=0
    SINK_PORT=$(free_port)
    "$SMTP_SINK" "${SINK_FLAGS[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$WORK/$name.sink" 2>"$WORK/$name.sink.err" &
    SINK_PID=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null; do
        kill -0 "$SINK_PID" 2>/dev/null || die "smtp-sink exited: $(cat "$WORK/$name.sink.err")"
        ((++tries < 250)) || die "smtp-sink not accepting on 127.0.0.1:$SINK_PORT"
        sleep 0.02
    done
}

# stop_sink NAME: stops the sink (in this shell, so it is reaped) and sets SINK_COUNT (messages
# smtp-sink counted), SINK_SESSIONS (sessions, minus the readiness probe) and SINK_CPU (seconds).
stop_sink() {
    local name=$1 stat last
    sleep 0.5 # let the last QUITs be counted
    # /proc/PID/stat fields 14 and 15: utime and stime in clock ticks (the name field has no spaces).
    read -r -a stat <"/proc/$SINK_PID/stat"
    kill "$SINK_PID"
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
    # The counter line is rewritten with CR; the last one holds the totals.
    last=$(tr '\r' '\n' <"$WORK/$name.sink" | grep 'mesg=' | tail -n 1 || true)
    SINK_COUNT=$(sed -n 's/.*mesg=\([0-9]*\).*/\1/p' <<<"$last")
    SINK_SESSIONS=$(sed -n 's/.*sess=\([0-9]*\).*/\1/p' <<<"$last")
    SINK_COUNT=${SINK_COUNT:-0}
    SINK_SESSIONS=$((${SINK_SESSIONS:-1} - 1))
    SINK_CPU=$(echo "scale=2; (${stat[13]} + ${stat[14]}) / $CLK_TCK" | bc)
}

# timed OUT CMD...: runs CMD, leaves "real user sys" seconds in $WORK/OUT.time.
timed() {
    local out=$1; shift
    local TIMEFORMAT='%3R %3U %3S'
    { time "$@" >"$WORK/$out.out" 2>"$WORK/$out.err"; } 2>"$WORK/$out.time" \
        || die "$* failed: $(tail -n 5 "$WORK/$out.err")"
}

rate() { echo "scale=0; $1 / $2" | bc; }
cpu_pct() { echo "scale=0; 100 * ($2 + $3) / $1" | bc; }

ROWS=()
SMTP_SOURCE_RATE=""

# --- (a) smtp-source -> smtp-sink ---------------------------------------------------------------
# -d: keep the connection for the next message (no disconnect per message); -s: parallel
# sessions; -l 4096: 4096-byte body; one recipient per message (-r 1, the default).
start_sink source
SOURCE_CMD=("$SMTP_SOURCE" -d -s "$SOURCE_SESSIONS" -m "$N" -l 4096 -f bounces@sender.test -t rcpt@dest.test
    "127.0.0.1:$SINK_PORT")
echo "(a) ${SOURCE_CMD[*]}"
timed source "${SOURCE_CMD[@]}"
read -r s_real s_user s_sys <"$WORK/source.time"
stop_sink source
s_count=$SINK_COUNT s_sessions=$SINK_SESSIONS s_sink_cpu=$SINK_CPU
[[ $s_count == "$N" ]] || die "smtp-sink counted $s_count messages from smtp-source, expected $N"
SMTP_SOURCE_RATE=$(rate "$N" "$s_real")
ROWS+=("| Postfix smtp-source | $SMTP_SOURCE_RATE | $SMTP_SOURCE_RATE | 1.00 | $s_real | $s_count | $s_sessions | $(cpu_pct "$s_real" "$s_user" "$s_sys") % | $(cpu_pct "$s_real" "$s_sink_cpu" 0) % |")
echo "    $N messages in $s_real s: $SMTP_SOURCE_RATE msg/s (smtp-sink counted $s_count)"

# --- (b) smtp-source -> Postfix relay -> smtp-sink ----------------------------------------------
for variant in $POSTFIX_RELAY; do run_postfix_relay "$variant"; done

# --- (e) smtp-source -> volley relay (submission, durable spool) -> smtp-sink -------------------
for variant in $VOLLEY_RELAY; do run_volley_relay "$variant"; done

# --- (c) volley send -> smtp-sink ---------------------------------------------------------------
# N recipients over 1,000 domains, every domain routed to the sink; one message per recipient.
awk -v n="$N" 'BEGIN { print "email,first_name"; for (i = 0; i < n; i++) printf "user%d@d%d.bench.test,User%d\n", i, i % 1000, i }' \
    >"$WORK/recipients.csv"
VOLLEY_CMDS=()
VARIANTS=()
for tls in $VOLLEY_TLS; do VARIANTS+=("$tls off"); done
for alg in $VOLLEY_DKIM; do VARIANTS+=("${VOLLEY_TLS%% *} $alg"); done
for variant in "${VARIANTS[@]}"; do
    read -r tls dkim <<<"$variant"
    name=volley-$tls-$dkim
    run=$WORK/$name
    mkdir -p "$run"
    cp "$PEERS/campaign.toml" "$PEERS/body.txt" "$run/"
    ln -s "$WORK/recipients.csv" "$run/recipients.csv"
    start_sink "$name"
    sed -e "s/@PORT@/$SINK_PORT/" -e "s/@TLS@/$tls/" "$PEERS/volley.toml.in" >"$run/volley.toml"
    if [[ $dkim != off ]]; then
        "$VOLLEY" dkim keygen --domain sender.test --selector bench --algorithm "$dkim" --out "$run/dkim.pem" >/dev/null
        printf '\n[[dkim]]\ndomain = "sender.test"\nselector = "bench"\nkey = "dkim.pem"\n' >>"$run/volley.toml"
    fi
    cmd=("$VOLLEY" send "$run/campaign.toml" --config "$run/volley.toml" --summary-json "$run/summary.json")
    echo "(c) ${cmd[*]}   [smtp] tls = \"$tls\", dkim = $dkim"
    VOLLEY_CMDS+=("volley send campaign.toml --config volley.toml --summary-json summary.json  # [smtp] tls = \"$tls\", dkim = $dkim")
    timed "$name" "${cmd[@]}"
    read -r v_real v_user v_sys <"$WORK/$name.time"
    stop_sink "$name"
    v_count=$SINK_COUNT v_sessions=$SINK_SESSIONS v_sink_cpu=$SINK_CPU
    delivered=$(jq -r .delivered "$run/summary.json")
    summary_rate=$(jq -r '.msgs_per_s | floor' "$run/summary.json")
    [[ $delivered == "$N" ]] || die "volley delivered $delivered of $N (tls=$tls); see $run/summary.json"
    [[ $v_count == "$N" ]] || die "smtp-sink counted $v_count messages from volley, expected $N (tls=$tls)"
    wall_rate=$(rate "$N" "$v_real")
    ratio=$(echo "scale=2; $wall_rate / $SMTP_SOURCE_RATE" | bc)
    [[ -n ${VOLLEY_RATE:-} ]] || VOLLEY_RATE=$wall_rate
    ROWS+=("| volley send, tls = $tls, dkim = $dkim | $summary_rate | $wall_rate | ${ratio/#./0.} | $v_real | $v_count | $v_sessions | $(cpu_pct "$v_real" "$v_user" "$v_sys") % | $(cpu_pct "$v_real" "$v_sink_cpu" 0) % |")
    echo "    $N messages in $v_real s: $wall_rate msg/s wall clock, $summary_rate msg/s by summary (smtp-sink counted $v_count)"
done

# --- (d) issue 15's receiver mix: volley vs a private Postfix relay vs the ideal -----------------
RECEIVER_LINES=()
if [[ $RECEIVERS == 1 ]]; then
    rcmd=("$ROOT/target/release/volley-bench" run "$ROOT/benches/scenarios/receivers.toml" --peer postfix --json "$WORK/receivers.json")
    echo "(d) ${rcmd[*]}"
    # Exit 1: the run finished but a check failed (recorded below); 2: it could not run.
    status=0
    "${rcmd[@]}" >"$WORK/receivers.out" 2>"$WORK/receivers.err" || status=$?
    ((status <= 1)) || die "volley-bench run (receivers) failed: $(tail -n 5 "$WORK/receivers.err")"
    cat "$WORK/receivers.out"
    r=$WORK/receivers.json
    ideal=$(jq -r '.ideal.seconds * 100 | round / 100' "$r")
    v_s=$(jq -r '.wall_s * 100 | round / 100' "$r")
    v_x=$(jq -r '.vs_ideal * 100 | round / 100' "$r")
    p_s=$(jq -r '.postfix.seconds * 100 | round / 100' "$r")
    p_x=$(jq -r '(.postfix.seconds / .ideal.seconds) * 100 | round / 100' "$r")
    faster=$(jq -r '(.postfix.seconds / .wall_s) * 10 | round / 10' "$r")
    goal_ideal=$(jq -r 'if .vs_ideal <= 1.25 then "met" else "missed" end' "$r")
    goal_postfix=$(jq -r 'if .postfix.seconds >= 5 * .wall_s then "met" else "missed" end' "$r")
    RECEIVER_LINES+=("" "Issue 15's receiver mix (\`volley-bench run benches/scenarios/receivers.toml --peer postfix\`; $(jq -r '.scenario.recipients' "$r") messages, 10,003 domains, 6 sinks with 50 ms latency; checks all hold: $(jq -r .ok "$r")):" ""
        "| sender | seconds | x ideal ($ideal s) | deferrals | connections |"
        "|---|---:|---:|---:|---:|"
        "| volley send (start to exit) | $v_s | $v_x | $(jq -r .summary.deferrals "$r") | $(jq -r .summary.connections_opened "$r") |"
        "| Postfix $(jq -r .postfix.version "$r") relay (release of the held queue to empty queue) | $p_s | $p_x | $(jq -r .postfix.deferred "$r") | $(jq -r .postfix.sink.connections "$r") |"
        "" "volley **${faster}x** faster than Postfix (goal >= 5x: **$goal_postfix**); volley at **${v_x}x** the ideal (goal <= 1.25x: **$goal_ideal**). Postfix settings besides the relay's: $(jq -r '.postfix.settings | join("; ")' "$r").")
fi

# --- results ------------------------------------------------------------------------------------
commit=$(git -C "$ROOT" rev-parse --short HEAD)
# The results file itself is not code: appending to it must not mark the next run "uncommitted".
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- . ":!benches/RESULTS.md") ]]; then commit="$commit + uncommitted changes"; fi
{
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — N=$N, commit $commit"
    echo
    echo "Machine: $(nproc) CPUs, Linux $(uname -r), load average before the run: $LOAD_BEFORE."
    echo "Command: \`N=$N SOURCE_SESSIONS=$SOURCE_SESSIONS VOLLEY_TLS=\"$VOLLEY_TLS\" VOLLEY_DKIM=\"$VOLLEY_DKIM\" POSTFIX_RELAY=\"$POSTFIX_RELAY\" VOLLEY_RELAY=\"$VOLLEY_RELAY\" RECEIVERS=$RECEIVERS benches/peers.sh\`"
    echo
    echo "| client | msg/s (summary) | msg/s (wall clock) | ratio to smtp-source (wall) | seconds | smtp-sink counted | sessions | client CPU | smtp-sink CPU |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    if [[ -n $POSTFIX_RELAY && -n ${VOLLEY_RATE:-} ]]; then
        line="" goal=met
        for v in $POSTFIX_RELAY; do
            x=$(echo "scale=1; $VOLLEY_RATE / ${RELAY_RATE[$v]}" | bc)
            line+="${line:+, }**${x}x** Postfix relay (queue on $v)"
            (($(echo "$x < 20" | bc))) && goal=missed
        done
        echo "volley (first row, wall clock) = $line in this run; goal >= 20x: **$goal**."
        echo
    fi
    for v in $VOLLEY_RELAY; do
        [[ -n ${RELAY_RATE[$v]:-} ]] || continue
        x=$(echo "scale=1; ${VRELAY_RATE[$v]} / ${RELAY_RATE[$v]}" | bc)
        goal=met
        (($(echo "$x < 5" | bc))) && goal=missed
        echo "Durable relay, spool/queue on $v: volley **${x/#./0.}x** Postfix's end-to-end msg/s (goal >= 5x: **$goal**)."
        echo
    done
    echo "- sink: \`smtp-sink ${SINK_FLAGS[*]} 127.0.0.1:PORT 1024\`, a fresh one per row"
    echo "- smtp-source: \`smtp-source -d -s $SOURCE_SESSIONS -m $N -l 4096 -f bounces@sender.test -t rcpt@dest.test 127.0.0.1:PORT\`"
    if [[ -n $POSTFIX_RELAY ]]; then
        echo "- Postfix relay: \`smtp-source -d -s $SOURCE_SESSIONS -m $N -N -l 4096 -f bounces@sender.test -t rcpt@dest.test 127.0.0.1:RELAYPORT\` into a private Postfix $RELAY_VERSION instance (config: benches/peers/postfix-relay-{main,master}.cf.in: relayhost = [127.0.0.1]:SINKPORT, connection cache on, destination concurrency 100, no DNS, in_flow_delay = 0, no chroot, log to a file), a fresh smtp-sink per row; seconds = from the start of the injection until smtp-sink counted N. Client CPU = Postfix (master and all its daemons) + smtp-source. smtp-source cannot vary the recipient domain (-N varies the local part), and with a relayhost Postfix queues every message for the one next hop anyway; the relay sends from 127.0.0.1 only (one smtp_bind_address), volley from 127.0.0.2-5."
        printf '%s\n' "${RELAY_NOTES[@]}"
    fi
    if [[ -n $VOLLEY_RELAY ]]; then
        echo "- volley relay: the same smtp-source command into \`volley serve\`'s submission listener (benches/peers/volley-relay.sh: volley.toml.in plus [submission] with relay_networks = 127.0.0.0/8 for smtp-source, which speaks neither AUTH nor TLS; the state directory and spool where the Postfix relay's queue goes for the same variant); every message synced in the spool before its 250; seconds = from the start of the injection until smtp-sink counted N. Client CPU = volley serve + smtp-source."
        printf '%s\n' "${VRELAY_NOTES[@]}"
    fi
    for c in "${VOLLEY_CMDS[@]}"; do echo "- volley: \`$c\` (configs: benches/peers/)"; done
    echo "- $SYSTEM_POSTFIX."
    [[ ${#RECEIVER_LINES[@]} -eq 0 ]] || printf '%s\n' "${RECEIVER_LINES[@]}"
    echo "- msg/s (summary) is volley's \`msgs_per_s\` (start-up and CSV reading included); wall clock is N / the process's elapsed time. CPU is (user + sys) / elapsed."
} >>"$RESULTS"
echo "appended to $RESULTS"
