#!/usr/bin/python3
"""End-to-end tests of sluice's TLS termination (forwarding rules with serverCertificates):
certificates checked at load, HTTPS forwarding, wss tunnels, SNI, ALPN, protocol versions,
session resumption, OCSP stapling, bad TLS input, PROXY v2 SSL TLVs, SIGHUP reloads of the
certificates and SIGTERM with wss tunnels open.

Run by meson as:
    /usr/bin/python3 tests/integration/test_tls.py SLUICE SLUICE_BENCH SOURCE_ROOT [unittest args]
One class or test: append its name, e.g. Sni or Reload.test_renewed_certificate.

Every certificate is made at test time by the `openssl` program (tlskit.PKI: a test CA, leaf
certificates with any dates and serials, encrypted keys, an OCSP response). The TLS clients are
Python's ssl module and `openssl s_client`, implementations we did not write; WebSocket clients
are wskit.WSClient on an SSL socket and python3-websockets. The harness (temp dirs, processes,
diagnostics on failure, sanitizer reports in sluice's stderr failing the test) is
test_proxy.ProxyTest. Configs are written in a conf/ directory while sluice runs in the temp
dir above it, so relative certificate names must resolve against the config file's directory.
"""
import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import promparse  # noqa: E402
import test_proxy  # noqa: E402
import tlskit  # noqa: E402
import wskit  # noqa: E402
from backends import pattern  # noqa: E402
from test_proxy import PROMPT, ProxyTest  # noqa: E402
from wskit import (OP_BINARY, OP_TEXT, WSClient, config, forward, group,  # noqa: E402
                   read_response, request_bytes, target)

HEADER_TIMEOUT = 1500  # ms: sluice.headerTimeout where a test waits for it

# The certificates every test may use, made once (setUpModule) in a temp dir.
PKI = None
CERTS = {}  # name -> (cert path, key path)


def setUpModule():
    global PKI
    if not tlskit.OPENSSL:
        # an error, not a skip: a machine without it would otherwise pass with nothing tested
        raise RuntimeError("no `openssl` program: it makes the test certificates (Debian "
                           "package openssl)")
    d = os.path.join(_module_tmp(), "pki")
    os.makedirs(d)
    PKI = tlskit.PKI(d)
    CERTS["a"] = PKI.leaf("a", "a.test", ["a.test", "www.a.test"])
    CERTS["a2"] = PKI.leaf("a2", "a.test", ["a.test", "www.a.test"])  # renewed: new serial
    CERTS["wild"] = PKI.leaf("wild", "wild", ["*.wild.test"])
    CERTS["b"] = PKI.leaf("b", "b.test", ["b.test"])
    CERTS["bw"] = PKI.leaf("bw", "bw.test", ["b.test", "*.wild.test", "bw.test"])
    CERTS["cn"] = PKI.leaf("cn", "cn-only.test")  # no SAN: the CN is the name
    CERTS["self"] = PKI.self_signed("self", "self.test", ["self.test"])
    CERTS["expired"] = PKI.leaf("expired", "a.test", ["a.test"], start="20200101000000Z",
                                end="20200102000000Z")
    CERTS["soon"] = PKI.leaf("soon", "a.test", ["a.test"], days=3)
    CERTS["rsa"] = PKI.leaf("rsa", "rsa.test", ["rsa.test"], key=PKI.key("rsa-key", "rsa"))
    CERTS["ocsp-a"] = PKI.ocsp(CERTS["a"][0], "a")
    CERTS["ocsp-b"] = PKI.ocsp(CERTS["b"][0], "b")
    CERTS["enc-pkcs8"] = PKI.encrypted_key("enc-pkcs8")
    CERTS["enc-trad"] = PKI.encrypted_key("enc-trad", traditional=True)
    CERTS["other-key"] = PKI.key("other")
    inter = tlskit.PKI(os.path.join(d, "inter"), issuer=PKI, cn="sluice test intermediate")
    CERTS["chained"] = inter.leaf("chained", "chained.test", ["chained.test"])
    CERTS["inter-ca"] = inter.ca


_TMP = []


def _module_tmp():
    import tempfile
    if not _TMP:
        if os.environ.get("SLUICE_IT_KEEP"):
            _TMP.append(tempfile.mkdtemp(prefix="sluice-tls-pki-"))
        else:
            t = tempfile.TemporaryDirectory(prefix="sluice-tls-pki-")
            _TMP.append(t.name)
            _TMP.append(t)  # keeps it alive until the module ends
    return _TMP[0]


def tearDownModule():
    for t in _TMP[1:]:
        t.cleanup()


def serial_of(cert):
    return tlskit.serial(cert)


DIAG = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.*)$")


def diags(text):
    """[dict(file, line, col, path, msg)] of `sluice check` output lines."""
    out = []
    for line in text.splitlines():
        m = DIAG.match(line)
        if m:
            d = m.groupdict()
            d["line"], d["col"] = int(d["line"]), int(d["col"])
            out.append(d)
    return out


class TlsTest(ProxyTest):
    """ProxyTest with certificates in a conf/ directory beside the config files, an admin
    endpoint, /metrics and SIGHUP reloads."""

    def setUp(self):
        super().setUp()
        self.conf = os.path.join(self.tmp, "conf")
        os.makedirs(self.conf)

    # files

    def install(self, src, name=None):
        """Copies <src> into conf/ (as <name>); returns the relative name for the config."""
        name = name or os.path.basename(src)
        tmp = os.path.join(self.conf, name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, os.path.join(self.conf, name))  # atomic: a reload sees old or new
        return name

    def write(self, name, data):
        path = os.path.join(self.conf, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        return name

    def entry(self, cert, prefix=None, **extra):
        """A sluice.certificates entry for CERTS[<cert>], its files copied into conf/ under
        names of their own (<prefix>.pem, <prefix>.key)."""
        c, k = CERTS[cert]
        prefix = prefix or cert
        e = {"cert": self.install(c, prefix + ".pem"), "key": self.install(k, prefix + ".key")}
        e.update(extra)
        return e

    def tls_config(self, port, rules, groups, certs, order=None, **local):
        """config() with TLS on its forwarding rule: sluice.certificates <certs> (id -> entry),
        serverCertificates <order> (default: the ids in <certs>' order)."""
        cfg = config(port, rules, groups, **local)
        cfg["forwardingRules"][0]["properties"]["serverCertificates"] = \
            list(order if order is not None else certs)
        cfg["sluice"]["certificates"] = certs
        return cfg

    @staticmethod
    def add_plain_twin(cfg, port):
        """Adds to <cfg> a copy of its TLS forwarding rule without TLS, listening on <port>."""
        plain = json.loads(json.dumps(cfg["forwardingRules"][0]))
        plain["id"] = "fr-plain"
        plain["properties"]["name"] = "plain"
        plain["properties"]["listenerPort"] = port
        del plain["properties"]["serverCertificates"]
        cfg["forwardingRules"].append(plain)

    # processes

    def sluice(self, cfg, args=(), name=None, wait=True, preexec_fn=None, admin=True):
        """Writes <cfg> into conf/ and runs `sluice run` on it from the temp dir above, with an
        admin endpoint (s.admin) unless <admin> is false."""
        self.n_configs += 1
        name = name or "sluice%d" % self.n_configs
        if admin:
            taken = {fr["properties"]["listenerPort"] for fr in cfg["forwardingRules"]}
            a = wskit.free_port()
            while a in taken:
                a = wskit.free_port()
            cfg["sluice"]["admin"] = "127.0.0.1:%d" % a
        path = os.path.join(self.conf, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        p = wskit.Proc(name, [SLUICE(), "run", path, *args], self.tmp, cwd=self.tmp,
                       preexec_fn=preexec_fn)
        p.port = cfg["forwardingRules"][0]["properties"]["listenerPort"]
        p.cfg_path = path
        p.admin = a if admin else None
        self.procs.append(p)
        self.sluices.append(p)
        if wait:
            try:
                p.wait_port(p.port)
                if admin:
                    p.wait_port(a)
            except wskit.HarnessError as e:
                self.fail(str(e))
        return p

    def simple_tls(self, backend_port, certs=None, order=None, proxy=None, **local):
        """sluice forwarding everything over TLS to one target; certificate "cert-a" (a.test)
        unless <certs> is given."""
        port = wskit.free_port()
        certs = certs if certs is not None else {"cert-a": self.entry("a")}
        cfg = self.tls_config(port, [forward("tg-1")],
                              [group("tg-1", [target(backend_port, proxy=proxy)])], certs,
                              order, **local)
        return self.sluice(cfg)

    def check(self, cfg, args=(), name="check"):
        """Writes <cfg> into conf/ and runs `sluice check` on it from "/" (so that relative
        file names only resolve against the config's directory). Returns (exit status, output,
        config text, config path)."""
        path = os.path.join(self.conf, name + ".json")
        text = json.dumps(cfg, indent=2)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([SLUICE(), "check", *args, path], cwd="/", capture_output=True,
                           text=True, timeout=30)
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(marker, p.stderr, "sluice check: %s report:\n%s"
                             % (marker, p.stderr))
        return p.returncode, p.stdout + p.stderr, text, path

    # admin

    def metrics(self, s):
        r = wskit.http(s.admin, path="/metrics")
        self.assertEqual(r.status, 200, r)
        try:
            return promparse.parse(r.body.decode("utf-8"))
        except ValueError as e:
            self.fail("/metrics is not valid Prometheus text: %s\n%s" % (e, r.body.decode()))

    def metric(self, s, family, **labels):
        m = self.metrics(s)
        self.assertIn(family, m, "no %s in /metrics" % family)
        return m[family].get(**labels)

    def wait_metric(self, s, family, value, timeout=PROMPT, **labels):
        """Waits until <family>{labels} is <value>; asserts it is."""
        wskit.wait_until(lambda: self.metric(s, family, **labels) >= value, timeout)
        got = self.metric(s, family, **labels)
        self.assertEqual(got, value, "%s%r" % (family, labels))

    def tls_errors(self, s):
        """{cause: count} of sluice_tls_handshake_errors_total."""
        fam = self.metrics(s)["sluice_tls_handshake_errors_total"]
        return {dict(k)["cause"]: v for k, v in fam.select().items()}

    def settle(self, s):
        """The handshake errors before a test's own bad input: the baseline of a test that
        counts errors. The harness's probe of the TLS port (wait_port: a connect and a close,
        not one byte) is a port probe, which sluice neither counts nor logs: checked here."""
        base = self.tls_errors(s)
        self.assertEqual(base, {k: 0 for k in base}, "a bare connect and close was counted")
        return base

    def wait_errors(self, s, base, want, timeout=PROMPT):
        """Waits until the handshake errors grew by <want> ({cause: n}) over <base>; asserts
        they grew by exactly that (every other cause unchanged)."""
        def delta():
            now = self.tls_errors(s)
            return {k: now[k] - base.get(k, 0) for k in now if now[k] != base.get(k, 0)}
        wskit.wait_until(lambda: sum(delta().values()) >= sum(want.values()), timeout)
        self.assertEqual(delta(), want, "handshake errors by cause, grown since the start")

    def generation(self, s):
        r = wskit.http(s.admin, path="/status")
        self.assertEqual(r.status, 200, r)
        return json.loads(r.body)["config"]["generation"]

    def reload(self, s, cfg=None, refused=False):
        """Rewrites <s>'s config (if <cfg>), sends SIGHUP and waits until the new generation is
        served, or with <refused>, until stderr says the reload was refused (and checks the
        generation stayed)."""
        before = self.generation(s)
        if cfg is not None:
            with open(s.cfg_path, "w") as f:
                json.dump(cfg, f, indent=2)
        n = s.stderr_text().count("refused")
        s.signal(signal.SIGHUP)
        if refused:
            ok = wskit.wait_until(lambda: s.stderr_text().count("refused") > n, PROMPT)
            self.assertTrue(ok, "no \"refused\" in stderr after SIGHUP:\n" + s.stderr_text())
            self.assertEqual(self.generation(s), before, "the reload was not refused")
        else:
            ok = wskit.wait_until(lambda: self.generation(s) == before + 1, PROMPT)
            self.assertTrue(ok, "generation still %d after SIGHUP:\n%s"
                            % (before, s.stderr_text()))
            time.sleep(0.1)  # workers take it on their next loop turn

    def log_lines(self, s, needle):
        return [line for line in s.stderr_text().splitlines() if needle in line]

    def logged(self, s, needle):
        """The lines of <s>'s stderr with <needle>, once there is one: sluice's log lines are
        written by its logger thread, so a counter can be seen before its line is."""
        wskit.wait_until(lambda: self.log_lines(s, needle), PROMPT)
        return self.log_lines(s, needle)

    # clients

    def ca_ctx(self, version=None, alpn=("http/1.1",)):
        return tlskit.client_ctx(PKI.ca, version, alpn)

    def peer_is(self, sock, cert, msg=""):
        """Asserts that <sock>'s peer presented CERTS[<cert>] (by its DER bytes)."""
        got = sock.getpeercert(binary_form=True)
        want = tlskit.der(CERTS[cert][0])
        if got != want:
            names = [n for n in CERTS if isinstance(CERTS[n], tuple)
                     and tlskit.der(CERTS[n][0]) == got]
            self.fail("%sserved %s instead of %r" % (msg + ": " if msg else "",
                                                      names or "an unknown certificate", cert))


def SLUICE():
    return test_proxy.SLUICE


def tls_echo(c, opcode, payload, timeout=60):
    """wskit.WSClient.echo for a WSClient on an SSL socket and a message of any size: sends and
    reads in one thread with non-blocking I/O (an SSL object must not be read and written from
    two threads at once), then returns the next message."""
    frame = wskit.encode_frame(opcode, payload)
    s = c.conn.sock
    view = memoryview(frame)
    pos = 0
    deadline = time.monotonic() + timeout
    s.setblocking(False)
    try:
        while pos < len(view):
            moved = False
            try:
                pos += s.send(view[pos:pos + 262144])
                moved = True
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
            while True:
                try:
                    data = s.recv(1 << 20)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                if not data:
                    raise wskit.ProtocolError("EOF while sending %d bytes" % len(frame))
                c.parser.feed(data)
                moved = True
            if not moved:
                if time.monotonic() > deadline:
                    raise socket.timeout("sending %d bytes: timed out" % len(frame))
                select.select([s], [s], [], 0.05)
    finally:
        s.settimeout(timeout)
    return c.recv_message(max(0.1, deadline - time.monotonic()))


def ws_echo_check(tc, c, sizes, opcodes=(OP_TEXT, OP_BINARY), timeout=60):
    for n in sizes:
        for op in opcodes:
            data = pattern(n)
            with tc.subTest(size=n, opcode=op):
                got_op, got = tls_echo(c, op, data, timeout)
                tc.assertEqual(got_op, op)
                tc.assertEqual(len(got), n)
                tc.assertTrue(got == data, "payload of %d bytes differs" % n)


# =============================================================================================

class Check(TlsTest):
    """`sluice check` on sluice.certificates: each load-time error names the config file,
    line:col and the JSON path into sluice.certificates; expiry within 14 days warns."""

    def cfg(self, certs, order=None):
        port = wskit.free_port()
        return self.tls_config(port, [forward("tg")], [group("tg", [target(9)])], certs, order)

    def where(self, text, key, value):
        """(line, col) of the value of "<key>": "<value>" in the config text."""
        needle = '"%s": "%s"' % (key, value)
        for i, line in enumerate(text.splitlines(), 1):
            j = line.find(needle)
            if j >= 0:
                return i, j + len('"%s": ' % key) + 1
        self.fail("%s not in the config" % needle)

    def assertDiag(self, out, path, text, key, value, contains=(), level="error", cfgpath=None):
        """A diagnostic at <path> positioned on "<key>": "<value>", whose message has every
        string of <contains> (case-insensitive)."""
        found = [d for d in diags(out) if d["path"] == path]
        self.assertTrue(found, "no diagnostic at %s in:\n%s" % (path, out))
        d = found[0]
        if cfgpath:
            self.assertEqual(d["file"], cfgpath, out)
        self.assertEqual((d["line"], d["col"]), self.where(text, key, value),
                         "position of the diagnostic at %s:\n%s" % (path, out))
        is_warning = d["msg"].startswith("warning:")
        self.assertEqual(is_warning, level == "warning", "level of: %s" % d["msg"])
        for c in contains:
            self.assertIn(c.lower(), d["msg"].lower(), "message at %s: %s" % (path, d["msg"]))
        return d

    def test_valid_certificates_pass(self):
        certs = {"cert-a": self.entry("a", ocsp=self.install(CERTS["ocsp-a"], "a.ocsp.der")),
                 "cert-b": self.entry("b", chain=self.install(PKI.ca)),
                 "cert-rsa": self.entry("rsa")}
        rc, out, _, _ = self.check(self.cfg(certs, ["cert-a", "cert-b", "cert-rsa"]))
        self.assertEqual(rc, 0, out)
        self.assertEqual(diags(out), [], out)
        self.assertIn("0 warnings", out)
        rc, out, _, _ = self.check(self.cfg(certs, ["cert-a", "cert-b", "cert-rsa"]),
                                   ["--strict"], "strict")
        self.assertEqual(rc, 0, out)

    def test_unused_entries_are_checked_as_warnings(self):
        """An entry no rule uses yet (a sync may bring the rule) is loaded all the same: its
        problems are warnings at its position, so `check` passes, `check --strict` fails and
        `run` serves the rules that are right."""
        certs = {"cert-a": self.entry("a"),
                 "spare": {"cert": "nowhere.pem", "key": self.entry("a")["key"]},
                 "old": self.entry("expired")}
        cfg = self.cfg(certs, ["cert-a"])
        rc, out, text, _ = self.check(cfg)
        self.assertEqual(rc, 0, out)
        d = self.assertDiag(out, 'sluice.certificates.spare.cert', text, "cert", "nowhere.pem",
                            ("nowhere.pem", "no forwarding rule uses this entry"), "warning")
        d = self.assertDiag(out, 'sluice.certificates.old.cert', text, "cert",
                            self.entry("expired")["cert"], ("expired",), "warning")
        self.assertEqual([x for x in diags(out) if not x["msg"].startswith("warning:")], [], out)
        rc, out, _, _ = self.check(cfg, ["--strict"], "strict")
        self.assertNotEqual(rc, 0, out)
        py = self.pyback("p1")
        s = self.simple_tls(py.port, certs, ["cert-a"])
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/", sni="a.test")
        self.assertEqual(r.status, 200)
        self.assertIn("no forwarding rule uses this entry", s.stderr_text())

    def test_absolute_file_names(self):
        c, k = CERTS["a"]
        rc, out, _, _ = self.check(self.cfg({"abs": {"cert": c, "key": k}}))
        self.assertEqual(rc, 0, out)

    def test_missing_files(self):
        base = lambda: self.entry("a", "m")  # noqa: E731
        cases = [("cert", "missing-cert.pem", "certificate"),
                 ("key", "missing-key.key", "key"),
                 ("chain", "missing-chain.pem", "chain"),
                 ("ocsp", "missing-ocsp.der", "ocsp")]
        for key, missing, word in cases:
            with self.subTest(key=key):
                e = base()
                e[key] = missing
                rc, out, text, path = self.check(self.cfg({"cert-m": e}), name="m-" + key)
                self.assertEqual(rc, 1, out)
                self.assertDiag(out, 'sluice.certificates["cert-m"].' + key, text, key, missing,
                                [missing, word], cfgpath=path)

    def test_unreadable_file(self):
        if os.geteuid() == 0:
            # root reads a mode-000 file: a directory in its place cannot be read by anyone
            e = self.entry("a", "u")
            os.makedirs(os.path.join(self.conf, "dir.pem"))
            e["cert"] = "dir.pem"
        else:
            e = self.entry("a", "u")
            os.chmod(os.path.join(self.conf, e["cert"]), 0)
        rc, out, text, _ = self.check(self.cfg({"cert-u": e}))
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, 'sluice.certificates["cert-u"].cert', text, "cert", e["cert"],
                        [e["cert"]])

    def test_not_pem(self):
        junk = b"this is not PEM\n" + os.urandom(64)
        cases = [("cert", "junk-cert.pem", ["junk-cert.pem", "pem"]),
                 ("key", "junk-key.key", ["junk-key.key"]),
                 ("chain", "junk-chain.pem", ["junk-chain.pem"]),
                 ("ocsp", "junk.ocsp.der", ["junk.ocsp.der", "ocsp"])]
        for key, name, words in cases:
            with self.subTest(key=key):
                e = self.entry("a", "j")
                e[key] = self.write(name, junk)
                rc, out, text, _ = self.check(self.cfg({"cert-j": e}), name="j-" + key)
                self.assertEqual(rc, 1, out)
                self.assertDiag(out, 'sluice.certificates["cert-j"].' + key, text, key, name,
                                words)
        with self.subTest(key="cert", case="a key where the certificate belongs"):
            e = self.entry("a", "swap")
            e["cert"] = self.install(CERTS["a"][1], "swapped.pem")
            rc, out, text, _ = self.check(self.cfg({"cert-s": e}), name="swap")
            self.assertEqual(rc, 1, out)
            self.assertDiag(out, 'sluice.certificates["cert-s"].cert', text, "cert",
                            "swapped.pem", ["swapped.pem"])

    def test_key_of_another_certificate(self):
        """A key of the same type (EC) and one of another type (EC key, RSA certificate:
        OpenSSL loads it beside the certificate and only says "no certificate assigned")."""
        for cert, key in (("a", "other-key"), ("rsa", "other-key")):
            with self.subTest(cert=cert):
                e = self.entry(cert, "mm-" + cert)
                e["key"] = self.install(CERTS[key], "other.key")
                rc, out, text, _ = self.check(self.cfg({"cert-mm": e}), name="mm-" + cert)
                self.assertEqual(rc, 1, out)
                self.assertDiag(out, 'sluice.certificates["cert-mm"].key', text, "key",
                                "other.key", ["other.key", "does not match"])

    def test_encrypted_key(self):
        """An encrypted key is an error that says so (sluice never prompts for a passphrase).
        Known to fail: the message is OpenSSL's "PEM lib", the same as for a file that is not
        a key at all."""
        for kind in ("enc-pkcs8", "enc-trad"):
            with self.subTest(kind=kind):
                e = self.entry("a", kind)
                e["key"] = self.install(CERTS[kind], kind + "-x.key")
                rc, out, text, _ = self.check(self.cfg({"cert-e": e}), name=kind)
                self.assertEqual(rc, 1, out)
                self.assertDiag(out, 'sluice.certificates["cert-e"].key', text, "key",
                                kind + "-x.key", [kind + "-x.key", "encrypted"])

    def test_expired_certificate(self):
        e = self.entry("expired")
        rc, out, text, _ = self.check(self.cfg({"cert-x": e}))
        self.assertEqual(rc, 1, out)
        self.assertDiag(out, 'sluice.certificates["cert-x"].cert', text, "cert", "expired.pem",
                        ["expired.pem", "expired", "2020-01-02"])

    def test_expires_within_14_days_warns(self):
        e = self.entry("soon")
        cfg = self.cfg({"cert-soon": e, "cert-a": self.entry("a")}, ["cert-a", "cert-soon"])
        rc, out, text, _ = self.check(cfg)
        self.assertEqual(rc, 0, out)
        self.assertDiag(out, 'sluice.certificates["cert-soon"].cert', text, "cert", "soon.pem",
                        ["soon.pem", "14 days"], level="warning")
        self.assertEqual(len(diags(out)), 1, "only cert-soon warns:\n" + out)
        rc, out, _, _ = self.check(cfg, ["--strict"], "strict")
        self.assertEqual(rc, 1, "--strict with a warning:\n" + out)

    def test_server_certificate_without_entry(self):
        cfg = self.cfg({"cert-a": self.entry("a")}, ["cert-a", "cert-nowhere"])
        rc, out, text, _ = self.check(cfg)
        self.assertEqual(rc, 1, out)
        path = "forwardingRules[0].properties.serverCertificates[1]"
        found = [d for d in diags(out) if d["path"] == path]
        self.assertTrue(found, "no diagnostic at %s:\n%s" % (path, out))
        self.assertIn("cert-nowhere", found[0]["msg"])
        line = [i for i, t in enumerate(text.splitlines(), 1) if '"cert-nowhere"' in t]
        self.assertEqual(found[0]["line"], line[0], out)

    def test_every_error_reported_at_once(self):
        """Three broken entries: three errors, each at its own entry."""
        e1 = self.entry("a", "one")
        e1["cert"] = "nope-1.pem"
        e2 = self.entry("expired", "two")
        e3 = self.entry("a", "three")
        e3["key"] = self.install(CERTS["other-key"], "three-other.key")
        rc, out, _, _ = self.check(self.cfg({"c-1": e1, "c-2": e2, "c_3": e3}))
        self.assertEqual(rc, 1, out)
        paths = {d["path"] for d in diags(out)}
        for p in ('sluice.certificates["c-1"].cert', 'sluice.certificates["c-2"].cert',
                  'sluice.certificates.c_3.key'):
            self.assertIn(p, paths, out)

    def test_run_refuses_to_start(self):
        e = self.entry("expired")
        port = wskit.free_port()
        cfg = self.tls_config(port, [forward("tg")], [group("tg", [target(9)])],
                              {"cert-x": e})
        s = self.sluice(cfg, wait=False, admin=False)
        rc = s.wait(PROMPT)
        self.assertIsNotNone(rc, "sluice run still running with an expired certificate")
        self.assertNotEqual(rc, 0)
        self.assertIn('sluice.certificates["cert-x"].cert', s.stderr_text())
        self.assertFalse(wskit.port_open(port))


class Https(TlsTest):
    """HTTP requests over TLS: forwarded to the plain target with X-Forwarded-Proto https."""

    def test_request_forwarded_with_forwarded_proto(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        ctx = self.ca_ctx()
        r, info = tlskit.https(s.port, ctx, path="/hello?x=1", sni="a.test",
                               headers=[("X-Forwarded-Proto", "http"),
                                        ("X-Forwarded-Port", "1")])
        self.assertEqual((r.status, r.body), (200, b"p1 GET /hello?x=1\n"), r)
        r, _ = tlskit.https(s.port, ctx, "POST", "/echo-body", body=b"z" * 100000, sni="a.test")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body == b"z" * 100000, "POST body differs")
        r, _ = tlskit.https(s.port, ctx, path="/big?n=%d" % (3 << 20), sni="a.test")
        self.assertEqual(len(r.body), 3 << 20)
        self.assertTrue(r.body == pattern(3 << 20), "3 MiB response differs")
        reqs = py.wait_requests(3)
        for req in reqs:
            with self.subTest(req=req.target):
                self.assertEqual(req.header_list("X-Forwarded-Proto"), ["https"], req.head_raw)
                self.assertEqual(req.header_list("X-Forwarded-Port"), [str(s.port)],
                                 req.head_raw)

    def test_keep_alive_and_chunked(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        with tlskit.conn(s.port, self.ca_ctx(), "a.test") as c:
            for i in range(5):
                c.send(request_bytes("GET", "/chunked?n=%d" % (5000 * i)))
                r = read_response(c)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, pattern(5000 * i))
                self.assertFalse(r.closes, r)
            c.send(request_bytes("GET", "/last", [("Connection", "close")]))
            self.assertEqual(read_response(c).body, b"p1 GET /last\n")
            self.assertClosedPromptly(c)

    def test_pipelined_requests_and_large_upload(self):
        """Requests pipelined in one TLS write are all answered in order (the decrypted bytes
        waiting in sluice are not forgotten); a 5 MiB body goes up intact."""
        p1, p2 = self.pyback("p1"), self.pyback("p2")
        port = wskit.free_port()
        s = self.sluice(self.tls_config(port, [forward("tg")],
                                        [group("tg", [target(p1.port), target(p2.port)])],
                                        {"cert-a": self.entry("a")}))
        paths = ["/slow-1", "/a", "/slow-2", "/b", "/c"]
        with tlskit.conn(s.port, self.ca_ctx(), "a.test") as c:
            c.send(b"".join(request_bytes("GET", p) for p in paths))
            got = []
            for p in paths:
                r = read_response(c, timeout=PROMPT)
                self.assertEqual(r.status, 200, r)
                got.append(r.body.decode().split()[-1])
            self.assertEqual(got, paths)
            body = pattern(5 << 20)
            c.send(request_bytes("POST", "/echo-body", [], body))
            r = read_response(c, timeout=30)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.body == body, "5 MiB body differs (%d bytes back)" % len(r.body))

    def test_plain_and_tls_listeners_side_by_side(self):
        """One config, a TLS rule and a plain one to the same target: each gets its own
        X-Forwarded-Proto; the plain port does not speak TLS."""
        py = self.pyback("p1")
        tls_port, plain_port = wskit.free_ports(2)
        cfg = self.tls_config(tls_port, [forward("tg")], [group("tg", [target(py.port)])],
                              {"cert-a": self.entry("a")})
        self.add_plain_twin(cfg, plain_port)
        s = self.sluice(cfg)
        s.wait_port(plain_port)
        r, _ = tlskit.https(tls_port, self.ca_ctx(), path="/tls")
        self.assertEqual(r.status, 200, r)
        r = wskit.http(plain_port, path="/plain")
        self.assertEqual(r.status, 200, r)
        with self.assertRaises((ssl.SSLError, OSError)):
            tlskit.https(plain_port, self.ca_ctx(), path="/never", timeout=2)
        by = {req.target: req for req in py.wait_requests(2)}
        self.assertEqual(by["/tls"].header("X-Forwarded-Proto"), "https")
        self.assertEqual(by["/tls"].header("X-Forwarded-Port"), str(tls_port))
        self.assertEqual(by["/plain"].header("X-Forwarded-Proto"), "http")
        self.assertEqual(by["/plain"].header("X-Forwarded-Port"), str(plain_port))
        self.assertNotIn("/never", by)


class Versions(TlsTest):
    """TLS 1.2 and 1.3 are served; 1.0 and 1.1 are refused."""

    def test_tls12_and_tls13(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port, {"cert-a": self.entry("a"),
                                      "cert-rsa": self.entry("rsa")})
        for version, name in (("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")):
            for sni, cert in (("a.test", "a"), ("rsa.test", "rsa")):
                with self.subTest(version=version, cert=cert):
                    c = tlskit.connect(s.port, self.ca_ctx(version), sni)
                    with wskit.Conn(c) as conn:
                        self.assertEqual(c.version(), name)
                        self.peer_is(c, cert)
                        if version == "1.2":
                            self.assertTrue(c.cipher()[0].startswith("ECDHE-"), c.cipher())
                        conn.send(request_bytes("GET", "/v" + version))
                        self.assertEqual(read_response(conn).status, 200)
        self.wait_metric(s, "sluice_tls_handshakes_total", 4)

    def test_old_versions_and_no_shared_cipher_refused(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        for version in ("1.0", "1.1"):
            with self.subTest(version=version, client="python"):
                with self.assertRaises(ssl.SSLError) as cm:
                    tlskit.connect(s.port, self.ca_ctx(version), "a.test").close()
                self.assertIn("VERSION", str(cm.exception).upper())
        with self.subTest(version="1.1", client="openssl s_client"):
            rc, out = tlskit.s_client(s.port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                                               "-servername", "a.test"])
            self.assertNotEqual(rc, 0, out)
            self.assertIn("alert protocol version", out)
            self.assertNotIn("BEGIN CERTIFICATE", out)
        with self.subTest(version="1.2", ciphers="AES128-SHA (no forward secrecy) only"):
            ctx = self.ca_ctx("1.2")
            ctx.set_ciphers("AES128-SHA")
            with self.assertRaises(ssl.SSLError) as cm:
                tlskit.connect(s.port, ctx, "a.test").close()
            self.assertIn("HANDSHAKE_FAILURE", str(cm.exception).upper().replace(" ", "_"))
        self.wait_metric(s, "sluice_tls_handshake_errors_total", 4, cause="no_shared_cipher")
        self.assertEqual(self.metric(s, "sluice_tls_handshakes_total"), 0)
        self.assertEqual(py.requests(), [])
        self.assertEqual(len(self.logged(s, 'cause "no_shared_cipher"')), 1,
                         s.stderr_text())


class Alpn(TlsTest):
    def test_alpn(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        for offer, want in ((("http/1.1",), "http/1.1"), (("h2", "http/1.1"), "http/1.1"),
                            (("spdy/3", "http/1.1", "h2"), "http/1.1"), ((), None)):
            with self.subTest(offer=offer):
                r, _ = tlskit.https(s.port, self.ca_ctx(alpn=offer), path="/alpn")
                self.assertEqual(r.status, 200)
                c = tlskit.connect(s.port, self.ca_ctx(alpn=offer))
                self.assertEqual(c.selected_alpn_protocol(), want)
                c.close()
        for version in ("1.2", "1.3"):
            with self.subTest(offer="h2 only", version=version):
                with self.assertRaises(ssl.SSLError) as cm:
                    tlskit.connect(s.port, self.ca_ctx(version, alpn=("h2",))).close()
                self.assertIn("NO_APPLICATION_PROTOCOL", str(cm.exception).upper()
                              .replace(" ", "_"))
        self.wait_metric(s, "sluice_tls_handshake_errors_total", 2, cause="alpn")
        self.assertEqual(len(self.logged(s, 'cause "alpn"')), 1, s.stderr_text())


class Sni(TlsTest):
    def test_sni_selects_first_matching_certificate(self):
        """serverCertificates [a, wild, b, bw, cn]: each name gets the first certificate that
        covers it (bw also covers b.test and *.wild.test, but comes later)."""
        py = self.pyback("p1")
        certs = {"cert-a": self.entry("a"), "cert-wild": self.entry("wild"),
                 "cert-b": self.entry("b"), "cert-bw": self.entry("bw"),
                 "cert-cn": self.entry("cn")}
        s = self.simple_tls(py.port, certs)
        cases = [("a.test", "a"), ("www.a.test", "a"), ("x.wild.test", "wild"),
                 ("Y.Wild.Test", "wild"), ("b.test", "b"), ("B.TEST", "b"), ("bw.test", "bw"),
                 ("cn-only.test", "cn")]
        for sni, cert in cases:
            with self.subTest(sni=sni):
                r, info = tlskit.https(s.port, self.ca_ctx(), path="/" + sni, sni=sni)
                self.assertEqual(r.status, 200)
                c = tlskit.connect(s.port, self.ca_ctx(), sni)
                self.peer_is(c, cert, sni)
                c.close()
        self.assertEqual(self.metric(s, "sluice_tls_sni_unknown_total"), 0)
        self.assertEqual(self.log_lines(s, "tls: SNI"), [])
        # a wildcard covers one label: neither the bare domain nor two labels
        for sni in ("wild.test", "a.b.wild.test", "xa.test"):
            with self.subTest(sni=sni):
                c = tlskit.connect(s.port, self.ca_ctx(), sni)
                self.peer_is(c, "a", sni + " (unknown: the first certificate)")
                c.close()
        self.wait_metric(s, "sluice_tls_sni_unknown_total", 3)

    def test_no_sni_and_unknown_sni_get_the_first(self):
        py = self.pyback("p1")
        certs = {"cert-b": self.entry("b"), "cert-a": self.entry("a")}
        s = self.simple_tls(py.port, certs, ["cert-b", "cert-a"])
        c = tlskit.connect(s.port, self.ca_ctx(), None)
        self.peer_is(c, "b", "no SNI")
        c.close()
        self.assertEqual(self.metric(s, "sluice_tls_sni_unknown_total"), 0,
                         "a client without SNI is not an unknown SNI")
        for sni in ("unknown.test", "deep.www.a.test", "other.test"):
            with self.subTest(sni=sni):
                r, _ = tlskit.https(s.port, self.ca_ctx(), path="/u", sni=sni)
                self.assertEqual(r.status, 200)
                c = tlskit.connect(s.port, self.ca_ctx(), sni)
                self.peer_is(c, "b", sni)
                c.close()
        self.wait_metric(s, "sluice_tls_sni_unknown_total", 6)
        lines = self.logged(s, "tls: SNI")
        self.assertEqual(len(lines), 1, "logged at most once a minute:\n" + s.stderr_text())
        self.assertIn("unknown.test", lines[0])
        self.assertTrue(lines[0].startswith("sluice: info: tls: "), lines[0])

    def test_self_signed_certificate(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port, {"cert-self": self.entry("self")})
        ctx = tlskit.client_ctx(CERTS["self"][0])
        r, _ = tlskit.https(s.port, ctx, path="/self", sni="self.test")
        self.assertEqual(r.status, 200)
        with self.assertRaises(ssl.SSLCertVerificationError):
            tlskit.connect(s.port, self.ca_ctx(), "self.test").close()


class Resumption(TlsTest):
    def resume(self, s, version, sni="a.test"):
        """A first connection (one request: TLS 1.3 tickets come after the handshake), then a
        second with its session: (first reused, second reused)."""
        ctx = self.ca_ctx(version)
        r, info = tlskit.https(s.port, ctx, path="/first", sni=sni)
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(info["session"], "no session after the first request")
        r, info2 = tlskit.https(s.port, ctx, path="/second", sni=sni, session=info["session"])
        self.assertEqual(r.status, 200)
        return info, info2

    def test_resumption_tls12_and_tls13(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                first, second = self.resume(s, version)
                self.assertFalse(first["reused"])
                self.assertTrue(second["reused"], "TLS %s session not resumed" % version)
                self.assertEqual(second["version"], "TLSv" + version)
        self.wait_metric(s, "sluice_tls_resumed_total", 2)
        self.assertEqual(self.metric(s, "sluice_tls_handshakes_total"), 4)

    def test_single_use_tickets_chain(self):
        """A client that uses each session once (TLS 1.3 tickets are meant for single use, RFC
        8446 C.4; browsers do so) resumes every time: a resumed connection brings a fresh
        ticket. TLS 1.2 resumes on the same ticket again."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        for version in ("1.3", "1.2"):
            with self.subTest(version=version):
                ctx = self.ca_ctx(version)
                r, info = tlskit.https(s.port, ctx, path="/chain-0", sni="a.test")
                used = [info["session"].id]
                session = info["session"]
                for i in range(1, 5):
                    r, info = tlskit.https(s.port, ctx, path="/chain-%d" % i, sni="a.test",
                                           session=session)
                    self.assertTrue(info["reused"], "connection %d not resumed" % i)
                    session = info["session"]
                    if version == "1.3":
                        self.assertNotIn(session.id, used, "connection %d brought no new "
                                         "ticket: its session is one used before" % i)
                    used.append(session.id)

    def test_resumption_on_a_certificate_chosen_by_sni(self):
        """A session on the rule's second certificate (SNI switched the context) resumes."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port, {"cert-a": self.entry("a"), "cert-b": self.entry("b")})
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                first, second = self.resume(s, version, sni="b.test")
                self.assertEqual(first["der"], tlskit.der(CERTS["b"][0]))
                self.assertTrue(second["reused"], "TLS %s session on cert-b not resumed"
                                % version)
                self.assertEqual(second["der"], tlskit.der(CERTS["b"][0]))
        m = self.metrics(s)
        self.assertIn("sluice_tls_ktls", m)
        ktls = {dict(k)["direction"]: v for k, v in m["sluice_tls_ktls"].select().items()}
        self.assertEqual(set(ktls), {"send", "recv"})
        if not os.path.exists("/sys/module/tls"):
            self.assertEqual(ktls, {"send": 0, "recv": 0}, "kTLS without the tls module")

    def test_resumption_survives_reload(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        ctx = {v: self.ca_ctx(v) for v in ("1.2", "1.3")}
        sessions = {}
        for v in ctx:
            r, info = tlskit.https(s.port, ctx[v], path="/before", sni="a.test")
            sessions[v] = info["session"]
        # a reload with the same certificate files, and another rule name
        with open(s.cfg_path) as f:
            cfg = json.load(f)
        cfg["forwardingRules"][0]["properties"]["httpRules"][0]["name"] = "renamed"
        self.reload(s, cfg)
        for v in ctx:
            with self.subTest(version=v):
                r, info = tlskit.https(s.port, ctx[v], path="/after", sni="a.test",
                                       session=sessions[v])
                self.assertEqual(r.status, 200)
                self.assertTrue(info["reused"], "TLS %s session not resumed after SIGHUP" % v)


class AccessLog(TlsTest):
    def test_tls_fields(self):
        """Requests and tunnels over TLS say how: version, cipher, resumed, SNI; a plain
        listener's lines have no "tls" at all."""
        b = self.bench("b1")
        plain_port = wskit.free_port()
        cfg = self.tls_config(wskit.free_port(), [forward("tg")], [group("tg", [target(b.port)])],
                              {"cert-a": self.entry("a")})
        self.add_plain_twin(cfg, plain_port)
        s = self.sluice(cfg)
        ctx = self.ca_ctx("1.3")
        r, info = tlskit.https(s.port, ctx, path="/full", sni="a.test")
        self.assertEqual(r.status, 200)
        r, _ = tlskit.https(s.port, ctx, path="/again", sni="a.test", session=info["session"])
        self.assertEqual(r.status, 200)
        r, _ = tlskit.https(s.port, self.ca_ctx("1.2"), path="/nosni", sni=None)
        self.assertEqual(r.status, 200)
        with tlskit.ws_open(s.port, self.ca_ctx("1.3"), "/wss", "a.test") as c:
            ws_echo_check(self, c, (10,))
            c.send_close(1000)
            c.recv_close()
        self.assertEqual(wskit.http(plain_port, path="/plain").status, 200)

        def lines():
            return wskit.read_json_lines(s.stdout_text())[0]
        ok = wskit.wait_until(lambda: any(x.get("type") == "tunnel" for x in lines()), PROMPT)
        self.assertTrue(ok, "no tunnel line:\n" + s.stdout_text())
        by_path = {x["path"]: x for x in lines() if x.get("type") == "http"}
        tunnel = [x for x in lines() if x.get("type") == "tunnel"][0]
        want = {"/full": ("TLSv1.3", False, "a.test"), "/again": ("TLSv1.3", True, "a.test"),
                "/nosni": ("TLSv1.2", False, None), "/wss": ("TLSv1.3", False, "a.test")}
        for path, (version, resumed, sni) in want.items():
            with self.subTest(path=path):
                tls = by_path[path].get("tls")
                self.assertIsNotNone(tls, by_path[path])
                self.assertEqual((tls["version"], tls["resumed"], tls["sni"]),
                                 (version, resumed, sni), tls)
                self.assertRegex(tls["cipher"], r"^[A-Z0-9_-]+$")
        self.assertEqual(by_path["/wss"]["status"], 101)
        self.assertEqual(tunnel.get("tls"), by_path["/wss"]["tls"], tunnel)
        self.assertNotIn("tls", by_path["/plain"])


class Ocsp(TlsTest):
    def test_ocsp_stapling(self):
        """cert-a staples the file its "ocsp" names; cert-b the <cert>.ocsp beside it; cert-wild
        has none. SNI picks which."""
        py = self.pyback("p1")
        certs = {"cert-a": self.entry("a", ocsp=self.install(CERTS["ocsp-a"], "a-resp.der")),
                 "cert-b": self.entry("b"), "cert-wild": self.entry("wild")}
        self.install(CERTS["ocsp-b"], "b.pem.ocsp")
        s = self.simple_tls(py.port, certs)
        for sni, stapled, serial in (("a.test", True, serial_of(CERTS["a"][0])),
                                     ("b.test", True, serial_of(CERTS["b"][0])),
                                     ("x.wild.test", False, None)):
            for version in ("-tls1_2", "-tls1_3"):
                with self.subTest(sni=sni, version=version):
                    rc, out = tlskit.s_client(s.port, ["-status", "-servername", sni, version,
                                                       "-CAfile", PKI.ca])
                    self.assertIn("Verify return code: 0 (ok)", out)
                    if stapled:
                        self.assertIn("OCSP Response Status: successful", out)
                        self.assertIn("Cert Status: good", out)
                        self.assertRegex(out, r"Serial Number: 0*%X\b" % serial)
                    else:
                        self.assertIn("OCSP response: no response sent", out)
                        self.assertNotIn("OCSP Response Status", out)


class WebSocket(TlsTest):
    """wss: an upgrade on a TLS listener tunnels to the plain target as ws:// does."""

    def test_wss_echo_raw_client(self):
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                c = tlskit.ws_open(s.port, self.ca_ctx(version), "/echo", "a.test")
                with c:
                    ws_echo_check(self, c, (0, 1, 125, 126, 65535, 65536, 1 << 20,
                                            (8 << 20) + 7))
                    c.send_message(OP_TEXT, b"in pieces " * 5000, fragments=9)
                    self.assertEqual(c.recv_message(), (OP_TEXT, b"in pieces " * 5000))
                    data = b"".join(wskit.encode_frame(OP_TEXT, "m%d" % i) for i in range(300))
                    c.send_raw(data)
                    for i in range(300):
                        self.assertEqual(c.recv_message(), (OP_TEXT, b"m%d" % i))
                    c.ping(b"tls ping")
                    f = c.recv_frame()
                    self.assertEqual((f.opcode, f.payload), (wskit.OP_PONG, b"tls ping"))
                    c.send_close(1000, "bye")
                    self.assertEqual(c.recv_close()[0], 1000)
                    self.assertClosedPromptly(c)

    def test_wss_frames_glued_to_the_upgrade(self):
        """A client frame in the same TLS write as the upgrade request, and a target frame in
        the same packet as its 101: neither is lost at the hand-over to the tunnel."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version, side="client"):
                with WSClient(tlskit.conn(s.port, self.ca_ctx(version), "a.test")) as c:
                    early = wskit.encode_frame(OP_TEXT, "early bird")
                    c.handshake("/ws/echo", extra=early + wskit.encode_frame(OP_BINARY,
                                                                             b"\0" * 300))
                    self.assertEqual(c.recv_message(), (OP_TEXT, b"early bird"))
                    self.assertEqual(c.recv_message(), (OP_BINARY, b"\0" * 300))
            with self.subTest(version=version, side="target"):
                with WSClient(tlskit.conn(s.port, self.ca_ctx(version), "a.test")) as c:
                    c.handshake("/ws/hello")
                    self.assertEqual(c.recv_message(), (OP_TEXT, b"hello from p1"))
                    self.assertEqual(tls_echo(c, OP_TEXT, b"after"), (OP_TEXT, b"after"))

    def read_101(self, c, key):
        head = c.conn.read_until(b"\r\n\r\n", PROMPT)
        first, headers = wskit.parse_head(head)
        self.assertTrue(first.startswith("HTTP/1.1 101"), head)
        self.assertIn(("Sec-WebSocket-Accept", wskit.ws_accept(key)), headers)
        c.parser.feed(bytes(c.conn.buf))
        c.conn.buf.clear()

    def test_tls_records_in_one_write(self):
        """The upgrade request and 50 frames, each in a TLS record of its own, in one TCP
        write; an upgrade request and a frame one byte per record; a frame in 1-byte records
        inside the tunnel: nothing stays behind in sluice's TLS buffers."""
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version, case="a record per frame"):
                t = tlskit.BioTLS(s.port, self.ca_ctx(version), "a.test")
                self.addCleanup(t.close)
                key = wskit.ws_key()
                frames = [wskit.encode_frame(OP_TEXT, "record %d" % i) for i in range(50)]
                t.send_raw(t.records([wskit.handshake_bytes(key, "/rec")] + frames))
                c = WSClient(t.conn())
                self.read_101(c, key)
                for i in range(50):
                    self.assertEqual(c.recv_message(), (OP_TEXT, b"record %d" % i))
                data = wskit.encode_frame(OP_BINARY, pattern(300))
                t.send_raw(t.records([data[i:i + 1] for i in range(len(data))]))
                self.assertEqual(c.recv_message(), (OP_BINARY, pattern(300)))
                big = pattern(200000)
                data = wskit.encode_frame(OP_BINARY, big)
                t.send_raw(t.records([data[i:i + 7000] for i in range(0, len(data), 7000)]))
                self.assertEqual(c.recv_message(timeout=PROMPT), (OP_BINARY, big))
            with self.subTest(version=version, case="a byte per record"):
                t = tlskit.BioTLS(s.port, self.ca_ctx(version), "a.test")
                self.addCleanup(t.close)
                key = wskit.ws_key()
                data = wskit.handshake_bytes(key, "/bytes") + wskit.encode_frame(OP_TEXT, "tail")
                t.send_raw(t.records([data[i:i + 1] for i in range(len(data))]))
                c = WSClient(t.conn())
                self.read_101(c, key)
                self.assertEqual(c.recv_message(), (OP_TEXT, b"tail"))

    def test_slow_client_with_small_socket_buffers(self):
        """A client whose socket buffers are 4 KiB: sluice's TLS writes to it must wait and
        resume (partial writes) without losing or reordering a byte, both in a wss tunnel and
        for an HTTPS response."""
        b = self.bench("b1")
        py = self.pyback("p1")
        s = self.simple_tls(b.port)
        s2 = self.simple_tls(py.port)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                c = tlskit.ws_open(s.port, self.ca_ctx(version), "/slow", "a.test",
                                   bufsize=4096)
                with c:
                    ws_echo_check(self, c, (70000, 3 << 20), (OP_BINARY,))
                with tlskit.conn(s2.port, self.ca_ctx(version), "a.test",
                                 bufsize=4096) as conn:
                    conn.send(request_bytes("GET", "/big?n=%d" % (6 << 20),
                                            [("Connection", "close")]))
                    head = conn.read_until(b"\r\n\r\n", PROMPT)
                    self.assertIn(b" 200 ", head.split(b"\r\n")[0])
                    body = bytearray(conn.buf)
                    conn.buf.clear()
                    deadline = time.monotonic() + 60
                    while len(body) < 6 << 20 and time.monotonic() < deadline:
                        chunk = conn.sock.recv(8192)
                        if not chunk:
                            break
                        body += chunk
                        if len(body) % (1 << 20) < 8192:
                            time.sleep(0.05)  # a slow reader now and then
                    self.assertEqual(len(body), 6 << 20)
                    self.assertTrue(bytes(body) == pattern(6 << 20), "6 MiB body differs")

    def test_plain_requests_then_upgrade_on_one_tls_connection(self):
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        with tlskit.conn(s.port, self.ca_ctx(), "a.test") as conn:
            for i in range(3):
                conn.send(request_bytes("GET", "/plain%d" % i))
                r = read_response(conn)
                self.assertEqual(r.status, 200, r)
                self.assertFalse(r.closes, r)
            c = WSClient(conn)
            c.handshake("/ws")
            ws_echo_check(self, c, (5, 70000, 1 << 20))

    def test_wss_half_close_and_close_codes(self):
        py = self.pyback("p1")
        s = self.simple_tls(py.port)
        with tlskit.ws_open(s.port, self.ca_ctx(), "/ws/halfclose", "a.test") as c:
            c.send_raw(b"z" * 1000)
            # a TCP half-close without close_notify (SSLSocket.shutdown would drop the SSL)
            socket.socket.shutdown(c.conn.sock, socket.SHUT_WR)
            self.assertEqual(c.conn.read_to_eof(timeout=PROMPT), b"got 1000 bytes")
        with tlskit.ws_open(s.port, self.ca_ctx(), "/ws/echo", "a.test") as c:
            c.send_text("close 4001 from the target")
            self.assertEqual(c.recv_close(), (4001, "from the target"))
            c.send_close(4001)
            self.assertClosedPromptly(c)

    def test_key_update_and_renegotiation_in_a_tunnel(self):
        """openssl s_client in a wss tunnel: TLS 1.3 key updates (K: the peer must update too,
        k) keep the tunnel going; a TLS 1.2 renegotiation (R) is refused without harm."""
        b = self.bench("b1")
        s = self.simple_tls(b.port)

        def tunnel(version):
            sc = tlskit.SClient(s.port, [version, "-servername", "a.test", "-CAfile", PKI.ca])
            self.addCleanup(sc.close)
            sc.send(wskit.handshake_bytes(wskit.ws_key(), "/ku"))
            self.assertTrue(sc.wait_for(b"101 Switching Protocols"), bytes(sc.err))
            sc.send(wskit.encode_frame(OP_TEXT, "payload-first"))
            self.assertTrue(sc.wait_for(b"payload-first"), bytes(sc.out[-300:]))
            return sc
        sc = tunnel("-tls1_3")
        for i, cmd in enumerate((b"K\n", b"k\n", b"K\n")):
            with self.subTest(command=cmd):
                n = sc.err.count(b"KEYUPDATE")
                sc.send(cmd)
                self.assertTrue(wskit.wait_until(lambda: sc.err.count(b"KEYUPDATE") > n,
                                                 PROMPT), bytes(sc.err))
                time.sleep(0.05)  # the next write must be read on its own
                msg = ("payload-after-update-%d " % i).encode() * 50
                sc.send(wskit.encode_frame(OP_TEXT, msg))
                self.assertTrue(sc.wait_for(msg), "no echo after a key update:\n%s\n%s"
                                % (bytes(sc.out[-500:]), bytes(sc.err)))
        self.assertEqual(sc.close(), 0, bytes(sc.err))
        sc = tunnel("-tls1_2")
        sc.send(b"R\n")
        self.assertTrue(sc.wait_for(b"RENEGOTIATING", where="err"), bytes(sc.err))
        time.sleep(0.3)
        # refused: the tunnel may end, but sluice goes on serving
        r, _ = tlskit.https(s.port, self.ca_ctx(), path="/after-renegotiation", sni="a.test")
        self.assertEqual(r.status, 200)
        self.assertTrue(sc.wait_for(b"no renegotiation", where="err"),
                        "the renegotiation was not refused:\n%s" % bytes(sc.err))
        sc.close()

    def test_python_websockets_client(self):
        import websockets
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        big_text = "".join(chr(0x41 + i % 26) for i in range(3 << 20)) + "\u00e9\u20ac"
        big_bin = os.urandom(5 << 20)

        async def run(version):
            async with websockets.connect("wss://127.0.0.1:%d/chat" % s.port,
                                          ssl=self.ca_ctx(version), server_hostname="a.test",
                                          max_size=None, open_timeout=PROMPT,
                                          close_timeout=PROMPT, compression=None) as ws:
                tls = ws.transport.get_extra_info("ssl_object")
                self.assertEqual(tls.version(), "TLSv" + version)
                for msg in ("hello", "", "\u00e9t\u00e9 \U0001F600", b"\x00\x01\xff" * 1000,
                            b"", big_text, big_bin):
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 30)
                    self.assertEqual(type(got), type(msg))
                    self.assertTrue(got == msg, "message of %d differs" % len(msg))
                pong = await ws.ping(b"ping!")
                await asyncio.wait_for(pong, PROMPT)
                await ws.close(1000, "bye")
                return ws.close_code
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                self.assertEqual(asyncio.run(asyncio.wait_for(run(version), 60)), 1000)

    def test_50_concurrent_wss_tunnels(self):
        import websockets
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        n = 50

        async def one(i, ctx):
            async with websockets.connect("wss://127.0.0.1:%d/t%d" % (s.port, i), ssl=ctx,
                                          server_hostname="a.test", max_size=None,
                                          open_timeout=30, close_timeout=PROMPT,
                                          compression=None) as ws:
                msgs = ["tunnel %d" % i, os.urandom(1000 + i), os.urandom(65536 + 17 * i),
                        "x%d" % i * 1000]
                for m in msgs:
                    await ws.send(m)
                for m in msgs:
                    got = await asyncio.wait_for(ws.recv(), 30)
                    if got != m:
                        return "tunnel %d: message of %d differs" % (i, len(m))
                return None

        async def all_of_them():
            ctxs = [self.ca_ctx("1.2"), self.ca_ctx("1.3")]
            return await asyncio.gather(*(one(i, ctxs[i % 2]) for i in range(n)),
                                        return_exceptions=True)
        res = asyncio.run(asyncio.wait_for(all_of_them(), 90))
        bad = [r for r in res if r is not None]
        self.assertEqual(bad, [], "%d of %d tunnels failed" % (len(bad), n))
        self.wait_metric(s, "sluice_tls_handshakes_total", n)


    def test_sluice_bench_over_wss(self):
        """Our load generator through sluice over wss://: every echo verified, the certificate
        verified against the test CA by name, and each of its single-use TLS 1.3 tickets
        answered with a new one (only each slot's first handshake is a full one)."""
        b = self.bench("b1")
        s = self.simple_tls(b.port)
        url = "wss://127.0.0.1:%d/" % s.port
        common = ["--url", url, "--cafile", PKI.ca, "--sni", "a.test", "--seconds", "1",
                  "--json"]
        for mode in (["bulk", "--conns", "2", "--size", "100000"],
                     ["upgrades", "--conns", "3"]):
            r = subprocess.run([test_proxy.SLUICE_BENCH, *mode, *common], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            res = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
            self.assertTrue(res["tls"])
            self.assertEqual(res["tls_version"], "TLSv1.3")
            self.assertEqual(res.get("errors", 0), 0, res)
            if mode[0] == "upgrades":
                self.assertGreater(res["upgrades"], 20, res)
                self.assertEqual(res["failed"], 0, res)
                self.assertEqual(res["tls_handshakes"] - res["tls_resumed"], 3, res)


class Chain(TlsTest):
    """Intermediates: from the "chain" file or after the certificate in its own file; the
    client trusts only the root."""

    def showcerts(self, s, sni):
        """How many certificates the server sends for <sni> (openssl s_client -showcerts)."""
        rc, out = tlskit.s_client(s.port, ["-showcerts", "-servername", sni, "-CAfile", PKI.ca])
        self.assertIn("Verify return code: 0 (ok)", out, out)
        return out.count("-----BEGIN CERTIFICATE-----")

    def test_chain_file(self):
        py = self.pyback("p1")
        certs = {"cert-a": self.entry("a"),
                 "cert-ch": self.entry("chained", chain=self.install(CERTS["inter-ca"],
                                                                      "inter.pem"))}
        s = self.simple_tls(py.port, certs)
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                r, info = tlskit.https(s.port, self.ca_ctx(version), path="/ch",
                                       sni="chained.test")
                self.assertEqual(r.status, 200)
                self.assertEqual(info["der"], tlskit.der(CERTS["chained"][0]))
        # the SNI switch to the second certificate brings its chain along, and only there
        self.assertEqual(self.showcerts(s, "chained.test"), 2)
        self.assertEqual(self.showcerts(s, "a.test"), 1)

    def test_chain_after_the_certificate(self):
        py = self.pyback("p1")
        with open(CERTS["chained"][0]) as f1, open(CERTS["inter-ca"]) as f2:
            full = f1.read() + f2.read()
        certs = {"cert-ch": {"cert": self.write("full.pem", full.encode()),
                             "key": self.install(CERTS["chained"][1], "full.key")}}
        s = self.simple_tls(py.port, certs)
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/full", sni="chained.test")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.showcerts(s, "chained.test"), 2)

    def test_without_its_chain_the_client_cannot_verify(self):
        """The control of the two tests above: the leaf alone does not verify."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port, {"cert-ch": self.entry("chained")})
        with self.assertRaises(ssl.SSLCertVerificationError):
            tlskit.https(s.port, self.ca_ctx(), path="/none", sni="chained.test")


class Proxy(TlsTest):
    """PROXY protocol v2 with TLVs (v2ssl) for clients that came over TLS."""

    def test_proxy_v2ssl_tlvs(self):
        py = self.pyback("pp")
        tls_port, plain_port = wskit.free_ports(2)
        cfg = self.tls_config(tls_port, [forward("tg")],
                              [group("tg", [target(py.port, proxy="v2ssl")])],
                              {"cert-a": self.entry("a")})
        self.add_plain_twin(cfg, plain_port)
        s = self.sluice(cfg)
        s.wait_port(plain_port)

        def upstream(path):
            wskit.wait_until(lambda: any(r.target == path for r in py.requests()), PROMPT)
            found = [c for c in py.conns if any(r.target == path for r in c.requests)]
            self.assertEqual(len(found), 1, "no upstream connection carried %s" % path)
            bc = found[0]
            self.assertIsNotNone(bc.proxy, "no PROXY header before %s" % path)
            raw = bytes(bc.raw)
            self.assertEqual(raw[len(bc.proxy):][:4], b"GET ",
                             "the request does not follow the header's length: %r"
                             % raw[:len(bc.proxy) + 8])
            try:
                return tlskit.parse_pp2(bc.proxy)
            except ValueError as e:
                self.fail("%s: %r" % (e, bc.proxy))

        def check(p, cport, dport, sni, version, cipher):
            self.assertEqual((p["cmd"], p["fam"]), (0x21, 0x11))
            self.assertEqual((p["src"], p["dst"], p["sport"], p["dport"]),
                             ("127.0.0.1", "127.0.0.1", cport, dport))
            tlvs = p["tlvs"]
            types = [t for t, _ in tlvs]
            self.assertEqual(types.count(tlskit.PP2_TYPE_SSL), 1, tlvs)
            self.assertEqual(dict(tlvs).get(tlskit.PP2_TYPE_ALPN), b"http/1.1", tlvs)
            if sni:
                self.assertEqual(dict(tlvs).get(tlskit.PP2_TYPE_AUTHORITY), sni.encode(), tlvs)
            else:
                self.assertNotIn(tlskit.PP2_TYPE_AUTHORITY, types, tlvs)
            v = dict(tlvs)[tlskit.PP2_TYPE_SSL]
            self.assertGreaterEqual(len(v), 5, v)
            self.assertEqual(v[0], 0x01, "client byte: PP2_CLIENT_SSL")
            sub = dict(tlskit.parse_tlvs(v[5:]))
            self.assertEqual(sub.get(tlskit.PP2_SUBTYPE_SSL_VERSION), version.encode(), sub)
            self.assertEqual(sub.get(tlskit.PP2_SUBTYPE_SSL_CIPHER), cipher.encode(), sub)

        for version, sni in (("1.3", "a.test"), ("1.2", None), ("1.3", "unknown.test")):
            with self.subTest(version=version, sni=sni):
                path = "/pp/%s/%s" % (version, sni)
                with tlskit.conn(s.port, self.ca_ctx(version), sni) as c:
                    cport = c.sock.getsockname()[1]
                    ver, cipher = c.sock.version(), c.sock.cipher()[0]
                    c.send(request_bytes("GET", path, [("Connection", "close")]))
                    self.assertEqual(read_response(c).status, 200)
                check(upstream(path), cport, tls_port, sni, ver, cipher)
        with self.subTest(request="wss"):
            c = tlskit.ws_open(s.port, self.ca_ctx("1.3"), "/pp/ws/echo", "www.a.test")
            with c:
                cport = c.conn.sock.getsockname()[1]
                ver, cipher = c.conn.sock.version(), c.conn.sock.cipher()[0]
                self.assertEqual(tls_echo(c, OP_TEXT, b"pp"), (OP_TEXT, b"pp"))
            check(upstream("/pp/ws/echo"), cport, tls_port, "www.a.test", ver, cipher)
        with self.subTest(listener="plain"):
            with wskit.Conn.connect(plain_port) as c:
                cport = c.sock.getsockname()[1]
                c.send(request_bytes("GET", "/pp/plain", [("Connection", "close")]))
                self.assertEqual(read_response(c).status, 200)
            p = upstream("/pp/plain")
            self.assertEqual((p["src"], p["sport"], p["dport"]), ("127.0.0.1", cport,
                                                                    plain_port))
            self.assertEqual(p["tlvs"], [], "TLVs for a client that did not come over TLS")


class BadInput(TlsTest):
    """What is not a TLS handshake: a clean close, counted by cause, logged once a minute per
    cause; the worker goes on serving others meanwhile."""

    def start(self, **local):
        py = self.pyback("p1")
        return self.simple_tls(py.port, headerTimeout=HEADER_TIMEOUT, **local), py

    def served_now(self, s, what):
        """One HTTPS request is answered within PROMPT while <what> is going on."""
        t0 = time.monotonic()
        r, _ = tlskit.https(s.port, self.ca_ctx(), path="/meanwhile", sni="a.test",
                            timeout=PROMPT)
        self.assertEqual(r.status, 200, "another client while %s" % what)
        return time.monotonic() - t0

    def test_plain_http_gets_400(self):
        s, py = self.start()
        base = self.settle(s)
        for i in range(2):
            with wskit.Conn.connect(s.port) as c:
                c.send(request_bytes("GET", "/plain", [("User-Agent", "curl/8")]))
                time.sleep(0.3)  # the answer must not depend on reading it at once
                self.assertClosedPromptly(c)  # (a reset after it: see the test below)
                data = bytes(c.buf)
                self.assertIn(b"\r\n\r\n", data, "no HTTP answer: %r" % data)
                head, body = data.split(b"\r\n\r\n", 1)
                first, headers = wskit.parse_head(head + b"\r\n\r\n")
                r = wskit.Response(int(first.split(" ")[1]), "", first.split(" ")[0], headers,
                                   body, head)
                self.assertEqual(r.status, 400, r)
                self.assertIn(b"HTTPS", r.body)
                self.assertTrue(r.header("Content-Type", "").startswith("text/plain"), r)
                with self.subTest("the 400's Content-Length is its body's"):
                    self.assertEqual(r.header("Content-Length"), str(len(body)),
                                     "Content-Length of the 400 vs its body %r" % body)
        self.wait_errors(s, base, {"plain_http": 2})
        lines = self.logged(s, 'cause "plain_http"')
        self.assertEqual(len(lines), 1, "logged once a minute:\n" + s.stderr_text())
        self.assertTrue(lines[0].startswith("sluice: info: tls: "), lines[0])
        self.assertEqual(py.requests(), [], "a plain request reached the target")
        self.served_now(s, "after plain HTTP")

    def test_plain_http_400_then_fin_not_reset(self):
        """The 400 is followed by an orderly close, not a reset: a reset may destroy the 400
        on its way (the rest of the request is still unread in the socket). Known to fail:
        tls_failed() closes at once instead of lingering as the front does for its other
        answers."""
        s, _ = self.start()
        with wskit.Conn.connect(s.port) as c:
            c.send(request_bytes("POST", "/form", [("User-Agent", "x" * 200)], b"a=1" * 300))
            time.sleep(0.3)
            how = c.wait_closed(PROMPT)
            self.assertIn(b"400 Bad Request", bytes(c.buf))
            self.assertEqual(how, "eof", "the 400 was followed by a %s" % how)

    def test_garbage_closed(self):
        s, _ = self.start()
        base = self.settle(s)
        for data in (os.urandom(300), b"\x16\x03\x01\xff\xff" + b"\0" * 100, b"SSH-2.0-x\r\n"):
            with self.subTest(data=data[:10]):
                with wskit.Conn.connect(s.port) as c:
                    c.send(data)
                    how = self.assertClosedPromptly(c, "a connection that sent garbage")
                    self.assertNotIn(b"HTTP/", bytes(c.buf), how)
        self.served_now(s, "after garbage")
        self.wait_errors(s, base, {"not_tls": 3})
        self.assertEqual(len(self.logged(s, 'cause "not_tls"')), 1, s.stderr_text())

    def test_stalled_handshake_closed_after_header_timeout(self):
        """Clients that send nothing, or half a ClientHello, are closed after headerTimeout;
        others are served at once meanwhile (4 stalled: more than the 2 workers)."""
        s, _ = self.start()
        base = self.settle(s)
        hello = tlskit.client_hello("a.test")
        self.assertGreater(len(hello), 100)
        stalled = []
        t0 = time.monotonic()
        for i in range(4):
            c = wskit.Conn.connect(s.port)
            self.addCleanup(c.close)
            if i % 2:
                c.send(hello[:len(hello) // 2])
            stalled.append(c)
        for i in range(3):
            self.served_now(s, "4 handshakes stall")
        busy = time.monotonic() - t0
        if busy < HEADER_TIMEOUT / 1000.0:
            for c in stalled:
                self.assertTrue(c.still_open(0), "closed before headerTimeout")
        for i, c in enumerate(stalled):
            how = self.assertClosedPromptly(c, "stalled handshake %d" % i,
                                            timeout=HEADER_TIMEOUT / 1000.0 + PROMPT)
            self.assertIn(how, ("eof", "reset"))
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, HEADER_TIMEOUT / 1000.0 * 0.9,
                                "closed before headerTimeout (%.2f s)" % waited)
        self.wait_errors(s, base, {"timeout": 4})
        self.assertEqual(len(self.logged(s, 'cause "timeout"')), 1, s.stderr_text())
        self.assertEqual(self.metric(s, "sluice_tls_handshakes_total"), 3)

    def test_handshake_then_silence_gets_408(self):
        """The handshake and the first request head share headerTimeout: a client that
        completes the handshake and sends nothing gets the plain listener's 408 (over TLS)."""
        s, py = self.start()
        with tlskit.conn(s.port, self.ca_ctx(), "a.test") as c:
            t0 = time.monotonic()
            r = read_response(c, timeout=HEADER_TIMEOUT / 1000.0 + PROMPT)
            self.assertEqual(r.status, 408, r)
            self.assertClosedPromptly(c)
            self.assertGreaterEqual(time.monotonic() - t0, HEADER_TIMEOUT / 1000.0 * 0.5)
        self.assertEqual(py.requests(), [])

    def test_flood_of_bad_handshakes(self):
        """100 bad handshakes at once (garbage, plain HTTP, half hellos closed): others are
        served meanwhile; every one is counted, each cause logged once."""
        s, py = self.start()
        base = self.settle(s)
        hello = tlskit.client_hello("a.test")
        kinds = [b"\x00" * 64, request_bytes("GET", "/x"), hello[:60]]
        conns = []
        for i in range(99):
            c = wskit.Conn.connect(s.port)
            self.addCleanup(c.close)
            c.send(kinds[i % 3])
            conns.append(c)
        self.served_now(s, "99 bad handshakes are pending")
        for i, c in enumerate(conns):
            if i % 3 == 2:
                c.close()
            else:
                self.assertClosedPromptly(c, "bad handshake %d" % i)
        self.wait_errors(s, base, {"not_tls": 33, "plain_http": 33, "closed": 33})
        for cause in ("not_tls", "plain_http", "closed"):
            lines = self.logged(s, 'cause "%s"' % cause)
            self.assertEqual(len(lines), 1, s.stderr_text())
            self.assertTrue(lines[0].startswith("sluice: info: tls: "), lines[0])
        self.served_now(s, "after the flood")

    def test_client_gone_mid_handshake(self):
        s, _ = self.start()
        base = self.settle(s)
        hello = tlskit.client_hello("a.test")
        for reset in (False, True):
            c = wskit.Conn.connect(s.port)
            c.send(hello[:40])
            time.sleep(0.1)
            c.reset() if reset else c.close()
        self.served_now(s, "after clients left mid-handshake")
        self.wait_errors(s, base, {"closed": 2})
        self.assertEqual(len(self.logged(s, 'cause "closed"')), 1, s.stderr_text())


class Reload(TlsTest):
    """SIGHUP reloads the certificates: wss tunnels stay up; a broken file is refused."""

    def open_tunnels(self, s, n, version=None):
        out = []
        for i in range(n):
            c = tlskit.ws_open(s.port, self.ca_ctx(version or ("1.2", "1.3")[i % 2]),
                               "/t%d" % i, "a.test")
            self.addCleanup(c.close)
            self.assertEqual(tls_echo(c, OP_TEXT, b"hello %d" % i), (OP_TEXT, b"hello %d" % i))
            out.append(c)
        return out

    def test_renewed_certificate(self):
        b = self.bench("b1")
        s = self.simple_tls(b.port, {"cert-a": self.entry("a", "site")})
        tunnels = self.open_tunnels(s, 6)
        for c in tunnels:
            self.peer_is(c.conn.sock, "a")
        old_serial, new_serial = serial_of(CERTS["a"][0]), serial_of(CERTS["a2"][0])
        self.assertNotEqual(old_serial, new_serial)
        # the renewal: new files under the same names, the config file itself unchanged
        self.install(CERTS["a2"][0], "site.pem")
        self.install(CERTS["a2"][1], "site.key")
        self.reload(s)
        for i, c in enumerate(tunnels):
            with self.subTest(tunnel=i):
                data = pattern(100000 + i)
                self.assertEqual(tls_echo(c, OP_BINARY, data), (OP_BINARY, data))
        for version in ("1.2", "1.3"):
            with self.subTest(version=version):
                c = tlskit.connect(s.port, self.ca_ctx(version), "a.test")
                got = tlskit.der_serial(c.getpeercert(binary_form=True))
                c.close()
                self.assertEqual(got, new_serial, "a new connection after the reload")
                with tlskit.ws_open(s.port, self.ca_ctx(version), "/new", "a.test") as w:
                    self.assertEqual(tls_echo(w, OP_TEXT, b"new"), (OP_TEXT, b"new"))
        for c in tunnels:
            c.send_close(1000)
            self.assertEqual(c.recv_close()[0], 1000)

    def reload_cfg(self, s, change):
        with open(s.cfg_path) as f:
            cfg = json.load(f)
        change(cfg)
        with open(s.cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)

    def test_broken_certificate_refused(self):
        b = self.bench("b1")
        s = self.simple_tls(b.port, {"cert-a": self.entry("a", "site")})
        tunnels = self.open_tunnels(s, 3)
        cases = [("not PEM", lambda: self.write("site.pem", b"garbage\n")),
                 ("expired", lambda: (self.install(CERTS["expired"][0], "site.pem"),
                                      self.install(CERTS["expired"][1], "site.key"))),
                 ("key of another", lambda: (self.install(CERTS["a"][0], "site.pem"),
                                             self.install(CERTS["other-key"], "site.key"))),
                 ("missing", lambda: os.unlink(os.path.join(self.conf, "site.pem"))),
                 ("no entry", lambda: self.reload_cfg(s, lambda c: c["forwardingRules"][0][
                     "properties"]["serverCertificates"].append("cert-nowhere")))]
        with open(s.cfg_path) as f:
            good = f.read()
        for what, damage in cases:
            with self.subTest(damage=what):
                with open(s.cfg_path, "w") as f:
                    f.write(good)
                self.install(CERTS["a"][0], "site.pem")
                self.install(CERTS["a"][1], "site.key")
                n = len(self.log_lines(s, "refused"))
                damage()
                self.reload(s, refused=True)
                said = "\n".join(self.log_lines(s, "")[-6:])
                self.assertIn({"no entry": "cert-nowhere", "expired": "expired on",
                               "key of another": "site.key", "missing": "site.pem",
                               "not PEM": "site.pem"}[what], said)
                if what != "no entry":
                    self.assertIn('sluice.certificates["cert-a"]', said)
                self.assertEqual(len(self.log_lines(s, "refused")), n + 1)
                self.assertTrue(s.alive())
                r, info = tlskit.https(s.port, self.ca_ctx(), path="/still", sni="a.test")
                self.assertEqual(r.status, 200)
                self.assertEqual(info["der"], tlskit.der(CERTS["a"][0]),
                                 "the old certificate is no longer served")
                for i, c in enumerate(tunnels):
                    self.assertEqual(tls_echo(c, OP_TEXT, b"still %d" % i),
                                     (OP_TEXT, b"still %d" % i))
        # repaired: a reload with a renewed certificate is taken again
        with open(s.cfg_path, "w") as f:
            f.write(good)
        self.install(CERTS["a2"][0], "site.pem")
        self.install(CERTS["a2"][1], "site.key")
        self.reload(s)
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/repaired", sni="a.test")
        self.assertEqual(info["der"], tlskit.der(CERTS["a2"][0]))


    def test_reload_turns_tls_on_and_off_and_adds_a_certificate(self):
        """A listener keeps its port across reloads that add TLS to it, add a certificate for
        another name, and take TLS off again; each new connection follows the running config,
        while a wss tunnel opened under the first TLS config keeps going."""
        py = self.pyback("p1")
        port = wskit.free_port()
        plain_cfg = config(port, [forward("tg")], [group("tg", [target(py.port)])])
        s = self.sluice(plain_cfg)
        self.assertEqual(wskit.http(port, path="/plain-1").status, 200)
        tls_cfg = self.tls_config(port, [forward("tg")], [group("tg", [target(py.port)])],
                                  {"cert-a": self.entry("a")})
        tls_cfg["sluice"]["admin"] = plain_cfg["sluice"]["admin"]
        self.reload(s, tls_cfg)
        r, info = tlskit.https(port, self.ca_ctx(), path="/tls-1", sni="b.test")
        self.assertEqual(r.status, 200)
        self.assertEqual(info["der"], tlskit.der(CERTS["a"][0]), "b.test before cert-b")
        w = tlskit.ws_open(port, self.ca_ctx(), "/ws/echo", "a.test")
        self.addCleanup(w.close)
        self.assertEqual(tls_echo(w, OP_TEXT, b"one"), (OP_TEXT, b"one"))
        tls_cfg["sluice"]["certificates"]["cert-b"] = self.entry("b")
        tls_cfg["forwardingRules"][0]["properties"]["serverCertificates"].append("cert-b")
        self.reload(s, tls_cfg)
        r, info = tlskit.https(port, self.ca_ctx(), path="/tls-2", sni="b.test")
        self.assertEqual(info["der"], tlskit.der(CERTS["b"][0]), "b.test after cert-b came")
        self.assertEqual(tls_echo(w, OP_TEXT, b"two"), (OP_TEXT, b"two"))
        self.reload(s, plain_cfg)
        self.assertEqual(wskit.http(port, path="/plain-2").status, 200)
        with self.assertRaises((ssl.SSLError, OSError)):
            tlskit.https(port, self.ca_ctx(), path="/never", timeout=2)
        self.assertEqual(tls_echo(w, OP_TEXT, b"three"), (OP_TEXT, b"three"))
        by = {req.target: req.header("X-Forwarded-Proto") for req in py.requests()}
        self.assertEqual(by.get("/plain-1"), "http")
        self.assertEqual(by.get("/tls-1"), "https")
        self.assertEqual(by.get("/tls-2"), "https")
        self.assertEqual(by.get("/plain-2"), "http")
        self.assertNotIn("/never", by)

    def test_certificate_expiring_soon_is_a_warning(self):
        """sluice run starts with a certificate expiring within 14 days, saying so; a reload to
        one is taken, saying so again."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port, {"cert-a": self.entry("soon", "site")})
        self.assertTrue(wskit.wait_until(lambda: "within 14 days" in s.stderr_text(), PROMPT),
                        s.stderr_text())
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/soon", sni="a.test")
        self.assertEqual(info["der"], tlskit.der(CERTS["soon"][0]))
        self.install(CERTS["a"][0], "site.pem")
        self.install(CERTS["a"][1], "site.key")
        self.reload(s)
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/later", sni="a.test")
        self.assertEqual(info["der"], tlskit.der(CERTS["a"][0]))
        self.install(CERTS["soon"][0], "site.pem")
        self.install(CERTS["soon"][1], "site.key")
        self.reload(s)
        self.assertEqual(s.stderr_text().count("within 14 days"), 2, s.stderr_text())
        r, info = tlskit.https(s.port, self.ca_ctx(), path="/soon-again", sni="a.test")
        self.assertEqual(info["der"], tlskit.der(CERTS["soon"][0]))

    def test_reloads_under_load(self):
        """HTTPS requests (new and resumed sessions) and wss echoes go on without a failure
        while SIGHUP swaps the certificate back and forth."""
        b = self.bench("b1")
        s = self.simple_tls(b.port, {"cert-a": self.entry("a", "site")})
        stop = threading.Event()
        errors, counts = [], [0, 0]
        lock = threading.Lock()

        def https_loop(version):
            ctx = self.ca_ctx(version)
            session = None
            while not stop.is_set():
                try:
                    r, info = tlskit.https(s.port, ctx, path="/load", sni="a.test",
                                           session=session)
                    if r.status != 200:
                        raise AssertionError("status %d" % r.status)
                    session = info["session"] if counts[0] % 2 else None
                    with lock:
                        counts[0] += 1
                except Exception as e:  # collected and reported below
                    errors.append("https %s: %r" % (version, e))
                    return

        def wss_loop(i):
            try:
                with tlskit.ws_open(s.port, self.ca_ctx(), "/w%d" % i, "a.test") as c:
                    n = 0
                    while not stop.is_set():
                        data = pattern(1000 + 37 * n)
                        if tls_echo(c, OP_BINARY, data, timeout=PROMPT) != (OP_BINARY, data):
                            raise AssertionError("echo differs")
                        n += 1
                        with lock:
                            counts[1] += 1
            except Exception as e:  # collected and reported below
                errors.append("wss %d: %r" % (i, e))

        threads = [threading.Thread(target=https_loop, args=(v,), daemon=True)
                   for v in ("1.2", "1.3", "1.2", "1.3")]
        threads += [threading.Thread(target=wss_loop, args=(i,), daemon=True)
                    for i in range(2)]
        for th in threads:
            th.start()
        try:
            for i in range(6):
                time.sleep(0.25)
                cert = "a2" if i % 2 == 0 else "a"
                self.install(CERTS[cert][0], "site.pem")
                self.install(CERTS[cert][1], "site.key")
                self.reload(s)
            time.sleep(0.25)
        finally:
            stop.set()
            for th in threads:
                th.join(PROMPT + 5)
        self.assertEqual(errors, [])
        self.assertGreater(counts[0], 10, "HTTPS requests done during the reloads")
        self.assertGreater(counts[1], 10, "wss echoes done during the reloads")
        self.assertTrue(s.alive())


class Shutdown(TlsTest):
    def test_sigterm_with_wss_tunnels_open(self):
        """SIGTERM: no new connections; open wss tunnels work until they close; exit 0 once
        the last one closes."""
        b = self.bench("b1")
        s = self.simple_tls(b.port, drainTimeout=30000)
        tunnels = [tlskit.ws_open(s.port, self.ca_ctx(("1.2", "1.3")[i % 2]), "/d%d" % i,
                                  "a.test") for i in range(4)]
        for c in tunnels:
            self.addCleanup(c.close)
            self.assertEqual(tls_echo(c, OP_TEXT, b"before"), (OP_TEXT, b"before"))
        s.signal(signal.SIGTERM)
        self.assertTrue(wskit.wait_until(lambda: not wskit.port_open(s.port), PROMPT),
                        "still accepting after SIGTERM")
        for i, c in enumerate(tunnels):
            self.assertEqual(tls_echo(c, OP_BINARY, pattern(70000)),
                             (OP_BINARY, pattern(70000)), "tunnel %d after SIGTERM" % i)
            self.assertTrue(s.alive(), "exited with tunnels open")
            self.closeTunnel(c)
        self.assertExitsOnceTunnelsClosed(s)

    def test_sigterm_idle_https_and_pending_handshake_do_not_hold_exit(self):
        """An idle HTTPS keep-alive connection and a handshake that is not done do not make
        SIGTERM wait for drainTimeout (as an idle plain keep-alive does not)."""
        py = self.pyback("p1")
        s = self.simple_tls(py.port, drainTimeout=30000)
        idle = tlskit.conn(s.port, self.ca_ctx(), "a.test")
        self.addCleanup(idle.close)
        idle.send(request_bytes("GET", "/"))
        self.assertEqual(read_response(idle).status, 200)
        half = wskit.Conn.connect(s.port)
        self.addCleanup(half.close)
        half.send(tlskit.client_hello()[:30])
        time.sleep(0.1)
        s.signal(signal.SIGTERM)
        rc = s.wait(PROMPT)
        self.assertEqual(rc, 0, "exit status with an idle HTTPS connection and a pending "
                         "handshake (None: still running)")
        self.assertClosedPromptly(idle, "the idle HTTPS connection", timeout=1)
        self.assertClosedPromptly(half, "the pending handshake", timeout=1)

    def test_sigterm_while_tls_clients_close(self):
        """SIGTERM in the middle of TLS clients closing and failing their handshakes: sluice
        exits 0 and frees every connection (a TLS connection's bufferevent defers its
        callbacks, and one freed in the pass that stops the worker used to leak: only a
        sanitizer build sees that, and ASan's exit status 1 fails the test there).
        Three rounds, each with 40 keep-alive HTTPS connections closed and 20 handshakes
        refused by the client around the signal."""
        py = self.pyback("p1")
        for rnd in range(3):
            with self.subTest(round=rnd):
                s = self.simple_tls(py.port, drainTimeout=30000)
                idle = []
                for _ in range(40):
                    c = tlskit.conn(s.port, self.ca_ctx(), "a.test")
                    self.addCleanup(c.close)
                    c.send(request_bytes("GET", "/"))
                    self.assertEqual(read_response(c).status, 200)
                    idle.append(c)
                refused = []
                going = threading.Event()

                def refuse():
                    # the client does not trust sluice's certificate: it aborts the handshake
                    for _ in range(20):
                        try:
                            tlskit.connect(s.port, tlskit.client_ctx(CERTS["self"][0]),
                                           "a.test").close()
                        except ssl.SSLError as e:
                            refused.append(e)
                        except OSError:
                            pass  # the listener is gone: SIGTERM
                        if len(refused) == 3:
                            going.set()  # the rest overlap the signal
                    going.set()
                th = threading.Thread(target=refuse)
                th.start()
                going.wait(PROMPT)
                for c in idle[:20]:
                    c.close()
                s.signal(signal.SIGTERM)
                for c in idle[20:]:
                    c.close()
                th.join(PROMPT)
                self.assertEqual(s.wait(PROMPT), 0, "exit status (None: still running)")
                self.assertTrue(refused, "no handshake was refused: the test tested nothing")

    def test_sigterm_drain_timeout_cuts_wss_tunnels(self):
        b = self.bench("b1")
        s = self.simple_tls(b.port, drainTimeout=1500)
        tunnels = [tlskit.ws_open(s.port, self.ca_ctx(), "/d%d" % i, "a.test")
                   for i in range(3)]
        for c in tunnels:
            self.addCleanup(c.close)
            self.assertEqual(tls_echo(c, OP_TEXT, b"x"), (OP_TEXT, b"x"))
        # a connection mid-handshake and an idle HTTPS keep-alive one too
        half = wskit.Conn.connect(s.port)
        self.addCleanup(half.close)
        half.send(tlskit.client_hello()[:30])
        idle = tlskit.conn(s.port, self.ca_ctx(), "a.test")
        self.addCleanup(idle.close)
        idle.send(request_bytes("GET", "/"))
        self.assertEqual(read_response(idle).status, 200)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        rc = s.wait(1.5 + PROMPT)
        self.assertEqual(rc, 0, "exit status after drainTimeout 1500 (None: still running)")
        self.assertGreater(time.monotonic() - t0, 1.0, "exited before drainTimeout")
        for c in tunnels:
            self.assertClosedPromptly(c, "a tunnel cut at drainTimeout", timeout=1)


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_tls"))
