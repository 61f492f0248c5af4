/*
 * config — libconfig file → struct cfg, with every problem reported.
 *
 * Checking walks each group once in file order, so errors come out sorted by
 * line. A small rule table per group (kizuna, kizuna.retry, a shop, its line
 * group) names the known keys, their type and a handler that stores the value;
 * the same table produces the "known: …" list of unknown-key errors.
 *
 * Plugin groups are exposed as kz_setting handles. A handle is created the
 * first time a node is reached and cached in the node's libconfig hook, so
 * the same node always yields the same pointer; config_destroy() frees the
 * handles through the config's destructor. Creation takes a mutex because
 * plugins may walk their settings from several worker threads at once.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "tz.h"

#ifndef KZ_DEFAULT_PLUGIN_PATH
#define KZ_DEFAULT_PLUGIN_PATH "/usr/local/lib/kizuna/plugins"
#endif

/* store.h's STORE_SYNC_FULL / STORE_SYNC_NORMAL; numbers only, so the config
 * module does not depend on the store. */
enum { SYNC_FULL = 0, SYNC_NORMAL = 1 };

#define SHOP_ID_MAX 64
#define SECRET_FILE_MAX 65536
#define MSG_MAX 1024

struct kz_setting {
    config_setting_t *node;
    const config_setting_t *root; /* the plugin group; paths start below it */
    const cfg *c;
    const char *shop;
    const char *plugin;
    int resolved; /* secret already replaced: a second check must not redo it */
};

typedef struct cfg_priv {
    config_t lc;
    pthread_mutex_t mu; /* guards lazy creation of kz_setting handles */
    char *path;         /* copy of the path as given */
    char *dir;          /* the config file's directory, absolute when possible */
    char **paths;       /* plugin_path entries, owned */
    size_t npaths;
    int path_given;
} cfg_priv;

/* State of one check pass: where errors go and what prefixes them. */
typedef struct ctx {
    cfg *c;
    cfg_priv *p;
    diag *d;
    int errors;
    cfg_shop *shop;      /* shop being checked, or NULL */
    const kz_setting *h; /* plugin group being checked, or NULL */
    char prefix[256];    /* "", "shops[2]: ", "shop 'x': ", "shop 'x': plugin 'y': " */
} ctx;

typedef struct key_rule {
    const char *key;
    int type; /* KZ_SETTING_*, checked before fn; NONE: fn checks itself */
    void (*fn)(ctx *x, config_setting_t *s, const char *path);
} key_rule;

/* ---- messages ----------------------------------------------------------- */

/* Settings added as defaults have line 0; errors about them point at the
 * nearest ancestor that came from the file. */
static const config_setting_t *origin(const config_setting_t *s)
{
    while (s != NULL && config_setting_source_line(s) == 0 && config_setting_parent(s) != NULL)
        s = config_setting_parent(s);
    return s;
}

static const char *file_of(const cfg *c, const config_setting_t *s)
{
    const config_setting_t *o = origin(s);
    const char *f = o ? config_setting_source_file(o) : NULL;
    return f ? f : c->path;
}

static int line_of(const config_setting_t *s)
{
    const config_setting_t *o = origin(s);
    return o ? (int)config_setting_source_line(o) : 0;
}

static KZ_PRINTF(4, 5) void report(ctx *x, const config_setting_t *at, const char *path,
                                   const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_add(x->d, "%s:%d: %s%s%s%s", file_of(x->c, at), line_of(at), x->prefix, path ? path : "",
             path ? ": " : "", msg);
    x->errors++;
}

static const char *got_name(int lctype)
{
    switch (lctype) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "nothing";
    }
}

static const char *want_name(int kztype)
{
    static const char *const names[] = {"nothing",  "a string",  "an integer",
                                        "a float",  "a boolean", "a duration string",
                                        "a string", "a list",    "a group"};
    return kztype >= 0 && kztype <= KZ_SETTING_GROUP ? names[kztype] : "nothing";
}

static int kz_type_of(int lctype)
{
    switch (lctype) {
    case CONFIG_TYPE_STRING:
        return KZ_SETTING_STRING;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return KZ_SETTING_INT;
    case CONFIG_TYPE_FLOAT:
        return KZ_SETTING_FLOAT;
    case CONFIG_TYPE_BOOL:
        return KZ_SETTING_BOOL;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST:
        return KZ_SETTING_LIST;
    case CONFIG_TYPE_GROUP:
        return KZ_SETTING_GROUP;
    default:
        return KZ_SETTING_NONE;
    }
}

/* 1 when a libconfig value may stand for a KZ_SETTING_* type. */
static int type_fits(int lctype, int kztype)
{
    int t = kz_type_of(lctype);
    switch (kztype) {
    case KZ_SETTING_DURATION:
    case KZ_SETTING_SECRET:
        return t == KZ_SETTING_STRING;
    case KZ_SETTING_FLOAT:
        return t == KZ_SETTING_FLOAT || t == KZ_SETTING_INT;
    default:
        return t != KZ_SETTING_NONE && t == kztype;
    }
}

/* ---- paths and secrets -------------------------------------------------- */

/* rel (len bytes) resolved against the config file's directory. */
static char *resolve_path(const cfg_priv *p, const char *rel, size_t len)
{
    char *out = NULL;
    if (rel[0] == '/')
        return strndup(rel, len);
    if (asprintf(&out, "%s/%.*s", p->dir, (int)len, rel) < 0)
        return NULL;
    return out;
}

/* The directory of path, made absolute so it survives a chdir. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : slash - path);
    char *abs = dir ? realpath(dir, NULL) : NULL;
    if (abs == NULL)
        return dir;
    free(dir);
    return abs;
}

/* Reads a secret file; 0 or an errno value (-1: contains a NUL byte). */
static int read_secret_file(const char *file, char **out)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        return errno;
    char *buf = malloc(SECRET_FILE_MAX + 2);
    if (buf == NULL) {
        fclose(f);
        return ENOMEM;
    }
    size_t n = fread(buf, 1, SECRET_FILE_MAX + 1, f);
    int failed = ferror(f), err = errno;
    fclose(f);
    int rc = failed ? (err ? err : EIO) : n > SECRET_FILE_MAX ? EFBIG : 0;
    buf[n] = '\0';
    if (rc == 0 && memchr(buf, '\0', n) != NULL)
        rc = -1;
    if (rc != 0) {
        free(buf);
        return rc;
    }
    /* Editors end files with a newline that is not part of the secret. */
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *out = buf;
    return 0;
}

static char *secret_env(ctx *x, config_setting_t *s, const char *path, const char *name)
{
    if (*name == '\0') {
        report(x, s, path, "expected env:NAME, got \"env:\"");
        return NULL;
    }
    const char *v = getenv(name);
    if (v == NULL) {
        report(x, s, path, "environment variable '%s' is not set", name);
        return NULL;
    }
    char *out = strdup(v);
    if (out == NULL)
        report(x, s, path, "out of memory");
    return out;
}

static char *secret_file(ctx *x, config_setting_t *s, const char *path, const char *name)
{
    char *out = NULL;
    if (*name == '\0') {
        report(x, s, path, "expected file:PATH, got \"file:\"");
        return NULL;
    }
    char *file = resolve_path(x->p, name, strlen(name));
    int rc = file ? read_secret_file(file, &out) : ENOMEM;
    free(file);
    if (rc == -1)
        report(x, s, path, "secret file '%s' contains a NUL byte", name);
    else if (rc != 0)
        report(x, s, path, "cannot read secret file '%s': %s", name, strerror(rc));
    return rc == 0 ? out : NULL;
}

/* Replaces "env:NAME" / "file:PATH" by the value in the tree, so every
 * reader sees the resolved text, and registers it for log masking. */
static int resolve_secret(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = config_setting_get_string(s);
    char *val = NULL;
    if (strncmp(v, "env:", 4) == 0)
        val = secret_env(x, s, path, v + 4);
    else if (strncmp(v, "file:", 5) == 0)
        val = secret_file(x, s, path, v + 5);
    else {
        log_add_secret(v); /* inline: still never to be logged */
        return 0;
    }
    if (val == NULL)
        return -1;
    int ok = config_setting_set_string(s, val);
    free(val);
    if (!ok) {
        report(x, s, path, "out of memory");
        return -1;
    }
    log_add_secret(config_setting_get_string(s));
    return 0;
}

/* ---- kz_setting handles ------------------------------------------------- */

static kz_setting *handle_new(const cfg *c, config_setting_t *node, const config_setting_t *root,
                              const char *shop, const char *plugin)
{
    cfg_priv *p = c->priv;
    pthread_mutex_lock(&p->mu);
    kz_setting *h = config_setting_get_hook(node);
    if (h == NULL && (h = calloc(1, sizeof *h)) != NULL) {
        *h = (kz_setting){node, root, c, shop, plugin, 0};
        config_setting_set_hook(node, h);
    }
    pthread_mutex_unlock(&p->mu);
    return h;
}

static const kz_setting *wrap(const kz_setting *parent, config_setting_t *node)
{
    if (node == NULL)
        return NULL;
    return handle_new(parent->c, node, parent->root, parent->shop, parent->plugin);
}

/* ---- value checks shared by core and plugin settings -------------------- */

static int was_resolved(const config_setting_t *s)
{
    const kz_setting *h = config_setting_get_hook(s);
    return h != NULL && h->resolved;
}

static void mark_resolved(ctx *x, config_setting_t *s)
{
    kz_setting *h = x->h ? (kz_setting *)wrap(x->h, s) : NULL;
    if (h != NULL)
        h->resolved = 1;
}

/* Type, duration syntax and secret resolution; 0 when the value is usable. */
static int check_value(ctx *x, config_setting_t *s, const char *path, int type)
{
    int t = config_setting_type(s);
    if (!type_fits(t, type)) {
        report(x, s, path, "expected %s, got %s", want_name(type), got_name(t));
        return -1;
    }
    if (type == KZ_SETTING_DURATION) {
        int64_t ms;
        const char *v = config_setting_get_string(s);
        if (clock_parse_duration(v, &ms) != 0) {
            report(x, s, path, "invalid duration \"%s\" (examples: 1500ms, 90s, 15m, 1h30m, 1d)",
                   v);
            return -1;
        }
    }
    if (type == KZ_SETTING_SECRET && !was_resolved(s)) {
        if (resolve_secret(x, s, path) != 0)
            return -1;
        mark_resolved(x, s);
    }
    return 0;
}

static const char *nonempty(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = config_setting_get_string(s);
    if (*v != '\0')
        return v;
    report(x, s, path, "must not be empty");
    return NULL;
}

static int ranged(ctx *x, config_setting_t *s, const char *path, int lo, int hi, int *out)
{
    long long v = config_setting_get_int64(s);
    if (v < lo || v > hi) {
        report(x, s, path, "must be between %d and %d, got %lld", lo, hi, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int64_t duration_of(const config_setting_t *s)
{
    int64_t ms = 0;
    clock_parse_duration(config_setting_get_string(s), &ms);
    return ms;
}

/* ---- rule-driven group checks ------------------------------------------- */

static const key_rule *find_rule(const key_rule *r, const char *key)
{
    for (; r->key != NULL; r++)
        if (strcmp(r->key, key) == 0)
            return r;
    return NULL;
}

static const char *rule_names(const key_rule *r, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; r->key != NULL && used < len; r++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", r->key);
    return buf;
}

/* Checks each key of group g against rules, in file order. container is the
 * dotted path of g ("kizuna.retry", "line") or NULL for a shop itself. */
static void check_group(ctx *x, config_setting_t *g, const char *container, const key_rule *rules)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const key_rule *r = find_rule(rules, name);
        char path[256], known[256];
        if (r == NULL) {
            report(x, s, container, "unknown setting '%s' (known: %s)", name,
                   rule_names(rules, known, sizeof known));
            continue;
        }
        snprintf(path, sizeof path, "%s%s%s", container ? container : "", container ? "." : "",
                 name);
        if (r->type != KZ_SETTING_NONE && check_value(x, s, path, r->type) != 0)
            continue;
        if (r->fn != NULL)
            r->fn(x, s, path);
    }
}

/* ---- kizuna group ------------------------------------------------------- */

static int push_path(ctx *x, const config_setting_t *at, const char *path, char *dir)
{
    char **grown = dir ? realloc(x->p->paths, (x->p->npaths + 1) * sizeof *grown) : NULL;
    if (grown == NULL) {
        free(dir);
        report(x, at, path, "out of memory");
        return -1;
    }
    x->p->paths = grown;
    grown[x->p->npaths++] = dir;
    return 0;
}

static void add_plugin_dir(ctx *x, const config_setting_t *at, const char *path, const char *dir,
                           size_t len)
{
    if (len == 0)
        report(x, at, path, "empty directory name");
    else
        push_path(x, at, path, resolve_path(x->p, dir, len));
}

/* A string is a ':'-separated list, like $PATH. */
static void add_plugin_dirs(ctx *x, const config_setting_t *at, const char *path, const char *text)
{
    for (;;) {
        size_t len = strcspn(text, ":");
        add_plugin_dir(x, at, path, text, len);
        if (text[len] == '\0')
            break;
        text += len + 1;
    }
}

static void k_plugin_path(ctx *x, config_setting_t *s, const char *path)
{
    int t = config_setting_type(s);
    x->p->path_given = 1;
    if (t == CONFIG_TYPE_STRING) {
        add_plugin_dirs(x, s, path, config_setting_get_string(s));
        return;
    }
    if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY) {
        report(x, s, path, "expected a string or a list of strings, got %s", got_name(t));
        return;
    }
    if (config_setting_length(s) == 0)
        report(x, s, path, "must name at least one directory");
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char epath[300];
        snprintf(epath, sizeof epath, "%s[%d]", path, i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            report(x, e, epath, "expected a string, got %s", got_name(config_setting_type(e)));
        else
            add_plugin_dir(x, e, epath, config_setting_get_string(e),
                           strlen(config_setting_get_string(e)));
    }
}

static void k_listen(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = nonempty(x, s, path);
    x->c->listen = v ? v : x->c->listen;
}

static void k_max_body(ctx *x, config_setting_t *s, const char *path)
{
    int v;
    if (ranged(x, s, path, 1024, 67108864, &v) == 0)
        x->c->max_body = (size_t)v;
}

static void k_store(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = nonempty(x, s, path);
    x->c->store_url = v ? v : x->c->store_url;
}

/* A zone the system's database has, or NULL after reporting. */
static const char *zone(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = nonempty(x, s, path);
    if (v != NULL && !tz_known(v)) {
        report(x, s, path, "unknown time zone \"%s\" (an IANA name such as \"Asia/Tokyo\")", v);
        return NULL;
    }
    return v;
}

static void k_timezone(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = zone(x, s, path);
    x->c->timezone = v ? v : x->c->timezone;
}

static void k_log_level(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = config_setting_get_string(s);
    if (log_parse_level(v, &x->c->log_level) != 0)
        report(x, s, path, "expected debug, info, warn or error, got \"%s\"", v);
}

static void k_workers(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 1, 64, &x->c->workers);
}

static void k_batch(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 1, 10000, &x->c->batch);
}

static void k_durability(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = config_setting_get_string(s);
    if (strcmp(v, "full") == 0)
        x->c->sync_mode = SYNC_FULL;
    else if (strcmp(v, "normal") == 0)
        x->c->sync_mode = SYNC_NORMAL;
    else
        report(x, s, path, "expected \"full\" or \"normal\", got \"%s\"", v);
}

static void k_attempts(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 1, 100, &x->c->retry_attempts);
}

static void k_initial(ctx *x, config_setting_t *s, const char *path)
{
    int64_t ms = duration_of(s);
    if (ms <= 0)
        report(x, s, path, "must be longer than 0");
    else
        x->c->retry_initial_ms = ms;
}

static void k_max(ctx *x, config_setting_t *s, const char *path)
{
    int64_t ms = duration_of(s);
    if (ms <= 0)
        report(x, s, path, "must be longer than 0");
    else
        x->c->retry_max_ms = ms;
}

static const key_rule retry_rules[] = {{"attempts", KZ_SETTING_INT, k_attempts},
                                       {"initial", KZ_SETTING_DURATION, k_initial},
                                       {"max", KZ_SETTING_DURATION, k_max},
                                       {NULL, 0, NULL}};

/* A duration within [lo, hi] ms into *out. */
static void bounded_duration(ctx *x, config_setting_t *s, const char *path, int64_t lo, int64_t hi,
                             const char *range, int64_t *out)
{
    int64_t ms = duration_of(s);
    if (ms < lo || ms > hi)
        report(x, s, path, "must be between %s", range);
    else
        *out = ms;
}

static void k_sender_timeout(ctx *x, config_setting_t *s, const char *path)
{
    bounded_duration(x, s, path, 1000, 600000, "1s and 10m", &x->c->sender_timeout_ms);
}

static void k_sender_deadline(ctx *x, config_setting_t *s, const char *path)
{
    bounded_duration(x, s, path, 60000, 86400000, "1m and 24h (LINE keeps a retry key 24 h)",
                     &x->c->sender_deadline_ms);
}

static void k_sender_in_flight(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 1, 256, &x->c->sender_max_in_flight);
}

static const key_rule sender_rules[] = {{"timeout", KZ_SETTING_DURATION, k_sender_timeout},
                                        {"deadline", KZ_SETTING_DURATION, k_sender_deadline},
                                        {"max_in_flight", KZ_SETTING_INT, k_sender_in_flight},
                                        {NULL, 0, NULL}};

static void k_sender(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, sender_rules);
}

/* "0s" keeps them for good; anything else at least a day (LINE redelivers
 * a webhook for a day at the most, EC platforms for a few). */
static void retention(ctx *x, config_setting_t *s, const char *path, int64_t *out)
{
    int64_t ms = *out;
    bounded_duration(x, s, path, 0, 3650 * 86400000LL, "0s (kept for good) and 3650d", &ms);
    if (ms > 0 && ms < 86400000LL)
        report(x, s, path, "must be 0s (kept for good) or at least 1d");
    else
        *out = ms;
}

static void k_retention_events(ctx *x, config_setting_t *s, const char *path)
{
    retention(x, s, path, &x->c->retention_events_ms);
}

static void k_retention_sends(ctx *x, config_setting_t *s, const char *path)
{
    retention(x, s, path, &x->c->retention_sends_ms);
}

static const key_rule retention_rules[] = {{"events", KZ_SETTING_DURATION, k_retention_events},
                                           {"sends", KZ_SETTING_DURATION, k_retention_sends},
                                           {NULL, 0, NULL}};

static void k_retention(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, retention_rules);
}

static void k_retry(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, retry_rules);
    if (x->c->retry_initial_ms > x->c->retry_max_ms)
        report(x, s, path, "initial (%lld ms) must not exceed max (%lld ms)",
               (long long)x->c->retry_initial_ms, (long long)x->c->retry_max_ms);
}

static void k_admin_token(ctx *x, config_setting_t *s, const char *path)
{
    x->c->admin_token = nonempty(x, s, path);
}

static void k_admin_remote(ctx *x, config_setting_t *s, const char *path)
{
    (void)path;
    x->c->admin_remote = config_setting_get_bool(s);
}

/* ---- kizuna.sandbox ---------------------------------------------------- */

/* sandbox.h's sandbox_endpoint_names; repeated so config does not depend on
 * the sandbox module. */
static const char *const sandbox_endpoints[] = {
    "reply",      "push",     "multicast",       "narrowcast",      "broadcast",
    "validate",   "progress", "profile",         "quota",           "info",
    "link_token", "richmenu", "richmenu_create", "richmenu_delete", "richmenu_alias_delete",
    NULL};

static void k_sbx_listen(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = nonempty(x, s, path);
    x->c->sandbox.listen = v ? v : x->c->sandbox.listen;
}

static void k_sbx_store(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = nonempty(x, s, path);
    x->c->sandbox.store_url = v ? v : x->c->sandbox.store_url;
}

static void k_sbx_monthly(ctx *x, config_setting_t *s, const char *path)
{
    long long v = config_setting_get_int64(s);
    if (v < 0)
        report(x, s, path, "must be 0 (unlimited) or more, got %lld", v);
    else
        x->c->sandbox.monthly_limit = v;
}

static int unit_rate(ctx *x, config_setting_t *s, const char *path, double *out)
{
    double v = config_setting_type(s) == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                                           : (double)config_setting_get_int64(s);
    if (!(v >= 0 && v <= 1)) {
        report(x, s, path, "must be between 0 and 1, got %g", v);
        return -1;
    }
    *out = v;
    return 0;
}

static void k_sbx_error_rate(ctx *x, config_setting_t *s, const char *path)
{
    unit_rate(x, s, path, &x->c->sandbox.error_rate);
}

static void k_sbx_drop_rate(ctx *x, config_setting_t *s, const char *path)
{
    unit_rate(x, s, path, &x->c->sandbox.drop_rate);
}

static void k_sbx_status(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 400, 599, &x->c->sandbox.error_status);
}

static void k_sbx_latency(ctx *x, config_setting_t *s, const char *path)
{
    ranged(x, s, path, 0, 600000, &x->c->sandbox.latency_ms);
}

static const key_rule sandbox_fault_rules[] = {{"error_rate", KZ_SETTING_FLOAT, k_sbx_error_rate},
                                               {"status", KZ_SETTING_INT, k_sbx_status},
                                               {"latency_ms", KZ_SETTING_INT, k_sbx_latency},
                                               {"drop_rate", KZ_SETTING_FLOAT, k_sbx_drop_rate},
                                               {NULL, 0, NULL}};

static void k_sbx_faults(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, sandbox_fault_rules);
}

/* name = N; entries of a rate_limits group, for the endpoints listed. */
static void parse_rates(ctx *x, config_setting_t *s, const char *path, const char *const *endpoints,
                        cfg_sandbox_rate **out, size_t *nout)
{
    int n = config_setting_length(s);
    if (n == 0)
        return;
    free(*out);
    *nout = 0;
    if ((*out = calloc((size_t)n, sizeof **out)) == NULL) {
        report(x, s, path, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *name = config_setting_name(e);
        char epath[300];
        snprintf(epath, sizeof epath, "%s.%s", path, name);
        int known = 0;
        for (const char *const *k = endpoints; *k != NULL; k++)
            known |= strcmp(*k, name) == 0;
        if (!known) {
            char names[256];
            size_t used = 0;
            names[0] = '\0';
            for (const char *const *k = endpoints; *k != NULL && used < sizeof names; k++)
                used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
                                         used ? ", " : "", *k);
            report(x, e, path, "unknown endpoint '%s' (known: %s)", name, names);
            continue;
        }
        if (check_value(x, e, epath, KZ_SETTING_INT) != 0)
            continue;
        long long v = config_setting_get_int64(e);
        if (v < 1) {
            report(x, e, epath, "must be at least 1, got %lld", v);
            continue;
        }
        (*out)[*nout].endpoint = name;
        (*out)[(*nout)++].limit = v;
    }
}

static void k_sbx_rate_limits(ctx *x, config_setting_t *s, const char *path)
{
    parse_rates(x, s, path, sandbox_endpoints, &x->c->sandbox.rates, &x->c->sandbox.nrates);
}

static void k_sbx_embedded(ctx *x, config_setting_t *s, const char *path)
{
    (void)path;
    x->c->sandbox.embedded = config_setting_get_bool(s);
}

static const key_rule sandbox_rules[] = {{"listen", KZ_SETTING_STRING, k_sbx_listen},
                                         {"embedded", KZ_SETTING_BOOL, k_sbx_embedded},
                                         {"store", KZ_SETTING_STRING, k_sbx_store},
                                         {"monthly_limit", KZ_SETTING_INT, k_sbx_monthly},
                                         {"faults", KZ_SETTING_GROUP, k_sbx_faults},
                                         {"rate_limits", KZ_SETTING_GROUP, k_sbx_rate_limits},
                                         {NULL, 0, NULL}};

static void k_sandbox(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, sandbox_rules);
}

static const key_rule kizuna_rules[] = {{"listen", KZ_SETTING_STRING, k_listen},
                                        {"store", KZ_SETTING_STRING, k_store},
                                        {"timezone", KZ_SETTING_STRING, k_timezone},
                                        {"log_level", KZ_SETTING_STRING, k_log_level},
                                        {"plugin_path", KZ_SETTING_NONE, k_plugin_path},
                                        {"workers", KZ_SETTING_INT, k_workers},
                                        {"batch", KZ_SETTING_INT, k_batch},
                                        {"durability", KZ_SETTING_STRING, k_durability},
                                        {"retry", KZ_SETTING_GROUP, k_retry},
                                        {"admin_token", KZ_SETTING_SECRET, k_admin_token},
                                        {"admin_remote", KZ_SETTING_BOOL, k_admin_remote},
                                        {"max_body", KZ_SETTING_INT, k_max_body},
                                        {"sandbox", KZ_SETTING_GROUP, k_sandbox},
                                        {"sender", KZ_SETTING_GROUP, k_sender},
                                        {"retention", KZ_SETTING_GROUP, k_retention},
                                        {NULL, 0, NULL}};

/* ---- shops -------------------------------------------------------------- */

static void k_name(ctx *x, config_setting_t *s, const char *path)
{
    x->shop->name = nonempty(x, s, path);
}

static void k_shop_timezone(ctx *x, config_setting_t *s, const char *path)
{
    x->shop->timezone = zone(x, s, path);
}

static void k_channel_secret(ctx *x, config_setting_t *s, const char *path)
{
    x->shop->line_channel_secret = nonempty(x, s, path);
}

static void k_access_token(ctx *x, config_setting_t *s, const char *path)
{
    x->shop->line_access_token = nonempty(x, s, path);
}

static void k_api(ctx *x, config_setting_t *s, const char *path)
{
    const char *v = config_setting_get_string(s);
    if (strcmp(v, "sandbox") == 0 || (strncmp(v, "https://", 8) == 0 && v[8] != '\0') ||
        (strncmp(v, "http://", 7) == 0 && v[7] != '\0'))
        x->shop->line_api = v;
    else
        report(x, s, path, "expected \"sandbox\" or an http(s):// URL, got \"%s\"", v);
}

/* The endpoints kizuna's sender sends to, and the rate classes of other
 * calls (sender.c: rate_class). */
static const char *const send_endpoints[] = {"reply",
                                             "push",
                                             "multicast",
                                             "broadcast",
                                             "narrowcast",
                                             "call",
                                             "richmenu_create",
                                             "richmenu_delete",
                                             "richmenu_alias_delete",
                                             "richmenu_batch_progress",
                                             "richmenu_batch",
                                             NULL};

static void k_line_rate_limits(ctx *x, config_setting_t *s, const char *path)
{
    parse_rates(x, s, path, send_endpoints, &x->shop->line_rates, &x->shop->nline_rates);
}

static const key_rule line_rules[] = {{"channel_secret", KZ_SETTING_SECRET, k_channel_secret},
                                      {"access_token", KZ_SETTING_SECRET, k_access_token},
                                      {"api", KZ_SETTING_STRING, k_api},
                                      {"rate_limits", KZ_SETTING_GROUP, k_line_rate_limits},
                                      {NULL, 0, NULL}};

static void k_line(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, line_rules);
    for (int i = 0; i < 2; i++)
        if (config_setting_get_member(s, line_rules[i].key) == NULL)
            report(x, s, path, "missing required setting '%s'", line_rules[i].key);
    if (config_setting_get_member(s, "api") == NULL)
        x->shop->line_api = "https://api.line.me";
}

/* Plugin names become file names (<name>.so): keep them to [a-z0-9_]. */
static int plugin_name_ok(const char *name)
{
    return *name != '\0' && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(name);
}

static void add_plugin_use(ctx *x, config_setting_t *s)
{
    const char *name = config_setting_name(s);
    ctx px = *x; /* own prefix, shared counters copied back below */
    /* A long name only shortens the message; the return value is used to
     * say so to -Wformat-truncation. */
    if (snprintf(px.prefix, sizeof px.prefix, "%splugin '%s': ", x->prefix, name) < 0)
        px.prefix[0] = '\0';
    if (!plugin_name_ok(name))
        report(&px, s, NULL, "invalid plugin name (use a-z, 0-9 and _)");
    else if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        report(&px, s, NULL, "expected a group, got %s", got_name(config_setting_type(s)));
    else {
        cfg_plugin_use *u = &x->shop->plugins[x->shop->nplugins];
        u->name = name;
        u->line = (int)config_setting_source_line(s);
        u->setting = handle_new(x->c, s, s, x->shop->id ? x->shop->id : "?", name);
        if (u->setting == NULL)
            report(&px, s, NULL, "out of memory");
        else
            x->shop->nplugins++;
    }
    x->errors = px.errors;
}

static void k_plugins(ctx *x, config_setting_t *s, const char *path)
{
    (void)path;
    int n = config_setting_length(s);
    if (n == 0)
        return;
    x->shop->plugins = calloc((size_t)n, sizeof *x->shop->plugins);
    if (x->shop->plugins == NULL) {
        report(x, s, path, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++)
        add_plugin_use(x, config_setting_get_elem(s, (unsigned)i));
}

static const char *const attr_types[] = {"string", "number", "date", "bool", NULL};

static int attr_name_ok(const char *n)
{
    size_t len = strlen(n);
    return len > 0 && len <= 64 && !(n[0] >= '0' && n[0] <= '9') &&
           strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789_") == len;
}

static void add_friend_attr(ctx *x, config_setting_t *e, const char *path)
{
    const char *name = config_setting_name(e);
    char epath[300];
    snprintf(epath, sizeof epath, "%s.%s", path, name);
    if (!attr_name_ok(name)) {
        report(x, e, path, "invalid attribute name '%s' (use a-z, 0-9 and _, not a digit first)",
               name);
        return;
    }
    if (check_value(x, e, epath, KZ_SETTING_STRING) != 0)
        return;
    const char *t = config_setting_get_string(e);
    for (int k = 0; attr_types[k] != NULL; k++)
        if (strcmp(attr_types[k], t) == 0) {
            cfg_friend_attr *a = &x->shop->friend_attrs[x->shop->nfriend_attrs++];
            a->name = name;
            a->type = k;
            return;
        }
    report(x, e, epath, "unknown type \"%s\" (known: string, number, date, bool)", t);
}

static void k_friend_attrs(ctx *x, config_setting_t *s, const char *path)
{
    int n = config_setting_length(s);
    if (n == 0)
        return;
    if ((x->shop->friend_attrs = calloc((size_t)n, sizeof *x->shop->friend_attrs)) == NULL) {
        report(x, s, path, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++)
        add_friend_attr(x, config_setting_get_elem(s, (unsigned)i), path);
}

static const key_rule friends_rules[] = {{"attributes", KZ_SETTING_GROUP, k_friend_attrs},
                                         {NULL, 0, NULL}};

static void k_friends(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, friends_rules);
}

/* ---- a shop's delivery policy ------------------------------------------ */

#define DELIVERY_MAX_DEFER_DEFAULT (7LL * 86400000)

static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static int day_index(const char *p, size_t n)
{
    for (int d = 0; d < 7; d++)
        if (n == 3 && strncmp(p, day_names[d], 3) == 0)
            return d;
    return -1;
}

/* "mon-fri", "sat,sun", "mon,wed-fri", "*" → a bit per weekday (bit 0:
 * Sunday); a range wraps past Sunday ("fri-mon"). 0 when malformed. */
static unsigned parse_days(const char *v)
{
    if (strcmp(v, "*") == 0)
        return 0x7f;
    unsigned days = 0;
    while (*v != '\0') {
        size_t n = strcspn(v, ",");
        const char *dash = memchr(v, '-', n);
        int a = day_index(v, dash ? (size_t)(dash - v) : n);
        int b = dash ? day_index(dash + 1, n - (size_t)(dash - v) - 1) : a;
        if (a < 0 || b < 0)
            return 0;
        for (int d = a;; d = (d + 1) % 7) {
            days |= 1u << d;
            if (d == b)
                break;
        }
        v += n;
        if (*v == ',' && *++v == '\0')
            return 0;
    }
    return days;
}

/* "HH:MM" (00:00..23:59) → minutes after midnight, -1 when malformed. */
static int parse_hhmm(const char *v)
{
    int h, m;
    char end;
    if (strlen(v) != 5 || v[2] != ':' || sscanf(v, "%2d:%2d%c", &h, &m, &end) != 2 || h < 0 ||
        h > 23 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

static void add_quiet(ctx *x, config_setting_t *e, const char *path)
{
    if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
        report(x, e, path, "expected a group { days; from; to; }, got %s",
               got_name(config_setting_type(e)));
        return;
    }
    cfg_delivery *dv = &x->shop->delivery;
    cfg_quiet q = {0};
    const char *keys[] = {"days", "from", "to"};
    int ok = 1;
    for (int i = 0; i < config_setting_length(e); i++) {
        config_setting_t *m = config_setting_get_elem(e, (unsigned)i);
        const char *name = config_setting_name(m);
        if (strcmp(name, "days") != 0 && strcmp(name, "from") != 0 && strcmp(name, "to") != 0) {
            report(x, m, path, "unknown setting '%s' (known: days, from, to)", name);
            ok = 0;
        }
    }
    for (int k = 0; k < 3; k++) {
        char kpath[320];
        /* path is at most 300 bytes (k_quiet_hours), so this never cuts;
         * the check tells -Wformat-truncation so */
        if (snprintf(kpath, sizeof kpath, "%s.%s", path, keys[k]) < 0)
            kpath[0] = '\0';
        config_setting_t *m = config_setting_get_member(e, keys[k]);
        if (m == NULL) {
            report(x, e, path, "missing required setting '%s'", keys[k]);
            ok = 0;
            continue;
        }
        if (check_value(x, m, kpath, KZ_SETTING_STRING) != 0) {
            ok = 0;
            continue;
        }
        const char *v = config_setting_get_string(m);
        if (k == 0 && (q.days = parse_days(v)) == 0) {
            report(x, m, kpath, "invalid days \"%s\" (examples: \"mon-fri\", \"sat,sun\", \"*\")",
                   v);
            ok = 0;
        } else if (k > 0) {
            int t = parse_hhmm(v);
            if (t < 0) {
                report(x, m, kpath, "invalid time \"%s\" (expected HH:MM, 00:00 to 23:59)", v);
                ok = 0;
            }
            *(k == 1 ? &q.from_min : &q.to_min) = t;
        }
    }
    if (ok && q.from_min == q.to_min) {
        report(x, e, path, "from and to are equal: an empty (or 24-hour) window");
        ok = 0;
    }
    if (ok)
        dv->quiet[dv->nquiet++] = q;
}

static void k_quiet_hours(ctx *x, config_setting_t *s, const char *path)
{
    int n = config_setting_length(s);
    if (n == 0)
        return;
    cfg_delivery *dv = &x->shop->delivery;
    if ((dv->quiet = calloc((size_t)n, sizeof *dv->quiet)) == NULL) {
        report(x, s, path, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        char epath[300];
        snprintf(epath, sizeof epath, "%s[%d]", path, i);
        add_quiet(x, config_setting_get_elem(s, (unsigned)i), epath);
    }
}

static void cap_of(ctx *x, config_setting_t *s, const char *path, int64_t *out)
{
    long long v = config_setting_get_int64(s);
    if (v < 1 || v > 1000)
        report(x, s, path, "must be between 1 and 1000, got %lld", v);
    else
        *out = v;
}

static void k_cap_day(ctx *x, config_setting_t *s, const char *path)
{
    cap_of(x, s, path, &x->shop->delivery.cap_day);
}

static void k_cap_week(ctx *x, config_setting_t *s, const char *path)
{
    cap_of(x, s, path, &x->shop->delivery.cap_week);
}

static const key_rule caps_rules[] = {
    {"day", KZ_SETTING_INT, k_cap_day}, {"week", KZ_SETTING_INT, k_cap_week}, {NULL, 0, NULL}};

static void k_caps(ctx *x, config_setting_t *s, const char *path)
{
    check_group(x, s, path, caps_rules);
}

static void k_max_defer(ctx *x, config_setting_t *s, const char *path)
{
    bounded_duration(x, s, path, 60000, 30LL * 86400000, "1m and 30d",
                     &x->shop->delivery.max_defer_ms);
}

static const key_rule delivery_rules[] = {{"quiet_hours", KZ_SETTING_LIST, k_quiet_hours},
                                          {"caps", KZ_SETTING_GROUP, k_caps},
                                          {"max_defer", KZ_SETTING_DURATION, k_max_defer},
                                          {NULL, 0, NULL}};

static void k_delivery(ctx *x, config_setting_t *s, const char *path)
{
    cfg_delivery *dv = &x->shop->delivery;
    dv->enabled = 1;
    dv->max_defer_ms = DELIVERY_MAX_DEFER_DEFAULT;
    check_group(x, s, path, delivery_rules);
    if (dv->cap_day > 0 && dv->cap_week > 0 && dv->cap_week < dv->cap_day) {
        config_setting_t *caps = config_setting_get_member(s, "caps");
        report(x, caps ? caps : s, "delivery.caps",
               "week (%lld) is below day (%lld): the day cap could never be reached",
               (long long)dv->cap_week, (long long)dv->cap_day);
    }
}

static const key_rule shop_rules[] = {{"id", KZ_SETTING_NONE, NULL}, /* checked first */
                                      {"name", KZ_SETTING_STRING, k_name},
                                      {"timezone", KZ_SETTING_STRING, k_shop_timezone},
                                      {"line", KZ_SETTING_GROUP, k_line},
                                      {"plugins", KZ_SETTING_GROUP, k_plugins},
                                      {"friends", KZ_SETTING_GROUP, k_friends},
                                      {"delivery", KZ_SETTING_GROUP, k_delivery},
                                      {NULL, 0, NULL}};

static int shop_id_ok(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= SHOP_ID_MAX && strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* The shop's id, or NULL after reporting why it has none usable. */
static const char *shop_id(ctx *x, config_setting_t *s)
{
    config_setting_t *id = config_setting_get_member(s, "id");
    if (id == NULL) {
        report(x, s, NULL, "missing required setting 'id'");
        return NULL;
    }
    if (check_value(x, id, "id", KZ_SETTING_STRING) != 0)
        return NULL;
    const char *v = config_setting_get_string(id);
    if (!shop_id_ok(v)) {
        report(x, id, "id", "invalid shop id \"%s\" (use 1 to %d of a-z, 0-9, _ and -)", v,
               SHOP_ID_MAX);
        return NULL;
    }
    return v;
}

const cfg_shop *cfg_find_shop(const cfg *c, const char *id)
{
    for (size_t i = 0; c != NULL && id != NULL && i < c->nshops; i++)
        if (strcmp(c->shops[i].id, id) == 0)
            return &c->shops[i];
    return NULL;
}

static void check_shop(ctx *x, config_setting_t *s, int index)
{
    cfg_shop *shop = &x->c->shops[x->c->nshops];
    snprintf(x->prefix, sizeof x->prefix, "shops[%d]: ", index);
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        report(x, s, NULL, "expected a group, got %s", got_name(config_setting_type(s)));
        return;
    }
    memset(shop, 0, sizeof *shop);
    shop->id = shop_id(x, s);
    shop->line = (int)config_setting_source_line(s);
    const cfg_shop *first = shop->id ? cfg_find_shop(x->c, shop->id) : NULL;
    if (shop->id != NULL)
        snprintf(x->prefix, sizeof x->prefix, "shop '%s': ", shop->id);
    if (first != NULL)
        report(x, s, NULL, "duplicate shop id (first defined at line %d)", first->line);
    x->shop = shop;
    check_group(x, s, NULL, shop_rules);
    x->shop = NULL;
    /* Shops without a usable id are checked but not kept: nothing could
     * address them, and a duplicate would shadow the first. */
    if (shop->id != NULL && first == NULL) {
        x->c->nshops++;
    } else {
        free(shop->plugins);
        free(shop->line_rates);
        free(shop->friend_attrs);
        free(shop->delivery.quiet);
        memset(shop, 0, sizeof *shop);
    }
}

static void check_shops(ctx *x, config_setting_t *s)
{
    int n = config_setting_length(s);
    if (n > 0 && (x->c->shops = calloc((size_t)n, sizeof *x->c->shops)) == NULL) {
        report(x, s, "shops", "out of memory");
        return;
    }
    for (int i = 0; i < n; i++)
        check_shop(x, config_setting_get_elem(s, (unsigned)i), i);
    x->prefix[0] = '\0';
}

/* ---- top level ---------------------------------------------------------- */

static void check_root(ctx *x, config_setting_t *root)
{
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        if (strcmp(name, "kizuna") == 0) {
            if (check_value(x, s, "kizuna", KZ_SETTING_GROUP) == 0)
                check_group(x, s, "kizuna", kizuna_rules);
        } else if (strcmp(name, "shops") == 0) {
            if (check_value(x, s, "shops", KZ_SETTING_LIST) == 0)
                check_shops(x, s);
        } else
            report(x, s, NULL, "unknown top-level setting '%s' (expected kizuna, shops)", name);
    }
}

/* Defaults that depend on other settings, filled once everything is read. */
static void finish(ctx *x)
{
    cfg *c = x->c;
    if (!x->p->path_given) {
        const char *text = KZ_DEFAULT_PLUGIN_PATH;
        for (;;) {
            size_t len = strcspn(text, ":");
            if (len > 0)
                push_path(x, NULL, "kizuna.plugin_path", strndup(text, len));
            if (text[len] == '\0')
                break;
            text += len + 1;
        }
    }
    c->plugin_path = (const char **)x->p->paths;
    c->nplugin_path = x->p->npaths;
    for (size_t i = 0; i < c->nshops; i++) {
        if (c->shops[i].name == NULL)
            c->shops[i].name = c->shops[i].id;
        if (c->shops[i].timezone == NULL)
            c->shops[i].timezone = c->timezone;
    }
}

static cfg *cfg_new(const char *path)
{
    cfg *c = calloc(1, sizeof *c);
    cfg_priv *p = calloc(1, sizeof *p);
    if (c == NULL || p == NULL || (p->path = strdup(path)) == NULL ||
        (p->dir = dir_of(path)) == NULL) {
        free(p ? p->path : NULL);
        free(p);
        free(c);
        return NULL;
    }
    config_init(&p->lc);
    config_set_destructor(&p->lc, free); /* frees kz_setting handles in hooks */
    /* @include "x.conf" then means next to the config file, like the other
     * relative paths (libconfig 1.5 then cannot include absolute paths). */
    config_set_include_dir(&p->lc, p->dir);
    pthread_mutex_init(&p->mu, NULL);
    *c = (cfg){.path = p->path,
               .listen = "127.0.0.1:8080",
               .store_url = "sqlite:var/kizuna.db",
               .timezone = "Asia/Tokyo",
               .log_level = KZ_LOG_INFO,
               .workers = 2,
               .batch = 256,
               .max_body = 1048576,
               .sync_mode = SYNC_FULL,
               .retry_attempts = 5,
               .retry_initial_ms = 1000,
               .retry_max_ms = 600000,
               .retention_events_ms = 30 * 86400000LL,
               .retention_sends_ms = 90 * 86400000LL,
               .sandbox = {.listen = "127.0.0.1:8081",
                           .store_url = "sqlite:var/sandbox.db",
                           .error_status = 500,
                           .embedded = 1},
               .priv = p};
    return c;
}

/* Reports why path cannot be read, with the system's reason (libconfig only
 * says "file I/O error"); 0 if it can. */
static int check_readable(const char *path, diag *d)
{
    struct stat st;
    FILE *f = NULL;
    int err = 0;
    if (stat(path, &st) != 0)
        err = errno;
    else if (S_ISDIR(st.st_mode))
        err = EISDIR; /* fopen would succeed on a directory */
    else if ((f = fopen(path, "r")) == NULL)
        err = errno;
    else
        fclose(f);
    if (err != 0)
        diag_add(d, "%s: cannot read: %s", path, strerror(err));
    return err;
}

static void report_parse_error(const cfg *c, diag *d)
{
    const config_t *lc = &((const cfg_priv *)c->priv)->lc;
    const char *file = config_error_file(lc) ? config_error_file(lc) : c->path;
    const char *text = config_error_text(lc) ? config_error_text(lc) : "unknown error";
    if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
        diag_add(d, "%s: cannot read: %s", file, text);
    else if (strcmp(text, "syntax error") == 0) /* avoid "syntax error: syntax error" */
        diag_add(d, "%s:%d: syntax error", file, config_error_line(lc));
    else
        diag_add(d, "%s:%d: syntax error: %s", file, config_error_line(lc), text);
}

int cfg_load(const char *path, cfg **out, diag *d)
{
    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL || d == NULL)
        return KZ_EINVAL;
    if (check_readable(path, d) != 0)
        return KZ_EINVAL;
    cfg *c = cfg_new(path);
    if (c == NULL) {
        diag_add(d, "%s: out of memory", path);
        return KZ_ENOMEM;
    }
    cfg_priv *p = c->priv;
    if (!config_read_file(&p->lc, path)) {
        report_parse_error(c, d);
        cfg_free(c);
        return KZ_EINVAL;
    }
    ctx x = {.c = c, .p = p, .d = d};
    check_root(&x, config_root_setting(&p->lc));
    finish(&x);
    *out = c;
    return 0;
}

void cfg_free(cfg *c)
{
    if (c == NULL)
        return;
    cfg_priv *p = c->priv;
    for (size_t i = 0; i < c->nshops; i++) {
        free(c->shops[i].plugins);
        free(c->shops[i].line_rates);
        free(c->shops[i].friend_attrs);
        free(c->shops[i].delivery.quiet);
    }
    free(c->shops);
    free(c->sandbox.rates);
    for (size_t i = 0; i < p->npaths; i++)
        free(p->paths[i]);
    free(p->paths);
    config_destroy(&p->lc);
    pthread_mutex_destroy(&p->mu);
    free(p->dir);
    free(p->path);
    free(p);
    free(c);
}

/* ---- plugin schema ------------------------------------------------------ */

static const kz_setting_spec *find_spec(const kz_setting_spec *specs, const char *key)
{
    for (; specs != NULL && specs->key != NULL; specs++)
        if (strcmp(specs->key, key) == 0)
            return specs;
    return NULL;
}

static const char *spec_names(const kz_setting_spec *specs, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; specs != NULL && specs->key != NULL && used < len; specs++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", specs->key);
    return buf;
}

static void check_plugin_key(ctx *x, config_setting_t *s, const kz_setting_spec *specs)
{
    const char *name = config_setting_name(s);
    const kz_setting_spec *spec = find_spec(specs, name);
    char known[512];
    if (spec != NULL)
        check_value(x, s, name, spec->type);
    else if (spec_names(specs, known, sizeof known)[0] != '\0')
        report(x, s, NULL, "unknown setting '%s' (known: %s)", name, known);
    else
        report(x, s, NULL, "unknown setting '%s' (this plugin takes no settings)", name);
}

/* Deep copy of src as a new child `name` of parent (name ignored in lists). */
static config_setting_t *copy_setting(config_setting_t *parent, const char *name,
                                      const config_setting_t *src)
{
    int t = config_setting_type(src);
    config_setting_t *dst = config_setting_add(parent, name, t);
    int ok = dst != NULL;
    if (ok && t == CONFIG_TYPE_INT)
        ok = config_setting_set_int(dst, config_setting_get_int(src));
    else if (ok && t == CONFIG_TYPE_INT64)
        ok = config_setting_set_int64(dst, config_setting_get_int64(src));
    else if (ok && t == CONFIG_TYPE_FLOAT)
        ok = config_setting_set_float(dst, config_setting_get_float(src));
    else if (ok && t == CONFIG_TYPE_BOOL)
        ok = config_setting_set_bool(dst, config_setting_get_bool(src));
    else if (ok && t == CONFIG_TYPE_STRING)
        ok = config_setting_set_string(dst, config_setting_get_string(src));
    for (int i = 0; ok && config_setting_is_aggregate(src) && i < config_setting_length(src); i++) {
        const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
        ok = copy_setting(dst, config_setting_name(e), e) != NULL;
    }
    return ok ? dst : NULL;
}

/* Adds spec's default literal under group g, with line 0. A bad literal is
 * the plugin's bug, reported against the group so `kizuna check` shows it. */
static void add_default(ctx *x, config_setting_t *g, const kz_setting_spec *spec)
{
    config_t tmp;
    char *text = NULL;
    config_init(&tmp);
    if (asprintf(&text, "v = %s;", spec->default_value) < 0)
        text = NULL;
    const config_setting_t *v =
        text && config_read_string(&tmp, text) ? config_lookup(&tmp, "v") : NULL;
    if (v == NULL)
        report(x, g, NULL, "plugin bug: default for '%s' is not a valid value: %s", spec->key,
               spec->default_value);
    else if (!type_fits(config_setting_type(v), spec->type))
        report(x, g, NULL, "plugin bug: default for '%s' is %s, declared as %s", spec->key,
               got_name(config_setting_type(v)), want_name(spec->type));
    else if (copy_setting(g, spec->key, v) == NULL) {
        config_setting_remove(g, spec->key); /* drop a partial copy */
        report(x, g, NULL, "cannot add default for '%s'", spec->key);
    } else
        check_value(x, config_setting_get_member(g, spec->key), spec->key, spec->type);
    config_destroy(&tmp);
    free(text);
}

static void check_plugin_spec(ctx *x, config_setting_t *g, const kz_setting_spec *spec)
{
    if (spec->type <= KZ_SETTING_NONE || spec->type > KZ_SETTING_GROUP)
        report(x, g, NULL, "plugin bug: setting '%s' has unknown type %d", spec->key, spec->type);
    else if (config_setting_get_member(g, spec->key) != NULL)
        return;
    else if (spec->required)
        report(x, g, NULL, "missing required setting '%s'", spec->key);
    else if (spec->default_value != NULL)
        add_default(x, g, spec);
}

int cfg_check_plugin(cfg *c, const cfg_shop *shop, const cfg_plugin_use *use, const kz_plugin *desc,
                     diag *d)
{
    if (c == NULL || shop == NULL || use == NULL || use->setting == NULL || d == NULL)
        return 0;
    ctx x = {.c = c, .p = c->priv, .d = d, .h = use->setting};
    snprintf(x.prefix, sizeof x.prefix, "shop '%s': plugin '%s': ", shop->id, use->name);
    config_setting_t *g = use->setting->node;
    const kz_setting_spec *specs = desc ? desc->settings : NULL;
    for (int i = 0; i < config_setting_length(g); i++)
        check_plugin_key(&x, config_setting_get_elem(g, (unsigned)i), specs);
    for (; specs != NULL && specs->key != NULL; specs++)
        check_plugin_spec(&x, g, specs);
    return x.errors;
}

void cfg_plugin_error(const cfg *c, const cfg_shop *shop, const cfg_plugin_use *use, diag *d,
                      const char *msg)
{
    if (c == NULL || shop == NULL || use == NULL || d == NULL)
        return;
    /* The group's own file: it may come from an @include. */
    const char *file = use->setting ? file_of(c, use->setting->node) : c->path;
    diag_add(d, "%s:%d: shop '%s': plugin '%s': %s", file, use->line, shop->id, use->name,
             msg ? msg : "failed");
}

/* ---- accessors (any thread after checking) ------------------------------ */

const kz_setting *cfg_setting_child(const kz_setting *s, const char *key)
{
    if (s == NULL || key == NULL || !config_setting_is_group(s->node))
        return NULL;
    return wrap(s, config_setting_get_member(s->node, key));
}

const kz_setting *cfg_setting_elem(const kz_setting *s, size_t i)
{
    if (s == NULL || !config_setting_is_aggregate(s->node) || i > UINT_MAX)
        return NULL;
    return wrap(s, config_setting_get_elem(s->node, (unsigned)i));
}

size_t cfg_setting_count(const kz_setting *s)
{
    if (s == NULL || !config_setting_is_aggregate(s->node))
        return 0;
    return (size_t)config_setting_length(s->node);
}

int cfg_setting_type(const kz_setting *s)
{
    return s ? kz_type_of(config_setting_type(s->node)) : KZ_SETTING_NONE;
}

const char *cfg_setting_name(const kz_setting *s)
{
    return s ? config_setting_name(s->node) : NULL;
}

int cfg_setting_line(const kz_setting *s)
{
    return s ? (int)config_setting_source_line(s->node) : 0;
}

int cfg_setting_string(const kz_setting *s, const char **out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (config_setting_type(s->node) != CONFIG_TYPE_STRING)
        return KZ_ETYPE;
    *out = config_setting_get_string(s->node);
    return 0;
}

int cfg_setting_int(const kz_setting *s, int64_t *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (kz_type_of(config_setting_type(s->node)) != KZ_SETTING_INT)
        return KZ_ETYPE;
    *out = config_setting_get_int64(s->node);
    return 0;
}

int cfg_setting_float(const kz_setting *s, double *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    int t = kz_type_of(config_setting_type(s->node));
    if (t == KZ_SETTING_INT)
        *out = (double)config_setting_get_int64(s->node);
    else if (t == KZ_SETTING_FLOAT)
        *out = config_setting_get_float(s->node);
    else
        return KZ_ETYPE;
    return 0;
}

int cfg_setting_bool(const kz_setting *s, int *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (config_setting_type(s->node) != CONFIG_TYPE_BOOL)
        return KZ_ETYPE;
    *out = config_setting_get_bool(s->node) ? 1 : 0;
    return 0;
}

int cfg_setting_duration_ms(const kz_setting *s, int64_t *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (config_setting_type(s->node) != CONFIG_TYPE_STRING)
        return KZ_ETYPE;
    return clock_parse_duration(config_setting_get_string(s->node), out) == 0 ? 0 : KZ_EINVAL;
}

/* "scenarios[0].steps[1].after": the path from the plugin group down to n. */
static void setting_path(const config_setting_t *n, const config_setting_t *root, char *buf,
                         size_t len)
{
    const config_setting_t *parent = config_setting_parent(n);
    if (n == root || parent == NULL) {
        buf[0] = '\0';
        return;
    }
    setting_path(parent, root, buf, len);
    size_t used = strlen(buf);
    if (config_setting_is_group(parent))
        snprintf(buf + used, len - used, "%s%s", used ? "." : "", config_setting_name(n));
    else
        snprintf(buf + used, len - used, "[%d]", config_setting_index(n));
}

int cfg_setting_error(const kz_setting *s, char *err, size_t errlen, const char *msg)
{
    if (err == NULL || errlen == 0)
        return KZ_EINVAL;
    if (msg == NULL)
        msg = "invalid setting";
    if (s == NULL) {
        snprintf(err, errlen, "%s", msg);
        return KZ_EINVAL;
    }
    char path[512];
    setting_path(s->node, s->root, path, sizeof path);
    snprintf(err, errlen, "%s:%d: shop '%s': plugin '%s': %s%s%s", file_of(s->c, s->node),
             line_of(s->node), s->shop, s->plugin, path, path[0] ? ": " : "", msg);
    return KZ_EINVAL;
}
