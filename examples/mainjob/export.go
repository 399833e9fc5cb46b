package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/zlayer/zlayer"
	"github.com/zlayer/zlayer/internal/ocilayout"
)

// exportImage writes the image made of img and the container's layer c
// into dst under ref: the base layers' blobs copied from src (verified on
// the way), c's blob, a config with c's diff id and a history entry, a
// manifest and an index entry.
func exportImage(ctx context.Context, src, dst *ocilayout.Layout, img *ocilayout.Image, c *committed,
	ref string) (*ocilayout.Image, error) {
	for _, ld := range img.Manifest.Layers {
		if err := dst.CopyBlob(ctx, src, ld); err != nil {
			return nil, fmt.Errorf("copy base layer: %w", err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	next := ocilayout.AppendLayer(img, c.Blob, c.DiffID, ocispec.History{
		Created:   &now,
		CreatedBy: "zlayer mainjob: commit of container " + c.Clone,
		Comment:   fmt.Sprintf("zlayer layer %s, %d entries", c.ID, c.Entries),
	})
	next.Config.Created = &now
	if _, err := dst.WriteImage(next, ref); err != nil {
		return nil, err
	}
	return next, nil
}

// report prints what the job made: the layers with their space, and the
// new image.
func report(ctx context.Context, w io.Writer, s *zlayer.Store, layers []unpacked, c *committed,
	dir, ref string, img *ocilayout.Image) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHAT\tLAYER ID\tPARENT\tHOW\tENTRIES\tUSED\tREFERENCED")
	row := func(what, id, parent, how string, entries int64) error {
		u, err := s.Usage(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", what, short(id), short(parent), how, entries,
			size(u.Used), size(u.Referenced))
		return nil
	}
	for i, l := range layers {
		how := "applied " + l.Apply.Compression.String()
		if l.Reused {
			how = "reused"
		}
		if err := row(fmt.Sprintf("image layer %d", i+1), l.ID, l.Parent, how, l.Apply.Entries); err != nil {
			return err
		}
	}
	if err := row("new layer", c.ID, c.Parent, "container commit", c.Entries); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nnew image %q in %s\n", ref, dir)
	fmt.Fprintf(w, "  manifest  %s (%d bytes)\n", img.Descriptor.Digest, img.Descriptor.Size)
	fmt.Fprintf(w, "  config    %s (%d bytes)\n", img.Manifest.Config.Digest, img.Manifest.Config.Size)
	fmt.Fprintf(w, "  new layer %s (%s, %d bytes)\n", c.Blob.Digest, c.Blob.MediaType, c.Blob.Size)
	fmt.Fprintf(w, "  diff id   %s\n", c.DiffID)
	fmt.Fprintf(w, "  chain id  %s\n", c.ChainID)
	return nil
}

// short abbreviates a chain id for the table.
func short(id string) string {
	switch {
	case id == "":
		return "-"
	case strings.HasPrefix(id, "sha256:") && len(id) > 19:
		return id[:19]
	}
	return id
}
