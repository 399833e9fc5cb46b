package zlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/tartest"
)

func TestParseWhiteout(t *testing.T) {
	cases := []struct {
		base    string
		kind    WhiteoutKind
		name    string
		invalid bool
	}{
		{base: "file"},
		{base: ".wh"},
		{base: ".whx"},
		{base: "a.wh.b"},
		{base: ".wh.file", kind: WhiteoutFile, name: "file"},
		{base: ".wh..hidden", kind: WhiteoutFile, name: ".hidden"},
		{base: ".wh....", kind: WhiteoutFile, name: "..."},
		{base: ".wh..wh..opq", kind: WhiteoutOpaqueDir},
		{base: ".wh.", invalid: true},
		{base: ".wh..", invalid: true},
		{base: ".wh...", invalid: true},
		{base: ".wh..wh.", invalid: true},
		{base: ".wh..wh..opqx", invalid: true},
		{base: ".wh..wh.plnk.1", invalid: true},
		{base: ".wh.a/b", invalid: true},
	}
	for _, c := range cases {
		kind, name, err := ParseWhiteout(c.base)
		if c.invalid {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseWhiteout(%q) error %v, want ErrInvalid", c.base, err)
			}
			continue
		}
		if err != nil || kind != c.kind || name != c.name {
			t.Errorf("ParseWhiteout(%q) = %v, %q, %v; want %v, %q", c.base, kind, name, err,
				c.kind, c.name)
		}
	}
}

// extractRaw writes a layer's entries as they are, whiteout files
// included, as a plain extraction without OCI semantics does. It knows
// files, directories and symbolic links, which is all these tests need.
func extractRaw(t *testing.T, dir string, l tt.Layer) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(l.Tar()))
	times := make(map[string]time.Time)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(p, os.FileMode(hdr.Mode))
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		default:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, data, os.FileMode(hdr.Mode))
			}
		}
		if err == nil {
			err = os.Chtimes(p, hdr.ModTime, hdr.ModTime)
			times[p] = hdr.ModTime
		}
		if err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for p, mt := range times {
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

var whiteoutLayer = tt.Layer{
	tt.Whiteout("", "gone"),
	tt.Dir("d", tt.ModTime(t1)), tt.Opaque("d"), tt.File("d/new", "n"),
	tt.Whiteout("", "replaced"), tt.Dir("replaced"), tt.File("replaced/x", "x"),
	tt.Whiteout("", "file"), tt.File("file", "new"),
	tt.Dir("e"), tt.Whiteout("e", "sub"),
}

func TestOCIToOverlayAndBack(t *testing.T) {
	needApplyPrivileges(t)
	ctx := context.Background()
	dir := t.TempDir()
	extractRaw(t, dir, whiteoutLayer)

	if err := OCIToOverlay(ctx, dir); err != nil {
		t.Fatal(err)
	}
	opaque := fstree.Xattr(OverlayOpaqueXattr, "y")
	overlay := fstree.New(
		fstree.Char("gone", 0, 0, 0o644),
		dir_("d", 0o755, opaque, fstree.Mtime(t1)), file("d/new", "n", 0o644),
		dir_("replaced", 0o755, opaque), file("replaced/x", "x", 0o644),
		file("file", "new", 0o644),
		dir_("e", 0o755), fstree.Char("e/sub", 0, 0, 0o644),
	)
	got := snapshotTree(t, dir).Without(".")
	if d := fstree.Diff(overlay, got); d != "" {
		t.Fatalf("overlay form (-want +got):\n%s", d)
	}

	if err := OverlayToOCI(ctx, dir); err != nil {
		t.Fatal(err)
	}
	oci := fstree.New(
		file(".wh.gone", "", 0o644),
		dir_("d", 0o755, fstree.Mtime(t1)), file("d/.wh..wh..opq", "", 0o644), file("d/new",
			"n", 0o644),
		dir_("replaced", 0o755), file("replaced/.wh..wh..opq", "", 0o644), file("replaced/x",
			"x", 0o644),
		file("file", "new", 0o644),
		dir_("e", 0o755), file("e/.wh.sub", "", 0o644),
	)
	if d := fstree.Diff(oci, snapshotTree(t, dir).Without("."),
		fstree.IgnoreMtime("./...")); d != "" {
		t.Fatalf("OCI form (-want +got):\n%s", d)
	}
	if d := fstree.Diff(fstree.New(dir_("d", 0o755, fstree.Mtime(t1))), snapshotTree(t, dir),
		fstree.IgnorePaths(".", "d/...", ".wh.gone", "replaced", "replaced/...", "file", "e",
			"e/...")); d != "" {
		t.Errorf("the conversions moved a directory's time (-want +got):\n%s", d)
	}

	if err := OCIToOverlay(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if d := fstree.Diff(overlay, snapshotTree(t, dir).Without("."),
		fstree.IgnoreMtime("./...")); d != "" {
		t.Errorf("overlay form after a round trip (-want +got):\n%s", d)
	}
}

func TestWhiteoutConversionRefusals(t *testing.T) {
	needApplyPrivileges(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".wh.literal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := OverlayToOCI(context.Background(), dir); !errors.Is(err, ErrInvalid) {
		t.Errorf("overlay tree with a .wh. name: error %v, want ErrInvalid", err)
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".wh..wh.plnk"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := OCIToOverlay(context.Background(), dir); !errors.Is(err, ErrInvalid) {
		t.Errorf("OCI tree with a bad marker: error %v, want ErrInvalid", err)
	}
}

// TestOCIToOverlayMount checks the converted form against the kernel's
// own reading of it: an overlay of the lower layers under the converted
// upper one shows what ApplyDir makes of the same stack.
func TestOCIToOverlayMount(t *testing.T) {
	needApplyPrivileges(t)
	lower := tt.Layer{
		tt.File("gone", "g"), tt.Dir("d"), tt.File("d/old", "o"), tt.Dir("d/sub"),
		tt.File("d/sub/old2", "o2"), tt.Dir("replaced"), tt.File("replaced/old", "o"),
		tt.File("file", "old"), tt.Dir("e"), tt.Dir("e/sub"), tt.File("e/sub/s", "s"),
		tt.File("kept", "k"),
	}
	base := t.TempDir()
	lowerDir, upper, work, merged, applied :=
		filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"),
		filepath.Join(base, "merged"), filepath.Join(base, "applied")
	for _, d := range []string{lowerDir, upper, work, merged, applied} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, d := range []string{lowerDir, applied} {
		if _, err := ApplyDir(ctx, d, bytes.NewReader(lower.Tar()), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ApplyDir(ctx, applied, bytes.NewReader(whiteoutLayer.Tar()), nil); err != nil {
		t.Fatal(err)
	}
	extractRaw(t, upper, whiteoutLayer)
	if err := OCIToOverlay(ctx, upper); err != nil {
		t.Fatal(err)
	}

	data := "lowerdir=" + lowerDir + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount overlay: %v", err)
		}
		t.Skipf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, 0) })

	opts := []cmp.Option{fstree.IgnoreMtime("./..."), fstree.IgnorePaths(".")}
	if d := fstree.Diff(snapshotTree(t, applied), snapshotTree(t, merged), opts...); d != "" {
		t.Errorf("overlay view (-ApplyDir +overlay):\n%s", d)
	}
}

func snapshotTree(t *testing.T, dir string) fstree.Tree {
	t.Helper()
	tree, err := fstree.Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// dir_ is fstree.Dir where the name dir is shadowed by a variable.
var dir_ = fstree.Dir
