"""Who may associate, and what the A-ASSOCIATE-RJ says when they may not (interface.md)."""

from __future__ import annotations

import time

import pytest

import dicomwire as w
from harness import TEST_FILES, meta_uid, read_meta

PEERS = [
    {"ae": "TESTSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "MODALITY", "host": "127.0.0.1", "port": 104, "store": True, "query": False,
     "retrieve": False},
    {"ae": "VIEWER", "host": "127.0.0.1", "port": 104, "store": False, "query": True,
     "retrieve": True},
]

CT_FILE = TEST_FILES / "CT_small.dcm"
EXPL = w.EXPLICIT_LE


def last_seq(c) -> int:
    rows = c.query("SELECT max(seq) FROM audit")
    return rows[0][0] or 0


def wait_audit(c, after_seq: int, needles: list[str], timeout: float = 5.0) -> list[dict]:
    """New audit rows (seq > after_seq), waiting until one mentions any of `needles`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in c.audit_rows() if r["seq"] > after_seq]
        hits = [r for r in rows if any(n in " ".join(str(v) for v in r.values())
                                       for n in needles)]
        if hits or time.monotonic() > deadline:
            assert hits, f"no audit row after seq {after_seq} mentioning {needles}; new: {rows}"
            return hits
        time.sleep(0.1)


def rq_outcome(c, called, calling, contexts) -> w.Outcome:
    with w.Wire(c.port) as conn:
        conn.send(w.assoc_rq(called, calling, contexts))
        return conn.outcome(10)


def assert_rj(out: w.Outcome, result: int, source: int, reason: int) -> None:
    assert out.kind == "rj", f"expected A-ASSOCIATE-RJ {result}/{source}/{reason}, got {out}"
    assert (out.result, out.source, out.reason) == (result, source, reason), str(out)


@pytest.mark.cairn(peers=PEERS)
def test_wrong_called_ae_rejected_1_1_7(cairn):
    seq = last_seq(cairn)
    out = rq_outcome(cairn, "NOTCAIRN", "TESTSCU", [(1, w.VERIFICATION, [w.IMPLICIT_LE])])
    assert_rj(out, 1, 1, 7)
    wait_audit(cairn, seq, ["NOTCAIRN", "TESTSCU"])
    cairn.assert_serving()


@pytest.mark.cairn(peers=PEERS)
def test_rejection_seen_as_rejection_by_pynetdicom(cairn):
    """After A-ASSOCIATE-RJ the acceptor waits (Sta13, ARTIM) for the requestor to close the
    connection (PS3.8 9.2, AE-8). If it closes at once, pynetdicom can see the close before
    the RJ and reports an abort instead of a rejection: repeat to catch that race."""
    seen = {}
    for _ in range(50):
        assoc = cairn.associate([(w.VERIFICATION, [w.IMPLICIT_LE])], called="NOTCAIRN")
        key = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "other"
        seen[key] = seen.get(key, 0) + 1
    assert seen == {"rejected": 50}, f"pynetdicom saw {seen} for 50 rejected associations"


@pytest.mark.cairn(peers=PEERS, accept_unknown_peers=False)
def test_unknown_calling_ae_rejected_1_1_3(cairn):
    seq = last_seq(cairn)
    out = rq_outcome(cairn, "CAIRN", "STRANGER", [(1, w.VERIFICATION, [w.IMPLICIT_LE])])
    assert_rj(out, 1, 1, 3)
    wait_audit(cairn, seq, ["STRANGER"])
    cairn.assert_serving()


@pytest.mark.cairn(peers=PEERS, accept_unknown_peers=True)
def test_unknown_calling_ae_accepted_when_configured(cairn):
    with w.Wire(cairn.port) as conn:
        ctx = conn.associate([(1, w.VERIFICATION, [w.IMPLICIT_LE])], calling="STRANGER")
        assert 1 in ctx
        conn.send_message(1, w.c_echo_rq())
        out = conn.outcome(10)
        assert out.kind == "status" and out.status == 0x0000, str(out)
        assert conn.release().kind == "release_rp"


@pytest.mark.cairn(peers=PEERS)
def test_peer_without_store_right_proposing_only_storage_rejected_1_1_1(cairn):
    seq = last_seq(cairn)
    out = rq_outcome(cairn, "CAIRN", "VIEWER", [(1, w.CT_STORAGE, [EXPL]),
                                                (3, w.MR_STORAGE, [EXPL])])
    assert_rj(out, 1, 1, 1)
    wait_audit(cairn, seq, ["VIEWER"])
    assert cairn.instance_count() == 0
    cairn.assert_serving()


@pytest.mark.cairn(peers=PEERS)
def test_peer_without_store_right_may_echo_but_not_store(cairn):
    meta, _, _ = read_meta(CT_FILE)
    assoc = cairn.associate([(w.VERIFICATION, [w.IMPLICIT_LE]),
                             (meta_uid(meta, 2), [meta_uid(meta, 0x10)])], calling="VIEWER")
    assert assoc.is_established, "C-ECHO must be allowed to an accepted association"
    try:
        st = assoc.send_c_echo()
        assert st.Status == 0x0000
        try:
            rsp = assoc.send_c_store(CT_FILE)
        except ValueError:
            pass  # the storage context was not accepted: fine
        else:
            assert rsp.Status == 0x0124, f"store by a peer without right: 0x{rsp.Status:04X}"
    finally:
        if assoc.is_established:
            assoc.release()
    assert cairn.instance_count() == 0
    assert cairn.object_files() == []


@pytest.mark.cairn(peers=PEERS)
def test_peer_with_store_right_can_store(cairn):
    meta, _, _ = read_meta(CT_FILE)
    assoc = cairn.associate([(meta_uid(meta, 2), [meta_uid(meta, 0x10)])], calling="MODALITY")
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(CT_FILE)
        assert rsp.Status == 0x0000
    finally:
        assoc.release()
    row = cairn.current_row(meta_uid(meta, 3))
    assert row is not None and row["source_ae"] == "MODALITY"


@pytest.mark.cairn(peers=PEERS, max_associations=2)
def test_over_max_associations_rejected_2_3_1(cairn):
    held = []
    try:
        for _ in range(2):
            a = cairn.associate([(w.VERIFICATION, [w.IMPLICIT_LE])])
            assert a.is_established
            held.append(a)
        seq = last_seq(cairn)
        out = rq_outcome(cairn, "CAIRN", "ECHOSCU", [(1, w.VERIFICATION, [w.IMPLICIT_LE])])
        assert_rj(out, 2, 3, 1)
        wait_audit(cairn, seq, ["ECHOSCU"])
        # the held ones still work
        for a in held:
            assert a.send_c_echo().Status == 0x0000
    finally:
        for a in held:
            if a.is_established:
                a.release()
    # slots are given back
    deadline = time.monotonic() + 5
    while True:
        r = cairn.echo()
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.cairn(peers=PEERS)
def test_association_audited(cairn):
    seq = last_seq(cairn)
    assert cairn.echo(calling="ECHOSCU").returncode == 0
    wait_audit(cairn, seq, ["ECHOSCU"])
