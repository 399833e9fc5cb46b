package zlayer

import (
	"fmt"
	"strings"
)

// Names of the user properties that carry a layer's metadata. ZFS keeps
// them with the dataset, so the pool alone is the source of truth.
const (
	propStore      = "zlayer:store"      // on the store's root dataset
	propKind       = "zlayer:kind"       // "layer" or "clone"
	propState      = "zlayer:state"      // "active", "committed" or "removing"
	propParent     = "zlayer:parent"     // parent layer id; a clone's source layer
	propCreated    = "zlayer:created"    // RFC 3339 time with nanoseconds
	propLabels     = "zlayer:labels"     // JSON object of caller labels
	propCommitting = "zlayer:committing" // id a commit in progress will give
)

const (
	kindLayer = "layer"
	kindClone = "clone"

	stateActive    = "active"
	stateCommitted = "committed"
	stateRemoving  = "removing"
)

// commitSnap names the one snapshot that holds a committed layer's content;
// children are clones of it. applySnap marks the state a layer returns to
// when an Apply fails.
const (
	commitSnap = "zlayer"
	applySnap  = "zlayer-apply"
)

// maxNameLen is ZFS's limit on a full dataset or snapshot name, counting
// the terminating NUL.
const maxNameLen = 256

// validName reports whether id can name a layer, clone or snapshot: ZFS's own
// character set for a name component, and no path-like forms.
func validName(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty id: %w", ErrInvalid)
	case id == "." || id == "..":
		return fmt.Errorf("id %q: %w", id, ErrInvalid)
	case id[0] == '-':
		return fmt.Errorf("id %q starts with '-': %w", id, ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return fmt.Errorf("id %q has character %q: %w", id, c, ErrInvalid)
		}
	}
	return nil
}

// validSnapName checks a caller's snapshot name; names starting "zlayer"
// are the store's own.
func validSnapName(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, "zlayer") {
		return fmt.Errorf("snapshot name %q is reserved: %w", name, ErrInvalid)
	}
	return nil
}
