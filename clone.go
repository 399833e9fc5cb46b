package zlayer

import (
	"context"
	"fmt"
	"iter"
	"time"
)

// Clone is a container's writable layer: a clone of a committed layer's
// snapshot. Its writes allocate only the blocks they change; files deleted
// in it are hidden in the clone alone. A read-only clone is a view.
type Clone struct {
	ID       string
	Layer    string // the committed layer it was cloned from
	ReadOnly bool
	Quota    uint64 // refquota in bytes; 0 for none
	Created  time.Time
	Labels   map[string]string
	Dataset  string
}

// CloneOptions configures CreateClone. The zero value is usable.
type CloneOptions struct {
	Labels map[string]string
	// Quota limits the bytes the clone may refer to (refquota), set as the
	// clone is made; 0 means none.
	Quota uint64
	// ReadOnly makes a view: the clone and every mount of it read-only.
	ReadOnly bool
}

func (m *meta) clone() *Clone {
	return &Clone{ID: m.id, Layer: m.parent, ReadOnly: m.readOnly, Quota: m.quota,
		Created: m.created, Labels: m.labels, Dataset: m.dataset}
}

// CreateClone makes clone id of committed layer from.
func (s *Store) CreateClone(ctx context.Context, id, from string, opts *CloneOptions) (*Clone, error) {
	var o CloneOptions
	if opts != nil {
		o = *opts
	}
	if from == "" {
		return nil, opErr("create clone", id, fmt.Errorf("no layer to clone: %w", ErrInvalid))
	}
	m := meta{kind: kindClone, state: stateActive, parent: from, labels: o.Labels}
	c, err := s.create(ctx, "create clone", id, from, m, o.Quota, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	return c.clone(), nil
}

// Clone returns the clone with the given id.
func (s *Store) Clone(ctx context.Context, id string) (*Clone, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("get clone", id, err)
	}
	if m.kind != kindClone {
		return nil, opErr("get clone", id, fmt.Errorf("%q is a layer: %w", m.dataset, ErrNotFound))
	}
	return m.clone(), nil
}

// Clones lists the store's clones in id order.
func (s *Store) Clones(ctx context.Context) iter.Seq2[*Clone, error] {
	return listKind(s.list(ctx), kindClone, (*meta).clone)
}

// CommitOptions are the optional settings of CommitClone.
type CommitOptions struct {
	// Labels, when not nil, replace the clone's labels on the layer. They
	// are written with the commit's first step, which costs nothing
	// over the commit itself where SetLabels first would cost one more
	// ZFS transaction group. A failed commit puts the clone's labels
	// back; after a crash in the middle of one, the clone the store
	// restores may keep these.
	Labels map[string]string
}

// CommitClone turns clone id into committed layer layerID, whose parent is
// the layer the clone was made from (a container commit). The clone is
// consumed: its dataset becomes the layer's. It must not be mounted
// read-write. opts may be nil.
func (s *Store) CommitClone(ctx context.Context, id, layerID string, opts *CommitOptions) (*Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkID(layerID); err != nil {
		return nil, opErr("commit clone", id, err)
	}
	unlock := s.ids.lock2(id, layerID)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("commit clone", id, err)
	}
	if m.kind != kindClone {
		return nil, opErr("commit clone", m.dataset, fmt.Errorf("not a clone: %w", ErrInvalid))
	}
	if layerID != id {
		if _, err := s.getAny(layerID); err == nil {
			return nil, opErr("commit clone", s.dataset(layerID), ErrExist)
		}
	}
	var labels map[string]string
	if opts != nil {
		labels = opts.Labels
	}
	if err := s.commit(m, layerID, labels); err != nil {
		return nil, err
	}
	l, err := s.get(layerID)
	if err != nil {
		return nil, opErr("commit clone", layerID, err)
	}
	return l.layer(), nil
}
