/* The data section of a frame (spec 4.4), checked on its raw bytes before C-Blosc2 sees it.
 *
 * Codecs follow the offsets inside a chunk without checking them, so every index entry,
 * every chunk's size and every block start and stream size is range-checked here first
 * (spec 4.4.1-4.4.6, reader algorithm step 10).
 */
#ifndef MLA_DATA_H
#define MLA_DATA_H

#include <stdint.h>

#include "errors.h"
#include "frame.h"

/* Spec 4.4.4 checks 2, 6, 7 and 4.4.6 on a whole chunk of len bytes (its cbytes must be len).
 * NULL when a decompressor may see it, else the reason. Special-value chunks pass (their
 * kind is the caller's business to check). Only a header chunk may have the 16-byte header. */
const char *mla_chunk_problem(const uint8_t *chunk, int64_t len, int header_chunk);

/* Step 10: the chunk index and every chunk of the frame (deep validation). */
mla_code mla_data_check(const char *path, const mla_frame *f, mla_error *err);

#endif
