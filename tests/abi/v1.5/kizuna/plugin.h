/*
 * kizuna SDK — the plugin descriptor.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * `kizuna_plugin_v1` (the ABI major is in the name), returning a pointer to
 * a static descriptor. Write it with KZ_PLUGIN_DEFINE, which fills the ABI
 * header fields so they cannot be wrong:
 *
 *     #include <kizuna/plugin.h>
 *
 *     static int handle(void *inst, kz_ctx *ctx, const kz_event *ev,
 *                       char *err, size_t errlen) { … return 0; }
 *     static const char *const subs[] = { "line.follow", NULL };
 *     static const kz_setting_spec settings[] = {
 *         { "text", KZ_SETTING_STRING, 1, NULL, "what to say", {0} },
 *         { NULL } };
 *
 *     KZ_PLUGIN_DEFINE(.name = "hello", .version = "1.0.0",
 *                      .vendor = "Example", .license = "MIT",
 *                      .handle = handle, .subscriptions = subs,
 *                      .settings = settings)
 *
 * Life cycle (host side): dlopen(RTLD_NOW | RTLD_LOCAL) → kizuna_plugin_v1()
 * → checks → load() once → per enabled shop: shop_open() → handle() per
 * event → shop_close() → unload() at exit. The .so is never dlclose()d.
 *
 * Failures are scoped: a failing load() refuses the plugin (the others keep
 * working); a failing shop_open() disables it for that shop only; a handler
 * returning an error is rolled back and retried with backoff, then the event
 * is parked as dead (see docs/plugin-guide.md).
 *
 * Every callback that can fail returns 0 or a negative KZ_E* code, and may
 * write a one-line reason into err (errlen bytes, always >= 256).
 */
#ifndef KIZUNA_PLUGIN_H
#define KIZUNA_PLUGIN_H

#include <kizuna/host.h>
#include <kizuna/event.h>
#include <kizuna/setting.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kz_plugin {
    /* Header: set by KZ_PLUGIN_DEFINE. The host copies min(struct_size,
     * its own size) into a zeroed struct, so fields added in a later minor
     * read as NULL/0 from an older plugin. */
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;
    uint32_t reserved0;

    /* ---- ABI 1.0 ------------------------------------------------------- */
    const char *name;        /* [a-z0-9_]+, equal to the file name: <name>.so */
    const char *version;     /* the plugin's own version, e.g. "1.2.0" */
    const char *vendor;      /* who ships it */
    const char *license;     /* SPDX id, e.g. "MIT" */
    const char *description; /* one line */

    /* Optional. Called once after the checks pass, before any shop opens.
     * *plugin_state is passed to shop_open and unload. Thread: main. */
    int (*load)(const kz_host *host, void **plugin_state, char *err, size_t errlen);
    /* Optional. Called once at shutdown after every shop_close. */
    void (*unload)(void *plugin_state);

    /* Optional. Called once per shop that enables the plugin, with the
     * validated setting group. *instance is passed to handle and shop_close.
     * shop stays valid until shop_close. Thread: main. */
    int (*shop_open)(void *plugin_state, kz_shop *shop, const kz_setting *setting, void **instance,
                     char *err, size_t errlen);
    /* Optional. Called once per opened shop at shutdown or disable, after the
     * last handle call has returned. */
    void (*shop_close)(void *instance);

    /* Mandatory. Handles one event the instance subscribed to, inside the
     * event's transaction. Return 0 to commit, KZ_EFATAL to park the event as
     * dead at once, any other negative code to roll back and retry later.
     * Thread: one at a time per instance (see host.h). */
    int (*handle)(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen);

    /* Topic patterns, NULL-terminated; may be NULL. See event.h. */
    const char *const *subscriptions;
    /* Settings schema, terminated by a { NULL } entry; may be NULL (the
     * plugin then takes an empty group only). */
    const kz_setting_spec *settings;

    /* ---- ABI 1.1 and later: append new fields below this line only ---- */
} kz_plugin;

/* The entry point's type. The host passes its table; the plugin keeps it
 * (KZ_PLUGIN_DEFINE stores it in kz_host_api) and returns its descriptor. */
typedef const kz_plugin *(*kz_plugin_entry_fn)(const kz_host *host);

#define KZ_PLUGIN_ENTRY_NAME "kizuna_plugin_v1"

/* Defines the entry point and kz_host_api. Arguments are designated
 * initialisers of kz_plugin (.name = …, .handle = …). Use it once per .so. */
#define KZ_PLUGIN_DEFINE(...)                                                                      \
    KZ_HIDDEN const kz_host *kz_host_api = NULL;                                                   \
    KZ_EXPORT const kz_plugin *kizuna_plugin_v1(const kz_host *host);                              \
    KZ_EXPORT const kz_plugin *kizuna_plugin_v1(const kz_host *host)                               \
    {                                                                                              \
        static const kz_plugin kz_descriptor_ = {.abi_major = KZ_ABI_MAJOR,                        \
                                                 .abi_minor = KZ_ABI_MINOR,                        \
                                                 .struct_size = (uint32_t)sizeof(kz_plugin),       \
                                                 __VA_ARGS__};                                     \
        kz_host_api = host;                                                                        \
        return &kz_descriptor_;                                                                    \
    }

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_PLUGIN_H */
