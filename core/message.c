/* LINE message objects: validation against the Messaging API's published
 * rules, with LINE-shaped errors. See message.h. */
#include "message.h"

#include <json-c/json.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- limits (messaging-api.yml and the Messaging API reference) ------- */

#define TEXT_MAX 5000           /* text, textV2: UTF-16 units */
#define TEXT_EMOJIS_MAX 20      /* text.emojis */
#define SUBST_MAX 100           /* textV2.substitution keys */
#define SUBST_MENTIONS_MAX 20   /* mentions substituted in one message */
#define SUBST_EMOJIS_MAX 20     /* emoji substituted in one message */
#define ALT_TEXT_MAX 1500       /* template, flex, imagemap altText */
#define URL_MAX 2000            /* media and icon URLs (https) */
#define URI_MAX 1000            /* action URIs */
#define TRACKING_ID_MAX 100     /* video.trackingId */
#define LOCATION_TEXT_MAX 100   /* location title, address */
#define IMAGEMAP_ACTIONS_MAX 50 /* imagemap.actions */
#define IMAGEMAP_LABEL_MAX 100  /* imagemap action label */
#define IMAGEMAP_TEXT_MAX 400   /* imagemap message action text */
#define IMAGEMAP_LINK_LABEL 30  /* imagemap video.externalLink.label */
#define IMAGEMAP_BASE_WIDTH 1040
#define CLIPBOARD_MAX 1000    /* clipboardText */
#define BUTTONS_TITLE_MAX 40  /* graphemes */
#define BUTTONS_TEXT_MAX 160  /* graphemes, no image or title */
#define BUTTONS_TEXT_SHORT 60 /* graphemes, with image or title */
#define BUTTONS_ACTIONS_MAX 4
#define CONFIRM_TEXT_MAX 240
#define CAROUSEL_COLUMNS_MAX 10
#define CAROUSEL_TEXT_MAX 120
#define CAROUSEL_ACTIONS_MAX 3
#define LABEL_MAX 20            /* template and quick reply action labels */
#define LABEL_IMAGE_CAROUSEL 12 /* image carousel action label */
#define POSTBACK_DATA_MAX 300
#define RICH_MENU_ALIAS_MAX 32
#define RICH_MENU_AREAS_MAX 20
#define RICH_MENU_NAME_MAX 300
#define RICH_MENU_CHAT_BAR_MAX 14
#define RICH_MENU_WIDTH_MIN 800
#define RICH_MENU_WIDTH_MAX 2500
#define RICH_MENU_HEIGHT_MIN 250
#define ACTION_TEXT_MAX 300 /* message text, displayText, fillInText */
#define FLEX_BUBBLE_BYTES (30 * 1024)
#define FLEX_CAROUSEL_BYTES (50 * 1024)
#define FLEX_CAROUSEL_MAX 12
#define QUICK_REPLY_MAX 13
#define SENDER_NAME_MAX 20
#define COUPON_TAG_MAX 30

#define PARSE_DEPTH 128

/* ---- UTF-8, UTF-16 and grapheme counting ------------------------------- */

/* Decodes one code point at s[*i]; -1 on malformed, overlong, surrogate or
 * out-of-range sequences. */
static int utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return 0;
    } else if ((c & 0xE0) == 0xC0) {
        n = 1, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3, v = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (*i + n >= len)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xC0) != 0x80)
            return -1;
        v = (v << 6) | (s[*i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    *cp = v;
    *i += n + 1;
    return 0;
}

size_t message_utf16_len(const char *s, size_t len)
{
    size_t i = 0, units = 0;
    uint32_t cp;
    while (i < len) {
        if (utf8_next((const unsigned char *)s, len, &i, &cp) != 0)
            return (size_t)-1;
        units += cp >= 0x10000 ? 2 : 1;
    }
    return units;
}

/* Code points that extend the cluster before them (a practical subset of
 * Grapheme_Cluster_Break=Extend/SpacingMark for the scripts LINE users
 * write in). */
static bool grapheme_extend(uint32_t c)
{
    return (c >= 0x0300 && c <= 0x036F) || (c >= 0x0483 && c <= 0x0489) ||
           (c >= 0x0591 && c <= 0x05BD) || (c >= 0x0610 && c <= 0x061A) ||
           (c >= 0x064B && c <= 0x065F) || (c >= 0x0900 && c <= 0x0903) ||
           (c >= 0x093A && c <= 0x094F) || c == 0x0E31 || (c >= 0x0E33 && c <= 0x0E3A) ||
           (c >= 0x0E47 && c <= 0x0E4E) || (c >= 0x1AB0 && c <= 0x1AFF) ||
           (c >= 0x1DC0 && c <= 0x1DFF) || c == 0x200C || (c >= 0x20D0 && c <= 0x20FF) ||
           (c >= 0x3099 && c <= 0x309A) || (c >= 0xFE00 && c <= 0xFE0F) ||
           (c >= 0xFE20 && c <= 0xFE2F) || (c >= 0x1F3FB && c <= 0x1F3FF) ||
           (c >= 0xE0020 && c <= 0xE007F) || (c >= 0xE0100 && c <= 0xE01EF);
}

static bool pictographic(uint32_t c)
{
    return (c >= 0x1F000 && c <= 0x1FAFF) || (c >= 0x2600 && c <= 0x27BF) ||
           (c >= 0x2300 && c <= 0x23FF) || (c >= 0x2B00 && c <= 0x2BFF) || c == 0x2764;
}

size_t message_grapheme_len(const char *s, size_t len)
{
    size_t i = 0, n = 0;
    uint32_t cp, prev = 0;
    bool after_zwj = false, ri_open = false;
    while (i < len) {
        if (utf8_next((const unsigned char *)s, len, &i, &cp) != 0)
            return (size_t)-1;
        bool joined = false;
        if (n > 0) {
            if (cp == '\n' && prev == '\r')
                joined = true;
            else if (grapheme_extend(cp) || cp == 0x200D)
                joined = true;
            else if (after_zwj && pictographic(cp))
                joined = true;
            else if (ri_open && cp >= 0x1F1E6 && cp <= 0x1F1FF)
                joined = true;
        }
        if (cp >= 0x1F1E6 && cp <= 0x1F1FF)
            ri_open = joined ? false : true;
        else if (!joined)
            ri_open = false;
        after_zwj = cp == 0x200D;
        if (!joined)
            n++;
        prev = cp;
    }
    return n;
}

/* ---- errors and property paths ----------------------------------------- */

typedef struct path {
    char buf[MESSAGE_ERR_PROPERTY_MAX];
    size_t len;
} path;

/* Appends ".name" (or "name" at the root) and returns the old length. */
static size_t path_key(path *p, const char *name)
{
    size_t old = p->len;
    int w = snprintf(p->buf + p->len, sizeof p->buf - p->len, "%s%s", p->len ? "." : "", name);
    if (w > 0)
        p->len = p->len + (size_t)w < sizeof p->buf ? p->len + (size_t)w : sizeof p->buf - 1;
    return old;
}

static size_t path_index(path *p, size_t i)
{
    size_t old = p->len;
    int w = snprintf(p->buf + p->len, sizeof p->buf - p->len, "[%zu]", i);
    if (w > 0)
        p->len = p->len + (size_t)w < sizeof p->buf ? p->len + (size_t)w : sizeof p->buf - 1;
    return old;
}

static void path_restore(path *p, size_t old)
{
    p->len = old;
    p->buf[old] = '\0';
}

typedef struct vctx {
    message_error *err;
    path p;
} vctx;

static void KZ_PRINTF(3, 4) fail_at(vctx *v, const char *property, const char *fmt, ...)
{
    message_error *e = v->err;
    e->total++;
    if (e->n >= MESSAGE_ERR_MAX_DETAILS)
        return;
    message_detail *d = &e->details[e->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
    snprintf(d->property, sizeof d->property, "%s", property);
}

/* A problem with the current path + "." + key (key may be NULL: the path). */
static void KZ_PRINTF(3, 4) fail(vctx *v, const char *key, const char *fmt, ...)
{
    size_t old = v->p.len;
    if (key != NULL)
        path_key(&v->p, key);
    message_error *e = v->err;
    e->total++;
    if (e->n < MESSAGE_ERR_MAX_DETAILS) {
        message_detail *d = &e->details[e->n++];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->message, sizeof d->message, fmt, ap);
        va_end(ap);
        snprintf(d->property, sizeof d->property, "%s", v->p.buf);
    }
    path_restore(&v->p, old);
}

/* ---- typed property access --------------------------------------------- */

enum count_mode { COUNT_UTF16, COUNT_GRAPHEME };

/* The value of key, or NULL when absent or JSON null (LINE treats both as
 * "not given"). */
static json_object *get(json_object *o, const char *key)
{
    json_object *val = NULL;
    if (!json_object_object_get_ex(o, key, &val))
        return NULL;
    return val;
}

static bool present(json_object *o, const char *key)
{
    return get(o, key) != NULL;
}

/* Checks a string's length; 0 if fine. */
static int check_len(vctx *v, const char *key, const char *s, size_t len, size_t max,
                     enum count_mode mode)
{
    size_t n = mode == COUNT_UTF16 ? message_utf16_len(s, len) : message_grapheme_len(s, len);
    if (n == (size_t)-1) {
        fail(v, key, "Must be valid UTF-8 text");
        return -1;
    }
    if (n > max) {
        fail(v, key, "Length must be between 0 and %zu", max);
        return -1;
    }
    return 0;
}

/* An optional string: NULL when absent (no error) or not a string (error).
 * When given, its length is checked against max (max 0: unchecked). */
static const char *opt_str(vctx *v, json_object *o, const char *key, size_t max,
                           enum count_mode mode, size_t *len_out)
{
    json_object *val = get(o, key);
    if (val == NULL)
        return NULL;
    if (!json_object_is_type(val, json_type_string)) {
        fail(v, key, "Must be a string");
        return NULL;
    }
    const char *s = json_object_get_string(val);
    size_t len = (size_t)json_object_get_string_len(val);
    if (max > 0 && check_len(v, key, s, len, max, mode) != 0)
        return NULL;
    if (len_out != NULL)
        *len_out = len;
    return s;
}

/* A required string. allow_empty: "" is accepted (postback data may be
 * empty); otherwise "" is "May not be empty" like a missing one. */
static const char *req_str_ex(vctx *v, json_object *o, const char *key, size_t max,
                              enum count_mode mode, bool allow_empty, size_t *len_out)
{
    json_object *val = get(o, key);
    if (val == NULL) {
        fail(v, key, allow_empty ? "May not be null" : "May not be empty");
        return NULL;
    }
    if (!json_object_is_type(val, json_type_string)) {
        fail(v, key, "Must be a string");
        return NULL;
    }
    size_t len = (size_t)json_object_get_string_len(val);
    if (len == 0 && !allow_empty) {
        fail(v, key, "May not be empty");
        return NULL;
    }
    const char *s = json_object_get_string(val);
    if (max > 0 && check_len(v, key, s, len, max, mode) != 0)
        return NULL;
    if (len_out != NULL)
        *len_out = len;
    return s;
}

static const char *req_str(vctx *v, json_object *o, const char *key, size_t max,
                           enum count_mode mode)
{
    return req_str_ex(v, o, key, max, mode, false, NULL);
}

static json_object *req_obj(vctx *v, json_object *o, const char *key)
{
    json_object *val = get(o, key);
    if (val == NULL) {
        fail(v, key, "May not be null");
        return NULL;
    }
    if (!json_object_is_type(val, json_type_object)) {
        fail(v, key, "Must be an object");
        return NULL;
    }
    return val;
}

static json_object *opt_obj(vctx *v, json_object *o, const char *key)
{
    json_object *val = get(o, key);
    if (val != NULL && !json_object_is_type(val, json_type_object)) {
        fail(v, key, "Must be an object");
        return NULL;
    }
    return val;
}

/* An array with min..max elements; NULL (after an error) otherwise. A
 * missing array is "May not be empty". */
static json_object *req_array(vctx *v, json_object *o, const char *key, size_t min, size_t max)
{
    json_object *val = get(o, key);
    if (val == NULL) {
        fail(v, key, "May not be empty");
        return NULL;
    }
    if (!json_object_is_type(val, json_type_array)) {
        fail(v, key, "Must be an array");
        return NULL;
    }
    size_t n = json_object_array_length(val);
    if (n < min || n > max) {
        if (n == 0)
            fail(v, key, "May not be empty");
        else
            fail(v, key, "Size must be between %zu and %zu", min, max);
        return NULL;
    }
    return val;
}

static int req_int(vctx *v, json_object *o, const char *key, int64_t min, int64_t *out)
{
    json_object *val = get(o, key);
    if (val == NULL) {
        fail(v, key, "May not be null");
        return -1;
    }
    if (!json_object_is_type(val, json_type_int)) {
        fail(v, key, "Must be an integer");
        return -1;
    }
    int64_t x = json_object_get_int64(val);
    if (x < min) {
        fail(v, key, "Must be greater than or equal to %" PRId64, min);
        return -1;
    }
    if (out != NULL)
        *out = x;
    return 0;
}

static int req_number(vctx *v, json_object *o, const char *key, double min, double max)
{
    json_object *val = get(o, key);
    if (val == NULL) {
        fail(v, key, "May not be null");
        return -1;
    }
    if (!json_object_is_type(val, json_type_int) && !json_object_is_type(val, json_type_double)) {
        fail(v, key, "Must be a number");
        return -1;
    }
    double x = json_object_get_double(val);
    if (!(x >= min && x <= max)) {
        fail(v, key, "Must be between %g and %g", min, max);
        return -1;
    }
    return 0;
}

/* "Must be one of the following values: [a, b, c]" unless s is in values
 * (a NULL-terminated list). Returns the index or -1. */
static int check_enum(vctx *v, const char *key, const char *s, const char *const *values)
{
    for (int i = 0; values[i] != NULL; i++)
        if (strcmp(s, values[i]) == 0)
            return i;
    char list[MESSAGE_ERR_TEXT_MAX];
    size_t off = 0;
    for (int i = 0; values[i] != NULL && off < sizeof list; i++) {
        int w = snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", values[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    fail(v, key, "Must be one of the following values: [%s]", list);
    return -1;
}

static int opt_enum(vctx *v, json_object *o, const char *key, const char *const *values)
{
    const char *s = opt_str(v, o, key, 0, COUNT_UTF16, NULL);
    return s != NULL ? check_enum(v, key, s, values) : -1;
}

/* ---- URLs -------------------------------------------------------------- */

static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

/* Media and icon URLs: https with a host, at most URL_MAX characters. */
static void check_https(vctx *v, json_object *o, const char *key, bool required)
{
    size_t len = 0;
    const char *s = required ? req_str_ex(v, o, key, URL_MAX, COUNT_UTF16, false, &len)
                             : opt_str(v, o, key, URL_MAX, COUNT_UTF16, &len);
    if (s == NULL)
        return;
    if (!has_prefix_ci(s, len, "https://") || len == 8 || s[8] == '/')
        fail(v, key, "Must be an HTTPS URL (https://…)");
    else if (memchr(s, ' ', len) != NULL)
        fail(v, key, "Must be percent-encoded (no spaces)");
}

/* Action URIs: http, https, line or tel, at most URI_MAX characters. */
static void check_uri(vctx *v, json_object *o, const char *key, bool required)
{
    size_t len = 0;
    const char *s = required ? req_str_ex(v, o, key, URI_MAX, COUNT_UTF16, false, &len)
                             : opt_str(v, o, key, URI_MAX, COUNT_UTF16, &len);
    if (s == NULL)
        return;
    if (!has_prefix_ci(s, len, "http://") && !has_prefix_ci(s, len, "https://") &&
        !has_prefix_ci(s, len, "line://") && !has_prefix_ci(s, len, "tel:"))
        fail(v, key, "Must use one of the following schemes: [http, https, line, tel]");
    else if (memchr(s, ' ', len) != NULL)
        fail(v, key, "Must be percent-encoded (no spaces)");
}

/* ---- actions ----------------------------------------------------------- */

enum action_ctx {
    ACT_TEMPLATE,       /* buttons, confirm, carousel actions: label required, <= 20 */
    ACT_DEFAULT,        /* template defaultAction: label optional, <= 20 */
    ACT_IMAGE_CAROUSEL, /* image carousel column action: label optional, <= 12 */
    ACT_QUICK_REPLY,    /* quick reply button: label required, <= 20 */
    ACT_RICH_MENU       /* rich menu area: label optional, <= 20 */
};

static const char *const template_actions[] = {"postback",       "message",   "uri",
                                               "datetimepicker", "clipboard", NULL};
static const char *const quick_reply_actions[] = {"postback",       "message",   "uri",
                                                  "datetimepicker", "camera",    "cameraRoll",
                                                  "location",       "clipboard", NULL};
static const char *const rich_menu_actions[] = {
    "postback", "message",    "uri",      "datetimepicker", "richmenuswitch",
    "camera",   "cameraRoll", "location", "clipboard",      NULL};
/* Every action type kizuna knows, in the order of the enum below. */
static const char *const action_kinds[] = {
    "postback", "message",    "uri",      "datetimepicker", "clipboard",
    "camera",   "cameraRoll", "location", "richmenuswitch", NULL};
enum {
    A_POSTBACK,
    A_MESSAGE,
    A_URI,
    A_DATETIME,
    A_CLIPBOARD,
    A_CAMERA,
    A_CAMERA_ROLL,
    A_LOCATION,
    A_RICHMENU_SWITCH
};

static int action_kind(const char *type)
{
    for (int i = 0; action_kinds[i] != NULL; i++)
        if (strcmp(type, action_kinds[i]) == 0)
            return i;
    return -1;
}

/* Date/time values of a datetime picker, by mode: 0 ok. */
static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool is_date(const char *s)
{
    return strlen(s) == 10 && digits(s, 4) && s[4] == '-' && digits(s + 5, 2) && s[7] == '-' &&
           digits(s + 8, 2) && strncmp(s + 5, "01", 2) >= 0 && strncmp(s + 5, "12", 2) <= 0 &&
           strncmp(s + 8, "01", 2) >= 0 && strncmp(s + 8, "31", 2) <= 0 &&
           strncmp(s, "1900", 4) >= 0 && strncmp(s, "2100", 4) <= 0;
}

static bool is_time(const char *s)
{
    return strlen(s) == 5 && digits(s, 2) && s[2] == ':' && digits(s + 3, 2) &&
           strncmp(s, "23", 2) <= 0 && strncmp(s + 3, "59", 2) <= 0;
}

static bool is_datetime(const char *s)
{
    char d[11];
    if (strlen(s) != 16 || (s[10] != 'T' && s[10] != 't'))
        return false;
    memcpy(d, s, 10);
    d[10] = '\0';
    return is_date(d) && is_time(s + 11);
}

static void check_datetimepicker(vctx *v, json_object *a)
{
    static const char *const modes[] = {"date", "time", "datetime", NULL};
    static const char *const formats[] = {"yyyy-MM-dd", "HH:mm", "yyyy-MM-ddTHH:mm"};
    req_str_ex(v, a, "data", POSTBACK_DATA_MAX, COUNT_UTF16, true, NULL);
    const char *mode = req_str(v, a, "mode", 0, COUNT_UTF16);
    int m = mode != NULL ? check_enum(v, "mode", mode, modes) : -1;
    if (m < 0)
        return;
    const char *val[3] = {NULL, NULL, NULL};
    static const char *const keys[] = {"initial", "min", "max"};
    for (int k = 0; k < 3; k++) {
        const char *s = opt_str(v, a, keys[k], 0, COUNT_UTF16, NULL);
        if (s == NULL)
            continue;
        bool ok = m == 0 ? is_date(s) : m == 1 ? is_time(s) : is_datetime(s);
        if (!ok)
            fail(v, keys[k],
                 "Must be in the format %s for mode %s (within 1900-01-01 and "
                 "2100-12-31)",
                 formats[m], modes[m]);
        else
            val[k] = s;
    }
    /* Same-format values compare as text ('t' and 'T' aside). */
    if (val[1] != NULL && val[2] != NULL && strcasecmp(val[1], val[2]) >= 0)
        fail(v, "max", "Must be greater than min");
    if (val[0] != NULL && val[1] != NULL && strcasecmp(val[0], val[1]) < 0)
        fail(v, "initial", "Must be greater than or equal to min");
    if (val[0] != NULL && val[2] != NULL && strcasecmp(val[0], val[2]) > 0)
        fail(v, "initial", "Must be less than or equal to max");
}

/* One action object at the current path. */
static void check_action(vctx *v, json_object *a, enum action_ctx ctx)
{
    if (!json_object_is_type(a, json_type_object)) {
        fail(v, NULL, "Must be an object");
        return;
    }
    const char *type = req_str(v, a, "type", 0, COUNT_UTF16);
    if (type == NULL)
        return;
    const char *const *allowed = ctx == ACT_QUICK_REPLY ? quick_reply_actions
                                 : ctx == ACT_RICH_MENU ? rich_menu_actions
                                                        : template_actions;
    if (check_enum(v, "type", type, allowed) < 0)
        return;
    int t = action_kind(type);

    size_t label_max = ctx == ACT_IMAGE_CAROUSEL ? LABEL_IMAGE_CAROUSEL : LABEL_MAX;
    bool label_required = ctx == ACT_TEMPLATE || ctx == ACT_QUICK_REPLY;
    if (label_required)
        req_str(v, a, "label", label_max, COUNT_GRAPHEME);
    else
        opt_str(v, a, "label", label_max, COUNT_GRAPHEME, NULL);

    switch (t) {
    case A_POSTBACK: {
        static const char *const options[] = {"closeRichMenu", "openRichMenu", "openKeyboard",
                                              "openVoice", NULL};
        req_str_ex(v, a, "data", POSTBACK_DATA_MAX, COUNT_UTF16, true, NULL);
        opt_str(v, a, "displayText", ACTION_TEXT_MAX, COUNT_GRAPHEME, NULL);
        opt_str(v, a, "text", ACTION_TEXT_MAX, COUNT_GRAPHEME, NULL);
        if (present(a, "displayText") && present(a, "text"))
            fail(v, "text", "displayText and text cannot both be set");
        opt_enum(v, a, "inputOption", options);
        opt_str(v, a, "fillInText", ACTION_TEXT_MAX, COUNT_GRAPHEME, NULL);
        break;
    }
    case A_MESSAGE:
        req_str(v, a, "text", ACTION_TEXT_MAX, COUNT_GRAPHEME);
        break;
    case A_URI: {
        check_uri(v, a, "uri", true);
        json_object *alt = opt_obj(v, a, "altUri");
        if (alt != NULL) {
            size_t old = path_key(&v->p, "altUri");
            check_uri(v, alt, "desktop", false);
            path_restore(&v->p, old);
        }
        break;
    }
    case A_DATETIME:
        check_datetimepicker(v, a);
        break;
    case A_CLIPBOARD:
        req_str(v, a, "clipboardText", CLIPBOARD_MAX, COUNT_UTF16);
        break;
    case A_RICHMENU_SWITCH:
        req_str(v, a, "richMenuAliasId", RICH_MENU_ALIAS_MAX, COUNT_UTF16);
        req_str_ex(v, a, "data", POSTBACK_DATA_MAX, COUNT_UTF16, true, NULL);
        break;
    default: /* camera, cameraRoll, location: label only */
        break;
    }
}

/* key is an array of actions at the current path with min..max elements;
 * returns the count (or -1). */
static int check_actions(vctx *v, json_object *o, const char *key, size_t min, size_t max,
                         enum action_ctx ctx)
{
    json_object *arr = req_array(v, o, key, min, max);
    if (arr == NULL)
        return -1;
    size_t n = json_object_array_length(arr);
    size_t old = path_key(&v->p, key);
    for (size_t i = 0; i < n; i++) {
        size_t o2 = path_index(&v->p, i);
        check_action(v, json_object_array_get_idx(arr, i), ctx);
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
    return (int)n;
}

static void check_action_key(vctx *v, json_object *o, const char *key, bool required,
                             enum action_ctx ctx)
{
    json_object *a = required ? req_obj(v, o, key) : opt_obj(v, o, key);
    if (a == NULL)
        return;
    size_t old = path_key(&v->p, key);
    check_action(v, a, ctx);
    path_restore(&v->p, old);
}

/* ---- message types ----------------------------------------------------- */

/* UTF-16 unit at index idx of s is '$'. */
static bool dollar_at(const char *s, size_t len, int64_t idx)
{
    size_t i = 0;
    int64_t unit = 0;
    uint32_t cp;
    while (i < len) {
        size_t at = i;
        if (utf8_next((const unsigned char *)s, len, &i, &cp) != 0)
            return false;
        if (unit == idx)
            return s[at] == '$';
        unit += cp >= 0x10000 ? 2 : 1;
        if (unit > idx)
            return false;
    }
    return false;
}

static void check_text(vctx *v, json_object *m)
{
    size_t len = 0;
    const char *text = req_str_ex(v, m, "text", TEXT_MAX, COUNT_UTF16, false, &len);
    opt_str(v, m, "quoteToken", 0, COUNT_UTF16, NULL);
    if (!present(m, "emojis"))
        return;
    json_object *emojis = req_array(v, m, "emojis", 0, TEXT_EMOJIS_MAX);
    if (emojis == NULL)
        return;
    size_t old = path_key(&v->p, "emojis");
    for (size_t i = 0; i < json_object_array_length(emojis); i++) {
        json_object *e = json_object_array_get_idx(emojis, i);
        size_t o2 = path_index(&v->p, i);
        if (!json_object_is_type(e, json_type_object)) {
            fail(v, NULL, "Must be an object");
        } else {
            int64_t idx;
            if (req_int(v, e, "index", 0, &idx) == 0 && text != NULL && !dollar_at(text, len, idx))
                fail(v, "index", "Must be the position of a $ in text (UTF-16 units from 0)");
            req_str(v, e, "productId", 0, COUNT_UTF16);
            req_str(v, e, "emojiId", 0, COUNT_UTF16);
        }
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

static bool subst_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static void check_text_v2(vctx *v, json_object *m)
{
    static const char *const subst_types[] = {"mention", "emoji", NULL};
    static const char *const mentionee_types[] = {"user", "all", NULL};
    size_t len = 0;
    const char *text = req_str_ex(v, m, "text", TEXT_MAX, COUNT_UTF16, false, &len);
    opt_str(v, m, "quoteToken", 0, COUNT_UTF16, NULL);
    json_object *subst = opt_obj(v, m, "substitution");
    if (subst != NULL) {
        if ((size_t)json_object_object_length(subst) > SUBST_MAX)
            fail(v, "substitution", "Size must be between 0 and %d", SUBST_MAX);
        size_t old = path_key(&v->p, "substitution");
        json_object_object_foreach(subst, key, val)
        {
            size_t o2 = path_key(&v->p, key);
            if (!subst_key_ok(key)) {
                fail(v, NULL, "Key must match \"^[0-9a-zA-Z_]{1,20}$\"");
            } else if (val == NULL || !json_object_is_type(val, json_type_object)) {
                fail(v, NULL, "Must be an object");
            } else {
                const char *t = req_str(v, val, "type", 0, COUNT_UTF16);
                int ti = t != NULL ? check_enum(v, "type", t, subst_types) : -1;
                if (ti == 0) {
                    json_object *who = req_obj(v, val, "mentionee");
                    if (who != NULL) {
                        size_t o3 = path_key(&v->p, "mentionee");
                        const char *wt = req_str(v, who, "type", 0, COUNT_UTF16);
                        if (wt != NULL && check_enum(v, "type", wt, mentionee_types) == 0)
                            req_str(v, who, "userId", 0, COUNT_UTF16);
                        path_restore(&v->p, o3);
                    }
                } else if (ti == 1) {
                    req_str(v, val, "productId", 0, COUNT_UTF16);
                    req_str(v, val, "emojiId", 0, COUNT_UTF16);
                }
            }
            path_restore(&v->p, o2);
        }
        path_restore(&v->p, old);
    }
    if (text == NULL)
        return;
    /* Placeholders: {key} must have a substitution; {{ and }} are literal
     * braces; braces must pair. */
    int mentions = 0, emojis = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '}') {
            if (i + 1 < len && text[i + 1] == '}') {
                i++;
                continue;
            }
            fail(v, "text", "Unmatched } (write }} for a literal brace)");
            return;
        }
        if (text[i] != '{')
            continue;
        if (i + 1 < len && text[i + 1] == '{') {
            i++;
            continue;
        }
        const char *close = memchr(text + i + 1, '}', len - i - 1);
        if (close == NULL) {
            fail(v, "text", "Unmatched { (write {{ for a literal brace)");
            return;
        }
        size_t klen = (size_t)(close - (text + i + 1));
        char key[64];
        if (klen == 0 || klen >= sizeof key) {
            fail(v, "text", "Placeholder {%.*s} is not a valid key", (int)(klen < 40 ? klen : 40),
                 text + i + 1);
            return;
        }
        memcpy(key, text + i + 1, klen);
        key[klen] = '\0';
        json_object *s = subst != NULL ? get(subst, key) : NULL;
        json_object *st =
            s != NULL && json_object_is_type(s, json_type_object) ? get(s, "type") : NULL;
        if (s == NULL) {
            fail(v, "text", "Placeholder {%s} has no entry in substitution", key);
        } else if (st != NULL && json_object_is_type(st, json_type_string)) {
            if (strcmp(json_object_get_string(st), "mention") == 0)
                mentions++;
            else if (strcmp(json_object_get_string(st), "emoji") == 0)
                emojis++;
        }
        i += klen + 1;
    }
    if (mentions > SUBST_MENTIONS_MAX)
        fail(v, "text", "At most %d mentions may be substituted in one message",
             SUBST_MENTIONS_MAX);
    if (emojis > SUBST_EMOJIS_MAX)
        fail(v, "text", "At most %d emoji may be substituted in one message", SUBST_EMOJIS_MAX);
}

static void check_sticker(vctx *v, json_object *m)
{
    req_str(v, m, "packageId", 0, COUNT_UTF16);
    req_str(v, m, "stickerId", 0, COUNT_UTF16);
    opt_str(v, m, "quoteToken", 0, COUNT_UTF16, NULL);
}

static void check_image(vctx *v, json_object *m)
{
    check_https(v, m, "originalContentUrl", true);
    check_https(v, m, "previewImageUrl", true);
}

static void check_video(vctx *v, json_object *m)
{
    check_https(v, m, "originalContentUrl", true);
    check_https(v, m, "previewImageUrl", true);
    size_t len = 0;
    const char *id = opt_str(v, m, "trackingId", TRACKING_ID_MAX, COUNT_UTF16, &len);
    if (id != NULL) {
        static const char allowed[] = "-.=,+*()%$&;:@{}!?<>[]";
        for (size_t i = 0; i < len; i++) {
            char c = id[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr(allowed, c) != NULL))) {
                fail(v, "trackingId", "May contain only a-z, A-Z, 0-9 and %s", allowed);
                break;
            }
        }
    }
}

static void check_audio(vctx *v, json_object *m)
{
    check_https(v, m, "originalContentUrl", true);
    req_int(v, m, "duration", 1, NULL);
}

static void check_location(vctx *v, json_object *m)
{
    req_str(v, m, "title", LOCATION_TEXT_MAX, COUNT_UTF16);
    req_str(v, m, "address", LOCATION_TEXT_MAX, COUNT_UTF16);
    req_number(v, m, "latitude", -90, 90);
    req_number(v, m, "longitude", -180, 180);
}

static void check_area(vctx *v, json_object *o, const char *key)
{
    json_object *area = req_obj(v, o, key);
    if (area == NULL)
        return;
    size_t old = path_key(&v->p, key);
    req_int(v, area, "x", 0, NULL);
    req_int(v, area, "y", 0, NULL);
    req_int(v, area, "width", 1, NULL);
    req_int(v, area, "height", 1, NULL);
    path_restore(&v->p, old);
}

static void check_imagemap(vctx *v, json_object *m)
{
    static const char *const types[] = {"uri", "message", "clipboard", NULL};
    check_https(v, m, "baseUrl", true);
    req_str(v, m, "altText", ALT_TEXT_MAX, COUNT_UTF16);
    json_object *size = req_obj(v, m, "baseSize");
    if (size != NULL) {
        size_t old = path_key(&v->p, "baseSize");
        int64_t w;
        if (req_int(v, size, "width", 1, &w) == 0 && w != IMAGEMAP_BASE_WIDTH)
            fail(v, "width", "Must be %d", IMAGEMAP_BASE_WIDTH);
        req_int(v, size, "height", 1, NULL);
        path_restore(&v->p, old);
    }
    json_object *video = opt_obj(v, m, "video");
    if (video != NULL) {
        size_t old = path_key(&v->p, "video");
        check_https(v, video, "originalContentUrl", true);
        check_https(v, video, "previewImageUrl", true);
        check_area(v, video, "area");
        json_object *link = opt_obj(v, video, "externalLink");
        if (link != NULL) {
            size_t o2 = path_key(&v->p, "externalLink");
            check_uri(v, link, "linkUri", true);
            req_str(v, link, "label", IMAGEMAP_LINK_LABEL, COUNT_UTF16);
            path_restore(&v->p, o2);
        }
        path_restore(&v->p, old);
    }
    json_object *actions = req_array(v, m, "actions", 1, IMAGEMAP_ACTIONS_MAX);
    if (actions == NULL)
        return;
    size_t old = path_key(&v->p, "actions");
    for (size_t i = 0; i < json_object_array_length(actions); i++) {
        json_object *a = json_object_array_get_idx(actions, i);
        size_t o2 = path_index(&v->p, i);
        const char *t = NULL;
        if (!json_object_is_type(a, json_type_object))
            fail(v, NULL, "Must be an object");
        else if ((t = req_str(v, a, "type", 0, COUNT_UTF16)) != NULL) {
            int ti = check_enum(v, "type", t, types);
            opt_str(v, a, "label", IMAGEMAP_LABEL_MAX, COUNT_UTF16, NULL);
            if (ti == 0)
                check_uri(v, a, "linkUri", true);
            else if (ti == 1)
                req_str(v, a, "text", IMAGEMAP_TEXT_MAX, COUNT_UTF16);
            else if (ti == 2)
                req_str(v, a, "clipboardText", CLIPBOARD_MAX, COUNT_UTF16);
            check_area(v, a, "area");
        }
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

static const char *const aspect_ratios[] = {"rectangle", "square", NULL};
static const char *const image_sizes[] = {"cover", "contain", NULL};

static void check_buttons(vctx *v, json_object *t)
{
    check_https(v, t, "thumbnailImageUrl", false);
    opt_enum(v, t, "imageAspectRatio", aspect_ratios);
    opt_enum(v, t, "imageSize", image_sizes);
    opt_str(v, t, "imageBackgroundColor", 0, COUNT_UTF16, NULL);
    opt_str(v, t, "title", BUTTONS_TITLE_MAX, COUNT_GRAPHEME, NULL);
    bool short_text = present(t, "thumbnailImageUrl") || present(t, "title");
    req_str(v, t, "text", short_text ? BUTTONS_TEXT_SHORT : BUTTONS_TEXT_MAX, COUNT_GRAPHEME);
    check_action_key(v, t, "defaultAction", false, ACT_DEFAULT);
    check_actions(v, t, "actions", 1, BUTTONS_ACTIONS_MAX, ACT_TEMPLATE);
}

static void check_confirm(vctx *v, json_object *t)
{
    req_str(v, t, "text", CONFIRM_TEXT_MAX, COUNT_GRAPHEME);
    check_actions(v, t, "actions", 2, 2, ACT_TEMPLATE);
}

static void check_carousel(vctx *v, json_object *t)
{
    opt_enum(v, t, "imageAspectRatio", aspect_ratios);
    opt_enum(v, t, "imageSize", image_sizes);
    json_object *cols = req_array(v, t, "columns", 1, CAROUSEL_COLUMNS_MAX);
    if (cols == NULL)
        return;
    size_t old = path_key(&v->p, "columns");
    int first_actions = -1;
    bool first_image = false, first_title = false;
    for (size_t i = 0; i < json_object_array_length(cols); i++) {
        json_object *c = json_object_array_get_idx(cols, i);
        size_t o2 = path_index(&v->p, i);
        if (!json_object_is_type(c, json_type_object)) {
            fail(v, NULL, "Must be an object");
            path_restore(&v->p, o2);
            continue;
        }
        check_https(v, c, "thumbnailImageUrl", false);
        opt_str(v, c, "imageBackgroundColor", 0, COUNT_UTF16, NULL);
        opt_str(v, c, "title", BUTTONS_TITLE_MAX, COUNT_GRAPHEME, NULL);
        bool image = present(c, "thumbnailImageUrl"), title = present(c, "title");
        req_str(v, c, "text", image || title ? BUTTONS_TEXT_SHORT : CAROUSEL_TEXT_MAX,
                COUNT_GRAPHEME);
        check_action_key(v, c, "defaultAction", false, ACT_DEFAULT);
        int n = check_actions(v, c, "actions", 1, CAROUSEL_ACTIONS_MAX, ACT_TEMPLATE);
        if (i == 0) {
            first_actions = n;
            first_image = image;
            first_title = title;
        } else {
            if (n >= 0 && first_actions >= 0 && n != first_actions)
                fail(v, "actions", "Must have the same number of actions as columns[0] (%d)",
                     first_actions);
            if (image != first_image)
                fail(v, "thumbnailImageUrl",
                     "Must be set in every column or in none (columns[0] %s one)",
                     first_image ? "has" : "has no");
            if (title != first_title)
                fail(v, "title", "Must be set in every column or in none (columns[0] %s one)",
                     first_title ? "has" : "has no");
        }
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

static void check_image_carousel(vctx *v, json_object *t)
{
    json_object *cols = req_array(v, t, "columns", 1, CAROUSEL_COLUMNS_MAX);
    if (cols == NULL)
        return;
    size_t old = path_key(&v->p, "columns");
    for (size_t i = 0; i < json_object_array_length(cols); i++) {
        json_object *c = json_object_array_get_idx(cols, i);
        size_t o2 = path_index(&v->p, i);
        if (!json_object_is_type(c, json_type_object)) {
            fail(v, NULL, "Must be an object");
        } else {
            check_https(v, c, "imageUrl", true);
            check_action_key(v, c, "action", true, ACT_IMAGE_CAROUSEL);
        }
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

static void check_template(vctx *v, json_object *m)
{
    static const char *const types[] = {"buttons", "confirm", "carousel", "image_carousel", NULL};
    req_str(v, m, "altText", ALT_TEXT_MAX, COUNT_UTF16);
    json_object *t = req_obj(v, m, "template");
    if (t == NULL)
        return;
    size_t old = path_key(&v->p, "template");
    const char *type = req_str(v, t, "type", 0, COUNT_UTF16);
    switch (type != NULL ? check_enum(v, "type", type, types) : -1) {
    case 0:
        check_buttons(v, t);
        break;
    case 1:
        check_confirm(v, t);
        break;
    case 2:
        check_carousel(v, t);
        break;
    case 3:
        check_image_carousel(v, t);
        break;
    default:
        break;
    }
    path_restore(&v->p, old);
}

/* Bytes of o as compact JSON (how its size is measured against LINE's
 * 30 KB / 50 KB limits). */
static size_t json_bytes(json_object *o)
{
    size_t n = 0;
    json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                      &n);
    return n;
}

static const char *const bubble_sizes[] = {"nano", "micro", "deca", "hecto",
                                           "kilo", "mega",  "giga", NULL};

/* A bubble's type, size and JSON size (30 KB, also inside a carousel);
 * returns its size index (mega if absent) or -1. */
static int check_bubble(vctx *v, json_object *b)
{
    static const char *const bubble_only[] = {"bubble", NULL};
    if (!json_object_is_type(b, json_type_object)) {
        fail(v, NULL, "Must be an object");
        return -1;
    }
    const char *type = req_str(v, b, "type", 0, COUNT_UTF16);
    if (type == NULL || check_enum(v, "type", type, bubble_only) < 0)
        return -1;
    int size = 5;
    if (present(b, "size") && (size = opt_enum(v, b, "size", bubble_sizes)) < 0)
        return -1;
    if (json_bytes(b) > FLEX_BUBBLE_BYTES)
        fail(v, NULL, "JSON size must be at most 30 KB (%d bytes)", FLEX_BUBBLE_BYTES);
    return size;
}

static void check_flex(vctx *v, json_object *m)
{
    static const char *const containers[] = {"bubble", "carousel", NULL};
    req_str(v, m, "altText", ALT_TEXT_MAX, COUNT_UTF16);
    json_object *c = req_obj(v, m, "contents");
    if (c == NULL)
        return;
    size_t old = path_key(&v->p, "contents");
    const char *type = req_str(v, c, "type", 0, COUNT_UTF16);
    int t = type != NULL ? check_enum(v, "type", type, containers) : -1;
    if (t == 0) {
        check_bubble(v, c);
    } else if (t == 1) {
        if (json_bytes(c) > FLEX_CAROUSEL_BYTES)
            fail(v, NULL, "JSON size must be at most 50 KB (%d bytes)", FLEX_CAROUSEL_BYTES);
        json_object *bubbles = req_array(v, c, "contents", 1, FLEX_CAROUSEL_MAX);
        if (bubbles != NULL) {
            size_t o2 = path_key(&v->p, "contents");
            int first = -1;
            for (size_t i = 0; i < json_object_array_length(bubbles); i++) {
                size_t o3 = path_index(&v->p, i);
                int size = check_bubble(v, json_object_array_get_idx(bubbles, i));
                if (i == 0)
                    first = size;
                else if (size >= 0 && first >= 0 && size != first)
                    fail(v, "size", "Must be the same in every bubble of a carousel (%s)",
                         bubble_sizes[first]);
                path_restore(&v->p, o3);
            }
            path_restore(&v->p, o2);
        }
    }
    path_restore(&v->p, old);
}

static void check_coupon(vctx *v, json_object *m)
{
    req_str(v, m, "couponId", 0, COUNT_UTF16);
    opt_str(v, m, "deliveryTag", COUPON_TAG_MAX, COUNT_UTF16, NULL);
}

/* ---- common properties ------------------------------------------------- */

static void check_quick_reply(vctx *v, json_object *m)
{
    static const char *const item_types[] = {"action", NULL};
    json_object *qr = opt_obj(v, m, "quickReply");
    if (qr == NULL)
        return;
    size_t old = path_key(&v->p, "quickReply");
    json_object *items = req_array(v, qr, "items", 1, QUICK_REPLY_MAX);
    if (items != NULL) {
        size_t o2 = path_key(&v->p, "items");
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *it = json_object_array_get_idx(items, i);
            size_t o3 = path_index(&v->p, i);
            if (!json_object_is_type(it, json_type_object)) {
                fail(v, NULL, "Must be an object");
            } else {
                const char *t = req_str(v, it, "type", 0, COUNT_UTF16);
                if (t != NULL)
                    check_enum(v, "type", t, item_types);
                check_https(v, it, "imageUrl", false);
                check_action_key(v, it, "action", true, ACT_QUICK_REPLY);
            }
            path_restore(&v->p, o3);
        }
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

/* "LINE" as a word, any case: LINE reserves it in sender names. */
static bool has_word_line(const char *s)
{
    for (const char *p = s; (p = strcasestr(p, "line")) != NULL; p++) {
        bool start = p == s || !((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'));
        char e = p[4];
        bool end = !((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'));
        if (start && end)
            return true;
    }
    return false;
}

static void check_sender(vctx *v, json_object *m)
{
    json_object *s = opt_obj(v, m, "sender");
    if (s == NULL)
        return;
    size_t old = path_key(&v->p, "sender");
    const char *name = opt_str(v, s, "name", SENDER_NAME_MAX, COUNT_UTF16, NULL);
    if (name != NULL && has_word_line(name))
        fail(v, "name", "May not contain the word LINE");
    check_https(v, s, "iconUrl", false);
    path_restore(&v->p, old);
}

/* ---- entry points ------------------------------------------------------ */

static const char *const message_types[] = {"text",     "image",   "video",    "audio",
                                            "location", "sticker", "template", "imagemap",
                                            "flex",     "textV2",  "coupon",   NULL};
typedef void (*check_fn)(vctx *, json_object *);
static const check_fn checks[] = {check_text,     check_image,   check_video,    check_audio,
                                  check_location, check_sticker, check_template, check_imagemap,
                                  check_flex,     check_text_v2, check_coupon};

static void check_message(vctx *v, json_object *m)
{
    if (!json_object_is_type(m, json_type_object)) {
        fail(v, NULL, "Must be an object");
        return;
    }
    const char *type = req_str(v, m, "type", 0, COUNT_UTF16);
    int t = type != NULL ? check_enum(v, "type", type, message_types) : -1;
    if (t >= 0)
        checks[t](v, m);
    check_quick_reply(v, m);
    check_sender(v, m);
}

static void finish(message_error *e)
{
    if (e->total > 0)
        snprintf(e->message, sizeof e->message, "The request body has %zu error(s)", e->total);
}

static void check_messages(vctx *v, json_object *arr, int max)
{
    if (arr == NULL) {
        fail(v, NULL, "May not be empty");
        return;
    }
    if (!json_object_is_type(arr, json_type_array)) {
        fail(v, NULL, "Must be an array");
        return;
    }
    size_t n = json_object_array_length(arr);
    if (n < 1 || n > (size_t)max) {
        fail(v, NULL, "Size must be between 1 and %d", max);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t old = path_index(&v->p, i);
        check_message(v, json_object_array_get_idx(arr, i));
        path_restore(&v->p, old);
    }
}

/* Parses text[len] entirely; on a syntax error fills e and returns
 * KZ_EINVAL. */
static int parse(const char *text, size_t len, json_object **out, message_error *e)
{
    *out = NULL;
    if (text == NULL || len == 0 || len > INT32_MAX) {
        snprintf(e->message, sizeof e->message,
                 "The request body could not be parsed as JSON (line: 1, column: 1)");
        return KZ_EINVAL;
    }
    json_tokener *tok = json_tokener_new_ex(PARSE_DEPTH);
    if (tok == NULL)
        return KZ_ENOMEM;
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (root != NULL && jerr == json_tokener_success) {
        while (end < len &&
               (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' || text[end] == '\r'))
            end++;
        if (end == len) {
            *out = root;
            return 0;
        }
    }
    json_object_put(root);
    size_t line = 1, col = 1;
    for (size_t i = 0; i < end && i < len; i++) {
        if (text[i] == '\n')
            line++, col = 1;
        else
            col++;
    }
    snprintf(e->message, sizeof e->message,
             "The request body could not be parsed as JSON (line: %zu, column: %zu)", line, col);
    return KZ_EINVAL;
}

int message_parse_body(const char *text, size_t len, json_object **out, message_error *e)
{
    memset(e, 0, sizeof *e);
    return parse(text, len, out, e);
}

/* canon (may be NULL): the messages' compact rendering when they are
 * valid, malloc'ed (the tree is parsed once for both). */
static int run(const char *json, size_t len, int max, message_error *out, bool request,
               char **canon)
{
    message_error local;
    message_error *e = out != NULL ? out : &local;
    memset(e, 0, sizeof *e);
    if (max <= 0)
        max = MESSAGE_MAX_PER_REQUEST;
    json_object *root;
    int rc = parse(json, len, &root, e);
    if (rc != 0)
        return rc;
    vctx v = {.err = e};
    path_key(&v.p, "messages");
    if (!request) {
        check_messages(&v, root, max);
    } else if (!json_object_is_type(root, json_type_object)) {
        fail_at(&v, "", "The request body must be a JSON object");
    } else {
        check_messages(&v, get(root, "messages"), max);
    }
    finish(e);
    rc = e->total > 0 ? KZ_EINVAL : 0;
    if (rc == 0 && canon != NULL) {
        const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                                    JSON_C_TO_STRING_NOSLASHESCAPE);
        if (text == NULL || (*canon = strdup(text)) == NULL)
            rc = KZ_ENOMEM;
    }
    json_object_put(root);
    return rc;
}

int message_validate(const char *json, size_t len, int max_messages, message_error *out)
{
    return run(json, len, max_messages, out, false, NULL);
}

int message_validate_render(const char *json, size_t len, int max_messages, char **canon,
                            message_error *out)
{
    *canon = NULL;
    return run(json, len, max_messages, out, false, canon);
}

int message_validate_request(const char *body, size_t len, int max_messages, message_error *out)
{
    return run(body, len, max_messages, out, true, NULL);
}

/* ---- rich menus -------------------------------------------------------- */

/* size: LINE's image rules (width 800..2500, height >= 250, width/height
 * >= 1.45). LINE's wording for the last two is not published: the texts
 * are kizuna's, in LINE's style. */
static bool check_rich_menu_size(vctx *v, json_object *size, int64_t *w, int64_t *h)
{
    size_t old = path_key(&v->p, "size");
    int bad = req_int(v, size, "width", 1, w) | req_int(v, size, "height", 1, h);
    if (bad == 0 && (*w < RICH_MENU_WIDTH_MIN || *w > RICH_MENU_WIDTH_MAX)) {
        fail(v, "width", "Must be between %d and %d", RICH_MENU_WIDTH_MIN, RICH_MENU_WIDTH_MAX);
        bad = -1;
    }
    if (bad == 0 && *h < RICH_MENU_HEIGHT_MIN) {
        fail(v, "height", "Must be greater than or equal to %d", RICH_MENU_HEIGHT_MIN);
        bad = -1;
    }
    if (bad == 0 && *w * 100 < *h * 145) {
        fail(v, NULL, "The aspect ratio (width / height) must be at least 1.45");
        bad = -1;
    }
    path_restore(&v->p, old);
    return bad == 0;
}

/* One area: bounds inside the menu (when its size is known) and an action. */
static void check_rich_menu_area(vctx *v, json_object *area, int64_t w, int64_t h)
{
    if (!json_object_is_type(area, json_type_object)) {
        fail(v, NULL, "Must be an object");
        return;
    }
    json_object *b = req_obj(v, area, "bounds");
    if (b != NULL) {
        size_t old = path_key(&v->p, "bounds");
        int64_t x = 0, y = 0, bw = 0, bh = 0;
        int bad = req_int(v, b, "x", 0, &x) | req_int(v, b, "y", 0, &y) |
                  req_int(v, b, "width", 1, &bw) | req_int(v, b, "height", 1, &bh);
        if (bad == 0 && w > 0 && (x + bw > w || y + bh > h))
            fail(v, NULL, "The area must lie within the rich menu (%" PRId64 "x%" PRId64 ")", w, h);
        path_restore(&v->p, old);
    }
    check_action_key(v, area, "action", true, ACT_RICH_MENU);
}

static void check_rich_menu(vctx *v, json_object *root)
{
    int64_t w = 0, h = 0;
    json_object *size = req_obj(v, root, "size");
    if (size != NULL && !check_rich_menu_size(v, size, &w, &h))
        w = h = 0;
    json_object *sel = get(root, "selected");
    if (sel == NULL)
        fail(v, "selected", "May not be null");
    else if (!json_object_is_type(sel, json_type_boolean))
        fail(v, "selected", "Must be a boolean");
    req_str(v, root, "name", RICH_MENU_NAME_MAX, COUNT_UTF16);
    req_str(v, root, "chatBarText", RICH_MENU_CHAT_BAR_MAX, COUNT_UTF16);
    json_object *areas = get(root, "areas");
    if (areas == NULL) {
        fail(v, "areas", "May not be null");
        return;
    }
    if (!json_object_is_type(areas, json_type_array)) {
        fail(v, "areas", "Must be an array");
        return;
    }
    size_t n = json_object_array_length(areas);
    if (n > RICH_MENU_AREAS_MAX) {
        fail(v, "areas", "Size must be between 0 and %d", RICH_MENU_AREAS_MAX);
        return;
    }
    size_t old = path_key(&v->p, "areas");
    for (size_t i = 0; i < n; i++) {
        size_t o2 = path_index(&v->p, i);
        check_rich_menu_area(v, json_object_array_get_idx(areas, i), w, h);
        path_restore(&v->p, o2);
    }
    path_restore(&v->p, old);
}

int message_validate_rich_menu(const char *body, size_t len, message_error *out)
{
    message_error local;
    message_error *e = out != NULL ? out : &local;
    memset(e, 0, sizeof *e);
    json_object *root;
    int rc = parse(body, len, &root, e);
    if (rc != 0)
        return rc;
    vctx v = {.err = e};
    if (!json_object_is_type(root, json_type_object))
        fail_at(&v, "", "The request body must be a JSON object");
    else
        check_rich_menu(&v, root);
    json_object_put(root);
    finish(e);
    return e->total > 0 ? KZ_EINVAL : 0;
}

/* ---- rendering --------------------------------------------------------- */

typedef struct sbuf {
    char *buf;
    size_t cap, len; /* len counts every byte wanted, even past cap */
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->len < b->cap) {
        size_t room = b->cap - 1 - b->len;
        memcpy(b->buf + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_json_str(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    put(b, "\"", 1);
}

static size_t done(sbuf *b)
{
    if (b->cap > 0)
        b->buf[b->len < b->cap ? b->len : b->cap - 1] = '\0';
    return b->len;
}

size_t message_error_json(const message_error *e, char *buf, size_t buflen)
{
    sbuf b = {buf, buflen, 0};
    puts_(&b, "{\"message\":");
    put_json_str(&b, e->message);
    if (e->n > 0) {
        puts_(&b, ",\"details\":[");
        for (size_t i = 0; i < e->n; i++) {
            puts_(&b, i ? ",{\"message\":" : "{\"message\":");
            put_json_str(&b, e->details[i].message);
            puts_(&b, ",\"property\":");
            put_json_str(&b, e->details[i].property);
            puts_(&b, "}");
        }
        puts_(&b, "]");
    }
    puts_(&b, "}");
    return done(&b);
}

size_t message_error_line(const message_error *e, char *buf, size_t buflen)
{
    sbuf b = {buf, buflen, 0};
    puts_(&b, e->message);
    for (size_t i = 0; i < e->n; i++) {
        puts_(&b, i ? "; " : ": ");
        if (e->details[i].property[0] != '\0') {
            puts_(&b, e->details[i].property);
            puts_(&b, ": ");
        }
        puts_(&b, e->details[i].message);
    }
    if (e->total > e->n) {
        char more[48];
        snprintf(more, sizeof more, "; and %zu more", e->total - e->n);
        puts_(&b, more);
    }
    return done(&b);
}
