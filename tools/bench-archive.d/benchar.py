#!/usr/bin/env python3
"""tools/bench-archive: the archive writer's speed, measured from outside the daemon.

Part `flush` (throughput): a cairnd with one emulated tape target, data directory and tape both
on tmpfs (/dev/shm), is loaded with N GiB of objects by /usr/bin/storescu with bundles that
never fill; it is restarted with the measured bundle size (1 GiB), so every bundle is due at
once, and `cairnctl archive flush` waits until all are verified (written, spaced back over,
read back and SHA-256-checked). Throughput = tar bytes of the verified bundles / (last
`bundles.verified_at` - first `bundles.started_at`), the catalog's own times; the flush's wall
time from cairnd's ready line to its answer is printed beside. A sampler watches the
cartridge's tape files grow (5 ms) and the bundle rows (20 ms), which splits each bundle into
its write phase (the tape file grows) and its read-back phase (it stopped growing, the bundle
is not yet verified). Record sizes are read from the emulator's `.rec` files; cairnd's own
"bundle written and verified" log lines (bytes, MB/s per bundle) are reported beside.

Part `load` (writer wait share): a fresh cairnd with bundles of 64 MiB or 1 s age receives a
storescu load. Wait share = 1 - busy share over the load's wall time, measured three ways:
cairnd's own counters in `archive.json` (`busy_ms` / `uptime_ms`, time spent writing and
verifying bundles), the bundle rows (sampled every 20 ms: is a bundle in state `writing`?),
and the archive thread's scheduler statistics (on a CPU / runnable but waiting for a CPU /
asleep). Also: ingest rate, tape rate during the load, backlog when storescu finished and
the time to drain it.

Nothing here asserts a target (the design asks >= 400 MB/s writing and verifying); it prints
numbers and appends one JSON line per part to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))
sys.path.insert(0, str(ROOT / "tools"))

# What the harness imports and runs, installed first on a machine that lacks it.
import deps  # noqa: E402

deps.ensure_debian({"/usr/bin/storescu": "dcmtk", "/usr/bin/sqlite3": "sqlite3"})
deps.ensure_python({"pydicom": "pydicom>=3", "pynetdicom": "pynetdicom"})

from archivelib import MIB, ArchiveCairn  # noqa: E402
from datagen import make_big  # noqa: E402
from harness import CAIRNCTL, CAIRND, DCMTK_ENV, STORESCU, finish  # noqa: E402


def tmpfs_root() -> Path:
    shm = Path("/dev/shm")
    with open("/proc/mounts") as f:
        mounts = {line.split()[1]: line.split()[2] for line in f}
    assert mounts.get(str(shm)) == "tmpfs", "/dev/shm is not tmpfs"
    return shm


def make_objects(dest: Path, gib: float, object_mib: int, seed: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    n = max(1, int(gib * 1024 / object_mib))
    out = []
    for k in range(n):
        p = dest / f"obj{k:05d}.dcm"
        if not p.exists():
            make_big(p, object_mib * MIB, seed=seed * 100000 + k)
        out.append(p)
    return out


def storescu(c: ArchiveCairn, paths: list[Path]) -> float:
    t = time.monotonic()
    r = subprocess.run([STORESCU, "-aet", "STORESCU", "-aec", c.ae, "-to", "30", "-ta", "30",
                        "-td", "120", "127.0.0.1", str(c.port), *map(str, paths)],
                       capture_output=True, text=True, env=DCMTK_ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return time.monotonic() - t


class Sampler:
    """Samples tape file sizes (every 5 ms) and bundle states (every 20 ms) in a thread."""

    def __init__(self, c: ArchiveCairn, cartridge: str):
        self.c = c
        self.cdir = c.tape.cdir(cartridge)
        self.sizes: list[tuple[float, dict[str, int]]] = []
        self.states: list[tuple[float, list[tuple[str, str]]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        con = None
        last_db = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            sizes = {}
            for f in self.cdir.glob("file-[0-9][0-9][0-9][0-9]"):
                try:
                    sizes[f.name] = f.stat().st_size
                except FileNotFoundError:
                    pass
            self.sizes.append((now, sizes))
            if now - last_db >= 0.02:
                last_db = now
                try:
                    if con is None and self.c.db_path.exists():
                        con = sqlite3.connect(f"file:{self.c.db_path}?mode=ro", uri=True,
                                              timeout=5)
                    if con is not None:
                        rows = con.execute("SELECT bundle_id, state FROM bundles").fetchall()
                        self.states.append((now, rows))
                except sqlite3.Error:
                    con = None
            time.sleep(0.005)
        if con is not None:
            con.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def busy_share(self, t0: float, t1: float) -> float:
        s = [(t, any(st == "writing" for _, st in rows)) for t, rows in self.states
             if t0 <= t <= t1]
        if not s:
            return float("nan")
        return sum(1 for _, b in s if b) / len(s)

    def phases(self) -> list[dict]:
        """Per tape file >= 1: first growth, last growth, and when its bundle was verified."""
        out = []
        names = sorted({n for _, sz in self.sizes for n in sz if n != "file-0000"})
        for name in names:
            series = [(t, sz.get(name, 0)) for t, sz in self.sizes]
            first = next((t for t, b in series if b > 0), None)
            final = series[-1][1]
            last = next((t for t, b in series if b >= final), None)
            fileno = int(name.split("-")[1])
            verified = None
            for t, rows in self.states:
                if any(bid.endswith(f".{fileno}") and st == "verified" for bid, st in rows):
                    verified = t
                    break
            out.append({"file": name, "bytes": final, "first_growth": first,
                        "last_growth": last, "verified_seen": verified})
        return out


def record_sizes(cdir: Path) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for rec in cdir.glob("file-*.rec"):
        body = rec.read_bytes()
        for i in range(0, len(body) - len(body) % 8, 8):
            ln = int.from_bytes(body[i:i + 4], "little")
            cnt = int.from_bytes(body[i + 4:i + 8], "little")
            sizes[ln] = sizes.get(ln, 0) + cnt
    return sizes


LOG_RE = re.compile(r"bundle written and verified.*?bytes=(\d+).*?mb_per_s=(\d+)")


def engine_lines(c: ArchiveCairn) -> list[tuple[int, int]]:
    text = re.sub(r"\x1b\[[0-9;]*m", "", c.log_path.read_text(errors="replace"))
    return [(int(a), int(b)) for a, b in LOG_RE.findall(text)]


def archive_thread(pid: int) -> int | None:
    """The tid of cairnd's thread named `archive`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == "archive":
                return int(tid)
        except OSError:
            pass
    return None


def schedstat(pid: int, tid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of one thread so far."""
    run_ns, wait_ns, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def live(c: ArchiveCairn, name: str = "tape", fresh_after: str | None = None,
         timeout: float = 5.0) -> dict:
    """The archive thread's own counters for a target from `archive.json` (bytes_verified,
    busy_ms, uptime_ms; docs/interface.md), optionally waiting for a publication newer than
    `fresh_after` (its updated_at)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = json.loads((c.data_dir / "archive.json").read_text())
            t = next(x for x in doc["targets"] if x["name"] == name)
            if fresh_after is None or t.get("updated_at", "") > fresh_after:
                return t
        except (OSError, ValueError, StopIteration, KeyError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.05)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a whole process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rfc3339(t: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def new_box(base: Path, **kw) -> ArchiveCairn:
    shutil.rmtree(base, ignore_errors=True)
    c = ArchiveCairn(base, targets=("tape",), box_id="BENCH", **kw)
    c.tape.insert_blank("TAPE01", capacity=1 << 40)
    return c


def part_flush(root: Path, objs: list[Path], bundle_mib: int) -> dict:
    # loaded with bundles that never fill, then restarted with the measured bundle size
    c = new_box(root / "flush", bundle_max_bytes=1 << 40, bundle_max_age_secs=86400)
    env_log = os.environ.get("RUST_LOG")
    os.environ["RUST_LOG"] = "info"
    try:
        c.start()
        total = sum(p.stat().st_size for p in objs)
        ingest_s = storescu(c, objs)
        time.sleep(1.5)
        assert not c.query("SELECT 1 FROM bundles"), "a bundle closed before the flush"
        assert c.stop() == 0
        c.archive["bundle_max_bytes"] = bundle_mib * MIB
        c.write_config()
        with Sampler(c, "TAPE01") as s:
            c.start()  # bundles are due at once (size); the flush also waits for them
            t0 = time.monotonic()
            tid = archive_thread(c.pid)
            run0 = schedstat(c.pid, tid) if tid else (0.0, 0.0)
            cpu0 = process_cpu(c.pid)
            r = subprocess.run([str(CAIRNCTL), "--data", str(c.data_dir), "archive", "flush"],
                               capture_output=True, text=True, timeout=3600)
            t1 = time.monotonic()
            run1 = schedstat(c.pid, tid) if tid else (0.0, 0.0)
            cpu1 = process_cpu(c.pid)
            eng = live(c)
            time.sleep(0.05)
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.queued() == 0, "queue not empty after flush"
        tar_bytes = c.query("SELECT coalesce(sum(bytes), 0) FROM bundles "
                            "WHERE state = 'verified'")[0][0]
        n_bundles = c.query("SELECT count(*) FROM bundles WHERE state = 'verified'")[0][0]
        first, last = c.query("SELECT min(started_at), max(verified_at) FROM bundles "
                              "WHERE state = 'verified'")[0]
        catalog_s = (rfc3339(last) - rfc3339(first))
        ph = s.phases()
        write_s = sum((p["last_growth"] - p["first_growth"]) for p in ph
                      if p["first_growth"] and p["last_growth"])
        verify_s = sum((p["verified_seen"] - p["last_growth"]) for p in ph
                       if p["verified_seen"] and p["last_growth"])
        recs = record_sizes(c.tape.cdir("TAPE01"))
        lines = engine_lines(c)
        res = {
            "part": "flush", "objects": len(objs), "object_bytes": total,
            "bundle_max_mib": bundle_mib, "bundles": n_bundles, "tar_bytes": tar_bytes,
            "ingest_s": round(ingest_s, 3), "ingest_mb_s": round(total / 1e6 / ingest_s, 1),
            "catalog_s": round(catalog_s, 3),
            "catalog_mb_s": round(tar_bytes / 1e6 / catalog_s, 1),
            "cairnd_cpu_s": round(cpu1 - cpu0, 3),
            "mb_per_cairnd_cpu_s": round(tar_bytes / 1e6 / (cpu1 - cpu0), 1)
            if cpu1 > cpu0 else None,
            "archive_thread_cpu_s": round(run1[0] - run0[0], 3),
            "archive_thread_runqueue_wait_s": round(run1[1] - run0[1], 3),
            "loadavg_1m": os.getloadavg()[0],
            "flush_s": round(t1 - t0, 3),
            "flush_mb_s": round(tar_bytes / 1e6 / (t1 - t0), 1),
            "write_phase_s": round(write_s, 3),
            "write_mb_s": round(tar_bytes / 1e6 / write_s, 1) if write_s > 0 else None,
            "readback_phase_s": round(verify_s, 3),
            "readback_mb_s": round(tar_bytes / 1e6 / verify_s, 1) if verify_s > 0 else None,
            "record_sizes": {str(k): v for k, v in sorted(recs.items())},
            "engine_bundles": [{"bytes": b, "mb_per_s": m} for b, m in lines],
            "engine_bytes_verified": eng.get("bytes_verified"),
            "engine_busy_ms": eng.get("busy_ms"),
            "engine_mb_s": round(eng["bytes_verified"] / 1e3 / eng["busy_ms"], 1)
            if eng.get("busy_ms") else None,
        }
        return res
    finally:
        if env_log is None:
            os.environ.pop("RUST_LOG", None)
        else:
            os.environ["RUST_LOG"] = env_log
        finish(c)


def part_load(root: Path, objs: list[Path], bundle_mib: int) -> dict:
    c = new_box(root / "load", bundle_max_bytes=bundle_mib * MIB, bundle_max_age_secs=1)
    try:
        c.start()
        total = sum(p.stat().st_size for p in objs)
        tid = archive_thread(c.pid)
        with Sampler(c, "TAPE01") as s:
            e0 = live(c)
            t0 = time.monotonic()
            st0 = schedstat(c.pid, tid) if tid else (0.0, 0.0)
            ingest_s = storescu(c, objs)
            t1 = time.monotonic()
            st1 = schedstat(c.pid, tid) if tid else (0.0, 0.0)
            e1 = live(c, fresh_after=e0.get("updated_at", ""))
            backlog = c.queued()
            backlog_bytes = c.query(
                "SELECT coalesce(sum(i.size), 0) FROM archive_queue q "
                "JOIN instances i ON i.id = q.instance_ref")[0][0]
            drained = c.wait_queue(lambda n: n == 0, timeout=1800)
            t2 = time.monotonic()
            time.sleep(0.05)
        assert drained == 0, "queue never drained"
        busy = s.busy_share(t0, t1)
        tape_during = 0
        for t, sz in s.sizes:
            if t <= t1:
                tape_during = sum(v for k, v in sz.items() if k != "file-0000")
        tar_bytes = c.query("SELECT coalesce(sum(bytes), 0) FROM bundles "
                            "WHERE state = 'verified'")[0][0]
        n_bundles = c.query("SELECT count(*) FROM bundles WHERE state = 'verified'")[0][0]
        return {
            "part": "load", "objects": len(objs), "object_bytes": total,
            "bundle_max_mib": bundle_mib, "bundle_max_age_s": 1, "bundles": n_bundles,
            "tar_bytes": tar_bytes,
            "load_s": round(ingest_s, 3), "ingest_mb_s": round(total / 1e6 / ingest_s, 1),
            "archive_thread_on_cpu_share": round((st1[0] - st0[0]) / (t1 - t0), 3),
            "archive_thread_runqueue_share": round((st1[1] - st0[1]) / (t1 - t0), 3),
            "archive_thread_sleeping_share": round(
                1 - (st1[0] - st0[0] + st1[1] - st0[1]) / (t1 - t0), 3),
            "loadavg_1m": os.getloadavg()[0],
            "engine_busy_share": round((e1["busy_ms"] - e0["busy_ms"]) /
                                       (e1["uptime_ms"] - e0["uptime_ms"]), 3)
            if e1.get("uptime_ms") and e0.get("uptime_ms") is not None
            and e1["uptime_ms"] > e0["uptime_ms"] else None,
            "writer_busy_share": round(busy, 3),
            "writer_wait_share": round(1 - busy, 3),
            "tape_bytes_during_load": tape_during,
            "tape_mb_s_during_load": round(tape_during / 1e6 / (t1 - t0), 1),
            "backlog_at_load_end": backlog, "backlog_bytes_at_load_end": backlog_bytes,
            "drain_s": round(t2 - t1, 3),
            "engine_bundles_mb_s_median": statistics.median(
                [m for _, m in engine_lines(c)] or [0]),
        }
    finally:
        finish(c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.5 GiB instead of 2 GiB")
    ap.add_argument("--gib", type=float, default=None, help="GiB of objects (default 2)")
    ap.add_argument("--object-mib", type=int, default=8, help="object size in MiB (8)")
    ap.add_argument("--bundle-mib", type=int, default=1024,
                    help="bundle size for the flush part in MiB (1024)")
    ap.add_argument("--load-bundle-mib", type=int, default=64,
                    help="bundle size for the load part in MiB (64)")
    ap.add_argument("--parts", default="flush,load")
    ap.add_argument("--out", default="/tmp/cairn-bench-archive.jsonl")
    ap.add_argument("--keep", action="store_true", help="keep the tmpfs work directory")
    a = ap.parse_args()
    gib = a.gib if a.gib is not None else (0.5 if a.quick else 2.0)
    assert CAIRND.exists() and CAIRNCTL.exists(), \
        f"build first: cargo build --release -p cairnd -p cairnctl ({CAIRND})"
    for tool in (STORESCU, "sqlite3"):
        assert shutil.which(tool), f"{tool} missing (tools/test installs it)"
    root = tmpfs_root() / f"cairn-bench-archive-{os.getpid()}"
    root.mkdir()
    results = []
    try:
        print(f"generating {gib} GiB of {a.object_mib} MiB objects on tmpfs ...", flush=True)
        objs = make_objects(root / "objects", gib, a.object_mib, seed=1)
        parts = a.parts.split(",")
        if "flush" in parts:
            r = part_flush(root, objs, a.bundle_mib)
            shutil.rmtree(root / "flush", ignore_errors=True)  # free the tmpfs
            results.append(r)
            print(f"\nflush: {r['bundles']} bundle(s), {r['tar_bytes'] / 1e6:.0f} MB of tar; "
                  f"first bundle begun -> last verified (catalog times) {r['catalog_s']} s = "
                  f"{r['catalog_mb_s']} MB/s written + read back + checked"
                  f"\n  cairnctl archive flush from cairnd start to answer: {r['flush_s']} s "
                  f"({r['flush_mb_s']} MB/s)"
                  f"\n  cairnd used {r['cairnd_cpu_s']} CPU-s ({r['mb_per_cairnd_cpu_s']} MB per "
                  f"CPU-second, all threads); its archive thread was runnable but waiting for "
                  f"a CPU {r['archive_thread_runqueue_wait_s']} s "
                  f"(load average {r['loadavg_1m']:.1f} on {os.cpu_count()} CPUs)"
                  f"\n  cairnd's own counters (archive.json): {r['engine_bytes_verified']} bytes "
                  f"verified in {r['engine_busy_ms']} ms busy = {r['engine_mb_s']} MB/s"
                  f"\n  write phase {r['write_phase_s']} s ({r['write_mb_s']} MB/s), read-back "
                  f"phase {r['readback_phase_s']} s ({r['readback_mb_s']} MB/s)"
                  f"\n  records: {r['record_sizes']} (length: count)"
                  f"\n  cairnd per bundle: {r['engine_bundles']}"
                  f"\n  (ingest by storescu before it: {r['ingest_mb_s']} MB/s)", flush=True)
        if "load" in parts:
            r = part_load(root, objs, a.load_bundle_mib)
            results.append(r)
            eb = r["engine_busy_share"]
            print(f"\nload: storescu {r['object_bytes'] / 1e6:.0f} MB in {r['load_s']} s "
                  f"({r['ingest_mb_s']} MB/s); archive writer waiting for input "
                  f"{'?' if eb is None else format(1 - eb, '.1%')} of that time by cairnd's "
                  f"busy_ms/uptime_ms, {r['writer_wait_share']:.1%} by the bundle rows "
                  f"(no bundle in state writing)"
                  f"\n  archive thread during the load: on a CPU "
                  f"{r['archive_thread_on_cpu_share']:.1%}, runnable but waiting for a CPU "
                  f"{r['archive_thread_runqueue_share']:.1%}, asleep (waiting for input) "
                  f"{r['archive_thread_sleeping_share']:.1%}"
                  f"\n  tape during the load: {r['tape_mb_s_during_load']} MB/s; backlog at "
                  f"load end {r['backlog_at_load_end']} instances "
                  f"({r['backlog_bytes_at_load_end'] / 1e6:.0f} MB), drained in "
                  f"{r['drain_s']} s; {r['bundles']} bundles", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(a.out, "a") as f:
        for r in results:
            f.write(json.dumps({"at": stamp, **r}) + "\n")
    print(f"\nresults appended to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
