package zlayer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/treetest"
)

// roundTrip applies the layer data onto a copy of lower and fails t unless
// the result matches upper entry by entry: type, mode, owner, size,
// content, link target, device, extended attributes, hard-link grouping
// and modification time to the second (the layer keeps whole seconds).
// The root and sockets are left out: a layer carries neither. So are the
// times of directories the layer does not list: applying an entry below
// one changes its time, and only an entry for it could set the time back.
func roundTrip(t *testing.T, lower, upper string, data []byte, what string) {
	t.Helper()
	applied := filepath.Join(t.TempDir(), "applied")
	if lower == "" {
		if err := os.Mkdir(applied, 0o755); err != nil {
			t.Fatal(err)
		}
	} else if err := tt.Copy(lower, applied); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyDir(context.Background(), applied, bytes.NewReader(data), nil); err != nil {
		t.Fatalf("%s: apply: %v", what, err)
	}

	want, err := fstree.Snapshot(upper)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fstree.Snapshot(applied)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range readTar(t, data, Uncompressed) {
		listed[strings.TrimSuffix(e.Name, "/")] = true
	}
	ignored := []string{"."}
	var unlisted []string
	for p, e := range want {
		switch {
		case e.Type == fstree.TypeSocket:
			ignored = append(ignored, p)
		case e.Type == fstree.TypeDir && !listed[p]:
			unlisted = append(unlisted, p)
		}
	}
	d := fstree.Diff(want, got, fstree.IgnorePaths(ignored...),
		fstree.IgnoreMtime(unlisted...), fstree.MtimeWithin(time.Second))
	if d != "" {
		t.Fatalf("%s: applied tree differs from upper (-upper +applied):\n%s", what, d)
	}
}

// TestDiffRoundTripRandom builds random trees, changes them at random in
// every way a layer must carry, and checks that the layer DiffDirs writes,
// applied to the lower tree, gives the upper tree back. The same layer
// must come out of WriteChanges fed the walk's changes shuffled and
// repeated, as a ZFS change list comes. ZLAYER_DIFF_SEEDS sets how many
// trees to try.
func TestDiffRoundTripRandom(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	if n, err := strconv.Atoi(os.Getenv("ZLAYER_DIFF_SEEDS")); err == nil && n > 0 {
		seeds = n
	}
	devices := tt.CanMknod(t)
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			dir := t.TempDir()
			lower, upper := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
			if err := os.Mkdir(lower, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.MustApply(t, lower, tt.RandomTree(r, 30+r.IntN(60), devices)...)
			if err := tt.Copy(lower, upper); err != nil {
				t.Fatal(err)
			}
			done, err := tt.Mutate(r, upper, 1+r.IntN(15))
			if err != nil {
				t.Fatalf("mutate after %q: %v", done, err)
			}
			what := strings.Join(done, "; ")

			var layer bytes.Buffer
			res, err := DiffDirs(context.Background(), &layer, lower, upper, nil)
			if err != nil {
				t.Fatalf("%s: DiffDirs: %v", what, err)
			}
			roundTrip(t, lower, upper, layer.Bytes(), what)

			var changes []Change
			for c, err := range WalkChanges(context.Background(), lower, upper) {
				if err != nil {
					t.Fatal(err)
				}
				changes = append(changes, c)
			}
			mixed := append(slices.Clone(changes), changes[:len(changes)/2]...)
			r.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
			var again bytes.Buffer
			res2, err := WriteChanges(context.Background(), &again, lower, upper,
				withNil(slices.Values(mixed)), nil)
			if err != nil {
				t.Fatalf("%s: WriteChanges: %v", what, err)
			}
			if res2.DiffID != res.DiffID {
				t.Fatalf("%s: shuffled list gave %v, walk order %v\n%s\n%s", what,
					res2.DiffID, res.DiffID, names(t, layer.Bytes()), names(t, again.Bytes()))
			}

			var base bytes.Buffer
			if _, err := DiffDirs(context.Background(), &base, "", upper, nil); err != nil {
				t.Fatalf("base layer: %v", err)
			}
			roundTrip(t, "", upper, base.Bytes(), "base layer")
		})
	}
}
