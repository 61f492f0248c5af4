/*
 * friends — the core's built-in bus instance that keeps each shop's friend
 * registry (store.h, "friends") up to date from the shop's own events:
 *
 *   line.follow      following again (or for the first time), follows + 1,
 *                    and, when the shop can call LINE, a profile fetch
 *                    (GET /v2/bot/profile/{userId}) queued in the same
 *                    transaction
 *   line.unfollow    not following (LINE's word for a block)
 *   line.* else      first / last interaction of the event's user
 *   api.done         the profile answer of its own fetch (plugin
 *                    "core.friends", tag "profile"): display name,
 *                    picture, status message, language
 *
 * It runs like a plugin instance (same cursor, retries, dead letters,
 * exactly-once effects), under the name "core.friends", which no loadable
 * plugin can have (plugin names are [a-z0-9_]+). A new instance starts at
 * the shop's last stored event, as plugins do: friends who followed before
 * it existed appear on their next event.
 *
 * Ownership: the plugin record is static; friends_plugin borrows cfg, which
 * must outlive the bus. Thread: friends_plugin from the main thread before
 * the bus starts; the handler on the bus's workers.
 */
#ifndef KIZUNA_CORE_FRIENDS_H
#define KIZUNA_CORE_FRIENDS_H

#include "config.h"
#include "loader.h"

#define FRIENDS_INSTANCE "core.friends"

/* The built-in plugin record to pass to bus_add_instance for every shop. */
const plugin *friends_plugin(const cfg *c);

#endif
