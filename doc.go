// Package zlayer keeps container image and container layers on ZFS.
//
// A base layer is a ZFS filesystem; every further layer is a clone of its
// parent's commit snapshot, and a container's writable layer is a clone of
// the image's top layer. Reads share blocks with the snapshots below and a
// write allocates only the blocks it changes, so creating a layer costs the
// same whatever the size of its parent.
//
// The library talks to ZFS in-process through libzfs and libzfs_core; it
// never runs the zfs or zpool commands. Every entry point returns an error
// matching [ErrUnavailable] on a machine without ZFS.
package zlayer
