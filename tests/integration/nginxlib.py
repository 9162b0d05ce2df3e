"""Debian's nginx next to h2loop, as the reference the suites compare with,
and a curl wrapper that returns status, headers and body of one answer.

nginx runs as an unprivileged child (no daemon, no master) on an ephemeral
port of 127.0.0.1, cleartext HTTP/1.1, with a configuration written for the
test: `http_extra` and `server_extra` are directives added to its http and
server blocks. Without /usr/sbin/nginx a suite skips its comparisons
(Nginx.start raises RuntimeError or OSError; see available())."""

import os
import socket
import subprocess
import tempfile
import time

import harness

NGINX = "/usr/sbin/nginx"


def available():
    """None when nginx can run here, else why not."""
    return None if os.path.exists(NGINX) else NGINX + " is not installed"


class Nginx:
    """nginx as a child: no daemon, no master, its own config and temp dirs."""

    def __init__(self, root, http_extra="", server_extra=""):
        self.root = root
        self.http_extra = http_extra
        self.server_extra = server_extra
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=harness.workdir())
        self.proc = None
        self.port = None

    def start(self):
        with socket.socket() as s:  # an ephemeral port for nginx (it cannot report one)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        d = self.dir
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off; master_process off; worker_processes 1;
error_log {d}/error.log; pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types; default_type application/octet-stream;
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  {self.http_extra}
  server {{ listen 127.0.0.1:{self.port}; root {self.root}; {self.server_extra} }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", d, "-e", f"{d}/error.log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: %s" % self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not listen")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


class Comparison:
    """The nginx side of a suite that asks h2loop (self.server) and nginx the
    same questions: start_nginx() in setUpClass, stop_nginx() in
    tearDownClass; h2loop() and reference() ask each with curl, and
    reference() skips the test when nginx could not run."""

    nginx = None
    nginx_error = None

    @classmethod
    def start_nginx(cls, root, http_extra="", server_extra=""):
        cls.nginx = None
        cls.nginx_error = available()
        if cls.nginx_error is None:
            try:
                cls.nginx = Nginx(root, http_extra=http_extra, server_extra=server_extra).start()
            except (RuntimeError, OSError) as e:
                cls.nginx_error = str(e)

    @classmethod
    def stop_nginx(cls):
        if cls.nginx is not None:
            cls.nginx.stop()
            cls.nginx = None

    def h2loop(self, path, method="GET", headers=(), http1=False, extra=()):
        s = self.server
        proto = (["-k", "--http1.1"] if s.tls else ["--http1.1"]) if http1 else s.curl_args()
        return run_curl(proto + request_args(method, headers) + list(extra), s.url(path))

    def reference(self, path, method="GET", headers=(), extra=()):
        if self.nginx is None:
            self.skipTest(self.nginx_error)
        return run_curl(["--http1.1"] + request_args(method, headers) + list(extra),
                        self.nginx.url(path))


def readable(root):
    """nginx's worker may drop to another user when run as root: keep the tree readable."""
    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o755)
        for name in files:
            os.chmod(os.path.join(d, name), 0o644)


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lowercase name -> value (last one wins)
        self.body = body

    def get(self, name):
        return self.headers.get(name)

    def media(self):
        ct = self.get("content-type") or ""
        return ct.split(";")[0].strip().lower()

    def parts(self):
        """multipart/byteranges parts as [(media type, content-range, bytes)]."""
        ct = self.get("content-type") or ""
        assert ct.startswith("multipart/byteranges; boundary="), ct
        boundary = ct.split("boundary=", 1)[1].encode()
        body = self.body
        # RFC 2046: the body is a preamble, then CRLF "--" boundary per part,
        # then CRLF "--" boundary "--".
        delim = b"\r\n--" + boundary
        end = body.index(delim + b"--")
        chunks = body[:end].split(delim)
        assert chunks[0] == b"", chunks[0]
        assert body[end + len(delim) + 2:] == b"\r\n", body[end:]
        out = []
        for c in chunks[1:]:
            head, sep, data = c.partition(b"\r\n\r\n")
            assert sep, c[:200]
            fields = {}
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.decode().partition(":")
                fields[k.strip().lower()] = v.strip()
            media = fields.get("content-type", "").split(";")[0].strip().lower()
            out.append((media, fields.get("content-range"), data))
        return out


def run_curl(args, url, timeout=20):
    with tempfile.TemporaryDirectory(dir=harness.workdir()) as d:
        hdr = os.path.join(d, "h")
        out = os.path.join(d, "b")
        cmd = (["curl", "-sS", "--max-time", str(timeout), "-D", hdr, "-o", out] +
               list(args) + [url])
        r = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
        if r.returncode != 0:
            raise AssertionError("curl failed: %s %s" % (cmd, r.stderr.decode()))
        with open(hdr, "rb") as f:
            raw = f.read().decode("latin-1")
        body = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
    if "-I" in args:
        body = b""  # curl -I writes the head to -o as well; a HEAD has no body
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    lines = blocks[-1].split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Answer(status, headers, body)


def request_args(method="GET", headers=()):
    args = []
    if method == "HEAD":
        args.append("-I")
    elif method != "GET":
        args += ["-X", method]
    for h in headers:
        args += ["-H", h]
    return args
