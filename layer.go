package zlayer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Layer is an image layer: a base layer is a filesystem of its own, every
// other layer a clone of its parent's commit snapshot. A layer is written
// while active and immutable once committed.
type Layer struct {
	ID        string
	Parent    string // empty for a base layer
	Committed bool
	Created   time.Time
	Labels    map[string]string
	Dataset   string // the ZFS dataset holding the layer
}

// CreateOptions configures CreateLayer. The zero value is usable.
type CreateOptions struct {
	// Labels are kept with the layer; at most about 8 KiB in all.
	Labels map[string]string
	// Quota limits the bytes the layer itself may refer to (refquota);
	// 0 means none.
	Quota uint64
}

// Usage is a dataset's space from ZFS's own accounting.
type Usage struct {
	Used       uint64 // space the dataset and its snapshots hold alone
	Referenced uint64 // space of all data the dataset can read
	Written    uint64 // space written since the last snapshot
}

// CreateLayer makes an active layer: a new filesystem when parent is empty,
// otherwise a clone of the committed parent. Either way the dataset and its
// properties come from one libzfs_core call, and its cost does not depend
// on the parent's size. ZFS sets the properties in a second transaction of
// that call; only a machine crash between the two can leave a dataset
// without them, which the store never shows and OpenStore removes when it
// is a clone of a commit snapshot.
func (s *Store) CreateLayer(ctx context.Context, id, parent string, opts *CreateOptions) (*Layer, error) {
	var o CreateOptions
	if opts != nil {
		o = *opts
	}
	m := meta{kind: kindLayer, state: stateActive, parent: parent, labels: o.Labels}
	ds, err := s.create(ctx, "create layer", id, parent, m, o.Quota, false)
	if err != nil {
		return nil, err
	}
	return ds.layer(), nil
}

// meta is the store's view of one of its datasets.
type meta struct {
	id         string
	dataset    string
	kind       string
	state      string
	parent     string
	created    time.Time
	labels     map[string]string
	committing string
	readOnly   bool
	quota      uint64
	origin     string
}

func (m *meta) layer() *Layer {
	return &Layer{ID: m.id, Parent: m.parent, Committed: m.state == stateCommitted,
		Created: m.created, Labels: m.labels, Dataset: m.dataset}
}

func (m *meta) props() ([]zfs.Prop, error) {
	props := []zfs.Prop{
		{Name: "mountpoint", Value: "legacy"},
		{Name: propKind, Value: m.kind},
		{Name: propState, Value: m.state},
		{Name: propCreated, Value: m.created.UTC().Format(time.RFC3339Nano)},
	}
	if m.parent != "" {
		props = append(props, zfs.Prop{Name: propParent, Value: m.parent})
	}
	if len(m.labels) > 0 {
		p, err := labelsProp(m.labels)
		if err != nil {
			return nil, err
		}
		props = append(props, p)
	}
	if m.readOnly {
		props = append(props, zfs.Prop{Name: "readonly", Value: "on"})
	}
	if m.quota > 0 {
		props = append(props, zfs.Prop{Name: "refquota", Value: fmt.Sprint(m.quota)})
	}
	return props, nil
}

// parseMeta reads the store's properties of a dataset; ok is false for
// datasets the store did not make.
func (s *Store) parseMeta(p *zfs.Props) (m *meta, ok bool) {
	kind := p.User[propKind]
	if kind != kindLayer && kind != kindClone {
		return nil, false
	}
	m = &meta{
		id:         strings.TrimPrefix(p.Name, s.root+"/"),
		dataset:    p.Name,
		kind:       kind,
		state:      p.User[propState],
		parent:     p.User[propParent],
		committing: p.User[propCommitting],
		readOnly:   p.ReadOnly,
		quota:      p.RefQuota,
		origin:     p.Origin,
	}
	if m.committing != "" && m.committing != m.id {
		// A clone recorded as a layer but not yet renamed to the
		// mark's id: the commit has not happened.
		m.kind, m.state = kindClone, stateActive
	}
	m.created, _ = time.Parse(time.RFC3339Nano, p.User[propCreated])
	if l := p.User[propLabels]; l != "" {
		_ = json.Unmarshal([]byte(l), &m.labels)
	}
	return m, true
}

// visible reports whether get and list show the dataset: not while it is
// being removed.
func (m *meta) visible() bool {
	return m.state != stateRemoving
}

// create makes dataset id as a filesystem or as a clone of parent's commit
// snapshot, in one libzfs_core call.
func (s *Store) create(ctx context.Context, op, id, parent string, m meta, quota uint64, readOnly bool) (*meta, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkID(id); err != nil {
		return nil, opErr(op, id, err)
	}
	unlock := s.ids.lock2(id, parent)
	defer unlock()

	ds := s.dataset(id)
	m.id, m.dataset, m.created = id, ds, time.Now()
	m.quota, m.readOnly = quota, readOnly
	props, err := m.props()
	if err != nil {
		return nil, opErr(op, ds, err)
	}
	if parent != "" {
		if err := s.checkID(parent); err != nil {
			return nil, opErr(op, ds, fmt.Errorf("parent: %w", err))
		}
	}
	// lzc_clone of OpenZFS 2.1 returns success for a name that exists
	// and leaves that dataset alone, so existence is checked first; the
	// id lock keeps the check and the creation together in this process.
	if zfs.Exists(ds) {
		return nil, opErr(op, ds, ErrExist)
	}
	if parent == "" {
		err = zfs.CreateFilesystem(ds, props)
	} else {
		if err := validName(parent); err != nil {
			return nil, opErr(op, ds, fmt.Errorf("parent: %w", err))
		}
		pm, err := s.get(parent)
		if err != nil {
			return nil, opErr(op, ds, fmt.Errorf("parent %q: %w", parent, err))
		}
		if pm.kind != kindLayer || pm.state != stateCommitted {
			return nil, opErr(op, ds,
				fmt.Errorf("parent %q is not a committed layer: %w", parent, ErrInvalid))
		}
		m.origin = pm.dataset + "@" + commitSnap
		err = zfs.Clone(ds, m.origin, props)
	}
	if err != nil {
		return nil, zfsErr(op, ds, err)
	}
	return &m, nil
}

// get reads one of the store's datasets by id: one open of one dataset,
// whatever the store holds. Half-made and half-removed datasets are not
// found.
func (s *Store) get(id string) (*meta, error) {
	if err := s.checkID(id); err != nil {
		return nil, err
	}
	m, err := s.getAny(id)
	if err != nil {
		return nil, err
	}
	if !m.visible() {
		return nil, fmt.Errorf("%q: %w", s.dataset(id), ErrNotFound)
	}
	return m, nil
}

// getAny is get without hiding datasets in the middle of an operation.
func (s *Store) getAny(id string) (*meta, error) {
	ds := s.dataset(id)
	p, err := zfs.Get(ds)
	if err != nil {
		return nil, zfsErr("get", ds, err)
	}
	m, ok := s.parseMeta(p)
	if !ok {
		return nil, fmt.Errorf("%q is not a zlayer dataset: %w", ds, ErrNotFound)
	}
	return m, nil
}

// Layer returns the layer with the given id.
func (s *Store) Layer(ctx context.Context, id string) (*Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("get layer", id, err)
	}
	if m.kind != kindLayer {
		return nil, opErr("get layer", id, fmt.Errorf("%q is a clone: %w", m.dataset, ErrNotFound))
	}
	return m.layer(), nil
}

// Layers lists the store's layers in id order. It reads every dataset of
// the store: use Layer to look one up.
func (s *Store) Layers(ctx context.Context) iter.Seq2[*Layer, error] {
	return listKind(s.list(ctx), kindLayer, (*meta).layer)
}

// listKind keeps the datasets of one kind from a listing, as conv makes
// them.
func listKind[T any](all iter.Seq2[*meta, error], kind string, conv func(*meta) T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for m, err := range all {
			if err != nil {
				yield(zero, err)
				return
			}
			if m.kind == kind && !yield(conv(m), nil) {
				return
			}
		}
	}
}

func (s *Store) list(ctx context.Context) iter.Seq2[*meta, error] {
	return func(yield func(*meta, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(nil, err)
			return
		}
		children, err := zfs.Children(s.root)
		if err != nil {
			yield(nil, zfsErr("list", s.root, err))
			return
		}
		slices.SortFunc(children, func(a, b *zfs.Props) int { return strings.Compare(a.Name, b.Name) })
		for _, p := range children {
			m, ok := s.parseMeta(p)
			if !ok || !m.visible() {
				continue
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// Chain walks from layer id to its base layer, id first.
func (s *Store) Chain(ctx context.Context, id string) iter.Seq2[*Layer, error] {
	return func(yield func(*Layer, error) bool) {
		seen := map[string]bool{}
		for id != "" {
			if seen[id] {
				yield(nil, opErr("walk chain", id, fmt.Errorf("parent loop: %w", ErrInvalid)))
				return
			}
			seen[id] = true
			l, err := s.Layer(ctx, id)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(l, nil) {
				return
			}
			id = l.Parent
		}
	}
}

// Commit makes an active layer immutable: its content is fixed in the
// layer's commit snapshot, which children are cloned from.
func (s *Store) Commit(ctx context.Context, id string) (*Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return nil, opErr("commit layer", id, err)
	}
	if m.kind != kindLayer {
		return nil, opErr("commit layer", m.dataset,
			fmt.Errorf("a clone is committed with CommitClone: %w", ErrInvalid))
	}
	if m.state == stateCommitted {
		return nil, opErr("commit layer", m.dataset, fmt.Errorf("already committed: %w", ErrInvalid))
	}
	if err := s.commit(m, id, nil); err != nil {
		return nil, err
	}
	m, err = s.get(id)
	if err != nil {
		return nil, opErr("commit layer", id, err)
	}
	return m.layer(), nil
}

// commit turns dataset m into committed layer target, with labels unless
// they are nil, in as few ZFS sync tasks (each waits for a transaction
// group) as recovery allows:
//
//  1. take the commit snapshot: children are cloned from it and diffs
//     read it, so it is the layer's content from here on;
//  2. in one property write, make the dataset read-only and record it as
//     a committed layer (with the labels), marked with target when the
//     commit renames it: a commit in place is done here;
//  3. rename the dataset to target.
//
// A crash after 1 leaves an active dataset with a commit snapshot, which
// OpenStore drops; one after 2 and before 3 leaves a dataset whose mark
// names another id, which reads as the clone it was and which OpenStore
// turns back into it.
func (s *Store) commit(m *meta, target string, labels map[string]string) (err error) {
	ds := m.dataset
	if s.mountedAnywhere(ds) && !m.readOnly {
		return opErr("commit", ds, fmt.Errorf("mounted read-write: %w", ErrBusy))
	}
	record := []zfs.Prop{
		{Name: propKind, Value: kindLayer},
		{Name: propState, Value: stateCommitted},
		{Name: "readonly", Value: "on"},
	}
	undo := []zfs.Prop{
		{Name: propKind, Value: m.kind},
		{Name: propState, Value: m.state},
		{Name: "readonly", Value: boolProp(m.readOnly)},
	}
	if target != m.id {
		record = append(record, zfs.Prop{Name: propCommitting, Value: target})
		undo = append(undo, zfs.Prop{Name: propCommitting, Value: ""})
	}
	if labels != nil {
		p, err := labelsProp(labels)
		if err != nil {
			return opErr("commit", ds, err)
		}
		old, err := labelsProp(m.labels)
		if err != nil {
			return opErr("commit", ds, err)
		}
		record, undo = append(record, p), append(undo, old)
	}

	snap := ds + "@" + commitSnap
	if err := zfs.Snapshot(snap, nil); err != nil {
		return zfsErr("commit", snap, err)
	}
	recorded := false
	defer func() {
		if err == nil {
			return
		}
		var errs []error
		if recorded {
			errs = append(errs, zfs.Set(ds, undo))
		}
		errs = append(errs, zfs.DestroySnapshots([]string{snap}, false))
		if e := errors.Join(errs...); e != nil {
			s.log.Warn("undo of failed commit failed", "dataset", ds, "err", e)
		}
	}()
	step("commit-snapshot")
	if err := zfs.Set(ds, record); err != nil {
		return zfsErr("commit", ds, err)
	}
	recorded = true
	step("commit-recorded")
	if target == m.id {
		return nil
	}
	if err := zfs.Rename(ds, s.dataset(target)); err != nil {
		return zfsErr("commit", ds, err)
	}
	step("commit-renamed")
	return nil
}

// SetLabels replaces the labels of a layer or clone.
func (s *Store) SetLabels(ctx context.Context, id string, labels map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock := s.ids.lock(id)
	defer unlock()
	m, err := s.get(id)
	if err != nil {
		return opErr("set labels", id, err)
	}
	if len(labels) == 0 {
		return zfsErr("set labels", m.dataset, zfs.Inherit(m.dataset, propLabels))
	}
	p, err := labelsProp(labels)
	if err != nil {
		return opErr("set labels", m.dataset, err)
	}
	return zfsErr("set labels", m.dataset, zfs.Set(m.dataset, []zfs.Prop{p}))
}

// labelsProp encodes labels as the property that keeps them, refusing
// more than ZFS's limit on a user property's value allows. An empty
// value reads as no labels.
func labelsProp(labels map[string]string) (zfs.Prop, error) {
	if len(labels) == 0 {
		return zfs.Prop{Name: propLabels, Value: ""}, nil
	}
	b, err := json.Marshal(labels)
	if err != nil {
		return zfs.Prop{}, err
	}
	if len(b) >= 8192 {
		return zfs.Prop{}, fmt.Errorf("labels take %d bytes, more than 8 KiB: %w", len(b), ErrInvalid)
	}
	return zfs.Prop{Name: propLabels, Value: string(b)}, nil
}

// Usage reads the space a layer or clone uses, from ZFS's accounting.
func (s *Store) Usage(ctx context.Context, id string) (Usage, error) {
	if err := ctx.Err(); err != nil {
		return Usage{}, err
	}
	if err := s.checkID(id); err != nil {
		return Usage{}, opErr("usage", id, err)
	}
	p, err := zfs.Get(s.dataset(id))
	if err != nil {
		return Usage{}, zfsErr("usage", s.dataset(id), err)
	}
	if m, ok := s.parseMeta(p); !ok || !m.visible() {
		return Usage{}, opErr("usage", s.dataset(id), ErrNotFound)
	}
	return Usage{Used: p.Used, Referenced: p.Referenced, Written: p.Written}, nil
}

func boolProp(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
