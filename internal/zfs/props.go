package zfs

/*
#include <stdlib.h>
#include "zl.h"
*/
import "C"

import (
	"strings"
	"time"
	"unsafe"
)

// Props is what zlayer reads of one dataset or snapshot.
type Props struct {
	Name       string
	Snapshot   bool
	Origin     string   // the snapshot a clone was made from
	Clones     []string // clones of a snapshot
	Created    time.Time
	CreateTxg  uint64
	Used       uint64
	Referenced uint64
	Written    uint64 // bytes written since the previous snapshot
	Available  uint64
	RefQuota   uint64
	ReadOnly   bool
	UserRefs   uint64            // holds on a snapshot
	User       map[string]string // user properties set on this dataset itself
}

// Get reads the properties of one dataset or snapshot: a single open of
// that object, whatever else the pool holds.
func Get(name string) (p *Props, err error) {
	err = withDataset(name, func(zhp *C.zfs_handle_t) error {
		p = readProps(zhp)
		return nil
	})
	return p, err
}

// withDataset runs fn on an open handle of name, under the libzfs lock.
func withDataset(name string, fn func(*C.zfs_handle_t) error) error {
	if err := lock(); err != nil {
		return err
	}
	defer mu.Unlock()
	zhp, err := openLocked(name)
	if err != nil {
		return err
	}
	defer C.zfs_close(zhp)
	return fn(zhp)
}

func openLocked(name string) (*C.zfs_handle_t, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	types := C.int(C.ZFS_TYPE_FILESYSTEM | C.ZFS_TYPE_SNAPSHOT | C.ZFS_TYPE_VOLUME)
	zhp := C.zfs_open(hdl, cn, types)
	if zhp == nil {
		return nil, libErr("zfs_open", name)
	}
	return zhp, nil
}

func readProps(zhp *C.zfs_handle_t) *Props {
	p := &Props{
		Name:     C.GoString(C.zfs_get_name(zhp)),
		Snapshot: C.zfs_get_type(zhp) == C.ZFS_TYPE_SNAPSHOT,
		User:     map[string]string{},
	}
	num := func(prop C.zfs_prop_t) uint64 { return uint64(C.zfs_prop_get_int(zhp, prop)) }
	p.Created = time.Unix(int64(num(C.ZFS_PROP_CREATION)), 0)
	p.CreateTxg = num(C.ZFS_PROP_CREATETXG)
	p.Used = num(C.ZFS_PROP_USED)
	p.Referenced = num(C.ZFS_PROP_REFERENCED)
	p.Written = num(C.ZFS_PROP_WRITTEN)
	if p.Snapshot {
		p.UserRefs = num(C.ZFS_PROP_USERREFS)
		p.Clones = strProp(zhp, C.ZFS_PROP_CLONES, true)
	} else {
		p.Available = num(C.ZFS_PROP_AVAILABLE)
		p.RefQuota = num(C.ZFS_PROP_REFQUOTA)
		p.ReadOnly = num(C.ZFS_PROP_READONLY) != 0
		if o := strProp(zhp, C.ZFS_PROP_ORIGIN, false); len(o) == 1 {
			p.Origin = o[0]
		}
	}
	var name, value, source *C.char
	for pair := C.zl_user_prop_next(zhp, nil, &name, &value, &source); pair != nil; pair = C.zl_user_prop_next(zhp, pair, &name, &value, &source) {
		if C.GoString(source) == p.Name {
			p.User[C.GoString(name)] = C.GoString(value)
		}
	}
	return p
}

// strProp reads a string property; list splits a comma-separated value.
func strProp(zhp *C.zfs_handle_t, prop C.zfs_prop_t, list bool) []string {
	const size = 8192
	buf := (*C.char)(C.malloc(size))
	defer C.free(unsafe.Pointer(buf))
	if C.zfs_prop_get(zhp, prop, buf, size, nil, nil, 0, C.B_TRUE) != 0 {
		return nil
	}
	s := C.GoString(buf)
	if s == "" || s == "-" {
		return nil
	}
	if !list {
		return []string{s}
	}
	return strings.Split(s, ",")
}

// Set sets properties of a dataset in one call.
func Set(name string, props []Prop) error {
	return withDataset(name, func(zhp *C.zfs_handle_t) error {
		nvl, err := propList("zfs_prop_set_list", name, props, false)
		if err != nil {
			return err
		}
		defer C.nvlist_free(nvl)
		if C.zfs_prop_set_list(zhp, nvl) != 0 {
			return libErr("zfs_prop_set_list", name)
		}
		return nil
	})
}

// Inherit removes a locally set user property.
func Inherit(name, prop string) error {
	return withDataset(name, func(zhp *C.zfs_handle_t) error {
		cp := C.CString(prop)
		defer C.free(unsafe.Pointer(cp))
		if C.zfs_prop_inherit(zhp, cp, C.B_FALSE) != 0 {
			return libErr("zfs_prop_inherit", name)
		}
		return nil
	})
}

// Children reads the properties of the direct child filesystems of name.
func Children(name string) ([]*Props, error) {
	return iterate(name, func(zhp *C.zfs_handle_t, hs *C.zl_handles_t) C.int {
		return C.zl_iter_filesystems(zhp, hs)
	})
}

// Snapshots reads the properties of the snapshots of filesystem name.
func Snapshots(name string) ([]*Props, error) {
	return iterate(name, func(zhp *C.zfs_handle_t, hs *C.zl_handles_t) C.int {
		return C.zl_iter_snapshots(zhp, hs)
	})
}

func iterate(name string, it func(*C.zfs_handle_t, *C.zl_handles_t) C.int) (out []*Props, err error) {
	err = withDataset(name, func(zhp *C.zfs_handle_t) error {
		var hs C.zl_handles_t
		defer C.zl_handles_free(&hs)
		if rc := it(zhp, &hs); rc != 0 {
			return libErr("zfs_iter", name)
		}
		out = make([]*Props, 0, int(hs.n))
		for _, h := range unsafe.Slice(hs.h, int(hs.n)) {
			out = append(out, readProps(h))
		}
		return nil
	})
	return out, err
}
