#!/usr/bin/env bash
# Fuzzes every parser of fuzz/ for a fixed number of executions, one target at a time, and
# exits non-zero if any target crashed (a panic or a broken invariant). Not part of CI.
#
#   scripts/fuzz.sh                      # every target, 1,000,000 executions each
#   FUZZ_RUNS=100000 scripts/fuzz.sh reply ehlo
#   FUZZ_ENGINE=proptest scripts/fuzz.sh # force the proptest fallback
#
# Environment:
#   FUZZ_RUNS       executions per target (default 1000000)
#   FUZZ_ENGINE     libfuzzer | proptest | auto (default auto: libfuzzer when cargo-fuzz
#                   builds, else proptest)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default none: Rust is memory-safe and ASan costs
#                   ~2x; use address to check unsafe code in dependencies)
#   FUZZ_MAX_LEN    largest input libFuzzer generates, in bytes (default 4096)
#
# libFuzzer needs a nightly rustc; on a stable toolchain the script runs cargo-fuzz with
# RUSTC_BOOTSTRAP=1 so stable rustc accepts the -Z flags cargo-fuzz passes. Targets build
# with debug assertions (integer overflow panics). Crashing inputs land in
# fuzz/artifacts/TARGET/; reproduce one with `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s none TARGET fuzz/artifacts/TARGET/FILE`
# (from the repository root). Logs: fuzz/target/fuzz-logs/TARGET.log. Results: benches/FUZZ.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_TARGETS="reply ehlo csv_recipients jsonl_recipients campaign config template curve backoff dsn_intake arf_intake token smtp_session"
TARGETS=${*:-$ALL_TARGETS}
RUNS=${FUZZ_RUNS:-1000000}
ENGINE=${FUZZ_ENGINE:-auto}
SANITIZER=${FUZZ_SANITIZER:-none}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
LOGS=$ROOT/fuzz/target/fuzz-logs
mkdir -p "$LOGS"
# cargo-fuzz only: stable rustc accepts its -Z flags with this set. Not exported, as cargo
# fingerprints it and the fallback build would rebuild every dependency.
cargo_fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }

# Seed corpora from the shipped examples (libFuzzer adds what it finds; never committed).
seed() {
  local t=$1 dir=$ROOT/fuzz/corpus/$1
  mkdir -p "$dir"
  case $t in
    reply | ehlo)
      printf '250 2.1.0 Sender ok\r\n' >"$dir/seed-ok"
      printf '550-5.1.1 The email account does not exist.\r\n550 5.1.1 Try again.\r\n' >"$dir/seed-multi"
      printf '250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-AUTH PLAIN login\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n' >"$dir/seed-ehlo"
      printf '421 4.7.0 Try again later\n' >"$dir/seed-lf" ;;
    csv_recipients)
      cp config/campaigns/welcome.csv "$dir/seed-welcome.csv"
      printf 'email,name\r\n"a@example.test","Ada, ""A"""\r\n\r\nb@example.test\r\nbad,x\n' >"$dir/seed-quotes.csv" ;;
    jsonl_recipients)
      printf '{"email":"a@example.test","name":"Ada","n":1}\n\n{"email":"b@example.test","name":null}\n{"email":5}\nnot json\n' >"$dir/seed.jsonl" ;;
    campaign) cp config/campaigns/welcome.toml "$dir/seed-welcome.toml" ;;
    config) cp config/volley.toml "$dir/seed-volley.toml" ;;
    template)
      printf 'Welcome aboard, {{ name }}! Plan: {{plan}}\0x@example.test\0Ada <b>&\0pro' >"$dir/seed-1"
      printf 'Hi {{name}\n{{ }}\0\0a\r\nBcc: x@example.test\0' >"$dir/seed-2" ;;
    curve) cp config/warmup/standard.toml config/warmup/conservative.toml config/warmup/aggressive.toml "$dir/" ;;
    backoff) cp config/warmup/backoff.toml "$dir/seed-backoff.toml" ;;
    dsn_intake)
      cp feedback/tests/fixtures/postfix/*.eml feedback/tests/fixtures/rfc/rfc3464-*.eml "$dir/"
      cp feedback/tests/fixtures/plain/*.eml "$dir/" ;;
    arf_intake) cp feedback/tests/fixtures/rfc/rfc5965-abuse.eml "$dir/" ;;
    token)
      # Tokens of the Postfix fixtures (the harness uses their key), and field bytes.
      grep -ho 'bounces+[0-9a-v]*' feedback/tests/fixtures/postfix/*.eml | sort -u | cut -d+ -f2 |
        while read -r t; do printf '%s' "$t" >"$dir/seed-$t"; done
      printf '\x07\0\0\0\0\0\0\0\0\x7f\0\0\x02' >"$dir/seed-fields" ;;
    smtp_session)
      # Byte 0: config/policy flags, byte 1: read size, then the client's bytes.
      printf '\x07\x40EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=20\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: s\r\n\r\n..hi\r\n.\r\nQUIT\r\n' >"$dir/seed-data"
      printf '\x01\x05EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nBDAT 5\r\nabcdeBDAT 3 LAST\r\nxyzRSET\r\n' >"$dir/seed-bdat"
      printf '\x46\x03EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\nYm9i\r\n*\r\n' >"$dir/seed-auth" ;;
  esac
}

ensure_cargo_fuzz() {
  cargo fuzz --version >/dev/null 2>&1 && return 0
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked >"$LOGS/install.log" 2>&1
}

FUZZ_FLAGS=(-O -a -s "$SANITIZER")
if [ "$ENGINE" != proptest ]; then
  if ensure_cargo_fuzz && (cd fuzz && cargo_fuzz build "${FUZZ_FLAGS[@]}" >"$LOGS/build.log" 2>&1); then
    ENGINE=libfuzzer
  elif [ "$ENGINE" = libfuzzer ]; then
    echo "cargo-fuzz could not build the targets; see $LOGS/build.log" >&2
    exit 2
  else
    echo "cargo-fuzz unavailable or failed to build (see $LOGS/); using the proptest fallback"
    ENGINE=proptest
  fi
fi
if [ "$ENGINE" = proptest ]; then
  (cd fuzz && cargo build --release --no-default-features --example proptest_fuzz) || exit 2
fi

echo "engine: $ENGINE, $RUNS executions per target"
failed=()
for t in $TARGETS; do
  seed "$t"
  start=$(date +%s.%N)
  if [ "$ENGINE" = libfuzzer ]; then
    (cd fuzz && cargo_fuzz run "${FUZZ_FLAGS[@]}" "$t" -- \
      -runs="$RUNS" -max_len="$MAX_LEN" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1) \
      >"$LOGS/$t.log" 2>&1
  else
    fuzz/target/release/examples/proptest_fuzz "$t" "$RUNS" >"$LOGS/$t.log" 2>&1
  fi
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$t.log" | grep -o '[0-9]*$' | tail -1)
  [ "$ENGINE" = proptest ] && [ $rc -eq 0 ] && execs=$RUNS
  if [ $rc -eq 0 ]; then
    printf '%-18s ok     %10s execs %8.1f s\n' "$t" "${execs:-?}" "$secs"
  else
    printf '%-18s CRASH  %10s execs %8.1f s  (log: %s)\n' "$t" "${execs:-?}" "$secs" "$LOGS/$t.log"
    grep -m3 -E 'panicked at|Test unit written|CRASH|saved to' "$LOGS/$t.log" | sed 's/^/    /'
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}"
  exit 1
fi
echo "no crash"
