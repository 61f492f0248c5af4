#include <kizuna/plugin.h>

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)instance; (void)err; (void)errlen;
    kz_log(KZ_LOG_INFO, "event %s", kz_event_topic(ev));
    return kz_publish(ctx, "hello.seen", kz_event_user(ev), NULL);
}

static const char *const subs[] = {"line.follow", NULL};

KZ_PLUGIN_DEFINE(.name = "hello", .version = "0.1.0", .vendor = "kizuna", .license = "MIT",
                 .handle = handle, .subscriptions = subs)
