/* From decompressed header bytes to a checked JSON header (spec sections 2.2, 4.7, 5, 6).
 *
 * mla_header_decode: msgpack str -> UTF-8 -> JSON object (HEADER_ENCODING, HEADER_NOT_JSON).
 * mla_header_version: schema_version (HEADER_INVALID, UNSUPPORTED_VERSION).
 * mla_header_validate: the schema-1.x rules (HEADER_INVALID), in validate.c.
 * mla_header_match_frame: header vs the b2nd metalayer (FRAME_MISMATCH).
 */
#ifndef MLA_HEADER_H
#define MLA_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "frame.h"
#include "json.h"

/* Arrays and objects nest at most 64 levels in a header, the header object being level 1 (spec 4.7). */
#define MLA_JSON_MAX_DEPTH 64
#define MLA_MINOR 1u /* this reader implements schema 1.0 and 1.1 (spec section 12) */

mla_code mla_header_decode(const uint8_t *h, size_t len, json_doc **doc, mla_error *err);

/* Check schema_version; *newer_minor is set when the minor is above the one implemented (0). */
mla_code mla_header_version(const json_value *header, int *newer_minor, mla_error *err);

/* Validate every rule of schema 1.x; with lenient, unknown members are ignored (newer minor). */
mla_code mla_header_validate(const json_value *header, int lenient, mla_error *err);

mla_code mla_header_match_frame(const json_value *header, const mla_frame *f, mla_error *err);

/* Size in bytes of one element of an allowed dtype string, or 0. */
size_t mla_dtype_itemsize(const char *dtype);

#endif
