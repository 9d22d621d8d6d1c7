/*
 * Writing a box of the result: the rows of a decoded block's part (copy_box), or one item
 * repeated (fill_box). Rows are copied with constant-size moves where they are short, with
 * the C library's memcpy where they are long, and, for a result larger than the caches,
 * with streaming stores where they are whole cache lines (the MLA_STREAM mode of a read).
 */

#include "blockcopy.h"

#if MLA_STREAMS
/*
 * Rows of whole cache lines (n a multiple of 64 bytes): those that start on a cache line
 * are written with streaming stores, which write whole lines to memory without reading
 * them first (a plain store first reads the line it writes into the cache); the others
 * with plain stores. (Streaming only a row's whole lines, the plain ends of neighbouring
 * rows sharing lines, measured slower on the benchmark MR. A loop of its own rather than
 * stream_copy (box.c), whose plain head and tail are two memcpy calls per row: through it, CT
 * loads took 1.2 times as long.) The caller issues the store fence once all are written.
 */
static void stream_rows(uint8_t *dst, const uint8_t *src, int64_t rows, size_t n, int64_t dst_step,
                        int64_t src_step) {
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *d = dst + r * dst_step;
        const uint8_t *q = src + r * src_step;
        if ((uintptr_t)d % 64 != 0) {
            memcpy(d, q, n);
            continue;
        }
        for (size_t k = 0; k < n; k += 64) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(q + k));
            const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(q + k + 16));
            const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(q + k + 32));
            const __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(q + k + 48));
            _mm_stream_si128((__m128i *)(void *)(d + k), a);
            _mm_stream_si128((__m128i *)(void *)(d + k + 16), b);
            _mm_stream_si128((__m128i *)(void *)(d + k + 32), c);
            _mm_stream_si128((__m128i *)(void *)(d + k + 48), e);
        }
    }
}
#endif

/*
 * Copy `rows` rows of `row_bytes` bytes, one every `src_step` / `dst_step` bytes. Rows of
 * 8, 16, 32 or 64 bytes get a memcpy of constant size, which the compiler turns into a few
 * vector moves; other rows under 64 bytes (the edges of a box) two overlapping moves of a
 * constant size; longer rows the C library's memcpy, whose stores (the widest the CPU has,
 * chosen at run time) write a result that is not in the cache faster. With `stream`, rows
 * of whole cache lines go to stream_rows.
 */
#define MLA_ROWS(width)                                                                                   \
    for (int64_t r = 0; r < rows; r++) {                                                                  \
        memcpy(dst + r * dst_step, src + r * src_step, width);                                            \
    }                                                                                                     \
    return;

#define MLA_PAIR(width)                                                                                   \
    for (int64_t r = 0; r < rows; r++) {                                                                  \
        memcpy(dst + r * dst_step, src + r * src_step, width);                                            \
        memcpy(dst + r * dst_step + n - width, src + r * src_step + n - width, width);                    \
    }                                                                                                     \
    return;

static void copy_rows(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t row_bytes, int64_t dst_step,
                      int64_t src_step, int stream) {
    const size_t n = (size_t)row_bytes;
#if MLA_STREAMS
    if (stream && n % 64 == 0) {
        stream_rows(dst, src, rows, n, dst_step, src_step);
        return;
    }
#else
    (void)stream;
#endif
    switch (n) {
    case 8: MLA_ROWS(8)
    case 16: MLA_ROWS(16)
    case 32: MLA_ROWS(32)
    case 64: MLA_ROWS(64)
    default: break;
    }
    if (n > 64) {
        MLA_ROWS(n)
    } else if (n > 32) {
        MLA_PAIR(32)
    } else if (n > 16) {
        MLA_PAIR(16)
    } else if (n > 8) {
        MLA_PAIR(8)
    } else if (n > 4) {
        MLA_PAIR(4)
    } else if (n > 2) {
        MLA_PAIR(2)
    }
    MLA_ROWS(n) /* 1 or 2 bytes */
}

/*
 * Set `rows` rows of `row_bytes` bytes, one every `step` bytes, to the byte `byte`: one
 * memset when the rows follow one another, else a memset of constant size per row for
 * the common widths (vector stores, no call).
 */
#define MLA_SET(width)                                                                                    \
    for (int64_t r = 0; r < rows; r++) {                                                                  \
        memset(dst + r * step, byte, width);                                                              \
    }                                                                                                     \
    return;

static void set_rows(uint8_t *dst, int64_t rows, int64_t row_bytes, int64_t step, int byte) {
    if (row_bytes == step) {
        memset(dst, byte, (size_t)(rows * row_bytes));
        return;
    }
    switch (row_bytes) {
    case 16: MLA_SET(16)
    case 32: MLA_SET(32)
    case 64: MLA_SET(64)
    case 128: MLA_SET(128)
    default: MLA_SET((size_t)row_bytes)
    }
}

/*
 * Copy box [s, e) of a decoded block (C order, shape bshape) to dst, whose strides are
 * dst_strides (bytes). The last axis is copied in rows (memcpy) when the result is
 * contiguous along it, item by item otherwise; the last two axes form one run of rows.
 */
MLA_INTERNAL void copy_box(const uint8_t *block, const int64_t *bshape, const int64_t *s, const int64_t *e,
                     uint8_t *dst, const int64_t *dst_strides, int32_t ndim, int32_t itemsize, int stream) {
    int64_t src_strides[MLA_MAX_DIM];
    int64_t idx[MLA_MAX_DIM];
    int64_t step = itemsize;
    for (int32_t a = ndim - 1; a >= 0; a--) {
        src_strides[a] = step;
        step *= bshape[a];
    }
    const int32_t last = ndim - 1;
    const int64_t row_items = e[last] - s[last];
    const int contiguous = row_items == 1 || dst_strides[last] == itemsize;
    /* rows: along axis last-1 (one row for a 1-d array) */
    const int32_t row_axis = last - 1;
    const int64_t rows = row_axis >= 0 ? e[row_axis] - s[row_axis] : 1;
    const int64_t src_row = row_axis >= 0 ? src_strides[row_axis] : 0;
    const int64_t dst_row = row_axis >= 0 ? dst_strides[row_axis] : 0;

    const uint8_t *src = block;
    for (int32_t a = 0; a < ndim; a++) {
        src += s[a] * src_strides[a];
        idx[a] = s[a];
    }
    for (;;) {
        if (contiguous) {
            copy_rows(dst, src, rows, row_items * itemsize, dst_row, src_row, stream);
        } else {
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < row_items; i++) {
                    memcpy(dst + r * dst_row + i * dst_strides[last], src + r * src_row + i * itemsize,
                           (size_t)itemsize);
                }
            }
        }
        /* next run of rows: odometer over axes 0 .. last-2 */
        int32_t a = last - 2;
        for (; a >= 0; a--) {
            idx[a]++;
            src += src_strides[a];
            dst += dst_strides[a];
            if (idx[a] < e[a]) {
                break;
            }
            src -= (e[a] - s[a]) * src_strides[a];
            dst -= (e[a] - s[a]) * dst_strides[a];
            idx[a] = s[a];
        }
        if (a < 0) {
            return;
        }
    }
}

/*
 * Fill box [lo, hi) (its first item at dst; result strides in bytes) with the item `value`,
 * a run of rows at a time as copy_box copies: an item of one byte repeated with set_rows,
 * others copied from a row of them (a piece of FILL_PIECE bytes at a time; with `stream`,
 * rows of whole cache lines with streaming stores, as copy_rows says).
 */
#define FILL_PIECE 1024
MLA_INTERNAL void fill_box(uint8_t *dst, const int64_t *lo, const int64_t *hi, const int64_t *strides, int32_t ndim,
                     int32_t itemsize, const uint8_t *value, int stream) {
    int64_t idx[MLA_MAX_DIM];
    uint8_t row[FILL_PIECE];
    const int32_t last = ndim - 1;
    const int64_t row_items = hi[last] - lo[last];
    const int contiguous = strides[last] == itemsize;
    const int32_t row_axis = last - 1;
    const int64_t rows = row_axis >= 0 ? hi[row_axis] - lo[row_axis] : 1;
    const int64_t row_step = row_axis >= 0 ? strides[row_axis] : 0;
    const int64_t piece = FILL_PIECE / itemsize; /* items in `row` */
    int same = 1;
    for (int32_t b = 1; b < itemsize; b++) {
        same &= value[b] == value[0];
    }
    if (contiguous && !same && piece > 0) {
        for (int64_t k = 0; k < piece; k++) {
            memcpy(row + k * itemsize, value, (size_t)itemsize);
        }
    }
    for (int32_t a = 0; a < ndim; a++) {
        idx[a] = lo[a];
    }
    for (;;) {
        if (contiguous && same) {
            set_rows(dst, rows, row_items * itemsize, row_step, value[0]);
        } else if (contiguous && piece > 0) {
            for (int64_t k = 0; k < row_items; k += piece) {
                const int64_t take = row_items - k < piece ? row_items - k : piece;
                copy_rows(dst + k * itemsize, row, rows, take * itemsize, row_step, 0, stream);
            }
        } else {
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t k = 0; k < row_items; k++) {
                    memcpy(dst + r * row_step + k * strides[last], value, (size_t)itemsize);
                }
            }
        }
        /* next run of rows: odometer over axes 0 .. last-2 */
        int32_t a = last - 2;
        for (; a >= 0; a--) {
            idx[a]++;
            dst += strides[a];
            if (idx[a] < hi[a]) {
                break;
            }
            dst -= (hi[a] - lo[a]) * strides[a];
            idx[a] = lo[a];
        }
        if (a < 0) {
            return;
        }
    }
}
