/* Per-value checks used by header validation (see vcheck.h). */
#include "vcheck.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void problem(vctx *c, const char *loc, const char *kind, const char *fmt, ...) {
    c->count++;
    size_t used = strlen(c->text);
    if (c->count > 3 || used + 8 >= sizeof c->text) return;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->text + used, sizeof c->text - used, "%s%s: %s [%s]", used ? "; " : "", *loc ? loc : "(header)", msg,
             kind);
}

void join(char *out, const char *loc, const char *name) {
    snprintf(out, LOC, "%s%s%s", loc, *loc ? "." : "", name);
}

void join_index(char *out, const char *loc, size_t k) { snprintf(out, LOC, "%s.%zu", loc, k); }

int present(const json_value *v) { return v != NULL && v->type != JSON_NULL; }

/* Count code points (what JSON Schema minLength/maxLength count). */
static size_t code_points(const json_value *v) {
    size_t n = 0;
    for (size_t k = 0; k < v->len; k++) n += ((unsigned char)v->str[k] & 0xc0) != 0x80;
    return n;
}

/* ---- scalar checks: each returns 1 when the value is acceptable ------------------------- */

int check_number(vctx *c, const char *loc, const json_value *v) {
    if (v->type != JSON_NUMBER) {
        problem(c, loc, "wrong_type", "expected a number");
        return 0;
    }
    return isfinite(v->num) != 0; /* a non-finite number is reported by check_finite_tree */
}

int check_int(vctx *c, const char *loc, const json_value *v, double min, double max) {
    if (v->type != JSON_NUMBER || !v->is_integer_literal) {
        problem(c, loc, "wrong_type", "expected an integer");
        return 0;
    }
    if (!isfinite(v->num)) return 0; /* reported by check_finite_tree */
    if (!(v->num >= min && v->num <= max)) {
        problem(c, loc, "out_of_range", "%s is outside [%g, %g]", v->text, min, max);
        return 0;
    }
    return 1;
}

int check_string(vctx *c, const char *loc, const json_value *v, size_t min_len, size_t max_len) {
    if (v->type != JSON_STRING) {
        problem(c, loc, "wrong_type", "expected a string");
        return 0;
    }
    size_t n = code_points(v);
    if (n < min_len || n > max_len) {
        problem(c, loc, "out_of_range", "length %zu is outside [%zu, %zu]", n, min_len, max_len);
        return 0;
    }
    return 1;
}

int check_enum(vctx *c, const char *loc, const json_value *v, const char *const *allowed) {
    if (v->type != JSON_STRING) {
        problem(c, loc, "wrong_type", "expected a string");
        return 0;
    }
    for (size_t k = 0; allowed[k] != NULL; k++) {
        if (json_str_is(v, allowed[k])) return 1;
    }
    problem(c, loc, "invalid_value", "not one of the allowed values");
    return 0;
}

int check_type(vctx *c, const char *loc, const json_value *v, json_type type, const char *what) {
    if (v->type == type) return 1;
    problem(c, loc, "wrong_type", "expected %s", what);
    return 0;
}

/* Array of integers in [min, max] with a length in [min_len, max_len]. */
int check_int_list(vctx *c, const char *loc, const json_value *v, double min, double max, size_t min_len,
                          size_t max_len) {
    if (!check_type(c, loc, v, JSON_ARRAY, "an array")) return 0;
    int ok = 1;
    if (v->n < min_len || v->n > max_len) {
        problem(c, loc, "out_of_range", "has %zu entries, allowed %zu..%zu", v->n, min_len, max_len);
        ok = 0;
    }
    for (size_t k = 0; k < v->n; k++) {
        char sub[LOC];
        join_index(sub, loc, k);
        ok &= check_int(c, sub, v->items[k], min, max);
    }
    return ok;
}

/* Array of finite numbers; with positive, each must be > 0. */
int check_number_list(vctx *c, const char *loc, const json_value *v, int positive) {
    if (!check_type(c, loc, v, JSON_ARRAY, "an array")) return 0;
    int ok = 1;
    for (size_t k = 0; k < v->n; k++) {
        char sub[LOC];
        join_index(sub, loc, k);
        if (!check_number(c, sub, v->items[k])) {
            ok = 0;
        } else if (positive && !(v->items[k]->num > 0)) {
            problem(c, sub, "out_of_range", "must be greater than 0");
            ok = 0;
        }
    }
    return ok;
}

/* Every member of obj must be in known (NULL-terminated), unless the version is a newer minor. */
void check_members(vctx *c, const char *loc, const json_value *obj, const char *const *known) {
    if (c->lenient) return;
    for (size_t k = 0; k < obj->n; k++) {
        int found = 0;
        for (size_t j = 0; known[j] != NULL && !found; j++) {
            found = obj->members[k].klen == strlen(known[j]) && memcmp(obj->members[k].key, known[j], obj->members[k].klen) == 0;
        }
        if (!found) {
            char sub[LOC];
            snprintf(sub, sizeof sub, "%s%s%.*s", loc, *loc ? "." : "", (int)(obj->members[k].klen > 64 ? 64 : obj->members[k].klen),
                     obj->members[k].key);
            problem(c, sub, "unknown_field", "this member is not defined by the schema version the header names");
        }
    }
}

int require(vctx *c, const char *loc, const json_value *obj, const char *name) {
    if (json_get(obj, name) != NULL) return 1;
    char sub[LOC];
    join(sub, loc, name);
    problem(c, sub, "missing_field", "this member is required");
    return 0;
}

/* Every number anywhere in v must be finite: strtod gives +-inf for a literal, integer or not,
 * whose magnitude rounds beyond binary64 (spec 5.1). Recursion is bounded by the parser's
 * nesting limit. */
void check_finite_tree(vctx *c, const char *loc, const json_value *v) {
    char sub[LOC];
    switch (v->type) {
    case JSON_NUMBER:
        if (!isfinite(v->num)) problem(c, loc, "not_finite", "%.40s overflows binary64", v->text);
        break;
    case JSON_ARRAY:
        for (size_t k = 0; k < v->n; k++) {
            snprintf(sub, sizeof sub, "%s%s%zu", loc, *loc ? "." : "", k);
            check_finite_tree(c, sub, v->items[k]);
        }
        break;
    case JSON_OBJECT:
        for (size_t k = 0; k < v->n; k++) {
            snprintf(sub, sizeof sub, "%s%s%.*s", loc, *loc ? "." : "",
                     (int)(v->members[k].klen > 64 ? 64 : v->members[k].klen), v->members[k].key);
            check_finite_tree(c, sub, v->members[k].value);
        }
        break;
    default:
        break;
    }
}

int check_string_list(vctx *c, const char *loc, const json_value *v, size_t min_len, size_t max_len) {
    if (!check_type(c, loc, v, JSON_ARRAY, "an array")) return 0;
    int ok = 1;
    for (size_t k = 0; k < v->n; k++) {
        char sub[LOC];
        join_index(sub, loc, k);
        ok &= check_string(c, sub, v->items[k], min_len, max_len);
    }
    return ok;
}

int check_matrix(vctx *c, const char *loc, const json_value *v) {
    if (!check_type(c, loc, v, JSON_ARRAY, "an array of arrays")) return 0;
    int ok = 1;
    for (size_t k = 0; k < v->n; k++) {
        char sub[LOC];
        join_index(sub, loc, k);
        ok &= check_number_list(c, sub, v->items[k], 0);
    }
    return ok;
}
