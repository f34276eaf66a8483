"""The image recipes' form (Buildroot and Yocto cannot be built offline here): required files and
variables present, every path they name resolves inside the repository; the boards, their bay
udev rules and kernel fragments agree; the overlay's units pass `systemd-analyze verify`; the
kernel fragment of the rig's board is satisfied by the Debian kernel the rig boots.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BR = ROOT / "image-recipes/buildroot"
YO = ROOT / "image-recipes/yocto/meta-cairn"
DEB = ROOT / "image-recipes/debian"
OVERLAY = ROOT / "rootfs/overlay"
BOARDS = sorted(p.parent.name for p in (ROOT / "board").glob("*/board.toml"))
CACHE = Path("/var/cache/cairn-image")


def mk_vars(text: str) -> dict[str, str]:
    """`NAME = value` / `NAME ?= value` / `NAME += value` lines of a make or bitbake file."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_:.${}%-]+)\s*(\?\?=|\?=|\+=|:=|\.=|=)\s*(.*)$", line)
        if m:
            name, op, value = m.groups()
            value = value.strip().strip('"')
            out[name] = (out.get(name, "") + " " + value).strip() if op in ("+=", ".=") else value
    return out


# -- Buildroot --------------------------------------------------------------------------------

def br_path(value: str) -> Path:
    return Path(value.replace("$(BR2_EXTERNAL_CAIRN_PATH)", str(BR))).resolve()


def test_buildroot_external_tree():
    desc = (BR / "external.desc").read_text()
    assert re.search(r"^name:\s*CAIRN\s*$", desc, re.M), desc
    assert re.search(r"^desc:\s*\S", desc, re.M)
    config_in = (BR / "Config.in").read_text()
    sourced = re.findall(r'source\s+"\$BR2_EXTERNAL_CAIRN_PATH/(.+?)"', config_in)
    assert sourced, config_in
    for s in sourced:
        assert (BR / s).is_file(), s
    assert "$(BR2_EXTERNAL_CAIRN_PATH)/package/" in (BR / "external.mk").read_text()
    pkgs = [p.name for p in (BR / "package").iterdir() if p.is_dir()]
    assert "cairnd" in pkgs
    for p in pkgs:
        assert (BR / "package" / p / "Config.in").is_file() and (BR / "package" / p / f"{p}.mk").is_file()
        assert f"package/{p}/Config.in" in sourced


def test_buildroot_cairnd_package_builds_the_local_workspace():
    mk = (BR / "package/cairnd/cairnd.mk").read_text()
    v = mk_vars(mk)
    for key in ("CAIRND_VERSION", "CAIRND_SITE", "CAIRND_SITE_METHOD", "CAIRND_LICENSE"):
        assert v.get(key), key
    assert "$(eval $(cargo-package))" in mk
    assert v["CAIRND_SITE_METHOD"] == "local"
    site = br_path(v["CAIRND_SITE"])
    assert site == ROOT, site
    assert (site / "Cargo.toml").is_file() and (site / "Cargo.lock").is_file()
    # The version and licence agree with the workspace; the lock file is used.
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    assert v["CAIRND_VERSION"] == ws["version"] and v["CAIRND_LICENSE"] == ws["license"]
    assert "--locked" in v["CAIRND_CARGO_BUILD_OPTS"]
    for crate in ("cairnd", "cairnctl"):
        assert f"-p {crate}" in v["CAIRND_CARGO_BUILD_OPTS"]
        assert (ROOT / "firmware" / crate / "Cargo.toml").is_file()
        assert f"$(TARGET_DIR)/usr/bin/{crate}" in mk
    cfg = (BR / "package/cairnd/Config.in").read_text()
    assert "config BR2_PACKAGE_CAIRND" in cfg and "select BR2_PACKAGE_HOST_RUSTC" in cfg


def test_buildroot_defconfigs_resolve():
    defconfigs = list((BR / "configs").glob("*_defconfig"))
    assert defconfigs
    for d in defconfigs:
        v = mk_vars(d.read_text())
        assert v.get("BR2_PACKAGE_CAIRND") == "y", d
        assert v.get("BR2_INIT_SYSTEMD") == "y", d
        assert v.get("BR2_PACKAGE_MDADM") == "y", d
        assert br_path(v["BR2_ROOTFS_OVERLAY"]) == OVERLAY
        for frag in v["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"].split():
            assert br_path(frag).is_file(), frag
        script = br_path(v["BR2_ROOTFS_POST_BUILD_SCRIPT"])
        assert script.is_file() and script.stat().st_mode & 0o111, script
        board = v["BR2_ROOTFS_POST_SCRIPT_ARGS"]
        assert board in BOARDS and f"board/{board}/" in v["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"]


def test_buildroot_post_build_installs_the_board(tmp_path):
    script = BR / "board/post-build.sh"
    r = subprocess.run(["sh", str(script), str(tmp_path), "generic-4bay-x86_64"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "etc/cairn/board.toml").read_bytes() == \
        (ROOT / "board/generic-4bay-x86_64/board.toml").read_bytes()
    assert (tmp_path / "usr/lib/udev/rules.d/71-cairn-bays.rules").is_file()
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/cairnd.service").is_symlink()
    r = subprocess.run(["sh", str(script), str(tmp_path / "x"), "no-such-board"], capture_output=True)
    assert r.returncode != 0


# -- Yocto ------------------------------------------------------------------------------------

def yo_path(value: str) -> Path:
    return Path(value.replace("${LAYERDIR}", str(YO))).resolve()


def test_yocto_layer_conf():
    v = mk_vars((YO / "conf/layer.conf").read_text())
    assert "cairn" in v["BBFILE_COLLECTIONS"]
    assert v["BBFILE_PATTERN_cairn"] == "^${LAYERDIR}/"
    assert v["LAYERSERIES_COMPAT_cairn"].split()
    assert "core" in v["LAYERDEPENDS_cairn"]
    globs = v["BBFILES"].split()
    assert globs
    found = [p for g in globs for p in YO.glob(g.replace("${LAYERDIR}/", ""))]
    assert any(p.name.startswith("cairnd_") for p in found), found
    assert any(p.name == "cairn-image.bb" for p in found), found
    assert yo_path(v["CAIRN_REPO"]) == ROOT
    assert v["CAIRN_BOARD"] in BOARDS


def test_yocto_cairnd_recipe_uses_cargo_on_the_workspace():
    recipe = next((YO / "recipes-cairn/cairnd").glob("cairnd_*.bb"))
    text = recipe.read_text()
    v = mk_vars(text)
    assert re.search(r"^inherit .*\bcargo\b", text, re.M)
    for key in ("SUMMARY", "LICENSE", "LIC_FILES_CHKSUM", "SRC_URI"):
        assert v.get(key), key
    version = recipe.stem.split("_")[1]
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    assert version == ws["version"] and v["LICENSE"] == ws["license"]
    assert "${CAIRN_REPO}" in v["SRC_URI"]
    assert (recipe.parent / "cairnd-crates.inc").is_file() and "require cairnd-crates.inc" in text
    assert "--locked" in v["CARGO_BUILD_FLAGS"]
    # Everything the recipe installs from the repository exists.
    for rel in re.findall(r"\$\{S\}/([A-Za-z0-9_./${}-]+)", text):
        rel = rel.replace("${CAIRN_BOARD}", "generic-4bay-x86_64").rstrip("/.")
        assert (ROOT / rel).exists(), rel
    for unit in v["SYSTEMD_SERVICE:${PN}"].split():
        assert (OVERLAY / "usr/lib/systemd/system" / unit).is_file(), unit
    assert "cairn" in v["USERADD_PARAM:${PN}"]


def test_yocto_image_and_kernel_fragment():
    img = (YO / "recipes-cairn/images/cairn-image.bb").read_text()
    assert re.search(r"^inherit core-image", img, re.M)
    assert "cairnd" in mk_vars(img)["IMAGE_INSTALL"].split()
    append = (YO / "recipes-kernel/linux/linux-yocto_%.bbappend").read_text()
    assert "file://kernel.cfg" in append and "${CAIRN_REPO}/board/${CAIRN_BOARD}" in append
    for b in BOARDS:
        if b != "demo":
            assert (ROOT / "board" / b / "kernel.cfg").is_file(), b


# -- Debian (the one built here) ----------------------------------------------------------------

def test_debian_recipe_lists_and_scripts():
    for f in ("binaries", "modules", "debs", "host-packages", "udev-rules", "init"):
        assert (DEB / f).is_file(), f
    assert subprocess.run(["bash", "-n", str(ROOT / "tools/image")]).returncode == 0
    assert subprocess.run(["sh", "-n", str(DEB / "init")]).returncode == 0
    assert subprocess.run(["sh", "-n", str(OVERLAY / "usr/libexec/cairn/provision-array")]).returncode == 0
    rules = [l.strip() for l in (DEB / "udev-rules").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert "60-persistent-storage.rules" in rules
    for rule in rules:
        assert (Path("/usr/lib/udev/rules.d") / rule).is_file(), rule


# -- Boards -------------------------------------------------------------------------------------

BOARD_KEYS = {"name", "bay", "buzzer", "button"}
BAY_KEYS = {"number", "by_path", "fault_led", "locate_led"}


@pytest.mark.parametrize("board", BOARDS)
def test_board_file_and_bay_rules_agree(board):
    b = tomllib.loads((ROOT / "board" / board / "board.toml").read_text())
    assert set(b) <= BOARD_KEYS and b["name"] == board
    assert b["buzzer"]["kind"] in ("pcspkr", "gpio", "sysfs-led", "emulated")
    numbers = [bay["number"] for bay in b["bay"]]
    assert len(numbers) >= 4 and len(set(numbers)) == len(numbers) and 0 not in numbers
    for bay in b["bay"]:
        assert set(bay) <= BAY_KEYS
    if board == "demo":
        return
    rules = (ROOT / "board" / board / "bays.rules").read_text()
    pairs = re.findall(r'ENV\{ID_PATH\}=="([^"]+)", SYMLINK\+="cairn/bay(\d+)"', rules)
    assert sorted((p, int(n)) for p, n in pairs) == sorted((x["by_path"], x["number"]) for x in b["bay"])


def kernel_config() -> str:
    configs = sorted(CACHE.glob("kernel-*/boot/config-*"))
    if not configs:
        subprocess.run([str(ROOT / "tools/image"), "--no-cargo"], check=False, capture_output=True)
        configs = sorted(CACHE.glob("kernel-*/boot/config-*"))
    assert configs, "no Debian kernel in the image cache: run tools/image"
    return configs[-1].read_text()


def test_rig_kernel_fragment_is_met_by_debians_kernel():
    have = dict(re.findall(r"^(CONFIG_\w+)=(\S+)$", kernel_config(), re.M))
    common = (ROOT / "board/common-kernel.cfg").read_text()
    for board in BOARDS:
        if board == "demo":
            continue
        assert (ROOT / "board" / board / "kernel.cfg").read_text().startswith(common), board
    want = re.findall(r"^(CONFIG_\w+)=(\S+)$", (ROOT / "board/qemu-x86_64-scsi/kernel.cfg").read_text(), re.M)
    assert len(want) > 20
    missing = [f"{k}={v} (Debian: {have.get(k, 'not set')})" for k, v in want
               if have.get(k) not in (("y", "m") if v in ("y", "m") else (v,))]
    assert not missing, missing


# -- The overlay -----------------------------------------------------------------------------------

def test_units_verify_and_are_hardened():
    unit = (OVERLAY / "usr/lib/systemd/system/cairnd.service").read_text()
    for line in ("User=cairn", "NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true",
                 "ReadWritePaths=/var/lib/cairn", "PrivateTmp=true"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    groups = re.search(r"^SupplementaryGroups=(.*)$", unit, re.M).group(1).split()
    assert {"disk", "tape", "cdrom", "input"} <= set(groups)
    assert shutil.which("systemd-analyze"), "systemd-analyze (package systemd) is needed"
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        shutil.copytree(OVERLAY, root, dirs_exist_ok=True, symlinks=True)
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/bin/cairnd").write_text("#!/bin/sh\n")
        (root / "usr/bin/cairnd").chmod(0o755)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                            "/usr/lib/systemd/system/cairnd.service",
                            "/usr/lib/systemd/system/cairn-provision.service"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_mdadm_monitor_is_off_and_config_points_at_the_board():
    conf = (OVERLAY / "etc/mdadm/mdadm.conf").read_text()
    active = [l for l in conf.splitlines() if l.strip() and not l.startswith("#")]
    assert not [l for l in active if l.split()[0] in ("MAILADDR", "PROGRAM", "MAILFROM")], active
    for unit in ("mdmonitor.service", "mdmonitor-oneshot.timer", "mdcheck_start.timer"):
        p = OVERLAY / "etc/systemd/system" / unit
        assert p.is_symlink() and str(p.readlink()) == "/dev/null", unit
    cfg = tomllib.loads((OVERLAY / "etc/cairn/cairn.toml").read_text())
    assert cfg["hardware"]["board"] == "/etc/cairn/board.toml"
    assert "/etc/cairn/board.toml" in (BR / "board/post-build.sh").read_text().replace("$TARGET_DIR", "")
    tmpfiles = (OVERLAY / "usr/lib/tmpfiles.d/cairn.conf").read_text()
    assert re.search(r"^d /var/lib/cairn\s+0750 cairn cairn", tmpfiles, re.M)
    sysusers = (OVERLAY / "usr/lib/sysusers.d/cairn.conf").read_text()
    assert re.search(r"^u cairn ", sysusers, re.M)
    rules = (OVERLAY / "usr/lib/udev/rules.d/70-cairn.rules").read_text()
    assert 'KERNEL=="nst[0-9]*"' in rules and "cairn/tape" in rules
