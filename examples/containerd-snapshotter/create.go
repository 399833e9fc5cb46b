package snapshotter

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/zlayer/zlayer"
)

// Prepare creates active snapshot key: a writable clone of the committed
// snapshot parent, or of the empty base layer when parent is "". The
// dataset and its record come into being in one ZFS call.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string,
	opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates view key: a read-only clone of the committed snapshot
// parent, or of the empty base layer. The dataset itself is read-only, so
// its mounts stay read-only whatever options a caller adds.
func (s *Snapshotter) View(ctx context.Context, key, parent string,
	opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string,
	opts []snapshots.Opt) ([]mount.Mount, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, err
		}
	}
	op := "prepare"
	if kind == snapshots.KindView {
		op = "view"
	}
	from := baseID
	if parent != "" {
		p, err := s.lookup(ctx, parent, slotCommitted)
		if err != nil {
			return nil, fmt.Errorf("%s %q: parent: %w", op, key, err)
		}
		if p.info.Kind != snapshots.KindCommitted {
			return nil, fmt.Errorf("%s %q: parent %q is not a committed snapshot: %w",
				op, key, parent, errdefs.ErrInvalidArgument)
		}
		from = p.id
	}

	now := time.Now().UTC()
	info := snapshots.Info{Kind: kind, Name: key, Parent: parent, Labels: base.Labels,
		Created: now, Updated: now}
	labels := make(map[string]string)
	encodeInfo(labels, slotActive, info)

	id := idOf(key)
	unlock := s.locks.lock(id)
	defer unlock()
	c, err := s.store.CreateClone(ctx, id, from, &zlayer.CloneOptions{
		Labels:   labels,
		ReadOnly: kind == snapshots.KindView,
	})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", op, key, convert(err))
	}
	return mounts(c.Dataset, kind == snapshots.KindView), nil
}
