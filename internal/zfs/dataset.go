package zfs

/*
#include <stdlib.h>
#include "zl.h"
*/
import "C"

import (
	"syscall"
	"unsafe"
)

// Prop is one property given at creation or set later. Values are written
// as the zfs command takes them ("legacy", "on", "64M"); the binding types
// them as the kernel expects.
type Prop struct {
	Name, Value string
}

// propList builds a property list. Typed lists go to libzfs_core, which
// takes values as the kernel stores them; libzfs takes strings and checks
// them itself.
func propList(op, name string, props []Prop, typed bool) (*C.nvlist_t, error) {
	var nvl *C.nvlist_t
	if rc := C.nvlist_alloc(&nvl, C.NV_UNIQUE_NAME, 0); rc != 0 {
		return nil, errnoErr(op, name, rc)
	}
	for _, p := range props {
		cn, cv := C.CString(p.Name), C.CString(p.Value)
		var rc C.int
		if typed {
			rc = C.zl_nvl_add_prop(nvl, cn, cv)
		} else {
			rc = C.nvlist_add_string(nvl, cn, cv)
		}
		C.free(unsafe.Pointer(cn))
		C.free(unsafe.Pointer(cv))
		if rc != 0 {
			C.nvlist_free(nvl)
			return nil, &Error{Op: op, Name: name, Err: syscall.Errno(rc),
				Kind: KindInvalid}
		}
	}
	return nvl, nil
}

// CreateFilesystem creates a filesystem with its properties in one ioctl.
// The kernel sets them in a transaction after the one that creates the
// dataset, so a machine crash between the two leaves it without them.
func CreateFilesystem(name string, props []Prop) error {
	if err := Available(); err != nil {
		return err
	}
	nvl, err := propList("lzc_create", name, props, true)
	if err != nil {
		return err
	}
	defer C.nvlist_free(nvl)
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return errnoErr("lzc_create", name, C.lzc_create(cn, C.LZC_DATSET_TYPE_ZFS, nvl, nil, 0))
}

// Clone creates filesystem name from snapshot origin with its properties
// in one ioctl, as CreateFilesystem does.
func Clone(name, origin string, props []Prop) error {
	if err := Available(); err != nil {
		return err
	}
	nvl, err := propList("lzc_clone", name, props, true)
	if err != nil {
		return err
	}
	defer C.nvlist_free(nvl)
	cn, co := C.CString(name), C.CString(origin)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(co))
	return errnoErr("lzc_clone", name, C.lzc_clone(cn, co, nvl))
}

// Snapshot creates snapshot snap ("fs@name") with user properties.
func Snapshot(snap string, props []Prop) error {
	if err := Available(); err != nil {
		return err
	}
	var nvl *C.nvlist_t
	if len(props) > 0 {
		var err error
		if nvl, err = propList("lzc_snapshot", snap, props, true); err != nil {
			return err
		}
		defer C.nvlist_free(nvl)
	}
	cs := C.CString(snap)
	defer C.free(unsafe.Pointer(cs))
	return errnoErr("lzc_snapshot", snap, C.zl_snapshot_one(cs, nvl))
}

// Destroy destroys a filesystem that has no snapshots or children.
func Destroy(name string) error {
	if err := Available(); err != nil {
		return err
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return errnoErr("lzc_destroy", name, C.lzc_destroy(cn))
}

// DestroySnapshots destroys snapshots atomically; all must belong to one
// pool. With deferred set, a held or cloned snapshot is marked for
// destruction instead of failing.
func DestroySnapshots(snaps []string, deferred bool) error {
	if len(snaps) == 0 {
		return nil
	}
	if err := Available(); err != nil {
		return err
	}
	cs := make([]*C.char, len(snaps))
	for i, s := range snaps {
		cs[i] = C.CString(s)
	}
	defer func() {
		for _, p := range cs {
			C.free(unsafe.Pointer(p))
		}
	}()
	d := C.int(0)
	if deferred {
		d = 1
	}
	arr := (**C.char)(C.malloc(C.size_t(len(cs)) * C.size_t(unsafe.Sizeof(cs[0]))))
	defer C.free(unsafe.Pointer(arr))
	copy(unsafe.Slice(arr, len(cs)), cs)
	return errnoErr("lzc_destroy_snaps", snaps[0], C.zl_destroy_snaps(arr, C.int(len(cs)), d))
}

// Rename renames a filesystem within its pool.
func Rename(from, to string) error {
	if err := Available(); err != nil {
		return err
	}
	cf, ct := C.CString(from), C.CString(to)
	defer C.free(unsafe.Pointer(cf))
	defer C.free(unsafe.Pointer(ct))
	return errnoErr("lzc_rename", from, C.lzc_rename(cf, ct))
}

// Exists reports whether a dataset or snapshot exists.
func Exists(name string) bool {
	if Available() != nil {
		return false
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return C.lzc_exists(cn) != 0
}

// Rollback rolls filesystem fs back to snap, which must be its most recent
// snapshot.
func Rollback(fs, snap string) error {
	if err := Available(); err != nil {
		return err
	}
	cf, cs := C.CString(fs), C.CString(snap)
	defer C.free(unsafe.Pointer(cf))
	defer C.free(unsafe.Pointer(cs))
	return errnoErr("lzc_rollback_to", snap, C.lzc_rollback_to(cf, cs))
}

// Hold places a user hold named tag on snap.
func Hold(snap, tag string) error {
	if err := Available(); err != nil {
		return err
	}
	cs, ct := C.CString(snap), C.CString(tag)
	defer C.free(unsafe.Pointer(cs))
	defer C.free(unsafe.Pointer(ct))
	return errnoErr("lzc_hold", snap, C.zl_hold_one(cs, ct))
}

// Release removes the user hold named tag from snap.
func Release(snap, tag string) error {
	if err := Available(); err != nil {
		return err
	}
	cs, ct := C.CString(snap), C.CString(tag)
	defer C.free(unsafe.Pointer(cs))
	defer C.free(unsafe.Pointer(ct))
	return errnoErr("lzc_release", snap, C.zl_release_one(cs, ct))
}

// Holds lists the user hold tags on snap.
func Holds(snap string) ([]string, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	cs := C.CString(snap)
	defer C.free(unsafe.Pointer(cs))
	var nvl *C.nvlist_t
	if rc := C.zl_holds(cs, &nvl); rc != 0 {
		return nil, errnoErr("lzc_get_holds", snap, rc)
	}
	defer C.nvlist_free(nvl)
	var tags []string
	for p := C.nvlist_next_nvpair(nvl, nil); p != nil; p = C.nvlist_next_nvpair(nvl, p) {
		tags = append(tags, C.GoString(C.nvpair_name(p)))
	}
	return tags, nil
}

// Sync waits until everything written to pool is on disk, so that space
// accounting (written, used) reflects it.
func Sync(pool string) error {
	if err := Available(); err != nil {
		return err
	}
	cp := C.CString(pool)
	defer C.free(unsafe.Pointer(cp))
	return errnoErr("lzc_sync", pool, C.zl_sync(cp))
}
