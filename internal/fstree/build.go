package fstree

import (
	"time"
)

// Opt adjusts an entry made by a builder.
type Opt func(*Entry)

// Owner sets the numeric owner.
func Owner(uid, gid int) Opt {
	return func(e *Entry) { e.UID, e.GID = uid, gid }
}

// Mtime sets the modification time.
func Mtime(t time.Time) Opt {
	return func(e *Entry) { e.Mtime = t.UTC() }
}

// AnyMtime makes the entry match any modification time: for directories
// an operation made or changed without saying when.
func AnyMtime() Opt {
	return func(e *Entry) { e.Mtime = time.Time{} }
}

// Xattr adds an extended attribute.
func Xattr(name, value string) Opt {
	return func(e *Entry) {
		if e.Xattrs == nil {
			e.Xattrs = make(map[string]string)
		}
		e.Xattrs[name] = value
	}
}

// LinkGroup marks a hard-linked entry with the first path of its group.
func LinkGroup(first string) Opt {
	return func(e *Entry) { e.LinkGroup = first }
}

func build(e Entry, opts []Opt) Entry {
	e.Mtime = Epoch
	for _, o := range opts {
		o(&e)
	}
	return e
}

// Dir is a directory.
func Dir(path string, mode uint32, opts ...Opt) Entry {
	return build(Entry{Path: path, Type: TypeDir, Mode: mode}, opts)
}

// File is a regular file holding content.
func File(path, content string, mode uint32, opts ...Opt) Entry {
	return build(Entry{
		Path: path, Type: TypeFile, Mode: mode,
		Size: int64(len(content)), SHA256: HashString(content),
	}, opts)
}

// Symlink is a symbolic link; Linux shows every link with mode 0777.
func Symlink(path, target string, opts ...Opt) Entry {
	return build(Entry{Path: path, Type: TypeSymlink, Mode: 0o777, Link: target}, opts)
}

// Char is a character device.
func Char(path string, major, minor uint32, mode uint32, opts ...Opt) Entry {
	return build(Entry{Path: path, Type: TypeChar, Mode: mode, Major: major, Minor: minor}, opts)
}

// Block is a block device.
func Block(path string, major, minor uint32, mode uint32, opts ...Opt) Entry {
	return build(Entry{Path: path, Type: TypeBlock, Mode: mode, Major: major, Minor: minor}, opts)
}

// Fifo is a named pipe.
func Fifo(path string, mode uint32, opts ...Opt) Entry {
	return build(Entry{Path: path, Type: TypeFifo, Mode: mode}, opts)
}

// New makes a tree of entries; a later entry for a path replaces an
// earlier one.
func New(entries ...Entry) Tree {
	t := make(Tree, len(entries))
	for _, e := range entries {
		t[e.Path] = e
	}
	return t
}

// With returns a copy of t with entries added or replaced.
func (t Tree) With(entries ...Entry) Tree {
	n := make(Tree, len(t)+len(entries))
	for p, e := range t {
		n[p] = e
	}
	for _, e := range entries {
		n[e.Path] = e
	}
	return n
}

// Without returns a copy of t without the given paths and, for a path
// ending in "/...", what is below it.
func (t Tree) Without(patterns ...string) Tree {
	n := make(Tree, len(t))
	for p, e := range t {
		if !matchAny(patterns, p) {
			n[p] = e
		}
	}
	return n
}
