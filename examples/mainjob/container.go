package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/ocilayout"
)

// committed is a container's changes made into an image layer.
type committed struct {
	ID      string        // the new layer: the container's clone, committed
	ChainID digest.Digest // its chain id in the new image
	Parent  string        // the layer the container ran on
	Clone   string        // the clone it came from
	DiffID  digest.Digest // of the uncompressed changeset
	Blob    ocispec.Descriptor
	Entries int64
}

// Labels put on the container's layer: it is named after its clone, as
// its chain id is known only once it is diffed.
const (
	labelChainID = "org.zlayer.mainjob.chain-id"
	labelDiffID  = "org.zlayer.mainjob.diff-id"
)

// commitContainer runs a container on layer top: a writable clone whose
// files are changed as a process in it might change them. It commits the
// clone into layer "commit-CLONE", writes that layer's changes against
// top as a gzip layer blob into dst, and labels the layer with its diff
// id and chain id. On failure the clone, or the layer, is removed.
func commitContainer(ctx context.Context, s *zlayer.Store, dst *ocilayout.Layout, top, cloneID string,
	log *slog.Logger, pr *progress) (c *committed, err error) {
	if _, err := s.CreateClone(ctx, cloneID, top, nil); err != nil {
		return nil, err
	}
	c = &committed{ID: "commit-" + cloneID, Parent: top, Clone: cloneID}
	made := cloneID
	defer func() {
		if err != nil {
			if rerr := s.Remove(context.Background(), made); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", made, rerr))
			}
		}
	}()
	if err := inMount(ctx, s, cloneID, changeFiles); err != nil {
		return nil, fmt.Errorf("change container %s: %w", cloneID, err)
	}
	log.Info("changed files in the container", "clone", cloneID, "layer", top)

	if _, err := s.CommitClone(ctx, cloneID, c.ID, nil); err != nil {
		return nil, err
	}
	made = c.ID
	log.Info("committed the container", "clone", cloneID, "layer", c.ID)

	if c.Blob, c.DiffID, c.Entries, err = diffToBlob(ctx, s, dst, c.ID, log, pr); err != nil {
		return nil, err
	}
	c.ChainID = ocilayout.ChainID([]digest.Digest{digest.Digest(top), c.DiffID})
	err = s.SetLabels(ctx, c.ID, map[string]string{
		labelChainID: c.ChainID.String(), labelDiffID: c.DiffID.String(),
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// diffToBlob writes the changes of layer id against its parent, gzip
// compressed, as a blob of dst, and checks the blob against what the
// library says it wrote.
func diffToBlob(ctx context.Context, s *zlayer.Store, dst *ocilayout.Layout, id string,
	log *slog.Logger, pr *progress) (ocispec.Descriptor, digest.Digest, int64, error) {
	w, err := dst.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	defer w.Close()
	lp := pr.start("diff of "+id, 0)
	res, err := s.Diff(ctx, id, w, &zlayer.DiffOptions{
		Compression: zlayer.Gzip, Progress: lp.diffUpdate, Logger: log,
	})
	lp.diffDone(res, err)
	if err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	if res.Descriptor.Digest != w.Digest() || res.Descriptor.Size != w.Size() {
		return ocispec.Descriptor{}, "", 0, fmt.Errorf(
			"diff of %s: library says %s (%d bytes), blob is %s (%d bytes): %w",
			id, res.Descriptor.Digest, res.Descriptor.Size, w.Digest(), w.Size(), ocilayout.ErrDigestMismatch)
	}
	desc, err := w.Commit(res.Descriptor.MediaType, res.Descriptor.Digest)
	if err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	log.Info("diffed the container's layer", "layer", id, "blob", desc.Digest, "size", desc.Size,
		"diff_id", res.DiffID, "entries", res.Entries)
	return desc, res.DiffID, int64(res.Entries), nil
}

// inMount mounts clone id read-write in a temporary folder and calls fn
// with the folder.
func inMount(ctx context.Context, s *zlayer.Store, id string, fn func(dir string) error) error {
	return mountAt(ctx, s, id, false, fn)
}

// mountAt mounts layer or clone id in a temporary folder and calls fn with
// the folder.
func mountAt(ctx context.Context, s *zlayer.Store, id string, readOnly bool, fn func(string) error) (err error) {
	tmp, err := os.MkdirTemp("", "zlayer-mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	dir := filepath.Join(tmp, "root")
	if err := s.Mount(ctx, id, dir, &zlayer.MountOptions{ReadOnly: readOnly}); err != nil {
		return err
	}
	defer func() {
		if uerr := s.Unmount(context.Background(), dir); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(dir)
}
