/*
 * Plugin HTTP routes.
 *
 * The registry alone (core/routes.h): matching precedence, 405's Allow,
 * refusals, and removal that waits for a callback in flight.
 *
 * Then /shops/<shop>/<plugin>/… for real: a config with shop `a` (the
 * fx_routes fixture), shop `b` (fx_routes failing its shop_open after
 * registering a route) and shop `c` (no plugin), the real bus and store,
 * libmicrohttpd on 127.0.0.1:<free port>, libcurl as the EC platform or the
 * user's browser. The bus's workers are not started: tests hand events to
 * the fixture's handler with bus_run_until_idle, after the answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include "bus.h"
#include "daemon.h"
#include "httpreq.h"
#include "ingress.h"
#include "metrics.h"
#include "routes.h"
#include "store.h"
#include "support.h"

#define MAX_BODY 4096
#define USER "U4af4980629aaaaaaaaaaaaaaaaaaaaaa"

/* ---- the registry alone --------------------------------------------------- */

/* Two distinct owners: only their addresses matter to the registry. */
static kz_shop owner1, owner2;

/* The route function records its arg, so a lookup shows which route won. */
static const char *called_with;
static void record(kz_http *req, void *arg)
{
    (void)req;
    called_with = arg;
}

static void add(routes *r, kz_shop *owner, const char *method, const char *path, const char *tag)
{
    char err[256];
    int rc = routes_add(r, owner, "s", "p", method, path, record, (void *)tag, err, sizeof err);
    if (rc != 0)
        fail_msg("routes_add %s %s: %s", method ? method : "(any)", path, err);
}

/* The tag of the route a request reaches, "404", or "405 <Allow>". */
static const char *winner(routes *r, const char *path, const char *method)
{
    static char out[160];
    route *rt = NULL;
    char allow[128];
    route_lookup l = routes_find(r, "s", "p", path, method, &rt, allow, sizeof allow);
    if (l != ROUTE_FOUND) {
        assert_null(rt);
        snprintf(out, sizeof out, "%s%s", l == ROUTE_NO_METHOD ? "405 " : "404", allow);
        return out;
    }
    called_with = NULL;
    route_call(rt, NULL);
    routes_release(r, rt);
    snprintf(out, sizeof out, "%s", called_with);
    return out;
}

static void registry_precedence(void **state)
{
    (void)state;
    routes *r;
    char err[256];
    assert_int_equal(routes_new(&r, err, sizeof err), 0);
    add(r, &owner1, "GET", "", "root");
    add(r, &owner1, "GET", "*", "star");
    add(r, &owner1, "GET", "items/*", "items");
    add(r, &owner1, "GET", "items/red/*", "red");
    add(r, &owner1, "GET", "items/red/1", "red1");
    add(r, &owner1, NULL, "hook", "hook-any");
    add(r, &owner1, "POST", "hook", "hook-post");
    add(r, &owner1, "DELETE", "only", "only-del");
    add(r, &owner1, "PUT", "only", "only-put");
    assert_string_equal(winner(r, "", "GET"), "root");
    assert_string_equal(winner(r, "x", "GET"), "star");
    assert_string_equal(winner(r, "items", "GET"), "star"); /* "items/" + star needs more */
    assert_string_equal(winner(r, "items/blue", "GET"), "items");
    assert_string_equal(winner(r, "items/red/2", "GET"), "red");
    assert_string_equal(winner(r, "items/red/1", "GET"), "red1");
    assert_string_equal(winner(r, "items/red/1/x", "GET"), "red");
    assert_string_equal(winner(r, "items/red/1", "HEAD"), "red1"); /* GET takes HEAD */
    /* a method of its own beats any method at the same path */
    assert_string_equal(winner(r, "hook", "POST"), "hook-post");
    assert_string_equal(winner(r, "hook", "PATCH"), "hook-any");
    /* a less specific route that takes the method is used before 405 */
    assert_string_equal(winner(r, "only", "GET"), "star");
    assert_string_equal(winner(r, "items/red/1", "POST"), "405 GET, HEAD");
    assert_string_equal(winner(r, "", "POST"), "405 GET, HEAD");
    /* another shop or plugin sees none of them */
    route *rt = NULL;
    assert_int_equal(routes_find(r, "s", "q", "x", "GET", &rt, NULL, 0), ROUTE_NO_PATH);
    assert_int_equal(routes_find(r, "t", "p", "x", "GET", &rt, NULL, 0), ROUTE_NO_PATH);
    assert_null(rt);
    routes_free(r);
}

static void registry_refusals(void **state)
{
    (void)state;
    routes *r;
    char err[256];
    assert_int_equal(routes_new(&r, err, sizeof err), 0);
    add(r, &owner1, "GET", "click", "c");
    assert_int_equal(
        routes_add(r, &owner1, "s", "p", "GET", "click", record, NULL, err, sizeof err), KZ_EEXIST);
    assert_string_equal(err, "route GET 'click' is already registered");
    /* another method, or NULL (any), is another route */
    add(r, &owner1, "POST", "click", "c-post");
    add(r, &owner1, NULL, "click", "c-any");
    assert_int_equal(routes_add(r, &owner1, "s", "p", NULL, "click", record, NULL, err, sizeof err),
                     KZ_EEXIST);
    /* the same path for another instance (another shop) is fine */
    assert_int_equal(
        routes_add(r, &owner2, "t", "p", "GET", "click", record, NULL, err, sizeof err), 0);
    static const char *const bad[] = {"/click", "a/../b", "..",   "a/./b", "a//b",
                                      "a/",     "a/*/b",  "a*",   "*/a",   "a/b*",
                                      "a?b",    "a#b",    "a\tb", "**",    "a/**"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (routes_add(r, &owner1, "s", "p", "GET", bad[i], record, NULL, err, sizeof err) !=
            KZ_EINVAL)
            fail_msg("path '%s' accepted", bad[i]);
    assert_int_equal(routes_add(r, &owner1, "s", "p", "GET", NULL, record, NULL, err, sizeof err),
                     KZ_EINVAL);
    assert_int_equal(routes_add(r, &owner1, "s", "p", "get", "x", record, NULL, err, sizeof err),
                     KZ_EINVAL);
    assert_int_equal(routes_add(r, &owner1, "s", "p", "", "x", record, NULL, err, sizeof err),
                     KZ_EINVAL);
    assert_int_equal(routes_add(r, &owner1, "s", "p", "GET", "x", NULL, NULL, err, sizeof err),
                     KZ_EINVAL);
    assert_int_equal(routes_count(r, &owner1), 3);
    assert_int_equal(routes_count(r, NULL), 4);
    /* request paths */
    assert_true(routes_request_path_ok(""));
    assert_true(routes_request_path_ok("a/b.c/d"));
    assert_false(routes_request_path_ok("a/../b"));
    assert_false(routes_request_path_ok("a//b"));
    assert_false(routes_request_path_ok("a/"));
    assert_false(routes_request_path_ok("."));
    routes_free(r);
}

typedef struct remover {
    routes *r;
    atomic_int done;
} remover;

static void *remove_owner1(void *arg)
{
    remover *rm = arg;
    routes_remove_owner(rm->r, &owner1);
    atomic_store(&rm->done, 1);
    return NULL;
}

/* shop_close's promise: once removal returns, no callback runs on the
 * owner's routes, and none is reachable any more. */
static void registry_removal_waits_for_callbacks(void **state)
{
    (void)state;
    remover rm = {0};
    char err[256];
    assert_int_equal(routes_new(&rm.r, err, sizeof err), 0);
    add(rm.r, &owner1, "GET", "click", "c");
    add(rm.r, &owner2, "GET", "other", "o");
    route *held = NULL;
    assert_int_equal(routes_find(rm.r, "s", "p", "click", "GET", &held, NULL, 0), ROUTE_FOUND);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, remove_owner1, &rm), 0);
    /* unlinked at once: new lookups miss it while the holder still runs */
    route *rt = NULL;
    for (int i = 0; i < 10000 && routes_count(rm.r, &owner1) > 0; i++)
        ts_nap_ms(1); /* bounded poll */
    assert_int_equal(routes_count(rm.r, &owner1), 0);
    assert_int_equal(routes_find(rm.r, "s", "p", "click", "GET", &rt, NULL, 0), ROUTE_NO_PATH);
    /* the remover cannot be done while the route is held */
    assert_int_equal(atomic_load(&rm.done), 0);
    assert_string_equal(winner(rm.r, "other", "GET"), "o"); /* others unaffected */
    route_call(held, NULL);
    assert_string_equal(called_with, "c");
    routes_release(rm.r, held);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&rm.done), 1);
    assert_int_equal(routes_count(rm.r, NULL), 1);
    routes_free(rm.r);
}

static void dedupe_uid(void **state)
{
    (void)state;
    char u1[37], u2[37], u3[37], u4[37];
    httpreq_dedupe_uid("a", "fx_routes", "order-42", u1);
    httpreq_dedupe_uid("a", "fx_routes", "order-42", u2);
    httpreq_dedupe_uid("a", "fx_routes", "order-43", u3);
    httpreq_dedupe_uid("a", "fx_route", "sorder-42", u4); /* no collision by shifting */
    assert_string_equal(u1, u2);
    assert_string_not_equal(u1, u3);
    assert_string_not_equal(u1, u4);
    assert_int_equal(strlen(u1), 36);
    assert_int_equal(u1[14], '8'); /* RFC 9562 version 8 */
    assert_true(strchr("89ab", u1[19]) != NULL);
}

/* ---- end to end ------------------------------------------------------------ */

typedef struct env {
    char dir[64];
    char conf[128];
    app a;
    bus *b;
    store *st; /* the test's own connection */
    metrics *m;
    ingress *in;
    char base[64];
} env;

static void write_conf(env *e)
{
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; plugin_path = \"%s\"; workers = 1;\n"
                  "  log_level = \"error\"; max_body = %d; };\n"
                  "shops = (\n"
                  "  { id = \"a\"; plugins = { fx_routes = { block_dir = \"%s\"; }; }; },\n"
                  "  { id = \"b\"; plugins = { fx_routes = { fail_open = true; }; }; },\n"
                  "  { id = \"c\"; plugins = { }; }\n"
                  ");\n",
                  e->dir, KZ_ROUTES_FIXTURES, MAX_BODY, e->dir);
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "routes");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    write_conf(e);
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_int_equal(app_open_instances(&e->a, e->b), 1); /* b's shop_open fails */
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    assert_int_equal(metrics_new(&e->m), 0);
    ingress_options io = {
        .listen = "127.0.0.1:0", .max_body = e->a.c->max_body, .c = e->a.c, .b = e->b, .m = e->m};
    ts_ingress_start(&io, &e->in, e->base, sizeof e->base);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    ingress_stop(e->in);
    bus_free(e->b);
    store_close(e->st);
    metrics_free(e->m);
    app_free(&e->a);
    ts_rmdir(e->dir);
    free(e);
    return 0;
}

/* The shop's fx_routes instance (the core's friends instance is there too). */
static const bus_instance *inst_of(env *e, const char *shop)
{
    return ts_instance(e->b, shop, "fx_routes");
}

/* A kv value of shop a's fx_routes as text, or "" when absent. */
static const char *kv(env *e, const char *key)
{
    static char out[4096];
    ts_kv(e->st, inst_of(e, "a")->id, key, out, sizeof out);
    return out;
}

static size_t events_after(env *e, int64_t after, store_batch *b)
{
    return ts_events_after(e->st, "a", after, b);
}

static size_t stored_count(env *e)
{
    store_batch b = {0};
    size_t n = events_after(e, 0, &b);
    store_batch_free(&b);
    return n;
}

static void run_handlers(env *e)
{
    char err[256];
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

/* ---- HTTP client ---- */

typedef ts_resp resp;

/* One request. header: one extra "Name: value" line or NULL; body of len
 * bytes or NULL. Returns the status. */
static long request(env *e, const char *method, const char *path, const char *header,
                    const char *body, size_t len, resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", e->base, path);
    const char *hdrs[] = {header, NULL};
    return ts_http(NULL, method, url, hdrs, body, len, 0, r);
}

static long get(env *e, const char *path, resp *r)
{
    return request(e, "GET", path, NULL, NULL, 0, r);
}

static long post(env *e, const char *path, const char *body, resp *r)
{
    return request(e, "POST", path, NULL, body, strlen(body), r);
}

/* ---- the tests ---- */

static void answers_from_routes(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/hello", &r), 200);
    assert_string_equal(r.body, "shop=a method=GET path=hello q=- h=-");
    assert_string_equal(ts_header(&r, "Content-Type"), "text/plain; charset=utf-8");
    assert_int_equal(get(e, "/shops/a/fx_routes/items/x/y", &r), 200);
    assert_string_equal(r.body, "item items/x/y");
    assert_int_equal(get(e, "/shops/a/fx_routes/items/special", &r), 200);
    assert_string_equal(r.body, "special");
    assert_int_equal(get(e, "/shops/a/fx_routes", &r), 200);
    assert_string_equal(r.body, "root");
    assert_int_equal(get(e, "/shops/a/fx_routes/", &r), 200);
    assert_string_equal(r.body, "root");
    assert_int_equal(request(e, "PATCH", "/shops/a/fx_routes/any", NULL, NULL, 0, &r), 200);
    assert_string_equal(r.body, "PATCH");
    assert_int_equal(request(e, "HEAD", "/shops/a/fx_routes/hello", NULL, NULL, 0, &r), 200);
    assert_string_equal(r.body, "");
    assert_int_equal(request(e, "DELETE", "/shops/a/fx_routes/multi", NULL, NULL, 0, &r), 200);
    assert_string_equal(r.body, "multi");
}

static void redirect_with_location(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/click", &r), 302);
    assert_string_equal(ts_header(&r, "Location"), "https://shop.example/items/123?from=line");
}

static void not_found_and_not_allowed(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(get(e, "/shops/zz/fx_routes/hello", &r), 404);
    assert_string_equal(r.body, "{\"message\":\"unknown shop 'zz'\"}");
    assert_string_equal(ts_header(&r, "Content-Type"), "application/json");
    assert_int_equal(get(e, "/shops/c/fx_routes/hello", &r), 404);
    assert_string_equal(r.body, "{\"message\":\"plugin 'fx_routes' is not enabled for shop 'c'\"}");
    assert_int_equal(get(e, "/shops/a/fx_other/hello", &r), 404);
    assert_int_equal(get(e, "/shops/a/fx_routes/nope", &r), 404);
    assert_string_equal(r.body,
                        "{\"message\":\"plugin 'fx_routes' of shop 'a' has no route 'nope'\"}");
    assert_int_equal(get(e, "/shops/a/fx_routes/items/", &r), 404);         /* empty segment */
    assert_int_equal(get(e, "/shops/a/fx_routes/items/../hello", &r), 404); /* never resolved */
    assert_int_equal(get(e, "/shops/", &r), 404);
    assert_int_equal(get(e, "/shops/a", &r), 404);
    /* shop b's shop_open failed after registering "ghost": nothing is left */
    assert_int_equal(get(e, "/shops/b/fx_routes/ghost", &r), 404);
    assert_int_equal(routes_count(bus_routes(e->b), &inst_of(e, "b")->shop), 0);
    assert_int_equal(post(e, "/shops/a/fx_routes/hello", "{}", &r), 405);
    assert_string_equal(ts_header(&r, "Allow"), "GET, HEAD");
    assert_string_equal(r.body, "{\"message\":\"method POST not allowed; use GET, HEAD\"}");
    assert_int_equal(request(e, "PUT", "/shops/a/fx_routes/multi", NULL, NULL, 0, &r), 405);
    assert_string_equal(ts_header(&r, "Allow"), "GET, HEAD, DELETE");
}

static void route_without_answer_is_500(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/forget", &r), 500);
    assert_string_equal(r.body, "{\"message\":\"the route did not answer\"}");
    assert_int_equal(stored_count(e), 0); /* what it published is dropped */
}

static void query_and_headers(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(request(e, "GET", "/shops/a/fx_routes/hello?x=1&q=caf%C3%A9+%26%20b",
                             "x-PROBE: v1", NULL, 0, &r),
                     200);
    assert_string_equal(r.body, "shop=a method=GET path=hello q=café & b h=v1");
    assert_int_equal(get(e, "/shops/a/fx_routes/hello?q", &r), 200); /* no value: "" */
    assert_string_equal(r.body, "shop=a method=GET path=hello q= h=-");
}

static void body_passed_through(void **state)
{
    env *e = *state;
    resp r;
    static const char body[] = "bin\0ary\r\nbody";
    assert_int_equal(request(e, "POST", "/shops/a/fx_routes/echo", NULL, body, sizeof body - 1, &r),
                     200);
    assert_int_equal(r.len, sizeof body - 1);
    assert_memory_equal(r.body, body, sizeof body - 1);
    assert_string_equal(ts_header(&r, "X-Body-Len"), "13");
    assert_string_equal(ts_header(&r, "Content-Type"), "application/octet-stream");
    assert_int_equal(request(e, "POST", "/shops/a/fx_routes/echo", NULL, "", 0, &r), 200);
    assert_string_equal(ts_header(&r, "X-Body-Len"), "0");
}

static void body_over_limit_is_413(void **state)
{
    env *e = *state;
    resp r;
    char *big = malloc(MAX_BODY + 2);
    assert_non_null(big);
    memset(big, 'x', MAX_BODY + 1);
    big[MAX_BODY + 1] = '\0';
    assert_int_equal(post(e, "/shops/a/fx_routes/echo", big, &r), 413);
    assert_string_equal(r.body, "{\"message\":\"body over 4096 bytes\"}");
    /* chunked: no Content-Length, refused once the body passed the limit */
    assert_int_equal(request(e, "POST", "/shops/a/fx_routes/echo", "Transfer-Encoding: chunked",
                             big, MAX_BODY + 1, &r),
                     413);
    big[MAX_BODY] = '\0';
    assert_int_equal(post(e, "/shops/a/fx_routes/echo", big, &r), 200);
    assert_string_equal(ts_header(&r, "X-Body-Len"), "4096");
    free(big);
}

static void published_event_stored_before_answer(void **state)
{
    env *e = *state;
    resp r;
    const char *order = "{\"order\":\"A-1\",\"total\":4200}";
    assert_int_equal(post(e, "/shops/a/fx_routes/orders?user=" USER, order, &r), 202);
    assert_string_equal(r.body, "accepted");
    /* committed by the time the answer arrived: visible to another connection */
    store_batch b = {0};
    assert_int_equal(events_after(e, 0, &b), 1);
    assert_string_equal(b.ev[0].topic, "ec.order.created");
    assert_string_equal(b.ev[0].user, USER);
    assert_string_equal(b.ev[0].payload, order);
    store_batch_free(&b);
    /* and handled like any event: the fixture's handler saw it */
    assert_string_equal(kv(e, "orders"), "");
    run_handlers(e);
    assert_string_equal(kv(e, "orders"), "1");
    assert_string_equal(kv(e, "last_order"), order);
}

static void dedupe_key_stores_once(void **state)
{
    env *e = *state;
    resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(post(e, "/shops/a/fx_routes/orders?id=A-2", "{\"order\":\"A-2\"}", &r),
                         202);
        assert_string_equal(r.body, "accepted");
    }
    store_batch b = {0};
    assert_int_equal(events_after(e, 0, &b), 1);
    char uid[37];
    httpreq_dedupe_uid("a", "fx_routes", "A-2", uid);
    assert_string_equal(b.ev[0].uid, uid);
    assert_null(b.ev[0].user);
    store_batch_free(&b);
    /* without a key every request is an event */
    assert_int_equal(post(e, "/shops/a/fx_routes/orders", "{}", &r), 202);
    assert_int_equal(post(e, "/shops/a/fx_routes/orders", "{}", &r), 202);
    assert_int_equal(stored_count(e), 3);
    run_handlers(e);
    assert_string_equal(kv(e, "orders"), "3");
}

/* The store refuses the event (a trigger stands in for a full disk): the
 * client gets 503, so an EC platform delivers again, and nothing is kept. */
static void store_failure_is_503(void **state)
{
    env *e = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/k.db", e->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER refuse BEFORE INSERT ON events"
                                  " WHEN NEW.topic = 'ec.fail'"
                                  " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    resp r;
    assert_int_equal(post(e, "/shops/a/fx_routes/orders?topic=ec.fail", "{}", &r), 503);
    assert_non_null(strstr(r.body, "events not stored"));
    assert_non_null(strstr(r.body, "refused by the test"));
    assert_int_equal(stored_count(e), 0);
    assert_int_equal(post(e, "/shops/a/fx_routes/orders", "{}", &r), 202); /* others go on */
    assert_int_equal(stored_count(e), 1);
}

static void misuse_is_refused(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/badpub", &r), 200);
    assert_string_equal(r.body,
                        "topic=-1 json=-1 emptykey=-1 clen=-1 crlf=-1 status=-1 redirect=-1");
    assert_int_equal(stored_count(e), 0);
    assert_int_equal(get(e, "/shops/a/fx_routes/twice", &r), 200);
    assert_string_equal(r.body, "first");
    assert_int_equal(get(e, "/shops/a/fx_routes/selftest", &r), 200);
    assert_string_equal(r.body, "dup=-10 abs=-1 dotdot=-1 empty=-1 midstar=-1 partstar=-1 "
                                "method=-1 nofn=-1 second=-7");
}

static void route_outside_shop_open_refused(void **state)
{
    env *e = *state;
    char err[256];
    bus_msg m = {.shop = "a", .topic = "test.late"};
    assert_int_equal(bus_publish(e->b, &m, 1, NULL, err, sizeof err), 0);
    run_handlers(e);
    assert_string_equal(kv(e, "late_rc"), "-7"); /* KZ_ESTATE */
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/late", &r), 404);
}

static void routes_gone_after_shop_close(void **state)
{
    env *e = *state;
    routes *reg = bus_routes(e->b);
    const kz_shop *shop = &inst_of(e, "a")->shop;
    assert_int_equal(routes_count(reg, shop), 15);
    /* what bus_free does for each instance before its shop_close */
    routes_remove_owner(reg, shop);
    assert_int_equal(routes_count(reg, NULL), 0);
    resp r;
    assert_int_equal(get(e, "/shops/a/fx_routes/hello", &r), 404);
}

static int marked(env *e, const char *name, char *content, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", e->dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(content, 1, len - 1, f);
    content[n] = '\0';
    fclose(f);
    return 1;
}

typedef struct blocked {
    env *e;
    resp r;
    atomic_int freed;
} blocked;

static void *get_block(void *arg)
{
    blocked *b = arg;
    get(b->e, "/shops/a/fx_routes/block", &b->r);
    return NULL;
}

static void *free_bus(void *arg)
{
    blocked *b = arg;
    bus_free(b->e->b);
    atomic_store(&b->freed, 1);
    return NULL;
}

/* shop_close (in bus_free) waits for a request inside the instance's
 * route: the plugin's arg is never used after shop_close. */
static void shop_close_waits_for_route_in_flight(void **state)
{
    env *e = *state;
    blocked b = {.e = e};
    char mark[16];
    routes *reg = bus_routes(e->b);
    pthread_t client, closer;
    assert_int_equal(pthread_create(&client, NULL, get_block, &b), 0);
    for (int i = 0; i < 10000 && !marked(e, "entered", mark, sizeof mark); i++)
        ts_nap_ms(1); /* bounded poll */
    assert_true(marked(e, "entered", mark, sizeof mark));
    assert_int_equal(pthread_create(&closer, NULL, free_bus, &b), 0);
    /* the routes go at once; the close waits for the request */
    for (int i = 0; i < 10000 && routes_count(reg, NULL) > 0; i++)
        ts_nap_ms(1); /* bounded poll */
    assert_int_equal(routes_count(reg, NULL), 0);
    assert_int_equal(atomic_load(&b.freed), 0);
    assert_false(marked(e, "closed", mark, sizeof mark));
    char path[128];
    snprintf(path, sizeof path, "%s/release", e->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pthread_join(client, NULL), 0);
    assert_int_equal(pthread_join(closer, NULL), 0);
    e->b = NULL; /* freed */
    assert_int_equal(b.r.code, 200);
    assert_string_equal(b.r.body, "released");
    assert_true(marked(e, "closed", mark, sizeof mark));
    assert_string_equal(mark, "idle");
}

static long long metric_value(const char *text, const char *series)
{
    const char *p = strstr(text, series);
    if (p == NULL)
        return -1;
    return atoll(p + strlen(series) + 1);
}

static void metrics_have_bounded_labels(void **state)
{
    env *e = *state;
    resp r;
    get(e, "/shops/a/fx_routes/hello", &r);
    get(e, "/shops/a/fx_routes/click", &r);
    get(e, "/shops/a/fx_routes/random-1", &r);
    get(e, "/shops/random-2/x/y", &r);
    get(e, "/shops/a/random-3/y", &r);
    get(e, "/metrics", &r);
    const char *t = r.body;
    assert_int_equal(
        metric_value(t,
                     "kizuna_route_requests_total{shop=\"a\",plugin=\"fx_routes\",code=\"200\"}"),
        1);
    assert_int_equal(
        metric_value(t,
                     "kizuna_route_requests_total{shop=\"a\",plugin=\"fx_routes\",code=\"302\"}"),
        1);
    assert_int_equal(
        metric_value(t,
                     "kizuna_route_requests_total{shop=\"a\",plugin=\"fx_routes\",code=\"404\"}"),
        1);
    assert_int_equal(
        metric_value(t, "kizuna_route_requests_total{shop=\"\",plugin=\"\",code=\"404\"}"), 1);
    assert_int_equal(
        metric_value(t, "kizuna_route_requests_total{shop=\"a\",plugin=\"\",code=\"404\"}"), 1);
    assert_null(strstr(t, "random"));
    assert_int_equal(metric_value(t, "kizuna_http_request_duration_seconds_count{route=\"shops\"}"),
                     5);
}

/* `kizuna check` runs shop_open without a bus: routes are checked, not
 * registered, and a good plugin passes. */
static void check_mode_accepts_routes(void **state)
{
    env *e = *state;
    app a;
    FILE *f = fopen(e->conf, "w");
    assert_non_null(f);
    fprintf(
        f,
        "kizuna: { store = \"sqlite:%s/k.db\"; plugin_path = \"%s\"; log_level = \"error\"; };\n"
        "shops = ( { id = \"a\"; plugins = { fx_routes = { }; }; } );\n",
        e->dir, KZ_ROUTES_FIXTURES);
    fclose(f);
    size_t problems = app_prepare(&a, e->conf, 1);
    if (problems > 0)
        diag_print(&a.d, stderr);
    assert_int_equal(problems, 0);
    app_free(&a);
}

int main(void)
{
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registry_precedence),
        cmocka_unit_test(registry_refusals),
        cmocka_unit_test(registry_removal_waits_for_callbacks),
        cmocka_unit_test(dedupe_uid),
        T(answers_from_routes),
        T(redirect_with_location),
        T(not_found_and_not_allowed),
        T(route_without_answer_is_500),
        T(query_and_headers),
        T(body_passed_through),
        T(body_over_limit_is_413),
        T(published_event_stored_before_answer),
        T(dedupe_key_stores_once),
        T(store_failure_is_503),
        T(misuse_is_refused),
        T(route_outside_shop_open_refused),
        T(routes_gone_after_shop_close),
        T(shop_close_waits_for_route_in_flight),
        T(metrics_have_bounded_labels),
        T(check_mode_accepts_routes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
