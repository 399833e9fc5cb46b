#!/usr/bin/env bash
# Runs the library's benchmarks on real ZFS, as root from anywhere in the
# repository:
#
#	sudo scripts/bench.sh [GO TEST ARGS...]
#
# The benchmark binary runs in one QEMU guest of the test bed (or here,
# where /dev/zfs exists), so the contenders of a benchmark share one
# machine, one kernel and one pool. With no arguments it runs every
# benchmark of the root package once. The guest gets 12 GiB of memory
# (ZLAYER_GUEST_MEM) and five hours (ZLAYER_GUEST_TIMEOUT); set
# ZLAYER_BENCH_LARGE=1 for the layers of about 1 GiB and 200,000 files.
# Run scripts/test.sh once first: it installs what the test bed needs.
set -euo pipefail

die() {
	echo "bench.sh: $*" >&2
	exit 1
}

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
[[ $(id -u) -eq 0 ]] || die "run as root: sudo scripts/bench.sh"
if ! command -v go >/dev/null; then
	export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null || die "no go command in PATH or /usr/local/go/bin"

(($# > 0)) || set -- -bench . -benchtime 1x .
export ZLAYER_GUEST_MEM=${ZLAYER_GUEST_MEM:-12G}
export ZLAYER_GUEST_TIMEOUT=${ZLAYER_GUEST_TIMEOUT:-18000}

exec_flags=()
if [[ ! -e /dev/zfs ]]; then
	scripts/testbed/build-initrd >/dev/null || die "cannot prepare the test bed's kernel and initrd"
	exec_flags=(-exec "$PWD/scripts/guest-exec")
fi
exec go test -count=1 -run '^$' -timeout 300m "${exec_flags[@]}" "$@"
