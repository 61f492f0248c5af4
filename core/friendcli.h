/*
 * friendcli — the friend registry on the command line (docs/friends.md):
 *
 *   kizuna friends -c FILE SHOP [--segment EXPR] [--json]
 *   kizuna friend  -c FILE SHOP USER [--json]
 *   kizuna tag     -c FILE SHOP USER +vip -trial …
 *
 * friends streams the shop's friends in user id order (memory does not grow
 * with their number), filtered by a segment expression compiled once; a bad
 * expression is reported with its column. --json prints one object a line.
 * tag adds (+name or name) and removes (-name) tags in one transaction with
 * a friend.tagged / friend.untagged event per change, which the running
 * daemon hands to plugins like any stored event.
 *
 * Each function prints its own output and errors and returns the process
 * exit code: 0 ok, 1 failure, 2 usage. Ownership: c is borrowed.
 * Thread: main (the segment's "now" is computed with TZ set to the shop's
 * time zone, which is process-wide).
 */
#ifndef KIZUNA_CORE_FRIENDCLI_H
#define KIZUNA_CORE_FRIENDCLI_H

#include <stdio.h>

#include "config.h"
#include "friendview.h"
#include "store.h"

int friendcli_list(const cfg *c, const char *shop, const char *segment_expr, int json);
int friendcli_show(const cfg *c, const char *shop, const char *user, int json);
int friendcli_tag(const cfg *c, const char *shop, const char *user, char *const *ops, int nops);

/* Shared with friendcsv.c. */

/* Streams the shop's friends that match segment_expr (NULL: all) to print;
 * cmd names the command in messages. *shown (may be NULL) gets the count.
 * Returns an exit code like the commands. */
typedef void (*friendcli_print_fn)(void *arg, const friend_view *v);
int friendcli_walk(const cfg *c, const char *cmd, const char *shop, const char *segment_expr,
                   friendcli_print_fn print, void *arg, long *shown);
/* One tag change ("+name", "name" or "-name") with its friend.* event, in
 * the caller's transaction; what it did goes to out. A no-change is 0 and
 * says so. KZ_EINVAL (err says why) for a bad tag. */
int friendcli_apply_tag(store *st, const char *shop, const char *user, const char *op,
                        const char *by, FILE *out, char *err, size_t errlen);
/* Sets attribute a to its canonical text value (NULL: remove), with a
 * friend.attribute event when it changed. */
int friendcli_apply_attr(store *st, const char *shop, const char *user, const cfg_friend_attr *a,
                         const char *value, const char *by, FILE *out, char *err, size_t errlen);

#endif
