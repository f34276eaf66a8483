"""The qemu rig: boots the Debian test image (tools/image) with five data disks on virtio-scsi,
the PC speaker routed to a wav file, a QMP socket to pull and slide in disks, a command channel
on the second serial port, and the DICOM and panel ports forwarded to loopback.

qemu is Debian bookworm's 7.2, unpacked with `dpkg -x` into the image cache (the machine's
newer qemu-utils refuses an apt install of it); TCG, since this machine's /dev/kvm (PVM) cannot
run a stock kernel. `accel="kvm"` is tried only when asked, behind the boot timeout.
Used by tools/vm and tests/vm.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CAIRN_IMAGE_CACHE", "/var/cache/cairn-image"))
QEMU_ROOT = CACHE / "qemu-7.2"
QEMU = QEMU_ROOT / "usr/bin/qemu-system-x86_64"
QEMU_DEBS = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"]
HOST_PACKAGES = ["busybox-static", "cpio", "xorriso", "mt-st", "tgt", "open-iscsi",
                 "dcmtk", "seabios", "ipxe-qemu", "e2fsprogs"]
# The board's virtio-scsi controller address (board/qemu-x86_64-scsi/board.toml: bay N = target N).
SCSI_ADDR = "0x5"
GUEST_HOST = "10.0.2.2"  # the host's loopback as seen from the guest (slirp)


def log(msg: str) -> None:
    print(f"[rig] {msg}", flush=True)


def _missing(pkgs):
    out = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "ok installed" not in r.stdout:
            out.append(p)
    return out


def setup() -> None:
    """Install the host packages and unpack qemu 7.2 into the cache (once)."""
    libs = subprocess.run(
        "apt-cache depends qemu-system-x86 qemu-system-common | awk '/ Depends:/{print $2}'",
        shell=True, capture_output=True, text=True, check=True).stdout.split()
    libs = sorted({x for x in libs if not x.startswith("<")
                   and x not in ("qemu-system-common", "qemu-system-data", "libc6")})
    need = _missing(HOST_PACKAGES + libs)
    if need:
        log("apt-get install " + " ".join(need))
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *need], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
    if QEMU.exists():
        return
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for p in QEMU_DEBS:
        if not list(debs.glob(f"{p}_*.deb")):
            subprocess.run(["apt-get", "download", p], cwd=debs, check=True,
                           stdout=subprocess.DEVNULL)
    tmp = CACHE / "qemu-7.2.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for p in QEMU_DEBS:
        deb = sorted(debs.glob(f"{p}_*.deb"))[-1]
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
    shutil.rmtree(QEMU_ROOT, ignore_errors=True)
    tmp.rename(QEMU_ROOT)
    log(subprocess.run([str(QEMU), "--version"], capture_output=True, text=True).stdout.split("\n")[0])


def build_image(board: str = "qemu-x86_64-scsi", cargo: bool = True) -> Path:
    """Run tools/image; return its output folder."""
    args = [str(ROOT / "tools/image"), "--board", board] + ([] if cargo else ["--no-cargo"])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tools/image failed:\n{r.stdout}\n{r.stderr}")
    for line in r.stderr.splitlines():
        log(line)
    return Path(r.stdout.strip().splitlines()[-1])


def kernel_version() -> str:
    """The kernel ABI of the built image (its manifest)."""
    man = (CACHE / "out" / "qemu-x86_64-scsi" / "manifest.txt").read_text()
    return next(l.split("=", 1)[1] for l in man.splitlines() if l.startswith("kernel="))


def build_gpio_buzzer(kver: str) -> Path:
    """Build tests/vm/gpio-buzzer (a one-line GPIO chip standing in for a board's buzzer
    line) against Debian's headers for the image's kernel; cached by source hash."""
    src = Path(__file__).parent / "gpio-buzzer"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(src.iterdir()))).hexdigest()[:12]
    out = CACHE / f"gpio-buzzer-{kver}-{digest}.ko"
    if out.exists():
        return out
    headers = f"linux-headers-{kver}"
    if _missing([headers, "gcc", "make"]):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", headers, "gcc", "make"],
                       check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    build = CACHE / "gpio-buzzer-build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(src, build)
    subprocess.run(["make", "-s", "-C", f"/usr/src/linux-headers-{kver}", f"M={build}", "modules"],
                   check=True, capture_output=True)
    shutil.copy(build / "cairn_gpio_buzzer.ko", out)
    return out


def cpio_newc(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A gzip'd newc cpio archive of `{path: (mode, data)}` with their parent directories;
    appended after the image's, its files win."""
    out = io.BytesIO()
    ino = 50000

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        ino += 1
        nb = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        out.write(("070701" + "".join("%08X" % v for v in fields)).encode() + nb)
        out.write(b"\0" * (-(110 + len(nb)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))

    dirs = sorted({str(Path(n).parents[i]) for n in files for i in range(len(Path(n).parents) - 1)})
    for d in dirs:  # parents first (the kernel does not make missing ones)
        entry(d, 0o040755, b"")
    for name, (mode, data) in files.items():
        entry(name, mode, data)
    entry("TRAILER!!!", 0, b"")
    return gzip.compress(out.getvalue(), 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qmp:
    """A QMP client that keeps the events it reads while waiting for replies."""

    def __init__(self, path: Path):
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rw")
        self.events: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        json.loads(self.file.readline())
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise ConnectionError("QMP closed")
        msg = json.loads(line)
        if "event" in msg:
            self.events.append((time.monotonic(), msg))
        return msg

    def cmd(self, execute: str, **arguments) -> dict:
        with self.lock:
            msg = {"execute": execute}
            if arguments:
                msg["arguments"] = arguments
            self.file.write(json.dumps(msg) + "\n")
            self.file.flush()
            while True:
                r = self._read()
                if "return" in r:
                    return r["return"]
                if "error" in r:
                    raise RuntimeError(f"QMP {execute}: {r['error']}")

    def wait_event(self, name: str, timeout: float, pred=lambda e: True) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self.lock:
                for _, e in self.events[seen:]:
                    if e["event"] == name and pred(e):
                        return e
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no QMP event {name} in {timeout} s")
                self.sock.settimeout(left)
                try:
                    self._read()
                except (socket.timeout, TimeoutError):
                    pass
                finally:
                    self.sock.settimeout(None)


class WavWatch:
    """Follows the wav qemu's PC speaker writes. qemu emits samples only while the speaker
    sounds, so the file grows during a tone and not during a pause: polling its size gives
    the on/off pattern in wall time, the samples give the frequency."""

    HEADER = 44

    def __init__(self, path: Path, period: float = 0.004):
        self.path = path
        self.period = period
        self.growth: list[tuple[float, int]] = []  # (monotonic time, new size)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = -1
        while not self._stop.is_set():
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = -1
            if size != last and size > self.HEADER:
                self.growth.append((time.monotonic(), size))
            last = size
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()

    def size_at(self, t: float) -> int:
        size = self.HEADER
        for tt, s in self.growth:
            if tt > t:
                break
            size = s
        return size

    def first_growth_after(self, t: float) -> float | None:
        for tt, _ in self.growth:
            if tt > t:
                return tt
        return None

    def bursts(self, since: float, until: float | None = None, gap: float = 0.08):
        """Tone bursts after `since`: [(t_start, t_end, byte_start, byte_end)], a new burst
        whenever the file did not grow for `gap` seconds."""
        out = []
        prev_size = self.size_at(since)
        for tt, s in self.growth:
            if tt <= since or (until is not None and tt > until):
                continue
            if out and tt - out[-1][1] <= gap:
                out[-1][1] = tt
                out[-1][3] = s
            else:
                out.append([tt, tt, prev_size, s])
            prev_size = s
        return [tuple(b) for b in out]

    def frequency(self, start: int, end: int) -> float:
        """Dominant frequency of the samples between two file offsets (zero crossings of the
        left channel; the speaker is a square wave). 44.1 kHz s16 stereo, as qemu writes."""
        with open(self.path, "rb") as f:
            f.seek(start - (start - self.HEADER) % 4)
            data = f.read(max(0, end - start))
        n = len(data) // 4
        if n < 64:
            return 0.0
        left = struct.unpack("<" + "hh" * n, data[: n * 4])[0::2]
        crossings = sum(1 for a, b in zip(left, left[1:]) if (a < 0) != (b < 0))
        return crossings / 2 / (n / 44100)


class Agent:
    """The command channel to the guest (tests/vm/agent.sh on its second serial port)."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = int(time.time() * 1000) % 1000000

    def sh(self, cmd: str, timeout: float = 60, check: bool = False) -> tuple[int, str]:
        """Run a shell command in the guest (busybox sh); its exit status and output."""
        self.next_id += 1
        rid = str(self.next_id)
        self.sock.sendall(f"{rid} {base64.b64encode(cmd.encode()).decode()}\n".encode())
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                parts = line.decode(errors="replace").strip().split(" ")
                if len(parts) >= 3 and parts[0] == "@@R" and parts[1] == rid:
                    out = base64.b64decode(parts[3]).decode(errors="replace") if len(parts) > 3 else ""
                    rc = int(parts[2])
                    if check and rc != 0:
                        raise AssertionError(f"guest `{cmd}` exited {rc}: {out}")
                    return rc, out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"guest command `{cmd}` gave no answer in {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("agent channel closed")
            self.buf += chunk


class Vm:
    """One booted box."""

    def __init__(self, workdir: Path, image: Path, disks: int = 5, disk_mb: int = 64,
                 raid: int = 6, accel: str = "tcg", memory: int = 1024,
                 extra_files: dict[str, tuple[int, bytes]] | None = None,
                 cairn_toml: str | None = None):
        self.dir = Path(workdir)
        self.image = Path(image)
        self.ndisks = disks
        self.disk_mb = disk_mb
        self.raid = raid
        self.accel = accel
        self.memory = memory
        self.extra = dict(extra_files or {})
        self.cairn_toml = cairn_toml
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.console: list[tuple[float, str]] = []
        self.proc: subprocess.Popen | None = None
        self.qmp: Qmp | None = None
        self.agent: Agent | None = None
        self._plugs: dict[int, int] = {}
        self.t0 = 0.0
        self.wav = self.dir / "speaker.wav"
        self.watch: WavWatch | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def disk_path(self, bay: int, generation: int = 0) -> Path:
        return self.dir / "disks" / (f"bay{bay}.img" if generation == 0 else f"bay{bay}-new{generation}.img")

    def new_disk(self, bay: int, generation: int = 0, mb: int | None = None) -> Path:
        p = self.disk_path(bay, generation)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate((mb or self.disk_mb) << 20)
        return p

    def start(self, attach: bool = True) -> None:
        """Boot. With `attach`, this process holds the QMP and agent sockets (each takes one
        client); without, `tools/vm unplug|plug|sh` connect to them one call at a time."""
        self.dir.mkdir(parents=True, exist_ok=True)
        files = {"etc/cairn/agent.sh": (0o100755, (Path(__file__).parent / "agent.sh").read_bytes())}
        if self.cairn_toml is not None:
            files["etc/cairn/cairn.toml"] = (0o100644, self.cairn_toml.encode())
        files.update(self.extra)
        initrd = self.dir / "initrd.img"
        with open(initrd, "wb") as f:
            f.write((self.image / "initrd.img").read_bytes())
            f.write(cpio_newc(files))
        qmp_sock = self.dir / "qmp.sock"
        agent_sock = self.dir / "agent.sock"
        for s in (qmp_sock, agent_sock, self.wav):
            s.unlink(missing_ok=True)
        args = [str(QEMU), "-L", str(QEMU_ROOT / "usr/share/qemu"), "-L", "/usr/share/seabios",
                "-L", "/usr/lib/ipxe/qemu",
                "-machine", f"pc,accel={self.accel},pcspk-audiodev=snd0",
                "-audiodev", f"wav,id=snd0,path={self.wav}",
                "-cpu", "host" if self.accel == "kvm" else "max",
                "-m", str(self.memory), "-smp", "2", "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot",
                "-serial", "stdio",
                "-chardev", f"socket,id=agent,path={agent_sock},server=on,wait=off",
                "-serial", "chardev:agent",
                "-qmp", f"unix:{qmp_sock},server=on,wait=off",
                "-kernel", str(self.image / "vmlinuz"), "-initrd", str(initrd),
                "-append", f"console=ttyS0 panic=-1 loglevel=4 cairn.raid={self.raid}",
                "-device", f"virtio-scsi-pci,id=scsi0,bus=pci.0,addr={SCSI_ADDR}",
                "-netdev", "user,id=net0,"
                f"hostfwd=tcp:127.0.0.1:{self.dicom_port}-:11112,"
                f"hostfwd=tcp:127.0.0.1:{self.http_port}-:8080",
                "-device", "virtio-net-pci,netdev=net0"]
        for bay in range(1, self.ndisks + 1):
            p = self.disk_path(bay)
            if not p.exists():
                self.new_disk(bay)
            args += ["-blockdev", f"driver=raw,node-name=n{bay}g0,file.driver=file,"
                     f"file.filename={p},cache.no-flush=on",
                     "-device", f"scsi-hd,drive=n{bay}g0,bus=scsi0.0,id=bay{bay},"
                     f"scsi-id={bay},lun=0,serial=CAIRNVM{bay}G0"]
            self._plugs[bay] = 0
        (self.dir / "qemu-args.txt").write_text("\n".join(args) + "\n")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        threading.Thread(target=self._read_console, daemon=True).start()
        (self.dir / "ports.json").write_text(json.dumps(
            {"dicom": self.dicom_port, "http": self.http_port, "pid": self.proc.pid}))
        self.watch = WavWatch(self.wav)
        if attach:
            self.qmp = Qmp(qmp_sock)
            self.agent = Agent(agent_sock)

    def _read_console(self) -> None:
        assert self.proc and self.proc.stdout
        with open(self.dir / "console.log", "w", errors="replace") as logf:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                t = time.monotonic() - self.t0
                self.console.append((t, line))
                logf.write(f"{t:8.2f} {line}\n")
                logf.flush()

    def wait_console(self, pattern: str, timeout: float) -> tuple[float, str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for t, line in self.console[seen:]:
                if rx.search(line):
                    return t, line
            seen = len(self.console)
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"qemu exited ({self.proc.returncode}) waiting for {pattern!r}")
            time.sleep(0.05)
        raise TimeoutError(f"no console line {pattern!r} in {timeout} s")

    def stop(self) -> None:
        if self.watch:
            self.watch.stop()
        if self.proc and self.proc.poll() is None:
            try:
                if self.agent:
                    self.sh("sync", timeout=20)
            except Exception:  # noqa: BLE001 - best effort before pulling the plug
                pass
            try:
                if self.qmp:
                    self.qmp.cmd("quit")
            except Exception:  # noqa: BLE001
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- the command channel ---------------------------------------------------------------
    def sh(self, cmd: str, timeout: float = 60, check: bool = False) -> tuple[int, str]:
        """Run a shell command in the guest (busybox sh); its exit status and output."""
        assert self.agent
        return self.agent.sh(cmd, timeout, check)

    def wait_agent(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rc, _ = self.sh("true", timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                if rc == 0:
                    return
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the guest agent did not answer")

    def ctl_json(self, *args: str):
        rc, out = self.sh("cairnctl --data /var/lib/cairn " + " ".join(args) + " --json", timeout=30)
        if rc != 0:
            raise AssertionError(f"cairnctl {args}: {rc} {out}")
        return json.loads(out)

    # -- disks -------------------------------------------------------------------------------
    def unplug(self, bay: int) -> float:
        """Pull the disk out of a bay (QMP device_del); the host time it was pulled."""
        assert self.qmp
        t = time.monotonic()
        self.qmp.cmd("device_del", id=f"bay{bay}")
        self.qmp.wait_event("DEVICE_DELETED", 30, lambda e: e.get("data", {}).get("device") == f"bay{bay}")
        return t

    def plug(self, bay: int, image: Path | None = None) -> float:
        """Slide a disk into an empty bay (a new blank one unless an image is given)."""
        assert self.qmp
        gen = self._plugs.get(bay, 0) + 1
        while self.disk_path(bay, gen).exists():
            gen += 1
        self._plugs[bay] = gen
        path = image or self.new_disk(bay, gen)
        node = f"n{bay}g{gen}"
        self.qmp.cmd("blockdev-add", **{"driver": "raw", "node-name": node,
                                          "file": {"driver": "file", "filename": str(path)}})
        t = time.monotonic()
        self.qmp.cmd("device_add", driver="scsi-hd", drive=node, id=f"bay{bay}", bus="scsi0.0",
                     **{"scsi-id": bay, "lun": 0, "serial": f"CAIRNVM{bay}G{gen}"})
        return t


class TapeTarget:
    """Debian's tgt emulating an SSC tape drive, exported over iSCSI on the host's loopback
    (the guest logs in with iscsistart to 10.0.2.2:3260 and gets a real /dev/nst0)."""

    IQN = "iqn.2026-11.org.cairn.rig:tape0"

    def __init__(self, workdir: Path, size_mb: int = 256, port: int = 3260):
        self.dir = Path(workdir)
        self.tape = self.dir / "tape0.img"
        self.size_mb = size_mb
        self.port = port
        self.pidfile = self.dir / "tgtd.pid"
        self.proc: subprocess.Popen | None = None

    def _adm(self, *args: str, check: bool = True):
        return subprocess.run(["tgtadm", "--lld", "iscsi", *args], capture_output=True, text=True,
                              check=check)

    def start(self, attach: bool = True) -> None:
        """Boot. With `attach`, this process holds the QMP and agent sockets (each takes one
        client); without, `tools/vm unplug|plug|sh` connect to them one call at a time."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tape.unlink(missing_ok=True)
        subprocess.run(["tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "CAIRN001",
                        "--size", str(self.size_mb), "--type", "data", "--file", str(self.tape)],
                       check=True, capture_output=True)
        self.proc = subprocess.Popen(["tgtd", "-f", "--iscsi", f"portal=127.0.0.1:{self.port}"],
                                     stdout=open(self.dir / "tgtd.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if self._adm("--mode", "target", "--op", "show", check=False).returncode == 0:
                break
            time.sleep(0.1)
        self._adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", self.IQN)
        self._adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                  "--device-type", "tape", "--bstype", "ssc", "--backing-store", str(self.tape))
        self._adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")

    def stop(self) -> None:
        # tgtd ignores SIGTERM while it has targets: drop them, go offline, shut down.
        self._adm("--mode", "target", "--op", "delete", "--force", "--tid", "1", check=False)
        subprocess.run(["tgtadm", "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline"],
                       capture_output=True)
        subprocess.run(["tgtadm", "--op", "delete", "--mode", "system"], capture_output=True)
        if self.proc:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
