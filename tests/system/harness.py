"""Start, stop and inspect a real cairnd for the system tests (contract: docs/interface.md).

A `Cairn` owns one data directory and one config file and can start cairnd on it any number of
times (restart after SIGKILL is the point of the durability tests). Helpers read the data
directory the way an operator would: sqlite3 read-only, the objects/ and spool/ trees, and
`cairnctl`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import pydicom.data
from pynetdicom import AE, _config as pnd_config

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CAIRN_TARGET_DIR") or os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release"
CAIRND = TARGET / "cairnd"
CAIRNCTL = TARGET / "cairnctl"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
TEST_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"

# Send files as their raw data set bytes (no decode/re-encode by pynetdicom).
pnd_config.STORE_SEND_CHUNKED_DATASET = True

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")

ARTIM_SECS = 3
IDLE_SECS = 10

DEFAULT_PEERS = [
    {"ae": "TESTSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
    {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
     "retrieve": True},
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML for {v!r}")


def render_config(cfg: dict) -> str:
    """cfg = {"dicom": {..., "peers": [...]}, "store": {...}, "http": {...}} -> TOML text."""
    out = []
    for section in ("dicom", "store", "http"):
        if section not in cfg:
            continue
        out.append(f"[{section}]")
        for k, v in cfg[section].items():
            if k != "peers":
                out.append(f"{k} = {toml_value(v)}")
        out.append("")
        if section == "dicom":
            for peer in cfg["dicom"].get("peers", []):
                out.append("[[dicom.peers]]")
                for k, v in peer.items():
                    out.append(f"{k} = {toml_value(v)}")
                out.append("")
    return "\n".join(out)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Part 10 files: split meta group / data set the way a sender does
# --------------------------------------------------------------------------------------------

_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
         b"UV"}


def is_part10(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_meta(path: Path) -> tuple[dict[int, bytes], int, bytes]:
    """(meta elements {element number: raw value}, offset of the data set, preamble)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    assert head[128:132] == b"DICM", f"{path} is not Part 10"
    pos, meta = 132, {}
    while pos + 8 <= len(head):
        group, elem = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4: pos + 6]
        if vr in _LONG:
            (n,) = struct.unpack_from("<I", head, pos + 8)
            hdr = 12
        else:
            (n,) = struct.unpack_from("<H", head, pos + 6)
            hdr = 8
        meta[elem] = head[pos + hdr: pos + hdr + n]
        pos += hdr + n
    return meta, pos, head[:128]


def meta_uid(meta: dict[int, bytes], elem: int) -> str | None:
    v = meta.get(elem)
    return None if v is None else v.decode("ascii", "replace").rstrip("\0 ")


def dataset_bytes(path: Path) -> bytes:
    _, off, _ = read_meta(path)
    with open(path, "rb") as f:
        f.seek(off)
        return f.read()


def dataset_sha256(path: Path) -> str:
    _, off, _ = read_meta(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(off)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------------------

class Cairn:
    """One cairnd configuration + data directory; start()/stop()/kill()/restart() it."""

    def __init__(self, base: Path, **overrides):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(overrides.pop("data_dir", self.base / "data"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ae = overrides.pop("ae_title", "CAIRN")
        self.port = overrides.pop("port", None) or free_port()
        self.http_port = overrides.pop("http_port", None) or free_port()
        self.config_path = self.base / "cairn.toml"
        self.log_path = self.base / "cairnd.log"
        self.proc: subprocess.Popen | None = None
        self.ready_line: str | None = None
        self.stdout_lines: list[str] = []
        self.stopped_by_test = False
        self.runs = 0
        dicom = {
            "ae_title": self.ae,
            "bind": "127.0.0.1",
            "port": self.port,
            "accept_unknown_peers": False,
            "max_associations": 16,
            "max_pdu_bytes": 65536,
            "artim_timeout_secs": ARTIM_SECS,
            "idle_timeout_secs": IDLE_SECS,
            "max_object_bytes": 4294967296,
        }
        peers = overrides.pop("peers", DEFAULT_PEERS)
        for key in list(overrides):
            if key in dicom:
                dicom[key] = overrides.pop(key)
        if overrides:
            raise TypeError(f"unknown cairn overrides: {sorted(overrides)}")
        dicom["peers"] = peers
        self.config = {
            "dicom": dicom,
            "store": {"data_dir": str(self.data_dir)},
            "http": {"bind": "127.0.0.1", "port": self.http_port},
        }
        self.write_config()

    # -- config ---------------------------------------------------------------------------
    def write_config(self) -> None:
        self.config_path.write_text(render_config(self.config))

    @property
    def artim(self) -> int:
        return self.config["dicom"]["artim_timeout_secs"]

    # -- process ----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> "Cairn":
        assert CAIRND.exists(), f"{CAIRND} missing: run cargo build --release -p cairnd -p cairnctl"
        assert not self.running, "cairnd already running"
        self.runs += 1
        self.stopped_by_test = False
        self.ready_line = None
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.runs} at {time.time():.3f} =====\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [str(CAIRND), "run", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        ready = threading.Event()
        proc = self.proc
        lines = self.stdout_lines

        def pump():
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if line.startswith("cairn ready:"):
                    self.ready_line = line
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.wait(0.05) and self.ready_line is not None:
                break
            if proc.poll() is not None:
                raise AssertionError(
                    f"cairnd exited with {proc.returncode} before ready; "
                    f"stdout={lines!r}\nstderr tail:\n{self.log_tail()}")
        else:
            self.kill()
            raise AssertionError(f"cairnd not ready after {timeout}s; stdout={lines!r}\n"
                                 f"{self.log_tail()}")
        expected = f"cairn ready: DICOM AE {self.ae} listening on 127.0.0.1:{self.port}"
        assert self.ready_line.startswith(expected) and \
            not self.ready_line[len(expected):len(expected) + 1].isdigit(), \
            f"ready line {self.ready_line!r} does not start with {expected!r}"
        wait_port(self.port, deadline - time.monotonic())
        return self

    def _wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"cairnd did not exit within {timeout}s of SIGTERM "
                                 f"(SIGKILLed it)\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status (negative = killed by signal)."""
        assert self.proc is not None, "cairnd never started"
        self.stopped_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap (a simulated power cut of the daemon)."""
        self.stopped_by_test = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> "Cairn":
        if self.running:
            rc = self.stop()
            assert rc == 0, f"cairnd exited {rc} on SIGTERM\n{self.log_tail()}"
        return self.start()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def vm_hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    # -- data directory ---------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_dir / "cairn.db"

    def db(self) -> sqlite3.Connection:
        """A read-only connection (the caller closes it)."""
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        con.execute("PRAGMA busy_timeout = 30000")
        return con

    def query(self, sql: str, args=()) -> list[tuple]:
        con = self.db()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def instance_count(self) -> int:
        if not self.db_path.exists():
            return 0
        return self.query("SELECT count(*) FROM instances")[0][0]

    def instance_rows(self, sop_uid: str) -> list[dict]:
        con = self.db()
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(
                "SELECT * FROM instances WHERE sop_instance_uid = ? ORDER BY rowid", (sop_uid,))]
        finally:
            con.close()

    def current_row(self, sop_uid: str) -> dict | None:
        rows = [r for r in self.instance_rows(sop_uid) if r["current"] == 1]
        assert len(rows) <= 1, f"{len(rows)} current rows for {sop_uid}"
        return rows[0] if rows else None

    def audit_rows(self) -> list[dict]:
        con = self.db()
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY seq")]
        finally:
            con.close()

    def object_files(self) -> list[Path]:
        root = self.data_dir / "objects"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def spool_files(self) -> list[Path]:
        root = self.data_dir / "spool"
        return sorted(root.rglob("*")) if root.exists() else []

    def object_path(self, sha: str) -> Path:
        """The object file named by sha (asserts exactly one, laid out per interface.md)."""
        path = self.data_dir / "objects" / sha[:2] / sha[2:4] / f"{sha}.dcm"
        if path.is_file():
            return path
        hits = sorted((self.data_dir / "objects").glob(f"*/*/{sha}.dcm"))
        raise AssertionError(f"object file {path.relative_to(self.data_dir)} missing"
                             + (f"; found at {hits}" if hits else ""))

    def wait_spool_empty(self, timeout: float = 5.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while True:
            left = self.spool_files()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    # -- tools ------------------------------------------------------------------------------
    def ctl(self, *args: str, timeout: float = 120, data_dir: Path | None = None):
        assert CAIRNCTL.exists(), f"{CAIRNCTL} missing"
        return subprocess.run(
            [str(CAIRNCTL), "--data", str(data_dir or self.data_dir), *args],
            capture_output=True, text=True, timeout=timeout)

    def fsck(self, data_dir: Path | None = None):
        return self.ctl("fsck", data_dir=data_dir)

    def echo(self, calling: str = "ECHOSCU", called: str | None = None, timeout: float = 20):
        return subprocess.run(
            [ECHOSCU, "-aet", calling, "-aec", called or self.ae, "-to", "10", "-ta", "10",
             "-td", "10", "127.0.0.1", str(self.port)],
            capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)

    def assert_serving(self) -> None:
        assert self.running, f"cairnd died (rc={self.proc.returncode})\n{self.log_tail()}"
        r = self.echo()
        assert r.returncode == 0, f"echoscu failed after the test: rc={r.returncode}\n" \
                                  f"{r.stdout}{r.stderr}\n{self.log_tail()}"

    def storescu(self, files, calling: str = "STORESCU", extra=(), timeout: float = 300):
        return subprocess.run(
            [STORESCU, "-v", "-aet", calling, "-aec", self.ae, "-to", "20", "-ta", "20",
             "-td", "20", *extra, "127.0.0.1", str(self.port), *map(str, files)],
            capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)

    def associate(self, contexts, calling: str = "TESTSCU", called: str | None = None,
                  max_pdu: int = 16382):
        """A pynetdicom association; contexts = [(abstract syntax, [transfer syntaxes])]."""
        ae = AE(ae_title=calling)
        ae.acse_timeout = 15
        ae.dimse_timeout = 60
        ae.network_timeout = 30
        ae.maximum_pdu_size = max_pdu
        for abstract, tss in contexts:
            ae.add_requested_context(abstract, tss)
        return ae.associate("127.0.0.1", self.port, ae_title=called or self.ae)


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + max(timeout, 0.5)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} never opened")
            time.sleep(0.05)


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def store_responses(output: str) -> list[tuple[str, str]]:
    """(file sent, response text) pairs from `storescu -v` output, in order."""
    pairs, current = [], None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("I: Sending file: "):
            current = line[len("I: Sending file: "):]
        elif line.startswith("I: Received Store Response") and current is not None:
            pairs.append((current, line))
            current = None
    return pairs


def finish(c: Cairn) -> None:
    """Teardown: SIGTERM a running daemon and demand exit 0; flag one that died by itself."""
    if c.proc is None:
        return
    try:
        if c.running:
            rc = c.stop()
            assert rc == 0, f"cairnd exited {rc} on SIGTERM at teardown\n{c.log_tail()}"
        elif not c.stopped_by_test:
            raise AssertionError(f"cairnd died during the test (rc={c.proc.returncode})\n"
                                 f"{c.log_tail()}")
    finally:
        c.kill()


@contextlib.contextmanager
def managed(base: Path, start: bool = True, **overrides):
    c = Cairn(base, **overrides)
    try:
        if start:
            c.start()
        yield c
    finally:
        finish(c)
