package zlayer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/zlayer/zlayer/internal/ctxio"
	"github.com/zlayer/zlayer/internal/fastsha"
	"golang.org/x/sys/unix"
)

// diffOp names the operation in the errors of WriteChanges and DiffDirs.
const diffOp = "write layer diff"

// DiffOptions tunes [WriteChanges] and [DiffDirs]. The zero value writes
// an uncompressed layer quietly.
type DiffOptions struct {
	// Compression of the written stream.
	Compression Compression

	// Progress, when set, is called after each entry is written, from
	// the goroutine that called WriteChanges.
	Progress func(DiffProgress)

	// Logger receives a few debug records: what was compared and the
	// totals, and the number of sockets left out. Nil is quiet.
	Logger *slog.Logger
}

// DiffProgress reports how far a layer diff has come.
type DiffProgress struct {
	Entries int64  // tar entries written so far, whiteouts included
	Bytes   int64  // uncompressed tar bytes written so far
	Path    string // the path of the last entry written
}

// DiffResult describes a written layer.
type DiffResult struct {
	// Descriptor gives the media type, digest (sha256) and size of the
	// bytes written to w.
	Descriptor ocispec.Descriptor
	// DiffID is the sha256 digest of the uncompressed tar.
	DiffID digest.Digest
	// Entries is the number of tar entries, whiteouts included.
	Entries int64
}

// DiffDirs writes the OCI layer that turns the tree lower into the tree
// upper: [WriteChanges] over the changes [WalkChanges] finds. lower is ""
// for a base layer.
func DiffDirs(ctx context.Context, w io.Writer, lower, upper string,
	opts *DiffOptions) (DiffResult, error) {
	var changes iter.Seq2[Change, error]
	if lower != "" {
		changes = WalkChanges(ctx, lower, upper)
	}
	return WriteChanges(ctx, w, lower, upper, changes, opts)
}

// WriteChanges writes to w the OCI layer (an image-spec changeset tar,
// compressed as opts says) that turns the tree lower into the tree upper,
// given the paths that changed between them. lower is the parent layer's
// tree, "" for a base layer; upper is the layer's. Both are read-only
// snapshots in the intended use: the trees must not change while the
// layer is written.
//
// changes may come in any order and hold duplicates, stale paths and
// renames: its kinds are hints and every path is checked in both trees
// (see the plan type for the rules). For a base layer, changes is not
// read: every entry of upper is written.
//
// The layer holds, for every changed path that exists in upper, a full
// entry with content and metadata (a change of mode, owner or extended
// attributes alone gives a full entry too), and for every path removed, a
// ".wh.NAME" whiteout. A directory new in upper, or renamed, comes with
// its whole subtree. The root directory is never written. Sockets are
// left out. A file with several links is written once, at the first of
// its names in the layer, and its other names, including names in lower
// that did not change, as hard links to it. A name that begins with ".wh."
// is refused with an error wrapping [ErrInvalid].
//
// The tar is the same bytes for the same trees: entries are sorted by path,
// a directory before what it holds and, in each directory, whiteouts
// before the other entries; headers use the PAX format with numeric owners
// and no user or group names; modification times keep their nanoseconds
// (a PAX record where they are not whole seconds), so a layer rebuilt from
// its diff has the same times; no access or change times; extended
// attributes are SCHILY.xattr records, sorted. Compressed output is the same bytes for the
// same tar and library version.
//
// Everything is done in one pass: the tar is compressed and both digests
// computed as it is written, in stages that run side by side (reading the
// files; the DiffID's digest; the compressor, the blob's digest and w), so
// the work spreads over up to three CPUs. w is written one write at a
// time, from a goroutine WriteChanges starts (and for a compressor's last
// bytes from the calling one), and never after WriteChanges returns; after
// a failure, what was still queued for w is dropped. A panic in w is
// raised again in the caller's goroutine.
// Memory grows with the number of changes and of multiply-linked files,
// not with the size of the layer (the stages hold 1 MiB each). Upper is read
// through descriptors opened with O_NOFOLLOW below its root, so a symlink in
// the layer cannot make the writer read outside it.
//
// On error, w may have received part of a layer; the result is then zero.
func WriteChanges(ctx context.Context, w io.Writer, lower, upper string,
	changes iter.Seq2[Change, error], opts *DiffOptions) (DiffResult, error) {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if o.Compression != Uncompressed && o.Compression != Gzip && o.Compression != Zstd {
		return DiffResult{}, opErr(diffOp, upper,
			fmt.Errorf("%w: compression %v", ErrInvalid, o.Compression))
	}

	up, err := openTree(upper)
	if err != nil {
		return DiffResult{}, opErr(diffOp, upper, err)
	}
	defer up.close()

	var pl *plan
	if lower != "" {
		low, err := openTree(lower)
		if err != nil {
			return DiffResult{}, opErr(diffOp, lower, err)
		}
		defer low.close()
		pl = newPlan(ctx, low, up)
		if err := pl.build(changes); err != nil {
			return DiffResult{}, diffErr(upper, err)
		}
		logger.Debug("layer diff planned", "lower", lower, "upper", upper,
			"changes", pl.listed)
	}

	res, ew, err := writeLayer(ctx, w, up, pl, &o)
	if err != nil {
		return DiffResult{}, diffErr(upper, err)
	}
	if ew.sockets > 0 {
		logger.Debug("sockets left out of the layer", "upper", upper, "count", ew.sockets)
	}
	logger.Debug("layer diff written", "upper", upper, "entries", res.Entries,
		"digest", res.Descriptor.Digest, "diff_id", res.DiffID)
	return res, nil
}

// diffErr gives err the form of the package's errors, unless it has it.
func diffErr(upper string, err error) error {
	if _, ok := errors.AsType[*Error](err); ok {
		return err
	}
	return opErr(diffOp, upper, err)
}

// writeLayer writes the tar of pl, or of all of upper when pl is nil,
// through the compressor and the digests.
func writeLayer(ctx context.Context, w io.Writer, up *tree, pl *plan,
	o *DiffOptions) (DiffResult, *entryWriter, error) {
	out, err := newLayerOutput(w, o.Compression)
	if err != nil {
		return DiffResult{}, nil, err
	}
	// Ends the stages when a panic (in Progress, say) skips the close
	// below; after it, a no-op.
	defer out.close(false)
	ew := &entryWriter{
		ctx:      ctx,
		tw:       tar.NewWriter(out.tar),
		upper:    up,
		links:    map[fileID]string{},
		progress: o.Progress,
		out:      out,
	}
	if pl == nil {
		err = ew.tree("")
	} else {
		err = pl.write(ew)
	}
	if err == nil {
		err = ew.tw.Close()
	}
	if cerr := out.close(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		return DiffResult{}, ew, err
	}
	return DiffResult{
		Descriptor: ocispec.Descriptor{
			MediaType: o.Compression.MediaType(),
			Digest:    digest.NewDigest(digest.SHA256, out.blobHash),
			Size:      out.blobSize.n,
		},
		DiffID:  digest.NewDigest(digest.SHA256, out.tarHash),
		Entries: ew.entries,
	}, ew, nil
}

// build reads the change list and settles the plan.
func (p *plan) build(changes iter.Seq2[Change, error]) error {
	if changes != nil {
		if err := p.add(changes); err != nil {
			return err
		}
	}
	if err := p.resolve(); err != nil {
		return err
	}
	return p.completeLinks()
}

// write writes the plan's entries in layer order.
func (p *plan) write(ew *entryWriter) error {
	return p.writeDir(ew, p.root, "")
}

func (p *plan) writeDir(ew *entryWriter, n *planNode, dir string) error {
	names := slices.Sorted(maps.Keys(n.children))
	for _, name := range names {
		if n.children[name].whiteout {
			if err := ew.whiteout(join(dir, name)); err != nil {
				return err
			}
		}
	}
	for _, name := range names {
		c, rel := n.children[name], join(dir, name)
		switch {
		case c.emit:
			if _, err := ew.entry(rel); err != nil {
				return err
			}
			if c.newTree {
				if err := ew.tree(rel); err != nil {
					return err
				}
			} else if err := p.writeDir(ew, c, rel); err != nil {
				return err
			}
		case !c.touched:
			if err := p.writeDir(ew, c, rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// layerOutput is the pipeline below the tar writer, in stages that run
// side by side: the tar goes to the DiffID's digest and, uncompressed, on
// to the caller's writer; compressed, to a third stage that compresses it
// and hands the blob to its digest and the caller's writer.
type layerOutput struct {
	tar      *writeBehind // the tar writer's end
	blob     *writeBehind // the compressor's end; nil when uncompressed
	comp     io.WriteCloser
	out      gate // the caller's writer
	tarHash  hash.Hash
	blobHash hash.Hash
	blobSize counter
	closed   bool
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// gate passes writes on to w until it is shut, and drops them after.
type gate struct {
	w    io.Writer
	shut bool
}

func (g *gate) Write(p []byte) (int, error) {
	if g.shut {
		return len(p), nil
	}
	return g.w.Write(p)
}

func newLayerOutput(w io.Writer, c Compression) (*layerOutput, error) {
	o := &layerOutput{tarHash: fastsha.New(), out: gate{w: w}}
	if c == Uncompressed {
		// The blob is the tar: one digest serves for both.
		o.blobHash = o.tarHash
		o.tar = newWriteBehind(io.MultiWriter(&o.out, o.tarHash, &o.blobSize))
		return o, nil
	}
	o.blobHash = fastsha.New()
	blob := io.MultiWriter(&o.out, o.blobHash, &o.blobSize)
	switch c {
	case Gzip:
		o.comp = gzip.NewWriter(blob)
	case Zstd:
		// A fixed concurrency: the encoder's output is the same for
		// the same input only under the same options.
		zw, err := zstd.NewWriter(blob, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		o.comp = zw
	default:
		return nil, fmt.Errorf("%w: compression %v", ErrInvalid, c)
	}
	o.blob = newWriteBehind(o.comp)
	o.tar = newWriteBehind(io.MultiWriter(o.blob, o.tarHash))
	return o, nil
}

// close ends the stages in order. With flush, everything written goes out
// and the compressor writes its end; without, as after a failure, the
// caller's writer gets nothing more. A panic in a stage (in the caller's
// writer, say) is raised again here. Closing again does nothing.
func (o *layerOutput) close(flush bool) error {
	if o.closed {
		return nil
	}
	o.closed = true
	err := o.tar.close(flush)
	if o.blob != nil {
		if berr := o.blob.close(flush && err == nil); err == nil {
			err = berr
		}
	}
	if err != nil || !flush {
		o.out.shut = true
	}
	for _, st := range []*writeBehind{o.tar, o.blob} {
		if st != nil && st.panic != nil {
			panic(st.panic)
		}
	}
	if o.comp != nil {
		// Closed after a failure too: the zstd encoder holds resources
		// until then.
		if cerr := o.comp.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// entryWriter writes tar entries read from upper.
type entryWriter struct {
	ctx      context.Context
	tw       *tar.Writer
	upper    *tree
	links    map[fileID]string // first written name of multiply-linked inodes
	progress func(DiffProgress)
	out      *layerOutput

	buf     []byte
	entries int64
	sockets int
}

// copyBuffer is the read size for file content.
const copyBuffer = 256 << 10

// epoch is the time of whiteout entries, which stand for no file.
var epoch = time.Unix(0, 0)

func (ew *entryWriter) whiteout(rel string) error {
	dir, base := splitRel(rel)
	name := join(dir, whiteoutPrefix+base)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
	if err := ew.tw.WriteHeader(hdr); err != nil {
		return opErr(diffOp, ew.upper.path(rel), err)
	}
	ew.done(name)
	return nil
}

func (ew *entryWriter) done(rel string) {
	ew.entries++
	if ew.progress != nil {
		ew.progress(DiffProgress{
			Entries: ew.entries,
			Bytes:   ew.out.tar.n,
			Path:    rel,
		})
	}
}

// tree writes everything below the directory dir of upper.
func (ew *entryWriter) tree(dir string) error {
	names, err := ew.upper.names(dir)
	if err != nil {
		return opErr(diffOp, ew.upper.path(dir), err)
	}
	for _, name := range names {
		rel := join(dir, name)
		if err := checkName(rel); err != nil {
			return opErr(diffOp, ew.upper.path(rel), err)
		}
		isDir, err := ew.entry(rel)
		if err != nil {
			return err
		}
		if isDir {
			if err := ew.tree(rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// entry writes the entry of rel as upper has it, and tells whether it was
// a directory.
func (ew *entryWriter) entry(rel string) (isDir bool, err error) {
	if err := ew.ctx.Err(); err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := ew.upper.lstat(rel, &st); err != nil {
		return false, opErr(diffOp, ew.upper.path(rel), err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		ew.sockets++
		return false, nil
	}

	// A regular file is opened first: its descriptor serves for the
	// extended attributes as well as the content.
	var f *os.File
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		if f, err = ew.upper.open(rel, &st); err != nil {
			return false, opErr(diffOp, ew.upper.path(rel), err)
		}
		defer f.Close()
	}
	hdr, err := ew.header(rel, &st, f)
	if err == nil {
		err = ew.tw.WriteHeader(hdr)
	}
	if err == nil && hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		err = ew.content(f, st.Size)
	}
	if err != nil {
		return false, opErr(diffOp, ew.upper.path(rel), err)
	}
	ew.done(rel)
	return hdr.Typeflag == tar.TypeDir, nil
}

// header describes rel for the tar; for a later name of a multiply-linked
// inode, as a hard link to the first. f is the open file of a regular
// file, nil for other types.
func (ew *entryWriter) header(rel string, st *unix.Stat_t, f *os.File) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	if multiLinked(st.Mode, uint64(st.Nlink)) {
		id := idOf(st)
		if first, ok := ew.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return hdr, nil
		}
		ew.links[id] = rel
	}

	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		target, err := ew.upper.readlink(rel)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%w: file type %#o", ErrInvalid, st.Mode&unix.S_IFMT)
	}

	var xs []xattr
	var err error
	if f != nil {
		xs, err = fxattrs(f)
	} else {
		xs, err = ew.upper.xattrs(rel)
	}
	if err != nil {
		return nil, err
	}
	if len(xs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(xs))
		for _, x := range xs {
			hdr.PAXRecords["SCHILY.xattr."+x.name] = x.value
		}
	}
	return hdr, nil
}

// content copies a regular file's bytes into the tar: exactly the size its
// header announced, or an error if the file is shorter now.
func (ew *entryWriter) content(f *os.File, size int64) error {
	if ew.buf == nil {
		ew.buf = make([]byte, copyBuffer)
	}
	// The struct hides the tar writer's ReadFrom, which would copy through
	// a small buffer of its own.
	n, err := io.CopyBuffer(struct{ io.Writer }{ew.tw},
		io.LimitReader(ctxio.Reader(ew.ctx, f), size), ew.buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("file shrank while being read: %d of %d bytes", n, size)
	}
	return nil
}
