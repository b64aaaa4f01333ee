/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk blob cache: per blob a sparse data file and a map of present
 * granules (see fetcher.h for the layout and the crash rules).
 *
 * Map file:
 *   header (64 bytes, little-endian):
 *     0  magic "LPCMAP01"     8  u32 version (1)   12 u32 granule
 *     16 u64 blob size        24 u64 granules      32 u32 crc32c(bitmap)
 *     36 u32 crc32c(header bytes 0..36)            40.. zero
 *   bitmap: ceil(granules / 8) bytes, bit g = granule g present
 *   records (32 bytes each), appended:
 *     0 u32 REC_MAGIC  4 u32 op (1 set, 2 clear)  8 u64 first granule
 *     16 u64 count     24 u32 zero                28 u32 crc32c(0..28)
 */
#define LP_MODNAME "fetcher"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "common/endian.h"
#include "common/layout.h"
#include "common/lru.h"
#include "fetcher/fetcher-int.h"

#define MAP_MAGIC "LPCMAP01"
#define MAP_VERSION 1
#define MAP_HDR 64
#define REC_MAGIC 0x4352504cu /* "LPRC" */
#define REC_SIZE 32
#define REC_SET 1
#define REC_CLEAR 2
/* compact the map at close once it has this many records */
#define COMPACT_RECORDS 64

struct fetch_cache {
	int refs; /* atomic */
	char *root;
	char *dir; /* root/blobs */
	uint64_t max_bytes;
	uint32_t granule;
	pthread_mutex_t lock;
	struct fetch_cache_blob *blobs; /* protected by lock */
	uint64_t approx_bytes;		/* protected by lock */
	pthread_mutex_t gc_lock;	/* one eviction pass at a time */
};

struct fetch_cache_blob {
	struct fetch_cache *cache;
	struct fetch_cache_blob *next; /* protected by cache->lock */
	unsigned refs;		       /* protected by cache->lock */
	char *digest;
	char *data_path, *map_path;
	int data_fd, map_fd;
	uint64_t size;
	uint32_t granule;
	uint64_t n_gran;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *present;   /* protected by lock */
	uint8_t *inflight;  /* protected by lock */
	uint64_t map_off;   /* protected by lock: replayed up to here */
	uint64_t n_records; /* protected by lock */
	bool map_broken;    /* protected by lock: stop appending */
};

/* ---- bitmaps ------------------------------------------------------------- */

static bool bit_get(const uint8_t *m, uint64_t i)
{
	return m[i >> 3] & (1u << (i & 7));
}

static void bit_set(uint8_t *m, uint64_t i)
{
	m[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static void bit_clear(uint8_t *m, uint64_t i)
{
	m[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

static size_t bitmap_bytes(uint64_t n)
{
	return (size_t)((n + 7) / 8);
}

/* ---- small I/O helpers --------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = i == n ? '\0' : '/';
	}
	return 0;
}

static char *path_join(const char *a, const char *b, const char *c)
{
	size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 3;
	char *p = lp_xmalloc(n);

	snprintf(p, n, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
	return p;
}

/* ---- the cache ----------------------------------------------------------- */

int fetch_cache_open(const struct fetch_cache_opts *o, struct fetch_cache **ret,
		     struct lp_err *err)
{
	struct fetch_cache *c;
	uint32_t g = o->granule ? o->granule : FETCH_GRANULE_DEFAULT;
	int r;

	if (!o->root || !o->root[0])
		return lp_err_set(err, EINVAL, "blob cache: no root directory");
	if (g < 4096 || g > (16u << 20) || (g & (g - 1)))
		return lp_err_set(err, EINVAL,
				  "blob cache: granule %u is not a power of "
				  "two in 4 KiB..16 MiB",
				  g);
	c = lp_xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->root = lp_xstrdup(o->root);
	c->dir = lp_layout_dir(o->root, LP_FILE_BLOB_DATA);
	c->max_bytes = o->max_bytes;
	c->granule = g;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->gc_lock, NULL);
	r = mkdir_p(c->dir);
	if (r < 0) {
		lp_err_set(err, r, "blob cache %s: %s", c->dir, strerror(-r));
		fetch_cache_unref(c);
		return r;
	}
	if (c->max_bytes) {
		int64_t n = fetch_cache_gc(c, c->max_bytes, err);

		if (n < 0) {
			fetch_cache_unref(c);
			return (int)n;
		}
	}
	*ret = c;
	return 0;
}

struct fetch_cache *fetch_cache_ref(struct fetch_cache *c)
{
	if (c)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void fetch_cache_unref(struct fetch_cache *c)
{
	if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->gc_lock);
	free(c->root);
	free(c->dir);
	free(c);
}

/* ---- eviction ------------------------------------------------------------ */

int64_t fetch_cache_gc(struct fetch_cache *c, uint64_t target,
		       struct lp_err *err)
{
	/* blobs/<algorithm>/<hex>.data with <hex>.map; the map's mtime is
	 * the last use, and only data blocks count */
	const struct lp_lru lru = {
		.dir = c->dir,
		.nested = true,
		.data_suffix = lp_layout_ext(LP_FILE_BLOB_DATA),
		.side_suffix = lp_layout_ext(LP_FILE_BLOB_MAP),
		.log_mod = LP_MODNAME,
		.log_prefix = "cache: ",
	};
	int64_t total;

	pthread_mutex_lock(&c->gc_lock);
	total = lp_lru_evict(&lru, target);
	if (total < 0) {
		pthread_mutex_unlock(&c->gc_lock);
		return lp_err_set(err, (int)total, "blob cache %s: %s", c->dir,
				  strerror((int)-total));
	}
	pthread_mutex_lock(&c->lock);
	c->approx_bytes = (uint64_t)total;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->gc_lock);
	return total;
}

/* Called after bytes were added; evicts down to 90 % when over budget. */
static void cache_account(struct fetch_cache *c, uint64_t added)
{
	bool over;

	if (!c->max_bytes)
		return;
	pthread_mutex_lock(&c->lock);
	c->approx_bytes += added;
	over = c->approx_bytes > c->max_bytes;
	pthread_mutex_unlock(&c->lock);
	if (over && pthread_mutex_trylock(&c->gc_lock) == 0) {
		pthread_mutex_unlock(&c->gc_lock);
		fetch_cache_gc(c, c->max_bytes / 10 * 9, NULL);
	}
}

/* ---- the map file -------------------------------------------------------- */

static void map_header(const struct fetch_cache_blob *b, const uint8_t *bits,
		       uint8_t hdr[MAP_HDR])
{
	memset(hdr, 0, MAP_HDR);
	memcpy(hdr, MAP_MAGIC, 8);
	lp_put_le32(hdr + 8, MAP_VERSION);
	lp_put_le32(hdr + 12, b->granule);
	lp_put_le64(hdr + 16, b->size);
	lp_put_le64(hdr + 24, b->n_gran);
	lp_put_le32(hdr + 32, lp_crc32c(0, bits, bitmap_bytes(b->n_gran)));
	lp_put_le32(hdr + 36, lp_crc32c(0, hdr, 36));
}

/*
 * Writes a fresh map holding bits (the present bitmap) next to the old one
 * and renames it into place; reopens b->map_fd.  Only with the blob
 * locked exclusively.
 */
static int map_rewrite(struct fetch_cache_blob *b, const uint8_t *bits)
{
	_cleanup_free_ char *tmp = NULL;
	uint8_t hdr[MAP_HDR];
	int fd, r;

	tmp = lp_xmalloc(strlen(b->map_path) + 8);
	sprintf(tmp, "%s.tmp", b->map_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	map_header(b, bits, hdr);
	r = write_all(fd, hdr, MAP_HDR);
	if (!r)
		r = write_all(fd, bits, bitmap_bytes(b->n_gran));
	if (!r && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (!r && rename(tmp, b->map_path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	fd = open(b->map_path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (b->map_fd >= 0)
		close(b->map_fd);
	b->map_fd = fd;
	b->map_off = MAP_HDR + bitmap_bytes(b->n_gran);
	b->n_records = 0;
	return 0;
}

/*
 * Applies records from b->map_off on; stops at the first short or bad one.
 * Returns true if the file ends exactly after the last good record.
 */
static bool map_replay(struct fetch_cache_blob *b)
{
	uint8_t buf[REC_SIZE * 128];
	struct stat st;

	if (fstat(b->map_fd, &st) < 0)
		return false;
	while (b->map_off < (uint64_t)st.st_size) {
		int64_t n = lp_pread_all(b->map_fd, buf, sizeof(buf),
					 b->map_off);

		if (n < REC_SIZE)
			return false;
		for (int64_t i = 0; i + REC_SIZE <= n; i += REC_SIZE) {
			const uint8_t *rec = buf + i;
			uint32_t op = lp_get_le32(rec + 4);
			uint64_t first = lp_get_le64(rec + 8),
				 count = lp_get_le64(rec + 16);

			if (lp_get_le32(rec) != REC_MAGIC ||
			    lp_get_le32(rec + 28) != lp_crc32c(0, rec, 28) ||
			    (op != REC_SET && op != REC_CLEAR) ||
			    first > b->n_gran || count > b->n_gran - first)
				return false;
			for (uint64_t g = first; g < first + count; g++) {
				if (op == REC_SET)
					bit_set(b->present, g);
				else
					bit_clear(b->present, g);
			}
			b->map_off += REC_SIZE;
			b->n_records++;
		}
		if (n % REC_SIZE)
			return false;
	}
	return b->map_off == (uint64_t)st.st_size;
}

/* Loads the map: 1 if valid (tail state in *clean), 0 if not a valid map
 * for this blob, -errno on I/O errors. */
static int map_load(struct fetch_cache_blob *b, bool *clean)
{
	uint8_t hdr[MAP_HDR];
	size_t bb = bitmap_bytes(b->n_gran);
	int64_t n;

	n = lp_pread_all(b->map_fd, hdr, MAP_HDR, 0);
	if (n < 0)
		return (int)n;
	if (n < MAP_HDR || memcmp(hdr, MAP_MAGIC, 8) ||
	    lp_get_le32(hdr + 8) != MAP_VERSION ||
	    lp_get_le32(hdr + 36) != lp_crc32c(0, hdr, 36) ||
	    lp_get_le64(hdr + 16) != b->size)
		return 0;
	b->granule = lp_get_le32(hdr + 12);
	if (b->granule < 4096 || (b->granule & (b->granule - 1)))
		return 0;
	b->n_gran = (b->size + b->granule - 1) / b->granule;
	if (lp_get_le64(hdr + 24) != b->n_gran)
		return 0;
	bb = bitmap_bytes(b->n_gran);
	free(b->present);
	free(b->inflight);
	b->present = lp_xcalloc(bb ? bb : 1, 1);
	b->inflight = lp_xcalloc(bb ? bb : 1, 1);
	n = lp_pread_all(b->map_fd, b->present, bb, MAP_HDR);
	if (n < 0)
		return (int)n;
	if ((size_t)n != bb ||
	    lp_get_le32(hdr + 32) != lp_crc32c(0, b->present, bb)) {
		memset(b->present, 0, bb ? bb : 1);
		return 0;
	}
	/* bits past the last granule must be clear */
	if (b->n_gran % 8 && bb && (b->present[bb - 1] >> (b->n_gran % 8)))
		return 0;
	b->map_off = MAP_HDR + bb;
	b->n_records = 0;
	*clean = map_replay(b);
	return 1;
}

/* Appends a record; the caller holds b->lock. */
static void map_append(struct fetch_cache_blob *b, uint32_t op, uint64_t first,
		       uint64_t count)
{
	uint8_t rec[REC_SIZE] = { 0 };
	int r;

	if (b->map_broken)
		return;
	lp_put_le32(rec, REC_MAGIC);
	lp_put_le32(rec + 4, op);
	lp_put_le64(rec + 8, first);
	lp_put_le64(rec + 16, count);
	lp_put_le32(rec + 28, lp_crc32c(0, rec, 28));
	r = write_all(b->map_fd, rec, REC_SIZE);
	if (r < 0) {
		/* a partial record would hide every later one; stop
		 * persisting (reads still work from memory) */
		lp_debug("cache %s: map append: %s", b->digest, strerror(-r));
		b->map_broken = true;
		return;
	}
	b->n_records++;
	/*
	 * Our own records are already applied; skip them on the next
	 * replay unless another process appended in between (then the
	 * replay re-applies ours too, which is idempotent).
	 */
	if (b->map_off + REC_SIZE == (uint64_t)lseek(b->map_fd, 0, SEEK_CUR))
		b->map_off += REC_SIZE;
}

/* ---- blobs --------------------------------------------------------------- */

static void blob_destroy(struct fetch_cache_blob *b)
{
	if (b->data_fd >= 0)
		close(b->data_fd);
	if (b->map_fd >= 0)
		close(b->map_fd);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b->digest);
	free(b->data_path);
	free(b->map_path);
	free(b->present);
	free(b->inflight);
	free(b);
}

/* Opens and locks the data file, retrying if eviction raced us. */
static int blob_lock_data(struct fetch_cache_blob *b, bool *exclusive)
{
	for (int tries = 0; tries < 8; tries++) {
		struct stat a, p;
		int fd = open(b->data_path,
			      O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return -errno;
		*exclusive = flock(fd, LOCK_EX | LOCK_NB) == 0;
		if (!*exclusive && flock(fd, LOCK_SH) < 0) {
			int e = errno;

			close(fd);
			return -e;
		}
		if (fstat(fd, &a) == 0 && stat(b->data_path, &p) == 0 &&
		    a.st_ino == p.st_ino && a.st_dev == p.st_dev) {
			b->data_fd = fd;
			return 0;
		}
		close(fd); /* evicted between open and lock */
	}
	return -EAGAIN;
}

static int blob_init(struct fetch_cache_blob *b, struct lp_err *err)
{
	struct stat st;
	bool excl = false, clean = false;
	size_t bb;
	int r;

	r = blob_lock_data(b, &excl);
	if (r < 0)
		return lp_err_set(err, r, "blob cache %s: %s", b->data_path,
				  strerror(-r));
	if (fstat(b->data_fd, &st) < 0)
		return lp_err_set(err, errno, "blob cache %s: %s", b->data_path,
				  strerror(errno));
	b->map_fd = open(b->map_path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (b->map_fd < 0 && errno != ENOENT)
		return lp_err_set(err, errno, "blob cache %s: %s", b->map_path,
				  strerror(errno));
	r = 0;
	if (b->map_fd >= 0 && (uint64_t)st.st_size == b->size) {
		r = map_load(b, &clean);
		if (r < 0)
			return lp_err_set(err, r, "blob cache %s: %s",
					  b->map_path, strerror(-r));
	}
	if (r == 0) {
		/* new, or unusable: start empty (only the first user may) */
		if (!excl)
			return lp_err_set(err, EIO,
					  "blob cache %s: map is invalid while "
					  "the blob is in use",
					  b->map_path);
		b->granule = b->cache->granule;
		b->n_gran = (b->size + b->granule - 1) / b->granule;
		bb = bitmap_bytes(b->n_gran);
		free(b->present);
		free(b->inflight);
		b->present = lp_xcalloc(bb ? bb : 1, 1);
		b->inflight = lp_xcalloc(bb ? bb : 1, 1);
		if (ftruncate(b->data_fd, 0) < 0 ||
		    ftruncate(b->data_fd, (off_t)b->size) < 0)
			return lp_err_set(err, errno, "blob cache %s: %s",
					  b->data_path, strerror(errno));
		r = map_rewrite(b, b->present);
	} else if (excl && (!clean || b->n_records >= COMPACT_RECORDS)) {
		r = map_rewrite(b, b->present);
	}
	if (r < 0)
		return lp_err_set(err, r, "blob cache %s: %s", b->map_path,
				  strerror(-r));
	if (excl)
		flock(b->data_fd, LOCK_SH);
	/* last use, for LRU eviction */
	futimens(b->map_fd, NULL);
	return 0;
}

int fetch_cache_blob_open(struct fetch_cache *c, const char *digest,
			  uint64_t size, struct fetch_cache_blob **ret,
			  struct lp_err *err)
{
	struct fetch_cache_blob *b;
	_cleanup_free_ char *sub = NULL, *data_path = NULL;
	int r;

	if (fetch_digest_check(digest, strlen(digest)) < 0 ||
	    !strchr(digest, ':'))
		return lp_err_set(err, EINVAL, "blob cache: bad digest");
	if (size > (UINT64_C(1) << 50))
		return lp_err_set(err, EFBIG, "blob cache: blob too large");
	pthread_mutex_lock(&c->lock);
	for (b = c->blobs; b; b = b->next) {
		if (!strcmp(b->digest, digest)) {
			if (b->size != size) {
				pthread_mutex_unlock(&c->lock);
				return lp_err_set(err, EINVAL,
						  "blob %s: opened with size "
						  "%llu and %llu",
						  digest,
						  (unsigned long long)b->size,
						  (unsigned long long)size);
			}
			b->refs++;
			pthread_mutex_unlock(&c->lock);
			*ret = b;
			return 0;
		}
	}
	/* the entry's directory: blobs/<algorithm> */
	data_path = lp_layout_entry(c->dir, LP_FILE_BLOB_DATA, digest);
	sub = lp_xstrdup(data_path);
	*strrchr(sub, '/') = '\0';
	r = mkdir_p(sub);
	if (r < 0) {
		pthread_mutex_unlock(&c->lock);
		return lp_err_set(err, r, "blob cache %s: %s", sub,
				  strerror(-r));
	}
	b = lp_xcalloc(1, sizeof(*b));
	b->cache = c;
	b->refs = 1;
	b->digest = lp_xstrdup(digest);
	b->data_path = TAKE_PTR(data_path);
	b->map_path = lp_layout_entry(c->dir, LP_FILE_BLOB_MAP, digest);
	b->data_fd = b->map_fd = -1;
	b->size = size;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	/* under c->lock, so two opens of one digest never race */
	r = blob_init(b, err);
	if (r < 0) {
		pthread_mutex_unlock(&c->lock);
		blob_destroy(b);
		return r;
	}
	fetch_cache_ref(c);
	b->next = c->blobs;
	c->blobs = b;
	pthread_mutex_unlock(&c->lock);
	*ret = b;
	return 0;
}

int fetch_cache_blob_known_size(struct fetch_cache *c, const char *digest,
				uint64_t *ret)
{
	const char *colon = strchr(digest, ':');
	_cleanup_free_ char *path = NULL;
	uint8_t hdr[MAP_HDR];
	int64_t n;
	int fd;

	if (fetch_digest_check(digest, strlen(digest)) < 0 || !colon)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	for (struct fetch_cache_blob *b = c->blobs; b; b = b->next) {
		if (!strcmp(b->digest, digest)) {
			*ret = b->size;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	path = lp_layout_entry(c->dir, LP_FILE_BLOB_MAP, digest);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = lp_pread_all(fd, hdr, MAP_HDR, 0);
	close(fd);
	if (n != MAP_HDR || memcmp(hdr, MAP_MAGIC, 8) ||
	    lp_get_le32(hdr + 8) != MAP_VERSION ||
	    lp_get_le32(hdr + 36) != lp_crc32c(0, hdr, 36) ||
	    !lp_get_le64(hdr + 16) || lp_get_le64(hdr + 16) > (UINT64_C(1) << 50))
		return -ENOENT;
	*ret = lp_get_le64(hdr + 16);
	return 0;
}

void fetch_cache_blob_close(struct fetch_cache_blob *b)
{
	struct fetch_cache *c;
	struct fetch_cache_blob **pp;

	if (!b)
		return;
	c = b->cache;
	pthread_mutex_lock(&c->lock);
	if (--b->refs) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	for (pp = &c->blobs; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	/*
	 * Compact the record log if nobody else uses the blob.  Converting
	 * the lock may drop it, which is fine as we are closing anyway.
	 */
	if (b->n_records >= COMPACT_RECORDS && !b->map_broken &&
	    flock(b->data_fd, LOCK_EX | LOCK_NB) == 0) {
		map_replay(b);
		map_rewrite(b, b->present);
	}
	if (b->map_fd >= 0)
		futimens(b->map_fd, NULL);
	blob_destroy(b);
	fetch_cache_unref(c);
}

uint32_t fetch_cache_granule(const struct fetch_cache_blob *b)
{
	return b->granule;
}

uint64_t fetch_cache_blob_size(const struct fetch_cache_blob *b)
{
	return b->size;
}

/* [g0, g1) of granules covering [off, off+len), clipped to the blob. */
static void gran_span(const struct fetch_cache_blob *b, uint64_t off,
		      uint64_t len, uint64_t *g0, uint64_t *g1)
{
	uint64_t end;

	if (off >= b->size || !len) {
		*g0 = *g1 = 0;
		return;
	}
	end = len > b->size - off ? b->size : off + len;
	*g0 = off / b->granule;
	*g1 = (end + b->granule - 1) / b->granule;
}

static uint64_t gran_off(const struct fetch_cache_blob *b, uint64_t g)
{
	return g * b->granule;
}

/* The byte length of granules [g0, g1), the last one possibly short. */
static uint64_t gran_len(const struct fetch_cache_blob *b, uint64_t g0,
			 uint64_t g1)
{
	uint64_t end = g1 * b->granule;

	if (end > b->size)
		end = b->size;
	return end - g0 * b->granule;
}

static bool all_present(const struct fetch_cache_blob *b, uint64_t g0,
			uint64_t g1)
{
	for (uint64_t g = g0; g < g1; g++)
		if (!bit_get(b->present, g))
			return false;
	return true;
}

int fetch_cache_blob_read(struct fetch_cache_blob *b, void *buf, size_t len,
			  uint64_t off)
{
	uint64_t g0, g1;
	bool ok;
	int64_t n;

	if (off >= b->size || !len)
		return 1;
	if (len > b->size - off)
		return -EINVAL;
	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
	ok = all_present(b, g0, g1);
	pthread_mutex_unlock(&b->lock);
	if (!ok)
		return 0;
	n = lp_pread_all(b->data_fd, buf, len, off);
	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return -EIO;
	return 1;
}

int fetch_cache_blob_claim(struct fetch_cache_blob *b, uint64_t off,
			   uint64_t len, struct fetch_range **ret,
			   size_t *ret_n)
{
	struct fetch_range *runs = NULL;
	size_t n = 0, cap = 0;
	uint64_t g0, g1, g;
	bool refreshed = false;

	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
again:
	for (g = g0; g < g1; g++) {
		uint64_t s;

		if (bit_get(b->present, g) || bit_get(b->inflight, g))
			continue;
		if (!refreshed) {
			/* another process may have fetched it */
			refreshed = true;
			map_replay(b);
			goto again;
		}
		s = g;
		while (g < g1 && !bit_get(b->present, g) &&
		       !bit_get(b->inflight, g)) {
			bit_set(b->inflight, g);
			g++;
		}
		lp_grow((void **)&runs, sizeof(*runs), &cap, n + 1);
		runs[n].off = gran_off(b, s);
		runs[n].len = gran_len(b, s, g);
		n++;
	}
	pthread_mutex_unlock(&b->lock);
	*ret = runs;
	*ret_n = n;
	return 0;
}

bool fetch_cache_blob_has(struct fetch_cache_blob *b, uint64_t off,
			  uint64_t len)
{
	uint64_t g0, g1;
	bool ok;

	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
	ok = all_present(b, g0, g1);
	if (!ok) { /* another process may have fetched it */
		map_replay(b);
		ok = all_present(b, g0, g1);
	}
	pthread_mutex_unlock(&b->lock);
	return ok;
}

void fetch_cache_blob_wait(struct fetch_cache_blob *b, uint64_t off,
			   uint64_t len)
{
	uint64_t g0, g1;

	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
	for (;;) {
		bool busy = false;

		for (uint64_t g = g0; g < g1 && !busy; g++)
			busy = bit_get(b->inflight, g);
		if (!busy)
			break;
		pthread_cond_wait(&b->cond, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
}

void fetch_cache_blob_unclaim(struct fetch_cache_blob *b, uint64_t off,
			      uint64_t len)
{
	uint64_t g0, g1;

	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
	for (uint64_t g = g0; g < g1; g++)
		bit_clear(b->inflight, g);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static bool run_ok(const struct fetch_cache_blob *b, uint64_t off, uint64_t len)
{
	return off % b->granule == 0 && off < b->size && len &&
	       len <= b->size - off &&
	       (len % b->granule == 0 || off + len == b->size);
}

int fetch_cache_blob_write_raw(struct fetch_cache_blob *b, uint64_t off,
			       const void *data, size_t len)
{
	if (off > b->size || len > b->size - off)
		return -EINVAL;
	return lp_pwrite_all(b->data_fd, data, len, off);
}

int fetch_cache_blob_commit(struct fetch_cache_blob *b, uint64_t off,
			    uint64_t len, struct lp_err *err)
{
	uint64_t g0, g1;
	int r = 0;

	if (!run_ok(b, off, len)) {
		fetch_cache_blob_unclaim(b, off, len);
		return lp_err_set(err, EINVAL, "cache: unaligned run");
	}
	gran_span(b, off, len, &g0, &g1);
	/* the data must be on disk before the map says it is there */
	if (fdatasync(b->data_fd) < 0) {
		r = lp_err_set(err, errno, "blob cache %s: fdatasync: %s",
			       b->data_path, strerror(errno));
		fetch_cache_blob_unclaim(b, off, len);
		return r;
	}
	pthread_mutex_lock(&b->lock);
	for (uint64_t g = g0; g < g1; g++) {
		bit_set(b->present, g);
		bit_clear(b->inflight, g);
	}
	map_append(b, REC_SET, g0, g1 - g0);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	cache_account(b->cache, len);
	return 0;
}

int fetch_cache_blob_fill(struct fetch_cache_blob *b, uint64_t off,
			  const void *data, uint64_t len, struct lp_err *err)
{
	int r;

	if (!run_ok(b, off, len)) {
		fetch_cache_blob_unclaim(b, off, len);
		return lp_err_set(err, EINVAL, "cache: unaligned run");
	}
	r = lp_pwrite_all(b->data_fd, data, (size_t)len, off);
	if (r < 0) {
		fetch_cache_blob_unclaim(b, off, len);
		return lp_err_set(err, r, "blob cache %s: write: %s",
				  b->data_path, strerror(-r));
	}
	return fetch_cache_blob_commit(b, off, len, err);
}

int fetch_cache_blob_invalidate(struct fetch_cache_blob *b, uint64_t off,
				uint64_t len)
{
	uint64_t g0, g1, first = UINT64_MAX, last = 0;

	gran_span(b, off, len, &g0, &g1);
	pthread_mutex_lock(&b->lock);
	for (uint64_t g = g0; g < g1; g++) {
		if (bit_get(b->present, g)) {
			bit_clear(b->present, g);
			if (first == UINT64_MAX)
				first = g;
			last = g;
		}
	}
	if (first != UINT64_MAX) {
		map_append(b, REC_CLEAR, first, last - first + 1);
		/* losing a clear record would resurrect bad bytes */
		fdatasync(b->map_fd);
	}
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* The warm mark: a write lock on byte 0 of the data file (OFD locks are
 * independent of the flock() that guards eviction). */
static int warm_lock(const struct fetch_cache_blob *b, int cmd, short type,
		     struct flock *fl)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = type;
	fl->l_whence = SEEK_SET;
	fl->l_start = 0;
	fl->l_len = 1;
	return fcntl(b->data_fd, cmd, fl);
}

int fetch_cache_blob_warm_begin(struct fetch_cache_blob *b)
{
	struct flock fl;

	if (warm_lock(b, F_OFD_SETLK, F_WRLCK, &fl) < 0)
		return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
	return 0;
}

bool fetch_cache_blob_warming(struct fetch_cache_blob *b)
{
	struct flock fl;

	if (warm_lock(b, F_OFD_GETLK, F_RDLCK, &fl) < 0)
		return false;
	return fl.l_type != F_UNLCK;
}

uint64_t fetch_cache_blob_present_bytes(struct fetch_cache_blob *b)
{
	uint64_t n = 0;

	pthread_mutex_lock(&b->lock);
	for (uint64_t g = 0; g < b->n_gran; g++)
		if (bit_get(b->present, g))
			n += gran_len(b, g, g + 1);
	pthread_mutex_unlock(&b->lock);
	return n;
}

/* ---- documents ----------------------------------------------------------- */

static char *doc_path(struct fetch_cache *c, const char *key, bool tmp)
{
	uint8_t sum[32];
	char hex[65];
	char *p;

	lp_sha256(key, strlen(key), sum);
	lp_hex(sum, 32, hex);
	p = lp_xmalloc(strlen(c->root) + 96);
	if (tmp)
		sprintf(p, "%s/docs/%s.%d.tmp", c->root, hex, (int)getpid());
	else
		sprintf(p, "%s/docs/%s", c->root, hex);
	return p;
}

int fetch_cache_doc_put(struct fetch_cache *c, const char *key,
			const void *data, size_t len, struct lp_err *err)
{
	_cleanup_free_ char *dir = path_join(c->root, "docs", NULL);
	_cleanup_free_ char *path = doc_path(c, key, false);
	_cleanup_free_ char *tmp = doc_path(c, key, true);
	int fd, r;

	r = mkdir_p(dir);
	if (r < 0)
		return lp_err_set(err, r, "%s: %s", dir, strerror(-r));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return lp_err_set(err, errno, "%s: %s", tmp, strerror(errno));
	r = write_all(fd, data, len);
	if (!r && fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return lp_err_set(err, r, "%s: %s", path, strerror(-r));
	}
	return 0;
}

int fetch_cache_doc_get(struct fetch_cache *c, const char *key,
			int64_t max_age_s, uint8_t **ret, size_t *ret_len)
{
	_cleanup_free_ char *path = doc_path(c, key, false);
	_cleanup_close_ int fd = -1;
	struct stat st;
	uint8_t *buf;
	int64_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (max_age_s >= 0 && time(NULL) - st.st_mtime > max_age_s)
		return -ENOENT;
	if (st.st_size > (off_t)FETCH_MANIFEST_MAX + 4096)
		return -EFBIG;
	buf = lp_xmalloc((size_t)st.st_size + 1);
	n = lp_pread_all(fd, buf, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		free(buf);
		return n < 0 ? (int)n : -EIO;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}
