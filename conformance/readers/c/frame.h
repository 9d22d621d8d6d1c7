/* Structural checks of a .mla file on its raw bytes, before the Blosc2 library sees it.
 *
 * Reads only the frame prefix, the frame header and the trailer (bounded reads), checks
 * them in the order of the spec's reader algorithm, and returns what the b2nd metalayer
 * records plus the decompressed bytes of the "mlarray" header.
 */
#ifndef MLA_FRAME_H
#define MLA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define MLA_MAX_DIM 16
#define MLA_MAX_HEADER_BYTES (16u * 1024u * 1024u)

typedef struct {
    uint64_t file_size;
    uint64_t frame_size;
    uint64_t header_size;
    uint64_t trailer_len;
    /* b2nd metalayer */
    int ndim;
    int64_t shape[MLA_MAX_DIM];
    int64_t chunks[MLA_MAX_DIM];
    int64_t blocks[MLA_MAX_DIM];
    char dtype[64];
    /* frame header elements 5-8 (spec 4.3, 4.4): compressed size of the chunks area, sizes */
    int64_t data_size;
    int data_size_ok; /* element 5 is an integer that fits int64 */
    int64_t typesize, blocksize, chunksize;
    /* decompressed content of the "mlarray" vlmetalayer (malloc'd) */
    uint8_t *header;
    size_t header_len;
} mla_frame;

/* Check the frame of the file at path; fill *f. On failure returns the error code (also in err). */
mla_code mla_frame_inspect(const char *path, mla_frame *f, mla_error *err);
void mla_frame_free(mla_frame *f);

/* Lower-case hex SHA-256 of the frame's data section [header_size, frame_size - trailer_len). */
mla_code mla_frame_data_digest(const char *path, const mla_frame *f, char hex[65], mla_error *err);

#endif
