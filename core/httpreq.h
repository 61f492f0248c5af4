/*
 * httpreq — the request a plugin route sees (kz_http): its accessors, the
 * answer it sets and the events it publishes, which the HTTP server stores
 * before it answers.
 *
 * The HTTP server (ingress.c) fills a kz_http from its connection, calls
 * httpreq_run with the held route, then reads status/headers/body and the
 * queued events, and httpreq_free's it. Query and header lookups go
 * through httpreq_io, so this module does not depend on libmicrohttpd.
 *
 * The kz_http slots of the host table are the functions below (http_publish
 * is host.c's, which checks topic and JSON as kz_publish does, then calls
 * httpreq_add_event). Each checks that the request is live: inside its
 * route callback, on the thread running it (KZ_ESTATE / NULL and a log line
 * otherwise).
 *
 * Ownership: the kz_http owns the answer, its headers and the queued events
 * (every string copied); method, path, body and io are borrowed from the
 * caller for the request's lifetime. Thread: the HTTP thread handling the
 * request.
 */
#ifndef KIZUNA_CORE_HTTPREQ_H
#define KIZUNA_CORE_HTTPREQ_H

#include <pthread.h>
#include <stddef.h>

#include <kizuna/host.h>

#include "bus.h"
#include "routes.h"

#define HTTPREQ_MAX_EVENTS 100   /* http_publish calls per request */
#define HTTPREQ_MAX_HEADERS 32   /* http_header_set calls per request */
#define HTTPREQ_HEADER_MAX 8192  /* bytes in a header value */
#define HTTPREQ_BODY_MAX 8388608 /* bytes in an answer */

/* The HTTP layer's lookups on its connection: NULL when absent. */
typedef struct httpreq_io {
    const char *(*query)(void *conn, const char *name);  /* URL-decoded */
    const char *(*header)(void *conn, const char *name); /* any case */
    void *conn;
} httpreq_io;

typedef struct httpreq_field {
    char *name, *value;
} httpreq_field;

struct kz_http {
    /* the request, filled by the HTTP server */
    const char *shop_id, *plugin;
    const char *method, *path; /* path below the plugin's root, no query */
    const char *body;          /* "" when none */
    size_t body_len;
    httpreq_io io;
    /* set by httpreq_run */
    kz_shop *shop;
    pthread_t thread;
    int live;
    /* the answer: status 0 until http_respond */
    int status;
    char *content_type, *resp;
    size_t resp_len;
    httpreq_field *headers;
    size_t nheaders;
    /* events published during the callback, with every string owned */
    bus_msg *events;
    size_t nevents;
};

/* Runs the route's function on req, on the calling thread, with the log
 * context of its plugin and shop. */
void httpreq_run(kz_http *req, const route *rt);
/* Frees what the request owns (not the struct). */
void httpreq_free(kz_http *req);

/* 1 when req may be used now; logs what went wrong otherwise. */
int httpreq_live(const kz_http *req, const char *what);

/* Queues an event already checked (topic, JSON). dedupe_key: the uid is
 * httpreq_dedupe_uid's; NULL: a random one. KZ_ETOOBIG past
 * HTTPREQ_MAX_EVENTS or for a key over KZ_KEY_MAX, KZ_EINVAL for "". */
int httpreq_add_event(kz_http *req, const char *topic, const char *user, const char *json,
                      size_t len, const char *dedupe_key);

/* The event uid of a dedupe key: a UUID (version 8, RFC 9562) made of
 * SHA-256 over shop, plugin and key, so the same key always gives the same
 * uid for the same instance and never one of another instance's. */
void httpreq_dedupe_uid(const char *shop, const char *plugin, const char *key, char out[37]);

/* The kz_http slots (sdk/include/kizuna/host.h). */
kz_shop *httpreq_shop(kz_http *req);
const char *httpreq_method(const kz_http *req);
const char *httpreq_path(const kz_http *req);
const char *httpreq_query(const kz_http *req, const char *name);
const char *httpreq_header(const kz_http *req, const char *name);
const void *httpreq_body(const kz_http *req, size_t *len);
int httpreq_header_set(kz_http *req, const char *name, const char *value);
int httpreq_respond(kz_http *req, int status, const char *content_type, const void *body,
                    size_t len);

#endif
