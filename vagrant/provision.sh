#!/usr/bin/env bash
# Provisions a Debian 12 machine (the Vagrant box, or the VM of vm/run.sh) to run hostlet
# as a systemd service with the demo pods:
#
#   1. installs the Debian packages hostlet and the demo need (only those missing, so it
#      runs offline when they are all there, as in vm/run.sh's image);
#   2. installs hostlet from its Debian package (packaging/README.md) with apt-get:
#      $HOSTLET_DEB if set, else the newest REPO/target/debian/hostlet_*.deb, else builds
#      one with packaging/build-deb.sh (installing Rust with rustup, cargo-deb and the
#      build packages when missing; needs network); a drop-in makes the packaged
#      hostlet.service trust the demo registry;
#   3. builds the busybox demo image (rootfs/build.sh) and serves it from a local registry
#      on 127.0.0.1:5055 as the systemd unit hostlet-registry.service;
#   4. copies testdata/demo/*.yaml into /etc/kubernetes/manifests, (re)starts hostlet and
#      waits until the hello pod logs and the web pod's httpd listens.
#
# Run as root. REPO is the parent of this script's directory (/vagrant under Vagrant).
# Environment: HOSTLET_DEB (package to install), PROVISION_WAIT (seconds to wait for the
# demo pods, default 180).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO=/var/lib/hostlet-demo
PORT=5055
MANIFESTS=/etc/kubernetes/manifests
WAIT="${PROVISION_WAIT:-180}"
PACKAGES=(
	busybox-static umoci skopeo docker-registry libseccomp2
	util-linux procps iproute2 ca-certificates
	containernetworking-plugins iptables # pod network (CNI)
)
BUILD_PACKAGES=(build-essential pkg-config libseccomp-dev curl ca-certificates)

say() { echo "provision: $*"; }
die() {
	echo "provision: $*" >&2
	exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root"

apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[[ ${#missing[@]} -gt 0 ]] || return 0
	say "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# newest_deb: the most recent REPO/target/debian/hostlet_*.deb, if any.
newest_deb() {
	local f newest=""
	for f in "$repo"/target/debian/hostlet_*.deb; do
		[[ -f "$f" ]] || continue
		[[ -n "$newest" && ! "$f" -nt "$newest" ]] || newest="$f"
	done
	echo "$newest"
}

install_package() {
	local deb="${HOSTLET_DEB:-}"
	[[ -n "$deb" ]] || deb="$(newest_deb)"
	if [[ -z "$deb" ]]; then
		apt_install "${BUILD_PACKAGES[@]}"
		export PATH="$HOME/.cargo/bin:$PATH"
		if ! command -v cargo >/dev/null; then
			say "installing Rust with rustup"
			curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
		fi
		command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
		# Build outside the synced folder: the host's target/ is not the VM's.
		export CARGO_TARGET_DIR=/var/cache/hostlet-build
		say "packaging/build-deb.sh (target dir $CARGO_TARGET_DIR)"
		deb="$("$repo/packaging/build-deb.sh")"
	fi
	[[ -f "$deb" ]] || die "$deb: no such package"
	# What an earlier provision.sh installed by hand would shadow the package's files.
	rm -f /usr/local/bin/hostlet /usr/local/bin/hostlet-monitor
	if grep -qs 'installed by vagrant/provision.sh' /etc/systemd/system/hostlet.service; then
		rm -f /etc/systemd/system/hostlet.service
	fi
	# The demo registry speaks plain HTTP: the one flag the config file cannot carry.
	mkdir -p /etc/systemd/system/hostlet.service.d
	cat >/etc/systemd/system/hostlet.service.d/demo-registry.conf <<EOF
# vagrant/provision.sh: trust the demo registry on 127.0.0.1:$PORT (plain HTTP).
[Service]
ExecStart=
ExecStart=/usr/bin/hostlet run --config /etc/hostlet/config.yaml --insecure-registry 127.0.0.1:$PORT
EOF
	# apt-get takes a local package by its path, not by a bare file name.
	[[ "$deb" == /* ]] || deb="$PWD/$deb"
	say "apt-get install $deb"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb"
}

# registry_ready: GET /v2/ answers 200 (bash /dev/tcp: no curl needed).
registry_ready() {
	(
		exec 8<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
		printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$PORT" >&8
		[[ "$(head -n1 <&8 || true)" == *" 200"* ]]
	) 2>/dev/null
}

demo_registry() {
	mkdir -p "$DEMO/registry/data"
	cat >"$DEMO/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DEMO/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
	cat >/etc/systemd/system/hostlet-registry.service <<EOF
# Demo registry for hostlet (vagrant/provision.sh): busybox image on 127.0.0.1:$PORT.
[Unit]
Description=hostlet demo registry on 127.0.0.1:$PORT
Before=hostlet.service

[Service]
ExecStart=/usr/bin/docker-registry serve $DEMO/registry/config.yml
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
	systemctl daemon-reload
	systemctl enable hostlet-registry.service
	systemctl restart hostlet-registry.service
	local i
	for ((i = 0; i < 300; i++)); do
		registry_ready && break
		sleep 0.1
	done
	registry_ready || {
		journalctl -u hostlet-registry.service -n 20 --no-pager >&2 || true
		die "registry did not answer on 127.0.0.1:$PORT within 30 s"
	}
	"$repo/rootfs/build.sh" "$DEMO/image"
	"$repo/rootfs/registry.sh" push "$DEMO/image/layout" "127.0.0.1:$PORT"
}

# hello_logged: the hello pod's container wrote to its CRI log (it echoes every 2 s).
hello_logged() {
	local f
	for f in /var/log/pods/default_hello-*/hello/*.log; do
		[[ -s "$f" ]] && return 0
	done
	return 1
}

# web_listens: busybox httpd of the web pod listens on port 8080 (0x1F90) in the pod's
# network namespace (/proc/PID/net/tcp{,6} show the namespace of PID).
web_listens() {
	local pid
	pid="$(pgrep -f -- 'httpd -f -vv -p 8080' | head -n1)" || return 1
	# busybox httpd listens on [::] where IPv6 exists: the socket is in tcp6 then.
	[[ -n "$pid" ]] && cat "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null | grep -qE ':1F90 0+:0000 0A'
}

apt_install "${PACKAGES[@]}"
install_package
demo_registry

# The package made the directory (root's, 0755) and enabled the unit.
cp "$repo"/testdata/demo/*.yaml "$MANIFESTS/"
systemctl daemon-reload
# restart, not start: a re-provision picks up the drop-in and a new package's agent;
# containers survive (KillMode=process) and the new agent adopts them.
systemctl restart hostlet.service
say "hostlet.service $(systemctl is-active hostlet.service); waiting (max ${WAIT} s) for the demo pods"

hello=0 web=0
for ((i = 0; i < WAIT; i++)); do
	[[ $hello -eq 1 ]] || ! hello_logged || hello=1
	[[ $web -eq 1 ]] || ! web_listens || web=1
	[[ $hello -eq 0 || $web -eq 0 ]] || break
	# A crash-looping agent will not bring the pods up: say so now.
	(($(systemctl show -p NRestarts --value hostlet.service) < 3)) || break
	((i % 15 != 14)) || say "still waiting: hello logging: $hello, web listening: $web"
	sleep 1
done
if [[ $hello -eq 0 || $web -eq 0 ]]; then
	journalctl -u hostlet.service -n 50 --no-pager >&2 || true
	die "demo pods not up after ${i} s: hello logging: $hello, web listening: $web; hostlet.service restarts: $(systemctl show -p NRestarts --value hostlet.service) (journal above)"
fi
say "demo pods running after ${i} s:"
hostlet pods || true
tail -n 2 /var/log/pods/default_hello-*/hello/*.log
say "done: sudo hostlet pods; systemctl status hostlet; journalctl -u hostlet; CRI logs in /var/log/pods"
