/*
 * webhook — LINE webhook signature check and request body → bus events.
 *
 * The signature is HMAC-SHA256 over the raw bytes, compared in constant
 * time. The body is parsed once with json-c (strict, UTF-8 validated, no
 * trailing data); each event object is serialized back (plain, '/' not
 * escaped) and every string a bus_msg points to is a copy owned by the
 * batch, so the parsed document is freed before webhook_parse returns.
 */
#include "webhook.h"

#include "errbuf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <kizuna/host.h>

#include "payload.h"
#include "topic.h"

#define SIG_B64_LEN 44 /* base64 of a 32-byte digest */

/* ---- signature ------------------------------------------------------- */

void webhook_sign(const char *channel_secret, const char *body, size_t len, char out[45])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *key = channel_secret ? channel_secret : "";
    const unsigned char *data = (const unsigned char *)(body ? body : "");
    out[0] = '\0';
    if (body == NULL)
        len = 0;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), data, len, md, &mdlen) == NULL || mdlen != 32)
        return;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
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

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
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

/* The string value of obj[key], or NULL when absent, not a string or
 * holding a NUL ("\u0000") that would cut it short. */
static const char *get_str(json_object *obj, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

/* "line.<type>", "line.message.<message.type>", "line.message.unknown" or
 * "line.unknown"; always a valid topic of at most KZ_TOPIC_MAX bytes. */
static char *event_topic(json_object *ev)
{
    const char *type = get_str(ev, "type");
    char buf[KZ_TOPIC_MAX + 1];
    if (type != NULL && strcmp(type, "message") == 0) {
        json_object *msg;
        const char *mtype = NULL;
        if (json_object_object_get_ex(ev, "message", &msg) &&
            json_object_is_type(msg, json_type_object))
            mtype = get_str(msg, "type");
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

/* "sha256:<hex>" of the event serialized without "deliveryContext", so a
 * redelivered copy (which differs only in deliveryContext.isRedelivery)
 * gets the same uid. The event object is restored (deliveryContext moves
 * to the end, which is why the payload is serialized before this). */
static char *hash_uid(json_object *ev)
{
    json_object *dc = NULL;
    if (json_object_object_get_ex(ev, "deliveryContext", &dc)) {
        json_object_get(dc);
        json_object_object_del(ev, "deliveryContext");
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = s != NULL && EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
    if (dc != NULL && json_object_object_add(ev, "deliveryContext", dc) != 0)
        json_object_put(dc);
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

/* Fills s and m from one event object; KZ_ENOMEM on allocation failure,
 * KZ_ETOOBIG for an event over the payload limit (a body may hold more
 * than one event's worth when kizuna.max_body is raised). */
static int convert_event(json_object *ev, const char *shop, wh_strings *s, bus_msg *m)
{
    size_t n = 0;
    const char *js = json_object_to_json_string_length(
        ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (js != NULL && n > KZ_PAYLOAD_MAX)
        return KZ_ETOOBIG;
    if (js == NULL || (s->json = dup_n(js, n)) == NULL)
        return KZ_ENOMEM;
    if ((s->topic = event_topic(ev)) == NULL)
        return KZ_ENOMEM;

    const char *id = get_str(ev, "webhookEventId");
    if (id != NULL && id[0] != '\0')
        s->uid = strdup(id);
    else
        s->uid = hash_uid(ev);
    if (s->uid == NULL)
        return KZ_ENOMEM;

    json_object *src;
    if (json_object_object_get_ex(ev, "source", &src) &&
        json_object_is_type(src, json_type_object)) {
        const char *user = get_str(src, "userId");
        if (user != NULL && user[0] != '\0' && (s->user = strdup(user)) == NULL)
            return KZ_ENOMEM;
    }

    m->shop = shop;
    m->uid = s->uid;
    m->topic = s->topic;
    m->user = s->user;
    m->json = s->json;
    m->len = n;
    m->json_checked = 1; /* json-c's rendering of an RFC 8259 body (parse_body) */
    return 0;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses body into *doc: exactly one JSON value, nothing but whitespace
 * after it. */
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

    json_object *doc;
    int rc = parse_body(body, len, &doc, err, errlen);
    if (rc != 0)
        return rc;
    json_object *events;
    if (!json_object_is_type(doc, json_type_object)) {
        errbuf_set(err, errlen, "body is not a JSON object");
        rc = KZ_EINVAL;
        goto done;
    }
    if (!json_object_object_get_ex(doc, "events", &events) ||
        !json_object_is_type(events, json_type_array)) {
        errbuf_set(err, errlen, "body has no \"events\" array");
        rc = KZ_EINVAL;
        goto done;
    }
    size_t n = json_object_array_length(events);
    for (size_t i = 0; i < n; i++) {
        if (!json_object_is_type(json_object_array_get_idx(events, i), json_type_object)) {
            errbuf_set(err, errlen, "events[%zu] is not an object", i);
            rc = KZ_EINVAL;
            goto done;
        }
    }

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
        rc = convert_event(json_object_array_get_idx(events, i), p->shop, &p->s[i], &out->msgs[i]);
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
    json_object_put(doc);
    return rc;
}
