"""Legal holds travel with the cold copy: a hold placed with `cairnctl hold add` is written into
the next bundle's `holds.csv`, which a stranger reads off the emulated tape's file with GNU tar
alone and checks against the bundle's manifest with sha256sum (docs/interface.md, "Archive").
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess

from archivelib import MIB, ArchiveCairn, run, send
from datagen import make_instances
from harness import CAIRNCTL, finish

COLUMNS = ["id", "patient_id", "issuer", "study_uid", "reason", "placed_by", "placed_at",
           "released_by", "released_at", "release_reason"]
REASON = 'court order "Doe v. Roe", case 7'
LOGIN = "clerk"


def ctl(c: ArchiveCairn, *args: str) -> str:
    """cairnctl as the person logged in as LOGIN; demand exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["USER"] = LOGIN
    r = subprocess.run([str(CAIRNCTL), "--data", str(c.data_dir), *args], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def bundle_files(c: ArchiveCairn, cid: str) -> list:
    """The cartridge's bundle files (tape files 1, 2, ...), each a plain file."""
    out, n = [], 1
    while c.tape.tape_file(cid, n).exists() and c.tape.tape_file(cid, n).stat().st_size > 0:
        out.append(c.tape.tape_file(cid, n))
        n += 1
    return out


def holds_of(tape_file) -> list[dict]:
    text = run(["tar", "-b", "512", "-xOf", tape_file, "holds.csv"]).stdout
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows and rows[0] == COLUMNS, text
    return [dict(zip(COLUMNS, r)) for r in rows[1:]]


def test_a_hold_is_in_every_later_bundle(tmp_path):
    c = ArchiveCairn(tmp_path / "box", targets=("tape",))
    c.tape.insert_blank("TAPE01", capacity=256 * MIB)
    first = make_instances(tmp_path / "first", 3, seed="holds-a")
    later = make_instances(tmp_path / "later", 3, seed="holds-b")
    try:
        c.start()
        send(c, [i.path for i in first])
        c.flush()
        [before] = bundle_files(c, "TAPE01")
        assert holds_of(before) == [], "a bundle written before any hold lists none"

        pid = first[0].patient_id
        ctl(c, "hold", "add", "--patient", pid, "--reason", REASON)
        [placed] = json.loads(ctl(c, "hold", "list", "--json"))
        send(c, [i.path for i in later])
        c.flush()
        files = bundle_files(c, "TAPE01")
        assert len(files) == 2, files
        [h] = holds_of(files[1])
        assert (h["id"], h["patient_id"], h["issuer"], h["study_uid"], h["reason"]) == \
            (str(placed["id"]), pid, "", "", REASON), h
        assert (h["placed_by"], h["placed_at"]) == (f"user:{LOGIN}", placed["placed_at"]), h
        assert (h["released_by"], h["released_at"], h["release_reason"]) == ("", "", ""), h

        # the manifest lists holds.csv with its SHA-256, and sha256sum agrees
        x = tmp_path / "x"
        x.mkdir()
        run(["tar", "-b", "512", "-xf", files[1], "-C", x])
        manifest = (x / "MANIFEST.sha256").read_text()
        assert "  holds.csv\n" in manifest, manifest
        checked = run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=x).stdout
        assert "holds.csv: OK" in checked, checked
    finally:
        finish(c)
