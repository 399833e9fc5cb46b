package zlayer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	tt "github.com/zlayer/zlayer/internal/tartest"
)

// fuzzLower is the tree every fuzzed layer lands on: ordinary content and
// symbolic links that lead out of the root, for the layer to try.
func fuzzLower(outside string) tt.Layer {
	return tt.Layer{
		tt.Dir("d"), tt.File("d/f", "f"), tt.Dir("d/sub"), tt.File("d/sub/g", "g"),
		tt.Symlink("up", ".."), tt.Symlink("out", "../outside"), tt.Symlink("abs", outside),
		tt.Symlink("slash", "/"), tt.Symlink("d/rel", "../d/sub"), tt.File("h", "h"),
	}
}

// fuzzSeeds are layers covering each rule and each hostile case, plain and
// compressed.
func fuzzSeeds() []tt.Layer {
	seeds := []tt.Layer{
		{tt.File("a", "hello", tt.Mode(0o4755), tt.Owner(1, 2)), tt.Dir("b/c", tt.Mode(0o1777))},
		{tt.Symlink("s", "a"), tt.Link("l", "d/f"), tt.Char("c", 1, 3), tt.Fifo("p")},
		{tt.File("x", "x", tt.Xattr("user.a", "b"), tt.Xattr("security.capability", capNetBind))},
		{tt.Whiteout("", "d"), tt.Whiteout("d", "f"), tt.Opaque("d"), tt.File("d/new", "n")},
		{tt.File("d/sub/new", "n"), tt.Opaque("d"), tt.Whiteout("", "h")},
		{tt.File("d", "file over dir"), tt.Dir("h"), tt.File("h/x", "dir over file")},
		{tt.Sparse("sp", 1<<20, []tt.Fragment{{Offset: 4096, Data: "data"}})},
		{tt.File("../outside/secret", "pwned")},
		{tt.File("/tmp/zlayer-escape", "pwned")},
		{tt.File("out/secret", "pwned"), tt.File("abs/secret", "pwned")},
		{tt.File("up/outside/secret", "pwned"), tt.File("slash/tmp/zlayer-escape", "pwned")},
		{tt.Symlink("e", "/"), tt.File("e/tmp/zlayer-escape", "pwned")},
		{tt.Symlink("e", "../outside"), tt.Dir("e/new"), tt.Whiteout("e", "secret")},
		{tt.Link("x", "../outside/secret"), tt.Link("y", "out/secret"), tt.Link("z", "missing")},
		{tt.Opaque("out"), tt.Opaque("abs"), tt.Whiteout("out", "dir")},
		{tt.File("d/rel/../../../outside/x", "pwned")},
		{tt.File("a", "abc", tt.DeclaredSize(1<<20))},
		{tt.File(".wh.", ""), tt.File(".wh..wh.x", "")},
		{tt.File("u", "", tt.Owner(1<<32, 0))},
		{tt.Symlink("s", "d"), tt.Link("d", "s/f")},
	}
	return seeds
}

func FuzzApplyDir(f *testing.F) {
	needApplyPrivileges(f)
	for _, l := range fuzzSeeds() {
		f.Add(l.Tar())
		f.Add(tt.Gzip(l.Tar()))
	}
	f.Add(tt.Zstd(fuzzSeeds()[3].Tar()))
	f.Add(append(tt.Gzip(fuzzSeeds()[0].Tar()), "garbage"...))
	for _, name := range []string{"gnu-sparse-oldgnu.tar", "gnu-sparse-pax10.tar"} {
		blob, err := os.ReadFile(filepath.Join("testdata", "apply", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob)
	}

	f.Fuzz(func(t *testing.T, blob []byte) {
		b := newBed(t)
		b.mustApply(fuzzLower(b.outside).Tar())
		b.before = b.snapshotOutside()
		// Both resolvers, as the input's length falls.
		applyNoOpenat2 = len(blob)%2 == 1
		defer func() { applyNoOpenat2 = false }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Errors are expected; escapes and panics are what is looked for.
		_, _ = ApplyDir(ctx, b.root, bytes.NewReader(blob), &ApplyOptions{AvailableBytes: 1 << 20})
		b.checkOutside()
		if _, err := os.Lstat("/tmp/zlayer-escape"); err == nil {
			os.Remove("/tmp/zlayer-escape")
			t.Fatal("/tmp/zlayer-escape was written")
		}
	})
}

// fuzzNames are the names the entries of FuzzApplyDirEntries take: plain
// ones, ones through the escaping links of fuzzLower, whiteouts, and
// malformed ones.
var fuzzNames = []string{
	"a", "d", "d/f", "d/sub", "d/sub/g", "h", "x/y/z", "up", "out", "abs", "slash",
	"d/rel", "d/rel/n", "up/outside/secret", "out/secret", "out/dir/inner", "abs/new",
	"slash/tmp/zlayer-escape", "d/.wh.f", ".wh.d", "d/.wh..wh..opq", ".wh..wh..opq",
	"out/.wh.secret", "out/.wh..wh..opq", "d/.wh..", ".wh...", "../outside/secret",
	"/tmp/zlayer-escape", ".", "a/b", "a/.wh.b", "d/sub/.wh..wh..opq", "new/.wh.x",
}

// fuzzTargets are link targets.
var fuzzTargets = []string{
	"a", "d", "d/f", "..", "../outside", "/", "/tmp", "../../..", "d/rel", "up/outside",
	"out/secret", "missing", "x/y/z", "h",
}

// FuzzApplyDirEntries builds well-formed tars from the input, three bytes
// an entry (type, name, target), so that the fuzzer explores the rules
// rather than the tar checksum.
func FuzzApplyDirEntries(f *testing.F) {
	needApplyPrivileges(f)
	f.Add([]byte{0, 0, 0, 3, 8, 4, 1, 16, 0})
	f.Add([]byte{3, 7, 3, 0, 17, 0, 5, 14, 1, 6, 22, 0})
	f.Add([]byte{1, 1, 0, 0, 2, 0, 5, 18, 0, 4, 6, 0, 0, 12, 0})
	f.Add([]byte{2, 5, 3, 4, 23, 0, 3, 25, 4, 6, 20, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var l tt.Layer
		for i := 0; i+2 < len(prog) && len(l) < 64; i += 3 {
			name := fuzzNames[int(prog[i+1])%len(fuzzNames)]
			target := fuzzTargets[int(prog[i+2])%len(fuzzTargets)]
			switch prog[i] % 8 {
			case 0:
				l = append(l, tt.File(name, target, tt.Mode(int64(prog[i+2])<<4)))
			case 1:
				l = append(l, tt.Dir(name, tt.Mode(0o700|int64(prog[i+2]))))
			case 2:
				l = append(l, tt.Symlink(name, target))
			case 3:
				l = append(l, tt.Link(name, target))
			case 4:
				l = append(l, tt.Fifo(name, tt.Xattr("trusted.f", target)))
			case 5:
				l = append(l, tt.Char(name, 1, int64(prog[i+2])))
			case 6:
				l = append(l, tt.File(name, "", tt.Xattr("user.x", target)))
			default:
				l = append(l, tt.Sparse(name, 1<<16, []tt.Fragment{{Offset: 4096, Data: target}}))
			}
		}
		b := newBed(t)
		b.mustApply(fuzzLower(b.outside).Tar())
		b.before = b.snapshotOutside()
		applyNoOpenat2 = len(prog)%2 == 1
		defer func() { applyNoOpenat2 = false }()
		_, _ = b.apply(l.Tar(), nil)
		b.checkOutside()
		if _, err := os.Lstat("/tmp/zlayer-escape"); err == nil {
			os.Remove("/tmp/zlayer-escape")
			t.Fatal("/tmp/zlayer-escape was written")
		}
	})
}
