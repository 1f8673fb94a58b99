/*
 * proto/msg_boot.c - GuestBootstrap payload codec (spec 3.6).
 *
 * Every struct is decoded by the table-driven loop of proto/internal.h
 * (proto_map_decode): its keys are listed in a names table, in wire order;
 * a bit per key catches duplicates and missing required fields.  The four
 * mount lists are flat structs described by one table each (boot_mounts),
 * which drives both their decoder and their encoder.  The internally
 * tagged maps (block_root, upper) are read in two passes: the first finds
 * "kind" wherever it is (serde buffers the map the same way), the second
 * decodes the variant's fields from the start of the map.
 */
#include <stdint.h>
#include <string.h>

#include "proto/error.h"
#include "proto/internal.h"
#include "proto/msg_boot.h"

static const char *const boot_root_kinds[] = {"disk-image", "oci-erofs"};
static const char *const boot_upper_kinds[] = {"device", "tmpfs"};
static const char *const boot_security_names[] = {"default", "restricted"};

/* ---- decoding helpers ---- */

/* Where boot_tag_find puts the kind: a names table and the index found. */
struct boot_kind {
	const char *const *names;
	unsigned n;
	int *kind;
};

static int boot_kind_field(struct cbr *r, void *obj, unsigned field)
{
	struct boot_kind *k = obj;

	(void)field; /* "kind" is the only key */
	return proto_name_decode(r, k->names, k->n, k->kind);
}

/*
 * Find the "kind" of the internally tagged map at <r> (any position) and
 * return its index in <names> through <kind>; <r> is left on the map.
 */
static int boot_tag_find(struct cbr *r, const char *const *names, unsigned n, int *kind)
{
	static const char *const keys[] = {"kind"};
	struct boot_kind k = {names, n, kind};
	struct cbr save = *r;
	int rc;

	rc = proto_map_decode(r, keys, 1, 1, 1, boot_kind_field, &k);
	if (rc < 0)
		return rc;
	*r = save;
	return 0;
}

/*
 * Octets (MAC, IP address): an array of exactly <n> uints 0..255, or a
 * byte string of <n> bytes (spec 2.2 reader rule 6).  Tags are skipped.
 */
static int boot_octets_decode(struct cbr *r, uint8_t *out, size_t n)
{
	struct cbr_item it;
	struct cbr_agg a;
	const uint8_t *p;
	size_t len, i = 0;
	int rc;

	rc = cbr_peek_untagged(r, &it);
	if (rc < 0)
		return rc;
	if (it.kind == CBR_ARRAY || it.kind == CBR_ARRAY_INDEF) {
		rc = cbr_enter_array(r, &a);
		if (rc < 0)
			return rc;
		while ((rc = cbr_agg_next(r, &a)) > 0) {
			if (i == n)
				return PROTO_E_BAD_VALUE;
			rc = cbr_u8(r, &out[i++]);
			if (rc < 0)
				return rc;
		}
		if (rc < 0)
			return rc;
		return i == n ? 0 : PROTO_E_BAD_VALUE;
	}
	rc = cbr_bytes(r, &p, &len);
	if (rc < 0)
		return rc;
	if (len != n)
		return PROTO_E_BAD_VALUE;
	memcpy(out, p, n);
	return 0;
}

/* ---- encoding helpers ---- */

static void boot_put_octets(struct cbw *w, const uint8_t *p, size_t n)
{
	size_t i;

	cbw_array(w, n);
	for (i = 0; i < n; i++)
		cbw_uint(w, p[i]);
}

/* ---- MountFlags ---- */

static const char *const boot_flags_keys[] = {"readonly", "noexec", "nosuid", "nodev"};

static void boot_flags_encode(struct cbw *w, const struct proto_boot_mount_flags *f)
{
	cbw_map(w, 4);
	cbw_key(w, "readonly");
	cbw_bool(w, f->readonly);
	cbw_key(w, "noexec");
	cbw_bool(w, f->noexec);
	cbw_key(w, "nosuid");
	cbw_bool(w, f->nosuid);
	cbw_key(w, "nodev");
	cbw_bool(w, f->nodev);
}

static int boot_flags_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_mount_flags *f = obj;
	bool *const v[4] = {&f->readonly, &f->noexec, &f->nosuid, &f->nodev};

	return cbr_bool(r, v[field]);
}

static int boot_flags_decode(struct cbr *r, struct proto_boot_mount_flags *f)
{
	return proto_map_decode(r, boot_flags_keys, 4, PROTO_ALL(4), 0, boot_flags_field, f);
}

/* ---- mounts: four lists of flat structs, described by tables ---- */

/* How a mount field is decoded and encoded. */
enum boot_slot_kind {
	BOOT_S_TEXT,	 /* struct proto_str, required */
	BOOT_S_OPT_TEXT, /* struct proto_opt_str, omitted when unset */
	BOOT_S_OPT_U32,	 /* struct proto_opt_u32, omitted when unset */
	BOOT_S_FLAGS,	 /* struct proto_boot_mount_flags, always written, optional */
};

/* One mount list of GuestBootstrap: key, element layout, fields in wire order. */
struct boot_mount_desc {
	const char *key;      /* "dir_mounts", ... */
	size_t list_off;      /* struct proto_bootstrap: the element pointer ... */
	size_t count_off;     /* ... and the count */
	size_t size;	      /* element size */
	unsigned n;	      /* fields */
	const char *names[4]; /* wire keys */
	uint8_t kind[4];      /* enum boot_slot_kind */
	uint8_t off[4];	      /* offset of the field in the element */
};

/* The list part of a boot_mount_desc: key <k>, elements of <type> at <list>, <count>. */
#define BOOT_MOUNT(k, type, list, count)                                                           \
	.key = k, .list_off = offsetof(struct proto_bootstrap, list),                              \
	.count_off = offsetof(struct proto_bootstrap, count), .size = sizeof(type)

static const struct boot_mount_desc boot_mounts[4] = {
	{
		BOOT_MOUNT("dir_mounts", struct proto_boot_dir_mount, dir_mounts, n_dir_mounts),
		.n = 3,
		.names = {"tag", "guest_path", "flags"},
		.kind = {BOOT_S_TEXT, BOOT_S_TEXT, BOOT_S_FLAGS},
		.off = {offsetof(struct proto_boot_dir_mount, tag),
			offsetof(struct proto_boot_dir_mount, guest_path),
			offsetof(struct proto_boot_dir_mount, flags)},
	},
	{
		BOOT_MOUNT("file_mounts", struct proto_boot_file_mount, file_mounts, n_file_mounts),
		.n = 4,
		.names = {"tag", "filename", "guest_path", "flags"},
		.kind = {BOOT_S_TEXT, BOOT_S_TEXT, BOOT_S_TEXT, BOOT_S_FLAGS},
		.off = {offsetof(struct proto_boot_file_mount, tag),
			offsetof(struct proto_boot_file_mount, filename),
			offsetof(struct proto_boot_file_mount, guest_path),
			offsetof(struct proto_boot_file_mount, flags)},
	},
	{
		BOOT_MOUNT("disk_mounts", struct proto_boot_disk_mount, disk_mounts, n_disk_mounts),
		.n = 4,
		.names = {"id", "guest_path", "fstype", "flags"},
		.kind = {BOOT_S_TEXT, BOOT_S_TEXT, BOOT_S_OPT_TEXT, BOOT_S_FLAGS},
		.off = {offsetof(struct proto_boot_disk_mount, id),
			offsetof(struct proto_boot_disk_mount, guest_path),
			offsetof(struct proto_boot_disk_mount, fstype),
			offsetof(struct proto_boot_disk_mount, flags)},
	},
	{
		BOOT_MOUNT("tmpfs_mounts", struct proto_boot_tmpfs_mount, tmpfs_mounts,
			n_tmpfs_mounts),
		.n = 4,
		.names = {"path", "size_mib", "mode", "flags"},
		.kind = {BOOT_S_TEXT, BOOT_S_OPT_U32, BOOT_S_OPT_U32, BOOT_S_FLAGS},
		.off = {offsetof(struct proto_boot_tmpfs_mount, path),
			offsetof(struct proto_boot_tmpfs_mount, size_mib),
			offsetof(struct proto_boot_tmpfs_mount, mode),
			offsetof(struct proto_boot_tmpfs_mount, flags)},
	},
};

/* The mount being decoded and its table. */
struct boot_mount_dst {
	const struct boot_mount_desc *d;
	uint8_t *elem;
};

static int boot_mount_field(struct cbr *r, void *obj, unsigned field)
{
	struct boot_mount_dst *m = obj;
	void *v = m->elem + m->d->off[field];

	switch (m->d->kind[field]) {
	case BOOT_S_TEXT:
		return cbr_text(r, v);
	case BOOT_S_OPT_TEXT:
		return proto_opt_str_decode(r, v);
	case BOOT_S_OPT_U32:
		return proto_opt_u32_decode(r, v);
	default:
		return boot_flags_decode(r, v);
	}
}

/* One mount map into <elem>; <arg> is its struct boot_mount_desc. */
static int boot_mount_decode(struct cbr *r, void *elem, const void *arg)
{
	struct boot_mount_dst m = {arg, elem};
	uint32_t required = 0;
	unsigned i;

	for (i = 0; i < m.d->n; i++)
		if (m.d->kind[i] == BOOT_S_TEXT)
			required |= PROTO_BIT(i);
	return proto_map_decode(
		r, m.d->names, m.d->n, PROTO_ALL(m.d->n), required, boot_mount_field, &m);
}

/* The mount list of <d> into <m>. */
static int boot_mounts_decode(
	struct cbr *r, struct proto_bootstrap *m, const struct boot_mount_desc *d)
{
	uint8_t *base = (uint8_t *)m;
	void *v;
	int rc;

	rc = proto_list_decode(
		r, d->size, boot_mount_decode, d, &v, (size_t *)(base + d->count_off));
	if (rc == 0)
		*(void **)(base + d->list_off) = v;
	return rc;
}

/* Whether field <i> of mount <elem> is written (Options only when set). */
static bool boot_mount_field_present(
	const struct boot_mount_desc *d, const uint8_t *elem, unsigned i)
{
	const void *v = elem + d->off[i];

	switch (d->kind[i]) {
	case BOOT_S_OPT_TEXT:
		return ((const struct proto_opt_str *)v)->set;
	case BOOT_S_OPT_U32:
		return ((const struct proto_opt_u32 *)v)->set;
	default:
		return true;
	}
}

static void boot_mount_encode(struct cbw *w, const struct boot_mount_desc *d, const uint8_t *elem)
{
	size_t n = 0;
	unsigned i;

	for (i = 0; i < d->n; i++)
		n += boot_mount_field_present(d, elem, i);
	cbw_map(w, n);
	for (i = 0; i < d->n; i++) {
		const void *v = elem + d->off[i];

		if (!boot_mount_field_present(d, elem, i))
			continue;
		cbw_key(w, d->names[i]);
		switch (d->kind[i]) {
		case BOOT_S_TEXT:
			proto_put_str(w, *(const struct proto_str *)v);
			break;
		case BOOT_S_OPT_TEXT:
			proto_put_str(w, ((const struct proto_opt_str *)v)->v);
			break;
		case BOOT_S_OPT_U32:
			cbw_uint(w, ((const struct proto_opt_u32 *)v)->v);
			break;
		default:
			boot_flags_encode(w, v);
			break;
		}
	}
}

/* Every non-empty mount list of <m>, in wire order. */
static void boot_mounts_encode(struct cbw *w, const struct proto_bootstrap *m)
{
	const uint8_t *base = (const uint8_t *)m;
	const struct boot_mount_desc *d;
	const uint8_t *elems;
	size_t i, n;

	for (d = boot_mounts; d < boot_mounts + PROTO_NKEYS(boot_mounts); d++) {
		n = *(const size_t *)(base + d->count_off);
		if (!n)
			continue;
		elems = *(const void *const *)(base + d->list_off);
		cbw_key(w, d->key);
		cbw_array(w, n);
		for (i = 0; i < n; i++)
			boot_mount_encode(w, d, elems + i * d->size);
	}
}

/* ---- block_root and its upper (internally tagged) ---- */

/* Keys of both variants; bit 0 ("kind") is read by boot_tag_find only. */
static const char *const boot_upper_keys[] = {"kind", "device", "fstype", "size_mib"};

static int boot_upper_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_upper *u = obj;

	switch (field) {
	case 1:
		return cbr_text(r, &u->device);
	case 2:
		return cbr_text(r, &u->fstype);
	default: /* 3 */
		return proto_opt_u32_decode(r, &u->size_mib);
	}
}

static int boot_upper_decode(struct cbr *r, struct proto_boot_upper *u)
{
	const uint32_t device = PROTO_BIT(1) | PROTO_BIT(2);
	int rc, k;

	rc = boot_tag_find(r, boot_upper_kinds, PROTO_NKEYS(boot_upper_kinds), &k);
	if (rc < 0)
		return rc;
	u->kind = (enum proto_boot_upper_kind)k;
	if (u->kind == PROTO_BOOT_UPPER_DEVICE)
		return proto_map_decode(r, boot_upper_keys, 4, device, device, boot_upper_field, u);
	return proto_map_decode(r, boot_upper_keys, 4, PROTO_BIT(3), 0, boot_upper_field, u);
}

static const char *const boot_root_keys[] = {"kind", "device", "fstype", "lower", "upper"};

static int boot_root_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_block_root *b = obj;

	switch (field) {
	case 1:
		return cbr_text(r, &b->device);
	case 2:
		return proto_opt_str_decode(r, &b->fstype);
	case 3:
		return cbr_text(r, &b->lower);
	default: /* 4 */
		return boot_upper_decode(r, &b->upper);
	}
}

static int boot_root_decode(struct cbr *r, struct proto_boot_block_root *b)
{
	const uint32_t disk = PROTO_BIT(1) | PROTO_BIT(2);
	const uint32_t erofs = PROTO_BIT(3) | PROTO_BIT(4);
	int rc, k;

	rc = cbr_absent(r);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* null: kind stays NONE */
	rc = boot_tag_find(r, boot_root_kinds, PROTO_NKEYS(boot_root_kinds), &k);
	if (rc < 0)
		return rc;
	b->kind = (enum proto_boot_root_kind)(k + 1);
	if (b->kind == PROTO_BOOT_ROOT_DISK_IMAGE)
		return proto_map_decode(
			r, boot_root_keys, 5, disk, PROTO_BIT(1), boot_root_field, b);
	return proto_map_decode(r, boot_root_keys, 5, erofs, erofs, boot_root_field, b);
}

static int boot_root_encode(struct cbw *w, const struct proto_boot_block_root *b)
{
	const struct proto_boot_upper *u = &b->upper;

	cbw_key(w, "block_root");
	switch (b->kind) {
	case PROTO_BOOT_ROOT_DISK_IMAGE:
		cbw_map(w, 2 + b->fstype.set);
		cbw_key(w, "kind");
		cbw_cstr(w, "disk-image");
		cbw_key(w, "device");
		proto_put_str(w, b->device);
		if (b->fstype.set) {
			cbw_key(w, "fstype");
			proto_put_str(w, b->fstype.v);
		}
		return 0;
	case PROTO_BOOT_ROOT_OCI_EROFS:
		cbw_map(w, 3);
		cbw_key(w, "kind");
		cbw_cstr(w, "oci-erofs");
		cbw_key(w, "lower");
		proto_put_str(w, b->lower);
		cbw_key(w, "upper");
		break;
	default:
		return PROTO_E_BAD_VALUE;
	}
	switch (u->kind) {
	case PROTO_BOOT_UPPER_DEVICE:
		cbw_map(w, 3);
		cbw_key(w, "kind");
		cbw_cstr(w, "device");
		cbw_key(w, "device");
		proto_put_str(w, u->device);
		cbw_key(w, "fstype");
		proto_put_str(w, u->fstype);
		return 0;
	case PROTO_BOOT_UPPER_TMPFS:
		cbw_map(w, 1 + u->size_mib.set);
		cbw_key(w, "kind");
		cbw_cstr(w, "tmpfs");
		if (u->size_mib.set) {
			cbw_key(w, "size_mib");
			cbw_uint(w, u->size_mib.v);
		}
		return 0;
	default:
		return PROTO_E_BAD_VALUE;
	}
}

/* ---- network ---- */

static const char *const boot_ip_keys[] = {"address", "prefix_len", "gateway", "dns"};

/* Where one IP block (v4 or v6) is decoded to. */
struct boot_ip_dst {
	size_t alen; /* address length: 4 or 16 */
	uint8_t *address;
	uint8_t *prefix_len;
	uint8_t *gateway;
	bool *has_dns;
	uint8_t *dns;
};

static int boot_ip_field(struct cbr *r, void *obj, unsigned field)
{
	struct boot_ip_dst *d = obj;
	int rc;

	switch (field) {
	case 0:
		return boot_octets_decode(r, d->address, d->alen);
	case 1:
		return cbr_u8(r, d->prefix_len);
	case 2:
		return boot_octets_decode(r, d->gateway, d->alen);
	default:
		rc = proto_opt_begin(r, d->has_dns);
		return rc > 0 ? boot_octets_decode(r, d->dns, d->alen) : rc;
	}
}

/* An Option IP block: null leaves <*set> false. */
static int boot_ip_decode(struct cbr *r, bool *set, struct boot_ip_dst *d)
{
	int rc = proto_opt_begin(r, set);

	if (rc <= 0)
		return rc;
	return proto_map_decode(r, boot_ip_keys, 4, PROTO_ALL(4), PROTO_ALL(3), boot_ip_field, d);
}

static void boot_ip_encode(struct cbw *w, const char *key, const uint8_t *address,
	uint8_t prefix_len, const uint8_t *gateway, const uint8_t *dns, size_t alen)
{
	cbw_key(w, key);
	cbw_map(w, 3 + (dns != NULL));
	cbw_key(w, "address");
	boot_put_octets(w, address, alen);
	cbw_key(w, "prefix_len");
	cbw_uint(w, prefix_len);
	cbw_key(w, "gateway");
	boot_put_octets(w, gateway, alen);
	if (dns) {
		cbw_key(w, "dns");
		boot_put_octets(w, dns, alen);
	}
}

static const char *const boot_net_keys[] = {"interface", "mac", "mtu", "ipv4", "ipv6"};

static int boot_net_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_network *n = obj;
	struct boot_ip_dst v4 = {
		4,
		n->ipv4.address,
		&n->ipv4.prefix_len,
		n->ipv4.gateway,
		&n->ipv4.has_dns,
		n->ipv4.dns,
	};
	struct boot_ip_dst v6 = {
		16,
		n->ipv6.address,
		&n->ipv6.prefix_len,
		n->ipv6.gateway,
		&n->ipv6.has_dns,
		n->ipv6.dns,
	};

	switch (field) {
	case 0:
		return cbr_text(r, &n->interface);
	case 1:
		return boot_octets_decode(r, n->mac, sizeof(n->mac));
	case 2:
		return cbr_u16(r, &n->mtu);
	case 3:
		return boot_ip_decode(r, &n->ipv4.set, &v4);
	default:
		return boot_ip_decode(r, &n->ipv6.set, &v6);
	}
}

static int boot_net_decode(struct cbr *r, struct proto_boot_network *n)
{
	int rc = proto_opt_begin(r, &n->set);

	if (rc <= 0)
		return rc;
	return proto_map_decode(r, boot_net_keys, 5, PROTO_ALL(5), PROTO_ALL(3), boot_net_field, n);
}

static void boot_net_encode(struct cbw *w, const struct proto_boot_network *n)
{
	const struct proto_boot_ipv4 *v4 = &n->ipv4;
	const struct proto_boot_ipv6 *v6 = &n->ipv6;

	cbw_key(w, "network");
	cbw_map(w, 3 + v4->set + v6->set);
	cbw_key(w, "interface");
	proto_put_str(w, n->interface);
	cbw_key(w, "mac");
	boot_put_octets(w, n->mac, sizeof(n->mac));
	cbw_key(w, "mtu");
	cbw_uint(w, n->mtu);
	if (v4->set)
		boot_ip_encode(w, "ipv4", v4->address, v4->prefix_len, v4->gateway,
			v4->has_dns ? v4->dns : NULL, 4);
	if (v6->set)
		boot_ip_encode(w, "ipv6", v6->address, v6->prefix_len, v6->gateway,
			v6->has_dns ? v6->dns : NULL, 16);
}

/* ---- environment, handoff, sandwire extension ---- */

static const char *const boot_env_keys[] = {"key", "value"};

static int boot_env_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_env *e = obj;

	return cbr_text(r, field == 0 ? &e->key : &e->value);
}

static int boot_env_decode(struct cbr *r, void *elem, const void *arg)
{
	return proto_map_decode(
		r, boot_env_keys, 2, PROTO_ALL(2), PROTO_ALL(2), boot_env_field, elem);
}

static int boot_envs_decode(struct cbr *r, struct proto_boot_env **env, size_t *n)
{
	void *v;
	int rc = proto_list_decode(r, sizeof(**env), boot_env_decode, NULL, &v, n);

	if (rc == 0)
		*env = v;
	return rc;
}

static void boot_envs_encode(
	struct cbw *w, const char *key, const struct proto_boot_env *env, size_t n)
{
	size_t i;

	cbw_key(w, key);
	cbw_array(w, n);
	for (i = 0; i < n; i++) {
		cbw_map(w, 2);
		cbw_key(w, "key");
		proto_put_str(w, env[i].key);
		cbw_key(w, "value");
		proto_put_str(w, env[i].value);
	}
}

static const char *const boot_handoff_keys[] = {"cmd", "args", "cwd", "env"};

static int boot_handoff_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_boot_handoff *h = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &h->cmd);
	case 1:
		return proto_strs_decode(r, &h->args, &h->n_args);
	case 2:
		return proto_opt_str_decode(r, &h->cwd);
	default:
		return boot_envs_decode(r, &h->env, &h->n_env);
	}
}

static int boot_handoff_decode(struct cbr *r, struct proto_boot_handoff *h)
{
	int rc = proto_opt_begin(r, &h->set);

	if (rc <= 0)
		return rc;
	return proto_map_decode(
		r, boot_handoff_keys, 4, PROTO_ALL(4), PROTO_BIT(0), boot_handoff_field, h);
}

static void boot_handoff_encode(struct cbw *w, const struct proto_boot_handoff *h)
{
	cbw_key(w, "handoff_init");
	cbw_map(w, 1 + (h->n_args != 0) + h->cwd.set + (h->n_env != 0));
	cbw_key(w, "cmd");
	proto_put_str(w, h->cmd);
	if (h->n_args) {
		cbw_key(w, "args");
		proto_strs_encode(w, h->args, h->n_args);
	}
	if (h->cwd.set) {
		cbw_key(w, "cwd");
		proto_put_str(w, h->cwd.v);
	}
	if (h->n_env)
		boot_envs_encode(w, "env", h->env, h->n_env);
}

/* The one key of the announcement map: {"ext": [names...]}. */
static const char *const ext_keys[] = {"ext"};

struct ext_list {
	struct proto_str **ext;
	size_t *n;
};

static int ext_field(struct cbr *r, void *obj, unsigned field)
{
	struct ext_list *l = obj;

	(void)field; /* "ext" is the only key */
	return proto_strs_decode(r, l->ext, l->n);
}

int proto_ext_decode(struct cbr *r, struct proto_str **ext, size_t *n)
{
	struct ext_list l = {ext, n};
	int rc = cbr_absent(r);

	*ext = NULL;
	*n = 0;
	if (rc != 0)
		return rc < 0 ? rc : 0;
	return proto_map_decode(r, ext_keys, 1, 1, 0, ext_field, &l);
}

int proto_ext_encode(struct cbw *w, const struct proto_str *ext, size_t n)
{
	cbw_map(w, 1);
	cbw_key(w, "ext");
	proto_strs_encode(w, ext, n);
	return w->err;
}

bool proto_ext_named(const struct proto_str *ext, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (ext[i].len == len && memcmp(ext[i].ptr, name, len) == 0)
			return true;
	return false;
}

/* ---- GuestBootstrap ---- */

enum boot_key {
	K_BLOCK_ROOT,
	K_DIR_MOUNTS,
	K_FILE_MOUNTS,
	K_DISK_MOUNTS,
	K_TMPFS_MOUNTS,
	K_HOSTNAME,
	K_HOST_ALIAS,
	K_NETWORK,
	K_RLIMITS,
	K_USER,
	K_DEFAULT_CWD,
	K_DEFAULT_ENV,
	K_SECURITY_PROFILE,
	K_HANDOFF_INIT,
	K_SANDWIRE,
	K_COUNT
};

static const char *const boot_keys[K_COUNT] = {
	[K_BLOCK_ROOT] = "block_root",
	[K_DIR_MOUNTS] = "dir_mounts",
	[K_FILE_MOUNTS] = "file_mounts",
	[K_DISK_MOUNTS] = "disk_mounts",
	[K_TMPFS_MOUNTS] = "tmpfs_mounts",
	[K_HOSTNAME] = "hostname",
	[K_HOST_ALIAS] = "host_alias",
	[K_NETWORK] = "network",
	[K_RLIMITS] = "rlimits",
	[K_USER] = "user",
	[K_DEFAULT_CWD] = "default_cwd",
	[K_DEFAULT_ENV] = "default_env",
	[K_SECURITY_PROFILE] = "security_profile",
	[K_HANDOFF_INIT] = "handoff_init",
	[K_SANDWIRE] = "sandwire",
};

static int boot_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_bootstrap *m = obj;
	int rc, k;

	switch (field) {
	case K_BLOCK_ROOT:
		return boot_root_decode(r, &m->block_root);
	case K_DIR_MOUNTS:
	case K_FILE_MOUNTS:
	case K_DISK_MOUNTS:
	case K_TMPFS_MOUNTS:
		return boot_mounts_decode(r, m, &boot_mounts[field - K_DIR_MOUNTS]);
	case K_HOSTNAME:
		return proto_opt_str_decode(r, &m->hostname);
	case K_HOST_ALIAS:
		return proto_opt_str_decode(r, &m->host_alias);
	case K_NETWORK:
		return boot_net_decode(r, &m->network);
	case K_RLIMITS:
		return proto_rlimits_decode(r, &m->rlimits, &m->n_rlimits);
	case K_USER:
		return proto_opt_str_decode(r, &m->user);
	case K_DEFAULT_CWD:
		return proto_opt_str_decode(r, &m->default_cwd);
	case K_DEFAULT_ENV:
		return boot_envs_decode(r, &m->default_env, &m->n_default_env);
	case K_SECURITY_PROFILE:
		rc = proto_name_decode(
			r, boot_security_names, PROTO_NKEYS(boot_security_names), &k);
		if (rc < 0)
			return rc;
		m->security_profile = (enum proto_boot_security)k;
		return 0;
	case K_HANDOFF_INIT:
		return boot_handoff_decode(r, &m->handoff_init);
	default: /* K_SANDWIRE */
		return proto_ext_decode(r, &m->ext, &m->n_ext);
	}
}

int proto_bootstrap_decode(struct cbr *r, struct proto_bootstrap *m)
{
	memset(m, 0, sizeof(*m));
	return proto_map_decode(r, boot_keys, K_COUNT, PROTO_ALL(K_COUNT), 0, boot_field, m);
}

int proto_bootstrap_encode(struct cbw *w, const struct proto_bootstrap *m)
{
	size_t n = 1; /* security_profile is always written */
	int rc;

	if ((unsigned)m->security_profile >= PROTO_NKEYS(boot_security_names))
		return PROTO_E_BAD_VALUE;
	n += m->block_root.kind != PROTO_BOOT_ROOT_NONE;
	n += (m->n_dir_mounts != 0) + (m->n_file_mounts != 0);
	n += (m->n_disk_mounts != 0) + (m->n_tmpfs_mounts != 0);
	n += m->hostname.set + m->host_alias.set + m->network.set;
	n += (m->n_rlimits != 0) + m->user.set + m->default_cwd.set;
	n += (m->n_default_env != 0) + m->handoff_init.set + (m->n_ext != 0);

	cbw_map(w, n);
	if (m->block_root.kind != PROTO_BOOT_ROOT_NONE) {
		rc = boot_root_encode(w, &m->block_root);
		if (rc < 0)
			return rc;
	}
	boot_mounts_encode(w, m);
	if (m->hostname.set) {
		cbw_key(w, "hostname");
		proto_put_str(w, m->hostname.v);
	}
	if (m->host_alias.set) {
		cbw_key(w, "host_alias");
		proto_put_str(w, m->host_alias.v);
	}
	if (m->network.set)
		boot_net_encode(w, &m->network);
	if (m->n_rlimits) {
		cbw_key(w, "rlimits");
		rc = proto_rlimits_encode(w, m->rlimits, m->n_rlimits);
		if (rc < 0)
			return rc;
	}
	if (m->user.set) {
		cbw_key(w, "user");
		proto_put_str(w, m->user.v);
	}
	if (m->default_cwd.set) {
		cbw_key(w, "default_cwd");
		proto_put_str(w, m->default_cwd.v);
	}
	if (m->n_default_env)
		boot_envs_encode(w, "default_env", m->default_env, m->n_default_env);
	cbw_key(w, "security_profile");
	cbw_cstr(w, boot_security_names[m->security_profile]);
	if (m->handoff_init.set)
		boot_handoff_encode(w, &m->handoff_init);
	if (m->n_ext) {
		cbw_key(w, "sandwire");
		proto_ext_encode(w, m->ext, m->n_ext);
	}
	return w->err;
}
