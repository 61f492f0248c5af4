/*
 * chat — `kizuna chat`: a terminal chat as one LINE user of one shop,
 * against the LINE sandbox (docs/chat.md).
 *
 * A line that does not start with `/` is said as a text message; commands
 * follow, block, unblock, tap a numbered button or quick-reply item, open a
 * link, show the inbox again. After each action (and, on a terminal, every
 * poll interval while waiting for input) the user's inbox is fetched from
 * the sandbox over HTTP and the messages not shown yet are rendered as
 * readable text: `shop> ` on the first line of each message, numbered
 * actions `[n] Label (postback|message|link|…)` for /tap and /open.
 *
 * Thread: the caller's; no state outside the call.
 */
#ifndef KIZUNA_CORE_CHAT_H
#define KIZUNA_CORE_CHAT_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

typedef struct chat_options {
    int reply_wait_ms; /* after an action: how long to wait for the shop's answer; 0 = 1500 */
    int poll_ms;       /* on a terminal: inbox poll interval while waiting; 0 = 500 */
} chat_options;

/* Chats as `user` (U + 32 hex) with `shop` through the sandbox at
 * c->sandbox.listen, reading lines from `in` until /quit or EOF and writing
 * to `out`. Returns 0, 1 when the sandbox cannot be reached or refuses the
 * shop, 2 for a bad user id or shop (message on `out`). */
int chat_run(const cfg *c, const char *shop, const char *user, FILE *in, FILE *out);
/* The same with options (tests: shorter waits); o may be NULL. */
int chat_run_opts(const cfg *c, const char *shop, const char *user, FILE *in, FILE *out,
                  const chat_options *o);

/* The numbered actions of rendered messages: action objects (JSON text of
 * LINE action objects, e.g. {"type":"postback","label":…,"data":…}). */
typedef struct chat_actions {
    char **json;
    size_t n, cap;
} chat_actions;

void chat_actions_clear(chat_actions *a);

/* Renders one LINE message object (JSON text) as the chat shows it:
 * "shop> " before the first line, six spaces before the others, every line
 * ending in "\n". Its actions are appended to `acts` (may be NULL) and
 * numbered from acts->n + 1 (from 1 when acts is NULL). Returns malloc'd
 * text, never NULL (text that is not a JSON object renders as
 * "[unreadable message]"). */
char *chat_render(const char *message_json, chat_actions *acts);

/* Renders a user's rich menu, as the sandbox answers
 * GET /sandbox/shops/<shop>/users/<user>/richmenu: its chat bar text, then
 * one numbered line per area with its action ("[1] 買う (postback)"),
 * appended to acts as chat_render does. The chat's view (detail 0) starts
 * with "menu> " and indents the rest; the detailed view (detail 1, `kizuna
 * sandbox richmenu`) adds the menu's id, name, size and whose it is, and per
 * area what its action carries and its bounds. Returns malloc'd text. */
char *chat_render_richmenu(const char *answer_json, chat_actions *acts, int detail);

#endif
