"""The PROXY protocol on a listener that requires it (--proxy-protocol-from).

The server trusts 127.0.0.3/32 only. A client bound to 127.0.0.2 is refused
whatever it sends; a client from 127.0.0.3 is refused without a valid header
and served with one, and the address in its header (not the socket's) is the
peer in the access log. curl --haproxy-protocol (PROXY v1) from 127.0.0.3 is
how the harness reads the metrics. Runs on both backends and transports: the
header is taken before the TLS ClientHello or the HTTP/2 preface, also when
both come in the same segment.
"""

import socket
import struct
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import H2Client, Server, tls_wrap  # noqa: E402

TRUSTED = "127.0.0.3"
UNTRUSTED = "127.0.0.2"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CLIENT_HELLO_START = b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst="127.0.0.1", dport=443, command=0x21, tlvs=b""):
    if ":" in src:
        block = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        block = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    block += struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([command, fam]) + struct.pack("!H", len(block)) + block


class ProxyServer(Server):
    """h2loop behind a (pretend) load balancer at 127.0.0.3: the harness's
    own curl (metrics) speaks PROXY v1 from there."""

    def curl_args(self):
        return super().curl_args() + ["--haproxy-protocol", "--interface", TRUSTED]


class PrefixSocket:
    """A socket whose first sendall() sends `prefix` in the same call (the
    end of a PROXY header and the first bytes of the protocol in one segment)."""

    def __init__(self, sock, prefix):
        self._sock = sock
        self._prefix = prefix

    def sendall(self, data):
        data, self._prefix = self._prefix + data, b""
        return self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class ProxyProtocolTest(harness.ServerTestCase):
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = ProxyServer("--proxy-protocol-from", TRUSTED + "/32",
                                 "--access-log", "--handshake-timeout", "1.5").start()

    # -- helpers ---------------------------------------------------------
    def rejected(self, reason, m=None):
        m = m or self.server.metrics()
        return m['h2loop_proxy_protocol_rejected_total{reason="%s"}' % reason]

    def connect_from(self, ip):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((ip, 0))
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", self.server.port))
        except OSError:
            s.close()
            raise
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def assert_closed_by_server(self, s, timeout=10):
        """The server ends the connection (FIN or RST) without a byte."""
        s.settimeout(timeout)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        s.close()

    def first_bytes(self):
        return CLIENT_HELLO_START if self.server.tls else PREFACE

    def h2_over(self, sock, header_tail):
        """An HTTP/2 client on `sock` whose first write carries `header_tail`."""
        if self.server.tls:
            # Cork: the header's tail and the ClientHello leave in one segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.sendall(header_tail)
            tls = tls_wrap(sock)
            tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            return H2Client(self.server, sock=tls)
        return H2Client(self.server, sock=PrefixSocket(sock, header_tail))

    # -- refusals ----------------------------------------------------------
    def test_untrusted_source_is_refused_even_with_a_valid_header(self):
        before = self.rejected("untrusted_source")
        # Refused at accept, with a RST: on loopback it may overtake connect()'s return.
        try:
            s = self.connect_from(UNTRUSTED)
            s.sendall(v2_header("203.0.113.9", 999) + self.first_bytes())
            self.assert_closed_by_server(s)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.server.wait_log(r"from 127\.0\.0\.2:\d+: refused: the PROXY protocol is required and "
                      r"127\.0\.0\.2:\d+ is not a trusted source")
        self.server.wait_for(lambda m: self.rejected("untrusted_source", m) == before + 1,
                             what="untrusted_source counted")
        self.assertNotIn("203.0.113.9", self.server.log_text())

    def test_trusted_source_without_a_header_is_refused(self):
        before = self.rejected("malformed")
        s = self.connect_from(TRUSTED)
        s.sendall(self.first_bytes())
        self.assert_closed_by_server(s)
        self.server.wait_log(r"from 127\.0\.0\.3:\d+: refused: bad PROXY header: no PROXY header")
        self.server.wait_for(lambda m: self.rejected("malformed", m) == before + 1,
                             what="malformed counted")

    def test_hostile_headers_are_refused(self):
        bad = [
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n",          # bogus port
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 443\r\n",            # bogus address
            b"PROXY TCP4 " + b"1" * 200,                          # no CRLF in 107 bytes
            V2_SIG[:5] + b"X" + V2_SIG[6:] + b"\x21\x11\x00\x0c" + b"\x00" * 12,  # signature
            V2_SIG + b"\x21\x11\xff\xff",                         # length over the bound
            V2_SIG + b"\x21\x11\x00\x0b" + b"\x00" * 11,          # too short for IPv4
        ]
        before = self.rejected("malformed")
        for i, b in enumerate(bad):
            s = self.connect_from(TRUSTED)
            s.sendall(b + self.first_bytes())
            self.assert_closed_by_server(s)
            self.server.wait_for(lambda m: self.rejected("malformed", m) == before + i + 1,
                                 what="bad header %d counted" % i)
        self.server.wait_log(r"refused: bad PROXY header: v1 header: bad port")
        self.server.wait_log(r"refused: bad PROXY header: v1 header without CRLF within 107 bytes")
        self.server.wait_log(r"refused: bad PROXY header: v2 header: length above the bound")

    def test_a_partial_header_ends_at_the_handshake_timeout_or_eof(self):
        before = self.rejected("timeout")
        s = self.connect_from(TRUSTED)
        s.sendall(b"PROXY TCP4 1.2.")
        self.assert_closed_by_server(s, timeout=10)
        self.server.wait_log(r"refused: no complete PROXY header within the handshake timeout "
                      r"\(15 bytes of it came\)")
        self.server.wait_for(lambda m: self.rejected("timeout", m) == before + 1,
                             what="timeout counted")
        before = self.rejected("eof")
        s = self.connect_from(TRUSTED)
        s.sendall(V2_SIG[:7])
        s.shutdown(socket.SHUT_WR)
        self.assert_closed_by_server(s)
        self.server.wait_for(lambda m: self.rejected("eof", m) == before + 1, what="eof counted")

    # -- the header's client is the peer -----------------------------------
    def served_as(self, header, peer_pattern, split=10):
        m0 = self.server.metrics()
        s = self.connect_from(TRUSTED)
        s.sendall(header[:split])  # the header in two pieces...
        c = self.h2_over(s, header[split:])  # ...its tail with the protocol's first bytes
        r = c.get("/index.html")
        self.assertEqual(r["status"], 200)
        c.close()
        self.server.wait_log(r"access: GET /index\.html 200 .* peer=" + peer_pattern)
        m = self.server.metrics()
        self.assertEqual(m["h2loop_proxy_protocol_accepted_total"],
                         m0["h2loop_proxy_protocol_accepted_total"] + 2)  # ours and curl's

    def test_v2_ipv4_header_split_and_joined_to_the_protocol(self):
        self.served_as(v2_header("203.0.113.7", 4242, tlvs=b"\x04\x00\x03abc"),
                       r"203\.0\.113\.7:4242\n")

    def test_v2_ipv6_header(self):
        self.served_as(v2_header("2001:db8::5", 5555, dst="::1"), r"\[2001:db8::5\]:5555\n")

    def test_v1_header(self):
        self.served_as(b"PROXY TCP4 198.51.100.4 127.0.0.1 6001 443\r\n",
                       r"198\.51\.100\.4:6001\n", split=20)

    def test_v2_local_keeps_the_socket_address(self):
        local = V2_SIG + b"\x20\x00\x00\x00"
        self.served_as(local, r"127\.0\.0\.3:\d+\n", split=5)


if __name__ == "__main__":
    harness.main()
