#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: the optimised build, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer, then each fuzz
# target for a minute. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh

echo "== build and test: default preset (RelWithDebInfo, -Wall -Wextra -Wpedantic -Werror)"
bash scripts/build.sh default
ctest --preset default

echo "== build and test: asan preset (ASan + UBSan)"
bash scripts/build.sh asan
ctest --preset asan

echo "== build and test: tsan preset (ThreadSanitizer; the backplane and the server use threads)"
bash scripts/build.sh tsan
ctest --preset tsan

echo "== fuzz: each libFuzzer target for ${FUZZ_SECONDS:-60}s"
bash scripts/fuzz.sh
