/*
 * friendcsv — the friend registry as CSV, both ways (docs/friends.md):
 *
 *   kizuna export -c FILE SHOP [--segment EXPR] > friends.csv
 *   kizuna import -c FILE SHOP FILE.csv|- [--all-or-nothing]
 *
 * Export writes a header `user,following,display_name,tags,<each declared
 * attribute>` and one row per friend (tags joined by '|'), streamed.
 * Import reads a header naming `user` and any of `tags` and the shop's
 * declared attributes (other columns are an error before anything is
 * applied), then one friend per row: `tags` adds the '|'-separated tags
 * (a leading '-' removes one), an attribute cell sets the value (converted
 * by the declared type; empty leaves it, `null` removes it). A bad row is
 * reported as "FILE:LINE: …" and skipped, the rest applied in one
 * transaction; with all_or_nothing any bad row applies nothing. Each change
 * stores its friend.* event ("by":"import").
 *
 * Parsing is libcsv's (RFC 4180 quoting, quoted newlines). Each function
 * prints its own output and errors and returns the exit code: 0 all
 * applied / written, 1 some rows refused or a failure, 2 usage.
 * Ownership: c is borrowed. Thread: main.
 */
#ifndef KIZUNA_CORE_FRIENDCSV_H
#define KIZUNA_CORE_FRIENDCSV_H

#include "config.h"

int friendcsv_export(const cfg *c, const char *shop, const char *segment_expr);
int friendcsv_import(const cfg *c, const char *shop, const char *path, int all_or_nothing);

#endif
