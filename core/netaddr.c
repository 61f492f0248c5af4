#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/host.h>

#include "errbuf.h"

int netaddr_parse(const char *what, const char *text, struct sockaddr_in *sa, char *err,
                  size_t errlen)
{
    const char *colon = text != NULL ? strrchr(text, ':') : NULL;
    if (colon == NULL || colon == text || colon[1] == '\0') {
        errbuf_set(err, errlen, "%s \"%s\": expected HOST:PORT", what, text ? text : "");
        return KZ_EINVAL;
    }
    char host[64];
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host) {
        errbuf_set(err, errlen, "%s \"%s\": host too long", what, text);
        return KZ_EINVAL;
    }
    memcpy(host, text, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        errbuf_set(err, errlen, "%s \"%s\": '%s' is not an IPv4 address", what, text, host);
        return KZ_EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port > 65535 || colon[1] < '0' || colon[1] > '9') {
        errbuf_set(err, errlen, "%s \"%s\": port must be 0..65535", what, text);
        return KZ_EINVAL;
    }
    sa->sin_port = htons((uint16_t)port);
    return 0;
}
