"""Storage tiers end to end through DCMTK's storescu: a study becomes `archive` only once every
instance has a verified cold copy (before: still `storage`); in the archive tier a resend of
one of its instances with different bytes, or a new instance, is refused with 0x0124 and an
Error Comment saying why, and nothing changes (same SHA-256 in the index, no new file, fsck and
the audit chain clean); an identical resend still succeeds. Where this process may set it, the
archived files carry the Linux immutable attribute.

The box runs with `[lifecycle] archive_after = "0"` (and the study is dated 2020, so the
default of three years would move it too).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from archivelib import ArchiveCairn, send
from datagen import make_one
from harness import DCMTK_ENV, STORESCU, finish

STUDY = "1.2.826.0.1.3680043.10.1447.7.1"
SERIES = STUDY + ".1"
SOPS = [f"{SERIES}.{n}" for n in (1, 2, 3)]


class TierCairn(ArchiveCairn):
    """An archive box whose config also sets the archive tier's period."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as f:
            f.write('\n[lifecycle]\narchive_after = "0"\n')


def unfix(root: Path) -> None:
    """Clear the immutable attribute below `root`, so the test directory can be removed."""
    subprocess.run(["chattr", "-R", "-f", "-i", str(root)], capture_output=True)


def tier(c: ArchiveCairn) -> tuple[str, str | None]:
    return tuple(c.query("SELECT tier, archived_at FROM studies WHERE study_uid = ?",
                         (STUDY,))[0])


def storescu(c: ArchiveCairn, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [STORESCU, "-d", "-aet", "STORESCU", "-aec", c.ae, "-to", "20", "-ta", "20",
         "-td", "60", "127.0.0.1", str(c.port), str(path)],
        capture_output=True, text=True, timeout=120, env=DCMTK_ENV)


def may_set_immutable() -> bool:
    """Whether this process holds CAP_LINUX_IMMUTABLE (the daemon it starts inherits it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 9))
    return False


def immutable(path: Path) -> bool | None:
    """The file's immutable attribute per lsattr; None when the filesystem has none."""
    r = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return "i" in r.stdout.split()[0]


@pytest.fixture()
def box(tmp_path):
    c = TierCairn(tmp_path / "box", targets=("tape",))
    c.tape.insert_blank("TAPE01", capacity=1 << 30)
    c.sent = [make_one(tmp_path / "send" / f"{n}.dcm", sop_uid=sop, study_uid=STUDY,
                       series_uid=SERIES, patient_id="TIER1", study_date="20200101")
              for n, sop in enumerate(SOPS[:2])]
    c.start()
    try:
        yield c
    finally:
        try:
            finish(c)
        finally:
            unfix(c.data_dir)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_archive_only_with_a_verified_copy_then_fixed(box, tmp_path):
    c = box
    send(c, [i.path for i in c.sent])
    stored = dict(c.query("SELECT sop_instance_uid, sha256 FROM instances WHERE current = 1"))
    assert set(stored) == set(SOPS[:2])

    # old enough ("0"), but no verified copy yet: it stays in storage through several passes
    time.sleep(3)
    assert tier(c) == ("storage", None), c.log_tail(20)

    # the copy is written and read back: the study moves to the archive tier
    c.flush()
    wait_for(lambda: tier(c)[0] == "archive", 30, "the study in the archive tier")
    assert tier(c)[1], "archived_at is set"
    moved = [r for r in c.audit_rows() if r["action"] == "tier-archive"]
    assert [(r["actor"], r["object"]) for r in moved] == [("system", STUDY)], moved

    # its files carry the immutable attribute where the daemon may set it
    files = [c.object_path(s) for s in stored.values()]
    if may_set_immutable() and immutable(files[0]) is not None:
        assert all(immutable(p) for p in files), [immutable(p) for p in files]
        r = subprocess.run(["rm", "-f", str(files[0])], capture_output=True, text=True)
        assert r.returncode != 0 and files[0].exists(), "rm removed an archived file"

    objects_before = sorted(c.object_files())
    rows_before = c.query("SELECT sop_instance_uid, sha256, current FROM instances ORDER BY id")

    # a different-bytes resend of an instance is refused, with the reason
    changed = make_one(tmp_path / "changed.dcm", sop_uid=SOPS[0], study_uid=STUDY,
                       series_uid=SERIES, patient_id="TIER1", study_date="20200101",
                       tweak="edited after the fact")
    r = storescu(c, changed.path)
    out = r.stdout + r.stderr
    # DCMTK names no 0x0124 for C-STORE ("Unknown Status: 0x124"); the debug dump of the
    # response carries the status and the Error Comment
    assert "Status: 0x124" in out or "0x0124" in out, out
    assert "archive tier (fixed): changed instance refused" in out, out

    # a new instance into the archived study is refused too
    new = make_one(tmp_path / "new.dcm", sop_uid=SOPS[2], study_uid=STUDY,
                   series_uid=SERIES, patient_id="TIER1", study_date="20200101")
    r = storescu(c, new.path)
    out = r.stdout + r.stderr
    assert "archive tier (fixed): new instance refused" in out, out

    # nothing changed: the same rows (same SHA-256), no new file, fsck and audit clean
    assert c.query("SELECT sop_instance_uid, sha256, current FROM instances ORDER BY id") \
        == rows_before
    assert sorted(c.object_files()) == objects_before
    assert c.wait_spool_empty() == []
    refused = [r for r in c.audit_rows() if r["action"] == "refuse"]
    assert sorted(r["object"] for r in refused) == sorted([SOPS[0], SOPS[2]]), refused
    assert all('"status":"0x0124"' in r["detail"].replace(" ", "") for r in refused), refused
    fsck = c.ctl("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    audit = c.ctl("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr

    # an identical resend still succeeds, and changes nothing either
    send(c, [c.sent[0].path])
    assert c.query("SELECT sop_instance_uid, sha256, current FROM instances ORDER BY id") \
        == rows_before
    assert tier(c)[0] == "archive"
