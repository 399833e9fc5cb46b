package zlayer

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Snapshot is a named, read-only point in time of a layer or clone.
type Snapshot struct {
	ID      string // the layer or clone
	Name    string
	Created time.Time
	Holds   int    // user holds keeping it
	Dataset string // full ZFS name, DATASET@NAME
}

// CreateSnapshot takes snapshot name of layer or clone id.
func (s *Store) CreateSnapshot(ctx context.Context, id, name string) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validSnapName(name); err != nil {
		return nil, opErr("create snapshot", id, err)
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("create snapshot", id, err)
	}
	full := m.dataset + "@" + name
	if err := zfs.Snapshot(full, nil); err != nil {
		return nil, zfsErr("create snapshot", full, err)
	}
	return s.snapshot(id, name)
}

func (s *Store) snapshot(id, name string) (*Snapshot, error) {
	full := s.dataset(id) + "@" + name
	p, err := zfs.Get(full)
	if err != nil {
		return nil, zfsErr("get snapshot", full, err)
	}
	return &Snapshot{ID: id, Name: name, Created: p.Created, Holds: int(p.UserRefs), Dataset: full}, nil
}

// Snapshots lists the caller's snapshots of a layer or clone, oldest
// first. The store's own snapshots are left out.
func (s *Store) Snapshots(ctx context.Context, id string) iter.Seq2[*Snapshot, error] {
	return func(yield func(*Snapshot, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(nil, err)
			return
		}
		m, err := s.get(id)
		if err != nil {
			yield(nil, opErr("list snapshots", id, err))
			return
		}
		ps, err := zfs.Snapshots(m.dataset)
		if err != nil {
			yield(nil, zfsErr("list snapshots", m.dataset, err))
			return
		}
		slices.SortFunc(ps, func(a, b *zfs.Props) int { return cmp.Compare(a.CreateTxg, b.CreateTxg) })
		for _, p := range ps {
			name := p.Name[strings.IndexByte(p.Name, '@')+1:]
			if strings.HasPrefix(name, "zlayer") {
				continue
			}
			sn := &Snapshot{ID: id, Name: name, Created: p.Created, Holds: int(p.UserRefs), Dataset: p.Name}
			if !yield(sn, nil) {
				return
			}
		}
	}
}

// Hold pins snapshot name of id with tag: it cannot be destroyed, nor its
// layer removed, until Release.
func (s *Store) Hold(ctx context.Context, id, name, tag string) error {
	full, err := s.snapName(ctx, "hold snapshot", id, name)
	if err != nil {
		return err
	}
	if tag == "" {
		return opErr("hold snapshot", full, fmt.Errorf("empty tag: %w", ErrInvalid))
	}
	return zfsErr("hold snapshot", full, zfs.Hold(full, tag))
}

// Release removes hold tag from snapshot name of id.
func (s *Store) Release(ctx context.Context, id, name, tag string) error {
	full, err := s.snapName(ctx, "release snapshot", id, name)
	if err != nil {
		return err
	}
	return zfsErr("release snapshot", full, zfs.Release(full, tag))
}

// Rollback returns a layer or clone to its snapshot name, which must be its
// latest: ZFS rolls back only to the most recent snapshot, and zlayer does
// not destroy newer ones for the caller. Committed layers are immutable.
func (s *Store) Rollback(ctx context.Context, id, name string) error {
	full, err := s.snapName(ctx, "rollback", id, name)
	if err != nil {
		return err
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return opErr("rollback", id, err)
	}
	if m.state == stateCommitted {
		return opErr("rollback", m.dataset, fmt.Errorf("committed layer: %w", ErrInvalid))
	}
	if err := zfs.Rollback(m.dataset, full); err != nil {
		if isKind(err, zfs.KindExist) || isKind(err, zfs.KindInvalid) {
			return opErr("rollback", full, fmt.Errorf("not the latest snapshot: %w", ErrBusy))
		}
		return zfsErr("rollback", full, err)
	}
	return nil
}

// RemoveSnapshot destroys snapshot name of id. A held snapshot, or one
// with clones, is refused with ErrBusy.
func (s *Store) RemoveSnapshot(ctx context.Context, id, name string) error {
	full, err := s.snapName(ctx, "remove snapshot", id, name)
	if err != nil {
		return err
	}
	return zfsErr("remove snapshot", full, zfs.DestroySnapshots([]string{full}, false))
}

func (s *Store) snapName(ctx context.Context, op, id, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := validSnapName(name); err != nil {
		return "", opErr(op, id, err)
	}
	if err := s.checkID(id); err != nil {
		return "", opErr(op, id, err)
	}
	return s.dataset(id) + "@" + name, nil
}
