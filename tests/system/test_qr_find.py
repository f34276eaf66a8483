"""C-FIND against the box (docs/interface.md, "Query/retrieve").

One box per module holds the controlled corpus of qrlib (four patients, six studies, nine
series, thirteen instances), so every answer set is known exactly. Each query runs through two
independent requesters: pynetdicom (identifier encoded by pydicom) and DCMTK findscu (the
identifier given as a query file, answers extracted with -X and read back). Answers are keyed by
the level's unique key and compared as sets; attribute values are checked against the corpus.
"""

from __future__ import annotations

import time

import pytest
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset

import dicomwire as w
import qrlib as q
from harness import managed

PEERS = [
    {"ae": "TESTSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "NOQUERY", "host": "127.0.0.1", "port": 104, "store": True, "query": False,
     "retrieve": True},
]

CLIENTS = ["pynetdicom", "findscu"]
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> q.Corpus:
    return q.build_corpus(tmp_path_factory.mktemp("qr-corpus"))


@pytest.fixture(scope="module")
def box(tmp_path_factory, corpus):
    with managed(tmp_path_factory.mktemp("qr-find-box"), peers=PEERS) as c:
        q.store_files(c.port, [i.path for i in corpus.instances])
        assert c.instance_count() == len(corpus.instances)
        yield c
        assert c.running, f"cairnd died during the C-FIND tests\n{c.log_tail()}"


@pytest.fixture
def find(box, tmp_path):
    """find(client, level, keys, model='S', charset=None) -> (answers, final status)."""
    n = [0]

    def run(client: str, level: str, keys: dict, model: str = "S", charset: str | None = None,
            port: int | None = None):
        ident = q.query(level, SpecificCharacterSet=charset, **keys)
        port = port or box.port
        if client == "pynetdicom":
            answers, final = q.pn_find(port, ident, model)
            return answers, int(final.Status)
        n[0] += 1
        qf = q.write_query_file(tmp_path / f"query{n[0]}.dcm", ident, model)
        answers, status, out = q.dcmtk_find(port, [], tmp_path / f"rsp{n[0]}", model,
                                            query_file=qf)
        return answers, status

    return run


def keyset(answers, level: str) -> list[str]:
    key = UNIQUE[level]
    out = []
    for a in answers:
        assert key in a, f"answer lacks the unique key {key}:\n{a}"
        out.append(str(a.get(key) or ""))
    return out


def assert_answers(answers, status, level: str, expected: set[str], what: str = ""):
    assert status == 0x0000, f"{what}: final status 0x{status:04X}, expected 0x0000"
    got = keyset(answers, level)
    assert len(got) == len(set(got)), f"{what}: duplicate answers {sorted(got)}"
    assert set(got) == expected, (f"{what}: answers {sorted(got)}\nexpected {sorted(expected)}\n"
                                  f"missing {sorted(expected - set(got))} "
                                  f"extra {sorted(set(got) - expected)}")
    for a in answers:
        assert a.get("QueryRetrieveLevel") == level, f"{what}: (0008,0052) in answer:\n{a}"
        assert a.get("RetrieveAETitle") == "CAIRN", f"{what}: (0008,0054) in answer:\n{a}"


# --------------------------------------------------------------------------------------------
# levels in both information models
# --------------------------------------------------------------------------------------------

LEVEL_CASES = {
    # id: (model, level, keys(corpus), expected unique keys(corpus))
    "P-PATIENT": ("P", "PATIENT",
                  lambda c: dict(PatientID="", PatientName="", PatientBirthDate="",
                                 PatientSex="", IssuerOfPatientID="", InstitutionName=""),
                  lambda c: {p.pid for p in c.patients}),
    "P-STUDY": ("P", "STUDY",
                lambda c: dict(PatientID="QR-MUE", StudyInstanceUID="", StudyDate="",
                               StudyTime="", AccessionNumber="", StudyID="",
                               StudyDescription="", ReferringPhysicianName="",
                               InstitutionName=""),
                lambda c: {s.uid for s in c.patient("QR-MUE").studies}),
    "P-SERIES": ("P", "SERIES",
                 lambda c: dict(PatientID="QR-MUE", StudyInstanceUID=c.study("A1").uid,
                                SeriesInstanceUID="", Modality="", SeriesNumber="",
                                SeriesDescription="", BodyPartExamined="", InstitutionName=""),
                 lambda c: {s.uid for s in c.study("A1").series}),
    "P-IMAGE": ("P", "IMAGE",
                lambda c: dict(PatientID="QR-MUE", StudyInstanceUID=c.study("A1").uid,
                               SeriesInstanceUID=c.study("A1").series[0].uid,
                               SOPInstanceUID="", SOPClassUID="", InstanceNumber="",
                               InstitutionName=""),
                lambda c: {i.sop_uid for i in c.study("A1").series[0].instances}),
    "S-STUDY": ("S", "STUDY",
                lambda c: dict(StudyInstanceUID="", PatientName="", PatientID="",
                               StudyDate="", StudyTime="", AccessionNumber="", StudyID="",
                               StudyDescription="", ReferringPhysicianName="",
                               InstitutionName=""),
                lambda c: {s.uid for s in c.studies}),
    "S-SERIES": ("S", "SERIES",
                 lambda c: dict(StudyInstanceUID=c.study("A2").uid, SeriesInstanceUID="",
                                Modality="", SeriesNumber="", SeriesDescription="",
                                BodyPartExamined="", InstitutionName=""),
                 lambda c: {s.uid for s in c.study("A2").series}),
    "S-IMAGE": ("S", "IMAGE",
                lambda c: dict(StudyInstanceUID=c.study("A2").uid,
                               SeriesInstanceUID=c.study("A2").series[0].uid, SOPInstanceUID="",
                               SOPClassUID="", InstanceNumber="", InstitutionName=""),
                lambda c: {i.sop_uid for i in c.study("A2").series[0].instances}),
}


def expected_values(corpus: q.Corpus, level: str, key: str) -> dict[str, str]:
    """What the box must return for each answer at `level`, keyed by attribute keyword."""
    if level == "PATIENT":
        p = corpus.patient(key)
        return dict(PatientID=p.pid, PatientName=p.name, PatientBirthDate=p.birth_date,
                    PatientSex=p.sex, IssuerOfPatientID=p.issuer)
    if level == "STUDY":
        s = next(s for s in corpus.studies if s.uid == key)
        return dict(StudyInstanceUID=s.uid, StudyDate=s.date, StudyTime=s.time,
                    AccessionNumber=s.accession, StudyID=s.study_id,
                    StudyDescription=s.description, ReferringPhysicianName=s.referring,
                    PatientName=s.patient.name, PatientID=s.patient.pid)
    if level == "SERIES":
        se = next(se for se in corpus.series if se.uid == key)
        return dict(SeriesInstanceUID=se.uid, Modality=se.modality,
                    SeriesNumber=str(se.number), SeriesDescription=se.description,
                    BodyPartExamined=se.body_part, StudyInstanceUID=se.study.uid,
                    PatientID=se.study.patient.pid)
    i = next(i for i in corpus.instances if i.sop_uid == key)
    return dict(SOPInstanceUID=i.sop_uid, SOPClassUID=i.sop_class,
                InstanceNumber=str(i.number), SeriesInstanceUID=i.series.uid,
                StudyInstanceUID=i.series.study.uid, PatientID=i.series.study.patient.pid)


def text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword)
    if v is None:
        return "<absent>"
    return str(v).strip()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", list(LEVEL_CASES))
def test_levels_and_models(find, corpus, client, case):
    model, level, keys, expected = LEVEL_CASES[case]
    keys = keys(corpus)
    answers, status = find(client, level, keys, model=model)
    assert_answers(answers, status, level, expected(corpus), f"{case} via {client}")
    for a in answers:
        want = expected_values(corpus, level, str(a.get(UNIQUE[level])))
        for kw in keys:
            assert kw in a, f"{case}: requested key {kw} missing from the answer:\n{a}"
            if kw in want:
                assert text(a, kw) == want[kw], \
                    f"{case} via {client}: {kw} = {text(a, kw)!r}, stored {want[kw]!r}\n{a}"
        # a requested attribute the box does not index is returned, empty
        assert "InstitutionName" in a and text(a, "InstitutionName") == "", \
            f"{case}: unknown requested key must be present and empty:\n{a}"


@pytest.mark.parametrize("client", CLIENTS)
def test_patient_level_in_study_root_refused(find, client):
    answers, status = find(client, "PATIENT", dict(PatientID="", PatientName=""), model="S")
    assert status == 0xA900, f"PATIENT level in Study Root: final 0x{status:04X}, want 0xA900"
    assert answers == [], f"no answers expected, got {len(answers)}"


def test_patient_level_with_findscu_keys(box, tmp_path, corpus):
    """findscu -k keys (no query file): PATIENT level in Patient Root works, in Study Root the
    same identifier is refused with 0xA900."""
    keys = ["QueryRetrieveLevel=PATIENT", "PatientID=QR-DO*", "PatientName"]
    answers, status, out = q.dcmtk_find(box.port, keys, tmp_path / "p", "P")
    assert_answers(answers, status, "PATIENT", {"QR-DOE", "QR-DOJ"}, "findscu -P -k")
    answers, status, out = q.dcmtk_find(box.port, keys, tmp_path / "s", "S")
    assert status == 0xA900 and not answers, f"findscu -S PATIENT: 0x{status:04X}\n{out[-2000:]}"


def test_missing_level_refused(box):
    ident = Dataset()
    ident.PatientName = ""
    ident.StudyInstanceUID = ""
    answers, final = q.pn_find(box.port, ident, "S")
    assert final.Status == 0xA900 and not answers, \
        f"no (0008,0052): final 0x{final.Status:04X} with {len(answers)} answers, want 0xA900"


# --------------------------------------------------------------------------------------------
# matching rules
# --------------------------------------------------------------------------------------------

def studies(*keys):
    return lambda c: {c.study(k).uid for k in keys}


MATCH_CASES = {
    # id: (level, keys(corpus), expected(corpus))
    "single-accession": ("STUDY", lambda c: dict(AccessionNumber="ACC-1002"), studies("A2")),
    "single-patient-id": ("STUDY", lambda c: dict(PatientID="QR-DOE"), studies("C1", "C2")),
    "single-date": ("STUDY", lambda c: dict(StudyDate="20200615"), studies("D1")),
    "single-sex": ("STUDY", lambda c: dict(PatientSex="F"), studies("C1", "C2")),
    "single-study-id": ("STUDY", lambda c: dict(StudyID="2001"), studies("B1")),
    "single-description": ("STUDY", lambda c: dict(StudyDescription="CT HEAD"), studies("D1")),
    "single-issuer": ("STUDY", lambda c: dict(IssuerOfPatientID="HOSP-B"), studies("B1")),
    "single-referring": ("STUDY", lambda c: dict(ReferringPhysicianName="House^Greg"),
                         studies("C1", "C2")),
    "single-no-match": ("STUDY", lambda c: dict(AccessionNumber="NOPE-1"), studies()),
    "single-modality-series": (
        "SERIES", lambda c: dict(StudyInstanceUID=c.study("A2").uid, Modality="MR"),
        lambda c: {c.study("A2").series[0].uid}),
    "single-series-number": (
        "SERIES", lambda c: dict(StudyInstanceUID=c.study("A1").uid, SeriesNumber="2"),
        lambda c: {c.study("A1").series[1].uid}),
    "single-body-part": (
        "SERIES", lambda c: dict(StudyInstanceUID=c.study("A2").uid, BodyPartExamined="KNEE"),
        lambda c: {s.uid for s in c.study("A2").series}),
    "single-instance-number": (
        "IMAGE", lambda c: dict(StudyInstanceUID=c.study("A1").uid,
                                SeriesInstanceUID=c.study("A1").series[0].uid,
                                InstanceNumber="2"),
        lambda c: {c.study("A1").series[0].instances[1].sop_uid}),
    "single-sop-class": (
        "IMAGE", lambda c: dict(StudyInstanceUID=c.study("A2").uid,
                                SeriesInstanceUID=c.study("A2").series[0].uid,
                                SOPClassUID=q.MR_IMAGE),
        lambda c: {i.sop_uid for i in c.study("A2").series[0].instances}),
    "universal-empty": ("STUDY", lambda c: dict(StudyDate="", AccessionNumber=""),
                        lambda c: {s.uid for s in c.studies}),
    "universal-star": ("STUDY", lambda c: dict(AccessionNumber="*"),
                       lambda c: {s.uid for s in c.studies}),
    "wildcard-star-suffix": ("STUDY", lambda c: dict(AccessionNumber="ACC-*"),
                             studies("A1", "A2", "B1", "C1", "D1")),
    "wildcard-star-prefix": ("STUDY", lambda c: dict(StudyDescription="*HEAD"),
                             studies("B1", "D1")),
    "wildcard-star-inner": ("STUDY", lambda c: dict(AccessionNumber="A*-300*"),
                            studies("C1")),
    "wildcard-question": ("STUDY", lambda c: dict(AccessionNumber="ACC-100?"),
                          studies("A1", "A2")),
    "wildcard-question-two": ("STUDY", lambda c: dict(AccessionNumber="???-3002"),
                              studies("C2")),
    "wildcard-name-star": ("STUDY", lambda c: dict(PatientName="Doe^*"),
                           studies("C1", "C2", "D1")),
    "wildcard-name-question": ("STUDY", lambda c: dict(PatientName="Doe^Jo?n"), studies("D1")),
    "wildcard-series-description": (
        "SERIES", lambda c: dict(StudyInstanceUID=c.study("A1").uid, SeriesDescription="COR*"),
        lambda c: {c.study("A1").series[1].uid}),
    "date-range": ("STUDY", lambda c: dict(StudyDate="20190101-20211231"),
                   studies("A1", "A2", "D1")),
    "date-range-inclusive": ("STUDY", lambda c: dict(StudyDate="20190304-20200615"),
                             studies("A1", "D1")),
    "date-open-end": ("STUDY", lambda c: dict(StudyDate="20220101-"), studies("B1", "C2")),
    "date-open-start": ("STUDY", lambda c: dict(StudyDate="-20181231"), studies("C1")),
    "date-open-start-inclusive": ("STUDY", lambda c: dict(StudyDate="-20190304"),
                                  studies("C1", "A1")),
    "birth-date-range": ("STUDY", lambda c: dict(PatientBirthDate="19700101-19891231"),
                         studies("B1", "D1")),
    "time-range": ("STUDY", lambda c: dict(StudyTime="080000-100000"), studies("A1", "D1")),
    "time-range-inclusive": ("STUDY", lambda c: dict(StudyTime="081500-093000"),
                             studies("A1", "D1")),
    "time-open-end": ("STUDY", lambda c: dict(StudyTime="230000-"), studies("B1")),
    "time-open-start": ("STUDY", lambda c: dict(StudyTime="-081500"), studies("C1", "A1")),
    "uid-list-study": ("STUDY", lambda c: dict(
        StudyInstanceUID="\\".join([c.study("A1").uid, c.study("B1").uid, c.study("C2").uid])),
        studies("A1", "B1", "C2")),
    "uid-single-study": ("STUDY", lambda c: dict(StudyInstanceUID=c.study("D1").uid),
                         studies("D1")),
    "uid-list-series": (
        "SERIES", lambda c: dict(StudyInstanceUID=c.study("A1").uid,
                                 SeriesInstanceUID=c.study("A1").series[1].uid + "\\1.2.3.999"),
        lambda c: {c.study("A1").series[1].uid}),
    "uid-list-image": (
        "IMAGE", lambda c: dict(StudyInstanceUID=c.study("A1").uid,
                                SeriesInstanceUID=c.study("A1").series[0].uid,
                                SOPInstanceUID="\\".join(
                                    i.sop_uid for i in c.study("A1").series[0].instances[::2])),
        lambda c: {i.sop_uid for i in c.study("A1").series[0].instances[::2]}),
    "modalities-in-study": ("STUDY", lambda c: dict(ModalitiesInStudy="MR"),
                            studies("A2", "B1", "C2")),
    "combined-keys": ("STUDY", lambda c: dict(PatientName="Doe*", StudyDate="20200101-",
                                              ModalitiesInStudy="MR"), studies("C2")),
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", list(MATCH_CASES))
def test_matching(find, corpus, client, case):
    level, keys, expected = MATCH_CASES[case]
    keys = keys(corpus)
    keys.setdefault(UNIQUE[level], keys.get(UNIQUE[level], ""))
    answers, status = find(client, level, keys, model="S")
    assert_answers(answers, status, level, expected(corpus), f"{case} {keys} via {client}")


# --------------------------------------------------------------------------------------------
# person names and character sets
# --------------------------------------------------------------------------------------------

NAME_CASES = {
    # id: (query charset, PatientName key, expected studies)
    "lower": (None, "doe^jane", ("C1", "C2")),
    "upper": (None, "DOE^JANE", ("C1", "C2")),
    "mixed-wildcard": (None, "dOe^*", ("C1", "C2", "D1")),
    "lower-wildcard-family": (None, "doe*", ("C1", "C2", "D1")),
    "latin1-lower": ("ISO_IR 100", "müller^hans", ("A1", "A2")),
    "latin1-upper": ("ISO_IR 100", "MÜLLER^HANS", ("A1", "A2")),
    "utf8-upper-umlaut": ("ISO_IR 192", "MÜLLER^HANS", ("A1", "A2")),
    "utf8-wildcard": ("ISO_IR 192", "mül*", ("A1", "A2")),
    "utf8-ideographic": ("ISO_IR 192", q.YAMADA.lower(), ("B1",)),
    "ascii-prefix-of-multi-group": (None, "yamada*", ("B1",)),
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", list(NAME_CASES))
def test_person_name_case_insensitive(find, corpus, client, case):
    charset, name, keys = NAME_CASES[case]
    answers, status = find(client, "STUDY", dict(PatientName=name, StudyInstanceUID=""),
                           charset=charset)
    assert_answers(answers, status, "STUDY", {corpus.study(k).uid for k in keys},
                   f"PatientName={name!r} ({charset}) via {client}")


CHARSET_CASES = {
    # id: (query charset, keys, expected patient, allowed answer charsets, raw encoding)
    "latin1-query-latin1-name": ("ISO_IR 100", dict(PatientName=q.MUELLER), "QR-MUE",
                                 {"ISO_IR 100"}, "latin-1"),
    "latin1-query-japanese-name": ("ISO_IR 100", dict(PatientID="QR-YAM"), "QR-YAM",
                                   {"ISO_IR 192"}, "utf-8"),
    "utf8-query-latin1-name": ("ISO_IR 192", dict(PatientName=q.MUELLER), "QR-MUE",
                               {"ISO_IR 192"}, "utf-8"),
    "utf8-query-japanese-name": ("ISO_IR 192", dict(PatientName=q.YAMADA), "QR-YAM",
                                 {"ISO_IR 192"}, "utf-8"),
    "no-charset-query-latin1-name": (None, dict(PatientID="QR-MUE"), "QR-MUE",
                                     {"ISO_IR 192"}, "utf-8"),
    "no-charset-query-japanese-name": (None, dict(PatientID="QR-YAM"), "QR-YAM",
                                       {"ISO_IR 192"}, "utf-8"),
}


def raw_value(ds: Dataset, tag: int) -> bytes:
    """The undecoded bytes of an element (padding stripped)."""
    elem = ds.get_item(tag)
    assert elem is not None, f"({tag >> 16:04X},{tag & 0xFFFF:04X}) missing"
    v = elem.value
    if isinstance(v, str):  # already decoded: cannot judge bytes
        raise AssertionError(f"element {tag:08X} already decoded")
    return bytes(v).rstrip(b" \0")


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", list(CHARSET_CASES))
def test_character_sets(find, corpus, client, case):
    charset, keys, pid, allowed, encoding = CHARSET_CASES[case]
    patient = corpus.patient(pid)
    answers, status = find(client, "STUDY",
                           dict(PatientID=keys.get("PatientID", ""),
                                PatientName=keys.get("PatientName", ""),
                                StudyInstanceUID="", StudyDescription=""),
                           charset=charset)
    assert_answers(answers, status, "STUDY", {s.uid for s in patient.studies},
                   f"{case} via {client}")
    for a in answers:
        raw_name = raw_value(a, 0x00100010)
        cs = a.get_item(0x00080005)
        assert cs is not None, f"{case}: non-ASCII answer without (0008,0005)"
        cs = cs.value
        cs = cs.decode("ascii") if isinstance(cs, bytes) else cs
        cs = [x.strip() for x in (cs.split("\\") if isinstance(cs, str) else cs)]
        assert cs and set(cs) <= allowed, \
            f"{case}: answer (0008,0005) {cs}, expected one of {allowed}"
        assert raw_name == patient.name.encode(encoding), \
            f"{case}: PatientName bytes {raw_name!r}, want {patient.name.encode(encoding)!r}"
        assert str(a.PatientName) == patient.name, \
            f"{case}: decoded PatientName {str(a.PatientName)!r}, stored {patient.name!r}"


# --------------------------------------------------------------------------------------------
# computed keys
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("client", CLIENTS)
def test_computed_study_keys(find, corpus, client):
    answers, status = find(client, "STUDY", dict(
        StudyInstanceUID="", NumberOfStudyRelatedInstances="", NumberOfStudyRelatedSeries="",
        ModalitiesInStudy="", SOPClassesInStudy=""))
    assert_answers(answers, status, "STUDY", {s.uid for s in corpus.studies}, "computed")
    for a in answers:
        st = next(s for s in corpus.studies if s.uid == a.StudyInstanceUID)
        assert int(a.NumberOfStudyRelatedInstances) == len(st.instances), \
            f"{st.key}: NumberOfStudyRelatedInstances {a.NumberOfStudyRelatedInstances!r}"
        assert int(a.NumberOfStudyRelatedSeries) == len(st.series), \
            f"{st.key}: NumberOfStudyRelatedSeries {a.NumberOfStudyRelatedSeries!r}"
        mods = a.ModalitiesInStudy
        mods = {mods} if isinstance(mods, str) else set(mods)
        assert mods == st.modalities, f"{st.key}: ModalitiesInStudy {mods} vs {st.modalities}"
        classes = a.SOPClassesInStudy
        classes = {str(classes)} if isinstance(classes, str) else {str(x) for x in classes}
        assert classes == {i.sop_class for i in st.instances}, \
            f"{st.key}: SOPClassesInStudy {classes}"


@pytest.mark.parametrize("client", CLIENTS)
def test_computed_patient_keys(find, corpus, client):
    answers, status = find(client, "PATIENT", dict(
        PatientID="", NumberOfPatientRelatedStudies="", NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances=""), model="P")
    assert_answers(answers, status, "PATIENT", {p.pid for p in corpus.patients}, "computed")
    for a in answers:
        p = corpus.patient(a.PatientID)
        assert int(a.NumberOfPatientRelatedStudies) == len(p.studies), \
            f"{p.pid}: NumberOfPatientRelatedStudies {a.NumberOfPatientRelatedStudies!r}"
        assert int(a.NumberOfPatientRelatedSeries) == sum(len(s.series) for s in p.studies), \
            f"{p.pid}: NumberOfPatientRelatedSeries {a.NumberOfPatientRelatedSeries!r}"
        assert int(a.NumberOfPatientRelatedInstances) == \
            sum(len(s.instances) for s in p.studies), \
            f"{p.pid}: NumberOfPatientRelatedInstances {a.NumberOfPatientRelatedInstances!r}"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("key", ["A1", "A2"])
def test_computed_series_keys(find, corpus, client, key):
    st = corpus.study(key)
    answers, status = find(client, "SERIES", dict(
        StudyInstanceUID=st.uid, SeriesInstanceUID="", NumberOfSeriesRelatedInstances=""))
    assert_answers(answers, status, "SERIES", {s.uid for s in st.series}, "computed series")
    for a in answers:
        se = next(s for s in st.series if s.uid == a.SeriesInstanceUID)
        assert int(a.NumberOfSeriesRelatedInstances) == len(se.instances), \
            f"series {se.number} of {key}: {a.NumberOfSeriesRelatedInstances!r}"


# --------------------------------------------------------------------------------------------
# limit, cancel, rights, audit
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("client", CLIENTS)
def test_answer_limit(cairn_factory, corpus, tmp_path, client):
    c = cairn_factory("limit", start=False, peers=PEERS)
    c.config["dicom"]["max_query_results"] = 3
    c.write_config()
    c.start()
    q.store_files(c.port, [i.path for i in corpus.instances])
    ident = q.query("STUDY", StudyInstanceUID="", PatientName="")
    if client == "pynetdicom":
        answers, final = q.pn_find(c.port, ident, "S")
        status = int(final.Status)
        comment = str(final.get("ErrorComment", ""))
    else:
        qf = q.write_query_file(tmp_path / "limit.dcm", ident)
        answers, status, out = q.dcmtk_find(c.port, [], tmp_path / "rsp", "S", query_file=qf)
        comment = "(see findscu output)" if "ErrorComment" in out else ""
    assert len(answers) == 3, f"{len(answers)} pending answers with max_query_results = 3"
    assert status == 0xA700, f"final 0x{status:04X} over the limit, want 0xA700"
    assert comment, "0xA700 must carry an Error Comment (0000,0902)"
    # exactly at the limit is fine
    three = "\\".join(corpus.study(k).uid for k in ("A1", "B1", "C2"))
    answers, final = q.pn_find(c.port, q.query("STUDY", StudyInstanceUID=three), "S")
    assert (len(answers), int(final.Status)) == (3, 0), \
        f"3 matches with limit 3: {len(answers)} answers, final 0x{int(final.Status):04X}"
    c.assert_serving()


def many_keys(n: int) -> dict:
    """n standard attributes the box does not index: each is answered (empty), which makes
    every answer several kB and lets the socket buffers fill up while the box streams."""
    out = {}
    for tag, (vr, _vm, _name, retired, kw) in sorted(DicomDictionary.items()):
        if len(out) >= n:
            break
        if retired or not kw or vr not in ("LO", "SH", "CS", "DA", "TM", "LT", "ST", "DS",
                                            "IS", "AE", "AS", "DT", "UI"):
            continue
        if tag >> 16 in (0x0000, 0x0002, 0x0008, 0x0010, 0x0020):
            continue
        out[kw] = ""
    return out


N_CANCEL = 1000


def test_cancel(cairn_factory, tmp_path):
    """C-CANCEL after the first pending answer: final 0xFE00, the association stays usable.

    1000 answers of ~7 kB each (the requested keys are echoed) are far more than the socket
    buffers between box and requester can hold, so the box is still answering when the cancel
    arrives; pynetdicom reads with a small receive buffer."""
    c = cairn_factory("cancel", peers=PEERS)
    study = q.uid("qr-cancel", "study")
    files = q.tiny_instances(tmp_path / "tiny", N_CANCEL, "qr-cancel", study_uid=study)
    q.storescu(c.port, [p for p, _ in files])
    assert c.instance_count() == N_CANCEL
    ident = q.query("IMAGE", StudyInstanceUID=study, SOPInstanceUID="", **many_keys(700))

    ae = q.qr_ae()
    ae.add_requested_context(q.STUDY_FIND, q.UNCOMPRESSED)
    ae.add_requested_context(q.VERIFICATION, q.UNCOMPRESSED)
    with q.client_socket_options(rcvbuf=4096):
        assoc = ae.associate("127.0.0.1", c.port, ae_title="CAIRN")
    assert assoc.is_established
    try:
        ctx = next(x for x in assoc.accepted_contexts if x.abstract_syntax == q.STUDY_FIND)
        pending, finals = 0, []
        t0 = time.monotonic()
        for status, _ident in assoc.send_c_find(ident, q.STUDY_FIND, msg_id=11):
            assert status is not None and "Status" in status, "no response / aborted"
            if status.Status in q.PENDING:
                pending += 1
                if pending == 1:
                    assoc.send_c_cancel(11, ctx.context_id)
            else:
                finals.append(int(status.Status))
        assert finals == [0xFE00], \
            f"after C-CANCEL: final {[hex(f) for f in finals]} after {pending} answers " \
            f"({time.monotonic() - t0:.1f}s), want 0xFE00"
        assert pending < N_CANCEL, f"cancel had no effect: {pending} answers"
        # the same association still works
        answers, again = [], []
        for status, identifier in assoc.send_c_find(
                q.query("STUDY", StudyInstanceUID=study, NumberOfStudyRelatedInstances=""),
                q.STUDY_FIND, msg_id=12):
            assert status is not None and "Status" in status, "association unusable"
            (answers if status.Status in q.PENDING else again).append(
                identifier if status.Status in q.PENDING else int(status.Status))
        assert again == [0] and len(answers) == 1 and \
            int(answers[0].NumberOfStudyRelatedInstances) == N_CANCEL, \
            f"C-FIND after the cancelled one: {again}, {answers}"
        echo = assoc.send_c_echo()
        assert "Status" in echo and echo.Status == 0, "C-ECHO after the cancel failed"
    finally:
        if assoc.is_established:
            assoc.release()
    c.assert_serving()


def test_peer_without_query_right_refused(box):
    """NOQUERY (query = false) proposing only C-FIND: A-ASSOCIATE-RJ 1/1/1."""
    for model in (q.STUDY_FIND, q.PATIENT_FIND):
        with w.Wire(box.port) as conn:
            conn.send(w.assoc_rq("CAIRN", "NOQUERY", [(1, model, [w.IMPLICIT_LE])]))
            out = conn.outcome(10)
        assert out.kind == "rj" and (out.result, out.source, out.reason) == (1, 1, 1), \
            f"NOQUERY proposing only {model}: {out}, want A-ASSOCIATE-RJ 1/1/1"
    ae = q.qr_ae("NOQUERY")
    ae.add_requested_context(q.STUDY_FIND, q.UNCOMPRESSED)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="CAIRN")
    try:
        assert assoc.is_rejected, "pynetdicom: NOQUERY's FIND-only association was not rejected"
    finally:
        if assoc.is_established:
            assoc.release()


def test_peer_without_query_right_gets_no_answers(box):
    """NOQUERY proposing FIND and Verification: the association may be accepted (C-ECHO is
    always allowed) but no C-FIND is answered."""
    ae = q.qr_ae("NOQUERY")
    ae.add_requested_context(q.STUDY_FIND, q.UNCOMPRESSED)
    ae.add_requested_context(q.VERIFICATION, q.UNCOMPRESSED)
    assoc = ae.associate("127.0.0.1", box.port, ae_title="CAIRN")
    try:
        if not assoc.is_established:
            return  # a rejection is also a refusal
        find_ok = any(c.abstract_syntax == q.STUDY_FIND for c in assoc.accepted_contexts)
        if find_ok:
            got = []
            for status, _ in assoc.send_c_find(q.query("STUDY", StudyInstanceUID=""),
                                               q.STUDY_FIND):
                if status is None or "Status" not in status:
                    break
                got.append(int(status.Status))
            assert got and got[0] not in q.PENDING | {0}, \
                f"NOQUERY's C-FIND answered: statuses {[hex(s) for s in got]}"
        assert assoc.send_c_echo().Status == 0, "C-ECHO must stay allowed"
    finally:
        if assoc.is_established:
            assoc.release()


def test_query_audited(box, corpus):
    seq = q.last_seq(box)
    answers, final = q.pn_find(box.port, q.query("STUDY", AccessionNumber="ACC-1002",
                                                 StudyInstanceUID=""), "S")
    assert int(final.Status) == 0 and len(answers) == 1
    rows = q.audit_after(box, seq, "query")
    assert len(rows) == 1, f"expected one 'query' audit row, got {rows}"
    row = rows[0]
    assert "TESTSCU" in row["actor"], f"audit actor {row['actor']!r} does not name the peer"
    d = row["detail_json"]
    assert isinstance(d, dict), f"audit detail is not JSON: {row['detail']!r}"
    assert d.get("level") == "STUDY", f"detail level: {d}"
    assert "ACC-1002" in str(d.get("keys")), f"detail keys do not hold the query: {d}"
    assert str(d.get("answers")) == "1", f"detail answers: {d}"
    st = d.get("status")
    assert st is not None and int(str(st), 16 if str(st).lower().startswith("0x") else 10) == 0, \
        f"detail status: {d}"
    r = box.ctl("audit", "verify")
    assert r.returncode == 0, f"audit chain broken after queries:\n{r.stdout}{r.stderr}"
