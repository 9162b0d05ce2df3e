#!/usr/bin/python3
"""Helpers for bench/run.sh (stdlib only, plus python3-h2 when present).

  cpu PID                  server CPU time in ns (sum of every thread's
                           /proc/PID/task/*/schedstat run time: user + system)
  rss PID                  VmRSS in KiB
  h2load OUT [LOG]         parse one h2load output (+ its --log-file) into
                           key=value words: reqs, secs, rps, mibps, p50_us, p99_us
  h2loadsum OUT...         several runs of one workload summed: reqs, secs, rps
  hold HOST PORT N tls|h2c open N HTTP/2 connections (TLS handshake with ALPN h2,
                           client preface + SETTINGS, server SETTINGS acked),
                           print "ready N" and hold them until stdin closes
  table RESULTS.tsv        medians per (workload, server) and ratios (ours:
                           h2loop-* and hello-*, against every other server)
"""

import os
import re
import select
import socket
import ssl
import statistics
import sys
import time


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # thread exited; its time is lost (servers here do not churn threads)
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def parse_h2load(out_path, log_path=None):
    text = open(out_path, errors="replace").read()
    res = {}
    m = re.search(r"finished in ([\d.]+)(us|ms|s),", text)
    if m:
        scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
        res["secs"] = float(m.group(1)) * scale
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
    if m:
        res["reqs"] = int(m.group(4))
        res["failed"] = int(m.group(5))
    m = re.search(r"traffic: .*?\((\d+)\) total", text)
    if m and "secs" in res and res["secs"] > 0:
        res["mibps"] = int(m.group(1)) / res["secs"] / (1 << 20)
    if "secs" in res and res.get("reqs") and res["secs"] > 0:
        res["rps"] = res["reqs"] / res["secs"]
    m = re.search(r"Cipher: (\S+)", text)
    if m:
        res["cipher"] = m.group(1)
    if log_path and os.path.exists(log_path):
        durs = []
        with open(log_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1].startswith("2"):
                    durs.append(int(parts[2]))
        durs.sort()
        if durs:
            res["p50_us"] = percentile(durs, 0.50)
            res["p99_us"] = percentile(durs, 0.99)
    return res


# --- holding idle connections -------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def client_preface():
    """Client preface + SETTINGS, built with python3-h2 when available."""
    try:
        import h2.config
        import h2.connection

        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        return conn.data_to_send()
    except ImportError:
        return PREFACE + EMPTY_SETTINGS


def read_server_settings(sock, deadline):
    """Reads frames until the server's (non-ACK) SETTINGS frame arrived."""
    buf = b""
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            ftype, flags = buf[3], buf[4]
            if len(buf) < 9 + length:
                break
            buf = buf[9 + length:]
            if ftype == 4 and not flags & 1:
                return True
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            select.select([sock], [], [], 0.05)
            continue
        if not chunk:
            return False
        buf += chunk
    return False


def hold(host, port, n, mode):
    ctx = None
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["h2"])
    preface = client_preface()
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            if s.selected_alpn_protocol() != "h2":
                raise SystemExit(f"ALPN: {s.selected_alpn_protocol()!r}")
        s.sendall(preface)
        if not read_server_settings(s, time.monotonic() + 10):
            raise SystemExit("no server SETTINGS")
        s.sendall(SETTINGS_ACK)
        socks.append(s)
    # Let the servers process the ACKs (and TLS session tickets settle).
    time.sleep(1.0)
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()  # held until the harness closes our stdin
    for s in socks:
        s.close()


# --- results table -----------------------------------------------------------

def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("req/s", "conn/s"):
        return f"{v:,.0f}"
    if unit == "MiB/s":
        return f"{v:,.0f}"
    if unit in ("us/req", "us/conn", "KiB/conn"):
        return f"{v:.1f}"
    if unit in ("Ir/req",):
        return f"{v:,.0f}"
    return f"{v:.0f}"


def table(path):
    # rows: workload metric unit server round value
    data = {}
    order_w, order_s = [], []
    units = {}
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        w, metric, unit, server, _rnd, value = line.rstrip("\n").split("\t")
        key = (w, metric)
        if key not in order_w:
            order_w.append(key)
        if server not in order_s:
            order_s.append(server)
        units[key] = unit
        try:
            data.setdefault(key, {}).setdefault(server, []).append(float(value))
        except ValueError:
            pass
    # ours: the h2loop server and the hello example (both backends each)
    ours = [s for s in order_s if s.startswith(("h2loop", "hello"))]
    anchors = [s for s in order_s if s not in ours]
    medians = {key: {s: statistics.median(v) for s, v in data[key].items() if v}
               for key in order_w}
    # a pair no workload has both sides of (hello-* vs nghttpd: the hello
    # servers serve no files, nghttpd no fixed answer) gets no column
    pairs = [(o, a) for o in ours for a in anchors
             if any(o in m and a in m for m in medians.values())]
    head = ["workload", "metric"] + order_s
    for o, a in pairs:
        head.append(f"{o.replace('h2loop-', '')}/{a}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for key in order_w:
        w, metric = key
        unit = units[key]
        med = medians[key]
        row = [w, f"{metric} ({unit})"] + [fmt(med.get(s), unit) for s in order_s]
        for o, a in pairs:
            if o in med and a in med and med[a] > 0:
                row.append(f"{med[o] / med[a]:.2f}")
            else:
                row.append("-")
        print("| " + " | ".join(row) + " |")
    rounds = max((len(v) for d in data.values() for v in d.values()), default=0)
    print(f"\nmedians of up to {rounds} interleaved rounds; ratio = h2loop (or hello) / anchor "
          "(higher is better for req/s, conn/s, MiB/s; lower is better for us/*, Ir/req, KiB/conn, latency)")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "cpu":
        print(cpu_ns(int(argv[2])))
    elif cmd == "rss":
        print(rss_kib(int(argv[2])))
    elif cmd == "h2load":
        res = parse_h2load(argv[2], argv[3] if len(argv) > 3 else None)
        print(" ".join(f"{k}={v}" for k, v in res.items()))
    elif cmd == "h2loadsum":
        # several h2load runs of one workload (churn batches): summed
        tot = {"reqs": 0, "secs": 0.0, "failed": 0}
        for path in argv[2:]:
            r = parse_h2load(path)
            for k in tot:
                tot[k] += r.get(k, 0)
        if tot["secs"] > 0:
            tot["rps"] = tot["reqs"] / tot["secs"]
        print(" ".join(f"{k}={v}" for k, v in tot.items()))
    elif cmd == "hold":
        hold(argv[2], int(argv[3]), int(argv[4]), argv[5])
    elif cmd == "table":
        table(argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
