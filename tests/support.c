#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "support.h"

void ts_tmpdir(char *out, size_t len, const char *prefix)
{
    int n = snprintf(out, len, "/tmp/kz-%s-XXXXXX", prefix);
    if (n < 0 || (size_t)n >= len)
        fail_msg("ts_tmpdir: no room for /tmp/kz-%s-XXXXXX in %zu bytes", prefix, len);
    if (mkdtemp(out) == NULL)
        fail_msg("mkdtemp %s failed", out);
}

void ts_rmdir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

void ts_write_file(const char *path, const char *fmt, ...)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0)
        fail_msg("cannot write %s", path);
}

void ts_app_prepare(app *a, const char *path)
{
    if (app_prepare(a, path, 0) > 0) {
        diag_print(&a->d, stderr);
        fail_msg("config refused");
    }
}

void ts_bus_new(const app *a, bus **out)
{
    bus_options o = app_bus_options(a->c);
    char err[512];
    if (bus_new(&o, out, err, sizeof err) != 0)
        fail_msg("bus_new: %s", err);
}

store *ts_store_open(const char *url, int sync_mode)
{
    store *st = NULL;
    char err[512];
    if (store_open(url, sync_mode, &st, err, sizeof err) != 0)
        fail_msg("store_open %s: %s", url, err);
    return st;
}

void ts_ingress_start(const ingress_options *io, ingress **out, char *base, size_t len)
{
    char err[512];
    if (ingress_start(io, out, err, sizeof err) != 0)
        fail_msg("ingress_start: %s", err);
    if (ingress_port(*out) == 0)
        fail_msg("ingress_start: no port");
    snprintf(base, len, "http://127.0.0.1:%u", ingress_port(*out));
}

void ts_sandbox_start(const sandbox_options *so, sandbox **out, char *base, size_t len)
{
    char err[512];
    if (sandbox_start(so, out, err, sizeof err) != 0)
        fail_msg("sandbox_start: %s", err);
    if (sandbox_port(*out) == 0)
        fail_msg("sandbox_start: no port");
    snprintf(base, len, "http://127.0.0.1:%u", sandbox_port(*out));
}

int64_t ts_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void ts_nap_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

/* ---- HTTP ----------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    ts_resp *r = arg;
    size_t k = size * n;
    r->total += k;
    size_t copy = r->len + k < sizeof r->body - 1 ? k : sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, copy);
    r->len += copy;
    r->body[r->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    ts_resp *r = arg;
    size_t k = size * n;
    /* A status line starts a new response (after a redirect or 100): keep
     * only the final response's headers. */
    if (k >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->hlen = 0;
        r->headers[0] = '\0';
    }
    size_t copy = r->hlen + k < sizeof r->headers - 1 ? k : sizeof r->headers - 1 - r->hlen;
    memcpy(r->headers + r->hlen, p, copy);
    r->hlen += copy;
    r->headers[r->hlen] = '\0';
    return k;
}

typedef struct upload {
    const char *p;
    size_t left;
} upload;

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    upload *u = arg;
    size_t k = size * n < u->left ? size * n : u->left;
    if (k > 1000)
        k = 1000; /* several chunks, so the server has to join them */
    memcpy(buf, u->p, k);
    u->p += k;
    u->left -= k;
    return k;
}

long ts_http(CURL *h, const char *method, const char *url, const char *const *headers,
             const void *body, size_t len, int flags, ts_resp *out)
{
    CURL *own = NULL;
    if (h == NULL)
        h = own = curl_easy_init();
    assert_non_null(h);
    curl_easy_reset(h);
    memset(out, 0, sizeof *out);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* Tests send odd paths ("../", "//") on purpose: no normalising. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    upload u = {body, body != NULL ? len : 0};
    if (flags & TS_HTTP_CHUNKED) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &u);
    } else if (body != NULL || strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, body != NULL ? (long)len : 0L);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    out->curl = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->code);
    curl_slist_free_all(hdrs);
    if (own != NULL)
        curl_easy_cleanup(own);
    if (out->curl != CURLE_OK && !(flags & TS_HTTP_MAY_FAIL))
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(out->curl));
    return out->code;
}

const char *ts_header(const ts_resp *r, const char *name)
{
    /* A few buffers in turn, so one assertion can compare two headers. */
    static char ring[4][1024];
    static unsigned turn;
    char *out = ring[turn++ % 4];
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *line = r->headers; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        const char *end = eol != NULL ? eol : line + strlen(line);
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < end && *v == ' ')
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
                end--;
            snprintf(out, sizeof ring[0], "%.*s", (int)(end - v), v);
            return out;
        }
        line = eol != NULL ? eol + 1 : end;
    }
    return out;
}

/* ---- store ---------------------------------------------------------------- */

const bus_instance *ts_instance(bus *b, const char *shop, const char *plugin)
{
    for (size_t i = 0; i < bus_instance_count(b); i++) {
        const bus_instance *in = bus_instance_at(b, i);
        if (strcmp(in->shop_id, shop) == 0 && strcmp(in->p->name, plugin) == 0)
            return in;
    }
    fail_msg("no instance %s/%s", shop, plugin);
    return NULL;
}

int ts_kv(store *st, int64_t instance, const char *key, char *out, size_t outlen)
{
    void *val = NULL;
    size_t len;
    char err[256];
    out[0] = '\0';
    int rc = store_kv_get(st, instance, key, &val, &len, err, sizeof err);
    if (rc == KZ_ENOTFOUND)
        return 0;
    if (rc != 0)
        fail_msg("kv %s of instance %lld: %s", key, (long long)instance, err);
    snprintf(out, outlen, "%.*s", (int)len, (const char *)val);
    free(val);
    return 1;
}

long ts_kv_long(store *st, int64_t instance, const char *key, long absent)
{
    char v[64];
    return ts_kv(st, instance, key, v, sizeof v) ? atol(v) : absent;
}

size_t ts_events_after(store *st, const char *shop, int64_t after, store_batch *b)
{
    char err[256];
    if (store_events_after(st, shop, after, 100000, b, err, sizeof err) != 0)
        fail_msg("events of %s after %lld: %s", shop, (long long)after, err);
    return b->n;
}

static int on_inbox_msg(void *arg, const store_sbx_msg *m)
{
    ts_inbox *in = arg;
    if (in->n < (int)(sizeof in->time_ms / sizeof in->time_ms[0]))
        in->time_ms[in->n] = m->time_ms;
    in->n++;
    snprintf(in->endpoint, sizeof in->endpoint, "%s", m->endpoint);
    snprintf(in->request_id, sizeof in->request_id, "%s", m->request_id);
    snprintf(in->message, sizeof in->message, "%s", m->message);
    size_t used = strlen(in->all);
    snprintf(in->all + used, sizeof in->all - used, "%s\n", m->message);
    return 0;
}

int ts_inbox_get(store *sbx, const char *shop, const char *user, ts_inbox *out)
{
    char err[256];
    memset(out, 0, sizeof *out);
    if (store_sbx_inbox(sbx, shop, user, on_inbox_msg, out, err, sizeof err) != 0)
        fail_msg("inbox of %s at %s: %s", user, shop, err);
    return out->n;
}

void ts_png_head(uint32_t w, uint32_t h, unsigned char out[TS_PNG_HEAD])
{
    static const unsigned char head[16] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                           0,    0,   0,   13,  'I',  'H',  'D',  'R'};
    memset(out, 0, TS_PNG_HEAD);
    memcpy(out, head, sizeof head);
    for (int i = 0; i < 4; i++) {
        out[16 + i] = (unsigned char)(w >> (24 - 8 * i));
        out[20 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    out[24] = 8; /* bit depth; colour type 0 (grey); the CRC is not checked */
}
