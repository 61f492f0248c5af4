/*
 * friendapi — the ABI 1.3 host slots over the friend registry, segments and
 * shop-local time (kizuna/host.h: friend_get … local_time). Changes are
 * written in the handler's transaction with their friend.* event, published
 * through the ctx like a plugin's own publish (so a retried handler
 * publishes the same ids). Attribute types come from the shop's
 * friends.attributes (bus_instance.c, from bus_options.c).
 *
 * Ownership and threads: as host.h says for each slot.
 */
#ifndef KIZUNA_CORE_FRIENDAPI_H
#define KIZUNA_CORE_FRIENDAPI_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/host.h>

int friendapi_get(kz_ctx *ctx, const char *user, const char **json, size_t *len);
int friendapi_tag(kz_ctx *ctx, const char *user, const char *tag, int add);
int friendapi_has_tag(kz_ctx *ctx, const char *user, const char *tag);
int friendapi_attr_set(kz_ctx *ctx, const char *user, const char *name, const char *json_value);
int friendapi_link(kz_ctx *ctx, const char *user, const char *source, const char *member_id);
int friendapi_by_link(kz_ctx *ctx, const char *source, const char *member_id, const char **user);
int friendapi_segment_compile(kz_shop *shop, const kz_setting *s, kz_segment **out, char *err,
                              size_t errlen);
int friendapi_segment_match(kz_ctx *ctx, const kz_segment *seg, const char *user);
void friendapi_segment_free(kz_segment *seg);
int friendapi_local_time(const kz_shop *shop, int64_t ms, kz_local_time *out);
int friendapi_local_to_ms(const kz_shop *shop, const kz_local_time *lt, int64_t *ms);

#endif
