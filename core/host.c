#include "host.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "apicall.h"
#include "bus.h"
#include "friendapi.h"
#include "clock.h"
#include "config.h"
#include "httpreq.h"
#include "idlist.h"
#include "jsonscan.h"
#include "kvbatch.h"
#include "log.h"
#include "message.h"
#include "payload.h"
#include "policy.h"
#include "routes.h"
#include "timerapi.h"
#include "topic.h"

/* A ctx is usable only while its handler runs, on the handler's thread. */
int host_ctx_live(const kz_ctx *ctx, const char *what)
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
 * release by the bus; reads need none. In a batch the bus runs without
 * savepoints, the first write is only noted. */
int host_ctx_writable(kz_ctx *ctx, const char *what)
{
    if (!host_ctx_live(ctx, what))
        return KZ_ESTATE;
    if (ctx->st == NULL)
        return KZ_ENOTSUP;
    if (ctx->savepoint_open)
        return 0;
    if (ctx->no_savepoint) {
        ctx->wrote = 1;
        return 0;
    }
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
    if (!host_ctx_live(ctx, what))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc != 0)
        return rc;
    if (val == NULL && len > 0)
        return KZ_EINVAL;
    if (len > KZ_VALUE_MAX)
        return KZ_ETOOBIG;
    return host_ctx_writable(ctx, what);
}

/* Writes the batch's held increments of (inst, key) (kvbatch_flush); a
 * failure also makes the bus redo the batch carefully. */
static int kv_flush_held(kz_ctx *ctx, int64_t inst, const char *key)
{
    if (!kvbatch_holds(&ctx->kb, inst, key))
        return 0;
    char err[256];
    int rc = kvbatch_flush(&ctx->kb, ctx->st, inst, key, err, sizeof err);
    if (rc != 0) {
        ctx->kb_failed = 1;
        log_msg(KZ_LOG_DEBUG, "held counter increments: %s", err);
    }
    return rc;
}

/* An increment of key held in the batch goes in before any other access to
 * the key, so a read sees it. */
static int kv_settle(kz_ctx *ctx, const char *key)
{
    return kv_flush_held(ctx, ctx->inst->id, key);
}

/* kv_write_check, then the held increments (kv_settle). */
static int kv_write_settled(kz_ctx *ctx, const char *what, const char *key, const void *val,
                            size_t len)
{
    int rc = kv_write_check(ctx, what, key, val, len);
    return rc != 0 ? rc : kv_settle(ctx, key);
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
    return host_ctx_live(ctx, "kz_ctx_shop") ? &ctx->inst->shop : NULL;
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

/* The checks every publishing slot makes: a valid topic and one JSON value
 * (none or empty: "{}", written back through json and len). */
int host_event_check(const char *what, const char *topic, const char **json, size_t *len)
{
    char err[256];
    if (!topic_valid(topic)) {
        log_msg(KZ_LOG_ERROR, "%s: invalid topic '%s'", what, topic ? topic : "(null)");
        return KZ_EINVAL;
    }
    if (*json == NULL || *len == 0) {
        *json = "{}";
        *len = 2;
    }
    int rc = payload_check(*json, *len, err, sizeof err);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "%s %s: %s", what, topic, err);
    return rc;
}

static int publish(kz_ctx *ctx, const char *topic, const char *user, const char *json, size_t len)
{
    char err[256];
    if (!host_ctx_live(ctx, "kz_publish"))
        return KZ_ESTATE;
    int rc = host_event_check("kz_publish", topic, &json, &len);
    if (rc != 0)
        return rc;
    if ((rc = host_ctx_writable(ctx, "kz_publish")) != 0)
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

int host_keep_buf(kz_ctx *ctx, void *buf)
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
    if (!host_ctx_live(ctx, "kz_kv_get"))
        return KZ_ESTATE;
    int rc = key_check(key);
    if (rc != 0 || val == NULL)
        return rc != 0 ? rc : KZ_EINVAL;
    if (ctx->st == NULL)
        return KZ_ENOTSUP;
    if ((rc = kv_settle(ctx, key)) != 0)
        return rc;
    void *buf = NULL;
    size_t n = 0;
    char err[256];
    rc = store_kv_get(ctx->st, ctx->inst->id, key, &buf, &n, err, sizeof err);
    if (rc == 0 && (rc = host_keep_buf(ctx, buf)) != 0)
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
    int rc = kv_write_settled(ctx, "kz_kv_put", key, val, len);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_put(ctx->st, ctx->inst->id, key, val ? val : "", len, err, sizeof err)) != 0)
        log_msg(KZ_LOG_ERROR, "kz_kv_put: %s", err);
    return rc;
}

static int kv_del(kz_ctx *ctx, const char *key)
{
    int rc = kv_write_settled(ctx, "kz_kv_del", key, NULL, 0);
    char err[256];
    if (rc == 0 && (rc = store_kv_del(ctx->st, ctx->inst->id, key, err, sizeof err)) != 0 &&
        rc != KZ_ENOTFOUND)
        log_msg(KZ_LOG_ERROR, "kz_kv_del: %s", err);
    return rc;
}

static int kv_cas(kz_ctx *ctx, const char *key, const void *expect, size_t expect_len,
                  const void *val, size_t len)
{
    int rc = kv_write_settled(ctx, "kz_kv_cas", key, val, len);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_cas(ctx->st, ctx->inst->id, key, expect, expect_len, val ? val : "", len,
                           err, sizeof err)) != 0 &&
        rc != KZ_ECONFLICT)
        log_msg(KZ_LOG_ERROR, "kz_kv_cas: %s", err);
    return rc;
}

/* In a batch without savepoints, an increment nobody reads now is held
 * and summed with the batch's others (kvbatch.h). */
static int kv_incr_held(kz_ctx *ctx, const char *key, int64_t delta)
{
    int rc = kvbatch_add(&ctx->kb, ctx->inst->id, key, delta);
    if (rc == KZ_ETOOBIG && (rc = kv_flush_held(ctx, -1, NULL)) == 0) /* full: write them all */
        rc = kvbatch_add(&ctx->kb, ctx->inst->id, key, delta);
    return rc;
}

static int kv_incr(kz_ctx *ctx, const char *key, int64_t delta, int64_t *result)
{
    int rc = kv_write_check(ctx, "kz_kv_incr", key, NULL, 0);
    if (rc == 0 && ctx->no_savepoint && result == NULL)
        return kv_incr_held(ctx, key, delta);
    if (rc == 0)
        rc = kv_settle(ctx, key);
    char err[256];
    if (rc == 0 &&
        (rc = store_kv_incr(ctx->st, ctx->inst->id, key, delta, result, err, sizeof err)) != 0 &&
        rc != KZ_ETYPE)
        log_msg(KZ_LOG_ERROR, "kz_kv_incr: %s", err);
    return rc;
}

/* ---- LINE sends (ABI 1.1) ---- */

#define MULTICAST_MAX 500
#define TAG_MAX 100

/* ^[UCR][0-9a-f]{32}$: a user, group or room id (users only if !any). */
int host_line_id_ok(const char *id, int any)
{
    if (id == NULL || strlen(id) != 33 ||
        !(id[0] == 'U' || (any && (id[0] == 'C' || id[0] == 'R'))))
        return 0;
    for (int i = 1; i < 33; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* LINE delivers events in standby mode to channels that must not answer. */
int host_in_standby(const kz_ctx *ctx)
{
    /* most events (timers, plugins' own) cannot say standby: no walk */
    const char *payload = ctx->ev->se->payload;
    if (strstr(payload, "standby") == NULL && strstr(payload, "\\u") == NULL)
        return 0;
    /* LINE escapes emoji, so many a message event gets here: its top-level
     * "mode" is read in place (the last one, as json-c would) */
    jscan_iter it;
    jscan_span k, v, mode = {0};
    if (jscan_open(&it, jscan_value(payload, strlen(payload)), 0, '{') != 0)
        return 0;
    while (jscan_member(&it, &k, &v) == 1)
        if (jscan_key_is(k, "mode"))
            mode = v;
    char *m = NULL;
    int standby = mode.p != NULL && jscan_string(mode, &m) == 0 && strcmp(m, "standby") == 0;
    free(m);
    return standby;
}

/* Logs why a send is refused (one line) and returns KZ_EINVAL. fmt has one
 * %s, filled with detail. */
static int send_refused(const kz_ctx *ctx, const char *fmt, const char *detail)
{
    char why[1200];
    snprintf(why, sizeof why, fmt, detail ? detail : "");
    log_msg(KZ_LOG_ERROR, "kz_line_send refused (event %s): %s", ctx->ev->se->uid, why);
    return KZ_EINVAL;
}

/* Checks the parts of a request that do not depend on the messages. */
static int check_send(const kz_ctx *ctx, const kz_line_send *r)
{
    if (r->tag != NULL && strlen(r->tag) > TAG_MAX)
        return send_refused(ctx, "tag longer than 100 bytes%s", NULL);
    switch (r->kind) {
    case KZ_LINE_REPLY:
        if (r->reply_token == NULL || r->reply_token[0] == '\0')
            return send_refused(ctx, "reply without a reply token%s", NULL);
        return 0;
    case KZ_LINE_PUSH:
        return host_line_id_ok(r->to, 1)
                   ? 0
                   : send_refused(ctx, "push to '%s': not a user, group or room id", r->to);
    case KZ_LINE_MULTICAST:
        if (r->nto == 0 || r->to_list == NULL)
            return send_refused(ctx, "multicast to nobody%s", NULL);
        for (size_t i = 0; i < r->nto; i++)
            if (!host_line_id_ok(r->to_list[i], 0))
                return send_refused(ctx, "multicast to '%s': not a user id", r->to_list[i]);
        return 0;
    case KZ_LINE_BROADCAST:
    case KZ_LINE_NARROWCAST:
        return 0;
    default:
        return send_refused(ctx, "unknown kind%s", NULL);
    }
}

/* The ABI 1.5 delivery policy fields. */
static int check_policy(const kz_ctx *ctx, const kz_line_send *r)
{
    if (r->promotional != 0 && r->promotional != 1)
        return send_refused(ctx, "promotional must be 0 or 1%s", NULL);
    if (r->over_cap != KZ_OVER_CAP_DEFER && r->over_cap != KZ_OVER_CAP_DROP)
        return send_refused(ctx, "over_cap must be KZ_OVER_CAP_DEFER or KZ_OVER_CAP_DROP%s", NULL);
    if (!r->promotional)
        return 0;
    /* caps are per friend: a send with no friend behind it cannot be counted */
    if (r->kind != KZ_LINE_PUSH && r->kind != KZ_LINE_MULTICAST)
        return send_refused(ctx, "promotional applies to push and multicast only%s", NULL);
    if (r->kind == KZ_LINE_PUSH && r->to[0] != 'U')
        return send_refused(ctx, "promotional push to '%s': not a user id", r->to);
    return 0;
}

static const char *endpoint_of(int kind)
{
    static const char *const paths[] = {"",
                                        "/v2/bot/message/reply",
                                        "/v2/bot/message/push",
                                        "/v2/bot/message/multicast",
                                        "/v2/bot/message/broadcast",
                                        "/v2/bot/message/narrowcast"};
    return paths[kind];
}

/* A narrowcast's body: its base object (recipient, filter, limit) with the
 * messages and the kind's fields added by json-c, which replaces a
 * "messages" the base may carry. */
static char *narrowcast_body(const kz_line_send *r, const char *messages, json_object *base)
{
    json_object *body = json_object_get(base);
    json_object_object_add(body, "messages", json_tokener_parse(messages));
    if (r->notification_disabled)
        json_object_object_add(body, "notificationDisabled", json_object_new_boolean(1));
    const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = text != NULL ? strdup(text) : NULL;
    json_object_put(body);
    return copy;
}

/* The JSON body of one request, as json-c would render it: the messages
 * (already in json-c's rendering), then the kind's fields; to_list[first,
 * first+n) for multicast. Written as text: ids were checked to be plain
 * hex (host_line_id_ok), and a reply token is escaped by json-c. */
static char *build_body(const kz_line_send *r, const char *messages, json_object *base,
                        size_t first, size_t n)
{
    if (base != NULL)
        return narrowcast_body(r, messages, base);
    json_object *token = r->kind == KZ_LINE_REPLY ? json_object_new_string(r->reply_token) : NULL;
    const char *tok = token != NULL
                          ? json_object_to_json_string_ext(
                                token, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                          : "";
    size_t ids = r->kind == KZ_LINE_MULTICAST ? n : r->kind == KZ_LINE_PUSH ? 1 : 0;
    size_t cap = strlen(messages) + strlen(tok) + ids * 36 + 80;
    char *body = tok != NULL ? malloc(cap) : NULL; /* NULL: json-c ran out of memory */
    if (body != NULL) {
        char *p = body + sprintf(body, "{\"messages\":%s", messages);
        if (r->notification_disabled)
            p += sprintf(p, ",\"notificationDisabled\":true");
        if (r->kind == KZ_LINE_REPLY)
            p += sprintf(p, ",\"replyToken\":%s", tok);
        if (r->kind == KZ_LINE_PUSH)
            p += sprintf(p, ",\"to\":\"%s\"", r->to);
        for (size_t i = first; r->kind == KZ_LINE_MULTICAST && i < first + n; i++)
            p += sprintf(p, "%s\"%s\"", i == first ? ",\"to\":[" : ",", r->to_list[i]);
        if (r->kind == KZ_LINE_MULTICAST)
            p += sprintf(p, n > 0 ? "]" : ",\"to\":[]");
        sprintf(p, "}");
    }
    json_object_put(token);
    return body;
}

/* One outbox row; *first_id gets the first row's id. */
static int add_row(kz_ctx *ctx, const kz_line_send *r, const char *body, int64_t *first_id)
{
    char retry_key[37], err[256];
    payload_uuid(retry_key);
    const char *event_user = ctx->ev->se->user;
    store_outbox row = {
        .shop = ctx->inst->shop_id,
        .instance = ctx->inst->id,
        .kind = r->kind,
        .endpoint = endpoint_of(r->kind),
        .body = body,
        .retry_key = r->kind == KZ_LINE_REPLY ? NULL : retry_key,
        .user = r->kind == KZ_LINE_PUSH    ? r->to
                : r->kind == KZ_LINE_REPLY ? event_user
                                           : NULL,
        .fallback_to = r->kind == KZ_LINE_REPLY && r->fallback_to_push ? event_user : NULL,
        .tag = r->tag,
        .origin = ctx->ev->se->uid,
        .created_ms = clock_now_ms(),
        .next_at_ms = clock_now_ms(),
    };
    int64_t id = 0;
    int rc = store_outbox_add(ctx->st, &row, &id, err, sizeof err);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "kz_line_send: %s", err);
    else if (*first_id == 0)
        *first_id = id;
    return rc;
}

/* The messages as LINE gets them (json-c's plain rendering of what the
 * plugin passed), checked against LINE's rules; NULL (after logging LINE's
 * reasons) when LINE would refuse them. The ctx keeps the last ones: a
 * step or a broadcast sends the same messages to friend after friend, and
 * they are checked and rendered once. The text is the ctx's, valid until
 * the next send. */
static const char *checked_messages(kz_ctx *ctx, const kz_line_send *r)
{
    size_t len = r->messages_len ? r->messages_len : strlen(r->messages);
    if (ctx->sent_canon != NULL && len == ctx->sent_in_len &&
        memcmp(r->messages, ctx->sent_in, len) == 0)
        return ctx->sent_canon;
    message_error e;
    char *canon = NULL, *in = NULL;
    int rc = message_validate_render(r->messages, len, MESSAGE_MAX_PER_REQUEST, &canon, &e);
    if (rc == KZ_EINVAL) {
        char line[1024];
        message_error_line(&e, line, sizeof line);
        send_refused(ctx, "messages refused: %s", line);
        return NULL;
    }
    if (rc != 0 || (in = malloc(len + 1)) == NULL) {
        free(canon);
        return NULL;
    }
    memcpy(in, r->messages, len);
    in[len] = '\0';
    free(ctx->sent_in);
    free(ctx->sent_canon);
    ctx->sent_in = in;
    ctx->sent_in_len = len;
    ctx->sent_canon = canon;
    return canon;
}

static json_object *narrowcast_base(const kz_ctx *ctx, const kz_line_send *r)
{
    if (r->kind != KZ_LINE_NARROWCAST || r->narrowcast == NULL)
        return NULL;
    json_object *base = json_tokener_parse(r->narrowcast);
    if (base == NULL || !json_object_is_type(base, json_type_object)) {
        json_object_put(base);
        send_refused(ctx, "narrowcast: not a JSON object: %s", r->narrowcast);
        return NULL;
    }
    return base;
}

static int queue_rows(kz_ctx *ctx, const kz_line_send *r, const char *messages, json_object *base,
                      int64_t *first_id)
{
    size_t total = r->kind == KZ_LINE_MULTICAST ? r->nto : 1;
    int rc = 0;
    for (size_t first = 0; rc == 0 && first < total; first += MULTICAST_MAX) {
        size_t n = total - first < MULTICAST_MAX ? total - first : MULTICAST_MAX;
        char *body = build_body(r, messages, base, first, n);
        rc = body != NULL ? add_row(ctx, r, body, first_id) : KZ_ENOMEM;
        free(body);
    }
    return rc;
}

/* A promotional send of a shop with a delivery policy: the recipients the
 * policy lets through now are queued here, the rest are held or dropped
 * by policy_admit in the same savepoint. *first stays 0 when none goes now. */
static int queue_promotional(kz_ctx *ctx, const cfg_shop *shop, const kz_line_send *r,
                             const char *messages, int64_t *first)
{
    /* the body without "to" (a broadcast's shape): each release adds it */
    kz_line_send shape = *r;
    shape.kind = KZ_LINE_BROADCAST;
    char *held_body = build_body(&shape, messages, NULL, 0, 0);
    const char *const *users = r->kind == KZ_LINE_PUSH ? &r->to : r->to_list;
    size_t n = r->kind == KZ_LINE_PUSH ? 1 : r->nto, nnow = 0;
    unsigned char *allowed = calloc(n, 1);
    const char **now_users = calloc(n, sizeof *now_users);
    int rc = held_body && allowed && now_users ? 0 : KZ_ENOMEM;
    char err[256] = "out of memory";
    if (rc == 0) {
        policy_send ps = {.shop = ctx->inst->shop_id,
                          .instance = ctx->inst->id,
                          .kind = r->kind,
                          .body = held_body,
                          .tag = r->tag,
                          .origin = ctx->ev->se->uid,
                          .priority = r->priority,
                          .over_cap = r->over_cap};
        rc = policy_admit(ctx->st, shop, &ps, clock_now_ms(), users, n, allowed, &nnow, err,
                          sizeof err);
    }
    if (rc == 0 && nnow > 0) {
        kz_line_send now = *r;
        if (r->kind == KZ_LINE_MULTICAST) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (allowed[i])
                    now_users[k++] = r->to_list[i];
            now.to_list = now_users;
            now.nto = k;
        }
        rc = queue_rows(ctx, &now, messages, NULL, first);
    } else if (rc != 0) {
        log_msg(KZ_LOG_ERROR, "kz_line_send: %s", err);
    }
    free(held_body);
    free(allowed);
    free(now_users);
    return rc;
}

/* A user listed twice receives once, as from LINE: split into 500s, the
 * repeats would go out in two requests, and the delivery policy would
 * count them twice. r->to_list then points into *unique (caller frees). */
static int once_each(kz_line_send *r, const char ***unique)
{
    *unique = malloc(r->nto * sizeof **unique);
    size_t n = 0;
    if (*unique == NULL || idlist_unique(r->to_list, r->nto, *unique, &n) != 0) {
        free(*unique);
        *unique = NULL;
        return KZ_ENOMEM;
    }
    r->to_list = *unique;
    r->nto = n;
    return 0;
}

static int line_send(kz_ctx *ctx, const kz_line_send *req, int64_t *outbox_id)
{
    if (outbox_id != NULL)
        *outbox_id = 0;
    if (!host_ctx_live(ctx, "kz_line_send"))
        return KZ_ESTATE;
    if (req == NULL || req->messages == NULL ||
        req->struct_size < offsetof(kz_line_send, kind) + sizeof(int))
        return KZ_EINVAL;
    kz_line_send r = {0}; /* an older plugin's shorter struct reads as zeros past its end */
    memcpy(&r, req, req->struct_size < sizeof r ? req->struct_size : sizeof r);
    if (host_in_standby(ctx)) {
        log_msg(KZ_LOG_INFO, "kz_line_send: event %s arrived in standby mode: not sent",
                ctx->ev->se->uid);
        return 0;
    }
    int rc = check_send(ctx, &r);
    const char **unique = NULL; /* a multicast's recipients, each once */
    if (rc == 0 && r.kind == KZ_LINE_MULTICAST && (rc = once_each(&r, &unique)) != 0)
        return rc;
    if (rc == 0)
        rc = check_policy(ctx, &r);
    const char *messages = rc == 0 ? checked_messages(ctx, &r) : NULL;
    json_object *base = messages != NULL ? narrowcast_base(ctx, &r) : NULL;
    if (rc == 0 && (messages == NULL || (r.kind == KZ_LINE_NARROWCAST && r.narrowcast && !base)))
        rc = KZ_EINVAL;
    if (rc == 0)
        rc = host_ctx_writable(ctx, "kz_line_send");
    int64_t first = 0;
    const cfg_shop *shop = r.promotional ? cfg_find_shop(ctx->inst->c, ctx->inst->shop_id) : NULL;
    if (rc == 0 && shop != NULL && shop->delivery.enabled)
        rc = queue_promotional(ctx, shop, &r, messages, &first);
    else if (rc == 0)
        rc = queue_rows(ctx, &r, messages, base, &first);
    json_object_put(base);
    free(unique);
    if (rc == 0) {
        ctx->queued_sends = 1;
        if (outbox_id != NULL)
            *outbox_id = first;
    }
    return rc;
}

void host_ctx_free(kz_ctx *ctx)
{
    free(ctx->kv_bufs);
    free(ctx->sent_in);
    free(ctx->sent_canon);
    ctx->kv_bufs = NULL;
    ctx->sent_in = ctx->sent_canon = NULL;
}

/* ---- plugin HTTP routes (ABI 1.2) ---- */

static int route_add(kz_shop *shop, const char *method, const char *path, kz_route_fn fn, void *arg)
{
    if (shop == NULL || !shop->inst->in_shop_open) {
        log_msg(KZ_LOG_ERROR, "kz_route is only allowed in shop_open");
        return KZ_ESTATE;
    }
    bus_instance *inst = shop->inst;
    char err[256];
    /* no bus: `kizuna check` runs shop_open only to check the setting */
    int rc = inst->b == NULL ? routes_check(method, path, err, sizeof err)
                             : routes_add(bus_routes(inst->b), shop, inst->shop_id, inst->p->name,
                                          method, path, fn, arg, err, sizeof err);
    if (rc == 0 && fn == NULL) {
        snprintf(err, sizeof err, "route '%s': no function", path);
        rc = KZ_EINVAL;
    }
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "kz_route: %s", err);
    return rc;
}

static int http_publish(kz_http *req, const char *topic, const char *user, const char *json,
                        size_t len, const char *dedupe_key)
{
    if (!httpreq_live(req, "kz_http_publish"))
        return KZ_ESTATE;
    int rc = host_event_check("kz_http_publish", topic, &json, &len);
    if (rc == 0 && (rc = httpreq_add_event(req, topic, user, json, len, dedupe_key)) != 0)
        log_msg(KZ_LOG_ERROR, "kz_http_publish %s: not queued (%d)", topic, rc);
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
    .line_send = line_send,
    .line_call = apicall_queue,
    .route = route_add,
    .http_shop = httpreq_shop,
    .http_method = httpreq_method,
    .http_path = httpreq_path,
    .http_query = httpreq_query,
    .http_header = httpreq_header,
    .http_body = httpreq_body,
    .http_publish = http_publish,
    .http_header_set = httpreq_header_set,
    .http_respond = httpreq_respond,
    .friend_get = friendapi_get,
    .friend_tag = friendapi_tag,
    .friend_has_tag = friendapi_has_tag,
    .friend_attr_set = friendapi_attr_set,
    .friend_link = friendapi_link,
    .friend_by_link = friendapi_by_link,
    .segment_compile = friendapi_segment_compile,
    .segment_match = friendapi_segment_match,
    .segment_free = friendapi_segment_free,
    .local_time = friendapi_local_time,
    .timer_set = timerapi_set,
    .timer_cancel = timerapi_cancel,
    .local_to_ms = friendapi_local_to_ms,
};

const kz_host *host_table(void)
{
    return &table;
}
