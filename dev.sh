#!/usr/bin/env bash
# h2loop developer entry point. Two commands matter (see README.md):
#   ./dev.sh serve [h2loop flags…]  install dependencies, build, serve https://localhost:8443
#   ./dev.sh test                   install dependencies, check formatting, plain packager build, install
#                                   + build and run an out-of-tree consumer, build release + asan, run
#                                   every test in both, the threaded ones under tsan too
# Also: ./dev.sh deps | build [preset] | bench-loop
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  cmake ninja-build pkg-config g++ git
  libevent-dev libnghttp2-dev libssl-dev libspdlog-dev libfmt-dev libcli11-dev libhttp-parser-dev libwslay-dev
  libtomlplusplus-dev libsystemd-dev zlib1g-dev libbrotli-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  openssl curl wget nghttp2-client python3-h2 python3-wsproto python3-websockets python3-brotli chromium
  iproute2 procps clang-format haproxy nginx systemd
)

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() {
  local preset=${1:-release}
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
}

serve() {
  deps
  build release
  local run=run root cert key
  root=$run/www
  cert=$run/cert.pem
  key=$run/key.pem
  mkdir -p "$root"
  if [ ! -f "$root/index.html" ]; then
    cat >"$root/index.html" <<'HTML'
<!doctype html>
<html><head><meta charset="utf-8"><title>h2loop</title></head>
<body><h1>h2loop is serving</h1><p>This page came over HTTP/2.</p></body></html>
HTML
  fi
  if [ ! -f "$cert" ] || [ ! -f "$key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
      -keyout "$key" -out "$cert" 2>/dev/null
    chmod 600 "$key"
  fi
  echo "== serving $root at https://localhost:8443 (Ctrl-C to stop)"
  exec build/release/server/h2loop --listen 127.0.0.1:8443 --listen '[::1]:8443' \
    --root "$root" --cert "$cert" --key "$key" "$@"
}

format_check() {
  # The sources follow .clang-format (Debian's clang-format 14).
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 0
  echo "== clang-format check"
  git ls-files -z '*.cc' '*.h' | xargs -0 clang-format --dry-run -Werror
}

packager_build() {
  # What a packager runs: no preset, no -Werror, the compiler's own flags.
  echo "== plain cmake -DCMAKE_BUILD_TYPE=Release build (no presets)"
  cmake -S . -B build/plain -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DH2LOOP_BUILD_TESTS=OFF -DH2LOOP_BUILD_BENCH=OFF >/dev/null
  cmake --build build/plain -j 2
}

consumer_check() {
  # h2loop as an installed library: cmake --install into a scratch prefix, then an
  # application outside the tree (tests/consumer/) built with find_package(h2loop) and
  # with pkg-config alone, each serving a request over HTTP/2.
  # It reuses the packager build's directory (same build type and flags): what
  # is installed is what a packager builds, and it is not compiled twice.
  echo "== install + out-of-tree consumer (find_package(h2loop), pkg-config h2loop)"
  tests/consumer/run.sh . build/plain build/consumer/scratch
}

run_tests() {
  deps
  format_check
  packager_build
  consumer_check
  build release
  build asan
  echo "== release build: all tests"
  ctest --preset release
  echo "== asan build (AddressSanitizer + LeakSanitizer + UBSan): all tests"
  ctest --preset asan
  tsan_tests
}

tsan_tests() {
  # What crosses threads: the loop contract (post/stop from other threads) and the
  # in-process server suite (workers on their own threads, the test thread outside).
  # The application API suite: handles used from application threads (thread
  # pool answers, producer threads, resumes, handles outliving the server).
  echo "== tsan build (ThreadSanitizer): loop contract, in-process server suite, application API"
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan --target h2loop_eventloop_tests h2loop_leak_tests h2loop_api_app
  ctest --preset tsan -L eventloop
  ctest --preset tsan -R '^Leak/'
  ctest --preset tsan -L api
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build "${2:-release}" ;;
  serve) shift; serve "$@" ;;
  test) run_tests ;;
  bench-loop) deps; build release; build/release/bench/loop_bench ;;
  *) echo "usage: $0 serve [flags…] | test | deps | build [release|asan|debug] | bench-loop" >&2; exit 2 ;;
esac
