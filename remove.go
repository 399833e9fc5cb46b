package zlayer

import (
	"context"
	"fmt"
	"strings"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Remove removes a layer or clone with all its snapshots. It fails with
// ErrBusy while anything depends on it: a child layer or clone of any of its
// snapshots, a mount (by this process or another), a user hold. Snapshots
// other tools put on the dataset, such as an auto-snapshot service's, do not
// keep it. An id whose removal was interrupted is finished.
func (s *Store) Remove(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.checkID(id); err != nil {
		return opErr("remove", id, err)
	}
	unlock := s.ids.lock(id)
	defer unlock()

	m, err := s.getAny(id)
	if err != nil {
		return opErr("remove", id, err)
	}
	var snaps []string
	if m.state != stateRemoving {
		if !m.visible() {
			return opErr("remove", m.dataset, ErrNotFound)
		}
		if snaps, err = s.checkRemovable(m); err != nil {
			return err
		}
		if err := zfs.Set(m.dataset, []zfs.Prop{{Name: propState, Value: stateRemoving}}); err != nil {
			return zfsErr("remove", m.dataset, err)
		}
		step("remove-marked")
	}
	return s.destroy(ctx, id, snaps)
}

// checkRemovable refuses a removal that would break something else, and
// returns the names of the dataset's snapshots for destroy.
func (s *Store) checkRemovable(m *meta) ([]string, error) {
	if s.mountedAnywhere(m.dataset) {
		return nil, opErr("remove", m.dataset, fmt.Errorf("mounted: %w", ErrBusy))
	}
	snaps, err := zfs.Snapshots(m.dataset)
	if err != nil {
		return nil, zfsErr("remove", m.dataset, err)
	}
	names := make([]string, len(snaps))
	for i, sn := range snaps {
		if len(sn.Clones) > 0 {
			return nil, opErr("remove", m.dataset,
				fmt.Errorf("snapshot %q has clones %s: %w", sn.Name, strings.Join(sn.Clones, ", "), ErrBusy))
		}
		if sn.UserRefs > 0 {
			return nil, opErr("remove", m.dataset, fmt.Errorf("snapshot %q is held: %w", sn.Name, ErrBusy))
		}
		names[i] = sn.Name
	}
	return names, nil
}

// destroy destroys a dataset marked for removal and its snapshots, listing
// them when names is nil. A dataset or snapshot already gone counts as
// destroyed, so a removal that a crash cut short can be run again.
func (s *Store) destroy(ctx context.Context, id string, names []string) error {
	ds := s.dataset(id)
	if names == nil {
		snaps, err := zfs.Snapshots(ds)
		if isKind(err, zfs.KindNotFound) {
			return nil
		}
		if err != nil {
			return zfsErr("remove", ds, err)
		}
		names = make([]string, len(snaps))
		for i, sn := range snaps {
			names[i] = sn.Name
		}
	}
	if err := zfs.DestroySnapshots(names, false); err != nil && !isKind(err, zfs.KindNotFound) {
		return zfsErr("remove", ds, err)
	}
	step("remove-snapshots")
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := zfs.Destroy(ds); err != nil && !isKind(err, zfs.KindNotFound) {
		return zfsErr("remove", ds, err)
	}
	return nil
}
