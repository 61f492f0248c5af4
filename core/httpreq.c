/*
 * httpreq — see httpreq.h.
 */
#include "httpreq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "log.h"
#include "payload.h"

/* ---- life cycle ---------------------------------------------------------- */

void httpreq_run(kz_http *req, const route *rt)
{
    req->shop = route_owner(rt);
    req->thread = pthread_self();
    req->live = 1;
    log_set_context(req->plugin, req->shop_id);
    route_call(rt, req);
    log_set_context(NULL, NULL);
    req->live = 0;
}

static void free_event(bus_msg *m)
{
    free((char *)m->uid);
    free((char *)m->topic);
    free((char *)m->user);
    free((char *)m->json);
}

void httpreq_free(kz_http *req)
{
    free(req->content_type);
    free(req->resp);
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->headers);
    for (size_t i = 0; i < req->nevents; i++)
        free_event(&req->events[i]);
    free(req->events);
    req->content_type = req->resp = NULL;
    req->headers = NULL;
    req->events = NULL;
    req->nheaders = req->nevents = 0;
}

int httpreq_live(const kz_http *req, const char *what)
{
    if (req != NULL && req->live && pthread_equal(req->thread, pthread_self()))
        return 1;
    log_msg(KZ_LOG_ERROR,
            "%s called with a kz_http that is not live (used after its route "
            "returned or from another thread)",
            what);
    return 0;
}

/* ---- accessors ----------------------------------------------------------- */

kz_shop *httpreq_shop(kz_http *req)
{
    return httpreq_live(req, "kz_http_shop") ? req->shop : NULL;
}

const char *httpreq_method(const kz_http *req)
{
    return httpreq_live(req, "kz_http_method") ? req->method : NULL;
}

const char *httpreq_path(const kz_http *req)
{
    return httpreq_live(req, "kz_http_path") ? req->path : NULL;
}

const char *httpreq_query(const kz_http *req, const char *name)
{
    if (!httpreq_live(req, "kz_http_query") || name == NULL || req->io.query == NULL)
        return NULL;
    return req->io.query(req->io.conn, name);
}

const char *httpreq_header(const kz_http *req, const char *name)
{
    if (!httpreq_live(req, "kz_http_header") || name == NULL || req->io.header == NULL)
        return NULL;
    return req->io.header(req->io.conn, name);
}

const void *httpreq_body(const kz_http *req, size_t *len)
{
    int live = httpreq_live(req, "kz_http_body");
    if (len != NULL)
        *len = live ? req->body_len : 0;
    return live ? (req->body != NULL ? req->body : "") : NULL;
}

/* ---- the answer ---------------------------------------------------------- */

/* RFC 9110 token characters. */
static int token_ok(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (s == NULL || s[0] == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              strchr(extra, *s) != NULL))
            return 0;
    return 1;
}

/* No CR, LF or other control byte but tab: a value cannot start another
 * header (response splitting). */
static int value_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return 0;
    return 1;
}

/* Headers the host sets itself from the answer. */
static int host_header(const char *name)
{
    return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
           strcasecmp(name, "Content-Type") == 0;
}

static int refuse(const char *what, const char *why, const char *detail)
{
    log_msg(KZ_LOG_ERROR, "%s: %s%.64s", what, why, detail ? detail : "");
    return KZ_EINVAL;
}

int httpreq_header_set(kz_http *req, const char *name, const char *value)
{
    static const char what[] = "kz_http_header_set";
    if (!httpreq_live(req, what))
        return KZ_ESTATE;
    if (!token_ok(name) || value == NULL || !value_ok(value))
        return refuse(what, "bad header name or value: ", name);
    if (host_header(name))
        return refuse(what, "set by the host (use kz_http_respond's content type): ", name);
    if (req->nheaders == HTTPREQ_MAX_HEADERS || strlen(value) > HTTPREQ_HEADER_MAX)
        return KZ_ETOOBIG;
    httpreq_field *grown = realloc(req->headers, (req->nheaders + 1) * sizeof *grown);
    if (grown == NULL)
        return KZ_ENOMEM;
    req->headers = grown;
    httpreq_field *h = &req->headers[req->nheaders];
    h->name = strdup(name);
    h->value = strdup(value);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return KZ_ENOMEM;
    }
    req->nheaders++;
    return 0;
}

int httpreq_respond(kz_http *req, int status, const char *content_type, const void *body,
                    size_t len)
{
    static const char what[] = "kz_http_respond";
    if (!httpreq_live(req, what))
        return KZ_ESTATE;
    if (req->status != 0) {
        log_msg(KZ_LOG_ERROR, "%s: called twice; the first answer (%d) stands", what, req->status);
        return KZ_ESTATE;
    }
    if (status < 200 || status > 599 || (body == NULL && len > 0))
        return refuse(what, "status must be 200..599 and a body given with its length", NULL);
    if (content_type != NULL && (content_type[0] == '\0' || !value_ok(content_type)))
        return refuse(what, "bad content type: ", content_type);
    if (len > HTTPREQ_BODY_MAX)
        return KZ_ETOOBIG;
    req->content_type = strdup(content_type != NULL ? content_type : "text/plain");
    req->resp = malloc(len + 1);
    if (req->content_type == NULL || req->resp == NULL) {
        free(req->content_type);
        free(req->resp);
        req->content_type = req->resp = NULL;
        return KZ_ENOMEM;
    }
    if (len > 0)
        memcpy(req->resp, body, len);
    req->resp[len] = '\0';
    req->resp_len = len;
    req->status = status;
    return 0;
}

/* ---- published events ---------------------------------------------------- */

void httpreq_dedupe_uid(const char *shop, const char *plugin, const char *key, char out[37])
{
    /* NUL separators: ("ab","c") and ("a","bc") must not collide */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, "kizuna.route", 13) == 1 &&
             EVP_DigestUpdate(md, shop, strlen(shop) + 1) == 1 &&
             EVP_DigestUpdate(md, plugin, strlen(plugin) + 1) == 1 &&
             EVP_DigestUpdate(md, key, strlen(key)) == 1 &&
             EVP_DigestFinal_ex(md, digest, &n) == 1 && n >= 16;
    EVP_MD_CTX_free(md);
    if (!ok)
        memset(digest, 0, 16); /* cannot happen with OpenSSL's own SHA-256 */
    payload_uuid_format(digest, 8, out);
}

static char *copy_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c != NULL) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

int httpreq_add_event(kz_http *req, const char *topic, const char *user, const char *json,
                      size_t len, const char *dedupe_key)
{
    if (dedupe_key != NULL && dedupe_key[0] == '\0')
        return KZ_EINVAL;
    if (req->nevents == HTTPREQ_MAX_EVENTS || (dedupe_key && strlen(dedupe_key) > KZ_KEY_MAX))
        return KZ_ETOOBIG;
    bus_msg *grown = realloc(req->events, (req->nevents + 1) * sizeof *grown);
    if (grown == NULL)
        return KZ_ENOMEM;
    req->events = grown;
    char uid[37];
    if (dedupe_key != NULL)
        httpreq_dedupe_uid(req->shop_id, req->plugin, dedupe_key, uid);
    bus_msg m = {.shop = req->shop_id,
                 .uid = dedupe_key ? strdup(uid) : NULL,
                 .topic = strdup(topic),
                 .user = user ? strdup(user) : NULL,
                 .json = copy_n(json, len),
                 .len = len};
    if ((dedupe_key && !m.uid) || !m.topic || (user && !m.user) || !m.json) {
        free_event(&m);
        return KZ_ENOMEM;
    }
    req->events[req->nevents++] = m;
    return 0;
}
