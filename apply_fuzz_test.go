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
