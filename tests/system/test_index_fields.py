"""What the index keeps about each study and patient.

- A date or time that is not one (StudyDate bytes `123\\xE9567`) is indexed as
  invalid, the object is kept exactly as received, and `cairnctl studies` lists it safely.
- A later instance (DCMTK `pdf2dcm --study-from`) never blanks a study or
  patient field; a different non-empty value keeps the first, is recorded and audited.
- Patients with an empty Patient ID are not merged unless name and birth date
  match, and C-FIND answers them as separate patients.
- `cairnctl studies --patient` matches like the panel; `--patient-id` and
  `--accession` filter.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

import qrlib as q
from datagen import uid
from harness import DCMTK_ENV, TEST_FILES, dataset_sha256, managed

PDF2DCM = "/usr/bin/pdf2dcm"
DCMODIFY = "/usr/bin/dcmodify"

# A one-page-less but well-formed PDF: enough for pdf2dcm.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    with managed(tmp_path_factory.mktemp("index-fields")) as c:
        yield c


def ct(path: Path, key: str, *, name: str, pid: str, raw: dict | None = None, **values) -> Path:
    """CT_small with fresh UIDs (from `key`), the given attributes, and `raw` elements written
    byte for byte ({tag: (VR, bytes)})."""
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    sop = uid("index-fields-sop", key)
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID = values.pop("StudyInstanceUID", uid("index-fields-study", key))
    ds.SeriesInstanceUID = uid("index-fields-series", key)
    ds.PatientName = name
    ds.PatientID = pid
    for k, v in values.items():
        setattr(ds, k, v)
    for tag, (vr, b) in (raw or {}).items():
        ds[tag] = RawDataElement(Tag(tag), vr, len(b), b, 0, False, True)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def send(box, *paths: Path) -> None:
    q.store_files(box.port, list(paths))


def studies(box, *args: str) -> str:
    r = box.ctl("studies", *args)
    assert r.returncode == 0, f"cairnctl studies {args}: rc={r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def study_row(box, study_uid: str) -> dict:
    con = box.db()
    con.row_factory = __import__("sqlite3").Row
    try:
        row = con.execute(
            "SELECT st.*, p.patient_id, p.name, p.birth_date FROM studies st "
            "JOIN patients p ON st.patient_ref = p.id WHERE st.study_uid = ?",
            (study_uid,)).fetchone()
        assert row is not None, f"study {study_uid} not indexed"
        return dict(row)
    finally:
        con.close()


def pdf_from(study_file: Path, out: Path, **changes: str) -> Path:
    """`pdf2dcm --study-from`, then `dcmodify -i` for each (tag, value) in `changes`."""
    pdf = out.with_suffix(".pdf")
    pdf.write_bytes(PDF)
    r = subprocess.run([PDF2DCM, "--study-from", str(study_file), str(pdf), str(out)],
                       capture_output=True, text=True, env=DCMTK_ENV, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for tag, value in changes.items():
        r = subprocess.run([DCMODIFY, "-nb", "-i", f"{tag}={value}", str(out)],
                           capture_output=True, text=True, env=DCMTK_ENV, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    return out


# ------------------------------------------------------------------------------------------
# Dates and times that are not
# ------------------------------------------------------------------------------------------

def test_invalid_date_is_indexed_as_invalid_and_listed_safely(box, tmp_path):
    study_uid = uid("index-fields-study", "baddate")
    path = ct(tmp_path / "bad.dcm", "baddate", name="BADDATE^ONE", pid="BADDATE-1",
              raw={0x0008_0020: ("DA", b"123\xe9567"),
                   0x0008_0030: ("TM", b"12\xe93000 "),
                   0x0010_0030: ("DA", b"19\xe9\xe90101")})
    send(box, path)

    # kept as received: the stored data set is the sent one, byte for byte
    sop = pydicom.dcmread(path).SOPInstanceUID
    row = box.current_row(sop)
    assert row is not None
    assert dataset_sha256(box.object_path(row["sha256"])) == dataset_sha256(path)

    # indexed as invalid: no date, time or birth date a search could match
    st = study_row(box, study_uid)
    assert (st["study_date"], st["study_time"], st["birth_date"]) == ("", "", ""), st
    con = box.db()
    try:
        invalid = {f for (f,) in con.execute(
            "SELECT c.field FROM field_conflicts c JOIN studies st ON c.study_ref = st.id "
            "WHERE st.study_uid = ? AND c.reason = 'invalid'", (study_uid,))}
    finally:
        con.close()
    assert invalid == {"StudyDate", "StudyTime", "PatientBirthDate"}, invalid

    # the CLI lists it (exit 0), says the date is invalid, and date searches skip it
    out = studies(box)
    line = next((ln for ln in out.splitlines() if study_uid in ln), None)
    assert line is not None, out
    assert "invalid" in line.lower(), line
    assert study_uid not in studies(box, "--date", "-29991231")
    assert study_uid in studies(box, "--patient-id", "BADDATE-1")
    box.assert_serving()


# ------------------------------------------------------------------------------------------
# Later instances never blank or silently overwrite
# ------------------------------------------------------------------------------------------

def test_pdf_study_from_keeps_study_fields(box, tmp_path):
    study_uid = uid("index-fields-study", "pdf")
    first = ct(tmp_path / "ct.dcm", "pdf", name="PDFCASE^ANNA", pid="PDF-1",
               StudyDate="20190304", StudyTime="101500", AccessionNumber="ACC-PDF-1",
               StudyDescription="CHEST PDF", PatientBirthDate="19600101",
               ReferringPhysicianName="REFER^RITA", StudyID="S77")
    send(box, first)
    before = study_row(box, study_uid)
    doc = pdf_from(first, tmp_path / "doc.dcm")
    assert pydicom.dcmread(doc).StudyDate == ""
    send(box, doc)

    after = study_row(box, study_uid)
    for field in ("study_date", "study_time", "accession", "description",
                  "referring_physician", "study_id", "birth_date", "name", "patient_id"):
        assert after[field] == before[field], f"{field}: {before[field]!r} -> {after[field]!r}"
    assert after["study_date"] == "20190304"
    assert study_uid in studies(box, "--date", "20190304")
    assert study_uid in studies(box, "--accession", "ACC-PDF-1")
    con = box.db()
    try:
        n_series = con.execute(
            "SELECT count(*) FROM series WHERE study_ref = ?", (after["id"],)).fetchone()[0]
        conflicts = con.execute(
            "SELECT count(*) FROM field_conflicts WHERE study_ref = ?", (after["id"],)
        ).fetchone()[0]
    finally:
        con.close()
    assert n_series == 2
    assert conflicts == 0, "an empty value is not a conflict"


def test_different_value_keeps_the_first_and_is_recorded(box, tmp_path):
    study_uid = uid("index-fields-study", "conflict")
    first = ct(tmp_path / "ct.dcm", "conflict", name="CONFLICT^FIRSTNAME", pid="CONF-1",
               StudyDate="20180102", AccessionNumber="ACC-CONF-1",
               StudyDescription="FIRST DESC")
    send(box, first)
    doc = pdf_from(first, tmp_path / "doc.dcm", **{
        "(0008,1030)": "SECOND DESC", "(0008,0020)": "20180105",
        "(0010,0010)": "CONFLICT^SECONDNAME"})
    send(box, doc)
    # the same conflict again is recorded once
    send(box, pdf_from(first, tmp_path / "doc2.dcm", **{"(0008,1030)": "SECOND DESC"}))

    st = study_row(box, study_uid)
    assert (st["description"], st["study_date"], st["name"]) == \
        ("FIRST DESC", "20180102", "CONFLICT^FIRSTNAME"), st
    con = box.db()
    try:
        rows = con.execute(
            "SELECT level, field, kept, received, reason, sop_instance_uid FROM field_conflicts "
            "WHERE study_ref = ? ORDER BY field", (st["id"],)).fetchall()
        audits = [json.loads(d) for (d,) in con.execute(
            "SELECT detail FROM audit WHERE action = 'field-conflict' AND object = ?",
            (study_uid,))]
    finally:
        con.close()
    doc_sop = pydicom.dcmread(doc).SOPInstanceUID
    assert rows == [
        ("patient", "PatientName", "CONFLICT^FIRSTNAME", "CONFLICT^SECONDNAME", "differs",
         doc_sop),
        ("study", "StudyDate", "20180102", "20180105", "differs", doc_sop),
        ("study", "StudyDescription", "FIRST DESC", "SECOND DESC", "differs", doc_sop),
    ], rows
    assert sorted((a["field"], a["kept"], a["received"]) for a in audits) == [
        ("PatientName", "CONFLICT^FIRSTNAME", "CONFLICT^SECONDNAME"),
        ("StudyDate", "20180102", "20180105"),
        ("StudyDescription", "FIRST DESC", "SECOND DESC"),
    ], audits
    # the daemon's log never holds the names
    log = box.log_tail(100_000)
    assert "field_conflicts" in log, "the conflict is logged (without its values)"
    assert "FIRSTNAME" not in log and "SECONDNAME" not in log
    assert study_uid in studies(box, "--date", "20180102")
    assert study_uid not in studies(box, "--date", "20180105")


# ------------------------------------------------------------------------------------------
# Empty Patient IDs
# ------------------------------------------------------------------------------------------

def test_empty_patient_ids_are_not_merged(box, tmp_path):
    a = ct(tmp_path / "a.dcm", "anon-a", name="Anonymized", pid="", PatientBirthDate="")
    b = ct(tmp_path / "b.dcm", "anon-b", name="^^^^", pid="", PatientBirthDate="19970512")
    # same (empty) ID, same name and birth date: the same patient as `a`
    c = ct(tmp_path / "c.dcm", "anon-c", name="Anonymized", pid="", PatientBirthDate="")
    # same name, another birth date: someone else
    d = ct(tmp_path / "d.dcm", "anon-d", name="Anonymized", pid="", PatientBirthDate="20010101")
    send(box, a, b, c, d)
    by_study = {k: study_row(box, uid("index-fields-study", k))
                for k in ("anon-a", "anon-b", "anon-c", "anon-d")}
    assert by_study["anon-a"]["patient_ref"] == by_study["anon-c"]["patient_ref"]
    refs = {by_study[k]["patient_ref"] for k in ("anon-a", "anon-b", "anon-d")}
    assert len(refs) == 3, by_study
    assert by_study["anon-b"]["name"] == "^^^^"
    assert by_study["anon-a"]["name"] == "Anonymized"

    # patient level (Patient Root): three patients with an empty ID
    ident = Dataset()
    ident.QueryRetrieveLevel = "PATIENT"
    ident.PatientID = ""
    ident.PatientName = ""
    ident.PatientBirthDate = ""
    ident.NumberOfPatientRelatedStudies = ""
    answers, final = q.pn_find(box.port, ident, model="P")
    assert final.Status == 0
    empty = sorted((str(x.PatientName), str(x.PatientBirthDate),
                    int(x.NumberOfPatientRelatedStudies))
                   for x in answers if str(x.get("PatientID", "")) == "")
    assert empty == [("Anonymized", "", 2), ("Anonymized", "20010101", 1),
                     ("^^^^", "19970512", 1)], empty

    # study level (Study Root): each study with its own patient
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.PatientID = ""
    ident.PatientName = ""
    ident.StudyInstanceUID = "\\".join(uid("index-fields-study", k)
                                       for k in ("anon-a", "anon-b", "anon-c", "anon-d"))
    answers, final = q.pn_find(box.port, ident, model="S")
    assert final.Status == 0
    names = {str(x.StudyInstanceUID): (str(x.PatientName), str(x.get("PatientID", "")))
             for x in answers}
    assert names == {
        uid("index-fields-study", "anon-a"): ("Anonymized", ""),
        uid("index-fields-study", "anon-b"): ("^^^^", ""),
        uid("index-fields-study", "anon-c"): ("Anonymized", ""),
        uid("index-fields-study", "anon-d"): ("Anonymized", ""),
    }, names


# ------------------------------------------------------------------------------------------
# The CLI matches like the panel
# ------------------------------------------------------------------------------------------

def test_studies_patient_matches_like_the_panel(box, tmp_path):
    study_uid = uid("index-fields-study", "dupont")
    other_uid = uid("index-fields-study", "dupond")
    send(box,
         ct(tmp_path / "dupont.dcm", "dupont", name="DUPONT^JEAN", pid="DUP-77",
            AccessionNumber="ACC-DUP-77", StudyDate="20200202"),
         ct(tmp_path / "dupond.dcm", "dupond", name="DUPOND^JEANNE", pid="DUP-78",
            AccessionNumber="ACC-DUP-78", StudyDate="20200203"))
    for pattern in ("dupont", "DUPONT", "Dupont^Jean", "dupont jean", "dupont^j*"):
        out = studies(box, "--patient", pattern)
        assert study_uid in out, f"--patient {pattern!r}:\n{out}"
        assert other_uid not in out, f"--patient {pattern!r}:\n{out}"
    out = studies(box, "--patient", "jean")
    assert study_uid in out and other_uid in out, out
    out = studies(box, "--patient-id", "DUP-77")
    assert study_uid in out and other_uid not in out, out
    out = studies(box, "--accession", "ACC-DUP-78")
    assert other_uid in out and study_uid not in out, out
    out = studies(box, "--accession", "ACC-DUP-7?")
    assert other_uid in out and study_uid in out, out
    r = box.ctl("studies", "--patient-id", "bad\\value")
    assert r.returncode == 2 and "backslash" in r.stderr, r.stdout + r.stderr
