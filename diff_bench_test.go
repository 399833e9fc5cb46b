package zlayer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	tt "github.com/zlayer/zlayer/internal/treetest"
)

// diffBenchSizes are the tree sizes the diff benchmarks run on, in files;
// ZLAYER_BENCH_LARGE=1 adds 200,000.
func diffBenchSizes() []int {
	sizes := []int{5000, 50000}
	if os.Getenv("ZLAYER_BENCH_LARGE") == "1" {
		sizes = append(sizes, 200000)
	}
	return sizes
}

// diffBenchText is 1 MiB of words drawn at random from a fixed seed: content
// that compresses about as well as text and source do.
var diffBenchText = sync.OnceValue(func() []byte {
	words := strings.Fields("the of and to in is that for it as was with be by on not " +
		"he this are or his from at which but have an they you were her all she there " +
		"func return err nil if else for range struct type package import var const " +
		"0x1f 4096 /usr/lib/x86_64-linux-gnu libc.so.6 ELF GLIBC_2.34 main.go")
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(10)/9])
	}
	return b.Bytes()[:1<<20]
})

// diffBenchTree makes a tree of n regular files, 100 to a directory in two
// levels, of 0 to 16 KiB (4 KiB on average), and returns the bytes of
// content it holds.
func diffBenchTree(b *testing.B, root string, n int) int64 {
	b.Helper()
	var total int64
	text := diffBenchText()
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("d%03d/s%03d", i/10000, i/100%100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		size := (i * 7919) % (16 << 10) / 2
		if i%4 == 0 {
			size *= 2
		}
		off := (i * 104729) % (len(text) - size)
		p := filepath.Join(dir, fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(p, text[off:off+size], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	return total
}

// diffBenchPair makes lower with n files and upper, a copy of it with the
// ten changes of diffBenchChanges.
func diffBenchPair(b *testing.B, n int) (lower, upper string, content int64) {
	b.Helper()
	dir := b.TempDir()
	lower, upper = filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	content = diffBenchTree(b, lower, n)
	if err := tt.Copy(lower, upper); err != nil {
		b.Fatal(err)
	}
	tt.MustApply(b, upper, diffBenchChanges(n)...)
	// Flush the new trees so their writeback does not compete with the
	// timed reads.
	unix.Sync()
	return lower, upper, content
}

// diffBenchChanges are the ten changes made to a tree of diffBenchTree:
// four files rewritten, three added, two deleted, one chmod.
func diffBenchChanges(n int) []tt.Op {
	f := func(i int) string {
		return fmt.Sprintf("d%03d/s%03d/f%06d", i/10000, i/100%100, i)
	}
	return []tt.Op{
		tt.File(f(1), "rewritten", 0o644), tt.File(f(n/3), "rewritten", 0o644),
		tt.File(f(n/2), "rewritten", 0o644), tt.File(f(n-1), "rewritten", 0o644),
		tt.File("d000/s000/new1", "new", 0o644), tt.File("d000/new2", "new", 0o644),
		tt.File("new3/file", "new", 0o644),
		tt.Remove(f(n / 4)), tt.Remove(f(n / 5)),
		tt.Chmod(f(n/7), 0o600),
	}
}

// diffCPUTime is the CPU time, user and system, this process has used.
func diffCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportDiffCPU adds the CPU time per iteration since start, steadier than
// wall time on a machine shared with other work.
func reportDiffCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkWalkChanges(b *testing.B) {
	for _, n := range diffBenchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			lower, upper, _ := diffBenchPair(b, n)
			start := diffCPUTime()
			for b.Loop() {
				k := 0
				for _, err := range WalkChanges(context.Background(), lower, upper) {
					if err != nil {
						b.Fatal(err)
					}
					k++
				}
				if k < 10 {
					b.Fatalf("%d changes, want at least 10", k)
				}
			}
			reportDiffCPU(b, diffCPUTime()-start)
		})
	}
}

func BenchmarkDiffDirs(b *testing.B) {
	for _, n := range diffBenchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			lower, upper, _ := diffBenchPair(b, n)
			start := diffCPUTime()
			for b.Loop() {
				_, err := DiffDirs(context.Background(), io.Discard, lower, upper, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			reportDiffCPU(b, diffCPUTime()-start)
		})
	}
}

// BenchmarkExport writes a whole tree as a base layer, the way a base
// layer is exported, next to GNU tar archiving the same tree into a pipe
// (not to /dev/null, which GNU tar recognises and then skips reading file
// content). Throughput is in bytes of file content.
func BenchmarkExport(b *testing.B) {
	n := 50000
	if os.Getenv("ZLAYER_BENCH_LARGE") == "1" {
		n = 200000
	}
	root := filepath.Join(b.TempDir(), "tree")
	total := diffBenchTree(b, root, n)
	unix.Sync()

	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		b.Run("zlayer-"+c.String(), func(b *testing.B) {
			b.SetBytes(total)
			start := diffCPUTime()
			for b.Loop() {
				_, err := DiffDirs(context.Background(), io.Discard, "", root,
					&DiffOptions{Compression: c})
				if err != nil {
					b.Fatal(err)
				}
			}
			reportDiffCPU(b, diffCPUTime()-start)
		})
	}

	benchTarCreate(b, root, total)
}

// benchTarCreate runs GNU tar archiving root into a pipe, plain and
// compressed, as sub-benchmarks; total is the bytes of file content.
func benchTarCreate(b *testing.B, root string, total int64) {
	for _, tc := range []struct{ name, flag string }{
		{"tar-none", ""}, {"tar-gzip", "--gzip"}, {"tar-zstd", "--zstd"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			args := []string{"--format=pax", "-C", root, "-cf", "-", "."}
			if tc.flag != "" {
				args = append([]string{tc.flag}, args...)
			}
			if _, err := exec.LookPath("tar"); err != nil {
				b.Skip("no tar")
			}
			b.SetBytes(total)
			var cpu time.Duration
			for b.Loop() {
				var stderr strings.Builder
				cmd := exec.Command("tar", args...)
				cmd.Stdout, cmd.Stderr = io.Discard, &stderr
				if err := cmd.Run(); err != nil {
					b.Fatalf("tar: %v: %s", err, stderr.String())
				}
				// The pipe copy in this process is left out, as the writes
				// to io.Discard are for DiffDirs.
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			reportDiffCPU(b, cpu)
		})
	}
}
