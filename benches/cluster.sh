#!/usr/bin/env bash
# Cluster mode against a plain `volley send` (issue 19), on loopback, in one invocation:
#   (0) `volley send` of a campaign of N recipients;
#   (1) (2) (3) the same campaign through `volley cluster publish` + 1, 2 or 3
#       `volley cluster work` nodes, node k bound to source IP 127.0.0.(k+1), each node in its
#       own state directory, coordinated by a private redis-server.
#   (s2) (s3) the split an operator would make by hand without cluster mode: 2 or 3 plain
#       `volley send` processes at once, process k sending every k-th recipient from
#       127.0.0.(k+1) — the baseline for 2 and 3 nodes, with the same number of processes,
#       source IPs and connections.
# REPS repetitions of them all, interleaved (0 1 s2 2 s3 3 0 1 ...) so that drift on a shared
# machine hits them alike. Per run: wall time, CPU (user + sys, from wait4 via /usr/bin/time) of
# the volley processes (publisher + nodes), redis-server's CPU (`INFO cpu` deltas), the Redis
# commands (`CONFIG RESETSTAT` before, `INFO stats`/`INFO commandstats` after, commands run by
# scripts included) and bytes in/out, and the sink's count of messages, which must equal N.
# Prints medians (min-max) per configuration and appends them to benches/RESULTS.md.
#
#   benches/cluster.sh                      # N=100000 REPS=3
#   N=20000 REPS=1 CHUNK=500 APPEND=0 benches/cluster.sh
#   VOLLEY=/tmp/volley-before APPEND=0 benches/cluster.sh   # another build, nothing built
#   DKIM=ed25519 benches/cluster.sh         # every message signed, as in production
#   SHARED=1 benches/cluster.sh             # chunks as byte ranges of a file in [cluster] shared_dir
#
# Everything listens on 127.0.0.1 (redis-server, `volley sink`); volley sends from
# 127.0.0.2-4. The sink is `volley sink --no-starttls` (no faults, no latency), a fresh one per
# run; every recipient domain is routed to it by `[routes] "*"` (no DNS). Installs
# redis-server, jq, bc and time with apt when missing (as root), like the other bench scripts.
set -euo pipefail

N=${N:-100000}
REPS=${REPS:-3}
# Recipients per chunk (`[cluster] chunk_size`); the other [cluster] settings are the defaults.
CHUNK=${CHUNK:-1000}
# Chunks a node holds at once (`[cluster] chunks_in_flight`); empty: the default.
INFLIGHT=${INFLIGHT:-}
# Recipient domains (all routed to the one sink).
DOMAINS=${DOMAINS:-100}
# DKIM signing of every message, as in production: ed25519 or rsa (a 2048-bit key made with
# openssl for the run, `[[dkim]]` for the From domain in every configuration); empty: unsigned.
DKIM=${DKIM:-}
# 1: the nodes' [cluster] shared_dir holds the recipient file, so chunks carry byte ranges of
# it and each node reads its rows from the file; 0: chunks carry their rows.
SHARED=${SHARED:-0}
# 1: append the result to benches/RESULTS.md; 0: print it only.
APPEND=${APPEND:-1}
# Node counts to run besides the plain send (0).
NODES=${NODES:-"1 2 3"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$ROOT/benches/RESULTS.md
# VOLLEY=/path/to/volley measures that build instead (nothing is built); e.g. before and after
# a change.
VOLLEY_GIVEN=${VOLLEY:-}
VOLLEY=${VOLLEY:-$ROOT/target/release/volley}
CAMPAIGN=cluster-bench

die() { echo "cluster.sh: $*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ $CHUNK =~ ^[1-9][0-9]*$ ]] && ((CHUNK <= 100000)) || die "CHUNK must be 1-100000 (got '$CHUNK')"
[[ -z $INFLIGHT || $INFLIGHT =~ ^[1-9][0-9]*$ ]] || die "INFLIGHT must be a positive integer (got '$INFLIGHT')"
[[ $DOMAINS =~ ^[1-9][0-9]*$ ]] || die "DOMAINS must be a positive integer (got '$DOMAINS')"
for k in $NODES; do [[ $k =~ ^[1-3]$ ]] || die "NODES: node counts are 1-3 (source IPs 127.0.0.2-4), got '$k'"; done
[[ $APPEND == 0 || $APPEND == 1 ]] || die "APPEND must be 0 or 1 (got '$APPEND')"
[[ $SHARED == 0 || $SHARED == 1 ]] || die "SHARED must be 0 or 1 (got '$SHARED')"
[[ -z $DKIM || $DKIM == ed25519 || $DKIM == rsa ]] || die "DKIM must be ed25519, rsa or empty (got '$DKIM')"

# --- prerequisites ------------------------------------------------------------------------------
ensure_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v jq >/dev/null || missing+=(jq)
    command -v bc >/dev/null || missing+=(bc)
    [[ -z $DKIM ]] || command -v openssl >/dev/null || missing+=(openssl)
    [[ -x /usr/bin/time ]] || missing+=(time)
    ((${#missing[@]} == 0)) && return
    [[ $(id -u) == 0 ]] || die "needs ${missing[*]}; run as root or install them"
    # The package's own service is left alone: this script runs a private instance.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
ensure_packages
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ -z $VOLLEY_GIVEN ]]; then
    echo "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet -p volley)
fi
[[ -x $VOLLEY ]] || die "$VOLLEY is not an executable"

WORK=$(mktemp -d /tmp/volley-cluster.XXXXXX)
REDIS_PID="" SINK_PID=""
# Processes of the current run: /usr/bin/time wrappers (each with one volley child).
RUN_PIDS=()

# stop_tree PID: the volley child of a /usr/bin/time wrapper, then the wrapper.
stop_tree() {
    local pid=$1 child
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${RUN_PIDS[@]}"; do stop_tree "$pid"; done
    if [[ -n $SINK_PID ]]; then kill -TERM "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
    if [[ -n $REDIS_PID ]]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "work files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listening PORT PID WHAT ERRFILE
wait_listening() {
    local port=$1 pid=$2 what=$3 err=$4 tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$what exited: $(tail -n 5 "$err")"
        ((++tries < 500)) || die "$what not accepting on 127.0.0.1:$port"
        sleep 0.02
    done
}

# --- redis-server (private) ---------------------------------------------------------------------
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK/redis" \
    --daemonize no --logfile "$WORK/redis/log" &
REDIS_PID=$!
wait_listening "$REDIS_PORT" "$REDIS_PID" redis-server "$WORK/redis/log"
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@" | tr -d '\r'; }
# info_field SECTION FIELD
info_field() { rcli INFO "$1" | sed -n "s/^$2://p"; }
redis_cpu() { rcli INFO cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f", s }'; }

# --- the campaign -------------------------------------------------------------------------------
awk -v n="$N" -v d="$DOMAINS" 'BEGIN { print "email,name"; for (i = 0; i < n; i++) printf "user%d@d%d.cluster.test,Reader %d\n", i, i % d, i }' \
    >"$WORK/recipients.csv"
cat >"$WORK/campaign.toml" <<EOF
id = "$CAMPAIGN"
from = "News <news@sender.test>"
envelope_from = "bounces@sender.test"
subject = "Hello {{name}}"
text = "Hello {{name}},\n\nthe news of the week.\n"
recipients = "$WORK/recipients.csv"
EOF

if [[ -n $DKIM ]]; then
    case $DKIM in
    ed25519) openssl genpkey -algorithm ed25519 -out "$WORK/dkim.pem" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048 -out "$WORK/dkim.pem" 2>/dev/null ;;
    esac
    chmod 600 "$WORK/dkim.pem"
fi

# The split baselines: part i of k holds every k-th row from row i, with its own campaign file.
for k in $NODES; do
    ((k > 1)) || continue
    for ((i = 1; i <= k; i++)); do
        awk -v k="$k" -v i="$i" 'NR == 1 || (NR - 2) % k == i - 1' "$WORK/recipients.csv" >"$WORK/recipients-$k-$i.csv"
        sed "s#$WORK/recipients.csv#$WORK/recipients-$k-$i.csv#" "$WORK/campaign.toml" >"$WORK/campaign-$k-$i.toml"
    done
done

# node_config FILE IP SINK_PORT [NODE_ID]: a node's volley.toml; with NODE_ID, its [cluster].
node_config() {
    local file=$1 ip=$2 port=$3 node=${4:-}
    cat >"$file" <<EOF
state_dir = "state"

[[source_ips]]
address = "127.0.0.$ip"
ehlo_name = "mta$ip.volley.test"

[routes]
"*" = "127.0.0.1:$port"
EOF
    [[ -z $DKIM ]] || printf '\n[[dkim]]\ndomain = "sender.test"\nselector = "bench"\nkey = "%s"\n' "$WORK/dkim.pem" >>"$file"
    [[ -z $node ]] || printf '\n[cluster]\nredis = "redis://127.0.0.1:%s/0"\nnode_id = "%s"\nchunk_size = %s\n' \
        "$REDIS_PORT" "$node" "$CHUNK" >>"$file"
    [[ -z $node || -z $INFLIGHT ]] || printf 'chunks_in_flight = %s\n' "$INFLIGHT" >>"$file"
    [[ -z $node || $SHARED != 1 ]] || printf 'shared_dir = "%s"\n' "$WORK" >>"$file"
}

# spawn NAME DIR CMD...: CMD under /usr/bin/time in DIR (elapsed, user, sys -> NAME.time).
spawn() {
    local name=$1 dir=$2; shift 2
    (cd "$dir" && exec /usr/bin/time -f '%e %U %S' -o "$dir/$name.time" "$@" >"$dir/$name.out" 2>"$dir/$name.err") &
    RUN_PIDS+=($!)
}

# commandstats FILE: "command<TAB>calls<TAB>usec_per_call" per line of an `INFO commandstats`
# reply, without this script's own INFO and CONFIG calls (commands run by scripts are included).
commandstats() {
    awk -F'[:,=]' '/^cmdstat_/ && !/^cmdstat_(info|config)/ { sub(/^cmdstat_/, "", $1); printf "%s\t%s\t%s\n", $1, $3, $7 }' "$1"
}

# One line per run in $WORK/runs.tsv:
# config rep wall_s volley_cpu_s redis_cpu_s commands bytes_in bytes_out sink_messages
: >"$WORK/runs.tsv"

# run_one K REP: K = 0 (plain send) or the number of nodes.
run_one() {
    local k=$1 rep=$2 dir=$WORK/run-$1-$2 port pid i t0 t1 cpu0 cpu1 sink_msgs delivered
    mkdir -p "$dir"
    port=$(free_port)
    "$VOLLEY" sink --listen "127.0.0.1:$port" --no-starttls >"$dir/sink.out" 2>"$dir/sink.err" &
    SINK_PID=$!
    wait_listening "$port" "$SINK_PID" "volley sink" "$dir/sink.err"
    rcli FLUSHALL >/dev/null
    cpu0=$(redis_cpu)
    rcli CONFIG RESETSTAT >/dev/null
    RUN_PIDS=()
    t0=$(date +%s.%N)
    if [[ $k == 0 ]]; then
        node_config "$dir/volley.toml" 2 "$port"
        spawn send "$dir" "$VOLLEY" send "$WORK/campaign.toml" --config volley.toml --summary-json summary.json
    elif [[ $k == s* ]]; then
        for ((i = 1; i <= ${k#s}; i++)); do
            mkdir -p "$dir/p$i"
            node_config "$dir/p$i/volley.toml" $((i + 1)) "$port"
            spawn send "$dir/p$i" "$VOLLEY" send "$WORK/campaign-${k#s}-$i.toml" --config volley.toml --summary-json summary.json
        done
    else
        for ((i = 1; i <= k; i++)); do
            mkdir -p "$dir/n$i"
            node_config "$dir/n$i/volley.toml" $((i + 1)) "$port" "n$i"
        done
        spawn publish "$dir" "$VOLLEY" cluster publish "$WORK/campaign.toml" --config n1/volley.toml
        for ((i = 1; i <= k; i++)); do
            spawn work "$dir/n$i" "$VOLLEY" cluster work "$CAMPAIGN" --config volley.toml --summary-json summary.json
        done
    fi
    for pid in "${RUN_PIDS[@]}"; do
        wait "$pid" || die "run $k.$rep: a volley process failed (exit $?); see $dir/*.err $dir/n*/*.err"
    done
    t1=$(date +%s.%N)
    RUN_PIDS=()
    # Read right after the run, before the status query below adds commands of its own.
    rcli INFO stats >"$dir/redis-stats"
    rcli INFO commandstats >"$dir/redis-commandstats"
    cpu1=$(redis_cpu)
    kill -TERM "$SINK_PID"
    wait "$SINK_PID" || die "run $k.$rep: volley sink failed: $(tail -n 5 "$dir/sink.err")"
    SINK_PID=""
    sink_msgs=$(tail -n 1 "$dir/sink.out" | jq -r .messages)
    ((sink_msgs == N)) || die "run $k.$rep: the sink accepted $sink_msgs messages, expected $N (see $dir)"
    if [[ $k == 0 ]]; then
        delivered=$(jq -r .delivered "$dir/summary.json")
    elif [[ $k == s* ]]; then
        delivered=$(jq -s 'map(.delivered) | add' "$dir"/p*/summary.json)
    else
        delivered=$("$VOLLEY" cluster status "$CAMPAIGN" --config "$dir/n1/volley.toml" | jq -r '.counts.delivered // 0')
    fi
    ((delivered == N)) || die "run $k.$rep: $delivered delivered, expected $N (see $dir)"
    local wall cpu rcpu cmds bin bout
    wall=$(echo "$t1 - $t0" | bc)
    cpu=$(find "$dir" -maxdepth 2 -name '*.time' -exec cat {} + | awk '{ s += $2 + $3 } END { printf "%.2f", s }')
    rcpu=$(echo "$cpu1 - $cpu0" | bc)
    # Commands by type, without the script's own INFO/CONFIG calls; those run by scripts count.
    cmds=$(commandstats "$dir/redis-commandstats" | awk -F'\t' '{ s += $2 } END { print s + 0 }')
    bin=$(sed -n 's/^total_net_input_bytes://p' "$dir/redis-stats")
    bout=$(sed -n 's/^total_net_output_bytes://p' "$dir/redis-stats")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$rep" "$wall" "$cpu" "$rcpu" "$cmds" "$bin" "$bout" "$sink_msgs" >>"$WORK/runs.tsv"
    printf '  %-8s rep %s: %7.2f s wall, volley CPU %6.2f s, redis-server CPU %5.2f s, %s Redis commands, sink %s\n' \
        "$(label "$k")" "$rep" "$wall" "$cpu" "$rcpu" "$cmds" "$sink_msgs"
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$dir"/state "$dir"/n*/state "$dir"/p*/state; fi
}

# label K: a configuration's short name.
label() {
    case $1 in
    0) echo send ;;
    s*) echo "${1#s} sends" ;;
    1) echo "1 node" ;;
    *) echo "$1 nodes" ;;
    esac
}

CONFIGS=(0)
for k in $NODES; do
    ((k > 1)) && CONFIGS+=("s$k")
    CONFIGS+=("$k")
done
echo "N=$N REPS=$REPS CHUNK=$CHUNK DOMAINS=$DOMAINS, redis-server $REDIS_VERSION on 127.0.0.1:$REDIS_PORT, work dir $WORK"
for ((rep = 1; rep <= REPS; rep++)); do
    for k in "${CONFIGS[@]}"; do run_one "$k" "$rep"; done
done

# --- summary ------------------------------------------------------------------------------------
# col_stat K COLUMN SCALE: "median min max" of column COLUMN (1-based) of config K's runs, times SCALE.
col_stat() {
    awk -F'\t' -v k="$1" -v c="$2" -v s="$3" '$1 == k { print $c * s }' "$WORK/runs.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6f %.6f %.6f\n", m, v[1], v[NR] }'
}
# paired K BASE: "median min max" over the reps of the overhead in % of config K's volley CPU
# against config BASE's run of the same rep (run seconds apart, so drift of the shared machine
# between reps cancels out).
paired() {
    awk -F'\t' -v k="$1" -v b="$2" '$1 == k { c[$2] = $4 } $1 == b { base[$2] = $4 }
        END { for (r in c) if (r in base && base[r] > 0) print 100 * (c[r] - base[r]) / base[r] }' "$WORK/runs.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6f %.6f %.6f\n", m, v[1], v[NR] }'
}
fmt() { printf "%.${2}f" "$1"; }
pct() { printf '%+.1f %%' "$1"; }
range() { # median min max DECIMALS
    if [[ $REPS == 1 ]]; then fmt "$1" "$4"; else echo "$(fmt "$1" "$4") ($(fmt "$2" "$4")–$(fmt "$3" "$4"))"; fi
}

PER_MSG_US=$(echo "1000000 / $N" | bc -l)
read -r base _ _ < <(col_stat 0 4 "$PER_MSG_US")
TABLE=("| configuration | volley CPU µs/msg | overhead vs send | with redis-server | vs as many split sends | paired, per rep | Redis commands/msg | Redis bytes in/msg | Redis bytes out/msg | redis-server CPU µs/msg | wall s |"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
VERDICT=""
SPLIT_VERDICT=""
PAIRED_VERDICT=""
for k in "${CONFIGS[@]}"; do
    read -r c cmin cmax < <(col_stat "$k" 4 "$PER_MSG_US")
    read -r r rmin rmax < <(col_stat "$k" 5 "$PER_MSG_US")
    read -r w wmin wmax < <(col_stat "$k" 3 1)
    read -r ops _ _ < <(col_stat "$k" 6 "$(echo "1 / $N" | bc -l)")
    read -r bin _ _ < <(col_stat "$k" 7 "$(echo "1 / $N" | bc -l)")
    read -r bout _ _ < <(col_stat "$k" 8 "$(echo "1 / $N" | bc -l)")
    vs_split="—" per_rep="—"
    if [[ $k != 0 && $k != s* ]]; then
        # The baseline a node count is judged against: the plain send for 1 node, as many
        # split sends for more.
        b=0
        ((k > 1)) && b="s$k"
        read -r p pmin pmax < <(paired "$k" "$b")
        per_rep="$(pct "$p")"
        ((REPS == 1)) || per_rep+=" ($(printf '%+.1f' "$pmin")…$(printf '%+.1f' "$pmax"))"
        PAIRED_VERDICT+="${PAIRED_VERDICT:+; }$k node$( ((k > 1)) && echo s || true) against $(label "$b"): $(pct "$p")"
    fi
    if [[ $k == 0 ]]; then
        name="volley send" over="—" over_r="—"
    elif [[ $k == s* ]]; then
        name="${k#s} × volley send, the list split in ${k#s}"
        over="$(printf '%+.1f' "$(echo "100 * ($c - $base) / $base" | bc -l)") %" over_r="—"
    else
        name="cluster, $k node$( ((k > 1)) && echo s || true)"
        over=$(echo "100 * ($c - $base) / $base" | bc -l)
        over_r=$(echo "100 * ($c + $r - $base) / $base" | bc -l)
        if ((k > 1)); then
            # Judged like for like: against as many plain sends of the split list (the same
            # processes, source IPs and connections); against the one send, k processes on
            # this machine cost more whatever they run.
            read -r split _ _ < <(col_stat "s$k" 4 "$PER_MSG_US")
            vs_split=$(echo "100 * ($c - $split) / $split" | bc -l)
            vs_split_r=$(echo "100 * ($c + $r - $split) / $split" | bc -l)
            split_over=$(echo "100 * ($split - $base) / $base" | bc -l)
            SPLIT_VERDICT+="${SPLIT_VERDICT:+; }$k nodes against $k sends: $(printf '%+.1f' "$vs_split") %"
            VERDICT+="${VERDICT:+; }$k nodes: $(printf '%+.1f' "$vs_split") % against $k split sends ($(printf '%+.1f' "$vs_split_r") % with redis-server; against the one send $(printf '%+.1f' "$over") %, where the $k split sends are $(printf '%+.1f' "$split_over") %)"
            vs_split="$(printf '%+.1f' "$vs_split") %"
        else
            VERDICT+="${VERDICT:+; }$k node: $(printf '%+.1f' "$over") % against the plain send ($(printf '%+.1f' "$over_r") % with redis-server)"
        fi
        over="$(printf '%+.1f' "$over") %" over_r="$(printf '%+.1f' "$over_r") %"
    fi
    TABLE+=("| $name | $(range "$c" "$cmin" "$cmax" 1) | $over | $over_r | $vs_split | $per_rep | $(fmt "$ops" 2) | $(fmt "$bin" 1) | $(fmt "$bout" 1) | $(range "$r" "$rmin" "$rmax" 1) | $(range "$w" "$wmin" "$wmax" 2) |")
done

# The command breakdown of the last run with the most nodes.
last=${CONFIGS[-1]}
BREAKDOWN=("| command | calls | calls/msg | µs per call (Redis) |" "|---|---:|---:|---:|")
while IFS=$'\t' read -r cmd calls usec_per; do
    BREAKDOWN+=("| $cmd | $calls | $(fmt "$(echo "$calls / $N" | bc -l)" 3) | $usec_per |")
done < <(commandstats "$WORK/run-$last-$REPS/redis-commandstats" | sort -t$'\t' -k2,2nr)

commit=$(git -C "$ROOT" rev-parse --short HEAD)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- . ":!benches/RESULTS.md") ]]; then commit="$commit + uncommitted changes"; fi
SIGNING="unsigned"
[[ -z $DKIM ]] || SIGNING="every message DKIM-signed ($DKIM, \`[[dkim]]\` for the From domain, \`dkim_threads\` default: one per core)"
REPORT=(""
    "## $(date -u '+%Y-%m-%d %H:%M UTC') — cluster mode (issue 19), N=$N, REPS=$REPS${DKIM:+, DKIM=$DKIM}$( ((SHARED == 1)) && echo ', SHARED=1' || true), commit $commit"
    ""
    "Machine: $(nproc) CPUs, Linux $(uname -r), load average before the run: $LOAD_BEFORE; redis-server $REDIS_VERSION."
    "Command: \`${VOLLEY_GIVEN:+VOLLEY=$VOLLEY_GIVEN }N=$N REPS=$REPS CHUNK=$CHUNK ${INFLIGHT:+INFLIGHT=$INFLIGHT }DOMAINS=$DOMAINS ${DKIM:+DKIM=$DKIM }$( ((SHARED == 1)) && echo "SHARED=1 " || true)NODES=\"$NODES\" benches/cluster.sh\`"
    ""
    "${TABLE[@]}"
    ""
    "Redis commands of the last ${last}-node run (\`INFO commandstats\`, commands run by scripts included):"
    ""
    "${BREAKDOWN[@]}"
    ""
    "- Same invocation, interleaved: plain \`volley send\` (source IP 127.0.0.2) and \`volley cluster publish\` + 1-3 \`volley cluster work\` nodes (127.0.0.2-4, one state directory each; \`[cluster]\` defaults but chunk_size = $CHUNK${INFLIGHT:+ and chunks_in_flight = $INFLIGHT}$( ((SHARED == 1)) && echo ' and shared_dir holding the recipient file: chunks carry byte ranges, each node reads its rows from the file' || true)), $REPS runs each, medians (min–max)."
    "- $N recipients over $DOMAINS domains, a two-line text template, $SIGNING; a fresh \`volley sink --no-starttls\` per run (counted $N every run), routed by \`[routes] \"*\"\`; a private redis-server (no persistence), \`FLUSHALL\` and \`CONFIG RESETSTAT\` before each run."
    "- volley CPU: user + sys of the publisher and every node (or of \`volley send\`) from wait4 (\`/usr/bin/time\`), per delivered message. redis-server CPU: \`INFO cpu\` deltas. Overhead: median against the plain send's median ($(fmt "$base" 1) µs/msg), without and with redis-server's CPU. Bytes: \`total_net_input_bytes\`/\`total_net_output_bytes\`."
    "- The split sends (2 or 3 plain \`volley send\` at once, process i sending every ith recipient from 127.0.0.(i+1), as an operator would split the list by hand) have as many processes, source IPs and connections as 2 or 3 nodes: the cluster's own cost is the last overhead column${SPLIT_VERDICT:+ ($SPLIT_VERDICT)}."
    "- Paired, per rep: the overhead of each run against its baseline's run of the same rep (the plain send for 1 node, as many split sends for 2 and 3), median (min…max) over the reps; runs of one rep are seconds apart, so the machine's drift between reps cancels out: $PAIRED_VERDICT."
    "- Goal < 10 % CPU per message: $VERDICT.")
printf '%s\n' "${REPORT[@]}"
if [[ $APPEND == 1 ]]; then
    printf '%s\n' "${REPORT[@]}" >>"$RESULTS"
    echo "appended to $RESULTS"
fi
