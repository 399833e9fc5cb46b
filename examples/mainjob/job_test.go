package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/fstree"
	"github.com/zlayer/zlayer/internal/ocilayout"
)

// sampleLayout writes the generated image into a new layout.
func sampleLayout(t *testing.T) (*ocilayout.Layout, *ocilayout.Image) {
	t.Helper()
	dir := t.TempDir()
	if err := writeSample(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	l, err := ocilayout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Image(context.Background(), sampleRef)
	if err != nil {
		t.Fatal(err)
	}
	return l, img
}

// layerIDs lists the store's layers and clones.
func layerIDs(t *testing.T, s *zlayer.Store) []string {
	t.Helper()
	var ids []string
	for l, err := range s.Layers(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	for c, err := range s.Clones(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, "clone "+c.ID)
	}
	return ids
}

// TestSampleJob runs the job's steps on the generated image and checks
// every layer, and the exported image, against umoci's unpacking.
func TestSampleJob(t *testing.T) {
	s := newStore(t, 1<<30)
	ctx := context.Background()
	src, img := sampleLayout(t)
	log := testLogger(t)

	var prog bytes.Buffer
	layers, err := unpackImage(ctx, s, src, img, log, newProgress(&prog))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", prog.String())
	chain := img.ChainIDs()
	for i, u := range layers {
		if u.ID != chain[i].String() || u.Reused || u.Apply.DiffID != img.Config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: %+v, want chain id %s applied", i+1, u, chain[i])
		}
	}
	top := snapshotLayer(t, s, layers[2].ID)
	if d := fstree.Diff(sampleTree(), top, fstree.IgnorePaths(".")); d != "" {
		t.Errorf("top layer (-want +got):\n%s", d)
	}

	// Every image prefix: umoci's tree of the image cut at layer N is
	// zlayer's layer N. The cut images are written next to the sample.
	for n := 1; n <= len(layers); n++ {
		cut := &ocilayout.Image{Manifest: img.Manifest, Config: img.Config}
		cut.Manifest.Layers = img.Manifest.Layers[:n]
		cut.Config.RootFS.DiffIDs = img.Config.RootFS.DiffIDs[:n]
		cut.Config.History = img.Config.History[:n]
		ref := "cut" + string(rune('0'+n))
		if _, err := src.WriteImage(cut, ref); err != nil {
			t.Fatal(err)
		}
		want := snapshotDir(t, umociUnpack(t, src.Dir(), ref)())
		compareTrees(t, "layer "+ref, want, snapshotLayer(t, s, layers[n-1].ID), src, cut.Manifest.Layers)
	}

	dst, err := ocilayout.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := commitContainer(ctx, s, dst, layers[2].ID, "ctr", log, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, s, src, dst, img, c)
}

// checkCommitted exports the container's layer and checks the image:
// its descriptors, and umoci's unpacking of it against the layer's tree.
func checkCommitted(t *testing.T, s *zlayer.Store, src, dst *ocilayout.Layout, img *ocilayout.Image, c *committed) {
	t.Helper()
	ctx := context.Background()
	l, err := s.Layer(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if l.Parent != c.Parent || l.Labels[labelChainID] != c.ChainID.String() || l.Labels[labelDiffID] != c.DiffID.String() {
		t.Errorf("container layer %+v, want parent %s and labels for %s", l, c.Parent, c.ChainID)
	}
	out, err := exportImage(ctx, src, dst, img, c, "latest")
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.Image(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	n := len(img.Manifest.Layers)
	if len(got.Manifest.Layers) != n+1 || len(got.Config.History) != len(img.Config.History)+1 {
		t.Fatalf("exported image has %d layers and %d history entries, want %d and %d",
			len(got.Manifest.Layers), len(got.Config.History), n+1, len(img.Config.History)+1)
	}
	if got.Descriptor.Digest != out.Descriptor.Digest {
		t.Errorf("index names manifest %s, export wrote %s", got.Descriptor.Digest, out.Descriptor.Digest)
	}
	wantIDs := append(img.DiffIDs(), c.DiffID)
	if !slices.Equal(got.DiffIDs(), wantIDs) {
		t.Errorf("diff ids %v, want %v", got.DiffIDs(), wantIDs)
	}
	if got.ChainIDs()[n] != c.ChainID {
		t.Errorf("new layer's chain id %s, image's %s", c.ChainID, got.ChainIDs()[n])
	}
	last := got.Manifest.Layers[n]
	if last.MediaType != ocispec.MediaTypeImageLayerGzip || last.Digest != c.Blob.Digest {
		t.Errorf("new layer descriptor %+v, want gzip %s", last, c.Blob.Digest)
	}
	// The blob's tar is the diff id, checked by applying it on a copy of
	// nothing: ApplyDir checks both digests as it reads.
	rc, err := dst.OpenBlob(last)
	if err != nil {
		t.Fatal(err)
	}
	_, err = zlayer.ApplyDir(ctx, t.TempDir(), rc, &zlayer.ApplyOptions{
		ExpectedDigest: last.Digest, ExpectedDiffID: c.DiffID,
	})
	rc.Close()
	if err != nil {
		t.Errorf("new layer blob: %v", err)
	}

	t.Logf("new layer's entries: %q", layerNames(t, dst, last))
	want, ctr := snapshotPair(t, umociUnpack(t, dst.Dir(), "latest")(), s, c.ID)
	compareTrees(t, "exported image", want, ctr, dst, got.Manifest.Layers)
}

// TestSampleJobChanges checks the container's changes in the new layer.
func TestSampleJobChanges(t *testing.T) {
	s := newStore(t, 1<<30)
	ctx := context.Background()
	src, img := sampleLayout(t)
	layers, err := unpackImage(ctx, s, src, img, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := ocilayout.Create(t.TempDir())
	c, err := commitContainer(ctx, s, dst, layers[2].ID, "ctr", testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotLayer(t, s, layers[2].ID)
	after := snapshotLayer(t, s, c.ID)

	at := fstree.Mtime(changeTime)
	conf := fstree.LinkGroup(addedFile)
	want := before.Without(deleted, deletedDir, deletedDir+"/...", renamedFrom).With(
		fstree.Dir(addedDir, 0o755, at),
		fstree.File(addedFile, "written in the container\n", 0o640, at, conf),
		fstree.File(addedLink, "written in the container\n", 0o640, at, conf),
		fstree.Symlink(addedSymlink, "container.conf", at),
		fstree.Dir("var/lib", 0o755, at),
		fstree.Dir("var/lib/zlayer-ctr", 0o750, at),
		fstree.File(addedData, string(pattern(1<<20)), 0o600, at),
		fstree.File(modified, "Sample Linux \\n \\l\nchanged in a zlayer container\n", 0o644, at),
	)
	moved := before[renamedFrom]
	moved.Path = renamedTo
	mode := before[chmodded]
	mode.Mode = 0o600
	want = want.With(moved, mode)
	for _, dir := range []string{"etc", "var", "var/cache"} {
		e := want[dir]
		e.Mtime = changeTime
		want = want.With(e)
	}
	if d := fstree.Diff(want, after, fstree.IgnorePaths(".")); d != "" {
		t.Errorf("container layer (-want +got):\n%s", d)
	}
	if slices.Contains(layerIDs(t, s), "clone ctr") {
		t.Error("the clone is still there after its commit")
	}
}

// TestReuse unpacks an image twice into one store: the second time every
// layer is reused. The container's changes, the same both times, make the
// same blob and chain id.
func TestReuse(t *testing.T) {
	s := newStore(t, 1<<30)
	ctx := context.Background()
	src, img := sampleLayout(t)
	first, err := unpackImage(ctx, s, src, img, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := ocilayout.Create(t.TempDir())
	c1, err := commitContainer(ctx, s, dst, first[2].ID, "ctr1", testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := unpackImage(ctx, s, src, img, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range second {
		if !u.Reused || u.ID != first[i].ID {
			t.Errorf("layer %d: %+v, want %s reused", i+1, u, first[i].ID)
		}
	}
	c2, err := commitContainer(ctx, s, dst, second[2].ID, "ctr2", testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c2.ChainID != c1.ChainID || c2.Blob.Digest != c1.Blob.Digest {
		t.Errorf("second commit %+v, want the blob and chain id of %+v", c2, c1)
	}
	want := []string{first[0].ID, first[1].ID, first[2].ID, c1.ID, c2.ID}
	slices.Sort(want)
	if d := slices.Compare(want, layerIDs(t, s)); d != 0 {
		t.Errorf("store holds %v, want %v", layerIDs(t, s), want)
	}
}

// TestRefusesTamperedImage: a layer whose blob or diff id is not the one
// the image names is refused and removed; the layers below stay.
func TestRefusesTamperedImage(t *testing.T) {
	blobPath := func(l *ocilayout.Layout, d ocispec.Descriptor) string {
		return l.Dir() + "/blobs/sha256/" + d.Digest.Encoded()
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, l *ocilayout.Layout, img *ocilayout.Image) *ocilayout.Image
		want   []error // any of
	}{
		{"blob recompressed", func(t *testing.T, l *ocilayout.Layout, img *ocilayout.Image) *ocilayout.Image {
			// The same tar, so the same diff id, in other gzip bytes.
			p := blobPath(l, img.Manifest.Layers[1])
			zr, err := gzip.NewReader(bytes.NewReader(readFileAt(t, p)))
			if err != nil {
				t.Fatal(err)
			}
			tarball, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			zw.Write(tarball)
			zw.Close()
			writeFileAt(t, p, buf.Bytes())
			return img
		}, []error{ocilayout.ErrDigestMismatch}},
		{"blob corrupted", func(t *testing.T, l *ocilayout.Layout, img *ocilayout.Image) *ocilayout.Image {
			p := blobPath(l, img.Manifest.Layers[1])
			b := readFileAt(t, p)
			b[len(b)/2] ^= 0xff
			writeFileAt(t, p, b)
			return img
		}, []error{zlayer.ErrInvalid, ocilayout.ErrDigestMismatch}},
		{"manifest names another blob", func(t *testing.T, l *ocilayout.Layout, img *ocilayout.Image) *ocilayout.Image {
			img.Manifest.Layers[1] = img.Manifest.Layers[2]
			return img
		}, []error{zlayer.ErrInvalid}},
		{"diff id", func(t *testing.T, l *ocilayout.Layout, img *ocilayout.Image) *ocilayout.Image {
			img.Config.RootFS.DiffIDs[1] = digest.FromString("another tar")
			return img
		}, []error{zlayer.ErrInvalid}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, 512<<20)
			ctx := context.Background()
			src, img := sampleLayout(t)
			img = tc.tamper(t, src, img)
			_, err := unpackImage(ctx, s, src, img, testLogger(t), nil)
			isWant := slices.ContainsFunc(tc.want, func(w error) bool { return errors.Is(err, w) })
			if !isWant || !strings.Contains(err.Error(), "layer 2/3") {
				t.Fatalf("unpack: %v, want an error naming layer 2/3 and wrapping %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if got, want := layerIDs(t, s), []string{img.ChainIDs()[0].String()}; !slices.Equal(got, want) {
				t.Errorf("store holds %v, want only layer 1 %v", got, want)
			}
		})
	}
}

// TestRun runs the whole program on its embedded default: a generated
// image and a pool on a file, destroyed at the end.
func TestRun(t *testing.T) {
	newStore(t, 128<<20) // for the ZFS check only
	var stdout, progress bytes.Buffer
	out := t.TempDir()
	err := run(context.Background(), options{
		out: out, outRef: "latest", dir: t.TempDir(), poolSize: 1 << 30,
		log: testLogger(t), stdout: &stdout, progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stdout:\n%s\nprogress:\n%s", stdout.String(), progress.String())
	for _, want := range []string{"image layer 3", "new layer", "container commit", "new image \"latest\""} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(progress.String(), "layer 1/3: done") {
		t.Errorf("progress lacks layer 1's end")
	}
	l, err := ocilayout.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Image(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	for _, ld := range img.Manifest.Layers {
		rc, err := l.OpenBlob(ld)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer %s: %v", ld.Digest, err)
		}
		rc.Close()
	}
}
