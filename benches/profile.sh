#!/usr/bin/env bash
# Profile one `volley send` of N recipients (benches/peers/ configs: ~4 KB messages, 1,000
# domains, 4 source IPs 127.0.0.2-5) into a fresh Postfix smtp-sink on 127.0.0.1.
#
#   N=20000 benches/profile.sh callgrind   # instruction counts (repeatable to ~±3 % whatever
#                                          # the machine does); prints the total, keeps the file
#   N=100000 benches/profile.sh perf       # perf record -e cpu-clock (kernel time included)
#   N=100000 benches/profile.sh time       # wall, user, sys, peak RSS only
#
# Compare two builds with VOLLEY=/path/to/volley. Installs postfix and valgrind when missing.
set -euo pipefail
MODE=${1:-time}
N=${N:-20000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/benches/peers
die() { echo "profile.sh: $*" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
need=()
[[ -x /usr/sbin/smtp-sink ]] || need+=(postfix)
[[ $MODE != callgrind ]] || command -v valgrind >/dev/null || need+=(valgrind)
[[ $MODE != perf ]] || command -v perf >/dev/null || need+=(linux-perf)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
    [[ $(id -u) == 0 ]] || die "needs ${need[*]}; run as root or install them"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ -z ${VOLLEY:-} ]]; then
    (cd "$ROOT" && cargo build --release --quiet --bin volley)
    VOLLEY=$ROOT/target/release/volley
fi
WORK=$(mktemp -d /tmp/volley-profile.XXXXXX)
chmod 755 "$WORK"
SINK_PID=""
cleanup() { [[ -z $SINK_PID ]] || kill "$SINK_PID" 2>/dev/null || true; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sink_user=(); [[ $(id -u) == 0 ]] && sink_user=(-u nobody)
/usr/sbin/smtp-sink "${sink_user[@]}" -c -m 512 "127.0.0.1:$port" 1024 >"$WORK/sink.out" 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
cp "$PEERS/campaign.toml" "$PEERS/body.txt" "$WORK/"
awk -v n="$N" 'BEGIN { print "email,first_name"; for (i = 0; i < n; i++) printf "user%d@d%d.bench.test,User%d\n", i, i % 1000, i }' >"$WORK/recipients.csv"
sed -e "s/@PORT@/$port/" -e "s/@TLS@/opportunistic/" "$PEERS/volley.toml.in" >"$WORK/volley.toml"
cd "$WORK"
send=("$VOLLEY" send campaign.toml --config volley.toml --summary-json summary.json --progress off)
case $MODE in
    callgrind) /usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KiB" \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "${send[@]}" >out.txt 2>err.txt \
        || die "volley send failed: $(tail -n 5 err.txt)"
        tail -n 1 err.txt
        echo "instructions: $(sed -n 's/^summary: //p' "$WORK/callgrind.out") (callgrind_annotate $WORK/callgrind.out)" ;;
    perf) perf record -q -e cpu-clock -F 2000 -o "$WORK/perf.data" "${send[@]}" >out.txt 2>err.txt \
        || die "volley send failed: $(tail -n 5 err.txt)"
        echo "profile: perf report -i $WORK/perf.data --no-children --sort comm,dso,sym" ;;
    time) /usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KiB" "${send[@]}" >out.txt 2>err.txt \
        || die "volley send failed: $(tail -n 5 err.txt)"
        tail -n 1 err.txt ;;
    *) die "mode must be callgrind, perf or time (got '$MODE')" ;;
esac
delivered=$(python3 -c 'import json,sys; print(json.load(open("summary.json"))["delivered"])')
[[ $delivered == "$N" ]] || die "delivered $delivered of $N (see $WORK)"
echo "delivered $delivered of $N; files in $WORK"
