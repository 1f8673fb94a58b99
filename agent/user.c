/*
 * agent/user.c - exec user specs and the guest clock.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/internal.h"

static int parse_id(const char *s, unsigned long *out)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return (*end || errno || *out > 0xfffffffful) ? -EINVAL : 0;
}

/*
 * Resolve "USER", "UID", "USER:GROUP" or "UID:GID" (spec 3.2).  Numeric
 * uids need no passwd entry; the group defaults to the user's passwd group,
 * or to the uid itself for an unknown numeric uid.  Returns 0 or -ENOENT.
 */
int agent_user_resolve(const char *spec, uid_t *uid, gid_t *gid)
{
	char user[256], *group;
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	char buf[16384];
	unsigned long n;

	while (*spec == ' ' || *spec == '\t')
		spec++;
	snprintf(user, sizeof(user), "%s", spec);
	group = strchr(user, ':');
	if (group)
		*group++ = '\0';
	if (parse_id(user, &n) == 0) {
		*uid = (uid_t)n;
		getpwuid_r(*uid, &pw, buf, sizeof(buf), &pwp);
		*gid = pwp ? pwp->pw_gid : (gid_t)n;
	} else {
		if (getpwnam_r(user, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp)
			return -ENOENT;
		*uid = pwp->pw_uid;
		*gid = pwp->pw_gid;
	}
	if (group && *group) {
		if (parse_id(group, &n) == 0) {
			*gid = (gid_t)n;
		} else {
			if (getgrnam_r(group, &gr, buf, sizeof(buf), &grp) != 0 || !grp)
				return -ENOENT;
			*gid = grp->gr_gid;
		}
	}
	return 0;
}

/*
 * core.clock.sync: step CLOCK_REALTIME when it is more than 100 ms off.
 * Only as PID 1: a process-backend agent shares the host's clock and must
 * never set it.
 */
void agent_clock_sync(struct agent *a, uint64_t unix_time_nanos)
{
	struct timespec now, want;
	int64_t diff;

	if (!a->cfg->pid1)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	diff = (int64_t)unix_time_nanos - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
	if (diff > -100000000 && diff < 100000000)
		return;
	want.tv_sec = (time_t)(unix_time_nanos / 1000000000u);
	want.tv_nsec = (long)(unix_time_nanos % 1000000000u);
	if (clock_settime(CLOCK_REALTIME, &want) < 0)
		agent_log(a, 1, "clock sync: %s", strerror(errno));
}
