# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced by benches/peers.sh and benches/cluster.sh).

# free_port: a TCP port no socket uses, below the kernel's ephemeral range (so that the many
# outgoing connections of a run cannot take it between this check and the server's bind; a
# sink once failed with "Address already in use" on a port picked inside that range), checked
# with ss. A race with another program binding it meanwhile is still possible and shows as that
# server failing to start.
free_port() {
    local port low=32768 span
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    span=$((low - 10000))
    ((span >= 1000)) || span=0
    while :; do
        if ((span > 0)); then port=$((10000 + RANDOM % span)); else port=$((20000 + RANDOM % 40000)); fi
        ss -Htan "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
}
