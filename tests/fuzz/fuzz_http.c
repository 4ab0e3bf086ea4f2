/* libFuzzer: any bytes as a request head, parsed and routed through the demo config's rules;
 * the same bytes as a response head and as chunked/length bodies fed in uneven pieces. Must
 * never crash, hang or read out of bounds, and the body scanner must never claim more bytes
 * than it was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/router.h"

static struct sl_config *cfg;
static struct sl_router_scratch *scratch;

static const char rules[] =
    "{\"forwardingRules\":[{\"properties\":{\"name\":\"f\",\"protocol\":\"HTTP\","
    "\"listenerIp\":\"0.0.0.0\",\"listenerPort\":80,\"httpRules\":["
    "{\"name\":\"ws\",\"type\":\"FORWARD\",\"targetGroup\":\"g\",\"conditions\":["
    "{\"type\":\"HEADER\",\"condition\":\"EQUALS\",\"key\":\"Connection\",\"value\":\"upgrade\"},"
    "{\"type\":\"HEADER\",\"condition\":\"MATCHES\",\"key\":\"Upgrade\",\"value\":\"^web.*t$\"}]},"
    "{\"name\":\"q\",\"type\":\"STATIC\",\"responseMessage\":\"x\",\"conditions\":["
    "{\"type\":\"QUERY\",\"condition\":\"CONTAINS\",\"key\":\"a b\",\"value\":\"%\"},"
    "{\"type\":\"COOKIE\",\"condition\":\"EXISTS\",\"key\":\"s\"}]},"
    "{\"name\":\"r\",\"type\":\"REDIRECT\",\"location\":\"example.com\",\"conditions\":["
    "{\"type\":\"PATH\",\"condition\":\"STARTS_WITH\",\"value\":\"/admin\"},"
    "{\"type\":\"HOST\",\"condition\":\"ENDS_WITH\",\"value\":\".example\",\"negate\":true},"
    "{\"type\":\"SOURCE_IP\",\"value\":\"::ffff:0:0/96\"}]},"
    "{\"name\":\"m\",\"type\":\"FORWARD\",\"targetGroup\":\"g\",\"conditions\":["
    "{\"type\":\"METHOD\",\"condition\":\"EQUALS\",\"value\":\"GET\"}]}]}}],"
    "\"targetGroups\":[{\"properties\":{\"name\":\"g\",\"algorithm\":\"RANDOM\","
    "\"protocol\":\"HTTP\",\"targets\":[{\"ip\":\"127.0.0.1\",\"port\":1}]}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_http_head h;
    struct sl_addr any;
    const struct sl_forwarding_rule *f;
    const struct sl_http_rule *r;
    char loc[512];

    if (!cfg) {
        struct sl_diags d;

        sl_diags_init(&d, "rules");
        cfg = sl_config_load_buffer("rules", rules, sizeof(rules) - 1, NULL, &d);
        sl_diags_deinit(&d);
        scratch = sl_router_scratch_new();
        if (!cfg || !scratch)
            abort();
    }
    {
        static struct sl_http_response resp;
        struct sl_http_body b;
        size_t off = 0, step = size ? (data[0] % 7) + 1 : 1;

        if (sl_http_parse_response((const char *)data, size, size && (data[0] & 1), &resp) ==
                SL_OK && resp.head_len > size)
            abort();
        sl_http_body_init(&b, size && (data[0] & 2) ? SL_BODY_LENGTH : SL_BODY_CHUNKED, size / 2);
        while (off < size) {
            size_t piece = size - off < step ? size - off : step, used = 0;
            int rc = sl_http_body_scan(&b, (const char *)data + off, piece, &used);

            if (used > piece)
                abort();
            if (rc != SL_AGAIN)
                break;
            off += piece;
        }
    }
    memset(&h, 0, sizeof(h));
    if (sl_http_parse_head((const char *)data, size, &h) != SL_OK)
        return 0;
    sl_addr_parse("::ffff:10.1.2.3", &h.req.source);
    sl_addr_parse("0.0.0.0", &any);
    f = sl_router_find_frule(cfg, &any, 80);
    if (!f)
        abort();
    r = sl_router_match(f, &h.req, scratch);
    if (r && r->type == SL_RULE_REDIRECT)
        sl_router_redirect_location(r, &h.req, loc, sizeof(loc));
    return 0;
}
