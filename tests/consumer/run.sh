#!/usr/bin/env bash
# h2loop as an installed library, seen from an application outside the tree:
#   1. configure + build h2loop (Release, no tests/bench/examples) in BUILD_DIR,
#      `cmake --install` it into SCRATCH_DIR/prefix;
#   2. compile every installed header on its own (nothing missing from the prefix);
#   3. build tests/consumer twice: with CMake (find_package(h2loop) → h2loop::h2loop)
#      and with pkg-config alone (h2loop.pc, static link);
#   4. run each binary with a self-signed certificate, GET /hello over HTTP/2 with
#      curl, check the answer, SIGTERM it, check it exits 0.
# Every step is bounded in time and fails with a message naming it.
#
#   tests/consumer/run.sh SOURCE_DIR BUILD_DIR SCRATCH_DIR
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_DIR BUILD_DIR SCRATCH_DIR" >&2
  exit 2
fi

# Failures go to the script's own stderr, whatever a step's output is redirected to.
exec {stderr}>&2
fail() {
  echo "consumer check FAILED: $*" >&"$stderr"
  exit 1
}
step() { echo "-- consumer: $*"; }

src=$(cd "$1" && pwd) || fail "no source dir $1"
[ -f "$src/tests/consumer/main.cc" ] || fail "$src is not the h2loop source tree"
mkdir -p "$2" "$3"
build=$(cd "$2" && pwd)
scratch=$(cd "$3" && pwd)
prefix=$scratch/prefix
consumer_src=$src/tests/consumer

BUILD_TIMEOUT=${H2LOOP_CONSUMER_BUILD_TIMEOUT:-1800} # seconds, per configure/build step
START_TIMEOUT=20                                      # the "listening on" line
REQUEST_TIMEOUT=10                                    # curl, whole transfer
EXIT_TIMEOUT=20                                       # from SIGTERM to exit

# run SECONDS WHAT COMMAND...: runs COMMAND within SECONDS, or fails naming WHAT.
run() {
  local seconds=$1 what=$2 rc=0
  shift 2
  # --foreground: in the caller's process group, so that Ctrl-C still stops it.
  timeout --foreground --kill-after=10 "$seconds" "$@" || rc=$?
  [ "$rc" -eq 124 ] && fail "$what: timed out after ${seconds}s"
  [ "$rc" -eq 0 ] || fail "$what: exit status $rc (command: $*)"
}

# What is still running when this script ends (a failed step): ended by pid.
server_pid=
drain_pid=
cleanup() {
  [ -z "$server_pid" ] || kill -KILL "$server_pid" 2>/dev/null || true
  [ -z "$drain_pid" ] || kill "$drain_pid" 2>/dev/null || true
}
trap cleanup EXIT

# ---- 1. build and install h2loop ------------------------------------------------
step "configure h2loop in $build (install prefix $prefix)"
run "$BUILD_TIMEOUT" "configure h2loop" \
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DH2LOOP_BUILD_TESTS=OFF -DH2LOOP_BUILD_BENCH=OFF -DH2LOOP_BUILD_EXAMPLES=OFF \
  -DCMAKE_INSTALL_PREFIX="$prefix"
step "build h2loop"
run "$BUILD_TIMEOUT" "build h2loop" cmake --build "$build" -j 2
step "install h2loop into $prefix"
rm -rf "$prefix" # nothing left over from an earlier install may hide a missing file
run 120 "cmake --install" cmake --install "$build"

for f in include/h2loop/http.h include/h2loop/server.h include/h2loop/eventloop/loop.h \
  include/h2loop/eventloop/loop_factory.h include/h2loop/eventloop/libevent/libevent_loop.h \
  bin/h2loop; do
  [ -f "$prefix/$f" ] || fail "install: $prefix/$f is missing"
done
config=$(find "$prefix" -name h2loopConfig.cmake -print -quit)
[ -n "$config" ] || fail "install: no h2loopConfig.cmake under $prefix"
pc=$(find "$prefix" -name h2loop.pc -print -quit)
[ -n "$pc" ] || fail "install: no h2loop.pc under $prefix"
pc_dir=$(dirname "$pc")

# ---- 2. the installed headers stand alone ---------------------------------------------
export PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cflags=$(pkg-config --cflags h2loop) || fail "pkg-config --cflags h2loop (PKG_CONFIG_PATH=$PKG_CONFIG_PATH)"
libs=$(pkg-config --libs --static h2loop) || fail "pkg-config --libs --static h2loop"
step "compile each installed header on its own (cflags: $cflags)"
while IFS= read -r header; do
  rel=${header#"$prefix"/include/}
  # As an application spells it: "h2loop/server.h", "eventloop/loop.h".
  case $rel in
    h2loop/eventloop/*) rel=${rel#h2loop/} ;;
  esac
  printf '#include "%s"\n' "$rel" >"$scratch/header_check.cc"
  # shellcheck disable=SC2086 # cflags is a list of flags
  run 120 "compile the installed header $rel on its own" \
    g++ -std=c++20 -fsyntax-only -Wall -Wextra $cflags "$scratch/header_check.cc"
done < <(find "$prefix/include" -name '*.h' | sort)

# ---- 3. build the application twice ---------------------------------------------------
cmake_build=$scratch/cmake-consumer
rm -rf "$cmake_build"
step "build tests/consumer with find_package(h2loop) (CMAKE_PREFIX_PATH=$prefix)"
run "$BUILD_TIMEOUT" "configure tests/consumer with CMake" \
  cmake -S "$consumer_src" -B "$cmake_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix"
found=$(sed -n 's/^h2loop_DIR:[A-Z]*=//p' "$cmake_build/CMakeCache.txt")
[ "$found" = "$(dirname "$config")" ] ||
  fail "find_package(h2loop) found '$found', not the package just installed ($(dirname "$config"))"
run "$BUILD_TIMEOUT" "build tests/consumer with CMake" cmake --build "$cmake_build" -j 2
cmake_bin=$cmake_build/h2loop_consumer

pc_bin=$scratch/pkgconfig-consumer/h2loop_consumer
rm -rf "$(dirname "$pc_bin")"
mkdir -p "$(dirname "$pc_bin")"
step "build tests/consumer/main.cc with pkg-config only (libs: $libs)"
# shellcheck disable=SC2086 # cflags and libs are lists of flags
run "$BUILD_TIMEOUT" "build tests/consumer/main.cc with pkg-config" \
  g++ -std=c++20 -O2 -Wall -Wextra $cflags "$consumer_src/main.cc" -o "$pc_bin" $libs

# ---- 4. run them -------------------------------------------------------------------------
cert=$scratch/cert.pem
key=$scratch/key.pem
step "self-signed certificate"
run 60 "openssl req (self-signed certificate)" \
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -keyout "$key" -out "$cert" 2>/dev/null

# serve NAME BINARY: starts BINARY, fetches /hello, stops it with SIGTERM.
serve() {
  local name=$1 bin=$2
  local log=$scratch/$name.stdout err=$scratch/$name.stderr fifo=$scratch/$name.fifo
  local line='' port='' fd rc=0 deadline

  step "$name: start $bin"
  rm -f "$fifo" "$log" "$err"
  mkfifo "$fifo"
  "$bin" "$cert" "$key" >"$fifo" 2>"$err" &
  server_pid=$!
  exec {fd}<"$fifo"

  # Its stdout, line by line, until "listening on 127.0.0.1:PORT" (anything
  # before it, e.g. log lines, is kept in $log).
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    local left=$((deadline - SECONDS))
    [ "$left" -gt 0 ] || fail "$name: no 'listening on' line within ${START_TIMEOUT}s (stdout: $log, stderr: $err)"
    rc=0
    IFS= read -r -t "$left" -u "$fd" line || rc=$?
    if [ "$rc" -gt 128 ]; then
      fail "$name: no 'listening on' line within ${START_TIMEOUT}s (stdout: $log, stderr: $err)"
    elif [ "$rc" -ne 0 ]; then
      fail "$name: stdout closed before a 'listening on' line (it exited?): $(cat "$err")"
    fi
    echo "$line" >>"$log"
    if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
      port=${BASH_REMATCH[1]}
      break
    fi
  done
  [ "$port" -gt 0 ] || fail "$name: listening on port $port"
  # Keep reading its stdout so that it never blocks on a full pipe.
  cat <&"$fd" >>"$log" &
  drain_pid=$!
  exec {fd}<&-
  step "$name: listening on 127.0.0.1:$port"

  local body=$scratch/$name.body version
  version=$(curl -sS -k --http2 --max-time "$REQUEST_TIMEOUT" -o "$body" -w '%{http_version}' \
    "https://127.0.0.1:$port/hello") || fail "$name: curl https://127.0.0.1:$port/hello failed"
  [ "$version" = 2 ] || fail "$name: /hello came over HTTP/$version, not HTTP/2"
  [ "$(cat "$body")" = "hello from another thread" ] ||
    fail "$name: /hello answered '$(cat "$body")', not 'hello from another thread'"
  step "$name: GET /hello over HTTP/2: hello from another thread"

  kill -TERM "$server_pid" || fail "$name: could not send SIGTERM to $server_pid"
  timeout "$EXIT_TIMEOUT" tail --pid="$server_pid" -s 0.1 -f /dev/null ||
    fail "$name: still running ${EXIT_TIMEOUT}s after SIGTERM"
  rc=0
  wait "$server_pid" || rc=$?
  server_pid=
  [ "$rc" -eq 0 ] || fail "$name: exit status $rc after SIGTERM (stderr: $(cat "$err"))"
  kill "$drain_pid" 2>/dev/null || true # its stdout is closed: done or about to be
  wait "$drain_pid" 2>/dev/null || true
  drain_pid=
  rm -f "$fifo"
  step "$name: SIGTERM → exit status 0"
}

serve cmake-consumer "$cmake_bin"
serve pkgconfig-consumer "$pc_bin"
echo "-- consumer: OK (installed package, find_package and pkg-config consumers)"
