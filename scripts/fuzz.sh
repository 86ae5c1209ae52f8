#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan+UBSan) and runs each for FUZZ_SECONDS (default
# 60) from its seed corpus in tests/fuzz/corpus/, as many at once as there are cores (each
# target is one process on one core; FUZZ_JOBS overrides). Fails on any finding (the crashing
# input is left in build/fuzz/findings/ — add it to the corpus as a regression case once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc)}
bash scripts/build.sh fuzz >/dev/null
mkdir -p build/fuzz/findings

# Runs one target; its output goes to build/fuzz/NAME.log.
run_target() {
  local target=$1 name corpus work status=0
  name=$(basename "$target")
  corpus=tests/fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d)
  # Input size bound per target: the session target writes the input through a socket.
  # (Others: libFuzzer's default, the larger of 4096 and the largest seed.)
  local max_len=()
  [[ $name == fuzz_session ]] && max_len=(-max_len=65536)
  echo "== $name: ${seconds}s from $corpus ${max_len[*]}" >&2
  "$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    "${max_len[@]}" \
    -artifact_prefix=build/fuzz/findings/ "$work" "$corpus" 2>"build/fuzz/$name.log" || status=$?
  rm -rf "$work"
  return "$status"
}

declare -A pid_of=()
failed=()
# Waits for one running target and records whether it failed.
reap_one() {
  local done_pid status=0 name
  wait -n -p done_pid "${!pid_of[@]}" || status=$?
  name=${pid_of[$done_pid]}
  unset "pid_of[$done_pid]"
  if ((status != 0)); then
    echo "== $name FAILED (exit $status):" >&2
    tail -40 "build/fuzz/$name.log" >&2
    failed+=("$name")
  else
    grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units" "build/fuzz/$name.log" \
      | sed "s/^/$name: /" >&2 || true
  fi
}

for target in build/fuzz/tests/fuzz/fuzz_*; do
  while ((${#pid_of[@]} >= jobs)); do reap_one; done
  run_target "$target" &
  pid_of[$!]=$(basename "$target")
done
while ((${#pid_of[@]} > 0)); do reap_one; done

if ((${#failed[@]} > 0)); then
  echo "fuzz: findings or failures in: ${failed[*]}" >&2
  exit 1
fi
