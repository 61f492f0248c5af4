/*
 * kizuna SDK — the host function table.
 *
 * Everything a plugin may ask of the host goes through one const table,
 * `kz_host`, handed to the plugin's entry function. The table begins with
 * abi_major, abi_minor and struct_size and only ever grows at its end, so a
 * plugin built against ABI 1.0 keeps running on a 1.x host. A slot added
 * after 1.0 is marked "Since: ABI 1.N" and must be guarded with
 * KZ_HOST_HAS(host, slot) before use; the inline kz_* wrappers below do that
 * for you and return KZ_ENOTSUP on an older host.
 *
 * The host exports no symbols to plugins: link your plugin with -Wl,-z,defs
 * and reach the host only through this table.
 *
 * ---------------------------------------------------------------------------
 * Threads (the one rule, stated once)
 * ---------------------------------------------------------------------------
 * - A plugin instance (one plugin enabled for one shop, created by shop_open)
 *   is called from one thread at a time, and receives its shop's events in the
 *   order they were stored. Different instances may run on different threads
 *   at the same time, so `plugin_state` from load() is shared and must be
 *   treated as read-only after load() or be locked by the plugin.
 * - Handlers do no network or disk I/O of their own. Every effect (key/value
 *   writes, published events, and in later ABI minors timers, friend changes
 *   and outbound messages) goes through the kz_ctx so that it commits in one
 *   transaction with the event's "handled" mark, or not at all.
 * - A kz_ctx is valid only during the handler call it was passed to. Using it
 *   afterwards, or from another thread, fails with KZ_ESTATE.
 * - Functions marked "Thread: any" (log, now_ms) may be called from any thread,
 *   including threads the plugin started itself. Every other function may be
 *   called only from inside a callback the host is running on that thread.
 *
 * Ownership: strings and buffers the host returns are owned by the host and
 * stay valid as long as the handle they came from (event: the handler call;
 * setting: until shop_close; shop: until shop_close) unless a function says
 * otherwise. Copy what you need to keep. Pointers a plugin passes in are only
 * read during the call.
 */
#ifndef KIZUNA_HOST_H
#define KIZUNA_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. A plugin records these in its descriptor
 * (KZ_PLUGIN_DEFINE does it); the host refuses a different major or a newer
 * minor than its own. */
#define KZ_ABI_MAJOR 1
#define KZ_ABI_MINOR 5

#if defined(__GNUC__) || defined(__clang__)
#define KZ_EXPORT __attribute__((visibility("default")))
#define KZ_HIDDEN __attribute__((visibility("hidden")))
#define KZ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define KZ_EXPORT
#define KZ_HIDDEN
#define KZ_PRINTF(fmt, args)
#endif

/* Error codes. Functions return 0 on success or one of these (negative). */
enum {
    KZ_OK = 0,
    KZ_EINVAL = -1,    /* bad argument (NULL, empty, malformed name or JSON) */
    KZ_ENOTFOUND = -2, /* no such key, setting, event or plugin */
    KZ_ECONFLICT = -3, /* compare-and-set saw another value */
    KZ_ENOMEM = -4,    /* out of memory */
    KZ_EIO = -5,       /* the store failed; the event will be retried */
    KZ_ENOTSUP = -6,   /* the host is older than the slot you called */
    KZ_ESTATE = -7,    /* called outside its valid context (stale ctx, wrong thread) */
    KZ_EFAIL = -8,     /* generic failure; a handler returning it is retried */
    KZ_ETOOBIG = -9,   /* value, key or payload over its limit */
    KZ_EEXIST = -10,   /* already exists */
    KZ_EFATAL = -11,   /* handler: retrying cannot help, park the event as dead now */
    KZ_ETYPE = -12     /* setting has another type than asked for */
};

/* Log levels for kz_log(). */
enum { KZ_LOG_DEBUG = 0, KZ_LOG_INFO = 1, KZ_LOG_WARN = 2, KZ_LOG_ERROR = 3 };

/* Setting types, used by the schema in the descriptor and by
 * kz_setting_type(). */
enum {
    KZ_SETTING_NONE = 0,
    KZ_SETTING_STRING = 1,
    KZ_SETTING_INT = 2,   /* 64-bit integer */
    KZ_SETTING_FLOAT = 3, /* double; an integer literal is accepted too */
    KZ_SETTING_BOOL = 4,
    KZ_SETTING_DURATION = 5, /* string such as "90s", "15m", "1d", "1h30m" */
    KZ_SETTING_SECRET = 6,   /* string; "env:NAME" and "file:PATH" resolved, never logged */
    KZ_SETTING_LIST = 7,     /* libconfig list ( … ) or array [ … ] */
    KZ_SETTING_GROUP = 8     /* libconfig group { … } */
};

/* Limits the host enforces (ABI 1.0). */
#define KZ_TOPIC_MAX 128     /* bytes in a topic, without the NUL */
#define KZ_KEY_MAX 512       /* bytes in a key/value key */
#define KZ_VALUE_MAX 1048576 /* bytes in a key/value value */
#define KZ_PAYLOAD_MAX 1048576

/* What a LINE send is (kz_line_send.kind). Since: ABI 1.1. */
enum {
    KZ_LINE_REPLY = 1,     /* POST /v2/bot/message/reply */
    KZ_LINE_PUSH = 2,      /* POST /v2/bot/message/push */
    KZ_LINE_MULTICAST = 3, /* POST /v2/bot/message/multicast, split into 500s */
    KZ_LINE_BROADCAST = 4, /* POST /v2/bot/message/broadcast */
    KZ_LINE_NARROWCAST = 5 /* POST /v2/bot/message/narrowcast */
};

/* One LINE send, filled by the plugin with designated initialisers (the rest
 * stays 0): `kz_line_send r = {.struct_size = sizeof r, .kind = KZ_LINE_PUSH,
 * .to = user, .messages = json};`. struct_size lets the host read an older plugin's
 * shorter struct: fields added later read as 0/NULL. The host copies what it
 * needs during the call. Since: ABI 1.1. */
typedef struct kz_line_send {
    uint32_t struct_size;       /* sizeof(kz_line_send) as the plugin was built */
    int kind;                   /* KZ_LINE_* */
    const char *reply_token;    /* REPLY: the event's replyToken */
    const char *to;             /* PUSH: a user, group or room id */
    const char *const *to_list; /* MULTICAST: user ids, any number (sent in 500s,
                                 * a repeated id once) */
    size_t nto;
    const char *messages; /* JSON array of 1..5 message objects (kizuna/message.h) */
    size_t messages_len;  /* 0: strlen(messages) */
    /* NARROWCAST: a JSON object with "recipient", "filter" and/or "limit" as
     * LINE defines them; the host adds the messages. NULL: every friend. */
    const char *narrowcast;
    int notification_disabled; /* 1: no push notification on the user's phone */
    /* REPLY: push the same messages to the event's user when the reply
     * token cannot be used in time (expired, already used). */
    int fallback_to_push;
    const char *tag; /* up to 100 bytes, echoed in message.sent / message.failed */
    /* ---- ABI 1.5: the shop's delivery policy (docs/delivery.md) ---- */
    /* 1: subject to the shop's delivery policy (quiet hours, per-friend
     * caps); PUSH and MULTICAST only (KZ_EINVAL on other kinds). Each
     * recipient goes now, is held (sent later by the host) or dropped;
     * *outbox_id is 0 when none goes now. */
    int promotional;
    /* Among promotional sends competing for a friend's cap: higher first;
     * default 0. */
    int priority;
    /* KZ_OVER_CAP_DEFER (0): wait until the cap allows; KZ_OVER_CAP_DROP:
     * drop. */
    int over_cap;
} kz_line_send;

/* kz_line_send.over_cap: what happens to a promotional send over a friend's
 * cap. Since: ABI 1.5. */
enum { KZ_OVER_CAP_DEFER = 0, KZ_OVER_CAP_DROP = 1 };

/* Any other Messaging API call: profile, rich menus and their aliases,
 * link tokens, quota and consumption, narrowcast progress, validate, coupons,
 * … The plugin fills it with designated initialisers (the rest stays 0):
 *   kz_line_call c = {.struct_size = sizeof c, .method = "GET",
 *                     .path = "/v2/bot/profile/U4af…", .user = "U4af…",
 *                     .tag = "profile"};
 * struct_size lets the host read an older plugin's shorter struct. The host
 * copies what it needs during the call. Since: ABI 1.2. */
typedef struct kz_line_call {
    uint32_t struct_size; /* sizeof(kz_line_call) as the plugin was built */
    const char *method;   /* "GET", "POST" or "DELETE" */
    /* Starts with "/v2/bot/" (or "/bot/"); path segments the plugin takes from
     * outside (user ids, rich menu ids) must already be checked or escaped. A
     * query string is allowed ("/v2/bot/message/progress/narrowcast?requestId=…"). */
    const char *path;
    const void *body; /* request body, or NULL for none */
    size_t body_len;  /* 0 with a body: strlen(body) */
    /* NULL: "application/json" when there is a body. Rich menu images are
     * "image/png" or "image/jpeg". */
    const char *content_type;
    int data_api; /* 1: send to api-data.line.me (rich menu image upload) */
    /* Bulk calls (rich menu bulk link/unlink): any number of user ids; the
     * host sends one request per 500, each with the body's JSON object plus
     * "userIds": [the 500]. */
    const char *const *users;
    size_t nusers;
    const char *user; /* the LINE user the call is about; the result event carries it */
    const char *tag;  /* up to 100 bytes, echoed in the result event */
} kz_line_call;

/* One HTTP request to a plugin's route (/shops/<shop>/<plugin>/…). Valid
 * only during the route callback. Since: ABI 1.2. */
typedef struct kz_http kz_http;

/* A plugin route. Runs on one of the HTTP server's threads, possibly on
 * several at once and at the same time as the instance's handlers: state
 * shared with handlers must be read-only or locked. It gets no kz_ctx: it
 * publishes events (http_publish) and handlers do the rest. It must answer with http_respond before
 * returning (otherwise the host answers 500). Since: ABI 1.2. */
typedef void (*kz_route_fn)(kz_http *req, void *arg);

/* A moment in a shop's time zone (kz_local_time). Since: ABI 1.3. */
typedef struct kz_local_time {
    int year, month, day;     /* month 1..12 */
    int hour, minute, second; /* 0..23, 0..59, 0..59 */
    int weekday;              /* 0 Sunday … 6 Saturday */
    int utc_offset_s;         /* e.g. 32400 in Asia/Tokyo */
} kz_local_time;

/* A compiled segment expression (docs/segments.md), made by segment_compile
 * in shop_open and freed by segment_free. Since: ABI 1.3. */
typedef struct kz_segment kz_segment;

/* Opaque handles; the host owns them all. */
typedef struct kz_event kz_event;     /* one event being handled */
typedef struct kz_ctx kz_ctx;         /* the transaction of one handler call */
typedef struct kz_shop kz_shop;       /* one plugin enabled for one shop */
typedef struct kz_setting kz_setting; /* a node of the plugin's config setting */

typedef struct kz_host kz_host;

struct kz_host {
    uint32_t abi_major;   /* KZ_ABI_MAJOR of the host */
    uint32_t abi_minor;   /* KZ_ABI_MINOR of the host */
    uint32_t struct_size; /* sizeof(kz_host) in the host */
    uint32_t reserved0;

    /* ---- ABI 1.0 ------------------------------------------------------- */

    /* Writes one log line (logfmt, stderr) tagged with the calling plugin
     * and shop when called from a callback. Secrets resolved from the config
     * are masked. Thread: any. Since: ABI 1.0. */
    void (*log)(int level, const char *msg);

    /* Milliseconds since the Unix epoch on the host's clock, which is the
     * virtual clock in tests and demos. Use it instead of time(). Thread:
     * any. Since: ABI 1.0. */
    int64_t (*now_ms)(void);

    /* Event accessors. Ownership: the host's; valid during the handler call.
     * Thread: handler. Since: ABI 1.0. */
    const char *(*event_topic)(const kz_event *ev);
    const char *(*event_shop)(const kz_event *ev);
    const char *(*event_user)(const kz_event *ev); /* NULL when no LINE user */
    const char *(*event_id)(const kz_event *ev);   /* stable, unique per shop */
    int64_t (*event_time_ms)(const kz_event *ev);
    /* JSON text, NUL-terminated; *len (if not NULL) receives its length. */
    const char *(*event_payload)(const kz_event *ev, size_t *len);
    /* 1 on the first delivery to this instance, 2 on the first retry, … */
    uint32_t (*event_attempt)(const kz_event *ev);

    /* The shop handle of the instance a ctx belongs to. Thread: handler.
     * Since: ABI 1.0. */
    kz_shop *(*ctx_shop)(kz_ctx *ctx);
    /* Shop identity. Ownership: the host's, valid until shop_close.
     * Thread: callback. Since: ABI 1.0. */
    const char *(*shop_id)(const kz_shop *shop);
    const char *(*shop_timezone)(const kz_shop *shop); /* IANA name, e.g. Asia/Tokyo */

    /* Publishes an event to the handler's own shop. It is stored in the
     * handler's transaction: it exists only if the handler succeeds. user may
     * be NULL; json must be a JSON value as RFC 8259 writes it (len bytes;
     * len 0 means "{}"; comments, trailing commas, NaN: KZ_EINVAL).
     * The new event's id is derived from the handled event's id, so a
     * re-delivered handler publishes the same ids. Thread: handler.
     * Since: ABI 1.0. */
    int (*publish)(kz_ctx *ctx, const char *topic, const char *user, const char *json, size_t len);

    /* Adds a topic pattern ("exact.topic", "prefix.*" or "*") to the
     * instance's subscriptions, on top of the descriptor's static list.
     * Call it from shop_open. Thread: shop_open. Since: ABI 1.0. */
    int (*subscribe)(kz_shop *shop, const char *pattern);

    /* Key/value store scoped to the instance (plugin × shop), read and
     * written in the handler's transaction: reads see the handler's own
     * writes; a failing handler's writes vanish. Thread: handler.
     * Since: ABI 1.0. */
    /* *val (owned by the host, valid until the handler returns, NUL-terminated
     * for convenience) and *len; KZ_ENOTFOUND if absent. Every kv call:
     * KZ_ESTATE for a stale ctx, KZ_EINVAL for a NULL or empty key,
     * KZ_ETOOBIG for a key over KZ_KEY_MAX or a value over KZ_VALUE_MAX. */
    int (*kv_get)(kz_ctx *ctx, const char *key, const void **val, size_t *len);
    int (*kv_put)(kz_ctx *ctx, const char *key, const void *val, size_t len);
    int (*kv_del)(kz_ctx *ctx, const char *key); /* KZ_ENOTFOUND if absent */
    /* Writes val only if the current value equals expect (expect == NULL:
     * only if the key is absent); KZ_ECONFLICT otherwise. */
    int (*kv_cas)(kz_ctx *ctx, const char *key, const void *expect, size_t expect_len,
                  const void *val, size_t len);
    /* Adds delta to a counter (absent counts as 0) and returns the new
     * value in *result (may be NULL). KZ_ETYPE if the key holds a
     * non-counter; KZ_EINVAL if the result would overflow int64 (the value
     * is left as it was). */
    int (*kv_incr)(kz_ctx *ctx, const char *key, int64_t delta, int64_t *result);

    /* Setting accessors over the plugin's config group. The host validated
     * the top-level keys against the descriptor's schema and filled in
     * defaults before shop_open. Ownership: the host's, valid until
     * shop_close. Thread: shop_open or handler. Since: ABI 1.0. */
    /* Child by key (group) or NULL. */
    const kz_setting *(*setting_child)(const kz_setting *s, const char *key);
    /* Element i of a list or group, or NULL. */
    const kz_setting *(*setting_elem)(const kz_setting *s, size_t i);
    size_t (*setting_count)(const kz_setting *s);     /* elements of a list/group; 0 else */
    int (*setting_type)(const kz_setting *s);         /* KZ_SETTING_* */
    const char *(*setting_name)(const kz_setting *s); /* key, or NULL in a list */
    int (*setting_line)(const kz_setting *s);         /* line in the config file; 0 = default */
    /* Value of this node; KZ_ETYPE if it has another type. Secrets come
     * resolved. Durations convert to milliseconds. */
    int (*setting_string)(const kz_setting *s, const char **out);
    int (*setting_int)(const kz_setting *s, int64_t *out);
    int (*setting_float)(const kz_setting *s, double *out);
    int (*setting_bool)(const kz_setting *s, int *out);
    int (*setting_duration_ms)(const kz_setting *s, int64_t *out);
    /* Formats "FILE:LINE: shop 'x': plugin 'y': <path>: msg" into err, the
     * way `kizuna check` reports errors, and returns KZ_EINVAL so shop_open
     * can `return kz_setting_error(...)`. Thread: shop_open. Since: ABI 1.0. */
    int (*setting_error)(const kz_setting *s, char *err, size_t errlen, const char *msg);

    /* ---- ABI 1.1 ------------------------------------------------------- */

    /* Queues a LINE Messaging API send in the handler's transaction: it is
     * stored (as one outbox row, or one per 500 recipients) only if the
     * handler succeeds, and sent after the commit, exactly once (push,
     * multicast, narrowcast and broadcast carry an X-Line-Retry-Key fixed
     * when queued). The messages are checked here against LINE's rules:
     * KZ_EINVAL with LINE's wording in the log when they would be refused.
     * The outcome comes back to the shop as an event: `message.sent`
     * ({"outbox":N,"kind":"push","tag":…,"to":…,"requestId":…}) or
     * `message.failed` (… "status":400,"message":…,"details":[…], LINE's
     * own text). An event LINE delivered in `mode: standby` never causes a
     * send: the call returns 0 with *outbox_id = 0. outbox_id may be NULL.
     * Thread: handler. Since: ABI 1.1. */
    int (*line_send)(kz_ctx *ctx, const kz_line_send *req, int64_t *outbox_id);

    /* ---- ABI 1.2 ------------------------------------------------------- */

    /* Queues any other Messaging API call in the handler's transaction, like
     * line_send: stored only if the handler succeeds, made after the commit.
     * Calls that are safe to repeat (every GET and DELETE, linking, link
     * tokens, validate, …) are retried on 429, 5xx and network errors until
     * the deadline; creating a rich menu (POST /v2/bot/richmenu) is not
     * repeated once LINE may have received it. The outcome comes back to the
     * shop as an event with the call's user: `api.done`
     * ({"outbox":N,"plugin":…,"method":…,"path":…,"tag":…,"status":200,
     * "requestId":…,"response":<LINE's JSON answer or null>}) or
     * `api.failed` (… "status","message","details": LINE's own text).
     * Standby events never cause calls (0, *outbox_id = 0). KZ_EINVAL for a
     * bad method or path, a message-sending path (use line_send), a body
     * that is not JSON with a JSON content type, or users without a JSON
     * object body; KZ_ETOOBIG for a body over 1 MiB. outbox_id may be NULL.
     * Thread: handler. Since: ABI 1.2. */
    int (*line_call)(kz_ctx *ctx, const kz_line_call *req, int64_t *outbox_id);

    /* Registers a route: requests to /shops/<shop>/<plugin>/<path> with this
     * method (NULL: any) go to fn(req, arg). path is relative and has no
     * leading '/': "click" matches exactly that; "orders/" followed by a
     * star matches any path below orders/; "" is the plugin's root. The
     * most specific route that takes the request's method wins (a GET route
     * also answers HEAD); a path some route matches, none with the method,
     * gets 405 with Allow. arg is the plugin's and must stay valid until
     * shop_close, which unregisters the instance's routes (after requests in
     * flight returned). KZ_EEXIST for a duplicate, KZ_EINVAL for a bad path
     * or method, KZ_ESTATE outside shop_open. Thread: shop_open.
     * Since: ABI 1.2. */
    int (*route)(kz_shop *shop, const char *method, const char *path, kz_route_fn fn, void *arg);

    /* Request accessors. Ownership: the host's, valid during the route
     * callback. Thread: route. Since: ABI 1.2. */
    kz_shop *(*http_shop)(kz_http *req);
    const char *(*http_method)(const kz_http *req);
    /* The path below the plugin's root, without '/' in front or the query. */
    const char *(*http_path)(const kz_http *req);
    /* A query argument, URL-decoded; NULL if absent. */
    const char *(*http_query)(const kz_http *req, const char *name);
    /* A request header, name matched case-insensitively; NULL if absent. */
    const char *(*http_header)(const kz_http *req, const char *name);
    /* The raw body (empty: "" and *len 0). Bodies over the daemon's
     * max_body were answered 413 before the route was called. */
    const void *(*http_body)(const kz_http *req, size_t *len);
    /* Publishes an event to the route's shop. The answer is held back until
     * every event published during the callback is durably stored; if
     * storing fails the client gets 503 instead, so an EC platform retries.
     * dedupe_key (NULL: none) makes the event's id a function of (shop,
     * plugin, key): a redelivered order webhook is stored once. user may be
     * NULL; json is a JSON value of len bytes (0: "{}"). Thread: route.
     * Since: ABI 1.2. */
    int (*http_publish)(kz_http *req, const char *topic, const char *user, const char *json,
                        size_t len, const char *dedupe_key);
    /* Adds a response header (Location for a redirect, …). */
    int (*http_header_set)(kz_http *req, const char *name, const char *value);
    /* Sets the answer: status, content type (NULL: text/plain), body. The
     * host copies the body. Call once; KZ_ESTATE on a second call. */
    int (*http_respond)(kz_http *req, int status, const char *content_type, const void *body,
                        size_t len);

    /* ---- ABI 1.3 ------------------------------------------------------- */

    /* The shop's friend registry (docs/friends.md), read and written in the
     * handler's transaction: reads see the handler's own changes, a failing
     * handler's changes vanish, and every change publishes its event in the
     * same transaction ("by" is the calling plugin's name). user is a LINE
     * user id (U + 32 hex digits): KZ_EINVAL otherwise. KZ_ESTATE for a
     * stale ctx. Thread: handler. Since: ABI 1.3. */

    /* The friend as one JSON object, owned by the host until the handler
     * returns: {"user","following","follows","firstFollow","lastFollow",
     * "unfollow","firstActive","lastActive" (ISO 8601 UTC or null),
     * "displayName","pictureUrl","statusMessage","language","tags":[…],
     * "attributes":{name:value},"links":{source:memberId}}. *len may be
     * NULL. KZ_ENOTFOUND for a user the shop never saw. */
    int (*friend_get)(kz_ctx *ctx, const char *user, const char **json, size_t *len);
    /* Adds (add != 0) or removes a tag (1..100 bytes of UTF-8, no control
     * characters): 0 when it changed and `friend.tagged` / `friend.untagged`
     * {"tag","by"} was published; KZ_EEXIST (already had it) or KZ_ENOTFOUND
     * (did not have it) when there was nothing to change. Tagging a user
     * the registry has not seen creates the friend. */
    int (*friend_tag)(kz_ctx *ctx, const char *user, const char *tag, int add);
    /* 1 when the friend has the tag, 0 when not (or unknown), < 0 error. */
    int (*friend_has_tag)(kz_ctx *ctx, const char *user, const char *tag);
    /* Sets attribute `name` to json_value, a JSON value of the type the
     * shop declares for it (friends.attributes in the config: "string" a
     * JSON string, "number" a number, "bool" true/false, "date" a string
     * "YYYY-MM-DD"); JSON null removes it. KZ_ENOTFOUND for an attribute
     * the shop does not declare, KZ_ETYPE for a value of another type. When
     * the value changed, publishes `friend.attribute`
     * {"name","value","previous","by"}. */
    int (*friend_attr_set)(kz_ctx *ctx, const char *user, const char *name, const char *json_value);
    /* Links the friend to member_id (1..200 bytes) at source ([a-z0-9_]+,
     * e.g. "shop", "rakuten", "futureshop"), replacing an earlier link of
     * that source; member_id NULL unlinks. A member id is linked to one
     * friend per source: linking it to another friend moves it.
     * Publishes `friend.linked` {"source","member","by"} or
     * `friend.unlinked` {"source","member","by"} on a change; KZ_EEXIST /
     * KZ_ENOTFOUND when there was nothing to change. */
    int (*friend_link)(kz_ctx *ctx, const char *user, const char *source, const char *member_id);
    /* The friend linked to member_id at source (owned by the host until the
     * handler returns); KZ_ENOTFOUND if none. An EC order names a member:
     * this finds the LINE user to write to. */
    int (*friend_by_link)(kz_ctx *ctx, const char *source, const char *member_id,
                          const char **user);

    /* Compiles the segment expression held by string setting s (so an error
     * is reported as "FILE:LINE:COLUMN: shop 'x': plugin 'y': <path>:
     * <message>" in err, the way `kizuna check` prints it, with KZ_EINVAL),
     * checked against the shop's declared attributes. *out is the plugin's
     * until segment_free. Thread: shop_open. Since: ABI 1.3. */
    int (*segment_compile)(kz_shop *shop, const kz_setting *s, kz_segment **out, char *err,
                           size_t errlen);
    /* 1 when the friend matches, 0 when not (an unknown user is a friend
     * with nothing: it matches only expressions like !tag("x")), < 0 on
     * error. "now" is the handled event's shop-local time on the host
     * clock. Thread: handler. Since: ABI 1.3. */
    int (*segment_match)(kz_ctx *ctx, const kz_segment *seg, const char *user);
    /* NULL is fine. Thread: shop_open, shop_close. Since: ABI 1.3. */
    void (*segment_free)(kz_segment *seg);

    /* ms (on the host clock, e.g. kz_now_ms()) in the shop's time zone,
     * DST included. Use it instead of localtime(): the process has one TZ
     * and many shops. KZ_EINVAL for a NULL argument. Thread: any callback.
     * Since: ABI 1.3. */
    int (*local_time)(const kz_shop *shop, int64_t ms, kz_local_time *out);

    /* ---- ABI 1.4 ------------------------------------------------------- */

    /* Durable timers (docs/scheduler.md), owned by the calling plugin
     * instance: key (1..200 bytes; KZ_EINVAL when empty, KZ_ETOOBIG when
     * longer) names one timer of this instance, so two plugins may use the
     * same key. Written in the handler's transaction: a failing handler's
     * timers vanish with its other effects. Thread: handler. Since: ABI 1.4. */

    /* Sets timer `key` to publish topic (checked like publish: KZ_EINVAL
     * for a bad topic or JSON; json NULL or len 0: "{}") for user (may be
     * NULL) to the calling instance's shop at due_ms on the host clock
     * (kz_now_ms(); a time already past fires at once). Setting a key
     * again replaces its timer. The event, with id "timer:<n>" and time
     * due_ms, is stored and its timer deleted in one transaction: it is
     * handled exactly once, like any event, by every subscriber. */
    int (*timer_set)(kz_ctx *ctx, const char *key, int64_t due_ms, const char *topic,
                     const char *user, const char *json, size_t len);
    /* Deletes timer `key` before it fires: KZ_ENOTFOUND when this instance
     * has none (never set, cancelled, or fired already). */
    int (*timer_cancel)(kz_ctx *ctx, const char *key);

    /* ---- ABI 1.5 ------------------------------------------------------- */

    /* The instant (ms on the host clock's scale) of a date and time in the
     * shop's time zone: "10:00 on 2026-03-08" wherever DST moves the
     * offset. Reads year..second of lt (weekday and utc_offset_s are
     * ignored); a day past the month's end rolls over (April 31 is May 1).
     * A time that does not exist (skipped when DST starts) moves forward
     * by the gap (02:30 becomes 03:30); one that happens twice (when DST
     * ends) is the earlier. KZ_EINVAL for a NULL argument or a field out of
     * range (month 1..12, day 1..31, hour 0..23, minute and second 0..59).
     * Thread: any callback. Since: ABI 1.5. */
    int (*local_to_ms)(const kz_shop *shop, const kz_local_time *lt, int64_t *ms);

    /* ---- ABI 1.6 and later: append new slots below this line only ---- */
};

/* True when the host's table has slot `fn` and it is set. Use before calling
 * any slot marked later than ABI 1.0. */
#define KZ_HOST_HAS(host, fn)                                                                      \
    ((host) != NULL &&                                                                             \
     offsetof(kz_host, fn) + sizeof(((const kz_host *)0)->fn) <= (size_t)(host)->struct_size &&    \
     (host)->fn != NULL)

/* The table the host handed to this plugin's entry function. KZ_PLUGIN_DEFINE
 * defines it (hidden, one per .so); the inline wrappers read it. */
extern KZ_HIDDEN const kz_host *kz_host_api;

/* ---- Inline wrappers: plugin code calls these, not the table ---------- */

/* printf-style log line. Thread: any. Since: ABI 1.0. */
static inline void kz_logv(int level, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    kz_host_api->log(level, buf);
}
static inline KZ_PRINTF(2, 3) void kz_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kz_logv(level, fmt, ap);
    va_end(ap);
}

/* Host clock in ms since the epoch (virtual in tests). Thread: any. */
static inline int64_t kz_now_ms(void)
{
    return kz_host_api->now_ms();
}

static inline kz_shop *kz_ctx_shop(kz_ctx *ctx)
{
    return kz_host_api->ctx_shop(ctx);
}
static inline const char *kz_shop_id(const kz_shop *shop)
{
    return kz_host_api->shop_id(shop);
}
static inline const char *kz_shop_timezone(const kz_shop *shop)
{
    return kz_host_api->shop_timezone(shop);
}

/* Publish in the handler's transaction. json may be NULL for "{}". */
static inline int kz_publish(kz_ctx *ctx, const char *topic, const char *user, const char *json)
{
    size_t len = 0;
    if (json != NULL)
        while (json[len] != '\0')
            len++;
    return kz_host_api->publish(ctx, topic, user, json, len);
}
static inline int kz_subscribe(kz_shop *shop, const char *pattern)
{
    return kz_host_api->subscribe(shop, pattern);
}

static inline int kz_kv_get(kz_ctx *ctx, const char *key, const void **val, size_t *len)
{
    return kz_host_api->kv_get(ctx, key, val, len);
}
static inline int kz_kv_put(kz_ctx *ctx, const char *key, const void *val, size_t len)
{
    return kz_host_api->kv_put(ctx, key, val, len);
}
static inline int kz_kv_del(kz_ctx *ctx, const char *key)
{
    return kz_host_api->kv_del(ctx, key);
}
static inline int kz_kv_cas(kz_ctx *ctx, const char *key, const void *expect, size_t expect_len,
                            const void *val, size_t len)
{
    return kz_host_api->kv_cas(ctx, key, expect, expect_len, val, len);
}
static inline int kz_kv_incr(kz_ctx *ctx, const char *key, int64_t delta, int64_t *result)
{
    return kz_host_api->kv_incr(ctx, key, delta, result);
}

/* LINE sends (see kz_host.line_send). KZ_ENOTSUP on a host older than ABI
 * 1.1. messages: a JSON array, e.g. from kz_msgs_json(). Since: ABI 1.1. */
static inline int kz_line_send_req(kz_ctx *ctx, const kz_line_send *req, int64_t *outbox_id)
{
    if (!KZ_HOST_HAS(kz_host_api, line_send))
        return KZ_ENOTSUP;
    return kz_host_api->line_send(ctx, req, outbox_id);
}
static inline int kz_line_reply(kz_ctx *ctx, const char *reply_token, const char *messages,
                                int fallback_to_push)
{
    kz_line_send r = {
        sizeof(kz_line_send), KZ_LINE_REPLY, reply_token, NULL, NULL, 0, messages, 0, NULL, 0,
        fallback_to_push,     NULL,          0,           0,    0};
    return kz_line_send_req(ctx, &r, NULL);
}
static inline int kz_line_push(kz_ctx *ctx, const char *to, const char *messages)
{
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_PUSH,
                      NULL,
                      to,
                      NULL,
                      0,
                      messages,
                      0,
                      NULL,
                      0,
                      0,
                      NULL,
                      0,
                      0,
                      0};
    return kz_line_send_req(ctx, &r, NULL);
}
static inline int kz_line_multicast(kz_ctx *ctx, const char *const *to, size_t nto,
                                    const char *messages)
{
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_MULTICAST,
                      NULL,
                      NULL,
                      to,
                      nto,
                      messages,
                      0,
                      NULL,
                      0,
                      0,
                      NULL,
                      0,
                      0,
                      0};
    return kz_line_send_req(ctx, &r, NULL);
}
static inline int kz_line_broadcast(kz_ctx *ctx, const char *messages)
{
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_BROADCAST,
                      NULL,
                      NULL,
                      NULL,
                      0,
                      messages,
                      0,
                      NULL,
                      0,
                      0,
                      NULL,
                      0,
                      0,
                      0};
    return kz_line_send_req(ctx, &r, NULL);
}

/* Other Messaging API calls (see kz_host.line_call). The outcome arrives as
 * `api.done` / `api.failed` with `tag` echoed. KZ_ENOTSUP on a host older
 * than ABI 1.2; KZ_EINVAL when an id does not fit the path. Since: ABI 1.2. */
static inline int kz_line_call_req(kz_ctx *ctx, const kz_line_call *req, int64_t *outbox_id)
{
    if (!KZ_HOST_HAS(kz_host_api, line_call))
        return KZ_ENOTSUP;
    return kz_host_api->line_call(ctx, req, outbox_id);
}
/* method + path (+ a JSON body) with the user and tag the result carries. */
static inline int kz_line_call_json(kz_ctx *ctx, const char *method, const char *user,
                                    const char *tag, const char *json, const char *fmt, ...)
    KZ_PRINTF(6, 7);
static inline int kz_line_call_json(kz_ctx *ctx, const char *method, const char *user,
                                    const char *tag, const char *json, const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof path)
        return KZ_EINVAL;
    kz_line_call c = {sizeof(kz_line_call), method, path, json, 0, NULL, 0, NULL, 0, user, tag};
    return kz_line_call_req(ctx, &c, NULL);
}
/* GET /v2/bot/profile/{userId}: api.done's "response" holds displayName,
 * pictureUrl, statusMessage, language. */
static inline int kz_line_get_profile(kz_ctx *ctx, const char *user, const char *tag)
{
    return kz_line_call_json(ctx, "GET", user, tag, NULL, "/v2/bot/profile/%s", user);
}
/* POST /v2/bot/user/{userId}/linkToken: "response" holds linkToken. */
static inline int kz_line_link_token(kz_ctx *ctx, const char *user, const char *tag)
{
    return kz_line_call_json(ctx, "POST", user, tag, NULL, "/v2/bot/user/%s/linkToken", user);
}
/* GET /v2/bot/message/quota and /quota/consumption. */
static inline int kz_line_quota(kz_ctx *ctx, const char *tag)
{
    return kz_line_call_json(ctx, "GET", NULL, tag, NULL, "/v2/bot/message/quota");
}
static inline int kz_line_quota_consumption(kz_ctx *ctx, const char *tag)
{
    return kz_line_call_json(ctx, "GET", NULL, tag, NULL, "/v2/bot/message/quota/consumption");
}
/* GET /v2/bot/message/progress/narrowcast?requestId=… (the requestId of the
 * narrowcast's message.sent). */
static inline int kz_line_narrowcast_progress(kz_ctx *ctx, const char *request_id, const char *tag)
{
    return kz_line_call_json(ctx, "GET", NULL, tag, NULL,
                             "/v2/bot/message/progress/narrowcast?requestId=%s", request_id);
}
/* POST /v2/bot/richmenu with the rich menu object (JSON): "response" holds
 * richMenuId. Not repeated once LINE may have received it. */
static inline int kz_line_richmenu_create(kz_ctx *ctx, const char *richmenu_json, const char *tag)
{
    return kz_line_call_json(ctx, "POST", NULL, tag, richmenu_json, "/v2/bot/richmenu");
}
/* POST api-data.line.me/v2/bot/richmenu/{id}/content: a PNG or JPEG image. */
static inline int kz_line_richmenu_upload(kz_ctx *ctx, const char *richmenu_id,
                                          const char *content_type, const void *image, size_t len,
                                          const char *tag)
{
    char path[256];
    int n = snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", richmenu_id);
    if (n < 0 || (size_t)n >= sizeof path || image == NULL || len == 0)
        return KZ_EINVAL;
    kz_line_call c = {
        sizeof(kz_line_call), "POST", path, image, len, content_type, 1, NULL, 0, NULL, tag};
    return kz_line_call_req(ctx, &c, NULL);
}
/* POST /v2/bot/user/{userId}/richmenu/{richMenuId}. */
static inline int kz_line_richmenu_link(kz_ctx *ctx, const char *user, const char *richmenu_id,
                                        const char *tag)
{
    return kz_line_call_json(ctx, "POST", user, tag, NULL, "/v2/bot/user/%s/richmenu/%s", user,
                             richmenu_id);
}
/* DELETE /v2/bot/user/{userId}/richmenu. */
static inline int kz_line_richmenu_unlink(kz_ctx *ctx, const char *user, const char *tag)
{
    return kz_line_call_json(ctx, "DELETE", user, tag, NULL, "/v2/bot/user/%s/richmenu", user);
}
/* POST /v2/bot/richmenu/bulk/link for any number of users (500 a request). */
static inline int kz_line_richmenu_bulk_link(kz_ctx *ctx, const char *richmenu_id,
                                             const char *const *users, size_t n, const char *tag)
{
    char body[256];
    int m = snprintf(body, sizeof body, "{\"richMenuId\":\"%s\"}", richmenu_id);
    if (m < 0 || (size_t)m >= sizeof body)
        return KZ_EINVAL;
    kz_line_call c = {sizeof(kz_line_call),
                      "POST",
                      "/v2/bot/richmenu/bulk/link",
                      body,
                      0,
                      NULL,
                      0,
                      users,
                      n,
                      NULL,
                      tag};
    return kz_line_call_req(ctx, &c, NULL);
}
/* POST /v2/bot/richmenu/bulk/unlink for any number of users. */
static inline int kz_line_richmenu_bulk_unlink(kz_ctx *ctx, const char *const *users, size_t n,
                                               const char *tag)
{
    kz_line_call c = {sizeof(kz_line_call),
                      "POST",
                      "/v2/bot/richmenu/bulk/unlink",
                      "{}",
                      0,
                      NULL,
                      0,
                      users,
                      n,
                      NULL,
                      tag};
    return kz_line_call_req(ctx, &c, NULL);
}
/* POST /v2/bot/user/all/richmenu/{richMenuId}: the default rich menu. */
static inline int kz_line_richmenu_default(kz_ctx *ctx, const char *richmenu_id, const char *tag)
{
    return kz_line_call_json(ctx, "POST", NULL, tag, NULL, "/v2/bot/user/all/richmenu/%s",
                             richmenu_id);
}
/* POST /v2/bot/richmenu/alias: alias → rich menu (for richmenuswitch actions). */
static inline int kz_line_richmenu_alias(kz_ctx *ctx, const char *alias, const char *richmenu_id,
                                         const char *tag)
{
    char body[256];
    int m = snprintf(body, sizeof body, "{\"richMenuAliasId\":\"%s\",\"richMenuId\":\"%s\"}", alias,
                     richmenu_id);
    if (m < 0 || (size_t)m >= sizeof body)
        return KZ_EINVAL;
    return kz_line_call_json(ctx, "POST", NULL, tag, body, "/v2/bot/richmenu/alias");
}
/* POST /v2/bot/message/validate/{kind}: kind "reply", "push", "multicast",
 * "narrowcast" or "broadcast"; messages a JSON array. */
static inline int kz_line_validate(kz_ctx *ctx, const char *kind, const char *messages,
                                   const char *tag)
{
    size_t n = 0;
    while (messages != NULL && messages[n] != '\0')
        n++;
    if (messages == NULL || n > KZ_PAYLOAD_MAX)
        return KZ_EINVAL;
    char *body = (char *)malloc(n + 16);
    if (body == NULL)
        return KZ_ENOMEM;
    memcpy(body, "{\"messages\":", 12);
    memcpy(body + 12, messages, n);
    memcpy(body + 12 + n, "}", 2);
    int rc = kz_line_call_json(ctx, "POST", NULL, tag, body, "/v2/bot/message/validate/%s", kind);
    free(body);
    return rc;
}

/* Plugin HTTP routes (see kz_host.route and the http_* slots): requests to
 * /shops/<shop>/<plugin>/<path> go to fn on an HTTP thread. The plugin checks
 * who is calling (an EC platform's own signature, a token in the link):
 * the host authenticates nothing here. Each returns KZ_ENOTSUP (or NULL) on
 * a host older than ABI 1.2. Since: ABI 1.2. */
static inline int kz_route(kz_shop *shop, const char *method, const char *path, kz_route_fn fn,
                           void *arg)
{
    if (!KZ_HOST_HAS(kz_host_api, route))
        return KZ_ENOTSUP;
    return kz_host_api->route(shop, method, path, fn, arg);
}
static inline kz_shop *kz_http_shop(kz_http *req)
{
    return KZ_HOST_HAS(kz_host_api, http_shop) ? kz_host_api->http_shop(req) : NULL;
}
static inline const char *kz_http_method(const kz_http *req)
{
    return KZ_HOST_HAS(kz_host_api, http_method) ? kz_host_api->http_method(req) : NULL;
}
static inline const char *kz_http_path(const kz_http *req)
{
    return KZ_HOST_HAS(kz_host_api, http_path) ? kz_host_api->http_path(req) : NULL;
}
static inline const char *kz_http_query(const kz_http *req, const char *name)
{
    return KZ_HOST_HAS(kz_host_api, http_query) ? kz_host_api->http_query(req, name) : NULL;
}
static inline const char *kz_http_header(const kz_http *req, const char *name)
{
    return KZ_HOST_HAS(kz_host_api, http_header) ? kz_host_api->http_header(req, name) : NULL;
}
/* Not NUL-terminated: use *len. */
static inline const void *kz_http_body(const kz_http *req, size_t *len)
{
    if (!KZ_HOST_HAS(kz_host_api, http_body)) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    return kz_host_api->http_body(req, len);
}
/* json may be NULL for "{}"; dedupe_key NULL for none. KZ_EINVAL for a bad
 * topic or JSON (as kz_publish), KZ_ETOOBIG past 100 events a request. */
static inline int kz_http_publish(kz_http *req, const char *topic, const char *user,
                                  const char *json, const char *dedupe_key)
{
    if (!KZ_HOST_HAS(kz_host_api, http_publish))
        return KZ_ENOTSUP;
    return kz_host_api->http_publish(req, topic, user, json, json ? strlen(json) : 0, dedupe_key);
}
/* KZ_EINVAL for a name that is not an HTTP token, a value with CR/LF, or
 * Content-Type/Content-Length/Transfer-Encoding (the host sets them). */
static inline int kz_http_header_set(kz_http *req, const char *name, const char *value)
{
    if (!KZ_HOST_HAS(kz_host_api, http_header_set))
        return KZ_ENOTSUP;
    return kz_host_api->http_header_set(req, name, value);
}
/* status 200..599 (KZ_EINVAL otherwise). */
static inline int kz_http_respond(kz_http *req, int status, const char *content_type,
                                  const void *body, size_t len)
{
    if (!KZ_HOST_HAS(kz_host_api, http_respond))
        return KZ_ENOTSUP;
    return kz_host_api->http_respond(req, status, content_type, body, len);
}
/* A text/plain answer; text may be NULL for none. */
static inline int kz_http_respond_text(kz_http *req, int status, const char *text)
{
    return kz_http_respond(req, status, "text/plain; charset=utf-8", text ? text : "",
                           text ? strlen(text) : 0);
}
/* A redirect (301, 302, 303, 307 or 308) to url. */
static inline int kz_http_redirect(kz_http *req, int status, const char *url)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return KZ_EINVAL;
    int rc = kz_http_header_set(req, "Location", url);
    return rc != 0 ? rc : kz_http_respond(req, status, NULL, NULL, 0);
}

/* The friend registry (see kz_host.friend_get …). KZ_ENOTSUP on a host
 * older than ABI 1.3. Since: ABI 1.3. */
static inline int kz_friend_get(kz_ctx *ctx, const char *user, const char **json, size_t *len)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_get))
        return KZ_ENOTSUP;
    return kz_host_api->friend_get(ctx, user, json, len);
}
static inline int kz_friend_tag(kz_ctx *ctx, const char *user, const char *tag)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_tag))
        return KZ_ENOTSUP;
    return kz_host_api->friend_tag(ctx, user, tag, 1);
}
static inline int kz_friend_untag(kz_ctx *ctx, const char *user, const char *tag)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_tag))
        return KZ_ENOTSUP;
    return kz_host_api->friend_tag(ctx, user, tag, 0);
}
static inline int kz_friend_has_tag(kz_ctx *ctx, const char *user, const char *tag)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_has_tag))
        return KZ_ENOTSUP;
    return kz_host_api->friend_has_tag(ctx, user, tag);
}
static inline int kz_friend_attr_set(kz_ctx *ctx, const char *user, const char *name,
                                     const char *json_value)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_attr_set))
        return KZ_ENOTSUP;
    return kz_host_api->friend_attr_set(ctx, user, name, json_value);
}
static inline int kz_friend_link(kz_ctx *ctx, const char *user, const char *source,
                                 const char *member_id)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_link))
        return KZ_ENOTSUP;
    return kz_host_api->friend_link(ctx, user, source, member_id);
}
static inline int kz_friend_by_link(kz_ctx *ctx, const char *source, const char *member_id,
                                    const char **user)
{
    if (!KZ_HOST_HAS(kz_host_api, friend_by_link))
        return KZ_ENOTSUP;
    return kz_host_api->friend_by_link(ctx, source, member_id, user);
}

/* Segments (see kz_host.segment_compile). Since: ABI 1.3. */
static inline int kz_segment_compile(kz_shop *shop, const kz_setting *s, kz_segment **out,
                                     char *err, size_t errlen)
{
    if (!KZ_HOST_HAS(kz_host_api, segment_compile))
        return KZ_ENOTSUP;
    return kz_host_api->segment_compile(shop, s, out, err, errlen);
}
static inline int kz_segment_match(kz_ctx *ctx, const kz_segment *seg, const char *user)
{
    if (!KZ_HOST_HAS(kz_host_api, segment_match))
        return KZ_ENOTSUP;
    return kz_host_api->segment_match(ctx, seg, user);
}
static inline void kz_segment_free(kz_segment *seg)
{
    if (seg != NULL && KZ_HOST_HAS(kz_host_api, segment_free))
        kz_host_api->segment_free(seg);
}

/* ms in the shop's time zone (see kz_host.local_time). Since: ABI 1.3. */
static inline int kz_local_time_of(const kz_shop *shop, int64_t ms, kz_local_time *out)
{
    if (!KZ_HOST_HAS(kz_host_api, local_time))
        return KZ_ENOTSUP;
    return kz_host_api->local_time(shop, ms, out);
}

/* A shop-local date and time as an instant (see kz_host.local_to_ms).
 * KZ_ENOTSUP on a host older than ABI 1.5. Since: ABI 1.5. */
static inline int kz_local_to_ms(const kz_shop *shop, const kz_local_time *lt, int64_t *ms)
{
    if (!KZ_HOST_HAS(kz_host_api, local_to_ms))
        return KZ_ENOTSUP;
    return kz_host_api->local_to_ms(shop, lt, ms);
}

/* Durable timers (see kz_host.timer_set). json may be NULL for "{}".
 * KZ_ENOTSUP on a host older than ABI 1.4. Since: ABI 1.4. */
static inline int kz_timer_set(kz_ctx *ctx, const char *key, int64_t due_ms, const char *topic,
                               const char *user, const char *json)
{
    if (!KZ_HOST_HAS(kz_host_api, timer_set))
        return KZ_ENOTSUP;
    return kz_host_api->timer_set(ctx, key, due_ms, topic, user, json, json ? strlen(json) : 0);
}
static inline int kz_timer_cancel(kz_ctx *ctx, const char *key)
{
    if (!KZ_HOST_HAS(kz_host_api, timer_cancel))
        return KZ_ENOTSUP;
    return kz_host_api->timer_cancel(ctx, key);
}

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_HOST_H */
