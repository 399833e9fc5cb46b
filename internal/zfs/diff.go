package zfs

/*
#include <stdlib.h>
#include "zl.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// Diff streams libzfs's list of changes between snapshot from and snapshot
// to (zfs diff -FH: tab-separated, classified, names escaped), where from
// is an earlier snapshot of to's filesystem or of an origin it was cloned
// from. The filesystem holding to must be mounted; the paths are absolute,
// under its mount point.
//
// The diff runs on a libzfs handle of its own, so it does not hold up other
// calls while the kernel walks the change list. It cannot be interrupted:
// libzfs writes from a thread the Go runtime does not own, and a write to a
// closed pipe would kill the process. Close therefore reads what is left.
func Diff(from, to string) (io.ReadCloser, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	fs, _, ok := strings.Cut(to, "@")
	if !ok {
		return nil, &Error{Op: "zfs_show_diffs", Name: to, Kind: KindInvalid,
			Err: errors.New("not a snapshot")}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d := &diffReader{r: r, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.err = runDiff(fs, from, to, w)
		w.Close()
	}()
	return d, nil
}

func runDiff(fs, from, to string, w *os.File) error {
	// The handle is this goroutine's alone; libzfs keeps per-handle state
	// such as the last error, which another thread must not overwrite.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, errno := C.libzfs_init()
	if h == nil {
		return &Error{Op: "libzfs_init", Name: to, Kind: KindUnavailable, Err: fmt.Errorf("%v", errno)}
	}
	defer C.libzfs_fini(h)
	C.libzfs_print_on_error(h, C.B_FALSE)

	cfs, cfrom, cto := C.CString(fs), C.CString(from), C.CString(to)
	defer C.free(unsafe.Pointer(cfs))
	defer C.free(unsafe.Pointer(cfrom))
	defer C.free(unsafe.Pointer(cto))
	flags := C.int(C.ZFS_DIFF_PARSEABLE | C.ZFS_DIFF_CLASSIFY)
	rc, cerr := C.zl_show_diffs(h, cfs, C.int(w.Fd()), cfrom, cto, flags)
	if rc == 0 {
		return nil
	}
	code := int(C.libzfs_errno(h))
	if code == C.EZFS_SUCCESS {
		e, _ := cerr.(syscall.Errno)
		return &Error{Op: "zfs_show_diffs", Name: to, Err: e, Kind: errnoKind(e)}
	}
	desc := C.GoString(C.libzfs_error_description(h))
	return &Error{Op: "zfs_show_diffs", Name: from + " " + to, Code: code,
		Err: errors.New(desc), Kind: codeKind(code)}
}

type diffReader struct {
	r    *os.File
	done chan struct{}
	err  error
	once sync.Once
}

func (d *diffReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF {
		<-d.done
		if d.err != nil {
			return n, d.err
		}
	}
	return n, err
}

// Close drains and closes the stream and reports the diff's error.
func (d *diffReader) Close() error {
	d.once.Do(func() {
		io.Copy(io.Discard, d.r)
		<-d.done
		d.r.Close()
	})
	return d.err
}
