package zlayer

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/zlayer/zlayer/internal/fastsha"
)

// benchShape sizes the generated layer: many small files in nested
// directories and a few large ones. ZLAYER_BENCH_LARGE=1 asks for the
// layer of about 1 GiB; the default is small enough for a quick run.
type benchShape struct {
	small      int   // files of 512 B to 16 KiB
	large      int   // files of largeSize
	largeSize  int64 // bytes
	filesInDir int
}

func benchLayerShape() benchShape {
	if os.Getenv("ZLAYER_BENCH_LARGE") == "1" {
		return benchShape{small: 100000, large: 4, largeSize: 64 << 20, filesInDir: 100}
	}
	return benchShape{small: 10000, large: 2, largeSize: 32 << 20, filesInDir: 100}
}

// benchText is what file content is cut from: random words, so that gzip
// finds about what it finds in real layers.
func benchText(r *rand.Rand) []byte {
	words := strings.Fields("the of and to in is for on that with as by this it be " +
		"usr lib bin etc share locale python3 site-packages __init__ import def return " +
		"self none true false class if else elif while for try except raise 0x7f 1024")
	var b strings.Builder
	for b.Len() < 4<<20 {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			b.WriteString(strconv.Itoa(r.IntN(100000)))
		}
		b.WriteByte(" \n"[r.IntN(2)])
	}
	return []byte(b.String())
}

// writeBenchLayer writes the layer as a plain tar at p and returns its
// size.
func writeBenchLayer(p string, s benchShape) (int64, error) {
	r := rand.New(rand.NewPCG(1, 2))
	text := benchText(r)
	f, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	mtime := time.Unix(1700000000, 0)
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755,
			ModTime: mtime, Uid: 0, Gid: 0})
	}
	file := func(name string, size int64, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode,
			Size: size, ModTime: mtime, Uid: 1000, Gid: 1000}); err != nil {
			return err
		}
		for size > 0 {
			off := r.IntN(len(text) / 2)
			n := min(size, int64(len(text)-off))
			if _, err := tw.Write(text[off : off+int(n)]); err != nil {
				return err
			}
			size -= n
		}
		return nil
	}
	for i := range s.small {
		d := fmt.Sprintf("usr/d%03d/s%02d", i/(s.filesInDir*10), i/s.filesInDir%10)
		for _, p := range []string{"usr", filepath.Dir(d), d} {
			if err := mkdir(p); err != nil {
				return 0, err
			}
		}
		if err := file(fmt.Sprintf("%s/f%06d", d, i), 512+r.Int64N(16<<10), 0o644); err != nil {
			return 0, err
		}
	}
	if err := mkdir("opt"); err != nil {
		return 0, err
	}
	for i := range s.large {
		if err := file(fmt.Sprintf("opt/large%d", i), s.largeSize, 0o755); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	if _, err := bufio.NewReaderSize(in, 1<<20).WriteTo(zw); err != nil {
		return err
	}
	return zw.Close()
}

// memPoll is how often the memory of a timed run is sampled. Each sample
// costs CPU that the run being timed competes with: under emulation, GNU
// tar polled every millisecond took longer than tar with sha256sum beside
// it, unpolled. Resident sizes are the kernel's high-water marks, so a
// coarse poll loses nothing there; the heap's peak may be missed by what
// one interval allocates.
const memPoll = 50 * time.Millisecond

// heapSampler records the largest heap in use while it runs.
type heapSampler struct {
	max  atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(memPoll)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.max.Load() {
				h.max.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) finish() uint64 {
	close(h.stop)
	<-h.done
	return h.max.Load()
}

// peakRSS reads the resident high-water mark of a process ("self" for
// this one), which resetPeakRSS sets back to the current size.
func peakRSS(pid string) uint64 {
	return procStatus(pid, "VmHWM:")
}

// procStatus reads a size in /proc/PID/status, in bytes.
func procStatus(pid, field string) uint64 {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runPeakRSS runs cmd and returns the sum of the peak resident sizes of
// it and its children (gzip, for tar -z), polled while they run. The
// rusage of a child is no use here: a child started by vfork from this
// process inherits its high-water mark.
func runPeakRSS(cmd *exec.Cmd) ([]byte, uint64, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	peaks := map[string]uint64{}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			var sum uint64
			for _, v := range peaks {
				sum += v
			}
			return []byte(out.String()), sum, err
		case <-time.After(memPoll):
		}
		kids, _ := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
		for _, p := range append(strings.Fields(string(kids)), pid) {
			peaks[p] = max(peaks[p], peakRSS(p))
		}
	}
}

func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// applyRace adds up, over the iterations of an apply benchmark, the
// figures of zlayer and of GNU tar doing the same extraction.
type applyRace struct {
	n                    int
	zl, gt, zlCPU, gtCPU time.Duration
	zlRSS, zlHeap, gtRSS uint64
	baseRSS              uint64

	// GNU tar with sha256sum beside it, and the hash alone: counted
	// only where tarWithDigest and hashAlone ran.
	nSum, nHash                    int
	gtSum, goHash, zlHash, sumHash time.Duration
	goHashCPU, zlHashCPU           time.Duration
	sumHashCPU                     time.Duration
}

func newApplyRace() *applyRace {
	runtime.GC()
	return &applyRace{baseRSS: procStatus("self", "VmRSS:")}
}

// zlayer times apply, zlayer's extraction of the blob at path, with the
// benchmark's timer running, and samples this process's peak heap and
// resident size.
func (a *applyRace) zlayer(b *testing.B, path string, apply func(io.Reader) error) {
	b.StopTimer()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	resetPeakRSS()
	heap := startHeapSampler()
	b.StartTimer()
	start, cpu0 := time.Now(), selfCPU()
	err = apply(f)
	a.zl += time.Since(start)
	a.zlCPU += selfCPU() - cpu0
	b.StopTimer()
	a.zlHeap = max(a.zlHeap, heap.finish())
	a.zlRSS = max(a.zlRSS, peakRSS("self"))
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
}

// tar times cmd, GNU tar's extraction, and after it finish, which is
// part of the work timed (an unmount that writes the data back, say).
func (a *applyRace) tar(b *testing.B, cmd *exec.Cmd, finish func() error) {
	start := time.Now()
	out, rss, err := runPeakRSS(cmd)
	if err == nil && finish != nil {
		err = finish()
	}
	a.gt += time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		a.gtCPU += rusageCPU(ru)
	}
	if err != nil {
		b.Fatalf("tar: %v: %s", err, out)
	}
	a.gtRSS = max(a.gtRSS, rss)
	a.n++
}

// tarWithDigest times GNU tar extracting the plain tar at path into a
// fresh layer id of s while sha256sum reads the same file: what
// extracting with tar costs a runtime that needs the DiffID. It runs
// with the benchmark's timer stopped, and removes the layer afterwards.
func (a *applyRace) tarWithDigest(b *testing.B, s *Store, gnuTar, id, path, mnt string) {
	ctx := context.Background()
	if _, err := s.CreateLayer(ctx, id, "", nil); err != nil {
		b.Fatal(err)
	}
	if err := s.Mount(ctx, id, mnt, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	hash := exec.Command("sha256sum", path)
	hash.Stdout = io.Discard
	if err := hash.Start(); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command(gnuTar, "-xf", path, "-C", mnt).CombinedOutput()
	if err == nil {
		err = hash.Wait()
	}
	if err == nil {
		err = s.Unmount(ctx, mnt)
	}
	a.gtSum += time.Since(start)
	if err != nil {
		b.Fatalf("tar and sha256sum: %v: %s", err, out)
	}
	if err := s.Remove(ctx, id); err != nil {
		b.Fatal(err)
	}
	a.nSum++
}

// hashAlone times hashing the plain tar at path in this process with
// Go's crypto/sha256 and with the SHA-256 that Apply uses (see
// internal/fastsha), and with sha256sum, as tarWithDigest runs it, all
// without extracting anything.
func (a *applyRace) hashAlone(b *testing.B, path string) {
	for _, h := range []struct {
		new       func() hash.Hash
		wall, cpu *time.Duration
	}{
		{sha256.New, &a.goHash, &a.goHashCPU},
		{fastsha.New, &a.zlHash, &a.zlHashCPU},
	} {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		start, cpu0 := time.Now(), selfCPU()
		_, err = io.Copy(h.new(), f)
		*h.wall += time.Since(start)
		*h.cpu += selfCPU() - cpu0
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}

	cmd := exec.Command("sha256sum", path)
	cmd.Stdout = io.Discard
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("sha256sum: %v", err)
	}
	a.sumHash += time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		a.sumHashCPU += rusageCPU(ru)
	}
	a.nHash++
}

func (a *applyRace) report(b *testing.B) {
	n := float64(a.n)
	b.ReportMetric(float64(a.zl.Milliseconds())/n, "zlayer-ms/op")
	b.ReportMetric(float64(a.gt.Milliseconds())/n, "gnutar-ms/op")
	b.ReportMetric(float64(a.zl)/float64(a.gt), "zlayer/gnutar")
	b.ReportMetric(float64(a.zlCPU.Milliseconds())/n, "zlayer-cpu-ms/op")
	b.ReportMetric(float64(a.gtCPU.Milliseconds())/n, "gnutar-cpu-ms/op")
	b.ReportMetric(float64(a.zlRSS)/(1<<20), "zlayer-peak-rss-MiB")
	b.ReportMetric(float64(a.baseRSS)/(1<<20), "before-rss-MiB")
	b.ReportMetric(float64(a.zlHeap)/(1<<20), "zlayer-peak-heap-MiB")
	b.ReportMetric(float64(a.gtRSS)/(1<<20), "gnutar-peak-rss-MiB")
	if a.nSum > 0 {
		n := float64(a.nSum)
		b.ReportMetric(float64(a.gtSum.Milliseconds())/n, "gnutar+sha256sum-ms/op")
		b.ReportMetric(float64(a.zl)/float64(a.n)/(float64(a.gtSum)/n), "zlayer/gnutar+sha256sum")
	}
	if a.nHash > 0 {
		n := float64(a.nHash)
		b.ReportMetric(float64(a.goHash.Milliseconds())/n, "go-sha256-ms/op")
		b.ReportMetric(float64(a.goHashCPU.Milliseconds())/n, "go-sha256-cpu-ms/op")
		b.ReportMetric(float64(a.zlHash.Milliseconds())/n, "zlayer-sha256-ms/op")
		b.ReportMetric(float64(a.zlHashCPU.Milliseconds())/n, "zlayer-sha256-cpu-ms/op")
		b.ReportMetric(float64(a.sumHash.Milliseconds())/n, "sha256sum-ms/op")
		b.ReportMetric(float64(a.sumHashCPU.Milliseconds())/n, "sha256sum-cpu-ms/op")
	}
}

// benchBlob is one form of the generated layer and the GNU tar flag that
// extracts it.
type benchBlob struct{ name, path, tarFlag string }

// benchBlobs writes the generated layer under dir as a plain tar and
// gzipped, and returns both with the plain tar's size.
func benchBlobs(b *testing.B, dir string) ([]benchBlob, int64) {
	plain := filepath.Join(dir, "layer.tar")
	size, err := writeBenchLayer(plain, benchLayerShape())
	if err != nil {
		b.Fatal(err)
	}
	gz := plain + ".gz"
	if err := gzipFile(plain, gz); err != nil {
		b.Fatal(err)
	}
	return []benchBlob{{"tar", plain, "-xf"}, {"gzip", gz, "-xzf"}}, size
}

// BenchmarkApplyDir extracts one generated layer with ApplyDir and with
// GNU tar, alternately, on the same file system, and reports both times,
// their ratio and the peak memory of each. ns/op counts both tools. The
// peak resident size of ApplyDir is the whole benchmark process's, whose
// size before the first run is reported as before-rss-MiB; the peak heap
// is sampled every memPoll.
// ZLAYER_BENCH_DIR picks the file system (default: the test's temporary
// directory); ZLAYER_BENCH_LARGE=1 makes the layer about 1 GiB.
func BenchmarkApplyDir(b *testing.B) {
	needApplyPrivileges(b)
	gnuTar, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("GNU tar is not installed")
	}
	base := b.TempDir()
	if d := os.Getenv("ZLAYER_BENCH_DIR"); d != "" {
		if base, err = os.MkdirTemp(d, "zlayer-bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(base)
	}
	blobs, size := benchBlobs(b, base)
	for _, c := range blobs {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			race := newApplyRace()
			for b.Loop() {
				dest := filepath.Join(base, "dest")
				b.StopTimer()
				if err := os.Mkdir(dest, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				race.zlayer(b, c.path, func(r io.Reader) error {
					_, err := ApplyDir(context.Background(), dest, r, nil)
					return err
				})
				b.StopTimer()
				clearDir(b, dest)
				if err := os.Mkdir(dest, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				race.tar(b, exec.Command(gnuTar, c.tarFlag, c.path, "-C", dest), nil)
				b.StopTimer()
				clearDir(b, dest)
				b.StartTimer()
			}
			race.report(b)
		})
	}
}

// selfCPU is the user and system time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return rusageCPU(&ru)
}

func rusageCPU(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clearDir removes an extracted tree and writes back what is dirty, so
// that one tool's writeback does not land in the other's time.
func clearDir(b *testing.B, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	syscall.Sync()
}
