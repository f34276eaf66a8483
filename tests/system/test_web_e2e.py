"""The web panel end to end in a real browser: starts `cairnd demo` on loopback (plain HTTP),
then runs tests/web/e2e.test.mjs (Debian's headless chromium driven by npm playwright-core)
against it with the setup code cairnd printed. tools/test installs chromium, nodejs/npm and
playwright-core (into tests/web/node_modules); a missing one fails this test.

Screenshots land in tests/web/screenshots/ (desktop 1024x600 and phone); the ones committed
in docs/screenshots/ are copies of a run.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from harness import CAIRNCTL, CAIRND, ROOT, STORESCU, TEST_FILES, free_port, wait_port

WEB = ROOT / "tests" / "web"
CHROMIUM = "/usr/bin/chromium"


class LoopbackDemo:
    """`cairnd demo DIR --bind 127.0.0.1`, its console lines collected."""

    def __init__(self, directory, port, http_port):
        self.lines: list[str] = []
        self.done = threading.Event()
        self.proc = subprocess.Popen(
            [str(CAIRND), "demo", str(directory), "--dicom-port", str(port),
             "--http-port", str(http_port), "--bind", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG="info"))
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        if not self.done.wait(30):
            self.proc.kill()
            raise AssertionError(f"demo not ready: {self.lines}")
        assert self.proc.poll() is None, f"demo exited {self.proc.returncode}: {self.lines}"
        wait_port(port, 10)
        wait_port(http_port, 10)

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if line.strip().startswith("stop with Ctrl-C"):
                self.done.set()
        self.done.set()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def test_web_panel_end_to_end(tmp_path):
    node = shutil.which("node")
    assert node, "node is missing (tools/test installs nodejs)"
    assert Path(CHROMIUM).exists(), "chromium is missing (tools/test installs it)"
    assert (WEB / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is missing (tools/test runs npm ci in tests/web)"

    # An image whose patient name carries markup: the panel must show it as text.
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "E2E^Web<b>Test</b>"
    ds.PatientID = "E2E-4711"
    ds.AccessionNumber = "ACC4711"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = datetime.date.today().strftime("%Y%m%d")
    image = tmp_path / "e2e.dcm"
    ds.save_as(image, enforce_file_format=True)

    d = tmp_path / "demo"
    dicom_port, http_port = free_port(), free_port()
    demo = LoopbackDemo(d, dicom_port, http_port)
    shots = WEB / "screenshots"
    try:
        code = next((line.split("setup code: ")[1].split()[0] for line in demo.lines
                     if "setup code: " in line), None)
        assert code, f"cairnd printed no setup code: {demo.lines}"
        url = next((line.split("web panel: ")[1].strip() for line in demo.lines
                    if "web panel: " in line), None)
        assert url == f"http://127.0.0.1:{http_port}/", demo.lines
        env = dict(os.environ, CAIRN_URL=url, CAIRN_SETUP_CODE=code, CAIRN_DATA=str(d),
                   CAIRNCTL=str(CAIRNCTL), STORESCU=STORESCU, CAIRN_DICOM_PORT=str(dicom_port),
                   CAIRN_AE="CAIRN", CAIRN_DICOM_FILE=str(image), CAIRN_PATIENT_ID="E2E-4711",
                   CAIRN_ACCESSION="ACC4711", SCREENSHOTS=str(shots), CHROMIUM=CHROMIUM)
        r = subprocess.run([node, "--test", "--test-reporter=spec", "e2e.test.mjs"], cwd=WEB,
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"browser tests failed:\n{r.stdout}\n{r.stderr}"
        for name in ("desktop-overview", "desktop-overview-rebuild", "desktop-disks", "desktop-archive", "desktop-studies",
                     "desktop-audit", "desktop-settings", "desktop-study-hold", "desktop-lifecycle",
                     "phone-overview", "phone-disks", "phone-archive", "phone-studies",
                     "phone-lifecycle", "phone-audit", "phone-settings"):
            assert (shots / f"{name}.png").stat().st_size > 1000, name
        # The Restart button of the Settings page started cairnd again, in the same process.
        ready = [line for line in demo.lines if line.startswith("cairn ready")]
        assert len(ready) == 2, demo.lines
    finally:
        rc = demo.stop()
    assert rc == 0, f"demo exit {rc}"
    # The panel's changes are in the audit chain, and it is intact.
    r = subprocess.run([str(CAIRNCTL), "--data", str(d), "audit", "verify"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
