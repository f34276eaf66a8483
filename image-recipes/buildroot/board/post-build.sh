#!/bin/sh
# Buildroot post-build script: install the board file and its bay udev rules.
# Called by Buildroot with TARGET_DIR as $1; the board name is $2 (BR2_ROOTFS_POST_SCRIPT_ARGS).
set -eu
TARGET_DIR=$1
BOARD=${2:-generic-4bay-x86_64}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
install -D -m 0644 "$REPO/board/$BOARD/board.toml" "$TARGET_DIR/etc/cairn/board.toml"
install -D -m 0644 "$REPO/board/$BOARD/bays.rules" "$TARGET_DIR/usr/lib/udev/rules.d/71-cairn-bays.rules"
mkdir -p "$TARGET_DIR/var/lib/cairn"
# cairnd.service and cairn-provision.service are enabled like any unit with [Install].
mkdir -p "$TARGET_DIR/etc/systemd/system/multi-user.target.wants" "$TARGET_DIR/etc/systemd/system/local-fs.target.wants"
ln -sf /usr/lib/systemd/system/cairnd.service "$TARGET_DIR/etc/systemd/system/multi-user.target.wants/cairnd.service"
ln -sf /usr/lib/systemd/system/cairn-provision.service "$TARGET_DIR/etc/systemd/system/local-fs.target.wants/cairn-provision.service"
