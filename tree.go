package zlayer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// tree reads one directory tree through descriptors: every directory below
// the root is opened with openat(2) and O_NOFOLLOW from its parent, and
// every entry is looked at relative to its parent's descriptor, so a
// symlink inside the tree (a layer is untrusted content) can never lead a
// read outside it. A path that crosses a symlink or a non-directory does
// not exist for the tree.
//
// Lookups go through a cursor, the chain of directories opened down to the
// last one used. Walks in path order move it one step at a time, so most
// lookups cost one fstatat. A tree is not safe for concurrent use.
type tree struct {
	dir   string   // the root as the caller named it, for errors
	root  *os.File // the root directory
	cwd   string   // the path of the cursor's directory, "" for the root
	stack []*os.File
}

// fileID names an inode: the unit that hard links share.
type fileID struct{ dev, ino uint64 }

func idOf(st *unix.Stat_t) fileID { return fileID{uint64(st.Dev), st.Ino} }

// xattr is one extended attribute.
type xattr struct{ name, value string }

// errNotInTree is wrapped by lookups of paths that cross a symlink or a
// non-directory: for the tree such a path does not exist.
var errNotInTree = fmt.Errorf("path leaves the tree: %w", fs.ErrNotExist)

func openTree(dir string) (*tree, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &tree{dir: dir, root: f}, nil
}

func (t *tree) close() {
	for _, f := range t.stack {
		f.Close()
	}
	t.stack, t.cwd = nil, ""
	t.root.Close()
}

// path returns rel as a host path, for errors and messages.
func (t *tree) path(rel string) string {
	return filepath.Join(t.dir, filepath.FromSlash(rel))
}

func (t *tree) fd() int {
	if n := len(t.stack); n > 0 {
		return int(t.stack[n-1].Fd())
	}
	return int(t.root.Fd())
}

// cd moves the cursor to the directory dir.
func (t *tree) cd(dir string) error {
	if dir == t.cwd {
		return nil
	}

	// Keep the directories that dir shares with the cursor, then open the
	// rest one component at a time.
	keep := 0
	if t.cwd != "" && (dir == t.cwd || strings.HasPrefix(dir, t.cwd+"/")) {
		keep = len(t.stack)
	} else {
		cur, want := t.cwd, dir
		for cur != "" && want != "" {
			c1, r1, _ := strings.Cut(cur, "/")
			c2, r2, _ := strings.Cut(want, "/")
			if c1 != c2 {
				break
			}
			keep++
			cur, want = r1, r2
		}
	}
	for len(t.stack) > keep {
		t.stack[len(t.stack)-1].Close()
		t.stack = t.stack[:len(t.stack)-1]
	}

	rest := dir
	for i := 0; i < keep; i++ {
		_, rest, _ = strings.Cut(rest, "/")
	}
	for rest != "" {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		fd, err := openat(t.fd(), name, unix.O_DIRECTORY)
		if err != nil {
			t.cwd = joinN(dir, len(t.stack))
			return err
		}
		t.stack = append(t.stack, os.NewFile(uintptr(fd), name))
	}
	t.cwd = dir
	return nil
}

// joinN returns the first n components of p.
func joinN(p string, n int) string {
	if n == 0 {
		return ""
	}
	i := 0
	for k := 0; k < len(p); k++ {
		if p[k] == '/' {
			i++
			if i == n {
				return p[:k]
			}
		}
	}
	return p
}

// openat opens name below the directory dirfd without following a symlink
// in its place.
func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name,
			unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ELOOP || err == unix.ENOTDIR:
			return -1, errNotInTree
		case err != nil:
			return -1, err
		}
		return fd, nil
	}
}

func splitRel(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// parent moves the cursor to the directory holding rel and returns its
// descriptor and rel's last component.
func (t *tree) parent(rel string) (int, string, error) {
	dir, base := splitRel(rel)
	if err := t.cd(dir); err != nil {
		return -1, "", err
	}
	return t.fd(), base, nil
}

// lstat describes rel without following it.
func (t *tree) lstat(rel string, st *unix.Stat_t) error {
	if rel == "" {
		return unix.Fstat(int(t.root.Fd()), st)
	}
	fd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	for {
		err = unix.Fstatat(fd, base, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ENOTDIR {
		return errNotInTree
	}
	return err
}

// exists reports whether rel is in the tree, with its description.
func (t *tree) exists(rel string, st *unix.Stat_t) (bool, error) {
	err := t.lstat(rel, st)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// open opens the regular file rel, which lstat described as st, and checks
// that what it opened is that file.
func (t *tree) open(rel string, st *unix.Stat_t) (*os.File, error) {
	fd, base, err := t.parent(rel)
	if err != nil {
		return nil, err
	}
	nfd, err := openat(fd, base, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), rel)

	var got unix.Stat_t
	if err := unix.Fstat(nfd, &got); err != nil {
		f.Close()
		return nil, err
	}
	if got.Dev != st.Dev || got.Ino != st.Ino || got.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, errors.New("file replaced while being read")
	}
	return f, nil
}

// readlink returns the target of the symlink rel.
func (t *tree) readlink(rel string) (string, error) {
	fd, base, err := t.parent(rel)
	if err != nil {
		return "", err
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, base, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// names returns the names in the directory rel, sorted.
func (t *tree) names(rel string) ([]string, error) {
	var f *os.File
	if rel == "" {
		fd, err := openat(int(t.root.Fd()), ".", unix.O_DIRECTORY)
		if err != nil {
			return nil, err
		}
		f = os.NewFile(uintptr(fd), ".")
	} else {
		pfd, base, err := t.parent(rel)
		if err != nil {
			return nil, err
		}
		fd, err := openat(pfd, base, unix.O_DIRECTORY)
		if err != nil {
			return nil, err
		}
		f = os.NewFile(uintptr(fd), rel)
	}
	defer f.Close()

	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// procFD tells whether /proc/self/fd can name a descriptor's directory, the
// way to read the extended attributes of an entry that cannot be opened
// (a symlink, a device, a FIFO) relative to its parent's descriptor.
var procFD = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// xattrs returns the extended attributes of rel, sorted by name. A file
// system without extended attributes gives none.
func (t *tree) xattrs(rel string) ([]xattr, error) {
	var p string
	follow := false
	switch {
	case rel == "" && procFD():
		p, follow = "/proc/self/fd/"+strconv.Itoa(int(t.root.Fd())), true
	case procFD():
		fd, base, err := t.parent(rel)
		if err != nil {
			return nil, err
		}
		// The magic link names the parent directory itself, so the lookup
		// of base happens below the descriptor, like every other lookup.
		p = "/proc/self/fd/" + strconv.Itoa(fd) + "/" + base
	default:
		// Without /proc the path is looked up from the root again. Its
		// directories were checked when the cursor opened them, and a
		// snapshot does not change under us, but a live tree could.
		p = t.path(rel)
	}

	list, err := xattrCall(func(b []byte) (int, error) {
		if follow {
			return unix.Listxattr(p, b)
		}
		return unix.Llistxattr(p, b)
	})
	if err != nil || len(list) == 0 {
		return nil, ignoreNoXattr(err)
	}

	return readXattrs(list, func(name string, b []byte) (int, error) {
		if follow {
			return unix.Getxattr(p, name, b)
		}
		return unix.Lgetxattr(p, name, b)
	})
}

// fxattrs returns the extended attributes of the open file f, sorted by
// name: cheaper than a lookup by name when the file is open anyway.
func fxattrs(f *os.File) ([]xattr, error) {
	fd := int(f.Fd())
	list, err := xattrCall(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil || len(list) == 0 {
		return nil, ignoreNoXattr(err)
	}
	return readXattrs(list, func(name string, b []byte) (int, error) {
		return unix.Fgetxattr(fd, name, b)
	})
}

// readXattrs reads the values of a NUL-separated list of names.
func readXattrs(list []byte, get func(string, []byte) (int, error)) ([]xattr, error) {
	var out []xattr
	for name := range strings.SplitSeq(strings.TrimSuffix(string(list), "\x00"), "\x00") {
		if overlayXattr(name) {
			continue // an overlay mount's, not the file's
		}
		v, err := xattrCall(func(b []byte) (int, error) { return get(name, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed between the list and the read
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s: %w", name, err)
		}
		out = append(out, xattr{name: name, value: string(v)})
	}
	slices.SortFunc(out, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func ignoreNoXattr(err error) error {
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}

// xattrCall runs a list or get call with a buffer large enough for its
// answer, growing it when the value grew between the size query and the
// read.
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
