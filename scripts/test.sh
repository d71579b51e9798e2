#!/usr/bin/env bash
# Runs Volley's whole test suite on a fresh Debian machine: installs what is missing
# (redis-server; postfix for its smtp-sink/smtp-source; dnsmasq-base; swaks; python3; chromium; Exim unpacked, not installed), then checks formatting and
# clippy and runs every test. It never stops, starts or reconfigures a service of the machine:
# tests start their own smtp-sink, redis-server and sinks on free loopback ports, so a
# developer's running Postfix (port 25) or Redis (port 6379) is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then need+=(postfix); fi
# dnsmasq (the binary only, no system service) is the peer DNS server of dnscheck/tests/dnsmasq.rs.
if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then need+=(dnsmasq-base); fi
# swaks and Python 3 (its smtplib) are the real clients of the submission listener's tests
# (scheduler/tests/suite/submission_*.rs).
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Headless Chromium renders the HTML report in tests/report_html.rs.
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Exim cannot be installed next to Postfix: its packages are unpacked into target/exim instead
# (scripts/fetch-exim.sh), for the Exim receiver tests (private daemon, loopback port).
scripts/fetch-exim.sh
export PATH="$PATH:/usr/sbin"
# A one-shot build gains nothing from incremental caches, which are as large as the build.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "scripts/test.sh: disk free before the build: $(df -h . | awk 'NR==2 {print $4}')"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
echo "scripts/test.sh: target/ uses $(du -sh target 2>/dev/null | cut -f1); disk free: $(df -h . | awk 'NR==2 {print $4}')"
