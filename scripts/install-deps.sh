#!/usr/bin/env bash
# Installs what zlayer's build, tests and test bed need on Debian 12, as root.
# Safe to run again: it adds only what is missing.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: run as root" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# ZFS lives in Debian's contrib component, which stock sources leave out.
sources=/etc/apt/sources.list.d/zlayer-contrib.sources
if [[ ! -f $sources ]]; then
	cat >"$sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	rm -f /var/lib/zlayer-apt-updated
fi

# Build: libzfs and Nettle headers for cgo. Test bed: a Debian kernel with
# ZFS modules built by DKMS, QEMU to boot it, busybox for the guest's init.
# Tests: umoci, debootstrap and containerd as third-party peers.
pkgs=(
	build-essential pkg-config libzfslinux-dev nettle-dev
	linux-image-amd64 linux-headers-amd64 zfs-dkms zfsutils-linux
	qemu-system-x86 busybox-static cpio kmod zstd xz-utils util-linux e2fsprogs
	umoci skopeo debootstrap containerd runc tar gzip
)
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
missing() {
	local p
	for p in "${pkgs[@]}"; do
		installed "$p" || echo "$p"
	done
}

# The zfs-dkms build for the running kernel fails when that kernel has no
# headers (containers, custom kernels); the Debian kernel's build is what
# the guest uses, so that failure is tolerated and checked below.
install_missing() {
	local want
	mapfile -t want < <(missing)
	((${#want[@]})) || return 0
	echo "install-deps: installing ${want[*]}" >&2
	apt-get install -y -q --no-install-recommends "${want[@]}" || true
	dpkg --configure -a || true
}

if [[ -n $(missing) ]]; then
	if [[ ! -f /var/lib/zlayer-apt-updated ]]; then
		apt-get update -q
		touch /var/lib/zlayer-apt-updated
	fi
	install_missing
	# Package lists from an earlier run may have gone stale since.
	if [[ -n $(missing) ]]; then
		apt-get update -q
		install_missing
	fi
fi

# Every kernel image installed must have its ZFS module built.
found=0
for k in /boot/vmlinuz-*; do
	v=${k#/boot/vmlinuz-}
	[[ -d /usr/src/linux-headers-$v ]] || continue
	if ! compgen -G "/lib/modules/$v/updates/dkms/zfs.ko*" >/dev/null; then
		zv=$(dpkg-query -W -f='${Version}' zfs-dkms | sed 's/-.*//')
		dkms install "zfs/$zv" -k "$v" >&2
	fi
	found=1
done
if ((found == 0)); then
	echo "install-deps: no Debian kernel with headers under /boot" >&2
	exit 1
fi
not_there=$(missing | tr '\n' ' ')
if [[ -n $not_there ]]; then
	echo "install-deps: packages did not install: $not_there" >&2
	exit 1
fi
