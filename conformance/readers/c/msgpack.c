/* Bounded msgpack decoding (see msgpack.h). Follows the msgpack specification's type table. */
#include "msgpack.h"

#include <string.h>

#define MP_MAX_DEPTH 64

void mp_init(mp_reader *r, const uint8_t *buf, size_t len) {
    r->buf = buf;
    r->len = len;
    r->pos = 0;
}

static int take(mp_reader *r, size_t n, const uint8_t **out) {
    if (n > r->len - r->pos) return -1;
    *out = r->buf + r->pos;
    r->pos += n;
    return 0;
}

static int be(mp_reader *r, size_t width, uint64_t *out) {
    const uint8_t *p;
    if (take(r, width, &p) != 0) return -1;
    uint64_t v = 0;
    for (size_t k = 0; k < width; k++) v = v << 8 | p[k];
    *out = v;
    return 0;
}

static int payload(mp_reader *r, mp_item *it, mp_kind kind, uint64_t n) {
    it->kind = kind;
    it->len = (uint32_t)n;
    return take(r, (size_t)n, &it->data);
}

static int sized(mp_reader *r, mp_item *it, mp_kind kind, size_t width) {
    uint64_t n;
    if (be(r, width, &n) != 0) return -1;
    if (kind == MP_ARRAY || kind == MP_MAP) {
        it->kind = kind;
        it->len = (uint32_t)n;
        return 0;
    }
    return payload(r, it, kind, n);
}

static int ext(mp_reader *r, mp_item *it, uint64_t n) {
    const uint8_t *t;
    if (take(r, 1, &t) != 0) return -1;
    it->ext_type = (int8_t)t[0];
    return payload(r, it, MP_EXT, n);
}

int mp_next(mp_reader *r, mp_item *it) {
    const uint8_t *p;
    uint64_t v;
    memset(it, 0, sizeof *it);
    if (take(r, 1, &p) != 0) return -1;
    uint8_t tag = p[0];
    it->tag = tag;
    if (tag <= 0x7f) {
        it->kind = MP_UINT;
        it->u = tag;
        return 0;
    }
    if (tag >= 0xe0) {
        it->kind = MP_INT;
        it->i = (int8_t)tag;
        return 0;
    }
    if ((tag & 0xf0) == 0x80) { it->kind = MP_MAP; it->len = tag & 0x0f; return 0; }
    if ((tag & 0xf0) == 0x90) { it->kind = MP_ARRAY; it->len = tag & 0x0f; return 0; }
    if ((tag & 0xe0) == 0xa0) return payload(r, it, MP_STR, tag & 0x1f);
    switch (tag) {
    case 0xc0: it->kind = MP_NIL; return 0;
    case 0xc2: case 0xc3: it->kind = MP_BOOL; it->u = tag == 0xc3; return 0;
    case 0xc4: return sized(r, it, MP_BIN, 1);
    case 0xc5: return sized(r, it, MP_BIN, 2);
    case 0xc6: return sized(r, it, MP_BIN, 4);
    case 0xc7: if (be(r, 1, &v) != 0) return -1; return ext(r, it, v);
    case 0xc8: if (be(r, 2, &v) != 0) return -1; return ext(r, it, v);
    case 0xc9: if (be(r, 4, &v) != 0) return -1; return ext(r, it, v);
    case 0xca: {
        if (be(r, 4, &v) != 0) return -1;
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, sizeof f);
        it->kind = MP_FLOAT;
        it->f = f;
        return 0;
    }
    case 0xcb: {
        if (be(r, 8, &v) != 0) return -1;
        memcpy(&it->f, &v, sizeof it->f);
        it->kind = MP_FLOAT;
        return 0;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (be(r, (size_t)1 << (tag - 0xcc), &v) != 0) return -1;
        it->kind = MP_UINT;
        it->u = v;
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        size_t width = (size_t)1 << (tag - 0xd0);
        if (be(r, width, &v) != 0) return -1;
        int64_t s;
        if (width == 8) {
            memcpy(&s, &v, sizeof s);
        } else {
            uint64_t sign = (uint64_t)1 << (8 * width - 1);
            s = (int64_t)(v ^ sign) - (int64_t)sign;
        }
        if (s >= 0) {
            it->kind = MP_UINT;
            it->u = (uint64_t)s;
        } else {
            it->kind = MP_INT;
            it->i = s;
        }
        return 0;
    }
    case 0xd4: return ext(r, it, 1);
    case 0xd5: return ext(r, it, 2);
    case 0xd6: return ext(r, it, 4);
    case 0xd7: return ext(r, it, 8);
    case 0xd8: return ext(r, it, 16);
    case 0xd9: return sized(r, it, MP_STR, 1);
    case 0xda: return sized(r, it, MP_STR, 2);
    case 0xdb: return sized(r, it, MP_STR, 4);
    case 0xdc: return sized(r, it, MP_ARRAY, 2);
    case 0xdd: return sized(r, it, MP_ARRAY, 4);
    case 0xde: return sized(r, it, MP_MAP, 2);
    case 0xdf: return sized(r, it, MP_MAP, 4);
    default: return -1; /* 0xc1 is never used */
    }
}

static int skip_depth(mp_reader *r, int depth) {
    mp_item it;
    if (depth > MP_MAX_DEPTH || mp_next(r, &it) != 0) return -1;
    if (it.kind != MP_ARRAY && it.kind != MP_MAP) return 0;
    uint64_t n = it.kind == MP_MAP ? 2 * (uint64_t)it.len : it.len;
    for (uint64_t k = 0; k < n; k++) {
        if (skip_depth(r, depth + 1) != 0) return -1;
    }
    return 0;
}

int mp_skip(mp_reader *r) { return skip_depth(r, 0); }

int mp_as_int64(const mp_item *it, int64_t *out) {
    if (it->kind == MP_INT) {
        *out = it->i;
        return 0;
    }
    if (it->kind == MP_UINT && it->u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)it->u;
        return 0;
    }
    return -1;
}

int mp_too_deep(const uint8_t *buf, size_t len, int limit) {
    mp_reader r;
    mp_item it;
    uint64_t pending[64]; /* pending[i]: items still to read at depth i; depth 0 is the document */
    int top = 0;
    if (limit < 1 || limit > 62) return -1;
    pending[0] = 1;
    mp_init(&r, buf, len);
    while (top >= 0 && r.pos < r.len) {
        if (pending[top] == 0) {
            top--;
            continue;
        }
        pending[top]--;
        if (mp_next(&r, &it) != 0) return 0; /* malformed: the decoder reports it */
        if (it.kind != MP_ARRAY && it.kind != MP_MAP) continue;
        if (top + 1 > limit) return 1; /* this container is at level top + 1 */
        pending[++top] = it.kind == MP_MAP ? 2 * (uint64_t)it.len : it.len;
    }
    return 0;
}
