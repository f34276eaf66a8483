"""`cairnctl lifecycle status` and the demo clock on a `cairnd demo` box.

Studies are sent with DCMTK's storescu for a patient seen long ago (past the French rule set's
20 years), one seen a month ago, and one without a birth date. The status lists the first as
due for destruction, the third for review, the clock as trusted. `cairnctl demo clock
--advance 25y` moves the demo box's lifecycle clock: the patient seen a month ago becomes due
too, every study is old enough for the archive tier, and the daemon audits the move
(`demo-clock`). A negative or garbled advance is exit 2 and changes nothing; a data directory
that is not a demo box gets no demo clock; `cairnd run` refuses a data directory with one.
Rejected and destroyed images leave the demo's tape with only removed copies: it is recyclable,
and `archive recycle` erases it in its drive, audited.
(A clock behind the audit trail, clock_ok false, is tested in cairn-lifecycle's unit tests:
the system clock cannot be set back here.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pydicom

from archivelib import send
from datagen import uid
from harness import CAIRNCTL, CAIRND, TEST_FILES, free_port
from test_demo import Demo

TODAY = dt.datetime.now(dt.timezone.utc).date()
RECENT = (TODAY - dt.timedelta(days=30)).strftime("%Y%m%d")

# key: (Patient ID, birth date, study date)
PATIENTS = {
    "old": ("LS-OLD", "19500101", "20000101"),
    "recent": ("LS-RECENT", "19800101", RECENT),
    "nobirth": ("LS-NOBIRTH", "", RECENT),
}


class Port:
    def __init__(self, port):
        self.port = port
        self.ae = "CAIRN"


def make_file(path: Path, key: str) -> Path:
    pid, birth, date = PATIENTS[key]
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.SOPInstanceUID = uid("ls-sop", key)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = uid("ls-study", key)
    ds.SeriesInstanceUID = uid("ls-series", key)
    ds.PatientName = f"STATUS^{key.upper()}"
    ds.PatientID = pid
    ds.PatientBirthDate = birth
    ds.StudyDate = date
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ctl(d: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["USER"] = "demo"
    return subprocess.run([str(CAIRNCTL), "--data", str(d), *args], capture_output=True,
                          text=True, timeout=60, env=env)


def ok(d: Path, *args: str) -> str:
    r = ctl(d, *args)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def status(d: Path) -> dict:
    return json.loads(ok(d, "lifecycle", "status", "--json"))


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def due_ids(s: dict) -> list[str]:
    return [p["patient_id"] for p in s["due_for_destruction"]]


def audit_rows(d: Path, action: str) -> list[tuple]:
    c = sqlite3.connect(f"file:{d / 'cairn.db'}?mode=ro", uri=True)
    try:
        return c.execute("SELECT actor, detail FROM audit WHERE action = ? ORDER BY seq",
                         (action,)).fetchall()
    finally:
        c.close()


def test_status_and_the_demo_clock(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    files = [make_file(tmp_path / "src" / f"{k}.dcm", k) for k in PATIENTS]
    demo = Demo(d, port, http_port)
    try:
        send(Port(port), files)
        s = wait_for(lambda: (lambda s: s if s["review"] and s["due_for_destruction"]
                              else None)(status(d)), 30, "the lifecycle pass")
        assert set(s) == {"tiers", "moving_to_archive", "due_for_destruction", "review",
                          "holds", "recyclable_volumes", "clock_ok", "clock"}, s
        assert s["clock_ok"] is True, s
        assert s["clock"]["today"] == TODAY.isoformat()
        assert "offset_days" not in s["clock"]
        assert s["tiers"]["storage"] + s["tiers"]["archive"] == 3
        assert s["due_for_destruction"] == [
            {"patient_id": "LS-OLD", "issuer": "", "expires_on": "2020-01-01"}]
        assert [r["patient_id"] for r in s["review"]] == ["LS-NOBIRTH"]
        assert s["review"][0]["reason"]
        assert s["holds"] == 0
        assert s["recyclable_volumes"] == []
        # the study of 2000 is long past archive_after (3y): it moves once copied, unless
        # it already did; the ones of a month ago are not within 90 days
        old_uid = uid("ls-study", "old")
        moving = [m["study_uid"] for m in s["moving_to_archive"]]
        assert moving in ([old_uid], []), s
        assert moving or s["tiers"]["archive"] == 1

        words = ok(d, "lifecycle", "status")
        assert f"Lifecycle on {TODAY.isoformat()}" in words, words
        assert "clock: trusted" in words
        assert "patient LS-OLD expired on 2020-01-01" in words
        assert "to review (expiry unknown): 1 patient" in words
        vols = json.loads(ok(d, "archive", "volumes", "--json"))
        assert vols and all(v["recyclable"] is False for v in vols), vols

        # a negative or garbled advance: exit 2, nothing changes
        for bad in ("-5y", "25x", "0d", "y"):
            r = ctl(d, "demo", "clock", "--advance", bad)
            assert r.returncode == 2, (bad, r.returncode, r.stdout, r.stderr)
            assert "not an advance" in r.stderr, r.stderr
            assert not (d / "demo-clock.json").exists()
        assert "no demo offset" in ok(d, "demo", "clock", "--show")

        # 25 years later
        out = ok(d, "demo", "clock", "--advance", "25y")
        assert "the demo clock now reads" in out, out
        s = wait_for(lambda: (lambda s: s if len(s["due_for_destruction"]) == 2 else None)(
            status(d)), 15, "the patient seen a month ago to be due")
        assert due_ids(s) == ["LS-OLD", "LS-RECENT"], s
        assert s["clock_ok"] is True
        future = dt.date.fromisoformat(s["clock"]["today"])
        assert future.year == TODAY.year + 25, future
        assert s["clock"]["offset_days"] == (future - TODAY).days
        # every storage study is now old enough: each waits for its copy or has moved
        moving = {m["study_uid"] for m in s["moving_to_archive"]}
        assert len(moving) + s["tiers"]["archive"] == 3, s
        assert "demo clock" in ok(d, "lifecycle", "status")
        shown = ok(d, "demo", "clock", "--show")
        assert f"{s['clock']['offset_days']} days ahead" in shown and "user:demo" in shown
        rows = wait_for(lambda: audit_rows(d, "demo-clock"), 15, "the demo-clock audit row")
        assert rows[0][0] == "user:demo"
        assert json.loads(rows[0][1])["offset_days"] == s["clock"]["offset_days"]
    finally:
        assert demo.stop() == 0

    # the appliance never runs on a moved clock
    r = subprocess.run([str(CAIRND), "run", "--config", str(d / "cairn.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "demo clock offset" in r.stderr and "demo-clock.json" in r.stderr, r.stderr
    r = ctl(d, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_only_a_demo_box_has_a_demo_clock(tmp_path):
    d = tmp_path / "appliance"
    d.mkdir()
    r = ctl(d, "demo", "clock", "--advance", "1y")
    assert r.returncode == 2
    assert "not a demo box" in r.stderr, r.stderr
    assert not (d / "demo-clock.json").exists()


def test_a_tape_whose_every_image_was_removed_is_recycled(tmp_path):
    """Rejected and destroyed images leave the demo's tape with nothing kept: it is recyclable,
    `archive recycle` erases it in its drive, and it takes new bundles."""
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    files = {k: make_file(tmp_path / "src" / f"{k}.dcm", k) for k in PATIENTS}
    demo = Demo(d, port, http_port)
    try:
        send(Port(port), list(files.values()))
        wait_for(lambda: status(d)["review"], 30, "the lifecycle pass")
        # the images without a birth date were test images: rejected before any copy
        ok(d, "reject", "--study", uid("ls-study", "nobirth"), "--reason", "test images")
        ok(d, "archive", "flush", "--timeout", "300")

        def tape_volume():
            vols = json.loads(ok(d, "archive", "volumes", "--json"))
            return next(v for v in vols if v["kind"] == "tape" and v["location"] == "in_drive")

        tape = tape_volume()
        assert tape["verified_copies"] == 2 and tape["recyclable"] is False, tape
        r = ctl(d, "archive", "recycle", "--volume", tape["name"])
        assert r.returncode == 1 and "neither rejected nor expired" in r.stdout, r

        # 25 years later both patients are due; an admin approves their destruction
        ok(d, "demo", "clock", "--advance", "25y")
        wait_for(lambda: len(status(d)["due_for_destruction"]) == 2, 15, "both patients due")
        ok(d, "destruction", "approve", "--all", "--reason", "end of retention")
        s = wait_for(lambda: (lambda s: s if tape["name"] in s["recyclable_volumes"] else None)(
            status(d)), 15, "the tape to be recyclable")
        assert s["due_for_destruction"] == [], s
        assert tape_volume()["recyclable"] is True
        assert "recyclable (every image copy on it removed): " in ok(d, "archive", "volumes")
        assert f"volumes to recycle (every image on them removed): " in ok(
            d, "lifecycle", "status")

        out = ok(d, "archive", "recycle", "--volume", tape["name"])
        assert f"volume {tape['name']} recycled" in out, out
        after = tape_volume()
        assert (after["name"], after["volume_id"]) == (tape["name"], tape["volume_id"])
        assert after["verified_copies"] == 0 and after["bytes_written"] == 0, after
        assert after["recyclable"] is False and after["state"] == "labelled", after
        rows = audit_rows(d, "volume-recycle")
        assert rows and rows[0][0] == "user:demo", rows
        assert json.loads(rows[0][1])["copies_forgotten"] == 2
        r = ctl(d, "archive", "recycle", "--volume", tape["name"])
        assert r.returncode == 1 and "holds no image copies" in r.stdout, r
        assert tape["name"] not in status(d)["recyclable_volumes"]
    finally:
        assert demo.stop() == 0
    r = ctl(d, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
