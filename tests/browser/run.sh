#!/usr/bin/env bash
# The browser test (ctest: browser.live_page): installs puppeteer-core from the committed
# package-lock.json into the build folder (npm ci, no install scripts: it never downloads a
# browser) and drives Debian's chromium against the live page. Exits 77 (ctest: skipped) only
# when chromium, node or npm is not installed (scripts/setup-debian.sh installs chromium).
# Usage: run.sh FRAMECAST_BIN OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"
out="$2"
chromium="${CHROMIUM:-/usr/bin/chromium}"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIPPED: $tool is not installed (the browser test needs node 18+ and npm)" >&2
    exit 77
  fi
done
if [[ ! -x "$chromium" ]]; then
  echo "SKIPPED: $chromium is not installed (apt-get install chromium; scripts/setup-debian.sh)" >&2
  exit 77
fi
mkdir -p "$out"
# Reinstalled only when the lock file changed.
if ! cmp -s "$here/package-lock.json" "$out/package-lock.json" || [[ ! -d "$out/node_modules/puppeteer-core" ]]; then
  cp "$here/package.json" "$here/package-lock.json" "$out/"
  (cd "$out" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
export FRAMECAST_BIN="$bin" OUT_DIR="$out" CHROMIUM="$chromium" NODE_PATH="$out/node_modules"
exec node "$here/live_page.test.js"
