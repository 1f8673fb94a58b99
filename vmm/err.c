/*
 * vmm/err.c - the control-plane error (see err.h).
 */
#include "vmm/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int err_vset(struct sw_err *err, int status, const char *suffix, const char *fmt,
	va_list ap)
{
	int n;

	if (!err || err->status)
		return err ? err->status : status;
	err->status = status;
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (suffix && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", suffix);
	return status;
}

int sw_err_set(struct sw_err *err, int status, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = err_vset(err, status, NULL, fmt, ap);
	va_end(ap);
	return rc;
}

int sw_err_sys(struct sw_err *err, int status, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = err_vset(err, status, strerror(status < 0 ? -status : status), fmt, ap);
	va_end(ap);
	return rc;
}

int sw_err_wrap(struct sw_err *err, const char *fmt, ...)
{
	char out[SW_ERR_MSG];
	size_t n, old;
	va_list ap;
	int rc;

	if (!err || !err->status)
		return 0;
	va_start(ap, fmt);
	rc = vsnprintf(out, sizeof(out), fmt, ap);
	va_end(ap);
	n = rc < 0 ? 0 : (size_t)rc < sizeof(out) ? (size_t)rc : sizeof(out) - 1;
	/* "<prefix>: <old message>", cut at the buffer's end. */
	if (n + 2 < sizeof(out)) {
		memcpy(out + n, ": ", 2);
		n += 2;
		old = strnlen(err->msg, sizeof(err->msg) - 1);
		if (old > sizeof(out) - 1 - n)
			old = sizeof(out) - 1 - n;
		memcpy(out + n, err->msg, old);
		n += old;
	}
	out[n] = '\0';
	memcpy(err->msg, out, n + 1);
	return err->status;
}
