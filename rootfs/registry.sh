#!/usr/bin/env bash
# A throwaway local registry (Debian's docker-registry) for demos and tests.
#
#   rootfs/registry.sh start DIR PORT       start on 127.0.0.1:PORT, storage under DIR
#   rootfs/registry.sh push LAYOUT HOSTPORT  push tags test and entry of the OCI layout
#                                            to HOSTPORT/library/busybox:<tag>
#   rootfs/registry.sh stop DIR             stop the registry started with DIR (PID file)
set -euo pipefail

TAGS=(test entry)

die() {
	echo "rootfs/registry.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

need() { # need TOOL DEBIAN_PACKAGE
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found: install it with 'apt-get install $2'"
}

# probe PORT: true when GET /v2/ answers 200 (bash /dev/tcp, no curl needed).
probe() {
	local port="$1"
	(
		exec 8<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&8
		status="$(head -n1 <&8 || true)"
		[[ "$status" == *" 200"* ]]
	) 2>/dev/null
}

alive() { # alive PIDFILE
	[[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

cmd_start() {
	[[ $# -eq 2 ]] || usage
	local dir="$1" port="$2"
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port '$port'"
	need docker-registry docker-registry
	mkdir -p "$dir/data"
	dir="$(cd "$dir" && pwd)"
	local pidfile="$dir/registry.pid" log="$dir/registry.log" config="$dir/config.yml"
	if alive "$pidfile"; then
		probe "$port" || die "registry already running (pid $(cat "$pidfile")) but 127.0.0.1:$port does not answer"
		echo "rootfs/registry.sh: registry already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
		return 0
	fi
	if probe "$port"; then
		die "something else already answers on 127.0.0.1:$port"
	fi
	cat >"$config" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
	# setsid: the registry must not die with the caller's terminal/process group.
	setsid docker-registry serve "$config" >>"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	local i
	for ((i = 0; i < 100; i++)); do
		if probe "$port"; then
			echo "rootfs/registry.sh: registry on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"
			return 0
		fi
		alive "$pidfile" || {
			tail -n 20 "$log" >&2 || true
			die "docker-registry exited; see $log"
		}
		sleep 0.1
	done
	tail -n 20 "$log" >&2 || true
	die "registry did not answer on 127.0.0.1:$port within 10 s; see $log"
}

cmd_push() {
	[[ $# -eq 2 ]] || usage
	local layout="$1" hostport="$2" tag
	need skopeo skopeo
	[[ -f "$layout/index.json" ]] || die "$layout is not an OCI layout (run rootfs/build.sh first)"
	for tag in "${TAGS[@]}"; do
		skopeo copy --quiet --dest-tls-verify=false \
			"oci:$layout:$tag" "docker://$hostport/library/busybox:$tag"
		echo "rootfs/registry.sh: pushed $hostport/library/busybox:$tag"
	done
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	local pidfile="$1/registry.pid" pid i
	if ! [[ -f "$pidfile" ]]; then
		echo "rootfs/registry.sh: no $pidfile; nothing to stop"
		return 0
	fi
	pid="$(cat "$pidfile")"
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		echo "rootfs/registry.sh: stopped registry (pid $pid)"
	fi
	rm -f "$pidfile"
}

[[ $# -ge 1 ]] || usage
verb="$1"
shift
case "$verb" in
start) cmd_start "$@" ;;
push) cmd_push "$@" ;;
stop) cmd_stop "$@" ;;
*) usage ;;
esac
