package zlayer

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Sentinel errors. Every error the package returns for one of these
// conditions wraps the sentinel, so callers test with errors.Is.
var (
	// ErrNotFound reports a layer, clone, snapshot or pool that does not
	// exist.
	ErrNotFound = errors.New("not found")

	// ErrExist reports an id, snapshot or pool that is already taken.
	ErrExist = errors.New("already exists")

	// ErrBusy reports an object that others depend on: a layer with
	// children or clones, a mounted dataset, a held snapshot.
	ErrBusy = errors.New("busy")

	// ErrInvalid reports input refused before anything was changed: a bad
	// id, a layer in the wrong state, a malformed archive.
	ErrInvalid = errors.New("invalid argument")

	// ErrUnavailable reports that ZFS cannot be reached: no /dev/zfs, the
	// kernel module not loaded, or libzfs failing to start.
	ErrUnavailable = errors.New("zfs unavailable")

	// ErrNoSpace reports a pool, quota or apply that ran out of space.
	ErrNoSpace = errors.New("no space left")
)

// Error describes a failed operation on a dataset, snapshot, pool or path.
type Error struct {
	Op     string // the operation, such as "create layer" or "mount"
	Target string // the dataset, snapshot, pool or path it acted on
	Err    error  // the cause; wraps one of the sentinels where one applies
}

func (e *Error) Error() string {
	if e.Target == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + " " + strconv.Quote(e.Target) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func opErr(op, target string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Target: target, Err: err}
}

// zfsErr wraps a failure of the ZFS binding, adding the sentinel that the
// libzfs error code or errno selects.
func zfsErr(op, target string, err error) error {
	if err == nil {
		return nil
	}
	var ze *zfs.Error
	if errors.As(err, &ze) {
		if s := kindSentinel(ze.Kind); s != nil {
			err = fmt.Errorf("%w: %w", s, err)
		}
	}
	return &Error{Op: op, Target: target, Err: err}
}

func kindSentinel(k zfs.Kind) error {
	switch k {
	case zfs.KindNotFound:
		return ErrNotFound
	case zfs.KindExist:
		return ErrExist
	case zfs.KindBusy:
		return ErrBusy
	case zfs.KindInvalid:
		return ErrInvalid
	case zfs.KindUnavailable:
		return ErrUnavailable
	case zfs.KindNoSpace:
		return ErrNoSpace
	}
	return nil
}

// isKind reports whether err came from the binding with the given class.
func isKind(err error, k zfs.Kind) bool {
	var ze *zfs.Error
	return errors.As(err, &ze) && ze.Kind == k
}
