// Package treetest makes and changes directory trees on disk for tests:
// declarative operations applied in order, a deep copy that keeps hard
// links and attributes, random trees and random changes of every kind a
// layer must carry. Package fstree describes and compares the results.
//
// Many operations need root (owners, devices, trusted.* attributes);
// CanMknod reports whether this process may make devices.
package treetest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Op is one change to a tree. Paths are slash-separated and relative to
// the tree's root.
type Op struct {
	desc string
	do   func(root string) error
}

func (o Op) String() string { return o.desc }

// Apply runs ops in order on the tree at root and stops at the first error.
func Apply(root string, ops ...Op) error {
	for _, op := range ops {
		if err := op.do(root); err != nil {
			return fmt.Errorf("%s: %w", op.desc, err)
		}
	}
	return nil
}

// MustApply runs ops on root and fails t at the first error.
func MustApply(t testing.TB, root string, ops ...Op) {
	t.Helper()
	if err := Apply(root, ops...); err != nil {
		t.Fatal(err)
	}
}

func host(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

func op(desc string, do func(root string) error) Op { return Op{desc: desc, do: do} }

// Dir makes the directory p, and its parents, with mode perm.
func Dir(p string, perm fs.FileMode) Op {
	return op("dir "+p, func(root string) error {
		if err := os.MkdirAll(host(root, p), 0o755); err != nil {
			return err
		}
		return unix.Fchmodat(unix.AT_FDCWD, host(root, p), uint32(perm&0o7777), 0)
	})
}

// File writes the regular file p with content and mode perm, making its
// parents. An existing file keeps its inode: it is truncated and written.
func File(p, content string, perm fs.FileMode) Op {
	return op("file "+p, func(root string) error {
		h := host(root, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(h, []byte(content), 0o600); err != nil {
			return err
		}
		return unix.Fchmodat(unix.AT_FDCWD, h, uint32(perm&0o7777), 0)
	})
}

// Rewrite replaces the content of the existing file p and puts its
// modification time back: a change only a content comparison can see when
// the size stays the same.
func Rewrite(p, content string) Op {
	return op("rewrite "+p, func(root string) error {
		h := host(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(h, &st); err != nil {
			return err
		}
		f, err := os.OpenFile(h, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		return unix.UtimesNanoAt(unix.AT_FDCWD, h, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// Symlink makes p a symlink to target, replacing a symlink already there.
func Symlink(p, target string) Op {
	return op("symlink "+p+" -> "+target, func(root string) error {
		h := host(root, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			return err
		}
		if fi, err := os.Lstat(h); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.Remove(h); err != nil {
				return err
			}
		}
		return os.Symlink(target, h)
	})
}

// Link makes p a hard link to the existing path target.
func Link(p, target string) Op {
	return op("link "+p+" => "+target, func(root string) error {
		h := host(root, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			return err
		}
		return os.Link(host(root, target), h)
	})
}

// CharDevice makes p a character device.
func CharDevice(p string, major, minor uint32, perm fs.FileMode) Op {
	return mknod("char device "+p, p, unix.S_IFCHR, major, minor, perm)
}

// BlockDevice makes p a block device.
func BlockDevice(p string, major, minor uint32, perm fs.FileMode) Op {
	return mknod("block device "+p, p, unix.S_IFBLK, major, minor, perm)
}

// FIFO makes p a named pipe.
func FIFO(p string, perm fs.FileMode) Op {
	return mknod("fifo "+p, p, unix.S_IFIFO, 0, 0, perm)
}

// Socket makes p a Unix socket node, as a bound socket leaves behind.
func Socket(p string) Op {
	return mknod("socket "+p, p, unix.S_IFSOCK, 0, 0, 0o755)
}

func mknod(desc, p string, typ uint32, major, minor uint32, perm fs.FileMode) Op {
	return op(desc, func(root string) error {
		h := host(root, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			return err
		}
		dev := int(unix.Mkdev(major, minor))
		if err := unix.Mknod(h, typ|uint32(perm&0o777), dev); err != nil {
			return err
		}
		return unix.Fchmodat(unix.AT_FDCWD, h, uint32(perm&0o7777), 0)
	})
}

// Xattr sets the extended attribute name of p, without following p.
func Xattr(p, name, value string) Op {
	return op("xattr "+p+" "+name, func(root string) error {
		return unix.Lsetxattr(host(root, p), name, []byte(value), 0)
	})
}

// RemoveXattr removes the extended attribute name of p.
func RemoveXattr(p, name string) Op {
	return op("remove xattr "+p+" "+name, func(root string) error {
		return unix.Lremovexattr(host(root, p), name)
	})
}

// Remove deletes p and everything below it.
func Remove(p string) Op {
	return op("remove "+p, func(root string) error {
		if _, err := os.Lstat(host(root, p)); err != nil {
			return err
		}
		return os.RemoveAll(host(root, p))
	})
}

// Rename moves from to to.
func Rename(from, to string) Op {
	return op("rename "+from+" -> "+to, func(root string) error {
		return os.Rename(host(root, from), host(root, to))
	})
}

// Chmod sets the permission bits of p, setuid, setgid and sticky included.
func Chmod(p string, mode uint32) Op {
	return op(fmt.Sprintf("chmod %s %04o", p, mode), func(root string) error {
		return unix.Fchmodat(unix.AT_FDCWD, host(root, p), mode&0o7777, 0)
	})
}

// Chown sets the owner of p, without following it.
func Chown(p string, uid, gid int) Op {
	return op(fmt.Sprintf("chown %s %d:%d", p, uid, gid), func(root string) error {
		return os.Lchown(host(root, p), uid, gid)
	})
}

// Chtimes sets the access and modification times of p, without following
// it.
func Chtimes(p string, mtime time.Time) Op {
	return op("chtimes "+p, func(root string) error {
		return setTime(host(root, p), mtime)
	})
}

// Times sets the times of every entry of the tree, the root included, to
// mtime; deepest first, so that setting a directory's time comes after the
// changes below it. Fixtures end with it to make their trees repeatable.
func Times(mtime time.Time) Op {
	return op("times "+mtime.String(), func(root string) error {
		var paths []string
		err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			paths = append(paths, p)
			return err
		})
		if err != nil {
			return err
		}
		for _, p := range slices.Backward(paths) {
			if err := setTime(p, mtime); err != nil {
				return err
			}
		}
		return nil
	})
}

func setTime(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts},
		unix.AT_SYMLINK_NOFOLLOW)
}

// CanMknod reports whether this process may make device nodes.
func CanMknod(t testing.TB) bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
	if errors.Is(err, unix.EPERM) {
		return false
	}
	return err == nil
}
