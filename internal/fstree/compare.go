package fstree

import (
	"path"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Diff compares two trees entry by entry and returns a readable
// difference, empty when they match. It ignores Blocks, takes an empty
// xattr map for none, matches a zero modification time (see [AnyMtime])
// with any, and takes further go-cmp options such as the ones below.
func Diff(want, got Tree, opts ...cmp.Option) string {
	base := []cmp.Option{
		cmpopts.IgnoreFields(Entry{}, "Blocks"),
		cmpopts.EquateEmpty(),
		cmp.FilterValues(func(x, y time.Time) bool {
			return x.IsZero() || y.IsZero()
		}, cmp.Ignore()),
	}
	return cmp.Diff(want, got, append(base, opts...)...)
}

// IgnorePaths leaves out of the comparison the entries at the given paths
// and, for a pattern ending in "/...", everything below it. "./..." is
// every path but the root.
func IgnorePaths(patterns ...string) cmp.Option {
	return cmpopts.IgnoreMapEntries(func(p string, _ Entry) bool {
		return matchAny(patterns, p)
	})
}

// IgnoreMtime compares the entries at the given paths (patterns as for
// IgnorePaths) without their modification times: directories whose
// children changed, or that an operation made without saying when.
func IgnoreMtime(patterns ...string) cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		if len(p) < 2 {
			return false
		}
		sf, ok := p.Last().(cmp.StructField)
		if !ok || sf.Name() != "Mtime" {
			return false
		}
		mi, ok := p[len(p)-2].(cmp.MapIndex)
		if !ok {
			return false
		}
		return matchAny(patterns, mi.Key().String())
	}, cmp.Ignore())
}

// IgnoreXattrs drops the xattrs whose names start with one of prefixes,
// such as "security.selinux" set by the host.
func IgnoreXattrs(prefixes ...string) cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		mi, ok := p.Last().(cmp.MapIndex)
		if !ok || len(p) < 2 {
			return false
		}
		sf, ok := p[len(p)-2].(cmp.StructField)
		if !ok || sf.Name() != "Xattrs" {
			return false
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(mi.Key().String(), pre) {
				return true
			}
		}
		return false
	}, cmp.Ignore())
}

// MtimeWithin compares modification times with a tolerance, for file
// systems that round them.
func MtimeWithin(d time.Duration) cmp.Option {
	return cmpopts.EquateApproxTime(d)
}

func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if dir, ok := strings.CutSuffix(pat, "/..."); ok {
			if dir == "." && p != "." || strings.HasPrefix(p, dir+"/") {
				return true
			}
			continue
		}
		if path.Clean(pat) == p {
			return true
		}
	}
	return false
}
