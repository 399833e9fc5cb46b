package snapshotter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/zlayer/zlayer"

	snapshotter "github.com/zlayer/zlayer/examples/containerd-snapshotter"
)

// requireZFS stops a test that needs ZFS where it cannot be reached: a
// skip, except under CI (CI=true), where a ZFS test must never pass by not
// running. scripts/guest-exec runs the tests where ZFS is.
func requireZFS(tb testing.TB) {
	tb.Helper()
	err := zlayer.Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("ZFS is required under CI: %v (go test -exec scripts/guest-exec)", err)
	}
	tb.Skipf("ZFS not reachable (%v); go test -exec scripts/guest-exec runs this in a guest", err)
}

// requireTools stops a test whose programs are missing, as requireZFS does.
func requireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s is required under CI: %v (scripts/install-deps.sh installs it)", tool, err)
			}
			tb.Skipf("%s not found: %v", tool, err)
		}
	}
}

func poolName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newPool makes a pool on a sparse file for one test and destroys it
// after the test and its subtests.
func newPool(tb testing.TB, size int64) *zlayer.Pool {
	tb.Helper()
	requireZFS(tb)
	p, err := zlayer.CreateFilePool(context.Background(), poolName("zs"), tb.TempDir(),
		&zlayer.FilePoolOptions{Size: size})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Destroy(context.Background()); err != nil && !errors.Is(err, zlayer.ErrNotFound) {
			tb.Errorf("destroy pool: %v", err)
		}
	})
	return p
}

// newSnapshotter opens a store at root in pool and the adapter over it.
func newSnapshotter(tb testing.TB, pool *zlayer.Pool, root string) (*snapshotter.Snapshotter, *zlayer.Store) {
	tb.Helper()
	ctx := context.Background()
	st, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: root})
	if err != nil {
		tb.Fatal(err)
	}
	sn, err := snapshotter.New(ctx, st, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return sn, st
}
