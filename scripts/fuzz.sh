#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan+UBSan) and runs each for FUZZ_SECONDS (default
# 60) from its seed corpus in tests/fuzz/corpus/. Fails on any finding (the crashing input is
# left in build/fuzz/findings/ — add it to the corpus as a regression case once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
bash scripts/build.sh fuzz >/dev/null
mkdir -p build/fuzz/findings
for target in build/fuzz/tests/fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus=tests/fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d)
  # Input size bound per target: the session target writes the input through a socket.
  # (Others: libFuzzer's default, the larger of 4096 and the largest seed.)
  max_len=()
  [[ $name == fuzz_session ]] && max_len=(-max_len=65536)
  echo "== $name: ${seconds}s from $corpus ${max_len[*]}" >&2
  "$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    "${max_len[@]}" \
    -artifact_prefix=build/fuzz/findings/ "$work" "$corpus" 2>"build/fuzz/$name.log" \
    || { tail -40 "build/fuzz/$name.log" >&2; rm -rf "$work"; exit 1; }
  grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units" "build/fuzz/$name.log" >&2 || true
  rm -rf "$work"
done
