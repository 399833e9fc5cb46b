package zlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/tartest"
)

var streamLayer = tt.Layer{
	tt.Dir("etc"), tt.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
	tt.File("big", strings.Repeat("0123456789abcdef", 70000)),
}

var streamTree = fstree.New(
	dir("etc", 0o755), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
	file("big", strings.Repeat("0123456789abcdef", 70000), 0o644),
)

func TestApplyDirCompression(t *testing.T) {
	needApplyPrivileges(t)
	plain := streamLayer.Tar()
	diffID := digest.FromBytes(plain)
	cases := []struct {
		name  string
		blob  []byte
		comp  Compression
		media string
	}{
		{"plain", plain, Uncompressed, ocispec.MediaTypeImageLayer},
		{"gzip", tt.Gzip(plain), Gzip, ocispec.MediaTypeImageLayerGzip},
		{"zstd", tt.Zstd(plain), Zstd, ocispec.MediaTypeImageLayerZstd},
		{"gzip multistream", append(tt.Gzip(plain[:1024]), tt.Gzip(plain[1024:])...),
			Gzip, ocispec.MediaTypeImageLayerGzip},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t)
			opts := &ApplyOptions{ExpectedDiffID: diffID, ExpectedDigest: digest.FromBytes(c.blob)}
			res, err := b.apply(c.blob, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := ApplyResult{
				DiffID: diffID, Digest: digest.FromBytes(c.blob),
				Compression: c.comp, MediaType: c.media,
				Size: int64(len(c.blob)), UncompressedSize: int64(len(plain)), Entries: 3,
			}
			if res != want {
				t.Errorf("result\n got %+v\nwant %+v", res, want)
			}
			if d := fstree.Diff(streamTree, b.tree().Without(".")); d != "" {
				t.Errorf("tree (-want +got):\n%s", d)
			}
		})
	}
}

func TestApplyDirDigestAlgorithms(t *testing.T) {
	needApplyPrivileges(t)
	plain := streamLayer.Tar()
	s512 := sha512.Sum512(plain)
	s256 := sha256.Sum256(plain)
	opts := &ApplyOptions{
		ExpectedDigest: digest.NewDigestFromBytes(digest.SHA512, s512[:]),
		ExpectedDiffID: digest.NewDigestFromBytes(digest.SHA256, s256[:]),
	}
	res, err := newBed(t).apply(plain, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != opts.ExpectedDigest || res.DiffID != opts.ExpectedDiffID {
		t.Errorf("digests %s and %s", res.Digest, res.DiffID)
	}
}

// corrupt returns b with the byte at i (from the end when negative)
// flipped.
func corrupt(b []byte, i int) []byte {
	c := bytes.Clone(b)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= 0xff
	return c
}

func TestApplyDirBadStreams(t *testing.T) {
	needApplyPrivileges(t)
	plain := streamLayer.Tar()
	gz, zs := tt.Gzip(plain), tt.Zstd(plain)
	// Offset of the content of "big": three headers and passwd's block.
	bigData := 4 * 512
	cases := []struct {
		name   string
		blob   []byte
		opts   *ApplyOptions
		errHas string
	}{
		{"empty stream", nil, nil, "truncated tar stream"},
		{"tar cut inside content", plain[:bigData+1000], nil,
			`apply "big": layer ends after 1000 of the entry's 1120000 bytes`},
		{"tar cut inside a header", plain[:512+100], nil, "truncated tar stream"},
		{"tar cut between entries", streamLayer[:2].TarNoEnd(), nil,
			`apply "etc/passwd": read tar header after this entry: truncated tar stream`},
		{"gzip cut", gz[:len(gz)/2], nil, "truncated gzip stream"},
		{"gzip cut before its trailer", gz[:len(gz)-4], nil, "gzip stream"},
		{"gzip checksum wrong", corrupt(gz, -6), nil, "gzip stream"},
		{"gzip length wrong", corrupt(gz, -2), nil, "gzip stream"},
		{"gzip with trailing garbage", append(bytes.Clone(gz), "garbage"...), nil,
			"data after the end of the gzip stream"},
		{"gzip with one trailing byte", append(bytes.Clone(gz), 0x1f), nil,
			"data after the end of the gzip stream"},
		{"gzip with trailing zeros", append(bytes.Clone(gz), make([]byte, 1024)...), nil,
			"data after the end of the gzip stream"},
		{"gzip with a cut member after it", append(bytes.Clone(gz), gz[:20]...), nil,
			"truncated gzip stream"},
		{"zstd cut", zs[:len(zs)/2], nil, "zstd stream"},
		{"zstd corrupt", corrupt(zs, len(zs)/2), nil, "zstd stream"},
		{"not a tar", []byte(strings.Repeat("hello world ", 100)), nil, "tar stream"},
		{"xz", []byte("\xfd7zXZ\x00rest"), nil, "xz-compressed layers are not supported"},
		{"bzip2", []byte("BZh91AY&SY"), nil, "bzip2"},
		{"size lies, too big", tt.Layer{tt.File("a", "abc", tt.DeclaredSize(1<<20))}.Tar(), nil,
			`apply "a": layer ends after`},
		{"size lies, too small", tt.Layer{tt.File("a", strings.Repeat("x", 2000),
			tt.DeclaredSize(10)),
			tt.File("b", "b")}.Tar(), nil, `apply "a": read tar header after this entry`},
		{"diff id mismatch", plain, &ApplyOptions{ExpectedDiffID: digest.FromString("other")},
			"diff id is " + digest.FromBytes(plain).String()},
		{"digest mismatch", gz, &ApplyOptions{ExpectedDigest: digest.FromString("other")},
			"digest is"},
		{"malformed expected digest", plain, &ApplyOptions{ExpectedDigest: "sha256:abc"},
			"expected digest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t)
			_, err := b.apply(c.blob, c.opts)
			t.Log(err)
			checkErr(t, err, ErrInvalid, c.errHas)
			b.checkOutside()
		})
	}
}

// failingReader fails after n bytes, as a broken connection does.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestApplyDirReaderError(t *testing.T) {
	needApplyPrivileges(t)
	broken := errors.New("connection reset")
	for _, blob := range [][]byte{streamLayer.Tar(), tt.Gzip(streamLayer.Tar())} {
		b := newBed(t)
		r := &failingReader{r: bytes.NewReader(blob), n: len(blob) / 2, err: broken}
		_, err := ApplyDir(context.Background(), b.root, r, nil)
		if !errors.Is(err, broken) || errors.Is(err, ErrInvalid) {
			t.Errorf("error %v: want the reader's, not ErrInvalid", err)
		}
	}
}

func TestApplyDirAvailableBytes(t *testing.T) {
	needApplyPrivileges(t)
	l := tt.Layer{tt.File("a", strings.Repeat("a", 600)), tt.File("b", strings.Repeat("b", 500))}
	b := newBed(t)
	_, err := b.apply(l.Tar(), &ApplyOptions{AvailableBytes: 1000})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), `apply "b"`) {
		t.Fatalf("error %v: want ENOSPC for b", err)
	}
	want := fstree.New(file("a", strings.Repeat("a", 600), 0o644))
	if d := fstree.Diff(want, b.tree().Without(".")); d != "" {
		t.Errorf("b was created (-want +got):\n%s", d)
	}

	b = newBed(t)
	if _, err := b.apply(l.Tar(), &ApplyOptions{AvailableBytes: 1100}); err != nil {
		t.Errorf("exactly enough room: %v", err)
	}
}

func TestApplyDirProgressAndCancel(t *testing.T) {
	needApplyPrivileges(t)
	big := strings.Repeat("x", 20<<20)
	l := tt.Layer{tt.File("a", "a"), tt.File("big", big), tt.File("c", "c")}

	var reports []ApplyProgress
	opts := &ApplyOptions{Progress: func(p ApplyProgress) { reports = append(reports, p) }}
	b := newBed(t)
	if _, err := b.apply(l.Tar(), opts); err != nil {
		t.Fatal(err)
	}
	var inBig int
	for _, p := range reports {
		if p.Path == "big" && p.Entries == 1 {
			inBig++
		}
	}
	last := reports[len(reports)-1]
	if inBig < 2 || last.Entries != 3 || last.Path != "c" || last.Bytes < int64(len(big)) {
		t.Errorf("progress reports %+v", reports)
	}

	// Cancelled within the large file, from its first report.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts = &ApplyOptions{Progress: func(p ApplyProgress) {
		if p.Path == "big" {
			cancel()
		}
	}}
	_, err := ApplyDir(ctx, newBed(t).root, bytes.NewReader(l.Tar()), opts)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(),
		`apply "big": stopped after`) {
		t.Errorf("error %v: want a cancellation within big", err)
	}

	// Cancelled before the start.
	_, err = ApplyDir(ctx, newBed(t).root, bytes.NewReader(l.Tar()), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v: want context.Canceled", err)
	}
}

func TestApplyDirSparse(t *testing.T) {
	needApplyPrivileges(t)
	const size = 16 << 20
	frags := []tt.Fragment{
		{Offset: 0, Data: "head"},
		{Offset: 5 << 20, Data: strings.Repeat("m", 10000)},
		{Offset: size - 4096, Data: strings.Repeat("t", 4096)},
	}
	content := make([]byte, size)
	for _, f := range frags {
		copy(content[f.Offset:], f.Data)
	}
	cases := []struct {
		name  string
		entry tt.Entry
		want  string
	}{
		{"data at both ends", tt.Sparse("s", size, frags, tt.Mode(0o600)), string(content)},
		{"hole at the end", tt.Sparse("s", size, frags[:2], tt.Mode(0o600)),
			string(content[:size-4096]) + string(make([]byte, 4096))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t)
			if _, err := b.apply(tt.Layer{c.entry}.Tar(), nil); err != nil {
				t.Fatal(err)
			}
			got := b.tree()
			if d := fstree.Diff(fstree.New(file("s", c.want, 0o600)), got.Without(".")); d != "" {
				t.Fatalf("tree (-want +got):\n%s", d)
			}
			if used := got["s"].Blocks * 512; used > 1<<20 {
				t.Errorf("%d bytes allocated for a file of %d bytes with 18 KiB of data", used,
					size)
			}
		})
	}
}

// TestApplyDirGNUSparse applies sparse files as GNU tar writes them, in
// each of its sparse formats (see testdata/apply/README.md).
func TestApplyDirGNUSparse(t *testing.T) {
	needApplyPrivileges(t)
	const size = 3 << 20
	sparse := make([]byte, size)
	copy(sparse, "head")
	copy(sparse[1500000:], "middle")
	holeEnd := make([]byte, size)
	copy(holeEnd, "data")
	want := fstree.New(file("sparse", string(sparse), 0o644), file("holeend", string(holeEnd),
		0o644))

	files, err := filepath.Glob("testdata/apply/gnu-sparse-*.tar")
	if err != nil || len(files) != 4 {
		t.Fatalf("test data: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			blob, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b := newBed(t)
			if _, err := b.apply(blob, nil); err != nil {
				t.Fatal(err)
			}
			got := b.tree()
			if d := fstree.Diff(want, got.Without("."), fstree.IgnoreMtime("./...")); d != "" {
				t.Fatalf("tree (-want +got):\n%s", d)
			}
			for _, name := range []string{"sparse", "holeend"} {
				if used := got[name].Blocks * 512; used > 64<<10 {
					t.Errorf("%s: %d bytes allocated for a few bytes of data", name, used)
				}
			}
		})
	}
}

// TestApplyDirTarLikeMagic: a plain tar whose first name begins like a
// compressed stream is read as the tar its header checksum shows it is.
func TestApplyDirTarLikeMagic(t *testing.T) {
	needApplyPrivileges(t)
	// In the GNU format a name is its bytes, NUL-padded: "\xfd7zXZ" is
	// followed by xz's sixth magic byte, a NUL.
	for _, name := range []string{"BZh91AY&SY", "\xfd7zXZ", "\x1f\x8bx"} {
		b := newBed(t)
		l := tt.Layer{tt.File(name, "data", tt.Format(tar.FormatGNU))}
		if _, err := b.apply(l.Tar(), nil); err != nil {
			t.Errorf("tar with first name %q: %v", name, err)
			continue
		}
		if d := fstree.Diff(fstree.New(file(name, "data", 0o644)), b.tree().Without(".")); d != "" {
			t.Errorf("tree (-want +got):\n%s", d)
		}
	}
}
