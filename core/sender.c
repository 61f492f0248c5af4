/*
 * sender — sender.h on libcurl's multi interface.
 *
 * One thread loops: record the outcomes of finished requests (each in one
 * store transaction with its event), look for due rows when woken, when a
 * slot freed up or every poll_ms, start requests for the rows whose
 * (shop, endpoint) bucket has a token, then curl_multi_poll until a socket
 * is ready, a timer runs out or sender_wake/sender_stop calls
 * curl_multi_wakeup. Easy handles are kept per slot and reused, so
 * connections (kept alive, HTTP/2 over TLS when offered) are reused too.
 *
 * A reply carries no retry key: an attempt whose answer is lost may still
 * have used the token. Before a reply that may fall back to a push is sent,
 * its attempt is counted in the store; the fallback is taken only when no
 * earlier attempt (of this process or of one that crashed) can have reached
 * LINE, so a user never gets both the reply and the push.
 */

#include "sender.h"

#include "clock.h"
#include "policy.h"
#include "errbuf.h"
#include "log.h"
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/sha.h>

#define MONTHLY_LIMIT_TEXT "You have reached your monthly limit."
#define INVALID_TOKEN_TEXT "Invalid reply token"
/* The error of a call that is not repeated, counted before it is sent: a
 * row still holding it was sent by a process that stopped before the
 * answer was recorded. */
#define UNANSWERED_TEXT "sent, no answer recorded"
#define RESP_MAX (1024 * 1024)
#define RECORD_RETRY_MS 200
#define PENDING_REFRESH_MS 1000
#define RETRY_KEY_LIFE_MS (24LL * 3600 * 1000)
#define DEFER_MS 60000 /* a shop that cannot send: look at its rows again after */
#define SCAN_MAX 4096  /* due rows read at most per scan */
/* held promotional recipients decided per scan; more wait for the next */
#define RELEASE_BATCH 2000

static const char *const kind_names[] = {"",          "reply",     "push",
                                         "multicast", "broadcast", "narrowcast"};

static const char *kind_name(int kind)
{
    if (kind == OUTBOX_CALL)
        return "call";
    return kind >= KZ_LINE_REPLY && kind <= KZ_LINE_NARROWCAST ? kind_names[kind] : "unknown";
}

/* ---- rows, slots, buckets ----------------------------------------------- */

typedef struct row {
    int64_t id;
    /* body: read after the due walk (store_outbox_body), only for rows acted on */
    char *shop, *endpoint, *body, *retry_key, *user, *fallback_to, *tag;
    char *method, *content_type, *plugin; /* calls (OUTBOX_CALL) */
    size_t body_len;
    int kind, attempts, data_api;
    int64_t created_ms, deadline_ms;
} row;

enum act { ACT_NONE, ACT_FINISH, ACT_RETRY, ACT_FALLBACK };

/* What to write for a row; kept until it is written. */
typedef struct outcome {
    enum act act;
    int state, status, attempts;
    int64_t next_at;
    char *request_id, *error;
    char *payload;    /* the event's JSON, for ACT_FINISH */
    char *new_body;   /* ACT_FALLBACK */
    char new_key[37]; /* ACT_FALLBACK */
} outcome;

typedef struct slot {
    int busy;    /* a row is attached */
    int running; /* its request is in the multi handle */
    CURL *h;
    struct curl_slist *hdrs;
    row r;
    char *resp;
    size_t resp_len, resp_cap;
    char request_id[80], accepted_id[80];
    long retry_after_s; /* -1: none */
    char curl_err[CURL_ERROR_SIZE];
    struct timespec started;
    outcome out;
} slot;

/* The requests of one (shop, endpoint) still inside its span, oldest at
 * head: a ring that grows up to `limit` entries as the shop's traffic
 * needs (a quiet shop keeps a handful, not LINE's full 2,000). */
typedef struct bucket {
    char *shop;
    int kind;
    int limit;       /* requests per span */
    int64_t span_ms; /* LINE's window plus the guard */
    int64_t *sent;   /* monotonic start times; owned */
    int head, n, cap;
    int fresh; /* the newest entries: taken by this scan, not started yet */
} bucket;

struct sender {
    sender_options o;
    char *store_url, *sandbox_base;
    sender_rate *rates;
    store *st;
    CURLM *multi;
    pthread_t thread;
    int started;
    atomic_int stop, woken;
    slot *slots;
    int nslots;
    bucket *buckets;
    size_t nbuckets;
    char **warned; /* shops already warned about */
    size_t nwarned;
    int64_t next_scan_ms, token_at_ms, next_record_ms, next_pending_ms; /* monotonic */
    int64_t stop_at_ms;        /* monotonic: when sender_stop was seen */
    int scan_base, scan_limit; /* due rows read per scan */
    metric_family *m_requests, *m_duration, *m_pending;
    policy_metrics m_policy; /* families NULL without metrics */
};

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void row_free(row *r)
{
    free(r->shop);
    free(r->endpoint);
    free(r->body);
    free(r->retry_key);
    free(r->user);
    free(r->fallback_to);
    free(r->tag);
    free(r->method);
    free(r->content_type);
    free(r->plugin);
    memset(r, 0, sizeof *r);
}

static char *dup_opt(const char *v)
{
    return v ? strdup(v) : NULL;
}

static int row_copy(row *d, const store_outbox *s)
{
    memset(d, 0, sizeof *d);
    d->id = s->id;
    d->kind = s->kind;
    d->attempts = s->attempts;
    d->created_ms = s->created_ms;
    d->deadline_ms = s->deadline_ms;
    d->data_api = s->data_api;
    d->shop = strdup(s->shop);
    d->endpoint = strdup(s->endpoint);
    d->retry_key = dup_opt(s->retry_key);
    d->user = dup_opt(s->user);
    d->fallback_to = dup_opt(s->fallback_to);
    d->tag = dup_opt(s->tag);
    d->method = dup_opt(s->method);
    d->content_type = dup_opt(s->content_type);
    d->plugin = dup_opt(s->plugin);
    if (!d->shop || !d->endpoint || (s->retry_key && !d->retry_key) || (s->user && !d->user) ||
        (s->fallback_to && !d->fallback_to) || (s->tag && !d->tag) || (s->method && !d->method) ||
        (s->content_type && !d->content_type) || (s->plugin && !d->plugin)) {
        row_free(d);
        return KZ_ENOMEM;
    }
    return 0;
}

static void outcome_free(outcome *o)
{
    free(o->request_id);
    free(o->error);
    free(o->payload);
    free(o->new_body);
    memset(o, 0, sizeof *o);
}

/* ---- rates -------------------------------------------------------------- */

static const cfg_shop *shop_of(const sender *s, const char *id);

/* Rate buckets of calls beside the send kinds. LINE limits per endpoint
 * (method + path template): creating a rich menu, deleting one, deleting an
 * alias and reading batch progress to 100 an hour each, batch replacement
 * to 3 an hour, everything else to 2,000 a second (shared here: the sum
 * stays under each endpoint's limit). Names as the sandbox's. */
enum {
    RATE_CALL = OUTBOX_CALL,
    RATE_RM_CREATE,
    RATE_RM_DELETE,
    RATE_RM_ALIAS_DELETE,
    RATE_RM_BATCH_PROGRESS,
    RATE_RM_BATCH,
    RATE_LAST = RATE_RM_BATCH
};

static const char *const rate_names[] = {"call",
                                         "richmenu_create",
                                         "richmenu_delete",
                                         "richmenu_alias_delete",
                                         "richmenu_batch_progress",
                                         "richmenu_batch"};

static int rate_class(const store_outbox *o)
{
    if (o->kind != OUTBOX_CALL)
        return o->kind;
    const char *m = o->method ? o->method : "POST", *p = o->endpoint;
    int post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
    if (post && strcmp(p, "/v2/bot/richmenu/batch") == 0)
        return RATE_RM_BATCH;
    if (post && strcmp(p, "/v2/bot/richmenu") == 0)
        return RATE_RM_CREATE;
    if (del && strncmp(p, "/v2/bot/richmenu/alias/", 23) == 0)
        return RATE_RM_ALIAS_DELETE;
    if (del && strncmp(p, "/v2/bot/richmenu/", 17) == 0 && strchr(p + 17, '/') == NULL)
        return RATE_RM_DELETE;
    if (strcmp(m, "GET") == 0 && strncmp(p, "/v2/bot/richmenu/progress/batch", 31) == 0)
        return RATE_RM_BATCH_PROGRESS;
    return RATE_CALL;
}

static const char *rate_name(int cls)
{
    return cls >= RATE_CALL && cls <= RATE_LAST ? rate_names[cls - RATE_CALL] : kind_name(cls);
}

/* LINE's documented limits (line-api-notes §2.5): per second, except
 * broadcast, narrowcast and the rich menu classes per hour. Overridden by
 * the sender's options, then by the shop's own line.rate_limits (LINE
 * changes them per channel and over time). */
static double rate_limit(const sender *s, const char *shop, int cls, int64_t *window_ms)
{
    static const double defaults[] = {0, 2000, 2000, 200, 60, 60};
    int hourly = cls == KZ_LINE_BROADCAST || cls == KZ_LINE_NARROWCAST || cls > RATE_CALL;
    *window_ms = hourly ? 3600000 : 1000;
    double v = cls >= KZ_LINE_REPLY && cls <= KZ_LINE_NARROWCAST ? defaults[cls]
               : cls == RATE_RM_BATCH                            ? 3
               : cls > RATE_CALL                                 ? 100
                                                                 : 2000;
    for (size_t i = 0; i < s->o.nrates; i++)
        if (strcmp(s->rates[i].endpoint, rate_name(cls)) == 0 && s->rates[i].per_second > 0)
            v = s->rates[i].per_second;
    const cfg_shop *cs = shop_of(s, shop);
    for (size_t i = 0; cs != NULL && i < cs->nline_rates; i++)
        if (strcmp(cs->line_rates[i].endpoint, rate_name(cls)) == 0)
            v = (double)cs->line_rates[i].limit;
    return v;
}

/* A bucket lets at most `limit` requests start in any span of LINE's window
 * plus a guard of 2 % of it. Requests reach LINE after a varying delay, so
 * LINE's window sees starts from a slightly longer span than its own length;
 * as long as that delay varies by less than the guard (20 ms in a second),
 * no window of LINE's, however aligned, counts more than the limit. Unlike
 * a token bucket with a small burst, a sender that wakes late loses nothing:
 * it may start what the span still allows at once. A multicast limit of 200
 * a second comes to 196 a second, 98 % of it. */
static void bucket_shape(double limit, int64_t window, bucket *b)
{
    b->limit = limit < 1 ? 1 : (int)floor(limit);
    b->span_ms = window + (window * 2 + 99) / 100;
}

static bucket *bucket_of(sender *s, const char *shop, int kind)
{
    for (size_t i = 0; i < s->nbuckets; i++)
        if (s->buckets[i].kind == kind && strcmp(s->buckets[i].shop, shop) == 0)
            return &s->buckets[i];
    bucket *b = realloc(s->buckets, (s->nbuckets + 1) * sizeof *b);
    if (b == NULL)
        return NULL;
    s->buckets = b;
    b = &s->buckets[s->nbuckets];
    if ((b->shop = strdup(shop)) == NULL)
        return NULL;
    int64_t window;
    double limit = rate_limit(s, shop, kind, &window);
    b->kind = kind;
    bucket_shape(limit, window, b);
    b->sent = NULL;
    b->head = b->n = b->cap = b->fresh = 0;
    s->nbuckets++;
    return b;
}

/* Makes room for one more start time, keeping the oldest at index 0. */
static int bucket_grow(bucket *b)
{
    int cap = b->cap == 0 ? 16 : b->cap * 2;
    if (cap > b->limit)
        cap = b->limit;
    int64_t *sent = malloc((size_t)cap * sizeof *sent);
    if (sent == NULL)
        return -1;
    for (int i = 0; i < b->n; i++)
        sent[i] = b->sent[(b->head + i) % b->cap];
    free(b->sent);
    b->sent = sent;
    b->head = 0;
    b->cap = cap;
    return 0;
}

/* The places taken during a scan count from when their requests start,
 * after the walk over the due rows and the bodies' reads: counting them
 * from the walk would let the starts bunch closer than the span. */
static void buckets_started(sender *s)
{
    int64_t now = mono_ms();
    for (size_t i = 0; i < s->nbuckets; i++) {
        bucket *b = &s->buckets[i];
        for (int k = b->n - b->fresh; k < b->n; k++)
            b->sent[(b->head + k) % b->cap] = now;
        b->fresh = 0;
    }
}

/* Takes a place in the span, or returns 0 and notes when one frees up. */
static int bucket_take(sender *s, bucket *b)
{
    int64_t now = mono_ms();
    while (b->n > 0 && now - b->sent[b->head] >= b->span_ms) {
        b->head = (b->head + 1) % b->cap;
        b->n--;
    }
    if (b->n < b->limit && (b->n < b->cap || bucket_grow(b) == 0)) {
        b->sent[(b->head + b->n) % b->cap] = now;
        b->n++;
        b->fresh++;
        return 1;
    }
    int64_t at = b->n > 0 ? b->sent[b->head] + b->span_ms : now + 1;
    if (s->token_at_ms == 0 || at < s->token_at_ms)
        s->token_at_ms = at;
    return 0;
}

/* ---- small helpers ------------------------------------------------------ */

static const cfg_shop *shop_of(const sender *s, const char *id)
{
    for (size_t i = 0; i < s->o.c->nshops; i++)
        if (strcmp(s->o.c->shops[i].id, id) == 0)
            return &s->o.c->shops[i];
    return NULL;
}

static void warn_once(sender *s, const char *shop, const char *why)
{
    for (size_t i = 0; i < s->nwarned; i++)
        if (strcmp(s->warned[i], shop) == 0)
            return;
    char **w = realloc(s->warned, (s->nwarned + 1) * sizeof *w);
    if (w != NULL && (w[s->nwarned] = strdup(shop)) != NULL) {
        s->warned = w;
        s->nwarned++;
    } else if (w != NULL) {
        s->warned = w;
    }
    log_msg(KZ_LOG_WARN, "sender: shop '%s': %s; its sends wait in the outbox", shop, why);
}

/* The base URL for a shop, or NULL (warned) when it cannot send. */
static const char *base_of(sender *s, const char *shop_id, const char **token)
{
    const cfg_shop *shop = shop_of(s, shop_id);
    if (shop == NULL) {
        warn_once(s, shop_id, "not in the configuration");
        return NULL;
    }
    if (shop->line_access_token == NULL || shop->line_api == NULL) {
        warn_once(s, shop_id, "no line.access_token / line.api");
        return NULL;
    }
    *token = shop->line_access_token;
    if (strcmp(shop->line_api, "sandbox") == 0) {
        if (s->sandbox_base == NULL)
            warn_once(s, shop_id, "uses the sandbox, which is not running");
        return s->sandbox_base;
    }
    return shop->line_api;
}

/* Rich menu images go to api-data.line.me when the shop talks to LINE
 * itself; a proxy or the sandbox serves both on one base. */
static const char *data_base(const char *base)
{
    if (strcmp(base, "https://api.line.me") == 0 || strcmp(base, "https://api.line.me/") == 0)
        return "https://api-data.line.me";
    return base;
}

static int64_t deadline_of(const sender *s, const row *r)
{
    int64_t d = r->created_ms + (s->o.deadline_ms > 0 ? s->o.deadline_ms : RETRY_KEY_LIFE_MS);
    if (r->deadline_ms > 0 && r->deadline_ms < d)
        d = r->deadline_ms;
    return d;
}

static int64_t backoff_ms(const sender *s, int attempts)
{
    double d = (double)s->o.retry_initial_ms;
    for (int i = 1; i < attempts && d < (double)s->o.retry_max_ms; i++)
        d *= 2;
    d *= 0.75 + 0.5 * ((double)random() / (double)RAND_MAX); /* ±25 % */
    if (d > (double)s->o.retry_max_ms)
        d = (double)s->o.retry_max_ms;
    return (int64_t)d;
}

/* A v4-looking UUID from SHA-256("kizuna-fallback:<id>"): the same row
 * always gets the same key, so a fallback resent after a crash is one. */
static void fallback_key(int64_t id, char out[37])
{
    char text[64];
    int n = snprintf(text, sizeof text, "kizuna-fallback:%lld", (long long)id);
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, (size_t)n, h);
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x40);
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0],
             h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
             h[14], h[15]);
}

/* {"to":<fallback_to>,"messages":<the reply's messages>} (and the reply's
 * notificationDisabled), or NULL when the reply body has no messages. */
static char *fallback_body(const row *r)
{
    json_object *in = json_tokener_parse(r->body), *msgs, *nd;
    char *out = NULL;
    if (in != NULL && json_object_object_get_ex(in, "messages", &msgs)) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "to", json_object_new_string(r->fallback_to));
        json_object_object_add(o, "messages", json_object_get(msgs));
        if (json_object_object_get_ex(in, "notificationDisabled", &nd))
            json_object_object_add(o, "notificationDisabled", json_object_get(nd));
        out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    }
    json_object_put(in);
    return out;
}

/* ---- events ------------------------------------------------------------- */

/* A call the sender does not repeat once LINE may have received it:
 * creating a rich menu twice leaves an orphan that counts against the
 * 1000-menu cap. Everything else a plugin can call is safe to repeat. */
static int repeatable(const row *r)
{
    return r->kind != OUTBOX_CALL || r->method == NULL || strcmp(r->method, "POST") != 0 ||
           strcmp(r->endpoint, "/v2/bot/richmenu") != 0;
}

/* The head of api.done / api.failed. */
static json_object *call_head(const row *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "outbox", json_object_new_int64(r->id));
    json_object_object_add(o, "plugin", r->plugin ? json_object_new_string(r->plugin) : NULL);
    json_object_object_add(o, "method", json_object_new_string(r->method ? r->method : "POST"));
    json_object_object_add(o, "path", json_object_new_string(r->endpoint));
    json_object_object_add(o, "tag", r->tag ? json_object_new_string(r->tag) : NULL);
    json_object_object_add(o, "user", r->user ? json_object_new_string(r->user) : NULL);
    return o;
}

/* The common head of message.sent / message.failed (api.* for calls). */
static json_object *payload_head(const row *r)
{
    if (r->kind == OUTBOX_CALL)
        return call_head(r);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "outbox", json_object_new_int64(r->id));
    json_object_object_add(o, "kind", json_object_new_string(kind_name(r->kind)));
    json_object_object_add(o, "tag", r->tag ? json_object_new_string(r->tag) : NULL);
    json_object *body = json_tokener_parse(r->body), *to = NULL;
    if (body != NULL && json_object_object_get_ex(body, "to", &to))
        json_object_object_add(o, "to", json_object_get(to));
    else
        json_object_object_add(o, "to", r->user ? json_object_new_string(r->user) : NULL);
    json_object_put(body);
    if (r->kind == KZ_LINE_PUSH && r->fallback_to != NULL)
        json_object_object_add(o, "fallback", json_object_new_boolean(1)); /* was a reply */
    return o;
}

static char *payload_done(json_object *o)
{
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

/* LINE's answer to a call: JSON as it is; anything else (an image) as null
 * with its size, so the event stays small and valid. */
static void add_response(json_object *o, const char *resp, size_t len)
{
    json_object *body = resp && len ? json_tokener_parse(resp) : NULL;
    json_object_object_add(o, "response", body);
    if (body == NULL && len > 0)
        json_object_object_add(o, "responseBytes", json_object_new_int64((int64_t)len));
}

static char *sent_payload(const row *r, int status, const char *request_id, const char *resp,
                          size_t resp_len)
{
    json_object *o = payload_head(r);
    json_object_object_add(o, "requestId", request_id ? json_object_new_string(request_id) : NULL);
    if (r->kind == OUTBOX_CALL) {
        json_object_object_add(o, "status", json_object_new_int(status));
        add_response(o, resp, resp_len);
        return payload_done(o);
    }
    json_object *body = resp ? json_tokener_parse(resp) : NULL, *sm;
    if (body != NULL && json_object_is_type(body, json_type_object) &&
        json_object_object_get_ex(body, "sentMessages", &sm))
        json_object_object_add(o, "sentMessages", json_object_get(sm));
    json_object_put(body);
    return payload_done(o);
}

/* LINE's error body: "message" and "details" when it is JSON, else the raw
 * text as the message. *message is malloc'd. */
static json_object *parse_error(const char *resp, int status, char **message)
{
    json_object *body = resp && *resp ? json_tokener_parse(resp) : NULL, *m, *details = NULL;
    if (body != NULL && json_object_is_type(body, json_type_object) &&
        json_object_object_get_ex(body, "message", &m) &&
        json_object_is_type(m, json_type_string)) {
        *message = strdup(json_object_get_string(m));
        if (json_object_object_get_ex(body, "details", &details))
            json_object_get(details);
    } else if (resp && *resp) {
        *message = strndup(resp, 1000);
    } else {
        char t[32];
        snprintf(t, sizeof t, "HTTP %d", status);
        *message = strdup(t);
    }
    json_object_put(body);
    return details;
}

static char *failed_payload(const row *r, int status, const char *message, json_object *details,
                            const char *request_id, int attempts)
{
    json_object *o = payload_head(r);
    json_object_object_add(o, "status", json_object_new_int(status));
    json_object_object_add(o, "message", json_object_new_string(message ? message : ""));
    if (details != NULL)
        json_object_object_add(o, "details", json_object_get(details));
    if (request_id != NULL)
        json_object_object_add(o, "requestId", json_object_new_string(request_id));
    json_object_object_add(o, "attempts", json_object_new_int(attempts));
    return payload_done(o);
}

/* ---- writing outcomes --------------------------------------------------- */

static void finish_outcome(outcome *out, int state, int status, const char *request_id,
                           const char *error, char *payload)
{
    out->act = ACT_FINISH;
    out->state = state;
    out->status = status;
    out->request_id = dup_opt(request_id);
    out->error = dup_opt(error);
    out->payload = payload;
}

/* Writes out for row r in one transaction (with its event). 0 when done
 * (also when another sender had already ended the row); < 0 to try again. */
/* The statements of one outcome, in the caller's transaction. */
static int record_apply(sender *s, const row *r, const outcome *out, int64_t now, char *err,
                        size_t errlen)
{
    int rc = 0;
    if (out->act == ACT_FINISH) {
        rc = store_outbox_finish(s->st, r->id, out->state, out->status, out->request_id, out->error,
                                 now, err, errlen);
        if (rc == 0) {
            char uid[64];
            int sent = out->state == OUTBOX_SENT;
            snprintf(uid, sizeof uid, "outbox:%lld:%s", (long long)r->id, sent ? "sent" : "failed");
            const char *topic = r->kind == OUTBOX_CALL ? (sent ? "api.done" : "api.failed")
                                : sent                 ? "message.sent"
                                                       : "message.failed";
            rc = store_event_append(s->st, r->shop, uid, topic, r->user, now, out->payload,
                                    strlen(out->payload), NULL, err, errlen);
        }
    } else if (out->act == ACT_FALLBACK) {
        rc = store_outbox_rewrite(s->st, r->id, KZ_LINE_PUSH, "/v2/bot/message/push", out->new_body,
                                  out->new_key, err, errlen);
        if (rc == 0)
            rc = store_outbox_retry(s->st, r->id, out->attempts, now, out->error, err, errlen);
    } else if (out->act == ACT_RETRY) {
        rc = store_outbox_retry(s->st, r->id, out->attempts, out->next_at, out->error, err, errlen);
    }
    if (rc == KZ_ENOTFOUND) /* another sender ended it: nothing was changed */
        log_msg(KZ_LOG_DEBUG, "sender: outbox %lld was no longer pending", (long long)r->id);
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

/* After the commit: the log line and the bus's wake-up. */
static void record_done(sender *s, const row *r, const outcome *out)
{
    if (out->act == ACT_FINISH) {
        if (out->state == OUTBOX_SENT)
            log_msg(KZ_LOG_DEBUG, "sender: shop '%s': outbox %lld sent (%s)", r->shop,
                    (long long)r->id, out->request_id ? out->request_id : "-");
        else
            log_msg(out->state == OUTBOX_PARKED ? KZ_LOG_ERROR : KZ_LOG_WARN,
                    "sender: shop '%s': outbox %lld %s: %d %s", r->shop, (long long)r->id,
                    out->state == OUTBOX_PARKED ? "parked" : "failed", out->status,
                    out->error ? out->error : "");
        if (s->o.b != NULL)
            bus_wake(s->o.b);
    }
}

/* Writes out for row r in its own transaction. 0 when done (also when
 * another sender had already ended the row); < 0 to try again. */
static int record(sender *s, const row *r, const outcome *out)
{
    char err[512] = "";
    int rc = store_begin(s->st, err, sizeof err);
    if (rc == 0)
        rc = record_apply(s, r, out, clock_now_ms(), err, sizeof err);
    if (rc == 0)
        rc = store_commit(s->st, err, sizeof err);
    if (rc != 0) {
        store_rollback(s->st);
        log_msg(KZ_LOG_ERROR, "sender: outbox %lld: cannot record the outcome: %s",
                (long long)r->id, err);
        return rc;
    }
    record_done(s, r, out);
    return 0;
}

/* ---- requests ----------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    slot *sl = arg;
    size_t k = size * n;
    if (sl->resp_len + k + 1 > sl->resp_cap && sl->resp_len < RESP_MAX) {
        size_t cap = sl->resp_cap ? sl->resp_cap : 1024;
        while (cap < sl->resp_len + k + 1)
            cap *= 2;
        char *b = realloc(sl->resp, cap);
        if (b == NULL)
            return 0;
        sl->resp = b;
        sl->resp_cap = cap;
    }
    if (sl->resp_len + k + 1 <= sl->resp_cap) {
        memcpy(sl->resp + sl->resp_len, p, k);
        sl->resp_len += k;
        sl->resp[sl->resp_len] = '\0';
    }
    return k;
}

/* Copies the value of header `name` from one header line into out. */
static int header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    snprintf(out, outlen, "%.*s", (int)(end - v), v);
    return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    slot *sl = arg;
    size_t k = size * n;
    char ra[64];
    header_value(p, k, "x-line-request-id", sl->request_id, sizeof sl->request_id);
    header_value(p, k, "x-line-accepted-request-id", sl->accepted_id, sizeof sl->accepted_id);
    if (header_value(p, k, "retry-after", ra, sizeof ra)) {
        char *end;
        long v = strtol(ra, &end, 10);
        if (end != ra && *end == '\0' && v >= 0) {
            sl->retry_after_s = v;
        } else {
            time_t t = curl_getdate(ra, NULL); /* an HTTP date */
            if (t > 0)
                sl->retry_after_s = t > time(NULL) ? (long)(t - time(NULL)) : 0;
        }
    }
    return k;
}

/* The request line and body: a send is a JSON POST; a call has its own
 * method and may have no body or a binary one. */
static void set_method(CURL *h, const row *r)
{
    const char *m = r->method ? r->method : "POST";
    if (strcmp(m, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        return;
    }
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    if (strcmp(m, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
}

static struct curl_slist *content_type_header(const row *r)
{
    char line[256];
    const char *m = r->method ? r->method : "POST";
    if (strcmp(m, "GET") == 0 || (strcmp(m, "DELETE") == 0 && r->body_len == 0))
        return curl_slist_append(NULL, "Accept: application/json");
    snprintf(line, sizeof line, "Content-Type: %s",
             r->content_type ? r->content_type : "application/json");
    return curl_slist_append(NULL, line);
}

static int start_request(sender *s, slot *sl, const char *base, const char *token)
{
    char url[2048], line[1024];
    snprintf(url, sizeof url, "%s%s", sl->r.data_api ? data_base(base) : base, sl->r.endpoint);
    size_t bl = strlen(url);
    if (bl > 0 && url[bl - 1] == '/')
        url[bl - 1] = '\0';
    sl->resp_len = 0;
    if (sl->resp)
        sl->resp[0] = '\0';
    sl->request_id[0] = sl->accepted_id[0] = sl->curl_err[0] = '\0';
    sl->retry_after_s = -1;
    curl_slist_free_all(sl->hdrs);
    sl->hdrs = content_type_header(&sl->r);
    snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    sl->hdrs = curl_slist_append(sl->hdrs, line);
    if (sl->r.retry_key != NULL && sl->r.kind != KZ_LINE_REPLY) {
        snprintf(line, sizeof line, "X-Line-Retry-Key: %s", sl->r.retry_key);
        sl->hdrs = curl_slist_append(sl->hdrs, line);
    }
    sl->hdrs = curl_slist_append(sl->hdrs, "Expect:");
    if (sl->hdrs == NULL)
        return KZ_ENOMEM;

    CURL *h = sl->h;
    curl_easy_reset(h); /* keeps the handle's connections and caches */
    curl_easy_setopt(h, CURLOPT_URL, url);
    set_method(h, &sl->r);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl->hdrs);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->o.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(s->o.timeout_ms < 10000 ? s->o.timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kizuna");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, sl);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, sl->curl_err);
    curl_easy_setopt(h, CURLOPT_PRIVATE, sl);
    if (curl_multi_add_handle(s->multi, h) != CURLM_OK)
        return KZ_EFAIL;
    clock_gettime(CLOCK_MONOTONIC, &sl->started);
    sl->running = 1;
    return 0;
}

/* Decides what a finished request means for its row. */
static void judge(sender *s, slot *sl, CURLcode cc, long status)
{
    row *r = &sl->r;
    outcome *out = &sl->out;
    int64_t now = clock_now_ms();
    char *message = NULL;
    json_object *details = NULL;
    if (cc != CURLE_OK) {
        char t[CURL_ERROR_SIZE + 64];
        snprintf(t, sizeof t, "network: %s",
                 sl->curl_err[0] ? sl->curl_err : curl_easy_strerror(cc));
        message = strdup(t);
        status = 0;
    } else if (status >= 200 && status < 300) {
        const char *id = sl->request_id[0] ? sl->request_id : NULL;
        finish_outcome(out, OUTBOX_SENT, (int)status, id, NULL,
                       sent_payload(r, (int)status, id, sl->resp, sl->resp_len));
        return;
    } else if (status == 409 && sl->accepted_id[0] != '\0') {
        /* the retry key was accepted by an earlier attempt */
        finish_outcome(out, OUTBOX_SENT, (int)status, sl->accepted_id, NULL,
                       sent_payload(r, (int)status, sl->accepted_id, sl->resp, sl->resp_len));
        return;
    } else {
        details = parse_error(sl->resp, (int)status, &message);
    }
    const char *rid = sl->request_id[0] ? sl->request_id : NULL;
    int attempts = r->attempts + 1;
    int retryable =
        status == 0 || status >= 500 ||
        (status == 429 && (message == NULL || strcmp(message, MONTHLY_LIMIT_TEXT) != 0));
    if (retryable && !repeatable(r) && status != 429 && cc != CURLE_COULDNT_CONNECT &&
        cc != CURLE_COULDNT_RESOLVE_HOST) {
        retryable = 0; /* LINE may have acted on it */
        char *m = NULL;
        if (asprintf(&m, "%s (not repeated: LINE may have received it)", message ? message : "") >=
            0) {
            free(message);
            message = m;
        }
    }
    if (status == 429 && !retryable) {
        finish_outcome(out, OUTBOX_PARKED, (int)status, rid, message,
                       failed_payload(r, (int)status, message, details, rid, attempts));
    } else if (status == 400 && r->kind == KZ_LINE_REPLY && r->fallback_to != NULL &&
               r->attempts == 0 && message != NULL && strcmp(message, INVALID_TOKEN_TEXT) == 0 &&
               (out->new_body = fallback_body(r)) != NULL) {
        out->act = ACT_FALLBACK;
        out->attempts = attempts;
        fallback_key(r->id, out->new_key);
        out->error = strdup("Invalid reply token: sending as a push");
    } else if (retryable) {
        int64_t delay = backoff_ms(s, attempts);
        if (sl->retry_after_s >= 0 && sl->retry_after_s * 1000 > delay)
            delay = sl->retry_after_s * 1000;
        if (now + delay > deadline_of(s, r)) {
            finish_outcome(out, OUTBOX_FAILED, (int)status, rid, message,
                           failed_payload(r, (int)status, message, details, rid, attempts));
        } else {
            char t[1100];
            snprintf(t, sizeof t, "%ld %s", status, message ? message : "");
            out->act = ACT_RETRY;
            out->attempts = attempts;
            out->next_at = now + delay;
            out->error = strdup(t);
        }
    } else {
        finish_outcome(out, OUTBOX_FAILED, (int)status, rid, message,
                       failed_payload(r, (int)status, message, details, rid, attempts));
    }
    free(message);
    json_object_put(details);
}

static void slot_release(slot *sl)
{
    row_free(&sl->r);
    outcome_free(&sl->out);
    sl->busy = 0;
    sl->running = 0;
}

/* Writes the outcome of a finished slot; frees it when written. */
static void slot_record(sender *s, slot *sl)
{
    if (sl->out.act == ACT_NONE || record(s, &sl->r, &sl->out) == 0)
        slot_release(sl);
    else
        s->next_record_ms = mono_ms() + RECORD_RETRY_MS;
}

static int waiting_record(const slot *sl)
{
    return sl->busy && !sl->running;
}

/* Every finished slot's outcome in one transaction: at LINE's 200
 * multicasts a second a commit per answer would keep the sender thread
 * (and the store's writer lock) busy. If that transaction fails, each slot
 * is tried on its own, so one bad row cannot hold the others back. */
static void record_all(sender *s)
{
    char err[512] = "";
    int n = 0, rc = store_begin(s->st, err, sizeof err);
    int64_t now = clock_now_ms();
    for (int i = 0; rc == 0 && i < s->nslots; i++)
        if (waiting_record(&s->slots[i]) && s->slots[i].out.act != ACT_NONE) {
            rc = record_apply(s, &s->slots[i].r, &s->slots[i].out, now, err, sizeof err);
            n++;
        }
    if (rc == 0 && n > 0)
        rc = store_commit(s->st, err, sizeof err);
    if (rc != 0 || n == 0) {
        store_rollback(s->st);
        for (int i = 0; i < s->nslots; i++)
            if (waiting_record(&s->slots[i]))
                slot_record(s, &s->slots[i]);
        return;
    }
    for (int i = 0; i < s->nslots; i++)
        if (waiting_record(&s->slots[i])) {
            record_done(s, &s->slots[i].r, &s->slots[i].out);
            slot_release(&s->slots[i]);
        }
}

static void count_request(sender *s, slot *sl, long status)
{
    if (s->m_requests == NULL)
        return;
    char code[16];
    snprintf(code, sizeof code, "%ld", status);
    const char *labels[] = {sl->r.shop, kind_name(sl->r.kind), code};
    metrics_inc(s->m_requests, labels, 1);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double secs =
        (double)(t.tv_sec - sl->started.tv_sec) + (double)(t.tv_nsec - sl->started.tv_nsec) / 1e9;
    const char *ep[] = {kind_name(sl->r.kind)};
    metrics_observe(metrics_series(s->m_duration, ep), secs);
}

static void collect_done(sender *s)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        slot *sl = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
        CURLcode cc = msg->data.result;
        long status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(s->multi, msg->easy_handle);
        sl->running = 0;
        count_request(s, sl, cc == CURLE_OK ? status : 0);
        judge(s, sl, cc, status);
        s->next_scan_ms = 0; /* a slot may be free: look again */
    }
    record_all(s);
}

/* ---- scanning ----------------------------------------------------------- */

enum todo_kind { TODO_SEND, TODO_EXPIRED, TODO_FALLBACK, TODO_DEFER };

typedef struct todo {
    enum todo_kind what;
    row r;
    const char *base, *token;
} todo;

typedef struct scan {
    sender *s;
    todo *t;
    int n, cap, sends, free_slots, seen;
    int64_t now;
} scan;

static int in_flight(const sender *s, int64_t id)
{
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].busy && s->slots[i].r.id == id)
            return 1;
    return 0;
}

static int scan_row(void *arg, const store_outbox *o)
{
    scan *sc = arg;
    sender *s = sc->s;
    sc->seen++;
    if (sc->n == sc->cap || in_flight(s, o->id))
        return 0;
    const char *token = NULL, *base = NULL;
    enum todo_kind what = TODO_SEND;
    int64_t deadline =
        o->created_ms + (s->o.deadline_ms > 0 ? s->o.deadline_ms : RETRY_KEY_LIFE_MS);
    if (o->deadline_ms > 0 && o->deadline_ms < deadline)
        deadline = o->deadline_ms;
    if (sc->now > deadline ||
        (o->kind == OUTBOX_CALL && o->error && strcmp(o->error, UNANSWERED_TEXT) == 0)) {
        what = TODO_EXPIRED;
    } else if (o->kind == KZ_LINE_REPLY && sc->now - o->created_ms > s->o.reply_token_ttl_ms) {
        what = o->fallback_to != NULL && o->attempts == 0 ? TODO_FALLBACK : TODO_EXPIRED;
    } else {
        if (sc->sends == sc->free_slots)
            return 0;
        if ((base = base_of(s, o->shop, &token)) == NULL) {
            what = TODO_DEFER; /* out of the way of other shops' rows */
        } else {
            bucket *b = bucket_of(s, o->shop, rate_class(o));
            if (b == NULL || !bucket_take(s, b))
                return 0;
            sc->sends++;
        }
    }
    todo *t = &sc->t[sc->n];
    if (row_copy(&t->r, o) != 0)
        return 0;
    t->what = what;
    t->base = base;
    t->token = token;
    sc->n++;
    return 0;
}

/* A row given up before sending: its deadline passed, or its reply token
 * expired with no fallback allowed. */
static void expire(sender *s, row *r)
{
    int status = 0;
    const char *error = NULL, *rid = NULL;
    char err[256];
    store_outbox cur;
    char *last = NULL;
    if (store_outbox_get(s->st, r->id, &cur, &status, &rid, &error, err, sizeof err) == 0 &&
        error != NULL)
        last = strdup(error);
    int64_t now = clock_now_ms();
    const char *why;
    char text[1200];
    if (r->kind == KZ_LINE_REPLY && now <= deadline_of(s, r)) {
        why = "The reply token expired before it could be used";
        status = 0;
    } else if (last != NULL && strcmp(last, UNANSWERED_TEXT) == 0) {
        why = "Sent before kizuna stopped, with no answer recorded; not repeated, as LINE may "
              "have acted on it";
        status = 0;
    } else {
        snprintf(text, sizeof text, "Not sent before its deadline (%d attempts%s%s)", r->attempts,
                 last ? "; last: " : "", last ? last : "");
        why = text;
    }
    outcome out = {0};
    finish_outcome(&out, OUTBOX_FAILED, status, NULL, why,
                   failed_payload(r, status, why, NULL, NULL, r->attempts));
    record(s, r, &out);
    outcome_free(&out);
    free(last);
}

static void fallback_now(sender *s, row *r)
{
    outcome out = {.act = ACT_FALLBACK, .attempts = r->attempts};
    out.new_body = fallback_body(r);
    out.error = strdup("reply token expired: sending as a push");
    if (out.new_body == NULL) {
        outcome_free(&out);
        expire(s, r);
        return;
    }
    fallback_key(r->id, out.new_key);
    record(s, r, &out);
    outcome_free(&out);
}

static slot *free_slot(sender *s)
{
    for (int i = 0; i < s->nslots; i++)
        if (!s->slots[i].busy)
            return &s->slots[i];
    return NULL;
}

/* Counts the attempt of a reply that may fall back, or of a call that is
 * not repeated, before it is sent: a crash after sending then cannot lead
 * to a push as well, or to a second rich menu. */
static int mark_attempt(sender *s, const row *r)
{
    char err[256];
    int rc = store_outbox_retry(s->st, r->id, r->attempts + 1, clock_now_ms(),
                                r->kind == KZ_LINE_REPLY ? "reply sent, no answer recorded"
                                                         : UNANSWERED_TEXT,
                                err, sizeof err);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "sender: outbox %lld: %s", (long long)r->id, err);
    return rc;
}

/* Held promotional sends whose time came become outbox rows first, so
 * this scan sends them (core/policy.h); one transaction per walk. */
static void release_held(sender *s)
{
    char err[512];
    int rc = policy_release(s->st, s->o.c, clock_now_ms(), RELEASE_BATCH, err, sizeof err);
    if (rc < 0)
        log_msg(KZ_LOG_ERROR, "sender: delivery policy: %s", err);
}

static void do_scan(sender *s)
{
    release_held(s);
    int free_slots = 0;
    for (int i = 0; i < s->nslots; i++)
        free_slots += !s->slots[i].busy;
    if (free_slots == 0)
        return;
    int limit = s->scan_limit;
    scan sc = {.s = s, .cap = limit, .free_slots = free_slots, .now = clock_now_ms()};
    sc.t = calloc((size_t)limit, sizeof *sc.t);
    if (sc.t == NULL)
        return;
    s->token_at_ms = 0;
    char err[512];
    if (store_outbox_due(s->st, sc.now, limit, scan_row, &sc, err, sizeof err) < 0)
        log_msg(KZ_LOG_ERROR, "sender: %s", err);
    for (int i = 0; i < sc.n; i++) {
        todo *t = &sc.t[i];
        if (t->what != TODO_DEFER &&
            store_outbox_body(s->st, t->r.id, &t->r.body, &t->r.body_len, err, sizeof err) != 0) {
            log_msg(KZ_LOG_ERROR, "sender: outbox %lld: %s", (long long)t->r.id, err);
            row_free(&t->r);
            continue;
        }
        if (t->what == TODO_EXPIRED) {
            expire(s, &t->r);
        } else if (t->what == TODO_DEFER) {
            if (store_outbox_retry(s->st, t->r.id, t->r.attempts, sc.now + DEFER_MS,
                                   "the shop cannot send (see the log)", err, sizeof err) != 0)
                log_msg(KZ_LOG_ERROR, "sender: outbox %lld: %s", (long long)t->r.id, err);
        } else if (t->what == TODO_FALLBACK) {
            fallback_now(s, &t->r);
            s->next_scan_ms = 0;
        } else {
            slot *sl = free_slot(s);
            int mark = (t->r.kind == KZ_LINE_REPLY && t->r.fallback_to) || !repeatable(&t->r);
            if (sl == NULL || (mark && mark_attempt(s, &t->r) != 0)) {
                row_free(&t->r);
                continue;
            }
            sl->busy = 1;
            sl->r = t->r; /* moved */
            memset(&t->r, 0, sizeof t->r);
            if (start_request(s, sl, t->base, t->token) != 0) {
                log_msg(KZ_LOG_ERROR, "sender: outbox %lld: cannot start the request",
                        (long long)sl->r.id);
                slot_release(sl);
            }
            continue;
        }
        row_free(&t->r);
    }
    free(sc.t);
    buckets_started(s);
    /* Rows that cannot go yet (rate limits) hide the rows behind them:
     * when a full page left slots unused, read further next time. */
    if (sc.seen == limit && sc.sends < free_slots)
        s->scan_limit = limit * 2 > SCAN_MAX ? SCAN_MAX : limit * 2;
    else if (sc.seen < limit)
        s->scan_limit = s->scan_base;
}

/* ---- the thread --------------------------------------------------------- */

static void refresh_pending(sender *s)
{
    if (s->m_pending == NULL)
        return;
    int64_t now = mono_ms();
    if (now < s->next_pending_ms)
        return;
    s->next_pending_ms = now + PENDING_REFRESH_MS;
    int64_t n = 0;
    if (store_outbox_pending(s->st, &n, NULL, 0) == 0)
        metrics_set(metrics_series(s->m_pending, NULL), n);
    policy_metrics_refresh(s->st, &s->m_policy);
}

static int any_busy(const sender *s)
{
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].busy)
            return 1;
    return 0;
}

static void *run(void *arg)
{
    sender *s = arg;
    log_set_context(NULL, NULL);
    for (;;) {
        int stopping = atomic_load(&s->stop);
        if (stopping && s->stop_at_ms == 0)
            s->stop_at_ms = mono_ms();
        /* requests end within their timeout; an outcome the store keeps
         * refusing is given up (the row stays PENDING and is sent again,
         * with its retry key, by the next sender) */
        if (stopping && (!any_busy(s) || mono_ms() - s->stop_at_ms > s->o.timeout_ms + 2000))
            break;
        if (atomic_exchange(&s->woken, 0))
            s->next_scan_ms = 0;
        int64_t now = mono_ms();
        if (s->next_record_ms != 0 && now >= s->next_record_ms) {
            s->next_record_ms = 0;
            for (int i = 0; i < s->nslots; i++)
                if (s->slots[i].busy && !s->slots[i].running)
                    slot_record(s, &s->slots[i]);
        }
        if (!stopping && (now >= s->next_scan_ms || (s->token_at_ms && now >= s->token_at_ms))) {
            do_scan(s);
            s->next_scan_ms = mono_ms() + s->o.poll_ms;
        }
        refresh_pending(s);
        int running = 0;
        curl_multi_perform(s->multi, &running);
        collect_done(s);
        if (s->next_scan_ms == 0 && !stopping)
            continue;
        now = mono_ms();
        int64_t wait = s->next_scan_ms - now;
        if (s->token_at_ms && s->token_at_ms - now < wait)
            wait = s->token_at_ms - now;
        if (s->next_record_ms && s->next_record_ms - now < wait)
            wait = s->next_record_ms - now;
        if (stopping)
            wait = 50;
        if (wait < 0)
            wait = 0;
        if (wait > 0)
            curl_multi_poll(s->multi, NULL, 0, (int)wait, NULL);
    }
    return NULL;
}

/* ---- start / stop ------------------------------------------------------- */

static void sender_free(sender *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nslots; i++) {
        slot *sl = &s->slots[i];
        if (sl->h != NULL) {
            if (sl->running)
                curl_multi_remove_handle(s->multi, sl->h);
            curl_easy_cleanup(sl->h);
        }
        curl_slist_free_all(sl->hdrs);
        free(sl->resp);
        row_free(&sl->r);
        outcome_free(&sl->out);
    }
    free(s->slots);
    if (s->multi != NULL)
        curl_multi_cleanup(s->multi);
    for (size_t i = 0; i < s->nbuckets; i++) {
        free(s->buckets[i].shop);
        free(s->buckets[i].sent);
    }
    free(s->buckets);
    for (size_t i = 0; i < s->nwarned; i++)
        free(s->warned[i]);
    free(s->warned);
    for (size_t i = 0; i < s->o.nrates; i++)
        free((char *)s->rates[i].endpoint);
    free(s->rates);
    store_close(s->st);
    free(s->store_url);
    free(s->sandbox_base);
    free(s);
}

static int bad(sender *s, int rc, char *err, size_t errlen, const char *msg)
{
    errbuf_set(err, errlen, "sender: %s", msg);
    sender_free(s);
    return rc;
}

int sender_start(const sender_options *o, sender **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->store_url == NULL || o->c == NULL) {
        errbuf_set(err, errlen, "sender: store_url and config are required");
        return KZ_EINVAL;
    }
    sender *s = calloc(1, sizeof *s);
    if (s == NULL)
        return bad(s, KZ_ENOMEM, err, errlen, "out of memory");
    s->o = *o;
    if (s->o.max_in_flight <= 0)
        s->o.max_in_flight = 16;
    if (s->o.timeout_ms <= 0)
        s->o.timeout_ms = 30000;
    if (s->o.retry_initial_ms <= 0)
        s->o.retry_initial_ms = 1000;
    if (s->o.retry_max_ms <= 0)
        s->o.retry_max_ms = 5 * 60 * 1000;
    if (s->o.retry_max_ms < s->o.retry_initial_ms)
        s->o.retry_max_ms = s->o.retry_initial_ms;
    if (s->o.reply_token_ttl_ms <= 0)
        s->o.reply_token_ttl_ms = 60000;
    if (s->o.poll_ms <= 0)
        s->o.poll_ms = 50;
    s->store_url = strdup(o->store_url);
    s->sandbox_base = dup_opt(o->sandbox_base);
    s->o.store_url = s->store_url;
    s->o.sandbox_base = s->sandbox_base;
    if (s->store_url == NULL || (o->sandbox_base && s->sandbox_base == NULL))
        return bad(s, KZ_ENOMEM, err, errlen, "out of memory");
    if (o->nrates > 0) {
        s->rates = calloc(o->nrates, sizeof *s->rates);
        if (s->rates == NULL)
            return bad(s, KZ_ENOMEM, err, errlen, "out of memory");
        s->o.nrates = 0;
        for (size_t i = 0; i < o->nrates; i++) {
            const char *ep = o->rates[i].endpoint;
            int known = 0;
            for (int k = KZ_LINE_REPLY; k <= KZ_LINE_NARROWCAST; k++)
                known |= ep != NULL && strcmp(ep, kind_names[k]) == 0;
            for (int k = RATE_CALL; k <= RATE_LAST; k++)
                known |= ep != NULL && strcmp(ep, rate_name(k)) == 0;
            if (!known || !(o->rates[i].per_second > 0)) {
                char m[160];
                snprintf(m, sizeof m, "bad rate for endpoint '%s'", ep ? ep : "(null)");
                return bad(s, KZ_EINVAL, err, errlen, m);
            }
            if ((s->rates[i].endpoint = strdup(ep)) == NULL)
                return bad(s, KZ_ENOMEM, err, errlen, "out of memory");
            s->rates[i].per_second = o->rates[i].per_second;
            s->o.nrates++;
        }
    }
    s->o.rates = s->rates;
    int rc = store_open(s->store_url, o->sync_mode, &s->st, err, errlen);
    if (rc != 0) {
        sender_free(s);
        return rc;
    }
    if ((s->multi = curl_multi_init()) == NULL)
        return bad(s, KZ_ENOMEM, err, errlen, "cannot create a curl multi handle");
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)s->o.max_in_flight);
    s->nslots = s->o.max_in_flight;
    s->scan_base = 4 * s->nslots < 64 ? 64 : 4 * s->nslots;
    s->scan_limit = s->scan_base;
    if ((s->slots = calloc((size_t)s->nslots, sizeof *s->slots)) == NULL)
        return bad(s, KZ_ENOMEM, err, errlen, "out of memory");
    for (int i = 0; i < s->nslots; i++)
        if ((s->slots[i].h = curl_easy_init()) == NULL)
            return bad(s, KZ_ENOMEM, err, errlen, "cannot create a curl handle");
    if (o->m != NULL) {
        static const char *const req_labels[] = {"shop", "endpoint", "code", NULL};
        static const char *const ep_labels[] = {"endpoint", NULL};
        static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10,  30};
        s->m_requests = metrics_counter(o->m, "kizuna_line_requests_total",
                                        "LINE API requests by shop, endpoint and HTTP status "
                                        "(0: no answer)",
                                        req_labels);
        s->m_duration = metrics_histogram(o->m, "kizuna_line_request_duration_seconds",
                                          "LINE API request duration", ep_labels, buckets,
                                          sizeof buckets / sizeof buckets[0]);
        s->m_pending =
            metrics_gauge(o->m, "kizuna_outbox_pending", "Outbox rows waiting to be sent", NULL);
        if (s->m_requests == NULL || s->m_duration == NULL || s->m_pending == NULL ||
            policy_metrics_init(o->m, &s->m_policy) != 0)
            return bad(s, KZ_ENOMEM, err, errlen, "cannot register metrics");
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0)
        return bad(s, KZ_EFAIL, err, errlen, "cannot start the thread");
    s->started = 1;
    *out = s;
    return 0;
}

void sender_wake(sender *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->woken, 1);
    curl_multi_wakeup(s->multi);
}

void sender_stop(sender *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        atomic_store(&s->stop, 1);
        curl_multi_wakeup(s->multi);
        pthread_join(s->thread, NULL);
    }
    sender_free(s);
}
