package zlayer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyOnWrite follows one file through a base layer, a child layer and
// a container clone, measuring with ZFS's own space accounting.
func TestCopyOnWrite(t *testing.T) {
	ctx := context.Background()
	s, p := newStore(t)
	const size = 64 << 20
	big := bytes.Repeat([]byte("zlayer-cow-test."), size/16)

	mustLayer(t, s, "base", "", func(dir string) {
		writeFile(t, filepath.Join(dir, "big"), big)
		writeFile(t, filepath.Join(dir, "doomed"), []byte("lower file"))
	})
	mustLayer(t, s, "child", "base", nil)
	if _, err := s.CreateClone(ctx, "ctr", "child", nil); err != nil {
		t.Fatal(err)
	}
	syncPool(t, p)
	baseRef := usage(t, s, "base").Referenced
	if baseRef < size {
		t.Fatalf("base refers to %d bytes, want at least %d", baseRef, size)
	}
	if u := usage(t, s, "child"); u.Used > 1<<20 {
		t.Fatalf("child layer uses %d bytes of its own; a clone should share its parent's", u.Used)
	}
	before := usage(t, s, "ctr")

	dir := filepath.Join(t.TempDir(), "ctr")
	if err := s.Mount(ctx, "ctr", dir, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Unmount(ctx, dir) })

	// A new file allocates in the container alone.
	writeFile(t, filepath.Join(dir, "new"), bytes.Repeat([]byte{7}, 1<<20))
	syncPool(t, p)
	afterNew := usage(t, s, "ctr")
	if grew := afterNew.Written - before.Written; grew < 1<<20 || grew > 2<<20 {
		t.Errorf("container written grew by %d bytes for a 1 MiB file", grew)
	}
	for _, id := range []string{"base", "child"} {
		if _, err := os.Stat(filepath.Join(dir, "new")); err != nil {
			t.Fatal(err)
		}
		if got := usage(t, s, id).Referenced; id == "base" && got != baseRef {
			t.Errorf("%s referenced changed from %d to %d", id, baseRef, got)
		}
	}

	// Rewriting one 128 KiB record of the 64 MiB file costs about one record.
	f, err := os.OpenFile(filepath.Join(dir, "big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 128<<10), 32<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	syncPool(t, p)
	afterRewrite := usage(t, s, "ctr")
	grew := afterRewrite.Written - afterNew.Written
	t.Logf("one 128 KiB record rewritten: written grew by %d bytes", grew)
	if grew < 128<<10 || grew > 1<<20 {
		t.Errorf("rewriting one record grew written by %d bytes, want about 128 KiB", grew)
	}

	// Deleting a lower file hides it in the container only.
	if err := os.Remove(filepath.Join(dir, "doomed")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"base", "child"} {
		ldir := filepath.Join(t.TempDir(), id)
		if err := s.Mount(ctx, id, ldir, &MountOptions{ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(ldir, "doomed"))
		if err != nil || string(got) != "lower file" {
			t.Errorf("layer %s lost the file deleted in the container: %q, %v", id, got, err)
		}
		if err := s.Unmount(ctx, ldir); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "doomed")); !os.IsNotExist(err) {
		t.Errorf("deleted file still visible in the container: %v", err)
	}
}
