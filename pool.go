package zlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Pool is an imported ZFS pool.
type Pool struct {
	name  string
	files []string // vdev files CreateFilePool made; removed by Destroy
}

// PoolStatus is a pool's health and space, from ZFS's own accounting.
type PoolStatus struct {
	Health    string // ONLINE, DEGRADED, FAULTED, ...
	Size      uint64
	Allocated uint64
	Free      uint64
}

// FilePoolOptions sizes a pool made on files.
type FilePoolOptions struct {
	// Size of each vdev file in bytes; 0 means 1 GiB. ZFS's minimum is
	// 64 MiB. The files are sparse, so space is used only as data arrives.
	Size int64
	// Vdevs is the number of files striped together; 0 means one.
	Vdevs int
	// Ashift is log2 of the sector size ZFS assumes; 0 means 12 (4 KiB).
	Ashift int
}

// Available reports whether ZFS can be reached from this process. The error
// matches ErrUnavailable and says why when it cannot.
func Available() error {
	return zfsErr("open zfs", zfs.Device, zfs.Available())
}

// OpenPool opens an imported pool by name.
func OpenPool(ctx context.Context, name string) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validPoolName(name); err != nil {
		return nil, opErr("open pool", name, err)
	}
	if _, err := zfs.Pool(name); err != nil {
		return nil, zfsErr("open pool", name, err)
	}
	return &Pool{name: name}, nil
}

// CreateFilePool creates a pool on sparse files in dir, for tests and
// embedded use. The files are named after the pool; Destroy removes them.
func CreateFilePool(ctx context.Context, name, dir string, opts *FilePoolOptions) (p *Pool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validPoolName(name); err != nil {
		return nil, opErr("create pool", name, err)
	}
	var o FilePoolOptions
	if opts != nil {
		o = *opts
	}
	if o.Size == 0 {
		o.Size = 1 << 30
	}
	if o.Vdevs == 0 {
		o.Vdevs = 1
	}
	if o.Ashift == 0 {
		o.Ashift = 12
	}
	if o.Size < 64<<20 || o.Vdevs < 0 || o.Ashift < 9 || o.Ashift > 16 {
		return nil, opErr("create pool", name,
			fmt.Errorf("size %d, %d vdevs, ashift %d: %w", o.Size, o.Vdevs, o.Ashift, ErrInvalid))
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if _, err := zfs.Pool(name); err == nil {
		return nil, opErr("create pool", name, ErrExist)
	}

	p = &Pool{name: name}
	defer func() {
		if err != nil {
			for _, f := range p.files {
				os.Remove(f)
			}
		}
	}()
	for i := range o.Vdevs {
		f := filepath.Join(dir, fmt.Sprintf("%s.%d.vdev", name, i))
		if err := makeSparse(f, o.Size); err != nil {
			return nil, opErr("create pool", name, err)
		}
		p.files = append(p.files, f)
	}
	root := map[string]string{"mountpoint": "legacy", "canmount": "off"}
	if err := zfs.CreatePool(name, p.files, o.Ashift, root); err != nil {
		return nil, zfsErr("create pool", name, err)
	}
	return p, nil
}

func makeSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("vdev file %s: %w", path, ErrExist)
		}
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// ImportPool imports the pool called name from devices or files in dirs.
func ImportPool(ctx context.Context, name string, dirs ...string) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validPoolName(name); err != nil {
		return nil, opErr("import pool", name, err)
	}
	if len(dirs) == 0 {
		return nil, opErr("import pool", name, fmt.Errorf("no directory to search: %w", ErrInvalid))
	}
	if err := zfs.ImportPool(name, dirs); err != nil {
		return nil, zfsErr("import pool", name, err)
	}
	return &Pool{name: name}, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Status reads the pool's health and space.
func (p *Pool) Status(ctx context.Context) (PoolStatus, error) {
	if err := ctx.Err(); err != nil {
		return PoolStatus{}, err
	}
	st, err := zfs.Pool(p.name)
	if err != nil {
		return PoolStatus{}, zfsErr("pool status", p.name, err)
	}
	return PoolStatus{Health: st.Health, Size: st.Size, Allocated: st.Allocated, Free: st.Free}, nil
}

// Export unmounts the pool's datasets and exports it. The vdev files of a
// file pool stay, so the pool can be imported again.
func (p *Pool) Export(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return zfsErr("export pool", p.name, zfs.ExportPool(p.name, false))
}

// Destroy destroys the pool and all it holds, and removes the vdev files
// that CreateFilePool made for it.
func (p *Pool) Destroy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := zfs.DestroyPool(p.name); err != nil {
		return zfsErr("destroy pool", p.name, err)
	}
	var errs []error
	for _, f := range p.files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return opErr("destroy pool", p.name, errors.Join(errs...))
}

func validPoolName(name string) error {
	if name == "" {
		return fmt.Errorf("empty pool name: %w", ErrInvalid)
	}
	c := name[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return fmt.Errorf("pool name must start with a letter: %w", ErrInvalid)
	}
	if err := validName(name); err != nil {
		return err
	}
	if len(name) >= maxNameLen {
		return fmt.Errorf("pool name too long: %w", ErrInvalid)
	}
	return nil
}

// Sync waits until everything written to the pool is on disk. Space
// figures (Usage, Status) reflect writes only after that.
func (p *Pool) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return zfsErr("sync pool", p.name, zfs.Sync(p.name))
}
