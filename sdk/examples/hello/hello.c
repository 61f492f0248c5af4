/*
 * hello — the SDK's example plugin.
 *
 * Greets a LINE user when they follow the account or send a message, at most
 * `max_per_user` times per user: publishes `hello.greeted` with
 * {"user":"U…","count":N,"text":"<greeting>"} and logs it. A channel plugin
 * (or a test) turns that event into a LINE message; hello itself does no I/O,
 * so the greeting, the counter and the event commit together or not at all.
 *
 *   hello = { greeting = "Hello"; max_per_user = 3; };
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

/* Per-shop state, made by shop_open. No statics: the same .so serves every
 * shop, possibly on several threads at once. */
typedef struct hello_shop {
    char *greeting_json; /* the greeting, JSON-escaped once at shop_open */
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
    h->max_per_user = max;
    *instance = h;
    kz_log(KZ_LOG_DEBUG, "hello: shop %s open, max_per_user=%lld", kz_shop_id(shop),
           (long long)max);
    return 0;
}

static void shop_close(void *instance)
{
    hello_shop *h = instance;
    if (h != NULL)
        free(h->greeting_json);
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
