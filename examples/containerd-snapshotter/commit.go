package snapshotter

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/zlayer/zlayer"
)

// Commit turns active snapshot key into committed snapshot name, with the
// parent key had and the labels opts give (labels are not inherited from
// key). The clone's dataset becomes the layer's, renamed to name's id: no
// data is copied. key must not be mounted read-write.
//
// A parentless active snapshot cannot be given a parent on commit
// (snapshots.WithParent): its content is a full tree, not changes to that
// parent, so the call is refused.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return err
		}
	}
	id, target := idOf(key), idOf(name)
	unlock := s.locks.lock2(id, target)
	defer unlock()

	a, err := s.lookup(ctx, key, slotActive)
	if err != nil {
		return fmt.Errorf("commit %q as %q: %w", key, name, err)
	}
	if a.info.Kind != snapshots.KindActive {
		return fmt.Errorf("commit %q as %q: %s snapshot is not active: %w",
			key, name, a.info.Kind, errdefs.ErrFailedPrecondition)
	}
	if name == key {
		return fmt.Errorf("commit %q as %q: %w", key, name, errdefs.ErrAlreadyExists)
	}
	if base.Parent != "" && base.Parent != a.info.Parent {
		return fmt.Errorf("commit %q as %q: cannot change parent %q to %q: %w",
			key, name, a.info.Parent, base.Parent, errdefs.ErrInvalidArgument)
	}

	now := time.Now().UTC()
	info := snapshots.Info{Kind: snapshots.KindCommitted, Name: name, Parent: a.info.Parent,
		Labels: base.Labels, Created: now, Updated: now}
	pending := maps.Clone(a.labels)
	encodeInfo(pending, slotCommitted, info)
	// The committed record goes in with the commit's first step, so a
	// crash leaves either the clone (whose committed slot is ignored) or
	// the layer with its record.
	if _, err := s.store.CommitClone(ctx, id, target, &zlayer.CommitOptions{Labels: pending}); err != nil {
		// The clone is still the active snapshot; its record in the
		// committed slot is ignored while it is a clone, and dropped
		// here to keep the labels small.
		if uerr := s.store.SetLabels(ctx, id, a.labels); uerr != nil {
			s.log.Warn("restoring labels after failed commit", "key", key, "err", uerr)
		}
		return fmt.Errorf("commit %q as %q: %w", key, name, convert(err))
	}
	// The layer keeps the clone's active record beside its committed
	// one: dropping it would cost one more ZFS sync task a commit, and
	// the next Update of the layer drops it anyway.
	return nil
}
