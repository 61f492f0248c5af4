#include "apicall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "store.h"

#define PATH_MAX_LEN 2000
#define TAG_MAX 100
#define USERS_PER_CALL 500
#define CONTENT_TYPE_MAX 100

/* Logs why a call is refused and returns rc. */
static int refused(const kz_ctx *ctx, int rc, const char *fmt, const char *detail)
{
    char why[1200];
    snprintf(why, sizeof why, fmt, detail ? detail : "");
    log_msg(KZ_LOG_ERROR, "kz_line_call refused (event %s): %s", ctx->ev->se->uid, why);
    return rc;
}

static int method_ok(const char *m)
{
    return m != NULL && (strcmp(m, "GET") == 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
                         strcmp(m, "DELETE") == 0);
}

/* RFC 3986 path and query characters, '%' escapes included as they are. */
static int path_chars_ok(const char *p)
{
    for (; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || strchr("\"#<>\\^`{|}", c) != NULL)
            return 0;
    }
    return 1;
}

/* The endpoints line_send owns: they need validated messages and a retry
 * key, which line_call would not give them. */
static int is_send_endpoint(const char *p)
{
    static const char *const sends[] = {"reply", "push", "multicast", "narrowcast", "broadcast"};
    const char *prefix = "/v2/bot/message/";
    if (strncmp(p, prefix, strlen(prefix)) != 0)
        return 0;
    p += strlen(prefix);
    size_t n = strcspn(p, "?");
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++)
        if (strlen(sends[i]) == n && strncmp(p, sends[i], n) == 0)
            return 1;
    return 0;
}

static int check_path(const kz_ctx *ctx, const char *p)
{
    if (p == NULL || (strncmp(p, "/v2/bot/", 8) != 0 && strncmp(p, "/bot/", 5) != 0))
        return refused(ctx, KZ_EINVAL, "path '%s' does not start with /v2/bot/ or /bot/", p);
    if (strlen(p) > PATH_MAX_LEN || !path_chars_ok(p) || strstr(p, "..") || strstr(p, "//"))
        return refused(ctx, KZ_EINVAL, "path '%.200s' is not a clean URL path", p);
    if (is_send_endpoint(p))
        return refused(ctx, KZ_EINVAL, "%s sends messages: use kz_line_send", p);
    return 0;
}

static int is_json_type(const char *content_type)
{
    return content_type == NULL || strncmp(content_type, "application/json", 16) == 0;
}

/* Checks everything but the body's content. */
static int check_call(const kz_ctx *ctx, const kz_line_call *r, size_t body_len)
{
    if (!method_ok(r->method))
        return refused(ctx, KZ_EINVAL, "method '%s' is not GET, POST, PUT or DELETE", r->method);
    int rc = check_path(ctx, r->path);
    if (rc != 0)
        return rc;
    if (body_len > 0 && strcmp(r->method, "GET") == 0)
        return refused(ctx, KZ_EINVAL, "GET %s with a body", r->path);
    if (body_len > KZ_PAYLOAD_MAX)
        return refused(ctx, KZ_ETOOBIG, "body of %s over 1 MiB", r->path);
    const char *ct = r->content_type;
    if (ct != NULL && (strlen(ct) > CONTENT_TYPE_MAX || !path_chars_ok(ct)))
        return refused(ctx, KZ_EINVAL, "content type '%.120s' is not a media type", ct);
    if (r->tag != NULL && strlen(r->tag) > TAG_MAX)
        return refused(ctx, KZ_EINVAL, "tag longer than 100 bytes%s", NULL);
    if (r->user != NULL && !host_line_id_ok(r->user, 1))
        return refused(ctx, KZ_EINVAL, "user '%s' is not a user, group or room id", r->user);
    if (r->nusers > 0 && (r->users == NULL || !is_json_type(ct)))
        return refused(ctx, KZ_EINVAL, "users need a JSON body (%s)", r->path);
    for (size_t i = 0; i < r->nusers; i++)
        if (!host_line_id_ok(r->users[i], 0))
            return refused(ctx, KZ_EINVAL, "'%s' in users is not a user id", r->users[i]);
    return 0;
}

/* The JSON body parsed, or NULL after logging. An absent body with users
 * reads as {}. */
static json_object *json_body(const kz_ctx *ctx, const kz_line_call *r, size_t len)
{
    if (len == 0)
        return json_object_new_object();
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, r->body, (int)len) : NULL;
    int whole = tok != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (o == NULL || !whole || (r->nusers > 0 && !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        refused(ctx, KZ_EINVAL,
                r->nusers > 0 ? "body of %s is not a JSON object" : "body of %s is not JSON",
                r->path);
        return NULL;
    }
    return o;
}

static int add_row(kz_ctx *ctx, const kz_line_call *r, const void *body, size_t len,
                   int64_t *first_id)
{
    char err[256];
    int64_t now = clock_now_ms();
    store_outbox row = {
        .shop = ctx->inst->shop_id,
        .instance = ctx->inst->id,
        .kind = OUTBOX_CALL,
        .endpoint = r->path,
        .body = len > 0 ? body : "",
        .body_len = len,
        .method = r->method,
        .content_type = is_json_type(r->content_type) ? NULL : r->content_type,
        .data_api = r->data_api != 0,
        .plugin = ctx->inst->p != NULL ? ctx->inst->p->name : NULL,
        .user = r->user,
        .tag = r->tag,
        .origin = ctx->ev->se->uid,
        .created_ms = now,
        .next_at_ms = now,
    };
    int64_t id = 0;
    int rc = store_outbox_add(ctx->st, &row, &id, err, sizeof err);
    if (rc != 0)
        log_msg(KZ_LOG_ERROR, "kz_line_call: %s", err);
    else if (*first_id == 0)
        *first_id = id;
    return rc;
}

/* One row per 500 users, each the body object plus "userIds". */
static int add_user_rows(kz_ctx *ctx, const kz_line_call *r, json_object *base, int64_t *first)
{
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < r->nusers; at += USERS_PER_CALL) {
        size_t n = r->nusers - at < USERS_PER_CALL ? r->nusers - at : USERS_PER_CALL;
        json_object *ids = json_object_new_array_ext((int)n);
        for (size_t i = at; i < at + n; i++)
            json_object_array_add(ids, json_object_new_string(r->users[i]));
        json_object_object_add(base, "userIds", ids); /* replaces the previous chunk's */
        const char *text = json_object_to_json_string_ext(base, JSON_C_TO_STRING_PLAIN);
        rc = text != NULL ? add_row(ctx, r, text, strlen(text), first) : KZ_ENOMEM;
    }
    return rc;
}

static int queue(kz_ctx *ctx, const kz_line_call *r, size_t len, int64_t *first)
{
    if (!is_json_type(r->content_type))
        return add_row(ctx, r, r->body, len, first);
    json_object *o = json_body(ctx, r, len);
    if (o == NULL)
        return KZ_EINVAL;
    int rc = r->nusers > 0 ? add_user_rows(ctx, r, o, first) : add_row(ctx, r, r->body, len, first);
    json_object_put(o);
    return rc;
}

int apicall_queue(kz_ctx *ctx, const kz_line_call *req, int64_t *outbox_id)
{
    if (outbox_id != NULL)
        *outbox_id = 0;
    if (!host_ctx_live(ctx, "kz_line_call"))
        return KZ_ESTATE;
    if (req == NULL || req->struct_size < offsetof(kz_line_call, path) + sizeof(char *))
        return KZ_EINVAL;
    kz_line_call r = {0}; /* an older plugin's shorter struct reads as zeros past its end */
    memcpy(&r, req, req->struct_size < sizeof r ? req->struct_size : sizeof r);
    size_t len = r.body == NULL ? 0 : r.body_len ? r.body_len : strlen(r.body);
    int rc = check_call(ctx, &r, len);
    if (rc != 0)
        return rc;
    if (host_in_standby(ctx)) {
        log_msg(KZ_LOG_INFO, "kz_line_call: event %s arrived in standby mode: not called",
                ctx->ev->se->uid);
        return 0;
    }
    int64_t first = 0;
    if ((rc = host_ctx_writable(ctx, "kz_line_call")) == 0 &&
        (rc = queue(ctx, &r, len, &first)) == 0) {
        ctx->queued_sends = 1;
        if (outbox_id != NULL)
            *outbox_id = first;
    }
    return rc;
}
