""""Medium needed" sounds the alarm on the demo box (`cairnd demo`).

The demo's tape is ejected and images arrive: the archive thread says a medium is needed, the
RAID monitor raises the latched `medium-needed` alarm, the emulated buzzer (DIR/hw/buzzer.jsonl)
plays its pattern, `cairnctl alarm status`, `cairnctl archive status` and `GET /api/v1/status`
say so. A silence holds across a restart while the tape is still missing; a new cartridge taken
into use clears the alarm and the waiting images are verified on it.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
import time
import urllib.error
import urllib.request

from archivelib import send
from datagen import make_instances
from harness import free_port
from test_demo import Demo
from test_raid_alarm import alarm, ctl, tones, wait_for, wait_status

PATTERN_HZ = 1000  # cairn-alarm's medium-needed: one long low tone (600 ms), a long pause


class Port:
    def __init__(self, port):
        self.port = port
        self.ae = "CAIRN"


def archive(d):
    return json.loads(ctl(d, "archive", "status", "--json").stdout)


def tape(st):
    return next(t for t in st["targets"] if t["name"] == "tape")


def medium_events(d):
    return [e for e in alarm(d)["events"] if e["kind"] == "medium-needed"]


def http(url, path, method="GET", body=None, cookie=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    req = urllib.request.Request(url.rstrip("/") + path, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def panel_login(demo):
    url = next(ln.split("web panel: ")[1].strip() for ln in demo.lines if "web panel: " in ln)
    code = next(ln.split("setup code: ")[1].split()[0] for ln in demo.lines
                if "setup code: " in ln)
    status, headers, body = http(url, "/api/v1/setup", "POST",
                                 {"code": code, "username": "admin",
                                  "password": "a long password"})
    assert status == 201, body
    return url, headers["set-cookie"].split(";")[0]


def test_medium_needed_sounds_silences_survives_restart_and_clears(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    insts = make_instances(tmp_path / "send", 6, seed="medium-alarm")
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        url, cookie = panel_login(demo)
        # Nothing queued: no medium is needed even once the tape is out.
        wait_for(lambda: archive(d)["targets"], 30, "the archive status")
        assert alarm(d) == {"sounding": False, "events": []}
        first = tape(archive(d))["volume"]
        ctl(d, "archive", "eject", "--target", "tape")
        time.sleep(2.5)  # two archive passes
        assert medium_events(d) == [], alarm(d)

        # Images arrive with no tape: the box says so and sounds the medium-needed pattern.
        t0 = int(time.time() * 1000)
        send(Port(port), [i.path for i in insts])
        wait_for(lambda: medium_events(d), 30, "the medium-needed alarm")
        al = alarm(d)
        assert al["sounding"] is True
        [ev] = [e for e in al["events"] if e["kind"] == "medium-needed"]
        assert (ev["bay"], ev["array"], ev["silenced"]) == (None, None, False)
        assert "tape" in ev["message"].lower() and "load a new tape" in ev["message"], ev
        wait_for(lambda: any(t["hz"] == PATTERN_HZ and t["at_ms"] >= t0 for t in tones(d)), 5,
                 "the buzzer to play the medium-needed tone")
        # the tone lasts its 600 ms, then a pause
        wait_for(lambda: [t for t in tones(d) if t["at_ms"] >= t0][-1]["hz"] == 0, 3,
                 "the pause after the tone")
        played = [t for t in tones(d) if t["at_ms"] >= t0]
        on = next(i for i, t in enumerate(played) if t["hz"] == PATTERN_HZ)
        assert played[on + 1]["hz"] == 0, played
        assert 500 <= played[on + 1]["at_ms"] - played[on]["at_ms"] <= 1000, played
        assert all(t["hz"] in (0, PATTERN_HZ) for t in played), played
        st = archive(d)
        assert st["medium_needed"] is True and tape(st)["queue"]["instances"] == 6, st
        assert "MEDIUM NEEDED" in ctl(d, "archive", "status").stdout

        # The panel's overview says it in words.
        status, _, body = http(url, "/api/v1/status", cookie=cookie)
        assert status == 200, body
        ov = json.loads(body)
        assert ov["state"] == "alarm" and ov["sounding"] is True, ov
        assert "Tape" in ov["headline"] and "load a new tape" in ov["headline"], ov
        assert ov["health"]["action_page"] == "/archive", ov

        # Silence: the buzzer stops; the event stays latched (silenced), not raised again.
        ctl(d, "alarm", "silence")
        t1 = int(time.time() * 1000)
        assert alarm(d)["sounding"] is False
        time.sleep(2.0)
        assert not any(t["hz"] > 0 and t["at_ms"] >= t1 + 100 for t in tones(d)), tones(d)[-5:]
        assert [(e["id"], e["silenced"]) for e in medium_events(d)] == [(ev["id"], True)]
    finally:
        rc = demo.stop()
    assert rc == 0

    # A restart with the tape still missing keeps the silenced event (no new beeping).
    t2 = int(time.time() * 1000)
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        time.sleep(4.0)  # several archive and monitor passes
        assert [(e["id"], e["silenced"]) for e in medium_events(d)] == [(ev["id"], True)]
        assert alarm(d)["sounding"] is False
        assert not any(t["hz"] > 0 and t["at_ms"] >= t2 for t in tones(d)), tones(d)[-5:]

        # A new cartridge taken into use clears it; the waiting images are verified.
        ctl(d, "demo", "tape-insert", "--id", "DEMO02")
        ctl(d, "archive", "load", "--target", "tape")
        wait_for(lambda: not medium_events(d), 30, "the medium-needed alarm to clear")
        assert alarm(d) == {"sounding": False, "events": []}
        st = wait_for(lambda: (lambda s: s if s["instances_verified"] == 6
                               and tape(s)["queue"]["instances"] == 0 else None)(archive(d)),
                      120, "the 6 images verified on the new tape")
        assert st["medium_needed"] is False
        if first is not None:
            assert tape(st)["volume"]["volume_id"] != first["volume_id"], st
    finally:
        rc = demo.stop()
    assert rc == 0

    assert ctl(d, "audit", "verify").returncode == 0
    db = sqlite3.connect(f"file:{d / 'cairn.db'}?mode=ro", uri=True)
    rows = [(a, json.loads(det)) for a, det in db.execute(
        "SELECT action, detail FROM audit WHERE object = 'archive' OR action = 'alarm-silence' "
        "ORDER BY seq")]
    raised = [det for a, det in rows if a == "alarm-raise"]
    assert [(r["id"], r["kind"]) for r in raised] == [(ev["id"], "medium-needed")], rows
    assert any(a == "alarm-silence" and ev["id"] in det["ids"] for a, det in rows), rows
    assert any(a == "alarm-clear" and det["ids"] == [ev["id"]] for a, det in rows), rows
