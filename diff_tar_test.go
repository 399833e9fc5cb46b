package zlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	tt "github.com/zlayer/zlayer/internal/treetest"
)

// tarEntry is what the tests compare of a tar entry.
type tarEntry struct {
	Name   string
	Type   byte
	Mode   int64
	UID    int
	GID    int
	Body   string
	Link   string
	Major  int64
	Minor  int64
	Xattrs map[string]string
	MTime  int64
}

var sec = fixedTime.Unix()

func dirE(name string, mode int64) tarEntry {
	return tarEntry{Name: name + "/", Type: tar.TypeDir, Mode: mode, MTime: sec}
}

func fileE(name, body string, mode int64) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeReg, Mode: mode, Body: body, MTime: sec}
}

func whE(name string) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeReg}
}

func symE(name, target string) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Link: target, MTime: sec}
}

func linkE(name, target string, mode int64) tarEntry {
	return tarEntry{Name: name, Type: tar.TypeLink, Mode: mode, Link: target, MTime: sec}
}

func withXattrs(e tarEntry, kv ...string) tarEntry {
	e.Xattrs = map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		e.Xattrs[kv[i]] = kv[i+1]
	}
	return e
}

// readTar lists a layer, decompressing it as c says.
func readTar(t *testing.T, data []byte, c Compression) []tarEntry {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := tarEntry{
			Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Body: string(body), Link: h.Linkname, Major: h.Devmajor, Minor: h.Devminor,
			MTime: h.ModTime.Unix(),
		}
		if h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: names or times beyond mtime in the header: %+v", h.Name, h)
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		out = append(out, e)
	}
}

func diffDirs(t *testing.T, lower, upper string, opts *DiffOptions) ([]byte, DiffResult) {
	t.Helper()
	var buf bytes.Buffer
	res, err := DiffDirs(context.Background(), &buf, lower, upper, opts)
	if err != nil {
		t.Fatalf("DiffDirs: %v", err)
	}
	return buf.Bytes(), res
}

var writerBase = []tt.Op{
	tt.Dir("etc", 0o755),
	tt.File("etc/passwd", "root:x:0:0", 0o644),
	tt.File("etc/hosts", "127.0.0.1", 0o644),
	tt.Dir("opt/app", 0o755),
	tt.File("opt/app/run", "#!", 0o755),
	tt.Dir("opt/app/lib", 0o755),
	tt.File("opt/app/lib/x.so", "elf", 0o644),
	tt.File("a.b", "dot", 0o644),
	tt.Dir("a", 0o750),
	tt.File("a/b", "slash", 0o600),
	tt.Dir("d", 0o755),
	tt.File("d/m", "m", 0o644),
	tt.File("d/z", "z", 0o644),
}

func TestDiffDirs(t *testing.T) {
	tests := []struct {
		name   string
		change []tt.Op
		want   []tarEntry
	}{
		{name: "nothing"},
		{
			name:   "content only",
			change: []tt.Op{tt.Rewrite("etc/passwd", "ROOT:x:0:0")},
			want:   []tarEntry{fileE("etc/passwd", "ROOT:x:0:0", 0o644)},
		},
		{
			name:   "mode only",
			change: []tt.Op{tt.Chmod("etc/hosts", 0o4755)},
			want:   []tarEntry{fileE("etc/hosts", "127.0.0.1", 0o4755)},
		},
		{
			name:   "owner only",
			change: []tt.Op{tt.Chown("a/b", 1000, 1001)},
			want:   []tarEntry{owned(fileE("a/b", "slash", 0o600), 1000, 1001)},
		},
		{
			name: "xattrs only, sorted",
			change: []tt.Op{
				tt.Xattr("a.b", "user.z", "1"), tt.Xattr("a.b", "user.a", "\x00bin"),
			},
			want: []tarEntry{
				withXattrs(fileE("a.b", "dot", 0o644), "user.a", "\x00bin", "user.z", "1"),
			},
		},
		{
			name:   "delete a file",
			change: []tt.Op{tt.Remove("etc/hosts")},
			want:   []tarEntry{whE("etc/.wh.hosts")},
		},
		{
			name:   "delete a directory: one whiteout",
			change: []tt.Op{tt.Remove("opt/app"), tt.Chmod("opt", 0o700)},
			want:   []tarEntry{dirE("opt", 0o700), whE("opt/.wh.app")},
		},
		{
			name: "whiteouts ahead of siblings, after their directory",
			change: []tt.Op{
				tt.Remove("d/z"), tt.File("d/a", "new", 0o644), tt.Chmod("d", 0o711),
				tt.Remove("a.b"),
			},
			want: []tarEntry{
				whE(".wh.a.b"),
				dirE("d", 0o711), whE("d/.wh.z"), fileE("d/a", "new", 0o644),
			},
		},
		{
			name:   "renamed directory: whiteout and whole subtree",
			change: []tt.Op{tt.Rename("opt/app", "opt/app2")},
			want: []tarEntry{
				whE("opt/.wh.app"),
				dirE("opt/app2", 0o755), dirE("opt/app2/lib", 0o755),
				fileE("opt/app2/lib/x.so", "elf", 0o644), fileE("opt/app2/run", "#!", 0o755),
			},
		},
		{
			name:   "directory becomes a file",
			change: []tt.Op{tt.Remove("a"), tt.File("a", "now a file", 0o644)},
			want:   []tarEntry{whE(".wh.a"), fileE("a", "now a file", 0o644)},
		},
		{
			name: "file becomes a directory",
			change: []tt.Op{
				tt.Remove("a.b"), tt.Dir("a.b", 0o700), tt.File("a.b/in", "i", 0o644),
			},
			want: []tarEntry{dirE("a.b", 0o700), fileE("a.b/in", "i", 0o644)},
		},
		{
			name:   "new link to an unchanged file",
			change: []tt.Op{tt.Link("etc/passwd-", "etc/passwd")},
			want: []tarEntry{
				fileE("etc/passwd", "root:x:0:0", 0o644),
				linkE("etc/passwd-", "etc/passwd", 0o644),
			},
		},
		{
			name:   "new link, first in the layer, to an unchanged file",
			change: []tt.Op{tt.Link("a/hosts", "etc/hosts")},
			want: []tarEntry{
				fileE("a/hosts", "127.0.0.1", 0o644),
				linkE("etc/hosts", "a/hosts", 0o644),
			},
		},
		{
			name: "symlink and fifo, socket left out",
			change: []tt.Op{
				tt.Symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
				tt.FIFO("etc/initctl", 0o600), tt.Socket("etc/log.sock"),
			},
			want: []tarEntry{
				{Name: "etc/initctl", Type: tar.TypeFifo, Mode: 0o600, MTime: sec},
				symE("etc/localtime", "/usr/share/zoneinfo/UTC"),
			},
		},
		{
			name:   "socket replacing a file: a whiteout",
			change: []tt.Op{tt.Remove("etc/hosts"), tt.Socket("etc/hosts")},
			want:   []tarEntry{whE("etc/.wh.hosts")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lower, upper := layerPair(t, writerBase, tc.change, true)
			data, res := diffDirs(t, lower, upper, nil)
			got := readTar(t, data, Uncompressed)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if res.Entries != int64(len(got)) {
				t.Errorf("Entries = %d, tar has %d", res.Entries, len(got))
			}
			checkDigests(t, data, res, Uncompressed)
		})
	}
}

func owned(e tarEntry, uid, gid int) tarEntry {
	e.UID, e.GID = uid, gid
	return e
}

// checkDigests checks a result against the bytes it describes.
func checkDigests(t *testing.T, data []byte, res DiffResult, c Compression) {
	t.Helper()
	if res.Descriptor.MediaType != c.MediaType() {
		t.Errorf("media type %q, want %q", res.Descriptor.MediaType, c.MediaType())
	}
	if res.Descriptor.Size != int64(len(data)) || res.Descriptor.Digest != digest.FromBytes(data) {
		t.Errorf("descriptor %v/%d does not match the %d bytes written",
			res.Descriptor.Digest, res.Descriptor.Size, len(data))
	}
	raw := data
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if want := digest.FromBytes(raw); res.DiffID != want {
		t.Errorf("DiffID %v, want %v", res.DiffID, want)
	}
}

func TestDiffDirsBaseLayer(t *testing.T) {
	upper := t.TempDir()
	ops := []tt.Op{
		tt.Dir("bin", 0o755),
		tt.File("bin/sh", "shell", 0o755),
		tt.Link("bin/ash", "bin/sh"),
		tt.Symlink("bin/bash", "sh"),
		tt.Dir("run", 0o1777),
		tt.FIFO("run/ctl", 0o620),
		tt.Socket("run/sock"),
		tt.File("etc/os-release", "zl", 0o644),
		tt.Xattr("etc/os-release", "user.b", "2"),
		tt.Xattr("etc/os-release", "user.a", "1"),
		tt.Chown("etc", 0, 42),
		tt.File("etc/"+strings.Repeat("n", 120), "long name", 0o600),
	}
	want := []tarEntry{
		dirE("bin", 0o755),
		fileE("bin/ash", "shell", 0o755),
		symE("bin/bash", "sh"),
		linkE("bin/sh", "bin/ash", 0o755),
		owned(dirE("etc", 0o755), 0, 42),
		withXattrs(fileE("etc/os-release", "zl", 0o644), "user.a", "1", "user.b", "2"),
		fileE("etc/"+strings.Repeat("n", 120), "long name", 0o600),
		dirE("run", 0o1777),
		{Name: "run/ctl", Type: tar.TypeFifo, Mode: 0o620, MTime: sec},
	}
	if tt.CanMknod(t) {
		ops = append(ops, tt.CharDevice("dev/null", 1, 3, 0o666),
			tt.BlockDevice("dev/loop0", 7, 0, 0o660))
		want = append(want,
			dirE("dev", 0o755),
			tarEntry{Name: "dev/loop0", Type: tar.TypeBlock, Mode: 0o660, Major: 7, MTime: sec},
			tarEntry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3,
				MTime: sec},
		)
	}
	tt.MustApply(t, upper, append(ops, tt.Times(fixedTime))...)

	data, res := diffDirs(t, "", upper, nil)
	got := readTar(t, data, Uncompressed)
	if diff := cmp.Diff(sortedByName(want), got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	checkDigests(t, data, res, Uncompressed)
}

// sortedByName puts expected entries in layer order when a test lists
// them in another: these fixtures have no whiteouts and no names that
// sort differently by component than as strings.
func sortedByName(es []tarEntry) []tarEntry {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b tarEntry) int {
		return strings.Compare(strings.TrimSuffix(a.Name, "/"), strings.TrimSuffix(b.Name, "/"))
	})
	return out
}

func TestWriteChangesRefusesWhiteoutNames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change []tt.Op
	}{
		{"added", []tt.Op{tt.File("etc/.wh.passwd", "", 0o644)}},
		{"in a new directory", []tt.Op{tt.File("new/.wh..wh..opq", "", 0o644)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lower, upper := layerPair(t, writerBase, tc.change, false)
			_, err := DiffDirs(context.Background(), io.Discard, lower, upper, nil)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), ".wh.") {
				t.Fatalf("error %v, want ErrInvalid naming the .wh. path", err)
			}
		})
	}
}

func TestWriteChangesStaysInTree(t *testing.T) {
	secret := t.TempDir()
	tt.MustApply(t, secret, tt.File("passwd", "SECRET", 0o644))
	lower, upper := layerPair(t, writerBase, []tt.Op{
		tt.Symlink("evil", secret),
		tt.Symlink("rel", "../../../../../../../../"+secret),
		tt.Symlink("etc/passwd2", secret+"/passwd"),
	}, true)
	changes := slices.Values([]Change{
		mod("evil/passwd", FileRegular), add("evil", FileDir),
		mod("rel/passwd", FileRegular), add("etc/passwd2", FileRegular),
	})
	var buf bytes.Buffer
	_, err := WriteChanges(context.Background(), &buf, lower, upper, withNil(changes), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("SECRET")) {
		t.Fatal("the layer holds a file from outside the tree")
	}
	var names []string
	for _, e := range readTar(t, buf.Bytes(), Uncompressed) {
		names = append(names, e.Name+" "+string(e.Type))
	}
	want := []string{"etc/passwd2 2", "evil 2", "rel 2"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

// withNil turns a sequence of changes into a change list without errors.
func withNil(s func(func(Change) bool)) func(func(Change, error) bool) {
	return func(yield func(Change, error) bool) {
		for c := range s {
			if !yield(c, nil) {
				return
			}
		}
	}
}

func TestWriteChangesInvalidList(t *testing.T) {
	lower, upper := layerPair(t, writerBase, nil, true)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		list func(func(Change, error) bool)
		want error
	}{
		{"absolute", withNil(slices.Values([]Change{add("/etc", FileDir)})), ErrInvalid},
		{"dot dot", withNil(slices.Values([]Change{add("a/../b", FileDir)})), ErrInvalid},
		{"no kind", withNil(slices.Values([]Change{{Path: "a"}})), ErrInvalid},
		{"rename without old path", withNil(slices.Values([]Change{
			{Kind: ChangeRename, Path: "a"}})), ErrInvalid},
		{"source error", func(yield func(Change, error) bool) { yield(Change{}, boom) }, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WriteChanges(context.Background(), io.Discard, lower, upper, tc.list, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDiffDirsCompression(t *testing.T) {
	lower, upper := layerPair(t, writerBase, []tt.Op{
		tt.File("etc/big", strings.Repeat("compressible ", 100000), 0o644),
		tt.Remove("d"),
	}, true)
	_, plain := diffDirs(t, lower, upper, nil)
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			data, res := diffDirs(t, lower, upper, &DiffOptions{Compression: c})
			checkDigests(t, data, res, c)
			if res.DiffID != plain.DiffID {
				t.Errorf("DiffID %v differs from the uncompressed layer's %v", res.DiffID,
					plain.DiffID)
			}
			if res.Descriptor.Size >= plain.Descriptor.Size {
				t.Errorf("compressed %d bytes, uncompressed %d", res.Descriptor.Size,
					plain.Descriptor.Size)
			}
			again, _ := diffDirs(t, lower, upper, &DiffOptions{Compression: c})
			if !bytes.Equal(data, again) {
				t.Error("two runs wrote different bytes")
			}
		})
	}
	_, err := DiffDirs(context.Background(), io.Discard, lower, upper,
		&DiffOptions{Compression: Compression(9)})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown compression: error %v, want ErrInvalid", err)
	}
}

// The same tree made in a different order, at different inode numbers and
// with directories listed in a different order, gives the same bytes.
func TestDiffDirsDeterministic(t *testing.T) {
	var files []tt.Op
	for i := range 40 {
		p := fmt.Sprintf("d%d/f%02d", i%3, i)
		files = append(files, tt.File(p, strings.Repeat("x", i), 0o644))
	}
	build := func(ops []tt.Op) (string, string) {
		base := []tt.Op{tt.Dir("d0", 0o755), tt.Dir("d1", 0o755), tt.Dir("d2", 0o755)}
		change := append(ops, tt.Link("d0/hl", "d1/f01"), tt.Remove("d2/f02"))
		return layerPair(t, append(base, files[:20]...), change, true)
	}
	l1, u1 := build(files[20:])
	rev := slices.Clone(files[20:])
	slices.Reverse(rev)
	l2, u2 := build(rev)

	a, ra := diffDirs(t, l1, u1, nil)
	b, rb := diffDirs(t, l2, u2, nil)
	if !bytes.Equal(a, b) || ra.DiffID != rb.DiffID {
		t.Fatalf("layers differ: %v and %v", ra.DiffID, rb.DiffID)
	}
	c, _ := diffDirs(t, l1, u1, nil)
	if !bytes.Equal(a, c) {
		t.Fatal("two runs on the same trees differ")
	}
	base1, _ := diffDirs(t, "", u1, nil)
	base2, _ := diffDirs(t, "", u2, nil)
	if !bytes.Equal(base1, base2) {
		t.Fatal("base layers of the same tree differ")
	}
}

func TestDiffDirsProgress(t *testing.T) {
	lower, upper := layerPair(t, writerBase, []tt.Op{
		tt.Remove("d"), tt.File("n/f", "data", 0o644),
	}, true)
	var calls []DiffProgress
	data, res := diffDirs(t, lower, upper, &DiffOptions{
		Progress: func(p DiffProgress) { calls = append(calls, p) },
	})
	if int64(len(calls)) != res.Entries || res.Entries != 3 {
		t.Fatalf("%d progress calls, %d entries, want 3 of each", len(calls), res.Entries)
	}
	for i, p := range calls {
		if p.Entries != int64(i+1) || p.Bytes > int64(len(data)) ||
			i > 0 && p.Bytes < calls[i-1].Bytes {
			t.Errorf("call %d: %+v", i, p)
		}
	}
	if last := calls[len(calls)-1]; last.Path != "n/f" || last.Bytes < 3*512 {
		t.Errorf("last call %+v, want path n/f and at least three headers' bytes", last)
	}
}

func TestDiffDirsCanceled(t *testing.T) {
	lower, upper := layerPair(t, writerBase, []tt.Op{tt.Remove("d")}, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := runtime.NumGoroutine()
	_, err := DiffDirs(ctx, io.Discard, lower, upper, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	checkGoroutines(t, before)
}

// bigLayer is an upper tree with a file of several MiB of random bytes,
// which no compressor shrinks: its export spans many chunks of every
// stage.
func bigLayer(t *testing.T) string {
	data := make([]byte, 6<<20)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	_, upper := layerPair(t, writerBase, []tt.Op{tt.File("big", string(data), 0o644)}, true)
	return upper
}

// A failing writer ends the export with its error, whatever the
// compression; nothing is written after it failed, and nothing is left
// running.
func TestDiffDirsWriterFails(t *testing.T) {
	upper := bigLayer(t)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			before := runtime.NumGoroutine()
			dst := &limitedWriter{room: 1000}
			_, err := DiffDirs(context.Background(), dst, "", upper, &DiffOptions{Compression: c})
			if !errors.Is(err, errWriterFull) {
				t.Fatalf("error %v, want %v", err, errWriterFull)
			}
			if dst.writes != 1 {
				t.Errorf("%d writes from the failed one on, want 1", dst.writes)
			}
			checkGoroutines(t, before)
		})
	}
}

// A panic in the caller's writer, or in Progress, reaches the caller's
// goroutine; the export's own goroutines end, and the writer is not
// written after the call.
func TestDiffDirsPanics(t *testing.T) {
	upper := bigLayer(t)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run("writer/"+c.String(), func(t *testing.T) {
			before := runtime.NumGoroutine()
			n := 0
			w := writerFunc(func(p []byte) (int, error) {
				if n++; n == 3 {
					panic("writer broke")
				}
				return len(p), nil
			})
			if p := catch(func() {
				DiffDirs(context.Background(), w, "", upper, &DiffOptions{Compression: c})
			}); p != "writer broke" {
				t.Fatalf("recovered %v, want the writer's panic", p)
			}
			checkGoroutines(t, before)
		})
		t.Run("progress/"+c.String(), func(t *testing.T) {
			before := runtime.NumGoroutine()
			var mu sync.Mutex
			writes := 0
			w := writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				writes++
				return len(p), nil
			})
			opts := &DiffOptions{Compression: c, Progress: func(p DiffProgress) {
				if p.Path == "big" {
					panic("progress broke")
				}
			}}
			if p := catch(func() { DiffDirs(context.Background(), w, "", upper, opts) }); p != "progress broke" {
				t.Fatalf("recovered %v, want Progress's panic", p)
			}
			mu.Lock()
			atReturn := writes
			mu.Unlock()
			checkGoroutines(t, before)
			mu.Lock()
			defer mu.Unlock()
			if writes != atReturn {
				t.Errorf("%d writes after DiffDirs returned", writes-atReturn)
			}
		})
	}
}

func catch(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}
