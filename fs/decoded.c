/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decoded-chunk store (see decoded.h for what may be served and why).
 *
 * Index file DIR/<hex>.idx, little-endian:
 *   header (32 bytes): 0 magic "LPDIDX01"  8 u32 version (1)
 *     12 u32 block size  16..28 zero  28 u32 crc32c(bytes 0..28)
 *   records, appended:
 *     0 u32 REC_MAGIC  4 u32 blocks  8 u64 data offset  16 u32 length
 *     20 u8 digest algorithm  21..24 zero  24 digest (32 bytes)
 *     56 u32 crc32c of each block  56 + 4 * blocks: u32 crc32c(record)
 * A later record for the same digest replaces an earlier one.
 */
#define LP_MODNAME "decoded"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "common/endian.h"
#include "common/layout.h"
#include "common/lru.h"
#include "fs/decoded.h"

#define IDX_MAGIC "LPDIDX01"
#define IDX_VERSION 1
#define IDX_HDR 32
#define REC_MAGIC 0x5244504cu /* "LPDR" */
#define REC_FIXED 56
#define DATA_ALIGN 4096u
#define MAX_CHUNK (256u << 20)
#define MAX_IDX (256ull << 20)
/* after a gc that could not make room, refuse puts this long */
#define FULL_BACKOFF_SEC 10

struct dent {
	uint8_t key[16]; /* the digest's first 16 bytes */
	uint64_t data_off;
	uint32_t len;
	uint8_t alg;
	bool live;
	uint32_t crc; /* one block: its CRC; more: first index in seg->crcs */
};

struct dstore_seg {
	struct dstore *d;
	struct dstore_seg *next; /* protected by d->lock */
	char *data_path, *idx_path;
	int data_fd, idx_fd;
	pthread_mutex_t lock;
	struct dent *ents;	 /* protected by lock */
	size_t n_ents, cap_ents; /* protected by lock */
	uint32_t *ht;		 /* entry index + 1, 0 = empty; lock */
	size_t ht_size, ht_used; /* protected by lock */
	uint32_t *crcs;		 /* protected by lock */
	size_t n_crcs, cap_crcs; /* protected by lock */
	uint64_t data_end;	 /* protected by lock */
	uint8_t *pending;	 /* records to write; protected by lock */
	size_t pending_len, pending_cap;
	uint64_t idx_end; /* protected by d->flush_lock */
};

struct dstore {
	char *dir;
	uint64_t max_bytes;
	unsigned flush_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;	 /* dirty or stop; with lock */
	struct dstore_seg *segs; /* protected by lock; freed at close */
	uint64_t bytes;		 /* protected by lock */
	int64_t full_until;	 /* protected by lock */
	bool dirty, stop;	 /* protected by lock */
	bool thread_started;	 /* protected by lock */
	pthread_t thread;
	pthread_mutex_t flush_lock; /* one flush at a time */
	pthread_mutex_t gc_lock;    /* one gc at a time */
	/* statistics: atomics */
	uint64_t n_hits, n_misses, n_puts, n_put_bytes, n_bad, n_refused;
};

#define STAT_ADD(d, f, v) __atomic_add_fetch(&(d)->f, (v), __ATOMIC_RELAXED)

/* ---- helpers ------------------------------------------------------------- */

static uint64_t align_up(uint64_t v)
{
	return (v + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
}

static uint32_t n_blocks(uint64_t len)
{
	return (uint32_t)((len + DSTORE_BLOCK - 1) / DSTORE_BLOCK);
}

static int64_t now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* "sha256:<hex>" or "<hex>" -> 64 lowercase hex digits in out. */
static int parse_key(const char *key, char out[65])
{
	if (!strncmp(key, "sha256:", 7))
		key += 7;
	if (strlen(key) != 64)
		return -EINVAL;
	for (int i = 0; i < 64; i++) {
		char ch = key[i];

		if (ch >= 'A' && ch <= 'F')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return -EINVAL;
		out[i] = ch;
	}
	out[64] = '\0';
	return 0;
}

/* ---- the in-memory table ------------------------------------------------- */

static uint64_t key_hash(const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, 8); /* a digest: already uniform */
	return h;
}

static bool ent_matches(const struct dent *e, const uint8_t *digest,
			uint8_t alg, uint64_t len)
{
	return e->alg == alg && e->len == len && !memcmp(e->key, digest, 16);
}

/* The live entry for a chunk, or NULL; caller holds g->lock. */
static struct dent *seg_find(struct dstore_seg *g, const uint8_t *digest,
			     uint8_t alg, uint64_t len)
{
	size_t mask = g->ht_size - 1, i;

	if (!g->ht_size)
		return NULL;
	for (i = key_hash(digest) & mask; g->ht[i]; i = (i + 1) & mask) {
		struct dent *e = &g->ents[g->ht[i] - 1];

		if (ent_matches(e, digest, alg, len))
			return e->live ? e : NULL;
	}
	return NULL;
}

static void ht_place(struct dstore_seg *g, uint32_t id)
{
	const struct dent *e = &g->ents[id - 1];
	size_t mask = g->ht_size - 1, i;

	for (i = key_hash(e->key) & mask; g->ht[i]; i = (i + 1) & mask) {
		const struct dent *o = &g->ents[g->ht[i] - 1];

		/* a newer entry for the same chunk replaces the older one */
		if (ent_matches(o, e->key, e->alg, e->len)) {
			g->ht[i] = id;
			return;
		}
	}
	g->ht[i] = id;
	g->ht_used++;
}

/* Adds an entry (crcs: n_blocks(len) of them); caller holds g->lock. */
static void seg_add(struct dstore_seg *g, const uint8_t *digest, uint8_t alg,
		    uint64_t len, uint64_t data_off, const uint32_t *crcs)
{
	uint32_t nb = n_blocks(len), id;
	struct dent *e;

	if ((g->ht_used + 1) * 2 > g->ht_size) {
		size_t n = g->ht_size ? g->ht_size * 2 : 64;

		free(g->ht);
		g->ht = lp_xcalloc(n, sizeof(*g->ht));
		g->ht_size = n;
		g->ht_used = 0;
		for (size_t k = 0; k < g->n_ents; k++)
			ht_place(g, (uint32_t)(k + 1));
	}
	lp_grow((void **)&g->ents, sizeof(*g->ents), &g->cap_ents,
		g->n_ents + 1);
	e = &g->ents[g->n_ents];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, digest, 16);
	e->alg = alg;
	e->len = (uint32_t)len;
	e->data_off = data_off;
	e->live = true;
	if (nb == 1) {
		e->crc = crcs[0];
	} else {
		lp_grow((void **)&g->crcs, sizeof(*g->crcs), &g->cap_crcs,
			g->n_crcs + nb);
		e->crc = (uint32_t)g->n_crcs;
		memcpy(g->crcs + g->n_crcs, crcs, nb * sizeof(*crcs));
		g->n_crcs += nb;
	}
	id = (uint32_t)++g->n_ents;
	ht_place(g, id);
}

static uint32_t ent_crc(const struct dstore_seg *g, const struct dent *e,
			uint32_t b)
{
	return n_blocks(e->len) == 1 ? e->crc : g->crcs[e->crc + b];
}

/* ---- loading a segment --------------------------------------------------- */

static void idx_header(uint8_t hdr[IDX_HDR])
{
	memset(hdr, 0, IDX_HDR);
	memcpy(hdr, IDX_MAGIC, 8);
	lp_put_le32(hdr + 8, IDX_VERSION);
	lp_put_le32(hdr + 12, DSTORE_BLOCK);
	lp_put_le32(hdr + 28, lp_crc32c(0, hdr, 28));
}

/* Empties both files and writes a fresh header. */
static int seg_reset(struct dstore_seg *g)
{
	uint8_t hdr[IDX_HDR];

	if (ftruncate(g->idx_fd, 0) < 0 || ftruncate(g->data_fd, 0) < 0)
		return -errno;
	idx_header(hdr);
	g->idx_end = IDX_HDR;
	g->data_end = 0;
	return lp_pwrite_all(g->idx_fd, hdr, IDX_HDR, 0);
}

/*
 * Replays the index: every record up to the first bad one, whose data lies
 * within the data file.  The index is cut after the last good record and
 * the data file after the last byte a record names, so what a crash left
 * half-written goes away.
 */
static int seg_load(struct dstore_seg *g)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat ist, dst;
	uint8_t hdr[IDX_HDR];
	uint64_t pos = IDX_HDR, data_end = 0;
	int64_t n;

	if (fstat(g->idx_fd, &ist) < 0 || fstat(g->data_fd, &dst) < 0)
		return -errno;
	if ((uint64_t)ist.st_size < IDX_HDR ||
	    (uint64_t)ist.st_size > MAX_IDX)
		return seg_reset(g);
	buf = lp_xmalloc((size_t)ist.st_size);
	n = lp_pread_all(g->idx_fd, buf, (size_t)ist.st_size, 0);
	if (n < 0)
		return (int)n;
	idx_header(hdr);
	if ((uint64_t)n < IDX_HDR || memcmp(buf, hdr, IDX_HDR))
		return seg_reset(g);
	while (pos + REC_FIXED + 4 <= (uint64_t)n) {
		const uint8_t *r = buf + pos;
		uint32_t nb = lp_get_le32(r + 4), len = lp_get_le32(r + 16);
		uint64_t off = lp_get_le64(r + 8), rlen;
		uint8_t alg = r[20];

		if (lp_get_le32(r) != REC_MAGIC || !len || len > MAX_CHUNK ||
		    nb != n_blocks(len) ||
		    (alg != MODEL_DIGEST_SHA256 && alg != MODEL_DIGEST_BLAKE3))
			break;
		rlen = REC_FIXED + 4ull * nb + 4;
		if (pos + rlen > (uint64_t)n ||
		    lp_get_le32(r + rlen - 4) !=
			    lp_crc32c(0, r, (size_t)(rlen - 4)))
			break;
		/* an intact record whose bytes are gone (the data file was
		 * cut): skip it, keep reading */
		if (off % DATA_ALIGN || off > (uint64_t)dst.st_size ||
		    len > (uint64_t)dst.st_size - off) {
			pos += rlen;
			continue;
		}
		{
			uint32_t fixed[64], *crcs = fixed;

			if (nb > ARRAY_SIZE(fixed))
				crcs = lp_xmalloc(nb * sizeof(*crcs));
			for (uint32_t b = 0; b < nb; b++)
				crcs[b] = lp_get_le32(r + REC_FIXED + 4 * b);
			seg_add(g, r + 24, alg, len, off, crcs);
			if (crcs != fixed)
				free(crcs);
		}
		if (align_up(off + len) > data_end)
			data_end = align_up(off + len);
		pos += rlen;
	}
	if (pos < (uint64_t)ist.st_size) {
		lp_debug("%s: index cut at %llu of %llu bytes", g->idx_path,
			 (unsigned long long)pos,
			 (unsigned long long)ist.st_size);
		if (ftruncate(g->idx_fd, (off_t)pos) < 0)
			return -errno;
	}
	if ((uint64_t)dst.st_size > data_end &&
	    ftruncate(g->data_fd, (off_t)data_end) < 0)
		return -errno;
	g->idx_end = pos;
	g->data_end = data_end;
	return 0;
}

static void seg_free(struct dstore_seg *g)
{
	if (!g)
		return;
	if (g->data_fd >= 0)
		close(g->data_fd); /* drops the flock */
	if (g->idx_fd >= 0)
		close(g->idx_fd);
	pthread_mutex_destroy(&g->lock);
	free(g->ents);
	free(g->ht);
	free(g->crcs);
	free(g->pending);
	free(g->data_path);
	free(g->idx_path);
	free(g);
}

/* Opens and locks the data file; -EBUSY if another process holds it. */
static int open_locked(const char *path)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			      0600);

		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int r = errno == EWOULDBLOCK ? -EBUSY : -errno;

			close(fd);
			return r;
		}
		/* a gc may have removed it between the open and the lock */
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	return -EAGAIN;
}

int dstore_segment(struct dstore *d, const char *key, struct dstore_seg **ret,
		   struct lp_err *err)
{
	struct dstore_seg *g;
	char hex[65];
	int r;

	if (parse_key(key, hex) < 0)
		return lp_err_set(err, EINVAL, "decoded store: blob \"%s\" "
				  "is not named by a sha256", key);
	pthread_mutex_lock(&d->lock);
	for (g = d->segs; g; g = g->next)
		if (!strncmp(g->data_path + strlen(d->dir) + 1, hex, 64))
			break;
	if (g) {
		pthread_mutex_unlock(&d->lock);
		*ret = g;
		return 0;
	}
	g = lp_xcalloc(1, sizeof(*g));
	g->d = d;
	g->data_fd = g->idx_fd = -1;
	pthread_mutex_init(&g->lock, NULL);
	g->data_path = lp_layout_entry(d->dir, LP_FILE_DECODED_DATA, hex);
	g->idx_path = lp_layout_entry(d->dir, LP_FILE_DECODED_IDX, hex);
	r = open_locked(g->data_path);
	if (r < 0) {
		pthread_mutex_unlock(&d->lock);
		lp_err_set(err, r, "decoded store %s: %s", g->data_path,
			   r == -EBUSY ? "in use by another process"
				       : strerror(-r));
		seg_free(g);
		return r;
	}
	g->data_fd = r;
	g->idx_fd = open(g->idx_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			 0600);
	r = g->idx_fd < 0 ? -errno : seg_load(g);
	if (r < 0) {
		pthread_mutex_unlock(&d->lock);
		lp_err_set(err, r, "decoded store %s: %s", g->idx_path,
			   strerror(-r));
		seg_free(g);
		return r;
	}
	/* the eviction order: least recently opened first */
	futimens(g->idx_fd, NULL);
	g->next = d->segs;
	d->segs = g;
	pthread_mutex_unlock(&d->lock);
	*ret = g;
	return 0;
}

/* ---- reads --------------------------------------------------------------- */

bool dstore_has(struct dstore_seg *g, const struct model_chunk *c)
{
	bool r;

	if (c->digest_alg == MODEL_DIGEST_NONE)
		return false;
	pthread_mutex_lock(&g->lock);
	r = seg_find(g, c->digest, c->digest_alg, c->len) != NULL;
	pthread_mutex_unlock(&g->lock);
	return r;
}

/* Forgets the entry at data_off (if still there) after a bad read. */
static void seg_drop(struct dstore_seg *g, const struct model_chunk *c,
		     uint64_t data_off)
{
	struct dent *e;

	pthread_mutex_lock(&g->lock);
	e = seg_find(g, c->digest, c->digest_alg, c->len);
	if (e && e->data_off == data_off)
		e->live = false;
	pthread_mutex_unlock(&g->lock);
	STAT_ADD(g->d, n_bad, 1);
}

int dstore_read(struct dstore_seg *g, const struct model_chunk *c,
		uint64_t off, void *buf, size_t len, struct lp_err *err)
{
	uint32_t fixed[80], *crcs = fixed, cfixed[80], *calc = cfixed;
	_cleanup_free_ uint8_t *tmp = NULL;
	uint8_t *out = buf;
	uint64_t data_off, end = off + len;
	uint32_t b0, b1, b;
	struct dent *e;
	int r = 0;

	if (off > c->len || len > c->len - off)
		return lp_err_set(err, EINVAL, "read past the chunk");
	if (!len)
		return 0;
	b0 = (uint32_t)(off / DSTORE_BLOCK);
	b1 = (uint32_t)((end - 1) / DSTORE_BLOCK);
	if (b1 - b0 + 1 > ARRAY_SIZE(fixed)) {
		crcs = lp_xmalloc((b1 - b0 + 1) * sizeof(*crcs));
		calc = lp_xmalloc((b1 - b0 + 1) * sizeof(*calc));
	}
	pthread_mutex_lock(&g->lock);
	e = c->digest_alg ? seg_find(g, c->digest, c->digest_alg, c->len)
			  : NULL;
	if (e) {
		data_off = e->data_off;
		for (b = b0; b <= b1; b++)
			crcs[b - b0] = ent_crc(g, e, b);
	}
	pthread_mutex_unlock(&g->lock);
	if (!e) {
		STAT_ADD(g->d, n_misses, 1);
		r = -ENOENT;
		goto out;
	}
	b = b0;
	while (b <= b1) {
		uint64_t bs = (uint64_t)b * DSTORE_BLOCK;
		uint64_t be = bs + DSTORE_BLOCK < c->len ? bs + DSTORE_BLOCK
							 : c->len;
		uint32_t k = b;
		int64_t n;

		if (bs >= off && be <= end) {
			/* whole blocks straight into buf: one pread */
			uint64_t re = be;

			while (k + 1 <= b1) {
				uint64_t ne = re + DSTORE_BLOCK < c->len
						      ? re + DSTORE_BLOCK
						      : c->len;

				if (ne > end)
					break;
				re = ne;
				k++;
			}
			n = lp_pread_all(g->data_fd, out + (bs - off),
				      (size_t)(re - bs), data_off + bs);
			if (n >= 0 && (uint64_t)n != re - bs)
				n = -EBADMSG;
			if (n >= 0) {
				lp_crc32c_blocks(out + (bs - off), re - bs,
						 DSTORE_BLOCK, calc + (b - b0));
				if (memcmp(calc + (b - b0), crcs + (b - b0),
					   (k - b + 1) * sizeof(*crcs)))
					n = -EBADMSG;
			}
		} else {
			/* a block partly wanted: check all of it, copy part */
			uint64_t ws = bs > off ? bs : off;
			uint64_t we = be < end ? be : end;

			if (!tmp)
				tmp = lp_xmalloc(DSTORE_BLOCK);
			n = lp_pread_all(g->data_fd, tmp, (size_t)(be - bs),
				      data_off + bs);
			if (n >= 0 && ((uint64_t)n != be - bs ||
				       lp_crc32c(0, tmp, (size_t)n) !=
					       crcs[b - b0]))
				n = -EBADMSG;
			if (n >= 0)
				memcpy(out + (ws - off), tmp + (ws - bs),
				       (size_t)(we - ws));
		}
		if (n < 0) {
			seg_drop(g, c, data_off);
			r = lp_err_set(err, (int)n,
				       "decoded store %s: chunk at offset %llu, "
				       "block %u: %s", g->data_path,
				       (unsigned long long)data_off, b,
				       n == -EBADMSG ? "checksum mismatch"
						     : strerror((int)-n));
			goto out;
		}
		b = k + 1;
	}
	STAT_ADD(g->d, n_hits, 1);
out:
	if (crcs != fixed) {
		free(crcs);
		free(calc);
	}
	return r;
}

int dstore_check(struct dstore_seg *g, const struct model_chunk *c,
		 uint64_t off, uint64_t len, int *ret_fd, uint64_t *ret_pos,
		 struct lp_err *err)
{
	/* four blocks at a time through a buffer that stays in the cache */
	uint8_t tmp[4 * DSTORE_BLOCK] __attribute__((aligned(64)));
	uint32_t fixed[80], *crcs = fixed, calc[4];
	uint64_t data_off = 0;
	uint32_t b0, b1;
	struct dent *e;
	int r = 0;

	if (off > c->len || len > c->len - off || !len)
		return lp_err_set(err, EINVAL, "read past the chunk");
	b0 = (uint32_t)(off / DSTORE_BLOCK);
	b1 = (uint32_t)((off + len - 1) / DSTORE_BLOCK);
	if (b1 - b0 + 1 > ARRAY_SIZE(fixed))
		crcs = lp_xmalloc((b1 - b0 + 1) * sizeof(*crcs));
	pthread_mutex_lock(&g->lock);
	e = c->digest_alg ? seg_find(g, c->digest, c->digest_alg, c->len)
			  : NULL;
	if (e) {
		data_off = e->data_off;
		for (uint32_t b = b0; b <= b1; b++)
			crcs[b - b0] = ent_crc(g, e, b);
	}
	pthread_mutex_unlock(&g->lock);
	if (!e) {
		STAT_ADD(g->d, n_misses, 1);
		r = -ENOENT;
		goto out;
	}
	for (uint32_t b = b0; b <= b1; b += 4) {
		uint32_t nb = b1 - b + 1 < 4 ? b1 - b + 1 : 4;
		uint64_t bs = (uint64_t)b * DSTORE_BLOCK;
		uint64_t be = bs + (uint64_t)nb * DSTORE_BLOCK < c->len
				      ? bs + (uint64_t)nb * DSTORE_BLOCK
				      : c->len;
		int64_t n = lp_pread_all(g->data_fd, tmp, (size_t)(be - bs),
				      data_off + bs);

		if (n >= 0 && (uint64_t)n != be - bs)
			n = -EBADMSG;
		if (n >= 0) {
			lp_crc32c_blocks(tmp, be - bs, DSTORE_BLOCK, calc);
			if (memcmp(calc, crcs + (b - b0), nb * sizeof(*calc)))
				n = -EBADMSG;
		}
		if (n < 0) {
			seg_drop(g, c, data_off);
			r = lp_err_set(err, (int)n,
				       "decoded store %s: chunk at offset %llu, "
				       "blocks %u-%u: %s", g->data_path,
				       (unsigned long long)data_off, b,
				       b + nb - 1,
				       n == -EBADMSG ? "checksum mismatch"
						     : strerror((int)-n));
			goto out;
		}
	}
	STAT_ADD(g->d, n_hits, 1);
	*ret_fd = g->data_fd;
	*ret_pos = data_off + off;
out:
	if (crcs != fixed)
		free(crcs);
	return r;
}

/* ---- writes -------------------------------------------------------------- */

static void *flusher_main(void *arg);

/* Reserves need bytes of the budget: 0 or -ENOSPC. */
static int reserve(struct dstore *d, uint64_t need)
{
	int64_t now;

	pthread_mutex_lock(&d->lock);
	if (d->bytes + need <= d->max_bytes) {
		d->bytes += need;
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	now = now_sec();
	if (now < d->full_until) {
		pthread_mutex_unlock(&d->lock);
		return -ENOSPC;
	}
	pthread_mutex_unlock(&d->lock);
	/* down to 90 %, so the next puts do not scan again at once */
	dstore_gc(d, d->max_bytes / 10 * 9);
	pthread_mutex_lock(&d->lock);
	if (d->bytes + need <= d->max_bytes) {
		d->bytes += need;
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	d->full_until = now + FULL_BACKOFF_SEC;
	pthread_mutex_unlock(&d->lock);
	return -ENOSPC;
}

static void start_flusher(struct dstore *d)
{
	pthread_attr_t attr;

	/* caller holds d->lock */
	if (d->thread_started)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 << 10);
	d->thread_started =
		lp_thread_create(&d->thread, &attr, flusher_main, d) == 0;
	pthread_attr_destroy(&attr);
}

int dstore_put(struct dstore_seg *g, const struct model_chunk *c,
	       const void *data, struct lp_err *err)
{
	struct dstore *d = g->d;
	uint32_t nb = n_blocks(c->len), fixed[64], *crcs = fixed;
	uint64_t off, need;
	size_t rlen;
	uint8_t *rec;
	int r;

	if (c->digest_alg != MODEL_DIGEST_SHA256 &&
	    c->digest_alg != MODEL_DIGEST_BLAKE3)
		return lp_err_set(err, ENODATA, "chunk has no digest");
	if (!c->len || c->len > MAX_CHUNK)
		return lp_err_set(err, EINVAL, "chunk of %llu bytes",
				  (unsigned long long)c->len);
	if (dstore_has(g, c))
		return 0;
	rlen = REC_FIXED + 4 * (size_t)nb + 4;
	need = align_up(c->len) + rlen;
	if (reserve(d, need) < 0) {
		STAT_ADD(d, n_refused, 1);
		return lp_err_set(err, ENOSPC, "decoded store %s is full",
				  d->dir);
	}
	pthread_mutex_lock(&g->lock);
	off = g->data_end;
	g->data_end = align_up(off + c->len);
	pthread_mutex_unlock(&g->lock);
	r = lp_pwrite_all(g->data_fd, data, (size_t)c->len, off);
	if (r < 0)
		return lp_err_set(err, r, "decoded store %s: %s", g->data_path,
				  strerror(-r));
	if (nb > ARRAY_SIZE(fixed))
		crcs = lp_xmalloc(nb * sizeof(*crcs));
	lp_crc32c_blocks(data, c->len, DSTORE_BLOCK, crcs);
	pthread_mutex_lock(&g->lock);
	lp_grow((void **)&g->pending, 1, &g->pending_cap,
		g->pending_len + rlen);
	rec = g->pending + g->pending_len;
	memset(rec, 0, REC_FIXED);
	lp_put_le32(rec, REC_MAGIC);
	lp_put_le32(rec + 4, nb);
	lp_put_le64(rec + 8, off);
	lp_put_le32(rec + 16, (uint32_t)c->len);
	rec[20] = c->digest_alg;
	memcpy(rec + 24, c->digest, 32);
	for (uint32_t b = 0; b < nb; b++)
		lp_put_le32(rec + REC_FIXED + 4 * b, crcs[b]);
	lp_put_le32(rec + rlen - 4, lp_crc32c(0, rec, rlen - 4));
	g->pending_len += rlen;
	/* readable here at once: these bytes are in our page cache */
	seg_add(g, c->digest, c->digest_alg, c->len, off, crcs);
	pthread_mutex_unlock(&g->lock);
	if (crcs != fixed)
		free(crcs);
	STAT_ADD(d, n_puts, 1);
	STAT_ADD(d, n_put_bytes, c->len);
	pthread_mutex_lock(&d->lock);
	d->dirty = true;
	start_flusher(d);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int dstore_flush(struct dstore *d)
{
	struct dstore_seg *g;
	int ret = 0;

	pthread_mutex_lock(&d->flush_lock);
	pthread_mutex_lock(&d->lock);
	g = d->segs;
	pthread_mutex_unlock(&d->lock);
	/* segments are only added at the head and freed at close */
	for (; g; g = g->next) {
		uint8_t *recs;
		size_t len;
		int r;

		pthread_mutex_lock(&g->lock);
		recs = g->pending;
		len = g->pending_len;
		g->pending = NULL;
		g->pending_len = g->pending_cap = 0;
		pthread_mutex_unlock(&g->lock);
		if (!len) {
			free(recs);
			continue;
		}
		/* the bytes must be on disk before a record says so */
		if (fdatasync(g->data_fd) < 0)
			r = -errno;
		else
			r = lp_pwrite_all(g->idx_fd, recs, len, g->idx_end);
		if (r == 0)
			g->idx_end += len;
		else if (!ret)
			ret = r;
		if (r < 0)
			lp_log(LP_LOG_WARN, "decoded store %s: %s (its new "
			       "chunks are not kept)", g->idx_path,
			       strerror(-r));
		free(recs);
	}
	pthread_mutex_unlock(&d->flush_lock);
	return ret;
}

static void *flusher_main(void *arg)
{
	struct dstore *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		struct timespec ts;

		if (!d->dirty) {
			pthread_cond_wait(&d->cond, &d->lock);
			continue;
		}
		/* gather a second of puts into one fdatasync */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += d->flush_ms / 1000;
		ts.tv_nsec += (long)(d->flush_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!d->stop &&
		       pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
			;
		d->dirty = false;
		pthread_mutex_unlock(&d->lock);
		dstore_flush(d);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* ---- eviction ------------------------------------------------------------ */

int64_t dstore_gc(struct dstore *d, uint64_t target)
{
	/* <64 hex>.data with <64 hex>.idx; the index's mtime is the last
	 * use, and its size counts too.  Our own open segments hold their
	 * flock, so a pass skips them. */
	const struct lp_lru lru = {
		.dir = d->dir,
		.data_suffix = lp_layout_ext(LP_FILE_DECODED_DATA),
		.side_suffix = lp_layout_ext(LP_FILE_DECODED_IDX),
		.name_len = 64 + 5,
		.count_side = true,
		.log_mod = LP_MODNAME,
		.log_prefix = "",
	};
	int64_t total;

	pthread_mutex_lock(&d->gc_lock);
	total = lp_lru_evict(&lru, target);
	if (total >= 0) {
		pthread_mutex_lock(&d->lock);
		d->bytes = (uint64_t)total;
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_unlock(&d->gc_lock);
	return total;
}

/* ---- the store ----------------------------------------------------------- */

int dstore_open(const struct dstore_opts *o, struct dstore **ret,
		struct lp_err *err)
{
	struct dstore *d;
	int64_t r;

	if (!o || !o->dir || !o->dir[0])
		return lp_err_set(err, EINVAL, "decoded store: no directory");
	if (mkdir(o->dir, 0700) < 0 && errno != EEXIST)
		return lp_err_set(err, errno, "decoded store %s: %s", o->dir,
				  strerror(errno));
	d = lp_xcalloc(1, sizeof(*d));
	d->dir = lp_xstrdup(o->dir);
	d->max_bytes = o->max_bytes ? o->max_bytes : DSTORE_DEFAULT_MAX;
	d->flush_ms = o->flush_ms ? o->flush_ms : 1000;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	pthread_mutex_init(&d->flush_lock, NULL);
	pthread_mutex_init(&d->gc_lock, NULL);
	/* counts what is there, and trims it if the bound shrank */
	r = dstore_gc(d, d->max_bytes);
	if (r < 0) {
		lp_err_set(err, (int)r, "decoded store %s: %s", o->dir,
			   strerror((int)-r));
		dstore_close(d);
		return (int)r;
	}
	*ret = d;
	return 0;
}

void dstore_close(struct dstore *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->thread_started)
		pthread_join(d->thread, NULL);
	dstore_flush(d);
	while (d->segs) {
		struct dstore_seg *g = d->segs;

		d->segs = g->next;
		seg_free(g);
	}
	pthread_mutex_destroy(&d->gc_lock);
	pthread_mutex_destroy(&d->flush_lock);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d->dir);
	free(d);
}

void dstore_get_stats(struct dstore *d, struct dstore_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!d)
		return;
	ret->hits = __atomic_load_n(&d->n_hits, __ATOMIC_RELAXED);
	ret->misses = __atomic_load_n(&d->n_misses, __ATOMIC_RELAXED);
	ret->puts = __atomic_load_n(&d->n_puts, __ATOMIC_RELAXED);
	ret->put_bytes = __atomic_load_n(&d->n_put_bytes, __ATOMIC_RELAXED);
	ret->bad_blocks = __atomic_load_n(&d->n_bad, __ATOMIC_RELAXED);
	ret->refused = __atomic_load_n(&d->n_refused, __ATOMIC_RELAXED);
	pthread_mutex_lock(&d->lock);
	ret->bytes = d->bytes;
	pthread_mutex_unlock(&d->lock);
}
