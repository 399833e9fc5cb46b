package snapshotter_test

import (
	"context"
	"crypto/rand"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/zlayer/zlayer"
)

var gcRoot = snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "test"})

// mountAt mounts ms at a new folder and unmounts it when the test ends
// unless unmount is called first.
func mountAt(tb testing.TB, ms []mount.Mount) (dir string, unmount func()) {
	tb.Helper()
	dir = tb.TempDir()
	if err := mount.All(ms, dir); err != nil {
		tb.Fatal(err)
	}
	done := false
	unmount = func() {
		if done {
			return
		}
		done = true
		if err := mount.UnmountAll(dir, 0); err != nil {
			tb.Error(err)
		}
	}
	tb.Cleanup(unmount)
	return dir, unmount
}

func walkNames(tb testing.TB, sn snapshots.Snapshotter, filters ...string) []string {
	tb.Helper()
	var names []string
	err := sn.Walk(context.Background(), func(_ context.Context, i snapshots.Info) error {
		names = append(names, i.Name)
		return nil
	}, filters...)
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestErrorClasses(t *testing.T) {
	pool := newPool(t, 1<<30)
	sn, _ := newSnapshotter(t, pool, pool.Name()+"/errs")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := sn.Prepare(ctx, "base-a", "", gcRoot)
	must(err)
	must(sn.Commit(ctx, "base", "base-a", gcRoot))
	_, err = sn.Prepare(ctx, "child", "base", gcRoot)
	must(err)
	_, err = sn.View(ctx, "view", "base", gcRoot)
	must(err)

	for _, c := range []struct {
		what string
		err  error
		is   func(error) bool
	}{
		{"stat unknown", stat(sn, "nope"), errdefs.IsNotFound},
		{"usage unknown", usage(sn, "nope"), errdefs.IsNotFound},
		{"mounts unknown", mounts(sn, "nope"), errdefs.IsNotFound},
		{"remove unknown", sn.Remove(ctx, "nope"), errdefs.IsNotFound},
		{"update unknown", update(sn, "nope"), errdefs.IsNotFound},
		{"commit unknown", sn.Commit(ctx, "x", "nope"), errdefs.IsNotFound},
		{"prepare of a missing parent", prepare(sn, "k1", "nope"), errdefs.IsNotFound},
		{"prepare of an active parent", prepare(sn, "k2", "child"), errdefs.IsInvalidArgument},
		{"prepare of a view parent", prepare(sn, "k3", "view"), errdefs.IsInvalidArgument},
		{"prepare of a taken key", prepare(sn, "child", "base"), errdefs.IsAlreadyExists},
		{"prepare of a committed name", prepare(sn, "base", ""), errdefs.IsAlreadyExists},
		{"commit to a taken name", sn.Commit(ctx, "base", "child"), errdefs.IsAlreadyExists},
		{"commit to its own key", sn.Commit(ctx, "child", "child"), errdefs.IsAlreadyExists},
		{"commit of a view", sn.Commit(ctx, "v2", "view"), errdefs.IsFailedPrecondition},
		{"commit of a committed", sn.Commit(ctx, "b2", "base"), errdefs.IsFailedPrecondition},
		{"mounts of a committed", mounts(sn, "base"), errdefs.IsFailedPrecondition},
		{"remove of a parent", sn.Remove(ctx, "base"), errdefs.IsFailedPrecondition},
		{"update of the parent field", update(sn, "child", "parent"), errdefs.IsInvalidArgument},
		{"update of the kind field", update(sn, "child", "kind"), errdefs.IsInvalidArgument},
		{"bad filter", sn.Walk(ctx, nil, "name=="), errdefs.IsInvalidArgument},
	} {
		if c.err == nil || !c.is(c.err) {
			t.Errorf("%s: %v", c.what, c.err)
		}
	}

	// The failed commit to a taken name left the active snapshot as it
	// was.
	info, err := sn.Stat(ctx, "child")
	must(err)
	if info.Kind != snapshots.KindActive || info.Parent != "base" ||
		!maps.Equal(info.Labels, map[string]string{"containerd.io/gc.root": "test"}) {
		t.Errorf("child after failed commit: %+v", info)
	}
	if got := walkNames(t, sn); !slices.Equal(got, []string{"base", "child", "view"}) {
		t.Errorf("walk: %v", got)
	}
}

func stat(sn snapshots.Snapshotter, key string) error {
	_, err := sn.Stat(context.Background(), key)
	return err
}

func usage(sn snapshots.Snapshotter, key string) error {
	_, err := sn.Usage(context.Background(), key)
	return err
}

func mounts(sn snapshots.Snapshotter, key string) error {
	_, err := sn.Mounts(context.Background(), key)
	return err
}

func prepare(sn snapshots.Snapshotter, key, parent string) error {
	_, err := sn.Prepare(context.Background(), key, parent)
	return err
}

func update(sn snapshots.Snapshotter, name string, paths ...string) error {
	_, err := sn.Update(context.Background(), snapshots.Info{Name: name, Parent: "x"}, paths...)
	return err
}

// Keys are arbitrary strings: slashes, spaces, dots, other scripts, and
// more than ZFS allows in a whole dataset name.
func TestArbitraryKeys(t *testing.T) {
	pool := newPool(t, 1<<30)
	sn, _ := newSnapshotter(t, pool, pool.Name()+"/keys")
	ctx := context.Background()
	keys := []string{
		"default/1/extract-123 sha256:abcd", "../..", ".", "-x", "ключ/键",
		strings.Repeat("long/", 200), "",
	}
	parent := ""
	for i, k := range keys[:len(keys)-1] {
		if _, err := sn.Prepare(ctx, k, parent, gcRoot); err != nil {
			t.Fatalf("prepare %q: %v", k, err)
		}
		name := k + " committed"
		if err := sn.Commit(ctx, name, k, gcRoot); err != nil {
			t.Fatalf("commit %q: %v", k, err)
		}
		info, err := sn.Stat(ctx, name)
		if err != nil || info.Name != name || info.Parent != parent {
			t.Fatalf("%d: stat %q: %+v, %v", i, name, info, err)
		}
		parent = name
	}
	if got := walkNames(t, sn, "parent=="+`"`+keys[0]+` committed"`); len(got) != 1 {
		t.Errorf("walk by parent: %v", got)
	}
}

// The pool is the only state: a second adapter over the same root sees
// exactly what the first made.
func TestReopen(t *testing.T) {
	pool := newPool(t, 1<<30)
	root := pool.Name() + "/reopen"
	sn, _ := newSnapshotter(t, pool, root)
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "a", "", gcRoot); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "c", "a", snapshots.WithLabels(map[string]string{"x": "1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "b", "c", gcRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "v", "", gcRoot); err != nil {
		t.Fatal(err)
	}
	y := snapshots.Info{Name: "c", Labels: map[string]string{"y": "2"}}
	if _, err := sn.Update(ctx, y, "labels.y"); err != nil {
		t.Fatal(err)
	}
	before := walkInfos(t, sn)

	sn2, _ := newSnapshotter(t, pool, root)
	after := walkInfos(t, sn2)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("before reopening:\n%+v\nafter:\n%+v", before, after)
	}
	c := after["c"]
	if !maps.Equal(c.Labels, map[string]string{"x": "1", "y": "2"}) || c.Kind != snapshots.KindCommitted {
		t.Errorf("c: %+v", c)
	}
}

func walkInfos(tb testing.TB, sn snapshots.Snapshotter) map[string]snapshots.Info {
	tb.Helper()
	infos := map[string]snapshots.Info{}
	err := sn.Walk(context.Background(), func(_ context.Context, i snapshots.Info) error {
		infos[i.Name] = i
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return infos
}

// Usage comes from ZFS: the bytes a snapshot wrote itself, not those of
// its parents.
func TestUsage(t *testing.T) {
	requireTools(t, "zpool")
	pool := newPool(t, 1<<30)
	sn, _ := newSnapshotter(t, pool, pool.Name()+"/usage")
	ctx := context.Background()
	const size = 8 << 20

	ms, err := sn.Prepare(ctx, "a", "", gcRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir, unmount := mountAt(t, ms)
	data := make([]byte, size) // random, so compression keeps it whole
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	unmount()
	if err := sn.Commit(ctx, "c", "a", gcRoot); err != nil {
		t.Fatal(err)
	}
	ms, err = sn.Prepare(ctx, "b", "c", gcRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir, unmount = mountAt(t, ms)
	if err := os.WriteFile(filepath.Join(dir, "small"), []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unmount()
	if out, err := exec.Command("zpool", "sync", pool.Name()).CombinedOutput(); err != nil {
		t.Fatalf("zpool sync: %v: %s", err, out)
	}

	uc, err := sn.Usage(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	ub, err := sn.Usage(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if uc.Size < size || uc.Size > 2*size {
		t.Errorf("committed c with %d bytes written uses %d", size, uc.Size)
	}
	if ub.Size <= 0 || ub.Size > 1<<20 {
		t.Errorf("active b over c, one small file: uses %d", ub.Size)
	}
}

// Cleanup removes datasets of the store that no key refers to, children
// before parents, and keeps every snapshot and the base layer.
func TestCleanup(t *testing.T) {
	pool := newPool(t, 1<<30)
	sn, st := newSnapshotter(t, pool, pool.Name()+"/cleanup")
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "a", "", gcRoot); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "c", "a", gcRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "v", "c", gcRoot); err != nil {
		t.Fatal(err)
	}
	// Strays: a layer without a record with a clone of its own, and a
	// clone whose record names a key that maps elsewhere.
	if _, err := st.CreateLayer(ctx, "stray-layer", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, "stray-layer"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateClone(ctx, "stray-clone", "stray-layer", nil); err != nil {
		t.Fatal(err)
	}
	c, err := st.Clone(ctx, storeID(t, st, "v"))
	if err != nil {
		t.Fatal(err)
	}
	copied := &zlayer.CloneOptions{Labels: c.Labels}
	if _, err := st.CreateClone(ctx, "copied-record", c.Layer, copied); err != nil {
		t.Fatal(err)
	}

	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for l, err := range st.Layers(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	for c, err := range st.Clones(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	want := []string{storeID(t, st, "c"), storeID(t, st, "v"), "empty"}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("after cleanup the store holds %v, want %v", ids, want)
	}
	if got := walkNames(t, sn); !slices.Equal(got, []string{"c", "v"}) {
		t.Errorf("walk after cleanup: %v", got)
	}
}

// storeID finds the dataset of a snapshot by the record in its labels, as
// someone reading the pool with zfs get would.
func storeID(tb testing.TB, st *zlayer.Store, name string) string {
	tb.Helper()
	ctx := context.Background()
	for l, err := range st.Layers(ctx) {
		if err != nil {
			tb.Fatal(err)
		}
		if l.Labels["c.name"] == name {
			return l.ID
		}
	}
	for c, err := range st.Clones(ctx) {
		if err != nil {
			tb.Fatal(err)
		}
		if c.Labels["a.name"] == name {
			return c.ID
		}
	}
	tb.Fatalf("no dataset records snapshot %q", name)
	return ""
}

// A crash between writing the committed record and zlayer's commit leaves
// a clone with both records: it is still the active snapshot, and
// committing it again works.
func TestCommitInterruptedBeforeZFS(t *testing.T) {
	pool := newPool(t, 1<<30)
	sn, st := newSnapshotter(t, pool, pool.Name()+"/crash")
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "a", "", gcRoot); err != nil {
		t.Fatal(err)
	}
	id := storeID(t, st, "a")
	c, err := st.Clone(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	labels := maps.Clone(c.Labels)
	for k, v := range c.Labels {
		if rest, ok := strings.CutPrefix(k, "a."); ok {
			labels["c."+rest] = v
		}
	}
	labels["c.name"], labels["c.kind"] = "half", "committed"
	if err := st.SetLabels(ctx, id, labels); err != nil {
		t.Fatal(err)
	}

	info, err := sn.Stat(ctx, "a")
	if err != nil || info.Kind != snapshots.KindActive {
		t.Fatalf("stat a: %+v, %v", info, err)
	}
	if err := stat(sn, "half"); !errdefs.IsNotFound(err) {
		t.Errorf("stat of the name never committed: %v", err)
	}
	if got := walkNames(t, sn); !slices.Equal(got, []string{"a"}) {
		t.Errorf("walk: %v", got)
	}
	if err := sn.Commit(ctx, "done", "a", gcRoot); err != nil {
		t.Fatal(err)
	}
	if got := walkNames(t, sn, "kind==committed"); !slices.Equal(got, []string{"done"}) {
		t.Errorf("walk after commit: %v", got)
	}
}
