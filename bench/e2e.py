#!/usr/bin/env python3
"""persoflow end-to-end benchmark (docs/PERFORMANCE.md "The end-to-end bench").

For each profile and key-handling mode, in one run on one machine:

  1. a SoftHSM token in a temporary directory with every key the reference profiles use
     (made with `persoflow keys generate` / `keys import`), a generated issuer file of CARDS
     cards (CMS AES-256-GCM) and its SE registry;
  2. PKCS#11 calls per card, by function: import and prep of 1,000 and of 2,000 cards
     through the fault-injection shim (no fault rule), the difference over 1,000 (the
     run's fixed cost cancels out);
  3. --rounds rounds (default 3), each: import (timed), prep with the default workers,
     prep with 1 worker and prep in one process (each timed, over a fresh copy of the
     registry): wall time, cards/s, CPU utilisation (user + system of the command and its
     workers, over wall time, of nproc x 100%) and peak RSS (the largest process: the
     command or one of its workers); then the HSM floors of prep and import, from the
     call traces the shim recorded of the 1,000-card runs (bench/hsm_floor,
     docs/fault-injection.md "Call trace"): the same PKCS#11 work calls replayed against
     the token in a tight loop, in 1 process and in as many processes as the command
     had workers;
  4. the crypto floor once (the same primitives through OpenSSL with reused contexts);
     each row is the median round, each ratio (to a floor, 2 workers over 1) the median
     of the ratios within the rounds, so that a ratio compares measurements minutes
     apart at most on a noisy machine; the JSON keeps every round;
  5. with --rss-cards N (default 1,000,000 when --rss is given): import, run and prep of
     the demo profile at 100,000 and at N cards, peak RSS of each (--rss-only: nothing
     else); the peak of a command is that of its largest process, parent or worker.

Prints a table per profile and mode, the issue's targets with the measured value and
whether each is met, and (last line, or --json FILE) everything as JSON.

    bench/e2e.py [--cards N] [--profiles P ...] [--modes strict host] [--rss | --rss-only] [--json FILE]

Needs a release build with the benchmarks and the test support (scripts/setup.sh release:
build/release/pipeline/persoflow, build/release/tests/libpersoflow_pkcs11_fault_shim.so,
build/release/bench/hsm_floor; --build names another build directory).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
REFERENCE = ["acme-debit-scp03.xml", "emv-payment-scp03.xml", "emv-payment-scp02.xml", "tsm-sp-onboarding.xml"]
TARGETS = {
    "import_cards_per_second": 200000,  # profiles without field-encrypted attributes
    "import_hsm_floor_ratio": 0.85,     # profiles with them
    "host_prep_cards_per_second": 50000,
    "strict_prep_hsm_floor_ratio": 0.85,
    "two_workers_over_one": 1.8,
    "rss_growth": 1.2,
    "rss_mib": 300,
}


def die(msg):
    print("e2e: " + msg, file=sys.stderr)
    sys.exit(2)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.bin = os.path.join(self.build, "pipeline", "persoflow")
        self.shim = os.path.join(self.build, "tests", "libpersoflow_pkcs11_fault_shim.so")
        self.floor = os.path.join(self.build, "bench", "hsm_floor")
        for f in (self.bin, self.shim, self.floor):
            if not os.path.exists(f):
                die(f + " is missing: build with scripts/setup.sh release (or --build DIR)")
        self.cores = os.cpu_count() or 1

    # -- processes ---------------------------------------------------------------------

    def run(self, cmd, env):
        """Runs cmd (untimed); its output, or the end of the bench when it fails."""
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            die("failed (exit %d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr))
        return {"out": p.stdout, "err": p.stderr}

    @staticmethod
    def cpu_ticks():
        """The machine's CPU time so far (/proc/stat, all CPUs): (steal, total) ticks."""
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest and guest_nice are in user)
        return fields[7] if len(fields) > 7 else 0, sum(fields[:8])

    def timed(self, cmd, env):
        """Wall time, CPU utilisation (user + system of the command and its reaped children,
        over wall time), peak RSS (os.wait4 reports the largest RSS among the process and
        its reaped descendants: the command or one of its workers) and the share of the
        machine's CPU time the hypervisor gave to others meanwhile (steal, /proc/stat): a
        virtual machine's speed, which the other figures depend on."""
        steal0, total0 = self.cpu_ticks()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.execve(cmd[0], cmd, env)
            finally:
                os._exit(127)
        _, status, ru = os.wait4(pid, 0)
        wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            die("failed (%s): %s" % (os.waitstatus_to_exitcode(status), " ".join(cmd)))
        steal1, total1 = self.cpu_ticks()
        return {"seconds": round(wall, 3), "cpu_percent": round(100 * (ru.ru_utime + ru.ru_stime) / wall),
                "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
                "steal_percent": round(100 * (steal1 - steal0) / (total1 - total0)) if total1 > total0 else 0}

    # -- a token with the reference profiles' keys ---------------------------------------

    def make_token(self, work):
        tokens = os.path.join(work, "tokens")
        os.makedirs(tokens)
        conf = os.path.join(work, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % tokens)
        env = dict(os.environ, SOFTHSM2_CONF=conf, PERSOFLOW_TOKEN="bench", PERSOFLOW_PIN="1234")
        self.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--so-pin", "12345678", "--pin",
                  "1234"], env)

        def gen(label, typ, usage):
            self.run([self.bin, "keys", "generate", "--label", label, "--type", typ, "--usage", usage], env)

        for k in ("dkep-pan", "dkep-track", "dkep-general"):
            gen(k, "aes256", "encrypt,decrypt")
        gen("dkep-secret", "aes256", "encrypt,decrypt,wrap,unwrap")
        gen("xof-integrity", "aes256", "sign,verify")
        gen("pin-tk-acme", "aes128", "wrap,unwrap")
        # The masters and the host-challenge key also get the encrypt usage: host mode's
        # batched derivation uses it (docs/keys.md); strict mode signs as before.
        gen("host-challenge", "aes128", "sign,encrypt")
        gen("kmc-scp03", "aes128", "sign,encrypt")
        gen("kmc-sp", "aes128", "sign,encrypt")
        gen("kmc-scp02", "des2", "derive,encrypt")
        for k in ("imk-ac", "imk-smi", "imk-smc"):
            gen(k, "des2", "derive,encrypt")
        tk = os.urandom(32).hex()
        c1, c2 = os.path.join(work, "c1"), os.path.join(work, "c2")
        with open(c1, "w") as f:
            f.write(tk + "\n")
        with open(c2, "w") as f:
            f.write("00" * 31 + "01\n")
        self.run([self.bin, "keys", "import", "--label", "tk-acme-01", "--type", "aes256", "--usage", "wrap,unwrap",
                  "--component-file", c1, "--component-file", c2], env)
        self.tk = tk[:62] + "%02x" % (int(tk[62:], 16) ^ 1)
        return env

    # -- one profile, one mode -----------------------------------------------------------

    def profile_variant(self, work, profile, mode):
        text = open(profile).read()
        if mode == "host":
            if 'key-handling="strict"' not in text:
                die(profile + ': no key-handling="strict" to switch to host')
            text = text.replace('key-handling="strict"', 'key-handling="host"')
        name = os.path.join(work, "%s-%s.xml" % (os.path.basename(profile)[:-4], mode))
        with open(name, "w") as f:
            f.write(text)
        return name

    def nopin_variant(self, work, profile):
        """The profile without its field-encrypted attribute (the PIN block) and key class."""
        text = open(profile).read()
        text = re.sub(r'\s*<attribute name="pin_block".*?/>', "", text, flags=re.S)
        text = re.sub(r'\s*<key-class name="secret"[^>]*/>', "", text)
        if "field-encryption" in text:
            return None
        name = os.path.join(work, os.path.basename(profile)[:-4] + "-nopin.xml")
        with open(name, "w") as f:
            f.write(text)
        return name

    def gen_issuer(self, env, profile, cards, out, registry_csv=None):
        cmd = [self.bin, "gen-issuer", "--profile", profile, "--cards", str(cards), "--out", out, "--kek-id", "A1B2C3D4",
               "--tk-hex", self.tk, "--content-cipher", "aes-256-gcm", "--seed", "1"]
        if registry_csv:
            cmd += ["--registry-csv", registry_csv]
        self.run(cmd, env)

    def shim_env(self, env, counts, trace=None):
        e = dict(env, PERSOFLOW_SHIM_MODULE=SOFTHSM, PERSOFLOW_SHIM_COUNTS=counts)
        if trace:
            e["PERSOFLOW_SHIM_TRACE"] = trace
        return e

    @staticmethod
    def per_card(a_path, b_path, n):
        a, b = json.load(open(a_path)), json.load(open(b_path))
        per = {k: round((b.get(k, 0) - a.get(k, 0)) / n, 4) for k in b}
        per = {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v != 0}
        return {"total": round(sum(per.values()), 3), "by_function": per}

    def floors(self, env, trace_n, trace_2n, n, processes, crypto=True, hsm=True):
        """HSM floor (hsm=True) in 1 process and in `processes` processes at once, and
        (crypto=True) the crypto floor, per card without the run's fixed calls (key lookups, KCVs, self-tests,
        the XOF's or the envelope's own work): the traces of the n- and 2n-card runs are
        replayed, and a card costs the difference over n. Each replay is the median of three
        (a single one varied by up to 25% here)."""
        def floor_cmd(trace, extra):
            return [self.floor, "--trace", trace, "--cards", str(n), "--module", SOFTHSM, "--token", "bench",
                    "--json"] + extra

        def per_repeat(trace, extra):
            """Median seconds of one replay of the trace, and the repetitions it took."""
            runs = []
            for _ in range(3):
                j = json.loads(self.run(floor_cmd(trace, extra), env)["out"].strip().splitlines()[-1])
                runs.append((j["seconds"] / j["repeat"], j["repeat"], j["work_calls_per_repeat"]))
            runs.sort()
            return runs[1]

        def rate(t_n, t_2n, cards_per_replay):
            return round(cards_per_replay / (t_2n - t_n)) if t_2n > t_n else None

        result = {}
        if crypto:
            c_n = per_repeat(trace_n, ["--openssl"])[0]
            c_2n = per_repeat(trace_2n, ["--openssl"])[0]
            result["crypto_1_thread"] = rate(c_n, c_2n, n)
        if not hsm:
            return result
        one_n, repeat_n, calls_n = per_repeat(trace_n, [])
        one_2n, repeat_2n, calls_2n = per_repeat(trace_2n, [])
        result.update({"hsm_1_process": rate(one_n, one_2n, n),
                       "hsm_work_calls_per_card": round((calls_2n - calls_n) / n, 3)})
        if processes > 1:
            # N processes started together, each replaying a trace the same number of times
            # (twice the one-process count: the slower ones run alone at the end); the wall
            # time until the last ends, per repetition. Start-up cancels in the difference.
            def together(trace, repeat):
                walls = []
                for _ in range(3):
                    t0 = time.monotonic()
                    procs = [subprocess.Popen(floor_cmd(trace, ["--repeat", str(repeat)]), env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                             for _ in range(processes)]
                    for p in procs:
                        _, err = p.communicate()
                        if p.returncode != 0:
                            die("hsm_floor failed: " + err)
                    walls.append((time.monotonic() - t0) / repeat)
                return sorted(walls)[1]

            repeat = 2 * max(repeat_n, repeat_2n)
            result["hsm_%d_processes" % processes] = rate(together(trace_n, repeat), together(trace_2n, repeat),
                                                         processes * n)
        return result

    def one(self, profile, mode, cards):
        work = tempfile.mkdtemp(prefix="persoflow-e2e-")
        try:
            env = self.make_token(work)
            p = self.profile_variant(work, profile, mode)
            res = {"profile": os.path.basename(profile), "key_handling": mode, "cards": cards}
            issuer, reg_csv, reg = (os.path.join(work, n) for n in ("in.der", "registry.csv", "registry.db"))
            self.gen_issuer(env, p, cards, issuer, reg_csv)
            self.run([self.bin, "registry", "import", "--db", reg, "--csv", reg_csv], env)
            xof = os.path.join(work, "cards.xof")

            def timed_import():
                out = os.path.join(work, "round.xof")
                report = os.path.join(work, "import.json")
                t = self.timed([self.bin, "import", "--profile", p, "--in", issuer, "--out", out, "--report", report],
                               env)
                t["cards_per_second"] = round(cards / t["seconds"])
                t["workers"] = json.load(open(report))["workers"]["processes"]
                with open(out, "rb") as f:
                    t["xof"] = hashlib.sha256(f.read()).hexdigest()
                os.replace(out, xof)
                return t

            def prep(name, extra):
                r = os.path.join(work, name + ".db")
                shutil.copyfile(reg, r)
                report = os.path.join(work, name + ".json")
                out = os.path.join(work, name + ".bundle")
                for f in (out, out + ".rejects.jsonl"):
                    if os.path.exists(f):
                        os.unlink(f)
                t = self.timed([self.bin, "prep", "--profile", p, "--xof", xof, "--registry", r, "--out", out,
                                "--report", report] + extra, env)
                t["cards_per_second"] = round(cards / t["seconds"])
                t["workers"] = json.load(open(report))["workers"]["processes"]
                with open(out, "rb") as f:
                    t["bundle"] = hashlib.sha256(f.read()).hexdigest()
                return t

            # The XOF every prep reads (the import writes the same bytes each round) and the
            # PKCS#11 calls per card, with the call traces the floors replay, through the shim:
            # none of these is timed.
            first_import = timed_import()
            n = min(1000, cards // 2)
            shim_args = ["--module", self.shim]
            for k in (n, 2 * n):
                trace = os.path.join(work, "prep-%d.trace" % k)
                self.run([self.bin] + shim_args + ["prep", "--profile", p, "--xof", xof, "--registry", reg, "--out",
                          os.path.join(work, "calls-%d.bundle" % k), "--cards", "1-%d" % k],
                         self.shim_env(env, os.path.join(work, "prep-%d.counts" % k), trace))
            prep_calls = self.per_card(os.path.join(work, "prep-%d.counts" % n),
                                       os.path.join(work, "prep-%d.counts" % (2 * n)), n)
            for k in (n, 2 * n):
                small = os.path.join(work, "in-%d.der" % k)
                self.gen_issuer(env, p, k, small)
                trace = os.path.join(work, "import-%d.trace" % k)
                self.run([self.bin] + shim_args + ["import", "--profile", p, "--in", small, "--out",
                          os.path.join(work, "in-%d.xof" % k)],
                         self.shim_env(env, os.path.join(work, "import-%d.counts" % k), trace))
            import_calls = self.per_card(os.path.join(work, "import-%d.counts" % n),
                                         os.path.join(work, "import-%d.counts" % (2 * n)), n)
            prep_traces = (os.path.join(work, "prep-%d.trace" % n), os.path.join(work, "prep-%d.trace" % (2 * n)))
            import_traces = (os.path.join(work, "import-%d.trace" % n), os.path.join(work, "import-%d.trace" % (2 * n)))

            # --rounds rounds, each: the import, the three preps (auto, 1 worker, in process)
            # and the HSM floors of both, one after the other, so that a ratio compares
            # measurements taken minutes apart at most, on this noisy machine. Every rate
            # and ratio is the median of its rounds; the JSON keeps each round.
            configs = (("prep", "prep-auto", []), ("prep_1_worker", "prep-w1", ["--workers", "1"]),
                       ("prep_in_process", "prep-w0", ["--workers", "0"]))
            rounds = []
            for k in range(self.args.rounds):
                rd = {"import": first_import if k == 0 else timed_import()}
                for key, name, extra in configs:
                    rd[key] = prep(name, extra)
                rd["prep_floors"] = self.floors(env, *prep_traces, n, max(1, rd["prep"]["workers"]), crypto=False)
                rd["import_floors"] = self.floors(env, *import_traces, n, max(1, rd["import"]["workers"]),
                                                  crypto=False)
                rounds.append(rd)
            crypto_prep = self.floors(env, *prep_traces, n, 1, hsm=False)["crypto_1_thread"]
            crypto_import = self.floors(env, *import_traces, n, 1, hsm=False)["crypto_1_thread"]

            def median(values):
                values = sorted(v for v in values if v is not None)
                return values[len(values) // 2] if values else None

            def ratio(value, floor):
                return round(value / floor, 3) if floor else None

            for key in ("import",) + tuple(c[0] for c in configs):
                runs = [rd[key] for rd in rounds]
                row = dict(sorted(runs, key=lambda t: t["seconds"])[len(runs) // 2])  # the median round
                row["rounds_seconds"] = [t["seconds"] for t in runs]
                res[key] = row
            res["rounds"] = self.args.rounds
            res["bundles_identical"] = len({rd[key]["bundle"] for rd in rounds for key, _, _ in configs}) == 1
            res["xofs_identical"] = len({rd["import"]["xof"] for rd in rounds}) == 1
            for key, _, _ in configs:
                res[key].pop("bundle", None)
            res["import"].pop("xof", None)
            res["prep"]["pkcs11_calls_per_card"] = prep_calls
            res["import"]["pkcs11_calls_per_card"] = import_calls

            def floor_key(workers):
                return "hsm_%d_processes" % workers if workers > 1 else "hsm_1_process"

            def median_floors(name, crypto):
                keys = sorted({f for rd in rounds for f in rd[name]})
                out = {f: median(rd[name].get(f) for rd in rounds) for f in keys}
                out["crypto_1_thread"] = crypto
                out["rounds"] = [rd[name] for rd in rounds]
                return out

            res["prep"]["floors"] = median_floors("prep_floors", crypto_prep)
            res["import"]["floors"] = median_floors("import_floors", crypto_import)
            # Each ratio is taken within a round (a rate over the floor measured right after
            # it), then the median over the rounds.
            per_round = {
                "prep_hsm": [ratio(rd["prep"]["cards_per_second"], rd["prep_floors"].get(floor_key(rd["prep"]["workers"])))
                             for rd in rounds],
                "prep_1_worker_hsm": [ratio(rd["prep_1_worker"]["cards_per_second"], rd["prep_floors"]["hsm_1_process"])
                                      for rd in rounds],
                "import_hsm": [ratio(rd["import"]["cards_per_second"],
                                     rd["import_floors"].get(floor_key(rd["import"]["workers"]))) for rd in rounds],
                "two_workers_over_one": [round(rd["prep"]["cards_per_second"] / rd["prep_1_worker"]["cards_per_second"], 3)
                                         for rd in rounds if rd["prep"]["workers"] == 2],
            }
            res["ratios_by_round"] = per_round
            # The crypto floor is one thread's: prep uses its workers, or every core in one process.
            threads = min(self.cores, res["prep"]["workers"]) if res["prep"]["workers"] else self.cores
            res["prep"]["hsm_floor_ratio"] = median(per_round["prep_hsm"])
            res["prep"]["crypto_floor_ratio"] = ratio(res["prep"]["cards_per_second"], crypto_prep and crypto_prep * threads)
            res["prep_1_worker"]["hsm_floor_ratio"] = median(per_round["prep_1_worker_hsm"])
            # Import with workers against the floor in as many processes (the parent's own HSM
            # work, the envelope and the segment seals, is in the trace too).
            res["import"]["hsm_floor_ratio"] = median(per_round["import_hsm"])
            res["import"]["crypto_floor_ratio"] = ratio(res["import"]["cards_per_second"], crypto_import)
            two = per_round["two_workers_over_one"]
            res["two_workers_over_one"] = round(median(two), 2) if two else None
            return res
        finally:
            if not self.args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print("e2e: kept " + work, file=sys.stderr)

    def import_nopin(self, profile, cards):
        """Import of the profile without field-encrypted attributes (the 200k target)."""
        work = tempfile.mkdtemp(prefix="persoflow-e2e-")
        try:
            env = self.make_token(work)
            p = self.nopin_variant(work, profile)
            if p is None:
                return None
            issuer = os.path.join(work, "in.der")
            self.gen_issuer(env, p, cards, issuer)
            runs = []
            for _ in range(self.args.rounds):
                t = self.timed([self.bin, "import", "--profile", p, "--in", issuer, "--out", os.path.join(work, "x.xof")],
                               env)
                t["cards_per_second"] = round(cards / t["seconds"])
                runs.append(t)
            t = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])  # the median round
            t["rounds_seconds"] = [r["seconds"] for r in runs]
            t["profile"] = os.path.basename(p)
            return t
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def rss(self, profile, mode, small, large):
        out = {}
        for cards in (small, large):
            work = tempfile.mkdtemp(prefix="persoflow-e2e-")
            try:
                env = self.make_token(work)
                p = self.profile_variant(work, profile, mode)
                issuer, reg_csv, reg = (os.path.join(work, n) for n in ("in.der", "registry.csv", "registry.db"))
                self.gen_issuer(env, p, cards, issuer, reg_csv)
                self.run([self.bin, "registry", "import", "--db", reg, "--csv", reg_csv], env)
                xof = os.path.join(work, "cards.xof")
                imp = self.timed([self.bin, "import", "--profile", p, "--in", issuer, "--out", xof], env)
                # run (import + prep streamed, its own workers) over a copy of the registry
                reg_run = os.path.join(work, "registry-run.db")
                shutil.copyfile(reg, reg_run)
                rn = self.timed([self.bin, "run", "--profile", p, "--in", issuer, "--registry", reg_run, "--out-dir",
                                 os.path.join(work, "run")], env)
                shutil.rmtree(os.path.join(work, "run"), ignore_errors=True)
                os.unlink(issuer)
                prp = self.timed([self.bin, "prep", "--profile", p, "--xof", xof, "--registry", reg, "--out",
                                  os.path.join(work, "b.bundle")], env)
                out[str(cards)] = {"import_peak_rss_mib": imp["peak_rss_mib"], "prep_peak_rss_mib": prp["peak_rss_mib"],
                                   "run_peak_rss_mib": rn["peak_rss_mib"],
                                   "prep_cards_per_second": round(cards / prp["seconds"]),
                                   "run_cards_per_second": round(cards / rn["seconds"])}
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return out


def table(res):
    rows = []
    for stage in ("import", "prep", "prep_1_worker", "prep_in_process"):
        r = res[stage]
        calls = r.get("pkcs11_calls_per_card", {}).get("total", "")
        fl = r.get("floors", {})
        # A floor is None when the 2n-card replay was not slower than the n-card one (noise).
        hsm = " / ".join("n/a" if v is None else str(round(v)) for k, v in fl.items()
                         if k.startswith("hsm_") and "calls" not in k)
        rows.append("| %s | %s | %s%% | %s%% | %s | %s | %s | %s | %s | %s |" % (
            stage + ("" if "workers" not in r else " (%d workers)" % r["workers"]), r["cards_per_second"],
            r["cpu_percent"], r.get("steal_percent", ""), r["peak_rss_mib"], calls, hsm, r.get("hsm_floor_ratio", ""),
            ("n/a" if fl["crypto_1_thread"] is None else round(fl["crypto_1_thread"])) if "crypto_1_thread" in fl else "",
            r.get("crypto_floor_ratio", "")))
    head = ("| stage | cards/s | CPU | steal | peak RSS MiB | PKCS#11 calls/card | HSM floor cards/s (1 proc / N proc) | "
            "ratio to HSM floor | crypto floor cards/s (1 thread) | ratio to crypto floor |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return ("%s, key-handling %s, %d cards (each row the median of %d rounds, a round being the import, the "
            "three preps and the HSM floors; each ratio the median of the rounds' own ratios; bundles identical "
            "for all worker counts and rounds: %s, XOFs: %s)\n%s\n%s") % (
        res["profile"], res["key_handling"], res["cards"], res["rounds"], res["bundles_identical"],
        res["xofs_identical"], head, "\n".join(rows))


def targets(results, nopin, rss):
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(name, value, ok):
        lines.append("| %s | %s | %s |" % (name, value, "yes" if ok else "**no**"))

    if nopin:
        v = nopin["cards_per_second"]
        add("import >= 200,000 cards/s without field-encrypted attributes (%s)" % nopin["profile"],
            "%d cards/s (%.0f%%; steal %s%%)" % (v, 100 * v / TARGETS["import_cards_per_second"], nopin.get("steal_percent")),
            v >= TARGETS["import_cards_per_second"])
    for r in results:
        tag = "%s %s" % (r["profile"], r["key_handling"])
        v = r["import"]["hsm_floor_ratio"]
        name = "import >= 85%% of its HSM floor (%s, field-encrypted PIN block, %d workers vs %d floor processes)" % (
            tag, r["import"].get("workers", 0), max(1, r["import"].get("workers", 0)))
        if v is not None:
            add(name, "%.0f%%" % (100 * v), v >= TARGETS["import_hsm_floor_ratio"])
        else:
            add(name, "no floor in this run (the 2n-card replay was not slower than the n-card one)", False)
        if r["key_handling"] == "host" and r["profile"].startswith("acme-debit-scp03"):
            v = r["prep"]["cards_per_second"]
            add("host prep >= 50,000 cards/s (%s)" % tag, "%d cards/s (%.0f%%; steal %s%%)" % (
                v, 100 * v / TARGETS["host_prep_cards_per_second"], r["prep"].get("steal_percent")),
                v >= TARGETS["host_prep_cards_per_second"])
        if r["key_handling"] == "strict":
            v = r["prep"]["hsm_floor_ratio"] or 0
            add("strict prep >= 85%% of the HSM floor (%s, %d workers vs %d floor processes)" % (
                tag, r["prep"]["workers"], max(1, r["prep"]["workers"])), "%.0f%%" % (100 * v), v >= TARGETS["strict_prep_hsm_floor_ratio"])
            v = r["two_workers_over_one"]
            if v is not None:
                add("2 workers >= 1.8x 1 worker (%s)" % tag, "%.2fx" % v, v >= TARGETS["two_workers_over_one"])
    if rss:
        (small, a), (large, b) = sorted(rss["by_cards"].items(), key=lambda kv: int(kv[0]))
        stages = ("import", "prep", "run")
        peak_a = max(a[s + "_peak_rss_mib"] for s in stages)
        peak_b = max(b[s + "_peak_rss_mib"] for s in stages)
        add("peak RSS at %s cards <= 1.2x at %s (%s)" % (large, small, rss["what"]), "%.1f / %.1f MiB = %.2fx" % (
            peak_b, peak_a, peak_b / peak_a), peak_b <= TARGETS["rss_growth"] * peak_a)
        add("peak RSS at %s cards <= 300 MiB" % large, "%.1f MiB" % peak_b, peak_b <= TARGETS["rss_mib"])
        for stage in stages:  # which stage the peak comes from
            x, y = a[stage + "_peak_rss_mib"], b[stage + "_peak_rss_mib"]
            add("%s peak RSS at %s cards <= 1.2x at %s" % (stage, large, small), "%.1f / %.1f MiB = %.2fx" % (y, x, y / x),
                y <= TARGETS["rss_growth"] * x)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--cards", type=int, default=50000, help="cards per profile and mode (default 50000)")
    ap.add_argument("--profiles", nargs="+", default=["acme-debit-scp03.xml"],
                    help="profiles (bare names are looked up in config/profiles/); 'reference' = all four")
    ap.add_argument("--modes", nargs="+", default=["strict", "host"], choices=["strict", "host"])
    ap.add_argument("--import-cards", type=int, default=0,
                    help="cards for the import without field-encrypted attributes (default: --cards x 4)")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS at 100,000 and --rss-cards cards")
    ap.add_argument("--rss-cards", type=int, default=1000000)
    ap.add_argument("--rss-mode", default="strict", choices=["strict", "host"])
    ap.add_argument("--rss-only", action="store_true", help="measure the peak RSS only (implies --rss)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of import, the three preps and the HSM floors; rows and ratios are medians (default 3)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--json", help="also write the JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    if args.rounds < 1 or args.rounds % 2 == 0:
        die("--rounds must be odd (1, 3, 5, ...): each row and ratio is the middle round's")
    profiles = REFERENCE if args.profiles == ["reference"] else args.profiles
    profiles = [p if os.path.exists(p) else os.path.join(ROOT, "config", "profiles", p) for p in profiles]
    for p in profiles:
        if not os.path.exists(p):
            die("no such profile: " + p)
    b = Bench(args)
    started = time.time()
    steal0, total0 = b.cpu_ticks()
    results = []
    args.rss = args.rss or args.rss_only
    for p in ([] if args.rss_only else profiles):
        for m in args.modes:
            print("e2e: %s %s, %d cards ..." % (os.path.basename(p), m, args.cards), file=sys.stderr)
            r = b.one(p, m, args.cards)
            results.append(r)
            print(table(r) + "\n", flush=True)
    nopin = None if args.rss_only else b.import_nopin(profiles[0], args.import_cards or 4 * args.cards)
    rss = None
    if args.rss:
        print("e2e: peak RSS at 100000 and %d cards ..." % args.rss_cards, file=sys.stderr)
        rss = {"what": "import, run and prep of %s, %s" % (os.path.basename(profiles[0]), args.rss_mode),
               "by_cards": b.rss(profiles[0], args.rss_mode, 100000, args.rss_cards)}
    print(targets(results, nopin, rss) + "\n")
    steal1, total1 = b.cpu_ticks()
    steal = round(100 * (steal1 - steal0) / (total1 - total0)) if total1 > total0 else 0
    print("e2e: the hypervisor took %d%% of this machine's CPU time during the bench (steal, /proc/stat)" % steal,
          file=sys.stderr)
    doc = {"machine": {"cores": b.cores, "load_average_at_end": os.getloadavg(), "steal_percent": steal},
           "seconds": round(time.time() - started),
           "results": results, "import_without_field_encryption": nopin, "rss": rss, "targets": TARGETS}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
