#include "host.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "payload.h"
#include "topic.h"

/* A ctx is usable only while its handler runs, on the handler's thread. */
static int ctx_live(const kz_ctx *ctx, const char *what)
{
    if (ctx != NULL && ctx->valid && pthread_equal(ctx->thread, pthread_self()))
        return 1;
    log_msg(KZ_LOG_ERROR,
            "%s called with a kz_ctx that is not live (used after its handler "
            "returned or from another thread)",
            what);
    return 0;
}

/* Handler effects sit between a savepoint opened on the first write and its
 * release by the bus; reads need none. */
static int ctx_writable(kz_ctx *ctx, const char *what)
{
    if (!ctx_live(ctx, what))
        return KZ_ESTATE;
    if (ctx->st == NULL)
        return KZ_ENOTSUP;
    if (ctx->savepoint_open)
        return 0;
    char err[256];
    int rc = store_savepoint(ctx->st, err, sizeof err);
    if (rc != 0) {
        log_msg(KZ_LOG_ERROR, "%s: %s", what, err);
        return rc;
    }
    ctx->savepoint_open = 1;
    return 0;
}

/* 0, or the code host.h promises for a bad key. */
static int key_check(const char *key)
{
    if (key == NULL || key[0] == '\0')
        return KZ_EINVAL;
    return strlen(key) > KZ_KEY_MAX ? KZ_ETOOBIG : 0;
}

/* Checks shared by every kv write: live ctx first (a stale ctx is the bug to
 * report), then the arguments, then opens the savepoint. */
static int kv_write_check(kz_ctx *ctx, const char *what, const char *key, const void *val,
                          size_t len)
{
    if (!ctx_live(ctx, what))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc != 0)
        return rc;
    if (val == NULL && len > 0)
        return KZ_EINVAL;
    if (len > KZ_VALUE_MAX)
        return KZ_ETOOBIG;
    return ctx_writable(ctx, what);
}

/* ---- events ---- */

static const char *ev_topic(const kz_event *ev)
{
    return ev ? ev->se->topic : NULL;
}
static const char *ev_shop(const kz_event *ev)
{
    return ev ? ev->se->shop : NULL;
}
static const char *ev_user(const kz_event *ev)
{
    return ev ? ev->se->user : NULL;
}
static const char *ev_id(const kz_event *ev)
{
    return ev ? ev->se->uid : NULL;
}
static int64_t ev_time(const kz_event *ev)
{
    return ev ? ev->se->time_ms : 0;
}
static const char *ev_payload(const kz_event *ev, size_t *len)
{
    if (len != NULL)
        *len = ev ? ev->se->payload_len : 0;
    return ev ? ev->se->payload : NULL;
}
static uint32_t ev_attempt(const kz_event *ev)
{
    return ev ? ev->attempt : 0;
}

/* ---- shop ---- */

static kz_shop *ctx_shop(kz_ctx *ctx)
{
    return ctx_live(ctx, "kz_ctx_shop") ? &ctx->inst->shop : NULL;
}
static const char *shop_id(const kz_shop *shop)
{
    return shop ? shop->inst->shop_id : NULL;
}
static const char *shop_timezone(const kz_shop *shop)
{
    return shop ? shop->inst->timezone : NULL;
}

static int subscribe(kz_shop *shop, const char *pattern)
{
    if (shop == NULL || !shop->inst->in_shop_open) {
        log_msg(KZ_LOG_ERROR, "kz_subscribe is only allowed in shop_open");
        return KZ_ESTATE;
    }
    return bus_subscribe(shop->inst, pattern);
}

/* ---- publish ---- */

/* Ids of published events derive from the handled event's, so a redelivered
 * handler republishes the same ids and the store's (shop, uid) uniqueness
 * keeps them single. */
static void derive_uid(const kz_ctx *ctx, char *out, size_t outlen)
{
    const char *parent = ctx->ev->se->uid;
    if (strlen(parent) > 160) {
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = parent; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        snprintf(out, outlen, "h%016llx/%s/%u", (unsigned long long)h, ctx->inst->p->name,
                 ctx->published);
        return;
    }
    snprintf(out, outlen, "%s/%s/%u", parent, ctx->inst->p->name, ctx->published);
}

static int publish(kz_ctx *ctx, const char *topic, const char *user, const char *json, size_t len)
{
    char err[256];
    if (!ctx_live(ctx, "kz_publish"))
        return KZ_ESTATE;
    if (!topic_valid(topic)) {
        log_msg(KZ_LOG_ERROR, "kz_publish: invalid topic '%s'", topic ? topic : "(null)");
        return KZ_EINVAL;
    }
    if (json == NULL || len == 0) {
        json = "{}";
        len = 2;
    }
    int rc = payload_check(json, len, err, sizeof err);
    if (rc != 0) {
        log_msg(KZ_LOG_ERROR, "kz_publish %s: %s", topic, err);
        return rc;
    }
    if ((rc = ctx_writable(ctx, "kz_publish")) != 0)
        return rc;
    char uid[256];
    ctx->published++;
    derive_uid(ctx, uid, sizeof uid);
    rc = store_event_append(ctx->st, ctx->inst->shop_id, uid, topic, user, clock_now_ms(), json,
                            len, NULL, err, sizeof err);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "kz_publish %s: %s", topic, err);
    return rc;
}

/* ---- key/value ---- */

static int keep_buf(kz_ctx *ctx, void *buf)
{
    if (ctx->nkv_bufs == ctx->cap_kv_bufs) {
        size_t cap = ctx->cap_kv_bufs ? ctx->cap_kv_bufs * 2 : 8;
        void **grown = realloc(ctx->kv_bufs, cap * sizeof *grown);
        if (grown == NULL)
            return KZ_ENOMEM;
        ctx->kv_bufs = grown;
        ctx->cap_kv_bufs = cap;
    }
    ctx->kv_bufs[ctx->nkv_bufs++] = buf;
    return 0;
}

static int kv_get(kz_ctx *ctx, const char *key, const void **val, size_t *len)
{
    if (!ctx_live(ctx, "kz_kv_get"))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc != 0 || val == NULL)
        return rc != 0 ? rc : KZ_EINVAL;
    if (ctx->st == NULL)
        return KZ_ENOTSUP;
    void *buf = NULL;
    size_t n = 0;
    char err[256];
    rc = store_kv_get(ctx->st, ctx->inst->id, key, &buf, &n, err, sizeof err);
    if (rc == 0 && (rc = keep_buf(ctx, buf)) != 0)
        free(buf);
    if (rc == 0) {
        *val = buf;
        if (len != NULL)
            *len = n;
    } else if (rc != KZ_ENOTFOUND) {
        log_msg(KZ_LOG_ERROR, "kz_kv_get: %s", err);
    }
    return rc;
}

static int kv_put(kz_ctx *ctx, const char *key, const void *val, size_t len)
{
    int rc = kv_write_check(ctx, "kz_kv_put", key, val, len);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_put(ctx->st, ctx->inst->id, key, val ? val : "", len, err, sizeof err)) != 0)
        log_msg(KZ_LOG_ERROR, "kz_kv_put: %s", err);
    return rc;
}

static int kv_del(kz_ctx *ctx, const char *key)
{
    int rc = kv_write_check(ctx, "kz_kv_del", key, NULL, 0);
    char err[256];
    if (rc == 0 && (rc = store_kv_del(ctx->st, ctx->inst->id, key, err, sizeof err)) != 0 &&
        rc != KZ_ENOTFOUND)
        log_msg(KZ_LOG_ERROR, "kz_kv_del: %s", err);
    return rc;
}

static int kv_cas(kz_ctx *ctx, const char *key, const void *expect, size_t expect_len,
                  const void *val, size_t len)
{
    int rc = kv_write_check(ctx, "kz_kv_cas", key, val, len);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_cas(ctx->st, ctx->inst->id, key, expect, expect_len, val ? val : "", len,
                           err, sizeof err)) != 0 &&
        rc != KZ_ECONFLICT)
        log_msg(KZ_LOG_ERROR, "kz_kv_cas: %s", err);
    return rc;
}

static int kv_incr(kz_ctx *ctx, const char *key, int64_t delta, int64_t *result)
{
    int rc = kv_write_check(ctx, "kz_kv_incr", key, NULL, 0);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_incr(ctx->st, ctx->inst->id, key, delta, result, err, sizeof err)) != 0 &&
        rc != KZ_ETYPE)
        log_msg(KZ_LOG_ERROR, "kz_kv_incr: %s", err);
    return rc;
}

static const kz_host table = {
    .abi_major = KZ_ABI_MAJOR,
    .abi_minor = KZ_ABI_MINOR,
    .struct_size = (uint32_t)sizeof(kz_host),
    .log = log_plugin_line,
    .now_ms = clock_now_ms,
    .event_topic = ev_topic,
    .event_shop = ev_shop,
    .event_user = ev_user,
    .event_id = ev_id,
    .event_time_ms = ev_time,
    .event_payload = ev_payload,
    .event_attempt = ev_attempt,
    .ctx_shop = ctx_shop,
    .shop_id = shop_id,
    .shop_timezone = shop_timezone,
    .publish = publish,
    .subscribe = subscribe,
    .kv_get = kv_get,
    .kv_put = kv_put,
    .kv_del = kv_del,
    .kv_cas = kv_cas,
    .kv_incr = kv_incr,
    .setting_child = cfg_setting_child,
    .setting_elem = cfg_setting_elem,
    .setting_count = cfg_setting_count,
    .setting_type = cfg_setting_type,
    .setting_name = cfg_setting_name,
    .setting_line = cfg_setting_line,
    .setting_string = cfg_setting_string,
    .setting_int = cfg_setting_int,
    .setting_float = cfg_setting_float,
    .setting_bool = cfg_setting_bool,
    .setting_duration_ms = cfg_setting_duration_ms,
    .setting_error = cfg_setting_error,
};

const kz_host *host_table(void)
{
    return &table;
}
