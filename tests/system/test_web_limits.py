"""The panel cannot starve the box: idle and slow connections to the web panel
are closed within the header timeout, one address gets at most `max_connections_per_address`,
and a flood of idle connections from many addresses holds at most `max_connections` descriptors,
so the DICOM node keeps storing and the panel keeps answering a fresh request. Bounded: loopback
only, at most 2,000 connections, each test well under a minute. The daemon runs `cairnd run`
(HTTPS); the plain-HTTP path is checked in firmware/cairn-web/tests/connections.rs."""

from __future__ import annotations

import os
import resource
import select
import socket
import ssl
import time
import urllib.request

from harness import TEST_FILES, proc_status_kib, wait_port

CT_FILE = TEST_FILES / "CT_small.dcm"


def configure(c, **http) -> None:
    c.config["http"].update(http)
    c.write_config()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tls_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def closed_by_peer(s: socket.socket) -> bool:
    """True when the server has closed `s` (EOF or reset); never blocks. On a TLS socket,
    records that are not application data (session tickets) do not count."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    if isinstance(s, ssl.SSLSocket):
        timeout = s.gettimeout()
        s.setblocking(False)
        try:
            return s.recv(65536) == b""
        except ssl.SSLWantReadError:
            return False
        except (ssl.SSLError, OSError):
            return True
        finally:
            s.settimeout(timeout)
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except OSError:
        return True


def wait_closed(s: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed `s`, or None if still open after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r, _, _ = select.select([s], [], [], 0.1)
        if r:
            try:
                if s.recv(65536) == b"":
                    return time.monotonic() - t0
            except (ConnectionResetError, ssl.SSLError, OSError):
                return time.monotonic() - t0
    return None


def fresh_get(port: int, path: str = "/api/v1/openapi.json", timeout: float = 10) -> int:
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    with urllib.request.urlopen(req, context=tls_ctx(), timeout=timeout) as r:
        r.read()
        return r.status


def flood(port: int, count: int, addresses: int) -> list[socket.socket]:
    """`count` idle TCP connections to the panel from 127.0.0.2 onwards, `addresses` of them."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.0.{2 + i % addresses}", 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def test_idle_and_slow_connections_are_closed_within_the_header_timeout(cairn_factory):
    c = cairn_factory(start=False)
    configure(c, header_timeout_secs=2)
    c.start()
    wait_port(c.http_port, 10)
    # An idle connection that never starts its TLS handshake.
    idle = socket.create_connection(("127.0.0.1", c.http_port), timeout=5)
    # A slowloris: handshake done, then the head one byte every 0.4 s, never finished.
    slow = tls_ctx().wrap_socket(socket.create_connection(("127.0.0.1", c.http_port), timeout=5))
    head = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    sent = 0
    slow_closed = None
    while time.monotonic() - t0 < 10 and slow_closed is None:
        try:
            slow.send(head[sent:sent + 1])
            sent += 1
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            slow_closed = time.monotonic() - t0
            break
        if closed_by_peer(slow):
            slow_closed = time.monotonic() - t0
        time.sleep(0.4)
    idle_closed = wait_closed(idle, 1)
    if idle_closed is not None:
        idle_closed = time.monotonic() - t0
    assert slow_closed is not None and slow_closed <= 6, \
        f"a header trickled one byte per 0.4 s stayed open {time.monotonic() - t0:.1f} s"
    assert idle_closed is not None and idle_closed <= 6, "an idle connection stayed open"
    idle.close()
    slow.close()
    assert fresh_get(c.http_port) == 200


def test_one_address_gets_at_most_its_share(cairn_factory):
    c = cairn_factory(start=False)
    configure(c, max_connections_per_address=8, header_timeout_secs=30)
    c.start()
    wait_port(c.http_port, 10)
    # From an address of their own: the readiness probe's connection from 127.0.0.1 may still
    # hold its slot for a moment after it closed, and must not count against these twenty.
    mine = [socket.create_connection(("127.0.0.1", c.http_port), timeout=5,
                                     source_address=("127.0.0.10", 0)) for _ in range(20)]
    # The refused ones are closed at once; wait (bounded) for a loaded machine to show it.
    deadline = time.monotonic() + 5
    while sum(closed_by_peer(s) for s in mine) < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    closed = sum(closed_by_peer(s) for s in mine)
    assert closed == 12, f"{closed} of 20 connections from one address were closed, not 12"
    # Another address is not affected, and the slots come back when the first ones close.
    other = socket.socket()
    other.bind(("127.0.0.9", 0))
    other.connect(("127.0.0.1", c.http_port))
    time.sleep(1.0)
    assert not closed_by_peer(other), "a connection from another address was refused"
    for s in mine:
        s.close()
    other.close()
    time.sleep(0.3)
    assert fresh_get(c.http_port) == 200


def test_an_idle_flood_starves_neither_dicom_nor_the_panel(cairn_factory):
    c = cairn_factory(start=False)
    configure(c, max_connections=64, max_connections_per_address=16, header_timeout_secs=60)
    c.start()
    wait_port(c.http_port, 10)
    # The daemon gets a small descriptor limit, as on a box with a low ulimit.
    resource.prlimit(c.pid, resource.RLIMIT_NOFILE, (1024, 1024))
    assert fresh_get(c.http_port) == 200
    # The baseline is a box that has stored an image and settled: under load the lifecycle
    # thread's first passes, which open its long-lived read connections to the index (three
    # descriptors that stay, not a leak), can come after the panel answers.
    r = c.storescu([CT_FILE])
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(2.5)
    fds_before = open_fds(c.pid)
    rss_before = proc_status_kib(c.pid, "VmRSS")
    socks = flood(c.http_port, 2000, addresses=100)
    try:
        time.sleep(2.0)
        fds_during = open_fds(c.pid)
        assert fds_during <= fds_before + 64 + 16, \
            f"the panel holds {fds_during - fds_before} more descriptors under the flood"
        r = c.echo()
        assert r.returncode == 0, f"C-ECHO failed under the flood: {r.stdout}{r.stderr}"
        r = c.storescu([CT_FILE])
        assert r.returncode == 0 and "Success" in r.stdout + r.stderr, \
            f"C-STORE failed under the flood: {r.stdout}{r.stderr}\n{c.log_tail()}"
        assert fresh_get(c.http_port) == 200
    finally:
        for s in socks:
            s.close()
    time.sleep(2.0)
    assert open_fds(c.pid) <= fds_before + 8, "descriptors were kept after the flood"
    rss_after = proc_status_kib(c.pid, "VmRSS")
    assert rss_after - rss_before < 64 * 1024, \
        f"RSS grew {rss_after - rss_before} KiB over the flood and stayed"
    assert fresh_get(c.http_port) == 200
