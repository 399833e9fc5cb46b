package zlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/zlayer/zlayer/internal/testzfs"
	"github.com/zlayer/zlayer/internal/zfs"
)

func TestLayersListChainLabels(t *testing.T) {
	ctx := context.Background()
	s, p := newStore(t)
	mustLayer(t, s, "l1", "", nil)
	mustLayer(t, s, "l2", "l1", nil)
	if _, err := s.CreateLayer(ctx, "l3", "l2", &CreateOptions{Labels: map[string]string{"containerd.io/gc.root": "x", "Über": "ä"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateClone(ctx, "c1", "l2", &CloneOptions{Labels: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	// A dataset the store did not make is never listed.
	testzfs.ZFS(t, "create", s.Root()+"/foreign")

	var ids []string
	for l, err := range s.Layers(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	if diff := cmp.Diff([]string{"l1", "l2", "l3"}, ids); diff != "" {
		t.Errorf("Layers (-want +got):\n%s", diff)
	}
	var clones []string
	for c, err := range s.Clones(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		clones = append(clones, c.ID+"<"+c.Layer)
	}
	if diff := cmp.Diff([]string{"c1<l2"}, clones); diff != "" {
		t.Errorf("Clones (-want +got):\n%s", diff)
	}
	var chain []string
	for l, err := range s.Chain(ctx, "l3") {
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, l.ID)
	}
	if diff := cmp.Diff([]string{"l3", "l2", "l1"}, chain); diff != "" {
		t.Errorf("Chain (-want +got):\n%s", diff)
	}
	l3, err := s.Layer(ctx, "l3")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"containerd.io/gc.root": "x", "Über": "ä"}
	if diff := cmp.Diff(want, l3.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if err := s.SetLabels(ctx, "l3", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if l3, _ = s.Layer(ctx, "l3"); l3.Labels["k"] != "v" || len(l3.Labels) != 1 {
		t.Errorf("labels after SetLabels: %v", l3.Labels)
	}

	// The pool is the only source of truth: a second store on the same
	// pool sees the same layers.
	s2, err := OpenStore(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s2.Layer(ctx, "l2"); err != nil || l.Parent != "l1" || !l.Committed {
		t.Errorf("reopened store: %+v, %v", l, err)
	}

	// Removal leaves foreign datasets alone and frees the id.
	if err := s.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"l3", "l2", "l1"} {
		if err := s.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if out := testzfs.ZFS(t, "list", "-H", "-o", "name", "-r", s.Root()); out != s.Root()+"\n"+s.Root()+"/foreign" {
		t.Errorf("after removing everything:\n%s", out)
	}
}

// TestCommitCloneLabels: labels given to CommitClone replace the clone's
// on the layer, nil keeps them, and labels past the limit are refused
// with the clone left as it was.
// A commit records the layer in the clone's properties before renaming
// it. Between the two, readers must still see the clone, and no layer
// under the target id; a mark naming the dataset's own id is a commit
// that finished.
func TestCommitInProgressReadsAsClone(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustLayer(t, s, "base", "", nil)
	if _, err := s.CreateClone(ctx, "c", "base", &CloneOptions{Labels: map[string]string{"from": "c"}}); err != nil {
		t.Fatal(err)
	}
	record := func(mark string) {
		t.Helper()
		err := zfs.Set(s.dataset("c"), []zfs.Prop{
			{Name: propKind, Value: kindLayer},
			{Name: propState, Value: stateCommitted},
			{Name: "readonly", Value: "on"},
			{Name: propCommitting, Value: mark},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ids := func() (layers, clones []string) {
		t.Helper()
		for l, err := range s.Layers(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, l.ID)
		}
		for c, err := range s.Clones(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			clones = append(clones, c.ID)
		}
		return layers, clones
	}

	record("target")
	if _, err := s.Clone(ctx, "c"); err != nil {
		t.Errorf("clone mid-commit: %v", err)
	}
	if _, err := s.Layer(ctx, "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("layer c mid-commit: %v, want ErrNotFound", err)
	}
	if _, err := s.Layer(ctx, "target"); !errors.Is(err, ErrNotFound) {
		t.Errorf("layer target mid-commit: %v, want ErrNotFound", err)
	}
	layers, clones := ids()
	if diff := cmp.Diff([]string{"base"}, layers); diff != "" {
		t.Errorf("layers mid-commit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c"}, clones); diff != "" {
		t.Errorf("clones mid-commit (-want +got):\n%s", diff)
	}

	record("c")
	l, err := s.Layer(ctx, "c")
	if err != nil || !l.Committed || l.Parent != "base" {
		t.Errorf("layer with its own mark: %+v, %v; want committed, parent base", l, err)
	}
	layers, clones = ids()
	if diff := cmp.Diff([]string{"base", "c"}, layers); diff != "" {
		t.Errorf("layers after the commit (-want +got):\n%s", diff)
	}
	if len(clones) != 0 {
		t.Errorf("clones after the commit: %q", clones)
	}
}

func TestCommitCloneLabels(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mustLayer(t, s, "base", "", nil)
	for _, id := range []string{"keep", "replace", "huge"} {
		if _, err := s.CreateClone(ctx, id, "base", &CloneOptions{Labels: map[string]string{"from": id}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CommitClone(ctx, "keep", "kept", nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"new": "1", "also": "2"}
	if _, err := s.CommitClone(ctx, "replace", "replaced", &CommitOptions{Labels: want}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]map[string]string{"kept": {"from": "keep"}, "replaced": want} {
		l, err := s.Layer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, l.Labels); diff != "" {
			t.Errorf("labels of %s (-want +got):\n%s", id, diff)
		}
	}

	huge := map[string]string{"k": strings.Repeat("x", 9000)}
	_, err := s.CommitClone(ctx, "huge", "hugelayer", &CommitOptions{Labels: huge})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "huge") {
		t.Fatalf("commit with 9 KB of labels: %v, want ErrInvalid naming the clone", err)
	}
	c, err := s.Clone(ctx, "huge")
	if err != nil {
		t.Fatalf("clone after refused commit: %v", err)
	}
	if c.Labels["from"] != "huge" || len(c.Labels) != 1 || c.ReadOnly {
		t.Errorf("clone changed by a refused commit: %+v", c)
	}
	if _, err := s.Layer(ctx, "hugelayer"); !errors.Is(err, ErrNotFound) {
		t.Errorf("layer of a refused commit: %v", err)
	}
}

// TestRemoveIgnoresForeignSnapshots: snapshots other tools take (an
// auto-snapshot service) do not keep a layer.
func TestRemoveIgnoresForeignSnapshots(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "l", "", nil)
	testzfs.ZFS(t, "snapshot", s.Root()+"/l@zfs-auto-snap_hourly-2026")
	if err := s.Remove(ctx, "l"); err != nil {
		t.Fatal(err)
	}
}

func TestMountRefcounts(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "base", "", func(dir string) { writeFile(t, filepath.Join(dir, "f"), []byte("x")) })
	if _, err := s.CreateClone(ctx, "view", "base", &CloneOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "mnt")
	for range 2 {
		if err := s.Mount(ctx, "base", target, &MountOptions{ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "f")); err != nil {
		t.Fatalf("first unmount of two detached the mount: %v", err)
	}
	if err := s.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point left after the last unmount: %v", err)
	}
	if s.mountedAnywhere(s.dataset("base")) {
		t.Error("mount leaked")
	}

	// A read-only view stays read-only in every description of it.
	spec, err := s.MountSpec(ctx, "view", false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Mount{Type: "zfs", Source: s.dataset("view"), Options: []string{"ro"}}, spec); diff != "" {
		t.Errorf("view mount spec (-want +got):\n%s", diff)
	}
	if err := s.Mount(ctx, "view", t.TempDir(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("read-write mount of a view: %v", err)
	}
	vdir := t.TempDir()
	if err := s.Mount(ctx, "view", vdir, &MountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "g"), nil, 0o644); err == nil {
		t.Error("wrote into a read-only view")
	}
	if err := s.Unmount(ctx, vdir); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotsHoldRollback(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "base", "", nil)
	if _, err := s.CreateClone(ctx, "ctr", "base", nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	if err := s.Mount(ctx, "ctr", dir, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Unmount(ctx, dir)
	writeFile(t, filepath.Join(dir, "a"), []byte("before"))
	if _, err := s.CreateSnapshot(ctx, "ctr", "s1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "a"), []byte("after"))
	writeFile(t, filepath.Join(dir, "b"), []byte("new"))
	if err := s.Hold(ctx, "ctr", "s1", "backup"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for sn, err := range s.Snapshots(ctx, "ctr") {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, fmt.Sprintf("%s:%d", sn.Name, sn.Holds))
	}
	if diff := cmp.Diff([]string{"s1:1"}, names); diff != "" {
		t.Errorf("snapshots (-want +got):\n%s", diff)
	}
	if err := s.Rollback(ctx, "ctr", "s1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "before" {
		t.Errorf("after rollback a = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after rollback b exists: %v", err)
	}
	if err := s.Release(ctx, "ctr", "s1", "backup"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveSnapshot(ctx, "ctr", "s1"); err != nil {
		t.Fatal(err)
	}
}

func TestPoolLifecycle(t *testing.T) {
	testzfs.Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	name := testzfs.PoolName("zp")
	p, err := CreateFilePool(ctx, name, dir, &FilePoolOptions{Size: 256 << 20, Vdevs: 2})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Health != "ONLINE" || st.Size < 400<<20 || st.Free == 0 || st.Free > st.Size {
		t.Errorf("status %+v", st)
	}
	s, err := OpenStore(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustLayer(t, s, "kept", "", func(d string) { writeFile(t, filepath.Join(d, "f"), []byte("survives export")) })
	if err := p.Export(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPool(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exported pool still open: %v", err)
	}
	p2, err := ImportPool(ctx, name, dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(ctx, p2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s2.Layer(ctx, "kept"); err != nil || !l.Committed {
		t.Fatalf("layer after import: %+v, %v", l, err)
	}
	p2.files = p.files
	if err := p2.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPool(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("destroyed pool still open: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("vdev files left: %v", ents)
	}
}

// TestConcurrentUse runs many goroutines creating, committing, cloning,
// mounting and removing layers at once (run it with -race), then checks
// that no dataset leaked.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "shared", "", nil)
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- worker(ctx, s, t.TempDir(), w)
		}()
	}
	// Readers list the store while writers change it.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				for _, err := range s.Layers(ctx) {
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	out := testzfs.ZFS(t, "list", "-H", "-o", "name", "-t", "all", "-r", s.Root())
	want := s.Root() + "\n" + s.Root() + "/shared\n" + s.Root() + "/shared@zlayer"
	if out != want {
		t.Errorf("datasets after all workers removed theirs:\n%s", out)
	}
}

func worker(ctx context.Context, s *Store, tmp string, w int) error {
	id := func(s string) string { return fmt.Sprintf("w%d-%s", w, s) }
	if _, err := s.CreateLayer(ctx, id("l"), "shared", nil); err != nil {
		return err
	}
	dir := filepath.Join(tmp, "m")
	if err := s.Mount(ctx, id("l"), dir, nil); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte(id("data")), 0o644); err != nil {
		return err
	}
	if err := s.Unmount(ctx, dir); err != nil {
		return err
	}
	if _, err := s.Commit(ctx, id("l")); err != nil {
		return err
	}
	if _, err := s.CreateClone(ctx, id("c"), id("l"), nil); err != nil {
		return err
	}
	// Racing a removal against the clone that depends on it must fail
	// cleanly, never corrupt.
	if err := s.Remove(ctx, id("l")); !errors.Is(err, ErrBusy) {
		return fmt.Errorf("remove of a cloned layer: %v", err)
	}
	if _, err := s.CommitClone(ctx, id("c"), id("top"), nil); err != nil {
		return err
	}
	for _, x := range []string{"top", "l"} {
		if err := s.Remove(ctx, id(x)); err != nil {
			return err
		}
	}
	return nil
}
