//go:build linux

package zlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirTree applies a layer to a directory through descriptors: each entry's
// parent is opened beneath the root with openat2(RESOLVE_BENEATH), or with
// an os.Root where openat2 is missing, and the entry is then made with the
// *at calls relative to that parent, never following its last component.
type dirTree struct {
	root     int      // the directory, O_RDONLY
	fallback *os.Root // resolves parents when openat2 is not available
	paths    layerPaths
	log      *slog.Logger
	buf      *[]byte

	// The parent used last, since a tar lists a directory's entries
	// together. Any removal may change what a path names, so it marks
	// the cache stale; the descriptor stays open until the next lookup,
	// as the entry being applied may still hold it.
	cached     dirHandle
	cachedPath string
	cachedOwn  string // the directory's own name, see dir
	cacheValid bool

	rootPath string // the root's path, once a link made it needed

	// times holds directories' times, set by finish once their children
	// are in.
	times map[string][2]unix.Timespec
}

// applyNoOpenat2 makes ApplyDir resolve paths with os.Root alone; tests
// set it to run the fallback through the same cases.
var applyNoOpenat2 = false

// copyBufferSize is the size of the buffer a regular file's content is
// copied through; a multiple of sparseBlock.
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

func openLayerTree(dir string, paths layerPaths, log *slog.Logger) (layerTree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	t := &dirTree{
		root:  fd,
		paths: paths,
		log:   log,
		buf:   copyBuffers.Get().(*[]byte),
		times: make(map[string][2]unix.Timespec),
	}
	if applyNoOpenat2 || !haveOpenat2(fd) {
		if t.fallback, err = os.OpenRoot(dir); err != nil {
			t.close()
			return nil, fmt.Errorf("open: %w", err)
		}
		log.Debug("apply layer: openat2 is not available, resolving with os.Root")
	}
	return t, nil
}

func haveOpenat2(dirfd int) bool {
	fd, err := unix.Openat2(dirfd, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH,
	})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func (t *dirTree) close() {
	t.cached.close()
	t.cached = dirHandle{}
	if t.fallback != nil {
		t.fallback.Close()
	}
	if t.root >= 0 {
		unix.Close(t.root)
		t.root = -1
	}
	if t.buf != nil {
		copyBuffers.Put(t.buf)
		t.buf = nil
	}
}

func (t *dirTree) write(ctx context.Context, e *layerEntry, content io.Reader) error {
	if e.name == "" {
		return t.rootDir(e)
	}
	pfd, parent, err := t.dir(e.parent, true)
	if err != nil {
		return pathErr(e.parent, err)
	}
	e.own = joinName(parent, e.base)
	if e.hdr.Typeflag != tar.TypeDir {
		delete(t.times, e.own)
	}

	switch e.hdr.Typeflag {
	case tar.TypeDir:
		return t.mkdir(pfd, e)
	case tar.TypeSymlink:
		return t.symlink(pfd, e)
	case tar.TypeLink:
		return t.link(pfd, e)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return t.mknod(pfd, e)
	default:
		return t.file(pfd, e, content)
	}
}

// replace runs create, and when the name is taken removes what holds it
// (a whole tree for a directory) and runs create again: an entry never
// writes through what was there.
func (t *dirTree) replace(pfd int, base string, create func() error) error {
	err := create()
	if err != unix.EEXIST {
		return err
	}
	if _, err := t.clear(pfd, base, false); err != nil {
		return fmt.Errorf("remove the old entry: %w", err)
	}
	return create()
}

// clear removes what is at base, unless keepDir is set and it is a
// directory, which it reports.
func (t *dirTree) clear(pfd int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && keepDir {
		return true, nil
	}
	t.invalidate()
	if isDir {
		return false, removeAllAt(pfd, base)
	}
	return false, unix.Unlinkat(pfd, base, 0)
}

func (t *dirTree) file(pfd int, e *layerEntry, content io.Reader) error {
	var fd int
	err := t.replace(pfd, e.base, func() (err error) {
		fd, err = unix.Openat(pfd, e.base,
			unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}

	err = t.fill(fd, e, content)
	if err == nil {
		err = t.setAttrs(fd, e, false)
	}
	if err == nil {
		err = futimens(fd, entryTimes(e.hdr))
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

// sparseBlock is the unit of holes: a sparse file's zero-filled blocks of
// this size are skipped, not written.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// fill copies a regular file's content. A sparse entry's zero blocks
// become holes: they are skipped, and the file's size is set at the end.
func (t *dirTree) fill(fd int, e *layerEntry, content io.Reader) error {
	buf := *t.buf
	var off int64
	for {
		n, eof, rerr := readFull(content, buf)
		if rerr != nil {
			return rerr
		}
		var err error
		if e.sparse {
			err = pwriteData(fd, buf[:n], off)
		} else {
			err = writeAll(fd, buf[:n])
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += int64(n)
		if eof {
			break
		}
		runtime.Gosched() // see yieldEvery
	}
	if e.sparse {
		if err := unix.Ftruncate(fd, off); err != nil {
			return fmt.Errorf("set size: %w", err)
		}
	}
	return nil
}

// readFull reads until buf is full or r ends, which it reports.
func readFull(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// pwriteData writes the runs of b, which starts at off, made of blocks
// that are not all zero; off is a multiple of sparseBlock.
func pwriteData(fd int, b []byte, off int64) error {
	for start := 0; start < len(b); {
		end := start
		for end < len(b) {
			k := min(len(b)-end, sparseBlock)
			if bytes.Equal(b[end:end+k], zeroBlock[:k]) {
				break
			}
			end += k
		}
		for w := start; w < end; {
			n, err := unix.Pwrite(fd, b[w:end], off+int64(w))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			w += n
		}
		start = end + min(len(b)-end, sparseBlock)
	}
	return nil
}

func (t *dirTree) mkdir(pfd int, e *layerEntry) error {
	existed := false
	err := unix.Mkdirat(pfd, e.base, 0o700)
	if err == unix.EEXIST {
		existed, err = t.clear(pfd, e.base, true)
		if err == nil && !existed {
			err = unix.Mkdirat(pfd, e.base, 0o700)
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := unix.Openat(pfd, e.base,
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	if err := t.setAttrs(fd, e, existed); err != nil {
		unix.Close(fd)
		return err
	}
	t.times[e.own] = entryTimes(e.hdr)

	// The entries that follow are most likely this directory's.
	t.setCache(e.name, e.own, dirHandle{fd: fd, own: true})
	return nil
}

func (t *dirTree) rootDir(e *layerEntry) error {
	if err := t.setAttrs(t.root, e, true); err != nil {
		return err
	}
	t.times[""] = entryTimes(e.hdr)
	return nil
}

func (t *dirTree) symlink(pfd int, e *layerEntry) error {
	err := t.replace(pfd, e.base, func() error {
		return unix.Symlinkat(e.hdr.Linkname, pfd, e.base)
	})
	if err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	return t.setAttrsAt(pfd, e, false)
}

func (t *dirTree) mknod(pfd int, e *layerEntry) error {
	mode := e.mode
	switch e.hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	var dev uint64
	if e.hdr.Typeflag != tar.TypeFifo {
		dev = unix.Mkdev(uint32(e.hdr.Devmajor), uint32(e.hdr.Devminor))
	}
	err := t.replace(pfd, e.base, func() error {
		return unix.Mknodat(pfd, e.base, mode, int(dev))
	})
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return t.setAttrsAt(pfd, e, true)
}

// link makes a hard link to a non-directory already in the tree, written
// by this layer or below it.
func (t *dirTree) link(pfd int, e *layerEntry) error {
	tparent, tbase := splitName(e.link)
	tfd, town := t.root, "" // the target's directory, and its own name
	if tparent != "" {
		h, followed, err := t.resolve(tparent)
		if err != nil {
			return linkErr(e.hdr.Linkname, err)
		}
		defer h.close()
		tfd, town = h.fd, tparent
		if followed {
			if town, err = t.ownName(h.fd); err != nil {
				return linkErr(e.hdr.Linkname, err)
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return linkErr(e.hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory: %w", e.hdr.Linkname, ErrInvalid)
	}
	// Through a symbolic link, the target may lie inside a directory at
	// the link's own name, which clearing the name would delete first.
	if town == e.own || strings.HasPrefix(town, e.own+"/") {
		return fmt.Errorf("hard link target %q is inside the directory the link replaces: %w",
			e.hdr.Linkname, ErrInvalid)
	}

	err := t.replace(pfd, e.base, func() error {
		return unix.Linkat(tfd, tbase, pfd, e.base, 0)
	})
	if err == unix.ENOENT {
		// Clearing the link's name removed the target with it.
		return linkErr(e.hdr.Linkname, err)
	}
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	return nil
}

func linkErr(target string, err error) error {
	switch err {
	case unix.ENOENT, unix.ENOTDIR:
		return fmt.Errorf("hard link target %q does not exist: %w", target, ErrInvalid)
	case unix.EXDEV, unix.ELOOP:
		return fmt.Errorf("hard link target %q is outside the layer: %w", target, ErrInvalid)
	}
	return fmt.Errorf("hard link target %q: %w", target, err)
}

// setAttrs gives an open file or directory the entry's owner, mode and
// xattrs, in that order: chown clears setuid, setgid and file
// capabilities. With replace, the xattrs the entry lacks are removed.
func (t *dirTree) setAttrs(fd int, e *layerEntry, replace bool) error {
	if err := unix.Fchown(fd, e.hdr.Uid, e.hdr.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
	}
	if err := unix.Fchmod(fd, e.mode); err != nil {
		return fmt.Errorf("chmod %#o: %w", e.mode, err)
	}
	if replace {
		if err := dropXattrs(fd, e.xattrs); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(e.xattrs) {
		if err := unix.Fsetxattr(fd, k, []byte(e.xattrs[k]), 0); err != nil {
			return fmt.Errorf("set xattr %q: %w", k, err)
		}
	}
	return nil
}

// setAttrsAt is setAttrs for what cannot be opened without side effects
// (devices, FIFOs) or at all (symbolic links), named by its parent and
// base name. Symbolic links keep their mode, which Linux ignores.
func (t *dirTree) setAttrsAt(pfd int, e *layerEntry, chmod bool) error {
	err := unix.Fchownat(pfd, e.base, e.hdr.Uid, e.hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("chown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
	}
	if chmod {
		// The node was just made by mknodat, so following is moot.
		if err := unix.Fchmodat(pfd, e.base, e.mode, 0); err != nil {
			return fmt.Errorf("chmod %#o: %w", e.mode, err)
		}
	}
	if len(e.xattrs) > 0 {
		// No fsetxattr works on an O_PATH descriptor; the parent's magic
		// link in /proc reaches the entry without resolving its path
		// again, and lsetxattr does not follow the last component.
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + e.base
		for _, k := range sortedKeys(e.xattrs) {
			if err := unix.Lsetxattr(p, k, []byte(e.xattrs[k]), 0); err != nil {
				return fmt.Errorf("set xattr %q: %w", k, err)
			}
		}
	}
	ts := entryTimes(e.hdr)
	if err := unix.UtimesNanoAt(pfd, e.base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// dropXattrs removes the xattrs of fd that keep lacks.
func dropXattrs(fd int, keep map[string]string) error {
	sz, err := unix.Flistxattr(fd, nil)
	if err != nil || sz == 0 {
		if err == unix.ENOTSUP {
			return nil
		}
		return err
	}
	list := make([]byte, sz)
	if sz, err = unix.Flistxattr(fd, list); err != nil {
		return fmt.Errorf("list xattrs: %w", err)
	}
	for name := range bytes.SplitSeq(list[:sz], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		if _, ok := keep[string(name)]; ok {
			continue
		}
		if err := unix.Fremovexattr(fd, string(name)); err != nil && err != unix.ENODATA {
			return fmt.Errorf("remove xattr %q: %w", name, err)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// entryTimes gives the access and modification times for utimensat; an
// entry without an access time gets its modification time.
func entryTimes(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// futimens sets the times of an open descriptor: utimensat with a null
// path, which x/sys/unix has no wrapper for.
func futimens(fd int, ts [2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0,
		uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("set times: %w", errno)
	}
	return nil
}

// whiteout and opaque judge what is the layer's own by the directories'
// own names, so that reaching a directory through a link (or the link
// through the directory) spares the same entries.

func (t *dirTree) whiteout(e *layerEntry) error {
	pfd, parent, err := t.dir(e.parent, false)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil // nothing below to delete
	}
	if err != nil {
		return pathErr(e.parent, err)
	}
	hidden := joinName(parent, e.hidden)
	if !t.paths.mine(hidden) {
		t.invalidate()
		if err := removeAllAt(pfd, e.hidden); err != nil {
			return fmt.Errorf("remove %q: %w", hidden, err)
		}
		return nil
	}

	// This layer wrote the name, or entries below it: only what the
	// layers below put inside it goes.
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, e.hidden, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	fd, err := unix.Openat(pfd, e.hidden,
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", hidden, err)
	}
	t.invalidate()
	return t.purge(fd, hidden)
}

func (t *dirTree) opaque(e *layerEntry) error {
	pfd, parent, err := t.dir(e.parent, true)
	if err != nil {
		return pathErr(e.parent, err)
	}
	t.paths.addDir(parent)
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	t.invalidate()
	return t.purge(fd, parent)
}

// purge removes from the directory fd, named rel, everything this layer
// did not write, keeping what it did and the directories that lead to it.
// It closes fd.
func (t *dirTree) purge(fd int, rel string) error {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			child := joinName(rel, n)
			if !t.paths.mine(child) {
				if err := removeAllAt(fd, n); err != nil {
					return fmt.Errorf("remove %q: %w", child, err)
				}
				continue
			}
			cfd, err := unix.Openat(fd, n,
				unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == unix.ENOTDIR || err == unix.ELOOP {
				continue // a file or link of this layer
			}
			if err != nil {
				return fmt.Errorf("open %q: %w", child, err)
			}
			if err := t.purge(cfd, child); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read directory %q: %w", rel, rerr)
		}
	}
}

// finish sets the times of the directories written, now that their
// children are in. Each is reached from the root a component at a time
// without following symbolic links: a directory that a later entry
// replaced, or put behind a link, is passed over, and a tree deeper than
// a path can name is no obstacle.
func (t *dirTree) finish() error {
	w := dirWalker{root: t.root}
	defer w.close()
	for _, name := range slices.Sorted(maps.Keys(t.times)) {
		ts := t.times[name]
		if name == "" {
			if err := futimens(t.root, ts); err != nil {
				return opErr("set times", "/", err)
			}
			continue
		}
		parent, base := splitName(name)
		pfd, err := w.open(parent)
		var st unix.Stat_t
		if err == nil {
			err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err = unix.ENOTDIR
		}
		if err == nil {
			err = unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
		}
		switch err {
		case nil, unix.ENOENT, unix.ENOTDIR:
		default:
			return opErr("set times", name, err)
		}
	}
	return nil
}

// dirWalker opens directories below a root a component at a time, never
// following a symbolic link (one on the way fails with ENOTDIR). It keeps
// the last path's directories open, which a next name in sorted order
// mostly shares.
type dirWalker struct {
	root  int
	names []string // the components of the open path
	fds   []int    // fds[i] is the directory names[:i+1]
}

func (w *dirWalker) open(name string) (int, error) {
	if name == "" {
		return w.root, nil
	}
	comps := strings.Split(name, "/")
	k := 0
	for k < len(w.names) && k < len(comps) && w.names[k] == comps[k] {
		k++
	}
	w.truncate(k)
	for _, c := range comps[k:] {
		parent := w.root
		if n := len(w.fds); n > 0 {
			parent = w.fds[n-1]
		}
		fd, err := unix.Openat(parent, c,
			unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		w.names, w.fds = append(w.names, c), append(w.fds, fd)
	}
	return w.fds[len(w.fds)-1], nil
}

func (w *dirWalker) truncate(k int) {
	for len(w.fds) > k {
		n := len(w.fds) - 1
		unix.Close(w.fds[n])
		w.names, w.fds = w.names[:n], w.fds[:n]
	}
}

func (w *dirWalker) close() { w.truncate(0) }

func splitName(name string) (parent, base string) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[:i], name[i+1:]
		}
	}
	return "", name
}

func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}
