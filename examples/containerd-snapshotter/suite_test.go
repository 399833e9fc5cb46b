package snapshotter_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	zfssnapshotter "github.com/containerd/zfs/v2"
	"github.com/zlayer/zlayer"

	snapshotter "github.com/zlayer/zlayer/examples/containerd-snapshotter"
)

// suitePeerEnv set to 1 makes TestSnapshotterSuite run the suite against
// containerd's own ZFS snapshotter instead; BenchmarkSuite uses it to time
// both on one pool.
const suitePeerEnv = "ZLAYER_SUITE_PEER"

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
	name := "zlayer"
	if os.Getenv(suitePeerEnv) == "1" {
		requireTools(t, "zfs")
		name = "containerd-zfs"
		factory = func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			ds := fmt.Sprintf("%s/peer%02d", pool.Name(), n.Add(1))
			if out, err := exec.Command("zfs", "create", "-o", "mountpoint="+root, ds).CombinedOutput(); err != nil {
				return nil, nil, fmt.Errorf("zfs create %s: %v: %s", ds, err, out)
			}
			sn, err := zfssnapshotter.NewSnapshotter(root)
			if err != nil {
				return nil, nil, err
			}
			return sn, func() error {
				err := sn.Close()
				if out, derr := exec.Command("zfs", "destroy", "-r", ds).CombinedOutput(); derr != nil {
					err = errors.Join(err, fmt.Errorf("zfs destroy %s: %v: %s", ds, derr, out))
				}
				return err
			}, nil
		}
	}
	testsuite.SnapshotterSuite(t, name, factory)
}
