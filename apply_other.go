//go:build !linux

package zlayer

import (
	"fmt"
	"log/slog"
)

// openLayerTree refuses: applying a layer needs Linux's openat2 or *at
// calls with AT_SYMLINK_NOFOLLOW, mknodat and the xattr calls.
func openLayerTree(dir string, paths layerPaths, log *slog.Logger) (layerTree, error) {
	return nil, fmt.Errorf("applying layers needs Linux: %w", ErrUnavailable)
}
