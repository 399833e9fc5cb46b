package zlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount describes how to mount a layer or clone, for runtimes that mount
// themselves (mount(2) with these type, source and options).
type Mount struct {
	Type    string   // always "zfs"
	Source  string   // the dataset
	Options []string // "ro" or "rw"
}

// MountOptions configures Store.Mount. The zero value mounts read-write.
type MountOptions struct {
	ReadOnly bool
}

// mountRef counts the callers using one mount of this process.
type mountRef struct {
	id       string
	dataset  string
	readOnly bool
	created  bool // Mount made the target directory; Unmount removes it
	refs     int
}

// MountSpec returns the mount of a layer or clone without mounting it.
// Committed layers and read-only clones are always read-only.
func (s *Store) MountSpec(ctx context.Context, id string, readOnly bool) (Mount, error) {
	if err := ctx.Err(); err != nil {
		return Mount{}, err
	}
	m, err := s.get(id)
	if err != nil {
		return Mount{}, opErr("mount spec", id, err)
	}
	opt := "rw"
	if readOnly || m.readOnly || m.state == stateCommitted {
		opt = "ro"
	}
	return Mount{Type: "zfs", Source: m.dataset, Options: []string{opt}}, nil
}

// Mount mounts a layer or clone at target, creating the directory when it
// is missing. Mounting the same id at the same target again counts one more
// user and succeeds only with the same access; each Mount needs its own
// Unmount. Committed layers and read-only clones mount read-only only.
func (s *Store) Mount(ctx context.Context, id, target string, opts *MountOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var o MountOptions
	if opts != nil {
		o = *opts
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return opErr("mount", target, err)
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return opErr("mount", id, err)
	}
	if !o.ReadOnly && (m.readOnly || m.state == stateCommitted) {
		return opErr("mount", m.dataset, fmt.Errorf("read-write mount of a read-only dataset: %w", ErrInvalid))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.mounts[target]; r != nil {
		if r.id != id {
			return opErr("mount", target, fmt.Errorf("already has %q mounted: %w", r.dataset, ErrBusy))
		}
		if r.readOnly != o.ReadOnly {
			return opErr("mount", target, fmt.Errorf("already mounted with other access: %w", ErrBusy))
		}
		r.refs++
		return nil
	}
	created := false
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return opErr("mount", target, err)
		}
		created = true
	}
	var flags uintptr
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(m.dataset, target, "zfs", flags, ""); err != nil {
		if created {
			os.Remove(target)
		}
		return opErr("mount", target, fmt.Errorf("mount %q: %w", m.dataset, mountErr(err)))
	}
	s.mounts[target] = &mountRef{id: id, dataset: m.dataset, readOnly: o.ReadOnly, created: created, refs: 1}
	return nil
}

// Unmount releases one Mount of target. The last release unmounts it and
// removes the directory if Mount made it. While files under the mount are
// in use the unmount fails with ErrBusy and the mount stays counted.
func (s *Store) Unmount(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return opErr("unmount", target, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mounts[target]
	if r == nil {
		return opErr("unmount", target, fmt.Errorf("not mounted by this store: %w", ErrNotFound))
	}
	if r.refs > 1 {
		r.refs--
		return nil
	}
	if err := unix.Unmount(target, 0); err != nil {
		return opErr("unmount", target, mountErr(err))
	}
	delete(s.mounts, target)
	if r.created {
		if err := os.Remove(target); err != nil {
			s.log.Warn("removing mount point failed", "path", target, "err", err)
		}
	}
	return nil
}

// mountedAnywhere reports whether the dataset is mounted in this mount
// namespace, by this store or anyone else.
func (s *Store) mountedAnywhere(ds string) bool {
	s.mu.Lock()
	for _, r := range s.mounts {
		if r.dataset == ds {
			s.mu.Unlock()
			return true
		}
	}
	s.mu.Unlock()
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.FSType != "zfs" || i.Source != ds, false
	})
	return err != nil || len(ms) > 0
}

func mountErr(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// mountPrivate mounts a dataset for the store's own short work (apply,
// diff), outside the refcounted mounts callers see.
func (s *Store) mountPrivate(ds, dir string, readOnly bool) error {
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(ds, dir, "zfs", flags, ""); err != nil {
		return opErr("mount", dir, fmt.Errorf("mount %q: %w", ds, mountErr(err)))
	}
	return nil
}

func (s *Store) unmountPrivate(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return opErr("unmount", dir, mountErr(err))
	}
	return nil
}
