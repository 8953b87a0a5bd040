#!/usr/bin/env bash
# hostlet beside runc, podman kube play and skopeo: the one command behind BENCHMARKS.md.
#
#   sudo benches/run.sh                 # every row (about 10 minutes on 2 cores)
#   sudo benches/run.sh startup pull    # some sections: startup, scale, logflood, pull
#
# Installs the peers (Debian's podman, runc, skopeo, umoci), configures podman for this
# host in a private directory (nothing under /etc is changed), then runs
# `cargo bench --bench peers`. Knobs (environment): RUNS, RUNS_10, RUNS_100, IDLE_SECS, FLOOD_SECS,
# PULL_RUNS, PULL_MIB, BENCH_RUST_LOG, BENCH_SMAPS, BENCH_HOST_NETWORK (see benches/peers/main.rs
# and util.rs).
# The table is printed and written to target/bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

[[ $(id -u) -eq 0 ]] || { echo "benches/run.sh: run as root (containers are real)" >&2; exit 1; }

.ci/deps
need=()
for p in podman runc skopeo umoci time; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [[ ${#need[@]} -gt 0 ]]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${need[@]}"
fi

# podman as it works on this kind of host: runc, cgroupfs (no systemd), events to a file,
# and default ulimits without which its containers fail to start here.
conf="$PWD/target/bench/podman"
mkdir -p "$conf/run" "$conf/storage"
cat >"$conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$conf/events.log"
EOF
cat >"$conf/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$conf/run"
graphroot = "$conf/storage"
EOF
export CONTAINERS_CONF="$conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$conf/storage.conf"
export BENCH_PODMAN_RUNROOT="$conf/run"
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}' >/dev/null

exec cargo bench --bench peers -- "$@"
