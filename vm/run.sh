#!/usr/bin/env bash
# The integration suite inside a Debian 12 VM with systemd as PID 1 and the unified
# cgroup v2 hierarchy (README: "hostlet on a real host"). As root, from anywhere:
#
#   vm/run.sh [-- TEST_ARGS...]     e.g. vm/run.sh -- pod_runs_isolated
#
# Phases (each timed): image (vm/image.sh, cached), test binaries (cargo test --no-run on
# the host, and hostlet's .deb with packaging/build-deb.sh), boot + guest (qemu; inside,
# vm/guest.sh runs vagrant/provision.sh, which installs the .deb, then vm/package.sh, then
# every integration test binary from the host's target/ over 9p). Exit code 0 only when
# provisioning, the package checks and every test binary passed inside the VM.
#
# The repo is shared read-only at the same absolute path as on the host (the test
# binaries hold CARGO_MANIFEST_DIR and CARGO_BIN_EXE_hostlet); results land in
# HOSTLET_VM_OUT (default REPO/target/vm): guest.log, provision.log, test-NAME.log,
# results.txt, console.log. The binaries are copied to HOSTLET_VM_OUT/bin at build time;
# inside the VM the hostlet copy is bind-mounted at the binary's original path.
#
# Environment:
#   HOSTLET_VM_ACCEL    auto (default: KVM when /dev/kvm is usable and the CPU shows
#                       vmx/svm and a KVM boot reaches the payload, else tcg) | kvm | tcg
#   HOSTLET_VM_TIMEOUT  seconds for boot + guest (default 2400)
#   HOSTLET_VM_MEM      MB (default 3072); HOSTLET_VM_CPUS (default: host's, max 4)
#   HOSTLET_VM_CACHE    image cache (default /var/cache/hostlet-vm)
#   HOSTLET_VM_TESTS    test binaries to run inside (default "all": every tests/*.rs;
#                       or a list such as "spine systemd")
#   TEST_THREADS        --test-threads inside the VM (default 2)
#   HOSTLET_DRILLS      passed to the tests inside (`long`: the drills' long profile)
#   HOSTLET_TEST_TIME_SCALE  factor for the tests' wait timeouts inside the VM (default 3:
#                       software emulation is ~5x slower; tests/common wait_until)
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

ACCEL="${HOSTLET_VM_ACCEL:-auto}"
TIMEOUT="${HOSTLET_VM_TIMEOUT:-2400}"
MEM="${HOSTLET_VM_MEM:-3072}"
CPUS="${HOSTLET_VM_CPUS:-$(nproc)}"
((CPUS <= 4)) || CPUS=4
OUT="${HOSTLET_VM_OUT:-$repo/target/vm}"
VM_TESTS="${HOSTLET_VM_TESTS:-all}"
TEST_THREADS="${TEST_THREADS:-2}"
TIME_SCALE="${HOSTLET_TEST_TIME_SCALE:-3}"
KVM_BOOT_LIMIT=120

test_args=()
if [[ $# -gt 0 ]]; then
	[[ "$1" == "--" ]] || {
		sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2
		exit 2
	}
	shift
	test_args=("$@")
fi

die() {
	echo "vm/run.sh: $*" >&2
	exit 1
}

declare -A took=()
phase_start=0
phase() {
	phase_name="$1"
	phase_start=$(date +%s)
	echo "::: vm: $phase_name"
}
phase_end() {
	took[$phase_name]=$(($(date +%s) - phase_start))
	echo "::: vm: $phase_name: done in ${took[$phase_name]} s"
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap, qemu with 9p as root)"
command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found: run vm/deps.sh (installs qemu-system-x86 from bookworm-backports)"
command -v jq >/dev/null || die "jq not found: apt-get install jq"

phase "image"
img="$(vm/image.sh)"
echo "image: $img"
phase_end

phase "test binaries"
# Integration test binaries (target kind "test") and the hostlet binary they run.
cargo test --no-run --message-format=json 2>"$repo/target/vm-build.log" >"$repo/target/vm-build.json" || {
	tail -n 30 "$repo/target/vm-build.log" >&2
	die "cargo test --no-run failed (log above)"
}
rm -rf "$OUT"
mkdir -p "$OUT"
jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["test"] and .executable != null)
	| "\(.target.name) \(.executable)"' "$repo/target/vm-build.json" | sort >"$OUT/tests.all"
# The binaries that prove what only a systemd + cgroup v2 host shows (cgroup files and
# drivers, OOM through memory.events, adoption under systemd); "all" runs every one.
if [[ "$VM_TESTS" == all ]]; then
	cp "$OUT/tests.all" "$OUT/tests.list"
else
	awk -v want=" $VM_TESTS " 'index(want, " " $1 " ")' "$OUT/tests.all" >"$OUT/tests.list"
fi
# profile.test false: the binary itself, not its unit-test harness.
bin="$(jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["bin"] and .target.name == "hostlet"
	and .profile.test == false and .executable != null) | .executable' "$repo/target/vm-build.json" | tail -n1)"
[[ -s "$OUT/tests.list" && -x "$bin" ]] || die "no test binaries or hostlet binary in cargo's output"
# The agent runs hostlet-monitor from its own directory; cargo builds both there.
helper="$(dirname "$bin")/hostlet-monitor"
[[ -x "$helper" ]] || die "no $helper beside the hostlet binary in cargo's output"
while read -r name path; do
	[[ "$path" == "$repo"/* ]] || die "test binary $name is outside the repo ($path): the VM only sees the repo"
done <"$OUT/tests.list"
cut -d' ' -f1 "$OUT/tests.list" | paste -sd' ' | sed 's/^/tests: /'
# Snapshot the binaries: a later cargo build on the host (another terminal, another
# checkout sharing the target dir) must not swap them under the running VM.
mkdir -p "$OUT/bin"
cp "$bin" "$OUT/bin/hostlet"
cp "$helper" "$OUT/bin/hostlet-monitor"
while read -r name path; do
	cp "$path" "$OUT/bin/$name"
done <"$OUT/tests.list"
# The Debian package vagrant/provision.sh installs inside (a release build: the agent
# under systemd runs what users install; the test binaries run the debug hostlet).
deb="$(packaging/build-deb.sh 2>"$repo/target/vm-deb.log")" || {
	tail -n 30 "$repo/target/vm-deb.log" >&2
	die "packaging/build-deb.sh failed (log above)"
}
cp "$deb" "$OUT/hostlet.deb"
echo "package: $deb"
mkdir -p "$repo/target/tmp"
{
	printf 'HOSTLET_BIN=%q\n' "$bin"
	printf 'TEST_THREADS=%q\n' "$TEST_THREADS"
	printf 'TEST_ARGS=%q\n' "${test_args[*]}"
	printf 'HOSTLET_TEST_TIME_SCALE=%q\n' "$TIME_SCALE"
	printf 'HOSTLET_DRILLS=%q\n' "${HOSTLET_DRILLS:-}"
} >"$OUT/env"
phase_end

kvm_usable() {
	[[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

qemu_pid=""
cleanup() {
	if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# boot ACCEL LIMIT: runs the VM; LIMIT is how long it may take to reach the payload.
# Returns 0 when qemu exited after the payload ran, 3 when the payload never started.
boot() {
	local accel="$1" limit="$2" cpu=max accel_opt
	if [[ "$accel" == kvm ]]; then
		cpu=host
		accel_opt="kvm"
	else
		accel_opt="tcg,thread=multi"
	fi
	: >"$OUT/console.log"
	rm -f "$OUT/rc"
	qemu-system-x86_64 \
		-accel "$accel_opt" -cpu "$cpu" -m "$MEM" -smp "$CPUS" \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 hostlet.repo=$repo" \
		-drive "file=$img/rootfs.img,format=raw,if=virtio,snapshot=on" \
		-virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on" \
		-virtfs "local,path=$OUT,mount_tag=out,security_model=none" \
		-display none -serial "file:$OUT/console.log" -monitor none \
		-nic none -no-reboot >"$OUT/qemu.log" 2>&1 &
	qemu_pid=$!
	local start now booted=""
	start=$(date +%s)
	while kill -0 "$qemu_pid" 2>/dev/null; do
		now=$(date +%s)
		if [[ -z "$booted" ]] && grep -q 'hostlet-vm: payload started' "$OUT/console.log"; then
			booted=$((now - start))
			took["boot ($accel)"]=$booted
			echo "::: vm: booted with $accel in ${booted} s; running vm/guest.sh"
		fi
		if [[ -z "$booted" ]] && ((now - start > limit)); then
			kill "$qemu_pid" 2>/dev/null || true
			wait "$qemu_pid" 2>/dev/null || true
			echo "vm/run.sh: no payload start within ${limit} s with $accel; console tail:" >&2
			tail -n 15 "$OUT/console.log" >&2
			return 3
		fi
		if ((now - start > TIMEOUT)); then
			kill "$qemu_pid" 2>/dev/null || true
			wait "$qemu_pid" 2>/dev/null || true
			tail -n 30 "$OUT/console.log" >&2
			[[ ! -f "$OUT/guest.log" ]] || tail -n 30 "$OUT/guest.log" >&2
			die "VM did not finish within HOSTLET_VM_TIMEOUT=${TIMEOUT} s (console and guest log tails above)"
		fi
		sleep 1
	done
	wait "$qemu_pid" && true
	local code=$?
	if [[ -z "$booted" ]]; then
		cat "$OUT/qemu.log" >&2
		tail -n 30 "$OUT/console.log" >&2
		echo "vm/run.sh: qemu ($accel) exited with $code before the payload started (qemu output and console tail above)" >&2
		return 3
	fi
	return 0
}

# Under software emulation a boot normally reaches the payload in 15-25 s. On a loaded
# host it has been seen to hang for good (a halted vCPU never woken: RCU stall, then soft
# lockups in the console), so a boot gets 150 s and one more try before the run fails.
boot_tcg() {
	boot tcg 150 && return 0
	echo "vm/run.sh: tcg boot did not reach the payload; trying once more" >&2
	boot tcg 150 || die "qemu could not boot the VM with tcg twice (see above)"
}

phase "boot + guest"
case "$ACCEL" in
auto)
	if kvm_usable && boot kvm "$KVM_BOOT_LIMIT"; then
		:
	else
		kvm_usable && echo "vm/run.sh: KVM did not boot the VM; falling back to tcg" >&2
		boot_tcg
	fi
	;;
kvm) boot kvm 300 || die "qemu could not boot the VM with kvm (see above)" ;;
tcg) boot_tcg ;;
*) die "HOSTLET_VM_ACCEL must be auto, kvm or tcg, not '$ACCEL'" ;;
esac
phase_end

echo "--- guest.log"
cat "$OUT/guest.log" 2>/dev/null || echo "(no guest.log)"
rc="$(cat "$OUT/rc" 2>/dev/null || echo missing)"
if [[ "$rc" != 0 ]]; then
	while read -r name code _; do
		[[ "$code" == 0 ]] && continue
		echo "--- $name failed inside the VM (exit $code); end of $OUT/test-$name.log:"
		sed -n '/^failures:$/,$p' "$OUT/test-$name.log" | tail -n 150
	done <"$OUT/results.txt" 2>/dev/null || true
fi
echo "::: vm: times: $(for k in "${!took[@]}"; do printf '%s %s s; ' "$k" "${took[$k]}"; done)"
echo "::: vm: results in $OUT (results.txt: binary exit seconds)"
[[ "$rc" == 0 ]] || die "the suite failed inside the VM (guest exit code $rc)"
echo "::: vm: suite passed inside the VM"
