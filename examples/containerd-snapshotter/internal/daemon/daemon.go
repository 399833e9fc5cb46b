// Package daemon is the zlayer-snapshotter program: it opens (or, for
// tests, creates) a pool, opens a zlayer store in it and serves the
// snapshotter over containerd's snapshots gRPC service on a unix socket,
// which containerd reaches as a proxy plugin.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/zlayer/zlayer"
	"google.golang.org/grpc"

	snapshotter "github.com/zlayer/zlayer/examples/containerd-snapshotter"
)

// Config is what the flags set.
type Config struct {
	Pool   string // imported pool holding the store
	Root   string // store root dataset; empty means POOL/zlayer
	Socket string // unix socket to serve on

	// FilePoolDir, when set, is where Pool is created on a sparse file
	// of FilePoolSize bytes if it is not imported, or imported from if
	// its file is there. For tests; the pool stays after the program
	// exits.
	FilePoolDir  string
	FilePoolSize int64
}

// Main parses args (without the program name), serves until SIGINT or
// SIGTERM and returns the exit status.
func Main(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("zlayer-snapshotter", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var c Config
	fl.StringVar(&c.Pool, "pool", "", "ZFS `pool` holding the snapshots (required)")
	fl.StringVar(&c.Root, "root", "",
		"`dataset` below which snapshots are kept (default POOL/zlayer)")
	fl.StringVar(&c.Socket, "socket", "/run/zlayer-snapshotter/snapshotter.sock",
		"unix `socket` to serve on")
	fl.StringVar(&c.FilePoolDir, "create-file-pool", "",
		"create the pool on a sparse file in `dir` when it is not imported (for tests)")
	fl.Int64Var(&c.FilePoolSize, "file-pool-size", 4<<30,
		"size in `bytes` of a pool made by -create-file-pool")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if c.Pool == "" || fl.NArg() > 0 {
		fmt.Fprintln(stderr, "zlayer-snapshotter: -pool is required and no arguments are taken")
		fl.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, c, log); err != nil {
		fmt.Fprintln(stderr, "zlayer-snapshotter:", err)
		return 1
	}
	return 0
}

// Run serves the snapshotter until ctx is done, then stops accepting
// calls, lets those in flight finish (for up to a minute) and removes
// the socket.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	pool, err := openPool(ctx, c)
	if err != nil {
		return err
	}
	store, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: c.Root, Logger: log})
	if err != nil {
		return err
	}
	sn, err := snapshotter.New(ctx, store, &snapshotter.Options{Logger: log})
	if err != nil {
		return err
	}
	defer sn.Close()

	l, err := listen(c.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(c.Socket)

	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("serving", "socket", c.Socket, "store", store.Root())

	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", c.Socket, err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		srv.Stop()
	}
	return nil
}

// openPool opens c.Pool; with FilePoolDir it creates the pool there, or
// imports it from there when its file exists but the pool is exported.
func openPool(ctx context.Context, c Config) (*zlayer.Pool, error) {
	p, err := zlayer.OpenPool(ctx, c.Pool)
	if c.FilePoolDir == "" || !errors.Is(err, zlayer.ErrNotFound) {
		return p, err
	}
	if err := os.MkdirAll(c.FilePoolDir, 0o700); err != nil {
		return nil, err
	}
	opts := &zlayer.FilePoolOptions{Size: c.FilePoolSize}
	p, err = zlayer.CreateFilePool(ctx, c.Pool, c.FilePoolDir, opts)
	if errors.Is(err, zlayer.ErrExist) {
		return zlayer.ImportPool(ctx, c.Pool, c.FilePoolDir)
	}
	return p, err
}

// listen makes the socket's folder and replaces a socket left by an
// earlier run; any other file at the path is an error.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
