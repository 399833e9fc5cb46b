// Command zlayer-snapshotter serves a zlayer store to containerd as a
// snapshotter, over containerd's snapshots gRPC service on a unix socket.
//
//	zlayer-snapshotter -pool tank -root tank/containerd \
//		-socket /run/zlayer-snapshotter/snapshotter.sock
//
// containerd uses it through a proxy plugin of type "snapshot" whose
// address is the socket; see the README beside the module.
package main

import (
	"os"

	"github.com/zlayer/zlayer/examples/containerd-snapshotter/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stderr))
}
