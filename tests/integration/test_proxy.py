#!/usr/bin/python3
"""End-to-end tests of sluice's data plane (`sluice run`): HTTP forwarding, WebSocket tunnels,
limits, balancing and shutdown, with real processes on loopback.

Run by meson as:
    /usr/bin/python3 tests/integration/test_proxy.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]
One class or test: append its name, e.g. Tunnel or Tunnel.test_half_close_propagates.

Each test writes its config into a TemporaryDirectory, starts its own sluice (`sluice run`) and
its own targets: `sluice-bench server` processes, Python backends that record every byte they
receive (backends.PyBackend) and python3-websockets' server (an implementation we did not
write). Our WebSocket client is wskit.WSClient, on raw sockets. Every wait is bounded; the only
timing assertions are generous "promptly" bounds (PROMPT seconds). On a failure the tails of
every process's stderr/stdout are printed; SLUICE_IT_KEEP=1 keeps the temp directory.

Standard library plus Debian's python3-websockets 10.4.
"""
import asyncio
import collections
import concurrent.futures
import json
import os
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import backends  # noqa: E402
import wskit  # noqa: E402
from backends import BenchServer, PyBackend, WebsocketsServer, pattern  # noqa: E402
from wskit import (OP_BINARY, OP_PONG, OP_TEXT, Conn, WSClient, config,  # noqa: E402
                   cond_header, cond_path, forward, group, http, read_response, redirect,
                   request_bytes, served_by, static, target)

SLUICE = None        # absolute path of the sluice binary under test
SLUICE_BENCH = None  # absolute path of sluice-bench
SRC = None           # source root

PROMPT = 5.0         # "promptly": every close/answer the spec calls prompt must come within this

# The access log's field names, in one place (the spec lets them differ slightly).
ACCESS_LOG = {
    "type": "type", "http": "http", "tunnel": "tunnel",
    "status": "status", "target": "target",
    "bytes_up": "bytes_up", "bytes_down": "bytes_down", "duration": "duration_ms", "end": "end",
}

# The IONOS WebSocket guide's rule, as in conf/demo.json.
WS_CONDITIONS = [cond_header("Upgrade", "websocket"),
                 cond_header("Connection", "(?i)\\bupgrade\\b", condition="MATCHES")]


def tcp_segs_in(sock):
    """Segments <sock> has received (Linux TCP_INFO tcpi_segs_in)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 140)[0]


class ProxyTest(unittest.TestCase):
    """Temp dir, process bookkeeping and failure diagnostics for every test."""

    maxDiff = 4000

    def setUp(self):
        keep = os.environ.get("SLUICE_IT_KEEP")
        if keep:
            self.tmp = tempfile.mkdtemp(prefix="sluice-proxy-")
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="sluice-proxy-")
            self.addCleanup(self._tmp.cleanup)
            self.tmp = self._tmp.name
        self.procs = []        # Proc objects, stopped at cleanup
        self.sluices = []      # the sluice Procs among them
        self.n_configs = 0
        self._problems_at_start = self._problems_so_far()
        self.addCleanup(self._stop_all)

    def _problems_so_far(self):
        # failures and errors recorded so far (cleanups run with the outcome reset, so count
        # the result's lists instead)
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return 0
        return len(result.failures) + len(result.errors)

    def _failed(self):
        return self._problems_so_far() > self._problems_at_start

    def shortDescription(self):
        return None  # name tests by their method in the verbose listing

    def _stop_all(self):
        problems = []
        for p in reversed(self.procs):
            if p in self.sluices and not p.alive() and p.rc is None:
                # nobody waited for it: it ended on its own
                problems.append("%s exited on its own with status %s" % (p.name, p.p.returncode))
            rc, killed = p.stop(timeout=PROMPT)
            if p in self.sluices:
                if killed:
                    wskit.log("note: %s did not exit within %.0f s of SIGTERM at the end of %s; "
                              "killed" % (p.name, PROMPT, self.id()))
                if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
                    problems.append("%s died of signal %d" % (p.name, -rc))
                err = p.stderr_text()
                for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    if marker in err:
                        problems.append("%s: %s report in stderr" % (p.name, marker))
        if problems or self._failed() or os.environ.get("SLUICE_IT_VERBOSE"):
            for p in self.procs:
                wskit.log(p.tails())
        if problems:
            self.fail("; ".join(problems))

    # processes

    def hold(self, proc):
        """SIGSTOP <proc> and wait until every thread of it has stopped: from then on, what
        reaches its sockets waits there for SIGCONT."""
        proc.signal(signal.SIGSTOP)

        def stopped():
            try:
                tasks = os.listdir("/proc/%d/task" % proc.pid)
                states = []
                for t in tasks:
                    with open("/proc/%d/task/%s/stat" % (proc.pid, t)) as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                return False
            return all(st == "T" for st in states)
        self.assertTrue(wskit.wait_until(stopped, PROMPT), "%s did not stop" % proc.name)

    def sluice(self, cfg, args=(), name=None, wait=True, preexec_fn=None):
        """Writes <cfg> and starts `sluice run` on it; waits until the listener accepts.
        Returns the Proc, with .port (the listener) and .cfg_path."""
        self.n_configs += 1
        name = name or "sluice%d" % self.n_configs
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        p = wskit.Proc(name, [SLUICE, "run", path, *args], self.tmp, cwd=self.tmp,
                       preexec_fn=preexec_fn)
        p.port = cfg["forwardingRules"][0]["properties"]["listenerPort"]
        p.cfg_path = path
        self.procs.append(p)
        self.sluices.append(p)
        if wait:
            try:
                p.wait_port(p.port)
            except wskit.HarnessError as e:
                self.fail(str(e))
        return p

    def bench(self, name="bench"):
        b = BenchServer(SLUICE_BENCH, self.tmp, name)
        self.procs.append(b.proc)
        try:
            b.start()
        except wskit.HarnessError as e:
            self.fail(str(e))
        return b

    def benches(self, *names):
        return [self.bench(n) for n in names]

    def pyback(self, name="py"):
        b = PyBackend(name).start()
        self.addCleanup(b.stop)
        return b

    def simple(self, backend_port, rules=None, algorithm="ROUND_ROBIN", preexec_fn=None,
               **local):
        """sluice forwarding everything (or <rules>) to one group with one target."""
        port = wskit.free_port()
        cfg = config(port, rules or [forward("tg-1")],
                     [group("tg-1", [target(backend_port)], algorithm)], **local)
        return self.sluice(cfg, preexec_fn=preexec_fn)

    # assertions

    def assertClosedPromptly(self, conn, what="the connection", timeout=PROMPT):
        how = conn.wait_closed(timeout)
        self.assertIsNotNone(how, "%s still open %.0f s later" % (what, timeout))
        return how

    def closeTunnel(self, c):
        """The close handshake on tunnel <c>, then the connection closes."""
        c.send_close(1000)
        self.assertEqual(c.recv_close()[0], 1000)
        self.assertClosedPromptly(c)

    def assertExitsOnceTunnelsClosed(self, s):
        """<s>, stopping on SIGTERM, exits 0 now that its last tunnel is gone."""
        rc = s.wait(PROMPT)
        self.assertEqual(rc, 0, "exit status once the last tunnel closed (None: still running)")

    def assertOneLineBody(self, resp):
        body = resp.body.decode("utf-8", "replace")
        self.assertTrue(body.strip(), "empty body: %r" % resp)
        self.assertEqual(len(body.rstrip("\n").splitlines()), 1, "body not one line: %r" % body)
        return body.strip()


def ws_echo_check(tc, c, sizes, opcodes=(OP_TEXT, OP_BINARY), fragments=1, timeout=30):
    for n in sizes:
        for op in opcodes:
            data = pattern(n)
            with tc.subTest(size=n, opcode=op, fragments=fragments):
                got_op, got = c.echo(op, data, fragments=fragments, timeout=timeout)
                tc.assertEqual(got_op, op)
                tc.assertEqual(len(got), n)
                tc.assertTrue(got == data, "payload of %d bytes differs" % n)


# =============================================================================================

class Backends(ProxyTest):
    """The targets themselves, without sluice: when these fail, failures elsewhere may not be
    sluice's."""

    def test_bench_server_direct(self):
        b = self.bench("direct")
        with WSClient.open(b.port, "/") as c:
            ws_echo_check(self, c, (0, 1, 126, 65536, 1 << 20))
            c.send_close(1000)
            self.assertEqual(c.recv_close()[0], 1000)
        r = http(b.port, path="/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(served_by(r), "direct", r)


class Tunnel(ProxyTest):
    """WebSocket upgrades and tunnels."""

    def test_echo_sizes(self):
        b = self.bench("b1")
        s = self.simple(b.port)
        with WSClient.open(s.port, "/echo") as c:
            ws_echo_check(self, c, (0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20), timeout=60)
            c.send_close(1000, "done")
            self.assertEqual(c.recv_close()[0], 1000)  # the reason need not be echoed
            self.assertClosedPromptly(c)

    def test_fragmented_messages_and_ping(self):
        b = self.bench("b1")
        s = self.simple(b.port)
        with WSClient.open(s.port, "/") as c:
            ws_echo_check(self, c, (10, 70000), fragments=7)
            c.ping(b"are you there")
            f = c.recv_frame()
            self.assertEqual((f.opcode, f.payload), (OP_PONG, b"are you there"))
            # many small messages in one write
            data = b"".join(wskit.encode_frame(OP_TEXT, "m%d" % i) for i in range(200))
            c.send_raw(data)
            for i in range(200):
                self.assertEqual(c.recv_message(), (OP_TEXT, b"m%d" % i))

    def test_python_websockets_client_through_sluice(self):
        """python3-websockets' client, through sluice, to sluice-bench."""
        import websockets
        b = self.bench("b1")
        s = self.simple(b.port)

        async def run():
            async with websockets.connect("ws://127.0.0.1:%d/chat" % s.port, max_size=None,
                                          open_timeout=PROMPT, close_timeout=PROMPT,
                                          compression=None) as ws:
                for msg in ("hello", "", "x" * 70000, b"\x00\x01\x02" * 1000, b""):
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), PROMPT)
                    self.assertEqual(got, msg)
                pong = await ws.ping(b"ping!")
                await asyncio.wait_for(pong, PROMPT)
                await ws.close(1000, "bye")
                return ws.close_code
        self.assertEqual(asyncio.run(asyncio.wait_for(run(), 30)), 1000)

    def test_python_websockets_both_ends_subprotocol_and_deflate(self):
        """python3-websockets on both ends: the subprotocol and permessage-deflate negotiated
        end to end through sluice; compressed frames (RSV1) pass unchanged; a server-initiated
        close code reaches the client."""
        import websockets
        w = WebsocketsServer(subprotocols=["chat.v2", "chat.v1"], compression="deflate").start()
        self.addCleanup(w.stop)
        s = self.simple(w.port)

        async def run():
            async with websockets.connect("ws://127.0.0.1:%d/room/1" % s.port,
                                          subprotocols=["chat.v1"], compression="deflate",
                                          max_size=None, open_timeout=PROMPT,
                                          close_timeout=PROMPT) as ws:
                self.assertEqual(ws.subprotocol, "chat.v1")
                self.assertIn("permessage-deflate",
                              ws.response_headers.get("Sec-WebSocket-Extensions", ""))
                self.assertTrue(any(e.name == "permessage-deflate" for e in ws.extensions))
                for msg in ("compress me " * 10000, "short", b"\xff" * 100000):
                    await ws.send(msg)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), PROMPT), msg)
                await ws.send("close 4005 server closes")
                try:
                    await asyncio.wait_for(ws.recv(), PROMPT)
                except websockets.ConnectionClosed:
                    pass
                await asyncio.wait_for(ws.wait_closed(), PROMPT)
                return ws.close_code, ws.close_reason
        self.assertEqual(asyncio.run(asyncio.wait_for(run(), 30)), (4005, "server closes"))
        self.assertEqual(len(w.seen), 1)
        path, proto, ext = w.seen[0]
        self.assertEqual((path, proto), ("/room/1", "chat.v1"))
        self.assertIn("permessage-deflate", ext or "")

    def test_websocket_headers_pass_through(self):
        """Sec-WebSocket-* request and response headers reach the other side unchanged, and a
        frame with RSV1 set (compressed) is relayed byte for byte."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        ext = "permessage-deflate; client_max_window_bits"
        with WSClient.open(s.port, "/ws/ext", protocols=["chat.v1", "chat.v2"], extensions=[ext],
                           origin="http://example.com") as c:
            self.assertEqual(c.response.header("Sec-WebSocket-Protocol"), "chat.v1")
            self.assertEqual(c.response.header("Sec-WebSocket-Extensions"), ext)
            frame = wskit.encode_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4)
            c.send_raw(frame)
            c.recv_message()  # our backend echoes it (uncompressed flag dropped); any echo
            req = py.wait_requests(1)[0]
            self.assertEqual(req.header("Sec-WebSocket-Protocol"), "chat.v1, chat.v2")
            self.assertEqual(req.header("Sec-WebSocket-Extensions"), ext)
            self.assertEqual(req.header("Sec-WebSocket-Version"), "13")
            self.assertEqual(req.header("Origin"), "http://example.com")
            self.assertIsNotNone(req.header("Sec-WebSocket-Key"))
            self.assertTrue(bytes(py.conns[0].raw).endswith(frame),
                            "the backend did not receive the RSV1 frame unchanged")

    def test_close_codes_both_ways(self):
        b = self.bench("b1")
        py = self.pyback("p1")
        port = wskit.free_port()
        cfg = config(port, [forward("tg-py", [cond_path("/ws/", "STARTS_WITH")]),
                            forward("tg-b")],
                     [group("tg-b", [target(b.port)]), group("tg-py", [target(py.port)])])
        s = self.sluice(cfg)
        with self.subTest("client closes"), WSClient.open(s.port, "/") as c:
            c.send_text("x")
            c.recv_message()
            c.send_close(4001, "client says bye")
            self.assertEqual(c.recv_close()[0], 4001)
            self.assertClosedPromptly(c)
        with self.subTest("target closes"), WSClient.open(s.port, "/ws/echo") as c:
            c.send_text("close 4002 target says bye")
            self.assertEqual(c.recv_close(), (4002, "target says bye"))
            c.send_close(4002, "target says bye")
            self.assertClosedPromptly(c)

    def test_target_frame_in_same_packet_as_101(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with WSClient.open(s.port, "/ws/hello") as c:
            self.assertEqual(c.recv_message(), (OP_TEXT, b"hello from p1"))
            self.assertEqual(c.echo(OP_TEXT, b"after"), (OP_TEXT, b"after"))

    def test_client_frame_before_101(self):
        """The client sends a frame in the same write as its upgrade request."""
        py = self.pyback("p1")
        b = self.bench("b1")
        for name, port in (("python backend", py.port), ("sluice-bench", b.port)):
            s = self.simple(port)
            with self.subTest(name), WSClient(Conn.connect(s.port)) as c:
                frame = wskit.encode_frame(OP_TEXT, "early bird")
                c.handshake("/ws/echo", extra=frame + wskit.encode_frame(OP_BINARY, b"\x00" * 300))
                self.assertEqual(c.recv_message(), (OP_TEXT, b"early bird"))
                self.assertEqual(c.recv_message(), (OP_BINARY, b"\x00" * 300))
                if port == py.port:
                    raw = bytes(py.conns[0].raw)
                    self.assertIn(b"\r\n\r\n" + frame, raw)

    def test_upgrade_header_variants(self):
        """Firefox's "Connection: keep-alive, Upgrade", "Upgrade: WebSocket", under the IONOS
        guide's rule; the target sees an upgrade it can accept."""
        b = self.bench("b1")
        py = self.pyback("p1")
        port = wskit.free_port()
        rules = [forward("tg-py", WS_CONDITIONS + [cond_path("/ws/", "STARTS_WITH")],
                         name="ws-py"),
                 forward("tg-b", WS_CONDITIONS, name="ws"),
                 static(426, "WebSocket only\n", [cond_header("Upgrade", condition="EXISTS",
                                                               negate=True)], name="426")]
        cfg = config(port, rules, [group("tg-b", [target(b.port)]),
                                   group("tg-py", [target(py.port)])])
        s = self.sluice(cfg)
        variants = [("keep-alive, Upgrade", "websocket"), ("Upgrade", "WebSocket"),
                    ("keep-alive, Upgrade", "WebSocket"), ("upgrade", "websocket"),
                    ("Upgrade, keep-alive", "WEBSOCKET")]
        for conn_h, up_h in variants:
            for path in ("/", "/ws/echo"):
                with self.subTest(connection=conn_h, upgrade=up_h, path=path), \
                        WSClient.open(s.port, path, connection=conn_h, upgrade=up_h) as c:
                    self.assertEqual(c.echo(OP_TEXT, b"variant"), (OP_TEXT, b"variant"))
        for req in py.wait_requests(len(variants)):
            with self.subTest(forwarded=req.head_raw):
                self.assertIn("upgrade", req.tokens("Connection"))
                self.assertEqual(req.header("Upgrade", "").lower(), "websocket")

    def test_upgrade_refused_with_403(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with WSClient(Conn.connect(s.port)) as c:
            r = c.handshake("/ws/403", expect=None)
            self.assertEqual(r.status, 403, r)
            self.assertEqual(r.body, b"forbidden by p1\n")
            self.assertIsNone(r.header("Sec-WebSocket-Accept"))
            if not r.closes:  # kept alive: the connection must still carry HTTP
                c.conn.send(request_bytes("GET", "/after-403"))
                r2 = read_response(c.conn)
                self.assertEqual((r2.status, r2.body), (200, b"p1 GET /after-403\n"))
            else:
                self.assertClosedPromptly(c.conn)

    def test_bytes_waiting_at_accept(self):
        """Connections whose bytes are in the socket before sluice accepts them (it is held
        with SIGSTOP), which sluice reads at accept instead of waiting for epoll: a whole
        request, an upgrade with a frame behind it, half a head (the rest comes later), a
        client already gone and one that reset. Then all of them again, sent after accept."""
        b = self.bench("b1")
        s = self.simple(b.port)
        for held in (True, False):
            with self.subTest(held=held):
                ws_done = []

                def upgrade():
                    with WSClient(Conn.connect(s.port)) as c:
                        c.handshake("/ws", extra=wskit.encode_frame(OP_TEXT, "early"))
                        self.assertEqual(c.recv_message(), (OP_TEXT, b"early"))
                        ws_echo_check(self, c, (5, 70000))
                        ws_done.append(True)
                if held:
                    self.hold(s)
                try:
                    whole = Conn.connect(s.port)
                    self.addCleanup(whole.close)
                    whole.send(request_bytes("GET", "/whole"))
                    half = Conn.connect(s.port)
                    self.addCleanup(half.close)
                    half.send(b"GET /half HTTP/1.1\r\nHo")
                    Conn.connect(s.port).close()
                    Conn.connect(s.port).reset()
                    th = threading.Thread(target=upgrade)
                    th.start()
                    time.sleep(0.3)
                finally:
                    if held:
                        s.signal(signal.SIGCONT)
                r = read_response(whole)
                self.assertEqual((r.status, served_by(r)), (200, "b1"), r)
                half.send(b"st: x\r\n\r\n")
                r = read_response(half)
                self.assertEqual(r.status, 200, r)
                th.join(PROMPT * 2)
                self.assertEqual(ws_done, [True], "the upgrade did not complete")
                self.assertTrue(s.alive())

    def test_plain_request_then_upgrade_on_one_connection(self):
        b = self.bench("b1")
        s = self.simple(b.port)
        with Conn.connect(s.port) as conn:
            for i in range(2):
                conn.send(request_bytes("GET", "/plain%d" % i))
                r = read_response(conn)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(served_by(r), "b1", r)
                self.assertFalse(r.closes, r)
            c = WSClient(conn)
            c.handshake("/ws")
            ws_echo_check(self, c, (5, 1000))

    def test_half_close_propagates(self):
        """The client shuts down its sending side: the target sees EOF and can still answer."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        with WSClient.open(s.port, "/ws/halfclose") as c:
            c.send_raw(b"z" * 1000)
            c.conn.sock.shutdown(socket.SHUT_WR)
            data = c.conn.read_to_eof(timeout=PROMPT)
            self.assertEqual(data, b"got 1000 bytes")

    def finfirst(self, s, py, query=""):
        """A tunnel through <s> to <py>'s /ws/finfirst backend: (client, backend conn)."""
        c = WSClient.open(s.port, "/ws/finfirst" + query)
        self.addCleanup(c.close)
        self.assertTrue(wskit.wait_until(lambda: py.conns and "ws-open" in py.conns[-1].events))
        return c, py.conns[-1]

    def fin_while_held(self, s, bc):
        """The /ws/finfirst backend <bc> sends and shuts while sluice is held (SIGSTOP), so it
        all waits in sluice's socket when sluice reads; then sluice goes on."""
        self.hold(s)
        try:
            bc.go.set()
            self.assertTrue(wskit.wait_until(lambda: "fin-sent" in bc.events))
            time.sleep(0.1)
        finally:
            s.signal(signal.SIGCONT)

    def test_target_fin_with_its_last_bytes(self):
        """The target sends its last bytes and its FIN, both in before sluice reads (it is
        held with SIGSTOP): the client gets them in one segment (counted by TCP_INFO), and
        the tunnel stays half-open: what the client sends after that still reaches the
        target, and the client's own FIN ends it."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        c, bc = self.finfirst(s, py)
        time.sleep(0.3)  # a delayed ACK still owed to the client is out before counting
        before = tcp_segs_in(c.conn.sock)
        self.fin_while_held(s, bc)
        self.assertEqual(c.conn.read_to_eof(timeout=PROMPT), b"bye")
        self.assertEqual(tcp_segs_in(c.conn.sock) - before, 1,
                         "the last bytes and the FIN came in separate segments")
        c.send_raw(b"after the target's FIN")
        c.conn.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(wskit.wait_until(lambda: "eof" in bc.events, PROMPT))
        self.assertTrue(bytes(bc.raw).endswith(b"after the target's FIN"), bytes(bc.raw))

    def test_urgent_byte_before_the_targets_fin(self):
        """Bytes, one TCP urgent byte, more bytes and the FIN, all in before sluice reads (held
        with SIGSTOP): a read stops short at the urgent mark, which must not pass for the end
        of the stream; every ordinary byte reaches the client, then the FIN, not a reset. (The
        urgent byte itself is out of band: sluice does not relay it.)"""
        py = self.pyback("p1")
        s = self.simple(py.port)
        c, bc = self.finfirst(s, py, "?oob")
        self.fin_while_held(s, bc)
        self.assertEqual(c.conn.read_to_eof(timeout=PROMPT), b"AAAABBBB")

    def test_nagle_peers_do_not_wait_for_delayed_acks(self):
        """sluice delays its ACK where its answer follows at once and carries it (a request
        head, the handshake with the target), and ACKs at once where a peer may be waiting
        for it: a client whose head comes in two writes, a target that follows its 101 with a
        frame in a second write. Both peers here keep Nagle on, so a delayed ACK would hold
        their second write for the kernel's delayed-ACK timer (40 ms or more): each case is
        run 5 times and its median must stay well under that."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        head = wskit.handshake_bytes(wskit.ws_key(), "/ws/hello-split")
        split_head, split_target = [], []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=PROMPT)
            with Conn(sock) as conn:
                t0 = time.monotonic()
                conn.send(head[:20])
                conn.send(head[20:])
                conn.read_until(b"\r\n\r\n", PROMPT)
                split_head.append(time.monotonic() - t0)
                c = WSClient(conn)
                c.parser.feed(bytes(conn.buf))  # what came behind the 101
                conn.buf.clear()
                self.assertEqual(c.recv_message(), (OP_TEXT, b"hello from p1"))
                split_target.append(time.monotonic() - t0)
        for what, times in (("a head in two writes", split_head),
                            ("a 101 and a frame in two writes", split_target)):
            self.assertLess(sorted(times)[2], 0.025, "%s waited for a delayed ACK: %s"
                            % (what, ["%.1f ms" % (t * 1000) for t in times]))

    def test_reset_propagates(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with WSClient.open(s.port, "/ws/reset") as c:
            c.send_raw(b"x")
            how = self.assertClosedPromptly(c)
            self.assertEqual(how, "reset", "a reset from the target reached the client as %s"
                             % how)

    def test_target_killed_mid_tunnel(self):
        b = self.bench("victim")
        s = self.simple(b.port)
        with WSClient.open(s.port, "/") as c, WSClient.open(s.port, "/") as idle:
            self.assertEqual(c.echo(OP_TEXT, b"alive"), (OP_TEXT, b"alive"))
            self.assertEqual(idle.echo(OP_TEXT, b"alive"), (OP_TEXT, b"alive"))
            c.send_binary(b"in flight" * 1000)
            b.proc.kill()
            self.assertClosedPromptly(c, "the busy tunnel")
            self.assertClosedPromptly(idle, "the idle tunnel")
        # sluice itself lives on: the dead target now refuses
        r = http(s.port)
        self.assertEqual(r.status, 502, r)

    def test_idle_timeout(self):
        b = self.bench("b1")
        s1 = self.simple(b.port, tunnelTimeout=1000)
        port = wskit.free_port()
        # clientTimeout applies to tunnels when tunnelTimeout is 0 ...
        s2 = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(b.port)])],
                                client_timeout=1000, tunnelTimeout=0))
        port = wskit.free_port()
        # ... and tunnelTimeout overrides it
        s3 = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(b.port)])],
                                client_timeout=1000, tunnelTimeout=60000))
        idle1 = WSClient.open(s1.port)
        busy1 = WSClient.open(s1.port)
        idle2 = WSClient.open(s2.port)
        long3 = WSClient.open(s3.port)
        for c in (idle1, busy1, idle2, long3):
            self.addCleanup(c.close)
            self.assertEqual(c.echo(OP_TEXT, b"hi"), (OP_TEXT, b"hi"))
        # busy1 talks every 200 ms for 2.5 s: never idle for 1 s
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            self.assertEqual(busy1.echo(OP_TEXT, b"tick"), (OP_TEXT, b"tick"),
                             "a busy tunnel was cut")
            time.sleep(0.2)
        self.assertClosedPromptly(idle1.conn, "idle tunnel (tunnelTimeout 1000)")
        self.assertClosedPromptly(idle2.conn, "idle tunnel (clientTimeout 1000)", timeout=PROMPT)
        self.assertTrue(long3.conn.still_open(0.1),
                        "tunnelTimeout 60000 did not override clientTimeout 1000")
        self.assertEqual(long3.echo(OP_TEXT, b"still here"), (OP_TEXT, b"still here"))
        self.assertClosedPromptly(busy1.conn, "tunnel idle after being busy")

    def test_1000_concurrent_tunnels(self):
        wskit.raise_nofile(20000)
        b = self.bench("b1")
        s = self.simple(b.port)
        n = 1000

        async def run():
            sem = asyncio.Semaphore(100)
            opened = []

            async def one(i):
                async with sem:
                    ws = await asyncio.wait_for(wskit.AioWS.open(s.port, "/c%d" % i), 20)
                    await ws.send(OP_TEXT, "first %d" % i)
                    f = await asyncio.wait_for(ws.recv(), 20)
                    assert f.payload == b"first %d" % i, f
                opened.append(ws)
                return ws

            wss = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
            errs = [w for w in wss if isinstance(w, BaseException)]
            good = [w for w in wss if not isinstance(w, BaseException)]
            # all open at once now; each echoes again
            fds = s.fd_count()

            async def second(i, ws):
                await ws.send(OP_BINARY, b"second %d" % i * 10)
                f = await asyncio.wait_for(ws.recv(), 20)
                assert f.payload == b"second %d" % i * 10, f
                await asyncio.wait_for(ws.close(), 20)
            res = await asyncio.gather(*(second(i, w) for i, w in enumerate(good)),
                                       return_exceptions=True)
            errs += [r for r in res if isinstance(r, BaseException)]
            for w in opened:
                w.writer.close()
            return errs, fds
        errs, fds = asyncio.run(asyncio.wait_for(run(), 120))
        self.assertEqual(errs, [], "%d of %d tunnels failed; first: %r"
                         % (len(errs), n, errs[:1]))
        self.assertGreaterEqual(fds, 2 * n, "sluice holds %d fds with %d tunnels open"
                                % (fds, n))


# =============================================================================================

class Http(ProxyTest):
    """Plain HTTP forwarding."""

    def test_pipelined_requests_answered_in_order(self):
        p1, p2 = self.pyback("p1"), self.pyback("p2")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")],
                               [group("tg-1", [target(p1.port), target(p2.port)])]))
        paths = ["/slow-1", "/a", "/slow-2", "/b", "/c", "/slow-3"]
        with Conn.connect(s.port) as conn:
            conn.send(b"".join(request_bytes("GET", p) for p in paths))
            got = []
            for p in paths:
                r = read_response(conn)
                self.assertEqual(r.status, 200, r)
                got.append(r.body.decode().split()[-1])
            self.assertEqual(got, paths)
            # and the connection is still good
            conn.send(request_bytes("GET", "/last"))
            self.assertEqual(read_response(conn).body.decode().split()[-1], "/last")

    def test_request_bodies_reach_target_intact(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        body = pattern(1 << 20)
        with Conn.connect(s.port) as conn:
            with self.subTest("content-length"):
                conn.send(request_bytes("POST", "/echo-body", [("Content-Type", "x/y")], body))
                r = read_response(conn, timeout=20)
                self.assertEqual(r.status, 200)
                self.assertTrue(r.body == body, "echoed body differs (%d bytes)" % len(r.body))
            with self.subTest("chunked"):
                chunks = [body[:1], body[1:5000], body[5000:300000], body[300000:]]
                data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
                conn.send(request_bytes("POST", "/echo-body",
                                        [("Transfer-Encoding", "chunked")]) + data)
                r = read_response(conn, timeout=20)
                self.assertEqual(r.status, 200)
                self.assertTrue(r.body == body, "echoed body differs (%d bytes)" % len(r.body))
            with self.subTest("empty"):
                conn.send(request_bytes("POST", "/echo-body", body=b""))
                r = read_response(conn)
                self.assertEqual((r.status, r.body), (200, b""))
        reqs = py.wait_requests(3)
        self.assertEqual([len(r.body) for r in reqs], [len(body), len(body), 0])
        self.assertTrue(reqs[0].body == body and reqs[1].body == body)

    def test_request_body_streamed_not_buffered(self):
        """The target receives the start of a large body while the client still holds the
        rest back."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        body = pattern(4 << 20)
        head = request_bytes("POST", "/echo-body", [("Content-Length", str(len(body)))])
        with Conn.connect(s.port) as conn:
            conn.send(head + body[:256 * 1024])
            got = wskit.wait_until(lambda: py.conns and len(py.conns[0].raw) >= len(head) +
                                   128 * 1024, PROMPT)
            self.assertTrue(got, "the target saw %d bytes while the client waited"
                            % (len(py.conns[0].raw) if py.conns else 0))
            conn.send(body[256 * 1024:])
            r = read_response(conn, timeout=30)
            self.assertTrue(r.body == body)

    def test_half_closed_client_gets_whole_response(self):
        """A client that shuts its write side after the request and reads late still gets
        every byte of a large answer."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        n = 8 << 20
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/big?n=%d" % n))
            conn.sock.shutdown(socket.SHUT_WR)
            time.sleep(0.5)  # let sluice's buffers fill while we do not read
            r = read_response(conn, timeout=30)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.body == pattern(n), "got %d of %d bytes" % (len(r.body), n))

    def test_slow_upload_longer_than_client_timeout(self):
        """clientTimeout is an idle timeout: a body trickling in (a byte every 0.4 s for
        longer than clientTimeout 1000 ms) must not get a 504."""
        py = self.pyback("p1")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(py.port)])],
                               client_timeout=1000))
        body = b"0123456"
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("POST", "/echo-body",
                                    [("Content-Length", str(len(body)))]))
            for i in range(len(body)):
                time.sleep(0.4)
                conn.send(body[i:i + 1])
            r = read_response(conn, timeout=10)
            self.assertEqual((r.status, r.body), (200, body))

    RESPONSES = (("HEAD", "/", 200, b""),
                 ("GET", "/204", 204, b""),
                 ("GET", "/304", 304, b""),
                 ("GET", "/chunked?n=300000", 200, pattern(300000)),
                 ("GET", "/big?n=100000", 200, pattern(100000)),
                 ("GET", "/big?n=0", 200, b""),
                 ("HEAD", "/again", 200, b""),
                 ("GET", "/", 200, b"p1 GET /\n"))

    def test_response_framing(self):
        """Responses of every framing kind are relayed whole (HEAD, 204 and 304 carry no
        body), one request per connection."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        for method, path, status, body in self.RESPONSES:
            with self.subTest(method=method, path=path), Conn.connect(s.port) as conn:
                conn.send(request_bytes(method, path, [("Connection", "close")]))
                r = read_response(conn, method, timeout=10)
                self.assertEqual(r.status, status, r)
                self.assertTrue(r.body == body, "body differs: %r" % r.body[:100])
                if method == "HEAD":
                    self.assertEqual(r.header("Content-Length"), "1234")
                self.assertClosedPromptly(conn)

    def test_response_framing_keepalive(self):
        """The same responses one after another on one connection: each ends where its
        framing says, so the connection stays usable."""
        py = self.pyback("p1")
        s = self.simple(py.port)
        with Conn.connect(s.port) as conn:
            for method, path, status, body in self.RESPONSES:
                with self.subTest(method=method, path=path):
                    conn.send(request_bytes(method, path))
                    r = read_response(conn, method, timeout=10)
                    self.assertEqual(r.status, status, r)
                    self.assertTrue(r.body == body, "body differs: %r" % r.body[:100])
                    if method == "HEAD":
                        self.assertEqual(r.header("Content-Length"), "1234")
            conn.send(request_bytes("GET", "/close"))
            r = read_response(conn)
            self.assertEqual((r.status, r.body), (200, b"closing body from p1\n"))
            self.assertClosedPromptly(conn)

    def test_target_connections_come_from_the_lb_private_ip(self):
        """Connections to targets leave from the ALB's first local lbPrivateIp: bound to it
        where the kernel would pick another source (127.0.0.7 here), left to the kernel where
        its route already picks that address (127.0.0.1), as requests and as tunnels."""
        for lb_ip in ("127.0.0.7", "127.0.0.1"):
            with self.subTest(lbPrivateIp=lb_ip):
                py = self.pyback("p-" + lb_ip)
                port = wskit.free_port()
                cfg = config(port, [forward("tg-1")], [group("tg-1", [target(py.port)])])
                cfg["applicationLoadBalancer"] = {"id": "alb", "properties": {
                    "name": "alb", "listenerLan": 1, "targetLan": 2, "ips": ["127.0.0.1"],
                    "lbPrivateIps": [lb_ip + "/8"]}}
                s = self.sluice(cfg)
                for i in range(3):
                    self.assertEqual(http(s.port, path="/src%d" % i).status, 200)
                py.wait_requests(3)
                peers = {c.peer[0] for c in py.conns if c.requests}
                self.assertEqual(peers, {lb_ip})

    def test_forwarded_headers(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        r = http(s.port, path="/xf", src="127.0.0.9",
                 headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
                          ("X-Forwarded-Port", "443")])
        self.assertEqual(r.status, 200)
        r = http(s.port, path="/xf2")
        self.assertEqual(r.status, 200)
        req1, req2 = py.wait_requests(2)

        def last(req, name):
            v = req.header(name)
            self.assertIsNotNone(v, "no %s in %r" % (name, req.head_raw))
            return v.split(",")[-1].strip()
        self.assertEqual(last(req1, "X-Forwarded-For"), "127.0.0.9")
        self.assertEqual(last(req1, "X-Forwarded-Proto"), "http")
        self.assertEqual(last(req1, "X-Forwarded-Port"), str(s.port))
        self.assertEqual(req2.header("X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(req2.header("X-Forwarded-Proto"), "http")
        self.assertEqual(req2.header("X-Forwarded-Port"), str(s.port))
        self.assertEqual(req2.header("Host"), "test.local")

    def test_forwarded_headers_on_upgrade(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with WSClient.open(s.port, "/ws/echo") as c:
            c.echo(OP_TEXT, b"x")
        req = py.wait_requests(1)[0]
        self.assertEqual(req.header("X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(req.header("X-Forwarded-Proto"), "http")
        self.assertEqual(req.header("X-Forwarded-Port"), str(s.port))

    def test_hop_by_hop_headers(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/hop", [
                ("Connection", "keep-alive, X-Hop, Upgrade"), ("X-Hop", "secret"),
                ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"), ("X-End", "kept")]))
            r = read_response(conn)
            self.assertEqual(r.status, 200, "an h2c upgrade must be forwarded as plain: %r" % r)
        with WSClient.open(s.port, "/ws/echo", connection="keep-alive, Upgrade, X-Hop",
                           headers=[("X-Hop", "secret"), ("Keep-Alive", "timeout=5"),
                                    ("X-End", "kept")]) as c:
            self.assertEqual(c.echo(OP_TEXT, b"x"), (OP_TEXT, b"x"))
        plain, ws = py.wait_requests(2)
        for req in (plain, ws):
            with self.subTest(req=req.head_raw):
                for h in ("X-Hop", "Keep-Alive", "Proxy-Connection"):
                    self.assertIsNone(req.header(h), "%s forwarded" % h)
                self.assertNotIn("x-hop", req.tokens("Connection"))
                self.assertEqual(req.header("X-End"), "kept")
        self.assertIsNone(plain.header("Upgrade"), "Upgrade: h2c forwarded")
        self.assertNotIn("upgrade", plain.tokens("Connection"))
        self.assertIn("upgrade", ws.tokens("Connection"))
        self.assertEqual(ws.header("Upgrade", "").lower(), "websocket")

    def test_proxy_protocol(self):
        kinds = ("v1", "v2", "v2ssl")
        pys = {k: self.pyback("pp-" + k) for k in kinds}
        plain = self.pyback("none")
        port = wskit.free_port()
        rules = [forward("tg-" + k, [cond_path("/%s/" % k, "STARTS_WITH")]) for k in kinds]
        rules.append(forward("tg-none"))
        groups = [group("tg-" + k, [target(pys[k].port, proxy=k)]) for k in kinds]
        groups.append(group("tg-none", [target(plain.port, proxy="none")]))
        s = self.sluice(config(port, rules, groups))
        src = "127.0.0.5"

        def check(k, bc, cport):
            raw = bytes(bc.raw)
            if k == "none":
                self.assertIsNone(bc.proxy)
                self.assertTrue(raw.startswith(b"GET /"), raw[:60])
                return
            self.assertIsNotNone(bc.proxy, "no PROXY header: %r" % raw[:60])
            if k == "v1":
                self.assertEqual(bc.proxy, b"PROXY TCP4 %s 127.0.0.1 %d %d\r\n"
                                 % (src.encode(), cport, s.port))
            else:
                p = bc.proxy
                self.assertEqual(p[:12], backends.PP2_SIG)
                self.assertEqual(p[12], 0x21, "version 2, PROXY command")
                self.assertEqual(p[13], 0x11, "TCP over IPv4")
                self.assertGreaterEqual(struct.unpack("!H", p[14:16])[0], 12)
                self.assertEqual(p[16:28], socket.inet_aton(src) + socket.inet_aton("127.0.0.1")
                                 + struct.pack("!HH", cport, s.port))
            self.assertEqual(raw.count(bc.proxy), 1, "the header comes once per connection")
            self.assertEqual(raw[len(bc.proxy):][:5], b"GET /")

        def upstream_of(b, path):
            b.wait_requests(1)
            wskit.wait_until(lambda: any(r.target == path for r in b.requests()))
            found = [c for c in b.conns if any(r.target == path for r in c.requests)]
            self.assertEqual(len(found), 1, "no upstream connection carried %s" % path)
            return found[0]

        for k in kinds + ("none",):
            b = pys.get(k, plain)
            with self.subTest(proxy=k, request="plain"):
                with Conn.connect(s.port, src=src) as conn:
                    cport = conn.sock.getsockname()[1]
                    conn.send(request_bytes("GET", "/%s/plain" % k, [("Connection", "close")]))
                    self.assertEqual(read_response(conn).status, 200)
                check(k, upstream_of(b, "/%s/plain" % k), cport)
            with self.subTest(proxy=k, request="websocket"):
                with WSClient.open(s.port, "/%s/ws/echo" % k, src=src) as c:
                    cport = c.conn.sock.getsockname()[1]
                    self.assertEqual(c.echo(OP_TEXT, b"pp"), (OP_TEXT, b"pp"))
                check(k, upstream_of(b, "/%s/ws/echo" % k), cport)
            with self.subTest(proxy=k, request="keep-alive"):
                with Conn.connect(s.port, src=src) as conn:
                    cport = conn.sock.getsockname()[1]
                    for i in range(2):
                        conn.send(request_bytes("GET", "/%s/ka%d" % (k, i)))
                        self.assertEqual(read_response(conn).status, 200)
                for i in range(2):
                    bc = upstream_of(b, "/%s/ka%d" % (k, i))
                    check(k, bc, cport)
                    self.assertTrue({r.target for r in bc.requests} <= {"/%s/ka0" % k,
                                                                        "/%s/ka1" % k},
                                    "another client's request on this upstream connection")

    def test_static_and_redirect(self):
        py = self.pyback("p1")
        port = wskit.free_port()
        rules = [forward("tg-1"),  # FORWARD rules come after STATIC and REDIRECT whatever the order
                 static(426, "This listener serves WebSocket\n", [cond_path("/static")]),
                 redirect("https://example.com/new", 301, False, [cond_path("/r1")]),
                 redirect("https://example.com/new", 302, True, [cond_path("/r2")]),
                 redirect("www.example.org", 308, False, [cond_path("/r3")])]
        s = self.sluice(config(port, rules, [group("tg-1", [target(py.port)])]))
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/static?x=1"))
            r = read_response(conn)
            self.assertEqual(r.status, 426, r)
            self.assertEqual(r.body, b"This listener serves WebSocket\n")
            self.assertTrue(r.header("Content-Type", "").startswith("text/plain"), r)
            if not r.closes:
                conn.send(request_bytes("GET", "/fwd"))
                self.assertEqual(read_response(conn).body, b"p1 GET /fwd\n")
        for path, status, location in (("/r1?a=1&b=2", 301, "https://example.com/new?a=1&b=2"),
                                       ("/r2?a=1", 302, "https://example.com/new"),
                                       ("/r3?q=x", 308, "http://www.example.org/r3?q=x")):
            with self.subTest(path=path):
                r = http(s.port, path=path)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.header("Location"), location)
        with WSClient(Conn.connect(s.port)) as c:
            r = c.handshake("/static", expect=None)
            self.assertEqual(r.status, 426, "STATIC answers an upgrade too: %r" % r)
        reqs = py.requests()
        self.assertEqual([r.path for r in reqs], ["/fwd"][:len(reqs)])

    def test_errors_502_503(self):
        live = self.pyback("live")
        dead1, dead2 = wskit.free_ports(2)
        port = wskit.free_port()
        rules = [forward("tg-refuse", [cond_path("/refuse")]),
                 forward("tg-zero", [cond_path("/zero")]),
                 forward("tg-maint", [cond_path("/maint")]),
                 forward("tg-failover", [cond_path("/failover")])]
        groups = [group("tg-refuse", [target(dead1), target(dead2)]),
                  group("tg-zero", [target(live.port, weight=0)]),
                  group("tg-maint", [target(live.port, maintenance=True)]),
                  group("tg-failover", [target(dead1), target(live.port)])]
        s = self.sluice(config(port, rules, groups))
        bodies = {}
        for path, status in (("/refuse", 502), ("/zero", 503), ("/maint", 503),
                             ("/no-rule", 503)):
            with self.subTest(path=path):
                r = http(s.port, path=path)
                self.assertEqual(r.status, status, r)
                bodies[path] = self.assertOneLineBody(r)
                with WSClient(Conn.connect(s.port)) as c:
                    r = c.handshake(path, expect=None)
                    self.assertEqual(r.status, status, "upgrade: %r" % r)
        self.assertEqual(len({bodies["/refuse"], bodies["/zero"], bodies["/no-rule"]}), 3,
                         "bodies do not say why: %r" % bodies)
        self.assertEqual(live.requests(), [], "weight 0 / maintenance target got requests")
        for i in range(10):
            r = http(s.port, path="/failover")
            self.assertEqual((r.status, served_by(r)), (200, "live"),
                             "no failover from a refusing target: %r" % r)

    def test_error_504_connect_timeout(self):
        hole = wskit.blackhole_listener()
        if hole is None:
            self.skipTest("cannot make a connect hang on loopback here (accept queue trick)")
        hole_port, keep = hole
        self.addCleanup(lambda: [k.close() for k in keep])
        live = self.pyback("live")
        port = wskit.free_port()
        rules = [forward("tg-hole", [cond_path("/hole")]), forward("tg-mixed")]
        groups = [group("tg-hole", [target(hole_port)]),
                  group("tg-mixed", [target(hole_port), target(live.port)])]
        s = self.sluice(config(port, rules, groups, connectTimeout=1000))
        t0 = time.monotonic()
        r = http(s.port, path="/hole", timeout=PROMPT)
        self.assertEqual(r.status, 504, r)
        self.assertOneLineBody(r)
        self.assertLess(time.monotonic() - t0, PROMPT)
        for i in range(3):
            r = http(s.port, path="/mixed", timeout=PROMPT)
            self.assertEqual((r.status, served_by(r)), (200, "live"),
                             "no failover after a connect timeout: %r" % r)

    def test_address_map(self):
        """--map FROM=TO sends traffic for an IONOS address to a local one."""
        py = self.pyback("p1")
        port = wskit.free_port()
        cfg = config(port, [forward("tg-1")], [group("tg-1", [target(7777, ip="10.7.7.7")])])
        s = self.sluice(cfg, args=["--map", "10.7.7.7:7777=127.0.0.1:%d" % py.port,
                                   "--threads", "1"])
        r = http(s.port, path="/mapped")
        self.assertEqual((r.status, r.body), (200, b"p1 GET /mapped\n"))

    def test_access_log(self):
        b = self.bench("b1")
        s = self.simple(b.port)
        r = http(s.port, path="/logged")
        self.assertEqual(r.status, 200)
        with WSClient.open(s.port, "/tunnel") as c:
            self.assertEqual(c.echo(OP_BINARY, b"u" * 1000), (OP_BINARY, b"u" * 1000))
            c.send_close(1000)
            c.recv_close()
            self.assertClosedPromptly(c)
        F = ACCESS_LOG

        def lines():
            good, bad = wskit.read_json_lines(s.stdout_text())
            return good, bad
        wskit.wait_until(lambda: any(x.get(F["type"]) == F["tunnel"] for x in lines()[0]),
                         PROMPT)
        rc, killed = s.stop()
        self.assertEqual((rc, killed), (0, False), "SIGTERM with nothing open")
        good, bad = lines()
        self.assertEqual(bad, [], "access log lines that are not JSON objects")
        http_lines = [x for x in good if x.get(F["type"]) == F["http"]]
        tun = [x for x in good if x.get(F["type"]) == F["tunnel"]]
        self.assertTrue(any(x.get(F["status"]) == 200 and
                            str(x.get(F["target"])) == "127.0.0.1:%d" % b.port
                            for x in http_lines), "no http line for the GET: %r" % good)
        self.assertEqual(len(tun), 1, good)
        t = tun[0]
        framed_up = (1000 + 8) + (2 + 4 + 2)  # data frame + close frame, masked
        framed_down = (1000 + 4) + (2 + 2)
        self.assertGreaterEqual(t[F["bytes_up"]], framed_up, t)
        self.assertLess(t[F["bytes_up"]], framed_up + 4096, t)
        self.assertGreaterEqual(t[F["bytes_down"]], framed_down, t)
        self.assertLess(t[F["bytes_down"]], framed_down + 4096, t)
        self.assertGreaterEqual(t[F["duration"]], 0, t)
        self.assertIn(F["end"], t)


# =============================================================================================

def smuggling_cases():
    h = "Host: test.local\r\n"
    return {
        "CL and TE": "POST / HTTP/1.1\r\n" + h + "Content-Length: 6\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
        "TE and CL": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n"
                     "Content-Length: 6\r\n\r\n0\r\n\r\nX",
        "two different CL": "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\n"
                            "Content-Length: 6\r\n\r\nhello!",
        "CL list differs": "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 6\r\n\r\nhello!",
        "TE chunked, gzip": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, gzip\r\n"
                            "\r\n0\r\n\r\n",
        "TE gzip": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        "TE identity": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n",
        "TE chunked then gzip headers": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked"
                                        "\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        "obs-fold": "GET / HTTP/1.1\r\n" + h + "X-Folded: a\r\n b\r\n\r\n",
        "obs-fold of TE": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\t,chunked\r\n"
                          "\r\n0\r\n\r\n",
        "bare LF after request line": "GET / HTTP/1.1\n" + h + "\r\n",
        "bare LF after a header": "GET / HTTP/1.1\r\nHost: test.local\nX-A: b\r\n\r\n",
        "bare LF ends the head": "GET / HTTP/1.1\r\n" + h + "\n",
        "NUL in a header value": "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n",
        "NUL in a header name": "GET / HTTP/1.1\r\n" + h + "X-\x00A: b\r\n\r\n",
        "CR in a header value": "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n",
        "space before colon": "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n"
                              "\r\n0\r\n\r\n",
    }


class Limits(ProxyTest):
    """Bad and oversized requests, timeouts."""

    def send_tolerant(self, conn, data):
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def test_smuggling_refused(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        for name, raw in smuggling_cases().items():
            with self.subTest(name), Conn.connect(s.port) as conn:
                self.send_tolerant(conn, raw.encode("latin-1"))
                r = read_response(conn)
                self.assertEqual(r.status, 400, r)
                self.assertIn("close", r.tokens("Connection"), r)
                self.assertClosedPromptly(conn)
        # a valid request, then a smuggled one, in one write
        with self.subTest("behind a valid request"), Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/valid") + smuggling_cases()["CL and TE"].encode())
            r = read_response(conn)
            self.assertEqual((r.status, r.body), (200, b"p1 GET /valid\n"))
            r = read_response(conn)
            self.assertEqual(r.status, 400, r)
            self.assertClosedPromptly(conn)
        time.sleep(0.3)
        reqs = py.requests()
        self.assertEqual([r.target for r in reqs], ["/valid"],
                         "the target saw requests sluice refused")
        self.assertEqual(py.all_raw().count(b"HTTP/1.1"), 1, py.all_raw()[:500])

    def test_431_limits(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        cases = (
            ("70 KiB header", [("X-Big", "a" * (70 * 1024))], 431),
            ("101 headers", [("X-H%d" % i, "v") for i in range(100)], 431),  # + Host
            ("100 headers", [("X-H%d" % i, "v") for i in range(99)], 200),
            ("60 KiB head", [("X-Big", "a" * (60 * 1024))], 200),
        )
        for name, headers, status in cases:
            with self.subTest(name), Conn.connect(s.port) as conn:
                self.send_tolerant(conn, request_bytes("GET", "/" + name.replace(" ", "-"),
                                                       headers))
                r = read_response(conn)
                self.assertEqual(r.status, status, r)
                if status == 431:
                    self.assertClosedPromptly(conn)
        self.assertEqual(sorted(r.path for r in py.requests()), ["/100-headers", "/60-KiB-head"])

    def test_408_header_timeout(self):
        py = self.pyback("p1")
        s = self.simple(py.port, headerTimeout=1000)
        with self.subTest("stalled head"), Conn.connect(s.port) as conn:
            conn.send(b"GET /stalled HTTP/1.1\r\nHost: test.local\r\n")
            r = read_response(conn, timeout=PROMPT)
            self.assertEqual(r.status, 408, r)
            self.assertClosedPromptly(conn)
        with self.subTest("head trickled a byte at a time"), Conn.connect(s.port) as conn:
            conn.send(b"GET /trickle HTTP/1.1\r\nHost: test.local\r\nX-Slow: ")
            deadline = time.monotonic() + PROMPT
            closed = None
            while time.monotonic() < deadline and closed is None:
                try:
                    conn.send(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    closed = "send failed"
                    break
                closed = conn.wait_closed(0.2)
            self.assertIsNotNone(closed, "a trickled head was not cut within %.0f s" % PROMPT)
            if conn.buf:
                self.assertTrue(bytes(conn.buf).startswith(b"HTTP/1.1 408"), bytes(conn.buf))
        self.assertEqual(py.requests(), [])

    def test_client_timeout_between_requests(self):
        py = self.pyback("p1")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(py.port)])],
                               client_timeout=1000))
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/one"))
            self.assertEqual(read_response(conn).status, 200)
            self.assertClosedPromptly(conn, "an idle keep-alive connection (clientTimeout 1000)")


# =============================================================================================

def count_served(port, n, workers=8, src_of=None, path="/", timeout=PROMPT):
    """Sends <n> GETs to <port>, one connection each (Connection: close), from <workers>
    threads; <src_of>(i) gives request i's source address. Returns (Counter of served_by per
    request, {i: served_by}, [errors])."""
    who = {}
    errors = []
    lock = threading.Lock()

    def work(k):
        for i in range(k, n, workers):
            try:
                with Conn.connect(port, src=src_of(i) if src_of else None,
                                  timeout=timeout) as conn:
                    conn.send(request_bytes("GET", path, [("Connection", "close")]))
                    r = read_response(conn, timeout=timeout)
                    # the whole exchange ends before the next one starts
                    conn.wait_closed(timeout)
                name = served_by(r) if r.status == 200 else "status %d" % r.status
            except Exception as e:  # counted and reported by the caller
                with lock:
                    errors.append("request %d: %r" % (i, e))
                name = None
            who[i] = name
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        list(ex.map(work, range(workers)))
    return collections.Counter(who.values()), who, errors


class Balancing(ProxyTest):
    """Distribution over targets, and no fd left behind."""

    N = 10000

    def check_shares(self, counts, weights, n, tolerance=0.05):
        total_w = sum(weights.values())
        msg = "counts %r for weights %r" % (dict(counts), weights)
        for name, w in weights.items():
            expect = n * w / total_w
            if w == 0:
                self.assertEqual(counts.get(name, 0), 0, msg)
            else:
                self.assertLessEqual(abs(counts.get(name, 0) - expect), tolerance * expect, msg)
        self.assertEqual(sum(counts.values()), n, msg)

    def balanced(self, algorithm, weights, maintenance=()):
        bs = self.benches(*weights)
        port = wskit.free_port()
        targets = [target(b.port, weight=weights[b.name], maintenance=b.name in maintenance)
                   for b in bs]
        return self.sluice(config(port, [forward("tg-1")], [group("tg-1", targets, algorithm)]))

    def test_round_robin(self):
        weights = {"a": 1, "b": 2, "c": 3, "zero": 0, "maint": 5}
        s = self.balanced("ROUND_ROBIN", weights, maintenance=("maint",))
        counts, _, errors = count_served(s.port, self.N)
        self.assertEqual(errors, [])
        self.check_shares(counts, dict(weights, maint=0), self.N)

    def test_random(self):
        # weights 2:1 keep the test's own noise far inside ±5 % (3.5 sigma)
        weights = {"a": 2, "b": 1}
        s = self.balanced("RANDOM", weights)
        counts, _, errors = count_served(s.port, self.N)
        self.assertEqual(errors, [])
        self.check_shares(counts, weights, self.N)

    def test_least_connection_sequential(self):
        """One connection at a time: every target has 0 open, so the weights decide."""
        weights = {"a": 1, "b": 2, "c": 3}
        s = self.balanced("LEAST_CONNECTION", weights)
        counts, _, errors = count_served(s.port, self.N, workers=1)
        self.assertEqual(errors, [])
        self.check_shares(counts, weights, self.N)

    def test_least_connection_held_tunnels(self):
        """With tunnels held open, new ones go where open/weight is least: 60 tunnels over
        weights 1:2:3 end as 10/20/30."""
        pys = {n: self.pyback(n) for n in ("a", "b", "c")}
        weights = {"a": 1, "b": 2, "c": 3}
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")], [group(
            "tg-1", [target(pys[n].port, weight=w) for n, w in weights.items()],
            "LEAST_CONNECTION")]))
        held = collections.Counter()
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for i in range(60):
            c = WSClient.open(s.port, "/ws/hello")
            clients.append(c)
            op, msg = c.recv_message()
            held[msg.decode().split()[-1]] += 1
        for n, w in weights.items():
            self.assertLessEqual(abs(held[n] - 10 * w), 1, "held tunnels %r" % dict(held))

    def test_source_ip(self):
        weights = {"a": 2, "b": 1}
        s = self.balanced("SOURCE_IP", weights)

        def src(i):
            return "127.1.%d.%d" % (i // 250, i % 250 + 1)
        counts, who, errors = count_served(s.port, self.N, src_of=src)
        self.assertEqual(errors, [])
        # one connection per source: the spread follows the weights (sources are the sample)
        self.check_shares(counts, weights, self.N)
        # stickiness: 500 of those sources come back twice each
        sticky = list(range(0, self.N, 20))
        again, who2, errors = count_served(s.port, 2 * len(sticky),
                                           src_of=lambda j: src(sticky[j // 2]))
        self.assertEqual(errors, [])
        moved = [(src(sticky[j // 2]), who[sticky[j // 2]], w) for j, w in who2.items()
                 if w != who[sticky[j // 2]]]
        self.assertEqual(moved, [], "sources served by another target on return")

    def test_no_fd_left_behind(self):
        wskit.raise_nofile(20000)
        b1, b2 = self.benches("b1", "b2")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")],
                               [group("tg-1", [target(b1.port), target(b2.port)])]))
        errors = []

        def op(i):
            kind = i % 20
            try:
                if kind < 11:  # plain request, Connection: close
                    r = http(s.port, path="/fd%d" % i)
                    assert r.status == 200, r
                elif kind < 15:  # tunnel, echo, clean close
                    with WSClient.open(s.port, "/t%d" % i) as c:
                        assert c.echo(OP_TEXT, b"x" * 100) == (OP_TEXT, b"x" * 100)
                        c.send_close(1000)
                        assert c.recv_close()[0] == 1000
                elif kind < 16:  # tunnel, then the client resets
                    c = WSClient.open(s.port, "/r%d" % i)
                    c.send_binary(b"y" * 5000)
                    c.conn.reset()
                elif kind < 17:  # connect and leave
                    Conn.connect(s.port).close()
                elif kind < 18:  # half a head, then leave
                    with Conn.connect(s.port) as conn:
                        conn.send(b"GET / HTTP/1.1\r\nHost: x")
                elif kind < 19:  # keep-alive: three requests then close
                    with Conn.connect(s.port) as conn:
                        for j in range(3):
                            conn.send(request_bytes("GET", "/k%d" % j))
                            assert read_response(conn).status == 200
                else:  # a smuggling attempt: 400 and close
                    with Conn.connect(s.port) as conn:
                        conn.send(smuggling_cases()["CL and TE"].encode())
                        assert read_response(conn).status == 400
            except Exception as e:
                errors.append("op %d (kind %d): %r" % (i, kind, e))

        def run(n, workers=8):
            with concurrent.futures.ThreadPoolExecutor(workers) as ex:
                list(ex.map(lambda k: [op(i) for i in range(k, n, workers)], range(workers)))

        def settled_count(limit):
            # connections close asynchronously: wait until the count stops falling
            return wskit.wait_until(lambda: s.fd_count() <= limit, PROMPT * 2) or s.fd_count()

        run(400)  # warm-up: pools and lazily opened fds
        time.sleep(0.5)
        before_fds = s.fds()
        before = len(before_fds)
        run(self.N)
        slack = 16
        settled_count(before + slack)
        after_fds = s.fds()
        extra = {fd: t for fd, t in after_fds.items() if before_fds.get(fd) != t}
        self.assertLessEqual(len(after_fds), before + slack,
                             "sluice had %d fds before, %d after %d connections; new: %r"
                             % (before, len(after_fds), self.N,
                                collections.Counter(t.split(":")[0] for t in extra.values())))
        self.assertEqual(errors[:5], [], "%d operations failed" % len(errors))


def nofile_limit(soft, hard=None):
    """A preexec_fn setting the child's RLIMIT_NOFILE."""
    def set_limit():
        import resource
        h = resource.getrlimit(resource.RLIMIT_NOFILE)[1] if hard is None else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, h))
    return set_limit


class FdLimits(ProxyTest):
    """RLIMIT_NOFILE raised to the hard limit; running out of fds pauses accepting."""

    def test_nofile_raised_to_hard_limit(self):
        b = self.bench("b1")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(b.port)])]),
                        preexec_fn=nofile_limit(256))
        soft, hard = s.nofile_limits()
        self.assertEqual(soft, hard, "started with a soft limit of 256")

    def test_out_of_fds_pauses_accepting(self):
        """With a hard limit of 64 fds and more tunnels than fit: no crash, no busy loop, few
        log lines; once tunnels close, new connections are served again."""
        b = self.bench("b1")
        port = wskit.free_port()
        s = self.sluice(config(port, [forward("tg-1")], [group("tg-1", [target(b.port)])]),
                        preexec_fn=nofile_limit(64, 64))
        err_lines_before = len(s.stderr_text().splitlines())
        held, failed, waiting = [], 0, []
        self.addCleanup(lambda: [c.close() for c in held + waiting])
        for i in range(45):  # 2 fds each in sluice: more than 64 can hold
            try:
                c = WSClient.open(s.port, "/", timeout=1)
                held.append(c)
            except (OSError, wskit.ProtocolError):
                failed += 1
        self.assertGreater(failed, 0, "45 tunnels fit in 64 fds? the limit did not apply")
        self.assertTrue(s.alive(), "sluice died out of fds")
        # a few more clients wait in the accept queue while sluice has no fd to spare
        for i in range(5):
            c = Conn.connect(s.port, timeout=1)
            c.send(wskit.handshake_bytes(wskit.ws_key()))
            waiting.append(c)
        cpu0 = s.cpu_seconds()
        time.sleep(1.0)
        cpu = s.cpu_seconds() - cpu0
        self.assertLess(cpu, 0.5, "sluice used %.2f s of CPU in 1 s while out of fds "
                        "(spinning on accept?)" % cpu)
        new_lines = s.stderr_text().splitlines()[err_lines_before:]
        for c in held:
            c.close()
        held.clear()
        ok = wskit.wait_until(lambda: self._try_tunnel(s.port), PROMPT)
        self.assertTrue(ok, "no new tunnel within %.0f s of closing the others" % PROMPT)
        self.assertTrue(s.alive())
        # "logs once": a line or two per episode (a warning, maybe an all-clear), not one per
        # accept retry
        self.assertLessEqual(
            len(new_lines), 5, "while out of fds, sluice logged %d lines:\n%s"
            % (len(new_lines), "\n".join(new_lines[:12])))

    def _try_tunnel(self, port):
        try:
            with WSClient.open(port, "/", timeout=1) as c:
                return c.echo(OP_TEXT, b"back") == (OP_TEXT, b"back")
        except (OSError, wskit.ProtocolError):
            return False


# =============================================================================================

class Shutdown(ProxyTest):
    """SIGTERM: stop accepting, drain tunnels, exit 0."""

    def test_sigterm_drains_open_tunnel(self):
        b = self.bench("b1")
        s = self.simple(b.port, drainTimeout=30000)
        c = WSClient.open(s.port, "/")
        self.addCleanup(c.close)
        self.assertEqual(c.echo(OP_TEXT, b"before"), (OP_TEXT, b"before"))
        s.signal(signal.SIGTERM)
        refused = wskit.wait_until(lambda: not wskit.port_open(s.port), PROMPT)
        self.assertTrue(refused, "still accepting %.0f s after SIGTERM" % PROMPT)
        self.assertTrue(s.alive(), "exited with a tunnel open")
        for i in range(3):
            self.assertEqual(c.echo(OP_TEXT, b"after %d" % i), (OP_TEXT, b"after %d" % i),
                             "tunnel stopped working after SIGTERM")
            time.sleep(0.2)
        self.assertTrue(s.alive(), "exited with a tunnel open")
        self.closeTunnel(c)
        self.assertExitsOnceTunnelsClosed(s)

    def test_sigterm_drain_timeout(self):
        b = self.bench("b1")
        s = self.simple(b.port, drainTimeout=1000)
        c = WSClient.open(s.port, "/")
        self.addCleanup(c.close)
        self.assertEqual(c.echo(OP_TEXT, b"x"), (OP_TEXT, b"x"))
        s.signal(signal.SIGTERM)
        rc = s.wait(PROMPT)
        self.assertEqual(rc, 0, "exit status after drainTimeout 1000 (None: still running)")
        self.assertClosedPromptly(c, "the tunnel cut at drainTimeout", timeout=1)

    def test_sigterm_idle_keepalive_does_not_hold_exit(self):
        py = self.pyback("p1")
        s = self.simple(py.port)
        with Conn.connect(s.port) as conn:
            conn.send(request_bytes("GET", "/"))
            self.assertEqual(read_response(conn).status, 200)
            s.signal(signal.SIGTERM)
            rc = s.wait(PROMPT)
            self.assertEqual(rc, 0, "exit status with an idle keep-alive connection open "
                             "(None: still running)")
            self.assertClosedPromptly(conn, timeout=1)


class Workers(ProxyTest):
    """How many worker threads start: threads 0 means one per CPU the process may run on
    (its affinity, as taskset or a cpuset sets it), and more workers than that is logged."""

    def started(self, s):
        m = [ln for ln in s.stderr_text().splitlines() if "workers running" in ln]
        self.assertEqual(len(m), 1, s.stderr_text())
        return int(m[0].split("info: ")[1].split()[0])

    def test_threads_0_follows_the_cpu_affinity(self):
        b = self.bench("b1")
        cpus = sorted(os.sched_getaffinity(0))
        one = self.simple(b.port, threads=0,
                          preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}))
        self.assertEqual(self.started(one), 1, "threads 0 under a one-CPU affinity")
        every = self.simple(b.port, threads=0)
        self.assertEqual(self.started(every), len(cpus), "threads 0, affinity %s" % cpus)
        for s in (one, every):
            self.assertNotIn("usable CPU", s.stderr_text())
            with WSClient.open(s.port, "/") as c:
                self.assertEqual(c.echo(OP_TEXT, b"x"), (OP_TEXT, b"x"))
                self.closeTunnel(c)

    def test_more_threads_than_usable_cpus_is_logged(self):
        b = self.bench("b1")
        cpu = min(os.sched_getaffinity(0))
        s = self.simple(b.port, threads=2, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        self.assertEqual(self.started(s), 2)
        self.assertIn("warning: 2 worker threads for 1 usable CPU: workers that share a CPU "
                      "wait for each other's time slices", s.stderr_text())


def per_thread(proc, name, value):
    """{thread id: value(text of /proc/PID/task/TID/<name>)} over <proc>'s threads."""
    out = {}
    for t in os.listdir("/proc/%d/task" % proc.pid):
        try:
            with open("/proc/%d/task/%s/%s" % (proc.pid, t, name)) as f:
                out[t] = value(f.read())
        except OSError:
            pass  # a thread that just ended
    return out


def thread_cpu(proc):
    """{thread id: ns on a CPU so far} of <proc> (schedstat)."""
    return per_thread(proc, "schedstat", lambda text: int(text.split()[0]))


def voluntary_switches(proc):
    """{thread id: voluntary context switches so far} of <proc>: a thread that blocks (in
    epoll_wait, for a worker) counts one."""
    return per_thread(proc, "status", lambda text: int(
        re.search(r"^voluntary_ctxt_switches:\s*(\d+)", text, re.M).group(1)))


def cpu_seconds(proc):
    """CPU time <proc> has used so far, over all its threads."""
    return sum(thread_cpu(proc).values()) / 1e9


class BusyPoll(ProxyTest):
    """sluice.busyPoll: a worker polls until that long has passed without an event before it
    may sleep. What it buys is measured by bench/run; here, that it spins after traffic,
    never sleeps under steady traffic, sleeps when idle, follows a reload and leaves tunnels
    and stopping as they were. The bounds are on CPU time and context switches, with wide
    margins (a spin shares the CPU with the rest of the suite)."""

    SPIN_US = 50000
    ECHOES = 10

    def assertSpinsThenSleeps(self, s, spins, what):
        """On a new tunnel to <s>: ECHOES echoes, 0.15 s apart, use more than a quarter of
        the CPU their spins would (<spins>) or less than an eighth of it (not); then 1 s of
        silence, once the last spin is over, uses less than 0.1 s of CPU."""
        nominal = self.ECHOES * self.SPIN_US / 1e6
        with WSClient.open(s.port, "/") as c:
            busy0 = cpu_seconds(s)
            for i in range(self.ECHOES):
                self.assertEqual(c.echo(OP_TEXT, b"e%d" % i), (OP_TEXT, b"e%d" % i))
                time.sleep(0.15)
            idle0 = cpu_seconds(s)
            time.sleep(1.0)
            busy, idle = idle0 - busy0, cpu_seconds(s) - idle0
            self.closeTunnel(c)
        if spins:
            self.assertGreater(busy, nominal / 4, "%s: %d echoes, each followed by a %d us "
                               "spin, used %.3f s of CPU" % (what, self.ECHOES, self.SPIN_US,
                                                             busy))
        else:
            self.assertLess(busy, nominal / 8, "%s: %d echoes without a spin used %.3f s of "
                            "CPU" % (what, self.ECHOES, busy))
        self.assertLess(idle, 0.1, "%s: 1 s of silence used %.3f s of CPU: the worker did "
                        "not go back to sleep" % (what, idle))

    def test_spins_after_traffic_and_sleeps_when_idle(self):
        b = self.bench("b1")
        spin = self.simple(b.port, threads=1, busyPoll=self.SPIN_US)
        plain = self.simple(b.port, threads=1)
        self.assertIn("1 workers running, each busy-polling %d us after its last event" %
                      self.SPIN_US, spin.stderr_text())
        self.assertSpinsThenSleeps(spin, True, "busyPoll %d" % self.SPIN_US)
        self.assertSpinsThenSleeps(plain, False, "no busyPoll")

    def test_steady_traffic_never_sleeps(self):
        """Echoes every 5 ms for 1 s, well inside a 50 ms spin: the spin is counted from the
        last event, so the worker never blocks (a spin that ended 50 ms after each wakeup
        would sleep about once every 50 ms, some 15 times)."""
        b = self.bench("b1")
        s = self.simple(b.port, threads=1, busyPoll=self.SPIN_US)
        with WSClient.open(s.port, "/") as c:
            self.assertEqual(c.echo(OP_TEXT, b"warm"), (OP_TEXT, b"warm"))
            cpu0, sw0 = thread_cpu(s), voluntary_switches(s)
            end = time.monotonic() + 1.0
            i = 0
            while time.monotonic() < end:
                self.assertEqual(c.echo(OP_TEXT, b"s%d" % i), (OP_TEXT, b"s%d" % i))
                i += 1
                time.sleep(0.005)
            cpu1, sw1 = thread_cpu(s), voluntary_switches(s)
            self.closeTunnel(c)
        # The worker is the thread that ran: the spin kept it on the CPU (a quarter of the
        # second at least: it shares the CPUs with the rest of the suite).
        worker = max(cpu1, key=lambda t: cpu1[t] - cpu0.get(t, 0))
        self.assertGreater((cpu1[worker] - cpu0.get(worker, 0)) / 1e9, 0.25,
                           "the worker did not spin through the echoes")
        slept = sw1[worker] - sw0.get(worker, 0)
        self.assertLess(slept, 5, "%d echoes 5 ms apart with busyPoll %d us: the worker "
                        "slept %d times" % (i, self.SPIN_US, slept))

    def test_reload_turns_it_on_and_off(self):
        b = self.bench("b1")
        s = self.simple(b.port, threads=1)
        with open(s.cfg_path) as f:
            cfg = json.load(f)
        for gen, us in ((2, self.SPIN_US), (3, 0)):
            cfg["sluice"]["busyPoll"] = us
            with open(s.cfg_path, "w") as f:
                json.dump(cfg, f)
            s.signal(signal.SIGHUP)
            self.assertTrue(wskit.wait_until(
                lambda: "reload: generation %d " % gen in s.stderr_text(), PROMPT),
                "no reload to generation %d" % gen)
            # A new tunnel: its upgrade wakes the worker, which takes the new config first.
            self.assertSpinsThenSleeps(s, us > 0, "after the reload to busyPoll %d" % us)

    def test_tunnels_and_stopping_while_spinning(self):
        """The longest spin allowed: a stream of echoes and the python3-websockets client
        work, and SIGTERM ends the process promptly with a tunnel busy."""
        b = self.bench("b1")
        s = self.simple(b.port, threads=2, busyPoll=100000, drainTimeout=0)
        with WSClient.open(s.port, "/") as c:
            ws_echo_check(self, c, (0, 125, 65536, 1 << 20))
            self.closeTunnel(c)
        import websockets

        async def run():
            async with websockets.connect("ws://127.0.0.1:%d/" % s.port, open_timeout=PROMPT,
                                          close_timeout=PROMPT) as ws:
                for i in range(50):
                    await ws.send("m%d" % i)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), PROMPT), "m%d" % i)
        asyncio.run(asyncio.wait_for(run(), 30))
        c = WSClient.open(s.port, "/")
        self.addCleanup(c.close)
        echoed = []

        def pump():
            """Echoes until the tunnel ends (drainTimeout 0: at SIGTERM)."""
            while True:
                try:
                    c.echo(OP_BINARY, b"%d" % len(echoed), timeout=PROMPT)
                except Exception:  # the tunnel ended: what the test waits for
                    return
                echoed.append(1)
        t = threading.Thread(target=pump)
        t.start()
        time.sleep(0.3)
        s.signal(signal.SIGTERM)
        rc = s.wait(PROMPT)
        t.join(PROMPT)
        self.assertFalse(t.is_alive(), "the busy tunnel still echoes after SIGTERM")
        self.assertGreater(len(echoed), 10, "echoes before SIGTERM")
        self.assertEqual(rc, 0, "exit status of a spinning sluice after SIGTERM "
                         "(None: still running)")


def run_main(name):
    """The main() of every test file on this harness: SLUICE SLUICE_BENCH SOURCE_ROOT [unittest
    args]. Runs the tests of the calling file's __main__ module."""
    global SLUICE, SLUICE_BENCH, SRC
    if len(sys.argv) < 4:
        sys.stderr.write("usage: %s SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]\n"
                         % sys.argv[0])
        return 2
    SLUICE = os.path.abspath(sys.argv[1])
    SLUICE_BENCH = os.path.abspath(sys.argv[2])
    SRC = os.path.abspath(sys.argv[3])
    for exe in (SLUICE, SLUICE_BENCH):
        if not os.access(exe, os.X_OK):
            sys.stderr.write("%s: not an executable\n" % exe)
            return 2
    wskit.raise_nofile(20000)
    t0 = time.monotonic()
    prog = unittest.main(module="__main__", argv=[sys.argv[0], *sys.argv[4:]], verbosity=2,
                         exit=False)
    sys.stderr.write("%s: %.1f s\n" % (name, time.monotonic() - t0))
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(run_main("test_proxy"))
