"""Retention, dates of death and legal holds through cairnctl against a running cairnd.

Studies are sent with DCMTK's storescu for patients whose expiry under the French rule set
(docs/retention.md) is worked out here from the law itself: 20 years after the last visit, at
least until the 28th birthday, 10 years after a death that came less than 10 years after the
last visit, no expiry while a legal hold is in place or a date the rules need is unknown. The
expiry is the last day kept. Every refused command must exit 2 with a message naming the
problem and change nothing (no audit row, no stored fact).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

from datagen import uid
from harness import CAIRNCTL, CAIRND, TEST_FILES, managed, render_config

LOGIN = "clerk"


@dataclass
class Patient:
    key: str
    pid: str
    birth: str  # YYYYMMDD or ""
    study_dates: list[str]
    issuer: str = ""
    study_uids: list[str] = field(default_factory=list)


PATIENTS = {
    "adult": Patient("adult", "LC-ADULT", "19700615", ["20080301", "20100101"]),
    "minor": Patient("minor", "LC-MINOR", "20150510", ["20200101"]),
    "nobirth": Patient("nobirth", "LC-NOBIRTH", "", ["20210304"]),
    "dies": Patient("dies", "LC-DIES", "19500101", ["20200101"]),
    "held": Patient("held", "LC-HELD", "19800101", ["20110101", "20120202"]),
    "twin-a": Patient("twin-a", "LC-TWIN", "19900101", ["20150101"], issuer="HOSP-A"),
    "twin-b": Patient("twin-b", "LC-TWIN", "19900101", ["20160101"], issuer="HOSP-B"),
}


# ---- the law, worked out here --------------------------------------------------------------

def day(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def plus_years(d: dt.date, years: int) -> dt.date:
    """d + years; a 29 February that does not exist becomes 1 March (never shorter)."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return dt.date(d.year + years, 3, 1)


def french(p: Patient, death: str = "", held: bool = False) -> dict:
    """expires_on, reason, review under the `fr` rule set."""
    last = max(day(s) for s in p.study_dates)
    if held:
        return {"expires_on": None, "reason": "kept while a legal hold is in place",
                "review": False}
    if death and day(death) < plus_years(last, 10):
        until = plus_years(day(death), 10)
        return {"expires_on": until.isoformat(),
                "reason": f"10 years after the death on {day(death).isoformat()}",
                "review": False}
    if not p.birth:
        return {"expires_on": None,
                "reason": "no automatic expiry: the birth date is unknown (review)",
                "review": True}
    visit = plus_years(last, 20)
    birthday = plus_years(day(p.birth), 28)
    if birthday > visit:
        return {"expires_on": birthday.isoformat(),
                "reason": f"until the 28th birthday on {birthday.isoformat()}", "review": False}
    return {"expires_on": visit.isoformat(),
            "reason": f"20 years after the last visit on {last.isoformat()}", "review": False}


def test_the_expected_dates_follow_the_law():
    """The worked examples of docs/retention.md, so the helper above is the law it claims."""
    adult = Patient("a", "A", "19700615", ["20100101"])
    assert french(adult)["expires_on"] == "2030-01-01"
    child = Patient("c", "C", "20030504", ["20100101"])
    assert french(child)["reason"] == "until the 28th birthday on 2031-05-04"
    leap = Patient("l", "L", "20720229", ["20800101"])
    assert french(leap)["expires_on"] == "2100-03-01"
    dead = Patient("d", "D", "19500101", ["20100101"])
    assert french(dead, death="20150302")["reason"] == "10 years after the death on 2015-03-02"
    assert french(dead, death="20210101")["expires_on"] == "2030-01-01"  # 11 years later


# ---- the box ---------------------------------------------------------------------------------

def make_file(path: Path, p: Patient, study_uid: str, n: int) -> Path:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.SOPInstanceUID = uid("lc-sop", p.key, study_uid, n)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid("lc-series", study_uid)
    ds.PatientName = f"LIFE^{p.key.upper()}"
    ds.PatientID = p.pid
    ds.PatientBirthDate = p.birth
    if p.issuer:
        ds.IssuerOfPatientID = p.issuer
    ds.StudyDate = p.study_dates[n]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = tmp_path_factory.mktemp("lifecycle")
    files = []
    for p in PATIENTS.values():
        p.study_uids = [uid("lc-study", p.key, n) for n in range(len(p.study_dates))]
        for n, s in enumerate(p.study_uids):
            files.append(make_file(base / "src" / f"{p.key}{n}.dcm", p, s, n))
    with managed(base / "daemon") as c:
        r = c.storescu(files)
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.instance_count() == len(files)
        yield c


def ctl(box, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["USER"] = LOGIN
    return subprocess.run([str(CAIRNCTL), "--data", str(box.data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def ok(box, *args: str) -> str:
    r = ctl(box, *args)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def show(box, p: Patient) -> dict:
    args = ["retention", "show", "--patient", p.pid, "--json"]
    if p.issuer:
        args += ["--issuer", p.issuer]
    return json.loads(ok(box, *args))


def audit_count(box) -> int:
    return box.query("SELECT count(*) FROM audit")[0][0]


def state(box) -> tuple:
    """Everything a refused command must leave as it was."""
    return (audit_count(box),
            box.query("SELECT patient_id, issuer, death_date FROM patients ORDER BY id"),
            box.query("SELECT * FROM holds ORDER BY id"))


def settle(box, timeout: float = 15) -> None:
    """Wait until the lifecycle thread has recomputed every patient (its pass may add an
    audit row after a change)."""
    deadline = time.monotonic() + timeout
    while box.query("SELECT count(*) FROM patient_retention WHERE dirty = 1")[0][0]:
        assert time.monotonic() < deadline, "the lifecycle thread left patients dirty"
        time.sleep(0.1)


def refused(box, *args: str, says: str) -> None:
    settle(box)
    before = state(box)
    r = ctl(box, *args)
    assert r.returncode == 2, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert says.lower() in r.stderr.lower(), f"{args}: stderr {r.stderr!r} lacks {says!r}"
    time.sleep(0.2)
    assert state(box) == before, f"{args} was refused but changed something"


def wait_stored(box, p: Patient, want: str | None, timeout: float = 15) -> list:
    """The stored expiry the lifecycle thread computes, once it is `want`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = box.query(
            "SELECT r.expires_on, r.dirty, r.rule_set FROM patient_retention r "
            "JOIN patients p ON p.id = r.patient_ref WHERE p.patient_id = ? AND p.issuer = ?",
            (p.pid, p.issuer))
        if rows and rows[0][0] == want and rows[0][1] == 0:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"stored expiry of {p.pid} is {rows}, wanted {want}")
        time.sleep(0.2)


# ---- retention show ----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["adult", "minor", "nobirth", "twin-a", "twin-b"])
def test_retention_show_gives_the_date_the_law_gives(box, key):
    p = PATIENTS[key]
    v = show(box, p)
    want = french(p)
    assert {k: v[k] for k in want} == want, v
    assert v["patient_id"] == p.pid
    assert (v["issuer"] or "") == p.issuer
    assert v["held"] is False
    assert v["rule_set"] == "fr"
    assert v["last_visit"] == max(day(s) for s in p.study_dates).isoformat()
    assert sorted((s["study_uid"], s["study_date"], s["tier"]) for s in v["studies"]) == \
        sorted((u, day(d).isoformat(), "storage") for u, d in zip(p.study_uids, p.study_dates))
    # the lifecycle thread stores the same expiry
    stored = wait_stored(box, p, want["expires_on"])
    assert stored[0][2] == "fr"


def test_retention_show_in_words(box):
    p = PATIENTS["adult"]
    out = ok(box, "retention", "show", "--patient", p.pid)
    assert out.splitlines()[0] == (
        "Patient LC-ADULT: kept until 2030-01-01 (20 years after the last visit on "
        "2010-01-01). No legal hold."), out
    assert "Rules: fr." in out
    for u in p.study_uids:
        assert u in out and "storage" in out
    assert "2008-03-01" in out
    out = ok(box, "retention", "show", "--patient", PATIENTS["nobirth"].pid)
    assert "the birth date is unknown" in out and "Needs review" in out, out


def test_retention_show_refuses_what_it_cannot_name(box):
    refused(box, "retention", "show", "--patient", "NOBODY-1", says="no patient with ID")
    refused(box, "retention", "show", "--patient", "LC-TWIN", says="HOSP-A")
    refused(box, "retention", "show", "--patient", "LC-TWIN", says="HOSP-B")
    refused(box, "retention", "show", "--patient", "LC-TWIN", "--issuer", "HOSP-C",
            says="no patient with ID")


def test_retention_show_uses_the_configured_rules(box, tmp_path):
    p = PATIENTS["adult"]
    config = tmp_path / "cairn.toml"
    config.write_text(render_config(box.config) + '\n[lifecycle]\nretention = "fixed-10y"\n')
    v = json.loads(ok(box, "--config", str(config), "retention", "show", "--patient", p.pid,
                      "--json"))
    assert v["rule_set"] == "fixed-10y"
    assert v["expires_on"] == "2020-01-01"
    assert v["reason"] == "10 years after the study on 2010-01-01"
    (tmp_path / "clinic.toml").write_text(
        'name = "clinic"\ndescription = "Ours"\n[keep]\nafter_last_visit = "5 years"\n')
    config.write_text(render_config(box.config) + '\n[lifecycle]\nretention = "clinic.toml"\n')
    r = ctl(box, "--config", str(config), "retention", "show", "--patient", p.pid)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "clinic.toml" in r.stderr and "line 4" in r.stderr, r.stderr


# ---- dates of death ----------------------------------------------------------------------------

def test_a_recorded_death_changes_the_expiry_and_is_audited(box):
    p = PATIENTS["dies"]
    assert show(box, p)["expires_on"] == french(p)["expires_on"] == "2040-01-01"
    before = audit_count(box)
    out = ok(box, "patient", "death", "--patient", p.pid, "--date", "20220101",
             "--reason", "death certificate received 2022-01-10")
    assert "2022-01-01" in out, out
    v = show(box, p)
    want = french(p, death="20220101")
    assert {k: v[k] for k in want} == want == {
        "expires_on": "2032-01-01", "reason": "10 years after the death on 2022-01-01",
        "review": False}
    assert box.query("SELECT death_date FROM patients WHERE patient_id = ?", (p.pid,)) == \
        [("20220101",)]
    wait_stored(box, p, "2032-01-01")
    rows = [a for a in box.audit_rows()[before:] if a["action"] == "patient-death"]
    assert len(rows) == 1, rows
    assert rows[0]["actor"] == f"user:{LOGIN}"
    assert rows[0]["object"] == p.pid
    detail = json.loads(rows[0]["detail"])
    assert detail["date"] == "2022-01-01" and detail["previous"] is None
    assert detail["reason"] == "death certificate received 2022-01-10"
    # the recompute pass is audited by counts, naming no patient
    passes = [a for a in box.audit_rows()[before:] if a["action"] == "lifecycle-pass"]
    assert passes, "the recompute after the death wrote no lifecycle-pass row"
    assert all(p.pid not in a["detail"] + a["object"] for a in passes)
    assert json.loads(passes[0]["detail"])["changed"] >= 1
    # cleared again: the rules without the death clause
    ok(box, "patient", "death", "--patient", p.pid, "--clear", "--reason", "wrong patient")
    assert show(box, p)["expires_on"] == "2040-01-01"
    assert box.query("SELECT death_date FROM patients WHERE patient_id = ?", (p.pid,)) == [("",)]
    wait_stored(box, p, "2040-01-01")
    assert [a["action"] for a in box.audit_rows()[before:]].count("patient-death") == 2


def test_a_death_makes_a_birth_date_unnecessary(box):
    p = PATIENTS["nobirth"]
    ok(box, "patient", "death", "--patient", p.pid, "--date", "20230101", "--reason", "letter")
    v = show(box, p)
    assert v["expires_on"] == "2033-01-01" and v["review"] is False, v
    ok(box, "patient", "death", "--patient", p.pid, "--clear", "--reason", "mistake")
    assert show(box, p)["review"] is True


@pytest.mark.parametrize("date, says", [
    ("20230231", "20230231"),  # no such day
    ("2023-01-01", "YYYYMMDD"),
    ("", "YYYYMMDD"),
    ((dt.date.today() + dt.timedelta(days=2)).strftime("%Y%m%d"), "future"),
    ("20191231", "before"),  # before the patient's study of 2020-01-01
    ("19400101", "before"),  # before the birth
])
def test_impossible_dates_of_death_are_refused(box, date, says):
    refused(box, "patient", "death", "--patient", PATIENTS["dies"].pid, "--date", date,
            "--reason", "test", says=says)


def test_death_requests_that_say_too_little_are_refused(box):
    pid = PATIENTS["dies"].pid
    refused(box, "patient", "death", "--patient", pid, "--date", "20220101", "--reason", "",
            says="reason")
    refused(box, "patient", "death", "--patient", pid, "--date", "20220101", "--reason", "  ",
            says="reason")
    refused(box, "patient", "death", "--patient", "NOBODY-1", "--date", "20220101",
            "--reason", "x", says="no patient with ID")
    refused(box, "patient", "death", "--patient", "LC-TWIN", "--date", "20220101",
            "--reason", "x", says="issuer")
    refused(box, "patient", "death", "--patient", pid, "--reason", "x", says="--date")
    refused(box, "patient", "death", "--patient", pid, "--date", "20220101", "--clear",
            "--reason", "x", says="--clear")
    # nothing recorded, nothing to clear
    refused(box, "patient", "death", "--patient", pid, "--clear", "--reason", "x",
            says="nothing to clear")


# ---- legal holds --------------------------------------------------------------------------------

def hold_id(out: str) -> int:
    numbers = [int(w.strip(".,:")) for w in out.split() if w.strip(".,:").isdigit()]
    assert numbers, out
    return numbers[0]


def test_a_hold_stops_the_expiry_until_released(box):
    p = PATIENTS["held"]
    free = french(p)
    assert show(box, p)["expires_on"] == free["expires_on"]
    before = audit_count(box)
    hid = hold_id(ok(box, "hold", "add", "--patient", p.pid, "--reason", "complaint 2026/17"))
    v = show(box, p)
    assert v["held"] is True and v["expires_on"] is None, v
    assert v["reason"] == "kept while a legal hold is in place"
    wait_stored(box, p, None)
    assert "Under legal hold" in ok(box, "retention", "show", "--patient", p.pid)

    rows = json.loads(ok(box, "hold", "list", "--json"))
    mine = [h for h in rows if h["id"] == hid]
    assert len(mine) == 1, rows
    h = mine[0]
    assert h["patient_id"] == p.pid and h.get("study_uid") is None
    assert h["reason"] == "complaint 2026/17"
    assert h["placed_by"] == f"user:{LOGIN}" and h["placed_at"]
    assert h.get("released_at") is None and h.get("released_by") is None
    assert f"Hold {hid} on patient {p.pid}" in ok(box, "hold", "list")

    ok(box, "hold", "release", "--id", str(hid), "--reason", "case closed")
    v = show(box, p)
    assert v["held"] is False and v["expires_on"] == free["expires_on"], v
    wait_stored(box, p, free["expires_on"])
    assert all(h["id"] != hid for h in json.loads(ok(box, "hold", "list", "--json")))
    released = [h for h in json.loads(ok(box, "hold", "list", "--all", "--json"))
                if h["id"] == hid]
    assert released and released[0]["released_by"] == f"user:{LOGIN}"
    assert released[0]["release_reason"] == "case closed" and released[0]["released_at"]

    actions = [(a["action"], a["object"]) for a in box.audit_rows()[before:]]
    assert ("hold-add", p.pid) in actions and ("hold-release", p.pid) in actions, actions
    for a in box.audit_rows()[before:]:
        if a["action"].startswith("hold-"):
            assert a["actor"] == f"user:{LOGIN}"
            assert json.loads(a["detail"])["hold"] == hid

    # releasing twice: refused, nothing changes
    refused(box, "hold", "release", "--id", str(hid), "--reason", "again",
            says=f"hold {hid} was already released on")


def test_a_hold_on_one_study_holds_the_patient(box):
    p = PATIENTS["minor"]
    hid = hold_id(ok(box, "hold", "add", "--study", p.study_uids[0], "--reason", "court order"))
    v = show(box, p)
    assert v["held"] is True and v["expires_on"] is None, v
    h = [h for h in json.loads(ok(box, "hold", "list", "--json")) if h["id"] == hid][0]
    assert h["study_uid"] == p.study_uids[0] and h.get("patient_id") is None, h
    ok(box, "hold", "release", "--id", str(hid), "--reason", "order lifted")
    assert show(box, p)["expires_on"] == french(p)["expires_on"]


def test_a_held_study_keeps_its_bytes_through_dcmtk(box, tmp_path):
    """Under a legal hold, different bytes for a stored instance are refused with 0x0124 and
    the reason, nothing changes; the same bytes are a duplicate; after the release the change
    is stored as a new version."""
    p = PATIENTS["twin-a"]
    study = p.study_uids[0]
    sop = uid("lc-sop", p.key, study, 0)
    rows = lambda: box.query(
        "SELECT sha256, current FROM instances WHERE sop_instance_uid = ? ORDER BY id", (sop,))
    before = rows()
    hid = hold_id(ok(box, "hold", "add", "--study", study, "--reason", "court order"))
    changed = make_file(tmp_path / "changed.dcm", p, study, 0)
    ds = pydicom.dcmread(changed)
    ds.StudyDescription = "edited after the fact"
    ds.save_as(changed, enforce_file_format=True)
    r = box.storescu([changed], extra=("-d",))
    out = r.stdout + r.stderr
    assert "Status: 0x124" in out or "0x0124" in out, out
    assert "study is under a legal hold: changed instance refused" in out, out
    assert rows() == before
    same = make_file(tmp_path / "same.dcm", p, study, 0)
    r = box.storescu([same])
    assert r.returncode == 0 and "0x0124" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert rows() == before
    ok(box, "hold", "release", "--id", str(hid), "--reason", "order lifted")
    r = box.storescu([changed])
    assert r.returncode == 0, r.stdout + r.stderr
    after = rows()
    assert len(after) == len(before) + 1 and after[-1][1] == 1, after


def test_hold_requests_that_say_too_little_are_refused(box):
    pid = PATIENTS["held"].pid
    refused(box, "hold", "add", "--patient", pid, "--reason", "", says="reason")
    refused(box, "hold", "add", "--reason", "x", says="--patient")
    refused(box, "hold", "add", "--patient", pid, "--study", PATIENTS["held"].study_uids[0],
            "--reason", "x", says="--study")
    refused(box, "hold", "add", "--patient", "NOBODY-1", "--reason", "x",
            says="no patient with ID")
    refused(box, "hold", "add", "--study", "1.2.3.999", "--reason", "x",
            says="no study with UID")
    refused(box, "hold", "release", "--id", "99999", "--reason", "x", says="no hold 99999")
    refused(box, "hold", "release", "--id", "1", "--reason", " ", says="reason")


# ---- the rest of the box stays sound -------------------------------------------------------------

def test_the_store_and_the_audit_trail_stay_clean(box):
    r = box.fsck()
    assert r.returncode == 0, r.stdout + r.stderr
    r = box.ctl("audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    box.assert_serving()


def test_without_cairnd_a_change_says_so_and_nothing_changes(box):
    settle(box)
    rc = box.stop()
    assert rc == 0, box.log_tail()
    try:
        before = state(box)
        r = ctl(box, "hold", "add", "--patient", PATIENTS["held"].pid, "--reason", "x",
                "--timeout", "2")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "did not answer" in r.stderr and "running" in r.stderr, r.stderr
        # reads still work without the daemon
        assert show(box, PATIENTS["adult"])["expires_on"] == "2030-01-01"
        assert state(box) == before
    finally:
        box.start()
    # the request left behind is not carried out after the start either (it timed out)
    time.sleep(2.5)
    assert state(box)[2] == before[2]


def test_a_bad_rule_file_stops_cairnd_naming_the_file_and_line(tmp_path):
    rules = tmp_path / "clinic.toml"
    rules.write_text('name = "clinic"\ndescription = "Ours"\n[keep]\nafter_last_visit = "20 years"\n')
    config = tmp_path / "cairn.toml"
    config.write_text(
        '[dicom]\nae_title = "CAIRN"\nbind = "127.0.0.1"\nport = 0\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n'
        '[http]\nbind = "127.0.0.1"\nport = 0\n'
        '[lifecycle]\nretention = "clinic.toml"\n')
    r = subprocess.run([str(CAIRND), "run", "--config", str(config)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert str(rules) in r.stderr and "line 4" in r.stderr and "after_last_visit" in r.stderr, \
        r.stderr
    config.write_text(config.read_text().replace('"clinic.toml"', '"france"'))
    r = subprocess.run([str(CAIRND), "run", "--config", str(config)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "lifecycle.retention" in r.stderr and "fr, fixed-10y" in \
        r.stderr, r.stderr


def test_a_clinic_rule_file_takes_over_at_the_next_start(cairn_factory, tmp_path):
    """Stored expiries computed with the old rules are recomputed with the new ones."""
    p = Patient("clinic", "LC-CLINIC", "19700615", ["20200301"])
    p.study_uids = [uid("lc-study", p.key, 0)]
    f = make_file(tmp_path / "src" / "clinic.dcm", p, p.study_uids[0], 0)
    c = cairn_factory("clinic")
    r = c.storescu([f])
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_stored(c, p, "2040-03-01")[0][2] == "fr"
    rc = c.stop()
    assert rc == 0, c.log_tail()
    (c.config_path.parent / "clinic-2026.toml").write_text(
        'name = "clinic-2026"\ndescription = "Ours: 5 years after the last visit"\n'
        '[keep]\nafter_last_visit = "5y"\n')
    with open(c.config_path, "a") as out:
        out.write('\n[lifecycle]\nretention = "clinic-2026.toml"\n')
    c.start()
    assert wait_stored(c, p, "2025-03-01")[0][2] == "clinic-2026"
    v = json.loads(ok(c, "--config", str(c.config_path), "retention", "show", "--patient",
                      p.pid, "--json"))
    assert (v["rule_set"], v["expires_on"], v["reason"]) == \
        ("clinic-2026", "2025-03-01", "5 years after the last visit on 2020-03-01")
