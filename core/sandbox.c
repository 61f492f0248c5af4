/*
 * sandbox — see sandbox.h.
 *
 * Each request is read whole (bodies up to LINE's 2 MB), then answered from
 * the last call of the access handler. One store connection serves every
 * request under a mutex: the sandbox is a test double, not a hot path, and
 * one connection keeps each send's checks (retry key, reply token, monthly
 * limit) and its effects (inbox rows, key, usage) in one transaction.
 *
 * Time: reply-token expiry, the 24 h of retry keys, months and recorded
 * times follow clock.h (so a virtual clock ages reply tokens); rate windows
 * follow the real clock, since they are about real load.
 */
#include "sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/sha.h>

#include "clock.h"
#include "errbuf.h"
#include "idlist.h"
#include "netaddr.h"
#include "log.h"
#include "message.h"
#include "store.h"
#include "webhook.h"

#define MAX_BODY ((size_t)2 << 20) /* LINE: 413 over 2 MB */
#define CONNECTION_TIMEOUT_S 30u
#define MULTICAST_MAX 500
#define DEFAULT_REPLY_TTL_MS 60000
#define PLAY_TIMEOUT_S 10L
/* LINE does not escape '/' (json-c does by default) */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- endpoints and their rate limits (LINE's defaults, line-api-notes §2.5) */

enum ep {
    EP_REPLY,
    EP_PUSH,
    EP_MULTICAST,
    EP_NARROWCAST,
    EP_BROADCAST,
    EP_VALIDATE,
    EP_PROGRESS,
    EP_PROFILE,
    EP_QUOTA,
    EP_INFO,
    EP_LINK_TOKEN,
    EP_RICHMENU,
    EP_RICHMENU_CREATE,
    EP_RICHMENU_DELETE,
    EP_RICHMENU_ALIAS_DELETE,
    EP_COUNT
};

const char *const sandbox_endpoint_names[] = {
    "reply",      "push",     "multicast",       "narrowcast",      "broadcast",
    "validate",   "progress", "profile",         "quota",           "info",
    "link_token", "richmenu", "richmenu_create", "richmenu_delete", "richmenu_alias_delete",
    NULL};

#define SECOND 1000
#define HOUR (3600 * 1000)
static const struct {
    int64_t limit;
    int64_t window_ms;
} ep_default[EP_COUNT] = {
    [EP_REPLY] = {2000, SECOND},
    [EP_PUSH] = {2000, SECOND},
    [EP_MULTICAST] = {200, SECOND},
    [EP_NARROWCAST] = {60, HOUR},
    [EP_BROADCAST] = {60, HOUR},
    [EP_VALIDATE] = {2000, SECOND},
    [EP_PROGRESS] = {2000, SECOND},
    [EP_PROFILE] = {2000, SECOND},
    [EP_QUOTA] = {2000, SECOND},
    [EP_INFO] = {2000, SECOND},
    [EP_LINK_TOKEN] = {2000, SECOND},
    [EP_RICHMENU] = {2000, SECOND},
    [EP_RICHMENU_CREATE] = {100, HOUR},
    [EP_RICHMENU_DELETE] = {100, HOUR},
    [EP_RICHMENU_ALIAS_DELETE] = {100, HOUR},
};

/* LINE's texts (line-api-notes §2.6, REF#error-messages). */
#define TXT_RATE "The API rate limit has been exceeded. Try again later."
#define TXT_MONTHLY "You have reached your monthly limit."
#define TXT_REPLY_TOKEN "Invalid reply token"
#define TXT_RETRY_ACCEPTED "The retry key is already accepted"
#define TXT_NOT_FOUND "Not found"
#define TXT_USER_ID "The value for the 'userId' parameter is invalid"
#define TXT_AUTH_MISSING                                                                           \
    "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS "       \
    "TOKEN>'"
#define TXT_AUTH_INVALID                                                                           \
    "Authentication failed due to the following reason: invalid token. Confirm that the access "   \
    "token in the authorization header is valid."

struct sandbox {
    struct MHD_Daemon *d;
    const cfg *c;
    uint16_t port;
    char *webhook_base;
    int64_t monthly_limit;
    int64_t reply_ttl_ms;
    int64_t limit[EP_COUNT];
    pthread_mutex_t mu; /* store, faults, counters below */
    store *st;
    sandbox_faults faults;
    uint64_t msg_seq; /* sentMessages ids */
    char start_err[256];
    atomic_int starting;
};

typedef struct req {
    char *body;
    size_t len, cap;
    int too_large;
    int64_t arrived_ms; /* real time the headers came in: LINE counts requests as they arrive */
    char request_id[40];
} req;

/* ---- small helpers ------------------------------------------------------ */

static void random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t k = getrandom(p, n, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            /* no entropy source: fall back to something that still varies */
            for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)(rand() & 0xff);
            return;
        }
        p += k;
        n -= (size_t)k;
    }
}

/* A uniform number in [0, 1). */
static double random_unit(void)
{
    uint32_t v;
    random_bytes(&v, sizeof v);
    return (double)v / 4294967296.0;
}

static void hex_of(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A version-4 UUID in hex form (request ids). */
static void new_uuid(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    hex_of(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* A ULID: 48-bit milliseconds then 80 random bits, Crockford base32, so ids
 * sort by time (LINE's webhookEventId). */
static void new_ulid(int64_t ms, char out[27])
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t t = (uint64_t)ms;
    for (int i = 9; i >= 0; i--) {
        out[i] = b32[t & 31];
        t >>= 5;
    }
    unsigned char r[10];
    random_bytes(r, sizeof r);
    /* 80 bits = 16 characters of 5 bits */
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 5; i++)
        hi = (hi << 8) | r[i];
    for (int i = 5; i < 10; i++)
        lo = (lo << 8) | r[i];
    for (int i = 17; i >= 10; i--) {
        out[i] = b32[hi & 31];
        hi >>= 5;
    }
    for (int i = 25; i >= 18; i--) {
        out[i] = b32[lo & 31];
        lo >>= 5;
    }
    out[26] = '\0';
}

static void new_token(char out[33])
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    hex_of(b, sizeof b, out);
}

static int is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ^U[0-9a-f]{32}$ */
static int user_id_ok(const char *s)
{
    return s != NULL && s[0] == 'U' && strlen(s) == 33 && is_hex_lower(s + 1, 32);
}

/* 8-4-4-4-12 hex digits, either case. */
static int uuid_ok(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-')
                return 0;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                     (ch >= 'A' && ch <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* The bot's user id of a shop (webhook `destination`, /v2/bot/info):
 * stable, derived from the shop id. */
static void bot_user_id(const char *shop, char out[34])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char text[128];
    snprintf(text, sizeof text, "kizuna-sandbox-bot:%s", shop);
    SHA256((const unsigned char *)text, strlen(text), md);
    out[0] = 'U';
    hex_of(md, 16, out + 1);
}

/* "YYYY-MM" in Japan time: LINE's months. */
static void month_of(int64_t ms, char out[8])
{
    time_t t = (time_t)(ms / 1000) + 9 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 8, "%Y-%m", &tm);
}

static void iso_time(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
}

static int64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const cfg_shop *shop_by_id(const cfg *c, const char *id)
{
    for (size_t i = 0; i < c->nshops; i++)
        if (c->shops[i].id != NULL && strcmp(c->shops[i].id, id) == 0)
            return c->shops[i].line_access_token != NULL ? &c->shops[i] : NULL;
    return NULL;
}

static const cfg_shop *shop_by_token(const cfg *c, const char *token)
{
    for (size_t i = 0; i < c->nshops; i++) {
        const char *t = c->shops[i].line_access_token;
        if (t != NULL && strcmp(t, token) == 0)
            return &c->shops[i];
    }
    return NULL;
}

/* A display name for a user the sandbox invents. */
static void made_up_name(const char *user, char *out, size_t outlen)
{
    size_t n = strlen(user);
    snprintf(out, outlen, "User %s", n >= 4 ? user + n - 4 : user);
}

/* ---- responses ---------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *conn, req *r, unsigned code, const char *json,
                              const char *accepted_id)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, "x-line-request-id", r->request_id);
    if (accepted_id != NULL)
        MHD_add_response_header(resp, "x-line-accepted-request-id", accepted_id);
    enum MHD_Result ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result answer_obj(struct MHD_Connection *conn, req *r, unsigned code,
                                  json_object *o)
{
    enum MHD_Result ret =
        answer(conn, r, code, json_object_to_json_string_ext(o, JSON_FLAGS), NULL);
    json_object_put(o);
    return ret;
}

/* {"message": text} */
static enum MHD_Result answer_msg(struct MHD_Connection *conn, req *r, unsigned code,
                                  const char *fmt, ...) KZ_PRINTF(4, 5);
static enum MHD_Result answer_msg(struct MHD_Connection *conn, req *r, unsigned code,
                                  const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "message", json_object_new_string(msg));
    return answer_obj(conn, r, code, o);
}

/* {"message":"The request body has 1 error(s)","details":[{message, property}]} */
static json_object *detail_body(const char *message, const char *property)
{
    json_object *o = json_object_new_object();
    json_object *details = json_object_new_array();
    json_object *d = json_object_new_object();
    json_object_object_add(d, "message", json_object_new_string(message));
    json_object_object_add(d, "property", json_object_new_string(property));
    json_object_array_add(details, d);
    json_object_object_add(o, "message", json_object_new_string("The request body has 1 error(s)"));
    json_object_object_add(o, "details", details);
    return o;
}

static enum MHD_Result answer_detail(struct MHD_Connection *conn, req *r, const char *message,
                                     const char *property)
{
    return answer_obj(conn, r, MHD_HTTP_BAD_REQUEST, detail_body(message, property));
}

static enum MHD_Result answer_property(struct MHD_Connection *conn, req *r, const char *property)
{
    return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                      "The property, '%s', in the request body is invalid (line: -, column: -)",
                      property);
}

static enum MHD_Result answer_internal(struct MHD_Connection *conn, req *r, const char *err)
{
    log_msg(KZ_LOG_ERROR, "sandbox: %s", err);
    return answer_msg(conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "Internal server error");
}

/* ---- /v2 plumbing --------------------------------------------------------- */

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The shop of the bearer token, or NULL after answering 401 with LINE's
 * texts (seen in LINE's answers: line-bot-sdk-go's test data for a bad
 * token, laravel-line-sdk issue #9 for a missing header). */
static const cfg_shop *authenticate(sandbox *sb, struct MHD_Connection *conn, req *r,
                                    enum MHD_Result *ret)
{
    const char *auth = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok = NULL;
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
        tok = auth + 7;
        while (*tok == ' ')
            tok++;
    }
    if (tok == NULL || *tok == '\0') {
        *ret = answer_msg(conn, r, MHD_HTTP_UNAUTHORIZED, "%s", TXT_AUTH_MISSING);
        return NULL;
    }
    const cfg_shop *shop = shop_by_token(sb->c, tok);
    if (shop == NULL)
        *ret = answer_msg(conn, r, MHD_HTTP_UNAUTHORIZED, "%s", TXT_AUTH_INVALID);
    return shop;
}

/* 1 when the request may go on; 0 after answering 429. */
static int rate_ok(sandbox *sb, const cfg_shop *shop, enum ep ep, struct MHD_Connection *conn,
                   req *r, enum MHD_Result *ret)
{
    int64_t w = ep_default[ep].window_ms;
    /* the window of the request's arrival, not of the moment a busy
     * sandbox gets to it */
    int64_t start = r->arrived_ms / w * w;
    int allowed = 0;
    char err[256];
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_rate_hit(sb->st, shop->id, sandbox_endpoint_names[ep], start, sb->limit[ep],
                                &allowed, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0) {
        *ret = answer_internal(conn, r, err);
        return 0;
    }
    if (!allowed) {
        *ret = answer_msg(conn, r, MHD_HTTP_TOO_MANY_REQUESTS, TXT_RATE);
        return 0;
    }
    return 1;
}

/* ---- sending -------------------------------------------------------------- */

enum send_kind { S_REPLY, S_PUSH, S_MULTICAST, S_NARROWCAST, S_BROADCAST };
static const char *const send_names[] = {"reply", "push", "multicast", "narrowcast", "broadcast"};

typedef struct recipients {
    char (*ids)[64];
    size_t n, cap;
} recipients;

/* A user listed twice in a multicast receives once: clears take[] for every
 * later listing of an id already taken. Sorted, so 500 ids cost 500 log 500
 * comparisons, not 125,000. */
static int drop_repeats(const recipients *to, char *take)
{
    if (to->n < 2)
        return 0;
    idlist_entry *l = malloc(to->n * sizeof *l);
    if (l == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < to->n; i++)
        l[i] = (idlist_entry){to->ids[i], i};
    idlist_sort(l, to->n);
    int kept = 0;
    for (size_t i = 0; i < to->n; i++) {
        if (i > 0 && strcmp(l[i].id, l[i - 1].id) != 0)
            kept = 0;
        if (!take[l[i].place])
            continue;
        if (kept)
            take[l[i].place] = 0;
        kept = 1;
    }
    free(l);
    return 0;
}

static int recipients_add(recipients *rc, const char *id)
{
    if (rc->n == rc->cap) {
        size_t cap = rc->cap ? rc->cap * 2 : 16;
        void *p = realloc(rc->ids, cap * sizeof *rc->ids);
        if (p == NULL)
            return KZ_ENOMEM;
        rc->ids = p;
        rc->cap = cap;
    }
    snprintf(rc->ids[rc->n++], sizeof rc->ids[0], "%s", id);
    return 0;
}

static int add_follower(void *arg, const store_sbx_user *u)
{
    return recipients_add(arg, u->user);
}

/* What one accepted send does, in the caller's transaction. */
typedef struct send_job {
    sandbox *sb;
    const cfg_shop *shop;
    enum send_kind kind;
    json_object *messages;
    recipients to;
    const char *retry_key;
    const char *reply_token;
    int64_t now;
    /* results */
    unsigned status;
    json_object *body; /* the answer */
    char accepted_id[40];
    char err[512];
} send_job;

/* 1 when the user receives messages: not known as blocked. */
static int deliverable(send_job *j, const char *user, int *ok)
{
    store_sbx_user u;
    int rc = store_sbx_user_get(j->sb->st, j->shop->id, user, &u, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        *ok = 1;
        return 0;
    }
    if (rc == 0)
        *ok = !u.blocked;
    return rc;
}

static json_object *sent_messages(sandbox *sb, size_t n)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        char id[32], quote[33];
        /* numeric ids that grow, like LINE's */
        snprintf(id, sizeof id, "%llu",
                 (unsigned long long)(500000000000000000ULL + ++sb->msg_seq +
                                      (uint64_t)clock_now_ms() * 1000ULL % 100000000000000ULL));
        new_token(quote);
        json_object_object_add(m, "id", json_object_new_string(id));
        json_object_object_add(m, "quoteToken", json_object_new_string(quote));
        json_object_array_add(arr, m);
    }
    return arr;
}

/* Runs under sb->mu inside a transaction; 0 with j->status set (an answer,
 * possibly an error answer), or a store error. */
static int send_in_tx(send_job *j, const char *request_id)
{
    sandbox *sb = j->sb;
    store *st = sb->st;
    int rc;
    if (j->retry_key != NULL) {
        char *prev = NULL;
        rc = store_sbx_retry_get(st, j->shop->id, j->retry_key, j->now, j->accepted_id,
                                 sizeof j->accepted_id, &prev, j->err, sizeof j->err);
        if (rc == 0) {
            j->status = MHD_HTTP_CONFLICT;
            j->body = json_tokener_parse(prev);
            free(prev);
            if (j->body == NULL) {
                j->body = json_object_new_object();
                json_object_object_add(j->body, "message",
                                       json_object_new_string(TXT_RETRY_ACCEPTED));
            }
            return 0;
        }
        if (rc != KZ_ENOTFOUND)
            return rc;
        j->accepted_id[0] = '\0';
    }
    if (j->kind == S_REPLY) {
        char user[64];
        int64_t ttl = sb->reply_ttl_ms;
        rc = store_sbx_token_use(st, j->shop->id, j->reply_token, j->now - ttl, user, sizeof user,
                                 j->err, sizeof j->err);
        if (rc == KZ_ENOTFOUND) {
            j->status = MHD_HTTP_BAD_REQUEST;
            j->body = json_object_new_object();
            json_object_object_add(j->body, "message", json_object_new_string(TXT_REPLY_TOKEN));
            return 0;
        }
        if (rc != 0)
            return rc;
        if ((rc = recipients_add(&j->to, user)) != 0)
            return rc;
    } else if (j->kind == S_BROADCAST || j->kind == S_NARROWCAST) {
        rc = store_sbx_users(st, j->shop->id, 1, add_follower, &j->to, j->err, sizeof j->err);
        if (rc != 0)
            return rc;
    }
    /* who receives: blocked users get nothing and are not counted */
    size_t nmsg = json_object_array_length(j->messages);
    int64_t counted = 0;
    char *take = calloc(j->to.n ? j->to.n : 1, 1);
    if (take == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < j->to.n; i++) {
        int ok = 0;
        if ((rc = deliverable(j, j->to.ids[i], &ok)) != 0) {
            free(take);
            return rc;
        }
        take[i] = (char)ok;
    }
    if ((rc = drop_repeats(&j->to, take)) != 0) {
        free(take);
        return rc;
    }
    for (size_t i = 0; i < j->to.n; i++)
        counted += take[i];
    char month[8];
    month_of(j->now, month);
    if (j->kind != S_REPLY && sb->monthly_limit > 0) {
        int64_t used = 0;
        rc = store_sbx_usage_get(st, j->shop->id, month, &used, j->err, sizeof j->err);
        if (rc == 0 && used + counted > sb->monthly_limit) {
            free(take);
            j->status = MHD_HTTP_TOO_MANY_REQUESTS;
            j->body = json_object_new_object();
            json_object_object_add(j->body, "message", json_object_new_string(TXT_MONTHLY));
            return 0;
        }
    }
    /* each message object keeps its own text: written once, stored per user */
    const char *text[MESSAGE_MAX_PER_REQUEST];
    for (size_t m = 0; m < nmsg && m < MESSAGE_MAX_PER_REQUEST; m++)
        text[m] =
            json_object_to_json_string_ext(json_object_array_get_idx(j->messages, m), JSON_FLAGS);
    for (size_t i = 0; rc == 0 && i < j->to.n; i++) {
        if (!take[i])
            continue;
        for (size_t m = 0; rc == 0 && m < nmsg && m < MESSAGE_MAX_PER_REQUEST; m++)
            rc = store_sbx_inbox_add(st, j->shop->id, j->to.ids[i], j->now, send_names[j->kind],
                                     request_id, text[m], j->err, sizeof j->err);
    }
    free(take);
    if (rc == 0 && j->kind != S_REPLY && counted > 0)
        rc = store_sbx_usage_add(st, j->shop->id, month, counted, j->err, sizeof j->err);
    if (rc != 0)
        return rc;
    j->body = json_object_new_object();
    if (j->kind == S_REPLY || j->kind == S_PUSH)
        json_object_object_add(j->body, "sentMessages", sent_messages(sb, nmsg));
    j->status = j->kind == S_NARROWCAST ? MHD_HTTP_ACCEPTED : MHD_HTTP_OK;
    if (j->retry_key != NULL) {
        /* what a 409 for this key repeats (push: the sentMessages too) */
        json_object *conflict = json_object_new_object();
        json_object_object_add(conflict, "message", json_object_new_string(TXT_RETRY_ACCEPTED));
        json_object *sent = NULL;
        if (json_object_object_get_ex(j->body, "sentMessages", &sent))
            json_object_object_add(conflict, "sentMessages", json_object_get(sent));
        rc = store_sbx_retry_put(st, j->shop->id, j->retry_key, request_id, j->now,
                                 json_object_to_json_string_ext(conflict, JSON_FLAGS), j->err,
                                 sizeof j->err);
        json_object_put(conflict);
    }
    return rc;
}

static enum MHD_Result do_send(sandbox *sb, struct MHD_Connection *conn, req *r,
                               const cfg_shop *shop, enum send_kind kind, int validate_only)
{
    const char *retry_key = header(conn, "X-Line-Retry-Key");
    if (retry_key != NULL && (kind == S_REPLY || validate_only))
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "The retry key is not supported by this endpoint");
    if (retry_key != NULL && !uuid_ok(retry_key))
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "The value of the X-Line-Retry-Key header is invalid; it must be a "
                          "UUID in hex form");
    message_error me;
    const char *body = r->body != NULL ? r->body : "";
    int rc = message_validate_request(body, r->len, MESSAGE_MAX_PER_REQUEST, &me);
    if (rc == KZ_ENOMEM)
        return answer_internal(conn, r, "out of memory");
    if (rc != 0) {
        char text[8192];
        size_t n = message_error_json(&me, text, sizeof text);
        if (n >= sizeof text)
            snprintf(text, sizeof text, "{\"message\":\"%s\"}", me.message);
        return answer(conn, r, MHD_HTTP_BAD_REQUEST, text, NULL);
    }
    json_object *doc = json_tokener_parse(body);
    if (doc == NULL)
        return answer_internal(conn, r, "request body passed validation but did not parse");
    json_object *messages = NULL, *v = NULL;
    json_object_object_get_ex(doc, "messages", &messages);
    send_job j = {
        .sb = sb, .shop = shop, .kind = kind, .messages = messages, .retry_key = retry_key};
    enum MHD_Result ret;
    if (!validate_only && kind == S_PUSH) {
        const char *to =
            json_object_object_get_ex(doc, "to", &v) && json_object_is_type(v, json_type_string)
                ? json_object_get_string(v)
                : NULL;
        if (!user_id_ok(to)) {
            ret = answer_property(conn, r, "to");
            goto out;
        }
        if (recipients_add(&j.to, to) != 0) {
            ret = answer_internal(conn, r, "out of memory");
            goto out;
        }
    } else if (!validate_only && kind == S_MULTICAST) {
        if (!json_object_object_get_ex(doc, "to", &v) || !json_object_is_type(v, json_type_array)) {
            ret = answer_detail(conn, r, "May not be empty", "to");
            goto out;
        }
        size_t n = json_object_array_length(v);
        if (n < 1 || n > MULTICAST_MAX) {
            ret = answer_detail(conn, r, "Size must be between 1 and 500", "to");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            const char *id =
                json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
            if (!user_id_ok(id)) {
                char prop[32];
                snprintf(prop, sizeof prop, "to[%zu]", i);
                ret = answer_property(conn, r, prop);
                goto out;
            }
            if (recipients_add(&j.to, id) != 0) {
                ret = answer_internal(conn, r, "out of memory");
                goto out;
            }
        }
    } else if (!validate_only && kind == S_REPLY) {
        if (!json_object_object_get_ex(doc, "replyToken", &v) ||
            !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
            ret = answer_detail(conn, r, "May not be empty", "replyToken");
            goto out;
        }
        j.reply_token = json_object_get_string(v);
    }
    if (validate_only) {
        ret = answer(conn, r, MHD_HTTP_OK, "{}", NULL);
        goto out;
    }
    char err[512];
    pthread_mutex_lock(&sb->mu);
    j.now = clock_now_ms();
    rc = store_begin(sb->st, err, sizeof err);
    if (rc == 0)
        rc = send_in_tx(&j, r->request_id);
    else
        snprintf(j.err, sizeof j.err, "%s", err);
    if (rc == 0 && j.status >= 200 && j.status < 300)
        rc = store_commit(sb->st, j.err, sizeof j.err);
    if (store_in_transaction(sb->st))
        store_rollback(sb->st);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0) {
        json_object_put(j.body);
        ret = answer_internal(conn, r, j.err);
    } else {
        ret = answer(conn, r, j.status, json_object_to_json_string_ext(j.body, JSON_FLAGS),
                     j.status == MHD_HTTP_CONFLICT ? j.accepted_id : NULL);
        json_object_put(j.body);
    }
out:
    free(j.to.ids);
    json_object_put(doc);
    return ret;
}

/* ---- other /v2 calls ------------------------------------------------------ */

static enum MHD_Result do_progress(sandbox *sb, struct MHD_Connection *conn, req *r,
                                   const cfg_shop *shop)
{
    const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "requestId");
    if (id == NULL || *id == '\0')
        return answer_detail(conn, r, "May not be empty", "requestId");
    int64_t msgs = 0, users = 0;
    char err[256];
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_inbox_count(sb->st, shop->id, id, &msgs, &users, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0)
        return answer_internal(conn, r, err);
    char when[40];
    iso_time(clock_now_ms(), when, sizeof when);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "phase", json_object_new_string("succeeded"));
    json_object_object_add(o, "successCount", json_object_new_int64(users));
    json_object_object_add(o, "failureCount", json_object_new_int64(0));
    json_object_object_add(o, "targetCount", json_object_new_int64(users));
    json_object_object_add(o, "acceptedTime", json_object_new_string(when));
    json_object_object_add(o, "completedTime", json_object_new_string(when));
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result do_profile(sandbox *sb, struct MHD_Connection *conn, req *r,
                                  const cfg_shop *shop, const char *user)
{
    store_sbx_user u;
    char err[256];
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_user_get(sb->st, shop->id, user, &u, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc == KZ_ENOTFOUND || (rc == 0 && u.blocked))
        return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, TXT_NOT_FOUND);
    if (rc != 0)
        return answer_internal(conn, r, err);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "displayName", json_object_new_string(u.display_name));
    json_object_object_add(o, "userId", json_object_new_string(u.user));
    json_object_object_add(o, "language", json_object_new_string("ja"));
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result do_quota(sandbox *sb, struct MHD_Connection *conn, req *r,
                                const cfg_shop *shop, int consumption)
{
    json_object *o = json_object_new_object();
    if (!consumption) {
        json_object_object_add(o, "type",
                               json_object_new_string(sb->monthly_limit > 0 ? "limited" : "none"));
        if (sb->monthly_limit > 0)
            json_object_object_add(o, "value", json_object_new_int64(sb->monthly_limit));
        return answer_obj(conn, r, MHD_HTTP_OK, o);
    }
    char month[8], err[256];
    month_of(clock_now_ms(), month);
    int64_t used = 0;
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_usage_get(sb->st, shop->id, month, &used, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0) {
        json_object_put(o);
        return answer_internal(conn, r, err);
    }
    json_object_object_add(o, "totalUsage", json_object_new_int64(used));
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result do_info(struct MHD_Connection *conn, req *r, const cfg_shop *shop)
{
    char uid[34], basic[80];
    bot_user_id(shop->id, uid);
    snprintf(basic, sizeof basic, "@%s", shop->id);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "userId", json_object_new_string(uid));
    json_object_object_add(o, "basicId", json_object_new_string(basic));
    json_object_object_add(o, "displayName",
                           json_object_new_string(shop->name ? shop->name : shop->id));
    json_object_object_add(o, "chatMode", json_object_new_string("bot"));
    json_object_object_add(o, "markAsReadMode", json_object_new_string("auto"));
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result do_link_token(struct MHD_Connection *conn, req *r, const char *user)
{
    if (!user_id_ok(user))
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, TXT_USER_ID);
    unsigned char b[32];
    random_bytes(b, sizeof b);
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char tok[33];
    for (size_t i = 0; i < 32; i++)
        tok[i] = alpha[b[i] % 62];
    tok[32] = '\0';
    json_object *o = json_object_new_object();
    json_object_object_add(o, "linkToken", json_object_new_string(tok));
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

/* ---- rich menus ------------------------------------------------------------ */

/* LINE's texts for rich menus are not in our sources (messaging-api.yml
 * lists no error bodies for them). These are the answers LINE is widely
 * reported to give, kept as recalled; treat them as LINE-style, not
 * verified. */
#define TXT_RM_NOT_FOUND "richmenu not found"
#define TXT_RM_NO_IMAGE "must upload richmenu image before applying it to user"
#define TXT_RM_HAS_IMAGE "An image has already been uploaded to the richmenu"
#define TXT_RM_NO_USER_MENU "the user has no richmenu"
#define TXT_RM_NO_DEFAULT "no default richmenu"
#define TXT_RM_ALIAS_CONFLICT "conflict richmenu alias id"
#define TXT_RM_ALIAS_NOT_FOUND "richmenu alias not found"
#define RM_IMAGE_MAX ((size_t)1 << 20) /* LINE: at most 1 MB */
#define RM_BULK_MAX 500

enum rm_op {
    RM_CREATE,
    RM_VALIDATE,
    RM_CONTENT_PUT,
    RM_CONTENT_GET,
    RM_GET,
    RM_LIST,
    RM_DELETE,
    RM_DEFAULT_SET,
    RM_DEFAULT_GET,
    RM_DEFAULT_DEL,
    RM_USER_LINK,
    RM_USER_GET,
    RM_USER_UNLINK,
    RM_BULK_LINK,
    RM_BULK_UNLINK,
    RM_ALIAS_CREATE,
    RM_ALIAS_GET,
    RM_ALIAS_UPDATE,
    RM_ALIAS_DELETE,
    RM_ALIAS_LIST
};

typedef struct rm_call {
    enum rm_op op;
    char menu[80];  /* rich menu id from the path */
    char user[80];  /* user id from the path */
    char alias[80]; /* alias id from the path */
} rm_call;

/* What one rich menu call does under sb->mu in a transaction. */
typedef struct rm_job {
    sandbox *sb;
    const cfg_shop *shop;
    const rm_call *call;
    req *r;
    json_object *doc;    /* the parsed body, if the call takes one */
    char image_type[16]; /* an upload's content type */
    unsigned status;
    json_object *body; /* the answer */
    char err[512];
} rm_job;

static void rm_answer(rm_job *j, unsigned status, const char *message)
{
    j->status = status;
    j->body = json_object_new_object();
    if (message != NULL)
        json_object_object_add(j->body, "message", json_object_new_string(message));
}

/* Splits "a/b/c" into at most max segments of < 80 characters; -1 when it
 * does not fit or a segment is empty. */
static int split_path(const char *p, char seg[][80], int max)
{
    int n = 0;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n == max || len == 0 || len >= 80)
            return -1;
        memcpy(seg[n], p, len);
        seg[n++][len] = '\0';
        p += len + (e != NULL);
        if (e != NULL && *p == '\0')
            return -1;
    }
    return n;
}

static int is_post(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_POST) == 0;
}

static int is_get(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_GET) == 0;
}

static int is_delete(const char *m)
{
    return strcmp(m, MHD_HTTP_METHOD_DELETE) == 0;
}

/* /v2/bot/richmenu/… */
static int rm_route_menu(char seg[][80], int n, const char *m, rm_call *c)
{
    if (n == 1 && is_post(m))
        return c->op = RM_CREATE, 0;
    if (n == 2 && strcmp(seg[1], "validate") == 0 && is_post(m))
        return c->op = RM_VALIDATE, 0;
    if (n == 2 && strcmp(seg[1], "list") == 0 && is_get(m))
        return c->op = RM_LIST, 0;
    if (n == 3 && strcmp(seg[1], "bulk") == 0 && is_post(m)) {
        if (strcmp(seg[2], "link") == 0)
            return c->op = RM_BULK_LINK, 0;
        if (strcmp(seg[2], "unlink") == 0)
            return c->op = RM_BULK_UNLINK, 0;
        return -1;
    }
    if (n >= 2 && strcmp(seg[1], "alias") == 0) {
        if (n == 2 && is_post(m))
            return c->op = RM_ALIAS_CREATE, 0;
        if (n == 3 && strcmp(seg[2], "list") == 0 && is_get(m))
            return c->op = RM_ALIAS_LIST, 0;
        if (n != 3)
            return -1;
        snprintf(c->alias, sizeof c->alias, "%s", seg[2]);
        c->op = is_get(m) ? RM_ALIAS_GET : is_post(m) ? RM_ALIAS_UPDATE : RM_ALIAS_DELETE;
        return is_get(m) || is_post(m) || is_delete(m) ? 0 : -1;
    }
    if (n < 2 || n > 3)
        return -1;
    snprintf(c->menu, sizeof c->menu, "%s", seg[1]);
    if (n == 3 && strcmp(seg[2], "content") == 0 && (is_post(m) || is_get(m)))
        return c->op = is_post(m) ? RM_CONTENT_PUT : RM_CONTENT_GET, 0;
    if (n == 2 && (is_get(m) || is_delete(m)))
        return c->op = is_get(m) ? RM_GET : RM_DELETE, 0;
    return -1;
}

/* /v2/bot/user/{all|userId}/richmenu[/{richMenuId}] */
static int rm_route_user(char seg[][80], int n, const char *m, rm_call *c)
{
    if (n < 3 || n > 4 || strcmp(seg[2], "richmenu") != 0)
        return -1;
    int all = strcmp(seg[1], "all") == 0;
    snprintf(c->user, sizeof c->user, "%s", seg[1]);
    if (n == 4 && is_post(m)) {
        snprintf(c->menu, sizeof c->menu, "%s", seg[3]);
        return c->op = all ? RM_DEFAULT_SET : RM_USER_LINK, 0;
    }
    if (n == 3 && is_get(m))
        return c->op = all ? RM_DEFAULT_GET : RM_USER_GET, 0;
    if (n == 3 && is_delete(m))
        return c->op = all ? RM_DEFAULT_DEL : RM_USER_UNLINK, 0;
    return -1;
}

/* The rate-limited endpoint of a rich menu call (LINE's limits:
 * line-api-notes §2.5), EP_COUNT when url is no rich menu call. */
static enum ep rm_route(const char *url, const char *method, rm_call *c)
{
    static const char bot[] = "/v2/bot/";
    char seg[5][80];
    memset(c, 0, sizeof *c);
    if (strncmp(url, bot, sizeof bot - 1) != 0)
        return EP_COUNT;
    int n = split_path(url + sizeof bot - 1, seg, 5);
    int rc = -1;
    if (n >= 1 && strcmp(seg[0], "richmenu") == 0)
        rc = rm_route_menu(seg, n, method, c);
    else if (n >= 1 && strcmp(seg[0], "user") == 0)
        rc = rm_route_user(seg, n, method, c);
    if (rc != 0)
        return EP_COUNT;
    switch (c->op) {
    case RM_CREATE:
        return EP_RICHMENU_CREATE;
    case RM_DELETE:
        return EP_RICHMENU_DELETE;
    case RM_ALIAS_DELETE:
        return EP_RICHMENU_ALIAS_DELETE;
    default:
        return EP_RICHMENU;
    }
}

static int rm_takes_json(enum rm_op op)
{
    return op == RM_CREATE || op == RM_VALIDATE || op == RM_BULK_LINK || op == RM_BULK_UNLINK ||
           op == RM_ALIAS_CREATE || op == RM_ALIAS_UPDATE;
}

/* A menu of the shop that exists: 0, or the 404 answer set (status). */
static int rm_need_menu(rm_job *j, const char *id, int need_image)
{
    int has_image = 0;
    int rc = store_sbx_rm_get(j->sb->st, j->shop->id, id, NULL, &has_image, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_NOT_FOUND);
        return 0;
    }
    if (rc == 0 && need_image && !has_image)
        rm_answer(j, MHD_HTTP_BAD_REQUEST, TXT_RM_NO_IMAGE);
    return rc;
}

/* The RichMenuResponse kept for a new menu: the request's properties and
 * its id, nothing else the request may have carried. */
static json_object *rm_response(json_object *doc, const char *id)
{
    static const char *const keys[] = {"size", "selected", "name", "chatBarText", "areas"};
    json_object *o = json_object_new_object();
    json_object_object_add(o, "richMenuId", json_object_new_string(id));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_object *v = NULL;
        if (json_object_object_get_ex(doc, keys[i], &v))
            json_object_object_add(o, keys[i], json_object_get(v));
    }
    return o;
}

static int rm_create(rm_job *j)
{
    char hex[33], id[48];
    new_token(hex);
    snprintf(id, sizeof id, "richmenu-%s", hex);
    json_object *menu = rm_response(j->doc, id);
    int rc =
        store_sbx_rm_add(j->sb->st, j->shop->id, id,
                         json_object_to_json_string_ext(menu, JSON_FLAGS), j->err, sizeof j->err);
    json_object_put(menu);
    if (rc == 0) {
        rm_answer(j, MHD_HTTP_OK, NULL);
        json_object_object_add(j->body, "richMenuId", json_object_new_string(id));
    }
    return rc;
}

static int rm_get(rm_job *j)
{
    char *body = NULL;
    int rc =
        store_sbx_rm_get(j->sb->st, j->shop->id, j->call->menu, &body, NULL, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_NOT_FOUND);
        return 0;
    }
    if (rc != 0)
        return rc;
    j->body = json_tokener_parse(body);
    free(body);
    j->status = MHD_HTTP_OK;
    return j->body != NULL ? 0 : KZ_EIO;
}

static int rm_add_menu(void *arg, const char *id, const char *body)
{
    (void)id;
    json_object *o = json_tokener_parse(body);
    if (o != NULL)
        json_object_array_add(arg, o);
    return 0;
}

static int rm_list(rm_job *j)
{
    json_object *arr = json_object_new_array();
    int rc = store_sbx_rm_list(j->sb->st, j->shop->id, rm_add_menu, arr, j->err, sizeof j->err);
    rm_answer(j, MHD_HTTP_OK, NULL);
    json_object_object_add(j->body, "richmenus", arr);
    return rc;
}

static int rm_delete(rm_job *j)
{
    int rc = store_sbx_rm_delete(j->sb->st, j->shop->id, j->call->menu, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_NOT_FOUND);
        return 0;
    }
    if (rc == 0)
        rm_answer(j, MHD_HTTP_OK, NULL);
    return rc;
}

/* 1 when data[n] starts like an image of content type ctype. */
static int image_magic_ok(const char *ctype, const char *data, size_t n)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char jpeg[3] = {0xff, 0xd8, 0xff};
    if (strcmp(ctype, "image/png") == 0)
        return n >= sizeof png && memcmp(data, png, sizeof png) == 0;
    return n >= sizeof jpeg && memcmp(data, jpeg, sizeof jpeg) == 0;
}

static uint32_t be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

/* The pixel size of a PNG (its IHDR chunk, first by the format's rules) or
 * of a JPEG (its first frame header, SOFn); 0 when it cannot be read. */
static int image_size(const char *type, const unsigned char *d, size_t n, uint32_t *w, uint32_t *h)
{
    if (strcmp(type, "image/png") == 0) {
        if (n < 24 || memcmp(d + 12, "IHDR", 4) != 0)
            return 0;
        *w = be16(d + 16) << 16 | be16(d + 18);
        *h = be16(d + 20) << 16 | be16(d + 22);
        return 1;
    }
    for (size_t i = 2; i + 9 <= n;) { /* after SOI: marker segments */
        unsigned m = d[i + 1];
        if (d[i] != 0xff)
            return 0;
        if (m == 0xff || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) { /* fill, no length */
            i += m == 0xff ? 1 : 2;
            continue;
        }
        if (m == 0xd9 || m == 0xda) /* the end, or scan data, before any frame */
            return 0;
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            *h = be16(d + i + 5);
            *w = be16(d + i + 7);
            return 1;
        }
        size_t len = be16(d + i + 2);
        if (len < 2)
            return 0;
        i += 2 + len;
    }
    return 0;
}

/* image/png or image/jpeg (parameters after ';' ignored) into out; else 0. */
static int image_type_of(const char *ctype, char out[16])
{
    static const char *const types[] = {"image/png", "image/jpeg"};
    for (int i = 0; ctype != NULL && i < 2; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(ctype, types[i], n) == 0 && (ctype[n] == '\0' || ctype[n] == ';')) {
            snprintf(out, 16, "%s", types[i]);
            return 1;
        }
    }
    return 0;
}

/* Content type, size and magic are checked before (rm_check_upload). */
static int rm_content_put(rm_job *j)
{
    int rc = store_sbx_rm_image_put(j->sb->st, j->shop->id, j->call->menu, j->image_type,
                                    j->r->body, j->r->len, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND)
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_NOT_FOUND);
    else if (rc == KZ_EEXIST)
        rm_answer(j, MHD_HTTP_BAD_REQUEST, TXT_RM_HAS_IMAGE);
    else if (rc == 0)
        rm_answer(j, MHD_HTTP_OK, NULL);
    return rc == KZ_ENOTFOUND || rc == KZ_EEXIST ? 0 : rc;
}

/* Links (or with menu NULL unlinks) user, "" being the default; blocked
 * users are left alone and still get 200, as on LINE. */
static int rm_link(rm_job *j, const char *user, const char *menu)
{
    if (*user != '\0' && menu != NULL) {
        store_sbx_user u;
        int rc = store_sbx_user_get(j->sb->st, j->shop->id, user, &u, j->err, sizeof j->err);
        if (rc != 0 && rc != KZ_ENOTFOUND)
            return rc;
        if (rc == 0 && u.blocked)
            return 0;
    }
    return store_sbx_rm_link_put(j->sb->st, j->shop->id, user, menu, j->err, sizeof j->err);
}

static int rm_link_one(rm_job *j)
{
    const rm_call *c = j->call;
    int all = c->op == RM_DEFAULT_SET || c->op == RM_DEFAULT_DEL;
    int link = c->op == RM_DEFAULT_SET || c->op == RM_USER_LINK;
    if (!all && !user_id_ok(c->user)) {
        rm_answer(j, MHD_HTTP_BAD_REQUEST, TXT_USER_ID);
        return 0;
    }
    int rc = link ? rm_need_menu(j, c->menu, 1) : 0;
    if (rc != 0 || j->status != 0)
        return rc;
    rc = rm_link(j, all ? "" : c->user, link ? c->menu : NULL);
    if (rc == 0)
        rm_answer(j, MHD_HTTP_OK, NULL);
    return rc;
}

static int rm_link_get(rm_job *j)
{
    int all = j->call->op == RM_DEFAULT_GET;
    if (!all && !user_id_ok(j->call->user)) {
        rm_answer(j, MHD_HTTP_BAD_REQUEST, TXT_USER_ID);
        return 0;
    }
    char id[80];
    int rc = store_sbx_rm_link_get(j->sb->st, j->shop->id, all ? "" : j->call->user, id, sizeof id,
                                   j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, all ? TXT_RM_NO_DEFAULT : TXT_RM_NO_USER_MENU);
        return 0;
    }
    if (rc == 0) {
        rm_answer(j, MHD_HTTP_OK, NULL);
        json_object_object_add(j->body, "richMenuId", json_object_new_string(id));
    }
    return rc;
}

/* userIds of a bulk call: 1..500 user ids, else the 400 answer set. */
static json_object *rm_user_ids(rm_job *j)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(j->doc, "userIds", &v) ||
        !json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0) {
        j->status = MHD_HTTP_BAD_REQUEST;
        j->body = detail_body("May not be empty", "userIds");
        return NULL;
    }
    if (json_object_array_length(v) > RM_BULK_MAX) {
        j->status = MHD_HTTP_BAD_REQUEST;
        j->body = detail_body("Size must be between 1 and 500", "userIds");
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string) || !user_id_ok(json_object_get_string(e))) {
            char msg[128];
            snprintf(msg, sizeof msg,
                     "The property, 'userIds[%zu]', in the request body is invalid (line: -, "
                     "column: -)",
                     i);
            rm_answer(j, MHD_HTTP_BAD_REQUEST, msg);
            return NULL;
        }
    }
    return v;
}

/* LINE links in bulk asynchronously (202); the sandbox does it at once,
 * which a caller that checks with GET …/richmenu cannot tell apart. */
static int rm_bulk(rm_job *j)
{
    const char *menu = NULL;
    if (j->call->op == RM_BULK_LINK) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(j->doc, "richMenuId", &v) ||
            !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
            j->status = MHD_HTTP_BAD_REQUEST;
            j->body = detail_body("May not be empty", "richMenuId");
            return 0;
        }
        menu = json_object_get_string(v);
    }
    json_object *ids = rm_user_ids(j);
    if (ids == NULL)
        return 0;
    int rc = menu != NULL ? rm_need_menu(j, menu, 1) : 0;
    for (size_t i = 0; rc == 0 && j->status == 0 && i < json_object_array_length(ids); i++)
        rc = rm_link(j, json_object_get_string(json_object_array_get_idx(ids, i)), menu);
    if (rc == 0 && j->status == 0)
        rm_answer(j, MHD_HTTP_ACCEPTED, NULL);
    return rc;
}

/* ^[a-z0-9_-]{1,32}$ */
static int alias_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

/* A required string property of the body, else the 400 answer set. */
static const char *rm_str(rm_job *j, const char *key)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(j->doc, key, &v) && json_object_is_type(v, json_type_string) &&
        json_object_get_string_len(v) > 0)
        return json_object_get_string(v);
    j->status = MHD_HTTP_BAD_REQUEST;
    j->body = detail_body("May not be empty", key);
    return NULL;
}

static int rm_alias_put(rm_job *j)
{
    int create = j->call->op == RM_ALIAS_CREATE;
    const char *alias = create ? rm_str(j, "richMenuAliasId") : j->call->alias;
    if (alias == NULL)
        return 0;
    if (create && !alias_id_ok(alias)) {
        /* LINE's wording unknown: the pattern, in its detail style */
        j->status = MHD_HTTP_BAD_REQUEST;
        j->body = detail_body("Must match ^[a-z0-9_-]{1,32}$", "richMenuAliasId");
        return 0;
    }
    const char *menu = rm_str(j, "richMenuId");
    int rc = menu != NULL ? rm_need_menu(j, menu, 0) : 0;
    if (rc != 0 || j->status != 0)
        return rc;
    rc = store_sbx_rm_alias_put(j->sb->st, j->shop->id, alias, menu, create, j->err, sizeof j->err);
    if (rc == KZ_EEXIST)
        rm_answer(j, MHD_HTTP_BAD_REQUEST, TXT_RM_ALIAS_CONFLICT);
    else if (rc == KZ_ENOTFOUND)
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_ALIAS_NOT_FOUND);
    else if (rc == 0)
        rm_answer(j, MHD_HTTP_OK, NULL);
    return rc == KZ_EEXIST || rc == KZ_ENOTFOUND ? 0 : rc;
}

static json_object *alias_json(const char *alias, const char *menu)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "richMenuAliasId", json_object_new_string(alias));
    json_object_object_add(o, "richMenuId", json_object_new_string(menu));
    return o;
}

static int rm_alias_get(rm_job *j)
{
    char menu[80];
    int rc = store_sbx_rm_alias_get(j->sb->st, j->shop->id, j->call->alias, menu, sizeof menu,
                                    j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_ALIAS_NOT_FOUND);
        return 0;
    }
    if (rc == 0) {
        j->status = MHD_HTTP_OK;
        j->body = alias_json(j->call->alias, menu);
    }
    return rc;
}

static int rm_alias_delete(rm_job *j)
{
    int rc =
        store_sbx_rm_alias_delete(j->sb->st, j->shop->id, j->call->alias, j->err, sizeof j->err);
    if (rc == KZ_ENOTFOUND) {
        rm_answer(j, MHD_HTTP_NOT_FOUND, TXT_RM_ALIAS_NOT_FOUND);
        return 0;
    }
    if (rc == 0)
        rm_answer(j, MHD_HTTP_OK, NULL);
    return rc;
}

static int rm_add_alias(void *arg, const char *alias, const char *menu)
{
    json_object_array_add(arg, alias_json(alias, menu));
    return 0;
}

static int rm_alias_list(rm_job *j)
{
    json_object *arr = json_object_new_array();
    int rc = store_sbx_rm_aliases(j->sb->st, j->shop->id, rm_add_alias, arr, j->err, sizeof j->err);
    rm_answer(j, MHD_HTTP_OK, NULL);
    json_object_object_add(j->body, "aliases", arr);
    return rc;
}

static int rm_dispatch(rm_job *j)
{
    switch (j->call->op) {
    case RM_CREATE:
        return rm_create(j);
    case RM_VALIDATE:
        rm_answer(j, MHD_HTTP_OK, NULL);
        return 0;
    case RM_CONTENT_PUT:
        return rm_content_put(j);
    case RM_GET:
        return rm_get(j);
    case RM_LIST:
        return rm_list(j);
    case RM_DELETE:
        return rm_delete(j);
    case RM_DEFAULT_SET:
    case RM_DEFAULT_DEL:
    case RM_USER_LINK:
    case RM_USER_UNLINK:
        return rm_link_one(j);
    case RM_DEFAULT_GET:
    case RM_USER_GET:
        return rm_link_get(j);
    case RM_BULK_LINK:
    case RM_BULK_UNLINK:
        return rm_bulk(j);
    case RM_ALIAS_CREATE:
    case RM_ALIAS_UPDATE:
        return rm_alias_put(j);
    case RM_ALIAS_GET:
        return rm_alias_get(j);
    case RM_ALIAS_DELETE:
        return rm_alias_delete(j);
    case RM_ALIAS_LIST:
        return rm_alias_list(j);
    case RM_CONTENT_GET:
        break;
    }
    return KZ_EINVAL;
}

/* Runs the job in one transaction, committed only for a 2xx answer. */
static enum MHD_Result rm_run(sandbox *sb, struct MHD_Connection *conn, rm_job *j)
{
    pthread_mutex_lock(&sb->mu);
    int rc = store_begin(sb->st, j->err, sizeof j->err);
    if (rc == 0)
        rc = rm_dispatch(j);
    if (rc == 0 && j->status >= 200 && j->status < 300)
        rc = store_commit(sb->st, j->err, sizeof j->err);
    if (store_in_transaction(sb->st))
        store_rollback(sb->st);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0 || j->body == NULL) {
        json_object_put(j->body);
        return answer_internal(conn, j->r, j->err[0] ? j->err : "rich menu call failed");
    }
    return answer_obj(conn, j->r, j->status, j->body);
}

static enum MHD_Result rm_content_get(sandbox *sb, struct MHD_Connection *conn, req *r,
                                      const cfg_shop *shop, const rm_call *c)
{
    char type[32], err[256];
    void *data = NULL;
    size_t n = 0;
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_rm_image_get(sb->st, shop->id, c->menu, type, sizeof type, &data, &n, err,
                                    sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc == KZ_ENOTFOUND)
        return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, TXT_NOT_FOUND);
    if (rc != 0)
        return answer_internal(conn, r, err);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "x-line-request-id", r->request_id);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* An upload's checks before the store: type, size, magic, pixel size. 1 to
 * go on. */
static int rm_check_upload(struct MHD_Connection *conn, req *r, char type[16], enum MHD_Result *ret)
{
    const char *ctype = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!image_type_of(ctype, type)) {
        *ret = answer_msg(conn, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                          "The content type, %.64s, is not supported", ctype ? ctype : "");
        return 0;
    }
    /* LINE publishes the 1 MB limit, not its error text: the sandbox's own */
    if (r->len > RM_IMAGE_MAX) {
        *ret = answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "The image is over 1 MB");
        return 0;
    }
    if (!image_magic_ok(type, r->body, r->len)) {
        *ret = answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "The image is not a valid %s file (sandbox text)", type);
        return 0;
    }
    /* LINE's published rules for the picture; the texts are the sandbox's */
    uint32_t w = 0, h = 0;
    if (!image_size(type, (const unsigned char *)r->body, r->len, &w, &h)) {
        *ret = answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "The image's size cannot be read from the %s file (sandbox text)", type);
        return 0;
    }
    if (w < 800 || w > 2500 || h < 250 || (uint64_t)w * 100 < (uint64_t)h * 145) {
        *ret = answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "The image is %ux%u px; a rich menu image is 800 to 2500 px wide, at "
                          "least 250 px high and at least 1.45 times as wide as high (sandbox "
                          "text)",
                          w, h);
        return 0;
    }
    return 1;
}

/* Parses and checks the JSON body of a call that takes one: 1 to go on. */
static int rm_check_json(struct MHD_Connection *conn, req *r, const rm_call *c, json_object **doc,
                         enum MHD_Result *ret)
{
    const char *ctype = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
        *ret = answer_msg(conn, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                          "The content type, %.64s, is not supported", ctype ? ctype : "");
        return 0;
    }
    message_error me;
    const char *body = r->body != NULL ? r->body : "";
    int rc = c->op == RM_CREATE || c->op == RM_VALIDATE
                 ? message_validate_rich_menu(body, r->len, &me)
                 : message_parse_body(body, r->len, doc, &me);
    if (rc == 0 && *doc == NULL)
        *doc = json_tokener_parse(body);
    if (rc == 0 && *doc != NULL && json_object_is_type(*doc, json_type_object))
        return 1;
    json_object_put(*doc);
    *doc = NULL;
    if (rc == KZ_ENOMEM) {
        *ret = answer_internal(conn, r, "out of memory");
    } else if (rc == 0) {
        *ret = answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "The request body must be a JSON object");
    } else {
        char text[8192];
        if (message_error_json(&me, text, sizeof text) >= sizeof text)
            snprintf(text, sizeof text, "{\"message\":\"%s\"}", me.message);
        *ret = answer(conn, r, MHD_HTTP_BAD_REQUEST, text, NULL);
    }
    return 0;
}

static enum MHD_Result serve_richmenu(sandbox *sb, struct MHD_Connection *conn, req *r,
                                      const cfg_shop *shop, const rm_call *c)
{
    if (c->op == RM_CONTENT_GET)
        return rm_content_get(sb, conn, r, shop, c);
    enum MHD_Result ret = MHD_YES;
    rm_job j = {.sb = sb, .shop = shop, .call = c, .r = r};
    if (c->op == RM_CONTENT_PUT && !rm_check_upload(conn, r, j.image_type, &ret))
        return ret;
    if (rm_takes_json(c->op) && !rm_check_json(conn, r, c, &j.doc, &ret))
        return ret;
    ret = rm_run(sb, conn, &j);
    json_object_put(j.doc);
    return ret;
}

/* Route of a /v2 request; EP_COUNT when none. */
static enum ep v2_route(const char *url, const char *method, enum send_kind *kind, int *validate,
                        const char **arg)
{
    static const char msg[] = "/v2/bot/message/";
    int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    *validate = 0;
    *arg = NULL;
    if (strncmp(url, msg, sizeof msg - 1) == 0) {
        const char *rest = url + sizeof msg - 1;
        if (strncmp(rest, "validate/", 9) == 0) {
            rest += 9;
            *validate = 1;
        }
        for (int k = 0; k < 5; k++)
            if (strcmp(rest, send_names[k]) == 0) {
                *kind = (enum send_kind)k;
                if (!post)
                    return EP_COUNT;
                return *validate ? EP_VALIDATE : (enum ep)(EP_REPLY + k);
            }
        if (*validate)
            return EP_COUNT;
        if (get && strcmp(rest, "progress/narrowcast") == 0)
            return EP_PROGRESS;
        if (get && strcmp(rest, "quota") == 0)
            return EP_QUOTA;
        if (get && strcmp(rest, "quota/consumption") == 0) {
            *arg = "consumption";
            return EP_QUOTA;
        }
        return EP_COUNT;
    }
    if (get && strncmp(url, "/v2/bot/profile/", 16) == 0 && url[16] != '\0' &&
        strchr(url + 16, '/') == NULL) {
        *arg = url + 16;
        return EP_PROFILE;
    }
    if (get && strcmp(url, "/v2/bot/info") == 0)
        return EP_INFO;
    static const char link[] = "/v2/bot/user/";
    const char *tail = strstr(url, "/linkToken");
    if (post && strncmp(url, link, sizeof link - 1) == 0 && tail != NULL &&
        strcmp(tail, "/linkToken") == 0) {
        *arg = url + sizeof link - 1; /* "<userId>/linkToken" */
        return EP_LINK_TOKEN;
    }
    return EP_COUNT;
}

static enum MHD_Result serve_v2(sandbox *sb, struct MHD_Connection *conn, req *r, const char *url,
                                const char *method)
{
    pthread_mutex_lock(&sb->mu);
    sandbox_faults f = sb->faults;
    pthread_mutex_unlock(&sb->mu);
    if (f.latency_ms > 0)
        nanosleep(&(struct timespec){f.latency_ms / 1000, (long)(f.latency_ms % 1000) * 1000000L},
                  NULL);
    if (f.drop_rate > 0 && random_unit() < f.drop_rate)
        return MHD_NO; /* closes the connection, nothing answered */
    if (f.error_rate > 0 && random_unit() < f.error_rate) {
        unsigned code = f.status > 0 ? (unsigned)f.status : 500u;
        return answer_msg(conn, r, code,
                          code >= 500 ? "Internal server error" : "Sandbox fault injected");
    }
    enum send_kind kind = S_PUSH;
    int validate;
    const char *arg;
    enum ep ep = v2_route(url, method, &kind, &validate, &arg);
    rm_call rm;
    if (ep == EP_COUNT)
        ep = rm_route(url, method, &rm);
    if (ep == EP_COUNT)
        return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, TXT_NOT_FOUND);
    enum MHD_Result ret = MHD_YES;
    const cfg_shop *shop = authenticate(sb, conn, r, &ret);
    if (shop == NULL)
        return ret;
    if (!rate_ok(sb, shop, ep, conn, r, &ret))
        return ret;
    if (r->too_large)
        return answer_msg(conn, r, MHD_HTTP_CONTENT_TOO_LARGE, "The request body is over 2 MB");
    switch (ep) {
    case EP_PROGRESS:
        return do_progress(sb, conn, r, shop);
    case EP_PROFILE:
        return do_profile(sb, conn, r, shop, arg);
    case EP_QUOTA:
        return do_quota(sb, conn, r, shop, arg != NULL);
    case EP_INFO:
        return do_info(conn, r, shop);
    case EP_LINK_TOKEN: {
        char user[80];
        snprintf(user, sizeof user, "%.*s", (int)(strchr(arg, '/') - arg), arg);
        return do_link_token(conn, r, user);
    }
    case EP_RICHMENU:
    case EP_RICHMENU_CREATE:
    case EP_RICHMENU_DELETE:
    case EP_RICHMENU_ALIAS_DELETE:
        return serve_richmenu(sb, conn, r, shop, &rm);
    default:
        break;
    }
    const char *ctype = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0)
        return answer_msg(conn, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                          "The content type, %.64s, is not supported", ctype ? ctype : "");
    return do_send(sb, conn, r, shop, kind, validate);
}

/* ---- playing users ---------------------------------------------------------- */

int sandbox_action_parse(const char *name)
{
    static const char *const names[] = {"follow", "unfollow", "say", "postback"};
    for (int i = 0; i < 4; i++)
        if (name != NULL && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int sandbox_user_id_valid(const char *s)
{
    return user_id_ok(s);
}

static size_t on_curl_body(char *p, size_t size, size_t n, void *arg)
{
    char *out = arg; /* 256 bytes */
    size_t have = strlen(out), k = size * n;
    size_t room = 255 - have;
    memcpy(out + have, p, k < room ? k : room);
    out[have + (k < room ? k : room)] = '\0';
    return k;
}

/* POSTs a signed webhook body to the daemon. */
static int post_webhook(sandbox *sb, const cfg_shop *shop, const char *body, char *err,
                        size_t errlen)
{
    char sig[45], url[512], hdr[80], reply[256] = "";
    webhook_sign(shop->line_channel_secret, body, strlen(body), sig);
    snprintf(url, sizeof url, "%s/webhook/%s", sb->webhook_base, shop->id);
    snprintf(hdr, sizeof hdr, "x-line-signature: %s", sig);
    CURL *h = curl_easy_init();
    if (h == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    hs = curl_slist_append(hs, hdr);
    hs = curl_slist_append(hs, "User-Agent: LineBotWebhook/2.0");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_TIMEOUT, PLAY_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_curl_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK) {
        errbuf_set(err, errlen, "webhook to %s failed: %s", url, curl_easy_strerror(cc));
        return KZ_EFAIL;
    }
    if (code != 200) {
        errbuf_set(err, errlen, "webhook to %s answered %ld: %s", url, code, reply);
        return KZ_EFAIL;
    }
    return 0;
}

static int play_prepare(sandbox *sb, const cfg_shop *shop, const char *user,
                        enum sandbox_action action, const char *arg, json_object *params,
                        char token[33], json_object **event, char *err, size_t errlen)
{
    int64_t now = clock_now_ms();
    store_sbx_user u;
    int rc = store_sbx_user_get(sb->st, shop->id, user, &u, err, errlen);
    int known = rc == 0;
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return rc;
    if (!known) {
        memset(&u, 0, sizeof u);
        snprintf(u.user, sizeof u.user, "%s", user);
        made_up_name(user, u.display_name, sizeof u.display_name);
        u.since_ms = now;
    }
    int was_blocked = known && u.blocked;
    if (action == SANDBOX_FOLLOW) {
        u.following = 1;
        u.blocked = 0;
        u.since_ms = now;
    } else if (action == SANDBOX_UNFOLLOW) {
        u.following = 0;
        u.blocked = 1;
        u.since_ms = now;
    }
    rc = store_sbx_user_put(sb->st, shop->id, &u, err, errlen);
    static const char *const types[] = {"follow", "unfollow", "message", "postback"};
    json_object *ev = json_object_new_object();
    char id[27];
    new_ulid(now, id);
    json_object_object_add(ev, "type", json_object_new_string(types[action]));
    json_object_object_add(ev, "mode", json_object_new_string("active"));
    json_object_object_add(ev, "timestamp", json_object_new_int64(now));
    json_object *src = json_object_new_object();
    json_object_object_add(src, "type", json_object_new_string("user"));
    json_object_object_add(src, "userId", json_object_new_string(user));
    json_object_object_add(ev, "source", src);
    json_object_object_add(ev, "webhookEventId", json_object_new_string(id));
    json_object *dc = json_object_new_object();
    json_object_object_add(dc, "isRedelivery", json_object_new_boolean(0));
    json_object_object_add(ev, "deliveryContext", dc);
    if (action != SANDBOX_UNFOLLOW) {
        new_token(token);
        json_object_object_add(ev, "replyToken", json_object_new_string(token));
        if (rc == 0)
            rc = store_sbx_token_add(sb->st, shop->id, token, user, now, err, errlen);
    } else {
        token[0] = '\0';
    }
    if (action == SANDBOX_FOLLOW) {
        json_object *fo = json_object_new_object();
        json_object_object_add(fo, "isUnblocked", json_object_new_boolean(was_blocked));
        json_object_object_add(ev, "follow", fo);
    } else if (action == SANDBOX_SAY) {
        json_object *m = json_object_new_object();
        char mid[24], quote[33];
        snprintf(mid, sizeof mid, "%lld", (long long)(now * 1000 % 1000000000000000000LL));
        new_token(quote);
        json_object_object_add(m, "id", json_object_new_string(mid));
        json_object_object_add(m, "type", json_object_new_string("text"));
        json_object_object_add(m, "quoteToken", json_object_new_string(quote));
        json_object_object_add(m, "text", json_object_new_string(arg));
        json_object_object_add(ev, "message", m);
    } else if (action == SANDBOX_POSTBACK) {
        json_object *pb = json_object_new_object();
        json_object_object_add(pb, "data", json_object_new_string(arg));
        if (params != NULL)
            json_object_object_add(pb, "params", json_object_get(params));
        json_object_object_add(ev, "postback", pb);
    }
    if (rc != 0) {
        json_object_put(ev);
        return rc;
    }
    *event = ev;
    return 0;
}

/* params: the postback's params (a richmenuswitch tap), or NULL. */
static int play(sandbox *sb, const char *shop_id, const char *user, int action, const char *arg,
                json_object *params, char token[33], char *err, size_t errlen)
{
    const cfg_shop *shop = shop_by_id(sb->c, shop_id);
    if (shop == NULL || shop->line_channel_secret == NULL) {
        errbuf_set(err, errlen, "unknown shop '%s' (or it has no line group)", shop_id);
        return KZ_EINVAL;
    }
    if (!user_id_ok(user)) {
        errbuf_set(err, errlen, "invalid user id '%s': expected U and 32 hex digits", user);
        return KZ_EINVAL;
    }
    if (action < SANDBOX_FOLLOW || action > SANDBOX_POSTBACK) {
        errbuf_set(err, errlen, "unknown action");
        return KZ_EINVAL;
    }
    if ((action == SANDBOX_SAY || (action == SANDBOX_POSTBACK && params == NULL)) &&
        (arg == NULL || *arg == '\0')) {
        errbuf_set(err, errlen, "%s needs %s", action == SANDBOX_SAY ? "say" : "postback",
                   action == SANDBOX_SAY ? "a text" : "data");
        return KZ_EINVAL;
    }
    json_object *ev = NULL;
    pthread_mutex_lock(&sb->mu);
    int rc = store_begin(sb->st, err, errlen);
    if (rc == 0)
        rc = play_prepare(sb, shop, user, (enum sandbox_action)action, arg, params, token, &ev, err,
                          errlen);
    if (rc == 0)
        rc = store_commit(sb->st, err, errlen);
    if (store_in_transaction(sb->st))
        store_rollback(sb->st);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0)
        return rc;
    char dest[34];
    bot_user_id(shop->id, dest);
    json_object *body = json_object_new_object();
    json_object_object_add(body, "destination", json_object_new_string(dest));
    json_object *events = json_object_new_array();
    json_object_array_add(events, ev);
    json_object_object_add(body, "events", events);
    rc = post_webhook(sb, shop, json_object_to_json_string_ext(body, JSON_FLAGS), err, errlen);
    json_object_put(body);
    return rc;
}

typedef struct grow {
    char *p;
    size_t len;
} grow;

static size_t on_grow(char *p, size_t size, size_t n, void *arg)
{
    grow *g = arg;
    size_t k = size * n;
    char *q = realloc(g->p, g->len + k + 1);
    if (q == NULL)
        return 0;
    memcpy(q + g->len, p, k);
    g->p = q;
    g->len += k;
    q[g->len] = '\0';
    return k;
}

int sandbox_http(const char *method, const char *url, const char *body, long *status, char **resp,
                 char *err, size_t errlen)
{
    int rc = sandbox_http_auth(method, url, NULL, body, 30, status, resp, err, errlen);
    return rc == KZ_ESTATE ? KZ_EFAIL : rc;
}

int sandbox_http_auth(const char *method, const char *url, const char *bearer, const char *body,
                      long timeout_s, long *status, char **resp, char *err, size_t errlen)
{
    *status = 0;
    if (resp != NULL)
        *resp = NULL;
    CURL *h = curl_easy_init();
    if (h == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    grow g = {0};
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    if (bearer != NULL) {
        size_t n = strlen(bearer) + 32;
        char *auth = malloc(n);
        if (auth != NULL) {
            snprintf(auth, n, "Authorization: Bearer %s", bearer);
            hs = curl_slist_append(hs, auth);
            free(auth);
        }
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_grow);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &g);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK) {
        free(g.p);
        errbuf_set(err, errlen, "%s %s: %s", method, url, curl_easy_strerror(cc));
        return cc == CURLE_COULDNT_CONNECT ? KZ_ESTATE : KZ_EFAIL;
    }
    if (resp != NULL)
        *resp = g.p != NULL ? g.p : strdup("");
    else
        free(g.p);
    return 0;
}

int sandbox_play(sandbox *sb, const char *shop, const char *user, enum sandbox_action action,
                 const char *text_or_data, char *err, size_t errlen)
{
    char token[33];
    return play(sb, shop, user, (int)action, text_or_data, NULL, token, err, errlen);
}

int sandbox_issue_reply_token(sandbox *sb, const char *shop_id, const char *user, char token[33],
                              char *err, size_t errlen)
{
    const cfg_shop *shop = shop_by_id(sb->c, shop_id);
    if (shop == NULL) {
        errbuf_set(err, errlen, "unknown shop '%s'", shop_id);
        return KZ_EINVAL;
    }
    new_token(token);
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_token_add(sb->st, shop->id, token, user, clock_now_ms(), err, errlen);
    pthread_mutex_unlock(&sb->mu);
    return rc;
}

/* ---- rich menus of played users ------------------------------------------ */

/* The menu user sees: linked to them, else the shop's default (LINE's
 * display priority). *body malloc'd. Under sb->mu. */
static int rm_current(sandbox *sb, const char *shop, const char *user, char id[80],
                      const char **source, char **body, char *err, size_t errlen)
{
    *source = "user";
    int rc = store_sbx_rm_link_get(sb->st, shop, user, id, 80, err, errlen);
    if (rc == KZ_ENOTFOUND) {
        *source = "default";
        rc = store_sbx_rm_link_get(sb->st, shop, "", id, 80, err, errlen);
    }
    if (rc == 0)
        rc = store_sbx_rm_get(sb->st, shop, id, body, NULL, err, errlen);
    return rc;
}

static enum MHD_Result do_user_richmenu(sandbox *sb, struct MHD_Connection *conn, req *r,
                                        const cfg_shop *shop, const char *user)
{
    char id[80], err[256];
    const char *source = NULL;
    char *body = NULL;
    pthread_mutex_lock(&sb->mu);
    int rc = rm_current(sb, shop->id, user, id, &source, &body, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc == KZ_ENOTFOUND)
        return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, "no rich menu for user %s", user);
    if (rc != 0)
        return answer_internal(conn, r, err);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "shop", json_object_new_string(shop->id));
    json_object_object_add(o, "userId", json_object_new_string(user));
    json_object_object_add(o, "source", json_object_new_string(source));
    json_object_object_add(o, "richMenuId", json_object_new_string(id));
    json_object *menu = json_tokener_parse(body);
    free(body);
    json_object_object_add(o, "richMenu", menu != NULL ? menu : json_object_new_object());
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

/* What LINE does on a richmenuswitch tap: the alias's menu becomes the
 * user's, and the postback carries params.newRichMenuAliasId and status
 * (webhook.yml PostbackContent; line-api-notes §1.6). */
static int rm_switch(sandbox *sb, const char *shop, const char *user, const char *alias,
                     const char **status, char *err, size_t errlen)
{
    char id[80];
    pthread_mutex_lock(&sb->mu);
    int rc = store_begin(sb->st, err, errlen);
    if (rc == 0)
        rc = store_sbx_rm_alias_get(sb->st, shop, alias, id, sizeof id, err, errlen);
    *status = rc == KZ_ENOTFOUND ? "RICHMENU_ALIAS_ID_NOTFOUND" : "FAILED";
    if (rc == 0) {
        rc = store_sbx_rm_get(sb->st, shop, id, NULL, NULL, err, errlen);
        *status = rc == KZ_ENOTFOUND ? "RICHMENU_NOTFOUND" : "FAILED";
    }
    if (rc == 0)
        rc = store_sbx_rm_link_put(sb->st, shop, user, id, err, errlen);
    if (rc == 0)
        rc = store_commit(sb->st, err, errlen);
    if (store_in_transaction(sb->st))
        store_rollback(sb->st);
    pthread_mutex_unlock(&sb->mu);
    if (rc == 0)
        *status = "SUCCESS";
    /* a missing alias or menu is the tap's outcome, told in the postback */
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

int sandbox_richmenu_switch(sandbox *sb, const char *shop_id, const char *user, const char *alias,
                            const char *data, char *err, size_t errlen)
{
    const cfg_shop *shop = shop_by_id(sb->c, shop_id);
    if (shop == NULL || !user_id_ok(user) || alias == NULL || *alias == '\0') {
        errbuf_set(err, errlen, "richmenuswitch needs a known shop, a user id and an alias");
        return KZ_EINVAL;
    }
    const char *status = "FAILED";
    int rc = rm_switch(sb, shop->id, user, alias, &status, err, errlen);
    if (rc != 0)
        return rc;
    json_object *params = json_object_new_object();
    json_object_object_add(params, "newRichMenuAliasId", json_object_new_string(alias));
    json_object_object_add(params, "status", json_object_new_string(status));
    char token[33];
    rc = play(sb, shop_id, user, SANDBOX_POSTBACK, data != NULL ? data : "", params, token, err,
              errlen);
    json_object_put(params);
    return rc;
}

static enum MHD_Result do_switch_http(sandbox *sb, struct MHD_Connection *conn, req *r,
                                      const char *shop, const char *user)
{
    json_object *o = r->len > 0 ? json_tokener_parse(r->body) : NULL;
    json_object *a = NULL, *d = NULL;
    if (o == NULL || !json_object_object_get_ex(o, "richMenuAliasId", &a) ||
        !json_object_is_type(a, json_type_string)) {
        json_object_put(o);
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "expected {\"richMenuAliasId\": …, \"data\": …}");
    }
    json_object_object_get_ex(o, "data", &d);
    char err[512] = "";
    int rc = sandbox_richmenu_switch(sb, shop, user, json_object_get_string(a),
                                     d != NULL ? json_object_get_string(d) : "", err, sizeof err);
    json_object_put(o);
    if (rc == KZ_EINVAL)
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "%s", err);
    if (rc != 0)
        return answer_msg(conn, r, MHD_HTTP_BAD_GATEWAY, "%s", err);
    return answer(conn, r, MHD_HTTP_OK, "{}", NULL);
}

/* ---- /sandbox routes ------------------------------------------------------ */

static int faults_check(const sandbox_faults *f, char *err, size_t errlen)
{
    if (!(f->error_rate >= 0 && f->error_rate <= 1) || !(f->drop_rate >= 0 && f->drop_rate <= 1)) {
        errbuf_set(err, errlen, "error_rate and drop_rate must be between 0 and 1");
        return KZ_EINVAL;
    }
    if (f->status != 0 && (f->status < 400 || f->status > 599)) {
        errbuf_set(err, errlen, "status must be between 400 and 599, got %d", f->status);
        return KZ_EINVAL;
    }
    if (f->latency_ms < 0 || f->latency_ms > 600000) {
        errbuf_set(err, errlen, "latency_ms must be between 0 and 600000, got %d", f->latency_ms);
        return KZ_EINVAL;
    }
    return 0;
}

int sandbox_set_faults(sandbox *sb, const sandbox_faults *f, char *err, size_t errlen)
{
    int rc = faults_check(f, err, errlen);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&sb->mu);
    sb->faults = *f;
    pthread_mutex_unlock(&sb->mu);
    return 0;
}

static json_object *faults_json(const sandbox_faults *f)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error_rate", json_object_new_double(f->error_rate));
    json_object_object_add(o, "status", json_object_new_int(f->status ? f->status : 500));
    json_object_object_add(o, "latency_ms", json_object_new_int(f->latency_ms));
    json_object_object_add(o, "drop_rate", json_object_new_double(f->drop_rate));
    return o;
}

static enum MHD_Result do_faults(sandbox *sb, struct MHD_Connection *conn, req *r, int post)
{
    pthread_mutex_lock(&sb->mu);
    sandbox_faults f = sb->faults;
    pthread_mutex_unlock(&sb->mu);
    if (post) {
        json_object *o = r->body ? json_tokener_parse(r->body) : NULL;
        if (o == NULL || !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "expected a JSON object");
        }
        json_object *v;
        if (json_object_object_get_ex(o, "error_rate", &v))
            f.error_rate = json_object_get_double(v);
        if (json_object_object_get_ex(o, "status", &v))
            f.status = json_object_get_int(v);
        if (json_object_object_get_ex(o, "latency_ms", &v))
            f.latency_ms = json_object_get_int(v);
        if (json_object_object_get_ex(o, "drop_rate", &v))
            f.drop_rate = json_object_get_double(v);
        json_object_put(o);
        char err[256];
        if (sandbox_set_faults(sb, &f, err, sizeof err) != 0)
            return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "%s", err);
    }
    return answer_obj(conn, r, MHD_HTTP_OK, faults_json(&f));
}

typedef struct inbox_walk {
    json_object *arr;
} inbox_walk;

static int add_inbox_row(void *arg, const store_sbx_msg *m)
{
    inbox_walk *w = arg;
    json_object *o = json_object_new_object();
    char when[40];
    iso_time(m->time_ms, when, sizeof when);
    json_object_object_add(o, "time", json_object_new_string(when));
    json_object_object_add(o, "endpoint", json_object_new_string(m->endpoint));
    json_object_object_add(o, "requestId", json_object_new_string(m->request_id));
    json_object *msg = json_tokener_parse(m->message);
    json_object_object_add(o, "message", msg ? msg : json_object_new_string(m->message));
    json_object_array_add(w->arr, o);
    return 0;
}

static enum MHD_Result do_inbox(sandbox *sb, struct MHD_Connection *conn, req *r,
                                const cfg_shop *shop, const char *user)
{
    store_sbx_user u;
    char err[256];
    inbox_walk w = {json_object_new_array()};
    pthread_mutex_lock(&sb->mu);
    int rc = store_sbx_user_get(sb->st, shop->id, user, &u, err, sizeof err);
    int known = rc == 0;
    if (rc == KZ_ENOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = store_sbx_inbox(sb->st, shop->id, user, add_inbox_row, &w, err, sizeof err);
    pthread_mutex_unlock(&sb->mu);
    if (rc != 0) {
        json_object_put(w.arr);
        return answer_internal(conn, r, err);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "shop", json_object_new_string(shop->id));
    json_object_object_add(o, "userId", json_object_new_string(user));
    json_object_object_add(o, "known", json_object_new_boolean(known));
    if (known) {
        json_object_object_add(o, "displayName", json_object_new_string(u.display_name));
        json_object_object_add(o, "following", json_object_new_boolean(u.following));
        json_object_object_add(o, "blocked", json_object_new_boolean(u.blocked));
    }
    json_object_object_add(o, "messages", w.arr);
    return answer_obj(conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result do_play_http(sandbox *sb, struct MHD_Connection *conn, req *r,
                                    const char *shop, const char *user, const char *action)
{
    int a = sandbox_action_parse(action);
    const char *arg = NULL;
    json_object *o = r->len > 0 ? json_tokener_parse(r->body) : NULL;
    if (r->len > 0 && (o == NULL || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST,
                          "expected a JSON object: {\"text\": …} or {\"data\": …}");
    }
    json_object *v;
    if (o != NULL && json_object_object_get_ex(o, a == SANDBOX_POSTBACK ? "data" : "text", &v))
        arg = json_object_get_string(v);
    char token[33] = "", err[512] = "";
    int rc = play(sb, shop, user, a, arg, NULL, token, err, sizeof err);
    json_object_put(o);
    if (rc == KZ_EINVAL)
        return answer_msg(conn, r, MHD_HTTP_BAD_REQUEST, "%s", err);
    if (rc != 0)
        return answer_msg(conn, r, MHD_HTTP_BAD_GATEWAY, "%s", err);
    json_object *res = json_object_new_object();
    if (token[0] != '\0')
        json_object_object_add(res, "replyToken", json_object_new_string(token));
    return answer_obj(conn, r, MHD_HTTP_OK, res);
}

/* /sandbox/shops/<shop>/users/<user>/<what> */
static enum MHD_Result serve_sandbox(sandbox *sb, struct MHD_Connection *conn, req *r,
                                     const char *url, const char *method)
{
    int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    if (strcmp(url, "/sandbox/faults") == 0 && (post || get))
        return do_faults(sb, conn, r, post);
    char shop[72], user[72], what[24];
    int used = 0;
    if (sscanf(url, "/sandbox/shops/%71[^/]/users/%71[^/]/%23[^/]%n", shop, user, what, &used) ==
            3 &&
        url[used] == '\0') {
        if (get && strcmp(what, "inbox") == 0) {
            const cfg_shop *s = shop_by_id(sb->c, shop);
            if (s == NULL)
                return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, "unknown shop '%s'", shop);
            return do_inbox(sb, conn, r, s, user);
        }
        if (post && sandbox_action_parse(what) >= 0)
            return do_play_http(sb, conn, r, shop, user, what);
        if (get && strcmp(what, "richmenu") == 0) {
            const cfg_shop *s = shop_by_id(sb->c, shop);
            if (s == NULL)
                return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, "unknown shop '%s'", shop);
            return do_user_richmenu(sb, conn, r, s, user);
        }
        if (post && strcmp(what, "richmenuswitch") == 0)
            return do_switch_http(sb, conn, r, shop, user);
    }
    return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, TXT_NOT_FOUND);
}

/* ---- libmicrohttpd -------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    sandbox *sb = cls;
    req *r = *con_cls;
    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        new_uuid(r->request_id);
        r->arrived_ms = real_now_ms();
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large || n > MAX_BODY - r->len) {
            r->too_large = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *p = realloc(r->body, cap);
            if (p == NULL)
                return MHD_NO;
            r->body = p;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (strncmp(url, "/v2/", 4) == 0)
        return serve_v2(sb, conn, r, url, method);
    if (strncmp(url, "/sandbox/", 9) == 0)
        return serve_sandbox(sb, conn, r, url, method);
    return answer_msg(conn, r, MHD_HTTP_NOT_FOUND, TXT_NOT_FOUND);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req *r = *con_cls;
    if (r == NULL)
        return;
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    sandbox *sb = cls;
    char msg[sizeof sb->start_err];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (atomic_load(&sb->starting))
        memcpy(sb->start_err, msg, n + 1);
    else
        log_msg(KZ_LOG_DEBUG, "sandbox http: %s", msg);
}

static int endpoint_index(const char *name)
{
    for (int i = 0; sandbox_endpoint_names[i] != NULL; i++)
        if (strcmp(sandbox_endpoint_names[i], name) == 0)
            return i;
    return -1;
}

sandbox_options sandbox_options_from_cfg(const cfg *c)
{
    sandbox_options o = {.listen = c->sandbox.listen,
                         .store_url = c->sandbox.store_url,
                         .c = c,
                         .webhook_base = NULL,
                         .monthly_limit = c->sandbox.monthly_limit,
                         .faults = {.error_rate = c->sandbox.error_rate,
                                    .status = c->sandbox.error_status,
                                    .latency_ms = c->sandbox.latency_ms,
                                    .drop_rate = c->sandbox.drop_rate},
                         .rates = c->sandbox.rates,
                         .nrates = c->sandbox.nrates};
    return o;
}

int sandbox_start(const sandbox_options *o, sandbox **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->c == NULL || o->store_url == NULL) {
        errbuf_set(err, errlen, "sandbox: missing config or store");
        return KZ_EINVAL;
    }
    if (o->c->store_url != NULL && strcmp(o->store_url, o->c->store_url) == 0) {
        errbuf_set(err, errlen,
                   "sandbox store '%s' is kizuna's own store; give the sandbox its own",
                   o->store_url);
        return KZ_EINVAL;
    }
    struct sockaddr_in sa;
    int rc = netaddr_parse("sandbox listen", o->listen, &sa, err, errlen);
    if (rc == 0)
        rc = faults_check(&o->faults, err, errlen);
    if (rc != 0)
        return rc;
    sandbox *sb = calloc(1, sizeof *sb);
    if (sb == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    sb->c = o->c;
    sb->faults = o->faults;
    sb->monthly_limit = o->monthly_limit > 0 ? o->monthly_limit : 0;
    sb->reply_ttl_ms = o->reply_token_ttl_ms > 0 ? o->reply_token_ttl_ms : DEFAULT_REPLY_TTL_MS;
    for (int i = 0; i < EP_COUNT; i++)
        sb->limit[i] = ep_default[i].limit;
    for (size_t i = 0; i < o->nrates; i++) {
        int k = o->rates[i].endpoint ? endpoint_index(o->rates[i].endpoint) : -1;
        if (k < 0 || o->rates[i].limit < 1) {
            errbuf_set(err, errlen, "sandbox rate limit '%s': %s",
                       o->rates[i].endpoint ? o->rates[i].endpoint : "",
                       k < 0 ? "unknown endpoint" : "must be at least 1");
            free(sb);
            return KZ_EINVAL;
        }
        sb->limit[k] = o->rates[i].limit;
    }
    if (o->webhook_base != NULL)
        sb->webhook_base = strdup(o->webhook_base);
    else if (asprintf(&sb->webhook_base, "http://%s", o->c->listen) < 0)
        sb->webhook_base = NULL;
    if (sb->webhook_base == NULL) {
        free(sb);
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    size_t bl = strlen(sb->webhook_base);
    while (bl > 0 && sb->webhook_base[bl - 1] == '/')
        sb->webhook_base[--bl] = '\0';
    pthread_mutex_init(&sb->mu, NULL);
    rc = store_open(o->store_url, STORE_SYNC_NORMAL, &sb->st, err, errlen);
    if (rc != 0) {
        sandbox_stop(sb);
        return rc;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atomic_store(&sb->starting, 1);
    /* a thread per connection: a request is stamped as it arrives (rate
     * windows count arrivals, as LINE's do), not when a pool thread is done
     * with another connection's inbox writes */
    sb->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, sb, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, sb, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, sb, MHD_OPTION_END);
    if (sb->d == NULL) {
        errbuf_set(err, errlen, "sandbox cannot listen on %s%s%s", o->listen,
                   sb->start_err[0] ? ": " : "", sb->start_err);
        sandbox_stop(sb);
        return KZ_EFAIL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(sb->d, MHD_DAEMON_INFO_BIND_PORT);
    sb->port = info != NULL ? info->port : ntohs(sa.sin_port);
    atomic_store(&sb->starting, 0);
    *out = sb;
    return 0;
}

uint16_t sandbox_port(const sandbox *sb)
{
    return sb != NULL ? sb->port : 0;
}

void sandbox_stop(sandbox *sb)
{
    if (sb == NULL)
        return;
    if (sb->d != NULL)
        MHD_stop_daemon(sb->d);
    store_close(sb->st);
    pthread_mutex_destroy(&sb->mu);
    free(sb->webhook_base);
    free(sb);
}
