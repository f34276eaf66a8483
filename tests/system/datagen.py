"""Deterministic test instances made from pydicom's small sample files."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from harness import TEST_FILES


@dataclass
class Instance:
    path: Path
    sop_class: str
    sop_uid: str
    study_uid: str
    series_uid: str
    patient_id: str


def uid(*parts) -> str:
    """A deterministic 2.25 UID (at most 44 characters) from `parts`."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def make_instances(out_dir: Path, n: int, seed: str, per_study=(25, 50),
                   templates=("MR_small.dcm", "CT_small.dcm")) -> list[Instance]:
    """n copies of the templates with fresh UIDs, grouped 25-50 per study, one series each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bases = [pydicom.dcmread(TEST_FILES / t) for t in templates]
    out: list[Instance] = []
    i = 0
    study_no = 0
    while i < n:
        size = min(rng.randint(*per_study), n - i)
        base = bases[study_no % len(bases)]
        study_uid = uid(seed, "study", study_no)
        series_uid = uid(seed, "series", study_no)
        pid = "P" + hashlib.sha256(f"{seed}/{study_no}".encode()).hexdigest()[:10].upper()
        for k in range(size):
            ds = base.copy()
            ds.file_meta = FileMetaDataset(base.file_meta)
            sop = uid(seed, "sop", i)
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.PatientID = pid
            ds.PatientName = f"GEN^STUDY{study_no}"
            ds.InstanceNumber = k + 1
            path = out_dir / f"{i:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            out.append(Instance(path, str(ds.SOPClassUID), sop, study_uid, series_uid, pid))
            i += 1
        study_no += 1
    return out


def make_one(path: Path, *, sop_uid: str, study_uid: str, series_uid: str,
             patient_name: str = "ONE^TEST", patient_id: str = "ONE1", modality: str | None = None,
             study_date: str | None = None, template: str = "CT_small.dcm",
             tweak: str | None = None) -> Instance:
    ds = pydicom.dcmread(TEST_FILES / template)
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if modality:
        ds.Modality = modality
    if study_date:
        ds.StudyDate = study_date
    if tweak is not None:
        ds.ImageComments = tweak
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Instance(path, str(ds.SOPClassUID), sop_uid, study_uid, series_uid, patient_id)


def make_big(path: Path, pixel_bytes: int, seed: int = 7) -> tuple[str, str]:
    """A Part 10 Secondary Capture with `pixel_bytes` of OW pixel data, streamed to disk.

    Returns (SOP Instance UID, sha256 of the data set bytes), both computed while writing so
    the object never sits in memory.
    """
    assert pixel_bytes % 2 == 0
    rows = 16384
    cols = pixel_bytes // (rows * 2)
    assert rows * cols * 2 == pixel_bytes
    sop = uid("big", seed, pixel_bytes)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = uid("big-study", seed)
    ds.SeriesInstanceUID = uid("big-series", seed)
    ds.PatientName = "BIG^OBJECT"
    ds.PatientID = "BIG1"
    ds.Modality = "OT"
    ds.StudyDate = "20240101"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.save_as(path, enforce_file_format=True)
    # Hash the data set part written so far, then append Pixel Data (7FE0,0010) OW.
    with open(path, "rb") as f:
        head = f.read()
    _, off = _meta_end(head)
    h = hashlib.sha256(head[off:])
    rng = random.Random(seed)
    block = bytearray(rng.randbytes(1 << 20))
    with open(path, "ab") as f:
        el = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes)
        f.write(el)
        h.update(el)
        left = pixel_bytes
        i = 0
        while left:
            struct.pack_into("<Q", block, 0, i)
            chunk = block if left >= len(block) else block[:left]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return sop, h.hexdigest()


def _meta_end(head: bytes) -> tuple[dict, int]:
    pos = 132
    while True:
        group, _elem = struct.unpack_from("<HH", head, pos)
        if group != 2:
            return {}, pos
        vr = head[pos + 4: pos + 6]
        if vr in (b"OB", b"UN", b"SQ", b"UT", b"OW", b"UC", b"UR"):
            (n,) = struct.unpack_from("<I", head, pos + 8)
            pos += 12 + n
        else:
            (n,) = struct.unpack_from("<H", head, pos + 6)
            pos += 8 + n
