/*
 * ABI 1.0 layout, pinned. The numbers were computed from the frozen ABI 1.0
 * headers (tests/abi/v1.0) for x86_64 / LP64; the asserts check that the
 * *current* SDK headers still put every 1.0 slot and field at the same
 * offset, keep the 1.0 sizes and keep every 1.0 constant. A failure here
 * means an edit moved or changed something a released plugin depends on:
 * append new slots and fields at the end instead (host.h, plugin.h).
 *
 * Compiled into test_loader; it has no code, only compile-time checks.
 */
#include <stddef.h>
#include <stdint.h>

#include <kizuna/plugin.h>

_Static_assert(KZ_ABI_MAJOR == 1, "ABI major changed: that is ABI 2, not an edit");
_Static_assert(KZ_ABI_MINOR >= 0, "ABI minor went backwards");
_Static_assert(sizeof(KZ_PLUGIN_ENTRY_NAME) == sizeof("kizuna_plugin_v1"), "entry name changed");

/* Return codes, log levels and setting types are values compiled into
 * plugins. */
_Static_assert(KZ_OK == 0 && KZ_EINVAL == -1 && KZ_ENOTFOUND == -2 && KZ_ECONFLICT == -3 &&
                   KZ_ENOMEM == -4 && KZ_EIO == -5 && KZ_ENOTSUP == -6 && KZ_ESTATE == -7 &&
                   KZ_EFAIL == -8 && KZ_ETOOBIG == -9 && KZ_EEXIST == -10 && KZ_EFATAL == -11 &&
                   KZ_ETYPE == -12,
               "KZ_E* values are ABI 1.0");
_Static_assert(KZ_LOG_DEBUG == 0 && KZ_LOG_INFO == 1 && KZ_LOG_WARN == 2 && KZ_LOG_ERROR == 3,
               "KZ_LOG_* values are ABI 1.0");
_Static_assert(KZ_SETTING_NONE == 0 && KZ_SETTING_STRING == 1 && KZ_SETTING_INT == 2 &&
                   KZ_SETTING_FLOAT == 3 && KZ_SETTING_BOOL == 4 && KZ_SETTING_DURATION == 5 &&
                   KZ_SETTING_SECRET == 6 && KZ_SETTING_LIST == 7 && KZ_SETTING_GROUP == 8,
               "KZ_SETTING_* values are ABI 1.0");
_Static_assert(KZ_TOPIC_MAX == 128 && KZ_KEY_MAX == 512 && KZ_VALUE_MAX == 1048576 &&
                   KZ_PAYLOAD_MAX == 1048576,
               "ABI 1.0 limits may only grow in a new minor, never shrink");

#if UINTPTR_MAX == 0xffffffffffffffff

#define HOST_AT(slot, off)                                                                         \
    _Static_assert(offsetof(kz_host, slot) == (off), "kz_host." #slot " moved (ABI 1.0)")
#define PLUGIN_AT(field, off)                                                                      \
    _Static_assert(offsetof(kz_plugin, field) == (off), "kz_plugin." #field " moved (ABI 1.0)")
#define SPEC_AT(field, off)                                                                        \
    _Static_assert(offsetof(kz_setting_spec, field) == (off),                                      \
                   "kz_setting_spec." #field " moved (ABI 1.0)")

HOST_AT(abi_major, 0);
HOST_AT(abi_minor, 4);
HOST_AT(struct_size, 8);
HOST_AT(reserved0, 12);
HOST_AT(log, 16);
HOST_AT(now_ms, 24);
HOST_AT(event_topic, 32);
HOST_AT(event_shop, 40);
HOST_AT(event_user, 48);
HOST_AT(event_id, 56);
HOST_AT(event_time_ms, 64);
HOST_AT(event_payload, 72);
HOST_AT(event_attempt, 80);
HOST_AT(ctx_shop, 88);
HOST_AT(shop_id, 96);
HOST_AT(shop_timezone, 104);
HOST_AT(publish, 112);
HOST_AT(subscribe, 120);
HOST_AT(kv_get, 128);
HOST_AT(kv_put, 136);
HOST_AT(kv_del, 144);
HOST_AT(kv_cas, 152);
HOST_AT(kv_incr, 160);
HOST_AT(setting_child, 168);
HOST_AT(setting_elem, 176);
HOST_AT(setting_count, 184);
HOST_AT(setting_type, 192);
HOST_AT(setting_name, 200);
HOST_AT(setting_line, 208);
HOST_AT(setting_string, 216);
HOST_AT(setting_int, 224);
HOST_AT(setting_float, 232);
HOST_AT(setting_bool, 240);
HOST_AT(setting_duration_ms, 248);
HOST_AT(setting_error, 256);
_Static_assert(sizeof(kz_host) >= 264, "kz_host lost ABI 1.0 slots");

/* ABI 1.1 and 1.2 slots, appended after 1.0's. */
HOST_AT(line_send, 264);
HOST_AT(line_call, 272);
HOST_AT(route, 280);
HOST_AT(http_shop, 288);
HOST_AT(http_method, 296);
HOST_AT(http_path, 304);
HOST_AT(http_query, 312);
HOST_AT(http_header, 320);
HOST_AT(http_body, 328);
HOST_AT(http_publish, 336);
HOST_AT(http_header_set, 344);
HOST_AT(http_respond, 352);
_Static_assert(sizeof(kz_host) >= 360, "kz_host lost ABI 1.2 slots");
HOST_AT(friend_get, 360);
HOST_AT(friend_tag, 368);
HOST_AT(friend_has_tag, 376);
HOST_AT(friend_attr_set, 384);
HOST_AT(friend_link, 392);
HOST_AT(friend_by_link, 400);
HOST_AT(segment_compile, 408);
HOST_AT(segment_match, 416);
HOST_AT(segment_free, 424);
HOST_AT(local_time, 432);
_Static_assert(sizeof(kz_host) >= 440, "kz_host lost ABI 1.3 slots");
HOST_AT(timer_set, 440);
HOST_AT(timer_cancel, 448);
_Static_assert(sizeof(kz_host) >= 456, "kz_host lost ABI 1.4 slots");
HOST_AT(local_to_ms, 456);
_Static_assert(sizeof(kz_host) >= 464, "kz_host lost ABI 1.5 slots");
_Static_assert(offsetof(kz_local_time, month) == 4 && offsetof(kz_local_time, hour) == 12 &&
                   offsetof(kz_local_time, weekday) == 24 &&
                   offsetof(kz_local_time, utc_offset_s) == 28 && sizeof(kz_local_time) == 32,
               "kz_local_time moved (ABI 1.3)");

/* The request structs of 1.1 and 1.2: read by struct_size, fields fixed. */
_Static_assert(offsetof(kz_line_send, kind) == 4 && offsetof(kz_line_send, reply_token) == 8 &&
                   offsetof(kz_line_send, to) == 16 && offsetof(kz_line_send, to_list) == 24 &&
                   offsetof(kz_line_send, nto) == 32 && offsetof(kz_line_send, messages) == 40 &&
                   offsetof(kz_line_send, messages_len) == 48 &&
                   offsetof(kz_line_send, narrowcast) == 56 &&
                   offsetof(kz_line_send, notification_disabled) == 64 &&
                   offsetof(kz_line_send, fallback_to_push) == 68 &&
                   offsetof(kz_line_send, tag) == 72,
               "kz_line_send moved (ABI 1.1)");
_Static_assert(offsetof(kz_line_send, promotional) == 80 &&
                   offsetof(kz_line_send, priority) == 84 &&
                   offsetof(kz_line_send, over_cap) == 88 && sizeof(kz_line_send) == 96 &&
                   KZ_OVER_CAP_DEFER == 0 && KZ_OVER_CAP_DROP == 1,
               "kz_line_send moved (ABI 1.5)");
_Static_assert(offsetof(kz_line_call, method) == 8 && offsetof(kz_line_call, path) == 16 &&
                   offsetof(kz_line_call, body) == 24 && offsetof(kz_line_call, body_len) == 32 &&
                   offsetof(kz_line_call, content_type) == 40 &&
                   offsetof(kz_line_call, data_api) == 48 && offsetof(kz_line_call, users) == 56 &&
                   offsetof(kz_line_call, nusers) == 64 && offsetof(kz_line_call, user) == 72 &&
                   offsetof(kz_line_call, tag) == 80 && sizeof(kz_line_call) == 88,
               "kz_line_call moved (ABI 1.2)");

PLUGIN_AT(abi_major, 0);
PLUGIN_AT(abi_minor, 4);
PLUGIN_AT(struct_size, 8);
PLUGIN_AT(reserved0, 12);
PLUGIN_AT(name, 16);
PLUGIN_AT(version, 24);
PLUGIN_AT(vendor, 32);
PLUGIN_AT(license, 40);
PLUGIN_AT(description, 48);
PLUGIN_AT(load, 56);
PLUGIN_AT(unload, 64);
PLUGIN_AT(shop_open, 72);
PLUGIN_AT(shop_close, 80);
PLUGIN_AT(handle, 88);
PLUGIN_AT(subscriptions, 96);
PLUGIN_AT(settings, 104);
_Static_assert(sizeof(kz_plugin) >= 112, "kz_plugin lost ABI 1.0 fields");

SPEC_AT(key, 0);
SPEC_AT(type, 8);
SPEC_AT(required, 12);
SPEC_AT(default_value, 16);
SPEC_AT(description, 24);
SPEC_AT(reserved, 32);
_Static_assert(sizeof(kz_setting_spec) == 48, "kz_setting_spec has a fixed size in ABI 1");

#endif /* LP64 */
