package ocilayout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/zlayer/zlayer/internal/ctxio"
	"github.com/zlayer/zlayer/internal/fastsha"
)

// OpenBlob opens the blob that desc describes. Its reader checks the
// content against desc as it streams: past desc.Size bytes, or at the end
// of a blob that is short or whose digest differs, Read returns an error
// wrapping [ErrDigestMismatch] instead of more data or io.EOF. A caller
// that reads to io.EOF has read exactly the content desc names.
func (l *Layout) OpenBlob(desc ocispec.Descriptor) (io.ReadCloser, error) {
	p, err := l.blobPath(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	if !desc.Digest.Algorithm().Available() {
		return nil, fmt.Errorf("open blob %s: unsupported algorithm: %w", desc.Digest, ErrInvalid)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("open blob %s: size %d: %w", desc.Digest, desc.Size, ErrInvalid)
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", desc.Digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	return &blobReader{f: f, desc: desc, h: fastsha.For(desc.Digest.Algorithm())}, nil
}

// blobReader verifies a blob's size and digest as it is read.
type blobReader struct {
	f    *os.File
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64
	err  error // sticky: the mismatch, once found
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	// Read one byte past the declared size, to see a blob that is longer.
	if left := r.desc.Size + 1 - r.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := r.f.Read(p)
	r.n += int64(n)
	if r.n > r.desc.Size {
		r.err = r.mismatch(fmt.Sprintf("more than %d bytes", r.desc.Size))
		return 0, r.err
	}
	r.h.Write(p[:n])
	if err == io.EOF {
		if r.n != r.desc.Size {
			r.err = r.mismatch(fmt.Sprintf("%d bytes, descriptor says %d", r.n, r.desc.Size))
			return n, r.err
		}
		if got := digest.NewDigest(r.desc.Digest.Algorithm(), r.h); got != r.desc.Digest {
			r.err = r.mismatch("content is " + got.String())
			return n, r.err
		}
		r.err = io.EOF
	}
	return n, err
}

func (r *blobReader) mismatch(what string) error {
	return fmt.Errorf("blob %s: %s: %w", r.desc.Digest, what, ErrDigestMismatch)
}

func (r *blobReader) Close() error { return r.f.Close() }

// ReadJSON reads and verifies the blob desc describes and decodes it into
// v. Blobs over 8 MiB are refused.
func (l *Layout) ReadJSON(desc ocispec.Descriptor, v any) error {
	if desc.Size > maxJSON {
		return fmt.Errorf("read %s: %d bytes, more than %d: %w", desc.Digest, desc.Size, maxJSON, ErrInvalid)
	}
	rc, err := l.OpenBlob(desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s %s: %w: %w", desc.MediaType, desc.Digest, err, ErrInvalid)
	}
	return nil
}

// HasBlob reports whether the layout holds a blob of desc's digest and
// size. It does not read the content.
func (l *Layout) HasBlob(desc ocispec.Descriptor) bool {
	p, err := l.blobPath(desc.Digest)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == desc.Size
}

// BlobWriter streams one new sha256 blob into a layout. Write to it, then
// Commit; Close without Commit drops what was written.
type BlobWriter struct {
	l    *Layout
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a blob, in a temporary file in the layout's folder.
func (l *Layout) NewBlob() (*BlobWriter, error) {
	f, err := os.CreateTemp(l.dir, ".tmp-blob-*")
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &BlobWriter{l: l, f: f, h: fastsha.New()}, nil
}

// Write adds p to the blob.
func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Size returns the bytes written so far.
func (w *BlobWriter) Size() int64 { return w.n }

// Digest returns the digest of what was written so far.
func (w *BlobWriter) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, w.h) }

// Commit makes the content a blob of the layout, named by its digest, and
// returns its descriptor with the given media type. When expected is not
// empty and differs from the content's digest, nothing is kept and the
// error wraps [ErrDigestMismatch]. A blob of the same digest already there
// is kept as it is.
func (w *BlobWriter) Commit(mediaType string, expected digest.Digest) (ocispec.Descriptor, error) {
	if w.done {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob: %w: already committed or closed", ErrInvalid)
	}
	w.done = true
	defer os.Remove(w.f.Name())
	d := w.Digest()
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: w.n}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return desc, fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := w.f.Close(); err != nil {
		return desc, fmt.Errorf("commit blob %s: %w", d, err)
	}
	if expected != "" && expected != d {
		return desc, fmt.Errorf("commit blob: content is %s, expected %s: %w", d, expected, ErrDigestMismatch)
	}
	if w.l.HasBlob(desc) {
		return desc, nil
	}
	p, _ := w.l.blobPath(d)
	if err := os.Chmod(w.f.Name(), 0o644); err != nil {
		return desc, fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := os.Rename(w.f.Name(), p); err != nil {
		return desc, fmt.Errorf("commit blob %s: %w", d, err)
	}
	return desc, nil
}

// Close drops the blob unless it was committed.
func (w *BlobWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Close()
	if rerr := os.Remove(w.f.Name()); err == nil {
		err = rerr
	}
	return err
}

// WriteBlob streams r into a new blob and returns its descriptor. ctx is
// checked between reads.
func (l *Layout) WriteBlob(ctx context.Context, mediaType string, r io.Reader) (ocispec.Descriptor, error) {
	w, err := l.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, ctxio.Reader(ctx, r)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write blob: %w", err)
	}
	return w.Commit(mediaType, "")
}

// WriteJSON writes v as a JSON blob.
func (l *Layout) WriteJSON(mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mediaType, err)
	}
	w, err := l.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write %s: %w", mediaType, err)
	}
	return w.Commit(mediaType, "")
}

// CopyBlob copies the blob desc describes from another layout, verifying
// it on the way, unless this layout holds it already.
func (l *Layout) CopyBlob(ctx context.Context, from *Layout, desc ocispec.Descriptor) error {
	if l.HasBlob(desc) {
		return nil
	}
	rc, err := from.OpenBlob(desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	w, err := l.NewBlob()
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, ctxio.Reader(ctx, rc)); err != nil {
		return fmt.Errorf("copy blob %s: %w", desc.Digest, err)
	}
	_, err = w.Commit(desc.MediaType, desc.Digest)
	return err
}
