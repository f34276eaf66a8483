"""C-GET and C-MOVE from the box (docs/interface.md, "Query/retrieve").

What a requester or a move destination receives is compared byte for byte with what the box
stored: the data set bytes after the meta group of objects/aa/bb/<sha256>.dcm (and, for files
the test made, with the data set bytes of the file that was sent). DCMTK getscu and storescp run
in bit-preserving mode (+B) so their files hold the data sets exactly as received.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicomwire as w
import qrlib as q
from harness import TEST_FILES, dataset_bytes, free_port, managed

ALL = {"store": True, "query": True, "retrieve": True}
BASIC_PEERS = [
    {"ae": "TESTSCU", "host": "127.0.0.1", "port": 104, **ALL},
    {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, **ALL},
    {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, **ALL},
]


class Ports:
    """Loopback ports of the move destinations, held for the whole module: DOWNSCP's port is
    bound but never listens (connections refused), CLOSER accepts and closes at once, and
    STORESCP is where each test starts its storescp."""

    def __init__(self):
        self.down_sock = socket.socket()
        self.down_sock.bind(("127.0.0.1", 0))
        self.down = self.down_sock.getsockname()[1]
        self.closer_sock = socket.socket()
        self.closer_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.closer_sock.bind(("127.0.0.1", 0))
        self.closer_sock.listen(8)
        self.closer = self.closer_sock.getsockname()[1]
        self.scp = free_port()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._close_all, daemon=True)
        self._thread.start()

    def _close_all(self):
        self.closer_sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.closer_sock.accept()
                conn.close()
            except OSError:
                pass

    def peers(self) -> list[dict]:
        return BASIC_PEERS + [
            {"ae": "STORESCP", "host": "127.0.0.1", "port": self.scp, **ALL},
            {"ae": "DOWNSCP", "host": "127.0.0.1", "port": self.down, **ALL},
            {"ae": "CLOSER", "host": "127.0.0.1", "port": self.closer, **ALL},
            {"ae": "NORETRIEVE", "host": "127.0.0.1", "port": 104, "store": True,
             "query": True, "retrieve": False},
        ]

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.closer_sock.close()
        self.down_sock.close()


N_BULK = 200


class Data:
    """Everything loaded into the module's box."""

    def __init__(self, base: Path):
        self.corpus = q.build_corpus(base / "corpus", seed="qr-retrieve")
        # J1: two Explicit VR LE CT images and one JPEG Baseline secondary capture
        self.j_study = q.uid("qr-j1", "study")
        self.j_series = q.uid("qr-j1", "series")
        self.j_files = []
        self.j_ct = []
        for k in range(2):
            src = self.corpus.study("D1").instances[0].path
            ds = pydicom.dcmread(src)
            sop = q.uid("qr-j1", "ct", k)
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.StudyInstanceUID = self.j_study
            ds.SeriesInstanceUID = q.uid("qr-j1", "ct-series")
            ds.PatientID = "QR-J1"
            path = base / "j1" / f"ct{k}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            self.j_files.append(path)
            self.j_ct.append(sop)
        self.j_jpeg = q.uid("qr-j1", "jpeg")
        q.jpeg_instance(base / "j1" / "jpeg.dcm", sop_uid=self.j_jpeg, study_uid=self.j_study,
                        series_uid=self.j_series, patient_id="QR-J1", patient_name="JPEG^ONE")
        self.j_files.append(base / "j1" / "jpeg.dcm")
        # IMPL: one CT image stored in Implicit VR Little Endian
        ds = pydicom.dcmread(self.corpus.study("C1").instances[0].path)
        self.impl_sop = q.uid("qr-impl", "sop")
        self.impl_study = q.uid("qr-impl", "study")
        self.impl_series = q.uid("qr-impl", "series")
        ds.SOPInstanceUID = self.impl_sop
        ds.file_meta.MediaStorageSOPInstanceUID = self.impl_sop
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.StudyInstanceUID = self.impl_study
        ds.SeriesInstanceUID = self.impl_series
        ds.PatientID = "QR-IMPL"
        self.impl_file = base / "impl.dcm"
        ds.save_as(self.impl_file, enforce_file_format=True, implicit_vr=True,
                   little_endian=True)
        # BULK: many small instances for the cancel test
        self.bulk_study = q.uid("qr-bulk", "study")
        self.bulk = q.tiny_instances(base / "bulk", N_BULK, "qr-bulk",
                                     study_uid=self.bulk_study, patient_id="QR-BULK")
        # JLS: a JPEG-LS Lossless MR image (no JPEG-LS decoder in the box: not convertible)
        ds = pydicom.dcmread(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm")
        self.jls_sop = q.uid("qr-jls", "sop")
        self.jls_study = q.uid("qr-jls", "study")
        ds.SOPInstanceUID = self.jls_sop
        ds.file_meta.MediaStorageSOPInstanceUID = self.jls_sop
        ds.StudyInstanceUID = self.jls_study
        ds.SeriesInstanceUID = q.uid("qr-jls", "series")
        ds.PatientID = "QR-JLS"
        self.jls_file = base / "jls.dcm"
        ds.save_as(self.jls_file, enforce_file_format=True)
        # ODD: pydicom's deflated file, whose data set has an odd length (4303 bytes)
        self.odd_file = TEST_FILES / "image_dfl.dcm"
        odd = pydicom.dcmread(self.odd_file)
        self.odd_sop, self.odd_study = str(odd.SOPInstanceUID), str(odd.StudyInstanceUID)
        self.odd_series = str(odd.SeriesInstanceUID)

    @property
    def explicit_files(self) -> list[Path]:
        return [i.path for i in self.corpus.instances] + self.j_files[:2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    return Data(tmp_path_factory.mktemp("qr-retrieve-data"))


@pytest.fixture(scope="module")
def ports():
    p = Ports()
    yield p
    p.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory, data, ports):
    with managed(tmp_path_factory.mktemp("qr-retrieve-box"), peers=ports.peers()) as c:
        q.store_files(c.port, data.explicit_files + [data.j_files[2], data.impl_file,
                                                     data.odd_file, data.jls_file])
        q.storescu(c.port, [p for p, _ in data.bulk])
        yield c
        assert c.running, f"cairnd died during the retrieve tests\n{c.log_tail()}"


def original(path: Path) -> bytes:
    return dataset_bytes(path)


def assert_identical(box, received: dict[str, tuple[str, bytes]], expected: set[str],
                     what: str, originals: dict[str, Path] | None = None):
    """received: SOP Instance UID -> (transfer syntax, data set bytes)."""
    assert set(received) == expected, (
        f"{what}: received {len(received)} instances, expected {len(expected)}; "
        f"missing {sorted(expected - set(received))} extra {sorted(set(received) - expected)}")
    rows = q.stored_rows(box)
    for sop, (ts, body) in received.items():
        row = rows[sop]
        stored = q.stored_dataset(box, sop)
        assert ts == row["transfer_syntax"], \
            f"{what}: {sop} arrived in {ts}, stored in {row['transfer_syntax']}"
        assert body == stored, (
            f"{what}: {sop} data set differs from the stored object "
            f"({len(body)} vs {len(stored)} bytes, sha {q.sha(body)[:12]} vs "
            f"{q.sha(stored)[:12]}, first difference at {q.first_difference(body, stored)})")
        if originals and sop in originals:
            assert body == original(originals[sop]), f"{what}: {sop} differs from the file sent"


def originals_of(data: Data) -> dict[str, Path]:
    out = {i.sop_uid: i.path for i in data.corpus.instances}
    out.update({sop: p for sop, p in zip(data.j_ct, data.j_files[:2])})
    return out


def get_keys(data: Data, level: str) -> tuple[dict, set[str]]:
    a2 = data.corpus.study("A2")
    if level == "STUDY":
        return dict(StudyInstanceUID=a2.uid), {i.sop_uid for i in a2.instances}
    if level == "SERIES":
        se = a2.series[0]
        return (dict(StudyInstanceUID=a2.uid, SeriesInstanceUID=se.uid),
                {i.sop_uid for i in se.instances})
    se = data.corpus.study("A1").series[0]
    pick = [se.instances[0].sop_uid, se.instances[2].sop_uid]
    return (dict(StudyInstanceUID=se.study.uid, SeriesInstanceUID=se.uid,
                 SOPInstanceUID="\\".join(pick)), set(pick))


def dcmtk_keys(level: str, keys: dict) -> list[str]:
    return [f"QueryRetrieveLevel={level}"] + [f"{k}={v}" for k, v in keys.items()]


def audit_check(box, seq: int, action: str, sent: set[str], failed: set[str] = frozenset(),
                destination: str | None = None, status: int | None = None) -> dict:
    rows = q.audit_after(box, seq, action)
    assert len(rows) == 1, f"expected one {action!r} audit row after seq {seq}, got {rows}"
    d = rows[0]["detail_json"]
    assert isinstance(d, dict), f"{action} audit detail is not JSON: {rows[0]['detail']!r}"
    sent_text, failed_text = str(d.get("sent", "")), str(d.get("failed", ""))
    for sop in sent:
        assert sop in sent_text, f"{action} audit 'sent' lacks {sop}: {d}"
        assert sop not in failed_text, f"{action} audit lists sent {sop} as failed: {d}"
    for sop in failed:
        assert sop in failed_text, f"{action} audit 'failed' lacks {sop}: {d}"
    if destination is not None:
        assert d.get("destination") == destination, f"{action} audit destination: {d}"
    if status is not None:
        st = str(d.get("status"))
        assert int(st, 16 if st.lower().startswith("0x") else 10) == status, \
            f"{action} audit status {st}, want 0x{status:04X}"
    return d


# --------------------------------------------------------------------------------------------
# C-GET
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
def test_get_pynetdicom(box, data, level):
    keys, expected = get_keys(data, level)
    seq = q.last_seq(box)
    r = q.pn_get(box.port, q.query(level, **keys))
    assert r.final_status == 0x0000, f"C-GET {level}: final 0x{r.final_status:04X}"
    assert r.count("NumberOfCompletedSuboperations") == len(expected), \
        f"completed count {r.count('NumberOfCompletedSuboperations')}, want {len(expected)}"
    assert (r.count("NumberOfFailedSuboperations") or 0) == 0
    got = {x.sop_uid: (x.transfer_syntax, x.dataset) for x in r.received}
    assert len(got) == len(r.received), "an instance was sent twice"
    assert_identical(box, got, expected, f"C-GET {level}", originals_of(data))
    audit_check(box, seq, "retrieve-get", expected, status=0)


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE", "PATIENT-ROOT-STUDY"])
def test_get_getscu(box, data, tmp_path, level):
    if level == "PATIENT-ROOT-STUDY":
        st = data.corpus.study("A1")
        model, qlevel = "P", "STUDY"
        keys, expected = dict(PatientID="QR-MUE", StudyInstanceUID=st.uid), \
            {i.sop_uid for i in st.instances}
    else:
        model, qlevel = "S", level
        keys, expected = get_keys(data, level)
    out = tmp_path / "got"
    rc, status, log = q.getscu(box.port, dcmtk_keys(qlevel, keys), out, model=model)
    assert rc == 0 and status == 0x0000, \
        f"getscu {level}: rc={rc} final={status if status is None else hex(status)}\n{log[-3000:]}"
    assert_identical(box, q.part10_datasets(out), expected, f"getscu {level}",
                     originals_of(data))


def test_get_unaccepted_transfer_syntax(box, data):
    """An instance whose stored transfer syntax the requester did not accept, and that the box
    cannot convert (JPEG-LS: no decoder in this build), is a failed sub-operation: final 0xB000
    with (0008,0058) listing it."""
    seq = q.last_seq(box)
    ident = q.query("STUDY", StudyInstanceUID=data.jls_study)
    r = q.pn_get(box.port, ident, storage={q.MR_IMAGE: [ExplicitVRLittleEndian,
                                                        ImplicitVRLittleEndian]})
    assert r.final_status == 0xB000 and not r.received, (
        f"final 0x{r.final_status:04X}, want 0xB000; received "
        f"{[(x.sop_uid, x.transfer_syntax) for x in r.received]}")
    assert r.count("NumberOfFailedSuboperations") == 1
    assert r.count("NumberOfCompletedSuboperations") == 0
    assert r.failed_uids() == [data.jls_sop], \
        f"Failed SOP Instance UID List {r.failed_uids()}, want {data.jls_sop}"
    audit_check(box, seq, "retrieve-get", set(), {data.jls_sop}, status=0xB000)


def test_get_decompresses_jpeg_for_a_requester_without_it(box, data):
    """The JPEG Baseline instance, whose syntax the requester did not propose, arrives
    decompressed in Explicit VR LE (it used to be a failed sub-operation); the two Explicit VR LE
    CT images arrive unchanged."""
    seq = q.last_seq(box)
    ident = q.query("STUDY", StudyInstanceUID=data.j_study)
    storage = {q.CT_IMAGE: [ExplicitVRLittleEndian],
               q.SC_IMAGE: [ExplicitVRLittleEndian, ImplicitVRLittleEndian]}
    r = q.pn_get(box.port, ident, storage=storage)
    got = {x.sop_uid: (x.transfer_syntax, x.dataset) for x in r.received}
    assert r.final_status == 0x0000, f"final 0x{r.final_status:04X}; received {sorted(got)}"
    assert r.count("NumberOfCompletedSuboperations") == 3
    jpeg = got.pop(data.j_jpeg)
    assert jpeg[0] == ExplicitVRLittleEndian
    import io
    from pydicom.filereader import read_dataset
    ds = read_dataset(io.BytesIO(jpeg[1]), is_implicit_VR=False, is_little_endian=True)
    assert ds.PhotometricInterpretation == "RGB"
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 3, "native RGB pixel data expected"
    assert_identical(box, got, set(data.j_ct), "JPEG study", originals_of(data))
    audit_check(box, seq, "retrieve-get", set(data.j_ct) | {data.j_jpeg}, status=0)


def test_get_converts_explicit_to_implicit(box, data):
    """A requester that accepted only Implicit VR LE gets an Explicit-stored object converted:
    success, and every element of the received data set equals the stored one."""
    import io
    from pydicom.filereader import read_dataset
    inst = data.corpus.study("D1").instances[0]
    ident = q.query("IMAGE", StudyInstanceUID=data.corpus.study("D1").uid,
                    SeriesInstanceUID=inst.series.uid, SOPInstanceUID=inst.sop_uid)
    r = q.pn_get(box.port, ident, storage={q.CT_IMAGE: [ImplicitVRLittleEndian]})
    assert r.final_status == 0x0000, f"final 0x{r.final_status:04X}"
    assert len(r.received) == 1
    got = r.received[0]
    assert got.transfer_syntax == ImplicitVRLittleEndian
    stored_ts = q.stored_rows(box)[inst.sop_uid]["transfer_syntax"]
    assert stored_ts == ExplicitVRLittleEndian, stored_ts
    a = read_dataset(io.BytesIO(got.dataset), is_implicit_VR=True, is_little_endian=True)
    b = read_dataset(io.BytesIO(q.stored_dataset(box, inst.sop_uid)), is_implicit_VR=False,
                     is_little_endian=True)
    assert [e.tag for e in a] == [e.tag for e in b]
    for eb in b:
        ea = a[eb.tag]
        if eb.VR == "SQ":
            assert len(ea.value) == len(eb.value), eb.tag
        else:
            assert ea.value == eb.value or str(ea.value) == str(eb.value), eb.tag


def test_get_cancel(box, data):
    """C-CANCEL during a C-GET of 200 instances: final 0xFE00, the association still works."""
    seq = q.last_seq(box)
    r = q.pn_get(box.port, q.query("STUDY", StudyInstanceUID=data.bulk_study),
                 storage={q.SC_IMAGE: [ExplicitVRLittleEndian]}, cancel_after=1)
    assert r.final_status == 0xFE00, \
        f"C-GET cancelled after the first pending: final 0x{r.final_status:04X} after " \
        f"{len(r.received)} of {N_BULK} instances"
    assert 1 <= len(r.received) < N_BULK, f"{len(r.received)} instances received"
    done = r.count("NumberOfCompletedSuboperations")
    assert done == len(r.received), f"completed {done}, received {len(r.received)}"
    remaining = r.count("NumberOfRemainingSuboperations")
    assert remaining is None or remaining == N_BULK - done, \
        f"remaining {remaining} after {done} of {N_BULK}"
    got = {x.sop_uid: (x.transfer_syntax, x.dataset) for x in r.received}
    assert_identical(box, got, set(got), "cancelled C-GET")
    audit_check(box, seq, "retrieve-get", set(got), status=0xFE00)
    box.assert_serving()


def test_retrieve_limit(cairn_factory, data):
    """max_query_results also bounds one retrieve: more instances -> 0xA700, nothing sent."""
    c = cairn_factory("limit", start=False, peers=BASIC_PEERS)
    c.config["dicom"]["max_query_results"] = 3
    c.write_config()
    c.start()
    st = data.corpus.study("A1")
    q.store_files(c.port, [i.path for i in st.instances])
    r = q.pn_get(c.port, q.query("STUDY", StudyInstanceUID=st.uid))
    assert r.final_status == 0xA700 and not r.received, \
        f"C-GET of {len(st.instances)} instances with limit 3: 0x{r.final_status:04X}, " \
        f"{len(r.received)} received"
    assert str(r.final.get("ErrorComment", "")), "0xA700 without an Error Comment"
    se = st.series[1]  # 2 instances: within the limit
    r = q.pn_get(c.port, q.query("SERIES", StudyInstanceUID=st.uid, SeriesInstanceUID=se.uid))
    assert r.final_status == 0 and len(r.received) == 2


def test_retrieve_needs_right(box):
    """NORETRIEVE (retrieve = false) proposing only GET or MOVE: A-ASSOCIATE-RJ 1/1/1."""
    for model in (q.STUDY_GET, q.STUDY_MOVE, q.PATIENT_GET, q.PATIENT_MOVE):
        with w.Wire(box.port) as conn:
            conn.send(w.assoc_rq("CAIRN", "NORETRIEVE", [(1, model, [w.IMPLICIT_LE])]))
            out = conn.outcome(10)
        assert out.kind == "rj" and (out.result, out.source, out.reason) == (1, 1, 1), \
            f"NORETRIEVE proposing only {model}: {out}"


# --------------------------------------------------------------------------------------------
# C-MOVE
# --------------------------------------------------------------------------------------------

def test_move_movescu_to_storescp(box, data, ports, tmp_path):
    st = data.corpus.study("A2")
    expected = {i.sop_uid for i in st.instances}
    seq = q.last_seq(box)
    with q.StoreSCP(tmp_path / "scp", port=ports.scp) as scp:
        rc, status, log, _ = q.movescu(box.port, dcmtk_keys("STUDY", dict(StudyInstanceUID=st.uid)),
                                       "STORESCP")
        assert rc == 0 and status == 0x0000, \
            f"movescu: rc={rc} final={status if status is None else hex(status)}\n{log[-3000:]}"
        time.sleep(0.2)
        got = q.part10_datasets(scp.outdir)
    assert_identical(box, got, expected, "C-MOVE to storescp", originals_of(data))
    audit_check(box, seq, "retrieve-move", expected, destination="STORESCP", status=0)


@pytest.mark.parametrize("level", ["SERIES", "IMAGE"])
def test_move_pynetdicom_to_storescp(box, data, ports, tmp_path, level):
    keys, expected = get_keys(data, level)
    with q.StoreSCP(tmp_path / "scp", port=ports.scp) as scp:
        r = q.pn_move(box.port, q.query(level, **keys), "STORESCP")
        time.sleep(0.2)
        got = q.part10_datasets(scp.outdir)
    assert r.final_status == 0x0000, f"C-MOVE {level}: final 0x{r.final_status:04X}"
    assert r.count("NumberOfCompletedSuboperations") == len(expected)
    pendings = [x for x in r.responses if x.Status in q.PENDING]
    for p in pendings:
        assert "NumberOfRemainingSuboperations" in p and "NumberOfCompletedSuboperations" in p,\
            f"pending C-MOVE response without counts:\n{p}"
    assert_identical(box, got, expected, f"C-MOVE {level}", originals_of(data))


def test_move_sends_stored_syntax(box, data, ports, tmp_path):
    """C-MOVE "sends each instance in its stored syntax": an Implicit VR LE object reaches a
    destination that accepts everything (storescp +xa) in Implicit VR LE, bytes unchanged."""
    with q.StoreSCP(tmp_path / "scp", port=ports.scp) as scp:
        r = q.pn_move(box.port, q.query("IMAGE", StudyInstanceUID=data.impl_study,
                                         SeriesInstanceUID=data.impl_series,
                                         SOPInstanceUID=data.impl_sop), "STORESCP")
        time.sleep(0.2)
        got = q.part10_datasets(scp.outdir)
    assert r.final_status == 0x0000, f"final 0x{r.final_status:04X}"
    assert_identical(box, got, {data.impl_sop}, "C-MOVE of an Implicit VR LE object",
                     {data.impl_sop: data.impl_file})


def test_move_odd_length_dataset(box, data, ports, tmp_path):
    """image_dfl.dcm (Deflated Explicit VR LE) has an odd-length data set. PS3.8 Annex E wants
    every PDV of even length, so the box must still deliver it to a strict (DCMTK) receiver;
    what arrives is the stored data set, at most padded with one trailing NUL byte."""
    stored = q.stored_dataset(box, data.odd_sop)
    t0 = time.monotonic()
    with q.StoreSCP(tmp_path / "scp", port=ports.scp) as scp:
        r = q.pn_move(box.port, q.query("IMAGE", StudyInstanceUID=data.odd_study,
                                         SeriesInstanceUID=data.odd_series,
                                         SOPInstanceUID=data.odd_sop), "STORESCP")
        time.sleep(0.2)
        got = q.part10_datasets(scp.outdir)
        log = scp.log.read_text(errors="replace")
    elapsed = time.monotonic() - t0
    assert r.final_status == 0x0000 and data.odd_sop in got, (
        f"odd-length ({len(stored)} bytes) deflated data set: final 0x{r.final_status:04X} "
        f"after {elapsed:.1f}s, storescp holds {sorted(got)}\nstorescp log:\n{log[-1500:]}")
    body = got[data.odd_sop][1]
    assert body in (stored, stored + b"\0"), "received data set is not the stored one"


@pytest.mark.parametrize("client", ["movescu", "pynetdicom"])
def test_move_unknown_destination(box, data, client):
    seq = q.last_seq(box)
    st = data.corpus.study("B1")
    t0 = time.monotonic()
    if client == "movescu":
        rc, status, log, _ = q.movescu(box.port, dcmtk_keys("STUDY", dict(StudyInstanceUID=st.uid)),
                                       "NOSUCHAE")
    else:
        status = q.pn_move(box.port, q.query("STUDY", StudyInstanceUID=st.uid),
                           "NOSUCHAE").final_status
    assert status == 0xA801, f"unknown destination: {status if status is None else hex(status)}"
    assert time.monotonic() - t0 < 10
    rows = q.audit_after(box, seq, "retrieve-move")
    assert rows and "NOSUCHAE" in str(rows[-1]["detail"]), f"no audit of the refused move: {rows}"


@pytest.mark.parametrize("dest", ["DOWNSCP", "CLOSER"])
@pytest.mark.parametrize("client", ["movescu", "pynetdicom"])
def test_move_destination_down(box, data, dest, client):
    """Destination refuses the TCP connection (DOWNSCP) or accepts and drops it at once
    (CLOSER): 0xA702 quickly, no hang."""
    st = data.corpus.study("B1")
    t0 = time.monotonic()
    if client == "movescu":
        rc, status, log, _ = q.movescu(box.port, dcmtk_keys("STUDY", dict(StudyInstanceUID=st.uid)),
                                       dest, timeout=60)
    else:
        status = q.pn_move(box.port, q.query("STUDY", StudyInstanceUID=st.uid), dest).final_status
    elapsed = time.monotonic() - t0
    assert status == 0xA702, f"{dest} down: final {status if status is None else hex(status)}"
    assert elapsed < 10, f"{dest} down: answer took {elapsed:.1f}s"
    box.assert_serving()


# --------------------------------------------------------------------------------------------
# a requester killed in the middle of a big C-GET
# --------------------------------------------------------------------------------------------

def test_interrupted_get_frees_association(cairn_factory, tmp_path):
    n = 300
    c = cairn_factory("interrupted", peers=BASIC_PEERS, max_associations=1)
    study = q.uid("qr-interrupted", "study")
    files = q.tiny_instances(tmp_path / "big", n, "qr-interrupted", study_uid=study,
                             pixel_rows=512, modality="CT")
    q.storescu(c.port, [p for p, _ in files], timeout=600)
    assert c.instance_count() == n
    # the storescu association must be gone before the slot is free
    deadline = time.monotonic() + 5
    while not q.echo_ok(c.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    out = tmp_path / "got"
    proc = q.getscu(c.port, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}"], out,
                    popen=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*"))) < 5:
            assert proc.poll() is None, f"getscu ended (rc={proc.returncode}) before 5 files"
            assert time.monotonic() < deadline, "getscu received nothing within 60 s"
            time.sleep(0.02)
        assert proc.poll() is None, "getscu already finished: no interruption"
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    received = len(list(out.glob("*")))
    assert received < n, f"getscu got all {n} instances before the kill"
    print(f"getscu killed after {received} of {n} instances")
    ok_at = None
    while time.monotonic() - t_kill < 2.0:
        if q.echo_ok(c.port, timeout=2):
            ok_at = time.monotonic() - t_kill
            break
        time.sleep(0.05)
    assert ok_at is not None, \
        f"no association possible within 2 s of killing getscu (max_associations = 1)\n" \
        f"{c.log_tail(15)}"
    # and it still serves queries and retrieves
    answers, final = q.pn_find(c.port, q.query("STUDY", StudyInstanceUID=study,
                                               NumberOfStudyRelatedInstances=""))
    assert int(final.Status) == 0 and len(answers) == 1 and \
        int(answers[0].NumberOfStudyRelatedInstances) == n
    path, sop = files[n - 1]
    r = q.pn_get(c.port, q.query("IMAGE", StudyInstanceUID=study,
                                 SeriesInstanceUID=q.uid("qr-interrupted", "series"),
                                 SOPInstanceUID=sop),
                 storage={q.SC_IMAGE: [ExplicitVRLittleEndian]})
    assert r.final_status == 0 and [x.sop_uid for x in r.received] == [sop]
    assert r.received[0].dataset == dataset_bytes(path)
