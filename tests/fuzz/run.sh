#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DCASCADE_FUZZ=ON) and fuzzes each for a
# bounded time, all at once, on a copy of its seed corpus. Exits non-zero on
# any crash, leak, sanitizer report, timeout or invariant violation, printing
# the input that caused it; the input is also kept in BUILD/fuzz-artifacts/.
# Usage: bash tests/fuzz/run.sh [BUILD_DIR (build-fuzz)] [SECONDS per target (60)]
# Reproduce a finding: BUILD/tests/fuzz/<target> BUILD/fuzz-artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
seconds=${2:-60}
targets=(manifest_fuzz reference_fuzz dockerfile_fuzz dockerignore_fuzz)

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCASCADE_FUZZ=ON -DCASCADE_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

rm -rf "$build/fuzz-artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pids=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$build/fuzz-artifacts/$t"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/"
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -dict="tests/fuzz/$t.dict" -artifact_prefix="$build/fuzz-artifacts/$t/" \
    -print_final_stats=1 "$work/$t" >"$work/$t.log" 2>&1 &
  pids+=($!)
done

failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$work/$t.log" || echo "no summary")
    echo "fuzz $t: no finding ($runs(s), corpus $(ls "$work/$t" | wc -l) inputs)"
  else
    failed=1
    echo "fuzz $t: FOUND A PROBLEM; log tail:"
    grep -v '^#[0-9]' "$work/$t.log" | tail -80
    for f in "$build/fuzz-artifacts/$t"/*; do
      [ -f "$f" ] || continue
      echo "input $f (base64): $(base64 -w0 "$f" | head -c 8000)"
    done
  fi
done
exit "$failed"
