package zlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/tartest"
)

// needApplyPrivileges skips a test on a machine where ApplyDir cannot run
// (no mknod, chown or trusted xattrs), except under CI, where it fails.
func needApplyPrivileges(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "probe")
	err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
	if err == nil {
		err = unix.Lchown(p, 1, 1)
	}
	if err == nil {
		err = unix.Lsetxattr(p, "trusted.zlayer-probe", []byte("1"), 0)
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("ApplyDir needs root's privileges, and CI must have them: %v", err)
	}
	t.Skipf("ApplyDir needs root's privileges: %v", err)
}

// bed is a root to apply layers to, beside a directory "outside" of
// sentinels that nothing may touch.
type bed struct {
	t       testing.TB
	root    string
	outside string
	before  fstree.Tree
}

func newBed(t testing.TB) *bed {
	t.Helper()
	parent := t.TempDir()
	b := &bed{t: t, root: filepath.Join(parent, "root"), outside: filepath.Join(parent, "outside")}
	for _, d := range []string{b.root, b.outside, filepath.Join(b.outside, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"secret": "secret", "dir/inner": "inner"} {
		if err := os.WriteFile(filepath.Join(b.outside, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b.before = b.snapshotOutside()
	return b
}

// snapshotOutside reads everything but the root: the parent and the
// sentinels.
func (b *bed) snapshotOutside() fstree.Tree {
	b.t.Helper()
	tree, err := fstree.Snapshot(filepath.Dir(b.root))
	if err != nil {
		b.t.Fatal(err)
	}
	return tree.Without("root", "root/...")
}

func (b *bed) checkOutside() {
	b.t.Helper()
	after := b.snapshotOutside()
	// The parent's times move as the test's temporary files come and go.
	if d := fstree.Diff(b.before, after, fstree.IgnoreMtime(".")); d != "" {
		b.t.Errorf("outside the root changed (-before +after):\n%s", d)
	}
}

func (b *bed) tree() fstree.Tree {
	b.t.Helper()
	tree, err := fstree.Snapshot(b.root)
	if err != nil {
		b.t.Fatal(err)
	}
	return tree
}

func (b *bed) apply(l []byte, opts *ApplyOptions) (ApplyResult, error) {
	return ApplyDir(context.Background(), b.root, bytes.NewReader(l), opts)
}

func (b *bed) mustApply(l []byte) {
	b.t.Helper()
	if _, err := b.apply(l, nil); err != nil {
		b.t.Fatalf("apply lower layer: %v", err)
	}
}

// forEachResolver runs f with openat2 and with the os.Root fallback.
func forEachResolver(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("os.Root", func(t *testing.T) {
		applyNoOpenat2 = true
		t.Cleanup(func() { applyNoOpenat2 = false })
		f(t)
	})
}

// Short names for the expected trees.
var (
	dir  = fstree.Dir
	file = fstree.File
	sym  = fstree.Symlink
)

// made is a directory the layer creates or changes without saying when.
func made(path string) fstree.Entry {
	return fstree.Dir(path, 0o755, fstree.AnyMtime())
}

var (
	t1 = time.Date(2010, 1, 2, 3, 4, 5, 600, time.UTC)
	t2 = time.Date(2015, 6, 7, 8, 9, 10, 0, time.UTC)
)

// capNetBind is a security.capability value (revision 2, effective)
// granting CAP_NET_BIND_SERVICE.
var capNetBind = string([]byte{
	1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
})

type applyCase struct {
	name    string
	lower   []tt.Layer // applied first, in order
	layer   tt.Layer
	want    fstree.Tree // the root's entry aside
	wantErr error       // a sentinel the error wraps
	errHas  string      // a piece of its text
}

func runApplyCases(t *testing.T, cases []applyCase) {
	needApplyPrivileges(t)
	forEachResolver(t, func(t *testing.T) { runApplyCasesOnce(t, cases) })
}

func runApplyCasesOnce(t *testing.T, cases []applyCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t)
			for _, l := range c.lower {
				b.mustApply(l.Tar())
			}
			_, err := b.apply(c.layer.Tar(), nil)
			checkErr(t, err, c.wantErr, c.errHas)
			b.checkOutside()
			if c.want == nil {
				return
			}
			if d := fstree.Diff(c.want, b.tree().Without(".")); d != "" {
				t.Errorf("tree (-want +got):\n%s", d)
			}
		})
	}
}

func checkErr(t *testing.T, err, want error, has string) {
	t.Helper()
	switch {
	case want == nil && has == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case (want != nil || has != "") && err == nil:
		t.Fatalf("no error, want one wrapping %v with %q", want, has)
	case want != nil && !errors.Is(err, want):
		t.Errorf("error %q does not wrap %v", err, want)
	}
	if err != nil && !strings.Contains(err.Error(), has) {
		t.Errorf("error %q lacks %q", err, has)
	}
	var e *Error
	if err != nil && !errors.As(err, &e) {
		t.Errorf("error %q is not an *Error", err)
	}
}

func TestApplyDirEntries(t *testing.T) {
	long := strings.Repeat("d", 150) + "/" + strings.Repeat("f", 120)
	cases := []applyCase{{
		name: "regular file with owner and mode",
		layer: tt.Layer{tt.File("a", "hello", tt.Mode(0o640), tt.Owner(1000, 1001),
			tt.ModTime(t1))},
		want: fstree.New(file("a", "hello", 0o640, fstree.Owner(1000, 1001), fstree.Mtime(t1))),
	}, {
		name: "setuid, setgid and sticky survive chown",
		layer: tt.Layer{
			tt.File("su", "x", tt.Mode(0o6755), tt.Owner(1000, 1000)),
			tt.Dir("tmp", tt.Mode(0o1777), tt.Owner(1000, 1000)),
			tt.Dir("g", tt.Mode(0o2750), tt.Owner(5, 6)),
		},
		want: fstree.New(
			file("su", "x", 0o6755, fstree.Owner(1000, 1000)),
			dir("tmp", 0o1777, fstree.Owner(1000, 1000)),
			dir("g", 0o2750, fstree.Owner(5, 6)),
		),
	}, {
		name:  "implicit parents are 0755 and root's",
		layer: tt.Layer{tt.File("a/b/c", "deep", tt.Owner(3, 3))},
		want: fstree.New(made("a"), made("a/b"),
			file("a/b/c", "deep", 0o644, fstree.Owner(3, 3))),
	}, {
		name: "directory times are set after their children",
		layer: tt.Layer{
			tt.Dir("d", tt.ModTime(t1)),
			tt.Dir("d/e", tt.ModTime(t2), tt.Mode(0o700)),
			tt.File("d/e/f", "f"),
			tt.File("d/g", "g"),
		},
		want: fstree.New(
			dir("d", 0o755, fstree.Mtime(t1)),
			dir("d/e", 0o700, fstree.Mtime(t2)),
			file("d/e/f", "f", 0o644),
			file("d/g", "g", 0o644),
		),
	}, {
		name: "symbolic links keep owner and time, never followed",
		layer: tt.Layer{
			tt.Symlink("abs", "/etc/passwd", tt.Owner(7, 8), tt.ModTime(t2)),
			tt.Symlink("rel", "../../x"),
			tt.Symlink("dangling", "nowhere"),
		},
		want: fstree.New(
			sym("abs", "/etc/passwd", fstree.Owner(7, 8), fstree.Mtime(t2)),
			sym("rel", "../../x"),
			sym("dangling", "nowhere"),
		),
	}, {
		name: "hard links within the layer",
		layer: tt.Layer{
			tt.File("f", "data", tt.Mode(0o600)),
			tt.Link("g", "f"),
			tt.Link("sub/h", "./f"),
			tt.Symlink("s", "f"),
			tt.Link("s2", "s"),
		},
		want: fstree.New(
			file("f", "data", 0o600, fstree.LinkGroup("f")),
			file("g", "data", 0o600, fstree.LinkGroup("f")),
			made("sub"),
			file("sub/h", "data", 0o600, fstree.LinkGroup("f")),
			sym("s", "f", fstree.LinkGroup("s")),
			sym("s2", "f", fstree.LinkGroup("s")),
		),
	}, {
		name:  "hard link to a lower file",
		lower: []tt.Layer{{tt.File("f", "lower")}},
		layer: tt.Layer{tt.Link("g", "f")},
		want: fstree.New(
			file("f", "lower", 0o644, fstree.LinkGroup("f")),
			file("g", "lower", 0o644, fstree.LinkGroup("f")),
		),
	}, {
		name: "devices and FIFOs",
		layer: tt.Layer{
			tt.Char("dev/null", 1, 3, tt.Mode(0o666)),
			tt.Block("dev/loop9", 7, 9, tt.Owner(0, 6)),
			tt.Char("dev/big", 4000, 1<<19),
			tt.Fifo("run/p", tt.Mode(0o620), tt.Owner(9, 9), tt.ModTime(t1)),
		},
		want: fstree.New(
			made("dev"), made("run"),
			fstree.Char("dev/null", 1, 3, 0o666),
			fstree.Block("dev/loop9", 7, 9, 0o660, fstree.Owner(0, 6)),
			fstree.Char("dev/big", 4000, 1<<19, 0o666),
			fstree.Fifo("run/p", 0o620, fstree.Owner(9, 9), fstree.Mtime(t1)),
		),
	}, {
		name: "xattrs, capabilities after chown, overlay ones dropped",
		layer: tt.Layer{
			tt.File("ping", "elf", tt.Mode(0o755), tt.Owner(1000, 1000),
				tt.Xattr("security.capability", capNetBind), tt.Xattr("user.k", "v\x00bin")),
			tt.Dir("d", tt.Xattr("trusted.t", "1"), tt.Xattr("trusted.overlay.opaque", "y"),
				tt.Xattr("user.overlay.opaque", "y")),
			tt.Symlink("l", "ping", tt.Xattr("trusted.l", "2")),
			tt.Fifo("p", tt.Xattr("trusted.p", "3")),
		},
		want: fstree.New(
			file("ping", "elf", 0o755, fstree.Owner(1000, 1000),
				fstree.Xattr("security.capability", capNetBind), fstree.Xattr("user.k",
					"v\x00bin")),
			dir("d", 0o755, fstree.Xattr("trusted.t", "1")),
			sym("l", "ping", fstree.Xattr("trusted.l", "2")),
			fstree.Fifo("p", 0o644, fstree.Xattr("trusted.p", "3")),
		),
	}, {
		name: "long and non-UTF-8 names",
		layer: tt.Layer{
			tt.File(long, "pax"),
			tt.File("caf\xe9/"+strings.Repeat("n", 110), "gnu", tt.Format(tar.FormatGNU)),
			tt.Symlink("ln", strings.Repeat("t", 130)),
		},
		want: fstree.New(
			made(strings.Repeat("d", 150)),
			file(long, "pax", 0o644),
			made("caf\xe9"),
			file("caf\xe9/"+strings.Repeat("n", 110), "gnu", 0o644),
			sym("ln", strings.Repeat("t", 130)),
		),
	}, {
		name: "names are cleaned",
		layer: tt.Layer{
			tt.Dir("./"),
			tt.Dir("./a//b/", tt.Mode(0o700)),
			tt.File("./a/./b//c", "c"),
		},
		want: fstree.New(made("a"), dir("a/b", 0o700), file("a/b/c", "c", 0o644)),
	}, {
		name:  "global PAX header is skipped",
		layer: tt.Layer{tt.Entry{Header: globalHeader()}, tt.File("a", "a")},
		want:  fstree.New(file("a", "a", 0o644)),
	}}
	runApplyCases(t, cases)
}

func TestApplyDirRootEntry(t *testing.T) {
	needApplyPrivileges(t)
	b := newBed(t)
	l := tt.Layer{tt.Dir("./", tt.Mode(0o750), tt.Owner(4, 5), tt.ModTime(t1)), tt.File("f", "f")}
	if _, err := b.apply(l.Tar(), nil); err != nil {
		t.Fatal(err)
	}
	want := fstree.New(dir(".", 0o750, fstree.Owner(4, 5), fstree.Mtime(t1)), file("f", "f",
		0o644))
	if d := fstree.Diff(want, b.tree()); d != "" {
		t.Errorf("tree (-want +got):\n%s", d)
	}
}

func TestApplyDirReplace(t *testing.T) {
	cases := []applyCase{{
		name: "directory over directory: new attributes, contents kept",
		lower: []tt.Layer{{
			tt.Dir("d", tt.Xattr("user.old", "1"), tt.Xattr("user.both", "old")),
			tt.File("d/keep", "k"),
		}},
		layer: tt.Layer{tt.Dir("d", tt.Mode(0o700), tt.Owner(3, 3), tt.ModTime(t2),
			tt.Xattr("user.both", "new"), tt.Xattr("user.new", "2"))},
		want: fstree.New(
			dir("d", 0o700, fstree.Owner(3, 3), fstree.Mtime(t2),
				fstree.Xattr("user.both", "new"), fstree.Xattr("user.new", "2")),
			file("d/keep", "k", 0o644),
		),
	}, {
		name: "file over directory removes the tree",
		lower: []tt.Layer{{tt.Dir("x"), tt.File("x/y", "y"), tt.Dir("x/z"), tt.File("x/z/w",
			"w")}},
		layer: tt.Layer{tt.File("x", "now a file")},
		want:  fstree.New(file("x", "now a file", 0o644)),
	}, {
		name:  "directory over file",
		lower: []tt.Layer{{tt.File("x", "file")}},
		layer: tt.Layer{tt.Dir("x", tt.Mode(0o711)), tt.File("x/y", "y")},
		want:  fstree.New(dir("x", 0o711), file("x/y", "y", 0o644)),
	}, {
		name:  "directory replaced by a link leaving the root: its times are dropped",
		layer: tt.Layer{tt.Dir("a", tt.ModTime(t1)), tt.Dir("a/b", tt.ModTime(t1)), tt.Symlink("a", "/")},
		want:  fstree.New(sym("a", "/")),
	}, {
		name:  "directory replaced by a link inside: times stay off the link's target",
		lower: []tt.Layer{{tt.Dir("d", tt.ModTime(t2)), tt.Dir("d/b", tt.ModTime(t2))}},
		layer: tt.Layer{tt.Dir("a", tt.ModTime(t1)), tt.Dir("a/b", tt.ModTime(t1)), tt.Symlink("a", "d")},
		want: fstree.New(dir("d", 0o755, fstree.Mtime(t2)), dir("d/b", 0o755, fstree.Mtime(t2)),
			sym("a", "d")),
	}, {
		name:  "file over symbolic link is not written through",
		lower: []tt.Layer{{tt.File("target", "secret"), tt.Symlink("l", "target")}},
		layer: tt.Layer{tt.File("l", "new")},
		want:  fstree.New(file("target", "secret", 0o644), file("l", "new", 0o644)),
	}, {
		name:  "directory over symbolic link to a directory",
		lower: []tt.Layer{{tt.Dir("real"), tt.File("real/f", "f"), tt.Symlink("d", "real")}},
		layer: tt.Layer{tt.Dir("d", tt.Mode(0o700))},
		want:  fstree.New(dir("real", 0o755), file("real/f", "f", 0o644), dir("d", 0o700)),
	}, {
		name:  "file over hard link leaves the other name",
		lower: []tt.Layer{{tt.File("a", "one"), tt.Link("b", "a")}},
		layer: tt.Layer{tt.File("b", "two")},
		want:  fstree.New(file("a", "one", 0o644), file("b", "two", 0o644)),
	}, {
		name: "symbolic link, device and FIFO over files",
		lower: []tt.Layer{{tt.File("s", "1"), tt.File("c", "2"), tt.File("p", "3"),
			tt.File("h", "4")}},
		layer: tt.Layer{
			tt.Symlink("s", "x"), tt.Char("c", 1, 5), tt.Fifo("p"), tt.File("t", "t"),
			tt.Link("h", "t"),
		},
		want: fstree.New(
			sym("s", "x"), fstree.Char("c", 1, 5, 0o666), fstree.Fifo("p", 0o644),
			file("t", "t", 0o644, fstree.LinkGroup("h")), file("h", "t", 0o644,
				fstree.LinkGroup("h")),
		),
	}, {
		name: "later entry of the same layer wins",
		layer: tt.Layer{tt.Dir("a"), tt.File("a/x", "x"), tt.File("a", "file"), tt.File("b",
			"1"), tt.File("b", "2")},
		want: fstree.New(file("a", "file", 0o644), file("b", "2", 0o644)),
	}}
	runApplyCases(t, cases)
}

func TestApplyDirWhiteouts(t *testing.T) {
	lower := tt.Layer{
		tt.File("a", "a"),
		tt.Dir("d"), tt.File("d/old", "old"), tt.Dir("d/sub"), tt.File("d/sub/old2", "o2"),
		tt.Symlink("l", "d"),
		tt.Dir("keep"), tt.File("keep/k", "k"),
	}
	base := fstree.New(
		file("a", "a", 0o644),
		dir("d", 0o755), file("d/old", "old", 0o644), dir("d/sub", 0o755), file("d/sub/old2",
			"o2", 0o644),
		sym("l", "d"),
		dir("keep", 0o755), file("keep/k", "k", 0o644),
	)
	cases := []applyCase{{
		name:  "whiteout of a file",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Whiteout("", "a")},
		want:  base.Without("a"),
	}, {
		name:  "whiteout of a directory tree",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Whiteout("", "d")},
		want:  base.Without("d", "d/..."),
	}, {
		name:  "whiteout of a symbolic link removes the link only",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Whiteout("", "l")},
		want:  base.Without("l"),
	}, {
		name:  "whiteout of a missing path is a no-op",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Whiteout("", "nothing"), tt.Whiteout("d", "nothing"),
			tt.Whiteout("no/such", "dir")},
		want: base,
	}, {
		name:  "whiteout below a file is a no-op",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Whiteout("a", "x")},
		want:  base,
	}, {
		name:  "whiteout spares the layer's own entry, before or after it",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("a", "new"), tt.Whiteout("", "a"), tt.Whiteout("keep", "k"),
			tt.File("keep/k", "new k")},
		want: base.With(file("a", "new", 0o644), file("keep/k", "new k", 0o644), made("keep")),
	}, {
		name:  "whiteout after the layer's directory removes only lower content",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Dir("d", tt.ModTime(t1)), tt.File("d/new", "n"), tt.Whiteout("", "d")},
		want: base.Without("d/...").With(dir("d", 0o755, fstree.Mtime(t1)),
			file("d/new", "n", 0o644)),
	}, {
		name:  "opaque first, then new children",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Opaque("d"), tt.File("d/new", "n")},
		want:  base.Without("d/...").With(made("d"), file("d/new", "n", 0o644)),
	}, {
		name:  "opaque last keeps the layer's entries, also in implicit directories",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("d/new", "n"), tt.File("d/sub/new2", "n2"), tt.Opaque("d")},
		want: base.Without("d/...").With(made("d"), file("d/new", "n", 0o644),
			made("d/sub"), file("d/sub/new2", "n2", 0o644)),
	}, {
		name:  "opaque with the layer's own directory entry",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Dir("d", tt.Mode(0o700)), tt.Dir("d/sub", tt.Mode(0o711)),
			tt.Opaque("d")},
		want: base.Without("d/...").With(dir("d", 0o700), dir("d/sub", 0o711)),
	}, {
		name:  "opaque of a missing directory creates it",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Opaque("new/dir")},
		want:  base.With(made("new"), made("new/dir")),
	}, {
		name:  "opaque at the root",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("keep/mine", "m"), tt.Opaque("")},
		want:  fstree.New(made("keep"), file("keep/mine", "m", 0o644)),
	}, {
		name:  "opaque through a link keeps the layer's entries in the directory",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("d/new", "n"), tt.Opaque("l")},
		want:  base.Without("d/...").With(made("d"), file("d/new", "n", 0o644)),
	}, {
		name:  "opaque keeps what the layer wrote through a link",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("l/new", "n"), tt.Opaque("d")},
		want:  base.Without("d/...").With(made("d"), file("d/new", "n", 0o644)),
	}, {
		name:  "whiteout through a link spares the layer's entry",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("d/new", "n"), tt.Whiteout("l", "new"), tt.Whiteout("l", "old")},
		want:  base.Without("d/old").With(made("d"), file("d/new", "n", 0o644)),
	}, {
		name:  "opaque at the root through a link to it",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.File("mine", "m"), tt.Symlink("s", "."), tt.Opaque("s")},
		want:  fstree.New(file("mine", "m", 0o644), sym("s", ".")),
	}, {
		name:  "opaque then whiteout of a child of the layer",
		lower: []tt.Layer{lower},
		layer: tt.Layer{tt.Opaque("d"), tt.Dir("d/sub"), tt.Whiteout("d", "sub")},
		want:  base.Without("d/...").With(made("d"), dir("d/sub", 0o755)),
	}}
	runApplyCases(t, cases)
}

func TestApplyDirRefusals(t *testing.T) {
	lower := tt.Layer{tt.File("f", "f")}
	unchanged := fstree.New(file("f", "f", 0o644))
	refuse := func(name string, e tt.Entry, has string) applyCase {
		return applyCase{name: name, lower: []tt.Layer{lower}, layer: tt.Layer{e},
			want: unchanged, wantErr: ErrInvalid, errHas: has}
	}
	cases := []applyCase{
		refuse("bare whiteout", tt.File(".wh.", ""), `".wh."`),
		refuse("whiteout of dot", tt.File(".wh..", ""), "names no entry"),
		refuse("whiteout of dot-dot", tt.File("d/.wh...", ""), "names no entry"),
		refuse("unknown whiteout marker", tt.File(".wh..wh.plnk", ""), "unknown marker"),
		refuse("whiteout as a directory", tt.File("a/.wh.b/c", ""), "used as a directory"),
		refuse("socket", tt.File("s", "", tt.Mode(0o140755)), "sockets"),
		refuse("GNU dump dir", tt.File("x", "", tt.Typeflag('D')), "unsupported entry type"),
		refuse("unknown type", tt.File("x", "", tt.Typeflag('Z')), "unsupported entry type"),
		refuse("uid past 32 bits", tt.File("x", "", tt.Owner(1<<32, 0)), "uid 4294967296"),
		refuse("uid all ones", tt.File("x", "", tt.Owner(1<<32-1, 0)), "uid"),
		refuse("negative gid", tt.File("x", "", tt.Owner(0, -1), tt.Format(tar.FormatGNU)),
			"gid -1"),
		refuse("device major past 32 bits", tt.Char("c", 1<<32, 0), "out of range"),
		refuse("device major past 12 bits", tt.Char("c", 4096, 0), "device 4096:0 out of range"),
		refuse("block device major past 12 bits", tt.Block("b", 4104, 0), "out of range"),
		refuse("device minor past 20 bits", tt.Char("c", 0, 1<<20), "out of range"),
		refuse("negative device minor", tt.Char("c", 1, -1, tt.Format(tar.FormatGNU)),
			"out of range"),
		refuse("mode out of range", tt.File("x", "", tt.Mode(1<<30)), "mode"),
		refuse("negative mode", tt.File("x", "", tt.Mode(-1), tt.Format(tar.FormatGNU)), "mode"),
		refuse("empty symbolic link target", tt.Symlink("s", ""), "empty target"),
		refuse("root as a file", tt.File(".", ""), "root is not a directory"),
		refuse("hard link to itself", tt.Link("f", "f"), "itself"),
		refuse("hard link below itself", tt.Link("f", "f/x"), `target "f/x" is below the link`),
		{
			name:  "hard link through a symbolic link into the directory it replaces",
			lower: []tt.Layer{{tt.Dir("d"), tt.File("d/f", "f"), tt.Symlink("s", "d")}},
			layer: tt.Layer{tt.Link("d", "s/f")},
			want: fstree.New(dir("d", 0o755), file("d/f", "f", 0o644),
				sym("s", "d")),
			wantErr: ErrInvalid, errHas: "inside the directory the link replaces",
		},
		refuse("hard link to the root", tt.Link("x", "./"), "root"),
		refuse("empty name", tt.File("", ""), "empty name"),
		refuse("name component past 255 bytes", tt.File(strings.Repeat("n", 256), ""),
			"component of 256 bytes"),
		refuse("directory component past 255 bytes", tt.File(strings.Repeat("n", 256)+"/x", ""),
			"component of 256 bytes"),
	}
	cases = append(cases, applyCase{
		name: "hard link to a directory of the layer", lower: []tt.Layer{lower},
		layer:   tt.Layer{tt.Dir("d"), tt.Link("x", "d")},
		want:    unchanged.With(dir("d", 0o755, fstree.AnyMtime())),
		wantErr: ErrInvalid, errHas: "is a directory",
	}, applyCase{
		name: "hard link to a missing target", lower: []tt.Layer{lower},
		layer:   tt.Layer{tt.Link("x", "missing/y")},
		want:    unchanged,
		wantErr: ErrInvalid, errHas: `apply "x": hard link target "missing/y" does not exist`,
	}, applyCase{
		name: "hard link to a path the layer whited out", lower: []tt.Layer{lower},
		layer:   tt.Layer{tt.Whiteout("", "f"), tt.Link("x", "f")},
		want:    fstree.New(),
		wantErr: ErrInvalid, errHas: "does not exist",
	}, applyCase{
		name: "parent is a file", lower: []tt.Layer{lower},
		layer:   tt.Layer{tt.File("f/x", "")},
		want:    unchanged,
		wantErr: ErrInvalid, errHas: "not a directory",
	}, applyCase{
		name: "parent is a dangling symbolic link", lower: []tt.Layer{lower},
		layer:   tt.Layer{tt.Symlink("s", "nowhere"), tt.File("s/x", "")},
		want:    unchanged.With(sym("s", "nowhere")),
		wantErr: ErrInvalid, errHas: "dangling",
	})
	runApplyCases(t, cases)
}

func globalHeader() tar.Header {
	return tar.Header{
		Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
		PAXRecords: map[string]string{"comment": "made by a test"},
	}
}

// TestApplyDirStack applies three layers in order onto one directory, as a
// ZFS clone chain holds them, and checks the final view.
func TestApplyDirStack(t *testing.T) {
	needApplyPrivileges(t)
	layers := []tt.Layer{{
		tt.Dir("etc"), tt.File("etc/passwd", "root"), tt.File("etc/hosts", "localhost"),
		tt.Dir("usr"), tt.Dir("usr/bin"), tt.File("usr/bin/app", "app v1", tt.Mode(0o755)),
		tt.Dir("usr/lib"), tt.File("usr/lib/libx.so", "x"), tt.Symlink("usr/lib/liby.so",
			"libx.so"),
		tt.Dir("var"), tt.Dir("var/cache"), tt.File("var/cache/a", "a"),
		tt.Dir("var/cache/b"), tt.File("var/cache/b/c", "c"),
		tt.Dir("opt"), tt.File("opt/tool", "tool"),
		tt.Dir("data"), tt.Dir("data/sub"), tt.File("data/sub/x", "x"),
		tt.Dir("home"),
	}, {
		tt.File("etc/hosts", "localhost zlayer"),
		tt.Link("usr/bin/app-hard", "usr/bin/app"),
		tt.Dir("home/user", tt.Owner(1000, 1000), tt.Mode(0o700)),
		tt.File("home/user/.profile", "PATH=/bin", tt.Owner(1000, 1000)),
	}, {
		tt.Whiteout("etc", "passwd"),
		tt.Whiteout("usr", "lib"),
		tt.File("usr/bin/app", "app v2", tt.Mode(0o755)),
		tt.File("var/cache/new", "new"),
		tt.Opaque("var/cache"),
		tt.Dir("var/cache/b"),
		tt.Dir("opt/tool", tt.Mode(0o750)), tt.File("opt/tool/bin", "bin"),
		tt.File("data", "now a file"),
		tt.Whiteout("home/user", ".profile"),
	}}
	b := newBed(t)
	for i, l := range layers {
		if _, err := b.apply(l.Tar(), nil); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	want := fstree.New(
		made("etc"), file("etc/hosts", "localhost zlayer", 0o644),
		made("usr"), made("usr/bin"),
		file("usr/bin/app", "app v2", 0o755),
		file("usr/bin/app-hard", "app v1", 0o755),
		dir("var", 0o755), made("var/cache"), file("var/cache/new", "new", 0o644),
		dir("var/cache/b", 0o755),
		made("opt"), dir("opt/tool", 0o750), file("opt/tool/bin", "bin", 0o644),
		file("data", "now a file", 0o644),
		made("home"),
	)
	want["home/user"] = dir("home/user", 0o700, fstree.Owner(1000, 1000), fstree.AnyMtime())
	if d := fstree.Diff(want, b.tree().Without(".")); d != "" {
		t.Errorf("final view (-want +got):\n%s", d)
	}
	b.checkOutside()
}

// TestApplyDirDeep applies a tree whose paths are longer than the kernel
// takes in one call (PATH_MAX), as DiffDirs writes it for a deep tree, and
// checks the deepest directory's time.
func TestApplyDirDeep(t *testing.T) {
	needApplyPrivileges(t)
	b := newBed(t)
	var layer tt.Layer
	p := ""
	for i := range 40 {
		p = path.Join(p, fmt.Sprintf("%03d%s", i, strings.Repeat("x", 197)))
		layer = append(layer, tt.Dir(p, tt.ModTime(t1)))
	}
	layer = append(layer, tt.File(p+"/f", "deep"))
	if _, err := b.apply(layer.Tar(), nil); err != nil {
		t.Fatalf("apply a tree %d bytes deep: %v", len(p), err)
	}
	root, err := os.OpenRoot(b.root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, name := range []string{p, path.Dir(p)} {
		fi, err := root.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(t1) {
			t.Errorf("directory %d bytes deep: mtime %v, want %v", len(name), fi.ModTime(), t1)
		}
	}
}
