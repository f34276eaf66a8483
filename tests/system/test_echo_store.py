"""C-ECHO and C-STORE against real peers, and every Part 10 file pydicom ships.

Each file is sent with pynetdicom from its path, so the data set bytes after the file's meta
group go on the wire unchanged, in a presentation context proposing the file's own transfer
syntax. A valid file must be stored byte for byte; the malformed and special ones are listed
in SPECIAL with the outcome their oddity calls for (docs/interface.md statuses).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from datagen import uid
from harness import TEST_FILES, managed, dataset_bytes, is_part10, meta_uid, read_meta, sha256_file

SC = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT = "1.2.840.10008.1.2"
DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


@dataclass
class Refused:
    """The daemon must refuse: one of `statuses`, or (if allowed) not accept the context."""
    statuses: set[int]
    why: str
    context_may_be_rejected: bool = False


@dataclass
class PatchMeta:
    """The file's meta group lacks what a sender needs to build the C-STORE (SOP Class/Instance
    UID or Transfer Syntax UID); send its data set bytes unchanged under a completed meta."""
    sop_class: str
    sop_instance: str | None
    transfer_syntax: str
    expect: Refused = field(default=None)


# Files in test_files that are not Part 10 (no 128-byte preamble + "DICM"): not sent.
NOT_PART10 = {
    "ExplVR_BigEndNoMeta.dcm": "bare data set, no preamble/meta",
    "ExplVR_LitEndNoMeta.dcm": "bare data set, no preamble/meta",
    "no_meta.dcm": "bare data set (CT_small without meta)",
    "rtstruct.dcm": "bare data set, no preamble/meta",
    "README.txt": "text",
    "crayons.icc": "ICC profile",
    "rtplan.dump": "text dump",
    "rtstruct.dump": "text dump",
    "test1.json": "DICOM JSON",
    "test_PN.json": "DICOM JSON",
    "zipMR.gz": "gzip of MR_small.dcm",
    "dicomdirtests/README.txt": "text",
    "dicomdirtests/TINY_ALPHA/README": "text",
}

A900_META_MISMATCH = ("meta (0002,0003) is 1.2.999.999.99.9.9999.9999.20030818153516, the data "
                      "set's (0008,0018) 1.9.999...: the C-STORE command (built from the meta) "
                      "and the data set disagree")
NO_SOP_UIDS = "the data set holds no SOP Class / SOP Instance UID at all"
NO_STUDY_UIDS = ("no Study/Series Instance UID in the data set (Type 1 in every image IOD): "
                 "missing UIDs, the index cannot place the instance")
DICOMDIR = Refused({0x0122, 0xC000},
                   "a DICOMDIR (Media Storage Directory Storage) is no network storage SOP class "
                   "and its data set has no SOP Instance UID", context_may_be_rejected=True)

SPECIAL: dict[str, Refused | PatchMeta] = {
    "MR_truncated.dcm": Refused(
        {0xC000}, "Pixel Data (7FE0,0010) declares 8192 bytes, only 8130 follow"),
    "rtplan_truncated.dcm": Refused(
        {0xA900, 0xC000}, "(300A,00B0) declares 976 bytes, 711 follow; and meta/data set "
                          "SOP Instance UIDs differ (1.2.999... vs 1.2.777...)"),
    "SC_rgb_jpeg.dcm": Refused(
        {0xC000}, "meta says JPEG Baseline (Explicit VR LE) but the data set is encoded "
                  "Implicit VR: it does not parse in the negotiated transfer syntax"),
    "badVR.dcm": Refused(
        {0xA900}, A900_META_MISMATCH + " (its IS value '1A' is a value error, not structure)"),
    "rtdose.dcm": Refused({0xA900}, A900_META_MISMATCH),
    "rtdose_1frame.dcm": Refused({0xA900}, A900_META_MISMATCH),
    "rtdose_expb.dcm": Refused({0xA900}, A900_META_MISMATCH),
    "rtdose_expb_1frame.dcm": Refused({0xA900}, A900_META_MISMATCH),
    "rtplan.dcm": Refused(
        {0xA900}, "meta (0002,0003) 1.2.999...20030903150023, data set 1.2.777...: differ"),
    "JPEGLSNearLossless_08.dcm": Refused({0xC000}, NO_STUDY_UIDS),
    "JPEGLSNearLossless_16.dcm": Refused({0xC000}, NO_STUDY_UIDS),
    "SC_rgb_jls_lossy_line.dcm": Refused({0xC000}, NO_STUDY_UIDS),
    "SC_rgb_jls_lossy_sample.dcm": Refused({0xC000}, NO_STUDY_UIDS),
    "UN_sequence.dcm": Refused({0xC000}, NO_SOP_UIDS + " (one private UN sequence)"),
    "priv_SQ.dcm": Refused({0xC000}, NO_SOP_UIDS + " (private SQ only)"),
    "no_meta_group_length.dcm": Refused(
        {0xC000}, NO_SOP_UIDS + " (the missing (0002,0000) itself is harmless)"),
    "empty_charset_LEI.dcm": PatchMeta(
        SC, "1.2.3.18.133392880203", IMPLICIT,
        Refused({0xC000}, "meta lacks (0002,0002); " + NO_SOP_UIDS)),
    "meta_missing_tsyntax.dcm": PatchMeta(
        SC, None, IMPLICIT,
        Refused({0xC000}, "meta lacks (0002,0010) and has empty UIDs; " + NO_SOP_UIDS +
                " and it starts with illegal group 0001")),
    "nested_priv_SQ.dcm": PatchMeta(
        SC, None, IMPLICIT,
        Refused({0xC000}, "meta has empty (0002,0002)/(0002,0003); " + NO_SOP_UIDS +
                " and it starts with illegal group 0001")),
    "dicomdirtests/DICOMDIR": DICOMDIR,
    "dicomdirtests/DICOMDIR-bigEnd": DICOMDIR,
    "dicomdirtests/DICOMDIR-empty.dcm": DICOMDIR,
    "dicomdirtests/DICOMDIR-implicit": DICOMDIR,
    "dicomdirtests/DICOMDIR-nooffset": DICOMDIR,
    "dicomdirtests/DICOMDIR-nopatient": DICOMDIR,
    "dicomdirtests/DICOMDIR-reordered": DICOMDIR,
    "dicomdirtests/TINY_ALPHA/DICOMDIR": DICOMDIR,
}


def all_files() -> list[str]:
    return sorted(str(p.relative_to(TEST_FILES)) for p in TEST_FILES.rglob("*") if p.is_file())


PART10 = [f for f in all_files() if is_part10(TEST_FILES / f)]


def test_file_lists_match_the_installed_test_files():
    """Nothing is skipped silently: every file is either listed as not Part 10 or sent."""
    non = {f for f in all_files() if not is_part10(TEST_FILES / f)}
    assert non == set(NOT_PART10), f"non-Part-10 files changed: {non ^ set(NOT_PART10)}"
    assert set(SPECIAL) <= set(PART10), f"stale SPECIAL entries: {set(SPECIAL) - set(PART10)}"
    assert len(PART10) >= 100


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with managed(tmp_path_factory.mktemp("echo_store")) as c:
        yield c


def test_echoscu(daemon):
    r = daemon.echo()
    assert r.returncode == 0, r.stdout + r.stderr


def test_echoscu_default_calling_ae_unknown_is_refused(daemon):
    r = daemon.echo(calling="NOBODY")
    assert r.returncode != 0, "unknown calling AE accepted although accept_unknown_peers=false"


def test_storescu_few_files(daemon):
    names = ["CT_small.dcm", "MR_small_implicit.dcm", "liver_1frame.dcm", "waveform_ecg.dcm"]
    files = [TEST_FILES / n for n in names]
    r = daemon.storescu(files, extra=["-R"])  # propose the files' own SOP classes
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert out.count("Received Store Response (Success)") == len(files), out
    for f in files:
        sop = meta_uid(read_meta(f)[0], 3)
        row = daemon.current_row(sop)
        assert row is not None, f"{f.name}: no instances row"
        assert row["source_ae"] == "STORESCU"
        stored = daemon.object_path(row["sha256"])
        assert sha256_file(stored) == row["sha256"]
    assert daemon.wait_spool_empty() == []


def build_patched(src: Path, dst: Path, p: PatchMeta) -> str:
    """Preamble + a complete meta group + the source's data set bytes; returns instance UID."""
    inst = p.sop_instance or uid("patched", src.name)

    def el(elem: int, vr: bytes, raw: bytes) -> bytes:
        if len(raw) % 2:
            raw += b"\0"
        if vr == b"OB":
            return struct.pack("<HH2sHI", 2, elem, vr, 0, len(raw)) + raw
        return struct.pack("<HH2sH", 2, elem, vr, len(raw)) + raw

    body = (el(1, b"OB", b"\0\1") + el(2, b"UI", p.sop_class.encode())
            + el(3, b"UI", inst.encode()) + el(0x10, b"UI", p.transfer_syntax.encode())
            + el(0x12, b"UI", b"1.2.826.0.1.3680043.9.7133.1"))
    meta = el(0, b"UL", struct.pack("<I", len(body))) + body
    dst.write_bytes(b"\0" * 128 + b"DICM" + meta + dataset_bytes(src))
    return inst


@pytest.mark.parametrize("name", [f for f in PART10])
def test_store_test_file(daemon, name, tmp_path):
    src = TEST_FILES / name
    spec = SPECIAL.get(name)
    send_path = src
    if isinstance(spec, PatchMeta):
        send_path = tmp_path / "patched.dcm"
        build_patched(src, send_path, spec)
        spec = spec.expect
    meta, _, _ = read_meta(send_path)
    sop_class, sop_uid, ts = meta_uid(meta, 2), meta_uid(meta, 3), meta_uid(meta, 0x10)
    sent = dataset_bytes(send_path)

    before_files = set(daemon.object_files())
    before_rows = daemon.instance_count()

    assoc = daemon.associate([(sop_class, [ts])])
    status = None
    context_rejected = False
    try:
        if not assoc.is_established:
            context_rejected = True
        else:
            try:
                rsp = assoc.send_c_store(send_path)
            except ValueError as exc:  # no accepted presentation context
                assert "presentation context" in str(exc).lower(), exc
                context_rejected = True
            else:
                assert "Status" in rsp, f"no C-STORE response (aborted?) for {name}"
                status = rsp.Status
                if status != 0x0000:
                    assert rsp.get("ErrorComment"), \
                        f"{name}: status 0x{status:04X} without an Error Comment (0000,0902)"
    finally:
        if assoc.is_established:
            assoc.release()

    if spec is None:
        assert not context_rejected, f"{name}: presentation context {sop_class}/{ts} refused"
        assert status == 0x0000, f"{name}: valid file got status 0x{status:04X}"
        row = daemon.current_row(sop_uid)
        assert row is not None, f"{name}: no current instances row"
        assert row["sop_class_uid"] == sop_class
        assert row["transfer_syntax"] == ts
        assert row["source_ae"] == "TESTSCU"
        stored = daemon.object_path(row["sha256"])
        assert stored.parent.parent.parent == daemon.data_dir / "objects"
        assert sha256_file(stored) == row["sha256"], "file hash differs from its name/row"
        # `size` is the stored file's size (or, read loosely, the data set's)
        assert row["size"] in (stored.stat().st_size, len(sent)), row["size"]
        smeta, _, preamble = read_meta(stored)
        assert preamble == b"\0" * 128, "preamble is not 128 zero bytes"
        assert meta_uid(smeta, 3) == sop_uid, "stored MediaStorageSOPInstanceUID"
        assert meta_uid(smeta, 2) == sop_class, "stored MediaStorageSOPClassUID"
        assert meta_uid(smeta, 0x10) == ts, "stored TransferSyntaxUID"
        assert dataset_bytes(stored) == sent, f"{name}: stored data set bytes differ from sent"
        gl = struct.unpack("<I", smeta[0])[0]
        assert 132 + 12 + gl == read_meta(stored)[1], "(0002,0000) group length is wrong"
    else:
        if context_rejected:
            assert spec.context_may_be_rejected, \
                f"{name}: context {sop_class}/{ts} refused; expected status {spec.statuses}"
        else:
            assert status in spec.statuses, (
                f"{name}: expected {sorted(hex(s) for s in spec.statuses)} ({spec.why}), "
                f"got 0x{status:04X}")
        assert set(daemon.object_files()) == before_files, f"{name}: refused but a file appeared"
        assert daemon.instance_count() == before_rows, f"{name}: refused but a row appeared"
    assert daemon.wait_spool_empty() == [], f"{name}: spool not empty"


def test_fsck_clean_after_all_files(daemon):
    r = daemon.fsck()
    assert r.returncode == 0, r.stdout + r.stderr
