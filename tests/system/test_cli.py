"""cairnctl: studies filters, stats, audit verify against tampering, fsck against damage."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from datagen import make_one, uid
from harness import managed

CT = "CT_small.dcm"
MR = "MR_small.dcm"


@dataclass
class Study:
    key: str
    name: str
    pid: str
    modality: str
    date: str
    n: int
    template: str
    uid: str = ""


STUDIES = [
    Study("john", "DOE^JOHN", "PID-JOHN", "CT", "20200115", 3, CT),
    Study("jane", "DOE^JANE", "PID-JANE", "MR", "20210620", 2, MR),
    Study("anna", "SMITH^ANNA", "PID-ANNA", "CT", "20230301", 1, CT),
    Study("max", "DOEBLER^MAX", "PID-MAX", "MR", "20221231", 1, MR),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    files = []
    for s in STUDIES:
        s.uid = uid("cli-study", s.key)
        for k in range(s.n):
            files.append(make_one(base / "src" / f"{s.key}{k}.dcm",
                                  sop_uid=uid("cli-sop", s.key, k), study_uid=s.uid,
                                  series_uid=uid("cli-series", s.key), patient_name=s.name,
                                  patient_id=s.pid, modality=s.modality, study_date=s.date,
                                  template=s.template).path)
    with managed(base / "daemon") as c:
        r = c.storescu(files)
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.instance_count() == len(files)
        yield c


@pytest.fixture
def offline(store, tmp_path):
    """A copy of the store's data directory, taken with cairnd stopped."""
    if store.running:
        rc = store.stop()
        assert rc == 0, store.log_tail()
    dst = tmp_path / "copy"
    shutil.copytree(store.data_dir, dst)
    return dst


def listed(out: str, s: Study) -> bool:
    return any(x in out for x in (s.uid, s.pid, s.name, s.name.replace("^", " ")))


def studies(store, *args) -> set[str]:
    r = store.ctl("studies", *args)
    assert r.returncode == 0, f"studies {args}: rc={r.returncode}\n{r.stdout}{r.stderr}"
    return {s.key for s in STUDIES if listed(r.stdout, s)}


@pytest.mark.parametrize("args,expected", [
    ((), {"john", "jane", "anna", "max"}),
    (("--patient", "DOE*"), {"john", "jane", "max"}),
    (("--patient", "DOE^*"), {"john", "jane"}),
    (("--patient", "DOE^JA?E"), {"jane"}),
    (("--patient", "SMITH^ANNA"), {"anna"}),
    (("--patient", "NOBODY*"), set()),
    (("--modality", "MR"), {"jane", "max"}),
    (("--modality", "CT"), {"john", "anna"}),
    (("--date", "20210620"), {"jane"}),
    (("--date", "20210101-20221231"), {"jane", "max"}),
    (("--date", "-20201231"), {"john"}),
    (("--date=-20201231",), {"john"}),
    (("--date", "20230101-"), {"anna"}),
    (("--patient", "DOE*", "--modality", "CT"), {"john"}),
    # like the panel, part of a name finds it, in any case
    (("--patient", "smith"), {"anna"}),
    (("--patient", "doe"), {"john", "jane", "max"}),
    (("--patient", "doe jane"), {"jane"}),
    (("--patient-id", "PID-JANE"), {"jane"}),
    (("--patient-id", "PID-JA*"), {"jane"}),
    (("--patient-id", "pid-jane"), set()),
])
def test_studies_filters(store, args, expected):
    assert studies(store, *args) == expected


def test_stats(store):
    r = store.ctl("stats")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.lower()
    want = {"patients": 4, "studies": 4, "series": 4, "instances": 7}
    for word, n in want.items():
        m = re.search(word + r"\D{0,20}?(\d+)", out)
        assert m, f"stats output lacks {word}: {r.stdout}"
        assert int(m.group(1)) == n, f"stats {word}={m.group(1)}, expected {n}: {r.stdout}"
    total = store.query("SELECT sum(size) FROM instances")[0][0]
    m = re.search(r"bytes\D{0,20}?([\d,_]+)(?![\d.])", out)
    assert m, f"stats output lacks bytes: {r.stdout}"
    assert int(re.sub(r"[,_]", "", m.group(1))) == total, r.stdout


# ------------------------------------------------------------------------------------------
# audit verify
# ------------------------------------------------------------------------------------------

def tamper(db: Path, sql_steps) -> None:
    con = sqlite3.connect(db)
    try:
        for (name,) in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'"
        ).fetchall():
            con.execute(f'DROP TRIGGER "{name}"')
        sql_steps(con)
        con.commit()
    finally:
        con.close()


def audit_verify(store, data: Path):
    return store.ctl("audit", "verify", data_dir=data)


def test_audit_verify_clean(store, offline):
    r = audit_verify(store, offline)
    assert r.returncode == 0, r.stdout + r.stderr
    n = sqlite3.connect(offline / "cairn.db").execute("SELECT count(*) FROM audit").fetchone()[0]
    assert n >= 5, f"only {n} audit rows after 7 stores"


def _rows(con) -> list[tuple]:
    return con.execute("SELECT seq FROM audit ORDER BY seq").fetchall()


def edit_byte(con):
    seqs = [s for (s,) in _rows(con)]
    target = seqs[len(seqs) // 2]
    for col in ("detail", "object", "action", "actor"):
        (val,) = con.execute(f"SELECT {col} FROM audit WHERE seq = ?", (target,)).fetchone()
        if val:
            val = str(val)
            i = len(val) // 2
            new = val[:i] + ("X" if val[i] != "X" else "Y") + val[i + 1:]
            con.execute(f"UPDATE audit SET {col} = ? WHERE seq = ?", (new, target))
            return target
    raise AssertionError("audit row with only empty columns")


def delete_row(con):
    seqs = [s for (s,) in _rows(con)]
    con.execute("DELETE FROM audit WHERE seq = ?", (seqs[len(seqs) // 2],))


def swap_rows(con):
    seqs = [s for (s,) in _rows(con)]
    a, b = seqs[len(seqs) // 2], seqs[len(seqs) // 2 + 1]
    cols = [r[1] for r in con.execute("PRAGMA table_info(audit)") if r[1] != "seq"]
    ra = con.execute(f"SELECT {','.join(cols)} FROM audit WHERE seq = ?", (a,)).fetchone()
    rb = con.execute(f"SELECT {','.join(cols)} FROM audit WHERE seq = ?", (b,)).fetchone()
    sets = ",".join(f"{c} = ?" for c in cols)
    con.execute(f"UPDATE audit SET {sets} WHERE seq = ?", (*rb, a))
    con.execute(f"UPDATE audit SET {sets} WHERE seq = ?", (*ra, b))


def delete_last_rows(con):
    seqs = [s for (s,) in _rows(con)]
    con.execute("DELETE FROM audit WHERE seq >= ?", (seqs[-2],))


@pytest.mark.parametrize("how", [edit_byte, delete_row, swap_rows, delete_last_rows],
                         ids=lambda f: f.__name__)
def test_audit_verify_detects_tampering(store, offline, how):
    result = {}
    tamper(offline / "cairn.db", lambda con: result.setdefault("seq", how(con)))
    r = audit_verify(store, offline)
    assert r.returncode == 1, f"audit verify after {how.__name__}: rc={r.returncode}\n" \
                              f"{r.stdout}{r.stderr}"
    if result.get("seq") is not None:
        assert str(result["seq"]) in r.stdout + r.stderr, "first bad row not named"


# ------------------------------------------------------------------------------------------
# fsck
# ------------------------------------------------------------------------------------------

def objects(data: Path) -> list[Path]:
    return sorted(p for p in (data / "objects").rglob("*.dcm"))


def test_fsck_clean(store, offline):
    r = store.fsck(offline)
    assert r.returncode == 0, r.stdout + r.stderr


def test_fsck_deleted_object(store, offline):
    victim = objects(offline)[1]
    victim.unlink()
    r = store.fsck(offline)
    assert r.returncode == 1, r.stdout + r.stderr
    assert victim.stem in r.stdout + r.stderr, "fsck does not name the missing object"


def test_fsck_corrupted_byte(store, offline):
    victim = objects(offline)[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    r = store.fsck(offline)
    assert r.returncode == 1, r.stdout + r.stderr
    assert victim.stem in r.stdout + r.stderr, "fsck does not name the corrupted object"


def test_fsck_orphan_file(store, offline):
    data = b"\0" * 128 + b"DICM" + b"not indexed by anyone"
    sha = hashlib.sha256(data).hexdigest()
    orphan = offline / "objects" / sha[:2] / sha[2:4] / f"{sha}.dcm"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(data)
    r = store.fsck(offline)
    assert r.returncode == 1, r.stdout + r.stderr
    assert sha in r.stdout + r.stderr, "fsck does not name the orphan"


def test_fsck_leftover_spool_file(store, offline):
    spool = offline / "spool"
    spool.mkdir(exist_ok=True)
    (spool / "incoming-leftover.tmp").write_bytes(b"\0" * 4096)
    r = store.fsck(offline)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "incoming-leftover.tmp" in r.stdout + r.stderr or "spool" in r.stdout + r.stderr
