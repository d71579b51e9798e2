# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced by benches/peers.sh and benches/cluster.sh).

# free_port: a TCP port nobody listens on, in 20000-59999 (checked with ss; a race with another
# program binding it meanwhile is possible and shows as that server failing to start).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
}
