/*
 * ingress — the daemon's HTTP server (libmicrohttpd).
 *
 *   POST /webhook/<shop>   LINE webhooks: 401 missing or bad X-Line-Signature
 *                          (checked before parsing, nothing stored); 400 not
 *                          JSON or no "events"; 404 unknown shop; 405 other
 *                          methods (with Allow: POST); 413 body over
 *                          max_body, refused while reading (Content-Length
 *                          checked first); 200 for an empty "events" (LINE's
 *                          verify request); otherwise 200 only after every
 *                          event is durably stored (bus_publish), duplicates
 *                          (redeliveries) accepted and stored once.
 *   /shops/<shop>/<plugin>/<path>
 *                          plugin routes (routes.h), registered from
 *                          shop_open; the plugin authenticates its callers.
 *                          404 unknown shop, plugin not enabled for it, or
 *                          no route; 405 with Allow when routes match the
 *                          path but not the method; 413 as for webhooks;
 *                          then the route runs on this HTTP thread with a
 *                          kz_http (httpreq.h). The events it published are
 *                          stored like a webhook's (bus_publish_async, the
 *                          connection suspended) before its answer goes
 *                          out; 503 when they could not be; 500 when the
 *                          route did not answer.
 *   GET  /healthz          200 "ok" while serving.
 *   GET  /metrics          Prometheus text (metrics.h).
 *   /admin/...             the admin API (docs/http.md), when c->admin_token
 *                          is set (404 otherwise): 403 from a non-loopback
 *                          peer unless c->admin_remote; 401 without
 *                          "Authorization: Bearer <admin_token>".
 *                          GET /admin/dead, POST /admin/dead/<id>/replay,
 *                          GET /admin/status, GET /admin/clock,
 *                          POST /admin/clock/advance (bus_advance on a
 *                          thread of its own, the connection suspended;
 *                          400 bad body, 409 real clock, 503 past its
 *                          time limit or stopping).
 *   anything else          404.
 *
 * Error bodies are small JSON objects: {"message":"…"}.
 *
 * Ownership: the ingress borrows bus, shops and metrics; they must outlive
 * ingress_stop (the plugin routes live in the bus). Thread: start/stop from the main thread;
 * requests run on libmicrohttpd's threads.
 */
#ifndef KIZUNA_CORE_INGRESS_H
#define KIZUNA_CORE_INGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "metrics.h"

typedef struct ingress ingress;

typedef struct ingress_options {
    const char *listen; /* "HOST:PORT"; port 0 picks a free one (tests) */
    size_t max_body;    /* bytes; 0 means 1 MiB */
    const cfg *c;       /* shops and their channel secrets */
    bus *b;             /* where webhook events go */
    metrics *m;         /* may be NULL */
    /* the admin API's own store connection (opened only when
     * c->admin_token is set) */
    const char *store_url;
    int sync_mode;
} ingress_options;

int ingress_start(const ingress_options *o, ingress **out, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
uint16_t ingress_port(const ingress *in);
/* Stops accepting, finishes requests in flight, frees. NULL is fine. */
void ingress_stop(ingress *in);

struct sockaddr;
/* 1 when sa is a loopback peer: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104
 * (the admin API's default rule); 0 otherwise and for NULL. */
int ingress_is_loopback(const struct sockaddr *sa);

#endif
