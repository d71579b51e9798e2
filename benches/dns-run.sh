#!/usr/bin/env bash
# `volley send` with real MX resolution: N recipients over DOMAINS domains, each resolved through
# a loopback authoritative DNS server (`volley-bench dns`: d{i}.bench.test -> MX 10/20
# mx{j}a/b.sites.bench.test, j = i % SITES -> A 127.0.0.10), delivered to a `volley sink` child
# process on 127.0.0.10:mx_port (TLS on), 4 source IPs (127.0.0.2-5), no [routes]. ~1 KB messages.
# Records peak RSS (/usr/bin/time -v), delivered, msg/s and elapsed; fails unless delivered == N.
# Usage: SIZES="100000 1000000" [DOMAINS=10000] [SITES=100] benches/dns-run.sh
#        (appends a section to benches/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100000 1000000"}
DOMAINS=${DOMAINS:-10000}
SITES=${SITES:-100}
MX_IP=127.0.0.10
if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet -p volley -p volley-bench --bins
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/volley
benchbin=$target/release/volley-bench
work=$(mktemp -d /tmp/volley-dns-run.XXXXXX)
sink_pid=""
dns_pid=""
keep=""
cleanup() {
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
  [ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null
  if [ -n "$keep" ]; then echo "kept $work for inspection" >&2; else rm -rf "$work"; fi
}
# On failure: the summary's counters (not its per-domain tables) and the accounting log's
# non-delivered outcomes grouped by outcome, code and reply text.
explain() {
  keep=1
  python3 - "$1" <<'PY' >&2
import collections, json, re, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({k: v for k, v in s.items() if not isinstance(v, dict)}, indent=2))
reasons = collections.Counter()
for line in open(s["accounting_log"]):
    r = json.loads(line)
    if r.get("outcome") != "delivered":
        text = re.sub(r"\b(d|mx)[0-9]+", r"\1*", str(r.get("text", "")))[:120]
        reasons[(r.get("outcome"), r.get("code"), str(r.get("category")), text)] += 1
for (outcome, code, category, text), count in reasons.most_common(10):
    print(f"{count:>9} {outcome} {code} {category} {text}")
PY
}
trap cleanup EXIT

# The DNS server picks a port free for both UDP and TCP and prints it once it answers.
"$benchbin" dns --listen 127.0.0.1:0 --domains "$DOMAINS" --sites "$SITES" --mx-ip "$MX_IP" > "$work/dns.out" 2>&1 &
dns_pid=$!
for _ in $(seq 100); do grep -q '^dns listening on' "$work/dns.out" && break; sleep 0.1; done
if ! grep -q '^dns listening on' "$work/dns.out"; then
  echo "volley-bench dns did not start:" >&2; cat "$work/dns.out" >&2; exit 1
fi
dns_addr=$(sed -n 's/^dns listening on \([^ ]*\) .*/\1/p' "$work/dns.out")
echo "$(cat "$work/dns.out")"

mx_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('$MX_IP',0)); print(s.getsockname()[1])")
"$bin" sink --listen "$MX_IP:$mx_port" >/dev/null 2>&1 &
sink_pid=$!
for _ in $(seq 100); do (echo > "/dev/tcp/$MX_IP/$mx_port") 2>/dev/null && break; sleep 0.1; done
echo "sink listening on $MX_IP:$mx_port"

rows=""
load=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $SIZES; do
  dir="$work/n$n"; mkdir -p "$dir"
  awk -v n="$n" -v d="$DOMAINS" 'BEGIN { print "email,first_name"; for (i = 0; i < n; i++) printf "user%d@d%d.bench.test,Reader%d\n", i, i % d, i }' > "$dir/r.csv"
  cat > "$dir/c.toml" <<TOML
id = "dns-$n"
from = "News <news@sender.test>"
subject = "Hello {{first_name}}"
text = """Hi {{first_name}},
this is a ~1 KB message body used to measure memory, repeated to size:
$(for i in $(seq 12); do echo "line $i of filler text for the peak RSS benchmark, 60-odd chars."; done)
"""
recipients = "r.csv"
TOML
  cat > "$dir/v.toml" <<TOML
state_dir = "state"
mx_port = $mx_port
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"
[[source_ips]]
address = "127.0.0.3"
ehlo_name = "mta3.volley.test"
[[source_ips]]
address = "127.0.0.4"
ehlo_name = "mta4.volley.test"
[[source_ips]]
address = "127.0.0.5"
ehlo_name = "mta5.volley.test"
[dns]
nameservers = ["$dns_addr"]
TOML
  if ! /usr/bin/time -v "$bin" send "$dir/c.toml" --config "$dir/v.toml" --summary-json "$dir/s.json" > "$dir/out.txt" 2> "$dir/time.txt"; then
    echo "volley send failed for N=$n:" >&2
    cat "$dir/out.txt" >&2; grep -v '^\s' "$dir/time.txt" | tail -20 >&2
    [ -f "$dir/s.json" ] && explain "$dir/s.json"
    exit 1
  fi
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$dir/time.txt")
  read -r delivered rate elapsed < <(python3 -c "import json; s=json.load(open('$dir/s.json')); print(s['delivered'], round(s['msgs_per_s']), round(s['elapsed_s'], 1))")
  if [ "$delivered" != "$n" ]; then
    echo "N=$n: delivered $delivered, expected $n; summary:" >&2
    explain "$dir/s.json"
    exit 1
  fi
  echo "N=$n delivered=$delivered peak RSS $((rss_kb / 1024)) MiB, $rate msg/s, ${elapsed} s (volley-bench dns CPU so far: $(ps -o times= -p "$dns_pid" | tr -d ' ') s)"
  rows="$rows| $n | $delivered | $((rss_kb / 1024)) | $rate | $elapsed |\n"
  rm -rf "$dir"
done
{
  echo
  echo "## Peak RSS of volley send with MX resolution over loopback DNS — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo "${COMMIT:-unknown}")"
  echo
  echo "Command: \`SIZES=\"$SIZES\" DOMAINS=$DOMAINS SITES=$SITES benches/dns-run.sh\` ($DOMAINS domains resolved through \`volley-bench dns\` on loopback, $SITES MX sites all at $MX_IP, \`volley send --config\` with \`[dns]\` and \`mx_port\`, no \`[routes]\`; ~1 KB messages, \`volley sink\` child process, 4 source IPs, TLS on; peak RSS from \`/usr/bin/time -v\`). Machine: $(nproc) CPUs, load average $load before the first run."
  echo
  echo "| recipients | delivered | peak RSS (MiB) | msg/s | elapsed (s) |"
  echo "|---:|---:|---:|---:|---:|"
  printf "%b" "$rows"
} >> benches/RESULTS.md
echo "appended to benches/RESULTS.md"
