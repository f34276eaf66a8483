"""Every command README.md shows, run as a newcomer would, against a `cairnd demo` box.

The commands are read from README.md itself: each line of a ```sh block, and each `code span`
in the prose and tables that starts with a program (cairnctl, dcmsend, xorriso, tools/vm...) or
with a cairnctl subcommand (`archive load`, `demo tape-insert`...). Each one must be in
COMMANDS below, with the runnable form the test gives it (placeholders such as DIR, BOX, <uid>
filled in, the demo's ports instead of 11112, `cargo run --release -p X --` as the built X) or
in NOT_HERE with the reason it cannot run on this machine. A command the README gains without
an entry here fails `test_every_readme_command_is_listed`; an entry whose command left the
README fails it too.

The runnable ones run in README order of the story (send, list, query, archive, eject, restore,
read the media back without cairn), in one shell each, in a folder holding `demo-data`, with
the release binaries and DCMTK first on PATH. Each must end with the exit status given (0
unless the README says the command refuses in that state).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from harness import CAIRND, ROOT, TARGET, TEST_FILES, free_port
from test_web_e2e import LoopbackDemo

README = ROOT / "README.md"

PROGRAMS = {"cairnctl", "cairnd", "cargo", "storescu", "dcmsend", "echoscu", "findscu", "getscu",
            "xorriso", "sqlite3", "dcmdump", "tar", "mt", "sha256sum", "dd", "grep", "mkdir",
            "cd", "tools/test", "tools/vm", "tools/image", "tools/bench", "tools/bench-qr",
            "tools/bench-archive"}
# `archive load`, `demo tape-load DEMO01`: cairnctl commands written without the program name.
CAIRNCTL_SUBCOMMANDS = {"archive", "demo", "restore", "alarm", "disk", "raid", "audit", "fsck",
                        "studies", "stats"}

CTL = "cairnctl --data ./demo-data"
CART = "demo-data/hw/tape/cartridges/DEMO01"
DISC = "stdio:demo-data/hw/optical/discs/DISC01.iso"

# README command -> what runs: a list of (shell command, expected exit status, folder under the
# work folder). "{port}", "{uid}" (the DOE study), "{sha}" (one of its files), "{vol}" (the
# disc's volume id) are filled in when run. The order of this dict is the order they run in.
COMMANDS: dict[str, list[tuple[str, int, str]]] = {
    # The two commands
    "cargo run --release -p cairnd -- demo ./demo-data": [],  # the box every command runs on
    "cargo run --release -p cairnd -- demo ./demo-data --bind 127.0.0.1": [],  # the same, as started
    "cairnd demo DIR": [],  # the same
    "echoscu -aec CAIRN localhost 11112": [("echoscu -aec CAIRN localhost {port}", 0, "")],
    "dcmsend -aec CAIRN localhost 11112 image.dcm": [
        ("dcmsend -aec CAIRN localhost {port} image.dcm", 0, "")],
    "cargo run --release -p cairnctl -- --data ./demo-data studies": [
        ("cairnctl --data ./demo-data studies | grep -F -- '{j2k_uid}'", 0, "")],
    # Pointing a viewer at the box
    "findscu -aet VIEWER1 -aec CAIRN -S -k QueryRetrieveLevel=STUDY -k PatientName='DOE*' "
    "-k StudyDate= -k StudyInstanceUID= BOX 11112": [
        ("findscu -aet VIEWER1 -aec CAIRN -S -k QueryRetrieveLevel=STUDY -k PatientName='DOE*' "
         "-k StudyDate= -k StudyInstanceUID= 127.0.0.1 {port} 2>&1 | grep -F -- '{uid}'", 0, "")],
    "getscu -aet VIEWER1 -aec CAIRN -S -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=<uid> "
    "BOX 11112": [
        ("mkdir -p got && cd got && getscu -aet VIEWER1 -aec CAIRN -S -k QueryRetrieveLevel=STUDY "
         "-k StudyInstanceUID={uid} 127.0.0.1 {port} && ls | grep -q .", 0, "")],
    # On the appliance (the table), DIR = ./demo-data
    f"cairnctl --data DIR fsck": [(f"{CTL} fsck", 0, "")],
    "cairnctl --data DIR studies [--patient NAME] [--modality M] [--date RANGE]": [
        (f"{CTL} studies --patient 'DOE*' | grep -F -- '{{uid}}'", 0, ""),
        (f"{CTL} studies --modality CT | grep -F -- '{{uid}}'", 0, ""),
        (f"{CTL} studies --date 20240102 | grep -F -- '{{uid}}'", 0, ""),
        (f"{CTL} studies --date 20240101-20240131 | grep -F -- '{{uid}}'", 0, "")],
    "cairnctl --data DIR stats": [(f"{CTL} stats", 0, "")],
    "cairnctl --data DIR audit verify": [(f"{CTL} audit verify", 0, "")],
    "cairnctl --data DIR raid status [--json]": [
        (f"{CTL} raid status", 0, ""), (f"{CTL} raid status --json", 0, "")],
    "cairnctl --data DIR alarm status [--json]": [
        (f"{CTL} alarm status", 0, ""), (f"{CTL} alarm status --json", 0, "")],
    "alarm silence": [(f"{CTL} alarm silence", 0, "")],
    "cairnctl --data DIR disk status\\|locate\\|remove\\|confirm": [
        (f"{CTL} disk status", 0, ""), (f"{CTL} disk locate 3", 0, "")],
    "cairnctl --data DIR archive status [--json]": [
        (f"{CTL} archive status", 0, ""), (f"{CTL} archive status --json", 0, "")],
    "archive volumes [--json]": [
        (f"{CTL} archive volumes", 0, ""), (f"{CTL} archive volumes --json", 0, "")],
    "cairnctl --data DIR archive flush\\|eject\\|load\\|scan": [(f"{CTL} archive flush", 0, "")],
    "cairnctl --data DIR archive load --label-unreadable [--target T]": [
        # the tape in the drive was read: refused, as the README says
        (f"{CTL} archive load --label-unreadable --target tape", 1, "")],
    "archive status": [(f"{CTL} archive status | grep -i 'verified'", 0, "")],
    "archive volumes": [],  # run above
    "archive load": [],  # run below, after `demo tape-insert` and `demo tape-load DEMO01`
    "cairnctl --data DIR restore --study UID": [],  # run below with the study's UID
    # A disk failed
    "cairnctl alarm silence": [],  # run below, after `demo fail-disk 3`
    "cairnctl disk status": [],
    "cairnctl disk locate 3": [],  # run above
    "cairnctl disk remove 3": [],  # run below
    "cairnctl disk confirm 3": [],  # run below
    "cairnctl raid status": [],  # run below
    "cairnctl --data DIR demo fail-disk 3": [
        (f"{CTL} demo fail-disk 3", 0, ""),
        (f"{CTL} alarm status | grep -i 'bay 3'", 0, ""),
        (f"{CTL} alarm silence", 0, ""),
        (f"{CTL} disk status | grep -i 'bay 3'", 0, "")],
    "cairnctl --data DIR demo insert-disk 3": [
        (f"{CTL} demo insert-disk 3", 0, ""),
        (f"{CTL} raid status", 0, "")],
    "cairnctl --data /var/lib/cairn raid status --json": [
        (f"{CTL} raid status --json | grep -F '\"health\"'", 0, "")],
    "cairnctl alarm status --json": [(f"{CTL} alarm status --json | grep -F '\"sounding\"'", 0, "")],
    # The air-gapped copy
    "cairnctl --data ./demo-data archive status": [(f"{CTL} archive status", 0, "")],
    "archive flush": [(f"{CTL} archive flush", 0, "")],
    "cairnctl --data ./demo-data archive eject --target tape --location offsite_vault": [
        (f"{CTL} archive eject --target tape --location offsite_vault", 0, ""),
        # a new image waits on the RAID, and the status says so
        ("dcmsend -aec CAIRN localhost {port} later.dcm", 0, ""),
        (f"for i in $(seq 100); do {CTL} archive status | grep -qF 'MEDIUM NEEDED' && exit 0; "
         "sleep 0.2; done; exit 1", 0, "")],
    "cairnctl --data ./demo-data demo tape-insert": [
        (f"{CTL} demo tape-insert", 0, ""), (f"{CTL} archive load", 0, "")],
    "archive eject --target tape": [(f"{CTL} archive eject --target tape", 0, "")],
    "demo tape-load DEMO01": [(f"{CTL} demo tape-load DEMO01", 0, ""), (f"{CTL} archive load", 0, "")],
    "cairnctl --data ./demo-data studies": [(f"{CTL} studies | grep -F -- '{{uid}}'", 0, "")],
    "sqlite3 demo-data/cairn.db \"select i.sha256 from instances i join series se on se.id = "
    "i.series_ref join studies st on st.id = se.study_ref where st.study_uid = '<UID>'\"": [
        ("sqlite3 demo-data/cairn.db \"select i.sha256 from instances i join series se on se.id = "
         "i.series_ref join studies st on st.id = se.study_ref where st.study_uid = '{uid}'\" "
         "| grep -x '{sha}'", 0, ""),
        # the README's next step: delete that study's files
        ("rm demo-data/objects/*/*/{sha}.dcm", 0, "")],
    "cairnctl --data ./demo-data fsck": [(f"{CTL} fsck", 1, "")],  # complains
    "cairnctl --data ./demo-data restore --study <StudyInstanceUID>": [
        (f"{CTL} restore --study {{uid}}", 0, ""),
        (f"{CTL} fsck", 0, ""),  # clean again
        ("sha256sum demo-data/objects/*/*/{sha}.dcm | grep -F '{sha} '", 0, "")],
    "cairnctl --data DIR archive scan": [(f"{CTL} archive scan", 0, "")],
    "restore": [],  # the word, run above
    # Reading a cairn tape without cairn (the emulated drive's tape files are ordinary files)
    "cairnctl --data ./demo-data demo tape-list": [
        (f"{CTL} demo tape-list | grep -F 'DEMO01'", 0, "")],
    f"tar -b 512 -xf {CART}/file-0001": [
        (f"mkdir -p tape-1 && cd tape-1 && tar -b 512 -xf ../{CART}/file-0001", 0, "")],
    "dd if=/dev/nst0 bs=256k count=1 | tr -s ' '": [
        (f"dd if={CART}/file-0000 bs=256k count=1 | tr -s ' ' | grep -F '\"cairn-volume\"'", 0, "")],
    "mkdir bundle-1 && cd bundle-1": [("mkdir bundle-1", 0, "")],
    "tar -b 512 -xvf /dev/nst0": [(f"tar -b 512 -xvf ../{CART}/file-0001", 0, "bundle-1")],
    "sha256sum -c MANIFEST.sha256": [("sha256sum -c MANIFEST.sha256", 0, "bundle-1")],
    "sha256sum -c": [],  # the same, in words
    "grep 1.2.840.113619.2.55.3.2831164364 index.csv": [("grep -F -- '{uid}' index.csv", 0, "bundle-1")],
    "dcmdump objects/<sha256>.dcm": [("dcmdump objects/{sha}.dcm | grep -F 'DOE^JOHN'", 0, "bundle-1")],
    # Optical discs (the demo's disc is an image file: stdio:FILE for /dev/sr0)
    "xorriso -osirrox on -indev /dev/sr0 -extract / disc-copy": [
        (f"xorriso -osirrox on -indev {DISC} -extract / disc-copy", 0, "")],
    "xorriso -indev /dev/sr0 -check_media --": [
        (f"xorriso -indev {DISC} -check_media -- 2>&1 | grep -F '+ good' "
         f"&& ! xorriso -indev {DISC} -check_media -- 2>&1 | grep -E 'region.* - '", 0, "")],
    "cd disc-copy/<volume id>.2 && sha256sum -c MANIFEST.sha256": [
        ("cd disc-copy/*.2 && sha256sum -c MANIFEST.sha256", 0, "")],
    # Reading the data without cairn
    "sqlite3 DIR/cairn.db 'select * from studies'": [
        ("sqlite3 demo-data/cairn.db 'select * from studies' | grep -F -- '{uid}'", 0, "")],
    # Keeping images for the legal duration (the DOE patient, README-1, has no birth date)
    "cairnctl --data DIR retention show --patient 12345": [
        (f"{CTL} retention show --patient README-1 | grep -F 'the birth date is unknown'", 0, "")],
    "cairnctl --data DIR patient death --patient 12345 --date 20260115 --reason \"death "
    "certificate received 2026-01-20\"": [
        (f"{CTL} patient death --patient README-1 --date 20260115 --reason 'death certificate "
         "received 2026-01-20'", 0, ""),
        (f"{CTL} retention show --patient README-1 | grep -F 'kept until 2036-01-15 (10 years "
         "after the death on 2026-01-15)'", 0, "")],
    "cairnctl --data DIR hold add --patient 12345 --reason \"complaint of 2026-02-01, ref "
    "2026/17\"": [
        (f"{CTL} hold add --patient README-1 --reason 'complaint of 2026-02-01, ref 2026/17' "
         "| grep -F 'hold 1 placed'", 0, "")],
    "cairnctl --data DIR hold list": [
        (f"{CTL} hold list | grep -F 'Hold 1 on patient README-1'", 0, "")],
    "cairnctl --data DIR hold release --id 1 --reason \"case closed 2027-05-04\"": [
        (f"{CTL} hold release --id 1 --reason 'case closed 2027-05-04'", 0, ""),
        # released already: refused, as the README says of refusals
        (f"{CTL} hold release --id 1 --reason 'case closed 2027-05-04'", 2, "")],
}

# Commands that cannot run here, each with the reason (and where it is exercised instead).
NOT_HERE = {
    "tools/test": "runs the whole suite, this test included",
    "tools/vm test": "the qemu rig (minutes, KVM-less TCG): tools/test runs it",
    "tools/vm boot": "boots the appliance image under qemu and keeps it running: the rig "
                     "(tools/vm test, tests/vm) boots it the same way",
    "tools/vm unplug 3": "needs the running VM: tests/vm/test_box.py pulls a disk through QMP",
    "tools/vm sh 'cairnctl --data /var/lib/cairn alarm status'": "needs the running VM (tests/vm)",
    "tools/vm tone": "needs the running VM (tests/vm records the PC speaker)",
    "tools/vm sh 'cairnctl --data /var/lib/cairn alarm silence'": "needs the running VM (tests/vm)",
    "tools/vm plug 3": "needs the running VM (tests/vm)",
    "tools/vm sh 'cairnctl --data /var/lib/cairn raid status'": "needs the running VM (tests/vm)",
    "tools/image": "builds the VM image from Debian packages: tools/vm test builds it",
    "tools/bench": "a benchmark of minutes against Orthanc and storescp",
    "tools/bench-qr": "a benchmark on a 1,000,000-instance index",
    "tools/bench-archive": "a benchmark of 0.5-2 GiB through the emulated tape on tmpfs",
    "cairnd run --config /etc/cairn/cairn.toml": "the appliance start (systemd, /etc/cairn, the "
                                                 "board file): the VM rig boots it",
    "mt -f /dev/nst0 rewind": "needs an st tape drive: tests/vm/test_media.py reads the rig's "
                              "/dev/nst0 with mt, dd and tar",
    "mt -f /dev/nst0 setblk 0": "needs an st tape drive (tests/vm/test_media.py)",
    "mt -f /dev/nst0 fsf 1": "needs an st tape drive (tests/vm/test_media.py)",
}

# Steps whose README command is listed once but stands for a state-dependent later step.
LATER = {
    "cairnctl disk remove 3": [(f"{CTL} disk remove 3", 0, "")],
    "cairnctl disk confirm 3": [(f"{CTL} disk confirm 3", 0, "")],
}


def readme_commands(text: str) -> list[str]:
    """The commands README.md shows, each with its whitespace collapsed."""
    out: list[str] = []
    fence = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
    for m in fence.finditer(text):
        if m.group(1) not in ("sh", "bash", "shell"):
            continue
        for line in m.group(2).replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#\s", line)[0].strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    prose = fence.sub("", text)
    for m in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(m.group(1).split())
        words = span.split(" ")
        program = words[0] in PROGRAMS and (len(words) > 1 or words[0].startswith("tools/"))
        sub = words[0] in CAIRNCTL_SUBCOMMANDS and len(words) > 1 and not words[1].startswith("-")
        if program or sub or span in ("restore",):
            out.append(span)
    return out


def test_every_readme_command_is_listed():
    shown = set(readme_commands(README.read_text()))
    listed = set(COMMANDS) | set(NOT_HERE) | set(LATER)
    unlisted = sorted(shown - listed)
    stale = sorted(listed - shown)
    assert not unlisted, (
        "README.md shows commands this test does not run or explain; add each to COMMANDS "
        f"(how to run it) or NOT_HERE (why it cannot run here): {unlisted}")
    assert not stale, f"entries for commands no longer in README.md: {stale}"
    # Every tools/vm subcommand the README names is one tools/vm has.
    usage = (ROOT / "tools" / "vm").read_text()
    for c in shown:
        if c.startswith("tools/vm "):
            sub = c.split()[1]
            assert f"tools/vm {sub}" in usage, f"tools/vm has no '{sub}': {c}"
    # The README sends with a command that keeps compressed files as they are.
    assert "storescu -aec CAIRN localhost 11112 image.dcm" not in shown


def _doe(tmp: Path) -> tuple[Path, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "README-1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = "20240102"
    ds.Modality = "CT"
    p = tmp / "doe.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p, ds.StudyInstanceUID


def test_readme_commands_run_on_a_demo_box(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # image.dcm is compressed (JPEG 2000): the README's send command must take it as it is.
    shutil.copy(TEST_FILES / "JPEG2000.dcm", work / "image.dcm")
    j2k_uid = pydicom.dcmread(work / "image.dcm").StudyInstanceUID
    doe, uid = _doe(tmp_path)
    later, _ = _doe(tmp_path / "later")
    shutil.copy(later, work / "later.dcm")
    bins = tmp_path / "bin"
    bins.mkdir()
    for b in ("cairnd", "cairnctl"):
        (bins / b).symlink_to(TARGET / b)
    env = dict(os.environ, PATH=f"{bins}:/usr/bin:/bin", RUST_LOG="warn")
    port, http_port = free_port(), free_port()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        demo = LoopbackDemo(Path("demo-data"), port, http_port)
    finally:
        os.chdir(cwd)
    failures: list[str] = []
    ran = 0
    try:
        subprocess.run(["/usr/bin/dcmsend", "-aec", "CAIRN", "127.0.0.1", str(port), str(doe)],
                       check=True, capture_output=True, timeout=60)
        sha = None
        values = {"port": port, "uid": uid, "j2k_uid": j2k_uid}

        def run(cmd: str, want: int, folder: str, readme: str):
            nonlocal sha, ran
            if sha is None and "{sha}" in cmd:
                sha = subprocess.run(
                    ["sqlite3", str(work / "demo-data" / "cairn.db"),
                     "select i.sha256 from instances i join series se on se.id = i.series_ref "
                     f"join studies st on st.id = se.study_ref where st.study_uid = '{uid}'"],
                    capture_output=True, text=True, check=True).stdout.strip()
                values["sha"] = sha
            line = cmd.format(**values)
            r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work / folder, env=env,
                               capture_output=True, text=True, timeout=300)
            ran += 1
            if r.returncode != want:
                failures.append(f"README `{readme}`\n  ran: {line}\n  exit {r.returncode}, "
                                f"wanted {want}\n  {r.stdout[-1500:]}\n  {r.stderr[-1500:]}")

        for readme, steps in COMMANDS.items():
            for cmd, want, folder in steps:
                run(cmd, want, folder, readme)
            if readme == "cairnctl --data DIR demo insert-disk 3":
                # the swap commands of the table, once the new disk is in
                for later, lsteps in LATER.items():
                    for cmd, want, folder in lsteps:
                        run(cmd, want, folder, later)
    finally:
        rc = demo.stop()
    assert not failures, f"{len(failures)} of {ran} README commands failed:\n\n" + "\n\n".join(failures)
    assert rc == 0, f"demo exit {rc}"


def test_tools_the_readme_names_install_what_they_need(tmp_path):
    """On a machine whose python3 has neither pytest nor pydicom (a fresh venv stands for it),
    `tools/vm setup` (what `tools/vm test` does first) and `tools/bench-archive` install what
    they import, as tools/test does, instead of stopping at "No module named ..."."""
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python3"
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec(sys.argv[1]) else 3)"
    assert subprocess.run([py, "-c", probe, "pytest"]).returncode == 3, "the venv is not bare"
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([ROOT / "tools" / "vm", "setup"], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for module in ("pytest", "pydicom"):
        assert subprocess.run([py, "-c", probe, module]).returncode == 0, \
            f"tools/vm setup left {module} out: {r.stderr[-2000:]}"
    r = subprocess.run([ROOT / "tools" / "bench-archive", "--help"], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "usage" in r.stdout.lower(), r.stdout
    for module in ("pydicom", "pynetdicom"):
        assert subprocess.run([py, "-c", probe, module]).returncode == 0, module
