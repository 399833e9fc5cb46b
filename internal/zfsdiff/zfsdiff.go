// Package zfsdiff parses the change list that libzfs's zfs_show_diffs writes,
// the text that `zfs diff` prints, without cgo and without ZFS.
//
// The stream is one record a line. Fields are separated by tabs:
//
//	[SECONDS.NANOSECONDS]  CHANGE  [TYPE]  PATH  [NEWPATH | (+N) | (-N)]
//
// The timestamp (the object's ctime) is present when the timestamp flag was
// given, the type character when the classify flag was given. CHANGE is one
// of '+' (added), '-' (removed), 'M' (modified) and 'R' (renamed). A rename
// carries the old path then the new one, separated by a tab in parsable mode
// or by " -> " otherwise; a modification that only changed an object's link
// count ends with the signed change in parentheses. Paths are absolute: the
// dataset's mountpoint followed by the path inside the dataset. Every byte
// of a path that is not printable ASCII, and space and backslash, is written
// as a backslash and four octal digits ("\0040" for a space), so a path field
// never holds a tab, a space or a newline.
//
// The format is the one of OpenZFS 2.1. The raw-name output of later
// releases (`zfs diff -h`) is not parsed: its names may hold tabs and
// newlines, and the reader rejects the unescaped bytes it meets.
package zfsdiff

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is the change character of a record.
type Kind byte

// The change characters zfs_show_diffs writes.
const (
	Added    Kind = '+'
	Removed  Kind = '-'
	Modified Kind = 'M'
	Renamed  Kind = 'R'
)

func (k Kind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "modified"
	case Renamed:
		return "renamed"
	}
	return fmt.Sprintf("Kind(%q)", byte(k))
}

// Type is the classify character of a record, or NoType when the stream
// was written without the classify flag.
type Type byte

// The type characters zfs_show_diffs writes. Door and EventPort exist only
// on illumos; Unknown is what libzfs prints for a mode it cannot name.
const (
	NoType      Type = 0
	Regular     Type = 'F'
	Directory   Type = '/'
	Symlink     Type = '@'
	Socket      Type = '='
	Door        Type = '>'
	FIFO        Type = '|'
	BlockDevice Type = 'B'
	CharDevice  Type = 'C'
	EventPort   Type = 'P'
	Unknown     Type = '?'
)

func validType(c byte) bool {
	return strings.IndexByte("F/@=>|BCP?", c) >= 0
}

// Entry is one record of the stream.
type Entry struct {
	// Time is the object's change time (ctime), or the zero Time when the
	// stream carries no timestamps.
	Time time.Time

	Kind Kind
	Type Type

	// Path is the object's path relative to the mountpoint, without a
	// leading slash; "" is the root of the dataset. For a rename it is
	// the new path.
	Path string

	// OldPath is the path before a rename; empty for other kinds.
	OldPath string

	// LinkDelta is the change of the object's link count when the record
	// reports only that (a hard link made or removed); zero otherwise.
	LinkDelta int

	// Xattr reports a record about an object inside the hidden extended
	// attribute directory of Path (a dataset with xattr=dir). Path then
	// names the object that owns the attribute, not the attribute.
	Xattr bool
}

// ErrSyntax is wrapped by every error about a malformed line.
var ErrSyntax = errors.New("malformed zfs diff record")

// LineError reports a line the reader could not parse.
type LineError struct {
	Line int    // 1-based line number
	Text string // the line, cut to a readable length
	Err  error  // the cause; wraps ErrSyntax
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d %q: %v", e.Line, e.Text, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// syntaxError is a cause of a LineError: it reads as its message alone,
// the line already saying what is wrong, and matches ErrSyntax.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func (e *syntaxError) Unwrap() error { return ErrSyntax }

func syntaxErr(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...)}
}
