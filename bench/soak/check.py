#!/usr/bin/env python3
"""Judges a soak run's work directory and writes WORK/report.md.

    python3 bench/soak/check.py WORK [--command TEXT]

Every request the load traced (load-*.log) is judged against what was true
when it was sent and answered:

- D (refused actor) must get 403, X (bad token) 401, P (public) 200.
- A and B (the allowed actor on soak-a / soak-b) must get 200 while their
  permission is on and 403 while it is off. Between a policy write and the
  moment the proxy was seen serving it (events.jsonl "policy"), either
  answer is right; nowhere else.
- A 502 is expected for a forwarded kind while the backend was down
  ("backend-down" window); any other 5xx is a failure.
- A request sent and never answered is lost: a failure wherever it happens,
  except the few in flight when the load itself was stopped.

The backend's access log is checked too: no D or X request may reach it,
A and B only while their permission could be on, each request at most once
and with the identity the proxy must forward. RSS and open descriptors of
each proxy process must not grow more than 5 % after warm-up.

Exit code 0 when nothing unexplained was found, 1 otherwise.
"""

import argparse
import bisect
import glob
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict
from datetime import datetime

ALLOWED = "soak-caller@clients"
NAMES = {"A": "soak-a", "B": "soak-b", "P": "soak-public"}
ZAMBDA_OF = {"A": "a", "B": "b"}
GROWTH_LIMIT = 5.0
WARMUP = 60.0
WINDOW = 60.0
MIN_JUDGED_LIFE = 180.0
# Requests sent this close before the load was stopped may still be in
# flight when wrk is interrupted: abandoned by the client, not lost.
IN_FLIGHT_AT_STOP = 2.0
# A backend request whose sending the load did not trace (none should be)
# is judged over this long before its arrival: the upstream read timeout.
BACKEND_SLACK = 10.0


def load_events(work):
    events = []
    with open(os.path.join(work, "events.jsonl")) as f:
        for line in f:
            events.append(json.loads(line))
    return events


class PolicyTimeline:
    """When each Zambda's permission was surely on, surely off, or in
    transition (written, not yet seen served)."""

    def __init__(self, events):
        self.changes = defaultdict(list)  # zambda -> [(t, seen, allow)]
        for e in events:
            if e["kind"] == "policy":
                self.changes[e["zambda"]].append((e["t"], e["seen"], e["allow"]))
        for z in self.changes:
            ch = sorted(self.changes[z])
            fixed = []
            for i, (t, seen, allow) in enumerate(ch):
                if seen is None:
                    # never seen served: in doubt until the next write
                    seen = ch[i + 1][0] if i + 1 < len(ch) else float("inf")
                fixed.append((t, seen, allow))
            self.changes[z] = fixed
        self.starts = {z: [c[0] for c in ch] for z, ch in self.changes.items()}

    def possible(self, zambda, t0, t1):
        """Every permission state the proxy may have applied in [t0, t1].
        The start-up state is on; a write is in doubt until seen served
        (the driver writes the next only after that)."""
        ch = self.changes.get(zambda, [])
        i = bisect.bisect_right(self.starts.get(zambda, []), t0) - 1
        states = {ch[i][2] if i >= 0 else True}
        if i >= 0 and t0 < ch[i][1]:
            states.add(ch[i - 1][2] if i > 0 else True)
        k = i + 1
        while k < len(ch) and ch[k][0] <= t1:
            states.add(ch[k][2])
            k += 1
        return states


def windows(events, kind):
    return sorted((e["t"], e["end"]) for e in events if e["kind"] == kind)


def overlaps(ws, t0, t1, pad=0.0):
    for a, b in ws:
        if t0 <= b + pad and t1 >= a - pad:
            return True
    return False


def where(events_windows, t0, t1):
    """The name of the event window a moment falls in, for classifying."""
    for name, ws, pad in events_windows:
        if overlaps(ws, t0, t1, pad):
            return name
    return "steady load"


def listener_closes(work):
    """When each proxy process closed its proxy listener (pingora's
    "Shutting down <addr>" line), from the logs."""
    listen = None
    with open(os.path.join(work, "config.yaml")) as f:
        for line in f:
            if line.startswith("listen:"):
                listen = line.split(":", 1)[1].strip()
    closes = []
    for path in glob.glob(os.path.join(work, "zg-*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                if f'"Shutting down {listen}"' in line:
                    stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                    closes.append(datetime.fromisoformat(stamp).timestamp())
    return sorted(closes)


def decided_ids(work, ids):
    """Which of `ids` the proxy wrote a decision line for."""
    found = set()
    if not ids:
        return found
    pattern = re.compile(r'"request_id":"([^"]+)"')
    for path in glob.glob(os.path.join(work, "zg-*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                m = pattern.search(line)
                if m and m.group(1) in ids:
                    found.add(m.group(1))
    return found


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def read_backend(work):
    """id -> [(time, x-zambda-name, x-zambda-actor)]"""
    seen = defaultdict(list)
    path = os.path.join(work, "backend", "access.log")
    if not os.path.exists(path):
        return seen
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6:
                continue
            msec, rid, name, actor = parts[:4]
            seen[rid].append((float(msec), name, actor))
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work")
    ap.add_argument("--command", default="bench/soak.sh")
    args = ap.parse_args()
    work = args.work
    events = load_events(work)
    run = next(e for e in events if e["kind"] == "run")
    t0 = run["t"]
    policy = PolicyTimeline(events)
    backend_down = windows(events, "backend-down")
    upgrades = windows(events, "upgrade")
    drains = windows(events, "drain")
    load_stop = {e["tag"]: e["t"] for e in events if e["kind"] == "load-stop"}
    load_start = {e["tag"]: e["t"] for e in events if e["kind"] == "load-start"}
    summary = next((e for e in events if e["kind"] == "events"), {})
    event_windows = [
        ("upgrade", upgrades, 1.0),
        ("drain", drains, 0.0),
        ("backend down", backend_down, 0.5),
    ]

    failures = []  # (class, id, detail)
    expected = Counter()
    statuses = Counter()
    per_minute = defaultdict(Counter)
    kinds = Counter()
    lost = []
    unanswered = []
    abandoned = 0
    answered_200 = defaultdict(int)
    latencies = []
    sent_at = {}  # id -> send time, for requests the backend received
    reached_then_502 = 0
    abandoned_reached = 0

    def fail(cls, rid, detail):
        failures.append((cls, rid, detail))

    backend = read_backend(work)

    for path in sorted(glob.glob(os.path.join(work, "load-*.log"))):
        tag = os.path.basename(path).split("-")[1]
        pending = {}
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                if parts[0] == "S":
                    pending[parts[1]] = int(parts[2]) / 1000
                    if parts[1] in backend:
                        sent_at[parts[1]] = pending[parts[1]]
                    continue
                rid, t_recv = parts[1], int(parts[2]) / 1000
                status = int(parts[3]) if len(parts) > 3 else 0
                t_send = pending.pop(rid, None)
                minute = int((t_recv - t0) // 60)
                statuses[status] += 1
                per_minute[minute][status] += 1
                if t_send is None:
                    per_minute[minute]["fail"] += 1
                    fail("answer without a request id the load sent", rid, f"status {status}")
                    continue
                latencies.append(t_recv - t_send)
                kind = rid.split("-", 1)[1][0]
                kinds[kind] += 1
                if status == 200:
                    answered_200[kind] += 1
                    if rid not in backend:
                        fail("200 not from the backend", rid, f"kind {kind}")
                elif rid in backend:
                    # the backend had it, the client got something else
                    if status == 502 and overlaps(backend_down, t_send, t_recv):
                        reached_then_502 += 1
                    else:
                        fail("forwarded, answered otherwise", rid, f"kind {kind}, status {status}")
                ok, cls = judge(kind, status, t_send, t_recv, policy, backend_down)
                if ok:
                    expected[cls] += 1
                else:
                    per_minute[minute]["fail"] += 1
                    fail(cls, rid, f"kind {kind}, status {status}, sent +{t_send - t0:.3f} s, "
                         f"answered after {1000 * (t_recv - t_send):.1f} ms, during {where(event_windows, t_send, t_recv)}")
        stop = load_stop.get(tag, float("inf"))
        for rid, t_send in pending.items():
            if tag == "m" and t_send >= stop - IN_FLIGHT_AT_STOP:
                abandoned += 1
                abandoned_reached += rid in backend
                continue
            unanswered.append((rid, t_send))

    # A request never answered is lost, unless it was sent after the proxy
    # closed its listener for the drain and never reached the proxy: then
    # its connection was refused (wrk counts a refused connect as a write
    # error after it has built the request).
    closed = drains[-1][0] if drains else float("inf")
    closes = [c for c in listener_closes(work) if c >= closed]
    closed = closes[0] if closes else float("inf")
    reached = decided_ids(work, {rid for rid, _ in unanswered})
    refused_after_close = 0
    for rid, t_send in unanswered:
        if t_send >= closed and rid not in reached and rid not in backend:
            refused_after_close += 1
            continue
        lost.append((rid, t_send))
        seen_by = "the proxy" if rid in reached else "the backend" if rid in backend else "nobody"
        during = where(event_windows, t_send, t_send)
        near = f" ({1000 * (t_send - closed):+.1f} ms from the listener's close)" if during == "drain" else ""
        fail("lost: sent, never answered", rid,
             f"sent +{t_send - t0:.3f} s{near}, seen by {seen_by}, during {during}")

    # the backend's view
    forwarded = Counter()
    for rid, hits in backend.items():
        kind = rid.split("-", 1)[1][0] if "-" in rid and len(rid.split("-", 1)[1]) else "?"
        forwarded[kind] += len(hits)
        if len(hits) > 1:
            fail("forwarded more than once", rid, f"{len(hits)} times")
        for t, name, actor in hits:
            if kind in ("D", "X"):
                fail("refused request forwarded (backend log)", rid, f"kind {kind} at +{t - t0:.3f} s")
            elif kind in ("A", "B"):
                # decided between its sending and its arrival here
                if True not in policy.possible(ZAMBDA_OF[kind], sent_at.get(rid, t - BACKEND_SLACK), t):
                    fail("refused request forwarded (backend log)", rid, f"kind {kind} at +{t - t0:.3f} s, permission off")
                if actor != ALLOWED or name != NAMES[kind]:
                    fail("wrong identity forwarded", rid, f"actor {actor}, name {name}")
            elif kind == "P":
                if actor != "-" or name != NAMES[kind]:
                    fail("wrong identity forwarded", rid, f"actor {actor}, name {name}")
            else:
                fail("backend request the load did not send", rid, f"at +{t - t0:.3f} s")

    # policy reloads
    reloads = defaultdict(list)
    unseen = 0
    for e in events:
        if e["kind"] == "policy":
            if e["seen"] is None:
                unseen += 1
                fail("reload never seen served", "-", f"{e['how']} at +{e['t'] - t0:.1f} s")
            else:
                reloads[e["how"]].append(1000 * (e["seen"] - e["t"]))

    # memory and descriptors per process
    samples = defaultdict(list)
    spath = os.path.join(work, "samples.jsonl")
    if os.path.exists(spath):
        with open(spath) as f:
            for line in f:
                s = json.loads(line)
                samples[s["pid"]].append(s)
    m_stop = load_stop.get("m", float("inf"))
    procs = []
    for pid, ss in samples.items():
        ss = [s for s in ss if s["t"] < m_stop]
        if not ss:
            continue
        start = ss[0]["t"]
        for e in events:
            if e["kind"] == "proxy-start" and e["pid"] == pid:
                start = e["t"]
        life = ss[-1]["t"] - start
        warm = [s for s in ss if start + WARMUP <= s["t"] < start + WARMUP + WINDOW]
        last = [s for s in ss if s["t"] >= ss[-1]["t"] - WINDOW]
        row = {"pid": pid, "start": max(0.0, start - t0), "life": life, "judged": life >= MIN_JUDGED_LIFE and warm}
        for key in ("rss_kb", "fds"):
            base = statistics.median(s[key] for s in warm) if warm else None
            end = statistics.median(s[key] for s in last)
            peak = max(s[key] for s in ss if s["t"] >= start + WARMUP) if warm else None
            growth = 100 * (end - base) / base if base else None
            row[key] = (base, end, peak, growth)
            if row["judged"] and growth is not None and growth > GROWTH_LIMIT:
                fail(f"{key} grew more than {GROWTH_LIMIT:.0f} % after warm-up", str(pid),
                     f"{base:.0f} -> {end:.0f} ({growth:+.1f} %)")
        procs.append(row)
    procs.sort(key=lambda r: r["start"])

    wrk = {}
    for tag in ("m", "d"):
        p = os.path.join(work, f"wrk-{tag}.json")
        if os.path.exists(p):
            with open(p) as f:
                wrk[tag] = json.load(f)
    if "m" in wrk:
        for err in ("connect", "timeout"):
            if wrk["m"][err]:
                fail(f"wrk {err} errors in the main load", "-", str(wrk["m"][err]))

    # --- the report -------------------------------------------------------
    by_class = Counter(cls for cls, _, _ in failures)
    total = sum(statuses.values())
    m_secs = (load_stop.get("m", t0) - load_start.get("m", t0)) or 1
    out = []
    w = out.append
    verdict = "PASS" if not failures else "FAIL"
    w(f"# Soak report: {verdict}")
    w("")
    w(f"Command: `{args.command}` (seed {run.get('seed')})")
    w(f"Load: {run['minutes']:g} min, wrk {run['threads']} threads / {run['connections']} connections, "
      f"{total} requests answered, {total / m_secs:.0f} req/s on average; "
      f"latency p50 {1000 * pct(latencies, 50):.2f} ms, p99 {1000 * pct(latencies, 99):.2f} ms, "
      f"max {1000 * max(latencies or [0]):.0f} ms")
    w(f"Mix answered: " + ", ".join(f"{k} {kinds[k]}" for k in "ABDPX"))
    counts = summary.get("counts", {})
    w(f"Events: " + ", ".join(f"{k} {v}" for k, v in counts.items())
      + f"; key rotations {summary.get('key_rotations', '?')}, JWKS fetches {summary.get('jwks_fetches', '?')}")
    w("")
    w("## Failures")
    w("")
    if not failures:
        w("None: every answer was the one the policy state of its time, the token and the backend's state called for.")
    else:
        w("| class | count |")
        w("|---|---|")
        for cls, n in by_class.most_common():
            w(f"| {cls} | {n} |")
        w("")
        w("First of each class:")
        w("")
        shown = Counter()
        for cls, rid, detail in failures:
            if shown[cls] < 5:
                shown[cls] += 1
                w(f"- {cls}: `{rid}` {detail}")
    w("")
    w("## Expected refusals and errors")
    w("")
    w("| class | count |")
    w("|---|---|")
    for cls, n in sorted(expected.items()):
        w(f"| {cls} | {n} |")
    w(f"| in flight when the load was stopped (abandoned by wrk) | {abandoned} |")
    w(f"| sent after the drain closed the listener: connection refused | {refused_after_close} |")
    w("")
    w("## Requests by status, per minute")
    w("")
    shown_status = sorted(s for s in statuses if isinstance(s, int))
    w("| minute | " + " | ".join(str(s) for s in shown_status) + " | failures |")
    w("|---" * (len(shown_status) + 2) + "|")
    for minute in sorted(per_minute):
        c = per_minute[minute]
        w(f"| {minute} | " + " | ".join(str(c[s]) for s in shown_status) + f" | {c['fail']} |")
    w("")
    w("## Backend")
    w("")
    w("Forwarded by kind: " + ", ".join(f"{k} {forwarded[k]}" for k in "ABPDX")
      + "; answered 200 by kind: " + ", ".join(f"{k} {answered_200[k]}" for k in "ABP")
      + f"; restarts {len(backend_down)}")
    w("")
    w(f"Received by the backend but answered 502, during a backend restart: {reached_then_502}; "
      f"received by the backend, the load stopped before its answer: {abandoned_reached}")
    w("")
    w("## Policy reloads (write to served)")
    w("")
    w("| how | reloads | p50 ms | p90 ms | p99 ms | max ms |")
    w("|---|---|---|---|---|---|")
    every = [v for vs in reloads.values() for v in vs]
    for how, vs in sorted(reloads.items()) + [("all", every)]:
        w(f"| {how} | {len(vs)} | {pct(vs, 50):.0f} | {pct(vs, 90):.0f} | {pct(vs, 99):.0f} | {max(vs or [0]):.0f} |")
    if unseen:
        w(f"\n{unseen} writes were never seen served.")
    sighups = [e for e in events if e["kind"] == "sighup-unchanged"]
    w(f"\nSIGHUP with nothing changed: {len(sighups)}, reloaded anyway: {sum(e['reloaded'] for e in sighups)}")
    w("")
    w("## Upgrades and drain")
    w("")
    w("| event | at | SIGQUIT/SIGTERM to exit | lost in its window |")
    w("|---|---|---|---|")
    for name, ws in (("upgrade", upgrades), ("drain", drains)):
        for a, b in ws:
            n = sum(1 for _, t in lost if a - 1.0 <= t <= b + 1.0)
            w(f"| {name} | +{a - t0:.0f} s | {b - a:.2f} s | {n} |")
    if "d" in wrk:
        d = wrk["d"]
        w(f"\nDrain load (wrk, its own): {d['requests']} answers; socket errors connect {d['connect']} "
          f"(the listeners are closed after the grace period: expected), read {d['read']}, write {d['write']}, timeout {d['timeout']}")
    if "m" in wrk:
        m = wrk["m"]
        w(f"Main load socket errors: connect {m['connect']}, read {m['read']}, write {m['write']}, timeout {m['timeout']} "
          f"(a read or write error leaves a lost request above)")
    w("")
    w(f"## Memory and descriptors (growth after {WARMUP:.0f} s of warm-up; limit {GROWTH_LIMIT:.0f} %)")
    w("")
    w("| process | started | lived | RSS after warm-up | RSS at end | RSS peak | growth | fds after warm-up | fds at end | fds peak | growth |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in procs:
        def cell(v, unit=""):
            return "-" if v is None else f"{v:.0f}{unit}"
        rb, re_, rp, rg = r["rss_kb"]
        fb, fe, fp, fg = r["fds"]
        judged = "" if r["judged"] else " (too short to judge)"
        w(f"| {r['pid']}{judged} | +{r['start']:.0f} s | {r['life']:.0f} s | {cell(rb and rb / 1024, ' MiB')} | "
          f"{cell(re_ / 1024, ' MiB')} | {cell(rp and rp / 1024, ' MiB')} | {cell(rg, ' %')} | {cell(fb)} | {cell(fe)} | {cell(fp)} | {cell(fg, ' %')} |")
    text = "\n".join(out) + "\n"
    with open(os.path.join(work, "report.md"), "w") as f:
        f.write(text)
    print(text)
    if failures:
        explain(work, failures)
    return 0 if not failures else 1


def judge(kind, status, t_send, t_recv, policy, backend_down):
    """(True, expected class) or (False, failure class)."""
    if kind in ("A", "B", "P") and status == 502 and overlaps(backend_down, t_send, t_recv):
        return True, "502 while the backend was down"
    if kind == "D":
        if status == 403:
            return True, "403 refused actor"
        return False, "refused actor answered otherwise" if status != 200 else "refused request forwarded"
    if kind == "X":
        if status == 401:
            return True, "401 bad token"
        return False, "bad token forwarded" if status == 200 else f"bad token answered {status}"
    if kind == "P":
        if status == 200:
            return True, "200 public"
        return False, f"public call answered {status}"
    if kind in ("A", "B"):
        states = policy.possible(ZAMBDA_OF[kind], t_send, t_recv)
        if status == 200 and True in states:
            return True, "200 allowed" + (" (in transition)" if len(states) > 1 else "")
        if status == 403 and False in states:
            return True, "403 permission off" + (" (in transition)" if len(states) > 1 else "")
        if status == 200:
            return False, "refused request forwarded"
        if status in (401, 403):
            return False, f"allowed request refused ({status})"
        return False, f"{status} outside a backend restart" if status >= 500 else f"allowed call answered {status}"
    return False, f"unknown kind {kind}"


def explain(work, failures):
    """Prints the proxy's decision lines of the first failures."""
    ids = {rid for _, rid, _ in failures[:50] if rid not in ("-", "?")}
    if not ids:
        return
    pattern = re.compile(r'"request_id":"([^"]+)"')
    print("Decision lines of the first failures:")
    for path in sorted(glob.glob(os.path.join(work, "zg-*.log"))):
        with open(path, errors="replace") as f:
            for line in f:
                m = pattern.search(line)
                if m and m.group(1) in ids:
                    print(f"  {os.path.basename(path)}: {line.strip()[:400]}")


if __name__ == "__main__":
    sys.exit(main())
