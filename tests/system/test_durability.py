"""The durability contract: an acknowledged instance survives anything; nothing is half-kept.

(a) SIGKILL at random moments under 4 concurrent storescu peers, 20 rounds on one store;
(b) 8 associations storing the same study at once; (c) same UID with different bytes;
(d) SIGTERM while peers send; (e) a full disk (tmpfs) -> 0xA700 and nothing left behind.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from datagen import make_big, make_instances, make_one, uid
from harness import (DCMTK_ENV, STORESCU, dataset_bytes, meta_uid, read_meta, sha256_file,
                     store_responses)

ROUNDS = int(os.environ.get("CAIRN_CRASH_ROUNDS", "20"))  # more for a soak run
PER_ROUND = 500
PEERS = 4


def start_storescu(c, files, calling="STORESCU") -> subprocess.Popen:
    return subprocess.Popen(
        [STORESCU, "-v", "-aet", calling, "-aec", c.ae, "-to", "20", "-ta", "20", "-td", "20",
         "127.0.0.1", str(c.port), *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=DCMTK_ENV)


def acked(output: str) -> list[str]:
    """Paths whose C-STORE got a Success response, from `storescu -v` output."""
    return [path for path, resp in store_responses(output) if "(Success)" in resp]


def check_instance(c, sop: str) -> None:
    row = c.current_row(sop)
    assert row is not None, f"acknowledged {sop} has no current instances row"
    path = c.object_path(row["sha256"])
    assert sha256_file(path) == row["sha256"], f"{sop}: object file hash mismatch"
    meta, _, _ = read_meta(path)
    assert meta_uid(meta, 3) == sop


def send_round(c, insts) -> list[subprocess.Popen]:
    chunk = (len(insts) + PEERS - 1) // PEERS
    return [start_storescu(c, [i.path for i in insts[k * chunk:(k + 1) * chunk]])
            for k in range(PEERS)]


def test_crash_rounds_sigkill(cairn_factory, tmp_path):
    c = cairn_factory("crash", start=False)
    rng = random.Random(20240601)
    t_start = time.monotonic()

    # Calibration: how long do 4 peers take for 500 instances here, uninterrupted? The kill
    # moment is then drawn from [0.2 s, min(3 s, that time)] so that it lands mid-transfer.
    calib = make_instances(tmp_path / "calib", PER_ROUND, seed="crash-calibration")
    c.start()
    t0 = time.monotonic()
    for p in send_round(c, calib):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out[-2000:]
    full = time.monotonic() - t0
    assert c.stop() == 0
    window = (0.2, max(0.3, min(3.0, 0.9 * full)))

    all_acked: dict[str, int] = {i.sop_uid: -1 for i in calib}
    per_round: list[int] = []
    for rnd in range(ROUNDS):
        insts = make_instances(tmp_path / f"round{rnd}", PER_ROUND, seed=f"crash-{rnd}")
        by_path = {str(i.path): i for i in insts}
        c.start()
        procs = send_round(c, insts)
        time.sleep(rng.uniform(*window))
        c.kill()
        round_acked = []
        for p in procs:
            out, _ = p.communicate(timeout=60)
            round_acked += [by_path[f].sop_uid for f in acked(out)]
        c.start()
        assert c.spool_files() == [], f"round {rnd}: spool not empty after restart"
        for sop in round_acked:
            check_instance(c, sop)
            all_acked[sop] = rnd
        per_round.append(len(round_acked))
        rc = c.stop()
        assert rc == 0, f"round {rnd}: SIGTERM exit {rc}\n{c.log_tail()}"
        r = c.fsck()
        assert r.returncode == 0, f"round {rnd}: fsck failed\n{r.stdout}{r.stderr}"
        shutil.rmtree(tmp_path / f"round{rnd}")
    # The whole history, once more, after the last clean restart.
    c.start()
    for sop in all_acked:
        check_instance(c, sop)
    print(f"500 instances took {full:.2f}s; kill window {window}; acknowledged per round: "
          f"{per_round}")
    interrupted = sum(1 for n in per_round if n < PER_ROUND)
    assert interrupted >= ROUNDS // 2, f"only {interrupted} rounds were cut mid-send: {per_round}"
    elapsed = time.monotonic() - t_start
    assert elapsed < 240 * ROUNDS / 20, f"crash rounds took {elapsed:.0f}s (budget 240s per 20)"
    assert c.stop() == 0
    shutil.rmtree(c.data_dir)  # ~10k objects; kept only when the test fails


def test_concurrent_same_study(cairn, tmp_path):
    insts = make_instances(tmp_path / "study", 20, seed="same-study", per_study=(20, 20))
    results: list[list[int]] = [[] for _ in range(8)]
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def sender(k: int) -> None:
        try:
            meta, _, _ = read_meta(insts[0].path)
            assoc = cairn.associate([(insts[0].sop_class, [meta_uid(meta, 0x10)])])
            assert assoc.is_established, "association refused"
            barrier.wait(10)
            try:
                for inst in insts:
                    results[k].append(assoc.send_c_store(inst.path).Status)
            finally:
                assoc.release()
        except Exception as exc:  # reported below
            errors.append(f"sender {k}: {exc!r}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(r == [0] * 20 for r in results), results
    files = cairn.object_files()
    assert len(files) == 20, f"{len(files)} object files for 20 instances"
    for inst in insts:
        rows = cairn.instance_rows(inst.sop_uid)
        assert len(rows) == 1 and rows[0]["current"] == 1, rows
        check_instance(cairn, inst.sop_uid)
    assert cairn.wait_spool_empty() == []
    r = cairn.fsck()
    assert r.returncode == 0, r.stdout + r.stderr


def _store(c, path: Path) -> int:
    meta, _, _ = read_meta(path)
    assoc = c.associate([(meta_uid(meta, 2), [meta_uid(meta, 0x10)])])
    assert assoc.is_established
    try:
        return assoc.send_c_store(path).Status
    finally:
        assoc.release()


def test_conflicting_resend_keeps_both(cairn, tmp_path):
    sop, study, series = uid("conflict", 1), uid("conflict", 2), uid("conflict", 3)
    v1 = make_one(tmp_path / "v1.dcm", sop_uid=sop, study_uid=study, series_uid=series,
                  tweak="version one")
    v2 = make_one(tmp_path / "v2.dcm", sop_uid=sop, study_uid=study, series_uid=series,
                  tweak="version two, different bytes")
    assert _store(cairn, v1.path) == 0x0000
    assert _store(cairn, v2.path) == 0x0000
    rows = cairn.instance_rows(sop)
    assert len(rows) == 2, f"expected both versions indexed, got {rows}"
    current = [r for r in rows if r["current"] == 1]
    assert len(current) == 1, rows
    files = cairn.object_files()
    assert len(files) == 2, files
    by_ds = {dataset_bytes(f): f for f in files}
    assert set(by_ds) == {dataset_bytes(v1.path), dataset_bytes(v2.path)}, "a version was lost"
    assert by_ds[dataset_bytes(v2.path)].name == current[0]["sha256"] + ".dcm", \
        "the newest version must be the current one"
    # an identical resend of the newest: success, no third file, no third row
    assert _store(cairn, v2.path) == 0x0000
    assert len(cairn.object_files()) == 2
    assert len(cairn.instance_rows(sop)) == 2
    assert cairn.current_row(sop)["sha256"] == current[0]["sha256"]
    r = cairn.fsck()
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigterm_while_sending(cairn_factory, tmp_path):
    c = cairn_factory("term")
    insts = make_instances(tmp_path / "term", 400, seed="sigterm")
    by_path = {str(i.path): i for i in insts}
    procs = [start_storescu(c, [i.path for i in insts[k::2]]) for k in range(2)]
    time.sleep(1.0)
    t0 = time.monotonic()
    rc = c.stop(timeout=30)
    took = time.monotonic() - t0
    assert rc == 0, f"SIGTERM while receiving: exit {rc}\n{c.log_tail()}"
    assert took < 15, f"shutdown took {took:.1f}s"
    got = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        got += [by_path[f].sop_uid for f in acked(out)]
    assert got, "nothing acknowledged in the first second"
    c.start()
    assert c.spool_files() == []
    for sop in got:
        check_instance(c, sop)
    rc = c.stop()
    assert rc == 0
    r = c.fsck()
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (need root): {r.stderr}"
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full(small_tmpfs, cairn_factory, tmp_path):
    c = cairn_factory("full", data_dir=small_tmpfs / "data")
    statuses = []
    stored = []
    try:
        for k in range(40):
            path = tmp_path / f"big{k}.dcm"
            sop, _ = make_big(path, 512 * 1024, seed=k)
            st = _store(c, path)
            statuses.append(st)
            path.unlink()
            if st != 0x0000:
                failed_sop = sop
                break
            stored.append(sop)
        else:
            raise AssertionError("8 MiB tmpfs never filled up")
        assert statuses[-1] == 0xA700, f"disk full answered 0x{statuses[-1]:04X}: {statuses}"
        assert c.wait_spool_empty() == [], "temp file left in spool/ after 0xA700"
        assert c.instance_rows(failed_sop) == [], "refused object was indexed"
        c.assert_serving()
        for sop in stored:
            check_instance(c, sop)
    finally:
        if c.running:
            rc = c.stop()
            assert rc == 0, f"exit {rc} after disk full\n{c.log_tail()}"
    r = c.fsck()
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigint_exits_zero(cairn):
    assert cairn.echo().returncode == 0
    cairn.proc.send_signal(2)
    cairn.stopped_by_test = True
    rc = cairn.proc.wait(30)
    assert rc == 0, f"SIGINT exit {rc}\n{cairn.log_tail()}"
