################################################################################
#
# cairnd
#
################################################################################

# The local workspace (this repository), built with its Cargo.lock (--locked).
CAIRND_VERSION = 0.1.0
CAIRND_SITE = $(BR2_EXTERNAL_CAIRN_PATH)/../..
CAIRND_SITE_METHOD = local
CAIRND_LICENSE = Apache-2.0
CAIRND_LICENSE_FILES = Cargo.toml
CAIRND_DEPENDENCIES = host-pkgconf

# Two binaries from two workspace members: build both, install both.
CAIRND_CARGO_BUILD_OPTS = --locked -p cairnd -p cairnctl

define CAIRND_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/cairnd \
		$(TARGET_DIR)/usr/bin/cairnd
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/cairnctl \
		$(TARGET_DIR)/usr/bin/cairnctl
endef

define CAIRND_USERS
	cairn 990 cairn 990 * /var/lib/cairn - disk,tape,cdrom,input,gpio cairn archive box daemon
endef

$(eval $(cargo-package))
