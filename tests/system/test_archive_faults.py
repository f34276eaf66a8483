"""The archive under faults: end of medium in the middle of a bundle, a write error,
a write-protected tape, no medium, and a power cut (SIGKILL of cairnd) while a bundle is being
written. Each case ends with every stored instance verified on some volume and nothing lost.

The faults are made the way a person or the drive would make them: through the tape emulator's
documented state files (archivelib.TapeEmu), and `cairnctl archive eject|load|flush` for what
the technician does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from archivelib import MIB, ArchiveCairn, run, send
from datagen import make_big, make_instances
from harness import CAIRNCTL, finish

KIB = 1024
RECORD = 256 * KIB


@pytest.fixture
def make_box(tmp_path):
    made = []

    def make(**kw) -> ArchiveCairn:
        kw.setdefault("targets", ("tape",))
        kw.setdefault("bundle_max_bytes", 1 * MIB)
        c = ArchiveCairn(tmp_path / f"box{len(made)}", **kw)
        made.append(c)
        return c

    yield make
    errors = []
    for c in made:
        try:
            finish(c)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


def sent_set(c: ArchiveCairn) -> dict[str, str]:
    return dict(c.query("SELECT sop_instance_uid, sha256 FROM instances WHERE current = 1"))


def assert_nothing_lost(c: ArchiveCairn, sops: set[str]) -> None:
    """Every sent instance is stored, has a verified copy on some volume, no queue row is
    left, the store is consistent, and the audit chain intact."""
    stored = sent_set(c)
    assert set(stored) == sops, f"store holds {len(stored)} of {len(sops)}"
    verified = set().union(*c.verified_by_kind().values()) if c.verified_by_kind() else set()
    missing = sops - verified
    assert not missing, f"{len(missing)} instances without a verified copy\n{c.log_tail(30)}"
    assert c.queued() == 0, f"{c.queued()} queue rows left"
    fsck = c.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    audit = c.ctl("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def flush_fails(c: ArchiveCairn) -> str:
    """`archive flush` when not everything can be written: a non-zero exit saying why."""
    r = c.ctl("archive", "flush", timeout=300)
    assert r.returncode != 0, f"archive flush claimed success while instances are stuck:\n" \
                              f"{r.stdout}{r.stderr}"
    assert (r.stdout + r.stderr).strip(), "archive flush failed without a word"
    return r.stdout + r.stderr


def medium_needed(c: ArchiveCairn) -> dict:
    st = c.status_json()
    tape = next(t for t in st["targets"] if t["name"] == "tape")
    assert st["medium_needed"] is True and tape["medium_needed"] is True, st
    assert tape["queue"]["instances"] > 0, st
    return tape


def volume_of(c: ArchiveCairn, cartridge: str) -> str:
    """The volume id written in a cartridge's label (tape file 0)."""
    return json.loads(c.tape.tape_file(cartridge, 0).read_bytes().decode().strip())["volume_id"]


def volume_state(c: ArchiveCairn, vid: str) -> tuple[str, str]:
    rows = c.query("SELECT state, location FROM volumes WHERE volume_id = ?", (vid,))
    assert rows, f"volume {vid} not in the catalog"
    return rows[0]


def swap_in_blank(c: ArchiveCairn, cid: str, capacity: int = 256 * MIB) -> None:
    """The technician: `archive eject`, a new blank cartridge in, `archive load`."""
    c.ok("archive", "eject")
    assert c.tape.loaded() is None, "archive eject left the cartridge in the drive"
    c.tape.insert_blank(cid, capacity=capacity)
    time.sleep(1.1)  # volume ids carry the labelling second
    c.ok("archive", "load")


def test_end_of_medium_mid_bundle_rewrites_it_whole_on_the_next_volume(make_box, tmp_path):
    c = make_box()
    # label (1 record) + about 5 records per 1 MiB bundle: the early warning at 2 MiB falls
    # inside the second bundle
    c.tape.insert_blank("TAPE01", capacity=3 * MIB, early_warning=2 * MIB)
    insts = make_instances(tmp_path / "send", 160, seed="eom")
    c.start()
    send(c, [i.path for i in insts])
    sops = {i.sop_uid for i in insts}
    flush_fails(c)
    medium_needed(c)
    v1 = volume_of(c, "TAPE01")
    assert volume_state(c, v1)[0] == "full"
    inc = c.query("SELECT b.id, b.file_number FROM bundles b JOIN volumes v "
                  "ON v.id = b.volume_ref WHERE v.volume_id = ? AND b.state = 'incomplete'",
                  (v1,))
    assert len(inc) == 1, f"incomplete bundles on {v1}: {inc}"
    inc_id, inc_file = inc[0]
    inc_members = {r[0] for r in c.query(
        "SELECT sop_instance_uid FROM copies WHERE bundle_ref = ?", (inc_id,))}
    assert inc_members, "the incomplete bundle lists no members"
    assert not c.query("SELECT 1 FROM copies WHERE bundle_ref = ? AND verified = 1", (inc_id,))
    # it ends with a filemark: the cartridge has one more file after it
    assert c.tape.meta("TAPE01")["filemarks"] == inc_file + 1
    # read without cairn, it is visibly partial: its manifest (first member) lists files the
    # tape file does not hold, so sha256sum -c fails (README: "Reading a cairn tape")
    part = tmp_path / "partial"
    part.mkdir()
    run(["tar", "-b", "512", "-xf", c.tape.tape_file("TAPE01", inc_file), "-C", part], ok=False)
    assert (part / "MANIFEST.sha256").is_file()
    assert run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=part,
               ok=False).returncode != 0, "the incomplete bundle checks as complete"
    # the bundles before it are verified and stay so
    early = {r[0] for r in c.query(
        "SELECT c.sop_instance_uid FROM copies c JOIN bundles b ON b.id = c.bundle_ref "
        "JOIN volumes v ON v.id = b.volume_ref WHERE v.volume_id = ? AND c.verified = 1",
        (v1,))}
    assert early and not (early & inc_members)
    assert any(a["action"] == "volume-state" and a["object"] == v1 and '"full"' in a["detail"]
               for a in c.audit_rows()), "no audit row for the volume becoming full"

    swap_in_blank(c, "TAPE02")
    assert volume_state(c, v1) == ("full", "onsite_shelf")
    c.flush()
    v2 = volume_of(c, "TAPE02")
    assert v2 != v1
    on_v2 = {r[0] for r in c.query(
        "SELECT c.sop_instance_uid FROM copies c JOIN bundles b ON b.id = c.bundle_ref "
        "JOIN volumes v ON v.id = b.volume_ref WHERE v.volume_id = ? AND c.verified = 1",
        (v2,))}
    assert inc_members <= on_v2, "members of the incomplete bundle are not all on the next volume"
    assert_nothing_lost(c, sops)


def test_write_error_keeps_everything_queued_until_another_volume(make_box, tmp_path):
    c = make_box()
    c.tape.insert_blank("TAPE01", capacity=256 * MIB)
    # one shot, inside the second bundle
    c.tape.inject_write_error("TAPE01", RECORD * 8)
    insts = make_instances(tmp_path / "send", 160, seed="write-error")
    c.start()
    send(c, [i.path for i in insts])
    sops = {i.sop_uid for i in insts}
    flush_fails(c)
    medium_needed(c)
    v1 = volume_of(c, "TAPE01")
    assert volume_state(c, v1)[0] == "error"
    assert c.query("SELECT count(*) FROM bundles WHERE state = 'failed'")[0][0] >= 1
    before = set().union(*c.verified_by_kind().values()) if c.verified_by_kind() else set()
    assert before and before < sops, f"{len(before)} verified before the error"
    assert c.queued() == len(sops - before), "queue rows lost at the write error"
    swap_in_blank(c, "TAPE02")
    assert volume_state(c, v1) == ("error", "onsite_shelf")
    c.flush()
    assert_nothing_lost(c, sops)


def test_write_protected_tape_is_never_written_and_work_resumes_when_cleared(make_box,
                                                                             tmp_path):
    c = make_box()
    c.tape.insert_blank("TAPE01", capacity=256 * MIB)
    insts = make_instances(tmp_path / "send", 120, seed="protect")
    first, second = insts[:60], insts[60:]
    c.start()
    send(c, [i.path for i in first])
    c.flush()
    v1 = volume_of(c, "TAPE01")
    c.tape.set_write_protect("TAPE01", True)
    used = c.tape.bytes_used("TAPE01")
    marks = c.tape.meta("TAPE01")["filemarks"]
    send(c, [i.path for i in second])
    c.ok("archive", "load")
    flush_fails(c)
    tape = medium_needed(c)
    assert tape["queue"]["instances"] == len(second), tape
    assert "protect" in (tape["drive"] + tape["message"]).lower(), tape
    assert c.tape.bytes_used("TAPE01") == used and c.tape.meta("TAPE01")["filemarks"] == marks, \
        "cairn wrote to a write-protected tape"
    c.tape.set_write_protect("TAPE01", False)
    c.ok("archive", "load")
    c.flush()
    assert volume_state(c, v1)[0] == "append"
    assert_nothing_lost(c, {i.sop_uid for i in insts})


def test_no_medium_keeps_everything_queued_and_says_so(make_box, tmp_path):
    c = make_box()
    c.tape.init()  # an empty drive
    insts = make_instances(tmp_path / "send", 80, seed="no-medium")
    c.start()
    send(c, [i.path for i in insts])
    sops = {i.sop_uid for i in insts}
    flush_fails(c)
    tape = medium_needed(c)
    assert tape["queue"]["instances"] == len(sops), tape
    assert c.queued() == len(sops)
    text = c.ok("archive", "status")
    assert "medium" in text.lower(), f"`archive status` does not say a medium is needed:\n{text}"
    c.tape.insert_blank("TAPE01", capacity=256 * MIB)
    c.ok("archive", "load")
    c.flush()
    assert_nothing_lost(c, sops)


def test_power_cut_while_a_bundle_is_written(make_box, tmp_path):
    """SIGKILL cairnd while the tape file of a bundle grows; after restart the bundle is
    written again and verified, and GNU tar reads it."""
    c = make_box(bundle_max_bytes=1024 * MIB)
    c.tape.insert_blank("TAPE01", capacity=4096 * MIB)
    paths = []
    for k in range(24):
        p = tmp_path / "send" / f"big{k:02d}.dcm"
        p.parent.mkdir(parents=True, exist_ok=True)
        make_big(p, 8 * MIB, seed=100 + k)
        paths.append(p)
    c.start()
    send(c, paths)
    sops = set(sent_set(c))
    assert len(sops) == len(paths)
    bundle_file = c.tape.tape_file("TAPE01", 1)
    flusher = subprocess.Popen([str(CAIRNCTL), "--data", str(c.data_dir), "archive", "flush"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if bundle_file.exists() and bundle_file.stat().st_size >= 16 * MIB:
                break
            time.sleep(0.001)
        else:
            raise AssertionError(f"the bundle never started on tape\n{c.log_tail()}")
        c.kill()
        cut_at = bundle_file.stat().st_size
    finally:
        flusher.kill()  # its daemon is gone; the request file stays for the next start
        flusher.wait()
    states = c.query("SELECT state FROM bundles")
    assert states == [("writing",)], \
        f"the kill did not land during the write (bundles {states}, file {cut_at} bytes)"
    assert c.queued() == len(sops)
    c.start()
    c.flush()
    assert_nothing_lost(c, sops)
    good = c.query("SELECT file_number FROM bundles WHERE state = 'verified'")
    assert len(good) == 1, good
    # the verified bundle is a clean tar on its own tape file
    out = tmp_path / "x"
    out.mkdir()
    run(["tar", "-b", "512", "-xf", c.tape.tape_file("TAPE01", good[0][0]), "-C", out])
    run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=out)
    assert {p.stem for p in (out / "objects").glob("*.dcm")} == set(sent_set(c).values())


def test_full_disc_continues_on_the_next_disc(make_box, tmp_path):
    """The optical target: a small disc fills up; the bundle that did not fit is written whole
    to the next disc; both discs check with xorriso and every instance is verified."""
    c = make_box(targets=("disc",))
    c.disc.insert_blank("DISC01", capacity=4 * MIB)  # the smallest disc
    insts = make_instances(tmp_path / "send", 160, seed="disc-full")
    c.start()
    send(c, [i.path for i in insts])
    sops = {i.sop_uid for i in insts}
    flush_fails(c)
    st = c.status_json()
    disc = next(t for t in st["targets"] if t["name"] == "disc")
    assert disc["medium_needed"] and disc["queue"]["instances"] > 0, disc
    full = c.query("SELECT volume_id, state FROM volumes")
    assert [s for _, s in full] == ["full"], full
    verified_first = c.verified_by_kind().get("optical", set())
    assert verified_first and verified_first < sops
    c.ok("archive", "eject", "--target", "disc")
    assert c.disc.loaded() is None
    c.disc.insert_blank("DISC02", capacity=64 * MIB)
    time.sleep(1.1)
    c.ok("archive", "load")
    c.flush()
    assert_nothing_lost(c, sops)
    for did in ("DISC01", "DISC02"):
        r = run(["xorriso", "-md5", "on", "-indev", f"stdio:{c.disc.image(did)}",
                 "-check_md5_r", "FAILURE", "/", "--"])
        assert "File contents and their MD5 checksums match" in r.stdout + r.stderr, did


def test_a_tape_labelled_by_another_box_is_never_written(make_box, tmp_path):
    """A cartridge that holds another box's bundles goes into this box's drive: it is not in
    the catalog, so nothing is written to it (its bytes stay the same) and the images wait."""
    a = make_box(box_id="OTHER")
    a.tape.insert_blank("TAPE01", capacity=256 * MIB)
    a.start()
    send(a, [i.path for i in make_instances(tmp_path / "a", 40, seed="other-box")])
    a.flush()
    assert a.stop() == 0
    a.tape.eject()
    b = make_box()
    b.tape.init()
    shutil.copytree(a.tape.cdir("TAPE01"), b.tape.cdir("TAPE01"))
    b.tape.load("TAPE01")
    before = {p.name: p.read_bytes() for p in b.tape.cdir("TAPE01").iterdir()}
    insts = make_instances(tmp_path / "b", 40, seed="this-box")
    b.start()
    send(b, [i.path for i in insts])
    b.ok("archive", "load")
    flush_fails(b)
    tape = medium_needed(b)
    assert tape["queue"]["instances"] == len(insts), tape
    after = {p.name: p.read_bytes() for p in b.tape.cdir("TAPE01").iterdir()}
    assert after == before, "cairn wrote to another box's tape"
    assert not b.query("SELECT 1 FROM bundles"), "a bundle was begun on another box's tape"
    swap_in_blank(b, "TAPE02")
    b.flush()
    assert_nothing_lost(b, {i.sop_uid for i in insts})
    assert {p.name: p.read_bytes() for p in b.tape.cdir("TAPE01").iterdir()} == before


def _descendants(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out.append(k)
            out.extend(_descendants(k))
    return out


def test_power_cut_while_a_disc_session_is_written(make_box, tmp_path):
    """SIGKILL cairnd and its xorriso (a power cut takes both) while a bundle's session grows
    the disc image; after restart the bundle is written again and the disc checks clean."""
    c = make_box(targets=("disc",), bundle_max_bytes=1024 * MIB)
    c.disc.insert_blank("DISC01", capacity=1024 * MIB)
    paths = []
    for k in range(16):
        p = tmp_path / "send" / f"big{k:02d}.dcm"
        p.parent.mkdir(parents=True, exist_ok=True)
        make_big(p, 8 * MIB, seed=200 + k)
        paths.append(p)
    c.start()
    send(c, paths)
    sops = set(sent_set(c))
    image = c.disc.image("DISC01")
    deadline = time.monotonic() + 60
    while not (image.exists() and c.query("SELECT 1 FROM volumes")):
        assert time.monotonic() < deadline, "the disc was never labelled"
        time.sleep(0.05)
    label_size = image.stat().st_size
    flusher = subprocess.Popen([str(CAIRNCTL), "--data", str(c.data_dir), "archive", "flush"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if image.stat().st_size >= label_size + 16 * MIB:
                break
            time.sleep(0.001)
        else:
            raise AssertionError(f"the session never grew the image\n{c.log_tail()}")
        kids = _descendants(c.pid)
        c.kill()
        for k in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGKILL)
    finally:
        flusher.kill()
        flusher.wait()
    states = c.query("SELECT state FROM bundles")
    assert states == [("writing",)], f"the kill did not land during the write: {states}"
    assert c.queued() == len(sops)
    time.sleep(0.5)
    c.start()
    c.flush()
    assert_nothing_lost(c, sops)
    r = run(["xorriso", "-md5", "on", "-indev", f"stdio:{image}", "-check_md5_r", "FAILURE",
             "/", "--"])
    assert "File contents and their MD5 checksums match" in r.stdout + r.stderr
    out = tmp_path / "x"
    bid = c.query("SELECT bundle_id FROM bundles WHERE state = 'verified'")[0][0]
    run(["xorriso", "-osirrox", "on", "-indev", f"stdio:{image}", "-extract", f"/{bid}", out])
    run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=out)
    assert {p.stem for p in (out / "objects").glob("*.dcm")} == set(sent_set(c).values())


def test_eject_writes_and_verifies_what_waits_first(make_box, tmp_path):
    """Bundles close on eject: images waiting (no size or age reached) are written and verified
    on the volume before it is unloaded and recorded where it goes."""
    c = make_box(bundle_max_bytes=256 * MIB)  # max age 1 h: nothing closes by itself
    c.tape.insert_blank("TAPE01", capacity=256 * MIB)
    insts = make_instances(tmp_path / "send", 30, seed="eject-flush")
    c.start()
    send(c, [i.path for i in insts])
    time.sleep(2.5)
    assert c.queued() == len(insts) and not c.query("SELECT 1 FROM bundles")
    c.ok("archive", "eject", "--location", "offsite_vault")
    assert c.tape.loaded() is None
    vid = volume_of(c, "TAPE01")
    assert volume_state(c, vid) == ("ejected", "offsite_vault")
    assert_nothing_lost(c, {i.sop_uid for i in insts})
    on_it = {r[0] for r in c.query(
        "SELECT c.sop_instance_uid FROM copies c JOIN bundles b ON b.id = c.bundle_ref "
        "JOIN volumes v ON v.id = b.volume_ref WHERE v.volume_id = ? AND c.verified = 1",
        (vid,))}
    assert on_it == {i.sop_uid for i in insts}
