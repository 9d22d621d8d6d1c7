/* Strict JSON parsing into an arena, and compact writing (see json.h). */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, size;
    max_align_t data[];
} block;

struct json_doc {
    block *blocks;
    json_value *root;
};

static void *arena_alloc(json_doc *doc, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    block *b = doc->blocks;
    if (b == NULL || b->size - b->used < n) {
        size_t size = n > 65536 ? n : 65536;
        b = malloc(sizeof(block) + size);
        if (b == NULL) return NULL;
        b->size = size;
        b->used = 0;
        b->next = doc->blocks;
        doc->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void json_free(json_doc *doc) {
    if (doc == NULL) return;
    for (block *b = doc->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(doc);
}

const json_value *json_root(const json_doc *doc) { return doc->root; }

/* ---- parser ----------------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t len, pos;
    int max_depth;
    json_status status;
    json_doc *doc;
} parser;

static json_value *parse_value(parser *p, int depth);

static void fail(parser *p, json_status status) {
    if (p->status == JSON_OK) p->status = status;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static json_value *new_value(parser *p, json_type type) {
    json_value *v = arena_alloc(p->doc, sizeof *v);
    if (v == NULL) {
        fail(p, JSON_NO_MEMORY);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static json_value *parse_number(parser *p) {
    size_t start = p->pos;
    const char *s = p->s;
    int integer = 1;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || !is_digit(s[p->pos])) goto bad;
    if (s[p->pos] == '0') {
        p->pos++;
    } else {
        while (p->pos < p->len && is_digit(s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        integer = 0;
        p->pos++;
        if (p->pos >= p->len || !is_digit(s[p->pos])) goto bad;
        while (p->pos < p->len && is_digit(s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        integer = 0;
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || !is_digit(s[p->pos])) goto bad;
        while (p->pos < p->len && is_digit(s[p->pos])) p->pos++;
    }
    json_value *v = new_value(p, JSON_NUMBER);
    if (v == NULL) return NULL;
    size_t n = p->pos - start;
    char *text = arena_alloc(p->doc, n + 1);
    if (text == NULL) {
        fail(p, JSON_NO_MEMORY);
        return NULL;
    }
    memcpy(text, s + start, n);
    text[n] = '\0';
    v->text = text;
    v->num = strtod(text, NULL); /* the grammar above is a subset of strtod's */
    v->is_integer_literal = integer;
    return v;
bad:
    fail(p, JSON_SYNTAX);
    return NULL;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parse a string literal at p->pos (which is at the opening quote). */
static int parse_string(parser *p, const char **out, size_t *out_len) {
    const char *s = p->s;
    size_t start = ++p->pos, end = start;
    while (end < p->len && s[end] != '"') {
        if ((unsigned char)s[end] < 0x20) break;
        end += s[end] == '\\' ? 2 : 1;
    }
    if (end >= p->len || s[end] != '"') {
        fail(p, JSON_SYNTAX);
        return -1;
    }
    /* Decoding never makes a string longer than its literal. */
    char *buf = arena_alloc(p->doc, end - start + 1);
    if (buf == NULL) {
        fail(p, JSON_NO_MEMORY);
        return -1;
    }
    size_t n = 0;
    for (size_t i = start; i < end;) {
        char c = s[i];
        if (c != '\\') {
            buf[n++] = c;
            i++;
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (end - i < 4 || hex4(s + i, &cp) != 0) goto bad;
            i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) goto lone; /* a low surrogate without a high one */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* a high surrogate must be followed by a low one (mlarray spec 4.7) */
                if (end - i < 6 || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, &lo) != 0 || lo < 0xdc00 ||
                    lo > 0xdfff)
                    goto lone;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
            n += put_utf8(buf + n, cp);
            break;
        }
        default: goto bad;
        }
    }
    buf[n] = '\0';
    p->pos = end + 1;
    *out = buf;
    *out_len = n;
    return 0;
bad:
    fail(p, JSON_SYNTAX);
    return -1;
lone:
    fail(p, JSON_LONE_SURROGATE);
    return -1;
}

/* Growable list of pointers used while a container is being parsed. */
typedef struct {
    void *items;
    size_t n, cap, width;
} vec;

static int vec_push(vec *v, const void *item) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 8;
        void *grown = realloc(v->items, cap * v->width);
        if (grown == NULL) return -1;
        v->items = grown;
        v->cap = cap;
    }
    memcpy((char *)v->items + v->n * v->width, item, v->width);
    v->n++;
    return 0;
}

static void *vec_to_arena(parser *p, vec *v) {
    void *out = arena_alloc(p->doc, v->n * v->width + 1);
    if (out == NULL) return NULL;
    if (v->n) memcpy(out, v->items, v->n * v->width);
    return out;
}

static int key_cmp(const void *a, const void *b) {
    const json_member *x = *(json_member *const *)a, *y = *(json_member *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c != 0) return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

static int has_duplicate(const json_member *members, size_t n) {
    if (n < 2) return 0;
    const json_member **order = malloc(n * sizeof *order);
    if (order == NULL) return -1;
    for (size_t k = 0; k < n; k++) order[k] = &members[k];
    qsort(order, n, sizeof *order, key_cmp);
    int dup = 0;
    for (size_t k = 1; k < n && !dup; k++) dup = key_cmp(&order[k - 1], &order[k]) == 0;
    free(order);
    return dup;
}

static json_value *parse_array(parser *p, int depth) {
    json_value *v = new_value(p, JSON_ARRAY);
    vec items = {NULL, 0, 0, sizeof(json_value *)};
    if (v == NULL) return NULL;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return v;
    }
    for (;;) {
        json_value *item = parse_value(p, depth + 1);
        if (item == NULL) goto fail;
        if (vec_push(&items, &item) != 0) {
            fail(p, JSON_NO_MEMORY);
            goto fail;
        }
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            break;
        }
        fail(p, JSON_SYNTAX);
        goto fail;
    }
    v->n = items.n;
    v->items = vec_to_arena(p, &items);
    free(items.items);
    if (v->items == NULL) {
        fail(p, JSON_NO_MEMORY);
        return NULL;
    }
    return v;
fail:
    free(items.items);
    return NULL;
}

static json_value *parse_object(parser *p, int depth) {
    json_value *v = new_value(p, JSON_OBJECT);
    vec members = {NULL, 0, 0, sizeof(json_member)};
    if (v == NULL) return NULL;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return v;
    }
    for (;;) {
        json_member m;
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            fail(p, JSON_SYNTAX);
            goto fail;
        }
        if (parse_string(p, &m.key, &m.klen) != 0) goto fail;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            fail(p, JSON_SYNTAX);
            goto fail;
        }
        p->pos++;
        m.value = parse_value(p, depth + 1);
        if (m.value == NULL) goto fail;
        if (vec_push(&members, &m) != 0) {
            fail(p, JSON_NO_MEMORY);
            goto fail;
        }
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            break;
        }
        fail(p, JSON_SYNTAX);
        goto fail;
    }
    int dup = has_duplicate(members.items, members.n);
    if (dup != 0) {
        fail(p, dup < 0 ? JSON_NO_MEMORY : JSON_DUPLICATE_KEY);
        goto fail;
    }
    v->n = members.n;
    v->members = vec_to_arena(p, &members);
    free(members.items);
    if (v->members == NULL) {
        fail(p, JSON_NO_MEMORY);
        return NULL;
    }
    return v;
fail:
    free(members.items);
    return NULL;
}

/* depth = number of arrays/objects enclosing the value; a container opened here is at nesting
 * level depth + 1, which must not exceed max_depth (scalars add no level). */
static json_value *parse_value(parser *p, int depth) {
    skip_ws(p);
    if (p->pos >= p->len) {
        fail(p, JSON_SYNTAX);
        return NULL;
    }
    char c = p->s[p->pos];
    if ((c == '{' || c == '[') && depth >= p->max_depth) {
        fail(p, JSON_TOO_DEEP);
        return NULL;
    }
    if (c == '{') return parse_object(p, depth);
    if (c == '[') return parse_array(p, depth);
    if (c == '"') {
        json_value *v = new_value(p, JSON_STRING);
        if (v == NULL || parse_string(p, &v->str, &v->len) != 0) return NULL;
        return v;
    }
    if (c == '-' || is_digit(c)) return parse_number(p);
    if (literal(p, "true")) return new_value(p, JSON_TRUE);
    if (literal(p, "false")) return new_value(p, JSON_FALSE);
    if (literal(p, "null")) return new_value(p, JSON_NULL);
    fail(p, JSON_SYNTAX);
    return NULL;
}

json_doc *json_parse(const char *text, size_t len, int max_depth, json_status *status, size_t *where) {
    parser p = {text, len, 0, max_depth, JSON_OK, NULL};
    p.doc = calloc(1, sizeof *p.doc);
    if (p.doc == NULL) {
        *status = JSON_NO_MEMORY;
        *where = 0;
        return NULL;
    }
    json_value *root = parse_value(&p, 0);
    if (root != NULL) {
        skip_ws(&p);
        if (p.pos != p.len) fail(&p, JSON_SYNTAX);
    }
    *status = p.status;
    *where = p.pos;
    if (p.status != JSON_OK) {
        json_free(p.doc);
        return NULL;
    }
    p.doc->root = root;
    return p.doc;
}

/* ---- access ---------------------------------------------------------------------------- */

const json_value *json_get(const json_value *v, const char *key) {
    if (v == NULL || v->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t k = 0; k < v->n; k++) {
        if (v->members[k].klen == n && memcmp(v->members[k].key, key, n) == 0) return v->members[k].value;
    }
    return NULL;
}

int json_str_is(const json_value *v, const char *s) {
    return v != NULL && v->type == JSON_STRING && v->len == strlen(s) && memcmp(v->str, s, v->len) == 0;
}

int json_is_integral(const json_value *v) {
    return v != NULL && v->type == JSON_NUMBER && isfinite(v->num) && floor(v->num) == v->num;
}

/* Sign (-1, 0 or 1) and the digits without leading zeros of an integer literal ("-0" is 0). */
static int int_literal(const char *text, const char **digits, size_t *ndigits) {
    int negative = text[0] == '-';
    const char *d = text + negative;
    while (d[0] == '0' && d[1] != '\0') d++;
    *digits = d;
    *ndigits = strlen(d);
    if (*ndigits == 1 && d[0] == '0') return 0;
    return negative ? -1 : 1;
}

int json_num_cmp(const json_value *a, const json_value *b) {
    if (a->is_integer_literal && b->is_integer_literal && a->text && b->text) {
        const char *da, *db;
        size_t na, nb;
        int sa = int_literal(a->text, &da, &na), sb = int_literal(b->text, &db, &nb);
        if (sa != sb) return sa < sb ? -1 : 1;
        if (sa == 0) return 0;
        int magnitude = na != nb ? (na < nb ? -1 : 1) : (strcmp(da, db) > 0) - (strcmp(da, db) < 0);
        return sa * magnitude;
    }
    return (a->num > b->num) - (a->num < b->num);
}

/* ---- writer ---------------------------------------------------------------------------- */

void json_write_string(FILE *out, const char *s, size_t len) {
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", c);
        } else {
            fputc(c, out);
        }
    }
    fputc('"', out);
}

void json_write(FILE *out, const json_value *v) {
    switch (v->type) {
    case JSON_NULL: fputs("null", out); break;
    case JSON_FALSE: fputs("false", out); break;
    case JSON_TRUE: fputs("true", out); break;
    case JSON_NUMBER: fputs(v->text, out); break;
    case JSON_STRING: json_write_string(out, v->str, v->len); break;
    case JSON_ARRAY:
        fputc('[', out);
        for (size_t k = 0; k < v->n; k++) {
            if (k) fputc(',', out);
            json_write(out, v->items[k]);
        }
        fputc(']', out);
        break;
    case JSON_OBJECT:
        fputc('{', out);
        for (size_t k = 0; k < v->n; k++) {
            if (k) fputc(',', out);
            json_write_string(out, v->members[k].key, v->members[k].klen);
            fputc(':', out);
            json_write(out, v->members[k].value);
        }
        fputc('}', out);
        break;
    }
}
