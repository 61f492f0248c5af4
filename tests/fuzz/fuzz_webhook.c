/* libFuzzer target: a LINE webhook body as an attacker could send it (after
 * or without a valid signature). Must never crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "webhook.h"

/* What the ingress accepts, json-c reads, and each payload reads as the
 * event json-c finds in the body (the scan cuts events out of the body
 * itself; json-c is the reference for what they mean). */
static void check_payloads(const uint8_t *data, size_t size, const webhook_batch *b)
{
    json_tokener *tok = json_tokener_new();
    json_object *doc = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    if (doc == NULL && json_tokener_get_error(tok) == json_tokener_continue)
        __builtin_trap(); /* accepted bodies are objects: json-c ends them itself */
    json_tokener_free(tok);
    json_object *events;
    if (doc == NULL || !json_object_object_get_ex(doc, "events", &events) ||
        json_object_array_length(events) != b->n)
        __builtin_trap();
    for (size_t i = 0; i < b->n; i++) {
        json_object *ev = json_tokener_parse(b->msgs[i].json);
        if (ev == NULL || !json_object_equal(ev, json_object_array_get_idx(events, i)))
            __builtin_trap();
        json_object_put(ev);
    }
    json_object_put(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    webhook_batch b = {0};
    if (webhook_parse("shop", (const char *)data, size, &b, err, sizeof err) == 0) {
        check_payloads(data, size, &b);
        webhook_batch_free(&b);
    }
    /* the signature arrives as a header value: a C string */
    char header[128];
    size_t n = size < sizeof header - 1 ? size : sizeof header - 1;
    memcpy(header, data, n);
    header[n] = '\0';
    (void)webhook_signature_ok("secret", (const char *)data, size, header);
    char sig[45];
    webhook_sign("secret", (const char *)data, size, sig);
    if (!webhook_signature_ok("secret", (const char *)data, size, sig))
        __builtin_trap(); /* our own signature must verify */
    return 0;
}
