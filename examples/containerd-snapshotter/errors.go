package snapshotter

import (
	"errors"

	"github.com/containerd/errdefs"
	"github.com/zlayer/zlayer"
)

// classified is an error from zlayer that also matches an errdefs class,
// with zlayer's message unchanged.
type classified struct {
	err   error
	class error
}

func (e *classified) Error() string   { return e.err.Error() }
func (e *classified) Unwrap() []error { return []error{e.err, e.class} }

// convert adds to an error from zlayer the errdefs class that containerd
// and its gRPC mapping test for, keeping zlayer's sentinel and message.
func convert(err error) error {
	var class error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zlayer.ErrNotFound):
		class = errdefs.ErrNotFound
	case errors.Is(err, zlayer.ErrExist):
		class = errdefs.ErrAlreadyExists
	case errors.Is(err, zlayer.ErrBusy):
		// A layer with children, a mounted dataset, a held snapshot:
		// containerd's word for "not while something depends on it".
		class = errdefs.ErrFailedPrecondition
	case errors.Is(err, zlayer.ErrInvalid):
		class = errdefs.ErrInvalidArgument
	case errors.Is(err, zlayer.ErrNoSpace):
		class = errdefs.ErrResourceExhausted
	case errors.Is(err, zlayer.ErrUnavailable):
		class = errdefs.ErrUnavailable
	default:
		return err
	}
	return &classified{err: err, class: class}
}
