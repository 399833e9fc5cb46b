package zlayer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	tt "github.com/zlayer/zlayer/internal/treetest"
	"github.com/zlayer/zlayer/internal/zfsdiff"
)

// zfsBase and zfsChangeOps make a layer whose ZFS change list, written out by
// hand below as libzfs reports it, names far fewer paths than the walk: a
// renamed directory's content, the other names of hard links, the name of
// a removed link and of a new link to an existing file are all missing.
var zfsBase = append(writerBase[:len(writerBase):len(writerBase)],
	tt.File("hl/one", "11", 0o644), tt.Link("hl/two", "hl/one"),
	tt.File("hl2/a", "aa", 0o644), tt.Link("hl2/b", "hl2/a"),
	tt.Dir("old", 0o755), tt.File("old/keep", "k", 0o644),
)

var zfsChangeOps = []tt.Op{
	tt.Rename("opt/app", "opt/app2"),
	tt.Link("etc/passwd-", "etc/passwd"),
	tt.Remove("d/z"),
	tt.Rewrite("etc/hosts", "127.0.0.2"),
	tt.Chmod("a/b", 0o640),
	tt.File("n/f", "new", 0o644),
	tt.Rewrite("hl/one", "22"),
	tt.Remove("hl2/b"),
	tt.Remove("old/keep"), tt.Remove("old"),
	tt.Socket("d/sock"),
}

// zfsList is the change list for zfsChangeOps in the order and with the
// repeats libzfs gives: by object number, a directory once per change in
// it, the root included.
const zfsList = `M	/	MNT/
M	/	MNT/etc
M	F	MNT/etc/passwd	(+1)
R	/	MNT/opt/app	MNT/opt/app2
M	/	MNT/opt
-	F	MNT/d/z
M	/	MNT/d
M	F	MNT/etc/hosts
M	F	MNT/a/b
+	/	MNT/n
+	F	MNT/n/f
M	/	MNT/etc
M	F	MNT/hl/one
M	F	MNT/hl2/a	(-1)
M	/	MNT/hl2
-	F	MNT/old/keep
-	/	MNT/old
+	=	MNT/d/sock
M	/	MNT/d
`

func TestWriteChangesZFSListMatchesWalk(t *testing.T) {
	lower, upper := layerPair(t, zfsBase, zfsChangeOps, false)
	want, wantRes := diffDirs(t, lower, upper, nil)

	stream := strings.ReplaceAll(zfsList, "MNT", zfsdiff.Escape(upper))
	var got bytes.Buffer
	res, err := WriteChanges(context.Background(), &got, lower, upper,
		ParseZFSDiff(strings.NewReader(stream), upper), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got.Bytes()) {
		t.Errorf("layers differ: walk %v, zfs list %v\nwalk:\n%s\nzfs list:\n%s",
			wantRes.DiffID, res.DiffID, names(t, want), names(t, got.Bytes()))
	}
}

func names(t *testing.T, data []byte) string {
	var b strings.Builder
	for _, e := range readTar(t, data, Uncompressed) {
		b.WriteString(e.Name + " " + string(e.Type) + " " + e.Link + "\n")
	}
	return b.String()
}

// A directory renamed onto a directory of the lower layer, emptied first
// (rename(2) needs that), keeps the path and reuses names: only the rename
// record says that everything below came with it.
func TestWriteChangesRenameOntoDirectory(t *testing.T) {
	base := []tt.Op{
		tt.Dir("src/sub", 0o755), tt.File("src/sub/f", "new", 0o644),
		tt.Dir("dst/sub", 0o755), tt.File("dst/sub/f", "old", 0o644),
	}
	change := []tt.Op{tt.Remove("dst"), tt.Rename("src", "dst")}
	lower, upper := layerPair(t, base, change, true)
	list := `-	F	MNT/dst/sub/f
-	/	MNT/dst/sub
R	/	MNT/src	MNT/dst
`
	stream := strings.ReplaceAll(list, "MNT", upper)
	var buf bytes.Buffer
	_, err := WriteChanges(context.Background(), &buf, lower, upper,
		ParseZFSDiff(strings.NewReader(stream), upper), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []tarEntry{
		whE(".wh.dst"), whE(".wh.src"),
		dirE("dst", 0o755), dirE("dst/sub", 0o755), fileE("dst/sub/f", "new", 0o644),
	}
	if diff := cmp.Diff(want, readTar(t, buf.Bytes(), Uncompressed)); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func TestParseZFSDiff(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "zfsdiff", "classified-timed.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Change
	for c, err := range ParseZFSDiff(f, "/tank/zl/layer") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	want := []Change{
		mod("etc", FileDir),
		mod("etc/passwd", FileRegular),
		add("etc/new file", FileRegular),
		del("etc/localtime", FileSymlink),
		{Kind: ChangeRename, Path: "opt/new", OldPath: "opt/old", Type: FileDir},
		modLinks("usr/bin/perl", 1),
		modLinks("usr/bin/git", -2),
		add("run/app.sock", FileSocket),
		add("run/fifo", FileFIFO),
		add("dev/sda", FileBlockDevice),
		add("dev/null", FileCharDevice),
		add("var/door", FileUnknown),
		add("var/port", FileUnknown),
		mod("var/odd", FileUnknown),
		add("caf\u00e9\ttab\nnl\\bs", FileRegular),
		mod("etc/shadow", FileUnknown),
		mod("etc/shadow", FileUnknown),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestParseZFSDiffError(t *testing.T) {
	in := "M\t/\t/m/\n+\tF\t/elsewhere/x\n"
	for _, err := range ParseZFSDiff(strings.NewReader(in), "/m") {
		var le *zfsdiff.LineError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &le) || le.Line != 2 {
			t.Fatalf("error %v, want ErrInvalid naming line 2", err)
		}
		if !strings.HasPrefix(err.Error(), `parse zfs diff "/m": line 2`) {
			t.Errorf("message %q", err)
		}
		return
	}
	t.Fatal("no error")
}
