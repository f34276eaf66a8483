"""Minimal C-FIND SCU on a plain socket, for timing the server rather than the client.

pynetdicom decodes every response in Python on two threads (about 0.5-1 ms per answer on
this box), so with hundreds of answers its "time to the last answer" measures pynetdicom.
This client only reassembles P-DATA fragments and reads the status (0000,0900) of each
response command set; identifiers are counted, not decoded. One association, Study Root
FIND, Explicit VR Little Endian, TCP_NODELAY on, blocking reads.

Usage:
    c = RawFind("127.0.0.1", 11112, "CAIRN", "BENCHRAW")
    first_s, last_s, answers, status = c.find(identifier_bytes)
    c.close()
Identifier bytes: pynetdicom.dsutils.encode(ds, False, True) (explicit VR little endian).
"""
import socket
import struct
import time

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPL_CLASS = "1.2.826.0.1.3680043.10.1138.9"


def _uid(u):
    b = u.encode()
    return b + b"\0" if len(b) % 2 else b


def _item(t, body):
    return struct.pack(">BBH", t, 0, len(body)) + body


def _ae(s):
    return s.encode().ljust(16)[:16]


def _elem(group, elem, value):
    """Implicit VR little endian element of a command set."""
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def command_set(msg_id):
    body = (_elem(0, 0x0002, _uid(STUDY_ROOT_FIND)) + _elem(0, 0x0100, struct.pack("<H", 0x0020))
            + _elem(0, 0x0110, struct.pack("<H", msg_id)) + _elem(0, 0x0700, struct.pack("<H", 0))
            + _elem(0, 0x0800, struct.pack("<H", 0x0000)))
    return _elem(0, 0x0000, struct.pack("<I", len(body))) + body


def parse_command(b):
    """{element: raw value} of an implicit VR LE group-0000 command set."""
    out, i = {}, 0
    while i + 8 <= len(b):
        g, e, n = struct.unpack_from("<HHI", b, i)
        out[(g << 16) | e] = b[i + 8:i + 8 + n]
        i += 8 + n
    return out


class RawFind:
    def __init__(self, host, port, called, calling, max_pdu=65536, timeout=120):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.msg_id = 0
        pc = _item(0x20, struct.pack(">BBBB", 1, 0, 0, 0) + _item(0x30, _uid(STUDY_ROOT_FIND))
                   + _item(0x40, _uid(EXPLICIT_LE)))
        ui = _item(0x50, _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, _uid(IMPL_CLASS)))
        body = (struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + b"\0" * 32
                + _item(0x10, _uid(APP_CONTEXT)) + pc + ui)
        self.sock.sendall(struct.pack(">BBI", 0x01, 0, len(body)) + body)
        t, data = self._pdu()
        if t != 0x02:
            raise RuntimeError(f"association not accepted (PDU type 0x{t:02x}: {bytes(data[:10]).hex()})")
        i = 68
        self.pc_id = None
        while i + 4 <= len(data):
            it, ln = data[i], struct.unpack_from(">H", data, i + 2)[0]
            if it == 0x21 and data[i + 6] == 0:
                self.pc_id = data[i + 4]
            i += 4 + ln
        if self.pc_id is None:
            raise RuntimeError("Study Root FIND / explicit VR LE not accepted")

    def _recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _pdu(self):
        h = self._recv_exact(6)
        t, n = h[0], struct.unpack_from(">I", h, 2)[0]
        return t, self._recv_exact(n)

    def _messages(self):
        """Yield (command dict, has_dataset_done) as response messages complete."""
        cmd, ds_pending = bytearray(), False
        while True:
            t, data = self._pdu()
            if t != 0x04:
                raise ConnectionError(f"unexpected PDU type 0x{t:02x} during C-FIND")
            i = 0
            while i + 6 <= len(data):
                n = struct.unpack_from(">I", data, i)[0]
                hdr = data[i + 5]
                frag = data[i + 6:i + 4 + n]
                i += 4 + n
                if hdr & 1:  # command fragment
                    cmd += frag
                    if hdr & 2:
                        c = parse_command(bytes(cmd))
                        cmd = bytearray()
                        has_ds = struct.unpack("<H", c.get(0x00000800, b"\x01\x01")[:2])[0] != 0x0101
                        if has_ds:
                            ds_pending = c
                        else:
                            yield c
                elif hdr & 2 and ds_pending:  # last fragment of the identifier
                    c, ds_pending = ds_pending, False
                    yield c

    def find(self, identifier):
        """Send one C-FIND; return (seconds to first answer, seconds to final response,
        pending answers, final status)."""
        self.msg_id += 1
        cmd = command_set(self.msg_id)
        pdv_c = struct.pack(">IBB", len(cmd) + 2, self.pc_id, 0x03) + cmd
        pdv_d = struct.pack(">IBB", len(identifier) + 2, self.pc_id, 0x02) + identifier
        pdu = struct.pack(">BBI", 0x04, 0, len(pdv_c) + len(pdv_d)) + pdv_c + pdv_d
        first = None
        n = 0
        t0 = time.perf_counter()
        self.sock.sendall(pdu)
        for c in self._messages():
            now = time.perf_counter()
            if first is None:
                first = now - t0
            st = struct.unpack("<H", c.get(0x00000900, b"\xff\xff")[:2])[0]
            if st in (0xFF00, 0xFF01):
                n += 1
                continue
            return first, now - t0, n, st
        raise ConnectionError("no final response")

    def close(self):
        try:
            self.sock.sendall(struct.pack(">BBII", 0x05, 0, 4, 0))
            self._pdu()
        except OSError:
            pass
        self.sock.close()
