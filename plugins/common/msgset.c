#include "msgset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/message.h>

#include "jscan.h"

/* Up to 5 messages of a set while it is loaded: a text (the setting's
 * string) or one message object read from a file (malloc'ed). */
typedef struct piece {
    const char *text;
    char *object;
} piece;

typedef struct loader {
    piece p[KZ_MSGS_MAX];
    int n;
    const kz_setting *at; /* the element being read, for errors */
    char *err;
    size_t errlen;
} loader;

static void loader_free(loader *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->p[i].object);
}

static int too_many(loader *l, const kz_setting *s)
{
    return kz_setting_error(s, l->err, l->errlen,
                            "more than %d messages in one set (LINE takes at most %d a request)",
                            KZ_MSGS_MAX, KZ_MSGS_MAX);
}

/* Reads a whole file (at most KZ_PAYLOAD_MAX bytes) into a malloc'ed,
 * NUL-terminated buffer; NULL with errno set, or EFBIG. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(KZ_PAYLOAD_MAX + 2);
    size_t n = buf ? fread(buf, 1, KZ_PAYLOAD_MAX + 1, f) : 0;
    int failed = buf == NULL || ferror(f);
    int saved = buf == NULL ? ENOMEM : EIO;
    fclose(f);
    if (failed || n > KZ_PAYLOAD_MAX || memchr(buf, '\0', n) != NULL) {
        free(buf);
        errno = failed ? saved : n > KZ_PAYLOAD_MAX ? EFBIG : EINVAL;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* jscan_each callback: one message object of a file. */
static int add_object(const char *elem, void *arg)
{
    loader *l = arg;
    const char *end = jscan_value_end(elem);
    const char *type = jscan_member(elem, "type");
    if (*elem != '{' || type == NULL || *type != '"')
        return kz_setting_error(l->at, l->err, l->errlen,
                                "message %d of the file is not a message object with a \"type\"",
                                l->n + 1);
    if (l->n == KZ_MSGS_MAX)
        return too_many(l, l->at);
    l->p[l->n++].object = strndup(elem, (size_t)(end - elem));
    return l->p[l->n - 1].object ? 0 : KZ_ENOMEM;
}

static int load_file(loader *l, const kz_setting *s, const char *path)
{
    char *text = read_file(path);
    if (text == NULL)
        return kz_setting_error(s, l->err, l->errlen, "cannot read '%s': %s", path,
                                errno == EFBIG    ? "over 1 MiB"
                                : errno == EINVAL ? "contains a NUL byte"
                                                  : strerror(errno));
    l->at = s;
    int rc;
    if (!jscan_valid(text)) {
        rc = kz_setting_error(s, l->err, l->errlen, "'%s' is not valid JSON", path);
    } else if (*text == '[' || (text[strspn(text, " \t\r\n")] == '[')) {
        rc = jscan_each(text, add_object, l);
        if (rc == 0 && l->n == 0)
            rc = kz_setting_error(s, l->err, l->errlen, "'%s' holds an empty array", path);
    } else {
        rc = add_object(text + strspn(text, " \t\r\n"), l);
    }
    free(text);
    return rc;
}

/* One element of the list: { text = "…"; } or { file = "…"; }. */
static int load_element(loader *l, const kz_setting *e)
{
    if (kz_setting_type(e) != KZ_SETTING_GROUP)
        return kz_setting_error(e, l->err, l->errlen,
                                "expected a group { text = \"…\"; } or { file = \"…\"; }");
    const kz_setting *text = kz_setting_child(e, "text"), *file = kz_setting_child(e, "file");
    for (size_t i = 0; i < kz_setting_count(e); i++) {
        const kz_setting *c = kz_setting_elem(e, i);
        if (c != text && c != file)
            return kz_setting_error(c, l->err, l->errlen, "unknown key (known: text, file)");
    }
    if ((text == NULL) == (file == NULL))
        return kz_setting_error(e, l->err, l->errlen, "give either text or file, not %s",
                                text ? "both" : "neither");
    const kz_setting *s = text ? text : file;
    const char *v;
    if (kz_setting_string(s, &v) != 0)
        return kz_setting_error(s, l->err, l->errlen, "expected a string");
    if (file != NULL)
        return load_file(l, s, v);
    if (l->n == KZ_MSGS_MAX)
        return too_many(l, s);
    l->p[l->n++].text = v;
    return 0;
}

/* Checks a text the way LINE would (kizuna/message.h) without keeping it. */
static int check_text(loader *l, const kz_setting *s, const char *text)
{
    size_t cap = strlen(text) * 6 + 64;
    char *buf = malloc(cap);
    kz_msgs m;
    int rc = buf ? kz_msgs_init(&m, buf, cap) : KZ_ENOMEM;
    if (rc == 0)
        rc = kz_msgs_text(&m, text);
    free(buf);
    if (rc == KZ_EINVAL)
        return kz_setting_error(s, l->err, l->errlen, "empty or not valid UTF-8");
    if (rc == KZ_ETOOBIG)
        return kz_setting_error(s, l->err, l->errlen, "over 5000 characters (LINE's limit)");
    return rc;
}

/* The array of the loaded pieces, in a buffer sized for them. */
static int build(loader *l, const kz_setting *list, msgset *out)
{
    size_t cap = 64;
    for (int i = 0; i < l->n; i++)
        cap += l->p[i].text ? strlen(l->p[i].text) * 6 + 64 : strlen(l->p[i].object) + 8;
    char *buf = malloc(cap);
    kz_msgs m;
    int rc = buf ? kz_msgs_init(&m, buf, cap) : KZ_ENOMEM;
    for (int i = 0; rc == 0 && i < l->n; i++)
        rc = l->p[i].text ? kz_msgs_text(&m, l->p[i].text) : kz_msgs_raw(&m, l->p[i].object);
    if (rc != 0) {
        free(buf);
        return rc == KZ_ENOMEM
                   ? rc
                   : kz_setting_error(list, l->err, l->errlen,
                                      "LINE would refuse these messages (error %d)", rc);
    }
    out->json = buf;
    out->count = l->n;
    return 0;
}

int msgset_load(const kz_setting *list, msgset *out, char *err, size_t errlen)
{
    loader l;
    memset(&l, 0, sizeof l);
    l.err = err;
    l.errlen = errlen;
    out->json = NULL;
    out->count = 0;
    if (list == NULL)
        return 0;
    if (kz_setting_type(list) != KZ_SETTING_LIST)
        return kz_setting_error(list, err, errlen,
                                "expected a list of messages ( { text = \"…\"; }, … )");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < kz_setting_count(list); i++)
        rc = load_element(&l, kz_setting_elem(list, i));
    for (size_t i = 0; rc == 0 && i < kz_setting_count(list); i++) {
        const kz_setting *t = kz_setting_child(kz_setting_elem(list, i), "text");
        const char *v;
        if (t != NULL && kz_setting_string(t, &v) == 0)
            rc = check_text(&l, t, v);
    }
    if (rc == 0 && l.n > 0)
        rc = build(&l, list, out);
    loader_free(&l);
    return rc;
}

void msgset_free(msgset *m)
{
    free(m->json);
    m->json = NULL;
    m->count = 0;
}

/* The host's rule for tags: 1..100 bytes of UTF-8, no control characters. */
static int tag_ok(const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || len > 100)
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p;) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : 3;
        if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && *p < 0xc2) || *p > 0xf4)
            return 0;
        for (int i = 1; i <= n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n + 1;
    }
    return 1;
}

int taglist_load(const kz_setting *list, taglist *out, char *err, size_t errlen)
{
    out->v = NULL;
    out->n = 0;
    if (list == NULL)
        return 0;
    if (kz_setting_type(list) != KZ_SETTING_LIST)
        return kz_setting_error(list, err, errlen, "expected a list of tags [ \"…\", … ]");
    size_t n = kz_setting_count(list);
    /* Refused here rather than failing (and retrying) every event later. */
    if (n > 0 && !KZ_HOST_HAS(kz_host_api, friend_tag))
        return kz_setting_error(list, err, errlen,
                                "tags need the host's friend registry (friend_tag, ABI 1.3), "
                                "which this host does not provide");
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (out->v == NULL)
        return KZ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const kz_setting *e = kz_setting_elem(list, i);
        const char *v;
        if (kz_setting_string(e, &v) != 0 || !tag_ok(v)) {
            taglist_free(out);
            return kz_setting_error(e, err, errlen,
                                    "a tag is a string of 1 to 100 bytes of UTF-8 without "
                                    "control characters");
        }
        if ((out->v[out->n++] = strdup(v)) == NULL) {
            taglist_free(out);
            return KZ_ENOMEM;
        }
    }
    return 0;
}

void taglist_free(taglist *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

int taglist_apply(const taglist *t, kz_ctx *ctx, const char *user, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        int rc = kz_friend_tag(ctx, user, t->v[i]);
        if (rc != 0 && rc != KZ_EEXIST) {
            snprintf(err, errlen, "tagging %s with '%s': error %d", user, t->v[i], rc);
            return rc;
        }
    }
    return 0;
}
