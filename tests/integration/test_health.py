#!/usr/bin/python3
"""End-to-end tests of health checks, target lifecycle and the admin endpoints (/metrics,
/status, /healthz), with real processes on loopback: targets are killed and restarted, a
python3-websockets server plays the WebSocket-only target of the IONOS guide's pitfall, and
/metrics is read with a strict parser of the Prometheus text format (promparse.py).

Run by meson as:
    /usr/bin/python3 tests/integration/test_health.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]

The harness (temp dirs, processes, diagnostics on failure) is test_proxy.ProxyTest. Timing
assertions are only the bounds the issue names (DOWN within checkInterval x retries plus one
interval), with a second of slack for scheduling and polling on a busy machine.
"""
import http as httplib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import promparse  # noqa: E402
import test_proxy  # noqa: E402
import wskit  # noqa: E402
from backends import BenchServer, WebsocketsServer, pattern  # noqa: E402
from test_proxy import PROMPT, ProxyTest  # noqa: E402
from wskit import (OP_BINARY, Conn, WSClient, config, cond_path, encode_frame,  # noqa: E402
                   forward, group, http, served_by, static)

SLACK = 1.0  # seconds of slack (scheduling, polling /status) on top of a bound the spec names


def checked_target(port, weight=1, maintenance=False, enabled=True):
    t = wskit.target(port, weight=weight, maintenance=maintenance)
    t["healthCheckEnabled"] = enabled
    return t


def checked_group(gid, targets, interval, retries=3, timeout=None, http_check=None):
    g = group(gid, targets)
    g["properties"]["healthCheck"] = {"checkInterval": interval,
                                      "checkTimeout": timeout or interval, "retries": retries}
    if http_check:
        g["properties"]["httpHealthCheck"] = http_check
    return g


class HealthTest(ProxyTest):
    """ProxyTest plus the admin endpoint: every sluice here serves it on its own port."""

    def start(self, cfg, **kw):
        taken = {fr["properties"]["listenerPort"] for fr in cfg["forwardingRules"]}
        admin = wskit.free_port()
        while admin in taken:  # free_port may hand out a port the config already uses
            admin = wskit.free_port()
        cfg["sluice"]["admin"] = "127.0.0.1:%d" % admin
        s = self.sluice(cfg, **kw)
        s.admin = admin
        try:
            s.wait_port(admin)
        except wskit.HarnessError as e:
            self.fail(str(e))
        return s

    def get(self, s, path):
        return http(s.admin, path=path)

    def status(self, s):
        r = self.get(s, "/status")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        return json.loads(r.body)

    def metrics(self, s):
        r = self.get(s, "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type", "").startswith("text/plain; version=0.0.4"), r)
        try:
            return promparse.parse(r.body.decode("utf-8"))
        except ValueError as e:
            self.fail("/metrics is not valid Prometheus text: %s\n%s" % (e, r.body.decode()))

    def tstat(self, s, gid, port):
        """/status of target 127.0.0.1:<port> in group <gid>."""
        for g in self.status(s)["targetGroups"]:
            if g["id"] == gid:
                for t in g["targets"]:
                    if t["target"] == "127.0.0.1:%d" % port:
                        return t
        self.fail("no target 127.0.0.1:%d in group %s in /status" % (port, gid))

    def wait_health(self, s, gid, port, health, timeout):
        """Waits until the target's health is <health> after at least one check; returns
        (seconds waited, its status)."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            last = self.tstat(s, gid, port)
            if last["health"] == health and last["lastCheck"] is not None:
                return time.monotonic() - t0, last
            time.sleep(0.02)
        self.fail("target %d of %s not %s within %.1f s; last /status: %s"
                  % (port, gid, health, timeout, json.dumps(last, indent=1)))

    def echo_ok(self, c, n=1000):
        data = pattern(n)
        op, got = c.echo(OP_BINARY, data, timeout=PROMPT)
        self.assertTrue(got == data, "echo differs")


# =============================================================================================

class PromParse(unittest.TestCase):
    """The parser the metrics tests rely on rejects what Prometheus would."""

    def test_rejects_invalid_exposition(self):
        bad = {
            "no final newline": "# TYPE a gauge\na 1",
            "no TYPE": "a 1\n",
            "counter without _total": "# TYPE c counter\nc 1\n",
            "bad escape": '# TYPE g gauge\ng{a="\\q"} 1\n',
            "duplicate series": "# TYPE g gauge\ng 1\ng 2\n",
            "family not contiguous": "# TYPE g gauge\n# TYPE h gauge\ng 1\nh 1\ng 2\n",
            "bad value": "# TYPE g gauge\ng 1x\n",
            "bad label name": '# TYPE g gauge\ng{1a="x"} 1\n',
            "unterminated label": '# TYPE g gauge\ng{a="x} 1\n',
            "negative counter": "# TYPE c_total counter\nc_total -1\n",
            "second TYPE": "# TYPE g gauge\n# TYPE g gauge\ng 1\n",
        }
        for why, text in bad.items():
            with self.subTest(why=why):
                with self.assertRaises(ValueError):
                    promparse.parse(text)

    def test_accepts_valid_exposition(self):
        f = promparse.parse('# HELP g a \\\\ b\\nc\n# TYPE g gauge\ng{a="x\\"y",b="\\n"} 1.5\n'
                            'g{a="z"} +Inf\n# TYPE c_total counter\nc_total 3 1700000000000\n')
        self.assertEqual(f["g"].help, "a \\ b\nc")
        self.assertEqual(f["g"].get(a='x"y', b="\n"), 1.5)
        self.assertEqual(f["c_total"].get(), 3)


class ActiveChecks(HealthTest):

    def test_killed_target_goes_down_and_returns(self):
        """Kill a target: DOWN within checkInterval x retries plus one interval; new
        connections go to the other while its tunnels stay up; restart it: it returns."""
        interval, retries = 300, 3
        b1, b2 = self.bench("b1"), self.bench("b2")
        port = wskit.free_port()
        # one worker: its round robin alone decides, so the shares below are exact
        s = self.start(config(port, [forward("tg")], [checked_group(
            "tg", [checked_target(b1.port), checked_target(b2.port)], interval, retries)],
            threads=1))
        self.wait_health(s, "tg", b1.port, "UP", PROMPT)
        # one tunnel to each target; which is which, /status says
        c1 = WSClient.open(s.port, "/")
        self.addCleanup(c1.close)
        first = 1 if self.tstat(s, "tg", b1.port)["activeConnections"] == 1 else 2
        c2 = WSClient.open(s.port, "/")
        self.addCleanup(c2.close)
        on_b1, on_b2 = (c1, c2) if first == 1 else (c2, c1)
        self.assertEqual(self.tstat(s, "tg", b1.port)["activeConnections"], 1)
        self.assertEqual(self.tstat(s, "tg", b2.port)["activeConnections"], 1)
        self.echo_ok(on_b1)
        self.echo_ok(on_b2)

        b1.proc.kill()
        took, st = self.wait_health(s, "tg", b1.port, "DOWN",
                                    (interval * retries + interval) / 1000 + SLACK)
        self.assertEqual(st["downReason"], "refused", st)
        self.assertEqual(st["lastCheck"]["result"], "refused", st)
        self.assertGreaterEqual(st["checkFailures"], retries, st)
        self.assertFalse(st["eligible"], st)
        self.assertClosedPromptly(on_b1.conn, "the tunnel to the killed target")
        self.echo_ok(on_b2)  # the tunnel to the other target is untouched

        m = self.metrics(s)
        refused0 = m["sluice_upstream_connect_failures_total"].get(reason="refused")
        picks1 = self.tstat(s, "tg", b1.port)["connections"]
        for i in range(20):
            with WSClient.open(s.port, "/") as c:
                self.echo_ok(c, 100)
        self.assertEqual(self.tstat(s, "tg", b1.port)["connections"], picks1,
                         "a DOWN target got connections")
        m = self.metrics(s)
        self.assertEqual(m["sluice_upstream_connect_failures_total"].get(reason="refused"),
                         refused0, "the DOWN target was still tried")
        self.assertEqual(m["sluice_target_up"].get(group="tg", group_id="tg",
                                                   target="127.0.0.1:%d" % b1.port), 0)

        b1 = BenchServer(test_proxy.SLUICE_BENCH, self.tmp, "b1", port=b1.port)
        self.procs.append(b1.proc)
        b1.start()
        took, st = self.wait_health(s, "tg", b1.port, "UP", interval / 1000 + SLACK)
        self.assertEqual(st["lastCheck"]["result"], "ok", st)
        self.assertIsNone(st["downReason"], st)
        self.assertEqual(st["stateChanges"], 2, st)
        picks1 = st["connections"]
        for i in range(20):
            with WSClient.open(s.port, "/") as c:
                self.echo_ok(c, 100)
        self.assertEqual(self.tstat(s, "tg", b1.port)["connections"], picks1 + 10,
                         "the returned target does not get its share")
        self.echo_ok(on_b2)
        wskit.wait_until(lambda: re.search(r"127\.0\.0\.1:%d .*is UP" % b1.port,
                                           s.stderr_text()), PROMPT)
        log = s.stderr_text()
        self.assertEqual(len(re.findall(r"127\.0\.0\.1:%d .*is DOWN" % b1.port, log)), 1, log)
        self.assertEqual(len(re.findall(r"127\.0\.0\.1:%d .*is UP" % b1.port, log)), 1, log)

    def test_http_check_on_websocket_target_the_ionos_pitfall(self):
        """A WebSocket-only target (python3-websockets answers a plain GET with 426) behind an
        HTTP health check goes DOWN; the same target behind a TCP check stays UP."""
        ws = WebsocketsServer(compression=None).start()
        self.addCleanup(ws.stop)
        port = wskit.free_port()
        http_check = {"path": "/", "method": "GET", "matchType": "STATUS_CODE",
                      "response": "200", "regex": False, "negate": False}
        cfg = config(port, [forward("tg-http", [cond_path("/http")] + test_proxy.WS_CONDITIONS,
                                    name="via-http-check"),
                            forward("tg-tcp", name="via-tcp-check")],
                     [checked_group("tg-http", [checked_target(ws.port)], 200, 2,
                                    http_check=http_check),
                      checked_group("tg-tcp", [checked_target(ws.port)], 200, 2)])
        s = self.start(cfg)
        took, st = self.wait_health(s, "tg-http", ws.port, "DOWN", 0.2 * 3 + SLACK)
        self.assertEqual(st["downReason"], "status 426", st)
        self.assertEqual(st["lastCheck"]["httpStatus"], 426, st)
        wskit.wait_until(lambda: self.tstat(s, "tg-tcp", ws.port)["checks"] >= 3, PROMPT)
        st = self.tstat(s, "tg-tcp", ws.port)
        self.assertEqual((st["health"], st["checkFailures"], st["lastCheck"]["result"]),
                         ("UP", 0, "ok"), st)
        # the pitfall as a user meets it: 503 naming the group
        with WSClient(Conn.connect(s.port)) as c:
            r = c.handshake("/http", expect=None)
            self.assertEqual(r.status, 503, r)
            body = self.assertOneLineBody(r)
            self.assertIn('"tg-http"', body)
            self.assertIn("1 down", body)
        with WSClient.open(s.port, "/tcp") as c:
            self.echo_ok(c)
        # and `sluice check` warns about it before anything runs
        out = subprocess.run([test_proxy.SLUICE, "check", s.cfg_path], capture_output=True,
                             text=True, timeout=30)
        self.assertIn("HTTP health check", out.stdout + out.stderr)

    def test_http_check_matching(self):
        """STATUS_CODE and RESPONSE_BODY, exact and regex, negated, against a recording
        backend; the checks come from the ALB's lbPrivateIp."""
        py = self.pyback("hc")  # answers 200 "hc GET /path\n" to any plain request
        cases = [
            ("status", {"matchType": "STATUS_CODE", "response": "200"}, "UP", None),
            ("status-neg", {"matchType": "STATUS_CODE", "response": "200", "negate": True},
             "DOWN", "status 200"),
            ("status-re", {"matchType": "STATUS_CODE", "response": "^2\\d\\d$", "regex": True},
             "UP", None),
            ("body", {"matchType": "RESPONSE_BODY", "response": "GET /probe"}, "UP", None),
            ("body-miss", {"matchType": "RESPONSE_BODY", "response": "healthy"}, "DOWN",
             "body mismatch"),
            ("body-re", {"matchType": "RESPONSE_BODY", "response": "^hc (GET|HEAD) /pro",
                         "regex": True}, "UP", None),
        ]
        groups = []
        for gid, check, _, _ in cases:
            groups.append(checked_group(gid, [checked_target(py.port)], 200, 2,
                                        http_check=dict(check, path="/probe", method="GET")))
        cfg = config(wskit.free_port(), [forward("status")], groups)
        cfg["applicationLoadBalancer"] = {"id": "alb", "properties": {
            "name": "alb", "listenerLan": 1, "targetLan": 2, "ips": ["127.0.0.1"],
            "lbPrivateIps": ["127.0.0.7/8"]}}
        s = self.start(cfg)
        for gid, _, health, reason in cases:
            with self.subTest(group=gid):
                took, st = self.wait_health(s, gid, py.port, health, 0.2 * 3 + SLACK)
                # enough checks that one failure would show (retries 2 keeps it UP once)
                wskit.wait_until(lambda: self.tstat(s, gid, py.port)["checks"] >= 3, PROMPT)
                st = self.tstat(s, gid, py.port)
                self.assertEqual((st["health"], st["downReason"]), (health, reason), st)
                self.assertEqual(st["lastCheck"]["httpStatus"], 200, st)
                if health == "UP":
                    self.assertEqual((st["lastCheck"]["result"], st["checkFailures"]),
                                     ("ok", 0), st)
                else:
                    self.assertEqual(st["checkFailures"], st["checks"], st)
        probes = [r for r in py.requests() if r.path == "/probe"]
        self.assertTrue(probes)
        self.assertEqual({r.method for r in probes}, {"GET"})
        self.assertTrue(all(r.header("User-Agent", "").startswith("sluice") for r in probes))
        peers = {c.peer[0] for c in py.conns if c.requests and c.requests[0].path == "/probe"}
        self.assertEqual(peers, {"127.0.0.7"}, "checks not from the lbPrivateIp")

    def test_http_check_speaks_proxy_protocol_to_targets_that_want_it(self):
        """A target with proxyProtocol v1/v2 reads a PROXY header first on every connection:
        its HTTP checks carry v1 UNKNOWN / v2 LOCAL (the proxy's own connection)."""
        backs = {v: self.pyback("pp-" + v) for v in ("v1", "v2")}
        check = {"path": "/pp", "matchType": "STATUS_CODE", "response": "200"}
        groups = []
        for v, py in backs.items():
            t = checked_target(py.port)
            t["proxyProtocol"] = v
            groups.append(checked_group("tg-" + v, [t], 200, 2, http_check=check))
        s = self.start(config(wskit.free_port(), [forward("tg-v1")], groups))
        for v, py in backs.items():
            self.wait_health(s, "tg-" + v, py.port, "UP", PROMPT)
            probes = [c for c in py.conns if c.requests and c.requests[0].path == "/pp"]
            self.assertTrue(probes, v)
            want = b"PROXY UNKNOWN\r\n" if v == "v1" else \
                b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
            self.assertEqual({bytes(c.proxy) for c in probes}, {want}, v)

    def test_checks_disabled_target_always_up(self):
        dead = wskit.free_port()
        live = self.bench("live")
        cfg = config(wskit.free_port(), [forward("tg")], [checked_group(
            "tg", [checked_target(dead, enabled=False), checked_target(live.port)], 100, 1)])
        s = self.start(cfg)
        time.sleep(0.5)
        for i in range(6):
            self.assertEqual(http(s.port, path="/").status, 200)
        st = self.tstat(s, "tg", dead)
        self.assertEqual((st["health"], st["checks"], st["eligible"]), ("UNCHECKED", 0, True), st)
        self.assertGreaterEqual(st["connectFailures"], 2, st)  # tried, and failed over

    def test_passive_failures_count_as_checks(self):
        """A connect refused while proxying counts as a failed check: with checks 60 s apart,
        the dead target is DOWN after <retries> requests tried it."""
        dead = wskit.free_port()
        live = self.bench("live")
        cfg = config(wskit.free_port(), [forward("tg")], [checked_group(
            "tg", [checked_target(dead), checked_target(live.port)], 60000, 3)])
        s = self.start(cfg)
        n = 0
        while self.tstat(s, "tg", dead)["health"] == "UP" and n < 20:
            r = http(s.port, path="/")
            self.assertEqual((r.status, served_by(r)), (200, "live"), r)
            n += 1
        st = self.tstat(s, "tg", dead)
        self.assertEqual((st["health"], st["downReason"]), ("DOWN", "refused"), st)
        self.assertLessEqual(st["connectFailures"], 3, st)
        for i in range(10):
            self.assertEqual(http(s.port, path="/").status, 200)
        self.assertEqual(self.tstat(s, "tg", dead)["connectFailures"], st["connectFailures"],
                         "tried after DOWN")

    def test_flapping_target_does_not_flood_the_log(self):
        port = wskit.free_port()
        stop = threading.Event()

        def flap():
            while not stop.is_set():
                ls = socket.socket()
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    ls.bind(("127.0.0.1", port))
                    ls.listen(64)
                except OSError:
                    ls.close()
                    time.sleep(0.05)
                    continue
                ls.settimeout(0.02)
                t_end = time.monotonic() + 0.15
                while time.monotonic() < t_end:
                    try:
                        c, _ = ls.accept()
                        c.close()
                    except OSError:
                        pass
                ls.close()
                stop.wait(0.15)
        cfg = config(wskit.free_port(), [forward("tg")],
                     [checked_group("tg", [checked_target(port)], 30, 1)])
        s = self.start(cfg)
        th = threading.Thread(target=flap, daemon=True)
        th.start()
        time.sleep(4)
        stop.set()
        th.join()
        changes = self.tstat(s, "tg", port)["stateChanges"]
        self.assertGreaterEqual(changes, 10, "the target did not flap")
        lines = [ln for ln in s.stderr_text().splitlines() if "127.0.0.1:%d" % port in ln]
        self.assertLessEqual(len(lines), 6, "%d state changes logged as:\n%s"
                             % (changes, "\n".join(lines)))
        self.assertTrue(any("flapping" in ln for ln in lines), lines)


class Lifecycle(HealthTest):

    def _toggled_ws_target(self):
        """A python3-websockets target whose /health answers 200 or 503 as self.healthy says."""
        self.healthy = True

        def process_request(path, headers):
            if path == "/health":
                if self.healthy:
                    return httplib.HTTPStatus.OK, [], b"ok\n"
                return httplib.HTTPStatus.SERVICE_UNAVAILABLE, [], b"sick\n"
            return None
        async def process_request_async(path, headers):
            return process_request(path, headers)
        ws = WebsocketsServer(compression=None, process_request=process_request_async).start()
        self.addCleanup(ws.stop)
        return ws

    def test_down_target_keeps_tunnels_unless_close_on_target_down(self):
        ws = self._toggled_ws_target()
        check = {"path": "/health", "method": "GET", "matchType": "STATUS_CODE",
                 "response": "200"}
        sluices = {}
        for close in (False, True):
            cfg = config(wskit.free_port(), [forward("tg")], [checked_group(
                "tg", [checked_target(ws.port)], 100, 2, http_check=check)],
                closeOnTargetDown=close)
            sluices[close] = self.start(cfg)
        tunnels = {}
        for close, s in sluices.items():
            self.wait_health(s, "tg", ws.port, "UP", PROMPT)
            tunnels[close] = WSClient.open(s.port, "/chat")
            self.addCleanup(tunnels[close].close)
            self.echo_ok(tunnels[close])
        self.healthy = False
        for close, s in sluices.items():
            took, st = self.wait_health(s, "tg", ws.port, "DOWN", 0.1 * 3 + SLACK)
            self.assertEqual(st["downReason"], "status 503", st)
        self.assertClosedPromptly(tunnels[True].conn, "the tunnel with closeOnTargetDown")
        self.echo_ok(tunnels[False])
        time.sleep(0.3)
        self.echo_ok(tunnels[False])  # still up after more failed checks
        for close, s in sluices.items():
            r = http(s.port, path="/")
            self.assertEqual(r.status, 503, r)
            self.assertIn('no target of group "tg" is available', r.body.decode())
        wskit.wait_until(lambda: "target marked down" in sluices[True].stdout_text(), PROMPT)
        self.healthy = True
        for close, s in sluices.items():
            self.wait_health(s, "tg", ws.port, "UP", 0.1 + SLACK)
            with WSClient.open(s.port, "/chat") as c:
                self.echo_ok(c)
        self.echo_ok(tunnels[False])

    def test_maintenance_and_weight_zero_get_nothing_new(self):
        b1, b2, b3 = self.bench("b1"), self.bench("b2"), self.bench("b3")
        cfg = config(wskit.free_port(), [forward("tg")], [checked_group(
            "tg", [checked_target(b1.port), checked_target(b2.port, maintenance=True),
                   checked_target(b3.port, weight=0)], 200, 2)])
        s = self.start(cfg)
        for i in range(10):
            with WSClient.open(s.port, "/") as c:
                self.echo_ok(c, 10)
        self.assertEqual(self.tstat(s, "tg", b1.port)["connections"], 10)
        for p, state in ((b2.port, "MAINTENANCE"), (b3.port, "WEIGHT_0")):
            st = self.tstat(s, "tg", p)
            self.assertEqual((st["state"], st["eligible"], st["connections"]), (state, False, 0))
            self.assertEqual(st["health"], "UP", st)  # still checked


class Admin(HealthTest):

    def test_metrics_match_the_traffic(self):
        b = self.bench("b1")
        dead = wskit.free_port()
        port = wskit.free_port()
        rules = [static(200, "hi\n", [cond_path("/static")], name="hello"),
                 forward("tg-dead", [cond_path("/dead")], name="to-dead"),
                 forward("tg", [cond_path("/", "STARTS_WITH")], name="main")]
        cfg = config(port, rules, [group("tg", [wskit.target(b.port)]),
                                   group("tg-dead", [wskit.target(dead)])])
        s = self.start(cfg)
        for i in range(7):
            self.assertEqual(http(s.port, path="/static").status, 200)
        for i in range(5):
            self.assertEqual(http(s.port, path="/x").status, 200)
        for i in range(3):
            self.assertEqual(http(s.port, path="/dead").status, 502)
        self.assertEqual(http(s.port, path="nope", raw=b"GET nope HTTP/1.1\r\n\r\n").status, 400)
        # two tunnels with exactly known bytes each way: frames we encode ourselves, echoed by
        # sluice-bench as one unmasked frame each
        up = down = 0
        tunnels = []
        for sizes in ((10, 200, 70000), (1, 126, 65536, 3)):
            c = WSClient.open(s.port, "/ws")
            self.addCleanup(c.close)
            tunnels.append(c)
            for n in sizes:
                frame = encode_frame(OP_BINARY, pattern(n))
                up += len(frame)
                down += len(encode_frame(OP_BINARY, pattern(n), mask=False))
                c.send_raw(frame)
                op, got = c.recv_message()
                self.assertEqual(len(got), n)
        time.sleep(1.3)  # tunnels' bytes reach the counters every second, while they live
        m = self.metrics(s)
        labels = dict(listener="127.0.0.1:%d" % port, forwarding_rule="fr")
        req = m["sluice_requests_total"]
        self.assertEqual(req.get(rule="hello", **labels, **{"class": "2xx"}), 7)
        self.assertEqual(req.get(rule="main", **labels, **{"class": "2xx"}), 5)
        self.assertEqual(req.get(rule="main", **labels, **{"class": "1xx"}), 2)
        self.assertEqual(req.get(rule="to-dead", **labels, **{"class": "5xx"}), 3)
        self.assertEqual(req.get(rule="", **labels, **{"class": "4xx"}), 1)
        self.assertEqual(req.total(), 7 + 5 + 2 + 3 + 1)
        # + 1: the harness's probe that the listener accepts
        self.assertEqual(m["sluice_connections_accepted_total"].get(), 7 + 5 + 3 + 1 + 2 + 1)
        self.assertEqual(m["sluice_connections_active"].get(), 2)
        self.assertEqual(m["sluice_tunnels_active"].get(), 2)
        self.assertEqual(m["sluice_tunnels_total"].get(), 2)
        tb = m["sluice_tunnel_bytes_total"]
        self.assertEqual(tb.get(direction="client_to_target"), up)
        self.assertEqual(tb.get(direction="target_to_client"), down)
        self.assertEqual(m["sluice_upstream_connect_failures_total"].get(reason="refused"), 3)
        self.assertEqual(m["sluice_upstream_connect_failures_total"].total(), 3)
        tgt = dict(group="tg", group_id="tg", target="127.0.0.1:%d" % b.port)
        self.assertEqual(m["sluice_target_active_connections"].get(**tgt), 2)
        self.assertEqual(m["sluice_target_connections_total"].get(**tgt), 7)
        self.assertEqual(m["sluice_target_up"].get(**tgt), 1)
        self.assertGreaterEqual(m["sluice_target_bytes_total"].get(direction="out", **tgt), up)
        self.assertEqual(m["sluice_config_generation"].get(), 1)
        self.assertGreater(m["sluice_config_load_timestamp_seconds"].get(), 1.7e9)
        st = self.tstat(s, "tg", b.port)
        self.assertEqual(st["activeConnections"], 2)
        self.assertEqual(st["bytesOut"], m["sluice_target_bytes_total"].get(direction="out",
                                                                             **tgt))
        for c in tunnels:
            c.close()
        wskit.wait_until(lambda: self.metrics(s)["sluice_tunnels_active"].get() == 0, PROMPT)
        m = self.metrics(s)
        self.assertEqual(m["sluice_tunnel_bytes_total"].get(direction="client_to_target"), up)
        self.assertEqual(m["sluice_connections_active"].get(), 0)
        self.assertEqual(m["sluice_target_active_connections"].get(**tgt), 0)

    def test_tunnel_bytes_exact_with_early_frames_and_early_reset(self):
        """A target that answers the upgrade late, with a frame in the same packet as its 101:
        the frame counts as tunnel bytes, the 101 head as the response's; a client that
        resets before the 101 leaves every counter sane."""
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        self.addCleanup(ls.close)
        head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n")
        early = encode_frame(OP_BINARY, b"early", mask=False)
        received = []

        def serve():
            while True:
                try:
                    c, _ = ls.accept()
                except OSError:
                    return
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                key = re.search(rb"Sec-WebSocket-Key: *(\S+)", data, re.I)
                time.sleep(0.3)
                try:
                    c.sendall(head % wskit.ws_accept(key.group(1).decode()).encode() + early)
                    rest = c.recv(65536)  # one frame from the client, then close
                    received.append(len(rest))
                except OSError:
                    pass
                c.close()
        threading.Thread(target=serve, daemon=True).start()
        cfg = config(wskit.free_port(), [forward("tg")],
                     [group("tg", [wskit.target(ls.getsockname()[1])])])
        s = self.start(cfg)
        # a client that resets while the target is still thinking
        c = Conn.connect(s.port)
        c.send(wskit.handshake_bytes(wskit.ws_key(), "/"))
        time.sleep(0.1)
        c.reset()
        time.sleep(0.5)
        # a client that stays: the early frame, then one frame of its own
        ws = WSClient.open(s.port, "/")
        self.addCleanup(ws.close)
        self.assertEqual(ws.recv_message(), (OP_BINARY, b"early"))
        mine = encode_frame(OP_BINARY, b"x" * 100)
        ws.send_raw(mine)
        wskit.wait_until(lambda: len(received) == 2, PROMPT)
        ws.close()
        wskit.wait_until(lambda: self.metrics(s)["sluice_tunnels_active"].get() == 0, PROMPT)
        m = self.metrics(s)
        tb = m["sluice_tunnel_bytes_total"]
        self.assertEqual(tb.get(direction="target_to_client"), len(early), "early frame")
        self.assertEqual(tb.get(direction="client_to_target"), len(mine))
        st = self.tstat(s, "tg", ls.getsockname()[1])
        for k in ("bytesIn", "bytesOut"):
            self.assertTrue(0 < st[k] < 10000, st)
        self.assertGreaterEqual(st["bytesIn"], len(early) + len(head))

    def test_status_and_healthz(self):
        b = self.bench("b1")
        cfg = config(wskit.free_port(), [forward("tg", name="ws")],
                     [checked_group("tg", [checked_target(b.port, weight=7)], 200, 3)],
                     drainTimeout=5000)
        s = self.start(cfg)
        self.wait_health(s, "tg", b.port, "UP", PROMPT)
        wskit.wait_until(lambda: self.tstat(s, "tg", b.port)["lastCheck"] is not None, PROMPT)
        st = self.status(s)
        self.assertEqual(st["config"]["generation"], 1)
        self.assertEqual(st["config"]["origin"], s.cfg_path)
        (ln,) = st["listeners"]
        self.assertEqual((ln["name"], ln["listener"]), ("fr", "127.0.0.1:%d" % s.port))
        self.assertEqual([(r["name"], r["type"], r["targetGroup"]) for r in ln["httpRules"]],
                         [("ws", "FORWARD", "tg")])
        (g,) = st["targetGroups"]
        self.assertEqual(g["healthCheck"], {"type": "TCP", "checkInterval": 200,
                                            "checkTimeout": 200, "retries": 3})
        (t,) = g["targets"]
        self.assertEqual((t["weight"], t["health"], t["lastCheck"]["result"], t["eligible"]),
                         (7, "UP", "ok", True))
        r = self.get(s, "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        self.assertEqual(self.get(s, "/nope").status, 404)
        for method in ("POST", "HEAD"):
            r = http(s.admin, method=method, path="/metrics",
                     body=b"" if method == "POST" else None)
            self.assertEqual(r.status, 405, r)
        c = WSClient.open(s.port, "/")
        self.addCleanup(c.close)
        s.signal(signal.SIGTERM)  # draining: the tunnel holds the process
        wskit.wait_until(lambda: self.get(s, "/healthz").status == 503, PROMPT)
        self.assertEqual(self.get(s, "/healthz").body, b"draining\n")
        self.assertTrue(self.status(s)["draining"])
        c.close()  # the last connection: the drain ends, sluice exits
        self.assertEqual(s.wait(PROMPT), 0)

    def test_admin_address_in_use(self):
        """An admin address given explicitly must be served: sluice does not start without it;
        the default one is skipped with a warning."""
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        cfg = config(wskit.free_port(), [static(200, "x")], [])
        cfg["sluice"]["admin"] = "127.0.0.1:%d" % taken.getsockname()[1]
        path = os.path.join(self.tmp, "taken.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        out = subprocess.run([test_proxy.SLUICE, "run", path], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("admin endpoint 127.0.0.1:%d" % taken.getsockname()[1], out.stderr)
        self.assertIn("in use", out.stderr)


class Reload(HealthTest):
    """SIGHUP re-reads the file: what the issue on health and lifecycle needs from it."""

    def reload(self, s, cfg, expect_generation=None):
        """Rewrites <s>'s config with <cfg>, sends SIGHUP and waits until it is served (the
        generation in /status grows), or, with expect_generation, until the log says why
        not and the generation is still that."""
        before = self.status(s)["config"]["generation"]
        with open(s.cfg_path, "w") as f:
            if isinstance(cfg, str):
                f.write(cfg)
            else:
                json.dump(cfg, f, indent=2)
        n_refused = s.stderr_text().count("reload: refused") + \
            s.stderr_text().count("refused; the running config stays")
        s.signal(signal.SIGHUP)
        if expect_generation is None:
            wskit.wait_until(lambda: self.status(s)["config"]["generation"] == before + 1,
                             PROMPT)
            time.sleep(0.05)  # workers take it on their next loop turn
        else:
            wskit.wait_until(lambda: s.stderr_text().count("refused; the running config stays")
                             + s.stderr_text().count("reload: refused") > n_refused, PROMPT)
            self.assertEqual(self.status(s)["config"]["generation"], expect_generation)

    def test_request_counts_follow_the_running_rules(self):
        """Per-rule request counts are summed over the workers; a rule a reload renames leaves
        /metrics, one it keeps goes on counting where it was."""
        b = self.bench("b1")
        port = wskit.free_port()
        rules = [static(200, "hi\n", [cond_path("/static")], name="old-name"),
                 forward("tg", [cond_path("/", "STARTS_WITH")], name="main")]
        cfg = config(port, rules, [group("tg", [wskit.target(b.port)])], threads=2)
        s = self.start(cfg)
        for path in ["/static"] * 6 + ["/x"] * 4:
            self.assertEqual(http(s.port, path=path).status, 200)
        labels = dict(listener="127.0.0.1:%d" % port, forwarding_rule="fr", **{"class": "2xx"})
        req = self.metrics(s)["sluice_requests_total"]
        self.assertEqual(req.get(rule="old-name", **labels), 6)
        self.assertEqual(req.get(rule="main", **labels), 4)
        cfg["forwardingRules"][0]["properties"]["httpRules"][0]["name"] = "new-name"
        self.reload(s, cfg)
        for path in ["/static"] * 3 + ["/x"] * 2:
            self.assertEqual(http(s.port, path=path).status, 200)
        req = self.metrics(s)["sluice_requests_total"]
        self.assertEqual(req.get(rule="new-name", **labels), 3)
        self.assertEqual(req.get(rule="main", **labels), 6)
        self.assertEqual(req.total(rule="old-name"), 0)  # no such series any more

    def test_maintenance_drains_without_cutting_tunnels(self):
        b1, b2 = self.bench("b1"), self.bench("b2")
        targets = [checked_target(b1.port), checked_target(b2.port)]
        cfg = config(wskit.free_port(), [forward("tg")],
                     [checked_group("tg", targets, 200, 2)], threads=1)
        s = self.start(cfg)
        c1 = WSClient.open(s.port, "/")
        self.addCleanup(c1.close)
        c2 = WSClient.open(s.port, "/")
        self.addCleanup(c2.close)
        self.assertEqual(self.tstat(s, "tg", b1.port)["activeConnections"], 1)
        targets[0]["maintenanceEnabled"] = True
        self.reload(s, cfg)
        st = self.tstat(s, "tg", b1.port)
        self.assertEqual((st["state"], st["activeConnections"]), ("MAINTENANCE", 1), st)
        picks = st["connections"]
        for i in range(10):
            with WSClient.open(s.port, "/") as c:
                self.echo_ok(c, 10)
        self.assertEqual(self.tstat(s, "tg", b1.port)["connections"], picks,
                         "a target in maintenance got new connections")
        self.echo_ok(c1)  # the tunnels of both targets carry on
        self.echo_ok(c2)
        self.assertEqual(self.tstat(s, "tg", b1.port)["activeConnections"], 1)
        c1.close()
        wskit.wait_until(lambda: self.tstat(s, "tg", b1.port)["activeConnections"] == 0,
                         PROMPT)
        self.assertEqual(self.metrics(s)["sluice_config_generation"].get(), 2)

    def test_health_state_survives_reload_when_unchanged(self):
        dead = wskit.free_port()
        live = self.bench("live")
        cfg = config(wskit.free_port(), [forward("tg")], [checked_group(
            "tg", [checked_target(dead), checked_target(live.port)], 200, 2)])
        s = self.start(cfg)
        self.wait_health(s, "tg", dead, "DOWN", PROMPT)
        checks = self.tstat(s, "tg", dead)["checks"]
        cfg["forwardingRules"][0]["properties"]["httpRules"][0]["name"] = "renamed"
        cfg["targetGroups"][0]["properties"]["targets"][1]["weight"] = 5
        self.reload(s, cfg)
        st = self.tstat(s, "tg", dead)
        self.assertEqual((st["health"], st["downReason"]), ("DOWN", "refused"), st)
        self.assertGreaterEqual(st["checks"], checks, st)
        for i in range(5):
            self.assertEqual(http(s.port, path="/").status, 200)
        self.assertEqual(self.tstat(s, "tg", dead)["connectFailures"], 0,
                         "the DOWN target was tried after the reload")
        wskit.wait_until(lambda: self.tstat(s, "tg", dead)["checks"] > checks + 1, PROMPT)
        # other check settings: a new judgement, from UP
        cfg["targetGroups"][0]["properties"]["healthCheck"]["checkInterval"] = 300
        self.reload(s, cfg)
        # judged afresh: UP (it takes 2 failed checks, 300 ms apart at least, to fall again)
        st = self.tstat(s, "tg", dead)
        self.assertEqual(st["health"], "UP", st)
        self.assertIsNone(st["downReason"], st)
        self.wait_health(s, "tg", dead, "DOWN", 0.3 * 3 + SLACK)
        self.assertIn('"renamed"', json.dumps(self.status(s)["listeners"]))

    def test_bad_reload_is_refused_and_the_old_config_serves(self):
        b = self.bench("b1")
        port = wskit.free_port()
        cfg = config(port, [forward("tg")], [checked_group("tg", [checked_target(b.port)],
                                                           200, 2)])
        s = self.start(cfg)
        bad = json.dumps(cfg, indent=2).replace('"ROUND_ROBIN"', '"ROUND-ROBIN"')
        self.reload(s, bad, expect_generation=1)
        self.assertRegex(s.stderr_text(), r"reload: .*sluice1\.json:\d+:\d+: .*algorithm")
        with WSClient.open(s.port, "/") as c:
            self.echo_ok(c)
        # a new listener on a port in use: refused before anything changes
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        cfg2 = json.loads(json.dumps(cfg))
        fr2 = json.loads(json.dumps(cfg2["forwardingRules"][0]))
        fr2["id"] = "fr-2"
        fr2["properties"]["listenerPort"] = taken.getsockname()[1]
        cfg2["forwardingRules"].append(fr2)
        self.reload(s, cfg2, expect_generation=1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % taken.getsockname()[1],
                      s.stderr_text())
        with WSClient.open(s.port, "/") as c:
            self.echo_ok(c)

    def test_removed_target_tunnels_finish_or_close_after_drain_timeout(self):
        """A reload that removes a target: its tunnels finish on their own, unless the file
        sets sluice.drainTimeout: then they close that long after the reload (0: at once, not
        at the next once-a-second tick)."""
        b1, b2 = self.bench("b1"), self.bench("b2")
        for drain in (None, 1000, 0):
            with self.subTest(drainTimeout=drain):
                cfg = config(wskit.free_port(), [forward("tg")], [group(
                    "tg", [wskit.target(b1.port), wskit.target(b2.port)])], threads=1)
                if drain is None:
                    del cfg["sluice"]["drainTimeout"]
                else:
                    cfg["sluice"]["drainTimeout"] = drain
                s = self.start(cfg)
                c1 = WSClient.open(s.port, "/")
                self.addCleanup(c1.close)
                self.assertEqual(self.tstat(s, "tg", b1.port)["activeConnections"], 1)
                cfg["targetGroups"][0]["properties"]["targets"] = [wskit.target(b2.port)]
                self.reload(s, cfg)
                if drain is None:
                    time.sleep(2.5)
                    self.echo_ok(c1)  # still carried, well past any tick
                elif drain == 0:
                    self.assertClosedPromptly(c1.conn, "the removed target's tunnel",
                                              timeout=0.5)
                    wskit.wait_until(lambda: "target removed" in s.stdout_text(), PROMPT)
                else:
                    time.sleep(drain / 1000 - 0.3)
                    self.echo_ok(c1)  # not closed before drainTimeout
                    self.assertClosedPromptly(c1.conn, "the removed target's tunnel",
                                              timeout=1.3 + SLACK)
                    wskit.wait_until(lambda: "target removed" in s.stdout_text(), PROMPT)
                with WSClient.open(s.port, "/") as c:
                    self.echo_ok(c)

    @staticmethod
    def listening(port):
        """LISTEN sockets on 127.0.0.1:<port> (one per worker when served)."""
        n = 0
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and local == "0100007F:%04X" % port:
                    n += 1
        return n

    def test_back_to_back_reloads_keep_every_listener(self):
        """Two SIGHUPs before the workers took the first: every worker still listens on what
        the second config names (its sockets are handed on, not lost)."""
        b = self.bench("b1")
        p1, p2 = wskit.free_ports(2)
        cfg = config(p1, [forward("tg")], [group("tg", [wskit.target(b.port)])], threads=2)
        s = self.start(cfg)
        fr2 = json.loads(json.dumps(cfg["forwardingRules"][0]))
        fr2["id"] = "fr-2"
        fr2["properties"]["listenerPort"] = p2
        gen = 1
        for i in range(16):
            cfg["forwardingRules"] = [cfg["forwardingRules"][0]] + ([fr2] if i % 2 == 0 else [])
            with open(s.cfg_path, "w") as f:
                json.dump(cfg, f)
            before = s.stderr_text().count("reload: generation")
            s.signal(signal.SIGHUP)
            s.signal(signal.SIGHUP)
            wskit.wait_until(lambda: s.stderr_text().count("reload: generation") > before,
                             PROMPT)
            time.sleep(0.3)  # a second reload, if the signals did not coalesce
            gen = self.status(s)["config"]["generation"]
            want = 2 if i % 2 == 0 else 0
            self.assertEqual((self.listening(p2), self.listening(p1)), (want, 2),
                             "round %d (generation %d)" % (i, gen))
        self.assertGreater(gen, 16)

    def test_reload_after_running_out_of_fds_keeps_accepting(self):
        """Out of fds on listener A, a reload that drops A, the tunnels closed, then another
        reload: listener B (idle all along) still accepts."""
        b = self.bench("b1")
        pa, pb = wskit.free_ports(2)
        cfg = config(pa, [forward("tg")], [group("tg", [wskit.target(b.port)])], threads=1)
        fr_b = json.loads(json.dumps(cfg["forwardingRules"][0]))
        fr_b["id"] = "fr-b"
        fr_b["properties"]["listenerPort"] = pb
        cfg["forwardingRules"].append(fr_b)
        s = self.start(cfg, preexec_fn=test_proxy.nofile_limit(64, 64))
        held = []
        self.addCleanup(lambda: [c.close() for c in held])
        for i in range(40):  # 2 fds each: more than 64 can hold
            try:
                held.append(WSClient.open(pa, "/", timeout=1))
            except (OSError, wskit.ProtocolError):
                pass
        wskit.wait_until(lambda: "cannot accept" in s.stderr_text(), PROMPT)
        cfg["forwardingRules"] = [fr_b]
        self.reload(s, cfg)
        for c in held:
            c.close()
        held.clear()
        time.sleep(0.5)  # the out-of-fds pause has ended, with nothing left to accept on B
        fr_b["properties"]["name"] = "renamed"
        self.reload(s, cfg)
        self.assertTrue(wskit.wait_until(lambda: self._tunnel_ok(pb), PROMPT),
                        "listener B does not accept after the reloads")

    @staticmethod
    def _tunnel_ok(port):
        try:
            with WSClient.open(port, "/", timeout=1) as c:
                return c.echo(OP_BINARY, b"x")[1] == b"x"
        except (OSError, wskit.ProtocolError):
            return False

    def test_reload_opens_and_closes_listeners(self):
        b = self.bench("b1")
        p1, p2 = wskit.free_ports(2)
        cfg = config(p1, [forward("tg")], [group("tg", [wskit.target(b.port)])])
        s = self.start(cfg)
        t1 = WSClient.open(p1, "/")
        self.addCleanup(t1.close)
        fr = cfg["forwardingRules"][0]
        fr2 = json.loads(json.dumps(fr))
        fr2["id"] = "fr-2"
        fr2["properties"]["listenerPort"] = p2
        cfg["forwardingRules"] = [fr2]  # p1 goes, p2 comes
        self.reload(s, cfg)
        with WSClient.open(p2, "/") as c:
            self.echo_ok(c)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", p1), 1).close()
        self.echo_ok(t1)  # the tunnel accepted on the removed listener carries on
        cfg["forwardingRules"] = [fr, fr2]  # p1 comes back
        self.reload(s, cfg)
        for p in (p1, p2):
            with WSClient.open(p, "/") as c:
                self.echo_ok(c)
        self.echo_ok(t1)


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_health"))
