/* libFuzzer target: a LINE webhook body as an attacker could send it (after
 * or without a valid signature). Must never crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    webhook_batch b = {0};
    if (webhook_parse("shop", (const char *)data, size, &b, err, sizeof err) == 0)
        webhook_batch_free(&b);
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
