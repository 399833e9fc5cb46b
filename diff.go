package zlayer

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// ChangeKind says what happened to a path between two trees. The zero
// ChangeKind is not a valid kind.
type ChangeKind uint8

const (
	// ChangeAdd: the path exists only in the upper tree.
	ChangeAdd ChangeKind = iota + 1
	// ChangeModify: the path exists in both trees and differs in type,
	// metadata, content or hard-link identity.
	ChangeModify
	// ChangeDelete: the path exists only in the lower tree.
	ChangeDelete
	// ChangeRename: an object moved from OldPath to Path. Only the ZFS
	// change stream reports renames; a walk reports a delete and an add.
	ChangeRename
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeAdd:
		return "add"
	case ChangeModify:
		return "modify"
	case ChangeDelete:
		return "delete"
	case ChangeRename:
		return "rename"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// FileType is the type of a file system object. The zero FileType is
// FileUnknown, the type of an object whose type was not reported.
type FileType uint8

const (
	FileUnknown FileType = iota
	FileRegular
	FileDir
	FileSymlink
	FileCharDevice
	FileBlockDevice
	FileFIFO
	FileSocket
)

func (t FileType) String() string {
	switch t {
	case FileUnknown:
		return "unknown"
	case FileRegular:
		return "regular"
	case FileDir:
		return "dir"
	case FileSymlink:
		return "symlink"
	case FileCharDevice:
		return "char device"
	case FileBlockDevice:
		return "block device"
	case FileFIFO:
		return "fifo"
	case FileSocket:
		return "socket"
	}
	return "FileType(" + strconv.Itoa(int(t)) + ")"
}

// fileType returns the FileType of a stat(2) mode.
func fileType(mode uint32) FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return FileRegular
	case unix.S_IFDIR:
		return FileDir
	case unix.S_IFLNK:
		return FileSymlink
	case unix.S_IFCHR:
		return FileCharDevice
	case unix.S_IFBLK:
		return FileBlockDevice
	case unix.S_IFIFO:
		return FileFIFO
	case unix.S_IFSOCK:
		return FileSocket
	}
	return FileUnknown
}

// Change is one difference between a lower and an upper tree.
type Change struct {
	Kind ChangeKind

	// Path is slash-separated and relative to the layer root, with no
	// leading slash ("etc/passwd"). The root itself is never reported.
	Path string

	// OldPath is the path before a rename; empty for other kinds.
	OldPath string

	// Type is the type in the upper tree, or in the lower tree for a
	// deletion; FileUnknown where the source did not say.
	Type FileType

	// LinkDelta is the change of the object's hard-link count, upper minus
	// lower, for a modification of something other than a directory; zero
	// when the count did not change or is not known.
	LinkDelta int
}

func (c Change) String() string {
	s := c.Kind.String() + " " + strconv.Quote(c.Path)
	if c.OldPath != "" {
		s += " from " + strconv.Quote(c.OldPath)
	}
	if c.LinkDelta != 0 {
		s += fmt.Sprintf(" links %+d", c.LinkDelta)
	}
	return s
}
