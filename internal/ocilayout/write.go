package ocilayout

import (
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AppendLayer returns a copy of img with one more layer on top: layer's
// descriptor at the end of the manifest's layers, diffID at the end of the
// config's rootfs.diff_ids and h at the end of its history. The copy has
// no manifest descriptor until [Layout.WriteImage] writes it.
func AppendLayer(img *Image, layer ocispec.Descriptor, diffID digest.Digest, h ocispec.History) *Image {
	n := &Image{Manifest: img.Manifest, Config: img.Config}
	n.Manifest.Layers = append(slices.Clone(img.Manifest.Layers), layer)
	n.Config.RootFS.DiffIDs = append(slices.Clone(img.Config.RootFS.DiffIDs), diffID)
	n.Config.History = append(slices.Clone(img.Config.History), h)
	return n
}

// WriteImage writes img's config and manifest as blobs and adds the
// manifest to index.json under the name ref, replacing any entry of that
// name. The manifest's config descriptor and img.Descriptor are set to
// what was written. The layer blobs must be in the layout already.
//
// The config is written from the image-spec's types, so fields they do
// not know (such as Docker's container_config) are not carried over.
func (l *Layout) WriteImage(img *Image, ref string) (ocispec.Descriptor, error) {
	for _, ld := range img.Manifest.Layers {
		if !l.HasBlob(ld) {
			return ocispec.Descriptor{}, fmt.Errorf("write image %q: layer %s: %w", ref, ld.Digest, ErrNotFound)
		}
	}
	if n, m := len(img.Config.RootFS.DiffIDs), len(img.Manifest.Layers); n != m {
		return ocispec.Descriptor{}, fmt.Errorf("write image %q: %d diff ids for %d layers: %w", ref, n, m, ErrInvalid)
	}
	cfg, err := l.WriteJSON(ocispec.MediaTypeImageConfig, img.Config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write image %q: %w", ref, err)
	}
	img.Manifest.SchemaVersion = 2
	img.Manifest.MediaType = ocispec.MediaTypeImageManifest
	img.Manifest.Config = cfg
	desc, err := l.WriteJSON(ocispec.MediaTypeImageManifest, img.Manifest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write image %q: %w", ref, err)
	}
	if img.Config.OS != "" {
		desc.Platform = &ocispec.Platform{
			OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant,
		}
	}
	img.Descriptor = desc
	if err := l.Tag(desc, ref); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// Tag adds desc to index.json under the name ref (its
// org.opencontainers.image.ref.name annotation), replacing any entry of
// that name; an empty ref adds desc without a name.
func (l *Layout) Tag(desc ocispec.Descriptor, ref string) error {
	idx, err := l.Index()
	if err != nil {
		return err
	}
	if ref != "" {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return d.Annotations[ocispec.AnnotationRefName] == ref
		})
		ann := map[string]string{ocispec.AnnotationRefName: ref}
		for k, v := range desc.Annotations {
			if k != ocispec.AnnotationRefName {
				ann[k] = v
			}
		}
		desc.Annotations = ann
	}
	idx.Manifests = append(idx.Manifests, desc)
	return l.writeIndex(idx)
}

func (l *Layout) writeIndex(idx ocispec.Index) error {
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	if err := l.replaceJSON(ocispec.ImageIndexFile, idx); err != nil {
		return fmt.Errorf("write index of %q: %w", l.dir, err)
	}
	return nil
}
