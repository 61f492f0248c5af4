#include <curl/curl.h>

#include "cli.h"

int main(int argc, char **argv)
{
    /* libcurl's global state must be set up before any thread exists (the
     * sender, the sandbox and the CLI's sandbox commands use it). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_main(argc, argv);
    curl_global_cleanup();
    return rc;
}
