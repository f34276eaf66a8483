SUMMARY = "The cairn archive box image: systemd, md RAID tools, cairnd"
LICENSE = "MIT"

inherit core-image

IMAGE_FEATURES += "read-only-rootfs-delayed-postinsts"
IMAGE_INSTALL = "packagegroup-core-boot cairnd mdadm e2fsprogs smartmontools open-iscsi-initiator \
                 tar xorriso mt-st libgpiod-tools kernel-modules ${CORE_IMAGE_EXTRA_INSTALL}"
DISTRO_FEATURES:append = " systemd usrmerge"
VIRTUAL-RUNTIME_init_manager = "systemd"
IMAGE_FSTYPES = "wic"
WKS_FILE ?= "mkefidisk.wks"
