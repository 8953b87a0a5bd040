#!/usr/bin/env bash
# Builds (offline from Debian's packages, with debootstrap) the Debian 12 disk image the
# VM suite boots: systemd as PID 1, kernel from linux-image-amd64, every package hostlet's
# integration tests and vagrant/provision.sh need, and a small payload unit that runs
# vm/guest.sh from the 9p-shared repo and powers off (see vm/run.sh).
#
#   vm/image.sh [--force]     prints the image directory (rootfs.img, vmlinuz, initrd.img)
#
# Cache: HOSTLET_VM_CACHE (default /var/cache/hostlet-vm)/img-KEY, KEY = hash of this
# script (package list and payload unit included). A hit costs nothing; a miss ~2 min.
# Older img-* directories are removed after a successful build.
set -euo pipefail

CACHE="${HOSTLET_VM_CACHE:-/var/cache/hostlet-vm}"
SUITE=bookworm
MIRROR="${HOSTLET_VM_MIRROR:-http://deb.debian.org/debian}"
SIZE=4G
PACKAGES=(
	# boot: systemd as PID 1, kernel + initrd, udev
	systemd systemd-sysv udev dbus linux-image-amd64 kmod e2fsprogs
	# hostlet, its tests and vagrant/provision.sh (offline inside the VM)
	busybox-static umoci skopeo docker-registry libseccomp2
	# debootstrap does not resolve virtual packages: skopeo's dependency
	# golang-github-containers-common needs container-network-stack
	containernetworking-plugins
	# pod network: bridge's ipMasq, portmap and firewall run iptables
	iptables
	util-linux procps iproute2 ca-certificates jq inotify-tools file
	# AppArmor's apparmor_parser: tests/apparmor.rs loads a profile and hostlet its default
	apparmor
)

die() {
	echo "vm/image.sh: $*" >&2
	exit 1
}

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*)
	echo "usage: $0 [--force]" >&2
	exit 2
	;;
esac

[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap not found: run vm/deps.sh (or apt-get install debootstrap)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found: apt-get install e2fsprogs"

key="$(sha256sum "$0" | cut -c1-16)"
dir="$CACHE/img-$key"
if [[ $force -eq 0 && -f "$dir/ok" ]]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ $force -eq 0 && -f "$dir/ok" ]]; then
	echo "$dir"
	exit 0
fi

work="$(mktemp -d "$CACHE/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "vm/image.sh: debootstrap $SUITE into $root (${#PACKAGES[@]} extra packages)" >&2
include="$(
	IFS=,
	echo "${PACKAGES[*]}"
)"
if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	die "debootstrap failed (log above)"
fi

echo hostlet-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 hostlet-vm\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
# No password: the VM has no network and no login console (serial-getty is masked).
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
# The package enables a registry on :5000; the tests and the demo start their own.
chroot "$root" systemctl disable docker-registry.service >/dev/null 2>&1 || true

cat >"$root/usr/local/sbin/hostlet-vm-payload" <<'EOF'
#!/bin/sh
# Baked into the image by vm/image.sh: mounts the 9p shares, runs vm/guest.sh from the
# repo, leaves its output and exit code in the out share, powers off.
systemctl is-system-running --wait >/dev/null 2>&1 || true
echo "hostlet-vm: payload started ($(systemctl is-system-running))"
repo="$(sed -n 's/.* hostlet.repo=\([^ ]*\).*/\1/p' /proc/cmdline)"
mkdir -p /mnt/out "$repo"
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out /mnt/out &&
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro repo "$repo"; then
	HOSTLET_VM_REPO="$repo" "$repo/vm/guest.sh" >/mnt/out/guest.log 2>&1
	echo $? >/mnt/out/rc
	echo "hostlet-vm: payload exit code $(cat /mnt/out/rc)"
	sync
else
	echo "hostlet-vm: mounting the 9p shares failed"
fi
# Immediate power-off: the disk is a throwaway snapshot, and a clean shutdown waits up to
# 90 s for containers whose PID 1 ignores SIGTERM.
sync
systemctl poweroff --force --force
EOF
chmod 0755 "$root/usr/local/sbin/hostlet-vm-payload"
cat >"$root/etc/systemd/system/hostlet-vm-payload.service" <<'EOF'
[Unit]
Description=hostlet VM suite payload (vm/guest.sh)
After=multi-user.target

[Service]
# simple, not oneshot: a oneshot in progress keeps the system state at "starting".
Type=simple
ExecStart=/usr/local/sbin/hostlet-vm-payload
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable hostlet-vm-payload.service >/dev/null 2>&1

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
cp -L "$root/vmlinuz" "$work/vmlinuz"
cp -L "$root/initrd.img" "$work/initrd.img"
truncate -s "$SIZE" "$work/rootfs.img"
mkfs.ext4 -q -F -L hostlet-vm -d "$root" "$work/rootfs.img"
rm -rf "$root"
sha256sum "$0" >"$work/ok"

rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
for old in "$CACHE"/img-*; do
	[[ "$old" == "$dir" ]] || rm -rf "$old"
done
echo "vm/image.sh: built $dir ($(du -sh --apparent-size "$dir/rootfs.img" | cut -f1) sparse, $(du -sh "$dir/rootfs.img" | cut -f1) used)" >&2
echo "$dir"
