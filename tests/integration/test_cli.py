#!/usr/bin/python3
"""End-to-end tests of the `sluice` command line (check and explain).

Run by meson as:
    /usr/bin/python3 tests/integration/test_cli.py <path-to-sluice-binary> <source-root>

Every test runs real sluice processes (10 s timeout each) from the source root, so diagnostics
name files as "conf/x.json"; temporary configs and requests go into a TemporaryDirectory.
Standard library only.
"""
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

SLUICE = None  # absolute path of the binary under test
SRC = None     # absolute path of the source root

TIMEOUT = 10

# file:line:col: JSON.path: message
DIAG_RE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<path>[^ ]+): "
                     r"(?P<msg>.+)$")

DEMO = "conf/demo.json"
GUIDE = "conf/ionos-guide.json"
BROKEN = "conf/broken.json"
PASTED = "conf/broken-pasted.json"
FIREFOX = "tests/data/firefox-upgrade.http"
CHROME = "tests/data/chrome-upgrade.http"
PLAIN = "tests/data/plain-get.http"

DOCS_URL = "https://docs.ionos.com/cloud/network-services/application-load-balancer"


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    def __repr__(self):
        return ("sluice %s\n--- exit %d\n--- stdout:\n%s--- stderr:\n%s"
                % (" ".join(self.args), self.rc, self.out, self.err))


def sluice(*args, stdin=None, cwd=None):
    """Runs sluice with <args>; <stdin> is bytes or str (sent as UTF-8), else /dev/null."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    p = subprocess.run([SLUICE, *args], input=stdin if stdin is not None else b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd or SRC,
                       timeout=TIMEOUT)
    return Result(list(args), p.returncode, p.stdout.decode("utf-8", "replace"),
                  p.stderr.decode("utf-8", "replace"))


def read_text(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


def pos_of(text, needle, start=0):
    """1-based (line, column) of the first <needle> in <text> at or after index <start>;
    columns count characters (code points), as sluice reports them."""
    i = text.find(needle, start)
    if i < 0:
        raise AssertionError("%r not found in the file" % needle)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def diags(out):
    """Diagnostic lines of <out> parsed with DIAG_RE (non-matching lines skipped)."""
    return [m.groupdict() for m in map(DIAG_RE.match, out.splitlines()) if m]


def parse_explain(out):
    """Rules as explain lists them: [{n, name, type, index, verdict, conds: [(bool, text)]}]."""
    rules = []
    for line in out.splitlines():
        m = re.match(r'^  (\d+)\. "([^"]*)" (FORWARD|STATIC|REDIRECT) \(httpRules\[(\d+)\]\): '
                     r'(.*)$', line)
        if m:
            rules.append({"n": int(m.group(1)), "name": m.group(2), "type": m.group(3),
                          "index": int(m.group(4)), "verdict": m.group(5), "conds": []})
            continue
        m = re.match(r"^ {7}(true |false) (.*)$", line)
        if m and rules:
            rules[-1]["conds"].append((m.group(1).strip() == "true", m.group(2)))
    return rules


def action_line(out):
    lines = [l for l in out.splitlines() if l.startswith("action: ")]
    return lines[0] if len(lines) == 1 else None


def request(path="/", headers=(("Host", "example.com"),), method="GET", eol="\r\n"):
    head = "%s %s HTTP/1.1%s" % (method, path, eol)
    for k, v in headers:
        head += "%s: %s%s" % (k, v, eol)
    return head + eol


def tg(id_, name, targets=(("10.0.0.5", 8080),)):
    g = {"properties": {"name": name, "algorithm": "ROUND_ROBIN", "protocol": "HTTP",
                        "targets": [{"ip": ip, "port": port} for ip, port in targets]}}
    if id_:
        g["id"] = id_
    return g


def frule(rules, ip="127.0.0.1", port=8080, name="fr"):
    p = {"name": name, "protocol": "HTTP", "listenerIp": ip, "listenerPort": port}
    if rules is not None:
        p["httpRules"] = rules
    return {"properties": p}


def static(name, status=200, message="ok", conditions=None):
    r = {"name": name, "type": "STATIC", "statusCode": status, "responseMessage": message}
    if conditions is not None:
        r["conditions"] = conditions
    return r


def forward(name, group, conditions=None):
    r = {"name": name, "type": "FORWARD", "targetGroup": group}
    if conditions is not None:
        r["conditions"] = conditions
    return r


class SluiceTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="sluice-cli-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name

    def write(self, name, content):
        """Writes <content> (str, or an object dumped as JSON) to the temp dir; returns the path."""
        if not isinstance(content, (str, bytes)):
            content = json.dumps(content, indent=2) + "\n"
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        return path

    def run_ok(self, *args, rc=0, stdin=None, cwd=None):
        r = sluice(*args, stdin=stdin, cwd=cwd)
        self.assertEqual(r.rc, rc, r)
        return r

    def rule(self, rules, name):
        found = [x for x in rules if x["name"] == name]
        self.assertEqual(len(found), 1, "rule %r in %r" % (name, rules))
        return found[0]


# ---- sluice check ---------------------------------------------------------------------------

class CheckShippedConfigs(SluiceTest):
    def test_demo_valid_no_warnings(self):
        r = self.run_ok("check", DEMO)
        self.assertEqual(r.out.splitlines(),
                         ["conf/demo.json: valid: 1 forwarding rule, 3 http rules, 1 target group; "
                          "0 warnings"], r)
        self.assertEqual(r.err, "")

    def test_demo_strict(self):
        r = self.run_ok("check", "--strict", DEMO)
        self.assertIn("valid", r.out)
        self.assertNotIn("warning:", r.out)

    def guide_warnings(self, r):
        lines = r.out.splitlines()
        warn = [l for l in lines if ": warning: " in l]
        self.assertEqual(len(warn), 2, r)
        for l in warn:
            self.assertRegex(l, r"^conf/ionos-guide\.json:\d+:\d+: [^ ]+: warning: .+")
        firefox = [l for l in warn if 'Connection EQUALS "upgrade"' in l]
        self.assertEqual(len(firefox), 1, r)
        self.assertIn("Firefox", firefox[0])
        self.assertIn("keep-alive, Upgrade", firefox[0])
        self.assertIn(".conditions[0]: warning:", firefox[0])
        ip = [l for l in warn if "1.2.3.4 is not among the ALB's ips" in l]
        self.assertEqual(len(ip), 1, r)
        self.assertIn("(1.1.1.1)", ip[0])
        self.assertIn("forwardingRules[0].properties.listenerIp: warning:", ip[0])
        return lines

    def test_guide_two_warnings(self):
        r = self.run_ok("check", GUIDE)
        lines = self.guide_warnings(r)
        self.assertRegex(lines[-1], r"^conf/ionos-guide\.json: valid: .*; 2 warnings$")
        self.assertEqual(len(lines), 3, r)

    def test_guide_strict_fails(self):
        r = self.run_ok("check", "--strict", GUIDE, rc=1)
        lines = self.guide_warnings(r)
        self.assertIn("2 warnings (errors with --strict)", lines[-1])

    def test_guide_warning_lines_point_at_their_path(self):
        text = read_text(GUIDE)
        r = self.run_ok("check", GUIDE)
        by_path = {d["path"]: d for d in diags(r.out)}
        ip = by_path["forwardingRules[0].properties.listenerIp"]
        self.assertEqual(int(ip["line"]), pos_of(text, '"listenerIp"')[0], r)
        cond = by_path["forwardingRules[0].properties.httpRules[0].conditions[0]"]
        first_cond = text.index("{", text.index('"conditions"'))
        self.assertEqual(int(cond["line"]), pos_of(text, "{", first_cond)[0], r)


class CheckBroken(SluiceTest):
    def test_every_error_line_is_file_line_col_path_message(self):
        r = self.run_ok("check", BROKEN, rc=1)
        lines = r.out.splitlines()
        self.assertGreater(len(lines), 3, r)
        m = re.match(r"^conf/broken\.json: invalid: (\d+) errors?$", lines[-1])
        self.assertTrue(m, r)
        for l in lines[:-1]:
            self.assertRegex(l, r"^conf/broken\.json:\d+:\d+: [^ ]+: .+")
        self.assertEqual(int(m.group(1)), len(lines) - 1, r)

    def test_error_positions_match_the_file(self):
        text = read_text(BROKEN)
        r = self.run_ok("check", BROKEN, rc=1)
        by_path = {d["path"]: d for d in diags(r.out)}
        fr = "forwardingRules[0].properties."
        rule0 = fr + "httpRules[0]."
        # path -> (token whose first character the error points at, words of the message)
        expect = {
            rule0 + "conditions[0].condition": ('"EQUAL"', ['"EQUAL" is not one of', "EQUALS"]),
            fr + "listenerPort": ("80800", ["80800 is out of range", "1 to 65535"]),
            fr + "httpRules[2].type": ('"static"', ['did you mean "STATIC"']),
            rule0 + "targetGroup": ('"websocket-targets"',
                                    ['"websocket-targets" matches no target group',
                                     'ids: "2f1c0f5e-7d5e-4d4e-9a43-5b2a8c1d9e01"',
                                     'names: "websocket-target-group"']),
            rule0 + "conditions[1].value": ('"10.0.0.1"', ["not a CIDR", '"10.0.0.1/32"']),
            rule0 + "conditions[2].value": ('"^/(chat|news"', ["PCRE2"]),
            fr + "httpRules[1].statusCode": ("305", ["305 is not a redirect status"]),
            "targetGroups[0].properties.targets[0].weight": ("300", ["300 is out of range"]),
            "targetGroups[0].properties.targets[1].port": ('"8080"', ["not a string"]),
        }
        for path, (token, words) in expect.items():
            with self.subTest(path=path):
                self.assertIn(path, by_path, r)
                d = by_path[path]
                self.assertEqual((int(d["line"]), int(d["col"])), pos_of(text, token),
                                 "%s: %s" % (path, d))
                for w in words:
                    self.assertIn(w, d["msg"])

    def test_missing_field_points_at_its_object(self):
        text = read_text(BROKEN)
        r = self.run_ok("check", BROKEN, rc=1)
        by_path = {d["path"]: d for d in diags(r.out)}
        d = by_path["forwardingRules[0].properties.httpRules[1].location"]
        self.assertIn("missing; required", d["msg"])
        brace = text.rindex("{", 0, text.index('"moved"'))
        self.assertEqual((int(d["line"]), int(d["col"])), pos_of(text, "{", brace))

    def test_pasted_from_docs(self):
        text = read_text(PASTED)
        r = self.run_ok("check", PASTED, rc=1)
        self.assertRegex(r.out, r"(?m)^conf/broken-pasted\.json: invalid: \d+ errors$")
        # typographic quotes
        typo = [l for l in r.out.splitlines() if "typographic quote" in l]
        self.assertTrue(typo, r)
        self.assertTrue(any("U+201C" in l and 'plain double quote (")' in l for l in typo), r)
        # the hint's column counts characters (the quotes are 3 bytes in UTF-8)
        name_val = pos_of(text, "\u201cwebsocket-rule")
        self.assertTrue(any(l.startswith("conf/broken-pasted.json:%d:%d: " % name_val)
                            for l in typo), r)
        # the unquoted IP, in the same run
        ip = [l for l in r.out.splitlines() if "unquoted IP address 1.2.3.4" in l]
        self.assertEqual(len(ip), 1, r)
        self.assertIn('write it as a string, "1.2.3.4"', ip[0])
        self.assertTrue(ip[0].startswith("conf/broken-pasted.json:%d:%d: " % pos_of(text,
                                                                                    "1.2.3.4")),
                        ip[0])
        # and the object left open
        self.assertRegex(r.out, r"object opened at 1:1 is not closed \(missing '\}'\)")


class CheckSingleErrors(SluiceTest):
    """One error of each main class in an otherwise valid temp config."""

    BASE = {
        "targetGroups": [tg("tg-1", "tg-one"), tg("tg-2", "tg-two", [("10.0.0.6", 8080)])],
        "forwardingRules": [frule([
            forward("one", "tg-one", [{"type": "PATH", "condition": "STARTS_WITH",
                                       "value": "/one"}]),
            forward("two", "tg-2"),
        ])],
    }

    def check_one(self, mutate, path, words, token=None):
        cfg = copy.deepcopy(self.BASE)
        mutate(cfg)
        self.write("t.json", cfg)
        with open(os.path.join(self.tmp, "t.json"), encoding="utf-8") as f:
            text = f.read()
        r = self.run_ok("check", "t.json", rc=1, cwd=self.tmp)
        ds = diags(r.out)
        self.assertEqual(len(ds), 1, r)
        self.assertEqual(ds[0]["file"], "t.json")
        self.assertEqual(ds[0]["path"], path, r)
        for w in words:
            self.assertIn(w, ds[0]["msg"])
        if token:
            self.assertEqual((int(ds[0]["line"]), int(ds[0]["col"])), pos_of(text, token), r)
        self.assertEqual(r.out.splitlines()[-1], "t.json: invalid: 1 error")

    def test_base_is_valid(self):
        self.write("t.json", self.BASE)
        r = self.run_ok("check", "t.json", cwd=self.tmp)
        self.assertIn("t.json: valid: 1 forwarding rule, 2 http rules, 2 target groups", r.out)

    def test_missing_field(self):
        self.check_one(lambda c: c["forwardingRules"][0]["properties"].pop("name"),
                       "forwardingRules[0].properties.name", ["missing; required"])

    def test_missing_target_field(self):
        self.check_one(lambda c: c["targetGroups"][1]["properties"]["targets"][0].pop("port"),
                       "targetGroups[1].properties.targets[0].port", ["missing"])

    def test_bad_enum(self):
        def m(c):
            c["targetGroups"][0]["properties"]["algorithm"] = "ROUNDROBIN"
        self.check_one(m, "targetGroups[0].properties.algorithm",
                       ['"ROUNDROBIN" is not one of', "ROUND_ROBIN", "LEAST_CONNECTION"],
                       '"ROUNDROBIN"')

    def test_bad_condition_enum(self):
        def m(c):
            c["forwardingRules"][0]["properties"]["httpRules"][0]["conditions"][0][
                "condition"] = "BEGINS_WITH"
        self.check_one(m, "forwardingRules[0].properties.httpRules[0].conditions[0].condition",
                       ['"BEGINS_WITH" is not one of', "STARTS_WITH"], '"BEGINS_WITH"')

    def test_out_of_range(self):
        def m(c):
            c["forwardingRules"][0]["properties"]["listenerPort"] = 70000
        self.check_one(m, "forwardingRules[0].properties.listenerPort",
                       ["70000 is out of range", "1 to 65535"], "70000")

    def test_target_port_out_of_range(self):
        def m(c):
            c["targetGroups"][0]["properties"]["targets"][0]["port"] = 0
        self.check_one(m, "targetGroups[0].properties.targets[0].port",
                       ["0 is out of range"])

    def test_bad_reference_lists_ids_and_names(self):
        def m(c):
            c["forwardingRules"][0]["properties"]["httpRules"][1]["targetGroup"] = "tg-three"
        self.check_one(m, "forwardingRules[0].properties.httpRules[1].targetGroup",
                       ['"tg-three" matches no target group id or name',
                        'ids: "tg-1", "tg-2"', 'names: "tg-one", "tg-two"'], '"tg-three"')

    def test_reference_without_target_groups(self):
        cfg = copy.deepcopy(self.BASE)
        del cfg["targetGroups"]
        cfg["forwardingRules"][0]["properties"]["httpRules"].pop()
        self.write("t.json", cfg)
        r = self.run_ok("check", "t.json", rc=1, cwd=self.tmp)
        ds = diags(r.out)
        self.assertEqual([d["path"] for d in ds],
                         ["forwardingRules[0].properties.httpRules[0].targetGroup"], r)
        self.assertIn("the file defines none", ds[0]["msg"])

    def test_not_json(self):
        self.write("t.json", '{ "forwardingRules": [ }\n')
        r = self.run_ok("check", "t.json", rc=1, cwd=self.tmp)
        self.assertRegex(r.out, r"(?m)^t\.json:1:\d+: ")
        self.assertIn("t.json: invalid:", r.out)


# ---- sluice explain -------------------------------------------------------------------------

class ExplainMap(SluiceTest):
    ARGS = ("--map", "1.2.3.4:80=127.0.0.1:8080", "--listener", "127.0.0.1:8080")

    def check_forward_wins(self, r, listener="127.0.0.1:8080"):
        rules = parse_explain(r.out)
        self.assertEqual(len(rules), 1, r)
        self.assertEqual(rules[0]["name"], "forward")
        self.assertEqual(rules[0]["verdict"], "MATCH, wins")
        self.assertTrue(all(ok for ok, _ in rules[0]["conds"]), r)
        self.assertIn("listener: %s\n" % listener, r.out)
        self.assertIn('forwarding rule: "websocket-rule" (forwardingRules[0]) on 1.2.3.4:80', r.out)
        self.assertTrue(action_line(r.out).startswith(
            'action: FORWARD (rule "forward") to target group "websocket-target-group"'), r)

    def test_unmapped_target(self):
        r = self.run_ok("explain", *self.ARGS, GUIDE, FIREFOX)
        self.check_forward_wins(r)
        targets = [l.strip() for l in r.out.splitlines() if l.startswith("  target ")]
        self.assertEqual(targets, ["target 10.20.30.100:8080 weight 10"], r)
        self.assertNotIn("configured as", r.out)

    def test_mapped_target(self):
        r = self.run_ok("explain", *self.ARGS, "--map", "10.20.30.100:8080=127.0.0.1:9001",
                        GUIDE, FIREFOX)
        self.check_forward_wins(r)
        targets = [l.strip() for l in r.out.splitlines() if l.startswith("  target ")]
        self.assertEqual(targets,
                         ["target 127.0.0.1:9001 weight 10 (configured as 10.20.30.100:8080)"], r)

    def test_ip_only_map(self):
        r = self.run_ok("explain", "--map", "1.2.3.4=127.0.0.1", "--listener", "127.0.0.1:80",
                        GUIDE, FIREFOX)
        self.check_forward_wins(r, "127.0.0.1:80")

    def test_without_map_nobody_listens_there(self):
        r = self.run_ok("explain", "--listener", "127.0.0.1:8080", GUIDE, FIREFOX, rc=1)
        self.assertIn("no forwarding rule listens on 127.0.0.1:8080", r.out)

    def test_bad_map_is_a_usage_error(self):
        for bad in ("bogus", "1.2.3.4", "1.2.3.4=", "=127.0.0.1", "a=b",
                    "1.2.3.4:80=127.0.0.1:99999"):
            for cmd in (("explain", "--map", bad, GUIDE, FIREFOX),
                        ("check", "--map", bad, GUIDE)):
                with self.subTest(cmd=cmd):
                    r = self.run_ok(*cmd, rc=2)
                    self.assertIn("--map %s: expected FROM=TO" % bad, r.err)
                    self.assertIn("usage:", r.err)
                    self.assertEqual(r.out, "")

    def test_map_needs_a_value(self):
        r = self.run_ok("explain", GUIDE, "--map", rc=2)
        self.assertIn("--map needs a value", r.err)


class ExplainDemo(SluiceTest):
    def check_websocket(self, r, connection_seen):
        rules = parse_explain(r.out)
        self.assertEqual([(x["n"], x["name"], x["type"]) for x in rules],
                         [(1, "docs", "REDIRECT"), (2, "websocket-only", "STATIC"),
                          (3, "websocket", "FORWARD")], r)
        ws = self.rule(rules, "websocket")
        self.assertEqual(ws["verdict"], "MATCH, wins")
        self.assertEqual(len(ws["conds"]), 2, r)
        self.assertTrue(all(ok for ok, _ in ws["conds"]), r)
        self.assertIn("[%s]" % connection_seen, ws["conds"][1][1])
        self.assertEqual(self.rule(rules, "docs")["verdict"], "no match")
        self.assertEqual(self.rule(rules, "websocket-only")["verdict"], "no match")
        self.assertIn(", WebSocket upgrade", r.out.splitlines()[0])
        self.assertTrue(action_line(r.out).startswith(
            'action: FORWARD (rule "websocket") to target group "websocket-target-group" '
            "(id tg-demo)"), r)
        self.assertIn("  target 127.0.0.1:9001 weight 10\n", r.out)
        self.assertIn("  target 127.0.0.1:9002 weight 10\n", r.out)

    def test_firefox(self):
        self.check_websocket(self.run_ok("explain", DEMO, FIREFOX),
                             "Connection: keep-alive, Upgrade")

    def test_chrome(self):
        self.check_websocket(self.run_ok("explain", DEMO, CHROME), "Connection: Upgrade")

    def test_stdin_same_as_file(self):
        for req in (FIREFOX, PLAIN):
            with self.subTest(req=req):
                with open(os.path.join(SRC, req), "rb") as f:
                    data = f.read()
                by_file = self.run_ok("explain", DEMO, req)
                implicit = self.run_ok("explain", DEMO, stdin=data)
                dash = self.run_ok("explain", DEMO, "-", stdin=data)
                self.assertEqual(implicit.out, by_file.out)
                self.assertEqual(dash.out, by_file.out)

    def test_plain_get_hits_static_426(self):
        r = self.run_ok("explain", DEMO, PLAIN)
        rules = parse_explain(r.out)
        st = self.rule(rules, "websocket-only")
        self.assertEqual(st["verdict"], "MATCH, wins")
        self.assertEqual(st["conds"], [(True, 'NOT HEADER "Upgrade" EXISTS   [no Upgrade header]')])
        self.assertEqual(self.rule(rules, "websocket")["verdict"], "no match")
        self.assertTrue(action_line(r.out).startswith(
            'action: STATIC (rule "websocket-only") 426, Content-Type: text/plain, body: '
            '"This listener serves WebSocket'), r)

    def test_docs_redirect_drops_query(self):
        r = self.run_ok("explain", DEMO, stdin=request("/docs?x=1"))
        rules = parse_explain(r.out)
        self.assertEqual(self.rule(rules, "docs")["verdict"], "MATCH, wins")
        self.assertEqual(self.rule(rules, "websocket-only")["verdict"],
                         "would match, but an earlier rule won")
        self.assertEqual(action_line(r.out),
                         'action: REDIRECT (rule "docs") 302, Location: ' + DOCS_URL, r)

    def test_normalised_path_hits_redirect(self):
        r = self.run_ok("explain", DEMO, stdin=request("/%64ocs"))
        self.assertEqual(self.rule(parse_explain(r.out), "docs")["verdict"], "MATCH, wins", r)

    def test_lf_line_endings(self):
        crlf = self.run_ok("explain", DEMO, stdin=request("/index.html"))
        lf = self.run_ok("explain", DEMO, stdin=request("/index.html", eol="\n"))
        lines = lf.out.splitlines()
        self.assertEqual(lines[0], "note: the request had LF line endings; read as CRLF")
        self.assertEqual("\n".join(lines[1:]) + "\n", crlf.out)
        self.assertNotIn("LF line endings", crlf.out)

    def test_lf_file_without_final_newline(self):
        self.write("r.http", "GET /docs HTTP/1.1\nHost: a")
        r = self.run_ok("explain", DEMO, os.path.join(self.tmp, "r.http"))
        self.assertIn("LF line endings", r.out)
        self.assertTrue(action_line(r.out).startswith('action: REDIRECT (rule "docs")'), r)

    def test_malformed_request_400(self):
        r = self.run_ok("explain", DEMO, rc=1,
                        stdin="GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n")
        self.assertIn("request: does not parse:", r.out)
        self.assertIn("would answer 400", r.out)
        self.assertIsNone(action_line(r.out))

    def test_empty_request_400(self):
        r = self.run_ok("explain", DEMO, rc=1, stdin=b"")
        self.assertIn("would answer 400", r.out)

    def test_huge_head_431(self):
        req = request("/", (("Host", "a"), ("X-Big", "a" * 200000)))
        r = self.run_ok("explain", DEMO, rc=1, stdin=req)
        self.assertIn("would answer 431", r.out)

    def test_listener_nobody_listens_on(self):
        for listener in ("127.0.0.1:9", "[::1]:8080"):
            with self.subTest(listener=listener):
                r = self.run_ok("explain", "--listener", listener, DEMO, PLAIN, rc=1)
                self.assertIn("listener: no forwarding rule listens on %s; sluice would not "
                              "accept the connection" % listener, r.out)
                self.assertIsNone(action_line(r.out))

    def test_bad_listener_and_source_are_usage_errors(self):
        for args in (("--listener", "127.0.0.1"), ("--listener", "127.0.0.1:0"),
                     ("--source", "10.0.0.0/8"), ("--source", "nope")):
            with self.subTest(args=args):
                r = self.run_ok("explain", *args, DEMO, PLAIN, rc=2)
                self.assertIn("%s %s: expected" % args, r.err)

    def test_request_file_missing(self):
        r = self.run_ok("explain", DEMO, "tests/data/no-such.http", rc=1)
        self.assertIn("tests/data/no-such.http", r.err)
        self.assertEqual(r.out, "")

    def test_invalid_config(self):
        r = self.run_ok("explain", BROKEN, PLAIN, rc=1)
        self.assertEqual(r.out, "")
        self.assertIn("see `sluice check`", r.err)


class ExplainTempConfigs(SluiceTest):
    def test_source_ip_v4_and_v6(self):
        cfg = {
            "targetGroups": [tg(None, "tg")],
            "forwardingRules": [frule([
                static("lan4", 200, "v4", [{"type": "SOURCE_IP", "value": "10.0.0.0/8"}]),
                static("lan6", 201, "v6", [{"type": "SOURCE_IP", "value": "2001:db8::/32"}]),
                forward("rest", "tg"),
            ])],
        }
        path = self.write("src.json", cfg)
        cases = {"10.1.2.3": "lan4", "::ffff:10.1.2.3": "lan4", "2001:db8::1": "lan6",
                 "2001:db9::1": "rest", "192.0.2.1": "rest"}
        for source, winner in cases.items():
            with self.subTest(source=source):
                r = self.run_ok("explain", "--source", source, path, stdin=request())
                self.assertIn(", from %s\n" % source, r.out)
                won = [x["name"] for x in parse_explain(r.out) if x["verdict"] == "MATCH, wins"]
                self.assertEqual(won, [winner], r)
                self.assertIn('(rule "%s")' % winner, action_line(r.out))
        r = self.run_ok("explain", "--source", "10.9.9.9", path, stdin=request())
        lan4 = self.rule(parse_explain(r.out), "lan4")
        self.assertEqual(lan4["conds"], [(True, "SOURCE_IP in 10.0.0.0/8   [client 10.9.9.9]")])
        r = self.run_ok("explain", path, stdin=request())
        self.assertIn("from 127.0.0.1 (default; set with --source)", r.out)

    def test_ionos_order_static_before_forward(self):
        cond = [{"type": "PATH", "condition": "STARTS_WITH", "value": "/"}]
        cfg = {
            "targetGroups": [tg(None, "tg")],
            "forwardingRules": [frule([forward("fwd-first", "tg", cond),
                                       static("static-second", 418, "teapot", cond)])],
        }
        path = self.write("order.json", cfg)
        r = self.run_ok("explain", path, stdin=request("/x"))
        rules = parse_explain(r.out)
        self.assertEqual([(x["n"], x["name"], x["index"], x["verdict"]) for x in rules],
                         [(1, "static-second", 1, "MATCH, wins"),
                          (2, "fwd-first", 0, "would match, but an earlier rule won")], r)
        self.assertEqual(action_line(r.out), 'action: STATIC (rule "static-second") 418, '
                                             'Content-Type: (none), body: "teapot"')
        # check warns that the file order is not the evaluation order
        c = self.run_ok("check", path)
        self.assertIn("IONOS evaluates every STATIC and REDIRECT rule before any FORWARD rule",
                      c.out)

    def test_no_rule_matches_503(self):
        cfg = {
            "targetGroups": [tg(None, "tg")],
            "forwardingRules": [frule([
                static("only-post", 200, "p", [{"type": "METHOD", "condition": "EQUALS",
                                                "value": "POST"}]),
                forward("only-api", "tg", [{"type": "PATH", "condition": "STARTS_WITH",
                                            "value": "/api/"}]),
            ])],
        }
        path = self.write("none.json", cfg)
        r = self.run_ok("explain", path, stdin=request("/web"))
        self.assertTrue(all(x["verdict"] == "no match" for x in parse_explain(r.out)), r)
        self.assertTrue(action_line(r.out).startswith(
            "action: no rule matches: sluice answers 503"), r)

    def test_no_http_rules_503(self):
        path = self.write("empty.json", {"forwardingRules": [frule(None)]})
        r = self.run_ok("explain", path, stdin=request())
        self.assertIn("http rules: none\n", r.out)
        self.assertTrue(action_line(r.out).startswith(
            "action: no rule matches: sluice answers 503"), r)

    def test_no_forwarding_rules(self):
        path = self.write("nofr.json", {"targetGroups": [tg(None, "tg")]})
        r = self.run_ok("explain", path, stdin=request(), rc=1)
        self.assertIn("the config has no forwarding rules", r.out)

    def test_host_only_redirect_keeps_path_and_query(self):
        cfg = {"forwardingRules": [frule([
            {"name": "move", "type": "REDIRECT", "location": "www.example.com"}])]}
        path = self.write("move.json", cfg)
        r = self.run_ok("explain", path, stdin=request("/a/b?q=1&r=2"))
        self.assertEqual(action_line(r.out), 'action: REDIRECT (rule "move") 301, Location: '
                                             "http://www.example.com/a/b?q=1&r=2")

    # ---- IPv6 formatting --------------------------------------------------------------------

    V6 = {
        "targetGroups": [tg(None, "tg", [("2001:db8::1", 8080), ("2001:db8::2", 8080)])],
        "forwardingRules": [frule([forward("fwd", "tg")], ip="::1")],
    }

    def test_v6_listener_and_targets(self):
        path = self.write("v6.json", self.V6)
        r = self.run_ok("explain", path, stdin=request())
        self.assertIn("listener: [::1]:8080 (the first forwarding rule's", r.out)
        self.assertIn("  target [2001:db8::1]:8080 weight 1\n", r.out)

    def test_v6_forwarding_rule_line_is_bracketed(self):
        path = self.write("v6.json", self.V6)
        r = self.run_ok("explain", path, stdin=request())
        self.assertIn('forwarding rule: "fr" (forwardingRules[0]) on [::1]:8080\n', r.out)

    def test_v6_configured_as_is_bracketed(self):
        path = self.write("v6.json", self.V6)
        r = self.run_ok("explain", "--map", "[2001:db8::2]:8080=[::1]:9000", path,
                        stdin=request())
        self.assertIn("  target [::1]:9000 weight 1 (configured as [2001:db8::2]:8080)\n", r.out)

    def test_v6_unmapped_uppercase_target_not_configured_as(self):
        cfg = copy.deepcopy(self.V6)
        cfg["targetGroups"][0]["properties"]["targets"][0]["ip"] = "2001:DB8::1"
        path = self.write("v6.json", cfg)
        r = self.run_ok("explain", path, stdin=request())
        line = [l for l in r.out.splitlines() if l.startswith("  target [2001:db8::1]:8080")]
        self.assertEqual(len(line), 1, r)
        self.assertNotIn("configured as", line[0])

    def test_v6_duplicate_target_is_bracketed(self):
        cfg = {"targetGroups": [tg(None, "tg", [("2001:db8::1", 80), ("2001:db8::1", 80)])]}
        path = self.write("dup.json", cfg)
        r = self.run_ok("check", path, rc=1)
        self.assertIn("duplicate target [2001:db8::1]:80", r.out)


# ---- command line ---------------------------------------------------------------------------

class CommandLine(SluiceTest):
    def test_unknown_command(self):
        r = self.run_ok("frobnicate", rc=2)
        self.assertIn('unknown command "frobnicate"', r.err)
        self.assertIn("usage:", r.err)

    def test_no_arguments(self):
        r = self.run_ok(rc=2)
        self.assertIn("usage:", r.err)

    def test_version(self):
        r = self.run_ok("--version")
        self.assertTrue(r.out.startswith("sluice "), r)
        self.assertEqual(len(r.out.splitlines()), 1)

    def test_help(self):
        r = self.run_ok("--help")
        self.assertIn("sluice check", r.out)
        self.assertIn("sluice explain", r.out)

    def test_missing_config(self):
        for cmd in ("check", "explain"):
            with self.subTest(cmd=cmd):
                r = self.run_ok(cmd, rc=2)
                self.assertIn("missing CONFIG", r.err)
                self.assertIn("usage:", r.err)

    def test_unknown_option_and_extra_arguments(self):
        for args in (("check", "--bogus", DEMO), ("check", "--listener", "127.0.0.1:80", DEMO),
                     ("check", "--source", "127.0.0.1", DEMO), ("explain", "--strict", DEMO),
                     ("check", DEMO, PLAIN), ("explain", DEMO, PLAIN, PLAIN)):
            with self.subTest(args=args):
                r = self.run_ok(*args, rc=2)
                self.assertIn("usage:", r.err)

    def test_nonexistent_config(self):
        r = self.run_ok("check", "conf/no-such.json", rc=1)
        self.assertIn("conf/no-such.json: cannot open: No such file or directory", r.out)
        self.assertIn("conf/no-such.json: invalid: 1 error", r.out)
        r = self.run_ok("explain", "conf/no-such.json", PLAIN, rc=1)
        self.assertIn("cannot open", r.err)


def main():
    global SLUICE, SRC
    if len(sys.argv) < 3:
        sys.stderr.write("usage: %s SLUICE_BINARY SOURCE_ROOT [unittest args]\n" % sys.argv[0])
        return 2
    SLUICE = os.path.abspath(sys.argv[1])
    SRC = os.path.abspath(sys.argv[2])
    if not os.access(SLUICE, os.X_OK):
        sys.stderr.write("%s: not an executable\n" % SLUICE)
        return 2
    prog = unittest.main(argv=[sys.argv[0], *sys.argv[3:]], verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
