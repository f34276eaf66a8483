"""The RAID 5 variant: a box whose blank disks were provisioned as RAID 5 (cairn.raid=5 on the
kernel command line). Runs last: the RAID 6 box of the other modules is shut down first.
Pull a disk -> the bay is named and the speaker sounds within the same bounds as RAID 6; slide
a new disk in -> the box adds it, rebuilds, and the alarm clears.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

import rig
from conftest import WORK, echo, record, rig_config
from test_box import alarm, array, wait_for


@pytest.fixture(scope="module")
def box5(box):
    box.stop()  # one box at a time on this machine
    image = rig.build_image(cargo=os.environ.get("CAIRN_VM_NO_CARGO") != "1")
    d = WORK / "vm5"
    shutil.rmtree(d, ignore_errors=True)
    vm = rig.Vm(d, image, raid=5, cairn_toml=rig_config(rig.free_port()))
    vm.start()
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and not echo(vm.dicom_port):
            time.sleep(0.5)
        vm.wait_agent(60)
        yield vm
    finally:
        vm.stop()


def test_raid5_pull_names_bay_and_sounds_then_swap_rebuilds(box5):
    a = wait_for(lambda: (lambda a: a if a["health"] == "ok" and a["sync_action"] == "idle" else None)(array(box5)),
                 120, "the initial RAID 5 resync")
    assert a["level"] == "raid5" and len(a["members"]) == 5, a
    t = box5.unplug(2)
    al = wait_for(lambda: (lambda al: al if any(e["kind"] == "disk-failed" and e["bay"] == 2
                                                 for e in al["events"]) else None)(alarm(box5)),
                  10, "the alarm to name bay 2", period=0.05)
    record("raid5_bay_named_after_pull_s", round(time.monotonic() - t, 2))
    assert time.monotonic() - t <= 2.5
    first = wait_for(lambda: box5.watch.first_growth_after(t), 10, "the speaker")
    assert first - t <= 3.0
    a = array(box5)
    # RAID 5 with one disk gone has no redundancy left: critical, not merely degraded.
    assert a["health"] in ("critical", "degraded"), a
    record("raid5_health_after_one_pull", a["health"])
    box5.plug(2)
    a = wait_for(lambda: (lambda a: a if a["health"] == "ok" and a["sync_action"] == "idle"
                          and len(a["members"]) == 5 else None)(array(box5)),
                 300, "the RAID 5 rebuild", period=0.5)
    al = wait_for(lambda: (lambda al: al if not al["events"] else None)(alarm(box5)), 30,
                  "the alarm to clear")
    assert al["sounding"] is False
