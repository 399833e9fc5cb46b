package zlayer

import (
	"os"
	"testing"
	"time"

	"github.com/zlayer/zlayer/internal/fstree"
	tt "github.com/zlayer/zlayer/internal/tartest"
)

// hostileCase is a layer that tries to reach outside the root. outside is
// the absolute path of the sentinel directory beside the root.
type hostileCase struct {
	name   string
	lower  func(outside string) tt.Layer
	layer  func(outside string) tt.Layer
	want   fstree.Tree // the root afterwards, its own entry aside
	errHas string
	noErr  bool // the layer is applied, harmlessly
}

// hostileLower is the tree below every hostile layer.
var hostileLower = tt.Layer{tt.Dir("d"), tt.File("d/f", "f")}

var hostileBase = fstree.New(dir("d", 0o755), file("d/f", "f", 0o644))

func TestApplyDirHostile(t *testing.T) {
	cases := []hostileCase{{
		name:   "dot-dot name",
		layer:  layer(tt.File("../outside/secret", "pwned")),
		want:   hostileBase,
		errHas: `apply "../outside/secret": name "../outside/secret" has a ".." component`,
	}, {
		name:   "dot-dot inside a name",
		layer:  layer(tt.File("d/../../outside/new", "pwned")),
		want:   hostileBase,
		errHas: `".." component`,
	}, {
		name:   "absolute name",
		layer:  func(o string) tt.Layer { return tt.Layer{tt.File(o+"/new", "pwned")} },
		want:   hostileBase,
		errHas: "absolute name",
	}, {
		name:   "write through a planted link to /",
		layer:  layer(tt.Symlink("evil", "/"), tt.File("evil/tmp/zlayer-escape", "pwned")),
		want:   hostileBase.With(sym("evil", "/")),
		errHas: `apply "evil/tmp/zlayer-escape": "evil/tmp" leaves the root through a symbolic link`,
	}, {
		name:   "write through a planted link to ..",
		layer:  layer(tt.Symlink("evil", ".."), tt.File("evil/outside/new", "pwned")),
		want:   hostileBase.With(sym("evil", "..")),
		errHas: "leaves the root",
	}, {
		name:   "write through a planted link to ../outside",
		layer:  layer(tt.Symlink("evil", "../outside"), tt.File("evil/secret", "pwned")),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name: "write through a planted absolute link",
		layer: func(o string) tt.Layer {
			return tt.Layer{tt.Symlink("evil", o), tt.Dir("evil/dir", tt.Mode(0o777))}
		},
		errHas: "leaves the root",
	}, {
		name: "write through a lower link",
		lower: func(string) tt.Layer {
			return append(tt.Layer{tt.Symlink("evil", "../outside")}, hostileLower...)
		},
		layer:  layer(tt.File("evil/secret", "pwned")),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name: "write through a chain of links",
		layer: layer(tt.Symlink("a", "b"), tt.Symlink("b", "d/../.."), tt.File("a/outside/x",
			"pwned")),
		want:   hostileBase.With(sym("a", "b"), sym("b", "d/../..")),
		errHas: "leaves the root",
	}, {
		name:   "mkdir through a link in a subdirectory",
		layer:  layer(tt.Symlink("d/up", "../../outside"), tt.Dir("d/up/newdir")),
		want:   hostileBase.With(sym("d/up", "../../outside"), made("d")),
		errHas: "leaves the root",
	}, {
		name:   "device through a link",
		layer:  layer(tt.Symlink("evil", "../outside"), tt.Char("evil/null", 1, 3)),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name:   "hard link to a path outside",
		layer:  layer(tt.Link("x", "../outside/secret")),
		want:   hostileBase,
		errHas: `apply "x": hard link target "../outside/secret" is outside the layer: invalid argument`,
	}, {
		name:   "hard link to an absolute path",
		layer:  func(o string) tt.Layer { return tt.Layer{tt.Link("x", o+"/secret")} },
		want:   hostileBase,
		errHas: "is outside the layer",
	}, {
		name:   "hard link through a link",
		layer:  layer(tt.Symlink("evil", "../outside"), tt.Link("x", "evil/secret")),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "is outside the layer",
	}, {
		name:   "hard link to a missing target",
		layer:  layer(tt.Link("x", "d/missing")),
		want:   hostileBase,
		errHas: "does not exist",
	}, {
		name:   "whiteout naming ..",
		layer:  layer(tt.File("d/.wh...", "")),
		want:   hostileBase,
		errHas: "names no entry",
	}, {
		name:   "whiteout through a link",
		layer:  layer(tt.Symlink("evil", "../outside"), tt.Whiteout("evil", "secret")),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name:   "opaque through a link",
		layer:  layer(tt.Symlink("evil", "../outside"), tt.Opaque("evil")),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name: "opaque through an absolute link",
		layer: func(o string) tt.Layer {
			return tt.Layer{tt.Symlink("evil", o),
				tt.Opaque("evil")}
		},
		errHas: "leaves the root",
	}, {
		name: "xattr through a link",
		layer: layer(tt.Symlink("evil", "../outside"), tt.Fifo("evil/secret",
			tt.Xattr("trusted.x", "1"))),
		want:   hostileBase.With(sym("evil", "../outside")),
		errHas: "leaves the root",
	}, {
		name: "file over a link to an outside file",
		layer: layer(tt.Symlink("l", "../outside/secret"),
			tt.File("l", "mine", tt.Mode(0o4777), tt.Owner(1, 1))),
		want:  hostileBase.With(file("l", "mine", 0o4777, fstree.Owner(1, 1))),
		noErr: true,
	}, {
		name: "directory over a link to an outside directory",
		layer: layer(tt.Symlink("l", "../outside/dir"),
			tt.Dir("l", tt.Mode(0o777), tt.Xattr("trusted.x", "1"))),
		want:  hostileBase.With(dir("l", 0o777, fstree.Xattr("trusted.x", "1"))),
		noErr: true,
	}, {
		name: "device, link and FIFO over links to outside",
		layer: layer(tt.Symlink("a", "../outside/secret"), tt.Char("a", 1, 3), tt.Symlink("b",
			"/"), tt.Fifo("b")),
		want: hostileBase.With(fstree.Char("a", 1, 3, 0o666),
			fstree.Fifo("b", 0o644)),
		noErr: true,
	}, {
		name: "whiteout of a link removes the link, not its target",
		lower: func(string) tt.Layer {
			return append(tt.Layer{tt.Symlink("l", "../outside")},
				hostileLower...)
		},
		layer: layer(tt.Whiteout("", "l")),
		want:  hostileBase,
		noErr: true,
	}, {
		name: "links inside the root are followed",
		layer: layer(tt.Symlink("in", "d"), tt.File("in/g", "g"), tt.Symlink("d/up", ".."),
			tt.File("d/up/h", "h")),
		want: hostileBase.With(sym("in", "d"), file("d/g", "g", 0o644), sym("d/up", ".."),
			file("h", "h", 0o644), made("d")),
		noErr: true,
	}}
	needApplyPrivileges(t)
	forEachResolver(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				b := newBed(t)
				lower := hostileLower
				if c.lower != nil {
					lower = c.lower(b.outside)
				}
				b.mustApply(lower.Tar())
				_, err := b.apply(c.layer(b.outside).Tar(), nil)
				if c.noErr {
					checkErr(t, err, nil, "")
				} else {
					checkErr(t, err, ErrInvalid, c.errHas)
				}
				b.checkOutside()
				if _, err := os.Lstat("/tmp/zlayer-escape"); err == nil {
					t.Errorf("/tmp/zlayer-escape was written")
				}
				if c.want == nil {
					return
				}
				if d := fstree.Diff(c.want, b.tree().Without(".")); d != "" {
					t.Errorf("tree (-want +got):\n%s", d)
				}
			})
		}
	})
}

func layer(entries ...tt.Entry) func(string) tt.Layer {
	return func(string) tt.Layer { return entries }
}

// TestApplyDirParentIsSpecial pins that a parent path naming a FIFO or a
// device is refused without opening it: opening a FIFO blocks, and
// opening a device can act on hardware.
func TestApplyDirParentIsSpecial(t *testing.T) {
	needApplyPrivileges(t)
	forEachResolver(t, func(t *testing.T) {
		for _, l := range []tt.Layer{
			{tt.Fifo("p"), tt.File("p/x", "x")},
			{tt.Fifo("p"), tt.Symlink("s", "p"), tt.File("s/x", "x")},
			{tt.Char("c", 1, 3), tt.File("c/x", "x")},
		} {
			b := newBed(t)
			done := make(chan error, 1)
			go func() { _, err := b.apply(l.Tar(), nil); done <- err }()
			select {
			case err := <-done:
				checkErr(t, err, ErrInvalid, "not a directory")
			case <-time.After(10 * time.Second):
				t.Fatal("ApplyDir blocked on a special file")
			}
		}
	})
}
