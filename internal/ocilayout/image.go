package ocilayout

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxDepth bounds how many indexes deep a reference may lead.
const maxDepth = 4

// Image is one image manifest of a layout with its config, both verified
// against their descriptors.
type Image struct {
	// Descriptor is the manifest's, as the index that led to it gave it.
	Descriptor ocispec.Descriptor
	Manifest   ocispec.Manifest
	Config     ocispec.Image
}

// DiffIDs returns the digests of the image's uncompressed layers, lowest
// first.
func (img *Image) DiffIDs() []digest.Digest {
	return slices.Clone(img.Config.RootFS.DiffIDs)
}

// ChainIDs returns the chain ids of the image's layers, lowest first.
func (img *Image) ChainIDs() []digest.Digest {
	return ChainIDs(img.Config.RootFS.DiffIDs)
}

// Image finds the image called ref: the index.json entry whose
// org.opencontainers.image.ref.name annotation is ref or, when ref is
// empty, the index's only entry. An entry that is an image index leads to
// its manifest for this machine's platform (linux and the running
// architecture), or to its only manifest, nested indexes included.
//
// The manifest, the config and every index on the way are checked against
// their descriptors, and the image is refused, wrapping [ErrInvalid], when
// its config is not an OCI image config, its layers are of a media type
// other than the OCI tar, tar+gzip and tar+zstd ones, or the config's
// rootfs.diff_ids do not pair with the layers.
func (l *Layout) Image(ctx context.Context, ref string) (*Image, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	desc, err := pickRef(idx, ref)
	if err != nil {
		return nil, fmt.Errorf("image %q in %q: %w", ref, l.dir, err)
	}
	for depth := 0; desc.MediaType == ocispec.MediaTypeImageIndex; depth++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if depth == maxDepth {
			return nil, fmt.Errorf("image %q: indexes nested more than %d deep: %w", ref, maxDepth, ErrInvalid)
		}
		var nested ocispec.Index
		if err := l.ReadJSON(desc, &nested); err != nil {
			return nil, fmt.Errorf("image %q: %w", ref, err)
		}
		if err := checkIndex(nested); err != nil {
			return nil, fmt.Errorf("image %q: index %s: %w", ref, desc.Digest, err)
		}
		next, err := pickPlatform(nested.Manifests)
		if err != nil {
			return nil, fmt.Errorf("image %q: index %s: %w", ref, desc.Digest, err)
		}
		desc = next
	}
	img := &Image{Descriptor: desc}
	if err := l.readImage(img); err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	return img, nil
}

func (l *Layout) readImage(img *Image) error {
	desc := img.Descriptor
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("%s has media type %q: %w", desc.Digest, desc.MediaType, ErrInvalid)
	}
	if err := l.ReadJSON(desc, &img.Manifest); err != nil {
		return err
	}
	m := &img.Manifest
	if m.SchemaVersion != 2 || m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("manifest %s: schema %d, media type %q: %w",
			desc.Digest, m.SchemaVersion, m.MediaType, ErrInvalid)
	}
	if m.Config.MediaType != ocispec.MediaTypeImageConfig {
		return fmt.Errorf("manifest %s: config media type %q: %w", desc.Digest, m.Config.MediaType, ErrInvalid)
	}
	for i, ld := range m.Layers {
		if !LayerMediaType(ld.MediaType) {
			return fmt.Errorf("manifest %s: layer %d: media type %q: %w", desc.Digest, i, ld.MediaType, ErrInvalid)
		}
		if err := ld.Digest.Validate(); err != nil {
			return fmt.Errorf("manifest %s: layer %d: %w: %w", desc.Digest, i, err, ErrInvalid)
		}
	}
	if err := l.ReadJSON(m.Config, &img.Config); err != nil {
		return err
	}
	rootfs := img.Config.RootFS
	if rootfs.Type != "layers" {
		return fmt.Errorf("config %s: rootfs type %q: %w", m.Config.Digest, rootfs.Type, ErrInvalid)
	}
	if len(rootfs.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config %s: %d diff ids for %d layers: %w",
			m.Config.Digest, len(rootfs.DiffIDs), len(m.Layers), ErrInvalid)
	}
	for i, d := range rootfs.DiffIDs {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("config %s: diff id %d: %w: %w", m.Config.Digest, i, err, ErrInvalid)
		}
	}
	return nil
}

// LayerMediaType reports whether t is a layer media type this package
// reads: the OCI tar, tar+gzip and tar+zstd ones.
func LayerMediaType(t string) bool {
	switch t {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd:
		return true
	}
	return false
}

// pickRef chooses the index entry for ref.
func pickRef(idx ocispec.Index, ref string) (ocispec.Descriptor, error) {
	if ref == "" {
		if len(idx.Manifests) != 1 {
			return ocispec.Descriptor{}, fmt.Errorf("index has %d entries (%s); name one: %w",
				len(idx.Manifests), refNames(idx), ErrInvalid)
		}
		return idx.Manifests[0], nil
	}
	var found []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == ref {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("no such reference (index has %s): %w", refNames(idx), ErrNotFound)
	case 1:
		return found[0], nil
	}
	return pickPlatform(found)
}

// pickPlatform chooses among an index's entries the one for this
// machine's platform, or the only one.
func pickPlatform(ds []ocispec.Descriptor) (ocispec.Descriptor, error) {
	if len(ds) == 1 {
		return ds[0], nil
	}
	var match []ocispec.Descriptor
	for _, d := range ds {
		if p := d.Platform; p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
			match = append(match, d)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%d entries, %d for linux/%s: %w",
		len(ds), len(match), runtime.GOARCH, ErrInvalid)
}

func refNames(idx ocispec.Index) string {
	var names []string
	for _, d := range idx.Manifests {
		if n := d.Annotations[ocispec.AnnotationRefName]; n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no named references"
	}
	return "references " + strings.Join(names, ", ")
}

func checkIndex(idx ocispec.Index) error {
	if idx.SchemaVersion != 2 {
		return fmt.Errorf("schema version %d: %w", idx.SchemaVersion, ErrInvalid)
	}
	if idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return fmt.Errorf("media type %q: %w", idx.MediaType, ErrInvalid)
	}
	for i, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return fmt.Errorf("entry %d: %w: %w", i, err, ErrInvalid)
		}
	}
	return nil
}
