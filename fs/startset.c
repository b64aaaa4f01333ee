// SPDX-License-Identifier: Apache-2.0
/*
 * The start files of an image: see startset.h.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LP_MODNAME "startset"
#include "fs/elf.h"
#include "fs/pyimport.h"
#include "fs/startset.h"

#define MAX_SYMLINKS 40
#define MAX_LEVELS 8
#define PY_MAX_LEVELS 24     /* import depth followed */
#define PY_MAX_FILE (2u << 20) /* a module read for its imports */
#define PY_MAX_MODULES 4096   /* module names looked up */
#define PY_MAX_PATH 16	      /* sys.path directories */
/* a batch of modules: one request (the fetcher asks for its files'
 * ranges together), so a few larger batches beat many small ones */
#define PY_BATCH_FILES 8
#define PY_BATCH_BYTES (128u << 10)
/* with their neighbours in the layer (they ride in the same request) */
#define PY_BATCH_MAX_FILES 16
#define PY_BATCH_MAX_BYTES (256u << 10)

uint32_t startset_resolve(const struct model *m, const char *path,
			  uint32_t cwd)
{
	char buf[PATH_MAX], next[PATH_MAX];
	uint32_t ino, hops = 0;
	const char *p;

	if (m->n_inodes <= MODEL_ROOT_INO || strlen(path) >= sizeof(buf))
		return 0;
	strcpy(buf, path);
	ino = path[0] == '/' || !model_inode(m, cwd) ? MODEL_ROOT_INO : cwd;
	p = buf;
	for (;;) {
		const struct model_inode *in;
		char comp[NAME_MAX + 1];
		const char *end;
		uint32_t child;
		size_t len;

		while (*p == '/')
			p++;
		if (!*p)
			return ino;
		end = strchrnul(p, '/');
		len = (size_t)(end - p);
		if (len >= sizeof(comp))
			return 0;
		memcpy(comp, p, len);
		comp[len] = '\0';
		p = end;
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			ino = m->inodes[ino].parent;
			continue;
		}
		child = model_lookup(m, ino, comp);
		in = model_inode(m, child);
		if (!in)
			return 0;
		if (S_ISLNK(in->mode)) {
			const char *t = model_str(m, in->link);
			size_t tl = strlen(t), rl = strlen(p);

			if (++hops > MAX_SYMLINKS || !tl ||
			    tl + rl + 1 >= sizeof(next))
				return 0;
			memcpy(next, t, tl);
			memcpy(next + tl, p, rl + 1);
			strcpy(buf, next);
			p = buf;
			if (buf[0] == '/')
				ino = MODEL_ROOT_INO;
			continue; /* relative: from the link's directory */
		}
		if (*p && !S_ISDIR(in->mode))
			return 0;
		ino = child;
	}
}

/* a file of the next level to read for more */
struct ss_exam {
	uint32_t ino;
	char *pkg; /* a Python module: the package its relative imports are
		    * from ("" at the top); NULL: ELF or script */
};

/* a file of the Python phase's queue */
struct ss_item {
	uint32_t ino;
	uint32_t depth; /* 1: a start-up module or the script's import */
	uint32_t blob;	/* its stored bytes: [lo, hi) of blob (UINT32_MAX:
			 * none) */
	uint64_t lo, hi;
	bool examine;
	char *pkg;
	/* where the import system meets it first: the indexes of the
	 * imports leading to it (Python imports depth first, in statement
	 * order, so the modules are fetched in the order of these keys) */
	uint16_t key[PY_MAX_LEVELS];
};

/* a Python module name looked up */
struct ss_pymod {
	char *name;
	uint32_t ino; /* the file queued for it, 0: none */
	uint32_t dir; /* a package: its directory */
	bool found;
};

struct startset {
	const struct model *m;
	struct startset_io io;
	uint64_t max_bytes;
	char **argv;
	uint32_t argc;
	char *path_var;
	uint32_t cwd;
	uint8_t *seen;	 /* bit per inode: in the set, or examined */
	uint32_t *level, n_level;
	uint32_t *next, n_next;
	struct ss_exam *exam;
	uint32_t n_exam; /* of next: the ones to read for more */
	struct startset_stats st;
	bool ld_cache;		/* /etc/ld.so.cache added */
	bool ssl_conf;		/* OpenSSL's configuration added */
	const char *triplet;	/* of the first ELF file read */
	uint32_t phase_files;	/* files added in this phase */
	bool py_phase;		/* the Python imports are being followed */
	/* The Python phase's queue: STARTSET_PY_FETCHERS threads take
	 * batches of it in key order and fetch them; this thread reads each
	 * batch for more as soon as it is in, and appends what it finds.
	 * lock guards the queue's indexes, the done ranges, inflight and
	 * st.levels. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ss_item *pq;	/* every file queued, in order */
	uint32_t pq_n;
	/* what is to fetch, as indexes of pq, in key order when taken */
	uint32_t *qi, qh, qn;
	uint32_t *order, n_order; /* indexes of pq, in the order taken */
	uint32_t (*done)[2];	/* fetched ranges of order: first, count */
	uint32_t done_head, done_n;
	uint32_t inflight;
	bool finished;		/* the fetchers stop */
	bool py_tried;		/* ss_py_begin() was called */
	uint32_t depth;		/* of the file being read */
	const uint16_t *key;	/* its key (depth entries), NULL: none */
	uint32_t n_found;	/* files it added so far */
	/* Python: set when the program (or a script's interpreter) is a
	 * CPython interpreter */
	uint32_t py_prog;	/* the interpreter, 0: not Python */
	uint32_t py_script;	/* the script it runs, 0: none */
	char *py_code;		/* -c */
	char *py_main;		/* -m */
	bool py_nosite;		/* -S */
	bool py_noenv;		/* -E, -I */
	char *pythonpath;	/* the config's PYTHONPATH */
	char *locale;		/* LC_ALL, LC_CTYPE or LANG */
	char *tz;		/* TZ */
	char py_tag[16];	/* "cpython-311" */
	char py_exe[PATH_MAX];	/* the interpreter's path, links not
				 * followed (a virtual environment's) */
	bool py_frozen;		/* 3.11+: the start-up modules are built in */
	uint32_t py_path[PY_MAX_PATH], n_py_path;
	struct ss_pymod *mods;	/* open addressing, PY_MAX_MODULES * 2 */
	uint32_t n_mods;
};

static bool ss_is_exec(const struct model_inode *in)
{
	return S_ISREG(in->mode) && (in->mode & 0111);
}

/* two items of the queue in key order */
static int ss_item_cmp(const struct ss_item *x, const struct ss_item *y)
{
	uint32_t n = x->depth < y->depth ? x->depth : y->depth;

	for (uint32_t i = 0; i < n; i++)
		if (x->key[i] != y->key[i])
			return x->key[i] < y->key[i] ? -1 : 1;
	return x->depth < y->depth ? -1 : x->depth > y->depth;
}

/* its depth and key: the file being read's, then the rank of what it
 * found so far */
static void ss_py_key(struct startset *s, struct ss_item *it)
{
	it->depth = s->depth + 1;
	if (s->depth && s->key)
		memcpy(it->key, s->key, s->depth * sizeof(*it->key));
	it->key[s->depth] = s->n_found < UINT16_MAX ? (uint16_t)s->n_found
						    : UINT16_MAX;
	s->n_found++;
}

/* where its stored bytes are */
static void ss_py_span(const struct startset *s, struct ss_item *it)
{
	const struct model_inode *in = &s->m->inodes[it->ino];
	const struct model_chunk *a, *z;

	it->blob = UINT32_MAX;
	if (!in->count)
		return;
	a = &s->m->chunks[in->first];
	z = &s->m->chunks[in->first + in->count - 1];
	if (a->blob != z->blob || z->comp_off < a->comp_off)
		return;
	it->blob = a->blob;
	it->lo = a->comp_off;
	it->hi = z->comp_off + z->comp_len;
}

/*
 * ino, queued already, is found again: Python meets it first where the
 * smaller key says, so it moves up if it is still to fetch.  (The batches
 * are read in the order they come in, not in key order, so a module
 * imported early, say re by json.decoder, is often found first through a
 * later import.)
 */
static void ss_py_rekey(struct startset *s, uint32_t ino)
{
	struct ss_item it = { .ino = ino };

	if (s->depth >= PY_MAX_LEVELS)
		return;
	ss_py_key(s, &it);
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = s->qh; i < s->qn; i++) {
		struct ss_item *q = &s->pq[s->qi[i]];

		if (q->ino != ino)
			continue;
		if (ss_item_cmp(&it, q) < 0) {
			memcpy(q->key, it.key, sizeof(q->key));
			q->depth = it.depth;
		}
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

/* Adds regular file ino to the next level; examine: read it for more
 * (pkg: as a Python module of that package). */
static void ss_add_ex(struct startset *s, uint32_t ino, bool examine,
		      const char *pkg)
{
	const struct model_inode *in = model_inode(s->m, ino);
	uint32_t limit = s->py_phase ? STARTSET_PY_MAX_FILES
				     : STARTSET_MAX_FILES;
	uint64_t sz;

	if (!in || !S_ISREG(in->mode))
		return;
	if (s->seen[ino / 8] & (1u << (ino % 8))) {
		if (s->py_phase)
			ss_py_rekey(s, ino);
		return;
	}
	s->seen[ino / 8] |= (uint8_t)(1u << (ino % 8));
	sz = model_file_stored(s->m, ino);
	if (s->phase_files >= limit || sz > s->max_bytes - s->st.bytes ||
	    (s->py_phase && s->depth >= PY_MAX_LEVELS)) {
		s->st.skipped++;
		return;
	}
	if (LP_LOG_DEBUG <= lp_log_max) {
		char path[PATH_MAX];

		if (model_path(s->m, ino, path, sizeof(path)) >= 0)
			lp_debug("%s (%s %u)", path,
				 s->py_phase ? "depth" : "level",
				 s->py_phase ? s->depth + 1
					     : s->st.levels + 1);
	}
	s->phase_files++;
	s->st.files++;
	s->st.bytes += sz;
	if (s->io.mark)
		__atomic_fetch_or(&s->io.mark[ino / 8],
				  (uint8_t)(1u << (ino % 8)), __ATOMIC_RELAXED);
	if (s->py_phase) {
		struct ss_item it = { .ino = ino, .examine = examine,
				      .pkg = examine && pkg ? lp_xstrdup(pkg)
							    : NULL };

		ss_py_key(s, &it);
		ss_py_span(s, &it);
		pthread_mutex_lock(&s->lock);
		s->qi[s->qn++] = s->pq_n;
		s->pq[s->pq_n++] = it;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->next[s->n_next++] = ino;
	if (examine) {
		s->exam[s->n_exam].ino = ino;
		s->exam[s->n_exam++].pkg = pkg ? lp_xstrdup(pkg) : NULL;
	}
}

/* a file added but never fetched (cut off): not in the set, counted or
 * marked */
static void ss_unadd(struct startset *s, uint32_t ino)
{
	uint8_t bit = (uint8_t)(1u << (ino % 8));

	s->seen[ino / 8] &= (uint8_t)~bit;
	if (s->io.mark)
		__atomic_fetch_and(&s->io.mark[ino / 8], (uint8_t)~bit,
				   __ATOMIC_RELAXED);
	s->st.files--;
	s->st.bytes -= model_file_stored(s->m, ino);
}

static void ss_add(struct startset *s, uint32_t ino, bool examine)
{
	ss_add_ex(s, ino, examine, NULL);
}

/* name through the search path (":"-separated), the first executable
 * regular file */
static uint32_t ss_which(const struct model *m, const char *name,
			 const char *search, char *out)
{
	char path[PATH_MAX];

	while (search && *search) {
		const char *end = strchrnul(search, ':');
		size_t dl = (size_t)(end - search);

		if (dl + 1 + strlen(name) < sizeof(path)) {
			uint32_t ino;

			memcpy(path, search, dl);
			path[dl] = '/';
			strcpy(path + dl + 1, name);
			ino = startset_resolve(m, dl ? path : name,
					       MODEL_ROOT_INO);
			if (ino && ss_is_exec(&m->inodes[ino])) {
				if (out)
					strcpy(out, dl ? path : name);
				return ino;
			}
		}
		search = *end ? end + 1 : end;
	}
	return 0;
}

/* a program name as execvp would find it; out (PATH_MAX): the path it
 * was found at, symlinks not followed */
static uint32_t ss_program(const struct startset *s, const char *name,
			   uint32_t cwd, char *out)
{
	if (!*name)
		return 0;
	if (strchr(name, '/')) {
		if (name[0] == '/' || model_path(s->m, cwd, out, PATH_MAX) < 0 ||
		    strlen(out) + 1 + strlen(name) >= PATH_MAX)
			snprintf(out, PATH_MAX, "%s", name);
		else
			strcat(strcat(out, "/"), name);
		return startset_resolve(s->m, name, cwd);
	}
	return ss_which(s->m, name, s->path_var, out);
}

/* a CPython interpreter's name: python, python3, python3.11 */
static bool ss_is_python(const struct model *m, uint32_t ino)
{
	const struct model_inode *in = model_inode(m, ino);
	const char *n;

	if (!in || !S_ISREG(in->mode))
		return false;
	n = model_str(m, in->name);
	if (strncmp(n, "python", 6))
		return false;
	n += 6;
	return !n[strspn(n, "0123456789.")];
}

/* "#!interp [arg]": the interpreter, or env's program */
static void ss_script(struct startset *s, uint32_t ino)
{
	char line[256], *p, *word, *save = NULL, exe[PATH_MAX];
	int64_t got = s->io.read(s->io.arg, ino, 0, line, sizeof(line) - 1);
	uint32_t interp;

	if (got < 3 || line[0] != '#' || line[1] != '!')
		return;
	line[got] = '\0';
	p = line + 2;
	p[strcspn(p, "\n")] = '\0';
	word = strtok_r(p, " \t", &save);
	if (!word)
		return;
	interp = startset_resolve(s->m, word, MODEL_ROOT_INO);
	ss_add(s, interp, true);
	snprintf(exe, sizeof(exe), "%s", word);
	if (!strcmp(strrchr(word, '/') ? strrchr(word, '/') + 1 : word,
		    "env")) {
		interp = 0;
		while ((word = strtok_r(NULL, " \t", &save)))
			if (word[0] != '-' && !strchr(word, '=')) {
				interp = ss_which(s->m, word, s->path_var,
						  exe);
				ss_add(s, interp, true);
				break;
			}
	}
	if (interp && !s->py_prog && ss_is_python(s->m, interp)) {
		s->py_prog = interp;
		s->py_script = ino;
		snprintf(s->py_exe, sizeof(s->py_exe), "%s", exe);
	}
}

struct ss_file {
	const struct startset *s;
	uint32_t ino;
};

static int64_t ss_read(void *arg, uint64_t off, void *buf, size_t len)
{
	const struct ss_file *f = arg;

	return f->s->io.read(f->s->io.arg, f->ino, off, buf, len);
}

/* one directory of a library search path, "$ORIGIN" expanded */
static uint32_t ss_lib_in(const struct startset *s, const char *dir, size_t dl,
			  const char *origin, const char *name)
{
	char path[PATH_MAX];
	size_t ol = strlen(origin), len = 0;

	for (size_t i = 0; i < dl;) {
		const char *o = NULL;
		size_t skip = 0;

		if (i + 7 <= dl && !strncmp(dir + i, "$ORIGIN", 7) &&
		    (i + 7 == dl || !(isalnum((unsigned char)dir[i + 7]) ||
				      dir[i + 7] == '_'))) {
			o = origin;
			skip = 7;
		} else if (i + 9 <= dl && !strncmp(dir + i, "${ORIGIN}", 9)) {
			o = origin;
			skip = 9;
		}
		if (o) {
			if (len + ol >= sizeof(path))
				return 0;
			memcpy(path + len, o, ol);
			len += ol;
			i += skip;
			continue;
		}
		if (len + 1 >= sizeof(path))
			return 0;
		path[len++] = dir[i++];
	}
	if (len + 1 + strlen(name) >= sizeof(path))
		return 0;
	path[len++] = '/';
	strcpy(path + len, name);
	return startset_resolve(s->m, path, MODEL_ROOT_INO);
}

static uint32_t ss_lib(const struct startset *s, const struct elf_deps *d,
		       const char *origin, const char *name)
{
	static const char *const dirs[] = { "/lib/%s", "/usr/lib/%s",
					    "/lib64", "/usr/lib64", "/lib",
					    "/usr/lib", "/usr/local/lib" };
	const char *triplet = elf_machine_triplet(d->machine);
	char dir[128];
	uint32_t ino;

	if (strchr(name, '/'))
		return startset_resolve(s->m, name, MODEL_ROOT_INO);
	for (const char *p = d->runpath; p && *p;) {
		const char *end = strchrnul(p, ':');

		ino = ss_lib_in(s, p, (size_t)(end - p), origin, name);
		if (ino && S_ISREG(s->m->inodes[ino].mode))
			return ino;
		p = *end ? end + 1 : end;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (strstr(dirs[i], "%s")) {
			if (!triplet)
				continue;
			snprintf(dir, sizeof(dir), dirs[i], triplet);
		} else {
			snprintf(dir, sizeof(dir), "%s", dirs[i]);
		}
		ino = ss_lib_in(s, dir, strlen(dir), "", name);
		if (ino && S_ISREG(s->m->inodes[ino].mode))
			return ino;
	}
	return 0;
}

/* every regular file of directory path, if they hold at most max bytes */
static void ss_add_dir(struct startset *s, const char *path, uint64_t max)
{
	uint32_t dir = startset_resolve(s->m, path, MODEL_ROOT_INO);
	const struct model_inode *d = model_inode(s->m, dir);
	uint64_t sum = 0;

	if (!d || !S_ISDIR(d->mode))
		return;
	for (uint32_t i = 0; i < d->count && sum <= max; i++)
		sum += model_file_stored(s->m, s->m->dirents[d->first + i].ino);
	for (uint32_t i = 0; i < d->count && sum <= max; i++)
		ss_add(s, s->m->dirents[d->first + i].ino, false);
}

/*
 * What the C library of a dynamic program reads as it starts: the time
 * zone (TZ, else /etc/localtime) and the locale's files (LC_ALL, LC_CTYPE
 * or LANG: the locale archive, or the locale's directory under its
 * normalized name, "C.UTF-8" -> "C.utf8").
 */
static void ss_libc_data(struct startset *s)
{
	char path[PATH_MAX], name[NAME_MAX + 1];
	const char *loc = s->locale, *dot;
	size_t n = 0;

	if (s->tz && *s->tz) {
		const char *tz = s->tz + (s->tz[0] == ':');

		snprintf(path, sizeof(path), "%s%s",
			 tz[0] == '/' ? "" : "/usr/share/zoneinfo/", tz);
		ss_add(s, startset_resolve(s->m, path, MODEL_ROOT_INO), false);
	} else {
		ss_add(s, startset_resolve(s->m, "/etc/localtime",
					   MODEL_ROOT_INO), false);
	}
	if (!loc || !*loc || !strcmp(loc, "C") || !strcmp(loc, "POSIX") ||
	    strchr(loc, '/') || strlen(loc) >= sizeof(name))
		return;
	ss_add(s, startset_resolve(s->m, "/usr/lib/locale/locale-archive",
				   MODEL_ROOT_INO), false);
	/* the codeset lower-cased without '-' and '_' */
	dot = strchr(loc, '.');
	for (const char *p = loc; *p; p++) {
		if (dot && p > dot && (*p == '-' || *p == '_'))
			continue;
		name[n++] = dot && p > dot ? (char)tolower((unsigned char)*p)
					   : *p;
	}
	name[n] = '\0';
	snprintf(path, sizeof(path), "/usr/lib/locale/%s", name);
	ss_add_dir(s, path, 1u << 20);
}

static void ss_elf(struct startset *s, uint32_t ino)
{
	const struct model_inode *in = &s->m->inodes[ino];
	struct ss_file f = { .s = s, .ino = ino };
	struct elf_deps d = { 0 };
	struct lp_err err = { 0 };
	char origin[PATH_MAX];
	int r;

	r = elf_deps_read(ss_read, &f, in->size, &d, &err);
	if (r == -ENOEXEC)
		return;
	if (r < 0) {
		s->st.bad++;
		lp_debug("inode %u: %s", ino, err.msg);
		return;
	}
	if (model_path(s->m, in->parent, origin, sizeof(origin)) < 0)
		origin[0] = '\0';
	if (!s->triplet)
		s->triplet = elf_machine_triplet(d.machine);
	if (d.interp)
		ss_add(s, startset_resolve(s->m, d.interp, MODEL_ROOT_INO),
		       true);
	if (d.n_needed && !s->ld_cache) {
		s->ld_cache = true;
		ss_add(s, startset_resolve(s->m, "/etc/ld.so.cache",
					   MODEL_ROOT_INO), false);
		ss_libc_data(s);
	}
	for (uint32_t i = 0; i < d.n_needed; i++) {
		ss_add(s, ss_lib(s, &d, origin, d.needed[i]), true);
		/* OpenSSL reads its configuration as it loads */
		if (!strncmp(d.needed[i], "libcrypto.so", 12) &&
		    !s->ssl_conf) {
			s->ssl_conf = true;
			ss_add(s, startset_resolve(s->m,
						   "/usr/lib/ssl/openssl.cnf",
						   MODEL_ROOT_INO), false);
			ss_add(s, startset_resolve(s->m, "/etc/ssl/openssl.cnf",
						   MODEL_ROOT_INO), false);
		}
	}
	elf_deps_release(&d);
}

/* ---- Python: the modules a program imports ---- */

static void ss_examine(struct startset *s, uint32_t ino, const char *pkg);

/* the file entry name in directory dir, symlinks followed */
static uint32_t ss_lookup(const struct startset *s, uint32_t dir,
			  const char *name)
{
	uint32_t ino = model_lookup(s->m, dir, name);
	char path[PATH_MAX];
	size_t dl;

	if (!ino || !S_ISLNK(s->m->inodes[ino].mode))
		return ino;
	if (model_path(s->m, dir, path, sizeof(path)) < 0)
		return 0;
	dl = strlen(path);
	if (dl + 1 + strlen(name) >= sizeof(path))
		return 0;
	path[dl] = '/';
	strcpy(path + dl + 1, name);
	return startset_resolve(s->m, path, MODEL_ROOT_INO);
}

static bool ss_isdir(const struct startset *s, uint32_t ino)
{
	return ino && S_ISDIR(s->m->inodes[ino].mode);
}

static bool ss_isreg(const struct startset *s, uint32_t ino)
{
	return ino && S_ISREG(s->m->inodes[ino].mode);
}

/* a module's source in dir (stem "x" of x.py, or "__init__"): its
 * compiled form in __pycache__ when there is one (what the import reads) */
static uint32_t ss_py_add_src(struct startset *s, uint32_t dir,
			      const char *stem, uint32_t src, const char *pkg)
{
	char pyc[NAME_MAX + 1];
	uint32_t c = 0;
	int n = snprintf(pyc, sizeof(pyc), "%s.%s.pyc", stem, s->py_tag);

	if (n > 0 && (size_t)n < sizeof(pyc))
		c = ss_lookup(s, ss_lookup(s, dir, "__pycache__"), pyc);
	if (!ss_isreg(s, c))
		c = src;
	ss_add_ex(s, c, true, pkg);
	return c;
}

/* 3.11+ built-in (frozen) start-up modules: nothing on disk is read */
static bool ss_py_frozen(const char *name)
{
	static const char *const frozen[] = {
		"abc", "codecs", "io", "_collections_abc", "_sitebuiltins",
		"genericpath", "ntpath", "posixpath", "os", "site", "stat",
		"importlib.util", "importlib.machinery", "runpy", "zipimport",
		"importlib._bootstrap", "importlib._bootstrap_external",
	};

	for (size_t i = 0; i < ARRAY_SIZE(frozen); i++)
		if (!strcmp(name, frozen[i]))
			return true;
	return false;
}

static uint32_t str_hash(const char *p)
{
	uint32_t h = 2166136261u;

	while (*p)
		h = (h ^ (uint8_t)*p++) * 16777619u;
	return h;
}

/*
 * Module name (dotted) as the import system finds it: in its parent
 * package's directory, else along sys.path; a package (its __init__), an
 * extension module, a source module (through its .pyc), or a namespace
 * package.  Its file is added to the next level.  Each name is looked up
 * once.  NULL: not found, or too many names.
 */
static struct ss_pymod *ss_py_find(struct startset *s, const char *name)
{
	const uint32_t cap = 2 * PY_MAX_MODULES;
	const char *dot = strrchr(name, '.'), *comp = dot ? dot + 1 : name;
	struct ss_pymod *e, *parent = NULL;
	const uint32_t *dirs = s->py_path;
	uint32_t n_dirs = s->n_py_path, ns = 0, h;
	char buf[NAME_MAX + 1];

	for (h = str_hash(name) % cap; s->mods[h].name; h = (h + 1) % cap)
		if (!strcmp(s->mods[h].name, name)) {
			e = &s->mods[h];
			/* imported again: perhaps earlier than before */
			if (e->ino && s->py_phase)
				ss_py_rekey(s, e->ino);
			return e->found ? e : NULL;
		}
	if (s->n_mods >= PY_MAX_MODULES || strlen(comp) + 32 > sizeof(buf))
		return NULL;
	if (dot) {
		char pname[PY_MAX_NAME];
		size_t pl = (size_t)(dot - name);

		if (pl >= sizeof(pname))
			return NULL;
		memcpy(pname, name, pl);
		pname[pl] = '\0';
		parent = ss_py_find(s, pname);
		if (!parent || !parent->dir)
			return NULL;
		dirs = &parent->dir;
		n_dirs = 1;
	}
	/* a free slot (the parent's lookup may have taken the first one) */
	for (h = str_hash(name) % cap; s->mods[h].name; h = (h + 1) % cap)
		;
	e = &s->mods[h];
	e->name = lp_xstrdup(name);
	s->n_mods++;
	if (s->py_frozen && ss_py_frozen(name)) {
		e->found = true;
		return e;
	}
	for (uint32_t i = 0; i < n_dirs && !e->found; i++) {
		uint32_t d = dirs[i], c = ss_lookup(s, d, comp);
		const char *const ext[] = { "%s.%s-%s.so", "%s.abi3.so",
					    "%s.so" };

		if (ss_isdir(s, c)) {
			uint32_t init = ss_lookup(s, c, "__init__.py");

			if (ss_isreg(s, init)) {
				e->ino = ss_py_add_src(s, c, "__init__", init,
						       name);
				e->dir = c;
				e->found = true;
				break;
			}
			if (!ns)
				ns = c;
		}
		for (size_t k = 0; k < ARRAY_SIZE(ext) && !e->found; k++) {
			uint32_t so;

			if (!k && !s->triplet)
				continue;
			snprintf(buf, sizeof(buf), ext[k], comp,
				 s->py_tag, s->triplet ? s->triplet : "");
			so = ss_lookup(s, d, buf);
			if (ss_isreg(s, so)) {
				ss_add(s, so, true);
				e->ino = so;
				e->found = true;
			}
		}
		if (e->found)
			break;
		snprintf(buf, sizeof(buf), "%s.py", comp);
		c = ss_lookup(s, d, buf);
		if (ss_isreg(s, c)) {
			char pkg[PY_MAX_NAME];
			size_t pl = dot ? (size_t)(dot - name) : 0;

			memcpy(pkg, name, pl);
			pkg[pl] = '\0';
			e->ino = ss_py_add_src(s, d, comp, c, pkg);
			e->found = true;
		}
	}
	if (!e->found && ns) {
		e->dir = ns;
		e->found = true;
	}
	if (e->found)
		s->st.modules++;
	return e->found ? e : NULL;
}

/* "import a.b.c" imports a, a.b and a.b.c */
static struct ss_pymod *ss_py_import(struct startset *s, const char *name)
{
	char part[PY_MAX_NAME];
	size_t len = strlen(name);
	struct ss_pymod *e = NULL;

	if (!len || len >= sizeof(part))
		return NULL;
	for (size_t i = 0; i <= len; i++)
		if (i == len || name[i] == '.') {
			memcpy(part, name, i);
			part[i] = '\0';
			if (!(e = ss_py_find(s, part)))
				return NULL;
		}
	return e;
}

/* one import statement of a module of package pkg */
static void ss_py_stmt(struct startset *s, const char *pkg,
		       const struct py_import *im)
{
	char full[PY_MAX_NAME], sub[PY_MAX_NAME];
	struct ss_pymod *e;
	size_t bl = strlen(pkg);

	if (im->level) {
		/* from pkg up level - 1 packages */
		for (uint32_t up = 1; up < im->level; up++) {
			const char *d = memrchr(pkg, '.', bl);

			if (!d)
				return;
			bl = (size_t)(d - pkg);
		}
		if (!bl)
			return; /* relative import outside a package */
		if (snprintf(full, sizeof(full), "%.*s%s%s", (int)bl, pkg,
			     im->name[0] ? "." : "",
			     im->name) >= (int)sizeof(full))
			return;
	} else {
		if (snprintf(full, sizeof(full), "%s", im->name) >=
		    (int)sizeof(full))
			return;
	}
	e = ss_py_import(s, full);
	if (!e || !e->dir)
		return;
	/* "from package import name": name may be a submodule */
	for (uint32_t i = 0; i < im->n_from; i++)
		if (snprintf(sub, sizeof(sub), "%s.%s", full, im->from[i]) <
		    (int)sizeof(sub))
			ss_py_find(s, sub);
}

static void ss_py_imports(struct startset *s, const struct py_imports *imps,
			  const char *pkg)
{
	for (uint32_t i = 0; i < imps->n; i++)
		ss_py_stmt(s, pkg, &imps->v[i]);
}

/* a module's file, compiled or source, read for its imports */
static void ss_py_examine(struct startset *s, uint32_t ino, const char *pkg)
{
	const struct model_inode *in = &s->m->inodes[ino];
	const char *name = model_str(s->m, in->name);
	size_t nl = strlen(name);
	struct py_imports imps = { 0 };
	struct lp_err err = { 0 };
	_cleanup_free_ char *buf = NULL;
	int64_t got;
	int r = 0;

	if (in->size > PY_MAX_FILE)
		return;
	buf = lp_xmalloc((size_t)in->size + 1);
	got = s->io.read(s->io.arg, ino, 0, buf, (size_t)in->size);
	if (got != (int64_t)in->size)
		return;
	if (nl > 4 && !strcmp(name + nl - 4, ".pyc"))
		r = py_pyc_imports(buf, (size_t)got, &imps, &err);
	else
		r = py_source_imports(buf, (size_t)got, &imps);
	if (r < 0) {
		if (r != -ENOEXEC) {
			s->st.bad++;
			lp_debug("inode %u: %s", ino, err.msg);
		}
		return;
	}
	ss_py_imports(s, &imps, pkg);
	py_imports_release(&imps);
}

/* the interpreter's options: -c, -m, the script, -S, -E, -I */
static void ss_py_args(struct startset *s, uint32_t first)
{
	for (uint32_t i = first; i < s->argc; i++) {
		const char *a = s->argv[i];

		if (a[0] != '-' || !a[1]) {
			if (a[0] != '-')
				s->py_script = startset_resolve(s->m, a,
								s->cwd);
			return;
		}
		if (!strcmp(a, "--")) {
			if (i + 1 < s->argc)
				s->py_script = startset_resolve(
					s->m, s->argv[i + 1], s->cwd);
			return;
		}
		if (a[1] == '-') {
			/* --version, --help, ...; one takes a value */
			if (!strcmp(a, "--check-hash-based-pycs"))
				i++;
			continue;
		}
		for (const char *p = a + 1; *p; p++) {
			const char *val = p[1] ? p + 1
				: i + 1 < s->argc ? s->argv[i + 1] : NULL;

			if (*p == 'c' || *p == 'm') {
				if (val)
					*(*p == 'c' ? &s->py_code
						    : &s->py_main) =
						lp_xstrdup(val);
				return;
			}
			if (*p == 'W' || *p == 'X') {
				i += !p[1];
				break;
			}
			if (*p == 'S')
				s->py_nosite = true;
			else if (*p == 'E' || *p == 'I')
				s->py_noenv = true;
		}
	}
}

static void ss_py_path_add(struct startset *s, const char *path,
			   uint32_t from)
{
	uint32_t d = startset_resolve(s->m, path, from);

	if (!ss_isdir(s, d) || s->n_py_path >= PY_MAX_PATH)
		return;
	for (uint32_t i = 0; i < s->n_py_path; i++)
		if (s->py_path[i] == d)
			return;
	s->py_path[s->n_py_path++] = d;
}

/* the extension modules' platform ("x86_64-linux-gnu") from their names
 * in lib-dynload, before any ELF file was read */
static void ss_py_triplet(struct startset *s, uint32_t dynload)
{
	static const char *const known[] = {
		"x86_64-linux-gnu", "aarch64-linux-gnu", "i386-linux-gnu",
		"arm-linux-gnueabihf", "powerpc64le-linux-gnu",
		"s390x-linux-gnu", "riscv64-linux-gnu", "x86_64-linux-musl",
		"aarch64-linux-musl",
	};
	const struct model_inode *d = model_inode(s->m, dynload);
	size_t tl = strlen(s->py_tag);

	for (uint32_t i = 0; d && S_ISDIR(d->mode) && i < d->count; i++) {
		const char *n = model_str(s->m,
					  s->m->dirents[d->first + i].name);
		const char *t = strstr(n, s->py_tag);

		if (!t || t[tl] != '-')
			continue;
		for (size_t k = 0; k < ARRAY_SIZE(known); k++) {
			size_t kl = strlen(known[k]);

			if (!strncmp(t + tl + 1, known[k], kl) &&
			    !strcmp(t + tl + 1 + kl, ".so")) {
				s->triplet = known[k];
				return;
			}
		}
	}
}

/*
 * A virtual environment's site-packages: the interpreter as it was named
 * (/opt/venv/bin/python, a link to the real one) has pyvenv.cfg next to
 * it or in the directory above.
 */
static void ss_py_venv(struct startset *s, unsigned major, unsigned minor)
{
	char root[PATH_MAX], path[PATH_MAX + 64];
	char *slash;

	snprintf(root, sizeof(root), "%s", s->py_exe);
	for (int up = 0; up < 2; up++) {
		if (!(slash = strrchr(root, '/')))
			return;
		*slash = '\0';
		snprintf(path, sizeof(path), "%s/pyvenv.cfg", root);
		if (ss_isreg(s, startset_resolve(s->m, path, s->cwd))) {
			snprintf(path, sizeof(path),
				 "%s/lib/python%u.%u/site-packages", root,
				 major, minor);
			ss_py_path_add(s, path, s->cwd);
			return;
		}
	}
}

/* the version, its stdlib and sys.path: false if they are not found */
static bool ss_py_setup(struct startset *s)
{
	char path[PATH_MAX], prefix[PATH_MAX], dir[PATH_MAX + 64];
	const char *name, *ver;
	char *slash;
	unsigned major, minor;
	uint32_t lib;

	if (model_path(s->m, s->py_prog, path, sizeof(path)) < 0)
		return false;
	name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	ver = name + 6;
	memcpy(prefix, path, (size_t)(name - path));
	prefix[name - path] = '\0';
	/* "<prefix>/bin/" -> "<prefix>" */
	if ((slash = strrchr(prefix, '/')))
		*slash = '\0';
	if ((slash = strrchr(prefix, '/')))
		*slash = '\0';
	snprintf(dir, sizeof(dir), "%s/lib", prefix);
	lib = startset_resolve(s->m, dir, MODEL_ROOT_INO);
	if (sscanf(ver, "%u.%u", &major, &minor) != 2) {
		/* "python3": the stdlib directory says which */
		const struct model_inode *l = model_inode(s->m, lib);

		major = minor = 0;
		for (uint32_t i = 0; l && S_ISDIR(l->mode) && i < l->count;
		     i++) {
			const struct model_dirent *de =
				&s->m->dirents[l->first + i];
			unsigned a, b;
			char end;

			if (sscanf(model_str(s->m, de->name), "python%u.%u%c",
				   &a, &b, &end) == 2 &&
			    ss_isreg(s, ss_lookup(s, de->ino, "os.py")) &&
			    (a > major || (a == major && b > minor))) {
				major = a;
				minor = b;
			}
		}
	}
	if (major != 3 || minor < 8 || minor > 99)
		return false;
	snprintf(s->py_tag, sizeof(s->py_tag), "cpython-%u%u", major, minor);
	s->py_frozen = minor >= 11;
	snprintf(dir, sizeof(dir), "%s/lib/python%u.%u/os.py", prefix, major,
		 minor);
	if (!ss_isreg(s, startset_resolve(s->m, dir, MODEL_ROOT_INO)))
		return false;
	/* sys.path: the script's directory (the working directory for -c
	 * and -m), PYTHONPATH, the stdlib, its extension modules, the site
	 * directories (Debian's and python.org's) */
	if (s->py_script)
		s->py_path[s->n_py_path++] =
			s->m->inodes[s->py_script].parent;
	else
		s->py_path[s->n_py_path++] = s->cwd;
	for (const char *p = s->py_noenv ? NULL : s->pythonpath; p && *p;) {
		const char *end = strchrnul(p, ':');

		snprintf(dir, sizeof(dir), "%.*s", (int)(end - p), p);
		if (*dir)
			ss_py_path_add(s, dir, s->cwd);
		p = *end ? end + 1 : end;
	}
	snprintf(dir, sizeof(dir), "%s/lib/python%u.%u", prefix, major, minor);
	ss_py_path_add(s, dir, MODEL_ROOT_INO);
	snprintf(dir, sizeof(dir), "%s/lib/python%u.%u/lib-dynload", prefix,
		 major, minor);
	ss_py_path_add(s, dir, MODEL_ROOT_INO);
	if (!s->triplet)
		ss_py_triplet(s, startset_resolve(s->m, dir, MODEL_ROOT_INO));
	if (s->py_nosite)
		return true;
	{
		uint32_t first_site = s->n_py_path;
		const char *const site[] = {
			"/usr/local/lib/python%u.%u/dist-packages",
			"%s/lib/python3/dist-packages",
			"%s/lib/python%u.%u/dist-packages",
			"%s/lib/python%u.%u/site-packages",
		};

		ss_py_venv(s, major, minor);
		for (size_t i = 0; i < ARRAY_SIZE(site); i++) {
			if (i == 0)
				snprintf(dir, sizeof(dir), site[i], major,
					 minor);
			else if (i == 1)
				snprintf(dir, sizeof(dir), site[i], prefix);
			else
				snprintf(dir, sizeof(dir), site[i], prefix,
					 major, minor);
			ss_py_path_add(s, dir, MODEL_ROOT_INO);
		}
		/* site reads every .pth file of its directories */
		for (uint32_t i = first_site; i < s->n_py_path; i++) {
			const struct model_inode *d =
				&s->m->inodes[s->py_path[i]];

			for (uint32_t k = 0; k < d->count; k++) {
				const struct model_dirent *de =
					&s->m->dirents[d->first + k];
				const char *n = model_str(s->m, de->name);
				size_t nl = strlen(n);

				if (nl > 4 && !strcmp(n + nl - 4, ".pth"))
					ss_add(s, de->ino, false);
			}
		}
	}
	return true;
}

/* two items of the queue (indexes of pq) in key order */
static int ss_key_cmp(const void *a, const void *b, void *arg)
{
	const struct startset *s = arg;

	return ss_item_cmp(&s->pq[*(const uint32_t *)a],
			   &s->pq[*(const uint32_t *)b]);
}

static bool ss_py_pending(const struct startset *s)
{
	return s->qh < s->qn;
}

/* the debug line of a batch fetched: its files, its size, the time */
static void ss_batch_debug(const struct startset *s, const uint32_t *ino,
			   uint32_t n, uint64_t bytes, uint64_t t0)
{
	char names[PY_BATCH_MAX_FILES * 64] = "";
	size_t len = 0;

	for (uint32_t i = 0; i < n && len < sizeof(names) - 1; i++) {
		char path[PATH_MAX];
		const char *base;

		if (model_path(s->m, ino[i], path, sizeof(path)) < 0)
			continue;
		base = strrchr(path, '/');
		len += (size_t)snprintf(names + len, sizeof(names) - len,
					"%s%s", len ? " " : "",
					base ? base + 1 : path);
	}
	lp_debug("batch of %u files (%s; %llu KiB) fetched in %.0f ms", n,
		 names, (unsigned long long)(bytes >> 10),
		 (double)(lp_now_ns() - t0) / 1e6);
}

/* does queued item q lie within STARTSET_NEAR_GAP of batch item b? */
static bool ss_near(const struct ss_item *b, const struct ss_item *q)
{
	return b->blob != UINT32_MAX && q->blob == b->blob &&
	       q->lo <= b->hi + STARTSET_NEAR_GAP &&
	       b->lo <= q->hi + STARTSET_NEAR_GAP;
}

/*
 * Adds to the batch order[first..n_order) (its files ino[0..n), bytes) the
 * queued files stored next to one of them, in key order, within
 * PY_BATCH_MAX_FILES / PY_BATCH_MAX_BYTES: the io's fetch merges them
 * into the same request (a package's modules sit together in the layer),
 * so they cost the registry no request of their own later.  Called with
 * the lock held; returns the batch's file count.
 */
static uint32_t ss_py_neighbours(struct startset *s, uint32_t first,
				 uint32_t *ino, uint32_t n, uint64_t bytes)
{
	uint32_t keep = s->qh;

	for (uint32_t j = s->qh; j < s->qn; j++) {
		uint32_t i = s->qi[j];
		uint64_t sz = model_file_stored(s->m, s->pq[i].ino);
		bool take = false;

		for (uint32_t b = first; !take && b < s->n_order &&
		     n < PY_BATCH_MAX_FILES &&
		     bytes + sz <= PY_BATCH_MAX_BYTES; b++)
			take = ss_near(&s->pq[s->order[b]], &s->pq[i]);
		if (!take) {
			s->qi[keep++] = i; /* stays queued, in order */
			continue;
		}
		ino[n++] = s->pq[i].ino;
		bytes += sz;
		s->order[s->n_order++] = i;
	}
	/* the taken ones are out of qi[qh..qn) now: it is shorter */
	s->qn = keep;
	return n;
}

/* a fetcher of the Python phase: batches from the queue's head */
static void *ss_py_fetcher(void *arg)
{
	struct startset *s = arg;
	uint32_t ino[PY_BATCH_MAX_FILES];

	pthread_mutex_lock(&s->lock);
	for (;;) {
		uint32_t first, n = 0;
		uint64_t bytes = 0;

		while (!ss_py_pending(s) && !s->finished)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->finished)
			break;
		/* in key order: the program, its loader and libraries,
		 * then the modules as Python meets them (an extension
		 * module's libraries where it is imported); at most
		 * PY_BATCH_BYTES unless one file is larger: a small file
		 * does not wait for a large one */
		qsort_r(s->qi + s->qh, s->qn - s->qh, sizeof(*s->qi),
			ss_key_cmp, s);
		first = s->n_order;
		while (s->qh < s->qn && n < PY_BATCH_FILES) {
			uint32_t i = s->qi[s->qh];
			uint64_t sz = model_file_stored(s->m, s->pq[i].ino);

			if (n && bytes + sz > PY_BATCH_BYTES)
				break;
			ino[n++] = s->pq[i].ino;
			bytes += sz;
			s->order[s->n_order++] = i;
			s->qh++;
		}
		n = ss_py_neighbours(s, first, ino, n, bytes);
		s->inflight++;
		s->st.levels++;
		pthread_mutex_unlock(&s->lock);
		{
			uint64_t t0 = lp_now_ns();

			s->io.fetch(s->io.arg, ino, n);
			if (LP_LOG_DEBUG <= lp_log_max)
				ss_batch_debug(s, ino, n, bytes, t0);
		}
		pthread_mutex_lock(&s->lock);
		s->done[s->done_n][0] = first;
		s->done[s->done_n++][1] = n;
		s->inflight--;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ss_examine(); a slow one is logged (it holds up the queue) */
static void ss_examine_timed(struct startset *s, uint32_t ino,
			     const char *pkg)
{
	uint64_t t0;
	double ms;

	if (LP_LOG_DEBUG > lp_log_max) {
		ss_examine(s, ino, pkg);
		return;
	}
	t0 = lp_now_ns();
	ss_examine(s, ino, pkg);
	ms = (double)(lp_now_ns() - t0) / 1e6;
	if (ms >= 10) {
		char path[PATH_MAX];

		if (model_path(s->m, ino, path, sizeof(path)) < 0)
			path[0] = '\0';
		lp_debug("%s read for more in %.0f ms", path, ms);
	}
}

static bool ss_stopped(const bool *stop)
{
	return stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
}

/* The queue until it is empty: read each fetched batch, append what it
 * imports.  Then what is left unfetched (stopped) leaves the set. */
static void ss_py_pipeline(struct startset *s, const bool *stop)
{
	pthread_t th[STARTSET_PY_FETCHERS];
	unsigned started = 0;

	/* stopped already: nothing is fetched (a fetcher would take the
	 * queue's first batch before this thread looks at stop) */
	while (!ss_stopped(stop) && started < STARTSET_PY_FETCHERS &&
	       lp_thread_create(&th[started], NULL, ss_py_fetcher, s) == 0)
		started++;
	pthread_mutex_lock(&s->lock);
	while (started && !ss_stopped(stop)) {
		uint32_t first, n;

		if (s->done_head == s->done_n) {
			if (!s->inflight && !ss_py_pending(s))
				break;
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		first = s->done[s->done_head][0];
		n = s->done[s->done_head++][1];
		pthread_mutex_unlock(&s->lock);
		for (uint32_t i = first; i < first + n && !ss_stopped(stop);
		     i++) {
			struct ss_item *it = &s->pq[s->order[i]];

			s->depth = it->depth;
			s->key = it->key;
			s->n_found = 0;
			if (it->examine)
				ss_examine_timed(s, it->ino, it->pkg);
		}
		pthread_mutex_lock(&s->lock);
	}
	s->finished = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (unsigned t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	/* not fetched (stopped, or no thread): not in the set */
	for (uint32_t i = s->qh; i < s->qn; i++)
		ss_unadd(s, s->pq[s->qi[i]].ino);
	for (uint32_t i = 0; i < s->pq_n; i++)
		free(TAKE_PTR(s->pq[i].pkg));
}

static void ss_py_free_queue(struct startset *s)
{
	free(TAKE_PTR(s->pq));
	free(TAKE_PTR(s->done));
	free(TAKE_PTR(s->order));
	free(TAKE_PTR(s->qi));
}

/* the Python phase's queue and sys.path: false if this is no CPython
 * with its stdlib (tried once) */
static bool ss_py_begin(struct startset *s)
{
	if (!s->py_prog || s->pq || s->py_tried)
		return false;
	s->py_tried = true;
	s->mods = lp_xcalloc(2 * PY_MAX_MODULES, sizeof(*s->mods));
	s->pq = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->pq));
	s->done = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->done));
	s->order = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->order));
	s->qi = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->qi));
	s->py_phase = true;
	s->phase_files = 0;
	s->depth = 0;
	if (ss_py_setup(s))
		return true;
	s->py_phase = false;
	ss_py_free_queue(s);
	return false;
}

/* what the interpreter imports first: the start-up modules, -m's module,
 * -c's imports, the script's (read now if it is in, else queued) */
static void ss_py_seed(struct startset *s, bool script_in)
{
	struct py_imports imps = { 0 };

	ss_py_import(s, "encodings");
	ss_py_import(s, "encodings.utf_8");
	/* the C library's codec table: Python asks it for the locale's
	 * encoding */
	if (s->triplet) {
		char path[128];

		snprintf(path, sizeof(path),
			 "/usr/lib/%s/gconv/gconv-modules.cache", s->triplet);
		ss_add(s, startset_resolve(s->m, path, MODEL_ROOT_INO), false);
	}
	if (!s->py_nosite) {
		ss_py_import(s, "site");
		ss_py_import(s, "sitecustomize");
		ss_py_import(s, "usercustomize");
	}
	if (s->py_main) {
		struct ss_pymod *e;

		ss_py_import(s, "runpy");
		e = ss_py_import(s, s->py_main);
		/* "-m package" runs the package's __main__ */
		if (e && e->dir) {
			char sub[PY_MAX_NAME];

			if (snprintf(sub, sizeof(sub), "%s.__main__",
				     s->py_main) < (int)sizeof(sub))
				ss_py_find(s, sub);
		}
	}
	if (s->py_code &&
	    py_source_imports(s->py_code, strlen(s->py_code), &imps) == 0) {
		ss_py_imports(s, &imps, "");
		py_imports_release(&imps);
	}
	if (!ss_isreg(s, s->py_script))
		return;
	if (script_in)
		ss_py_examine(s, s->py_script, "");
	else
		ss_add_ex(s, s->py_script, true, "");
}

/* the queue run; a library opened later is looked at with a budget of
 * its own */
static void ss_py_run(struct startset *s, const bool *stop)
{
	ss_py_pipeline(s, stop);
	s->py_phase = false;
	s->phase_files = 0;
	ss_py_free_queue(s);
}

static void ss_examine(struct startset *s, uint32_t ino, const char *pkg)
{
	char head[4];
	int64_t got;

	if (pkg) {
		ss_py_examine(s, ino, pkg);
		return;
	}
	got = s->io.read(s->io.arg, ino, 0, head, sizeof(head));
	if (got >= 2 && head[0] == '#' && head[1] == '!')
		ss_script(s, ino);
	else if (got == 4 && !memcmp(head, "\177ELF", 4))
		ss_elf(s, ino);
}

static const char *env_get(const struct startset_opts *o, const char *name)
{
	size_t nl = strlen(name);

	for (uint32_t i = 0; i < o->n_env; i++)
		if (o->env[i] && !strncmp(o->env[i], name, nl) &&
		    o->env[i][nl] == '=')
			return o->env[i] + nl + 1;
	return NULL;
}

int startset_new(const struct model *m, const struct startset_opts *o,
		 const struct startset_io *io, struct startset **ret,
		 struct lp_err *err)
{
	struct startset *s;
	const char *path;

	if (!o->argc || !o->argv[0] || !o->argv[0][0])
		return lp_err_set(err, EINVAL, "no program to start");
	s = lp_xcalloc(1, sizeof(*s));
	s->m = m;
	s->io = *io;
	s->max_bytes = o->max_bytes ? o->max_bytes
				    : STARTSET_DEFAULT_MAX_BYTES;
	path = env_get(o, "PATH");
	s->path_var = lp_xstrdup(path ? path : STARTSET_DEFAULT_PATH);
	s->cwd = MODEL_ROOT_INO;
	if (o->workdir && *o->workdir) {
		uint32_t cwd = startset_resolve(m, o->workdir, MODEL_ROOT_INO);

		if (cwd && S_ISDIR(m->inodes[cwd].mode))
			s->cwd = cwd;
	}
	s->argv = lp_xcalloc(o->argc + 1, sizeof(*s->argv));
	for (uint32_t i = 0; i < o->argc; i++)
		s->argv[i] = lp_xstrdup(o->argv[i] ? o->argv[i] : "");
	s->argc = o->argc;
	s->seen = lp_xcalloc(m->n_inodes / 8 + 1, 1);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	path = env_get(o, "PYTHONPATH");
	s->pythonpath = path ? lp_xstrdup(path) : NULL;
	path = env_get(o, "TZ");
	s->tz = path ? lp_xstrdup(path) : NULL;
	if (!(path = env_get(o, "LC_ALL")) || !*path)
		if (!(path = env_get(o, "LC_CTYPE")) || !*path)
			path = env_get(o, "LANG");
	s->locale = path ? lp_xstrdup(path) : NULL;
	s->level = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->level));
	s->next = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->next));
	s->exam = lp_xcalloc(STARTSET_PY_MAX_FILES, sizeof(*s->exam));
	*ret = s;
	return 0;
}

void startset_free(struct startset *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	free(s->path_var);
	free(s->seen);
	free(s->level);
	free(s->next);
	free(s->exam);
	for (uint32_t i = 0; s->mods && i < 2 * PY_MAX_MODULES; i++)
		free(s->mods[i].name);
	free(s->mods);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->pythonpath);
	free(s->locale);
	free(s->tz);
	free(s->py_code);
	free(s->py_main);
	free(s);
}

const struct startset_stats *startset_stats(const struct startset *s)
{
	return &s->st;
}

bool startset_predicted(const struct startset *s, uint32_t ino)
{
	return ino < s->m->n_inodes &&
	       (s->seen[ino / 8] & (1u << (ino % 8)));
}

/* fetches the pending level, reads it for the next, until none is left */
static void ss_levels(struct startset *s, const bool *stop,
		      uint32_t max_levels)
{
	uint32_t levels = 0;

	while (s->n_next && levels < max_levels &&
	       !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
		uint32_t *t = s->level, n_exam = s->n_exam;
		_cleanup_free_ struct ss_exam *exam = NULL;

		s->level = s->next;
		s->n_level = s->n_next;
		s->next = t;
		s->n_next = 0;
		exam = lp_xmalloc((n_exam ? n_exam : 1) * sizeof(*exam));
		memcpy(exam, s->exam, n_exam * sizeof(*exam));
		s->n_exam = 0;
		uint64_t t0 = lp_now_ns(), t1;

		levels++;
		s->st.levels++;
		s->io.fetch(s->io.arg, s->level, s->n_level);
		t1 = lp_now_ns();
		for (uint32_t i = 0; i < n_exam; i++) {
			ss_examine(s, exam[i].ino, exam[i].pkg);
			free(exam[i].pkg);
		}
		lp_debug("level %u: %u files fetched in %.0f ms, %u read in "
			 "%.0f ms", s->st.levels, s->n_level,
			 (double)(t1 - t0) / 1e6, n_exam,
			 (double)(lp_now_ns() - t1) / 1e6);
	}
	/* cut off (the level limit or stopped): what is left is not
	 * fetched, so not in the set, counted or marked */
	for (uint32_t i = 0; i < s->n_next; i++)
		ss_unadd(s, s->next[i]);
	for (uint32_t i = 0; i < s->n_exam; i++)
		free(s->exam[i].pkg);
	s->n_next = s->n_exam = 0;
}

/* what the container runtime reads in the image before the program
 * starts: the user and group databases (the user's name, home and
 * groups) */
static void ss_add_runtime(struct startset *s)
{
	ss_add(s, startset_resolve(s->m, "/etc/passwd", MODEL_ROOT_INO),
	       false);
	ss_add(s, startset_resolve(s->m, "/etc/group", MODEL_ROOT_INO),
	       false);
}

/*
 * The dynamic loader and the C library, ahead of the program's dynamic
 * section (a CPython interpreter is a dynamic program): at the usual
 * loader path, the C library next to it or in the platform's directory.
 */
static void ss_add_libc(struct startset *s)
{
	static const char *const loaders[] = {
		"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1",
		"/lib/ld-linux-armhf.so.3", "/lib64/ld64.so.2",
		"/lib/ld64.so.1", "/lib/ld-linux-riscv64-lp64d.so.1",
		"/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1",
	};
	char path[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(loaders); i++) {
		uint32_t ld = startset_resolve(s->m, loaders[i], MODEL_ROOT_INO);
		uint32_t libc = 0;

		if (!ss_isreg(s, ld))
			continue;
		ss_add(s, ld, true);
		if (strstr(loaders[i], "musl"))
			return; /* the loader is the C library */
		libc = ss_lookup(s, s->m->inodes[ld].parent, "libc.so.6");
		if (!ss_isreg(s, libc) && s->triplet) {
			snprintf(path, sizeof(path), "/usr/lib/%s/libc.so.6",
				 s->triplet);
			libc = startset_resolve(s->m, path, MODEL_ROOT_INO);
		}
		ss_add(s, libc, true);
		return;
	}
}

/* a file an argument names: the script an interpreter runs */
static void ss_add_args(struct startset *s)
{
	for (uint32_t i = 1; i < s->argc; i++) {
		const char *a = s->argv[i];
		uint32_t ino;

		if (!*a || a[0] == '-' || strlen(a) >= PATH_MAX)
			continue;
		ino = startset_resolve(s->m, a, s->cwd);
		if (ino &&
		    model_file_stored(s->m, ino) <= STARTSET_ARG_MAX_BYTES)
			ss_add(s, ino, true);
	}
}

void startset_run(struct startset *s, const bool *stop)
{
	const struct model *m = s->m;
	uint32_t prog;

	if (m->n_inodes <= MODEL_ROOT_INO)
		return;
	prog = ss_program(s, s->argv[0], s->cwd, s->py_exe);
	if (prog && S_ISREG(m->inodes[prog].mode) &&
	    model_path(m, prog, s->st.program, sizeof(s->st.program)) < 0)
		s->st.program[0] = '\0';
	if (ss_is_python(m, prog)) {
		s->py_prog = prog;
		ss_py_args(s, 1);
	}
	/* a Python program: the interpreter, its libraries and its imports
	 * in one queue from the start (the imports are a chain of small
	 * files: it must not wait for the libraries) */
	if (ss_py_begin(s)) {
		ss_add_runtime(s);
		ss_add(s, prog, true);
		ss_add_libc(s);
		ss_py_seed(s, false); /* the script: before the arguments */
		ss_add_args(s);
		ss_py_run(s, stop);
		return;
	}
	ss_add_runtime(s);
	ss_add(s, prog, true);
	ss_add_args(s);
	ss_levels(s, stop, MAX_LEVELS);
	/* a script run by Python ("#!/usr/bin/env python3") */
	if (ss_py_begin(s)) {
		ss_py_seed(s, true);
		ss_py_run(s, stop);
	}
}

void startset_opened(struct startset *s, uint32_t ino, const bool *stop)
{
	const struct model_inode *in = model_inode(s->m, ino);

	if (!in || !S_ISREG(in->mode) || startset_predicted(s, ino))
		return;
	/* its bytes are being read already: only what it needs is new */
	s->seen[ino / 8] |= (uint8_t)(1u << (ino % 8));
	s->st.opened++;
	ss_examine(s, ino, NULL);
	ss_levels(s, stop, MAX_LEVELS);
}
