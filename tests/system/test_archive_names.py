"""Names, agreeing screens and the restore's audit.

1. Every volume has one short name (the name printed on the cartridge: the demo's DEMO01, the
   emulator's TAPE02) in every command, page and message; the long id stays internal.
2. The medium-needed text has no stray spaces, and right after a load the overview and the
   Archive page (the panel's JSON API) never contradict each other.
3. A disk md has failed never shows "SMART ok" (Disks page, `cairnctl raid status`).
4. Restored images are audited as a restore by the person who asked, not as a store by an AE.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from archivelib import ArchiveCairn, clear_immutable, send
from datagen import make_instances
from harness import CAIRNCTL, finish, free_port
from test_demo import Demo
from test_medium_alarm import Port, archive, http, medium_events, panel_login, tape
from test_raid_alarm import alarm, ctl, raid, wait_for, wait_status


def get_json(url, path, cookie):
    status, _, body = http(url, path, cookie=cookie)
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


def get_page(url, path, cookie):
    status, _, body = http(url, path, cookie=cookie)
    assert status == 200, (path, status, body[:500])
    return body.decode()


def visible(html: str) -> str:
    """A page's text as a person reads it (tags and attribute values left out)."""
    return re.sub(r"<[^>]*>", " ", html)


def disc(st):
    return next(t for t in st["targets"] if t["name"] == "disc")


# ----------------------------------------------------------------------------------------------
# 1. one name
# ----------------------------------------------------------------------------------------------


def test_every_volume_has_one_short_name_everywhere(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    insts = make_instances(tmp_path / "send", 6, seed="names")
    study = insts[0].study_uid
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        url, cookie = panel_login(demo)
        st = wait_for(lambda: (lambda s: s if s["targets"] and tape(s)["volume"]
                               and disc(s)["volume"] else None)(archive(d)),
                      30, "the demo's tape and disc labelled")
        tv, dv = tape(st)["volume"], disc(st)["volume"]
        assert (tv["name"], dv["name"]) == ("DEMO01", "DISC01"), st
        long_ids = [tv["volume_id"], dv["volume_id"]]
        assert "DEMO01" not in long_ids, "the long id stays the internal id"

        # the label on the medium carries both
        label = json.loads((d / "hw/tape/cartridges/DEMO01/file-0000").read_bytes()
                           .decode().strip())
        assert (label["name"], label["volume_id"]) == ("DEMO01", tv["volume_id"]), label

        def person_facing(text, where):
            for lid in long_ids:
                assert lid not in text, f"{where} shows the long id {lid}:\n{text}"

        send(Port(port), [i.path for i in insts])
        flushed = ctl(d, "archive", "flush", "--timeout", "300").stdout
        person_facing(flushed, "archive flush")
        out = ctl(d, "archive", "status").stdout
        assert "DEMO01" in out and "DISC01" in out, out
        person_facing(out, "archive status")
        out = ctl(d, "archive", "volumes").stdout
        assert "DEMO01" in out and "DISC01" in out, out
        person_facing(out, "archive volumes")
        vols = json.loads(ctl(d, "archive", "volumes", "--json").stdout)
        assert sorted((v["name"], v["volume_id"]) for v in vols) == \
            sorted([("DEMO01", tv["volume_id"]), ("DISC01", dv["volume_id"])]), vols
        st = archive(d)
        assert tape(st)["last_verified"]["name"].startswith("DEMO01"), st
        assert tape(st)["volume"]["name"] == "DEMO01"
        person_facing(tape(st)["message"] + disc(st)["message"], "archive status's notes")

        # the panel: its API and the Archive page
        api = get_json(url, "/api/v1/archive", cookie)
        assert tape(api)["volume"]["name"] == "DEMO01", api
        assert sorted(v["name"] for v in api["volumes"]) == ["DEMO01", "DISC01"], api
        page = visible(get_page(url, "/archive", cookie))
        assert "DEMO01" in page and "DISC01" in page
        person_facing(page, "the Archive page")
        sp = visible(get_page(url, f"/studies/{study}", cookie))
        assert "DEMO01" in sp, "the study page names the tape"
        person_facing(sp, "the study page")

        # eject both; the messages name them; a location is set by the short name
        out = ctl(d, "archive", "eject", "--target", "tape").stdout
        assert "DEMO01" in out, out
        person_facing(out, "archive eject")
        out = ctl(d, "archive", "eject", "--target", "disc").stdout
        assert "DISC01" in out, out
        out = ctl(d, "archive", "set-location", "DEMO01", "offsite_vault").stdout
        assert "DEMO01" in out, out
        person_facing(out, "archive set-location")
        vols = {v["name"]: v for v in json.loads(ctl(d, "archive", "volumes", "--json").stdout)}
        assert vols["DEMO01"]["location"] == "offsite_vault", vols
        bad = ctl(d, "archive", "set-location", "NOSUCH9", "offsite_vault", check=False)
        assert bad.returncode != 0 and "NOSUCH9" in bad.stdout + bad.stderr

        # the emulator's list shows the same name
        out = ctl(d, "demo", "tape-list").stdout
        assert re.search(r"^DEMO01\b", out, re.M), out

        # a restore that needs the ejected volumes names them by their short names
        sha = dict(ctl_query(d, "SELECT sop_instance_uid, sha256 FROM instances"))[
            insts[0].sop_uid]
        (d / "objects" / sha[:2] / sha[2:4] / f"{sha}.dcm").unlink()
        r = ctl(d, "restore", "--study", study, check=False)
        assert r.returncode != 0, r.stdout
        assert "DEMO01" in r.stdout and "DISC01" in r.stdout, r.stdout
        person_facing(r.stdout + r.stderr, "restore")

        # a new cartridge named TAPE02 by the emulator: the box adopts its printed name
        out = ctl(d, "demo", "tape-insert").stdout
        assert "TAPE02" in out, out
        out = ctl(d, "archive", "load", "--target", "tape").stdout
        assert "TAPE02" in out, out
        assert tape(archive(d))["volume"]["name"] == "TAPE02"
        label2 = json.loads((d / "hw/tape/cartridges/TAPE02/file-0000").read_bytes()
                            .decode().strip())
        assert label2["name"] == "TAPE02", label2

        # a cartridge without a usable printed name gets the next free CAIRNnn from the box
        ctl(d, "archive", "eject", "--target", "tape")
        r = ctl(d, "demo", "tape-insert", "--id", "lower-case", check=False)
        assert r.returncode != 0 and "name" in (r.stdout + r.stderr).lower(), r
    finally:
        rc = demo.stop()
    assert rc == 0
    assert ctl(d, "audit", "verify").returncode == 0


def ctl_query(d, sql):
    import sqlite3
    db = sqlite3.connect(f"file:{d / 'cairn.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# ----------------------------------------------------------------------------------------------
# 2. the medium-needed text, and screens that agree
# ----------------------------------------------------------------------------------------------


def test_medium_needed_text_and_screens_agree_after_a_load(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    insts = make_instances(tmp_path / "send", 18, seed="agree")
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        url, cookie = panel_login(demo)
        wait_for(lambda: (lambda s: s["targets"] and tape(s)["volume"])(archive(d)), 30,
                 "the demo's tape labelled")
        ctl(d, "archive", "eject", "--target", "tape")
        send(Port(port), [i.path for i in insts])
        wait_for(lambda: medium_events(d), 30, "the medium-needed alarm")
        [ev] = medium_events(d)
        assert "  " not in ev["message"], f"stray spaces: {ev['message']!r}"
        ov = get_json(url, "/api/v1/status", cookie)
        assert "  " not in ov["headline"] + ov["health"]["action"], ov

        # a new tape: from the moment the Archive page says nothing is needed, the overview
        # (read after it) must not say a tape is needed
        ctl(d, "demo", "tape-insert", "--id", "AGREE1")
        ctl(d, "archive", "load", "--target", "tape")
        # the moment the load has answered, no screen asks for a tape any more
        a = get_json(url, "/api/v1/archive", cookie)
        o = get_json(url, "/api/v1/status", cookie)
        assert tape(a)["medium_needed"] is False and a["medium_needed"] is False, tape(a)
        words = (o["headline"] + " " + o["health"]["action"]).lower()
        assert "needed" not in words and "load a new" not in words, o
        assert "Load a new" not in get_page(url, "/archive", cookie)
        seen_done = False
        end = time.monotonic() + 40  # bundles close by age (10 s in the demo)
        while time.monotonic() < end:
            a = get_json(url, "/api/v1/archive", cookie)
            o = get_json(url, "/api/v1/status", cookie)
            all_verified = a["instances_verified"] == a["instances_total"] == 18
            if a["medium_needed"] is False or all_verified:
                if all_verified and not seen_done:
                    seen_done = True
                    end = min(end, time.monotonic() + 2)
                words = (o["headline"] + " " + o["health"]["action"]).lower()
                assert "needed" not in words and "load a new" not in words, (
                    f"the overview says {o['headline']!r} / {o['health']['action']!r} while "
                    f"the Archive page says medium_needed={a['medium_needed']}, "
                    f"{a['instances_verified']} of {a['instances_total']} verified")
                assert o["health"]["action_page"] != "/archive", o
            time.sleep(0.02)
        assert seen_done, "the 18 images were not verified on the new tape in time"
    finally:
        rc = demo.stop()
    assert rc == 0


# ----------------------------------------------------------------------------------------------
# 3. a failed disk is not "SMART ok"
# ----------------------------------------------------------------------------------------------


def test_a_failed_disk_does_not_show_smart_ok(tmp_path):
    d = tmp_path / "demo"
    port, http_port = free_port(), free_port()
    demo = Demo(d, port, http_port)
    try:
        wait_status(d)
        url, cookie = panel_login(demo)
        wait_for(lambda: all(m.get("smart") for a in raid(d)["arrays"] for m in a["members"]),
                 20, "SMART read for every disk")
        page = get_page(url, "/disks", cookie)
        assert page.count("SMART ok") >= 6, "the healthy disks show their SMART verdict"
        ctl(d, "demo", "fail-disk", "2")
        wait_for(lambda: any(m["bay"] == 2 and m["state"] == "faulty"
                             for a in raid(d)["arrays"] for m in a["members"]), 10,
                 "bay 2 faulty")
        page = get_page(url, "/disks", cookie)
        bays = re.split(r'(?=<div class="bay[^"]*" data-bay=")', page)
        bay2 = next(b for b in bays if 'data-bay="2"' in b[:80])
        assert "SMART ok" not in bay2, bay2
        assert "failed" in bay2.lower(), bay2
        others = [b for b in bays if re.match(r'<div class="bay[^"]*" data-bay="[13456]"', b)]
        assert len(others) == 5 and all("SMART ok" in b for b in others), others
        out = ctl(d, "raid", "status").stdout
        line = next(ln for ln in out.splitlines() if ln.strip().startswith("bay 2 "))
        assert "SMART ok" not in line and "fail" in line.lower(), out
        assert alarm(d)["sounding"] is True
    finally:
        rc = demo.stop()
    assert rc == 0


# ----------------------------------------------------------------------------------------------
# 4. the restore's audit
# ----------------------------------------------------------------------------------------------


def test_restore_is_audited_as_a_restore_by_the_requester(tmp_path):
    c = ArchiveCairn(tmp_path / "box", targets=("tape",))
    c.tape.insert_blank("TAPE01", capacity=256 << 20)
    insts = make_instances(tmp_path / "send", 8, seed="restore-audit")
    study = insts[0].study_uid
    assert all(i.study_uid == study for i in insts)
    c.start()
    try:
        send(c, [i.path for i in insts], calling="STORESCU")
        c.flush()
        stored = dict(c.query("SELECT sop_instance_uid, sha256 FROM instances"))
        gone = [i.sop_uid for i in insts[:3]]
        for s in gone:
            # the study may already be in the archive tier, its files immutable
            clear_immutable(c.object_path(stored[s]))
            c.object_path(stored[s]).unlink()
        before = max(r["seq"] for r in c.audit_rows())
        r = subprocess.run([str(CAIRNCTL), "--data", str(c.data_dir), "restore", "--study",
                            study], capture_output=True, text=True, timeout=300,
                           env={**{k: v for k, v in os.environ.items() if k != "SUDO_USER"},
                                "USER": "nurse.kim"})
        assert r.returncode == 0, r.stdout + r.stderr
        for s in gone:
            assert c.object_path(stored[s]).is_file()
        rows = [x for x in c.audit_rows() if x["seq"] > before]
        stores = [x for x in rows if x["action"] == "store"]
        assert not stores, f"restored images audited as stores: {stores}"
        per_instance = {x["object"]: x for x in rows
                        if x["action"] == "restore" and x["object"] in gone}
        assert set(per_instance) == set(gone), rows
        for x in per_instance.values():
            assert x["actor"] == "user:nurse.kim", x
            det = json.loads(x["detail"])
            assert det["study"] == study and det["sha256"] == stored[x["object"]], det
        [whole] = [x for x in rows if x["action"] == "restore" and x["object"] == study]
        assert whole["actor"] == "user:nurse.kim", whole
        assert c.fsck().returncode == 0
        assert c.ctl("audit", "verify").returncode == 0
    finally:
        finish(c)
