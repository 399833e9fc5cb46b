package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/ocilayout"
)

// options are the program's flags.
type options struct {
	image, ref  string
	out, outRef string
	pool, root  string
	dir         string
	poolSize    int64
	keep        bool
	log         *slog.Logger
	stdout      io.Writer // the summary
	progress    io.Writer // progress lines; nil for none
}

// run is the whole job; see the package documentation.
func run(ctx context.Context, o options) (err error) {
	if err := zlayer.Available(); err != nil {
		return err
	}
	store, cleanup, err := openStore(ctx, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()

	if o.image == "" {
		dir, err := os.MkdirTemp("", "zlayer-sample-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := writeSample(ctx, dir); err != nil {
			return fmt.Errorf("generate sample image: %w", err)
		}
		o.image, o.ref = dir, sampleRef
		o.log.Info("generated a sample image", "layout", dir, "ref", sampleRef)
	}
	src, err := ocilayout.Open(o.image)
	if err != nil {
		return err
	}
	img, err := src.Image(ctx, o.ref)
	if err != nil {
		return err
	}
	o.log.Info("read image", "layout", o.image, "manifest", img.Descriptor.Digest,
		"layers", len(img.Manifest.Layers))

	pr := newProgress(o.progress)
	layers, err := unpackImage(ctx, store, src, img, o.log, pr)
	if err != nil {
		return err
	}
	top := layers[len(layers)-1].ID

	outDir, made, err := outputDir(o.out)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && made {
			os.RemoveAll(outDir)
		}
	}()
	dst, err := ocilayout.Create(outDir)
	if err != nil {
		return err
	}
	c, err := commitContainer(ctx, store, dst, top, "mainjob-ctr-"+randomHex(4), o.log, pr)
	if err != nil {
		return err
	}
	out, err := exportImage(ctx, src, dst, img, c, o.outRef)
	if err != nil {
		return err
	}
	o.log.Info("wrote image", "layout", outDir, "ref", o.outRef, "manifest", out.Descriptor.Digest)
	return report(ctx, o.stdout, store, layers, c, outDir, o.outRef, out)
}

// openStore opens the store on -pool or on a new file pool. cleanup
// destroys what openStore made unless -keep.
func openStore(ctx context.Context, o options) (*zlayer.Store, func() error, error) {
	nop := func() error { return nil }
	if o.pool != "" {
		pool, err := zlayer.OpenPool(ctx, o.pool)
		if err != nil {
			return nil, nil, err
		}
		s, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: o.root, Logger: o.log})
		return s, nop, err
	}

	dir, madeDir := o.dir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "zlayer-mainjob-"); err != nil {
			return nil, nil, err
		}
		madeDir = true
	}
	pool, err := zlayer.CreateFilePool(ctx, "zlayermain"+randomHex(3), dir,
		&zlayer.FilePoolOptions{Size: o.poolSize})
	if err != nil {
		if madeDir {
			os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	o.log.Info("created pool", "pool", pool.Name(), "dir", dir, "keep", o.keep)
	cleanup := func() error {
		if o.keep {
			fmt.Fprintf(o.stdout, "kept pool %s (file in %s)\n", pool.Name(), dir)
			return nil
		}
		// A fresh context: the pool goes even when the job was interrupted.
		err := pool.Destroy(context.Background())
		if madeDir && err == nil {
			err = os.RemoveAll(dir)
		}
		return err
	}
	// -root names a dataset of an existing pool; a new pool's name is
	// random, so its store is at the default root.
	s, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Logger: o.log})
	if err != nil {
		return nil, nil, errors.Join(err, cleanup())
	}
	return s, cleanup, nil
}

// outputDir returns -out, or a new temporary folder (made true).
func outputDir(out string) (dir string, made bool, err error) {
	if out != "" {
		return out, false, nil
	}
	dir, err = os.MkdirTemp("", "zlayer-mainjob-out-")
	return dir, err == nil, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
