#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int min_level = KZ_LOG_INFO;
static FILE *stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static size_t nsecrets;

static _Thread_local const char *ctx_plugin;
static _Thread_local const char *ctx_shop;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level)
{
    min_level = level;
}

int log_parse_level(const char *name, int *level)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    return KZ_EINVAL;
}

void log_set_stream(FILE *out)
{
    stream = out;
}

void log_set_context(const char *plugin, const char *shop)
{
    ctx_plugin = plugin;
    ctx_shop = shop;
}

void log_add_secret(const char *value)
{
    if (value == NULL || strlen(value) < 4)
        return;
    pthread_mutex_lock(&lock);
    char **grown = realloc(secrets, (nsecrets + 1) * sizeof *secrets);
    if (grown != NULL) {
        secrets = grown;
        secrets[nsecrets] = strdup(value);
        if (secrets[nsecrets] != NULL)
            nsecrets++;
    }
    pthread_mutex_unlock(&lock);
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nsecrets; i++)
        free(secrets[i]);
    free(secrets);
    secrets = NULL;
    nsecrets = 0;
    pthread_mutex_unlock(&lock);
}

/* Replaces every registered secret in buf by "***". Called with lock held. */
static void mask_secrets(char *buf)
{
    for (size_t i = 0; i < nsecrets; i++) {
        size_t len = strlen(secrets[i]);
        char *hit;
        while ((hit = strstr(buf, secrets[i])) != NULL) {
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + len, strlen(hit + len) + 1);
        }
    }
}

/* Appends msg to out as a logfmt quoted value. */
static void quote_into(char *out, size_t cap, const char *msg)
{
    size_t o = strlen(out);
    if (o + 1 < cap)
        out[o++] = '"';
    for (const char *p = msg; *p != '\0' && o + 3 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = *p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *p;
        }
    }
    if (o + 1 < cap)
        out[o++] = '"';
    out[o] = '\0';
}

static void emit(int level, const char *msg)
{
    if (level < min_level)
        return;
    if (level < KZ_LOG_DEBUG || level > KZ_LOG_ERROR)
        level = KZ_LOG_ERROR;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[4096];
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level]);
    if (ctx_plugin != NULL)
        n += snprintf(line + n, sizeof line - (size_t)n, " plugin=%s", ctx_plugin);
    if (ctx_shop != NULL && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " shop=%s", ctx_shop);
    if ((size_t)n < sizeof line - 6) {
        strcat(line, " msg=");
        quote_into(line, sizeof line, msg);
    }
    pthread_mutex_lock(&lock);
    mask_secrets(line);
    fprintf(stream ? stream : stderr, "%s\n", line);
    fflush(stream ? stream : stderr);
    pthread_mutex_unlock(&lock);
}

void log_msg(int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void log_plugin_line(int level, const char *msg)
{
    emit(level, msg != NULL ? msg : "(null)");
}
