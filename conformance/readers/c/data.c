/* Data-section checks (see data.h and spec section 4.4). */
#include "data.h"

#include <blosc2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_HEADER 32
#define MAX_INDEX_CHUNK 2147483647

static int64_t le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static int64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
    return (int64_t)v;
}

typedef struct {
    int64_t start, end;
} range;

static int by_start(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Spec 4.4.6, items 2 and 3: every block's streams inside the chunk, the blocks tiling [first, cbytes). */
static const char *blocks_problem(const uint8_t *c, int64_t head, int64_t nblocks, int64_t first) {
    int64_t nbytes = le32(c + 4), bsize = le32(c + 8), cbytes = le32(c + 12);
    int split = (c[2] & 0x10) == 0;
    range *r = malloc((size_t)nblocks * sizeof *r);
    if (r == NULL) return "out of memory";
    const char *why = NULL;
    for (int64_t j = 0; j < nblocks && why == NULL; j++) {
        int64_t pos = le32(c + head + 4 * j);
        r[j].start = pos;
        if (pos < first) {
            why = "block offset outside the chunk";
            break;
        }
        int whole = j < nblocks - 1 || nbytes % bsize == 0;
        int streams = split && whole ? c[3] : 1;
        for (int s = 0; s < streams; s++) {
            if (pos + 4 > cbytes) {
                why = "block offset outside the chunk";
                break;
            }
            int64_t csize = le32(c + pos);
            pos += 4 + (csize > 0 ? csize : csize < 0 ? 1 : 0);
            if (pos > cbytes) {
                why = "compressed stream outside the chunk";
                break;
            }
        }
        r[j].end = pos;
    }
    if (why == NULL) {
        qsort(r, (size_t)nblocks, sizeof *r, by_start);
        for (int64_t j = 0; j + 1 < nblocks; j++) {
            if (r[j].end != r[j + 1].start) {
                why = r[j].end > r[j + 1].start ? "two blocks overlap" : "bytes between two blocks";
                break;
            }
        }
        if (why == NULL && nblocks > 0 && (r[0].start != first || r[nblocks - 1].end != cbytes))
            why = "bytes before the first or after the last block";
    }
    free(r);
    return why;
}

/* Spec 4.4.7: the codecs and filters a chunk may name; anything else never reaches a decoder. */
static const char *codec_problem(const uint8_t *c, int extended) {
    switch (c[2] >> 5) {
    case 0: case 1: case 3: case 4: break; /* BloscLZ, LZ4 / LZ4HC, zlib, Zstd */
    default: return "a codec .mla files may not use";
    }
    if (!extended) return NULL;
    if (c[31] & 0x80) return "an instrumented codec";
    for (int slot = 16; slot < 22; slot++) {
        switch (c[slot]) {
        case 1: case 2: /* their parameter is an item size: 0 (the chunk's) or the chunk's */
            if (c[slot + 8] != 0 && c[slot + 8] != c[3]) return "a filter parameter other than the item size";
            break;
        case 34: case 35: /* bytedelta: always the chunk's item size */
            if (c[slot + 8] != c[3]) return "a filter parameter other than the item size";
            break;
        case 0: case 3: case 4: case 36: break;
        default: return "a filter .mla files may not use";
        }
    }
    return NULL;
}

const char *mla_chunk_problem(const uint8_t *c, int64_t len, int header_chunk) {
    if (len < 16) return "shorter than a chunk header";
    int extended = (c[2] & 0x05) == 0x05;
    int64_t head = extended ? CHUNK_HEADER : 16;
    if (!extended && !header_chunk) return "no extended chunk header";
    if (len < head) return "shorter than its header";
    int64_t nbytes = le32(c + 4), bsize = le32(c + 8), cbytes = le32(c + 12);
    if (cbytes != len || nbytes < 0 || c[3] < 1) return "inconsistent sizes";
    if (extended && ((c[30] & 0x01) || (c[31] & 0x08))) return "variable-length blocks or a lazy chunk";
    const char *codec = codec_problem(c, extended);
    if (codec != NULL) return codec;
    if (extended && (c[31] & 0x70)) return NULL;
    if (c[2] & 0x02) return cbytes == head + nbytes ? NULL : "uncompressed size mismatch";
    if (nbytes == 0) return NULL;
    if (bsize <= 0) return "invalid block size";
    int64_t nblocks = (nbytes + bsize - 1) / bsize;
    int64_t table_end = head + 4 * nblocks;
    if (table_end > cbytes) return "block-start table outside the chunk";
    int64_t first = table_end;
    if (extended && (c[31] & 0x01)) {
        if (table_end + 4 > cbytes) return "dictionary outside the chunk";
        int64_t dsize = le32(c + table_end);
        first = table_end + 4 + dsize;
        if (dsize < 0 || first > cbytes) return "dictionary outside the chunk";
    }
    return blocks_problem(c, head, nblocks, first);
}

static int read_at(FILE *fp, uint64_t offset, void *buf, size_t n) {
    if (fseeko(fp, (off_t)offset, SEEK_SET) != 0) return -1;
    return fread(buf, 1, n, fp) == n ? 0 : -1;
}

static int nan_allowed(const mla_frame *f) { return strcmp(f->dtype, "<f4") == 0 || strcmp(f->dtype, "<f8") == 0; }

/* Spec 4.4.1: the index chunk at header_size + element 5, checked, then decoded into *entries. */
static mla_code read_index(FILE *fp, const mla_frame *f, int64_t nchunks, int64_t **entries, mla_error *err) {
    int64_t start = (int64_t)f->header_size, end = (int64_t)(f->frame_size - f->trailer_len), size = f->data_size;
    if (size < 0 || size > end - start - CHUNK_HEADER)
        return mla_fail(err, MLA_CORRUPT_FRAME, "element 5 leaves no room for the chunk index");
    /* spec 4.4.1: C-Blosc2 trusts the sizes of the chunk at the start of the data section */
    uint8_t first[16];
    int64_t largest = f->chunksize > 8 * nchunks ? f->chunksize : 8 * nchunks;
    if (read_at(fp, (uint64_t)start, first, sizeof first) != 0 || le32(first + 12) < 16 ||
        le32(first + 12) > end - start || le32(first + 4) < 0 || le32(first + 4) > largest)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the chunk at the start of the data section declares impossible sizes");
    int64_t len = end - start - size;
    if (len > MAX_INDEX_CHUNK || nchunks > MAX_INDEX_CHUNK / 8)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the chunk index is too large");
    uint8_t *chunk = malloc((size_t)len);
    *entries = calloc((size_t)nchunks, sizeof **entries);
    if (chunk == NULL || *entries == NULL || read_at(fp, (uint64_t)(start + size), chunk, (size_t)len) != 0) {
        free(chunk);
        return mla_fail(err, MLA_CORRUPT_FRAME, "cannot read the chunk index");
    }
    const char *why = mla_chunk_problem(chunk, len, 0);
    if (why == NULL && le32(chunk + 4) != 8 * nchunks) why = "it does not hold one entry per chunk";
    if (why == NULL && chunk[3] != 8) why = "its item size is not 8";
    int kind = (chunk[31] >> 4) & 7;
    if (why == NULL && kind == 1 && len != CHUNK_HEADER) why = "a zeros chunk of the wrong length";
    if (why == NULL && kind == 3 && len == CHUNK_HEADER + 8) {
        for (int64_t k = 0; k < nchunks; k++) (*entries)[k] = le64(chunk + CHUNK_HEADER);
    } else if (why == NULL && kind != 0 && kind != 1) {
        why = "a special chunk of another kind";
    } else if (why == NULL && kind == 0) {
        blosc2_context *ctx = blosc2_create_dctx(BLOSC2_DPARAMS_DEFAULTS);
        uint8_t *body = malloc((size_t)(8 * nchunks));
        int got = ctx && body ? blosc2_decompress_ctx(ctx, chunk, (int32_t)len, body, (int32_t)(8 * nchunks)) : -1;
        if (ctx) blosc2_free_ctx(ctx);
        if (got != 8 * nchunks) why = "it cannot be decompressed";
        for (int64_t k = 0; why == NULL && k < nchunks; k++) (*entries)[k] = le64(body + 8 * k);
        free(body);
    } /* kind 1: all entries 0 (calloc) */
    free(chunk);
    if (why != NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "the chunk index chunk: %s", why);
    return MLA_OK;
}

/* Spec 4.4.2 and 4.4.4 checks 1-7 for chunk number k. */
static mla_code check_chunk(FILE *fp, const mla_frame *f, int64_t k, int64_t entry, mla_error *err) {
    if (entry < 0) {
        uint64_t word = (uint64_t)entry;
        if (word == 0x8100000000000000ull || (word == 0x8200000000000000ull && nan_allowed(f))) return MLA_OK;
        return mla_fail(err, MLA_CORRUPT_FRAME, "chunk %lld has the index entry 0x%llx", (long long)k,
                        (unsigned long long)word);
    }
    int64_t start = (int64_t)f->header_size;
    uint8_t head[4];
    if (entry > f->data_size - CHUNK_HEADER || read_at(fp, (uint64_t)(start + entry + 12), head, 4) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "chunk %lld starts outside the chunks area", (long long)k);
    int64_t cbytes = le32(head);
    if (cbytes < CHUNK_HEADER || entry + cbytes > f->data_size)
        return mla_fail(err, MLA_CORRUPT_FRAME, "chunk %lld ends outside the chunks area", (long long)k);
    uint8_t *c = malloc((size_t)cbytes);
    if (c == NULL || read_at(fp, (uint64_t)(start + entry), c, (size_t)cbytes) != 0) {
        free(c);
        return mla_fail(err, MLA_CORRUPT_FRAME, "cannot read chunk %lld", (long long)k);
    }
    const char *why = mla_chunk_problem(c, cbytes, 0);
    int kind = (c[31] >> 4) & 7;
    if (why != NULL) {
    } else if (le32(c + 4) != f->chunksize) {
        why = "its size differs from the frame's chunk size";
    } else if (c[3] != f->typesize) {
        why = "its item size differs from the frame's";
    } else if (le32(c + 8) != f->blocksize) {
        why = "its block size differs from the frame's";
    } else if (kind == 1 || (kind == 2 && nan_allowed(f))) {
        if (cbytes != CHUNK_HEADER) why = "a special chunk of the wrong length";
    } else if (kind == 3) {
        if (cbytes != CHUNK_HEADER + f->typesize) why = "a value run of the wrong length";
    } else if (kind != 0) {
        why = "a special chunk of a refused kind";
    }
    free(c);
    if (why != NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "chunk %lld: %s", (long long)k, why);
    return MLA_OK;
}

mla_code mla_data_check(const char *path, const mla_frame *f, mla_error *err) {
    int64_t nchunks = 1;
    for (int a = 0; a < f->ndim; a++) {
        if (f->chunks[a] == 0) {
            nchunks = 0;
            break;
        }
        nchunks *= (f->shape[a] + f->chunks[a] - 1) / f->chunks[a]; /* at most 2^24 (spec 4.3) */
    }
    if (!f->data_size_ok) return mla_fail(err, MLA_CORRUPT_FRAME, "frame header element 5 is not an integer");
    if (nchunks == 0) {
        if (f->frame_size - f->trailer_len != f->header_size || f->data_size != 0)
            return mla_fail(err, MLA_CORRUPT_FRAME, "a frame without chunks must have an empty data section");
        return MLA_OK;
    }
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "cannot read the data section");
    int64_t *entries = NULL;
    mla_code code = read_index(fp, f, nchunks, &entries, err);
    for (int64_t k = 0; code == MLA_OK && k < nchunks; k++) code = check_chunk(fp, f, k, entries[k], err);
    free(entries);
    fclose(fp);
    return code;
}
