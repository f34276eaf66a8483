SUMMARY = "cairn archive box: DICOM node, md RAID store, tape/optical archive"
DESCRIPTION = "cairnd (the daemon) and cairnctl (its command line), built with oe-core's cargo \
class from the local Cargo workspace and its Cargo.lock, plus the rootfs overlay (hardened \
systemd unit, provisioning, udev rules, tmpfiles, sysusers, mdadm.conf) and the board file."
HOMEPAGE = "file://${CAIRN_REPO}/README.md"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

inherit cargo cargo-update-recipe-crates systemd useradd

# The local workspace: externalsrc-style, no fetch of cairn itself. The crates the lock file
# names are listed in cairnd-crates.inc (`bitbake -c update_crates cairnd` writes it).
SRC_URI = "file://${CAIRN_REPO};subdir=cairn"
S = "${WORKDIR}/cairn"
require cairnd-crates.inc

CARGO_BUILD_FLAGS += "--locked -p cairnd -p cairnctl"
CARGO_SRC_DIR = ""

SYSTEMD_SERVICE:${PN} = "cairnd.service cairn-provision.service"
SYSTEMD_AUTO_ENABLE = "enable"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "-r cairn; -r gpio"
USERADD_PARAM:${PN} = "-r -g cairn -G disk,tape,cdrom,input,gpio -d /var/lib/cairn -s /sbin/nologin cairn"

RDEPENDS:${PN} = "mdadm e2fsprogs-mke2fs smartmontools util-linux-setpriv tar xorriso udev"

do_install:append() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/cairnd ${D}${bindir}/cairnd
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/cairnctl ${D}${bindir}/cairnctl
    cp -R --no-preserve=ownership ${S}/rootfs/overlay/. ${D}/
    install -D -m 0644 ${S}/board/${CAIRN_BOARD}/board.toml ${D}${sysconfdir}/cairn/board.toml
    install -D -m 0644 ${S}/board/${CAIRN_BOARD}/bays.rules ${D}${nonarch_base_libdir}/udev/rules.d/71-cairn-bays.rules
    install -d ${D}/var/lib/cairn
}

FILES:${PN} += "${nonarch_base_libdir}/udev ${nonarch_libdir}/sysusers.d ${nonarch_libdir}/tmpfiles.d \
                ${libexecdir}/cairn ${sysconfdir}/cairn ${sysconfdir}/mdadm ${sysconfdir}/systemd /var/lib/cairn"
CONFFILES:${PN} = "${sysconfdir}/cairn/cairn.toml"
