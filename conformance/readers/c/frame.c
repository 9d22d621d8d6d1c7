/* Frame structure checks on raw bytes (see frame.h and spec "On-disk layout"). */
#include "frame.h"

#include <blosc2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "msgpack.h"
#include "sha256.h"

#define PREFIX_LEN 24
#define TRAILER_TAIL 23                          /* 0xce uint32 0xd8 type 16-byte fingerprint */
#define MAX_FRAME_HEADER (1u << 20)
#define MAX_TRAILER (MLA_MAX_HEADER_BYTES + (1u << 20))
#define MAX_LAYERS 256
#define MAX_MSGPACK_LEVELS 8 /* spec 4.2: deepest container level in the frame header and trailer */

static const uint8_t MAGIC[8] = {'b', '2', 'f', 'r', 'a', 'm', 'e', 0};

typedef struct {
    size_t n;
    const uint8_t *name[MAX_LAYERS];
    uint32_t name_len[MAX_LAYERS];
    const uint8_t *content[MAX_LAYERS];
    uint32_t content_len[MAX_LAYERS];
} layer_list;

static uint64_t be_uint(const uint8_t *p, int width) {
    uint64_t v = 0;
    for (int k = 0; k < width; k++) v = v << 8 | p[k];
    return v;
}

static int read_at(FILE *fp, uint64_t offset, void *buf, size_t n) {
    if (fseeko(fp, (off_t)offset, SEEK_SET) != 0) return -1;
    return fread(buf, 1, n, fp) == n ? 0 : -1;
}

static int is_bytes(const mp_item *it) { return it->kind == MP_STR || it->kind == MP_BIN; }

static int is_integer(const mp_item *it) { return it->kind == MP_UINT || it->kind == MP_INT; }

/* Decode a metalayer section [idx, {name: offset, ...}, [content, ...]] at the reader's position. */
static int read_layers(mp_reader *r, layer_list *out) {
    mp_item it;
    if (mp_next(r, &it) != 0 || it.kind != MP_ARRAY || it.len != 3) return -1;
    if (mp_next(r, &it) != 0 || !is_integer(&it)) return -1; /* idx: an integer, not used */
    if (mp_next(r, &it) != 0 || it.kind != MP_MAP || it.len > MAX_LAYERS) return -1;
    out->n = it.len;
    for (size_t k = 0; k < out->n; k++) {
        if (mp_next(r, &it) != 0 || !is_bytes(&it)) return -1;
        out->name[k] = it.data;
        out->name_len[k] = it.len;
        for (size_t j = 0; j < k; j++) {
            if (out->name_len[j] == it.len && memcmp(out->name[j], it.data, it.len) == 0) return -1;
        }
        if (mp_next(r, &it) != 0 || !is_integer(&it)) return -1; /* offset: an integer, not used */
    }
    if (mp_next(r, &it) != 0 || it.kind != MP_ARRAY || it.len != out->n) return -1;
    for (size_t k = 0; k < out->n; k++) {
        if (mp_next(r, &it) != 0 || !is_bytes(&it)) return -1;
        out->content[k] = it.data;
        out->content_len[k] = it.len;
    }
    return 0;
}

static int find_layer(const layer_list *l, const char *name) {
    size_t n = strlen(name);
    for (size_t k = 0; k < l->n; k++) {
        if (l->name_len[k] == n && memcmp(l->name[k], name, n) == 0) return (int)k;
    }
    return -1;
}

/* shape, chunkshape or blockshape: ndim msgpack integers >= 0 (mp_as_int64 refuses floats and
 * booleans, even integral ones: spec 4.3). */
static int read_dims(mp_reader *r, int ndim, int64_t *out) {
    mp_item it;
    if (mp_next(r, &it) != 0 || it.kind != MP_ARRAY || it.len != (uint32_t)ndim) return -1;
    for (int k = 0; k < ndim; k++) {
        if (mp_next(r, &it) != 0 || mp_as_int64(&it, &out[k]) != 0 || out[k] < 0) return -1;
    }
    return 0;
}

/* b2nd metalayer: [version, ndim, shape, chunkshape, blockshape, dtype_format, dtype]. */
static int read_b2nd(const uint8_t *data, size_t len, mla_frame *f) {
    mp_reader r;
    mp_item it;
    int64_t ndim;
    if (mp_too_deep(data, len, MAX_MSGPACK_LEVELS)) return -1;
    mp_init(&r, data, len);
    if (mp_next(&r, &it) != 0 || it.kind != MP_ARRAY || it.len != 7) return -1;
    if (mp_skip(&r) != 0) return -1; /* version */
    if (mp_next(&r, &it) != 0 || mp_as_int64(&it, &ndim) != 0 || ndim < 0 || ndim > MLA_MAX_DIM) return -1;
    f->ndim = (int)ndim;
    if (read_dims(&r, f->ndim, f->shape) != 0 || read_dims(&r, f->ndim, f->chunks) != 0 ||
        read_dims(&r, f->ndim, f->blocks) != 0)
        return -1;
    int64_t format; /* the integer 0 (a NumPy type string) is the only format: spec 4.3 */
    if (mp_next(&r, &it) != 0 || mp_as_int64(&it, &format) != 0 || format != 0) return -1;
    if (mp_next(&r, &it) != 0 || !is_bytes(&it) || it.len >= sizeof f->dtype) return -1;
    memcpy(f->dtype, it.data, it.len);
    f->dtype[it.len] = '\0';
    if (strlen(f->dtype) != it.len) return -1; /* embedded NUL */
    return r.pos == len ? 0 : -1;
}

/* Frame header elements 4, 6, 7, 8: nbytes, typesize, blocksize, chunksize (spec 4.3 "Sizes"). */
typedef struct {
    int64_t value[5]; /* elements 4, 6, 7, 8 and 5; -1 when the integer does not fit in int64 */
    unsigned seen;    /* bit i set when slot i is an integer */
} frame_sizes;

static void record_size(frame_sizes *s, uint32_t index, const mp_item *field) {
    static const int slot[9] = {-1, -1, -1, -1, 0, 4, 1, 2, 3};
    if (index > 8 || slot[index] < 0 || (field->kind != MP_UINT && field->kind != MP_INT)) return;
    int64_t v;
    int fits = mp_as_int64(field, &v) == 0;
    s->value[slot[index]] = fits ? v : -1;
    if (fits || slot[index] != 4) s->seen |= 1u << slot[index];
}

/* a * b, saturating at UINT64_MAX */
static uint64_t mul_sat(uint64_t a, uint64_t b) {
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

/* The item size of a b2nd dtype (spec 4.3): exactly one of "<>|=", one ASCII letter, then one or
 * more ASCII digits and nothing else. -1 when the string has another form; sizes of more than 9
 * digits are reported as -2 (never equal to a frame's type size, which is at most 255). */
static int64_t dtype_itemsize(const char *dtype) {
    if (dtype[0] == '\0' || strchr("<>|=", dtype[0]) == NULL) return -1;
    char code = dtype[1];
    if (!((code >= 'A' && code <= 'Z') || (code >= 'a' && code <= 'z'))) return -1;
    const char *digits = dtype + 2;
    size_t n = strspn(digits, "0123456789");
    if (n == 0 || digits[n] != '\0') return -1;
    if (n > 9) return -2;
    return strtol(digits, NULL, 10);
}

static mla_code check_sizes(const frame_sizes *s, const mla_frame *f, mla_error *err) {
    /* 1. the four elements are integers and the dtype has the form that gives an itemsize */
    int64_t itemsize = dtype_itemsize(f->dtype);
    if ((s->seen & 0xf) != 0xf || itemsize == -1)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame header's size fields or the b2nd dtype are malformed");
    int64_t nbytes = s->value[0], typesize = s->value[1], blocksize = s->value[2], chunksize = s->value[3];
    /* 2. */
    if (typesize != itemsize)
        return mla_fail(err, MLA_CORRUPT_FRAME, "type size %lld disagrees with dtype %s", (long long)typesize, f->dtype);
    /* 3. */
    if (f->ndim < 1 || f->ndim > 8)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the array has %d dimensions (1 to 8 allowed)", f->ndim);
    /* 4. metadata-only frame */
    if (f->ndim == 1 && f->shape[0] == 0 && f->chunks[0] == 0) return MLA_OK;
    /* 5. */
    for (int a = 0; a < f->ndim; a++) {
        if (f->blocks[a] < 1 || f->blocks[a] > f->chunks[a])
            return mla_fail(err, MLA_CORRUPT_FRAME, "axis %d: invalid chunk/block shape", a);
    }
    uint64_t chunk_items = 1, block_items = 1, nchunks = 1;
    for (int a = 0; a < f->ndim; a++) {
        /* C-Blosc2 pads each chunk to whole blocks: the extended chunk shape (spec 4.3, checks 6, 8) */
        uint64_t ext = ((uint64_t)f->chunks[a] + (uint64_t)f->blocks[a] - 1) / (uint64_t)f->blocks[a];
        chunk_items = mul_sat(chunk_items, mul_sat(ext, (uint64_t)f->blocks[a]));
        block_items = mul_sat(block_items, (uint64_t)f->blocks[a]);
        uint64_t along = ((uint64_t)f->shape[a] + (uint64_t)f->chunks[a] - 1) / (uint64_t)f->chunks[a];
        nchunks = mul_sat(nchunks, along);
    }
    uint64_t chunk_bytes = mul_sat(chunk_items, (uint64_t)typesize);
    /* 6. */
    if (chunk_bytes > 2147483647u)
        return mla_fail(err, MLA_RESOURCE_LIMIT, "chunks of %llu bytes exceed C-Blosc2's limit",
                        (unsigned long long)chunk_bytes);
    /* 7. */
    if (nchunks > 16777216u)
        return mla_fail(err, MLA_RESOURCE_LIMIT, "the frame declares %llu chunks (limit 16777216)",
                        (unsigned long long)nchunks);
    /* 8. */
    if (chunksize < 0 || (uint64_t)chunksize != chunk_bytes || blocksize < 0 ||
        (uint64_t)blocksize != mul_sat(block_items, (uint64_t)typesize))
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame's chunk/block byte sizes disagree with the b2nd shapes");
    /* 9. */
    if (nbytes < 0 || (uint64_t)nbytes != mul_sat(nchunks, chunk_bytes))
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame's uncompressed size disagrees with its shape");
    return MLA_OK;
}

/* Spec 4.6: a chunk with the extended (32-byte) header names a special value in bits 4-6 of
 * its byte 31 (zeros, NaN, a repeated value, uninitialized); such a chunk holds no header. */
#define SPECIAL_VALUE_BITS 0x70

static int is_extended(const uint8_t *chunk) {
    return (chunk[BLOSC2_CHUNK_FLAGS] & (BLOSC_DOSHUFFLE | BLOSC_DOBITSHUFFLE)) == (BLOSC_DOSHUFFLE | BLOSC_DOBITSHUFFLE);
}

static mla_code decompress_header(const uint8_t *chunk, size_t len, mla_frame *f, mla_error *err) {
    if (len < BLOSC_MIN_HEADER_LENGTH || (is_extended(chunk) && len < BLOSC_EXTENDED_HEADER_LENGTH))
        return mla_fail(err, MLA_CORRUPT_FRAME, "the header chunk is shorter than its Blosc header");
    if (is_extended(chunk) && (chunk[BLOSC2_CHUNK_BLOSC2_FLAGS] & SPECIAL_VALUE_BITS) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME,
                        "the header chunk is a special-value chunk (special value %d): it holds no header",
                        (chunk[BLOSC2_CHUNK_BLOSC2_FLAGS] & SPECIAL_VALUE_BITS) >> 4);
    /* blosc2_cbuffer_sizes reads up to 32 header bytes without a length: give it a padded copy. */
    uint8_t head[BLOSC_EXTENDED_HEADER_LENGTH] = {0};
    memcpy(head, chunk, len < sizeof head ? len : sizeof head);
    int32_t nbytes, cbytes;
    if (blosc2_cbuffer_sizes(head, &nbytes, &cbytes, NULL) < 0 || nbytes < 0 || cbytes < 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the header chunk is not a valid Blosc chunk");
    if ((uint32_t)nbytes > MLA_MAX_HEADER_BYTES)
        return mla_fail(err, MLA_HEADER_TOO_LARGE, "the header is %d bytes (limit %u)", nbytes, MLA_MAX_HEADER_BYTES);
    if ((size_t)cbytes != len) return mla_fail(err, MLA_CORRUPT_FRAME, "the header chunk's size disagrees with its container");
    /* spec 4.6 / 4.4.6: block starts and stream sizes checked before the codec follows them */
    const char *why = mla_chunk_problem(chunk, (int64_t)len, 1);
    if (why != NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "the header chunk is malformed (%s)", why);
    /* zeroed all the same (special-value chunks are refused above; this is defence in depth) */
    f->header = calloc(nbytes ? (size_t)nbytes : 1, 1);
    if (f->header == NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "out of memory");
    blosc2_context *ctx = blosc2_create_dctx(BLOSC2_DPARAMS_DEFAULTS);
    int got = ctx ? blosc2_decompress_ctx(ctx, chunk, (int32_t)len, f->header, (int32_t)nbytes) : -1;
    if (ctx) blosc2_free_ctx(ctx);
    if (got != nbytes)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the header chunk cannot be decompressed");
    f->header_len = nbytes;
    return MLA_OK;
}

static mla_code inspect(FILE *fp, mla_frame *f, mla_error *err, uint8_t **hbuf, uint8_t **tbuf) {
    uint8_t prefix[PREFIX_LEN];
    if (f->file_size < PREFIX_LEN || read_at(fp, 0, prefix, PREFIX_LEN) != 0 || (prefix[0] & 0xf0) != 0x90 ||
        prefix[1] != 0xa8 || memcmp(prefix + 2, MAGIC, 8) != 0)
        return mla_fail(err, MLA_NOT_A_FRAME, "not a Blosc2 frame (magic 'b2frame' not found)");
    if (prefix[10] != 0xd2 || prefix[15] != 0xcf) return mla_fail(err, MLA_CORRUPT_FRAME, "the frame prefix is malformed");
    int64_t header_size = (int32_t)be_uint(prefix + 11, 4);
    f->frame_size = be_uint(prefix + 16, 8);
    if (f->frame_size > f->file_size)
        return mla_fail(err, MLA_TRUNCATED_FILE, "the frame declares %llu bytes but the file has %llu",
                        (unsigned long long)f->frame_size, (unsigned long long)f->file_size);
    if (f->frame_size < f->file_size)
        return mla_fail(err, MLA_CORRUPT_FRAME, "%llu unexpected bytes after the end of the frame",
                        (unsigned long long)(f->file_size - f->frame_size));
    uint64_t limit = f->frame_size - TRAILER_TAIL < MAX_FRAME_HEADER ? f->frame_size - TRAILER_TAIL : MAX_FRAME_HEADER;
    if (f->frame_size < TRAILER_TAIL || header_size <= PREFIX_LEN || (uint64_t)header_size > limit)
        return mla_fail(err, MLA_CORRUPT_FRAME, "implausible frame header size %lld", (long long)header_size);
    f->header_size = (uint64_t)header_size;

    /* Frame header: one msgpack array filling header_size bytes; its last element holds the
     * fixed-length metalayers. */
    *hbuf = malloc(f->header_size);
    if (*hbuf == NULL || read_at(fp, 0, *hbuf, f->header_size) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "cannot read the frame header");
    mp_reader r;
    mp_item it;
    layer_list layers;
    if (mp_too_deep(*hbuf, f->header_size, MAX_MSGPACK_LEVELS))
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame header nests msgpack containers too deeply");
    mp_init(&r, *hbuf, f->header_size);
    if (mp_next(&r, &it) != 0 || it.kind != MP_ARRAY || it.len == 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame header is malformed");
    frame_sizes sizes = {{0, 0, 0, 0, 0}, 0};
    for (uint32_t k = 0; k + 1 < it.len; k++) {
        mp_reader peek = r;
        mp_item field;
        if (mp_next(&peek, &field) != 0 || mp_skip(&r) != 0)
            return mla_fail(err, MLA_CORRUPT_FRAME, "the frame header cannot be decoded");
        record_size(&sizes, k, &field);
    }
    if (read_layers(&r, &layers) != 0 || r.pos != r.len)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame header metalayer section is malformed");
    for (size_t k = 0; k < layers.n; k++) {
        if (layers.name_len[k] != 4 || memcmp(layers.name[k], "b2nd", 4) != 0)
            return mla_fail(err, MLA_FORBIDDEN_METALAYER, "the frame carries metalayer '%.*s'; only 'b2nd' is allowed",
                            (int)(layers.name_len[k] > 64 ? 64 : layers.name_len[k]), (const char *)layers.name[k]);
    }
    int b2nd = find_layer(&layers, "b2nd");
    if (b2nd < 0) return mla_fail(err, MLA_NOT_A_FRAME, "the frame is not a Blosc2 NDArray (no 'b2nd' metalayer)");
    if (read_b2nd(layers.content[b2nd], layers.content_len[b2nd], f) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the b2nd metalayer is malformed");
    if (check_sizes(&sizes, f, err) != MLA_OK) return err->code;
    f->typesize = sizes.value[1];
    f->blocksize = sizes.value[2];
    f->chunksize = sizes.value[3];
    f->data_size = sizes.value[4];
    f->data_size_ok = (sizes.seen & 0x10) != 0;

    /* Trailer: its last 23 bytes give its length. */
    uint8_t tail[TRAILER_TAIL];
    if (read_at(fp, f->frame_size - TRAILER_TAIL, tail, TRAILER_TAIL) != 0)
        return mla_fail(err, MLA_TRUNCATED_FILE, "the file ends inside the frame");
    if (tail[0] != 0xce || tail[5] != 0xd8)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame trailer is malformed");
    f->trailer_len = be_uint(tail + 1, 4);
    if (f->trailer_len > MAX_TRAILER)
        return mla_fail(err, MLA_HEADER_TOO_LARGE, "the frame trailer is %llu bytes (limit %u)",
                        (unsigned long long)f->trailer_len, MAX_TRAILER);
    if (f->trailer_len <= TRAILER_TAIL || f->trailer_len > f->frame_size - f->header_size)
        return mla_fail(err, MLA_CORRUPT_FRAME, "implausible trailer length %llu", (unsigned long long)f->trailer_len);
    *tbuf = malloc(f->trailer_len);
    if (*tbuf == NULL || read_at(fp, f->frame_size - f->trailer_len, *tbuf, f->trailer_len) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "cannot read the frame trailer");
    if (mp_too_deep(*tbuf, f->trailer_len, MAX_MSGPACK_LEVELS))
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame trailer nests msgpack containers too deeply");
    mp_init(&r, *tbuf, f->trailer_len);
    if (mp_next(&r, &it) != 0 || it.kind != MP_ARRAY || it.len < 2 || mp_skip(&r) != 0 ||
        read_layers(&r, &layers) != 0)
        return mla_fail(err, MLA_CORRUPT_FRAME, "the frame trailer is malformed");
    for (uint32_t k = 2; k < it.len; k++) {
        if (mp_skip(&r) != 0) return mla_fail(err, MLA_CORRUPT_FRAME, "the frame trailer cannot be decoded");
    }
    if (r.pos != r.len) return mla_fail(err, MLA_CORRUPT_FRAME, "the frame trailer is malformed");
    int key = find_layer(&layers, "mlarray");
    if (key < 0) return mla_fail(err, MLA_MISSING_HEADER, "the frame has no 'mlarray' header");
    return decompress_header(layers.content[key], layers.content_len[key], f, err);
}

mla_code mla_frame_inspect(const char *path, mla_frame *f, mla_error *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return mla_fail(err, MLA_NOT_A_FRAME, "cannot open the file");
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return mla_fail(err, MLA_NOT_A_FRAME, "not a regular file");
    }
    f->file_size = (uint64_t)st.st_size;
    uint8_t *hbuf = NULL, *tbuf = NULL;
    mla_code code = inspect(fp, f, err, &hbuf, &tbuf);
    free(hbuf);
    free(tbuf);
    fclose(fp);
    if (code != MLA_OK) mla_frame_free(f);
    return code;
}

void mla_frame_free(mla_frame *f) {
    free(f->header);
    f->header = NULL;
    f->header_len = 0;
}

mla_code mla_frame_data_digest(const char *path, const mla_frame *f, char hex[65], mla_error *err) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL || fseeko(fp, (off_t)f->header_size, SEEK_SET) != 0) {
        if (fp) fclose(fp);
        return mla_fail(err, MLA_TRUNCATED_FILE, "cannot read the data section");
    }
    sha256_ctx ctx;
    sha256_init(&ctx);
    static uint8_t buf[1 << 16];
    uint64_t remaining = f->frame_size - f->trailer_len - f->header_size;
    while (remaining > 0) {
        size_t want = remaining < sizeof buf ? (size_t)remaining : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        if (got == 0) break;
        sha256_update(&ctx, buf, got);
        remaining -= got;
    }
    fclose(fp);
    if (remaining > 0) return mla_fail(err, MLA_TRUNCATED_FILE, "the file ends inside the data section");
    sha256_final_hex(&ctx, hex);
    return MLA_OK;
}
