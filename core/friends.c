#include "friends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "apicall.h"
#include "bus.h"
#include "host.h"
#include "log.h"
#include "payload.h"
#include "store.h"

#define PROFILE_TAG "profile"

/* Per shop: whether a follow may cost a LINE call (the shop has a token and
 * an API to call; otherwise the rows would wait in the outbox forever). */
typedef struct friends_shop {
    int fetch_profile;
} friends_shop;

static int friends_open(void *state, kz_shop *shop, const kz_setting *setting, void **out,
                        char *err, size_t errlen)
{
    (void)setting;
    (void)err;
    (void)errlen;
    friends_shop *f = calloc(1, sizeof *f);
    if (f == NULL)
        return KZ_ENOMEM;
    const cfg_shop *cs = cfg_find_shop(state, shop->inst->shop_id);
    f->fetch_profile = cs != NULL && cs->line_access_token != NULL && cs->line_api != NULL;
    *out = f;
    return 0;
}

static void friends_close(void *instance)
{
    free(instance);
}

static int store_failed(const char *what, const char *err, char *herr, size_t herrlen, int rc)
{
    snprintf(herr, herrlen, "%s: %s", what, err);
    return rc;
}

/* GET /v2/bot/profile/{userId}, answered by api.done in a later event. */
static int queue_profile(kz_ctx *ctx, const char *user)
{
    char path[96];
    snprintf(path, sizeof path, "/v2/bot/profile/%s", user);
    kz_line_call c = {
        .struct_size = sizeof c, .method = "GET", .path = path, .user = user, .tag = PROFILE_TAG};
    return apicall_queue(ctx, &c, NULL);
}

/* api.done of this instance's own profile fetch: the profile. */
static int on_api_done(kz_ctx *ctx, const store_event *se, char *herr, size_t herrlen)
{
    if (strstr(se->payload, "\"plugin\":\"" FRIENDS_INSTANCE "\"") == NULL)
        return 0; /* another plugin's call: cheap to skip without parsing */
    json_object *p = json_tokener_parse(se->payload), *resp = NULL;
    const char *tag = payload_str(p, "tag"), *user = payload_str(p, "user");
    int rc = 0;
    if (tag != NULL && strcmp(tag, PROFILE_TAG) == 0 && user != NULL &&
        json_object_object_get_ex(p, "response", &resp) &&
        (rc = host_ctx_writable(ctx, "friends")) == 0) {
        char err[256];
        rc = store_friend_profile(ctx->st, ctx->inst->shop_id, user,
                                  payload_str(resp, "displayName"), payload_str(resp, "pictureUrl"),
                                  payload_str(resp, "statusMessage"), payload_str(resp, "language"),
                                  se->time_ms, err, sizeof err);
        if (rc == KZ_ENOTFOUND)
            rc = 0; /* nothing to attach it to */
        else if (rc != 0)
            rc = store_failed("record profile", err, herr, herrlen, rc);
    }
    json_object_put(p);
    return rc;
}

static int on_line_event(const friends_shop *f, kz_ctx *ctx, const store_event *se, char *herr,
                         size_t herrlen)
{
    char err[256];
    const char *shop = ctx->inst->shop_id;
    int rc;
    if (strcmp(se->topic, "line.follow") == 0) {
        rc = store_friend_follow(ctx->st, shop, se->user, se->time_ms, err, sizeof err);
        if (rc == 0 && f->fetch_profile && (rc = queue_profile(ctx, se->user)) != 0)
            snprintf(err, sizeof err, "queue the profile fetch (%d)", rc);
    } else if (strcmp(se->topic, "line.unfollow") == 0) {
        rc = store_friend_unfollow(ctx->st, shop, se->user, se->time_ms, err, sizeof err);
    } else {
        rc = store_friend_touch(ctx->st, shop, se->user, se->time_ms, err, sizeof err);
    }
    return rc == 0 ? 0 : store_failed(se->topic, err, herr, herrlen, rc);
}

static int friends_handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const store_event *se = ev->se;
    if (strcmp(se->topic, "api.done") == 0)
        return on_api_done(ctx, se, err, errlen);
    /* only users are friends; groups, rooms and userless events are not */
    if (strncmp(se->topic, "line.", 5) != 0 || se->user == NULL || !host_line_id_ok(se->user, 0))
        return 0;
    int rc = host_ctx_writable(ctx, "friends");
    return rc != 0 ? rc : on_line_event(instance, ctx, se, err, errlen);
}

static const char *const subscriptions[] = {"line.*", "api.done", NULL};

static plugin the_plugin = {
    .desc = {.abi_major = KZ_ABI_MAJOR,
             .abi_minor = KZ_ABI_MINOR,
             .struct_size = sizeof(kz_plugin),
             .name = FRIENDS_INSTANCE,
             .version = "1",
             .vendor = "kizuna",
             .license = "core",
             .description = "the friend registry",
             .shop_open = friends_open,
             .shop_close = friends_close,
             .handle = friends_handle,
             .subscriptions = subscriptions},
    .name = FRIENDS_INSTANCE,
    .path = "(built in)",
    .abi_major = KZ_ABI_MAJOR,
    .abi_minor = KZ_ABI_MINOR,
};

const plugin *friends_plugin(const cfg *c)
{
    the_plugin.state = (void *)c;
    return &the_plugin;
}
