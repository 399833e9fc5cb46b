package snapshotter_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildImage makes a two-layer OCI image with umoci and returns the path
// of its tarred layout, for ctr images import. Layer one holds a static
// busybox and the links the test runs; layer two adds /etc/zlayer-image.
// Nothing it writes is kept: it all lives in dir.
func buildImage(tb testing.TB, dir string) string {
	tb.Helper()
	requireTools(tb, "umoci", "tar", "busybox")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		tb.Fatal(err)
	}
	layout := filepath.Join(dir, "layout")
	img := layout + ":latest"
	run := func(name string, args ...string) {
		tb.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("umoci", "init", "--layout", layout)
	run("umoci", "new", "--image", img)

	b1 := filepath.Join(dir, "bundle1")
	run("umoci", "unpack", "--image", img, b1)
	rootfs := filepath.Join(b1, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	run("cp", bb, filepath.Join(rootfs, "bin", "busybox"))
	for _, applet := range []string{"sh", "cat", "echo", "ls", "test"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			tb.Fatal(err)
		}
	}
	run("umoci", "repack", "--image", img, b1)

	b2 := filepath.Join(dir, "bundle2")
	run("umoci", "unpack", "--image", img, b2)
	err = os.WriteFile(filepath.Join(b2, "rootfs", "etc", "zlayer-image"), []byte("layer two\n"), 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	run("umoci", "repack", "--image", img, b2)
	run("umoci", "config", "--image", img, "--config.cmd", "/bin/sh")

	tarball := filepath.Join(dir, "image.tar")
	run("tar", "-C", layout, "-cf", tarball, ".")
	return tarball
}
