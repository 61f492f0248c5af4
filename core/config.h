/*
 * config — reads and checks the libconfig file.
 *
 *   kizuna: { listen = "127.0.0.1:8080"; store = "sqlite:var/kizuna.db";
 *             timezone = "Asia/Tokyo"; plugin_path = [ "…" ]; … };
 *   shops = ( { id = "solia"; line = { … }; plugins = { hello = { … }; }; } );
 *
 * Every problem is reported, not just the first, one line each:
 *   FILE:LINE: message                                   (file-level)
 *   FILE:LINE: kizuna.workers: message                   (core setting)
 *   FILE:LINE: shop 'x': message                         (shop-level)
 *   FILE:LINE: shop 'x': plugin 'y': message             (plugin setting)
 *   FILE:LINE: shop 'x': plugin 'y': key.path: message   (nested key)
 *
 * Secrets: a value "env:NAME" or "file:PATH" of a secret key (line.* keys,
 * plugin keys typed KZ_SETTING_SECRET) is replaced in memory by the
 * variable's value or the file's content (one trailing newline dropped) and
 * registered with log_add_secret(). PATH is relative to the config file's
 * directory. An inline secret is accepted.
 *
 * Ownership: cfg_load returns a cfg the caller frees with cfg_free; every
 * string and kz_setting handle in it lives until then.
 * Thread: loading and checking on one thread; the kz_setting accessors may
 * then be called from any thread (the tree is not modified after checking).
 */
#ifndef KIZUNA_CORE_CONFIG_H
#define KIZUNA_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/plugin.h>

#include "diag.h"

/* One plugin enabled by one shop: `plugins = { NAME = { … }; }`. */
typedef struct cfg_plugin_use {
    const char *name;
    int line;
    kz_setting *setting; /* the group, as plugins see it */
} cfg_plugin_use;

/* One declared friend attribute: shops[i].friends.attributes = { name =
 * "string"|"number"|"bool"|"date"; } (docs/friends.md). */
typedef struct cfg_friend_attr {
    const char *name; /* [a-z_][a-z0-9_]*, at most 64 bytes */
    int type;         /* CFG_ATTR_* */
} cfg_friend_attr;

enum { CFG_ATTR_STRING = 0, CFG_ATTR_NUMBER = 1, CFG_ATTR_DATE = 2, CFG_ATTR_BOOL = 3 };

/* One quiet-hours window of a shop's delivery policy: from `from_min` on
 * each day in `days` until `to_min` (minutes after local midnight); a
 * window with to_min <= from_min ends on the next day (docs/delivery.md). */
typedef struct cfg_quiet {
    unsigned days; /* bit d: the window starts on weekday d (0 = Sunday, as tm_wday) */
    int from_min;  /* 0..1439 */
    int to_min;    /* 0..1439, != from_min */
} cfg_quiet;

/* delivery = { quiet_hours = ( … ); caps = { day; week; }; max_defer; }:
 * the shop's delivery policy for promotional sends (core/policy.h). */
typedef struct cfg_delivery {
    int enabled;      /* the shop has a delivery group; 0: everything passes */
    cfg_quiet *quiet; /* quiet_hours, in config order */
    size_t nquiet;
    int64_t cap_day;      /* promotional sends per friend per shop-local day; 0: no cap */
    int64_t cap_week;     /* per shop-local week, Monday to Sunday; 0: no cap */
    int64_t max_defer_ms; /* a send held longer than this is dropped; default 7 d */
} cfg_delivery;

typedef struct cfg_shop {
    const char *id;       /* [a-z0-9_-]+, unique */
    const char *name;     /* display name; defaults to id */
    const char *timezone; /* the shop's, else kizuna.timezone */
    int line;
    /* line = { … } (used from the LINE issue on; NULL when absent) */
    const char *line_channel_secret;     /* resolved */
    const char *line_access_token;       /* resolved */
    const char *line_api;                /* "sandbox" or a base URL */
    struct cfg_sandbox_rate *line_rates; /* line.rate_limits = { push = N; … } */
    size_t nline_rates;
    cfg_plugin_use *plugins;
    size_t nplugins;
    cfg_friend_attr *friend_attrs; /* friends.attributes, in config order */
    size_t nfriend_attrs;
    cfg_delivery delivery; /* delivery = { … } */
} cfg_shop;

/* One endpoint's rate limit: kizuna.sandbox.rate_limits (what the sandbox
 * enforces) and a shop's line.rate_limits (what kizuna's sender keeps to),
 * in requests per LINE's window for that endpoint (a second; an hour for
 * broadcast and narrowcast). */
typedef struct cfg_sandbox_rate {
    const char *endpoint; /* reply, push, multicast, narrowcast, broadcast, validate,
                             progress, profile, quota, info, link_token */
    int64_t limit;        /* requests per the endpoint's LINE window, >= 1 */
} cfg_sandbox_rate;

/* kizuna.sandbox = { … }: the built-in LINE stand-in (docs/sandbox.md). */
typedef struct cfg_sandbox {
    const char *listen;      /* default "127.0.0.1:8081" */
    const char *store_url;   /* default "sqlite:var/sandbox.db" */
    int64_t monthly_limit;   /* messages per month per shop; 0 (default) = unlimited */
    double error_rate;       /* faults.error_rate, 0..1, default 0 */
    int error_status;        /* faults.status, 400..599, default 500 */
    int latency_ms;          /* faults.latency_ms, 0..600000, default 0 */
    double drop_rate;        /* faults.drop_rate, 0..1, default 0 */
    cfg_sandbox_rate *rates; /* rate_limits = { push = N; … } */
    size_t nrates;
    int embedded; /* embedded = true (default): `kizuna serve` runs the sandbox
                     when a shop uses api = "sandbox"; false: run it apart
                     with `kizuna sandbox serve` */
} cfg_sandbox;

typedef struct cfg {
    const char *path;         /* as given */
    const char *listen;       /* kizuna.listen, default "127.0.0.1:8080" */
    const char *store_url;    /* kizuna.store, default "sqlite:var/kizuna.db" */
    const char *timezone;     /* kizuna.timezone, default "Asia/Tokyo" */
    int log_level;            /* kizuna.log_level: "debug|info|warn|error", default info */
    const char **plugin_path; /* kizuna.plugin_path: string or list; default
                                 KZ_DEFAULT_PLUGIN_PATH (build dir, then install dir);
                                 relative entries are relative to the config file */
    size_t nplugin_path;
    int workers;              /* kizuna.workers, 1..64, default 2 */
    int batch;                /* kizuna.batch: events per group commit, 1..10000, default 256 */
    int sync_mode;            /* kizuna.durability: "full" (default) | "normal" */
    int retry_attempts;       /* kizuna.retry.attempts: failures before dead, 1..100, default 5 */
    int64_t retry_initial_ms; /* kizuna.retry.initial, default "1s" */
    int64_t retry_max_ms;     /* kizuna.retry.max, default "10m" */
    size_t max_body;          /* kizuna.max_body: webhook body limit in bytes,
                                 1024..67108864, default 1048576 */
    const char *admin_token;  /* kizuna.admin_token (secret, resolved); NULL: no admin API */
    int admin_remote;         /* kizuna.admin_remote: admin API from any address, default
                                 false (loopback only) */
    cfg_sandbox sandbox;      /* kizuna.sandbox */
    /* kizuna.sender = { timeout; deadline; max_in_flight; } (0: the sender's
     * defaults: 30 s, 24 h, 16) */
    int64_t sender_timeout_ms;  /* one LINE request, 1s..10m */
    int64_t sender_deadline_ms; /* give a send up after, 1m..24h (LINE keeps retry keys 24 h) */
    int sender_max_in_flight;   /* concurrent LINE requests, 1..256 */
    /* kizuna.retention = { events; sends; }: handled events and finished
     * sends are deleted this long after (0: kept for good) */
    int64_t retention_events_ms; /* default 30 d */
    int64_t retention_sends_ms;  /* default 90 d */
    cfg_shop *shops;
    size_t nshops;
    void *priv; /* libconfig state */
} cfg;

/* Parses and checks everything that needs no plugin: syntax, top-level,
 * kizuna and shop keys, types, duplicate shop ids, secrets. Appends each
 * problem to d. Returns 0 and *out when the file could be parsed (even with
 * errors in d, so the caller can go on checking plugins and report all);
 * KZ_EINVAL with *out = NULL when it could not (syntax error, unreadable). */
int cfg_load(const char *path, cfg **out, diag *d);
void cfg_free(cfg *c);

/* Checks one enabled plugin's group against the descriptor's schema: unknown
 * keys, types, required keys; adds defaults for absent keys; resolves
 * secret-typed values. Appends problems to d; returns the number added. */
int cfg_check_plugin(cfg *c, const cfg_shop *shop, const cfg_plugin_use *use, const kz_plugin *desc,
                     diag *d);

/* Appends "FILE:LINE: shop 'x': plugin 'y': msg" for a plugin use. */
void cfg_plugin_error(const cfg *c, const cfg_shop *shop, const cfg_plugin_use *use, diag *d,
                      const char *msg);

/* The kz_host setting slots (same signatures as in kizuna/host.h). */
const kz_setting *cfg_setting_child(const kz_setting *s, const char *key);
const kz_setting *cfg_setting_elem(const kz_setting *s, size_t i);
size_t cfg_setting_count(const kz_setting *s);
int cfg_setting_type(const kz_setting *s);
const char *cfg_setting_name(const kz_setting *s);
int cfg_setting_line(const kz_setting *s);
int cfg_setting_string(const kz_setting *s, const char **out);
int cfg_setting_int(const kz_setting *s, int64_t *out);
int cfg_setting_float(const kz_setting *s, double *out);
int cfg_setting_bool(const kz_setting *s, int *out);
int cfg_setting_duration_ms(const kz_setting *s, int64_t *out);
/* The shop with this id, or NULL (also for a NULL c or id). Thread: any. */
const cfg_shop *cfg_find_shop(const cfg *c, const char *id);

int cfg_setting_error(const kz_setting *s, char *err, size_t errlen, const char *msg);

#endif
