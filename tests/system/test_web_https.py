"""`cairnd run` serves the web panel over HTTPS only, with a device certificate it makes at first
start (kept across restarts), and prints a one-time setup code while no account exists."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import time
import urllib.error
import urllib.request

from harness import wait_port


def _https(port, path, method="GET", body=None, headers=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method, data=body,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _cert_der(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def _setup_code(lines):
    for line in lines:
        if "setup code: " in line:
            return line.split("setup code: ")[1].split()[0]
    return None


def test_run_serves_https_with_a_device_certificate(cairn):
    port = cairn.http_port
    wait_port(port, 10)
    tls = cairn.data_dir / "tls"
    assert (tls / "cert.pem").is_file(), "no device certificate made at first start"
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    deadline = time.monotonic() + 5
    while _setup_code(cairn.stdout_lines) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    code = _setup_code(cairn.stdout_lines)
    assert code, f"no setup code printed: {cairn.stdout_lines}"

    # HTTPS answers; plain HTTP on the same port does not.
    status, _, body = _https(port, "/api/v1/openapi.json")
    assert status == 200 and json.loads(body)["openapi"].startswith("3.")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            answer = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer

    # First boot over HTTPS; the cookie is Secure.
    status, headers, body = _https(
        port, "/api/v1/setup", "POST",
        json.dumps({"code": code, "username": "admin", "password": "a long password"}).encode(),
        {"Content-Type": "application/json"})
    assert status == 201, body
    cookie = headers["set-cookie"]
    for attr in ("HttpOnly", "Secure", "SameSite=Strict"):
        assert attr in cookie, cookie
    token = cookie.split(";")[0]
    status, _, body = _https(port, "/api/v1/status", headers={"Cookie": token})
    assert status == 200 and json.loads(body)["headline"], body

    # The same certificate after a restart, and no setup code once an account exists.
    before = _cert_der(port)
    cairn.restart()
    wait_port(port, 10)
    deadline = time.monotonic() + 5
    while sum("web panel: https://" in l for l in cairn.stdout_lines) < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum("web panel: https://" in l for l in cairn.stdout_lines) == 2, cairn.stdout_lines
    assert _cert_der(port) == before, "the device certificate changed on restart"
    assert sum("setup code" in l for l in cairn.stdout_lines) == 1, \
        "a setup code was printed although an account exists"
