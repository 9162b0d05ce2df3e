"""h2loop behind HAProxy: a rolling restart under load loses no request, and
the instances see the real client address (PROXY protocol v2).

Three h2loop instances on ephemeral ports with --proxy-protocol-from
127.0.0.0/8, HAProxy (Debian's 2.6, /usr/sbin/haproxy) in front with a
configuration generated from deploy/haproxy.cfg (ports, certificate, and for
H2LOOP_TRANSPORT=tls TLS instead of h2c to the instances). Clients connect to
HAProxy over TLS from 127.0.0.2 (HTTP/1.1 keep-alive and HTTP/2) while each
instance in turn gets SIGTERM, drains, exits, and starts again on its port;
the next one is restarted only once HAProxy sends client traffic to the new
process. Then: zero failed requests, and every client request in the
instances' access logs came from 127.0.0.2 (not HAProxy's 127.0.0.1).
Skipped when HAProxy is not installed.
"""

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                        "haproxy.cfg")
CLIENT_IP = "127.0.0.2"
CHECK_PATH = "/index.html"      # HAProxy's health checks
CLIENT_PATH = "/sub/index.html"  # the clients' requests
INSTANCES = 3
TARGET_REQUESTS = 3000
LOAD_RATE = 100        # requests per second per client thread (paced, bounded)
DEADLINE = 120         # seconds for the whole scenario


class Proc:
    """A process whose stderr is collected line by line; waits are on lines."""

    def __init__(self, args, name):
        self.name = name
        self.args = args
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        self.proc.stderr.close()
        with self.cond:
            self.cond.notify_all()

    def text(self):
        with self.cond:
            return "".join(self.lines)

    def count(self, pattern):
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if rx.search(line))

    def wait_line(self, pattern, count=1, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in (rx.search(line) for line in self.lines) if m]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError("%s: no line /%s/ (x%d) within %ss:\n%s" % (
                        self.name, pattern, count, timeout, "".join(self.lines)[-4000:]))
                self.cond.wait(min(left, 0.5))

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_h2loop(port, index):
    args = [harness.BIN, "--listen", "127.0.0.1:%d" % port, "--root", harness.document_root(),
            "--event-loop", harness.LOOP, "--log-level", "info", "--access-log",
            "--proxy-protocol-from", "127.0.0.0/8", "--drain-timeout", "5"]
    if harness.TLS:
        cert, key = harness.certificate()
        args += ["--cert", cert, "--key", key]
    p = Proc(args, "h2loop%d" % index)
    m = p.wait_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=15)
    p.port = int(m.group(1))
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_config(front_port, cert_pem, ports):
    with open(TEMPLATE) as f:
        text = f.read()
    values = {"H2LOOP_FRONT": "127.0.0.1:%d" % front_port, "H2LOOP_CERT": cert_pem,
              "H2LOOP_CHECK": CHECK_PATH}
    for i, p in enumerate(ports, 1):
        values["H2LOOP_SERVER%d" % i] = "127.0.0.1:%d" % p
    for k, v in values.items():
        text = text.replace("${%s}" % k, v)
    if harness.TLS:
        # Re-encryption to the instances, as the template's comment says.
        assert " proto h2 " in text
        text = text.replace(" proto h2 ", " ssl verify none alpn h2 check-ssl check-alpn http/1.1 ")
    assert not [l for l in text.splitlines() if "${" in l and not l.lstrip().startswith("#")], text
    return text


class Load:
    """Client threads from 127.0.0.2 through HAProxy, paced, until stopped."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.h2ctx = harness.tls_context(("h2",))
        self.threads = [threading.Thread(target=self._http1, args=(i,), daemon=True)
                        for i in range(3)]
        self.threads.append(threading.Thread(target=self._h2, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def total(self):
        with self.lock:
            return self.ok + len(self.failed)

    def _count(self, ok, what=None):
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed.append(what)

    def _paced(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += 1.0 / LOAD_RATE
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            yield

    def _http1(self, index):
        conn = None
        n = 0
        for _ in self._paced():
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                                       context=self.ctx,
                                                       source_address=(CLIENT_IP, 0))
                conn.request("GET", CLIENT_PATH)
                r = conn.getresponse()
                body = r.read()
                self._count(r.status == 200 and body == b"sub index\n",
                            "http/1.1 status %d" % r.status)
                n += 1
                if n % 50 == index:  # new client connections now and then
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self._count(False, "http/1.1 %r" % e)
                conn = None

    def _h2(self):
        class Target:
            port = self.port
            scheme = "https"
            tls = True

        client = None
        for _ in self._paced():
            try:
                if client is None:
                    s = socket.socket()
                    s.bind((CLIENT_IP, 0))
                    s.settimeout(30)
                    s.connect(("127.0.0.1", self.port))
                    s = self.h2ctx.wrap_socket(s, server_hostname="localhost")
                    alpn = s.selected_alpn_protocol()
                    assert alpn == "h2", alpn
                    client = harness.H2Client(Target, sock=s)
                r = client.get(CLIENT_PATH)
                self._count(r["status"] == 200 and bytes(r["body"]) == b"sub index\n",
                            "h2 status %s reset %s" % (r["status"], r["reset"]))
            except (OSError, AssertionError, ssl.SSLError) as e:
                self._count(False, "h2 %r" % e)
                client = None


class FleetTest(unittest.TestCase):

    def setUp(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest("HAProxy is not installed at %s (Debian package haproxy)" % HAPROXY)
        self.procs = []
        self.addCleanup(self._kill_all)

    def _kill_all(self):
        for p in self.procs:
            p.kill()

    def test_rolling_restart_loses_no_request_and_keeps_the_client_address(self):
        instances = [start_h2loop(0, i + 1) for i in range(INSTANCES)]
        self.procs += instances
        ports = [p.port for p in instances]
        cert, key = harness.certificate()
        pem = os.path.join(harness.workdir(), "haproxy-front.pem")
        with open(pem, "w") as out:
            for part in (cert, key):
                with open(part) as f:
                    out.write(f.read())
        front = free_port()
        cfg = os.path.join(harness.workdir(), "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_config(front, pem, ports))
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", cfg], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        ha = Proc([HAPROXY, "-db", "-f", cfg], "haproxy")
        self.procs.append(ha)

        # HAProxy is up when every instance has served one of its health
        # checks (each with its own PROXY header from 127.0.0.1).
        for p in instances:
            p.wait_line(r"access: GET %s 200 .* peer=127\.0\.0\.1:\d+" % re.escape(CHECK_PATH))
        load = Load(front)
        load.start()
        self.addCleanup(load.finish)
        started = time.monotonic()
        try:
            # Traffic reaches every instance before the first restart.
            for p in instances:
                p.wait_line(r"access: GET %s 200 .* peer=127\.0\.0\.2:" % re.escape(CLIENT_PATH))
            for i in range(INSTANCES):
                old = instances[i]
                self.assertEqual(old.stop(timeout=30), 0, old.text()[-3000:])
                new = start_h2loop(ports[i], i + 1)
                self.procs.append(new)
                instances[i] = new
                # HAProxy uses the new process again: it serves client traffic.
                new.wait_line(r"access: GET %s 200 .* peer=127\.0\.0\.2:" %
                              re.escape(CLIENT_PATH), timeout=30)
            while load.total() < TARGET_REQUESTS and time.monotonic() - started < DEADLINE:
                load.stop.wait(0.1)
        finally:
            load.finish()
        logs = "".join(p.text() for p in self.procs if p is not ha)
        self.assertEqual(load.failed, [], "failed requests (%d of %d); haproxy:\n%s" % (
            len(load.failed), load.total(), ha.text()[-3000:]))
        self.assertGreaterEqual(load.ok, TARGET_REQUESTS)
        # Every client request the instances served names 127.0.0.2, the
        # client, never HAProxy's own address.
        client_lines = [line for line in logs.splitlines()
                        if "access: GET %s " % CLIENT_PATH in line]
        self.assertGreaterEqual(len(client_lines), TARGET_REQUESTS)
        wrong = [line for line in client_lines if not re.search(r"peer=127\.0\.0\.2:\d+$", line)]
        self.assertEqual(wrong, [])
        self.assertNotIn("refused:", logs)  # no PROXY refusal on the way
        for p in instances:
            self.assertEqual(p.stop(timeout=30), 0)
        print("fleet: %d requests, %d failed, %d instance restarts, %.1fs" % (
            load.total(), len(load.failed), INSTANCES, time.monotonic() - started),
            file=sys.stderr)


if __name__ == "__main__":
    harness.main()
