/*
 * kizuna SDK — events.
 *
 * An event has a topic ("line.follow", "ec.order.shipped", …), the shop it
 * belongs to, an optional LINE user id, a stable id unique within the shop, a
 * time, and a JSON payload carried as text (so no JSON library's ABI is part
 * of ours; parse it with the library you like, e.g. <kizuna/json.h>).
 *
 * Topics are dot-separated words of [a-zA-Z0-9_-]. A subscription pattern is
 * an exact topic, "prefix.*" (every topic that starts with "prefix.", at any
 * depth) or "*" (everything).
 *
 * Ownership: every string returned belongs to the host and is valid until the
 * handler returns. Thread: the handler's. Since: ABI 1.0 unless marked.
 */
#ifndef KIZUNA_EVENT_H
#define KIZUNA_EVENT_H

#include <kizuna/host.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline const char *kz_event_topic(const kz_event *ev)
{
    return kz_host_api->event_topic(ev);
}
static inline const char *kz_event_shop(const kz_event *ev)
{
    return kz_host_api->event_shop(ev);
}
/* NULL when the event has no LINE user (group events, EC events, …). */
static inline const char *kz_event_user(const kz_event *ev)
{
    return kz_host_api->event_user(ev);
}
/* Stable id, unique within the shop: LINE's webhookEventId for webhook
 * events; for events a handler publishes, derived from the handled event. */
static inline const char *kz_event_id(const kz_event *ev)
{
    return kz_host_api->event_id(ev);
}
static inline int64_t kz_event_time_ms(const kz_event *ev)
{
    return kz_host_api->event_time_ms(ev);
}
/* JSON text, NUL-terminated; *len receives its length when len != NULL. */
static inline const char *kz_event_payload(const kz_event *ev, size_t *len)
{
    return kz_host_api->event_payload(ev, len);
}
/* 1 on first delivery to this instance, then 2, 3, … on retries. */
static inline uint32_t kz_event_attempt(const kz_event *ev)
{
    return kz_host_api->event_attempt(ev);
}

#ifdef __cplusplus
}
#endif

#endif /* KIZUNA_EVENT_H */
