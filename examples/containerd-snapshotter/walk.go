package snapshotter

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/filters"
)

// Walk calls fn for each snapshot matching any of the filters (all of
// them when none is given). Fields: name, parent, kind (active, view,
// committed) and labels.KEY. The store is listed before the first call,
// so fn may call the snapshotter, and snapshots made or removed during the
// walk may or may not be seen.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	infos, err := s.list(ctx)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if !filter.Match(adapt(info)) {
			continue
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// list reads every snapshot of the store. zlayer offers listings of
// layers and of clones apart, so the store is read twice.
func (s *Snapshotter) list(ctx context.Context) ([]snapshots.Info, error) {
	var infos []snapshots.Info
	for l, err := range s.store.Layers(ctx) {
		if err != nil {
			return nil, fmt.Errorf("walk: %w", convert(err))
		}
		if !l.Committed {
			continue
		}
		if info, ok := decodeInfo(l.Labels, slotCommitted); ok && idOf(info.Name) == l.ID {
			infos = append(infos, info)
		}
	}
	for c, err := range s.store.Clones(ctx) {
		if err != nil {
			return nil, fmt.Errorf("walk: %w", convert(err))
		}
		if info, ok := decodeInfo(c.Labels, slotActive); ok && idOf(info.Name) == c.ID {
			infos = append(infos, info)
		}
	}
	return infos, nil
}

// adapt exposes an Info's fields to containerd's filter language.
func adapt(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "kind":
			if info.Kind == snapshots.KindUnknown {
				return "", false
			}
			return strings.ToLower(info.Kind.String()), true
		case "labels":
			v, ok := info.Labels[strings.Join(path[1:], ".")]
			return v, ok
		}
		return "", false
	})
}
