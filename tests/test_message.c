/* LINE message validation (core/message.c) and the SDK message builder
 * (sdk/include/kizuna/message.h): every rule with a passing example and the
 * exact LINE-shaped detail of each violation, counting in UTF-16 units and
 * graphemes, error rendering, and builder output validated round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json-c/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/host.h>
#include <kizuna/message.h>

#include "message.h"

/* ---- helpers ------------------------------------------------------------ */

/* Strings made by the helpers below, freed after each test. */
static char *allocs[256];
static size_t n_allocs;

static char *keep(char *s)
{
    if (s == NULL)
        fail_msg("out of memory");
    if (n_allocs == sizeof allocs / sizeof allocs[0])
        fail_msg("too many test strings");
    allocs[n_allocs++] = s;
    return s;
}

static int free_allocs(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_allocs; i++)
        free(allocs[i]);
    n_allocs = 0;
    return 0;
}

/* printf with ' turned into " in the format (not in the arguments), so JSON
 * reads naturally in C: J("[{'type':'text','text':'%s'}]", s). */
static char *vJ(const char *prefix, const char *fmt, const char *suffix, va_list ap)
{
    size_t plen = strlen(prefix), slen = strlen(suffix);
    char *f = keep(malloc(plen + strlen(fmt) + slen + 1));
    memcpy(f, prefix, plen);
    strcpy(f + plen, fmt);
    strcat(f, suffix);
    for (char *p = f; *p; p++)
        if (*p == '\'')
            *p = '"';
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, f, ap2);
    va_end(ap2);
    char *out = keep(malloc((size_t)n + 1));
    vsnprintf(out, (size_t)n + 1, f, ap);
    return out;
}

static char *J(const char *fmt, ...) KZ_PRINTF(1, 2);
static char *J(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = vJ("", fmt, "", ap);
    va_end(ap);
    return out;
}

/* J of one message object, in an array. */
static char *M(const char *fmt, ...) KZ_PRINTF(1, 2);
static char *M(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = vJ("[", fmt, "]", ap);
    va_end(ap);
    return out;
}

/* s with ' turned into ". */
static char *Q(const char *s)
{
    char *out = keep(strdup(s));
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

/* s repeated n times. */
static char *rep(const char *s, size_t n)
{
    size_t len = strlen(s);
    char *out = keep(malloc(len * n + 1));
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * len, s, len);
    out[len * n] = '\0';
    return out;
}

static message_error E;

static void dump(const char *json)
{
    char line[4096];
    message_error_line(&E, line, sizeof line);
    print_message("input: %.300s\nerror: %s\n", json, line);
}

#define OK(json) ok_at(json, __LINE__)
static void ok_at(const char *json, int line)
{
    if (message_validate(json, strlen(json), 0, &E) != 0) {
        dump(json);
        fail_msg("line %d: expected valid", line);
    }
    assert_int_equal(E.total, 0);
}

/* Exactly one problem, with this property and message. */
#define BAD(json, property, message) bad_at(json, property, message, __LINE__)
static void bad_at(const char *json, const char *property, const char *message, int line)
{
    int rc = message_validate(json, strlen(json), 0, &E);
    if (rc != KZ_EINVAL || E.total != 1 || strcmp(E.details[0].property, property) != 0 ||
        strcmp(E.details[0].message, message) != 0) {
        dump(json);
        fail_msg("line %d: expected exactly {\"message\":\"%s\",\"property\":\"%s\"}", line,
                 message, property);
    }
    assert_string_equal(E.message, "The request body has 1 error(s)");
}

/* ---- counting ----------------------------------------------------------- */

static void counting(void **state)
{
    (void)state;
    assert_int_equal(message_utf16_len("abc", 3), 3);
    assert_int_equal(message_utf16_len("日本語", strlen("日本語")), 3);
    assert_int_equal(message_utf16_len("😀", 4), 2);
    assert_int_equal(message_utf16_len("a😀b", 6), 4);
    assert_int_equal(message_utf16_len("\xff", 1), (size_t)-1);
    assert_int_equal(message_utf16_len("\xe3\x81", 2), (size_t)-1);     /* cut short */
    assert_int_equal(message_utf16_len("\xc0\xaf", 2), (size_t)-1);     /* overlong */
    assert_int_equal(message_utf16_len("\xed\xa0\x80", 3), (size_t)-1); /* surrogate */

    static const struct {
        const char *s;
        size_t n;
    } g[] = {
        {"abc", 3},
        {"ありがとう", 5},
        {"😀", 1},
        {"👍🏽", 1},                  /* skin tone */
        {"🇯🇵🇺🇸", 2},                      /* two flags */
        {"👨‍👩‍👧", 1},        /* ZWJ family */
        {"か\xe3\x82\x99", 1},            /* か + combining dakuten */
        {"e\xcc\x81", 1},                 /* e + combining acute */
        {"1\xef\xb8\x8f\xe2\x83\xa3", 1}, /* keycap 1️⃣ */
        {"a\r\nb", 3},
        {"กำ", 1}, /* Thai sara am joins */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (message_grapheme_len(g[i].s, strlen(g[i].s)) != g[i].n)
            fail_msg("'%s': %zu graphemes, expected %zu", g[i].s,
                     message_grapheme_len(g[i].s, strlen(g[i].s)), g[i].n);
}

/* ---- the array ---------------------------------------------------------- */

static void array_size(void **state)
{
    (void)state;
    const char *one = "{'type':'text','text':'hi'}";
    OK(J("[%s]", one));
    OK(J("[%s,%s,%s,%s,%s]", one, one, one, one, one));
    BAD("[]", "messages", "Size must be between 1 and 5");
    BAD(J("[%s,%s,%s,%s,%s,%s]", one, one, one, one, one, one), "messages",
        "Size must be between 1 and 5");
    /* a smaller maximum */
    const char *four = J("[%s,%s,%s,%s]", one, one, one, one);
    assert_int_equal(message_validate(four, strlen(four), 3, &E), KZ_EINVAL);
    assert_string_equal(E.details[0].message, "Size must be between 1 and 3");
    BAD("{}", "messages", "Must be an array");
    BAD("[1]", "messages[0]", "Must be an object");
    BAD("[null]", "messages[0]", "Must be an object");
    /* out may be NULL */
    assert_int_equal(message_validate("[]", 2, 0, NULL), KZ_EINVAL);
    assert_int_equal(message_validate(J("[%s]", one), strlen(J("[%s]", one)), 0, NULL), 0);
}

static void parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"[{\"type\":", "The request body could not be parsed as JSON (line: 1, column: 10)"},
        {"[\n {\"type\" \"text\"}]",
         "The request body could not be parsed as JSON (line: 2, column: 10)"},
        {"[] x", "The request body could not be parsed as JSON (line: 1, column: 4)"},
        {"", "The request body could not be parsed as JSON (line: 1, column: 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(message_validate(cases[i].json, strlen(cases[i].json), 0, &E), KZ_EINVAL);
        assert_string_equal(E.message, cases[i].message);
        assert_int_equal(E.n, 0);
    }
    assert_int_equal(message_validate(NULL, 0, 0, &E), KZ_EINVAL);
    /* len is honoured: the text need not be NUL-terminated */
    const char *s = "[{\"type\":\"text\",\"text\":\"hi\"}]garbage";
    assert_int_equal(message_validate(s, strlen(s) - 7, 0, &E), 0);
    /* trailing whitespace is fine */
    OK("[{\"type\":\"text\",\"text\":\"hi\"}] \n");
}

static void unknown_type(void **state)
{
    (void)state;
    BAD(M("{'type':'file','text':'x'}"), "messages[0].type",
        "Must be one of the following values: [text, image, video, audio, location, sticker, "
        "template, imagemap, flex, textV2, coupon]");
    BAD(M("{'text':'x'}"), "messages[0].type", "May not be empty");
    BAD(M("{'type':5}"), "messages[0].type", "Must be a string");
}

/* ---- text --------------------------------------------------------------- */

static void text_rules(void **state)
{
    (void)state;
    OK(M("{'type':'text','text':'Hello, world','quoteToken':'yHAz4Ua2wx7'}"));
    BAD(M("{'type':'text','text':''}"), "messages[0].text", "May not be empty");
    BAD(M("{'type':'text'}"), "messages[0].text", "May not be empty");
    BAD(M("{'type':'text','text':null}"), "messages[0].text", "May not be empty");
    BAD(M("{'type':'text','text':12}"), "messages[0].text", "Must be a string");
    BAD(M("{'type':'text','text':'a','quoteToken':1}"), "messages[0].quoteToken",
        "Must be a string");

    /* 5000 UTF-16 code units */
    OK(M("{'type':'text','text':'%s'}", rep("a", 5000)));
    BAD(M("{'type':'text','text':'%s'}", rep("a", 5001)), "messages[0].text",
        "Length must be between 0 and 5000");
    /* 😀 is 2 units: 2500 of them are exactly 5000 */
    OK(M("{'type':'text','text':'%s'}", rep("😀", 2500)));
    BAD(M("{'type':'text','text':'%s'}", rep("😀", 2501)), "messages[0].text",
        "Length must be between 0 and 5000");
    BAD(M("{'type':'text','text':'%sa'}", rep("😀", 2500)), "messages[0].text",
        "Length must be between 0 and 5000");
    /* escaped surrogate pairs count the same as raw UTF-8 */
    OK(M("{'type':'text','text':'%s'}", rep("\\ud83d\\ude00", 2500)));
    BAD(M("{'type':'text','text':'%s'}", rep("\\ud83d\\ude00", 2501)), "messages[0].text",
        "Length must be between 0 and 5000");
    /* Japanese: 1 unit per character */
    OK(M("{'type':'text','text':'%s'}", rep("絆", 5000)));
    BAD(M("{'type':'text','text':'%s'}", rep("あ", 5001)), "messages[0].text",
        "Length must be between 0 and 5000");
    /* an escaped newline is one unit */
    OK(M("{'type':'text','text':'%s'}", rep("\\n", 5000)));
    /* invalid UTF-8 */
    BAD(M("{'type':'text','text':'\xff'}"), "messages[0].text", "Must be valid UTF-8 text");
}

static void text_emojis(void **state)
{
    (void)state;
    const char *e0 = "{'index':0,'productId':'5ac1bfd5040ab15980c9b435','emojiId':'001'}";
    OK(M("{'type':'text','text':'$ LINE emoji $','emojis':[%s,"
         "{'index':13,'productId':'5ac1bfd5040ab15980c9b435','emojiId':'002'}]}",
         e0));
    /* the index counts UTF-16 units: 😀 before the $ is 2 */
    OK(M("{'type':'text','text':'😀$','emojis':[{'index':2,'productId':'p','emojiId':'1'}]}"));
    BAD(M("{'type':'text','text':'😀$','emojis':[{'index':1,'productId':'p','emojiId':'1'}]}"),
        "messages[0].emojis[0].index", "Must be the position of a $ in text (UTF-16 units from 0)");
    BAD(M("{'type':'text','text':'$ x $','emojis':[%s,{'index':3,'productId':'p','emojiId':'1'}]}",
          e0),
        "messages[0].emojis[1].index", "Must be the position of a $ in text (UTF-16 units from 0)");
    BAD(M("{'type':'text','text':'$','emojis':[{'index':-1,'productId':'p','emojiId':'1'}]}"),
        "messages[0].emojis[0].index", "Must be greater than or equal to 0");
    BAD(M("{'type':'text','text':'$','emojis':[{'index':0,'emojiId':'1'}]}"),
        "messages[0].emojis[0].productId", "May not be empty");
    BAD(M("{'type':'text','text':'$','emojis':[{'index':0,'productId':'p'}]}"),
        "messages[0].emojis[0].emojiId", "May not be empty");
    BAD(M("{'type':'text','text':'$','emojis':[{'productId':'p','emojiId':'1'}]}"),
        "messages[0].emojis[0].index", "May not be null");
    BAD(M("{'type':'text','text':'$','emojis':{}}"), "messages[0].emojis", "Must be an array");
    /* at most 20 */
    char *many = rep("{'index':0,'productId':'p','emojiId':'1'},", 21);
    many[strlen(many) - 1] = '\0';
    BAD(M("{'type':'text','text':'$','emojis':[%s]}", many), "messages[0].emojis",
        "Size must be between 0 and 20");
}

static void text_v2(void **state)
{
    (void)state;
    /* LINE's reference example */
    OK(M("{'type':'textV2','text':'Welcome, {user1}! {laugh}\\n{everyone} There is a newcomer!',"
         "'substitution':{'user1':{'type':'mention','mentionee':{'type':'user',"
         "'userId':'U49585cd0d5'}},'laugh':{'type':'emoji','productId':'5a8555cfe6256cc92ea23c2a',"
         "'emojiId':'002'},'everyone':{'type':'mention','mentionee':{'type':'all'}}}}"));
    OK(M("{'type':'textV2','text':'literal {{braces}} only'}"));
    BAD(M("{'type':'textV2','text':'Hi {name}'}"), "messages[0].text",
        "Placeholder {name} has no entry in substitution");
    BAD(M("{'type':'textV2','text':'Hi {name'}"), "messages[0].text",
        "Unmatched { (write {{ for a literal brace)");
    BAD(M("{'type':'textV2','text':'Hi }'}"), "messages[0].text",
        "Unmatched } (write }} for a literal brace)");
    BAD(M("{'type':'textV2','text':'{a-b}','substitution':{'a-b':{'type':'emoji',"
          "'productId':'p','emojiId':'1'}}}"),
        "messages[0].substitution.a-b", "Key must match \"^[0-9a-zA-Z_]{1,20}$\"");
    BAD(M("{'type':'textV2','text':'{u}','substitution':{'u':{'type':'mention',"
          "'mentionee':{'type':'user'}}}}"),
        "messages[0].substitution.u.mentionee.userId", "May not be empty");
    BAD(M("{'type':'textV2','text':'{u}','substitution':{'u':{'type':'sticker'}}}"),
        "messages[0].substitution.u.type", "Must be one of the following values: [mention, emoji]");
    BAD(M("{'type':'textV2','text':'{u}','substitution':{'u':{'type':'mention'}}}"),
        "messages[0].substitution.u.mentionee", "May not be null");
    BAD(M("{'type':'textV2','text':'%s'}", rep("x", 5001)), "messages[0].text",
        "Length must be between 0 and 5000");
    /* at most 20 mentions */
    BAD(M("{'type':'textV2','text':'%s','substitution':{'u':{'type':'mention',"
          "'mentionee':{'type':'all'}}}}",
          rep("{u}", 21)),
        "messages[0].text", "At most 20 mentions may be substituted in one message");
}

/* ---- media, sticker, location, coupon ---------------------------------- */

static void sticker_rules(void **state)
{
    (void)state;
    OK(M("{'type':'sticker','packageId':'446','stickerId':'1988'}"));
    BAD(M("{'type':'sticker','packageId':'446'}"), "messages[0].stickerId", "May not be empty");
    BAD(M("{'type':'sticker','packageId':446,'stickerId':'1988'}"), "messages[0].packageId",
        "Must be a string");
}

static void media_rules(void **state)
{
    (void)state;
    OK(M("{'type':'image','originalContentUrl':'https://example.com/original.jpg',"
         "'previewImageUrl':'https://example.com/preview.jpg'}"));
    BAD(M("{'type':'image','originalContentUrl':'http://example.com/original.jpg',"
          "'previewImageUrl':'https://example.com/preview.jpg'}"),
        "messages[0].originalContentUrl", "Must be an HTTPS URL (https://…)");
    BAD(M("{'type':'image','originalContentUrl':'https://example.com/a.jpg'}"),
        "messages[0].previewImageUrl", "May not be empty");
    const char *longurl = J("https://example.com/%s", rep("a", 2000 - 20));
    assert_int_equal(strlen(longurl), 2000);
    OK(M("{'type':'image','originalContentUrl':'%s','previewImageUrl':'%s'}", longurl, longurl));
    BAD(M("{'type':'image','originalContentUrl':'%sa','previewImageUrl':'%s'}", longurl, longurl),
        "messages[0].originalContentUrl", "Length must be between 0 and 2000");
    BAD(M("{'type':'image','originalContentUrl':'https://example.com/a b.jpg',"
          "'previewImageUrl':'https://example.com/p.jpg'}"),
        "messages[0].originalContentUrl", "Must be percent-encoded (no spaces)");

    OK(M("{'type':'video','originalContentUrl':'https://example.com/original.mp4',"
         "'previewImageUrl':'https://example.com/preview.jpg','trackingId':'track-id'}"));
    BAD(M("{'type':'video','originalContentUrl':'https://example.com/original.mp4',"
          "'previewImageUrl':'https://example.com/preview.jpg','trackingId':'track id'}"),
        "messages[0].trackingId", "May contain only a-z, A-Z, 0-9 and -.=,+*()%$&;:@{}!?<>[]");
    BAD(M("{'type':'video','originalContentUrl':'https://example.com/original.mp4',"
          "'previewImageUrl':'https://example.com/preview.jpg','trackingId':'%s'}",
          rep("t", 101)),
        "messages[0].trackingId", "Length must be between 0 and 100");

    OK(M("{'type':'audio','originalContentUrl':'https://example.com/original.m4a',"
         "'duration':60000}"));
    BAD(M("{'type':'audio','originalContentUrl':'https://example.com/original.m4a'}"),
        "messages[0].duration", "May not be null");
    BAD(M("{'type':'audio','originalContentUrl':'https://example.com/original.m4a',"
          "'duration':'60000'}"),
        "messages[0].duration", "Must be an integer");
    BAD(M("{'type':'audio','originalContentUrl':'https://example.com/a.m4a','duration':0}"),
        "messages[0].duration", "Must be greater than or equal to 1");
}

static void location_rules(void **state)
{
    (void)state;
    OK(M("{'type':'location','title':'my location','address':'1-3 Kioicho, Chiyoda-ku, Tokyo, "
         "102-8282, Japan','latitude':35.67966,'longitude':139.73669}"));
    OK(M("{'type':'location','title':'%s','address':'%s','latitude':0,'longitude':-180}",
         rep("東", 100), rep("a", 100)));
    BAD(M("{'type':'location','title':'%s','address':'a','latitude':0,'longitude':0}",
          rep("東", 101)),
        "messages[0].title", "Length must be between 0 and 100");
    BAD(M("{'type':'location','title':'t','address':'%s','latitude':0,'longitude':0}",
          rep("a", 101)),
        "messages[0].address", "Length must be between 0 and 100");
    BAD(M("{'type':'location','title':'t','address':'a','latitude':91,'longitude':0}"),
        "messages[0].latitude", "Must be between -90 and 90");
    BAD(M("{'type':'location','title':'t','address':'a','latitude':1}"), "messages[0].longitude",
        "May not be null");
    BAD(M("{'type':'location','title':'t','address':'a','latitude':'1','longitude':0}"),
        "messages[0].latitude", "Must be a number");
}

static void coupon_rules(void **state)
{
    (void)state;
    OK(M("{'type':'coupon','couponId':'01JYNW8JMQVFBNTRM9CP4B0MXA','deliveryTag':'spring'}"));
    BAD(M("{'type':'coupon'}"), "messages[0].couponId", "May not be empty");
    BAD(M("{'type':'coupon','couponId':'c','deliveryTag':'%s'}", rep("t", 31)),
        "messages[0].deliveryTag", "Length must be between 0 and 30");
}

/* ---- imagemap ------------------------------------------------------------ */

static const char *imagemap(const char *actions)
{
    return M("{'type':'imagemap','baseUrl':'https://example.com/bot/images/rm001',"
             "'altText':'This is an imagemap','baseSize':{'width':1040,'height':1040},"
             "'actions':[%s]}",
             actions);
}

static void imagemap_rules(void **state)
{
    (void)state;
    const char *area = "'area':{'x':0,'y':586,'width':520,'height':454}";
    /* LINE's example with video */
    OK(M(
        "{'type':'imagemap','baseUrl':'https://example.com/bot/images/rm001',"
        "'altText':'This is an imagemap','baseSize':{'width':1040,'height':1040},"
        "'video':{'originalContentUrl':'https://example.com/video.mp4',"
        "'previewImageUrl':'https://example.com/video_preview.jpg',"
        "'area':{'x':0,'y':0,'width':1040,'height':585},"
        "'externalLink':{'linkUri':'https://example.com/see_more.html','label':'See More'}},"
        "'actions':[{'type':'uri','linkUri':'https://example.com/',%s},"
        "{'type':'message','text':'Hello',%s},{'type':'clipboard','clipboardText':'3B48740B',%s}]}",
        area, area, area));
    BAD(imagemap(J("{'type':'postback','data':'x',%s}", area)), "messages[0].actions[0].type",
        "Must be one of the following values: [uri, message, clipboard]");
    BAD(imagemap(J("{'type':'uri','linkUri':'ftp://example.com/',%s}", area)),
        "messages[0].actions[0].linkUri",
        "Must use one of the following schemes: [http, https, line, tel]");
    BAD(imagemap(J("{'type':'message','text':'%s',%s}", rep("m", 401), area)),
        "messages[0].actions[0].text", "Length must be between 0 and 400");
    BAD(imagemap("{'type':'message','text':'x','area':{'x':-1,'y':0,'width':1,'height':1}}"),
        "messages[0].actions[0].area.x", "Must be greater than or equal to 0");
    BAD(imagemap("{'type':'message','text':'x'}"), "messages[0].actions[0].area",
        "May not be null");
    BAD(imagemap(""), "messages[0].actions", "May not be empty");
    char *many = rep(J("{'type':'message','text':'x',%s},", area), 51);
    many[strlen(many) - 1] = '\0';
    BAD(imagemap(many), "messages[0].actions", "Size must be between 1 and 50");
    BAD(M("{'type':'imagemap','baseUrl':'https://example.com/i','altText':'a',"
          "'baseSize':{'width':1000,'height':1040},'actions':[{'type':'message','text':'x',%s}]}",
          area),
        "messages[0].baseSize.width", "Must be 1040");
    BAD(M("{'type':'imagemap','baseUrl':'https://example.com/i','altText':'%s',"
          "'baseSize':{'width':1040,'height':1040},'actions':[{'type':'message','text':'x',%s}]}",
          rep("a", 1501), area),
        "messages[0].altText", "Length must be between 0 and 1500");
}

/* ---- templates and actions ---------------------------------------------- */

static const char *buttons(const char *fields, const char *actions)
{
    return M("{'type':'template','altText':'This is a buttons template',"
             "'template':{'type':'buttons'%s,'actions':[%s]}}",
             fields, actions);
}

static void buttons_rules(void **state)
{
    (void)state;
    const char *pb = "{'type':'postback','label':'Buy','data':'action=buy&itemid=123'}";
    /* LINE's example */
    OK(M("{'type':'template','altText':'This is a buttons template','template':{'type':'buttons',"
         "'thumbnailImageUrl':'https://example.com/bot/images/image.jpg',"
         "'imageAspectRatio':'rectangle','imageSize':'cover','imageBackgroundColor':'#FFFFFF',"
         "'title':'Menu','text':'Please select','defaultAction':{'type':'uri',"
         "'label':'View detail','uri':'http://example.com/page/123'},'actions':[%s,"
         "{'type':'postback','label':'Add to cart','data':'action=add&itemid=123'},"
         "{'type':'uri','label':'View detail','uri':'http://example.com/page/123'}]}}",
         pb));
    /* text: 160 without image or title, 60 with either (graphemes) */
    OK(buttons(J(",'text':'%s'", rep("a", 160)), pb));
    BAD(buttons(J(",'text':'%s'", rep("a", 161)), pb), "messages[0].template.text",
        "Length must be between 0 and 160");
    OK(buttons(J(",'title':'t','text':'%s'", rep("👍🏽", 60)), pb));
    BAD(buttons(J(",'title':'t','text':'%s'", rep("a", 61)), pb), "messages[0].template.text",
        "Length must be between 0 and 60");
    BAD(buttons(J(",'thumbnailImageUrl':'https://example.com/i.jpg','text':'%s'", rep("a", 61)),
                pb),
        "messages[0].template.text", "Length must be between 0 and 60");
    BAD(buttons(J(",'title':'%s','text':'t'", rep("a", 41)), pb), "messages[0].template.title",
        "Length must be between 0 and 40");
    BAD(buttons("", pb), "messages[0].template.text", "May not be empty");
    BAD(buttons(",'text':'t','imageAspectRatio':'wide'", pb),
        "messages[0].template.imageAspectRatio",
        "Must be one of the following values: [rectangle, square]");
    BAD(buttons(",'text':'t','imageSize':'fill'", pb), "messages[0].template.imageSize",
        "Must be one of the following values: [cover, contain]");
    BAD(buttons(",'text':'t','thumbnailImageUrl':'http://example.com/i.jpg'", pb),
        "messages[0].template.thumbnailImageUrl", "Must be an HTTPS URL (https://…)");
    /* actions: 1..4 */
    OK(buttons(",'text':'t'", J("%s,%s,%s,%s", pb, pb, pb, pb)));
    BAD(buttons(",'text':'t'", J("%s,%s,%s,%s,%s", pb, pb, pb, pb, pb)),
        "messages[0].template.actions", "Size must be between 1 and 4");
    BAD(buttons(",'text':'t'", ""), "messages[0].template.actions", "May not be empty");
    /* altText */
    BAD(M("{'type':'template','template':{'type':'buttons','text':'t','actions':[%s]}}", pb),
        "messages[0].altText", "May not be empty");
    OK(M("{'type':'template','altText':'%s','template':{'type':'buttons','text':'t',"
         "'actions':[%s]}}",
         rep("a", 1500), pb));
    BAD(M("{'type':'template','altText':'%s','template':{'type':'buttons','text':'t',"
          "'actions':[%s]}}",
          rep("a", 1501), pb),
        "messages[0].altText", "Length must be between 0 and 1500");
    BAD(M("{'type':'template','altText':'a'}"), "messages[0].template", "May not be null");
    BAD(M("{'type':'template','altText':'a','template':{'type':'list'}}"),
        "messages[0].template.type",
        "Must be one of the following values: [buttons, confirm, carousel, image_carousel]");
}

static void action_rules(void **state)
{
    (void)state;
    const char *b = ",'text':'t'";
    /* labels: required, <= 20 graphemes */
    OK(buttons(b, J("{'type':'message','label':'%s','text':'t'}", rep("a", 20))));
    OK(buttons(b, J("{'type':'message','label':'%s','text':'t'}", rep("👍🏽", 20))));
    BAD(buttons(b, J("{'type':'message','label':'%s','text':'t'}", rep("a", 21))),
        "messages[0].template.actions[0].label", "Length must be between 0 and 20");
    BAD(buttons(b, "{'type':'message','text':'t'}"), "messages[0].template.actions[0].label",
        "May not be empty");
    /* action types allowed in templates */
    BAD(buttons(b, "{'type':'camera','label':'c'}"), "messages[0].template.actions[0].type",
        "Must be one of the following values: [postback, message, uri, datetimepicker, "
        "clipboard]");
    BAD(buttons(b, "{'type':'richmenuswitch','label':'c','richMenuAliasId':'a','data':'d'}"),
        "messages[0].template.actions[0].type",
        "Must be one of the following values: [postback, message, uri, datetimepicker, "
        "clipboard]");
    BAD(buttons(b, "{'label':'c'}"), "messages[0].template.actions[0].type", "May not be empty");
    BAD(buttons(b, "'x'"), "messages[0].template.actions[0]", "Must be an object");
    /* postback */
    OK(buttons(b, "{'type':'postback','label':'l','data':'','displayText':'Buy',"
                  "'inputOption':'openKeyboard','fillInText':'---\\nName: \\n'}"));
    BAD(buttons(b, J("{'type':'postback','label':'l','data':'%s'}", rep("d", 301))),
        "messages[0].template.actions[0].data", "Length must be between 0 and 300");
    OK(buttons(b, J("{'type':'postback','label':'l','data':'%s'}", rep("d", 300))));
    BAD(buttons(b, "{'type':'postback','label':'l'}"), "messages[0].template.actions[0].data",
        "May not be null");
    BAD(buttons(b,
                J("{'type':'postback','label':'l','data':'d','displayText':'%s'}", rep("あ", 301))),
        "messages[0].template.actions[0].displayText", "Length must be between 0 and 300");
    BAD(buttons(b, "{'type':'postback','label':'l','data':'d','displayText':'a','text':'b'}"),
        "messages[0].template.actions[0].text", "displayText and text cannot both be set");
    BAD(buttons(b, "{'type':'postback','label':'l','data':'d','inputOption':'openMenu'}"),
        "messages[0].template.actions[0].inputOption",
        "Must be one of the following values: [closeRichMenu, openRichMenu, openKeyboard, "
        "openVoice]");
    /* message */
    BAD(buttons(b, "{'type':'message','label':'l','text':''}"),
        "messages[0].template.actions[0].text", "May not be empty");
    BAD(buttons(b, J("{'type':'message','label':'l','text':'%s'}", rep("a", 301))),
        "messages[0].template.actions[0].text", "Length must be between 0 and 300");
    /* uri */
    OK(buttons(b, "{'type':'uri','label':'l','uri':'tel:09001234567'}"));
    OK(buttons(b, "{'type':'uri','label':'l','uri':'line://nv/recommendOA/%40linedevelopers'}"));
    OK(buttons(b, "{'type':'uri','label':'l','uri':'https://example.com/',"
                  "'altUri':{'desktop':'http://example.com/pc'}}"));
    BAD(buttons(b, "{'type':'uri','label':'l','uri':'javascript:alert(1)'}"),
        "messages[0].template.actions[0].uri",
        "Must use one of the following schemes: [http, https, line, tel]");
    BAD(buttons(b, J("{'type':'uri','label':'l','uri':'https://example.com/%s'}",
                     rep("a", 1000 - 20 + 1))),
        "messages[0].template.actions[0].uri", "Length must be between 0 and 1000");
    BAD(buttons(b, "{'type':'uri','label':'l','uri':'https://a.example',"
                   "'altUri':{'desktop':'mailto:x@example.com'}}"),
        "messages[0].template.actions[0].altUri.desktop",
        "Must use one of the following schemes: [http, https, line, tel]");
    BAD(buttons(b, "{'type':'uri','label':'l'}"), "messages[0].template.actions[0].uri",
        "May not be empty");
    /* clipboard */
    OK(buttons(b, "{'type':'clipboard','label':'Copy','clipboardText':'3B48740B'}"));
    BAD(buttons(b, J("{'type':'clipboard','label':'Copy','clipboardText':'%s'}", rep("c", 1001))),
        "messages[0].template.actions[0].clipboardText", "Length must be between 0 and 1000");
    /* defaultAction: label optional */
    OK(buttons(",'text':'t','defaultAction':{'type':'uri','uri':'https://example.com/'}",
               "{'type':'message','label':'l','text':'t'}"));
    BAD(buttons(",'text':'t','defaultAction':{'type':'uri','uri':'ftp://x'}",
                "{'type':'message','label':'l','text':'t'}"),
        "messages[0].template.defaultAction.uri",
        "Must use one of the following schemes: [http, https, line, tel]");
}

static void datetimepicker_rules(void **state)
{
    (void)state;
    const char *b = ",'text':'t'";
    OK(buttons(b, "{'type':'datetimepicker','label':'Select date','data':'storeId=12345',"
                  "'mode':'datetime','initial':'2017-12-25t00:00','max':'2018-01-24t23:59',"
                  "'min':'2017-12-25t00:00'}"));
    OK(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'date',"
                  "'initial':'2017-06-18','min':'1900-01-01','max':'2100-12-31'}"));
    OK(buttons(b,
               "{'type':'datetimepicker','label':'d','data':'x','mode':'time','initial':'06:15'}"));
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x'}"),
        "messages[0].template.actions[0].mode", "May not be empty");
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'week'}"),
        "messages[0].template.actions[0].mode",
        "Must be one of the following values: [date, time, datetime]");
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'date',"
                   "'initial':'2017-06-18T10:00'}"),
        "messages[0].template.actions[0].initial",
        "Must be in the format yyyy-MM-dd for mode date (within 1900-01-01 and 2100-12-31)");
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'time','max':'24:00'}"),
        "messages[0].template.actions[0].max",
        "Must be in the format HH:mm for mode time (within 1900-01-01 and 2100-12-31)");
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'date',"
                   "'min':'2020-01-02','max':'2020-01-01'}"),
        "messages[0].template.actions[0].max", "Must be greater than min");
    BAD(buttons(b, "{'type':'datetimepicker','label':'d','data':'x','mode':'date',"
                   "'initial':'2019-12-31','min':'2020-01-01'}"),
        "messages[0].template.actions[0].initial", "Must be greater than or equal to min");
}

static void confirm_rules(void **state)
{
    (void)state;
    const char *yes = "{'type':'message','label':'Yes','text':'yes'}";
    const char *no = "{'type':'message','label':'No','text':'no'}";
    OK(M("{'type':'template','altText':'this is a confirm template','template':{'type':"
         "'confirm','text':'Are you sure?','actions':[%s,%s]}}",
         yes, no));
    BAD(M("{'type':'template','altText':'a','template':{'type':'confirm','text':'t',"
          "'actions':[%s]}}",
          yes),
        "messages[0].template.actions", "Size must be between 2 and 2");
    BAD(M("{'type':'template','altText':'a','template':{'type':'confirm','text':'t',"
          "'actions':[%s,%s,%s]}}",
          yes, no, no),
        "messages[0].template.actions", "Size must be between 2 and 2");
    OK(M("{'type':'template','altText':'a','template':{'type':'confirm','text':'%s',"
         "'actions':[%s,%s]}}",
         rep("確", 240), yes, no));
    BAD(M("{'type':'template','altText':'a','template':{'type':'confirm','text':'%s',"
          "'actions':[%s,%s]}}",
          rep("a", 241), yes, no),
        "messages[0].template.text", "Length must be between 0 and 240");
}

static const char *column(const char *fields, int n_actions)
{
    const char *act = "{'type':'postback','label':'Buy','data':'action=buy&itemid=111'}";
    char *acts = rep(J("%s,", act), (size_t)n_actions);
    if (n_actions > 0)
        acts[strlen(acts) - 1] = '\0';
    return J("{%s'text':'description','actions':[%s]}", fields, acts);
}

static const char *carousel(const char *columns)
{
    return M("{'type':'template','altText':'this is a carousel template','template':{'type':"
             "'carousel','columns':[%s],'imageAspectRatio':'rectangle','imageSize':'cover'}}",
             columns);
}

static void carousel_rules(void **state)
{
    (void)state;
    const char *full = "'thumbnailImageUrl':'https://example.com/bot/images/item1.jpg',"
                       "'imageBackgroundColor':'#FFFFFF','title':'this is menu',"
                       "'defaultAction':{'type':'uri','label':'View detail',"
                       "'uri':'http://example.com/page/123'},";
    OK(carousel(J("%s,%s", column(full, 3), column(full, 3))));
    char *ten = rep(J("%s,", column("", 1)), 10);
    ten[strlen(ten) - 1] = '\0';
    OK(carousel(ten));
    BAD(carousel(J("%s,%s", ten, column("", 1))), "messages[0].template.columns",
        "Size must be between 1 and 10");
    BAD(carousel(""), "messages[0].template.columns", "May not be empty");
    BAD(carousel(J("%s,%s", column("", 2), column("", 3))),
        "messages[0].template.columns[1].actions",
        "Must have the same number of actions as columns[0] (2)");
    BAD(carousel(column("", 4)), "messages[0].template.columns[0].actions",
        "Size must be between 1 and 3");
    BAD(carousel(J("%s,%s", column("'title':'t',", 1), column("", 1))),
        "messages[0].template.columns[1].title",
        "Must be set in every column or in none (columns[0] has one)");
    BAD(carousel(J("%s,%s", column("", 1),
                   column("'thumbnailImageUrl':'https://example.com/i.jpg',", 1))),
        "messages[0].template.columns[1].thumbnailImageUrl",
        "Must be set in every column or in none (columns[0] has no one)");
    /* text: 120 without image or title, 60 with */
    OK(carousel(
        J("{'text':'%s','actions':[{'type':'message','label':'l','text':'t'}]}", rep("a", 120))));
    BAD(carousel(J("{'text':'%s','actions':[{'type':'message','label':'l','text':'t'}]}",
                   rep("a", 121))),
        "messages[0].template.columns[0].text", "Length must be between 0 and 120");
    BAD(carousel(J("{'title':'t','text':'%s','actions':[{'type':'message','label':'l',"
                   "'text':'t'}]}",
                   rep("a", 61))),
        "messages[0].template.columns[0].text", "Length must be between 0 and 60");
}

static void image_carousel_rules(void **state)
{
    (void)state;
    const char *t = "{'type':'template','altText':'this is a image carousel template',"
                    "'template':{'type':'image_carousel','columns':[%s]}}";
    OK(M(t, Q("{'imageUrl':'https://example.com/bot/images/item1.jpg','action':{'type':'postback',"
              "'label':'Buy','data':'action=buy&itemid=111'}},{'imageUrl':'https://example.com/"
              "bot/images/item2.jpg','action':{'type':'message','label':'Yes','text':'yes'}},"
              "{'imageUrl':'https://example.com/i3.jpg','action':{'type':'uri',"
              "'uri':'http://example.com/page/222'}}")));
    /* labels: optional, <= 12 */
    OK(M(t, J("{'imageUrl':'https://example.com/i.jpg','action':{'type':'message',"
              "'label':'%s','text':'y'}}",
              rep("a", 12))));
    BAD(M(t, J("{'imageUrl':'https://example.com/i.jpg','action':{'type':'message',"
               "'label':'%s','text':'y'}}",
               rep("a", 13))),
        "messages[0].template.columns[0].action.label", "Length must be between 0 and 12");
    BAD(M(t, Q("{'imageUrl':'https://example.com/i.jpg'}")),
        "messages[0].template.columns[0].action", "May not be null");
    BAD(M(t, Q("{'action':{'type':'message','text':'y'}}")),
        "messages[0].template.columns[0].imageUrl", "May not be empty");
    char *cols = rep("{'imageUrl':'https://example.com/i.jpg','action':{'type':'message',"
                     "'text':'y'}},",
                     11);
    cols[strlen(cols) - 1] = '\0';
    BAD(M(t, Q(cols)), "messages[0].template.columns", "Size must be between 1 and 10");
}

/* ---- flex ----------------------------------------------------------------- */

static const char *bubble(const char *extra)
{
    return J("{'type':'bubble'%s,'body':{'type':'box','layout':'vertical','contents':"
             "[{'type':'text','text':'hello'},{'type':'text','text':'world'}]}}",
             extra);
}

static void flex_rules(void **state)
{
    (void)state;
    OK(M("{'type':'flex','altText':'this is a flex message','contents':%s}", bubble("")));
    OK(M("{'type':'flex','altText':'c','contents':{'type':'carousel','contents':[%s,%s]}}",
         bubble(""), bubble("")));
    BAD(M("{'type':'flex','contents':%s}", bubble("")), "messages[0].altText", "May not be empty");
    BAD(M("{'type':'flex','altText':'%s','contents':%s}", rep("a", 1501), bubble("")),
        "messages[0].altText", "Length must be between 0 and 1500");
    BAD(M("{'type':'flex','altText':'a'}"), "messages[0].contents", "May not be null");
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'box'}}"), "messages[0].contents.type",
        "Must be one of the following values: [bubble, carousel]");
    BAD(M("{'type':'flex','altText':'a','contents':%s}", bubble(",'size':'huge'")),
        "messages[0].contents.size",
        "Must be one of the following values: [nano, micro, deca, hecto, kilo, mega, giga]");
    /* a bubble of 30 KB of JSON passes, one byte more does not */
    const char *base = bubble(",'x':''");
    size_t pad = 30 * 1024 - strlen(base);
    OK(M("{'type':'flex','altText':'a','contents':%s}", bubble(J(",'x':'%s'", rep("a", pad)))));
    BAD(M("{'type':'flex','altText':'a','contents':%s}", bubble(J(",'x':'%s'", rep("a", pad + 1)))),
        "messages[0].contents", "JSON size must be at most 30 KB (30720 bytes)");
    /* every bubble of a carousel too */
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[%s,%s]}}",
          bubble(""), bubble(J(",'x':'%s'", rep("a", pad + 1)))),
        "messages[0].contents.contents[1]", "JSON size must be at most 30 KB (30720 bytes)");
    /* carousel: 1..12 bubbles, same size, <= 50 KB */
    char *twelve = rep(J("%s,", bubble("")), 12);
    twelve[strlen(twelve) - 1] = '\0';
    OK(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[%s]}}", twelve));
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[%s,%s]}}", twelve,
          bubble("")),
        "messages[0].contents.contents", "Size must be between 1 and 12");
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[%s,%s]}}",
          bubble(",'size':'kilo'"), bubble("")),
        "messages[0].contents.contents[1].size",
        "Must be the same in every bubble of a carousel (kilo)");
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[{'type':"
          "'box'}]}}"),
        "messages[0].contents.contents[0].type", "Must be one of the following values: [bubble]");
    BAD(M("{'type':'flex','altText':'a','contents':{'type':'carousel','contents':[%s,%s]}}",
          bubble(J(",'x':'%s'", rep("a", 26000))), bubble(J(",'x':'%s'", rep("a", 26000)))),
        "messages[0].contents", "JSON size must be at most 50 KB (51200 bytes)");
}

/* ---- quick reply and sender ---------------------------------------------- */

static void quick_reply_rules(void **state)
{
    (void)state;
    const char *item = "{'type':'action','action':{'type':'message','label':'Yes','text':'y'}}";
    OK(M("{'type':'text','text':'Select your favorite food category or send me your location!',"
         "'quickReply':{'items':[{'type':'action','imageUrl':'https://example.com/sushi.png',"
         "'action':{'type':'message','label':'Sushi','text':'Sushi'}},{'type':'action',"
         "'action':{'type':'location','label':'Send location'}},{'type':'action','action':"
         "{'type':'cameraRoll','label':'Send photo'}},{'type':'action','action':{'type':"
         "'camera','label':'Open camera'}},{'type':'action','action':{'type':'postback',"
         "'label':'Good','data':'survey=1&a=good','displayText':'Good'}},{'type':'action',"
         "'action':{'type':'datetimepicker','label':'When','data':'d','mode':'date'}},"
         "{'type':'action','action':{'type':'clipboard','label':'Copy','clipboardText':'C0DE'}}"
         "]}}"));
    char *thirteen = rep(J("%s,", item), 13);
    thirteen[strlen(thirteen) - 1] = '\0';
    OK(M("{'type':'text','text':'q','quickReply':{'items':[%s]}}", thirteen));
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[%s,%s]}}", thirteen, item),
        "messages[0].quickReply.items", "Size must be between 1 and 13");
    BAD(M("{'type':'text','text':'q','quickReply':{}}"), "messages[0].quickReply.items",
        "May not be empty");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'button','action':"
          "{'type':'camera','label':'c'}}]}}"),
        "messages[0].quickReply.items[0].type", "Must be one of the following values: [action]");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'action','action':"
          "{'type':'camera'}}]}}"),
        "messages[0].quickReply.items[0].action.label", "May not be empty");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'action','action':"
          "{'type':'camera','label':'%s'}}]}}",
          rep("c", 21)),
        "messages[0].quickReply.items[0].action.label", "Length must be between 0 and 20");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'action','action':"
          "{'type':'richmenuswitch','label':'c','richMenuAliasId':'a','data':'d'}}]}}"),
        "messages[0].quickReply.items[0].action.type",
        "Must be one of the following values: [postback, message, uri, datetimepicker, camera, "
        "cameraRoll, location, clipboard]");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'action'}]}}"),
        "messages[0].quickReply.items[0].action", "May not be null");
    BAD(M("{'type':'text','text':'q','quickReply':{'items':[{'type':'action','imageUrl':"
          "'http://example.com/i.png','action':{'type':'camera','label':'c'}}]}}"),
        "messages[0].quickReply.items[0].imageUrl", "Must be an HTTPS URL (https://…)");
    /* quick replies ride on any message type */
    OK(M("{'type':'sticker','packageId':'446','stickerId':'1988','quickReply':{'items':[%s]}}",
         item));
}

static void sender_rules(void **state)
{
    (void)state;
    OK(M("{'type':'text','text':'Hello, I am Cony!!','sender':{'name':'Cony',"
         "'iconUrl':'https://line.me/conyprof'}}"));
    OK(M("{'type':'text','text':'x','sender':{'name':'Online Shop'}}"));
    OK(M("{'type':'text','text':'x','sender':{'name':'%s'}}", rep("店", 20)));
    BAD(M("{'type':'text','text':'x','sender':{'name':'%s'}}", rep("a", 21)),
        "messages[0].sender.name", "Length must be between 0 and 20");
    BAD(M("{'type':'text','text':'x','sender':{'name':'LINE Support'}}"), "messages[0].sender.name",
        "May not contain the word LINE");
    BAD(M("{'type':'text','text':'x','sender':{'name':'my line'}}"), "messages[0].sender.name",
        "May not contain the word LINE");
    BAD(M("{'type':'text','text':'x','sender':{'iconUrl':'http://example.com/i.png'}}"),
        "messages[0].sender.iconUrl", "Must be an HTTPS URL (https://…)");
    BAD(M("{'type':'text','text':'x','sender':'Cony'}"), "messages[0].sender", "Must be an object");
}

/* ---- several errors, rendering, whole requests --------------------------- */

static void several_errors_and_rendering(void **state)
{
    (void)state;
    /* LINE's own example */
    const char *json = "[{\"type\":\"text\",\"text\":\"\"},{\"type\":\"file\"}]";
    assert_int_equal(message_validate(json, strlen(json), 0, &E), KZ_EINVAL);
    assert_string_equal(E.message, "The request body has 2 error(s)");
    assert_int_equal(E.total, 2);
    assert_int_equal(E.n, 2);
    assert_string_equal(E.details[0].property, "messages[0].text");
    assert_string_equal(E.details[0].message, "May not be empty");
    assert_string_equal(E.details[1].property, "messages[1].type");

    char buf[2048];
    size_t n = message_error_json(&E, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    json_object *o = json_tokener_parse(buf);
    assert_non_null(o);
    json_object *msg, *details;
    assert_true(json_object_object_get_ex(o, "message", &msg));
    assert_string_equal(json_object_get_string(msg), "The request body has 2 error(s)");
    assert_true(json_object_object_get_ex(o, "details", &details));
    assert_int_equal(json_object_array_length(details), 2);
    for (size_t i = 0; i < 2; i++) {
        json_object *d = json_object_array_get_idx(details, i), *m, *p;
        assert_true(json_object_object_get_ex(d, "message", &m));
        assert_true(json_object_object_get_ex(d, "property", &p));
        assert_string_equal(json_object_get_string(m), E.details[i].message);
        assert_string_equal(json_object_get_string(p), E.details[i].property);
    }
    json_object_put(o);
    assert_string_equal(
        buf, "{\"message\":\"The request body has 2 error(s)\",\"details\":[{\"message\":\"May "
             "not be empty\",\"property\":\"messages[0].text\"},{\"message\":\"Must be one of "
             "the following values: [text, image, video, audio, location, sticker, template, "
             "imagemap, flex, textV2, coupon]\",\"property\":\"messages[1].type\"}]}");

    /* a cut buffer still terminates and reports the full length */
    char small[16];
    assert_int_equal(message_error_json(&E, small, sizeof small), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(message_error_json(&E, NULL, 0), n);

    message_error_line(&E, buf, sizeof buf);
    assert_string_equal(buf, "The request body has 2 error(s): messages[0].text: May not be "
                             "empty; messages[1].type: Must be one of the following values: "
                             "[text, image, video, audio, location, sticker, template, imagemap, "
                             "flex, textV2, coupon]");

    /* a parse error renders without details */
    assert_int_equal(message_validate("[", 1, 0, &E), KZ_EINVAL);
    message_error_json(&E, buf, sizeof buf);
    assert_string_equal(
        buf, "{\"message\":\"The request body could not be parsed as JSON (line: 1, column: 2)\"}");

    /* many problems: the first 32 kept, all counted */
    const char *bad = "{'type':'text','text':'','quoteToken':1,'sender':{'name':1,'iconUrl':2},"
                      "'quickReply':{'items':[{'type':1,'action':{'type':'x'}},{},{},{},{}]}}";
    json = J("[%s,%s,%s,%s,%s]", bad, bad, bad, bad, bad);
    assert_int_equal(message_validate(json, strlen(json), 0, &E), KZ_EINVAL);
    assert_true(E.total > MESSAGE_ERR_MAX_DETAILS);
    assert_int_equal(E.n, MESSAGE_ERR_MAX_DETAILS);
    char want[64];
    snprintf(want, sizeof want, "The request body has %zu error(s)", E.total);
    assert_string_equal(E.message, want);
    message_error_line(&E, buf, sizeof buf);
    snprintf(want, sizeof want, "; and %zu more", E.total - E.n);
    assert_non_null(strstr(buf, want));
    n = message_error_json(&E, NULL, 0);
    char *big = keep(malloc(n + 1));
    message_error_json(&E, big, n + 1);
    o = json_tokener_parse(big);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "details", &details));
    assert_int_equal(json_object_array_length(details), MESSAGE_ERR_MAX_DETAILS);
    json_object_put(o);

    /* quotes and control characters in details are escaped */
    json = M("{'type':'x\\\"\\u0001'}");
    assert_int_equal(message_validate(json, strlen(json), 0, &E), KZ_EINVAL);
    message_error_json(&E, buf, sizeof buf);
    o = json_tokener_parse(buf);
    assert_non_null(o);
    json_object_put(o);
}

static void whole_request(void **state)
{
    (void)state;
    const char *body = "{\"to\":\"U4af4980629\",\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}],"
                       "\"notificationDisabled\":true}";
    assert_int_equal(message_validate_request(body, strlen(body), 0, &E), 0);
    body = "{\"to\":\"U4af4980629\"}";
    assert_int_equal(message_validate_request(body, strlen(body), 0, &E), KZ_EINVAL);
    assert_string_equal(E.details[0].property, "messages");
    assert_string_equal(E.details[0].message, "May not be empty");
    body = "{\"messages\":[{\"type\":\"text\",\"text\":\"\"}]}";
    assert_int_equal(message_validate_request(body, strlen(body), 0, &E), KZ_EINVAL);
    assert_string_equal(E.details[0].property, "messages[0].text");
    body = "[]";
    assert_int_equal(message_validate_request(body, strlen(body), 0, &E), KZ_EINVAL);
    assert_string_equal(E.details[0].message, "The request body must be a JSON object");
}

/* Rich menu objects: the menu's own rules, and area actions checked by the
 * message action rules with the rich menu's allowed types. */
static void rich_menu_rules(void **state)
{
    (void)state;
    const char *ok =
        "{\"size\":{\"width\":2500,\"height\":1686},\"selected\":false,"
        "\"name\":\"n\",\"chatBarText\":\"Tap\",\"areas\":[{\"bounds\":{\"x\":0,"
        "\"y\":0,\"width\":2500,\"height\":1686},\"action\":{\"type\":\"location\"}}]}";
    assert_int_equal(message_validate_rich_menu(ok, strlen(ok), &E), 0);
    const char *bad =
        "{\"size\":{\"width\":2500},\"selected\":\"no\",\"chatBarText\":\"x\","
        "\"areas\":[{\"bounds\":{\"x\":-1,\"y\":0,\"width\":1,\"height\":1},"
        "\"action\":{\"type\":\"postback\",\"data\":\"d\","
        "\"label\":\"123456789012345678901\"}},{\"action\":{\"type\":\"richmenuswitch\","
        "\"richMenuAliasId\":\"a\"}}]}";
    assert_int_equal(message_validate_rich_menu(bad, strlen(bad), &E), KZ_EINVAL);
    static const char *const want[][2] = {
        {"size.height", "May not be null"},
        {"selected", "Must be a boolean"},
        {"name", "May not be empty"},
        {"areas[0].bounds.x", "Must be greater than or equal to 0"},
        {"areas[0].action.label", "Length must be between 0 and 20"},
        {"areas[1].bounds", "May not be null"},
        {"areas[1].action.data", "May not be null"},
    };
    assert_int_equal(E.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < E.n; i++) {
        assert_string_equal(E.details[i].property, want[i][0]);
        assert_string_equal(E.details[i].message, want[i][1]);
    }
    /* richmenuswitch belongs to rich menus only */
    const char *tmpl = "[{\"type\":\"template\",\"altText\":\"a\",\"template\":{\"type\":"
                       "\"buttons\",\"text\":\"t\",\"actions\":[{\"type\":\"richmenuswitch\","
                       "\"label\":\"l\",\"richMenuAliasId\":\"a\",\"data\":\"\"}]}}]";
    assert_int_equal(message_validate(tmpl, strlen(tmpl), 0, &E), KZ_EINVAL);
    assert_string_equal(E.details[0].property, "messages[0].template.actions[0].type");
}

/* ---- the SDK builder ----------------------------------------------------- */

static void valid_array(const kz_msgs *m)
{
    size_t len = 0;
    const char *json = kz_msgs_json(m, &len);
    assert_non_null(json);
    assert_int_equal(len, strlen(json));
    if (m->count == 0) {
        assert_string_equal(json, "[]");
        return;
    }
    if (message_validate(json, len, 0, &E) != 0) {
        dump(json);
        fail_msg("builder output does not validate");
    }
}

/* The value of messages[i].key as parsed back by json-c. */
static char *field(const kz_msgs *m, size_t i, const char *key)
{
    json_object *root = json_tokener_parse(kz_msgs_json(m, NULL)), *v;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(json_object_array_get_idx(root, i), key, &v));
    char *s = keep(strdup(json_object_get_string(v)));
    json_object_put(root);
    return s;
}

static void builder_kinds(void **state)
{
    (void)state;
    static char buf[65536];
    kz_msgs m;
    assert_int_equal(kz_msgs_init(&m, buf, sizeof buf), 0);
    valid_array(&m);

    const char *tricky = "He said \"hi\"\\ \n\tthen\r left — 日本語 😀 \x01 end";
    assert_int_equal(kz_msgs_text(&m, tricky), 0);
    assert_string_equal(field(&m, 0, "text"), tricky);

    kz_emoji em[2] = {{KZ_EMOJI_AUTO, "5ac1bfd5040ab15980c9b435", "001"},
                      {KZ_EMOJI_AUTO, "5ac1bfd5040ab15980c9b435", "002"}};
    assert_int_equal(kz_msgs_text_emoji(&m, "😀$ LINE emoji $", em, 2), 0);
    assert_non_null(strstr(kz_msgs_json(&m, NULL), "\"index\":2,"));
    assert_non_null(strstr(kz_msgs_json(&m, NULL), "\"index\":15,"));

    assert_int_equal(kz_msgs_sticker(&m, "446", "1988"), 0);
    assert_int_equal(kz_msgs_image(&m, "https://example.com/o.jpg", NULL), 0);
    assert_string_equal(field(&m, 3, "previewImageUrl"), "https://example.com/o.jpg");
    assert_int_equal(kz_msgs_flex(&m, "Order shipped",
                                  "  {\"type\":\"bubble\",\"body\":{\"type\":\"box\",\"layout\":"
                                  "\"vertical\",\"contents\":[{\"type\":\"text\",\"text\":"
                                  "\"Shipped!\"}]}}\n"),
                     0);
    assert_int_equal(kz_msgs_count(&m), 5);
    valid_array(&m);

    /* a 6th message is refused and changes nothing */
    size_t len = 0;
    char before[65536];
    strcpy(before, kz_msgs_json(&m, &len));
    assert_int_equal(kz_msgs_text(&m, "six"), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_sticker(&m, "446", "1988"), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_raw(&m, "{\"type\":\"text\",\"text\":\"x\"}"), KZ_ETOOBIG);
    assert_string_equal(kz_msgs_json(&m, NULL), before);
    assert_int_equal(kz_msgs_count(&m), 5);

    /* templates */
    kz_msgs_reset(&m);
    assert_string_equal(kz_msgs_json(&m, NULL), "[]");
    kz_action acts[4];
    acts[0] = kz_action_postback("Buy", "action=buy&itemid=123", "Buy it");
    acts[1] = kz_action_uri("View", "https://example.com/page/123");
    acts[2] = kz_action_message("Hi", "こんにちは");
    acts[3] = kz_action_datetime("When", "pick=1", "date");
    assert_int_equal(kz_msgs_buttons(&m, "Menu", "Menu", "Please select", NULL, acts, 4), 0);
    assert_int_equal(
        kz_msgs_buttons(&m, "Menu", NULL, "Pick \"one\"", "https://example.com/i.jpg", acts, 1), 0);
    assert_int_equal(kz_msgs_confirm(&m, "Sure?", "Are you sure?", kz_action_message("Yes", "yes"),
                                     kz_action_postback("No", "", NULL)),
                     0);
    kz_action clip = kz_action_clipboard("Copy", "C0UP0N");
    assert_int_equal(kz_msgs_buttons(&m, "Coupon", NULL, "Your code", NULL, &clip, 1), 0);
    assert_int_equal(kz_msgs_raw(&m, "{\"type\":\"video\",\"originalContentUrl\":"
                                     "\"https://example.com/v.mp4\",\"previewImageUrl\":"
                                     "\"https://example.com/p.jpg\"}"),
                     0);
    valid_array(&m);

    /* quick reply and sender attach to the last message */
    kz_action items[3];
    items[0] = kz_action_camera("Camera");
    items[1] = kz_action_location("Where");
    items[2] = kz_action_postback("Good", "survey=1&a=good", "Good");
    items[2].image_url = "https://example.com/good.png";
    assert_int_equal(kz_msgs_quick_reply(&m, items, 3), 0);
    assert_int_equal(kz_msgs_quick_reply(&m, items, 1), KZ_EEXIST);
    assert_int_equal(kz_msgs_sender(&m, "Cony", "https://example.com/cony.png"), 0);
    assert_int_equal(kz_msgs_sender(&m, "Cony", NULL), KZ_EEXIST);
    valid_array(&m);
    assert_non_null(strstr(kz_msgs_json(&m, NULL),
                           "\"quickReply\":{\"items\":[{\"type\":\"action\",\"action\":{\"type\":"
                           "\"camera\",\"label\":\"Camera\"}}"));
    assert_non_null(strstr(kz_msgs_json(&m, NULL), "\"imageUrl\":\"https://example.com/good.png\","
                                                   "\"action\":{\"type\":\"postback\""));
}

static void builder_errors(void **state)
{
    (void)state;
    char buf[16384];
    kz_msgs m;
    assert_int_equal(kz_msgs_init(NULL, buf, sizeof buf), KZ_EINVAL);
    assert_int_equal(kz_msgs_init(&m, NULL, sizeof buf), KZ_EINVAL);
    assert_int_equal(kz_msgs_init(&m, buf, 2), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_init(&m, buf, sizeof buf), 0);
    assert_null(kz_msgs_json(NULL, NULL));

    /* NULL and empty arguments */
    assert_int_equal(kz_msgs_text(NULL, "x"), KZ_EINVAL);
    assert_int_equal(kz_msgs_text(&m, NULL), KZ_EINVAL);
    assert_int_equal(kz_msgs_text(&m, ""), KZ_EINVAL);
    assert_int_equal(kz_msgs_sticker(&m, NULL, "1"), KZ_EINVAL);
    assert_int_equal(kz_msgs_image(&m, "", NULL), KZ_EINVAL);
    assert_int_equal(kz_msgs_flex(&m, NULL, "{}"), KZ_EINVAL);
    assert_int_equal(kz_msgs_flex(&m, "alt", "[1]"), KZ_EINVAL);
    assert_int_equal(kz_msgs_flex(&m, "alt", "{"), KZ_EINVAL);
    assert_int_equal(kz_msgs_raw(&m, "\"text\""), KZ_EINVAL);
    assert_int_equal(kz_msgs_buttons(&m, "a", NULL, "t", NULL, NULL, 0), KZ_EINVAL);
    /* invalid UTF-8 */
    assert_int_equal(kz_msgs_text(&m, "bad \xc3 byte"), KZ_EINVAL);
    assert_int_equal(kz_msgs_text(&m, "\xed\xa0\x80"), KZ_EINVAL); /* a surrogate */
    assert_int_equal(kz_msgs_count(&m), 0);
    assert_string_equal(kz_msgs_json(&m, NULL), "[]");

    /* attachments need a message */
    kz_action qa[14];
    for (size_t i = 0; i < 14; i++)
        qa[i] = kz_action_message("Yes", "yes");
    assert_int_equal(kz_msgs_quick_reply(&m, qa, 1), KZ_ESTATE);
    assert_int_equal(kz_msgs_sender(&m, "x", NULL), KZ_ESTATE);
    assert_int_equal(kz_msgs_sender(&m, NULL, NULL), KZ_EINVAL);

    /* text: 5000 UTF-16 units */
    assert_int_equal(kz_msgs_text(&m, rep("😀", 2501)), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_text(&m, rep("a", 5001)), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_count(&m), 0);
    static char big[32768];
    kz_msgs mb;
    kz_msgs_init(&mb, big, sizeof big);
    assert_int_equal(kz_msgs_text(&mb, rep("😀", 2500)), 0);
    valid_array(&mb);

    /* quick reply: 13 items, not 14 */
    assert_int_equal(kz_msgs_text(&m, "q"), 0);
    assert_int_equal(kz_msgs_quick_reply(&m, qa, 14), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_quick_reply(&m, qa, 0), KZ_EINVAL);
    /* a bad item leaves the message as it was */
    qa[5].label = NULL;
    assert_int_equal(kz_msgs_quick_reply(&m, qa, 13), KZ_EINVAL);
    assert_string_equal(kz_msgs_json(&m, NULL), "[{\"type\":\"text\",\"text\":\"q\"}]");
    qa[5].label = "Yes";
    assert_int_equal(kz_msgs_quick_reply(&m, qa, 13), 0);
    valid_array(&m);

    /* actions */
    kz_action acts[5];
    for (size_t i = 0; i < 5; i++)
        acts[i] = kz_action_postback("p", "d", NULL);
    assert_int_equal(kz_msgs_buttons(&m, "a", NULL, "t", NULL, acts, 5), KZ_ETOOBIG);
    acts[0] = kz_action_camera("cam");
    assert_int_equal(kz_msgs_buttons(&m, "a", NULL, "t", NULL, acts, 1), KZ_EINVAL);
    acts[0] = kz_action_datetime("d", "x", "week");
    assert_int_equal(kz_msgs_buttons(&m, "a", NULL, "t", NULL, acts, 1), KZ_EINVAL);
    acts[0] = kz_action_uri("u", NULL);
    assert_int_equal(kz_msgs_buttons(&m, "a", NULL, "t", NULL, acts, 1), KZ_EINVAL);
    acts[0] = kz_action_postback(NULL, "d", NULL);
    assert_int_equal(kz_msgs_confirm(&m, "a", "t", acts[0], acts[1]), KZ_EINVAL);
    assert_int_equal(kz_msgs_count(&m), 1);
    valid_array(&m);

    /* emoji */
    kz_emoji em = {3, "p", "1"};
    assert_int_equal(kz_msgs_text_emoji(&m, "ab $", &em, 1), 0);
    em.index = 2;
    assert_int_equal(kz_msgs_text_emoji(&m, "ab $", &em, 1), KZ_EINVAL);
    em.index = KZ_EMOJI_AUTO;
    kz_emoji two[2] = {em, em};
    assert_int_equal(kz_msgs_text_emoji(&m, "only $ one", two, 2), KZ_EINVAL);
    kz_emoji many[21];
    for (size_t i = 0; i < 21; i++)
        many[i] = em;
    assert_int_equal(kz_msgs_text_emoji(&m, rep("$", 21), many, 21), KZ_ETOOBIG);
    assert_int_equal(kz_msgs_text_emoji(&m, rep("$", 20), many, 20), 0);
    assert_int_equal(kz_msgs_count(&m), 3);
    valid_array(&m);
}

/* Every buffer size: each call either succeeds or fails with KZ_ETOOBIG and
 * leaves a valid array behind. */
static void builder_small_buffers(void **state)
{
    (void)state;
    char *buf = keep(malloc(2048));
    size_t full_len = 0;
    for (size_t cap = 3; cap <= 2048; cap++) {
        kz_msgs m;
        assert_int_equal(kz_msgs_init(&m, buf, cap), 0);
        kz_action a[2];
        a[0] = kz_action_message("はい", "はい");
        a[1] = kz_action_message("No \"way\"", "no");
        int rc[6];
        rc[0] = kz_msgs_text(&m, "Hello 😀 \"quoted\"\n");
        rc[1] = kz_msgs_quick_reply(&m, a, 2);
        rc[2] = kz_msgs_sender(&m, "店長", "https://example.com/i.png");
        rc[3] = kz_msgs_confirm(&m, "alt", "Sure?", a[0], a[1]);
        rc[4] = kz_msgs_sticker(&m, "446", "1988");
        rc[5] = kz_msgs_raw(&m, "{\"type\":\"sticker\",\"packageId\":\"1\",\"stickerId\":\"2\"}");
        for (int i = 0; i < 6; i++)
            if (rc[i] != 0 && rc[i] != KZ_ETOOBIG && !(i <= 2 && rc[i] == KZ_ESTATE))
                fail_msg("cap %zu: call %d returned %d", cap, i, rc[i]);
        size_t len = 0;
        const char *json = kz_msgs_json(&m, &len);
        assert_true(len < cap);
        assert_int_equal(strlen(json), len);
        if (m.count > 0 && message_validate(json, len, 0, &E) != 0) {
            dump(json);
            fail_msg("cap %zu: invalid array", cap);
        }
        if (m.count == 0)
            assert_string_equal(json, "[]");
        int all_ok = 1;
        for (int i = 0; i < 6; i++)
            all_ok &= rc[i] == 0;
        if (all_ok && full_len == 0)
            full_len = len;
    }
    assert_true(full_len > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(counting, free_allocs),
        cmocka_unit_test_teardown(array_size, free_allocs),
        cmocka_unit_test_teardown(parse_errors, free_allocs),
        cmocka_unit_test_teardown(unknown_type, free_allocs),
        cmocka_unit_test_teardown(text_rules, free_allocs),
        cmocka_unit_test_teardown(text_emojis, free_allocs),
        cmocka_unit_test_teardown(text_v2, free_allocs),
        cmocka_unit_test_teardown(sticker_rules, free_allocs),
        cmocka_unit_test_teardown(media_rules, free_allocs),
        cmocka_unit_test_teardown(location_rules, free_allocs),
        cmocka_unit_test_teardown(coupon_rules, free_allocs),
        cmocka_unit_test_teardown(imagemap_rules, free_allocs),
        cmocka_unit_test_teardown(buttons_rules, free_allocs),
        cmocka_unit_test_teardown(action_rules, free_allocs),
        cmocka_unit_test_teardown(datetimepicker_rules, free_allocs),
        cmocka_unit_test_teardown(confirm_rules, free_allocs),
        cmocka_unit_test_teardown(carousel_rules, free_allocs),
        cmocka_unit_test_teardown(image_carousel_rules, free_allocs),
        cmocka_unit_test_teardown(flex_rules, free_allocs),
        cmocka_unit_test_teardown(quick_reply_rules, free_allocs),
        cmocka_unit_test_teardown(sender_rules, free_allocs),
        cmocka_unit_test_teardown(several_errors_and_rendering, free_allocs),
        cmocka_unit_test_teardown(whole_request, free_allocs),
        cmocka_unit_test_teardown(rich_menu_rules, free_allocs),
        cmocka_unit_test_teardown(builder_kinds, free_allocs),
        cmocka_unit_test_teardown(builder_errors, free_allocs),
        cmocka_unit_test_teardown(builder_small_buffers, free_allocs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
