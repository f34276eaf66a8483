"""The air-gapped copy end to end: 2,000 instances sent with DCMTK's storescu reach an
emulated tape AND an optical disc image, every one read back and verified on both; the catalog
matches what was sent; the media are read without cairn (GNU tar, sha256sum, dcmdump, xorriso);
storage commitment answers for them (pynetdicom as the requester); the catalog is rebuilt from
the volumes alone; a study whose hot files were deleted is restored byte for byte.

One box is built for the whole module (storing and archiving 2,000 instances once); the tests
run in file order and the last two change it (catalog wipe + scan, restore).
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from archivelib import MIB, ArchiveCairn, clear_immutable, run, send, sha256_of
from datagen import make_instances
from harness import finish, free_port

N = 2000
COMMIT_AE = "COMMITSCU"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = tmp_path_factory.mktemp("archive-copy")
    commit_port = free_port()
    peers = [
        {"ae": "STORESCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
         "retrieve": True},
        {"ae": "ECHOSCU", "host": "127.0.0.1", "port": 104, "store": True, "query": True,
         "retrieve": True},
        {"ae": COMMIT_AE, "host": "127.0.0.1", "port": commit_port, "store": True,
         "query": True, "retrieve": True},
    ]
    # ~50 MB in 16 MiB bundles: several tape files and several disc sessions
    c = ArchiveCairn(base / "box", bundle_max_bytes=16 * MIB, disc_capacity=200 * MIB,
                     peers=peers)
    c.config["dicom"]["commitment_timeout_secs"] = 20
    c.write_config()
    c.commit_port = commit_port
    c.tape.insert_blank("TAPE01", capacity=2 << 30)
    c.disc.insert_blank("DISC01", capacity=200 * MIB)
    insts = make_instances(base / "send", N, seed="archive-copy")
    c.sent = {i.sop_uid: i for i in insts}
    c.start()
    try:
        send(c, [i.path for i in insts])
        c.stored = dict(c.query(
            "SELECT sop_instance_uid, sha256 FROM instances WHERE current = 1"))
        c.flush_out = c.flush(timeout=600)
        yield c
    finally:
        finish(c)


def test_every_instance_verified_on_tape_and_disc(box):
    assert set(box.stored) == set(box.sent), "the store does not hold exactly what was sent"
    assert box.queued() == 0, f"{box.queued()} queue rows left after archive flush"
    by_kind = box.verified_by_kind()
    assert set(by_kind) == {"tape", "optical"}, f"verified copies on {sorted(by_kind)}"
    for kind in ("tape", "optical"):
        missing = set(box.sent) - by_kind[kind]
        assert not missing, f"{len(missing)} instances not verified on {kind}"
    # the bundles really went to the media named in the catalog
    vols = dict(box.query("SELECT volume_id, kind FROM volumes"))
    assert sorted(vols.values()) == ["optical", "tape"], vols
    bundles = box.query("SELECT b.state, v.kind, b.file_number FROM bundles b "
                        "JOIN volumes v ON v.id = b.volume_ref")
    assert bundles and all(s == "verified" for s, _, _ in bundles), bundles
    tape_files = sorted(f for _, k, f in bundles if k == "tape")
    assert tape_files == list(range(1, len(tape_files) + 1)) and len(tape_files) >= 3, \
        f"tape bundles at files {tape_files} (label is file 0; 16 MiB bundles of ~50 MB)"
    assert box.tape.meta("TAPE01")["filemarks"] >= len(tape_files) + 1


def test_status_and_volumes_commands(box):
    st = box.status_json()
    assert st["medium_needed"] is False, st
    assert st["instances_total"] == N and st["instances_verified"] == N, st
    names = {t["name"]: t for t in st["targets"]}
    assert set(names) == {"tape", "disc"}, st
    for t in names.values():
        assert t["queue"]["instances"] == 0, t
        assert t["volume"] is not None, t
        assert t["last_verified"] is not None and t["last_verified"]["state"] == "verified", t
    vols = {v["volume_id"]: v for v in box.volumes_json()}
    db = {r[0]: r for r in box.sql_cli(
        "SELECT v.volume_id, v.kind, v.state, v.location, count(c.id) FROM volumes v "
        "JOIN bundles b ON b.volume_ref = v.id JOIN copies c ON c.bundle_ref = b.id "
        "AND c.verified = 1 GROUP BY v.id")}
    assert set(vols) == set(db), (vols, db)
    for vid, (_, kind, state, location, copies) in db.items():
        v = vols[vid]
        assert (v["kind"], v["state"], v["location"]) == (kind, state, location), (v, db[vid])
        assert location == "in_drive" and state in ("labelled", "append"), db[vid]
        assert v["verified_copies"] == int(copies) == N, (v, db[vid])
    # the human table names both volumes by the names printed on them
    assert sorted(v["name"] for v in vols.values()) == ["DISC01", "TAPE01"], vols
    text = box.ok("archive", "status")
    for vid, v in vols.items():
        assert v["name"] in text, f"`archive status` does not name volume {v['name']}:\n{text}"
        assert vid not in text, f"`archive status` shows the internal id {vid}:\n{text}"


def test_catalog_matches_sent_set(box):
    """cairn.db, read with the sqlite3 program, against what the test sent and what is on disk."""
    rows = box.sql_cli(
        "SELECT v.kind, c.sop_instance_uid, c.sha256, c.size, i.sha256, i.size "
        "FROM copies c JOIN bundles b ON b.id = c.bundle_ref "
        "JOIN volumes v ON v.id = b.volume_ref "
        "JOIN instances i ON i.sop_instance_uid = c.sop_instance_uid AND i.current = 1 "
        "WHERE c.verified = 1 AND b.state = 'verified'")
    per_kind: dict[str, dict[str, tuple]] = {}
    for kind, sop, csha, csize, isha, isize in rows:
        assert sop not in per_kind.setdefault(kind, {}), f"{sop} twice on {kind}"
        per_kind[kind][sop] = (csha, int(csize), isha, int(isize))
    for kind, got in per_kind.items():
        assert set(got) == set(box.sent), f"{kind}: catalog holds {len(got)} of {N} instances"
        for sop, (csha, csize, isha, isize) in got.items():
            assert csha == isha == box.stored[sop], f"{kind}: {sop} copy hash differs"
            assert csize == isize, f"{kind}: {sop} size {csize} != {isize}"
    # every object file still hashes to its name (the copies were made from these bytes)
    for sop in list(box.sent)[::97]:
        sha = box.stored[sop]
        assert sha256_of(box.object_path(sha)) == sha
    # members count per bundle agrees with its copies
    for bid, members, n in box.sql_cli(
            "SELECT b.bundle_id, b.members, count(c.id) FROM bundles b "
            "LEFT JOIN copies c ON c.bundle_ref = b.id GROUP BY b.id"):
        assert int(members) == int(n), f"bundle {bid}: members {members}, copies {n}"


def _commit_request(sops: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    refs = []
    for cls, sop in sops:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = sop
        refs.append(item)
    ds.ReferencedSOPSequence = refs
    return ds


def test_storage_commitment_for_the_archived_instances(box):
    """pynetdicom asks for commitment of all 2,000 plus one unknown UID on one association and
    waits there for the N-EVENT-REPORT (push model): 2,000 successes, the unknown one failed."""
    unknown = generate_uid()
    classes = {i.sop_uid: i.sop_class for i in box.sent.values()}
    req = _commit_request([(classes[s], s) for s in box.sent] +
                          [("1.2.840.10008.5.1.4.1.1.2", unknown)])
    reports: list[tuple[int, Dataset]] = []
    got = threading.Event()

    def on_report(event):
        reports.append((event.event_type, event.event_information))
        got.set()
        return 0x0000, None

    # the box may answer on a new association to the requester instead: listen there too
    scp = AE(ae_title=COMMIT_AE)
    scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = 30  # never hang on a peer
    scp.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = scp.start_server(("127.0.0.1", box.commit_port), block=False,
                              evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        ae = AE(ae_title=COMMIT_AE)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", box.port, ae_title=box.ae,
                             evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        assert assoc.is_established, \
            f"association for storage commitment rejected\n{box.log_tail()}"
        try:
            status, _ = assoc.send_n_action(req, 1, StorageCommitmentPushModel,
                                            STORAGE_COMMITMENT_INSTANCE)
            assert status and status.Status == 0x0000, f"N-ACTION status {status}\n{box.log_tail()}"
            got.wait(60)
        finally:
            if assoc.is_established:
                # pynetdicom's release can spin forever when its reactor lost a race with
                # send_n_action; never let that hang the suite: give it 30 s, then abort.
                closer = threading.Thread(target=assoc.release, daemon=True)
                closer.start()
                closer.join(30)
                if closer.is_alive():
                    assoc.abort()
        assert got.wait(30), f"no N-EVENT-REPORT within 90 s\n{box.log_tail()}"
    finally:
        server.shutdown()
    assert len(reports) == 1, f"{len(reports)} reports\n{box.log_tail()}"
    etype, info = reports[0]
    assert etype == 2, f"event type {etype} (2 = failures exist; one UID is unknown)\n{info}"
    assert info.TransactionUID == req.TransactionUID
    ok = {it.ReferencedSOPInstanceUID for it in info.get("ReferencedSOPSequence", [])}
    failed = {it.ReferencedSOPInstanceUID: int(it.FailureReason)
              for it in info.get("FailedSOPSequence", [])}
    assert ok == set(box.sent), f"{len(ok)} committed, {len(set(box.sent) - ok)} missing"
    assert failed == {unknown: 0x0112}, f"failed list {failed}\n{box.log_tail()}"


def _pax_headers_are_posix(tar_path: Path) -> list[str]:
    """Walk the tar headers: every header ustar POSIX (magic 'ustar\\0' '00'), typeflags only
    '0', '5' or 'x' (no GNU 'L'/'K', no global 'g'). Returns the member names."""
    names = []
    with open(tar_path, "rb") as f:
        while True:
            hdr = f.read(512)
            assert len(hdr) == 512, "tar cut short"
            if hdr == b"\0" * 512:
                break
            magic, version, flag = hdr[257:263], hdr[263:265], hdr[156:157]
            assert (magic, version) == (b"ustar\0", b"00"), f"non-POSIX header {magic!r}"
            assert flag in (b"0", b"5", b"x"), f"typeflag {flag!r} (GNU or global header)"
            size = int(hdr[124:136].rstrip(b"\0 ") or b"0", 8)
            name = hdr[0:100].rstrip(b"\0").decode()
            prefix = hdr[345:500].rstrip(b"\0").decode()
            if flag != b"x":
                names.append(f"{prefix}/{name}" if prefix else name)
            f.seek((size + 511) // 512 * 512, 1)
    return names


def test_gnu_tar_and_sha256sum_read_the_tape(box, tmp_path):
    """A stranger with the cartridge's files: tar -b 512, sha256sum -c, dcmdump."""
    cart = box.tape.cdir("TAPE01")
    label = json.loads(box.tape.tape_file("TAPE01", 0).read_bytes().decode().strip())
    assert label["format"] == "cairn-volume" and label["kind"] == "tape", label
    assert label["block_size"] >= 256 * 1024, label
    seen: dict[str, str] = {}
    n = 1
    while box.tape.tape_file("TAPE01", n).exists() and \
            box.tape.tape_file("TAPE01", n).stat().st_size > 0:
        f = box.tape.tape_file("TAPE01", n)
        assert f.stat().st_size % (256 * 1024) == 0, f"{f.name}: not whole 256 KiB records"
        names = _pax_headers_are_posix(f)
        assert names[:3] == ["MANIFEST.sha256", "index.csv", "AUDIT-HEAD.json"], names[:4]
        out = tmp_path / f"file{n}"
        out.mkdir()
        run(["tar", "-b", "512", "-xf", f, "-C", out])
        r = run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=out)
        checked = [ln for ln in r.stdout.splitlines() if ln.endswith(": OK")]
        objs = sorted((out / "objects").glob("*.dcm"))
        assert len(checked) >= len(objs) + 2, f"manifest checked {len(checked)} lines"
        with open(out / "index.csv", newline="") as fh:
            rows = {r["sha256"]: r for r in csv.DictReader(fh)}
        for o in objs:
            sha = o.stem
            row = rows[sha]
            assert box.stored[row["sop_instance_uid"]] == sha
            assert row["study_instance_uid"] == box.sent[row["sop_instance_uid"]].study_uid
            seen[row["sop_instance_uid"]] = sha
        d = run(["dcmdump", objs[0]])
        assert "SOPInstanceUID" in d.stdout
        sop = next(r["sop_instance_uid"] for r in rows.values() if r["sha256"] == objs[0].stem)
        assert sop in d.stdout, "dcmdump shows another instance than index.csv names"
        head = json.loads((out / "AUDIT-HEAD.json").read_text())
        assert head["bundle_id"].endswith(f".{n}"), head
        shutil.rmtree(out)
        n += 1
    assert n - 1 >= 3, f"only {n - 1} bundle file(s) on {cart}"
    assert seen == box.stored, f"tape holds {len(seen)} of {N} instances"


def test_xorriso_extracts_the_disc_sessions(box, tmp_path):
    image = box.disc.image("DISC01")
    toc = run(["xorriso", "-indev", f"stdio:{image}", "-toc"])
    sessions = [ln for ln in toc.stdout.splitlines() + toc.stderr.splitlines()
                if ln.startswith("ISO session")]
    assert len(sessions) >= 4, f"label + >=3 bundle sessions expected:\n{toc.stdout}{toc.stderr}"
    out = tmp_path / "disc"
    run(["xorriso", "-osirrox", "on", "-indev", f"stdio:{image}", "-extract", "/", out],
        timeout=300)
    # the sessions carry MD5 tags and every file its MD5 (xorriso -md5 on when writing)
    chk = run(["xorriso", "-md5", "on", "-indev", f"stdio:{image}", "-check_md5_r", "FAILURE",
               "/", "--"], timeout=300)
    assert "File contents and their MD5 checksums match" in chk.stdout + chk.stderr, \
        chk.stdout + chk.stderr
    media = run(["xorriso", "-md5", "on", "-indev", f"stdio:{image}", "-check_media", "--"],
                timeout=300)
    tags = [ln for ln in (media.stdout + media.stderr).splitlines()
            if ln.startswith("MD5 tag range")]
    assert len(tags) == len(sessions) and all("md5_match" in t for t in tags), \
        media.stdout + media.stderr
    label = json.loads((out / "CAIRN-VOLUME.json").read_text())
    assert label["kind"] == "optical", label
    seen: dict[str, str] = {}
    dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(dirs) >= 3, [p.name for p in out.iterdir()]
    for d in dirs:
        run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=d)
        with open(d / "index.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                assert (d / "objects" / f"{row['sha256']}.dcm").is_file()
                seen[row["sop_instance_uid"]] = row["sha256"]
    assert seen == box.stored, f"disc holds {len(seen)} of {N} instances"


def test_catalog_rebuilt_from_volumes_equals_original(box):
    before = box.catalog()
    assert before["copies"], "nothing catalogued"
    rc = box.stop()
    assert rc == 0, box.log_tail()
    run(["sqlite3", box.db_path,
         "PRAGMA foreign_keys = ON; DELETE FROM copies; DELETE FROM bundles; "
         "DELETE FROM volumes;"])
    assert box.query("SELECT count(*) FROM copies")[0][0] == 0
    box.start()
    out = box.ok("archive", "scan", timeout=600)
    after = box.catalog()
    assert after["volumes"] == before["volumes"], (before["volumes"], after["volumes"], out)
    assert after["bundles"] == before["bundles"], out
    assert after["copies"] == before["copies"], out
    assert box.queued() == 0


def test_restore_of_a_study_whose_hot_files_were_deleted(box):
    study = next(iter(box.sent.values())).study_uid
    sops = [s for s, i in box.sent.items() if i.study_uid == study]
    assert len(sops) >= 25
    originals = {}
    for s in sops:
        p = box.object_path(box.stored[s])
        originals[s] = (p, p.read_bytes())
    for p, _ in originals.values():
        clear_immutable(p)  # the study is in the archive tier: its files are immutable
        p.unlink()
    bad = box.fsck()
    assert bad.returncode != 0, "fsck did not notice the deleted objects"
    out = box.ok("restore", "--study", study, timeout=600)
    for s, (p, data) in originals.items():
        assert p.is_file(), f"{s} not restored at {p}\n{out}"
        assert p.read_bytes() == data, f"{s}: restored bytes differ"
    fsck = box.fsck()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # still the same instances, nothing duplicated
    assert box.query("SELECT count(*) FROM instances WHERE current = 1")[0][0] == N
