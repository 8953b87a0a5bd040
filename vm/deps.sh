#!/usr/bin/env bash
# Installs what the VM suite needs on a Debian 12 host: qemu-system-x86 and debootstrap.
#
#   vm/deps.sh
#
# qemu-system-x86 comes from bookworm-backports: hosts that already carry qemu-utils 10.x
# from backports cannot install bookworm's qemu-system-common 7.2 beside it. The backports
# suite is used through a private sources list and lists dir (/var/cache/hostlet-vm/apt),
# so /etc/apt stays untouched. Does nothing when both tools are already there.
set -euo pipefail

CACHE="${HOSTLET_VM_CACHE:-/var/cache/hostlet-vm}"
MIRROR="${HOSTLET_VM_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${HOSTLET_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if command -v qemu-system-x86_64 >/dev/null && command -v debootstrap >/dev/null; then
	exit 0
fi
[[ "$(id -u)" -eq 0 ]] || {
	echo "vm/deps.sh: must run as root (apt-get)" >&2
	exit 1
}

apt_dir="$CACHE/apt"
mkdir -p "$apt_dir/lists/partial"
cat >"$apt_dir/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
deb $MIRROR bookworm-backports main
EOF
opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	-o "Dir::Etc::SourceParts=/nonexistent"
	-o "Dir::State::Lists=$apt_dir/lists"
)
export DEBIAN_FRONTEND=noninteractive
apt-get "${opts[@]}" update -q
apt-get "${opts[@]}" install -y -q --no-install-recommends -t bookworm-backports \
	qemu-system-x86 debootstrap
