package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/ocilayout"
)

// unpacked is one image layer in the store.
type unpacked struct {
	ID     string // the layer's chain id
	Parent string
	DiffID digest.Digest
	Blob   ocispec.Descriptor
	Reused bool               // the store held it already
	Apply  zlayer.ApplyResult // zero when reused
}

// unpackImage makes the image's layers into a chain of committed store
// layers, each keyed by its chain id, lowest first. A layer the store
// holds already (committed, on the same parent) is reused; an active one
// left by an interrupted run is removed and made again. A layer that
// fails (its blob's digest or size is not the manifest's, its tar's
// digest is not the config's diff id, the tar is malformed) is removed,
// so the store holds only the layers below it.
func unpackImage(ctx context.Context, s *zlayer.Store, src *ocilayout.Layout, img *ocilayout.Image,
	log *slog.Logger, pr *progress) ([]unpacked, error) {
	diffIDs := img.DiffIDs()
	chain := ocilayout.ChainIDs(diffIDs)
	out := make([]unpacked, len(chain))
	parent := ""
	for i, id := range chain {
		u := unpacked{ID: id.String(), Parent: parent, DiffID: diffIDs[i], Blob: img.Manifest.Layers[i]}
		what := fmt.Sprintf("layer %d/%d", i+1, len(chain))
		reused, err := reuse(ctx, s, u.ID, parent, log)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, u.ID, err)
		}
		if reused {
			u.Reused = true
			log.Info("reusing layer", "layer", i+1, "id", u.ID)
		} else if u.Apply, err = unpackLayer(ctx, s, src, u, pr.start(what, u.Blob.Size), log); err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, u.ID, err)
		}
		out[i] = u
		parent = u.ID
	}
	return out, nil
}

// reuse reports whether layer id is in the store, committed on parent.
func reuse(ctx context.Context, s *zlayer.Store, id, parent string, log *slog.Logger) (bool, error) {
	l, err := s.Layer(ctx, id)
	switch {
	case errors.Is(err, zlayer.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case !l.Committed:
		log.Warn("removing a layer an earlier run left unfinished", "id", id)
		return false, s.Remove(ctx, id)
	case l.Parent != parent:
		// Chain ids name the whole stack below, so this is another tool's
		// layer under the same name.
		return false, fmt.Errorf("store has it on parent %q, not %q: %w", l.Parent, parent, zlayer.ErrExist)
	}
	return true, nil
}

// unpackLayer creates layer u.ID on u.Parent, applies its blob and
// commits it; on any failure the layer is removed.
func unpackLayer(ctx context.Context, s *zlayer.Store, src *ocilayout.Layout, u unpacked,
	pr *layerProgress, log *slog.Logger) (res zlayer.ApplyResult, err error) {
	if _, err := s.CreateLayer(ctx, u.ID, u.Parent, nil); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			// A fresh context: the layer goes even when ctx was cancelled.
			if rerr := s.Remove(context.Background(), u.ID); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove failed layer: %w", rerr))
			}
		}
	}()
	blob, err := src.OpenBlob(u.Blob)
	if err != nil {
		return res, err
	}
	defer blob.Close()
	res, err = s.Apply(ctx, u.ID, blob, &zlayer.ApplyOptions{
		ExpectedDiffID: u.DiffID,
		ExpectedDigest: u.Blob.Digest,
		Progress:       pr.update,
		Logger:         log,
	})
	pr.done(res, err)
	if err != nil {
		return res, err
	}
	if _, err := s.Commit(ctx, u.ID); err != nil {
		return res, err
	}
	return res, nil
}
