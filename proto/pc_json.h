/*
 * pc_json.h -- JSON strings, the one way the node (its /cluster page) and
 * the CLI (--json) write them: escaped so that the text holds no control
 * characters (a terminal that shows it cannot be driven by it), and only
 * for UTF-8 -- bytes that are not text are the caller's to encode (the
 * CLI writes them as base64) or to replace (pc_json_text).
 *
 * Pure; appends to a pc_buf_t. Errors: 0 or PC_ENOMEM (out may hold part
 * of the string then).
 */
#ifndef PC_JSON_H
#define PC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "pc_buf.h"

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF. */
bool pc_json_utf8_valid(const void *p, size_t n);

/* p[0..n), which must be UTF-8, as a JSON string (quotes included). */
int pc_json_string(pc_buf_t *out, const void *p, size_t n);

/* A C string that should be text, as a JSON string; bytes that are not
 * UTF-8 become '?'. */
int pc_json_text(pc_buf_t *out, const char *s);

#endif
