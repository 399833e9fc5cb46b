// Package testzfs gives tests real ZFS pools on files.
//
// A test that needs ZFS calls Require first. Where ZFS cannot be reached the
// test is skipped, except under CI (CI=true), where it fails: a ZFS test
// must never pass by not running.
package testzfs

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/zlayer/zlayer/internal/zfs"
)

// Require stops the test unless ZFS is usable from this process.
func Require(tb testing.TB) {
	tb.Helper()
	err := zfs.Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("ZFS is required under CI and cannot be reached: %v "+
			"(run the tests through scripts/test.sh)", err)
	}
	tb.Skipf("ZFS not reachable (%v); scripts/test.sh runs this in a guest", err)
}

// PoolName returns a pool name no other test uses.
func PoolName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// ZFS runs the zfs command for cross-checks in tests and returns its
// trimmed output.
func ZFS(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("zfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
