/*
 * peercache_cli_top.h -- `peercache-cli top` (peercache_cli_top.c): a live
 * view of the cluster, one frame a second, until 'q' on a terminal's
 * stdin (or SIGINT / SIGTERM). `seed` asks for the members; each member's
 * counters come over a connection of its own, made with `token` and at
 * most `timeout_ms` (capped below the refresh) per call. Returns the
 * CLI's exit status: 0, or 2 when memory ran out.
 */
#ifndef PEERCACHE_CLI_TOP_H
#define PEERCACHE_CLI_TOP_H

#include "pc_client.h"

int cli_top_run(pc_client_t *seed, const char *token, int timeout_ms);

#endif
