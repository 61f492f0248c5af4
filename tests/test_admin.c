/*
 * The admin API (ingress.h, docs/http.md) in-process: a config with shop
 * `a` (the fx_counter fixture, events of topic test.bad fail fatally, so
 * they become dead letters at once), the real bus and store, the ingress
 * on a free port, libcurl as the client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "ingress.h"
#include "store.h"
#include "support.h"

#define TOKEN "adm1n-t0ken"

typedef struct env {
    char dir[64];
    char conf[128];
    app a;
    bus *b;
    store *st; /* the test's own connection */
    ingress *in;
    char base[64]; /* http://HOST:PORT */
} env;

/* token: kizuna.admin_token or NULL; listen: "HOST:0". */
static env *env_open(const char *token, int remote, const char *listen)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "admin");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(
        e->conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; plugin_path = \"%s\"; log_level = \"error\";\n"
        "  %s%s%s admin_remote = %s; };\n"
        "shops = (\n"
        "  { id = \"a\"; name = \"Shop A\";\n"
        "    plugins = { fx_counter = { fail_topic = \"test.bad\"; fatal = true; }; }; },\n"
        "  { id = \"b\"; }\n"
        ");\n",
        e->dir, KZ_BUS_FIXTURES, token ? "admin_token = \"" : "", token ? token : "",
        token ? "\";" : "", remote ? "true" : "false");
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_int_equal(app_open_instances(&e->a, e->b), 1);
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    ingress_options io = {.listen = listen,
                          .c = e->a.c,
                          .b = e->b,
                          .store_url = e->a.c->store_url,
                          .sync_mode = e->a.c->sync_mode};
    ts_ingress_start(&io, &e->in, e->base, sizeof e->base);
    return e;
}

static void env_close(env *e)
{
    ingress_stop(e->in);
    bus_free(e->b);
    store_close(e->st);
    app_free(&e->a);
    ts_rmdir(e->dir);
    free(e);
}

/* Publishes one event of topic to shop a and runs the bus until idle. */
static void publish_run(env *e, const char *topic)
{
    char err[256];
    bus_msg m = {.shop = "a", .topic = topic};
    assert_int_equal(bus_publish(e->b, &m, 1, NULL, err, sizeof err), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

/* ---- HTTP client ---------------------------------------------------------- */

typedef ts_resp resp;

/* auth: the whole Authorization value, or NULL for none. 0 when answered. */
static int http(const char *base, const char *method, const char *path, const char *auth, resp *r)
{
    char url[256], line[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    snprintf(line, sizeof line, "Authorization: %s", auth ? auth : "");
    const char *hdrs[] = {auth != NULL ? line : NULL, NULL};
    ts_http(NULL, method, url, hdrs, NULL, 0, TS_HTTP_MAY_FAIL, r);
    return r->curl == CURLE_OK ? 0 : -1;
}

static long call(env *e, const char *method, const char *path, resp *r)
{
    if (http(e->base, method, path, "Bearer " TOKEN, r) != 0)
        fail_msg("%s %s: no answer", method, path);
    return r->code;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    return json_object_get_int64(v);
}

static int jbool(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    return json_object_get_boolean(v);
}

/* ---- tests ---------------------------------------------------------------- */

static void disabled_without_token(void **state)
{
    (void)state;
    env *e = env_open(NULL, 0, "127.0.0.1:0");
    resp r;
    const char *paths[] = {"/admin/dead", "/admin/status", "/admin/dead/1/replay", "/admin"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        assert_int_equal(http(e->base, "GET", paths[i], "Bearer " TOKEN, &r), 0);
        assert_int_equal(r.code, 404);
        assert_string_equal(r.body, "{\"message\":\"admin API disabled: set kizuna.admin_token\"}");
    }
    /* the rest of the server is unchanged */
    assert_int_equal(http(e->base, "GET", "/healthz", NULL, &r), 0);
    assert_int_equal(r.code, 200);
    env_close(e);
}

static void unauthorized_is_401(void **state)
{
    (void)state;
    env *e = env_open(TOKEN, 0, "127.0.0.1:0");
    const char *bad[] = {
        NULL,           "Bearer wrong", "Bearer " TOKEN "x", "Bearer adm1n-t0ke", "Bearer ",
        "Basic " TOKEN, TOKEN};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        resp r;
        assert_int_equal(http(e->base, "GET", "/admin/dead", bad[i], &r), 0);
        if (r.code != 401)
            fail_msg("Authorization %s: %ld", bad[i] ? bad[i] : "(none)", r.code);
        assert_string_equal(ts_header(&r, "WWW-Authenticate"), "Bearer");
        json_object *o = json_tokener_parse(r.body);
        assert_non_null(o);
        assert_true(strlen(jstr(o, "message")) > 0);
        assert_null(strstr(r.body, TOKEN)); /* never echoed */
        json_object_put(o);
        /* a state change is refused too, and changes nothing */
        assert_int_equal(http(e->base, "POST", "/admin/dead/1/replay", bad[i], &r), 0);
        assert_int_equal(r.code, 401);
    }
    /* the scheme is matched in any case */
    resp r;
    assert_int_equal(http(e->base, "GET", "/admin/dead", "bearer " TOKEN, &r), 0);
    assert_int_equal(r.code, 200);
    env_close(e);
}

/* The fixture's instance (the bus also has the core's friends instances). */
static const bus_instance *fx_instance(env *e)
{
    for (size_t i = 0; i < bus_instance_count(e->b); i++)
        if (strcmp(bus_instance_at(e->b, i)->p->name, "fx_counter") == 0)
            return bus_instance_at(e->b, i);
    fail_msg("no fx_counter instance");
    return NULL;
}

static void dead_letters_listed_and_replayed(void **state)
{
    (void)state;
    env *e = env_open(TOKEN, 0, "127.0.0.1:0");
    resp r;
    assert_int_equal(call(e, "GET", "/admin/dead", &r), 200);
    assert_string_equal(r.body, "[]");

    publish_run(e, "test.bad"); /* fatal: dead at once */
    assert_int_equal(call(e, "GET", "/admin/dead", &r), 200);
    json_object *list = json_tokener_parse(r.body);
    assert_non_null(list);
    assert_true(json_object_is_type(list, json_type_array));
    assert_int_equal(json_object_array_length(list), 1);
    json_object *d = json_object_array_get_idx(list, 0);
    int64_t id = jint(d, "id");
    assert_true(id > 0);
    assert_string_equal(jstr(d, "shop"), "a");
    assert_string_equal(jstr(d, "plugin"), "fx_counter");
    assert_string_equal(jstr(d, "topic"), "test.bad");
    assert_true(strlen(jstr(d, "uid")) > 0);
    assert_int_equal(jint(d, "attempts"), 1);
    assert_true(strlen(jstr(d, "error")) > 0);
    assert_int_equal(strlen(jstr(d, "time")), 20); /* 2026-01-02T03:04:05Z */
    assert_int_equal(jbool(d, "replay"), 0);
    json_object_put(list);

    char path[64], want[64];
    snprintf(path, sizeof path, "/admin/dead/%lld/replay", (long long)id);
    assert_int_equal(call(e, "POST", path, &r), 200);
    snprintf(want, sizeof want, "{\"id\":%lld,\"queued\":true}", (long long)id);
    assert_string_equal(r.body, want);
    assert_int_equal(call(e, "GET", "/admin/dead", &r), 200);
    list = json_tokener_parse(r.body);
    assert_int_equal(jbool(json_object_array_get_idx(list, 0), "replay"), 1);
    json_object_put(list);
    /* the flag is in the store: the daemon's workers pick it up */
    int64_t dead_id = 0, event_id = 0;
    char err[256];
    assert_int_equal(
        store_dead_next_replay(e->st, fx_instance(e)->id, &dead_id, &event_id, err, sizeof err), 0);
    assert_int_equal(dead_id, id);

    /* unknown and malformed ids */
    snprintf(path, sizeof path, "/admin/dead/%lld/replay", (long long)id + 1000);
    assert_int_equal(call(e, "POST", path, &r), 404);
    assert_non_null(strstr(r.body, "\"message\":\"no dead letter"));
    assert_int_equal(call(e, "POST", "/admin/dead/abc/replay", &r), 404);
    assert_int_equal(call(e, "POST", "/admin/dead/0/replay", &r), 404);
    assert_int_equal(call(e, "POST", "/admin/dead//replay", &r), 404);
    assert_int_equal(call(e, "POST", "/admin/dead/99999999999999999999/replay", &r), 404);
    /* wrong methods and paths */
    assert_int_equal(call(e, "GET", path, &r), 405);
    assert_string_equal(ts_header(&r, "Allow"), "POST");
    assert_int_equal(call(e, "POST", "/admin/dead", &r), 405);
    assert_string_equal(ts_header(&r, "Allow"), "GET, HEAD");
    assert_int_equal(call(e, "DELETE", "/admin/status", &r), 405);
    assert_int_equal(call(e, "GET", "/admin/nope", &r), 404);
    assert_int_equal(call(e, "GET", "/admin/dead/1/replay/x", &r), 404);
    env_close(e);
}

static void status_json(void **state)
{
    (void)state;
    env *e = env_open(TOKEN, 0, "127.0.0.1:0");
    publish_run(e, "test.ok");
    publish_run(e, "test.ok");
    int64_t max = 0;
    char err[256];
    assert_int_equal(store_event_max_id(e->st, "a", &max, err, sizeof err), 0);
    resp r;
    assert_int_equal(call(e, "GET", "/admin/status", &r), 200);
    json_object *o = json_tokener_parse(r.body);
    assert_non_null(o);
    json_object *shops, *insts;
    assert_true(json_object_object_get_ex(o, "shops", &shops));
    assert_int_equal(json_object_array_length(shops), 2);
    assert_string_equal(jstr(json_object_array_get_idx(shops, 0), "id"), "a");
    assert_string_equal(jstr(json_object_array_get_idx(shops, 0), "name"), "Shop A");
    assert_string_equal(jstr(json_object_array_get_idx(shops, 1), "id"), "b");
    assert_true(json_object_object_get_ex(o, "instances", &insts));
    /* a: core.friends, core.broadcast and fx_counter; b: the core's two */
    assert_int_equal(json_object_array_length(insts), 5);
    assert_string_equal(jstr(json_object_array_get_idx(insts, 0), "plugin"), "core.friends");
    assert_string_equal(jstr(json_object_array_get_idx(insts, 1), "plugin"), "core.broadcast");
    json_object *i = json_object_array_get_idx(insts, 2);
    assert_string_equal(jstr(i, "shop"), "a");
    assert_string_equal(jstr(i, "plugin"), "fx_counter");
    assert_int_equal(jbool(i, "enabled"), 1);
    assert_int_equal(jint(i, "cursor"), max);
    assert_int_equal(jint(o, "outbox_pending"), 0);
    json_object_put(o);
    env_close(e);
}

static struct sockaddr_storage addr_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        fail_msg("bad address %s", text);
    return ss;
}

static void loopback_rule(void **state)
{
    (void)state;
    const char *yes[] = {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"};
    const char *no[] = {"10.0.0.1", "128.0.0.1", "0.0.0.0",         "192.0.2.2",
                        "::",       "::2",       "::ffff:10.0.0.1", "2001:db8::1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        struct sockaddr_storage ss = addr_of(yes[i]);
        if (!ingress_is_loopback((struct sockaddr *)&ss))
            fail_msg("%s should be loopback", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        struct sockaddr_storage ss = addr_of(no[i]);
        if (ingress_is_loopback((struct sockaddr *)&ss))
            fail_msg("%s should not be loopback", no[i]);
    }
    assert_int_equal(ingress_is_loopback(NULL), 0);
}

/* A local IPv4 address that is not loopback, or 0. */
static int other_address(char *out, size_t outlen)
{
    struct ifaddrs *ifs = NULL, *i;
    int found = 0;
    if (getifaddrs(&ifs) != 0)
        return 0;
    for (i = ifs; i != NULL && !found; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
            ingress_is_loopback(i->ifa_addr))
            continue;
        found = inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, out,
                          (socklen_t)outlen) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

static void remote_peer_is_403(void **state)
{
    (void)state;
    char ip[INET_ADDRSTRLEN];
    if (!other_address(ip, sizeof ip)) {
        print_message("no non-loopback IPv4 address here: only loopback_rule checks the rule\n");
        skip();
    }
    for (int remote = 0; remote <= 1; remote++) {
        env *e = env_open(TOKEN, remote, "0.0.0.0:0");
        char base[64];
        snprintf(base, sizeof base, "http://%s:%u", ip, ingress_port(e->in));
        resp r;
        assert_int_equal(http(base, "GET", "/admin/dead", "Bearer " TOKEN, &r), 0);
        assert_int_equal(r.code, remote ? 200 : 403);
        if (!remote)
            assert_non_null(strstr(r.body, "loopback"));
        /* from loopback it answers either way */
        assert_int_equal(call(e, "GET", "/admin/dead", &r), 200);
        /* webhooks and /healthz are not restricted */
        assert_int_equal(http(base, "GET", "/healthz", NULL, &r), 0);
        assert_int_equal(r.code, 200);
        env_close(e);
    }
}

/* ---- the clock ------------------------------------------------------------ */

#define T0 1795000000000LL /* 2026-11-18T11:06:40Z */
#define HOUR 3600000LL

/* POST path with a JSON body; auth as for http(). */
static long post(env *e, const char *path, const char *auth, const char *body, resp *r)
{
    char url[256], line[256];
    snprintf(url, sizeof url, "%s%s", e->base, path);
    snprintf(line, sizeof line, "Authorization: %s", auth ? auth : "");
    const char *hdrs[] = {"Content-Type: application/json", auth != NULL ? line : NULL, NULL};
    return ts_http(NULL, "POST", url, hdrs, body, strlen(body), 0, r);
}

static void set_timer(env *e, const char *key, int64_t due)
{
    char err[256];
    store_timer t = {.shop = "a",
                     .instance = fx_instance(e)->id,
                     .key = key,
                     .due_ms = due,
                     .topic = "test.tick",
                     .payload = "{}",
                     .created_ms = T0};
    if (store_timer_set(e->st, &t, err, sizeof err) != 0)
        fail_msg("set timer: %s", err);
}

static void clock_read_and_advanced(void **state)
{
    (void)state;
    env *e = env_open(TOKEN, 0, "127.0.0.1:0");
    char err[256];
    clock_use_virtual(T0);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    resp r;
    assert_int_equal(call(e, "GET", "/admin/clock", &r), 200);
    assert_string_equal(r.body, "{\"now\":\"2026-11-18T11:06:40Z\",\"now_ms\":1795000000000,"
                                "\"virtual\":true}");
    /* the token rule first, as for every admin endpoint */
    assert_int_equal(http(e->base, "GET", "/admin/clock", NULL, &r), 0);
    assert_int_equal(r.code, 401);
    assert_int_equal(post(e, "/admin/clock/advance", NULL, "{\"by\":\"1h\"}", &r), 401);
    assert_int_equal(post(e, "/admin/clock/advance", "Bearer wrong", "{\"by\":\"1h\"}", &r), 401);
    assert_int_equal(clock_now_ms(), T0);
    /* bad bodies: nothing moves */
    const char *bad[] = {"",
                         "[]",
                         "{}",
                         "{\"by\":3}",
                         "{\"by\":\"3x\"}",
                         "{\"by\":\"-1h\"}",
                         "{\"to\":\"tomorrow\"}",
                         "{\"by\":\"1h\",\"to\":\"2026-12-01T10:00:00+09:00\"}",
                         "{\"by\":\"1h\",\"timeout\":\"forever\"}",
                         "{\"to\":\"2026-11-18T11:06:39Z\"}", /* a second before the clock */
                         "{\"by\":"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (post(e, "/admin/clock/advance", "Bearer " TOKEN, bad[i], &r) != 400)
            fail_msg("%s: %ld %s", bad[i], r.code, r.body);
        assert_non_null(strstr(r.body, "\"message\":"));
    }
    assert_int_equal(clock_now_ms(), T0);
    assert_int_equal(call(e, "GET", "/admin/clock/advance", &r), 405);
    assert_string_equal(ts_header(&r, "Allow"), "POST");

    /* two timers on the way: each fires at its time, and the answer counts them */
    set_timer(e, "one", T0 + HOUR);
    set_timer(e, "two", T0 + 2 * HOUR);
    assert_int_equal(post(e, "/admin/clock/advance", "Bearer " TOKEN, "{\"by\":\"3h\"}", &r), 200);
    json_object *o = json_tokener_parse(r.body);
    assert_non_null(o);
    assert_string_equal(jstr(o, "now"), "2026-11-18T14:06:40Z");
    assert_int_equal(jint(o, "now_ms"), T0 + 3 * HOUR);
    assert_int_equal(jint(o, "from_ms"), T0);
    assert_int_equal(jbool(o, "virtual"), 1);
    assert_int_equal(jint(o, "steps"), 3);
    assert_int_equal(jint(o, "timers_fired"), 2);
    assert_int_equal(jint(o, "events_handled"), 2);
    assert_int_equal(jint(o, "handler_failures"), 0);
    json_object_put(o);
    assert_int_equal(clock_now_ms(), T0 + 3 * HOUR);
    assert_int_equal(ts_kv_long(e->st, fx_instance(e)->id, "count", 0), 2);

    /* to a time (an offset is fine); then the same time again: 0 steps */
    assert_int_equal(post(e, "/admin/clock/advance", "Bearer " TOKEN,
                          "{\"to\":\"2026-11-19T11:06:40+09:00\",\"timeout\":\"5s\"}", &r),
                     200);
    o = json_tokener_parse(r.body);
    assert_int_equal(jint(o, "now_ms"), T0 + 15 * HOUR);
    json_object_put(o);
    assert_int_equal(
        post(e, "/admin/clock/advance", "Bearer " TOKEN, "{\"to\":\"2026-11-19T02:06:40Z\"}", &r),
        200);
    o = json_tokener_parse(r.body);
    assert_int_equal(jint(o, "steps"), 0);
    json_object_put(o);

    /* a real clock is never moved */
    clock_use_real();
    assert_int_equal(post(e, "/admin/clock/advance", "Bearer " TOKEN, "{\"by\":\"1d\"}", &r), 409);
    assert_non_null(strstr(r.body, "the clock is real"));
    assert_int_equal(call(e, "GET", "/admin/clock", &r), 200);
    assert_non_null(strstr(r.body, "\"virtual\":false"));
    env_close(e);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disabled_without_token),
        cmocka_unit_test(unauthorized_is_401),
        cmocka_unit_test(dead_letters_listed_and_replayed),
        cmocka_unit_test(status_json),
        cmocka_unit_test(loopback_rule),
        cmocka_unit_test(remote_peer_is_403),
        cmocka_unit_test(clock_read_and_advanced),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
