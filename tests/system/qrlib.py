"""Helpers for the query/retrieve system tests (docs/interface.md, "Query/retrieve").

- A controlled corpus (`build_corpus`): four patients, six studies, nine series, thirteen
  instances with known names (Latin-1 and UTF-8), dates, times, accessions and modalities, so
  every C-FIND answer set can be predicted exactly; bulk instances (`tiny_instances`).
- Loading instances into a box (`store_files`, raw data set bytes via pynetdicom, or storescu).
- C-FIND / C-GET / C-MOVE clients: pynetdicom (`pn_find`, `pn_get`, `pn_move`) and DCMTK
  (`dcmtk_find`, `getscu`, `movescu`, `StoreSCP`), always by full path with TCP_NODELAY=1.
- The box's view of what it stored (`stored_rows`, `stored_dataset`): data set bytes after the
  meta group of the object file objects/aa/bb/<sha>.dcm.
- `Orthanc`: /usr/sbin/Orthanc on loopback with its own storage and REST helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt, transport
from pynetdicom.dsutils import decode

from datagen import uid
from harness import (DCMTK_ENV, TEST_FILES, dataset_bytes, free_port, meta_uid, read_meta,
                     wait_port)

FINDSCU = "/usr/bin/findscu"
MOVESCU = "/usr/bin/movescu"
GETSCU = "/usr/bin/getscu"
STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
ECHOSCU = "/usr/bin/echoscu"

PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MODELS = {
    ("P", "find"): PATIENT_FIND, ("P", "move"): PATIENT_MOVE, ("P", "get"): PATIENT_GET,
    ("S", "find"): STUDY_FIND, ("S", "move"): STUDY_MOVE, ("S", "get"): STUDY_GET,
}
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

PENDING = {0xFF00, 0xFF01}


# --------------------------------------------------------------------------------------------
# The controlled corpus
# --------------------------------------------------------------------------------------------

@dataclass
class Inst:
    path: Path
    sop_uid: str
    sop_class: str
    number: int
    series: "Series" = field(repr=False)


@dataclass
class Series:
    uid: str
    modality: str
    number: int
    description: str
    body_part: str
    study: "Study" = field(repr=False)
    instances: list[Inst] = field(default_factory=list)


@dataclass
class Study:
    key: str
    uid: str
    date: str
    time: str
    accession: str
    study_id: str
    description: str
    referring: str
    patient: "Patient" = field(repr=False)
    series: list[Series] = field(default_factory=list)

    @property
    def instances(self) -> list[Inst]:
        return [i for s in self.series for i in s.instances]

    @property
    def modalities(self) -> set[str]:
        return {s.modality for s in self.series}


@dataclass
class Patient:
    pid: str
    name: str
    charset: str | None
    birth_date: str
    sex: str
    issuer: str
    studies: list[Study] = field(default_factory=list)


@dataclass
class Corpus:
    patients: list[Patient]

    @property
    def studies(self) -> list[Study]:
        return [s for p in self.patients for s in p.studies]

    @property
    def series(self) -> list[Series]:
        return [se for st in self.studies for se in st.series]

    @property
    def instances(self) -> list[Inst]:
        return [i for st in self.studies for i in st.instances]

    def study(self, key: str) -> Study:
        return next(s for s in self.studies if s.key == key)

    def patient(self, pid: str) -> Patient:
        return next(p for p in self.patients if p.pid == pid)


YAMADA = "Yamada^Tarou=山田^太郎=やまだ^たろう"
MUELLER = "Müller^Hans"

# (PatientID, name, charset, birth date, sex, issuer, studies); study = (key, date, time,
# accession, study id, description, referring physician, [(modality, number, description,
# body part, instance count)])
CORPUS_SPEC = [
    ("QR-MUE", MUELLER, "ISO_IR 100", "19580312", "M", "HOSP-A", [
        ("A1", "20190304", "081500", "ACC-1001", "1001", "CT THORAX", "Weiss^Anna",
         [("CT", 1, "AXIAL", "CHEST", 3), ("CT", 2, "CORONAL", "CHEST", 2)]),
        ("A2", "20210708", "143000", "ACC-1002", "1002", "MR KNEE", "Weiss^Anna",
         [("MR", 1, "T1 SAG", "KNEE", 2), ("CT", 2, "SCOUT", "KNEE", 1)]),
    ]),
    ("QR-YAM", YAMADA, "ISO_IR 192", "19750620", "M", "HOSP-B", [
        ("B1", "20221130", "235959", "ACC-2001", "2001", "MR HEAD", "Sato^Ken",
         [("MR", 1, "FLAIR", "HEAD", 2)]),
    ]),
    ("QR-DOE", "Doe^Jane", "ISO_IR 100", "19901201", "F", "HOSP-A", [
        ("C1", "20180101", "000000", "ACC-3001", "3001", "CT ABDOMEN", "House^Greg",
         [("CT", 1, "ABD", "ABDOMEN", 1)]),
        ("C2", "20240229", "120000", "XYZ-3002", "3002", "MR SPINE", "House^Greg",
         [("MR", 1, "SAG T2", "LSPINE", 1)]),
    ]),
    ("QR-DOJ", "Doe^John", None, "19851010", "M", "HOSP-A", [
        ("D1", "20200615", "093000", "ACC-4001", "4001", "CT HEAD", "Weiss^Anna",
         [("CT", 1, "AX HEAD", "HEAD", 1)]),
    ]),
]


def build_corpus(out_dir: Path, seed: str = "qr-corpus") -> Corpus:
    """Write the corpus as Part 10 files (Explicit VR Little Endian) under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    templates = {"CT": pydicom.dcmread(TEST_FILES / "CT_small.dcm"),
                 "MR": pydicom.dcmread(TEST_FILES / "MR_small.dcm")}
    patients = []
    n = 0
    for pid, name, charset, birth, sex, issuer, studies in CORPUS_SPEC:
        p = Patient(pid, name, charset, birth, sex, issuer)
        patients.append(p)
        for key, date, tm, acc, sid, desc, ref, series in studies:
            st = Study(key, uid(seed, "study", key), date, tm, acc, sid, desc, ref, p)
            p.studies.append(st)
            for modality, number, sdesc, body, count in series:
                se = Series(uid(seed, "series", key, number), modality, number, sdesc, body, st)
                st.series.append(se)
                for k in range(count):
                    base = templates[modality]
                    ds = base.copy()
                    ds.file_meta = FileMetaDataset(base.file_meta)
                    sop = uid(seed, "sop", key, number, k)
                    if charset:
                        ds.SpecificCharacterSet = charset
                    elif "SpecificCharacterSet" in ds:
                        del ds.SpecificCharacterSet
                    ds.SOPInstanceUID = sop
                    ds.file_meta.MediaStorageSOPInstanceUID = sop
                    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds.PatientName = name
                    ds.PatientID = pid
                    ds.IssuerOfPatientID = issuer
                    ds.PatientBirthDate = birth
                    ds.PatientSex = sex
                    ds.StudyInstanceUID = st.uid
                    ds.StudyDate = date
                    ds.StudyTime = tm
                    ds.AccessionNumber = acc
                    ds.StudyID = sid
                    ds.StudyDescription = desc
                    ds.ReferringPhysicianName = ref
                    ds.SeriesInstanceUID = se.uid
                    ds.Modality = modality
                    ds.SeriesNumber = number
                    ds.SeriesDescription = sdesc
                    ds.BodyPartExamined = body
                    ds.InstanceNumber = k + 1
                    path = out_dir / f"{n:03d}_{key}_{number}_{k}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    se.instances.append(Inst(path, sop, str(ds.SOPClassUID), k + 1, se))
                    n += 1
    return Corpus(patients)


def tiny_instances(out_dir: Path, n: int, seed: str, *, study_uid: str,
                   patient_id: str = "QR-TINY", pixel_rows: int | None = None,
                   modality: str = "OT") -> list[tuple[Path, str]]:
    """n Secondary Capture instances in one series: minimal (no pixel data, ~400 bytes) or,
    with pixel_rows=512, CT-sized (512x512 16-bit seeded random pixels, ~512 kB).
    One file is encoded by pydicom; the others are byte copies with the SOP Instance UID
    (fixed length) replaced, which is much faster than encoding each."""
    import random

    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = uid(seed, "series")
    base = uid(seed, "sop")
    placeholder = f"{base}.9999999"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC_IMAGE
    meta.MediaStorageSOPInstanceUID = placeholder
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = placeholder
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.PatientName = "TINY^MANY" if not pixel_rows else "BIG^MANY"
    ds.Modality = modality
    ds.StudyDate = "20230301"
    ds.SeriesNumber = 1
    if pixel_rows:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = pixel_rows
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = random.Random(seed).randbytes(pixel_rows * pixel_rows * 2)
    template = out_dir / "template.dcm.tmp"
    ds.save_as(template, enforce_file_format=True)
    raw = template.read_bytes()
    template.unlink()
    head = raw[:4096]
    assert head.count(placeholder.encode()) == 2 and raw.count(placeholder.encode()) == 2
    out = []
    for k in range(n):
        sop = f"{base}.{1000000 + k}"
        path = out_dir / f"{k:05d}.dcm"
        path.write_bytes(raw.replace(placeholder.encode(), sop.encode()))
        out.append((path, sop))
    return out


def jpeg_instance(path: Path, *, sop_uid: str, study_uid: str, series_uid: str,
                  patient_id: str, patient_name: str) -> tuple[str, str]:
    """A JPEG Baseline Secondary Capture (compressed: cannot be sent in an uncompressed
    context). Returns (SOP class, transfer syntax)."""
    ds = pydicom.dcmread(TEST_FILES / "SC_rgb_jpeg_dcmtk.dcm")
    assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.InstanceNumber = 99
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)


# --------------------------------------------------------------------------------------------
# Loading the box
# --------------------------------------------------------------------------------------------

def file_contexts(paths) -> dict[tuple[str, str], list[Path]]:
    by = {}
    for p in paths:
        meta, _, _ = read_meta(Path(p))
        by.setdefault((meta_uid(meta, 2), meta_uid(meta, 0x10)), []).append(Path(p))
    return by


def store_files(port: int, paths, calling: str = "TESTSCU", called: str = "CAIRN",
                require_success: bool = True) -> dict[Path, int]:
    """C-STORE each Part 10 file's data set bytes unchanged (pynetdicom chunked send),
    one association per ~100 presentation contexts. Returns {path: status}."""
    by = file_contexts(paths)
    results: dict[Path, int] = {}
    for key in [k for k in by if not (k[0] and k[1])]:
        for p in by.pop(key):
            results[p] = -3  # meta lacks SOP class or transfer syntax: not sent
    keys = list(by)
    for start in range(0, len(keys), 100):
        chunk = keys[start:start + 100]
        ae = AE(ae_title=calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        for cls, ts in chunk:
            ae.add_requested_context(cls, [ts])
        with client_socket_options():
            assoc = ae.associate("127.0.0.1", port, ae_title=called)
        assert assoc.is_established, f"cannot associate to store {len(chunk)} contexts"
        try:
            for key in chunk:
                accepted = any(c.abstract_syntax == key[0] and c.transfer_syntax[0] == key[1]
                               for c in assoc.accepted_contexts)
                for p in by[key]:
                    if not accepted:
                        results[p] = -1
                        continue
                    st = assoc.send_c_store(p)
                    results[p] = st.Status if "Status" in st else -2
        finally:
            assoc.release()
    if require_success:
        bad = {str(p): hex(s) if s >= 0 else s for p, s in results.items() if s != 0}
        assert not bad, f"C-STORE failures while loading: {bad}"
    return results


def storescu(port: int, paths, calling: str = "STORESCU", timeout: float = 300):
    r = subprocess.run(
        [STORESCU, "-aet", calling, "-aec", "CAIRN", "-to", "20", "-ta", "20", "-td", "60",
         "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)
    assert r.returncode == 0, f"storescu failed rc={r.returncode}\n{r.stdout}{r.stderr}"
    return r


# --------------------------------------------------------------------------------------------
# What the box stored
# --------------------------------------------------------------------------------------------

def stored_rows(cairn) -> dict[str, dict]:
    """SOP Instance UID -> current instances row (with sha256, transfer_syntax, ...)."""
    con = cairn.db()
    con.row_factory = __import__("sqlite3").Row
    try:
        return {r["sop_instance_uid"]: dict(r) for r in
                con.execute("SELECT * FROM instances WHERE current = 1")}
    finally:
        con.close()


def stored_dataset(cairn, sop_uid: str) -> bytes:
    row = cairn.current_row(sop_uid)
    assert row is not None, f"box holds no current row for {sop_uid}"
    return dataset_bytes(cairn.object_path(row["sha256"]))


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


# --------------------------------------------------------------------------------------------
# pynetdicom clients
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def client_socket_options(rcvbuf: int | None = None, nodelay: bool = True):
    """While active, pynetdicom's requestor sockets get TCP_NODELAY (no Nagle/delayed-ACK
    stalls of ~40 ms per message) and optionally a small SO_RCVBUF (a slow reader: the box
    feels back-pressure). Only for the calling test's own associations."""
    orig = transport.AssociationSocket._create_socket

    def patched(self, address):
        sock = orig(self, address)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    transport.AssociationSocket._create_socket = patched
    try:
        yield
    finally:
        transport.AssociationSocket._create_socket = orig


def qr_ae(calling: str = "TESTSCU") -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = 15
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    return ae


def pn_find(port: int, ident: Dataset, model: str = "S", calling: str = "TESTSCU",
            transfer_syntaxes=None) -> tuple[list[Dataset], Dataset]:
    """C-FIND; returns (pending identifiers, final status data set). The identifiers are
    decoded afresh from the bytes on the wire, so their elements are still raw (undecoded)
    until accessed: a test can look at the exact bytes of a value."""
    ae = qr_ae(calling)
    sop = MODELS[(model, "find")]
    ae.add_requested_context(sop, transfer_syntaxes or UNCOMPRESSED)
    raw: list[bytes] = []

    def on_recv(event):
        m = event.message
        if m.command_set.get("Status") in PENDING and m.data_set is not None:
            raw.append(m.data_set.getvalue())

    with client_socket_options():
        assoc = ae.associate("127.0.0.1", port, ae_title="CAIRN",
                             evt_handlers=[(evt.EVT_DIMSE_RECV, on_recv)])
    assert assoc.is_established, f"association for C-FIND not established ({model})"
    n, final = 0, None
    try:
        ts = next(c for c in assoc.accepted_contexts if c.abstract_syntax == sop).transfer_syntax[0]
        for status, _identifier in assoc.send_c_find(ident, sop):
            assert status is not None and "Status" in status, \
                "no C-FIND response (DIMSE timeout or association aborted)"
            if status.Status in PENDING:
                assert final is None, "pending response after the final one"
                n += 1
            else:
                final = status
    finally:
        if assoc.is_established:
            assoc.release()
    assert final is not None, "no final C-FIND response"
    assert len(raw) == n, f"{n} pending responses but {len(raw)} identifiers captured"
    answers = [decode(BytesIO(b), ts.is_implicit_VR, ts.is_little_endian) for b in raw]
    return answers, final


def query(level: str, **keys) -> Dataset:
    """An identifier: QueryRetrieveLevel plus keys (keyword=value; value None -> empty)."""
    ds = Dataset()
    cs = keys.pop("SpecificCharacterSet", None)
    if cs:
        ds.SpecificCharacterSet = cs
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, "" if v is None else v)
    return ds


def storage_roles(classes):
    return [build_role(c, scp_role=True) for c in classes]


@dataclass
class Received:
    sop_uid: str
    sop_class: str
    transfer_syntax: str
    dataset: bytes


@dataclass
class RetrieveResult:
    responses: list[Dataset]
    received: list[Received]
    identifiers: list[Dataset | None] = field(default_factory=list)

    @property
    def final(self) -> Dataset:
        assert self.responses, "no C-GET/C-MOVE response at all"
        return self.responses[-1]

    @property
    def final_status(self) -> int:
        return int(self.final.Status)

    @property
    def final_identifier(self) -> Dataset | None:
        return self.identifiers[-1] if self.identifiers else None

    def failed_uids(self) -> list[str]:
        """(0008,0058) Failed SOP Instance UID List of the final response ([] if absent)."""
        ident = self.final_identifier
        if ident is None or "FailedSOPInstanceUIDList" not in ident:
            return []
        v = ident.FailedSOPInstanceUIDList
        if isinstance(v, str):
            return [v] if v else []
        return [str(x) for x in v]

    def count(self, keyword: str) -> int | None:
        v = self.final.get(keyword)
        return None if v is None else int(v)


def pn_get(port: int, ident: Dataset, model: str = "S", calling: str = "TESTSCU",
           storage=None, cancel_after: int | None = None,
           store_status: int = 0x0000) -> RetrieveResult:
    """C-GET with pynetdicom; storage = {SOP class: [transfer syntaxes]} or [(class, [ts])]
    (one presentation context each) proposed with the SCP role. cancel_after=N sends
    C-CANCEL after the N-th pending response."""
    storage = storage or {CT_IMAGE: [ExplicitVRLittleEndian], MR_IMAGE: [ExplicitVRLittleEndian]}
    pairs = list(storage.items()) if isinstance(storage, dict) else list(storage)
    received: list[Received] = []

    def on_store(event):
        rq = event.request
        received.append(Received(
            str(rq.AffectedSOPInstanceUID), str(rq.AffectedSOPClassUID),
            str(event.context.transfer_syntax), rq.DataSet.getvalue()))
        return store_status

    ae = qr_ae(calling)
    sop = MODELS[(model, "get")]
    ae.add_requested_context(sop, UNCOMPRESSED)
    for cls, tss in pairs:
        ae.add_requested_context(cls, tss)
    ae.add_requested_context(VERIFICATION, [ImplicitVRLittleEndian])
    with client_socket_options():
        assoc = ae.associate("127.0.0.1", port, ae_title="CAIRN",
                             ext_neg=storage_roles(dict.fromkeys(c for c, _ in pairs)),
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established, "association for C-GET not established"
    responses, identifiers = [], []
    try:
        ctx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == sop)
        msg_id = 7
        pendings = 0
        for status, identifier in assoc.send_c_get(ident, sop, msg_id=msg_id):
            assert status is not None and "Status" in status, \
                "no C-GET response (DIMSE timeout or association aborted)"
            responses.append(status)
            identifiers.append(identifier)
            if status.Status in PENDING:
                pendings += 1
                if cancel_after is not None and pendings == cancel_after:
                    assoc.send_c_cancel(msg_id, ctx.context_id)
        if cancel_after is not None:
            # the association must still work after the cancelled operation
            ae_echo_ok = _echo_on(assoc)
            assert ae_echo_ok, "association unusable after C-CANCEL"
    finally:
        if assoc.is_established:
            assoc.release()
    return RetrieveResult(responses, received, identifiers)


def _echo_on(assoc) -> bool:
    if not any(c.abstract_syntax == VERIFICATION for c in assoc.accepted_contexts):
        return True
    st = assoc.send_c_echo()
    return "Status" in st and st.Status == 0


def pn_move(port: int, ident: Dataset, dest: str, model: str = "S",
            calling: str = "TESTSCU") -> RetrieveResult:
    ae = qr_ae(calling)
    sop = MODELS[(model, "move")]
    ae.add_requested_context(sop, UNCOMPRESSED)
    with client_socket_options():
        assoc = ae.associate("127.0.0.1", port, ae_title="CAIRN")
    assert assoc.is_established, "association for C-MOVE not established"
    responses, identifiers = [], []
    try:
        for status, identifier in assoc.send_c_move(ident, dest, sop):
            assert status is not None and "Status" in status, \
                "no C-MOVE response (DIMSE timeout or association aborted)"
            responses.append(status)
            identifiers.append(identifier)
    finally:
        if assoc.is_established:
            assoc.release()
    return RetrieveResult(responses, [], identifiers)


# --------------------------------------------------------------------------------------------
# DCMTK clients
# --------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"=+ INCOMING DIMSE MESSAGE =+(.*?)=+ END DIMSE MESSAGE =+", re.S)
_TYPE_RE = re.compile(r"Message Type\s*:\s*(\S+ \S+)")
_STATUS_RE = re.compile(r"DIMSE Status\s*:\s*0x([0-9A-Fa-f]{4})")


def incoming_responses(output: str) -> list[tuple[str, int | None]]:
    """(message type, DIMSE status) of every incoming message DCMTK dumped with -d."""
    out = []
    for block in _BLOCK_RE.findall(output):
        t = _TYPE_RE.search(block)
        s = _STATUS_RE.search(block)
        out.append((t.group(1) if t else "?", int(s.group(1), 16) if s else None))
    return out


def final_status_from_debug(output: str, rsp_type: str | None = None) -> int | None:
    """The DIMSE status of the last incoming response (of rsp_type, e.g. 'C-GET RSP')."""
    rsps = [s for t, s in incoming_responses(output)
            if s is not None and (rsp_type is None or t == rsp_type)]
    return rsps[-1] if rsps else None


def write_query_file(path: Path, ident: Dataset, model: str = "S") -> Path:
    """The identifier as a Part 10 file for findscu/getscu/movescu (dcmfile-in)."""
    ds = ident.copy()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MODELS[(model, "find")]
    meta.MediaStorageSOPInstanceUID = uid("query-file", str(path))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dcmtk_find(port: int, keys: list[str], outdir: Path, model: str = "S",
               query_file: Path | None = None, calling: str = "TESTSCU",
               timeout: float = 60) -> tuple[list[Dataset], int, str]:
    """findscu -X: returns (answers read back from rsp*.dcm, final status, output)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("rsp*.dcm"):
        old.unlink()
    cmd = [FINDSCU, "-d", f"-{model}", "-aet", calling, "-aec", "CAIRN", "-to", "10",
           "-ta", "10", "-td", "30", "-X", "-od", str(outdir)]
    for k in keys:
        cmd += ["-k", k]
    cmd += ["127.0.0.1", str(port)]
    if query_file is not None:
        cmd.append(str(query_file))
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=DCMTK_ENV)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode == 0, f"findscu rc={r.returncode}\n{out[-4000:]}"
    answers = [pydicom.dcmread(p, force=True) for p in sorted(outdir.glob("rsp*.dcm"))]
    status = final_status_from_debug(out, "C-FIND RSP")
    assert status is not None, f"no status in findscu output\n{out[-4000:]}"
    return answers, status, out


def getscu(port: int, keys: list[str], outdir: Path, model: str = "S",
           calling: str = "TESTSCU", extra=(), timeout: float = 120,
           popen: bool = False):
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [GETSCU, "-d", f"-{model}", "-aet", calling, "-aec", "CAIRN", "-to", "10", "-ta", "10",
           "-td", "60", "+B", "-od", str(outdir), *extra]
    for k in keys:
        cmd += ["-k", k]
    cmd += ["127.0.0.1", str(port)]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=DCMTK_ENV)
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=DCMTK_ENV)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    return r.returncode, final_status_from_debug(out, "C-GET RSP"), out


def movescu(port: int, keys: list[str], dest: str, model: str = "S", calling: str = "TESTSCU",
            timeout: float = 120):
    cmd = [MOVESCU, "-d", f"-{model}", "-aet", calling, "-aec", "CAIRN", "-aem", dest,
           "-to", "10", "-ta", "10", "-td", "60"]
    for k in keys:
        cmd += ["-k", k]
    cmd += ["127.0.0.1", str(port)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, env=DCMTK_ENV)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    return r.returncode, final_status_from_debug(out, "C-MOVE RSP"), out, time.monotonic() - t0


class StoreSCP:
    """/usr/bin/storescp writing bit-preserved files into a directory."""

    def __init__(self, outdir: Path, ae: str = "STORESCP", port: int | None = None):
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.ae = ae
        self.port = port or free_port()
        self.log = self.outdir.parent / f"storescp-{self.port}.log"
        self.proc = None

    def __enter__(self):
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [STORESCP, "-v", "-aet", self.ae, "+xa", "+B", "-od", str(self.outdir),
             "-ta", "20", "-td", "60", str(self.port)],
            stdout=logf, stderr=subprocess.STDOUT, env=DCMTK_ENV)
        logf.close()
        wait_port(self.port, 10)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def files(self) -> dict[str, Path]:
        """SOP Instance UID -> file."""
        out = {}
        for p in sorted(self.outdir.iterdir()):
            if p.is_file():
                meta, _, _ = read_meta(p)
                out[meta_uid(meta, 3)] = p
        return out


def part10_datasets(directory: Path) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (transfer syntax, data set bytes) for the Part 10 files in dir."""
    out = {}
    for p in sorted(Path(directory).rglob("*")):
        if p.is_file():
            meta, _, _ = read_meta(p)
            out[meta_uid(meta, 3)] = (meta_uid(meta, 0x10), dataset_bytes(p))
    return out


# --------------------------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------------------------

def audit_after(cairn, seq: int, action: str, timeout: float = 5.0,
                want: int = 1) -> list[dict]:
    """Audit rows with seq > `seq` and this action (waits for the writer, up to timeout);
    `detail` parsed as JSON into `detail_json`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in cairn.audit_rows() if r["seq"] > seq and r["action"] == action]
        if len(rows) >= want or time.monotonic() > deadline:
            for r in rows:
                try:
                    r["detail_json"] = json.loads(r["detail"])
                except (TypeError, ValueError):
                    r["detail_json"] = None
            return rows
        time.sleep(0.1)


def last_seq(cairn) -> int:
    if not cairn.db_path.exists():
        return 0
    return cairn.query("SELECT coalesce(max(seq), 0) FROM audit")[0][0]


def echo_ok(port: int, calling: str = "ECHOSCU", timeout: float = 10) -> bool:
    r = subprocess.run([ECHOSCU, "-aet", calling, "-aec", "CAIRN", "-to", "5", "-ta", "5",
                        "-td", "5", "127.0.0.1", str(port)],
                       capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)
    return r.returncode == 0


# --------------------------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------------------------

ORTHANC_BIN = "/usr/sbin/Orthanc"


class Orthanc:
    """/usr/sbin/Orthanc on loopback with its own storage directory and JSON config."""

    def __init__(self, base: Path, aet: str = "ORTHANC", modalities: dict | None = None,
                 extra: dict | None = None):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.config = {
            "Name": f"cairn-test-{aet}",
            "StorageDirectory": str(self.base / "storage"),
            "IndexDirectory": str(self.base / "storage"),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": modalities or {},
            "UnknownSopClassAccepted": True,
            "StorageCompression": False,
            "DicomScuTimeout": 30,
            "DicomScpTimeout": 30,
            "Plugins": [],
        }
        self.config.update(extra or {})
        self.log_path = self.base / "orthanc.log"
        self.proc = None

    def start(self, timeout: float = 30) -> "Orthanc":
        cfg = self.base / "orthanc.json"
        cfg.write_text(json.dumps(self.config, indent=2))
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([ORTHANC_BIN, str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=DCMTK_ENV)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, \
                f"Orthanc exited rc={self.proc.returncode}\n{self.log_tail()}"
            try:
                self.get("/system")
                break
            except OSError:
                assert time.monotonic() < deadline, f"Orthanc not up\n{self.log_tail()}"
                time.sleep(0.1)
        wait_port(self.dicom_port, max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def request(self, method: str, path: str, body=None, timeout: float = 120):
        import urllib.error
        import urllib.request

        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        rq = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                    method=method)
        try:
            with urllib.request.urlopen(rq, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path: str, raw: bool = False):
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=60) as r:
            body = r.read()
        return body if raw else json.loads(body)

    def post(self, path: str, body) -> tuple[int, object]:
        status, raw = self.request("POST", path, body)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def delete(self, path: str) -> int:
        return self.request("DELETE", path)[0]

    def datasets(self) -> dict[str, tuple[str, str]]:
        """SOP Instance UID -> (transfer syntax, sha256 of the data set after the meta group)
        for every instance Orthanc holds (GET /instances, /instances/{id}/file)."""
        out = {}
        tmp = self.base / "download.dcm"
        for iid in self.get("/instances"):
            tmp.write_bytes(self.get(f"/instances/{iid}/file", raw=True))
            meta, _, _ = read_meta(tmp)
            out[meta_uid(meta, 3)] = (meta_uid(meta, 0x10), sha(dataset_bytes(tmp)))
        return out
