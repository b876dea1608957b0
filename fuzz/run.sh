#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, and prints per target the executions, the corpus size and whether
# it crashed:
#   fuzz/run.sh 600                 # each target 10 minutes
#   fuzz/run.sh 60 token jwks       # two targets, a minute each
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes
# `-Zsanitizer=address` to rustc, a nightly flag: on a stable toolchain this
# script sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept it. A crash
# leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# and add it to the normal suite as a regression test.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token jwks keyring config admin_body)
export RUSTC_BOOTSTRAP=1
cargo fuzz build >&2 || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
printf '| target | seconds | executions | exec/s | corpus | result |\n|---|---:|---:|---:|---:|---|\n'
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # The admin_body target's store lives in TMPDIR: removed after each run.
  TMPDIR=$work cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 > "$work/$t.log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1)
  per=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1)
  size=$(ls "corpus/$t" | wc -l)
  if [ $rc -eq 0 ]; then
    result="no crash"
  else
    result="CRASH (exit $rc): see fuzz/artifacts/$t"
    failed=1
    tail -40 "$work/$t.log" >&2
  fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${runs:-?}" "${per:-?}" "$size" "$result"
done
exit $failed
