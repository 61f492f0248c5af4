/*
 * kizuna SDK — building LINE messages.
 *
 * LINE messages cross the ABI as JSON text: the `messages` array of LINE's
 * send endpoints, e.g.
 *   [{"type":"text","text":"Thanks!","quickReply":{"items":[...]}}]
 * These inline helpers build that array safely (correct JSON escaping, valid
 * UTF-8, LINE's counts) without a JSON library and without malloc:
 *
 *   char buf[8192];
 *   kz_msgs m;
 *   kz_msgs_init(&m, buf, sizeof buf);
 *   kz_msgs_text(&m, "ご注文ありがとうございます!");
 *   kz_action items[2];
 *   items[0] = kz_action_postback("Good", "survey=1&a=good", "Good");
 *   items[1] = kz_action_postback("Bad", "survey=1&a=bad", "Bad");
 *   kz_msgs_quick_reply(&m, items, 2);
 *   size_t len;
 *   const char *json = kz_msgs_json(&m, &len);   // "[{...}]"
 *
 * Memory: the caller supplies the buffer (stack, static or heap) and owns
 * it; a kz_msgs only points into it. Nothing is allocated, nothing needs
 * freeing. A buffer too small for the next message gives KZ_ETOOBIG.
 *
 * Errors: every function returns 0 or a negative KZ_E* code (kizuna/host.h):
 * KZ_EINVAL for NULL or empty required arguments, text that is not valid
 * UTF-8, an action that is not allowed where it is used; KZ_ETOOBIG for a
 * 6th message, more than 4 buttons, 13 quick-reply items or 20 emoji, text
 * over 5000 UTF-16 units, or a full buffer. A failed call leaves the array
 * exactly as it was, so you can go on (or send what you have).
 *
 * What is checked here is only what the builder can see cheaply. The host
 * validates every message against all of LINE's rules (lengths of labels and
 * alt texts, URL schemes, flex sizes, …; see docs/messages.md) before it
 * queues it, and refuses a bad one with LINE's own error text.
 *
 * Sending: the array is what the host's LINE client takes (reply, push,
 * multicast, broadcast). That client arrives with ABI 1.1; until then these
 * helpers build and test messages (e.g. in unit tests with testing.h).
 *
 * Thread: any; a kz_msgs is used by one thread at a time.
 * Since: ABI 1.1 (header-only: usable with any host, no host slot needed).
 */
#ifndef KIZUNA_MESSAGE_H
#define KIZUNA_MESSAGE_H

#include <stddef.h>
#include <string.h>

#include <kizuna/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LINE's limits the builder enforces. */
#define KZ_MSGS_MAX 5              /* messages per request */
#define KZ_MSGS_TEXT_MAX 5000      /* text length, UTF-16 code units */
#define KZ_MSGS_EMOJI_MAX 20       /* LINE emoji in one text message */
#define KZ_MSGS_BUTTONS_MAX 4      /* actions of a buttons template */
#define KZ_MSGS_QUICK_REPLY_MAX 13 /* quick reply buttons */

/* A messages array under construction. Treat the fields as private. */
typedef struct kz_msgs {
    char *buf;    /* caller's buffer; always holds a valid, NUL-terminated array */
    size_t cap;   /* its size in bytes */
    size_t len;   /* length of the JSON text in buf */
    int count;    /* messages added */
    int has_qr;   /* the last message has a quick reply */
    int has_from; /* the last message has a sender */
} kz_msgs;

/* Action types for kz_action. */
enum {
    KZ_ACTION_POSTBACK = 1, /* postback event with data */
    KZ_ACTION_MESSAGE,      /* the user sends text */
    KZ_ACTION_URI,          /* opens a URI (http, https, line, tel) */
    KZ_ACTION_DATETIME,     /* date/time picker, postback with params */
    KZ_ACTION_CLIPBOARD,    /* copies text to the clipboard */
    KZ_ACTION_CAMERA,       /* quick reply only */
    KZ_ACTION_CAMERA_ROLL,  /* quick reply only */
    KZ_ACTION_LOCATION      /* quick reply only */
};

/* An action (a button). Build one with the kz_action_* helpers below; the
 * strings are only read when the action is written into a kz_msgs, so they
 * need to live until that call returns. */
typedef struct kz_action {
    int type;                 /* KZ_ACTION_* */
    const char *label;        /* button label (LINE: <= 20 characters, 12 in image carousel) */
    const char *data;         /* postback/datetime data, message text, URI or clipboard text */
    const char *display_text; /* postback: text shown as the user's message, or NULL */
    const char *mode;         /* datetime: "date", "time" or "datetime" */
    const char *image_url;    /* quick reply only: icon URL (https, PNG), or NULL */
} kz_action;

/* A LINE emoji for kz_msgs_text_emoji. */
#define KZ_EMOJI_AUTO (-1)
typedef struct kz_emoji {
    int index;              /* UTF-16 index of its '$' in the text, or KZ_EMOJI_AUTO:
                               the first '$' after the previous emoji's */
    const char *product_id; /* e.g. "5ac1bfd5040ab15980c9b435" */
    const char *emoji_id;   /* e.g. "001" */
} kz_emoji;

/* ---- private helpers (names may change; don't call them) -------------- */

typedef struct kz_msgs_priv_w {
    kz_msgs *b;
    size_t mark;  /* len before this call */
    char tail[2]; /* the two bytes before mark, restored on failure */
    int err;
} kz_msgs_priv_w;

static inline int kz_msgs_priv_start(kz_msgs_priv_w *w, kz_msgs *b)
{
    w->b = b;
    w->err = 0;
    if (b == NULL || b->buf == NULL || b->len < 2)
        return KZ_EINVAL;
    w->mark = b->len;
    w->tail[0] = b->buf[b->len - 2];
    w->tail[1] = b->buf[b->len - 1];
    return 0;
}

/* Undo everything written since start; returns err. */
static inline int kz_msgs_priv_abort(kz_msgs_priv_w *w, int err)
{
    kz_msgs *b = w->b;
    b->len = w->mark;
    b->buf[b->len - 2] = w->tail[0];
    b->buf[b->len - 1] = w->tail[1];
    b->buf[b->len] = '\0';
    return err;
}

static inline void kz_msgs_priv_raw(kz_msgs_priv_w *w, const char *s, size_t n)
{
    kz_msgs *b = w->b;
    if (w->err != 0)
        return;
    /* keep room for the closing "]" and the NUL */
    if (b->len + 2 > b->cap || n > b->cap - b->len - 2) {
        w->err = KZ_ETOOBIG;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static inline void kz_msgs_priv_lit(kz_msgs_priv_w *w, const char *s)
{
    kz_msgs_priv_raw(w, s, strlen(s));
}

/* Length of one UTF-8 sequence at s (0 if malformed, overlong, a surrogate
 * or above U+10FFFF); *units gets its UTF-16 length. */
static inline size_t kz_msgs_priv_utf8(const unsigned char *s, size_t *units)
{
    unsigned char c = s[0];
    size_t n, k;
    unsigned long v, min;
    if (c < 0x80) {
        *units = 1;
        return 1;
    }
    if ((c & 0xE0) == 0xC0)
        n = 2, v = c & 0x1Fu, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, v = c & 0x0Fu, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, v = c & 0x07u, min = 0x10000;
    else
        return 0;
    for (k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
        v = (v << 6) | (s[k] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *units = n == 4 ? 2 : 1;
    return n;
}

/* A JSON string (quotes included), escaped; KZ_EINVAL on invalid UTF-8.
 * *units (if not NULL) gets the UTF-16 length. */
static inline void kz_msgs_priv_str(kz_msgs_priv_w *w, const char *s, size_t *units)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t total = 0;
    kz_msgs_priv_raw(w, "\"", 1);
    while (*p != '\0' && w->err == 0) {
        const unsigned char *run = p;
        size_t u = 0;
        /* copy runs of plain characters in one go */
        while (*p >= 0x20 && *p != '"' && *p != '\\') {
            size_t n = kz_msgs_priv_utf8(p, &u);
            if (n == 0) {
                w->err = KZ_EINVAL;
                return;
            }
            p += n;
            total += u;
        }
        kz_msgs_priv_raw(w, (const char *)run, (size_t)(p - run));
        if (*p == '\0')
            break;
        {
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            switch (*p) {
            case '"':
                kz_msgs_priv_raw(w, "\\\"", 2);
                break;
            case '\\':
                kz_msgs_priv_raw(w, "\\\\", 2);
                break;
            case '\n':
                kz_msgs_priv_raw(w, "\\n", 2);
                break;
            case '\r':
                kz_msgs_priv_raw(w, "\\r", 2);
                break;
            case '\t':
                kz_msgs_priv_raw(w, "\\t", 2);
                break;
            case '\b':
                kz_msgs_priv_raw(w, "\\b", 2);
                break;
            case '\f':
                kz_msgs_priv_raw(w, "\\f", 2);
                break;
            default:
                kz_msgs_priv_raw(w, esc, 6);
                break;
            }
            p++;
            total++;
        }
    }
    kz_msgs_priv_raw(w, "\"", 1);
    if (units != NULL)
        *units = total;
}

/* ,"key":"value" — skipped when value is NULL. */
static inline void kz_msgs_priv_kv(kz_msgs_priv_w *w, const char *key, const char *value)
{
    if (value == NULL)
        return;
    kz_msgs_priv_lit(w, ",\"");
    kz_msgs_priv_lit(w, key);
    kz_msgs_priv_lit(w, "\":");
    kz_msgs_priv_str(w, value, NULL);
}

/* Opens a new message object: drops the closing "]", adds a comma. */
static inline int kz_msgs_priv_begin(kz_msgs_priv_w *w, kz_msgs *b, const char *type)
{
    int rc = kz_msgs_priv_start(w, b);
    if (rc != 0)
        return rc;
    if (b->count >= KZ_MSGS_MAX)
        return KZ_ETOOBIG;
    b->len--; /* the "]" */
    kz_msgs_priv_lit(w, b->count > 0 ? ",{\"type\":\"" : "{\"type\":\"");
    kz_msgs_priv_lit(w, type);
    kz_msgs_priv_lit(w, "\"");
    return 0;
}

/* Closes the message (or an attachment) with "}]" and the NUL; undoes
 * everything since start on error. */
static inline int kz_msgs_priv_end(kz_msgs_priv_w *w, int new_message)
{
    kz_msgs *b = w->b;
    if (w->err == 0 && b->len + 3 > b->cap)
        w->err = KZ_ETOOBIG;
    if (w->err != 0)
        return kz_msgs_priv_abort(w, w->err);
    b->buf[b->len++] = '}';
    b->buf[b->len++] = ']';
    b->buf[b->len] = '\0';
    if (new_message) {
        b->count++;
        b->has_qr = 0;
        b->has_from = 0;
    }
    return 0;
}

/* Writes one action object. quick: in a quick reply (camera, camera roll
 * and location allowed). */
static inline void kz_msgs_priv_action(kz_msgs_priv_w *w, const kz_action *a, int quick)
{
    static const char *const names[] = {"",       "postback",       "message",
                                        "uri",    "datetimepicker", "clipboard",
                                        "camera", "cameraRoll",     "location"};
    if (w->err != 0)
        return;
    if (a == NULL || a->type < KZ_ACTION_POSTBACK || a->type > KZ_ACTION_LOCATION ||
        a->label == NULL || a->label[0] == '\0' || (!quick && a->type >= KZ_ACTION_CAMERA)) {
        w->err = KZ_EINVAL;
        return;
    }
    switch (a->type) {
    case KZ_ACTION_POSTBACK: /* data may be empty, not NULL */
        if (a->data == NULL)
            w->err = KZ_EINVAL;
        break;
    case KZ_ACTION_DATETIME:
        if (a->data == NULL || a->mode == NULL ||
            (strcmp(a->mode, "date") != 0 && strcmp(a->mode, "time") != 0 &&
             strcmp(a->mode, "datetime") != 0))
            w->err = KZ_EINVAL;
        break;
    case KZ_ACTION_MESSAGE:
    case KZ_ACTION_URI:
    case KZ_ACTION_CLIPBOARD:
        if (a->data == NULL || a->data[0] == '\0')
            w->err = KZ_EINVAL;
        break;
    default:
        break;
    }
    if (w->err != 0)
        return;
    kz_msgs_priv_lit(w, "{\"type\":\"");
    kz_msgs_priv_lit(w, names[a->type]);
    kz_msgs_priv_lit(w, "\"");
    kz_msgs_priv_kv(w, "label", a->label);
    switch (a->type) {
    case KZ_ACTION_POSTBACK:
        kz_msgs_priv_kv(w, "data", a->data);
        kz_msgs_priv_kv(w, "displayText", a->display_text);
        break;
    case KZ_ACTION_MESSAGE:
        kz_msgs_priv_kv(w, "text", a->data);
        break;
    case KZ_ACTION_URI:
        kz_msgs_priv_kv(w, "uri", a->data);
        break;
    case KZ_ACTION_DATETIME:
        kz_msgs_priv_kv(w, "data", a->data);
        kz_msgs_priv_kv(w, "mode", a->mode);
        break;
    case KZ_ACTION_CLIPBOARD:
        kz_msgs_priv_kv(w, "clipboardText", a->data);
        break;
    default:
        break;
    }
    kz_msgs_priv_lit(w, "}");
}

/* ---- the array -------------------------------------------------------- */

/* Starts an empty array ("[]") in buf[cap], which the caller owns and keeps
 * alive while the kz_msgs is used. KZ_EINVAL for NULL, KZ_ETOOBIG if cap < 3.
 * Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_init(kz_msgs *b, char *buf, size_t cap)
{
    if (b == NULL || buf == NULL)
        return KZ_EINVAL;
    memset(b, 0, sizeof *b);
    if (cap < 3)
        return KZ_ETOOBIG;
    b->buf = buf;
    b->cap = cap;
    memcpy(buf, "[]", 3);
    b->len = 2;
    return 0;
}

/* Empties the array, keeping the buffer. Thread: any. Since: ABI 1.1. */
static inline void kz_msgs_reset(kz_msgs *b)
{
    if (b != NULL && b->buf != NULL && b->cap >= 3)
        kz_msgs_init(b, b->buf, b->cap);
}

/* Messages added so far (0..5). Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_count(const kz_msgs *b)
{
    return b != NULL ? b->count : 0;
}

/* The array as JSON text, NUL-terminated, owned by the caller's buffer
 * (valid until the next change); *len (if not NULL) gets its length.
 * "[]" when empty (LINE refuses an empty array: add at least one message).
 * NULL for a NULL or uninitialised b. Thread: any. Since: ABI 1.1. */
static inline const char *kz_msgs_json(const kz_msgs *b, size_t *len)
{
    if (b == NULL || b->buf == NULL)
        return NULL;
    if (len != NULL)
        *len = b->len;
    return b->buf;
}

/* ---- messages --------------------------------------------------------- */

/* A text message. text: UTF-8, 1..5000 UTF-16 code units (an emoji such as
 * 😀 counts 2, a kana or kanji 1); newlines and quotes are fine.
 * KZ_EINVAL: NULL/empty/invalid UTF-8; KZ_ETOOBIG: too long, 6th message,
 * buffer full. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_text(kz_msgs *b, const char *text)
{
    kz_msgs_priv_w w;
    size_t units = 0;
    int rc;
    if (text == NULL || text[0] == '\0')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_begin(&w, b, "text")) != 0)
        return rc;
    kz_msgs_priv_lit(&w, ",\"text\":");
    kz_msgs_priv_str(&w, text, &units);
    if (w.err == 0 && units > KZ_MSGS_TEXT_MAX)
        w.err = KZ_ETOOBIG;
    return kz_msgs_priv_end(&w, 1);
}

/* A text message with LINE emoji: each '$' the emoji use is replaced by
 * emojis[i] on the user's screen. With index KZ_EMOJI_AUTO the builder finds
 * the '$' itself (the first after the previous emoji's), so text "$ Sale $"
 * with two AUTO emoji needs no counting; an explicit index (UTF-16 units
 * from 0) must point at a '$'. n <= 20 (n == 0: plain text).
 * KZ_EINVAL: NULL arguments, no '$' where one is needed; KZ_ETOOBIG as for
 * kz_msgs_text or n > 20. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_text_emoji(kz_msgs *b, const char *text, const kz_emoji *emojis, size_t n)
{
    kz_msgs_priv_w w;
    size_t units = 0, i;
    long next = 0; /* UTF-16 index to search from */
    int rc;
    if (text == NULL || text[0] == '\0' || (n > 0 && emojis == NULL))
        return KZ_EINVAL;
    if (n > KZ_MSGS_EMOJI_MAX)
        return KZ_ETOOBIG;
    if ((rc = kz_msgs_priv_begin(&w, b, "text")) != 0)
        return rc;
    kz_msgs_priv_lit(&w, ",\"text\":");
    kz_msgs_priv_str(&w, text, &units);
    if (w.err == 0 && units > KZ_MSGS_TEXT_MAX)
        w.err = KZ_ETOOBIG;
    if (n > 0)
        kz_msgs_priv_lit(&w, ",\"emojis\":[");
    for (i = 0; i < n && w.err == 0; i++) {
        /* Find the '$' for this emoji: walk the text in UTF-16 units. */
        const unsigned char *p = (const unsigned char *)text;
        long at = -1, pos = 0;
        char num[24];
        int k = 0;
        long idx;
        if (emojis[i].product_id == NULL || emojis[i].product_id[0] == '\0' ||
            emojis[i].emoji_id == NULL || emojis[i].emoji_id[0] == '\0') {
            w.err = KZ_EINVAL;
            break;
        }
        while (*p != '\0') {
            size_t u = 0, len = kz_msgs_priv_utf8(p, &u);
            if (len == 0)
                break;
            if (*p == '$' && ((emojis[i].index == KZ_EMOJI_AUTO && pos >= next) ||
                              (emojis[i].index != KZ_EMOJI_AUTO && pos == emojis[i].index))) {
                at = pos;
                break;
            }
            p += len;
            pos += (long)u;
        }
        if (at < 0) {
            w.err = KZ_EINVAL;
            break;
        }
        next = at + 1;
        /* the index as decimal text */
        idx = at;
        do {
            num[k++] = (char)('0' + idx % 10);
            idx /= 10;
        } while (idx > 0);
        kz_msgs_priv_lit(&w, i > 0 ? ",{\"index\":" : "{\"index\":");
        while (k > 0)
            kz_msgs_priv_raw(&w, &num[--k], 1);
        kz_msgs_priv_kv(&w, "productId", emojis[i].product_id);
        kz_msgs_priv_kv(&w, "emojiId", emojis[i].emoji_id);
        kz_msgs_priv_lit(&w, "}");
    }
    if (n > 0)
        kz_msgs_priv_lit(&w, "]");
    return kz_msgs_priv_end(&w, 1);
}

/* A sticker (ids from LINE's list of sendable stickers, e.g. "446", "1988").
 * KZ_EINVAL: NULL or empty ids. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_sticker(kz_msgs *b, const char *package_id, const char *sticker_id)
{
    kz_msgs_priv_w w;
    int rc;
    if (package_id == NULL || package_id[0] == '\0' || sticker_id == NULL || sticker_id[0] == '\0')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_begin(&w, b, "sticker")) != 0)
        return rc;
    kz_msgs_priv_kv(&w, "packageId", package_id);
    kz_msgs_priv_kv(&w, "stickerId", sticker_id);
    return kz_msgs_priv_end(&w, 1);
}

/* An image: url and preview_url are https URLs (JPEG or PNG, <= 2000
 * characters, percent-encoded); preview_url NULL uses url for both.
 * KZ_EINVAL: NULL or empty url. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_image(kz_msgs *b, const char *url, const char *preview_url)
{
    kz_msgs_priv_w w;
    int rc;
    if (url == NULL || url[0] == '\0')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_begin(&w, b, "image")) != 0)
        return rc;
    kz_msgs_priv_kv(&w, "originalContentUrl", url);
    kz_msgs_priv_kv(&w, "previewImageUrl", preview_url != NULL ? preview_url : url);
    return kz_msgs_priv_end(&w, 1);
}

/* A Flex Message: alt_text (shown in notifications, <= 1500 characters) and
 * contents_json, the JSON text of a bubble or carousel container, copied
 * verbatim (design it with LINE's Flex Message Simulator; the host checks
 * its type and size). KZ_EINVAL: NULL/empty arguments or contents that are
 * not a JSON object. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_flex(kz_msgs *b, const char *alt_text, const char *contents_json)
{
    kz_msgs_priv_w w;
    size_t n;
    const char *s = contents_json, *e;
    int rc;
    if (alt_text == NULL || alt_text[0] == '\0' || s == NULL)
        return KZ_EINVAL;
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    n = strlen(s);
    e = s + n;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (e - s < 2 || s[0] != '{' || e[-1] != '}')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_begin(&w, b, "flex")) != 0)
        return rc;
    kz_msgs_priv_kv(&w, "altText", alt_text);
    kz_msgs_priv_lit(&w, ",\"contents\":");
    kz_msgs_priv_raw(&w, s, (size_t)(e - s));
    return kz_msgs_priv_end(&w, 1);
}

/* A buttons template: optional image_url (https) and title (<= 40
 * characters), text (<= 160 characters, 60 with an image or title) and 1..4
 * actions (postback, message, uri, datetime, clipboard; each with a label of
 * <= 20 characters). alt_text (<= 1500) shows in notifications.
 * KZ_EINVAL: NULL/empty alt_text or text, a bad action; KZ_ETOOBIG: more
 * than 4 actions. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_buttons(kz_msgs *b, const char *alt_text, const char *title,
                                  const char *text, const char *image_url, const kz_action *actions,
                                  size_t n)
{
    kz_msgs_priv_w w;
    size_t i;
    int rc;
    if (alt_text == NULL || alt_text[0] == '\0' || text == NULL || text[0] == '\0' ||
        actions == NULL || n == 0)
        return KZ_EINVAL;
    if (n > KZ_MSGS_BUTTONS_MAX)
        return KZ_ETOOBIG;
    if ((rc = kz_msgs_priv_begin(&w, b, "template")) != 0)
        return rc;
    kz_msgs_priv_kv(&w, "altText", alt_text);
    kz_msgs_priv_lit(&w, ",\"template\":{\"type\":\"buttons\"");
    kz_msgs_priv_kv(&w, "thumbnailImageUrl", image_url);
    kz_msgs_priv_kv(&w, "title", title);
    kz_msgs_priv_kv(&w, "text", text);
    kz_msgs_priv_lit(&w, ",\"actions\":[");
    for (i = 0; i < n; i++) {
        if (i > 0)
            kz_msgs_priv_lit(&w, ",");
        kz_msgs_priv_action(&w, &actions[i], 0);
    }
    kz_msgs_priv_lit(&w, "]}");
    return kz_msgs_priv_end(&w, 1);
}

/* A confirm template: text (<= 240 characters) with two buttons, yes and no
 * (postback, message, uri, datetime or clipboard actions). alt_text as for
 * buttons. KZ_EINVAL: NULL/empty text, a bad action. Thread: any.
 * Since: ABI 1.1. */
static inline int kz_msgs_confirm(kz_msgs *b, const char *alt_text, const char *text, kz_action yes,
                                  kz_action no)
{
    kz_msgs_priv_w w;
    int rc;
    if (alt_text == NULL || alt_text[0] == '\0' || text == NULL || text[0] == '\0')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_begin(&w, b, "template")) != 0)
        return rc;
    kz_msgs_priv_kv(&w, "altText", alt_text);
    kz_msgs_priv_lit(&w, ",\"template\":{\"type\":\"confirm\"");
    kz_msgs_priv_kv(&w, "text", text);
    kz_msgs_priv_lit(&w, ",\"actions\":[");
    kz_msgs_priv_action(&w, &yes, 0);
    kz_msgs_priv_lit(&w, ",");
    kz_msgs_priv_action(&w, &no, 0);
    kz_msgs_priv_lit(&w, "]}");
    return kz_msgs_priv_end(&w, 1);
}

/* Any other message object (video, audio, location, imagemap, carousel
 * templates, …), given as the JSON text of one object and copied verbatim;
 * the host validates it. KZ_EINVAL: NULL, or not a JSON object (the text
 * must start with '{' and end with '}'). Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_raw(kz_msgs *b, const char *message_json)
{
    kz_msgs_priv_w w;
    const char *s = message_json, *e;
    int rc;
    if (s == NULL)
        return KZ_EINVAL;
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (e - s < 2 || s[0] != '{' || e[-1] != '}')
        return KZ_EINVAL;
    if ((rc = kz_msgs_priv_start(&w, b)) != 0)
        return rc;
    if (b->count >= KZ_MSGS_MAX)
        return KZ_ETOOBIG;
    b->len--; /* the "]" */
    if (b->count > 0)
        kz_msgs_priv_lit(&w, ",");
    /* everything but the final '}', which end() writes */
    kz_msgs_priv_raw(&w, s, (size_t)(e - s) - 1);
    return kz_msgs_priv_end(&w, 1);
}

/* ---- attached to the last message ------------------------------------- */

/* Adds quick reply buttons to the last message added (LINE shows the quick
 * reply of the last message of a request): 1..13 items, any action type
 * including camera, camera roll and location, each with a label (<= 20
 * characters) and optionally image_url, its icon. KZ_ESTATE: no message
 * yet; KZ_EEXIST: it already has a quick reply; KZ_ETOOBIG: more than 13;
 * KZ_EINVAL: NULL or a bad action. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_quick_reply(kz_msgs *b, const kz_action *items, size_t n)
{
    kz_msgs_priv_w w;
    size_t i;
    int rc;
    if (b == NULL || items == NULL || n == 0)
        return KZ_EINVAL;
    if (n > KZ_MSGS_QUICK_REPLY_MAX)
        return KZ_ETOOBIG;
    if (b->count == 0)
        return KZ_ESTATE;
    if (b->has_qr)
        return KZ_EEXIST;
    if ((rc = kz_msgs_priv_start(&w, b)) != 0)
        return rc;
    b->len -= 2; /* the "}]" */
    kz_msgs_priv_lit(&w, ",\"quickReply\":{\"items\":[");
    for (i = 0; i < n; i++) {
        kz_msgs_priv_lit(&w, i > 0 ? ",{\"type\":\"action\"" : "{\"type\":\"action\"");
        kz_msgs_priv_kv(&w, "imageUrl", items[i].image_url);
        kz_msgs_priv_lit(&w, ",\"action\":");
        kz_msgs_priv_action(&w, &items[i], 1);
        kz_msgs_priv_lit(&w, "}");
    }
    kz_msgs_priv_lit(&w, "]}");
    if ((rc = kz_msgs_priv_end(&w, 0)) == 0)
        b->has_qr = 1;
    return rc;
}

/* Shows the last message added as sent by name (<= 20 characters, not
 * containing "LINE") with icon_url (https, PNG, 1:1) instead of the
 * account's own; either may be NULL, not both. KZ_ESTATE: no message yet;
 * KZ_EEXIST: it already has a sender. Thread: any. Since: ABI 1.1. */
static inline int kz_msgs_sender(kz_msgs *b, const char *name, const char *icon_url)
{
    kz_msgs_priv_w w;
    int rc;
    if (b == NULL || (name == NULL && icon_url == NULL))
        return KZ_EINVAL;
    if (b->count == 0)
        return KZ_ESTATE;
    if (b->has_from)
        return KZ_EEXIST;
    if ((rc = kz_msgs_priv_start(&w, b)) != 0)
        return rc;
    b->len -= 2; /* the "}]" */
    kz_msgs_priv_lit(&w, ",\"sender\":{");
    if (name != NULL) {
        kz_msgs_priv_lit(&w, "\"name\":");
        kz_msgs_priv_str(&w, name, NULL);
    }
    if (icon_url != NULL) {
        kz_msgs_priv_lit(&w, name != NULL ? ",\"iconUrl\":" : "\"iconUrl\":");
        kz_msgs_priv_str(&w, icon_url, NULL);
    }
    kz_msgs_priv_lit(&w, "}");
    if ((rc = kz_msgs_priv_end(&w, 0)) == 0)
        b->has_from = 1;
    return rc;
}

/* ---- actions ---------------------------------------------------------- */

/* Postback: tapping sends a postback event with data (<= 300 characters,
 * e.g. "survey=1&a=good") to your plugin; display_text (<= 300, or NULL) is
 * shown in the chat as the user's message. Thread: any. Since: ABI 1.1. */
static inline kz_action kz_action_postback(const char *label, const char *data,
                                           const char *display_text)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_POSTBACK;
    a.label = label;
    a.data = data;
    a.display_text = display_text;
    return a;
}

/* Message: tapping makes the user send text (<= 300 characters).
 * Thread: any. Since: ABI 1.1. */
static inline kz_action kz_action_message(const char *label, const char *text)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_MESSAGE;
    a.label = label;
    a.data = text;
    return a;
}

/* URI: tapping opens uri (http, https, line or tel; <= 1000 characters,
 * percent-encoded) in LINE's browser. Thread: any. Since: ABI 1.1. */
static inline kz_action kz_action_uri(const char *label, const char *uri)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_URI;
    a.label = label;
    a.data = uri;
    return a;
}

/* Date/time picker: mode "date", "time" or "datetime"; the choice comes
 * back as a postback event with data and params. Thread: any.
 * Since: ABI 1.1. */
static inline kz_action kz_action_datetime(const char *label, const char *data, const char *mode)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_DATETIME;
    a.label = label;
    a.data = data;
    a.mode = mode;
    return a;
}

/* Clipboard: tapping copies text (<= 1000 characters), e.g. a coupon code.
 * Thread: any. Since: ABI 1.1. */
static inline kz_action kz_action_clipboard(const char *label, const char *text)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_CLIPBOARD;
    a.label = label;
    a.data = text;
    return a;
}

/* Camera, camera roll, location: quick reply buttons only (elsewhere
 * KZ_EINVAL). Thread: any. Since: ABI 1.1. */
static inline kz_action kz_action_camera(const char *label)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_CAMERA;
    a.label = label;
    return a;
}
static inline kz_action kz_action_camera_roll(const char *label)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_CAMERA_ROLL;
    a.label = label;
    return a;
}
static inline kz_action kz_action_location(const char *label)
{
    kz_action a;
    memset(&a, 0, sizeof a);
    a.type = KZ_ACTION_LOCATION;
    a.label = label;
    return a;
}

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_MESSAGE_H */
