/*
 * The patch path's call (mla_read_box, from mlarray/storage/patchread.py): a box read in one
 * call with its arguments in one int64 array, through mla_read_region in grid mode. A box
 * that is mostly zeros known without decoding is zeroed whole first; a large C-contiguous
 * result goes through a cache-sized stage, a row of chunks at a time, to the result with
 * streaming stores (read_box_staged).
 */

#include "blockcopy.h"

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
