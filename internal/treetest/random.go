package treetest

import (
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// names gives random trees some awkward names: spaces, UTF-8, bytes that
// are not UTF-8 and one long enough to need more than a ustar header.
var names = []string{
	"a", "b", "bin", "etc", "lib", "x.conf", "with space", "caf\u00e9",
	"dot.", "-dash", strings.Repeat("long", 30), "raw\xff\xfe",
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randName(r *rand.Rand, i int) string {
	return fmt.Sprintf("%s%d", pick(r, names), i)
}

func randContent(r *rand.Rand) string {
	sizes := []int{0, 1, 100, 511, 512, 513, 4096, 70000}
	b := make([]byte, pick(r, sizes))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// RandomTree returns operations that build a tree of about n entries:
// directories, files, symlinks, hard links, FIFOs, devices (when devices is
// set), with assorted modes, owners, extended attributes and times.
func RandomTree(r *rand.Rand, n int, devices bool) []Op {
	dirs := []string{""}
	var files []string
	var ops []Op
	for i := range n {
		dir := pick(r, dirs)
		p := strings.TrimPrefix(dir+"/"+randName(r, i), "/")
		switch k := r.IntN(100); {
		case k < 20:
			ops = append(ops, Dir(p, pick(r, []fs.FileMode{0o755, 0o700, 0o1777})))
			dirs = append(dirs, p)
		case k < 65:
			mode := pick(r, []fs.FileMode{0o644, 0o600, 0o755, 0o4755})
			ops = append(ops, File(p, randContent(r), mode))
			files = append(files, p)
		case k < 75:
			ops = append(ops, Symlink(p, pick(r, []string{"../x", "/etc/passwd", "a/b", "."})))
		case k < 83 && len(files) > 0:
			ops = append(ops, Link(p, pick(r, files)))
		case k < 88:
			ops = append(ops, FIFO(p, 0o644))
		case k < 91 && devices:
			ops = append(ops, CharDevice(p, uint32(1+r.IntN(10)), uint32(r.IntN(300)), 0o600))
		case k < 94 && len(files) > 0:
			ops = append(ops, Xattr(pick(r, files), "user.k"+fmt.Sprint(r.IntN(3)),
				fmt.Sprintf("v%d\x00bin", r.IntN(1000))))
		case len(files) > 0:
			ops = append(ops, Chown(pick(r, files), r.IntN(3)*1000, r.IntN(3)*1000))
		}
	}
	ops = append(ops, Times(time.Unix(1700000000, 123456789)))
	for _, f := range files {
		if r.IntN(3) == 0 {
			ops = append(ops, Chtimes(f, time.Unix(1600000000+r.Int64N(1e8), r.Int64N(1e9))))
		}
	}
	return ops
}

type listed struct {
	path string
	mode fs.FileMode
}

func list(root string) ([]listed, error) {
	var out []listed
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, root+"/"))
		out = append(out, listed{rel, d.Type()})
		return nil
	})
	return out, err
}

func filter(ls []listed, keep func(listed) bool) []listed {
	var out []listed
	for _, l := range ls {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// Mutate makes n random changes to the tree at root, of every kind a layer
// must carry: new, rewritten (same size and time), grown and deleted files;
// mode, owner, time and extended attribute changes; deleted and renamed
// files and directories; a file replaced by a directory and the reverse;
// new hard links to existing files; retargeted symlinks; new FIFOs and
// directories. It returns what it did, for failure messages.
func Mutate(r *rand.Rand, root string, n int) ([]string, error) {
	var done []string
	for i := 0; len(done) < n; i++ {
		if i > 50*n {
			return done, fmt.Errorf("found nothing to change in %d tries", i)
		}
		all, err := list(root)
		if err != nil {
			return done, err
		}
		o, ok := mutation(r, root, all, i)
		if !ok {
			continue
		}
		if err := Apply(root, o); err != nil {
			return done, err
		}
		done = append(done, o.desc)
	}
	return done, nil
}

func mutation(r *rand.Rand, root string, all []listed, i int) (Op, bool) {
	isDir := func(l listed) bool { return l.mode.IsDir() }
	isReg := func(l listed) bool { return l.mode.IsRegular() }
	isLink := func(l listed) bool { return l.mode&fs.ModeSymlink != 0 }
	dirs := append([]listed{{path: "", mode: fs.ModeDir}}, filter(all, isDir)...)
	regs := filter(all, isReg)
	nonDirs := filter(all, func(l listed) bool { return !isDir(l) })
	links := filter(all, isLink)
	newPath := func() string {
		return strings.TrimPrefix(pick(r, dirs).path+"/"+fmt.Sprintf("new%d", i), "/")
	}

	switch r.IntN(16) {
	case 0:
		return File(newPath(), randContent(r), 0o644), true
	case 1:
		if len(regs) > 0 {
			p := pick(r, regs).path
			return sameSize(p, r), true
		}
	case 2:
		if len(all) > 0 {
			if l := pick(r, all); !isLink(l) {
				return Chmod(l.path, pick(r, []uint32{0o600, 0o750, 0o2755, 0o1777})), true
			}
		}
	case 3:
		if len(all) > 0 {
			return Chown(pick(r, all).path, r.IntN(4)*7, r.IntN(4)*9), true
		}
	case 4:
		if len(regs) > 0 {
			return Xattr(pick(r, regs).path, "user.m", fmt.Sprint(r.IntN(100))), true
		}
	case 5:
		if len(nonDirs) > 0 {
			return Remove(pick(r, nonDirs).path), true
		}
	case 6:
		if len(dirs) > 1 {
			return Remove(pick(r, dirs[1:]).path), true
		}
	case 7:
		if len(all) > 0 {
			from, to := pick(r, all).path, newPath()
			if strings.HasPrefix(to+"/", from+"/") {
				return Op{}, false
			}
			return Rename(from, to), true
		}
	case 8:
		if len(nonDirs) > 0 {
			p := pick(r, nonDirs).path
			return replace(p, Dir(p, 0o755), File(p+"/inside", "in", 0o644)), true
		}
	case 9:
		if len(dirs) > 1 {
			p := pick(r, dirs[1:]).path
			return replace(p, File(p, "was a dir", 0o644)), true
		}
	case 10:
		if len(regs) > 0 {
			return Link(newPath(), pick(r, regs).path), true
		}
	case 11:
		if len(links) > 0 {
			return Symlink(pick(r, links).path, fmt.Sprintf("retarget%d", i)), true
		}
	case 12:
		if len(regs) > 0 {
			return appendTo(pick(r, regs).path), true
		}
	case 13:
		p := newPath()
		return group("new tree "+p, Dir(p, 0o711), File(p+"/f", "f", 0o600),
			Symlink(p+"/s", "f"), FIFO(p+"/p", 0o600)), true
	case 14:
		if len(all) > 0 {
			p := pick(r, all).path
			return Chtimes(p, time.Unix(1500000000+int64(i), 0)), true
		}
	case 15:
		for _, l := range regs {
			x, _ := Xattrs(host(root, l.path))
			if len(x) > 0 {
				return RemoveXattr(l.path, slices.Sorted(maps.Keys(x))[0]), true
			}
		}
	}
	return Op{}, false
}

func sameSize(p string, r *rand.Rand) Op {
	return op("rewrite same size and time "+p, func(root string) error {
		b, err := os.ReadFile(host(root, p))
		if err != nil || len(b) == 0 {
			return err
		}
		b[r.IntN(len(b))] ^= 0x20
		return Rewrite(p, string(b)).do(root)
	})
}

func appendTo(p string) Op {
	return op("append "+p, func(root string) error {
		f, err := os.OpenFile(host(root, p), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("more")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

func replace(p string, then ...Op) Op {
	return group("replace "+p, append([]Op{Remove(p)}, then...)...)
}

func group(desc string, ops ...Op) Op {
	return op(desc, func(root string) error { return Apply(root, ops...) })
}
