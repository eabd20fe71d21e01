#!/usr/bin/env bash
# Smoke test of the end-to-end benchmark (tests/bench/run_e2e_bench runs the real one): against
# the service tests/run prepares for the end-to-end tests, e2e_bench produces its figures for a
# couple of issuances and a second of reads, and keeps a paced run to its schedule. Checks that
# figures come out, never their values, but for the paced run's count: at 50 calls a second for
# one second, at most 50 calls start.
set -euo pipefail

config=${ACMEVAULT_E2E_CONFIG:-}
if [ -z "$config" ]; then
  if [ -n "${ACMEVAULT_REQUIRE_STACK:-}" ]; then
    echo "ACMEVAULT_E2E_CONFIG is not set" >&2
    exit 1
  fi
  echo "skipped: no stack (run through tests/run)"
  exit 0
fi
dir=$(dirname "$config")
# The service's HTTP-01 port is shared with the end-to-end tests' daemons: take turns with them
# (tests/e2e/e2e_fixture.h holds the same lock).
exec 9>>"$dir/daemon.lock"
flock 9

ready=$TEST_TMPDIR/bench.ready
service/acmevaultd serve --config="$config" --ready_file="$ready" 2>"$TEST_TMPDIR/bench.log" 9>&- &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s "$ready" ] && break
  kill -0 "$daemon" 2>/dev/null || { cat "$TEST_TMPDIR/bench.log" >&2; exit 1; }
  sleep 0.1
done
port() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$ready"; }
bench=(tests/bench/e2e_bench --grpc="127.0.0.1:$(port grpc_port)"
  --metrics="http://127.0.0.1:$(port metrics_port)/metrics" --root_token_file="$dir/bootstrap-token"
  --daemon_pid="$daemon")

out=$TEST_TMPDIR/figures
"${bench[@]}" --mode=issue --callers=2 --issuances=2 --seconds=60 >"$out"
"${bench[@]}" --mode=read --streams=4 --seconds=1 >>"$out"
paced=$TEST_TMPDIR/paced
"${bench[@]}" --mode=paced --streams=2 --rate=50 --seconds=1 >"$paced"
cat "$paced" >>"$out"
cat "$out"
number='[0-9]+(\.[0-9]+)?'
grep -Eq "^issue callers=2 ok=2 failed=0 seconds=$number per_s=$number p50_ms=$number p99_ms=$number daemon_cpu_ms_per_cert=$number .*acme_operations_per_cert=[1-9]" "$out"
grep -Eq "^read streams=4 ok=[1-9][0-9]* failed=0 .*p99_ms=$number" "$out"
grep -Eq "^health streams=4 ok=[1-9][0-9]* failed=0 " "$out"
grep -Eq "^read_vs_health rate_ratio=$number" "$out"
grep -q '^paced ready$' "$out"
calls=$(sed -n 's/^paced streams=2 rate=50 ok=\([0-9]*\) failed=0 .*daemon_cpu_us_per_call=[0-9]* client_cpu_us_per_call=[0-9]*$/\1/p' "$out")
[ -n "$calls" ] && [ "$calls" -ge 1 ] && [ "$calls" -le 50 ] ||
  { echo "paced run: expected 1-50 calls in its second, got '${calls}'" >&2; exit 1; }
echo "figures produced"
