"""The archive on real kernel drivers: an st tape (Debian's tgt emulating an SSC drive over
iSCSI on the host's loopback; /dev/nst0 in the guest), written by cairnd's archive, verified,
ejected, then read back with mt and GNU tar alone; and an optical session written with
xorriso, read back through the guest's sr driver after qemu puts the disc in a SCSI CD drive.
Runs after test_box (same boot): the study stored there is what gets archived.
"""

from __future__ import annotations

import base64
import json
import time

from conftest import WORK, record

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


def test_archive_writes_verifies_and_ejects_the_tape(box):
    rc, out = ctl(box, "archive status --json")
    assert rc == 0, out
    st = json.loads(out)
    tape = next(t for t in st["targets"] if t["name"] == "tape")
    assert tape["drive"] == "ready", tape
    assert tape["queue"]["instances"] >= 6 or st["instances_verified"] >= 6, st
    t0 = time.monotonic()
    rc, out = ctl(box, "archive flush --target tape --timeout 300", timeout=330)
    assert rc == 0, out
    record("tape_flush_s", round(time.monotonic() - t0, 1))
    st = json.loads(ctl(box, "archive status --json")[1])
    tape = next(t for t in st["targets"] if t["name"] == "tape")
    assert tape["queue"]["instances"] == 0, tape
    assert tape["last_verified"] and tape["last_verified"]["state"] == "verified", tape
    assert st["instances_verified"] >= 6, st
    volume = tape["volume"]["volume_id"]
    rc, out = ctl(box, "archive eject --target tape", timeout=300)
    assert rc == 0, out
    vols = json.loads(ctl(box, "archive volumes --json")[1])
    v = next(x for x in vols if x["volume_id"] == volume)
    assert v["state"] == "ejected" and v["location"] == "onsite_shelf", v
    box.tape_volume = volume


def test_tape_reads_back_with_mt_and_tar_alone(box):
    volume = getattr(box, "tape_volume", None)
    assert volume, "the archive test did not leave a volume"
    # The cartridge went offline on eject: load it again, as a person would.
    rc, out = box.sh(f"{MT} -f /dev/nst0 load 2>&1; {MT} -f /dev/nst0 rewind && {MT} -f /dev/nst0 status",
                     timeout=120)
    assert rc == 0, out
    # File 0: the label, one 256 KiB record of JSON.
    rc, out = box.sh(f"dd if=/dev/nst0 bs=262144 count=1 2>/dev/null | tr -d ' '", check=True)
    label = json.loads(out.strip())
    assert label["format"] == "cairn-volume" and label["volume_id"] == volume, label
    # File 1: the bundle, a POSIX tar in 256 KiB records.
    rc, out = box.sh(f"{MT} -f /dev/nst0 rewind && {MT} -f /dev/nst0 fsf 1 && rm -rf /tmp/tape-x && "
                     f"mkdir /tmp/tape-x && cd /tmp/tape-x && {TAR} -b 512 -xf /dev/nst0 && "
                     "sha256sum -c MANIFEST.sha256 && ls objects | wc -l", timeout=120)
    assert rc == 0, out
    assert out.count(": OK") >= 8, out  # index.csv, AUDIT-HEAD.json and six objects
    assert out.strip().split("\n")[-1] == "6", out
    head = json.loads(box.sh("cat /tmp/tape-x/AUDIT-HEAD.json", check=True)[1])
    assert head["format"] == "cairn-bundle" and head["volume_id"] == volume, head
    # Byte for byte the files on the array (named by their SHA-256).
    rc, out = box.sh("cd /tmp/tape-x/objects && for f in *.dcm; do "
                     "cmp \"$f\" /var/lib/cairn/objects/$(echo $f | cut -c1-2)/$(echo $f | cut -c3-4)/$f "
                     "|| exit 1; done; echo same", timeout=60)
    assert rc == 0 and out.strip().endswith("same"), out
    box.sh(f"{MT} -f /dev/nst0 rewind; {MT} -f /dev/nst0 offline", timeout=60)


def test_optical_session_written_with_xorriso_and_read_through_sr(box):
    # Two sessions on a disc image with xorriso (the archive's optical path), MD5s recorded.
    rc, out = box.sh(
        "set -e; rm -rf /tmp/disc /tmp/disc.iso; mkdir -p /tmp/disc/s1 /tmp/disc/s2; "
        "cp /tmp/tape-x/objects/*.dcm /tmp/disc/s1/; cp /tmp/tape-x/index.csv /tmp/disc/s2/; "
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
    rc, out = box.sh("for i in $(seq 40); do [ -b /dev/sr0 ] && break; sleep 0.25; done; "
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
