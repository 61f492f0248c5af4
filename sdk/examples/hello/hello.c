/*
 * hello — the SDK's example plugin.
 *
 * Greets a LINE user when they follow the account or send a message, at most
 * `max_per_user` times per user: publishes `hello.greeted` with
 * {"user":"U…","count":N,"text":"<greeting>"} and logs it. On a host with
 * LINE sends (ABI 1.1) it also replies to a follow with the greeting as a
 * text message. hello itself does no I/O: the counter, the event and the
 * queued reply commit together or not at all, and the host sends the reply
 * after the commit, once.
 *
 *   hello = { greeting = "Hello"; max_per_user = 3; };
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/message.h>
#include <kizuna/plugin.h>

/* Per-shop state, made by shop_open. No statics: the same .so serves every
 * shop, possibly on several threads at once. */
typedef struct hello_shop {
    char *greeting_json; /* the greeting, JSON-escaped once at shop_open */
    char *greeting_msgs; /* [{"type":"text",…}] to reply with; NULL: the host cannot send */
    int64_t max_per_user;
} hello_shop;

/* Writes s as the inside of a JSON string into out (when out != NULL) and
 * returns the length it needs, without the NUL. Bytes >= 0x80 (UTF-8) pass
 * through; control characters become escapes. */
static size_t json_escape(const char *s, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc = 0;
        switch (*p) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        }
        if (esc) {
            if (out) {
                out[n] = '\\';
                out[n + 1] = esc;
            }
            n += 2;
        } else if (*p < 0x20) {
            if (out) {
                memcpy(out + n, "\\u00", 4);
                out[n + 4] = hex[*p >> 4];
                out[n + 5] = hex[*p & 15];
            }
            n += 6;
        } else {
            if (out)
                out[n] = (char)*p;
            n++;
        }
    }
    if (out)
        out[n] = '\0';
    return n;
}

static char *json_escape_dup(const char *s)
{
    char *out = malloc(json_escape(s, NULL) + 1);
    if (out != NULL)
        json_escape(s, out);
    return out;
}

/* The greeting as a LINE messages array (kizuna/message.h), in a malloc'ed
 * buffer: escaping turns a byte into at most 6, plus room for the object. */
static int build_greeting_msgs(const char *greeting, char **out)
{
    size_t cap = strlen(greeting) * 6 + 64;
    char *buf = malloc(cap);
    if (buf == NULL)
        return KZ_ENOMEM;
    kz_msgs m;
    int rc = kz_msgs_init(&m, buf, cap);
    if (rc == 0)
        rc = kz_msgs_text(&m, greeting); /* KZ_EINVAL/KZ_ETOOBIG: LINE would refuse it */
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* Copies the event's "replyToken" into out; 0 when there is none.
 * Example-grade: a strstr scan instead of a JSON parser, which is enough
 * here because the host hands LINE's event object as compact JSON and a
 * reply token is plain ASCII (a quote inside a string value is always
 * escaped, so the needle cannot match inside one). A real plugin parses the
 * payload with its JSON library. */
static int reply_token(const kz_event *ev, char *out, size_t outlen)
{
    static const char needle[] = "\"replyToken\":\"";
    const char *p = strstr(kz_event_payload(ev, NULL), needle);
    if (p == NULL)
        return 0;
    p += sizeof needle - 1;
    size_t n = strcspn(p, "\"\\");
    if (p[n] != '"' || n == 0 || n >= outlen)
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

static int shop_open(void *plugin_state, kz_shop *shop, const kz_setting *setting, void **instance,
                     char *err, size_t errlen)
{
    (void)plugin_state;
    const char *greeting;
    int64_t max;
    /* The host checked the types and filled in the defaults, so these only
     * fail on a host bug; still, never trust blindly. */
    if (kz_setting_get_string(setting, "greeting", &greeting) != 0 ||
        kz_setting_get_int(setting, "max_per_user", &max) != 0)
        return kz_setting_error(setting, err, errlen, "greeting or max_per_user unreadable");
    if (max <= 0)
        return kz_setting_error(kz_setting_child(setting, "max_per_user"), err, errlen,
                                "must be > 0, got %lld", (long long)max);

    hello_shop *h = calloc(1, sizeof *h);
    if (h == NULL || (h->greeting_json = json_escape_dup(greeting)) == NULL) {
        free(h);
        return KZ_ENOMEM;
    }
    /* LINE sends came with ABI 1.1: on a host without the slot, hello only
     * publishes hello.greeted. */
    if (KZ_HOST_HAS(kz_host_api, line_send)) {
        int rc = build_greeting_msgs(greeting, &h->greeting_msgs);
        if (rc != 0) {
            free(h->greeting_json);
            free(h);
            if (rc == KZ_ENOMEM)
                return rc;
            return kz_setting_error(kz_setting_child(setting, "greeting"), err, errlen,
                                    "LINE cannot send it as a text message (empty, not UTF-8 "
                                    "or over 5000 characters)");
        }
    }
    h->max_per_user = max;
    *instance = h;
    kz_log(KZ_LOG_DEBUG, "hello: shop %s open, max_per_user=%lld", kz_shop_id(shop),
           (long long)max);
    return 0;
}

static void shop_close(void *instance)
{
    hello_shop *h = instance;
    if (h != NULL) {
        free(h->greeting_json);
        free(h->greeting_msgs);
    }
    free(h);
}

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    hello_shop *h = instance;
    const char *user = kz_event_user(ev);
    if (user == NULL)
        return 0; /* group or system event: nobody to greet */

    char key[KZ_KEY_MAX + 1];
    if ((size_t)snprintf(key, sizeof key, "greeted:%s", user) >= sizeof key) {
        snprintf(err, errlen, "user id too long (%zu bytes)", strlen(user));
        return KZ_EFATAL; /* retrying cannot help */
    }

    /* Greetings sent so far: incr by 0 reads the counter (absent = 0). */
    int64_t sent;
    int rc = kz_kv_incr(ctx, key, 0, &sent);
    if (rc != 0) {
        snprintf(err, errlen, "reading %s: error %d", key, rc);
        return rc == KZ_ETYPE ? KZ_EFATAL : rc;
    }
    if (sent >= h->max_per_user)
        return 0;
    int64_t count;
    if ((rc = kz_kv_incr(ctx, key, 1, &count)) != 0) {
        snprintf(err, errlen, "counting %s: error %d", key, rc);
        return rc;
    }

    char *user_json = json_escape_dup(user);
    size_t cap = strlen(h->greeting_json) + (user_json ? strlen(user_json) : 0) + 64;
    char *payload = malloc(cap);
    if (user_json == NULL || payload == NULL) {
        free(user_json);
        free(payload);
        return KZ_ENOMEM; /* rolled back and retried later */
    }
    snprintf(payload, cap, "{\"user\":\"%s\",\"count\":%lld,\"text\":\"%s\"}", user_json,
             (long long)count, h->greeting_json);
    rc = kz_publish(ctx, "hello.greeted", user, payload);
    free(user_json);
    free(payload);
    if (rc != 0) {
        snprintf(err, errlen, "publishing hello.greeted: error %d", rc);
        return rc; /* the counter increment above is rolled back with it */
    }

    /* A new friend also gets the greeting as a LINE reply, queued in this
     * transaction. fallback_to_push: when the reply token cannot be used in
     * time (expired, e.g. after retries), the host pushes to the user
     * instead. For a standby event (another channel has the chat) the host
     * sends nothing and returns 0. */
    char token[256];
    if (h->greeting_msgs != NULL && strcmp(kz_event_topic(ev), "line.follow") == 0 &&
        reply_token(ev, token, sizeof token)) {
        if ((rc = kz_line_reply(ctx, token, h->greeting_msgs, 1)) != 0) {
            snprintf(err, errlen, "replying to %s: error %d", user, rc);
            return rc == KZ_EINVAL ? KZ_EFATAL : rc; /* a refused request stays refused */
        }
    }
    kz_log(KZ_LOG_INFO, "hello: greeted user=%s count=%lld/%lld on %s", user, (long long)count,
           (long long)h->max_per_user, kz_event_topic(ev));
    return 0;
}

static const char *const subscriptions[] = {"line.follow", "line.message.*", NULL};

static const kz_setting_spec settings[] = {
    {"greeting", KZ_SETTING_STRING, 0, "\"Hello\"", "text of the greeting", {0}},
    {"max_per_user", KZ_SETTING_INT, 0, "3", "greetings per user at most (> 0)", {0}},
    {NULL, 0, 0, NULL, NULL, {0}},
};

KZ_PLUGIN_DEFINE(.name = "hello", .version = "0.1.0", .vendor = "kizuna", .license = "MIT",
                 .description = "greets users who follow or write, a few times each",
                 .shop_open = shop_open, .shop_close = shop_close, .handle = handle,
                 .subscriptions = subscriptions, .settings = settings)
