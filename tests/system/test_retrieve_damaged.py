"""A missing or damaged stored file found by a retrieve, on the demo box
(`cairnd demo`: the monitor and its alarm run).

One object file of a study is deleted and another has one byte changed. A C-GET of the study
delivers the intact instances; the two others are failed sub-operations listed in the final
response's Failed SOP Instance UID List and named in the box's log; the association is released
cleanly (DCMTK getscu, which used to end in "C-GET sub-operation: No such file or directory" and
an aborted association). The alarm's latched `object-damaged` event names the study at once
(`cairnctl alarm status --json`), the overview no longer says "All good", and the audit trail
has an `object-damaged` row per file.
"""

from __future__ import annotations

import json
import sqlite3
import time

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import qrlib as q
from harness import dataset_bytes, free_port, managed
from test_demo import Demo
from test_medium_alarm import http, panel_login
from test_raid_alarm import alarm, wait_for, wait_status


def rows(d, sql, args=()):
    con = sqlite3.connect(f"file:{d / 'cairn.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def object_path(d, sha):
    return d / "objects" / sha[:2] / sha[2:4] / f"{sha}.dcm"


def test_missing_and_damaged_files_fail_alone_and_raise_the_alarm(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    study = q.uid("retrieve-damaged", "study")
    files = q.tiny_instances(tmp_path / "send", 5, "retrieve-damaged", study_uid=study,
                             patient_id="DMG-1", pixel_rows=64)
    sops = [sop for _, sop in files]
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        url, cookie = panel_login(demo)
        q.storescu(port, [p for p, _ in files])
        sha = dict(rows(d, "SELECT sop_instance_uid, sha256 FROM instances"))
        assert set(sops) <= set(sha), "not every instance was stored"
        assert not [e for e in alarm(d)["events"] if e["kind"] == "object-damaged"]
        seq = rows(d, "SELECT coalesce(max(seq), 0) FROM audit")[0][0]

        missing, damaged = sops[1], sops[3]
        object_path(d, sha[missing]).unlink()
        p = object_path(d, sha[damaged])
        body = bytearray(p.read_bytes())
        body[-100] ^= 0xFF  # one pixel byte: the file still parses, its hash differs
        p.write_bytes(bytes(body))
        intact = [s for s in sops if s not in (missing, damaged)]

        # DCMTK getscu: the intact ones arrive unchanged, the release is clean
        out = tmp_path / "got"
        rc, status, log = q.getscu(port, ["QueryRetrieveLevel=STUDY",
                                          f"StudyInstanceUID={study}"], out)
        assert rc == 0 and "Release Failed" not in log and "Abort" not in log, \
            f"getscu rc={rc}\n{log[-3000:]}"
        assert status == 0xB000, f"getscu final {status}\n{log[-3000:]}"
        got = q.part10_datasets(out)
        for s, (path, _) in zip(sops, files):
            if s in intact:
                assert got.get(s, (None, None))[1] == dataset_bytes(path), f"{s} not intact"
        assert missing not in got

        # pynetdicom reads the final identifier: both are listed as failed
        r = q.pn_get(port, q.query("STUDY", StudyInstanceUID=study), calling="ANYONE",
                     storage={q.SC_IMAGE: [ExplicitVRLittleEndian]})
        assert r.final_status == 0xB000, f"final 0x{r.final_status:04X}"
        assert sorted(r.failed_uids()) == sorted([missing, damaged]), r.failed_uids()
        assert r.count("NumberOfCompletedSuboperations") == len(intact)
        assert {x.sop_uid for x in r.received} >= set(intact)

        # a requester that needs a conversion: the damaged file is refused before it is sent
        r = q.pn_get(port, q.query("STUDY", StudyInstanceUID=study), calling="ANYONE",
                     storage={q.SC_IMAGE: [ImplicitVRLittleEndian]})
        assert r.final_status == 0xB000
        assert sorted(r.failed_uids()) == sorted([missing, damaged]), r.failed_uids()
        assert {x.sop_uid for x in r.received} == set(intact)

        # the alarm names the study, once, at once
        events = wait_for(
            lambda: [e for e in alarm(d)["events"] if e["kind"] == "object-damaged"],
            5, "an object-damaged alarm event")
        assert len(events) == 1, events
        assert events[0]["study"] == study and study in events[0]["message"], events[0]
        assert alarm(d)["sounding"]

        # the overview says so
        status_code, _, body = http(url, "/api/v1/status", cookie=cookie)
        assert status_code == 200, body
        health = json.loads(body)["health"]
        assert health["headline"] != "All good" and study in health["headline"], health

        # audit: one row per damaged file, naming the study and the problem
        audit = rows(d, "SELECT action, object, detail FROM audit WHERE seq > ? "
                        "AND action = 'object-damaged'", (seq,))
        by_sop = {json.loads(det)["sop_instance_uid"]: (obj, json.loads(det))
                  for _, obj, det in audit}
        assert set(by_sop) == {missing, damaged}, audit
        assert by_sop[missing][0] == study and by_sop[missing][1]["problem"] == "missing"
        assert by_sop[damaged][1]["problem"] == "hash-mismatch"
        raised = rows(d, "SELECT detail FROM audit WHERE seq > ? AND action = 'alarm-raise'",
                      (seq,))
        assert any(json.loads(x)["kind"] == "object-damaged" for (x,) in raised), raised
    finally:
        rc = demo.stop()
    assert rc == 0, f"demo exited {rc}"
    # the event stays latched in alarm.json after the box stops
    events = [e for e in alarm(d)["events"] if e["kind"] == "object-damaged"]
    assert [e["study"] for e in events] == [study]


def test_missing_file_without_an_alarm_is_logged_and_audited(tmp_path):
    """A box without a board (no monitor, no alarm): the C-GET still goes on past the missing
    file, the log names it by UID (no patient data), the audit has the row."""
    study = q.uid("retrieve-missing", "study")
    files = q.tiny_instances(tmp_path / "send", 3, "retrieve-missing", study_uid=study,
                             patient_id="DMG-2")
    with managed(tmp_path / "box") as c:
        q.storescu(c.port, [p for p, _ in files])
        rows_ = q.stored_rows(c)
        missing = files[0][1]
        c.object_path(rows_[missing]["sha256"]).unlink()
        out = tmp_path / "got"
        rc, status, log = q.getscu(c.port, ["QueryRetrieveLevel=STUDY",
                                            f"StudyInstanceUID={study}"], out)
        assert rc == 0 and status == 0xB000 and "Release Failed" not in log, \
            f"getscu rc={rc} final={status}\n{log[-3000:]}"
        assert set(q.part10_datasets(out)) == {s for _, s in files[1:]}
        rows2 = q.audit_after(c, 0, "object-damaged")
        assert len(rows2) == 1 and rows2[0]["detail_json"]["sop_instance_uid"] == missing
        assert rows2[0]["object"] == study
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = c.log_path.read_text(errors="replace")
            if missing in text:
                break
            time.sleep(0.1)
        lines = [ln for ln in text.splitlines() if missing in ln]
        assert lines and any("missing" in ln for ln in lines), c.log_tail()
        assert not any("TINY^MANY" in ln or "DMG-2" in ln for ln in text.splitlines()), \
            "patient data in the log"
        c.assert_serving()
