/* Building blocks of header validation: the problem collector and per-value checks.
 *
 * Each check_* function reports a problem (location, kind of spec section 7.3, message)
 * and returns 0 when the value breaks its rule, 1 when it is acceptable. Non-finite numbers
 * are the exception: check_finite_tree reports them once for the whole header, and the
 * number checks only return 0 for them.
 */
#ifndef MLA_VCHECK_H
#define MLA_VCHECK_H

#include <stddef.h>

#include "json.h"

#define LOC 256 /* size of a location buffer ("spatial.direction.0.1") */

typedef struct {
    int lenient;    /* newer minor version: ignore unknown members */
    int count;      /* problems found */
    char text[480]; /* the first problems, for the error message */
} vctx;

void problem(vctx *c, const char *loc, const char *kind, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void join(char *out, const char *loc, const char *name);
void join_index(char *out, const char *loc, size_t k);
int present(const json_value *v); /* not absent and not null */

int check_type(vctx *c, const char *loc, const json_value *v, json_type type, const char *what);
int check_number(vctx *c, const char *loc, const json_value *v);
int check_int(vctx *c, const char *loc, const json_value *v, double min, double max);
int check_string(vctx *c, const char *loc, const json_value *v, size_t min_len, size_t max_len);
int check_enum(vctx *c, const char *loc, const json_value *v, const char *const *allowed);
int check_int_list(vctx *c, const char *loc, const json_value *v, double min, double max, size_t min_len,
                   size_t max_len);
int check_number_list(vctx *c, const char *loc, const json_value *v, int positive);
int check_string_list(vctx *c, const char *loc, const json_value *v, size_t min_len, size_t max_len);
/* Numbers x rows matrix of finite numbers, rows given; 0 if not an array of number arrays. */
int check_matrix(vctx *c, const char *loc, const json_value *v);
void check_members(vctx *c, const char *loc, const json_value *obj, const char *const *known);
int require(vctx *c, const char *loc, const json_value *obj, const char *name);
/* Report every non-finite number in v and below it (kind not_finite). */
void check_finite_tree(vctx *c, const char *loc, const json_value *v);

#endif
