package ocilayout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fixture writes an image of the given layer contents into a new layout
// and returns the layout and the image as written.
func fixture(t *testing.T, ref string, layers ...string) (*Layout, *Image) {
	t.Helper()
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := &Image{Config: ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}}
	img.Manifest.SchemaVersion = 2
	for i, c := range layers {
		desc, err := l.WriteBlob(context.Background(), ocispec.MediaTypeImageLayer, strings.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		img = AppendLayer(img, desc, desc.Digest, ocispec.History{CreatedBy: "layer " + string(rune('a'+i))})
	}
	if _, err := l.WriteImage(img, ref); err != nil {
		t.Fatal(err)
	}
	return l, img
}

func readAll(t *testing.T, l *Layout, desc ocispec.Descriptor) ([]byte, error) {
	t.Helper()
	rc, err := l.OpenBlob(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestChainIDs(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	sum := func(s string) digest.Digest {
		h := sha256.Sum256([]byte(s))
		return digest.Digest("sha256:" + hex.EncodeToString(h[:]))
	}
	ab := sum(string(a) + " " + string(b))
	abc := sum(string(ab) + " " + string(c))
	for _, tc := range []struct {
		in   []digest.Digest
		want []digest.Digest
	}{
		{nil, []digest.Digest{}},
		{[]digest.Digest{a}, []digest.Digest{a}},
		{[]digest.Digest{a, b}, []digest.Digest{a, ab}},
		{[]digest.Digest{a, b, c}, []digest.Digest{a, ab, abc}},
	} {
		if diff := cmp.Diff(tc.want, ChainIDs(tc.in)); diff != "" {
			t.Errorf("ChainIDs(%v) (-want +got):\n%s", tc.in, diff)
		}
		top := digest.Digest("")
		if len(tc.want) > 0 {
			top = tc.want[len(tc.want)-1]
		}
		if got := ChainID(tc.in); got != top {
			t.Errorf("ChainID(%v) = %s, want %s", tc.in, got, top)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	l, want := fixture(t, "v1", "one", "two", "three")
	got, err := l.Image(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	want.Descriptor.Annotations = map[string]string{ocispec.AnnotationRefName: "v1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image read back (-want +got):\n%s", diff)
	}
	// The only entry is found without a name too.
	if _, err := l.Image(context.Background(), ""); err != nil {
		t.Errorf("image without a name: %v", err)
	}
	for i, ld := range got.Manifest.Layers {
		b, err := readAll(t, l, ld)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if want := []string{"one", "two", "three"}[i]; string(b) != want {
			t.Errorf("layer %d holds %q, want %q", i, b, want)
		}
		if got.Config.RootFS.DiffIDs[i] != ld.Digest {
			t.Errorf("layer %d: diff id %s, digest %s", i, got.Config.RootFS.DiffIDs[i], ld.Digest)
		}
	}
	if diff := cmp.Diff([]string{"layer a", "layer b", "layer c"}, historyOf(got)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

func historyOf(img *Image) []string {
	var out []string
	for _, h := range img.Config.History {
		out = append(out, h.CreatedBy)
	}
	return out
}

func TestAppendLayerLeavesBase(t *testing.T) {
	l, base := fixture(t, "base", "one")
	desc, err := l.WriteBlob(context.Background(), ocispec.MediaTypeImageLayerGzip, strings.NewReader("new"))
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	next := AppendLayer(base, desc, digest.FromString("tar"), ocispec.History{Created: &when, CreatedBy: "commit"})
	if len(base.Manifest.Layers) != 1 || len(base.Config.RootFS.DiffIDs) != 1 || len(base.Config.History) != 1 {
		t.Fatalf("AppendLayer changed its input: %+v", base)
	}
	if _, err := l.WriteImage(next, "next"); err != nil {
		t.Fatal(err)
	}
	got, err := l.Image(context.Background(), "next")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []digest.Digest{base.Config.RootFS.DiffIDs[0], digest.FromString("tar")}
	if diff := cmp.Diff(wantIDs, got.DiffIDs()); diff != "" {
		t.Errorf("diff ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ChainIDs(wantIDs), got.ChainIDs()); diff != "" {
		t.Errorf("chain ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"layer a", "commit"}, historyOf(got)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if got.Manifest.Layers[1].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("new layer media type %q", got.Manifest.Layers[1].MediaType)
	}
	// Both names are in the index, and the old image is unchanged.
	old, err := l.Image(context.Background(), "base")
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Manifest.Layers) != 1 {
		t.Errorf("base image has %d layers after the append", len(old.Manifest.Layers))
	}
	if _, err := l.Image(context.Background(), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no name with two entries: %v, want ErrInvalid", err)
	}
}

func TestTagReplaces(t *testing.T) {
	l, _ := fixture(t, "v1", "one")
	_, img2 := fixture(t, "v1", "two")
	desc, err := l.WriteBlob(context.Background(), ocispec.MediaTypeImageLayer, strings.NewReader("two"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteImage(AppendLayer(&Image{Config: img2.Config, Manifest: img2.Manifest}, desc, desc.Digest,
		ocispec.History{}), "v1"); err != nil {
		t.Fatal(err)
	}
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d entries after re-tagging, want 1", len(idx.Manifests))
	}
	got, err := l.Image(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Manifest.Layers); n != 2 {
		t.Errorf("v1 has %d layers, want the new image's 2", n)
	}
}

func TestBlobVerification(t *testing.T) {
	l, img := fixture(t, "v1", "hello, layer")
	ld := img.Manifest.Layers[0]
	p, _ := l.blobPath(ld.Digest)

	tests := []struct {
		name    string
		content string
		desc    func(ocispec.Descriptor) ocispec.Descriptor
	}{
		{"same size, other content", "hello, LAYER", nil},
		{"truncated", "hello", nil},
		{"longer", "hello, layer and more", nil},
		{"descriptor size too small", "hello, layer", func(d ocispec.Descriptor) ocispec.Descriptor {
			d.Size--
			return d
		}},
		{"descriptor size too large", "hello, layer", func(d ocispec.Descriptor) ocispec.Descriptor {
			d.Size++
			return d
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			d := ld
			if tc.desc != nil {
				d = tc.desc(d)
			}
			if _, err := readAll(t, l, d); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("read: %v, want ErrDigestMismatch", err)
			}
		})
	}

	if err := os.WriteFile(p, []byte("hello, layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(t, l, ld); err != nil || string(b) != "hello, layer" {
		t.Errorf("intact blob: %q, %v", b, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := l.OpenBlob(ld); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing blob: %v, want ErrNotFound", err)
	}
	if _, err := l.Image(context.Background(), "v1"); err != nil {
		t.Errorf("reading the image needs no layer blob: %v", err)
	}
}

func TestCorruptManifestAndConfig(t *testing.T) {
	for _, which := range []string{"manifest", "config"} {
		t.Run(which, func(t *testing.T) {
			l, img := fixture(t, "v1", "one")
			d := img.Descriptor
			if which == "config" {
				d = img.Manifest.Config
			}
			p, _ := l.blobPath(d.Digest)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":3`), 1)
			b = bytes.Replace(b, []byte(`"layers"`), []byte(`"LAYERS"`), 1)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Image(context.Background(), "v1"); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("image with a changed %s: %v, want ErrDigestMismatch", which, err)
			}
		})
	}
}

// writeIndexJSON replaces index.json with raw text.
func writeIndexJSON(t *testing.T, l *Layout, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.Dir(), "index.json"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNestedIndex(t *testing.T) {
	l, img := fixture(t, "", "one", "two")
	other := img.Descriptor
	other.Platform = &ocispec.Platform{OS: "linux", Architecture: "s390x"}
	mine := img.Descriptor
	mine.Platform = &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}

	inner := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{other, mine}}
	inner.SchemaVersion = 2
	innerDesc, err := l.WriteJSON(ocispec.MediaTypeImageIndex, inner)
	if err != nil {
		t.Fatal(err)
	}
	outer := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{innerDesc}}
	outer.SchemaVersion = 2
	outerDesc, err := l.WriteJSON(ocispec.MediaTypeImageIndex, outer)
	if err != nil {
		t.Fatal(err)
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	if err := l.writeIndex(idx); err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(outerDesc, "multi"); err != nil {
		t.Fatal(err)
	}
	got, err := l.Image(context.Background(), "multi")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mine, got.Descriptor); diff != "" {
		t.Errorf("manifest chosen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(img.Config, got.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	// No entry for this platform among several: refused.
	inner.Manifests = []ocispec.Descriptor{other, other}
	bad, err := l.WriteJSON(ocispec.MediaTypeImageIndex, inner)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(bad, "bad"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Image(context.Background(), "bad"); !errors.Is(err, ErrInvalid) {
		t.Errorf("index without this platform: %v, want ErrInvalid", err)
	}
}

func TestIndexLoop(t *testing.T) {
	l, _ := fixture(t, "", "one")
	// An index that names itself cannot be written (its digest would
	// change), but a chain deeper than the limit can.
	d, err := l.WriteBlob(context.Background(), ocispec.MediaTypeImageLayer, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	d.MediaType = ocispec.MediaTypeImageManifest
	for range maxDepth + 1 {
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{d}}
		idx.SchemaVersion = 2
		if d, err = l.WriteJSON(ocispec.MediaTypeImageIndex, idx); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Tag(d, "deep"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Image(context.Background(), "deep"); !errors.Is(err, ErrInvalid) {
		t.Errorf("indexes nested too deep: %v, want ErrInvalid", err)
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("no such ref", func(t *testing.T) {
		l, _ := fixture(t, "v1", "one")
		_, err := l.Image(ctx, "v2")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "v1") {
			t.Errorf("unknown ref: %v, want ErrNotFound naming v1", err)
		}
	})
	t.Run("no layout", func(t *testing.T) {
		if _, err := Open(t.TempDir()); !errors.Is(err, ErrNotFound) {
			t.Errorf("open empty folder: %v, want ErrNotFound", err)
		}
	})
	t.Run("layout version", func(t *testing.T) {
		l, _ := fixture(t, "v1", "one")
		os.WriteFile(filepath.Join(l.Dir(), "oci-layout"), []byte(`{"imageLayoutVersion":"2.0.0"}`), 0o644)
		if _, err := Open(l.Dir()); !errors.Is(err, ErrInvalid) {
			t.Errorf("open layout 2.0.0: %v, want ErrInvalid", err)
		}
	})
	t.Run("digest naming a path", func(t *testing.T) {
		l, _ := fixture(t, "v1", "one")
		writeIndexJSON(t, l, `{"schemaVersion":2,"manifests":[{"mediaType":"`+
			ocispec.MediaTypeImageManifest+`","digest":"sha256:../../../etc/passwd","size":10}]}`)
		if _, err := l.Image(ctx, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("index with a path for a digest: %v, want ErrInvalid", err)
		}
	})
	t.Run("diff ids do not pair with layers", func(t *testing.T) {
		l, img := fixture(t, "v1", "one", "two")
		img.Config.RootFS.DiffIDs = img.Config.RootFS.DiffIDs[:1]
		if _, err := l.WriteImage(img, "short"); !errors.Is(err, ErrInvalid) {
			t.Errorf("writing: %v, want ErrInvalid", err)
		}
		cfg, _ := l.WriteJSON(ocispec.MediaTypeImageConfig, img.Config)
		img.Manifest.Config = cfg
		m, _ := l.WriteJSON(ocispec.MediaTypeImageManifest, img.Manifest)
		l.Tag(m, "short")
		if _, err := l.Image(ctx, "short"); !errors.Is(err, ErrInvalid) {
			t.Errorf("reading: %v, want ErrInvalid", err)
		}
	})
	t.Run("unknown layer media type", func(t *testing.T) {
		l, img := fixture(t, "v1", "one")
		img.Manifest.Layers[0].MediaType = "application/vnd.example.squashfs"
		m, _ := l.WriteJSON(ocispec.MediaTypeImageManifest, img.Manifest)
		l.Tag(m, "odd")
		if _, err := l.Image(ctx, "odd"); !errors.Is(err, ErrInvalid) {
			t.Errorf("squashfs layer: %v, want ErrInvalid", err)
		}
	})
	t.Run("missing layer blob", func(t *testing.T) {
		l, img := fixture(t, "v1", "one")
		img.Manifest.Layers[0].Digest = digest.FromString("elsewhere")
		if _, err := l.WriteImage(img, "v2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("image with a missing layer: %v, want ErrNotFound", err)
		}
	})
}

func TestBlobWriter(t *testing.T) {
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	entries := func() []string {
		des, _ := os.ReadDir(l.Dir())
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return names
	}
	before := entries()

	w, err := l.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "dropped")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, entries()); diff != "" {
		t.Errorf("a closed blob left files (-before +after):\n%s", diff)
	}

	w, _ = l.NewBlob()
	io.WriteString(w, "content")
	_, err = w.Commit(ocispec.MediaTypeImageLayer, digest.FromString("other"))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("commit with the wrong digest: %v, want ErrDigestMismatch", err)
	}
	if l.HasBlob(ocispec.Descriptor{Digest: digest.FromString("content"), Size: 7}) {
		t.Error("a refused blob was kept")
	}
	if diff := cmp.Diff(before, entries()); diff != "" {
		t.Errorf("a refused blob left files (-before +after):\n%s", diff)
	}

	w, _ = l.NewBlob()
	io.WriteString(w, "content")
	desc, err := w.Commit(ocispec.MediaTypeImageLayer, digest.FromString("content"))
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("content"), Size: 7}
	if diff := cmp.Diff(want, desc); diff != "" {
		t.Errorf("descriptor (-want +got):\n%s", diff)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close after commit: %v", err)
	}
	if b, err := readAll(t, l, desc); err != nil || string(b) != "content" {
		t.Errorf("blob: %q, %v", b, err)
	}

	// The same content again keeps the one blob.
	again, err := l.WriteBlob(context.Background(), ocispec.MediaTypeImageLayer, strings.NewReader("content"))
	if err != nil || !cmp.Equal(again, desc) {
		t.Errorf("same blob again: %v, %v", again, err)
	}
	if diff := cmp.Diff(before, entries()); diff != "" {
		t.Errorf("layout root changed (-before +after):\n%s", diff)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.WriteBlob(ctx, ocispec.MediaTypeImageLayer, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
}

func TestCopyBlob(t *testing.T) {
	src, img := fixture(t, "v1", "layer content")
	dst, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld := img.Manifest.Layers[0]
	if err := dst.CopyBlob(context.Background(), src, ld); err != nil {
		t.Fatal(err)
	}
	if !dst.HasBlob(ld) {
		t.Fatal("copied blob missing")
	}
	// A corrupt source is refused and leaves nothing.
	bad := ld
	bad.Digest = digest.FromString("layer content!")
	p, _ := src.blobPath(bad.Digest)
	os.WriteFile(p, []byte("layer CONTENT"), 0o644)
	if err := dst.CopyBlob(context.Background(), src, bad); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("corrupt source: %v, want ErrDigestMismatch", err)
	}
	if dst.HasBlob(bad) {
		t.Error("corrupt blob copied")
	}
	names, _ := os.ReadDir(filepath.Join(dst.Dir(), "blobs", "sha256"))
	if !slices.ContainsFunc(names, func(de os.DirEntry) bool { return de.Name() == ld.Digest.Encoded() }) ||
		len(names) != 1 {
		t.Errorf("blobs after copies: %v", names)
	}
}

// TestSHA512Blob reads a blob named by a sha512 digest, the image spec's
// other registered algorithm, and refuses it when its content differs.
func TestSHA512Blob(t *testing.T) {
	l, _ := fixture(t, "v1", "hello, layer")
	content := []byte("a blob named by sha512")
	d := digest.SHA512.FromBytes(content)
	p, err := l.blobPath(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(content))}
	if b, err := readAll(t, l, desc); err != nil || string(b) != string(content) {
		t.Fatalf("read: %q, %v", b, err)
	}
	if err := os.WriteFile(p, []byte("a blob named by SHA512"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, l, desc); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("changed content: %v, want ErrDigestMismatch", err)
	}
}
