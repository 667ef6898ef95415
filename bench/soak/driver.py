#!/usr/bin/env python3
"""The soak run's driver (started by bench/soak.sh, which writes the configs).

It starts the recording backend (nginx), a JWKS server, zambda-guard and
the wrk load, then, at randomised intervals until the run's time is up:

  flip-a      rewrites a policy file so that soak-a's permission flips
              (alternately renamed into place and rewritten in place)
  flip-b      swaps a ConfigMap-style `..data` directory, flipping soak-b
  sighup      flips soak-a and sends SIGHUP at once (racing the watcher),
              or sends SIGHUP with nothing changed
  rotate      publishes a new signing key next to the old one, re-signs
              the load's tokens with it later, removes the old key later
              still
  backend     stops the backend and starts it again after 1-3 s
  upgrade     starts `run --upgrade` and sends SIGQUIT to the old process

and at the end drains the proxy with SIGTERM under a load of its own.
Every event goes to events.jsonl, the proxy's RSS and open descriptors
to samples.jsonl every few seconds; check.py turns them, the load traces
and the backend's access log into the report.

Only the standard library; keys and signatures come from the openssl CLI.
"""

import argparse
import base64
import http.server
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ISSUER = "https://issuer.soak/"
AUDIENCE = "https://api.soak"
ALLOWED = "soak-caller@clients"
DENIED = "soak-other@clients"

# The events, with the mean seconds between two of a kind. Each next time
# is drawn uniformly between half and one and a half of the mean.
EVENTS = {
    "flip-a": 6,
    "flip-b": 9,
    "sighup": 20,
    "rotate": 150,
    "backend": 120,
    "upgrade": 420,
}
# After a rotation publishes the new key: re-sign the tokens this much
# later (more than jwks_min_refetch_seconds, so that the proxy's re-fetch on
# the first new kid is not refused), then remove the old key this much
# after that (more than the load's two-second token re-read).
ROTATE_SIGN_AFTER = 8.0
ROTATE_REMOVE_AFTER = 20.0
# No disruptive event in the last seconds of the load: requests in flight
# when the load stops are then only the ordinary, fast ones.
QUIET_END = 20.0
SAMPLE_EVERY = 5.0


def now():
    return time.time()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Log:
    """events.jsonl: one JSON object per event, flushed at once."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, kind, **fields):
        with self.lock:
            self.f.write(json.dumps({"kind": kind, **fields}) + "\n")

    def say(self, text):
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- keys, tokens, JWKS -------------------------------------------------------


class Keys:
    """RSA signing keys made with openssl, the JWKS that publishes them and
    the load's tokens signed with the current one."""

    def __init__(self, work, ttl):
        self.dir = work / "keys"
        self.dir.mkdir(exist_ok=True)
        self.tokens_path = work / "tokens.txt"
        self.ttl = ttl
        self.count = 0
        self.published = []  # kids in the JWKS
        self.signing = None
        self.jwks = b'{"keys":[]}'
        self.stranger = self.generate("stranger")

    def generate(self, kid):
        pem = self.dir / f"{kid}.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pem), "2048"],
            check=True,
            capture_output=True,
        )
        return pem

    def new_key(self):
        self.count += 1
        kid = f"soak-{self.count}"
        self.generate(kid)
        return kid

    def jwk(self, kid):
        out = subprocess.run(
            ["openssl", "rsa", "-in", str(self.dir / f"{kid}.pem"), "-noout", "-modulus"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        modulus = bytes.fromhex(out.strip().split("=", 1)[1])
        return {
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": b64url(modulus),
            "e": "AQAB",
        }

    def publish(self, kids):
        self.published = list(kids)
        self.jwks = json.dumps({"keys": [self.jwk(k) for k in kids]}).encode()

    def sign(self, pem, kid, claims):
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
        payload = b64url(json.dumps(claims).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(pem)],
            input=signing_input,
            check=True,
            capture_output=True,
        ).stdout
        return f"{header}.{payload}.{b64url(sig)}"

    def write_tokens(self, kid):
        """Signs the load's tokens with `kid` and renames them into place."""
        self.signing = kid
        pem = self.dir / f"{kid}.pem"
        t = int(now())

        def claims(sub, exp):
            return {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": sub,
                "iat": t,
                "exp": exp,
                "jti": f"{kid}-{sub}",
            }

        lines = {
            "allowed": self.sign(pem, kid, claims(ALLOWED, t + self.ttl)),
            "denied": self.sign(pem, kid, claims(DENIED, t + self.ttl)),
            # the current kid, signed by a key nobody published
            "badsig": self.sign(self.stranger, kid, claims(ALLOWED, t + self.ttl)),
            # long expired, beyond any leeway
            "expired": self.sign(pem, kid, claims(ALLOWED, t - 3600)),
            # a kid never published: each one may trigger a (rate-limited)
            # JWKS re-fetch
            "unknownkid": self.sign(self.stranger, "soak-unknown", claims(ALLOWED, t + self.ttl)),
            "garbage": "not.a.token",
        }
        tmp = self.tokens_path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
        os.replace(tmp, self.tokens_path)


class JwksServer:
    """Serves Keys.jwks at /jwks.json and counts the fetches."""

    def __init__(self, keys, port, log):
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = keys.jwks
                outer.fetches += 1
                log.write("jwks-fetch", t=now(), kids=keys.published)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


# --- policies -----------------------------------------------------------------

CATALOG = """\
zambdas:
  - id: 0b7c8f0e-5d1a-4c3e-9f2b-1a2b3c4d5e01
    name: soak-a
  - id: 0b7c8f0e-5d1a-4c3e-9f2b-1a2b3c4d5e02
    name: soak-b
  - id: 0b7c8f0e-5d1a-4c3e-9f2b-1a2b3c4d5e03
    name: soak-public
    type: public
actors:
  - subject: "%s"
    roles: [a-callers, b-callers]
  - subject: "%s"
    roles: [b-callers]
""" % (ALLOWED, DENIED)


def role_file(role, zambda, allow):
    """Allowed: one Allow rule. Refused: an explicit Deny and a second rule,
    so that the live set's rule count tells the two apart."""
    if allow:
        rules = f"""\
        - action: Zambda:InvokeFunction
          resource: [Zambda:Function:{zambda}]
          effect: Allow
"""
    else:
        rules = f"""\
        - action: Zambda:InvokeFunction
          resource: [Zambda:Function:{zambda}]
          effect: Deny
        - action: Zambda:InvokeFunction
          resource: [Zambda:Function:soak-public]
          effect: Allow
"""
    return f"roles:\n  - name: {role}\n    access_policy:\n      rule:\n{rules}"


def rules_of(allow):
    return 1 if allow else 2


class Policies:
    """policies/files (plain files) and policies/configmap (a ConfigMap
    volume: `..data` -> a timestamped directory, files symlinked through
    it). soak-a's role lives in the first, soak-b's in the second."""

    def __init__(self, work):
        self.files = work / "policies" / "files"
        self.cm = work / "policies" / "configmap"
        self.files.mkdir(parents=True, exist_ok=True)
        self.cm.mkdir(parents=True, exist_ok=True)
        (self.files / "catalog.yaml").write_text(CATALOG)
        self.allow = {"a": True, "b": True}
        self.swaps = 0
        self.write_a(True, in_place=False)
        self.swap_b(True)
        os.symlink("..data/flip-b.yaml", self.cm / "flip-b.yaml")

    def expected_rules(self):
        """The flipped roles' rules; the rest of the set adds a constant."""
        return rules_of(self.allow["a"]) + rules_of(self.allow["b"])

    def write_a(self, allow, in_place):
        self.allow["a"] = allow
        text = role_file("a-callers", "soak-a", allow)
        path = self.files / "flip-a.yaml"
        if in_place:
            with open(path, "w") as f:
                f.write(text)
        else:
            tmp = self.files / ".flip-a.yaml.tmp"
            tmp.write_text(text)
            os.replace(tmp, path)

    def swap_b(self, allow):
        self.allow["b"] = allow
        self.swaps += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.swaps}"
        new = self.cm / stamp
        new.mkdir()
        (new / "flip-b.yaml").write_text(role_file("b-callers", "soak-b", allow))
        old = os.readlink(self.cm / "..data") if (self.cm / "..data").is_symlink() else None
        tmp = self.cm / "..data_tmp"
        os.symlink(stamp, tmp)
        os.replace(tmp, self.cm / "..data")
        if old:
            for f in (self.cm / old).iterdir():
                f.unlink()
            (self.cm / old).rmdir()


# --- processes ----------------------------------------------------------------


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what, cond, timeout, step=0.02):
    deadline = now() + timeout
    while now() < deadline:
        if cond():
            return True
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


class Proxy:
    """The current zambda-guard process, followed across upgrades."""

    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.generation = 0
        self.proc = None

    def spawn(self, upgrade):
        self.generation += 1
        out = open(self.args.work / f"zg-{self.generation}.log", "w")
        cmd = [self.args.zg, "run", "--config", str(self.args.work / "config.yaml")]
        if upgrade:
            cmd.append("--upgrade")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
        self.log.write("proxy-start", t=now(), pid=proc.pid, n=self.generation, upgrade=upgrade)
        return proc

    def start(self):
        self.proc = self.spawn(False)
        wait_for("the proxy to be ready", self.ready, 30)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.args.admin_port}/readyz", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.args.admin_port}/metrics", timeout=2) as r:
            text = r.read().decode()
        values = {}
        for name in ("zambda_guard_policy_generation", "zambda_guard_policy_rules"):
            m = re.search(rf"^{name} (\S+)$", text, re.M)
            values[name] = float(m.group(1)) if m else None
        return values

    def upgrade(self):
        sock = self.args.work / "upgrade.sock"
        if sock.exists():
            sock.unlink()
        old = self.proc
        new = self.spawn(True)
        wait_for("the upgrade socket", sock.exists, 30)
        t_quit = now()
        old.send_signal(signal.SIGQUIT)
        old.wait(timeout=120)
        t_exit = now()
        self.proc = new
        self.log.write("upgrade", t=t_quit, end=t_exit, old=old.pid, new=new.pid)
        return t_exit - t_quit


class Backend:
    """nginx answering 200 and writing every request to its access log."""

    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(self.args.work / f"backend-{self.starts}.out", "w")
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(self.args.work / "backend" / "nginx.conf"), "-e", str(self.args.work / "backend" / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for("the backend", lambda: port_open(self.args.backend_port), 30)

    def stop(self):
        # graceful: requests in progress are answered and logged
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=30)

    def restart(self, down_for):
        t_down = now()
        self.stop()
        time.sleep(down_for)
        self.start()
        t_up = now()
        self.log.write("backend-down", t=t_down, end=t_up)


def start_load(args, tag, threads, connections):
    env = {**os.environ, "SOAK_WRK_SUMMARY": str(args.work / f"wrk-{tag}.json")}
    out = open(args.work / f"wrk-{tag}.txt", "w")
    return subprocess.Popen(
        [
            "wrk",
            "-t", str(threads),
            "-c", str(connections),
            "-d", "100000s",
            "--timeout", "10s",
            "--latency",
            "-s", str(args.lua),
            f"http://127.0.0.1:{args.proxy_port}",
            "--", str(args.work), tag,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )


def stop_load(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the run ------------------------------------------------------------------


class Sampler(threading.Thread):
    """The current proxy's RSS and open descriptors, every few seconds."""

    def __init__(self, proxy, path):
        super().__init__(daemon=True)
        self.proxy = proxy
        self.out = open(path, "a", buffering=1)
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(SAMPLE_EVERY):
            pid = self.proxy.proc.pid
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, AttributeError):
                continue
            self.out.write(json.dumps({"t": now(), "pid": pid, "rss_kb": rss, "fds": fds}) + "\n")


class Driver:
    def __init__(self, args):
        self.args = args
        self.log = Log(args.work / "events.jsonl")
        self.rng = random.Random(args.seed)
        self.keys = Keys(args.work, ttl=int(args.minutes * 60) + 3600)
        self.policies = Policies(args.work)
        self.proxy = Proxy(args, self.log)
        self.backend = Backend(args, self.log)
        self.pending = []  # (time, fn): the later steps of a rotation
        self.rules_base = 0

    def observe_policy(self, zambda, allow, how, action):
        """Runs `action` (a write, maybe a signal) and waits for the proxy to
        serve the new set: a new generation with the expected rule count."""
        before = self.proxy.metrics()["zambda_guard_policy_generation"]
        t_write = now()
        action()
        want = self.policies.expected_rules() + self.rules_base

        def served():
            m = self.proxy.metrics()
            return m["zambda_guard_policy_generation"] != before and m["zambda_guard_policy_rules"] == want

        try:
            wait_for("the reload", served, 30, step=0.01)
            t_seen = now()
        except RuntimeError:
            t_seen = None
        self.log.write(
            "policy",
            zambda=zambda,
            allow=allow,
            how=how,
            t=t_write,
            seen=t_seen,
        )
        if t_seen is None:
            self.log.say(f"reload of soak-{zambda} ({how}) not seen within 30 s")

    def flip_a(self):
        allow = not self.policies.allow["a"]
        in_place = self.rng.random() < 0.5
        how = "in-place" if in_place else "rename"
        self.observe_policy("a", allow, how, lambda: self.policies.write_a(allow, in_place))

    def flip_b(self):
        allow = not self.policies.allow["b"]
        self.observe_policy("b", allow, "configmap", lambda: self.policies.swap_b(allow))

    def sighup(self):
        if self.rng.random() < 0.5:
            allow = not self.policies.allow["a"]

            def write_and_hup():
                self.policies.write_a(allow, in_place=False)
                self.proxy.proc.send_signal(signal.SIGHUP)

            self.observe_policy("a", allow, "sighup", write_and_hup)
        else:
            before = self.proxy.metrics()["zambda_guard_policy_generation"]
            t = now()
            self.proxy.proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            after = self.proxy.metrics()["zambda_guard_policy_generation"]
            self.log.write("sighup-unchanged", t=t, reloaded=after != before)

    def rotate(self):
        if self.pending:
            return  # the previous rotation is not over yet
        old = self.keys.signing
        new = self.keys.new_key()
        t = now()
        self.keys.publish(self.keys.published + [new])
        self.log.write("rotate-publish", t=t, old=old, new=new)

        def sign():
            self.keys.write_tokens(new)
            self.log.write("rotate-sign", t=now(), kid=new)

        def remove():
            self.keys.publish([k for k in self.keys.published if k != old])
            self.log.write("rotate-remove", t=now(), kid=old)

        self.pending.append((t + ROTATE_SIGN_AFTER, sign))
        self.pending.append((t + ROTATE_SIGN_AFTER + ROTATE_REMOVE_AFTER, remove))

    def restart_backend(self):
        self.backend.restart(self.rng.uniform(1.0, 3.0))

    def upgrade(self):
        took = self.proxy.upgrade()
        self.log.say(f"upgrade: old process gone {took:.1f} s after SIGQUIT")

    def draw(self, name, t):
        mean = EVENTS[name] * self.args.pace
        return t + self.rng.uniform(0.5 * mean, 1.5 * mean)

    def run(self):
        a = self.args
        first = self.keys.new_key()
        self.keys.publish([first])
        self.keys.write_tokens(first)
        jwks = JwksServer(self.keys, a.jwks_port, self.log)
        self.backend.start()
        self.proxy.start()
        self.rules_base = self.proxy.metrics()["zambda_guard_policy_rules"] - self.policies.expected_rules()
        sampler = Sampler(self.proxy, a.work / "samples.jsonl")
        sampler.start()
        t0 = now()
        end = t0 + a.minutes * 60
        self.log.write("run", t=t0, end=end, minutes=a.minutes, seed=a.seed, threads=a.threads, connections=a.connections)
        load = start_load(a, "m", a.threads, a.connections)
        self.log.write("load-start", t=now(), tag="m")
        actions = {
            "flip-a": self.flip_a,
            "flip-b": self.flip_b,
            "sighup": self.sighup,
            "rotate": self.rotate,
            "backend": self.restart_backend,
            "upgrade": self.upgrade,
        }
        upcoming = {name: self.draw(name, t0) for name in actions}
        counts = {name: 0 for name in actions}
        last_report = t0
        try:
            while True:
                t = now()
                self.pending.sort()
                if self.pending and self.pending[0][0] <= t:
                    _, fn = self.pending.pop(0)
                    fn()
                    continue
                name = min(upcoming, key=upcoming.get)
                when = upcoming[name]
                if when >= end - QUIET_END and not self.pending:
                    break
                if when > t:
                    nxt = min([when] + [p[0] for p in self.pending])
                    time.sleep(max(0.0, min(nxt - t, 1.0)))
                    continue
                if load.poll() is not None:
                    raise RuntimeError("wrk stopped by itself; see wrk-m.txt")
                actions[name]()
                counts[name] += 1
                upcoming[name] = self.draw(name, now())
                if now() - last_report > 60:
                    last_report = now()
                    left = (end - now()) / 60
                    self.log.say(f"{left:.1f} min left; events so far: {counts}")
            time.sleep(max(0.0, end - now()))
            # the drain, under a load of its own (see check.py)
            drain_load = start_load(a, "d", 1, max(2, a.connections // 4))
            self.log.write("load-start", t=now(), tag="d")
            time.sleep(3)
            stop_load(load)
            self.log.write("load-stop", t=now(), tag="m")
            t_term = now()
            self.proxy.proc.send_signal(signal.SIGTERM)
            self.proxy.proc.wait(timeout=a.drain_wait)
            t_exit = now()
            self.log.write("drain", t=t_term, end=t_exit, pid=self.proxy.proc.pid)
            time.sleep(1)
            stop_load(drain_load)
            self.log.write("load-stop", t=now(), tag="d")
        finally:
            sampler.stopped.set()
            for proc in (load,):
                if proc.poll() is None:
                    stop_load(proc)
            if self.proxy.proc and self.proxy.proc.poll() is None:
                self.proxy.proc.send_signal(signal.SIGINT)
                self.proxy.proc.wait(timeout=30)
            if self.backend.proc and self.backend.proc.poll() is None:
                self.backend.stop()
            jwks.stop()
        self.log.write("events", counts=counts, jwks_fetches=jwks.fetches, key_rotations=self.keys.count - 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--zg", required=True)
    p.add_argument("--lua", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--pace", type=float, default=1.0, help="scales every mean interval between events")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--backend-port", type=int, required=True)
    p.add_argument("--jwks-port", type=int, required=True)
    p.add_argument("--drain-wait", type=float, default=60)
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    Driver(args).run()


if __name__ == "__main__":
    sys.exit(main())
