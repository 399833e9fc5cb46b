package zfs

import (
	"errors"
	"strconv"

	golibzfs "github.com/bicomsystems/go-libzfs"
)

// PoolStatus is what zlayer reads of a pool.
type PoolStatus struct {
	Name      string
	Health    string // ONLINE, DEGRADED, FAULTED, ...
	Size      uint64
	Allocated uint64
	Free      uint64
}

// CreatePool creates a pool striped over file vdevs. fsProps apply to the
// pool's root filesystem.
func CreatePool(name string, files []string, ashift int, fsProps map[string]string) error {
	if err := lockPools(); err != nil {
		return err
	}
	defer mu.Unlock()
	vdevs := make([]golibzfs.VDevTree, len(files))
	for i, f := range files {
		vdevs[i] = golibzfs.VDevTree{Type: golibzfs.VDevTypeFile, Path: f}
	}
	props := golibzfs.PoolProperties{}
	if ashift > 0 {
		props[golibzfs.PoolPropAshift] = strconv.Itoa(ashift)
	}
	ds := golibzfs.DatasetProperties{}
	for k, v := range fsProps {
		p, ok := datasetProp(k)
		if !ok {
			return &Error{Op: "zpool_create", Name: name, Kind: KindInvalid,
				Err: errors.New("unsupported root property " + k)}
		}
		ds[p] = v
	}
	root := golibzfs.VDevTree{Type: golibzfs.VDevTypeRoot, Devices: vdevs}
	p, err := golibzfs.PoolCreate(name, root, map[string]string{}, props, ds)
	if err != nil {
		return poolErr("zpool_create", name, err)
	}
	p.Close()
	return nil
}

func datasetProp(name string) (golibzfs.Prop, bool) {
	switch name {
	case "mountpoint":
		return golibzfs.DatasetPropMountpoint, true
	case "canmount":
		return golibzfs.DatasetPropCanmount, true
	case "compression":
		return golibzfs.DatasetPropCompression, true
	case "atime":
		return golibzfs.DatasetPropAtime, true
	case "xattr":
		return golibzfs.DatasetPropXattr, true
	}
	return 0, false
}

// Pool reads a pool's health and space. It fails with KindNotFound when no
// imported pool has that name.
func Pool(name string) (st *PoolStatus, err error) {
	err = withPool(name, func(p *golibzfs.Pool) error {
		num := func(prop golibzfs.Prop) uint64 {
			v, _ := strconv.ParseUint(p.Properties[prop].Value, 10, 64)
			return v
		}
		st = &PoolStatus{
			Name:      name,
			Health:    p.Properties[golibzfs.PoolPropHealth].Value,
			Size:      num(golibzfs.PoolPropSize),
			Allocated: num(golibzfs.PoolPropAllocated),
			Free:      num(golibzfs.PoolPropFree),
		}
		return nil
	})
	return st, err
}

// withPool runs fn on an open go-libzfs pool, under the libzfs lock.
func withPool(name string, fn func(*golibzfs.Pool) error) error {
	if err := lockPools(); err != nil {
		return err
	}
	defer mu.Unlock()
	p, err := golibzfs.PoolOpen(name)
	if err != nil {
		return &Error{Op: "zpool_open", Name: name, Kind: KindNotFound, Err: err}
	}
	defer p.Close()
	return fn(&p)
}

// ExportPool exports a pool; its datasets must be unmounted first.
func ExportPool(name string, force bool) error {
	return withPool(name, func(p *golibzfs.Pool) error {
		if err := p.Export(force, "zlayer export"); err != nil {
			return poolErr("zpool_export", name, err)
		}
		return nil
	})
}

// ImportPool imports the pool called name found on devices or files in
// dirs.
func ImportPool(name string, dirs []string) error {
	if err := lockPools(); err != nil {
		return err
	}
	defer mu.Unlock()
	p, err := golibzfs.PoolImport(name, dirs)
	if err != nil {
		e := poolErr("zpool_import", name, err).(*Error)
		if e.Code == 0 {
			e.Kind = KindNotFound
		}
		return e
	}
	p.Close()
	return nil
}

// DestroyPool destroys a pool and everything in it.
func DestroyPool(name string) error {
	return withPool(name, func(p *golibzfs.Pool) error {
		if err := p.Destroy("zlayer destroy"); err != nil {
			return poolErr("zpool_destroy", name, err)
		}
		return nil
	})
}
