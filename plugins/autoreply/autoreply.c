/*
 * autoreply — answers text messages by rules.
 *
 * A rule matches a friend's text exactly, by keyword (substring) or by a
 * POSIX extended regular expression; rules are tried by priority (higher
 * first; ties in config order) and the first match wins: its messages are
 * the reply and its tags are added. No match: the `default` reply, if any.
 * Outside the shop's working hours (shop-local time) the reply is
 * `hours.outside` instead, whatever matched; a matching rule's tags are
 * still added, because they record what the friend asked, not what we
 * answered. A per-user cooldown keeps a chatty friend from getting an auto
 * reply to every line.
 *
 *   autoreply = { rules = ( { match = "exact"; pattern = "営業時間"; priority = 10;
 *                             messages = ( { text = "10時〜19時です"; } ); } );
 *                 cooldown = "10m";
 *                 hours = { open = "10:00"; close = "19:00"; days = [ "mon", "tue" ];
 *                           outside = { messages = ( { text = "営業時間外です。"; } ); }; }; };
 *
 * Only 1:1 chats are answered (source.type "user"): a bot answering every
 * matching line in a group is noise. Standby events are left alone.
 */
#include <locale.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

#include "../common/jscan.h"
#include "../common/msgset.h"

enum { MATCH_EXACT, MATCH_KEYWORD, MATCH_REGEX };

typedef struct rule {
    int match;
    char *pattern;
    regex_t re; /* MATCH_REGEX only */
    int64_t priority;
    size_t order; /* position in the config: breaks priority ties */
    msgset messages;
    taglist tags;
} rule;

/* Per-shop state, made by shop_open and freed by shop_close. */
typedef struct autoreply_shop {
    /* POSIX regex follows the calling thread's locale: under C.UTF-8 a
     * pattern is matched by character ("[返交]", "." for one), whatever
     * locale the daemon runs in. Compile and match both under it (glibc
     * keeps the compile-time encoding in the pattern). (locale_t)0: not
     * available, patterns match byte by byte. */
    locale_t utf8;
    rule *rules; /* sorted: the order they are tried in */
    size_t nrules;
    msgset fallback; /* `default` */
    int64_t cooldown_ms;
    int fallback_push;
    int has_hours;
    int open_min, close_min; /* minutes since midnight; close < open: past midnight */
    int days;                /* bit d: weekday d (0 Sunday) is a working day */
    msgset outside;
} autoreply_shop;

static void rule_free(rule *r)
{
    if (r->match == MATCH_REGEX && r->pattern != NULL)
        regfree(&r->re);
    free(r->pattern);
    msgset_free(&r->messages);
    taglist_free(&r->tags);
}

static void shop_close(void *instance)
{
    autoreply_shop *a = instance;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nrules; i++)
        rule_free(&a->rules[i]);
    free(a->rules);
    msgset_free(&a->fallback);
    msgset_free(&a->outside);
    if (a->utf8 != (locale_t)0)
        freelocale(a->utf8);
    free(a);
}

/* Makes a->utf8 the calling thread's locale; returns the one to restore. */
static locale_t utf8_enter(const autoreply_shop *a)
{
    return a->utf8 != (locale_t)0 ? uselocale(a->utf8) : (locale_t)0;
}

static void utf8_leave(locale_t old)
{
    if (old != (locale_t)0)
        uselocale(old);
}

/* Fails on a key of group g not in known (NULL-terminated): the host
 * checks only the plugin's top-level keys, so nested typos are ours. */
static int check_keys(const kz_setting *g, const char *const *known, const char *list, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < kz_setting_count(g); i++) {
        const kz_setting *c = kz_setting_elem(g, i);
        size_t k = 0;
        while (known[k] != NULL && strcmp(known[k], kz_setting_name(c)) != 0)
            k++;
        if (known[k] == NULL)
            return kz_setting_error(c, err, errlen, "unknown key (known: %s)", list);
    }
    return 0;
}

/* ---- shop_open: rules ---------------------------------------------------- */

static int rule_match_kind(rule *r, const kz_setting *g, char *err, size_t errlen)
{
    const kz_setting *m = kz_setting_child(g, "match");
    const char *v = "keyword";
    if (m != NULL && kz_setting_string(m, &v) != 0)
        return kz_setting_error(m, err, errlen, "expected \"exact\", \"keyword\" or \"regex\"");
    if (strcmp(v, "exact") == 0)
        r->match = MATCH_EXACT;
    else if (strcmp(v, "keyword") == 0)
        r->match = MATCH_KEYWORD;
    else if (strcmp(v, "regex") == 0)
        r->match = MATCH_REGEX;
    else
        return kz_setting_error(m, err, errlen,
                                "unknown match \"%s\" (known: exact, keyword, regex)", v);
    return 0;
}

/* Strips ASCII whitespace at both ends, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
        s++;
    size_t n = strlen(s);
    while (n > 0 && strchr(" \t\n\r\f\v", s[n - 1]) != NULL)
        s[--n] = '\0';
    return s;
}

static int rule_pattern(const autoreply_shop *a, rule *r, const kz_setting *g, char *err,
                        size_t errlen)
{
    const kz_setting *p = kz_setting_child(g, "pattern");
    const char *v;
    if (p == NULL)
        return kz_setting_error(g, err, errlen, "missing pattern");
    if (kz_setting_string(p, &v) != 0 || *v == '\0')
        return kz_setting_error(p, err, errlen, "expected a non-empty string");
    char *copy = strdup(v);
    if (copy == NULL)
        return KZ_ENOMEM;
    r->pattern = copy;
    if (r->match == MATCH_EXACT) {
        /* exact compares with the trimmed text, so trim the pattern alike */
        char *s = trim(copy);
        memmove(copy, s, strlen(s) + 1);
    }
    if (r->match != MATCH_REGEX)
        return 0;
    locale_t old = utf8_enter(a);
    int rc = regcomp(&r->re, r->pattern, REG_EXTENDED | REG_NOSUB);
    utf8_leave(old);
    if (rc != 0) {
        char why[256];
        regerror(rc, &r->re, why, sizeof why);
        free(r->pattern);
        r->pattern = NULL; /* nothing for regfree */
        return kz_setting_error(p, err, errlen, "invalid regular expression: %s", why);
    }
    return 0;
}

static int rule_load(const autoreply_shop *a, rule *r, const kz_setting *g, char *err,
                     size_t errlen)
{
    static const char *const known[] = {"match", "pattern", "priority", "messages", "tags", NULL};
    if (kz_setting_type(g) != KZ_SETTING_GROUP)
        return kz_setting_error(g, err, errlen,
                                "expected a rule { match = …; pattern = …; messages = …; }");
    int rc = check_keys(g, known, "match, pattern, priority, messages, tags", err, errlen);
    if (rc == 0)
        rc = rule_match_kind(r, g, err, errlen);
    if (rc == 0)
        rc = rule_pattern(a, r, g, err, errlen);
    const kz_setting *pr = kz_setting_child(g, "priority");
    if (rc == 0 && pr != NULL && kz_setting_int(pr, &r->priority) != 0)
        rc = kz_setting_error(pr, err, errlen, "expected an integer");
    if (rc == 0)
        rc = msgset_load(kz_setting_child(g, "messages"), &r->messages, err, errlen);
    if (rc == 0)
        rc = taglist_load(kz_setting_child(g, "tags"), &r->tags, err, errlen);
    if (rc == 0 && r->messages.count == 0 && r->tags.n == 0)
        rc = kz_setting_error(g, err, errlen, "a rule needs messages or tags");
    return rc;
}

/* Higher priority first; equal priorities keep the config order. */
static int rule_cmp(const void *a, const void *b)
{
    const rule *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int load_rules(autoreply_shop *a, const kz_setting *list, char *err, size_t errlen)
{
    size_t n = kz_setting_count(list);
    a->rules = calloc(n ? n : 1, sizeof *a->rules);
    if (a->rules == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rule *r = &a->rules[a->nrules++];
        r->order = i;
        int rc = rule_load(a, r, kz_setting_elem(list, i), err, errlen);
        if (rc != 0)
            return rc;
    }
    qsort(a->rules, a->nrules, sizeof *a->rules, rule_cmp);
    return 0;
}

/* ---- shop_open: default, hours ------------------------------------------- */

/* A group { messages = ( … ); } with at least one message. */
static int load_reply_group(const kz_setting *g, msgset *out, char *err, size_t errlen)
{
    static const char *const known[] = {"messages", NULL};
    if (kz_setting_type(g) != KZ_SETTING_GROUP)
        return kz_setting_error(g, err, errlen, "expected a group { messages = ( … ); }");
    int rc = check_keys(g, known, "messages", err, errlen);
    if (rc == 0)
        rc = msgset_load(kz_setting_child(g, "messages"), out, err, errlen);
    if (rc == 0 && out->count == 0)
        rc = kz_setting_error(g, err, errlen, "needs at least one message");
    return rc;
}

/* "HH:MM" (00:00 to 24:00) as minutes since midnight, or -1. */
static int parse_hhmm(const char *v)
{
    if (strlen(v) != 5 || v[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (v[i] < '0' || v[i] > '9'))
            return -1;
    int h = (v[0] - '0') * 10 + v[1] - '0', m = (v[3] - '0') * 10 + v[4] - '0';
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

static int load_time(const kz_setting *hours, const char *key, int *out, char *err, size_t errlen)
{
    const kz_setting *s = kz_setting_child(hours, key);
    const char *v;
    if (s == NULL)
        return kz_setting_error(hours, err, errlen, "missing %s (\"HH:MM\")", key);
    if (kz_setting_string(s, &v) != 0 || (*out = parse_hhmm(v)) < 0)
        return kz_setting_error(s, err, errlen, "expected a time \"HH:MM\" (00:00 to 24:00)");
    return 0;
}

static int load_days(autoreply_shop *a, const kz_setting *days, char *err, size_t errlen)
{
    static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    a->days = days == NULL ? 0x7f : 0;
    if (days == NULL)
        return 0;
    if (kz_setting_type(days) != KZ_SETTING_LIST)
        return kz_setting_error(days, err, errlen, "expected a list [ \"mon\", … ]");
    for (size_t i = 0; i < kz_setting_count(days); i++) {
        const kz_setting *d = kz_setting_elem(days, i);
        const char *v = "";
        int k = 0;
        kz_setting_string(d, &v);
        while (k < 7 && strcmp(names[k], v) != 0)
            k++;
        if (k == 7)
            return kz_setting_error(d, err, errlen,
                                    "expected a day: sun, mon, tue, wed, thu, fri or sat");
        a->days |= 1 << k;
    }
    return 0;
}

static int load_hours(autoreply_shop *a, const kz_setting *h, char *err, size_t errlen)
{
    static const char *const known[] = {"open", "close", "days", "outside", NULL};
    if (kz_setting_type(h) != KZ_SETTING_GROUP)
        return kz_setting_error(h, err, errlen, "expected a group { open = …; close = …; }");
    int rc = check_keys(h, known, "open, close, days, outside", err, errlen);
    if (rc == 0 && !KZ_HOST_HAS(kz_host_api, local_time))
        rc = kz_setting_error(
            h, err, errlen,
            "hours need shop-local time (local_time, ABI 1.3), which this host does not provide");
    if (rc == 0)
        rc = load_time(h, "open", &a->open_min, err, errlen);
    if (rc == 0)
        rc = load_time(h, "close", &a->close_min, err, errlen);
    if (rc == 0 && a->open_min == a->close_min)
        rc = kz_setting_error(kz_setting_child(h, "close"), err, errlen,
                              "open and close are the same time");
    if (rc == 0)
        rc = load_days(a, kz_setting_child(h, "days"), err, errlen);
    const kz_setting *out = kz_setting_child(h, "outside");
    if (rc == 0 && out != NULL)
        rc = load_reply_group(out, &a->outside, err, errlen);
    a->has_hours = rc == 0;
    return rc;
}

static int load_shop(autoreply_shop *a, const kz_setting *s, char *err, size_t errlen)
{
    const kz_setting *rules = kz_setting_child(s, "rules"), *def = kz_setting_child(s, "default");
    const kz_setting *hours = kz_setting_child(s, "hours");
    int rc = load_rules(a, rules, err, errlen);
    if (rc == 0 && def != NULL)
        rc = load_reply_group(def, &a->fallback, err, errlen);
    if (rc == 0 && hours != NULL)
        rc = load_hours(a, hours, err, errlen);
    if (rc == 0 && kz_setting_get_duration_ms(s, "cooldown", &a->cooldown_ms) != 0)
        rc = kz_setting_error(s, err, errlen, "cooldown unreadable");
    if (rc == 0 && a->cooldown_ms < 0)
        rc = kz_setting_error(kz_setting_child(s, "cooldown"), err, errlen, "must be >= 0");
    if (rc == 0 && kz_setting_get_bool(s, "fallback_push", &a->fallback_push) != 0)
        rc = kz_setting_error(s, err, errlen, "fallback_push unreadable");
    if (rc == 0 && a->nrules == 0 && def == NULL && hours == NULL)
        rc = kz_setting_error(s, err, errlen, "nothing to do: set rules, default or hours");
    return rc;
}

static int shop_open(void *plugin_state, kz_shop *shop, const kz_setting *setting, void **instance,
                     char *err, size_t errlen)
{
    (void)plugin_state;
    autoreply_shop *a = calloc(1, sizeof *a);
    if (a == NULL)
        return KZ_ENOMEM;
    a->utf8 = newlocale(LC_CTYPE_MASK | LC_COLLATE_MASK, "C.UTF-8", (locale_t)0);
    if (a->utf8 == (locale_t)0)
        kz_log(KZ_LOG_WARN, "autoreply: shop %s: no C.UTF-8 locale: regex rules match bytes",
               kz_shop_id(shop));
    int rc = load_shop(a, setting, err, errlen);
    if (rc != 0) {
        shop_close(a);
        return rc;
    }
    *instance = a;
    kz_log(KZ_LOG_DEBUG, "autoreply: shop %s: %zu rule(s), cooldown %lldms%s", kz_shop_id(shop),
           a->nrules, (long long)a->cooldown_ms, a->has_hours ? ", working hours" : "");
    return 0;
}

/* ---- handle ---------------------------------------------------------------- */

static int rule_matches(const rule *r, const char *text)
{
    switch (r->match) {
    case MATCH_EXACT:
        return strcmp(text, r->pattern) == 0;
    case MATCH_KEYWORD:
        return strstr(text, r->pattern) != NULL;
    default:
        return regexec(&r->re, text, 0, NULL, 0) == 0;
    }
}

static const rule *first_match(const autoreply_shop *a, const char *text)
{
    locale_t old = utf8_enter(a);
    const rule *hit = NULL;
    for (size_t i = 0; i < a->nrules && hit == NULL; i++)
        if (rule_matches(&a->rules[i], text))
            hit = &a->rules[i];
    utf8_leave(old);
    return hit;
}

/* 1 when the shop is open now (shop-local time on the host clock). A
 * window past midnight (close < open) belongs to the day it opened. */
static int within_hours(const autoreply_shop *a, kz_ctx *ctx, int *is_open)
{
    kz_local_time lt;
    int rc = kz_local_time_of(kz_ctx_shop(ctx), kz_now_ms(), &lt);
    if (rc != 0)
        return rc;
    int t = lt.hour * 60 + lt.minute, today = a->days >> lt.weekday & 1;
    int yesterday = a->days >> ((lt.weekday + 6) % 7) & 1;
    if (a->open_min < a->close_min)
        *is_open = today && t >= a->open_min && t < a->close_min;
    else
        *is_open = (today && t >= a->open_min) || (yesterday && t < a->close_min);
    return 0;
}

/* 1 when user got an auto reply less than cooldown ago. */
static int cooling_down(const autoreply_shop *a, kz_ctx *ctx, const char *key, int *cooling)
{
    const void *v;
    *cooling = 0;
    if (a->cooldown_ms <= 0)
        return 0;
    int rc = kz_kv_get(ctx, key, &v, NULL);
    if (rc == KZ_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    *cooling = kz_now_ms() - strtoll(v, NULL, 10) < a->cooldown_ms;
    return 0;
}

static int send_reply(const autoreply_shop *a, kz_ctx *ctx, const kz_event *ev, const msgset *reply,
                      const char *key, char *err, size_t errlen)
{
    char *token = jscan_string_dup(jscan_member(kz_event_payload(ev, NULL), "replyToken"));
    int rc;
    if (token != NULL && *token != '\0')
        rc = kz_line_reply(ctx, token, reply->json, a->fallback_push);
    else if (a->fallback_push)
        rc = kz_line_push(ctx, kz_event_user(ev), reply->json);
    else
        rc = 1; /* nothing to reply to: no send, no cooldown */
    free(token);
    if (rc < 0) {
        snprintf(err, errlen, "autoreply to %s: send refused (error %d)", kz_event_user(ev), rc);
        return rc == KZ_EINVAL ? KZ_EFATAL : rc;
    }
    if (rc > 0 || a->cooldown_ms <= 0)
        return 0;
    char now[32];
    int n = snprintf(now, sizeof now, "%lld", (long long)kz_now_ms());
    rc = kz_kv_put(ctx, key, now, (size_t)n);
    if (rc != 0)
        snprintf(err, errlen, "autoreply: storing %s: error %d", key, rc);
    return rc;
}

/* The reply for text: the outside-hours set when closed, else the first
 * matching rule's or the default; *hit gets the matching rule. */
static int choose(const autoreply_shop *a, kz_ctx *ctx, const char *text, const rule **hit,
                  const msgset **reply)
{
    int open = 1;
    *hit = first_match(a, text);
    if (a->has_hours) {
        int rc = within_hours(a, ctx, &open);
        if (rc != 0)
            return rc;
    }
    if (!open)
        *reply = &a->outside;
    else
        *reply = *hit ? &(*hit)->messages : &a->fallback; /* tags-only rule: no reply */
    return 0;
}

static int answer(const autoreply_shop *a, kz_ctx *ctx, const kz_event *ev, char *text, char *err,
                  size_t errlen)
{
    const char *user = kz_event_user(ev);
    const rule *hit;
    const msgset *reply;
    int rc = choose(a, ctx, trim(text), &hit, &reply);
    if (rc == 0 && hit != NULL)
        rc = taglist_apply(&hit->tags, ctx, user, err, errlen);
    if (rc != 0 || reply->count == 0)
        return rc;
    char key[KZ_KEY_MAX + 1];
    if ((size_t)snprintf(key, sizeof key, "cooldown:%s", user) >= sizeof key)
        return KZ_EFATAL;
    int cooling;
    if ((rc = cooling_down(a, ctx, key, &cooling)) != 0 || cooling)
        return rc;
    return send_reply(a, ctx, ev, reply, key, err, errlen);
}

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const autoreply_shop *a = instance;
    const char *payload = kz_event_payload(ev, NULL);
    if (kz_event_user(ev) == NULL || strcmp(kz_event_topic(ev), "line.message.text") != 0 ||
        !jscan_string_is(jscan_path(payload, "source.type"), "user") ||
        jscan_string_is(jscan_member(payload, "mode"), "standby"))
        return 0;
    char *text = jscan_string_dup(jscan_path(payload, "message.text"));
    if (text == NULL)
        return 0; /* no text (or \u0000 in it): nothing to match */
    int rc = answer(a, ctx, ev, text, err, errlen);
    free(text);
    return rc == KZ_EINVAL ? KZ_EFATAL : rc;
}

static const char *const subscriptions[] = {"line.message.text", NULL};

static const kz_setting_spec settings[] = {
    {"rules",
     KZ_SETTING_LIST,
     0,
     "()",
     "( { match = \"exact\"|\"keyword\"|\"regex\"; pattern = \"…\"; priority = N; messages = ( … "
     "); tags = [ … ]; }, … )",
     {0}},
    {"default",
     KZ_SETTING_GROUP,
     0,
     NULL,
     "{ messages = ( … ); }: the reply when no rule matches",
     {0}},
    {"cooldown",
     KZ_SETTING_DURATION,
     0,
     "\"0s\"",
     "per user: no second auto reply within this",
     {0}},
    {"hours",
     KZ_SETTING_GROUP,
     0,
     NULL,
     "{ open = \"10:00\"; close = \"19:00\"; days = [ \"mon\", … ]; outside = { messages = ( … "
     "); }; }",
     {0}},
    {"fallback_push",
     KZ_SETTING_BOOL,
     0,
     "false",
     "push the reply when the reply token can no longer be used",
     {0}},
    {NULL, 0, 0, NULL, NULL, {0}},
};

KZ_PLUGIN_DEFINE(.name = "autoreply", .version = "0.1.0", .vendor = "kizuna", .license = "MIT",
                 .description = "answers text messages by exact, keyword or regex rules",
                 .shop_open = shop_open, .shop_close = shop_close, .handle = handle,
                 .subscriptions = subscriptions, .settings = settings)
