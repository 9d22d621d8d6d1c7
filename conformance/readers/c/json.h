/* A strict RFC 8259 JSON parser and writer, written for the reader's needs.
 *
 * Strict means: no NaN/Infinity, no comments, no trailing commas, no control characters
 * in strings, no bytes after the value but JSON whitespace, and (as the mlarray header
 * requires) no repeated key in any object, no \u escape of a lone surrogate, and arrays and
 * objects nested at most max_depth levels (the top-level value is level 1). Input must
 * already be valid UTF-8, so decoded strings are valid UTF-8 too.
 * All nodes live in one arena freed with json_free().
 */
#ifndef MLA_JSON_H
#define MLA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;

typedef struct {
    const char *key;   /* decoded key (NUL-terminated; may also contain NUL) */
    size_t klen;
    json_value *value;
} json_member;

struct json_value {
    json_type type;
    /* JSON_NUMBER */
    double num;             /* nearest double; +-inf when the literal overflows */
    int is_integer_literal; /* literal has neither fraction nor exponent */
    const char *text;       /* the literal as written (NUL-terminated) */
    /* JSON_STRING: decoded bytes (valid UTF-8; may contain NUL from a \u0000 escape) */
    const char *str;
    size_t len;
    /* JSON_ARRAY (items) and JSON_OBJECT (members, in file order) */
    size_t n;
    json_value **items;
    json_member *members;
};

typedef enum {
    JSON_OK,
    JSON_SYNTAX,
    JSON_DUPLICATE_KEY,
    JSON_TOO_DEEP,
    JSON_NO_MEMORY,
    JSON_LONE_SURROGATE,
} json_status;

typedef struct json_doc json_doc;

/* Parse text[0..len), refusing arrays/objects nested deeper than max_depth levels. On success returns the document (root via json_root); on failure NULL,
 * with *status and *where (byte offset) telling what went wrong. */
json_doc *json_parse(const char *text, size_t len, int max_depth, json_status *status, size_t *where);
const json_value *json_root(const json_doc *doc);
void json_free(json_doc *doc);

/* Member `key` of an object, or NULL (also when v is not an object). */
const json_value *json_get(const json_value *v, const char *key);
/* Whether the string value equals the C string s. */
int json_str_is(const json_value *v, const char *s);
/* Whether v is a finite number with no fractional part. */
int json_is_integral(const json_value *v);
/* Compare two numbers: -1, 0 or 1. Two integer literals are compared exactly (by their digits, spec 5.1);
 * anything else as binary64 values. */
int json_num_cmp(const json_value *a, const json_value *b);

/* Write v as compact JSON; numbers are written exactly as they were read. */
void json_write(FILE *out, const json_value *v);
/* Write bytes as a JSON string literal (same escaping json_write uses). */
void json_write_string(FILE *out, const char *s, size_t len);

#endif
