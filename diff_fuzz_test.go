package zlayer

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/treetest"
)

// FuzzWriteChangesList feeds WriteChanges the true change list of two
// fixed trees mixed with entries made from the input: repeats, changes of
// paths that did not change, renames between any two paths, paths in
// neither tree, in any order. The kinds are hints only, so whatever the
// extra entries say, the layer must still turn lower into upper.
func FuzzWriteChangesList(f *testing.F) {
	dir := f.TempDir()
	lower, upper := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	if err := os.Mkdir(lower, 0o755); err != nil {
		f.Fatal(err)
	}
	tt.MustApply(f, lower, append(zfsBase, tt.Times(fixedTime))...)
	if err := tt.Copy(lower, upper); err != nil {
		f.Fatal(err)
	}
	tt.MustApply(f, upper, zfsChangeOps...)

	var truth []Change
	for c, err := range WalkChanges(context.Background(), lower, upper) {
		if err != nil {
			f.Fatal(err)
		}
		truth = append(truth, c)
	}
	universe := []string{"nowhere", "etc/nowhere", "opt/app/lib/gone/deeper"}
	for _, root := range []string{lower, upper} {
		snap, err := fstree.Snapshot(root)
		if err != nil {
			f.Fatal(err)
		}
		for p := range maps.Keys(snap) {
			if p != "." && !slices.Contains(universe, p) {
				universe = append(universe, p)
			}
		}
	}
	slices.Sort(universe)

	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add([]byte{3, 7, 9, 3, 9, 7, 2, 0, 0, 1, 40, 41})

	f.Fuzz(func(t *testing.T, data []byte) {
		list := slices.Clone(truth)
		for i := 0; i+3 <= len(data) && len(list) < len(truth)+64; i += 3 {
			c := Change{
				Kind: ChangeKind(data[i]%4 + 1),
				Path: universe[int(data[i+1])%len(universe)],
			}
			if c.Kind == ChangeRename {
				c.OldPath = universe[int(data[i+2])%len(universe)]
			}
			list = append(list, c)
		}
		// Shuffle by the input, so that order is fuzzed as well.
		for i := range list {
			if len(data) > 0 {
				j := int(data[i%len(data)]) % len(list)
				list[i], list[j] = list[j], list[i]
			}
		}

		var layer bytes.Buffer
		_, err := WriteChanges(context.Background(), &layer, lower, upper,
			withNil(slices.Values(list)), nil)
		if err != nil {
			t.Fatalf("WriteChanges: %v", err)
		}
		roundTrip(t, lower, upper, layer.Bytes(), "fuzzed list")
	})
}
