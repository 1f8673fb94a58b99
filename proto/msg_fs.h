/*
 * proto/msg_fs.h - payloads of core.fs.request and core.fs.response
 * (spec protocol.md 3.3; session rules in 4.5).
 *
 * FsRequest is {"op": FsOp, "bulk": BulkOffer} ("bulk", generation 8, is
 * omitted when unset: protocol-gen9.md G2.5, G5); FsOp is an externally
 * tagged enum whose
 * variants are all struct variants: {"Stat": {"path": ..., "follow_symlink":
 * ...}}.  FsResponse is {ok, error, data} where data is an externally tagged
 * enum of newtype variants: {"Handle": 7}, {"List": [entry...]}.
 *
 * struct proto_fs_request is flat: <kind> says which fields are meaningful
 * (listed per field below); the others are ignored by the encoder and left
 * zero by the decoder.  Follows the conventions of proto/msg_common.h.
 *
 * Decoding rules (spec 2.2 reader rules): every non-Option field is
 * required (PROTO_E_MISSING_FIELD); a known key seen twice is
 * PROTO_E_DUP_FIELD; unknown keys are skipped; an enum must be a map of
 * definite length 1 (anything else, including the bare text form, which
 * only data-less variants may use, is PROTO_E_WRONG_TYPE); an unknown
 * variant name is PROTO_E_BAD_VALUE.
 *
 * Encoding example (V24, id 7):
 *
 *	struct proto_fs_request rq = {
 *		.kind = PROTO_FS_OP_STAT,
 *		.path = { "/etc/hostname", 13 },
 *		.follow_symlink = true,
 *	};
 *	cbw_init(&w, buf, sizeof(buf));
 *	rc = proto_fs_request_encode(&w, &rq);	// a1 626f70 a1 6453746174 a2 ...
 */
#ifndef SW_PROTO_MSG_FS_H
#define SW_PROTO_MSG_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/bulk.h"
#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/msg_common.h"

/* FsOp variants, in the spec's order; proto_fs_op_names[] holds the wire names. */
enum proto_fs_op_kind {
	PROTO_FS_OP_REAL_PATH,	  /* "RealPath": path */
	PROTO_FS_OP_STAT,	  /* "Stat": path, follow_symlink */
	PROTO_FS_OP_SET_STAT,	  /* "SetStat": path, follow_symlink, attrs */
	PROTO_FS_OP_LIST,	  /* "List": path */
	PROTO_FS_OP_READ_LINK,	  /* "ReadLink": path */
	PROTO_FS_OP_SYMLINK,	  /* "Symlink": target, link_path */
	PROTO_FS_OP_MKDIR,	  /* "Mkdir": path, mode */
	PROTO_FS_OP_REMOVE,	  /* "Remove": path */
	PROTO_FS_OP_REMOVE_DIR,	  /* "RemoveDir": path, recursive */
	PROTO_FS_OP_COPY,	  /* "Copy": src, dst */
	PROTO_FS_OP_RENAME,	  /* "Rename": src, dst */
	PROTO_FS_OP_OPEN_FILE,	  /* "OpenFile": path, options */
	PROTO_FS_OP_OPEN_DIR,	  /* "OpenDir": path */
	PROTO_FS_OP_CLOSE_HANDLE, /* "CloseHandle": handle */
	PROTO_FS_OP_READ,	  /* "Read": handle, offset, len */
	PROTO_FS_OP_WRITE,	  /* "Write": handle, offset, len */
	PROTO_FS_OP_READ_DIR,	  /* "ReadDir": handle, limit */
	PROTO_FS_OP_FSTAT,	  /* "FStat": handle */
	PROTO_FS_OP_FSETSTAT,	  /* "FSetStat": handle, attrs */
	PROTO_FS_OP_COUNT
};

/* Wire name of each FsOp variant ("RealPath", ...), indexed by the enum. */
extern const char *const proto_fs_op_names[PROTO_FS_OP_COUNT];

/* FsSetAttrs: every key is always written, null when unset. */
struct proto_fs_setattrs {
	struct proto_opt_u32 mode;
	struct proto_opt_u32 uid;
	struct proto_opt_u32 gid;
	struct proto_opt_u64 size;  /* bytes */
	struct proto_opt_i64 atime; /* seconds since the epoch */
	struct proto_opt_i64 mtime; /* seconds since the epoch */
};

/* FsOpenOptions: the six bools are required on decode; mode is null when unset. */
struct proto_fs_open_options {
	bool read;
	bool write;
	bool append;
	bool create;
	bool truncate;
	bool create_new;
	struct proto_opt_u32 mode; /* creation mode; the agent defaults to 0666 */
};

/*
 * FsRequest {op: FsOp, bulk}, flattened: only the fields of <kind> are on the
 * wire.  <path> is used by RealPath, Stat, SetStat, List, ReadLink, Mkdir,
 * Remove, RemoveDir, OpenFile and OpenDir; <handle> by CloseHandle, Read,
 * Write, ReadDir, FStat and FSetStat.
 */
struct proto_fs_request {
	enum proto_fs_op_kind kind;
	struct proto_str path;
	bool follow_symlink;		      /* Stat SetStat */
	struct proto_fs_setattrs attrs;	      /* SetStat FSetStat */
	struct proto_str target;	      /* Symlink */
	struct proto_str link_path;	      /* Symlink */
	struct proto_opt_u32 mode;	      /* Mkdir (null: keep the mkdir mode) */
	bool recursive;			      /* RemoveDir */
	struct proto_str src;		      /* Copy Rename */
	struct proto_str dst;		      /* Copy Rename */
	struct proto_fs_open_options options; /* OpenFile */
	uint64_t handle;
	uint64_t offset;		  /* Read Write: bytes from the file start */
	struct proto_opt_u64 len;	  /* Read (null: to EOF), Write (null: unchecked) */
	struct proto_opt_u32 limit;	  /* ReadDir (null: 128 entries) */
	struct proto_opt_bulk_offer bulk; /* gen 8, Read and Write only (G5); omitted when unset */
};

/* FsEntryInfo.kind; proto_fs_kind_names[] holds the wire names. */
enum proto_fs_kind {
	PROTO_FS_KIND_FILE,    /* "file" */
	PROTO_FS_KIND_DIR,     /* "dir" */
	PROTO_FS_KIND_SYMLINK, /* "symlink" */
	PROTO_FS_KIND_OTHER,   /* "other" (also what any unknown name decodes to) */
	PROTO_FS_KIND_COUNT
};

extern const char *const proto_fs_kind_names[PROTO_FS_KIND_COUNT];

/* FsEntryInfo: one stat result or one listing entry. */
struct proto_fs_entry {
	struct proto_str path; /* as requested (Stat) or dir + "/" + name (listings) */
	enum proto_fs_kind kind;
	uint64_t size;		       /* bytes */
	uint32_t mode;		       /* full st_mode, file-type bits included */
	struct proto_opt_i64 modified; /* seconds since the epoch (= mtime) */
	uint32_t uid;
	uint32_t gid;
	struct proto_opt_i64 atime; /* seconds since the epoch */
	struct proto_opt_i64 mtime; /* seconds since the epoch */
};

/* FsResponseData variants; NONE is the null "data". */
enum proto_fs_data_kind {
	PROTO_FS_DATA_NONE,
	PROTO_FS_DATA_STAT,   /* {"Stat": FsEntryInfo} */
	PROTO_FS_DATA_LIST,   /* {"List": [FsEntryInfo...]} */
	PROTO_FS_DATA_HANDLE, /* {"Handle": u64} */
	PROTO_FS_DATA_PATH,   /* {"Path": text} */
	PROTO_FS_DATA_COUNT
};

/* FsResponseData; the union member is chosen by <kind>. */
struct proto_fs_data {
	enum proto_fs_data_kind kind;
	union {
		struct proto_fs_entry stat;
		struct {
			struct proto_fs_entry *entries; /* decode: in the cbr arena */
			size_t count;
		} list;
		uint64_t handle;
		struct proto_str path;
	};
};

/* FsResponse: all three keys are always written (error and data as null when unset). */
struct proto_fs_response {
	bool ok;
	struct proto_opt_str error; /* "<op>: <OS error text>" when !ok */
	struct proto_fs_data data;
};

/*
 * Encode <m> as one FsRequest payload item into <w>.
 * Returns 0, PROTO_E_BAD_VALUE for a kind out of range, or the writer's
 * sticky error (PROTO_E_NOSPACE).  Any thread; <w> is the caller's.
 */
int proto_fs_request_encode(struct cbw *w, const struct proto_fs_request *m);

/*
 * Decode one FsRequest payload item from <r> into <m> (zeroed first).
 * Strings point into the input (or the arena for indefinite ones).
 * Returns 0 or a negative proto code (see the header comment).  Any thread.
 */
int proto_fs_request_decode(struct cbr *r, struct proto_fs_request *m);

/*
 * Encode <m> as one FsResponse payload item into <w>.
 * Returns 0, PROTO_E_BAD_VALUE for a data or entry kind out of range, or the
 * writer's sticky error (PROTO_E_NOSPACE).  Any thread.
 */
int proto_fs_response_encode(struct cbw *w, const struct proto_fs_response *m);

/*
 * Decode one FsResponse payload item from <r> into <m> (zeroed first).
 * List entries are placed in r->arena: PROTO_E_NOSPACE when it is missing
 * or too small.  Returns 0 or a negative proto code.  Any thread.
 */
int proto_fs_response_decode(struct cbr *r, struct proto_fs_response *m);

/*
 * Exact number of bytes proto_fs_response_encode() spends on <e> inside a
 * List (or as the Stat value).  <e>->kind must be in range.  Any thread.
 */
size_t proto_fs_entry_encoded_size(const struct proto_fs_entry *e);

/*
 * Exact size of the payload of a successful List reply
 * ({ok: true, error: null, data: {"List": [...]}}) holding <count> entries
 * whose proto_fs_entry_encoded_size() add up to <entries_bytes>.  The agent
 * uses it to page List/ReadDir replies so one fits a frame (wire.md F15).
 */
size_t proto_fs_list_response_size(size_t count, size_t entries_bytes);

#endif /* SW_PROTO_MSG_FS_H */
