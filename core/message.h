/*
 * message — checks LINE message objects before they are queued.
 *
 * Input is the JSON text of one `messages` array, the value every send
 * endpoint takes (reply, push, multicast, narrowcast, broadcast). The rules
 * are LINE's published ones (shared/line-openapi/messaging-api.yml and the
 * Messaging API reference): 1..5 messages, each of type text, textV2,
 * sticker, image, video, audio, location, imagemap, template, flex or
 * coupon, with their required properties, character limits, URL schemes,
 * action types and counts, quick replies and sender. docs/messages.md has
 * the full table. A message that passes here should not come back from LINE
 * as a 400 for its shape; what only LINE can know (does the sticker or the
 * emoji product exist, is the image reachable, is the quote token valid) is
 * not checked.
 *
 * Errors come in LINE's own shape, so a plugin, an operator and the sandbox
 * all see what LINE would have said:
 *   {"message":"The request body has 2 error(s)",
 *    "details":[{"message":"May not be empty","property":"messages[0].text"},
 *               {"message":"Length must be between 0 and 20",
 *                "property":"messages[1].template.actions[0].label"}]}
 * Property paths are LINE's (`messages[0].template.columns[2].actions[1].uri`);
 * messages use LINE's wording where it is known ("May not be empty", "Size
 * must be between 1 and 5", "Length must be between 0 and 5000", "Must be one
 * of the following values: [...]").
 *
 * Counting: text lengths are UTF-16 code units, as LINE counts them (an emoji
 * outside the BMP is 2, a kana or kanji 1). The properties LINE counts in
 * grapheme clusters (action labels, postback displayText/text/fillInText,
 * message-action text, buttons/confirm/carousel title and text) are counted
 * as approximate extended grapheme clusters: combining marks, variation
 * selectors, ZWJ sequences, skin-tone modifiers, keycaps, tags and flag
 * pairs join the character before them.
 *
 * Memory: message_error is a plain struct the caller owns (on its stack is
 * fine); nothing needs freeing. At most MESSAGE_ERR_MAX_DETAILS details are
 * kept; `total` counts them all and the top-level message uses the total.
 *
 * Thread: any; no shared state.
 */
#ifndef KIZUNA_CORE_MESSAGE_H
#define KIZUNA_CORE_MESSAGE_H

#include <stddef.h>

#include <kizuna/host.h>

/* Messages per request on every send endpoint (OpenAPI maxItems). */
#define MESSAGE_MAX_PER_REQUEST 5

#define MESSAGE_ERR_MAX_DETAILS 32
#define MESSAGE_ERR_TEXT_MAX 192
#define MESSAGE_ERR_PROPERTY_MAX 160

typedef struct message_detail {
    char message[MESSAGE_ERR_TEXT_MAX];      /* "Length must be between 0 and 5000" */
    char property[MESSAGE_ERR_PROPERTY_MAX]; /* "messages[0].text" */
} message_detail;

typedef struct message_error {
    char message[MESSAGE_ERR_TEXT_MAX]; /* "The request body has 2 error(s)", or a parse error */
    size_t total;                       /* problems found; may exceed n */
    size_t n;                           /* details kept (<= MESSAGE_ERR_MAX_DETAILS) */
    message_detail details[MESSAGE_ERR_MAX_DETAILS];
} message_error;

/* Validates the JSON array json[len] (need not be NUL-terminated) holding
 * between 1 and max_messages message objects (max_messages <= 0 means
 * MESSAGE_MAX_PER_REQUEST). Returns 0 when every message is valid (out, if
 * not NULL, is cleared), or KZ_EINVAL with out filled: for text that is not
 * JSON, out->message is "The request body could not be parsed as JSON
 * (line: L, column: C)" and there are no details; otherwise out->message is
 * "The request body has N error(s)" and each problem is a detail.
 * KZ_ENOMEM if the parser could not allocate. */
int message_validate(const char *json, size_t len, int max_messages, message_error *out);

/* message_validate, and when the messages are valid *canon gets them as
 * LINE is sent them: json-c's compact rendering ('/' not escaped),
 * malloc'ed, the caller's to free (NULL otherwise). One parse for both. */
int message_validate_render(const char *json, size_t len, int max_messages, char **canon,
                            message_error *out);

/* The same for a whole request body ({"messages": [...], ...}, e.g. what a
 * push or broadcast call posts): checks that it is an object with a
 * "messages" array and validates that array. Other properties (to,
 * replyToken, notificationDisabled, …) are the endpoint's business and are
 * not checked. */
int message_validate_request(const char *body, size_t len, int max_messages, message_error *out);

/* Validates a rich menu object (RichMenuRequest: what create and validate
 * rich menu take) in body[len]: size (width 800..2500, height >= 250,
 * width/height >= 1.45), selected, name (<= 300), chatBarText (<= 14),
 * areas (<= 20), each with bounds inside the size and an action of a type a
 * rich menu allows (postback, message, uri, datetimepicker, richmenuswitch,
 * camera, cameraRoll, location, clipboard), checked by the same action
 * rules as messages. Paths are relative to the body ("areas[0].action.uri").
 * Returns and fills out like message_validate. */
int message_validate_rich_menu(const char *body, size_t len, message_error *out);

/* Parses a request body as JSON: 0 with *out (the caller puts it), or
 * KZ_EINVAL with e->message LINE's "The request body could not be parsed
 * as JSON (line: L, column: C)" (trailing text counts as an error, as on
 * LINE); KZ_ENOMEM. */
struct json_object;
int message_parse_body(const char *text, size_t len, struct json_object **out, message_error *e);

/* Renders e as LINE's error JSON ({"message": ..., "details": [...]},
 * "details" omitted when empty) into buf[buflen], always NUL-terminated when
 * buflen > 0. Returns the length the whole text needs (as snprintf does), so
 * a return >= buflen means it was cut. */
size_t message_error_json(const message_error *e, char *buf, size_t buflen);

/* Renders e as one log line: "The request body has 2 error(s):
 * messages[0].text: May not be empty; messages[1].type: Must be one of …",
 * ending in "; and N more" when details were dropped. Same return and
 * termination rules as message_error_json. */
size_t message_error_line(const message_error *e, char *buf, size_t buflen);

/* Length of the UTF-8 text s[len] in UTF-16 code units, as LINE counts
 * text; (size_t)-1 if s is not valid UTF-8. */
size_t message_utf16_len(const char *s, size_t len);

/* Approximate extended grapheme clusters in s[len] (see above);
 * (size_t)-1 if s is not valid UTF-8. */
size_t message_grapheme_len(const char *s, size_t len);

#endif
