// Package ocilayout reads and writes OCI image layouts: a folder holding
// the oci-layout marker, index.json and content-addressed blobs under
// blobs/ALG/ENCODED, as the OCI image-spec describes them.
//
// Reading verifies as it goes: every blob is checked against its
// descriptor's size and digest while it streams, and a reader reports a
// mismatch, wrapping [ErrDigestMismatch], in place of the end of the blob.
// Writing streams each blob to a temporary file beside blobs/, digests it
// on the way, and renames it into place, so a blob name never holds
// partial content. index.json is replaced the same way.
//
// A Layout does no locking: one writer at a time per folder.
package ocilayout

import (
	_ "crypto/sha256" // registers the algorithms go-digest computes:
	_ "crypto/sha512" // the image spec's sha256 and sha512
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Sentinel errors, wrapped by the errors of this package; test with
// errors.Is.
var (
	// ErrNotFound reports a missing reference, blob or layout file.
	ErrNotFound = errors.New("not found")

	// ErrInvalid reports a layout, index, manifest or config that breaks
	// the image-spec or that this package does not handle.
	ErrInvalid = errors.New("invalid")

	// ErrDigestMismatch reports content whose digest or size differs from
	// the descriptor it was read or written for.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// maxJSON bounds the index, manifests and configs read into memory.
const maxJSON = 8 << 20

// Layout is an OCI image layout folder.
type Layout struct {
	dir string
}

// Open opens the layout in dir, checking its oci-layout marker.
func Open(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open layout %q: no %s file: %w", dir, ocispec.ImageLayoutFile, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open layout %q: %w", dir, err)
	}
	var marker ocispec.ImageLayout
	if err := json.Unmarshal(b, &marker); err != nil {
		return nil, fmt.Errorf("open layout %q: %s: %w: %w", dir, ocispec.ImageLayoutFile, err, ErrInvalid)
	}
	if marker.Version != ocispec.ImageLayoutVersion {
		return nil, fmt.Errorf("open layout %q: layout version %q, want %q: %w",
			dir, marker.Version, ocispec.ImageLayoutVersion, ErrInvalid)
	}
	return &Layout{dir: dir}, nil
}

// Create makes a layout in dir: the folder, its oci-layout marker, an
// empty index and the sha256 blob folder. A folder that holds a layout
// already is opened as it is.
func Create(dir string) (*Layout, error) {
	if l, err := Open(dir); err == nil {
		return l, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, ocispec.ImageBlobsDir, string(digest.SHA256)), 0o755); err != nil {
		return nil, fmt.Errorf("create layout %q: %w", dir, err)
	}
	l := &Layout{dir: dir}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if err := l.writeIndex(idx); err != nil {
		return nil, err
	}
	marker := ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}
	if err := l.replaceJSON(ocispec.ImageLayoutFile, marker); err != nil {
		return nil, fmt.Errorf("create layout %q: %w", dir, err)
	}
	return l, nil
}

// Dir returns the layout's folder.
func (l *Layout) Dir() string { return l.dir }

// Index reads index.json.
func (l *Layout) Index() (ocispec.Index, error) {
	var idx ocispec.Index
	p := filepath.Join(l.dir, ocispec.ImageIndexFile)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return idx, fmt.Errorf("read index %q: %w", p, ErrNotFound)
	}
	if err != nil {
		return idx, fmt.Errorf("read index: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return idx, fmt.Errorf("read index %q: %w", p, err)
	}
	if len(b) > maxJSON {
		return idx, fmt.Errorf("read index %q: more than %d bytes: %w", p, maxJSON, ErrInvalid)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("read index %q: %w: %w", p, err, ErrInvalid)
	}
	if err := checkIndex(idx); err != nil {
		return idx, fmt.Errorf("read index %q: %w", p, err)
	}
	return idx, nil
}

// blobPath returns where the blob with digest d lives, refusing digests
// that are malformed or of an algorithm go-digest cannot compute (their
// encoded part could otherwise name any path).
func (l *Layout) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %w: %w", d, err, ErrInvalid)
	}
	return filepath.Join(l.dir, ocispec.ImageBlobsDir, string(d.Algorithm()), d.Encoded()), nil
}

// replaceJSON writes v as JSON to the layout file name through a
// temporary file and a rename, so readers see the old or the new file.
func (l *Layout) replaceJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(l.dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(l.dir, name))
}
