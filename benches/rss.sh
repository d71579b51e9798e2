#!/usr/bin/env bash
# Peak RSS of `volley send` as the recipient list grows: N recipients over 10,000 domains, ~1 KB
# messages, routed "*" to a `volley sink` child process on loopback (TLS on), 4 source IPs.
# Usage: SIZES="100000 1000000" benches/rss.sh   (appends a section to benches/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100000 1000000"}
DOMAINS=${DOMAINS:-10000}
if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet
bin=$PWD/target/release/volley
work=$(mktemp -d /tmp/volley-rss.XXXXXX)
sink_pid=""
cleanup() { [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" sink --listen "127.0.0.1:$port" >/dev/null 2>&1 &
sink_pid=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

rows=""
for n in $SIZES; do
  dir="$work/n$n"; mkdir -p "$dir"
  awk -v n="$n" -v d="$DOMAINS" 'BEGIN { print "email,first_name"; for (i = 0; i < n; i++) printf "user%d@d%d.rss.test,Reader%d\n", i, i % d, i }' > "$dir/r.csv"
  cat > "$dir/c.toml" <<TOML
id = "rss-$n"
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
[routes]
"*" = "127.0.0.1:$port"
TOML
  /usr/bin/time -v "$bin" send "$dir/c.toml" --config "$dir/v.toml" --summary-json "$dir/s.json" > "$dir/out.txt" 2> "$dir/time.txt"
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$dir/time.txt")
  delivered=$(python3 -c "import json; print(json.load(open('$dir/s.json'))['delivered'])")
  rate=$(python3 -c "import json; print(round(json.load(open('$dir/s.json'))['msgs_per_s']))")
  echo "N=$n delivered=$delivered peak RSS $((rss_kb / 1024)) MiB, $rate msg/s"
  rows="$rows| $n | $delivered | $((rss_kb / 1024)) | $rate |\n"
  rm -rf "$dir/state"
done
{
  echo
  echo "## Peak RSS of volley send — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo
  echo "Command: \`SIZES=\"$SIZES\" benches/rss.sh\` ($DOMAINS domains, ~1 KB messages, \`volley sink\` child process, 4 source IPs, TLS on; peak RSS from \`/usr/bin/time -v\`). Machine: $(nproc) CPUs."
  echo
  echo "| recipients | delivered | peak RSS (MiB) | msg/s |"
  echo "|---:|---:|---:|---:|"
  printf "%b" "$rows"
} >> benches/RESULTS.md
echo "appended to benches/RESULTS.md"
