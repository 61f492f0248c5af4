/* libFuzzer target: the messages a plugin (or a sandbox client) hands in.
 * Must never crash, leak or hang; errors must render. */
#include <stddef.h>
#include <stdint.h>

#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    message_error e;
    char out[4096];
    if (message_validate((const char *)data, size, 5, &e) != 0) {
        message_error_json(&e, out, sizeof out);
        message_error_line(&e, out, sizeof out);
    }
    if (message_validate_request((const char *)data, size, 5, &e) != 0)
        message_error_json(&e, out, sizeof out);
    (void)message_utf16_len((const char *)data, size);
    (void)message_grapheme_len((const char *)data, size);
    return 0;
}
