"""Orthanc as a real PACS peer of the box: it queries the box (C-FIND) and pulls every study
(C-MOVE to itself); what Orthanc then holds is compared with what the box stored.

Orthanc does not keep every received data set byte for byte: it re-encodes some (compressed
pixel data with odd fragment lengths, odd value lengths, ...) whoever sends them. A second,
"control" Orthanc is therefore sent the box's stored objects directly, unchanged (pynetdicom,
raw data set bytes, the stored transfer syntax). For each SOP Instance UID the data set Orthanc
holds after the retrieve must hash like the box's stored data set, or, where the control Orthanc
also changed the bytes it was given, like the control's copy: the same input gives the same
output, so any difference is the box's. Objects the control Orthanc refuses outright are
not expected in the retrieving Orthanc either (its limitation, listed in the failure text).

Files whose data set has an odd length are not loaded: PS3.8 Annex E allows only even PDVs,
and DCMTK-based receivers (Orthanc) abort on them; test_qr_retrieve covers that case.
"""

from __future__ import annotations

import os
import time

import pydicom
import pytest

import qrlib as q
from harness import TEST_FILES, is_part10, managed, read_meta

ALL = {"store": True, "query": True, "retrieve": True}


def loadable_test_files() -> list:
    out = []
    for p in sorted(TEST_FILES.rglob("*.dcm")):
        if not is_part10(p):
            continue
        _, off, _ = read_meta(p)
        if (os.path.getsize(p) - off) % 2:
            continue  # odd-length data set (see module docstring)
        out.append(p)
    return out


class Env:
    def __init__(self, box, orthanc, control, stored, control_hash, control_refused, studies,
                 study_of):
        self.box = box
        self.orthanc = orthanc
        self.control = control
        self.stored = stored                    # sop -> (ts, sha of stored data set)
        self.control_hash = control_hash        # sop -> sha of the control Orthanc's copy
        self.control_refused = control_refused  # sop -> status
        self.studies = studies                  # study uids the box holds
        self.study_of = study_of                # sop -> study uid


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("qr-orthanc")
    orthanc = q.Orthanc(base / "orthanc", "ORTHANC")
    control = q.Orthanc(base / "control", "CONTROL")
    peers = [
        {"ae": "TESTSCU", "host": "127.0.0.1", "port": 104, **ALL},
        {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, **ALL},
        {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, **ALL},
        {"ae": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port, **ALL},
    ]
    with managed(base / "box", peers=peers) as box:
        orthanc.config["DicomModalities"] = {"cairn": ["CAIRN", "127.0.0.1", box.port]}
        try:
            orthanc.start()
            control.start()
            results = q.store_files(box.port, loadable_test_files(), require_success=False)
            assert sum(1 for s in results.values() if s == 0) >= 30, \
                f"the box stored too few test files: {results}"
            rows = q.stored_rows(box)
            stored, study_of, objects = {}, {}, []
            for sop, row in rows.items():
                path = box.object_path(row["sha256"])
                objects.append(path)
                stored[sop] = (row["transfer_syntax"], q.sha(q.dataset_bytes(path)))
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                study_of[sop] = str(ds.StudyInstanceUID)
            # control: the stored objects, sent unchanged, straight into the control Orthanc
            sent = q.store_files(control.dicom_port, objects, called="CONTROL",
                                 require_success=False)
            refused = {}
            for path, status in sent.items():
                meta, _, _ = read_meta(path)
                if status != 0:
                    refused[q.meta_uid(meta, 3)] = status
            control_hash = {sop: h for sop, (_ts, h) in control.datasets().items()}
            yield Env(box, orthanc, control, stored, control_hash, refused,
                      set(study_of.values()), study_of)
        finally:
            orthanc.stop()
            control.stop()


def answers_of(env: Env, query_path: str) -> list[dict]:
    n = len(env.orthanc.get(f"{query_path}/answers"))
    return [env.orthanc.get(f"{query_path}/answers/{k}/content?simplify") for k in range(n)]


def orthanc_query(env: Env) -> tuple[str, list[dict]]:
    status, r = env.orthanc.post("/modalities/cairn/query",
                                 {"Level": "Study", "Query": {"PatientName": "*"}})
    assert status == 200, f"Orthanc C-FIND to the box failed: {status} {r}\n" \
                          f"{env.orthanc.log_tail()}"
    return r["Path"], answers_of(env, r["Path"])


def check_holdings(env: Env, holdings: dict[str, tuple[str, str]], sops: set[str],
                   what: str) -> None:
    problems = []
    for sop in sorted(sops):
        if sop in env.control_refused:
            continue
        if sop not in holdings:
            problems.append(f"{sop}: not in Orthanc")
            continue
        ts, h = holdings[sop]
        stored_ts, stored_h = env.stored[sop]
        if h == stored_h:
            continue
        ctl = env.control_hash.get(sop)
        if ctl is not None and ctl != stored_h and h == ctl:
            continue  # Orthanc re-encodes this object whoever sends it
        problems.append(
            f"{sop}: Orthanc holds data set {h[:12]} ({ts}); box stored {stored_h[:12]} "
            f"({stored_ts}); control Orthanc made {str(ctl)[:12]} of the stored bytes")
    assert not problems, (f"{what}: {len(problems)} of {len(sops)} instances differ\n"
                          + "\n".join(problems)
                          + f"\n(control Orthanc refused: {env.control_refused})")


def test_orthanc_query_lists_every_study(env):
    _, answers = orthanc_query(env)
    got = [a.get("StudyInstanceUID") for a in answers]
    assert None not in got, f"an answer without StudyInstanceUID: {answers}"
    assert len(got) == len(set(got)), f"duplicate study answers: {sorted(got)}"
    assert set(got) == env.studies, (
        f"Orthanc's C-FIND answers {len(got)} studies, the box holds {len(env.studies)}; "
        f"missing {sorted(env.studies - set(got))} extra {sorted(set(got) - env.studies)}")
    for a in answers:
        assert a.get("RetrieveAETitle") == "CAIRN", f"RetrieveAETitle in {a}"


def test_orthanc_retrieves_every_study(env):
    path, answers = orthanc_query(env)
    failures = []
    for k, a in enumerate(answers):
        study = a["StudyInstanceUID"]
        t0 = time.monotonic()
        status, r = env.orthanc.post(f"{path}/answers/{k}/retrieve",
                                     {"TargetAet": "ORTHANC", "Synchronous": True})
        elapsed = time.monotonic() - t0
        refused_here = [s for s, st in env.study_of.items()
                        if st == study and s in env.control_refused]
        if status != 200 and not refused_here:
            failures.append(f"study {study}: HTTP {status} after {elapsed:.1f}s: {r}")
    holdings = env.orthanc.datasets()
    extra = set(holdings) - set(env.stored)
    assert not extra, f"Orthanc holds instances the box does not: {sorted(extra)}"
    try:
        check_holdings(env, holdings, set(env.stored), "C-MOVE of every study to Orthanc")
    finally:
        assert not failures, "C-MOVE retrieves failed:\n" + "\n".join(failures) + \
            f"\n{env.orthanc.log_tail(15)}\n--- box ---\n{env.box.log_tail(15)}"


def test_movescu_moves_study_to_orthanc(env):
    # CT_small.dcm's study: one plain Explicit VR LE image every PACS stores unchanged
    ct = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    study = str(ct.StudyInstanceUID)
    sops = {s for s, st in env.study_of.items() if st == study}
    assert sops, "the box does not hold CT_small's study"
    status, found = env.orthanc.post("/tools/lookup", study.encode())
    for hit in found if status == 200 else []:
        if hit.get("Type") == "Study":
            assert env.orthanc.delete(f"/studies/{hit['ID']}") == 200
    held = env.orthanc.datasets()
    assert not sops & set(held), "study still in Orthanc after DELETE"
    rc, final, log, elapsed = q.movescu(env.box.port, ["QueryRetrieveLevel=STUDY",
                                                       f"StudyInstanceUID={study}"], "ORTHANC")
    assert rc == 0 and final == 0x0000, \
        f"movescu to ORTHANC: rc={rc} final={final if final is None else hex(final)}\n" \
        f"{log[-2500:]}"
    check_holdings(env, env.orthanc.datasets(), sops, "movescu -aem ORTHANC")
