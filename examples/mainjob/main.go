// Command mainjob does what a container runtime and an image builder do
// with zlayer, end to end:
//
//  1. read an OCI image layout (-image, -ref), verifying every blob;
//  2. unpack each layer into a zlayer layer keyed by its chain id, reusing
//     layers the store holds already and refusing a layer whose digest or
//     diff id is not the one the image names;
//  3. make a container's writable clone of the top layer and change files
//     in it (added, modified, deleted, renamed, a mode change);
//  4. diff the clone against its layer into a gzip layer blob and commit
//     it as a new layer;
//  5. write the new image (blob, config with the extra diff id and a
//     history entry, manifest, index entry) into an output layout (-out).
//
// Run with no arguments it uses a small image it generates and a pool on
// a sparse file in a temporary folder, destroyed at the end (-keep keeps
// it). It needs ZFS (/dev/zfs); scripts/run-mainjob.sh runs it inside the
// test bed's guest on machines without it. docs/mainjob.md has the flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o options
	flag.StringVar(&o.image, "image", "", "OCI image layout to read (default: a generated sample image)")
	flag.StringVar(&o.ref, "ref", "", "image in the layout, by its ref name (default: the layout's only image)")
	flag.StringVar(&o.out, "out", "", "OCI layout to write the new image to (default: a new temporary folder)")
	flag.StringVar(&o.outRef, "out-ref", "latest", "ref name of the new image in -out")
	flag.StringVar(&o.pool, "pool", "", "existing pool to use (default: a new pool on a file)")
	flag.StringVar(&o.root, "root", "", "store root dataset in the pool (default: POOL/zlayer)")
	flag.StringVar(&o.dir, "dir", "", "folder for the new pool's file (default: a new temporary folder)")
	flag.Int64Var(&o.poolSize, "pool-size", 4<<30, "size in bytes of the new pool's sparse file")
	flag.BoolVar(&o.keep, "keep", false, "keep the new pool and its folder instead of destroying them")
	verbose := flag.Bool("v", false, "log debug messages, the library's included")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mainjob: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.stdout, o.progress = os.Stdout, os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "mainjob: failed:", err)
		os.Exit(1)
	}
}
