/* A bounded msgpack decoder: just enough to walk the Blosc2 frame header and trailer.
 *
 * Every read is checked against the end of the buffer, so truncated or hostile input
 * yields an error, never an out-of-bounds read. Nothing is allocated.
 */
#ifndef MLA_MSGPACK_H
#define MLA_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MP_NIL,
    MP_BOOL,
    MP_UINT,   /* non-negative integer: value in .u */
    MP_INT,    /* negative integer: value in .i */
    MP_FLOAT,  /* float32 or float64: value in .f */
    MP_STR,    /* payload in .data / .len */
    MP_BIN,    /* payload in .data / .len */
    MP_EXT,    /* payload in .data / .len, type in .ext_type */
    MP_ARRAY,  /* .len elements follow */
    MP_MAP,    /* .len key/value pairs follow */
} mp_kind;

typedef struct {
    mp_kind kind;
    uint8_t tag;          /* the first byte of the encoded object */
    uint64_t u;
    int64_t i;
    double f;
    const uint8_t *data;
    uint32_t len;
    int8_t ext_type;
} mp_item;

typedef struct {
    const uint8_t *buf;
    size_t len;
    size_t pos;
} mp_reader;

void mp_init(mp_reader *r, const uint8_t *buf, size_t len);
/* Read one object header (str/bin/ext payloads are consumed too). 0 on success, -1 on error. */
int mp_next(mp_reader *r, mp_item *it);
/* Skip one complete object, nested containers included (depth-limited). 0 or -1. */
int mp_skip(mp_reader *r);
/* The item as a signed 64-bit integer; -1 if it is not an integer or does not fit. */
int mp_as_int64(const mp_item *it, int64_t *out);

/* 1 when the msgpack document buf nests containers deeper than limit levels (the outermost
 * container is level 1; spec 4.2), 0 otherwise (malformed input is left to the decoder). */
int mp_too_deep(const uint8_t *buf, size_t len, int limit);

#endif
