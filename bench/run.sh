#!/usr/bin/env bash
# h2loop load harness: h2load against h2loop (epoll and libevent backends) and
# the anchors nginx, h2o and nghttpd, on loopback, same document root, same
# certificate, same TLS 1.3 cipher, servers pinned to CPU 1 and h2load to
# CPU 0, workloads interleaved (A B C D E, A B C D E, ...); plus the hello
# example (a fixed "hello, world" answer on the public API) against nginx's
# `return 200` and an h2o mruby handler; plus HTTP/1.1 keep-alive (h2load
# --h1, no pipelining) on the same listeners: ALPN http/1.1 over TLS, the
# cleartext port otherwise (nginx 1.22: a plain listener of its own); plus,
# when asked for, WebSocket echo (bench/ws_echo_client against
# `h2loop --websocket-echo /ws`, h2loop only). See bench/README.md.
#
#   bench/run.sh [--rounds N] [--scale F] [--servers "h2loop-epoll nginx ..."]
#                [--workloads "tls-1k h2c-1k ..."] [--idle-conns N]
#                [--no-memory] [--no-callgrind] [--no-install] [--no-build]
#                [--binary PATH] [--hello-binary PATH] [--ws-client PATH]
#                [--work DIR]
#
# Everything lives under the work dir (default /tmp/h2loop-bench); results:
# WORK/results.tsv (raw rows) and WORK/table.md (medians and ratios).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=/usr/bin/python3
LIB="$HERE/lib/benchlib.py"

ROUNDS=3
SCALE=1
SERVERS="h2loop-epoll h2loop-libevent nginx h2o nghttpd"
WORKLOADS="tls-1k h2c-1k tls-100k tls-10m tls-churn h2c-churn tls-lat tls-h1-1k h1c-1k"
# also: hello-epoll hello-libevent (servers), tls-hello h2c-hello and their
# HTTP/1.1 twins tls-h1-hello h1c-hello (workloads); ws-echo tls-ws-echo
# (workloads: WebSocket echo, h2loop-* only)
IDLE_CONNS=2000
DO_MEMORY=1
DO_CALLGRIND=1
DO_INSTALL=1
DO_BUILD=1
BINARY=""
HELLO_BINARY=""
WS_CLIENT=""
WORK=/tmp/h2loop-bench
CIPHER=TLS_AES_128_GCM_SHA256
SERVER_CPU=1
CLIENT_CPU=0
CHURN_BATCH=250     # connections per h2load run in the churn workloads
H2LOAD_TIMEOUT=120  # seconds; every h2load run is also bounded in count (-n)

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --no-memory) DO_MEMORY=0; shift ;;
    --no-callgrind) DO_CALLGRIND=0; shift ;;
    --no-install) DO_INSTALL=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --binary) BINARY=$2; shift 2 ;;
    --hello-binary) HELLO_BINARY=$2; shift 2 ;;
    --ws-client) WS_CLIENT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

log() { printf '== %s %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }
# n scaled by --scale, at least 1
scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

# ---------------------------------------------------------------- processes --
declare -a PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ install --
install_deps() {
  local need=(nghttp2-client nghttp2-server h2o nginx linux-perf valgrind openssl python3-h2 procps util-linux)
  local missing=() p
  for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  # policy-rc.d: do not let the packages start their system services.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Which servers answer which workloads: the file workloads need a document
# root, the hello workloads a fixed response (hello_path).
serves_files() { case "$1" in h2loop-*|nginx|h2o|nghttpd) return 0 ;; *) return 1 ;; esac; }
serves_hello() { case "$1" in hello-*|nginx|h2o) return 0 ;; *) return 1 ;; esac; }
is_hello_workload() { case "$1" in *-hello) return 0 ;; *) return 1 ;; esac; }
# HTTP/1.1: every server but nghttpd (HTTP/2 only). h2loop and the hello
# example answer it on their h2 listeners (ALPN http/1.1 over TLS, any
# cleartext connection that does not start with the h2 preface); so does h2o;
# nginx 1.22 over TLS (ALPN), in cleartext on a plain listener of its own
# (its `listen ... http2` without ssl is prior-knowledge h2 only).
serves_h1() { case "$1" in h2loop-*|hello-*|nginx|h2o) return 0 ;; *) return 1 ;; esac; }
is_h1_workload() { case "$1" in tls-h1-*|h1c-*) return 0 ;; *) return 1 ;; esac; }
# WebSocket echo (RFC 6455 over HTTP/1.1): h2loop's --websocket-echo endpoint.
# No anchor here has a WebSocket echo (nginx, h2o 2.2 and nghttpd have none).
is_ws_workload() { case "$1" in ws-echo|tls-ws-echo) return 0 ;; *) return 1 ;; esac; }
serves_ws() { case "$1" in h2loop-*) return 0 ;; *) return 1 ;; esac; }
any_ws_workload() {
  local w
  for w in $WORKLOADS; do if is_ws_workload "$w"; then return 0; fi; done
  return 1
}
# the server process (instance) a mode is answered by: tls, or the cleartext one
inst_of() { if [ "$1" = tls ]; then echo tls; else echo h2c; fi; }
# serves WORKLOAD SERVER: does SERVER answer WORKLOAD?
serves() {
  if is_ws_workload "$1"; then serves_ws "$2"; return; fi
  if is_h1_workload "$1"; then serves_h1 "$2" || return 1; fi
  if is_hello_workload "$1"; then serves_hello "$2"; else serves_files "$2"; fi
}
uses_server() {  # PREFIX: is any of $SERVERS named PREFIX-*?
  local s
  for s in $SERVERS; do case "$s" in "$1"-*) return 0 ;; esac; done
  return 1
}

# The h2loop server and the hello example come from the release preset's
# build (build/release), built here unless --no-build or given by --binary /
# --hello-binary. A binary only the unselected servers would run is not needed.
build() {
  local -a targets=()
  H2LOOP=${BINARY:-$REPO/build/release/server/h2loop}
  HELLO=${HELLO_BINARY:-$REPO/build/release/examples/hello}
  uses_server h2loop && [ -z "$BINARY" ] && targets+=(h2loop)
  uses_server hello && [ -z "$HELLO_BINARY" ] && targets+=(hello)
  WS_ECHO_CLIENT=${WS_CLIENT:-$REPO/build/release/bench/ws_echo_client}
  any_ws_workload && [ -z "$WS_CLIENT" ] && targets+=(ws_echo_client)
  if [ "$DO_BUILD" = 1 ] && [ ${#targets[@]} -gt 0 ]; then
    log "building ${targets[*]} (cmake preset release)"
    (cd "$REPO" && cmake --preset release >/dev/null && cmake --build --preset release --target "${targets[@]}")
  fi
  if uses_server h2loop; then [ -x "$H2LOOP" ] || die "no binary at $H2LOOP"; fi
  if uses_server hello; then [ -x "$HELLO" ] || die "no hello binary at $HELLO"; fi
  if any_ws_workload; then [ -x "$WS_ECHO_CLIENT" ] || die "no WebSocket client at $WS_ECHO_CLIENT"; fi
  return 0
}

# ------------------------------------------------------------------ prepare --
prepare() {
  rm -rf "$WORK"
  mkdir -p "$WORK"/{www,conf,logs,out,run,tmp}
  head -c 1024 /dev/urandom | base64 -w 76 | head -c 1024 >"$WORK/www/index.html"
  head -c $((100 * 1024)) /dev/urandom >"$WORK/www/100k.bin"
  head -c $((10 * 1024 * 1024)) /dev/urandom >"$WORK/www/10m.bin"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/conf/key.pem" -out "$WORK/conf/cert.pem" 2>/dev/null
  # The same TLS 1.3 suite for the servers without a knob of their own
  # (h2o 2.2, nghttpd): OpenSSL's system_default applies to every SSL_CTX.
  cat >"$WORK/conf/openssl.cnf" <<EOF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
CipherString = ECDHE+AESGCM:ECDHE+CHACHA20
Ciphersuites = $CIPHER
EOF
}

# port_of SERVER MODE (tls | h2c | h1c: cleartext HTTP/1.1, the h2c instance)
port_of() {
  local base
  case "$1" in
    h2loop-epoll) base=18410 ;; h2loop-libevent) base=18420 ;; nginx) base=18430 ;;
    h2o) base=18440 ;; nghttpd) base=18450 ;;
    hello-epoll) base=18460 ;; hello-libevent) base=18470 ;; *) die "unknown server $1" ;;
  esac
  case "$2" in
    tls) echo "$base" ;;
    h1c) if [ "$1" = nginx ]; then echo $((base + 2)); else echo $((base + 1)); fi ;;
    *) echo $((base + 1)) ;;
  esac
}

write_nginx_conf() {  # MODE MASTER(on|off) -> path
  local mode=$1 master=$2 port conf listen ssl=""
  port=$(port_of nginx "$mode")
  conf=$WORK/conf/nginx-$mode-$master.conf
  if [ "$mode" = tls ]; then
    listen="listen 127.0.0.1:$port ssl http2;"
    ssl="ssl_certificate $WORK/conf/cert.pem; ssl_certificate_key $WORK/conf/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_conf_command Ciphersuites $CIPHER;"
  else
    # h2c prior knowledge; nginx 1.22 cannot tell HTTP/1.1 from the h2
    # preface on one cleartext port, so HTTP/1.1 gets a plain listener of
    # its own in the same server block (same worker process).
    listen="listen 127.0.0.1:$port http2; listen 127.0.0.1:$(port_of nginx h1c);"
  fi
  cat >"$conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
master_process $master;
pid $WORK/run/nginx-$mode.pid;
error_log $WORK/logs/nginx-$mode.err warn;
events { worker_connections 20000; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $WORK/tmp/nginx-body-$mode;
  proxy_temp_path $WORK/tmp/nginx-proxy-$mode;
  fastcgi_temp_path $WORK/tmp/nginx-fcgi-$mode;
  uwsgi_temp_path $WORK/tmp/nginx-uwsgi-$mode;
  scgi_temp_path $WORK/tmp/nginx-scgi-$mode;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  http2_max_concurrent_streams 100;
  # h2loop, h2o and nghttpd keep open file descriptors cached; so does this.
  open_file_cache max=1000 inactive=600s;
  open_file_cache_valid 600s;
  server {
    $listen
    $ssl
    root $WORK/www;
    # The hello workloads: a fixed answer from the configuration, no file.
    # Asked for "/" (hello_path: the same request the hello example gets);
    # /hello answers the same. Exact matches: the file workloads never ask
    # for either.
    location = / {
      default_type text/plain;
      return 200 "hello, world\n";
    }
    location = /hello {
      default_type text/plain;
      return 200 "hello, world\n";
    }
  }
}
EOF
  echo "$conf"
}

write_h2o_conf() {  # MODE -> path
  local mode=$1 port conf
  port=$(port_of h2o "$mode")
  conf=$WORK/conf/h2o-$mode.conf
  {
    cat <<EOF
user: root
num-threads: 1
max-connections: 30000
http2-idle-timeout: 600
http2-max-concurrent-requests-per-connection: 100
pid-file: $WORK/run/h2o-$mode.pid
error-log: $WORK/logs/h2o-$mode.err
listen:
  host: 127.0.0.1
  port: $port
EOF
    if [ "$mode" = tls ]; then
      cat <<EOF
  ssl:
    certificate-file: $WORK/conf/cert.pem
    key-file: $WORK/conf/key.pem
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
EOF
    fi
    cat <<EOF
hosts:
  default:
    paths:
      # The hello workloads. h2o 2.2 has no directive for a fixed response;
      # Debian's h2o is built with mruby ("mruby: YES" in h2o --version), so a
      # Rack-style handler answers it (headers and body built once, at load).
      /hello:
        mruby.handler: |
          HELLO_HEADERS = {"content-type" => "text/plain"}.freeze
          HELLO_BODY = ["hello, world\n"].freeze
          Proc.new do |env|
            [200, HELLO_HEADERS, HELLO_BODY]
          end
      /:
        file.dir: $WORK/www
EOF
  } >"$conf"
  echo "$conf"
}

# server_cmd SERVER MODE [master on|off] -> prints the argv, one per line
server_cmd() {
  local s=$1 mode=$2 master=${3:-on} port
  port=$(port_of "$s" "$mode")
  case "$s" in
    h2loop-epoll|h2loop-libevent)
      printf '%s\n' "$H2LOOP" --listen "127.0.0.1:$port" --root "$WORK/www" \
        --event-loop "${s#h2loop-}" --workers 1 --max-connections 20000 \
        --max-concurrent-streams 100 --idle-timeout 600 --log-level warn
      # the WebSocket echo endpoint, only when a ws workload is selected (it
      # also makes HTTP/2 advertise SETTINGS_ENABLE_CONNECT_PROTOCOL)
      any_ws_workload && printf '%s\n' --websocket-echo /ws
      [ "$mode" = tls ] && printf '%s\n' --cert "$WORK/conf/cert.pem" --key "$WORK/conf/key.pem" \
        --tls13-ciphers "$CIPHER"
      ;;
    hello-epoll|hello-libevent)
      # The example has no knobs for the rest: its defaults are 100 concurrent
      # streams (as above), 10,000 connections, 60 s idle timeout, and the TLS
      # 1.3 suite comes from OPENSSL_CONF (see prepare).
      printf '%s\n' "$HELLO" --listen "127.0.0.1:$port" --event-loop "${s#hello-}" \
        --workers 1 --log-level warn
      [ "$mode" = tls ] && printf '%s\n' --cert "$WORK/conf/cert.pem" --key "$WORK/conf/key.pem"
      ;;
    nginx) printf '%s\n' nginx -e "$WORK/logs/nginx-$mode.err" -p "$WORK" -c "$(write_nginx_conf "$mode" "$master")" ;;
    h2o) printf '%s\n' h2o -c "$(write_h2o_conf "$mode")" ;;
    nghttpd)
      printf '%s\n' nghttpd -n 1 -a 127.0.0.1 -m 100 -d "$WORK/www"
      if [ "$mode" = tls ]; then
        printf '%s\n' "$port" "$WORK/conf/key.pem" "$WORK/conf/cert.pem"
      else
        printf '%s\n' --no-tls "$port"
      fi
      ;;
  esac
  return 0
}

wait_port() {
  local port=$1 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# start_server SERVER MODE [wrapper...]: sets SPID (the process doing the
# serving: nginx's worker) and LPID (the process we started).
start_server() {
  local s=$1 mode=$2; shift 2
  local master=on
  [ $# -gt 0 ] && master=off  # under a wrapper (valgrind) nginx runs single-process
  local -a argv
  mapfile -t argv < <(server_cmd "$s" "$mode" "$master")
  local port
  port=$(port_of "$s" "$mode")
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && die "port $port already in use"
  OPENSSL_CONF=$WORK/conf/openssl.cnf taskset -c "$SERVER_CPU" "$@" "${argv[@]}" \
    >"$WORK/logs/$s-$mode.out" 2>&1 </dev/null &
  LPID=$!
  PIDS+=("$LPID")
  wait_port "$port" || { cat "$WORK/logs/$s-$mode.out" >&2; die "$s ($mode) did not start"; }
  SPID=$LPID
  if [ "$s" = nginx ] && [ "$master" = on ]; then
    local i
    for i in $(seq 1 100); do
      SPID=$(pgrep -P "$LPID" | head -1 || true)
      [ -n "$SPID" ] && break
      sleep 0.05
    done
    [ -n "$SPID" ] || die "nginx worker not found"
    PIDS+=("$SPID")
  fi
}

stop_server() {  # LPID
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
}

# The path of the fixed response: the hello example routes exactly "/", and
# nginx answers it there too (an exact location), so both get the same
# request. h2o's paths are prefixes: a handler at "/" would sit in front of
# every file, so h2o answers at /hello. (h2load never indexes :path in
# HPACK: "/" is 1 byte per request, "/hello" a 7-byte literal; for nginx
# that difference alone was ~500 instructions per request.)
hello_path() { case "$1" in h2o) echo /hello ;; *) echo / ;; esac; }
# A path every server answers with 200, for warm-ups.
warm_path() { if serves_files "$1"; then echo /index.html; else hello_path "$1"; fi; }

url_of() {  # SERVER MODE PATH
  local scheme=http
  [ "$2" = tls ] && scheme=https
  echo "$scheme://127.0.0.1:$(port_of "$1" "$2")$3"
}

h2load_run() {  # OUT LOG h2load-args...
  local out=$1 log=$2; shift 2
  local -a logarg=()
  [ -n "$log" ] && logarg=(--log-file="$log")
  timeout "$H2LOAD_TIMEOUT" taskset -c "$CLIENT_CPU" h2load --tls13-ciphers="$CIPHER" "${logarg[@]}" "$@" \
    >"$out" 2>&1 || echo "h2load exit $?" >>"$out"
}

emit() {  # workload metric unit server round value
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/results.tsv"
}

# ---------------------------------------------------------------- workloads --
# workload_spec NAME -> "MODE PATH N h2load-args" (N already scaled)
workload_spec() {
  case "$1" in
    tls-1k) echo "tls /index.html $(scaled 300000) -c 32 -m 16" ;;
    h2c-1k) echo "h2c /index.html $(scaled 300000) -c 32 -m 16" ;;
    tls-100k) echo "tls /100k.bin $(scaled 20000) -c 32 -m 16" ;;
    tls-10m) echo "tls /10m.bin $(scaled 100) -c 4 -m 1" ;;
    # One request per connection: -c B -n B, so every client makes one
    # connection (TLS handshake + h2 preface + SETTINGS), one GET, then closes;
    # repeated in batches of B=$CHURN_BATCH (see run_workload) so that the
    # simultaneous connects never overflow a listen backlog (SYN retries would
    # add 1 s stalls and measure the backlog, not the server).
    tls-churn) echo "tls /index.html $(scaled 3000) -m 1 -c=N" ;;
    h2c-churn) echo "h2c /index.html $(scaled 3000) -m 1 -c=N" ;;
    # Light load: one connection, one stream at a time (latency, not capacity).
    tls-lat) echo "tls /index.html $(scaled 20000) -c 1 -m 1" ;;
    # A fixed 13-byte text/plain answer from a handler (nginx: `return 200`),
    # shaped like tls-1k/h2c-1k; HELLO is each server's hello_path.
    tls-hello) echo "tls HELLO $(scaled 300000) -c 32 -m 16" ;;
    h2c-hello) echo "h2c HELLO $(scaled 300000) -c 32 -m 16" ;;
    # HTTP/1.1 keep-alive: 32 persistent connections, one request in flight
    # on each (no pipelining, as browsers and most clients use HTTP/1.1),
    # so 32 in flight where the h2 twins have 512; fewer requests per run
    # (h2load pays a round trip per request). TLS: ALPN http/1.1 (h2load
    # --h1 offers only that); h1c: cleartext, no upgrade.
    tls-h1-1k) echo "tls /index.html $(scaled 100000) --h1 -c 32 -m 1" ;;
    h1c-1k) echo "h1c /index.html $(scaled 100000) --h1 -c 32 -m 1" ;;
    tls-h1-hello) echo "tls HELLO $(scaled 100000) --h1 -c 32 -m 1" ;;
    h1c-hello) echo "h1c HELLO $(scaled 100000) --h1 -c 32 -m 1" ;;
    # WebSocket echo over HTTP/1.1 (bench/ws_echo_client): 32 connections,
    # each with 16 messages of 1 KiB in flight; N echoes in all. Cleartext on
    # the h2c instance's port, or TLS (ALPN http/1.1).
    ws-echo) echo "h1c /ws $(scaled 500000) -c 32 -w 16 -s 1024" ;;
    tls-ws-echo) echo "tls /ws $(scaled 500000) -c 32 -w 16 -s 1024" ;;
    *) die "unknown workload $1" ;;
  esac
}

ws_url() {  # SERVER MODE PATH
  local scheme=ws
  [ "$2" = tls ] && scheme=wss
  echo "$scheme://127.0.0.1:$(port_of "$1" "$2")$3"
}

ws_run() {  # OUT ws_echo_client-args...
  local out=$1; shift
  timeout "$H2LOAD_TIMEOUT" taskset -c "$CLIENT_CPU" "$WS_ECHO_CLIENT" "$@" >"$out" 2>&1 ||
    echo "ws_echo_client exit $?" >>"$out"
}

# A ws workload: messages/s, payload MiB/s (each way), server CPU per echoed
# message (one message in, the same out) in ns, server busy %.
run_ws_workload() {  # WORKLOAD SERVER ROUND
  local w=$1 s=$2 r=$3
  local mode path n args
  read -r mode path n args <<<"$(workload_spec "$w")"
  local pid=${SERVER_PID[$s-$(inst_of "$mode")]}
  local out=$WORK/out/$w-$s-$r.txt
  local c0 c1 t0 t1
  c0=$($PY "$LIB" cpu "$pid")
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  ws_run "$out" --url "$(ws_url "$s" "$mode" "$path")" -n "$n" $args
  t1=$(date +%s%N)
  c1=$($PY "$LIB" cpu "$pid")
  local msgs=0 msgps="" mibps="" lost=0 errors=1 kv
  local -a kvs=()
  read -r -a kvs <<<"$(sed -n 's/^result //p' "$out")"
  for kv in "${kvs[@]}"; do
    case "$kv" in
      messages=*) msgs=${kv#*=} ;; msgps=*) msgps=${kv#*=} ;; mibps=*) mibps=${kv#*=} ;;
      lost=*) lost=${kv#*=} ;; errors=*) errors=${kv#*=} ;;
    esac
  done
  if [ "$msgs" -ne "$n" ] || [ "$lost" -ne 0 ] || [ "$errors" -ne 0 ]; then
    log "WARNING: $w $s round $r: $msgs of $n echoed ($lost lost, $errors errors), see $out"
  fi
  local ns_per util
  ns_per=$(awk -v c=$((c1 - c0)) -v n="$msgs" 'BEGIN { if (n > 0) printf "%.0f", c / n; else print "nan" }')
  util=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", 100 * c / t }')
  emit "$w" "throughput" "msg/s" "$s" "$r" "$msgps"
  emit "$w" "payload each way" "MiB/s" "$s" "$r" "$mibps"
  emit "$w" "server CPU" "ns/msg" "$s" "$r" "$ns_per"
  emit "$w" "server CPU busy" "%" "$s" "$r" "$util"
  printf '   %-12s %-16s r%s  %8s msg/s  cpu %7s ns/msg  busy %5s%%  %s MiB/s\n' \
    "$w" "$s" "$r" "${msgps%.*}" "$ns_per" "$util" "${mibps%.*}" >&2
}

run_workload() {  # WORKLOAD SERVER ROUND
  local w=$1 s=$2 r=$3
  if is_ws_workload "$w"; then run_ws_workload "$w" "$s" "$r"; return; fi
  local mode path n args
  read -r mode path n args <<<"$(workload_spec "$w")"
  args=${args//-c=N/-c $n}
  [ "$path" = HELLO ] && path=$(hello_path "$s")
  local pid=${SERVER_PID[$s-$(inst_of "$mode")]}
  local out=$WORK/out/$w-$s-$r.txt log=""
  case "$w" in tls-1k|h2c-1k|tls-lat|tls-hello|h2c-hello|tls-h1-*|h1c-*) log=$WORK/out/$w-$s-$r.log ;; esac
  local c0 c1 t0 t1
  c0=$($PY "$LIB" cpu "$pid")
  t0=$(date +%s%N)
  local parsed
  case "$w" in
    *-churn)
      local b=$CHURN_BATCH done=0 k=0 m
      [ "$n" -lt "$b" ] && b=$n
      local -a outs=()
      while [ "$done" -lt "$n" ]; do
        m=$((n - done < b ? n - done : b))
        h2load_run "$out.$k" "" -n "$m" -c "$m" -m 1 "$(url_of "$s" "$mode" "$path")"
        outs+=("$out.$k")
        done=$((done + m))
        k=$((k + 1))
      done
      t1=$(date +%s%N)
      c1=$($PY "$LIB" cpu "$pid")
      parsed=$($PY "$LIB" h2loadsum "${outs[@]}")
      cat "${outs[@]}" >"$out"
      rm -f "${outs[@]}"
      ;;
    *)
      # shellcheck disable=SC2086
      h2load_run "$out" "$log" -n "$n" $args "$(url_of "$s" "$mode" "$path")"
      t1=$(date +%s%N)
      c1=$($PY "$LIB" cpu "$pid")
      parsed=$($PY "$LIB" h2load "$out" "$log")
      ;;
  esac
  local reqs=0 secs=0 rps="" mibps="" p50="" p99="" failed=0 cipher=""
  local kv
  for kv in $parsed; do
    case "$kv" in
      reqs=*) reqs=${kv#*=} ;; secs=*) secs=${kv#*=} ;; rps=*) rps=${kv#*=} ;;
      mibps=*) mibps=${kv#*=} ;; p50_us=*) p50=${kv#*=} ;; p99_us=*) p99=${kv#*=} ;;
      failed=*) failed=${kv#*=} ;; cipher=*) cipher=${kv#*=} ;;
    esac
  done
  [ -n "$log" ] && rm -f "$log"
  if [ "$reqs" -ne "$n" ] || [ "$failed" -ne 0 ]; then
    log "WARNING: $w $s round $r: $reqs of $n succeeded ($failed failed), see $out"
  fi
  if [ "$mode" = tls ] && [ -n "$cipher" ] && [ "$cipher" != "$CIPHER" ]; then
    log "WARNING: $w $s negotiated $cipher"
  fi
  if is_h1_workload "$w"; then
    local proto
    proto=$(sed -n 's/^Application protocol: *//p' "$out" | head -1)
    [ "$proto" = http/1.1 ] || log "WARNING: $w $s: application protocol '${proto}', not http/1.1"
  fi
  local cpu_us_per util
  cpu_us_per=$(awk -v c=$((c1 - c0)) -v n="$reqs" 'BEGIN { if (n > 0) printf "%.3f", c / n / 1000; else print "nan" }')
  util=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", 100 * c / t }')
  case "$w" in
    tls-1k|h2c-1k|tls-hello|h2c-hello|tls-h1-1k|h1c-1k|tls-h1-hello|h1c-hello)
      emit "$w" "throughput" "req/s" "$s" "$r" "$rps"
      emit "$w" "server CPU" "us/req" "$s" "$r" "$cpu_us_per"
      emit "$w" "server CPU busy" "%" "$s" "$r" "$util"
      emit "$w" "latency p50" "us" "$s" "$r" "$p50"
      emit "$w" "latency p99" "us" "$s" "$r" "$p99"
      ;;
    tls-100k)
      emit "$w" "throughput" "req/s" "$s" "$r" "$rps"
      emit "$w" "server CPU" "us/req" "$s" "$r" "$cpu_us_per"
      ;;
    tls-10m)
      emit "$w" "throughput" "MiB/s" "$s" "$r" "$mibps"
      emit "$w" "server CPU" "us/req" "$s" "$r" "$cpu_us_per"
      ;;
    tls-churn|h2c-churn)
      emit "$w" "new connections" "conn/s" "$s" "$r" "$rps"
      emit "$w" "server CPU" "us/conn" "$s" "$r" "$cpu_us_per"
      ;;
    tls-lat)
      emit "$w" "latency p50" "us" "$s" "$r" "$p50"
      emit "$w" "latency p99" "us" "$s" "$r" "$p99"
      emit "$w" "server CPU" "us/req" "$s" "$r" "$cpu_us_per"
      ;;
  esac
  printf '   %-12s %-16s r%s  %8s req/s  cpu %7s us/req  busy %5s%%  %s\n' \
    "$w" "$s" "$r" "${rps%.*}" "$cpu_us_per" "$util" "${mibps:+${mibps%.*} MiB/s}" >&2
}

# ---------------------------------------------------------------- phases ----
declare -A SERVER_PID=()

phase_load() {
  local s mode w any_h1=0
  for w in $WORKLOADS; do if is_h1_workload "$w"; then any_h1=1; fi; done
  log "starting servers (pinned to CPU $SERVER_CPU)"
  for s in $SERVERS; do
    for mode in tls h2c; do
      start_server "$s" "$mode"
      SERVER_PID[$s-$mode]=$SPID
      # warm-up: file cache, TLS context, allocator
      h2load_run "$WORK/out/warmup-$s-$mode.txt" "" -n 2000 -c 4 -m 8 "$(url_of "$s" "$mode" "$(warm_path "$s")")"
      grep -q "2000 succeeded" "$WORK/out/warmup-$s-$mode.txt" ||
        { cat "$WORK/out/warmup-$s-$mode.txt" >&2; die "$s ($mode) warm-up failed"; }
      # and its HTTP/1.1 path, when an HTTP/1.1 workload is selected
      if [ "$any_h1" = 1 ] && serves_h1 "$s"; then
        local hmode=$mode
        [ "$mode" = h2c ] && hmode=h1c
        h2load_run "$WORK/out/warmup-h1-$s-$hmode.txt" "" --h1 -n 2000 -c 4 -m 1 \
          "$(url_of "$s" "$hmode" "$(warm_path "$s")")"
        grep -q "2000 succeeded" "$WORK/out/warmup-h1-$s-$hmode.txt" ||
          { cat "$WORK/out/warmup-h1-$s-$hmode.txt" >&2; die "$s ($hmode) HTTP/1.1 warm-up failed"; }
      fi
      # and its WebSocket echo, when a ws workload is selected
      if any_ws_workload && serves_ws "$s"; then
        local wmode=$mode
        [ "$mode" = h2c ] && wmode=h1c
        ws_run "$WORK/out/warmup-ws-$s-$wmode.txt" --url "$(ws_url "$s" "$wmode" /ws)" \
          -n 20000 -c 4 -w 8 -s 1024
        grep -q "^result messages=20000 .* lost=0 errors=0" "$WORK/out/warmup-ws-$s-$wmode.txt" ||
          { cat "$WORK/out/warmup-ws-$s-$wmode.txt" >&2; die "$s ($wmode) WebSocket warm-up failed"; }
      fi
    done
  done
  local r i k s2
  local -a servers
  for r in $(seq 1 "$ROUNDS"); do
    log "round $r of $ROUNDS"
    for w in $WORKLOADS; do
      # the servers that answer this workload
      servers=()
      for s2 in $SERVERS; do
        serves "$w" "$s2" && servers+=("$s2")
      done
      k=${#servers[@]}
      [ "$k" -gt 0 ] || continue
      # rotate the starting server each round (A B C D E, B C D E A, ...)
      for i in $(seq 0 $((k - 1))); do
        run_workload "$w" "${servers[$(((i + r - 1) % k))]}" "$r"
      done
    done
  done
  cleanup
}

phase_memory() {
  local s mode before after n=$IDLE_CONNS
  log "idle memory: $n idle HTTP/2 connections per server (fresh process each)"
  for s in $SERVERS; do
    for mode in tls h2c; do
      start_server "$s" "$mode"
      h2load_run "$WORK/out/memwarm-$s-$mode.txt" "" -n 200 -c 2 -m 4 "$(url_of "$s" "$mode" "$(warm_path "$s")")"
      sleep 0.3
      before=$($PY "$LIB" rss "$SPID")
      local fifo=$WORK/run/hold-$s-$mode
      rm -f "$fifo"
      mkfifo "$fifo"
      taskset -c "$CLIENT_CPU" "$PY" "$LIB" hold 127.0.0.1 "$(port_of "$s" "$mode")" "$n" "$mode" \
        <"$fifo" >"$WORK/out/hold-$s-$mode.txt" 2>&1 &
      local hp=$!
      PIDS+=("$hp")
      exec 7>"$fifo"  # holds the helper's stdin open
      local i ok=0
      for i in $(seq 1 1200); do
        if grep -q '^ready' "$WORK/out/hold-$s-$mode.txt" 2>/dev/null; then ok=1; break; fi
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
      done
      if [ "$ok" = 1 ]; then
        after=$($PY "$LIB" rss "$SPID")
        local per
        per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
        emit "idle-$mode" "RSS growth" "KiB/conn" "$s" 1 "$per"
        printf '   idle-%s %-16s %s KiB before, %s KiB after %s conns: %s KiB/conn\n' \
          "$mode" "$s" "$before" "$after" "$n" "$per" >&2
      else
        log "WARNING: idle $s $mode: helper failed: $(tail -2 "$WORK/out/hold-$s-$mode.txt")"
      fi
      exec 7>&-
      wait "$hp" 2>/dev/null || true
      stop_server "$LPID"
    done
  done
}

# Server instructions per request, user space only, counted by callgrind (the
# perf "instructions" counter is not available on every VM). Three callgrind
# dumps (counters are zeroed after each): start-up + warm-up | a run of N/4
# requests | a run of N requests. Ir/req = (Ir3 - Ir2) / (req3 - req2): both
# runs open the same 32 connections, so handshakes and teardown cancel out.
# Four request kinds, each measured if a workload of its kind is selected:
# the 1 KiB file (/index.html; the file servers) and the fixed hello answer
# (hello_path; the hello servers, nginx and h2o), over HTTP/2 (-c 32 -m 16;
# rows tls-1k, h2c-1k, tls-hello, h2c-hello) and over HTTP/1.1 keep-alive
# (--h1 -c 32 -m 1; rows tls-h1-1k, h1c-1k, tls-h1-hello, h1c-hello).
cg_dump() {  # PID PORT: dump, poking the server with bare TCP connects so it
  # reaches a point where callgrind reads its command file (a process blocked
  # in epoll_wait does not).
  callgrind_control -d "$1" >/dev/null 2>&1 &
  local cc=$! i
  for i in $(seq 1 300); do
    kill -0 "$cc" 2>/dev/null || break
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null || true
    sleep 0.1
  done
  wait "$cc" 2>/dev/null || true
}

cg_total() {  # callgrind output file -> total Ir
  sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -1
}

phase_callgrind() {
  command -v valgrind >/dev/null || { log "no valgrind: skipping instruction counts"; return 0; }
  local s mode n n1
  n=$(scaled 20000)
  n1=$(((n + 3) / 4))
  local w kinds="" kind job
  for w in $WORKLOADS; do
    is_ws_workload "$w" && continue  # not measured under callgrind
    if is_hello_workload "$w"; then kind=hello; else kind=1k; fi
    if is_h1_workload "$w"; then kind=h1-$kind; fi
    case " $kinds " in *" $kind "*) ;; *) kinds="$kinds $kind" ;; esac
  done
  [ -n "$kinds" ] || return 0
  local -a jobs=()  # "KIND SERVER"
  for kind in $kinds; do
    for s in $SERVERS; do
      # a workload of this kind, to ask serves()
      case "$kind" in 1k) w=tls-1k ;; hello) w=tls-hello ;; h1-1k) w=tls-h1-1k ;; h1-hello) w=tls-h1-hello ;; esac
      serves "$w" "$s" || continue
      jobs+=("$kind $s")
    done
  done
  log "instructions per request under callgrind ($n minus $n1 requests, -c 32, h2 -m 16, h1 -m 1;${kinds})"
  for job in "${jobs[@]}"; do
    read -r kind s <<<"$job"
    local modes="tls h2c" row what=${kind#h1-} hargs="-c 32 -m 16" wargs="-c 4 -m 8"
    case "$kind" in h1-*) modes="tls h1c" hargs="--h1 -c 32 -m 1" wargs="--h1 -c 4 -m 1" ;; esac
    for mode in $modes; do
      local inst prefix=$WORK/out/callgrind-$kind-$s-$mode port url
      inst=$(inst_of "$mode")
      # the row: tls-1k, h2c-hello, tls-h1-1k, h1c-hello, ...
      case "$kind-$mode" in h1-*-tls) row=tls-h1-$what ;; *) row=$mode-$what ;; esac
      rm -f "$prefix".*
      port=$(port_of "$s" "$inst")
      if [ "$what" = hello ]; then url=$(url_of "$s" "$mode" "$(hello_path "$s")"); else url=$(url_of "$s" "$mode" /index.html); fi
      # valgrind counts every byte-iteration of `rep movsb` as one instruction (hardware
      # counters count the instruction once), so glibc's large memcpy (rep movsb from 2-4 KiB
      # up) would weigh ~1 instruction per byte. The threshold moved out of reach makes every
      # server's memcpy use the vector loop, whose count matches what the CPU executes.
      start_server "$s" "$inst" env GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2000000000 \
        valgrind --tool=callgrind --callgrind-out-file="$prefix.%p" \
        --dump-line=no --compress-strings=no
      # shellcheck disable=SC2086
      {
        h2load_run "$WORK/out/cgwarm-$kind-$s-$mode.txt" "" -n 500 $wargs "$url"
        cg_dump "$SPID" "$port"
        h2load_run "$WORK/out/cg1-$kind-$s-$mode.txt" "" -n "$n1" $hargs "$url"
        cg_dump "$SPID" "$port"
        h2load_run "$WORK/out/cg2-$kind-$s-$mode.txt" "" -n "$n" $hargs "$url"
        cg_dump "$SPID" "$port"
      }
      local d2 d3 r1 r2
      d2=$(ls -1 "$prefix".*.2 2>/dev/null | head -1 || true)
      d3=$(ls -1 "$prefix".*.3 2>/dev/null | head -1 || true)
      r1=$($PY "$LIB" h2load "$WORK/out/cg1-$kind-$s-$mode.txt" | tr ' ' '\n' | sed -n 's/^reqs=//p')
      r2=$($PY "$LIB" h2load "$WORK/out/cg2-$kind-$s-$mode.txt" | tr ' ' '\n' | sed -n 's/^reqs=//p')
      if [ -n "$d2" ] && [ -n "$d3" ] && [ "${r1:-0}" -gt 0 ] && [ "${r2:-0}" -gt "${r1:-0}" ]; then
        local i2 i3 per
        i2=$(cg_total "$d2")
        i3=$(cg_total "$d3")
        per=$(awk -v a="$i3" -v b="$i2" -v n="$((r2 - r1))" 'BEGIN { printf "%.0f", (a - b) / n }')
        emit "$row-callgrind" "instructions (user)" "Ir/req" "$s" 1 "$per"
        printf '   callgrind %-9s %-16s (%s - %s) Ir / (%s - %s) req = %s Ir/req\n' \
          "$row" "$s" "$i3" "$i2" "$r2" "$r1" "$per" >&2
      else
        log "WARNING: callgrind $kind $s $mode: missing dumps or requests (see $prefix.*)"
      fi
      stop_server "$LPID"
    done
  done
}

# -------------------------------------------------------------------- main --
main() {
  [ "$(ulimit -Hn)" -ge 20000 ] || die "need a hard RLIMIT_NOFILE >= 20000 (ulimit -Hn)"
  ulimit -n 20000
  [ "$DO_INSTALL" = 1 ] && install_deps
  build
  prepare
  : >"$WORK/results.tsv"
  local t0=$SECONDS
  {
    echo "# h2loop bench $(date -u +%FT%TZ) rounds=$ROUNDS scale=$SCALE"
    local what
    local commit
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
    # a given binary: its path and build (mtime) time; the tree may have moved on since
    if [ -n "$BINARY" ]; then what="binary $BINARY (built $(date -u -r "$BINARY" +%FT%TZ)), tree at $commit"; else what="$commit"; fi
    if uses_server hello; then
      if [ -n "$HELLO_BINARY" ]; then
        what="$what; hello binary $HELLO_BINARY (built $(date -u -r "$HELLO_BINARY" +%FT%TZ))"
      else
        what="$what; hello $commit"
      fi
    fi
    echo "# h2loop $what; $(nginx -v 2>&1); $(h2o --version 2>&1 | head -1); $(nghttpd --version 2>&1 | head -1); $(h2load --version 2>&1 | head -1)"
  } >"$WORK/header.txt"
  [ "$DO_MEMORY" = 1 ] && phase_memory
  phase_load
  [ "$DO_CALLGRIND" = 1 ] && phase_callgrind
  {
    cat "$WORK/header.txt"
    echo
    $PY "$LIB" table "$WORK/results.tsv"
  } >"$WORK/table.md"
  echo
  cat "$WORK/table.md"
  log "done in $((SECONDS - t0)) s; raw rows: $WORK/results.tsv"
}

main
