/*
 * Compressing one data chunk into a Blosc2 chunk (the write path; mlarray/storage/chunkcompress.py).
 *
 * C-Blosc2 compresses every stream of a block with the codec it is given. With LZ4HC that
 * is a long search for matches, spent in full on streams that do not shrink at all and
 * are then stored as they are: the low bytes of noisy intensities, most of the bytes of
 * noisy floats. Here a fast LZ4 pass first asks whether it finds any matches in a stream:
 * when its output is as long as all literals (within 1/300 of the stream: LZ4 writes
 * n + n/255 bytes for n bytes without a match) and the stream's bytes are spread like noise
 * (see skewed), the stream is stored raw without the LZ4HC search. Every other step is the
 * one C-Blosc2 3.x takes with one thread (blosc_c and blosc_compress_context of
 * blosc/blosc2.c), so the chunk is byte for byte C-Blosc2's unless LZ4HC finds matches
 * in a stream where the fast pass found none (none in the benchmark's volumes):
 *
 *   - each block is byte-shuffled (when asked) and cut into `typesize` streams when the
 *     header's bit 0x10 is clear, else one stream;
 *   - a stream of one repeated byte is a run: csize 0 for zeros, else -value and one
 *     token byte 0x01;
 *   - any other stream is compressed with at most `neblock` bytes of output (less near
 *     the end of the output), and stored raw when the codec gives back nothing or exactly
 *     `neblock` bytes;
 *   - the output may not exceed nbytes + 32 bytes (python-blosc2's destination); a chunk
 *     that would is reported as 0 and left to C-Blosc2 (which stores it uncompressed);
 *   - a chunk whose streams are all zero runs becomes a special zero chunk (32 bytes).
 *
 * The header's constant bytes come from a template C-Blosc2 wrote for the same parameters
 * (versions, flags, typesize, filters, codec bits); only nbytes, blocksize and cbytes are
 * written here. The LZ4 functions and blosc2_shuffle come in as pointers from the
 * libblosc2 python-blosc2 ships, with the LZ4 states in a workspace the caller owns.
 */

#include "blockcopy.h"

typedef int (*mla_lz4_hc_fn)(void *state, const char *src, char *dst, int size, int capacity, int level);
typedef int (*mla_lz4_fast_fn)(void *state, const char *src, char *dst, int size, int capacity, int accel);
typedef int32_t (*mla_shuffle_fn)(int32_t typesize, int32_t blocksize, const void *src, void *dst);
typedef void *(*mla_init_fn)(void *buffer, size_t size);

/* The functions, in the order of the int64 array the caller passes (see chunkcompress.py). */
enum { FN_HC, FN_FAST, FN_SHUFFLE, FN_INIT_HC, FN_INIT_FAST, FN_HC_SIZE, FN_FAST_SIZE, FN_COUNT };

/* Modes of mla_compress_chunk. */
#define MLA_SHUFFLE 1 /* byte-shuffle each block by typesize */
#define MLA_HC 2      /* LZ4HC at `level` (else LZ4 with acceleration `level`) */
#define MLA_PROBE 4   /* LZ4HC streams: a fast LZ4 pass first, raw when it cannot shrink them */

/* The fast pass "found nothing" when its output exceeds this many bytes for an n-byte stream. */
#define MLA_PROBE_CAP(n) ((n) + (n) / 300)
/* A stream is skewed when the chance that two of its bytes are equal exceeds 1/MLA_SKEW + 1/n. */
#define MLA_SKEW 64

#define MLA_E_ARGS (-2001)
#define MLA_E_STATE (-2002)
#define MLA_E_CODEC (-2003)
#define MLA_E_SHUFFLE (-2004)

static int is_run(const uint8_t *p, int32_t n) {
    uint8_t first = p[0];
    uint64_t pattern;
    memset(&pattern, first, 8);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v != pattern) return 0;
    }
    for (; i < n; i++)
        if (p[i] != first) return 0;
    return 1;
}

/* Whether a stream's bytes are far from uniform: a collision entropy (-log2 of the chance
   that two of its bytes are equal) under about 6 bits. LZ4HC finds matches in such streams
   that a fast pass may skip (random bytes of 16 or 32 values, for one), so they are not
   stored raw on the fast pass's word alone. At 6 bits, random bytes of k values (k = 9 to
   128) and rounded normal bytes (sd 3 to 40), streams of 512 B to 64 KiB, came out as
   C-Blosc2's in every trial; at 5 bits some did not. */
static int skewed(const uint8_t *p, int32_t n) {
    uint32_t counts[4][256];
    memset(counts, 0, sizeof(counts));
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        counts[0][p[i]]++;
        counts[1][p[i + 1]]++;
        counts[2][p[i + 2]]++;
        counts[3][p[i + 3]]++;
    }
    for (; i < n; i++) counts[0][p[i]]++;
    uint64_t squares = 0;
    for (int v = 0; v < 256; v++) {
        uint64_t c = (uint64_t)counts[0][v] + counts[1][v] + counts[2][v] + counts[3][v];
        squares += c * c;
    }
    return squares * MLA_SKEW > (uint64_t)n * (uint64_t)n + MLA_SKEW * (uint64_t)n;
}

static void put_i32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/*
 * Compress `nbytes` bytes at `src` (whole blocks of `blocksize` bytes, in block order) into
 * `dst` (at least nbytes + 32 bytes). `header` is the 32-byte template; `fns` the function
 * table; `work` a caller-owned workspace of at least mla_compress_workspace(blocksize) bytes,
 * 64-byte aligned. Returns the chunk's length, 0 when it does not fit in nbytes + 32 bytes
 * (C-Blosc2 then stores it uncompressed), or a negative error.
 */
MLA_EXPORT int64_t mla_compress_chunk(const int64_t *fns, const uint8_t *header, const uint8_t *src, int64_t nbytes,
                                      int32_t typesize, int32_t blocksize, int32_t mode, int32_t level,
                                      int32_t accel, uint8_t *work, int64_t work_size, uint8_t *dst) {
    if (fns == NULL || header == NULL || src == NULL || dst == NULL || work == NULL) return MLA_E_ARGS;
    if (typesize < 1 || typesize > 255 || blocksize < typesize || blocksize % typesize != 0) return MLA_E_ARGS;
    if (nbytes <= 0 || nbytes % blocksize != 0 || nbytes > INT32_MAX - 64) return MLA_E_ARGS;
    const int64_t hc_size = fns[FN_HC_SIZE], fast_size = fns[FN_FAST_SIZE];
    const int64_t state_bytes = (hc_size + 63) / 64 * 64 + (fast_size + 63) / 64 * 64;
    if (hc_size <= 0 || fast_size <= 0 || work_size < state_bytes + blocksize + MLA_PROBE_CAP(blocksize))
        return MLA_E_ARGS;
    mla_lz4_hc_fn hc = (mla_lz4_hc_fn)(intptr_t)fns[FN_HC];
    mla_lz4_fast_fn fast = (mla_lz4_fast_fn)(intptr_t)fns[FN_FAST];
    mla_shuffle_fn shuffle = (mla_shuffle_fn)(intptr_t)fns[FN_SHUFFLE];
    mla_init_fn init_hc = (mla_init_fn)(intptr_t)fns[FN_INIT_HC];
    mla_init_fn init_fast = (mla_init_fn)(intptr_t)fns[FN_INIT_FAST];
    void *hc_state = work;
    void *fast_state = work + (hc_size + 63) / 64 * 64;
    uint8_t *shuffled = work + state_bytes;
    uint8_t *probe = shuffled + blocksize;
    if (init_hc(hc_state, (size_t)hc_size) == NULL || init_fast(fast_state, (size_t)fast_size) == NULL)
        return MLA_E_STATE;

    const int32_t nblocks = (int32_t)(nbytes / blocksize);
    const int split = (header[2] & 0x10) == 0;
    const int32_t nstreams = split ? typesize : 1;
    const int32_t neblock = blocksize / nstreams;
    const int64_t destsize = nbytes + 32;
    if (nbytes < 128) return 0; /* C-Blosc2 stores buffers under 128 bytes uncompressed */
    int64_t ntbytes = 32 + 4 * (int64_t)nblocks;
    if (ntbytes > destsize) return 0;
    memcpy(dst, header, 32);
    put_i32(dst + 4, (int32_t)nbytes);
    put_i32(dst + 8, blocksize);

    for (int32_t b = 0; b < nblocks; b++) {
        put_i32(dst + 32 + 4 * (int64_t)b, (int32_t)ntbytes);
        const uint8_t *block = src + (int64_t)b * blocksize;
        if ((mode & MLA_SHUFFLE) && typesize > 1) {
            if (shuffle(typesize, blocksize, block, shuffled) < 0) return MLA_E_SHUFFLE;
            block = shuffled;
        }
        for (int32_t j = 0; j < nstreams; j++) {
            const uint8_t *stream = block + (int64_t)j * neblock;
            uint8_t *csize_at = dst + ntbytes;
            ntbytes += 4;
            if (is_run(stream, neblock)) {
                if (ntbytes > destsize) return 0;
                put_i32(csize_at, -(int32_t)stream[0]);
                if (stream[0] != 0) {
                    ntbytes += 1;
                    if (ntbytes > destsize) return 0;
                    dst[ntbytes - 1] = 0x01;
                }
                continue;
            }
            int64_t maxout = neblock;
            if (ntbytes + maxout > destsize) {
                maxout = destsize - ntbytes;
                if (maxout <= 0) return 0;
            }
            int cbytes;
            if ((mode & MLA_HC) && (mode & MLA_PROBE) &&
                fast(fast_state, (const char *)stream, (char *)probe, neblock, MLA_PROBE_CAP(neblock), accel) == 0 &&
                !skewed(stream, neblock)) {
                cbytes = 0; /* the fast pass found no match in bytes like noise: stored raw */
            } else if (mode & MLA_HC) {
                cbytes = hc(hc_state, (const char *)stream, (char *)(dst + ntbytes), neblock, (int)maxout, level);
            } else {
                cbytes = fast(fast_state, (const char *)stream, (char *)(dst + ntbytes), neblock, (int)maxout, level);
            }
            if (cbytes < 0 || cbytes > maxout) return MLA_E_CODEC;
            if (cbytes == 0) cbytes = neblock;
            if (cbytes == neblock) {
                if (ntbytes + neblock > destsize) return 0;
                memcpy(dst + ntbytes, stream, (size_t)neblock);
            }
            put_i32(csize_at, cbytes);
            ntbytes += cbytes;
        }
    }
    if (ntbytes == 32 + 4 * (int64_t)nblocks + 4 * (int64_t)nblocks * nstreams) {
        dst[31] |= 0x10; /* every stream a zero run: a special zero chunk, its header alone */
        ntbytes = 32;
    }
    put_i32(dst + 12, (int32_t)ntbytes);
    return ntbytes;
}

/* Bytes of workspace mla_compress_chunk needs for blocks of `blocksize` bytes. */
MLA_EXPORT int64_t mla_compress_workspace(const int64_t *fns, int32_t blocksize) {
    int64_t states = (fns[FN_HC_SIZE] + 63) / 64 * 64 + (fns[FN_FAST_SIZE] + 63) / 64 * 64;
    return states + blocksize + MLA_PROBE_CAP((int64_t)blocksize);
}
