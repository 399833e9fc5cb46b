package snapshotter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/zlayer/zlayer"

	snapshotter "github.com/zlayer/zlayer/examples/containerd-snapshotter"
)

// TestContainerd runs a real containerd (the system's, 1.6 on Debian 12)
// with the zlayer-snapshotter program as its proxy snapshotter: it imports
// an image, runs containers from it and checks in the pool that the
// container's write landed in its clone and left the image layers alone.
func TestContainerd(t *testing.T) {
	requireZFS(t)
	requireTools(t, "containerd", "ctr", "runc", "containerd-shim-runc-v2")
	dir := t.TempDir()
	image := buildImage(t, filepath.Join(dir, "image"))

	name := poolName("zc")
	root := name + "/containerd"
	sock := filepath.Join(dir, "zlayer.sock")
	t.Cleanup(func() { destroyPool(t, name) })
	stopDaemon := startProcess(t, filepath.Join(dir, "snapshotter.log"), sock,
		[]string{daemonEnv + "=1"}, os.Args[0],
		"-pool", name, "-root", root, "-socket", sock,
		"-create-file-pool", filepath.Join(dir, "vdev"), "-file-pool-size", fmt.Sprint(2<<30))

	ctrSock := filepath.Join(dir, "containerd.sock")
	config := filepath.Join(dir, "containerd.toml")
	writeContainerdConfig(t, config, filepath.Join(dir, "containerd"), ctrSock, sock)
	stopContainerd := startProcess(t, filepath.Join(dir, "containerd.log"), ctrSock, nil,
		"containerd", "--config", config)

	ctr := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ctr", append([]string{"--address", ctrSock}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	const ref = "zlayer.test/busybox:latest"
	ctr("images", "import", "--snapshotter", "zlayer", "--base-name", "zlayer.test/busybox", image)
	ctr("run", "--snapshotter", "zlayer", "--rm", ref, "c1", "/bin/sh", "-c", "echo hi > /marker")
	// c2 is kept after it exits, so that its snapshot can be read.
	out := ctr("run", "--snapshotter", "zlayer", ref, "c2", "/bin/sh", "-c",
		"echo hi > /marker && cat /marker /etc/zlayer-image")
	if out != "hi\nlayer two\n" {
		t.Errorf("c2 printed %q", out)
	}
	stopContainerd()
	stopDaemon()

	checkContainerdPool(t, name, root)
}

// checkContainerdPool opens the pool the program left and looks for c2's
// clone by the key in its labels, reads its write, and checks that c1's
// clone is gone and the image layers are unchanged.
func checkContainerdPool(t *testing.T, poolName, root string) {
	ctx := context.Background()
	pool, err := zlayer.OpenPool(ctx, poolName)
	if err != nil {
		t.Fatal(err)
	}
	st, err := zlayer.OpenStore(ctx, pool, &zlayer.StoreOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := snapshotter.New(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	infos := walkInfos(t, sn)

	var committed []snapshots.Info
	var c2 *zlayer.Clone
	for c, err := range st.Clones(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		key := c.Labels["a.name"]
		switch {
		case strings.HasSuffix(key, "/c2"):
			c2 = c
		case strings.HasSuffix(key, "/c1"):
			t.Errorf("c1 ran with --rm and its clone %s is still there", c.Dataset)
		}
	}
	for _, i := range infos {
		if i.Kind == snapshots.KindCommitted {
			committed = append(committed, i)
		}
	}
	if c2 == nil {
		t.Fatalf("no clone in %s has a key ending in /c2; snapshots: %v", root, infos)
	}
	if len(committed) != 2 {
		t.Fatalf("want the image's 2 layers committed, have %d: %v", len(committed), committed)
	}

	dir := t.TempDir()
	if err := st.Mount(ctx, c2.ID, dir, &zlayer.MountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "marker"))
	if err := st.Unmount(ctx, dir); err != nil {
		t.Error(err)
	}
	if err != nil || string(got) != "hi\n" {
		t.Errorf("c2's clone %s: /marker: %q, %v", c2.Dataset, got, err)
	}

	top := infos[c2.Labels["a.parent"]]
	if top.Kind != snapshots.KindCommitted || top.Parent == "" || infos[top.Parent].Parent != "" {
		t.Errorf("c2's parent chain: %+v -> %+v", top, infos[top.Parent])
	}
	for l, err := range st.Layers(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if l.ID == "empty" {
			continue
		}
		u, err := st.Usage(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		if u.Written != 0 || !l.Committed {
			t.Errorf("image layer %s changed after its commit: %d bytes written", l.Dataset, u.Written)
		}
		if l.Labels["c.name"] != top.Name {
			continue
		}
		if err := st.Mount(ctx, l.ID, dir, &zlayer.MountOptions{ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
		_, merr := os.Lstat(filepath.Join(dir, "marker"))
		_, berr := os.Lstat(filepath.Join(dir, "bin", "busybox"))
		if err := st.Unmount(ctx, dir); err != nil {
			t.Error(err)
		}
		if !errors.Is(merr, os.ErrNotExist) || berr != nil {
			t.Errorf("top image layer %s: /marker: %v; /bin/busybox: %v", l.Dataset, merr, berr)
		}
	}
}

func writeContainerdConfig(t *testing.T, path, dir, address, snapshotterSock string) {
	t.Helper()
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %q

[proxy_plugins]
  [proxy_plugins.zlayer]
    type = "snapshot"
    address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, snapshotterSock)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startProcess starts a server logging to logPath and waits for its
// socket to appear. The returned stop sends SIGTERM and waits; it also
// runs at cleanup, and the log is shown when the test failed.
func startProcess(t *testing.T, logPath, sock string, env []string, name string, args ...string) (stop func()) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop within a minute of SIGTERM", name)
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", name, tail(b, 60))
			}
		}
	}
	t.Cleanup(stop)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(sock); err == nil {
			return stop
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			t.Fatalf("%s exited before serving: %v", name, err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("%s made no socket %s in 2 minutes", name, sock)
		}
	}
}

func tail(b []byte, lines int) []byte {
	parts := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return bytes.Join(parts, []byte("\n"))
}

// destroyPool destroys a pool the snapshotter program made, if it is
// there; its file lives in the test's temporary folder.
func destroyPool(t *testing.T, name string) {
	ctx := context.Background()
	p, err := zlayer.OpenPool(ctx, name)
	if errors.Is(err, zlayer.ErrNotFound) {
		return
	}
	if err == nil {
		err = p.Destroy(ctx)
	}
	if err != nil {
		t.Errorf("destroy pool %s: %v", name, err)
	}
}
