package snapshotter_test

import (
	"os"
	"testing"

	"github.com/zlayer/zlayer/examples/containerd-snapshotter/internal/daemon"
)

// daemonEnv makes the test binary run the zlayer-snapshotter program
// instead of the tests, so that the containerd test can start the program
// without a Go toolchain in the guest. The program's main is daemon.Main
// as well.
const daemonEnv = "ZLAYER_SNAPSHOTTER_TEST_RUN_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(daemonEnv) == "1" {
		os.Exit(daemon.Main(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}
