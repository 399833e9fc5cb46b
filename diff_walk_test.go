package zlayer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	tt "github.com/zlayer/zlayer/internal/treetest"
)

// fixedTime is the time fixtures give every entry, so that a change shows
// only where a test makes one.
var fixedTime = time.Unix(1700000000, 500)

// layerPair builds lower from base, copies it to upper, applies change to
// upper and, when settle is set, gives every entry of upper the fixed time
// again, so that only the changes a test names remain.
func layerPair(t *testing.T, base, change []tt.Op, settle bool) (lower, upper string) {
	t.Helper()
	dir := t.TempDir()
	lower, upper = filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	if err := os.Mkdir(lower, 0o755); err != nil {
		t.Fatal(err)
	}
	tt.MustApply(t, lower, append(base, tt.Times(fixedTime))...)
	if err := tt.Copy(lower, upper); err != nil {
		t.Fatal(err)
	}
	tt.MustApply(t, upper, change...)
	if settle {
		tt.MustApply(t, upper, tt.Times(fixedTime))
	}
	return lower, upper
}

func collect(t *testing.T, seq func(func(Change, error) bool)) []Change {
	t.Helper()
	var out []Change
	for c, err := range seq {
		if err != nil {
			t.Fatalf("walk: %v", err)
		}
		out = append(out, c)
	}
	return out
}

func add(p string, typ FileType) Change { return Change{Kind: ChangeAdd, Path: p, Type: typ} }
func mod(p string, typ FileType) Change { return Change{Kind: ChangeModify, Path: p, Type: typ} }
func del(p string, typ FileType) Change { return Change{Kind: ChangeDelete, Path: p, Type: typ} }
func modLinks(p string, delta int) Change {
	return Change{Kind: ChangeModify, Path: p, Type: FileRegular, LinkDelta: delta}
}

func TestWalkChanges(t *testing.T) {
	base := []tt.Op{
		tt.Dir("etc", 0o755),
		tt.File("etc/passwd", "root:x:0:0", 0o644),
		tt.File("etc/hosts", "127.0.0.1 localhost", 0o644),
		tt.Dir("usr/bin", 0o755),
		tt.File("usr/bin/tool", "#!/bin/sh\n", 0o755),
		tt.Link("usr/bin/tool2", "usr/bin/tool"),
		tt.Symlink("usr/bin/sh", "tool"),
		tt.Dir("var/lib/db", 0o700),
		tt.File("var/lib/db/one", "1", 0o600),
		tt.File("var/lib/db/two", "2", 0o600),
		tt.File("a.b", "dot", 0o644),
		tt.Dir("a", 0o755),
		tt.File("a/b", "slash", 0o644),
		tt.FIFO("run.fifo", 0o600),
	}
	tests := []struct {
		name   string
		change []tt.Op
		settle bool
		want   []Change
	}{
		{name: "nothing", settle: true},
		{
			name:   "add a file",
			change: []tt.Op{tt.File("etc/new", "n", 0o644)},
			want:   []Change{mod("etc", FileDir), add("etc/new", FileRegular)},
		},
		{
			name:   "same size and time, new content",
			change: []tt.Op{tt.Rewrite("etc/passwd", "ROOT:x:0:0")},
			want:   []Change{mod("etc/passwd", FileRegular)},
		},
		{
			name:   "mode only",
			change: []tt.Op{tt.Chmod("etc/hosts", 0o600)},
			settle: true,
			want:   []Change{mod("etc/hosts", FileRegular)},
		},
		{
			name:   "owner only",
			change: []tt.Op{tt.Chown("etc", 7, 8)},
			settle: true,
			want:   []Change{mod("etc", FileDir)},
		},
		{
			name:   "xattr only",
			change: []tt.Op{tt.Xattr("etc/hosts", "user.tag", "v")},
			settle: true,
			want:   []Change{mod("etc/hosts", FileRegular)},
		},
		{
			name:   "symlink xattr",
			change: []tt.Op{tt.Xattr("usr/bin/sh", "trusted.tag", "v")},
			settle: true,
			want:   []Change{mod("usr/bin/sh", FileSymlink)},
		},
		{
			name:   "mtime only",
			change: []tt.Op{tt.Chtimes("a/b", fixedTime.Add(time.Nanosecond))},
			want:   []Change{mod("a/b", FileRegular)},
		},
		{
			name:   "delete a file",
			change: []tt.Op{tt.Remove("etc/hosts")},
			settle: true,
			want:   []Change{del("etc/hosts", FileRegular)},
		},
		{
			name:   "delete a directory",
			change: []tt.Op{tt.Remove("var/lib")},
			settle: true,
			want: []Change{
				del("var/lib", FileDir), del("var/lib/db", FileDir),
				del("var/lib/db/one", FileRegular), del("var/lib/db/two", FileRegular),
			},
		},
		{
			name:   "rename",
			change: []tt.Op{tt.Rename("etc/hosts", "etc/hosts.old")},
			settle: true,
			want:   []Change{del("etc/hosts", FileRegular), add("etc/hosts.old", FileRegular)},
		},
		{
			name:   "file becomes a directory",
			change: []tt.Op{tt.Remove("a.b"), tt.File("a.b/in", "x", 0o644)},
			settle: true,
			want:   []Change{mod("a.b", FileDir), add("a.b/in", FileRegular)},
		},
		{
			name:   "directory becomes a file",
			change: []tt.Op{tt.Remove("a"), tt.File("a", "x", 0o644)},
			settle: true,
			want:   []Change{mod("a", FileRegular), del("a/b", FileRegular)},
		},
		{
			name:   "symlink retarget",
			change: []tt.Op{tt.Symlink("usr/bin/sh", "tool2")},
			settle: true,
			want:   []Change{mod("usr/bin/sh", FileSymlink)},
		},
		{
			name:   "new link to an unchanged file",
			change: []tt.Op{tt.Link("etc/passwd.link", "etc/passwd")},
			settle: true,
			want:   []Change{modLinks("etc/passwd", 1), add("etc/passwd.link", FileRegular)},
		},
		{
			name: "link swapped for a copy",
			change: []tt.Op{
				tt.Remove("usr/bin/tool2"), tt.File("usr/bin/tool2", "#!/bin/sh\n", 0o755),
			},
			settle: true,
			want:   []Change{modLinks("usr/bin/tool", -1), modLinks("usr/bin/tool2", -1)},
		},
		{
			name: "order of a.b and a/b",
			change: []tt.Op{
				tt.Chmod("a.b", 0o600), tt.Chmod("a/b", 0o600), tt.Chmod("a", 0o700),
			},
			settle: true,
			want: []Change{
				mod("a", FileDir), mod("a/b", FileRegular), mod("a.b", FileRegular),
			},
		},
		{
			name:   "fifo mode",
			change: []tt.Op{tt.Chmod("run.fifo", 0o644)},
			settle: true,
			want:   []Change{mod("run.fifo", FileFIFO)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lower, upper := layerPair(t, base, tc.change, tc.settle)
			got := collect(t, WalkChanges(context.Background(), lower, upper))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

// A hard link group can be rearranged without any name's link count,
// content or metadata changing; only the identity comparison sees it.
func TestWalkChangesLinkIdentity(t *testing.T) {
	base := []tt.Op{
		tt.File("a", "same", 0o644), tt.Link("b", "a"),
		tt.File("c", "same", 0o644), tt.Link("d", "c"),
	}
	change := []tt.Op{
		tt.Remove("b"), tt.Remove("c"), tt.Remove("d"),
		tt.Link("c", "a"), tt.File("b", "same", 0o644), tt.Link("d", "b"),
	}
	lower, upper := layerPair(t, base, change, true)
	got := collect(t, WalkChanges(context.Background(), lower, upper))
	want := []Change{mod("b", FileRegular), mod("c", FileRegular), mod("d", FileRegular)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestWalkChangesDevices(t *testing.T) {
	if !tt.CanMknod(t) {
		t.Skip("mknod not permitted")
	}
	base := []tt.Op{tt.CharDevice("dev/null", 1, 3, 0o666)}
	change := []tt.Op{
		tt.Remove("dev/null"), tt.CharDevice("dev/null", 1, 5, 0o666),
		tt.BlockDevice("dev/sda", 8, 0, 0o660),
	}
	lower, upper := layerPair(t, base, change, true)
	got := collect(t, WalkChanges(context.Background(), lower, upper))
	want := []Change{mod("dev/null", FileCharDevice), add("dev/sda", FileBlockDevice)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestWalkChangesBase(t *testing.T) {
	upper := t.TempDir()
	tt.MustApply(t, upper, tt.File("z", "", 0o644), tt.Dir("d", 0o755),
		tt.Symlink("d/l", "../z"))
	got := collect(t, WalkChanges(context.Background(), "", upper))
	want := []Change{add("d", FileDir), add("d/l", FileSymlink), add("z", FileRegular)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestWalkChangesStops(t *testing.T) {
	upper := t.TempDir()
	tt.MustApply(t, upper, tt.File("a", "", 0o644), tt.File("b", "", 0o644))
	n := 0
	for range WalkChanges(context.Background(), "", upper) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("walk went on after break: %d changes", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range WalkChanges(ctx, "", upper) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	}
}

func TestWalkChangesMissingRoot(t *testing.T) {
	for _, err := range WalkChanges(context.Background(), "", "/nonexistent/zlayer") {
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v, want *Error wrapping ErrNotExist", err)
		}
		return
	}
	t.Fatal("no error for a missing upper")
}
