/*
 * greeting — welcome messages for new friends.
 *
 * On `line.follow` it replies with the configured messages (text or LINE
 * message JSON files) and adds the configured friend tags. A follow that is
 * an unblock (follow.isUnblocked == true) gets its own set: `refollow` and
 * `refollow_tags`. Events LINE delivered in standby mode (another channel
 * has the chat) are left alone: no reply (the host would send none
 * anyway) and no tags either, so the channel that has the chat decides.
 *
 *   greeting = { messages = ( { text = "友だち追加ありがとうございます！"; } );
 *                refollow = ( { text = "おかえりなさい！"; } );
 *                tags = [ "new" ]; refollow_tags = [ "returned" ]; };
 *
 * The reply, the tags and their friend.tagged events commit in the
 * handler's one transaction, so a retried event never greets twice.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

#include "../common/jscan.h"
#include "../common/msgset.h"

/* What to do for one kind of follow. */
typedef struct greeting_set {
    msgset messages;
    taglist tags;
} greeting_set;

/* Per-shop state, made by shop_open and freed by shop_close. */
typedef struct greeting_shop {
    greeting_set first, again; /* new friend; unblock (follow.isUnblocked) */
} greeting_shop;

static void set_free(greeting_set *s)
{
    msgset_free(&s->messages);
    taglist_free(&s->tags);
}

static void shop_close(void *instance)
{
    greeting_shop *g = instance;
    if (g == NULL)
        return;
    set_free(&g->first);
    set_free(&g->again);
    free(g);
}

/* The refollow_* settings default to the first-follow ones: absent means
 * "same as for a new friend", an explicit empty list means "nothing". */
static const kz_setting *or_default(const kz_setting *s, const char *key, const char *fallback)
{
    const kz_setting *c = kz_setting_child(s, key);
    return c != NULL ? c : kz_setting_child(s, fallback);
}

static int load_sets(greeting_shop *g, const kz_setting *s, char *err, size_t errlen)
{
    int rc = msgset_load(kz_setting_child(s, "messages"), &g->first.messages, err, errlen);
    if (rc == 0)
        rc = msgset_load(or_default(s, "refollow", "messages"), &g->again.messages, err, errlen);
    if (rc == 0)
        rc = taglist_load(kz_setting_child(s, "tags"), &g->first.tags, err, errlen);
    if (rc == 0)
        rc = taglist_load(or_default(s, "refollow_tags", "tags"), &g->again.tags, err, errlen);
    if (rc == 0 && g->first.messages.count == 0 && g->first.tags.n == 0 &&
        g->again.messages.count == 0 && g->again.tags.n == 0)
        rc = kz_setting_error(s, err, errlen, "nothing to do: set messages and/or tags");
    return rc;
}

static int shop_open(void *plugin_state, kz_shop *shop, const kz_setting *setting, void **instance,
                     char *err, size_t errlen)
{
    (void)plugin_state;
    greeting_shop *g = calloc(1, sizeof *g);
    if (g == NULL)
        return KZ_ENOMEM;
    int rc = load_sets(g, setting, err, errlen);
    if (rc != 0) {
        shop_close(g);
        return rc;
    }
    *instance = g;
    kz_log(KZ_LOG_DEBUG, "greeting: shop %s: %d/%d messages, %zu/%zu tags (new/returning)",
           kz_shop_id(shop), g->first.messages.count, g->again.messages.count, g->first.tags.n,
           g->again.tags.n);
    return 0;
}

/* Sends the set's messages: a reply with the event's token, pushed instead
 * if the token can no longer be used (fallback_to_push), or a push when
 * the event has no token at all (a hand-made test or demo event). */
static int send_set(kz_ctx *ctx, const kz_event *ev, const greeting_set *set, char *err,
                    size_t errlen)
{
    if (set->messages.count == 0)
        return 0;
    char *token = jscan_string_dup(jscan_member(kz_event_payload(ev, NULL), "replyToken"));
    int rc = token != NULL && *token != '\0'
                 ? kz_line_reply(ctx, token, set->messages.json, 1)
                 : kz_line_push(ctx, kz_event_user(ev), set->messages.json);
    free(token);
    if (rc != 0) {
        snprintf(err, errlen, "greeting %s: send refused (error %d)", kz_event_user(ev), rc);
        return rc == KZ_EINVAL ? KZ_EFATAL : rc; /* a refused send stays refused */
    }
    return 0;
}

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    greeting_shop *g = instance;
    const char *user = kz_event_user(ev);
    const char *payload = kz_event_payload(ev, NULL);
    if (user == NULL || strcmp(kz_event_topic(ev), "line.follow") != 0)
        return 0;
    if (jscan_string_is(jscan_member(payload, "mode"), "standby"))
        return 0;
    int again = jscan_is_true(jscan_path(payload, "follow.isUnblocked"));
    const greeting_set *set = again ? &g->again : &g->first;
    int rc = send_set(ctx, ev, set, err, errlen);
    if (rc == 0)
        rc = taglist_apply(&set->tags, ctx, user, err, errlen);
    if (rc == KZ_EINVAL)
        return KZ_EFATAL; /* a user id the registry refuses will not change */
    if (rc == 0)
        kz_log(KZ_LOG_INFO, "greeting: %s %s: %d message(s), %zu tag(s)",
               again ? "welcomed back" : "welcomed", user, set->messages.count, set->tags.n);
    return rc;
}

static const char *const subscriptions[] = {"line.follow", NULL};

static const kz_setting_spec settings[] = {
    {"messages",
     KZ_SETTING_LIST,
     0,
     "()",
     "messages for a new friend: ( { text = \"…\"; } or { file = \"msg.json\"; }, … ), at most 5",
     {0}},
    {"refollow",
     KZ_SETTING_LIST,
     0,
     NULL,
     "messages when a friend unblocks the account (default: messages)",
     {0}},
    {"tags", KZ_SETTING_LIST, 0, "()", "tags to add to a new friend: [ \"new\", … ]", {0}},
    {"refollow_tags",
     KZ_SETTING_LIST,
     0,
     NULL,
     "tags to add when a friend unblocks the account (default: tags)",
     {0}},
    {NULL, 0, 0, NULL, NULL, {0}},
};

KZ_PLUGIN_DEFINE(.name = "greeting", .version = "0.1.0", .vendor = "kizuna", .license = "MIT",
                 .description = "welcome messages and tags for new and returning friends",
                 .shop_open = shop_open, .shop_close = shop_close, .handle = handle,
                 .subscriptions = subscriptions, .settings = settings)
