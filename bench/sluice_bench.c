/* sluice-bench: the WebSocket echo server (server.c) and load generators (client.c) used to
 * benchmark sluice and its peers; bench/README.md says how to compare them fairly. This file
 * only dispatches subcommands. */
#include <stdio.h>
#include <string.h>

#include "ws.h"

static const char usage_text[] =
    "usage:\n"
    "  sluice-bench server --listen IP:PORT [--threads N] [--name NAME]\n"
    "      RFC 6455 echo server; plain GET answers 200 \"sluice-bench NAME\"\n"
    "  sluice-bench bulk --url URL [--size BYTES] [--seconds S] [--conns N]\n"
    "                    [--window MSGS] [--threads N] [--verify] [--json]\n"
    "      pipelined echo throughput (1 MiB messages, 5 s, 1 connection): MiB/s, MB/s, msgs/s\n"
    "  sluice-bench rr --url URL [--conns N] [--size BYTES] [--seconds S] [--threads N]\n"
    "                  [--verify] [--json]\n"
    "      one message (64 B) at a time per connection: msgs/s and round-trip latency\n"
    "      p50/p90/p99/p99.9/max\n"
    "  sluice-bench upgrades --url URL [--conns C] [--size BYTES] [--seconds S] [--threads N]\n"
    "                        [--src A-B] [--protocol P] [--json]\n"
    "      C slots (4) each connect, upgrade, echo one message (64 B), close, and again:\n"
    "      upgrades/s and handshake latency p50/p90/p99/p99.9/max\n"
    "  sluice-bench idle --url URL --conns N [--hold S] [--concurrency C] [--threads N]\n"
    "                    [--src A-B] [--protocol P] [--json]\n"
    "      open N connections (C = 200 handshakes at a time), hold them S s (10), then ping\n"
    "      each and expect its pong\n"
    "\n"
    "URL is ws://HOST[:PORT][/PATH] or, over TLS, wss://HOST[:PORT][/PATH] (ports 80 and 443\n"
    "by default). With wss://, every client mode also takes:\n"
    "  --insecure, -k  do not verify the server's certificate (self-signed test certificates)\n"
    "  --cafile FILE   verify it against the PEM certificates in FILE, not the system's CAs\n"
    "  --sni NAME      send NAME as SNI and check the certificate against it, not the URL's\n"
    "                  host (no SNI is sent for an IP address)\n"
    "  --no-resume     make every TLS handshake a full one (by default a thread resumes the\n"
    "                  sessions of its earlier handshakes)\n"
    "\n"
    "Sizes take k/M/G (KiB, MiB, GiB). --src takes A-B, A or a comma-separated list of them\n"
    "(e.g. 127.0.0.2-127.0.0.200). Aliases: upgrades --concurrency C is --conns C, and\n"
    "--source-ips is --src. Every echo is verified (order, length, opcode, content): --verify\n"
    "is a no-op kept for old scripts. With stderr on a terminal, a progress line is redrawn\n"
    "every second. Exit status: 0 success, 1 failure (a handshake, an echo or the protocol\n"
    "failed), 2 usage error.\n";

int bench_usage(const char *why)
{
    if (why)
        fprintf(stderr, "sluice-bench: %s\n", why);
    fputs(usage_text, stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return bench_usage(NULL);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "server"))
        return bench_server_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bulk") || !strcmp(argv[1], "rr") || !strcmp(argv[1], "upgrades") ||
        !strcmp(argv[1], "idle"))
        return bench_client_main(argc - 1, argv + 1);
    return bench_usage("unknown subcommand");
}
