/* libFuzzer: any bytes as a config file. Loading must never crash, hang or leak; a config
 * that loads is linted and asked to explain two requests, to reach the router too. */
#include <stdint.h>
#include <stdio.h>

#include "sluice/config.h"
#include "sluice/explain.h"

static const char upgrade[] = "GET /chat?x=1 HTTP/1.1\r\nHost: a.example:80\r\n"
                              "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                              "Cookie: s=1; t=2\r\n\r\n";
static const char plain[] = "POST /%61dmin/../x HTTP/1.1\r\nHost: [::1]:8080\r\n"
                            "Content-Length: 0\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_explain_opts o = { 0 };
    struct sl_diags d;
    struct sl_config *c;
    FILE *null = fopen("/dev/null", "w");

    sl_diags_init(&d, "fuzz.json");
    c = sl_config_load_buffer("fuzz.json", (const char *)data, size, NULL, &d);
    if (c) {
        sl_config_lint(c, &d);
        sl_explain(c, upgrade, sizeof(upgrade) - 1, &o, null);
        sl_explain(c, plain, sizeof(plain) - 1, &o, null);
    }
    sl_diags_print(&d, null);
    sl_config_unref(c);
    sl_diags_deinit(&d);
    fclose(null);
    return 0;
}
