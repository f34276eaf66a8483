"""Memory is bounded by the PDU size, never the object size: a box with little RAM must take
objects of any size."""

from __future__ import annotations

import threading
import time

from datagen import make_big
from harness import dataset_sha256, meta_uid, proc_status_kib, read_meta, sha256_file

GIB = 1024 ** 3
RSS_LIMIT_KIB = 100 * 1024


def test_one_gib_object_streams(cairn, tmp_path):
    src = tmp_path / "big.dcm"
    try:
        sop, ds_sha = make_big(src, GIB)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], proc_status_kib(cairn.pid, "VmRSS"))
                except (OSError, AssertionError):
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        r = cairn.storescu([src], timeout=600)
        took = time.monotonic() - t0
        stop.set()
        sampler.join()
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "Received Store Response (Success)" in out, out[-3000:]
        hwm = cairn.vm_hwm_kib()
        assert hwm < RSS_LIMIT_KIB, f"cairnd VmHWM {hwm} KiB while storing 1 GiB " \
                                    f"(sampled VmRSS peak {peak[0]} KiB)"
        row = cairn.current_row(sop)
        assert row is not None, "1 GiB object not indexed"
        stored = cairn.object_path(row["sha256"])
        assert sha256_file(stored) == row["sha256"], "stored file hash differs from the row"
        assert dataset_sha256(stored) == ds_sha, "stored data set differs from what was sent"
        assert meta_uid(read_meta(stored)[0], 3) == sop
        assert cairn.wait_spool_empty() == []
        print(f"1 GiB stored in {took:.1f}s, VmHWM {hwm} KiB")
    finally:
        src.unlink(missing_ok=True)
        if cairn.running:
            rc = cairn.stop()
            assert rc == 0
        for f in cairn.object_files():
            f.unlink()
