// Package fstree snapshots a directory tree entry by entry and compares
// snapshots, for tests that check what an operation left on disk: applied
// layers, diffs, round trips. Builders make the expected trees.
package fstree

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Type is the kind of a file-system object.
type Type string

// The types a tree can hold.
const (
	TypeDir     Type = "dir"
	TypeFile    Type = "file"
	TypeSymlink Type = "symlink"
	TypeChar    Type = "char"
	TypeBlock   Type = "block"
	TypeFifo    Type = "fifo"
	TypeSocket  Type = "socket"
)

// Entry is one object of a tree, with what a layer must reproduce.
type Entry struct {
	Path   string // slash-separated, relative to the root; "." is the root
	Type   Type
	Mode   uint32 // permission bits with setuid, setgid and sticky
	UID    int
	GID    int
	Size   int64  // regular files only
	SHA256 string // hex digest of a regular file's content
	Link   string // a symbolic link's target
	Xattrs map[string]string
	Mtime  time.Time
	Major  uint32 // devices only
	Minor  uint32

	// LinkGroup is, for a non-directory with more than one link, the
	// first path of the tree in lexical order that shares its inode.
	LinkGroup string

	// Blocks is the space allocated, in 512-byte units as st_blocks
	// counts. Diff ignores it by default, as it depends on the file
	// system; sparse-file tests read it.
	Blocks int64
}

// Tree maps a path to its entry.
type Tree map[string]Entry

// Epoch is the modification time the builders give by default. The
// tartest package uses the same instant, so a layer built with defaults
// maps onto a tree built with defaults.
var Epoch = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// Snapshot reads the tree at root without following symbolic links. It
// reads the content of regular files only; devices and FIFOs are never
// opened.
func Snapshot(root string) (Tree, error) {
	t := make(Tree)
	type inode struct{ dev, ino uint64 }
	groups := make(map[inode]string)
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, st, err := stat(p, filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if e.Type != TypeDir && st.Nlink > 1 {
			id := inode{uint64(st.Dev), st.Ino}
			if _, ok := groups[id]; !ok {
				groups[id] = e.Path
			}
			e.LinkGroup = groups[id]
		}
		t[e.Path] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", root, err)
	}
	return t, nil
}

func stat(p, rel string) (Entry, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return Entry{}, nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := Entry{
		Path:   rel,
		Mode:   st.Mode & 0o7777,
		UID:    int(st.Uid),
		GID:    int(st.Gid),
		Mtime:  time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
		Blocks: st.Blocks,
	}
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		e.Type = TypeDir
	case unix.S_IFREG:
		e.Type, e.Size = TypeFile, st.Size
		e.SHA256, err = hashFile(p)
	case unix.S_IFLNK:
		e.Type = TypeSymlink
		e.Link, err = os.Readlink(p)
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Type = TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			e.Type = TypeBlock
		}
		e.Major, e.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	case unix.S_IFIFO:
		e.Type = TypeFifo
	case unix.S_IFSOCK:
		e.Type = TypeSocket
	}
	if err == nil {
		e.Xattrs, err = xattrs(p)
	}
	return e, &st, err
}

func hashFile(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for name := range strings.SplitSeq(string(buf[:sz]), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("xattr %q of %q: %w", name, p, err)
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, fmt.Errorf("xattr %q of %q: %w", name, p, err)
		}
		m[name] = string(v[:vsz])
	}
	return m, nil
}

// HashString is the SHA256 field of a file holding s.
func HashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
