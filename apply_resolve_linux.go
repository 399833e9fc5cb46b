//go:build linux

package zlayer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dirHandle is an open directory: a bare descriptor, or one an os.File
// owns when the os.Root fallback opened it.
type dirHandle struct {
	fd  int
	f   *os.File
	own bool // closed by close; the root is not
}

func (h dirHandle) close() {
	switch {
	case h.f != nil:
		h.f.Close()
	case h.own:
		unix.Close(h.fd)
	}
}

// openat2Retries bounds the retries of openat2, which fails with EAGAIN
// when a rename elsewhere races with a RESOLVE_BENEATH lookup.
const openat2Retries = 16

// resolve opens the directory name (not the root) beneath the root. Symbolic
// links on the way are followed while they stay inside; one that is
// absolute or climbs out fails with EXDEV. followed reports that name
// may have crossed a symbolic link, so that the directory's own name can
// differ from name.
func (t *dirTree) resolve(name string) (h dirHandle, followed bool, err error) {
	if t.fallback != nil {
		// os.Root does not say whether it followed a link.
		h, err := t.resolveRoot(name)
		return h, true, err
	}
	// Most names cross no link; trying that first keeps the work of
	// finding the directory's own name to those that do.
	h, err = t.openat2(name, unix.RESOLVE_NO_SYMLINKS)
	if err != unix.ELOOP {
		return h, false, err
	}
	h, err = t.openat2(name, 0)
	return h, true, err
}

func (t *dirTree) openat2(name string, resolve uint64) (dirHandle, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | resolve,
	}
	for range openat2Retries {
		fd, err := unix.Openat2(t.root, name, &how)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return dirHandle{}, err
		}
		return dirHandle{fd: fd, own: true}, nil
	}
	return dirHandle{}, unix.EAGAIN
}

// ownName names the open directory fd by its path from the root with no
// symbolic links in it, as the kernel records it in /proc/self/fd.
func (t *dirTree) ownName(fd int) (string, error) {
	if t.rootPath == "" {
		p, err := fdPath(t.root)
		if err != nil {
			return "", err
		}
		t.rootPath = p
	}
	p, err := fdPath(fd)
	if err != nil {
		return "", err
	}
	if p == t.rootPath {
		return "", nil
	}
	prefix := t.rootPath + "/"
	if t.rootPath == "/" {
		prefix = "/"
	}
	rel, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", fmt.Errorf("directory %q is not below the root %q: %w", p, t.rootPath, ErrInvalid)
	}
	return rel, nil
}

func fdPath(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("name a directory reached through a symbolic link: %w", err)
	}
	p := string(buf[:n])
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		return "", fmt.Errorf("name a directory reached through a symbolic link: /proc gave %q", p)
	}
	return p, nil
}

// resolveRoot is resolve through os.Root, whose rules for symbolic links
// are those of RESOLVE_BENEATH. Its refusals of a path that escapes carry
// no errno; they become EXDEV, as openat2 reports them. O_DIRECTORY keeps
// it from opening a FIFO (which would block) or a device.
func (t *dirTree) resolveRoot(name string) (dirHandle, error) {
	f, err := t.fallback.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			return dirHandle{}, errno
		}
		return dirHandle{}, unix.EXDEV
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return dirHandle{}, err
	}
	if !fi.IsDir() {
		f.Close()
		return dirHandle{}, unix.ENOTDIR
	}
	return dirHandle{fd: int(f.Fd()), f: f, own: true}, nil
}

// dir returns a descriptor of the directory name ("" for the root), which
// stays valid until the next call, and the directory's own name: name
// with the symbolic links it crossed resolved. With create, missing
// directories are made. Its errors are bare errnos, for pathErr.
func (t *dirTree) dir(name string, create bool) (fd int, own string, err error) {
	if name == "" {
		return t.root, "", nil
	}
	if t.cacheValid && t.cachedPath == name {
		return t.cached.fd, t.cachedOwn, nil
	}
	h, followed, err := t.resolve(name)
	if err == unix.ENOENT && create {
		h, followed, err = t.mkdirAll(name)
	}
	if err != nil {
		return -1, "", err
	}
	own = name
	if followed {
		if own, err = t.ownName(h.fd); err != nil {
			h.close()
			return -1, "", err
		}
	}
	t.setCache(name, own, h)
	return h.fd, own, nil
}

func (t *dirTree) setCache(name, own string, h dirHandle) {
	t.cached.close()
	t.cached, t.cachedPath, t.cachedOwn, t.cacheValid = h, name, own, true
}

// invalidate marks the cached directory stale after a removal, which may
// have changed what its path names. The descriptor stays open: the entry
// being applied may hold it.
func (t *dirTree) invalidate() {
	t.cacheValid = false
}

// mkdirAll makes the missing directories of name, mode 0755 and owned by
// root as the layer does not describe them, and opens the last.
func (t *dirTree) mkdirAll(name string) (last dirHandle, followed bool, err error) {
	parent := dirHandle{fd: t.root}
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		prefix := name[:i]
		_, base := splitName(prefix)
		h, f, err := t.resolve(prefix)
		if err == unix.ENOENT {
			err = unix.Mkdirat(parent.fd, base, 0o755)
			if err == nil {
				err = unix.Fchownat(parent.fd, base, 0, 0, unix.AT_SYMLINK_NOFOLLOW)
			}
			if err == nil {
				err = unix.Fchmodat(parent.fd, base, 0o755, 0)
			}
			if err == unix.EEXIST {
				err = fmt.Errorf("%q is a dangling symbolic link: %w", prefix, ErrInvalid)
			} else if err == nil {
				h, f, err = t.resolve(prefix)
			}
		}
		parent.close()
		if err != nil {
			return dirHandle{}, false, err
		}
		parent, followed = h, followed || f
	}
	return parent, followed, nil
}

// pathErr explains an error of resolve or dir for the directory name.
func pathErr(name string, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case unix.EXDEV:
		return fmt.Errorf("%q leaves the root through a symbolic link: %w", name, ErrInvalid)
	case unix.ELOOP:
		return fmt.Errorf("%q: too many symbolic links: %w", name, ErrInvalid)
	case unix.ENOTDIR:
		return fmt.Errorf("%q is not a directory: %w", name, ErrInvalid)
	case unix.ENAMETOOLONG:
		return fmt.Errorf("%q: name too long: %w", name, ErrInvalid)
	}
	return fmt.Errorf("open directory %q: %w", name, err)
}

// removeAllAt removes name from the directory pfd, and everything below
// it when it is a directory, without following symbolic links. It holds
// one descriptor per level of the tree.
func removeAllAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, oerr := unix.Openat(pfd, name,
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr == unix.ENOTDIR || oerr == unix.ELOOP {
		return err // EPERM for a file, not a directory
	}
	if oerr != nil {
		return oerr
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	f.Close()
	return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
}
