package zlayer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// zstdMaxWindow bounds the window a zstd layer may ask for, and so the
// decoder's memory: 128 MiB admits the streams of `zstd --long`.
const zstdMaxWindow = 128 << 20

// blobBufferSize is the read-ahead on the caller's reader.
const blobBufferSize = 256 << 10

// layerStream reads a layer blob: it counts and hashes the blob, finds its
// compression, and counts and hashes the tar inside. The tar reader reads
// it through eoa.
type layerStream struct {
	blob hashReader // the caller's reader
	br   *bufio.Reader
	comp Compression
	gz   *gzip.Reader
	zs   *zstd.Decoder
	tar  hashReader // the decompressed tar
	eoa  eoaReader
}

// Leading bytes of the formats a layer may come in.
var (
	gzipMagic     = []byte{0x1f, 0x8b}
	zstdMagic     = []byte{0x28, 0xb5, 0x2f, 0xfd}
	zstdSkipMagic = []byte{0x2a, 0x4d, 0x18} // after a byte 0x50 to 0x5f
	xzMagic       = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	bzip2Magic    = []byte("BZh")
)

func openLayerStream(r io.Reader, blobAlg, tarAlg digest.Algorithm) (*layerStream, error) {
	s := &layerStream{blob: hashReader{r: r, h: blobAlg.Hash(), alg: blobAlg}}
	s.br = bufio.NewReaderSize(&s.blob, blobBufferSize)
	s.tar = hashReader{r: s.br, h: tarAlg.Hash(), alg: tarAlg}
	s.eoa.r = &s.tar

	head, err := s.br.Peek(len(xzMagic))
	if err != nil && err != io.EOF {
		return nil, s.inputErr(err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		s.comp = Gzip
		if s.gz, err = gzip.NewReader(s.br); err != nil {
			return nil, fmt.Errorf("gzip header: %w", s.inputErr(err))
		}
		s.tar.r = s.gz
	case bytes.HasPrefix(head, zstdMagic),
		len(head) >= 4 && head[0]&0xf0 == 0x50 && bytes.Equal(head[1:4], zstdSkipMagic):
		s.comp = Zstd
		s.zs, err = zstd.NewReader(s.br,
			zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
		s.tar.r = s.zs
	case bytes.HasPrefix(head, xzMagic):
		return nil, fmt.Errorf("xz-compressed layers are not supported: %w", ErrInvalid)
	case bytes.HasPrefix(head, bzip2Magic):
		return nil, fmt.Errorf("bzip2-compressed layers are not supported: %w", ErrInvalid)
	case blobAlg == tarAlg:
		// The blob is the tar: hash it once.
		s.blob.h = nil
	}
	return s, nil
}

// next reads the next tar header, watching for the end-of-archive blocks.
// It returns io.EOF only at a proper end; a stream that stops between two
// entries without one is truncated.
func (s *layerStream) next(tr *tar.Reader) (*tar.Header, error) {
	s.eoa.armed = true
	hdr, err := tr.Next()
	s.eoa.armed = false
	switch {
	case err == io.EOF && !s.eoa.zeroEnd:
		return nil, s.inputErr(io.ErrUnexpectedEOF)
	case err == io.EOF:
		return nil, io.EOF
	case err != nil:
		return nil, s.inputErr(err)
	}
	return hdr, nil
}

// finish reads the stream to its end: the tar's trailing blocks, then the
// decompressor's end (where gzip keeps its checksum), then whatever of the
// blob the decompressor left.
func (s *layerStream) finish() error {
	if _, err := io.Copy(io.Discard, &s.tar); err != nil {
		return s.inputErr(err)
	}
	if s.comp != Uncompressed {
		if _, err := io.Copy(io.Discard, s.br); err != nil {
			return s.inputErr(err)
		}
	}
	return nil
}

func (s *layerStream) close() {
	if s.zs != nil {
		s.zs.Close()
	}
}

// inputErr classes a read failure: one of the caller's reader is returned
// as it is; any other (a corrupt or truncated stream) wraps ErrInvalid.
func (s *layerStream) inputErr(err error) error {
	switch {
	case s.blob.err != nil:
		return fmt.Errorf("read layer: %w", s.blob.err)
	case errors.Is(err, ErrInvalid):
		return err
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated %s stream: %w", s.kind(), ErrInvalid)
	}
	return fmt.Errorf("%s stream: %w: %w", s.kind(), err, ErrInvalid)
}

func (s *layerStream) kind() string {
	if s.comp == Uncompressed {
		return "tar"
	}
	return s.comp.String()
}

func (s *layerStream) result() ApplyResult {
	res := ApplyResult{
		DiffID:           s.tar.digest(),
		Digest:           s.blob.digest(),
		Compression:      s.comp,
		MediaType:        s.comp.MediaType(),
		Size:             s.blob.n,
		UncompressedSize: s.tar.n,
	}
	if s.blob.h == nil {
		res.Digest = res.DiffID
	}
	return res
}

// hashReader counts and hashes what is read through it and keeps the
// first error other than io.EOF.
type hashReader struct {
	r   io.Reader
	h   hash.Hash // nil: count only
	alg digest.Algorithm
	n   int64
	err error
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.n += int64(n)
		if h.h != nil {
			h.h.Write(p[:n])
		}
	}
	if err != nil && err != io.EOF && h.err == nil {
		h.err = err
	}
	return n, err
}

func (h *hashReader) digest() digest.Digest {
	if h.h == nil {
		return ""
	}
	return digest.NewDigest(h.alg, h.h)
}

// tarBlock is the tar format's unit: headers and padding fill whole blocks.
const tarBlock = 512

// eoaReader tells whether the tar reader's last block was a zero block,
// which Go's reader does not report: it returns io.EOF alike for a proper
// end of archive and for a stream cut between two entries. Only blocks
// read while armed (during Next, when headers are read) can count.
type eoaReader struct {
	r       io.Reader
	off     int64
	armed   bool
	curZero bool // the current block so far is zero and read while armed
	zeroEnd bool // the last complete block was
}

func (e *eoaReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if n == 0 {
		return n, err
	}
	if !e.armed {
		e.off += int64(n)
		e.curZero, e.zeroEnd = false, false
		return n, err
	}
	for b := p[:n]; len(b) > 0; {
		in := int(e.off % tarBlock)
		k := min(len(b), tarBlock-in)
		e.curZero = (in == 0 || e.curZero) && allZero(b[:k])
		e.off += int64(k)
		if e.off%tarBlock == 0 {
			e.zeroEnd = e.curZero
		}
		b = b[k:]
	}
	return n, err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
