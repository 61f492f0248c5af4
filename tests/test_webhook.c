/*
 * webhook: X-Line-Signature and request body → bus events.
 *
 * Fixtures (tests/webhook/<type>.json) are full CallbackRequest bodies, one
 * file per event type of LINE's webhook.yml (line-openapi @ 6e4c2a2, which
 * has no examples: written from its schemas), plus "things" (LINE Things,
 * no longer in webhook.yml) and "messageEdited" (newer than it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <kizuna/host.h>

#include "topic.h"
#include "webhook.h"

#define SHOP "shop-a"

/* ---- helpers ----------------------------------------------------------- */

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    int w = snprintf(path, sizeof path, "%s/%s", KZ_WEBHOOK_FIXTURES, name);
    assert_true(w > 0 && (size_t)w < sizeof path);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void parse_ok(const char *body, size_t len, webhook_batch *b)
{
    char err[256] = "";
    int rc = webhook_parse(SHOP, body, len, b, err, sizeof err);
    if (rc != 0)
        fail_msg("webhook_parse: %d %s", rc, err);
}

/* Parses body (strlen) expecting KZ_EINVAL with exactly want in err. */
static void parse_fails(const char *body, size_t len, const char *want)
{
    webhook_batch b;
    memset(&b, 0x5a, sizeof b); /* must be reset even on failure */
    char err[256] = "";
    int rc = webhook_parse(SHOP, body, len, &b, err, sizeof err);
    if (rc != KZ_EINVAL)
        fail_msg("body '%.60s': rc %d (%s), want KZ_EINVAL", body, rc, err);
    assert_string_equal(err, want);
    assert_null(b.msgs);
    assert_int_equal(b.n, 0);
    assert_null(b.priv);
    webhook_batch_free(&b);
}

static json_object *parse_json(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new();
    assert_non_null(tok);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), len);
    json_tokener_free(tok);
    assert_non_null(o);
    return o;
}

static void assert_str_or_null(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

/* ---- signature --------------------------------------------------------- */

static void signature_known_answer(void **state)
{
    (void)state;
    /* line-api-notes.md §1.2 (line-bot-sdk-python tests/test_webhook.py). */
    const char *body = "bodybodybodybody";
    const char *sig = "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k=";
    char out[45];
    webhook_sign("channel_secret", body, strlen(body), out);
    assert_string_equal(out, sig);
    assert_int_equal(webhook_signature_ok("channel_secret", body, strlen(body), sig), 1);

    /* Computed with Python's hmac: an empty body, and a NUL inside it. */
    webhook_sign("channel_secret", "", 0, out);
    assert_string_equal(out, "vJLnk//5JDP+T9L63iYGCdSsZhleMdxb4VxTS/9ePUg=");
    assert_int_equal(webhook_signature_ok("channel_secret", NULL, 0,
                                          "vJLnk//5JDP+T9L63iYGCdSsZhleMdxb4VxTS/9ePUg="),
                     1);
    webhook_sign("channel_secret", "ab\0cd", 5, out);
    assert_string_equal(out, "fbitsfJ3IrAolRf3l58s5WQGdDugvDdPgDZPyzsBjBg=");
    webhook_sign("channel_secret", "ab\0cd", 2, out);
    assert_string_equal(out, "XZgtfAcAmn5uokKv4Tlx1V+v19/fWP4uZ24eVeZ7mO4=");
}

static void signature_utf8_body(void **state)
{
    (void)state;
    /* Japanese text, a raw emoji and the same emoji JSON-escaped as LINE
     * sends it: the digest is over these bytes exactly. Vector from Python's
     * hmac over the UTF-8 encoding. */
    const char *secret = "0123456789abcdef0123456789abcdef";
    const char *body = "{\"destination\":\"U8189cf6745fc0d808977bdb0b9f22995\",\"events\":[{"
                       "\"type\":\"message\",\"message\":{\"type\":\"text\",\"id\":\"1\",\"text\":"
                       "\"\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf "
                       "\xf0\x9f\xa4\xa8 \\uD83E\\uDD28\"}}]}";
    const char *sig = "Cm2EzwjqNq479GOPtcinfOSChTlp6qpZEbsl2RlCLkA=";
    size_t len = strlen(body);
    char out[45];
    webhook_sign(secret, body, len, out);
    assert_string_equal(out, sig);
    assert_int_equal(webhook_signature_ok(secret, body, len, sig), 1);

    /* One byte of the multi-byte text changed. */
    char *copy = strdup(body);
    assert_non_null(copy);
    char *p = strstr(copy, "\xe3\x81\x93");
    assert_non_null(p);
    p[2] ^= 0x01;
    assert_int_equal(webhook_signature_ok(secret, copy, len, sig), 0);
    free(copy);

    /* Still parses: the payload keeps the escaped pair as LINE wrote it,
     * and it reads as the same UTF-8. */
    webhook_batch b;
    parse_ok(body, len, &b);
    assert_int_equal(b.n, 1);
    assert_non_null(strstr(b.msgs[0].json, "\xf0\x9f\xa4\xa8 \\uD83E\\uDD28\""));
    json_object *ev = parse_json(b.msgs[0].json, b.msgs[0].len), *msg, *text;
    assert_true(json_object_object_get_ex(ev, "message", &msg));
    assert_true(json_object_object_get_ex(msg, "text", &text));
    assert_string_equal(json_object_get_string(text), "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab"
                                                      "\xe3\x81\xa1\xe3\x81\xaf \xf0\x9f\xa4\xa8 "
                                                      "\xf0\x9f\xa4\xa8");
    json_object_put(ev);
    webhook_batch_free(&b);
}

/* Each thread reuses keyed HMAC contexts for the last few secrets: more
 * secrets than it keeps, in turn, from several threads at once, still sign
 * exactly as a fresh one-shot HMAC() does. */
#define NSECRETS 6
#define NBODIES 3
static const char *const secrets[NSECRETS] = {"s-one",  "s-two",  "s-three",
                                              "s-four", "s-five", "0123456789abcdef"};
static const char *const bodies[NBODIES] = {"", "{\"events\":[]}", "\xe3\x81\x93 body"};
static char want_sig[NSECRETS][NBODIES][45];

static void *sign_in_turn(void *arg)
{
    long bad = 0;
    for (int round = 0; round < 50; round++)
        for (int i = 0; i < NSECRETS; i++)
            for (int j = 0; j < NBODIES; j++) {
                int k = (i + round) % NSECRETS; /* a different order each round */
                char got[45];
                webhook_sign(secrets[k], bodies[j], strlen(bodies[j]), got);
                bad += strcmp(got, want_sig[k][j]) != 0;
                bad += webhook_signature_ok(secrets[k], bodies[j], strlen(bodies[j]),
                                            want_sig[k][j]) != 1;
            }
    (void)arg;
    return (void *)bad;
}

static void signature_many_secrets_and_threads(void **state)
{
    (void)state;
    for (int i = 0; i < NSECRETS; i++)
        for (int j = 0; j < NBODIES; j++) {
            unsigned char md[32];
            unsigned int n = 0;
            assert_non_null(HMAC(EVP_sha256(), secrets[i], (int)strlen(secrets[i]),
                                 (const unsigned char *)bodies[j], strlen(bodies[j]), md, &n));
            assert_int_equal(n, 32);
            EVP_EncodeBlock((unsigned char *)want_sig[i][j], md, 32);
        }
    assert_null(sign_in_turn(NULL));
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sign_in_turn, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad = (void *)1;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_null(bad);
    }
}

static void signature_rejects(void **state)
{
    (void)state;
    const char *body = "bodybodybodybody";
    size_t len = strlen(body);
    const char *sig = "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k=";

    assert_int_equal(webhook_signature_ok("channel_secreT", body, len, sig), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", "bodybodybodybodY", len, sig), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len - 1, sig), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", "bodybodybodybody\0", len + 1, sig), 0);
    /* truncated, extended, one character changed, padding dropped */
    assert_int_equal(webhook_signature_ok("channel_secret", body, len,
                                          "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k"),
                     0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len,
                                          "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k=="),
                     0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len,
                                          "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7K="),
                     0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len, "/gg9a+LvFevTH1sd"), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len, " "), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len, ""), 0);
    assert_int_equal(webhook_signature_ok("channel_secret", body, len, NULL), 0);
    /* no secret */
    char out[45];
    webhook_sign("", body, len, out);
    assert_int_equal(strlen(out), 44);
    assert_int_equal(webhook_signature_ok("", body, len, out), 0);
    assert_int_equal(webhook_signature_ok(NULL, body, len, sig), 0);
    /* no body but a length */
    assert_int_equal(webhook_signature_ok("channel_secret", NULL, len, sig), 0);
}

/* ---- every event type -------------------------------------------------- */

#define U1 "U4af4980629a1b2c3d4e5f60718293a4b"
#define U2 "U91eeaf62d901234567890abcdef01234"
#define U3 "U206d25c2ea6bd87c17655609a1c37cb8"

static const struct fixture_event {
    const char *file;
    size_t index;
    const char *topic, *uid, *user;
} fixture_events[] = {
    {"message.json", 0, "line.message.text", "01JW2WKW3JTHECECYCBH16513E", U1},
    {"message.json", 1, "line.message.text", "01JJGJ4KDBB871S35KR2B0QF0Z", U2},   /* group */
    {"message.json", 2, "line.message.text", "01JN3BPZ5K139EFPNMEEYK1M06", NULL}, /* room */
    {"message.json", 3, "line.message.image", "01J2JN0NC8EZ41FTRXTXHJDH7W", U1},
    {"message.json", 4, "line.message.image", "01JTNKCEHRPQ1B114SB265SJDK", U3}, /* room */
    {"message.json", 5, "line.message.video", "01JRDWHGVCHNQ2P2A2A4QK5SMD", U1},
    {"message.json", 6, "line.message.audio", "01JWAWPV1D2PTSC66RKHM0EER7", U1},
    {"message.json", 7, "line.message.file", "01JTASEAPFM65BH09C6C7FR68F", U1},
    {"message.json", 8, "line.message.location", "01J0QZX7KGR4D332E1KJC7JQ56", U1},
    {"message.json", 9, "line.message.sticker", "01JK8YFT6SWV2BT06Z36P6FD6T", U1},
    {"message.json", 10, "line.message.sticker", "01J4GCR1SH72D5RY8JCSDGKZRW", U1}, /* redelivery */
    {"unsend.json", 0, "line.unsend", "01JMYKA3B64HKPFE9AF36T9TYV", U1},
    {"follow.json", 0, "line.follow", "01JDPJSTBSVXA4GXZ3JPKQSDFH", U1},
    {"follow.json", 1, "line.follow", "01JJNJXHKM58GDECG53KPM6RH2", U2},
    {"unfollow.json", 0, "line.unfollow", "01JZRCHW8KWA7YRQSBRXAQ9NNQ", U1},
    {"join.json", 0, "line.join", "01JXNKPP63ZA6G2M7RWSXYZJ3G", NULL},
    {"join.json", 1, "line.join", "01J1SH5FRPNDYN9YE44T6B7P28", NULL},
    {"leave.json", 0, "line.leave", "01JHCXXDH22KEZEMVQB9XB0X1H", NULL},
    {"memberJoined.json", 0, "line.memberJoined", "01JK15MZGQZJDRBSTH24ZVB0S6", NULL},
    {"memberLeft.json", 0, "line.memberLeft", "01JA0MPN6H2MNPKKW1BHA57MQM", NULL},
    {"postback.json", 0, "line.postback", "01JC534C9FHB2QW525KMNYJBQB", U1},
    {"postback.json", 1, "line.postback", "01JMQH6FEDCWG9MZGKV4JMKGYH", U1},
    {"postback.json", 2, "line.postback", "01J8RVMRP4KRMQ8ZEY6FGS2GEA", U1},
    {"postback.json", 3, "line.postback", "01J1WE8FX1XVTZWG8NQ0AD57VE", U2},
    {"postback.json", 4, "line.postback", "01JK20R8XE0VFAK19GP2EVR4A5", U3},
    {"videoPlayComplete.json", 0, "line.videoPlayComplete", "01JC49W4WKB1AX05REA92T6V6J", U1},
    {"beacon.json", 0, "line.beacon", "01JA4CVTW3YQ8073Y8NEGQFAXH", U1},
    {"beacon.json", 1, "line.beacon", "01JVZ0FNSHPTTYS4QABCSCW296", U1},
    {"beacon.json", 2, "line.beacon", "01JD5MFEDD82F89M0TH830YR98", U1},
    {"accountLink.json", 0, "line.accountLink", "01JP6QTZBMVMZM7TC2X0PVKE1C", U1},
    {"accountLink.json", 1, "line.accountLink", "01JN6CY1H4KDYMK92S78GB91YK", NULL}, /* failed */
    {"membership.json", 0, "line.membership", "01JC4GQNEGYPTYF5WB3RR5VCBT", U1},
    {"membership.json", 1, "line.membership", "01JVCW0V5509A7SBFPX9AWMD0F", U1},
    {"membership.json", 2, "line.membership", "01J24GCQE97BWAK3Y5RD8RXYA8", U1},
    {"module.json", 0, "line.module", "01JDCZKEMAGY3GKNQZBKDK1D2M", NULL},
    {"module.json", 1, "line.module", "01JPNKB7MR4AZX3YAZ1SF1NP4D", NULL},
    {"activated.json", 0, "line.activated", "01J6W18BMTR1CGHMKP43KVS9YX", U1},
    {"deactivated.json", 0, "line.deactivated", "01JH6Z3XH41YEP59YCEXAJ782K", U1},
    {"botSuspended.json", 0, "line.botSuspended", "01JTZPCFZ73HDFWFNPV3F8G82M", NULL},
    {"botResumed.json", 0, "line.botResumed", "01JBK4MZYBJZD3QCYWB7PWVSZ1", NULL},
    {"delivery.json", 0, "line.delivery", "01JR04C9FVFZ49ZM2958BV5H9D", U1},
    {"things.json", 0, "line.things", "01JYZ47N5RNZPA0GK2JARX0GZC", U1},
    {"things.json", 1, "line.things", "01J02NDAWVS3ZFP0T2W2NZPNVD", U1},
    {"things.json", 2, "line.things", "01JVJGB4V6SP28DNK39ERC34PA", U1},
    {"messageEdited.json", 0, "line.messageEdited", "01JXPQ5J9BNR4YYQDRXKG71ZKB", U2},
};
#define NFIXTURE_EVENTS (sizeof fixture_events / sizeof fixture_events[0])

/* The discriminator mapping of webhook.yml's Event and MessageContent. */
static const char *const yml_topics[] = {
    "line.message.text",      "line.message.image", "line.message.video",
    "line.message.audio",     "line.message.file",  "line.message.location",
    "line.message.sticker",   "line.unsend",        "line.follow",
    "line.unfollow",          "line.join",          "line.leave",
    "line.memberJoined",      "line.memberLeft",    "line.postback",
    "line.videoPlayComplete", "line.beacon",        "line.accountLink",
    "line.membership",        "line.module",        "line.activated",
    "line.deactivated",       "line.botSuspended",  "line.botResumed",
    "line.delivery",
};

static void check_fixture_file(const char *file)
{
    size_t len;
    char *body = slurp(file, &len);
    json_object *doc = parse_json(body, len);
    json_object *events;
    assert_true(json_object_object_get_ex(doc, "events", &events));

    webhook_batch b;
    parse_ok(body, len, &b);
    size_t want_n = 0;
    for (size_t k = 0; k < NFIXTURE_EVENTS; k++) {
        const struct fixture_event *fx = &fixture_events[k];
        if (strcmp(fx->file, file) != 0)
            continue;
        want_n++;
        assert_true(fx->index < b.n);
        const bus_msg *m = &b.msgs[fx->index];
        assert_string_equal(m->shop, SHOP);
        assert_string_equal(m->topic, fx->topic);
        assert_true(topic_valid(m->topic));
        assert_string_equal(m->uid, fx->uid);
        assert_str_or_null(m->user, fx->user);

        /* the payload is the whole event, as JSON */
        assert_non_null(m->json);
        assert_int_equal(strlen(m->json), m->len);
        json_object *got = parse_json(m->json, m->len);
        json_object *orig = json_object_array_get_idx(events, fx->index);
        json_object *gt, *ot;
        assert_true(json_object_object_get_ex(got, "type", &gt));
        assert_true(json_object_object_get_ex(orig, "type", &ot));
        assert_string_equal(json_object_get_string(gt), json_object_get_string(ot));
        if (!json_object_equal(got, orig))
            fail_msg("%s events[%zu]: payload differs from the event: %s", file, fx->index,
                     m->json);
        json_object_put(got);
    }
    assert_int_equal(b.n, want_n);
    assert_int_equal(json_object_array_length(events), want_n);
    webhook_batch_free(&b);
    json_object_put(doc);
    free(body);
}

static void every_event_type(void **state)
{
    (void)state;
    for (size_t k = 0; k < NFIXTURE_EVENTS; k++)
        if (k == 0 || strcmp(fixture_events[k].file, fixture_events[k - 1].file) != 0)
            check_fixture_file(fixture_events[k].file);

    /* every type webhook.yml defines has at least one fixture event */
    for (size_t t = 0; t < sizeof yml_topics / sizeof yml_topics[0]; t++) {
        int found = 0;
        for (size_t k = 0; k < NFIXTURE_EVENTS && !found; k++)
            found = strcmp(fixture_events[k].topic, yml_topics[t]) == 0;
        if (!found)
            fail_msg("no fixture event for %s", yml_topics[t]);
    }
}

/* Every fixture file is checked: none sits in the directory untested. */
static void every_fixture_file_listed(void **state)
{
    (void)state;
    DIR *d = opendir(KZ_WEBHOOK_FIXTURES);
    assert_non_null(d);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        files++;
        int listed = 0;
        for (size_t k = 0; k < NFIXTURE_EVENTS && !listed; k++)
            listed = strcmp(fixture_events[k].file, e->d_name) == 0;
        if (!listed)
            fail_msg("fixture %s has no expectations in fixture_events", e->d_name);
    }
    closedir(d);
    assert_true(files >= 21);
}

/* The payload is the event's bytes as LINE sent them, without the
 * whitespace between tokens: escapes ('\/', \uXXXX pairs) and UTF-8 kept. */
static void payload_text(void **state)
{
    (void)state;
    size_t len;
    char *body = slurp("message.json", &len);
    webhook_batch b;
    parse_ok(body, len, &b);
    assert_true(b.n >= 5);
    assert_non_null(strstr(b.msgs[2].json, "\"Thinking face \\uD83E\\uDD28 and a slash \\/\""));
    assert_non_null(strstr(b.msgs[1].json, "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1"
                                           "\xe3\x81\xaf"));
    assert_non_null(strstr(b.msgs[4].json, "\"originalContentUrl\":\"https://example.com/"));
    /* compact: no newline or indentation from the pretty fixture */
    assert_null(strchr(b.msgs[0].json, '\n'));
    assert_int_equal(b.msgs[0].json[0], '{');
    webhook_batch_free(&b);
    free(body);
}

/* Whitespace between tokens goes, nothing else changes: strings with
 * spaces, escaped quotes and backslashes, numbers json-c would rewrite, a
 * member given twice. The fields kizuna reads are decoded, the last of a
 * repeated member counts (as for json-c), and an escaped "events" key is
 * still the events array. */
static void payload_as_sent(void **state)
{
    (void)state;
    const char *body =
        "{ \"destination\" : \"U1\" ,\n \"ev\\u0065nts\" : [\n"
        "  { \"type\" : \"follow\", \"type\" : \"message\",\n"
        "    \"message\" : { \"type\" : \"te\\u0078t\", \"text\" : \" a \\\" b \\\\\" } ,\n"
        "    \"webhookEventId\" : \"01\\u0041\", \"n\" : [ -0 , 1.50 , 1E+2 ,"
        " 123456789012345678901234567890 , true , null ],\n"
        "    \"source\" : { \"userId\" : \"U1\", \"type\" : \"user\" , \"userId\" : \"U\\/2\" } "
        "}\t\r\n"
        " ]\n}\n";
    const char *want =
        "{\"type\":\"follow\",\"type\":\"message\",\"message\":{\"type\":"
        "\"te\\u0078t\",\"text\":\" a \\\" b \\\\\"},\"webhookEventId\":\"01\\u0041\","
        "\"n\":[-0,1.50,1E+2,123456789012345678901234567890,true,null],"
        "\"source\":{\"userId\":\"U1\",\"type\":\"user\",\"userId\":\"U\\/2\"}}";
    webhook_batch b;
    parse_ok(body, strlen(body), &b);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.msgs[0].json, want);
    assert_int_equal(b.msgs[0].len, strlen(want));
    assert_string_equal(b.msgs[0].topic, "line.message.text");
    assert_string_equal(b.msgs[0].uid, "01A");
    assert_string_equal(b.msgs[0].user, "U/2");
    webhook_batch_free(&b);

    /* the last "events" is the array, as json-c would read the body */
    const char *twice =
        "{\"events\":7,\"events\":[{\"type\":\"leave\",\"webhookEventId\":\"01L\"}]}";
    parse_ok(twice, strlen(twice), &b);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.msgs[0].topic, "line.leave");
    webhook_batch_free(&b);
    const char *last7 = "{\"events\":[],\"events\":7}";
    parse_fails(last7, strlen(last7), "body has no \"events\" array");
}

/* ---- unknown and invalid types ----------------------------------------- */

#define EV(extra)                                                                                  \
    "{\"webhookEventId\":\"E\",\"source\":{\"type\":\"user\",\"userId\":\"U1\"}," extra "}"

static void unknown_types(void **state)
{
    (void)state;
    char w123[124], w124[125], m115[116], m116[117];
    memset(w123, 'a', sizeof w123 - 1);
    w123[sizeof w123 - 1] = '\0';
    memset(w124, 'b', sizeof w124 - 1);
    w124[sizeof w124 - 1] = '\0';
    memset(m115, 'c', sizeof m115 - 1);
    m115[sizeof m115 - 1] = '\0';
    memset(m116, 'd', sizeof m116 - 1);
    m116[sizeof m116 - 1] = '\0';
    char topic123[130], mtopic115[130];
    snprintf(topic123, sizeof topic123, "line.%s", w123);
    snprintf(mtopic115, sizeof mtopic115, "line.message.%s", m115);

    static char body[4096];
    int w =
        snprintf(body, sizeof body,
                 "{\"destination\":\"U8189cf6745fc0d808977bdb0b9f22995\",\"events\":[" EV(
                     "\"type\":"
                     "\"futureThing"
                     "\","
                     "\"futureThing"
                     "\":{\"x\":1}") "," EV("\"type\":\"bad type!\"") "," EV("\"type\":\"\"") "," EV("\"type\":42") "," EV("\"mode\":\"active\"") "," EV("\"type"
                                                                                                                                                         "\":"
                                                                                                                                                         "\"a."
                                                                                                                                                         "b\"") "," EV("\"type\":\"%s\"") "," EV("\"type\":\"%s\"") "," EV("\"type\":\"message\",\"message\":{\"type\":\"sticker!\"}") "," EV("\"type\":\"message\"") "," EV("\"type\":\"message\",\"message\":\"text\"") "," EV("\"type\":\"message\",\"message\":{\"id\":\"1\"}") "," EV("\"type\":\"message\",\"message\":{\"type\":\"%s\"}") "," EV("\"type\":\"message\",\"message\":{\"type\":\"%s\"}") "," EV("\"type\":\"message\",\"message\":{\"type\":\"futureMedia\"}") "," EV("\"type\":\"under_score-dash9\"") "," EV("\"type\":\"MESSAGE\"") "]}",
                 w123, w124, m115, m116);
    assert_true(w > 0 && (size_t)w < sizeof body);
    const char *want[] = {
        "line.futureThing",
        "line.unknown",
        "line.unknown",
        "line.unknown",
        "line.unknown",
        "line.unknown",
        topic123, /* exactly KZ_TOPIC_MAX bytes */
        "line.unknown",
        "line.message.unknown",
        "line.message.unknown",
        "line.message.unknown",
        "line.message.unknown",
        mtopic115, /* exactly KZ_TOPIC_MAX bytes */
        "line.message.unknown",
        "line.message.futureMedia",
        "line.under_score-dash9",
        "line.MESSAGE",
    };
    assert_int_equal(strlen(topic123), KZ_TOPIC_MAX);
    assert_int_equal(strlen(mtopic115), KZ_TOPIC_MAX);

    webhook_batch b;
    parse_ok(body, (size_t)w, &b);
    assert_int_equal(b.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < b.n; i++) {
        if (strcmp(b.msgs[i].topic, want[i]) != 0)
            fail_msg("events[%zu]: topic %s, want %s", i, b.msgs[i].topic, want[i]);
        assert_true(topic_valid(b.msgs[i].topic));
        /* kept, with their uid and user */
        assert_string_equal(b.msgs[i].uid, "E");
        assert_string_equal(b.msgs[i].user, "U1");
        json_object *o = parse_json(b.msgs[i].json, b.msgs[i].len);
        json_object_put(o);
    }
    webhook_batch_free(&b);
}

static void user_edge_cases(void **state)
{
    (void)state;
    const char *body = "{\"events\":["
                       "{\"type\":\"follow\",\"source\":{\"type\":\"user\",\"userId\":7}},"
                       "{\"type\":\"follow\",\"source\":\"U1\"},"
                       "{\"type\":\"follow\",\"source\":{\"type\":\"user\",\"userId\":\"\"}},"
                       "{\"type\":\"follow\",\"userId\":\"U1\"},"
                       "{\"type\":\"follow\",\"source\":{\"type\":\"user\",\"userId\":\"U9\"}}"
                       "]}";
    webhook_batch b;
    parse_ok(body, strlen(body), &b);
    assert_int_equal(b.n, 5);
    for (size_t i = 0; i < 4; i++)
        assert_null(b.msgs[i].user);
    assert_string_equal(b.msgs[4].user, "U9");
    webhook_batch_free(&b);
}

/* A "\u0000" inside a string would cut it short in C: such a value is
 * treated as invalid rather than silently truncated. */
static void embedded_nul_strings(void **state)
{
    (void)state;
    const char *body =
        "{\"events\":["
        "{\"type\":\"follow\\u0000x\",\"webhookEventId\":\"01A\"},"
        "{\"type\":\"message\",\"webhookEventId\":\"01B\",\"message\":{\"type\":\"text\\u0000\"}},"
        "{\"type\":\"follow\",\"webhookEventId\":\"01\\u0000C\"},"
        "{\"type\":\"follow\",\"webhookEventId\":\"01D\",\"source\":{\"userId\":\"U1\\u0000\"}}"
        "]}";
    webhook_batch b;
    parse_ok(body, strlen(body), &b);
    assert_int_equal(b.n, 4);
    assert_string_equal(b.msgs[0].topic, "line.unknown");
    assert_string_equal(b.msgs[1].topic, "line.message.unknown");
    assert_string_equal(b.msgs[2].topic, "line.follow");
    assert_int_equal(strncmp(b.msgs[2].uid, "sha256:", 7), 0);
    assert_string_equal(b.msgs[3].uid, "01D");
    assert_null(b.msgs[3].user);
    /* the payload keeps the escaped NUL */
    assert_non_null(strstr(b.msgs[0].json, "follow\\u0000x"));
    webhook_batch_free(&b);
}

/* ---- uids -------------------------------------------------------------- */

#define FOLLOW_NOID(ts, redelivery)                                                                \
    "{\"type\":\"follow\",\"timestamp\":" ts ",\"source\":{\"type\":\"user\",\"userId\":\"U1\"},"  \
    "\"deliveryContext\":{\"isRedelivery\":" redelivery "},\"follow\":{\"isUnblocked\":false}}"

static void hashed_uids(void **state)
{
    (void)state;
    const char *body =
        "{\"events\":[" FOLLOW_NOID("1", "false") "," FOLLOW_NOID("2", "false") "," FOLLOW_NOID(
            "1", "true") ","
                         "{\"type\":\"follow\",\"webhookEventId\":\"\",\"timestamp\":1}]}";
    webhook_batch a, b;
    parse_ok(body, strlen(body), &a);
    parse_ok(body, strlen(body), &b);
    assert_int_equal(a.n, 4);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(strncmp(a.msgs[i].uid, "sha256:", 7), 0);
        assert_int_equal(strlen(a.msgs[i].uid), 7 + 64);
        assert_int_equal(strspn(a.msgs[i].uid + 7, "0123456789abcdef"), 64);
        /* stable across parses */
        assert_string_equal(a.msgs[i].uid, b.msgs[i].uid);
    }
    /* sha256 of the event's JSON without deliveryContext, computed apart:
     * {"type":"follow","timestamp":1,"source":{"type":"user","userId":"U1"},
     *  "follow":{"isUnblocked":false}} */
    assert_string_equal(a.msgs[0].uid,
                        "sha256:1dfd80b85dd1fd074e1341a9771360d561667720d5ee34cbe0f62bd85ba91bd4");
    /* a different event, a different uid */
    assert_string_not_equal(a.msgs[0].uid, a.msgs[1].uid);
    assert_string_not_equal(a.msgs[0].uid, a.msgs[3].uid);
    /* a redelivered copy deduplicates, but its payload says it is one */
    assert_string_equal(a.msgs[0].uid, a.msgs[2].uid);
    assert_non_null(strstr(a.msgs[2].json, "\"deliveryContext\":{\"isRedelivery\":true}"));
    /* the payload keeps the original key order */
    assert_string_equal(a.msgs[0].json, FOLLOW_NOID("1", "false"));
    webhook_batch_free(&a);
    webhook_batch_free(&b);

    /* with a webhookEventId, a redelivery has the same uid anyway */
    const char *re = "{\"events\":[{\"type\":\"unfollow\",\"webhookEventId\":\"01X\","
                     "\"deliveryContext\":{\"isRedelivery\":true}}]}";
    parse_ok(re, strlen(re), &a);
    assert_string_equal(a.msgs[0].uid, "01X");
    assert_null(a.msgs[0].user);
    webhook_batch_free(&a);
}

/* ---- batches ----------------------------------------------------------- */

static void verify_request(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"destination\":\"U8189cf6745fc0d808977bdb0b9f22995\",\"events\":[]}",
        " \r\n\t{\"destination\":\"U8189cf6745fc0d808977bdb0b9f22995\",\"events\":[ ]}\r\n ",
    };
    for (size_t i = 0; i < 2; i++) {
        webhook_batch b;
        parse_ok(bodies[i], strlen(bodies[i]), &b);
        assert_int_equal(b.n, 0);
        webhook_batch_free(&b);
        assert_int_equal(b.n, 0);
        assert_null(b.msgs);
        assert_null(b.priv);
    }
}

static void keeps_order(void **state)
{
    (void)state;
    const char *body =
        "{\"destination\":\"U8189cf6745fc0d808977bdb0b9f22995\",\"events\":["
        "{\"type\":\"message\",\"webhookEventId\":\"01A\",\"source\":{\"type\":\"user\","
        "\"userId\":\"U3\"},\"message\":{\"id\":\"1\",\"type\":\"text\",\"text\":\"hi\"}},"
        "{\"type\":\"follow\",\"webhookEventId\":\"01B\",\"source\":{\"type\":\"user\","
        "\"userId\":\"U1\"},\"follow\":{\"isUnblocked\":false}},"
        "{\"type\":\"postback\",\"webhookEventId\":\"01C\",\"source\":{\"type\":\"user\","
        "\"userId\":\"U2\"},\"postback\":{\"data\":\"a=1\"}}]}";
    webhook_batch b;
    char shop[] = "shop-z";
    char err[64];
    assert_int_equal(webhook_parse(shop, body, strlen(body), &b, err, sizeof err), 0);
    shop[0] = 'X'; /* the batch owns its copy */
    assert_int_equal(b.n, 3);
    const char *topics[] = {"line.message.text", "line.follow", "line.postback"};
    const char *uids[] = {"01A", "01B", "01C"};
    const char *users[] = {"U3", "U1", "U2"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(b.msgs[i].shop, "shop-z");
        assert_string_equal(b.msgs[i].topic, topics[i]);
        assert_string_equal(b.msgs[i].uid, uids[i]);
        assert_string_equal(b.msgs[i].user, users[i]);
    }
    webhook_batch_free(&b);
    webhook_batch_free(&b); /* idempotent */
}

/* The body need not be NUL-terminated: only len bytes are read. */
static void explicit_length(void **state)
{
    (void)state;
    const char *s = "{\"events\":[{\"type\":\"leave\",\"webhookEventId\":\"01L\"}]}";
    size_t len = strlen(s);
    char *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, s, len); /* no terminator: ASan catches an over-read */
    webhook_batch b;
    parse_ok(buf, len, &b);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.msgs[0].topic, "line.leave");
    webhook_batch_free(&b);
    /* cut short: not JSON */
    parse_fails(buf, len - 1, "body is not JSON: unexpected end of data");
    free(buf);

    /* a bare number at the very end of the buffer */
    parse_fails("12", 2, "body is not a JSON object");
}

/* ---- malformed bodies -------------------------------------------------- */

/* One event over the payload limit (a body can hold one when
 * kizuna.max_body is raised) is refused as too large, nothing kept. */
static void event_over_the_payload_limit(void **state)
{
    (void)state;
    size_t pad = KZ_PAYLOAD_MAX;
    char *body = malloc(pad + 128);
    assert_non_null(body);
    int n = sprintf(body, "{\"events\":[{\"type\":\"follow\"},{\"type\":\"message\",\"x\":\"");
    memset(body + n, 'a', pad);
    strcpy(body + n + pad, "\"}]}");
    webhook_batch b;
    char err[256] = "";
    assert_int_equal(webhook_parse(SHOP, body, strlen(body), &b, err, sizeof err), KZ_ETOOBIG);
    assert_string_equal(err, "event 1 is over the limit of 1048576 bytes for one event");
    assert_null(b.msgs);
    assert_int_equal(b.n, 0);
    assert_null(b.priv);
    webhook_batch_free(&b);
    free(body);
}

static void malformed_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *err;
    } cases[] = {
        {"", "body is not JSON: unexpected end of data"},
        {"   ", "body is not JSON: unexpected end of data"},
        {"{", "body is not JSON: unexpected end of data"},
        {"{\"events\":[", "body is not JSON: unexpected end of data"},
        {"{\"events\":[}", "body is not JSON: unexpected character"},
        {"nope", "body is not JSON: null expected"},
        {"x", "body is not JSON: unexpected character"},
        {"{\"events\":[],}", "body is not JSON: unexpected character"},
        {"{\"events\":[]} x", "body is not JSON: trailing data at byte 14"},
        {"{\"events\":[]}{}", "body is not JSON: trailing data at byte 13"},
        {"{\"events\":[],\"x\":\"\xff\"}", "body is not JSON: invalid utf-8 string"},
        {"[{\"events\":[]}]", "body is not a JSON object"},
        /* json-c takes these; RFC 8259 does not, nor do event payloads */
        {"{\"events\":[{\"type\":\"follow\",\"n\":NaN}]}",
         "body is not JSON: not as RFC 8259 writes it (NaN, Infinity, single quotes or a raw "
         "control character in a string)"},
        {"{\"events\":[],\"x\":\"a\x1f\"}",
         "body is not JSON: not as RFC 8259 writes it (NaN, Infinity, single quotes or a raw "
         "control character in a string)"},
        {"{\"events\":[],\"x\":\"a\tb\"}",
         "body is not JSON: not as RFC 8259 writes it (NaN, Infinity, single quotes or a raw "
         "control character in a string)"},
        /* SQLite 3.40's json_valid() takes an object as a member name */
        {"{\"events\":[{\"type\":\"follow\",{\"m\":1}:2}]}",
         "body is not JSON: quoted object property name expected"},
        {"{\"events\":[{\"n\":01}]}", "body is not JSON: number expected"},
        {"\"events\"", "body is not a JSON object"},
        {"null", "body is not a JSON object"},
        {"42 ", "body is not a JSON object"},
        {"{}", "body has no \"events\" array"},
        {"{\"destination\":\"U1\",\"Events\":[]}", "body has no \"events\" array"},
        {"{\"events\":null}", "body has no \"events\" array"},
        {"{\"events\":{}}", "body has no \"events\" array"},
        {"{\"events\":\"[]\"}", "body has no \"events\" array"},
        {"{\"events\":[7]}", "events[0] is not an object"},
        {"{\"events\":[{\"type\":\"follow\"},{},{\"type\":\"join\"},[{}],{}]}",
         "events[3] is not an object"},
        {"{\"events\":[{},{},{},null]}", "events[3] is not an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        parse_fails(cases[i].body, strlen(cases[i].body), cases[i].err);

    /* a NUL byte inside the given length */
    parse_fails("{\"events\":[]}\0", 14, "body is not JSON: trailing data at byte 13");
    parse_fails("{\"events\":[\0]}", 14, "body is not JSON: unexpected end of data");

    /* nesting deeper than json-c's limit */
    char deep[200] = "{\"events\":[{\"x\":";
    size_t n = strlen(deep);
    for (int k = 0; k < 40; k++)
        deep[n++] = '[';
    deep[n] = '\0';
    parse_fails(deep, n, "body is not JSON: nesting too deep");

    /* json-c's limit exactly: 32 levels are taken, 33 are not (a plugin
     * reading a payload with json_tokener_parse() could not) */
    char at[128];
    for (int levels = 32; levels <= 33; levels++) {
        n = (size_t)sprintf(at, "{\"events\":[{\"x\":");
        for (int k = 0; k < levels - 3; k++)
            at[n++] = '[';
        for (int k = 0; k < levels - 3; k++)
            at[n++] = ']';
        n += (size_t)sprintf(at + n, "}]}");
        webhook_batch b;
        char err[128] = "";
        int rc = webhook_parse(SHOP, at, n, &b, err, sizeof err);
        if (levels == 32) {
            assert_int_equal(rc, 0);
            assert_int_equal(b.n, 1);
            json_object_put(parse_json(b.msgs[0].json, b.msgs[0].len));
            webhook_batch_free(&b);
        } else {
            assert_int_equal(rc, KZ_EINVAL);
            assert_string_equal(err, "body is not JSON: nesting too deep");
        }
    }

    /* UTF-8 that RFC 3629 forbids and json-c lets through: an overlong '/',
     * a surrogate, a code point above U+10FFFF, a sequence cut short */
    static const char *const bad_utf8[] = {"\xc0\xaf",         "\xe0\x80\xaf", "\xed\xa0\x80",
                                           "\xf4\x90\x80\x80", "\xf0\x9f\xa4", "\xe3\x81"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char body[64];
        int len = snprintf(body, sizeof body, "{\"events\":[],\"x\":\"a%sb\"}", bad_utf8[i]);
        const char *want =
            i < 4 ? "body is not JSON: invalid UTF-8" : "body is not JSON: invalid utf-8 string";
        parse_fails(body, (size_t)len, want);
    }
    /* and what it allows: the last code point of each length */
    const char *good = "{\"events\":[],\"x\":\"\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}";
    webhook_batch b;
    parse_ok(good, strlen(good), &b);
    webhook_batch_free(&b);
}

static void bad_arguments(void **state)
{
    (void)state;
    webhook_batch b;
    char err[64];
    assert_int_equal(webhook_parse(NULL, "{\"events\":[]}", 13, &b, err, sizeof err), KZ_EINVAL);
    assert_int_equal(webhook_parse("", "{\"events\":[]}", 13, &b, err, sizeof err), KZ_EINVAL);
    assert_int_equal(webhook_parse(SHOP, NULL, 5, &b, err, sizeof err), KZ_EINVAL);
    assert_int_equal(webhook_parse(SHOP, "{}", 2, NULL, err, sizeof err), KZ_EINVAL);
    /* NULL body of length 0: an empty body, not JSON */
    assert_int_equal(webhook_parse(SHOP, NULL, 0, &b, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "body is not JSON: unexpected end of data");
    /* no room for the reason: still fails cleanly */
    assert_int_equal(webhook_parse(SHOP, "x", 1, &b, NULL, 0), KZ_EINVAL);
    char small[10];
    assert_int_equal(webhook_parse(SHOP, "[]", 2, &b, small, sizeof small), KZ_EINVAL);
    assert_string_equal(small, "body is n");

    webhook_batch zero = {0};
    webhook_batch_free(&zero);
    webhook_batch_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signature_known_answer),
        cmocka_unit_test(signature_utf8_body),
        cmocka_unit_test(signature_rejects),
        cmocka_unit_test(signature_many_secrets_and_threads),
        cmocka_unit_test(every_event_type),
        cmocka_unit_test(every_fixture_file_listed),
        cmocka_unit_test(payload_text),
        cmocka_unit_test(payload_as_sent),
        cmocka_unit_test(unknown_types),
        cmocka_unit_test(user_edge_cases),
        cmocka_unit_test(embedded_nul_strings),
        cmocka_unit_test(hashed_uids),
        cmocka_unit_test(verify_request),
        cmocka_unit_test(keeps_order),
        cmocka_unit_test(explicit_length),
        cmocka_unit_test(malformed_bodies),
        cmocka_unit_test(event_over_the_payload_limit),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
