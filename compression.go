package zlayer

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression names how a layer tar is compressed.
type Compression int

const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// MediaType returns the OCI media type of a layer with this compression.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	default:
		return ocispec.MediaTypeImageLayer
	}
}

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Uncompressed:
		return "none"
	default:
		return "unknown"
	}
}
