/* Header bytes to JSON, the version rule and the frame agreement rule (see header.h). */
#include "header.h"

#include <stdlib.h>
#include <string.h>

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t extra;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= extra) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
        }
        i += extra + 1;
    }
    return 1;
}

mla_code mla_header_decode(const uint8_t *h, size_t len, json_doc **doc, mla_error *err) {
    *doc = NULL;
    if (len > MLA_MAX_HEADER_BYTES)
        return mla_fail(err, MLA_HEADER_TOO_LARGE, "the header is %zu bytes (limit %u)", len, MLA_MAX_HEADER_BYTES);
    if (len == 0) return mla_fail(err, MLA_HEADER_ENCODING, "the header is empty");
    size_t start, width = 0;
    uint64_t payload = 0;
    uint8_t tag = h[0];
    if (tag >= 0xa0 && tag <= 0xbf) {
        start = 1;
        payload = tag & 0x1f;
    } else if (tag == 0xd9 || tag == 0xda || tag == 0xdb) {
        width = tag == 0xd9 ? 1 : tag == 0xda ? 2 : 4;
        if (len < 1 + width) return mla_fail(err, MLA_HEADER_ENCODING, "the header string is truncated");
        for (size_t k = 0; k < width; k++) payload = payload << 8 | h[1 + k];
        start = 1 + width;
    } else {
        return mla_fail(err, MLA_HEADER_ENCODING,
                        "the header must be one msgpack string holding JSON, found msgpack type 0x%02x", tag);
    }
    if (start + payload != len)
        return mla_fail(err, MLA_HEADER_ENCODING, "the header string length disagrees with its bytes");
    const uint8_t *text = h + start;
    if (!valid_utf8(text, (size_t)payload)) return mla_fail(err, MLA_HEADER_ENCODING, "the header is not valid UTF-8");
    json_status status;
    size_t where;
    *doc = json_parse((const char *)text, (size_t)payload, MLA_JSON_MAX_DEPTH, &status, &where);
    if (*doc == NULL) {
        static const char *const why[] = {"",         "syntax error",  "repeated key",
                                          "nesting too deep", "out of memory", "lone surrogate escape"};
        return mla_fail(err, MLA_HEADER_NOT_JSON, "the header is not valid JSON (%s at byte %zu)", why[status], where);
    }
    if (json_root(*doc)->type != JSON_OBJECT) {
        json_free(*doc);
        *doc = NULL;
        return mla_fail(err, MLA_HEADER_NOT_JSON, "the header must be a JSON object");
    }
    return MLA_OK;
}

static int all_digits(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
    }
    return 1;
}

mla_code mla_header_version(const json_value *header, int *newer_minor, mla_error *err) {
    const json_value *v = json_get(header, "schema_version");
    *newer_minor = 0;
    if (v == NULL || v->type != JSON_STRING)
        return mla_fail(err, MLA_HEADER_INVALID, "schema_version: missing or not a string [missing_field]");
    const char *dot = memchr(v->str, '.', v->len);
    size_t major_len = dot ? (size_t)(dot - v->str) : 0;
    size_t minor_len = dot ? v->len - major_len - 1 : 0;
    if (dot == NULL || !all_digits(v->str, major_len) || !all_digits(dot + 1, minor_len))
        return mla_fail(err, MLA_HEADER_INVALID, "schema_version: must look like 'MAJOR.MINOR' [invalid_value]");
    /* Compare as decimal numbers of any length: strip leading zeros. */
    const char *major = v->str;
    while (major_len > 1 && *major == '0') major++, major_len--;
    if (major_len != 1 || *major != '1')
        return mla_fail(err, MLA_UNSUPPORTED_VERSION, "schema version %.*s is not supported (this reader implements 1.x)",
                        (int)(v->len > 32 ? 32 : v->len), v->str);
    /* Newer than the minor this reader implements (MLA_MINOR): compare as decimal numbers. */
    const char *minor = dot + 1;
    while (minor_len > 1 && *minor == '0') minor++, minor_len--;
    if (minor_len > 1 || (unsigned)(*minor - '0') > MLA_MINOR) *newer_minor = 1;
    return MLA_OK;
}

size_t mla_dtype_itemsize(const char *dtype) {
    static const struct {
        const char *name;
        size_t size;
    } table[] = {
        {"|b1", 1}, {"|i1", 1}, {"|u1", 1}, {"<i2", 2}, {"<u2", 2}, {"<i4", 4}, {"<u4", 4},
        {"<i8", 8}, {"<u8", 8}, {"<f2", 2}, {"<f4", 4}, {"<f8", 8}, {"<c8", 8}, {"<c16", 16},
    };
    for (size_t k = 0; k < sizeof table / sizeof table[0]; k++) {
        if (strcmp(dtype, table[k].name) == 0) return table[k].size;
    }
    return 0;
}

/* Whether the JSON array v holds exactly the integers want[0..n). */
static int same_ints(const json_value *v, const int64_t *want, int n) {
    if (v == NULL || v->type != JSON_ARRAY || v->n != (size_t)n) return 0;
    for (int k = 0; k < n; k++) {
        const json_value *x = v->items[k];
        if (!json_is_integral(x) || x->num != (double)want[k]) return 0;
        /* doubles are exact up to 2^53; beyond that compare the literal text */
        if (x->num >= 9007199254740992.0) {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", (long long)want[k]);
            if (strcmp(buf, x->text) != 0) return 0;
        }
    }
    return 1;
}

/* Spec 5.9.9: the header's dtype and the b2nd dtype are the same string, except that the
 * byte-order character of a 1-byte type ("|" in the header) is not significant in the b2nd
 * dtype ("<u1", ">u1", "=u1" and "|u1" all match "|u1"). */
static int same_dtype(const json_value *header_dtype, const char *frame) {
    if (json_str_is(header_dtype, frame)) return 1;
    if (header_dtype == NULL || header_dtype->type != JSON_STRING || header_dtype->len < 1) return 0;
    const char *h = header_dtype->str;
    return h[0] == '|' && frame[0] != '\0' && strchr("<>|=", frame[0]) != NULL && strcmp(h + 1, frame + 1) == 0 &&
           strlen(h) == header_dtype->len;
}

mla_code mla_header_match_frame(const json_value *header, const mla_frame *f, mla_error *err) {
    const json_value *array = json_get(header, "array");
    if (array == NULL || array->type == JSON_NULL) {
        if (f->ndim != 1 || f->shape[0] != 0)
            return mla_fail(err, MLA_FRAME_MISMATCH, "the header says metadata-only but the frame holds data");
        return MLA_OK;
    }
    if (!same_ints(json_get(array, "shape"), f->shape, f->ndim))
        return mla_fail(err, MLA_FRAME_MISMATCH, "header array.shape disagrees with the frame shape");
    if (!same_dtype(json_get(array, "dtype"), f->dtype))
        return mla_fail(err, MLA_FRAME_MISMATCH, "header array.dtype disagrees with the frame dtype '%s'", f->dtype);
    const json_value *layout = json_get(header, "layout");
    if (layout != NULL && layout->type == JSON_OBJECT &&
        (!same_ints(json_get(layout, "chunk_size"), f->chunks, f->ndim) ||
         !same_ints(json_get(layout, "block_size"), f->blocks, f->ndim)))
        return mla_fail(err, MLA_FRAME_MISMATCH, "header layout chunk/block sizes disagree with the frame");
    return MLA_OK;
}
