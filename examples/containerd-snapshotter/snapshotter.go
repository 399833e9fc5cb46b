package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/zlayer/zlayer"
)

// Snapshotter is containerd's snapshotter over a zlayer store. It is safe
// for use by many goroutines.
type Snapshotter struct {
	store *zlayer.Store
	log   *slog.Logger
	locks keyLocks
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// Options configures New. The zero value is usable.
type Options struct {
	// Logger receives the few messages the adapter logs: best-effort
	// tidying that failed after a commit, datasets Cleanup left. Nil means
	// none.
	Logger *slog.Logger
}

// New returns a snapshotter keeping its snapshots in store, whose root it
// must own. It creates the store's empty base layer when it is missing.
func New(ctx context.Context, store *zlayer.Store, opts *Options) (*Snapshotter, error) {
	s := &Snapshotter{store: store, log: slog.New(slog.DiscardHandler)}
	if opts != nil && opts.Logger != nil {
		s.log = opts.Logger
	}
	if err := s.ensureBase(ctx); err != nil {
		return nil, fmt.Errorf("prepare base layer of %q: %w", store.Root(), convert(err))
	}
	return s, nil
}

// ensureBase makes the empty committed layer that parentless snapshots
// are cloned from. A crash between its creation and its commit leaves an
// active empty layer, which is committed here.
func (s *Snapshotter) ensureBase(ctx context.Context) error {
	l, err := s.store.Layer(ctx, baseID)
	switch {
	case err == nil && l.Committed:
		return nil
	case errors.Is(err, zlayer.ErrNotFound):
		labels := map[string]string{"role": "empty base of parentless snapshots"}
		_, err = s.store.CreateLayer(ctx, baseID, "", &zlayer.CreateOptions{Labels: labels})
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	_, err = s.store.Commit(ctx, baseID)
	return err
}

// Close releases nothing: the adapter holds no resources beyond the
// store, which the caller owns. Calling it again is harmless.
func (s *Snapshotter) Close() error { return nil }

// entry is one containerd snapshot as the pool records it.
type entry struct {
	id      string
	dataset string
	slot    string
	info    snapshots.Info
	labels  map[string]string // all zlayer labels of the dataset
}

// lookup finds the snapshot with key or name key. It opens the dataset
// as the kind slot suggests first (a zlayer clone for slotActive, a
// layer for slotCommitted) and as the other kind when that fails: one
// dataset open when the guess is right, two when it is not. zlayer has
// no lookup by id that returns either kind.
func (s *Snapshotter) lookup(ctx context.Context, key, slot string) (*entry, error) {
	id := idOf(key)
	e, err := s.open(ctx, id, slot)
	if errors.Is(err, zlayer.ErrNotFound) {
		other := slotActive
		if slot == slotActive {
			other = slotCommitted
		}
		e, err = s.open(ctx, id, other)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, convert(err))
	}
	info, ok := decodeInfo(e.labels, e.slot)
	if !ok || info.Name != key {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	e.info = info
	return e, nil
}

// open reads dataset id as a committed layer (slotCommitted) or as a
// clone (slotActive).
func (s *Snapshotter) open(ctx context.Context, id, slot string) (*entry, error) {
	if slot == slotActive {
		c, err := s.store.Clone(ctx, id)
		if err != nil {
			return nil, err
		}
		return &entry{id: id, dataset: c.Dataset, slot: slotActive, labels: c.Labels}, nil
	}
	l, err := s.store.Layer(ctx, id)
	if err != nil {
		return nil, err
	}
	if !l.Committed {
		// Only the base layer is ever an active layer, between its
		// creation and its commit in New.
		return nil, fmt.Errorf("layer %q is not committed: %w", id, zlayer.ErrNotFound)
	}
	return &entry{id: id, dataset: l.Dataset, slot: slotCommitted, labels: l.Labels}, nil
}

// Stat returns the info of the snapshot with key or name key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	e, err := s.lookup(ctx, key, slotCommitted)
	if err != nil {
		return snapshots.Info{}, err
	}
	return e.info, nil
}

// Mounts returns the mount of an active snapshot or a view: the dataset,
// read-only for a view.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	e, err := s.lookup(ctx, key, slotActive)
	if err != nil {
		return nil, err
	}
	if e.info.Kind == snapshots.KindCommitted {
		return nil, fmt.Errorf("mounts of %q: a committed snapshot is not active or view: %w",
			key, errdefs.ErrFailedPrecondition)
	}
	return mounts(e.dataset, e.info.Kind == snapshots.KindView), nil
}

func mounts(dataset string, readOnly bool) []mount.Mount {
	opt := "rw"
	if readOnly {
		opt = "ro"
	}
	return []mount.Mount{{Type: "zfs", Source: dataset, Options: []string{opt}}}
}

// Usage returns the space the snapshot holds apart from its parents, from
// ZFS's accounting of the dataset ("used"): a file walk is never made.
// Inodes are not counted and stay 0. ZFS updates "used" as transaction
// groups sync, so bytes written in the last few seconds may be missing.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	e, err := s.lookup(ctx, key, slotActive)
	if err != nil {
		return snapshots.Usage{}, err
	}
	u, err := s.store.Usage(ctx, e.id)
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of %q: %w", key, convert(err))
	}
	return snapshots.Usage{Size: int64(u.Used)}, nil
}
