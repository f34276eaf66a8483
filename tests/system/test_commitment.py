"""Storage commitment, push model, with pynetdicom as the requester.

The box says "committed" only for an instance on the hot store with a verified copy on a cold
volume; it never says so for one that is only on disk, and an unknown UID is in the failure list
with reason 0x0112. The answer (N-EVENT-REPORT) comes on the requesting association while it is
open, otherwise on a new association to the requester's AE from dicom.peers, where the box
proposes the class with role selection and acts as SCP. A pending request is kept in cairn.db
and survives a restart.
"""

from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from archivelib import ArchiveCairn, send
from datagen import make_instances
from harness import finish, free_port

COMMIT_AE = "COMMITSCU"
INSTANCE = "1.2.840.10008.1.20.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def box(tmp_path):
    commit_port = free_port()
    peers = [
        {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, "store": True},
        {"ae": COMMIT_AE, "host": "127.0.0.1", "port": commit_port, "store": True},
    ]
    c = ArchiveCairn(tmp_path / "box", targets=("tape",), peers=peers)
    c.commit_port = commit_port
    c.tape.insert_blank("TAPE01", capacity=1 << 30)
    c.insts = make_instances(tmp_path / "send", 6, seed=f"commit-{tmp_path.name}")
    yield c
    finish(c)


def start(c: ArchiveCairn, timeout_secs: int) -> None:
    c.config["dicom"]["commitment_timeout_secs"] = timeout_secs
    c.write_config()
    c.start()


def request(pairs) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    refs = []
    for cls, sop in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = sop
        refs.append(item)
    ds.ReferencedSOPSequence = refs
    return ds


class Reports:
    """N-EVENT-REPORTs received, from either association."""

    def __init__(self):
        self.items: list[tuple[int, Dataset, str]] = []
        self.cond = threading.Condition()

    def handler(self, where: str):
        def on_report(event):
            with self.cond:
                self.items.append((event.event_type, event.event_information, where))
                self.cond.notify_all()
            return 0x0000, None
        return on_report

    def wait(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.items) >= n, timeout)


def requester(c: ArchiveCairn, reports: Reports):
    ae = AE(ae_title=COMMIT_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", c.port, ae_title=c.ae,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler("same"))])
    assert assoc.is_established, "association for storage commitment rejected"
    return assoc


def listener(c: ArchiveCairn, reports: Reports):
    """The requester's own SCP, where the box calls back on a new association."""
    scp = AE(ae_title=COMMIT_AE)
    scp.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    return scp.start_server(("127.0.0.1", c.commit_port), block=False,
                            evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler("new"))])


def action(assoc, ds: Dataset, action_type: int = 1) -> int:
    status, _ = assoc.send_n_action(ds, action_type, StorageCommitmentPushModel, INSTANCE)
    assert status is not None, "no N-ACTION-RSP"
    return int(status.Status)


def outcome(info: Dataset) -> tuple[set[str], dict[str, int]]:
    ok = {it.ReferencedSOPInstanceUID for it in info.get("ReferencedSOPSequence", [])}
    failed = {it.ReferencedSOPInstanceUID: int(it.FailureReason)
              for it in info.get("FailedSOPSequence", [])}
    return ok, failed


def request_rows(c: ArchiveCairn, txn: str) -> list:
    return c.query("SELECT state, event_type FROM commitment_requests WHERE transaction_uid = ?",
                   (txn,))


def audit_actions(c: ArchiveCairn, txn: str) -> list[str]:
    return [r[0] for r in c.query("SELECT action FROM audit WHERE object = ? ORDER BY seq",
                                  (txn,))]


def test_unknown_uids_fail_at_once_on_the_same_association(box):
    start(box, timeout_secs=3600)
    reports = Reports()
    assoc = requester(box, reports)
    try:
        unknown = [generate_uid() for _ in range(3)]
        ds = request([(CT, u) for u in unknown])
        assert action(assoc, ds) == 0x0000
        assert reports.wait(1, 20), "no N-EVENT-REPORT for a request with only unknown UIDs"
    finally:
        assoc.release()
    etype, info, where = reports.items[0]
    assert (etype, where) == (2, "same")
    assert info.TransactionUID == ds.TransactionUID
    ok, failed = outcome(info)
    assert ok == set() and failed == {u: 0x0112 for u in unknown}
    assert request_rows(box, ds.TransactionUID) == [("reported", 2)]
    assert audit_actions(box, ds.TransactionUID) == ["commitment-request", "commitment-report"]


def test_stored_but_unverified_is_never_success(box):
    """Three instances on the hot store, none archived: no report before the timeout, then a
    report listing them as failed (0x0110) and the unknown UID as 0x0112."""
    start(box, timeout_secs=6)
    stored = box.insts[:3]
    send(box, [i.path for i in stored])
    unknown = generate_uid()
    reports = Reports()
    assoc = requester(box, reports)
    try:
        ds = request([(i.sop_class, i.sop_uid) for i in stored] + [(CT, unknown)])
        t0 = time.monotonic()
        assert action(assoc, ds) == 0x0000
        assert not reports.wait(1, 2), "a report came before any instance could be verified"
        assert request_rows(box, ds.TransactionUID) == [("pending", None)]
        assert reports.wait(1, 9), "no report after the commitment timeout"
        assert time.monotonic() - t0 >= 5, "reported before the configured timeout"
    finally:
        assoc.release()
    etype, info, where = reports.items[0]
    ok, failed = outcome(info)
    assert (etype, where) == (2, "same")
    assert ok == set(), f"committed without a verified cold copy: {ok}"
    assert failed == {**{i.sop_uid: 0x0110 for i in stored}, unknown: 0x0112}
    assert box.query("SELECT count(*) FROM copies")[0][0] == 0


def test_archived_instances_succeed_on_the_same_association(box):
    start(box, timeout_secs=3600)
    insts = box.insts[:4]
    send(box, [i.path for i in insts])
    box.flush()
    reports = Reports()
    assoc = requester(box, reports)
    try:
        ds = request([(i.sop_class, i.sop_uid) for i in insts])
        assert action(assoc, ds) == 0x0000
        assert reports.wait(1, 20), "no N-EVENT-REPORT for archived instances"
    finally:
        assoc.release()
    etype, info, where = reports.items[0]
    ok, failed = outcome(info)
    assert (etype, where) == (1, "same"), f"event {etype} on {where}, failed {failed}"
    assert ok == {i.sop_uid for i in insts} and failed == {}
    assert request_rows(box, ds.TransactionUID) == [("reported", 1)]


def test_pending_request_survives_a_restart_and_is_answered_on_a_new_association(box):
    """The requester leaves right after N-ACTION-RSP; the box restarts; once the instances are
    archived and verified it calls the requester's AE back and reports success."""
    start(box, timeout_secs=3600)
    insts = box.insts[:5]
    send(box, [i.path for i in insts])
    reports = Reports()
    assoc = requester(box, reports)
    ds = request([(i.sop_class, i.sop_uid) for i in insts] + [(CT, generate_uid())])
    try:
        assert action(assoc, ds) == 0x0000
    finally:
        assoc.release()
    assert reports.items == [], "reported before the instances were archived"
    assert request_rows(box, ds.TransactionUID) == [("pending", None)]
    box.restart()
    server = listener(box, reports)
    try:
        box.flush()
        assert reports.wait(1, 30), "no N-EVENT-REPORT on a new association after archiving"
        time.sleep(0.5)
    finally:
        server.shutdown()
    assert len(reports.items) == 1, f"{len(reports.items)} reports"
    etype, info, where = reports.items[0]
    ok, failed = outcome(info)
    assert (etype, where) == (2, "new")
    assert info.TransactionUID == ds.TransactionUID
    assert ok == {i.sop_uid for i in insts}
    assert list(failed.values()) == [0x0112]
    deadline = time.monotonic() + 10
    while request_rows(box, ds.TransactionUID) != [("reported", 2)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert request_rows(box, ds.TransactionUID) == [("reported", 2)]


def test_bad_requests_are_refused_and_audited(box):
    start(box, timeout_secs=3600)
    reports = Reports()
    assoc = requester(box, reports)
    try:
        ds = request([(CT, generate_uid())])
        assert action(assoc, ds, action_type=2) == 0x0123, "action type 2 accepted"
        no_refs = Dataset()
        no_refs.TransactionUID = generate_uid()
        assert action(assoc, no_refs) == 0x0120, "a request without Referenced SOP Sequence"
        bad_uid = request([(CT, "1.2.abc")])
        assert action(assoc, bad_uid) == 0x0110, "a malformed UID accepted"
        # the association is still usable
        assert action(assoc, request([(CT, generate_uid())])) == 0x0000
        assert reports.wait(1, 20)
    finally:
        assoc.release()
    assert len(box.query("SELECT id FROM commitment_requests")) == 1
    refused = box.query("SELECT count(*) FROM audit WHERE action = 'commitment-refuse'")[0][0]
    assert refused == 3
