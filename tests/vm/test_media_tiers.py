"""The archive tier on the real md array: once a study's instances have a verified copy on the
real st tape, the box moves it to the archive tier (the shipped `archive_after`, three years:
the rig's studies are dated 2004) and its files get the Linux immutable attribute: `rm` as
root fails on them, and `cairnctl fsck`, run as root (it holds CAP_LINUX_IMMUTABLE, so it
checks the attribute on the array's ext4), finds every archived file carrying it.

Runs after test_media on the same boot (the study test_box stored is on the tape by then).
Alone (`tools/vm test tests/vm/test_media_tiers.py`), it stores a study, labels the rig's
blank tape and flushes the archive itself.
"""

from __future__ import annotations

import subprocess
import time

from conftest import WORK, record
from test_media import ctl, guest_db_rows


def wait_for(pred, timeout: float, what: str, period: float = 1.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def copy_something(box) -> None:
    """Standalone: a study from the host, written and verified on the rig's tape."""
    from datagen import make_instances

    src = WORK / "tier-study"
    insts = make_instances(src, 3, "vm-tier", per_study=(3, 3))
    r = subprocess.run(["/usr/bin/storescu", "-aec", "CAIRN", "-aet", "RIGSCU", "127.0.0.1",
                        str(box.dicom_port), *[str(i.path) for i in insts]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rc, out = ctl(box, "archive load --target tape --label-unreadable", timeout=300)
    assert rc == 0 or "not labelled" in out or "labelled" in out, out
    rc, out = ctl(box, "archive flush --target tape --timeout 600", timeout=660)
    assert rc == 0 and "everything verified" in out, out


def test_an_archived_file_on_the_array_is_immutable(box):
    verified = guest_db_rows(box, "SELECT count(*) FROM copies WHERE verified = 1")[0][0]
    if verified == 0:
        copy_something(box)
    t0 = time.monotonic()
    try:
        archived = wait_for(
            lambda: guest_db_rows(box, "SELECT st.study_uid, i.sha256 FROM studies st "
                                       "JOIN series se ON se.study_ref = st.id "
                                       "JOIN instances i ON i.series_ref = se.id "
                                       "WHERE st.tier = 'archive' ORDER BY i.id"),
            120, "a study in the archive tier")
    except AssertionError as e:
        # the appliance's lifecycle passes wait for a synchronised clock: say what cairnd said
        _, log = box.sh("grep -iE 'lifecycle|clock|tier' /var/log/cairnd.log | tail -5")
        raise AssertionError(f"{e}\ncairnd: {log}") from None
    record("archive_tier_after_s", round(time.monotonic() - t0, 1))
    study, sha = archived[0]
    path = f"/var/lib/cairn/objects/{sha[:2]}/{sha[2:4]}/{sha}.dcm"
    rows = guest_db_rows(box, "SELECT actor FROM audit WHERE action = 'tier-archive' "
                              "AND object = ?", (study,))
    assert rows == [("system",)], rows

    # the array is ext4 on md, and root cannot remove the file
    rc, out = box.sh("grep ' /var/lib/cairn ' /proc/mounts; cat /proc/mdstat | head -3",
                     check=True)
    assert "ext4" in out and "/dev/md" in out, out
    rc, out = box.sh(f"id -u; rm -f {path}; echo rc=$?; ls -l {path}")
    assert out.splitlines()[0] == "0", out
    assert "rc=0" not in out and "Operation not permitted" in out, out
    assert f"{sha}.dcm" in out.splitlines()[-1], out
    rc, out = box.sh(f"echo more >> {path}")
    assert rc != 0, out

    # fsck as root checks the attribute of every archived file: all carry it
    rc, out = ctl(box, "fsck --quick", timeout=300)
    assert rc == 0, out
    rc, log = box.sh("grep -c 'lacks CAP_LINUX_IMMUTABLE' /var/log/cairnd.log")
    assert int(log.strip() or 0) == 0, "cairnd could not set the attribute"
