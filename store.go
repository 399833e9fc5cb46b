package zlayer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Store keeps layers and clones as datasets below one root dataset of a
// pool. It is safe for use by many goroutines: operations on different ids
// run in parallel, operations on one id are serialised.
//
// The pool alone is the source of truth. Every dataset the store makes is
// marked with its own user properties; datasets without them are never
// listed, changed or removed.
type Store struct {
	pool string
	root string
	log  *slog.Logger

	ids idLocks

	mu     sync.Mutex
	mounts map[string]*mountRef // by mount target
}

// StoreOptions configures OpenStore. The zero value is usable.
type StoreOptions struct {
	// Root is the dataset below which the store keeps its datasets;
	// empty means POOL/zlayer. It is created when missing.
	Root string
	// Logger receives the few messages the store logs (cleanups after
	// crashes, best-effort undo that failed); nil means none.
	Logger *slog.Logger
}

// OpenStore opens the store rooted at opts.Root in pool, creating the root
// dataset when it does not exist. It finishes or undoes any operation that
// a crash interrupted, so what was committed is kept and nothing half-made
// stays visible. That recovery cannot tell a crashed operation from one in
// flight in another process: one process at a time should own a store's
// root, and it should open the store before it starts work.
func OpenStore(ctx context.Context, pool *Pool, opts *StoreOptions) (*Store, error) {
	var o StoreOptions
	if opts != nil {
		o = *opts
	}
	if o.Root == "" {
		o.Root = pool.Name() + "/zlayer"
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	if !strings.HasPrefix(o.Root, pool.Name()+"/") {
		return nil, opErr("open store", o.Root,
			fmt.Errorf("root is not in pool %q: %w", pool.Name(), ErrInvalid))
	}
	for _, c := range strings.Split(strings.TrimPrefix(o.Root, pool.Name()+"/"), "/") {
		if err := validName(c); err != nil {
			return nil, opErr("open store", o.Root, err)
		}
	}
	s := &Store{pool: pool.Name(), root: o.Root, log: o.Logger, mounts: map[string]*mountRef{}}
	if err := s.ensureRoot(ctx); err != nil {
		return nil, err
	}
	if err := s.recover(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the dataset below which the store keeps its datasets.
func (s *Store) Root() string { return s.root }

func (s *Store) ensureRoot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := zfs.Get(s.root)
	if isKind(err, zfs.KindNotFound) {
		// Children inherit these: legacy mounts under the caller's
		// control, xattrs in the dnode (fast security.capability),
		// no atime writes on reads.
		props := []zfs.Prop{
			{Name: "mountpoint", Value: "legacy"},
			{Name: "canmount", Value: "off"},
			{Name: "xattr", Value: "sa"},
			{Name: "atime", Value: "off"},
			{Name: "dnodesize", Value: "auto"},
			{Name: propStore, Value: "1"},
		}
		// Parents of a nested root are plain filesystems.
		parts := strings.Split(s.root, "/")
		for i := 2; i < len(parts); i++ {
			parent := strings.Join(parts[:i], "/")
			if !zfs.Exists(parent) {
				err := zfs.CreateFilesystem(parent, []zfs.Prop{{Name: "canmount", Value: "off"}})
				if err != nil && !isKind(err, zfs.KindExist) {
					return zfsErr("open store", parent, err)
				}
			}
		}
		err = zfs.CreateFilesystem(s.root, props)
		if err != nil && !isKind(err, zfs.KindExist) {
			return zfsErr("open store", s.root, err)
		}
		return nil
	}
	if err != nil {
		return zfsErr("open store", s.root, err)
	}
	if p.User[propStore] != "1" {
		return opErr("open store", s.root,
			fmt.Errorf("dataset exists and is not a zlayer store: %w", ErrExist))
	}
	return nil
}

// dataset returns the dataset name of id.
func (s *Store) dataset(id string) string { return s.root + "/" + id }

// checkID validates id and that its longest derived name fits ZFS's limit.
func (s *Store) checkID(id string) error {
	if err := validName(id); err != nil {
		return err
	}
	if n := len(s.dataset(id)) + 1 + len(applySnap); n >= maxNameLen {
		return fmt.Errorf("id %q is %d bytes too long for ZFS names: %w",
			id, n-maxNameLen+1, ErrInvalid)
	}
	return nil
}

// idLocks serialises operations on one id while others run freely.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

func (l *idLocks) lock(id string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// lock2 takes two id locks in a fixed order, so that two calls locking the
// same pair cannot deadlock. An empty b (no parent) takes a alone, so that
// base layers are made in parallel.
func (l *idLocks) lock2(a, b string) func() {
	if a == b || b == "" {
		return l.lock(a)
	}
	if b < a {
		a, b = b, a
	}
	ua := l.lock(a)
	ub := l.lock(b)
	return func() { ub(); ua() }
}

// crashHook, when set by a test, is called between the steps of operations
// that take several; the test makes it kill the process to prove that
// reopening the store recovers.
var crashHook func(step string)

func step(name string) {
	if crashHook != nil {
		crashHook(name)
	}
}

// recover finishes or undoes what a crash interrupted: commits that did not
// finish, removals that did not finish, and failed applies.
func (s *Store) recover(ctx context.Context) error {
	children, err := zfs.Children(s.root)
	if err != nil {
		return zfsErr("open store", s.root, err)
	}
	var errs []error
	for _, p := range children {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.User[propKind] == "" {
			errs = append(errs, s.recoverBare(p))
			continue
		}
		id := strings.TrimPrefix(p.Name, s.root+"/")
		switch {
		case p.User[propState] == stateRemoving:
			s.log.Info("finishing interrupted removal", "dataset", p.Name)
			errs = append(errs, s.destroy(ctx, id, nil))
		case p.User[propCommitting] != "":
			errs = append(errs, s.recoverCommit(id, p))
		case p.User[propState] == stateActive:
			errs = append(errs, s.dropCommitSnapshot(p.Name), s.recoverApply(id))
		default:
			errs = append(errs, s.recoverApply(id))
		}
	}
	return errors.Join(errs...)
}

// recoverBare destroys a clone of one of the store's commit snapshots that
// has none of the store's properties. libzfs_core creates a clone and then
// sets its properties in a second transaction, so a machine crash between
// the two leaves such a clone; nobody else makes clones in the store's
// root. Filesystems that are not clones may be anyone's and are left.
func (s *Store) recoverBare(p *zfs.Props) error {
	origin, snap, ok := strings.Cut(p.Origin, "@")
	if !ok || snap != commitSnap || !strings.HasPrefix(origin, s.root+"/") {
		return nil
	}
	snaps, err := zfs.Snapshots(p.Name)
	if err != nil || len(snaps) > 0 {
		return zfsErr("recover", p.Name, err)
	}
	s.log.Info("destroying half-made clone", "dataset", p.Name)
	return zfsErr("recover", p.Name, zfs.Destroy(p.Name))
}

// recoverApply drops the snapshot of an apply that never finished, rolling
// the layer back to it first.
func (s *Store) recoverApply(id string) error {
	ds := s.dataset(id)
	snap := ds + "@" + applySnap
	if !zfs.Exists(snap) {
		return nil
	}
	s.log.Info("rolling back interrupted apply", "dataset", ds)
	if err := zfs.Rollback(ds, snap); err != nil {
		return zfsErr("recover apply", ds, err)
	}
	return zfsErr("recover apply", snap, zfs.DestroySnapshots([]string{snap}, false))
}

// recoverCommit turns a dataset whose commit stopped before its rename
// back into the clone it was. A mark naming the dataset itself is a
// finished commit.
func (s *Store) recoverCommit(id string, p *zfs.Props) error {
	target := p.User[propCommitting]
	if target == id {
		return nil
	}
	s.log.Info("undoing interrupted commit", "dataset", p.Name, "target", target)
	if err := s.dropCommitSnapshot(p.Name); err != nil {
		return err
	}
	err := zfs.Set(p.Name, []zfs.Prop{
		{Name: propKind, Value: kindClone},
		{Name: propState, Value: stateActive},
		{Name: "readonly", Value: "off"},
		{Name: propCommitting, Value: ""},
	})
	return zfsErr("recover commit", p.Name, err)
}

// dropCommitSnapshot destroys the commit snapshot of a dataset that is
// not a committed layer, which a commit cut short leaves.
func (s *Store) dropCommitSnapshot(ds string) error {
	snap := ds + "@" + commitSnap
	if !zfs.Exists(snap) {
		return nil
	}
	s.log.Info("dropping the snapshot of an interrupted commit", "snapshot", snap)
	return zfsErr("recover commit", snap, zfs.DestroySnapshots([]string{snap}, false))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
