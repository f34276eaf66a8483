"""schemathesis against the panel's own OpenAPI document: every operation of
`cairnd demo` (emulated disks, tape and disc, so the monitor and the archive answer), logged in
as admin, with generated valid and invalid input; no answer may be a 5xx, nor a status, content
type or body the document does not describe. Bounded: 8 examples per operation and a 150 s
budget. `DELETE /session` is left out (it would end the session the run uses), and so is the
stateful phase (it changes the admin's own password); the router tests cover both."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

from harness import free_port
from test_web_e2e import LoopbackDemo

PASSWORD = "a long password for the run"


def _setup_code(lines) -> str | None:
    for line in lines:
        if "setup code: " in line:
            return line.split("setup code: ")[1].split()[0]
    return None


def test_schemathesis_finds_nothing_undocumented(tmp_path):
    st = shutil.which("st")
    assert st, "schemathesis missing (tools/test installs it: pip install schemathesis)"
    port, http_port = free_port(), free_port()
    demo = LoopbackDemo(tmp_path / "demo", port, http_port)
    try:
        code = _setup_code(demo.lines)
        assert code, demo.lines
        base = f"http://127.0.0.1:{http_port}/api/v1"
        req = urllib.request.Request(
            f"{base}/setup", method="POST",
            data=json.dumps({"code": code, "username": "admin", "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 201
            cookie = r.headers["set-cookie"].split(";")[0]
            csrf = json.loads(r.read())["csrf_token"]
        t0 = time.monotonic()
        run = subprocess.run(
            [st, "run", f"{base}/openapi.json",
             "-H", f"Cookie: {cookie}", "-H", f"X-CSRF-Token: {csrf}",
             "--checks", "not_a_server_error,status_code_conformance,"
                         "content_type_conformance,response_schema_conformance",
             "--exclude-operation-id", "delete_session",
             "--phases", "coverage,fuzzing",
             "--max-examples", "8", "--workers", "1", "--max-time", "150",
             "--generation-database", "none", "--seed", "13",
             "--request-timeout", "30"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        out = run.stdout + run.stderr
        (tmp_path / "schemathesis.out").write_text(out)
        assert run.returncode == 0, f"schemathesis found problems:\n{out[-8000:]}"
        assert "Tested: 26" in out, out[-3000:]
        assert "401 Unauthorized (" not in out, f"the session ended during the run:\n{out[-3000:]}"
        assert "generated" in out and " passed" in out, out[-3000:]
        assert time.monotonic() - t0 < 200
    finally:
        assert demo.stop() == 0, "the demo did not stop cleanly"
