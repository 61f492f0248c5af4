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
 *   GET  /healthz          200 "ok" while serving.
 *   GET  /metrics          Prometheus text (metrics.h).
 *   anything else          404.
 *
 * Error bodies are small JSON objects: {"message":"…"}.
 *
 * Ownership: the ingress borrows bus, shops and metrics; they must outlive
 * ingress_stop. Thread: start/stop from the main thread; requests run on
 * libmicrohttpd's threads.
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
} ingress_options;

int ingress_start(const ingress_options *o, ingress **out, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
uint16_t ingress_port(const ingress *in);
/* Stops accepting, finishes requests in flight, frees. NULL is fine. */
void ingress_stop(ingress *in);

#endif
