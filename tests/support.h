/*
 * Test support: the scaffolding the CMocka tests all need (temp dirs,
 * config files, app_prepare, bounded polling, libcurl requests, reading the
 * store back), so each test file keeps only what is particular to it.
 *
 * Every helper fails the running test (fail_msg, with what went wrong)
 * instead of returning an error code: no caller had anything better to do
 * with one. Include after <cmocka.h>.
 */
#ifndef KZ_TEST_SUPPORT_H
#define KZ_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "bus.h"
#include "daemon.h"
#include "ingress.h"
#include "sandbox.h"
#include "store.h"

/* ---- files ---------------------------------------------------------------- */

/* Creates a fresh directory /tmp/kz-<prefix>-XXXXXX and writes its path to
 * out. The caller owns the directory and removes it with ts_rmdir. */
void ts_tmpdir(char *out, size_t len, const char *prefix);

/* rm -rf dir (the test's own temp dir; fails the test if rm does). */
void ts_rmdir(const char *dir);

/* Writes the formatted text to path, replacing the file. */
void ts_write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* app_prepare(a, path, 0); when the config is refused, prints every
 * diagnostic to stderr and fails with "config refused". */
void ts_app_prepare(app *a, const char *path);

/* ---- the parts, started on loopback ------------------------------------- */

/* A bus with the config's options (app_bus_options of a's config); the
 * caller opens the instances and owns *out (bus_free). */
void ts_bus_new(const app *a, bus **out);

/* The test's own store connection (store_close). */
store *ts_store_open(const char *url, int sync_mode);

/* ingress_start / sandbox_start; base receives "http://127.0.0.1:PORT".
 * The caller owns *out (ingress_stop, sandbox_stop). */
void ts_ingress_start(const ingress_options *io, ingress **out, char *base, size_t len);
void ts_sandbox_start(const sandbox_options *so, sandbox **out, char *base, size_t len);

/* ---- time ----------------------------------------------------------------- */

/* CLOCK_MONOTONIC in ms: deadlines unaffected by clock_use_virtual. */
int64_t ts_mono_ms(void);

/* Sleeps ms (the pause between two polls). */
void ts_nap_ms(int ms);

/* Polls cond (re-evaluated each round, every 10 ms) until it is true; once
 * ms have passed, fails with the printf-style message. The condition runs
 * at least once after the deadline, as a caller's own loop would. */
#define TS_WAIT(cond, ms, ...)                                                                     \
    do {                                                                                           \
        int64_t ts_until_ = ts_mono_ms() + (ms);                                                   \
        while (!(cond)) {                                                                          \
            if (ts_mono_ms() > ts_until_)                                                          \
                fail_msg(__VA_ARGS__);                                                             \
            ts_nap_ms(10);                                                                         \
        }                                                                                          \
    } while (0)

/* ---- HTTP (libcurl) ------------------------------------------------------- */

/* One response. body holds at most sizeof body - 1 bytes (NUL-terminated;
 * len counts what was kept); the raw header block of the final response is
 * kept for ts_header. Plain storage: nothing to free. */
typedef struct ts_resp {
    long code;
    CURLcode curl; /* CURLE_OK unless the transport failed (TS_HTTP_MAY_FAIL) */
    char body[65536];
    size_t len;
    size_t total; /* bytes received: more than len when the body was cut */
    char headers[8192];
    size_t hlen;
} ts_resp;

enum {
    TS_HTTP_MAY_FAIL = 1, /* a transport error is recorded in curl, not a failure */
    TS_HTTP_CHUNKED = 2,  /* POST the body with Transfer-Encoding: chunked, in
                             pieces of at most 1000 bytes (several chunks) */
};

/* One request: method on url, sent as written (tests send "../" on
 * purpose), with extra request headers (a NULL-terminated array of
 * "Name: value", or NULL) and body (len bytes; NULL sends none, except that
 * POST sends an empty one). "Expect:" always goes too, so curl never waits
 * for a 100 Continue. h: a handle to reuse (keep-alive; reset first) or
 * NULL for a fresh one. Fills out and returns out->code; a transport error
 * fails the test unless flags has TS_HTTP_MAY_FAIL. Thread-safe (the
 * concurrency tests call it from several threads). */
long ts_http(CURL *h, const char *method, const char *url, const char *const *headers,
             const void *body, size_t len, int flags, ts_resp *out);

/* The value of response header name (case-insensitive, spaces and CRLF
 * trimmed), "" when absent. The text lives in static storage that the
 * fourth call after reuses: compare it at once, or copy it. Main thread
 * only. */
const char *ts_header(const ts_resp *r, const char *name);

/* The first TS_PNG_HEAD bytes of a PNG of w × h pixels (signature and
 * IHDR; what the sandbox reads of a rich menu image). */
#define TS_PNG_HEAD 33
void ts_png_head(uint32_t w, uint32_t h, unsigned char out[TS_PNG_HEAD]);

/* ---- store ---------------------------------------------------------------- */

/* The bus instance of plugin in shop; fails when there is none. */
const bus_instance *ts_instance(bus *b, const char *shop, const char *plugin);

/* Instance's kv value of key as text in out (truncated to outlen); returns
 * 1, or 0 with out "" when the key is absent. */
int ts_kv(store *st, int64_t instance, const char *key, char *out, size_t outlen);

/* A stored counter (the fixtures keep numbers as text), or absent. */
long ts_kv_long(store *st, int64_t instance, const char *key, long absent);

/* A sandbox user's inbox as read back from the sandbox's store. */
typedef struct ts_inbox {
    int n; /* messages */
    /* the newest message's */
    char endpoint[32], request_id[80], message[512];
    /* every message, one a line, oldest first (truncated past the size):
     * requests in flight together may arrive in any order */
    char all[8192];
    int64_t time_ms[32]; /* when the sandbox took each of the first 32 in */
} ts_inbox;

/* Reads user's inbox at shop from sbx (the sandbox's store) into out;
 * returns out->n. */
int ts_inbox_get(store *sbx, const char *shop, const char *user, ts_inbox *out);

/* Events of shop stored after id after, into b (store_batch_free). */
size_t ts_events_after(store *st, const char *shop, int64_t after, store_batch *b);

#endif
