package zlayer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/zlayer/internal/testzfs"
)

// TestMain doubles as the crash child: one store operation run in a process
// that kills itself at the named step, leaving the pool as a crash would.
func TestMain(m *testing.M) {
	if at := os.Getenv("ZLAYER_CRASH_AT"); at != "" {
		crashHook = func(step string) {
			if step == at {
				os.Exit(3)
			}
		}
		os.Exit(crashChild(os.Getenv("ZLAYER_CRASH_POOL"), os.Getenv("ZLAYER_CRASH_OP")))
	}
	os.Exit(m.Run())
}

func crashChild(pool, op string) int {
	ctx := context.Background()
	p, err := OpenPool(ctx, pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := OpenStore(ctx, p, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch op {
	case "commit":
		_, err = s.Commit(ctx, "active")
	case "commit-clone":
		_, err = s.CommitClone(ctx, "ctr", "fromctr", nil)
	case "remove":
		err = s.Remove(ctx, "doomed")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0 // the step was never reached
}

func TestCrashRecovery(t *testing.T) {
	cases := []struct {
		op, at string
		check  func(t *testing.T, s *Store)
	}{
		{"commit", "commit-snapshot", activeStays("active")},
		{"commit", "commit-recorded", committedAs("active", "")},
		{"commit-clone", "commit-snapshot", cloneStays("ctr", "fromctr")},
		{"commit-clone", "commit-recorded", cloneStays("ctr", "fromctr")},
		{"commit-clone", "commit-renamed", committedAs("fromctr", "ctr")},
		{"remove", "remove-marked", removed("doomed")},
		{"remove", "remove-snapshots", removed("doomed")},
	}
	for _, tc := range cases {
		t.Run(tc.op+"@"+tc.at, func(t *testing.T) {
			ctx := context.Background()
			s, p := newStore(t)
			mustLayer(t, s, "base", "", func(dir string) {
				writeFile(t, filepath.Join(dir, "kept"), []byte("committed data"))
			})
			if _, err := s.CreateLayer(ctx, "active", "base", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateClone(ctx, "ctr", "base", nil); err != nil {
				t.Fatal(err)
			}
			mustLayer(t, s, "doomed", "", nil)
			if _, err := s.CreateSnapshot(ctx, "doomed", "auto-1"); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "ZLAYER_CRASH_AT="+tc.at,
				"ZLAYER_CRASH_POOL="+p.Name(), "ZLAYER_CRASH_OP="+tc.op)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("child did not crash at %s: %v\n%s", tc.at, err, out)
			}

			s2, err := OpenStore(ctx, p, nil)
			if err != nil {
				t.Fatalf("reopen after crash: %v", err)
			}
			tc.check(t, s2)

			// Nothing committed is lost, whatever happened.
			base, err := s2.Layer(ctx, "base")
			if err != nil || !base.Committed {
				t.Fatalf("base after crash: %+v, %v", base, err)
			}
			dir := filepath.Join(t.TempDir(), "b")
			if err := s2.Mount(ctx, "base", dir, &MountOptions{ReadOnly: true}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "kept"))
			if err != nil || string(got) != "committed data" {
				t.Errorf("base content after crash: %q, %v", got, err)
			}
			s2.Unmount(ctx, dir)
			assertNoLeftovers(t, s2)
		})
	}
}

func activeStays(id string) func(*testing.T, *Store) {
	return func(t *testing.T, s *Store) {
		l, err := s.Layer(context.Background(), id)
		if err != nil || l.Committed {
			t.Fatalf("interrupted commit: %+v, %v; want the layer active", l, err)
		}
		// The layer is writable again and can be committed now.
		dir := filepath.Join(t.TempDir(), "a")
		if err := s.Mount(context.Background(), id, dir, nil); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "after"), []byte("x"))
		s.Unmount(context.Background(), dir)
		if _, err := s.Commit(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
}

func cloneStays(id, target string) func(*testing.T, *Store) {
	return func(t *testing.T, s *Store) {
		if _, err := s.Clone(context.Background(), id); err != nil {
			t.Fatalf("interrupted clone commit lost the clone: %v", err)
		}
		if _, err := s.Layer(context.Background(), target); !errors.Is(err, ErrNotFound) {
			t.Fatalf("half-made layer %s visible: %v", target, err)
		}
	}
}

func committedAs(id, old string) func(*testing.T, *Store) {
	return func(t *testing.T, s *Store) {
		l, err := s.Layer(context.Background(), id)
		if err != nil || !l.Committed || l.Parent != "base" {
			t.Fatalf("clone commit past its rename: %+v, %v; want committed layer", l, err)
		}
		if old == "" {
			return
		}
		if _, err := s.Clone(context.Background(), old); !errors.Is(err, ErrNotFound) {
			t.Fatalf("clone %s still there: %v", old, err)
		}
	}
}

func removed(id string) func(*testing.T, *Store) {
	return func(t *testing.T, s *Store) {
		if _, err := s.Layer(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("half-removed layer: %v", err)
		}
		if out := testzfs.ZFS(t, "list", "-H", "-o", "name", "-t", "all", "-r", s.Root()); containsLine(out, s.Root()+"/"+id) {
			t.Fatalf("dataset left after recovery:\n%s", out)
		}
	}
}

// assertNoLeftovers checks that no dataset of the store is left in the
// middle of an operation: being removed, marked with a commit to another
// id, active with a commit snapshot, or holding an apply snapshot.
func assertNoLeftovers(t *testing.T, s *Store) {
	t.Helper()
	out := testzfs.ZFS(t, "get", "-H", "-r", "-t", "filesystem", "-o", "name,property,value",
		propCommitting+","+propState, s.Root())
	state := map[string]string{}
	for _, line := range splitLines(out) {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		name, prop, val := f[0], f[1], f[2]
		switch {
		case prop == propState:
			state[name] = val
			if val == stateRemoving {
				t.Errorf("leftover removal: %s", line)
			}
		case prop == propCommitting && val != "-" && val != "" && name != s.dataset(val):
			t.Errorf("leftover commit mark: %s", line)
		}
	}
	out = testzfs.ZFS(t, "list", "-H", "-o", "name", "-t", "snapshot", "-r", s.Root())
	for _, snap := range splitLines(out) {
		ds, name, _ := strings.Cut(snap, "@")
		if name == applySnap || (name == commitSnap && state[ds] == stateActive) {
			t.Errorf("leftover snapshot %s", snap)
		}
	}
}

// TestRecoverBareClone: a clone of a commit snapshot without the store's
// properties is what a machine crash inside lzc_clone leaves; reopening
// the store destroys it, and leaves a plain foreign filesystem alone.
func TestRecoverBareClone(t *testing.T) {
	ctx := context.Background()
	s, p := newStore(t)
	mustLayer(t, s, "base", "", nil)
	testzfs.ZFS(t, "clone", s.Root()+"/base@zlayer", s.Root()+"/halfmade")
	testzfs.ZFS(t, "create", s.Root()+"/foreign")
	if _, err := OpenStore(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	out := testzfs.ZFS(t, "list", "-H", "-o", "name", "-r", s.Root())
	if containsLine(out, s.Root()+"/halfmade") || !containsLine(out, s.Root()+"/foreign") {
		t.Errorf("after reopening:\n%s", out)
	}
}
