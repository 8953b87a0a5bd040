#!/usr/bin/env bash
# Runs INSIDE the VM (vm/guest.sh), after vagrant/provision.sh installed hostlet from its
# .deb and the demo pods run: checks on a real systemd machine what the package promises
# (packaging/README.md): the unit enabled and active, the conffile, the directories'
# modes, the man pages and completions; `systemctl restart hostlet` keeps the
# containers; `apt-get remove hostlet` stops the agent and leaves the containers
# running; reinstalling adopts them.
#
#   vm/package.sh DEB
set -euo pipefail

deb="${1:?usage: vm/package.sh DEB}"
WAIT=120

fail() {
	echo "package: FAILED: $*" >&2
	journalctl -u hostlet.service -n 30 --no-pager >&2 || true
	exit 1
}
ok() { echo "package: ok: $*"; }

# wait_adopted SINCE: the agent started after SINCE logged that it adopted containers.
wait_adopted() {
	local i
	for ((i = 0; i < WAIT; i++)); do
		journalctl -u hostlet.service --no-pager -o cat --since "$1" |
			grep -q 'found containers of an earlier agent' && return 0
		sleep 1
	done
	return 1
}

web_pid() { pgrep -f -- 'httpd -f -vv -p 8080' | head -n1; }

[[ "$(systemctl is-enabled hostlet.service)" == enabled ]] || fail "hostlet.service is not enabled"
[[ "$(systemctl is-active hostlet.service)" == active ]] || fail "hostlet.service is not active"
unit="$(systemctl show -p FragmentPath --value hostlet.service)"
# /lib is /usr/lib on a merged-/usr Debian 12: systemd may name either.
[[ "$unit" == /lib/systemd/system/hostlet.service || "$unit" == /usr/lib/systemd/system/hostlet.service ]] ||
	fail "hostlet.service is not the package's unit: $unit"
ok "hostlet.service from the package, enabled and active"
dpkg-query -W -f='${Conffiles}\n' hostlet | grep -q ' /etc/hostlet/config.yaml ' ||
	fail "/etc/hostlet/config.yaml is not a conffile"
[[ "$(stat -c '%a %U' /var/lib/hostlet)" == "700 root" ]] || fail "/var/lib/hostlet: $(stat -c '%a %U' /var/lib/hostlet)"
[[ "$(stat -c '%a %U' /etc/kubernetes/manifests)" == "755 root" ]] ||
	fail "/etc/kubernetes/manifests: $(stat -c '%a %U' /etc/kubernetes/manifests)"
for f in /usr/share/man/man8/hostlet.8.gz /usr/share/man/man8/hostlet-run.8.gz \
	/usr/share/bash-completion/completions/hostlet /usr/share/zsh/vendor-completions/_hostlet \
	/usr/share/fish/vendor_completions.d/hostlet.fish /usr/lib/systemd/network/80-hostlet-veth.link; do
	[[ -s "$f" ]] || fail "$f missing"
done
ok "conffile, directory modes, man pages, completions, veth .link file"

web="$(web_pid)"
[[ -n "$web" ]] || fail "the demo web pod's httpd is not running"

since="$(date '+%Y-%m-%d %H:%M:%S')"
systemctl restart hostlet.service || fail "systemctl restart hostlet"
wait_adopted "$since" || fail "the restarted agent did not adopt the containers within ${WAIT} s"
[[ "$(web_pid)" == "$web" ]] || fail "httpd $web did not survive systemctl restart hostlet"
ok "systemctl restart hostlet: containers kept (httpd $web) and adopted"

sleep 1 # journalctl --since has a one-second resolution
since="$(date '+%Y-%m-%d %H:%M:%S')"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q hostlet >/dev/null || fail "apt-get remove hostlet"
state="$(systemctl is-active hostlet.service || true)"
[[ "$state" == inactive ]] || fail "hostlet.service is '$state' after apt-get remove"
[[ ! -e /usr/bin/hostlet ]] || fail "/usr/bin/hostlet still there after apt-get remove"
kill -0 "$web" 2>/dev/null || fail "httpd $web stopped with the package"
[[ -f /etc/hostlet/config.yaml && -d /var/lib/hostlet ]] || fail "remove took the config or /var/lib/hostlet"
ok "apt-get remove: agent stopped, container running, config and state kept"

DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" >/dev/null ||
	fail "apt-get install $deb"
[[ "$(systemctl is-active hostlet.service)" == active ]] || fail "hostlet.service not active after reinstall"
wait_adopted "$since" || fail "the reinstalled agent did not adopt the containers within ${WAIT} s"
[[ "$(web_pid)" == "$web" ]] || fail "httpd $web did not survive remove + reinstall"
ok "reinstall: agent started, containers adopted (httpd $web)"
