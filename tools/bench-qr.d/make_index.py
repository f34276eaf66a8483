#!/usr/bin/env python3
"""Generate a large synthetic cairn index (data_dir/cairn.db) for the C-FIND benchmark.

The schema is not written here: a fresh cairnd creates it (the caller starts
`cairnd run` once on an empty data dir and stops it), then this script fills the
tables patients / studies / series / instances with Python's sqlite3 in one
transaction, sets store_state.synced_instance_id to the highest instance id and
leaves the `clean-shutdown` mark so cairnd skips its recovery checks. No object
files are written: instances carry a fake (but well-formed) sha256, which C-FIND
never reads.

Content (deterministic from --seed):
  * patients: 0.4 per study (about 2.5 studies per patient), names drawn from
    weighted lists of common surnames and given names, mostly upper case, some
    mixed case and some with a middle initial; birth dates 1930-2020.
  * studies: dates spread uniformly over 2016-01-01 .. 2025-12-31, inserted in
    date order (as an archive fills), unique accession numbers, realistic
    descriptions and referring physicians.
  * 1 series per study (modality weighted CT/MR/CR/DX/US/MG/PT), N instances
    per series (default 10).

Usage: make_index.py --data DIR --studies 100000 [--per-study 10] [--seed S]
DIR must hold the empty cairn.db created by cairnd (PRAGMA user_version > 0).
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import sqlite3
import sys
import time

# (surname, relative weight): roughly the frequency order of common surnames in
# US/European registers; enough "MAR*" names (MARTIN, MARTINEZ, MARSHALL, ...) to
# make the wildcard query return a realistic 1-3 % of the studies.
SURNAMES = """SMITH 828 JOHNSON 655 WILLIAMS 550 BROWN 487 JONES 437 GARCIA 430 MILLER 424
DAVIS 380 RODRIGUEZ 365 MARTINEZ 355 HERNANDEZ 345 LOPEZ 317 GONZALEZ 312 WILSON 307
ANDERSON 305 THOMAS 294 TAYLOR 292 MOORE 278 JACKSON 275 MARTIN 271 LEE 251 PEREZ 236
THOMPSON 235 WHITE 232 HARRIS 222 SANCHEZ 216 CLARK 213 RAMIREZ 207 LEWIS 205 ROBINSON 201
WALKER 197 YOUNG 189 ALLEN 187 KING 185 WRIGHT 184 SCOTT 180 TORRES 170 NGUYEN 167 HILL 166
FLORES 165 GREEN 163 ADAMS 160 NELSON 159 BAKER 155 HALL 153 RIVERA 151 CAMPBELL 150
MITCHELL 149 CARTER 147 ROBERTS 146 GOMEZ 142 PHILLIPS 138 EVANS 137 TURNER 136 DIAZ 134
PARKER 132 CRUZ 130 EDWARDS 128 COLLINS 127 REYES 126 STEWART 125 MORRIS 124 MORALES 123
MURPHY 122 COOK 121 ROGERS 120 GUTIERREZ 118 ORTIZ 117 MORGAN 116 COOPER 115 PETERSON 114
BAILEY 113 REED 112 KELLY 111 HOWARD 110 RAMOS 109 KIM 108 COX 107 WARD 106 RICHARDSON 105
WATSON 104 BROOKS 103 CHAVEZ 102 WOOD 101 JAMES 100 BENNETT 98 GRAY 97 MENDOZA 96 RUIZ 95
HUGHES 94 PRICE 93 ALVAREZ 92 CASTILLO 91 SANDERS 90 PATEL 89 MYERS 88 LONG 87 ROSS 86
FOSTER 85 JIMENEZ 84 POWELL 83 JENKINS 82 PERRY 81 RUSSELL 80 SULLIVAN 79 BELL 78 COLEMAN 77
BUTLER 76 HENDERSON 75 BARNES 74 GONZALES 73 FISHER 72 VASQUEZ 71 SIMMONS 70 ROMERO 69
JORDAN 68 PATTERSON 67 ALEXANDER 66 HAMILTON 65 GRAHAM 64 REYNOLDS 63 GRIFFIN 62 WALLACE 61
MORENO 60 WEST 59 COLE 58 HAYES 57 BRYANT 56 HERRERA 55 GIBSON 54 ELLIS 53 TRAN 52 MEDINA 51
AGUILAR 50 STEVENS 49 MURRAY 48 FORD 47 CASTRO 46 MARSHALL 45 OWENS 44 HARRISON 43
FERNANDEZ 42 MCDONALD 41 WOODS 40 WASHINGTON 39 KENNEDY 38 WELLS 37 VARGAS 36 HENRY 35
CHEN 34 FREEMAN 33 WEBB 32 TUCKER 31 GUZMAN 30 BURNS 29 CRAWFORD 28 OLSON 27 SIMPSON 26
PORTER 25 HUNTER 24 GORDON 23 MENDEZ 22 SILVA 21 SHAW 20 SNYDER 20 MASON 20 DIXON 19
MUNOZ 19 HUNT 19 HICKS 18 HOLMES 18 PALMER 18 WAGNER 17 BLACK 17 ROBERTSON 17 BOYD 16
ROSE 16 STONE 16 SALAZAR 15 FOX 15 WARREN 15 MILLS 15 MEYER 14 RICE 14 SCHMIDT 14 GARZA 14
DANIELS 13 FERGUSON 13 NICHOLS 13 STEPHENS 12 SOTO 12 WEAVER 12 RYAN 12 GARDNER 11 PAYNE 11
GRANT 11 DUNN 11 KELLEY 10 SPENCER 10 HAWKINS 10 ARNOLD 10 PIERCE 10 VAZQUEZ 9 HANSEN 9
PETERS 9 SANTOS 9 HART 9 BRADLEY 8 KNIGHT 8 ELLIOTT 8 CUNNINGHAM 8 DUNCAN 8 ARMSTRONG 8
HUDSON 7 CARROLL 7 LANE 7 RILEY 7 ANDREWS 7 ALVARADO 7 RAY 7 DELGADO 7 BERRY 6 PERKINS 6
HOFFMAN 6 JOHNSTON 6 MATTHEWS 6 PENA 6 RICHARDS 6 CONTRERAS 6 WILLIS 6 CARPENTER 6 LAWRENCE 5
SANDOVAL 5 MARQUEZ 5 MARSH 5 MARKS 5 MARINO 5 MARTELL 4 MARX 4 MARCHETTI 4 MARTENS 4
MUELLER 12 SCHNEIDER 10 FISCHER 9 WEBER 9 BECKER 8 SCHULZ 7 HOFFMANN 7 KOCH 6 RICHTER 6
KLEIN 6 WOLF 6 SCHROEDER 5 NEUMANN 5 SCHWARZ 5 ZIMMERMANN 5 BRAUN 5 KRUEGER 5 HOFMANN 4
HARTMANN 4 LANGE 4 WERNER 4 KRAUSE 4 LEHMANN 4 KOEHLER 4 DUBOIS 6 LAMBERT 5 LEROY 5
MOREAU 5 LAURENT 5 SIMON 5 MICHEL 5 LEFEBVRE 5 GIRARD 4 BONNET 4 DUPONT 4 ROSSI 6 RUSSO 5
FERRARI 5 ESPOSITO 5 BIANCHI 5 ROMANO 5 COLOMBO 4 RICCI 4 GRECO 4 BRUNO 4 DEJONG 5 JANSEN 5
DEVRIES 4 VANDENBERG 4 BAKKER 4 VISSER 4 SMIT 4 NOWAK 4 KOWALSKI 4 WISNIEWSKI 3 LEWANDOWSKI 3
NIELSEN 4 JENSEN 4 LARSEN 4 ANDERSEN 4 PEDERSEN 4 OBRIEN 4 BYRNE 3 WALSH 3 OCONNOR 3
SATO 4 SUZUKI 4 TAKAHASHI 4 TANAKA 4 WATANABE 3 ITO 3 YAMAMOTO 3 PARK 4 CHOI 3 WANG 5 LI 5
ZHANG 5 LIU 4 YANG 3 HUANG 3 ZHAO 3 SINGH 5 KUMAR 4 SHARMA 3 KHAN 4 ALI 3 AHMED 3""".split()

GIVEN_F = """MARY 60 PATRICIA 40 JENNIFER 38 LINDA 36 ELIZABETH 34 BARBARA 32 SUSAN 30 JESSICA 28
SARAH 28 KAREN 26 LISA 24 NANCY 22 BETTY 20 MARGARET 20 SANDRA 19 ASHLEY 18 KIMBERLY 17
EMILY 17 DONNA 16 MICHELLE 16 CAROL 15 AMANDA 15 DOROTHY 14 MELISSA 14 DEBORAH 13 STEPHANIE 13
REBECCA 12 SHARON 12 LAURA 12 CYNTHIA 11 KATHLEEN 11 AMY 11 ANGELA 10 SHIRLEY 10 ANNA 10
BRENDA 9 PAMELA 9 EMMA 9 NICOLE 9 HELEN 9 SAMANTHA 8 KATHERINE 8 CHRISTINE 8 DEBRA 8
RACHEL 8 CAROLYN 7 JANET 7 CATHERINE 7 MARIA 12 HEATHER 7 DIANE 6 RUTH 6 JULIE 6 OLIVIA 6
JOYCE 6 VIRGINIA 6 VICTORIA 5 KELLY 5 LAUREN 5 CHRISTINA 5 JOAN 5 EVELYN 5 JUDITH 5 MEGAN 5
ANDREA 5 CHERYL 5 HANNAH 5 JACQUELINE 4 MARTHA 4 GLORIA 4 TERESA 4 ANN 4 SARA 4 MADISON 4
FRANCES 4 KATHRYN 4 JANICE 4 JEAN 4 ABIGAIL 4 ALICE 4 JULIA 4 JUDY 4 SOPHIA 4 GRACE 4
DENISE 4 AMBER 3 DORIS 3 MARILYN 3 DANIELLE 3 BEVERLY 3 ISABELLA 3 THERESA 3 DIANA 3
NATALIE 3 BRITTANY 3 CHARLOTTE 3 MARIE 3 KAYLA 3 ALEXIS 3 LORI 3 MARINA 2 MARGOT 2""".split()

GIVEN_M = """JAMES 60 ROBERT 58 JOHN 56 MICHAEL 54 DAVID 46 WILLIAM 45 RICHARD 40 JOSEPH 36
THOMAS 34 CHRISTOPHER 32 CHARLES 30 DANIEL 30 MATTHEW 28 ANTHONY 26 MARK 24 DONALD 22
STEVEN 22 PAUL 21 ANDREW 20 JOSHUA 19 KENNETH 18 KEVIN 18 BRIAN 17 GEORGE 17 TIMOTHY 16
RONALD 16 EDWARD 15 JASON 15 JEFFREY 14 RYAN 14 JACOB 13 GARY 13 NICHOLAS 13 ERIC 12
JONATHAN 12 STEPHEN 12 LARRY 11 JUSTIN 11 SCOTT 11 BRANDON 10 BENJAMIN 10 SAMUEL 10
GREGORY 10 ALEXANDER 9 FRANK 9 PATRICK 9 RAYMOND 9 JACK 8 DENNIS 8 JERRY 8 TYLER 8 AARON 8
JOSE 12 ADAM 7 NATHAN 7 HENRY 7 DOUGLAS 7 ZACHARY 6 PETER 6 KYLE 6 ETHAN 6 WALTER 6 NOAH 6
JEREMY 6 CHRISTIAN 5 KEITH 5 ROGER 5 TERRY 5 GERALD 5 HAROLD 5 SEAN 5 AUSTIN 5 CARL 5
ARTHUR 5 LAWRENCE 4 DYLAN 4 JESSE 4 JORDAN 4 BRYAN 4 BILLY 4 JOE 4 BRUCE 4 GABRIEL 4 LOGAN 4
ALBERT 4 WILLIE 4 ALAN 4 JUAN 6 WAYNE 3 ELIJAH 3 RANDY 3 ROY 3 VINCENT 3 RALPH 3 EUGENE 3
RUSSELL 3 BOBBY 3 MASON 3 PHILIP 3 LOUIS 3 LUIS 4 CARLOS 4 MARCO 2 MARIO 2 MARCUS 2""".split()


def weighted(pairs):
    names, weights = pairs[0::2], [int(w) for w in pairs[1::2]]
    return names, weights


DESCRIPTIONS = {
    "CT": ["CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD W/O CONTRAST",
           "CTA CHEST PE PROTOCOL", "CT CERVICAL SPINE", "CT SINUS", "CT ANGIO HEAD NECK"],
    "MR": ["MRI BRAIN W/WO CONTRAST", "MRI LUMBAR SPINE W/O", "MRI KNEE RIGHT", "MRI SHOULDER LEFT",
           "MR PROSTATE MULTIPARAMETRIC", "MRI CERVICAL SPINE", "MRA HEAD"],
    "CR": ["XR CHEST 2 VIEWS", "XR CHEST 1 VIEW PORTABLE", "XR HAND 3 VIEWS", "XR FOOT 2 VIEWS"],
    "DX": ["XR CHEST PA AND LATERAL", "XR KNEE 3 VIEWS", "XR LUMBAR SPINE 2-3 VIEWS", "XR PELVIS"],
    "US": ["US ABDOMEN COMPLETE", "US RENAL", "US THYROID", "US OB 2ND TRIMESTER", "US CAROTID DOPPLER"],
    "MG": ["MAMMO SCREENING BILATERAL 3D", "MAMMO DIAGNOSTIC LEFT"],
    "PT": ["PET/CT SKULL BASE TO MID THIGH", "PET/CT WHOLE BODY"],
}
MODALITIES = ["CT", "MR", "CR", "DX", "US", "MG", "PT"]
MOD_WEIGHTS = [30, 18, 15, 17, 12, 6, 2]
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1", "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}
SIZE = {"CT": 526000, "MR": 140000, "CR": 9000000, "DX": 12000000, "US": 800000,
        "MG": 50000000, "PT": 70000}
BODY = {"CT": "CHEST", "MR": "BRAIN", "CR": "CHEST", "DX": "CHEST", "US": "ABDOMEN",
        "MG": "BREAST", "PT": "WHOLEBODY"}
SERIES_DESC = {"CT": "AXIAL 1.25MM", "MR": "AX T2 FLAIR", "CR": "PA", "DX": "PA", "US": "ABDOMEN",
               "MG": "L CC", "PT": "PET AC"}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.10.1138"  # synthetic UIDs of this benchmark
DATE0 = datetime.date(2016, 1, 1)
DATE_DAYS = (datetime.date(2025, 12, 31) - DATE0).days + 1


def normalize_name(s):
    """Same rule as cairn-store's find::normalize_name: upper case, components trimmed,
    empty trailing components dropped, per '=' group."""
    groups = []
    for g in s.split("="):
        comps = [c.strip().upper() for c in g.split("^")]
        while comps and comps[-1] == "":
            comps.pop()
        groups.append("^".join(comps))
    return "=".join(groups).rstrip("=")


def fmt_date(d):
    return d.strftime("%Y%m%d")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="cairn data dir holding the empty cairn.db")
    ap.add_argument("--studies", type=int, default=100000)
    ap.add_argument("--per-study", type=int, default=10, help="instances per study (1 series)")
    ap.add_argument("--seed", default="cairn-qr-v1")
    a = ap.parse_args()

    db = os.path.join(a.data, "cairn.db")
    con = sqlite3.connect(db, isolation_level=None)
    ver = con.execute("PRAGMA user_version").fetchone()[0]
    if ver < 3:
        sys.exit(f"{db}: schema version {ver}; expected the schema cairnd creates (>= 3)")
    have = con.execute("SELECT count(*) FROM instances").fetchone()[0]
    if have:
        sys.exit(f"{db}: already holds {have} instances")
    cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")]
            for t in ("patients", "studies", "series", "instances")}
    for t, need in {"patients": ["name_norm"], "studies": ["referring_norm"]}.items():
        for c in need:
            if c not in cols[t]:
                sys.exit(f"{db}: table {t} has no column {c}; update make_index.py for this schema")

    rnd = random.Random(a.seed)
    sn, sw = weighted(SURNAMES)
    fn, fw = weighted(GIVEN_F)
    mn, mw = weighted(GIVEN_M)
    now = "2026-01-01T00:00:00Z"
    t0 = time.time()
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -262144")  # 256 MiB while building
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute("BEGIN")

    n_pat = max(1, int(a.studies * 0.4))
    patients = []
    for p in range(n_pat):
        sex = rnd.choice("FM")
        sur = rnd.choices(sn, sw)[0]
        giv = rnd.choices(fn, fw)[0] if sex == "F" else rnd.choices(mn, mw)[0]
        style = rnd.random()
        if style < 0.15:
            name = f"{sur}^{giv}^{rnd.choice('ABCDEJKLMPRSTW')}"
        elif style < 0.40:
            name = f"{sur.title()}^{giv.title()}"
        elif style < 0.45:
            name = f"{sur}^{giv}^^^"  # trailing empty components, as some modalities send
        else:
            name = f"{sur}^{giv}"
        birth = fmt_date(datetime.date(1930, 1, 1) + datetime.timedelta(days=rnd.randrange(90 * 365)))
        pid = f"P{10000000 + p * 7919 % 90000000:08d}"
        patients.append((p + 1, pid, "", name, birth, sex, now, normalize_name(name)))
    con.executemany("INSERT INTO patients (id, patient_id, issuer, name, birth_date, sex, updated_at, "
                    "name_norm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", patients)

    # study dates uniform over ten years; studies inserted in date order
    days = sorted(rnd.randrange(DATE_DAYS) for _ in range(a.studies))
    acc_nums = rnd.sample(range(10000000, 99999999), a.studies)
    refs = [f"{rnd.choices(sn, sw)[0]}^{rnd.choices(mn + fn, mw + fw)[0]}^^DR" for _ in range(300)]
    studies, series = [], []
    inst_rows = 0

    def instances():
        for st in range(1, a.studies + 1):
            mod = series_mod[st - 1]
            se_uid = f"{UID_ROOT}.2.{st}.1"
            for i in range(1, a.per_study + 1):
                sop = f"{UID_ROOT}.3.{st}.1.{i}"
                sha = hashlib.sha256(sop.encode()).hexdigest()
                yield (sop, st, SOP_CLASS[mod], str(i), EXPLICIT_LE, SIZE[mod], sha,
                       recv[st - 1], "MODALITY1")

    # every patient has at least one study; the rest are skewed so a few patients
    # have many studies and most have 1-3
    owners = list(range(1, n_pat + 1)) + [1 + int(n_pat * rnd.random() ** 1.5) % n_pat
                                          for _ in range(a.studies - n_pat)]
    rnd.shuffle(owners)
    series_mod, recv = [], []
    for st in range(1, a.studies + 1):
        d = DATE0 + datetime.timedelta(days=days[st - 1])
        pref = owners[st - 1]
        mod = rnd.choices(MODALITIES, MOD_WEIGHTS)[0]
        tm = f"{rnd.randrange(7, 20):02d}{rnd.randrange(60):02d}{rnd.randrange(60):02d}"
        ref = rnd.choice(refs)
        studies.append((st, f"{UID_ROOT}.1.{st}", pref, fmt_date(d), tm, rnd.choice(DESCRIPTIONS[mod]),
                        f"A{acc_nums[st - 1]}", ref, str(st % 100000), now, normalize_name(ref)))
        series.append((st, f"{UID_ROOT}.2.{st}.1", st, mod, "1", SERIES_DESC[mod], BODY[mod], now))
        series_mod.append(mod)
        recv.append(f"{d.isoformat()}T{tm[0:2]}:{tm[2:4]}:{tm[4:6]}Z")
    con.executemany("INSERT INTO studies (id, study_uid, patient_ref, study_date, study_time, description, "
                    "accession, referring_physician, study_id, updated_at, referring_norm) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", studies)
    con.executemany("INSERT INTO series (id, series_uid, study_ref, modality, series_number, description, "
                    "body_part, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", series)
    con.executemany("INSERT INTO instances (sop_instance_uid, series_ref, sop_class_uid, instance_number, "
                    "transfer_syntax, size, sha256, received_at, source_ae, current) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", instances())
    inst_rows = con.execute("SELECT max(id) FROM instances").fetchone()[0]
    con.execute("UPDATE store_state SET value = ? WHERE key = 'synced_instance_id'", (inst_rows,))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fk = con.execute("PRAGMA foreign_key_check").fetchmany(1)
    con.close()
    if fk:
        sys.exit(f"foreign key problem in generated rows: {fk}")
    with open(os.path.join(a.data, "clean-shutdown"), "w") as f:
        f.write("cairn stopped cleanly\n")
    print(json.dumps({"patients": n_pat, "studies": a.studies, "series": a.studies,
                      "instances": inst_rows, "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
