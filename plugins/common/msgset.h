/*
 * msgset — message sets and tag lists from a plugin's settings, shared by
 * the bundled plugins (greeting, autoreply).
 *
 * A message set is a libconfig list of 0..5 groups, each one message:
 *
 *   messages = ( { text = "Thanks for adding us!"; },
 *                { file = "/etc/kizuna/welcome.json"; } );
 *
 * `text` is a text message; `file` names a JSON file holding one LINE
 * message object or an array of them (each counts towards the 5), e.g. a
 * Flex Message designed in LINE's simulator. Relative paths are relative to
 * the daemon's working directory. Files are read and checked once, in
 * shop_open (handlers do no I/O), and everything is turned into the JSON
 * array LINE's send endpoints take (kizuna/message.h), ready to send.
 *
 * Errors go through kz_setting_error() with the offending element's line,
 * so `kizuna check` shows them: "FILE:LINE: shop 'x': plugin 'y':
 * messages[1].file: …".
 */
#ifndef KIZUNA_PLUGINS_MSGSET_H
#define KIZUNA_PLUGINS_MSGSET_H

#include <kizuna/plugin.h>

/* The JSON array to send (NULL for an empty set) and its message count. */
typedef struct msgset {
    char *json;
    int count;
} msgset;

/* Loads list setting `list` (NULL: an empty set) into *out. 0, or the
 * error code with err filled in (KZ_EINVAL for a bad setting). */
int msgset_load(const kz_setting *list, msgset *out, char *err, size_t errlen);
void msgset_free(msgset *m);

/* A list of friend tags: strings of 1..100 bytes of UTF-8 without control
 * characters (the host's rule), checked at load. */
typedef struct taglist {
    char **v;
    size_t n;
} taglist;

/* Loads list setting `list` (NULL: no tags) into *out; errors as above. */
int taglist_load(const kz_setting *list, taglist *out, char *err, size_t errlen);
void taglist_free(taglist *t);

/* Adds every tag to user (kz_friend_tag): a tag the friend already has is
 * fine. 0, or the first error (err filled in). */
int taglist_apply(const taglist *t, kz_ctx *ctx, const char *user, char *err, size_t errlen);

#endif /* KIZUNA_PLUGINS_MSGSET_H */
