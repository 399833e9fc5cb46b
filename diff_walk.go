package zlayer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// walkOp names the operation in the errors of WalkChanges.
const walkOp = "walk changes"

// errStop ends a walk whose consumer stopped iterating.
var errStop = errors.New("stop")

// WalkChanges compares the directory trees lower and upper and yields
// every path that differs. lower may be "" for an empty tree, as for a base
// layer. The walk is the reference that the ZFS change stream is checked
// against: it reads both trees whole and reports objects, not causes.
//
// A path in both trees is modified when its type, permission bits, owner,
// size (other than a directory's), modification time, symlink target,
// device number, extended attributes or link count differ, when it is a
// hard link of a different set of paths (compared as the first path of its
// inode in walk order), or, for a regular file whose size and modification
// time match, when its content differs: the content is then read in both
// trees. Access and change times are ignored. A type change is one
// modification; everything below a directory that stopped or started being
// one is reported deleted or added.
//
// Changes come in walk order: depth first, the entries of a directory
// sorted by name, so a directory comes before its children. Every deleted
// path is reported, not only the top of a deleted subtree, as ZFS does. The
// root is never reported and renames never are: a rename is a deletion and
// an addition.
//
// Both trees are read through descriptors opened with O_NOFOLLOW below
// their roots; a symlink is compared, never followed. The walk yields the
// first error it meets, with a zero Change, and stops. Memory grows with
// the depth and width of the trees and the number of multiply-linked
// inodes, not with their size.
func WalkChanges(ctx context.Context, lower, upper string) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		w := &walker{ctx: ctx, yield: yield}
		err := w.run(lower, upper)
		if err != nil && !errors.Is(err, errStop) {
			yield(Change{}, err)
		}
	}
}

type walker struct {
	ctx   context.Context
	yield func(Change, error) bool

	lower, upper *tree // lower is nil for an empty tree

	// lowerLead and upperLead map an inode with more than one link to the
	// first of its paths in walk order.
	lowerLead, upperLead map[fileID]string

	bufA, bufB []byte
}

func (w *walker) run(lower, upper string) error {
	var err error
	if w.upper, err = openTree(upper); err != nil {
		return opErr(walkOp, upper, err)
	}
	defer w.upper.close()
	w.upperLead = map[fileID]string{}
	if lower == "" {
		return w.addedChildren("")
	}
	if w.lower, err = openTree(lower); err != nil {
		return opErr(walkOp, lower, err)
	}
	defer w.lower.close()
	w.lowerLead = map[fileID]string{}
	return w.bothDir("")
}

func (w *walker) emit(c Change) error {
	if !w.yield(c, nil) {
		return errStop
	}
	return nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// bothDir walks a directory present in both trees.
func (w *walker) bothDir(dir string) error {
	lnames, err := w.lower.names(dir)
	if err != nil {
		return opErr(walkOp, w.lower.path(dir), err)
	}
	unames, err := w.upper.names(dir)
	if err != nil {
		return opErr(walkOp, w.upper.path(dir), err)
	}

	i, j := 0, 0
	for i < len(lnames) || j < len(unames) {
		var err error
		switch {
		case j == len(unames) || i < len(lnames) && lnames[i] < unames[j]:
			err = w.deleted(join(dir, lnames[i]))
			i++
		case i == len(lnames) || unames[j] < lnames[i]:
			err = w.added(join(dir, unames[j]))
			j++
		default:
			err = w.both(join(dir, unames[j]))
			i++
			j++
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) addedChildren(dir string) error {
	names, err := w.upper.names(dir)
	if err != nil {
		return opErr(walkOp, w.upper.path(dir), err)
	}
	for _, name := range names {
		if err := w.added(join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) deletedChildren(dir string) error {
	names, err := w.lower.names(dir)
	if err != nil {
		return opErr(walkOp, w.lower.path(dir), err)
	}
	for _, name := range names {
		if err := w.deleted(join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) added(rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := w.upper.lstat(rel, &st); err != nil {
		return opErr(walkOp, w.upper.path(rel), err)
	}
	lead(w.upperLead, &st, rel)
	if err := w.emit(Change{Kind: ChangeAdd, Path: rel, Type: fileType(st.Mode)}); err != nil {
		return err
	}
	if isDir(&st) {
		return w.addedChildren(rel)
	}
	return nil
}

func (w *walker) deleted(rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := w.lower.lstat(rel, &st); err != nil {
		return opErr(walkOp, w.lower.path(rel), err)
	}
	lead(w.lowerLead, &st, rel)
	if err := w.emit(Change{Kind: ChangeDelete, Path: rel, Type: fileType(st.Mode)}); err != nil {
		return err
	}
	if isDir(&st) {
		return w.deletedChildren(rel)
	}
	return nil
}

// both compares a path present in both trees and walks on below it.
func (w *walker) both(rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	var ls, us unix.Stat_t
	if err := w.lower.lstat(rel, &ls); err != nil {
		return opErr(walkOp, w.lower.path(rel), err)
	}
	if err := w.upper.lstat(rel, &us); err != nil {
		return opErr(walkOp, w.upper.path(rel), err)
	}

	// Both leads are recorded before anything can return early: a later
	// path's lead depends on every path before it.
	sameLead := lead(w.lowerLead, &ls, rel) == lead(w.upperLead, &us, rel)
	changed, err := w.differs(rel, &ls, &us)
	if err != nil {
		return err
	}
	if changed || !sameLead {
		c := Change{Kind: ChangeModify, Path: rel, Type: fileType(us.Mode)}
		if !isDir(&us) && !isDir(&ls) {
			c.LinkDelta = int(us.Nlink) - int(ls.Nlink)
		}
		if err := w.emit(c); err != nil {
			return err
		}
	}

	switch {
	case isDir(&ls) && isDir(&us):
		return w.bothDir(rel)
	case isDir(&us):
		return w.addedChildren(rel)
	case isDir(&ls):
		return w.deletedChildren(rel)
	}
	return nil
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// lead records the path of an inode with several links the first time the
// walk meets it and returns that first path; for anything else it returns
// rel itself.
func lead(m map[fileID]string, st *unix.Stat_t, rel string) string {
	if isDir(st) || st.Nlink <= 1 {
		return rel
	}
	id := idOf(st)
	if first, ok := m[id]; ok {
		return first
	}
	m[id] = rel
	return rel
}

// differs compares one path's two versions, cheapest checks first.
func (w *walker) differs(rel string, ls, us *unix.Stat_t) (bool, error) {
	if ls.Mode != us.Mode || ls.Uid != us.Uid || ls.Gid != us.Gid ||
		ls.Mtim != us.Mtim {
		return true, nil
	}
	typ := us.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && (ls.Size != us.Size || ls.Nlink != us.Nlink) {
		return true, nil
	}
	if (typ == unix.S_IFCHR || typ == unix.S_IFBLK) && ls.Rdev != us.Rdev {
		return true, nil
	}
	if typ == unix.S_IFLNK {
		lt, err := w.lower.readlink(rel)
		if err != nil {
			return false, opErr(walkOp, w.lower.path(rel), err)
		}
		ut, err := w.upper.readlink(rel)
		if err != nil {
			return false, opErr(walkOp, w.upper.path(rel), err)
		}
		if lt != ut {
			return true, nil
		}
	}

	if typ == unix.S_IFREG {
		return w.fileDiffers(rel, ls, us)
	}
	lx, err := w.lower.xattrs(rel)
	if err != nil {
		return false, opErr(walkOp, w.lower.path(rel), err)
	}
	ux, err := w.upper.xattrs(rel)
	if err != nil {
		return false, opErr(walkOp, w.upper.path(rel), err)
	}
	return !slices.Equal(lx, ux), nil
}

// fileDiffers compares the extended attributes and content of a regular
// file whose metadata match, through descriptors opened once for both.
func (w *walker) fileDiffers(rel string, ls, us *unix.Stat_t) (bool, error) {
	lf, err := w.lower.open(rel, ls)
	if err != nil {
		return false, opErr(walkOp, w.lower.path(rel), err)
	}
	defer lf.Close()
	uf, err := w.upper.open(rel, us)
	if err != nil {
		return false, opErr(walkOp, w.upper.path(rel), err)
	}
	defer uf.Close()

	lx, err := fxattrs(lf)
	if err != nil {
		return false, opErr(walkOp, w.lower.path(rel), err)
	}
	ux, err := fxattrs(uf)
	if err != nil {
		return false, opErr(walkOp, w.upper.path(rel), err)
	}
	if !slices.Equal(lx, ux) {
		return true, nil
	}
	if us.Size == 0 {
		return false, nil
	}
	return w.contentDiffers(rel, lf, uf)
}

// compareChunk is how much of each file contentDiffers reads at a time.
const compareChunk = 128 << 10

// contentDiffers reads a regular file in both trees and compares the bytes:
// the only way to see a change that kept the size and the modification
// time (a write followed by touch -r, or within the time's granularity).
func (w *walker) contentDiffers(rel string, lf, uf *os.File) (bool, error) {
	if w.bufA == nil {
		w.bufA, w.bufB = make([]byte, compareChunk), make([]byte, compareChunk)
	}
	for {
		if err := w.ctx.Err(); err != nil {
			return false, err
		}
		n, errA := io.ReadFull(lf, w.bufA)
		m, errB := io.ReadFull(uf, w.bufB)
		if n != m || !bytes.Equal(w.bufA[:n], w.bufB[:m]) {
			return true, nil
		}
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		switch {
		case errA != nil && !endA:
			return false, opErr(walkOp, w.lower.path(rel), errA)
		case errB != nil && !endB:
			return false, opErr(walkOp, w.upper.path(rel), errB)
		case endA || endB:
			return endA != endB, nil
		}
	}
}
