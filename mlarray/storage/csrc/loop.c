/*
 * The loop over the chunks a selection touches and the blocks of each (mla_read_region):
 * every read of the compiled path goes through it, the patch path's (box.c) in grid mode.
 * Chunks come from the file's map or, for whole-array reads, from pread copies checked whole
 * (fetch_chunk); the patch path's first reads of a handle settle chunks here (settle_chunk).
 */

#include "blockcopy.h"

MLA_EXPORT int mla_abi_version(void) { return MLA_ABI_VERSION; }

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
        problem = blocks_problem_table(copy, &table);
    }
    if (problem < 0) {
        return MLA_ERR_ARGS; /* out of memory for the check */
    }
    return problem ? block_error(problem) : 0;
#endif
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

/* An atomic fetch-and-add of 1 on a counter the threads of one read share. */
static int64_t take(int64_t *counter) {
#if defined(_MSC_VER)
    return InterlockedExchangeAdd64((volatile LONG64 *)counter, 1);
#else
    return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
#endif
}

/*
 * The next touched chunk for a thread of a shared read (see mla_read_region): from its lane
 * while that has chunks left, then from the other lanes in turn; -1 when every lane it has
 * looked at since is exhausted. `lanes` holds [0] the number of lanes, [1] the count of
 * threads that joined, [2 + l] the chunks taken from lane l; lane l is the touched chunks
 * first + l * stretch ... first + (l + 1) * stretch - 1 (the last one shorter).
 */
static int64_t take_lane(int64_t *lanes, int64_t *lane, int64_t *left, int64_t first, int64_t end,
                         int64_t stretch) {
    while (*left > 0) {
        const int64_t p = take(&lanes[2 + *lane]);
        const int64_t i = first + *lane * stretch + p;
        if (p < stretch && i < end) {
            return i;
        }
        *lane = (*lane + 1) % lanes[0];
        (*left)--;
    }
    return -1;
}

/* After an error: every lane exhausted, so the other threads stop at their next take. */
static void stop_all(int64_t *lanes, int64_t stretch) {
    for (int64_t l = 0; l < lanes[0]; l++) {
#if defined(_MSC_VER)
        InterlockedExchange64((volatile LONG64 *)&lanes[2 + l], stretch);
#else
        __atomic_store_n(&lanes[2 + l], stretch, __ATOMIC_RELAXED);
#endif
    }
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
MLA_INTERNAL int all_ready(int64_t first, int64_t end, int32_t ndim, const int64_t *clo, const int64_t *chi,
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
 * function with the same `next` and takes chunks until none is left, so threads share the
 * work without returning to Python. `next` holds 2 + L int64: L, the number of lanes (the
 * threads asked for, at most the touched chunks; at least 1), then zeros. The touched chunks are cut into L stretches
 * (lanes); each thread that joins takes the next lane as its own and reads its chunks in
 * order, then helps with the other lanes (take_lane). So the threads decode chunks that lie
 * apart in the result and do not fault in the same pages of a fresh one together (the
 * kernel zeroes a huge page before it takes the lock: two threads touching it first at
 * once each zero 2 MiB, and one copy is thrown away). After an error every lane is marked
 * exhausted, so the other threads stop at their next chunk.
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
        (next != NULL && next[0] < 1) ||
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
    int64_t lane = 0, left = 0, stretch = count; /* with `next`: this thread's lane, lanes to visit, lane length */
    if (next != NULL) {
        stretch = (count + next[0] - 1) / next[0];
        lane = take(&next[1]) % next[0];
        left = next[0];
    }
    int64_t decoded = 0;
    for (int64_t i = first;; i++) { /* leaves with `decoded` set: blocks decoded, or an error */
        if (next != NULL) {
            i = take_lane(next, &lane, &left, first, end, stretch);
            if (i < 0) {
                break;
            }
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
                    stop_all(next, stretch);
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
                    stop_all(next, stretch);
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
                stop_all(next, stretch);
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

/* Never called: build tools export a module init function of this name from every extension. */
MLA_EXPORT void *PyInit__blockcopy(void) { return 0; }
