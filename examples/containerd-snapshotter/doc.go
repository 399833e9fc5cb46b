// Package snapshotter serves zlayer stores to containerd: it implements
// containerd's snapshots.Snapshotter and snapshots.Cleaner over a
// [zlayer.Store].
//
// Committed snapshots are committed zlayer layers, active snapshots are
// writable zlayer clones and views are read-only clones. A snapshot without
// a parent is a clone of one empty committed layer that the adapter keeps in
// the store (id "empty"), so that every active snapshot is a clone and
// Commit is always zlayer's CommitClone.
//
// The pool is the only state. A containerd key or name is mapped to a store
// id by hashing it, so a lookup opens one or two datasets whatever the store
// holds; the key itself, the kind, the parent's name, the labels and the
// times live in the zlayer labels of the dataset. There is no database to
// disagree with the pool after a crash.
//
// One Snapshotter must own its store root: its locks are in-process, and a
// second process working on the same root could interleave a Commit with
// an Update of the same snapshot.
package snapshotter
