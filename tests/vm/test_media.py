"""Archive media on real kernel drivers: an st tape (Debian's tgt emulating an SSC drive over
iSCSI on the host's loopback; /dev/nst0 in the guest) and an optical disc (qemu's SCSI CD
drive, the guest's sr driver). cairnd's archive meets the tape: tgt's blank tape cannot be
read at its start (as a new or degaussed cartridge on some drives), so the archive refuses it
and says how to label it; the person labels it with `archive load --label-unreadable`; the
archive writes its bundles to /dev/nst0, verifies them and ejects the tape, which is then read
back with mt and tar alone; a tape someone wrote their own tar onto is left alone; a
two-session disc is written with xorriso and read through sr.
Runs after test_box (same boot): the study stored there is what gets written.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
import time

from conftest import WORK, echo, record

MT = "/usr/bin/mt-st"   # busybox sh would run its own `mt`/`tar` applets for bare names
TAR = "/usr/bin/tar"


def ctl(vm, args: str, timeout: float = 60) -> tuple[int, str]:
    return vm.sh(f"cairnctl --data /var/lib/cairn {args}", timeout=timeout)


def test_tape_drive_is_real_st_with_stable_names(box):
    rc, out = box.sh("ls -l /dev/nst0 /dev/st0; readlink -f /dev/cairn/tape0-nst; "
                     "ls /dev/cairn/tape/; cat /sys/class/scsi_tape/nst0/device/model", check=True)
    assert "/dev/nst0" in out and "VIRTUAL-TAPE" in out, out
    assert "tape" in out.split("\n")[0], out  # group tape (udev rule)
    assert any(l.endswith("-nst") for l in out.split()), out  # /dev/cairn/tape/<serial>-nst


def tape_sh(vm, script: str, timeout: float = 180) -> tuple[int, str]:
    """Run a tape script in the guest (the archive is stopped meanwhile: st lets one process
    at a time open the drive)."""
    return vm.sh(script, timeout=timeout)


def restart_cairnd(vm, archive: bool) -> None:
    """Restart cairnd (SIGTERM; the image's init starts it again, as systemd's Restart= does)
    with or without the archive's [archive] section: a person using the tape drive by hand
    stops the archive first."""
    if archive:
        cmd = "cp /tmp/cairn.toml.rig /etc/cairn/cairn.toml"
    else:
        cmd = ("[ -f /tmp/cairn.toml.rig ] || cp /etc/cairn/cairn.toml /tmp/cairn.toml.rig; "
               "sed '/^\\[archive\\]/,$d' /tmp/cairn.toml.rig > /etc/cairn/cairn.toml")
    vm.sh(cmd + "; kill $(pidof cairnd); while pidof cairnd >/dev/null; do sleep 0.2; done",
          timeout=60, check=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if vm.sh("pidof cairnd >/dev/null && cairnctl --data /var/lib/cairn archive status --json "
                 ">/dev/null 2>&1")[0] == 0 and echo(vm.dicom_port):
            return
        time.sleep(0.5)
    raise AssertionError("cairnd did not come back")


TAPE: dict[str, object] = {}


def status_tape(vm) -> tuple[dict, dict]:
    rc, out = ctl(vm, "archive status --json")
    assert rc == 0, out
    st = json.loads(out)
    return st, next(x for x in st["targets"] if x["name"] == "tape")


def guest_db_rows(vm, sql: str, args=()) -> list[tuple]:
    """Query a copy of the box's cairn.db (with its WAL) on the host (the image has no sqlite3)."""
    # tar's warnings (a WAL that grows while it is read) go to a file, never into the base64.
    rc, b64 = vm.sh("cd /var/lib/cairn && /usr/bin/tar -cf - cairn.db $(ls cairn.db-wal 2>/dev/null) "
                    "2>/tmp/db-tar.err | base64 | tr -d '\\n'", timeout=120)
    assert rc == 0, b64[-500:]
    d = WORK / "db-copy"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(b64))) as t:
        t.extractall(d)
    c = sqlite3.connect(d / "cairn.db")
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def test_archive_refuses_a_tape_it_cannot_read_and_says_what_to_do(box, tape):
    """Debian's tgt (1.0.85) answers a READ at the start of a blank tape with MEDIUM ERROR
    ("medium format corrupted") instead of BLANK CHECK, as some real drives do for a new or
    degaussed cartridge: cairn cannot tell what the tape holds, so it must not write it on its
    own. The instances stay queued, the status and a refused load say why and name the
    explicit action, and the cartridge is untouched."""
    size_before = tape.tape.stat().st_size
    st, t = status_tape(box)
    assert t["drive"] == "unreadable medium" and t["medium_needed"] is True, t
    assert "Input/output error" in (t["last_error"] or ""), t
    assert "cannot be read at its start" in t["message"], t
    assert "archive load --label-unreadable" in t["message"], t
    assert t["queue"]["instances"] >= 6 and st["instances_verified"] == 0, st
    rc, out = ctl(box, "archive status")
    assert rc == 0 and "cannot be read at its start" in out and "--label-unreadable" in out, out
    rc, out = ctl(box, "archive flush --target tape --timeout 20", timeout=60)
    assert rc == 1, out  # refused, with a reason
    rc, out = ctl(box, "archive load --target tape", timeout=120)
    assert rc == 1, out  # a load is refused too, and says what to do
    assert "cannot be read at its start" in out and "archive load --label-unreadable" in out, out
    assert tape.tape.stat().st_size == size_before
    rc, log = box.sh("grep -c 'cannot be read at its beginning' /var/log/cairnd.log")
    assert int(log.strip() or 0) >= 1, log


def test_archive_labels_it_on_request_then_writes_verifies_and_ejects(box, tape):
    """The person labels the tape with the explicit action (audited with who and when), and
    cairn's archive writer puts bundles on the real /dev/nst0 (LinuxTape), reads them back,
    and unloads the tape for the offsite vault."""
    rc, out = ctl(box, "archive load --target tape --label-unreadable", timeout=300)
    assert rc == 0 and "labelled" in out, out
    st, t = status_tape(box)
    assert t["drive"] == "ready" and t["volume"]["state"] == "labelled", t
    vid = t["volume"]["volume_id"]
    rows = guest_db_rows(box, "SELECT actor, at, detail FROM audit WHERE action = "
                              "'volume-label-unreadable' AND object = ?", (vid,))
    assert len(rows) == 1, rows
    actor, at, detail = rows[0]
    assert actor.startswith("user:") and at.startswith("20"), rows
    assert "Input/output error" in json.loads(detail)["read_error"], detail
    # refused once labelled: a label is read now
    rc, out = ctl(box, "archive load --target tape --label-unreadable", timeout=120)
    assert rc == 1 and "not labelled" in out, out
    rc, out = ctl(box, "archive flush --target tape --timeout 600", timeout=660)
    assert rc == 0 and "everything verified" in out, out
    st, t = status_tape(box)
    assert st["instances_verified"] >= 6 and t["queue"]["instances"] == 0, st
    vols = json.loads(ctl(box, "archive volumes --json")[1])
    v = next(x for x in vols if x["volume_id"] == vid)
    assert v["verified_bundles"] >= 1, v
    rc, out = ctl(box, "archive eject --target tape --location offsite_vault", timeout=300)
    assert rc == 0 and "offsite_vault" in out, out
    vols = json.loads(ctl(box, "archive volumes --json")[1])
    v = next(x for x in vols if x["volume_id"] == vid)
    assert v["location"] == "offsite_vault", v
    TAPE.update(volume=vid, bundles=v["verified_bundles"])
    record("tape_bundles_written", v["verified_bundles"])


def test_tape_read_back_with_mt_and_tar_alone(box):
    """The ejected cartridge, loaded again (tgt keeps it ready after the unload) and read
    without cairn: the label (tape file 0, one
    256 KiB record of JSON), then every bundle file with tar, each checked with sha256sum -c
    against its manifest, and every object compared with the box's stored file."""
    vid, n = TAPE["volume"], int(TAPE["bundles"])
    restart_cairnd(box, archive=False)
    rc, out = tape_sh(box, (
        f"set -e; {MT} -f /dev/nst0 load 2>/dev/null || true; {MT} -f /dev/nst0 rewind; "
        f"{MT} -f /dev/nst0 setblk 0; dd if=/dev/nst0 bs=256k count=1 2>/dev/null | head -c 2048; "
        f"echo; for n in $(seq 1 {n}); do rm -rf /tmp/r$n; mkdir /tmp/r$n; "
        f"{MT} -f /dev/nst0 rewind; {MT} -f /dev/nst0 fsf $n; "
        f"(cd /tmp/r$n && {TAR} -b 512 -xf /dev/nst0 && sha256sum -c MANIFEST.sha256); done; "
        "echo objects $(ls /tmp/r*/objects | grep -c dcm); "
        "for f in /tmp/r*/objects/*.dcm; do "
        "b=$(basename $f); cmp $f /var/lib/cairn/objects/$(echo $b | cut -c1-2)/$(echo $b | cut -c3-4)/$b; done; "
        f"{MT} -f /dev/nst0 rewind; echo same"), timeout=300)
    assert rc == 0, out
    label = json.loads(out[out.index("{"):out.index("}") + 1])
    assert label["format"] == "cairn-volume" and label["volume_id"] == vid, label
    assert "FAILED" not in out and out.count("objects/") >= 6, out
    assert out.count(": OK") == 6 + 3 * n, out  # objects + index.csv, AUDIT-HEAD.json, holds.csv each
    assert "\nobjects 6\n" in out and out.strip().endswith("same"), out


def test_archive_leaves_a_foreign_tape_alone(box, tape, tmp_path_factory):
    """Someone wrote their own tar onto the cartridge (as a tape from another system would
    be): a foreign medium, never written, while a newly stored image waits for a volume."""
    from datagen import make_instances

    rc, out = tape_sh(box, (
        f"set -e; {MT} -f /dev/nst0 rewind; {MT} -f /dev/nst0 setblk 0; "
        f"{TAR} -b 512 -cf /dev/nst0 -C /tmp/r1 objects; {MT} -f /dev/nst0 rewind; echo written"))
    assert rc == 0 and "written" in out, out
    restart_cairnd(box, archive=True)
    insts = make_instances(tmp_path_factory.mktemp("late"), 1, "vm-rig-late", per_study=(1, 1))
    r = subprocess.run(["/usr/bin/storescu", "-aec", "CAIRN", "-aet", "RIGSCU", "127.0.0.1",
                        str(box.dicom_port), str(insts[0].path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    size = tape.tape.stat().st_size

    def foreign():
        rc, out = ctl(box, "archive load --target tape", timeout=60)
        t = status_tape(box)[1]
        return t if t["drive"] == "foreign medium" and t["medium_needed"] else None

    end = time.monotonic() + 60
    t = None
    while time.monotonic() < end and not (t := foreign()):
        time.sleep(1)
    assert t, "the archive did not report the tar tape as a foreign medium needing a volume"
    assert t["queue"]["instances"] >= 1, t
    rc, out = ctl(box, "archive load --target tape --label-unreadable", timeout=120)
    assert rc == 1 and "not labelled" in out, out  # data was read: never labelled this way
    assert tape.tape.stat().st_size == size


def test_optical_session_written_with_xorriso_and_read_through_sr(box):
    # Two sessions on a disc image with xorriso (the archive's optical path), MD5s recorded.
    rc, out = box.sh(
        "set -e; rm -rf /tmp/disc /tmp/disc.iso; mkdir -p /tmp/disc/s1 /tmp/disc/s2; "
        "cp /tmp/r*/objects/*.dcm /tmp/disc/s1/; cp /tmp/r1/MANIFEST.sha256 /tmp/disc/s2/; "
        "xorriso -md5 on -outdev stdio:/tmp/disc.iso -volid CAIRN-RIG -map /tmp/disc/s1 /s1 "
        "-close off -commit 2>&1 | tail -2; "
        "xorriso -md5 on -dev stdio:/tmp/disc.iso -map /tmp/disc/s2 /s2 -close off -commit 2>&1 | tail -2; "
        "xorriso -indev stdio:/tmp/disc.iso -toc 2>&1 | grep -i 'session'; "
        "xorriso -md5 on -indev stdio:/tmp/disc.iso -check_md5_r sorry / 2>&1 | tail -1",
        timeout=120)
    assert rc == 0, out
    assert out.count("ISO session") >= 2, out
    # Bring the disc to the host and put it in a SCSI CD drive; the guest reads it through sr.
    rc, b64 = box.sh("base64 /tmp/disc.iso | tr -d '\\n'", timeout=120)
    assert rc == 0
    iso = WORK / "disc.iso"
    iso.write_bytes(base64.b64decode(b64))
    box.qmp.cmd("blockdev-add", **{"driver": "raw", "node-name": "cd0", "read-only": True,
                                   "file": {"driver": "file", "filename": str(iso), "read-only": True}})
    box.qmp.cmd("device_add", driver="scsi-cd", drive="cd0", id="cd0", bus="scsi0.0",
                **{"scsi-id": 7, "lun": 0})
    rc, out = box.sh("for i in $(seq 40); do [ -b /dev/sr0 ] && break; sleep 0.25; done; udevadm settle; "
                     "readlink -f /dev/cairn/optical0; mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd && "
                     "ls /mnt/cd && cd /mnt/cd/s1 && sha256sum *.dcm", timeout=60)
    assert rc == 0, out
    assert "/dev/sr0" in out and "s1" in out and "s2" in out, out
    sums = [l.split() for l in out.splitlines() if l.endswith(".dcm")]
    assert len(sums) == 6, out
    for digest, name in sums:
        assert name == f"{digest}.dcm", (digest, name)   # each file still hashes to its name
    box.sh("umount /mnt/cd", timeout=30)
    record("disc_iso_bytes", iso.stat().st_size)
