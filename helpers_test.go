package zlayer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zlayer/zlayer/internal/testzfs"
	"github.com/zlayer/zlayer/internal/zfs"
)

// newPool makes a file-backed pool for one test and destroys it after.
func newPool(t testing.TB, size int64) *Pool {
	t.Helper()
	testzfs.Require(t)
	ctx := context.Background()
	name := testzfs.PoolName("zt")
	p, err := CreateFilePool(ctx, name, t.TempDir(), &FilePoolOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Destroy(context.Background()); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("destroy pool: %v", err)
		}
	})
	return p
}

// newStore makes a store on a fresh pool.
func newStore(t testing.TB) (*Store, *Pool) {
	t.Helper()
	p := newPool(t, 1<<30)
	s, err := OpenStore(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

// mustLayer creates and commits a layer whose content fill writes.
func mustLayer(t testing.TB, s *Store, id, parent string, fill func(dir string)) *Layer {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateLayer(ctx, id, parent, nil); err != nil {
		t.Fatal(err)
	}
	if fill != nil {
		dir := filepath.Join(t.TempDir(), "m")
		if err := s.Mount(ctx, id, dir, nil); err != nil {
			t.Fatal(err)
		}
		fill(dir)
		if err := s.Unmount(ctx, dir); err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.Commit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncPool flushes the pool so that space accounting is current.
func syncPool(t testing.TB, p *Pool) {
	t.Helper()
	if err := zfs.Sync(p.Name()); err != nil {
		t.Fatal(err)
	}
}

func usage(t testing.TB, s *Store, id string) Usage {
	t.Helper()
	u, err := s.Usage(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func splitLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func containsLine(out, line string) bool { return slices.Contains(splitLines(out), line) }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
