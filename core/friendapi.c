#include "friendapi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "friendview.h"
#include "host.h"
#include "log.h"
#include "segment.h"
#include "store.h"
#include "tz.h"

#define SOURCE_MAX 32
#define MEMBER_MAX 200
#define VALUE_MAX 1000

struct kz_segment {
    segment *seg;
};

/* ---- shared checks ------------------------------------------------------- */

/* Live ctx and a user id; logs why not. */
static int user_ok(const kz_ctx *ctx, const char *user, const char *what)
{
    if (!host_ctx_live(ctx, what))
        return KZ_ESTATE;
    if (!host_line_id_ok(user, 0)) {
        log_msg(KZ_LOG_ERROR, "%s: '%s' is not a LINE user id", what, user ? user : "(null)");
        return KZ_EINVAL;
    }
    return 0;
}

static int no_control(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Publishes a friend.* event through the ctx, {"…": …, "by": plugin}. */
static int publish_change(kz_ctx *ctx, const char *topic, const char *user, json_object *o)
{
    json_object_object_add(o, "by", json_object_new_string(ctx->inst->p->name));
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = host_table()->publish(ctx, topic, user, text, strlen(text));
    json_object_put(o);
    return rc;
}

static int store_error(int rc, const char *what, const char *err)
{
    log_msg(KZ_LOG_ERROR, "%s: %s", what, err);
    return rc;
}

/* ---- reading --------------------------------------------------------------- */

int friendapi_get(kz_ctx *ctx, const char *user, const char **json, size_t *len)
{
    int rc = user_ok(ctx, user, "kz_friend_get");
    if (rc != 0 || json == NULL)
        return rc != 0 ? rc : KZ_EINVAL;
    friend_view v;
    char err[256];
    if ((rc = friend_view_load(ctx->st, ctx->inst->shop_id, user, NULL, &v, err, sizeof err)) != 0)
        return store_error(rc, "kz_friend_get", err);
    if (!v.known) {
        friend_view_free(&v);
        return KZ_ENOTFOUND;
    }
    json_object *o = friend_view_json(&v);
    friend_view_free(&v);
    char *text = strdup(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    if (text == NULL || host_keep_buf(ctx, text) != 0) {
        free(text);
        return KZ_ENOMEM;
    }
    *json = text;
    if (len != NULL)
        *len = strlen(text);
    return 0;
}

static int has_tag_cb(void *arg, const char *tag)
{
    return strcmp(arg, tag) == 0; /* stops the walk: found */
}

int friendapi_has_tag(kz_ctx *ctx, const char *user, const char *tag)
{
    int rc = user_ok(ctx, user, "kz_friend_has_tag");
    if (rc != 0)
        return rc;
    if (!no_control(tag, FRIEND_TAG_MAX))
        return KZ_EINVAL;
    char err[256];
    rc = store_friend_tags(ctx->st, ctx->inst->shop_id, user, has_tag_cb, (void *)tag, err,
                           sizeof err);
    return rc < 0 ? store_error(rc, "kz_friend_has_tag", err) : rc;
}

int friendapi_by_link(kz_ctx *ctx, const char *source, const char *member_id, const char **user)
{
    if (!host_ctx_live(ctx, "kz_friend_by_link"))
        return KZ_ESTATE;
    if (!no_control(source, SOURCE_MAX) || !no_control(member_id, MEMBER_MAX) || user == NULL)
        return KZ_EINVAL;
    char *found = malloc(64), err[256];
    if (found == NULL)
        return KZ_ENOMEM;
    int rc = store_friend_by_link(ctx->st, ctx->inst->shop_id, source, member_id, found, 64, err,
                                  sizeof err);
    if (rc == 0 && (rc = host_keep_buf(ctx, found)) == 0) {
        *user = found;
        return 0;
    }
    free(found);
    return rc == KZ_ENOTFOUND || rc == KZ_ENOMEM ? rc : store_error(rc, "kz_friend_by_link", err);
}

/* ---- tags ------------------------------------------------------------------ */

int friendapi_tag(kz_ctx *ctx, const char *user, const char *tag, int add)
{
    int rc = user_ok(ctx, user, "kz_friend_tag");
    if (rc != 0)
        return rc;
    if (!no_control(tag, FRIEND_TAG_MAX))
        return KZ_EINVAL;
    if ((rc = host_ctx_writable(ctx, "kz_friend_tag")) != 0)
        return rc;
    char err[256];
    const char *shop = ctx->inst->shop_id;
    rc = add ? store_friend_tag_add(ctx->st, shop, user, tag, clock_now_ms(), err, sizeof err)
             : store_friend_tag_remove(ctx->st, shop, user, tag, err, sizeof err);
    if (rc == KZ_EEXIST || rc == KZ_ENOTFOUND)
        return rc;
    if (rc != 0)
        return store_error(rc, "kz_friend_tag", err);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tag", json_object_new_string(tag));
    return publish_change(ctx, add ? "friend.tagged" : "friend.untagged", user, o);
}

/* ---- attributes ------------------------------------------------------------ */

/* v as the canonical text of type (store.h); KZ_ETYPE when it is another
 * type, a date that is no date or a string over VALUE_MAX bytes. */
static int canonical(int type, json_object *v, char *out, size_t outlen)
{
    json_type jt = json_object_get_type(v);
    if (type == CFG_ATTR_NUMBER && (jt == json_type_int || jt == json_type_double) &&
        isfinite(json_object_get_double(v)))
        snprintf(out, outlen, "%.17g", json_object_get_double(v));
    else if (type == CFG_ATTR_BOOL && jt == json_type_boolean)
        snprintf(out, outlen, "%s", json_object_get_boolean(v) ? "true" : "false");
    else if ((type == CFG_ATTR_STRING || type == CFG_ATTR_DATE) && jt == json_type_string &&
             json_object_get_string_len(v) <= VALUE_MAX &&
             (type == CFG_ATTR_STRING || friend_date_ok(json_object_get_string(v))))
        snprintf(out, outlen, "%s", json_object_get_string(v));
    else
        return KZ_ETYPE;
    return 0;
}

static const cfg_friend_attr *declared(const kz_ctx *ctx, const char *name)
{
    const cfg_shop *cs = cfg_find_shop(ctx->inst->c, ctx->inst->shop_id);
    for (size_t i = 0; cs != NULL && name != NULL && i < cs->nfriend_attrs; i++)
        if (strcmp(cs->friend_attrs[i].name, name) == 0)
            return &cs->friend_attrs[i];
    return NULL;
}

/* Writes the new value (NULL: remove) and publishes friend.attribute when
 * it differs from prev (NULL: absent). */
static int attr_write(kz_ctx *ctx, const char *user, const cfg_friend_attr *a, const char *prev,
                      const char *value)
{
    if ((prev == NULL && value == NULL) || (prev && value && strcmp(prev, value) == 0))
        return 0; /* no change, no event */
    char err[256];
    const char *shop = ctx->inst->shop_id;
    int rc = value == NULL ? store_friend_attr_del(ctx->st, shop, user, a->name, err, sizeof err)
                           : store_friend_attr_set(ctx->st, shop, user, a->name, a->type, value,
                                                   clock_now_ms(), err, sizeof err);
    if (rc != 0)
        return store_error(rc, "kz_friend_attr_set", err);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(a->name));
    json_object_object_add(o, "value", friend_attr_json(a->type, value));
    json_object_object_add(o, "previous", friend_attr_json(a->type, prev));
    return publish_change(ctx, "friend.attribute", user, o);
}

int friendapi_attr_set(kz_ctx *ctx, const char *user, const char *name, const char *json_value)
{
    int rc = user_ok(ctx, user, "kz_friend_attr_set");
    if (rc != 0)
        return rc;
    const cfg_friend_attr *a = declared(ctx, name);
    if (a == NULL)
        return KZ_ENOTFOUND;
    json_object *v = json_value != NULL ? json_tokener_parse(json_value) : NULL;
    if (json_value == NULL || (v == NULL && strcmp(json_value, "null") != 0))
        return KZ_EINVAL;
    char value[VALUE_MAX + 32], prev[VALUE_MAX + 32], err[256];
    rc = v == NULL ? 0 : canonical(a->type, v, value, sizeof value);
    json_object_put(v);
    if (rc != 0 || (rc = host_ctx_writable(ctx, "kz_friend_attr_set")) != 0)
        return rc;
    rc = store_friend_attr_get(ctx->st, ctx->inst->shop_id, user, name, NULL, prev, sizeof prev,
                               err, sizeof err);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return store_error(rc, "kz_friend_attr_set", err);
    return attr_write(ctx, user, a, rc == 0 ? prev : NULL, v != NULL ? value : NULL);
}

/* ---- links ------------------------------------------------------------------ */

static int publish_link(kz_ctx *ctx, const char *topic, const char *user, const char *source,
                        const char *member)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "source", json_object_new_string(source));
    json_object_object_add(o, "member", json_object_new_string(member));
    return publish_change(ctx, topic, user, o);
}

static int source_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n > 0 && n <= SOURCE_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static int unlink_friend(kz_ctx *ctx, const char *user, const char *source, const char *member)
{
    char err[256];
    int rc = store_friend_link_del(ctx->st, ctx->inst->shop_id, user, source, err, sizeof err);
    if (rc != 0)
        return store_error(rc, "kz_friend_link", err);
    return publish_link(ctx, "friend.unlinked", user, source, member);
}

/* Links member, moving it from its previous friend (who is told). */
static int link_friend(kz_ctx *ctx, const char *user, const char *source, const char *member,
                       const char *old_member)
{
    char prev_user[64], err[256];
    int rc = store_friend_link_set(ctx->st, ctx->inst->shop_id, user, source, member,
                                   clock_now_ms(), prev_user, sizeof prev_user, err, sizeof err);
    if (rc != 0)
        return store_error(rc, "kz_friend_link", err);
    if (old_member != NULL)
        rc = publish_link(ctx, "friend.unlinked", user, source, old_member);
    if (rc == 0 && prev_user[0] != '\0' && strcmp(prev_user, user) != 0)
        rc = publish_link(ctx, "friend.unlinked", prev_user, source, member);
    return rc == 0 ? publish_link(ctx, "friend.linked", user, source, member) : rc;
}

int friendapi_link(kz_ctx *ctx, const char *user, const char *source, const char *member_id)
{
    int rc = user_ok(ctx, user, "kz_friend_link");
    if (rc != 0)
        return rc;
    if (!source_ok(source) || (member_id != NULL && !no_control(member_id, MEMBER_MAX)))
        return KZ_EINVAL;
    if ((rc = host_ctx_writable(ctx, "kz_friend_link")) != 0)
        return rc;
    char cur[MEMBER_MAX + 8], err[256];
    rc = store_friend_link_get(ctx->st, ctx->inst->shop_id, user, source, cur, sizeof cur, err,
                               sizeof err);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return store_error(rc, "kz_friend_link", err);
    int linked = rc == 0;
    if (member_id == NULL)
        return linked ? unlink_friend(ctx, user, source, cur) : KZ_ENOTFOUND;
    if (linked && strcmp(cur, member_id) == 0)
        return KZ_EEXIST;
    return link_friend(ctx, user, source, member_id, linked ? cur : NULL);
}

/* ---- segments and time ---------------------------------------------------- */

int friendapi_segment_compile(kz_shop *shop, const kz_setting *s, kz_segment **out, char *err,
                              size_t errlen)
{
    const char *expr = NULL;
    if (shop == NULL || out == NULL)
        return KZ_EINVAL;
    *out = NULL;
    if (cfg_setting_string(s, &expr) != 0)
        return cfg_setting_error(s, err, errlen, "expected a segment expression (a string)");
    kz_segment *ks = calloc(1, sizeof *ks);
    if (ks == NULL)
        return KZ_ENOMEM;
    const cfg_shop *cs = cfg_find_shop(shop->inst->c, shop->inst->shop_id);
    segment_error e = {0};
    int rc = friend_view_compile(cs, expr, &ks->seg, &e);
    if (rc != 0) {
        free(ks);
        char msg[320];
        snprintf(msg, sizeof msg, "column %d: %s", e.column, e.message);
        return rc == KZ_ENOMEM ? rc : cfg_setting_error(s, err, errlen, msg);
    }
    *out = ks;
    return 0;
}

void friendapi_segment_free(kz_segment *seg)
{
    if (seg != NULL)
        segment_free(seg->seg);
    free(seg);
}

int friendapi_local_time(const kz_shop *shop, int64_t ms, kz_local_time *out)
{
    if (shop == NULL || out == NULL)
        return KZ_EINVAL;
    return tz_local(shop->inst->timezone, ms, out);
}

int friendapi_local_to_ms(const kz_shop *shop, const kz_local_time *lt, int64_t *ms)
{
    if (shop == NULL || !tz_fields_ok(lt))
        return KZ_EINVAL;
    return tz_to_ms(shop->inst->timezone, lt, ms);
}

int friendapi_segment_match(kz_ctx *ctx, const kz_segment *seg, const char *user)
{
    int rc = user_ok(ctx, user, "kz_segment_match");
    if (rc != 0 || seg == NULL)
        return rc != 0 ? rc : KZ_EINVAL;
    friend_view v;
    char err[256];
    if ((rc = friend_view_load(ctx->st, ctx->inst->shop_id, user, NULL, &v, err, sizeof err)) != 0)
        return store_error(rc, "kz_segment_match", err);
    segment_now now = friend_view_now(ctx->inst->timezone, clock_now_ms());
    rc = friend_view_match(seg->seg, &v, &now);
    friend_view_free(&v);
    return rc;
}
