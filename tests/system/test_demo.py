"""`cairnd demo DIR`: first run writes a complete config, later runs read it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import tomllib

from harness import CAIRND, DCMTK_ENV, ECHOSCU, free_port, wait_port


class Demo:
    def __init__(self, directory, port, http_port):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [str(CAIRND), "demo", str(directory), "--dicom-port", str(port),
             "--http-port", str(http_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG="info"))
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        if not self.ready.wait(30):
            self.proc.kill()
            raise AssertionError(f"demo not ready: {self.lines}")
        assert self.proc.poll() is None, f"demo exited {self.proc.returncode}: {self.lines}"
        wait_port(port, 10)

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("cairn ready:"):
                self.ready.set()
        self.ready.set()

    @property
    def ready_line(self) -> str:
        return next(line for line in self.lines if line.startswith("cairn ready:"))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def echo(port, called, calling="ANYONE"):
    return subprocess.run([ECHOSCU, "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30, env=DCMTK_ENV)


def test_demo_first_run_writes_config_second_run_reads_it(tmp_path):
    d = tmp_path / "demo"
    port, http = free_port(), free_port()
    demo = Demo(d, port, http)
    try:
        toml_path = d / "cairn.toml"
        assert toml_path.is_file(), "demo did not write DIR/cairn.toml"
        text = toml_path.read_text()
        cfg = tomllib.loads(text)
        assert cfg["dicom"]["accept_unknown_peers"] is True
        assert os.path.realpath(cfg["store"]["data_dir"]) == os.path.realpath(d)
        for key in ("ae_title", "bind", "port", "max_associations", "max_pdu_bytes",
                    "artim_timeout_secs", "idle_timeout_secs", "max_object_bytes"):
            assert key in cfg["dicom"], f"demo config lacks dicom.{key}"
        assert "http" in cfg and "port" in cfg["http"]
        assert "#" in text, "the demo config should be commented"
        ae = cfg["dicom"]["ae_title"]
        assert demo.ready_line.startswith(f"cairn ready: DICOM AE {ae} listening on "), \
            demo.ready_line
        assert re.search(rf":{port}\b", demo.ready_line), demo.ready_line
        r = echo(port, ae)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (d / "cairn.db").exists(), "demo data_dir has no cairn.db"
    finally:
        rc = demo.stop()
    assert rc == 0, f"demo exit {rc}"

    # Second run: edit the AE title; the demo must read the file, not rewrite it.
    edited = re.sub(r'(?m)^(\s*ae_title\s*=\s*)"[^"]*"', r'\1"DEMOTWO"', text, count=1)
    assert edited != text
    toml_path.write_text(edited)
    port2 = free_port()
    demo = Demo(d, port2, free_port())
    try:
        assert toml_path.read_text() == edited, "second run rewrote cairn.toml"
        assert demo.ready_line.startswith("cairn ready: DICOM AE DEMOTWO listening on "), \
            demo.ready_line
        assert re.search(rf":{port2}\b", demo.ready_line), "--dicom-port must override the port"
        r = echo(port2, "DEMOTWO")
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(0.1)
    finally:
        rc = demo.stop()
    assert rc == 0, f"second demo run exit {rc}"
