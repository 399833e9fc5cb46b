package zfsdiff

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzReader checks that no input panics the reader, that every accepted
// stream names only clean relative paths, and that writing the accepted
// entries back the way libzfs would reads back to the same entries.
func FuzzReader(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(samples, "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed samples in %s: %v", samples, err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		m := mount
		if strings.HasPrefix(filepath.Base(name), "rootmount") {
			m = "/"
		}
		f.Add(data, m)
	}

	f.Fuzz(func(t *testing.T, data []byte, mountpoint string) {
		r := NewReader(strings.NewReader(string(data)), mountpoint)
		var got []Entry
		for {
			e, err := r.Next()
			if err != nil {
				break
			}
			checkEntry(t, e)
			got = append(got, e)
		}
		if len(got) == 0 || !r.shapeSet {
			return
		}
		// Only a mountpoint libzfs could print round-trips: one made of
		// plain bytes would escape differently.
		if strings.ContainsAny(mountpoint, "\\") {
			return
		}
		back, err := readAll(strings.NewReader(format(got, r.shape, mountpoint)),
			mountpoint)
		if err != nil {
			t.Fatalf("reading back %q: %v", format(got, r.shape, mountpoint), err)
		}
		if diff := cmp.Diff(got, back); diff != "" {
			t.Fatalf("entries changed on the way back (-first +second):\n%s", diff)
		}
	})
}

func checkEntry(t *testing.T, e Entry) {
	t.Helper()
	for _, p := range []string{e.Path, e.OldPath} {
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("path %q is not relative and clean", p)
		}
		for _, c := range strings.Split(p, "/") {
			if c == "" || c == "." || c == ".." || c == xattrDir {
				t.Fatalf("path %q has component %q", p, c)
			}
		}
	}
	if (e.Kind == Renamed) != (e.OldPath != "") {
		t.Fatalf("entry %+v: old path without a rename or the reverse", e)
	}
	if e.LinkDelta != 0 && e.Kind != Modified {
		t.Fatalf("entry %+v: link change on a %v record", e, e.Kind)
	}
}
