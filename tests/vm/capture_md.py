"""Capture md sysfs trees from the rig's guest (real kernel, real md) into fixture folders shaped
like tests/fixtures/md: `sys/block/mdN/md/...` (every readable attribute, as the kernel wrote
it), `dev-<kname>/{state,slot,errors,block}`, `sys/class/block/<kname>/{dev,size[,partition]}` and
`dev/disk/by-path/*` links. Bays are those of board/qemu-x86_64-scsi.

States: clean, degraded (bay 3 failed with mdadm --fail), recovering (a blank disk added, the
rebuild slowed so it is caught mid-way), check (a scrub running over a member with garbage
written behind md's back), check-done (the scrub finished: mismatch_cnt > 0).
cairnd is kept stopped (CAIRND=no) so only mdadm changes the array.
Run by `tools/vm capture-md`.
"""

from __future__ import annotations

import base64
import io
import shutil
import tarfile
import time
from pathlib import Path

import rig

GUEST_CAPTURE = r"""
S=/tmp/cap/$STATE; rm -rf "$S"; mkdir -p "$S"
for md in /sys/block/md*; do
  n=${md##*/}; d=$S/sys/block/$n/md; mkdir -p "$d"
  for f in "$md"/md/*; do
    [ -f "$f" ] || continue
    cat "$f" > "$d/${f##*/}" 2>/dev/null || rm -f "$d/${f##*/}"
  done
  for dev in "$md"/md/dev-*; do
    [ -d "$dev" ] || continue
    k=${dev##*/dev-}; mkdir -p "$d/dev-$k"
    for a in state slot errors; do cat "$dev/$a" > "$d/dev-$k/$a"; done
    ln -s "../../../../class/block/$k" "$d/dev-$k/block"
  done
done
for b in /sys/class/block/sd*; do
  [ -e "$b" ] || continue
  k=${b##*/}; mkdir -p "$S/sys/class/block/$k"
  cat "$b/dev" > "$S/sys/class/block/$k/dev"; cat "$b/size" > "$S/sys/class/block/$k/size"
  [ -f "$b/partition" ] && cat "$b/partition" > "$S/sys/class/block/$k/partition"
done
mkdir -p "$S/dev/disk/by-path"
for l in /dev/disk/by-path/*; do
  ln -s "../../$(readlink "$l" | sed 's|.*/||')" "$S/dev/disk/by-path/${l##*/}"
done
cd /tmp/cap && tar -czf - "$STATE" | base64 | tr -d '\n'
"""

README = """# md sysfs trees captured from a real kernel

Captured by `tools/vm capture-md` (tests/vm/capture_md.py) from the rig's guest: Debian's
{kernel} kernel, md RAID 6 over five 64 MiB virtio-scsi disks made by the image's
provision-array, bays as in `board/qemu-x86_64-scsi/board.toml`
(`/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:N:0` = bay N, whole disks, no partitions).
Every readable attribute of `sys/block/md127/md/` is kept as the kernel wrote it; the
`dev-<kname>/block` links point at `sys/class/block/<kname>` as in tests/fixtures/md. They are
the real-kernel counterpart of the hand-made tests/fixtures/md trees, for cairn-hal/cairn-raid
tests.

| folder | what it is |
|---|---|
| `clean` | md127 RAID 6 over bays 1-5, in sync, idle |
| `degraded` | bay 3 failed (`mdadm --fail`): faulty, still listed, degraded 1 |
| `recovering` | bay 3 removed, a blank disk added in its place, recovery caught mid-way (speed capped) |
| `check` | a scrub (`sync_action=check`) running after garbage was written to bay 2's data area behind md's back |
| `check-done` | that scrub finished: idle, `mismatch_cnt` > 0 |
"""


def capture(vm: rig.Vm, state: str, dest: Path) -> None:
    rc, out = vm.sh(f"STATE={state}\n" + GUEST_CAPTURE, timeout=60)
    assert rc == 0, out
    data = base64.b64decode(out.strip())
    target = dest / state
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        t.extractall(dest, filter="tar")
    print(f"[capture] {state}: {sum(1 for _ in target.rglob('*'))} entries", flush=True)


def wait(vm: rig.Vm, cond: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if vm.sh(cond)[0] == 0:
            return
        time.sleep(0.3)
    raise TimeoutError(cond)


def main(dest: Path, work: Path) -> int:
    rig.setup()
    image = rig.build_image(cargo=False)
    shutil.rmtree(work, ignore_errors=True)
    vm = rig.Vm(work, image, extra_files={"etc/cairn/rig.sh": (0o100644, b"CAIRND=no\n")})
    vm.start()
    try:
        vm.wait_console("@@ARRAY", 240)
        vm.wait_agent(60)
        md = "/sys/block/md127/md"
        sh = lambda c: vm.sh(c, timeout=120, check=True)  # noqa: E731
        wait(vm, f"grep -q idle {md}/sync_action && grep -q '^0$' {md}/degraded")
        dest.mkdir(parents=True, exist_ok=True)
        kernel = sh("uname -r")[1].strip()
        capture(vm, "clean", dest)
        bay3 = sh("readlink -f /dev/cairn/bay3")[1].strip()
        sh(f"mdadm /dev/md127 --fail {bay3}")
        wait(vm, f"grep -q faulty {md}/dev-{bay3.split('/')[-1]}/state")
        capture(vm, "degraded", dest)
        sh(f"mdadm /dev/md127 --remove {bay3}")
        vm.unplug(3)
        vm.plug(3)
        wait(vm, "[ -b /dev/cairn/bay3 ]")
        new = sh("readlink -f /dev/cairn/bay3")[1].strip()
        sh(f"echo 2000 > {md}/sync_speed_max; mdadm /dev/md127 --add {new}")
        wait(vm, f"grep -q recover {md}/sync_action && ! grep -q none {md}/sync_completed")
        time.sleep(2)
        capture(vm, "recovering", dest)
        sh(f"echo system > {md}/sync_speed_max")
        wait(vm, f"grep -q idle {md}/sync_action && grep -q '^0$' {md}/degraded")
        bay2 = sh("readlink -f /dev/cairn/bay2")[1].strip()
        # Garbage in the middle of bay 2's data area (md 1.2 data starts at 1 MiB or later).
        sh(f"dd if=/dev/urandom of={bay2} bs=64k seek=320 count=32 conv=fsync 2>/dev/null; "
           "echo 3 > /proc/sys/vm/drop_caches")
        sh(f"echo 1500 > {md}/sync_speed_max; echo check > {md}/sync_action")
        wait(vm, f"grep -q check {md}/sync_action && ! grep -q '^0$' {md}/mismatch_cnt", 180)
        capture(vm, "check", dest)
        sh(f"echo system > {md}/sync_speed_max")
        wait(vm, f"grep -q idle {md}/sync_action", 180)
        capture(vm, "check-done", dest)
        (dest / "README.md").write_text(README.format(kernel=kernel))
    finally:
        vm.stop()
    return 0
