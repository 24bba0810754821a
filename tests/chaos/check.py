#!/usr/bin/env python3
"""check.py -- the fault-injection suite's checker (tests/chaos/README.md).

Reads one scenario's run directory, as tests/chaos/run.sh leaves it:

  history.tsv      every operation of pc_chaos_load (thread, op, key, value,
                   start_ns, end_ns, result), the quiescence reads (op qget)
  redis/appendonlydir/   Redis' append-only file: every write Redis applied,
                   in the order it applied them (appendfsync always)
  redis_final.tsv  key, value (empty = none) from redis-cli after the run
  n1.log .. n5.log the nodes' logs
  events           "name ns" lines: load_start, fault_start, fault_end, ...
  heal_ms          ms from the fault's end to one ring (or "timeout")

and counts, each by name (README.md defines each one precisely):

  (a) acked writes missing from Redis, applied twice, or applied out of
      real-time order
  (b) failed writes applied after a later acknowledged write
  (c) values never written / not yet written / never applied, read
  (d) stale reads, their age, those over the bound
  (e) nodes disagreeing with Redis after quiescence
  (f) false deaths
  (g) time to one ring after the fault ends
  and the throughput before / during / after the fault.

Prints the details, writes one table row (--row) and check.json, and exits
1 on any violation, 0 otherwise (2 when the inputs are unusable).
"""
import argparse
import bisect
import datetime
import json
import os
import re
import statistics
import sys

ACK = "ok"
NO_EFFECT = {"retry"}  # the node said nothing was applied (PROTOCOL.md §7)
KEY_RE = re.compile(rb"^chaos:\d{3}$")


class Op:
    __slots__ = ("thread", "op", "key", "value", "start", "end", "result", "pos")

    def __init__(self, f):
        self.thread, self.op, self.key, v, s, e, self.result = f
        self.value = None if v == "-" else unescape(v)
        self.start, self.end = int(s), int(e)
        self.pos = None  # AOF position of its SET entry, if any


def unescape(s):
    if "\\x" not in s:
        return s.encode()
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and i + 4 <= len(s):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif s.startswith("\\x", i):  # "\x" alone: an empty value
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def die(msg):
    print("check: " + msg, file=sys.stderr)
    sys.exit(2)


# ---- inputs ----------------------------------------------------------------

def read_history(path):
    ops = []
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 7:
                die("%s: bad line %r" % (path, line))
            ops.append(Op(fields))
    return ops


def resp_commands(data, warnings, name):
    """Yields each command (a list of bytes) of an AOF in RESP form."""
    i, n = 0, len(data)
    while i < n:
        if data[i:i + 1] == b"#":  # annotation (#TS:...)
            j = data.find(b"\r\n", i)
            if j < 0:
                break
            i = j + 2
            continue
        if data[i:i + 1] != b"*":
            warnings.append("%s: unexpected byte at %d; rest ignored" % (name, i))
            return
        j = data.find(b"\r\n", i)
        if j < 0:
            warnings.append("%s: truncated command at %d" % (name, i))
            return
        argc = int(data[i + 1:j])
        i = j + 2
        args = []
        for _ in range(argc):
            j = data.find(b"\r\n", i)
            if j < 0 or data[i:i + 1] != b"$":
                warnings.append("%s: truncated command at %d" % (name, i))
                return
            ln = int(data[i + 1:j])
            i = j + 2
            if i + ln + 2 > n:
                warnings.append("%s: truncated command at %d" % (name, i))
                return
            args.append(data[i:i + ln])
            i += ln + 2
        yield args


def read_aof(dirpath, prefix, warnings):
    """Returns the ordered list of entries (kind, key, value) touching the
    workload's keys, kind 'set' or 'del', and counts of the rest."""
    manifest = os.path.join(dirpath, "appendonly.aof.manifest")
    if not os.path.exists(manifest):
        die("no AOF manifest in " + dirpath)
    files = []
    with open(manifest) as f:
        for line in f:
            parts = line.split()
            d = dict(zip(parts[0::2], parts[1::2]))
            files.append((0 if d.get("type") == "b" else 1, int(d.get("seq", 0)), d["file"]))
    files.sort()
    entries, other = [], {}
    for kind, _, name in files:
        path = os.path.join(dirpath, name)
        if name.endswith(".rdb"):
            # The base of a fresh AOF is an empty RDB (automatic rewrites are
            # off), so every write is in the incremental files.
            if os.path.getsize(path) > 200:
                warnings.append("%s: a non-empty RDB base; writes before it are not seen" % name)
            continue
        with open(path, "rb") as f:
            data = f.read()
        for args in resp_commands(data, warnings, name):
            cmd = args[0].upper()
            if cmd in (b"MULTI", b"EXEC", b"SELECT"):
                continue
            if cmd == b"SET" and len(args) >= 3:
                keys = [args[1]]
            elif cmd in (b"DEL", b"UNLINK"):
                keys = args[1:]
            else:
                keys = args[1:2]
            for k in keys:
                if not k.startswith(prefix) or not KEY_RE.match(k[len(prefix):]):
                    tag = "records (pcm:*)" if k.startswith(b"pcm:") else "other keys"
                    other[tag] = other.get(tag, 0) + 1
                    continue
                key = k[len(prefix):].decode()
                if cmd == b"SET":
                    entries.append(("set", key, args[2]))
                    if len(args) > 3:
                        other["SET with options"] = other.get("SET with options", 0) + 1
                elif cmd in (b"DEL", b"UNLINK"):
                    entries.append(("del", key, None))
                else:
                    other[cmd.decode(errors="replace")] = other.get(cmd.decode(errors="replace"), 0) + 1
    return entries, other


def read_events(path):
    ev = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 2 and p[1].isdigit():
                ev.setdefault(p[0], int(p[1]))
    return ev


LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z \w+\s+peercached\[([^\]]+)\] "
                    r"cluster: (\S+) is (dead|suspect) \(was (\w+)\)")


def read_deaths(run):
    """(ns, observer, subject, state) for every 'is dead' / 'is suspect' line."""
    out = []
    for name in sorted(os.listdir(run)):
        if not re.match(r"^n\d+\.log$", name):
            continue
        with open(os.path.join(run, name), errors="replace") as f:
            for line in f:
                m = LOG_RE.match(line)
                if not m:
                    continue
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
                    tzinfo=datetime.timezone.utc)
                ns = int(t.timestamp()) * 10**9 + int(m.group(2)) * 10**6
                out.append((ns, m.group(3), m.group(4), m.group(5)))
    return out


# ---- the checks ------------------------------------------------------------

def fmt_s(ns):
    return "%.1f" % (ns / 1e9)


def check(args):
    run = args.run
    warnings = []
    ops = read_history(os.path.join(run, "history.tsv"))
    if not ops:
        die("empty history")
    prefix = args.prefix.encode()
    entries, other = read_aof(os.path.join(run, "redis", "appendonlydir"), prefix, warnings)
    ev = read_events(os.path.join(run, "events"))
    for need in ("load_start", "fault_start", "fault_end"):
        if need not in ev:
            die("events: no " + need)
    load_ops = [o for o in ops if o.op in ("set", "get", "del")]
    qops = [o for o in ops if o.op == "qget"]
    load_end = ev.get("load_end") or max(o.end for o in load_ops)
    t_fs, t_fe, t_ls = ev["fault_start"], ev["fault_end"], ev["load_start"]

    res = {"scenario": args.scenario, "violations": {}, "info": {}, "warnings": warnings}
    V, I = res["violations"], res["info"]
    details = []

    def example(name, text):
        details.append("  %-22s %s" % (name, text))

    # -- the AOF, per key ------------------------------------------------------
    set_pos = {}      # (key, value) -> first position
    dup = 0
    del_pos = {}      # key -> sorted positions of DEL entries
    final = {}        # key -> value or None (replay)
    for pos, (kind, key, val) in enumerate(entries):
        if kind == "set":
            if (key, val) in set_pos:
                dup += 1
                if dup <= 3:
                    example("applied twice", "%s %r at %d and %d" % (key, val, set_pos[(key, val)], pos))
            else:
                set_pos[(key, val)] = pos
            final[key] = val
        else:
            del_pos.setdefault(key, []).append(pos)
            final[key] = None
    I["aof_entries"] = len(entries)
    I["aof_other"] = other

    writes = {}   # key -> [ops]
    for o in load_ops:
        if o.op == "set":
            o.pos = set_pos.get((o.key, o.value))
        if o.op in ("set", "del"):
            writes.setdefault(o.key, []).append(o)
    writer = {}   # (key, value) -> op
    for o in load_ops:
        if o.op == "set":
            writer[(o.key, o.value)] = o

    keys = sorted(set(o.key for o in ops) | set(final))

    # -- (a) acknowledged writes missing, applied twice, reordered ----------------
    a_missing = a_del_missing = a_reorder = 0
    retry_applied = 0
    failed_applied = 0
    for key in keys:
        ws = writes.get(key, [])
        acked_sets = sorted((o for o in ws if o.op == "set" and o.result == ACK), key=lambda o: o.end)
        ends = [o.end for o in acked_sets]
        pmax = []  # prefix max of positions, by end
        m = -1
        for o in acked_sets:
            if o.pos is None:
                a_missing += 1
                if a_missing <= 3:
                    example("acked missing", "%s %r acked at %s s" % (key, o.value, fmt_s(o.end - t_ls)))
            else:
                m = max(m, o.pos)
            pmax.append(m)
        for o in acked_sets:
            if o.pos is None:
                continue
            i = bisect.bisect_left(ends, o.start)
            if i > 0 and pmax[i - 1] > o.pos:
                a_reorder += 1
                if a_reorder <= 3:
                    example("acked reordered", "%s %r applied before an earlier acked write" % (key, o.value))
        # acked DELs (answered OK: something was deleted)
        starts_sorted = sorted((o for o in ws if o.op == "set" and o.pos is not None), key=lambda o: o.start)
        st = [o.start for o in starts_sorted]
        smin = [0] * len(starts_sorted)  # suffix min of positions, by start
        m = float("inf")
        for j in range(len(starts_sorted) - 1, -1, -1):
            m = min(m, starts_sorted[j].pos)
            smin[j] = m
        dl = del_pos.get(key, [])
        for o in ws:
            if o.op == "set" and o.pos is not None:
                if o.result in NO_EFFECT:
                    retry_applied += 1
                elif o.result != ACK:
                    failed_applied += 1
            if o.op != "del" or o.result != ACK:
                continue
            i = bisect.bisect_left(ends, o.start)
            lo = pmax[i - 1] if i > 0 else -1
            j = bisect.bisect_right(st, o.end)
            hi = smin[j] if j < len(smin) else float("inf")
            k = bisect.bisect_right(dl, lo)
            if not (k < len(dl) and dl[k] < hi):
                a_del_missing += 1
                if a_del_missing <= 3:
                    example("acked DEL missing", "%s at %s s" % (key, fmt_s(o.end - t_ls)))
    V["a_acked_missing"] = a_missing + a_del_missing
    V["a_applied_twice"] = dup
    V["a_acked_reordered"] = a_reorder
    V["b_retry_applied"] = retry_applied
    I["failed_writes_applied"] = failed_applied

    # -- (b) failed writes applied after a later acknowledged write ---------------
    b_late = b_overlap = b_del_late = b_del_unexplained = b_final = 0
    late_lag = []
    for key in keys:
        ws = writes.get(key, [])
        acked = sorted((o for o in ws if o.op == "set" and o.result == ACK and o.pos is not None),
                       key=lambda o: o.start)
        ast = [o.start for o in acked]
        sufmin = [0] * len(acked)
        m = float("inf")
        for j in range(len(acked) - 1, -1, -1):
            m = min(m, acked[j].pos)
            sufmin[j] = m
        for f in ws:
            if f.op != "set" or f.result == ACK or f.pos is None:
                continue
            j = bisect.bisect_right(ast, f.end)
            if j < len(acked) and sufmin[j] < f.pos:
                b_late += 1
                first = min((a for a in acked[j:] if a.pos < f.pos), key=lambda a: a.start)
                late_lag.append(first.end - f.end)
                if b_late <= 5:
                    example("failed applied late", "%s %r (%s, answered at %s s) landed after %r "
                            "(invoked %s s later, acked at %s s)" % (
                                key, f.value, f.result, fmt_s(f.end - t_ls), first.value,
                                fmt_s(first.start - f.end), fmt_s(first.end - t_ls)))
            else:
                lo = bisect.bisect_right(ast, f.start)
                if any(a.pos < f.pos for a in acked[lo:j]):
                    b_overlap += 1
        # DEL entries: who can have made each one?
        by_pos = sorted(acked, key=lambda o: o.pos)
        bp = [o.pos for o in by_pos]
        pm, m = [], -1
        for o in by_pos:
            m = max(m, o.start)
            pm.append(m)
        dels = [o for o in ws if o.op == "del"]
        for p in del_pos.get(key, []):
            i = bisect.bisect_left(bp, p)
            if i == 0:
                continue
            M = pm[i - 1]  # latest invocation among acked writes applied before it
            producers = [d for d in dels if d.result not in NO_EFFECT and d.result != "notfound" and d.end >= M]
            if producers:
                continue
            if any(d.result != ACK and d.result not in NO_EFFECT and d.result != "notfound" for d in dels):
                b_del_late += 1
                if b_del_late <= 3:
                    example("failed DEL late", "%s: a DEL landed after an acked SET invoked after "
                            "every DEL that could have made it had failed" % key)
            else:
                b_del_unexplained += 1
                if b_del_unexplained <= 3:
                    example("DEL unexplained", "%s: a DEL at %d that no operation can have made" % (key, p))
        # the final value: superseded by an acknowledged write invoked after it was answered?
        fv = final.get(key)
        if fv is not None and (key, fv) in writer:
            w = writer[(key, fv)]
            later = [o for o in ws if o.result == ACK and o.start > w.end and o is not w]
            if later:
                b_final += 1
                if b_final <= 5:
                    example("Redis ends stale", "%s holds %r (%s, answered at %s s); %d acked write(s) "
                            "invoked after that, first %r" % (
                                key, fv, w.result, fmt_s(w.end - t_ls), len(later),
                                min(later, key=lambda o: o.start).value))
    V["b_failed_applied_late"] = b_late + b_del_late
    V["b_del_unexplained"] = b_del_unexplained
    V["b_redis_final_superseded"] = b_final
    I["b_failed_applied_after_overlapping_ack"] = b_overlap
    if late_lag:
        I["b_late_ack_after_failure_s"] = "%.1f..%.1f" % (min(late_lag) / 1e9, max(late_lag) / 1e9)

    # -- (c) values never written --------------------------------------------
    c_never = c_future = c_dirty = 0
    for r in load_ops + qops:
        if r.op not in ("get", "qget") or r.result != ACK:
            continue
        w = writer.get((r.key, r.value))
        if w is None:
            c_never += 1
            if c_never <= 3:
                example("value never written", "%s %r read by %s" % (r.key, r.value, r.thread))
        elif w.start > r.end:
            c_future += 1
            if c_future <= 3:
                example("value not yet written", "%s %r" % (r.key, r.value))
        elif w.pos is None:
            c_dirty += 1
            if c_dirty <= 3:
                example("value never applied", "%s %r (%s) read by %s at %s s" % (
                    r.key, r.value, w.result, r.thread, fmt_s(r.start - t_ls)))
    V["c_never_written"] = c_never
    V["c_read_before_written"] = c_future
    V["c_never_in_redis"] = c_dirty

    # -- (d) stale reads -----------------------------------------------------
    ages, stale_in = [], {"before": 0, "during": 0, "after": 0}
    reads = {}
    for r in load_ops:
        if r.op == "get":
            reads.setdefault(r.key, []).append(r)
    for key in keys:
        ws = writes.get(key, [])
        # acknowledged writes by ack time, with the AOF position they are
        # known to be at or after (an OK DEL: after every acked SET that
        # ended before it began)
        acked_sets_end = sorted((o for o in ws if o.op == "set" and o.result == ACK and o.pos is not None),
                                key=lambda o: o.end)
        ae = [o.end for o in acked_sets_end]
        apm, m = [], -1
        for o in acked_sets_end:
            m = max(m, o.pos)
            apm.append(m)
        sup = []
        for o in acked_sets_end:
            sup.append((o.end, o.pos))
        for o in ws:
            if o.op == "del" and o.result == ACK:
                i = bisect.bisect_left(ae, o.start)
                lo = apm[i - 1] if i > 0 else -1
                sup.append((o.end, lo + 0.5))
        sup.sort()
        s_end = [e for e, _ in sup]
        s_pm, m = [], -1
        for _, p in sup:
            m = max(m, p)
            s_pm.append(m)
        set_pm = apm  # SETs only, for reads that found nothing
        # for reads of nothing: SET entries by invocation, suffix min position
        sets_by_start = sorted((o for o in ws if o.op == "set" and o.pos is not None), key=lambda o: o.start)
        sbs = [o.start for o in sets_by_start]
        sbs_min = [0] * len(sets_by_start)
        m = float("inf")
        for j in range(len(sets_by_start) - 1, -1, -1):
            m = min(m, sets_by_start[j].pos)
            sbs_min[j] = m
        dl = del_pos.get(key, [])
        for r in reads.get(key, ()):
            if r.result not in (ACK, "notfound"):
                continue
            if r.result == ACK:
                w = writer.get((key, r.value))
                if w is None or w.pos is None:
                    continue  # counted in (c)
                pv = w.pos
                ends, pm = s_end, s_pm
            else:
                j = bisect.bisect_right(sbs, r.end)
                bound = sbs_min[j] if j < len(sbs_min) else float("inf")
                k = bisect.bisect_left(dl, bound)
                pv = dl[k - 1] if k > 0 else -1
                ends, pm = ae, set_pm
            i = bisect.bisect_left(ends, r.start)
            if i == 0 or pm[i - 1] <= pv:
                continue
            first = bisect.bisect_right(pm, pv)  # first superseding ack, by ack time
            age = r.start - ends[first]
            ages.append(age)
            phase = "before" if r.start < t_fs else ("during" if r.start < t_fe else "after")
            stale_in[phase] += 1
            if len(ages) <= 3 or age == max(ages):
                last_stale = "%s read %s at %s s (%s), %.1f s old" % (
                    key, r.value.decode() if r.value else "nothing", fmt_s(r.start - t_ls), phase, age / 1e9)
                if len(ages) <= 3:
                    example("stale read", last_stale)
                else:
                    I["d_oldest_stale_read"] = last_stale
    bound = args.stale_bound_ms * 10**6
    over = sum(1 for a in ages if a > bound)
    I["d_stale_reads"] = len(ages)
    I["d_stale_by_phase"] = stale_in
    I["d_stale_age_max_s"] = round(max(ages) / 1e9, 2) if ages else 0
    I["d_stale_age_median_s"] = round(statistics.median(ages) / 1e9, 2) if ages else 0
    V["d_stale_over_bound"] = over

    # -- (e) nodes vs Redis after quiescence -----------------------------------
    rf = {}
    with open(os.path.join(run, "redis_final.tsv"), encoding="ascii", errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t", 1)
            if len(p) == 2:
                rf[p[0]] = p[1].encode() if p[1] != "" else None
    mism = [k for k in rf if rf[k] != final.get(k)]
    if mism:
        warnings.append("AOF replay differs from redis-cli for %d keys (e.g. %s: %r vs %r): "
                        "the AOF is incomplete or misread" % (len(mism), mism[0], final.get(mism[0]), rf[mism[0]]))
        V["checker_aof_mismatch"] = len(mism)
    e_diff = e_err = 0
    per_node = {}
    for q in qops:
        node = q.thread[2:]
        m = re.match(r"^10\.99\.0\.(\d+):7400$", node)
        if m:
            node = "n" + m.group(1)
        got = q.value if q.result == ACK else (None if q.result == "notfound" else "ERR")
        if got == "ERR":
            e_err += 1
            per_node[node] = per_node.get(node, 0) + 1
        elif got != rf.get(q.key):
            e_diff += 1
            per_node[node] = per_node.get(node, 0) + 1
            if e_diff <= 5:
                example("node != Redis", "%s: %s answers %r, Redis holds %r" % (node, q.key, got, rf.get(q.key)))
    if not qops:
        warnings.append("no quiescence reads in the history")
    V["e_node_differs_from_redis"] = e_diff
    V["e_node_no_answer"] = e_err
    # the same reads once more, after the nodes' queued bytes to Redis were
    # delivered or given up (run.sh): a difference that lasts
    fpath = os.path.join(run, "history_final.tsv")
    if os.path.exists(fpath):
        late = [q for q in read_history(fpath) if q.op == "qget"]
        V["e_differs_after_drain"] = sum(
            1 for q in late
            if (q.value if q.result == ACK else None if q.result == "notfound" else "ERR") != rf.get(q.key))
        I["e_final_reads"] = len(late)
    if per_node:
        I["e_by_node"] = per_node

    # -- (f) false deaths --------------------------------------------------------
    slack = args.death_slack_ms * 10**6
    sides = {}
    if args.partition:
        for n, side in enumerate(args.partition.split("/")):
            for name in side.split(","):
                sides[name] = n
    false_d, suspects, true_d, same_side = [], 0, 0, []
    for ns, obs, subj, state in read_deaths(run):
        if state == "suspect":
            suspects += 1
            continue
        in_window = t_fs <= ns <= t_fe + slack
        ok = False
        if args.victim and subj == args.victim and in_window:
            ok = True
        if sides and in_window and subj in sides:
            # every member of a partition is cut off from some others; a
            # death declared by its own side (news from the other side,
            # taken on gossip) is shown apart
            ok = True
            if obs in sides and sides[obs] == sides[subj]:
                same_side.append((ns, obs, subj))
        if ok:
            true_d += 1
        else:
            false_d.append((ns, obs, subj))
    for ns, obs, subj in false_d[:5]:
        example("false death", "%s declared %s dead at %s s" % (obs, subj, fmt_s(ns - t_ls)))
    V["f_false_deaths"] = len(false_d)
    if sides:
        I["f_deaths_declared_by_own_side"] = len(same_side)
        for ns, obs, subj in same_side[:3]:
            example("death by own side", "%s declared %s dead at %s s" % (obs, subj, fmt_s(ns - t_ls)))
    I["f_expected_deaths"] = true_d
    I["f_suspicions"] = suspects

    # -- (g) one ring after the fault ----------------------------------------------
    heal = None
    try:
        with open(os.path.join(run, "heal_ms")) as f:
            heal = f.read().strip()
    except OSError:
        pass
    if heal is None or not heal.isdigit():
        V["g_no_ring_after_heal"] = 1
        I["g_heal_s"] = heal or "not measured"
    else:
        I["g_heal_s"] = round(int(heal) / 1000, 2)
        V["g_heal_over_bound"] = int(int(heal) > args.heal_bound_ms)

    # -- throughput ---------------------------------------------------------------
    good = sorted(o.end for o in load_ops if o.result in (ACK, "notfound"))

    def rate(a, b):
        if b <= a:
            return 0.0
        return (bisect.bisect_left(good, b) - bisect.bisect_left(good, a)) / ((b - a) / 1e9)

    tp = {"before": rate(t_ls, t_fs), "during": rate(t_fs, t_fe), "after": rate(t_fe, load_end)}
    settled = rate(t_fs + 2 * 10**9, t_fe)
    I["throughput_ok_per_s"] = {k: round(v) for k, v in tp.items()}
    I["throughput_during_from_2s"] = round(settled)
    fails = {}
    for o in load_ops:
        if o.result not in (ACK, "notfound"):
            fails[o.result] = fails.get(o.result, 0) + 1
    I["errors_by_result"] = fails
    # Recovery: the failures that go on from the fault's end without a
    # whole second free of them; failures after such a second are another
    # matter (a later stall), reported apart.
    errs_after = sorted(o.start for o in load_ops if o.result not in (ACK, "notfound") and o.start >= t_fe)
    burst_end, later = t_fe, []
    for i, t in enumerate(errs_after):
        if t - burst_end > 10**9:
            later = errs_after[i:]
            break
        burst_end = t
    I["errors_after_fault_end_s"] = round((burst_end - t_fe) / 1e9, 2)
    if later:
        I["errors_later"] = "%d failures from %.1f s after the fault's end, after a second without" % (
            len(later), (later[0] - t_fe) / 1e9)
    targets = {}
    if args.tput_floor is not None and tp["before"] > 0:
        ratio = settled / tp["before"]
        targets["throughput_during_vs_before"] = "%.2f (target >= %.2f)" % (ratio, args.tput_floor)
        V["t_throughput_below_target"] = int(ratio < args.tput_floor)
    if args.error_tail_ms is not None:
        tail = (burst_end - t_fe) / 1e6
        targets["errors_after_fault_end"] = "%.1f s (target <= %.1f s)" % (tail / 1e3, args.error_tail_ms / 1e3)
        V["t_errors_after_fault_over_target"] = int(tail > args.error_tail_ms)
    if targets:
        I["targets"] = targets
    if args.targets_report_only:
        # Speed is measured, not asserted, where the machine is shared (CI):
        # a missed target is reported, not a violation.
        missed = [k for k in ("t_throughput_below_target", "t_errors_after_fault_over_target")
                  if V.pop(k, 0)]
        if missed:
            I["targets_missed_report_only"] = missed
    drain = None
    try:
        with open(os.path.join(run, "drain_ms")) as f:
            drain = f.read().strip()
    except OSError:
        pass
    I["redis_queue_drain_ms"] = drain
    I["operations"] = len(load_ops)
    I["acked_writes"] = sum(1 for o in load_ops if o.op in ("set", "del") and o.result == ACK)

    return res, details, tp


HEADER = ("%-10s %5s %5s %5s %5s %17s %5s %5s %6s %16s %s" % (
    "scenario", "a", "b", "b~", "c", "d stale/max/over", "e", "f", "g s",
    "ops/s bef/dur/aft", "violations"))


def row(res, tp):
    V, I = res["violations"], res["info"]
    bad = sorted(k for k, v in V.items() if v)
    b = V["b_failed_applied_late"] + V["b_del_unexplained"] + V["b_redis_final_superseded"] + V["b_retry_applied"]
    a = V["a_acked_missing"] + V["a_applied_twice"] + V["a_acked_reordered"]
    c = V["c_never_written"] + V["c_read_before_written"] + V["c_never_in_redis"]
    e = V["e_node_differs_from_redis"] + V["e_node_no_answer"] + V.get("e_differs_after_drain", 0)
    d = "%d/%.1f/%d" % (I["d_stale_reads"], I["d_stale_age_max_s"], V["d_stale_over_bound"])
    g = I["g_heal_s"]
    g = ("%.1f" % g) if isinstance(g, float) else str(g)
    t = "%d/%d/%d" % (tp["before"], tp["during"], tp["after"])
    return "%-10s %5d %5d %5d %5d %17s %5d %5d %6s %16s %s" % (
        res["scenario"], a, b, I["b_failed_applied_after_overlapping_ack"], c, d, e,
        V["f_false_deaths"], g, t, (",".join(bad) if bad else "none") +
        "".join(" (missed, report-only: %s)" % ",".join(I.get("targets_missed_report_only", []))
                for _ in [0] if I.get("targets_missed_report_only")))


# ---- self-test: the checker on made-up runs ---------------------------------

def _selftest():
    """Builds small run directories, each with one known fault, and checks
    that exactly the expected counts come out. python3 check.py --selftest"""
    import tempfile
    S = 10**9
    t0 = 1_700_000_000 * S

    def resp(*args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out

    def make(d, hist, aof, final, logs=(), heal="100"):
        os.makedirs(os.path.join(d, "redis", "appendonlydir"))
        with open(os.path.join(d, "history.tsv"), "w") as f:
            f.write("#thread\top\tkey\tvalue\tstart_ns\tend_ns\tresult\n")
            for th, op, key, val, a, b, r in hist:
                f.write("%s\t%s\t%s\t%s\t%d\t%d\t%s\n" % (th, op, key, val, t0 + int(a * S), t0 + int(b * S), r))
        ad = os.path.join(d, "redis", "appendonlydir")
        with open(os.path.join(ad, "appendonly.aof.manifest"), "w") as f:
            f.write("file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n")
        with open(os.path.join(ad, "appendonly.aof.1.base.rdb"), "wb") as f:
            f.write(b"REDIS0010")
        with open(os.path.join(ad, "appendonly.aof.1.incr.aof"), "wb") as f:
            f.write(b"#TS:1700000000\r\n" + resp("SELECT", "0"))
            for cmd in aof:
                f.write(resp(*cmd))
        with open(os.path.join(d, "redis_final.tsv"), "w") as f:
            for k, v in final.items():
                f.write("%s\t%s\n" % (k, v or ""))
        with open(os.path.join(d, "events"), "w") as f:
            for name, at in (("load_start", 0), ("fault_start", 20), ("fault_end", 30), ("load_end", 40)):
                f.write("%s %d\n" % (name, t0 + at * S))
        with open(os.path.join(d, "n1.log"), "w") as f:
            for line in logs:
                f.write(line + "\n")
        with open(os.path.join(d, "heal_ms"), "w") as f:
            f.write(heal + "\n")

    K = "chaos:001"
    Q = ("q:10.99.0.1:7400", "qget", K)
    cases = [
        ("clean", [("t0", "set", K, "w0-1", 1, 2, "ok"), ("t1", "get", K, "w0-1", 3, 4, "ok"),
                   ("t1", "del", K, "-", 5, 6, "ok"), ("t1", "get", K, "-", 7, 8, "notfound"),
                   ("t0", "set", K, "w0-2", 9, 10, "timeout"), Q + ("w0-2", 50, 51, "ok")],
         [("SET", K, "w0-1"), ("DEL", K), ("SET", K, "w0-2")], {K: "w0-2"}, {}),
        ("acked missing", [("t0", "set", K, "w0-1", 1, 2, "ok"), Q + ("-", 50, 51, "notfound")],
         [], {K: None}, {"a_acked_missing": 1}),
        ("failed applied late", [("t0", "set", K, "w0-1", 1, 2, "timeout"), ("t1", "set", K, "w1-1", 3, 4, "ok"),
                                 Q + ("w1-1", 50, 51, "ok")],
         [("SET", K, "w1-1"), ("SET", K, "w0-1")], {K: "w0-1"},
         {"b_failed_applied_late": 1, "b_redis_final_superseded": 1, "e_node_differs_from_redis": 1}),
        ("retry applied", [("t0", "set", K, "w0-1", 1, 2, "retry"), Q + ("w0-1", 50, 51, "ok")],
         [("SET", K, "w0-1")], {K: "w0-1"}, {"b_retry_applied": 1}),
        ("phantom value", [("t0", "get", K, "zz", 1, 2, "ok"), Q + ("-", 50, 51, "notfound")],
         [], {K: None}, {"c_never_written": 1}),
        ("stale read", [("t0", "set", K, "w0-1", 1, 2, "ok"), ("t1", "set", K, "w1-1", 3, 4, "ok"),
                        ("t2", "get", K, "w0-1", 12, 13, "ok"), Q + ("w1-1", 50, 51, "ok")],
         [("SET", K, "w0-1"), ("SET", K, "w1-1")], {K: "w1-1"}, {"d_stale_over_bound": 1}),
        ("stale absent", [("t0", "set", K, "w0-1", 1, 2, "ok"), ("t2", "get", K, "-", 12, 13, "notfound"),
                          Q + ("w0-1", 50, 51, "ok")],
         [("SET", K, "w0-1")], {K: "w0-1"}, {"d_stale_over_bound": 1}),
        ("failed DEL late", [("t0", "set", K, "w0-1", 1, 2, "ok"), ("t1", "del", K, "-", 3, 4, "timeout"),
                             ("t0", "set", K, "w0-2", 5, 6, "ok"), Q + ("w0-2", 50, 51, "ok")],
         [("SET", K, "w0-1"), ("SET", K, "w0-2"), ("DEL", K)], {K: None},
         {"b_failed_applied_late": 1, "e_node_differs_from_redis": 1}),
        ("never in Redis", [("t0", "set", K, "w0-1", 1, 2, "backend"), ("t1", "get", K, "w0-1", 3, 4, "ok"),
                            Q + ("-", 50, 51, "notfound")],
         [], {K: None}, {"c_never_in_redis": 1}),
        ("acked reordered", [("t0", "set", K, "w0-1", 1, 2, "ok"), ("t1", "set", K, "w1-1", 3, 4, "ok"),
                             Q + ("w0-1", 50, 51, "ok")],
         [("SET", K, "w1-1"), ("SET", K, "w0-1")], {K: "w0-1"},
         {"a_acked_reordered": 1, "b_redis_final_superseded": 1}),
        ("false death", [Q + ("-", 50, 51, "notfound")], [], {K: None},
         {"f_false_deaths": 1}, ["2023-11-14T22:13:25.000Z INFO  peercached[n1] cluster: n2 is dead (was suspect), incarnation 1"]),
        ("slow heal", [Q + ("-", 50, 51, "notfound")], [], {K: None}, {"g_heal_over_bound": 1}, [], "9000"),
    ]
    bad = 0
    for case in cases:
        name, hist, aof, final, want = case[:5]
        logs = case[5] if len(case) > 5 else []
        heal = case[6] if len(case) > 6 else "100"
        with tempfile.TemporaryDirectory() as d:
            make(d, hist, aof, final, logs, heal)
            a = argparse.Namespace(run=d, scenario=name, prefix="", stale_bound_ms=5000, heal_bound_ms=3000,
                                   death_slack_ms=30000, victim=None, partition=None, tput_floor=None,
                                   error_tail_ms=None, targets_report_only=False)
            res, _, _ = check(a)
            got = {k: v for k, v in res["violations"].items() if v}
            ok = got == want
            bad += not ok
            print("selftest %-20s %s%s" % (name, "ok" if ok else "FAILED", "" if ok else ": %r, wanted %r" % (got, want)))
    print("selftest: %d passed, %d failed" % (len(cases) - bad, bad))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="the scenario's run directory")
    ap.add_argument("--scenario", default="?")
    ap.add_argument("--prefix", default="", help="the nodes' --redis-prefix (default empty)")
    ap.add_argument("--stale-bound-ms", type=int, default=10000)
    ap.add_argument("--heal-bound-ms", type=int, default=3000)
    ap.add_argument("--death-slack-ms", type=int, default=30000,
                    help="deaths of a faulted node accepted this long after the fault ends")
    ap.add_argument("--victim", help="the node killed or stopped")
    ap.add_argument("--partition", help="the sides, e.g. n1,n2/n3,n4,n5")
    ap.add_argument("--tput-floor", type=float, default=None,
                    help="throughput during the fault (from its 2nd second) over before, at least")
    ap.add_argument("--error-tail-ms", type=int, default=None,
                    help="failures after the fault's end stop within this (the burst that "
                         "follows the fault: until a whole second without one)")
    ap.add_argument("--targets-report-only", action="store_true",
                    help="report missed throughput / recovery targets without failing on them")
    ap.add_argument("--row", help="write the table row to this file")
    ap.add_argument("--header", action="store_true", help="print the table header and exit")
    ap.add_argument("--selftest", action="store_true", help="check the checker on made-up runs")
    args = ap.parse_args()
    if args.selftest:
        return _selftest()
    if args.header:
        print(HEADER)
        return 0
    if not args.run:
        ap.error("--run is required")
    res, details, tp = check(args)
    r = row(res, tp)
    if args.row:
        with open(args.row, "w") as f:
            f.write(r + "\n")
    with open(os.path.join(args.run, "check.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(HEADER)
    print(r)
    print("violations:")
    for k, v in res["violations"].items():
        print("  %-40s %s%s" % (k, v, "   <-- VIOLATION" if v else ""))
    print("measured:")
    for k, v in res["info"].items():
        print("  %-40s %s" % (k, v))
    for w in res["warnings"]:
        print("warning: " + w)
    if details:
        print("examples:")
        print("\n".join(details))
    return 1 if any(res["violations"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
