package zlayer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/zlayer/zlayer/internal/fastsha"
)

// zstdMaxWindow bounds the window a zstd layer may ask for, and so the
// decoder's memory: 128 MiB admits the streams of `zstd --long`.
const zstdMaxWindow = 128 << 20

// blobBufferSize is the read-ahead on the caller's reader.
const blobBufferSize = 256 << 10

// layerStream reads a layer blob: it counts and hashes the blob, finds its
// compression, and counts and hashes the tar inside. All that happens in
// the goroutine of ahead; the tar reader reads the result through eoa.
type layerStream struct {
	blob  hashReader // the caller's reader
	br    *bufio.Reader
	comp  Compression
	gz    *gzip.Reader
	zs    *zstd.Decoder
	tar   hashReader // the decompressed tar
	ahead *readAhead // reads tar
	eoa   eoaReader  // reads ahead
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
	s := &layerStream{blob: hashReader{r: r, h: fastsha.For(blobAlg), alg: blobAlg}}
	s.br = bufio.NewReaderSize(&s.blob, blobBufferSize)
	s.tar = hashReader{r: s.br, h: fastsha.For(tarAlg), alg: tarAlg}

	head, err := s.br.Peek(len(xzMagic))
	if err != nil && err != io.EOF {
		return nil, s.inputErr(err)
	}
	if block, _ := s.br.Peek(tarBlock); isTarHeader(block) {
		// A plain tar whose first name starts like a compressed
		// stream's magic number.
		head = nil
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		s.comp = Gzip
		if s.gz, err = gzip.NewReader(s.br); err != nil {
			return nil, fmt.Errorf("gzip header: %w", s.inputErr(err))
		}
		s.gz.Multistream(false)
		s.tar.r = &gzipMembers{zr: s.gz, br: s.br}
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
	s.ahead = startReadAhead(&s.tar)
	s.eoa.r = s.ahead
	return s, nil
}

// gzipMembers reads a gzip stream of one or more members, as RFC 1952
// allows, from a reader that stops at the end of each. Bytes after the
// last member that do not start another one are refused as what they
// are, where a reader left to find the next member itself would call
// them a corrupt or truncated stream.
type gzipMembers struct {
	zr *gzip.Reader
	br *bufio.Reader
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil // the member's end shows again on the next call
		}
		next, err := g.br.Peek(len(gzipMagic))
		switch {
		case len(next) == 0 && err == io.EOF:
			return 0, io.EOF
		case err != nil && err != io.EOF:
			return 0, err
		case !bytes.Equal(next, gzipMagic):
			return 0, fmt.Errorf("data after the end of the gzip stream: %w", ErrInvalid)
		}
		if err := g.zr.Reset(g.br); err != nil {
			return 0, err
		}
		g.zr.Multistream(false)
	}
}

// isTarHeader reports whether block is a tar header block: its checksum,
// the sum of its bytes with the checksum field read as spaces, matches
// the octal number in that field.
func isTarHeader(block []byte) bool {
	if len(block) < tarBlock {
		return false
	}
	var sum int64
	for i, c := range block[:tarBlock] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	field := bytes.Trim(block[148:156], " \x00")
	if len(field) == 0 {
		return false
	}
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	return sum == want
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
	if _, err := io.Copy(io.Discard, s.ahead); err != nil {
		return s.inputErr(err)
	}
	s.ahead.stop()
	if s.comp != Uncompressed {
		if _, err := io.Copy(io.Discard, s.br); err != nil {
			return s.inputErr(err)
		}
	}
	return nil
}

func (s *layerStream) close() {
	if s.ahead != nil {
		s.ahead.stop()
	}
	if s.zs != nil {
		s.zs.Close()
	}
}

// inputErr classes a read failure: one of the caller's reader is returned
// as it is; any other (a corrupt or truncated stream) wraps ErrInvalid.
func (s *layerStream) inputErr(err error) error {
	if s.ahead != nil {
		s.ahead.stop()
	}
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

// result reports the stream read so far; it stops the read-ahead.
func (s *layerStream) result() ApplyResult {
	if s.ahead != nil {
		s.ahead.stop()
	}
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

// Read-ahead: chunks of this size, this many in flight.
const (
	readAheadChunk  = 512 << 10
	readAheadChunks = 3
)

// readAhead reads its source from a goroutine of its own, ahead of its
// reader, so that decompressing and hashing the layer overlap with
// writing its files. The source is touched by that goroutine only, until
// stop has returned.
type readAhead struct {
	src      io.Reader
	full     chan *chunk
	free     chan *chunk
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	cur *chunk // being read
	err error  // what ended the stream, once its data is read
}

type chunk struct {
	buf []byte
	n   int   // bytes held
	off int   // bytes read out
	err error // what ended the read that filled it
}

func startReadAhead(src io.Reader) *readAhead {
	ra := &readAhead{
		src:  src,
		full: make(chan *chunk, readAheadChunks),
		free: make(chan *chunk, readAheadChunks),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readAheadChunks {
		ra.free <- &chunk{buf: make([]byte, readAheadChunk)}
	}
	go ra.run()
	return ra
}

func (ra *readAhead) run() {
	defer close(ra.done)
	for {
		var c *chunk
		select {
		case c = <-ra.free:
		case <-ra.quit:
			return
		}
		c.off = 0
		c.n, c.err = fill(ra.src, c.buf)
		ra.full <- c // never blocks: there are as many places as chunks
		if c.err != nil {
			return
		}
	}
}

// fill reads until buf is full or the source fails or ends.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if ra.cur == nil {
		if ra.err != nil {
			return 0, ra.err
		}
		select {
		case ra.cur = <-ra.full:
		case <-ra.done:
			select {
			case ra.cur = <-ra.full:
			default:
				return 0, errReadAheadStopped
			}
		}
	}
	c := ra.cur
	n := copy(p, c.buf[c.off:c.n])
	c.off += n
	if c.off == c.n {
		ra.cur = nil
		if c.err != nil {
			ra.err = c.err
			if n == 0 {
				return 0, c.err
			}
		} else {
			ra.free <- c
		}
	}
	return n, nil
}

var errReadAheadStopped = errors.New("read-ahead stopped")

// stop ends the goroutine, after the read it may be in, and waits for it.
func (ra *readAhead) stop() {
	ra.stopOnce.Do(func() { close(ra.quit) })
	<-ra.done
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
