// SPDX-License-Identifier: Apache-2.0
/*
 * RAFS v6 bootstraps (spec §2): an EROFS image whose regular files are
 * chunk-based, with a nydus extended superblock at 1152, a blob table, a
 * prefetch table of nids and, at the end, a chunk table of 80-byte chunk
 * infos that maps (blob, chunk index) to stored offsets and digests.
 *
 * The tree is walked from the root nid.  A directory nid may be entered only
 * once (EROFS directories cannot be hardlinked), so "." / ".." tricks and
 * cycles are rejected; any other nid reached twice is a hardlink.
 */
#define LP_MODNAME "rafs"
#include <sys/stat.h>

#include "formats/rafs/rafs-int.h"

#define V6_COMPAT_RAFS 0x40000000u
#define V6_INCOMPAT_CHUNKED 0x4u
#define V6_INCOMPAT_DEVICE_TABLE 0x8u
#define V6_BLOB_SIZE 256u
#define V6_DEVSLOT_SIZE 128u
#define V6_CHUNK_SIZE 80u
#define V6_DIRENT_SIZE 12u
#define V6_NULL_ADDR 0xffffffffu
#define V6_CHUNK_INDEXES 0x20u

enum {
	V6_FLAT_PLAIN = 0,
	V6_FLAT_INLINE = 2,
	V6_CHUNK_BASED = 4
};

struct v6_sb {
	uint8_t blkbits;
	uint32_t blksz;
	uint64_t root_nid;
	uint64_t meta_off; /* meta_blkaddr * block size */
	uint16_t extra_devices;
	uint64_t flags;
	uint64_t bt_off, ct_off, ct_size, pf_off;
	uint32_t bt_size, chunk_size, pf_size;
};

struct v6_inode {
	uint64_t nid, off;
	uint16_t format, xattr_icount, mode;
	uint8_t layout;
	uint32_t isz, xsz; /* inode and xattr-area bytes */
	uint64_t size;
	uint32_t u, ino, uid, gid, nlink;
	int64_t mtime;
};

/* Chunk table entries sorted by (blob index, chunk index). */
struct v6_ct {
	uint64_t key;
	const uint8_t *rec;
};

struct v6 {
	struct rafs_parse *p;
	struct v6_sb sb;
	struct v6_ct *ct;
	size_t n_ct;
	struct rafs_map links; /* i_ino -> entry id, files with nlink > 1 */
};

static int v6_sb_parse(struct rafs_parse *p, struct v6_sb *sb)
{
	const uint8_t *s = p->d + RAFS_V6_SB_OFF,
		      *x = p->d + RAFS_V6_EXT_SB_OFF;
	uint32_t compat, incompat;
	uint16_t slotoff;
	uint8_t codec, digest;
	int r;

	if (p->size < RAFS_V6_EXT_SB_OFF + 256)
		return lp_err_set(p->err, EINVAL,
				  "truncated: %zu bytes, the v6 superblocks "
				  "end at %u",
				  p->size, RAFS_V6_EXT_SB_OFF + 256);
	compat = rafs_le32(s + 8);
	incompat = rafs_le32(s + 80);
	if (!(compat & V6_COMPAT_RAFS))
		return lp_err_set(p->err, EINVAL,
				  "an EROFS image, but not RAFS v6 (compat "
				  "0x%x)",
				  compat);
	if (incompat & ~(V6_INCOMPAT_CHUNKED | V6_INCOMPAT_DEVICE_TABLE))
		return lp_err_set(p->err, EOPNOTSUPP,
				  "unsupported EROFS incompat features 0x%x",
				  incompat);
	sb->blkbits = s[12];
	if (sb->blkbits != 12 && sb->blkbits != 9)
		return lp_err_set(p->err, EINVAL, "bad block size bits %u",
				  sb->blkbits);
	sb->blksz = 1u << sb->blkbits;
	sb->root_nid = rafs_le16(s + 14);
	sb->meta_off = (uint64_t)rafs_le32(s + 40) << sb->blkbits;
	sb->extra_devices = rafs_le16(s + 86);
	slotoff = rafs_le16(s + 88);

	sb->flags = rafs_le64(x);
	sb->bt_off = rafs_le64(x + 8);
	sb->bt_size = rafs_le32(x + 16);
	sb->chunk_size = rafs_le32(x + 20);
	sb->ct_off = rafs_le64(x + 24);
	sb->ct_size = rafs_le64(x + 32);
	sb->pf_off = rafs_le64(x + 40);
	sb->pf_size = rafs_le32(x + 48);

	r = rafs_flags_codec(p, sb->flags, &codec, &digest);
	if (r < 0)
		return r;
	if (sb->chunk_size < RAFS_CHUNK_MIN ||
	    sb->chunk_size > RAFS_CHUNK_MAX ||
	    (sb->chunk_size & (sb->chunk_size - 1)))
		return lp_err_set(p->err, EINVAL, "bad chunk size %u",
				  sb->chunk_size);
	if (sb->bt_size % V6_BLOB_SIZE ||
	    !rafs_in(p->size, sb->bt_off, sb->bt_size))
		return lp_err_set(p->err, EINVAL,
				  "blob table (offset %llu, %u bytes) is "
				  "malformed or outside the bootstrap",
				  (unsigned long long)sb->bt_off, sb->bt_size);
	if (sb->bt_size / V6_BLOB_SIZE != sb->extra_devices)
		return lp_err_set(
			p->err, EINVAL, "%u blob table entries but %u devices",
			sb->bt_size / V6_BLOB_SIZE, sb->extra_devices);
	if (!rafs_in(p->size, (uint64_t)slotoff * V6_DEVSLOT_SIZE,
		     (uint64_t)sb->extra_devices * V6_DEVSLOT_SIZE))
		return lp_err_set(p->err, EINVAL,
				  "device table is outside the bootstrap");
	if (sb->ct_size % V6_CHUNK_SIZE ||
	    !rafs_in(p->size, sb->ct_off, sb->ct_size))
		return lp_err_set(p->err, EINVAL,
				  "chunk table (offset %llu, %llu bytes) is "
				  "malformed or outside the bootstrap",
				  (unsigned long long)sb->ct_off,
				  (unsigned long long)sb->ct_size);
	if (!rafs_in(p->size, sb->pf_off, sb->pf_size))
		return lp_err_set(p->err, EINVAL,
				  "prefetch table is outside the bootstrap");
	p->meta.flags = sb->flags;
	p->meta.chunk_size = sb->chunk_size;
	return 0;
}

static int v6_blob_table(struct rafs_parse *p, const struct v6_sb *sb)
{
	uint32_t n = sb->bt_size / V6_BLOB_SIZE;

	p->blobs = lp_xcalloc(n ? n : 1, sizeof(*p->blobs));
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e =
			p->d + sb->bt_off + (uint64_t)i * V6_BLOB_SIZE;
		struct rafs_blob *blob = &p->blobs[i];
		uint32_t comp = rafs_le32(e + 76), dig = rafs_le32(e + 80);
		int r;

		r = rafs_blob_set_id(p, blob, e, strnlen((const char *)e, 64));
		if (r < 0)
			return lp_err_wrap(p->err, "blob %u", i);
		p->n_blobs = i + 1;
		if (rafs_le32(e + 64) != i)
			return lp_err_set(p->err, EINVAL,
					  "blob %s: index %u at position %u",
					  blob->id, rafs_le32(e + 64), i);
		if (rafs_le32(e + 68) != sb->chunk_size)
			return lp_err_set(p->err, EINVAL,
					  "blob %s: chunk size %u, superblock "
					  "says %u",
					  blob->id, rafs_le32(e + 68),
					  sb->chunk_size);
		blob->chunk_count = rafs_le32(e + 72);
		blob->features = rafs_le32(e + 84);
		blob->comp_size = rafs_le64(e + 88);
		blob->uncomp_size = rafs_le64(e + 96);
		if (blob->chunk_count > RAFS_BLOB_MAX_CHUNKS)
			return lp_err_set(p->err, EINVAL, "blob %s: %u chunks",
					  blob->id, blob->chunk_count);
		switch (comp) {
		case RAFS_COMP_NONE:
			blob->codec = MODEL_CODEC_NONE;
			break;
		case RAFS_COMP_LZ4:
			blob->codec = MODEL_CODEC_RAFS_LZ4;
			break;
		case RAFS_COMP_GZIP:
			blob->codec = MODEL_CODEC_RAFS_GZIP;
			break;
		case RAFS_COMP_ZSTD:
			blob->codec = MODEL_CODEC_RAFS_ZSTD;
			break;
		default:
			return lp_err_set(p->err, EINVAL,
					  "blob %s: unknown compressor %u",
					  blob->id, comp);
		}
		if (dig == RAFS_DIGEST_BLAKE3)
			blob->digest_alg = MODEL_DIGEST_BLAKE3;
		else if (dig == RAFS_DIGEST_SHA256)
			blob->digest_alg = MODEL_DIGEST_SHA256;
		else
			return lp_err_set(p->err, EINVAL,
					  "blob %s: unknown digester %u",
					  blob->id, dig);
		if ((blob->features & RAFS_BLOB_ENCRYPTED) ||
		    rafs_le32(e + 216))
			return lp_err_set(p->err, EOPNOTSUPP,
					  "blob %s is encrypted", blob->id);
		if (blob->features & RAFS_BLOB_V5_NO_EXT)
			return lp_err_set(p->err, EINVAL,
					  "blob %s: invalid feature bits 0x%x",
					  blob->id, blob->features);
	}
	return 0;
}

int rafs_v6_blobs(struct rafs_parse *p)
{
	struct v6_sb sb;
	int r;

	r = v6_sb_parse(p, &sb);
	if (r < 0)
		return r;
	return v6_blob_table(p, &sb);
}

static int ct_cmp(const void *a, const void *b)
{
	const struct v6_ct *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->rec < y->rec ? -1 : x->rec > y->rec;
}

static void v6_chunk_table(struct v6 *v)
{
	struct rafs_parse *p = v->p;

	v->n_ct = v->sb.ct_size / V6_CHUNK_SIZE;
	v->ct = lp_xcalloc(v->n_ct ? v->n_ct : 1, sizeof(*v->ct));
	for (size_t i = 0; i < v->n_ct; i++) {
		const uint8_t *rec = p->d + v->sb.ct_off + i * V6_CHUNK_SIZE;

		v->ct[i].key = (uint64_t)rafs_le32(rec + 32) << 32 |
			       rafs_le32(rec + 72);
		v->ct[i].rec = rec;
	}
	qsort(v->ct, v->n_ct, sizeof(*v->ct), ct_cmp);
}

static const uint8_t *v6_ct_find(const struct v6 *v, uint32_t blob,
				 uint32_t index)
{
	uint64_t key = (uint64_t)blob << 32 | index;
	size_t lo = 0, hi = v->n_ct;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->ct[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < v->n_ct && v->ct[lo].key == key ? v->ct[lo].rec : NULL;
}

static int v6_inode_read(struct v6 *v, uint64_t nid, struct v6_inode *in)
{
	struct rafs_parse *p = v->p;
	const uint8_t *r;

	in->nid = nid;
	if (nid > (p->size >> 5) ||
	    lp_add_overflow(v->sb.meta_off, nid << 5, &in->off) ||
	    !rafs_in(p->size, in->off, 32))
		return lp_err_set(p->err, EINVAL,
				  "%s: nid %llu is outside the bootstrap",
				  rafs_cur_path(p), (unsigned long long)nid);
	r = p->d + in->off;
	in->format = rafs_le16(r);
	in->xattr_icount = rafs_le16(r + 2);
	in->mode = rafs_le16(r + 4);
	if (in->format & ~0xfu)
		return lp_err_set(p->err, EINVAL, "%s: bad inode format 0x%x",
				  rafs_cur_path(p), in->format);
	in->layout = (in->format >> 1) & 7;
	if (in->layout != V6_FLAT_PLAIN && in->layout != V6_FLAT_INLINE &&
	    in->layout != V6_CHUNK_BASED)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: unsupported EROFS data layout %u",
				  rafs_cur_path(p), in->layout);
	if (in->format & 1) {
		in->isz = 64;
		if (!rafs_in(p->size, in->off, 64))
			goto trunc;
		in->size = rafs_le64(r + 8);
		in->u = rafs_le32(r + 16);
		in->ino = rafs_le32(r + 20);
		in->uid = rafs_le32(r + 24);
		in->gid = rafs_le32(r + 28);
		in->mtime = (int64_t)rafs_le64(r + 32);
		in->nlink = rafs_le32(r + 44);
	} else {
		in->isz = 32;
		in->nlink = rafs_le16(r + 6);
		in->size = rafs_le32(r + 8);
		in->u = rafs_le32(r + 16);
		in->ino = rafs_le32(r + 20);
		in->uid = rafs_le16(r + 24);
		in->gid = rafs_le16(r + 26);
		in->mtime = 0;
	}
	in->xsz = in->xattr_icount ? 12 + 4u * (in->xattr_icount - 1) : 0;
	if (!rafs_in(p->size, in->off, (uint64_t)in->isz + in->xsz))
		goto trunc;
	return 0;
trunc:
	return lp_err_set(p->err, EINVAL,
			  "%s: inode (nid %llu) runs past the end of the "
			  "bootstrap",
			  rafs_cur_path(p), (unsigned long long)nid);
}

/*
 * The data of a flat (directory or symlink) inode: head = the full blocks
 * at block address i_u (FLAT_PLAIN: all of it), tail = the last partial
 * block, inline right after the inode and its xattrs (FLAT_INLINE).
 */
struct v6_flat {
	const uint8_t *head, *tail;
	uint64_t head_len, tail_len;
};

static int v6_flat_data(struct v6 *v, const struct v6_inode *in,
			struct v6_flat *f)
{
	struct rafs_parse *p = v->p;
	uint64_t boff = (uint64_t)in->u << v->sb.blkbits;

	memset(f, 0, sizeof(*f));
	if (in->layout == V6_FLAT_PLAIN) {
		f->head_len = in->size;
	} else if (in->layout == V6_FLAT_INLINE) {
		f->tail_len = in->size & (v->sb.blksz - 1);
		f->head_len = in->size - f->tail_len;
	} else {
		return lp_err_set(p->err, EINVAL,
				  "%s: chunk-based directory or symlink",
				  rafs_cur_path(p));
	}
	if (f->head_len) {
		if (!rafs_in(p->size, boff, f->head_len))
			goto out;
		f->head = p->d + boff;
	}
	if (f->tail_len) {
		uint64_t toff = in->off + in->isz + in->xsz;

		if (!rafs_in(p->size, toff, f->tail_len))
			goto out;
		f->tail = p->d + toff;
	}
	return 0;
out:
	return lp_err_set(p->err, EINVAL,
			  "%s: data (%llu bytes) is outside the bootstrap",
			  rafs_cur_path(p), (unsigned long long)in->size);
}


static const char *const v6_xattr_prefix[] = {
	[1] = "user.",
	[2] = "system.posix_acl_access",
	[3] = "system.posix_acl_default",
	[4] = "trusted.",
	[5] = "lustre.",
	[6] = "security.",
};

/* Inline xattrs: a 12-byte ibody header, then 4-aligned entries
 * `u8 name_len | u8 name_index | u16 value_size | suffix | value`. */
static int v6_xattrs(struct v6 *v, const struct v6_inode *in, uint32_t id)
{
	struct rafs_parse *p = v->p;
	const uint8_t *a = p->d + in->off + in->isz;
	uint32_t pos = 12;
	char name[256 + 32];

	if (!in->xsz)
		return 0;
	if (a[4])
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: shared xattrs are not supported",
				  rafs_cur_path(p));
	while (in->xsz - pos >= 4) {
		uint8_t nl = a[pos], ni = a[pos + 1];
		uint16_t vs = rafs_le16(a + pos + 2);
		const char *pre;
		size_t pl;
		int r;

		if ((uint32_t)nl + vs > in->xsz - pos - 4)
			return lp_err_set(p->err, EINVAL,
					  "%s: xattr runs past its area",
					  rafs_cur_path(p));
		if (ni >= ARRAY_SIZE(v6_xattr_prefix) || !v6_xattr_prefix[ni])
			return lp_err_set(p->err, EOPNOTSUPP,
					  "%s: unsupported xattr name index %u",
					  rafs_cur_path(p), ni);
		pre = v6_xattr_prefix[ni];
		pl = strlen(pre);
		memcpy(name, pre, pl);
		memcpy(name + pl, a + pos + 4, nl);
		name[pl + nl] = '\0';
		if (strlen(name) != pl + nl || (nl == 0 && pre[pl - 1] == '.'))
			return lp_err_set(p->err, EINVAL, "%s: bad xattr name",
					  rafs_cur_path(p));
		r = model_builder_add_xattr(p->b, id, name, a + pos + 4 + nl,
					    vs, p->err);
		if (r < 0)
			return r;
		pos += (4u + nl + vs + 3) & ~3u;
	}
	return 0;
}

static int v6_chunks(struct v6 *v, const struct v6_inode *in, uint32_t id)
{
	struct rafs_parse *p = v->p;
	uint64_t cs = v->sb.chunk_size;
	uint64_t n = in->size / cs + (in->size % cs != 0);
	uint64_t aoff = in->off + ((in->isz + in->xsz + 7) & ~7u);

	if (in->size == 0)
		return 0;
	if (in->layout != V6_CHUNK_BASED)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: file data inside the bootstrap (layout "
				  "%u) is not supported",
				  rafs_cur_path(p), in->layout);
	if (!(in->u & V6_CHUNK_INDEXES))
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: block-map chunk format 0x%x is not "
				  "supported",
				  rafs_cur_path(p), in->u);
	if (n > p->size / 8 || !rafs_in(p->size, aoff, n * 8))
		return lp_err_set(p->err, EINVAL,
				  "%s: %llu chunk addresses run past the end "
				  "of the bootstrap",
				  rafs_cur_path(p), (unsigned long long)n);
	for (uint64_t k = 0; k < n; k++) {
		const uint8_t *a = p->d + aoff + k * 8;
		uint16_t hi = rafs_le16(a + 2);
		uint32_t ci = rafs_le16(a) | (uint32_t)(hi >> 8) << 16;
		uint32_t dev = hi & 0xff, blk = rafs_le32(a + 4);
		uint64_t len = in->size - k * cs < cs ? in->size - k * cs : cs;
		const struct rafs_blob *blob;
		const uint8_t *rec;
		int r;

		if (blk == V6_NULL_ADDR)
			continue; /* a hole: the builder reports the gap */
		if (dev == 0 || dev > p->n_blobs)
			return lp_err_set(
				p->err, EINVAL,
				"%s: chunk %llu names device %u of %u",
				rafs_cur_path(p), (unsigned long long)k, dev,
				p->n_blobs);
		blob = &p->blobs[dev - 1];
		if (blob->features & RAFS_BLOB_TARFS) {
			/* The blob is the tar itself: data is stored raw at
			 * a block address, and carries no digest. */
			struct model_chunk c = {
				.file_off = k * cs,
				.len = len,
				.comp_off = (uint64_t)blk << v->sb.blkbits,
				.comp_len = len,
				.aux_off = (uint64_t)blk << v->sb.blkbits,
				.aux = ci,
				.blob = dev - 1,
				.codec = MODEL_CODEC_NONE,
				.digest_alg = MODEL_DIGEST_NONE,
			};
			uint64_t end = c.comp_off + c.len;

			if (blob->comp_size && end > blob->comp_size)
				return lp_err_set(p->err, EINVAL,
						  "%s: chunk %llu is outside "
						  "tar blob %s",
						  rafs_cur_path(p),
						  (unsigned long long)k,
						  blob->id);
			r = model_builder_add_chunk(p->b, id, &c, p->err);
			if (r < 0)
				return r;
			continue;
		}
		rec = v6_ct_find(v, dev - 1, ci);
		if (!rec)
			return lp_err_set(p->err, EINVAL,
					  "%s: chunk %llu (blob %u, index %u) "
					  "is not in the chunk table",
					  rafs_cur_path(p),
					  (unsigned long long)k, dev - 1, ci);
		if (rafs_le64(rec + 56) != (uint64_t)blk << v->sb.blkbits ||
		    rafs_le32(rec + 44) != len)
			return lp_err_set(
				p->err, EINVAL,
				"%s: chunk %llu: address (block %u, "
				"%llu bytes) disagrees with the "
				"chunk table (offset %llu, %u bytes)",
				rafs_cur_path(p), (unsigned long long)k, blk,
				(unsigned long long)len,
				(unsigned long long)rafs_le64(rec + 56),
				rafs_le32(rec + 44));
		r = rafs_add_chunk_record(p, id, rec, k * cs);
		if (r < 0)
			return r;
	}
	return 0;
}

static int v6_visit(struct v6 *v, uint64_t nid, bool root);

static int v6_dir_block(struct v6 *v, const struct v6_inode *dir,
			const uint8_t *blk, uint32_t len)
{
	struct rafs_parse *p = v->p;
	uint32_t n, nameoff0;

	if (len < V6_DIRENT_SIZE)
		goto bad;
	nameoff0 = rafs_le16(blk + 8);
	n = nameoff0 / V6_DIRENT_SIZE;
	if (nameoff0 < V6_DIRENT_SIZE || nameoff0 >= len)
		goto bad;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *de = blk + i * V6_DIRENT_SIZE;
		uint32_t off = rafs_le16(de + 8);
		uint32_t end =
			i + 1 < n ? rafs_le16(de + V6_DIRENT_SIZE + 8) : len;
		const uint8_t *name = blk + off;
		size_t nl, old;
		int r;

		if (off < nameoff0 || end <= off || end > len)
			goto bad;
		nl = strnlen((const char *)name, end - off);
		if (nl == 1 && name[0] == '.')
			continue;
		if (nl == 2 && name[0] == '.' && name[1] == '.')
			continue;
		r = rafs_path_push(p, name, nl, &old);
		if (r < 0)
			return r;
		r = v6_visit(v, rafs_le64(de), false);
		if (r < 0)
			return r;
		p->path_len = old;
		p->path[old] = '\0';
	}
	return 0;
bad:
	return lp_err_set(p->err, EINVAL,
			  "%s: corrupt directory block (nid %llu)",
			  rafs_cur_path(p), (unsigned long long)dir->nid);
}

static int v6_dir(struct v6 *v, const struct v6_inode *in)
{
	struct v6_flat f;
	uint32_t bs = v->sb.blksz;
	int r;

	r = v6_flat_data(v, in, &f);
	if (r < 0)
		return r;
	for (uint64_t o = 0; o < f.head_len; o += bs) {
		uint64_t l = f.head_len - o < bs ? f.head_len - o : bs;

		r = v6_dir_block(v, in, f.head + o, (uint32_t)l);
		if (r < 0)
			return r;
	}
	if (f.tail_len)
		return v6_dir_block(v, in, f.tail, (uint32_t)f.tail_len);
	return 0;
}

static int v6_visit(struct v6 *v, uint64_t nid, bool root)
{
	struct rafs_parse *p = v->p;
	struct model_entry e = { 0 };
	struct v6_inode in;
	char *target = p->link; /* not on the stack: this recurses */
	uint32_t id, prev;
	int r;

	r = v6_inode_read(v, nid, &in);
	if (r < 0)
		return r;
	if (model_type_from_mode(in.mode, &e.type) < 0)
		return lp_err_set(p->err, EINVAL, "%s: bad mode 0%o",
				  rafs_cur_path(p), in.mode);
	if (root && e.type != MODEL_DIR)
		return lp_err_set(p->err, EINVAL,
				  "the root is not a directory");
	prev = rafs_map_get(&p->ids, nid);
	if (prev && e.type == MODEL_DIR)
		return lp_err_set(p->err, EINVAL,
				  "%s: directory nid %llu is linked twice",
				  rafs_cur_path(p), (unsigned long long)nid);
	/*
	 * Older builders wrote every name of a hardlinked file as its own
	 * inode carrying the first name's i_ino (as v5 does); newer ones
	 * point all names at one nid.
	 */
	if (!prev && e.type == MODEL_REG && in.nlink > 1 && in.ino) {
		prev = rafs_map_get(&v->links, in.ino);
		if (prev)
			rafs_map_put(&p->ids, nid, prev);
	}
	if (prev) {
		e.type = MODEL_HARDLINK;
		e.link_id = prev;
		return rafs_add_entry(p, &e, NULL);
	}
	e.mode = in.mode & 07777;
	e.uid = in.uid;
	e.gid = in.gid;
	e.mtime = in.mtime;
	if (e.type == MODEL_REG)
		e.size = in.size;
	if (e.type == MODEL_CHAR || e.type == MODEL_BLOCK)
		rafs_rdev(in.u, &e.rdev_major, &e.rdev_minor);
	if (e.type == MODEL_SYMLINK) {
		struct v6_flat f;

		if (in.size == 0 || in.size > RAFS_PATH_MAX)
			return lp_err_set(p->err, EINVAL,
					  "%s: symlink target of %llu bytes",
					  rafs_cur_path(p),
					  (unsigned long long)in.size);
		r = v6_flat_data(v, &in, &f);
		if (r < 0)
			return r;
		if (f.head_len)
			memcpy(target, f.head, f.head_len);
		if (f.tail_len)
			memcpy(target + f.head_len, f.tail, f.tail_len);
		e.link = target;
		e.link_len = in.size;
	}
	r = rafs_add_entry(p, &e, &id);
	if (r < 0)
		return r;
	rafs_map_put(&p->ids, nid, id);
	if (e.type == MODEL_REG && in.nlink > 1 && in.ino)
		rafs_map_put(&v->links, in.ino, id);
	rafs_prefetch_note(p, nid);
	r = v6_xattrs(v, &in, id);
	if (r < 0)
		return r;
	if (e.type == MODEL_REG)
		return v6_chunks(v, &in, id);
	if (e.type == MODEL_DIR)
		return v6_dir(v, &in);
	return 0;
}

int rafs_v6_load(struct rafs_parse *p)
{
	struct v6 v = { .p = p };
	int r;

	r = v6_sb_parse(p, &v.sb);
	if (r < 0)
		return r;
	r = v6_blob_table(p, &v.sb);
	if (r < 0)
		return r;
	r = rafs_add_blobs(p);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < v.sb.pf_size / 4; i++) {
		uint32_t nid = rafs_le32(p->d + v.sb.pf_off + 4ull * i);

		if (!nid)
			break;
		rafs_prefetch_add(p, nid);
	}
	v6_chunk_table(&v);
	r = v6_visit(&v, v.sb.root_nid, true);
	free(v.ct);
	rafs_map_release(&v.links);
	return r;
}
