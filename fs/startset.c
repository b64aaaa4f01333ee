// SPDX-License-Identifier: Apache-2.0
/*
 * The start files of an image: see startset.h.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LP_MODNAME "startset"
#include "fs/elf.h"
#include "fs/startset.h"

#define MAX_SYMLINKS 40
#define MAX_LEVELS 8

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
	uint32_t *exam, n_exam; /* of next: the ones to read for more */
	struct startset_stats st;
	bool ld_cache;		/* /etc/ld.so.cache added */
};

static bool ss_is_exec(const struct model_inode *in)
{
	return S_ISREG(in->mode) && (in->mode & 0111);
}

/* Adds regular file ino to the next level; examine: read it for more. */
static void ss_add(struct startset *s, uint32_t ino, bool examine)
{
	const struct model_inode *in = model_inode(s->m, ino);
	uint64_t sz;

	if (!in || !S_ISREG(in->mode))
		return;
	if (s->seen[ino / 8] & (1u << (ino % 8)))
		return;
	s->seen[ino / 8] |= (uint8_t)(1u << (ino % 8));
	sz = model_file_stored(s->m, ino);
	if (s->st.files >= STARTSET_MAX_FILES ||
	    sz > s->max_bytes - s->st.bytes) {
		s->st.skipped++;
		return;
	}
	s->st.files++;
	s->st.bytes += sz;
	if (s->io.mark)
		__atomic_fetch_or(&s->io.mark[ino / 8],
				  (uint8_t)(1u << (ino % 8)), __ATOMIC_RELAXED);
	s->next[s->n_next++] = ino;
	if (examine)
		s->exam[s->n_exam++] = ino;
}

/* name through the search path (":"-separated), the first executable
 * regular file */
static uint32_t ss_which(const struct model *m, const char *name,
			 const char *search)
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
			if (ino && ss_is_exec(&m->inodes[ino]))
				return ino;
		}
		search = *end ? end + 1 : end;
	}
	return 0;
}

/* a program name as execvp would find it */
static uint32_t ss_program(const struct startset *s, const char *name, uint32_t cwd)
{
	if (!*name)
		return 0;
	if (strchr(name, '/'))
		return startset_resolve(s->m, name, cwd);
	return ss_which(s->m, name, s->path_var);
}

/* "#!interp [arg]": the interpreter, or env's program */
static void ss_script(struct startset *s, uint32_t ino)
{
	char line[256], *p, *word, *save = NULL;
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
	if (strcmp(strrchr(word, '/') ? strrchr(word, '/') + 1 : word, "env"))
		return;
	while ((word = strtok_r(NULL, " \t", &save)))
		if (word[0] != '-' && !strchr(word, '=')) {
			ss_add(s, ss_which(s->m, word, s->path_var), true);
			break;
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
	if (d.interp)
		ss_add(s, startset_resolve(s->m, d.interp, MODEL_ROOT_INO),
		       true);
	if (d.n_needed && !s->ld_cache) {
		s->ld_cache = true;
		ss_add(s, startset_resolve(s->m, "/etc/ld.so.cache",
					   MODEL_ROOT_INO), false);
	}
	for (uint32_t i = 0; i < d.n_needed; i++)
		ss_add(s, ss_lib(s, &d, origin, d.needed[i]), true);
	elf_deps_release(&d);
}

static void ss_examine(struct startset *s, uint32_t ino)
{
	char head[4];
	int64_t got = s->io.read(s->io.arg, ino, 0, head, sizeof(head));

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
	s->level = lp_xcalloc(STARTSET_MAX_FILES, sizeof(*s->level));
	s->next = lp_xcalloc(STARTSET_MAX_FILES, sizeof(*s->next));
	s->exam = lp_xcalloc(STARTSET_MAX_FILES, sizeof(*s->exam));
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
static void ss_levels(struct startset *s, const bool *stop)
{
	uint32_t levels = 0;

	while (s->n_next && levels < MAX_LEVELS &&
	       !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
		uint32_t *t = s->level, n_exam = s->n_exam;
		_cleanup_free_ uint32_t *exam = NULL;

		s->level = s->next;
		s->n_level = s->n_next;
		s->next = t;
		s->n_next = 0;
		exam = lp_xmalloc((n_exam ? n_exam : 1) * sizeof(*exam));
		memcpy(exam, s->exam, n_exam * sizeof(*exam));
		s->n_exam = 0;
		levels++;
		s->st.levels++;
		s->io.fetch(s->io.arg, s->level, s->n_level);
		for (uint32_t i = 0; i < n_exam; i++)
			ss_examine(s, exam[i]);
	}
	/* cut off (MAX_LEVELS or stopped): what is left is not fetched, so
	 * not in the set, counted or marked */
	for (uint32_t i = 0; i < s->n_next; i++) {
		uint32_t ino = s->next[i];
		uint8_t bit = (uint8_t)(1u << (ino % 8));

		s->seen[ino / 8] &= (uint8_t)~bit;
		if (s->io.mark)
			__atomic_fetch_and(&s->io.mark[ino / 8], (uint8_t)~bit,
					   __ATOMIC_RELAXED);
		s->st.files--;
		s->st.bytes -= model_file_stored(s->m, ino);
	}
	s->n_next = s->n_exam = 0;
}

void startset_run(struct startset *s, const bool *stop)
{
	const struct model *m = s->m;
	uint32_t prog;

	if (m->n_inodes <= MODEL_ROOT_INO)
		return;
	prog = ss_program(s, s->argv[0], s->cwd);
	if (prog && S_ISREG(m->inodes[prog].mode) &&
	    model_path(m, prog, s->st.program, sizeof(s->st.program)) < 0)
		s->st.program[0] = '\0';
	ss_add(s, prog, true);
	/* a file an argument names: the script an interpreter runs */
	for (uint32_t i = 1; i < s->argc; i++) {
		const char *a = s->argv[i];
		uint32_t ino;

		if (!*a || a[0] == '-' || strlen(a) >= PATH_MAX)
			continue;
		ino = startset_resolve(m, a, s->cwd);
		if (ino && model_file_stored(m, ino) <= STARTSET_ARG_MAX_BYTES)
			ss_add(s, ino, true);
	}
	ss_levels(s, stop);
}

void startset_opened(struct startset *s, uint32_t ino, const bool *stop)
{
	const struct model_inode *in = model_inode(s->m, ino);

	if (!in || !S_ISREG(in->mode) || startset_predicted(s, ino))
		return;
	/* its bytes are being read already: only what it needs is new */
	s->seen[ino / 8] |= (uint8_t)(1u << (ino % 8));
	s->st.opened++;
	ss_examine(s, ino);
	ss_levels(s, stop);
}
