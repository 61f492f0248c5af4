#include "timerapi.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "host.h"
#include "log.h"
#include "store.h"

static int key_check(const char *key)
{
    if (key == NULL || key[0] == '\0')
        return KZ_EINVAL;
    return strlen(key) > TIMER_KEY_MAX ? KZ_ETOOBIG : 0;
}

int timerapi_set(kz_ctx *ctx, const char *key, int64_t due_ms, const char *topic, const char *user,
                 const char *json, size_t len)
{
    if (!host_ctx_live(ctx, "kz_timer_set"))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc == 0)
        rc = host_event_check("kz_timer_set", topic, &json, &len);
    if (rc != 0 || (rc = host_ctx_writable(ctx, "kz_timer_set")) != 0)
        return rc;
    /* the store binds NUL-terminated text; the plugin's JSON has a length */
    char *payload = strndup(json, len), err[256];
    if (payload == NULL)
        return KZ_ENOMEM;
    store_timer t = {.shop = ctx->inst->shop_id,
                     .instance = ctx->inst->id,
                     .key = key,
                     .due_ms = due_ms,
                     .topic = topic,
                     .user = user,
                     .payload = payload,
                     .created_ms = clock_now_ms()};
    rc = store_timer_set(ctx->st, &t, err, sizeof err);
    free(payload);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "kz_timer_set %s: %s", key, err);
    return rc;
}

int timerapi_cancel(kz_ctx *ctx, const char *key)
{
    if (!host_ctx_live(ctx, "kz_timer_cancel"))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc != 0 || (rc = host_ctx_writable(ctx, "kz_timer_cancel")) != 0)
        return rc;
    char err[256];
    rc = store_timer_cancel(ctx->st, ctx->inst->id, key, err, sizeof err);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        log_msg(KZ_LOG_ERROR, "kz_timer_cancel %s: %s", key, err);
    return rc;
}
