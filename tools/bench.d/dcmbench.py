#!/usr/bin/env python3
"""dcmbench: C-STORE ingest benchmark harness for DICOM storage SCPs.

Origin: copied from the dcmbench harness provided to this project (dcmbench.py,
make_corpus.py, peers.toml, peers/orthanc.json.in); not written by the cairn project.
Local changes for cairn's tools/bench: a {repo} placeholder (this repository's root), rendered `version`
commands, --tag KEY=VALUE fields on every record, a client timeout, a peer that
fails to start is recorded as a failed run instead of aborting the matrix, the
peer's exit status after SIGTERM is recorded (peer_rc), and an optional `post`
shell command per peer (run after the peer stopped, before its store is removed),
--keep-logs, and --cleanup (default `end`: every run has its own store directory and
the stores are removed after the whole matrix, so no run writes while the previous
run's store is being freed; `each` is the original behaviour), and the peers take
turns on each load (corpus x associations) instead of each peer running the whole
matrix in turn.

Sub-commands (run `python3 dcmbench.py CMD -h` for options):
  run         start each peer fresh per run, push a corpus with DCMTK storescu
              (1 association, or N parallel associations on disjoint parts),
              record wall time, flush time, peak RSS, CPU -> results JSONL
  table       print Markdown tables (medians) from one or more results files
  disk        physical limit: write the same file sizes as a corpus, with and
              without per-file fsync, 1 and N writer threads
  fsynccheck  run each peer under `strace -f -c` for a small store and count
              fsync-family syscalls per stored instance
  serve       start one peer in the foreground (Ctrl-C stops it)

Peers are defined in peers.toml (see comments there).  By default `run`,
`fsynccheck` and `serve` re-exec themselves inside a private network namespace
(`unshare -n`, loopback only), so no peer is reachable from outside whatever
address it binds to.  Pass --no-netns to skip that.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tomllib

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(BENCH))  # tools/bench.d -> repository root
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_DATA = "/tmp/dcmbench/corpus"
DEFAULT_WORK = "/tmp/dcmbench/work"


# ----------------------------------------------------------------- helpers
def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def ensure_netns(args):
    if args.no_netns or os.environ.get("DCMBENCH_NETNS") == "1":
        return
    env = dict(os.environ, DCMBENCH_NETNS="1")
    cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    os.execvpe("unshare", cmd, env)


def load_peers(path):
    with open(path, "rb") as f:
        return tomllib.load(f)["peers"]


def render(s, subst):
    return re.sub(r"\{(\w+)\}", lambda m: str(subst[m.group(1)]) if m.group(1) in subst else m.group(0), s)


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def cpu_seconds(pid, include_children=True):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        # fields after ')' start at field 3 (state): utime=14 stime=15 cutime=16 cstime=17
        v = int(st[11]) + int(st[12])
        if include_children:
            v += int(st[13]) + int(st[14])
        return v / CLK
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


class Sampler(threading.Thread):
    """Polls the peer's process tree: peak summed RSS and CPU of live descendants."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.child_cpu = {}  # cpu of descendants (not reaped into cutime yet) by pid
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            pids = tree(self.pid)
            self.peak = max(self.peak, sum(rss_bytes(p) for p in pids))
            for p in pids[1:]:
                self.child_cpu[p] = cpu_seconds(p, include_children=False)
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()


def steal_seconds():
    """CPU time stolen by the hypervisor, all CPUs (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = f.readline().split()
    return int(v[8]) / CLK if len(v) > 8 else 0.0


def wait_port(port, timeout):
    t_end = time.time() + timeout
    while time.time() < t_end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def client_env():
    return dict(os.environ, **dict(kv.split("=", 1) for kv in CLIENT_ENV))


CLIENT_ENV = []


def echo_ok(tool_dir, aet, port):
    r = subprocess.run([os.path.join(tool_dir, "echoscu"), "-aec", aet, "-aet", "DCMBENCH",
                        "127.0.0.1", str(port)], capture_output=True, timeout=30, env=client_env())
    return r.returncode == 0


class Peer:
    def __init__(self, name, spec, workdir, wrap=None, tag=None):
        self.name, self.spec = name, spec
        self.run_dir = os.path.join(workdir, f"{name}-{tag}" if tag else name)
        self.store = os.path.join(self.run_dir, "store")
        self.wrap = wrap or []
        self.proc = None
        self.rc = None

    def subst(self):
        s = {"port": self.spec["port"], "aet": self.spec["aet"], "store": self.store,
             "bench": BENCH, "repo": REPO, "config": os.path.join(self.run_dir, "peer.conf")}
        s.update(self.spec.get("vars", {}))
        return s

    def count_dir(self):
        return render(self.spec.get("count_dir", "{store}"), self.subst())

    def start(self, tool_dir, timeout=60):
        if os.path.exists(self.run_dir):
            shutil.rmtree(self.run_dir)
        os.makedirs(self.store)
        s = self.subst()
        if "config" in self.spec:
            with open(os.path.join(BENCH, self.spec["config"])) as f:
                tmpl = f.read()
            with open(s["config"], "w") as f:
                f.write(render(tmpl, s))
        cmd = render(self.spec["start"], s)
        self.log = open(os.path.join(self.run_dir, "peer.log"), "w")
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.spec.get("env", {}).items()})
        self.proc = subprocess.Popen(self.wrap + ["bash", "-c", cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.run_dir, env=env,
                                     start_new_session=True)
        t_end = time.time() + timeout
        while not wait_port(self.spec["port"], 0.5):
            if self.proc.poll() is not None or time.time() > t_end:
                break
        if self.proc.poll() is not None or not wait_port(self.spec["port"], 0.5):
            rc = self.proc.poll()
            self.stop()
            self.rc = rc if rc is not None else self.rc
            raise RuntimeError(f"{self.name}: did not start (exit status {rc}); see {self.log.name}")
        t_end = time.time() + timeout
        while not echo_ok(tool_dir, self.spec["aet"], self.spec["port"]):
            if time.time() > t_end:
                self.stop()
                raise RuntimeError(f"{self.name}: C-ECHO failed; see {self.log.name}")
            time.sleep(0.2)
        return self.proc.pid

    def stop(self, timeout=30):
        """SIGTERM, wait, SIGKILL.  Returns the server's exit status (None if it had to be killed)."""
        if not self.proc:
            return self.rc
        pids = tree(self.proc.pid)
        targets = pids[1:] if self.wrap else pids[:1]  # under strace: signal the traced server
        for p in targets:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.rc = None
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for p in tree(self.proc.pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        # leftover forked children (e.g. storescp --fork) of our own session
        for p in pids[1:]:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.proc = None
        self.log.close()
        return self.rc


def dir_stats(path):
    n = b = 0
    for root, _, files in os.walk(path):
        for fn in files:
            try:
                st = os.stat(os.path.join(root, fn))
            except FileNotFoundError:
                continue
            n += 1
            b += st.st_size
    return n, b


def corpus_info(cdir):
    with open(os.path.join(cdir, "manifest.json")) as f:
        m = json.load(f)
    parts = sorted(d for d in os.listdir(cdir) if d.startswith("part"))
    return m, [os.path.join(cdir, p) for p in parts]


def warm(cdir):
    for root, _, files in os.walk(cdir):
        for fn in files:
            with open(os.path.join(root, fn), "rb") as f:
                while f.read(1 << 20):
                    pass


def run_clients(args, spec, dirs_per_client):
    procs = []
    for i, dirs in enumerate(dirs_per_client):
        cmd = [os.path.join(args.dcmtk, "storescu"), "-aec", spec["aet"], "-aet", f"DCMBENCH{i}",
               "+sd", "+r", "+sp", "*.dcm", "-R"] + args.storescu_opt + ["127.0.0.1", str(spec["port"])] + dirs
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env=client_env()), cmd))
    def kill_all():
        log(f"clients still running after {args.client_timeout}s: killing them")
        for p, _ in procs:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    timer = threading.Timer(args.client_timeout, kill_all)
    timer.daemon = True
    timer.start()
    rcs, cpu, outs = [], 0.0, []
    for p, cmd in procs:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        rcs.append(p.returncode)
        cpu += ru.ru_utime + ru.ru_stime
        outs.append(p.stdout.read().decode(errors="replace")[-2000:])
    timer.cancel()
    return rcs, cpu, outs


# ----------------------------------------------------------------- run
def cmd_run(args):
    ensure_netns(args)
    peers = load_peers(args.peers_file)
    names = args.peers.split(",") if args.peers else list(peers)
    corpora = args.corpus.split(",")
    concs = [int(c) for c in args.conc.split(",")]
    os.makedirs(args.work, exist_ok=True)
    out = open(args.out, "a")
    for c in corpora:
        log("warming page cache for corpus", c)
        warm(os.path.join(args.data, c))
    tags = dict(kv.split("=", 1) for kv in args.tag)
    versions = {}
    for name in names:
        v = peers[name].get("version")
        if v:
            v = render(v, Peer(name, peers[name], args.work).subst())
            versions[name] = subprocess.run(v, shell=True, capture_output=True, text=True).stdout.strip()
    # Stores kept until the end of the matrix (--cleanup end): deleting a 1 GB store just
    # before the next run frees its inodes and blocks (online discard on this disk) while
    # that run writes, and slows whichever peer comes next.
    pending = []

    def remove_pending():
        for d in pending:
            shutil.rmtree(d, ignore_errors=True)
        pending.clear()
        os.sync()

    # Peers take turns on each load, so that the runs compared sit close together in time
    # (this disk's speed drifts over minutes).
    for rep in range(args.rep_start, args.rep_start + args.repeat):
        for c in corpora:
            cdir = os.path.join(args.data, c)
            man, parts = corpus_info(cdir)
            for conc in concs:
                if conc == 1:
                    groups = [[cdir]]
                else:
                    groups = [[] for _ in range(conc)]
                    for i, p in enumerate(parts):
                        groups[i % conc].append(p)
                for name in names:
                    spec = peers[name]
                    tag = f"{c}-x{conc}-rep{rep}" if args.cleanup == "end" else None
                    peer = Peer(name, spec, args.work, tag=tag)
                    if pending and shutil.disk_usage(args.work).free < 3 * man["bytes"] + (1 << 30):
                        log("disk space low: removing the stores of earlier runs now")
                        remove_pending()
                    os.sync()
                    time.sleep(args.settle)
                    try:
                        pid = peer.start(args.dcmtk)
                    except RuntimeError as e:
                        log(f"{name:15s} {c:6s} x{conc} rep{rep}: FAILED TO START: {e}")
                        rec = {"peer": name, "corpus": c, "conc": conc, "rep": rep,
                               "files": man["count"], "bytes": man["bytes"], "wall_s": None,
                               "flush_s": None, "client_rc": [None] * len(groups), "stored_files": 0,
                               "stored_bytes": 0, "peak_rss_mb": None, "server_cpu_s": None,
                               "version": versions.get(name, ""), "ts": time.time(),
                               "error": str(e), "peer_rc": peer.rc, **tags}
                        keep = f"{args.out}.fail-{name}-{c}-x{conc}-rep{rep}.log"
                        shutil.copy(os.path.join(peer.run_dir, "peer.log"), keep)
                        rec["peer_log"] = keep
                        out.write(json.dumps(rec) + "\n")
                        out.flush()
                        if not args.keep:
                            shutil.rmtree(peer.run_dir, ignore_errors=True)
                        continue
                    sampler = Sampler(pid)
                    sampler.start()
                    cpu0 = cpu_seconds(pid)
                    st0 = steal_seconds()
                    t0 = time.perf_counter()
                    rcs, ccpu, outs = run_clients(args, spec, groups)
                    t1 = time.perf_counter()
                    os.sync()
                    t2 = time.perf_counter()
                    time.sleep(0.2)
                    sampler.stop()
                    scpu = cpu_seconds(pid) - cpu0 + sum(sampler.child_cpu.values())
                    n, b = dir_stats(peer.count_dir())
                    prc = peer.stop()
                    post = None
                    if spec.get("post"):
                        pr = subprocess.run(render(spec["post"], peer.subst()), shell=True,
                                            capture_output=True, text=True, cwd=peer.run_dir)
                        post = {"rc": pr.returncode, "out": (pr.stdout + pr.stderr)[-2000:]}
                    rec = {"peer": name, "corpus": c, "conc": conc, "rep": rep,
                           "files": man["count"], "bytes": man["bytes"],
                           "wall_s": round(t1 - t0, 4), "flush_s": round(t2 - t1, 4),
                           "client_rc": rcs, "stored_files": n, "stored_bytes": b,
                           "peak_rss_mb": round(sampler.peak / 2**20, 1),
                           "server_cpu_s": round(scpu, 2), "client_cpu_s": round(ccpu, 2),
                           "version": versions.get(name, ""), "ts": time.time(),
                           "loadavg": os.getloadavg()[0],
                           "steal_pct": round(100 * (steal_seconds() - st0) / (os.cpu_count() * (t2 - t0)), 1),
                           "peer_rc": prc, **tags}
                    if post is not None:
                        rec["post"] = post
                    if args.keep_logs:
                        ldir = f"{args.out}.logs"
                        os.makedirs(ldir, exist_ok=True)
                        rec["log"] = os.path.join(ldir, f"{name}-{c}-x{conc}-rep{rep}-{time.strftime('%Y%m%d-%H%M%S')}.log")
                        shutil.copy(os.path.join(peer.run_dir, "peer.log"), rec["log"])
                    if any(rcs) or n < man["count"]:
                        rec["client_tail"] = outs
                        keep = f"{args.out}.fail-{name}-{c}-x{conc}-rep{rep}.log"
                        shutil.copy(os.path.join(peer.run_dir, "peer.log"), keep)
                        rec["peer_log"] = keep
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    log(f"{name:15s} {c:6s} x{conc} rep{rep}: {rec['wall_s']:7.2f}s "
                        f"{man['count']/rec['wall_s']:8.1f} inst/s {man['bytes']/1e6/rec['wall_s']:7.1f} MB/s "
                        f"flush {rec['flush_s']:.2f}s rss {rec['peak_rss_mb']}MB rc={rcs} stored={n} peer_rc={prc}")
                    if not args.keep and args.cleanup == "end":
                        pending.append(peer.run_dir)
                    elif not args.keep:
                        shutil.rmtree(peer.run_dir, ignore_errors=True)
    remove_pending()


# ----------------------------------------------------------------- table
def med(v):
    return statistics.median(v) if v else float("nan")


def cmd_table(args):
    recs = []
    for fn in args.results:
        with open(fn) as f:
            recs += [json.loads(l) for l in f if l.strip()]
    runs = [r for r in recs if "peer" in r]
    disk = [r for r in recs if "mode" in r]
    if runs:
        order = []
        for r in runs:
            k = (r["peer"], r["corpus"], r["conc"])
            if k not in order:
                order.append(k)
        order.sort(key=lambda k: (k[1], k[2], k[0]))
        print("| peer | corpus | assoc | runs ok | wall s median (min-max) | inst/s | MB/s | "
              "flush s | MB/s incl. flush | peak RSS MB | server CPU s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for k in order:
            rs = [r for r in runs if (r["peer"], r["corpus"], r["conc"]) == k]
            ok = [r for r in rs if not any(r["client_rc"]) and r["stored_files"] >= r["files"]]
            use = ok or [r for r in rs if r.get("wall_s") is not None]
            if not use:
                print(f"| {k[0]} | {k[1]} ({rs[0]['files']}) | {k[2]} | 0/{len(rs)} | did not start | | | | | | |")
                continue
            w = [r["wall_s"] for r in use]
            n, b = use[0]["files"], use[0]["bytes"]
            wf = [r["wall_s"] + r["flush_s"] for r in use]
            print(f"| {k[0]} | {k[1]} ({n}) | {k[2]} | {len(ok)}/{len(rs)} | {med(w):.2f} ({min(w):.2f}-{max(w):.2f}) | "
                  f"{n/med(w):.0f} | {b/1e6/med(w):.1f} | {med([r['flush_s'] for r in use]):.2f} | "
                  f"{b/1e6/med(wf):.1f} | {med([r['peak_rss_mb'] for r in use]):.0f} | "
                  f"{med([r['server_cpu_s'] for r in use]):.1f} |")
    if disk:
        print()
        print("| disk test | corpus | threads | runs | write s median (min-max) | files/s | MB/s | flush s | MB/s incl. flush |")
        print("|---|---|---|---|---|---|---|---|---|")
        keys = []
        for r in disk:
            k = (r["mode"], r["corpus"], r["threads"])
            if k not in keys:
                keys.append(k)
        keys.sort(key=lambda k: (k[1], k[0], k[2]))
        for k in keys:
            rs = [r for r in disk if (r["mode"], r["corpus"], r["threads"]) == k]
            ws = [r["wall_s"] for r in rs]
            w = med(ws)
            fl = med([r["flush_s"] for r in rs])
            n, b = rs[0]["files"], rs[0]["bytes"]
            print(f"| {k[0]} | {k[1]} ({n}) | {k[2]} | {len(rs)} | {w:.2f} ({min(ws):.2f}-{max(ws):.2f}) | {n/w:.0f} | {b/1e6/w:.1f} | "
                  f"{fl:.2f} | {b/1e6/(w+fl):.1f} |")


# ----------------------------------------------------------------- disk
def cmd_disk(args):
    out = open(args.out, "a")
    for c in args.corpus.split(","):
        cdir = os.path.join(args.data, c)
        man, _ = corpus_info(cdir)
        sizes = []
        for root, _, files in os.walk(cdir):
            for fn in files:
                if fn.endswith(".dcm"):
                    sizes.append(os.path.getsize(os.path.join(root, fn)))
        sizes.sort()
        buf = os.urandom(max(sizes))
        for rep in range(args.repeat):
            for mode in args.modes.split(","):
                for th in [int(t) for t in args.threads.split(",")]:
                    d = os.path.join(args.work, "disk")
                    shutil.rmtree(d, ignore_errors=True)
                    os.makedirs(d)
                    os.sync()
                    time.sleep(args.settle)
                    chunks = [sizes[i::th] for i in range(th)]

                    def writer(i, szs):
                        sub = os.path.join(d, f"t{i}")
                        os.mkdir(sub)
                        for j, sz in enumerate(szs):
                            fd = os.open(os.path.join(sub, f"{j:06d}.dcm"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                            os.write(fd, memoryview(buf)[:sz])
                            if mode == "fsync":
                                os.fsync(fd)
                            elif mode == "fdatasync":
                                os.fdatasync(fd)
                            os.close(fd)

                    ts = [threading.Thread(target=writer, args=(i, ch)) for i, ch in enumerate(chunks)]
                    st0 = steal_seconds()
                    t0 = time.perf_counter()
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                    t1 = time.perf_counter()
                    os.sync()
                    t2 = time.perf_counter()
                    rec = {"steal_pct": round(100 * (steal_seconds() - st0) / (os.cpu_count() * (t2 - t0)), 1),
                           "mode": mode, "corpus": c, "threads": th, "rep": rep, "files": len(sizes),
                           "bytes": sum(sizes), "wall_s": round(t1 - t0, 4), "flush_s": round(t2 - t1, 4),
                           "ts": time.time(), "loadavg": os.getloadavg()[0]}
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    log(f"disk {mode:9s} {c:6s} t{th} rep{rep}: {rec['wall_s']:.2f}s "
                        f"{len(sizes)/rec['wall_s']:.0f} files/s {sum(sizes)/1e6/rec['wall_s']:.1f} MB/s "
                        f"flush {rec['flush_s']:.2f}s")
                    last = (rep == args.repeat - 1 and mode == args.modes.split(",")[-1]
                            and th == int(args.threads.split(",")[-1]))
                    if not (args.leave and last):
                        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------- fsynccheck
def cmd_fsynccheck(args):
    ensure_netns(args)
    peers = load_peers(args.peers_file)
    names = args.peers.split(",") if args.peers else list(peers)
    cdir = os.path.join(args.data, args.corpus)
    _, parts = corpus_info(cdir)
    src = parts[0]
    nsrc = sum(len(f) for _, _, f in os.walk(src))
    print(f"| peer | instances | fsync | fdatasync | sync_file_range | syncfs/sync | per instance |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        spec = peers[name]
        trace = os.path.join(args.work, f"strace-{name}.txt")
        os.makedirs(args.work, exist_ok=True)
        peer = Peer(name, spec, args.work,
                    wrap=["strace", "-f", "-c", "-o", trace, "-e",
                          "trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync"])
        peer.start(args.dcmtk, timeout=120)
        # exclude the C-ECHO probe's own syscalls? C-ECHO does not sync; fine.
        rcs, _, outs = run_clients(args, spec, [[src]])
        time.sleep(0.5)
        peer.stop()
        counts = {}
        with open(trace) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m and m.group(2) != "total":
                    counts[m.group(2)] = int(m.group(1))
        tot = sum(counts.values())
        print(f"| {name} | {nsrc} (rc={rcs}) | {counts.get('fsync', 0)} | {counts.get('fdatasync', 0)} | "
              f"{counts.get('sync_file_range', 0)} | {counts.get('syncfs', 0) + counts.get('sync', 0)} | "
              f"{tot/nsrc:.2f} |", flush=True)
        shutil.rmtree(peer.run_dir, ignore_errors=True)


# ----------------------------------------------------------------- serve
def cmd_serve(args):
    ensure_netns(args)
    peers = load_peers(args.peers_file)
    peer = Peer(args.peer, peers[args.peer], args.work)
    pid = peer.start(args.dcmtk)
    log(f"{args.peer} up, pid {pid}, AET {peers[args.peer]['aet']} port {peers[args.peer]['port']}, store {peer.store}")
    try:
        if args.command:
            sys.exit(subprocess.call(args.command, shell=True))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, peers=True):
        p.add_argument("--data", default=DEFAULT_DATA, help="corpus root (default %(default)s)")
        p.add_argument("--work", default=DEFAULT_WORK, help="scratch root for peer storage (default %(default)s)")
        p.add_argument("--settle", type=float, default=1.0, help="seconds to idle after sync before each run")
        if peers:
            p.add_argument("--peers-file", default=os.path.join(BENCH, "peers.toml"))
            p.add_argument("--dcmtk", default="/usr/bin", help="dir holding DCMTK storescu/echoscu")
            p.add_argument("--no-netns", action="store_true", help="do not wrap in `unshare -n`")
            p.add_argument("--client-env", action="append", default=["TCP_NODELAY=1"],
                           help="VAR=VALUE for storescu/echoscu (repeatable; default TCP_NODELAY=1, which "
                                "makes DCMTK disable Nagle; pass --client-env TCP_NODELAY=0 for DCMTK's default)")
            p.add_argument("--client-timeout", type=float, default=900,
                           help="kill the storescu clients after this many seconds (default %(default)s)")
            p.add_argument("--storescu-opt", action="append", default=[],
                           help="extra storescu option (repeatable), e.g. --storescu-opt=-pdu --storescu-opt=131072")

    p = sub.add_parser("run")
    common(p)
    p.add_argument("--peers", help="comma list (default: all in peers file)")
    p.add_argument("--corpus", default="small,large")
    p.add_argument("--conc", default="1,4")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rep-start", type=int, default=0, help="first repetition number (to append more reps)")
    p.add_argument("--out", default="results.jsonl")
    p.add_argument("--keep", action="store_true", help="keep peer storage after each run")
    p.add_argument("--cleanup", choices=["end", "each"], default="end",
                   help="remove each run's store at the end of the matrix (default; every run gets "
                        "its own directory) or right after the run (the original harness)")
    p.add_argument("--keep-logs", action="store_true", help="copy every peer log to OUT.logs/")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE added to every record (repeatable)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("table")
    p.add_argument("results", nargs="+")
    p.set_defaults(fn=cmd_table)

    p = sub.add_parser("disk")
    common(p, peers=False)
    p.add_argument("--corpus", default="small,large")
    p.add_argument("--modes", default="nofsync,fsync")
    p.add_argument("--threads", default="1,4")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default="results-disk.jsonl")
    p.add_argument("--leave", action="store_true",
                   help="leave the last run's files in WORK/disk (the caller removes them later)")
    p.set_defaults(fn=cmd_disk)

    p = sub.add_parser("fsynccheck")
    common(p)
    p.add_argument("--peers")
    p.add_argument("--corpus", default="small")
    p.set_defaults(fn=cmd_fsynccheck)

    p = sub.add_parser("serve")
    common(p)
    p.add_argument("peer")
    p.add_argument("--command", help="run this shell command while the peer is up, then stop it")
    p.set_defaults(fn=cmd_serve)

    args = ap.parse_args()
    if hasattr(args, "client_env"):
        CLIENT_ENV[:] = args.client_env
    args.fn(args)


if __name__ == "__main__":
    main()
