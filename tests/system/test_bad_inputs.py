"""The CVE-derived bad-input list: malformed input modelled on published DICOM parser flaws,
numbered as in that list (1-7 and 9-11; the sections below keep the numbers).

A raw-socket "parrot" sends hand-built PDUs. Each bad input must be answered within the ARTIM
time by a refusal -- A-ABORT, A-ASSOCIATE-RJ, a failure C-STORE status, or a closed
connection, narrowed per case to what docs/interface.md promises -- after which the daemon
still answers C-ECHO and nothing was written: no object file, no instances row, empty spool.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

import dicomwire as w
from datagen import uid
from harness import managed, proc_status_kib

MAX_PDU = 16384
MAX_OBJECT = 1024 * 1024
REFUSED_RQ = {"abort", "rj", "close"}        # a bad A-ASSOCIATE-RQ / pre-association input
ABORT = {"abort"}                            # interface.md: A-ABORT
STALL = {"abort", "close"}                   # timer expiry


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_inputs")
    with managed(base, max_pdu_bytes=MAX_PDU, max_object_bytes=MAX_OBJECT) as c:
        yield c


class Guard:
    """Snapshot of the store before a bad input; check() after it."""

    def __init__(self, daemon):
        self.d = daemon
        self.files = set(daemon.object_files())
        self.rows = daemon.instance_count()

    def check(self, allow_new: int = 0) -> None:
        d = self.d
        assert d.running, f"cairnd died: rc={d.proc.returncode}\n{d.log_tail()}"
        assert d.wait_spool_empty(5) == [], f"spool not empty: {d.spool_files()}"
        new = set(d.object_files()) - self.files
        assert len(new) == allow_new, f"object files written: {sorted(new)}"
        assert d.instance_count() == self.rows + allow_new, "instances rows written"
        d.assert_serving()


@pytest.fixture
def guard(daemon):
    return Guard(daemon)


def limit(d) -> float:
    return d.artim + 3


def expect(out: w.Outcome, kinds: set[str], what: str) -> None:
    print(f"\n  {what}: {out}")
    assert out.kind in kinds, f"{what}: expected one of {sorted(kinds)}, got {out}"


def associated(d, contexts=None) -> tuple[w.Wire, dict]:
    conn = w.Wire(d.port)
    ctx = conn.associate(contexts or [(1, w.CT_STORAGE, [w.EXPLICIT_LE]),
                                      (3, w.VERIFICATION, [w.IMPLICIT_LE])])
    return conn, ctx


# ------------------------------------------------------------------------------------------
# 1. PDU length beyond the negotiated maximum
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 0x01000000])
def test_1_rq_claims_huge_length(daemon, guard, length):
    good = w.assoc_rq()
    with w.Wire(daemon.port) as conn:
        conn.send(struct.pack(">BBI", 1, 0, length) + good[6:])
        out = conn.outcome(limit(daemon))
        expect(out, REFUSED_RQ, f"A-ASSOCIATE-RQ claiming {length:#x} bytes")
    rss = proc_status_kib(daemon.pid, "VmHWM")
    assert rss < 100 * 1024, f"cairnd peak RSS {rss} KiB after a {length:#x}-byte claim"
    guard.check()


@pytest.mark.parametrize("excess", [1, 100_000, 0xFFFFFFFF - MAX_PDU])
def test_1_pdata_longer_than_max_pdu(daemon, guard, excess):
    conn, ctx = associated(daemon)
    with conn:
        body = w.pdv(1, w.c_store_rq(w.CT_STORAGE, "1.2.3.4"), command=True, last=True)
        conn.send(struct.pack(">BBI", 4, 0, MAX_PDU + excess) + body + b"\0" * 1000)
        out = conn.outcome(limit(daemon))
        expect(out, ABORT, f"P-DATA-TF of {MAX_PDU + excess} bytes > max {MAX_PDU}")
    assert proc_status_kib(daemon.pid, "VmHWM") < 100 * 1024
    guard.check()


# ------------------------------------------------------------------------------------------
# 2. Lengths that disagree, zero-length items, truncation and stalls
# ------------------------------------------------------------------------------------------

def test_2_rq_pdu_length_shorter_than_items(daemon, guard):
    good = w.assoc_rq()
    with w.Wire(daemon.port) as conn:
        conn.send(struct.pack(">BBI", 1, 0, 68 + 10) + good[6:])
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "RQ whose items run past its length")
    guard.check()


def test_2_rq_item_length_past_pdu_end(daemon, guard):
    items = w.app_context_item() + w.item(0x20, struct.pack(">BBBB", 1, 0, 0, 0)
                                          + w.item(0x30, w.VERIFICATION.encode()), length=0xFFF0)
    with w.Wire(daemon.port) as conn:
        conn.send(w.pdu(1, w.assoc_rq_body("CAIRN", "TESTSCU", items + w.user_info_item())))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "presentation item longer than PDU")
    guard.check()


def test_2_rq_zero_length_pdu(daemon, guard):
    with w.Wire(daemon.port) as conn:
        conn.send(w.pdu(1, b""))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "A-ASSOCIATE-RQ of length 0")
    guard.check()


def test_2_rq_zero_length_presentation_context_item(daemon, guard):
    items = w.app_context_item() + w.item(0x20, b"") + w.user_info_item()
    with w.Wire(daemon.port) as conn:
        conn.send(w.pdu(1, w.assoc_rq_body("CAIRN", "TESTSCU", items)))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "zero-length presentation context")
    guard.check()


def test_2_rq_zero_length_application_context(daemon, guard):
    items = (w.item(0x10, b"") + w.pres_context_item(1, w.VERIFICATION, [w.IMPLICIT_LE])
             + w.user_info_item())
    with w.Wire(daemon.port) as conn:
        conn.send(w.pdu(1, w.assoc_rq_body("CAIRN", "TESTSCU", items)))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "zero-length application context")
    guard.check()


def test_2_truncated_header_then_stall(daemon, guard):
    with w.Wire(daemon.port) as conn:
        conn.send(b"\x01\x00\x00")
        out = conn.outcome(limit(daemon))
        expect(out, STALL, "3 header bytes then silence")
        assert out.elapsed >= daemon.artim - 1, f"closed before ARTIM: {out}"
    guard.check()


def test_2_connect_and_say_nothing(daemon, guard):
    with w.Wire(daemon.port) as conn:
        expect(conn.outcome(limit(daemon)), STALL, "silent connection")
    guard.check()


def test_2_slowloris_rq(daemon, guard):
    """A valid RQ trickled one byte every 0.25 s must be cut off by ARTIM, not wait forever."""
    data = w.assoc_rq()
    with w.Wire(daemon.port) as conn:
        result = None
        for b in data:
            if not conn.send(bytes([b])):
                break
            conn.sock.settimeout(0.25)
            try:
                got = conn.sock.recv(6)
            except socket.timeout:
                got = None
            except (ConnectionResetError, ConnectionAbortedError):
                got = b""
            if got is not None:
                result = "close" if got == b"" else f"pdu 0x{got[0]:02x}"
                break
            if time.monotonic() - conn.t0 > daemon.artim + 4:
                break
        elapsed = time.monotonic() - conn.t0
        if result is None:
            out = conn.outcome(0.5)
            result = out.kind
        assert result in ("close", "pdu 0x07", "abort"), f"slow RQ: {result}"
        assert elapsed <= daemon.artim + 3, f"slow RQ allowed {elapsed:.1f}s (> ARTIM)"
    guard.check()


def test_2_partial_pdata_then_stall(daemon, guard):
    conn, _ = associated(daemon)
    with conn:
        conn.send(struct.pack(">BBI", 4, 0, 1000) + b"\0" * 100)
        out = conn.outcome(limit(daemon))
        expect(out, STALL, "partial P-DATA-TF then silence")
    guard.check()


def test_2_idle_association_aborted_after_idle_timeout(daemon, guard):
    idle = daemon.config["dicom"]["idle_timeout_secs"]
    conn, _ = associated(daemon)
    with conn:
        out = conn.outcome(idle + 4)
        expect(out, STALL, "idle association")
        assert out.elapsed >= idle - 1, f"idle association dropped early: {out}"
    guard.check()


# ------------------------------------------------------------------------------------------
# 3. Thousands of presentation contexts; repeated or contradictory user items
# ------------------------------------------------------------------------------------------

def test_3_thousands_of_presentation_contexts(daemon, guard):
    contexts = [((i * 2) % 256 + 1, w.CT_STORAGE, [w.EXPLICIT_LE]) for i in range(3000)]
    with w.Wire(daemon.port) as conn:
        conn.send(w.assoc_rq(contexts=contexts))
        out = conn.outcome(limit(daemon))
        expect(out, REFUSED_RQ, "3000 presentation contexts (ids repeat)")
    guard.check()


def test_3_contradictory_max_length_items(daemon, guard):
    extra = w.max_length_item(0)
    with w.Wire(daemon.port) as conn:
        conn.send(w.assoc_rq(max_len=16384, user_extra=extra))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "two maximum length items (16384, 0)")
    guard.check()


def test_3_duplicate_user_identity(daemon, guard):
    extra = w.user_identity_item(b"alice") + w.user_identity_item(b"A" * 65000)
    with w.Wire(daemon.port) as conn:
        conn.send(w.assoc_rq(user_extra=extra))
        expect(conn.outcome(limit(daemon)), REFUSED_RQ, "duplicate user identity (one 64 KB)")
    guard.check()


# ------------------------------------------------------------------------------------------
# 4. PDUs that are wrong for the state
# ------------------------------------------------------------------------------------------

def test_4_pdata_before_association(daemon, guard):
    with w.Wire(daemon.port) as conn:
        conn.send(w.p_data(w.pdv(1, w.c_echo_rq(), command=True, last=True)))
        expect(conn.outcome(limit(daemon)), {"abort", "close"}, "P-DATA-TF as first PDU")
    guard.check()


def test_4_associate_ac_from_requestor(daemon, guard):
    rq = w.assoc_rq()
    with w.Wire(daemon.port) as conn:
        conn.send(bytes([0x02]) + rq[1:])
        expect(conn.outcome(limit(daemon)), {"abort", "close"}, "A-ASSOCIATE-AC as first PDU")
    guard.check()


def test_4_second_associate_rq(daemon, guard):
    conn, _ = associated(daemon)
    with conn:
        conn.send(w.assoc_rq())
        expect(conn.outcome(limit(daemon)), ABORT, "second A-ASSOCIATE-RQ")
    guard.check()


@pytest.mark.parametrize("ptype", [0x03, 0x08, 0xFF])
def test_4_unknown_or_wrong_pdu_type_after_association(daemon, guard, ptype):
    conn, _ = associated(daemon)
    with conn:
        conn.send(w.pdu(ptype, b"\0\0\x01\x01"))
        expect(conn.outcome(limit(daemon)), ABORT, f"PDU type 0x{ptype:02X} in Sta6")
    guard.check()


def test_4_release_mid_message(daemon, guard):
    conn, _ = associated(daemon)
    with conn:
        sop = uid("bad4", "release")
        ds = w.minimal_dataset(w.CT_STORAGE, sop)
        conn.send(w.p_data(w.pdv(1, w.c_store_rq(w.CT_STORAGE, sop), command=True, last=True)))
        conn.send(w.p_data(w.pdv(1, ds, command=False, last=False)))
        conn.send(w.release_rq())
        out = conn.outcome(limit(daemon))
        expect(out, {"abort", "close", "release_rp"}, "A-RELEASE-RQ inside a C-STORE")
    guard.check()


# ------------------------------------------------------------------------------------------
# 5. Fragments beyond the per-object cap; never-ending message
# ------------------------------------------------------------------------------------------

def test_5_fragments_exceed_object_cap(daemon, guard):
    sop = uid("bad5", "cap")
    pixels = MAX_OBJECT + 64 * 1024
    ds = (w.minimal_dataset(w.CT_STORAGE, sop)
          + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels) + b"\x55" * pixels)
    conn, _ = associated(daemon)
    with conn:
        conn.sock.settimeout(10)
        conn.send_message(1, w.c_store_rq(w.CT_STORAGE, sop), ds)
        expect(conn.outcome(limit(daemon)), ABORT, f"{len(ds)}-byte object > {MAX_OBJECT}")
    guard.check()


def test_5_never_ending_message(daemon, guard):
    sop = uid("bad5", "endless")
    head = (w.minimal_dataset(w.CT_STORAGE, sop)
            + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFF0))
    conn, _ = associated(daemon)
    with conn:
        conn.sock.settimeout(5)
        conn.send(w.p_data(w.pdv(1, w.c_store_rq(w.CT_STORAGE, sop), command=True, last=True)))
        conn.send(w.p_data(w.pdv(1, head, command=False, last=False)))
        chunk = w.p_data(w.pdv(1, b"\xAA" * 16000, command=False, last=False))
        limit_bytes = 64 * MAX_OBJECT
        while conn.sent < limit_bytes and conn.send(chunk):
            pass
        assert conn.sent < limit_bytes, f"cairnd took {conn.sent} bytes of one object " \
                                        f"(cap {MAX_OBJECT}) without aborting"
        expect(conn.outcome(limit(daemon)), ABORT, "endless last=false stream")
    guard.check()


# ------------------------------------------------------------------------------------------
# 6. Invalid DIMSE command sets
# ------------------------------------------------------------------------------------------

def _store_elements(sop: str) -> list:
    return w.c_store_rq_elements(w.CT_STORAGE, sop)


def _without(elements: list, elem: int) -> list:
    return [(e, v) for e, v in elements if e != elem]


COMMAND_CASES = {
    "missing CommandField (0000,0100)":
        lambda sop: w.command_set(_without(_store_elements(sop), 0x0100)),
    "missing MessageID (0000,0110)":
        lambda sop: w.command_set(_without(_store_elements(sop), 0x0110)),
    "group length too large":
        lambda sop: w.command_set(_store_elements(sop),
                                  group_length=len(w.command_set(_store_elements(sop))) + 20),
    "group length too small":
        lambda sop: w.command_set(_store_elements(sop), group_length=8),
    "element length past the end":
        lambda sop: w.c_store_rq(w.CT_STORAGE, sop) + w.implicit_el(0, 0x1030, b"AE", 200),
    "unknown CommandField 0x7777":
        lambda sop: w.command_set(_without(_store_elements(sop), 0x0100)
                                  + [(0x0100, struct.pack("<H", 0x7777))]),
}


@pytest.mark.parametrize("case", sorted(COMMAND_CASES))
def test_6_invalid_command_set(daemon, guard, case):
    sop = uid("bad6", case)
    cmd = COMMAND_CASES[case](sop)
    conn, _ = associated(daemon)
    with conn:
        conn.send_message(1, cmd, w.minimal_dataset(w.CT_STORAGE, sop))
        out = conn.outcome(limit(daemon))
        if case.startswith("unknown CommandField") and out.kind == "status":
            # a well-formed command naming no known service: 0x0211 (unrecognized
            # operation) is the standard DIMSE answer and as good as an abort
            assert out.status == 0x0211, str(out)
        else:
            expect(out, ABORT, f"command set: {case}")
    guard.check()


def test_6_command_in_dataset_pdv(daemon, guard):
    sop = uid("bad6", "cmd-in-ds")
    conn, _ = associated(daemon)
    with conn:
        conn.send(w.p_data(w.pdv(1, w.c_store_rq(w.CT_STORAGE, sop), command=False, last=True)))
        conn.send(w.p_data(w.pdv(1, w.minimal_dataset(w.CT_STORAGE, sop), command=False,
                                 last=True)))
        expect(conn.outcome(limit(daemon)), ABORT, "command set sent as a data set PDV")
    guard.check()


def test_6_pdv_for_unaccepted_context(daemon, guard):
    sop = uid("bad6", "ctx")
    conn, _ = associated(daemon)
    with conn:
        conn.send_message(99, w.c_store_rq(w.CT_STORAGE, sop), w.minimal_dataset(w.CT_STORAGE,
                                                                                 sop))
        expect(conn.outcome(limit(daemon)), ABORT, "PDV on presentation context 99")
    guard.check()


# ------------------------------------------------------------------------------------------
# 7. Hostile SOP Instance UIDs
# ------------------------------------------------------------------------------------------

CANARY = "cairncanary"
BAD_UIDS = {
    "dotdot": f"../../../../../../../tmp/{CANARY}-dotdot".encode(),
    "abs": f"/tmp/{CANARY}-abs".encode(),
    "backslash": f"1.2.3\\..\\..\\{CANARY}-bs".encode(),
    "nul": f"1.2.3\0/../../{CANARY}-nul".encode(),
    "65 chars": ("1.2." + "3" * 61).encode(),
    "100 chars": ("1." + "2" * 98).encode(),
    "letters": b"1.2.abc.4",
    "empty component": b"1..2",
    "empty": b"",
}


def store_raw(d, dataset: bytes, cmd_uid: bytes | str, sop_class: str = w.CT_STORAGE,
              cmd_class: str | None = None) -> w.Outcome:
    conn, _ = associated(d)
    with conn:
        conn.send_message(1, w.c_store_rq(cmd_class or sop_class, cmd_uid), dataset)
        out = conn.outcome(limit(d))
        if out.kind == "status":
            conn.release()
        return out


def assert_no_canary(d) -> None:
    places = [Path("/tmp"), Path("/"), Path.cwd(), d.base.parent, d.data_dir]
    found = []
    for place in places:
        pattern = "**/*" + CANARY + "*" if place in (d.base.parent, d.data_dir) else \
            "*" + CANARY + "*"
        found += list(place.glob(pattern))
    assert not found, f"canary files written: {found}"


@pytest.mark.parametrize("name", sorted(BAD_UIDS))
def test_7_bad_sop_instance_uid(daemon, guard, name):
    bad = BAD_UIDS[name]
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, bad), bad)
    assert out.kind == "status" and out.status == 0xC000, f"UID {bad!r}: {out}"
    assert out.comment, "failure response without an Error Comment (0000,0902)"
    assert_no_canary(daemon)
    guard.check()


def test_7_instance_uid_command_dataset_mismatch(daemon, guard):
    a, b = uid("bad7", "a"), uid("bad7", "b")
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, b), a)
    assert out.kind == "status" and out.status == 0xA900, str(out)
    assert out.comment
    guard.check()


def test_7_class_uid_command_dataset_mismatch(daemon, guard):
    a = uid("bad7", "class")
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, a, ds_sop_class=w.MR_STORAGE), a)
    assert out.kind == "status" and out.status == 0xA900, str(out)
    guard.check()


def test_7_bad_uid_in_dataset_only(daemon, guard):
    good = uid("bad7", "dsonly")
    bad = BAD_UIDS["dotdot"]
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, bad), good)
    assert out.kind == "status" and out.status in (0xC000, 0xA900), str(out)
    assert_no_canary(daemon)
    guard.check()


def test_7_controls_64_chars_and_nul_padding_are_fine(daemon, guard):
    """Positive controls: a 64-character UID, and an odd-length UID padded with one NUL."""
    u64 = "1.2." + "4" * 60
    assert len(u64) == 64
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, u64), u64)
    assert out.kind == "status" and out.status == 0x0000, str(out)
    odd = uid("bad7", "odd")
    odd = odd if len(odd) % 2 else odd + "1"
    assert len(odd) % 2 == 1
    out = store_raw(daemon, w.minimal_dataset(w.CT_STORAGE, odd), odd)
    assert out.kind == "status" and out.status == 0x0000, str(out)
    assert daemon.current_row(odd) is not None, "the NUL padding must not be part of the UID"
    guard.check(allow_new=2)


# ------------------------------------------------------------------------------------------
# 9-11. Data sets that do not parse
# ------------------------------------------------------------------------------------------

def el(tag, vr, value, **kw):
    return w.explicit_el(tag, vr, value, **kw)


def ds_with(sop: str, tail: bytes = b"", head: bytes = b"") -> bytes:
    return head + w.minimal_dataset(w.CT_STORAGE, sop, extra_after=tail)


DATASET_CASES = {
    # 9: a meta-like group inside the data set; lengths that do not fit
    "9 group 0002 inside the data set": lambda s: ds_with(
        s, head=el(0x00020000, "UL", 30) + el(0x00020010, "UI", w.EXPLICIT_LE)),
    "9 element length past the end (head)": lambda s: (
        el(0x00080016, "UI", w.CT_STORAGE) + el(0x00080018, "UI", s)
        + el(0x00100010, "PN", "A^B", length=0x4000) + el(0x00100020, "LO", "X")),
    "9 element length past the end (tail)": lambda s: ds_with(
        s, el(0x7FE00010, "OB", b"\0" * 16, length=4096)),
    "9 item longer than its sequence": lambda s: ds_with(
        s, struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 16)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 200) + el(0x00080100, "SH", "X")),
    "9 trailing partial element header": lambda s: ds_with(s, b"\x08\x00\x10\x10\x4c"),
    # 10: nesting
    "10 70 nested undefined-length SQ": lambda s: ds_with(s, w.nested_sq(70)),
    "10 1100 nested SQ in ~40 KB": lambda s: ds_with(s, w.nested_sq(1100)),
    "10 nested SQ without delimiters": lambda s: ds_with(s, w.nested_sq(3)[:-16]),
    # 11: lengths and VRs
    "11 length 0xFFFFFFFE on OB": lambda s: ds_with(
        s, el(0x00420011, "OB", b"\0" * 8, length=0xFFFFFFFE)),
    "11 undefined length on UT": lambda s: ds_with(
        s, el(0x00400280, "UT", b"", length=0xFFFFFFFF)),
    "11 non-standard VR bytes (tail)": lambda s: ds_with(
        s, struct.pack("<HH2sH", 0x0028, 0x0010, b"\x00\x01", 2) + b"\x10\x00"),
    "11 non-standard VR bytes (head)": lambda s: (
        struct.pack("<HH2sH", 0x0008, 0x0005, b"zz", 10) + b"ISO_IR 100"
        + ds_with(s)),
}


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_9_11_dataset_does_not_parse(daemon, guard, case):
    sop = uid("bad9", case)
    ds = DATASET_CASES[case](sop)
    out = store_raw(daemon, ds, sop)
    allowed_abort = case.startswith("11 length") or case.startswith("11 undefined")
    print(f"\n  {case}: {out}")
    ok = (out.kind == "status" and out.status == 0xC000) or (allowed_abort and out.kind == "abort")
    assert ok, f"{case}: expected status 0xC000, got {out}"
    if out.kind == "status":
        assert out.comment, "failure response without an Error Comment (0000,0902)"
    guard.check()


def test_10_control_shallow_nesting_is_stored(daemon, guard):
    """Positive control for the builders: 5 nested SQ levels and a clean data set store."""
    sop = uid("bad10", "control")
    out = store_raw(daemon, ds_with(sop, w.nested_sq(5)), sop)
    assert out.kind == "status" and out.status == 0x0000, str(out)
    guard.check(allow_new=1)


# ------------------------------------------------------------------------------------------
# Boundaries: the limits themselves are allowed
# ------------------------------------------------------------------------------------------

def test_10_boundary_64_levels_stored_65_refused(daemon, guard):
    sop64, sop65 = uid("bad10", 64), uid("bad10", 65)
    out = store_raw(daemon, ds_with(sop64, w.nested_sq(64)), sop64)
    assert out.kind == "status" and out.status == 0x0000, f"64 levels: {out}"
    out = store_raw(daemon, ds_with(sop65, w.nested_sq(65)), sop65)
    assert out.kind == "status" and out.status == 0xC000, f"65 levels: {out}"
    guard.check(allow_new=1)


def test_ac_announces_max_pdu_and_exact_max_pdu_is_fine(daemon, guard):
    with w.Wire(daemon.port) as conn:
        conn.send(w.assoc_rq(contexts=[(1, w.CT_STORAGE, [w.EXPLICIT_LE])]))
        out = conn.outcome(10)
        assert out.kind == "ac", str(out)
        announced = None
        pos = 68
        while pos + 4 <= len(out.body):
            itype, _, ilen = struct.unpack_from(">BBH", out.body, pos)
            if itype == 0x50:
                p = pos + 4
                while p < pos + 4 + ilen:
                    st, _, sl = struct.unpack_from(">BBH", out.body, p)
                    if st == 0x51:
                        (announced,) = struct.unpack_from(">I", out.body, p + 4)
                    p += 4 + sl
            pos += 4 + ilen
        assert announced == MAX_PDU, f"AC maximum length {announced}, config {MAX_PDU}"
        sop = uid("bad1", "exact-pdu")
        ds = ds_with(sop, struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 40000)
                     + b"\x11" * 40000)
        conn.send(w.p_data(w.pdv(1, w.c_store_rq(w.CT_STORAGE, sop), command=True, last=True)))
        step = MAX_PDU - 6                      # PDV header (4) + context id + control byte
        chunks = [ds[i:i + step] for i in range(0, len(ds), step)]
        for i, chunk in enumerate(chunks):
            conn.send(w.p_data(w.pdv(1, chunk, command=False, last=i == len(chunks) - 1)))
        assert len(w.p_data(w.pdv(1, chunks[0], False, False))) - 6 == MAX_PDU
        out = conn.outcome(10)
        assert out.kind == "status" and out.status == 0x0000, f"PDUs of exactly max: {out}"
        conn.release()
    guard.check(allow_new=1)


def test_5_object_of_exactly_max_object_bytes_is_stored(daemon, guard):
    sop = uid("bad5", "exact")
    head = ds_with(sop)
    pixels = MAX_OBJECT - len(head) - 12
    ds = head + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels) + b"\x22" * pixels
    assert len(ds) == MAX_OBJECT
    out = store_raw(daemon, ds, sop)
    assert out.kind == "status" and out.status == 0x0000, f"object of exactly the cap: {out}"
    sop2 = uid("bad5", "exact+2")
    head = ds_with(sop2)
    pixels = MAX_OBJECT - len(head) - 12 + 2
    ds = head + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels) + b"\x22" * pixels
    out = store_raw(daemon, ds, sop2)
    assert out.kind == "abort", f"object 2 bytes over the cap: {out}"
    guard.check(allow_new=1)
