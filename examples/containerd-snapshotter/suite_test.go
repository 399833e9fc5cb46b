package snapshotter_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"github.com/zlayer/zlayer"

	snapshotter "github.com/zlayer/zlayer/examples/containerd-snapshotter"
)

// TestSnapshotterSuite runs containerd's conformance suite. Its sub-tests
// run in parallel and each calls the factory: each gets a store root of
// its own in one shared pool.
func TestSnapshotterSuite(t *testing.T) {
	pool := newPool(t, 4<<30)
	var n atomic.Int32
	factory := func(ctx context.Context, _ string) (snapshots.Snapshotter, func() error, error) {
		root := fmt.Sprintf("%s/suite%02d", pool.Name(), n.Add(1))
		st, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: root})
		if err != nil {
			return nil, nil, err
		}
		sn, err := snapshotter.New(ctx, st, nil)
		if err != nil {
			return nil, nil, err
		}
		return sn, sn.Close, nil
	}
	testsuite.SnapshotterSuite(t, "zlayer", factory)
}
