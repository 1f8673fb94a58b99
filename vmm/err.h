/*
 * vmm/err.h - the control-plane error: a status and one message that gains
 * context on its way up ("sandbox `web`: start agent: execve
 * `/usr/bin/sandwire-agent`: No such file or directory").
 *
 * Control-plane modules (vmm, engine, the CLI) fill a struct sw_err once,
 * where the failure happens, and wrap it with context in each caller.
 * Data-plane modules return negative codes instead (anchors.md item 3).
 */
#ifndef SW_VMM_ERR_H
#define SW_VMM_ERR_H

#define SW_ERR_MSG 512

struct sw_err {
	int status;          /* negative errno-style code; 0 = no error */
	char msg[SW_ERR_MSG];
};

/*
 * Record an error: <status> (negative) and a printf-style message.  The
 * first error wins: a second set on the same err is ignored.  Returns
 * <status>, so callers can `return sw_err_set(err, -ENOENT, "...")`.
 */
int sw_err_set(struct sw_err *err, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like sw_err_set with the text of errno-style <status> appended after ": ". */
int sw_err_sys(struct sw_err *err, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix context: "<context>: <previous message>".  Returns err->status. */
int sw_err_wrap(struct sw_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* SW_VMM_ERR_H */
