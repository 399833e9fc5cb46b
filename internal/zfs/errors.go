package zfs

/*
#include "zl.h"
*/
import "C"

import (
	"errors"
	"syscall"
)

// Kind classifies a failure so that callers can map it to their own
// sentinel errors without matching message text.
type Kind int

const (
	KindOther Kind = iota
	KindNotFound
	KindExist
	KindBusy
	KindInvalid
	KindUnavailable
	KindNoSpace
)

// Error is a failed libzfs or libzfs_core call.
type Error struct {
	Op   string // the call, such as "lzc_clone"
	Name string // the dataset, snapshot or pool
	Code int    // libzfs's EZFS_* code, or 0
	Err  error  // the errno or libzfs's description
	Kind Kind   // the class of failure
}

func (e *Error) Error() string {
	s := e.Op
	if e.Name != "" {
		s += " " + e.Name
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// errnoErr makes an Error from a libzfs_core return value.
func errnoErr(op, name string, rc C.int) error {
	if rc == 0 {
		return nil
	}
	errno := syscall.Errno(rc)
	return &Error{Op: op, Name: name, Err: errno, Kind: errnoKind(errno)}
}

func errnoKind(e syscall.Errno) Kind {
	switch e {
	case syscall.ENOENT, syscall.ESRCH:
		return KindNotFound
	case syscall.EEXIST:
		return KindExist
	case syscall.EBUSY, syscall.ENOTEMPTY:
		return KindBusy
	case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.EXDEV, syscall.ENOTSUP:
		return KindInvalid
	case syscall.ENOSPC, syscall.EDQUOT:
		return KindNoSpace
	case syscall.ENXIO, syscall.ENODEV:
		return KindUnavailable
	}
	return KindOther
}

// libErr makes an Error from the last failure recorded on the handle; the
// caller holds mu.
func libErr(op, name string) error {
	code := int(C.libzfs_errno(hdl))
	desc := C.GoString(C.libzfs_error_description(hdl))
	return &Error{Op: op, Name: name, Code: code, Err: errors.New(desc),
		Kind: codeKind(code)}
}

func codeKind(code int) Kind {
	switch code {
	case C.EZFS_NOENT:
		return KindNotFound
	case C.EZFS_EXISTS, C.EZFS_REFTAG_HOLD:
		return KindExist
	case C.EZFS_BUSY:
		return KindBusy
	case C.EZFS_INVALIDNAME, C.EZFS_BADPROP, C.EZFS_BADTYPE,
		C.EZFS_NAMETOOLONG, C.EZFS_TAGTOOLONG, C.EZFS_INVALCONFIG,
		C.EZFS_BADVERSION:
		return KindInvalid
	case C.EZFS_NOSPC:
		return KindNoSpace
	case C.EZFS_POOLUNAVAIL:
		return KindUnavailable
	}
	return KindOther
}
