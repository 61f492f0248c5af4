/*
 * The ingress in-process, for real: a config with shop `a` (LINE channel
 * secret "s3cret", the fx_counter fixture subscribed to line.*), the real
 * bus and store, libmicrohttpd on 127.0.0.1:<free port>, and libcurl (or a
 * raw socket where curl would hide what is tested) as LINE.
 *
 * Every test ends (teardown) by running the bus until idle and checking that
 * fx_counter handled exactly the events the store holds for shop `a`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bus.h"
#include "daemon.h"
#include "ingress.h"
#include "metrics.h"
#include "store.h"
#include "webhook.h"
#include "support.h"

#define SECRET "s3cret"
#define MAX_BODY 4096
#define DEST "U0123456789abcdef0123456789abcdef"
#define USER "U4af4980629aaaaaaaaaaaaaaaaaaaaaa"

typedef struct env {
    char dir[64];
    char conf[128];
    app a;
    bus *b;
    store *st; /* the test's own connection */
    metrics *m;
    ingress *in;
    char base[64]; /* http://127.0.0.1:PORT */
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "ingress");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; plugin_path = \"%s\"; workers = 2;\n"
                  "  batch = 64; log_level = \"error\"; max_body = %d; };\n"
                  "shops = (\n"
                  "  { id = \"a\";\n"
                  "    line = { channel_secret = \"" SECRET "\"; access_token = \"t\";"
                  " api = \"sandbox\"; };\n"
                  "    plugins = { fx_counter = { subscribe = [ \"line.*\" ]; }; }; },\n"
                  "  { id = \"b\"; plugins = { fx_counter = { }; }; }\n"
                  ");\n",
                  e->dir, KZ_BUS_FIXTURES, MAX_BODY);
    ts_app_prepare(&e->a, e->conf);
    assert_int_equal(e->a.c->max_body, MAX_BODY);
    ts_bus_new(&e->a, &e->b);
    int opened = app_open_instances(&e->a, e->b);
    assert_int_equal(opened, 2);
    /* + core.friends and core.broadcast of each shop */
    assert_int_equal(bus_instance_count(e->b), 2 + 2 * e->a.c->nshops);
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    assert_int_equal(metrics_new(&e->m), 0);
    ingress_options io = {
        .listen = "127.0.0.1:0", .max_body = e->a.c->max_body, .c = e->a.c, .b = e->b, .m = e->m};
    ts_ingress_start(&io, &e->in, e->base, sizeof e->base);
    *state = e;
    return 0;
}

static const bus_instance *inst_of(env *e, const char *shop, const char *plugin)
{
    return ts_instance(e->b, shop, plugin);
}

/* A stored counter, or 0 when the key is absent. */
static long kv(env *e, const char *shop, const char *plugin, const char *key)
{
    return ts_kv_long(e->st, inst_of(e, shop, plugin)->id, key, 0);
}

static int64_t max_id(env *e, const char *shop)
{
    int64_t id = -1;
    char err[256];
    assert_int_equal(store_event_max_id(e->st, shop, &id, err, sizeof err), 0);
    return id;
}

/* Events of the shop stored after id `after`. */
static size_t events_after(env *e, const char *shop, int64_t after, store_batch *b)
{
    return ts_events_after(e->st, shop, after, b);
}

static int teardown(void **state)
{
    env *e = *state;
    ingress_stop(e->in);
    /* fx_counter handles each stored event of shop a exactly once */
    char err[256];
    int n = bus_run_until_idle(e->b, err, sizeof err);
    assert_true(n >= 0);
    store_batch b = {0};
    size_t stored = events_after(e, "a", 0, &b);
    store_batch_free(&b);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), stored);
    assert_int_equal(kv(e, "a", "fx_counter", "doubles"), 0);
    bus_free(e->b);
    store_close(e->st);
    metrics_free(e->m);
    app_free(&e->a);
    ts_rmdir(e->dir);
    free(e);
    return 0;
}

/* ---- HTTP client ---------------------------------------------------------- */

typedef ts_resp resp;

enum { SIG_NONE, SIG_GOOD, SIG_BAD, SIG_LOWER };

/* One request; h may be reused (keep-alive) or NULL for a fresh handle.
 * chunked: the body is sent with Transfer-Encoding: chunked. */
static void http(CURL *h, const char *base, const char *method, const char *path, const char *body,
                 int sig, int chunked, resp *r)
{
    char url[256], line[128];
    snprintf(url, sizeof url, "%s%s", base, path);
    const char *hdrs[3] = {"Content-Type: application/json"};
    if (body != NULL && sig != SIG_NONE) {
        char s[45];
        webhook_sign(sig == SIG_BAD ? "other-secret" : SECRET, body, strlen(body), s);
        snprintf(line, sizeof line, "%s: %s",
                 sig == SIG_LOWER ? "x-line-signature" : "X-Line-Signature", s);
        hdrs[1] = line;
    }
    ts_http(h, method, url, hdrs, body, body ? strlen(body) : 0, chunked ? TS_HTTP_CHUNKED : 0, r);
}

static long post(env *e, const char *path, const char *body, int sig, resp *r)
{
    http(NULL, e->base, "POST", path, body, sig, 0, r);
    return r->code;
}

/* A webhook body with one text message event per id. */
static char *events_body(const char *const *ids, size_t n)
{
    size_t cap = 256 + n * 512;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t o = (size_t)snprintf(out, cap, "{\"destination\":\"" DEST "\",\"events\":[");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(
            out + o, cap - o,
            "%s{\"type\":\"message\",\"mode\":\"active\",\"timestamp\":1700000000000,"
            "\"source\":{\"type\":\"user\",\"userId\":\"" USER "\"},"
            "\"webhookEventId\":\"%s\",\"deliveryContext\":{\"isRedelivery\":false},"
            "\"replyToken\":\"r\",\"message\":{\"id\":\"1\",\"type\":\"text\","
            "\"quoteToken\":\"q\",\"text\":\"hello\"}}",
            i ? "," : "", ids[i]);
    snprintf(out + o, cap - o, "]}");
    return out;
}

static char *one_event(const char *id)
{
    const char *ids[] = {id};
    return events_body(ids, 1);
}

/* Raw HTTP: send `head` (and nothing else), read until the server closes or
 * a full response with its body arrived; returns the status code. */
static int raw_request(env *e, const char *head, const char *extra, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(ingress_port(e->in))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    if (extra != NULL) /* may fail: the server may stop reading */
        (void)!send(fd, extra, strlen(extra), MSG_NOSIGNAL);
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        ssize_t n = recv(fd, out + len, outlen - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        out[len] = '\0';
        const char *end = strstr(out, "\r\n\r\n");
        const char *cl = strcasestr(out, "\r\nContent-Length:");
        if (end != NULL && cl != NULL && cl < end &&
            len >= (size_t)(end + 4 - out) + (size_t)atol(cl + 17))
            break; /* whole response, even if the server keeps the socket */
    }
    close(fd);
    int code = 0; /* none */
    sscanf(out, "HTTP/1.%*d %d", &code);
    return code;
}

/* ---- tests ---------------------------------------------------------------- */

static void stores_event_before_answering(void **state)
{
    env *e = *state;
    int64_t before = max_id(e, "a");
    char *body = one_event("01HWEBHOOKEVENT00000000001");
    resp r;
    http(NULL, e->base, "POST", "/webhook/a", body, SIG_GOOD, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{}");
    assert_string_equal(ts_header(&r, "Content-Type"), "application/json");
    /* committed by the time the answer arrived: visible to another connection */
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", before, &b), 1);
    assert_string_equal(b.ev[0].uid, "01HWEBHOOKEVENT00000000001");
    assert_string_equal(b.ev[0].topic, "line.message.text");
    assert_string_equal(b.ev[0].user, USER);
    assert_non_null(strstr(b.ev[0].payload, "\"text\":\"hello\""));
    store_batch_free(&b);
    free(body);
}

static void several_events_in_one_request(void **state)
{
    env *e = *state;
    const char *ids[] = {"ev-1", "ev-2", "ev-3"};
    char *body = events_body(ids, 3);
    resp r;
    assert_int_equal(post(e, "/webhook/a", body, SIG_GOOD, &r), 200);
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(b.ev[i].uid, ids[i]);
    store_batch_free(&b);
    free(body);
}

static void bad_signature_stores_nothing(void **state)
{
    env *e = *state;
    char *body = one_event("sig-1");
    resp r;
    assert_int_equal(post(e, "/webhook/a", body, SIG_NONE, &r), 401);
    assert_string_equal(r.body, "{\"message\":\"missing X-Line-Signature\"}");
    assert_int_equal(post(e, "/webhook/a", body, SIG_BAD, &r), 401);
    assert_string_equal(r.body, "{\"message\":\"bad X-Line-Signature\"}");
    /* a signature of another body */
    char sig[45], hdr[80];
    webhook_sign(SECRET, "{}", 2, sig);
    snprintf(hdr, sizeof hdr, "X-Line-Signature: %s", sig);
    char url[128];
    snprintf(url, sizeof url, "%s/webhook/a", e->base);
    const char *hs[] = {hdr, NULL};
    assert_int_equal(ts_http(NULL, "POST", url, hs, body, strlen(body), 0, &r), 401);
    /* a bad signature beats a bad body: 401, not 400 */
    assert_int_equal(post(e, "/webhook/a", "not json", SIG_BAD, &r), 401);
    assert_int_equal(max_id(e, "a"), 0);
    free(body);
}

static void lower_case_signature_header(void **state)
{
    env *e = *state;
    char *body = one_event("lower-1");
    resp r;
    assert_int_equal(post(e, "/webhook/a", body, SIG_LOWER, &r), 200);
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), 1);
    assert_string_equal(b.ev[0].uid, "lower-1");
    store_batch_free(&b);
    free(body);
}

static void malformed_bodies(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(post(e, "/webhook/a", "not json", SIG_GOOD, &r), 400);
    assert_non_null(strstr(r.body, "{\"message\":\""));
    assert_true(r.len > strlen("{\"message\":\"\"}"));
    assert_int_equal(post(e, "/webhook/a", "{\"destination\":\"" DEST "\"}", SIG_GOOD, &r), 400);
    assert_non_null(strstr(r.body, "events"));
    assert_int_equal(post(e, "/webhook/a", "[1,2]", SIG_GOOD, &r), 400);
    assert_int_equal(post(e, "/webhook/a", "{\"events\":[1]}", SIG_GOOD, &r), 400);
    /* an empty body, signed */
    assert_int_equal(post(e, "/webhook/a", "", SIG_GOOD, &r), 400);
    assert_int_equal(max_id(e, "a"), 0);
}

static void verify_request_with_no_events(void **state)
{
    env *e = *state;
    resp r;
    assert_int_equal(
        post(e, "/webhook/a", "{\"destination\":\"" DEST "\",\"events\":[]}", SIG_GOOD, &r), 200);
    assert_string_equal(r.body, "{}");
    assert_int_equal(max_id(e, "a"), 0);
}

static void unknown_shops_and_paths(void **state)
{
    env *e = *state;
    char *body = one_event("nf-1");
    resp r;
    assert_int_equal(post(e, "/webhook/zz", body, SIG_GOOD, &r), 404);
    assert_string_equal(r.body, "{\"message\":\"unknown shop 'zz'\"}");
    /* shop b exists but has no line group: it cannot receive webhooks */
    assert_int_equal(post(e, "/webhook/b", body, SIG_GOOD, &r), 404);
    assert_string_equal(r.body, "{\"message\":\"unknown shop 'b'\"}");
    /* what the URL carries is escaped in the JSON answer */
    assert_int_equal(post(e, "/webhook/x%22y", body, SIG_GOOD, &r), 404);
    assert_string_equal(r.body, "{\"message\":\"unknown shop 'x\\\"y'\"}");
    assert_int_equal(post(e, "/webhook/", body, SIG_GOOD, &r), 404);
    assert_int_equal(post(e, "/webhook/a/extra", body, SIG_GOOD, &r), 404);
    assert_int_equal(post(e, "/nope", body, SIG_GOOD, &r), 404);
    http(NULL, e->base, "GET", "/", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 404);
    assert_string_equal(r.body, "{\"message\":\"not found\"}");
    assert_int_equal(max_id(e, "a"), 0);
    free(body);
}

static void other_methods_are_405(void **state)
{
    env *e = *state;
    resp r;
    const char *methods[] = {"GET", "PUT", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        http(NULL, e->base, methods[i], "/webhook/a", NULL, SIG_NONE, 0, &r);
        assert_int_equal(r.code, 405);
        assert_string_equal(ts_header(&r, "Allow"), "POST");
        assert_non_null(strstr(r.body, "use POST"));
    }
    http(NULL, e->base, "POST", "/healthz", "{}", SIG_NONE, 0, &r);
    assert_int_equal(r.code, 405);
    assert_string_equal(ts_header(&r, "Allow"), "GET, HEAD");
}

static void content_length_over_limit_refused_before_body(void **state)
{
    env *e = *state;
    char head[512], out[4096];
    char sig[45];
    webhook_sign(SECRET, "x", 1, sig);
    snprintf(head, sizeof head,
             "POST /webhook/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "X-Line-Signature: %s\r\nContent-Length: 100000000\r\n\r\n",
             sig);
    /* no body is ever sent: the 413 must come from the headers alone */
    assert_int_equal(raw_request(e, head, NULL, out, sizeof out), 413);
    assert_non_null(strstr(out, "{\"message\":\"body over 4096 bytes\"}"));
    /* one byte over */
    snprintf(head, sizeof head,
             "POST /webhook/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n",
             MAX_BODY + 1);
    assert_int_equal(raw_request(e, head, NULL, out, sizeof out), 413);
    /* Expect: 100-continue gets the 413 instead of the 100 */
    snprintf(head, sizeof head,
             "POST /webhook/a HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
             "Content-Length: 5000000\r\n\r\n");
    assert_int_equal(raw_request(e, head, NULL, out, sizeof out), 413);
    /* unknown shop is decided first */
    snprintf(head, sizeof head,
             "POST /webhook/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n\r\n");
    assert_int_equal(raw_request(e, head, NULL, out, sizeof out), 404);
    assert_int_equal(max_id(e, "a"), 0);
}

/* "SIZE\r\n" + n × 'x' + "\r\n" (+ the last chunk when `last`). */
static char *chunk_of(size_t n, int last)
{
    char *c = malloc(n + 48);
    assert_non_null(c);
    int h = snprintf(c, 32, "%zx\r\n", n);
    memset(c + h, 'x', n);
    snprintf(c + h + n, 16, "\r\n%s", last ? "0\r\n\r\n" : "");
    return c;
}

#define CHUNKED_HEAD                                                                               \
    "POST /webhook/a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Line-Signature: AAAA\r\n"                    \
    "Transfer-Encoding: chunked\r\n\r\n"

static void chunked_over_limit_refused(void **state)
{
    env *e = *state;
    char out[4096];
    /* libmicrohttpd 0.9.75 cannot answer while a body is arriving: the rest
     * is read and dropped, and the 413 comes once it is complete */
    char *chunk = chunk_of(MAX_BODY + 100, 1);
    assert_int_equal(raw_request(e, CHUNKED_HEAD, chunk, out, sizeof out), 413);
    assert_non_null(strstr(out, "{\"message\":\"body over 4096 bytes\"}"));
    free(chunk);
    /* a sender that goes on and on is cut off (no 20 s receive timeout) */
    chunk = chunk_of(5 * MAX_BODY, 0);
    assert_int_equal(raw_request(e, CHUNKED_HEAD, chunk, out, sizeof out), 0);
    free(chunk);
    /* many small chunks (curl), over the limit in total */
    char *big = malloc(3 * MAX_BODY + 1);
    assert_non_null(big);
    memset(big, ' ', 3 * MAX_BODY);
    big[3 * MAX_BODY] = '\0';
    memcpy(big, "{\"events\":[]}", 13);
    resp r;
    http(NULL, e->base, "POST", "/webhook/a", big, SIG_GOOD, 1, &r);
    assert_int_equal(r.code, 413);
    free(big);
    /* chunked under the limit is fine */
    char *body = one_event("chunked-1");
    http(NULL, e->base, "POST", "/webhook/a", body, SIG_GOOD, 1, &r);
    assert_int_equal(r.code, 200);
    free(body);
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), 1);
    assert_string_equal(b.ev[0].uid, "chunked-1");
    store_batch_free(&b);
}

static void body_at_the_limit_is_accepted(void **state)
{
    env *e = *state;
    char *body = one_event("limit-1");
    size_t len = strlen(body);
    char *padded = malloc(MAX_BODY + 1);
    assert_non_null(padded);
    memcpy(padded, body, len);
    memset(padded + len, ' ', MAX_BODY - len); /* JSON allows trailing space */
    padded[MAX_BODY] = '\0';
    resp r;
    assert_int_equal(post(e, "/webhook/a", padded, SIG_GOOD, &r), 200);
    assert_int_equal(max_id(e, "a") > 0, 1);
    free(padded);
    free(body);
}

static long metric_value(const char *text, const char *series)
{
    char line[256];
    snprintf(line, sizeof line, "\n%s ", series);
    const char *p = strstr(text, line);
    if (p == NULL)
        return -1;
    return atol(p + strlen(line));
}

static void redelivery_stored_once(void **state)
{
    env *e = *state;
    char *body = one_event("redeliver-1");
    resp r;
    assert_int_equal(post(e, "/webhook/a", body, SIG_GOOD, &r), 200);
    assert_int_equal(post(e, "/webhook/a", body, SIG_GOOD, &r), 200);
    /* a batch mixing a new event and a known one */
    const char *ids[] = {"redeliver-1", "redeliver-2"};
    char *mixed = events_body(ids, 2);
    assert_int_equal(post(e, "/webhook/a", mixed, SIG_GOOD, &r), 200);
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), 2);
    assert_string_equal(b.ev[0].uid, "redeliver-1");
    assert_string_equal(b.ev[1].uid, "redeliver-2");
    store_batch_free(&b);
    http(NULL, e->base, "GET", "/metrics", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.total, r.len); /* the whole text, none cut */
    assert_int_equal(
        metric_value(r.body, "kizuna_webhook_events_total{shop=\"a\",result=\"stored\"}"), 2);
    assert_int_equal(
        metric_value(r.body, "kizuna_webhook_events_total{shop=\"a\",result=\"duplicate\"}"), 2);
    assert_int_equal(metric_value(r.body, "kizuna_webhook_requests_total{shop=\"a\",code=\"200\"}"),
                     3);
    free(mixed);
    free(body);
}

/* A client that gives up while its events wait for the commit (LINE stops
 * waiting after 2 s, and so does wrk at the end of a run) does not hide
 * them: they are stored, and /metrics counts them as stored. */
static void client_gone_before_the_commit(void **state)
{
    env *e = *state;
    char err[256];
    /* the test's connection holds the process's writer lock: the commit
     * thread queues behind it with the request's events */
    assert_int_equal(store_begin(e->st, err, sizeof err), 0);
    char *body = one_event("gone-1"), sig[45], head[2048];
    webhook_sign(SECRET, body, strlen(body), sig);
    snprintf(head, sizeof head,
             "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "X-Line-Signature: %s\r\nContent-Length: %zu\r\n\r\n%s",
             sig, strlen(body), body);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(ingress_port(e->in))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    TS_WAIT(store_writer_wanted(e->st), 10000, "the events never reached the commit thread");
    close(fd); /* gone before any answer */
    store_rollback(e->st);

    resp r;
    long stored = 0;
    TS_WAIT((http(NULL, e->base, "GET", "/metrics", NULL, SIG_NONE, 0, &r),
             stored = metric_value(
                 r.body, "kizuna_webhook_events_total{shop=\"a\",result=\"stored\"}")) == 1,
            10000, "the stored event was never counted (%ld)", stored);
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), 1);
    assert_string_equal(b.ev[0].uid, "gone-1");
    store_batch_free(&b);
    free(body);
}

#define THREADS 4
#define PER_THREAD 50

typedef struct client {
    env *e;
    int id;
    int ok;
} client;

static void *client_run(void *arg)
{
    client *c = arg;
    CURL *h = curl_easy_init(); /* one connection per thread, kept alive */
    for (int i = 0; i < PER_THREAD; i++) {
        char id[64];
        snprintf(id, sizeof id, "conc-%d-%d", c->id, i);
        char *body = one_event(id);
        resp r;
        http(h, c->e->base, "POST", "/webhook/a", body, SIG_GOOD, 0, &r);
        if (r.code == 200)
            c->ok++;
        free(body);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static void concurrent_requests_all_stored(void **state)
{
    env *e = *state;
    client c[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (client){.e = e, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, client_run, &c[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].ok, PER_THREAD);
    }
    store_batch b = {0};
    assert_int_equal(events_after(e, "a", 0, &b), THREADS * PER_THREAD);
    /* each client's events in the order it sent them */
    int next[THREADS] = {0};
    for (size_t i = 0; i < b.n; i++) {
        int tid, seq;
        assert_int_equal(sscanf(b.ev[i].uid, "conc-%d-%d", &tid, &seq), 2);
        assert_int_equal(seq, next[tid]++);
    }
    store_batch_free(&b);
}

static void healthz(void **state)
{
    env *e = *state;
    resp r;
    http(NULL, e->base, "GET", "/healthz", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "ok\n");
}

static void metrics_page(void **state)
{
    env *e = *state;
    resp r;
    char *body = one_event("m-1");
    assert_int_equal(post(e, "/webhook/a", body, SIG_GOOD, &r), 200);
    assert_int_equal(post(e, "/webhook/a", body, SIG_BAD, &r), 401);
    assert_int_equal(post(e, "/webhook/a", "nope", SIG_GOOD, &r), 400);
    assert_int_equal(post(e, "/webhook/zz", body, SIG_GOOD, &r), 404);
    http(NULL, e->base, "GET", "/metrics", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.total, r.len); /* the whole text, none cut */
    assert_string_equal(ts_header(&r, "Content-Type"), "text/plain; version=0.0.4");
    const char *t = r.body;
    assert_non_null(strstr(t, "# TYPE kizuna_webhook_requests_total counter\n"));
    assert_non_null(strstr(t, "# TYPE kizuna_webhook_events_total counter\n"));
    assert_non_null(strstr(t, "# TYPE kizuna_http_request_duration_seconds histogram\n"));
    assert_int_equal(metric_value(t, "kizuna_webhook_requests_total{shop=\"a\",code=\"200\"}"), 1);
    assert_int_equal(metric_value(t, "kizuna_webhook_requests_total{shop=\"a\",code=\"401\"}"), 1);
    assert_int_equal(metric_value(t, "kizuna_webhook_requests_total{shop=\"a\",code=\"400\"}"), 1);
    /* unknown shops share one series: URLs cannot create series */
    assert_int_equal(metric_value(t, "kizuna_webhook_requests_total{shop=\"\",code=\"404\"}"), 1);
    assert_null(strstr(t, "zz"));
    assert_int_equal(metric_value(t, "kizuna_webhook_events_total{shop=\"a\",result=\"stored\"}"),
                     1);
    assert_int_equal(
        metric_value(t, "kizuna_http_request_duration_seconds_count{route=\"webhook\"}"), 4);
    assert_int_equal(
        metric_value(t,
                     "kizuna_http_request_duration_seconds_bucket{route=\"webhook\",le=\"+Inf\"}"),
        4);
    free(body);
}

static void start_errors(void **state)
{
    env *e = *state;
    char err[256];
    ingress *in = NULL;
    ingress_options o = {.listen = "nonsense", .c = e->a.c, .b = e->b};
    assert_int_equal(ingress_start(&o, &in, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "listen \"nonsense\": expected HOST:PORT");
    o.listen = "example.com:80";
    assert_int_equal(ingress_start(&o, &in, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "listen \"example.com:80\": 'example.com' is not an IPv4 address");
    o.listen = "127.0.0.1:70000";
    assert_int_equal(ingress_start(&o, &in, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "listen \"127.0.0.1:70000\": port must be 0..65535");
    /* the port is taken (by this test's own ingress) */
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%u", ingress_port(e->in));
    o.listen = taken;
    assert_int_equal(ingress_start(&o, &in, err, sizeof err), KZ_EFAIL);
    assert_null(in);
    assert_true(strncmp(err, "cannot listen on 127.0.0.1:", 27) == 0);
    /* without metrics, /metrics is not served */
    o.listen = "localhost:0";
    assert_int_equal(ingress_start(&o, &in, err, sizeof err), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%u", ingress_port(in));
    resp r;
    http(NULL, base, "GET", "/metrics", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 404);
    http(NULL, base, "GET", "/healthz", NULL, SIG_NONE, 0, &r);
    assert_int_equal(r.code, 200);
    ingress_stop(in);
    ingress_stop(NULL);
}

int main(void)
{
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(stores_event_before_answering),
        T(several_events_in_one_request),
        T(bad_signature_stores_nothing),
        T(lower_case_signature_header),
        T(malformed_bodies),
        T(verify_request_with_no_events),
        T(unknown_shops_and_paths),
        T(other_methods_are_405),
        T(content_length_over_limit_refused_before_body),
        T(chunked_over_limit_refused),
        T(body_at_the_limit_is_accepted),
        T(redelivery_stored_once),
        T(client_gone_before_the_commit),
        T(concurrent_requests_all_stored),
        T(healthz),
        T(metrics_page),
        T(start_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
