# The board's kernel options (md RAID 4/5/6, st, sr, PC speaker, GPIO character device, ...).
FILESEXTRAPATHS:prepend := "${CAIRN_REPO}/board/${CAIRN_BOARD}:"
SRC_URI += "file://kernel.cfg"
