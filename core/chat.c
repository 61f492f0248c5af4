#include "chat.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandbox.h"

#define DEFAULT_REPLY_WAIT_MS 1500
#define DEFAULT_POLL_MS 500
#define QUIET_MS 300 /* after a message arrived: wait this long for more */
#define STEP_MS 100

/* ---- JSON helpers ---------------------------------------------------------- */

static json_object *jobj(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o != NULL && json_object_is_type(o, json_type_object) &&
                   json_object_object_get_ex(o, key, &v)
               ? v
               : NULL;
}

/* A string member, NULL when absent or not a string. */
static const char *jstring(json_object *o, const char *key)
{
    json_object *v = jobj(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static const char *jstr0(json_object *o, const char *key)
{
    const char *s = jstring(o, key);
    return s != NULL ? s : "";
}

static long long jint(json_object *o, const char *key)
{
    json_object *v = jobj(o, key);
    return v != NULL ? (long long)json_object_get_int64(v) : 0;
}

static size_t jlen(json_object *arr)
{
    return arr != NULL && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr)
                                                                    : 0;
}

/* ---- numbered actions ------------------------------------------------------ */

void chat_actions_clear(chat_actions *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->json[i]);
    free(a->json);
    memset(a, 0, sizeof *a);
}

static size_t actions_add(chat_actions *a, json_object *action)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        char **p = realloc(a->json, cap * sizeof *p);
        if (p == NULL)
            abort();
        a->json = p;
        a->cap = cap;
    }
    const char *text = json_object_to_json_string_ext(action, JSON_C_TO_STRING_PLAIN);
    a->json[a->n] = strdup(text);
    if (a->json[a->n] == NULL)
        abort();
    return ++a->n;
}

/* How an action type is shown after its label. */
static const char *action_kind(const char *type)
{
    static const char *const kinds[][2] = {
        {"postback", "postback"},   {"message", "message"},   {"uri", "link"},
        {"datetimepicker", "date"}, {"clipboard", "copy"},    {"camera", "camera"},
        {"cameraRoll", "photos"},   {"location", "location"}, {"richmenuswitch", "menu"},
    };
    for (size_t i = 0; type != NULL && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(type, kinds[i][0]) == 0)
            return kinds[i][1];
    return type != NULL ? type : "?";
}

/* The label of an action; imagemap actions may have none: their text or link. */
static const char *action_label(json_object *a)
{
    const char *s = jstring(a, "label");
    if (s == NULL)
        s = jstring(a, "text");
    if (s == NULL)
        s = jstring(a, "linkUri");
    if (s == NULL)
        s = jstring(a, "uri");
    return s != NULL ? s : action_kind(jstring(a, "type"));
}

/* ---- rendering ------------------------------------------------------------- */

/* The message's lines go to a memstream, '\n'-separated, and get their
 * "shop> " / continuation prefix at the end. */
typedef struct rend {
    FILE *f;
    char *buf;
    size_t len;
    chat_actions *acts;
} rend;

static void put(rend *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(rend *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->f, fmt, ap);
    va_end(ap);
}

/* "[n] Label (kind)" without a newline; the action is numbered. */
static void put_action(rend *r, json_object *a)
{
    size_t n = actions_add(r->acts, a);
    put(r, "[%zu] %s (%s)", n, action_label(a), action_kind(jstring(a, "type")));
}

static void put_actions(rend *r, const char *indent, json_object *arr)
{
    for (size_t i = 0; i < jlen(arr); i++) {
        put(r, "%s", indent);
        put_action(r, json_object_array_get_idx(arr, i));
        put(r, "\n");
    }
}

/* Indexes (UTF-16 units) of the LINE emoji of a text message, NULL-safe. */
static int emoji_at(json_object *emojis, int64_t u16)
{
    for (size_t i = 0; i < jlen(emojis); i++) {
        json_object *idx = jobj(json_object_array_get_idx(emojis, i), "index");
        if (idx != NULL && json_object_get_int64(idx) == u16)
            return 1;
    }
    return 0;
}

/* Text with each LINE emoji `$` (at an index of `emojis`) as [emoji]. */
static void put_text_emoji(rend *r, const char *text, json_object *emojis)
{
    int64_t u16 = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '$' && emoji_at(emojis, u16))
            put(r, "[emoji]");
        else
            fputc(*p, r->f);
        if ((*p & 0xC0) != 0x80) /* a lead byte: one unit, two for 4-byte sequences */
            u16 += *p >= 0xF0 ? 2 : 1;
    }
}

/* textV2: {key} replaced by its substitution (a mention or an emoji). */
static void put_text_v2(rend *r, const char *text, json_object *subst)
{
    for (const char *p = text; *p != '\0'; p++) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close != NULL && close - p < 64) {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(close - p - 1), p + 1);
            json_object *s = jobj(subst, key);
            const char *type = jstring(s, "type");
            if (type != NULL && strcmp(type, "emoji") == 0) {
                put(r, "[emoji]");
                p = close;
                continue;
            }
            if (type != NULL && strcmp(type, "mention") == 0) {
                json_object *m = jobj(s, "mentionee");
                const char *uid = jstring(m, "userId");
                put(r, "@%s", uid != NULL ? uid : "all");
                p = close;
                continue;
            }
        }
        fputc(*p, r->f);
    }
}

/* Flex: every text component (spans joined) and every button, depth-first
 * in the order of the JSON. */
static void walk_flex(rend *r, json_object *o)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < jlen(o); i++)
            walk_flex(r, json_object_array_get_idx(o, i));
        return;
    }
    if (!json_object_is_type(o, json_type_object))
        return;
    const char *type = jstring(o, "type");
    if (type != NULL && strcmp(type, "text") == 0) {
        const char *text = jstring(o, "text");
        json_object *spans = jobj(o, "contents");
        if (jlen(spans) > 0) {
            for (size_t i = 0; i < jlen(spans); i++) {
                const char *s = jstring(json_object_array_get_idx(spans, i), "text");
                put(r, "%s", s != NULL ? s : "");
            }
        } else {
            put(r, "%s", text != NULL ? text : "");
        }
        put(r, "\n");
        return;
    }
    if (type != NULL && strcmp(type, "button") == 0) {
        json_object *a = jobj(o, "action");
        if (a != NULL) {
            put_action(r, a);
            put(r, "\n");
        }
        return;
    }
    json_object_object_foreach(o, key, val)
    {
        (void)key;
        if (json_object_is_type(val, json_type_object) || json_object_is_type(val, json_type_array))
            walk_flex(r, val);
    }
}

static void render_template(rend *r, json_object *msg)
{
    json_object *t = jobj(msg, "template");
    const char *type = jstring(t, "type");
    const char *alt = jstring(msg, "altText");
    if (type == NULL) {
        put(r, "[template] %s\n", alt ? alt : "");
        return;
    }
    if (strcmp(type, "buttons") == 0 || strcmp(type, "confirm") == 0) {
        const char *title = jstring(t, "title"), *text = jstring(t, "text");
        if (title != NULL)
            put(r, "%s\n", title);
        if (text != NULL)
            put(r, "%s\n", text);
        put_actions(r, "", jobj(t, "actions"));
        return;
    }
    json_object *cols = jobj(t, "columns");
    if (strcmp(type, "carousel") == 0) {
        put(r, "[carousel] %s\n", alt ? alt : "");
        for (size_t i = 0; i < jlen(cols); i++) {
            json_object *col = json_object_array_get_idx(cols, i);
            const char *title = jstring(col, "title"), *text = jstring(col, "text");
            put(r, "- %s\n", title != NULL ? title : text != NULL ? text : "");
            if (title != NULL && text != NULL)
                put(r, "  %s\n", text);
            put_actions(r, "  ", jobj(col, "actions"));
        }
        return;
    }
    if (strcmp(type, "image_carousel") == 0) {
        put(r, "[image carousel] %s\n", alt ? alt : "");
        for (size_t i = 0; i < jlen(cols); i++) {
            json_object *col = json_object_array_get_idx(cols, i);
            const char *img = jstring(col, "imageUrl");
            put(r, "- [image] %s\n  ", img ? img : "");
            json_object *a = jobj(col, "action");
            if (a != NULL)
                put_action(r, a);
            put(r, "\n");
        }
        return;
    }
    put(r, "[template %s] %s\n", type, alt ? alt : "");
}

static void render_body(rend *r, json_object *msg)
{
    const char *type = jstring(msg, "type");
    const char *alt = jstring(msg, "altText");
    if (type == NULL) {
        put(r, "[?]\n");
    } else if (strcmp(type, "text") == 0) {
        put_text_emoji(r, jstring(msg, "text") ? jstring(msg, "text") : "", jobj(msg, "emojis"));
        put(r, "\n");
    } else if (strcmp(type, "textV2") == 0) {
        put_text_v2(r, jstring(msg, "text") ? jstring(msg, "text") : "", jobj(msg, "substitution"));
        put(r, "\n");
    } else if (strcmp(type, "sticker") == 0) {
        put(r, "[sticker %s/%s]\n", jstring(msg, "packageId") ? jstring(msg, "packageId") : "?",
            jstring(msg, "stickerId") ? jstring(msg, "stickerId") : "?");
    } else if (strcmp(type, "image") == 0 || strcmp(type, "video") == 0 ||
               strcmp(type, "audio") == 0) {
        const char *url = jstring(msg, "originalContentUrl");
        put(r, "[%s] %s\n", type, url ? url : "");
    } else if (strcmp(type, "location") == 0) {
        const char *title = jstring(msg, "title"), *addr = jstring(msg, "address");
        put(r, "[location] %s, %s\n", title ? title : "", addr ? addr : "");
    } else if (strcmp(type, "template") == 0) {
        render_template(r, msg);
    } else if (strcmp(type, "flex") == 0) {
        put(r, "[flex] %s\n", alt ? alt : "");
        walk_flex(r, jobj(msg, "contents"));
    } else if (strcmp(type, "imagemap") == 0) {
        put(r, "[imagemap] %s\n", alt ? alt : "");
        put_actions(r, "", jobj(msg, "actions"));
    } else if (strcmp(type, "coupon") == 0) {
        const char *id = jstring(msg, "couponId");
        put(r, "[coupon] %s\n", id ? id : "");
    } else {
        put(r, "[%s]\n", type);
    }
}

static void render_quick_reply(rend *r, json_object *msg)
{
    json_object *items = jobj(jobj(msg, "quickReply"), "items");
    if (jlen(items) == 0)
        return;
    put(r, "quick reply:");
    for (size_t i = 0; i < jlen(items); i++) {
        json_object *a = jobj(json_object_array_get_idx(items, i), "action");
        if (a == NULL)
            continue;
        put(r, i == 0 ? " " : "  ");
        put_action(r, a);
    }
    put(r, "\n");
}

/* Prefixes every line: `first` the first (six columns), six spaces the
 * others. */
static char *prefix_lines_as(const char *body, const char *first_prefix)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        abort();
    const char *p = body;
    int first = 1;
    while (*p != '\0') {
        size_t n = strcspn(p, "\n");
        fputs(first ? first_prefix : "      ", f);
        for (size_t i = 0; i < n; i++) /* no terminal control from a message */
            fputc((unsigned char)p[i] < 0x20 && p[i] != '\t' ? '?' : p[i] == 0x7f ? '?' : p[i], f);
        fputc('\n', f);
        first = 0;
        p += n;
        if (*p == '\n')
            p++;
    }
    if (first)
        fprintf(f, "%s\n", first_prefix);
    fclose(f);
    return out;
}

static char *prefix_lines(const char *body)
{
    return prefix_lines_as(body, "shop> ");
}

static char *render_obj(json_object *msg, chat_actions *acts)
{
    chat_actions local = {0};
    rend r = {.acts = acts != NULL ? acts : &local};
    r.f = open_memstream(&r.buf, &r.len);
    if (r.f == NULL)
        abort();
    if (json_object_is_type(msg, json_type_object)) {
        render_body(&r, msg);
        render_quick_reply(&r, msg);
    } else {
        put(&r, "[unreadable message]\n");
    }
    fclose(r.f);
    char *out = prefix_lines(r.buf);
    free(r.buf);
    chat_actions_clear(&local);
    return out;
}

/* What an area's action carries, for the CLI's detailed view. */
static void put_action_detail(rend *r, json_object *a)
{
    static const char *const keys[] = {"data",          "text", "uri", "richMenuAliasId",
                                       "clipboardText", "mode"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = jstring(a, keys[i]);
        if (v != NULL)
            put(r, " %s=\"%s\"", keys[i], v);
    }
}

static void put_area(rend *r, json_object *area, int detail)
{
    json_object *a = jobj(area, "action"), *b = jobj(area, "bounds");
    put_action(r, a);
    if (detail) {
        put_action_detail(r, a);
        put(r, " at %lld,%lld %lldx%lld", jint(b, "x"), jint(b, "y"), jint(b, "width"),
            jint(b, "height"));
    }
    put(r, "\n");
}

char *chat_render_richmenu(const char *answer_json, chat_actions *acts, int detail)
{
    json_object *o = answer_json != NULL ? json_tokener_parse(answer_json) : NULL;
    json_object *menu = jobj(o, "richMenu"), *size = jobj(menu, "size");
    chat_actions local = {0};
    rend r = {.acts = acts != NULL ? acts : &local};
    r.f = open_memstream(&r.buf, &r.len);
    if (r.f == NULL)
        abort();
    const char *bar = jstring(menu, "chatBarText"), *source = jstring(o, "source");
    int mine = source != NULL && strcmp(source, "user") == 0;
    if (detail)
        put(&r, "%s (shop %s): rich menu %s \"%s\" (%s), %lldx%lld\nchat bar: %s\n",
            jstr0(o, "userId"), jstr0(o, "shop"), jstr0(o, "richMenuId"), jstr0(menu, "name"),
            mine ? "linked to the user" : "the shop's default", jint(size, "width"),
            jint(size, "height"), bar ? bar : "");
    else
        put(&r, "%s\n", bar ? bar : "[rich menu]");
    json_object *areas = jobj(menu, "areas");
    for (size_t i = 0; i < jlen(areas); i++)
        put_area(&r, json_object_array_get_idx(areas, i), detail);
    fclose(r.f);
    char *out = detail ? strdup(r.buf) : prefix_lines_as(r.buf, "menu> ");
    free(r.buf);
    chat_actions_clear(&local);
    json_object_put(o);
    if (out == NULL)
        abort();
    return out;
}

char *chat_render(const char *message_json, chat_actions *acts)
{
    json_object *msg = message_json != NULL ? json_tokener_parse(message_json) : NULL;
    char *out = render_obj(msg, acts);
    json_object_put(msg);
    return out;
}

/* ---- the chat -------------------------------------------------------------- */

typedef struct chat {
    const cfg *c;
    const char *shop, *user;
    FILE *in, *out;
    int tty_in, tty_out;
    int at_prompt; /* "you> " is on screen with the cursor after it */
    chat_options o;
    char base[600];         /* http://<sandbox>/sandbox/shops/<shop>/users/<user>/ */
    size_t shown;           /* inbox messages shown so far */
    chat_actions acts;      /* of the last batch that had any */
    chat_actions menu_acts; /* of the rich menu last shown */
} chat;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Leaves the prompt line before printing something else. */
static void leave_prompt(chat *ch)
{
    if (!ch->at_prompt)
        return;
    fputs(ch->tty_out ? "\r\033[K" : "\n", ch->out);
    ch->at_prompt = 0;
}

static void say(chat *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(chat *ch, const char *fmt, ...)
{
    leave_prompt(ch);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(ch->out, fmt, ap);
    va_end(ap);
    fflush(ch->out);
}

/* The sandbox's "message" of an error answer, else the body. */
static void answer_message(const char *body, char *out, size_t outlen)
{
    json_object *o = json_tokener_parse(body != NULL ? body : "");
    const char *m = jstring(o, "message");
    snprintf(out, outlen, "%s", m != NULL ? m : body != NULL ? body : "");
    json_object_put(o);
}

/* GET the inbox: the parsed answer in *root (owned by the caller). */
static int fetch_inbox(chat *ch, json_object **root)
{
    char url[700], err[512];
    snprintf(url, sizeof url, "%sinbox", ch->base);
    long status = 0;
    char *resp = NULL;
    *root = NULL;
    if (sandbox_http("GET", url, NULL, &status, &resp, err, sizeof err) != 0) {
        say(ch, "! cannot reach the LINE sandbox: %s\n", err);
        return -1;
    }
    if (status != 200) {
        char msg[512];
        answer_message(resp, msg, sizeof msg);
        say(ch, "! the sandbox answered %ld: %s\n", status, msg);
        free(resp);
        return -1;
    }
    *root = json_tokener_parse(resp);
    free(resp);
    if (jobj(*root, "messages") == NULL) {
        json_object_put(*root);
        *root = NULL;
        say(ch, "! the sandbox's inbox answer has no messages\n");
        return -1;
    }
    return 0;
}

/* Renders messages[from..] as one batch; its actions replace the last ones
 * when it has any. */
static void show_batch(chat *ch, json_object *msgs, size_t from)
{
    chat_actions batch = {0};
    for (size_t i = from; i < jlen(msgs); i++) {
        char *text = render_obj(jobj(json_object_array_get_idx(msgs, i), "message"), &batch);
        say(ch, "%s", text);
        free(text);
    }
    if (batch.n > 0) {
        chat_actions_clear(&ch->acts);
        ch->acts = batch;
    } else {
        chat_actions_clear(&batch);
    }
}

/* Shows the messages not shown yet: how many, -1 on error. */
static int show_new(chat *ch)
{
    json_object *root;
    if (fetch_inbox(ch, &root) != 0)
        return -1;
    json_object *msgs = jobj(root, "messages");
    size_t n = jlen(msgs);
    int shown = 0;
    if (n > ch->shown) {
        show_batch(ch, msgs, ch->shown);
        shown = (int)(n - ch->shown);
        ch->shown = n;
    }
    json_object_put(root);
    return shown;
}

/* After an action: the shop's answer usually follows within a moment. */
static void wait_answers(chat *ch)
{
    int64_t start = now_ms(), deadline = start + ch->o.reply_wait_ms;
    for (;;) {
        int got = show_new(ch);
        if (got < 0)
            return;
        int64_t now = now_ms();
        if (got > 0 && now + QUIET_MS < start + 2 * (int64_t)ch->o.reply_wait_ms)
            deadline = now + QUIET_MS;
        if (now >= deadline)
            return;
        sleep_ms(STEP_MS);
    }
}

/* POST …/<action> as the user; 0 when the daemon took the webhook. */
static int play(chat *ch, enum sandbox_action action, const char *arg)
{
    static const char *const names[] = {"follow", "unfollow", "say", "postback"};
    char url[700], err[512];
    snprintf(url, sizeof url, "%s%s", ch->base, names[action]);
    char *body = NULL;
    if (arg != NULL) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, action == SANDBOX_SAY ? "text" : "data",
                               json_object_new_string(arg));
        body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    }
    long status = 0;
    char *resp = NULL;
    int rc = sandbox_http("POST", url, body, &status, &resp, err, sizeof err);
    free(body);
    if (rc != 0) {
        say(ch, "! cannot reach the LINE sandbox: %s\n", err);
    } else if (status != 200) {
        char msg[512];
        answer_message(resp, msg, sizeof msg);
        say(ch, "! %s: %s\n", names[action], msg);
        rc = -1;
    }
    free(resp);
    return rc;
}

/* /advance DURATION: walks the daemon's virtual clock (as `kizuna sandbox
 * advance` does, through the admin API) and shows what the shop sent on
 * the way: the walk returns once everything due is handled and sent. */
static void advance(chat *ch, const char *arg)
{
    if (*arg == '\0') {
        say(ch, "! /advance DURATION, e.g. /advance 1d or /advance 2h30m\n");
        return;
    }
    if (ch->c->admin_token == NULL) {
        say(ch, "! /advance moves the daemon's virtual clock through its admin API: set "
                "kizuna.admin_token (docs/http.md)\n");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "by", json_object_new_string(arg));
    long status = 0;
    char *resp = NULL, err[512] = "";
    int rc = cli_admin_call(ch->c, "POST", "/admin/clock/advance",
                            json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), &status,
                            &resp, err, sizeof err);
    json_object_put(o);
    if (rc == 0 && status != 200)
        cli_admin_error(status, resp, err, sizeof err);
    if (rc != 0 || status != 200) {
        say(ch, "! /advance: %s\n", err);
    } else {
        json_object *a = json_tokener_parse(resp), *now;
        say(ch, "* clock at %s\n",
            json_object_object_get_ex(a, "now", &now) ? json_object_get_string(now) : "?");
        json_object_put(a);
        show_new(ch);
    }
    free(resp);
}

static void help(chat *ch)
{
    say(ch, "* type a line to send it as a text message (//text sends /text)\n"
            "* /follow        add the shop as a friend\n"
            "* /block         block the shop (LINE's unfollow)\n"
            "* /unblock       unblock it (a follow again)\n"
            "* /tap N         tap button or quick-reply item [N] of the last messages\n"
            "* /open N        open link [N] (also /click N)\n"
            "* /inbox         show every message again\n"
            "* /menu [N]      show the rich menu; tap its area [N]\n"
            "* /advance D     move the daemon's virtual clock by D (1d, 2h30m)\n"
            "* /help, /quit   this text; leave (also Ctrl-D)\n");
}

/* The action [n] of acts (the last messages' or the menu's), parsed; NULL
 * (and a message) if none. */
static json_object *numbered(chat *ch, const chat_actions *acts, const char *arg)
{
    if (*arg == '\0') {
        say(ch, "! which one? /tap N or /open N, N a number shown as [N]\n");
        return NULL;
    }
    char *end;
    long n = strtol(arg, &end, 10);
    while (*end == ' ')
        end++;
    int is_menu = acts == &ch->menu_acts;
    if (end == arg || *end != '\0' || n < 1 || (size_t)n > acts->n) {
        if (acts->n == 0)
            say(ch, "! nothing to tap: %s\n",
                is_menu ? "the rich menu has no areas" : "no message with buttons yet");
        else
            say(ch, "! no [%s]: %s [1]..[%zu]\n", arg,
                is_menu ? "the rich menu has" : "the last messages have", acts->n);
        return NULL;
    }
    return json_tokener_parse(acts->json[n - 1]);
}

static void open_link(chat *ch, json_object *a)
{
    const char *uri = jstring(a, "uri") ? jstring(a, "uri") : jstring(a, "linkUri");
    say(ch, "opened %s\n", uri ? uri : "");
}

static void switch_menu(chat *ch, json_object *a, const char *arg);

/* Does what tapping action a (shown as [arg]) does in LINE. */
static void tap_action(chat *ch, json_object *a, const char *arg, int open_only)
{
    const char *type = jstring(a, "type") ? jstring(a, "type") : "";
    const char *label = action_label(a);
    int link = strcmp(type, "uri") == 0;
    if (open_only && !link) {
        say(ch, "! [%s] %s is not a link but a %s: /tap %s\n", arg, label, action_kind(type), arg);
    } else if (link) {
        open_link(ch, a);
    } else if (strcmp(type, "postback") == 0 || strcmp(type, "datetimepicker") == 0) {
        const char *data = jstring(a, "data") ? jstring(a, "data") : "";
        const char *shown = jstring(a, "displayText");
        if (shown != NULL)
            say(ch, "you> %s\n", shown);
        say(ch, "* tapped [%s] %s: postback \"%s\"%s\n", arg, label, data,
            *type == 'd' ? " (the sandbox sends no date)" : "");
        if (play(ch, SANDBOX_POSTBACK, data) == 0)
            wait_answers(ch);
    } else if (strcmp(type, "message") == 0) {
        const char *text = jstring(a, "text") ? jstring(a, "text") : label;
        say(ch, "you> %s\n", text);
        if (play(ch, SANDBOX_SAY, text) == 0)
            wait_answers(ch);
    } else if (strcmp(type, "clipboard") == 0) {
        const char *text = jstring(a, "clipboardText");
        say(ch, "* copied %s\n", text ? text : "");
    } else if (strcmp(type, "richmenuswitch") == 0) {
        switch_menu(ch, a, arg);
    } else {
        say(ch, "* [%s] %s: %s is not available in the chat\n", arg, label, action_kind(type));
    }
}

static void tap(chat *ch, const char *arg, int open_only)
{
    json_object *a = numbered(ch, &ch->acts, arg);
    if (a == NULL)
        return;
    tap_action(ch, a, arg, open_only);
    json_object_put(a);
}

/* GET the user's rich menu: 0 with the answer (malloc'd), 1 when the user
 * has none (said so), -1 on error (said so). */
static int fetch_menu(chat *ch, char **resp)
{
    char url[700], err[512];
    snprintf(url, sizeof url, "%srichmenu", ch->base);
    long status = 0;
    *resp = NULL;
    if (sandbox_http("GET", url, NULL, &status, resp, err, sizeof err) != 0) {
        say(ch, "! cannot reach the LINE sandbox: %s\n", err);
        return -1;
    }
    if (status == 200)
        return 0;
    char msg[512];
    answer_message(*resp, msg, sizeof msg);
    free(*resp);
    *resp = NULL;
    if (status == 404) {
        say(ch, "* '%s' shows you no rich menu\n", ch->shop);
        return 1;
    }
    say(ch, "! the sandbox answered %ld: %s\n", status, msg);
    return -1;
}

/* /menu shows the user's rich menu; /menu N taps its area N. The menu is
 * fetched each time: a switch or a link by the shop changes it. */
static void menu(chat *ch, const char *arg)
{
    char *resp;
    if (fetch_menu(ch, &resp) != 0)
        return;
    chat_actions_clear(&ch->menu_acts);
    char *text = chat_render_richmenu(resp, &ch->menu_acts, 0);
    free(resp);
    if (*arg == '\0')
        say(ch, "%s", text);
    free(text);
    if (*arg == '\0')
        return;
    json_object *a = numbered(ch, &ch->menu_acts, arg);
    if (a == NULL)
        return;
    tap_action(ch, a, arg, 0);
    json_object_put(a);
}

/* A richmenuswitch tap: the sandbox switches the menu and sends the
 * postback LINE sends; then the new menu shows. */
static void switch_menu(chat *ch, json_object *a, const char *arg)
{
    char url[700], err[512];
    snprintf(url, sizeof url, "%srichmenuswitch", ch->base);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "richMenuAliasId",
                           json_object_new_string(jstr0(a, "richMenuAliasId")));
    json_object_object_add(o, "data", json_object_new_string(jstr0(a, "data")));
    long status = 0;
    char *resp = NULL;
    int rc = sandbox_http("POST", url, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                          &status, &resp, err, sizeof err);
    json_object_put(o);
    if (rc != 0) {
        say(ch, "! cannot reach the LINE sandbox: %s\n", err);
    } else if (status != 200) {
        char msg[512];
        answer_message(resp, msg, sizeof msg);
        say(ch, "! richmenuswitch: %s\n", msg);
    } else {
        say(ch, "* tapped [%s] %s: rich menu '%s'\n", arg, action_label(a),
            jstr0(a, "richMenuAliasId"));
        menu(ch, "");
        wait_answers(ch);
    }
    free(resp);
}

static void show_all(chat *ch)
{
    json_object *root;
    if (fetch_inbox(ch, &root) != 0)
        return;
    json_object *msgs = jobj(root, "messages");
    if (jlen(msgs) == 0)
        say(ch, "* no messages from '%s' yet\n", ch->shop);
    show_batch(ch, msgs, 0);
    ch->shown = jlen(msgs);
    json_object_put(root);
}

/* One input line; 1 to quit. */
static int handle(chat *ch, char *line)
{
    if (!ch->tty_in)
        say(ch, "you> %s\n", line);
    if (line[0] == '\0')
        return 0;
    if (line[0] != '/' || line[1] == '/') {
        const char *text = line[0] == '/' ? line + 1 : line;
        if (play(ch, SANDBOX_SAY, text) == 0)
            wait_answers(ch);
        return 0;
    }
    char *cmd = line + 1;
    char *arg = cmd + strcspn(cmd, " ");
    if (*arg != '\0')
        *arg++ = '\0';
    while (*arg == ' ')
        arg++;
    if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "exit") == 0) {
        return 1;
    } else if (strcmp(cmd, "follow") == 0 || strcmp(cmd, "unblock") == 0) {
        if (play(ch, SANDBOX_FOLLOW, NULL) == 0) {
            say(ch, "* %s '%s'\n", cmd[0] == 'f' ? "followed" : "unblocked", ch->shop);
            wait_answers(ch);
        }
    } else if (strcmp(cmd, "block") == 0) {
        if (play(ch, SANDBOX_UNFOLLOW, NULL) == 0) {
            say(ch, "* blocked '%s'\n", ch->shop);
            wait_answers(ch);
        }
    } else if (strcmp(cmd, "tap") == 0) {
        tap(ch, arg, 0);
    } else if (strcmp(cmd, "open") == 0 || strcmp(cmd, "click") == 0) {
        tap(ch, arg, 1);
    } else if (strcmp(cmd, "inbox") == 0) {
        show_all(ch);
    } else if (strcmp(cmd, "menu") == 0) {
        menu(ch, arg);
    } else if (strcmp(cmd, "advance") == 0) {
        advance(ch, arg);
    } else if (strcmp(cmd, "help") == 0) {
        help(ch);
    } else {
        say(ch, "! unknown command '/%s' (/help lists them)\n", cmd);
    }
    return 0;
}

/* The greeting: who is who, and the last request's messages. */
static int start(chat *ch)
{
    json_object *root;
    if (fetch_inbox(ch, &root) != 0) {
        say(ch, "! is the daemon (`kizuna serve`) or `kizuna sandbox serve` running?\n");
        return -1;
    }
    json_object *known = jobj(root, "known"), *following = jobj(root, "following");
    const char *name = jstring(root, "displayName");
    say(ch, "* chat with shop '%s' as %s%s%s%s — /help for commands\n", ch->shop, ch->user,
        name ? " (" : "", name ? name : "", name ? ")" : "");
    if (known == NULL || !json_object_get_boolean(known))
        say(ch, "* you are new to the shop: /follow adds it as a friend\n");
    else if (following == NULL || !json_object_get_boolean(following))
        say(ch, "* you have blocked the shop: /unblock\n");
    json_object *msgs = jobj(root, "messages");
    size_t n = jlen(msgs), from = n;
    const char *last = n > 0 ? jstring(json_object_array_get_idx(msgs, n - 1), "requestId") : NULL;
    while (last != NULL && from > 0) {
        const char *id = jstring(json_object_array_get_idx(msgs, from - 1), "requestId");
        if (id == NULL || strcmp(id, last) != 0)
            break;
        from--;
    }
    if (from > 0)
        say(ch, "* %zu earlier message(s): /inbox shows them\n", from);
    show_batch(ch, msgs, from);
    ch->shown = n;
    json_object_put(root);
    return 0;
}

/* Reads a line into *line (newline stripped); on a terminal, polls the inbox
 * while waiting. -1 at EOF. */
static ssize_t read_line(chat *ch, char **line, size_t *cap)
{
    if (ch->tty_in) {
        if (!ch->at_prompt) {
            fputs("you> ", ch->out);
            fflush(ch->out);
            ch->at_prompt = 1;
        }
        struct pollfd p = {.fd = fileno(ch->in), .events = POLLIN};
        for (;;) {
            int rc = poll(&p, 1, ch->o.poll_ms);
            if (rc > 0 || (rc < 0 && errno != EINTR))
                break;
            if (rc == 0 && show_new(ch) > 0) {
                fputs("you> ", ch->out);
                fflush(ch->out);
                ch->at_prompt = 1;
            }
        }
    }
    ssize_t n = getline(line, cap, ch->in);
    ch->at_prompt = 0;
    if (n < 0)
        return -1;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
        (*line)[--n] = '\0';
    return n;
}

int chat_run_opts(const cfg *c, const char *shop, const char *user, FILE *in, FILE *out,
                  const chat_options *o)
{
    const cfg_shop *s = NULL;
    for (size_t i = 0; i < c->nshops; i++)
        if (strcmp(c->shops[i].id, shop) == 0)
            s = &c->shops[i];
    if (s == NULL || s->line_channel_secret == NULL) {
        fprintf(out, "kizuna chat: unknown shop '%s' (or it has no line group)\n", shop);
        return 2;
    }
    if (!sandbox_user_id_valid(user)) {
        fprintf(out, "kizuna chat: invalid user id '%s': expected U and 32 hex digits\n", user);
        return 2;
    }
    chat ch = {.c = c, .shop = shop, .user = user, .in = in, .out = out};
    ch.o.reply_wait_ms =
        o != NULL && o->reply_wait_ms > 0 ? o->reply_wait_ms : DEFAULT_REPLY_WAIT_MS;
    ch.o.poll_ms = o != NULL && o->poll_ms > 0 ? o->poll_ms : DEFAULT_POLL_MS;
    ch.tty_in = isatty(fileno(in));
    ch.tty_out = isatty(fileno(out));
    if (ch.tty_in)
        setvbuf(in, NULL, _IONBF, 0); /* poll() sees every byte not yet read */
    snprintf(ch.base, sizeof ch.base, "http://%s/sandbox/shops/%s/users/%s/", c->sandbox.listen,
             shop, user);
    if (s->line_api != NULL && strcmp(s->line_api, "sandbox") != 0)
        say(&ch,
            "* note: shop '%s' sends to %s, not to the sandbox: its answers do not show "
            "here\n",
            shop, s->line_api);
    if (start(&ch) != 0)
        return 1;
    char *line = NULL;
    size_t cap = 0;
    while (read_line(&ch, &line, &cap) >= 0)
        if (handle(&ch, line))
            break;
    if (ch.tty_in && feof(in))
        fputs("\n", out);
    fflush(out);
    free(line);
    chat_actions_clear(&ch.acts);
    chat_actions_clear(&ch.menu_acts);
    return 0;
}

int chat_run(const cfg *c, const char *shop, const char *user, FILE *in, FILE *out)
{
    return chat_run_opts(c, shop, user, in, out, NULL);
}
