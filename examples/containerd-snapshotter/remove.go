package snapshotter

import (
	"context"
	"errors"
	"fmt"

	"github.com/zlayer/zlayer"
)

// Remove removes the snapshot with key or name key and its dataset. A
// committed snapshot that active snapshots, views or committed snapshots
// descend from is refused with errdefs.ErrFailedPrecondition, and so is a
// mounted one.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	id := idOf(key)
	unlock := s.locks.lock(id)
	defer unlock()
	if _, err := s.lookup(ctx, key, slotActive); err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := s.store.Remove(ctx, id); err != nil {
		return fmt.Errorf("remove snapshot %q: %w", key, convert(err))
	}
	return nil
}

// Cleanup removes the datasets of the store that no containerd key or
// name refers to: those without a complete record, or whose record names
// another id. The empty base layer stays. A dataset that something still
// depends on (a mount, a clone that is a snapshot) stays too and is
// logged. Datasets whose removal a crash cut short are not listed by
// zlayer and are finished when the store is next opened.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	var todo []string
	for l, err := range s.store.Layers(ctx) {
		if err != nil {
			return fmt.Errorf("cleanup: %w", convert(err))
		}
		if l.ID == baseID {
			continue
		}
		if !l.Committed || !refers(l.ID, l.Labels, slotCommitted) {
			todo = append(todo, l.ID)
		}
	}
	for c, err := range s.store.Clones(ctx) {
		if err != nil {
			return fmt.Errorf("cleanup: %w", convert(err))
		}
		if !refers(c.ID, c.Labels, slotActive) {
			todo = append(todo, c.ID)
		}
	}

	// Children go before their parents: each pass removes what nothing
	// depends on any more, until a pass removes nothing.
	var errs []error
	for len(todo) > 0 {
		var busy []string
		for _, id := range todo {
			err := s.removeUnreferenced(ctx, id)
			switch {
			case errors.Is(err, zlayer.ErrBusy):
				busy = append(busy, id)
			case err != nil && !errors.Is(err, zlayer.ErrNotFound):
				errs = append(errs, fmt.Errorf("cleanup %q: %w", id, convert(err)))
			}
		}
		if len(busy) == len(todo) {
			for _, id := range busy {
				s.log.Info("cleanup left a dataset in use", "id", id)
			}
			break
		}
		todo = busy
	}
	return errors.Join(errs...)
}

func (s *Snapshotter) removeUnreferenced(ctx context.Context, id string) error {
	unlock := s.locks.lock(id)
	defer unlock()
	return s.store.Remove(ctx, id)
}

// refers reports whether the record in slot names the snapshot stored
// under id.
func refers(id string, labels map[string]string, slot string) bool {
	info, ok := decodeInfo(labels, slot)
	return ok && idOf(info.Name) == id
}
