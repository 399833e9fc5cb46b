/*
 * Small C helpers for the Go binding: building typed property lists,
 * collecting iteration results and reading user properties, so that no
 * callback has to cross from C into Go.
 */
#ifndef ZLAYER_ZL_H
#define ZLAYER_ZL_H

#include <stdint.h>
#include <libzfs.h>
#include <libzfs_core.h>

/* Adds NAME=VALUE to NVL typed as ZFS expects it; returns an errno. */
int zl_nvl_add_prop(nvlist_t *nvl, const char *name, const char *value);

/* A growable array of open dataset handles filled by an iteration. */
typedef struct zl_handles {
	zfs_handle_t **h;
	int n;
	int cap;
} zl_handles_t;

int zl_iter_filesystems(zfs_handle_t *zhp, zl_handles_t *out);
int zl_iter_snapshots(zfs_handle_t *zhp, zl_handles_t *out);
void zl_handles_free(zl_handles_t *hs);

/* Reads one user property that is set locally; 0 if found, else ENOENT. */
int zl_user_prop_local(zfs_handle_t *zhp, const char *name, const char **value);

/* Iterates over user properties; returns the next pair after PREV. */
nvpair_t *zl_user_prop_next(zfs_handle_t *zhp, nvpair_t *prev,
    const char **name, const char **value, const char **source);

int zl_snapshot_one(const char *snap, nvlist_t *props);
int zl_destroy_snaps(const char **snaps, int n, int defer);
int zl_hold_one(const char *snap, const char *tag);
int zl_release_one(const char *snap, const char *tag);
int zl_holds(const char *snap, nvlist_t **holds);

int zl_sync(const char *pool);
int zl_show_diffs(libzfs_handle_t *h, const char *fs, int outfd,
    const char *from, const char *to, int flags);

#endif
