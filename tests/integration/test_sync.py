#!/usr/bin/python3
"""End-to-end tests of `sluice run --sync`: the IONOS guide's three REST calls sent to
`sluice emu` drive a running sluice; the API failing in every way the issue names leaves the
last good config serving; a restart without the API serves from the cache.

Run by meson as:
    /usr/bin/python3 tests/integration/test_sync.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]

Real processes on loopback: `sluice emu`, `sluice run`, `sluice-bench server` targets. The
failure modes the emulator cannot produce (5xx, 429, malformed JSON, a config that does not
validate) come from FakeAPI, a small http.server whose answers the test sets.
"""
import http.client
import http.server
import json
import os
import random
import socket
import signal
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_proxy  # noqa: E402
import wskit  # noqa: E402
from test_health import HealthTest  # noqa: E402
from test_proxy import PROMPT  # noqa: E402
from wskit import WSClient  # noqa: E402

TOKEN = "tok-3f9a-do-not-log-me"
INTERVAL = 1  # sluice.sync.intervalSeconds in these tests


class Api:
    """A small client for the CloudAPI (the emulator's or the fake's)."""

    def __init__(self, port, token=TOKEN):
        self.port, self.token = port, token

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        c.request(method, "/cloudapi/v6" + path,
                  body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, (json.loads(raw) if raw else None)


class FakeAPI:
    """Answers GETs from self.routes {path: (status, headers, body bytes)}; counts requests
    and records their Authorization headers."""

    def __init__(self):
        self.routes = {}
        self.hits = []
        self.stall = 0
        self.jitter = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                outer.hits.append((path, self.headers.get("Authorization")))
                if outer.stall:
                    time.sleep(outer.stall)  # an API that accepts and does not answer
                if outer.jitter:
                    time.sleep(random.random() * outer.jitter)
                status, headers, body = outer.routes.get(
                    path, (404, {}, b'{"httpStatus":404,"messages":[{"errorCode":"309",'
                                    b'"message":"Resource does not exist"}]}'))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the stall case)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SyncTest(HealthTest):

    def emu(self, state, port=None, name="emu"):
        port = port or wskit.free_port()
        p = wskit.Proc(name, [test_proxy.SLUICE, "emu", "--listen", "127.0.0.1:%d" % port,
                              "--state", state, "--token", TOKEN], self.tmp)
        self.procs.append(p)
        try:
            p.wait_port(port)
        except wskit.HarnessError as e:
            self.fail(str(e))
        p.api_port = port
        return p

    def local(self, api_port, dc, alb, listen_port, maps, interval=INTERVAL, **extra):
        """The file `sluice run` gets: only the sluice block (admin, address map, sync)."""
        admin = wskit.free_port()
        while admin in (listen_port, api_port):  # free_port may repeat itself
            admin = wskit.free_port()
        sl = {"threads": 1, "admin": "127.0.0.1:%d" % admin, "accessLog": "-",
              "addressMap": maps,
              "sync": {"datacenterId": dc, "applicationLoadBalancerId": alb,
                       "intervalSeconds": interval, "apiUrl": "http://127.0.0.1:%d" % api_port,
                       "cacheFile": os.path.join(self.tmp, "sync-cache.json")}}
        sl.update(extra)
        return {"sluice": sl}, admin

    def run_synced(self, cfg, admin, port, name="sluice", wait=True):
        self.n_configs += 1
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        env = dict(os.environ, IONOS_TOKEN=TOKEN)
        env.pop("IONOS_API_URL", None)
        p = wskit.Proc(name, [test_proxy.SLUICE, "run", path], self.tmp, cwd=self.tmp, env=env)
        p.port, p.cfg_path, p.admin = port, path, admin
        self.procs.append(p)
        self.sluices.append(p)
        if wait:
            try:
                p.wait_port(port)
                p.wait_port(admin)
            except wskit.HarnessError as e:
                self.fail(str(e))
        return p

    def tstat_at(self, s, gid, port):
        """/status of the target of group <gid> mapped to 127.0.0.1:<port>."""
        for g in self.status(s)["targetGroups"]:
            for t in g["targets"] if g["id"] == gid else ():
                if t["address"] == "127.0.0.1:%d" % port:
                    return t
        self.fail("no target at 127.0.0.1:%d in group %s" % (port, gid))

    def sync_status(self, s):
        return self.status(s)["sync"]

    def wait_generation(self, s, gen, timeout=INTERVAL * 2 + PROMPT):
        wskit.wait_until(lambda: self.status(s)["config"]["generation"] >= gen, timeout)

    def assertNoToken(self, s):
        for text in (s.stderr_text(), s.stdout_text()):
            self.assertNotIn(TOKEN, text, "the token appears in sluice's output")
        with open(os.path.join(self.tmp, "sync-cache.json")) as f:
            self.assertNotIn(TOKEN, f.read())


class GuideOnEmulator(SyncTest):

    def test_guide_calls_drive_a_running_sluice(self):
        """The guide's ALB, target group and forwarding rule, created in the emulator; sluice
        syncs them; PATCH a weight → the distribution follows; stop the emulator → sluice
        keeps serving; DELETE the rule → its listener stops; restart sluice with the
        emulator down → it serves from its cache."""
        b1, b2 = self.bench("b1"), self.bench("b2")
        state = os.path.join(self.tmp, "emu-state.json")
        emu = self.emu(state)
        api = Api(emu.api_port)
        dc = "8f0b4b1e-2a0c-4b5e-9b0e-5c1d2e3f4a5b"
        st, alb = api.call("POST", "/datacenters/%s/applicationloadbalancers" % dc, {
            "properties": {"name": "alb-websocket", "listenerLan": 1, "targetLan": 2,
                           "ips": ["1.1.1.1"], "lbPrivateIps": ["10.20.30.40/24"]}})
        self.assertEqual(st, 202, alb)
        tg_props = {"name": "websocket-target-group", "algorithm": "ROUND_ROBIN",
                    "protocol": "HTTP",
                    "targets": [{"ip": "10.20.30.100", "port": 8080, "weight": 10,
                                 "healthCheckEnabled": True},
                                {"ip": "10.20.30.101", "port": 8080, "weight": 10,
                                 "healthCheckEnabled": True}]}
        st, tg = api.call("POST", "/targetgroups", {"properties": tg_props})
        self.assertEqual(st, 202, tg)
        st, fr = api.call("POST", "/datacenters/%s/applicationloadbalancers/%s/forwardingrules"
                          % (dc, alb["id"]), {"properties": {
                              "name": "websocket-rule", "protocol": "HTTP",
                              "listenerIp": "1.1.1.1", "listenerPort": 80,
                              "httpRules": [{"name": "forward", "type": "FORWARD",
                                             "targetGroup": tg["id"]}]}})
        self.assertEqual(st, 202, fr)

        port = wskit.free_port()
        maps = {"1.1.1.1:80": "127.0.0.1:%d" % port,
                "10.20.30.100:8080": "127.0.0.1:%d" % b1.port,
                "10.20.30.101:8080": "127.0.0.1:%d" % b2.port,
                "10.20.30.40": "127.0.0.1"}
        cfg, admin = self.local(emu.api_port, dc, alb["id"], port, maps)
        s = self.run_synced(cfg, admin, port)
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        sync = self.sync_status(s)
        self.assertEqual((sync["ok"], sync["fromCache"], sync["updates"]), (True, False, 1), sync)
        tunnel = WSClient.open(port, "/")
        self.addCleanup(tunnel.close)

        # PATCH the weights: 1 and 3 → new connections follow within an interval
        tg_props["targets"][0]["weight"] = 1
        tg_props["targets"][1]["weight"] = 3
        st, _ = api.call("PATCH", "/targetgroups/%s" % tg["id"],
                         {"targets": tg_props["targets"]})
        self.assertEqual(st, 202)
        self.wait_generation(s, 2)
        before = {p: self.tstat_at(s, tg["id"], p)["connections"] for p in (b1.port, b2.port)}
        for i in range(40):
            with WSClient.open(port, "/") as c:
                self.echo_ok(c, 10)
        got = {p: self.tstat_at(s, tg["id"], p)["connections"] - before[p]
               for p in (b1.port, b2.port)}
        self.assertEqual(got, {b1.port: 10, b2.port: 30}, "weights 1:3 not followed")
        self.echo_ok(tunnel)

        # the emulator stops: sluice keeps serving, says so once
        emu.stop()
        wskit.wait_until(lambda: not self.sync_status(s)["ok"], INTERVAL * 2 + PROMPT)
        time.sleep(3)  # several failed polls
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        self.echo_ok(tunnel)
        sync = self.sync_status(s)
        self.assertGreaterEqual(sync["consecutiveFailures"], 2, sync)
        self.assertIn("reading the ALB", sync["lastError"])
        self.assertEqual(s.stderr_text().count("retrying with backoff"), 1, s.stderr_text())

        # back: the same state file
        emu = self.emu(state, port=emu.api_port, name="emu2")
        wskit.wait_until(lambda: self.sync_status(s)["ok"], INTERVAL * 2 + PROMPT)
        # the log thread writes it a moment after /status shows it
        wskit.wait_until(lambda: "answers again" in s.stderr_text(), PROMPT)

        # restart sluice with the emulator down: the cache
        emu.stop()
        s.stop()
        s2 = self.run_synced(cfg, admin, port, name="sluice-cached")
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        sync = self.sync_status(s2)
        self.assertTrue(sync["fromCache"], sync)
        wskit.wait_until(lambda: "serving the cached config" in s2.stderr_text(), PROMPT)
        # the cached config is the PATCHed one
        self.assertEqual(self.tstat_at(s2, tg["id"], b1.port)["weight"], 1)

        # the emulator returns; DELETE the rule → the listener goes within an interval
        emu = self.emu(state, port=emu.api_port, name="emu3")
        wskit.wait_until(lambda: not self.sync_status(s2)["fromCache"], INTERVAL * 2 + PROMPT)
        st, _ = api.call("DELETE", "/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s"
                         % (dc, alb["id"], fr["id"]))
        self.assertEqual(st, 202)
        t0 = time.monotonic()
        wskit.wait_until(lambda: not wskit.port_open(port), INTERVAL * 2 + PROMPT)
        self.assertLess(time.monotonic() - t0, INTERVAL + 1 + 1.0)
        self.assertNoToken(s)
        self.assertNoToken(s2)


class FailingApi(SyncTest):

    ALB = "alb-0001"
    DC = "dc-0001"

    def documents(self, port, b_port, algorithm="ROUND_ROBIN"):
        alb = {"id": self.ALB, "type": "applicationloadbalancer", "properties": {
            "name": "alb", "listenerLan": 1, "targetLan": 2, "ips": ["127.0.0.1"],
            "lbPrivateIps": ["127.0.0.1/8"]},
            "entities": {"forwardingrules": {"type": "collection", "items": [{
                "id": "fr-1", "type": "forwarding-rule", "properties": {
                    "name": "fr", "protocol": "HTTP", "listenerIp": "127.0.0.1",
                    "listenerPort": port, "httpRules": [{
                        "name": "forward", "type": "FORWARD", "targetGroup": "tg-1"}]}}]}}}
        tg = {"id": "tg-1", "type": "target-group", "properties": {
            "name": "tg", "algorithm": algorithm, "protocol": "HTTP",
            "targets": [{"ip": "127.0.0.1", "port": b_port, "weight": 1,
                         "healthCheckEnabled": False}]}}
        return alb, tg

    def serve(self, fake, alb, tg):
        ok = {"Content-Type": "application/json"}
        fake.routes["/cloudapi/v6/datacenters/%s/applicationloadbalancers/%s"
                    % (self.DC, self.ALB)] = (200, ok, json.dumps(alb).encode())
        fake.routes["/cloudapi/v6/targetgroups/tg-1"] = (200, ok, json.dumps(tg).encode())

    def synced_to_fake(self, interval=INTERVAL, **local):
        """A bench target, a FakeAPI serving one ALB and group for it, and sluice synced to it
        (polling every <interval> s)."""
        b = self.bench("b1")
        fake = FakeAPI()
        self.addCleanup(fake.stop)
        port = wskit.free_port()
        alb, tg = self.documents(port, b.port)
        self.serve(fake, alb, tg)
        cfg, admin = self.local(fake.port, self.DC, self.ALB, port, {}, interval, **local)
        return b, fake, port, alb, tg, cfg, self.run_synced(cfg, admin, port)

    def test_every_failure_keeps_the_last_good_config(self):
        b, fake, port, alb, tg, cfg, s = self.synced_to_fake()
        tunnel = WSClient.open(port, "/")
        self.addCleanup(tunnel.close)
        self.assertTrue(all(auth == "Bearer " + TOKEN for _, auth in fake.hits), fake.hits)
        alb_path = "/cloudapi/v6/datacenters/%s/applicationloadbalancers/%s" % (self.DC,
                                                                                self.ALB)
        cases = [
            ("401", (401, {}, b'{"httpStatus":401,"messages":[{"errorCode":"315",'
                              b'"message":"Unauthorized"}]}'), "HTTP 401: Unauthorized"),
            ("500", (500, {}, b"oops"), "HTTP 500"),
            ("429", (429, {"Retry-After": "2"}, b""), "HTTP 429"),
            ("malformed", (200, {}, b'{"properties": {'), "not a JSON object"),
        ]
        good = fake.routes[alb_path]
        for name, answer, says in cases:
            with self.subTest(failure=name):
                n_hits = len(fake.hits)
                fake.routes[alb_path] = answer
                wskit.wait_until(lambda: says in (self.sync_status(s)["lastError"] or ""),
                                 INTERVAL * 2 + PROMPT)
                if name == "429":
                    # Retry-After: 2 is honoured: no poll within 1.5 s of the 429
                    t0 = len(fake.hits)
                    time.sleep(1.5)
                    self.assertLessEqual(len(fake.hits) - t0, 0, "polled during Retry-After")
                with WSClient.open(port, "/") as c:
                    self.echo_ok(c)
                self.echo_ok(tunnel)
                self.assertEqual(self.status(s)["config"]["generation"], 1)
                self.assertGreater(len(fake.hits), n_hits)
                fake.routes[alb_path] = good
                wskit.wait_until(lambda: self.sync_status(s)["ok"], INTERVAL * 3 + PROMPT)
        # an API that does not answer: the poll times out (after 5 s: the minimum)
        fake.stall = 8
        wskit.wait_until(lambda: "timed out" in (self.sync_status(s)["lastError"] or "")
                         or "Timeout" in (self.sync_status(s)["lastError"] or ""), 12)
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        self.assertEqual(self.status(s)["config"]["generation"], 1)
        fake.stall = 0
        wskit.wait_until(lambda: self.sync_status(s)["ok"], 12 + PROMPT)
        # an answer without the forwarding rules (depth not honoured) is no "no rules"
        fake.routes[alb_path] = (200, {}, json.dumps({k: v for k, v in alb.items()
                                                      if k != "entities"}).encode())
        wskit.wait_until(lambda: "entities" in (self.sync_status(s)["lastError"] or ""),
                         INTERVAL * 2 + PROMPT)
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        self.assertEqual(self.status(s)["config"]["generation"], 1)
        fake.routes[alb_path] = good
        wskit.wait_until(lambda: self.sync_status(s)["ok"], INTERVAL * 3 + PROMPT)
        # each failure logged once (the 429 and the others are each a change of state)
        wskit.wait_until(lambda: s.stderr_text().count("answers again") >= len(cases) + 2,
                         PROMPT)
        log = s.stderr_text()
        self.assertEqual(log.count("HTTP 401"), 1, log)
        self.assertEqual(log.count("answers again"), len(cases) + 2, log)

        # a config that does not validate: refused, logged once, the old one serves
        alb_bad, tg_bad = self.documents(port, b.port, algorithm="ROUND-ROBIN")
        self.serve(fake, alb_bad, tg_bad)
        wskit.wait_until(lambda: "invalid" in (self.sync_status(s)["lastError"] or ""),
                         INTERVAL * 2 + PROMPT)
        time.sleep(2.5)  # more polls of the same bad document
        log = s.stderr_text()
        self.assertEqual(log.count("the API's config is invalid"), 1, log)
        self.assertIn("ROUND-ROBIN", log)
        with WSClient.open(port, "/") as c:
            self.echo_ok(c)
        self.assertEqual(self.status(s)["config"]["generation"], 1)
        # fixed: a change (a second target) is taken
        b2 = self.bench("b2")
        alb2, tg2 = self.documents(port, b.port)
        tg2["properties"]["targets"].append(dict(tg2["properties"]["targets"][0],
                                                 port=b2.port))
        self.serve(fake, alb2, tg2)
        self.wait_generation(s, 2)
        self.assertEqual(len(self.status(s)["targetGroups"][0]["targets"]), 2)
        self.assertNoToken(s)
        m = self.metrics(s)
        self.assertEqual(m["sluice_sync_up"].get(), 1)
        self.assertGreaterEqual(m["sluice_sync_failures_total"].get(), len(cases) + 3)
        self.assertEqual(m["sluice_sync_updates_total"].get(), 2)

    def test_unchanged_document_is_not_republished(self):
        """Two target groups answered in random order, metadata changing on every poll:
        nothing changed, nothing is republished."""
        b1, b2 = self.bench("b1"), self.bench("b2")
        fake = FakeAPI()
        self.addCleanup(fake.stop)
        fake.jitter = 0.05
        port, port2 = wskit.free_ports(2)
        alb, tg = self.documents(port, b1.port)
        rule2 = json.loads(json.dumps(alb["entities"]["forwardingrules"]["items"][0]))
        rule2["id"] = "fr-2"
        rule2["properties"]["listenerPort"] = port2
        rule2["properties"]["httpRules"][0]["targetGroup"] = "tg-2"
        alb["entities"]["forwardingrules"]["items"].append(rule2)
        tg2 = json.loads(json.dumps(tg))
        tg2["id"] = "tg-2"
        tg2["properties"]["targets"][0]["port"] = b2.port
        self.serve(fake, alb, tg)
        ok = {"Content-Type": "application/json"}
        stamp = [0]

        def serve_tg2():
            stamp[0] += 1
            tg2["metadata"] = {"etag": "e%d" % stamp[0]}
            fake.routes["/cloudapi/v6/targetgroups/tg-2"] = (200, ok, json.dumps(tg2).encode())
        serve_tg2()
        cfg, admin = self.local(fake.port, self.DC, self.ALB, port, {})
        s = self.run_synced(cfg, admin, port)
        n = self.sync_status(s)["polls"]
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            serve_tg2()
            time.sleep(0.2)
        sync = self.sync_status(s)
        self.assertGreaterEqual(sync["polls"] - n, 4, sync)
        self.assertEqual((sync["updates"], self.status(s)["config"]["generation"]), (1, 1), sync)
        self.assertEqual(s.stderr_text().count("reload: generation"), 0)

    def test_a_valid_config_that_cannot_be_applied_now_is_retried(self):
        """A new listener on a port in use: not "invalid", tried again until it works."""
        b, fake, port, alb, tg, cfg, s = self.synced_to_fake()
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port2 = taken.getsockname()[1]
        rule2 = json.loads(json.dumps(alb["entities"]["forwardingrules"]["items"][0]))
        rule2["id"] = "fr-2"
        rule2["properties"]["listenerPort"] = port2
        alb["entities"]["forwardingrules"]["items"].append(rule2)
        self.serve(fake, alb, tg)
        wskit.wait_until(lambda: "cannot be applied now" in
                         (self.sync_status(s)["lastError"] or ""), INTERVAL * 2 + PROMPT)
        self.assertEqual(self.status(s)["config"]["generation"], 1)
        taken.close()
        self.wait_generation(s, 2, INTERVAL * 4 + PROMPT)
        with WSClient.open(port2, "/") as c:
            self.echo_ok(c)

    def test_signals_while_starting(self):
        """SIGHUP during a slow first poll does not kill sluice; SIGTERM ends the start."""
        fake = FakeAPI()
        self.addCleanup(fake.stop)
        fake.stall = 3
        cfg, admin = self.local(fake.port, self.DC, self.ALB, wskit.free_port(), {})
        s = self.run_synced(cfg, admin, wskit.free_port(), wait=False)
        wskit.wait_until(lambda: len(fake.hits) > 0, PROMPT)
        s.signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertTrue(s.alive(), "SIGHUP while starting killed sluice")
        s.signal(signal.SIGTERM)
        self.assertEqual(s.wait(PROMPT), 0, s.stderr_text())
        self.assertIn("stopped while starting", s.stderr_text())

    def test_no_api_and_no_cache_starts_nothing(self):
        cfg, admin = self.local(wskit.free_port(), self.DC, self.ALB, wskit.free_port(), {})
        s = self.run_synced(cfg, admin, wskit.free_port(), wait=False)
        rc = s.wait(30)
        self.assertEqual(rc, 1, "exit status without API and cache (None: still running)")
        self.assertIn("nothing started", s.stderr_text())

    def test_sighup_polls_now(self):
        b, fake, port, alb, tg, cfg, s = self.synced_to_fake(interval=3600)
        n = len(fake.hits)
        s.signal(signal.SIGHUP)
        wskit.wait_until(lambda: len(fake.hits) > n, PROMPT)

    def test_sighup_takes_the_files_sluice_block_again(self):
        """In sync mode the file gives the sluice block: SIGHUP reads it again, so an edit
        there runs with the next document; a file that no longer parses changes nothing."""
        b, fake, port, alb, tg, cfg, s = self.synced_to_fake(interval=3600)
        gen = self.status(s)["config"]["generation"]
        with open(s.cfg_path, "w") as f:
            f.write("{ not json")
        n = len(fake.hits)
        s.signal(signal.SIGHUP)
        wskit.wait_until(lambda: len(fake.hits) > n, PROMPT)
        time.sleep(0.5)
        self.assertEqual(self.status(s)["config"]["generation"], gen)
        self.assertIn("its sluice block stays as it was", s.stderr_text())
        cfg["sluice"]["headerTimeout"] = 5000
        with open(s.cfg_path, "w") as f:
            json.dump(cfg, f)
        s.signal(signal.SIGHUP)
        self.wait_generation(s, gen + 1, PROMPT)
        with WSClient.open(port, "/") as c:
            c.send_text("still served")
            self.assertEqual(c.recv_message()[1], b"still served")

    def test_tls_rule_from_the_api_with_the_files_certificates(self):
        """A rule from the API with serverCertificates (Certificate Manager ids) terminates
        TLS with the files the local sluice block maps them to (relative to the file); a
        renewed certificate is served after SIGHUP even though the API's document did not
        change."""
        b = self.bench("b1")
        fake = FakeAPI()
        self.addCleanup(fake.stop)
        port = wskit.free_port()
        alb, tg = self.documents(port, b.port)
        rule = alb["entities"]["forwardingrules"]["items"][0]["properties"]
        rule["serverCertificates"] = ["0c7e6f9a-cert"]
        self.serve(fake, alb, tg)

        def make_cert(serial):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                            "/CN=localhost", "-set_serial", str(serial), "-keyout",
                            os.path.join(self.tmp, "k.pem"), "-out",
                            os.path.join(self.tmp, "c.pem")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           timeout=60)

        def served_serial():
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10)) as t:
                der = t.getpeercert(binary_form=True)
            out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                                 input=der, capture_output=True, check=True, timeout=30)
            return int(out.stdout.decode().strip().split("=")[1], 16)

        make_cert(1001)
        cfg, admin = self.local(fake.port, self.DC, self.ALB, port, {}, interval=3600,
                                certificates={"0c7e6f9a-cert": {"cert": "c.pem",
                                                                "key": "k.pem"}})
        s = self.run_synced(cfg, admin, port)
        self.assertEqual(served_serial(), 1001)
        gen = self.status(s)["config"]["generation"]
        make_cert(1002)
        s.signal(signal.SIGHUP)
        self.wait_generation(s, gen + 1, PROMPT)
        self.assertEqual(served_serial(), 1002)


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_sync"))
