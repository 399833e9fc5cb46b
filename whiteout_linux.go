//go:build linux

package zlayer

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// OverlayOpaqueXattr marks an overlayfs directory opaque when set to "y".
// Overlay mounts with the userxattr option use user.overlay.opaque
// instead, which the converters here do not handle.
const OverlayOpaqueXattr = "trusted.overlay.opaque"

// OverlayToOCI rewrites, in place, an overlayfs upper directory into the
// OCI layer form, ready to be archived as a layer tar. A whiteout (a
// character device 0:0) named NAME becomes an empty regular file
// ".wh.NAME" with the device's owner, mode and times; a directory whose
// OverlayOpaqueXattr is "y" loses it and gains an empty ".wh..wh..opq"
// file, owned as the directory is. An upper directory that already holds
// a name starting with ".wh." cannot be told apart from the markers, and
// is refused with an error wrapping [ErrInvalid]. Symbolic links are never
// followed; each directory's names are read whole before it is changed.
// The conversion is not atomic: on error the tree is partly converted.
func OverlayToOCI(ctx context.Context, dir string) error {
	return convertTree(ctx, "convert overlay to oci", dir, overlayDirToOCI)
}

// OCIToOverlay is the reverse of [OverlayToOCI]: it rewrites, in place, a
// directory holding a layer extracted with its whiteout files kept into
// the overlayfs upper form. ".wh.NAME" becomes a character device 0:0
// named NAME; where the layer also holds NAME, a directory is marked
// opaque instead (the layer replaced it) and anything else is kept as it
// is. ".wh..wh..opq" is removed and its directory marked opaque. A
// malformed whiteout name is refused with an error wrapping [ErrInvalid].
func OCIToOverlay(ctx context.Context, dir string) error {
	return convertTree(ctx, "convert oci to overlay", dir, ociDirToOverlay)
}

// convertTree runs conv on every directory of the tree at dir, parents
// before children, each given an open descriptor and its names.
func convertTree(ctx context.Context, op, dir string,
	conv func(fd int, rel string, names []string) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return opErr(op, dir, err)
	}
	return convertDir(ctx, op, fd, "", conv)
}

// convertDir converts the directory fd, named rel, then its
// subdirectories. It closes fd.
func convertDir(ctx context.Context, op string, fd int, rel string,
	conv func(fd int, rel string, names []string) error) error {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if err := ctx.Err(); err != nil {
		return opErr(op, rel, err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil && err != io.EOF {
		return opErr(op, rel, err)
	}

	// Adding and removing markers would move the directory's times,
	// which the layer records.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return opErr(op, rel, err)
	}
	if err := conv(fd, rel, names); err != nil {
		return opErr(op, rel, err)
	}
	if err := futimens(fd, [2]unix.Timespec{st.Atim, st.Mtim}); err != nil {
		return opErr(op, rel, err)
	}
	names, err = readNames(fd)
	if err != nil {
		return opErr(op, rel, err)
	}
	for _, n := range names {
		cfd, err := unix.Openat(fd, n,
			unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue
		}
		if err != nil {
			return opErr(op, joinName(rel, n), err)
		}
		if err := convertDir(ctx, op, cfd, joinName(rel, n), conv); err != nil {
			return err
		}
	}
	return nil
}

// readNames lists the directory fd again, from its start, through a
// descriptor of its own.
func readNames(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

func overlayDirToOCI(fd int, rel string, names []string) error {
	for _, n := range names {
		if strings.HasPrefix(n, WhiteoutPrefix) {
			return fmt.Errorf("%q cannot be told from a whiteout: %w",
				joinName(rel, n), ErrInvalid)
		}
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			continue
		}
		if err := makeMarker(fd, WhiteoutPrefix+n, &st); err != nil {
			return err
		}
		if err := unix.Unlinkat(fd, n, 0); err != nil {
			return fmt.Errorf("remove whiteout device %q: %w", n, err)
		}
	}

	v := make([]byte, 2)
	sz, err := unix.Fgetxattr(fd, OverlayOpaqueXattr, v)
	switch {
	case err == unix.ENODATA || err == unix.ENOTSUP || err == unix.ERANGE:
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", OverlayOpaqueXattr, err)
	case string(v[:sz]) != "y":
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	st.Mode = unix.S_IFREG | 0o644
	if err := makeMarker(fd, WhiteoutOpaque, &st); err != nil {
		return err
	}
	if err := unix.Fremovexattr(fd, OverlayOpaqueXattr); err != nil {
		return fmt.Errorf("remove %s: %w", OverlayOpaqueXattr, err)
	}
	return nil
}

// makeMarker creates the empty file name in fd with like's owner, mode
// and times.
func makeMarker(fd int, name string, like *unix.Stat_t) error {
	mfd, err := unix.Openat(fd, name,
		unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	defer unix.Close(mfd)
	if err := unix.Fchown(mfd, int(like.Uid), int(like.Gid)); err != nil {
		return fmt.Errorf("chown %q: %w", name, err)
	}
	if err := unix.Fchmod(mfd, like.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %q: %w", name, err)
	}
	if err := futimens(mfd, [2]unix.Timespec{like.Atim, like.Mtim}); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	return nil
}

func ociDirToOverlay(fd int, rel string, names []string) error {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	for _, n := range names {
		kind, hidden, err := ParseWhiteout(n)
		if err != nil {
			return err
		}
		switch kind {
		case WhiteoutOpaqueDir:
			err = setOpaque(fd, ".")
		case WhiteoutFile:
			err = ociWhiteoutToOverlay(fd, n, hidden, have[hidden])
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%q: %w", joinName(rel, n), err)
		}
		if err := unix.Unlinkat(fd, n, 0); err != nil {
			return fmt.Errorf("remove %q: %w", joinName(rel, n), err)
		}
	}
	return nil
}

// ociWhiteoutToOverlay turns the marker n, deleting hidden, into its
// overlay form.
func ociWhiteoutToOverlay(fd int, n, hidden string, exists bool) error {
	if exists {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, hidden, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return setOpaque(fd, hidden)
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := unix.Mknodat(fd, hidden, unix.S_IFCHR|(st.Mode&0o7777), 0); err != nil {
		return fmt.Errorf("mknod whiteout: %w", err)
	}
	err := unix.Fchownat(fd, hidden, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("chown whiteout: %w", err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(fd, hidden, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// setOpaque marks the directory name in fd opaque.
func setOpaque(fd int, name string) error {
	dfd, err := unix.Openat(fd, name,
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Fsetxattr(dfd, OverlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", OverlayOpaqueXattr, err)
	}
	return nil
}
