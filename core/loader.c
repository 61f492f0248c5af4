#include "loader.h"

#include "errbuf.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "topic.h"

/* Size of the ABI 1.0 descriptor: everything up to and including
 * `settings`. A plugin's struct_size may never be smaller than this, or the
 * host would read 1.0 fields out of bytes the plugin never defined. */
#define KZ_PLUGIN_SIZE_1_0 (offsetof(kz_plugin, settings) + sizeof(void *))
/* The fixed header every descriptor starts with, whatever its ABI. */
#define KZ_PLUGIN_HEADER (offsetof(kz_plugin, name))
/* Entry names probed only to explain a refusal ("built for ABI N"). */
#define KZ_ENTRY_PROBE_MAX 9

struct loader {
    const kz_host *host;
    plugin **v; /* loaded plugins, in load order */
    size_t n, cap;
    /* dlopen handles of refused plugins. They are never closed: dlopen has
     * already run the object's constructors, which may have registered
     * atexit handlers, threads or TLS destructors pointing into its code;
     * unmapping it would turn those into crashes far from the cause. Kept
     * here only so the reason is visible and the handles stay reachable. */
    void **kept;
    size_t nkept, capkept;
};

/* One file being checked: what the refusal line needs. */
typedef struct attempt {
    const char *path; /* as given; printed in the refusal line */
    char stem[256];   /* file name without directory and ".so" */
    char *err;
    size_t errlen;
} attempt;

/* Writes "plugin 'NAME' (PATH): REASON" and returns KZ_EINVAL, so every
 * check can end with `return refuse(a, ...)`. */
static int refuse(const attempt *a, const char *fmt, ...) KZ_PRINTF(2, 3);
static int refuse(const attempt *a, const char *fmt, ...)
{
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    errbuf_set(a->err, a->errlen, "plugin '%s' (%s): %s", a->stem, a->path, reason);
    return KZ_EINVAL;
}

static int ident_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static int has_so_suffix(const char *file)
{
    size_t len = strlen(file);
    return len > 3 && strcmp(file + len - 3, ".so") == 0;
}

/* stem = base name minus a trailing ".so" (truncated if absurdly long; the
 * name check then fails on the mismatch rather than overflowing). */
static void file_stem(const char *path, char *stem, size_t size)
{
    const char *base = base_name(path);
    size_t len = strlen(base);
    if (has_so_suffix(base))
        len -= 3;
    if (len >= size)
        len = size - 1;
    memcpy(stem, base, len);
    stem[len] = '\0';
}

/* ---- the plugin list --------------------------------------------------- */

int loader_new(const kz_host *host, loader **out)
{
    if (out == NULL)
        return KZ_EINVAL;
    loader *l = calloc(1, sizeof *l);
    if (l == NULL)
        return KZ_ENOMEM;
    l->host = host;
    *out = l;
    return KZ_OK;
}

void loader_free(loader *l)
{
    if (l == NULL)
        return;
    /* Reverse order: a plugin loaded later may rely on one loaded earlier. */
    for (size_t i = l->n; i-- > 0;) {
        plugin *p = l->v[i];
        if (p->desc.unload != NULL) {
            log_set_context(p->name, NULL);
            p->desc.unload(p->state);
            log_set_context(NULL, NULL);
        }
        free((char *)p->path);
        free(p);
    }
    free(l->v);
    free(l->kept); /* the handles themselves stay open, see struct loader */
    free(l);
}

size_t loader_count(const loader *l)
{
    return l != NULL ? l->n : 0;
}

const plugin *loader_at(const loader *l, size_t i)
{
    return l != NULL && i < l->n ? l->v[i] : NULL;
}

const plugin *loader_find(const loader *l, const char *name)
{
    if (l == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i]->name, name) == 0)
            return l->v[i];
    return NULL;
}

static const plugin *find_path(const loader *l, const char *path)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i]->path, path) == 0)
            return l->v[i];
    return NULL;
}

/* Room for one more pointer in an array of n: returns the array (moved if
 * it had to grow) or NULL, leaving it untouched, when out of memory. Generic
 * over the element type without casting a T*** to void***. */
static void *grow(void *v, size_t n, size_t *cap)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap != 0 ? *cap * 2 : 8;
    void *nv = realloc(v, ncap * sizeof(void *));
    if (nv != NULL)
        *cap = ncap;
    return nv;
}

/* Remembers a refused plugin's handle. Out of memory only loses the
 * bookkeeping; the handle is still never closed. */
static void keep_handle(loader *l, void *dl)
{
    void **kept = dl != NULL ? grow(l->kept, l->nkept, &l->capkept) : NULL;
    if (kept != NULL) {
        l->kept = kept;
        l->kept[l->nkept++] = dl;
    }
}

/* ---- checks before any plugin code runs --------------------------------- */

/* The directory part of path ("." for a bare file name). */
static void dir_of(const char *path, char *dir, size_t size)
{
    size_t len = (size_t)(base_name(path) - path);
    if (len == 0)
        snprintf(dir, size, ".");
    else /* drop the slash, unless the directory is "/" itself */
        snprintf(dir, size, "%.*s", (int)(len > 1 ? len - 1 : len), path);
}

static int loose(const struct stat *st)
{
    return (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

/* Anyone who can write the file, or replace it in its directory, can run
 * code inside the daemon: both must be writable by their owner only. (A
 * symlink is judged by its target file and the directory it was found in.) */
static int check_permissions(const attempt *a)
{
    struct stat st;
    if (stat(a->path, &st) != 0) {
        int e = errno;
        refuse(a, "cannot open: %s", strerror(e));
        return e == ENOENT ? KZ_ENOTFOUND : KZ_EINVAL;
    }
    if (!S_ISREG(st.st_mode))
        return refuse(a, "not a regular file");
    if (loose(&st))
        return refuse(a, "file is writable by group or others (mode %04o); fix with chmod go-w",
                      (unsigned)(st.st_mode & 07777));
    char dir[4096];
    dir_of(a->path, dir, sizeof dir);
    if (stat(dir, &st) != 0)
        return refuse(a, "cannot stat directory %s: %s", dir, strerror(errno));
    if (loose(&st))
        return refuse(a,
                      "directory %s is writable by group or others (mode %04o); fix with chmod "
                      "go-w",
                      dir, (unsigned)(st.st_mode & 07777));
    return KZ_OK;
}

/* dlopen with RTLD_NOW so a missing symbol fails here and not at the first
 * call, RTLD_LOCAL so plugins cannot interpose on each other. A bare file
 * name would make dlopen search the system library path: prefix "./". */
static int open_object(const attempt *a, void **dl)
{
    char buf[4096];
    const char *p = a->path;
    if (strchr(p, '/') == NULL) {
        snprintf(buf, sizeof buf, "./%s", p);
        p = buf;
    }
    dlerror();
    *dl = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    if (*dl != NULL)
        return KZ_OK;
    const char *why = dlerror();
    return refuse(a, "cannot open: %s; check its dependencies with ldd",
                  why != NULL ? why : "unknown error");
}

/* ---- the descriptor ----------------------------------------------------- */

/* ISO C has no cast from object to function pointer; POSIX guarantees the
 * representation is the same, so copy the bits. */
static kz_plugin_entry_fn as_entry(void *sym)
{
    kz_plugin_entry_fn fn;
    memcpy(&fn, &sym, sizeof fn);
    return fn;
}

static int find_entry(const attempt *a, void *dl, kz_plugin_entry_fn *fn)
{
    void *sym = dlsym(dl, KZ_PLUGIN_ENTRY_NAME);
    if (sym != NULL) {
        *fn = as_entry(sym);
        return KZ_OK;
    }
    /* Only to say why: a plugin for another major is never called. */
    for (int n = 2; n <= KZ_ENTRY_PROBE_MAX; n++) {
        char name[32];
        snprintf(name, sizeof name, "kizuna_plugin_v%d", n);
        if (dlsym(dl, name) != NULL)
            return refuse(a, "built for ABI %d, host has ABI %d.%d — refused", n, KZ_ABI_MAJOR,
                          KZ_ABI_MINOR);
    }
    return refuse(a, "no entry symbol " KZ_PLUGIN_ENTRY_NAME);
}

/* Reads the header, then copies only the bytes the plugin declared into a
 * zeroed host-side struct: fields from a newer host minor read as NULL. */
static int read_descriptor(const attempt *a, const kz_plugin *raw, kz_plugin *d)
{
    kz_plugin hdr;
    memcpy(&hdr, raw, KZ_PLUGIN_HEADER);
    if (hdr.struct_size < KZ_PLUGIN_SIZE_1_0)
        return refuse(a, "descriptor too small (%u bytes; ABI 1.0 needs at least %zu)",
                      (unsigned)hdr.struct_size, (size_t)KZ_PLUGIN_SIZE_1_0);
    if (hdr.abi_major != KZ_ABI_MAJOR || hdr.abi_minor > KZ_ABI_MINOR)
        return refuse(a, "built for ABI %u.%u, host has ABI %d.%d — refused",
                      (unsigned)hdr.abi_major, (unsigned)hdr.abi_minor, KZ_ABI_MAJOR, KZ_ABI_MINOR);
    memset(d, 0, sizeof *d);
    size_t n = hdr.struct_size < sizeof *d ? hdr.struct_size : sizeof *d;
    memcpy(d, raw, n);
    return KZ_OK;
}

static int check_name(const loader *l, const attempt *a, const kz_plugin *d)
{
    if (d->name == NULL || d->name[0] == '\0')
        return refuse(a, "descriptor has no name");
    if (!ident_valid(d->name))
        return refuse(a, "name '%s' is not [a-z0-9_]+", d->name);
    if (strcmp(d->name, a->stem) != 0)
        return refuse(a, "declares name '%s' but the file is '%s'", d->name, base_name(a->path));
    const plugin *old = loader_find(l, d->name);
    if (old != NULL)
        return refuse(a, "duplicate plugin name '%s' (already loaded from %s)", d->name, old->path);
    return KZ_OK;
}

static int check_subscriptions(const attempt *a, const kz_plugin *d)
{
    if (d->subscriptions == NULL)
        return KZ_OK;
    for (const char *const *s = d->subscriptions; *s != NULL; s++)
        if (!topic_pattern_valid(*s))
            return refuse(a, "subscription '%s' is not a valid topic pattern", *s);
    return KZ_OK;
}

static int check_setting(const attempt *a, const kz_setting_spec *set, const kz_setting_spec *s)
{
    if (!ident_valid(s->key))
        return refuse(a, "setting key '%s' is not [a-z0-9_]+", s->key);
    if (s->type < KZ_SETTING_STRING || s->type > KZ_SETTING_GROUP)
        return refuse(a, "setting '%s': unknown type %d", s->key, s->type);
    if (s->required != 0 && s->required != 1)
        return refuse(a, "setting '%s': required must be 0 or 1, not %d", s->key, s->required);
    /* Reserved for fields of a later minor: a non-NULL value would mean
     * something to that host and be silently ignored by this one. */
    if (s->reserved[0] != NULL || s->reserved[1] != NULL)
        return refuse(a, "setting '%s': reserved fields must be NULL", s->key);
    for (const kz_setting_spec *o = set; o != s; o++)
        if (strcmp(o->key, s->key) == 0)
            return refuse(a, "duplicate setting '%s'", s->key);
    return KZ_OK;
}

/* The schema is checked here, without running plugin code, so that
 * `kizuna check` can trust it when validating shop configs. */
static int check_settings(const attempt *a, const kz_plugin *d)
{
    if (d->settings == NULL)
        return KZ_OK;
    for (const kz_setting_spec *s = d->settings; s->key != NULL; s++) {
        int rc = check_setting(a, d->settings, s);
        if (rc != KZ_OK)
            return rc;
    }
    return KZ_OK;
}

static int check_descriptor(const loader *l, const attempt *a, const kz_plugin *d)
{
    int rc = check_name(l, a, d);
    if (rc == KZ_OK && d->handle == NULL)
        rc = refuse(a, "mandatory callback 'handle' is NULL");
    if (rc == KZ_OK)
        rc = check_subscriptions(a, d);
    if (rc == KZ_OK)
        rc = check_settings(a, d);
    return rc;
}

/* A plugin's err text goes inside our one-line refusal: keep it one line. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
}

static int call_load(const loader *l, const attempt *a, const kz_plugin *d, void **state)
{
    *state = NULL;
    if (d->load == NULL)
        return KZ_OK;
    char why[512] = "";
    log_set_context(d->name, NULL);
    int rc = d->load(l->host, state, why, sizeof why);
    log_set_context(NULL, NULL);
    if (rc == KZ_OK)
        return KZ_OK;
    why[sizeof why - 1] = '\0';
    one_line(why);
    if (why[0] == '\0')
        return refuse(a, "load failed (code %d)", rc);
    return refuse(a, "load failed: %s", why);
}

/* ---- loading ------------------------------------------------------------ */

static int add_plugin(loader *l, const attempt *a, const kz_plugin *d, void *dl, void *state,
                      const plugin **out)
{
    plugin *p = calloc(1, sizeof *p);
    char *path = strdup(a->path);
    plugin **v = grow(l->v, l->n, &l->cap);
    if (v != NULL)
        l->v = v;
    if (p == NULL || path == NULL || v == NULL) {
        free(p);
        free(path);
        /* load() succeeded, so give the plugin its matching unload(). */
        if (d->unload != NULL)
            d->unload(state);
        errbuf_set(a->err, a->errlen, "plugin '%s' (%s): out of memory", a->stem, a->path);
        return KZ_ENOMEM;
    }
    p->desc = *d;
    p->name = p->desc.name;
    p->path = path;
    p->abi_major = d->abi_major;
    p->abi_minor = d->abi_minor;
    p->state = state;
    p->dl = dl;
    l->v[l->n++] = p;
    if (out != NULL)
        *out = p;
    return KZ_OK;
}

/* Everything from dlopen to load(); the handle is returned even on refusal
 * so the caller can keep it. */
static int open_and_check(loader *l, const attempt *a, void **dl, kz_plugin *d, void **state)
{
    kz_plugin_entry_fn entry = NULL;
    int rc = open_object(a, dl);
    if (rc == KZ_OK)
        rc = find_entry(a, *dl, &entry);
    if (rc != KZ_OK)
        return rc;
    const kz_plugin *raw = entry(l->host);
    if (raw == NULL)
        return refuse(a, "entry " KZ_PLUGIN_ENTRY_NAME " returned NULL");
    rc = read_descriptor(a, raw, d);
    if (rc == KZ_OK)
        rc = check_descriptor(l, a, d);
    if (rc == KZ_OK)
        rc = call_load(l, a, d, state);
    return rc;
}

/* Checks that need no plugin code: a file that can never be accepted is
 * not dlopen()ed, so its constructors never run. */
static int precheck(const loader *l, const attempt *a)
{
    const char *base = base_name(a->path);
    if (!has_so_suffix(base) || !ident_valid(a->stem))
        return refuse(a, "file name '%s' is not <name>.so with a name of [a-z0-9_]+", base);
    int rc = check_permissions(a);
    if (rc != KZ_OK)
        return rc;
    const plugin *old = loader_find(l, a->stem);
    if (old != NULL)
        return refuse(a, "duplicate plugin name '%s' (already loaded from %s)", a->stem, old->path);
    return KZ_OK;
}

int loader_load_file(loader *l, const char *file, const plugin **out, char *err, size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    errbuf_set(err, errlen, "%s", "");
    if (l == NULL || file == NULL || *file == '\0')
        return KZ_EINVAL;
    const plugin *same = find_path(l, file);
    if (same != NULL) { /* the very same file again: nothing new to load */
        if (out != NULL)
            *out = same;
        return KZ_OK;
    }
    attempt a = {.path = file, .err = err, .errlen = errlen};
    file_stem(file, a.stem, sizeof a.stem);
    int rc = precheck(l, &a);
    if (rc != KZ_OK)
        return rc;

    void *dl = NULL, *state = NULL;
    kz_plugin d;
    rc = open_and_check(l, &a, &dl, &d, &state);
    if (rc == KZ_OK)
        rc = add_plugin(l, &a, &d, dl, state, out);
    if (rc != KZ_OK)
        keep_handle(l, dl);
    return rc;
}

static void join_path(char *buf, size_t size, const char *dir, const char *file)
{
    size_t len = strlen(dir);
    const char *sep = len > 0 && dir[len - 1] == '/' ? "" : "/";
    if (snprintf(buf, size, "%s%s%s", dir, sep, file) >= (int)size)
        buf[0] = '\0'; /* too long to be a usable path: it will not be found */
}

static void not_found(const char *name, const char *const *path, size_t npath, char *err,
                      size_t errlen)
{
    char dirs[2048] = "";
    size_t used = 0;
    for (size_t i = 0; i < npath && used < sizeof dirs; i++) {
        if (path[i] == NULL || path[i][0] == '\0')
            continue;
        int n = snprintf(dirs + used, sizeof dirs - used, "%s%s", used > 0 ? ", " : "", path[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (dirs[0] == '\0')
        errbuf_set(err, errlen, "plugin '%s': not found (the plugin path is empty)", name);
    else
        errbuf_set(err, errlen, "plugin '%s': not found (no %s.so in %s)", name, name, dirs);
}

int loader_load_name(loader *l, const char *name, const char *const *path, size_t npath,
                     const plugin **out, char *err, size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    errbuf_set(err, errlen, "%s", "");
    if (l == NULL || name == NULL)
        return KZ_EINVAL;
    /* The name becomes part of a file path: no "/" or ".." may sneak in. */
    if (!ident_valid(name)) {
        errbuf_set(err, errlen, "plugin '%s': name is not [a-z0-9_]+", name);
        return KZ_EINVAL;
    }
    const plugin *p = loader_find(l, name);
    if (p != NULL) {
        if (out != NULL)
            *out = p;
        return KZ_OK;
    }
    char file[4096];
    snprintf(file, sizeof file, "%s.so", name);
    for (size_t i = 0; i < npath; i++) {
        if (path[i] == NULL || path[i][0] == '\0')
            continue;
        char full[4096];
        join_path(full, sizeof full, path[i], file);
        struct stat st;
        if (stat(full, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
            return loader_load_file(l, full, out, err, errlen);
    }
    not_found(name, path, npath, err, errlen);
    return KZ_ENOTFOUND;
}

/* ---- scanning ----------------------------------------------------------- */

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The *.so names in dir, sorted bytewise so the order does not depend on
 * the file system or the locale. */
static int list_so(const char *dir, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!has_so_suffix(e->d_name))
            continue;
        char *s = strdup(e->d_name);
        char **more = s != NULL ? grow(names, n, &cap) : NULL;
        if (more == NULL) {
            free(s);
            rc = -ENOMEM;
            break;
        }
        names = more;
        names[n++] = s;
    }
    closedir(d);
    if (rc != 0) {
        free_names(names, n);
        return rc;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, by_name);
    *out = names;
    *nout = n;
    return 0;
}

/* Files a scan has tried so far, so that a name found again in a later
 * directory is refused even when the first file was refused too: the
 * first directory holding NAME.so decides, as for loader_load_name. */
typedef struct seen {
    char **paths;
    size_t n, cap;
} seen;

static const char *seen_stem(const seen *s, const char *stem)
{
    char other[256];
    for (size_t i = 0; i < s->n; i++) {
        file_stem(s->paths[i], other, sizeof other);
        if (strcmp(other, stem) == 0)
            return s->paths[i];
    }
    return NULL;
}

static void seen_add(seen *s, const char *path)
{
    char *copy = strdup(path);
    char **paths = copy != NULL ? grow(s->paths, s->n, &s->cap) : NULL;
    if (paths == NULL) { /* out of memory: only the shadowing is lost */
        free(copy);
        return;
    }
    s->paths = paths;
    s->paths[s->n++] = copy;
}

/* Loads one file found by the scan and reports it. Returns 1 if refused. */
static int scan_one(loader *l, seen *s, const char *full, loader_scan_cb cb, void *arg)
{
    char err[1024];
    const plugin *p = NULL;
    attempt a = {.path = full, .err = err, .errlen = sizeof err};
    file_stem(full, a.stem, sizeof a.stem);
    const char *first = seen_stem(s, a.stem);
    int rc;
    if (first != NULL && loader_find(l, a.stem) == NULL)
        rc = refuse(&a, "duplicate plugin name '%s' (already found in %s, which was refused)",
                    a.stem, first);
    else
        rc = loader_load_file(l, full, &p, err, sizeof err);
    seen_add(s, full);
    if (cb != NULL)
        cb(arg, rc == KZ_OK ? p : NULL, rc == KZ_OK ? NULL : err);
    return rc != KZ_OK;
}

static int scan_dir(loader *l, seen *s, const char *dir, loader_scan_cb cb, void *arg)
{
    char **names;
    size_t n;
    int rc = list_so(dir, &names, &n);
    if (rc == -ENOENT)
        return 0; /* a plugin directory that does not exist holds no plugins */
    if (rc != 0) {
        char line[1024];
        snprintf(line, sizeof line, "plugin directory %s: cannot read: %s", dir, strerror(-rc));
        if (cb != NULL)
            cb(arg, NULL, line);
        return 1;
    }
    int refused = 0;
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        join_path(full, sizeof full, dir, names[i]);
        refused += scan_one(l, s, full, cb, arg);
    }
    free_names(names, n);
    return refused;
}

int loader_scan(loader *l, const char *const *path, size_t npath, loader_scan_cb cb, void *arg)
{
    if (l == NULL)
        return 0;
    seen s = {0};
    int refused = 0;
    for (size_t i = 0; i < npath; i++)
        if (path[i] != NULL && path[i][0] != '\0')
            refused += scan_dir(l, &s, path[i], cb, arg);
    free_names(s.paths, s.n);
    return refused;
}
