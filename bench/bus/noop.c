/* A no-op plugin for bench/bus, built as noop_1 … noop_8 (BENCH_NAME). With
 * `kv_write = true` each event also increments a counter, the smallest real
 * effect a handler commits with its event. */
#include <kizuna/plugin.h>

#include <stdlib.h>

typedef struct noop {
    int kv_write;
} noop;

static int open_shop(void *state, kz_shop *shop, const kz_setting *s, void **out, char *err,
                     size_t errlen)
{
    (void)state, (void)shop, (void)err, (void)errlen;
    noop *n = calloc(1, sizeof *n);
    if (n == NULL)
        return KZ_ENOMEM;
    kz_setting_get_bool(s, "kv_write", &n->kv_write);
    *out = n;
    return 0;
}

static void close_shop(void *instance)
{
    free(instance);
}

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev, (void)err, (void)errlen;
    const noop *n = instance;
    return n->kv_write ? kz_kv_incr(ctx, "handled", 1, NULL) : 0;
}

static const char *const subs[] = {"bench.*", NULL};
static const kz_setting_spec settings[] = {
    {"kv_write", KZ_SETTING_BOOL, 0, "false", "increment a counter per event", {0}},
    {NULL, 0, 0, NULL, NULL, {0}}};

KZ_PLUGIN_DEFINE(.name = BENCH_NAME, .version = "1.0.0", .vendor = "kizuna bench", .license = "MIT",
                 .description = "does nothing, fast", .shop_open = open_shop,
                 .shop_close = close_shop, .handle = handle, .subscriptions = subs,
                 .settings = settings)
