/* mla_reader: an independent reader of .mla files, written from spec/mlarray.md.
 *
 * Usage: mla_reader FILE PROBES_JSON
 *
 * Runs the spec's reader algorithm on FILE and prints one JSON object on stdout, as the
 * conformance runner's protocol asks (conformance/README.md):
 *   {"valid": true, "error": null, "header": {...}, "shape": [...], "dtype": "<i2",
 *    "sha256": "...", "probes": ["...", ...]}
 * or {"valid": false, "error": "CODE", "message": "..."}. The exit status is 0 in both cases;
 * it is 2 only for a usage error (bad arguments or probes).
 *
 * Structure checks are done on the raw bytes (frame.c) before C-Blosc2 opens the file; the
 * header is decoded and validated by this program's own code (header.c, validate.c, json.c).
 */
#include <b2nd.h>
#include <blosc2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "errors.h"
#include "frame.h"
#include "header.h"
#include "json.h"
#include "sha256.h"

#define MAX_SLAB_BYTES ((int64_t)1 << 28)

typedef struct {
    int ndim;
    int64_t start[MLA_MAX_DIM], stop[MLA_MAX_DIM];
} probe;

static void usage_error(const char *msg) {
    fprintf(stderr, "mla_reader: %s\nusage: mla_reader FILE PROBES_JSON\n", msg);
    exit(2);
}

/* Parse the probes argument: [[[start, stop], ...one pair per axis], ...]. */
static probe *parse_probes(const char *text, size_t *count) {
    json_status status;
    size_t where;
    json_doc *doc = json_parse(text, strlen(text), 16, &status, &where);
    if (doc == NULL || json_root(doc)->type != JSON_ARRAY) usage_error("PROBES_JSON must be a JSON array");
    const json_value *root = json_root(doc);
    probe *out = calloc(root->n ? root->n : 1, sizeof *out);
    if (out == NULL) usage_error("out of memory");
    for (size_t k = 0; k < root->n; k++) {
        const json_value *p = root->items[k];
        if (p->type != JSON_ARRAY || p->n > MLA_MAX_DIM) usage_error("a probe must be a list of [start, stop] pairs");
        for (size_t a = 0; a < p->n; a++) {
            const json_value *pair = p->items[a];
            if (pair->type != JSON_ARRAY || pair->n != 2 || !json_is_integral(pair->items[0]) ||
                !json_is_integral(pair->items[1]))
                usage_error("a probe axis must be [start, stop] integers");
            out[k].start[a] = (int64_t)pair->items[0]->num;
            out[k].stop[a] = (int64_t)pair->items[1]->num;
        }
        out[k].ndim = (int)p->n;
    }
    *count = root->n;
    json_free(doc);
    return out;
}

/* Array elements are stored little-endian; on a big-endian host swap each scalar. */
static void to_little_endian(uint8_t *buf, int64_t nbytes, const char *dtype, size_t itemsize) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    size_t width = itemsize;
    if (dtype[1] == 'c') width /= 2; /* complex: real and imaginary parts separately */
    for (int64_t i = 0; i + (int64_t)width <= nbytes; i += (int64_t)width) {
        for (size_t a = 0, b = width - 1; a < b; a++, b--) {
            uint8_t t = buf[i + a];
            buf[i + a] = buf[i + b];
            buf[i + b] = t;
        }
    }
#else
    (void)buf;
    (void)nbytes;
    (void)dtype;
    (void)itemsize;
#endif
}

/* SHA-256 of the C-order bytes of array[start:stop], read in slabs along axis 0. */
static mla_code slice_digest(const b2nd_array_t *arr, const mla_frame *f, const int64_t *start, const int64_t *stop,
                             char hex[65], mla_error *err) {
    size_t itemsize = (size_t)f->typesize; /* equals the dtype's item size (spec 4.3, check 2) */
    int64_t row = (int64_t)itemsize; /* bytes of one index along axis 0 */
    for (int a = 1; a < f->ndim; a++) row *= stop[a] - start[a];
    sha256_ctx ctx;
    sha256_init(&ctx);
    int64_t step = f->chunks[0] > 0 ? f->chunks[0] : 1;
    while (step > 1 && step * row > MAX_SLAB_BYTES) step /= 2;
    int64_t extent = stop[0] - start[0];
    if (row > 0 && extent > 0) {
        uint8_t *buf = malloc((size_t)(step * row));
        if (buf == NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "out of memory");
        int64_t s0[MLA_MAX_DIM], s1[MLA_MAX_DIM], bshape[MLA_MAX_DIM];
        memcpy(s0, start, sizeof s0);
        memcpy(s1, stop, sizeof s1);
        for (int a = 0; a < f->ndim; a++) bshape[a] = stop[a] - start[a];
        for (int64_t i = start[0]; i < stop[0]; i += step) {
            s0[0] = i;
            s1[0] = i + step < stop[0] ? i + step : stop[0];
            bshape[0] = s1[0] - s0[0];
            int64_t nbytes = bshape[0] * row;
            memset(buf, 0, (size_t)nbytes); /* deterministic even for 'uninitialized' special chunks */
            if (b2nd_get_slice_cbuffer(arr, s0, s1, buf, bshape, nbytes) < 0) {
                free(buf);
                return mla_fail(err, MLA_CORRUPT_FRAME, "array data cannot be decompressed");
            }
            to_little_endian(buf, nbytes, f->dtype, itemsize);
            sha256_update(&ctx, buf, (size_t)nbytes);
        }
        free(buf);
    }
    sha256_final_hex(&ctx, hex);
    return MLA_OK;
}

/* Deep validation (spec step 11): every chunk of the frame must decompress completely. */
static mla_code check_chunks(const b2nd_array_t *arr, mla_error *err) {
    blosc2_schunk *sc = arr->sc;
    if (sc->nchunks == 0) return MLA_OK;
    if (sc->chunksize <= 0) return mla_fail(err, MLA_CORRUPT_FRAME, "the frame's chunk size is invalid");
    uint8_t *buf = malloc((size_t)sc->chunksize);
    if (buf == NULL) return mla_fail(err, MLA_CORRUPT_FRAME, "out of memory");
    for (int64_t i = 0; i < sc->nchunks; i++) {
        int got = blosc2_schunk_decompress_chunk(sc, i, buf, sc->chunksize);
        if (got != sc->chunksize) {
            free(buf);
            return mla_fail(err, MLA_CORRUPT_FRAME, "chunk %lld cannot be decompressed", (long long)i);
        }
    }
    free(buf);
    return MLA_OK;
}

static void print_ints(const int64_t *v, int n) {
    putchar('[');
    for (int k = 0; k < n; k++) printf(k ? ",%lld" : "%lld", (long long)v[k]);
    putchar(']');
}

static int report_error(mla_error *err) {
    /* messages may quote bytes from the file: keep the output ASCII (and so valid JSON) */
    for (char *p = err->message; *p; p++) {
        if ((unsigned char)*p >= 0x80) *p = '?';
    }
    printf("{\"valid\":false,\"error\":\"%s\",\"message\":", mla_code_name(err->code));
    json_write_string(stdout, err->message, strlen(err->message));
    printf("}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) usage_error("expected two arguments");
    const char *path = argv[1];
    size_t nprobes = 0;
    probe *probes = parse_probes(argv[2], &nprobes);

    mla_error err = {MLA_OK, ""};
    mla_frame f;
    json_doc *doc = NULL;
    b2nd_array_t *arr = NULL;
    char **probe_hex = calloc(nprobes ? nprobes : 1, sizeof *probe_hex);
    if (probe_hex == NULL) usage_error("out of memory");
    char data_hex[65] = "";
    int metadata_only = 0;
    int blosc_ready = 0;

    /* Steps 1-5: frame structure and header chunk, on raw bytes. */
    if (mla_frame_inspect(path, &f, &err) != MLA_OK) goto done;
    /* Step 6: header text. */
    if (mla_header_decode(f.header, f.header_len, &doc, &err) != MLA_OK) goto done;
    const json_value *header = json_root(doc);
    /* Step 7: version. */
    int newer_minor = 0;
    if (mla_header_version(header, &newer_minor, &err) != MLA_OK) goto done;
    /* Step 8: header validation. */
    if (mla_header_validate(header, newer_minor, &err) != MLA_OK) goto done;
    /* Step 9: frame agreement. */
    if (mla_header_match_frame(header, &f, &err) != MLA_OK) goto done;
    /* Step 10: the data section's structure, on raw bytes, before C-Blosc2 sees the frame. */
    if (mla_data_check(path, &f, &err) != MLA_OK) goto done;
    /* Step 11: data. */
    const json_value *array = json_get(header, "array");
    metadata_only = array == NULL || array->type == JSON_NULL;
    if (metadata_only) {
        nprobes = 0; /* a metadata-only file has no data to probe */
        goto integrity;
    }
    for (size_t k = 0; k < nprobes; k++) {
        if (probes[k].ndim != f.ndim) usage_error("a probe has the wrong number of axes");
        for (int a = 0; a < f.ndim; a++) {
            if (probes[k].start[a] < 0 || probes[k].start[a] > probes[k].stop[a] || probes[k].stop[a] > f.shape[a])
                usage_error("a probe lies outside the array");
        }
    }
    blosc2_init();
    blosc_ready = 1;
    /* b2nd_open would leak the super-chunk when the b2nd metalayer does not decode: open in two
     * steps and free it ourselves. */
    blosc2_schunk *sc = blosc2_schunk_open(path);
    if (sc == NULL) {
        mla_fail(&err, MLA_CORRUPT_FRAME, "C-Blosc2 cannot open the frame");
        goto done;
    }
    if (b2nd_from_schunk(sc, &arr) < 0 || arr == NULL) {
        blosc2_schunk_free(sc);
        arr = NULL;
        mla_fail(&err, MLA_CORRUPT_FRAME, "C-Blosc2 cannot read the frame as an NDArray");
        goto done;
    }
    if (check_chunks(arr, &err) != MLA_OK) goto done;
    int64_t zero[MLA_MAX_DIM] = {0};
    if (slice_digest(arr, &f, zero, f.shape, data_hex, &err) != MLA_OK) goto done;
    for (size_t k = 0; k < nprobes; k++) {
        probe_hex[k] = malloc(65);
        if (probe_hex[k] == NULL) usage_error("out of memory");
        if (slice_digest(arr, &f, probes[k].start, probes[k].stop, probe_hex[k], &err) != MLA_OK) goto done;
    }

integrity:
    /* Step 12: integrity, after the data were checked and decompressed (spec 8). */
    {
        const json_value *integrity = json_get(header, "integrity");
        if (integrity != NULL && integrity->type == JSON_OBJECT) {
            char hex[65];
            if (mla_frame_data_digest(path, &f, hex, &err) != MLA_OK) goto done;
            const json_value *want = json_get(integrity, "digest");
            if (!json_str_is(want, hex))
                mla_fail(&err, MLA_DIGEST_MISMATCH, "the data section's SHA-256 is %s, the header records another", hex);
        }
    }

done:
    if (err.code != MLA_OK) {
        report_error(&err);
    } else {
        printf("{\"valid\":true,\"error\":null,\"header\":");
        json_write(stdout, json_root(doc));
        if (metadata_only) {
            printf(",\"shape\":null,\"dtype\":null,\"sha256\":null,\"probes\":[]}\n");
        } else {
            printf(",\"shape\":");
            print_ints(f.shape, f.ndim);
            printf(",\"dtype\":"); /* as the header spells it (step 9 made it agree with the frame) */
            json_write(stdout, json_get(json_get(json_root(doc), "array"), "dtype"));
            printf(",\"sha256\":\"%s\",\"probes\":[", data_hex);
            for (size_t k = 0; k < nprobes; k++) printf(k ? ",\"%s\"" : "\"%s\"", probe_hex[k]);
            printf("]}\n");
        }
    }
    if (arr != NULL) b2nd_free(arr);
    if (blosc_ready) blosc2_destroy();
    for (size_t k = 0; k < nprobes; k++) free(probe_hex[k]);
    free(probe_hex);
    free(probes);
    json_free(doc);
    mla_frame_free(&f);
    return fflush(stdout) == 0 ? 0 : 1;
}
