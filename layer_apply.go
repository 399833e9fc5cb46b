package zlayer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Apply unpacks an OCI layer tar (plain, gzip or zstd) into active layer or
// clone id. It is all or nothing: the dataset is snapshotted first and, on
// any failure (bad input, a digest mismatch, no space, a cancelled
// context), rolled back to exactly what it was before the call.
//
// When opts.AvailableBytes is zero, the space the dataset can still use is
// taken from ZFS, so that an archive declaring more than that is refused
// before it is written.
func (s *Store) Apply(ctx context.Context, id string, r io.Reader, opts *ApplyOptions) (res ApplyResult, err error) {
	if err := ctx.Err(); err != nil {
		return res, err
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return res, opErr("apply", id, err)
	}
	if m.state == stateCommitted || m.readOnly {
		return res, opErr("apply", m.dataset, fmt.Errorf("layer is read-only: %w", ErrInvalid))
	}
	if s.mountedAnywhere(m.dataset) {
		// Rolling back under a writer would lose its writes silently.
		return res, opErr("apply", m.dataset, fmt.Errorf("mounted: %w", ErrBusy))
	}
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if o.AvailableBytes == 0 {
		p, err := zfs.Get(m.dataset)
		if err != nil {
			return res, zfsErr("apply", m.dataset, err)
		}
		o.AvailableBytes = int64(p.Available)
	}

	snap := m.dataset + "@" + applySnap
	if err := zfs.Snapshot(snap, nil); err != nil {
		return res, zfsErr("apply", snap, err)
	}
	defer func() {
		if err != nil {
			if rerr := zfs.Rollback(m.dataset, snap); rerr != nil {
				err = errors.Join(err, zfsErr("roll back failed apply", m.dataset, rerr))
				return // keep the snapshot: reopening the store retries
			}
		}
		if derr := zfs.DestroySnapshots([]string{snap}, false); derr != nil {
			s.log.Warn("dropping apply snapshot failed", "snapshot", snap, "err", derr)
		}
	}()
	step("apply-snapshot")

	dir, err := os.MkdirTemp("", "zlayer-apply-")
	if err != nil {
		return res, opErr("apply", m.dataset, err)
	}
	defer os.Remove(dir)
	if err := s.mountPrivate(m.dataset, dir, false); err != nil {
		return res, err
	}
	res, err = ApplyDir(ctx, dir, r, &o)
	if uerr := s.unmountPrivate(dir); uerr != nil {
		err = errors.Join(err, uerr)
	}
	if err != nil {
		// ApplyDir names the entry; the dataset says which layer.
		return res, opErr("apply to", m.dataset, err)
	}
	return res, nil
}
