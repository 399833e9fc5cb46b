package zlayer

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/zlayer/zlayer/internal/fastsha"
	tt "github.com/zlayer/zlayer/internal/treetest"
)

// The benchmarks here run on layers in a pool; scripts/bench.sh runs them
// in the test bed's guest. Their sizes take minutes to set up under
// emulation, so run them with -benchtime 1x to 3x.

// BenchmarkStoreApply applies the generated layer of BenchmarkApplyDir
// into a fresh layer with Store.Apply, and has GNU tar extract it into
// another fresh layer of the same store, alternately. Both times run
// from the mount to the unmount, which writes the data back: Store.Apply
// also takes and drops its rollback snapshot, verifies nothing (no
// digests are given) but computes both digests. ZLAYER_BENCH_LARGE=1
// makes the layer about 1 GiB.
//
// GNU tar computes no digest, and a runtime extracting with it would
// have to hash the blob beside it to learn the DiffID. For the plain tar,
// each iteration also times that: tar and sha256sum reading the blob at
// once into a third fresh layer (gnutar+sha256sum-ms/op). Outside the
// timing, it hashes the uncompressed tar alone with Go's crypto/sha256,
// with the SHA-256 code Apply chose (logged) and with sha256sum, to show
// what the DiffID costs on this machine.
func BenchmarkStoreApply(b *testing.B) {
	needApplyPrivileges(b)
	b.Logf("SHA-256 by %s", fastsha.Chosen())
	gnuTar, err := exec.LookPath("tar")
	if err != nil {
		b.Fatal("GNU tar is not installed")
	}
	s := benchStore(b)
	blobs, size := benchBlobs(b, b.TempDir())
	ctx := context.Background()
	mnt := filepath.Join(b.TempDir(), "tar")
	i := 0
	for _, c := range blobs {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			race := newApplyRace()
			for b.Loop() {
				b.StopTimer()
				zid, tid := "apply"+strconv.Itoa(i), "tar"+strconv.Itoa(i)
				i++
				for _, id := range []string{zid, tid} {
					if _, err := s.CreateLayer(ctx, id, "", nil); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				race.zlayer(b, c.path, func(r io.Reader) error {
					_, err := s.Apply(ctx, zid, r, nil)
					return err
				})
				b.StopTimer()
				if err := s.Remove(ctx, zid); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()

				if err := s.Mount(ctx, tid, mnt, nil); err != nil {
					b.Fatal(err)
				}
				race.tar(b, exec.Command(gnuTar, c.tarFlag, c.path, "-C", mnt),
					func() error { return s.Unmount(ctx, mnt) })
				b.StopTimer()
				if err := s.Remove(ctx, tid); err != nil {
					b.Fatal(err)
				}
				if c.name == "tar" {
					race.tarWithDigest(b, s, gnuTar, "tarsum"+strconv.Itoa(i), c.path, mnt)
					race.hashAlone(b, c.path)
				}
				b.StartTimer()
			}
			race.report(b)
		})
	}
}

// BenchmarkLayerDiff compares the ZFS change list with a walk of both
// trees on the same layers: ten changes (diffBenchChanges) in a child of
// a layer of 5,000, 50,000 and 200,000 files. "changes" lists the changes
// only; "tar" writes the whole OCI layer to io.Discard. The walks read
// the two layers through read-only mounts made before the timing; the
// ZFS side pays for its own snapshot mounts.
func BenchmarkLayerDiff(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{5000, 50000, 200000} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			s := benchStore(b)
			mustLayer(b, s, "lower", "", func(dir string) { diffBenchTree(b, dir, n) })
			mustLayer(b, s, "upper", "lower", func(dir string) {
				tt.MustApply(b, dir, diffBenchChanges(n)...)
			})
			lower, upper := benchMountRO(b, s, "lower"), benchMountRO(b, s, "upper")

			count := func(b *testing.B, changes func() int) {
				for b.Loop() {
					if k := changes(); k < 10 {
						b.Fatalf("%d changes, want at least 10", k)
					}
				}
			}
			b.Run("zfs-changes", func(b *testing.B) {
				count(b, func() int {
					k := 0
					for _, err := range s.Changes(ctx, "upper") {
						if err != nil {
							b.Fatal(err)
						}
						k++
					}
					return k
				})
			})
			b.Run("walk-changes", func(b *testing.B) {
				count(b, func() int {
					k := 0
					for _, err := range WalkChanges(ctx, lower, upper) {
						if err != nil {
							b.Fatal(err)
						}
						k++
					}
					return k
				})
			})
			b.Run("zfs-tar", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Diff(ctx, "upper", io.Discard, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("walk-tar", func(b *testing.B) {
				for b.Loop() {
					if _, err := DiffDirs(ctx, io.Discard, lower, upper, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkLayerExport writes a whole base layer (the generated layer of
// BenchmarkApplyDir, applied and committed) as an OCI layer with
// Store.Diff, next to GNU tar archiving the same layer through a
// read-only mount. Throughput is in bytes of file content.
func BenchmarkLayerExport(b *testing.B) {
	s := benchStore(b)
	blobs, _ := benchBlobs(b, b.TempDir())
	ctx := context.Background()
	if _, err := s.CreateLayer(ctx, "base", "", nil); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(blobs[0].path)
	if err != nil {
		b.Fatal(err)
	}
	_, err = s.Apply(ctx, "base", f, nil)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Commit(ctx, "base"); err != nil {
		b.Fatal(err)
	}
	root := benchMountRO(b, s, "base")
	total := treeContentBytes(b, root)

	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		b.Run("zlayer-"+c.String(), func(b *testing.B) {
			b.SetBytes(total)
			start := diffCPUTime()
			for b.Loop() {
				if _, err := s.Diff(ctx, "base", io.Discard, &DiffOptions{Compression: c}); err != nil {
					b.Fatal(err)
				}
			}
			reportDiffCPU(b, diffCPUTime()-start)
		})
	}
	benchTarCreate(b, root, total)
}

// benchMountRO mounts layer id read-only for the rest of the benchmark.
func benchMountRO(b *testing.B, s *Store, id string) string {
	b.Helper()
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), id)
	if err := s.Mount(ctx, id, dir, &MountOptions{ReadOnly: true}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Unmount(ctx, dir); err != nil {
			b.Error(err)
		}
	})
	return dir
}

// treeContentBytes adds up the sizes of the regular files under root.
func treeContentBytes(b *testing.B, root string) int64 {
	var total int64
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
