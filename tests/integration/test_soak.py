#!/usr/bin/python3
"""Reload soak: zero dropped connections while the config changes under load.

Run by meson as:
    /usr/bin/python3 tests/integration/test_soak.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]

One sluice (2 workers, admin endpoint on a free port) in front of `sluice-bench server`
targets, on loopback. For the whole run:

- 1000 WebSocket tunnels stay open, each carrying sequence-numbered binary messages (4-byte
  tunnel id, 4-byte sequence, then a pattern that depends on both; now and then a few KiB)
  with 1 to 3 in flight. Every echo is checked against the oldest message in flight: content,
  order, exactly once. A message not echoed within STALL seconds is an error.
- New connections keep arriving (CHURN_RATE a second, alternating): a WebSocket connection
  (handshake, one echo, close handshake, the target's FIN) and a plain HTTP request
  (200 from sluice-bench).
- 100 reloads (rewrite the file, SIGHUP, wait until /status shows the new generation), cycling
  through: weights (one of them sometimes 0), maintenanceEnabled on one target and off again,
  adding and removing a target (the removed one, b3, still carries a third of the tunnels:
  sluice.drainTimeout is not in the file, so they must live on), renaming the rules and
  toggling a STATIC rule that matches nothing we send, adding and removing a second
  forwarding rule on another port (while it exists: a burst of connections to it and one
  tunnel kept open across its removal, which must carry on; once removed the port must
  refuse), changing the algorithm, and a bad file (a typo'd enum) that must be refused with
  the generation unchanged.

At the end: every tunnel open, every message echoed exactly once in order, every new
connection a success, /metrics shows 1000 active tunnels and generation 1 + accepted reloads,
sluice logged no error but the refused reloads' and no target went DOWN; then SIGTERM
(/healthz says draining, tunnels still echo), the tunnels close with a close handshake and
sluice exits 0 well within its drain.

Targets have TCP health checks on (every second): every reload hands the checker thread a
new config, so the soak also covers health state carried across reloads under load; a TCP
connect to a live sluice-bench on loopback completes in the kernel, so a check cannot fail
for want of CPU, and a target marked DOWN is reported as a failure.

One asyncio loop drives everything: the tunnels are asyncio Protocols (frames built with
wskit.encode_frame, read with wskit.FrameParser), the short connections asyncio streams; the
admin endpoint is read with wskit.http in the loop's thread pool. Every phase has a deadline.
"""
import asyncio
import collections
import concurrent.futures
import json
import os
import random
import re
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import promparse  # noqa: E402
import test_proxy  # noqa: E402
import wskit  # noqa: E402
from test_proxy import PROMPT, WS_CONDITIONS, ProxyTest  # noqa: E402
from wskit import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, FrameParser,  # noqa: E402
                   ProtocolError, close_payload, config, cond_path, encode_frame, forward,
                   group, handshake_bytes, parse_head, request_bytes, static, ws_accept, ws_key)

N_TUNNELS = 1000
N_RELOADS = 100
WINDOW = 3            # at most this many messages in flight per tunnel
SLICES = 10           # the ticker visits one slice of the tunnels per TICK
TICK = 0.01           # so each tunnel is visited every SLICES * TICK = 0.1 s
STALL = 10.0          # a message not echoed within this many seconds is an error
CHURN_RATE = 40.0     # new connections a second on the main port
CONN_TIMEOUT = 10.0   # a short connection must be done within this
RELOAD_TIMEOUT = 10.0  # a reload must show in /status (or be refused) within this
# seconds of traffic on each config before the next reload, in turn (0: the next SIGHUP
# right after /status shows the generation, while workers may still be switching)
RELOAD_GAPS = (0.0, 0.2, 0.5, 0.8)
OPEN_CONCURRENCY = 100
ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTION", "RANDOM", "SOURCE_IP")
# One round of reload kinds; 10 rounds make the 100 reloads (10 of them refused).
KINDS = ("weights", "maintenance", "targets", "rules", "port2", "algorithm", "bad",
         "maintenance", "targets", "port2")
HDR = struct.Struct("!II")
FILL = bytes((i * 131 + 7) & 0xFF for i in range(8192))


def payload(cid, seq):
    """Message <seq> of tunnel <cid>: id, sequence, then a pattern depending on both."""
    if seq % 50 == 49:
        n = 1000 + (cid * 13 + seq) % 5000
    else:
        n = (cid + seq * 7) % 64
    off = (cid * 31 + seq) & 0xFF
    return HDR.pack(cid, seq) + FILL[off:off + n]


def describe(data):
    if len(data) >= 8:
        cid, seq = HDR.unpack_from(data)
        return "%d bytes (id %d, seq %d)" % (len(data), cid, seq)
    return "%d bytes %r" % (len(data), data[:16])


class Tunnel(asyncio.Protocol):
    """One long-lived WebSocket connection carrying checked, sequence-numbered messages."""

    def __init__(self, soak, cid, path="/soak"):
        self.soak = soak
        self.cid = cid
        self.path = "%s/%d" % (path, cid)
        self.key = ws_key()
        self.tr = None
        self.sockname = None
        self.state = "connecting"   # open, closing, closed, failed
        self.error = None
        self.head = bytearray()
        self.parser = FrameParser(expect_masked=False)
        self.msg_op, self.msg_buf = None, bytearray()
        self.inflight = collections.deque()   # (payload, monotonic time sent)
        self.seq = 0
        self.sent = self.echoed = 0
        self.visits = 0
        self.close_code = None
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.done = loop.create_future()

    # asyncio callbacks

    def connection_made(self, tr):
        self.tr = tr
        self.sockname = tr.get_extra_info("sockname")
        tr.write(handshake_bytes(self.key, self.path))

    def data_received(self, data):
        try:
            if self.state == "connecting":
                self.head += data
                i = self.head.find(b"\r\n\r\n")
                if i < 0:
                    if len(self.head) > 65536:
                        raise ProtocolError("no end of the 101 head in 64 KiB")
                    return
                self._upgraded(bytes(self.head[:i + 4]))
                data = bytes(self.head[i + 4:])
                self.head = None
            if self.state in ("failed", "closed"):
                return
            self.parser.feed(data)
            while self.state not in ("failed", "closed"):
                f = self.parser.next()
                if f is None:
                    break
                self._frame(f)
        except ProtocolError as e:
            self.fail("protocol error: %s" % e)

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        if self.state == "closing" and self.close_code is not None:
            self.state = "closed"
        elif self.state not in ("failed", "closed"):
            self.fail("connection lost (%s) in state %s after %d sent, %d echoed"
                      % (exc or "EOF", self.state, self.sent, self.echoed))
        for fut in (self.ready, self.done):
            if not fut.done():
                fut.set_result(None)

    # protocol

    def _upgraded(self, head):
        first, headers = parse_head(head)
        parts = first.split(" ", 2)
        hd = {k.lower(): v for k, v in headers}
        if len(parts) < 2 or parts[1] != "101":
            raise ProtocolError("expected 101, got %r" % first)
        if hd.get("upgrade", "").lower() != "websocket" or \
                hd.get("sec-websocket-accept") != ws_accept(self.key):
            raise ProtocolError("bad 101: %r" % head)
        self.state = "open"
        if not self.ready.done():
            self.ready.set_result(True)

    def _frame(self, f):
        if f.opcode == OP_PING:
            self.tr.write(encode_frame(OP_PONG, f.payload))
            return
        if f.opcode == OP_PONG:
            return
        if f.opcode == OP_CLOSE:
            if self.state != "closing":
                self.fail("unexpected close frame %r" % (f.close_code(),))
                return
            self.close_code = f.close_code()[0]
            return
        if f.opcode == OP_CONT:
            if self.msg_op is None:
                raise ProtocolError("continuation without a message")
        else:
            if self.msg_op is not None:
                raise ProtocolError("new message inside a fragmented one")
            self.msg_op = f.opcode
        self.msg_buf += f.payload
        if f.fin:
            op, data = self.msg_op, bytes(self.msg_buf)
            self.msg_op, self.msg_buf = None, bytearray()
            self._message(op, data)

    def _message(self, op, data):
        if not self.inflight:
            self.fail("a message with nothing in flight (duplicate or foreign?): %s"
                      % describe(data))
            return
        want, _ = self.inflight.popleft()
        if op != OP_BINARY or data != want:
            self.fail("echo mismatch: expected %s, got opcode %d %s"
                      % (describe(want), op, describe(data)))
            return
        self.echoed += 1
        self.soak.echoed += 1
        self.soak.echo_bytes += len(data)

    def fail(self, why):
        if self.error is None:
            self.error = why
            self.soak.tunnel_error(self, why)
        self.state = "failed"
        if self.tr is not None:
            self.tr.abort()
        for fut in (self.ready, self.done):
            if not fut.done():
                fut.set_result(None)

    # driving

    def send(self, n=1):
        now = time.monotonic()
        out = bytearray()
        for _ in range(n):
            p = payload(self.cid, self.seq)
            self.seq += 1
            self.inflight.append((p, now))
            out += encode_frame(OP_BINARY, p)
        self.sent += n
        self.soak.sent += n
        self.tr.write(bytes(out))

    def visit(self, now):
        """Called by the ticker every SLICES * TICK seconds: keeps 1 to WINDOW in flight."""
        if self.state != "open":
            return
        if self.inflight and now - self.inflight[0][1] > STALL:
            self.fail("no echo of %s within %.0f s (%d in flight)"
                      % (describe(self.inflight[0][0]), STALL, len(self.inflight)))
            return
        self.visits += 1
        if not self.inflight and self.visits % 8 == 0:
            self.send(2)  # two messages in one write now and then
        elif len(self.inflight) < WINDOW:
            self.send(1)

    async def echo_now(self, timeout):
        """Sends one message and waits for its echo; True when it came."""
        want = self.echoed + len(self.inflight) + 1
        self.send(1)
        deadline = time.monotonic() + timeout
        while self.state == "open" and self.echoed < want and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.state == "open" and self.echoed >= want

    async def close(self, timeout):
        """Close handshake: our close, the echoed close, the target's FIN. True when clean."""
        if self.state != "open":
            return False
        self.state = "closing"
        self.tr.write(encode_frame(OP_CLOSE, close_payload(1000)))
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except asyncio.TimeoutError:
            self.fail("close handshake not done within %.0f s" % timeout)
            return False
        if self.state != "closed" or self.close_code != 1000:
            if self.state != "failed":
                self.fail("closed without the echoed close 1000 (got %r)" % (self.close_code,))
            return False
        return True


class Plan:
    """The config as state; each reload kind changes one aspect of it."""

    def __init__(self, port, port2, admin, b):
        self.port, self.port2, self.admin = port, port2, admin
        self.b = b                                # {"b1": port, ...}
        self.rng = random.Random(6)
        self.weights = {name: 1 for name in b}
        self.maint = None                         # the target in maintenance, if any
        self.members = ["b1", "b2", "b3"]
        self.sets = [["b1", "b2", "b3", "b4"], ["b1", "b2", "b4"], ["b1", "b2", "b3", "b4"],
                     ["b1", "b2", "b3"]]
        self.n_sets = 0
        self.names = 0
        self.static = False
        self.port2_on = False
        self.alg = 0
        self.n_bad = 0
        self.n_maint = 0

    def eligible(self):
        return [m for m in self.members if m != self.maint and self.weights[m] > 0]

    def _fix_eligible(self):
        if not self.eligible():
            m = next(m for m in self.members if m != self.maint)
            self.weights[m] = 1

    def cfg(self):
        def tgt(name):
            t = wskit.target(self.b[name], weight=self.weights[name],
                             maintenance=name == self.maint)
            t["healthCheckEnabled"] = True
            return t

        def hc(g):
            g["properties"]["healthCheck"] = {"checkInterval": 1000, "checkTimeout": 1000,
                                              "retries": 3}
            return g

        rules = []
        if self.static:
            rules.append(static(418, "never matched", [cond_path("/never/matched/%d"
                                                                 % self.names)],
                                name="static-%d" % self.names))
        rules += [forward("tg", WS_CONDITIONS, name="ws-%d" % self.names),
                  forward("tg", (), name="http-%d" % self.names)]
        groups = [hc(group("tg", [tgt(m) for m in self.members], ALGORITHMS[self.alg],
                           name="soak-targets"))]
        cfg = config(self.port, rules, groups, threads=2, admin="127.0.0.1:%d" % self.admin)
        del cfg["sluice"]["drainTimeout"]  # removed targets' tunnels finish on their own
        if self.port2_on:
            fr2 = json.loads(json.dumps(cfg["forwardingRules"][0]))
            fr2["id"] = "fr-2"
            fr2["properties"]["name"] = "second"
            fr2["properties"]["listenerPort"] = self.port2
            fr2["properties"]["httpRules"] = [forward("tg-2", (), name="second-%d" % self.names)]
            cfg["forwardingRules"].append(fr2)
            t2 = [wskit.target(self.b[m]) for m in ("b1", "b2")]  # weight 1, no maintenance
            for t in t2:
                t["healthCheckEnabled"] = True
            cfg["targetGroups"].append(hc(group("tg-2", t2)))
        return cfg

    def text(self):
        return json.dumps(self.cfg(), indent=2) + "\n"

    def change(self, kind):
        """Applies <kind>; returns (file text, expect accepted, description)."""
        if kind == "weights":
            for m in self.weights:
                self.weights[m] = self.rng.randint(1, 8)
            if self.rng.random() < 0.5:
                self.weights[self.rng.choice(self.members)] = 0
            self._fix_eligible()
            desc = "weights %s" % ",".join("%s=%d" % (m, self.weights[m])
                                           for m in self.members)
        elif kind == "maintenance":
            if self.maint is None:
                self.maint = self.members[self.n_maint % len(self.members)]
                self.n_maint += 1
                desc = "maintenance on %s" % self.maint
            else:
                desc = "maintenance off %s" % self.maint
                self.maint = None
            self._fix_eligible()
        elif kind == "targets":
            old = self.members
            self.members = list(self.sets[self.n_sets % len(self.sets)])
            self.n_sets += 1
            if self.maint not in self.members:
                self.maint = None
            self._fix_eligible()
            added = [m for m in self.members if m not in old]
            removed = [m for m in old if m not in self.members]
            desc = "targets %s (%s)" % (",".join(self.members),
                                        " ".join(["+" + m for m in added]
                                                 + ["-" + m for m in removed]))
        elif kind == "rules":
            self.names += 1
            self.static = not self.static
            desc = "rules renamed to *-%d, STATIC rule %s" % (
                self.names, "added" if self.static else "removed")
        elif kind == "port2":
            self.port2_on = not self.port2_on
            desc = "second forwarding rule on %d %s" % (self.port2,
                                                        "added" if self.port2_on else "removed")
        elif kind == "algorithm":
            self.alg = (self.alg + 1) % len(ALGORITHMS)
            desc = "algorithm %s" % ALGORITHMS[self.alg]
        elif kind == "bad":
            text = self.text()
            typo = self.n_bad % 3
            self.n_bad += 1
            if typo == 0:
                alg = ALGORITHMS[self.alg]
                bad = text.replace('"algorithm": "%s"' % alg, '"algorithm": "%s"' % alg.lower())
                what = "algorithm %s" % alg.lower()
            elif typo == 1:
                bad = text.replace('"type": "FORWARD"', '"type": "FORWRAD"', 1)
                what = "type FORWRAD"
            else:
                bad = text.replace('"condition": "EQUALS"', '"condition": "EQUAL"', 1)
                what = "condition EQUAL"
            assert bad != text
            return bad, False, "bad file (%s)" % what
        else:
            raise ValueError(kind)
        return self.text(), True, desc


class Soak(ProxyTest):

    # bookkeeping for the tunnels

    def tunnel_error(self, t, why):
        self.tunnel_errors.append("tunnel %d (client port %s) at %.1f s, after reload %s: %s"
                                  % (t.cid, t.sockname[1] if t.sockname else "?",
                                     time.monotonic() - self.t0, self.last_reload, why))

    def note(self, msg):
        self.problems.append(msg)
        wskit.log("test_soak: PROBLEM: " + msg)

    # admin endpoint

    async def admin_get(self, path):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: wskit.http(self.s.admin, path=path, timeout=PROMPT))

    async def status(self):
        r = await self.admin_get("/status")
        if r.status != 200:
            raise ProtocolError("/status answered %d" % r.status)
        return json.loads(r.body)

    async def generation(self):
        return (await self.status())["config"]["generation"]

    @staticmethod
    def served(st):
        """What of /status a reload changes: listeners with their rules, groups with their
        algorithm and targets."""
        return ([(lst["listener"], [r["name"] for r in lst["httpRules"]])
                 for lst in st["listeners"]],
                [(g["id"], g["algorithm"], sorted((t["target"], t["weight"],
                                                   t["maintenanceEnabled"])
                                                  for t in g["targets"]))
                 for g in st["targetGroups"]])

    @staticmethod
    def planned(cfg):
        return ([("127.0.0.1:%d" % fr["properties"]["listenerPort"],
                  [r["name"] for r in fr["properties"]["httpRules"]])
                 for fr in cfg["forwardingRules"]],
                [(g["id"], g["properties"]["algorithm"],
                  sorted(("127.0.0.1:%d" % t["port"], t["weight"],
                          bool(t.get("maintenanceEnabled")))
                         for t in g["properties"]["targets"]))
                 for g in cfg["targetGroups"]])

    async def check_served(self, desc):
        """/status shows the plan's config (after an accepted reload: the new one; after a
        refused one: still the old one)."""
        st = await self.status()
        got, want = self.served(st), self.planned(self.plan.cfg())
        if got != want:
            self.note("after reload %s /status shows %r, not %r" % (desc, got, want))
        down = [(g["id"], t["target"]) for g in st["targetGroups"] for t in g["targets"]
                if t["health"] == "DOWN"]
        if down:
            self.note("after reload %s targets are DOWN: %r" % (desc, down))

    async def metrics(self):
        r = await self.admin_get("/metrics")
        if r.status != 200:
            raise ProtocolError("/metrics answered %d" % r.status)
        return promparse.parse(r.body.decode("utf-8"))

    # short connections

    async def ws_once(self, port, i):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            key = ws_key()
            w.write(handshake_bytes(key, "/churn/%d" % i))
            head = await r.readuntil(b"\r\n\r\n")
            first, headers = parse_head(head)
            if first.split(" ", 2)[1] != "101":
                rest = await asyncio.wait_for(r.read(300), 1)
                raise ProtocolError("expected 101, got %r %r" % (first, rest))
            if dict((k.lower(), v) for k, v in headers).get("sec-websocket-accept") != \
                    ws_accept(key):
                raise ProtocolError("bad accept: %r" % head)
            parser = FrameParser(expect_masked=False)

            async def frame():
                while True:
                    f = parser.next()
                    if f is not None:
                        return f
                    data = await r.read(65536)
                    if not data:
                        raise ProtocolError("EOF while waiting for a frame")
                    parser.feed(data)

            msg = HDR.pack(0xFFFFFFFF, i) + FILL[:i % 200]
            w.write(encode_frame(OP_BINARY, msg))
            f = await frame()
            if f.opcode != OP_BINARY or not f.fin or f.payload != msg:
                raise ProtocolError("echo mismatch: %r" % f)
            w.write(encode_frame(OP_CLOSE, close_payload(1000)))
            f = await frame()
            if f.opcode != OP_CLOSE or f.close_code()[0] != 1000:
                raise ProtocolError("expected close 1000, got %r" % f)
            if await r.read(1) != b"":
                raise ProtocolError("data after the close frame")
        finally:
            w.close()

    async def http_once(self, port, i):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            w.write(request_bytes("GET", "/churn/%d" % i, [("Connection", "close")]))
            data = await r.read(-1)
        finally:
            w.close()
        i = data.find(b"\r\n\r\n")
        if i < 0:
            raise ProtocolError("no complete head: %r" % data[:200])
        first, _ = parse_head(data[:i + 4])
        body = data[i + 4:]
        if first.split(" ", 2)[1] != "200" or not body.startswith(b"sluice-bench "):
            raise ProtocolError("expected 200 from sluice-bench, got %r %r" % (first, body[:200]))

    async def one_conn(self, kind, port, i, stats):
        stats["attempts"] += 1
        try:
            await asyncio.wait_for((self.ws_once if kind == "ws" else self.http_once)(port, i),
                                   CONN_TIMEOUT)
            stats["ok"] += 1
            return True
        except (OSError, EOFError, ProtocolError, asyncio.TimeoutError,
                asyncio.IncompleteReadError, ValueError, IndexError) as e:
            stats["failed"] += 1
            self.conn_errors.append("%s connection %d to port %d at %.1f s, after reload %s: %s"
                                    % (kind, i, port, time.monotonic() - self.t0,
                                       self.last_reload, repr(e)))
            return False

    async def churn(self):
        loop = asyncio.get_running_loop()
        i = 0
        nxt = loop.time()
        while not self.stop_churn:
            kind = "ws" if i % 2 == 0 else "http"
            task = loop.create_task(self.one_conn(kind, self.port, i, self.stats[kind]))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
            i += 1
            nxt += 1.0 / CHURN_RATE
            now = loop.time()
            if nxt < now - 1.0:
                nxt = now  # the loop fell behind: do not burst to catch up
            await asyncio.sleep(max(0.0, nxt - now))

    # tunnels

    async def open_tunnel(self, port, cid, path="/soak"):
        loop = asyncio.get_running_loop()
        try:
            _, t = await asyncio.wait_for(
                loop.create_connection(lambda: Tunnel(self, cid, path), "127.0.0.1", port),
                CONN_TIMEOUT)
            await asyncio.wait_for(asyncio.shield(t.ready), CONN_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            self.note("tunnel %d to port %d did not open: %r" % (cid, port, e))
            return None
        if t.state != "open":
            self.note("tunnel %d to port %d did not open: %s" % (cid, port, t.error))
            return None
        return t

    async def ticker(self):
        slices = [self.tunnels[k::SLICES] for k in range(SLICES)]
        k = 0
        while not self.stop_sending:
            now = time.monotonic()
            for t in slices[k % SLICES]:
                t.visit(now)
            k += 1
            await asyncio.sleep(TICK)

    # reloads

    def refusals(self):
        return self.s.stderr_text().count("refused; the running config stays")

    async def reload(self, text, accept, desc):
        with open(self.s.cfg_path, "w") as f:
            f.write(text)
        refused_before = self.refusals()
        self.s.signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        if accept:
            want = self.gen + 1
            while time.monotonic() < deadline:
                g = await self.generation()
                if g == want:
                    self.gen = want
                    self.accepted += 1
                    await self.check_served(desc)
                    return True
                await asyncio.sleep(0.02)
            self.note("reload %s: /status generation still %s after %.0f s (wanted %d)"
                      % (desc, g, RELOAD_TIMEOUT, want))
            self.gen = g
            return False
        while time.monotonic() < deadline and self.refusals() == refused_before:
            await asyncio.sleep(0.02)
        if self.refusals() == refused_before:
            self.note("reload %s: no 'refused' in stderr within %.0f s" % (desc, RELOAD_TIMEOUT))
        else:
            self.refused += 1
        g = await self.generation()
        if g != self.gen:
            self.note("reload %s: generation went from %d to %d" % (desc, self.gen, g))
            self.gen = g
        await self.check_served(desc)
        return False

    async def port_refuses(self, port):
        deadline = time.monotonic() + PROMPT
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                return True
            w.close()
            await asyncio.sleep(0.05)
        return False

    async def port2_added(self, k):
        """The second rule exists: a burst of connections to it, and one tunnel kept."""
        results = await asyncio.gather(*(
            self.one_conn("ws" if j % 2 == 0 else "http", self.plan.port2, 100000 + k * 10 + j,
                          self.stats["port2"]) for j in range(6)))
        t = await self.open_tunnel(self.plan.port2, 100000 + k, "/second")
        if t is not None:
            if not await t.echo_now(PROMPT):
                self.note("the tunnel on the second port did not echo: %s" % t.error)
            self.p2_tunnel = t
        return all(results)

    async def port2_removed(self):
        t, self.p2_tunnel = self.p2_tunnel, None
        if t is not None:
            if not await t.echo_now(PROMPT):
                self.note("SLUICE BUG? the tunnel accepted on the removed second listener "
                          "stopped echoing: %s" % t.error)
            elif not await t.close(PROMPT):
                self.note("the tunnel on the removed second listener did not close cleanly: %s"
                          % t.error)
            else:
                self.p2_tunnels_ok += 1
        if not await self.port_refuses(self.plan.port2):
            self.note("SLUICE BUG? port %d still accepts %.0f s after its forwarding rule was "
                      "removed" % (self.plan.port2, PROMPT))

    async def controller(self):
        await asyncio.sleep(1.0)
        for k in range(N_RELOADS):
            kind = KINDS[k % len(KINDS)]
            text, accept, desc = self.plan.change(kind)
            self.last_reload = "#%d (%s)" % (k + 1, desc)
            self.kinds[kind] += 1
            try:
                await self.reload(text, accept, self.last_reload)
            except (OSError, ProtocolError, ValueError) as e:
                if not self.s.alive():
                    self.note("SLUICE BUG? sluice exited with status %s during reload %s"
                              % (self.s.p.returncode, self.last_reload))
                    return
                self.note("reload %s: the admin endpoint failed: %r" % (self.last_reload, e))
                continue
            if kind == "port2":
                if self.plan.port2_on:
                    await self.port2_added(k)
                else:
                    await self.port2_removed()
            if (k + 1) % 20 == 0:
                wskit.log("test_soak: %d reloads at %.1f s: %d messages echoed, %d new "
                          "connections, %d tunnel errors, %d connection errors"
                          % (k + 1, time.monotonic() - self.t0, self.echoed,
                             sum(self.stats[x]["ok"] for x in self.stats),
                             len(self.tunnel_errors), len(self.conn_errors)))
            await asyncio.sleep(RELOAD_GAPS[k % len(RELOAD_GAPS)])
        await asyncio.sleep(1.0)

    # the whole run

    async def run_soak(self):
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        self.gen = await self.generation()
        if self.gen != 1:
            self.note("generation %d at start, not 1" % self.gen)

        # 1000 tunnels
        sem = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def opener(cid):
            async with sem:
                return await self.open_tunnel(self.port, cid)
        t_open = time.monotonic()
        opened = await asyncio.gather(*(opener(cid) for cid in range(N_TUNNELS)))
        self.tunnels = [t for t in opened if t is not None]
        wskit.log("test_soak: %d tunnels open in %.1f s" % (len(self.tunnels),
                                                           time.monotonic() - t_open))
        if len(self.tunnels) != N_TUNNELS:
            self.note("only %d of %d tunnels opened" % (len(self.tunnels), N_TUNNELS))
            return

        # traffic, new connections and reloads
        ticker = loop.create_task(self.ticker())
        churn = loop.create_task(self.churn())
        t_load = time.monotonic()
        try:
            await asyncio.wait_for(self.controller(), 240)
        except asyncio.TimeoutError:
            self.note("the reloads did not finish within 240 s")
        self.load_seconds = time.monotonic() - t_load

        # stop new connections; let the last ones finish
        self.stop_churn = True
        await churn
        if self.pending:
            done, still = await asyncio.wait(set(self.pending), timeout=CONN_TIMEOUT + 5)
            if still:
                self.note("%d new connections still running at the end" % len(still))

        # stop sending; every message in flight must come back
        self.stop_sending = True
        await ticker
        if not self.s.alive():
            if not any("sluice exited" in x for x in self.problems):
                self.note("SLUICE BUG? sluice exited with status %s during the soak"
                          % self.s.p.returncode)
            return
        deadline = time.monotonic() + STALL + 5
        while time.monotonic() < deadline and \
                any(t.inflight and t.state == "open" for t in self.tunnels):
            await asyncio.sleep(0.05)

        # the metrics, with the 1000 tunnels still open
        m = None
        deadline = time.monotonic() + PROMPT
        while time.monotonic() < deadline:
            m = await self.metrics()
            if m["sluice_tunnels_active"].get() == N_TUNNELS:
                break
            await asyncio.sleep(0.1)
        self.final_tunnels_active = m["sluice_tunnels_active"].get()
        self.final_generation = m["sluice_config_generation"].get()

        # SIGTERM: draining, tunnels still work; then they close and sluice exits
        self.s.signal(signal.SIGTERM)
        self.t_term = time.monotonic()
        await asyncio.sleep(0.2)
        r = await self.admin_get("/healthz")
        if r.status != 503:
            self.note("/healthz answered %d after SIGTERM, not 503 draining" % r.status)
        sample = [t for t in self.tunnels[::50] if t.state == "open"]
        ok = await asyncio.gather(*(t.echo_now(PROMPT) for t in sample))
        if not all(ok):
            self.note("SLUICE BUG? %d of %d tunnels stopped echoing while sluice drained"
                      % (ok.count(False), len(sample)))
        self.drain_echoes = sum(ok)
        closed = await asyncio.gather(*(t.close(PROMPT * 2) for t in self.tunnels
                                        if t.state == "open"))
        self.closed_cleanly = sum(1 for c in closed if c)

    def test_reloads_under_load(self):
        self.t0 = time.monotonic()
        self.problems, self.tunnel_errors, self.conn_errors = [], [], []
        self.stats = {k: {"attempts": 0, "ok": 0, "failed": 0} for k in ("ws", "http", "port2")}
        self.kinds = collections.Counter()
        self.sent = self.echoed = self.echo_bytes = 0
        self.accepted = self.refused = 0
        self.p2_tunnels_ok = 0
        self.p2_tunnel = None
        self.pending = set()
        self.stop_churn = self.stop_sending = False
        self.last_reload = "(none yet)"
        self.tunnels = []
        self.final_tunnels_active = self.final_generation = None
        self.closed_cleanly = self.drain_echoes = 0
        self.load_seconds = 0.0
        self.t_term = None

        b = {name: self.bench(name).port for name in ("b1", "b2", "b3", "b4")}
        port, port2, admin = wskit.free_ports(3)
        self.port = port
        self.plan = Plan(port, port2, admin, b)
        self.s = self.sluice(self.plan.cfg())
        self.s.admin = admin
        try:
            self.s.wait_port(admin)
        except wskit.HarnessError as e:
            self.fail(str(e))

        asyncio.run(self.run_soak())

        rc = exit_seconds = None
        if self.t_term is not None:
            rc = self.s.wait(35)  # the drain (30 s by default) ends when the last tunnel closes
            exit_seconds = time.monotonic() - self.t_term
        seconds = time.monotonic() - self.t0

        # every tunnel, every message
        bad_tunnels = [t for t in self.tunnels if t.error is not None]
        unechoed = sum(len(t.inflight) for t in self.tunnels)
        mismatch = [t for t in self.tunnels if t.sent != t.echoed]
        conns = sum(self.stats[k]["attempts"] for k in self.stats)
        conns_ok = sum(self.stats[k]["ok"] for k in self.stats)
        err = self.s.stderr_text()
        # the access log's tunnel lines for our 1000 (written by the time sluice exited)
        ours = {"127.0.0.1:%d" % t.sockname[1]: t for t in self.tunnels if t.sockname}
        by_port = {port: name for name, port in self.plan.b.items()}
        logged, ends, on = {}, collections.Counter(), collections.Counter()
        if rc == 0:
            for rec in wskit.read_json_lines(self.s.stdout_text())[0]:
                if rec.get("type") == "tunnel" and rec.get("client") in ours and \
                        rec.get("listener") == "127.0.0.1:%d" % self.port:
                    logged[rec["client"]] = rec
                    ends[rec.get("end")] += 1
                    on[by_port.get(int(str(rec.get("target")).rsplit(":", 1)[-1]), "?")] += 1
        errors = [l for l in err.splitlines() if l.startswith("sluice: error:")]
        unexpected = [l for l in errors if not l.startswith("sluice: error: reload: ")]
        wskit.log("test_soak: %d tunnels (%d closed cleanly at the end), %d messages sent, %d "
                  "echoed (%.1f MiB) in %.0f s of load, %d new connections (%d ws, %d http, %d "
                  "to the second port) %d ok, reloads %d done (%d accepted, %d refused), %.1f s"
                  % (len(self.tunnels), self.closed_cleanly, self.sent, self.echoed,
                     self.echo_bytes / 1048576, self.load_seconds, conns,
                     self.stats["ws"]["attempts"], self.stats["http"]["attempts"],
                     self.stats["port2"]["attempts"], conns_ok,
                     self.accepted + self.refused, self.accepted, self.refused, seconds))
        wskit.log("test_soak: the tunnels' targets (access log): %s; how they ended: %s"
                  % (", ".join("%s %d" % kv for kv in sorted(on.items())), dict(ends)))
        for line in self.tunnel_errors[:20] + self.conn_errors[:20]:
            wskit.log("test_soak: " + line)

        p = list(self.problems)
        if len(self.tunnels) != N_TUNNELS:
            p.append("%d tunnels, not %d" % (len(self.tunnels), N_TUNNELS))
        if bad_tunnels:
            p.append("SLUICE BUG? %d tunnels failed (first: %s)"
                     % (len(bad_tunnels), self.tunnel_errors[:3]))
        if unechoed or mismatch:
            p.append("SLUICE BUG? %d messages never echoed; %d tunnels with sent != echoed"
                     % (unechoed, len(mismatch)))
        if self.echoed != self.sent:
            p.append("%d messages sent, %d echoed" % (self.sent, self.echoed))
        if conns_ok != conns:
            p.append("SLUICE BUG? %d of %d new connections failed (first: %s)"
                     % (conns - conns_ok, conns, self.conn_errors[:3]))
        if self.stats["ws"]["attempts"] + self.stats["http"]["attempts"] < \
                CHURN_RATE * self.load_seconds / 2 or self.stats["port2"]["attempts"] < 60:
            p.append("too few new connections tried in %.0f s: %r"
                     % (self.load_seconds, self.stats))
        if (self.accepted, self.refused) != (N_RELOADS - self.kinds["bad"], self.kinds["bad"]):
            p.append("reloads: %d accepted, %d refused; expected %d and %d"
                     % (self.accepted, self.refused, N_RELOADS - self.kinds["bad"],
                        self.kinds["bad"]))
        if self.final_tunnels_active != N_TUNNELS:
            p.append("sluice_tunnels_active %s at the end, not %d"
                     % (self.final_tunnels_active, N_TUNNELS))
        if self.final_generation != 1 + self.accepted:
            p.append("sluice_config_generation %s, not 1 + %d accepted reloads"
                     % (self.final_generation, self.accepted))
        if self.p2_tunnels_ok != self.kinds["port2"] // 2:
            p.append("%d of %d tunnels on the second port carried on past its removal"
                     % (self.p2_tunnels_ok, self.kinds["port2"] // 2))
        if self.closed_cleanly != N_TUNNELS:
            p.append("%d of %d tunnels closed cleanly at the end"
                     % (self.closed_cleanly, N_TUNNELS))
        if rc == 0:
            if len(logged) != N_TUNNELS or set(ends) - {"target closed", "client closed"}:
                p.append("access log: %d tunnel lines for our %d tunnels, ends %r"
                         % (len(logged), N_TUNNELS, dict(ends)))
            if on["b3"] < N_TUNNELS // 10:
                p.append("only %d tunnels were on b3, the target removed and added back: "
                         "the removal case was hardly exercised (%r)" % (on["b3"], dict(on)))
        if unexpected:
            p.append("sluice logged errors other than refused reloads: %s" % unexpected[:5])
        if err.count("refused; the running config stays") != self.kinds["bad"]:
            p.append("%d 'refused' lines for %d bad files"
                     % (err.count("refused; the running config stays"), self.kinds["bad"]))
        for typo in ("algorithm", "type", "condition"):
            if not re.search(r"sluice: error: reload: .*\.json:\d+:\d+: .*%s" % typo, err):
                p.append("no reload error naming the file position and the %s field" % typo)
        down = [l for l in err.splitlines() if " is DOWN" in l]
        if down:
            p.append("a target went DOWN during the soak: %s" % down[:3])
        if self.t_term is None:
            pass
        elif rc is None:
            p.append("sluice still running 35 s after SIGTERM with every tunnel closed")
        elif rc != 0:
            p.append("SLUICE BUG? sluice exited with %s after SIGTERM" % rc)
        elif exit_seconds is not None and exit_seconds > 25:
            p.append("sluice took %.1f s to exit after SIGTERM" % exit_seconds)
        if p:
            self.fail("\n".join(p))


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_soak"))
