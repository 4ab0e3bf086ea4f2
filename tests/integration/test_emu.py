#!/usr/bin/python3
"""End-to-end tests of `sluice emu`, the IONOS CloudAPI v6 emulator.

Run by meson as:
    python3 tests/integration/test_emu.py <path-to-sluice-binary> <source-root>

Every test starts real `sluice emu` processes on 127.0.0.1 (free ports), each with a state file
in its own TemporaryDirectory, and drives them over HTTP with http.client (curl for the IONOS
guide's calls as the README prints them). Every wait is bounded. Each emulator's stderr goes to a
file that is checked for sanitizer reports when the emulator stops, so the same file tests the
ASan build (give it build-emu-asan/sluice). Standard library only.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import urlsplit

SLUICE = None  # absolute path of the binary under test
SRC = None     # absolute path of the source root

TIMEOUT = 10
BASE = "/cloudapi/v6"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ETAG_RE = re.compile(r"^[0-9a-f]{32}$")
SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                          r"SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)|"
                          r"Sanitizer has encountered a fatal error")
META_KEYS = ["etag", "createdDate", "createdBy", "createdByUserId", "lastModifiedDate",
             "lastModifiedBy", "lastModifiedByUserId", "state"]

# The IONOS guide's bodies (../shared/seed/ionos-configure-websocket-support.txt), quotes made
# plain and braces closed.
GUIDE_ALB = {"name": "alb-websocket", "listenerLan": 1, "targetLan": 2, "ips": ["1.1.1.1"],
             "lbPrivateIps": ["10.20.30.40/24"]}
GUIDE_TG = {"name": "websocket-target-group", "algorithm": "ROUND_ROBIN", "protocol": "HTTP",
            "targets": [{"ip": "10.20.30.100", "port": 8080, "weight": 10,
                         "healthCheckEnabled": True}]}


def guide_rule(tg_id, name="websocket-rule", port=80, ip="1.1.1.1"):
    return {"name": name, "protocol": "HTTP", "listenerIp": ip, "listenerPort": port,
            "httpRules": [{"name": "forward", "type": "FORWARD", "targetGroup": tg_id}]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Resp:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def messages(self):
        return [m["message"] for m in (self.json or {}).get("messages", [])]

    def __repr__(self):
        return "HTTP %d %r\n%s" % (self.status, self.headers, self.raw.decode("utf-8", "replace"))


def rel(path):
    """A path or absolute href as the request target ("/targetgroups" -> under the base)."""
    if path.startswith("http://"):
        u = urlsplit(path)
        return u.path + ("?" + u.query if u.query else "")
    return path if path.startswith("/cloudapi") or not path.startswith("/") else BASE + path


class Emu:
    """A `sluice emu` process; its stderr in <state>.<port>.log."""

    def __init__(self, state, token=None, wrapper=(), ready_timeout=TIMEOUT, port=None):
        self.state, self.token = state, token
        for attempt in range(5):
            self.port = port or free_port()
            self.logpath = "%s.%d.log" % (state, self.port)
            args = [*wrapper, SLUICE, "emu", "--listen", "127.0.0.1:%d" % self.port,
                    "--state", state]
            if token is not None:
                args += ["--token", token]
            with open(self.logpath, "wb") as logf:
                self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=logf)
            if self.wait_ready(ready_timeout):
                return
            if "cannot listen" in self.log() and port is None and attempt < 4:
                self.p.wait(TIMEOUT)
                continue  # lost the race for the free port
            self.kill()
            raise AssertionError("sluice emu did not start:\n" + self.log())

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "emulator on http://" in self.log():
                return True
            if self.p.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def log(self):
        with open(self.logpath, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, raw=None, ctype="application/json",
                headers=None, auth=True, conn=None):
        h = {}
        if self.token is not None and auth:
            h["Authorization"] = "Bearer " + self.token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        if data is not None and ctype:
            h["Content-Type"] = ctype
        h.update(headers or {})
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            c.request(method, rel(path), body=data, headers=h)
            r = c.getresponse()
            return Resp(r.status, r.getheaders(), r.read())
        finally:
            if conn is None:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stop(self, sig=signal.SIGTERM):
        """Stops the process; returns its exit status. Fails on a sanitizer report."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("sluice emu did not stop on %s:\n%s" % (sig, self.log()))
        m = SANITIZER_RE.search(self.log())
        if m:
            raise AssertionError("sanitizer report in the emulator's stderr:\n" + self.log())
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(TIMEOUT)


class EmuTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="test_emu.")
        self.dir = self.tmp.name
        self.emus = []

    def tearDown(self):
        try:
            for e in self.emus:
                if e.p.poll() is None:
                    self.assertEqual(e.stop(), 0, e.log())
        finally:
            self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, state="state.json", **kw):
        e = Emu(self.path(state), **kw)
        self.emus.append(e)
        return e

    # -- writes that must succeed --
    def ok(self, r, status=202):
        self.assertEqual(r.status, status, r)
        return r.json

    def post_tg(self, e, props=None):
        return self.ok(e.request("POST", "/targetgroups", {"properties": props or GUIDE_TG}))

    def post_alb(self, e, dc="dc-1", props=None):
        return self.ok(e.request("POST", "/datacenters/%s/applicationloadbalancers" % dc,
                                 {"properties": props or GUIDE_ALB}))

    def post_rule(self, e, dc, alb, props):
        return self.ok(e.request("POST", "/datacenters/%s/applicationloadbalancers/%s/"
                                 "forwardingrules" % (dc, alb), {"properties": props}))

    def refused(self, r, status=422, code="200"):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        self.assertEqual(set(r.json), {"httpStatus", "messages"}, r)
        self.assertEqual(r.json["httpStatus"], status, r)
        self.assertTrue(r.json["messages"], r)
        for m in r.json["messages"]:
            self.assertEqual(set(m), {"errorCode", "message"}, r)
            self.assertEqual(m["errorCode"], code, r)
        return r.messages()

    def check_envelope(self, e, obj, type_, href_path):
        self.assertRegex(obj["id"], UUID_RE)
        self.assertEqual(obj["type"], type_)
        self.assertEqual(obj["href"], "http://127.0.0.1:%d%s%s" % (e.port, BASE, href_path))
        self.assertEqual(list(obj["metadata"]), META_KEYS)
        for k in ("createdDate", "lastModifiedDate"):
            self.assertRegex(obj["metadata"][k], ISO_RE)
        self.assertRegex(obj["metadata"]["etag"], ETAG_RE)
        self.assertRegex(obj["metadata"]["createdByUserId"], UUID_RE)
        self.assertEqual(obj["metadata"]["state"], "AVAILABLE")
        self.assertIsInstance(obj["properties"], dict)


# ---------------------------------------------------------------------------------------------

class Crud(EmuTest):
    def test_target_group_crud(self):
        e = self.start()
        r = e.request("POST", "/targetgroups", {"properties": GUIDE_TG})
        tg = self.ok(r)
        self.check_envelope(e, tg, "target-group", "/targetgroups/" + tg["id"])
        self.assertRegex(r.header("Location"), r"^http://127\.0\.0\.1:%d%s/requests/"
                         r"[0-9a-f-]{36}/status$" % (e.port, BASE))
        m = tg["metadata"]
        self.assertEqual(m["createdDate"], m["lastModifiedDate"])
        p = tg["properties"]
        # what was sent, plus the documented defaults
        self.assertEqual(p["targets"], [{"ip": "10.20.30.100", "port": 8080, "weight": 10,
                                         "healthCheckEnabled": True, "proxyProtocol": "none",
                                         "maintenanceEnabled": False}])
        self.assertEqual(p["healthCheck"], {"checkInterval": 2000, "retries": 3})
        self.assertNotIn("protocolVersion", p)  # no documented default: not invented
        self.assertEqual(e.get(tg["href"]).json, tg)

        # PATCH merges: one field changes, the others stay; etag and lastModifiedDate move
        time.sleep(0.01)
        r = e.request("PATCH", tg["href"], {"algorithm": "LEAST_CONNECTION",
                                            "targets": [{"ip": "10.0.0.9", "port": 81}]})
        t2 = self.ok(r)
        self.assertEqual(t2["id"], tg["id"])
        self.assertEqual(t2["properties"]["algorithm"], "LEAST_CONNECTION")
        self.assertEqual(t2["properties"]["name"], "websocket-target-group")
        self.assertEqual(t2["properties"]["targets"][0]["weight"], 1)
        self.assertNotEqual(t2["metadata"]["etag"], m["etag"])
        self.assertEqual(t2["metadata"]["createdDate"], m["createdDate"])
        self.assertGreater(t2["metadata"]["lastModifiedDate"], m["lastModifiedDate"])
        self.assertEqual(e.get(tg["href"]).json, t2)

        # PUT replaces: fields not sent are gone (defaults come back)
        r = e.request("PUT", tg["href"], {"properties": {
            "name": "replaced", "algorithm": "RANDOM", "protocol": "HTTP",
            "protocolVersion": "HTTP1", "healthCheck": {"checkTimeout": 500}}})
        t3 = self.ok(r)
        self.assertEqual(t3["properties"], {"name": "replaced", "algorithm": "RANDOM",
                                            "protocol": "HTTP", "protocolVersion": "HTTP1",
                                            "healthCheck": {"checkTimeout": 500,
                                                            "checkInterval": 2000,
                                                            "retries": 3}})
        self.assertNotEqual(t3["metadata"]["etag"], t2["metadata"]["etag"])
        self.assertGreater(t3["metadata"]["lastModifiedDate"], t2["metadata"]["lastModifiedDate"])
        self.assertEqual(t3["metadata"]["createdDate"], m["createdDate"])

        # PATCH with null removes a field
        t4 = self.ok(e.request("PATCH", tg["href"], {"protocolVersion": None}))
        self.assertNotIn("protocolVersion", t4["properties"])

        r = e.request("DELETE", tg["href"])
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.raw, b"")
        self.assertIn("/requests/", r.header("Location"))
        self.refused(e.get(tg["href"]), 404, "309")
        self.assertEqual(e.get("/targetgroups").json["items"], [])

    def test_alb_crud_and_delete_takes_its_rules(self):
        e = self.start()
        tg = self.post_tg(e)
        alb = self.post_alb(e, "dc-a")
        self.check_envelope(e, alb, "applicationloadbalancer",
                            "/datacenters/dc-a/applicationloadbalancers/" + alb["id"])
        self.assertEqual(alb["properties"], {**GUIDE_ALB, "centralLogging": False})
        self.assertEqual(alb["entities"]["forwardingrules"],
                         {"id": alb["id"] + "/forwardingrules", "type": "collection",
                          "href": alb["href"] + "/forwardingrules"})
        fr = self.post_rule(e, "dc-a", alb["id"], guide_rule(tg["id"]))

        a2 = self.ok(e.request("PATCH", alb["href"], {"name": "renamed", "ips": ["1.1.1.1",
                                                                                "2.2.2.2"]}))
        self.assertEqual(a2["properties"]["name"], "renamed")
        self.assertEqual(a2["properties"]["targetLan"], 2)
        self.assertEqual(a2["metadata"]["createdDate"], alb["metadata"]["createdDate"])
        self.assertNotEqual(a2["metadata"]["etag"], alb["metadata"]["etag"])
        a3 = self.ok(e.request("PUT", alb["href"], {"properties": {
            "name": "put", "listenerLan": 3, "targetLan": 4}}))
        self.assertEqual(a3["properties"], {"name": "put", "listenerLan": 3, "targetLan": 4,
                                            "centralLogging": False})
        # the rule survived the ALB's PUT
        self.assertEqual(e.get(fr["href"]).status, 200)

        r = e.request("DELETE", alb["href"])
        self.assertEqual(r.status, 202, r)
        self.refused(e.get(alb["href"]), 404, "309")
        self.refused(e.get(fr["href"]), 404, "309")
        self.refused(e.get(alb["href"] + "/forwardingrules"), 404, "309")
        # and the target group is free again
        self.assertEqual(e.request("DELETE", tg["href"]).status, 202)

    def test_forwarding_rule_crud(self):
        e = self.start()
        tg = self.post_tg(e)
        alb = self.post_alb(e, "dc-b")
        fr = self.post_rule(e, "dc-b", alb["id"], guide_rule(tg["id"]))
        self.check_envelope(e, fr, "forwarding-rule",
                            "/datacenters/dc-b/applicationloadbalancers/%s/forwardingrules/%s"
                            % (alb["id"], fr["id"]))
        self.assertEqual(fr["properties"]["clientTimeout"], 50000)
        self.assertEqual(e.get(fr["href"]).json, fr)

        f2 = self.ok(e.request("PATCH", fr["href"], {"listenerPort": 8080}))
        self.assertEqual(f2["properties"]["listenerPort"], 8080)
        self.assertEqual(f2["properties"]["httpRules"], fr["properties"]["httpRules"])
        self.assertGreater(f2["metadata"]["lastModifiedDate"], fr["metadata"]["lastModifiedDate"])

        rules = [{"name": "static", "type": "STATIC", "responseMessage": "no",
                  "conditions": [{"type": "PATH", "condition": "STARTS_WITH", "value": "/x"}]},
                 {"name": "redir", "type": "REDIRECT", "location": "www.ionos.com"},
                 {"name": "fwd", "type": "FORWARD", "targetGroup": tg["id"],
                  "conditions": [{"type": "SOURCE_IP", "condition": None,
                                  "value": "10.0.0.0/8"}]}]
        f3 = self.ok(e.request("PUT", fr["href"], {"properties": {
            "name": "r2", "protocol": "HTTP", "listenerIp": "1.1.1.1", "listenerPort": 81,
            "clientTimeout": 1000, "httpRules": rules}}))
        self.assertEqual(f3["properties"]["httpRules"], [
            {"name": "static", "type": "STATIC", "responseMessage": "no",
             "conditions": [{"type": "PATH", "condition": "STARTS_WITH", "value": "/x",
                             "negate": False}], "statusCode": 503},
            {"name": "redir", "type": "REDIRECT", "location": "www.ionos.com",
             "dropQuery": False, "statusCode": 301},
            {"name": "fwd", "type": "FORWARD", "targetGroup": tg["id"],
             "conditions": [{"type": "SOURCE_IP", "value": "10.0.0.0/8", "negate": False}]}])
        self.assertEqual(f3["properties"]["clientTimeout"], 1000)

        self.assertEqual(e.request("DELETE", fr["href"]).status, 202)
        self.refused(e.get(fr["href"]), 404, "309")
        self.assertEqual(e.get(alb["href"] + "/forwardingrules").json["items"], [])

    def test_any_datacenter_id_starts_empty(self):
        e = self.start()
        r = e.get("/datacenters/never-created/applicationloadbalancers")
        self.assertEqual(r.status, 200, r)
        href = "http://127.0.0.1:%d%s/datacenters/never-created/applicationloadbalancers" % (
            e.port, BASE)
        self.assertEqual(r.json, {"id": "never-created/applicationloadbalancers",
                                  "type": "collection", "href": href, "items": [],
                                  "offset": 0, "limit": 1000,
                                  "_links": {"self": href + "?offset=0&limit=1000"}})
        # ALBs in one data center are not in another
        self.post_alb(e, "dc-x")
        self.assertEqual(len(e.get("/datacenters/dc-x/applicationloadbalancers").json["items"]),
                         1)
        self.assertEqual(e.get("/datacenters/dc-y/applicationloadbalancers").json["items"], [])

    def test_href_follows_the_host_header(self):
        e = self.start()
        tg = self.ok(e.request("POST", "/targetgroups", {"properties": GUIDE_TG},
                               headers={"Host": "api.example.test:8443"}))
        self.assertEqual(tg["href"], "http://api.example.test:8443%s/targetgroups/%s"
                         % (BASE, tg["id"]))
        r = e.get("/targetgroups/" + tg["id"], headers={"Host": "bad host\x01"})
        self.assertEqual(r.json["href"], "http://127.0.0.1:%d%s/targetgroups/%s"
                         % (e.port, BASE, tg["id"]))

    def test_request_status(self):
        e = self.start()
        r = e.request("POST", "/targetgroups", {"properties": GUIDE_TG})
        tg = self.ok(r)
        loc = r.header("Location")
        s = e.get(loc)
        self.assertEqual(s.status, 200, s)
        rid = loc.split("/")[-2]
        self.assertRegex(rid, UUID_RE)
        self.assertEqual(s.json, {
            "id": rid, "type": "request-status", "href": loc,
            "metadata": {"status": "DONE", "message": "Request has been successfully executed",
                         "etag": s.json["metadata"]["etag"],
                         "targets": [{"target": {"id": tg["id"], "type": "target-group",
                                                 "href": tg["href"]}, "status": "DONE"}]}})
        self.assertRegex(s.json["metadata"]["etag"], ETAG_RE)
        # the request itself
        q = e.get(loc[:-len("/status")])
        self.assertEqual(q.status, 200, q)
        self.assertEqual(q.json["type"], "request")
        self.assertEqual(q.json["properties"], {"method": "POST",
                                                "url": "http://127.0.0.1:%d%s/targetgroups"
                                                % (e.port, BASE)})
        self.assertEqual(q.json["metadata"]["requestStatus"]["href"], loc)
        self.assertEqual(e.get(loc[:-len("/status")] + "?depth=1").json["metadata"]
                         ["requestStatus"]["metadata"]["status"], "DONE")
        # a DELETE is a request too; the list shows the newest first
        d = e.request("DELETE", tg["href"])
        ds = e.get(d.header("Location")).json
        self.assertEqual(ds["metadata"]["targets"][0]["target"]["id"], tg["id"])
        items = e.get("/requests").json["items"]
        self.assertEqual([i["id"] for i in items], [d.header("Location").split("/")[-2], rid])
        self.refused(e.get("/requests/00000000-0000-4000-8000-000000000001/status"), 404, "309")

    def test_unknown_fields_are_dropped_and_logged(self):
        e = self.start()
        props = json.loads(json.dumps(GUIDE_TG))
        props["colour"] = "blue"
        props["targets"][0]["helthCheckEnabled"] = False
        tg = self.post_tg(e, props)
        self.assertNotIn("colour", tg["properties"])
        self.assertNotIn("helthCheckEnabled", tg["properties"]["targets"][0])
        self.assertTrue(tg["properties"]["targets"][0]["healthCheckEnabled"])
        log = e.log()
        self.assertIn("ignored properties.colour", log)
        self.assertIn("ignored properties.targets[0].helthCheckEnabled", log)

    def test_etag_header_and_keep_alive(self):
        e = self.start()
        tg = self.post_tg(e)
        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=TIMEOUT)
        try:
            for _ in range(3):  # one connection, several requests
                r = e.get(tg["href"], conn=conn)
                self.assertEqual(r.header("ETag"), '"%s"' % tg["metadata"]["etag"])
            r = e.get(tg["href"] + "?depth=1", conn=conn)
            self.assertIsNone(r.header("ETag"))
            r = e.get(tg["href"] + "?pretty=false", conn=conn)
            self.assertNotIn(b"\n  ", r.raw)
            self.assertEqual(r.json, tg)
        finally:
            conn.close()


class Depth(EmuTest):
    def setUp(self):
        super().setUp()
        self.e = e = self.start()
        self.tg = self.post_tg(e)
        self.alb = self.post_alb(e, "dc-d")
        self.frs = [self.post_rule(e, "dc-d", self.alb["id"], guide_rule(self.tg["id"], "r%d" % i,
                                                                         80 + i))
                    for i in range(2)]

    def test_alb_depth(self):
        e, alb = self.e, self.alb
        for q in ("", "?depth=0"):
            ent = e.get(alb["href"] + q).json["entities"]["forwardingrules"]
            self.assertEqual(set(ent), {"id", "type", "href"})
        a1 = e.get(alb["href"] + "?depth=1").json
        self.assertEqual(a1["properties"], alb["properties"])
        self.assertEqual(a1["entities"]["forwardingrules"]["items"],
                         [{"id": f["id"], "type": "forwarding-rule", "href": f["href"]}
                          for f in self.frs])
        a2 = e.get(alb["href"] + "?depth=2").json
        self.assertEqual(a2["entities"]["forwardingrules"]["items"], self.frs)
        self.assertEqual(e.get(alb["href"] + "?depth=10").json, a2)

    def test_collection_depth(self):
        e = self.e
        coll = "/datacenters/dc-d/applicationloadbalancers"
        c0 = e.get(coll).json["items"]
        self.assertEqual(c0, [{"id": self.alb["id"], "type": "applicationloadbalancer",
                               "href": self.alb["href"]}])
        c1 = e.get(coll + "?depth=1").json["items"][0]
        self.assertEqual(c1["properties"], self.alb["properties"])
        self.assertEqual(set(c1["entities"]["forwardingrules"]), {"id", "type", "href"})
        c2 = e.get(coll + "?depth=2").json["items"][0]
        self.assertEqual([set(i) for i in c2["entities"]["forwardingrules"]["items"]],
                         [{"id", "type", "href"}] * 2)
        c3 = e.get(coll + "?depth=3").json["items"][0]
        self.assertEqual(c3["entities"]["forwardingrules"]["items"], self.frs)

        self.assertEqual(e.get("/targetgroups").json["items"],
                         [{"id": self.tg["id"], "type": "target-group", "href": self.tg["href"]}])
        self.assertEqual(e.get("/targetgroups?depth=1").json["items"], [self.tg])
        frc = self.alb["href"] + "/forwardingrules"
        self.assertEqual([set(i) for i in e.get(frc).json["items"]], [{"id", "type", "href"}] * 2)
        self.assertEqual(e.get(frc + "?depth=1").json["items"], self.frs)

    def test_depth_out_of_range(self):
        for q, msg in (("11", "[depth] 11 is out of range; allowed: 0 to 10"),
                       ("-1", "[depth] -1 is out of range; allowed: 0 to 10"),
                       ("two", '[depth] "two" is not an integer; allowed: 0 to 10')):
            self.assertEqual(self.refused(self.e.get(self.alb["href"] + "?depth=" + q)), [msg])


class Paging(EmuTest):
    def test_offset_limit_and_links(self):
        e = self.start()
        ids = [self.post_tg(e, {**GUIDE_TG, "name": "g%d" % i})["id"] for i in range(5)]
        href = "http://127.0.0.1:%d%s/targetgroups" % (e.port, BASE)
        r = e.get("/targetgroups").json
        self.assertEqual((r["offset"], r["limit"]), (0, 100))
        self.assertEqual(r["_links"], {"self": href + "?offset=0&limit=100"})
        self.assertEqual([i["id"] for i in r["items"]], ids)
        r = e.get("/targetgroups?offset=1&limit=2").json
        self.assertEqual([i["id"] for i in r["items"]], ids[1:3])
        self.assertEqual((r["offset"], r["limit"]), (1, 2))
        self.assertEqual(r["_links"], {"prev": href + "?offset=0&limit=2",
                                       "self": href + "?offset=1&limit=2",
                                       "next": href + "?offset=3&limit=2"})
        r = e.get("/targetgroups?offset=4&limit=2").json
        self.assertEqual([i["id"] for i in r["items"]], ids[4:])
        self.assertNotIn("next", r["_links"])
        self.assertEqual(e.get("/targetgroups?offset=9").json["items"], [])
        self.assertEqual(len(e.get("/targetgroups?limit=200").json["items"]), 5)

    def test_limits_follow_the_doc(self):
        e = self.start()
        # target groups: limit 1..200 (default 100); the ALB list: 1..10000 (default 1000)
        self.assertEqual(self.refused(e.get("/targetgroups?limit=201")),
                         ["[limit] 201 is out of range; allowed: 1 to 200"])
        self.refused(e.get("/targetgroups?limit=0"))
        self.refused(e.get("/targetgroups?offset=-1"))
        coll = "/datacenters/d/applicationloadbalancers"
        self.assertEqual(e.get(coll + "?limit=10000").status, 200)
        self.refused(e.get(coll + "?limit=10001"))
        # every bad parameter is named in one answer
        self.assertEqual(self.refused(e.get("/targetgroups?limit=500&depth=x")),
                         ['[depth] "x" is not an integer; allowed: 0 to 10',
                          "[limit] 500 is out of range; allowed: 1 to 200"])


class Errors(EmuTest):
    def test_404(self):
        e = self.start()
        for p in ("/cloudapi/v6/nope", "/other", "/cloudapi/v6", "/cloudapi/v6/datacenters/x",
                  "/cloudapi/v6/datacenters/x/applicationloadbalancers/y/flowlogs",
                  "/cloudapi/v6//targetgroups", "/cloudapi/v6x/targetgroups"):
            msgs = self.refused(e.get(p), 404, "309")
            self.assertIn("no such path", msgs[0])
        u = "00000000-0000-4000-8000-00000000abcd"
        for m in ("GET", "PUT", "PATCH", "DELETE"):
            self.refused(e.request(m, "/targetgroups/" + u, {"properties": GUIDE_TG}
                                   if m == "PUT" else {} if m == "PATCH" else None), 404, "309")
            self.refused(e.request(m, "/datacenters/d/applicationloadbalancers/" + u, {}
                                   if m in ("PUT", "PATCH") else None), 404, "309")
            self.refused(e.request(m, "/datacenters/d/applicationloadbalancers/%s/"
                                   "forwardingrules/%s" % (u, u), {} if m in ("PUT", "PATCH")
                                   else None), 404, "309")
        self.refused(e.request("POST", "/datacenters/d/applicationloadbalancers/%s/"
                               "forwardingrules" % u, {"properties": {}}), 404, "309")

    def test_405(self):
        e = self.start()
        tg = self.post_tg(e)
        for m, p, allow in (("DELETE", "/targetgroups", "GET, POST"),
                            ("PUT", "/datacenters/d/applicationloadbalancers", "GET, POST"),
                            ("POST", "/targetgroups/" + tg["id"], "GET, PUT, PATCH, DELETE"),
                            ("PUT", "/requests", "GET"),
                            ("OPTIONS", "/targetgroups", "GET, POST")):
            r = e.request(m, p)
            self.refused(r, 405, "101")
            self.assertEqual(r.header("Allow"), allow)

    def test_400_malformed_json(self):
        e = self.start()
        body = b'{\n  "properties": {\n    "name": tg,\n  }\n}'
        msgs = self.refused(e.request("POST", "/targetgroups", raw=body), 400, "100")
        self.assertTrue(any(m.startswith("malformed JSON at line 3, column 13") for m in msgs),
                        msgs)
        msgs = self.refused(e.request("POST", "/targetgroups",
                                      raw='{“properties”: {}}'.encode()), 400, "100")
        self.assertIn("typographic quote", msgs[0])
        self.refused(e.request("POST", "/targetgroups", raw=b""), 400, "100")
        self.refused(e.request("POST", "/targetgroups", raw=b'{"a": 1} x'), 400, "100")
        self.assertEqual(e.get("/targetgroups").json["items"], [])

    def raw(self, e, data):
        with socket.create_connection(("127.0.0.1", e.port), timeout=TIMEOUT) as s:
            s.sendall(data)
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    return out
                out += b

    def test_odd_requests(self):
        e = self.start()
        # a raw non-ASCII byte in the path: 400, and the emulator lives on
        r = self.raw(e, b"GET /cloudapi/v6/datacenters/d\xc3\xa9/applicationloadbalancers "
                     b"HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(r.startswith(b"HTTP/1.1 400 "), r)
        self.assertIn(b'"errorCode": "100"', r)
        # percent-encoded: an id like any other
        self.assertEqual(e.get("/datacenters/d%C3%A9/applicationloadbalancers").status, 200)
        # bytes that are not UTF-8, quoted back in a message
        self.assertEqual(self.refused(e.get("/targetgroups?depth=%C3%A9%C3"))[0],
                         '[depth] "???" is not an integer; allowed: 0 to 10')
        r = self.raw(e, b"POST /cloudapi/v6/targetgroups HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: t\xc3\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        self.assertTrue(r.startswith(b"HTTP/1.1 415 "), r)
        # HTTP/1.0 without Host: hrefs name the listen address
        r = self.raw(e, b"GET /cloudapi/v6/targetgroups HTTP/1.0\r\n\r\n")
        self.assertIn(b'"href": "http://127.0.0.1:%d/cloudapi/v6/targetgroups"' % e.port, r)
        self.refused(e.get("/targetgroups?pretty=maybe"))
        self.assertEqual(e.get("/targetgroups").status, 200)

    def test_415_not_json(self):
        e = self.start()
        for ct in ("text/plain", "application/x-www-form-urlencoded"):
            msgs = self.refused(e.request("POST", "/targetgroups", {"properties": GUIDE_TG},
                                          ctype=ct), 415, "102")
            self.assertIn(ct, msgs[0])
        # no Content-Type at all: read as JSON; parameters and +json are JSON too
        self.ok(e.request("POST", "/targetgroups", {"properties": GUIDE_TG}, ctype=None))
        self.ok(e.request("POST", "/targetgroups", {"properties": GUIDE_TG},
                          ctype="application/json; charset=utf-8"))
        self.ok(e.request("POST", "/targetgroups", {"properties": GUIDE_TG},
                          ctype="application/vnd.api+json"))

    def test_422_body_shapes(self):
        e = self.start()
        tg = self.post_tg(e)
        self.assertEqual(self.refused(e.request("POST", "/targetgroups", {"name": "x"})),
                         ["[properties] missing; required: an object with the target group's "
                          "properties"])
        self.refused(e.request("POST", "/targetgroups", [1, 2]))
        self.refused(e.request("PUT", tg["href"], {"properties": "x"}))
        msgs = self.refused(e.request("PATCH", tg["href"], {"properties": {"name": "x"}}))
        self.assertIn("PATCH takes the bare properties object", msgs[0])


class Validation(EmuTest):
    """The same validation as `sluice check`, one message per error, named by JSON path."""

    def setUp(self):
        super().setUp()
        self.e = self.start()
        self.tg = self.post_tg(self.e)
        self.alb = self.post_alb(self.e, "dc-v")
        self.frs = self.alb["href"] + "/forwardingrules"

    def state_bytes(self):
        with open(self.e.state, "rb") as f:
            return f.read()

    def test_bad_enum_missing_field_bad_ip_port(self):
        e = self.e
        before = self.state_bytes()
        props = {**GUIDE_TG, "algorithm": "ROUND-ROBIN", "protocol": None,
                 "targets": [{"ip": "10.0.0.300", "port": 70000}, {"ip": "10.0.0.1/24",
                                                                   "port": 0}]}
        self.assertEqual(self.refused(e.request("POST", "/targetgroups", {"properties": props})), [
            '[properties.algorithm] "ROUND-ROBIN" is not one of ROUND_ROBIN, LEAST_CONNECTION, '
            'RANDOM, SOURCE_IP',
            "[properties.protocol] missing; required: one of HTTP",
            '[properties.targets[0].ip] "10.0.0.300" is not an IPv4 or IPv6 address',
            "[properties.targets[0].port] 70000 is out of range; allowed: 1 to 65535",
            '[properties.targets[1].ip] "10.0.0.1/24" is not an IP address: write it without '
            'the /mask',
            "[properties.targets[1].port] 0 is out of range; allowed: 1 to 65535"])
        msgs = self.refused(e.request("POST", "/datacenters/dc-v/applicationloadbalancers",
                                      {"properties": {"listenerLan": 1, "targetLan": 2,
                                                      "ips": ["1.1.1"]}}))
        self.assertEqual(len(msgs), 2, msgs)
        self.assertTrue(msgs[0].startswith("[properties.name] missing; required"), msgs)
        self.assertEqual(msgs[1], '[properties.ips[0]] "1.1.1" is not an IPv4 or IPv6 address')
        msgs = self.refused(e.request("POST", self.frs, {"properties": {
            **guide_rule(self.tg["id"]), "listenerIp": "1.2.3", "listenerPort": 65536}}))
        self.assertEqual(msgs, ['[properties.listenerIp] "1.2.3" is not an IPv4 or IPv6 address',
                                "[properties.listenerPort] 65536 is out of range; allowed: 1 to "
                                "65535"])
        # the guide's unquoted listenerIp
        r = e.request("POST", self.frs, raw=b'{"properties": {"name": "r", "protocol": "HTTP", '
                      b'"listenerIp":1.2.3.4, "listenerPort": 80}}')
        self.assertIn("1.2.3.4", self.refused(r, 400, "100")[0])
        # PATCH: paths relative to the bare properties object
        self.assertEqual(self.refused(e.request("PATCH", self.tg["href"], {"algorithm": "X"})),
                         ['[algorithm] "X" is not one of ROUND_ROBIN, LEAST_CONNECTION, RANDOM, '
                          'SOURCE_IP'])
        self.assertTrue(self.refused(e.request("PATCH", self.alb["href"], {"name": None}))[0]
                        .startswith("[name] missing; required"))
        # nothing changed
        self.assertEqual(self.state_bytes(), before)
        self.assertEqual(e.get(self.tg["href"]).json, self.tg)

    def test_rule_conditions(self):
        rule = {"name": "f", "type": "FORWARD", "targetGroup": self.tg["id"],
                "conditions": [{"type": "HEADER", "condition": "EQUAL", "key": "Upgrade",
                                "value": "websocket"},
                               {"type": "SOURCE_IP", "condition": "EQUALS", "value": "10.0.0.0"}]}
        msgs = self.refused(self.e.request("POST", self.frs, {"properties": {
            **guide_rule(self.tg["id"]), "httpRules": [rule]}}))
        self.assertEqual(msgs[0], '[properties.httpRules[0].conditions[0].condition] "EQUAL" is '
                         'not one of EXISTS, CONTAINS, EQUALS, MATCHES, STARTS_WITH, ENDS_WITH')
        self.assertTrue(any(m.startswith("[properties.httpRules[0].conditions[1].condition] "
                                         "must be null") for m in msgs), msgs)

    def test_unknown_target_group(self):
        e = self.e
        u = "00000000-0000-4000-8000-0000000000ff"
        self.assertEqual(self.refused(e.request("POST", self.frs,
                                                {"properties": guide_rule(u)})),
                         ['[properties.httpRules[0].targetGroup] "%s" is not the id of a target '
                          'group (GET /cloudapi/v6/targetgroups lists them)' % u])
        # `sluice check` accepts a name; the API wants the id
        msgs = self.refused(e.request("POST", self.frs, {"properties": guide_rule(
            "websocket-target-group", ip="1.2.3.4")}))
        self.assertEqual(msgs, ['[properties.httpRules[0].targetGroup] "websocket-target-group" '
                                'is the name of target group %s; an http rule refers to a target '
                                'group by its id' % self.tg["id"]])
        self.assertNotIn("lint", e.log())  # refused writes are not linted (1.2.3.4 would be)
        fr = self.post_rule(e, "dc-v", self.alb["id"], guide_rule(self.tg["id"]))
        self.assertEqual(self.refused(e.request("PATCH", fr["href"], {"httpRules": [
            {"name": "x", "type": "FORWARD", "targetGroup": u}]})),
            ['[httpRules[0].targetGroup] "%s" is not the id of a target group (GET '
             '/cloudapi/v6/targetgroups lists them)' % u])

    def test_referenced_target_group(self):
        e = self.e
        fr = self.post_rule(e, "dc-v", self.alb["id"], guide_rule(self.tg["id"], "the-rule"))
        msgs = self.refused(e.request("DELETE", self.tg["href"]))
        self.assertEqual(len(msgs), 1, msgs)
        for part in (self.tg["id"], fr["id"], '"the-rule"', self.alb["id"], "dc-v",
                     "httpRules[0]"):
            self.assertIn(part, msgs[0])
        # a PATCH that breaks a group in use is refused, and the group stays as it was
        self.assertEqual(self.refused(e.request("PATCH", self.tg["href"], {"targets": [
            {"ip": "10.0.0.1", "port": 0}]})),
            ["[targets[0].port] 0 is out of range; allowed: 1 to 65535"])
        self.assertEqual(e.get(self.tg["href"]).json, self.tg)
        # once no rule uses it, it goes
        self.assertEqual(e.request("DELETE", fr["href"]).status, 202)
        self.assertEqual(e.request("DELETE", self.tg["href"]).status, 202)

    def test_lint_warnings_do_not_refuse(self):
        e = self.e
        # the guide's listenerIp 1.2.3.4 is not among the guide's ALB ips ["1.1.1.1"]
        fr = self.post_rule(e, "dc-v", self.alb["id"], guide_rule(self.tg["id"], ip="1.2.3.4"))
        self.assertEqual(fr["properties"]["listenerIp"], "1.2.3.4")
        self.assertIn("lint (not refused): [properties.listenerIp] 1.2.3.4 is not among the "
                      "ALB's ips", e.log())

    def test_websocket_pitfall_is_logged_not_refused(self):
        e = self.e
        hc = {**GUIDE_TG, "name": "ws-checked",
              "httpHealthCheck": {"path": "/healthz", "method": "GET", "matchType": "STATUS_CODE",
                                  "response": "200"}}
        tg = self.post_tg(e, hc)
        self.assertEqual(tg["properties"]["httpHealthCheck"],
                         {**hc["httpHealthCheck"], "regex": False, "negate": False})
        rule = guide_rule(tg["id"])
        rule["httpRules"][0]["conditions"] = [{"type": "HEADER", "condition": "EQUALS",
                                               "key": "Upgrade", "value": "websocket"}]
        self.post_rule(e, "dc-v", self.alb["id"], rule)
        self.assertRegex(e.log(), r"lint \(not refused\): \[targetgroups/%s: "
                         r"properties\.httpHealthCheck\] target group \"ws-checked\" has an "
                         r"HTTP health check" % tg["id"])

    def test_certificates_need_no_certificate_manager(self):
        fr = self.post_rule(self.e, "dc-v", self.alb["id"], {
            **guide_rule(self.tg["id"]), "listenerPort": 443,
            "serverCertificates": ["a1b2c3d4-e5f6-4789-8abc-def012345678"]})
        self.assertEqual(fr["properties"]["serverCertificates"],
                         ["a1b2c3d4-e5f6-4789-8abc-def012345678"])


class Auth(EmuTest):
    TOKEN = "s3cret-Token_value"

    def test_token_required(self):
        e = self.start(token=self.TOKEN)
        for auth in (None, "Bearer wrong", "Bearer " + self.TOKEN + "x", "Basic dXNlcjpwYXNz",
                     "Bearer"):
            h = {"Authorization": auth} if auth else {}
            for m, p in (("GET", "/targetgroups"), ("GET", "/nope"),
                         ("POST", "/targetgroups")):
                r = e.request(m, p, {"properties": GUIDE_TG} if m == "POST" else None,
                              auth=False, headers=h)
                self.refused(r, 401, "315")
                self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="sluice emu"')
        self.assertEqual(e.get("/targetgroups").status, 200)
        self.assertEqual(e.get("/targetgroups", auth=False,
                               headers={"Authorization": "bearer " + self.TOKEN}).status, 200)
        self.post_tg(e)
        self.assertEqual(len(e.get("/targetgroups").json["items"]), 1)
        self.assertEqual(e.stop(), 0)
        log = e.log()
        self.assertNotIn(self.TOKEN, log)
        self.assertIn("requests need Authorization: Bearer", log)

    def test_no_token_accepts_anything(self):
        e = self.start()
        self.assertIn("no --token: every request is accepted", e.log())
        for h in ({}, {"Authorization": "Bearer anything"}, {"Authorization": "Basic eDp5"}):
            self.assertEqual(e.get("/targetgroups", headers=h).status, 200)


class Persistence(EmuTest):
    HOST = {"Host": "emu.test"}  # hrefs independent of the port

    def snapshot(self, e, dc, alb):
        gets = ["/targetgroups?depth=1", "/datacenters/%s/applicationloadbalancers?depth=3" % dc,
                "/datacenters/%s/applicationloadbalancers/%s?depth=2" % (dc, alb),
                "/datacenters/%s/applicationloadbalancers/%s/forwardingrules?depth=1" % (dc, alb),
                "/requests?depth=1"]
        out = []
        for g in gets:
            r = e.get(g, headers=self.HOST)
            self.assertEqual(r.status, 200, r)
            out.append(r.json)
        return out

    def test_state_survives_restart(self):
        e = self.start()
        tg = self.post_tg(e)
        alb = self.post_alb(e, "dc-p")
        self.post_rule(e, "dc-p", alb["id"], guide_rule(tg["id"]))
        self.ok(e.request("PATCH", tg["href"], {"algorithm": "RANDOM"}))
        before = self.snapshot(e, "dc-p", alb["id"])
        self.assertEqual(e.stop(), 0)
        self.assertIn("emu: stopped", e.log())
        e2 = self.start()
        self.assertIn("1 target group, 1 application load balancer, 1 forwarding rule", e2.log())
        self.assertEqual(self.snapshot(e2, "dc-p", alb["id"]), before)
        # and the relations hold: the group is still in use by the rule
        self.refused(e2.request("DELETE", tg["href"]))
        self.ok(e2.request("PATCH", tg["href"], {"algorithm": "SOURCE_IP"}))

    def test_state_file_layout(self):
        e = self.start()
        with open(e.state) as f:
            self.assertEqual(json.load(f), {"format": "sluice-emu-state/1", "targetgroups": [],
                                            "datacenters": {}, "requests": []})
        tg = self.post_tg(e)
        alb = self.post_alb(e, "dc-s")
        fr = self.post_rule(e, "dc-s", alb["id"], guide_rule(tg["id"]))
        with open(e.state) as f:
            st = json.load(f)
        self.assertEqual(st["targetgroups"][0]["properties"], tg["properties"])
        a = st["datacenters"]["dc-s"]["applicationloadbalancers"][0]
        self.assertEqual((a["id"], a["metadata"]), (alb["id"], alb["metadata"]))
        self.assertEqual(a["forwardingrules"][0]["properties"], fr["properties"])
        self.assertEqual(len(st["requests"]), 3)
        self.assertFalse(os.path.exists(e.state + ".tmp"))
        # an emptied data center leaves the file
        self.assertEqual(e.request("DELETE", alb["href"]).status, 202)
        with open(e.state) as f:
            self.assertEqual(json.load(f)["datacenters"], {})

    def test_sigkill_during_a_burst_leaves_a_whole_file(self):
        for round_ in range(3):
            e = self.start("burst%d.json" % round_)
            stop = threading.Event()
            done = []

            def burst():
                try:
                    while not stop.is_set():
                        r = e.request("POST", "/targetgroups", {"properties": GUIDE_TG})
                        if r.status != 202:
                            break
                        done.append(r.json["id"])
                except OSError:
                    pass  # killed under us

            t = threading.Thread(target=burst)
            t.start()
            deadline = time.monotonic() + TIMEOUT
            while len(done) < 20 * (round_ + 1) and time.monotonic() < deadline:
                time.sleep(0.005)
            e.kill()
            stop.set()
            t.join(TIMEOUT)
            self.assertFalse(t.is_alive())
            with open(e.state) as f:
                st = json.load(f)  # never half-written
            ids = [g["id"] for g in st["targetgroups"]]
            # every answered write is in the file (the answer comes after the rename)
            self.assertEqual(ids[:len(done)], done)
            self.assertLessEqual(len(ids), len(done) + 1)
            e2 = self.start("burst%d.json" % round_)
            self.assertEqual([i["id"] for i in e2.get("/targetgroups?limit=200").json["items"]],
                             ids[:200])
            self.assertEqual(e2.stop(), 0)

    def test_corrupt_state_file(self):
        cases = [
            (b'{"format": "sluice-emu-state/1", "targetgroups": [\n  {"id": "x",}\n]}',
             "2:13"),
            (b'{"targetgroups": {}}', "targetgroups: must be an array"),
            (b'{"format": "something-else"}', "format"),
            (b"", "1:1"),
        ]
        for text, where in cases:
            path = self.path("bad.json")
            with open(path, "wb") as f:
                f.write(text)
            p = subprocess.run([SLUICE, "emu", "--listen", "127.0.0.1:%d" % free_port(),
                                "--state", path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 1, err)
            self.assertIn(path, err)
            self.assertIn(where, err)
            self.assertIsNone(SANITIZER_RE.search(err), err)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), text)  # never overwritten

    def test_state_file_that_cannot_be_written(self):
        path = self.path("no/such/dir/state.json")
        p = subprocess.run([SLUICE, "emu", "--listen", "127.0.0.1:%d" % free_port(),
                            "--state", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn(path, p.stderr.decode())

    def test_failed_save_changes_nothing(self):
        e = self.start()
        tg = self.post_tg(e)
        os.mkdir(e.state + ".tmp")  # the temp file cannot be created (even by root)
        try:
            for r in (e.request("POST", "/targetgroups", {"properties": GUIDE_TG}),
                      e.request("PATCH", tg["href"], {"name": "new"}),
                      e.request("DELETE", tg["href"])):
                msgs = self.refused(r, 500, "300")
                self.assertIn("not applied", msgs[0])
                self.assertIsNone(r.header("Location"))
            self.assertEqual(e.get("/targetgroups?depth=1").json["items"], [tg])
        finally:
            os.rmdir(e.state + ".tmp")
        self.ok(e.request("PATCH", tg["href"], {"name": "new"}))
        e.stop()
        e2 = self.start()
        self.assertEqual(e2.get("/targetgroups?depth=1").json["items"][0]["properties"]["name"],
                         "new")


# The IONOS guide's three calls as the README prints them (docs-emu.md): plain quotes, the URL
# pointed at the emulator, and the minimal fixes the guide's text needs.
GUIDE_CALLS = [
    """curl -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer ...'  http://127.0.0.1:9800/cloudapi/v6/datacenters/$DC/applicationloadbalancers -d'
{
  "properties": {
    "name": "alb-websocket",
    "listenerLan": 1,
    "targetLan": 2,
    "ips": ["1.1.1.1"],
    "lbPrivateIps": ["10.20.30.40/24"]
}
}'""",
    """curl -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer ...'  http://127.0.0.1:9800/cloudapi/v6/targetgroups -d'
{
  "properties": {
    "name": "websocket-target-group",
    "algorithm": "ROUND_ROBIN",
    "protocol": "HTTP",
    "targets": [
      {
        "ip": "10.20.30.100",
        "port": 8080,
        "weight": 10,
        "healthCheckEnabled": true
      }
    ]
}
}'""",
    """curl -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer ...'  http://127.0.0.1:9800/cloudapi/v6/datacenters/$DC/applicationloadbalancers/$ALB/forwardingrules -d'
{
  "properties": {
    "name": "websocket-rule",
    "protocol": "HTTP",
    "listenerIp": "1.2.3.4",
    "listenerPort": 80,
    "httpRules": [
      {
        "name": "forward",
        "type": "FORWARD",
        "targetGroup": "'$TG'"
      }
    ]
}
}'""",
]


class GuideCalls(EmuTest):
    def setUp(self):
        super().setUp()
        if not os.path.exists("/usr/bin/curl"):
            self.skipTest("/usr/bin/curl is not installed: the README's curl calls need it")

    def curl(self, e, cmd, env):
        p = subprocess.run(["bash", "-c", cmd.replace("127.0.0.1:9800", "127.0.0.1:%d"
                                                      % e.port)],
                           env={**os.environ, **env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_readme_calls_work(self):
        for doc in ("README.md", "docs-emu.md"):
            path = os.path.join(SRC, doc)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if "## The IONOS CloudAPI emulator" in text:
                    for cmd in GUIDE_CALLS:
                        self.assertIn(cmd, text, "%s no longer shows this call" % doc)
        e = self.start()
        env = {"DC": "0b1c2d3e-4f50-4172-8394-a5b6c7d8e9f0"}
        alb = self.curl(e, GUIDE_CALLS[0], env)
        self.assertEqual(alb["type"], "applicationloadbalancer")
        env["ALB"] = alb["id"]
        tg = self.curl(e, GUIDE_CALLS[1], env)
        self.assertEqual(tg["type"], "target-group")
        env["TG"] = tg["id"]
        fr = self.curl(e, GUIDE_CALLS[2], env)
        self.assertEqual(fr["type"], "forwarding-rule")
        self.assertEqual(fr["properties"]["httpRules"][0]["targetGroup"], tg["id"])
        a = e.get(alb["href"] + "?depth=2").json
        self.assertEqual(a["entities"]["forwardingrules"]["items"], [fr])
        # the guide as printed sends -H 'application/json', which curl drops (no header name):
        # the body then goes out as a form, and the API refuses it
        bad = GUIDE_CALLS[1].replace("-H 'Content-Type: application/json'",
                                     "-H 'application/json'")
        r = self.curl(e, bad, env)
        self.assertEqual(r["httpStatus"], 415)


class Valgrind(EmuTest):
    def test_short_session_is_clean(self):
        vg = shutil.which("valgrind")
        if not vg:
            self.skipTest("valgrind is not installed")
        with open(SLUICE, "rb") as f:
            if b"__asan_init" in f.read():
                self.skipTest("an ASan build: valgrind runs on the plain build")
        e = Emu(self.path("vg.json"), token="t0k",
                wrapper=(vg, "-q", "--leak-check=full", "--error-exitcode=99"),
                ready_timeout=60)
        self.emus.append(e)
        tg = self.post_tg(e)
        alb = self.post_alb(e, "dc-vg")
        fr = self.post_rule(e, "dc-vg", alb["id"], guide_rule(tg["id"]))
        self.ok(e.request("PATCH", fr["href"], {"listenerPort": 81}))
        self.ok(e.request("PUT", tg["href"], {"properties": {**GUIDE_TG, "name": "n"}}))
        self.assertEqual(e.get(alb["href"] + "?depth=2").status, 200)
        self.assertEqual(e.get("/requests?depth=1").status, 200)
        self.refused(e.request("POST", "/targetgroups", {"properties": {"name": "x"}}))
        self.refused(e.request("POST", "/targetgroups", raw=b"{x"), 400, "100")
        self.refused(e.get("/nope"), 404, "309")
        self.refused(e.get("/targetgroups", auth=False), 401, "315")
        self.refused(e.request("DELETE", tg["href"]))
        self.assertEqual(e.request("DELETE", alb["href"]).status, 202)
        rc = e.stop()
        self.assertEqual(rc, 0, e.log())


def main():
    global SLUICE, SRC
    if len(sys.argv) < 3:
        sys.stderr.write("usage: %s SLUICE SOURCE_ROOT [unittest args]\n" % sys.argv[0])
        return 2
    SLUICE = os.path.abspath(sys.argv[1])
    SRC = os.path.abspath(sys.argv[2])
    t0 = time.monotonic()
    prog = unittest.main(argv=[sys.argv[0], *sys.argv[3:]], verbosity=2, exit=False)
    sys.stderr.write("test_emu: %.1f s\n" % (time.monotonic() - t0))
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
