#!/usr/bin/python3
"""End-to-end tests of the load generator `sluice-bench` (bench/README.md): every client mode
against `sluice-bench server`, its results (text and --json), its verification of echoes against
a deliberately faulty echo server, its aliases, usage errors and progress display, and wss://:
every mode against python3-websockets' server over TLS with a certificate made at test time.

Run by meson as:
    /usr/bin/python3 tests/integration/test_bench.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]
One class or test: append its name, e.g. Verify or Verify.test_corrupt.

Real processes on loopback; every run is short (about a second; a missing echo costs the
client's 2 s drain on top). FaultyServer is a small RFC 6455 echo server on raw sockets, written
here, that misbehaves once (or on every connection) in a chosen way; each fault must make the
client exit 1 and name the mismatch on stderr. Standard library, plus Debian's
python3-websockets 10.4 and the openssl command for wss://.
"""
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402
import wskit  # noqa: E402
from test_proxy import ProxyTest  # noqa: E402
from wskit import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame  # noqa: E402

RUN = "1"          # --seconds of every timed run
RUN_TIMEOUT = 30   # a run that takes longer than this is hung

# The wss:// echo server: python3-websockets over Python's ssl, in a process of its own.
# argv: PORT CERT KEY [tls1.2]. Every message goes back as it came (binary stays binary). On
# stdout, one line per TLS handshake with the SNI it got ("sni -" for none) and one per
# WebSocket connection with the ALPN protocol chosen.
WSS_ECHO = r"""
import asyncio, ssl, sys
import websockets

def sni(sslobj, name, ctx):
    print("sni", name or "-", flush=True)

async def echo(ws, path=None):
    alpn = ws.transport.get_extra_info("ssl_object").selected_alpn_protocol()
    print("alpn", alpn or "-", flush=True)
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = sni
    if sys.argv[4:] == ["tls1.2"]:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), ssl=ctx, max_size=None,
                                compression=None):
        await asyncio.Future()

asyncio.run(main())
"""


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    def json(self):
        return json.loads(self.out)

    def fields(self):
        """key=value pairs of the text result line."""
        return dict(kv.split("=", 1) for kv in self.out.split()[1:])

    def __repr__(self):
        return "sluice-bench %s -> %s\n--- stdout:\n%s--- stderr:\n%s" % (
            " ".join(self.args), self.rc, self.out, self.err)


def bench(*args, stderr=subprocess.PIPE):
    p = subprocess.run([test_proxy.SLUICE_BENCH, *args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=stderr, timeout=RUN_TIMEOUT)
    return Result(args, p.returncode, p.stdout.decode(), (p.stderr or b"").decode())


class FaultyServer:
    """An RFC 6455 echo server on raw sockets, one thread per connection, that echoes every
    message (unfragmented, as sluice-bench sends them) and every ping, and answers a close with
    the same close. <fault> applies to the <nth> data message it receives over all connections:
      corrupt  flips one byte in the middle of the payload
      drop     does not echo it
      replay   echoes the previous message received instead (out of order)
      opcode   echoes it as text
      short    echoes it one byte short
      close    sends close 1011 instead of the echo
      masked   echoes it in a masked frame
    and to every connection:
      accept   a 101 with a wrong Sec-WebSocket-Accept
      pong     answers pings with a corrupted payload
    It records each connection's peer address."""

    def __init__(self, fault=None, nth=5):
        self.fault, self.nth = fault, nth
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.count = 0
        self.prev = b""
        self.peers = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            # wake accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def _accept_loop(self):
        while True:
            c, peer = self.sock.accept()
            if self.stopping:
                c.close()
                return
            with self.lock:
                self.peers.append(peer[0])
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            with c:
                c.settimeout(30)
                self._conversation(c)
        except OSError:
            pass

    def _conversation(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        head, rest = head.split(b"\r\n\r\n", 1)
        key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head).group(1).decode()
        accept = wskit.ws_accept(key)
        if self.fault == "accept":
            accept = wskit.ws_accept(key + "x")
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        parser = wskit.FrameParser(expect_masked=True)
        parser.feed(rest)
        while True:
            for f in parser.frames():
                if f.opcode == OP_CLOSE:
                    c.sendall(encode_frame(OP_CLOSE, f.payload, mask=False))
                    return
                if f.opcode == OP_PING:
                    pl = f.payload
                    if self.fault == "pong":
                        pl = pl[:-1] + bytes([pl[-1] ^ 1])
                    c.sendall(encode_frame(OP_PONG, pl, mask=False))
                    continue
                if f.opcode == OP_PONG:
                    continue
                if not self._echo(c, f):
                    return
            d = c.recv(1 << 16)
            if not d:
                return
            parser.feed(d)

    def _echo(self, c, f):
        """Echoes data frame <f>, with the fault if its turn has come; False to hang up."""
        op, pl = f.opcode, f.payload
        with self.lock:
            self.count += 1
            mine = self.count == self.nth
            prev, self.prev = self.prev, pl
        mask = False
        if mine:
            if self.fault == "corrupt":
                k = len(pl) // 2
                pl = pl[:k] + bytes([pl[k] ^ 0x55]) + pl[k + 1:]
            elif self.fault == "drop":
                return True
            elif self.fault == "replay":
                pl = prev
            elif self.fault == "opcode":
                op = OP_TEXT
            elif self.fault == "short":
                pl = pl[:-1]
            elif self.fault == "close":
                c.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1011), mask=False))
                return True
            elif self.fault == "masked":
                mask = True
        c.sendall(encode_frame(op, pl, fin=f.fin, mask=mask))
        return True


class BenchTest(ProxyTest):
    """ProxyTest (temp dir, processes, diagnostics) plus runs of the sluice-bench client."""

    def server(self):
        return "ws://127.0.0.1:%d/" % self.bench().port

    def faulty(self, fault=None, nth=5):
        s = FaultyServer(fault, nth)
        self.addCleanup(s.stop)
        return s

    def run_ok(self, *args):
        r = bench(*args)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.err, "", "stderr of a clean run (no progress when not a terminal)")
        return r

    def run_fails(self, *args, want=()):
        """Runs <args>; asserts exit status 1 and that stderr names every string of <want>."""
        r = bench(*args)
        self.assertEqual(r.rc, 1, r)
        for w in want:
            self.assertIn(w, r.err, r)
        for marker in ("AddressSanitizer", "runtime error:"):
            self.assertNotIn(marker, r.err, r)
        return r

    def assertPercentiles(self, j):
        self.assertGreater(j["p50_us"], 0, j)
        self.assertLessEqual(j["p50_us"], j["p90_us"], j)
        self.assertLessEqual(j["p90_us"], j["p99_us"], j)
        self.assertLessEqual(j["p99_us"], j["p999_us"], j)
        self.assertLessEqual(j["p999_us"], j["max_us"], j)


class Modes(BenchTest):
    """Every mode against `sluice-bench server`: exit 0, plausible results."""

    def test_bulk_json(self):
        j = self.run_ok("bulk", "--url", self.server(), "--seconds", RUN, "--size", "64k",
                        "--json").json()
        for k in ("mode", "conns", "size", "seconds", "bytes", "mib_per_s", "mb_per_s",
                  "messages", "msgs_per_s", "window", "threads", "verify", "errors"):
            self.assertIn(k, j)
        self.assertEqual((j["mode"], j["size"], j["errors"], j["verify"]),
                         ("bulk", 65536, 0, True))
        self.assertGreater(j["messages"], 0)
        # bytes count as they come in, messages once whole: at most a window apart
        self.assertLessEqual(j["messages"] * 65536, j["bytes"], j)
        self.assertLess(j["bytes"], (j["messages"] + j["window"]) * 65536, j)
        self.assertAlmostEqual(j["mb_per_s"], j["mib_per_s"] * 1.048576, delta=0.2)
        self.assertAlmostEqual(j["msgs_per_s"], j["messages"] / j["seconds"],
                               delta=0.01 * j["msgs_per_s"] + 0.1)
        self.assertAlmostEqual(j["mib_per_s"], j["bytes"] / j["seconds"] / 2**20,
                               delta=0.01 * j["mib_per_s"] + 0.1)

    def test_bulk_text(self):
        r = self.run_ok("bulk", "--url", self.server(), "--seconds", RUN, "--size", "4k",
                        "--conns", "2", "--verify")
        self.assertTrue(r.out.startswith("bulk: "), r)
        f = r.fields()
        for k in ("conns", "size", "seconds", "bytes", "MiB/s", "MB/s", "msgs/s"):
            self.assertIn(k, f)
        self.assertEqual(f["conns"], "2")
        self.assertGreater(float(f["MB/s"]), 0)
        self.assertGreater(float(f["msgs/s"]), 0)

    def test_rr_json(self):
        j = self.run_ok("rr", "--url", self.server(), "--seconds", RUN, "--conns", "2",
                        "--json").json()
        for k in ("mode", "conns", "size", "seconds", "messages", "msgs_per_s", "p50_us",
                  "p90_us", "p99_us", "p999_us", "max_us", "threads", "errors"):
            self.assertIn(k, j)
        self.assertEqual((j["mode"], j["conns"], j["size"], j["errors"]), ("rr", 2, 64, 0))
        self.assertGreater(j["messages"], 0)
        self.assertPercentiles(j)

    def test_rr_text(self):
        r = self.run_ok("rr", "--url", self.server(), "--seconds", RUN, "--size", "3")
        self.assertTrue(r.out.startswith("rr: "), r)
        f = r.fields()
        for k in ("conns", "size", "seconds", "msgs", "msgs/s", "p50_us", "p90_us", "p99_us",
                  "p999_us", "max_us"):
            self.assertIn(k, f)
        self.assertLessEqual(float(f["p50_us"]), float(f["max_us"]))

    def test_upgrades_json(self):
        j = self.run_ok("upgrades", "--url", self.server(), "--seconds", RUN, "--conns", "3",
                        "--json").json()
        for k in ("mode", "conns", "concurrency", "size", "seconds", "upgrades",
                  "upgrades_per_s", "failed", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
                  "threads", "errors"):
            self.assertIn(k, j)
        self.assertEqual((j["mode"], j["conns"], j["concurrency"], j["size"], j["failed"]),
                         ("upgrades", 3, 3, 64, 0))
        self.assertGreater(j["upgrades"], 0)
        self.assertPercentiles(j)

    def test_upgrades_text(self):
        r = self.run_ok("upgrades", "--url", self.server(), "--seconds", RUN, "--size", "1k")
        self.assertTrue(r.out.startswith("upgrades: "), r)
        f = r.fields()
        for k in ("conns", "concurrency", "upgrades", "upgrades/s", "failed", "p50_us", "p90_us",
                  "p99_us", "p999_us"):
            self.assertIn(k, f)
        self.assertEqual((f["conns"], f["failed"]), ("4", "0"))
        self.assertGreater(int(f["upgrades"]), 0)

    def test_idle(self):
        url = self.server()
        j = self.run_ok("idle", "--url", url, "--conns", "20", "--hold", "0.3", "--json").json()
        self.assertEqual((j["opened"], j["ok"], j["failed"], j["errors"]), (20, 20, 0, 0), j)
        r = self.run_ok("idle", "--url", url, "--conns", "5", "--hold", "0.3")
        self.assertTrue(r.out.startswith("idle: opened=5 ok=5 failed=0 conns=5 "), r)

    def test_threads(self):
        url = self.server()
        j = self.run_ok("bulk", "--url", url, "--seconds", "0.5", "--size", "16k", "--conns",
                        "4", "--threads", "2", "--json").json()
        self.assertEqual((j["threads"], j["errors"]), (2, 0))
        j = self.run_ok("upgrades", "--url", url, "--seconds", "0.5", "--conns", "4",
                        "--threads", "2", "--json").json()
        self.assertEqual((j["threads"], j["failed"]), (2, 0))
        self.assertGreater(j["upgrades"], 0)


class Verify(BenchTest):
    """A faulty echo server: every fault fails bulk, rr and upgrades (exit 1, named on stderr)."""

    def modes(self, url):
        return (("bulk", "--url", url, "--seconds", RUN, "--size", "4k"),
                ("rr", "--url", url, "--seconds", RUN),
                ("upgrades", "--url", url, "--seconds", RUN, "--conns", "1"))

    def each_mode(self, fault, want, nth=5):
        """<want>: a string stderr must name, or {mode: string}."""
        for args in self.modes("ws://127.0.0.1:%d/"):
            with self.subTest(mode=args[0]):
                s = self.faulty(fault, nth)
                args = (args[0], args[1], args[2] % s.port) + args[3:]
                w = want if isinstance(want, str) else want[args[0]]
                r = self.run_fails(*args, want=(w,))
                self.assertIn("errors; first: ", r.err, r)

    def test_clean_server_passes(self):
        """The faulty server without a fault is a correct echo server: everything passes."""
        for args in self.modes("ws://127.0.0.1:%d/"):
            with self.subTest(mode=args[0]):
                s = self.faulty()
                self.run_ok(args[0], args[1], args[2] % s.port, *args[3:])

    def test_corrupt(self):
        self.each_mode("corrupt", "payload differs from what was sent at byte")

    def test_corrupt_names_byte(self):
        s = self.faulty("corrupt")
        r = self.run_fails("rr", "--url", "ws://127.0.0.1:%d/" % s.port, "--seconds", RUN,
                           want=("echo 4: payload differs from what was sent at byte 32",))
        self.assertIn("1 errors", r.err)

    def test_replay(self):
        self.each_mode("replay", "echo 4: sequence number 3, expected 4")

    def test_drop(self):
        # bulk has more in flight: the next echo's number shows the gap; rr and upgrades wait
        # for the echo (2 s after the run) and report it missing.
        self.each_mode("drop", {"bulk": "echo 4: sequence number 5, expected 4",
                                "rr": "missing echo", "upgrades": "missing echo"})

    def test_opcode(self):
        self.each_mode("opcode", "echo 4: opcode 1 (text), expected 2 (binary)")

    def test_short(self):
        self.each_mode("short", "length mismatch")

    def test_unexpected_close(self):
        self.each_mode("close", "server sent close 1011")

    def test_masked_frame(self):
        self.each_mode("masked", "bad frame from the server")

    def test_bad_accept(self):
        self.each_mode("accept", "wrong Sec-WebSocket-Accept")

    def test_short_messages_carry_low_sequence_bytes(self):
        """Below 8 bytes the message is the low bytes of the sequence number: a replay is still
        caught."""
        s = self.faulty("replay", nth=300)
        self.run_fails("rr", "--url", "ws://127.0.0.1:%d/" % s.port, "--seconds", RUN,
                       "--size", "1", want=("echo 299: sequence number 42, expected 43",))

    def test_idle_pong(self):
        s = self.faulty("pong")
        r = self.run_fails("idle", "--url", "ws://127.0.0.1:%d/" % s.port, "--conns", "3",
                           "--hold", "0.2", "--json", want=("pong differs from the ping",))
        self.assertEqual(r.json()["ok"], 0, r)


class Cli(BenchTest):
    """Aliases, usage errors, --help against the README, the progress display."""

    def test_concurrency_alias(self):
        url = self.server()
        j = self.run_ok("upgrades", "--url", url, "--seconds", "0.5", "--concurrency", "2",
                        "--json").json()
        self.assertEqual((j["conns"], j["concurrency"], j["failed"]), (2, 2, 0))
        self.assertGreater(j["upgrades"], 0)
        j = self.run_ok("idle", "--url", url, "--conns", "6", "--concurrency", "2", "--hold",
                        "0.2", "--json").json()
        self.assertEqual(j["ok"], 6)

    def test_source_addresses(self):
        """--src and its alias --source-ips spread the connections over the addresses."""
        for flag in ("--src", "--source-ips"):
            with self.subTest(flag=flag):
                s = self.faulty()
                url = "ws://127.0.0.1:%d/" % s.port
                self.run_ok("idle", "--url", url, "--conns", "6", "--hold", "0.2", flag,
                            "127.0.0.2-127.0.0.3")
                self.assertEqual(sorted(set(s.peers)), ["127.0.0.2", "127.0.0.3"])
                n = len(s.peers)
                self.run_ok("upgrades", "--url", url, "--seconds", "0.3", flag, "127.0.0.4")
                self.assertEqual(set(s.peers[n:]), {"127.0.0.4"})

    def test_usage_errors(self):
        url = "ws://127.0.0.1:9/"
        for args in (("bulk",), ("bulk", "--url"), ("bulk", "--url", "http://x/"),
                     ("bulk", "--url", url, "--size", "0"), ("bulk", "--url", url, "--sizes", "1"),
                     ("rr", "--url", url, "--window", "2"),
                     ("rr", "--url", url, "--src", "1.2.3.4"),
                     ("upgrades", "--url", url, "--conns", "0"),
                     ("upgrades", "--url", url, "--seconds", "x"),
                     ("idle", "--url", url, "--src", "127.0.0.9-127.0.0.2"),
                     ("idle", "--url", url, "--size", "64"), ("nosuchmode",), ()):
            with self.subTest(args=args):
                r = bench(*args)
                self.assertEqual(r.rc, 2, r)
                self.assertIn("usage:", r.err, r)
                self.assertEqual(r.out, "", r)

    def test_help_matches_readme(self):
        r = bench("--help")
        self.assertEqual(r.rc, 0, r)
        with open(os.path.join(test_proxy.SRC, "bench", "README.md")) as f:
            readme = f.read()
        section = readme.split("\n## sluice-bench\n", 1)[1]
        block = section.split("```\n", 2)[1]
        self.assertEqual(r.out, block, "bench/README.md's sluice-bench block is `--help`")

    def test_progress_on_a_terminal(self):
        url = self.server()
        try:
            master, slave = pty.openpty()
        except OSError as e:  # a container or chroot without /dev/pts: nothing to test on
            self.skipTest("no pseudo-terminal here: %s" % e)
        p = subprocess.Popen([test_proxy.SLUICE_BENCH, "bulk", "--url", url, "--seconds", "2.2",
                              "--size", "64k"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        err = b""
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1)
                if not ready:
                    continue
                try:
                    d = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not d:
                    break
                err += d
            out = p.communicate(timeout=RUN_TIMEOUT)[0].decode()
        finally:
            os.close(master)
            if p.poll() is None:
                p.kill()
                p.wait()
        err = err.decode()
        self.assertEqual(p.returncode, 0, err)
        self.assertTrue(out.startswith("bulk: "), out)
        self.assertRegex(err, r"\rbulk: [0-9.]+ MB/s, [0-9]+ msgs/s, 0 errors, [0-9]+ s left")
        # erased at the end: the last thing on the terminal is a blank line, back at column 0
        self.assertRegex(err, r"\r +\r$")
        self.assertNotIn("\n", err)


class Wss(BenchTest):
    """wss://: every mode over TLS against python3-websockets' echo server, with a self-signed
    certificate for localhost and 127.0.0.1 made here: verification on by default, --insecure,
    --cafile, --sni, session resumption and --no-resume, and the errors that name the cause."""

    def setUp(self):
        super().setUp()
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                            "/CN=localhost", "-addext",
                            "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", self.key,
                            "-out", self.cert], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        self.script = os.path.join(self.tmp, "wss_echo.py")
        with open(self.script, "w") as f:
            f.write(WSS_ECHO)

    def wss(self, tls12=False):
        """Starts the wss:// echo server; returns its Proc, with .port."""
        port = wskit.free_port()
        p = wskit.Proc("wss-echo", [sys.executable, self.script, str(port), self.cert, self.key,
                                    *(["tls1.2"] if tls12 else [])], self.tmp)
        self.procs.append(p)
        try:
            p.wait_port(port, timeout=10)
        except wskit.HarnessError as e:
            self.fail(str(e))
        p.port = port
        return p

    def seen(self, p, what):
        """What the server logged for <what> ("sni" or "alpn"), one entry per line."""
        with open(p.out_path) as f:
            return [line.split(" ", 1)[1].strip() for line in f if line.startswith(what + " ")]

    def assertTls(self, j, version="TLSv1.3", handshakes=None):
        self.assertIs(j["tls"], True, j)
        self.assertEqual(j["tls_version"], version, j)
        self.assertRegex(j["tls_cipher"], r"^[A-Z0-9_-]+$", j)
        self.assertEqual(j["errors"], 0, j)
        if handshakes is not None:
            self.assertEqual(j["tls_handshakes"], handshakes, j)
        self.assertLessEqual(j["tls_resumed"], j["tls_handshakes"], j)

    def test_every_mode_insecure(self):
        srv = self.wss()
        url = "wss://127.0.0.1:%d/" % srv.port
        j = self.run_ok("bulk", "--url", url, "--seconds", RUN, "--size", "16k", "--insecure",
                        "--json").json()
        self.assertTls(j, handshakes=1)
        self.assertGreater(j["messages"], 0, j)
        self.assertLessEqual(j["messages"] * 16384, j["bytes"], j)
        j = self.run_ok("rr", "--url", url, "--seconds", RUN, "--conns", "2", "-k",
                        "--json").json()
        self.assertTls(j, handshakes=2)
        self.assertGreater(j["messages"], 0, j)
        self.assertPercentiles(j)
        j = self.run_ok("upgrades", "--url", url, "--seconds", RUN, "--conns", "2", "-k",
                        "--json").json()
        self.assertTls(j)
        self.assertEqual(j["failed"], 0, j)
        self.assertGreater(j["upgrades"], 0, j)
        self.assertGreaterEqual(j["tls_handshakes"], j["upgrades"], j)
        self.assertPercentiles(j)
        j = self.run_ok("idle", "--url", url, "--conns", "10", "--hold", "0.3", "-k",
                        "--json").json()
        self.assertTls(j, handshakes=10)
        self.assertEqual((j["opened"], j["ok"], j["failed"]), (10, 10, 0), j)
        # the text line ends with the same fields
        r = self.run_ok("rr", "--url", url, "--seconds", "0.3", "--size", "3", "-k")
        f = r.fields()
        self.assertEqual((f["tls_version"], f["tls_handshakes"]), ("TLSv1.3", "1"), r)
        self.assertGreater(int(f["msgs"]), 0, r)
        # an IP address in the URL: no SNI (RFC 6066); ALPN http/1.1 on every connection
        self.assertEqual(set(self.seen(srv, "sni")), {"-"})
        alpn = self.seen(srv, "alpn")
        self.assertGreater(len(alpn), 15)
        self.assertEqual(set(alpn), {"http/1.1"})

    def test_large_messages_and_threads(self):
        """Messages larger than a TLS record and than the socket buffers: partial SSL_writes,
        retried writes, records read in pieces."""
        url = "wss://127.0.0.1:%d/" % self.wss().port
        j = self.run_ok("bulk", "--url", url, "--seconds", RUN, "--size", "1M", "--conns", "2",
                        "--threads", "2", "-k", "--json").json()
        self.assertTls(j, handshakes=2)
        self.assertGreater(j["messages"], 0, j)
        j = self.run_ok("rr", "--url", url, "--seconds", RUN, "--size", "100k", "-k",
                        "--json").json()
        self.assertTls(j, handshakes=1)
        self.assertGreater(j["messages"], 0, j)
        # upgrades reads into 4 KiB: a 10 KiB echo's record stays partly decrypted inside
        # OpenSSL, where no socket event announces it
        j = self.run_ok("upgrades", "--url", url, "--seconds", RUN, "--size", "10k", "-k",
                        "--json").json()
        self.assertTls(j)
        self.assertGreater(j["upgrades"], 0, j)

    def test_verification_is_the_default(self):
        """Without --insecure or --cafile the self-signed certificate is refused: every mode
        fails and says why."""
        url = "wss://127.0.0.1:%d/" % self.wss().port
        want = "TLS handshake: certificate verify failed (self-signed certificate); use " \
               "--insecure or --cafile"
        for args in (("bulk", "--size", "4k", "--seconds", RUN), ("rr", "--seconds", RUN),
                     ("upgrades", "--seconds", "0.5", "--conns", "1"),
                     ("idle", "--conns", "3", "--hold", "0.2")):
            with self.subTest(mode=args[0]):
                r = self.run_fails(args[0], "--url", url, *args[1:], "--json", want=(want,))
                j = r.json()
                self.assertIs(j["tls"], True, r)
                self.assertEqual((j["tls_version"], j["tls_handshakes"]), (None, 0), r)

    def test_cafile(self):
        """--cafile trusts the certificate: its name (localhost) and its IP address (127.0.0.1)
        both pass the check; the SNI is the URL's host name, none for the address."""
        srv = self.wss()
        for host, sni in (("localhost", "localhost"), ("127.0.0.1", "-")):
            with self.subTest(host=host):
                n = len(self.seen(srv, "sni"))
                url = "wss://%s:%d/" % (host, srv.port)
                j = self.run_ok("rr", "--url", url, "--seconds", "0.5", "--cafile", self.cert,
                                "--json").json()
                self.assertTls(j, handshakes=1)
                self.assertGreater(j["messages"], 0, j)
                j = self.run_ok("upgrades", "--url", url, "--seconds", "0.5", "--cafile",
                                self.cert, "--json").json()
                self.assertTls(j)
                self.assertGreater(j["upgrades"], 0, j)
                self.assertEqual(set(self.seen(srv, "sni")[n:]), {sni})

    def test_sni(self):
        """--sni is sent and is the name the certificate is checked against."""
        srv = self.wss()
        url = "wss://127.0.0.1:%d/" % srv.port
        self.run_fails("rr", "--url", url, "--seconds", "0.5", "--cafile", self.cert, "--sni",
                       "other.example", want=("certificate verify failed (hostname mismatch); "
                                              "the certificate is not for other.example",))
        self.assertEqual(self.seen(srv, "sni"), ["other.example"])
        self.run_ok("rr", "--url", url, "--seconds", "0.3", "--cafile", self.cert, "--sni",
                    "localhost")
        self.run_ok("rr", "--url", url, "--seconds", "0.3", "-k", "--sni", "other.example")
        self.assertEqual(self.seen(srv, "sni"), ["other.example", "localhost", "other.example"])

    def test_resumption(self):
        """upgrades resumes sessions by default (TLS 1.3 tickets, TLS 1.2 sessions), never with
        --no-resume."""
        for tls12 in (False, True):
            with self.subTest(tls12=tls12):
                srv = self.wss(tls12)
                url = "wss://localhost:%d/" % srv.port
                version = "TLSv1.2" if tls12 else "TLSv1.3"
                j = self.run_ok("upgrades", "--url", url, "--seconds", RUN, "--conns", "3",
                                "--cafile", self.cert, "--json").json()
                self.assertTls(j, version)
                self.assertGreater(j["upgrades"], 6, j)
                self.assertGreater(j["tls_resumed"], 0, j)
                # only each slot's first handshake has nothing to resume
                self.assertGreaterEqual(j["tls_resumed"], j["tls_handshakes"] - 3, j)
                j = self.run_ok("upgrades", "--url", url, "--seconds", RUN, "--conns", "3",
                                "--cafile", self.cert, "--no-resume", "--json").json()
                self.assertTls(j, version)
                self.assertGreater(j["upgrades"], 6, j)
                self.assertGreaterEqual(j["tls_handshakes"], j["upgrades"], j)
                self.assertEqual(j["tls_resumed"], 0, j)

    def test_not_a_tls_server(self):
        """A server that answers in plain HTTP: the handshake fails at once, and says so."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        self.addCleanup(lsock.close)

        def answer():
            lsock.settimeout(RUN_TIMEOUT)
            try:
                c, _ = lsock.accept()
                with c:
                    c.settimeout(RUN_TIMEOUT)
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        self.addCleanup(t.join, RUN_TIMEOUT)
        self.run_fails("rr", "--url", "wss://127.0.0.1:%d/" % lsock.getsockname()[1], "-k",
                       "--seconds", "0.3",
                       want=("TLS handshake: wrong version number (not a TLS server?)",))

    def test_ws_still_plain(self):
        """ws:// against the same kind of run: no TLS, and "tls": false."""
        url = self.server()
        j = self.run_ok("rr", "--url", url, "--seconds", "0.3", "--json").json()
        self.assertIs(j["tls"], False, j)
        self.assertNotIn("tls_version", j)
        r = self.run_ok("upgrades", "--url", url, "--seconds", "0.3")
        self.assertNotIn("tls", r.out, r)

    def test_usage_errors(self):
        url = "wss://127.0.0.1:9/"
        for args, why in (
                (("rr", "--url", "ws://127.0.0.1:9/", "-k"), "need a wss:// URL"),
                (("idle", "--url", "ws://127.0.0.1:9/", "--no-resume"), "need a wss:// URL"),
                (("rr", "--url", url, "-k", "--cafile", self.cert), "pick one"),
                (("bulk", "--url", url, "--cafile", os.path.join(self.tmp, "none.pem")),
                 "cannot load --cafile %s: No such file or directory"
                 % os.path.join(self.tmp, "none.pem")),
                (("upgrades", "--url", url, "--cafile", self.script),
                 "cannot load --cafile %s: " % self.script),
                (("rr", "--url", url, "--sni", ""), "bad value for --sni"),
                (("rr", "--url", url, "--cafile"), "--cafile needs a value")):
            with self.subTest(args=args):
                r = bench(*args)
                self.assertEqual(r.rc, 2, r)
                self.assertIn(why, r.err, r)
                self.assertIn("usage:", r.err, r)
                self.assertEqual(r.out, "", r)


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_bench"))
