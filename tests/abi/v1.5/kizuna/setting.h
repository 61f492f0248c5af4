/*
 * kizuna SDK — plugin settings.
 *
 * A shop enables a plugin by giving it a group under `plugins` in the config
 * file. The plugin declares the group's top-level keys in its descriptor as a
 * kz_setting_spec table; the host checks every shop's group against it
 * (unknown keys, types, required keys) and fills in defaults without running
 * plugin code, so `kizuna check` and `kizuna plugins` work on any plugin.
 * Nested content (lists of groups, say) is read through the accessors below;
 * report problems there with kz_setting_error(), which names the file, line,
 * shop and plugin exactly as `kizuna check` does.
 *
 * Ownership: handles and strings belong to the host and live until
 * shop_close. Thread: shop_open or the instance's handler. Since: ABI 1.0.
 */
#ifndef KIZUNA_SETTING_H
#define KIZUNA_SETTING_H

#include <kizuna/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One top-level key of a plugin's setting group. A table of them ends with
 * an entry whose key is NULL. The struct's size is fixed for ABI 1: new
 * fields would only replace `reserved`. Since: ABI 1.0. */
typedef struct kz_setting_spec {
    const char *key;           /* [a-z0-9_]+ */
    int type;                  /* KZ_SETTING_* */
    int required;              /* 1: the key must be given */
    const char *default_value; /* libconfig literal text used when absent, e.g.
                                  "\"hello\"", "3", "true", "\"1d\""; NULL = none */
    const char *description;   /* one line, shown by `kizuna plugins` */
    const void *reserved[2];   /* must be NULL */
} kz_setting_spec;

static inline const kz_setting *kz_setting_child(const kz_setting *s, const char *key)
{
    return kz_host_api->setting_child(s, key);
}
static inline const kz_setting *kz_setting_elem(const kz_setting *s, size_t i)
{
    return kz_host_api->setting_elem(s, i);
}
static inline size_t kz_setting_count(const kz_setting *s)
{
    return kz_host_api->setting_count(s);
}
static inline int kz_setting_type(const kz_setting *s)
{
    return kz_host_api->setting_type(s);
}
static inline const char *kz_setting_name(const kz_setting *s)
{
    return kz_host_api->setting_name(s);
}
static inline int kz_setting_line(const kz_setting *s)
{
    return kz_host_api->setting_line(s);
}

/* Typed reads of this node's own value (list elements, say). KZ_ETYPE when
 * of another type, KZ_EINVAL for a NULL node. */
static inline int kz_setting_string(const kz_setting *s, const char **out)
{
    return kz_host_api->setting_string(s, out);
}
static inline int kz_setting_int(const kz_setting *s, int64_t *out)
{
    return kz_host_api->setting_int(s, out);
}
static inline int kz_setting_float(const kz_setting *s, double *out)
{
    return kz_host_api->setting_float(s, out);
}
static inline int kz_setting_bool(const kz_setting *s, int *out)
{
    return kz_host_api->setting_bool(s, out);
}
static inline int kz_setting_duration_ms(const kz_setting *s, int64_t *out)
{
    return kz_host_api->setting_duration_ms(s, out);
}

/* Typed reads of a child by key. KZ_ENOTFOUND when absent (and no default
 * was declared), KZ_ETYPE when of another type. */
static inline int kz_setting_get_string(const kz_setting *s, const char *key, const char **out)
{
    const kz_setting *c = kz_host_api->setting_child(s, key);
    return c ? kz_host_api->setting_string(c, out) : KZ_ENOTFOUND;
}
static inline int kz_setting_get_int(const kz_setting *s, const char *key, int64_t *out)
{
    const kz_setting *c = kz_host_api->setting_child(s, key);
    return c ? kz_host_api->setting_int(c, out) : KZ_ENOTFOUND;
}
static inline int kz_setting_get_float(const kz_setting *s, const char *key, double *out)
{
    const kz_setting *c = kz_host_api->setting_child(s, key);
    return c ? kz_host_api->setting_float(c, out) : KZ_ENOTFOUND;
}
static inline int kz_setting_get_bool(const kz_setting *s, const char *key, int *out)
{
    const kz_setting *c = kz_host_api->setting_child(s, key);
    return c ? kz_host_api->setting_bool(c, out) : KZ_ENOTFOUND;
}
static inline int kz_setting_get_duration_ms(const kz_setting *s, const char *key, int64_t *out)
{
    const kz_setting *c = kz_host_api->setting_child(s, key);
    return c ? kz_host_api->setting_duration_ms(c, out) : KZ_ENOTFOUND;
}

/* Formats a check-style error about setting s into err and returns
 * KZ_EINVAL:  return kz_setting_error(s, err, errlen, "must be > 0, got %d", n); */
static inline KZ_PRINTF(4, 5) int kz_setting_error(const kz_setting *s, char *err, size_t errlen,
                                                   const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kz_host_api->setting_error(s, err, errlen, msg);
}

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_SETTING_H */
