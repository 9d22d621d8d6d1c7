/*
 * The per-block loops of mlarray's read path, in C: reading (mlarray/storage/fastread.py)
 * and checking the block table of a chunk (mlarray/storage/structure.py, spec 4.4.6).
 *
 * For one chunk of a b2nd frame and a box of it, decode each block the box touches
 * into a block-sized buffer (which stays in the CPU cache) and copy the box's part of
 * it to the result, row by row. Only the touched blocks are decoded, each once; no
 * chunk-sized buffer is written or read. A large result of the patch path goes through a
 * cache-sized stage instead, a row of chunks at a time, and from there to the result with
 * streaming stores (read_box_staged).
 *
 * This file uses no Python and links to nothing but the C library: C-Blosc2's
 * blosc2_getitem_ctx is handed in as a function pointer (taken by ctypes from the
 * libblosc2 that python-blosc2 ships), and the functions here are called through
 * ctypes, which releases the GIL for the duration of the call. It is built as an
 * optional extension; without a compiler, fastread.py does the same work with NumPy.
 *
 * Layout (spec 4.3): a chunk is its block grid in C order, each block its items in C
 * order. All sizes are in items unless named *_bytes; strides of the result in bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#define MLA_EXPORT __declspec(dllexport)
#else
#include <errno.h>
#include <unistd.h>
#define MLA_EXPORT __attribute__((visibility("default")))
#endif

#define MLA_MAX_DIM 16

/* Non-temporal (streaming) stores: SSE2, which every x86-64 CPU has. Elsewhere plain copies. */
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define MLA_STREAMS 1
#else
#define MLA_STREAMS 0
#endif

/* The `mode` bits of a read: the result holds zeros over the box already (a zeroed
 * allocation: zeros are not written), and whole cache lines of rows are written with
 * streaming stores (a result larger than the caches; see copy_rows). */
#define MLA_ZEROED 1
#define MLA_STREAM 2

/* blosc2_getitem_ctx(context, src, srcsize, start, nitems, dest, destsize) */
typedef int (*getitem_fn)(void *, const void *, int32_t, int, int, void *, int32_t);

/* Errors (C-Blosc2's own codes are passed on as they are, all > MLA_ERR_BASE). */
#define MLA_ERR_BASE (-1000)
#define MLA_ERR_ARGS (-1001)     /* the geometry handed in is inconsistent */
#define MLA_ERR_TYPESIZE (-1002) /* the block is not a whole number of the chunk's items */
#define MLA_ERR_SHORT (-1003)    /* C-Blosc2 decoded fewer bytes than a block */
#define MLA_ERR_BLOCK (-1004)    /* spec 4.4.6: a block offset outside the chunk */
#define MLA_ERR_STREAM (-1005)   /* spec 4.4.6: a compressed stream outside the chunk */
#define MLA_ERR_OVERLAP (-1006)  /* spec 4.4.6: another block starts inside a block */
#define MLA_ERR_TABLE (-1007)    /* spec 4.4.6: the block-start table or dictionary outside the chunk */
#define MLA_ERR_READ (-1008)     /* the file could not be read (an error, or it ended early) */
#define MLA_ERR_CHANGED (-1009)  /* the chunk read differs from the header checked before (the file changed) */
#define MLA_NOT_READY (-1010)    /* with a chunk grid: a touched chunk has neither an address nor a known value */
#define MLA_ERR_GAP (-1011)      /* spec 4.4.6: bytes between or after the blocks that no block holds */

MLA_EXPORT int mla_abi_version(void) { return 16; }

/* Whether this build writes staged results with streaming stores (see read_box_staged). */
MLA_EXPORT int mla_streams(void) { return MLA_STREAMS; }

/* A release fence, called by the Python that fills the tables a grid-mode read uses without a
 * lock: between writing a chunk's length, flags or value and the address or flag that makes
 * it ready. The loop reads those with acquire loads (ready_addr, ready_known), so a reader on
 * any CPU that sees a chunk ready sees what was written before. */
MLA_EXPORT void mla_publish(void) {
#if defined(_MSC_VER)
    MemoryBarrier();
#else
    __atomic_thread_fence(__ATOMIC_RELEASE);
#endif
}

static int64_t ready_addr(const int64_t *table, int64_t at) {
#if defined(_MSC_VER)
    const int64_t v = *(volatile const int64_t *)&table[at];
    MemoryBarrier();
    return v;
#else
    return __atomic_load_n(&table[at], __ATOMIC_ACQUIRE);
#endif
}

static int ready_known(const uint8_t *table, int64_t at) {
    if (table == NULL) {
        return 0;
    }
#if defined(_MSC_VER)
    const uint8_t v = *(volatile const uint8_t *)&table[at];
    MemoryBarrier();
    return v != 0;
#else
    return __atomic_load_n(&table[at], __ATOMIC_ACQUIRE) != 0;
#endif
}

/* Whether block j's bit is set in a chunk's row of block checks made (see mla_read_region),
 * and setting it. Only ever set, after the block passed its checks; the bytes checked are
 * the file's (mapped read-only), so a reader that sees the bit may skip the check. Relaxed:
 * a reader that misses a bit just checks again. */
static int block_checked(const uint8_t *row, int64_t j) {
#if defined(_MSC_VER)
    return (*(volatile const uint8_t *)&row[j >> 3] >> (j & 7)) & 1;
#else
    return (__atomic_load_n(&row[j >> 3], __ATOMIC_RELAXED) >> (j & 7)) & 1;
#endif
}

static void block_passed(uint8_t *row, int64_t j) {
#if defined(_MSC_VER)
    InterlockedOr8((volatile char *)&row[j >> 3], (char)(1 << (j & 7)));
#else
    __atomic_fetch_or(&row[j >> 3], (uint8_t)(1u << (j & 7)), __ATOMIC_RELAXED);
#endif
}

/* Checking a block scans the chunk's block-start table, so checking every block of a chunk
 * block by block costs the square of its block count: the caller checks chunks of more
 * blocks whole (mlarray.storage.structure.BLOCKWISE_MAX), and the loop refuses to check them so. */
#define MLA_BLOCKWISE_MAX 1024
MLA_EXPORT int64_t mla_blockwise_max(void) { return MLA_BLOCKWISE_MAX; }

static int64_t read_i32(const uint8_t *at) {
    int32_t v;
    memcpy(&v, at, 4); /* little-endian machines only: blockcopy.py checks sys.byteorder */
    return v;
}

/* Where the blocks of a data chunk are (spec 4.4.6); a chunk stored uncompressed has none. */
typedef struct {
    int64_t cbytes, head, nblocks, first;
} block_table;

/* Rule 1 of spec 4.4.6 (the caller checked the 32-byte header, spec 4.4.4): 0, or 4
 * (the block-start table outside the chunk) or 5 (the dictionary outside the chunk). */
static int find_table(const uint8_t *chunk, int64_t cbytes, block_table *t) {
    t->cbytes = cbytes;
    t->head = 32;
    t->nblocks = 0;
    t->first = 32;
    if (chunk[2] & 0x02) {
        return 0; /* stored uncompressed: no table, nothing to walk */
    }
    const int64_t nbytes = read_i32(chunk + 4), blocksize = read_i32(chunk + 8);
    if (nbytes <= 0) {
        return 0;
    }
    if (blocksize <= 0) {
        return 4;
    }
    t->nblocks = (nbytes + blocksize - 1) / blocksize;
    const int64_t table_end = t->head + 4 * t->nblocks;
    if (table_end > cbytes) {
        return 4;
    }
    t->first = table_end;
    if (chunk[31] & 0x01) { /* a dictionary follows the table */
        if (table_end + 4 > cbytes) {
            return 5;
        }
        const int64_t dsize = read_i32(chunk + table_end);
        t->first = table_end + 4 + dsize;
        if (dsize < 0 || t->first > cbytes) {
            return 5;
        }
    }
    return 0;
}

/* Walk block j's streams (rule 2 of spec 4.4.6): 0 with *end set, 1 or 2. */
static int block_end(const uint8_t *chunk, const block_table *t, int64_t j, int64_t *end) {
    const int flags = chunk[2], ctypesize = chunk[3];
    const int64_t nbytes = read_i32(chunk + 4), blocksize = read_i32(chunk + 8);
    const int64_t start = read_i32(chunk + t->head + 4 * j);
    if (start < t->first) {
        return 1;
    }
    const int whole = j < t->nblocks - 1 || nbytes % blocksize == 0;
    const int streams = !(flags & 0x10) && whole ? ctypesize : 1;
    int64_t pos = start;
    for (int k = 0; k < streams; k++) {
        if (pos + 4 > t->cbytes) {
            return 1;
        }
        const int64_t csize = read_i32(chunk + pos);
        pos += 4 + (csize > 0 ? csize : csize < 0 ? 1 : 0);
        if (pos > t->cbytes) {
            return 2;
        }
    }
    *end = pos;
    return 0;
}

/*
 * Where every stream of block j of a chunk is a run of one byte, that byte (0-255), else -1
 * (decode the block). C-Blosc2 stores a run as a stream length of 0 (zeros) or of -v
 * followed by a token with bit 0 set (the byte v), and decodes it with a memset.
 * Only where the block's bytes are its streams' bytes: an extended header whose filters
 * are all none, or, for zeros, byte or bit shuffles (which leave zeros zero), not stored
 * uncompressed, and nothing flagged in byte 31 but a dictionary. The caller has checked
 * the block's streams (spec 4.4.6, rule 2) or the whole chunk.
 */
static int block_run(const uint8_t *chunk, const block_table *t, int64_t j) {
    const int flags = chunk[2];
    if ((flags & 0x05) != 0x05 || (flags & 0x02) || (chunk[31] & ~0x01) || j < 0 || j >= t->nblocks) {
        return -1;
    }
    int plain = 1;
    for (int f = 16; f < 22; f++) {
        if (chunk[f] > 2) {
            return -1;
        }
        plain &= chunk[f] == 0;
    }
    const int64_t nbytes = read_i32(chunk + 4), blocksize = read_i32(chunk + 8);
    const int whole = j < t->nblocks - 1 || nbytes % blocksize == 0;
    const int streams = !(flags & 0x10) && whole ? chunk[3] : 1;
    int64_t pos = read_i32(chunk + t->head + 4 * j);
    int byte = -1;
    for (int k = 0; k < streams; k++) {
        if (pos < t->first || pos + 4 > t->cbytes) {
            return -1;
        }
        const int64_t csize = read_i32(chunk + pos);
        int value = 0;
        if (csize < 0 && csize >= -255 && pos + 5 <= t->cbytes && (chunk[pos + 4] & 0x01)) {
            value = (int)-csize;
            pos += 5;
        } else if (csize == 0) {
            pos += 4;
        } else {
            return -1;
        }
        if (byte >= 0 && value != byte) {
            return -1;
        }
        byte = value;
    }
    return byte == 0 || plain ? byte : -1;
}

/*
 * Rules 2 and 3 of spec 4.4.6 for block j alone: its streams lie inside the chunk, no
 * other block starts inside [bstart[j], end[j]), and the block ends where the next block
 * (by start) starts, or at the end of the chunk, and starts at the first byte after the
 * table (and dictionary) when no block starts before it. Every block of a chunk passes
 * this if and only if the chunk passes rules 2 and 3 (two non-empty ranges overlap
 * exactly when one of them holds the other's start; ranges that each end where the next
 * begins, the first at the start and the last at the end, tile the area), so a reader may
 * check just the blocks it decodes (spec 4.4.6), each touching only the bytes its decoding
 * touches and the table. Returns 0, 1, 2, 3 or 6 as mla_blocks_problem.
 */
static int block_problem(const uint8_t *chunk, const block_table *t, int64_t j) {
    int64_t end = 0;
    const int problem = block_end(chunk, t, j, &end);
    if (problem) {
        return problem;
    }
    const int64_t start = read_i32(chunk + t->head + 4 * j);
    const uint8_t *table = chunk + t->head;
    int64_t next = t->cbytes, before = 0;
    for (int64_t k = 0; k < t->nblocks; k++) {
        const int64_t other = read_i32(table + 4 * k);
        if (k == j) {
            continue;
        }
        if (other >= start && other < end) {
            return 3;
        }
        if (other >= end && other < next) {
            next = other;
        }
        before |= other < start;
    }
    return end == next && (before || start == t->first) ? 0 : 6;
}

/* The checks a reader makes before decoding block j of a chunk (spec 4.4.6, rule 1 and
 * rules 2-3 for block j): 0, 1, 2, 3 as mla_blocks_problem, 4 (the block-start table) or
 * 5 (the dictionary outside the chunk). For the tests; the read loop calls the parts. */
MLA_EXPORT int mla_block_problem(const uint8_t *chunk, int64_t cbytes, int64_t j) {
    block_table t;
    const int problem = find_table(chunk, cbytes, &t);
    if (problem || j < 0 || j >= t.nblocks) {
        return problem;
    }
    return block_problem(chunk, &t, j);
}

#if MLA_STREAMS
/*
 * Rows of whole cache lines (n a multiple of 64 bytes): those that start on a cache line
 * are written with streaming stores, which write whole lines to memory without reading
 * them first (a plain store first reads the line it writes into the cache); the others
 * with plain stores. (Streaming only a row's whole lines, the plain ends of neighbouring
 * rows sharing lines, measured slower on the benchmark MR. A loop of its own rather than
 * stream_copy, whose plain head and tail are two memcpy calls per row: through it, CT
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
static void copy_box(const uint8_t *block, const int64_t *bshape, const int64_t *s, const int64_t *e,
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

/* The error code of a problem found by find_table or block_problem. */
static int64_t block_error(int problem) {
    switch (problem) {
    case 1: return MLA_ERR_BLOCK;
    case 2: return MLA_ERR_STREAM;
    case 3: return MLA_ERR_OVERLAP;
    case 6: return MLA_ERR_GAP;
    default: return MLA_ERR_TABLE;
    }
}

static void fill_box(uint8_t *dst, const int64_t *lo, const int64_t *hi, const int64_t *strides, int32_t ndim,
                     int32_t itemsize, const uint8_t *value, int stream);

/* Step q to the next index of the box qlo .. qhi (inclusive) in C order; 0 after the last. */
static int next_index(int64_t *q, const int64_t *qlo, const int64_t *qhi, int32_t ndim) {
    for (int32_t a = ndim - 1; a >= 0; a--) {
        if (++q[a] <= qhi[a]) {
            return 1;
        }
        q[a] = qlo[a];
    }
    return 0;
}

/*
 * Decode the blocks of one chunk that the box [lo, hi) (chunk-local item coordinates)
 * touches, and copy the box to out, which points at the result's item for lo. With
 * `check`, each block is checked (spec 4.4.6) just before it is decoded: the caller
 * has checked the chunk's header only (spec 4.4.4). `done` (or NULL), `done_bytes` long:
 * this chunk's bits of the blocks checked before, skipped here and set for those checked.
 * Blocks whose streams are runs of one byte are filled with it (block_run), or, with
 * MLA_ZEROED in `mode` (the result holds zeros already), left as they are when that byte
 * is 0; with MLA_STREAM, rows of decoded blocks are written as copy_rows says.
 * Returns the number of blocks decoded, or a negative error.
 */
static int64_t read_chunk(getitem_fn getitem, void *ctx, const uint8_t *src, int32_t srcsize, int check,
                          int32_t ndim, int32_t itemsize, const int64_t *blockshape, const int64_t *blockgrid,
                          const int64_t *lo, const int64_t *hi, uint8_t *out, const int64_t *out_strides,
                          uint8_t *scratch, int32_t block_bytes, uint8_t *done, int64_t done_bytes, int mode) {
    int64_t qlo[MLA_MAX_DIM], qhi[MLA_MAX_DIM], q[MLA_MAX_DIM];
    const int zeroed = mode & MLA_ZEROED, stream = mode & MLA_STREAM;
    int64_t s[MLA_MAX_DIM], e[MLA_MAX_DIM];
    int64_t gstride[MLA_MAX_DIM];
    if (srcsize < 32) {
        return MLA_ERR_ARGS;
    }
    const int32_t ctypesize = src[3]; /* the chunk's own typesize (1 for wide items) */
    if (ctypesize < 1 || block_bytes % ctypesize != 0) {
        return MLA_ERR_TYPESIZE;
    }
    const int nitems = block_bytes / ctypesize;
    block_table table;
    if (check) {
        const int problem = find_table(src, srcsize, &table);
        if (problem) {
            return block_error(problem);
        }
        if (table.nblocks > MLA_BLOCKWISE_MAX || (table.nblocks == 0 && !(src[2] & 0x02))) {
            return MLA_ERR_CHANGED; /* the caller checked a header with some blocks, and not too many */
        }
        check = table.nblocks > 0; /* a chunk stored uncompressed has no blocks to walk */
    }
    /* blocks that are runs of one byte are filled, not decoded (rows of bytes: C order on the last axis) */
    const int runs = out_strides[ndim - 1] == itemsize && (check || find_table(src, srcsize, &table) == 0);
    int64_t g = 1;
    for (int32_t a = ndim - 1; a >= 0; a--) {
        gstride[a] = g;
        g *= blockgrid[a];
        qlo[a] = lo[a] / blockshape[a];
        qhi[a] = (hi[a] - 1) / blockshape[a];
        q[a] = qlo[a];
    }
    int64_t decoded = 0;
    for (;;) {
        int64_t number = 0;
        uint8_t *dst = out;
        for (int32_t a = 0; a < ndim; a++) {
            const int64_t origin = q[a] * blockshape[a];
            s[a] = (lo[a] > origin ? lo[a] : origin) - origin;
            e[a] = (hi[a] < origin + blockshape[a] ? hi[a] : origin + blockshape[a]) - origin;
            number += q[a] * gstride[a];
            dst += (origin + s[a] - lo[a]) * out_strides[a];
        }
        if (check) {
            if (number >= table.nblocks) {
                return MLA_ERR_ARGS;
            }
            const int remembered = done != NULL && (number >> 3) < done_bytes;
            if (!remembered || !block_checked(done, number)) {
                const int problem = block_problem(src, &table, number);
                if (problem) {
                    return block_error(problem);
                }
                if (remembered) {
                    block_passed(done, number);
                }
            }
        }
        const int byte = runs ? block_run(src, &table, number) : -1;
        if (byte == 0 && zeroed) {
            /* zeros, and the result holds zeros there already */
        } else if (byte >= 0) {
            /* the box in bytes along the last axis, filled with the byte */
            int64_t bs[MLA_MAX_DIM], be[MLA_MAX_DIM], bstrides[MLA_MAX_DIM];
            for (int32_t a = 0; a < ndim; a++) {
                bs[a] = s[a];
                be[a] = e[a];
                bstrides[a] = out_strides[a];
            }
            bs[ndim - 1] *= itemsize;
            be[ndim - 1] *= itemsize;
            bstrides[ndim - 1] = 1;
            const uint8_t value = (uint8_t)byte;
            fill_box(dst, bs, be, bstrides, ndim, 1, &value, 0);
        } else {
            int rc = getitem(ctx, src, srcsize, (int)(number * nitems), nitems, scratch, block_bytes);
            if (rc < 0) {
                return rc > MLA_ERR_BASE ? rc : MLA_ERR_BASE;
            }
            if (rc != block_bytes) {
                return MLA_ERR_SHORT;
            }
            copy_box(scratch, blockshape, s, e, dst, out_strides, ndim, itemsize, stream);
        }
        decoded++;
        if (!next_index(q, qlo, qhi, ndim)) {
            return decoded;
        }
    }
}

static int mla_blocks_problem_table(const uint8_t *chunk, const block_table *t);

/*
 * Read `size` bytes of the file at `offset` into `copy` and check them as spec 4.4.4 and
 * 4.4.6 say, whole chunk: the caller checked this chunk's header in the file before (a
 * data chunk, neither special nor of another size), so a difference means the file
 * changed since. Decoding then reads only this private copy, which nobody can change.
 * Returns 0 or a negative error.
 */
static int64_t fetch_chunk(int fd, int64_t offset, int64_t size, uint8_t *copy, int64_t copy_size, int64_t nbytes,
                           int32_t block_bytes) {
#if defined(_WIN32)
    (void)fd, (void)offset, (void)size, (void)copy, (void)copy_size, (void)nbytes, (void)block_bytes;
    return MLA_ERR_ARGS; /* no pread: the caller maps the file instead */
#else
    if (size < 32 || size > copy_size || offset < 0) {
        return MLA_ERR_ARGS;
    }
    int64_t got = 0;
    while (got < size) {
        const ssize_t n = pread(fd, copy + got, (size_t)(size - got), (off_t)(offset + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return MLA_ERR_READ;
        }
        got += n;
    }
    if (read_i32(copy + 12) != size || (copy[2] & 0x05) != 0x05 || (copy[30] & 0x01) || (copy[31] & 0x78) ||
        read_i32(copy + 4) != nbytes) {
        return MLA_ERR_CHANGED;
    }
    if (copy[2] & 0x02) { /* stored uncompressed */
        return size == 32 + nbytes ? 0 : MLA_ERR_CHANGED;
    }
    if (read_i32(copy + 8) != block_bytes) {
        return MLA_ERR_CHANGED;
    }
    block_table table;
    int problem = find_table(copy, size, &table);
    if (!problem) {
        problem = mla_blocks_problem_table(copy, &table);
    }
    if (problem < 0) {
        return MLA_ERR_ARGS; /* out of memory for the check */
    }
    return problem ? block_error(problem) : 0;
#endif
}

/*
 * Fill box [lo, hi) (its first item at dst; result strides in bytes) with the item `value`,
 * a run of rows at a time as copy_box copies: an item of one byte repeated with set_rows,
 * others copied from a row of them (a piece of FILL_PIECE bytes at a time; with `stream`,
 * rows of whole cache lines with streaming stores, as copy_rows says).
 */
#define FILL_PIECE 1024
static void fill_box(uint8_t *dst, const int64_t *lo, const int64_t *hi, const int64_t *strides, int32_t ndim,
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

/*
 * Settling a chunk in the read loop (the patch path's first reads of a fresh handle): the
 * header checks of mlarray.storage.headers.quick_pass for one stored chunk, in C. `s` holds
 * (int64 each): [0] the chunk index (int64 per chunk), [1] the chunk states (uint8 per chunk:
 * 0 nothing known, 1 checked, 2 checked but for its blocks; mlarray.storage.chunkchecks),
 * [2] the file offset of the chunks area, [3] its length, [4] the map's first byte, [5] the
 * map's length, [6] the item size, [7] chunk nbytes, [8] block bytes, and tables of 8, 256
 * and 256 bytes: [9] the codecs allowed, [10] the filters allowed, [11] the filters whose
 * parameter is an item size (see structure.py). A chunk with blocks whose header passes is
 * recorded as quick_pass's caller records it (length, blocks to check, state 2, then its
 * address, after a release store); a zeros chunk or a run of one value (spec 4.4.4) gets its
 * value in the fill tables (the item's bytes, then its flag, after a release store) and state
 * 2 (the ledger's per-chunk check, should it run, finds nothing more to check in it). Anything
 * else (index entries for one value, NaN chunks, forms only the per-chunk check in Python
 * takes) is left to the caller. Returns whether the chunk is now ready.
 */
static int settle_chunk(const int64_t *s, int64_t at, int64_t *chunk_addr, int64_t *chunk_size,
                        uint8_t *chunk_check, int32_t itemsize, uint8_t *fill_known, uint8_t *fill_value) {
    const int64_t entry = ((const int64_t *)(intptr_t)s[0])[at];
    uint8_t *state = (uint8_t *)(intptr_t)s[1] + at;
    const int64_t start = s[2], data_size = s[3], map_len = s[5], typesize = s[6], nbytes = s[7], blocksize = s[8];
    const uint8_t *codec_ok = (const uint8_t *)(intptr_t)s[9], *filter_ok = (const uint8_t *)(intptr_t)s[10];
    const uint8_t *sized = (const uint8_t *)(intptr_t)s[11];
    if (entry < 0 || blocksize <= 0 || nbytes <= 0 || typesize <= 0 || entry > data_size - 32 ||
        start + entry > map_len - 32) {
        return 0;
    }
    const uint8_t *head = (const uint8_t *)(intptr_t)s[4] + start + entry;
    const int64_t length = read_i32(head + 12), nblocks = (nbytes + blocksize - 1) / blocksize;
    const int flags = head[2], kind = head[31] >> 4 & 0x07;
    if (length < 32 || length > data_size - entry || length > map_len - start - entry || (flags & 0x05) != 0x05 ||
        !codec_ok[flags >> 5] || read_i32(head + 4) != nbytes || head[3] != typesize ||
        read_i32(head + 8) != blocksize || (head[30] & 0x01) || (head[31] & 0x89)) {
        return 0; /* byte 31: no dictionary (0x01), not lazy (0x08) or instrumented (0x80) */
    }
    for (int k = 0; k < 6; k++) {
        const int filter = head[16 + k], size = head[24 + k];
        if (!filter_ok[filter] || (sized[filter] && size != typesize && (size != 0 || filter == 34 || filter == 35))) {
            return 0;
        }
    }
    const int blocks = kind == 0 && !(flags & 0x02) && length >= 32 + 4 * nblocks && nblocks <= MLA_BLOCKWISE_MAX;
    const int zeros = kind == 1 && length == 32, run = kind == 3 && length == 32 + typesize;
    if (!blocks && ((!zeros && !run) || fill_known == NULL || fill_value == NULL || itemsize != typesize)) {
        return 0;
    }
#if defined(_MSC_VER)
    if (InterlockedCompareExchange8((volatile char *)state, 2, 0) != 0) {
        return ready_addr(chunk_addr, at) != 0 || ready_known(fill_known, at);
    }
#else
    uint8_t expected = 0;
    if (!__atomic_compare_exchange_n(state, &expected, 2, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        /* the caller's code has it, or is checking it now */
        return ready_addr(chunk_addr, at) != 0 || ready_known(fill_known, at);
    }
#endif
    if (!blocks) {
        if (zeros) {
            memset(fill_value + at * itemsize, 0, (size_t)itemsize);
        } else {
            memcpy(fill_value + at * itemsize, head + 32, (size_t)itemsize);
        }
#if defined(_MSC_VER)
        MemoryBarrier();
        *(volatile uint8_t *)&fill_known[at] = 1;
#else
        __atomic_store_n(&fill_known[at], 1, __ATOMIC_RELEASE);
#endif
        return 1;
    }
    chunk_size[at] = length;
    chunk_check[at] = 1;
#if defined(_MSC_VER)
    MemoryBarrier();
    *(volatile int64_t *)&chunk_addr[at] = (int64_t)(intptr_t)head;
#else
    __atomic_store_n(&chunk_addr[at], (int64_t)(intptr_t)head, __ATOMIC_RELEASE);
#endif
    return 1;
}

/* settle_chunk for chunk `at`, for the tests: whether it is now ready (its tables and state set). */
MLA_EXPORT int mla_settle_chunk(const int64_t *settle, int64_t at, int64_t *chunk_addr, int64_t *chunk_size,
                                uint8_t *chunk_check, int32_t itemsize, uint8_t *fill_known, uint8_t *fill_value) {
    return settle_chunk(settle, at, chunk_addr, chunk_size, chunk_check, itemsize, fill_known, fill_value);
}

/* The number (C order over the whole chunk grid) of touched chunk i of the chunks [clo, chi]. */
static int64_t grid_number(int64_t i, int32_t ndim, const int64_t *clo, const int64_t *chi, const int64_t *grid) {
    int64_t number = 0, scale = 1;
    for (int32_t a = ndim - 1; a >= 0; a--) {
        const int64_t span = chi[a] - clo[a] + 1;
        number += (clo[a] + i % span) * scale;
        i /= span;
        scale *= grid[a];
    }
    return number;
}

/* Take the next touched chunk from the counter the threads of one read share. */
static int64_t take(int64_t *next) {
#if defined(_MSC_VER)
    return InterlockedExchangeAdd64((volatile LONG64 *)next, 1);
#else
    return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
#endif
}

static void stop_all(int64_t *next, int64_t end) {
#if defined(_MSC_VER)
    InterlockedExchange64((volatile LONG64 *)next, end);
#else
    __atomic_store_n(next, end, __ATOMIC_RELAXED);
#endif
}

/* Whether the n bytes at p are all zero. */
static int all_zero(const uint8_t *p, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        if (p[k] != 0) {
            return 0;
        }
    }
    return 1;
}

/*
 * Touched chunk i (coordinates cq in the chunk grid, touched chunks clo .. chi per axis)
 * holds a known value: the run of touched chunks i .. i+*run-1 that hold the same value and
 * cover the box together on the axes from the returned one on (cq is the first touched
 * chunk on each of those, so the run follows i in order and fills one box). `value` is
 * chunk i's item. Only chunks before `end` join; ndim with *run == 1 when none does. In the
 * general path's mode (grid NULL) the tables are indexed by touched chunk.
 */
static int32_t fill_run(int64_t i, int64_t end, const int64_t *cq, const int64_t *clo, const int64_t *chi,
                        int32_t ndim, const int64_t *grid, const int64_t *chunk_addr, const uint8_t *fill_known,
                        const uint8_t *fill_value, const uint8_t *value, int32_t itemsize, int64_t *run) {
    int32_t merged = ndim;
    int64_t have = 1;
    for (int32_t a = ndim - 1; a >= 0 && cq[a] == clo[a]; a--) {
        const int64_t want = have * (chi[a] - clo[a] + 1);
        if (want > end - i) {
            break;
        }
        int same = 1;
        for (int64_t j = i + have; j < i + want && same; j++) {
            const int64_t at = grid != NULL ? grid_number(j, ndim, clo, chi, grid) : j;
            const int64_t address = grid != NULL ? ready_addr(chunk_addr, at) : chunk_addr[at];
            same = address == 0 && ready_known(fill_known, at) &&
                   memcmp(fill_value + at * itemsize, value, (size_t)itemsize) == 0;
        }
        if (!same) {
            break;
        }
        merged = a;
        have = want;
    }
    *run = have;
    return merged;
}

/*
 * Grid mode: whether touched chunks first .. end-1 are all ready (an address or a known
 * value), settling those not checked yet that settle_chunk can (see there).
 */
static int all_ready(int64_t first, int64_t end, int32_t ndim, const int64_t *clo, const int64_t *chi,
                     const int64_t *grid, const uint8_t *fill_known, const uint8_t *fill_value,
                     const int64_t *chunk_addr, const int64_t *chunk_size, const uint8_t *chunk_check,
                     int32_t itemsize, const int64_t *settle) {
    for (int64_t i = first; i < end; i++) {
        const int64_t at = grid_number(i, ndim, clo, chi, grid);
        if (ready_addr(chunk_addr, at) == 0 && !ready_known(fill_known, at) &&
            (settle == NULL || chunk_check == NULL ||
             !settle_chunk(settle, at, (int64_t *)chunk_addr, (int64_t *)chunk_size, (uint8_t *)chunk_check,
                           itemsize, (uint8_t *)fill_known, (uint8_t *)fill_value))) {
            return 0;
        }
    }
    return 1;
}

/*
 * Read the selection [sel_lo, sel_hi) (array item coordinates, per axis) of a b2nd
 * array into out (strides out_strides, in bytes; 0 for an axis the key drops).
 *
 * The chunks the selection touches, taken in C order over the chunk grid, are numbered
 * 0, 1, ...; chunk_addr[i] and chunk_size[i] give the stored bytes of touched chunk i,
 * or chunk_addr[i] == 0 for a chunk that needs no decoding (special chunks and index
 * entries): where fill_known (or NULL) has fill_known[i] nonzero, its box is filled with
 * the item of itemsize bytes at fill_value + i * itemsize; otherwise it is skipped (the
 * caller fills it, or the result holds its value already). The caller has checked each chunk (spec 4.4.4-4.4.6), or, where
 * chunk_check[i] is nonzero, its header only (spec 4.4.4): then each block of it is
 * checked here before it is decoded (spec 4.4.6). chunk_check may be NULL (all checked).
 *
 * With fd >= 0 (an open file; POSIX only) chunk_addr[i] is instead the offset of touched
 * chunk i in that file, whose header the caller checked: each chunk is read with pread
 * into `copy` (copy_size bytes of this thread's), checked whole there (fetch_chunk) and
 * decoded from it. Whole-array reads use this: pread copies scale over threads, where
 * first touches of a shared file map did not (the kernel serialised them here), and no
 * map is left to unmap. Touched chunks [first, first + count) are
 * read: one after the other when `next` is NULL; else every thread of the read calls this
 * function with the same `next` counter (starting at `first`) and takes chunks from it
 * until none is left, so threads share the work without returning to Python. After an
 * error the counter is moved to the end, so the other threads stop at their next chunk.
 *
 * With `grid` (the shape of the whole chunk grid), chunk_addr, chunk_size and chunk_check
 * are instead tables of every chunk of the array, indexed by its number in C order over
 * the grid, and a touched chunk whose address is 0 is not skipped: where fill_known (a table
 * like them, or NULL) is nonzero, the chunk stands for one value, the itemsize bytes at
 * fill_value + number * itemsize, which its box is filled with; before anything is read,
 * the call returns MLA_NOT_READY if any touched chunk has neither (the caller checks it and
 * tries again, or reads on its slower path). *failed is then a chunk number.
 * This is the patch path: the caller hands over the tables it keeps, unchanged.
 *
 * With `grid` and `settle` (or NULL; see settle_chunk), a touched chunk that is not ready is
 * checked here first, when its header is of the usual forms (and the tables are then written).
 *
 * block_done (or NULL) remembers the blocks checked: done_stride bytes per chunk of the
 * array, indexed by its number in C order over the grid, bit j of a chunk's bytes set once
 * its block j passed its checks, so each block of a chunk whose blocks are checked one by
 * one is checked on its first decoding only, not on every read (the walk over its streams
 * and the scan of the block-start table). With `grid` the row of touched chunk i is that of
 * its number; without, chunk_numbers[i] gives the number (block_done needs one or the other).
 *
 * `mode`: with MLA_ZEROED the result holds zeros over the box already (a fresh allocation,
 * or zeroed by the caller): chunks that stand for zeros and blocks whose streams are runs of
 * zeros are not written. With MLA_STREAM, rows of whole cache lines are written with
 * streaming stores (copy_rows), fenced before the call returns.
 *
 * getitem, ctx: blosc2_getitem_ctx and a decompression context owned by the calling thread.
 * scratch: block_bytes bytes of this thread's.
 *
 * Returns the number of blocks decoded; on an error a negative code, with *failed set to
 * the touched chunk that failed.
 */
MLA_EXPORT int64_t mla_read_region(getitem_fn getitem, void *ctx, int32_t ndim, int32_t itemsize,
                                   const int64_t *chunkshape, const int64_t *blockshape, const int64_t *sel_lo,
                                   const int64_t *sel_hi, const int64_t *grid, const uint8_t *fill_known,
                                   const uint8_t *fill_value, const int64_t *chunk_addr,
                                   const int64_t *chunk_size, const uint8_t *chunk_check, int32_t fd,
                                   int64_t chunk_nbytes, uint8_t *copy,
                                   int64_t copy_size, int64_t first, int64_t count, int64_t *next, uint8_t *out,
                                   const int64_t *out_strides, uint8_t *scratch, int32_t block_bytes,
                                   int64_t *failed, uint8_t *block_done, int64_t done_stride,
                                   const int64_t *chunk_numbers, const int64_t *settle, int32_t mode) {
    int64_t clo[MLA_MAX_DIM], chi[MLA_MAX_DIM], cq[MLA_MAX_DIM];
    const int zeroed = mode & MLA_ZEROED;
    int64_t lo[MLA_MAX_DIM], hi[MLA_MAX_DIM], blockgrid[MLA_MAX_DIM];
    *failed = -1;
    if (ndim < 1 || ndim > MLA_MAX_DIM || itemsize < 1 || block_bytes < 1 || first < 0 || count < 0 ||
        (block_done != NULL && ((grid == NULL && chunk_numbers == NULL) || done_stride < 1))) {
        return MLA_ERR_ARGS;
    }
    int64_t items = 1, touched = 1;
    for (int32_t a = 0; a < ndim; a++) {
        if (chunkshape[a] < 1 || blockshape[a] < 1 || sel_lo[a] < 0 || sel_hi[a] <= sel_lo[a]) {
            return MLA_ERR_ARGS;
        }
        items *= blockshape[a];
        blockgrid[a] = (chunkshape[a] + blockshape[a] - 1) / blockshape[a];
        clo[a] = sel_lo[a] / chunkshape[a];
        chi[a] = (sel_hi[a] - 1) / chunkshape[a];
        touched *= chi[a] - clo[a] + 1;
        if (grid != NULL && chi[a] >= grid[a]) {
            return MLA_ERR_ARGS;
        }
    }
    const int64_t end = first + count;
    if (items * itemsize != block_bytes || end > touched) {
        return MLA_ERR_ARGS;
    }
    if (grid != NULL && !all_ready(first, end, ndim, clo, chi, grid, fill_known, fill_value, chunk_addr, chunk_size,
                                   chunk_check, itemsize, settle)) {
        return MLA_NOT_READY; /* every touched chunk must be ready before any is read */
    }
    int64_t decoded = 0;
    for (int64_t i = first;; i++) { /* leaves with `decoded` set: blocks decoded, or an error */
        if (next != NULL) {
            i = take(next);
        }
        if (i >= end) {
            break;
        }
        const int64_t at = grid != NULL ? grid_number(i, ndim, clo, chi, grid) : i; /* its row in the tables */
        const int64_t address = grid != NULL ? ready_addr(chunk_addr, at) : chunk_addr[at];
        if (address == 0 && grid == NULL && !ready_known(fill_known, at)) {
            continue;
        }
        /* the coordinates of touched chunk i, then its box and where that lands in out */
        int64_t rest = i;
        for (int32_t a = ndim - 1; a >= 0; a--) {
            const int64_t span = chi[a] - clo[a] + 1;
            cq[a] = clo[a] + rest % span;
            rest /= span;
        }
        /* a known value: with the touched chunks after it that hold the same value and together
         * cover the box on the axes from `merged` on, one fill (one thread: the chunks are in order) */
        int64_t run = 1;
        const int32_t merged = address == 0 && next == NULL && ready_known(fill_known, at)
                                   ? fill_run(i, end, cq, clo, chi, ndim, grid, chunk_addr, fill_known, fill_value,
                                              fill_value + at * itemsize, itemsize, &run)
                                   : ndim;
        uint8_t *dst = out;
        for (int32_t a = 0; a < ndim; a++) {
            const int64_t origin = cq[a] * chunkshape[a];
            const int64_t from = sel_lo[a] > origin ? sel_lo[a] : origin;
            const int64_t to = a >= merged || sel_hi[a] < origin + chunkshape[a] ? sel_hi[a] : origin + chunkshape[a];
            lo[a] = from - origin;
            hi[a] = to - origin;
            dst += (from - sel_lo[a]) * out_strides[a];
        }
        if (address == 0) { /* one value; in grid mode possibly (tables changed meanwhile) not ready */
            if (!ready_known(fill_known, at)) {
                *failed = at;
                if (next != NULL) {
                    stop_all(next, end);
                }
                decoded = MLA_NOT_READY;
                break;
            }
            if (!zeroed || !all_zero(fill_value + at * itemsize, itemsize)) {
                fill_box(dst, lo, hi, out_strides, ndim, itemsize, fill_value + at * itemsize, mode & MLA_STREAM);
            }
            i += run - 1;
            continue;
        }
        const uint8_t *src = (const uint8_t *)(intptr_t)address;
        int check = chunk_check != NULL && chunk_check[at];
        if (fd >= 0) {
            const int64_t rc = fetch_chunk(fd, address, chunk_size[at], copy, copy_size, chunk_nbytes, block_bytes);
            if (rc < 0) {
                *failed = at;
                if (next != NULL) {
                    stop_all(next, end);
                }
                decoded = rc;
                break;
            }
            src = copy;
            check = 0; /* fetch_chunk checked every block */
        }
        uint8_t *done = NULL;
        if (block_done != NULL) {
            const int64_t number = grid != NULL ? at : chunk_numbers[at];
            done = number >= 0 ? block_done + number * done_stride : NULL;
        }
        const int64_t rc = read_chunk(getitem, ctx, src, (int32_t)chunk_size[at], check, ndim, itemsize, blockshape,
                                      blockgrid, lo, hi, dst, out_strides, scratch, block_bytes, done, done_stride,
                                      mode);
        if (rc < 0) {
            *failed = at;
            if (next != NULL) {
                stop_all(next, end);
            }
            decoded = rc;
            break;
        }
        decoded += rc;
    }
#if MLA_STREAMS
    if (mode & MLA_STREAM) {
        _mm_sfence(); /* the streamed rows (of the chunks before an error too) before the caller reads them */
    }
#endif
    return decoded;
}

/*
 * Copy n bytes from src to dst, the 16-byte-aligned middle of dst with streaming stores,
 * which write whole cache lines to memory without reading them first; the ends with plain
 * stores. The caller issues the store fence (_mm_sfence) once all are written.
 */
static void stream_copy(uint8_t *dst, const uint8_t *src, size_t n) {
#if MLA_STREAMS
    size_t head = (size_t)(-(intptr_t)dst) & 15;
    if (head > n) {
        head = n;
    }
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    const size_t body = n & ~(size_t)15;
    for (size_t k = 0; k < body; k += 16) {
        _mm_stream_si128((__m128i *)(void *)(dst + k), _mm_loadu_si128((const __m128i *)(const void *)(src + k)));
    }
    memcpy(dst + body, src + body, n - body);
#else
    memcpy(dst, src, n);
#endif
}

/*
 * Whether at least a quarter of the items of the box [lo, hi) are zeros known without decoding
 * anything (the arguments in mla_read_box's array `a`): touched chunks that stand for
 * zeros and, in stored chunks, touched blocks whose streams are runs of zeros (block_run).
 * Such a box, as patches of label maps are, is cheaper to zero whole (memset
 * writes whole cache lines) and then to skip those than to write their rows one by one.
 * Chunks not ready count as not zero; only headers and block-start tables are read, each
 * within the chunk.
 */
static int mostly_zeros(const int64_t *a, int64_t ndim, const int64_t *lo, const int64_t *hi) {
    int64_t clo[MLA_MAX_DIM], chi[MLA_MAX_DIM], clip_lo[MLA_MAX_DIM], clip_hi[MLA_MAX_DIM];
    int64_t q[MLA_MAX_DIM], qlo[MLA_MAX_DIM], qhi[MLA_MAX_DIM], blockgrid[MLA_MAX_DIM];
    const int32_t itemsize = (int32_t)a[2];
    const int64_t *chunkshape = (const int64_t *)(intptr_t)a[3], *blockshape = (const int64_t *)(intptr_t)a[4];
    const int64_t *grid = (const int64_t *)(intptr_t)a[5], *chunk_addr = (const int64_t *)(intptr_t)a[8];
    const int64_t *chunk_size = (const int64_t *)(intptr_t)a[9];
    const uint8_t *fill_known = (const uint8_t *)(intptr_t)a[6], *fill_value = (const uint8_t *)(intptr_t)a[7];
    int64_t total = 1, touched = 1;
    for (int64_t d = 0; d < ndim; d++) {
        clo[d] = lo[d] / chunkshape[d];
        chi[d] = (hi[d] - 1) / chunkshape[d];
        if (chi[d] >= grid[d] || blockshape[d] < 1) {
            return 0; /* refused by the read itself */
        }
        blockgrid[d] = (chunkshape[d] + blockshape[d] - 1) / blockshape[d];
        total *= hi[d] - lo[d];
        touched *= chi[d] - clo[d] + 1;
    }
    const int64_t need = (total + 3) / 4; /* a quarter: as fast as half on label maps, 3/4 slower */
    int64_t zeros = 0, rest = total;
    for (int64_t i = 0; i < touched; i++) {
        int64_t left = i, items = 1;
        for (int64_t d = ndim - 1; d >= 0; d--) {
            const int64_t span = chi[d] - clo[d] + 1, origin = (clo[d] + left % span) * chunkshape[d];
            left /= span;
            clip_lo[d] = (lo[d] > origin ? lo[d] : origin) - origin;
            clip_hi[d] = (hi[d] < origin + chunkshape[d] ? hi[d] : origin + chunkshape[d]) - origin;
            items *= clip_hi[d] - clip_lo[d];
        }
        const int64_t at = grid_number(i, (int32_t)ndim, clo, chi, grid);
        const int64_t address = ready_addr(chunk_addr, at);
        if (address == 0) {
            if (ready_known(fill_known, at) && all_zero(fill_value + at * itemsize, itemsize)) {
                zeros += items;
            }
        } else {
            const uint8_t *src = (const uint8_t *)(intptr_t)address;
            block_table table;
            if (chunk_size[at] >= 32 && find_table(src, chunk_size[at], &table) == 0 && table.nblocks > 0) {
                for (int64_t d = ndim - 1; d >= 0; d--) {
                    qlo[d] = clip_lo[d] / blockshape[d];
                    qhi[d] = (clip_hi[d] - 1) / blockshape[d];
                    q[d] = qlo[d];
                }
                for (;;) {
                    int64_t number = 0, part = 1, gstride = 1;
                    for (int64_t d = ndim - 1; d >= 0; d--) {
                        const int64_t origin = q[d] * blockshape[d];
                        const int64_t from = clip_lo[d] > origin ? clip_lo[d] : origin;
                        const int64_t to = clip_hi[d] < origin + blockshape[d] ? clip_hi[d] : origin + blockshape[d];
                        part *= to - from;
                        number += q[d] * gstride;
                        gstride *= blockgrid[d];
                    }
                    if (block_run(src, &table, number) == 0) {
                        zeros += part;
                    }
                    if (!next_index(q, qlo, qhi, (int32_t)ndim)) {
                        break;
                    }
                }
            }
        }
        rest -= items;
        if (zeros >= need) {
            return 1;
        }
        if (zeros + rest < need) {
            return 0;
        }
    }
    return 0;
}

/*
 * mla_read_region in grid mode over chunks first .. first+count-1 of the box [lo, hi), the
 * other arguments from mla_read_box's array `a` (see there), the result at out/strides,
 * `mode` as there.
 */
static int64_t box_region(int64_t *a, int64_t ndim, const int64_t *lo, const int64_t *hi, int64_t first,
                          int64_t count, uint8_t *out, const int64_t *strides, int32_t mode) {
    return mla_read_region((getitem_fn)(intptr_t)a[0], (void *)(intptr_t)a[15], (int32_t)ndim, (int32_t)a[2],
                           (const int64_t *)(intptr_t)a[3], (const int64_t *)(intptr_t)a[4], lo, hi,
                           (const int64_t *)(intptr_t)a[5], (const uint8_t *)(intptr_t)a[6],
                           (const uint8_t *)(intptr_t)a[7], (const int64_t *)(intptr_t)a[8],
                           (const int64_t *)(intptr_t)a[9], (const uint8_t *)(intptr_t)a[10], -1, a[11], NULL, 0,
                           first, count, NULL, out, strides, (uint8_t *)(intptr_t)a[16], (int32_t)a[12], &a[18],
                           (uint8_t *)(intptr_t)a[13], a[14], NULL, (const int64_t *)(intptr_t)a[19], mode);
}

/*
 * mla_read_region over a box whose result is large and C-contiguous, one row of touched
 * chunks at a time (the chunks that share every coordinate but the last): the row's blocks
 * are decoded and copied into `stage` (the row's part of the result, rows of the box's
 * whole width), which stays in the CPU cache from row to row, and the stage is then
 * written to the result with streaming stores, in runs of whole rows. Copied straight into
 * a result too large for the cache, every 64-byte piece of a block's row makes the CPU
 * read the result's cache lines it lands in before writing them (two per piece: the
 * pieces are not aligned); whole rows written in order need no such reads.
 *
 * `a` is mla_read_box's array (its stage at a[20], a[21]); `strides` must be the C strides
 * of the box and the stage hold the largest row's part, else MLA_ERR_ARGS before anything
 * is written.
 */
#if defined(__GNUC__)
__attribute__((noinline)) /* inlined into mla_read_box, its streamed copies ran 5-15% slower (4-channel 128^3) */
#endif
static int64_t read_box_staged(int64_t *a, int64_t ndim, const int64_t *lo, const int64_t *hi,
                               const int64_t *strides) {
    int64_t clo[MLA_MAX_DIM], chi[MLA_MAX_DIM], from[MLA_MAX_DIM], ext[MLA_MAX_DIM], sst[MLA_MAX_DIM];
    int64_t idx[MLA_MAX_DIM];
    const int32_t last = ndim - 1;
    const int32_t itemsize = (int32_t)a[2];
    const int64_t *chunkshape = (const int64_t *)(intptr_t)a[3], *grid = (const int64_t *)(intptr_t)a[5];
    uint8_t *out = (uint8_t *)(intptr_t)a[17], *stage = (uint8_t *)(intptr_t)a[20];
    const int64_t stage_bytes = a[21];
    int64_t rows = 1, touched = 1, step = itemsize, largest = (hi[last] - lo[last]) * itemsize;
    a[18] = -1;
    for (int32_t d = last; d >= 0; d--) {
        if (strides[d] != step) {
            return MLA_ERR_ARGS;
        }
        step *= hi[d] - lo[d];
        clo[d] = lo[d] / chunkshape[d];
        chi[d] = (hi[d] - 1) / chunkshape[d];
        if (chi[d] >= grid[d]) {
            return MLA_ERR_ARGS; /* before any table is indexed */
        }
        touched *= chi[d] - clo[d] + 1;
        if (d < last) {
            rows *= chi[d] - clo[d] + 1;
            /* the longest part of a chunk the box covers on this axis: its first, its last, or a whole one */
            int64_t most = (clo[d] + 1) * chunkshape[d] - lo[d];
            const int64_t tail = hi[d] - chi[d] * chunkshape[d];
            most = chi[d] == clo[d] ? hi[d] - lo[d] : (tail > most ? tail : most);
            if (chi[d] - clo[d] >= 2) {
                most = chunkshape[d];
            }
            largest *= most;
        }
    }
    if (largest > stage_bytes) {
        return MLA_ERR_ARGS; /* checked before anything is written */
    }
    if (!all_ready(0, touched, ndim, clo, chi, grid, (const uint8_t *)(intptr_t)a[6], (const uint8_t *)(intptr_t)a[7],
                   (const int64_t *)(intptr_t)a[8], (const int64_t *)(intptr_t)a[9], (const uint8_t *)(intptr_t)a[10],
                   itemsize, (const int64_t *)(intptr_t)a[19])) {
        return MLA_NOT_READY;
    }
    const int64_t nx = chi[last] - clo[last] + 1;
    const int64_t width = (hi[last] - lo[last]) * itemsize;
    int64_t decoded = 0;
    for (int64_t r = 0; r < rows; r++) {
        /* the row's box on the leading axes, and the stage's C strides over it */
        int64_t rest = r, offset = 0;
        for (int32_t d = last - 1; d >= 0; d--) {
            const int64_t span = chi[d] - clo[d] + 1;
            const int64_t origin = (clo[d] + rest % span) * chunkshape[d];
            rest /= span;
            from[d] = lo[d] > origin ? lo[d] : origin;
            ext[d] = (hi[d] < origin + chunkshape[d] ? hi[d] : origin + chunkshape[d]) - from[d];
        }
        sst[last] = itemsize;
        int64_t size = width;
        for (int32_t d = last - 1; d >= 0; d--) {
            sst[d] = size;
            size *= ext[d];
        }
        if (size > stage_bytes) {
            return MLA_ERR_ARGS; /* cannot be: no row's part exceeds `largest` */
        }
        for (int32_t d = 0; d < last; d++) {
            offset += (from[d] - lo[d]) * sst[d];
        }
        /* mla_read_region places chunk data at base + sum((from - lo) * sst): the stage's start for this row */
        uint8_t *base = (uint8_t *)((intptr_t)stage - (intptr_t)offset);
        const int64_t rc = box_region(a, ndim, lo, hi, r * nx, nx, base, sst, 0);
        if (rc < 0) {
            decoded = rc;
            break;
        }
        decoded += rc;
        /* the stage to the result: runs of ext[last-1] whole rows, contiguous in both */
        const int64_t run = ext[last - 1] * width;
        for (int32_t d = 0; d < last - 1; d++) {
            idx[d] = 0;
        }
        for (;;) {
            int64_t src_at = 0, dst_at = 0;
            for (int32_t d = 0; d < last; d++) {
                const int64_t i = d < last - 1 ? idx[d] : 0;
                src_at += i * sst[d];
                dst_at += (from[d] - lo[d] + i) * strides[d];
            }
            stream_copy(out + dst_at, stage + src_at, (size_t)run);
            int32_t d = last - 2;
            for (; d >= 0; d--) {
                if (++idx[d] < ext[d]) {
                    break;
                }
                idx[d] = 0;
            }
            if (d < 0) {
                break;
            }
        }
    }
#if MLA_STREAMS
    _mm_sfence(); /* the streamed stores (of the rows before an error too) before anything the caller does next */
#endif
    return decoded;
}

/*
 * The patch path's call (mlarray/storage/patchread.py): mla_read_region in grid mode, on
 * the one thread that calls, every touched chunk in the map, with its arguments in one
 * int64 array `a` (ctypes converts each argument of a call in Python: the thirty of
 * mla_read_region took about 4.5 µs a read, more than a small box takes to decode):
 *   a[0] getitem, a[1] ndim, a[2] itemsize, a[3] chunk shape, a[4] block shape, a[5] grid,
 *   a[6] fill_known, a[7] fill_value, a[8] chunk_addr, a[9] chunk_size, a[10] chunk_check,
 *   a[11] chunk nbytes, a[12] block_bytes, a[13] block_done, a[14] done_stride (the reader's own),
 *   a[15] ctx, a[16] scratch, a[17] out (the call's), a[18] set here to the failed chunk,
 *   a[19] the address of the reader's settle table (see settle_chunk), or 0,
 *   a[20] a stage buffer's address (or 0: no stage) and a[21] its size in bytes, for
 *   read_box_staged (at least two dimensions, C strides),
 *   then sel_lo, sel_hi and out_strides, ndim values each. Pointers are addresses.
 * Returns what mla_read_region returns.
 */
#define MLA_BOX_HEAD 22
MLA_EXPORT int64_t mla_read_box(int64_t *a) {
    const int64_t ndim = a[1];
    a[18] = -1;
    if (ndim < 1 || ndim > MLA_MAX_DIM) {
        return MLA_ERR_ARGS;
    }
    const int64_t *chunkshape = (const int64_t *)(intptr_t)a[3];
    const int64_t *lo = a + MLA_BOX_HEAD, *hi = lo + ndim, *strides = hi + ndim;
    int64_t count = 1;
    for (int64_t d = 0; d < ndim; d++) {
        if (chunkshape[d] < 1 || lo[d] < 0 || hi[d] <= lo[d]) {
            return MLA_ERR_ARGS;
        }
        count *= (hi[d] - 1) / chunkshape[d] - lo[d] / chunkshape[d] + 1;
    }
    if (a[20] != 0 && ndim >= 2) {
        return read_box_staged(a, ndim, lo, hi, strides);
    }
    uint8_t *out = (uint8_t *)(intptr_t)a[17];
    const int32_t zeroed = strides[ndim - 1] == a[2] && mostly_zeros(a, ndim, lo, hi);
    if (zeroed) {
        /* the box in bytes along the last axis (C order there), set to zero: whole cache lines */
        int64_t blo[MLA_MAX_DIM], bhi[MLA_MAX_DIM], bstrides[MLA_MAX_DIM];
        for (int64_t d = 0; d < ndim; d++) {
            blo[d] = 0;
            bhi[d] = hi[d] - lo[d];
            bstrides[d] = strides[d];
        }
        bhi[ndim - 1] *= a[2];
        bstrides[ndim - 1] = 1;
        const uint8_t zero = 0;
        fill_box(out, blo, bhi, bstrides, (int32_t)ndim, 1, &zero, 0);
    }
    return box_region(a, ndim, lo, hi, 0, count, out, strides, zeroed ? MLA_ZEROED : 0);
}

static int compare_ranges(const void *a, const void *b) {
    const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

/*
 * Spec 4.4.6 on one chunk: every block's streams lie inside the chunk and the blocks tile
 * the area after the table (and dictionary): no two overlap, no byte is left between or
 * after them. The same rules, in the same order, as mlarray.storage.structure._blocks_problem
 * (which the caller runs when this library is missing); the caller has checked the header,
 * that the block-start table (nblocks entries at `head`) lies inside the chunk, and found
 * `first`, the first byte a block may start at.
 *
 * Returns 0 (no problem), 1 (a block offset outside the chunk), 2 (a compressed stream
 * outside the chunk), 3 (two blocks overlap), 6 (bytes between or after the blocks that
 * no block holds) or -1 (out of memory).
 */
MLA_EXPORT int mla_blocks_problem(const uint8_t *chunk, int64_t cbytes, int64_t head, int64_t nblocks, int64_t first) {
    const block_table table = {cbytes, head, nblocks, first};
    return mla_blocks_problem_table(chunk, &table);
}

static int mla_blocks_problem_table(const uint8_t *chunk, const block_table *t) {
    const int64_t head = t->head, nblocks = t->nblocks;
    int64_t *ranges = malloc((size_t)(nblocks > 0 ? nblocks : 1) * 2 * sizeof(int64_t));
    if (ranges == NULL) {
        return -1;
    }
    int problem = 0, sorted = 1;
    for (int64_t j = 0; j < nblocks && !problem; j++) {
        const int64_t start = read_i32(chunk + head + 4 * j);
        int64_t pos = 0;
        problem = block_end(chunk, t, j, &pos);
        if (problem) {
            break;
        }
        ranges[2 * j] = start;
        ranges[2 * j + 1] = pos;
        if (j > 0 && start < ranges[2 * j - 2]) {
            sorted = 0;
        }
    }
    if (!problem) {
        if (!sorted) {
            qsort(ranges, (size_t)nblocks, 2 * sizeof(int64_t), compare_ranges);
        }
        for (int64_t j = 0; j + 1 < nblocks; j++) {
            if (ranges[2 * j + 1] != ranges[2 * j + 2]) {
                problem = ranges[2 * j + 1] > ranges[2 * j + 2] ? 3 : 6;
                break;
            }
        }
        if (!problem && nblocks > 0 && (ranges[0] != t->first || ranges[2 * nblocks - 1] != t->cbytes)) {
            problem = 6;
        }
    }
    free(ranges);
    return problem;
}

/* Never called: build tools export a module init function of this name from every extension. */
MLA_EXPORT void *PyInit__blockcopy(void) { return 0; }
