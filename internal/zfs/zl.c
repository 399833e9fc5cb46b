#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <libzfs.h>
#include <libzfs_core.h>
#include <sys/fs/zfs.h>
#include "zl.h"

/* zfs_prop.h is not self-contained; the one declaration needed is here. */
extern int zfs_prop_get_type(zfs_prop_t);
#define ZL_PROP_TYPE_NUMBER 0
#define ZL_PROP_TYPE_STRING 1
#define ZL_PROP_TYPE_INDEX 2

int
zl_nvl_add_prop(nvlist_t *nvl, const char *name, const char *value)
{
	zfs_prop_t prop = zfs_name_to_prop(name);
	uint64_t num;

	if (prop == ZPROP_INVAL) {
		if (!zfs_prop_user(name))
			return (EINVAL);
		return (nvlist_add_string(nvl, name, value));
	}
	switch (zfs_prop_get_type(prop)) {
	case ZL_PROP_TYPE_STRING:
		return (nvlist_add_string(nvl, name, value));
	case ZL_PROP_TYPE_INDEX:
		if (zfs_prop_string_to_index(prop, value, &num) != 0)
			return (EINVAL);
		return (nvlist_add_uint64(nvl, name, num));
	default:
		if (zfs_nicestrtonum(NULL, value, &num) != 0)
			return (EINVAL);
		return (nvlist_add_uint64(nvl, name, num));
	}
}

static int
zl_collect(zfs_handle_t *zhp, void *arg)
{
	zl_handles_t *hs = arg;

	if (hs->n == hs->cap) {
		int cap = hs->cap ? hs->cap * 2 : 64;
		zfs_handle_t **h = realloc(hs->h, cap * sizeof (*h));
		if (h == NULL) {
			zfs_close(zhp);
			return (ENOMEM);
		}
		hs->h = h;
		hs->cap = cap;
	}
	hs->h[hs->n++] = zhp;
	return (0);
}

int
zl_iter_filesystems(zfs_handle_t *zhp, zl_handles_t *out)
{
	return (zfs_iter_filesystems(zhp, zl_collect, out));
}

int
zl_iter_snapshots(zfs_handle_t *zhp, zl_handles_t *out)
{
	return (zfs_iter_snapshots(zhp, B_FALSE, zl_collect, out, 0, 0));
}

void
zl_handles_free(zl_handles_t *hs)
{
	for (int i = 0; i < hs->n; i++)
		zfs_close(hs->h[i]);
	free(hs->h);
	hs->h = NULL;
	hs->n = hs->cap = 0;
}

int
zl_user_prop_local(zfs_handle_t *zhp, const char *name, const char **value)
{
	nvlist_t *props = zfs_get_user_props(zhp);
	nvlist_t *pv;
	char *src, *val;

	if (nvlist_lookup_nvlist(props, name, &pv) != 0)
		return (ENOENT);
	if (nvlist_lookup_string(pv, ZPROP_SOURCE, &src) != 0 ||
	    strcmp(src, zfs_get_name(zhp)) != 0)
		return (ENOENT);
	if (nvlist_lookup_string(pv, ZPROP_VALUE, &val) != 0)
		return (ENOENT);
	*value = val;
	return (0);
}

nvpair_t *
zl_user_prop_next(zfs_handle_t *zhp, nvpair_t *prev, const char **name,
    const char **value, const char **source)
{
	nvlist_t *props = zfs_get_user_props(zhp);
	nvpair_t *p = prev;
	nvlist_t *pv;
	char *s, *v;

	while ((p = nvlist_next_nvpair(props, p)) != NULL) {
		if (nvpair_value_nvlist(p, &pv) != 0)
			continue;
		if (nvlist_lookup_string(pv, ZPROP_VALUE, &v) != 0)
			continue;
		if (nvlist_lookup_string(pv, ZPROP_SOURCE, &s) != 0)
			s = "";
		*name = nvpair_name(p);
		*value = v;
		*source = s;
		return (p);
	}
	return (NULL);
}

int
zl_snapshot_one(const char *snap, nvlist_t *props)
{
	nvlist_t *snaps = fnvlist_alloc();
	nvlist_t *errs = NULL;
	int err;

	fnvlist_add_boolean(snaps, snap);
	err = lzc_snapshot(snaps, props, &errs);
	fnvlist_free(snaps);
	if (errs != NULL)
		fnvlist_free(errs);
	return (err);
}

int
zl_destroy_snaps(const char **snaps, int n, int defer)
{
	nvlist_t *list = fnvlist_alloc();
	nvlist_t *errs = NULL;
	int err;

	for (int i = 0; i < n; i++)
		fnvlist_add_boolean(list, snaps[i]);
	err = lzc_destroy_snaps(list, defer ? B_TRUE : B_FALSE, &errs);
	fnvlist_free(list);
	if (errs != NULL)
		fnvlist_free(errs);
	return (err);
}

/* Returns ERR, or the first per-item error lzc reported in ERRS. */
static int
zl_first_err(int err, nvlist_t *errs)
{
	if (errs != NULL) {
		nvpair_t *p = nvlist_next_nvpair(errs, NULL);
		if (err == 0 && p != NULL)
			err = fnvpair_value_int32(p);
		fnvlist_free(errs);
	}
	return (err);
}

int
zl_hold_one(const char *snap, const char *tag)
{
	nvlist_t *holds = fnvlist_alloc();
	nvlist_t *errs = NULL;
	int err;

	fnvlist_add_string(holds, snap, tag);
	err = lzc_hold(holds, -1, &errs);
	fnvlist_free(holds);
	return (zl_first_err(err, errs));
}

int
zl_release_one(const char *snap, const char *tag)
{
	nvlist_t *rel = fnvlist_alloc();
	nvlist_t *tags = fnvlist_alloc();
	nvlist_t *errs = NULL;
	int err;

	fnvlist_add_boolean(tags, tag);
	fnvlist_add_nvlist(rel, snap, tags);
	err = lzc_release(rel, &errs);
	fnvlist_free(tags);
	fnvlist_free(rel);
	return (zl_first_err(err, errs));
}

int
zl_holds(const char *snap, nvlist_t **holds)
{
	return (lzc_get_holds(snap, holds));
}

int
zl_sync(const char *pool)
{
	nvlist_t *in = fnvlist_alloc();
	int err;

	fnvlist_add_boolean_value(in, "force", B_FALSE);
	err = lzc_sync(pool, in, NULL);
	fnvlist_free(in);
	return (err);
}

/*
 * zfs_show_diffs closes the descriptor it writes to when its writer thread
 * ran, and leaves it open when it failed before that. It is given a
 * duplicate; afterwards the duplicate is closed unless libzfs did, which
 * fstat tells apart even if the number was reused meanwhile: the caller
 * still holds the original, so no other file can have that pipe's inode.
 */
int
zl_show_diffs(libzfs_handle_t *h, const char *fs, int outfd,
    const char *from, const char *to, int flags)
{
	struct stat want, got;
	zfs_handle_t *zhp;
	int fd, err;

	if ((zhp = zfs_open(h, fs, ZFS_TYPE_FILESYSTEM)) == NULL)
		return (-1);
	if (fstat(outfd, &want) != 0 || (fd = dup(outfd)) < 0) {
		zfs_close(zhp);
		return (-1);
	}
	err = zfs_show_diffs(zhp, fd, from, to, flags);
	if (fstat(fd, &got) == 0 && got.st_ino == want.st_ino &&
	    got.st_dev == want.st_dev)
		(void) close(fd);
	zfs_close(zhp);
	return (err);
}
