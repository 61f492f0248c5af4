/*
 * template — placeholders in a step's messages, filled per friend when the
 * step is sent:
 *
 *   {{display_name}}        the LINE display name from the friend registry
 *   {{attr.birthday}}       a declared attribute (friends.attributes)
 *   {{user}}                the LINE user id
 *   {{display_name|お客様}}  a default for an empty or missing value
 *
 * An unknown name is left as written (so a typo shows in the message the
 * operator tries in the sandbox, not silently as ""). Placeholders live in
 * the messages' JSON strings, so values are JSON-escaped when inserted.
 *
 * Thread: handler.
 */
#ifndef KIZUNA_PLUGINS_STEP_TEMPLATE_H
#define KIZUNA_PLUGINS_STEP_TEMPLATE_H

#include <kizuna/plugin.h>

/* *out: a malloc'ed copy of json with the user's values filled in (the
 * caller frees it). 0, KZ_ENOMEM, or an error of kz_friend_get other than
 * KZ_ENOTFOUND (a friend the registry never saw has empty values). */
int template_fill(kz_ctx *ctx, const char *user, const char *json, char **out);

#endif
