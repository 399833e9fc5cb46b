// Package zfs is zlayer's binding of libzfs and libzfs_core (OpenZFS 2.1).
//
// Everything that knows about libzfs lives here, so that supporting another
// OpenZFS release touches nothing outside this package.
//
// libzfs handles are not safe for concurrent use: two goroutines iterating
// datasets at once can abort the process inside libzfs's namespace reload.
// Every call that touches a libzfs handle (ours or go-libzfs's) therefore
// holds one process-wide lock. libzfs_core calls (lzc_*) are plain ioctls on
// their own descriptor and run without it, which is where the hot paths
// (clone, snapshot, destroy, hold) spend their time.
package zfs

/*
#cgo LDFLAGS: -lzfs -lzfs_core -lnvpair
#cgo CFLAGS: -I/usr/include/libzfs -I/usr/include/libspl -DHAVE_IOCTL_IN_SYS_IOCTL_H -D_GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include "zl.h"

// go-libzfs opens its own handle in its package init, without checking it.
extern libzfs_handle_t *libzfsHandle;
static int zl_golibzfs_ready(void) { return libzfsHandle != NULL; }
static int zl_golibzfs_errno(void) { return libzfs_errno(libzfsHandle); }
static const char *zl_golibzfs_desc(void) { return libzfs_error_description(libzfsHandle); }
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Device is the control device of the ZFS kernel module.
const Device = "/dev/zfs"

var (
	// mu serialises every use of a libzfs handle.
	mu sync.Mutex

	hdl    *C.libzfs_handle_t
	inited bool

	// ready mirrors inited for readers that do not take mu.
	ready atomic.Bool
)

// Available reports whether ZFS can be used from this process. Once it has
// succeeded it takes no lock, so libzfs_core calls never wait behind a
// long libzfs call such as an iteration.
func Available() error {
	if ready.Load() {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	return startLocked()
}

// startLocked opens the process's libzfs and libzfs_core handles once ZFS
// is reachable. A failure is not remembered, so a module loaded later is
// picked up by the next call.
func startLocked() error {
	if inited {
		return nil
	}
	fi, err := os.Stat(Device)
	if err != nil {
		return unavailable(fmt.Errorf("%s: %w", Device, err))
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return unavailable(fmt.Errorf("%s is not a character device", Device))
	}
	f, err := os.OpenFile(Device, os.O_RDWR, 0)
	if err != nil {
		return unavailable(fmt.Errorf("open %s: %w", Device, err))
	}
	f.Close()

	h, errno := C.libzfs_init()
	if h == nil {
		msg := "libzfs_init failed"
		if e, ok := errno.(syscall.Errno); ok {
			msg = C.GoString(C.libzfs_error_init(C.int(e)))
		}
		return unavailable(fmt.Errorf("%s", msg))
	}
	if rc := C.libzfs_core_init(); rc != 0 {
		C.libzfs_fini(h)
		return unavailable(fmt.Errorf("libzfs_core_init: %w", syscall.Errno(rc)))
	}
	C.libzfs_print_on_error(h, C.B_FALSE)
	C.libzfs_mnttab_cache(h, C.B_FALSE)
	hdl = h
	inited = true
	ready.Store(true)
	return nil
}

// lock takes the libzfs lock after making sure ZFS is reachable. The caller
// must call mu.Unlock when it returns nil.
func lock() error {
	mu.Lock()
	if err := startLocked(); err != nil {
		mu.Unlock()
		return err
	}
	return nil
}

// lockPools is lock for calls into go-libzfs, whose handle was opened once
// at program start: if ZFS was missing then, that handle is NULL for good
// and every go-libzfs call would crash.
func lockPools() error {
	if err := lock(); err != nil {
		return err
	}
	if C.zl_golibzfs_ready() == 0 {
		mu.Unlock()
		return unavailable(fmt.Errorf("libzfs was not ready when the program started"))
	}
	return nil
}

func unavailable(err error) error {
	return &Error{Op: "open zfs", Err: err, Kind: KindUnavailable}
}

// poolErr makes an Error from go-libzfs's last failure, using the EZFS code
// its handle recorded; the caller holds mu.
func poolErr(op, name string, err error) error {
	code := int(C.zl_golibzfs_errno())
	return &Error{Op: op, Name: name, Code: code, Err: err, Kind: codeKind(code)}
}
