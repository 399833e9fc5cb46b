package zlayer

import (
	"errors"
	"io"
	"iter"

	"github.com/zlayer/zlayer/internal/zfsdiff"
)

// zfsDiffOp names the operation in the errors of ParseZFSDiff.
const zfsDiffOp = "parse zfs diff"

// ParseZFSDiff reads the change list that libzfs's zfs_show_diffs writes
// for two snapshots (the lines `zfs diff -H` prints, with or without the
// classify and timestamp flags; OpenZFS 2.1 format) and yields it as
// Changes for [WriteChanges]. mountpoint is the dataset's mountpoint as
// libzfs printed it before escaping; paths are made relative to it.
//
// Records keep their order and their repeats. A record of the dataset root
// is dropped, as [WalkChanges] never reports the root; so is a record of an
// object unlinked while open, which has no path. A record of an extended
// attribute kept as a hidden file (xattr=dir) becomes a modification of
// the object that owns it, of unknown type. Types '>' (door) and 'P'
// (event port), which Linux does not have, become FileUnknown.
//
// A malformed line stops the iteration with an error that wraps
// [ErrInvalid] and names the line. Names written raw (`zfs diff -h` in
// later releases) are refused, since they may hold tabs and newlines.
func ParseZFSDiff(r io.Reader, mountpoint string) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		for e, err := range zfsdiff.All(r, mountpoint) {
			if err != nil {
				if errors.Is(err, zfsdiff.ErrSyntax) {
					err = invalidError{err}
				}
				yield(Change{}, opErr(zfsDiffOp, mountpoint, err))
				return
			}
			if e.Path == "" {
				continue
			}
			if !yield(zfsChange(e), nil) {
				return
			}
		}
	}
}

// invalidError reads as its cause and also matches ErrInvalid.
type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }

func (e invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }

func zfsChange(e zfsdiff.Entry) Change {
	c := Change{Path: e.Path, OldPath: e.OldPath, Type: zfsType(e.Type)}
	switch e.Kind {
	case zfsdiff.Added:
		c.Kind = ChangeAdd
	case zfsdiff.Removed:
		c.Kind = ChangeDelete
	case zfsdiff.Modified:
		c.Kind, c.LinkDelta = ChangeModify, e.LinkDelta
	case zfsdiff.Renamed:
		c.Kind = ChangeRename
	}
	if e.Xattr {
		c = Change{Kind: ChangeModify, Path: e.Path, Type: FileUnknown}
	}
	return c
}

func zfsType(t zfsdiff.Type) FileType {
	switch t {
	case zfsdiff.Regular:
		return FileRegular
	case zfsdiff.Directory:
		return FileDir
	case zfsdiff.Symlink:
		return FileSymlink
	case zfsdiff.Socket:
		return FileSocket
	case zfsdiff.FIFO:
		return FileFIFO
	case zfsdiff.BlockDevice:
		return FileBlockDevice
	case zfsdiff.CharDevice:
		return FileCharDevice
	}
	return FileUnknown
}
