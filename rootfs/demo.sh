#!/usr/bin/env bash
# End-to-end demo: busybox image -> local registry -> hostlet running two static pods.
#
#   rootfs/demo.sh [start]   build (if needed), start registry + agent, show containers and logs
#   rootfs/demo.sh status    show containers and the tail of their logs again
#   rootfs/demo.sh stop      remove the manifests, wait for the containers to stop,
#                            then stop the agent and the registry (by PID files)
#
# Everything lives under /tmp/hostlet-demo (override with DEMO_DIR; HOSTLET_BIN overrides
# the binary, e.g. target/debug/hostlet). Needs root and
# `apt-get install busybox-static umoci skopeo docker-registry libseccomp-dev pkg-config`.
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
repo="$(cd "$(dirname "$0")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-/tmp/hostlet-demo}"
PORT=5055
REGISTRY="127.0.0.1:$PORT"
BIN="${HOSTLET_BIN:-$repo/target/release/hostlet}"
IMAGE_OUT="$repo/target/demo-image"
MANIFESTS="$DEMO_DIR/manifests"
ROOT="$DEMO_DIR/root"
LOGS="$DEMO_DIR/logs"
AGENT_PID="$DEMO_DIR/agent.pid"
AGENT_LOG="$DEMO_DIR/agent.log"

say() { echo "demo: $*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# PIDs belonging to the demo: processes mentioning the demo root dir (hostlet's
# per-container monitors) and their descendants (the containers); with "agent", also
# the agent and its descendants.
demo_pids() {
	local seeds=() agent="none" pid cmd
	alive "$AGENT_PID" && agent="$(cat "$AGENT_PID")"
	[[ "${1:-}" == agent && "$agent" != none ]] && seeds+=("$agent")
	for pid in /proc/[0-9]*; do
		pid="${pid#/proc/}"
		[[ "$pid" == "$$" || "$pid" == "$BASHPID" || "$pid" == "$agent" ]] && continue
		cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || continue
		[[ -n "$cmd" && "$cmd" != *demo.sh* ]] || continue
		[[ "$cmd" == *"$ROOT"* ]] && seeds+=("$pid")
	done
	[[ ${#seeds[@]} -gt 0 ]] || return 0
	# Close over descendants.
	ps -e -o pid=,ppid= | awk -v seeds="${seeds[*]}" '
		BEGIN { n = split(seeds, s, " "); for (i = 1; i <= n; i++) keep[s[i]] = 1 }
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			do {
				changed = 0
				for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
			} while (changed)
			for (p in keep) print p
		}' | sort -n
}

# Monitors and containers (not the agent).
container_pids() { demo_pids; }

# GET / from busybox httpd of the web pod through its hostPort, from the host (the 404
# is expected: nothing to serve; the request shows up in the web pod's log).
probe_web() {
	pgrep -f -- "monitor $ROOT/containers/.*-web-" >/dev/null || return 0
	echo
	say "GET http://127.0.0.1:18080/ (the web pod's hostPort):"
	wget -S -q -T 2 -t 1 -O /dev/null http://127.0.0.1:18080/ 2>&1 | head -n1 || true
	sleep 0.2
}

show() {
	local pids
	pids="$(demo_pids agent | paste -sd, -)"
	echo
	say "processes (agent, monitors, containers):"
	if [[ -n "$pids" ]]; then
		ps -o pid,ppid,rss,etime,args --forest -p "$pids" || true
	else
		echo "  (none)"
	fi
	probe_web
	echo
	say "CRI logs under $LOGS:"
	local f found=0
	while IFS= read -r f; do
		found=1
		echo "==> $f <=="
		tail -n 5 "$f"
	done < <(find "$LOGS" -type f -name '*.log' 2>/dev/null | sort)
	[[ $found -eq 1 ]] || echo "  (no log files yet; agent log: $AGENT_LOG)"
	echo
	say "agent log: tail -f $AGENT_LOG"
}

cmd_start() {
	[[ "$(id -u)" -eq 0 ]] || die "must run as root"
	"$repo/.ci/deps" # the Debian packages the demo needs; quick when present
	# An empty CNI config dir: the demo shows hostlet's built-in network (bridge hostlet0),
	# whatever /etc/cni/net.d holds.
	mkdir -p "$DEMO_DIR" "$MANIFESTS" "$ROOT" "$LOGS" "$DEMO_DIR/net.d"
	if [[ ! -x "$BIN" ]]; then
		command -v cargo >/dev/null || die "cargo not found; install Rust with rustup"
		say "building $BIN"
		(cd "$repo" && cargo build --release)
	fi
	"$repo/rootfs/build.sh" "$IMAGE_OUT"
	"$repo/rootfs/registry.sh" start "$DEMO_DIR/registry" "$PORT"
	"$repo/rootfs/registry.sh" push "$IMAGE_OUT/layout" "$REGISTRY"
	cp "$repo"/testdata/demo/*.yaml "$MANIFESTS/"
	say "manifests: $(cd "$MANIFESTS" && echo *.yaml)"
	if alive "$AGENT_PID"; then
		say "agent already running (pid $(cat "$AGENT_PID"))"
	else
		say "starting hostlet (log $AGENT_LOG)"
		RUST_LOG="${RUST_LOG:-info}" setsid "$BIN" run \
			--pod-manifest-path "$MANIFESTS" \
			--root-dir "$ROOT" \
			--pod-logs-dir "$LOGS" \
			--insecure-registry "$REGISTRY" \
			--cni-conf-dir "$DEMO_DIR/net.d" \
			>>"$AGENT_LOG" 2>&1 </dev/null &
		echo $! >"$AGENT_PID"
		sleep 1
		alive "$AGENT_PID" || {
			tail -n 30 "$AGENT_LOG" >&2
			die "hostlet exited at once; see $AGENT_LOG"
		}
	fi
	say "waiting 5 s for the pods to start"
	sleep 5
	show
	echo
	say "stop with: $0 stop"
}

cmd_stop() {
	local f i
	for f in "$repo"/testdata/demo/*.yaml; do
		rm -f "$MANIFESTS/$(basename "$f")"
	done
	say "manifests removed; waiting for the containers to stop (max 60 s)"
	if alive "$AGENT_PID"; then
		for ((i = 0; i < 120; i++)); do
			[[ -z "$(container_pids)" ]] && break
			sleep 0.5
		done
		if [[ -n "$(container_pids)" ]]; then
			say "still running after 60 s:"
			ps -o pid,ppid,args -p "$(container_pids | paste -sd, -)" || true
		fi
	else
		say "agent not running: containers (if any) are left alone"
	fi
	if alive "$AGENT_PID"; then
		local pid
		pid="$(cat "$AGENT_PID")"
		kill -TERM "$pid"
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && {
			say "agent did not exit in 10 s; SIGKILL"
			kill -KILL "$pid"
		}
		say "agent stopped (pid $pid)"
	fi
	rm -f "$AGENT_PID"
	"$repo/rootfs/registry.sh" stop "$DEMO_DIR/registry"
	say "done; state kept in $DEMO_DIR (rm -rf it to start afresh)"
}

case "${1:-start}" in
start) cmd_start ;;
status) show ;;
stop) cmd_stop ;;
*)
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
