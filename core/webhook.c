/*
 * webhook — LINE webhook signature check and request body → bus events.
 *
 * The signature is HMAC-SHA256 over the raw bytes, compared in constant
 * time. The body is checked in one pass (jscan_validate: RFC 8259, UTF-8,
 * depth) and walked without building a tree: each event's
 * payload is its bytes as LINE sent them, whitespace between tokens taken
 * out. json-c is used only off the hot path: for the reason a body is
 * refused, for the rare escaped string among the four looked up, and for
 * the uid of an event that has no webhookEventId. Every string a bus_msg
 * points to is a copy owned by the batch: the body may go once
 * webhook_parse returns.
 */
#include "webhook.h"

#include "errbuf.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <kizuna/host.h>

#include "jsonscan.h"
#include "payload.h"
#include "topic.h"

#define SIG_B64_LEN 44 /* base64 of a 32-byte digest */

/* ---- signature ------------------------------------------------------- */

/* Each thread keeps the keyed HMAC contexts of the last few secrets it
 * signed with: OpenSSL 3's one-shot HMAC() fetches HMAC and SHA-256 and
 * keys them on every call, 0.9 of its 1.4 us for a 500-byte body. A
 * daemon's HTTP threads see few secrets (one a shop); more than MAC_SLOTS
 * in turn only re-key, as HMAC() did every time. */
#define MAC_SLOTS 4

typedef struct mac_slot {
    EVP_MAC_CTX *ctx;
    char *secret; /* the key ctx holds; cleansed when freed */
} mac_slot;

typedef struct mac_cache {
    mac_slot slot[MAC_SLOTS];
    unsigned next; /* the slot a new secret takes */
} mac_cache;

static EVP_MAC *mac_algo; /* fetched once, never freed */
static pthread_key_t mac_key;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;

static void drop_secret(mac_slot *s)
{
    if (s->secret != NULL)
        OPENSSL_clear_free(s->secret, strlen(s->secret));
    s->secret = NULL;
}

static void mac_cache_free(void *arg)
{
    mac_cache *c = arg;
    for (int i = 0; i < MAC_SLOTS; i++) {
        EVP_MAC_CTX_free(c->slot[i].ctx);
        drop_secret(&c->slot[i]);
    }
    free(c);
}

static void mac_setup(void)
{
    if (pthread_key_create(&mac_key, mac_cache_free) == 0)
        mac_algo = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* A context keyed with secret and ready for data, or NULL (then HMAC()). */
static EVP_MAC_CTX *mac_for(const char *secret)
{
    pthread_once(&mac_once, mac_setup);
    if (mac_algo == NULL || secret[0] == '\0')
        return NULL;
    mac_cache *c = pthread_getspecific(mac_key);
    if (c == NULL) {
        if ((c = calloc(1, sizeof *c)) == NULL)
            return NULL;
        if (pthread_setspecific(mac_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    for (int i = 0; i < MAC_SLOTS; i++) {
        mac_slot *s = &c->slot[i];
        if (s->secret != NULL && strcmp(s->secret, secret) == 0)
            return EVP_MAC_init(s->ctx, NULL, 0, NULL) == 1 ? s->ctx : NULL; /* same key */
    }
    mac_slot *s = &c->slot[c->next++ % MAC_SLOTS];
    drop_secret(s);
    if (s->ctx == NULL && (s->ctx = EVP_MAC_CTX_new(mac_algo)) == NULL)
        return NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(s->ctx, (const unsigned char *)secret, strlen(secret), params) != 1)
        return NULL;
    s->secret = strdup(secret); /* NULL: not reused, still correct */
    return s->ctx;
}

void webhook_sign(const char *channel_secret, const char *body, size_t len, char out[45])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    const char *key = channel_secret ? channel_secret : "";
    const unsigned char *data = (const unsigned char *)(body ? body : "");
    out[0] = '\0';
    if (body == NULL)
        len = 0;
    EVP_MAC_CTX *ctx = mac_for(key);
    size_t n = 0;
    unsigned int mdlen = 0;
    int ok = ctx != NULL
                 ? EVP_MAC_update(ctx, data, len) == 1 &&
                       EVP_MAC_final(ctx, md, &n, sizeof md) == 1 && n == 32
                 : HMAC(EVP_sha256(), key, (int)strlen(key), data, len, md, &mdlen) != NULL &&
                       mdlen == 32;
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, md, 32);
    OPENSSL_cleanse(md, sizeof md);
}

int webhook_signature_ok(const char *channel_secret, const char *body, size_t len,
                         const char *signature)
{
    /* An empty secret is a misconfiguration, never a valid LINE channel. */
    if (channel_secret == NULL || channel_secret[0] == '\0' || signature == NULL)
        return 0;
    if (body == NULL && len != 0)
        return 0;
    if (strnlen(signature, SIG_B64_LEN + 1) != SIG_B64_LEN)
        return 0;
    char want[45];
    webhook_sign(channel_secret, body, len, want);
    if (strlen(want) != SIG_B64_LEN)
        return 0;
    int ok = CRYPTO_memcmp(want, signature, SIG_B64_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}

/* ---- batch ----------------------------------------------------------- */

typedef struct wh_strings {
    char *topic, *uid, *user, *json;
} wh_strings;

typedef struct wh_priv {
    char *shop;
    wh_strings *s; /* one per msg */
    size_t n;
} wh_priv;

void webhook_batch_free(webhook_batch *b)
{
    if (b == NULL)
        return;
    wh_priv *p = b->priv;
    if (p != NULL) {
        for (size_t i = 0; i < p->n; i++) {
            free(p->s[i].topic);
            free(p->s[i].uid);
            free(p->s[i].user);
            free(p->s[i].json);
        }
        free(p->s);
        free(p->shop);
        free(p);
    }
    free(b->msgs);
    b->msgs = NULL;
    b->n = 0;
    b->priv = NULL;
}

/* 1 when s is one topic word: [A-Za-z0-9_-]+. */
static int topic_word(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* "line.<type>", "line.message.<mtype>", "line.message.unknown" or
 * "line.unknown"; always a valid topic of at most KZ_TOPIC_MAX bytes. type
 * and mtype are NULL when absent, not strings or holding a NUL. */
static char *event_topic(const char *type, const char *mtype)
{
    char buf[KZ_TOPIC_MAX + 1];
    if (type != NULL && strcmp(type, "message") == 0) {
        if (topic_word(mtype) && strlen(mtype) <= KZ_TOPIC_MAX - strlen("line.message.")) {
            snprintf(buf, sizeof buf, "line.message.%s", mtype);
            if (topic_valid(buf))
                return strdup(buf);
        }
        return strdup("line.message.unknown");
    }
    if (topic_word(type) && strlen(type) <= KZ_TOPIC_MAX - strlen("line.")) {
        snprintf(buf, sizeof buf, "line.%s", type);
        if (topic_valid(buf))
            return strdup(buf);
    }
    return strdup("line.unknown");
}

/* "sha256:<hex>" of the event as json-c writes it without "deliveryContext",
 * so a redelivered copy (which differs only in deliveryContext.isRedelivery)
 * gets the same uid; NULL when out of memory. Only events without a
 * webhookEventId come here (LINE sends one with every event). */
static char *hash_uid(const char *json)
{
    json_object *ev = json_tokener_parse(json);
    if (ev == NULL)
        return NULL;
    json_object_object_del(ev, "deliveryContext");
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = s != NULL && EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
    json_object_put(ev);
    if (!ok)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    char *uid = malloc(strlen("sha256:") + 2 * 32 + 1);
    if (uid == NULL)
        return NULL;
    memcpy(uid, "sha256:", 7);
    for (unsigned int i = 0; i < mdlen; i++) {
        uid[7 + 2 * i] = hex[md[i] >> 4];
        uid[7 + 2 * i + 1] = hex[md[i] & 15];
    }
    uid[7 + 2 * mdlen] = '\0';
    return uid;
}

/* The last string member `key` of object v (json-c's rule for a repeated
 * member), decoded into *out (NULL when absent, not a string or holding a
 * NUL); 0 or KZ_ENOMEM. depth: containers open around v. */
static int member_str(jscan_span v, int depth, const char *key, char **out)
{
    *out = NULL;
    jscan_iter it;
    if (jscan_open(&it, v, depth, '{') != 0)
        return 0;
    jscan_span k, val, last = {0};
    while (jscan_member(&it, &k, &val) == 1)
        if (jscan_key_is(k, key))
            last = val;
    int rc = last.p != NULL ? jscan_string(last, out) : 1;
    return rc == KZ_ENOMEM ? KZ_ENOMEM : 0;
}

/* The event's members that decide topic, uid and user (the last of each). */
typedef struct ev_members {
    jscan_span type, id, message, source;
} ev_members;

static void event_members(jscan_span ev, ev_members *m)
{
    memset(m, 0, sizeof *m);
    jscan_iter it;
    jscan_span k, v;
    if (jscan_open(&it, ev, 2, '{') != 0)
        return;
    while (jscan_member(&it, &k, &v) == 1) {
        if (jscan_key_is(k, "type"))
            m->type = v;
        else if (jscan_key_is(k, "webhookEventId"))
            m->id = v;
        else if (jscan_key_is(k, "message"))
            m->message = v;
        else if (jscan_key_is(k, "source"))
            m->source = v;
    }
}

/* Fills s and m from one event object (its span in the body, already
 * depth-checked); KZ_ENOMEM on allocation failure, KZ_ETOOBIG for an event
 * over the payload limit (a body may hold more than one event's worth when
 * kizuna.max_body is raised). */
static int convert_event(jscan_span ev, const char *shop, wh_strings *s, bus_msg *m)
{
    if ((s->json = malloc(ev.n + 1)) == NULL)
        return KZ_ENOMEM;
    size_t n = jscan_compact(s->json, ev.p, ev.n);
    s->json[n] = '\0';
    if (n > KZ_PAYLOAD_MAX)
        return KZ_ETOOBIG;

    ev_members em;
    event_members(ev, &em);
    char *type = NULL, *mtype = NULL;
    int rc = em.type.p != NULL && jscan_string(em.type, &type) == KZ_ENOMEM ? KZ_ENOMEM : 0;
    if (rc == 0 && type != NULL && strcmp(type, "message") == 0)
        rc = member_str(em.message, 3, "type", &mtype);
    if (rc == 0 && (s->topic = event_topic(type, mtype)) == NULL)
        rc = KZ_ENOMEM;
    free(type);
    free(mtype);
    if (rc != 0)
        return rc;

    if (em.id.p != NULL && jscan_string(em.id, &s->uid) == KZ_ENOMEM)
        return KZ_ENOMEM;
    if (s->uid != NULL && s->uid[0] == '\0') {
        free(s->uid);
        s->uid = NULL;
    }
    if (s->uid == NULL && (s->uid = hash_uid(s->json)) == NULL)
        return KZ_ENOMEM;

    if (member_str(em.source, 3, "userId", &s->user) != 0)
        return KZ_ENOMEM;
    if (s->user != NULL && s->user[0] == '\0') {
        free(s->user);
        s->user = NULL;
    }

    m->shop = shop;
    m->uid = s->uid;
    m->topic = s->topic;
    m->user = s->user;
    m->json = s->json;
    m->len = n;
    m->json_checked = 1; /* part of a body jscan_validate() passed, spaces removed */
    return 0;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses body into *doc with json-c: exactly one JSON value, nothing but
 * whitespace after it. Only for invalid_body's reason. */
static int parse_body(const char *body, size_t len, json_object **doc, char *err, size_t errlen)
{
    *doc = NULL;
    if (len > (size_t)INT_MAX - 1) {
        errbuf_set(err, errlen, "body is not JSON: too large (%zu bytes)", len);
        return KZ_EINVAL;
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        errbuf_set(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end;
    if (jerr == json_tokener_continue) {
        /* A value with no end of its own (a number, true, null) needs a
         * terminator to complete; anything still open is truncated. The
         * whole body has been consumed either way. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        if (jerr == json_tokener_continue)
            jerr = json_tokener_error_parse_eof;
        end = len;
    } else {
        end = json_tokener_get_parse_end(tok);
    }
    json_tokener_free(tok);
    if (jerr != json_tokener_success) {
        errbuf_set(err, errlen, "body is not JSON: %s", json_tokener_error_desc(jerr));
        json_object_put(obj);
        return KZ_EINVAL;
    }
    /* obj is NULL for the JSON value null */
    for (size_t i = end; i < len; i++) {
        if (!is_json_ws(body[i])) {
            errbuf_set(err, errlen, "body is not JSON: trailing data at byte %zu", i);
            json_object_put(obj);
            return KZ_EINVAL;
        }
    }
    /* json-c lets NaN and the like through; each event's payload must be
     * RFC 8259 JSON (payload.h), so such a body is refused here, with a
     * 400, not later when its events are stored */
    if (payload_json_valid(body, len) == 0) {
        errbuf_set(err, errlen,
                   "body is not JSON: not as RFC 8259 writes it (NaN, Infinity, single quotes "
                   "or a raw control character in a string)");
        json_object_put(obj);
        return KZ_EINVAL;
    }
    *doc = obj;
    return 0;
}

/* The reason a body the scan refused is not JSON: json-c's own words where
 * it refuses the body too (the messages operators saw before the scan),
 * else `why`: json-c lets through UTF-8 that RFC 3629 forbids (overlong
 * forms, surrogates). */
static int invalid_body(const char *body, size_t len, const char *why, char *err, size_t errlen)
{
    json_object *doc;
    int rc = parse_body(body, len, &doc, err, errlen);
    if (rc != 0)
        return rc;
    json_object_put(doc);
    errbuf_set(err, errlen, "body is not JSON: %s", why);
    return KZ_EINVAL;
}

/* The spans of the elements of the body's "events" array into *spans
 * (malloc'd, *n of them); 0, KZ_EINVAL with the reason, KZ_ENOMEM, or 1 when
 * the walk finds what jscan_validate() should not have passed. */
static int event_spans(const char *body, size_t len, jscan_span **spans, size_t *n, char *err,
                       size_t errlen)
{
    *spans = NULL;
    *n = 0;
    jscan_iter it;
    if (jscan_open(&it, jscan_value(body, len), 0, '{') != 0) {
        errbuf_set(err, errlen, "body is not a JSON object");
        return KZ_EINVAL;
    }
    jscan_span k, v, events = {0};
    int r;
    while ((r = jscan_member(&it, &k, &v)) == 1)
        if (jscan_key_is(k, "events"))
            events = v; /* the last one, as json-c keeps it */
    if (r < 0)
        return 1;
    if (events.p == NULL || jscan_open(&it, events, 1, '[') != 0) {
        errbuf_set(err, errlen, "body has no \"events\" array");
        return KZ_EINVAL;
    }
    size_t cap = 0;
    while ((r = jscan_element(&it, &v)) == 1) {
        if (v.p[0] != '{') {
            free(*spans);
            *spans = NULL;
            errbuf_set(err, errlen, "events[%zu] is not an object", *n);
            return KZ_EINVAL;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            jscan_span *grown = realloc(*spans, cap * sizeof *grown);
            if (grown == NULL) {
                free(*spans);
                *spans = NULL;
                errbuf_set(err, errlen, "out of memory");
                return KZ_ENOMEM;
            }
            *spans = grown;
        }
        (*spans)[(*n)++] = v;
    }
    if (r < 0) {
        free(*spans);
        *spans = NULL;
        return 1;
    }
    return 0;
}

int webhook_parse(const char *shop, const char *body, size_t len, webhook_batch *out, char *err,
                  size_t errlen)
{
    if (out == NULL) {
        errbuf_set(err, errlen, "no output batch");
        return KZ_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (shop == NULL || shop[0] == '\0') {
        errbuf_set(err, errlen, "no shop");
        return KZ_EINVAL;
    }
    if (body == NULL) {
        if (len != 0) {
            errbuf_set(err, errlen, "no body");
            return KZ_EINVAL;
        }
        body = "";
    }

    /* Checked once, then the events are cut out of the body as they came. */
    switch (jscan_validate(body, len)) {
    case JSCAN_OK:
        break;
    case JSCAN_BAD_UTF8:
        return invalid_body(body, len, "invalid UTF-8", err, errlen);
    case JSCAN_TOO_DEEP:
        return invalid_body(body, len, "nesting too deep", err, errlen);
    default:
        return invalid_body(body, len, "not as RFC 8259 writes it", err, errlen);
    }
    jscan_span *spans;
    size_t n;
    int rc = event_spans(body, len, &spans, &n, err, errlen);
    if (rc == 1) /* not after jscan_validate(); kept so a walk error is never a crash */
        return invalid_body(body, len, "not as RFC 8259 writes it", err, errlen);
    if (rc != 0)
        return rc;

    wh_priv *p = calloc(1, sizeof *p);
    if (p == NULL)
        goto nomem;
    out->priv = p;
    if ((p->shop = strdup(shop)) == NULL)
        goto nomem;
    if (n > 0) {
        p->s = calloc(n, sizeof *p->s);
        out->msgs = calloc(n, sizeof *out->msgs);
        if (p->s == NULL || out->msgs == NULL)
            goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        p->n = i + 1; /* the strings of event i are freed even if it fails half-way */
        rc = convert_event(spans[i], p->shop, &p->s[i], &out->msgs[i]);
        if (rc == KZ_ETOOBIG) {
            webhook_batch_free(out);
            errbuf_set(err, errlen, "event %zu is over the limit of %d bytes for one event", i,
                       KZ_PAYLOAD_MAX);
            goto done;
        }
        if (rc != 0)
            goto nomem;
    }
    out->n = n;
    rc = 0;
    goto done;

nomem:
    webhook_batch_free(out);
    errbuf_set(err, errlen, "out of memory");
    rc = KZ_ENOMEM;
done:
    free(spans);
    return rc;
}
