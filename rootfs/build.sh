#!/usr/bin/env bash
# Build, fully offline, an OCI image layout holding a busybox test image made
# from Debian's busybox-static.
#
#   rootfs/build.sh [--force] OUTDIR
#
# Creates OUTDIR/layout (OCI image layout) with tags:
#   test   Cmd=["sh"], no Entrypoint, WorkingDir=/, PATH set
#   entry  same rootfs, Entrypoint=["/bin/sh","-c"], Cmd=["echo entry-default"]
#
# Idempotent: if OUTDIR/layout was built from the same busybox binary by the
# same version of this script, nothing is done. Safe to run concurrently
# (flock on OUTDIR/.build.lock); the layout appears atomically (rename).
set -euo pipefail

# Bump when the image contents or config produced by this script change.
SCRIPT_VERSION=2
BUSYBOX=/usr/bin/busybox
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

die() {
	echo "rootfs/build.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 [--force] OUTDIR" >&2
	exit 2
}

force=0
outdir=""
for arg in "$@"; do
	case "$arg" in
	--force) force=1 ;;
	-h | --help) usage ;;
	-*) usage ;;
	*)
		[[ -z "$outdir" ]] || usage
		outdir="$arg"
		;;
	esac
done
[[ -n "$outdir" ]] || usage

need() { # need TOOL DEBIAN_PACKAGE
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found: install it with 'apt-get install $2'"
}
need umoci umoci
need flock util-linux
need sha256sum coreutils
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found: install it with 'apt-get install busybox-static'"
# The image must run without shared libraries: refuse a dynamically linked busybox
# (Debian's 'busybox' package installs /bin/busybox, 'busybox-static' /usr/bin/busybox).
if command -v file >/dev/null 2>&1 && file -L "$BUSYBOX" | grep -q 'dynamically linked'; then
	die "$BUSYBOX is dynamically linked: install it with 'apt-get install busybox-static'"
fi

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
layout="$outdir/layout"
stamp="$outdir/layout.stamp"

bb_version="$("$BUSYBOX" 2>&1 | head -n1 || true)"
bb_sum="$(sha256sum "$BUSYBOX" | cut -d' ' -f1)"
want_stamp="script=$SCRIPT_VERSION busybox=$bb_sum ($bb_version)"

# Serialize concurrent builders (e.g. two test binaries at once).
exec 9>"$outdir/.build.lock"
flock 9

if [[ $force -eq 0 && -d "$layout" && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; then
	echo "rootfs/build.sh: $layout is up to date ($bb_version)"
	exit 0
fi

# Map Debian architecture names to OCI (Go) ones.
case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
armv7l | armv6l) arch=arm ;;
i?86) arch=386 ;;
ppc64le) arch=ppc64le ;;
s390x) arch=s390x ;;
riscv64) arch=riscv64 ;;
*) die "unsupported architecture $(uname -m)" ;;
esac

work="$(mktemp -d "$outdir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
L="$work/layout"
bundle="$work/bundle"

umoci_unpack_flags=()
[[ "$(id -u)" -eq 0 ]] || umoci_unpack_flags=(--rootless)

umoci init --layout "$L"
umoci new --image "$L:test"
umoci unpack "${umoci_unpack_flags[@]}" --image "$L:test" "$bundle"

root="$bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev" \
	"$root/var" "$root/usr/bin" "$root/usr/sbin" "$root/sbin"
install -m 0755 "$BUSYBOX" "$root/bin/busybox"
n=0
while read -r applet; do
	[[ -n "$applet" && "$applet" != busybox ]] || continue
	ln -sf busybox "$root/bin/$applet"
	n=$((n + 1))
done < <("$BUSYBOX" --list)
((n > 100)) || die "'busybox --list' returned only $n applets"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
member:x:1500:1500:member of staff:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
member:x:1500:
staff:x:50:member
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chmod 0700 "$root/root"
mkdir -p "$root/tmp"
chmod 1777 "$root/tmp"

umoci repack --image "$L:test" --history.created_by "rootfs/build.sh: busybox-static + applet symlinks" "$bundle"
umoci config --no-history --image "$L:test" \
	--os linux --architecture "$arch" \
	--config.env "$PATH_ENV" \
	--config.cmd sh \
	--config.workingdir / \
	--author "hostlet rootfs/build.sh"

# Tag 'entry': same rootfs, ENTRYPOINT + CMD to exercise the merge rules.
umoci config --no-history --image "$L:test" --tag entry \
	--clear config.entrypoint --clear config.cmd \
	--config.entrypoint /bin/sh --config.entrypoint -c \
	--config.cmd "echo entry-default"

umoci gc --layout "$L"

# Publish atomically.
rm -rf "$layout" "$stamp"
mv "$L" "$layout"
printf '%s\n' "$want_stamp" >"$stamp"
echo "rootfs/build.sh: built $layout (tags: test, entry; $n applets; $bb_version; $arch)"
