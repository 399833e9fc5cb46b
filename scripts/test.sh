#!/usr/bin/env bash
# The project's test command, run as root from anywhere in the repository:
#
#	sudo scripts/test.sh [GO TEST ARGS...]
#
# It installs what is missing (scripts/install-deps.sh), prepares the test
# bed's kernel and initrd, and runs go test with every test binary inside a
# QEMU guest that has ZFS (scripts/guest-exec); where /dev/zfs exists, the
# binaries run here instead. With no arguments it tests ./... with -race.
# Its exit status is go test's.
set -euo pipefail

die() {
	echo "test.sh: $*" >&2
	exit 1
}

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
[[ $(id -u) -eq 0 ]] || die "run as root: sudo scripts/test.sh"

scripts/install-deps.sh

if ! command -v go >/dev/null; then
	export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null || die "no go command in PATH or /usr/local/go/bin"

# One test binary at a time: on two cores a second guest gained about a
# tenth in time, and a single one keeps -v output streaming.
flags=(-count=1 -p 1 -timeout 45m)
default=0
if (($# == 0)); then
	default=1
	# The Debian image test unpacks a real root filesystem several times;
	# under the race detector it alone outlasts the time limit in the
	# emulated guest, so it runs once more below without -race.
	set -- -race -skip '^TestDebianImage$' ./...
fi

# The main job's test compares against a real Debian image, which needs the
# network to build; the guest has none, so it is built here first.
scripts/make-debian-image.sh "$PWD/testdata/mainjob/debian-image" >&2

exec_flags=()
if [[ -e /dev/zfs ]]; then
	echo "test.sh: /dev/zfs exists: tests run on this machine" >&2
else
	boot=$(scripts/testbed/build-initrd) || die "cannot prepare the test bed's kernel and initrd"
	echo "test.sh: test binaries run in a QEMU guest booting $(head -n1 <<<"$boot")" >&2
	exec_flags=(-exec "$PWD/scripts/guest-exec")
fi

# The library's module, then the containerd snapshotter's, which is a
# module of its own so that containerd stays out of the library's graph.
status=0
go test "${flags[@]}" "${exec_flags[@]}" "$@" || status=1
if ((default)); then
	go test "${flags[@]}" "${exec_flags[@]}" -run '^TestDebianImage$' ./examples/mainjob ||
		status=1
	(cd examples/containerd-snapshotter &&
		go test "${flags[@]}" "${exec_flags[@]}" ./...) || status=1
fi
exit $status
