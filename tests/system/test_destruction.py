"""Destruction and rejection end to end: studies sent with DCMTK's storescu to a cairnd whose
`[lifecycle] retention` is a clinic rule file keeping each study one year after its date, so a
patient seen in 2010 is due for destruction now, without waiting years.

`destruction list --json` shows the patient due; a legal hold makes `destruction approve` exit 2
with nothing changed; released, the approval destroys: its files are gone, C-FIND (DCMTK's
findscu) no longer finds it, `destruction certificate` names it, `fsck` and `audit verify` stay
clean. A study rejected in storage leaves C-FIND and keeps a tombstone; a rejection under a hold
and every bad input are refused (exit 2) with nothing changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

import qrlib as q
from datagen import uid
from harness import CAIRNCTL, TEST_FILES, Cairn, finish

LOGIN = "archivist"
TODAY = dt.date.today().strftime("%Y%m%d")

# patient ID -> study dates (one study per date, one instance per study)
PATIENTS = {
    "RM-DUE": ["20100105", "20110203"],
    "RM-KEEP": [TODAY],
    "RM-REJ": [TODAY, TODAY],
}


class RemovalCairn(Cairn):
    """A box whose retention rules are a clinic's rule file beside its config."""

    def write_config(self) -> None:
        super().write_config()
        rules = self.base / "clinic.toml"
        rules.write_text('name = "clinic-test"\n'
                         'description = "Test rules: each study kept one year after its date."\n'
                         '[keep]\nafter_study = "1y"\n')
        with open(self.config_path, "a") as f:
            f.write(f'\n[lifecycle]\nretention = "{rules}"\n')


def make_file(path: Path, pid: str, study_uid: str, date: str) -> Path:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.SOPInstanceUID = uid("rm-sop", study_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid("rm-series", study_uid)
    ds.PatientName = f"REMOVAL^{pid}"
    ds.PatientID = pid
    ds.PatientBirthDate = "19600101"
    ds.StudyDate = date
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


STUDIES: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = tmp_path_factory.mktemp("destruction")
    files = []
    for pid, dates in PATIENTS.items():
        STUDIES[pid] = [uid("rm-study", pid, n) for n in range(len(dates))]
        for n, (s, d) in enumerate(zip(STUDIES[pid], dates)):
            files.append(make_file(base / "src" / f"{pid}-{n}.dcm", pid, s, d))
    c = RemovalCairn(base / "daemon")
    try:
        c.start()
        r = c.storescu(files)
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.instance_count() == len(files)
        settle(c)
        yield c
    finally:
        finish(c)


def ctl(box, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["USER"] = LOGIN
    return subprocess.run([str(CAIRNCTL), "--data", str(box.data_dir), "--config",
                           str(box.config_path), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def ok(box, *args: str) -> str:
    r = ctl(box, *args)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def settle(box, timeout: float = 15) -> None:
    """Wait until the lifecycle thread has recomputed every patient."""
    deadline = time.monotonic() + timeout
    while box.query("SELECT count(*) FROM patient_retention WHERE dirty = 1")[0][0]:
        assert time.monotonic() < deadline, "the lifecycle thread left patients dirty"
        time.sleep(0.1)


def state(box) -> tuple:
    """Everything a refused command must leave as it was (and the object files)."""
    files = sorted(str(p) for p in (box.data_dir / "objects").rglob("*.dcm"))
    return (box.query("SELECT count(*) FROM audit")[0][0],
            box.query("SELECT sop_instance_uid, sha256 FROM instances ORDER BY id"),
            box.query("SELECT * FROM removed_studies ORDER BY id"),
            box.query("SELECT * FROM destruction_records ORDER BY id"),
            box.query("SELECT id, released_at FROM holds ORDER BY id"),
            files)


def refused(box, *args: str, says: str) -> None:
    settle(box)
    before = state(box)
    r = ctl(box, *args)
    assert r.returncode == 2, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert says.lower() in r.stderr.lower(), f"{args}: stderr {r.stderr!r} lacks {says!r}"
    time.sleep(0.3)
    assert state(box) == before, f"{args} was refused but changed something"


def due(box) -> list[dict]:
    return json.loads(ok(box, "destruction", "list", "--json"))


def find_studies(box, tmp: Path, **keys) -> list:
    args = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"]
    args += [f"{k}={v}" for k, v in keys.items()]
    answers, status, out = q.dcmtk_find(box.port, args, tmp)
    assert status == 0, out[-2000:]
    return answers


def object_files(box, pid: str) -> list[Path]:
    rows = box.query(
        "SELECT i.sha256 FROM instances i JOIN series se ON se.id = i.series_ref "
        "JOIN studies st ON st.id = se.study_ref JOIN patients p ON p.id = st.patient_ref "
        "WHERE p.patient_id = ?", (pid,))
    return [box.data_dir / "objects" / s[:2] / s[2:4] / f"{s}.dcm" for (s,) in rows]


def hold_id(out: str) -> str:
    # "hold N placed on ..."
    return out.split()[1]


def test_the_patient_past_expiry_is_listed_due(box):
    rows = due(box)
    assert [r["patient_id"] for r in rows] == ["RM-DUE"], rows
    r = rows[0]
    assert r["expires_on"] == "2012-02-03", r
    assert (r["studies"], r["instances"]) == (2, 2)
    assert r["bytes"] > 0 and r["issuer"] == "" and r["reason"], r
    out = ok(box, "destruction", "list")
    assert "RM-DUE" in out and "2012-02-03" in out, out


def test_bad_input_is_refused_with_nothing_changed(box):
    refused(box, "destruction", "approve", "--patient", "NOBODY", "--reason", "due",
            says="no patient with ID")
    refused(box, "destruction", "approve", "--patient", "RM-KEEP", "--reason", "due",
            says="not due for destruction")
    refused(box, "destruction", "approve", "--patient", "RM-DUE", "--reason", " ",
            says="--reason is empty")
    refused(box, "destruction", "certificate", "--id", "99", says="no destruction record 99")
    refused(box, "reject", "--study", "1.2.3.999", "--reason", "test", says="no study with UID")
    refused(box, "reject", "--series", "1.2.3.999", "--reason", "test", says="no series with UID")
    refused(box, "reject", "--study", STUDIES["RM-REJ"][0], "--reason", "",
            says="--reason is empty")


def test_a_hold_blocks_destruction_and_approval_destroys(box, tmp_path):
    files = object_files(box, "RM-DUE")
    assert len(files) == 2 and all(f.is_file() for f in files)
    assert len(find_studies(box, tmp_path / "f0", PatientID="RM-DUE")) == 2

    hid = hold_id(ok(box, "hold", "add", "--patient", "RM-DUE", "--reason", "case 7"))
    settle(box)
    assert due(box) == []
    refused(box, "destruction", "approve", "--patient", "RM-DUE", "--reason", "past retention",
            says=f"patient RM-DUE is under a legal hold (hold {hid}): nothing was destroyed")
    ok(box, "hold", "release", "--id", hid, "--reason", "case closed")
    settle(box)
    assert [r["patient_id"] for r in due(box)] == ["RM-DUE"]

    out = ok(box, "destruction", "approve", "--patient", "RM-DUE", "--reason", "past retention")
    assert "destroyed 2 studies (2 instances" in out, out
    record = out.strip().rsplit(" ", 1)[1]
    assert not any(f.exists() for f in files), "the object files are gone"
    assert box.query("SELECT count(*) FROM studies st JOIN patients p ON p.id = st.patient_ref "
                     "WHERE p.patient_id = 'RM-DUE'")[0][0] == 0
    assert find_studies(box, tmp_path / "f1", PatientID="RM-DUE") == []
    assert box.query("SELECT count(*) FROM pending_unlinks")[0][0] == 0
    assert box.query("SELECT kind, count(*) FROM removed_studies WHERE destruction_ref = ? "
                     "GROUP BY kind", (int(record),)) == [("destroyed", 2)]
    assert due(box) == []

    cert = ok(box, "destruction", "certificate", "--id", record)
    for part in ["CERTIFICATE OF DESTRUCTION", "RM-DUE", "2012-02-03", "clinic-test",
                 f"user:{LOGIN}", "past retention", *STUDIES["RM-DUE"], "2010-01-05"]:
        assert part in cert, f"{part!r} not in\n{cert}"
    csv = ok(box, "destruction", "export", "--csv").splitlines()
    assert csv[0].startswith("id,patient_id,issuer,expires_on")
    assert any(line.startswith(f"{record},RM-DUE,") for line in csv[1:]), csv
    audit = box.query("SELECT actor, object FROM audit WHERE action = 'destroy'")
    assert audit == [(f"user:{LOGIN}", "RM-DUE")]

    assert "store is consistent" in ok(box, "fsck")
    assert "audit trail intact" in ok(box, "audit", "verify")


def test_a_rejected_study_leaves_query_and_a_held_one_is_refused(box, tmp_path):
    gone, held = STUDIES["RM-REJ"]
    assert len(find_studies(box, tmp_path / "f0", StudyInstanceUID=gone)) == 1
    files = object_files(box, "RM-REJ")
    out = ok(box, "reject", "--study", gone, "--reason", "wrong patient")
    assert f"study {gone} rejected: 1 instance(s) removed" in out, out
    assert find_studies(box, tmp_path / "f1", StudyInstanceUID=gone) == []
    # C-GET retrieves nothing of it, and the kept study as before
    for study, want in ((gone, 0), (held, 1)):
        got = tmp_path / f"get-{want}"
        rc, status, out = q.getscu(box.port, ["QueryRetrieveLevel=STUDY",
                                              f"StudyInstanceUID={study}"], got)
        assert rc == 0 and status == 0, out[-2000:]
        assert len(list(got.glob("*"))) == want, out[-2000:]
    assert find_studies(box, tmp_path / "f2", PatientID="RM-REJ")[0].StudyInstanceUID == held
    assert sum(f.exists() for f in files) == 1
    stone = box.query("SELECT kind, series_uid, instances, reason, removed_by FROM "
                      "removed_studies WHERE study_uid = ?", (gone,))
    assert stone == [("rejected", None, 1, "wrong patient", f"user:{LOGIN}")]
    assert box.query("SELECT actor, object FROM audit WHERE action = 'study-reject'") == \
        [(f"user:{LOGIN}", gone)]

    hid = hold_id(ok(box, "hold", "add", "--study", held, "--reason", "case 8"))
    refused(box, "reject", "--study", held, "--reason", "test images",
            says=f"under a legal hold (hold {hid}): nothing was rejected")
    assert len(find_studies(box, tmp_path / "f3", StudyInstanceUID=held)) == 1

    assert "store is consistent" in ok(box, "fsck")
    assert "audit trail intact" in ok(box, "audit", "verify")


class AutoDestroyCairn(RemovalCairn):
    """The same rules with `auto_destroy = true`."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as f:
            f.write("auto_destroy = true\n")


def test_auto_destroy_destroys_what_is_due_as_system(tmp_path):
    study = uid("rm-auto-study")
    src = make_file(tmp_path / "src" / "auto.dcm", "RM-AUTO", study, "20100105")
    keep = make_file(tmp_path / "src" / "keep.dcm", "RM-AUTO-KEEP", uid("rm-auto-keep"), TODAY)
    c = AutoDestroyCairn(tmp_path / "daemon")
    try:
        c.start()
        r = c.storescu([src, keep])
        assert r.returncode == 0, r.stdout + r.stderr
        settle(c)
        # the daily pass runs at the first tick of each date (here most likely before the
        # images came) and at the first tick after a start
        assert c.stop() == 0
        c.start()
        deadline = time.monotonic() + 30
        while not c.query("SELECT count(*) FROM destruction_records")[0][0]:
            assert time.monotonic() < deadline, f"nothing was destroyed\n{c.log_tail()}"
            time.sleep(0.2)
        rows = c.query("SELECT patient_id, approved_by, studies FROM destruction_records")
        assert rows == [("RM-AUTO", "system", 1)], rows
        assert c.query("SELECT count(*) FROM studies")[0][0] == 1
        assert c.query("SELECT actor FROM audit WHERE action = 'destroy'") == [("system",)]
    finally:
        finish(c)
