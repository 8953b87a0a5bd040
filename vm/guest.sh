#!/usr/bin/env bash
# Runs INSIDE the VM (started by the payload unit vm/image.sh bakes in), as root:
# reports the environment, runs vagrant/provision.sh (the script Vagrant runs; it installs
# hostlet's .deb), vm/package.sh (what the package promises), then each integration
# test binary listed in /mnt/out/tests.list (copies in /mnt/out/bin). Results
# go to /mnt/out (the host's out dir): test-NAME.log per binary, results.txt
# ("NAME EXIT_CODE SECONDS" per binary).
# Exit code: 0 when provisioning, the package checks and every test binary passed.
set -uo pipefail

OUT=/mnt/out
repo="${HOSTLET_VM_REPO:?set by the payload unit}"
# shellcheck source=/dev/null
. "$OUT/env" # HOSTLET_BIN, TEST_THREADS, TEST_ARGS, HOSTLET_TEST_TIME_SCALE, HOSTLET_DRILLS (vm/run.sh)
export HOSTLET_TEST_TIME_SCALE
if [[ -n "${HOSTLET_DRILLS:-}" ]]; then export HOSTLET_DRILLS; fi
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

t0=$(date +%s)
phase_start=$t0
phase() {
	phase_start=$(date +%s)
	echo "::: guest: $1 (t+$((phase_start - t0)) s)"
}
phase_end() { echo "::: guest: done in $(($(date +%s) - phase_start)) s"; }

phase "environment"
uname -r
echo "pid 1: $(cat /proc/1/comm), $(systemctl --version | head -n1)"
echo "system state: $(systemctl is-system-running)"
echo "/sys/fs/cgroup: $(stat -f -c %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "cpus: $(nproc), memory: $(free -m | awk '/^Mem:/ {print $2}') MB"
# The repo share is read-only; the tests write CARGO_TARGET_TMPDIR (REPO/target/tmp):
# give them a directory on the VM's own disk at that path.
mkdir -p /var/tmp/hostlet-target-tmp
mount --bind /var/tmp/hostlet-target-tmp "$repo/target/tmp"
# The binaries vm/run.sh snapshotted, on the VM's disk (faster than 9p); hostlet at its
# original path, which the test binaries hold (CARGO_BIN_EXE_hostlet), and hostlet-monitor
# beside it, where the agent looks for it.
BIN=/var/tmp/hostlet-bin
mkdir -p "$BIN"
cp "$OUT"/bin/* "$BIN/"
mount --bind "$BIN/hostlet" "$HOSTLET_BIN"
mount --bind "$BIN/hostlet-monitor" "$(dirname "$HOSTLET_BIN")/hostlet-monitor"

cp "$OUT/hostlet.deb" /var/tmp/hostlet.deb
phase_end

rc=0
phase "vagrant/provision.sh"
HOSTLET_DEB=/var/tmp/hostlet.deb timeout -k 10 400 "$repo/vagrant/provision.sh" >"$OUT/provision.log" 2>&1
code=$?
if [[ $code -eq 0 ]]; then
	tail -n 8 "$OUT/provision.log"
	echo "provision: ok"
else
	rc=1
	tail -n 40 "$OUT/provision.log"
	echo "provision: FAILED (exit $code)"
fi
systemctl --no-pager status hostlet.service 2>&1 | head -n 5
phase_end

phase "vm/package.sh (what the .deb promises)"
if [[ $rc -eq 0 ]]; then
	timeout -k 10 400 "$repo/vm/package.sh" /var/tmp/hostlet.deb >"$OUT/package.log" 2>&1
	code=$?
	cat "$OUT/package.log"
	if [[ $code -ne 0 ]]; then
		rc=1
		echo "package: FAILED (exit $code)"
	fi
else
	echo "package: not checked (provisioning failed)"
fi
phase_end

# The packaged agent shares the default cgroup root with the tests' agents (they get no
# root of their own under systemd, tests/common), and its orphan sweep would take their
# pod slices for its own orphans. Its demo pods keep running (KillMode=process).
systemctl stop hostlet.service || true

: >"$OUT/results.txt"
while read -r name _; do
	[[ -n "$name" ]] || continue
	bin="$BIN/$name"
	phase "test binary $name"
	start=$(date +%s)
	# Like cargo test: the working directory is the package root.
	# shellcheck disable=SC2086 # TEST_ARGS is a list of words
	(cd "$repo" && "$bin" --test-threads="$TEST_THREADS" $TEST_ARGS) >"$OUT/test-$name.log" 2>&1
	code=$?
	echo "$name $code $(($(date +%s) - start))" >>"$OUT/results.txt"
	grep -E '^test .* \.\.\. |^test result:' "$OUT/test-$name.log" || true
	[[ $code -eq 0 ]] || rc=1
	phase_end
done <"$OUT/tests.list"

echo "::: guest: total $(($(date +%s) - t0)) s, exit $rc"
exit $rc
