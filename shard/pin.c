/*
 * shard/pin.c - parse the `pin auto|none|CPU-LIST` setting.
 *
 * Grammar:  spec  = "none" | "auto" | list
 *           list  = item *( "," item )
 *           item  = cpu | cpu "-" cpu        (a range goes up: 2-5, not 5-2)
 *           cpu   = 1*DIGIT                  (< SHARD_PIN_MAX)
 * No blanks.  The order of the list is the order of the shards.
 */
#include <errno.h>
#include <string.h>

#include "shard/shard.h"

/* Read a CPU number at *<p>, advancing it.  Returns it, -EINVAL or -ERANGE. */
static int shard_pin_cpu(const char **p)
{
	unsigned v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= SHARD_PIN_MAX)
			return -ERANGE;
		s++;
	}
	*p = s;
	return (int)v;
}

int shard_parse_pin(const char *spec, struct shard_pin *out)
{
	struct shard_pin pin;
	const char *p = spec;
	int lo, hi;

	memset(&pin, 0, sizeof(pin));
	if (strcmp(spec, "none") == 0) {
		pin.mode = SHARD_PIN_NONE;
		goto done;
	}
	if (strcmp(spec, "auto") == 0) {
		pin.mode = SHARD_PIN_AUTO;
		goto done;
	}
	pin.mode = SHARD_PIN_LIST;
	for (;;) {
		lo = shard_pin_cpu(&p);
		if (lo < 0)
			return lo;
		hi = lo;
		if (*p == '-') {
			p++;
			hi = shard_pin_cpu(&p);
			if (hi < 0)
				return hi;
			if (hi < lo)
				return -EINVAL;
		}
		for (int c = lo; c <= hi; c++) {
			if (pin.ncpus == SHARD_PIN_MAX)
				return -ERANGE;
			pin.cpus[pin.ncpus++] = (uint16_t)c;
		}
		if (*p == '\0')
			break;
		if (*p != ',')
			return -EINVAL;
		p++;
	}
done:
	*out = pin;
	return 0;
}
