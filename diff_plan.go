package zlayer

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteoutPrefix marks a deletion in an OCI layer: ".wh.NAME" deletes NAME.
const whiteoutPrefix = ".wh."

// A plan is the set of paths a layer diff writes, kept as a trie of path
// components. It is built from a change list, whose kinds are only hints:
// what each path becomes is read from the two trees, so that a list with
// duplicates, stale entries or gaps still gives a correct layer.
//
// Resolution reads, for each listed path, whether it exists in the upper
// and the lower tree and as what:
//
//   - in upper (and not a socket): written as a full entry. A directory
//     that was not a directory in lower, or that a rename brought in, is
//     written with everything below it, read from upper.
//   - in lower and not in upper, or a directory in lower that became
//     something else: a whiteout.
//   - a directory in both: its entries are compared by name in both trees,
//     and names present on one side only join the plan. ZFS reports a
//     directory whose entries changed, but not every name that changed in
//     it: a new or removed hard link shows only as a link count change of
//     another name of the file.
//
// Paths below a path that resolves to a whiteout or to a whole subtree are
// dropped. A path that is not listed but lies on the way to a listed one
// is resolved like a listed one unless it is a directory in both trees.
//
// Then every written file with more links than written names has its
// other names looked for in upper (one scan of the whole tree, only when
// some are missing) so that the layer carries the file once and the
// other names as hard links to it.
type plan struct {
	ctx          context.Context
	lower, upper *tree
	root         *planNode
	listed       int // changes read from the list
}

type planNode struct {
	children map[string]*planNode

	touched  bool // listed, or found to differ
	renamed  bool // the target of a rename: its subtree moved as a whole
	resolved bool

	emit     bool // write upper's entry
	whiteout bool // write a whiteout for lower's entry
	newTree  bool // write everything below, read from upper

	mode  uint32 // upper's stat, for the hard link count
	nlink uint64
	id    fileID
}

func newPlan(ctx context.Context, lower, upper *tree) *plan {
	return &plan{ctx: ctx, lower: lower, upper: upper, root: &planNode{}}
}

// node returns the node of rel, making it and its ancestors.
func (p *plan) node(rel string) *planNode {
	n := p.root
	for rel != "" {
		var name string
		name, rel, _ = strings.Cut(rel, "/")
		c := n.children[name]
		if c == nil {
			c = &planNode{}
			if n.children == nil {
				n.children = map[string]*planNode{}
			}
			n.children[name] = c
		}
		n = c
	}
	return n
}

// lookup returns the node of rel, or nil.
func (p *plan) lookup(rel string) *planNode {
	n := p.root
	for rel != "" && n != nil {
		var name string
		name, rel, _ = strings.Cut(rel, "/")
		n = n.children[name]
	}
	return n
}

// validRel checks a path of a change: relative, slash-separated, clean.
func validRel(rel string) error {
	if rel == "" {
		return fmt.Errorf("%w: empty path", ErrInvalid)
	}
	if strings.IndexByte(rel, 0) >= 0 {
		return fmt.Errorf("%w: NUL in path", ErrInvalid)
	}
	for c := range strings.SplitSeq(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%w: path is not relative and clean", ErrInvalid)
		}
	}
	return nil
}

// add reads the change list into the trie.
func (p *plan) add(changes iter.Seq2[Change, error]) error {
	for c, err := range changes {
		if err != nil {
			return err
		}
		if err := p.ctx.Err(); err != nil {
			return err
		}
		p.listed++
		if c.Kind < ChangeAdd || c.Kind > ChangeRename {
			return opErr(diffOp, c.Path, fmt.Errorf("%w: change kind %v", ErrInvalid, c.Kind))
		}
		if err := validRel(c.Path); err != nil {
			return opErr(diffOp, c.Path, err)
		}
		if (c.Kind == ChangeRename) != (c.OldPath != "") {
			return opErr(diffOp, c.Path,
				fmt.Errorf("%w: a rename needs an old path, and only a rename", ErrInvalid))
		}
		n := p.node(c.Path)
		n.touched = true
		if c.Kind == ChangeRename {
			if err := validRel(c.OldPath); err != nil {
				return opErr(diffOp, c.OldPath, err)
			}
			n.renamed = true
			p.node(c.OldPath).touched = true
		}
	}
	return nil
}

// resolve settles every node, as the type comment describes. The root is
// always compared by name: ZFS reports it as modified whenever a name at
// the top changes, and the change stream reader drops that record.
func (p *plan) resolve() error {
	if err := p.expand(p.root, ""); err != nil {
		return err
	}
	return p.resolveChildren(p.root, "")
}

func (p *plan) resolveChildren(n *planNode, dir string) error {
	for _, name := range slices.Sorted(maps.Keys(n.children)) {
		if err := p.resolveNode(n.children[name], join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// presence is what the two trees hold at one path.
type presence struct {
	inUpper, inLower   bool
	upperDir, lowerDir bool
	upper              unix.Stat_t
}

// look reads what both trees hold at rel. A socket in upper counts as
// absent: a layer does not carry sockets.
func (p *plan) look(rel string) (presence, error) {
	var pr presence
	var ls unix.Stat_t
	var err error
	if pr.inUpper, err = p.upper.exists(rel, &pr.upper); err != nil {
		return pr, opErr(diffOp, p.upper.path(rel), err)
	}
	if pr.inLower, err = p.lower.exists(rel, &ls); err != nil {
		return pr, opErr(diffOp, p.lower.path(rel), err)
	}
	if pr.inUpper && pr.upper.Mode&unix.S_IFMT == unix.S_IFSOCK {
		pr.inUpper = false
	}
	pr.upperDir = pr.inUpper && isDir(&pr.upper)
	pr.lowerDir = pr.inLower && isDir(&ls)
	return pr, nil
}

func (p *plan) resolveNode(n *planNode, rel string) error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if n.resolved {
		// Only nodes added by completeLinks can wait below a resolved one.
		if !n.touched || n.emit && !n.newTree && isDirMode(n.mode) {
			return p.resolveChildren(n, rel)
		}
		return nil
	}
	pr, err := p.look(rel)
	if err != nil {
		return err
	}
	n.resolved = true
	if !n.touched && pr.upperDir && pr.lowerDir {
		return p.resolveChildren(n, rel)
	}
	n.touched = true
	if err := p.settle(n, rel, &pr); err != nil {
		return err
	}
	if n.emit && isDirMode(n.mode) && !n.newTree {
		if err := p.expand(n, rel); err != nil {
			return err
		}
		return p.resolveChildren(n, rel)
	}
	n.children = nil
	return nil
}

// settle decides what the layer writes for the touched path rel.
func (p *plan) settle(n *planNode, rel string, pr *presence) error {
	if pr.inLower && (!pr.inUpper || pr.lowerDir && (!pr.upperDir || n.renamed)) {
		if err := checkName(rel); err != nil {
			return opErr(diffOp, p.lower.path(rel), err)
		}
		n.whiteout = true
	}
	if !pr.inUpper {
		return nil
	}
	if err := checkName(rel); err != nil {
		return opErr(diffOp, p.upper.path(rel), err)
	}
	n.emit = true
	n.mode, n.nlink, n.id = pr.upper.Mode, uint64(pr.upper.Nlink), idOf(&pr.upper)
	n.newTree = pr.upperDir && (!pr.lowerDir || n.renamed)
	return nil
}

// checkName refuses a path that an OCI layer cannot carry: its name would
// be read as a whiteout.
func checkName(rel string) error {
	_, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return fmt.Errorf("%w: name begins with the whiteout prefix %s", ErrInvalid,
			whiteoutPrefix)
	}
	return nil
}

// expand adds to n the names that only one tree has in the directory dir.
func (p *plan) expand(n *planNode, dir string) error {
	un, err := p.upper.names(dir)
	if err != nil {
		return opErr(diffOp, p.upper.path(dir), err)
	}
	ln, err := p.lower.names(dir)
	if err != nil {
		return opErr(diffOp, p.lower.path(dir), err)
	}
	i, j := 0, 0
	for i < len(ln) || j < len(un) {
		var name string
		switch {
		case j == len(un) || i < len(ln) && ln[i] < un[j]:
			name = ln[i]
			i++
		case i == len(ln) || un[j] < ln[i]:
			name = un[j]
			j++
		default:
			i++
			j++
			continue
		}
		p.node(join(dir, name)).touched = true
	}
	return nil
}

// completeLinks adds the missing names of multiply-linked files. It runs
// resolution again for what it adds, which may add more; three rounds are
// more than any tree needs, since a round only adds names of inodes
// already written.
func (p *plan) completeLinks() error {
	for range 3 {
		counts := map[fileID]uint64{}
		nlink := map[fileID]uint64{}
		if err := p.countLinks(p.root, "", counts, nlink); err != nil {
			return err
		}
		missing := map[fileID]bool{}
		for id, n := range counts {
			if n < nlink[id] {
				missing[id] = true
			}
		}
		if len(missing) == 0 {
			return nil
		}
		added, err := p.findLinks(p.root, "", missing)
		if err != nil {
			return err
		}
		if added == 0 {
			// The other names are outside the tree, or were sockets.
			return nil
		}
		if err := p.resolveChildren(p.root, ""); err != nil {
			return err
		}
	}
	return nil
}

func multiLinked(mode uint32, nlink uint64) bool {
	t := mode & unix.S_IFMT
	return nlink > 1 && t != unix.S_IFDIR && t != unix.S_IFSOCK
}

// countLinks counts the written names of every multiply-linked inode.
func (p *plan) countLinks(n *planNode, rel string, counts, nlink map[fileID]uint64) error {
	if n.emit && multiLinked(n.mode, n.nlink) {
		counts[n.id]++
		nlink[n.id] = n.nlink
	}
	if n.newTree {
		return p.countTree(rel, counts, nlink)
	}
	for name, c := range n.children {
		if err := p.countLinks(c, join(rel, name), counts, nlink); err != nil {
			return err
		}
	}
	return nil
}

// countTree counts the multiply-linked names below the directory dir of
// upper, all of which are written.
func (p *plan) countTree(dir string, counts, nlink map[fileID]uint64) error {
	names, err := p.upper.names(dir)
	if err != nil {
		return opErr(diffOp, p.upper.path(dir), err)
	}
	for _, name := range names {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		rel := join(dir, name)
		var st unix.Stat_t
		if err := p.upper.lstat(rel, &st); err != nil {
			return opErr(diffOp, p.upper.path(rel), err)
		}
		switch {
		case isDir(&st):
			if err := p.countTree(rel, counts, nlink); err != nil {
				return err
			}
		case multiLinked(st.Mode, uint64(st.Nlink)):
			counts[idOf(&st)]++
			nlink[idOf(&st)] = uint64(st.Nlink)
		}
	}
	return nil
}

// findLinks scans the directory dir of upper, n being its node (nil where
// the plan has none), for unwritten names of the missing inodes, and adds
// them to the plan. It skips what is written whole already.
func (p *plan) findLinks(n *planNode, dir string, missing map[fileID]bool) (int, error) {
	names, err := p.upper.names(dir)
	if err != nil {
		return 0, opErr(diffOp, p.upper.path(dir), err)
	}
	added := 0
	for _, name := range names {
		if err := p.ctx.Err(); err != nil {
			return added, err
		}
		rel := join(dir, name)
		var c *planNode
		if n != nil {
			c = n.children[name]
		}
		if c != nil && (c.newTree || c.emit && !isDirMode(c.mode)) {
			continue
		}
		var st unix.Stat_t
		if err := p.upper.lstat(rel, &st); err != nil {
			return added, opErr(diffOp, p.upper.path(rel), err)
		}
		if isDir(&st) {
			k, err := p.findLinks(c, rel, missing)
			added += k
			if err != nil {
				return added, err
			}
			continue
		}
		if missing[idOf(&st)] {
			p.node(rel).touched = true
			added++
		}
	}
	return added, nil
}

func isDirMode(mode uint32) bool { return mode&unix.S_IFMT == unix.S_IFDIR }
