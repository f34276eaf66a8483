"""Helpers for the archive system tests: a cairnd with cold targets, the tape and disc
emulators driven through their documented state files, and readers of the catalog.

The emulators' files are documented in firmware/cairn-hal/src/tape/emulator.rs and
firmware/cairn-hal/src/optical/emulator.rs: a tape drive directory holds `drive.json`
(`{"loaded", "generation"}`) and `cartridges/<id>/cartridge.json`; a disc tray holds
`tray.json` (`{"loaded"}`) and `discs/<id>.json` + `discs/<id>.iso`. Every change here is
made the way the emulator makes it: under `control.lock` (tape), written to a temporary file,
fsynced and renamed, so the daemon's open drive sees a new inode and re-reads it, as a real
drive reports a media change.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness import DCMTK_ENV, STORESCU, Cairn, render_config, toml_value

MIB = 1 << 20
CHATTR = "/usr/bin/chattr"  # e2fsprogs

# ----------------------------------------------------------------------------------------------
# Emulators
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, value) -> None:
    tmp = path.parent / f".{path.name}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(json.dumps(value, indent=2).encode())
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TapeEmu:
    """The hands of a person at the emulated tape drive in directory `dir`."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)

    def init(self) -> "TapeEmu":
        (self.dir / "cartridges").mkdir(parents=True, exist_ok=True)
        with self._control():
            if not (self.dir / "drive.json").exists():
                _write_json(self.dir / "drive.json", {"loaded": None, "generation": 0})
        return self

    @contextlib.contextmanager
    def _control(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "control.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def drive(self) -> dict:
        return json.loads((self.dir / "drive.json").read_text())

    def cdir(self, cid: str) -> Path:
        return self.dir / "cartridges" / cid

    def meta(self, cid: str) -> dict:
        return json.loads((self.cdir(cid) / "cartridge.json").read_text())

    def create_blank(self, cid: str, capacity: int, early_warning: int | None = None) -> None:
        self.init()
        ew = capacity if early_warning is None else early_warning
        assert 0 < capacity and ew <= capacity
        with self._control():
            cdir = self.cdir(cid)
            assert not cdir.exists(), f"cartridge {cid} exists"
            tmp = self.dir / "cartridges" / f".new-{cid}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            _write_json(tmp / "cartridge.json", {
                "id": cid, "capacity": capacity, "early_warning": ew,
                "write_protected": False, "inject_write_error_at": None, "filemarks": 0})
            os.rename(tmp, cdir)

    def load(self, cid: str) -> None:
        with self._control():
            d = self.drive()
            assert d["loaded"] is None, f"drive holds {d['loaded']}"
            assert (self.cdir(cid) / "cartridge.json").exists(), f"no cartridge {cid}"
            d["loaded"] = cid
            d["generation"] += 1
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "position.json").unlink()
            _write_json(self.dir / "drive.json", d)

    def insert_blank(self, cid: str, capacity: int, early_warning: int | None = None) -> None:
        self.create_blank(cid, capacity, early_warning)
        self.load(cid)

    def eject(self) -> str | None:
        """The eject button (not through cairn)."""
        with self._control():
            d = self.drive()
            old = d["loaded"]
            if old is not None:
                d["loaded"] = None
                d["generation"] += 1
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / "position.json").unlink()
                _write_json(self.dir / "drive.json", d)
            return old

    def loaded(self) -> str | None:
        return self.drive()["loaded"]

    def _update(self, cid: str, **changes) -> None:
        with self._control():
            m = self.meta(cid)
            m.update(changes)
            _write_json(self.cdir(cid) / "cartridge.json", m)

    def set_write_protect(self, cid: str, on: bool) -> None:
        self._update(cid, write_protected=on)

    def inject_write_error(self, cid: str, at: int | None) -> None:
        self._update(cid, inject_write_error_at=at)

    def cartridges(self) -> list[str]:
        root = self.dir / "cartridges"
        return sorted(p.name for p in root.iterdir()
                      if not p.name.startswith(".") and (p / "cartridge.json").exists())

    def tape_file(self, cid: str, n: int) -> Path:
        return self.cdir(cid) / f"file-{n:04d}"

    def bytes_used(self, cid: str) -> int:
        total = 0
        for f in self.cdir(cid).glob("file-*.rec"):
            body = f.read_bytes()
            rec = 0
            for i in range(0, len(body) - len(body) % 8, 8):
                ln = int.from_bytes(body[i:i + 4], "little")
                cnt = int.from_bytes(body[i + 4:i + 8], "little")
                rec += ln * cnt
            data = f.with_suffix("")
            total += min(rec, data.stat().st_size if data.exists() else 0)
        return total


class DiscEmu:
    """The hands of a person at the emulated disc tray in directory `dir`."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)

    def init(self) -> "DiscEmu":
        (self.dir / "discs").mkdir(parents=True, exist_ok=True)
        if not (self.dir / "tray.json").exists():
            _write_json(self.dir / "tray.json", {"loaded": None})
        return self

    def create_blank(self, did: str, capacity: int) -> None:
        self.init()
        p = self.dir / "discs" / f"{did}.json"
        assert not p.exists(), f"disc {did} exists"
        _write_json(p, {"id": did, "capacity": capacity})

    def load(self, did: str) -> None:
        tray = json.loads((self.dir / "tray.json").read_text())
        assert tray["loaded"] is None, f"tray holds {tray['loaded']}"
        _write_json(self.dir / "tray.json", {"loaded": did})

    def insert_blank(self, did: str, capacity: int) -> None:
        self.create_blank(did, capacity)
        self.load(did)

    def eject(self) -> str | None:
        tray = json.loads((self.dir / "tray.json").read_text())
        if tray["loaded"] is not None:
            _write_json(self.dir / "tray.json", {"loaded": None})
        return tray["loaded"]

    def loaded(self) -> str | None:
        return json.loads((self.dir / "tray.json").read_text())["loaded"]

    def image(self, did: str) -> Path:
        return self.dir / "discs" / f"{did}.iso"

    def discs(self) -> list[str]:
        return sorted(p.stem for p in (self.dir / "discs").glob("*.json"))


# ----------------------------------------------------------------------------------------------
# The daemon with cold targets
# ----------------------------------------------------------------------------------------------


class ArchiveCairn(Cairn):
    """A Cairn whose config has an `[archive]` section (docs/interface.md, "Archive").

    targets: ("tape",), ("disc",) or both; the tape drive directory is `base/hw/tape`, the disc
    tray `base/hw/optical`. Bundles close by flush in the tests (max age 1 hour) unless
    `bundle_max_age_secs` is given.
    """

    def __init__(self, base: Path, *, targets=("tape", "disc"), box_id: str = "TEST",
                 bundle_max_bytes: int = 256 * MIB, bundle_max_age_secs: int = 3600,
                 bundle_max_members: int = 50000, disc_capacity: int = 700 * MIB,
                 **overrides):
        base = Path(base)
        self.tape = TapeEmu(base / "hw" / "tape")
        self.disc = DiscEmu(base / "hw" / "optical")
        self.archive = {
            "box_id": box_id,
            "bundle_max_bytes": bundle_max_bytes,
            "bundle_max_age_secs": bundle_max_age_secs,
            "bundle_max_members": bundle_max_members,
        }
        self.targets = []
        for t in targets:
            if t == "tape":
                self.targets.append({"name": "tape", "kind": "tape",
                                     "emulator": str(self.tape.dir)})
            elif t == "disc":
                self.targets.append({"name": "disc", "kind": "optical",
                                     "emulator": str(self.disc.dir),
                                     "capacity_bytes": disc_capacity})
            else:
                raise ValueError(t)
        super().__init__(base, **overrides)

    def write_config(self) -> None:
        out = [render_config(self.config), "[archive]"]
        out += [f"{k} = {toml_value(v)}" for k, v in self.archive.items()]
        out.append("")
        for t in self.targets:
            out.append("[[archive.targets]]")
            out += [f"{k} = {toml_value(v)}" for k, v in t.items()]
            out.append("")
        self.config_path.write_text("\n".join(out))

    # -- cairnctl -------------------------------------------------------------------------
    def ok(self, *args: str, timeout: float = 300) -> str:
        """Run cairnctl; demand exit 0; return stdout."""
        r = self.ctl(*args, timeout=timeout)
        assert r.returncode == 0, (f"cairnctl {' '.join(args)} exited {r.returncode}\n"
                                   f"stdout: {r.stdout}\nstderr: {r.stderr}\n{self.log_tail(25)}")
        return r.stdout

    def flush(self, timeout: float = 300) -> str:
        return self.ok("archive", "flush", timeout=timeout)

    def status_json(self) -> dict:
        return json.loads(self.ok("archive", "status", "--json"))

    def volumes_json(self) -> list[dict]:
        v = json.loads(self.ok("archive", "volumes", "--json"))
        if isinstance(v, dict) and "volumes" in v:
            v = v["volumes"]
        assert isinstance(v, list), f"archive volumes --json gave {v!r}"
        return v

    # -- the catalog, read with sqlite3 -----------------------------------------------------
    def sql_cli(self, sql: str) -> list[list[str]]:
        """Run the sqlite3 program read-only (the way a stranger reads cairn.db)."""
        r = subprocess.run(["sqlite3", "-readonly", "-separator", "\t", str(self.db_path), sql],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"sqlite3 failed: {r.stderr}"
        return [line.split("\t") for line in r.stdout.splitlines()]

    def verified_by_kind(self) -> dict[str, set[str]]:
        """kind -> SOP Instance UIDs of current instances with a verified copy on that kind."""
        rows = self.query(
            "SELECT DISTINCT v.kind, i.sop_instance_uid FROM instances i "
            "JOIN copies c ON c.sha256 = i.sha256 AND c.verified = 1 "
            "JOIN bundles b ON b.id = c.bundle_ref AND b.state = 'verified' "
            "JOIN volumes v ON v.id = b.volume_ref WHERE i.current = 1")
        out: dict[str, set[str]] = {}
        for kind, sop in rows:
            out.setdefault(kind, set()).add(sop)
        return out

    def queued(self) -> int:
        return self.query("SELECT count(*) FROM archive_queue")[0][0]

    def wait_queue(self, pred, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            n = self.queued()
            if pred(n) or time.monotonic() > deadline:
                return n
            time.sleep(0.2)

    def catalog(self) -> dict:
        """What the catalog says, without local row ids and without wall-clock times."""
        con = self.db()
        try:
            vols = sorted(con.execute(
                "SELECT volume_id, kind, box_id, block_size, state, location, labelled_at "
                "FROM volumes").fetchall())
            bundles = sorted(con.execute(
                "SELECT b.bundle_id, v.volume_id, b.file_number, b.state, b.members, b.bytes, "
                "b.manifest_sha256, b.audit_seq, b.audit_hash FROM bundles b "
                "JOIN volumes v ON v.id = b.volume_ref").fetchall())
            copies = sorted(con.execute(
                "SELECT b.bundle_id, c.sha256, c.sop_instance_uid, c.size, c.verified "
                "FROM copies c JOIN bundles b ON b.id = c.bundle_ref").fetchall())
        finally:
            con.close()
        return {"volumes": vols, "bundles": bundles, "copies": copies}


# ----------------------------------------------------------------------------------------------
# Sending and checking
# ----------------------------------------------------------------------------------------------


def send(c: Cairn, paths, calling: str = "STORESCU", timeout: float = 600) -> None:
    """Send files with DCMTK's storescu (one association); demand success for every file."""
    paths = [str(p) for p in paths]
    for i in range(0, len(paths), 1000):
        chunk = paths[i:i + 1000]
        r = subprocess.run(
            [STORESCU, "-aet", calling, "-aec", c.ae, "-to", "20", "-ta", "20", "-td", "60",
             "127.0.0.1", str(c.port), *chunk],
            capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)
        assert r.returncode == 0 and "Store Failed" not in r.stderr, \
            f"storescu rc={r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd, cwd=None, timeout: float = 120, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(x) for x in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if ok:
        assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n" \
                                  f"{r.stderr[-3000:]}"
    return r


def clear_immutable(path: Path) -> None:
    """Clear the Linux immutable attribute of `path` (`chattr -i`), as a disk loss or a repair
    outside cairn would bypass it: `cairnd run` gives it to the files of studies in the archive
    tier (these tests' 2004 studies once copied), so a test that deletes or damages such a file
    to simulate a loss calls this first. A file without it (or a filesystem without the
    attribute) is left as it is."""
    subprocess.run([CHATTR, "-f", "-i", str(path)], capture_output=True)


def clear_immutable_below(root: Path) -> None:
    """`chattr -R -i` below `root`, so that the tree can be removed (pytest's temp folders)."""
    if Path(root).exists():
        subprocess.run([CHATTR, "-R", "-f", "-i", str(root)], capture_output=True)


def stored_objects(c: Cairn) -> dict[str, str]:
    """SOP Instance UID -> sha256 of its current stored object."""
    return dict(c.query("SELECT sop_instance_uid, sha256 FROM instances WHERE current = 1"))


def assert_all_on_some_volume(c: ArchiveCairn, sops: set[str], kind: str | None = None) -> None:
    got = c.verified_by_kind()
    have = set().union(*got.values()) if kind is None and got else got.get(kind, set())
    missing = sops - have
    assert not missing, (f"{len(missing)} of {len(sops)} instances have no verified copy"
                         f"{' on ' + kind if kind else ''}: e.g. {sorted(missing)[:3]}\n"
                         f"{c.log_tail(30)}")
