package zlayer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"github.com/zlayer/zlayer/internal/zfs"
)

// diffSource is a layer or clone and its parent, mounted read-only for
// the time of one diff, with the snapshots ZFS compares.
type diffSource struct {
	from, to     string // snapshots; from is empty for a base layer
	lower, upper string // directories holding the parent's and the layer's trees
	mnt          string // where to's dataset is mounted: libzfs prints paths under it
	undo         []func() error
}

func (d *diffSource) close() error {
	var errs []error
	for i := len(d.undo) - 1; i >= 0; i-- {
		errs = append(errs, d.undo[i]())
	}
	return errors.Join(errs...)
}

// openDiff prepares a diff of id against its parent. A committed layer is
// read as it is (it is read-only and equal to its commit snapshot); an
// active layer or clone is read from a snapshot taken now, never from the
// live dataset, which may change underneath.
func (s *Store) openDiff(ctx context.Context, id string) (d *diffSource, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("diff", id, err)
	}
	d = &diffSource{}
	defer func() {
		if err != nil {
			if cerr := d.close(); cerr != nil {
				s.log.Warn("cleanup after failed diff failed", "dataset", m.dataset, "err", cerr)
			}
		}
	}()
	tmp, err := os.MkdirTemp("", "zlayer-diff-")
	if err != nil {
		return nil, opErr("diff", m.dataset, err)
	}
	d.undo = append(d.undo, func() error { return os.RemoveAll(tmp) })

	committed := m.kind == kindLayer && m.state == stateCommitted
	if committed {
		d.to = m.dataset + "@" + commitSnap
	} else {
		b := make([]byte, 6)
		rand.Read(b)
		d.to = m.dataset + "@zlayer-diff-" + hex.EncodeToString(b)
		if err := zfs.Snapshot(d.to, nil); err != nil {
			return nil, zfsErr("diff", d.to, err)
		}
		snap := d.to
		d.undo = append(d.undo, func() error {
			return zfsErr("diff", snap, zfs.DestroySnapshots([]string{snap}, true))
		})
	}

	mnt := filepath.Join(tmp, "upper")
	if err := s.privateMount(d, m.dataset, mnt, committed || m.readOnly); err != nil {
		return nil, err
	}
	// libzfs prints paths under the first mount of the dataset it finds,
	// which is the caller's when a container has its clone mounted.
	if d.mnt, err = firstMount(m.dataset); err != nil {
		return nil, opErr("diff", m.dataset, err)
	}
	d.upper = mnt
	if !committed {
		// The snapshot itself is mounted: its content cannot change
		// under the writer, and no path through .zfs is involved.
		d.upper = filepath.Join(tmp, "snapshot")
		if err := s.privateMount(d, d.to, d.upper, true); err != nil {
			return nil, err
		}
	}
	if m.parent == "" {
		return d, nil
	}
	pm, err := s.get(m.parent)
	if err != nil {
		return nil, opErr("diff", m.dataset, fmt.Errorf("parent %q: %w", m.parent, err))
	}
	d.from = pm.dataset + "@" + commitSnap
	d.lower = filepath.Join(tmp, "lower")
	if err := s.privateMount(d, pm.dataset, d.lower, true); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Store) privateMount(d *diffSource, ds, dir string, readOnly bool) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return opErr("diff", ds, err)
	}
	if err := s.mountPrivate(ds, dir, readOnly); err != nil {
		return err
	}
	d.undo = append(d.undo, func() error { return s.unmountPrivate(dir) })
	return nil
}

// changes streams ZFS's change list for d, or walks the whole tree of a
// base layer, which has nothing to compare with.
func (d *diffSource) changes(ctx context.Context) iter.Seq2[Change, error] {
	if d.from == "" {
		return WalkChanges(ctx, "", d.upper)
	}
	return func(yield func(Change, error) bool) {
		rc, err := zfs.Diff(d.from, d.to)
		if err != nil {
			yield(Change{}, zfsErr("diff", d.to, err))
			return
		}
		stopped := false
		for c, err := range ParseZFSDiff(rc, d.mnt) {
			if err != nil {
				yield(Change{}, err)
				stopped = true
				break
			}
			if !yield(c, nil) {
				stopped = true
				break
			}
		}
		if err := rc.Close(); err != nil && !stopped {
			yield(Change{}, zfsErr("diff", d.from+" "+d.to, err))
		}
	}
}

// Changes lists what changed in layer or clone id against its parent
// layer, from ZFS's own record of changed objects rather than a walk of
// both trees. A base layer, having no parent, lists every path as added.
//
// ZFS reports objects: a directory whose entries changed is a
// modification, a new name for an existing file shows only as that file's
// link count changing (LinkDelta), and a renamed object as a rename.
// [WriteChanges] resolves those against the trees.
func (s *Store) Changes(ctx context.Context, id string) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		unlock := s.ids.lock(id)
		defer unlock()
		d, err := s.openDiff(ctx, id)
		if err != nil {
			yield(Change{}, err)
			return
		}
		defer func() {
			if err := d.close(); err != nil {
				s.log.Warn("cleanup after diff failed", "id", id, "err", err)
			}
		}()
		for c, err := range d.changes(ctx) {
			if !yield(c, err) || err != nil {
				return
			}
		}
	}
}

// Diff writes the OCI layer tar of layer or clone id against its parent
// layer: what a registry push or an image commit needs. The change list
// comes from ZFS; content is read from snapshots.
func (s *Store) Diff(ctx context.Context, id string, w io.Writer, opts *DiffOptions) (DiffResult, error) {
	unlock := s.ids.lock(id)
	defer unlock()
	d, err := s.openDiff(ctx, id)
	if err != nil {
		return DiffResult{}, err
	}
	res, err := WriteChanges(ctx, w, d.lower, d.upper, withParents(d.changes(ctx)), opts)
	if cerr := d.close(); cerr != nil {
		s.log.Warn("cleanup after diff failed", "id", id, "err", cerr)
	}
	if err != nil {
		return DiffResult{}, opErr("diff", s.dataset(id), err)
	}
	return res, nil
}

// withParents adds the directories above every changed path as
// modifications. Applying a layer rewrites entries inside directories it
// does not mention, which changes their times; carrying each parent in the
// tar lets the applier set them back, so a layer rebuilt from its diff has
// the same directory times as the original.
func withParents(changes iter.Seq2[Change, error]) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		seen := map[string]bool{}
		for c, err := range changes {
			if err != nil {
				yield(c, err)
				return
			}
			// A deletion's directory, where it still exists, is itself
			// reported as modified.
			if c.Kind != ChangeDelete {
				for dir := path.Dir(c.Path); dir != "." && !seen[dir]; dir = path.Dir(dir) {
					seen[dir] = true
					if !yield(Change{Kind: ChangeModify, Path: dir, Type: FileDir}, nil) {
						return
					}
				}
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// firstMount returns where dataset ds is mounted first in the mount table,
// as libzfs looks it up.
func firstMount(ds string) (string, error) {
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		if i.FSType == "zfs" && i.Source == ds {
			return false, true
		}
		return true, false
	})
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", fmt.Errorf("%q is not mounted: %w", ds, ErrNotFound)
	}
	return ms[0].Mountpoint, nil
}
