package zlayer

import (
	"archive/tar"
	"context"
	_ "crypto/sha512" // lets go-digest compute sha512 digests
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/zlayer/zlayer/internal/fastsha"
)

// ApplyOptions tunes [ApplyDir]. The zero value applies any layer without
// checks beyond the format's own.
type ApplyOptions struct {
	// ExpectedDiffID, when set, is compared with the digest of the
	// uncompressed tar. Its algorithm is the one computed; sha256 when
	// unset.
	ExpectedDiffID digest.Digest

	// ExpectedDigest, when set, is compared with the digest of the stream
	// as given (the blob). Its algorithm is the one computed; sha256 when
	// unset.
	ExpectedDigest digest.Digest

	// AvailableBytes, when positive, is the space the layer may use: a
	// regular file whose declared size, added to the declared sizes of the
	// files written before it, exceeds it is refused before it is created,
	// with an error wrapping [syscall.ENOSPC]. Sparse files count at their
	// full logical size. Go's tar reader hands a sparse file's holes over
	// as zeros, which ApplyDir reads to find them again, so a sparse
	// entry takes time in its logical size: this limit bounds that too.
	AvailableBytes int64

	// Progress, when set, is called after each entry and every 8 MiB
	// within a large file, from the goroutine that called ApplyDir.
	Progress func(ApplyProgress)

	// Logger receives a few debug records: the compression found, the
	// SHA-256 code chosen, the resolver used, and the overlay xattrs
	// dropped. Nil is quiet.
	Logger *slog.Logger
}

// ApplyProgress reports how far [ApplyDir] has come.
type ApplyProgress struct {
	Entries int64  // tar entries applied so far
	Bytes   int64  // uncompressed tar bytes read so far
	Path    string // the name of the entry being or last applied
}

// ApplyResult describes a layer that [ApplyDir] applied.
type ApplyResult struct {
	DiffID           digest.Digest // digest of the uncompressed tar
	Digest           digest.Digest // digest of the stream as given
	Compression      Compression   // found from the stream's first bytes
	MediaType        string        // the OCI media type for Compression
	Size             int64         // bytes of the stream as given
	UncompressedSize int64         // bytes of the uncompressed tar
	Entries          int64         // tar entries applied, whiteouts included
}

// applyOp names the operation in the errors of ApplyDir.
const applyOp = "apply"

// progressEvery is how many content bytes pass between two Progress calls
// within one file.
const progressEvery = 8 << 20

// ApplyDir applies an OCI layer, a tar stream plain or compressed with
// gzip or zstd (recognised by its first bytes), onto the directory dir,
// which holds the layers below it, with the changeset semantics of the OCI
// image-spec: entries are added or replace what is there (a directory over
// a directory keeps its contents and takes the new attributes; anything
// else is removed first, never written through), ".wh.NAME" entries delete
// NAME from the layers below and ".wh..wh..opq" hides everything below in
// its directory, wherever it stands in the tar, while keeping what this
// layer adds there. Whiteouts never act on the layer's own entries, also
// when one of the two names reaches the directory through a symbolic link
// (the directory's own name is then read from /proc/self/fd), and never
// appear in dir.
//
// Every path is resolved beneath dir, and nothing outside dir is created,
// changed or removed. An entry whose name is absolute or has a ".."
// component, a hard link whose target is outside the layer, missing or a
// directory, and an entry whose parent path crosses a symbolic link that
// is absolute or leaves dir are refused. Symbolic links inside dir are
// followed in parent paths, as Docker and containerd do; unlike them,
// ApplyDir refuses an absolute symbolic link there instead of reading it
// relative to dir, so a layer that writes "var/run/x" over a lower
// "var/run -> /run" fails.
//
// Regular files (sparse ones stay sparse), hard links, symbolic links,
// directories, character and block devices and FIFOs are created with
// their numeric owner, mode (setuid, setgid and sticky included),
// modification time and the extended attributes of SCHILY.xattr PAX
// records; overlayfs's own xattrs (trusted.overlay. and user.overlay.)
// are dropped, since they would steer an overlay mount. Sockets, GNU multi-volume and dump-dir entries
// and unknown types are refused. A global PAX header is skipped. Parents
// the layer does not list are created with mode 0755, owned by root.
// Directory times are set once all entries are in, on the directories
// still at the path the layer named them by. The process needs the
// capabilities of root (chown, mknod, setting trusted and security xattrs,
// writing into read-only directories).
//
// Once the tar ends, the rest of the stream is read to its end, so a
// compressed stream's trailer is checked, and the digests are compared
// with the expected ones. A gzip stream may hold several members, one
// after another; anything else after the last one is refused. Errors
// name the entry they concern, in an [*Error] whose Target is the entry's
// name as in the tar, or dir for errors about the whole layer; malformed
// input, a digest mismatch and a refused entry wrap [ErrInvalid].
// Cancelling ctx stops ApplyDir between entries and within large files.
//
// The stream is read, decompressed and hashed in a goroutine of its own,
// ahead of the files being written; it never outlives ApplyDir, which
// waits for a read in progress to end before it returns.
//
// ApplyDir is not atomic: on error, dir holds part of the layer. The
// caller undoes that, as the ZFS layer store does by rolling back to a
// snapshot. Memory stays flat in the size of the layer's contents (about
// 3 MiB of buffers); what grows is a record of each path the layer
// writes, needed for the whiteout rules, and the times of each directory,
// set at the end: about 60 bytes plus the name for each, so a layer of
// 100,000 files peaks near 20 MiB of heap.
func ApplyDir(ctx context.Context, dir string, r io.Reader,
	opts *ApplyOptions) (ApplyResult, error) {
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.check(); err != nil {
		return ApplyResult{}, opErr(applyOp, dir, err)
	}

	s, err := openLayerStream(r, algorithm(o.ExpectedDigest), algorithm(o.ExpectedDiffID))
	if err != nil {
		return ApplyResult{}, opErr(applyOp, dir, err)
	}
	defer s.close()
	o.Logger.Debug("apply layer", "dir", dir, "compression", s.comp,
		"sha256", fastsha.Chosen())

	paths := make(layerPaths)
	tree, err := openLayerTree(dir, paths, o.Logger)
	if err != nil {
		return ApplyResult{}, opErr(applyOp, dir, err)
	}
	defer tree.close()

	a := &applier{opts: &o, stream: s, tree: tree, paths: paths}
	err = a.run(ctx, dir)
	res := s.result()
	res.Entries = a.entries
	if err != nil {
		return res, err
	}
	return res, a.verify(dir, res)
}

func (o *ApplyOptions) check() error {
	for what, d := range map[string]digest.Digest{
		"expected diff id": o.ExpectedDiffID,
		"expected digest":  o.ExpectedDigest,
	} {
		if d == "" {
			continue
		}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%s %q: %w: %w", what, d, err, ErrInvalid)
		}
	}
	return nil
}

// layerTree is the directory a layer is applied to. Every method takes
// a checked entry; none follows a symbolic link in the entry's last
// component, and none leaves the directory.
type layerTree interface {
	// write creates a non-whiteout entry, replacing what is at its path;
	// content is the data of a regular file and nil for other types.
	write(ctx context.Context, e *layerEntry, content io.Reader) error
	// whiteout deletes the lower content at e.hidden beside e.
	whiteout(e *layerEntry) error
	// opaque deletes the lower content in e's directory.
	opaque(e *layerEntry) error
	// finish sets the times of the directories written.
	finish() error
	close()
}

// algorithm is d's algorithm, or sha256 when d is unset.
func algorithm(d digest.Digest) digest.Algorithm {
	if d == "" {
		return digest.Canonical
	}
	return d.Algorithm()
}

// applier holds the state of one ApplyDir call.
type applier struct {
	opts    *ApplyOptions
	stream  *layerStream
	tree    layerTree
	paths   layerPaths
	entries int64
	written int64 // declared bytes of the regular files created
}

// yieldEvery is how many entries the applier writes between two yields to
// Go's scheduler. The applier's goroutine spends most of its time in
// system calls, which do not count as scheduling, so without yields the
// runtime judges it a goroutine that has run too long and sends its
// thread a preemption signal every 10 ms. Under emulation, taking those
// signals between and around the system calls cost over a tenth of the
// time of an apply of small files. A yield costs about one pass of the
// scheduler, small beside the five or more system calls of an entry.
// Entries take about 1.2 ms each under the test bed's emulation, so four
// stay well inside the 10 ms.
const yieldEvery = 4

func (a *applier) run(ctx context.Context, dir string) error {
	tr := tar.NewReader(&a.stream.eoa)
	prev := ""
	for {
		if err := ctx.Err(); err != nil {
			return a.between(dir, prev, "stopped", err)
		}
		hdr, err := a.stream.next(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.between(dir, prev, "read tar header", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := a.entry(ctx, tr, hdr); err != nil {
			return opErr(applyOp, hdr.Name, err)
		}
		a.entries++
		prev = hdr.Name
		a.progress(hdr.Name)
		if a.entries%yieldEvery == 0 {
			runtime.Gosched()
		}
	}
	if err := a.tree.finish(); err != nil {
		return opErr(applyOp, dir, err)
	}
	if err := a.stream.finish(); err != nil {
		return opErr(applyOp, dir, fmt.Errorf("read past the tar's end: %w", err))
	}
	return nil
}

// between makes the error of a failure between two entries: it names the
// entry before, or dir when there was none.
func (a *applier) between(dir, prev, what string, err error) error {
	if prev == "" {
		return opErr(applyOp, dir, fmt.Errorf("%s before the first entry: %w", what, err))
	}
	return opErr(applyOp, prev, fmt.Errorf("%s after this entry: %w", what, err))
}

func (a *applier) progress(name string) {
	if a.opts.Progress != nil {
		a.opts.Progress(ApplyProgress{Entries: a.entries, Bytes: a.stream.eoa.off, Path: name})
	}
}

// entry applies one tar entry; its errors leave the naming to the caller.
func (a *applier) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	e, err := parseEntry(hdr)
	if err != nil {
		return err
	}
	if len(e.dropped) > 0 {
		a.opts.Logger.Debug("apply layer: overlay xattrs dropped",
			"entry", hdr.Name, "xattrs", e.dropped)
	}
	switch e.whiteout {
	case WhiteoutFile:
		err = a.tree.whiteout(e)
	case WhiteoutOpaqueDir:
		err = a.tree.opaque(e)
	default:
		err = a.write(ctx, tr, e)
	}
	if err != nil {
		return err
	}

	// The tar reader would skip what is left of the content itself, but
	// reading it here keeps the end-of-archive check exact.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return fmt.Errorf("skip content: %w", a.stream.inputErr(err))
	}
	return nil
}

func (a *applier) write(ctx context.Context, tr *tar.Reader, e *layerEntry) error {
	if !e.regular() {
		if err := a.tree.write(ctx, e, nil); err != nil {
			return err
		}
		a.paths.add(e.own)
		return nil
	}

	size := e.hdr.Size
	if avail := a.opts.AvailableBytes; avail > 0 && (size > avail || a.written > avail-size) {
		return fmt.Errorf("%d bytes do not fit: %d of %d bytes available are used: %w",
			size, a.written, avail, syscall.ENOSPC)
	}
	cr := &contentReader{ctx: ctx, r: tr, a: a, name: e.hdr.Name}
	err := a.tree.write(ctx, e, cr)
	if cr.err != nil {
		return cr.fail(size)
	}
	if err != nil {
		return err
	}
	a.written += size
	a.paths.add(e.own)
	return nil
}

func (a *applier) verify(dir string, res ApplyResult) error {
	check := func(what string, got, want digest.Digest) error {
		if want == "" || got == want {
			return nil
		}
		return opErr(applyOp, dir,
			fmt.Errorf("%s is %s, expected %s: %w", what, got, want, ErrInvalid))
	}
	if err := check("diff id", res.DiffID, a.opts.ExpectedDiffID); err != nil {
		return err
	}
	return check("digest", res.Digest, a.opts.ExpectedDigest)
}

// contentReader feeds a regular file's content to the tree, checking ctx
// and reporting progress as it goes. It keeps its own error, so that a
// failure to read the layer is told apart from a failure to write.
type contentReader struct {
	ctx  context.Context
	r    io.Reader
	a    *applier
	name string
	n    int64 // bytes read
	last int64 // n at the last progress report
	err  error
}

func (c *contentReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	if c.n-c.last >= progressEvery {
		c.last = c.n
		c.a.progress(c.name)
	}
	return n, err
}

func (c *contentReader) fail(size int64) error {
	switch {
	case c.ctx.Err() != nil && errors.Is(c.err, c.ctx.Err()):
		return fmt.Errorf("stopped after %d of %d bytes: %w", c.n, size, c.err)
	case errors.Is(c.err, io.ErrUnexpectedEOF):
		return fmt.Errorf("layer ends after %d of the entry's %d bytes: %w",
			c.n, size, c.a.stream.inputErr(c.err))
	default:
		return fmt.Errorf("read content: %w", c.a.stream.inputErr(c.err))
	}
}

// layerEntry is a tar entry checked and split for the tree.
type layerEntry struct {
	hdr      *tar.Header
	name     string // cleaned: no ".", "..", empty or trailing parts; "" is the root
	parent   string // name's directory, "" for the root
	base     string // name's last component, "" for the root
	own      string // name with the symbolic links its parents crossed resolved; set by write
	whiteout WhiteoutKind
	hidden   string // for a whiteout, the sibling it deletes
	link     string // for a hard link, its cleaned target
	mode     uint32 // permission bits with setuid, setgid and sticky
	sparse   bool
	xattrs   map[string]string // from SCHILY.xattr records, overlayfs's own dropped
	dropped  []string          // the overlayfs xattrs dropped
}

func (e *layerEntry) regular() bool {
	switch e.hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return true
	}
	return false
}

// parseEntry checks a header and prepares it for the tree. Every refusal
// wraps ErrInvalid.
func parseEntry(hdr *tar.Header) (*layerEntry, error) {
	if err := checkHeader(hdr); err != nil {
		return nil, err
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return nil, err
	}
	e := &layerEntry{hdr: hdr, name: name, mode: uint32(hdr.Mode & 0o7777)}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		e.parent, e.base = name[:i], name[i+1:]
	} else {
		e.base = name
	}
	if strings.Contains(e.parent, WhiteoutPrefix) {
		for _, c := range strings.Split(e.parent, "/") {
			if strings.HasPrefix(c, WhiteoutPrefix) {
				return nil, fmt.Errorf("whiteout %q used as a directory: %w", c, ErrInvalid)
			}
		}
	}
	if e.whiteout, e.hidden, err = ParseWhiteout(e.base); err != nil {
		return nil, err
	}
	if e.whiteout != NotWhiteout {
		return e, nil
	}

	switch hdr.Typeflag {
	case tar.TypeLink:
		if e.link, err = cleanName(hdr.Linkname); err != nil {
			return nil, fmt.Errorf("hard link target %q is outside the layer: %w",
				hdr.Linkname, ErrInvalid)
		}
		if e.link == "" {
			return nil, fmt.Errorf("hard link to the root: %w", ErrInvalid)
		}
		if e.link == e.name {
			return nil, fmt.Errorf("hard link to itself: %w", ErrInvalid)
		}
		if strings.HasPrefix(e.link, e.name+"/") {
			// Clearing the link's name would delete its target first.
			return nil, fmt.Errorf("hard link target %q is below the link: %w",
				hdr.Linkname, ErrInvalid)
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return nil, fmt.Errorf("symbolic link with an empty target: %w", ErrInvalid)
		}
	}
	if name == "" && hdr.Typeflag != tar.TypeDir {
		return nil, fmt.Errorf("the root is not a directory: %w", ErrInvalid)
	}
	e.sparse = hdr.Typeflag == tar.TypeGNUSparse
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			e.sparse = true
		}
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if x == "" {
				return nil, fmt.Errorf("xattr record with no name: %w", ErrInvalid)
			}
			if overlayXattr(x) {
				e.dropped = append(e.dropped, x)
				continue
			}
			if e.xattrs == nil {
				e.xattrs = make(map[string]string)
			}
			e.xattrs[x] = v
		}
	}
	return e, nil
}

// Mode type bits as tar writers store them, which some set besides the
// type flag.
const (
	tarTypeBits = 0o170000
	tarSocket   = 0o140000
)

// checkHeader refuses types zlayer cannot create and numbers it would
// have to truncate.
func checkHeader(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeLink, tar.TypeSymlink,
		tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported entry type %q: %w", hdr.Typeflag, ErrInvalid)
	}
	switch {
	case hdr.Mode < 0 || hdr.Mode&^(tarTypeBits|0o7777) != 0:
		return fmt.Errorf("mode %#o out of range: %w", hdr.Mode, ErrInvalid)
	case hdr.Mode&tarTypeBits == tarSocket:
		return fmt.Errorf("sockets are not supported: %w", ErrInvalid)
	case !validID(hdr.Uid):
		return fmt.Errorf("uid %d out of range: %w", hdr.Uid, ErrInvalid)
	case !validID(hdr.Gid):
		return fmt.Errorf("gid %d out of range: %w", hdr.Gid, ErrInvalid)
	}
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		// mknod(2) takes a 32-bit device number: 12 bits of major and 20
		// of minor. Larger ones would be cut down to another device (a
		// major of 4096 to 0:0, an overlay whiteout).
		if hdr.Devmajor < 0 || hdr.Devmajor > maxDevMajor ||
			hdr.Devminor < 0 || hdr.Devminor > maxDevMinor {
			return fmt.Errorf("device %d:%d out of range: %w",
				hdr.Devmajor, hdr.Devminor, ErrInvalid)
		}
	}
	return nil
}

// The largest device numbers mknod(2) can make.
const (
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
)

// validID reports whether id fits a 32-bit uid or gid; the all-ones value
// is left out since chown reads it as "unchanged".
func validID(id int) bool {
	return id >= 0 && int64(id) < math.MaxUint32
}

// nameMax is the longest file name Linux file systems take (NAME_MAX).
const nameMax = 255

// cleanName turns a tar name into a path relative to the layer's root,
// "" being the root itself: "./" prefixes, "." components, repeated and
// trailing slashes go; an absolute name or a ".." component is refused,
// since either would leave the root.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", ErrInvalid)
	}
	if name[0] == '/' {
		return "", fmt.Errorf("absolute name %q: %w", name, ErrInvalid)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("name %q holds a NUL byte: %w", name, ErrInvalid)
	}
	clean := true
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "..":
			return "", fmt.Errorf("name %q has a \"..\" component: %w", name, ErrInvalid)
		case "", ".":
			clean = false
		}
		if len(c) > nameMax {
			return "", fmt.Errorf("name %q has a component of %d bytes, more than %d: %w",
				name, len(c), nameMax, ErrInvalid)
		}
	}
	if clean {
		return name, nil
	}

	var b strings.Builder
	for c := range strings.SplitSeq(name, "/") {
		if c == "" || c == "." {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c)
	}
	return b.String(), nil
}

// layerPaths records the names this layer has written, as cleaned tar
// names, so that whiteouts and opaque markers act on lower content only.
// A name's directories are recorded too, flagged as holding layer content.
// Directories' entries share their bytes with their children's names.
type layerPaths map[string]uint8

const (
	pathWritten  uint8 = 1 << iota // an entry of this layer
	pathHasEntry                   // a directory holding entries of this layer
)

func (p layerPaths) add(name string) {
	if name == "" {
		return
	}
	p[name] |= pathWritten
	for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name, '/') {
		name = name[:i]
		if p[name]&pathHasEntry != 0 {
			return
		}
		p[name] |= pathHasEntry
	}
}

// addDir records a directory this layer makes its own without an entry
// for it, as an opaque marker does.
func (p layerPaths) addDir(name string) {
	for name != "" && p[name]&pathHasEntry == 0 {
		p[name] |= pathHasEntry
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return
		}
		name = name[:i]
	}
}

// mine reports whether name is, or holds, content of this layer.
func (p layerPaths) mine(name string) bool {
	return p[name] != 0
}
