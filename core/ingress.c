/*
 * ingress — see ingress.h.
 *
 * libmicrohttpd runs a small pool of epoll threads. A webhook request whose
 * events must be stored hands them to bus_publish_async and suspends its
 * connection, so the thread goes on serving others; the bus's commit
 * thread stores every queued request in one transaction and resumes each
 * connection, which then answers 200 (or 500). Thread-per-connection, the
 * simple alternative, spent most of its time switching threads.
 *
 * Per request, the access handler is called once with the headers (route,
 * method, shop, Content-Length are decided there, before any body byte is
 * read), then once per chunk of body, then once more with no data: the
 * request is complete and the answer is computed.
 */
#include "ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "clock.h"
#include "errbuf.h"
#include "httpreq.h"
#include "log.h"
#include "netaddr.h"
#include "payload.h"
#include "routes.h"
#include "store.h"
#include "webhook.h"

#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define CONNECTION_TIMEOUT_S 30u
#define DRAIN_FACTOR 4
#define HTTP_THREADS 2u /* epoll threads; requests never block them */
#define WEBHOOK_PREFIX "/webhook/"
#define ADMIN_PREFIX "/admin/"
#define SHOPS_PREFIX "/shops/"

struct ingress {
    struct MHD_Daemon *d;
    const cfg *c;
    bus *b;
    size_t max_body;
    uint16_t port;
    metric_family *requests;       /* kizuna_webhook_requests_total{shop,code} */
    metric_family *route_requests; /* kizuna_route_requests_total{shop,plugin,code} */
    metric_family *events;         /* kizuna_webhook_events_total{shop,result} */
    metric_family *duration;       /* kizuna_http_request_duration_seconds{route} */
    metrics *m;                    /* may be NULL */
    char start_err[256];           /* last libmicrohttpd message while starting */
    atomic_int starting;
    atomic_int suspended;    /* requests waiting for their commit (or walk) */
    atomic_int walks;        /* clock walks in progress (admin_advance) */
    atomic_int stopping;     /* ingress_stop began: no new walk */
    struct MHD_Response *ok; /* "{}", shared by every 200 (MHD counts its users) */
    /* admin API: only with c->admin_token; st is its own connection */
    store *st;
    pthread_mutex_t st_mu; /* one request at a time on st */
};

enum req_route { R_WEBHOOK, R_SHOPS, R_HEALTHZ, R_METRICS, R_ADMIN, R_NOT_FOUND };

/* POST /admin/clock/advance: the walk (bus_advance) may take seconds of
 * real time, so it runs on a thread of its own with the connection
 * suspended, and the HTTP thread goes on serving others meanwhile. */
typedef struct admin_walk {
    ingress *in;
    struct MHD_Connection *conn;
    int absolute;       /* ms is the target, else a duration */
    int64_t ms;         /* target or duration */
    int64_t timeout_ms; /* real time the walk may take */
    bus_walk w;
    int rc;
    char err[512];
    atomic_int done;
} admin_walk;

/* Per-request state (libmicrohttpd's con_cls). */
typedef struct req {
    enum req_route route;
    const cfg_shop *shop; /* webhook, plugin route: the shop, when known */
    const char *plugin;   /* plugin route: the config's name, when enabled for shop */
    char *path;           /* plugin route: the path below the plugin's root */
    kz_http http;         /* plugin route: the request the plugin saw */
    struct timespec start;
    char *body;
    size_t len, cap;
    int too_large;  /* body over max_body: discarded, 413 */
    size_t drained; /* bytes received once too_large */
    int responded;  /* a response is queued */
    /* while the events are being stored (connection suspended) */
    ingress *in;
    struct MHD_Connection *conn;
    webhook_batch batch;
    size_t nmsgs; /* events being stored (batch's or http's) */
    int64_t *ids;
    atomic_int stored; /* 0 waiting, 1 done */
    int store_rc;
    char store_err[256];
    int admin_body;   /* an admin request that reads a body (clock/advance) */
    admin_walk *walk; /* its walk, once started */
} req;

/* ---- helpers ------------------------------------------------------------ */

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* JSON string content of s (no quotes), truncated to fit out. */
static void json_escape(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char tmp[8];
        size_t n;
        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            n = 2;
        } else if (ch < 0x20) {
            n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", ch);
        } else {
            tmp[0] = (char)ch;
            n = 1;
        }
        if (o + n + 1 > outlen)
            break;
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (outlen > 0)
        out[o] = '\0';
}

/* A shop that can take webhooks: known and with a channel secret. */
static const cfg_shop *webhook_shop(const cfg *c, const char *id)
{
    const cfg_shop *shop = cfg_find_shop(c, id);
    return shop != NULL && shop->line_channel_secret != NULL ? shop : NULL;
}

static void count_request(ingress *in, const req *r, unsigned code)
{
    if ((r->route != R_WEBHOOK && r->route != R_SHOPS) || in->requests == NULL)
        return;
    char codes[8];
    snprintf(codes, sizeof codes, "%u", code % 1000u);
    /* unknown shops and plugins share one series: a URL must not create series */
    const char *shop = r->shop != NULL ? r->shop->id : "";
    const char *hook[] = {shop, codes};
    const char *plugin[] = {shop, r->plugin != NULL ? r->plugin : "", codes};
    if (r->route == R_WEBHOOK)
        metrics_inc(in->requests, hook, 1);
    else
        metrics_inc(in->route_requests, plugin, 1);
    const char *route[] = {r->route == R_WEBHOOK ? "webhook" : "shops"};
    metrics_observe(metrics_series(in->duration, route), seconds_since(&r->start));
}

static struct MHD_Response *new_response(const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return resp;
}

/* Queues resp; the caller still owns its reference. */
static enum MHD_Result queue_kept(ingress *in, struct MHD_Connection *conn, req *r, unsigned code,
                                  struct MHD_Response *resp)
{
    enum MHD_Result ret = MHD_queue_response(conn, code, resp);
    if (ret == MHD_YES) {
        r->responded = 1;
        count_request(in, r, code); /* sent only once this thread returns */
    }
    return ret;
}

/* Queues resp (and frees it). */
static enum MHD_Result queue(ingress *in, struct MHD_Connection *conn, req *r, unsigned code,
                             struct MHD_Response *resp)
{
    enum MHD_Result ret = queue_kept(in, conn, r, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond(ingress *in, struct MHD_Connection *conn, req *r, unsigned code,
                               const char *content_type, const char *body, size_t len,
                               const char *allow)
{
    struct MHD_Response *resp = new_response(content_type, body, len);
    if (resp == NULL)
        return MHD_NO;
    if (allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return queue(in, conn, r, code, resp);
}

static enum MHD_Result respond_json(ingress *in, struct MHD_Connection *conn, req *r, unsigned code,
                                    const char *json)
{
    return respond(in, conn, r, code, "application/json", json, strlen(json), NULL);
}

/* The answer to a stored webhook (or LINE's verify request), built once. */
static enum MHD_Result respond_ok(ingress *in, struct MHD_Connection *conn, req *r)
{
    return queue_kept(in, conn, r, MHD_HTTP_OK, in->ok);
}

/* {"message":"…"} with msg escaped. */
static enum MHD_Result respond_error(ingress *in, struct MHD_Connection *conn, req *r,
                                     unsigned code, const char *allow, const char *fmt, ...)
    KZ_PRINTF(6, 7);
static enum MHD_Result respond_error(ingress *in, struct MHD_Connection *conn, req *r,
                                     unsigned code, const char *allow, const char *fmt, ...)
{
    char msg[512], esc[1024], body[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_escape(esc, sizeof esc, msg);
    int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", esc);
    if (n < 0 || (size_t)n >= sizeof body)
        n = snprintf(body, sizeof body, "{\"message\":\"error\"}");
    return respond(in, conn, r, code, "application/json", body, (size_t)n, allow);
}

/* ---- webhook ------------------------------------------------------------ */

static enum MHD_Result body_expected(ingress *in, struct MHD_Connection *conn, req *r);

/* First call of POST /webhook/<shop>: everything decided from the headers. */
static enum MHD_Result webhook_headers(ingress *in, struct MHD_Connection *conn, req *r,
                                       const char *shop_id, const char *method)
{
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return respond_error(in, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, "POST",
                             "method %.32s not allowed; use POST", method);
    if (r->shop == NULL)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "unknown shop '%.64s'",
                             shop_id);
    return body_expected(in, conn, r);
}

/* A Content-Length over max_body is answered 413 before any body byte is
 * read; a known length is allocated at once. */
static enum MHD_Result body_expected(ingress *in, struct MHD_Connection *conn, req *r)
{
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        errno = 0;
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || n > in->max_body)
            return respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                                 "body over %zu bytes", in->max_body);
        if (n > 0) {
            r->body = malloc((size_t)n);
            if (r->body == NULL)
                return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                                     "out of memory");
            r->cap = (size_t)n;
        }
    }
    return MHD_YES;
}

/* A chunk of body. Over the limit, the body is dropped and 413 queued at
 * once where libmicrohttpd accepts a response while the body is still
 * arriving (not 0.9.75: it only takes one before the first body byte or
 * after the last). Otherwise the rest is read and discarded and 413 sent
 * at the end; a sender still going after DRAIN_FACTOR × max_body is cut
 * off (connection closed, no answer). */
static enum MHD_Result body_chunk(ingress *in, struct MHD_Connection *conn, req *r,
                                  const char *data, size_t n)
{
    if (r->too_large) {
        r->drained += n;
        return r->drained > DRAIN_FACTOR * in->max_body ? MHD_NO : MHD_YES;
    }
    if (n > in->max_body - r->len) {
        r->too_large = 1;
        r->drained = r->len + n;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body over %zu bytes",
                      in->max_body);
        return MHD_YES;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n)
            cap *= 2;
        if (cap > in->max_body)
            cap = in->max_body;
        char *p = realloc(r->body, cap);
        if (p == NULL)
            return MHD_NO;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

static void count_events(ingress *in, const char *shop, const int64_t *ids, size_t n)
{
    if (in->events == NULL)
        return;
    uint64_t stored = 0, dup = 0;
    for (size_t k = 0; k < n; k++) {
        if (ids[k] != 0)
            stored++;
        else
            dup++;
    }
    const char *s[] = {shop, "stored"};
    const char *d[] = {shop, "duplicate"};
    if (stored > 0)
        metrics_inc(in->events, s, stored);
    if (dup > 0)
        metrics_inc(in->events, d, dup);
}

static enum MHD_Result store_events(ingress *in, struct MHD_Connection *conn, req *r,
                                    const bus_msg *msgs, size_t n);

/* The whole body is here. */
static enum MHD_Result webhook_complete(ingress *in, struct MHD_Connection *conn, req *r)
{
    if (r->too_large)
        return respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body over %zu bytes",
                             in->max_body);
    const cfg_shop *shop = r->shop;
    const char *body = r->body != NULL ? r->body : "";
    const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Line-Signature");
    if (sig == NULL)
        return respond_error(in, conn, r, MHD_HTTP_UNAUTHORIZED, NULL, "missing X-Line-Signature");
    if (!webhook_signature_ok(shop->line_channel_secret, body, r->len, sig))
        return respond_error(in, conn, r, MHD_HTTP_UNAUTHORIZED, NULL, "bad X-Line-Signature");

    char err[512] = "";
    webhook_batch batch = {0};
    int rc = webhook_parse(shop->id, body, r->len, &batch, err, sizeof err);
    if (rc == KZ_EINVAL)
        return respond_error(in, conn, r, MHD_HTTP_BAD_REQUEST, NULL, "%s", err);
    if (rc == KZ_ETOOBIG)
        return respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "%s", err);
    if (rc != 0) {
        log_msg(KZ_LOG_ERROR, "shop '%s': webhook: %s", shop->id, err);
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "%s", err);
    }
    enum MHD_Result ret;
    if (batch.n == 0) { /* LINE's verify request */
        ret = respond_ok(in, conn, r);
        webhook_batch_free(&batch);
        return ret;
    }
    r->batch = batch;
    return store_events(in, conn, r, batch.msgs, batch.n);
}

/* On the bus's commit thread: the events are durable (or not). They are
 * counted here, not when answered: a client gone meanwhile (wrk closing
 * its connections, LINE after its 2 s) may never be answered, and
 * kizuna_webhook_events_total must still match the store. */
static void on_stored(void *arg, int rc, const char *err)
{
    req *r = arg;
    if (rc == 0 && r->route == R_WEBHOOK)
        count_events(r->in, r->shop->id, r->ids, r->nmsgs);
    r->store_rc = rc;
    snprintf(r->store_err, sizeof r->store_err, "%s", err);
    atomic_store(&r->stored, 1);
    MHD_resume_connection(r->conn);
}

/* Suspends the connection until on_stored resumes it; finish_store then
 * answers. Suspending first means a fast commit cannot resume a connection
 * that is not suspended yet. */
static enum MHD_Result store_events(ingress *in, struct MHD_Connection *conn, req *r,
                                    const bus_msg *msgs, size_t n)
{
    r->nmsgs = n;
    r->ids = calloc(n, sizeof *r->ids);
    if (r->ids == NULL)
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    r->in = in;
    r->conn = conn;
    atomic_fetch_add(&in->suspended, 1);
    MHD_suspend_connection(conn);
    char err[sizeof r->store_err] = "";
    int rc = bus_publish_async(in->b, msgs, n, r->ids, on_stored, r, err, sizeof err);
    if (rc != 0) { /* refused before queueing: answer now */
        r->store_rc = rc;
        snprintf(r->store_err, sizeof r->store_err, "%s", err);
        atomic_store(&r->stored, 1);
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static enum MHD_Result finish_route_store(ingress *in, struct MHD_Connection *conn, req *r);

/* Called again after the resume: answer with the commit's outcome. */
static enum MHD_Result finish_store(ingress *in, struct MHD_Connection *conn, req *r)
{
    atomic_fetch_sub(&in->suspended, 1);
    if (r->route == R_SHOPS)
        return finish_route_store(in, conn, r);
    const char *shop = r->shop->id;
    enum MHD_Result ret;
    if (r->store_rc == 0) {
        ret = respond_ok(in, conn, r);
    } else {
        /* Not stored: LINE redelivers on anything but 2xx. */
        log_msg(KZ_LOG_ERROR, "shop '%s': webhook: %zu event(s) not stored: %s", shop, r->nmsgs,
                r->store_err);
        ret = respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                            "events not stored: %s", r->store_err);
    }
    return ret;
}

/* ---- plugin routes: /shops/<shop>/<plugin>/<path> ------------------------ */

/* Any configured shop: routes need no LINE channel. */
static const cfg_shop *config_shop(const cfg *c, const char *id, size_t n)
{
    for (size_t i = 0; i < c->nshops; i++)
        if (c->shops[i].id != NULL && strlen(c->shops[i].id) == n &&
            strncmp(c->shops[i].id, id, n) == 0)
            return &c->shops[i];
    return NULL;
}

/* The config's name of the plugin when the shop enables it (so a URL
 * cannot make up a metric label), else NULL. */
static const char *enabled_plugin(const cfg_shop *shop, const char *name, size_t n)
{
    for (size_t i = 0; i < shop->nplugins; i++)
        if (strlen(shop->plugins[i].name) == n && strncmp(shop->plugins[i].name, name, n) == 0)
            return shop->plugins[i].name;
    return NULL;
}

/* 404 or 405 for a request no route takes. */
static enum MHD_Result route_missing(ingress *in, struct MHD_Connection *conn, req *r,
                                     route_lookup found, const char *allow, const char *method)
{
    if (found == ROUTE_NO_METHOD)
        return respond_error(in, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, allow,
                             "method %.32s not allowed; use %s", method, allow);
    return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL,
                         "plugin '%s' of shop '%s' has no route '%.128s'", r->plugin, r->shop->id,
                         r->path);
}

/* First call: shop, plugin, route and method are decided from the URL,
 * before any body byte is read. */
static enum MHD_Result shops_headers(ingress *in, struct MHD_Connection *conn, req *r,
                                     const char *url, const char *method)
{
    const char *shop = url + strlen(SHOPS_PREFIX);
    size_t shop_len = strcspn(shop, "/");
    const char *plugin = shop + shop_len + (shop[shop_len] == '/');
    size_t plugin_len = strcspn(plugin, "/");
    const char *path = plugin[plugin_len] == '/' ? plugin + plugin_len + 1 : "";
    if ((r->shop = config_shop(in->c, shop, shop_len)) == NULL)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "unknown shop '%.*s'",
                             (int)(shop_len > 64 ? 64 : shop_len), shop);
    if ((r->plugin = enabled_plugin(r->shop, plugin, plugin_len)) == NULL)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL,
                             "plugin '%.*s' is not enabled for shop '%s'",
                             (int)(plugin_len > 64 ? 64 : plugin_len), plugin, r->shop->id);
    if ((r->path = strdup(path)) == NULL)
        return MHD_NO;
    char allow[128];
    route *rt = NULL;
    route_lookup found = routes_request_path_ok(path)
                             ? routes_find(bus_routes(in->b), r->shop->id, r->plugin, path, method,
                                           &rt, allow, sizeof allow)
                             : ROUTE_NO_PATH;
    routes_release(bus_routes(in->b), rt); /* held again when the body is here */
    if (found != ROUTE_FOUND)
        return route_missing(in, conn, r, found, allow, method);
    return body_expected(in, conn, r);
}

/* libmicrohttpd decodes the query; "?flag" (no '=') reads as "". */
static const char *mhd_query(void *conn, const char *name)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &n) !=
        MHD_YES)
        return NULL;
    return v != NULL ? v : "";
}

static const char *mhd_header(void *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The answer the route set, with its headers. */
static enum MHD_Result route_answer(ingress *in, struct MHD_Connection *conn, req *r)
{
    kz_http *h = &r->http;
    struct MHD_Response *resp = new_response(h->content_type, h->resp, h->resp_len);
    if (resp == NULL)
        return MHD_NO;
    for (size_t i = 0; i < h->nheaders; i++)
        if (MHD_add_response_header(resp, h->headers[i].name, h->headers[i].value) != MHD_YES)
            log_msg(KZ_LOG_WARN, "shop '%s': plugin '%s': header %s dropped", r->shop->id,
                    r->plugin, h->headers[i].name);
    return queue(in, conn, r, (unsigned)h->status, resp);
}

/* The whole body is here: the route runs on this thread, its events are
 * stored before its answer goes out. */
static enum MHD_Result route_complete(ingress *in, struct MHD_Connection *conn, req *r,
                                      const char *method)
{
    if (r->too_large)
        return respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body over %zu bytes",
                             in->max_body);
    routes *reg = bus_routes(in->b);
    char allow[128];
    route *rt = NULL;
    route_lookup found =
        routes_find(reg, r->shop->id, r->plugin, r->path, method, &rt, allow, sizeof allow);
    if (found != ROUTE_FOUND) /* unregistered while the body arrived */
        return route_missing(in, conn, r, found, allow, method);
    kz_http *h = &r->http;
    *h = (kz_http){.shop_id = r->shop->id,
                   .plugin = r->plugin,
                   .method = method,
                   .path = r->path,
                   .body = r->body != NULL ? r->body : "",
                   .body_len = r->len,
                   .io = {mhd_query, mhd_header, conn}};
    httpreq_run(h, rt);
    routes_release(reg, rt);
    if (h->status == 0) {
        log_msg(KZ_LOG_ERROR, "shop '%s': plugin '%s': route '%s' returned without an answer%s",
                r->shop->id, r->plugin, r->path, h->nevents ? "; its events are dropped" : "");
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                             "the route did not answer");
    }
    if (h->nevents == 0)
        return route_answer(in, conn, r);
    return store_events(in, conn, r, h->events, h->nevents);
}

/* After the commit: the route's answer, or 503 so the sender retries. */
static enum MHD_Result finish_route_store(ingress *in, struct MHD_Connection *conn, req *r)
{
    if (r->store_rc == 0)
        return route_answer(in, conn, r);
    log_msg(KZ_LOG_ERROR, "shop '%s': plugin '%s': %zu event(s) not stored: %s", r->shop->id,
            r->plugin, r->nmsgs, r->store_err);
    return respond_error(in, conn, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "events not stored: %s",
                         r->store_err);
}

/* ---- other routes ------------------------------------------------------- */

static int is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

static enum MHD_Result serve_metrics(ingress *in, struct MHD_Connection *conn, req *r)
{
    size_t len = 0;
    char *text = metrics_render(in->m, &len);
    if (text == NULL)
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES)
        r->responded = 1;
    return ret;
}

/* ---- admin API ------------------------------------------------------- */

int ingress_is_loopback(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Constant time in the length of the configured token. */
static int token_ok(const char *want, const char *given)
{
    size_t wl = strlen(want), gl = strlen(given);
    unsigned char diff = (unsigned char)(wl != gl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* The token of "Authorization: Bearer <token>" (scheme in any case), or NULL. */
static const char *bearer_of(struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h != '\0' ? h : NULL;
}

static enum MHD_Result respond_unauthorized(ingress *in, struct MHD_Connection *conn, req *r,
                                            const char *msg)
{
    (void)in;
    char body[256];
    int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", msg);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES)
        r->responded = 1;
    return ret;
}

static enum MHD_Result respond_jobj(ingress *in, struct MHD_Connection *conn, req *r, unsigned code,
                                    json_object *o)
{
    if (o == NULL)
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    enum MHD_Result ret = respond_json(in, conn, r, code, text);
    json_object_put(o);
    return ret;
}

static void iso_time(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int add_dead(void *arg, const store_dead *d)
{
    json_object *o = json_object_new_object();
    char when[32];
    iso_time(d->time_ms, when, sizeof when);
    json_object_object_add(o, "id", json_object_new_int64(d->id));
    json_object_object_add(o, "shop", json_object_new_string(d->shop));
    json_object_object_add(o, "plugin", json_object_new_string(d->plugin));
    json_object_object_add(o, "topic", json_object_new_string(d->topic));
    json_object_object_add(o, "uid", json_object_new_string(d->uid));
    json_object_object_add(o, "event_id", json_object_new_int64(d->event_id));
    json_object_object_add(o, "attempts", json_object_new_int(d->attempts));
    json_object_object_add(o, "error", json_object_new_string(d->error ? d->error : ""));
    json_object_object_add(o, "time", json_object_new_string(when));
    json_object_object_add(o, "time_ms", json_object_new_int64(d->time_ms));
    json_object_object_add(o, "replay", json_object_new_boolean(d->replay));
    json_object_array_add(arg, o);
    return 0;
}

static enum MHD_Result admin_dead(ingress *in, struct MHD_Connection *conn, req *r)
{
    json_object *list = json_object_new_array();
    char err[512] = "";
    pthread_mutex_lock(&in->st_mu);
    int rc = store_dead_list(in->st, add_dead, list, err, sizeof err);
    pthread_mutex_unlock(&in->st_mu);
    if (rc != 0) {
        json_object_put(list);
        log_msg(KZ_LOG_ERROR, "admin: dead letters: %s", err);
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "%s", err);
    }
    return respond_jobj(in, conn, r, MHD_HTTP_OK, list);
}

static enum MHD_Result admin_replay(ingress *in, struct MHD_Connection *conn, req *r,
                                    const char *id_text, size_t id_len)
{
    long long id = 0;
    int ok = id_len > 0 && id_len <= 18;
    for (size_t i = 0; ok && i < id_len; i++) {
        ok = id_text[i] >= '0' && id_text[i] <= '9';
        id = id * 10 + (id_text[i] - '0');
    }
    if (!ok || id <= 0)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "no dead letter '%.*s'",
                             (int)(id_len > 32 ? 32 : id_len), id_text);
    char err[512] = "";
    pthread_mutex_lock(&in->st_mu);
    int rc = store_dead_replay(in->st, id, err, sizeof err);
    pthread_mutex_unlock(&in->st_mu);
    if (rc == KZ_ENOTFOUND)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "no dead letter %lld", id);
    if (rc != 0) {
        log_msg(KZ_LOG_ERROR, "admin: replay of dead letter %lld: %s", id, err);
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "%s", err);
    }
    log_msg(KZ_LOG_INFO, "admin: dead letter %lld queued for replay", id);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64(id));
    json_object_object_add(o, "queued", json_object_new_boolean(1));
    return respond_jobj(in, conn, r, MHD_HTTP_OK, o);
}

static enum MHD_Result admin_status(ingress *in, struct MHD_Connection *conn, req *r)
{
    json_object *o = json_object_new_object(), *shops = json_object_new_array(),
                *insts = json_object_new_array();
    for (size_t i = 0; i < in->c->nshops; i++) {
        const cfg_shop *sh = &in->c->shops[i];
        json_object *j = json_object_new_object();
        json_object_object_add(j, "id", json_object_new_string(sh->id));
        json_object_object_add(j, "name", json_object_new_string(sh->name ? sh->name : sh->id));
        json_object_object_add(j, "line", json_object_new_boolean(sh->line_channel_secret != NULL));
        json_object_array_add(shops, j);
    }
    char err[512] = "";
    int rc = 0;
    int64_t pending = 0;
    pthread_mutex_lock(&in->st_mu);
    for (size_t i = 0; rc == 0 && i < bus_instance_count(in->b); i++) {
        const bus_instance *bi = bus_instance_at(in->b, i);
        /* the store's cursor: the in-memory one belongs to a worker thread */
        int64_t cursor = 0;
        rc = store_cursor_get(in->st, bi->id, &cursor, err, sizeof err);
        json_object *j = json_object_new_object();
        json_object_object_add(j, "shop", json_object_new_string(bi->shop_id));
        json_object_object_add(j, "plugin", json_object_new_string(bi->p->name));
        json_object_object_add(j, "enabled", json_object_new_boolean(bi->enabled));
        json_object_object_add(j, "cursor", json_object_new_int64(cursor));
        json_object_array_add(insts, j);
    }
    if (rc == 0)
        rc = store_outbox_pending(in->st, &pending, err, sizeof err);
    pthread_mutex_unlock(&in->st_mu);
    json_object_object_add(o, "shops", shops);
    json_object_object_add(o, "instances", insts);
    json_object_object_add(o, "outbox_pending", json_object_new_int64(pending));
    if (rc != 0) {
        json_object_put(o);
        log_msg(KZ_LOG_ERROR, "admin: status: %s", err);
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "%s", err);
    }
    return respond_jobj(in, conn, r, MHD_HTTP_OK, o);
}

/* ---- the clock: GET /admin/clock, POST /admin/clock/advance ---------- */

static void add_time(json_object *o, const char *name, int64_t ms)
{
    char when[32], key[32];
    iso_time(ms, when, sizeof when);
    json_object_object_add(o, name, json_object_new_string(when));
    snprintf(key, sizeof key, "%s_ms", name);
    json_object_object_add(o, key, json_object_new_int64(ms));
}

static enum MHD_Result admin_clock(ingress *in, struct MHD_Connection *conn, req *r)
{
    json_object *o = json_object_new_object();
    add_time(o, "now", clock_now_ms());
    json_object_object_add(o, "virtual", json_object_new_boolean(clock_is_virtual()));
    return respond_jobj(in, conn, r, MHD_HTTP_OK, o);
}

/* The body {"by":"3d"} or {"to":"TIME"}, optionally "timeout":"DURATION",
 * into w; KZ_EINVAL with the reason in err. */
static int parse_advance(const char *body, size_t len, admin_walk *w, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = tok != NULL ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    if (tok != NULL && json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    const char *by = payload_str(o, "by"), *to = payload_str(o, "to"),
               *timeout = payload_str(o, "timeout");
    int rc = KZ_EINVAL;
    w->timeout_ms = BUS_WALK_TIMEOUT_MS;
    if (o == NULL || !json_object_is_type(o, json_type_object))
        errbuf_set(err, errlen,
                   "the body must be a JSON object: {\"by\":\"3d\"} or {\"to\":\"TIME\"}");
    else if ((by == NULL) == (to == NULL))
        errbuf_set(err, errlen, "give either \"by\" (a duration) or \"to\" (a time), as a string");
    else if (by != NULL && (by[0] == '-' || clock_parse_duration(by, &w->ms) != 0))
        errbuf_set(err, errlen, "by: '%.64s' is not a duration (90s, 15m, 2h, 3d, 1w, 1h30m)", by);
    else if (to != NULL && clock_parse_time(to, &w->ms) != 0)
        errbuf_set(err, errlen, "to: '%.64s' is not a time (2026-12-01T10:00:00+09:00)", to);
    else if (timeout != NULL && (clock_parse_duration(timeout, &w->timeout_ms) != 0 ||
                                 w->timeout_ms <= 0 || w->timeout_ms > BUS_WALK_TIMEOUT_MAX_MS))
        errbuf_set(err, errlen, "timeout: '%.64s' is not a duration between 1ms and 10m", timeout);
    else
        rc = 0;
    w->absolute = to != NULL;
    json_object_put(o);
    return rc;
}

static void *walk_main(void *arg)
{
    admin_walk *w = arg;
    bus *b = w->in->b;
    w->rc = w->absolute ? bus_advance_to(b, w->ms, w->timeout_ms, &w->w, w->err, sizeof w->err)
                        : bus_advance(b, w->ms, w->timeout_ms, &w->w, w->err, sizeof w->err);
    struct MHD_Connection *conn = w->conn; /* w may be freed once resumed */
    atomic_store(&w->done, 1);
    MHD_resume_connection(conn);
    return NULL;
}

/* The whole body is here: check it, then walk on a thread of its own. */
static enum MHD_Result admin_advance(ingress *in, struct MHD_Connection *conn, req *r)
{
    if (r->too_large)
        return respond_error(in, conn, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body over %zu bytes",
                             in->max_body);
    admin_walk *w = calloc(1, sizeof *w);
    if (w == NULL)
        return respond_error(in, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "out of memory");
    char err[512] = "";
    if (parse_advance(r->body != NULL ? r->body : "", r->len, w, err, sizeof err) != 0) {
        free(w);
        return respond_error(in, conn, r, MHD_HTTP_BAD_REQUEST, NULL, "%s", err);
    }
    if (!clock_is_virtual()) {
        free(w);
        return respond_error(in, conn, r, MHD_HTTP_CONFLICT, NULL,
                             "the clock is real: only a virtual clock moves when told "
                             "(kizuna serve --clock virtual[:TIME])");
    }
    /* counted before looking at stopping, which ingress_stop sets before
     * looking at walks: one of the two sees the other */
    atomic_fetch_add(&in->walks, 1);
    if (atomic_load(&in->stopping)) {
        atomic_fetch_sub(&in->walks, 1);
        free(w);
        return respond_error(in, conn, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "kizuna is stopping");
    }
    w->in = in;
    w->conn = conn;
    r->walk = w;
    atomic_fetch_add(&in->suspended, 1);
    MHD_suspend_connection(conn); /* before the thread can resume it */
    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int prc = pthread_create(&th, &attr, walk_main, w);
    pthread_attr_destroy(&attr);
    if (prc != 0) {
        w->rc = KZ_EFAIL;
        errbuf_set(w->err, sizeof w->err, "cannot start the walk's thread: %s", strerror(prc));
        atomic_store(&w->done, 1);
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

/* Called again after the walk resumed the connection. */
static enum MHD_Result finish_advance(ingress *in, struct MHD_Connection *conn, req *r)
{
    atomic_fetch_sub(&in->suspended, 1);
    atomic_fetch_sub(&in->walks, 1);
    const admin_walk *w = r->walk;
    unsigned code = MHD_HTTP_OK;
    if (w->rc == KZ_EINVAL)
        code = MHD_HTTP_BAD_REQUEST;
    else if (w->rc == KZ_ESTATE && !clock_is_virtual())
        code = MHD_HTTP_CONFLICT;
    else if (w->rc == KZ_ESTATE || w->rc == KZ_EFAIL)
        code = MHD_HTTP_SERVICE_UNAVAILABLE; /* stopping, or past the time limit */
    else if (w->rc != 0)
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    if (w->rc != 0)
        log_msg(KZ_LOG_WARN, "admin: clock advance: %s", w->err);
    else {
        char when[32];
        iso_time(w->w.now_ms, when, sizeof when);
        log_msg(KZ_LOG_INFO,
                "admin: clock advanced to %s in %d step(s): %lld timer(s) fired, %lld event(s) "
                "handled",
                when, w->w.steps, (long long)w->w.timers_fired, (long long)w->w.handled);
    }
    json_object *o = json_object_new_object();
    if (w->rc != 0)
        json_object_object_add(o, "message", json_object_new_string(w->err));
    add_time(o, "now", w->w.now_ms);
    json_object_object_add(o, "virtual", json_object_new_boolean(clock_is_virtual()));
    add_time(o, "from", w->w.from_ms);
    json_object_object_add(o, "steps", json_object_new_int(w->w.steps));
    json_object_object_add(o, "timers_fired", json_object_new_int64(w->w.timers_fired));
    json_object_object_add(o, "events_handled", json_object_new_int64(w->w.handled));
    json_object_object_add(o, "handler_failures", json_object_new_int64(w->w.failed));
    return respond_jobj(in, conn, r, code, o);
}

/* Decided from the headers, except POST /admin/clock/advance, which reads
 * its body first (admin_advance). */
static enum MHD_Result admin_request(ingress *in, struct MHD_Connection *conn, req *r,
                                     const char *url, const char *method)
{
    if (in->c->admin_token == NULL)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL,
                             "admin API disabled: set kizuna.admin_token");
    if (!in->c->admin_remote) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci == NULL || !ingress_is_loopback(ci->client_addr))
            return respond_error(in, conn, r, MHD_HTTP_FORBIDDEN, NULL,
                                 "admin API answers loopback clients only "
                                 "(kizuna.admin_remote = false)");
    }
    const char *tok = bearer_of(conn);
    if (tok == NULL)
        return respond_unauthorized(in, conn, r, "missing Authorization: Bearer token");
    if (!token_ok(in->c->admin_token, tok))
        return respond_unauthorized(in, conn, r, "bad admin token");
    const char *path = url + strlen(ADMIN_PREFIX);
    const char *allow = NULL;
    if (strcmp(path, "dead") == 0) {
        if (is_get(method))
            return admin_dead(in, conn, r);
        allow = "GET, HEAD";
    } else if (strcmp(path, "status") == 0) {
        if (is_get(method))
            return admin_status(in, conn, r);
        allow = "GET, HEAD";
    } else if (strcmp(path, "clock") == 0) {
        if (is_get(method))
            return admin_clock(in, conn, r);
        allow = "GET, HEAD";
    } else if (strcmp(path, "clock/advance") == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            r->admin_body = 1;
            return body_expected(in, conn, r);
        }
        allow = "POST";
    } else if (strncmp(path, "dead/", 5) == 0 && strchr(path + 5, '/') != NULL &&
               strcmp(strchr(path + 5, '/'), "/replay") == 0) {
        const char *id = path + 5;
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
            return admin_replay(in, conn, r, id, (size_t)(strchr(id, '/') - id));
        allow = "POST";
    }
    if (allow == NULL)
        return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "not found");
    return respond_error(in, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, allow,
                         "method %.32s not allowed; use %s", method, allow);
}

/* ---- libmicrohttpd callbacks -------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    ingress *in = cls;
    req *r = *con_cls;
    if (r == NULL) { /* headers only */
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &r->start);
        *con_cls = r;
        if (strncmp(url, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) == 0 &&
            url[strlen(WEBHOOK_PREFIX)] != '\0' &&
            strchr(url + strlen(WEBHOOK_PREFIX), '/') == NULL) {
            const char *shop_id = url + strlen(WEBHOOK_PREFIX);
            r->route = R_WEBHOOK;
            r->shop = webhook_shop(in->c, shop_id);
            return webhook_headers(in, conn, r, shop_id, method);
        }
        if (strncmp(url, SHOPS_PREFIX, strlen(SHOPS_PREFIX)) == 0) {
            r->route = R_SHOPS;
            return shops_headers(in, conn, r, url, method);
        }
        if (strncmp(url, ADMIN_PREFIX, strlen(ADMIN_PREFIX)) == 0 || strcmp(url, "/admin") == 0) {
            r->route = R_ADMIN;
            return admin_request(in, conn, r, strcmp(url, "/admin") == 0 ? ADMIN_PREFIX : url,
                                 method);
        }
        if (strcmp(url, "/healthz") == 0)
            r->route = R_HEALTHZ;
        else if (strcmp(url, "/metrics") == 0 && in->m != NULL)
            r->route = R_METRICS;
        else
            r->route = R_NOT_FOUND;
        if (r->route == R_NOT_FOUND)
            return respond_error(in, conn, r, MHD_HTTP_NOT_FOUND, NULL, "not found");
        if (!is_get(method))
            return respond_error(in, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, HEAD",
                                 "method %.32s not allowed; use GET", method);
        if (r->route == R_HEALTHZ)
            return respond(in, conn, r, MHD_HTTP_OK, "text/plain", "ok\n", 3, NULL);
        return serve_metrics(in, conn, r);
    }
    if (r->ids != NULL && !r->responded)
        return atomic_load(&r->stored) ? finish_store(in, conn, r) : MHD_YES;
    if (r->walk != NULL && !r->responded)
        return atomic_load(&r->walk->done) ? finish_advance(in, conn, r) : MHD_YES;
    if (r->responded) { /* answered early: ignore whatever body follows */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return body_chunk(in, conn, r, upload_data, n);
    }
    if (r->route == R_SHOPS)
        return route_complete(in, conn, r, method);
    if (r->route == R_ADMIN && r->admin_body)
        return admin_advance(in, conn, r);
    return webhook_complete(in, conn, r);
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
    webhook_batch_free(&r->batch);
    httpreq_free(&r->http);
    free(r->path);
    free(r->ids);
    free(r->body);
    free(r->walk);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    ingress *in = cls;
    char msg[sizeof in->start_err];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (atomic_load(&in->starting))
        memcpy(in->start_err, msg, n + 1);
    else
        log_msg(KZ_LOG_DEBUG, "http: %s", msg);
}

/* ---- start / stop ------------------------------------------------------- */

static struct MHD_Daemon *start_mhd(ingress *in, struct sockaddr_in *sa)
{
    return MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, in, MHD_OPTION_THREAD_POOL_SIZE, HTTP_THREADS, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)sa, MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, in, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, in,
        MHD_OPTION_END);
}

int ingress_start(const ingress_options *o, ingress **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->c == NULL || o->b == NULL) {
        errbuf_set(err, errlen, "ingress: missing config or bus");
        return KZ_EINVAL;
    }
    struct sockaddr_in sa;
    int rc = netaddr_parse("listen", o->listen, &sa, err, errlen);
    if (rc != 0)
        return rc;
    ingress *in = calloc(1, sizeof *in);
    if (in == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    in->m = o->m;
    in->c = o->c;
    in->b = o->b;
    in->max_body = o->max_body != 0 ? o->max_body : DEFAULT_MAX_BODY;
    pthread_mutex_init(&in->st_mu, NULL);
    if (o->c->admin_token != NULL) {
        rc = o->store_url != NULL
                 ? store_open(o->store_url, o->sync_mode, &in->st, err, errlen)
                 : (errbuf_set(err, errlen, "ingress: admin API needs a store"), KZ_EINVAL);
        if (rc != 0) {
            pthread_mutex_destroy(&in->st_mu);
            free(in);
            return rc;
        }
    }
    if (o->m != NULL) {
        static const char *const req_labels[] = {"shop", "code", NULL};
        static const char *const route_labels[] = {"shop", "plugin", "code", NULL};
        static const char *const ev_labels[] = {"shop", "result", NULL};
        static const char *const dur_labels[] = {"route", NULL};
        static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2,     2.5,  5,   10};
        in->requests =
            metrics_counter(o->m, "kizuna_webhook_requests_total",
                            "LINE webhook requests answered, by status code", req_labels);
        in->route_requests = metrics_counter(
            o->m, "kizuna_route_requests_total",
            "Plugin route requests (/shops/<shop>/<plugin>/...) answered, by status code",
            route_labels);
        in->events = metrics_counter(o->m, "kizuna_webhook_events_total",
                                     "LINE webhook events received (stored, or duplicate of "
                                     "one already stored)",
                                     ev_labels);
        in->duration = metrics_histogram(
            o->m, "kizuna_http_request_duration_seconds",
            "Time from request headers to response queued (webhooks: includes the durable write)",
            dur_labels, buckets, sizeof buckets / sizeof *buckets);
    }
    in->ok = new_response("application/json", "{}", 2);
    atomic_store(&in->starting, 1);
    in->d = in->ok != NULL ? start_mhd(in, &sa) : NULL;
    if (in->d == NULL) {
        errbuf_set(err, errlen, "cannot listen on %s%s%s", o->listen, in->start_err[0] ? ": " : "",
                   in->start_err);
        if (in->ok != NULL)
            MHD_destroy_response(in->ok);
        store_close(in->st);
        pthread_mutex_destroy(&in->st_mu);
        free(in);
        return KZ_EFAIL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(in->d, MHD_DAEMON_INFO_BIND_PORT);
    in->port = info != NULL ? info->port : ntohs(sa.sin_port);
    atomic_store(&in->starting, 0);
    if (in->st != NULL)
        log_msg(KZ_LOG_INFO, "admin API on /admin/ (%s)",
                o->c->admin_remote ? "any client with the token" : "loopback clients only");
    *out = in;
    return 0;
}

uint16_t ingress_port(const ingress *in)
{
    return in != NULL ? in->port : 0;
}

void ingress_stop(ingress *in)
{
    if (in == NULL)
        return;
    /* libmicrohttpd must not be stopped with suspended connections: stop
     * accepting, let the bus finish the commits in flight (bounded). */
    MHD_socket fd = MHD_quiesce_daemon(in->d);
    atomic_store(&in->stopping, 1);
    if (atomic_load(&in->walks) > 0)
        bus_advance_cancel(in->b); /* a walk in progress ends within milliseconds */
    for (int i = 0; i < 5000 && atomic_load(&in->suspended) > 0; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    MHD_stop_daemon(in->d);
    MHD_destroy_response(in->ok);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    store_close(in->st);
    pthread_mutex_destroy(&in->st_mu);
    free(in);
}
