"""C-GET and C-MOVE of compressed images (docs/interface.md, "Query/retrieve").

pydicom's own RLE and JPEG test files are stored as they are (each with fresh UIDs). A requester
that offers the stored syntax first (DCMTK getscu +xr, +xy) gets the stored data set byte for
byte; one that offers only uncompressed syntaxes gets it decompressed, and its pixels equal
pydicom's decoding of the original file. An object the box cannot decompress (JPEG-LS: no codec
in this build) is a failed sub-operation named in the final response and the box's log, and the
association is still released cleanly: DCMTK getscu, which never reads the identifier of a
C-GET-RSP, used to end in "DUL P-Data PDU arrived" after its release request.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import qrlib as q
from harness import (DCMTK_ENV, DEFAULT_PEERS, TEST_FILES, dataset_bytes, free_port, managed,
                     meta_uid, read_meta, wait_port)

RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"

# name -> (pydicom test file, stored syntax)
SOURCES = {
    "rle-mr": ("MR_small_RLE.dcm", RLE),
    "rle-rgb": ("SC_rgb_rle.dcm", RLE),
    "jpeg-baseline": ("SC_rgb_jpeg_dcmtk.dcm", JPEG_BASELINE),
    "jpeg-lossless": ("SC_rgb_jpeg_gdcm.dcm", JPEG_LOSSLESS),
    "jpeg-ls": ("MR_small_jpeg_ls_lossless.dcm", JPEG_LS),
}


class Obj:
    def __init__(self, name: str, base: Path):
        src, ts = SOURCES[name]
        ds = pydicom.dcmread(TEST_FILES / src)
        assert ds.file_meta.TransferSyntaxUID == ts, (src, ds.file_meta.TransferSyntaxUID)
        self.name, self.ts, self.source = name, ts, TEST_FILES / src
        self.sop = q.uid("retrieve-compressed", name, "sop")
        self.study = q.uid("retrieve-compressed", name, "study")
        self.series = q.uid("retrieve-compressed", name, "series")
        ds.SOPInstanceUID = self.sop
        ds.file_meta.MediaStorageSOPInstanceUID = self.sop
        ds.StudyInstanceUID = self.study
        ds.SeriesInstanceUID = self.series
        ds.PatientID = f"RC-{name}"
        self.path = base / f"{name}.dcm"
        ds.save_as(self.path, enforce_file_format=True)
        self.sop_class = str(ds.SOPClassUID)

    def keys(self) -> list[str]:
        return ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={self.study}"]


@pytest.fixture(scope="module")
def objs(tmp_path_factory) -> dict[str, Obj]:
    base = tmp_path_factory.mktemp("retrieve-compressed-files")
    return {n: Obj(n, base) for n in SOURCES}


@pytest.fixture(scope="module")
def box(tmp_path_factory, objs):
    with managed(tmp_path_factory.mktemp("retrieve-compressed-box")) as c:
        status = q.store_files(c.port, [o.path for o in objs.values()])
        assert set(status.values()) == {0}, status
        rows = q.stored_rows(c)
        for o in objs.values():
            assert rows[o.sop]["transfer_syntax"] == o.ts, (o.name, rows[o.sop])
        yield c
        assert c.running, f"cairnd died during the tests\n{c.log_tail()}"


def getscu_clean(box, obj: Obj, out: Path, extra=()) -> tuple[int | None, str]:
    rc, status, log = q.getscu(box.port, obj.keys(), out, extra=list(extra))
    assert rc == 0, f"getscu {extra} of {obj.name}: rc={rc}\n{log[-3000:]}"
    assert "Release Failed" not in log and "DUL P-Data PDU arrived" not in log, \
        f"getscu {extra} of {obj.name}: release not clean\n{log[-3000:]}"
    return status, log


def pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def received_file(out: Path, sop: str) -> Path:
    files = [p for p in out.rglob("*") if p.is_file()]
    for p in files:
        meta, _, _ = read_meta(p)
        if meta_uid(meta, 3) == sop:
            return p
    raise AssertionError(f"{sop} not received; files: {files}")


@pytest.mark.parametrize("name,option", [("rle-mr", "+xr"), ("rle-rgb", "+xr"),
                                         ("jpeg-baseline", "+xy"), ("jpeg-lossless", "+xs")])
def test_getscu_offering_the_stored_syntax_gets_it_unchanged(box, objs, tmp_path, name, option):
    o = objs[name]
    out = tmp_path / "got"
    status, log = getscu_clean(box, o, out, [option])
    assert status == 0x0000, f"getscu {option} of {name}: final {status}\n{log[-3000:]}"
    got = q.part10_datasets(out)
    assert set(got) == {o.sop}, f"received {sorted(got)}"
    ts, body = got[o.sop]
    assert ts == o.ts, f"{name} arrived in {ts}, stored in {o.ts}"
    assert body == q.stored_dataset(box, o.sop), f"{name}: data set differs from the stored one"
    assert body == dataset_bytes(o.path), f"{name}: data set differs from the file sent"


def assert_same_pixels(name: str, received: Path, original: Path, lossy: bool):
    """pydicom's decoding of what arrived equals its decoding of the original. For lossy JPEG
    two conforming decoders may round the inverse DCT and the YCbCr->RGB step differently
    (ISO 10918-2 allows it): there, no sample may differ by more than 1, and at most 2 %."""
    a, b = pixels(received), pixels(original)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    what = (f"{name}: decompressed pixels differ from pydicom's decoding of the original "
            f"({int(np.count_nonzero(diff))} of {a.size} samples, max |diff| {int(diff.max())})")
    if lossy:
        assert diff.max() <= 1 and np.count_nonzero(diff) <= a.size // 50, what
    else:
        assert np.array_equal(a, b), what


@pytest.mark.parametrize("client", ["getscu", "pynetdicom-implicit"])
@pytest.mark.parametrize("name", ["rle-mr", "rle-rgb", "jpeg-baseline", "jpeg-lossless"])
def test_offering_little_endian_gets_it_decompressed(box, objs, tmp_path, name, client):
    o = objs[name]
    out = tmp_path / "got"
    if client == "getscu":
        # getscu's default proposal: Explicit VR LE, Big Endian, Implicit VR LE
        status, log = getscu_clean(box, o, out)
        assert status == 0x0000, f"getscu of {name}: final {status}\n{log[-3000:]}"
        want_ts = ExplicitVRLittleEndian
        path = received_file(out, o.sop)
    else:
        r = q.pn_get(box.port, q.query("STUDY", StudyInstanceUID=o.study),
                     storage={o.sop_class: [ImplicitVRLittleEndian]})
        assert r.final_status == 0 and len(r.received) == 1, f"final 0x{r.final_status:04X}"
        got = r.received[0]
        want_ts = ImplicitVRLittleEndian
        assert got.transfer_syntax == want_ts
        ds = pydicom.dcmread(__import__("io").BytesIO(got.dataset), force=True)
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = want_ts
        ds.file_meta.MediaStorageSOPClassUID = got.sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = got.sop_uid
        out.mkdir()
        path = out / "implicit.dcm"
        ds.save_as(path, enforce_file_format=True, implicit_vr=True, little_endian=True)
    got = pydicom.dcmread(path)
    assert got.file_meta.TransferSyntaxUID == want_ts
    assert not got["PixelData"].is_undefined_length, "pixel data still encapsulated"
    original = pydicom.dcmread(o.path)
    assert_same_pixels(name, path, o.path, lossy=o.ts == JPEG_BASELINE)
    if original.SamplesPerPixel == 3:
        assert got.PhotometricInterpretation == "RGB" and got.PlanarConfiguration == 0
    else:
        assert got.PhotometricInterpretation == original.PhotometricInterpretation
    # everything but the pixel description is the stored object's
    for kw in ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "Rows", "Columns",
               "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel"):
        assert got.get(kw) == original.get(kw), kw


def test_unconvertible_object_fails_alone_and_the_release_is_clean(box, objs, tmp_path):
    """JPEG-LS (no decoder in this build) to a requester offering only Little Endian: the
    sub-operation fails, the final response lists the instance, getscu releases cleanly."""
    o = objs["jpeg-ls"]
    status, log = getscu_clean(box, o, tmp_path / "got")
    assert status == 0xB000, f"final {status}\n{log[-3000:]}"
    r = q.pn_get(box.port, q.query("STUDY", StudyInstanceUID=o.study),
                 storage={o.sop_class: [ExplicitVRLittleEndian, ImplicitVRLittleEndian]})
    assert r.final_status == 0xB000 and not r.received
    assert r.failed_uids() == [o.sop], r.failed_uids()
    assert r.count("NumberOfFailedSuboperations") == 1
    deadline = time.monotonic() + 5
    while o.sop not in box.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    log_text = box.log_path.read_text(errors="replace")
    assert any(o.sop in line and "sub-operation failed" in line
               for line in log_text.splitlines()), "the box's log does not name the instance"
    box.assert_serving()


def test_pynetdicom_gets_each_object_in_the_first_syntax_it_can(box, objs):
    """Several contexts for one class: the stored syntax's context is used when there is one,
    Explicit VR LE (decompressed) otherwise."""
    o = objs["rle-mr"]
    r = q.pn_get(box.port, q.query("STUDY", StudyInstanceUID=o.study),
                 storage=[(o.sop_class, [ExplicitVRLittleEndian]), (o.sop_class, [RLE])])
    assert r.final_status == 0 and len(r.received) == 1
    assert r.received[0].transfer_syntax == RLE
    assert r.received[0].dataset == q.stored_dataset(box, o.sop)


def test_move_to_an_uncompressed_destination_decompresses(tmp_path_factory, objs, tmp_path):
    """C-MOVE to a storescp that accepts only uncompressed syntaxes (its default): the RLE and
    JPEG objects arrive decompressed, the JPEG-LS one is a failed sub-operation."""
    scp_port = free_port()
    peers = [dict(p) for p in DEFAULT_PEERS] + [
        {"ae": "PLAINSCP", "host": "127.0.0.1", "port": scp_port, "store": True,
         "query": True, "retrieve": True}]
    with managed(tmp_path_factory.mktemp("retrieve-compressed-move"), peers=peers) as c:
        names = ["rle-mr", "jpeg-baseline", "jpeg-ls"]
        study = q.uid("retrieve-compressed", "move-study")
        files = []
        for n in names:
            ds = pydicom.dcmread(objs[n].path)
            ds.StudyInstanceUID = study
            p = tmp_path / f"{n}.dcm"
            ds.save_as(p, enforce_file_format=True)
            files.append(p)
        assert set(q.store_files(c.port, files).values()) == {0}
        out = tmp_path / "scp"
        out.mkdir()
        log = tmp_path / "storescp.log"
        with open(log, "wb") as logf:
            scp = subprocess.Popen(["/usr/bin/storescp", "-v", "-aet", "PLAINSCP", "+B", "-od",
                                    str(out), str(scp_port)],
                                   stdout=logf, stderr=subprocess.STDOUT, env=DCMTK_ENV)
        try:
            wait_port(scp_port, 10)
            r = q.pn_move(c.port, q.query("STUDY", StudyInstanceUID=study), "PLAINSCP")
            time.sleep(0.3)
        finally:
            scp.terminate()
            scp.wait(10)
        assert r.final_status == 0xB000, f"final 0x{r.final_status:04X}"
        assert r.failed_uids() == [objs["jpeg-ls"].sop], r.failed_uids()
        assert r.count("NumberOfCompletedSuboperations") == 2
        for n in ("rle-mr", "jpeg-baseline"):
            path = received_file(out, objs[n].sop)
            assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert_same_pixels(n, path, objs[n].path, lossy=objs[n].ts == JPEG_BASELINE)
