/*
 * engine/cli/cmd_cp.c - `sandwire cp [NAME:]SRC [NAME:]DST`: files and
 * directory trees between the host and a sandbox, through the agent's
 * filesystem requests (rfs.c), one file at a time on one connection.
 *
 * What is kept: contents, permission bits (07777), modification time,
 * symbolic links as links.  Every file's size is checked once it arrived
 * (remote Stat after an upload; bytes received against the size announced
 * by Stat for a download), so a file that changed or was cut short during
 * the copy is reported, not silently kept.
 *
 * File contents move as raw bulk records when the agent speaks generation
 * 8 or later, as fs.data frames otherwise (rfs.c); -v names which, per file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CP_PROGRESS_MIN (8u * 1024u * 1024u) /* files this large get a progress bar */
#define CP_PROGRESS_EVERY_MS 100

struct cp {
	struct wire w;
	const char *sandbox;
	char err[1536];
	bool progress; /* stderr is a terminal and -q was not given */
	bool verbose;  /* -v: say how each file's bytes travelled */
	const char *label;
	int64_t t0, shown;
	int errors;
};

/* Report a failure of one item and count it; the copy goes on with the next. */
__attribute__((format(printf, 2, 3))) static void cp_error(struct cp *cp, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (cp->progress)
		fputs("\r\033[K", stderr); /* a bar left half-drawn */
	cli_err("cp: %s", buf);
	cp->errors++;
}

/* True when <rc> means the connection can no longer be used. */
static bool cp_fatal(int rc)
{
	return rc == -EPIPE || rc == -EPROTO || rc == -ETIMEDOUT || rc == -ENOMEM;
}

/* "<a>/<b>", malloc'd. */
static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a);
	char *out = malloc(n + strlen(b) + 2);

	if (out)
		sprintf(out, "%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
	return out;
}

/* Last component of <p> (trailing slashes ignored) into <buf>. */
static const char *path_base(const char *p, char *buf, size_t cap)
{
	size_t n = strlen(p), start;

	while (n > 1 && p[n - 1] == '/')
		n--;
	start = n;
	while (start > 0 && p[start - 1] != '/')
		start--;
	snprintf(buf, cap, "%.*s", (int)(n - start), p + start);
	return buf;
}

static void cp_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct cp *cp = ctx;
	int64_t now = cli_now_ms();
	char a[32], b[32], r[32];
	double secs;

	if (!cp->progress || total < CP_PROGRESS_MIN)
		return;
	if (done < total && now - cp->shown < CP_PROGRESS_EVERY_MS)
		return;
	cp->shown = now;
	secs = (double)(now - cp->t0) / 1000.0;
	fprintf(stderr, "\r%-32.32s %3d%%  %s / %s  %s/s\033[K", cp->label,
		(int)(done * 100 / total), cli_fmt_bytes((double)done, a, sizeof(a)),
		cli_fmt_bytes((double)total, b, sizeof(b)),
		cli_fmt_bytes(secs > 0 ? (double)done / secs : 0, r, sizeof(r)));
	if (done >= total)
		fputs("\r\033[K", stderr);
}

/* -v: "<path>: N bytes over raw bulk" when the stream just done used it (<bulk_before>). */
static void cp_note(struct cp *cp, const char *path, uint64_t bytes, uint64_t bulk_before)
{
	if (cp->verbose)
		fprintf(stderr, "sandwire: cp: %s: %llu bytes %s\n", path,
			(unsigned long long)bytes,
			cp->w.bulk_streams > bulk_before ? "over raw bulk" : "as fs.data frames");
}

static void cp_progress_start(struct cp *cp, const char *label)
{
	cp->label = label;
	cp->t0 = cli_now_ms();
	cp->shown = 0;
}

/* ---- host -> sandbox ------------------------------------------------------------------ */

static int cp_up(struct cp *cp, const char *local, const char *remote, const struct stat *st);

static int cp_up_file(struct cp *cp, const char *local, const char *remote, const struct stat *st)
{
	struct rfs_entry got = {0};
	uint64_t h, bulk_before = cp->w.bulk_streams;
	int fd, rc;

	fd = open(local, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cp_error(cp, "cannot read %s: %s", local, strerror(errno));
		return 0;
	}
	rc = rfs_open(&cp->w, remote, true, st->st_mode, &h, cp->err, sizeof(cp->err));
	if (rc < 0)
		goto out;
	cp_progress_start(cp, local);
	rc = rfs_write_from_fd(
		&cp->w, h, fd, (uint64_t)st->st_size, cp_progress, cp, cp->err, sizeof(cp->err));
	if (rc < 0) {
		if (!cp_fatal(rc)) /* the agent refused the stream: the handle is still open */
			rfs_close(&cp->w, h, (char[64]){0}, 64);
		goto out;
	}
	rc = rfs_close(&cp->w, h, cp->err, sizeof(cp->err));
	if (rc == 0)
		rc = rfs_setstat(
			&cp->w, remote, st->st_mode, st->st_mtim.tv_sec, cp->err, sizeof(cp->err));
	if (rc == 0)
		rc = rfs_stat(&cp->w, remote, false, &got, cp->err, sizeof(cp->err));
	if (rc == 0 && got.size != (uint64_t)st->st_size) {
		snprintf(cp->err, sizeof(cp->err), "%s: %llu bytes arrived of %lld sent", remote,
			(unsigned long long)got.size, (long long)st->st_size);
		rc = -EIO;
	}
	free(got.path);
	if (rc == 0)
		cp_note(cp, remote, (uint64_t)st->st_size, bulk_before);
out:
	close(fd);
	if (rc < 0)
		cp_error(cp, "%s", cp->err);
	return cp_fatal(rc) ? rc : 0;
}

static int cp_up_dir(struct cp *cp, const char *local, const char *remote, const struct stat *st)
{
	struct dirent *de;
	struct stat cst;
	DIR *d;
	int rc = 0;

	if (rfs_mkdir(&cp->w, remote, cp->err, sizeof(cp->err)) < 0) {
		cp_error(cp, "%s", cp->err);
		return 0;
	}
	d = opendir(local);
	if (!d) {
		cp_error(cp, "cannot read directory %s: %s", local, strerror(errno));
		return 0;
	}
	while (rc == 0 && (de = readdir(d))) {
		char *l, *r;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		l = path_join(local, de->d_name);
		r = path_join(remote, de->d_name);
		if (!l || !r)
			rc = -ENOMEM;
		else if (lstat(l, &cst) < 0)
			cp_error(cp, "cannot stat %s: %s", l, strerror(errno));
		else
			rc = cp_up(cp, l, r, &cst);
		free(l);
		free(r);
	}
	closedir(d);
	if (rc == 0 && rfs_setstat(&cp->w, remote, st->st_mode, st->st_mtim.tv_sec, cp->err,
			       sizeof(cp->err)) < 0)
		cp_error(cp, "%s", cp->err);
	return rc;
}

/* Copy one item up; returns < 0 only when the connection is unusable. */
static int cp_up(struct cp *cp, const char *local, const char *remote, const struct stat *st)
{
	char target[PATH_MAX];
	ssize_t n;

	if (S_ISREG(st->st_mode))
		return cp_up_file(cp, local, remote, st);
	if (S_ISDIR(st->st_mode))
		return cp_up_dir(cp, local, remote, st);
	if (S_ISLNK(st->st_mode)) {
		n = readlink(local, target, sizeof(target) - 1);
		if (n < 0) {
			cp_error(cp, "cannot read link %s: %s", local, strerror(errno));
			return 0;
		}
		target[n] = '\0';
		rfs_remove(&cp->w, remote, cp->err, sizeof(cp->err)); /* replace what is there */
		if (rfs_symlink(&cp->w, target, remote, cp->err, sizeof(cp->err)) < 0)
			cp_error(cp, "%s", cp->err);
		return 0;
	}
	cli_err("cp: skipping %s: not a file, directory or symbolic link", local);
	return 0;
}

/* ---- sandbox -> host ------------------------------------------------------------------ */

static int cp_down(struct cp *cp, const struct rfs_entry *e, const char *local);

static void set_times(int dirfd_or_fd, const char *path, int64_t mtime)
{
	struct timespec ts[2] = {{0, UTIME_OMIT}, {mtime, 0}};

	if (mtime == INT64_MIN)
		return;
	if (path)
		utimensat(AT_FDCWD, path, ts, 0);
	else
		futimens(dirfd_or_fd, ts);
}

static int cp_down_file(struct cp *cp, const struct rfs_entry *e, const char *local)
{
	uint64_t h, got = 0, bulk_before = cp->w.bulk_streams;
	int fd, rc;

	fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		cp_error(cp, "cannot write %s: %s", local, strerror(errno));
		return 0;
	}
	rc = rfs_open(&cp->w, e->path, false, 0, &h, cp->err, sizeof(cp->err));
	if (rc < 0)
		goto out;
	cp_progress_start(cp, e->path);
	rc = rfs_read_to_fd(
		&cp->w, h, fd, e->size, &got, cp_progress, cp, cp->err, sizeof(cp->err));
	if (rc < 0) {
		if (!cp_fatal(rc)) /* the stream ended early: the handle is still open */
			rfs_close(&cp->w, h, (char[64]){0}, 64);
		goto out;
	}
	rc = rfs_close(&cp->w, h, cp->err, sizeof(cp->err));
	if (rc == 0 && got != e->size) {
		snprintf(cp->err, sizeof(cp->err),
			"%s: %llu bytes arrived of %llu (did it change "
			"during the copy?)",
			e->path, (unsigned long long)got, (unsigned long long)e->size);
		rc = -EIO;
	}
	if (rc == 0 && fchmod(fd, e->mode & 07777) < 0) {
		snprintf(cp->err, sizeof(cp->err), "chmod %s: %s", local, strerror(errno));
		rc = -errno;
	}
	if (rc == 0) {
		set_times(fd, NULL, e->mtime);
		cp_note(cp, e->path, got, bulk_before);
	}
out:
	if (close(fd) < 0 && rc == 0) {
		snprintf(cp->err, sizeof(cp->err), "write %s: %s", local, strerror(errno));
		rc = -EIO;
	}
	if (rc < 0)
		cp_error(cp, "%s", cp->err);
	return cp_fatal(rc) ? rc : 0;
}

static int cp_down_dir(struct cp *cp, const struct rfs_entry *e, const char *local)
{
	struct rfs_entry *v;
	char base[NAME_MAX + 1];
	size_t n;
	uint64_t h;
	int rc = 0;

	if (mkdir(local, 0700) < 0 && errno != EEXIST) {
		cp_error(cp, "cannot create directory %s: %s", local, strerror(errno));
		return 0;
	}
	if (rfs_opendir(&cp->w, e->path, &h, cp->err, sizeof(cp->err)) < 0) {
		cp_error(cp, "%s", cp->err);
		return 0;
	}
	do {
		rc = rfs_readdir(&cp->w, h, &v, &n, cp->err, sizeof(cp->err));
		if (rc < 0) {
			cp_error(cp, "%s", cp->err);
			break;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			char *l = path_join(local, path_base(v[i].path, base, sizeof(base)));

			rc = l ? cp_down(cp, &v[i], l) : -ENOMEM;
			free(l);
		}
		rfs_entries_free(v, n);
	} while (n && rc == 0);
	if (cp_fatal(rc))
		return rc;
	rfs_close(&cp->w, h, cp->err, sizeof(cp->err));
	if (chmod(local, e->mode & 07777) < 0)
		cp_error(cp, "chmod %s: %s", local, strerror(errno));
	set_times(-1, local, e->mtime);
	return 0;
}

/* Copy one item down; returns < 0 only when the connection is unusable. */
static int cp_down(struct cp *cp, const struct rfs_entry *e, const char *local)
{
	char target[PATH_MAX];

	switch (e->kind) {
	case PROTO_FS_KIND_FILE:
		return cp_down_file(cp, e, local);
	case PROTO_FS_KIND_DIR:
		return cp_down_dir(cp, e, local);
	case PROTO_FS_KIND_SYMLINK:
		if (rfs_readlink(&cp->w, e->path, target, sizeof(target), cp->err,
			    sizeof(cp->err)) < 0) {
			cp_error(cp, "%s", cp->err);
			return 0;
		}
		unlink(local); /* replace what is there */
		if (symlink(target, local) < 0)
			cp_error(cp, "cannot create link %s: %s", local, strerror(errno));
		return 0;
	default:
		cli_err("cp: skipping %s: not a file, directory or symbolic link", e->path);
		return 0;
	}
}

/* ---- the command ---------------------------------------------------------------------- */

/* "NAME:PATH" -> <name> and *<path>; false for a local path. */
static bool split_remote(const char *arg, char *name, size_t cap, const char **path)
{
	const char *colon = strchr(arg, ':'), *slash = strchr(arg, '/');
	char why[128];

	if (!colon || (slash && slash < colon) || arg[0] == '.' || colon == arg ||
		(size_t)(colon - arg) >= cap)
		return false;
	if (engine_name_check(arg, (size_t)(colon - arg), why, sizeof(why)) < 0)
		return false;
	snprintf(name, cap, "%.*s", (int)(colon - arg), arg);
	*path = colon + 1;
	return true;
}

static int cp_upload(struct cp *cp, const char *src, const char *dst)
{
	struct rfs_entry de = {0};
	char base[NAME_MAX + 1];
	char *target = NULL;
	struct stat st;
	int rc;

	if (stat(src, &st) < 0)
		return cli_fail("cp: cannot read %s: %s", src, strerror(errno));
	rc = rfs_stat(&cp->w, dst, true, &de, cp->err, sizeof(cp->err));
	if (rc == 0 && de.kind == PROTO_FS_KIND_DIR)
		target = path_join(dst, path_base(src, base, sizeof(base)));
	else if (rc == 0 && S_ISDIR(st.st_mode))
		rc = cli_fail("cp: %s:%s exists and is not a directory: cannot put directory %s "
			      "there",
			cp->sandbox, dst, src);
	else if (rc == 0 || (rc == -ENOENT && (dst[strlen(dst) - 1] != '/' || S_ISDIR(st.st_mode))))
		target = strdup(dst);
	else if (rc == -ENOENT)
		rc = cli_fail("cp: %s:%s: no such directory", cp->sandbox, dst);
	else
		rc = cli_fail("cp: %s", cp->err);
	free(de.path);
	if (!target)
		return rc ? rc : cli_fail("out of memory");
	rc = cp_up(cp, src, target, &st);
	free(target);
	return rc < 0 || cp->errors ? CLI_EXIT_ERR : 0;
}

static int cp_download(struct cp *cp, const char *src, const char *dst)
{
	struct rfs_entry e = {0};
	char base[NAME_MAX + 1];
	char *target = NULL;
	struct stat st;
	bool have;
	int rc = 0;

	if (rfs_stat(&cp->w, src, true, &e, cp->err, sizeof(cp->err)) < 0)
		return cli_fail("cp: %s", cp->err);
	have = stat(dst, &st) == 0;
	if (!have && errno != ENOENT)
		rc = cli_fail("cp: cannot use %s: %s", dst, strerror(errno));
	else if (have && S_ISDIR(st.st_mode))
		target = path_join(dst, path_base(src, base, sizeof(base)));
	else if (have && e.kind == PROTO_FS_KIND_DIR)
		rc = cli_fail("cp: %s exists and is not a directory: cannot put directory %s:%s "
			      "there",
			dst, cp->sandbox, src);
	else
		target = strdup(dst);
	if (!target) {
		free(e.path);
		return rc ? rc : cli_fail("out of memory");
	}
	rc = cp_down(cp, &e, target);
	free(target);
	free(e.path);
	return rc < 0 || cp->errors ? CLI_EXIT_ERR : 0;
}

int cmd_cp(struct cli *cli, int argc, char **argv)
{
	char sname[ENGINE_NAME_MAX + 1], dname[ENGINE_NAME_MAX + 1];
	const char *spath, *dpath;
	struct cp cp = {0};
	bool sr, dr, quiet = false;
	int rc;

	if ((rc = cli_plain_opts(cli, argc, argv, "cp", &quiet)) >= 0)
		return rc;
	if (argc - optind != 2)
		return cli_usage("cp", "sandwire cp [NAME:]SRC [NAME:]DST (two paths, one of them "
				       "in a sandbox)");
	spath = argv[optind];
	dpath = argv[optind + 1];
	sr = split_remote(argv[optind], sname, sizeof(sname), &spath);
	dr = split_remote(argv[optind + 1], dname, sizeof(dname), &dpath);
	if (sr == dr)
		return cli_usage("cp", sr ? "both paths are in sandboxes: copy through the host"
					  : "neither path names a sandbox (NAME:PATH); for two "
					    "host paths use cp(1)");
	if (!*(sr ? spath : dpath))
		return cli_usage("cp", "a path must follow \"%s:\"", sr ? sname : dname);
	cp.sandbox = sr ? sname : dname;
	cp.progress = !quiet && isatty(2);
	cp.verbose = cli->verbose > 0;
	if ((rc = cli_attach(cli, NULL, cp.sandbox, &cp.w)))
		return rc;
	rc = sr ? cp_download(&cp, spath, dpath) : cp_upload(&cp, spath, dpath);
	wire_destroy(&cp.w);
	return rc;
}
