package zlayer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sync/errgroup"
)

// The benchmarks need ZFS; scripts/bench.sh runs them in the test bed's
// guest. Sizes that take minutes to set up are chosen by the benchmark's
// name, so one run compares them side by side.

func benchStore(b *testing.B) *Store {
	b.Helper()
	p := newPool(b, 4<<30)
	s, err := OpenStore(context.Background(), p, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fillFiles writes n small files into dir, 1,000 per directory.
func fillFiles(b *testing.B, dir string, n int) {
	b.Helper()
	for i := range n {
		sub := filepath.Join(dir, "d"+strconv.Itoa(i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, strconv.Itoa(i)), []byte("data"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateChild measures creating a child layer (a clone of the
// committed parent, ready to mount) under parents of very different sizes:
// the cost must not depend on the parent's size.
func BenchmarkCreateChild(b *testing.B) {
	for _, files := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("parent-files=%d", files), func(b *testing.B) {
			s := benchStore(b)
			mustLayer(b, s, "parent", "", func(dir string) { fillFiles(b, dir, files) })
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if _, err := s.CreateLayer(ctx, "child"+strconv.Itoa(i), "parent", nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkChildLayerVsCLI compares creating a child layer in-process with
// the zfs command-line ways of the Docker driver (snapshot, clone, list)
// and of containerd's snapshotter (clone, list).
func BenchmarkChildLayerVsCLI(b *testing.B) {
	s := benchStore(b)
	mustLayer(b, s, "parent", "", func(dir string) { fillFiles(b, dir, 1_000) })
	ctx := context.Background()
	parent := s.dataset("parent")
	zfsCmd := func(args ...string) {
		if out, err := exec.Command("zfs", args...).CombinedOutput(); err != nil {
			b.Fatalf("zfs %v: %v\n%s", args, err, out)
		}
	}
	b.Run("zlayer", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.CreateLayer(ctx, "z"+strconv.Itoa(i), "parent", nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("zfs-cli-docker", func(b *testing.B) {
		i := 0
		for b.Loop() {
			snap := parent + "@d" + strconv.Itoa(i)
			ds := s.root + "/d" + strconv.Itoa(i)
			zfsCmd("snapshot", snap)
			zfsCmd("clone", "-o", "mountpoint=legacy", snap, ds)
			zfsCmd("list", "-H", "-p", "-o", "name,origin,used,available,mountpoint,compression,type,volsize,quota,referenced,written,logicalused,usedbydataset", "-t", "filesystem", ds)
			i++
		}
	})
	b.Run("zfs-cli-containerd", func(b *testing.B) {
		i := 0
		for b.Loop() {
			ds := s.root + "/c" + strconv.Itoa(i)
			zfsCmd("clone", "-o", "mountpoint=legacy", parent+"@zlayer", ds)
			zfsCmd("list", "-H", "-p", "-o", "name,origin,used,available,mountpoint,compression,type,volsize,quota,referenced,written,logicalused,usedbydataset", "-t", "filesystem", ds)
			i++
		}
	})
}

// BenchmarkGetLayer looks one layer up by id in stores of very different
// sizes: a lookup opens that layer's dataset alone.
func BenchmarkGetLayer(b *testing.B) {
	for _, layers := range []int{100, 5_000} {
		b.Run(fmt.Sprintf("layers=%d", layers), func(b *testing.B) {
			s := benchStore(b)
			ctx := context.Background()
			// Creations from many goroutines share transaction groups,
			// which keeps setting up thousands of layers affordable.
			var g errgroup.Group
			g.SetLimit(32)
			for i := range layers {
				g.Go(func() error {
					_, err := s.CreateLayer(ctx, "l"+strconv.Itoa(i), "", nil)
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				id := "l" + strconv.Itoa(i*7919%layers)
				if _, err := s.Layer(ctx, id); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
