#!/usr/bin/python3
"""Tests of bench/run, the benchmark suite: its arithmetic (medians, ratios, the bars, computed
from the figures), its config templates, and one end-to-end --quick run of direct and
sluice-1t (no peers, no install: about 10 s).

Run as (the same arguments as the other integration tests):
    /usr/bin/python3 tests/integration/test_bench_run.py SLUICE SLUICE_BENCH SOURCE_ROOT
bench/run is given the directory of SLUICE with --no-build. Standard library only.
"""
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_proxy  # noqa: E402  (run_main, and SLUICE / SRC once it has run)

RUN = None  # bench/run, loaded as a module


def setUpModule():
    global RUN
    RUN = load_run()


def load_run():
    path = os.path.join(test_proxy.SRC, "bench", "run")
    loader = importlib.machinery.SourceFileLoader("bench_run", path)
    spec = importlib.util.spec_from_loader("bench_run", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


PLAN2 = {"cpus": [0, 1], "load": [0], "proxy": [1], "short": "", "text": ""}
PLAN4 = {"cpus": [0, 1, 2, 3], "load": [0, 1], "proxy": [2, 3], "short": "", "text": ""}


def raw_from(figures):
    """figures: {system: {workload: values dict}} plus "idle": {system: values}; every figure
    once, with made-up CPU shares."""
    raw = {"runs": [], "idle": []}
    for s, per in figures.items():
        for wl, v in per.items():
            if wl == "idle":
                raw["idle"].append({"system": s, "repeat": 0, "values": v})
            else:
                raw["runs"].append({"system": s, "workload": wl, "repeat": 0, "values": v,
                                    "cpu": {"load": 0.99, "proxy": 0.5}})
    return raw


def figures(direct, sl1, sl2, peer):
    """Four workloads' figures: each argument is (mib1, mib50, msgs, p50, p99, ups)."""
    def wl(t):
        return {"bulk1": {"mib": t[0]}, "bulk50": {"mib": t[1]},
                "rr": {"msgs": t[2], "p50": t[3], "p99": t[4]}, "upgrades": {"ups": t[5]}}
    f = {"direct": wl(direct), "sluice-1t": wl(sl1), "sluice-2t": wl(sl2)}
    f["haproxy"] = wl(peer)
    f["nginx"] = wl(tuple(x * 0.9 if i not in (3, 4) else x * 1.1 for i, x in enumerate(peer)))
    f["sluice-1t"]["idle"] = {"bytes": 700.0, "fds": 2.0002}
    f["sluice-2t"]["idle"] = {"bytes": 1100.0, "fds": 2.0004}
    f["haproxy"]["idle"] = {"bytes": 4600.0, "fds": 2.0}
    f["nginx"]["idle"] = {"bytes": 18000.0, "fds": 2.0}
    return f


SYSTEMS = ["direct", "sluice-1t", "sluice-2t", "haproxy", "nginx"]


class Arithmetic(unittest.TestCase):
    def stats(self, figs, plan=PLAN2):
        return RUN.summarize(raw_from(figs), SYSTEMS, plan)

    def test_ratios_and_best_peer(self):
        st = self.stats(figures((1000, 500, 100000, 10, 20, 10000),
                                (960, 460, 95000, 11, 24, 9500),
                                (1800, 900, 180000, 9, 18, 18000),
                                (900, 400, 80000, 12, 30, 9000)))
        e = st["bulk1"]["sluice-1t"]
        self.assertAlmostEqual(e["x_direct"], 0.96)
        self.assertEqual(e["best_peer"], "haproxy")           # highest throughput
        self.assertAlmostEqual(e["x_peer"], 960 / 900)
        p99 = st["rr_p99"]["sluice-1t"]
        self.assertEqual(p99["best_peer"], "haproxy")         # lowest latency: 30 < 33
        self.assertAlmostEqual(p99["x_direct"], 1.2)
        self.assertAlmostEqual(p99["x_peer"], 24 / 30)
        self.assertEqual(st["idle_bytes"]["sluice-1t"]["best_peer"], "haproxy")
        self.assertNotIn("direct", st["idle_bytes"])         # no proxy, no idle figure

    def test_bars_met(self):
        st = self.stats(figures((1000, 500, 100000, 10, 20, 10000),
                                (960, 460, 95000, 11, 24, 9500),
                                (1800, 900, 180000, 9, 18, 18000),
                                (900, 400, 80000, 12, 30, 9000)))
        checks = dict(RUN.bar_checks(st, "sluice-1t"))
        for key, cs in checks.items():
            for text, met in cs:
                self.assertTrue(met, "%s: %s" % (key, text))
        # sluice-2t: 1100 bytes per tunnel is over 1 KiB
        two = dict(RUN.bar_checks(st, "sluice-2t"))
        self.assertEqual([m for _, m in two["idle_bytes"]], [False, True])

    def test_bars_missed(self):
        st = self.stats(figures((1000, 500, 100000, 10, 20, 10000),
                                (940, 440, 89000, 11, 27, 8900),
                                (940, 440, 89000, 11, 27, 8900),
                                (950, 400, 80000, 12, 30, 9000)))
        checks = dict(RUN.bar_checks(st, "sluice-1t"))
        self.assertEqual([m for _, m in checks["bulk1"]], [False, False])  # 0.94 < 0.95; < peer
        self.assertEqual([m for _, m in checks["bulk50"]], [False, True])
        self.assertEqual([m for _, m in checks["rr"]], [False, True])
        self.assertEqual([m for _, m in checks["rr_p99"]], [False, True])  # 1.35 > 1.3
        self.assertEqual([m for _, m in checks["upgrades"]], [False, False])
        self.assertEqual([m for _, m in checks["idle_fds"]], [True])       # 2.0 ties at 2.0

    def test_medians_and_median_run_cpu(self):
        raw = {"runs": [], "idle": []}
        for i, v in enumerate([300.0, 100.0, 200.0]):
            raw["runs"].append({"system": "direct", "workload": "bulk1", "repeat": i,
                                "values": {"mib": v}, "cpu": {"load": v / 1000,
                                                               "proxy": 0.0}})
        raw["runs"].append({"system": "direct", "workload": "bulk1", "repeat": 3,
                            "values": {}, "error": "exit status 1"})
        e = RUN.summarize(raw, ["direct"], PLAN2)["bulk1"]["direct"]
        self.assertEqual((e["median"], e["min"], e["max"], e["n"], e["of"]),
                         (200.0, 100.0, 300.0, 3, 4))
        self.assertAlmostEqual(e["cpu"]["load"], 0.2)  # the median run's shares

    def test_scaling_needs_two_proxy_cpus(self):
        figs = figures((1000, 500, 100000, 10, 20, 10000), (960, 460, 95000, 11, 24, 9500),
                       (1800, 900, 180000, 9, 18, 18000), (900, 400, 80000, 12, 30, 9000))
        lines, checks, cpus = RUN.scaling(self.stats(figs, PLAN2), PLAN2)
        self.assertEqual((checks, cpus), ([], 1))
        self.assertAlmostEqual(dict((k, r) for k, _, r in lines)["bulk50"], 900 / 460)
        lines, checks, cpus = RUN.scaling(self.stats(figs, PLAN4), PLAN4)
        self.assertEqual(cpus, 2)
        self.assertEqual([m for _, _, m in checks], [True, True, True])

    def test_report_renders(self):
        st = self.stats(figures((1000, 500, 100000, 10, 20, 10000),
                                (960, 460, 95000, 11, 24, 9500),
                                (1800, 900, 180000, 9, 18, 18000),
                                (900, 400, 80000, 12, 30, 9000)))
        ctx = {"stats": st, "systems": SYSTEMS, "plan": PLAN2, "runs": 1, "seconds": 1,
               "idle_n": 200, "idle_runs": 1, "hold": 1, "quick": True, "mode": "quick",
               "date": "today", "elapsed": 30, "failures": [], "notes": [],
               "machine": {"cpu": "x", "cpus_online": 2, "cpus_usable": 2, "ram": "1 GiB",
                           "kernel": "k", "debian": "12", "nofile_hard": 20000},
               "versions": {"sluice": "abc"}, "commands": ["a b"], "configs": {},
               "tmp": "/nonexistent", "argv": "bench/run --quick", "pngs": []}
        text, md = RUN.report(ctx)
        self.assertIn("| workload | direct | sluice-1t | sluice-2t | haproxy | nginx | "
                      "bar (sluice-1t) |", md)
        self.assertIn("met: 0.96× ≥ 0.95× direct", md)
        headline = md.split("## Headline")[1].split("**sluice 2 threads")[0]
        self.assertNotIn("missed", headline)
        self.assertIn("**missed**: 1100 ≤ 1024 bytes", md)  # sluice-2t, in the bars table
        self.assertIn("n/a on this machine", md)


class Templates(unittest.TestCase):
    def test_every_template_renders(self):
        vals = {"LISTEN_PORT": 1, "TARGET_PORT": 2, "THREADS": 1, "MAXCONN": 9900,
                "ULIMIT_N": 20000, "MAXPIPES": "", "SPLICE": "", "TMP": "/tmp/x",
                "SLUICE_SPLICE": "false", "BUSY_POLL": 0, "BUSY_POLLING": "",
                "WORKER_CONNECTIONS": 22500, "BUFFER": "", "BIND_SSL": "", "LISTEN_SSL": "",
                "SSL_CERT": "", "SERVER_CERTS": "[]", "CERTIFICATES": "{}"}
        for name in ("haproxy.cfg", "nginx.conf", "sluice.json"):
            text = RUN.render(name, vals)
            self.assertNotIn("@", text.replace("# HAProxy", ""), name)
        conf = json.loads(RUN.render("sluice.json", vals))
        self.assertEqual(conf["sluice"]["threads"], 1)
        self.assertEqual(conf["sluice"]["accessLog"], "off")
        self.assertIs(conf["sluice"]["splice"], False)
        self.assertEqual(conf["sluice"]["busyPoll"], 0)

    def test_sluice_config_checks(self):
        """The plain and the TLS sluice configs pass `sluice check` without a warning."""
        with tempfile.TemporaryDirectory() as d:
            crt, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                            "/CN=localhost", "-keyout", key, "-out", crt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           timeout=60)
            for certs, table in (("[]", {}), ('["bench"]', {"bench": {"cert": crt,
                                                                     "key": key}})):
                vals = {"LISTEN_PORT": 18080, "TARGET_PORT": 9001, "THREADS": 2,
                        "SLUICE_SPLICE": "true", "BUSY_POLL": RUN.SLUICE_BUSY_POLL_US,
                        "SERVER_CERTS": certs,
                        "CERTIFICATES": json.dumps(table)}
                path = os.path.join(d, "s.json")
                with open(path, "w") as f:
                    f.write(RUN.render("sluice.json", vals))
                r = subprocess.run([test_proxy.SLUICE, "check", path], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=10)
                self.assertEqual(r.returncode, 0, r.stdout.decode())
                self.assertIn(b" 0 warnings", r.stdout)


class QuickRun(unittest.TestCase):
    def test_quick_direct_and_sluice(self):
        build = os.path.dirname(test_proxy.SLUICE)
        committed = os.path.join(test_proxy.SRC, "bench", "RESULTS.md")
        before = os.stat(committed).st_mtime_ns if os.path.exists(committed) else None
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, os.path.join(test_proxy.SRC, "bench", "run"), "--quick",
                                "--skip-install", "--no-build", "--build", build,
                                "--only", "sluice-1t,sluice-busypoll,sluice-tls", "--out", out],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            log = r.stdout.decode("utf-8", "replace")
            self.assertEqual(r.returncode, 0, log)
            with open(os.path.join(out, "results.json")) as f:
                res = json.load(f)
            self.assertEqual(res["failures"], [])
            self.assertEqual(res["systems"], ["direct", "sluice-1t", "sluice-busypoll",
                                              "sluice-tls"])
            wls = {(x["system"], x["workload"]) for x in res["raw"]["runs"] if x["values"]}
            # 4 ws:// workloads on direct, sluice-1t and sluice-busypoll, the 3 wss:// ones on
            # sluice-tls only
            self.assertEqual(wls, {(s, w) for s in ("direct", "sluice-1t", "sluice-busypoll")
                                   for w in ("bulk1", "bulk50", "rr", "upgrades")} |
                             {("sluice-tls", w) for w in ("wss_bulk1", "wss_rr", "wss_upgrades")})
            self.assertEqual([x["system"] for x in res["raw"]["idle"]], ["sluice-1t"])
            self.assertEqual(res["raw"]["idle"][0]["tunnels"], 200)
            with open(os.path.join(out, "RESULTS.md")) as f:
                md = f.read()
            self.assertIn("| workload | direct | sluice-1t | bar (sluice-1t) |", md)
            self.assertIn("sluice-bench bulk --conns 1 --size 64k", md)
            wss = md.split("## wss:// (TLS terminated by the proxy)")[1].split("\n## ")[0]
            self.assertIn("| workload | sluice-tls |", wss)
            self.assertIn("× its ws://", wss)  # compared with sluice-1t's ws:// figure
            self.assertNotIn("failed", wss)
            # busy polling: its own table, beside sluice-1t's figures; not in the headline
            busy = md.split("## Busy polling (opt-in in both)")[1].split("\n## ")[0]
            self.assertIn("| workload | sluice-busypoll |", busy)
            self.assertIn("× without", busy)
            self.assertNotIn("failed", busy)
            self.assertEqual(set(res["busy_poll_medians"]["upgrades"]), {"sluice-busypoll"})
            self.assertIn('"busyPoll": %d' % RUN.SLUICE_BUSY_POLL_US,
                          md.split("<summary>$TMP/sluice-busypoll.json</summary>")[1].split("</details>")[0])
        # --quick never writes over the committed results
        self.assertEqual(before, os.stat(committed).st_mtime_ns if os.path.exists(committed)
                         else None)


if __name__ == "__main__":
    sys.exit(test_proxy.run_main("test_bench_run"))
