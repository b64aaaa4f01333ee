// SPDX-License-Identifier: Apache-2.0
/*
 * RAFS bootstrap loading: version detection, the pieces the v5 and v6
 * parsers share (blob table entries, chunk records, paths, the id map), and
 * the public entry points.
 */
#define LP_MODNAME "rafs"
#include <stdio.h>

#include "formats/rafs/rafs-int.h"

/* ---- u64 -> u32 map ------------------------------------------------------ */

static size_t map_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (size_t)k;
}

void rafs_map_release(struct rafs_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

uint32_t rafs_map_get(const struct rafs_map *m, uint64_t key)
{
	size_t i;

	if (!m->cap)
		return 0;
	for (i = map_hash(key) & (m->cap - 1); m->vals[i];
	     i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key)
			return m->vals[i];
	return 0;
}

static void map_insert(uint64_t *keys, uint32_t *vals, size_t cap, uint64_t key,
		       uint32_t val)
{
	size_t i;

	for (i = map_hash(key) & (cap - 1); vals[i] && keys[i] != key;
	     i = (i + 1) & (cap - 1))
		;
	keys[i] = key;
	vals[i] = val;
}

void rafs_map_put(struct rafs_map *m, uint64_t key, uint32_t val)
{
	if ((m->used + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		uint64_t *keys = lp_xcalloc(cap, sizeof(*keys));
		uint32_t *vals = lp_xcalloc(cap, sizeof(*vals));

		for (size_t i = 0; i < m->cap; i++)
			if (m->vals[i])
				map_insert(keys, vals, cap, m->keys[i],
					   m->vals[i]);
		free(m->keys);
		free(m->vals);
		m->keys = keys;
		m->vals = vals;
		m->cap = cap;
	}
	if (!rafs_map_get(m, key))
		m->used++;
	map_insert(m->keys, m->vals, m->cap, key, val);
}

/* ---- shared helpers ------------------------------------------------------ */

int rafs_blob_set_id(struct rafs_parse *p, struct rafs_blob *blob,
		     const uint8_t *id, size_t len)
{
	if (len == 0 || len > RAFS_BLOB_ID_MAX)
		return lp_err_set(p->err, EINVAL,
				  "blob table: blob id of %zu bytes", len);
	for (size_t i = 0; i < len; i++) {
		uint8_t c = id[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
		      c == '-' || c == ':'))
			return lp_err_set(p->err, EINVAL,
					  "blob table: blob id has a bad byte "
					  "0x%02x at %zu",
					  c, i);
	}
	if ((len == 1 && id[0] == '.') ||
	    (len == 2 && id[0] == '.' && id[1] == '.'))
		return lp_err_set(p->err, EINVAL,
				  "blob table: blob id \"%.*s\"", (int)len,
				  (const char *)id);
	memcpy(blob->id, id, len);
	blob->id[len] = '\0';
	return 0;
}

int rafs_flags_codec(struct rafs_parse *p, uint64_t flags, uint8_t *codec,
		     uint8_t *digest_alg)
{
	uint64_t c =
		flags & (RAFS_SB_COMPRESSION_NONE | RAFS_SB_COMPRESSION_LZ4 |
			 RAFS_SB_COMPRESSION_GZIP | RAFS_SB_COMPRESSION_ZSTD);
	uint64_t h = flags & (RAFS_SB_HASH_BLAKE3 | RAFS_SB_HASH_SHA256);

	switch (c) {
	case RAFS_SB_COMPRESSION_NONE:
		*codec = MODEL_CODEC_NONE;
		break;
	case RAFS_SB_COMPRESSION_LZ4:
		*codec = MODEL_CODEC_RAFS_LZ4;
		break;
	case RAFS_SB_COMPRESSION_GZIP:
		*codec = MODEL_CODEC_RAFS_GZIP;
		break;
	case RAFS_SB_COMPRESSION_ZSTD:
		*codec = MODEL_CODEC_RAFS_ZSTD;
		break;
	default:
		return lp_err_set(p->err, EINVAL,
				  "superblock flags 0x%llx: need exactly one "
				  "compressor",
				  (unsigned long long)flags);
	}
	if (h == RAFS_SB_HASH_BLAKE3)
		*digest_alg = MODEL_DIGEST_BLAKE3;
	else if (h == RAFS_SB_HASH_SHA256)
		*digest_alg = MODEL_DIGEST_SHA256;
	else
		return lp_err_set(p->err, EINVAL,
				  "superblock flags 0x%llx: need exactly one "
				  "digester",
				  (unsigned long long)flags);
	if (flags & RAFS_SB_ENCRYPTION_AES_128_XTS)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "encrypted RAFS images are not supported");
	return 0;
}

int rafs_add_blobs(struct rafs_parse *p)
{
	for (uint32_t i = 0; i < p->n_blobs; i++) {
		uint32_t idx;
		int r = model_builder_add_blob(
			p->b, p->blobs[i].id, RAFS_BLOB_MEDIA_TYPE,
			p->blobs[i].comp_size, &idx, p->err);
		if (r < 0)
			return r;
	}
	p->meta.n_blobs = p->n_blobs;
	return 0;
}

int rafs_path_push(struct rafs_parse *p, const uint8_t *name, size_t len,
		   size_t *old_len)
{
	if (len == 0 || len > RAFS_NAME_MAX || memchr(name, '/', len) ||
	    memchr(name, '\0', len) || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return lp_err_set(p->err, EINVAL, "%s: bad child name \"%.*s\"",
				  rafs_cur_path(p), (int)(len > 64 ? 64 : len),
				  (const char *)name);
	if (p->path_len + 1 + len > RAFS_PATH_MAX)
		return lp_err_set(p->err, ENAMETOOLONG,
				  "%.64s...: path longer than %u bytes",
				  p->path, RAFS_PATH_MAX);
	*old_len = p->path_len;
	p->path[p->path_len++] = '/';
	memcpy(p->path + p->path_len, name, len);
	p->path_len += len;
	p->path[p->path_len] = '\0';
	return 0;
}

int rafs_add_entry(struct rafs_parse *p, struct model_entry *e,
		   uint32_t *ret_id)
{
	e->path = rafs_cur_path(p);
	e->path_len = p->path_len ? p->path_len : 1;
	return model_builder_add(p->b, e, ret_id, p->err);
}

int rafs_add_chunk_record(struct rafs_parse *p, uint32_t id, const uint8_t *rec,
			  uint64_t file_off)
{
	struct model_chunk c = { 0 };
	uint32_t blob_index = rafs_le32(rec + 32);
	uint32_t flags = rafs_le32(rec + 36);
	uint32_t csize = rafs_le32(rec + 40);
	uint32_t usize = rafs_le32(rec + 44);
	const struct rafs_blob *blob;
	uint64_t end;

	if (blob_index >= p->n_blobs)
		return lp_err_set(
			p->err, EINVAL, "%s: chunk at %llu names blob %u of %u",
			rafs_cur_path(p), (unsigned long long)file_off,
			blob_index, p->n_blobs);
	blob = &p->blobs[blob_index];
	if (flags & RAFS_CHUNK_ENCRYPTED)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: encrypted chunks are not supported",
				  rafs_cur_path(p));
	if (flags & RAFS_CHUNK_BATCH)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: batch chunks are not supported",
				  rafs_cur_path(p));
	if (blob->features & RAFS_BLOB_ZRAN)
		return lp_err_set(p->err, EOPNOTSUPP,
				  "%s: blob %s is a zran (OCI gzip ref) blob; "
				  "its chunks need the zran blob meta",
				  rafs_cur_path(p), blob->id);
	if (usize > p->meta.chunk_size)
		return lp_err_set(p->err, EINVAL,
				  "%s: chunk at %llu is %u bytes, more than "
				  "the chunk size %u",
				  rafs_cur_path(p),
				  (unsigned long long)file_off, usize,
				  p->meta.chunk_size);
	c.file_off = file_off;
	c.len = usize;
	c.comp_off = rafs_le64(rec + 48);
	c.comp_len = csize;
	c.aux_off = rafs_le64(rec + 56);
	c.aux = rafs_le32(rec + 72);
	c.blob = blob_index;
	c.digest_alg = blob->digest_alg;
	memcpy(c.digest, rec, 32);
	if (flags & RAFS_CHUNK_COMPRESSED) {
		if (blob->codec == MODEL_CODEC_NONE || csize == 0)
			return lp_err_set(p->err, EINVAL,
					  "%s: chunk at %llu is marked "
					  "compressed, but %s",
					  rafs_cur_path(p),
					  (unsigned long long)file_off,
					  csize ? "its blob has no compressor"
						: "its stored size is 0");
		c.codec = blob->codec;
	} else {
		if (csize != usize)
			return lp_err_set(p->err, EINVAL,
					  "%s: uncompressed chunk at %llu has "
					  "stored size %u != size %u",
					  rafs_cur_path(p),
					  (unsigned long long)file_off, csize,
					  usize);
		c.codec = MODEL_CODEC_NONE;
	}
	if (lp_add_overflow(c.comp_off, c.comp_len, &end) ||
	    (blob->comp_size && end > blob->comp_size))
		return lp_err_set(
			p->err, EINVAL,
			"%s: chunk at %llu: stored range %llu+%llu is "
			"outside blob %s (%llu bytes)",
			rafs_cur_path(p), (unsigned long long)file_off,
			(unsigned long long)c.comp_off,
			(unsigned long long)c.comp_len, blob->id,
			(unsigned long long)blob->comp_size);
	return model_builder_add_chunk(p->b, id, &c, p->err);
}

/* ---- entry points -------------------------------------------------------- */

int rafs_detect(const void *data, size_t size)
{
	const uint8_t *d = data;

	if (size >= 8 && rafs_le32(d) == RAFS_V5_MAGIC &&
	    rafs_le32(d + 4) == RAFS_V5_VERSION)
		return 5;
	if (size >= RAFS_V6_SB_OFF + 4 &&
	    rafs_le32(d + RAFS_V6_SB_OFF) == RAFS_V6_MAGIC)
		return 6;
	return 0;
}

void rafs_meta_release(struct rafs_meta *meta)
{
	if (!meta)
		return;
	free(meta->prefetch);
	meta->prefetch = NULL;
	meta->n_prefetch = 0;
}

static void parse_release(struct rafs_parse *p)
{
	model_builder_free(p->b);
	free(p->blobs);
	for (uint32_t i = 0; i < p->n_pf; i++)
		free(p->pf_paths[i]);
	free(p->pf_paths);
	free(p->pf_keys);
	rafs_map_release(&p->pf_map);
	rafs_map_release(&p->ids);
	rafs_meta_release(&p->meta);
}

static int parse_init(struct rafs_parse *p, const void *data, size_t size,
		      struct lp_err *err)
{
	memset(p, 0, sizeof(*p));
	p->d = data;
	p->size = size;
	p->err = err;
	p->meta.version = rafs_detect(data, size);
	if (!p->meta.version)
		return lp_err_set(err, EINVAL,
				  "not a RAFS bootstrap: no v5 magic at 0 and "
				  "no EROFS magic at 1024 (%zu bytes)",
				  size);
	if (size > RAFS_BOOTSTRAP_MAX)
		return lp_err_set(err, EFBIG,
				  "bootstrap of %zu bytes is too big", size);
	return 0;
}

void rafs_prefetch_add(struct rafs_parse *p, uint64_t key)
{
	if (rafs_map_get(&p->pf_map, key))
		return;
	p->pf_keys = lp_xrealloc(p->pf_keys, (p->n_pf + 1) * sizeof(uint64_t));
	p->pf_paths = lp_xrealloc(p->pf_paths, (p->n_pf + 1) * sizeof(char *));
	p->pf_keys[p->n_pf] = key;
	p->pf_paths[p->n_pf] = NULL;
	p->n_pf++;
	rafs_map_put(&p->pf_map, key, p->n_pf);
}

void rafs_prefetch_note(struct rafs_parse *p, uint64_t key)
{
	uint32_t slot = rafs_map_get(&p->pf_map, key);

	if (slot && !p->pf_paths[slot - 1])
		p->pf_paths[slot - 1] = lp_xstrdup(rafs_cur_path(p));
}

/* Prefetch entries become inode numbers once the tree is frozen. */
static void resolve_prefetch(struct rafs_parse *p, const struct model *m)
{
	p->meta.prefetch = lp_xcalloc(p->n_pf + 1, sizeof(uint32_t));
	for (uint32_t i = 0; i < p->n_pf; i++) {
		uint32_t ino;

		if (!p->pf_paths[i]) {
			lp_debug("prefetch entry %llu names no inode",
				 (unsigned long long)p->pf_keys[i]);
			continue;
		}
		ino = model_lookup_path(m, p->pf_paths[i]);
		if (ino == MODEL_ROOT_INO)
			p->meta.prefetch_all = true;
		if (ino)
			p->meta.prefetch[p->meta.n_prefetch++] = ino;
	}
}

int rafs_bootstrap_load(const void *data, size_t size, struct model **ret,
			struct rafs_meta *ret_meta, struct lp_err *err)
{
	struct rafs_parse p;
	struct model *m = NULL;
	int r;

	r = parse_init(&p, data, size, err);
	if (r < 0)
		return r;
	p.b = model_builder_new(0);
	r = p.meta.version == 5 ? rafs_v5_load(&p) : rafs_v6_load(&p);
	if (r < 0)
		goto out;
	r = model_builder_finish(TAKE_PTR(p.b), &m, err);
	if (r < 0)
		goto out;
	resolve_prefetch(&p, m);
	if (ret_meta) {
		*ret_meta = p.meta;
		memset(&p.meta, 0, sizeof(p.meta));
	}
	*ret = TAKE_PTR(m);
out:
	parse_release(&p);
	if (r < 0)
		lp_err_wrap(err, "rafs v%d bootstrap", p.meta.version);
	return r;
}

int rafs_blob_ids(const void *data, size_t size, char ***ret_ids,
		  uint32_t *ret_n, struct lp_err *err)
{
	struct rafs_parse p;
	char **ids;
	int r;

	r = parse_init(&p, data, size, err);
	if (r < 0)
		return r;
	r = p.meta.version == 5 ? rafs_v5_blobs(&p) : rafs_v6_blobs(&p);
	if (r < 0) {
		parse_release(&p);
		return lp_err_wrap(err, "rafs v%d bootstrap", p.meta.version);
	}
	ids = lp_xcalloc(p.n_blobs + 1, sizeof(*ids));
	for (uint32_t i = 0; i < p.n_blobs; i++)
		ids[i] = lp_xstrdup(p.blobs[i].id);
	*ret_ids = ids;
	*ret_n = p.n_blobs;
	parse_release(&p);
	return 0;
}

void rafs_blob_ids_free(char **ids, uint32_t n)
{
	if (!ids)
		return;
	for (uint32_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}
