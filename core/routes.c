/*
 * routes — see routes.h.
 *
 * One mutex guards the list and the hold counts: a lookup is a short scan
 * (a shop has a handful of routes), and a holder keeps no lock while the
 * plugin's callback runs, so a slow route never blocks other lookups.
 * Removal unlinks first and waits after, on a condition signalled by the
 * last release of a removed route.
 */
#include "routes.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#define PATH_MAX_LEN 256
#define METHOD_MAX_LEN 16

struct route {
    kz_shop *owner;
    const char *shop, *plugin;
    char *method; /* NULL: any */
    char *path;   /* as registered */
    size_t fixed; /* bytes of path before the star */
    int star;     /* "…/" + star or a lone star: any path below path[0, fixed) */
    kz_route_fn fn;
    void *arg;
    int holds;
    struct route *next; /* removed, waiting for its holders */
};

struct routes {
    pthread_mutex_t mu;
    pthread_cond_t released; /* a removed route lost its last holder */
    route **list;
    size_t n, cap;
};

int routes_new(routes **out, char *err, size_t errlen)
{
    *out = calloc(1, sizeof **out);
    if (*out == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    pthread_mutex_init(&(*out)->mu, NULL);
    pthread_cond_init(&(*out)->released, NULL);
    return 0;
}

static void route_free(route *rt)
{
    free(rt->method);
    free(rt->path);
    free(rt);
}

void routes_free(routes *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        route_free(r->list[i]);
    free(r->list);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->released);
    free(r);
}

/* ---- validation --------------------------------------------------------- */

static int method_ok(const char *m)
{
    size_t n = 0;
    for (; m[n] != '\0'; n++)
        if (m[n] < 'A' || m[n] > 'Z')
            return 0;
    return n > 0 && n <= METHOD_MAX_LEN;
}

/* One segment [s, s+n) of a registered path; last: it ends the path. */
static const char *segment_problem(const char *s, size_t n, int last)
{
    if (n == 0)
        return "empty segment";
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return "'.' or '..' segment";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '?' || c == '#')
            return "control byte, '?' or '#'";
        if (c == '*' && !(last && n == 1))
            return "'*' only as the whole last segment (\"prefix/*\")";
    }
    return NULL;
}

int routes_check(const char *method, const char *path, char *err, size_t errlen)
{
    if (method != NULL && !method_ok(method)) {
        errbuf_set(err, errlen, "method '%.32s': expected NULL or 1..16 of A-Z", method);
        return KZ_EINVAL;
    }
    if (path == NULL || strlen(path) > PATH_MAX_LEN || path[0] == '/') {
        errbuf_set(err, errlen, "path '%.64s': expected a relative path of at most %d bytes",
                   path ? path : "(null)", PATH_MAX_LEN);
        return KZ_EINVAL;
    }
    for (const char *s = path; path[0] != '\0';) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        const char *why = segment_problem(s, n, slash == NULL);
        if (why != NULL) {
            errbuf_set(err, errlen, "path '%.64s': %s", path, why);
            return KZ_EINVAL;
        }
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    return 0;
}

int routes_request_path_ok(const char *path)
{
    for (const char *s = path; path[0] != '\0';) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    return 1;
}

/* ---- registration ------------------------------------------------------- */

static int same_method(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static route *route_new(kz_shop *owner, const char *shop, const char *plugin, const char *method,
                        const char *path, kz_route_fn fn, void *arg)
{
    route *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    *rt = (route){.owner = owner, .shop = shop, .plugin = plugin, .fn = fn, .arg = arg};
    rt->method = method ? strdup(method) : NULL;
    rt->path = strdup(path);
    if (rt->path == NULL || (method != NULL && rt->method == NULL)) {
        route_free(rt);
        return NULL;
    }
    size_t n = strlen(path);
    rt->star = n > 0 && path[n - 1] == '*';
    rt->fixed = rt->star ? n - 1 : n;
    return rt;
}

static int append(routes *r, route *rt)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        route **grown = realloc(r->list, cap * sizeof *grown);
        if (grown == NULL)
            return KZ_ENOMEM;
        r->list = grown;
        r->cap = cap;
    }
    r->list[r->n++] = rt;
    return 0;
}

int routes_add(routes *r, kz_shop *owner, const char *shop, const char *plugin, const char *method,
               const char *path, kz_route_fn fn, void *arg, char *err, size_t errlen)
{
    int rc = routes_check(method, path, err, errlen);
    if (rc != 0)
        return rc;
    if (fn == NULL) {
        errbuf_set(err, errlen, "route '%s': no function", path);
        return KZ_EINVAL;
    }
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (r->list[i]->owner == owner && same_method(r->list[i]->method, method) &&
            strcmp(r->list[i]->path, path) == 0)
            rc = KZ_EEXIST;
    route *rt = rc == 0 ? route_new(owner, shop, plugin, method, path, fn, arg) : NULL;
    if (rc == 0 && (rt == NULL || append(r, rt) != 0)) {
        rc = KZ_ENOMEM;
        if (rt != NULL)
            route_free(rt);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == KZ_EEXIST)
        errbuf_set(err, errlen, "route %s '%s' is already registered", method ? method : "(any)",
                   path);
    else if (rc != 0)
        errbuf_set(err, errlen, "out of memory");
    return rc;
}

/* Moves owner's routes out of the list into a chain. Called locked. */
static route *unlink_owner(routes *r, const kz_shop *owner)
{
    route *gone = NULL;
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) {
        route *rt = r->list[i];
        if (rt->owner == owner) {
            rt->next = gone;
            gone = rt;
        } else {
            r->list[kept++] = rt;
        }
    }
    r->n = kept;
    return gone;
}

static int any_held(const route *chain)
{
    for (; chain != NULL; chain = chain->next)
        if (chain->holds > 0)
            return 1;
    return 0;
}

void routes_remove_owner(routes *r, const kz_shop *owner)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    route *gone = unlink_owner(r, owner);
    while (any_held(gone))
        pthread_cond_wait(&r->released, &r->mu);
    pthread_mutex_unlock(&r->mu);
    for (route *next; gone != NULL; gone = next) {
        next = gone->next;
        route_free(gone);
    }
}

size_t routes_count(routes *r, const kz_shop *owner)
{
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        n += owner == NULL || r->list[i]->owner == owner;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- lookup ------------------------------------------------------------- */

/* How specifically rt matches path: 0 not at all; an exact path beats any
 * prefix, a longer prefix a shorter one. */
static size_t specificity(const route *rt, const char *path)
{
    if (!rt->star)
        return strcmp(rt->path, path) == 0 ? 2 * PATH_MAX_LEN + 2 : 0;
    size_t n = strlen(path);
    return n > rt->fixed && strncmp(rt->path, path, rt->fixed) == 0 ? rt->fixed + 1 : 0;
}

static int takes(const route *rt, const char *method)
{
    return rt->method == NULL || strcmp(rt->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
}

/* Appends m (and HEAD after GET) to allow unless already listed. */
static void allow_add(char *allow, size_t allowlen, const char *m)
{
    if (allow == NULL)
        return;
    size_t mlen = strlen(m);
    for (const char *p = allow; (p = strstr(p, m)) != NULL; p += mlen)
        if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
            return;
    size_t used = strlen(allow);
    if (used + mlen + 3 > allowlen)
        return;
    if (used > 0) {
        memcpy(allow + used, ", ", 2);
        used += 2;
    }
    memcpy(allow + used, m, mlen + 1);
    if (strcmp(m, "GET") == 0)
        allow_add(allow, allowlen, "HEAD");
}

route_lookup routes_find(routes *r, const char *shop, const char *plugin, const char *path,
                         const char *method, route **held, char *allow, size_t allowlen)
{
    *held = NULL;
    if (allow != NULL && allowlen > 0)
        allow[0] = '\0';
    route *best = NULL;
    size_t best_score = 0;
    int matched = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        route *rt = r->list[i];
        size_t score = strcmp(rt->shop, shop) == 0 && strcmp(rt->plugin, plugin) == 0
                           ? specificity(rt, path)
                           : 0;
        if (score == 0)
            continue;
        matched = 1;
        if (!takes(rt, method)) {
            allow_add(allow, allowlen, rt->method);
            continue;
        }
        /* with a method beats any method at the same path */
        score = 2 * score + (rt->method != NULL);
        if (score > best_score) {
            best = rt;
            best_score = score;
        }
    }
    if (best != NULL)
        best->holds++;
    pthread_mutex_unlock(&r->mu);
    *held = best;
    if (best != NULL && allow != NULL && allowlen > 0)
        allow[0] = '\0';
    return best != NULL ? ROUTE_FOUND : matched ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

void routes_release(routes *r, route *rt)
{
    if (rt == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    if (--rt->holds == 0)
        pthread_cond_broadcast(&r->released);
    pthread_mutex_unlock(&r->mu);
}

kz_shop *route_owner(const route *rt)
{
    return rt->owner;
}

void route_call(const route *rt, kz_http *req)
{
    rt->fn(req, rt->arg);
}
