/*
 * kizuna SDK — a fake host for plugin unit tests (CMocka).
 *
 * Header-only: include it from exactly ONE test translation unit (it
 * includes <stdarg.h>, <stddef.h>, <setjmp.h> and <cmocka.h> itself, in the
 * order cmocka needs). Link the test with cmocka and compile your plugin's
 * sources INTO the test executable (no dlopen), so the test can call the
 * plugin's entry function directly:
 *
 *     add_executable(test_hello hello.c test_hello.c)
 *     target_link_libraries(test_hello PRIVATE kizuna::sdk PkgConfig::CMOCKA)
 *
 * One plugin per test executable (KZ_PLUGIN_DEFINE defines kz_host_api).
 * Everything here is `static`; nothing but libc and cmocka is needed.
 *
 * What it provides: a complete ABI 1.4 `kz_host` table that works in memory:
 * - one shop (id "test", timezone "Asia/Tokyo"; kz_test_set_shop() changes it)
 *   and one plugin instance of that shop;
 * - events built by the test: kz_test_event(topic, shop, user, id, payload);
 * - a per-instance key/value store with the semantics documented in host.h
 *   (counters are decimal text, absent counts as 0, KZ_ETYPE on a
 *   non-counter; cas with expect == NULL means "only if absent");
 * - recorded publishes, log lines and subscriptions (static ones from the
 *   descriptor first, then those added by kz_subscribe() in shop_open);
 * - recorded LINE sends (kz_line_reply/push/multicast/broadcast and
 *   kz_line_send_req): kz_test_sent_count(), kz_test_sent(i). The request's
 *   shape is checked (see kz_test_h_line_send_); an event whose payload has
 *   "mode":"standby" sends nothing (0, outbox id 0), as in the host;
 * - recorded API calls (kz_line_call_req and its wrappers: profile, rich
 *   menus, link tokens, …): kz_test_called_count(), kz_test_called(i),
 *   checked with the host's rules (method, path, body, users); no
 *   api.done / api.failed follows (build one with kz_test_event());
 * - plugin HTTP routes: the routes shop_open registered (kz_test_route_count,
 *   _path, _method) and kz_test_http(method, "path?query", headers, body,
 *   len), which picks the route as the host does (most specific, 404, 405
 *   with Allow), runs it and returns the status the client would get (500
 *   when the route did not answer); then kz_test_http_status/_body/
 *   _content_type/_header (Location, Allow, …) show the answer, and the
 *   events the route published are recorded like publishes (kz_test_published*),
 *   a repeated dedupe key once. kz_test_fail_next(KZ_TEST_FAIL_ROUTE_STORE,
 *   KZ_EIO) makes storing them fail: 503, as in the host;
 * - a friend registry (ABI 1.3) the test seeds outside handlers, without
 *   events: kz_test_friend_add(user, following), kz_test_friend_set_times,
 *   _set_follows, _set_profile, _add_tag, _set_attr, _set_link, and
 *   kz_test_declare_attribute(name, "string"|"number"|"bool"|"date") for
 *   the shop's friends.attributes; kz_test_friend_count, _has_tag,
 *   _tag_count, _attr, _link show the committed state. Plugins use it with
 *   friend_get (the JSON object of host.h), friend_tag, friend_has_tag,
 *   friend_attr_set, friend_link and friend_by_link, with host.h's return
 *   codes; each change records its friend.* event as a publish of the
 *   handler ({"tag","by"}, {"source","member","by"}, {"name","value",
 *   "previous","by"}; "by" = the plugin's name), and a failing handler's
 *   changes are rolled back with its other effects. User ids must look
 *   like LINE's (U + 32 lowercase hex digits), as in the host;
 * - segments (segment_compile / _match / _free) for a subset of the
 *   language: tag("…"), blocked, !, &&, || and parentheses (see below);
 * - shop-local time (local_time) in the shop's timezone;
 * - timers (ABI 1.4): timer_set / timer_cancel record them per key
 *   (kz_test_timer_count, kz_test_timer(i)), rolled back with a failing
 *   handler; kz_test_fire_timers(out, max) fires those due on the fake
 *   clock in due order and returns their events for kz_test_handle();
 * - a settable clock (kz_test_set_now / kz_test_advance; default
 *   1700000000000 = 2023-11-14T22:13:20Z); new events take their time from it;
 * - settings built without a parser (kz_test_setting_group() and setters);
 *   kz_test_load_settings() checks them against the descriptor's schema and
 *   fills in defaults, as `kizuna check` does, and setting_error() writes
 *   "test.conf:LINE: shop 'x': plugin 'y': path: msg";
 * - transactions: kz_test_handle(ev) runs the handler with a fresh kz_ctx;
 *   when it returns nonzero, the kv writes, publishes and LINE sends it made
 *   are discarded (like the real host's rollback) and its err text is kept for
 *   kz_test_error(). Afterwards the ctx is stale: every call with it returns
 *   KZ_ESTATE (kz_test_last_ctx() hands it to a test that wants to check);
 * - fault injection: kz_test_fail_next(KZ_TEST_FAIL_PUBLISH, KZ_EIO) makes
 *   the next call of that slot fail, e.g. to test a plugin's error path
 *   (one KZ_TEST_FAIL_* per slot, KZ_TEST_FAIL_LINE_SEND included;
 *   KZ_TEST_FAIL_FRIEND_TAG / _ATTR / _LINK fire on a call that would
 *   change something, _FRIEND_GET on a known friend).
 *
 * Line numbers of built settings: kz_test_setting_group() is on line 1 (the
 * `name = {` line) and every node added to it takes the next line, in the
 * order of the calls; kz_test_setting_set_line() overrides. Defaults filled
 * in from the schema have line 0 and report their group's line.
 * Paths in errors: "key", "group.key", "list[2].key".
 *
 * Loading: kz_test_load(kizuna_plugin_v1) calls the entry with the fake
 * table, checks the descriptor as the loader does, applies the schema's
 * defaults to an empty group, then calls load() and shop_open();
 * kz_test_load_settings(entry, g) does the same with a group you built.
 * Both return 0 or a KZ_E* code with the reason in kz_test_error(): a
 * refusal ("plugin 'x' (test): …", load() failures included), schema
 * errors (one line each), or a failing shop_open()'s err text verbatim.
 *
 * Life cycle in a test:
 *
 *     #include <kizuna/testing.h>
 *     static void greets(void **state)
 *     {
 *         (void)state;
 *         kz_setting *g = kz_test_setting_group();
 *         kz_test_setting_set_string(g, "greeting", "Hi");
 *         kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
 *         kz_assert_ok(kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, NULL)));
 *         assert_int_equal(kz_test_published_count("hello.greeted"), 1);
 *     }
 *     int main(void)
 *     {
 *         const struct CMUnitTest tests[] = {
 *             cmocka_unit_test_setup_teardown(greets, kz_test_setup, kz_test_teardown)};
 *         return cmocka_run_group_tests(tests, NULL, NULL);
 *     }
 *
 * kz_test_reset() (called by kz_test_setup/kz_test_teardown) calls the
 * plugin's shop_close and unload, then frees everything the fake allocated,
 * so tests run clean under LeakSanitizer. Handles and strings obtained from
 * the fake are valid until then (kv_get values: until the handler returns,
 * as in the real host).
 *
 * As in the real host, durations and secrets are string nodes (libconfig has
 * no such types): kz_setting_type() says KZ_SETTING_STRING for them and
 * kz_setting_get_duration_ms() parses the text. Schema errors use the
 * wording of core/config.c ("expected an integer, got a string", "unknown
 * setting 'x' (known: …)", "missing required setting 'x'").
 *
 * Differences from the real host: handlers run on the test's thread;
 * kz_test_handle() does not check subscriptions (use kz_test_subscribed());
 * only scalar and empty list/group defaults are understood; secrets are not
 * masked in recorded log lines; "file:PATH" secrets are relative to the
 * working directory; published event ids are "<handled id>/<plugin>/<n>"
 * (the host hashes a handled id over 160 bytes). LINE sends are only
 * recorded, never sent: no message.sent / message.failed events follow
 * (publish one yourself with kz_test_event() to test a plugin's handling of
 * them); the messages are checked as JSON (an array of 1..5 objects), not
 * against every rule of LINE the host applies (docs/messages.md); and the
 * request is checked even for a standby event, where the host returns 0
 * without looking at it. Routes run on the test's thread; an event a
 * route publishes has id "dedupe:<key>" (the host: a UUID made from shop,
 * plugin and key) or "ev-N"; query names are compared as written (values
 * are URL-decoded like the host's); the host's own error bodies differ in
 * wording. Friends: the registry starts empty and is fed only by the test
 * and the plugin (the host's core.friends also records follows, activity
 * and profiles from line.* events; seed them with kz_test_friend_*); the
 * fake has no store limits; a friend a plugin creates by tagging, setting
 * an attribute or linking is "not following" (blocked to segments), as in
 * core. Segments: the fake cannot link core/segment.c, so it understands
 * only tag("…") (escapes \", \\, \n), blocked, !, &&, || and parentheses;
 * anything else (attr.*, has, linked, followed, active, now.*) is a compile
 * error, "test.conf:LINE:COLUMN: shop 'x': plugin 'y': path: message" like
 * the host's, with a message saying the fake does not support it; other
 * messages follow core/segment.c's wording for the same mistakes.
 * local_time sets TZ to the shop's zone around localtime_r and restores
 * it (the fake runs on one thread); an unknown zone name reads as UTC (the
 * host refuses it in `kizuna check`), and the host's system zone data is the
 * test machine's.
 */
#ifndef KIZUNA_TESTING_H
#define KIZUNA_TESTING_H

/* localtime_r, setenv and tzset are POSIX: ask for them when the test did
 * not pick a feature set (include testing.h first). */
#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) &&               \
    !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <kizuna/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KZ_TEST_FN static __attribute__((unused))
#else
#define KZ_TEST_FN static
#endif

#ifndef KZ_TEST_CONF_FILE
#define KZ_TEST_CONF_FILE "test.conf"
#endif
#define KZ_TEST_DEFAULT_NOW 1700000000000LL
#define KZ_TEST_ERRLEN 512

/* The plugin's entry point, defined by KZ_PLUGIN_DEFINE in its sources. */
KZ_EXPORT const kz_plugin *kizuna_plugin_v1(const kz_host *host);

/* Slots kz_test_fail_next() can make fail. */
enum {
    KZ_TEST_FAIL_PUBLISH = 0,
    KZ_TEST_FAIL_SUBSCRIBE,
    KZ_TEST_FAIL_KV_GET,
    KZ_TEST_FAIL_KV_PUT,
    KZ_TEST_FAIL_KV_DEL,
    KZ_TEST_FAIL_KV_CAS,
    KZ_TEST_FAIL_KV_INCR,
    KZ_TEST_FAIL_LINE_SEND, /* a valid send from an active (not standby) event */
    KZ_TEST_FAIL_LINE_CALL, /* a valid API call from an active event (ABI 1.2) */
    /* the events of the next route request that published some are not
     * stored: the request is answered 503, as the host does */
    KZ_TEST_FAIL_ROUTE_STORE,
    KZ_TEST_FAIL_FRIEND_GET,  /* friend_get of a known friend (ABI 1.3) */
    KZ_TEST_FAIL_FRIEND_TAG,  /* a valid friend_tag (add or remove) */
    KZ_TEST_FAIL_FRIEND_ATTR, /* a valid friend_attr_set */
    KZ_TEST_FAIL_FRIEND_LINK, /* a valid friend_link */
    KZ_TEST_FAIL_SEGMENT_MATCH,
    KZ_TEST_FAIL_TIMER_SET,    /* a valid timer_set (ABI 1.4) */
    KZ_TEST_FAIL_TIMER_CANCEL, /* a timer_cancel of an existing timer */
    KZ_TEST_FAIL_COUNT_
};

/* ---- the fake's objects (the opaque types of host.h, defined here) ---- */

struct kz_event {
    char *topic, *shop, *user, *id, *payload;
    size_t payload_len;
    int64_t time_ms;
    uint32_t attempt;
    struct kz_event *next; /* every event the fake made, for freeing */
};

struct kz_shop {
    char id[256], timezone[128];
};

struct kz_ctx {
    struct kz_ctx *next; /* never reused while the fake lives: stale stays stale */
};

struct kz_setting {
    int type;
    char *name; /* NULL in a list and for the root */
    int line;
    char *str; /* STRING (durations and secrets are strings, as in libconfig) */
    int64_t i; /* INT */
    double f;
    int b;
    struct kz_setting *parent;
    struct kz_setting **kids;
    size_t nkids, cap;
    int next_line;                /* root only: line of the next node added */
    struct kz_setting *next_root; /* root only */
};

/* One route a plugin registered in shop_open. */
typedef struct kz_test_route_ {
    char *method; /* NULL: any */
    char *path;
    kz_route_fn fn;
    void *arg;
} kz_test_route_;

/* A request to a route: live during the callback, then stale (never
 * reused while the fake lives), keeping the answer for the test. */
struct kz_http {
    int live;
    char *method, *path, *query; /* query: the raw text after '?', or NULL */
    char **headers;              /* "Name: value" copies */
    size_t nheaders;
    char *body;
    size_t body_len;
    int status; /* 0 until answered */
    char *content_type, *resp;
    size_t resp_len;
    char **resp_headers; /* "Name: value" */
    size_t nresp, capresp;
    kz_event **events; /* published during the callback */
    size_t nevents, capevents;
    char **decoded; /* kz_http_query() results, kept with the request */
    size_t ndecoded, capdecoded;
    struct kz_http *next;
};

typedef struct kz_test_kv_ {
    char *key;
    char *val; /* NUL-terminated beyond len */
    size_t len;
} kz_test_kv_;

typedef struct kz_test_log_ {
    int level;
    char *msg;
} kz_test_log_;

/* One recorded LINE send, as kz_test_sent(i) returns it. Everything is a
 * copy made during the call (like the host, the fake keeps none of the
 * plugin's pointers), valid until kz_test_reset(). Fields past an older
 * plugin's struct_size read as 0/NULL. */
typedef struct kz_test_line_sent {
    int64_t outbox_id; /* the first outbox row's id: 1, 2, … (never reused) */
    int kind;          /* KZ_LINE_* */
    const char *reply_token;
    const char *to;
    const char *const *to_list; /* nto copied ids; NULL when nto is 0 */
    size_t nto;
    const char *messages; /* the JSON array, NUL-terminated */
    size_t messages_len;
    int nmessages; /* elements of the array (1..5) */
    const char *narrowcast;
    int notification_disabled;
    int fallback_to_push;
    const char *tag;
    int promotional; /* ABI 1.5: the delivery policy fields as the plugin set them */
    int priority;
    int over_cap;
    const char *user;     /* the handled event's user: where a reply falls back to */
    const char *event_id; /* the handled event's id */
    unsigned rows;        /* outbox rows the host stores: multicast one per 500 ids, else 1 */
} kz_test_line_sent;

typedef struct kz_test_sent_ {
    kz_test_line_sent v;
    char *strs[7]; /* the copies behind v's strings */
    char **to_list;
} kz_test_sent_;

/* One recorded API call (line_call, ABI 1.2), as kz_test_called(i) returns
 * it: copies valid until kz_test_reset(). */
typedef struct kz_test_line_called {
    int64_t outbox_id; /* the first outbox row's id (shared sequence with sends) */
    const char *method;
    const char *path;
    const char *body; /* a copy, NUL-terminated beyond body_len; "" for none */
    size_t body_len;
    const char *content_type; /* as passed (NULL: JSON) */
    int data_api;
    const char *const *users; /* nusers copied ids; NULL when nusers is 0 */
    size_t nusers;
    const char *user;
    const char *tag;
    const char *event_id;
    unsigned rows; /* one per 500 users, else 1 */
} kz_test_line_called;

typedef struct kz_test_called_ {
    kz_test_line_called v;
    char *strs[7];
    char **users;
} kz_test_called_;

/* A name → value pair of a friend: an attribute (value: its JSON text) or
 * a link (value: the member id). */
typedef struct kz_test_pair_ {
    char *name, *value;
} kz_test_pair_;

/* One friend of the fake registry (ABI 1.3). Times are ms since the epoch,
 * 0 for "never" (null in friend_get's JSON). */
typedef struct kz_test_friend_ {
    char *user;
    int following;
    int64_t follows;
    int64_t first_follow, last_follow, unfollow, first_active, last_active;
    char *profile[4]; /* displayName, pictureUrl, statusMessage, language */
    char **tags;      /* in the order they were added */
    size_t ntags, captags;
    kz_test_pair_ *attrs, *links;
    size_t nattrs, capattrs, nlinks, caplinks;
} kz_test_friend_;

/* An attribute the shop declares (friends.attributes in the config). */
typedef struct kz_test_attr_decl_ {
    char *name;
    char type[8]; /* "string", "number", "bool" or "date" */
} kz_test_attr_decl_;

/* A timer a plugin set (ABI 1.4), as kz_test_timer(i) shows it. */
typedef struct kz_test_timed {
    const char *key;
    int64_t due_ms;
    const char *topic;
    const char *user; /* NULL: none */
    const char *payload;
    size_t payload_len;
    unsigned long seq; /* set order: the id in the fired event's "timer:<seq>" */
} kz_test_timed;

static struct kz_test_state_ {
    int initialized; /* 0: the defaults below are not set yet */
    int64_t now;
    kz_shop shop;
    /* plugin */
    kz_plugin desc;            /* min(struct_size) copy, as the host keeps it */
    int loaded, opened, phase; /* phase: 0 idle, 1 shop_open, 2 handler */
    void *plugin_state, *instance;
    const kz_setting *settings;
    char err[KZ_TEST_ERRLEN * 4];
    /* store */
    kz_test_kv_ *kv;
    size_t nkv, capkv;
    kz_test_kv_ *snap; /* store before the running handler */
    size_t nsnap;
    /* recordings */
    kz_event **pub;
    size_t npub, cappub;
    kz_test_log_ *logs;
    size_t nlogs, caplogs;
    kz_test_sent_ **sent;
    size_t nsent, capsent;
    kz_test_called_ **called;
    size_t ncalled, capcalled;
    int64_t outbox_seq;
    char **subs;
    size_t nsubs, capsubs;
    /* handles */
    kz_event *events;
    kz_ctx *ctxs, *live_ctx, *last_ctx;
    const kz_event *cur_event;
    unsigned npub_in_call;
    char **getbufs;
    size_t ngetbufs, capgetbufs;
    kz_setting *roots;
    kz_test_route_ *routes;
    size_t nroutes, caproutes;
    struct kz_http *https, *last_http; /* every request made, newest first */
    unsigned long event_seq;
    int fail[KZ_TEST_FAIL_COUNT_];
    /* friend registry (ABI 1.3); snap_friends: before the running handler */
    struct kz_test_friend_ *friends, *snap_friends;
    size_t nfriends, capfriends, nsnap_friends;
    struct kz_test_attr_decl_ *attrs;
    size_t nattrs, capattrs;
    /* timers (ABI 1.4); snap_timers: before the running handler */
    kz_test_timed *timers, *snap_timers;
    size_t ntimers, captimers, nsnap_timers;
    unsigned long timer_seq;
} kz_test_s_;

/* ---- small helpers ---------------------------------------------------- */

/* Sets the defaults on first use (a test need not call kz_test_reset). */
KZ_TEST_FN void kz_test_init_(void)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (s->initialized)
        return;
    s->initialized = 1;
    s->now = KZ_TEST_DEFAULT_NOW;
    snprintf(s->shop.id, sizeof s->shop.id, "%s", "test");
    snprintf(s->shop.timezone, sizeof s->shop.timezone, "%s", "Asia/Tokyo");
}

KZ_TEST_FN void *kz_test_alloc_(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "kizuna/testing.h: out of memory\n");
        abort();
    }
    return p;
}

KZ_TEST_FN void kz_test_grow_(void **arr, size_t *cap, size_t n, size_t elsz)
{
    if (n < *cap)
        return;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * elsz);
    if (p == NULL) {
        fprintf(stderr, "kizuna/testing.h: out of memory\n");
        abort();
    }
    *arr = p;
    *cap = ncap;
}

KZ_TEST_FN char *kz_test_dupn_(const void *s, size_t n)
{
    char *p = (char *)kz_test_alloc_(n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

KZ_TEST_FN char *kz_test_dup_(const char *s)
{
    return s ? kz_test_dupn_(s, strlen(s)) : NULL;
}

KZ_TEST_FN void kz_test_seterr_(const char *fmt, ...) KZ_PRINTF(1, 2);
KZ_TEST_FN void kz_test_seterr_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kz_test_s_.err, sizeof kz_test_s_.err, fmt, ap);
    va_end(ap);
}

KZ_TEST_FN void kz_test_adderr_(const char *line)
{
    size_t n = strlen(kz_test_s_.err);
    snprintf(kz_test_s_.err + n, sizeof kz_test_s_.err - n, "%s%s", n ? "\n" : "", line);
}

KZ_TEST_FN int kz_test_word_char_(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Dot-separated words of [a-zA-Z0-9_-], at most KZ_TOPIC_MAX bytes. */
KZ_TEST_FN int kz_test_topic_valid_(const char *t, size_t n)
{
    if (t == NULL || n == 0 || n > KZ_TOPIC_MAX)
        return 0;
    int inword = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '.') {
            if (!inword)
                return 0;
            inword = 0;
        } else if (kz_test_word_char_((unsigned char)t[i])) {
            inword = 1;
        } else {
            return 0;
        }
    }
    return inword;
}

/* "*", an exact topic, or "prefix.*". */
KZ_TEST_FN int kz_test_pattern_valid_(const char *p)
{
    if (p == NULL)
        return 0;
    size_t n = strlen(p);
    if (n == 1 && p[0] == '*')
        return 1;
    if (n > 2 && p[n - 1] == '*' && p[n - 2] == '.')
        return kz_test_topic_valid_(p, n - 2);
    return kz_test_topic_valid_(p, n);
}

KZ_TEST_FN int kz_test_pattern_match_(const char *p, const char *topic)
{
    size_t n = strlen(p);
    if (n == 1 && p[0] == '*')
        return 1;
    if (n > 2 && p[n - 1] == '*' && p[n - 2] == '.')
        return strncmp(topic, p, n - 1) == 0 && topic[n - 1] != '\0';
    return strcmp(p, topic) == 0;
}

KZ_TEST_FN int kz_test_name_valid_(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* ---- a strict JSON validator (RFC 8259 grammar; no UTF-8 check) ------ */

typedef struct kz_test_json_ {
    const char *p, *end;
    int depth;
} kz_test_json_;

KZ_TEST_FN void kz_test_json_ws_(kz_test_json_ *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

KZ_TEST_FN int kz_test_json_lit_(kz_test_json_ *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

KZ_TEST_FN int kz_test_json_string_(kz_test_json_ *j)
{
    j->p++; /* opening quote */
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (j->p >= j->end)
                return 0;
            c = (unsigned char)*j->p++;
            if (c == 'u') {
                for (int k = 0; k < 4; k++, j->p++)
                    if (j->p >= j->end ||
                        !((*j->p >= '0' && *j->p <= '9') || (*j->p >= 'a' && *j->p <= 'f') ||
                          (*j->p >= 'A' && *j->p <= 'F')))
                        return 0;
            } else if (c == 0 || !strchr("\"\\/bfnrt", c)) {
                return 0;
            }
        }
    }
    return 0;
}

KZ_TEST_FN int kz_test_json_digits_(kz_test_json_ *j)
{
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

KZ_TEST_FN int kz_test_json_number_(kz_test_json_ *j)
{
    if (*j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!kz_test_json_digits_(j))
        return 0;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!kz_test_json_digits_(j))
            return 0;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!kz_test_json_digits_(j))
            return 0;
    }
    return 1;
}

KZ_TEST_FN int kz_test_json_value_(kz_test_json_ *j)
{
    kz_test_json_ws_(j);
    if (j->p >= j->end)
        return 0;
    char c = *j->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (++j->depth > 512)
            return 0;
        j->p++;
        kz_test_json_ws_(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return 1;
        }
        for (;;) {
            if (c == '{') {
                kz_test_json_ws_(j);
                if (j->p >= j->end || *j->p != '"' || !kz_test_json_string_(j))
                    return 0;
                kz_test_json_ws_(j);
                if (j->p >= j->end || *j->p++ != ':')
                    return 0;
            }
            if (!kz_test_json_value_(j))
                return 0;
            kz_test_json_ws_(j);
            if (j->p >= j->end)
                return 0;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p++ != close)
                return 0;
            j->depth--;
            return 1;
        }
    }
    if (c == '"')
        return kz_test_json_string_(j);
    if (c == '-' || (c >= '0' && c <= '9'))
        return kz_test_json_number_(j);
    return kz_test_json_lit_(j, "true") || kz_test_json_lit_(j, "false") ||
           kz_test_json_lit_(j, "null");
}

/* 1 when json[0..len) is exactly one JSON value (surrounding whitespace ok). */
KZ_TEST_FN int kz_test_json_valid(const char *json, size_t len)
{
    if (json == NULL)
        return 0;
    kz_test_json_ j = {json, json + len, 0};
    if (!kz_test_json_value_(&j))
        return 0;
    kz_test_json_ws_(&j);
    return j.p == j.end;
}

/* ---- durations: "90s", "15m", "1d", "1h30m", "1500ms", "2w"; bare = s -- */

KZ_TEST_FN int kz_test_parse_duration_(const char *s, int64_t *out)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    if (s == NULL || *s == '\0')
        return KZ_EINVAL;
    if (strspn(s, "0123456789") == strlen(s)) { /* bare number: seconds */
        char with_unit[32];
        if (strlen(s) > 18)
            return KZ_EINVAL;
        snprintf(with_unit, sizeof with_unit, "%ss", s);
        return kz_test_parse_duration_(with_unit, out);
    }
    int64_t total = 0;
    while (*s) {
        if (*s < '0' || *s > '9')
            return KZ_EINVAL;
        int64_t n = 0;
        while (*s >= '0' && *s <= '9') {
            if (n > (INT64_MAX - 9) / 10)
                return KZ_EINVAL;
            n = n * 10 + (*s++ - '0');
        }
        const char *u = s;
        while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
            s++;
        int64_t unit = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strlen(units[i].name) == (size_t)(s - u) &&
                strncmp(units[i].name, u, (size_t)(s - u)) == 0)
                unit = units[i].ms;
        if (unit == 0 || (n != 0 && n > INT64_MAX / unit) || total > INT64_MAX - n * unit)
            return KZ_EINVAL;
        total += n * unit;
    }
    *out = total;
    return KZ_OK;
}

/* ---- host slots: log, clock, events, shop ----------------------------- */

KZ_TEST_FN void kz_test_h_log_(int level, const char *msg)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_grow_((void **)&s->logs, &s->caplogs, s->nlogs, sizeof *s->logs);
    s->logs[s->nlogs].level = level;
    s->logs[s->nlogs].msg = kz_test_dup_(msg ? msg : "");
    s->nlogs++;
    if (getenv("KZ_TEST_VERBOSE") != NULL)
        fprintf(stderr, "kz_test log level=%d msg=\"%s\"\n", level, msg ? msg : "");
}

KZ_TEST_FN int64_t kz_test_h_now_ms_(void)
{
    return kz_test_s_.now;
}

KZ_TEST_FN const char *kz_test_h_event_topic_(const kz_event *ev)
{
    return ev ? ev->topic : NULL;
}
KZ_TEST_FN const char *kz_test_h_event_shop_(const kz_event *ev)
{
    return ev ? ev->shop : NULL;
}
KZ_TEST_FN const char *kz_test_h_event_user_(const kz_event *ev)
{
    return ev ? ev->user : NULL;
}
KZ_TEST_FN const char *kz_test_h_event_id_(const kz_event *ev)
{
    return ev ? ev->id : NULL;
}
KZ_TEST_FN int64_t kz_test_h_event_time_ms_(const kz_event *ev)
{
    return ev ? ev->time_ms : 0;
}
KZ_TEST_FN const char *kz_test_h_event_payload_(const kz_event *ev, size_t *len)
{
    if (len != NULL)
        *len = ev ? ev->payload_len : 0;
    return ev ? ev->payload : NULL;
}
KZ_TEST_FN uint32_t kz_test_h_event_attempt_(const kz_event *ev)
{
    return ev ? ev->attempt : 0;
}

KZ_TEST_FN int kz_test_ctx_live_(const kz_ctx *ctx)
{
    return ctx != NULL && ctx == kz_test_s_.live_ctx;
}

KZ_TEST_FN int kz_test_injected_(int slot)
{
    int rc = kz_test_s_.fail[slot];
    kz_test_s_.fail[slot] = 0;
    return rc;
}

KZ_TEST_FN kz_shop *kz_test_h_ctx_shop_(kz_ctx *ctx)
{
    return kz_test_ctx_live_(ctx) ? &kz_test_s_.shop : NULL;
}
KZ_TEST_FN const char *kz_test_h_shop_id_(const kz_shop *shop)
{
    return shop ? shop->id : NULL;
}
KZ_TEST_FN const char *kz_test_h_shop_timezone_(const kz_shop *shop)
{
    return shop ? shop->timezone : NULL;
}

KZ_TEST_FN kz_event *kz_test_event_new_(const char *topic, const char *shop, const char *user,
                                        const char *id, const char *payload, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_init_();
    kz_event *ev = (kz_event *)kz_test_alloc_(sizeof *ev);
    ev->topic = kz_test_dup_(topic);
    ev->shop = kz_test_dup_(shop ? shop : s->shop.id);
    ev->user = kz_test_dup_(user);
    if (id != NULL) {
        ev->id = kz_test_dup_(id);
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "ev-%lu", ++s->event_seq);
        ev->id = kz_test_dup_(buf);
    }
    if (payload == NULL || len == 0) {
        payload = "{}";
        len = 2;
    }
    ev->payload = kz_test_dupn_(payload, len);
    ev->payload_len = len;
    ev->time_ms = s->now;
    ev->attempt = 1;
    ev->next = s->events;
    s->events = ev;
    return ev;
}

/* Records a publish of the running handler (checked by the caller). */
KZ_TEST_FN void kz_test_record_(const char *topic, const char *user, const char *json, size_t len);

KZ_TEST_FN int kz_test_h_publish_(kz_ctx *ctx, const char *topic, const char *user,
                                  const char *json, size_t len)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (topic == NULL)
        return KZ_EINVAL;
    if (json == NULL)
        len = 0; /* "{}", as the host does */
    if (strlen(topic) > KZ_TOPIC_MAX || len > KZ_PAYLOAD_MAX)
        return KZ_ETOOBIG;
    if (!kz_test_topic_valid_(topic, strlen(topic)))
        return KZ_EINVAL;
    if (len != 0 && !kz_test_json_valid(json, len))
        return KZ_EINVAL;
    int rc = kz_test_injected_(KZ_TEST_FAIL_PUBLISH);
    if (rc != 0)
        return rc;
    kz_test_record_(topic, user, json, len);
    return KZ_OK;
}

KZ_TEST_FN void kz_test_record_(const char *topic, const char *user, const char *json, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    char id[KZ_KEY_MAX + 300];
    snprintf(id, sizeof id, "%s/%s/%u", s->cur_event ? s->cur_event->id : "test",
             s->desc.name ? s->desc.name : "?", ++s->npub_in_call);
    kz_event *ev = kz_test_event_new_(topic, NULL, user, id, json, len);
    kz_test_grow_((void **)&s->pub, &s->cappub, s->npub, sizeof *s->pub);
    s->pub[s->npub++] = ev;
}

KZ_TEST_FN int kz_test_h_subscribe_(kz_shop *shop, const char *pattern)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (shop != &s->shop || s->phase != 1)
        return KZ_ESTATE;
    if (!kz_test_pattern_valid_(pattern))
        return KZ_EINVAL;
    int rc = kz_test_injected_(KZ_TEST_FAIL_SUBSCRIBE);
    if (rc != 0)
        return rc;
    kz_test_grow_((void **)&s->subs, &s->capsubs, s->nsubs, sizeof *s->subs);
    s->subs[s->nsubs++] = kz_test_dup_(pattern);
    return KZ_OK;
}

/* ---- host slots: key/value -------------------------------------------- */

KZ_TEST_FN int kz_test_key_check_(const char *key)
{
    if (key == NULL || *key == '\0')
        return KZ_EINVAL;
    if (strlen(key) > KZ_KEY_MAX)
        return KZ_ETOOBIG;
    return KZ_OK;
}

KZ_TEST_FN kz_test_kv_ *kz_test_kv_find_(const char *key)
{
    for (size_t i = 0; i < kz_test_s_.nkv; i++)
        if (strcmp(kz_test_s_.kv[i].key, key) == 0)
            return &kz_test_s_.kv[i];
    return NULL;
}

KZ_TEST_FN void kz_test_kv_set_(const char *key, const void *val, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_kv_ *e = kz_test_kv_find_(key);
    if (e == NULL) {
        kz_test_grow_((void **)&s->kv, &s->capkv, s->nkv, sizeof *s->kv);
        e = &s->kv[s->nkv++];
        e->key = kz_test_dup_(key);
    } else {
        free(e->val);
    }
    e->val = kz_test_dupn_(val, len);
    e->len = len;
}

KZ_TEST_FN void kz_test_kv_free_all_(kz_test_kv_ *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].val);
    }
    free(kv);
}

KZ_TEST_FN int kz_test_h_kv_get_(kz_ctx *ctx, const char *key, const void **val, size_t *len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_key_check_(key);
    if (rc != 0)
        return rc;
    if (val == NULL)
        return KZ_EINVAL;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_KV_GET)) != 0)
        return rc;
    kz_test_kv_ *e = kz_test_kv_find_(key);
    if (e == NULL)
        return KZ_ENOTFOUND;
    /* A copy that lives until the handler returns, like the host's. */
    kz_test_grow_((void **)&s->getbufs, &s->capgetbufs, s->ngetbufs, sizeof *s->getbufs);
    char *copy = kz_test_dupn_(e->val, e->len);
    s->getbufs[s->ngetbufs++] = copy;
    *val = copy;
    if (len != NULL)
        *len = e->len;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_kv_put_(kz_ctx *ctx, const char *key, const void *val, size_t len)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_key_check_(key);
    if (rc != 0)
        return rc;
    if (val == NULL && len != 0)
        return KZ_EINVAL;
    if (len > KZ_VALUE_MAX)
        return KZ_ETOOBIG;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_KV_PUT)) != 0)
        return rc;
    kz_test_kv_set_(key, val, len);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_kv_del_(kz_ctx *ctx, const char *key)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_key_check_(key);
    if (rc != 0)
        return rc;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_KV_DEL)) != 0)
        return rc;
    kz_test_kv_ *e = kz_test_kv_find_(key);
    if (e == NULL)
        return KZ_ENOTFOUND;
    free(e->key);
    free(e->val);
    *e = s->kv[--s->nkv];
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_kv_cas_(kz_ctx *ctx, const char *key, const void *expect,
                                 size_t expect_len, const void *val, size_t len)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_key_check_(key);
    if (rc != 0)
        return rc;
    if ((val == NULL && len != 0) || (expect == NULL && expect_len != 0))
        return KZ_EINVAL;
    if (len > KZ_VALUE_MAX)
        return KZ_ETOOBIG;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_KV_CAS)) != 0)
        return rc;
    kz_test_kv_ *e = kz_test_kv_find_(key);
    if (expect == NULL) {
        if (e != NULL)
            return KZ_ECONFLICT;
    } else if (e == NULL || e->len != expect_len ||
               (expect_len != 0 && memcmp(e->val, expect, expect_len) != 0)) {
        return KZ_ECONFLICT;
    }
    kz_test_kv_set_(key, val, len);
    return KZ_OK;
}

/* Counters are decimal text: optional '-', digits, nothing else. */
KZ_TEST_FN int kz_test_parse_counter_(const char *v, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && v[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len)
        return KZ_ETYPE;
    uint64_t n = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return KZ_ETYPE;
        unsigned d = (unsigned)(v[i] - '0');
        if (n > (lim - d) / 10)
            return KZ_ETYPE;
        n = n * 10 + d;
    }
    *out = neg ? (n == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)n) : (int64_t)n;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_kv_incr_(kz_ctx *ctx, const char *key, int64_t delta, int64_t *result)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_key_check_(key);
    if (rc != 0)
        return rc;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_KV_INCR)) != 0)
        return rc;
    kz_test_kv_ *e = kz_test_kv_find_(key);
    int64_t cur = 0;
    if (e != NULL && (rc = kz_test_parse_counter_(e->val, e->len, &cur)) != 0)
        return rc;
    if ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta))
        return KZ_EINVAL; /* the counter would overflow int64 (as the host's store) */
    cur += delta;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)cur);
    kz_test_kv_set_(key, buf, (size_t)n);
    if (result != NULL)
        *result = cur;
    return KZ_OK;
}

/* ---- host slots: LINE sends (ABI 1.1) --------------------------------- */

/* Elements of json[0..len) when it is exactly a JSON array of objects
 * (surrounding whitespace ok); -1 otherwise. */
KZ_TEST_FN int kz_test_json_objects_(const char *json, size_t len)
{
    kz_test_json_ j = {json, json + len, 0};
    int n = 0;
    kz_test_json_ws_(&j);
    if (j.p >= j.end || *j.p != '[')
        return -1;
    j.p++;
    kz_test_json_ws_(&j);
    if (j.p < j.end && *j.p == ']') {
        j.p++;
    } else {
        for (;;) {
            kz_test_json_ws_(&j);
            if (j.p >= j.end || *j.p != '{' || !kz_test_json_value_(&j))
                return -1;
            if (n < INT_MAX)
                n++;
            kz_test_json_ws_(&j);
            if (j.p >= j.end)
                return -1;
            if (*j.p == ',') {
                j.p++;
                continue;
            }
            if (*j.p++ != ']')
                return -1;
            break;
        }
    }
    kz_test_json_ws_(&j);
    return j.p == j.end ? n : -1;
}

/* A LINE user id ("U" + 32 hex digits); any: also a group ("C…") or room
 * ("R…") id. As the host checks push and multicast recipients. */
KZ_TEST_FN int kz_test_line_id_ok_(const char *id, int any)
{
    if (id == NULL || strlen(id) != 33 ||
        !(id[0] == 'U' || (any && (id[0] == 'C' || id[0] == 'R'))))
        return 0;
    for (int i = 1; i < 33; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* Logs why a send is refused, in the host's words, and returns KZ_EINVAL. */
KZ_TEST_FN int kz_test_send_refused_(const char *fmt, ...) KZ_PRINTF(1, 2);
KZ_TEST_FN int kz_test_send_refused_(const char *fmt, ...)
{
    char why[1024], line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "kz_line_send refused (event %s): %s",
             kz_test_s_.cur_event ? kz_test_s_.cur_event->id : "?", why);
    kz_test_h_log_(KZ_LOG_ERROR, line);
    return KZ_EINVAL;
}

/* The request's shape: what the host refuses before looking at LINE's
 * message rules. *nmsg gets the number of messages. */
KZ_TEST_FN int kz_test_send_check_(const kz_line_send *r, size_t len, int *nmsg)
{
    if (r->tag != NULL && strlen(r->tag) > 100)
        return kz_test_send_refused_("tag longer than 100 bytes");
    switch (r->kind) {
    case KZ_LINE_REPLY:
        if (r->reply_token == NULL || r->reply_token[0] == '\0')
            return kz_test_send_refused_("reply without a reply token");
        break;
    case KZ_LINE_PUSH:
        if (!kz_test_line_id_ok_(r->to, 1))
            return kz_test_send_refused_("push to '%s': not a user, group or room id",
                                         r->to ? r->to : "(null)");
        break;
    case KZ_LINE_MULTICAST:
        if (r->nto == 0 || r->to_list == NULL)
            return kz_test_send_refused_("multicast to nobody");
        for (size_t i = 0; i < r->nto; i++)
            if (!kz_test_line_id_ok_(r->to_list[i], 0))
                return kz_test_send_refused_("multicast to '%s': not a user id",
                                             r->to_list[i] ? r->to_list[i] : "(null)");
        break;
    case KZ_LINE_BROADCAST:
        break;
    case KZ_LINE_NARROWCAST:
        if (r->narrowcast != NULL && (r->narrowcast[strspn(r->narrowcast, " \t\r\n")] != '{' ||
                                      !kz_test_json_valid(r->narrowcast, strlen(r->narrowcast))))
            return kz_test_send_refused_("narrowcast: not a JSON object: %s", r->narrowcast);
        break;
    default:
        return kz_test_send_refused_("unknown kind %d", r->kind);
    }
    if (r->promotional != 0 && r->promotional != 1)
        return kz_test_send_refused_("promotional must be 0 or 1, got %d", r->promotional);
    if (r->over_cap != KZ_OVER_CAP_DEFER && r->over_cap != KZ_OVER_CAP_DROP)
        return kz_test_send_refused_("over_cap must be KZ_OVER_CAP_DEFER or KZ_OVER_CAP_DROP, "
                                     "got %d",
                                     r->over_cap);
    if (r->promotional && r->kind != KZ_LINE_PUSH && r->kind != KZ_LINE_MULTICAST)
        return kz_test_send_refused_("promotional applies to push and multicast only");
    if (r->promotional && r->kind == KZ_LINE_PUSH && r->to[0] != 'U')
        return kz_test_send_refused_("promotional push to '%s': not a user id", r->to);
    int n = kz_test_json_objects_(r->messages, len);
    if (n < 0)
        return kz_test_send_refused_("messages refused: not a JSON array of message objects");
    if (n < 1 || n > 5)
        return kz_test_send_refused_("messages refused: %d messages (LINE takes 1 to 5)", n);
    *nmsg = n;
    return KZ_OK;
}

KZ_TEST_FN const char *kz_test_sent_keep_(kz_test_sent_ *rec, int slot, const char *str)
{
    if (str == NULL)
        return NULL;
    rec->strs[slot] = kz_test_dup_(str);
    return rec->strs[slot];
}

KZ_TEST_FN void kz_test_sent_free_(kz_test_sent_ *rec)
{
    if (rec == NULL)
        return;
    for (size_t i = 0; i < sizeof rec->strs / sizeof rec->strs[0]; i++)
        free(rec->strs[i]);
    for (size_t i = 0; rec->to_list != NULL && i < rec->v.nto; i++)
        free(rec->to_list[i]);
    free(rec->to_list);
    free(rec);
}

/* The host's line_send: checks the request (KZ_EINVAL, with the reason
 * logged as the host does), then records a copy as a send of the running
 * handler, discarded if the handler fails. A standby event sends nothing:
 * 0 and *outbox_id = 0. */
KZ_TEST_FN int kz_test_h_line_send_(kz_ctx *ctx, const kz_line_send *req, int64_t *outbox_id)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (outbox_id != NULL)
        *outbox_id = 0;
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (req == NULL)
        return kz_test_send_refused_("no request");
    if (req->struct_size < offsetof(kz_line_send, kind) + sizeof req->kind)
        return kz_test_send_refused_("struct_size %u is too small", (unsigned)req->struct_size);
    /* Like the host: an older plugin's shorter struct reads as zeros past
     * its end, and nothing past struct_size is read. */
    kz_line_send r;
    memset(&r, 0, sizeof r);
    memcpy(&r, req, req->struct_size < sizeof r ? req->struct_size : sizeof r);
    if (r.messages == NULL)
        return kz_test_send_refused_("no messages");
    size_t len = r.messages_len ? r.messages_len : strlen(r.messages);
    int nmsg = 0;
    int rc = kz_test_send_check_(&r, len, &nmsg);
    if (rc != 0)
        return rc;
    const kz_event *ev = s->cur_event;
    if (ev != NULL && strstr(ev->payload, "\"mode\":\"standby\"") != NULL) {
        char line[KZ_KEY_MAX + 100];
        snprintf(line, sizeof line, "kz_line_send: event %s arrived in standby mode: not sent",
                 ev->id);
        kz_test_h_log_(KZ_LOG_INFO, line);
        return KZ_OK;
    }
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_LINE_SEND)) != 0)
        return rc;

    kz_test_sent_ *rec = (kz_test_sent_ *)kz_test_alloc_(sizeof *rec);
    kz_test_line_sent *v = &rec->v;
    v->kind = r.kind;
    v->reply_token = kz_test_sent_keep_(rec, 0, r.reply_token);
    v->to = kz_test_sent_keep_(rec, 1, r.to);
    if (r.kind == KZ_LINE_MULTICAST) {
        rec->to_list = (char **)kz_test_alloc_(r.nto * sizeof *rec->to_list);
        for (size_t i = 0; i < r.nto; i++)
            rec->to_list[i] = kz_test_dup_(r.to_list[i]);
        v->to_list = (const char *const *)rec->to_list;
        v->nto = r.nto;
    }
    rec->strs[2] = kz_test_dupn_(r.messages, len);
    v->messages = rec->strs[2];
    v->messages_len = len;
    v->nmessages = nmsg;
    v->narrowcast = kz_test_sent_keep_(rec, 3, r.narrowcast);
    v->notification_disabled = r.notification_disabled;
    v->fallback_to_push = r.fallback_to_push;
    v->tag = kz_test_sent_keep_(rec, 4, r.tag);
    v->promotional = r.promotional;
    v->priority = r.priority;
    v->over_cap = r.over_cap;
    v->user = kz_test_sent_keep_(rec, 5, ev ? ev->user : NULL);
    v->event_id = kz_test_sent_keep_(rec, 6, ev ? ev->id : NULL);
    v->rows = r.kind == KZ_LINE_MULTICAST ? (unsigned)((r.nto + 499) / 500) : 1u;
    v->outbox_id = s->outbox_seq + 1;
    s->outbox_seq += v->rows;
    kz_test_grow_((void **)&s->sent, &s->capsent, s->nsent, sizeof *s->sent);
    s->sent[s->nsent++] = rec;
    if (outbox_id != NULL)
        *outbox_id = v->outbox_id;
    return KZ_OK;
}

/* ---- host slots: other API calls (ABI 1.2) ---------------------------- */

/* Logs why a call is refused, in the host's words, and returns rc. */
KZ_TEST_FN int kz_test_call_refused_(int rc, const char *fmt, ...) KZ_PRINTF(2, 3);
KZ_TEST_FN int kz_test_call_refused_(int rc, const char *fmt, ...)
{
    char why[1024], line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "kz_line_call refused (event %s): %s",
             kz_test_s_.cur_event ? kz_test_s_.cur_event->id : "?", why);
    kz_test_h_log_(KZ_LOG_ERROR, line);
    return rc;
}

/* The path rules of the host (core/apicall.c). */
KZ_TEST_FN int kz_test_call_path_(const char *p)
{
    if (p == NULL || (strncmp(p, "/v2/bot/", 8) != 0 && strncmp(p, "/bot/", 5) != 0))
        return kz_test_call_refused_(KZ_EINVAL, "path '%s' does not start with /v2/bot/ or /bot/",
                                     p ? p : "(null)");
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f ||
            strchr("\"#<>\\^`{|}", *c) != NULL)
            return kz_test_call_refused_(KZ_EINVAL, "path '%.200s' is not a clean URL path", p);
    if (strlen(p) > 2000 || strstr(p, "..") || strstr(p, "//"))
        return kz_test_call_refused_(KZ_EINVAL, "path '%.200s' is not a clean URL path", p);
    static const char *const sends[] = {"reply", "push", "multicast", "narrowcast", "broadcast"};
    if (strncmp(p, "/v2/bot/message/", 16) == 0)
        for (size_t i = 0; i < 5; i++)
            if (strncmp(p + 16, sends[i], strlen(sends[i])) == 0 &&
                (p[16 + strlen(sends[i])] == '\0' || p[16 + strlen(sends[i])] == '?'))
                return kz_test_call_refused_(KZ_EINVAL, "%s sends messages: use kz_line_send", p);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_call_check_(const kz_line_call *r, size_t len)
{
    const char *m = r->method;
    if (m == NULL ||
        (strcmp(m, "GET") && strcmp(m, "POST") && strcmp(m, "PUT") && strcmp(m, "DELETE")))
        return kz_test_call_refused_(KZ_EINVAL, "method '%s' is not GET, POST, PUT or DELETE",
                                     m ? m : "(null)");
    int rc = kz_test_call_path_(r->path);
    if (rc != 0)
        return rc;
    if (len > 0 && strcmp(m, "GET") == 0)
        return kz_test_call_refused_(KZ_EINVAL, "GET %s with a body", r->path);
    if (len > KZ_PAYLOAD_MAX)
        return kz_test_call_refused_(KZ_ETOOBIG, "body of %s over 1 MiB", r->path);
    if (r->tag != NULL && strlen(r->tag) > 100)
        return kz_test_call_refused_(KZ_EINVAL, "tag longer than 100 bytes");
    if (r->user != NULL && !kz_test_line_id_ok_(r->user, 1))
        return kz_test_call_refused_(KZ_EINVAL, "user '%s' is not a user, group or room id",
                                     r->user);
    int json = r->content_type == NULL || strncmp(r->content_type, "application/json", 16) == 0;
    if (r->nusers > 0 && (r->users == NULL || !json))
        return kz_test_call_refused_(KZ_EINVAL, "users need a JSON body (%s)", r->path);
    for (size_t i = 0; i < r->nusers; i++)
        if (!kz_test_line_id_ok_(r->users[i], 0))
            return kz_test_call_refused_(KZ_EINVAL, "'%s' in users is not a user id",
                                         r->users[i] ? r->users[i] : "(null)");
    if (json && len > 0 &&
        (!kz_test_json_valid((const char *)r->body, len) ||
         (r->nusers > 0 &&
          ((const char *)r->body)[strspn((const char *)r->body, " \t\r\n")] != '{')))
        return kz_test_call_refused_(KZ_EINVAL, "body of %s is not JSON", r->path);
    return KZ_OK;
}

KZ_TEST_FN void kz_test_called_free_(kz_test_called_ *rec)
{
    if (rec == NULL)
        return;
    for (size_t i = 0; i < sizeof rec->strs / sizeof rec->strs[0]; i++)
        free(rec->strs[i]);
    for (size_t i = 0; rec->users != NULL && i < rec->v.nusers; i++)
        free(rec->users[i]);
    free(rec->users);
    free(rec);
}

KZ_TEST_FN const char *kz_test_called_keep_(kz_test_called_ *rec, int slot, const char *str)
{
    if (str == NULL)
        return NULL;
    rec->strs[slot] = kz_test_dup_(str);
    return rec->strs[slot];
}

/* Records a checked call as one of the running handler's. */
KZ_TEST_FN int64_t kz_test_called_add_(const kz_line_call *r, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    const kz_event *ev = s->cur_event;
    kz_test_called_ *rec = (kz_test_called_ *)kz_test_alloc_(sizeof *rec);
    kz_test_line_called *v = &rec->v;
    v->method = kz_test_called_keep_(rec, 0, r->method);
    v->path = kz_test_called_keep_(rec, 1, r->path);
    rec->strs[2] = kz_test_dupn_(len ? (const char *)r->body : "", len);
    v->body = rec->strs[2];
    v->body_len = len;
    v->content_type = kz_test_called_keep_(rec, 3, r->content_type);
    v->data_api = r->data_api;
    v->user = kz_test_called_keep_(rec, 4, r->user);
    v->tag = kz_test_called_keep_(rec, 5, r->tag);
    v->event_id = kz_test_called_keep_(rec, 6, ev ? ev->id : NULL);
    if (r->nusers > 0) {
        rec->users = (char **)kz_test_alloc_(r->nusers * sizeof *rec->users);
        for (size_t i = 0; i < r->nusers; i++)
            rec->users[i] = kz_test_dup_(r->users[i]);
        v->users = (const char *const *)rec->users;
        v->nusers = r->nusers;
    }
    v->rows = r->nusers > 0 ? (unsigned)((r->nusers + 499) / 500) : 1u;
    v->outbox_id = s->outbox_seq + 1;
    s->outbox_seq += v->rows;
    kz_test_grow_((void **)&s->called, &s->capcalled, s->ncalled, sizeof *s->called);
    s->called[s->ncalled++] = rec;
    return v->outbox_id;
}

/* The host's line_call: checks the request as core/apicall.c does, then
 * records a copy, discarded if the handler fails. Standby: 0, no call. */
KZ_TEST_FN int kz_test_h_line_call_(kz_ctx *ctx, const kz_line_call *req, int64_t *outbox_id)
{
    if (outbox_id != NULL)
        *outbox_id = 0;
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (req == NULL || req->struct_size < offsetof(kz_line_call, path) + sizeof req->path)
        return KZ_EINVAL;
    kz_line_call r;
    memset(&r, 0, sizeof r);
    memcpy(&r, req, req->struct_size < sizeof r ? req->struct_size : sizeof r);
    size_t len = r.body == NULL ? 0 : r.body_len ? r.body_len : strlen((const char *)r.body);
    int rc = kz_test_call_check_(&r, len);
    if (rc != 0)
        return rc;
    const kz_event *ev = kz_test_s_.cur_event;
    if (ev != NULL && strstr(ev->payload, "\"mode\":\"standby\"") != NULL)
        return KZ_OK;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_LINE_CALL)) != 0)
        return rc;
    int64_t id = kz_test_called_add_(&r, len);
    if (outbox_id != NULL)
        *outbox_id = id;
    return KZ_OK;
}

/* ---- host slots: settings --------------------------------------------- */

KZ_TEST_FN const kz_setting *kz_test_h_setting_child_(const kz_setting *s, const char *key)
{
    if (s == NULL || key == NULL || s->type != KZ_SETTING_GROUP)
        return NULL;
    for (size_t i = 0; i < s->nkids; i++)
        if (strcmp(s->kids[i]->name, key) == 0)
            return s->kids[i];
    return NULL;
}
KZ_TEST_FN const kz_setting *kz_test_h_setting_elem_(const kz_setting *s, size_t i)
{
    if (s == NULL || (s->type != KZ_SETTING_GROUP && s->type != KZ_SETTING_LIST) || i >= s->nkids)
        return NULL;
    return s->kids[i];
}
KZ_TEST_FN size_t kz_test_h_setting_count_(const kz_setting *s)
{
    if (s == NULL || (s->type != KZ_SETTING_GROUP && s->type != KZ_SETTING_LIST))
        return 0;
    return s->nkids;
}
KZ_TEST_FN int kz_test_h_setting_type_(const kz_setting *s)
{
    return s ? s->type : KZ_SETTING_NONE;
}
KZ_TEST_FN const char *kz_test_h_setting_name_(const kz_setting *s)
{
    return s ? s->name : NULL;
}
KZ_TEST_FN int kz_test_h_setting_line_(const kz_setting *s)
{
    return s ? s->line : 0;
}
KZ_TEST_FN int kz_test_h_setting_string_(const kz_setting *s, const char **out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type != KZ_SETTING_STRING)
        return KZ_ETYPE;
    *out = s->str;
    return KZ_OK;
}
KZ_TEST_FN int kz_test_h_setting_int_(const kz_setting *s, int64_t *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type != KZ_SETTING_INT)
        return KZ_ETYPE;
    *out = s->i;
    return KZ_OK;
}
KZ_TEST_FN int kz_test_h_setting_float_(const kz_setting *s, double *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type == KZ_SETTING_INT)
        *out = (double)s->i;
    else if (s->type == KZ_SETTING_FLOAT)
        *out = s->f;
    else
        return KZ_ETYPE;
    return KZ_OK;
}
KZ_TEST_FN int kz_test_h_setting_bool_(const kz_setting *s, int *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type != KZ_SETTING_BOOL)
        return KZ_ETYPE;
    *out = s->b;
    return KZ_OK;
}
/* A string node parsed as a duration; KZ_EINVAL when it does not parse. */
KZ_TEST_FN int kz_test_h_setting_duration_ms_(const kz_setting *s, int64_t *out)
{
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type != KZ_SETTING_STRING)
        return KZ_ETYPE;
    return kz_test_parse_duration_(s->str, out);
}

/* "list[2].key" of s below its root; "" for the root. */
KZ_TEST_FN void kz_test_setting_path_(const kz_setting *s, char *buf, size_t len)
{
    if (s == NULL || s->parent == NULL) {
        buf[0] = '\0';
        return;
    }
    kz_test_setting_path_(s->parent, buf, len);
    size_t n = strlen(buf);
    if (s->parent->type == KZ_SETTING_LIST) {
        size_t i = 0;
        while (i < s->parent->nkids && s->parent->kids[i] != s)
            i++;
        snprintf(buf + n, len - n, "[%zu]", i);
    } else {
        snprintf(buf + n, len - n, "%s%s", n ? "." : "", s->name ? s->name : "?");
    }
}

KZ_TEST_FN int kz_test_setting_eline_(const kz_setting *s)
{
    while (s != NULL && s->line == 0)
        s = s->parent;
    return s ? s->line : 0;
}

KZ_TEST_FN void kz_test_setting_fmt_(const kz_setting *s, char *err, size_t errlen, const char *msg)
{
    char path[1024];
    kz_test_setting_path_(s, path, sizeof path);
    snprintf(err, errlen, "%s:%d: shop '%s': plugin '%s': %s%s%s", KZ_TEST_CONF_FILE,
             kz_test_setting_eline_(s), kz_test_s_.shop.id,
             kz_test_s_.desc.name ? kz_test_s_.desc.name : "?", path, path[0] ? ": " : "",
             msg ? msg : "");
}

KZ_TEST_FN int kz_test_h_setting_error_(const kz_setting *s, char *err, size_t errlen,
                                        const char *msg)
{
    if (err != NULL && errlen > 0)
        kz_test_setting_fmt_(s, err, errlen, msg);
    return KZ_EINVAL;
}

/* ---- host slots: plugin HTTP routes (ABI 1.2) ------------------------- */

/* The host's rules for a registered path: relative, at most 256 bytes, no
 * empty, "." or ".." segment, no control byte, '?' or '#', a star only as
 * the whole last segment. star: also accept the star (registration). */
KZ_TEST_FN int kz_test_route_path_ok_(const char *path, int star)
{
    if (path == NULL || path[0] == '/' || strlen(path) > 256)
        return 0;
    for (const char *seg = path; path[0] != '\0';) {
        size_t n = strcspn(seg, "/");
        int last = seg[n] == '\0';
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        for (size_t i = 0; star && i < n; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < 0x20 || c == 0x7f || c == '?' || c == '#' || (c == '*' && !(last && n == 1)))
                return 0;
        }
        if (last)
            break;
        seg += n + 1;
    }
    return 1;
}

KZ_TEST_FN int kz_test_same_method_(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

KZ_TEST_FN int kz_test_h_route_(kz_shop *shop, const char *method, const char *path, kz_route_fn fn,
                                void *arg)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (shop != &s->shop || s->phase != 1)
        return KZ_ESTATE;
    size_t mlen = method ? strlen(method) : 1;
    for (size_t i = 0; method != NULL && i < mlen; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            mlen = 0;
    if (mlen == 0 || mlen > 16 || !kz_test_route_path_ok_(path, 1) || fn == NULL)
        return KZ_EINVAL;
    for (size_t i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].path, path) == 0 &&
            kz_test_same_method_(s->routes[i].method, method))
            return KZ_EEXIST;
    kz_test_grow_((void **)&s->routes, &s->caproutes, s->nroutes, sizeof *s->routes);
    kz_test_route_ *r = &s->routes[s->nroutes++];
    r->method = kz_test_dup_(method);
    r->path = kz_test_dup_(path);
    r->fn = fn;
    r->arg = arg;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_http_live_(const kz_http *req)
{
    return req != NULL && req->live;
}
KZ_TEST_FN kz_shop *kz_test_h_http_shop_(kz_http *req)
{
    return kz_test_http_live_(req) ? &kz_test_s_.shop : NULL;
}
KZ_TEST_FN const char *kz_test_h_http_method_(const kz_http *req)
{
    return kz_test_http_live_(req) ? req->method : NULL;
}
KZ_TEST_FN const char *kz_test_h_http_path_(const kz_http *req)
{
    return kz_test_http_live_(req) ? req->path : NULL;
}

KZ_TEST_FN int kz_test_hex_(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* URL-decodes v[0, n) as libmicrohttpd does: %XX and '+' for a space. */
KZ_TEST_FN char *kz_test_url_decode_(const char *v, size_t n)
{
    char *out = (char *)kz_test_alloc_(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '%' && i + 2 < n && kz_test_hex_(v[i + 1]) >= 0 &&
            kz_test_hex_(v[i + 2]) >= 0) {
            out[o++] = (char)(kz_test_hex_(v[i + 1]) * 16 + kz_test_hex_(v[i + 2]));
            i += 2;
        } else {
            out[o++] = v[i] == '+' ? ' ' : v[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* A query argument, URL-decoded ("?flag" without '=' reads ""); the name
 * is compared as written. */
KZ_TEST_FN const char *kz_test_h_http_query_(const kz_http *req, const char *name)
{
    if (!kz_test_http_live_(req) || name == NULL || req->query == NULL)
        return NULL;
    size_t nlen = strlen(name);
    for (const char *p = req->query; *p != '\0';) {
        size_t n = strcspn(p, "&");
        const char *eq = (const char *)memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        if (klen == nlen && strncmp(p, name, nlen) == 0) {
            kz_http *h = (kz_http *)req; /* results live as long as the request */
            kz_test_grow_((void **)&h->decoded, &h->capdecoded, h->ndecoded, sizeof *h->decoded);
            h->decoded[h->ndecoded] =
                kz_test_url_decode_(eq ? eq + 1 : p + n, eq ? n - klen - 1 : 0);
            return h->decoded[h->ndecoded++];
        }
        p += n + (p[n] == '&');
    }
    return NULL;
}

KZ_TEST_FN int kz_test_lower_(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* The value of `name` in a "Name: value" line, any case; NULL if another. */
KZ_TEST_FN const char *kz_test_header_of_(const char *line, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\0' ||
            kz_test_lower_((unsigned char)line[i]) != kz_test_lower_((unsigned char)name[i]))
            return NULL;
    if (line[n] != ':')
        return NULL;
    line += n + 1;
    while (*line == ' ' || *line == '\t')
        line++;
    return line;
}

KZ_TEST_FN const char *kz_test_h_http_header_(const kz_http *req, const char *name)
{
    if (!kz_test_http_live_(req) || name == NULL)
        return NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *v = kz_test_header_of_(req->headers[i], name);
        if (v != NULL)
            return v;
    }
    return NULL;
}

KZ_TEST_FN const void *kz_test_h_http_body_(const kz_http *req, size_t *len)
{
    int live = kz_test_http_live_(req);
    if (len != NULL)
        *len = live ? req->body_len : 0;
    return live ? req->body : NULL;
}

/* Every publish of the request is checked as kz_publish's; it is recorded
 * once the route answered (kz_test_http). */
KZ_TEST_FN int kz_test_h_http_publish_(kz_http *req, const char *topic, const char *user,
                                       const char *json, size_t len, const char *dedupe_key)
{
    if (!kz_test_http_live_(req))
        return KZ_ESTATE;
    if (topic == NULL || (dedupe_key != NULL && dedupe_key[0] == '\0'))
        return KZ_EINVAL;
    if (json == NULL)
        len = 0;
    if (strlen(topic) > KZ_TOPIC_MAX || len > KZ_PAYLOAD_MAX || req->nevents == 100 ||
        (dedupe_key != NULL && strlen(dedupe_key) > KZ_KEY_MAX))
        return KZ_ETOOBIG;
    if (!kz_test_topic_valid_(topic, strlen(topic)) || (len != 0 && !kz_test_json_valid(json, len)))
        return KZ_EINVAL;
    char id[KZ_KEY_MAX + 16];
    if (dedupe_key != NULL)
        snprintf(id, sizeof id, "dedupe:%s", dedupe_key);
    kz_event *ev = kz_test_event_new_(topic, NULL, user, dedupe_key ? id : NULL, json, len);
    kz_test_grow_((void **)&req->events, &req->capevents, req->nevents, sizeof *req->events);
    req->events[req->nevents++] = ev;
    return KZ_OK;
}

/* No control byte but tab: a value cannot start another header. */
KZ_TEST_FN int kz_test_header_value_ok_(const char *v)
{
    for (; *v != '\0'; v++)
        if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f)
            return 0;
    return 1;
}

KZ_TEST_FN int kz_test_token_ok_(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!(kz_test_word_char_((unsigned char)*s) || strchr("!#$%&'*+.^`|~", *s) != NULL))
            return 0;
    return 1;
}

KZ_TEST_FN void kz_test_resp_header_add_(kz_http *req, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    kz_test_grow_((void **)&req->resp_headers, &req->capresp, req->nresp,
                  sizeof *req->resp_headers);
    req->resp_headers[req->nresp] = (char *)kz_test_alloc_(n);
    snprintf(req->resp_headers[req->nresp++], n, "%s: %s", name, value);
}

KZ_TEST_FN int kz_test_h_http_header_set_(kz_http *req, const char *name, const char *value)
{
    if (!kz_test_http_live_(req))
        return KZ_ESTATE;
    if (!kz_test_token_ok_(name) || value == NULL || !kz_test_header_value_ok_(value) ||
        kz_test_header_of_("content-type:", name) || kz_test_header_of_("content-length:", name) ||
        kz_test_header_of_("transfer-encoding:", name))
        return KZ_EINVAL;
    if (req->nresp == 32 || strlen(value) > 8192)
        return KZ_ETOOBIG;
    kz_test_resp_header_add_(req, name, value);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_http_respond_(kz_http *req, int status, const char *content_type,
                                       const void *body, size_t len)
{
    if (!kz_test_http_live_(req) || req->status != 0)
        return KZ_ESTATE;
    if (status < 200 || status > 599 || (body == NULL && len > 0) ||
        (content_type != NULL &&
         (*content_type == '\0' || !kz_test_header_value_ok_(content_type))))
        return KZ_EINVAL;
    if (len > 8388608)
        return KZ_ETOOBIG;
    req->content_type = kz_test_dup_(content_type ? content_type : "text/plain");
    req->resp = kz_test_dupn_(body ? body : "", len);
    req->resp_len = len;
    req->status = status;
    return KZ_OK;
}

/* ---- host slots: the friend registry (ABI 1.3) -------------------------- */

/* A growing text buffer for the JSON the fake builds. */
typedef struct kz_test_buf_ {
    char *p;
    size_t n, cap;
} kz_test_buf_;

KZ_TEST_FN void kz_test_buf_add_(kz_test_buf_ *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = (char *)realloc(b->p, cap);
        if (p == NULL) {
            fprintf(stderr, "kizuna/testing.h: out of memory\n");
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

KZ_TEST_FN void kz_test_buf_lit_(kz_test_buf_ *b, const char *s)
{
    kz_test_buf_add_(b, s, strlen(s));
}

/* s as a JSON string (quotes included), or null for NULL. */
KZ_TEST_FN void kz_test_buf_str_(kz_test_buf_ *b, const char *s)
{
    if (s == NULL) {
        kz_test_buf_lit_(b, "null");
        return;
    }
    kz_test_buf_lit_(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            kz_test_buf_add_(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            kz_test_buf_lit_(b, esc);
        } else {
            kz_test_buf_add_(b, (const char *)c, 1);
        }
    }
    kz_test_buf_lit_(b, "\"");
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no libc time zone
 * needed, so it works for any ms the test picks). */
KZ_TEST_FN int64_t kz_test_days_from_civil_(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* ms as "YYYY-MM-DDTHH:MM:SSZ" (JSON string), or null for 0. */
KZ_TEST_FN void kz_test_buf_time_(kz_test_buf_ *b, int64_t ms)
{
    if (ms == 0) {
        kz_test_buf_lit_(b, "null");
        return;
    }
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400;
    /* civil_from_days (H. Hinnant) */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t y = yoe + era * 400 + (m <= 2);
    char out[48];
    snprintf(out, sizeof out, "\"%04lld-%02d-%02dT%02d:%02d:%02dZ\"", (long long)y, m, d,
             (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    kz_test_buf_lit_(b, out);
}

/* Keeps b's text until the handler returns (like kv_get's values). */
KZ_TEST_FN const char *kz_test_buf_keep_(kz_test_buf_ *b, size_t *len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (b->p == NULL)
        kz_test_buf_lit_(b, "");
    kz_test_grow_((void **)&s->getbufs, &s->capgetbufs, s->ngetbufs, sizeof *s->getbufs);
    s->getbufs[s->ngetbufs++] = b->p;
    if (len != NULL)
        *len = b->n;
    return b->p;
}

/* "U" and 32 lowercase hex digits, as LINE writes user ids. */
KZ_TEST_FN int kz_test_user_ok_(const char *u)
{
    if (u == NULL || u[0] != 'U' || strlen(u) != 33)
        return 0;
    for (size_t i = 1; i < 33; i++)
        if (!((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f')))
            return 0;
    return 1;
}

/* 1..max bytes of UTF-8 without control characters (tags, member ids). */
KZ_TEST_FN int kz_test_utf8_text_ok_(const char *v, size_t max)
{
    if (v == NULL || *v == '\0' || strlen(v) > max)
        return 0;
    const unsigned char *p = (const unsigned char *)v;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0 || *p < 0x20 || *p == 0x7f || (*p >= 0xc0 && *p < 0xc2) || *p > 0xf4)
            return 0;
        for (int i = 1; i <= n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n + 1;
    }
    return 1;
}

KZ_TEST_FN kz_test_friend_ *kz_test_friend_find_(const char *user)
{
    for (size_t i = 0; user != NULL && i < kz_test_s_.nfriends; i++)
        if (strcmp(kz_test_s_.friends[i].user, user) == 0)
            return &kz_test_s_.friends[i];
    return NULL;
}

/* The friend, created (not following, nothing known) when absent. */
KZ_TEST_FN kz_test_friend_ *kz_test_friend_make_(const char *user)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_friend_ *f = kz_test_friend_find_(user);
    if (f != NULL)
        return f;
    kz_test_grow_((void **)&s->friends, &s->capfriends, s->nfriends, sizeof *s->friends);
    f = &s->friends[s->nfriends++];
    memset(f, 0, sizeof *f);
    f->user = kz_test_dup_(user);
    return f;
}

KZ_TEST_FN void kz_test_pairs_free_(kz_test_pair_ *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    free(p);
}

KZ_TEST_FN void kz_test_friends_free_(kz_test_friend_ *fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kz_test_friend_ *f = &fs[i];
        free(f->user);
        for (int k = 0; k < 4; k++)
            free(f->profile[k]);
        for (size_t k = 0; k < f->ntags; k++)
            free(f->tags[k]);
        free(f->tags);
        kz_test_pairs_free_(f->attrs, f->nattrs);
        kz_test_pairs_free_(f->links, f->nlinks);
    }
    free(fs);
}

KZ_TEST_FN kz_test_pair_ *kz_test_pairs_copy_(const kz_test_pair_ *p, size_t n)
{
    kz_test_pair_ *c = (kz_test_pair_ *)kz_test_alloc_(sizeof *c * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        c[i].name = kz_test_dup_(p[i].name);
        c[i].value = kz_test_dup_(p[i].value);
    }
    return c;
}

/* A deep copy of the registry: the snapshot a failing handler rolls back to. */
KZ_TEST_FN kz_test_friend_ *kz_test_friends_copy_(const kz_test_friend_ *fs, size_t n)
{
    kz_test_friend_ *c = (kz_test_friend_ *)kz_test_alloc_(sizeof *c * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        c[i] = fs[i];
        c[i].user = kz_test_dup_(fs[i].user);
        for (int k = 0; k < 4; k++)
            c[i].profile[k] = kz_test_dup_(fs[i].profile[k]);
        c[i].tags = (char **)kz_test_alloc_(sizeof *c[i].tags * (fs[i].ntags ? fs[i].ntags : 1));
        c[i].captags = fs[i].ntags ? fs[i].ntags : 1;
        for (size_t k = 0; k < fs[i].ntags; k++)
            c[i].tags[k] = kz_test_dup_(fs[i].tags[k]);
        c[i].attrs = kz_test_pairs_copy_(fs[i].attrs, fs[i].nattrs);
        c[i].capattrs = fs[i].nattrs ? fs[i].nattrs : 1;
        c[i].links = kz_test_pairs_copy_(fs[i].links, fs[i].nlinks);
        c[i].caplinks = fs[i].nlinks ? fs[i].nlinks : 1;
    }
    return c;
}

KZ_TEST_FN size_t kz_test_tag_index_(const kz_test_friend_ *f, const char *tag)
{
    size_t i = 0;
    while (i < f->ntags && strcmp(f->tags[i], tag) != 0)
        i++;
    return i;
}

KZ_TEST_FN kz_test_pair_ *kz_test_pair_find_(kz_test_pair_ *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return &p[i];
    return NULL;
}

/* Sets (value != NULL) or removes name in a pair list. */
KZ_TEST_FN void kz_test_pair_set_(kz_test_pair_ **p, size_t *n, size_t *cap, const char *name,
                                  const char *value)
{
    kz_test_pair_ *e = kz_test_pair_find_(*p, *n, name);
    if (e != NULL && value != NULL) {
        free(e->value);
        e->value = kz_test_dup_(value);
    } else if (e != NULL) {
        free(e->name);
        free(e->value);
        *e = (*p)[--*n];
    } else if (value != NULL) {
        kz_test_grow_((void **)p, cap, *n, sizeof **p);
        (*p)[*n].name = kz_test_dup_(name);
        (*p)[(*n)++].value = kz_test_dup_(value);
    }
}

/* Records a friend.* event of the running handler: {k1: v1[, k2: v2],
 * "by": the plugin}; a NULL key ends the list early. */
KZ_TEST_FN void kz_test_friend_event_(const char *topic, const char *user, const char *k1,
                                      const char *v1, const char *k2, const char *v2)
{
    kz_test_buf_ b = {NULL, 0, 0};
    kz_test_buf_lit_(&b, "{");
    kz_test_buf_str_(&b, k1);
    kz_test_buf_lit_(&b, ":");
    kz_test_buf_str_(&b, v1);
    if (k2 != NULL) {
        kz_test_buf_lit_(&b, ",");
        kz_test_buf_str_(&b, k2);
        kz_test_buf_lit_(&b, ":");
        kz_test_buf_str_(&b, v2);
    }
    kz_test_buf_lit_(&b, ",\"by\":");
    kz_test_buf_str_(&b, kz_test_s_.desc.name);
    kz_test_buf_lit_(&b, "}");
    kz_test_record_(topic, user, b.p, b.n);
    free(b.p);
}

/* The JSON object friend_get returns. */
KZ_TEST_FN void kz_test_friend_json_(kz_test_buf_ *b, const kz_test_friend_ *f)
{
    static const char *const times[] = {"firstFollow", "lastFollow", "unfollow", "firstActive",
                                        "lastActive"};
    static const char *const prof[] = {"displayName", "pictureUrl", "statusMessage", "language"};
    const int64_t tv[] = {f->first_follow, f->last_follow, f->unfollow, f->first_active,
                          f->last_active};
    char num[64];
    kz_test_buf_lit_(b, "{\"user\":");
    kz_test_buf_str_(b, f->user);
    snprintf(num, sizeof num, ",\"following\":%s,\"follows\":%lld", f->following ? "true" : "false",
             (long long)f->follows);
    kz_test_buf_lit_(b, num);
    for (int i = 0; i < 5; i++) {
        snprintf(num, sizeof num, ",\"%s\":", times[i]);
        kz_test_buf_lit_(b, num);
        kz_test_buf_time_(b, tv[i]);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(num, sizeof num, ",\"%s\":", prof[i]);
        kz_test_buf_lit_(b, num);
        kz_test_buf_str_(b, f->profile[i]);
    }
    kz_test_buf_lit_(b, ",\"tags\":[");
    for (size_t i = 0; i < f->ntags; i++) {
        kz_test_buf_lit_(b, i ? "," : "");
        kz_test_buf_str_(b, f->tags[i]);
    }
    kz_test_buf_lit_(b, "],\"attributes\":{");
    for (size_t i = 0; i < f->nattrs; i++) {
        kz_test_buf_lit_(b, i ? "," : "");
        kz_test_buf_str_(b, f->attrs[i].name);
        kz_test_buf_lit_(b, ":");
        kz_test_buf_lit_(b, f->attrs[i].value);
    }
    kz_test_buf_lit_(b, "},\"links\":{");
    for (size_t i = 0; i < f->nlinks; i++) {
        kz_test_buf_lit_(b, i ? "," : "");
        kz_test_buf_str_(b, f->links[i].name);
        kz_test_buf_lit_(b, ":");
        kz_test_buf_str_(b, f->links[i].value);
    }
    kz_test_buf_lit_(b, "}}");
}

KZ_TEST_FN int kz_test_h_friend_get_(kz_ctx *ctx, const char *user, const char **json, size_t *len)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (!kz_test_user_ok_(user) || json == NULL)
        return KZ_EINVAL;
    const kz_test_friend_ *f = kz_test_friend_find_(user);
    if (f == NULL)
        return KZ_ENOTFOUND;
    int rc = kz_test_injected_(KZ_TEST_FAIL_FRIEND_GET);
    if (rc != 0)
        return rc;
    kz_test_buf_ b = {NULL, 0, 0};
    kz_test_friend_json_(&b, f);
    *json = kz_test_buf_keep_(&b, len);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_friend_tag_(kz_ctx *ctx, const char *user, const char *tag, int add)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (!kz_test_user_ok_(user) || !kz_test_utf8_text_ok_(tag, 100))
        return KZ_EINVAL;
    kz_test_friend_ *f = kz_test_friend_find_(user);
    size_t i = f ? kz_test_tag_index_(f, tag) : 0;
    if (add && f != NULL && i < f->ntags)
        return KZ_EEXIST;
    if (!add && (f == NULL || i == f->ntags))
        return KZ_ENOTFOUND;
    int rc = kz_test_injected_(KZ_TEST_FAIL_FRIEND_TAG);
    if (rc != 0)
        return rc;
    if (add) {
        f = kz_test_friend_make_(user);
        kz_test_grow_((void **)&f->tags, &f->captags, f->ntags, sizeof *f->tags);
        f->tags[f->ntags++] = kz_test_dup_(tag);
    } else {
        free(f->tags[i]);
        memmove(&f->tags[i], &f->tags[i + 1], (f->ntags - i - 1) * sizeof *f->tags);
        f->ntags--;
    }
    kz_test_friend_event_(add ? "friend.tagged" : "friend.untagged", user, "tag", tag, NULL, NULL);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_friend_has_tag_(kz_ctx *ctx, const char *user, const char *tag)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (!kz_test_user_ok_(user) || !kz_test_utf8_text_ok_(tag, 100))
        return KZ_EINVAL;
    const kz_test_friend_ *f = kz_test_friend_find_(user);
    return f != NULL && kz_test_tag_index_(f, tag) < f->ntags;
}

KZ_TEST_FN const kz_test_attr_decl_ *kz_test_attr_decl_find_(const char *name)
{
    for (size_t i = 0; name != NULL && i < kz_test_s_.nattrs; i++)
        if (strcmp(kz_test_s_.attrs[i].name, name) == 0)
            return &kz_test_s_.attrs[i];
    return NULL;
}

/* "YYYY-MM-DD" (quotes included) naming a real day. */
KZ_TEST_FN int kz_test_date_ok_(const char *v, size_t n)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 12 || v[0] != '"' || v[5] != '-' || v[8] != '-' || v[11] != '"')
        return 0;
    for (int i = 1; i < 11; i++)
        if (i != 5 && i != 8 && (v[i] < '0' || v[i] > '9'))
            return 0;
    int y = atoi(v + 1), m = atoi(v + 6), d = atoi(v + 9);
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m >= 1 && m <= 12 && d >= 1 && d <= mdays[m - 1] && (m != 2 || d <= 28 + leap);
}

/* 0 when the JSON value v (valid, trimmed) has the declared type. */
KZ_TEST_FN int kz_test_attr_type_ok_(const char *type, const char *v, size_t n)
{
    if (strcmp(type, "string") == 0)
        return v[0] == '"';
    if (strcmp(type, "number") == 0)
        return v[0] == '-' || (v[0] >= '0' && v[0] <= '9');
    if (strcmp(type, "bool") == 0)
        return strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
    return kz_test_date_ok_(v, n);
}

/* json_value without the whitespace around it, in a malloc'ed copy; NULL
 * when it is not one JSON value. */
KZ_TEST_FN char *kz_test_json_trim_(const char *v)
{
    if (v == NULL)
        return NULL;
    size_t n = strlen(v);
    if (!kz_test_json_valid(v, n))
        return NULL;
    while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    return kz_test_dupn_(v, n);
}

KZ_TEST_FN int kz_test_attr_check_(const char *user, const char *name, const char *v)
{
    if (!kz_test_user_ok_(user) || v == NULL)
        return KZ_EINVAL;
    const kz_test_attr_decl_ *d = kz_test_attr_decl_find_(name);
    if (d == NULL)
        return KZ_ENOTFOUND;
    if (strcmp(v, "null") != 0 && !kz_test_attr_type_ok_(d->type, v, strlen(v)))
        return KZ_ETYPE;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_friend_attr_set_(kz_ctx *ctx, const char *user, const char *name,
                                          const char *json_value)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    char *v = kz_test_json_trim_(json_value);
    int rc = v ? kz_test_attr_check_(user, name, v) : KZ_EINVAL;
    if (rc == 0)
        rc = kz_test_injected_(KZ_TEST_FAIL_FRIEND_ATTR);
    if (rc != 0) {
        free(v);
        return rc;
    }
    int remove = strcmp(v, "null") == 0;
    kz_test_friend_ *f = remove ? kz_test_friend_find_(user) : kz_test_friend_make_(user);
    kz_test_pair_ *e = f ? kz_test_pair_find_(f->attrs, f->nattrs, name) : NULL;
    if ((e == NULL && remove) || (e != NULL && strcmp(e->value, v) == 0)) {
        free(v);
        return KZ_OK; /* no change, no event */
    }
    kz_test_buf_ b = {NULL, 0, 0};
    kz_test_buf_lit_(&b, "{\"name\":");
    kz_test_buf_str_(&b, name);
    kz_test_buf_lit_(&b, ",\"value\":");
    kz_test_buf_lit_(&b, v);
    kz_test_buf_lit_(&b, ",\"previous\":");
    kz_test_buf_lit_(&b, e ? e->value : "null");
    kz_test_buf_lit_(&b, ",\"by\":");
    kz_test_buf_str_(&b, kz_test_s_.desc.name);
    kz_test_buf_lit_(&b, "}");
    kz_test_pair_set_(&f->attrs, &f->nattrs, &f->capattrs, name, remove ? NULL : v);
    kz_test_record_("friend.attribute", user, b.p, b.n);
    free(b.p);
    free(v);
    return KZ_OK;
}

/* [a-z0-9_]+, at most 64 bytes. */
KZ_TEST_FN int kz_test_source_ok_(const char *src)
{
    return kz_test_name_valid_(src) && strlen(src) <= 64;
}

/* The friend other than `user` holding member_id at source, or NULL. */
KZ_TEST_FN kz_test_friend_ *kz_test_link_holder_(const char *source, const char *member)
{
    for (size_t i = 0; i < kz_test_s_.nfriends; i++) {
        kz_test_friend_ *f = &kz_test_s_.friends[i];
        kz_test_pair_ *e = kz_test_pair_find_(f->links, f->nlinks, source);
        if (e != NULL && strcmp(e->value, member) == 0)
            return f;
    }
    return NULL;
}

KZ_TEST_FN int kz_test_unlink_(kz_test_friend_ *f, const char *source)
{
    kz_test_pair_ *e = kz_test_pair_find_(f->links, f->nlinks, source);
    if (e == NULL)
        return KZ_ENOTFOUND;
    char *member = kz_test_dup_(e->value);
    kz_test_pair_set_(&f->links, &f->nlinks, &f->caplinks, source, NULL);
    kz_test_friend_event_("friend.unlinked", f->user, "source", source, "member", member);
    free(member);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_friend_link_(kz_ctx *ctx, const char *user, const char *source,
                                      const char *member_id)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (!kz_test_user_ok_(user) || !kz_test_source_ok_(source) ||
        (member_id != NULL && !kz_test_utf8_text_ok_(member_id, 200)))
        return KZ_EINVAL;
    kz_test_friend_ *f = kz_test_friend_find_(user);
    kz_test_pair_ *e = f ? kz_test_pair_find_(f->links, f->nlinks, source) : NULL;
    if (member_id == NULL && e == NULL)
        return KZ_ENOTFOUND;
    if (member_id != NULL && e != NULL && strcmp(e->value, member_id) == 0)
        return KZ_EEXIST;
    int rc = kz_test_injected_(KZ_TEST_FAIL_FRIEND_LINK);
    if (rc != 0)
        return rc;
    if (member_id == NULL)
        return kz_test_unlink_(f, source);
    /* The member moves: its earlier friend is unlinked first, with its own
     * event. Made before creating `user`, which may move the array. */
    kz_test_friend_ *other = kz_test_link_holder_(source, member_id);
    if (other != NULL)
        kz_test_unlink_(other, source);
    f = kz_test_friend_make_(user);
    kz_test_pair_set_(&f->links, &f->nlinks, &f->caplinks, source, member_id);
    kz_test_friend_event_("friend.linked", user, "source", source, "member", member_id);
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_friend_by_link_(kz_ctx *ctx, const char *source, const char *member_id,
                                         const char **user)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (!kz_test_source_ok_(source) || !kz_test_utf8_text_ok_(member_id, 200) || user == NULL)
        return KZ_EINVAL;
    const kz_test_friend_ *f = kz_test_link_holder_(source, member_id);
    if (f == NULL)
        return KZ_ENOTFOUND;
    kz_test_buf_ b = {NULL, 0, 0};
    kz_test_buf_lit_(&b, f->user);
    *user = kz_test_buf_keep_(&b, NULL);
    return KZ_OK;
}

/* ---- host slots: segments, a subset (ABI 1.3) --------------------------- */

/* A compiled expression: a tree of nodes in one array (node 0 is the root). */
typedef struct kz_test_seg_node_ {
    int kind;  /* 'T' tag, 'B' blocked, '!' not, '&' and, '|' or */
    int a, b;  /* children (indexes) */
    char *str; /* the tag */
} kz_test_seg_node_;

struct kz_segment {
    kz_test_seg_node_ *n;
    size_t nn, capn;
    int root;
};

typedef struct kz_test_seg_parser_ {
    const char *src;
    size_t pos;
    int depth;
    kz_segment *seg;
    char msg[256];
    size_t err_at; /* byte offset of the error */
} kz_test_seg_parser_;

KZ_TEST_FN int kz_test_seg_fail_(kz_test_seg_parser_ *p, size_t at, const char *fmt, ...)
    KZ_PRINTF(3, 4);
KZ_TEST_FN int kz_test_seg_fail_(kz_test_seg_parser_ *p, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
    p->err_at = at;
    return -1;
}

KZ_TEST_FN void kz_test_seg_ws_(kz_test_seg_parser_ *p)
{
    while (p->src[p->pos] == ' ' || p->src[p->pos] == '\t' || p->src[p->pos] == '\n')
        p->pos++;
}

KZ_TEST_FN int kz_test_seg_add_(kz_test_seg_parser_ *p, int kind, int a, int b, char *str)
{
    kz_segment *g = p->seg;
    kz_test_grow_((void **)&g->n, &g->capn, g->nn, sizeof *g->n);
    g->n[g->nn].kind = kind;
    g->n[g->nn].a = a;
    g->n[g->nn].b = b;
    g->n[g->nn].str = str;
    return (int)g->nn++;
}

/* The token at pos for messages: a word, or one character. */
KZ_TEST_FN const char *kz_test_seg_tok_(kz_test_seg_parser_ *p, char *buf, size_t len)
{
    const char *s = p->src + p->pos;
    size_t n = 0;
    if (*s == '\0')
        return "end of expression";
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || s[n] == '_' ||
           (s[n] >= '0' && s[n] <= '9') || s[n] == '.')
        n++;
    if (n == 0)
        n = (s[0] == '&' || s[0] == '|') && s[1] == s[0] ? 2 : 1;
    snprintf(buf, len, "%.*s", (int)n, s);
    return buf;
}

/* "…" with \" \\ \n, as the real language writes strings. */
KZ_TEST_FN char *kz_test_seg_string_(kz_test_seg_parser_ *p)
{
    size_t start = p->pos++;
    kz_test_buf_ b = {NULL, 0, 0};
    for (;;) {
        char c = p->src[p->pos];
        if (c == '\0' || c == '\n') {
            free(b.p);
            kz_test_seg_fail_(p, start, "unterminated string");
            return NULL;
        }
        p->pos++;
        if (c == '"')
            break;
        if (c == '\\') {
            char e = p->src[p->pos++];
            if (e != '"' && e != '\\' && e != 'n') {
                free(b.p);
                kz_test_seg_fail_(p, p->pos - 2, "unknown escape (use \\\", \\\\ or \\n)");
                return NULL;
            }
            c = e == 'n' ? '\n' : e;
        }
        kz_test_buf_add_(&b, &c, 1);
    }
    if (b.p == NULL)
        kz_test_buf_lit_(&b, "");
    return b.p;
}

KZ_TEST_FN int kz_test_seg_or_(kz_test_seg_parser_ *p);

KZ_TEST_FN int kz_test_seg_tag_(kz_test_seg_parser_ *p)
{
    char buf[64];
    p->pos += 3;
    kz_test_seg_ws_(p);
    if (p->src[p->pos] != '(')
        return kz_test_seg_fail_(p, p->pos, "expected '(', found '%s'",
                                 kz_test_seg_tok_(p, buf, sizeof buf));
    p->pos++;
    kz_test_seg_ws_(p);
    if (p->src[p->pos] != '"')
        return kz_test_seg_fail_(p, p->pos, "tag takes a string, as in tag(\"name\"), found '%s'",
                                 kz_test_seg_tok_(p, buf, sizeof buf));
    size_t at = p->pos;
    char *tag = kz_test_seg_string_(p);
    if (tag == NULL)
        return -1;
    if (*tag == '\0') {
        free(tag);
        return kz_test_seg_fail_(p, at, "tag name is empty");
    }
    int node = kz_test_seg_add_(p, 'T', -1, -1, tag);
    kz_test_seg_ws_(p);
    if (p->src[p->pos] != ')')
        return kz_test_seg_fail_(p, p->pos, "expected ')', found '%s'",
                                 kz_test_seg_tok_(p, buf, sizeof buf));
    p->pos++;
    return node;
}

KZ_TEST_FN int kz_test_seg_word_(kz_test_seg_parser_ *p, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(p->src + p->pos, w, n) != 0)
        return 0;
    char c = p->src[p->pos + n];
    return !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.');
}

KZ_TEST_FN int kz_test_seg_unary_(kz_test_seg_parser_ *p)
{
    char buf[64];
    kz_test_seg_ws_(p);
    size_t at = p->pos;
    char c = p->src[at];
    if (c == '!' || c == '(') {
        if (++p->depth > 64)
            return kz_test_seg_fail_(p, at, "expression nested too deeply (limit 64)");
        p->pos++;
        int a = c == '!' ? kz_test_seg_unary_(p) : kz_test_seg_or_(p);
        if (a < 0)
            return -1;
        p->depth--;
        if (c == '!')
            return kz_test_seg_add_(p, '!', a, -1, NULL);
        kz_test_seg_ws_(p);
        if (p->src[p->pos] != ')')
            return kz_test_seg_fail_(p, p->pos,
                                     "expected ')' to close '(' at column %zu, found '%s'", at + 1,
                                     kz_test_seg_tok_(p, buf, sizeof buf));
        p->pos++;
        return a;
    }
    if (kz_test_seg_word_(p, "tag"))
        return kz_test_seg_tag_(p);
    if (kz_test_seg_word_(p, "blocked")) {
        p->pos += 7;
        return kz_test_seg_add_(p, 'B', -1, -1, NULL);
    }
    if (c == '\0')
        return kz_test_seg_fail_(p, at, "expected a condition at the end of the expression");
    return kz_test_seg_fail_(p, at,
                             "'%s' is not supported by the fake host (testing.h knows tag(\"…\"), "
                             "blocked, !, &&, ||, parentheses)",
                             kz_test_seg_tok_(p, buf, sizeof buf));
}

/* and = unary { "&&" unary }; or = and { "||" and } */
KZ_TEST_FN int kz_test_seg_and_(kz_test_seg_parser_ *p)
{
    int a = kz_test_seg_unary_(p);
    for (;;) {
        if (a < 0)
            return -1;
        kz_test_seg_ws_(p);
        if (strncmp(p->src + p->pos, "&&", 2) != 0)
            return a;
        p->pos += 2;
        int b = kz_test_seg_unary_(p);
        if (b < 0)
            return -1;
        a = kz_test_seg_add_(p, '&', a, b, NULL);
    }
}

KZ_TEST_FN int kz_test_seg_or_(kz_test_seg_parser_ *p)
{
    int a = kz_test_seg_and_(p);
    for (;;) {
        if (a < 0)
            return -1;
        kz_test_seg_ws_(p);
        if (strncmp(p->src + p->pos, "||", 2) != 0)
            return a;
        p->pos += 2;
        int b = kz_test_seg_and_(p);
        if (b < 0)
            return -1;
        a = kz_test_seg_add_(p, '|', a, b, NULL);
    }
}

KZ_TEST_FN void kz_test_h_segment_free_(kz_segment *seg)
{
    if (seg == NULL)
        return;
    for (size_t i = 0; i < seg->nn; i++)
        free(seg->n[i].str);
    free(seg->n);
    free(seg);
}

/* Column (1-based, in characters) of byte offset `at`. */
KZ_TEST_FN size_t kz_test_seg_column_(const char *src, size_t at)
{
    size_t col = 1;
    for (size_t i = 0; i < at && src[i]; i++)
        if (((unsigned char)src[i] & 0xc0) != 0x80)
            col++;
    return col;
}

/* Parses src into p->seg; -1 with p->msg / p->err_at on error. */
KZ_TEST_FN int kz_test_seg_parse_(kz_test_seg_parser_ *p)
{
    char buf[64];
    kz_test_seg_ws_(p);
    if (p->src[p->pos] == '\0')
        return kz_test_seg_fail_(p, 0, "empty expression");
    if (strlen(p->src) > 4096)
        return kz_test_seg_fail_(p, 0, "expression too long (limit 4096 bytes)");
    int root = kz_test_seg_or_(p);
    if (root < 0)
        return -1;
    kz_test_seg_ws_(p);
    if (p->src[p->pos] != '\0')
        return kz_test_seg_fail_(p, p->pos, "unexpected '%s' after a complete expression",
                                 kz_test_seg_tok_(p, buf, sizeof buf));
    p->seg->root = root;
    return 0;
}

KZ_TEST_FN int kz_test_h_segment_compile_(kz_shop *shop, const kz_setting *s, kz_segment **out,
                                          char *err, size_t errlen)
{
    struct kz_test_state_ *st = &kz_test_s_;
    if (out != NULL)
        *out = NULL;
    if (shop != &st->shop || st->phase != 1)
        return KZ_ESTATE;
    if (s == NULL || out == NULL)
        return KZ_EINVAL;
    if (s->type != KZ_SETTING_STRING) {
        if (err != NULL && errlen > 0)
            kz_test_setting_fmt_(s, err, errlen, "a segment is a string");
        return KZ_EINVAL;
    }
    kz_test_seg_parser_ p;
    memset(&p, 0, sizeof p);
    p.src = s->str;
    p.seg = (kz_segment *)kz_test_alloc_(sizeof *p.seg);
    if (kz_test_seg_parse_(&p) != 0) {
        kz_test_h_segment_free_(p.seg);
        char path[1024];
        kz_test_setting_path_(s, path, sizeof path);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s:%d:%zu: shop '%s': plugin '%s': %s: %s", KZ_TEST_CONF_FILE,
                     kz_test_setting_eline_(s), kz_test_seg_column_(p.src, p.err_at), st->shop.id,
                     st->desc.name ? st->desc.name : "?", path, p.msg);
        return KZ_EINVAL;
    }
    *out = p.seg;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_seg_eval_(const kz_segment *g, int i, const kz_test_friend_ *f)
{
    const kz_test_seg_node_ *n = &g->n[i];
    switch (n->kind) {
    case 'T':
        return f != NULL && kz_test_tag_index_(f, n->str) < f->ntags;
    case 'B':
        return f != NULL && !f->following; /* as core: blocked = known, not following */
    case '!':
        return !kz_test_seg_eval_(g, n->a, f);
    case '&':
        return kz_test_seg_eval_(g, n->a, f) && kz_test_seg_eval_(g, n->b, f);
    default:
        return kz_test_seg_eval_(g, n->a, f) || kz_test_seg_eval_(g, n->b, f);
    }
}

KZ_TEST_FN int kz_test_h_segment_match_(kz_ctx *ctx, const kz_segment *seg, const char *user)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    if (seg == NULL || seg->nn == 0 || !kz_test_user_ok_(user))
        return KZ_EINVAL;
    int rc = kz_test_injected_(KZ_TEST_FAIL_SEGMENT_MATCH);
    if (rc != 0)
        return rc;
    return kz_test_seg_eval_(seg, seg->root, kz_test_friend_find_(user));
}

/* ---- host slots: shop-local time (ABI 1.3) ------------------------------ */

/* localtime_r under TZ=<the shop's zone>, TZ restored afterwards: the fake
 * runs handlers on the test's one thread, so changing TZ is safe here (the
 * host cannot do this; it has its own zone tables). */
KZ_TEST_FN int kz_test_h_local_time_(const kz_shop *shop, int64_t ms, kz_local_time *out)
{
    if (shop == NULL || out == NULL)
        return KZ_EINVAL;
    const char *old = getenv("TZ");
    char *saved = old ? kz_test_dup_(old) : NULL;
    setenv("TZ", shop->timezone, 1);
    tzset();
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    struct tm tm;
    int ok = localtime_r(&t, &tm) != NULL;
    if (saved != NULL)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
    if (!ok)
        return KZ_EINVAL;
    out->year = tm.tm_year + 1900;
    out->month = tm.tm_mon + 1;
    out->day = tm.tm_mday;
    out->hour = tm.tm_hour;
    out->minute = tm.tm_min;
    out->second = tm.tm_sec;
    out->weekday = tm.tm_wday;
    /* tm_gmtoff is not POSIX: the offset is local wall time minus UTC. */
    int64_t local = kz_test_days_from_civil_(out->year, out->month, out->day) * 86400 +
                    tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    out->utc_offset_s = (int)(local - (int64_t)t);
    return KZ_OK;
}

/* The same rules as the host (kz_host.local_to_ms): the offsets a day
 * either side are the only candidates; both valid means the wall time
 * happens twice (take the earlier), neither means a DST gap (the offset
 * from before it moves the time forward by the gap). */
KZ_TEST_FN int kz_test_offset_at_(const kz_shop *shop, int64_t s, int64_t *off)
{
    kz_local_time lt;
    int rc = kz_test_h_local_time_(shop, s * 1000, &lt);
    *off = lt.utc_offset_s;
    return rc;
}

KZ_TEST_FN int kz_test_h_local_to_ms_(const kz_shop *shop, const kz_local_time *lt, int64_t *ms)
{
    if (shop == NULL || lt == NULL || ms == NULL || lt->month < 1 || lt->month > 12 ||
        lt->day < 1 || lt->day > 31 || lt->hour < 0 || lt->hour > 23 || lt->minute < 0 ||
        lt->minute > 59 || lt->second < 0 || lt->second > 59 || lt->year < 1 || lt->year > 9999)
        return KZ_EINVAL;
    int64_t wall = kz_test_days_from_civil_(lt->year, lt->month, lt->day) * 86400 +
                   lt->hour * 3600 + lt->minute * 60 + lt->second;
    int64_t ob, oa, cb, ca;
    if (kz_test_offset_at_(shop, wall - 86400, &ob) != 0 ||
        kz_test_offset_at_(shop, wall + 86400, &oa) != 0)
        return KZ_EINVAL;
    int64_t before = wall - ob, after = wall - oa;
    if (kz_test_offset_at_(shop, before, &cb) != 0 || kz_test_offset_at_(shop, after, &ca) != 0)
        return KZ_EINVAL;
    int ok_before = before + cb == wall, ok_after = after + ca == wall;
    int64_t t = ok_before && ok_after ? (before < after ? before : after)
                : ok_after            ? after
                                      : before;
    *ms = t * 1000;
    return KZ_OK;
}

/* The fake host's table: every slot up to ABI 1.5. */

/* ---- host slots: timers (ABI 1.4) ------------------------------------- */

KZ_TEST_FN void kz_test_timed_clear_(kz_test_timed *t)
{
    free((char *)t->key);
    free((char *)t->topic);
    free((char *)t->user);
    free((char *)t->payload);
}

KZ_TEST_FN void kz_test_timed_free_(kz_test_timed *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kz_test_timed_clear_(&t[i]);
    free(t);
}

/* A deep copy: the snapshot a failing handler rolls back to. */
KZ_TEST_FN kz_test_timed *kz_test_timed_copy_(const kz_test_timed *t, size_t n)
{
    kz_test_timed *c = (kz_test_timed *)kz_test_alloc_(sizeof *c * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        c[i] = t[i];
        c[i].key = kz_test_dup_(t[i].key);
        c[i].topic = kz_test_dup_(t[i].topic);
        c[i].user = kz_test_dup_(t[i].user);
        c[i].payload = kz_test_dupn_(t[i].payload, t[i].payload_len);
    }
    return c;
}

/* Removes timer i, keeping the others in set order. */
KZ_TEST_FN void kz_test_timer_drop_(size_t i)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_timed_clear_(&s->timers[i]);
    memmove(&s->timers[i], &s->timers[i + 1], (s->ntimers - i - 1) * sizeof *s->timers);
    s->ntimers--;
}

KZ_TEST_FN long kz_test_timer_find_(const char *key)
{
    for (size_t i = 0; i < kz_test_s_.ntimers; i++)
        if (strcmp(kz_test_s_.timers[i].key, key) == 0)
            return (long)i;
    return -1;
}

KZ_TEST_FN int kz_test_timer_key_(const char *key)
{
    if (key == NULL || key[0] == '\0')
        return KZ_EINVAL;
    return strlen(key) > 200 ? KZ_ETOOBIG : 0;
}

KZ_TEST_FN int kz_test_h_timer_set_(kz_ctx *ctx, const char *key, int64_t due_ms, const char *topic,
                                    const char *user, const char *json, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_timer_key_(key);
    if (rc != 0)
        return rc;
    if (json == NULL || len == 0) {
        json = "{}";
        len = 2;
    }
    if (topic == NULL || !kz_test_topic_valid_(topic, strlen(topic)) ||
        !kz_test_json_valid(json, len))
        return KZ_EINVAL;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_TIMER_SET)) != 0)
        return rc;
    long old = kz_test_timer_find_(key);
    if (old >= 0) /* the host replaces the row: the new timer orders last */
        kz_test_timer_drop_((size_t)old);
    kz_test_grow_((void **)&s->timers, &s->captimers, s->ntimers, sizeof *s->timers);
    kz_test_timed *t = &s->timers[s->ntimers++];
    t->key = kz_test_dup_(key);
    t->due_ms = due_ms;
    t->topic = kz_test_dup_(topic);
    t->user = kz_test_dup_(user);
    t->payload = kz_test_dupn_(json, len);
    t->payload_len = len;
    t->seq = ++s->timer_seq;
    return KZ_OK;
}

KZ_TEST_FN int kz_test_h_timer_cancel_(kz_ctx *ctx, const char *key)
{
    if (!kz_test_ctx_live_(ctx))
        return KZ_ESTATE;
    int rc = kz_test_timer_key_(key);
    if (rc != 0)
        return rc;
    long i = kz_test_timer_find_(key);
    if (i < 0)
        return KZ_ENOTFOUND;
    if ((rc = kz_test_injected_(KZ_TEST_FAIL_TIMER_CANCEL)) != 0)
        return rc;
    kz_test_timer_drop_((size_t)i);
    return KZ_OK;
}

static const kz_host kz_test_host_table_ = {
    .abi_major = KZ_ABI_MAJOR,
    .abi_minor = KZ_ABI_MINOR,
    .struct_size = (uint32_t)sizeof(kz_host),
    .reserved0 = 0, /* every member named: the header also compiles as C++20 */
    .log = kz_test_h_log_,
    .now_ms = kz_test_h_now_ms_,
    .event_topic = kz_test_h_event_topic_,
    .event_shop = kz_test_h_event_shop_,
    .event_user = kz_test_h_event_user_,
    .event_id = kz_test_h_event_id_,
    .event_time_ms = kz_test_h_event_time_ms_,
    .event_payload = kz_test_h_event_payload_,
    .event_attempt = kz_test_h_event_attempt_,
    .ctx_shop = kz_test_h_ctx_shop_,
    .shop_id = kz_test_h_shop_id_,
    .shop_timezone = kz_test_h_shop_timezone_,
    .publish = kz_test_h_publish_,
    .subscribe = kz_test_h_subscribe_,
    .kv_get = kz_test_h_kv_get_,
    .kv_put = kz_test_h_kv_put_,
    .kv_del = kz_test_h_kv_del_,
    .kv_cas = kz_test_h_kv_cas_,
    .kv_incr = kz_test_h_kv_incr_,
    .setting_child = kz_test_h_setting_child_,
    .setting_elem = kz_test_h_setting_elem_,
    .setting_count = kz_test_h_setting_count_,
    .setting_type = kz_test_h_setting_type_,
    .setting_name = kz_test_h_setting_name_,
    .setting_line = kz_test_h_setting_line_,
    .setting_string = kz_test_h_setting_string_,
    .setting_int = kz_test_h_setting_int_,
    .setting_float = kz_test_h_setting_float_,
    .setting_bool = kz_test_h_setting_bool_,
    .setting_duration_ms = kz_test_h_setting_duration_ms_,
    .setting_error = kz_test_h_setting_error_,
    .line_send = kz_test_h_line_send_,
    .line_call = kz_test_h_line_call_,
    .route = kz_test_h_route_,
    .http_shop = kz_test_h_http_shop_,
    .http_method = kz_test_h_http_method_,
    .http_path = kz_test_h_http_path_,
    .http_query = kz_test_h_http_query_,
    .http_header = kz_test_h_http_header_,
    .http_body = kz_test_h_http_body_,
    .http_publish = kz_test_h_http_publish_,
    .http_header_set = kz_test_h_http_header_set_,
    .http_respond = kz_test_h_http_respond_,
    .friend_get = kz_test_h_friend_get_,
    .friend_tag = kz_test_h_friend_tag_,
    .friend_has_tag = kz_test_h_friend_has_tag_,
    .friend_attr_set = kz_test_h_friend_attr_set_,
    .friend_link = kz_test_h_friend_link_,
    .friend_by_link = kz_test_h_friend_by_link_,
    .segment_compile = kz_test_h_segment_compile_,
    .segment_match = kz_test_h_segment_match_,
    .segment_free = kz_test_h_segment_free_,
    .local_time = kz_test_h_local_time_,
    .timer_set = kz_test_h_timer_set_,
    .timer_cancel = kz_test_h_timer_cancel_,
    .local_to_ms = kz_test_h_local_to_ms_,
};

/* The table handed to the plugin. */
KZ_TEST_FN const kz_host *kz_test_host(void)
{
    return &kz_test_host_table_;
}

/* ---- settings builder ------------------------------------------------- */

KZ_TEST_FN void kz_test_setting_free_(kz_setting *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nkids; i++)
        kz_test_setting_free_(s->kids[i]);
    free(s->kids);
    free(s->name);
    free(s->str);
    free(s);
}

/* A new, empty root group (a plugin's `name = { … }`, line 1). Owned by the
 * fake until kz_test_reset(). */
KZ_TEST_FN kz_setting *kz_test_setting_group(void)
{
    kz_test_init_();
    kz_setting *g = (kz_setting *)kz_test_alloc_(sizeof *g);
    g->type = KZ_SETTING_GROUP;
    g->line = 1;
    g->next_line = 2;
    g->next_root = kz_test_s_.roots;
    kz_test_s_.roots = g;
    return g;
}

KZ_TEST_FN kz_setting *kz_test_setting_root_(kz_setting *s)
{
    while (s->parent != NULL)
        s = s->parent;
    return s;
}

/* Adds (group: replaces a same-named) child of `type`; key is ignored in a
 * list. Fails the test on misuse. */
KZ_TEST_FN kz_setting *kz_test_setting_add_(kz_setting *parent, const char *key, int type)
{
    if (parent == NULL || (parent->type != KZ_SETTING_GROUP && parent->type != KZ_SETTING_LIST)) {
        fail_msg("kz_test_setting_*: parent is not a group or list");
    }
    if (parent->type == KZ_SETTING_GROUP && (key == NULL || *key == '\0'))
        fail_msg("kz_test_setting_*: a group member needs a key");
    kz_setting *n = (kz_setting *)kz_test_alloc_(sizeof *n);
    n->type = type;
    n->parent = parent;
    n->name = parent->type == KZ_SETTING_GROUP ? kz_test_dup_(key) : NULL;
    n->line = kz_test_setting_root_(parent)->next_line++;
    if (parent->type == KZ_SETTING_GROUP) {
        for (size_t i = 0; i < parent->nkids; i++) {
            if (strcmp(parent->kids[i]->name, key) == 0) {
                kz_test_setting_free_(parent->kids[i]);
                parent->kids[i] = n;
                return n;
            }
        }
    }
    kz_test_grow_((void **)&parent->kids, &parent->cap, parent->nkids, sizeof *parent->kids);
    parent->kids[parent->nkids++] = n;
    return n;
}

KZ_TEST_FN kz_setting *kz_test_setting_set_string(kz_setting *g, const char *key, const char *v)
{
    kz_setting *n = kz_test_setting_add_(g, key, KZ_SETTING_STRING);
    n->str = kz_test_dup_(v ? v : "");
    return n;
}
/* A secret as written in the config: inline, "env:NAME" or "file:PATH"
 * (resolved by the schema check when the schema types the key SECRET).
 * Like in libconfig it is a string node: same as kz_test_setting_set_string. */
KZ_TEST_FN kz_setting *kz_test_setting_set_secret(kz_setting *g, const char *key, const char *v)
{
    return kz_test_setting_set_string(g, key, v);
}
KZ_TEST_FN kz_setting *kz_test_setting_set_int(kz_setting *g, const char *key, int64_t v)
{
    kz_setting *n = kz_test_setting_add_(g, key, KZ_SETTING_INT);
    n->i = v;
    return n;
}
KZ_TEST_FN kz_setting *kz_test_setting_set_float(kz_setting *g, const char *key, double v)
{
    kz_setting *n = kz_test_setting_add_(g, key, KZ_SETTING_FLOAT);
    n->f = v;
    return n;
}
KZ_TEST_FN kz_setting *kz_test_setting_set_bool(kz_setting *g, const char *key, int v)
{
    kz_setting *n = kz_test_setting_add_(g, key, KZ_SETTING_BOOL);
    n->b = v != 0;
    return n;
}
/* A duration as written in the config ("90s", "1h30m"): a string node, as
 * in libconfig (same as kz_test_setting_set_string). An unparsable one is
 * reported by the schema check, or by KZ_EINVAL from the accessor. */
KZ_TEST_FN kz_setting *kz_test_setting_set_duration(kz_setting *g, const char *key, const char *v)
{
    return kz_test_setting_set_string(g, key, v);
}
KZ_TEST_FN kz_setting *kz_test_setting_add_group(kz_setting *parent, const char *key)
{
    return kz_test_setting_add_(parent, key, KZ_SETTING_GROUP);
}
KZ_TEST_FN kz_setting *kz_test_setting_add_list(kz_setting *parent, const char *key)
{
    return kz_test_setting_add_(parent, key, KZ_SETTING_LIST);
}
/* Sets the config-file line reported for node s; returns s. */
KZ_TEST_FN kz_setting *kz_test_setting_set_line(kz_setting *s, int line)
{
    if (s != NULL)
        s->line = line;
    return s;
}

/* ---- schema check (what `kizuna check` does before shop_open) -------- */
/* Wording follows core/config.c, so expected error lines carry over. */

KZ_TEST_FN const char *kz_test_got_name_(int t)
{
    static const char *const names[] = {"nothing",  "a string",  "an integer",
                                        "a float",  "a boolean", "a string",
                                        "a string", "a list",    "a group"};
    return t >= 0 && t <= KZ_SETTING_GROUP ? names[t] : "nothing";
}

KZ_TEST_FN const char *kz_test_want_name_(int t)
{
    static const char *const names[] = {"nothing",  "a string",  "an integer",
                                        "a float",  "a boolean", "a duration string",
                                        "a string", "a list",    "a group"};
    return t >= 0 && t <= KZ_SETTING_GROUP ? names[t] : "nothing";
}

KZ_TEST_FN int kz_test_type_fits_(int have, int want)
{
    if (want == KZ_SETTING_DURATION || want == KZ_SETTING_SECRET)
        return have == KZ_SETTING_STRING;
    if (want == KZ_SETTING_FLOAT)
        return have == KZ_SETTING_FLOAT || have == KZ_SETTING_INT;
    return have != KZ_SETTING_NONE && have == want;
}

/* Parses a libconfig literal (scalar, or an empty list/group) into n. */
KZ_TEST_FN int kz_test_parse_literal_(const char *lit, kz_setting *n)
{
    while (*lit == ' ' || *lit == '\t')
        lit++;
    size_t len = strlen(lit);
    while (len > 0 && (lit[len - 1] == ' ' || lit[len - 1] == '\t'))
        len--;
    if (len >= 2 && lit[0] == '"' && lit[len - 1] == '"') {
        char *out = (char *)kz_test_alloc_(len);
        size_t o = 0;
        for (size_t i = 1; i + 1 < len; i++) {
            char c = lit[i];
            if (c == '\\' && i + 2 < len) {
                c = lit[++i];
                c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'f' ? '\f' : c;
            }
            out[o++] = c;
        }
        out[o] = '\0';
        n->type = KZ_SETTING_STRING;
        n->str = out;
        return KZ_OK;
    }
    char word[64];
    if (len == 0 || len >= sizeof word)
        return KZ_EINVAL;
    memcpy(word, lit, len);
    word[len] = '\0';
    for (char *w = word; *w; w++)
        if (*w >= 'A' && *w <= 'Z')
            *w = (char)(*w - 'A' + 'a');
    if (strcmp(word, "true") == 0 || strcmp(word, "false") == 0) {
        n->type = KZ_SETTING_BOOL;
        n->b = word[0] == 't';
        return KZ_OK;
    }
    if (strcmp(word, "()") == 0 || strcmp(word, "[]") == 0 || strcmp(word, "{}") == 0) {
        n->type = word[0] == '{' ? KZ_SETTING_GROUP : KZ_SETTING_LIST;
        return KZ_OK;
    }
    char *end;
    if (len > 1 && word[len - 1] == 'l')
        word[--len] = '\0';
    if (len > 1 && word[len - 1] == 'l')
        word[--len] = '\0';
    long long v = strtoll(word, &end, 0);
    if (*end == '\0' && end != word) {
        n->type = KZ_SETTING_INT;
        n->i = v;
        return KZ_OK;
    }
    double d = strtod(word, &end);
    if (*end == '\0' && end != word) {
        n->type = KZ_SETTING_FLOAT;
        n->f = d;
        return KZ_OK;
    }
    return KZ_EINVAL;
}

/* Checks node n against schema type t (duration syntax, secret resolution);
 * NULL or the problem, formatted into msg. */
KZ_TEST_FN const char *kz_test_check_value_(kz_setting *n, int t, char *msg, size_t msglen)
{
    if (!kz_test_type_fits_(n->type, t)) {
        snprintf(msg, msglen, "expected %s, got %s", kz_test_want_name_(t),
                 kz_test_got_name_(n->type));
        return msg;
    }
    int64_t ms;
    if (t == KZ_SETTING_DURATION && kz_test_parse_duration_(n->str, &ms) != 0) {
        snprintf(msg, msglen, "invalid duration \"%s\" (examples: 1500ms, 90s, 15m, 1h30m, 1d)",
                 n->str);
        return msg;
    }
    if (t == KZ_SETTING_SECRET && strncmp(n->str, "env:", 4) == 0) {
        const char *name = n->str + 4, *v = *name ? getenv(name) : NULL;
        if (*name == '\0') {
            snprintf(msg, msglen, "expected env:NAME, got \"env:\"");
            return msg;
        }
        if (v == NULL) {
            snprintf(msg, msglen, "environment variable '%s' is not set", name);
            return msg;
        }
        char *copy = kz_test_dup_(v);
        free(n->str);
        n->str = copy;
    } else if (t == KZ_SETTING_SECRET && strncmp(n->str, "file:", 5) == 0) {
        const char *name = n->str + 5;
        if (*name == '\0') {
            snprintf(msg, msglen, "expected file:PATH, got \"file:\"");
            return msg;
        }
        FILE *f = fopen(name, "rb"); /* relative to the test's working directory */
        if (f == NULL) {
            snprintf(msg, msglen, "cannot read secret file '%s'", name);
            return msg;
        }
        char buf[65536];
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        free(n->str);
        n->str = kz_test_dupn_(buf, len);
    }
    return NULL;
}

KZ_TEST_FN int kz_test_check_schema_(const kz_plugin *d, kz_setting *g)
{
    char line[KZ_TEST_ERRLEN], msg[1024], known[512];
    int errors = 0;
    const kz_setting_spec *spec = d->settings;
    size_t used = 0;
    known[0] = '\0';
    for (size_t k = 0; spec != NULL && spec[k].key != NULL && used < sizeof known; k++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                                 spec[k].key);
    /* Every given key: known, of the right type. */
    for (size_t i = 0; i < g->nkids; i++) {
        kz_setting *n = g->kids[i];
        const kz_setting_spec *sp = NULL;
        for (size_t k = 0; spec != NULL && spec[k].key != NULL; k++)
            if (strcmp(spec[k].key, n->name) == 0)
                sp = &spec[k];
        const char *problem = NULL;
        if (sp != NULL) {
            problem = kz_test_check_value_(n, sp->type, msg, sizeof msg);
        } else {
            snprintf(msg, sizeof msg, "unknown setting '%s' (%s%s)", n->name,
                     known[0] ? "known: " : "this plugin takes no settings", known);
            problem = msg;
        }
        if (problem != NULL) {
            if (sp != NULL) {
                kz_test_setting_fmt_(n, line, sizeof line, problem);
            } else { /* reported at the key, without a path, as the host does */
                kz_setting *parent = n->parent;
                n->parent = NULL;
                kz_test_setting_fmt_(n, line, sizeof line, problem);
                n->parent = parent;
            }
            kz_test_adderr_(line);
            errors++;
        }
    }
    /* Every declared key: required, or its default filled in (line 0). */
    for (size_t k = 0; spec != NULL && spec[k].key != NULL; k++) {
        const kz_setting_spec *sp = &spec[k];
        const char *problem = NULL;
        if (kz_test_h_setting_child_(g, sp->key) != NULL)
            continue;
        if (sp->required) {
            snprintf(msg, sizeof msg, "missing required setting '%s'", sp->key);
            problem = msg;
        } else if (sp->default_value != NULL) {
            kz_setting *n = kz_test_setting_add_(g, sp->key, KZ_SETTING_NONE);
            n->line = 0;
            if (kz_test_parse_literal_(sp->default_value, n) != 0) {
                snprintf(msg, sizeof msg, "plugin bug: default for '%s' is not a valid value: %s",
                         sp->key, sp->default_value);
                problem = msg;
            } else if (!kz_test_type_fits_(n->type, sp->type)) {
                snprintf(msg, sizeof msg, "plugin bug: default for '%s' is %s, declared as %s",
                         sp->key, kz_test_got_name_(n->type), kz_test_want_name_(sp->type));
                problem = msg;
            } else if ((problem = kz_test_check_value_(n, sp->type, msg, sizeof msg)) != NULL) {
                snprintf(line, sizeof line, "%s", problem);
                snprintf(msg, sizeof msg, "%s: %s", sp->key, line);
                problem = msg;
            }
        }
        if (problem != NULL) {
            kz_test_setting_fmt_(g, line, sizeof line, problem);
            kz_test_adderr_(line);
            errors++;
        }
    }
    return errors;
}

/* ---- load, handle, reset ---------------------------------------------- */

/* The first error line(s) of the last failing kz_test_* call, or the err
 * text a failing plugin callback wrote. "" when none. */
KZ_TEST_FN const char *kz_test_error(void)
{
    return kz_test_s_.err;
}

/* Calls the entry with the fake table, checks the descriptor like the
 * loader does, checks `settings` (NULL: an empty group) against the schema
 * and fills in defaults, then calls load() and shop_open(). Returns 0, or a
 * KZ_E* code with the reason in kz_test_error(). */
KZ_TEST_FN int kz_test_load_settings(kz_plugin_entry_fn entry, kz_setting *settings)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_init_();
    s->err[0] = '\0';
    if (s->loaded) {
        kz_test_seterr_("kz_test_load: a plugin is already loaded; kz_test_reset() first");
        return KZ_ESTATE;
    }
    if (entry == NULL) {
        kz_test_seterr_("kz_test_load: no entry function");
        return KZ_EINVAL;
    }
    /* Refusals read like the loader's: "plugin 'NAME' (test): REASON". */
    const kz_plugin *p = entry(&kz_test_host_table_);
    const char *nm = p && p->struct_size >= offsetof(kz_plugin, name) + sizeof p->name && p->name
                         ? p->name
                         : "?";
    if (p == NULL) {
        kz_test_seterr_("plugin '?' (test): entry " KZ_PLUGIN_ENTRY_NAME " returned NULL");
        return KZ_EINVAL;
    }
    const size_t v10_size = offsetof(kz_plugin, settings) + sizeof p->settings;
    if (p->struct_size < v10_size) {
        kz_test_seterr_("plugin '%s' (test): descriptor too small (%u bytes; ABI 1.0 needs at "
                        "least %zu)",
                        nm, (unsigned)p->struct_size, v10_size);
        return KZ_EINVAL;
    }
    if (p->abi_major != KZ_ABI_MAJOR || p->abi_minor > KZ_ABI_MINOR) {
        kz_test_seterr_("plugin '%s' (test): built for ABI %u.%u, host has ABI %d.%d — refused", nm,
                        (unsigned)p->abi_major, (unsigned)p->abi_minor, KZ_ABI_MAJOR, KZ_ABI_MINOR);
        return KZ_EINVAL;
    }
    memset(&s->desc, 0, sizeof s->desc);
    memcpy(&s->desc, p, p->struct_size < sizeof s->desc ? p->struct_size : sizeof s->desc);
    const kz_plugin *d = &s->desc;
    if (!kz_test_name_valid_(d->name)) {
        if (d->name == NULL)
            kz_test_seterr_("plugin '?' (test): descriptor has no name");
        else
            kz_test_seterr_("plugin '%s' (test): name '%s' is not [a-z0-9_]+", nm, d->name);
        s->desc.name = NULL;
        return KZ_EINVAL;
    }
    if (d->handle == NULL) {
        kz_test_seterr_("plugin '%s' (test): mandatory callback 'handle' is NULL", nm);
        return KZ_EINVAL;
    }
    for (size_t i = 0; d->subscriptions != NULL && d->subscriptions[i] != NULL; i++) {
        if (!kz_test_pattern_valid_(d->subscriptions[i])) {
            kz_test_seterr_("plugin '%s' (test): subscription '%s' is not a valid topic pattern",
                            nm, d->subscriptions[i]);
            return KZ_EINVAL;
        }
    }
    for (size_t k = 0; d->settings != NULL && d->settings[k].key != NULL; k++) {
        const kz_setting_spec *sp = &d->settings[k];
        const char *why = NULL;
        if (!kz_test_name_valid_(sp->key))
            why = "setting key is not [a-z0-9_]+";
        else if (sp->type <= KZ_SETTING_NONE || sp->type > KZ_SETTING_GROUP)
            why = "unknown type";
        else if (sp->required != 0 && sp->required != 1)
            why = "required must be 0 or 1";
        else if (sp->reserved[0] || sp->reserved[1])
            why = "reserved fields must be NULL";
        for (size_t j = 0; j < k && why == NULL; j++)
            if (strcmp(d->settings[j].key, sp->key) == 0)
                why = "duplicate setting";
        if (why != NULL) {
            kz_test_seterr_("plugin '%s' (test): setting '%s': %s", nm, sp->key, why);
            return KZ_EINVAL;
        }
    }
    kz_setting *g = settings ? settings : kz_test_setting_group();
    if (g->type != KZ_SETTING_GROUP || g->parent != NULL) {
        kz_test_seterr_("kz_test_load: settings must come from kz_test_setting_group()");
        return KZ_EINVAL;
    }
    if (kz_test_check_schema_(d, g) != 0)
        return KZ_EINVAL;
    s->settings = g;

    char err[KZ_TEST_ERRLEN] = "";
    if (d->load != NULL) {
        int rc = d->load(&kz_test_host_table_, &s->plugin_state, err, sizeof err);
        if (rc != 0) {
            if (err[0])
                kz_test_seterr_("plugin '%s' (test): load failed: %s", d->name, err);
            else
                kz_test_seterr_("plugin '%s' (test): load failed (code %d)", d->name, rc);
            return rc;
        }
    }
    s->loaded = 1;
    for (size_t i = 0; d->subscriptions != NULL && d->subscriptions[i] != NULL; i++) {
        kz_test_grow_((void **)&s->subs, &s->capsubs, s->nsubs, sizeof *s->subs);
        s->subs[s->nsubs++] = kz_test_dup_(d->subscriptions[i]);
    }
    if (d->shop_open != NULL) {
        s->phase = 1;
        int rc = d->shop_open(s->plugin_state, &s->shop, g, &s->instance, err, sizeof err);
        s->phase = 0;
        if (rc != 0) {
            kz_test_seterr_("%s", err[0] ? err : "shop_open failed");
            s->instance = NULL;
            return rc;
        }
    }
    s->opened = 1;
    return KZ_OK;
}

/* kz_test_load_settings(entry, NULL): the schema's defaults only. */
KZ_TEST_FN int kz_test_load(kz_plugin_entry_fn entry)
{
    return kz_test_load_settings(entry, NULL);
}

/* The checked copy of the descriptor (NULL before a successful check). */
KZ_TEST_FN const kz_plugin *kz_test_plugin(void)
{
    return kz_test_s_.desc.name ? &kz_test_s_.desc : NULL;
}
/* The plugin's *instance from shop_open (to inspect per-shop state). */
KZ_TEST_FN void *kz_test_instance(void)
{
    return kz_test_s_.instance;
}
KZ_TEST_FN kz_shop *kz_test_shop(void)
{
    return &kz_test_s_.shop;
}

/* Sets the shop (before kz_test_load); NULL keeps the current value. */
KZ_TEST_FN void kz_test_set_shop(const char *id, const char *timezone)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_init_();
    if ((id && strlen(id) >= sizeof s->shop.id) ||
        (timezone && strlen(timezone) >= sizeof s->shop.timezone))
        fail_msg("kz_test_set_shop: id or timezone too long");
    if (id != NULL)
        snprintf(s->shop.id, sizeof s->shop.id, "%s", id);
    if (timezone != NULL)
        snprintf(s->shop.timezone, sizeof s->shop.timezone, "%s", timezone);
}

KZ_TEST_FN void kz_test_set_now(int64_t ms)
{
    kz_test_init_();
    kz_test_s_.now = ms;
}
KZ_TEST_FN void kz_test_advance(int64_t ms)
{
    kz_test_init_();
    kz_test_s_.now += ms;
}
KZ_TEST_FN int64_t kz_test_now(void)
{
    kz_test_init_();
    return kz_test_s_.now;
}

/* A new event. shop NULL: the test shop; user NULL: no LINE user; id NULL:
 * "ev-N"; payload NULL: "{}". Time = the fake clock, attempt = 1. The
 * topic and payload must be valid (the host never delivers others). */
KZ_TEST_FN kz_event *kz_test_event(const char *topic, const char *shop, const char *user,
                                   const char *id, const char *payload)
{
    if (topic == NULL || !kz_test_topic_valid_(topic, strlen(topic)))
        fail_msg("kz_test_event: invalid topic \"%s\"", topic ? topic : "(null)");
    size_t len = payload ? strlen(payload) : 0;
    if (payload != NULL && !kz_test_json_valid(payload, len))
        fail_msg("kz_test_event: payload is not JSON: %s", payload);
    return kz_test_event_new_(topic, shop, user, id, payload, len);
}
KZ_TEST_FN void kz_test_event_set_time(kz_event *ev, int64_t ms)
{
    ev->time_ms = ms;
}
KZ_TEST_FN void kz_test_event_set_attempt(kz_event *ev, uint32_t attempt)
{
    ev->attempt = attempt;
}

/* Runs the instance's handler on ev in a transaction: returns its code; on
 * nonzero, its kv writes, publishes and LINE sends are rolled back and its
 * err text is in kz_test_error(). Does not check subscriptions. */
KZ_TEST_FN int kz_test_handle(const kz_event *ev)
{
    struct kz_test_state_ *s = &kz_test_s_;
    s->err[0] = '\0';
    if (!s->opened || s->phase != 0) {
        kz_test_seterr_("kz_test_handle: no open instance (kz_test_load failed or not called)");
        return KZ_ESTATE;
    }
    if (ev == NULL) {
        kz_test_seterr_("kz_test_handle: no event");
        return KZ_EINVAL;
    }
    /* Snapshot the store; restore it on failure. */
    size_t nkv = s->nkv;
    kz_test_kv_ *snap = (kz_test_kv_ *)kz_test_alloc_(sizeof *snap * (nkv ? nkv : 1));
    s->snap = snap; /* freed by kz_test_reset if the handler never returns (failed assert) */
    s->nsnap = nkv;
    for (size_t i = 0; i < nkv; i++) {
        snap[i].key = kz_test_dup_(s->kv[i].key);
        snap[i].val = kz_test_dupn_(s->kv[i].val, s->kv[i].len);
        snap[i].len = s->kv[i].len;
    }
    size_t npub = s->npub, nsent = s->nsent, ncalled = s->ncalled;
    s->snap_friends = kz_test_friends_copy_(s->friends, s->nfriends);
    s->nsnap_friends = s->nfriends;
    s->snap_timers = kz_test_timed_copy_(s->timers, s->ntimers);
    s->nsnap_timers = s->ntimers;

    kz_ctx *ctx = (kz_ctx *)kz_test_alloc_(sizeof *ctx);
    ctx->next = s->ctxs;
    s->ctxs = ctx;
    s->live_ctx = ctx;
    s->cur_event = ev;
    s->npub_in_call = 0;
    s->phase = 2;
    char err[KZ_TEST_ERRLEN] = "";
    int rc = s->desc.handle(s->instance, ctx, ev, err, sizeof err);
    s->phase = 0;
    s->live_ctx = NULL;
    s->last_ctx = ctx;
    s->cur_event = NULL;
    for (size_t i = 0; i < s->ngetbufs; i++)
        free(s->getbufs[i]);
    s->ngetbufs = 0;

    if (rc != 0) {
        kz_test_kv_free_all_(s->kv, s->nkv);
        s->kv = snap;
        s->capkv = nkv ? nkv : 1;
        s->nkv = nkv;
        s->npub = npub; /* the events themselves stay on s->events until reset */
        while (s->nsent > nsent)
            kz_test_sent_free_(s->sent[--s->nsent]);
        while (s->ncalled > ncalled)
            kz_test_called_free_(s->called[--s->ncalled]);
        kz_test_friends_free_(s->friends, s->nfriends);
        s->friends = s->snap_friends;
        s->nfriends = s->capfriends = s->nsnap_friends;
        if (s->capfriends == 0)
            s->capfriends = 1; /* the copy has room for one */
        kz_test_timed_free_(s->timers, s->ntimers);
        s->timers = s->snap_timers;
        s->ntimers = s->nsnap_timers;
        s->captimers = s->ntimers ? s->ntimers : 1;
        if (err[0])
            kz_test_seterr_("%s", err);
        else
            kz_test_seterr_("handler returned %d", rc);
    } else {
        kz_test_kv_free_all_(snap, nkv);
        kz_test_friends_free_(s->snap_friends, s->nsnap_friends);
        kz_test_timed_free_(s->snap_timers, s->nsnap_timers);
    }
    s->snap_timers = NULL;
    s->nsnap_timers = 0;
    s->snap = NULL;
    s->nsnap = 0;
    s->snap_friends = NULL;
    s->nsnap_friends = 0;
    return rc;
}

/* The ctx of the last kz_test_handle() call: stale (every slot given it
 * returns KZ_ESTATE / NULL). */
KZ_TEST_FN kz_ctx *kz_test_last_ctx(void)
{
    return kz_test_s_.last_ctx;
}

/* Makes the next call of `slot` (KZ_TEST_FAIL_*) return rc (after its
 * argument checks), once. KZ_TEST_FAIL_LINE_SEND: the next send that would
 * be queued (a standby event's call returns 0 and leaves it armed). */
KZ_TEST_FN void kz_test_fail_next(int slot, int rc)
{
    if (slot >= 0 && slot < KZ_TEST_FAIL_COUNT_)
        kz_test_s_.fail[slot] = rc;
}

/* ---- plugin HTTP routes (ABI 1.2) --------------------------------------- */

/* Routes the instance registered in shop_open, in order. method NULL: any. */
KZ_TEST_FN size_t kz_test_route_count(void)
{
    return kz_test_s_.nroutes;
}
KZ_TEST_FN const char *kz_test_route_path(size_t i)
{
    return i < kz_test_s_.nroutes ? kz_test_s_.routes[i].path : NULL;
}
KZ_TEST_FN const char *kz_test_route_method(size_t i)
{
    return i < kz_test_s_.nroutes ? kz_test_s_.routes[i].method : NULL;
}

/* The host's choice: how specifically r matches path (0: not at all). */
KZ_TEST_FN size_t kz_test_route_score_(const kz_test_route_ *r, const char *path)
{
    size_t n = strlen(r->path);
    if (n == 0 || r->path[n - 1] != '*')
        return strcmp(r->path, path) == 0 ? 1024 : 0;
    return strlen(path) > n - 1 && strncmp(r->path, path, n - 1) == 0 ? n : 0;
}

KZ_TEST_FN int kz_test_route_takes_(const kz_test_route_ *r, const char *method)
{
    return r->method == NULL || strcmp(r->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
}

/* Appends m (and HEAD after GET) to the Allow list unless it is there. */
KZ_TEST_FN void kz_test_allow_add_(char *allow, size_t len, const char *m)
{
    char item[24];
    snprintf(item, sizeof item, ", %s,", m);
    char have[160];
    snprintf(have, sizeof have, ", %s,", allow);
    if (strstr(have, item) != NULL)
        return;
    size_t used = strlen(allow);
    snprintf(allow + used, len - used, "%s%s", used ? ", " : "", m);
    if (strcmp(m, "GET") == 0)
        kz_test_allow_add_(allow, len, "HEAD");
}

/* The route a request goes to, or NULL with allow filled when some route
 * matches the path but not the method. */
KZ_TEST_FN const kz_test_route_ *kz_test_route_find_(const char *method, const char *path,
                                                     char *allow, size_t allowlen)
{
    const kz_test_route_ *best = NULL;
    size_t best_score = 0;
    allow[0] = '\0';
    if (!kz_test_route_path_ok_(path, 0))
        return NULL;
    for (size_t i = 0; i < kz_test_s_.nroutes; i++) {
        const kz_test_route_ *r = &kz_test_s_.routes[i];
        size_t score = kz_test_route_score_(r, path);
        if (score == 0)
            continue;
        if (!kz_test_route_takes_(r, method)) {
            kz_test_allow_add_(allow, allowlen, r->method);
            continue;
        }
        score = 2 * score + (r->method != NULL);
        if (score > best_score) {
            best = r;
            best_score = score;
        }
    }
    return best;
}

/* The host's own answers: {"message":…} JSON, replacing the route's. */
KZ_TEST_FN void kz_test_http_error_(kz_http *req, int status, const char *msg, const char *allow)
{
    free(req->content_type);
    free(req->resp);
    for (size_t i = 0; i < req->nresp; i++)
        free(req->resp_headers[i]);
    req->nresp = 0;
    char body[256];
    snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg);
    req->content_type = kz_test_dup_("application/json");
    req->resp = kz_test_dup_(body);
    req->resp_len = strlen(body);
    req->status = status;
    if (allow != NULL && allow[0] != '\0')
        kz_test_resp_header_add_(req, "Allow", allow);
}

KZ_TEST_FN kz_http *kz_test_http_new_(const char *method, const char *target,
                                      const char *const *headers, const void *body, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_http *req = (kz_http *)kz_test_alloc_(sizeof *req);
    req->next = s->https;
    s->https = s->last_http = req;
    req->method = kz_test_dup_(method ? method : "GET");
    target = target ? target : "";
    const char *q = strchr(target, '?');
    req->path = kz_test_dupn_(target, q ? (size_t)(q - target) : strlen(target));
    req->query = q ? kz_test_dup_(q + 1) : NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        req->nheaders++;
    req->headers = (char **)kz_test_alloc_(sizeof *req->headers * (req->nheaders + 1));
    for (size_t i = 0; i < req->nheaders; i++)
        req->headers[i] = kz_test_dup_(headers[i]);
    req->body = kz_test_dupn_(body ? body : "", body ? len : 0);
    req->body_len = body ? len : 0;
    return req;
}

/* Records the request's events as the host stores them: a dedupe key
 * already stored is a duplicate, stored once. */
KZ_TEST_FN void kz_test_http_commit_(kz_http *req)
{
    struct kz_test_state_ *s = &kz_test_s_;
    for (size_t i = 0; i < req->nevents; i++) {
        int dup = 0;
        for (size_t k = 0; k < s->npub && strncmp(req->events[i]->id, "dedupe:", 7) == 0; k++)
            dup |= strcmp(s->pub[k]->id, req->events[i]->id) == 0;
        if (dup)
            continue;
        kz_test_grow_((void **)&s->pub, &s->cappub, s->npub, sizeof *s->pub);
        s->pub[s->npub++] = req->events[i];
    }
}

/* Sends a request to the instance's routes, as the host would for
 * /shops/<shop>/<plugin>/<target>: target is the path below the plugin's
 * root with an optional query ("orders?id=42"), headers "Name: value"
 * strings (NULL-terminated list, or NULL), body len bytes (NULL: none).
 * Returns the status the client gets: the route's, 404 (no route), 405
 * (with Allow), 500 (the route did not answer: its events are dropped), 503
 * (KZ_TEST_FAIL_ROUTE_STORE). The route's events are recorded (see
 * kz_test_published*) once it answered; an event's id is "dedupe:<key>"
 * with a dedupe key (stored once) and "ev-N" without. */
KZ_TEST_FN int kz_test_http(const char *method, const char *target, const char *const *headers,
                            const void *body, size_t len)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (!s->opened || s->phase != 0)
        fail_msg("kz_test_http: no open instance (kz_test_load failed or not called)");
    kz_http *req = kz_test_http_new_(method, target, headers, body, len);
    char allow[160];
    const kz_test_route_ *r = kz_test_route_find_(req->method, req->path, allow, sizeof allow);
    if (r == NULL) {
        kz_test_http_error_(req, allow[0] ? 405 : 404, allow[0] ? "method not allowed" : "no route",
                            allow);
        return req->status;
    }
    s->phase = 3;
    req->live = 1;
    r->fn(req, r->arg);
    req->live = 0;
    s->phase = 0;
    if (req->status == 0)
        kz_test_http_error_(req, 500, "the route did not answer", NULL);
    else if (req->nevents > 0 && kz_test_injected_(KZ_TEST_FAIL_ROUTE_STORE) != 0)
        kz_test_http_error_(req, 503, "events not stored", NULL);
    else
        kz_test_http_commit_(req);
    return req->status;
}

/* The last request's answer. */
KZ_TEST_FN int kz_test_http_status(void)
{
    return kz_test_s_.last_http ? kz_test_s_.last_http->status : 0;
}
KZ_TEST_FN const char *kz_test_http_body(size_t *len)
{
    const kz_http *h = kz_test_s_.last_http;
    if (len != NULL)
        *len = h ? h->resp_len : 0;
    return h ? h->resp : NULL;
}
KZ_TEST_FN const char *kz_test_http_content_type(void)
{
    return kz_test_s_.last_http ? kz_test_s_.last_http->content_type : NULL;
}
/* A response header (Location, Allow, …), name in any case; NULL if absent. */
KZ_TEST_FN const char *kz_test_http_header(const char *name)
{
    const kz_http *h = kz_test_s_.last_http;
    for (size_t i = 0; h != NULL && i < h->nresp; i++) {
        const char *v = kz_test_header_of_(h->resp_headers[i], name);
        if (v != NULL)
            return v;
    }
    return NULL;
}
/* The last request's handle: stale (every slot given it returns KZ_ESTATE
 * / NULL). */
KZ_TEST_FN kz_http *kz_test_last_http(void)
{
    return kz_test_s_.last_http;
}

KZ_TEST_FN void kz_test_http_free_(kz_http *h)
{
    char **lists[] = {h->headers, h->resp_headers, h->decoded};
    size_t counts[] = {h->nheaders, h->nresp, h->ndecoded};
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < counts[l]; i++)
            free(lists[l][i]);
        free(lists[l]);
    }
    free(h->method);
    free(h->path);
    free(h->query);
    free(h->body);
    free(h->content_type);
    free(h->resp);
    free(h->events); /* the events themselves are on kz_test_s_.events */
    free(h);
}

/* ---- what happened ----------------------------------------------------- */

/* Committed publishes whose topic equals `topic` (NULL: all). */
KZ_TEST_FN size_t kz_test_published_count(const char *topic)
{
    size_t n = 0;
    for (size_t i = 0; i < kz_test_s_.npub; i++)
        if (topic == NULL || strcmp(kz_test_s_.pub[i]->topic, topic) == 0)
            n++;
    return n;
}
/* The i-th committed publish (0-based, all topics), or NULL. It is a normal
 * event: pass it to kz_test_handle() to chain plugins' logic. */
KZ_TEST_FN const kz_event *kz_test_published(size_t i)
{
    return i < kz_test_s_.npub ? kz_test_s_.pub[i] : NULL;
}
KZ_TEST_FN const char *kz_test_published_topic(size_t i)
{
    return i < kz_test_s_.npub ? kz_test_s_.pub[i]->topic : NULL;
}
KZ_TEST_FN const char *kz_test_published_user(size_t i)
{
    return i < kz_test_s_.npub ? kz_test_s_.pub[i]->user : NULL;
}
KZ_TEST_FN const char *kz_test_published_payload(size_t i)
{
    return i < kz_test_s_.npub ? kz_test_s_.pub[i]->payload : NULL;
}
KZ_TEST_FN const char *kz_test_published_id(size_t i)
{
    return i < kz_test_s_.npub ? kz_test_s_.pub[i]->id : NULL;
}

/* Committed LINE sends, in the order they were made (all kinds). */
KZ_TEST_FN size_t kz_test_sent_count(void)
{
    return kz_test_s_.nsent;
}
/* The i-th committed LINE send (0-based), or NULL. */
KZ_TEST_FN const kz_test_line_sent *kz_test_sent(size_t i)
{
    return i < kz_test_s_.nsent ? &kz_test_s_.sent[i]->v : NULL;
}

/* Pending timers (ABI 1.4), in the order they were set (a re-set key
 * moves to the end). */
KZ_TEST_FN size_t kz_test_timer_count(void)
{
    return kz_test_s_.ntimers;
}
/* The i-th pending timer (0-based), or NULL; valid until the next handler
 * or kz_test_fire_timers. */
KZ_TEST_FN const kz_test_timed *kz_test_timer(size_t i)
{
    return i < kz_test_s_.ntimers ? &kz_test_s_.timers[i] : NULL;
}

/* Fires the timers due on the fake clock, as the host's pump does: up to
 * max of them, earliest due first (then set order), each removed and made
 * an event (id "timer:<seq>", time its due_ms, the timer's topic, user and
 * payload) stored in out[]. Returns how many fired; pass each event to
 * kz_test_handle() in order. Call it outside handlers. */
KZ_TEST_FN size_t kz_test_fire_timers(kz_event **out, size_t max)
{
    struct kz_test_state_ *s = &kz_test_s_;
    size_t n = 0;
    while (n < max) {
        long best = -1;
        for (size_t i = 0; i < s->ntimers; i++) {
            const kz_test_timed *t = &s->timers[i];
            if (t->due_ms <= s->now && (best < 0 || t->due_ms < s->timers[best].due_ms))
                best = (long)i; /* strict <: the earlier set wins a tie */
        }
        if (best < 0)
            break;
        const kz_test_timed *t = &s->timers[best];
        char id[48];
        snprintf(id, sizeof id, "timer:%lu", t->seq);
        kz_event *ev = kz_test_event_new_(t->topic, NULL, t->user, id, t->payload, t->payload_len);
        ev->time_ms = t->due_ms;
        out[n++] = ev;
        kz_test_timer_drop_((size_t)best);
    }
    return n;
}

/* Committed API calls (kz_line_call_req and its wrappers), in order. */
KZ_TEST_FN size_t kz_test_called_count(void)
{
    return kz_test_s_.ncalled;
}
/* The i-th committed API call (0-based), or NULL. */
KZ_TEST_FN const kz_test_line_called *kz_test_called(size_t i)
{
    return i < kz_test_s_.ncalled ? &kz_test_s_.called[i]->v : NULL;
}

KZ_TEST_FN size_t kz_test_log_count(void)
{
    return kz_test_s_.nlogs;
}
KZ_TEST_FN const char *kz_test_log_line(size_t i)
{
    return i < kz_test_s_.nlogs ? kz_test_s_.logs[i].msg : NULL;
}
KZ_TEST_FN int kz_test_log_level(size_t i)
{
    return i < kz_test_s_.nlogs ? kz_test_s_.logs[i].level : -1;
}
/* Number of log lines containing `needle`. */
KZ_TEST_FN size_t kz_test_log_find(const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < kz_test_s_.nlogs; i++)
        if (strstr(kz_test_s_.logs[i].msg, needle) != NULL)
            n++;
    return n;
}

/* Subscriptions: the descriptor's static ones, then kz_subscribe()'s. */
KZ_TEST_FN size_t kz_test_subscription_count(void)
{
    return kz_test_s_.nsubs;
}
KZ_TEST_FN const char *kz_test_subscription(size_t i)
{
    return i < kz_test_s_.nsubs ? kz_test_s_.subs[i] : NULL;
}
/* 1 when some subscription matches topic (the host would dispatch it). */
KZ_TEST_FN int kz_test_subscribed(const char *topic)
{
    for (size_t i = 0; i < kz_test_s_.nsubs; i++)
        if (kz_test_pattern_match_(kz_test_s_.subs[i], topic))
            return 1;
    return 0;
}

/* The committed value of key (NUL-terminated; *len if len != NULL), or NULL.
 * Valid until the next store change. */
KZ_TEST_FN const char *kz_test_kv_get(const char *key, size_t *len)
{
    kz_test_kv_ *e = kz_test_kv_find_(key);
    if (e != NULL && len != NULL)
        *len = e->len;
    return e ? e->val : NULL;
}
/* Seeds the store outside any handler (val NUL-terminated when len is 0). */
KZ_TEST_FN void kz_test_kv_put(const char *key, const char *val, size_t len)
{
    kz_test_init_();
    kz_test_kv_set_(key, val, len ? len : strlen(val));
}
KZ_TEST_FN size_t kz_test_kv_count(void)
{
    return kz_test_s_.nkv;
}

/* ---- the friend registry, seen from the test (ABI 1.3) ------------------ */

/* Declares a friend attribute as the shop's friends.attributes does: type
 * "string", "number", "bool" or "date". friend_attr_set refuses undeclared
 * names (KZ_ENOTFOUND) and values of another type (KZ_ETYPE). */
KZ_TEST_FN void kz_test_declare_attribute(const char *name, const char *type)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_init_();
    if (!kz_test_name_valid_(name) || type == NULL ||
        (strcmp(type, "string") != 0 && strcmp(type, "number") != 0 && strcmp(type, "bool") != 0 &&
         strcmp(type, "date") != 0))
        fail_msg("kz_test_declare_attribute: bad name or type (string, number, bool, date)");
    if (kz_test_attr_decl_find_(name) != NULL)
        fail_msg("kz_test_declare_attribute: '%s' declared twice", name);
    kz_test_grow_((void **)&s->attrs, &s->capattrs, s->nattrs, sizeof *s->attrs);
    s->attrs[s->nattrs].name = kz_test_dup_(name);
    snprintf(s->attrs[s->nattrs++].type, sizeof s->attrs[0].type, "%s", type);
}

KZ_TEST_FN kz_test_friend_ *kz_test_friend_seed_(const char *what, const char *user)
{
    kz_test_init_();
    if (!kz_test_user_ok_(user))
        fail_msg("%s: \"%s\" is not a LINE user id (U + 32 hex digits)", what,
                 user ? user : "(null)");
    if (kz_test_s_.phase != 0)
        fail_msg("%s: seed friends outside callbacks", what);
    return kz_test_friend_make_(user);
}

/* Seeds a friend (outside handlers; no events): following (1) since now,
 * or blocked (0) since now after one follow. Calling it again updates the
 * follow state. Other fields: the setters below. */
KZ_TEST_FN void kz_test_friend_add(const char *user, int following)
{
    kz_test_friend_ *f = kz_test_friend_seed_("kz_test_friend_add", user);
    int64_t now = kz_test_s_.now;
    if (f->follows == 0) {
        f->follows = 1;
        f->first_follow = f->last_follow = now;
    }
    f->following = following != 0;
    f->unfollow = following ? 0 : now;
}

/* Times in ms since the epoch; 0 is null ("never"). */
KZ_TEST_FN void kz_test_friend_set_times(const char *user, int64_t first_follow,
                                         int64_t last_follow, int64_t unfollow,
                                         int64_t first_active, int64_t last_active)
{
    kz_test_friend_ *f = kz_test_friend_seed_("kz_test_friend_set_times", user);
    f->first_follow = first_follow;
    f->last_follow = last_follow;
    f->unfollow = unfollow;
    f->first_active = first_active;
    f->last_active = last_active;
}

KZ_TEST_FN void kz_test_friend_set_follows(const char *user, int64_t follows)
{
    kz_test_friend_seed_("kz_test_friend_set_follows", user)->follows = follows;
}

/* The profile (each may be NULL: null in friend_get). */
KZ_TEST_FN void kz_test_friend_set_profile(const char *user, const char *display_name,
                                           const char *picture_url, const char *status_message,
                                           const char *language)
{
    kz_test_friend_ *f = kz_test_friend_seed_("kz_test_friend_set_profile", user);
    const char *v[4] = {display_name, picture_url, status_message, language};
    for (int i = 0; i < 4; i++) {
        free(f->profile[i]);
        f->profile[i] = kz_test_dup_(v[i]);
    }
}

KZ_TEST_FN void kz_test_friend_add_tag(const char *user, const char *tag)
{
    kz_test_friend_ *f = kz_test_friend_seed_("kz_test_friend_add_tag", user);
    if (!kz_test_utf8_text_ok_(tag, 100))
        fail_msg("kz_test_friend_add_tag: bad tag");
    if (kz_test_tag_index_(f, tag) == f->ntags) {
        kz_test_grow_((void **)&f->tags, &f->captags, f->ntags, sizeof *f->tags);
        f->tags[f->ntags++] = kz_test_dup_(tag);
    }
}

/* json_value as friend_attr_set takes it (declared, of its type; "null"
 * removes). */
KZ_TEST_FN void kz_test_friend_set_attr(const char *user, const char *name, const char *json_value)
{
    kz_test_friend_ *f = kz_test_friend_seed_("kz_test_friend_set_attr", user);
    char *v = kz_test_json_trim_(json_value);
    int rc = v ? kz_test_attr_check_(user, name, v) : KZ_EINVAL;
    if (rc != 0) {
        free(v);
        fail_msg("kz_test_friend_set_attr: %s = %s refused (%d)", name ? name : "(null)",
                 json_value ? json_value : "(null)", rc);
    }
    kz_test_pair_set_(&f->attrs, &f->nattrs, &f->capattrs, name, strcmp(v, "null") == 0 ? NULL : v);
    free(v);
}

/* Links user to member at source (NULL unlinks); the member leaves any
 * other friend, as with friend_link. */
KZ_TEST_FN void kz_test_friend_set_link(const char *user, const char *source, const char *member)
{
    kz_test_friend_seed_("kz_test_friend_set_link", user);
    if (!kz_test_source_ok_(source) || (member && !kz_test_utf8_text_ok_(member, 200)))
        fail_msg("kz_test_friend_set_link: bad source or member id");
    kz_test_friend_ *other = member ? kz_test_link_holder_(source, member) : NULL;
    if (other != NULL)
        kz_test_pair_set_(&other->links, &other->nlinks, &other->caplinks, source, NULL);
    kz_test_friend_ *f = kz_test_friend_find_(user);
    kz_test_pair_set_(&f->links, &f->nlinks, &f->caplinks, source, member);
}

/* Committed state: friends known, and one friend's tag, attribute (its
 * JSON text) and link (member id). NULL / 0 when absent. */
KZ_TEST_FN size_t kz_test_friend_count(void)
{
    return kz_test_s_.nfriends;
}
KZ_TEST_FN int kz_test_friend_has_tag(const char *user, const char *tag)
{
    const kz_test_friend_ *f = kz_test_friend_find_(user);
    return f != NULL && tag != NULL && kz_test_tag_index_(f, tag) < f->ntags;
}
KZ_TEST_FN size_t kz_test_friend_tag_count(const char *user)
{
    const kz_test_friend_ *f = kz_test_friend_find_(user);
    return f ? f->ntags : 0;
}
KZ_TEST_FN const char *kz_test_friend_attr(const char *user, const char *name)
{
    kz_test_friend_ *f = kz_test_friend_find_(user);
    const kz_test_pair_ *e = f && name ? kz_test_pair_find_(f->attrs, f->nattrs, name) : NULL;
    return e ? e->value : NULL;
}
KZ_TEST_FN const char *kz_test_friend_link(const char *user, const char *source)
{
    kz_test_friend_ *f = kz_test_friend_find_(user);
    const kz_test_pair_ *e = f && source ? kz_test_pair_find_(f->links, f->nlinks, source) : NULL;
    return e ? e->value : NULL;
}

/* Closes the instance and unloads the plugin (shop_close, unload), keeping
 * the recordings. kz_test_reset() does it too. */
KZ_TEST_FN void kz_test_close(void)
{
    struct kz_test_state_ *s = &kz_test_s_;
    if (s->opened && s->desc.shop_close != NULL)
        s->desc.shop_close(s->instance);
    if (s->loaded && s->desc.unload != NULL)
        s->desc.unload(s->plugin_state);
    s->opened = s->loaded = 0;
    s->instance = s->plugin_state = NULL;
    /* as in the host: no route is reachable after shop_close */
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    free(s->routes);
    s->routes = NULL;
    s->nroutes = s->caproutes = 0;
}

/* Closes the plugin and frees everything; back to the defaults. */
KZ_TEST_FN void kz_test_reset(void)
{
    struct kz_test_state_ *s = &kz_test_s_;
    kz_test_close();
    kz_test_kv_free_all_(s->kv, s->nkv);
    if (s->snap != NULL)
        kz_test_kv_free_all_(s->snap, s->nsnap);
    free(s->pub);
    for (size_t i = 0; i < s->nsent; i++)
        kz_test_sent_free_(s->sent[i]);
    free(s->sent);
    for (size_t i = 0; i < s->ncalled; i++)
        kz_test_called_free_(s->called[i]);
    free(s->called);
    for (size_t i = 0; i < s->nlogs; i++)
        free(s->logs[i].msg);
    free(s->logs);
    for (size_t i = 0; i < s->nsubs; i++)
        free(s->subs[i]);
    free(s->subs);
    while (s->events != NULL) {
        kz_event *ev = s->events;
        s->events = ev->next;
        free(ev->topic);
        free(ev->shop);
        free(ev->user);
        free(ev->id);
        free(ev->payload);
        free(ev);
    }
    while (s->ctxs != NULL) {
        kz_ctx *c = s->ctxs;
        s->ctxs = c->next;
        free(c);
    }
    for (size_t i = 0; i < s->ngetbufs; i++)
        free(s->getbufs[i]);
    free(s->getbufs);
    while (s->roots != NULL) {
        kz_setting *r = s->roots;
        s->roots = r->next_root;
        kz_test_setting_free_(r);
    }
    while (s->https != NULL) {
        kz_http *h = s->https;
        s->https = h->next;
        kz_test_http_free_(h);
    }
    kz_test_friends_free_(s->friends, s->nfriends);
    if (s->snap_friends != NULL)
        kz_test_friends_free_(s->snap_friends, s->nsnap_friends);
    for (size_t i = 0; i < s->nattrs; i++)
        free(s->attrs[i].name);
    free(s->attrs);
    kz_test_timed_free_(s->timers, s->ntimers);
    if (s->snap_timers != NULL)
        kz_test_timed_free_(s->snap_timers, s->nsnap_timers);
    memset(s, 0, sizeof *s);
    kz_test_init_();
}

/* CMocka fixtures: fresh fake before, everything freed after. */
KZ_TEST_FN int kz_test_setup(void **state)
{
    (void)state;
    kz_test_reset();
    return 0;
}
KZ_TEST_FN int kz_test_teardown(void **state)
{
    (void)state;
    kz_test_reset();
    return 0;
}

/* Asserts rc == 0 and shows kz_test_error() when it is not. */
#define kz_assert_ok(expr)                                                                         \
    do {                                                                                           \
        int kz_rc_ = (expr);                                                                       \
        if (kz_rc_ != 0)                                                                           \
            fail_msg("%s returned %d: %s", #expr, kz_rc_, kz_test_error());                        \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_TESTING_H */
