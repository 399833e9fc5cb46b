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

# Build: libzfs headers for cgo. Test bed: a Debian kernel with ZFS modules
# built by DKMS, QEMU to boot it, busybox for the guest's init. Tests: umoci,
# debootstrap and containerd as third-party peers.
pkgs=(
	build-essential pkg-config libzfslinux-dev
	linux-image-amd64 linux-headers-amd64 zfs-dkms zfsutils-linux
	qemu-system-x86 busybox-static cpio kmod zstd
	umoci skopeo debootstrap containerd runc tar gzip
)
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	if [[ ! -f /var/lib/zlayer-apt-updated ]]; then
		apt-get update -q
		touch /var/lib/zlayer-apt-updated
	fi
	# The zfs-dkms build for the running kernel fails when that kernel has no
	# headers (containers, custom kernels); the Debian kernel's build is what
	# the guest uses, so that failure is tolerated and checked below.
	echo "install-deps: installing ${missing[*]}" >&2
	apt-get install -y -q --no-install-recommends "${missing[@]}" || true
	dpkg --configure -a || true
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
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		echo "install-deps: package $p did not install" >&2
		exit 1
	fi
done
