// Command mainjob walks through what a container runtime does with zlayer:
// a pool, a base layer, a child layer and a container's writable clone,
// and what each costs on disk.
//
// Run with no arguments it works on an embedded default: a pool on a
// sparse file in a temporary folder, destroyed at the end. It needs ZFS
// (/dev/zfs); scripts/run-mainjob.sh runs it inside the test bed's guest on
// machines without it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/zlayer/zlayer"
)

func main() {
	var (
		dir     = flag.String("dir", "", "folder for the pool's file (default: a new temporary folder)")
		pool    = flag.String("pool", "zlayermain", "name of the pool to create")
		keep    = flag.Bool("keep", false, "keep the pool instead of destroying it at the end")
		verbose = flag.Bool("v", false, "log the library's debug messages")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(context.Background(), log, *dir, *pool, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "mainjob:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, dir, poolName string, keep bool) (err error) {
	if err := zlayer.Available(); err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "zlayer-mainjob-"); err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	pool, err := zlayer.CreateFilePool(ctx, poolName, dir, &zlayer.FilePoolOptions{Size: 1 << 30})
	if err != nil {
		return err
	}
	log.Info("created pool", "pool", pool.Name(), "dir", dir)
	if !keep {
		defer func() {
			if derr := pool.Destroy(ctx); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	store, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Logger: log})
	if err != nil {
		return err
	}

	base, err := layerWith(ctx, store, "base", "", map[string]string{
		"etc/os-release": "NAME=zlayer-demo\n",
		"usr/share/big":  string(make([]byte, 8<<20)),
	})
	if err != nil {
		return err
	}
	child, err := layerWith(ctx, store, "child", base.ID, map[string]string{
		"etc/motd": "built on zlayer\n",
	})
	if err != nil {
		return err
	}
	ctr, err := store.CreateClone(ctx, "container", child.ID, &zlayer.CloneOptions{Quota: 256 << 20})
	if err != nil {
		return err
	}
	if err := write(ctx, store, ctr.ID, map[string]string{"tmp/scratch": "written by the container\n"}); err != nil {
		return err
	}
	spec, err := store.MountSpec(ctx, ctr.ID, false)
	if err != nil {
		return err
	}

	if err := pool.Sync(ctx); err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "WHAT\tID\tPARENT\tDATASET\tUSED\tREFERENCED")
	for _, row := range []struct{ what, id, parent, ds string }{
		{"base layer", base.ID, "-", base.Dataset},
		{"child layer", child.ID, child.Parent, child.Dataset},
		{"container clone", ctr.ID, ctr.Layer, ctr.Dataset},
	} {
		u, err := store.Usage(ctx, row.id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", row.what, row.id, row.parent, row.ds,
			size(u.Used), size(u.Referenced))
	}
	w.Flush()
	fmt.Printf("\ncontainer mount: type %s, source %s, options %v\n", spec.Type, spec.Source, spec.Options)
	return nil
}

// layerWith creates a layer holding files and commits it.
func layerWith(ctx context.Context, s *zlayer.Store, id, parent string, files map[string]string) (*zlayer.Layer, error) {
	if _, err := s.CreateLayer(ctx, id, parent, nil); err != nil {
		return nil, err
	}
	if err := write(ctx, s, id, files); err != nil {
		return nil, err
	}
	return s.Commit(ctx, id)
}

// write mounts a layer or clone and writes files into it.
func write(ctx context.Context, s *zlayer.Store, id string, files map[string]string) (err error) {
	tmp, err := os.MkdirTemp("", "zlayer-mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	target := filepath.Join(tmp, "root")
	if err := s.Mount(ctx, id, target, nil); err != nil {
		return err
	}
	defer func() {
		if uerr := s.Unmount(ctx, target); uerr != nil && err == nil {
			err = uerr
		}
	}()
	root, err := os.OpenRoot(target)
	if err != nil {
		return err
	}
	defer root.Close()
	for name, data := range files {
		if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := root.WriteFile(name, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func size(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
