#!/usr/bin/env python3
"""cairn ingest benchmark: cairnd vs Orthanc (durable) vs DCMTK storescp.

Driver behind tools/bench.  It
  1. installs what is missing (apt: orthanc dcmtk strace; pip: pydicom pynetdicom pydicom-data),
  2. builds cairnd (`cargo build --release -p cairnd`) when the cairn peer is selected,
  3. builds the corpora under /tmp/dcmbench (reused when their manifest matches),
  4. runs the peer matrix with dcmbench.py (fresh peer and store per run, DCMTK
     /usr/bin/storescu over 1 and 4 associations, inside `unshare -n`),
  5. prints the per-peer table and a ratio table against cairn's targets, and
     leaves the records in a JSONL file (--out).

The harness (dcmbench.py, make_corpus.py, peers.toml, peers/orthanc.json.in) is
a copy of the dcmbench harness provided to this project; see
the header of dcmbench.py for what was changed.

Examples:
  tools/bench --quick                       # smoke run: small corpora, cairn+orthanc+dcmtk
  tools/bench --repeat 3                    # full matrix, 3 repetitions
  tools/bench --quick --peers orthanc,dcmtk # without cairn (no cargo build)
  tools/bench --report FILE.jsonl           # tables from earlier records (all runs in FILE)
  tools/bench --repeat 3 --floor --peers cairn,cairn-noflush,orthanc,dcmtk
      # also: cairn with every flush a no-op (analysis only), and the one-association
      # durability bound from the disk's own file+fsync rate
"""
import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ROOT = "/tmp/dcmbench"

# Full corpora: as in the harness README (2000 CT ~526 KB, 5000 MR ~10 KB).
# Quick corpora: same sources, fewer instances, still 4 parts of whole studies.
CORPORA = {
    False: {"dir": f"{ROOT}/corpus", "small": [], "large": []},
    True: {"dir": f"{ROOT}/corpus-quick",
           "small": ["--count", "1000", "--per-series", "25"],
           "large": ["--count", "400", "--per-series", "20"]},
}

TARGETS = {"orthanc": 2.0, "dcmtk": 0.7, "rss_mib_x4": 32.0}


def say(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    say("$", " ".join(cmd))
    return subprocess.run(cmd, **kw)


# ------------------------------------------------------------------ deps
def have_module(name):
    return importlib.util.find_spec(name) is not None


def ensure_deps(peers):
    apt = []
    if "orthanc" in ",".join(peers) and not shutil.which("Orthanc"):
        apt.append("orthanc")
    if not all(os.access(f"/usr/bin/{t}", os.X_OK) for t in ("storescu", "storescp", "echoscu")):
        apt.append("dcmtk")
    if not shutil.which("strace"):
        apt.append("strace")
    if not shutil.which("unshare"):
        apt.append("util-linux")
    if "cairn-noflush" in peers and not os.path.exists("/usr/lib/x86_64-linux-gnu/libeatmydata.so"):
        apt.append("eatmydata")
    if apt:
        if os.geteuid() != 0:
            sys.exit(f"missing Debian packages {apt}; run: sudo apt-get install -y {' '.join(apt)}")
        run(["apt-get", "update"], check=True)
        run(["apt-get", "install", "-y", "--no-install-recommends"] + apt, check=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    pip = []
    try:
        import pydicom  # noqa: F401
        if int(pydicom.__version__.split(".")[0]) < 3:
            pip.append("pydicom>=3")
    except ImportError:
        pip.append("pydicom>=3")
    if not have_module("pynetdicom"):
        pip.append("pynetdicom")
    if not have_module("data_store"):
        pip.append("pydicom-data")
    if pip:
        run([sys.executable, "-m", "pip", "install", "--quiet"] + pip, check=True)


def build_cairnd():
    r = run(["cargo", "build", "--release", "-p", "cairnd"], cwd=REPO)
    binp = os.path.join(REPO, "target", "release", "cairnd")
    if r.returncode != 0 or not os.access(binp, os.X_OK):
        sys.exit("cargo build --release -p cairnd failed (or produced no binary); "
                 "fix the build, or leave cairn out: --peers orthanc,dcmtk")


def ensure_corpora(quick, corpora):
    spec = CORPORA[quick]
    for c in corpora:
        run([sys.executable, os.path.join(HERE, "make_corpus.py"), "--kind", c,
             "--out", os.path.join(spec["dir"], c)] + spec[c], check=True)
    return spec["dir"]


# ------------------------------------------------------------------ report
def load(files, run_id=None):
    recs = []
    for fn in files:
        with open(fn) as f:
            recs += [json.loads(line) for line in f if line.strip()]
    recs = [r for r in recs if "peer" in r]
    if run_id:
        recs = [r for r in recs if r.get("run_id") == run_id]
    return recs


def ok(r):
    return (r.get("wall_s") is not None and not any(r["client_rc"])
            and r["stored_files"] >= r["files"])


def summary(recs, peer, corpus, conc):
    rs = [r for r in recs if (r["peer"], r["corpus"], r["conc"]) == (peer, corpus, conc)]
    good = [r for r in rs if ok(r)]
    if not good:
        return {"runs": len(rs), "ok": 0}
    w = statistics.median(r["wall_s"] for r in good)
    wf = statistics.median(r["wall_s"] + r["flush_s"] for r in good)
    n, b = good[0]["files"], good[0]["bytes"]
    return {"runs": len(rs), "ok": len(good), "ips": n / w, "mbs": b / 1e6 / w,
            "ips_flush": n / wf, "rss": statistics.median(r["peak_rss_mb"] for r in good)}


def fmt(v, f="{:.0f}"):
    return "n/a" if v is None else f.format(v)


def ratio_cell(a, b, target):
    if a is None or b is None:
        return "n/a", None
    x = a / b
    return f"{x:.2f} ({'ok' if x >= target else 'MISS'} >= {target})", x >= target


def disk_file(out, run_id):
    """Where `--floor` keeps the disk measurement of one run."""
    return f"{out}.{run_id}.disk.jsonl"


def measure_disk(out, run_id, data, corpora):
    """One thread writing each corpus's files with one fsync per file (dcmbench.py disk)."""
    for c in corpora:
        # each corpus in its own directory, left in place until the matrix is done: deleting
        # files right before a peer runs would slow that peer (see README)
        run([sys.executable, os.path.join(HERE, "dcmbench.py"), "disk", "--data", data,
             "--work", f"{ROOT}/work/disk-{run_id}-{c}", "--corpus", c, "--modes", "fsync",
             "--threads", "1", "--repeat", "1", "--leave", "--out", disk_file(out, run_id)],
            check=True)


def print_floor(recs, disk_recs):
    """The single-association bound: storescu waits for each response, so a durable server
    spends at least DCMTK's time per object plus one flush of that object."""
    disk = {}
    for r in disk_recs:
        if r.get("mode") == "fsync" and r.get("threads") == 1:
            disk.setdefault(r["corpus"], []).append(r["files"] / r["wall_s"])
    # Only the small corpus: a large object's data can reach the disk while it is still being
    # received (cairn writes it back as it arrives), so its write is not all on top of the
    # client's time; a small object arrives in one PDU, and all of its write and flush is.
    corpora = [c for c in sorted({r["corpus"] for r in recs if r["conc"] == 1}) if c == "small"]
    peers = {r["peer"] for r in recs}
    print()
    print("### One association: the durability floor")
    print()
    print("A client with one association waits for each C-STORE-RSP, and a durable response waits "
          "for a disk flush. A server doing exactly DCMTK's (non-durable) work plus one `fsync` of "
          "each file (the cheapest durable write: no directory, no index) can reach at most "
          "1 / (1/dcmtk + 1/disk). Small objects only: a large one can be written while it arrives.")
    print()
    head = "| load | dcmtk inst/s | disk: file + fsync /s (1 thread) | bound inst/s | bound/dcmtk |"
    line = "|---|---|---|---|---|"
    if "cairn-noflush" in peers:
        head += " cairn without flushes inst/s | that/dcmtk |"
        line += "---|---|"
    print(head)
    print(line)
    for c in corpora:
        d = summary(recs, "dcmtk", c, 1).get("ips")
        k = statistics.median(disk[c]) if disk.get(c) else None
        bound = 1 / (1 / d + 1 / k) if d and k else None
        row = (f"| {c} x1 | {fmt(d)} | {fmt(k)} | {fmt(bound)} | "
               f"{fmt(bound / d if bound else None, '{:.2f}')} "
               f"({'below' if bound and bound / d < TARGETS['dcmtk'] else 'not below'} the "
               f"{TARGETS['dcmtk']}x target) |")
        if "cairn-noflush" in peers:
            n = summary(recs, "cairn-noflush", c, 1).get("ips")
            row += f" {fmt(n)} | {fmt(n / d if n and d else None, '{:.2f}')} |"
        print(row)


def print_tables(recs, quick):
    import dcmbench  # the harness copy beside this file
    tmp = os.path.join(ROOT, f".table-{os.getpid()}.jsonl")
    with open(tmp, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    try:
        print("### C-STORE ingest (DCMTK storescu, loopback, TCP_NODELAY on); medians over OK runs")
        print()
        sys.stdout.flush()
        dcmbench.cmd_table(argparse.Namespace(results=[tmp]))
    finally:
        os.unlink(tmp)
    sys.stdout.flush()
    loads = sorted({(r["corpus"], r["conc"]) for r in recs}, key=lambda k: (k[0] != "large", k[1]))
    peers = {r["peer"] for r in recs}
    if "cairn" not in peers:
        return
    print()
    print("### cairn vs peers (ratio of instances/s, same corpus; targets from the issue)")
    print()
    print("| load | cairn inst/s | cairn MB/s | orthanc inst/s | cairn/orthanc | dcmtk inst/s | "
          "cairn/dcmtk | cairn/dcmtk incl. flush | cairn peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    met = total = 0
    for corpus, conc in loads:
        files = next(r["files"] for r in recs if (r["corpus"], r["conc"]) == (corpus, conc))
        c = summary(recs, "cairn", corpus, conc)
        o = summary(recs, "orthanc", corpus, conc)
        d = summary(recs, "dcmtk", corpus, conc)
        ro, go = ratio_cell(c.get("ips"), o.get("ips"), TARGETS["orthanc"])
        rd, gd = ratio_cell(c.get("ips"), d.get("ips"), TARGETS["dcmtk"])
        rdf = fmt(c["ips_flush"] / d["ips_flush"] if c.get("ips") and d.get("ips") else None, "{:.2f}")
        rss = c.get("rss")
        rss_cell = fmt(rss, "{:.1f}")
        checks = [go, gd]
        if conc == 4 and rss is not None:
            g = rss < TARGETS["rss_mib_x4"]
            rss_cell += f" ({'ok' if g else 'MISS'} < {TARGETS['rss_mib_x4']:.0f})"
            checks.append(g)
        for g in checks:
            if g is not None:
                total += 1
                met += bool(g)
        cok = "" if c["ok"] == c["runs"] else f" ({c['ok']}/{c['runs']} ok)"
        print(f"| {corpus} ({files}) x{conc} | {fmt(c.get('ips'))}{cok} | {fmt(c.get('mbs'), '{:.1f}')} | "
              f"{fmt(o.get('ips'))} | {ro} | {fmt(d.get('ips'))} | {rd} | {rdf} | {rss_cell} |")
    print()
    print(f"targets met: {met}/{total}" + ("  (quick corpus: indicative only)" if quick else ""))


def print_problems(recs):
    bad = [r for r in recs if not ok(r) or (r["peer"] == "cairn" and r.get("peer_rc") not in (0, None))
           or (r.get("post") and r["post"]["rc"] != 0)]
    cairn_logs = [r["log"] for r in recs if r["peer"] == "cairn" and r.get("log")]
    notes = []
    for r in bad:
        what = []
        if r.get("error"):
            what.append(r["error"])
        if r.get("wall_s") is not None and any(r["client_rc"]):
            what.append(f"storescu exit {r['client_rc']}")
        if r["stored_files"] < r["files"]:
            what.append(f"stored {r['stored_files']}/{r['files']}")
        if r["peer"] == "cairn" and r.get("peer_rc") not in (0, None):
            what.append(f"cairnd exit status {r['peer_rc']} after SIGTERM (expected 0)")
        if r.get("post") and r["post"]["rc"] != 0:
            what.append(f"post-check rc {r['post']['rc']}: {r['post']['out'].strip()[-300:]}")
        notes.append(f"- {r['peer']} {r['corpus']} x{r['conc']} rep{r['rep']}: {'; '.join(what)}"
                     + (f" (log: {r.get('peer_log') or r.get('log')})" if r.get('peer_log') or r.get('log') else ""))
        for t in r.get("client_tail") or []:
            if t and t.strip():
                notes.append("    storescu: " + t.strip().splitlines()[-1][:200])
                break
    warn = 0
    sample = []
    for fn in cairn_logs:
        try:
            with open(fn, errors="replace") as f:
                for line in f:
                    if " WARN " in line or " ERROR " in line or "panicked" in line:
                        warn += 1
                        if len(sample) < 5:
                            sample.append(line.rstrip()[:240])
        except FileNotFoundError:
            pass
    if cairn_logs:
        notes.append(f"- cairn logs: {warn} WARN/ERROR/panic lines in {len(cairn_logs)} run logs "
                     f"({os.path.dirname(cairn_logs[0])})")
        notes += ["    " + s for s in sample]
    posts = [r["post"] for r in recs if r["peer"] == "cairn" and r.get("post")]
    if posts:
        good = sum(p["rc"] == 0 for p in posts)
        first = (posts[-1]["out"].strip().splitlines() or [""])[0]
        notes.append(f"- cairn post-run check (cairnctl fsck + stats): rc 0 in {good}/{len(posts)} runs; "
                     f"last: {first}")
    if notes:
        print()
        print("### problems / notes")
        print("\n".join(notes))


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(prog="tools/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small corpus subset (400 CT + 1000 MR instances) for a smoke run")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions of the whole matrix (default 1)")
    ap.add_argument("--out", help="results JSONL, appended (default /tmp/dcmbench/results/cairn-DATE.jsonl)")
    ap.add_argument("--peers", default="cairn,orthanc,dcmtk",
                    help="comma list from tools/bench.d/peers.toml (default %(default)s; also "
                         "orthanc-nosync, pynetdicom, dicomrs)")
    ap.add_argument("--corpus", default="small,large")
    ap.add_argument("--conc", default="1,4", help="associations per load (default %(default)s)")
    ap.add_argument("--no-install", action="store_true", help="do not apt/pip install missing deps")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/cairnd")
    ap.add_argument("--no-netns", action="store_true", help="do not run inside `unshare -n`")
    ap.add_argument("--keep", action="store_true", help="keep each peer's store under /tmp/dcmbench/work")
    ap.add_argument("--report", nargs="+", metavar="JSONL", help="only print the tables for these files")
    ap.add_argument("--run-id", help="with --report: only records of this run")
    ap.add_argument("--floor", action="store_true",
                    help="after the matrix, measure the disk (one fsync per file, one thread) and "
                         "print the single-association durability bound against DCMTK")
    ap.add_argument("harness_args", nargs=argparse.REMAINDER,
                    help="after `--`: extra `dcmbench.py run` options, e.g. -- --storescu-opt=-pdu "
                         "--storescu-opt=131072")
    a = ap.parse_args()
    sys.dont_write_bytecode = True
    sys.path.insert(0, HERE)

    if a.report:
        recs = load(a.report, a.run_id)
        print_tables(recs, any(r.get("quick") == "1" for r in recs))
        if a.run_id and os.path.exists(disk_file(a.report[0], a.run_id)):
            with open(disk_file(a.report[0], a.run_id)) as f:
                print_floor(recs, [json.loads(x) for x in f if x.strip()])
        print_problems(recs)
        return

    peers = [p for p in a.peers.split(",") if p]
    corpora = [c for c in a.corpus.split(",") if c]
    out = a.out or f"{ROOT}/results/cairn-{time.strftime('%Y-%m-%d')}.jsonl"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not a.no_install:
        ensure_deps(peers)
    if ("cairn" in peers or "cairn-noflush" in peers) and not a.no_build:
        build_cairnd()
    data = ensure_corpora(a.quick, corpora)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    extra = [x for x in a.harness_args if x != "--"]
    cmd = [sys.executable, os.path.join(HERE, "dcmbench.py"), "run", "--data", data,
           "--work", f"{ROOT}/work", "--peers", ",".join(peers), "--corpus", ",".join(corpora),
           "--conc", a.conc, "--repeat", str(a.repeat), "--out", out, "--keep-logs",
           "--tag", f"run_id={run_id}", "--tag", f"quick={int(a.quick)}", "--tag", f"data={data}"]
    if a.no_netns:
        cmd.append("--no-netns")
    if a.keep:
        cmd.append("--keep")
    if a.floor:
        # before the matrix: its stores are deleted at its end, and this ext4 is slower to
        # create files right after a mass deletion (see README)
        measure_disk(out, run_id, data, [c for c in corpora if c == "small"])
    r = run(cmd + extra)
    for c in corpora:
        shutil.rmtree(f"{ROOT}/work/disk-{run_id}-{c}", ignore_errors=True)
    recs = load([out], run_id)
    if not recs:
        sys.exit(f"no results recorded (harness exit {r.returncode})")

    print()
    print(f"## cairn ingest benchmark, run {run_id}{' (quick)' if a.quick else ''}: "
          f"{a.repeat} repetition(s), corpora in {data}")
    print()
    print_tables(recs, a.quick)
    if a.floor:
        with open(disk_file(out, run_id)) as f:
            print_floor(recs, [json.loads(x) for x in f if x.strip()])
    print_problems(recs)
    print()
    print(f"results: {out} (run_id {run_id}); again: tools/bench --report {out} --run-id {run_id}")
    if r.returncode != 0:
        sys.exit(r.returncode)


if __name__ == "__main__":
    main()
