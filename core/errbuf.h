/*
 * errbuf — fills the error buffer a caller passed.
 *
 * Every core function that can fail returns 0 or a negative KZ_E* code and
 * writes a one-line reason into `char *err, size_t errlen` supplied by its
 * caller; this is the one place that writes it. Thread: any.
 */
#ifndef KIZUNA_CORE_ERRBUF_H
#define KIZUNA_CORE_ERRBUF_H

#include <stddef.h>

#include <kizuna/host.h>

/* printf into err[errlen]; a NULL err or a zero errlen writes nothing. */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...) KZ_PRINTF(3, 4);

#endif
