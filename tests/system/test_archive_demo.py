"""The README's "The air-gapped copy" walk-through on `cairnd demo`, step by step: images reach
the demo's emulated tape and disc by themselves (bundles close 10 s after the first image),
the tape is ejected to the vault, the box says a medium is needed while images wait, a new
cartridge is taken into use, the first one comes back and a study whose files were deleted
is restored from it byte for byte. Only the commands the README gives are used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from archivelib import run, send
from datagen import make_instances
from harness import CAIRND, CAIRNCTL, free_port, wait_port

LOG = None  # the running demo's stderr file, for failure messages


class Demo:
    """`cairnd demo DIR` with its stderr kept in DIR/../demo.log."""

    def __init__(self, directory, port, http_port):
        global LOG
        LOG = directory.parent / "demo.log"
        self.log = open(LOG, "wb")
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(CAIRND), "demo", str(directory), "--dicom-port", str(port),
             "--http-port", str(http_port)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG="info"))
        ready = threading.Event()

        def pump():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if line.startswith("cairn ready:"):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30) or self.proc.poll() is not None:
            self.proc.kill()
            raise AssertionError(f"demo not ready: {self.lines}\n{log_tail()}")
        wait_port(port, 10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def log_tail(n: int = 30) -> str:
    try:
        return "\n".join(LOG.read_text(errors="replace").splitlines()[-n:])
    except (OSError, AttributeError):
        return "(no log)"


class Port:
    def __init__(self, port):
        self.port = port
        self.ae = "CAIRN"


def ctl(d, *args, ok=True, timeout=300):
    r = subprocess.run([str(CAIRNCTL), "--data", str(d), *args], capture_output=True,
                       text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, \
            f"cairnctl {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}\n{log_tail()}"
    return r.stdout


def status(d) -> dict:
    return json.loads(ctl(d, "archive", "status", "--json"))


def wait_status(d, pred, what, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = status(d)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s: {json.dumps(st)[:3000]}"
                                 f"\n{log_tail()}")
        time.sleep(0.5)


def target(st, name) -> dict:
    return next(t for t in st["targets"] if t["name"] == name)


def test_readme_walk_through_on_the_demo(tmp_path):
    d = tmp_path / "demo-data"
    port = free_port()
    demo = Demo(d, port, free_port())
    try:
        deadline = time.monotonic() + 10  # the banner follows the ready line
        while not any("cold copies to tape" in ln for ln in demo.lines):
            assert time.monotonic() < deadline, demo.lines
            time.sleep(0.05)
        box = Port(port)
        # the 50 sent first are one study and the 10 sent later another: these 2004 studies
        # move to the archive tier once copied, and a study there takes no new image
        insts = make_instances(tmp_path / "send", 60, seed="demo-walk", per_study=(50, 50))
        send(box, [i.path for i in insts[:50]])

        # 2. watch them reach the tape (and the disc) without doing anything
        st = wait_status(d, lambda s: s["instances_verified"] == 50 and
                         all(t["last_verified"] for t in s["targets"]),
                         "50 images verified on tape and disc")
        assert {t["name"] for t in st["targets"]} == {"tape", "disc"}
        assert "50 of 50 image(s) have a verified cold copy" in ctl(d, "archive", "status")
        first_tape = target(st, "tape")["volume"]["volume_id"]

        # 3. eject the tape for the vault; images sent meanwhile wait and the box says so
        ctl(d, "archive", "eject", "--target", "tape", "--location", "offsite_vault")
        vols = {v["volume_id"]: v for v in json.loads(ctl(d, "archive", "volumes", "--json"))}
        assert (vols[first_tape]["state"], vols[first_tape]["location"]) == \
            ("ejected", "offsite_vault"), vols[first_tape]
        # every move is an audit row with who and when
        moves = [ln.split("\t") for ln in run(
            ["sqlite3", "-readonly", "-separator", "\t", d / "cairn.db",
             "select actor, action, detail, at from audit where object = "
             f"'{first_tape}' and action in ('volume-state', 'volume-location')"]
        ).stdout.splitlines()]
        assert any(a == "volume-location" and "offsite_vault" in det and who.startswith("user:")
                   and at for who, a, det, at in moves), moves
        assert any(a == "volume-state" and '"ejected"' in det for _, a, det, _ in moves), moves
        send(box, [i.path for i in insts[50:]])
        st = wait_status(d, lambda s: target(s, "tape")["medium_needed"],
                         "tape medium needed", timeout=60)
        assert st["medium_needed"] is True and target(st, "tape")["queue"]["instances"] == 10
        assert "MEDIUM NEEDED" in ctl(d, "archive", "status")
        ctl(d, "demo", "tape-insert")
        ctl(d, "archive", "load")
        st = wait_status(d, lambda s: s["instances_verified"] == 60 and
                         target(s, "tape")["queue"]["instances"] == 0 and
                         target(s, "disc")["queue"]["instances"] == 0,
                         "60 images verified after the new cartridge")
        assert not st["medium_needed"]
        assert target(st, "tape")["volume"]["volume_id"] != first_tape

        # 4. restore a study from the first cartridge (the disc is taken out so the tape is
        # the only copy in a drive)
        study = insts[0].study_uid
        assert study in ctl(d, "studies")
        shas = [r for r in run(["sqlite3", "-readonly", d / "cairn.db",
                                "select i.sha256 from instances i join series se on "
                                "se.id = i.series_ref join studies st on st.id = se.study_ref "
                                f"where st.study_uid = '{study}'"]).stdout.split()]
        assert len(shas) >= 25
        files = {s: d / "objects" / s[:2] / s[2:4] / f"{s}.dcm" for s in shas}
        originals = {s: p.read_bytes() for s, p in files.items()}
        for p in files.values():
            p.unlink()
        assert subprocess.run([str(CAIRNCTL), "--data", str(d), "fsck"],
                              capture_output=True).returncode != 0, "fsck missed the deletion"
        ctl(d, "archive", "eject", "--target", "tape")
        ctl(d, "archive", "eject", "--target", "disc")
        ctl(d, "demo", "tape-load", "DEMO01")
        ctl(d, "archive", "load")
        out = ctl(d, "restore", "--study", study)
        for s, p in files.items():
            assert p.is_file() and p.read_bytes() == originals[s], f"{s} not restored\n{out}"
        ctl(d, "fsck")

        # the README's way to read the cartridge without cairn
        on_tape = set()
        for f in sorted((d / "hw/tape/cartridges/DEMO01").glob("file-[0-9][0-9][0-9][0-9]")):
            if f.name == "file-0000" or f.stat().st_size == 0:
                continue
            x = tmp_path / f.name
            x.mkdir()
            run(["tar", "-b", "512", "-xf", f, "-C", x])
            run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=x)
            on_tape |= {p.stem for p in (x / "objects").glob("*.dcm")}
        assert set(shas) <= on_tape
    finally:
        rc = demo.stop()
    assert rc == 0, f"demo exited {rc}"
