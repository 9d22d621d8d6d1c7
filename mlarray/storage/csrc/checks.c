/*
 * Spec 4.4.6 on the blocks of a data chunk, before C-Blosc2 decodes any of them: where the
 * block-start table is (rule 1), where each block's streams end (rule 2), that the blocks
 * tile the chunk (rule 3), and which blocks are runs of one byte (filled, not decoded).
 * The same rules as mlarray/storage/structure.py, which the reader runs without this library.
 */

#include "blockcopy.h"

MLA_EXPORT int64_t mla_blockwise_max(void) { return MLA_BLOCKWISE_MAX; }

/* Rule 1 of spec 4.4.6 (the caller checked the 32-byte header, spec 4.4.4): 0, or 4
 * (the block-start table outside the chunk) or 5 (the dictionary outside the chunk). */
MLA_INTERNAL int find_table(const uint8_t *chunk, int64_t cbytes, block_table *t) {
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
MLA_INTERNAL int block_run(const uint8_t *chunk, const block_table *t, int64_t j) {
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
MLA_INTERNAL int block_problem(const uint8_t *chunk, const block_table *t, int64_t j) {
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

/* The error code of a problem found by find_table or block_problem. */
MLA_INTERNAL int64_t block_error(int problem) {
    switch (problem) {
    case 1: return MLA_ERR_BLOCK;
    case 2: return MLA_ERR_STREAM;
    case 3: return MLA_ERR_OVERLAP;
    case 6: return MLA_ERR_GAP;
    default: return MLA_ERR_TABLE;
    }
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
    return blocks_problem_table(chunk, &table);
}

MLA_INTERNAL int blocks_problem_table(const uint8_t *chunk, const block_table *t) {
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
