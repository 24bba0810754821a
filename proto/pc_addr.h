/*
 * pc_addr.h -- "host:port" strings as written in flags, config files and
 * (later) cluster member lists on the wire.
 *
 * Pure string handling, no name resolution. Thread-safe.
 */
#ifndef PC_ADDR_H
#define PC_ADDR_H

#include <stddef.h>

#include "pc_error.h"

/*
 * Splits "host:port" (IPv4 address, host name, or "[v6addr]:port") into a
 * NUL-terminated host in hostbuf and a port 1..65535.
 * 0, PC_EINVAL (no port, bad port, empty host), or PC_ERANGE (host longer
 * than hostlen-1).
 * Accepted exactly: a host of [A-Za-z0-9._-], or a bracketed IPv6 literal
 * (hex digits, ':' and '.', optional "%zone") returned without brackets;
 * then ':' and 1..5 decimal digits. No whitespace. An unbracketed IPv6
 * address ("::1:80") is PC_EINVAL. hostbuf is written only on success.
 */
int pc_addr_parse(const char *s, char *hostbuf, size_t hostlen, int *port);

/*
 * Splits a comma-separated list ("a:1,b:2") and calls fn for each item
 * with its host and port; stops at the first non-zero return of fn and
 * returns it. Empty items are PC_EINVAL. 0 when all were parsed.
 * Spaces and tabs around items are ignored. The whole list is checked
 * before the first call, so fn is never called for a list that has a bad
 * item (PC_EINVAL / PC_ERANGE; hosts are limited to 255 bytes). host is
 * valid only during the call. list and fn must not be NULL (PC_EINVAL).
 */
int pc_addr_parse_list(const char *list, int (*fn)(void *arg, const char *host, int port),
                       void *arg);

#endif
