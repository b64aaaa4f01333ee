// SPDX-License-Identifier: Apache-2.0
/*
 * RAFS v5 bootstraps (spec §1): an 8 KiB superblock, an inode table of u32
 * record offsets, a blob table, an extended blob table and 128-byte inode
 * records followed by their name, symlink target, xattrs and chunk infos.
 *
 * We walk the tree from the root through the directories' child ranges
 * rather than trusting record order; every inode-table slot may be reached
 * at most once, and a directory's children must come after it in the table,
 * so a hostile bootstrap can neither loop nor blow up.
 */
#define LP_MODNAME "rafs"
#include <sys/stat.h>

#include "formats/rafs/rafs-int.h"

#define V5_INODE_SIZE 128u
#define V5_CHUNK_SIZE 80u
#define V5_EXT_BLOB_SIZE 64u

enum {
	V5_I_SYMLINK = 0x1,
	V5_I_HARDLINK = 0x2,
	V5_I_XATTR = 0x4,
	V5_I_HAS_HOLE = 0x8,
};

/* Every flag bit the v5 loader knows (spec §1.3); reserved compat bits at
 * the top are tolerated. */
#define V5_KNOWN_FLAGS 0xff0003ffull

struct v5_sb {
	uint32_t block_size;
	uint64_t flags;
	uint64_t inodes_count;
	uint64_t itable_off, pf_off, bt_off, ebt_off;
	uint32_t itable_n, pf_n, bt_size, ebt_n;
};

struct v5_inode {
	uint64_t off;
	uint64_t parent, ino;
	uint32_t uid, gid, mode;
	uint64_t size, flags;
	uint32_t nlink, child_index, child_count;
	uint32_t rdev;
	uint64_t mtime;
	const uint8_t *name;
	uint16_t name_size;
	const uint8_t *symlink;
	uint16_t symlink_size;
	const uint8_t *xattrs; /* pairs */
	uint64_t xattr_size;
	const uint8_t *chunks; /* regular files: child_count records */
};

struct v5 {
	struct rafs_parse *p;
	struct v5_sb sb;
	uint8_t *seen; /* per inode-table slot */
};

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~7ull;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int sb_table(struct rafs_parse *p, const char *what, uint64_t off,
		    uint64_t n, uint64_t esz)
{
	if (n == 0)
		return 0;
	if (off < RAFS_V5_SB_SIZE || !rafs_in(p->size, off, n * esz))
		return lp_err_set(p->err, EINVAL,
				  "%s (offset %llu, %llu bytes) is outside the "
				  "bootstrap (%zu bytes)",
				  what, (unsigned long long)off,
				  (unsigned long long)(n * esz), p->size);
	return 0;
}

static int v5_sb_parse(struct rafs_parse *p, struct v5_sb *sb)
{
	const uint8_t *d = p->d;
	int r;

	if (p->size < RAFS_V5_SB_SIZE)
		return lp_err_set(p->err, EINVAL,
				  "truncated: %zu bytes, the v5 superblock "
				  "alone is %u",
				  p->size, RAFS_V5_SB_SIZE);
	if (rafs_le32(d + 8) != RAFS_V5_SB_SIZE)
		return lp_err_set(p->err, EINVAL, "bad superblock size %u",
				  rafs_le32(d + 8));
	sb->block_size = rafs_le32(d + 12);
	sb->flags = rafs_le64(d + 16);
	sb->inodes_count = rafs_le64(d + 24);
	sb->itable_off = rafs_le64(d + 32);
	sb->pf_off = rafs_le64(d + 40);
	sb->bt_off = rafs_le64(d + 48);
	sb->itable_n = rafs_le32(d + 56);
	sb->pf_n = rafs_le32(d + 60);
	sb->bt_size = rafs_le32(d + 64);
	sb->ebt_n = rafs_le32(d + 68);
	sb->ebt_off = rafs_le64(d + 72);

	if (sb->block_size < RAFS_CHUNK_MIN ||
	    sb->block_size > RAFS_CHUNK_MAX ||
	    (sb->block_size & (sb->block_size - 1)))
		return lp_err_set(p->err, EINVAL, "bad chunk size %u",
				  sb->block_size);
	if (sb->flags & ~V5_KNOWN_FLAGS)
		return lp_err_set(
			p->err, EINVAL, "unknown superblock flags 0x%llx",
			(unsigned long long)(sb->flags & ~V5_KNOWN_FLAGS));
	if (sb->itable_n == 0)
		return lp_err_set(p->err, EINVAL, "empty inode table");
	if (sb->inodes_count > sb->itable_n)
		return lp_err_set(
			p->err, EINVAL, "%llu inodes but %u inode table slots",
			(unsigned long long)sb->inodes_count, sb->itable_n);
	r = sb_table(p, "inode table", sb->itable_off, sb->itable_n, 4);
	if (r < 0)
		return r;
	r = sb_table(p, "prefetch table", sb->pf_off, sb->pf_n, 4);
	if (r < 0)
		return r;
	r = sb_table(p, "blob table", sb->bt_off, sb->bt_size, 1);
	if (r < 0)
		return r;
	r = sb_table(p, "extended blob table", sb->ebt_off, sb->ebt_n,
		     V5_EXT_BLOB_SIZE);
	if (r < 0)
		return r;
	/* An empty table's offset is unchecked: never form a pointer from it. */
	if (sb->itable_n == 0)
		sb->itable_off = 0;
	if (sb->pf_n == 0)
		sb->pf_off = 0;
	if (sb->bt_size == 0)
		sb->bt_off = 0;
	if (sb->ebt_n == 0)
		sb->ebt_off = 0;
	p->meta.flags = sb->flags;
	p->meta.chunk_size = sb->block_size;
	return 0;
}

/*
 * The blob table: `u32 readahead_offset | u32 readahead_size | id` entries,
 * NUL-separated, zero padding at the end.
 */
static int v5_blob_table(struct rafs_parse *p, const struct v5_sb *sb)
{
	const uint8_t *t = p->d + sb->bt_off;
	size_t pos = 0, len = sb->bt_size;
	uint8_t codec, digest_alg;
	int r;

	r = rafs_flags_codec(p, sb->flags, &codec, &digest_alg);
	if (r < 0)
		return r;
	while (len - pos > 8) {
		const uint8_t *id = t + pos + 8;
		const uint8_t *nul = memchr(id, '\0', len - pos - 8);
		size_t id_len = nul ? (size_t)(nul - id) : len - pos - 8;
		struct rafs_blob *blob;

		if (id_len == 0 && all_zero(t + pos, len - pos))
			break; /* padding */
		p->blobs = lp_xrealloc(p->blobs,
				       (p->n_blobs + 1) * sizeof(*p->blobs));
		blob = &p->blobs[p->n_blobs];
		memset(blob, 0, sizeof(*blob));
		r = rafs_blob_set_id(p, blob, id, id_len);
		if (r < 0)
			return lp_err_wrap(p->err, "blob %u", p->n_blobs);
		blob->codec = codec;
		blob->digest_alg = digest_alg;
		blob->features = RAFS_BLOB_V5_NO_EXT;
		p->n_blobs++;
		pos += 8 + id_len + (nul ? 1 : 0);
	}
	if (sb->ebt_n && sb->ebt_n < p->n_blobs)
		return lp_err_set(p->err, EINVAL,
				  "extended blob table has %u entries for %u "
				  "blobs",
				  sb->ebt_n, p->n_blobs);
	for (uint32_t i = 0; sb->ebt_n && i < p->n_blobs; i++) {
		const uint8_t *e = p->d + sb->ebt_off + i * V5_EXT_BLOB_SIZE;
		struct rafs_blob *blob = &p->blobs[i];

		blob->chunk_count = rafs_le32(e);
		blob->features = rafs_le32(e + 4);
		blob->uncomp_size = rafs_le64(e + 8);
		blob->comp_size = rafs_le64(e + 16);
		if (blob->features & RAFS_BLOB_V5_NO_EXT)
			return lp_err_set(p->err, EINVAL,
					  "blob %s: invalid feature bits 0x%x",
					  blob->id, blob->features);
		if (blob->features & RAFS_BLOB_ENCRYPTED)
			return lp_err_set(p->err, EOPNOTSUPP,
					  "blob %s is encrypted", blob->id);
		if (blob->chunk_count > RAFS_BLOB_MAX_CHUNKS)
			return lp_err_set(p->err, EINVAL, "blob %s: %u chunks",
					  blob->id, blob->chunk_count);
	}
	return 0;
}

int rafs_v5_blobs(struct rafs_parse *p)
{
	struct v5_sb sb;
	int r;

	r = v5_sb_parse(p, &sb);
	if (r < 0)
		return r;
	return v5_blob_table(p, &sb);
}

/* Reads and bounds-checks the record of inode-table slot idx (1-based). */
static int v5_inode_read(struct v5 *v, uint32_t idx, struct v5_inode *in)
{
	struct rafs_parse *p = v->p;
	const uint8_t *r;
	uint64_t pos, need;

	in->off =
		(uint64_t)rafs_le32(p->d + v->sb.itable_off + 4ull * (idx - 1))
		<< 3;
	if (in->off < RAFS_V5_SB_SIZE ||
	    !rafs_in(p->size, in->off, V5_INODE_SIZE))
		return lp_err_set(p->err, EINVAL,
				  "inode %u: record offset %llu is outside "
				  "the bootstrap",
				  idx, (unsigned long long)in->off);
	r = p->d + in->off;
	in->parent = rafs_le64(r + 32);
	in->ino = rafs_le64(r + 40);
	in->uid = rafs_le32(r + 48);
	in->gid = rafs_le32(r + 52);
	in->mode = rafs_le32(r + 60);
	in->size = rafs_le64(r + 64);
	in->flags = rafs_le64(r + 80);
	in->nlink = rafs_le32(r + 88);
	in->child_index = rafs_le32(r + 92);
	in->child_count = rafs_le32(r + 96);
	in->name_size = rafs_le16(r + 100);
	in->symlink_size = rafs_le16(r + 102);
	in->rdev = rafs_le32(r + 104);
	in->mtime = rafs_le64(r + 112);
	if (in->ino == 0)
		return lp_err_set(p->err, EINVAL, "inode %u: inode number 0",
				  idx);
	if (in->name_size == 0 || in->name_size > RAFS_NAME_MAX + 1)
		return lp_err_set(p->err, EINVAL, "inode %u: name of %u bytes",
				  idx, in->name_size);

	pos = in->off + V5_INODE_SIZE;
	if (!rafs_in(p->size, pos, in->name_size))
		goto trunc;
	in->name = p->d + pos;
	pos += align8(in->name_size);
	in->symlink = NULL;
	if (in->flags & V5_I_SYMLINK) {
		if (!rafs_in(p->size, pos, in->symlink_size))
			goto trunc;
		in->symlink = p->d + pos;
		pos += align8(in->symlink_size);
	}
	in->xattrs = NULL;
	in->xattr_size = 0;
	if (in->flags & V5_I_XATTR) {
		if (!rafs_in(p->size, pos, 8))
			goto trunc;
		in->xattr_size = rafs_le64(p->d + pos);
		pos += 8;
		if (!rafs_in(p->size, pos, in->xattr_size))
			goto trunc;
		in->xattrs = p->d + pos;
		pos += align8(in->xattr_size);
	}
	in->chunks = NULL;
	if (S_ISREG(in->mode)) {
		need = (uint64_t)in->child_count * V5_CHUNK_SIZE;
		if (!rafs_in(p->size, pos, need))
			goto trunc;
		in->chunks = p->d + pos;
	}
	return 0;
trunc:
	return lp_err_set(p->err, EINVAL,
			  "inode %u: record at %llu runs past the end of the "
			  "bootstrap",
			  idx, (unsigned long long)in->off);
}


/* `u32 pair_size | name | NUL | value` pairs. */
static int v5_xattrs(struct v5 *v, const struct v5_inode *in, uint32_t id)
{
	struct rafs_parse *p = v->p;
	uint64_t pos = 0;

	while (pos < in->xattr_size) {
		const uint8_t *pair;
		const uint8_t *nul;
		uint32_t psz;
		int r;

		if (in->xattr_size - pos < 4)
			goto bad;
		psz = rafs_le32(in->xattrs + pos);
		pos += 4;
		if (psz > in->xattr_size - pos)
			goto bad;
		pair = in->xattrs + pos;
		nul = memchr(pair, '\0', psz);
		if (!nul || nul == pair)
			goto bad;
		r = model_builder_add_xattr(p->b, id, (const char *)pair,
					    nul + 1, psz - (nul + 1 - pair),
					    p->err);
		if (r < 0)
			return r;
		pos += psz;
	}
	return 0;
bad:
	return lp_err_set(p->err, EINVAL, "%s: bad xattr table",
			  rafs_cur_path(p));
}

static int v5_visit(struct v5 *v, uint32_t idx, const struct v5_inode *in);

static int v5_children(struct v5 *v, uint32_t idx, const struct v5_inode *in)
{
	struct rafs_parse *p = v->p;
	uint64_t end = (uint64_t)in->child_index + in->child_count;

	if (in->child_count == 0)
		return 0;
	if (in->child_index <= idx || end - 1 > v->sb.itable_n)
		return lp_err_set(p->err, EINVAL,
				  "%s: children [%u, %llu) outside (%u, %u]",
				  rafs_cur_path(p), in->child_index,
				  (unsigned long long)end, idx, v->sb.itable_n);
	for (uint32_t c = in->child_index; c < end; c++) {
		struct v5_inode ci;
		size_t old;
		int r;

		if (v->seen[c])
			return lp_err_set(p->err, EINVAL,
					  "inode %u is listed twice", c);
		v->seen[c] = 1;
		r = v5_inode_read(v, c, &ci);
		if (r < 0)
			return r;
		r = rafs_path_push(p, ci.name, ci.name_size, &old);
		if (r < 0)
			return r;
		r = v5_visit(v, c, &ci);
		if (r < 0)
			return r;
		p->path_len = old;
		p->path[old] = '\0';
	}
	return 0;
}

static int v5_visit(struct v5 *v, uint32_t idx, const struct v5_inode *in)
{
	struct rafs_parse *p = v->p;
	struct model_entry e = { 0 };
	uint32_t id, prev;
	int r;

	if (model_type_from_mode(in->mode, &e.type) < 0)
		return lp_err_set(p->err, EINVAL, "%s: bad mode 0%o",
				  rafs_cur_path(p), in->mode);
	if (idx == 1 && e.type != MODEL_DIR)
		return lp_err_set(p->err, EINVAL,
				  "the root is not a directory");
	prev = rafs_map_get(&p->ids, in->ino);
	if (prev && e.type == MODEL_DIR)
		return lp_err_set(p->err, EINVAL,
				  "%s: directory inode %llu appears twice",
				  rafs_cur_path(p),
				  (unsigned long long)in->ino);
	e.mode = in->mode & 07777;
	e.uid = in->uid;
	e.gid = in->gid;
	e.mtime = (int64_t)in->mtime;
	if (prev) {
		/* Every name of a hardlinked file has its own record with
		 * the first name's i_ino. */
		e.type = MODEL_HARDLINK;
		e.link_id = prev;
		return rafs_add_entry(p, &e, NULL);
	}
	if (e.type == MODEL_REG)
		e.size = in->size;
	if (e.type == MODEL_SYMLINK) {
		if (!in->symlink || in->symlink_size == 0)
			return lp_err_set(p->err, EINVAL,
					  "%s: symlink without a target",
					  rafs_cur_path(p));
		e.link = (const char *)in->symlink;
		e.link_len = in->symlink_size;
	}
	if (e.type == MODEL_CHAR || e.type == MODEL_BLOCK)
		rafs_rdev(in->rdev, &e.rdev_major, &e.rdev_minor);
	r = rafs_add_entry(p, &e, &id);
	if (r < 0)
		return r;
	rafs_map_put(&p->ids, in->ino, id);
	rafs_prefetch_note(p, in->ino);
	if (in->xattrs) {
		r = v5_xattrs(v, in, id);
		if (r < 0)
			return r;
	}
	if (e.type == MODEL_REG) {
		for (uint32_t k = 0; k < in->child_count; k++) {
			const uint8_t *rec = in->chunks + k * V5_CHUNK_SIZE;

			r = rafs_add_chunk_record(p, id, rec,
						  rafs_le64(rec + 64));
			if (r < 0)
				return r;
		}
	}
	if (e.type == MODEL_DIR)
		return v5_children(v, idx, in);
	return 0;
}

int rafs_v5_load(struct rafs_parse *p)
{
	struct v5 v = { .p = p };
	struct v5_inode root;
	int r;

	r = v5_sb_parse(p, &v.sb);
	if (r < 0)
		return r;
	r = v5_blob_table(p, &v.sb);
	if (r < 0)
		return r;
	r = rafs_add_blobs(p);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < v.sb.pf_n; i++) {
		uint32_t ino = rafs_le32(p->d + v.sb.pf_off + 4ull * i);

		if (!ino)
			break;
		rafs_prefetch_add(p, ino);
	}
	v.seen = lp_xcalloc((size_t)v.sb.itable_n + 1, 1);
	v.seen[1] = 1;
	r = v5_inode_read(&v, 1, &root);
	if (r == 0)
		r = v5_visit(&v, 1, &root);
	free(v.seen);
	return r;
}
