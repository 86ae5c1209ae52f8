#!/usr/bin/env bash
# Installs what framecast needs to build and test, from Debian 12's packages only.
# Idempotent and quick when everything is there already. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build git pkg-config
  libboost1.81-dev libcli11-dev libspdlog-dev libfmt-dev   # I/O and HTTP (Asio, Beast), CLI, logs
  libssl-dev openssl libjwt-dev                       # TLS, JWT authentication
  python3-trustme python3-jwt python3-cryptography    # certificates and tokens made by the tests
  libtomlplusplus-dev                                 # the --config file (real TOML)
  libgtest-dev googletest libbenchmark-dev            # tests and benchmarks
  libhiredis-dev redis-server                         # the Redis backplane and its tests
  libicu-dev                                          # chat names: ICU's spoof checker
  python3 python3-pytest                              # integration tests with Python peers
  clang-14 libclang-rt-14-dev libfuzzer-14-dev        # fuzzing (libFuzzer)
  libzmq3-dev cppzmq-dev gnuplot-nox                  # framecast bench: the ZeroMQ peers, plots
  nats-server                                         # framecast bench --only channels: the NATS peer
  stunnel4                                            # framecast bench --only tls: the stunnel peer
  python3-websockets python3-wsproto                  # WebSocket gateway tests: independent peers
  chromium                                            # the live page's browser test (puppeteer-core, npm)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $EUID -ne 0 ]] && sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
