/*
 * diag — a list of one-line error messages gathered while checking
 * something (config, plugins), so that every problem is reported at once.
 *
 * Owns its strings. Not thread-safe: one diag per checking thread.
 */
#ifndef KIZUNA_CORE_DIAG_H
#define KIZUNA_CORE_DIAG_H

#include <stddef.h>
#include <stdio.h>

#include <kizuna/host.h>

typedef struct diag {
    char **lines;
    size_t n, cap;
    size_t dropped; /* lines lost to out-of-memory; count as errors */
} diag;

/* Appends a formatted line (no trailing newline needed). Out of memory drops
 * the line but counts it in `dropped`, so a check never passes by accident. */

void diag_add(diag *d, const char *fmt, ...) KZ_PRINTF(2, 3);
/* Prints each line followed by a newline. */
void diag_print(const diag *d, FILE *out);
void diag_free(diag *d);
/* Number of errors, dropped ones included. */
size_t diag_count(const diag *d);

#endif
