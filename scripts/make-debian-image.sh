#!/usr/bin/env bash
# make-debian-image.sh OUT: writes a real two-layer OCI image of Debian 12
# into the OCI layout folder OUT, as root, with debootstrap and umoci.
#
#	layer 1  a debootstrap --variant=minbase bookworm root file system
#	layer 2  changes on top of it: whole folders deleted (usr/share/man,
#	         usr/share/info, everything in usr/share/doc), a file renamed,
#	         hard links to a new file and to a lower one, a new file, a
#	         binary made setuid
#
# Tags: "layer1" is the image with layer 1 alone, "latest" has both.
#
# The root file system is fetched once per machine from the Debian mirror
# (ZLAYER_DEBIAN_MIRROR) and kept as a tar under ZLAYER_TESTBED_CACHE
# (default /var/cache/zlayer-testbed); the image built from it is kept
# there too, keyed by this script, and copied to OUT. A second run that
# finds OUT already holding that image does nothing. It needs the network
# only the first time, so run it on the host before the guest starts.
set -euo pipefail

prog=$(basename "$0")
die() {
	echo "$prog: $*" >&2
	exit 1
}

(($# == 1)) || {
	echo "usage: $prog OUT" >&2
	exit 2
}
out=$1
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and umoci keep owners)"
for tool in debootstrap umoci tar sha256sum flock; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done

cache=${ZLAYER_TESTBED_CACHE:-/var/cache/zlayer-testbed}
mirror=${ZLAYER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
rootfs=$cache/debian-$suite-minbase.tar
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
image=$cache/debian-$suite-oci-$key

mkdir -p "$cache"
exec 8>"$cache/debian-image.lock"
flock 8

tmp=$(mktemp -d -p "$cache" debian-work.XXXXXX)
# debootstrap mounts proc and sys inside its target while it runs: a
# failed run can leave them, and rm must never walk into them.
cleanup() {
	awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m" || true; done
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

# The root file system, once per machine.
if [[ ! -f $rootfs ]]; then
	echo "$prog: debootstrap --variant=minbase $suite from $mirror" >&2
	debootstrap --variant=minbase "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
		tail -n 30 "$tmp/debootstrap.log" >&2
		die "debootstrap failed"
	}
	# Log and cache files that change on every run carry nothing.
	rm -rf "$tmp/rootfs/var/cache/apt/archives"/*.deb "$tmp/rootfs/var/log"/*.log
	tar --numeric-owner --xattrs --xattrs-include='*' -C "$tmp/rootfs" \
		-cf "$rootfs.part" .
	mv "$rootfs.part" "$rootfs"
	rm -rf "$tmp/rootfs"
fi

# change_layer2 makes the second layer's changes in the unpacked root $1.
change_layer2() {
	local r=$1
	rm -rf "$r/usr/share/man" "$r/usr/share/info"
	find "$r/usr/share/doc" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
	mv "$r/etc/motd" "$r/etc/motd.dist"
	printf 'zlayer test image, layer 2\n' >"$r/etc/zlayer-release"
	mkdir -p "$r/usr/local/lib/zlayer"
	printf '#!/bin/sh\necho zlayer\n' >"$r/usr/local/bin/zlayer-hello"
	chmod 0755 "$r/usr/local/bin/zlayer-hello"
	ln "$r/usr/local/bin/zlayer-hello" "$r/usr/local/lib/zlayer/hello"
	ln "$r/usr/bin/tac" "$r/usr/local/bin/tac-link"
	chmod u+s "$r/usr/bin/tac"
	touch -d '2024-01-02 03:04:05' "$r/usr/local/bin/zlayer-hello" "$r/etc/zlayer-release"
}

if [[ ! -f $image/index.json ]]; then
	echo "$prog: building the OCI image with umoci" >&2
	rm -rf "$image"
	oci=$tmp/oci
	bundle=$tmp/bundle
	umoci init --layout "$oci"
	umoci new --image "$oci:base"
	umoci unpack --image "$oci:base" "$bundle"
	tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs" -C "$bundle/rootfs"
	# --refresh-bundle makes the next repack diff against this one.
	umoci repack --refresh-bundle --image "$oci:layer1" "$bundle"
	change_layer2 "$bundle/rootfs"
	umoci repack --image "$oci:latest" "$bundle"
	umoci rm --image "$oci:base"
	umoci gc --layout "$oci"
	mv "$oci" "$image"
	# Images of earlier versions of this script are not needed any more.
	find "$cache" -maxdepth 1 -name "debian-$suite-oci-*" ! -path "$image" -exec rm -rf {} +
fi

# OUT: a copy (hard links where the file system allows) unless it holds
# the same image already.
if [[ -f $out/index.json ]] && cmp -s "$out/index.json" "$image/index.json"; then
	exit 0
fi
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -al "$image" "$out" 2>/dev/null || {
	rm -rf "$out"
	cp -a "$image" "$out"
}
echo "$prog: wrote $out" >&2
