package zlayer

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/zlayer/zlayer/internal/fstree"
	"github.com/zlayer/zlayer/internal/tartest"
)

// layerTree mounts id read-only and snapshots its tree.
func layerTreeOf(t *testing.T, s *Store, id string) fstree.Tree {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "view")
	if err := s.Mount(ctx, id, dir, &MountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Unmount(ctx, dir)
	tree, err := fstree.Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestStoreApplyAtomic applies a good layer, then broken and hostile ones
// onto the same layer, and proves each failure left it exactly as it was.
func TestStoreApplyAtomic(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.CreateLayer(ctx, "l", "", nil); err != nil {
		t.Fatal(err)
	}
	good := tartest.Layer{
		tartest.Dir("etc"),
		tartest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		tartest.File("big", string(bytes.Repeat([]byte("z"), 1<<20))),
	}.Tar()
	res, err := s.Apply(ctx, "l", bytes.NewReader(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 3 || res.Compression != Uncompressed {
		t.Errorf("result %+v", res)
	}
	before := layerTreeOf(t, s, "l")

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tartest.Layer{tartest.File("etc/passwd", "changed"), tartest.File("new", "n")}.Tar())
	zw.Close()
	corrupt := bytes.Clone(gz.Bytes())
	corrupt[len(corrupt)-5] ^= 0xff // the trailer's CRC

	huge := tartest.Layer{tartest.File("etc/passwd", "changed"),
		tartest.File("huge", "", tartest.DeclaredSize(1<<40))}.Tar()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	cases := []struct {
		name string
		ctx  context.Context
		r    io.Reader
		opts *ApplyOptions
		want error
	}{
		{"truncated tar", ctx, bytes.NewReader(good[:len(good)/2]), nil, nil},
		{"corrupt gzip trailer", ctx, bytes.NewReader(corrupt), nil, nil},
		{"truncated gzip", ctx, bytes.NewReader(gz.Bytes()[:gz.Len()-10]), nil, nil},
		{"wrong diffid", ctx, bytes.NewReader(good), &ApplyOptions{ExpectedDiffID: digest.Digest("sha256:" + strings.Repeat("0", 64))}, ErrInvalid},
		{"larger than the pool", ctx, bytes.NewReader(huge), nil, nil},
		{"escape by dotdot", ctx, bytes.NewReader(tartest.Layer{tartest.File("etc/x", "y"), tartest.File("../escape", "x")}.Tar()), nil, ErrInvalid},
		{"cancelled", cancelled, bytes.NewReader(good), nil, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(tc.ctx, "l", tc.r, tc.opts)
			if err == nil {
				t.Fatal("apply succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if diff := fstree.Diff(before, layerTreeOf(t, s, "l")); diff != "" {
				t.Errorf("layer changed by a failed apply (-before +after):\n%s", diff)
			}
		})
	}
	assertNoLeftovers(t, s)
	if _, err := s.Commit(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "l", bytes.NewReader(good), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("apply onto a committed layer: %v", err)
	}
}
