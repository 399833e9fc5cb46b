package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/ocilayout"
	"github.com/zlayer/zlayer/internal/testzfs"
)

// debianImageDir is where scripts/make-debian-image.sh writes the Debian
// image for the tests: inside the repository, which the test bed's guest
// shares, and ignored by git.
const debianImageDir = "../../testdata/mainjob/debian-image"

// debianImage returns the Debian image's layout folder. Outside the test
// bed's guest it runs scripts/make-debian-image.sh, which builds the image
// or finds it current; the guest has no network, so there the image must
// have been built on the host before the guest started (scripts/test.sh
// does that). Without the image the test fails under CI and is skipped
// otherwise.
func debianImage(tb testing.TB) string {
	tb.Helper()
	dir, err := filepath.Abs(debianImageDir)
	if err != nil {
		tb.Fatal(err)
	}
	why := ""
	switch {
	case os.Getenv("ZLAYER_IN_GUEST") != "":
		why = "inside the test bed's guest, which has no network"
	case os.Geteuid() != 0:
		why = "not root"
	default:
		cmd := exec.Command("../../scripts/make-debian-image.sh", dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			tb.Fatalf("scripts/make-debian-image.sh: %v\n%s", err, out)
		}
		if len(out) > 0 {
			tb.Logf("scripts/make-debian-image.sh:\n%s", strings.TrimSpace(string(out)))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		msg := fmt.Sprintf("no Debian image in %s (%s): run scripts/make-debian-image.sh %s "+
			"as root on the host first", dir, why, dir)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return dir
}

// TestDebianImage unpacks a real two-layer Debian image and checks each
// layer against umoci's unpacking of the image cut at that layer, then
// commits a container's changes, exports the new image and checks umoci's
// unpacking of it against the container's tree.
func TestDebianImage(t *testing.T) {
	testzfs.Require(t)
	dir := debianImage(t)
	s := newStore(t, 4<<30)
	ctx := context.Background()
	log := testLogger(t)
	src, err := ocilayout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := src.Image(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	base, err := src.Image(ctx, "layer1")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Manifest.Layers) != 2 || base.ChainIDs()[0] != img.ChainIDs()[0] {
		t.Fatalf("image has %d layers; layer1's chain %v, latest's %v",
			len(img.Manifest.Layers), base.ChainIDs(), img.ChainIDs())
	}

	// umoci unpacks both images while zlayer unpacks.
	waits := []func() string{umociUnpack(t, dir, "layer1"), umociUnpack(t, dir, "latest")}
	start := time.Now()
	layers, err := unpackImage(ctx, s, src, img, log, newProgress(testWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("zlayer unpack: %s", time.Since(start).Round(time.Millisecond))

	for i, im := range []*ocilayout.Image{base, img} {
		want, got := snapshotPair(t, waits[i](), s, layers[i].ID)
		compareTrees(t, fmt.Sprintf("layer %d", i+1), want, got, src, im.Manifest.Layers)
	}

	dst, err := ocilayout.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := commitContainer(ctx, s, dst, layers[1].ID, "ctr", log, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, s, src, dst, img, c)
}

// BenchmarkUnpackDebian unpacks the Debian image (both layers) with zlayer
// into a new chain of store layers, with zlayer's ApplyDir into a plain
// folder, and with `umoci unpack`, in the same run.
func BenchmarkUnpackDebian(b *testing.B) {
	testzfs.Require(b)
	dir := debianImage(b)
	ctx := context.Background()
	src, err := ocilayout.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	img, err := src.Image(ctx, "latest")
	if err != nil {
		b.Fatal(err)
	}
	var tarBytes int64
	for _, ld := range img.Manifest.Layers {
		tarBytes += uncompressedSize(b, src, ld)
	}

	b.Run("zlayer", func(b *testing.B) {
		pool := newPool(b, 4<<30)
		b.SetBytes(tarBytes)
		for i := range b.N {
			s, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: fmt.Sprintf("%s/b%d", pool.Name(), i)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unpackImage(ctx, s, src, img, testLogger(b), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("applydir", func(b *testing.B) {
		b.SetBytes(tarBytes)
		for range b.N {
			root := b.TempDir()
			for i, ld := range img.Manifest.Layers {
				rc, err := src.OpenBlob(ld)
				if err != nil {
					b.Fatal(err)
				}
				_, err = zlayer.ApplyDir(ctx, root, rc, &zlayer.ApplyOptions{
					ExpectedDigest: ld.Digest, ExpectedDiffID: img.Config.RootFS.DiffIDs[i],
				})
				rc.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("umoci", func(b *testing.B) {
		b.SetBytes(tarBytes)
		for range b.N {
			bundle := filepath.Join(b.TempDir(), "bundle")
			out, err := exec.Command("umoci", "unpack", "--image", dir+":latest", bundle).CombinedOutput()
			if err != nil {
				b.Fatalf("umoci unpack: %v\n%s", err, out)
			}
		}
	})
}

// uncompressedSize reads a gzip or plain layer blob to find its tar's
// size.
func uncompressedSize(tb testing.TB, l *ocilayout.Layout, ld ocispec.Descriptor) int64 {
	tb.Helper()
	r, closeBlob := layerTar(tb, l, ld)
	defer closeBlob()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
