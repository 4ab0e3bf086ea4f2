/* `sluice emu`: an emulator of the IONOS CloudAPI v6 resources an Application Load Balancer is
 * made of (ionos-alb-api.md): data centers' applicationloadbalancers and their
 * forwardingrules, and the top-level targetgroups, under the base path /cloudapi/v6, with the
 * API's envelopes, depth, paging, asynchronous writes (202 + /requests/{id}/status), error
 * shape and the same validation as `sluice check`. State persists in a JSON file written
 * atomically. Served with evhttp on its own event loop (the `sluice emu` process). */
#ifndef SLUICE_EMU_H
#define SLUICE_EMU_H

/* Runs the emulator on <listen> ("IP:PORT") with its state in <state_path> (created when
 * missing); requests must carry `Authorization: Bearer <token>` when <token> is not NULL.
 * Returns the process exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start (the state
 * file is unreadable or invalid, the address is taken; said on stderr). */
int sl_emu_main(const char *listen, const char *state_path, const char *token);

#endif
