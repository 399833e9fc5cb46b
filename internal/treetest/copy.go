package treetest

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Copy makes dst, which must not exist, a copy of the tree src: types,
// content, modes, owners, extended attributes, device numbers, hard links
// among the copied paths and modification times (to the nanosecond).
func Copy(src, dst string) error {
	type pending struct {
		path string
		st   unix.Stat_t
	}
	var done []pending
	links := map[[2]uint64]string{}

	err := filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, src)
		to := dst + rel
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		id := [2]uint64{uint64(st.Dev), st.Ino}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := links[id]; ok {
				return os.Link(first, to)
			}
			links[id] = to
		}
		if err := copyOne(p, to, &st); err != nil {
			return err
		}
		done = append(done, pending{to, st})
		return nil
	})
	if err != nil {
		return err
	}

	// Times last and deepest first: making an entry changes its parent's.
	for _, d := range slices.Backward(done) {
		ts := []unix.Timespec{d.st.Atim, d.st.Mtim}
		err := unix.UtimesNanoAt(unix.AT_FDCWD, d.path, ts, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			return err
		}
	}
	return nil
}

func copyOne(from, to string, st *unix.Stat_t) error {
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		err = os.Mkdir(to, 0o700)
	case unix.S_IFREG:
		err = copyContent(from, to)
	case unix.S_IFLNK:
		var target string
		if target, err = os.Readlink(from); err == nil {
			err = os.Symlink(target, to)
		}
	default:
		err = unix.Mknod(to, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return err
	}

	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears setuid and setgid.
		if err := unix.Fchmodat(unix.AT_FDCWD, to, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	x, err := Xattrs(from)
	if err != nil {
		return err
	}
	for name, v := range x {
		if err := unix.Lsetxattr(to, name, []byte(v), 0); err != nil {
			return err
		}
	}
	return nil
}

func copyContent(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Xattrs returns the extended attributes of p, without following it; nil
// when there are none.
func Xattrs(p string) (map[string]string, error) {
	n, err := unix.Llistxattr(p, nil)
	if err != nil || n == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, n)
	n, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		vn, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, vn)
		vn, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, err
		}
		out[name] = string(v[:vn])
	}
	return out, nil
}
