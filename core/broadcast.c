#include "broadcast.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "friendview.h"
#include "host.h"
#include "log.h"
#include "payload.h"
#include "segment.h"
#include "store.h"

static void set_str(json_object *o, const char *key, const char *val)
{
    json_object_object_add(o, key, json_object_new_string(val));
}

static void set_int(json_object *o, const char *key, int64_t val)
{
    json_object_object_add(o, key, json_object_new_int64(val));
}

static int failed(char *herr, size_t herrlen, int rc, const char *what, const char *why)
{
    snprintf(herr, herrlen, "%s: %s", what, why);
    return rc;
}

/* ---- the record (kv "broadcast:<id>") ---- */

static void record_key(const char *id, char *key, size_t len)
{
    snprintf(key, len, BROADCAST_KEY "%s", id);
}

/* *rec: the record, or NULL when the broadcast is unknown. */
static int record_load(kz_ctx *ctx, const char *id, json_object **rec, char *herr, size_t herrlen)
{
    char key[BROADCAST_ID_MAX + 16], err[256];
    void *val = NULL;
    size_t len = 0;
    record_key(id, key, sizeof key);
    *rec = NULL;
    int rc = store_kv_get(ctx->st, ctx->inst->id, key, &val, &len, err, sizeof err);
    if (rc == KZ_ENOTFOUND)
        return 0;
    if (rc != 0)
        return failed(herr, herrlen, rc, "read the broadcast", err);
    *rec = json_tokener_parse(val);
    free(val);
    return *rec != NULL ? 0 : failed(herr, herrlen, KZ_EFATAL, "broadcast record", "not JSON");
}

static int record_save(kz_ctx *ctx, json_object *rec, char *herr, size_t herrlen)
{
    char key[BROADCAST_ID_MAX + 16], err[256];
    record_key(payload_str(rec, "id"), key, sizeof key);
    const char *text = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = host_ctx_writable(ctx, "broadcast");
    if (rc == 0)
        rc = store_kv_put(ctx->st, ctx->inst->id, key, text, strlen(text), err, sizeof err);
    return rc == 0 ? 0 : failed(herr, herrlen, rc, "save the broadcast", err);
}

/* broadcast.done with the record's outcome (plugins may report on it). */
static int publish_done(kz_ctx *ctx, json_object *rec)
{
    json_object *p = json_object_new_object();
    set_str(p, "id", payload_str(rec, "id"));
    set_str(p, "state", payload_str(rec, "state"));
    set_int(p, "recipients", payload_int(rec, "recipients"));
    set_int(p, "chunks", payload_int(rec, "chunks"));
    const char *text = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
    int rc = host_table()->publish(ctx, "broadcast.done", NULL, text, strlen(text));
    json_object_put(p);
    return rc;
}

static int publish_continue(kz_ctx *ctx, const char *id)
{
    json_object *p = json_object_new_object();
    set_str(p, "id", id);
    const char *text = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
    int rc = host_table()->publish(ctx, "broadcast.continue", NULL, text, strlen(text));
    json_object_put(p);
    return rc;
}

/* ---- one chunk ---- */

typedef struct chunk {
    const segment *seg;
    segment_now now;
    char to[BROADCAST_CHUNK * BROADCAST_ROWS_PER_CALL][34];
    const char *to_list[BROADCAST_CHUNK * BROADCAST_ROWS_PER_CALL];
    size_t n;
    long examined;
    char last[64]; /* the cursor after this chunk */
} chunk;

static int take(void *arg, friend_view *v)
{
    chunk *c = arg;
    snprintf(c->last, sizeof c->last, "%s", v->f.user);
    c->examined++;
    if (host_line_id_ok(v->f.user, 0) && friend_view_match(c->seg, v, &c->now)) {
        memcpy(c->to[c->n], v->f.user, sizeof c->to[c->n]); /* 33 characters and NUL */
        c->to_list[c->n] = c->to[c->n];
        c->n++;
    }
    return c->n == BROADCAST_CHUNK * BROADCAST_ROWS_PER_CALL || c->examined == BROADCAST_SCAN;
}

/* The multicast of this call's recipients, through the same slot as a
 * plugin's send: checked, split into rows of 500 in recipient order, each
 * written to the outbox with its retry key in the savepoint. */
static int queue_multicast(kz_ctx *ctx, json_object *rec, const chunk *c, char *herr,
                           size_t herrlen)
{
    json_object *msgs;
    json_object_object_get_ex(rec, "messages", &msgs);
    char tag[BROADCAST_ID_MAX + 16];
    record_key(payload_str(rec, "id"), tag, sizeof tag);
    json_object *promo;
    int promotional =
        json_object_object_get_ex(rec, "promotional", &promo) && json_object_get_boolean(promo);
    const char *over = payload_str(rec, "overCap");
    kz_line_send req = {.struct_size = sizeof req,
                        .kind = KZ_LINE_MULTICAST,
                        .to_list = c->to_list,
                        .nto = c->n,
                        .messages = json_object_to_json_string_ext(msgs, JSON_C_TO_STRING_PLAIN),
                        .tag = tag,
                        .promotional = promotional,
                        .priority = promotional ? (int)payload_int(rec, "priority") : 0,
                        .over_cap = promotional && over != NULL && strcmp(over, "drop") == 0
                                        ? KZ_OVER_CAP_DROP
                                        : KZ_OVER_CAP_DEFER};
    int rc = host_table()->line_send(ctx, &req, NULL);
    return rc == 0 ? 0 : failed(herr, herrlen, rc, "queue the multicast", "refused (see the log)");
}

/* Walks from the cursor, queues what it found and moves the record on. */
static int run_chunk(kz_ctx *ctx, json_object *rec, const segment *seg, char *herr, size_t herrlen)
{
    chunk *c = calloc(1, sizeof *c); /* 170 KB of ids: not on a worker's stack */
    if (c == NULL)
        return KZ_ENOMEM;
    c->seg = seg;
    c->now = friend_view_now(ctx->inst->timezone, clock_now_ms());
    char err[256];
    const char *cursor = payload_str(rec, "cursor");
    int rc = friend_view_stream(ctx->st, ctx->inst->shop_id, cursor, 1, take, c, err, sizeof err);
    int more = rc == 1;
    if (rc < 0)
        rc = failed(herr, herrlen, rc, "read the audience", err);
    else
        rc = c->n > 0 ? queue_multicast(ctx, rec, c, herr, herrlen) : 0;
    if (rc == 0) {
        if (c->examined > 0)
            set_str(rec, "cursor", c->last);
        set_int(rec, "recipients", payload_int(rec, "recipients") + (int64_t)c->n);
        set_int(rec, "chunks",
                payload_int(rec, "chunks") +
                    (int64_t)((c->n + BROADCAST_CHUNK - 1) / BROADCAST_CHUNK));
        set_str(rec, "state", more ? "sending" : "done");
    }
    free(c);
    return rc;
}

/* The next chunk of a broadcast in state queued or sending. */
static int next_chunk(kz_ctx *ctx, json_object *rec, char *herr, size_t herrlen)
{
    segment *seg = NULL;
    segment_error e = {0};
    const cfg_shop *cs = cfg_find_shop(ctx->inst->c, ctx->inst->shop_id);
    int rc = 0;
    if (friend_view_compile(cs, payload_str(rec, "segment"), &seg, &e) != 0) {
        /* the CLI checked it; the shop's attributes changed since */
        char why[320];
        snprintf(why, sizeof why, "segment, column %d: %s", e.column, e.message);
        set_str(rec, "state", "failed");
        set_str(rec, "error", why);
    } else {
        rc = run_chunk(ctx, rec, seg, herr, herrlen);
    }
    segment_free(seg);
    const char *state = payload_str(rec, "state");
    if (rc == 0)
        rc = record_save(ctx, rec, herr, herrlen);
    if (rc == 0)
        rc = strcmp(state, "sending") == 0 ? publish_continue(ctx, payload_str(rec, "id"))
                                           : publish_done(ctx, rec);
    return rc;
}

/* ---- the topics ---- */

static json_object *new_record(json_object *p, int64_t at)
{
    json_object *msgs;
    if (payload_str(p, "id") == NULL || strlen(payload_str(p, "id")) > BROADCAST_ID_MAX ||
        payload_str(p, "segment") == NULL || !json_object_object_get_ex(p, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array))
        return NULL;
    json_object *rec = json_object_new_object();
    set_str(rec, "id", payload_str(p, "id"));
    set_str(rec, "segment", payload_str(p, "segment"));
    json_object_object_add(rec, "messages", json_object_get(msgs));
    set_str(rec, "requestedBy", payload_str(p, "requestedBy") ? payload_str(p, "requestedBy") : "");
    set_int(rec, "requestedAt", at);
    set_int(rec, "estimate", payload_int(p, "estimate"));
    json_object *promo;
    if (json_object_object_get_ex(p, "promotional", &promo) && json_object_get_boolean(promo)) {
        json_object_object_add(rec, "promotional", json_object_new_boolean(1));
        int64_t prio = payload_int(p, "priority"); /* the CLI allows -1000..1000 */
        set_int(rec, "priority", prio < -1000 ? -1000 : prio > 1000 ? 1000 : prio);
        const char *over = payload_str(p, "overCap");
        set_str(rec, "overCap", over != NULL && strcmp(over, "drop") == 0 ? "drop" : "defer");
    }
    set_str(rec, "cursor", "");
    set_int(rec, "recipients", 0);
    set_int(rec, "chunks", 0);
    set_str(rec, "state", "queued");
    return rec;
}

/* A broadcast for later: its record says "scheduled" and a durable timer
 * (key "broadcast:<id>") publishes broadcast.continue at notBefore, so a
 * restart neither loses nor doubles the start. */
static int schedule(kz_ctx *ctx, json_object *rec, int64_t not_before, char *herr, size_t herrlen)
{
    char key[BROADCAST_ID_MAX + 16], payload[BROADCAST_ID_MAX + 16];
    record_key(payload_str(rec, "id"), key, sizeof key);
    snprintf(payload, sizeof payload, "{\"id\":\"%s\"}", payload_str(rec, "id"));
    set_str(rec, "state", "scheduled");
    set_int(rec, "notBefore", not_before);
    int rc = record_save(ctx, rec, herr, herrlen);
    if (rc == 0)
        rc = host_table()->timer_set(ctx, key, not_before, "broadcast.continue", NULL, payload,
                                     strlen(payload));
    return rc == 0 ? 0 : failed(herr, herrlen, rc, "schedule the broadcast", "(see the log)");
}

static int on_requested(kz_ctx *ctx, json_object *p, int64_t at, char *herr, size_t herrlen)
{
    json_object *rec = NULL;
    int rc = record_load(ctx, payload_str(p, "id"), &rec, herr, herrlen);
    int64_t not_before = payload_int(p, "notBefore");
    if (rc == 0 && rec != NULL) {
        log_msg(KZ_LOG_WARN, "broadcast %s was requested already: ignored", payload_str(p, "id"));
    } else if (rc == 0 && (rec = new_record(p, at)) == NULL) {
        rc = failed(herr, herrlen, KZ_EFATAL, "broadcast.requested",
                    "needs id (up to 64 bytes), segment and messages (an array)");
    } else if (rc == 0 && not_before > clock_now_ms()) {
        rc = schedule(ctx, rec, not_before, herr, herrlen);
    } else if (rc == 0) {
        rc = next_chunk(ctx, rec, herr, herrlen);
    }
    json_object_put(rec);
    return rc;
}

static int on_continue(kz_ctx *ctx, const char *id, char *herr, size_t herrlen)
{
    json_object *rec = NULL;
    int rc = record_load(ctx, id, &rec, herr, herrlen);
    const char *state = payload_str(rec, "state");
    /* cancelled (or done) meanwhile: the chain ends here; a scheduled one
     * starts (its timer fired) */
    if (rc == 0 && state != NULL &&
        (strcmp(state, "sending") == 0 || strcmp(state, "scheduled") == 0)) {
        set_str(rec, "state", "sending");
        rc = next_chunk(ctx, rec, herr, herrlen);
    }
    json_object_put(rec);
    return rc;
}

static int on_cancel(kz_ctx *ctx, const char *id, char *herr, size_t herrlen)
{
    json_object *rec = NULL;
    int rc = record_load(ctx, id, &rec, herr, herrlen);
    const char *state = payload_str(rec, "state");
    if (rc == 0 && state != NULL && strcmp(state, "scheduled") == 0) {
        char key[BROADCAST_ID_MAX + 16];
        record_key(id, key, sizeof key);
        int trc = host_table()->timer_cancel(ctx, key);
        if (trc != 0 && trc != KZ_ENOTFOUND)
            rc = failed(herr, herrlen, trc, "cancel the broadcast's timer", "(see the log)");
    }
    if (rc == 0 && state != NULL &&
        (strcmp(state, "sending") == 0 || strcmp(state, "queued") == 0 ||
         strcmp(state, "scheduled") == 0)) {
        set_str(rec, "state", "cancelled");
        set_int(rec, "cancelledAt", clock_now_ms());
        rc = record_save(ctx, rec, herr, herrlen);
        if (rc == 0)
            rc = publish_done(ctx, rec);
    } else if (rc == 0) {
        log_msg(KZ_LOG_WARN, "broadcast %s: nothing to cancel (%s)", id,
                state != NULL ? state : "unknown");
    }
    json_object_put(rec);
    return rc;
}

static int broadcast_handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err,
                            size_t errlen)
{
    (void)instance;
    const store_event *se = ev->se;
    if (strcmp(se->topic, "broadcast.done") == 0)
        return 0; /* its own outcome, for plugins */
    json_object *p = json_tokener_parse(se->payload);
    const char *id = payload_str(p, "id");
    int rc = 0;
    if (id == NULL)
        rc = failed(err, errlen, KZ_EFATAL, se->topic, "no \"id\"");
    else if (strcmp(se->topic, "broadcast.requested") == 0)
        rc = on_requested(ctx, p, se->time_ms, err, errlen);
    else if (strcmp(se->topic, "broadcast.continue") == 0)
        rc = on_continue(ctx, id, err, errlen);
    else if (strcmp(se->topic, "broadcast.cancel") == 0)
        rc = on_cancel(ctx, id, err, errlen);
    json_object_put(p);
    return rc;
}

static const char *const subscriptions[] = {"broadcast.*", NULL};

static plugin the_plugin = {
    .desc = {.abi_major = KZ_ABI_MAJOR,
             .abi_minor = KZ_ABI_MINOR,
             .struct_size = sizeof(kz_plugin),
             .name = BROADCAST_INSTANCE,
             .version = "1",
             .vendor = "kizuna",
             .license = "core",
             .description = "segment broadcasts as chunked multicasts",
             .handle = broadcast_handle,
             .subscriptions = subscriptions},
    .name = BROADCAST_INSTANCE,
    .path = "(built in)",
    .abi_major = KZ_ABI_MAJOR,
    .abi_minor = KZ_ABI_MINOR,
};

const plugin *broadcast_plugin(const cfg *c)
{
    the_plugin.state = (void *)c;
    return &the_plugin;
}
