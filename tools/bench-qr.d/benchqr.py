#!/usr/bin/env python3
"""cairn query/retrieve benchmark (driver behind tools/bench-qr).

Part "find": C-FIND latency on a large index.
  A fresh cairnd creates the schema on an empty data dir (then stops); make_index.py
  bulk-fills it (default 100,000 studies x 1 series x 10 instances = 1,000,000
  instance rows, realistic names/dates/accessions; no object files). The index is
  cached under /tmp/dcmbench/qr-index (quick: qr-index-quick) and reused while its
  manifest (size, seed, generator, schema) matches. cairnd then serves it
  (`target/release/cairnd run --config`, max_query_results 200000) and pynetdicom
  sends Study Root C-FINDs at STUDY level on one association:
    name-wildcard  PatientName=MAR*
    date-month     StudyDate=<one month>
    accession      AccessionNumber=<a different existing one each repetition>
  each with two return-key sets: "plain" (stored attributes only) and "viewer"
  (plus ModalitiesInStudy, NumberOfStudyRelatedSeries/Instances, ... as a PACS
  viewer asks). Per query: time from sending the C-FIND-RQ to the first answer
  (first pending response, or the final one when nothing matches) and to the last
  answer (the final response), median and p99 over --reps repetitions (after
  warm-up), and cairnd's CPU per query. Target: p99 to the first answer < 50 ms.

Part "get": C-GET throughput, cairn vs Orthanc side by side.
  The CT corpus of tools/bench (/tmp/dcmbench/corpus/large: 20 studies x 100
  instances of ~526 KB; quick: corpus-quick/large, 20 x 20) is loaded with
  /usr/bin/storescu into a fresh cairnd and a fresh Orthanc, both running. Then,
  per repetition and alternating the order, /usr/bin/getscu -S retrieves every
  study (one getscu process and association per study, QueryRetrieveLevel=STUDY)
  into a temporary directory: instances/s and MB/s per server. Target: cairn >= Orthanc.

Everything runs inside `unshare -n` (loopback only) unless --no-netns. DCMTK tools
and Orthanc get TCP_NODELAY=1. Records are appended to --out as JSON lines tagged
with run_id; server logs go to OUT.logs/.
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BENCH_D = os.path.join(REPO, "tools", "bench.d")
sys.dont_write_bytecode = True
sys.path.insert(0, BENCH_D)
sys.path.insert(0, HERE)
import dcmbench  # noqa: E402  (harness copy of tools/bench: Peer, Sampler, cpu/rss helpers)

ROOT = "/tmp/dcmbench"
WORK = f"{ROOT}/work-qr"
CAIRND = os.path.join(REPO, "target", "release", "cairnd")
CAIRNCTL = os.path.join(REPO, "target", "release", "cairnctl")
GETSCU = "/usr/bin/getscu"
STORESCU = "/usr/bin/storescu"
CLIENT_ENV = ["TCP_NODELAY=1"]
FIND_TARGET_MS = 50.0

SIZES = {  # quick?: (studies in the index, instances per study, corpus dir, make_corpus args)
    False: {"studies": 100000, "per_study": 10, "index": f"{ROOT}/qr-index",
            "corpus": f"{ROOT}/corpus/large", "corpus_args": []},
    True: {"studies": 10000, "per_study": 10, "index": f"{ROOT}/qr-index-quick",
           "corpus": f"{ROOT}/corpus-quick/large", "corpus_args": ["--count", "400", "--per-series", "20"]},
}

CAIRN_SPEC = {"aet": "CAIRN", "port": int(os.environ.get("BENCHQR_CAIRN_PORT", "14135")), "config": os.path.join(HERE, "cairn.toml.in"),
              "start": f"exec {CAIRND} run --config {{config}}",
              "vars": {"http_port": "18135", "max_results": "200000"}}
ORTHANC_SPEC = {"aet": "ORTHANC", "port": 14245, "config": os.path.join(HERE, "orthanc.json.in"),
                "start": "exec /usr/sbin/Orthanc {config}", "env": {"TCP_NODELAY": "1"},
                "vars": {"http_port": "18045"}}

PLAIN_KEYS = ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyDescription"]
VIEWER_KEYS = PLAIN_KEYS + ["PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
                            "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                            "NumberOfStudyRelatedInstances"]
DATE_MONTH = "20210301-20210331"   # index dates span 2016-01-01 .. 2025-12-31
DATE_MONTH_EARLY = "20160301-20160331"


def say(*a):
    print(time.strftime("%H:%M:%S"), "[bench-qr]", *a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    say("$", " ".join(cmd))
    return subprocess.run(cmd, **kw)


def client_env():
    return dict(os.environ, **dict(kv.split("=", 1) for kv in CLIENT_ENV))


def pct(v, q):
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    s = sorted(v)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def sha_file(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


# ------------------------------------------------------------------ setup (outside the netns)
def ensure_deps(args):
    sys.path.insert(0, BENCH_D)
    import bench as ingest  # tools/bench.d/bench.py: apt orthanc dcmtk strace, pip pydicom pynetdicom pydicom-data
    peers = ["cairn"] + (["orthanc"] if "get" in args.parts else [])
    ingest.ensure_deps(peers)
    if not os.access(GETSCU, os.X_OK):
        sys.exit(f"{GETSCU} missing (Debian package dcmtk)")


def ensure_cairnd():
    if os.access(CAIRND, os.X_OK):
        return
    r = run(["cargo", "build", "--release", "-p", "cairnd"], cwd=REPO)
    if r.returncode != 0 or not os.access(CAIRND, os.X_OK):
        sys.exit("cargo build --release -p cairnd failed (or produced no binary)")


def ensure_corpus(quick):
    spec = SIZES[quick]
    run([sys.executable, os.path.join(BENCH_D, "make_corpus.py"), "--kind", "large",
         "--out", spec["corpus"]] + spec["corpus_args"], check=True)


def in_netns(args):
    if args.no_netns or os.environ.get("BENCHQR_NETNS") == "1":
        return
    env = dict(os.environ, BENCHQR_NETNS="1")
    cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--skip-setup"]
    os.execvpe("unshare", cmd, env)


# ------------------------------------------------------------------ peers
def peer(name, spec, **vars_):
    s = dict(spec)
    s["vars"] = dict(spec.get("vars", {}), **vars_)
    return dcmbench.Peer(name, s, WORK)


def keep_log(p, out, label):
    ldir = f"{out}.logs"
    os.makedirs(ldir, exist_ok=True)
    dst = os.path.join(ldir, f"{label}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    try:
        shutil.copy(os.path.join(p.run_dir, "peer.log"), dst)
    except FileNotFoundError:
        return None
    return dst


def log_problems(path, limit=8):
    """WARN/ERROR/panic lines of a cairnd log."""
    n, sample = 0, []
    if not path:
        return 0, sample
    with open(path, errors="replace") as f:
        for line in f:
            if " WARN " in line or " ERROR " in line or "panicked" in line:
                n += 1
                if len(sample) < limit:
                    sample.append(line.rstrip()[:300])
    return n, sample


# ------------------------------------------------------------------ index
def schema_probe():
    """Start cairnd on an empty data dir so it creates the schema; returns (dir, version, hash)."""
    d = os.path.join(WORK, "schema")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    p = peer("cairn-schema", CAIRN_SPEC, data_dir=d)
    p.start("/usr/bin")
    rc = p.stop()
    if rc != 0:
        sys.exit(f"cairnd did not stop cleanly on the empty data dir (exit {rc}); see {p.run_dir}/peer.log")
    ver, h = schema_of(os.path.join(d, "cairn.db"))
    return d, ver, h


def schema_of(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ver = con.execute("PRAGMA user_version").fetchone()[0]
    sql = "\n".join(r[0] for r in con.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"))
    con.close()
    return ver, hashlib.sha256(sql.encode()).hexdigest()[:16]


def ensure_index(args):
    spec = SIZES[args.quick]
    studies = args.studies or spec["studies"]
    per = args.per_study or spec["per_study"]
    idx = args.index or (spec["index"] if studies == spec["studies"] and per == spec["per_study"]
                         else f"{ROOT}/qr-index-{studies}x{per}")
    _, ver, sh = schema_probe()
    want = {"studies": studies, "per_study": per, "seed": args.seed, "schema_version": ver,
            "schema_hash": sh, "generator": sha_file(os.path.join(HERE, "make_index.py"))}
    man = os.path.join(idx, "qr-index.json")
    if os.path.exists(man) and os.path.exists(os.path.join(idx, "cairn.db")) and not args.rebuild_index:
        old = json.load(open(man))
        if all(old.get(k) == v for k, v in want.items()):
            say(f"index up to date: {idx} ({old['instances']} instances, {studies} studies)")
            return idx, old
        say(f"index {idx} is stale ({ {k: old.get(k) for k in want if old.get(k) != want[k]} }): rebuilding")
    tmp = idx + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(os.path.join(WORK, "schema"), tmp)
    say(f"generating index: {studies} studies x {per} instances into {tmp}")
    t0 = time.time()
    r = subprocess.run([sys.executable, os.path.join(HERE, "make_index.py"), "--data", tmp,
                        "--studies", str(studies), "--per-study", str(per), "--seed", args.seed],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"make_index.py failed: {r.stderr.strip()[-2000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    info.update(want)
    info["built_s"] = round(time.time() - t0, 1)
    info["db_bytes"] = os.path.getsize(os.path.join(tmp, "cairn.db"))
    with open(os.path.join(tmp, "qr-index.json"), "w") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(idx, ignore_errors=True)
    os.rename(tmp, idx)
    say(f"index built in {info['built_s']} s: {info['instances']} instances, {info['db_bytes']/1e6:.0f} MB")
    return idx, info


def sample_accessions(idx, n, seed):
    con = sqlite3.connect(f"file:{os.path.join(idx, 'cairn.db')}?mode=ro", uri=True)
    top = con.execute("SELECT max(id) FROM studies").fetchone()[0]
    rnd = random.Random(seed + "/acc")
    out = []
    for sid in (rnd.randint(1, top) for _ in range(n)):
        row = con.execute("SELECT accession FROM studies WHERE id = ?", (sid,)).fetchone()
        if row:
            out.append(row[0])
    con.close()
    return out


# ------------------------------------------------------------------ part: find
def find_identifier(keys, match):
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for k in keys:
        setattr(ds, k, "")
    for k, v in match.items():
        setattr(ds, k, v)
    return ds


def answer_consistency(recs):
    """The same query must get the same number of answers every time (an accession: 1)."""
    notes = []
    raw = {(r["query"], r["keys"]): r for r in recs if r["client"] == "raw"}
    for r in recs:
        lo, hi = r["answers_min"], r["answers_max"]
        want = 1 if r["query"] == "accession" else None
        if lo == hi and (want is None or lo == want):
            continue
        ref = raw.get((r["query"], r["keys"])) or raw.get((r["query"], "plain"))
        other = ""
        if ref and ref is not r and ref["answers_min"] == ref["answers_max"]:
            other = f"; the raw client got {ref['answers_min']} every time"
        notes.append(f"find {r['client']} {r['query']}/{r['keys']}: {lo}-{hi} answers over {r['reps']} "
                     f"repetitions{other} (cairn's audit rows record how many it sent)")
    return notes


class PyFind:
    """pynetdicom client: one association; find() returns (s to first answer, s to final, n, status)."""

    def __init__(self, ae, args):
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
        self.model = StudyRootQueryRetrieveInformationModelFind
        self.assoc = ae.associate("127.0.0.1", CAIRN_SPEC["port"], ae_title=CAIRN_SPEC["aet"])
        if not self.assoc.is_established:
            raise RuntimeError("association not established")
        # pynetdicom's reactor sleeps 1 ms between polls when idle; poll faster so the client
        # adds less than 0.1 ms to the time to the first answer
        self.assoc.dul._run_loop_delay = 0.0001
        # pynetdicom leaves Nagle on and writes the C-FIND-RQ command and identifier as two
        # PDUs: the second waits for the server's delayed ACK (40 ms per query). The DCMTK
        # tools run with TCP_NODELAY=1 here too; --client-nagle shows the effect.
        if not args.client_nagle:
            self.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(self, ds):
        n, first, final = 0, None, None
        t0 = time.perf_counter()
        for status, _ident in self.assoc.send_c_find(ds, self.model):
            now = time.perf_counter()
            if first is None:
                first = now - t0
            if not status or "Status" not in status:
                final = -1
                break
            if status.Status in (0xFF00, 0xFF01):
                n += 1
            else:
                final = status.Status
        return first, time.perf_counter() - t0, n, final

    def close(self):
        self.assoc.release()


class RawClient:
    """rawfind.RawFind behind the same interface (identifier encoded beforehand)."""

    def __init__(self, ae, args):
        import rawfind
        self.c = rawfind.RawFind("127.0.0.1", CAIRN_SPEC["port"], CAIRN_SPEC["aet"], "BENCHRAW")

    def find(self, ds):
        from pynetdicom.dsutils import encode
        return self.c.find(encode(ds, False, True))

    def close(self):
        self.c.close()


def part_find(args, out, tags):
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    # the pynetdicom client decodes PDUs on its reactor thread while the main thread waits
    # for the GIL; the default 5 ms switch interval would show up in the first-answer time
    sys.setswitchinterval(0.0005)
    idx, info = ensure_index(args)
    accs = sample_accessions(idx, args.warmup + args.reps, args.seed)
    p = peer("cairn-find", CAIRN_SPEC, data_dir=idx)
    t_start = time.perf_counter()
    pid = p.start("/usr/bin", timeout=300)
    start_s = time.perf_counter() - t_start
    say(f"cairnd up on the index in {start_s:.2f} s (pid {pid})")
    sampler = dcmbench.Sampler(pid)
    sampler.start()
    ae = AE(ae_title="BENCHQR")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind,
                             [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    queries = [
        ("name-wildcard", lambda i: {"PatientName": "MAR*"}),
        ("date-month", lambda i: {"StudyDate": DATE_MONTH}),
        # an early month: cairn matches the upper end as substr(date, 1, n) <= ?, which the
        # date index cannot bound, so the scan runs from the start date to the newest study
        ("date-month-early", lambda i: {"StudyDate": DATE_MONTH_EARLY}),
        ("accession", lambda i: {"AccessionNumber": accs[i % len(accs)]}),
    ]
    keysets = {"plain": PLAIN_KEYS, "viewer": VIEWER_KEYS}
    recs, problems = [], []
    try:
        for client in args.clients.split(","):
            for qname, qfn in queries:
                for kname in (args.py_keysets if client == "pynetdicom" else args.keysets).split(","):
                    keys = keysets[kname]
                    t_a = time.perf_counter()
                    try:
                        conn = (PyFind if client == "pynetdicom" else RawClient)(ae, args)
                    except Exception as e:
                        problems.append(f"find {client} {qname}/{kname}: association failed: {e}")
                        continue
                    assoc_ms = (time.perf_counter() - t_a) * 1000
                    firsts, lasts, answers, statuses = [], [], [], []
                    cpu0 = None
                    for i in range(args.warmup + args.reps):
                        if i == args.warmup:
                            cpu0 = dcmbench.cpu_seconds(pid)
                        first, last, n, final = conn.find(find_identifier(keys, qfn(i)))
                        if i >= args.warmup:
                            firsts.append(first * 1000)
                            lasts.append(last * 1000)
                            answers.append(n)
                            statuses.append(final)
                    cpu = dcmbench.cpu_seconds(pid) - cpu0
                    conn.close()
                    bad = [s for s in statuses if s != 0]
                    rec = {"bench": "qr", "part": "find", "client": client, "query": qname, "keys": kname,
                           "match": {k: (v if qname != "accession" else "<rotating>") for k, v in qfn(0).items()},
                           "reps": len(firsts), "answers_median": statistics.median(answers),
                           "answers_min": min(answers), "answers_max": max(answers),
                           "first_ms_median": round(statistics.median(firsts), 3),
                           "first_ms_p99": round(pct(firsts, 99), 3), "first_ms_max": round(max(firsts), 3),
                           "last_ms_median": round(statistics.median(lasts), 3),
                           "last_ms_p99": round(pct(lasts, 99), 3), "last_ms_max": round(max(lasts), 3),
                           "server_cpu_ms_per_query": round(cpu * 1000 / len(firsts), 2),
                           "assoc_ms": round(assoc_ms, 2), "client_nagle": args.client_nagle,
                           "statuses_not_success": len(bad),
                           "status_sample": [f"0x{s:04X}" for s in bad[:3]] if bad else [],
                           "first_ms": [round(x, 3) for x in firsts], "last_ms": [round(x, 3) for x in lasts],
                           "index_instances": info["instances"], "index_studies": info["studies"],
                           "index_db_mb": round(info["db_bytes"] / 1e6), "cairnd_start_s": round(start_s, 2),
                           "loadavg": os.getloadavg()[0], "ts": time.time(), **tags}
                    rec["answers"] = answers
                    if bad:
                        problems.append(f"find {client} {qname}/{kname}: {len(bad)} final statuses not 0x0000: "
                                        f"{rec['status_sample']}")
                    recs.append(rec)
                    say(f"find {client:10s} {qname:14s} {kname:6s}: {rec['answers_median']:>6} answers  first "
                        f"{rec['first_ms_median']:7.2f} / p99 {rec['first_ms_p99']:7.2f} ms   last "
                        f"{rec['last_ms_median']:8.2f} / p99 {rec['last_ms_p99']:8.2f} ms  cairnd cpu "
                        f"{rec['server_cpu_ms_per_query']:.1f} ms/query")
    finally:
        sampler.stop()
        rc = p.stop()
        lg = keep_log(p, out, "cairn-find")
    nwarn, sample = log_problems(lg)
    if rc != 0:
        problems.append(f"cairnd (find) exit status {rc} after SIGTERM (expected 0)")
    for r in recs:
        r.update({"peak_rss_mb": round(sampler.peak / 2**20, 1), "peer_rc": rc, "log": lg,
                  "log_warn_lines": nwarn})
    problems += answer_consistency(recs)
    if nwarn:
        problems.append(f"cairnd (find) log {lg}: {nwarn} WARN/ERROR lines")
        problems += ["    " + s for s in sample]
    return recs, problems


# ------------------------------------------------------------------ part: get
def study_uids(corpus):
    import pydicom
    out = []
    for part in sorted(d for d in os.listdir(corpus) if d.startswith("part")):
        for st in sorted(os.listdir(os.path.join(corpus, part))):
            sd = os.path.join(corpus, part, st)
            n = sum(len(f) for _, _, f in os.walk(sd))
            se = sorted(os.listdir(sd))[0]
            first = sorted(os.listdir(os.path.join(sd, se)))[0]
            ds = pydicom.dcmread(os.path.join(sd, se, first), stop_before_pixels=True)
            out.append((str(ds.StudyInstanceUID), n))
    return out


def corpus_map(corpus):
    """SOP Instance UID -> corpus file."""
    import pydicom
    out = {}
    for root, _, files in os.walk(corpus):
        for fn in files:
            if fn.endswith(".dcm"):
                path = os.path.join(root, fn)
                out[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return out


def check_received(gdir, cmap, rnd, k=3):
    """Compare k random received files with their corpus originals (data set, meta excluded)."""
    import pydicom
    files = [os.path.join(r, f) for r, _, fs in os.walk(gdir) for f in fs]
    bad = []
    for path in rnd.sample(files, min(k, len(files))):
        got = pydicom.dcmread(path)
        src = cmap.get(str(got.get("SOPInstanceUID", "")))
        if not src:
            bad.append(f"{os.path.basename(path)}: SOP Instance UID not in the corpus")
        elif pydicom.dcmread(src) != got:
            bad.append(f"{os.path.basename(path)}: data set differs from {src}")
    return len(files) and min(k, len(files)), bad


def load_peer(p, corpus):
    cmd = [STORESCU, "-aec", p.spec["aet"], "-aet", "BENCHLOAD", "+sd", "+r", "+sp", "*.dcm", "-R",
           "127.0.0.1", str(p.spec["port"]), corpus]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=client_env())
    return r.returncode, time.perf_counter() - t0, (r.stdout + r.stderr)[-1000:]


def getscu(p, uid, outdir, extra, ignore):
    cmd = [GETSCU, "-S", "-aet", "GETSCU", "-aec", p.spec["aet"],
           "-k", "0008,0052=STUDY", "-k", f"0020,000D={uid}"] + \
        (["--ignore"] if ignore else ["-od", outdir]) + extra + ["127.0.0.1", str(p.spec["port"])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=client_env(), timeout=600)
    return r.returncode, (r.stdout + r.stderr)[-1500:]


def part_get(args, out, tags):
    spec = SIZES[args.quick]
    corpus = args.corpus or spec["corpus"]
    man, _ = dcmbench.corpus_info(corpus)
    studies = study_uids(corpus)
    say(f"corpus {corpus}: {man['count']} files, {man['bytes']/1e6:.0f} MB, {len(studies)} studies")
    dcmbench.warm(corpus)
    cmap = {} if args.ignore else corpus_map(corpus)
    rnd = random.Random(args.seed + "/get")
    peers = {"cairn": peer("cairn-get", CAIRN_SPEC, data_dir=os.path.join(WORK, "cairn-get", "store")),
             "orthanc": peer("orthanc-get", ORTHANC_SPEC)}
    names = [n for n in args.get_peers.split(",") if n]
    recs, problems = [], []
    pids, samplers, loads = {}, {}, {}
    try:
        for n in names:
            pids[n] = peers[n].start("/usr/bin", timeout=120)
            samplers[n] = dcmbench.Sampler(pids[n])
            samplers[n].start()
        for n in names:
            rc, secs, tail = load_peer(peers[n], corpus)
            cnt, b = dcmbench.dir_stats(os.path.join(peers[n].store, "objects" if n == "cairn" else "storage"))
            loads[n] = {"rc": rc, "s": round(secs, 2), "stored_files": cnt}
            say(f"load {n}: storescu rc {rc}, {secs:.1f} s ({man['count']/secs:.0f} inst/s), {cnt} files stored")
            if rc != 0 or cnt < man["count"]:
                problems.append(f"load {n}: storescu rc {rc}, {cnt}/{man['count']} files stored: {tail[-300:]}")
        gdir = os.path.join(WORK, "getscu")
        for n in names:  # warm-up: one study each, data not kept
            shutil.rmtree(gdir, ignore_errors=True)
            os.makedirs(gdir)
            rc, tail = getscu(peers[n], studies[0][0], gdir, args.getscu_opt, True)
            if rc != 0:
                problems.append(f"get {n} warm-up: getscu rc {rc}: {tail[-300:]}")
        for rep in range(args.get_reps):
            order = names if rep % 2 == 0 else names[::-1]
            for n in order:
                shutil.rmtree(gdir, ignore_errors=True)
                os.makedirs(gdir)
                os.sync()
                time.sleep(args.settle)
                cpu0 = sum(dcmbench.cpu_seconds(x) for x in dcmbench.tree(pids[n]))
                per, rcs, tails = [], [], []
                todo = list(studies)
                lock = threading.Lock()

                def worker():
                    while True:
                        with lock:
                            if not todo:
                                return
                            uid, _cnt = todo.pop(0)
                        ts = time.perf_counter()
                        rc, tail = getscu(peers[n], uid, gdir, args.getscu_opt, args.ignore)
                        with lock:
                            per.append(round(time.perf_counter() - ts, 4))
                            rcs.append(rc)
                            if rc != 0 and len(tails) < 2:
                                tails.append(tail[-400:])

                t0 = time.perf_counter()
                ths = [threading.Thread(target=worker) for _ in range(args.get_conc)]
                for t in ths:
                    t.start()
                for t in ths:
                    t.join()
                wall = time.perf_counter() - t0
                cpu = sum(dcmbench.cpu_seconds(x) for x in dcmbench.tree(pids[n])) - cpu0
                got, gb = dcmbench.dir_stats(gdir)
                expect = sum(c for _, c in studies)
                rec = {"bench": "qr", "part": "get", "peer": n, "rep": rep, "files": expect,
                       "bytes": man["bytes"], "received_files": None if args.ignore else got,
                       "received_bytes": None if args.ignore else gb, "wall_s": round(wall, 3),
                       "inst_s": round(expect / wall, 1), "mb_s": round(man["bytes"] / 1e6 / wall, 1),
                       "per_study_s": per, "getscu_rc": rcs, "server_cpu_s": round(cpu, 2),
                       "studies": len(studies), "conc": args.get_conc, "corpus": corpus, "ignore": args.ignore,
                       "getscu_opt": args.getscu_opt, "load": loads.get(n),
                       "loadavg": os.getloadavg()[0], "ts": time.time(), **tags}
                checked, diff = (0, []) if args.ignore else check_received(gdir, cmap, rnd)
                rec["content_checked"], rec["content_bad"] = checked, diff
                ok = not any(rcs) and (args.ignore or got >= expect) and not diff
                rec["ok"] = ok
                if diff:
                    problems.append(f"get {n} rep{rep}: received content differs: {diff}")
                if not ok:
                    rec["getscu_tail"] = tails
                    problems.append(f"get {n} rep{rep}: getscu rc {sorted(set(rcs))}, received {got}/{expect}"
                                    + (f": {tails[0][-300:]}" if tails else ""))
                recs.append(rec)
                say(f"get {n:8s} rep{rep}: {wall:6.2f} s  {rec['inst_s']:7.1f} inst/s  {rec['mb_s']:6.1f} MB/s  "
                    f"received {got}/{expect}  server cpu {cpu:.1f} s")
                shutil.rmtree(gdir, ignore_errors=True)
    finally:
        for n in names:
            if n in samplers:
                samplers[n].stop()
        rcs = {}
        for n in names:
            if n in pids:
                rcs[n] = peers[n].stop()
        logs = {n: keep_log(peers[n], out, f"{n}-get") for n in names if n in pids}
    if "cairn" in rcs and rcs["cairn"] != 0:
        problems.append(f"cairnd (get) exit status {rcs['cairn']} after SIGTERM (expected 0)")
    if "cairn" in logs and os.access(CAIRNCTL, os.X_OK):
        r = subprocess.run([CAIRNCTL, "--data", peers["cairn"].store, "fsck"], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"cairnctl fsck after get: rc {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
    if "cairn" in logs:
        nwarn, sample = log_problems(logs["cairn"])
        if nwarn:
            problems.append(f"cairnd (get) log {logs['cairn']}: {nwarn} WARN/ERROR lines")
            problems += ["    " + s for s in sample]
    for r in recs:
        r["peak_rss_mb"] = round(samplers[r["peer"]].peak / 2**20, 1)
        r["peer_rc"] = rcs.get(r["peer"])
        r["log"] = logs.get(r["peer"])
    if not args.keep:
        for n in names:
            shutil.rmtree(peers[n].run_dir, ignore_errors=True)
    return recs, problems


# ------------------------------------------------------------------ report
def load_recs(files, run_id=None):
    recs = []
    for fn in files:
        with open(fn) as f:
            recs += [json.loads(l) for l in f if l.strip()]
    recs = [r for r in recs if r.get("bench") == "qr"]
    if run_id:
        recs = [r for r in recs if r.get("run_id") == run_id]
    elif recs:
        last = recs[-1].get("run_id")
        recs = [r for r in recs if r.get("run_id") == last]
    return recs


def print_tables(recs):
    finds = [r for r in recs if r["part"] == "find"]
    gets = [r for r in recs if r["part"] == "get"]
    if finds:
        f0 = finds[0]
        print(f"### C-FIND, Study Root, STUDY level: index of {f0['index_instances']:,} instances / "
              f"{f0['index_studies']:,} studies ({f0['index_db_mb']} MB cairn.db); one association per row, "
              f"{f0['reps']} repetitions; ms from sending the C-FIND-RQ")
        print()
        print("| client | query | return keys | answers | first answer ms median | p99 | last answer ms median | p99 | "
              "cairnd CPU ms/query | p99 first < 50 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in finds:
            m = ", ".join(f"{k}={v}" for k, v in r["match"].items())
            ans = f"{r['answers_median']:g}" if r["answers_min"] == r["answers_max"] else \
                f"{r['answers_min']}-{r['answers_max']}"
            ok = "ok" if r["first_ms_p99"] < FIND_TARGET_MS and not r["statuses_not_success"] else "MISS"
            print(f"| {r.get('client', 'pynetdicom')} | {r['query']} ({m}) | {r['keys']} | {ans} | {r['first_ms_median']:.2f} | {r['first_ms_p99']:.2f} | "
                  f"{r['last_ms_median']:.1f} | {r['last_ms_p99']:.1f} | {r['server_cpu_ms_per_query']:.1f} | {ok} |")
        print()
        print(f"cairnd {f0.get('cairnd')} ({f0.get('cairnd_sha256', '?')}) started on the index in {f0['cairnd_start_s']} s; peak RSS during the queries "
              f"{f0.get('peak_rss_mb')} MB. Clients: pynetdicom decodes every answer (its per-answer cost "
              f"dominates 'last answer' for long lists); raw = tools/bench-qr.d/rawfind.py, reads statuses only.")
    if gets:
        if finds:
            print()
        g0 = gets[0]
        print(f"### C-GET: /usr/bin/getscu -S, QueryRetrieveLevel=STUDY, one association per study, "
              f"{g0.get('conc', 1)} at a time; {g0['studies']} studies, {g0['files']} CT instances, {g0['bytes']/1e6:.0f} MB"
              + (f", getscu {' '.join(g0['getscu_opt'])}" if g0.get("getscu_opt") else "")
              + (" (--ignore: not written)" if g0.get("ignore") else " (written to a temp dir)"))
        print()
        print(f"cairnd {g0.get('cairnd')} ({g0.get('cairnd_sha256', '?')})")
        print()
        print("| server | runs ok | wall s median (min-max) | inst/s | MB/s | server CPU s | peak RSS MB | load (storescu) s |")
        print("|---|---|---|---|---|---|---|---|")
        summ = {}
        for n in dict.fromkeys(r["peer"] for r in gets):
            rs = [r for r in gets if r["peer"] == n]
            ok = [r for r in rs if r["ok"]]
            use = ok or rs
            w = [r["wall_s"] for r in use]
            wm = statistics.median(w)
            summ[n] = (g0["files"] / wm) if ok else None
            print(f"| {n} | {len(ok)}/{len(rs)} | {wm:.2f} ({min(w):.2f}-{max(w):.2f}) | {g0['files']/wm:.1f} | "
                  f"{g0['bytes']/1e6/wm:.1f} | {statistics.median(r['server_cpu_s'] for r in use):.1f} | "
                  f"{use[0].get('peak_rss_mb')} | {(use[0].get('load') or {}).get('s')} |")
        if summ.get("cairn") and summ.get("orthanc"):
            x = summ["cairn"] / summ["orthanc"]
            print()
            print(f"cairn / Orthanc retrieve throughput: {x:.2f} ({'ok' if x >= 1 else 'MISS'} >= 1)")


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(prog="tools/bench-qr", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="index of 10,000 studies / 100,000 instances and 400 CT instances to retrieve")
    ap.add_argument("--parts", default="find,get", help="find, get or both (default %(default)s)")
    ap.add_argument("--out", help="results JSONL, appended (default /tmp/dcmbench/results/qr-DATE.jsonl)")
    ap.add_argument("--reps", type=int, default=50, help="C-FIND repetitions per query (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed C-FINDs before each query's reps")
    ap.add_argument("--client-nagle", action="store_true",
                    help="leave Nagle on in the pynetdicom client (its default; adds ~40 ms per C-FIND)")
    ap.add_argument("--clients", default="pynetdicom,raw",
                    help="C-FIND clients: pynetdicom (decodes every answer in Python), raw (socket "
                         "client of rawfind.py that only reads statuses; times the server) "
                         "(default %(default)s)")
    ap.add_argument("--keysets", default="plain,viewer", help="return-key sets for the raw client: plain, viewer")
    ap.add_argument("--py-keysets", default="plain",
                    help="return-key sets for the pynetdicom client (default %(default)s: with ~3000 answers "
                         "a pynetdicom query takes 2.5 s (plain) to 4.5 s (viewer), all of it decoding)")
    ap.add_argument("--studies", type=int, help="index size in studies (default 100000, quick 10000)")
    ap.add_argument("--per-study", type=int, help="instances per study in the index (default 10)")
    ap.add_argument("--seed", default="cairn-qr-v1")
    ap.add_argument("--index", help="index directory (default /tmp/dcmbench/qr-index[-quick])")
    ap.add_argument("--rebuild-index", action="store_true", help="regenerate the index even if cached")
    ap.add_argument("--corpus", help="corpus for the get part (default the CT corpus of tools/bench)")
    ap.add_argument("--get-peers", default="cairn,orthanc")
    ap.add_argument("--get-reps", type=int, help="C-GET repetitions per server (default 3, quick 2)")
    ap.add_argument("--get-conc", type=int, default=1,
                    help="getscu processes running at once over the studies (default %(default)s)")
    ap.add_argument("--ignore", action="store_true", help="getscu --ignore: receive but do not write files")
    ap.add_argument("--getscu-opt", action="append", default=[],
                    help="extra getscu option (repeatable), e.g. --getscu-opt=-pdu --getscu-opt=131072")
    ap.add_argument("--settle", type=float, default=1.0, help="idle seconds before each timed get")
    ap.add_argument("--keep", action="store_true", help="keep the get servers' stores under " + WORK)
    ap.add_argument("--no-install", action="store_true", help="do not apt/pip install missing deps")
    ap.add_argument("--no-netns", action="store_true", help="do not run inside `unshare -n`")
    ap.add_argument("--report", nargs="+", metavar="JSONL", help="only print the tables (last run, or --run-id)")
    ap.add_argument("--run-id")
    ap.add_argument("--skip-setup", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.parts = [p for p in a.parts.split(",") if p]
    if a.get_reps is None:
        a.get_reps = 2 if a.quick else 3
    dcmbench.CLIENT_ENV[:] = CLIENT_ENV

    if a.report:
        recs = load_recs(a.report, a.run_id)
        print_tables(recs)
        notes = answer_consistency([r for r in recs if r["part"] == "find"])
        notes += [f"get {r['peer']} rep{r['rep']}: not ok (getscu rc {sorted(set(r['getscu_rc']))}, received "
                  f"{r['received_files']}/{r['files']}, content {r.get('content_bad')})"
                  for r in recs if r["part"] == "get" and not r["ok"]]
        if notes:
            print()
            print("### problems / notes")
            print("\n".join(f"- {x}" for x in notes))
        return

    out = a.out or f"{ROOT}/results/qr-{time.strftime('%Y-%m-%d')}.jsonl"
    a.out = out = os.path.abspath(out)
    if not a.skip_setup:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not a.no_install:
            ensure_deps(a)
        ensure_cairnd()
        if "get" in a.parts:
            ensure_corpus(a.quick)
        a.run_id = a.run_id or time.strftime("%Y%m%dT%H%M%S")
        if not a.no_netns:
            sys.argv += ["--out", out, "--run-id", a.run_id]
            in_netns(a)
    run_id = a.run_id or time.strftime("%Y%m%dT%H%M%S")
    os.makedirs(WORK, exist_ok=True)
    tags = {"run_id": run_id, "quick": int(a.quick)}
    recs, problems = [], []
    with open(out, "a") as f:
        for part, fn in (("find", part_find), ("get", part_get)):
            if part not in a.parts:
                continue
            # the binary each part used (other builds may replace it between parts)
            tags["cairnd"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(CAIRND)))
            tags["cairnd_sha256"] = sha_file(CAIRND)
            try:
                r, p = fn(a, out, tags)
            except Exception as e:  # record and go on with the other part
                import traceback
                traceback.print_exc()
                r, p = [], [f"{part}: {type(e).__name__}: {e}"]
            for x in r:
                f.write(json.dumps(x) + "\n")
            f.flush()
            recs += r
            problems += p
    print()
    print(f"## cairn query/retrieve benchmark, run {run_id}{' (quick)' if a.quick else ''}")
    print()
    print_tables(recs)
    if problems:
        print()
        print("### problems / notes")
        print("\n".join(p if p.startswith("    ") else f"- {p}" for p in problems))
    print()
    print(f"results: {out} (run_id {run_id}); again: tools/bench-qr --report {out} --run-id {run_id}")
    sys.stdout.flush()
    if problems and not recs:
        sys.exit(1)


if __name__ == "__main__":
    main()
