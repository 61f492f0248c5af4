/*
 * log — logfmt lines on stderr:
 *   ts=2026-11-23T03:04:05.678Z level=info plugin=hello shop=solia msg="…"
 *
 * The plugin and shop fields come from a per-thread context that the bus sets
 * around every plugin callback, so plugins need not pass them. Every secret
 * the config resolved is registered here and masked as "***" wherever it
 * would appear in a line.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef KIZUNA_CORE_LOG_H
#define KIZUNA_CORE_LOG_H

#include <stdio.h>

#include <kizuna/host.h>

/* Lines below `level` (KZ_LOG_*) are dropped. Default KZ_LOG_INFO. */
void log_set_level(int level);
/* Parses "debug", "info", "warn", "error"; KZ_EINVAL otherwise. */
int log_parse_level(const char *name, int *level);
/* Where lines go (default stderr). The stream is not owned. */
void log_set_stream(FILE *out);

/* Sets the calling thread's context; NULL clears a field. The strings must
 * outlive the context (they are not copied). */
void log_set_context(const char *plugin, const char *shop);

/* Registers a secret value to mask. Values shorter than 4 bytes are not
 * registered (they would mask ordinary words). The string is copied. */
void log_add_secret(const char *value);
/* Forgets all secrets (tests, config reload). */
void log_clear_secrets(void);

void log_msg(int level, const char *fmt, ...) KZ_PRINTF(2, 3);
/* The kz_host.log slot: msg is already formatted. */
void log_plugin_line(int level, const char *msg);

#endif
