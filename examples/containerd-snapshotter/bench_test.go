package snapshotter_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/continuity/fs/fstest"
	zfssnapshotter "github.com/containerd/zfs/v2"
	"github.com/zlayer/zlayer"
)

// The benchmarks compare the adapter with containerd's own ZFS snapshotter
// (github.com/containerd/zfs/v2, which runs the zfs command) on one pool
// in one run. Each iteration is long (minutes in an emulated guest); run
// them with -benchtime 1x.

type contender struct {
	name string
	open func(b *testing.B, pool *zlayer.Pool, n int) snapshots.Snapshotter
}

var contenders = []contender{
	{"zlayer", func(b *testing.B, pool *zlayer.Pool, n int) snapshots.Snapshotter {
		sn, _ := newSnapshotter(b, pool, fmt.Sprintf("%s/zlayer%d", pool.Name(), n))
		return sn
	}},
	{"containerd-zfs", openPeer},
}

// openPeer makes a mounted dataset for containerd's ZFS snapshotter, which
// keeps its bolt database in the dataset's mount point.
func openPeer(b *testing.B, pool *zlayer.Pool, n int) snapshots.Snapshotter {
	requireTools(b, "zfs")
	ds := fmt.Sprintf("%s/peer%d", pool.Name(), n)
	dir := b.TempDir()
	if out, err := exec.Command("zfs", "create", "-o", "mountpoint="+dir, ds).CombinedOutput(); err != nil {
		b.Fatalf("zfs create %s: %v: %s", ds, err, out)
	}
	sn, err := zfssnapshotter.NewSnapshotter(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sn.Close()
		if out, err := exec.Command("zfs", "destroy", "-r", ds).CombinedOutput(); err != nil {
			b.Errorf("zfs destroy %s: %v: %s", ds, err, out)
		}
	})
	return sn
}

func runContenders(b *testing.B, fn func(b *testing.B, sn snapshots.Snapshotter, work string)) {
	pool := newPool(b, 4<<30)
	for i, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			sn := c.open(b, pool, i)
			for b.Loop() {
				fn(b, sn, b.TempDir())
			}
		})
	}
}

// BenchmarkLayers128Mount does what containerd's suite test 128LayersMount
// does: 128 layers, each prepared on the last, checked against a flat
// copy before and after its change, and committed; then a view of the
// top checked. Removing the layers afterwards is not timed.
func BenchmarkLayers128Mount(b *testing.B) {
	runContenders(b, func(b *testing.B, sn snapshots.Snapshotter, work string) {
		ctx := context.Background()
		start := time.Now()
		appliers := []fstest.Applier{fstest.Apply(
			fstest.CreateFile("/bottom", []byte("way at the bottom\n"), 0o777),
			fstest.CreateFile("/overwriteme", []byte("FIRST!\n"), 0o777),
			fstest.CreateDir("/addhere", 0o755),
			fstest.CreateDir("/onlyme", 0o755),
			fstest.CreateFile("/onlyme/bottom", []byte("bye!\n"), 0o777),
		)}
		for i := 1; i < 128; i++ {
			appliers = append(appliers, fstest.Apply(
				fstest.CreateFile("/overwriteme", fmt.Appendf(nil, "%d WAS HERE!\n", i), 0o777),
				fstest.CreateFile(fmt.Sprintf("/addhere/file-%d", i), []byte("same\n"), 0o755),
				fstest.RemoveAll("/onlyme"),
				fstest.CreateDir("/onlyme", 0o755),
				fstest.CreateFile(fmt.Sprintf("/onlyme/file-%d", i), []byte("only me!\n"), 0o777),
			))
		}
		flat := filepath.Join(work, "flat")
		if err := os.MkdirAll(flat, 0o755); err != nil {
			b.Fatal(err)
		}
		var names []string
		parent := ""
		for i, a := range appliers {
			key := fmt.Sprintf("%s/prepare-%d", work, i)
			ms, err := sn.Prepare(ctx, key, parent, gcRoot)
			if err != nil {
				b.Fatal(err)
			}
			dir := mountIn(b, work, ms)
			check(b, fstest.CheckDirectoryEqual(flat, dir))
			check(b, a.Apply(flat))
			check(b, a.Apply(dir))
			check(b, fstest.CheckDirectoryEqual(flat, dir))
			check(b, mount.UnmountAll(dir, 0))
			parent = fmt.Sprintf("%s/committed-%d", work, i)
			check(b, sn.Commit(ctx, parent, key, gcRoot))
			names = append(names, parent)
		}
		view := work + "/view"
		ms, err := sn.View(ctx, view, parent, gcRoot)
		if err != nil {
			b.Fatal(err)
		}
		dir := mountIn(b, work, ms)
		check(b, fstest.CheckDirectoryEqual(flat, dir))
		check(b, mount.UnmountAll(dir, 0))
		b.ReportMetric(time.Since(start).Seconds()/128, "s/layer")

		b.StopTimer()
		removeAll(b, sn, append(names, view))
		b.StartTimer()
	})
}

// BenchmarkChain50 builds a chain of 50 layers, each prepared on the last,
// mounted, given one 64 KiB file and committed, then removes all of them,
// top first.
func BenchmarkChain50(b *testing.B) {
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	runContenders(b, func(b *testing.B, sn snapshots.Snapshotter, work string) {
		ctx := context.Background()
		start := time.Now()
		var names []string
		parent := ""
		for i := range 50 {
			key := fmt.Sprintf("%s/chain-active-%d", work, i)
			ms, err := sn.Prepare(ctx, key, parent, gcRoot)
			if err != nil {
				b.Fatal(err)
			}
			dir := mountIn(b, work, ms)
			check(b, os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%d", i)), data, 0o644))
			check(b, mount.UnmountAll(dir, 0))
			parent = fmt.Sprintf("%s/chain-%d", work, i)
			check(b, sn.Commit(ctx, parent, key, gcRoot))
			names = append(names, parent)
		}
		built := time.Since(start)
		removeAll(b, sn, names)
		b.ReportMetric(built.Seconds()/50, "s/layer-built")
		b.ReportMetric((time.Since(start)-built).Seconds()/50, "s/layer-removed")
	})
}

// BenchmarkSuite times containerd's whole conformance suite against each
// contender: the test binary runs TestSnapshotterSuite again, once for
// the adapter and once, with ZLAYER_SUITE_PEER=1, for containerd's ZFS
// snapshotter, each on a pool of its own. A failed sub-test fails the
// benchmark.
func BenchmarkSuite(b *testing.B) {
	requireZFS(b)
	passed := regexp.MustCompile(`(?m)^PASS$`)
	layers128 := regexp.MustCompile(`--- PASS: TestSnapshotterSuite/128LayersMount \(([0-9.]+)s\)`)
	for _, c := range []struct{ name, peer string }{{"zlayer", "0"}, {"containerd-zfs", "1"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotterSuite$",
					"-test.count=1", "-test.timeout=60m", "-test.v")
				cmd.Env = append(os.Environ(), suitePeerEnv+"="+c.peer)
				out, err := cmd.CombinedOutput()
				if err != nil || !passed.Match(out) {
					b.Fatalf("suite against %s: %v\n%s", c.name, err, out)
				}
				if bytes.Contains(out, []byte("--- SKIP")) {
					b.Fatalf("suite against %s skipped sub-tests:\n%s", c.name, out)
				}
				// The sub-tests run in parallel; the longest, alone, is
				// what the suite's time mostly is.
				if m := layers128.FindSubmatch(out); m != nil {
					sec, _ := strconv.ParseFloat(string(m[1]), 64)
					b.ReportMetric(sec, "128LayersMount-s")
				}
			}
		})
	}
}

func mountIn(b *testing.B, work string, ms []mount.Mount) string {
	dir, err := os.MkdirTemp(work, "mnt")
	if err != nil {
		b.Fatal(err)
	}
	check(b, mount.All(ms, dir))
	return dir
}

func removeAll(b *testing.B, sn snapshots.Snapshotter, names []string) {
	for _, n := range slices.Backward(names) {
		check(b, sn.Remove(context.Background(), n))
	}
}

func check(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
