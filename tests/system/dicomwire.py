"""Hand-built DICOM upper-layer PDUs, DIMSE command sets and data set elements.

Used by the bad-input and access tests to say exactly which bytes go on the wire, and to read
the exact bytes that come back (A-ASSOCIATE-RJ result/source/reason, A-ABORT, C-STORE-RSP
status). Nothing here is clever: every builder is a few struct.pack calls, so a test can break
any length or field on purpose.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPL_CLASS_UID = "1.2.826.0.1.3680043.9.7133.1"
IMPL_VERSION = "CAIRN_SYSTEST"

PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}


# --------------------------------------------------------------------------------------------
# PDU and item builders
# --------------------------------------------------------------------------------------------

def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved, 4-byte big-endian length (defaults to len(body)), body."""
    return struct.pack(">BBI", pdu_type, 0, len(body) if length is None else length) + body


def item(item_type: int, data: bytes, length: int | None = None) -> bytes:
    """A variable item / sub-item: type, reserved, 2-byte big-endian length, data."""
    return struct.pack(">BBH", item_type, 0, len(data) if length is None else length) + data


def ae16(title: str | bytes) -> bytes:
    raw = title.encode() if isinstance(title, str) else title
    return raw.ljust(16, b" ")[:16] if len(raw) <= 16 else raw


def app_context_item(name: str = APP_CONTEXT) -> bytes:
    return item(0x10, name.encode())


def pres_context_item(ctx_id: int, abstract: str, transfers: list[str]) -> bytes:
    sub = item(0x30, abstract.encode())
    for ts in transfers:
        sub += item(0x40, ts.encode())
    return item(0x20, struct.pack(">BBBB", ctx_id, 0, 0, 0) + sub)


def max_length_item(n: int) -> bytes:
    return item(0x51, struct.pack(">I", n))


def user_identity_item(primary: bytes, secondary: bytes = b"", id_type: int = 1) -> bytes:
    data = struct.pack(">BBH", id_type, 0, len(primary)) + primary
    data += struct.pack(">H", len(secondary)) + secondary
    return item(0x58, data)


def user_info_item(max_len: int = 16384, extra: bytes = b"") -> bytes:
    sub = max_length_item(max_len) if max_len is not None else b""
    sub += item(0x52, IMPL_CLASS_UID.encode())
    sub += item(0x55, IMPL_VERSION.encode())
    return item(0x50, sub + extra)


def assoc_rq_body(called: str | bytes, calling: str | bytes, items: bytes) -> bytes:
    return struct.pack(">HH", 1, 0) + ae16(called) + ae16(calling) + b"\0" * 32 + items


def assoc_rq(
    called: str = "CAIRN",
    calling: str = "TESTSCU",
    contexts: list[tuple[int, str, list[str]]] | None = None,
    max_len: int = 16384,
    user_extra: bytes = b"",
) -> bytes:
    """A well-formed A-ASSOCIATE-RQ (contexts: (id, abstract syntax, [transfer syntaxes]))."""
    if contexts is None:
        contexts = [(1, VERIFICATION, [IMPLICIT_LE])]
    items = app_context_item()
    for cid, abstract, tss in contexts:
        items += pres_context_item(cid, abstract, tss)
    items += user_info_item(max_len, user_extra)
    return pdu(0x01, assoc_rq_body(called, calling, items))


def pdv(ctx_id: int, data: bytes, command: bool, last: bool) -> bytes:
    ctrl = (0x01 if command else 0) | (0x02 if last else 0)
    return struct.pack(">IBB", len(data) + 2, ctx_id, ctrl) + data


def p_data(*pdvs: bytes) -> bytes:
    return pdu(0x04, b"".join(pdvs))


def release_rq() -> bytes:
    return pdu(0x05, b"\0\0\0\0")


def abort_pdu() -> bytes:
    return pdu(0x07, b"\0\0\0\0")


# --------------------------------------------------------------------------------------------
# Data elements (DIMSE commands are Implicit VR Little Endian; data sets here Explicit VR LE)
# --------------------------------------------------------------------------------------------

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def pad_value(vr: str, value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif vr == "US":
        return struct.pack("<H", value)
    elif vr == "UL":
        return struct.pack("<I", value)
    else:
        raw = str(value).encode()
    if len(raw) % 2:
        raw += b"\0" if vr in ("UI", "OB", "UN") else b" "
    return raw


def implicit_el(group: int, elem: int, raw: bytes, length: int | None = None) -> bytes:
    return struct.pack("<HHI", group, elem, len(raw) if length is None else length) + raw


def explicit_el(tag: int, vr: str, value, length: int | None = None, pad: bool = True) -> bytes:
    """One Explicit VR Little Endian element; `length` overrides the encoded length field."""
    if pad:
        raw = pad_value(vr, value)
    else:
        raw = value if isinstance(value, bytes) else str(value).encode()
    group, elem = tag >> 16, tag & 0xFFFF
    n = len(raw) if length is None else length
    if vr in LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, n) + raw
    return struct.pack("<HH2sH", group, elem, vr.encode(), n) + raw


def command_set(elements: list[tuple[int, bytes]], group_length: int | None = None,
                with_group_length: bool = True) -> bytes:
    """Implicit VR LE group 0000 from [(element number, raw value)], group length first."""
    body = b"".join(implicit_el(0x0000, e, v) for e, v in sorted(elements))
    if not with_group_length:
        return body
    gl = len(body) if group_length is None else group_length
    return implicit_el(0x0000, 0x0000, struct.pack("<I", gl)) + body


def c_store_rq_elements(sop_class: str, sop_instance: str | bytes, msg_id: int = 1) -> list:
    inst = sop_instance if isinstance(sop_instance, bytes) else sop_instance.encode()
    return [
        (0x0002, pad_value("UI", sop_class)),
        (0x0100, struct.pack("<H", 0x0001)),
        (0x0110, struct.pack("<H", msg_id)),
        (0x0700, struct.pack("<H", 0)),
        (0x0800, struct.pack("<H", 0x0000)),
        (0x1000, pad_value("UI", inst)),
    ]


def c_store_rq(sop_class: str, sop_instance: str | bytes, msg_id: int = 1) -> bytes:
    return command_set(c_store_rq_elements(sop_class, sop_instance, msg_id))


def c_echo_rq(msg_id: int = 1) -> bytes:
    return command_set([
        (0x0002, pad_value("UI", VERIFICATION)),
        (0x0100, struct.pack("<H", 0x0030)),
        (0x0110, struct.pack("<H", msg_id)),
        (0x0800, struct.pack("<H", 0x0101)),
    ])


def parse_command(raw: bytes) -> dict[int, bytes]:
    """Implicit VR LE group 0000 -> {element: raw value}."""
    out, pos = {}, 0
    while pos + 8 <= len(raw):
        g, e, n = struct.unpack_from("<HHI", raw, pos)
        out[e] = raw[pos + 8: pos + 8 + n]
        pos += 8 + n
    return out


def minimal_dataset(sop_class: str, sop_instance: str | bytes, *, study_uid: str = "1.2.3.4.5",
                    series_uid: str = "1.2.3.4.5.6", patient: str = "WIRE^TEST",
                    patient_id: str = "WIRE1", extra_after: bytes = b"",
                    ds_sop_class: str | None = None) -> bytes:
    """A small Explicit VR LE data set in tag order; `extra_after` goes after the UIDs (it must
    hold tags above (0020,000E))."""
    inst = sop_instance if isinstance(sop_instance, bytes) else sop_instance.encode()
    return (
        explicit_el(0x00080016, "UI", ds_sop_class or sop_class)
        + explicit_el(0x00080018, "UI", inst)
        + explicit_el(0x00080020, "DA", "20240102")
        + explicit_el(0x00080060, "CS", "OT")
        + explicit_el(0x00100010, "PN", patient)
        + explicit_el(0x00100020, "LO", patient_id)
        + explicit_el(0x0020000D, "UI", study_uid)
        + explicit_el(0x0020000E, "UI", series_uid)
        + extra_after
    )


def nested_sq(depth: int, tag: int = 0x0040A730) -> bytes:
    """`depth` levels of undefined-length SQ, each holding one undefined-length item."""
    head = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, 0xFFFFFFFF)
    item_start = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    inner = explicit_el(0x00080100, "SH", "LEAF")
    for _ in range(depth):
        inner = head + item_start + inner + item_end + seq_end
    return inner


# --------------------------------------------------------------------------------------------
# A raw client
# --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the peer did: kind is abort, rj, ac, status, release_rp, close, timeout, other."""
    kind: str
    elapsed: float
    pdu_type: int | None = None
    body: bytes = b""
    result: int | None = None
    source: int | None = None
    reason: int | None = None
    status: int | None = None
    comment: str = ""
    command: dict = field(default_factory=dict)

    def __str__(self) -> str:
        bits = [self.kind, f"after {self.elapsed:.2f}s"]
        if self.kind == "rj":
            bits.append(f"result/source/reason={self.result}/{self.source}/{self.reason}")
        if self.kind == "abort":
            bits.append(f"source/reason={self.source}/{self.reason}")
        if self.kind == "status":
            bits.append(f"status=0x{self.status:04X} comment={self.comment!r}")
        if self.kind == "other":
            bits.append(f"pdu type 0x{self.pdu_type:02X}")
        return " ".join(bits)


class Wire:
    """One TCP connection that speaks raw PDUs."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t0 = time.monotonic()
        self.send_error: Exception | None = None
        self.sent = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> bool:
        """Send all of data; False (and remember why) if the peer already closed."""
        try:
            self.sock.sendall(data)
            self.sent += len(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                socket.timeout) as exc:
            self.send_error = exc
            return False

    def _recv_exact(self, n: int, deadline: float) -> bytes | None:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout as exc:
                raise TimeoutError from exc
            except (ConnectionResetError, ConnectionAbortedError):
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv_pdu(self, timeout: float) -> tuple[int, bytes] | None:
        """(type, body) of the next PDU; None when the peer closed; TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        head = self._recv_exact(6, deadline)
        if head is None:
            return None
        ptype, _, length = struct.unpack(">BBI", head)
        if length > 16 * 1024 * 1024:
            raise AssertionError(f"peer sent PDU type 0x{ptype:02X} claiming {length} bytes")
        body = self._recv_exact(length, deadline)
        if body is None:
            return None
        return ptype, body

    def outcome(self, timeout: float) -> Outcome:
        """Read until something decisive happens: one PDU (a whole DIMSE response for P-DATA),
        the connection closing, or `timeout` seconds."""
        start = time.monotonic()
        deadline = start + timeout
        cmd_buf = b""
        while True:
            try:
                got = self.recv_pdu(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return Outcome("timeout", time.monotonic() - start)
            el = time.monotonic() - start
            if got is None:
                return Outcome("close", el)
            ptype, body = got
            if ptype == 0x07:
                return Outcome("abort", el, ptype, body, source=body[2] if len(body) > 2 else None,
                               reason=body[3] if len(body) > 3 else None)
            if ptype == 0x03:
                return Outcome("rj", el, ptype, body, result=body[1], source=body[2],
                               reason=body[3])
            if ptype == 0x02:
                return Outcome("ac", el, ptype, body)
            if ptype == 0x06:
                return Outcome("release_rp", el, ptype, body)
            if ptype == 0x04:
                pos, done = 0, False
                while pos + 6 <= len(body):
                    ilen, _cid, ctrl = struct.unpack_from(">IBB", body, pos)
                    data = body[pos + 6: pos + 4 + ilen]
                    pos += 4 + ilen
                    if ctrl & 0x01:
                        cmd_buf += data
                        if ctrl & 0x02:
                            done = True
                if done:
                    cmd = parse_command(cmd_buf)
                    st = cmd.get(0x0900)
                    status = struct.unpack("<H", st)[0] if st and len(st) == 2 else None
                    comment = cmd.get(0x0902, b"").decode("latin-1").rstrip("\0 ")
                    return Outcome("status", el, ptype, body, status=status, comment=comment,
                                   command=cmd)
                continue
            return Outcome("other", el, ptype, body)

    def associate(self, contexts=None, called="CAIRN", calling="TESTSCU",
                  timeout: float = 10.0) -> dict[int, str]:
        """Send a proper RQ; return {accepted context id: transfer syntax}; assert AC."""
        self.send(assoc_rq(called, calling, contexts))
        out = self.outcome(timeout)
        assert out.kind == "ac", f"association not accepted: {out}"
        return parse_ac_contexts(out.body)

    def send_message(self, ctx_id: int, command: bytes, dataset: bytes | None = None,
                     max_pdv: int = 16000) -> bool:
        ok = self.send(p_data(pdv(ctx_id, command, command=True, last=True)))
        if dataset is not None and ok:
            chunks = [dataset[i: i + max_pdv] for i in range(0, len(dataset), max_pdv)] or [b""]
            for i, chunk in enumerate(chunks):
                if not self.send(p_data(pdv(ctx_id, chunk, command=False,
                                            last=i == len(chunks) - 1))):
                    return False
        return ok

    def release(self, timeout: float = 10.0) -> Outcome:
        self.send(release_rq())
        return self.outcome(timeout)


def parse_ac_contexts(body: bytes) -> dict[int, str]:
    """Accepted presentation contexts (result 0) of an A-ASSOCIATE-AC body."""
    pos = 68
    out = {}
    while pos + 4 <= len(body):
        itype, _, ilen = struct.unpack_from(">BBH", body, pos)
        data = body[pos + 4: pos + 4 + ilen]
        pos += 4 + ilen
        if itype == 0x21 and len(data) >= 4:
            cid, result = data[0], data[2]
            ts = ""
            p = 4
            while p + 4 <= len(data):
                st, _, sl = struct.unpack_from(">BBH", data, p)
                if st == 0x40:
                    ts = data[p + 4: p + 4 + sl].decode().rstrip("\0 ")
                p += 4 + sl
            if result == 0:
                out[cid] = ts
    return out
