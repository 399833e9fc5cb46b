package zlayer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/zlayer/zlayer/internal/fstree"
	"golang.org/x/sys/unix"
)

// diffLower fills a parent layer with something of every kind.
func diffLower(t testing.TB, d string) {
	writeFile(t, filepath.Join(d, "etc/passwd"), []byte("root:x:0:0\n"))
	writeFile(t, filepath.Join(d, "etc/same-size"), []byte("aaaa"))
	writeFile(t, filepath.Join(d, "etc/mode"), []byte("m"))
	writeFile(t, filepath.Join(d, "etc/owner"), []byte("o"))
	writeFile(t, filepath.Join(d, "bin/tool"), bytes.Repeat([]byte("t"), 300<<10))
	writeFile(t, filepath.Join(d, "lib/shared"), []byte("linked"))
	writeFile(t, filepath.Join(d, "lib/twice-a"), []byte("two names"))
	must(t, os.Link(filepath.Join(d, "lib/twice-a"), filepath.Join(d, "lib/twice-b")))
	writeFile(t, filepath.Join(d, "old/dir/deep"), []byte("gone"))
	writeFile(t, filepath.Join(d, "becomes-dir"), []byte("file"))
	writeFile(t, filepath.Join(d, "becomes-file/x"), []byte("dir"))
	writeFile(t, filepath.Join(d, "renamed-from"), []byte("moving"))
	must(t, os.Symlink("/etc/passwd", filepath.Join(d, "link")))
	must(t, unix.Setxattr(filepath.Join(d, "etc/passwd"), "user.note", []byte("v1"), 0))
}

// diffUpper changes the parent's tree in every way a layer can.
func diffUpper(t testing.TB, d string) {
	writeFile(t, filepath.Join(d, "etc/passwd"), []byte("root:x:0:0\nuser:x:1000:1000\n"))
	st, err := os.Stat(filepath.Join(d, "etc/same-size"))
	must(t, err)
	writeFile(t, filepath.Join(d, "etc/same-size"), []byte("bbbb"))
	must(t, os.Chtimes(filepath.Join(d, "etc/same-size"), st.ModTime(), st.ModTime()))
	must(t, os.Chmod(filepath.Join(d, "etc/mode"), 0o4755))
	must(t, os.Lchown(filepath.Join(d, "etc/owner"), 1000, 1000))
	must(t, unix.Setxattr(filepath.Join(d, "etc/passwd"), "user.note", []byte("v2"), 0))
	f, err := os.OpenFile(filepath.Join(d, "bin/tool"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("patched"), 128<<10)
	must(t, err)
	must(t, f.Close())
	must(t, os.Link(filepath.Join(d, "lib/shared"), filepath.Join(d, "lib/shared-link")))
	must(t, os.Remove(filepath.Join(d, "lib/twice-b")))
	must(t, os.RemoveAll(filepath.Join(d, "old")))
	must(t, os.Remove(filepath.Join(d, "becomes-dir")))
	writeFile(t, filepath.Join(d, "becomes-dir/inside"), []byte("now a dir"))
	must(t, os.RemoveAll(filepath.Join(d, "becomes-file")))
	writeFile(t, filepath.Join(d, "becomes-file"), []byte("now a file"))
	must(t, os.Rename(filepath.Join(d, "renamed-from"), filepath.Join(d, "etc/renamed-to")))
	must(t, os.Remove(filepath.Join(d, "link")))
	must(t, os.Symlink("/etc/shadow", filepath.Join(d, "link")))
	writeFile(t, filepath.Join(d, "new/tree/file"), []byte("added"))
	must(t, unix.Mkfifo(filepath.Join(d, "new/fifo"), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLayerDiff checks the layer diff from ZFS's change list three ways:
// it is the same bytes as the diff of a walk over both trees, the same
// bytes twice, and applying it onto a fresh child of the parent rebuilds
// the layer entry by entry.
func TestLayerDiff(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "base", "", func(d string) { diffLower(t, d) })
	mustLayer(t, s, "top", "base", func(d string) { diffUpper(t, d) })

	for _, comp := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(comp.String(), func(t *testing.T) {
			opts := &DiffOptions{Compression: comp}
			var zfsTar, again, walkTar bytes.Buffer
			res, err := s.Diff(ctx, "top", &zfsTar, opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Diff(ctx, "top", &again, opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(zfsTar.Bytes(), again.Bytes()) {
				t.Error("two diffs of one layer differ")
			}
			lower, upper := filepath.Join(t.TempDir(), "l"), filepath.Join(t.TempDir(), "u")
			must(t, s.Mount(ctx, "base", lower, &MountOptions{ReadOnly: true}))
			must(t, s.Mount(ctx, "top", upper, &MountOptions{ReadOnly: true}))
			wres, err := WriteChanges(ctx, &walkTar, lower, upper,
				withParents(WalkChanges(ctx, lower, upper)), opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := fstree.Snapshot(upper)
			must(t, err)
			must(t, s.Unmount(ctx, lower))
			must(t, s.Unmount(ctx, upper))
			if res.DiffID != wres.DiffID {
				t.Errorf("ZFS diff %s, walk diff %s: the change lists disagree", res.DiffID, wres.DiffID)
			}
			if res.Descriptor.MediaType != comp.MediaType() || res.Descriptor.Size != int64(zfsTar.Len()) {
				t.Errorf("descriptor %+v for %d bytes", res.Descriptor, zfsTar.Len())
			}

			id := "rt-" + comp.String()
			if _, err := s.CreateLayer(ctx, id, "base", nil); err != nil {
				t.Fatal(err)
			}
			ares, err := s.Apply(ctx, id, bytes.NewReader(zfsTar.Bytes()), &ApplyOptions{ExpectedDiffID: res.DiffID, ExpectedDigest: res.Descriptor.Digest})
			if err != nil {
				t.Fatal(err)
			}
			if ares.Compression != comp {
				t.Errorf("applied as %v", ares.Compression)
			}
			// The layer's root is not in a layer tar; its time is the
			// applier's.
			if diff := fstree.Diff(want, layerTreeOf(t, s, id), fstree.IgnoreMtime(".")); diff != "" {
				t.Errorf("round trip (-layer +rebuilt):\n%s", diff)
			}
		})
	}
}

// TestCloneDiff diffs a container's live clone: from a snapshot taken for
// the diff, which is gone afterwards.
func TestCloneDiff(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustLayer(t, s, "base", "", func(d string) { diffLower(t, d) })
	if _, err := s.CreateClone(ctx, "ctr", "base", nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ctr")
	must(t, s.Mount(ctx, "ctr", dir, nil))
	defer s.Unmount(ctx, dir)
	diffUpper(t, dir)

	var kinds = map[ChangeKind]int{}
	for c, err := range s.Changes(ctx, "ctr") {
		if err != nil {
			t.Fatal(err)
		}
		kinds[c.Kind]++
	}
	if kinds[ChangeAdd] == 0 || kinds[ChangeDelete] == 0 || kinds[ChangeModify] == 0 || kinds[ChangeRename] == 0 {
		t.Errorf("change kinds %v", kinds)
	}
	var buf bytes.Buffer
	res, err := s.Diff(ctx, "ctr", &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateLayer(ctx, "rebuilt", "base", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "rebuilt", &buf, &ApplyOptions{ExpectedDiffID: res.DiffID}); err != nil {
		t.Fatal(err)
	}
	want, err := fstree.Snapshot(dir)
	must(t, err)
	if diff := fstree.Diff(want, layerTreeOf(t, s, "rebuilt"), fstree.IgnoreMtime(".")); diff != "" {
		t.Errorf("clone round trip (-clone +rebuilt):\n%s", diff)
	}
	for sn, err := range s.Snapshots(ctx, "ctr") {
		t.Errorf("snapshot left: %v %v", sn, err)
	}
	assertNoLeftovers(t, s)
}
