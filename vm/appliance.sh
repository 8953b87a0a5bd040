#!/usr/bin/env bash
# Builds an appliance image from Debian 12 packages only, with hostlet's .deb installed,
# its container image preloaded and its pods' manifests in place, then boots it under
# qemu with no network at all and measures kernel start -> every pod Ready.
#
#   vm/appliance.sh [DEB]      as root; DEB defaults to packaging/build-deb.sh's output
#   vm/appliance.sh --podman   the same image and pods with podman instead (below)
#
# The image (debootstrap minbase + systemd + linux-image-amd64 + jq, ~2 min):
# - hostlet installed from the .deb inside the chroot (`dpkg -i`): the unit is enabled,
#   not started (no systemd runs in a chroot);
# - the busybox test image (rootfs/build.sh) as an OCI archive in hostlet's preload
#   directory, /var/lib/hostlet/images/preload/busybox.tar, named
#   docker.io/library/busybox:appliance; the agent imports it when it starts;
# - two pods in /etc/kubernetes/manifests using it with imagePullPolicy: Never: `web`
#   (busybox httpd, a TCP readiness probe on 8080) and `hello` (a loop);
# - a unit, hostlet-appliance-report.service, that polls `hostlet pods -o json` until
#   every pod is Ready, prints `appliance: all pods Ready at uptime X s` on the console
#   (/proc/uptime: seconds since the kernel started), then powers off.
# qemu runs with -nic none (no network device); HOSTLET_APPLIANCE_BOOT=0 only builds.
# Results in HOSTLET_APPLIANCE_OUT
# (default target/appliance, or target/appliance-podman): console.log, report.txt,
# packages.txt (every installed package with its installed size in KiB).
#
# --podman, for the comparison in BENCHMARKS.md: Debian's podman instead of hostlet, the
# same archive in /var/lib/appliance/, and a unit that runs `podman load` and
# `podman kube play` on the same manifests at boot, then reports when both containers
# are running (podman has no pod Ready condition to poll).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
OUT="${HOSTLET_APPLIANCE_OUT:-$repo/target/appliance}"
MIRROR="${HOSTLET_VM_MIRROR:-http://deb.debian.org/debian}"
TIMEOUT="${HOSTLET_APPLIANCE_TIMEOUT:-600}"
CPUS="${HOSTLET_VM_CPUS:-2}"
PACKAGES=(systemd systemd-sysv udev dbus linux-image-amd64 kmod e2fsprogs libseccomp2 jq procps
	containernetworking-plugins iptables) # the .deb's Depends: pod networking through CNI

die() {
	echo "vm/appliance.sh: $*" >&2
	exit 1
}
[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap not found: run vm/deps.sh"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: run vm/deps.sh"
command -v skopeo >/dev/null || die "skopeo not found: .ci/deps"

runtime=hostlet deb=""
case "${1:-}" in
--podman)
	runtime=podman
	OUT="${HOSTLET_APPLIANCE_OUT:-$repo/target/appliance-podman}"
	# debootstrap does not resolve virtual packages: containers-common needs a network stack.
	# catatonit (a Recommends) is what podman builds its local pause image from: without
	# it `podman kube play` fails offline ("finding pause binary").
	PACKAGES+=(podman catatonit containernetworking-plugins iptables)
	;;
*)
	deb="${1:-}"
	[[ -n "$deb" ]] || deb="$(packaging/build-deb.sh)"
	[[ -f "$deb" ]] || die "$deb: no such package"
	;;
esac

# write_manifests DIR: the appliance's two pods.
write_manifests() {
	mkdir -p "$1"
	cat >"$1/web.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 3
  containers:
    - name: web
      image: busybox:appliance
      imagePullPolicy: Never
      command: ["httpd", "-f", "-p", "8080"]
      readinessProbe:
        tcpSocket:
          port: 8080
        periodSeconds: 1
EOF
	cat >"$1/hello.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  terminationGracePeriodSeconds: 3
  containers:
    - name: hello
      image: busybox:appliance
      imagePullPolicy: Never
      command: ["sh", "-c", "while true; do echo hello; sleep 5; done"]
EOF
}

install_hostlet() {
	echo "::: appliance: hostlet from $deb"
	cp "$deb" "$root/tmp/hostlet.deb"
	chroot "$root" dpkg -i /tmp/hostlet.deb
	rm -f "$root/tmp/hostlet.deb"
	[[ "$(chroot "$root" systemctl is-enabled hostlet.service)" == enabled ]] || die "hostlet.service not enabled in the image"

	echo "::: appliance: preloaded image, manifests"
	rootfs/build.sh "$OUT/image" >/dev/null
	install -d -m 0700 "$root/var/lib/hostlet/images" "$root/var/lib/hostlet/images/preload"
	skopeo copy --quiet "oci:$OUT/image/layout:test" \
		"oci-archive:$root/var/lib/hostlet/images/preload/busybox.tar:busybox:appliance"
	write_manifests "$root/etc/kubernetes/manifests"
	cat >"$root/usr/local/sbin/hostlet-appliance-report" <<'EOF'
#!/bin/sh
# vm/appliance.sh: waits until every pod is Ready, reports the uptime, powers off.
ready='(.items | length) >= 2 and ([.items[].status.conditions[]? | select(.type == "Ready") | .status] | length == 2 and all(. == "True"))'
while :; do
	if hostlet pods -o json 2>/dev/null | jq -e "$ready" >/dev/null 2>&1; then
		up="$(cut -d' ' -f1 /proc/uptime)"
		echo "appliance: all pods Ready at uptime $up s"
		hostlet pods
		systemd-analyze 2>/dev/null | head -n1
		journalctl -u hostlet.service -o short-monotonic --no-pager | head -n 5
		break
	fi
	sleep 0.2
done
sync
systemctl poweroff --force --force
EOF
	chmod 0755 "$root/usr/local/sbin/hostlet-appliance-report"
	cat >"$root/etc/systemd/system/hostlet-appliance-report.service" <<'EOF'
[Unit]
Description=vm/appliance.sh: report when every pod is Ready
After=hostlet.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/hostlet-appliance-report
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
	chroot "$root" systemctl enable hostlet-appliance-report.service >/dev/null 2>&1
}

install_podman() {
	echo "::: appliance: podman, the archive, manifests"
	rootfs/build.sh "$OUT/image" >/dev/null
	mkdir -p "$root/var/lib/appliance"
	skopeo copy --quiet "oci:$OUT/image/layout:test" \
		"oci-archive:$root/var/lib/appliance/busybox.tar:busybox:appliance"
	write_manifests "$root/etc/kubernetes/manifests"
	cat >"$root/usr/local/sbin/podman-appliance" <<'EOF'
#!/bin/sh
# vm/appliance.sh --podman: load the archive, play the manifests, report when both
# containers run, power off.
fail() {
	echo "appliance: FAILED: $*"
	systemctl poweroff --force --force
	exit 1
}
podman load -q -i /var/lib/appliance/busybox.tar || fail "podman load"
for m in /etc/kubernetes/manifests/*.yaml; do
	podman kube play "$m" || fail "podman kube play $m"
done
# Infra containers are named POD_ID-infra.
while [ "$(podman ps --filter status=running --format '{{.Names}}' | grep -vc -- '-infra$')" -lt 2 ]; do
	sleep 0.2
done
up="$(cut -d' ' -f1 /proc/uptime)"
echo "appliance: all pods Ready at uptime $up s (podman: both containers running)"
podman ps -a
systemd-analyze 2>/dev/null | head -n1
sync
systemctl poweroff --force --force
EOF
	chmod 0755 "$root/usr/local/sbin/podman-appliance"
	cat >"$root/etc/systemd/system/podman-appliance.service" <<'EOF'
[Unit]
Description=vm/appliance.sh --podman: podman kube play the manifests
After=local-fs.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/podman-appliance
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
	chroot "$root" systemctl enable podman-appliance.service >/dev/null 2>&1
}

rm -rf "$OUT"
mkdir -p "$OUT"
root="$OUT/rootfs"

echo "::: appliance: debootstrap"
include="$(
	IFS=,
	echo "${PACKAGES[*]}"
)"
debootstrap --variant=minbase --include="$include" bookworm "$root" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 ||
	{
		tail -n 20 "$OUT/debootstrap.log" >&2
		die "debootstrap failed"
	}
echo appliance >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 appliance\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"

if [[ $runtime == hostlet ]]; then
	install_hostlet
else
	install_podman
fi

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
cp -L "$root/vmlinuz" "$OUT/vmlinuz"
cp -L "$root/initrd.img" "$OUT/initrd.img"
truncate -s 2G "$OUT/rootfs.img"
mkfs.ext4 -q -F -L appliance -d "$root" "$OUT/rootfs.img"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
chroot "$root" dpkg-query -W -f='${Package} ${Installed-Size}\n' | sort >"$OUT/packages.txt"
echo "::: appliance ($runtime): root filesystem $(du -sh "$root" | cut -f1), installed packages $(awk '{ s += $2 } END { print s }' "$OUT/packages.txt") KiB" | tee "$OUT/size.txt"
rm -rf "$root"

if [[ "${HOSTLET_APPLIANCE_BOOT:-1}" == 0 ]]; then
	echo "::: appliance: built $OUT/rootfs.img (HOSTLET_APPLIANCE_BOOT=0: not booted)"
	exit 0
fi
echo "::: appliance: boot (no network)"
: >"$OUT/console.log"
start=$(date +%s.%N)
qemu-system-x86_64 -accel "tcg,thread=multi" -cpu max -m 1024 -smp "$CPUS" \
	-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1" \
	-drive "file=$OUT/rootfs.img,format=raw,if=virtio,snapshot=on" \
	-display none -serial "file:$OUT/console.log" -monitor none \
	-nic none -no-reboot >"$OUT/qemu.log" 2>&1 &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true' EXIT
seen=""
while kill -0 "$qemu" 2>/dev/null; do
	if [[ -z "$seen" ]] && grep -q 'appliance: all pods Ready' "$OUT/console.log"; then
		seen="$(awk -v now="$(date +%s.%N)" -v start="$start" 'BEGIN { printf "%.1f", now - start }')"
	fi
	(($(date +%s) - ${start%.*} < TIMEOUT)) || {
		tail -n 30 "$OUT/console.log" >&2
		die "no 'all pods Ready' within ${TIMEOUT} s (console tail above)"
	}
	sleep 0.2
done
trap - EXIT
line="$(grep -a 'appliance: all pods Ready' "$OUT/console.log" | head -n1)" ||
	{
		tail -n 30 "$OUT/console.log" >&2
		die "qemu exited without every pod Ready (console tail above)"
	}
{
	echo "$line"
	echo "qemu start -> Ready line on the console (host clock): ${seen:-?} s"
	grep -a -A8 'appliance: all pods Ready' "$OUT/console.log" | tail -n +2
	cat "$OUT/size.txt"
} | tee "$OUT/report.txt"
