package snapshotter

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// Update changes the labels of snapshot info.Name, the only mutable
// field. With no fieldpaths the labels are replaced by info.Labels;
// "labels" does the same; "labels.KEY" sets or, when info.Labels has no
// value for KEY, deletes that one label. Any other path is refused with
// errdefs.ErrInvalidArgument before anything changes. Labels with empty
// values are dropped, as containerd's own store does.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info,
	fieldpaths ...string) (snapshots.Info, error) {
	for _, p := range fieldpaths {
		if p != "labels" && !strings.HasPrefix(p, "labels.") {
			return snapshots.Info{}, fmt.Errorf("update %q: cannot update field %q: %w",
				info.Name, p, errdefs.ErrInvalidArgument)
		}
	}
	id := idOf(info.Name)
	unlock := s.locks.lock(id)
	defer unlock()
	e, err := s.lookup(ctx, info.Name, slotActive)
	if err != nil {
		return snapshots.Info{}, fmt.Errorf("update %w", err)
	}

	updated := e.info
	labels := maps.Clone(updated.Labels)
	if labels == nil {
		labels = make(map[string]string)
	}
	if len(fieldpaths) == 0 {
		labels = maps.Clone(info.Labels)
	}
	for _, p := range fieldpaths {
		if k, ok := strings.CutPrefix(p, "labels."); ok {
			labels[k] = info.Labels[k]
		} else {
			labels = maps.Clone(info.Labels)
		}
	}
	maps.DeleteFunc(labels, func(_, v string) bool { return v == "" })
	updated.Labels = labels
	updated.Updated = time.Now().UTC()

	// Only the slot in force is written; a stale committed slot on a
	// clone, left by a commit that failed, goes with it.
	all := make(map[string]string)
	encodeInfo(all, e.slot, updated)
	if err := s.store.SetLabels(ctx, id, all); err != nil {
		return snapshots.Info{}, fmt.Errorf("update %q: %w", info.Name, convert(err))
	}
	return roundTrip(updated), nil
}
