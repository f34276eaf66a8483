"""One booted box for the whole rig run (booting under TCG costs ~20 s): the Debian test image
with five 64 MiB disks in md RAID 6, the PC speaker to a wav, a tape drive on host loopback.

Environment: CAIRN_VM_DIR (work folder, default /tmp/cairn-vm), CAIRN_VM_RAID (6 or 5),
CAIRN_VM_ACCEL (tcg; kvm is tried only behind the boot timeout), CAIRN_VM_NO_CARGO=1 (use the
release binaries already built, as `tools/vm test` does after building them once).
Measured times go to $CAIRN_VM_DIR/results.json (printed by `tools/vm test`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "system"))

import rig  # noqa: E402

WORK = Path(os.environ.get("CAIRN_VM_DIR", "/tmp/cairn-vm"))
RESULTS: dict[str, object] = {}
HOST_AE = "HOSTSCP"


def record(key: str, value) -> None:
    RESULTS[key] = value
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.json").write_text(json.dumps(RESULTS, indent=2) + "\n")
    print(f"\n[rig] {key} = {value}", flush=True)


def rig_config(move_port: int) -> str:
    """The shipped cairn.toml, opened to the host for the tests: unknown callers may store,
    the host's storescp (reached as 10.0.2.2 from the guest) is a C-MOVE destination, and the
    archive writes to the real st tape drive (by its udev name) in small bundles, and the
    lifecycle does not wait for a synchronised clock (the guest has no time source)."""
    text = (rig.ROOT / "rootfs/overlay/etc/cairn/cairn.toml").read_text()
    text = text.replace("accept_unknown_peers = false", "accept_unknown_peers = true")
    assert "accept_unknown_peers = true" in text
    return text + (f"\n[[dicom.peers]]\nae = \"{HOST_AE}\"\nhost = \"{rig.GUEST_HOST}\"\n"
                   f"port = {move_port}\nstore = true\nquery = true\nretrieve = true\n"
                   "\n[archive]\nbox_id = \"RIG\"\nbundle_max_bytes = 1048576\n"
                   "bundle_max_age_secs = 3600\nbundle_max_members = 50000\n"
                   "[[archive.targets]]\nname = \"tape\"\nkind = \"tape\"\n"
                   "device = \"/dev/cairn/tape0-nst\"\n"
                   # the test guest has no time source (no network): its lifecycle passes do
                   # not wait for a synchronised clock; the clock-behind-audit check still applies
                   "\n[lifecycle]\nrequire_clock_sync = false\n")


def rig_script(tape_iqn: str) -> bytes:
    """Sourced by the image's init before cairnd starts: log in to the host's iSCSI tape
    (open-iscsi's one-shot initiator) so /dev/nst0 is there when the archive starts."""
    return (f"modprobe iscsi_tcp; modprobe st\n"
            f"t0=$(cut -d' ' -f1 /proc/uptime)\n"
            f"iscsistart -i iqn.2026-11.org.cairn.rig:box -t {tape_iqn} -g 1 -a {rig.GUEST_HOST} "
            f"-p 3260 >/var/log/iscsistart.log 2>&1\n"
            "for i in $(seq 80); do [ -c /dev/nst0 ] && break; sleep 0.25; done\n"
            "udevadm settle --timeout=10\n"
            "echo \"@@TAPE $(ls /dev/nst0 2>&1) after $(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) "
            "'BEGIN{print b-a}') s\"\n").encode()


def echo(port: int) -> bool:
    r = subprocess.run(["/usr/bin/echoscu", "-to", "5", "-ta", "5", "-td", "5", "-aec", "CAIRN",
                        "127.0.0.1", str(port)], capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.fixture(scope="session")
def tape():
    t = rig.TapeTarget(WORK / "tape")
    t.start()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def box(tape):
    rig.setup()
    image = rig.build_image(cargo=os.environ.get("CAIRN_VM_NO_CARGO") != "1")
    vmdir = WORK / "vm"
    shutil.rmtree(vmdir, ignore_errors=True)
    move_port = rig.free_port()
    accel = os.environ.get("CAIRN_VM_ACCEL", "tcg")
    extra = {"etc/cairn/rig.sh": (0o100644, rig_script(tape.IQN))}
    vm = rig.Vm(vmdir, image, raid=int(os.environ.get("CAIRN_VM_RAID", "6")), accel=accel,
                cairn_toml=rig_config(move_port), extra_files=extra)
    vm.move_port = move_port
    vm.start()
    try:
        deadline = time.monotonic() + (60 if accel == "kvm" else 240)
        ready = None
        while time.monotonic() < deadline:
            if vm.proc.poll() is not None:
                break
            if echo(vm.dicom_port):
                ready = time.monotonic() - vm.t0
                break
            time.sleep(0.5)
        if ready is None and accel == "kvm":
            # /dev/kvm here may not run a stock kernel (PVM): fall back to TCG.
            vm.stop()
            shutil.rmtree(vmdir, ignore_errors=True)
            vm = rig.Vm(vmdir, image, raid=int(os.environ.get("CAIRN_VM_RAID", "6")),
                        cairn_toml=rig_config(move_port), extra_files=extra)
            vm.move_port = move_port
            vm.start()
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and vm.proc.poll() is None:
                if echo(vm.dicom_port):
                    ready = time.monotonic() - vm.t0
                    break
                time.sleep(0.5)
        vm.ready_after = ready
        vm.wait_agent(60)
        yield vm
    finally:
        vm.stop()
        print(f"[rig] console log: {vmdir / 'console.log'}", flush=True)
