/*
 * The compiled per-block loops of mlarray's read path (and one of its write path): what the
 * files of this folder share.
 *
 * One shared library, mlarray/storage/_blockcopy*.so, built from these files as an
 * optional extension (setup.py) and loaded with ctypes (mlarray/storage/blockcopy.py),
 * which releases the GIL for the duration of each call. It uses no Python and links to
 * nothing but the C library: C-Blosc2's blosc2_getitem_ctx is handed in as a function
 * pointer (taken from the libblosc2 that python-blosc2 ships). Without a compiler,
 * fastread.py does the same work with NumPy.
 *
 *   checks.c  spec 4.4.6 on a chunk's blocks: the block-start table, each block's streams,
 *             blocks that are runs of one byte (mlarray/storage/structure.py in Python)
 *   rows.c    writing a box of the result: rows copied from a decoded block, or filled
 *             with one item (streaming stores for results larger than the caches)
 *   loop.c    the loop over touched chunks and their blocks (mla_read_region), reading
 *             chunks from the file or the map, settling chunks the patch path meets first
 *   box.c     the patch path's call (mla_read_box): a box in one call, zeroed first when
 *             mostly zeros, or staged a row of chunks at a time when large
 *   compress.c  the write path's one exception: a data chunk compressed as C-Blosc2 does,
 *             except that LZ4HC streams a fast LZ4 pass cannot shrink are stored raw at once
 *
 * For one chunk of a b2nd frame and a box of it, each block the box touches is decoded
 * into a block-sized buffer (which stays in the CPU cache) and the box's part of it is
 * copied to the result, row by row. Only the touched blocks are decoded, each once; no
 * chunk-sized buffer is written or read.
 *
 * Layout (spec 4.3): a chunk is its block grid in C order, each block its items in C
 * order. All sizes are in items unless named *_bytes; strides of the result in bytes.
 * Functions shared between the files are MLA_INTERNAL (not exported from the library);
 * those called through ctypes are MLA_EXPORT.
 */

#ifndef MLA_BLOCKCOPY_H
#define MLA_BLOCKCOPY_H

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
#if defined(__GNUC__) || defined(__clang__)
#define MLA_INTERNAL __attribute__((visibility("hidden")))
#else
#define MLA_INTERNAL
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

/* The library's interface version, checked by blockcopy.py (ABI_VERSION) before use. */
#define MLA_ABI_VERSION 18

/* Checking a block scans the chunk's block-start table, so checking every block of a chunk
 * block by block costs the square of its block count: the caller checks chunks of more
 * blocks whole (mlarray.storage.structure.BLOCKWISE_MAX), and the loop refuses to check them so. */
#define MLA_BLOCKWISE_MAX 1024

/* Where the blocks of a data chunk are (spec 4.4.6); a chunk stored uncompressed has none. */
typedef struct {
    int64_t cbytes, head, nblocks, first;
} block_table;

/* Grid-mode tables are filled by Python while other threads read them (see mla_publish):
 * a chunk's address and its known-value flag are read with acquire loads. */
static inline int64_t ready_addr(const int64_t *table, int64_t at) {
#if defined(_MSC_VER)
    const int64_t v = *(volatile const int64_t *)&table[at];
    MemoryBarrier();
    return v;
#else
    return __atomic_load_n(&table[at], __ATOMIC_ACQUIRE);
#endif
}

static inline int ready_known(const uint8_t *table, int64_t at) {
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

static inline int64_t read_i32(const uint8_t *at) {
    int32_t v;
    memcpy(&v, at, 4); /* little-endian machines only: blockcopy.py checks sys.byteorder */
    return v;
}

/* Whether the n bytes at p are all zero. */
static inline int all_zero(const uint8_t *p, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        if (p[k] != 0) {
            return 0;
        }
    }
    return 1;
}

/* Step q to the next index of the box qlo .. qhi (inclusive) in C order; 0 after the last. */
static inline int next_index(int64_t *q, const int64_t *qlo, const int64_t *qhi, int32_t ndim) {
    for (int32_t a = ndim - 1; a >= 0; a--) {
        if (++q[a] <= qhi[a]) {
            return 1;
        }
        q[a] = qlo[a];
    }
    return 0;
}

/* The number (C order over the whole chunk grid) of touched chunk i of the chunks [clo, chi]. */
static inline int64_t grid_number(int64_t i, int32_t ndim, const int64_t *clo, const int64_t *chi, const int64_t *grid) {
    int64_t number = 0, scale = 1;
    for (int32_t a = ndim - 1; a >= 0; a--) {
        const int64_t span = chi[a] - clo[a] + 1;
        number += (clo[a] + i % span) * scale;
        i /= span;
        scale *= grid[a];
    }
    return number;
}

/* The library's interface (blockcopy.py declares the same signatures for ctypes). */
MLA_EXPORT int mla_abi_version(void);
MLA_EXPORT int mla_streams(void);
MLA_EXPORT void mla_publish(void);
MLA_EXPORT int64_t mla_blockwise_max(void);
MLA_EXPORT int mla_block_problem(const uint8_t *chunk, int64_t cbytes, int64_t j);
MLA_EXPORT int mla_blocks_problem(const uint8_t *chunk, int64_t cbytes, int64_t head, int64_t nblocks, int64_t first);
MLA_EXPORT int mla_settle_chunk(const int64_t *settle, int64_t at, int64_t *chunk_addr, int64_t *chunk_size,
                                uint8_t *chunk_check, int32_t itemsize, uint8_t *fill_known, uint8_t *fill_value);
MLA_EXPORT int64_t mla_read_box(int64_t *a);
MLA_EXPORT int64_t mla_compress_chunk(const int64_t *fns, const uint8_t *header, const uint8_t *src, int64_t nbytes,
                                      int32_t typesize, int32_t blocksize, int32_t mode, int32_t level,
                                      int32_t accel, uint8_t *work, int64_t work_size, uint8_t *dst);
MLA_EXPORT int64_t mla_compress_workspace(const int64_t *fns, int32_t blocksize);
MLA_EXPORT void *PyInit__blockcopy(void);

/* checks.c */
MLA_INTERNAL int find_table(const uint8_t *chunk, int64_t cbytes, block_table *t);
MLA_INTERNAL int block_run(const uint8_t *chunk, const block_table *t, int64_t j);
MLA_INTERNAL int block_problem(const uint8_t *chunk, const block_table *t, int64_t j);
MLA_INTERNAL int64_t block_error(int problem);
MLA_INTERNAL int blocks_problem_table(const uint8_t *chunk, const block_table *t);

/* rows.c */
MLA_INTERNAL void copy_box(const uint8_t *block, const int64_t *bshape, const int64_t *s, const int64_t *e,
                           uint8_t *dst, const int64_t *dst_strides, int32_t ndim, int32_t itemsize, int stream);
MLA_INTERNAL void fill_box(uint8_t *dst, const int64_t *lo, const int64_t *hi, const int64_t *strides, int32_t ndim,
                           int32_t itemsize, const uint8_t *value, int stream);

/* loop.c */
MLA_INTERNAL int all_ready(int64_t first, int64_t end, int32_t ndim, const int64_t *clo, const int64_t *chi,
                           const int64_t *grid, const uint8_t *fill_known, const uint8_t *fill_value,
                           const int64_t *chunk_addr, const int64_t *chunk_size, const uint8_t *chunk_check,
                           int32_t itemsize, const int64_t *settle);
MLA_EXPORT int64_t mla_read_region(getitem_fn getitem, void *ctx, int32_t ndim, int32_t itemsize,
                                   const int64_t *chunkshape, const int64_t *blockshape, const int64_t *sel_lo,
                                   const int64_t *sel_hi, const int64_t *grid, const uint8_t *fill_known,
                                   const uint8_t *fill_value, const int64_t *chunk_addr,
                                   const int64_t *chunk_size, const uint8_t *chunk_check, int32_t fd,
                                   int64_t chunk_nbytes, uint8_t *copy, int64_t copy_size, int64_t first,
                                   int64_t count, int64_t *next, uint8_t *out, const int64_t *out_strides,
                                   uint8_t *scratch, int32_t block_bytes, int64_t *failed, uint8_t *block_done,
                                   int64_t done_stride, const int64_t *chunk_numbers, const int64_t *settle,
                                   int32_t mode);

#endif
