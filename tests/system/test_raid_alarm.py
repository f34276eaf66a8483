"""RAID monitor, latched alarm and disk swap on the demo box (`cairnd demo`): the emulated md
array in DIR/hw changes over time, the emulated buzzer records its tones in DIR/hw/buzzer.jsonl.

Fail a disk: the buzzer sounds within 2 s; silence stops it; a second failure sounds again;
swapping both disks rebuilds the array to OK and clears the alarm, with no command but the swap.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

from harness import CAIRNCTL, free_port
from test_demo import Demo


def ctl(d, *args, check=True):
    r = subprocess.run([str(CAIRNCTL), "--data", str(d), *args], capture_output=True, text=True,
                       timeout=30)
    if check:
        assert r.returncode == 0, f"cairnctl {args}: {r.returncode} {r.stdout} {r.stderr}"
    return r


def raid(d):
    return json.loads(ctl(d, "raid", "status", "--json").stdout)


def alarm(d):
    return json.loads(ctl(d, "alarm", "status", "--json").stdout)


def tones(d):
    path = d / "hw" / "buzzer.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_status(d, timeout=10):
    return wait_for(lambda: (d / "raid.json").exists() and raid(d), timeout, "raid.json")


def md0(d):
    return next(a for a in raid(d)["arrays"] if a["name"] == "md0")


def sounds_after(d, t_ms):
    return any(t["hz"] > 0 and t["at_ms"] >= t_ms for t in tones(d))


def test_fail_silence_second_failure_swap_rebuild(tmp_path):
    d = tmp_path / "demo"
    demo = Demo(d, free_port(), free_port())
    try:
        wait_status(d)
        a = md0(d)
        assert (a["level"], a["health"], a["rebuild_percent"]) == ("raid6", "ok", None)
        assert sorted(m["bay"] for m in a["members"]) == [1, 2, 3, 4, 5, 6]
        assert all(m["state"] == "in_sync" for m in a["members"])
        assert alarm(d) == {"sounding": False, "events": []}

        # 1. A disk fails: the buzzer sounds within 2 s, the status names bay 3.
        t0 = int(time.time() * 1000)
        ctl(d, "demo", "fail-disk", "3")
        wait_for(lambda: sounds_after(d, t0), 2.0, "the buzzer to sound")
        first = next(t for t in tones(d) if t["hz"] > 0 and t["at_ms"] >= t0)
        assert first["at_ms"] - t0 <= 2000
        al = alarm(d)
        assert al["sounding"] is True
        ev = [e for e in al["events"] if e["kind"] == "disk-failed"]
        assert [(e["bay"], e["silenced"]) for e in ev] == [(3, False)]
        a = md0(d)
        assert a["health"] == "degraded"
        assert {m["bay"]: m["state"] for m in a["members"]}[3] == "faulty"

        # Refused: pulling a healthy member out of a degraded array.
        r = ctl(d, "disk", "remove", "5", check=False)
        assert r.returncode == 1 and "refused" in r.stdout, r.stdout
        assert md0(d)["health"] == "degraded"

        # 2. Silence stops it.
        ctl(d, "alarm", "silence")
        t1 = int(time.time() * 1000)
        assert alarm(d)["sounding"] is False
        assert all(e["silenced"] for e in alarm(d)["events"])
        time.sleep(1.5)
        assert not sounds_after(d, t1 + 100), tones(d)[-5:]
        assert tones(d)[-1]["hz"] == 0

        # 3. A second failure sounds again (array now critical: no redundancy left).
        t2 = int(time.time() * 1000)
        ctl(d, "demo", "fail-disk", "4")
        wait_for(lambda: sounds_after(d, t2), 2.0, "the buzzer to sound again")
        al = alarm(d)
        assert al["sounding"] is True
        kinds = {(e["kind"], e["bay"], e["silenced"]) for e in al["events"]}
        assert ("disk-failed", 4, False) in kinds
        assert ("array-critical", None, False) in kinds
        assert ("disk-failed", 3, True) in kinds
        assert md0(d)["health"] == "critical"

        # 4. The swap: the technician only slides blank disks in; they are added and rebuilt.
        ctl(d, "demo", "insert-disk", "3")
        ctl(d, "demo", "insert-disk", "4")
        seen = wait_for(lambda: md0(d)["rebuild_percent"] is not None and md0(d), 5,
                        "the rebuild to start")
        assert 0 <= seen["rebuild_percent"] <= 100
        wait_for(lambda: md0(d)["health"] == "ok" and md0(d)["rebuild_percent"] is None, 40,
                 "the array to be healthy again")
        a = md0(d)
        assert all(m["state"] == "in_sync" for m in a["members"])
        assert sorted(m["bay"] for m in a["members"]) == [1, 2, 3, 4, 5, 6]
        al = wait_for(lambda: (lambda x: x if not x["sounding"] and not x["events"] else None)(
            alarm(d)), 2, "the alarm to clear")
        assert al == {"sounding": False, "events": []}
        t3 = int(time.time() * 1000)
        time.sleep(0.5)
        assert not sounds_after(d, t3)
    finally:
        rc = demo.stop()
    assert rc == 0

    # Every step is audited, and the chain is intact.
    assert ctl(d, "audit", "verify").returncode == 0
    db = sqlite3.connect(f"file:{d / 'cairn.db'}?mode=ro", uri=True)
    actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY seq")]
    for want in ("alarm-raise", "alarm-silence", "raid-event", "raid-action", "alarm-clear"):
        assert want in actions, (want, sorted(set(actions)))


def test_latch_survives_restart_and_used_disk_waits(tmp_path):
    d = tmp_path / "demo"
    demo = Demo(d, free_port(), free_port())
    try:
        wait_status(d)
        ctl(d, "demo", "fail-disk", "2")
        wait_for(lambda: alarm(d)["sounding"], 2, "the alarm")
    finally:
        assert demo.stop() == 0
    # The latch survives a restart: still sounding, same single event.
    demo = Demo(d, free_port(), free_port())
    try:
        t0 = int(time.time() * 1000)
        wait_for(lambda: sounds_after(d, t0), 3, "the buzzer after restart")
        al = alarm(d)
        assert [(e["kind"], e["bay"]) for e in al["events"]] == [("disk-failed", 2)]
        ctl(d, "alarm", "silence")
        # A disk holding another array's superblock is not added without a confirmation.
        ctl(d, "demo", "insert-disk", "2", "--kind", "used")
        wait_for(lambda: any(b.get("reason") == "needs-confirmation" and b["bay"] == 2
                             for b in raid(d)["blocked"]), 5, "the confirmation request")
        assert md0(d)["health"] == "degraded"
        assert md0(d)["rebuild_percent"] is None
        ctl(d, "disk", "confirm", "2")
        wait_for(lambda: md0(d)["health"] == "ok", 40, "the rebuild after confirmation")
        wait_for(lambda: not alarm(d)["events"], 2, "the alarm to clear")
    finally:
        assert demo.stop() == 0
