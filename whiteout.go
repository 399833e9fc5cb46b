package zlayer

import (
	"fmt"
	"strings"
)

// OCI whiteout names, from the image-spec's layer changeset format. A
// layer deletes NAME from the layers below it with an empty entry named
// WhiteoutPrefix+NAME beside it, and hides everything below a directory
// with an entry named WhiteoutOpaque inside it.
const (
	// WhiteoutPrefix starts the name of an entry that deletes its
	// remainder.
	WhiteoutPrefix = ".wh."

	// WhiteoutMetaPrefix starts names the spec reserves for markers;
	// WhiteoutOpaque is the only one defined.
	WhiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix

	// WhiteoutOpaque marks its directory opaque: nothing of the layers
	// below shows through it.
	WhiteoutOpaque = WhiteoutMetaPrefix + ".opq"
)

// WhiteoutKind tells what a base name means to a layer.
type WhiteoutKind int

const (
	// NotWhiteout is an ordinary name.
	NotWhiteout WhiteoutKind = iota
	// WhiteoutFile deletes a sibling from the layers below.
	WhiteoutFile
	// WhiteoutOpaqueDir hides the layers below its directory.
	WhiteoutOpaqueDir
)

func (k WhiteoutKind) String() string {
	switch k {
	case NotWhiteout:
		return "none"
	case WhiteoutFile:
		return "whiteout"
	case WhiteoutOpaqueDir:
		return "opaque"
	default:
		return "unknown"
	}
}

// ParseWhiteout classifies one path component (a base name, without
// slashes). For a WhiteoutFile it returns the name deleted. A whiteout that
// deletes nothing real is refused with an error wrapping [ErrInvalid]: an
// empty remainder, "." or "..", a remainder holding a slash, or a reserved
// ".wh..wh." name other than [WhiteoutOpaque].
func ParseWhiteout(base string) (WhiteoutKind, string, error) {
	if !strings.HasPrefix(base, WhiteoutPrefix) {
		return NotWhiteout, "", nil
	}
	if base == WhiteoutOpaque {
		return WhiteoutOpaqueDir, "", nil
	}
	if strings.HasPrefix(base, WhiteoutMetaPrefix) {
		return 0, "", fmt.Errorf("whiteout %q: unknown marker: %w", base, ErrInvalid)
	}
	name := base[len(WhiteoutPrefix):]
	switch {
	case name == "", name == ".", name == "..":
		return 0, "", fmt.Errorf("whiteout %q names no entry: %w", base, ErrInvalid)
	case strings.ContainsAny(name, "/\x00"):
		return 0, "", fmt.Errorf("whiteout %q is not a base name: %w", base, ErrInvalid)
	}
	return WhiteoutFile, name, nil
}

// overlayXattr reports whether name is an attribute overlayfs keeps for
// itself (trusted.overlay.*, or user.overlay.* under the userxattr mount
// option). Those steer an overlay mount rather than describe the file:
// applying a layer drops them and a diff leaves them out.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}
