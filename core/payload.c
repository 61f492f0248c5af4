#include "payload.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/random.h>
#include <time.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include <kizuna/host.h>

#include "store.h"

/* A well-formed payload is the common case, and SQLite's json_valid() says
 * so without building a tree; json-c builds one and copies the locale on
 * every parse (a twentieth of a step's time in bench/step). Each thread
 * keeps an in-memory database for it, closed when the thread ends. */
typedef struct validator {
    sqlite3 *db;
    sqlite3_stmt *st;
} validator;

static pthread_key_t validator_key;
static pthread_once_t validator_once = PTHREAD_ONCE_INIT;

static void validator_free(void *arg)
{
    validator *v = arg;
    sqlite3_finalize(v->st);
    sqlite3_close(v->db);
    free(v);
}

static void validator_key_make(void)
{
    pthread_key_create(&validator_key, validator_free);
}

static validator *validator_get(void)
{
    pthread_once(&validator_once, validator_key_make);
    validator *v = pthread_getspecific(validator_key);
    if (v != NULL)
        return v;
    if ((v = calloc(1, sizeof *v)) == NULL)
        return NULL;
    store_sqlite_setup();
    if (sqlite3_open_v2(":memory:", &v->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(v->db, "SELECT json_valid(?1)", -1, SQLITE_PREPARE_PERSISTENT, &v->st,
                           NULL) != SQLITE_OK ||
        pthread_setspecific(validator_key, v) != 0) {
        validator_free(v);
        return NULL;
    }
    return v;
}

int payload_json_valid(const char *json, size_t len)
{
    if (len == 0 || memchr(json, '\0', len) != NULL)
        return 0; /* SQLite would stop reading at the NUL */
    validator *v = validator_get();
    if (v == NULL)
        return -1;
    int ok = -1;
    if (sqlite3_bind_text64(v->st, 1, json, len, SQLITE_STATIC, SQLITE_UTF8) == SQLITE_OK &&
        sqlite3_step(v->st) == SQLITE_ROW)
        ok = sqlite3_column_int(v->st, 0) == 1;
    sqlite3_reset(v->st);
    sqlite3_clear_bindings(v->st);
    return ok;
}

/* json-c's verdict with its reason. */
static int json_c_check(const char *json, size_t len, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        snprintf(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    if (obj == NULL && jerr == json_tokener_continue) {
        /* A bare number at the end of input waits for a terminator. */
        obj = json_tokener_parse_ex(tok, " ", 1);
        jerr = json_tokener_get_error(tok);
        used = len;
    }
    int rc = 0;
    if (obj == NULL || jerr != json_tokener_success) {
        snprintf(err, errlen, "payload is not JSON: %s",
                 jerr == json_tokener_continue ? "unexpected end of input"
                                               : json_tokener_error_desc(jerr));
        rc = KZ_EINVAL;
    } else {
        while (used < len && (json[used] == ' ' || json[used] == '\n' || json[used] == '\t' ||
                              json[used] == '\r'))
            used++;
        if (used != len) {
            snprintf(err, errlen, "payload is not JSON: trailing bytes after the value");
            rc = KZ_EINVAL;
        }
    }
    json_object_put(obj);
    json_tokener_free(tok);
    return rc;
}

int payload_size_check(size_t len, char *err, size_t errlen)
{
    if (len <= KZ_PAYLOAD_MAX)
        return 0;
    snprintf(err, errlen, "payload is %zu bytes, over the limit of %d", len, KZ_PAYLOAD_MAX);
    return KZ_ETOOBIG;
}

int payload_check(const char *json, size_t len, char *err, size_t errlen)
{
    int rc = payload_size_check(len, err, errlen);
    if (rc != 0)
        return rc;
    int quick = payload_json_valid(json, len);
    if (quick == 1)
        return 0;
    /* json-c explains what is wrong; even strict, it lets through what
     * RFC 8259 does not (NaN, 1., single quotes, raw tabs in strings) */
    rc = json_c_check(json, len, err, errlen);
    if (rc == 0 && quick == 0) {
        snprintf(err, errlen,
                 "payload is not JSON: not as RFC 8259 writes it (NaN, a number "
                 "ending in '.', single quotes or a raw control character)");
        rc = KZ_EINVAL;
    }
    return rc;
}

/* xoshiro256** per thread, seeded from the kernel once: a system call per id
 * costs more than the rest of storing an event. 256 bits of seeded state per
 * thread keep collisions as unlikely as with getrandom itself. */
static _Thread_local uint64_t rng[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
    uint64_t result = rotl(rng[1] * 5, 7) * 9;
    uint64_t t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

static void forget_seed(void);

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, forget_seed);
}

static void forget_seed(void)
{
    rng_seeded = 0; /* the child of a fork must not repeat the parent's ids */
}

static void seed(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    size_t got = 0;
    uint8_t *p = (uint8_t *)rng;
    while (got < sizeof rng) {
        ssize_t n = getrandom(p + got, sizeof rng - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (rng[0] == 0 && rng[1] == 0 && rng[2] == 0 && rng[3] == 0)
        rng[0] = 0x9e3779b97f4a7c15ULL; /* never the all-zero state */
    rng_seeded = 1;
}

void payload_uuid_format(const uint8_t bytes[16], int version, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    memcpy(b, bytes, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | (version << 4));
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

void payload_uuid(char out[37])
{
    if (!rng_seeded)
        seed();
    /* Version 7: the first 48 bits are the real time in ms, so ids made
     * close in time sit close in the store's (shop, id) index and an insert
     * touches the index's last pages instead of a random one (LINE's own
     * webhookEventIds, ULIDs, are time-ordered for the same reason). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint64_t hi = (ms << 16) | (next64() & 0xffff), lo = next64();
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(hi >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    payload_uuid_format(b, 7, out);
}

const char *payload_str(json_object *o, const char *key)
{
    json_object *v;
    if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int64_t payload_int(json_object *o, const char *key)
{
    json_object *v;
    return o != NULL && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}
