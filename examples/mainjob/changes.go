package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// changeTime is the modification time the container gives what it
// writes, so that a run's new layer is the same from run to run.
var changeTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// The paths the container changes. The generated sample image and the
// Debian image of scripts/make-debian-image.sh both hold the lower ones.
const (
	addedDir     = "etc/zlayer"
	addedFile    = "etc/zlayer/container.conf"
	addedLink    = "etc/zlayer/container.conf.bak" // a hard link to addedFile
	addedSymlink = "etc/zlayer/current"            // -> container.conf
	addedData    = "var/lib/zlayer-ctr/data.bin"
	modified     = "etc/issue"
	deleted      = "etc/issue.net"
	deletedDir   = "var/cache/debconf"
	renamedFrom  = "etc/host.conf"
	renamedTo    = "etc/host.conf.orig"
	chmodded     = "etc/shells"
)

// changeFiles changes the tree at dir as a container's process might:
// files and folders added (a hard link and a symbolic link among them), a
// file modified, a file and a whole folder deleted, a file renamed and a
// file's mode changed. Every path is resolved beneath dir.
func changeFiles(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add " + addedFile, func() error {
			if err := root.MkdirAll(addedDir, 0o755); err != nil {
				return err
			}
			return root.WriteFile(addedFile, []byte("written in the container\n"), 0o640)
		}},
		{"link " + addedLink, func() error { return root.Link(addedFile, addedLink) }},
		{"symlink " + addedSymlink, func() error { return root.Symlink("container.conf", addedSymlink) }},
		{"add " + addedData, func() error {
			if err := root.MkdirAll("var/lib", 0o755); err != nil {
				return err
			}
			if err := root.Mkdir("var/lib/zlayer-ctr", 0o750); err != nil {
				return err
			}
			return root.WriteFile(addedData, pattern(1<<20), 0o600)
		}},
		{"modify " + modified, func() error {
			f, err := root.OpenFile(modified, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("changed in a zlayer container\n")
			return errors.Join(err, f.Close())
		}},
		{"delete " + deleted, func() error { return root.Remove(deleted) }},
		{"delete " + deletedDir, func() error {
			if _, err := root.Lstat(deletedDir); err != nil {
				return err
			}
			return root.RemoveAll(deletedDir)
		}},
		{"rename " + renamedFrom, func() error { return root.Rename(renamedFrom, renamedTo) }},
		{"chmod " + chmodded, func() error { return root.Chmod(chmodded, 0o600) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	// What the container wrote, and the folders whose entries changed,
	// get one time, so that the same changes make the same layer.
	for _, p := range []string{addedFile, addedData, modified, addedSymlink,
		addedDir, "etc", "var", "var/cache", "var/lib", "var/lib/zlayer-ctr"} {
		if err := setTime(root, p, changeTime); err != nil {
			return fmt.Errorf("set time of %s: %w", p, err)
		}
	}
	return nil
}

// setTime sets the access and modification times of name, not following
// a symbolic link.
func setTime(root *os.Root, name string, t time.Time) error {
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(int(d.Fd()), base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// pattern returns n bytes of a repeating, not too compressible pattern.
func pattern(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%08x ", uint32(i)*2654435761)
	}
	return b.Bytes()[:n]
}
