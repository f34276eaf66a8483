"""Archive media on real kernel drivers: an st tape (Debian's tgt emulating an SSC drive over
iSCSI on the host's loopback; /dev/nst0 in the guest) and an optical disc (qemu's SCSI CD
drive, the guest's sr driver). cairnd's archive meets the tape (tgt's blank tape cannot be
told apart from a damaged one: it must not be written; then a foreign tape: left alone);
bundles are written with GNU tar, the tape ejected, and read back with mt and tar alone; a
two-session disc is written with xorriso and read through sr.
Runs after test_box (same boot): the study stored there is what gets written.
"""

from __future__ import annotations

import base64
import json
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


def test_archive_never_writes_a_tape_it_cannot_read(box, tape):
    """Debian's tgt (1.0.85) answers a fixed-block READ at the end of data of a blank tape
    with MEDIUM ERROR "medium format corrupted" instead of BLANK CHECK (real drives say blank
    check): cairn cannot tell this tape is blank, so it must not write it. The instances stay
    queued, the status says why, and the cartridge is untouched."""
    size_before = tape.tape.stat().st_size
    rc, out = ctl(box, "archive status --json")
    assert rc == 0, out
    st = json.loads(out)
    t = next(x for x in st["targets"] if x["name"] == "tape")
    assert t["drive"] == "error" and t["medium_needed"] is True, t
    assert "Input/output error" in (t["last_error"] or ""), t
    assert t["queue"]["instances"] >= 6 and st["instances_verified"] == 0, st
    rc, out = ctl(box, "archive flush --target tape --timeout 20", timeout=60)
    assert rc == 1, out  # refused, with a reason
    assert tape.tape.stat().st_size == size_before
    rc, log = box.sh("grep -c 'probing the medium failed' /var/log/cairnd.log")
    assert int(log.strip() or 0) >= 1, log


def test_tape_bundles_with_mt_and_tar_alone(box):
    """Bundles (the stored objects with a SHA-256 manifest, as cairn's bundle format lays them
    out) written to the real /dev/nst0 with GNU tar in 256 KiB records, one tape file each,
    the tape ejected and loaded, then read back with mt and tar alone."""
    restart_cairnd(box, archive=False)
    rc, out = tape_sh(box, (
        "set -e; rm -rf /tmp/b1 /tmp/b2; mkdir -p /tmp/b1/objects /tmp/b2/objects; "
        "n=0; for f in $(find /var/lib/cairn/objects -name '*.dcm' | sort); do n=$((n+1)); "
        "if [ $((n % 2)) = 1 ]; then cp $f /tmp/b1/objects/; else cp $f /tmp/b2/objects/; fi; done; "
        "for b in b1 b2; do (cd /tmp/$b && sha256sum objects/*.dcm > MANIFEST.sha256); done; "
        f"{MT} -f /dev/nst0 rewind; "
        f"{TAR} -b 512 -cf /dev/nst0 -C /tmp/b1 MANIFEST.sha256 objects; "
        f"{TAR} -b 512 -cf /dev/nst0 -C /tmp/b2 MANIFEST.sha256 objects; "
        f"{MT} -f /dev/nst0 weof 1; {MT} -f /dev/nst0 status; {MT} -f /dev/nst0 offline; echo ejected"))
    assert rc == 0 and "ejected" in out, out
    assert "File number=3" in out, out  # two tar files (st closes each with a filemark) + one mark
    rc, out = tape_sh(box, (
        f"set -e; {MT} -f /dev/nst0 load 2>/dev/null || true; {MT} -f /dev/nst0 rewind; "
        "for n in 0 1; do rm -rf /tmp/r$n; mkdir /tmp/r$n; "
        f"{MT} -f /dev/nst0 rewind; {MT} -f /dev/nst0 fsf $n; "
        f"(cd /tmp/r$n && {TAR} -b 512 -xf /dev/nst0 && sha256sum -c MANIFEST.sha256); done; "
        "ls /tmp/r0/objects /tmp/r1/objects | grep -c dcm; "
        "for f in /tmp/r0/objects/*.dcm /tmp/r1/objects/*.dcm; do "
        "b=$(basename $f); cmp $f /var/lib/cairn/objects/$(echo $b | cut -c1-2)/$(echo $b | cut -c3-4)/$b; done; "
        f"{MT} -f /dev/nst0 rewind; echo same"))
    assert rc == 0, out
    assert out.count(": OK") == 6, out
    assert out.strip().endswith("same") and "\n6\n" in out, out


def test_archive_leaves_a_foreign_tape_alone(box, tape):
    """The tape now holds tar files cairn did not write: a foreign medium, never written."""
    restart_cairnd(box, archive=True)
    size = tape.tape.stat().st_size

    def foreign():
        rc, out = ctl(box, "archive load --target tape", timeout=60)
        t = next(x for x in json.loads(ctl(box, "archive status --json")[1])["targets"]
                 if x["name"] == "tape")
        return t if t["drive"] == "foreign medium" else None

    end = time.monotonic() + 60
    t = None
    while time.monotonic() < end and not (t := foreign()):
        time.sleep(1)
    assert t, "the archive did not report the tar tape as a foreign medium"
    assert t["queue"]["instances"] >= 6, t
    assert tape.tape.stat().st_size == size


def test_optical_session_written_with_xorriso_and_read_through_sr(box):
    # Two sessions on a disc image with xorriso (the archive's optical path), MD5s recorded.
    rc, out = box.sh(
        "set -e; rm -rf /tmp/disc /tmp/disc.iso; mkdir -p /tmp/disc/s1 /tmp/disc/s2; "
        "cp /tmp/r0/objects/*.dcm /tmp/r1/objects/*.dcm /tmp/disc/s1/; cp /tmp/r0/MANIFEST.sha256 /tmp/disc/s2/; "
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
