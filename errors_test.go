package zlayer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInvalidIDs(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "base", "", nil)
	long := strings.Repeat("x", 250)
	for _, id := range []string{"", "/", "a/b", "a@b", "..", ".", "-x", "a b", "a%b", "a#b", long} {
		_, err := s.CreateLayer(ctx, id, "", nil)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateLayer(%q) = %v, want ErrInvalid", id, err)
		}
		_, err = s.CreateLayer(ctx, "ok-"+strings.Repeat("y", 3), id, nil)
		if id != "" && !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateLayer with parent %q = %v, want ErrInvalid", id, err)
		}
		if _, err := s.Layer(ctx, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Layer(%q) = %v, want ErrInvalid", id, err)
		}
		if err := s.Remove(ctx, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Remove(%q) = %v, want ErrInvalid", id, err)
		}
		if _, err := s.CreateSnapshot(ctx, "base", id); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateSnapshot(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if _, err := s.CreateSnapshot(ctx, "base", "zlayer-mine"); !errors.Is(err, ErrInvalid) {
		t.Errorf("reserved snapshot name: %v, want ErrInvalid", err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	s, p := newStore(t)
	mustLayer(t, s, "base", "", nil)
	mustLayer(t, s, "child", "base", nil)
	if _, err := s.CreateLayer(ctx, "open", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateClone(ctx, "ctr", "child", nil); err != nil {
		t.Fatal(err)
	}

	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
			return
		}
		t.Logf("%s: %v", name, err)
	}
	names := func(name string, err error, ds string) {
		t.Helper()
		if err != nil && !strings.Contains(err.Error(), ds) {
			t.Errorf("%s: error %q does not name %q", name, err, ds)
		}
	}

	_, err := s.Layer(ctx, "nope")
	check("get unknown", err, ErrNotFound)
	names("get unknown", err, "nope")
	check("remove unknown", s.Remove(ctx, "nope"), ErrNotFound)
	_, err = s.CreateLayer(ctx, "x", "nope", nil)
	check("child of unknown", err, ErrNotFound)
	check("mount unknown", s.Mount(ctx, "nope", t.TempDir(), nil), ErrNotFound)
	_, err = s.Clone(ctx, "base")
	check("layer as clone", err, ErrNotFound)
	_, err = s.Layer(ctx, "ctr")
	check("clone as layer", err, ErrNotFound)
	check("unmount unknown", s.Unmount(ctx, t.TempDir()), ErrNotFound)
	_, err = OpenPool(ctx, "nopool")
	check("open unknown pool", err, ErrNotFound)

	_, err = s.CreateLayer(ctx, "base", "", nil)
	check("create existing", err, ErrExist)
	names("create existing", err, s.Root()+"/base")
	_, err = s.CreateClone(ctx, "ctr", "child", nil)
	check("clone existing", err, ErrExist)
	_, err = s.CommitClone(ctx, "ctr", "base", nil)
	check("commit clone onto existing", err, ErrExist)
	_, err = s.CreateSnapshot(ctx, "open", "s1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateSnapshot(ctx, "open", "s1")
	check("snapshot existing", err, ErrExist)
	_, err = CreateFilePool(ctx, p.Name(), t.TempDir(), nil)
	check("create existing pool", err, ErrExist)

	check("remove parent", s.Remove(ctx, "base"), ErrBusy)
	check("remove cloned layer", s.Remove(ctx, "child"), ErrBusy)
	dir := filepath.Join(t.TempDir(), "m")
	if err := s.Mount(ctx, "open", dir, nil); err != nil {
		t.Fatal(err)
	}
	check("remove mounted", s.Remove(ctx, "open"), ErrBusy)
	check("mount other at same target", s.Mount(ctx, "ctr", dir, nil), ErrBusy)
	check("mount with other access", s.Mount(ctx, "open", dir, &MountOptions{ReadOnly: true}), ErrBusy)
	f, err := os.Create(filepath.Join(dir, "held-open"))
	if err != nil {
		t.Fatal(err)
	}
	check("unmount in use", s.Unmount(ctx, dir), ErrBusy)
	f.Close()
	if err := s.Unmount(ctx, dir); err != nil {
		t.Fatal(err)
	}

	// A mount made by someone else, outside the store.
	other := t.TempDir()
	if err := unix.Mount(s.Root()+"/ctr", other, "zfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	check("remove mounted elsewhere", s.Remove(ctx, "ctr"), ErrBusy)
	if err := unix.Unmount(other, 0); err != nil {
		t.Fatal(err)
	}

	if err := s.Hold(ctx, "open", "s1", "test"); err != nil {
		t.Fatal(err)
	}
	check("hold twice", s.Hold(ctx, "open", "s1", "test"), ErrExist)
	check("remove held", s.Remove(ctx, "open"), ErrBusy)
	check("remove held snapshot", s.RemoveSnapshot(ctx, "open", "s1"), ErrBusy)
	if err := s.Release(ctx, "open", "s1", "test"); err != nil {
		t.Fatal(err)
	}
	check("release twice", s.Release(ctx, "open", "s1", "test"), ErrNotFound)

	_, err = s.CreateLayer(ctx, "y", "open", nil)
	check("child of active layer", err, ErrInvalid)
	_, err = s.Commit(ctx, "base")
	check("commit twice", err, ErrInvalid)
	_, err = s.Commit(ctx, "ctr")
	check("commit clone as layer", err, ErrInvalid)
	check("rw mount of committed", s.Mount(ctx, "base", t.TempDir(), nil), ErrInvalid)
	check("rollback committed", s.Rollback(ctx, "base", "s1"), ErrInvalid)
	if _, err := s.CreateSnapshot(ctx, "open", "s2"); err != nil {
		t.Fatal(err)
	}
	check("rollback past newer", s.Rollback(ctx, "open", "s1"), ErrBusy)
	_, err = CreateFilePool(ctx, "bad/name", t.TempDir(), nil)
	check("bad pool name", err, ErrInvalid)
	_, err = OpenStore(ctx, p, &StoreOptions{Root: "elsewhere/zlayer"})
	check("store outside pool", err, ErrInvalid)

	// A dataset the store did not make is not a store, nor a layer.
	if out, err := exec.Command("zfs", "create", p.Name()+"/foreign").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, err = OpenStore(ctx, p, &StoreOptions{Root: p.Name() + "/foreign"})
	check("foreign root", err, ErrExist)

	// Space: a clone's quota is enforced by ZFS.
	if _, err := s.CreateClone(ctx, "small", "child", &CloneOptions{Quota: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(t.TempDir(), "s")
	if err := s.Mount(ctx, "small", sdir, nil); err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(sdir, "f"), make([]byte, 4<<20), 0o644)
	if !errors.Is(err, unix.EDQUOT) {
		t.Errorf("write past quota: %v, want EDQUOT", err)
	}
	if err := s.Unmount(ctx, sdir); err != nil {
		t.Fatal(err)
	}
}

// TestUnavailable runs the API where /dev/zfs is missing: in a private mount
// namespace with an empty /dev when the machine has ZFS. Every entry point
// must fail with ErrUnavailable, and nothing may crash.
func TestUnavailable(t *testing.T) {
	if os.Getenv("ZLAYER_UNAVAILABLE_CHILD") == "1" {
		checkUnavailable(t)
		return
	}
	if _, err := os.Stat("/dev/zfs"); err != nil {
		checkUnavailable(t)
		return
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare is needed to hide /dev/zfs")
	}
	cmd := exec.Command("unshare", "--mount", "sh", "-c",
		`mount -t tmpfs none /dev && exec "$0" -test.run='^TestUnavailable$' -test.v`, os.Args[0])
	cmd.Env = append(os.Environ(), "ZLAYER_UNAVAILABLE_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child run without /dev/zfs failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestUnavailable") {
		t.Fatal("child did not run the test")
	}
}

func checkUnavailable(t *testing.T) {
	ctx := context.Background()
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	check("Available", Available())
	_, err := OpenPool(ctx, "tank")
	check("OpenPool", err)
	_, err = CreateFilePool(ctx, "tank", t.TempDir(), nil)
	check("CreateFilePool", err)
	_, err = ImportPool(ctx, "tank", t.TempDir())
	check("ImportPool", err)
	p := &Pool{name: "tank"}
	_, err = p.Status(ctx)
	check("Status", err)
	check("Export", p.Export(ctx))
	check("Destroy", p.Destroy(ctx))
	_, err = OpenStore(ctx, p, nil)
	check("OpenStore", err)
	s := &Store{pool: "tank", root: "tank/zlayer", mounts: map[string]*mountRef{}}
	s.log = discardLogger()
	_, err = s.CreateLayer(ctx, "a", "", nil)
	check("CreateLayer", err)
	_, err = s.Layer(ctx, "a")
	check("Layer", err)
	check("Remove", s.Remove(ctx, "a"))
	for _, err := range s.Layers(ctx) {
		check("Layers", err)
	}
}
