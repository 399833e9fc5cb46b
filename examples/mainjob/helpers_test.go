package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/fstree"
	"github.com/zlayer/zlayer/internal/ocilayout"
	"github.com/zlayer/zlayer/internal/testzfs"
)

// newStore makes a store on a pool on a file of size bytes, destroyed
// when the test ends.
func newStore(tb testing.TB, size int64) *zlayer.Store {
	tb.Helper()
	pool := newPool(tb, size)
	s, err := zlayer.OpenStore(context.Background(), pool, &zlayer.StoreOptions{Logger: testLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// newPool makes a pool on a file of size bytes, destroyed when the test
// ends.
func newPool(tb testing.TB, size int64) *zlayer.Pool {
	tb.Helper()
	testzfs.Require(tb)
	ctx := context.Background()
	pool, err := zlayer.CreateFilePool(ctx, testzfs.PoolName("zm"), tb.TempDir(),
		&zlayer.FilePoolOptions{Size: size})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := pool.Destroy(context.Background()); err != nil && !errors.Is(err, zlayer.ErrNotFound) {
			tb.Errorf("destroy pool: %v", err)
		}
	})
	return pool
}

// testLogger sends records to the test's log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// snapshotLayer reads the tree of a layer or clone through a read-only
// mount.
func snapshotLayer(tb testing.TB, s *zlayer.Store, id string) fstree.Tree {
	tb.Helper()
	var tree fstree.Tree
	err := mountAt(context.Background(), s, id, true, func(dir string) error {
		var err error
		tree, err = fstree.Snapshot(dir)
		return err
	})
	if err != nil {
		tb.Fatalf("snapshot %s: %v", id, err)
	}
	return tree
}

// umociUnpack starts `umoci unpack` of image ref of the layout in dir
// into a new bundle; wait returns the bundle's rootfs.
func umociUnpack(tb testing.TB, dir, ref string) (wait func() string) {
	tb.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		tb.Fatalf("umoci not found (scripts/install-deps.sh installs it): %v", err)
	}
	bundle := filepath.Join(tb.TempDir(), "bundle")
	var out bytes.Buffer
	cmd := exec.Command("umoci", "unpack", "--image", dir+":"+ref, bundle)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return func() string {
		tb.Helper()
		if err := cmd.Wait(); err != nil {
			tb.Fatalf("umoci unpack %s:%s: %v\n%s", dir, ref, err, out.String())
		}
		tb.Logf("umoci unpack %s: %s", ref, time.Since(start).Round(time.Millisecond))
		return filepath.Join(bundle, "rootfs")
	}
}

// snapshotPair reads umoci's tree at dir and zlayer's layer id at once:
// hashing the files of both takes most of a comparison's time.
func snapshotPair(tb testing.TB, dir string, s *zlayer.Store, id string) (umoci, zl fstree.Tree) {
	tb.Helper()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		umoci, err = fstree.Snapshot(dir)
	}()
	zl = snapshotLayer(tb, s, id)
	<-done
	if err != nil {
		tb.Fatal(err)
	}
	return umoci, zl
}

// snapshotDir reads a tree, failing the test on error.
func snapshotDir(tb testing.TB, dir string) fstree.Tree {
	tb.Helper()
	tree, err := fstree.Snapshot(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return tree
}

// compareTrees reports the entries where got differs from want. The root
// folder is left out: umoci makes its bundle's root itself, and a layer's
// root is the dataset's. Modification times are not compared for the
// folders that implicitDirs finds in the image's layers.
func compareTrees(tb testing.TB, what string, want, got fstree.Tree, l *ocilayout.Layout,
	layers []ocispec.Descriptor) {
	tb.Helper()
	dirs := implicitDirs(tb, l, layers)
	if len(dirs) > 0 {
		tb.Logf("%s: times of %d folders not compared: %v", what, len(dirs), dirs)
	}
	if d := fstree.Diff(want, got, fstree.IgnorePaths("."), fstree.IgnoreMtime(dirs...)); d != "" {
		tb.Errorf("%s (-umoci +zlayer):\n%s", what, d)
	}
	tb.Logf("%s: %d entries compared", what, len(want))
}

// writeFileAt writes a file in a test folder, failing the test on error.
func writeFileAt(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// readFileAt reads a file, failing the test on error.
func readFileAt(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// implicitDirs returns the folders whose entries a layer of the stack
// changes without listing the folder itself, and that no later layer
// lists. umoci gives such a folder back its time from before the layer;
// zlayer's apply leaves it with the time of the apply, as the kernel set
// it (and so does a container commit, whose diff lists only what changed
// in the container).
func implicitDirs(tb testing.TB, l *ocilayout.Layout, layers []ocispec.Descriptor) []string {
	tb.Helper()
	set := map[string]bool{}
	for _, ld := range layers {
		names := layerNames(tb, l, ld)
		listed := map[string]bool{}
		for _, n := range names {
			listed[n] = true
		}
		for _, n := range names {
			if p := path.Dir(n); p != "." && !listed[p] {
				set[p] = true
			}
		}
		for n := range listed {
			delete(set, n)
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// layerTar opens a gzip or plain layer blob as its uncompressed tar.
func layerTar(tb testing.TB, l *ocilayout.Layout, ld ocispec.Descriptor) (io.Reader, func()) {
	tb.Helper()
	rc, err := l.OpenBlob(ld)
	if err != nil {
		tb.Fatal(err)
	}
	switch ld.MediaType {
	case ocispec.MediaTypeImageLayerGzip:
		zr, err := gzip.NewReader(rc)
		if err != nil {
			rc.Close()
			tb.Fatal(err)
		}
		return zr, func() { rc.Close() }
	case ocispec.MediaTypeImageLayer:
		return rc, func() { rc.Close() }
	}
	rc.Close()
	tb.Fatalf("layer %s: media type %s not handled here", ld.Digest, ld.MediaType)
	return nil, nil
}

// layerNames lists the cleaned entry names of a gzip or plain layer blob,
// whiteouts included.
func layerNames(tb testing.TB, l *ocilayout.Layout, ld ocispec.Descriptor) []string {
	tb.Helper()
	r, closeBlob := layerTar(tb, l, ld)
	defer closeBlob()
	var names []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			tb.Fatalf("layer %s: %v", ld.Digest, err)
		}
		if n := path.Clean(strings.TrimPrefix(hdr.Name, "/")); n != "." {
			names = append(names, n)
		}
	}
}
