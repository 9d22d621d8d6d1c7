/* Schema 1.x header validation (spec sections 5 and 6; schema/mlarray-header-1.1.schema.json).
 *
 * Every problem is collected (location, kind, message) like the Python reader does; the
 * conformance protocol only needs the code HEADER_INVALID, the first problems go into the
 * message. Cross-member rules run only on members whose own checks passed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "header.h"
#include "spatial.h"
#include "vcheck.h"

#define MAX_NDIM 8

/* ---- namespaces --------------------------------------------------------------------- */

static const char *const DTYPES[] = {"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8",
                                     "<u8", "<f2", "<f4", "<f8", "<c8", "<c16", NULL};

static int check_writer(vctx *c, const json_value *v) {
    static const char *const known[] = {"name", "version", NULL};
    if (!check_type(c, "writer", v, JSON_OBJECT, "an object or null")) return 0;
    check_members(c, "writer", v, known);
    int ok = require(c, "writer", v, "name") & require(c, "writer", v, "version");
    const json_value *x;
    if ((x = json_get(v, "name")) != NULL) ok &= check_string(c, "writer.name", x, 1, 128);
    if ((x = json_get(v, "version")) != NULL) ok &= check_string(c, "writer.version", x, 1, 64);
    return ok;
}

static int check_array(vctx *c, const json_value *v) {
    static const char *const known[] = {"shape", "dtype", NULL};
    if (!check_type(c, "array", v, JSON_OBJECT, "an object or null")) return 0;
    check_members(c, "array", v, known);
    int ok = require(c, "array", v, "shape") & require(c, "array", v, "dtype");
    const json_value *x;
    if ((x = json_get(v, "shape")) != NULL) ok &= check_int_list(c, "array.shape", x, 0, INFINITY, 1, MAX_NDIM);
    if ((x = json_get(v, "dtype")) != NULL) ok &= check_enum(c, "array.dtype", x, DTYPES);
    return ok;
}

static int check_layout(vctx *c, const json_value *v) {
    static const char *const known[] = {"strategy", "chunk_size", "block_size", "patch_size",
                                        "codec",    "clevel",     "filters",    NULL};
    static const char *const strategies[] = {"patch", "manual", "blosc2", NULL};
    static const char *const codecs[] = {"blosclz", "lz4", "lz4hc", "zlib", "zstd", NULL};
    static const char *const filters[] = {"shuffle", "bitshuffle", "bytedelta", NULL};
    if (!check_type(c, "layout", v, JSON_OBJECT, "an object or null")) return 0;
    check_members(c, "layout", v, known);
    int ok = require(c, "layout", v, "strategy") & require(c, "layout", v, "chunk_size") &
             require(c, "layout", v, "block_size");
    const json_value *x, *chunk = json_get(v, "chunk_size"), *block = json_get(v, "block_size");
    int sizes_ok = chunk && block;
    if ((x = json_get(v, "strategy")) != NULL) ok &= check_enum(c, "layout.strategy", x, strategies);
    if (chunk) sizes_ok &= check_int_list(c, "layout.chunk_size", chunk, 1, INFINITY, 0, SIZE_MAX);
    if (block) sizes_ok &= check_int_list(c, "layout.block_size", block, 1, INFINITY, 0, SIZE_MAX);
    if (present(x = json_get(v, "patch_size"))) ok &= check_int_list(c, "layout.patch_size", x, 1, INFINITY, 0, SIZE_MAX);
    if ((x = json_get(v, "codec")) != NULL) ok &= check_enum(c, "layout.codec", x, codecs);
    if ((x = json_get(v, "clevel")) != NULL) ok &= check_int(c, "layout.clevel", x, 0, 9);
    if ((x = json_get(v, "filters")) != NULL && check_type(c, "layout.filters", x, JSON_ARRAY, "an array")) {
        for (size_t k = 0; k < x->n; k++) {
            char sub[LOC];
            join_index(sub, "layout.filters", k);
            ok &= check_enum(c, sub, x->items[k], filters);
        }
    } else if (x != NULL) {
        ok = 0;
    }
    if (sizes_ok) {
        if (chunk->n != block->n) {
            problem(c, "layout", "rule_violation", "chunk_size and block_size must have the same length");
            return 0;
        }
        for (size_t k = 0; k < chunk->n; k++) {
            if (json_num_cmp(block->items[k], chunk->items[k]) > 0) {
                problem(c, "layout", "rule_violation", "axis %zu: block size is larger than chunk size", k);
                return 0;
            }
        }
    }
    return ok && sizes_ok;
}

static void check_integrity(vctx *c, const json_value *v) {
    static const char *const known[] = {"algorithm", "digest", NULL};
    static const char *const algorithms[] = {"sha256", NULL};
    if (!check_type(c, "integrity", v, JSON_OBJECT, "an object or null")) return;
    check_members(c, "integrity", v, known);
    require(c, "integrity", v, "digest");
    const json_value *x;
    if ((x = json_get(v, "algorithm")) != NULL) check_enum(c, "integrity.algorithm", x, algorithms);
    if ((x = json_get(v, "digest")) != NULL && check_type(c, "integrity.digest", x, JSON_STRING, "a string")) {
        int hex = x->len == 64;
        for (size_t k = 0; k < x->len && hex; k++) hex = (x->str[k] >= '0' && x->str[k] <= '9') || (x->str[k] >= 'a' && x->str[k] <= 'f');
        if (!hex) problem(c, "integrity.digest", "invalid_value", "must be 64 lower-case hex digits");
    }
}

static void check_stats(vctx *c, const json_value *v) {
    static const char *const known[] = {"min", "max", "mean", "median", "std", "percentile_min", "percentile_max",
                                        "percentile_mean", "percentile_median", "percentile_std",
                                        "percentile_min_key", "percentile_max_key", NULL};
    if (!check_type(c, "stats", v, JSON_OBJECT, "an object or null")) return;
    check_members(c, "stats", v, known);
    int ok = 1;
    for (size_t k = 0; known[k] != NULL; k++) {
        const json_value *x = json_get(v, known[k]);
        char loc[LOC];
        join(loc, "stats", known[k]);
        if (!present(x)) continue;
        if (!check_number(c, loc, x)) {
            ok = 0;
        } else if (strstr(known[k], "std") != NULL && x->num < 0) {
            problem(c, loc, "out_of_range", "must be >= 0");
            ok = 0;
        } else if (strstr(known[k], "_key") != NULL && (x->num < 0 || x->num > 100)) {
            problem(c, loc, "out_of_range", "must be within [0, 100]");
            ok = 0;
        }
    }
    if (!ok) return;
    static const char *const pairs[][2] = {
        {"min", "max"}, {"percentile_min", "percentile_max"}, {"percentile_min_key", "percentile_max_key"}};
    for (size_t k = 0; k < 3; k++) {
        const json_value *lo = json_get(v, pairs[k][0]), *hi = json_get(v, pairs[k][1]);
        if (present(lo) && present(hi) && lo->num > hi->num)
            problem(c, "stats", "rule_violation", "%s is greater than %s", pairs[k][0], pairs[k][1]);
    }
}

/* Returns the boxes' dimensionality (0 when there are no boxes), or -1 when invalid. */
static int check_bbox(vctx *c, const json_value *v) {
    static const char *const known[] = {"bboxes", "scores", "labels", NULL};
    if (!check_type(c, "bbox", v, JSON_OBJECT, "an object or null")) return -1;
    check_members(c, "bbox", v, known);
    if (!require(c, "bbox", v, "bboxes")) return -1;
    const json_value *boxes = json_get(v, "bboxes"), *x;
    int ok = check_type(c, "bbox.bboxes", boxes, JSON_ARRAY, "an array");
    for (size_t i = 0; ok && i < boxes->n; i++) {
        char bloc[LOC];
        join_index(bloc, "bbox.bboxes", i);
        const json_value *box = boxes->items[i];
        if (!check_type(c, bloc, box, JSON_ARRAY, "an array")) {
            ok = 0;
            continue;
        }
        for (size_t a = 0; a < box->n; a++) {
            char aloc[LOC];
            join_index(aloc, bloc, a);
            const json_value *pair = box->items[a];
            if (!check_type(c, aloc, pair, JSON_ARRAY, "an array")) {
                ok = 0;
            } else if (pair->n != 2) {
                problem(c, aloc, "out_of_range", "must have exactly 2 entries (min, max)");
                ok = 0;
            } else {
                char nloc[LOC];
                join_index(nloc, aloc, 0);
                int good = check_number(c, nloc, pair->items[0]);
                join_index(nloc, aloc, 1);
                good &= check_number(c, nloc, pair->items[1]);
                ok &= good;
            }
        }
    }
    if (present(x = json_get(v, "scores"))) ok &= check_number_list(c, "bbox.scores", x, 0);
    if (present(x = json_get(v, "labels")) && check_type(c, "bbox.labels", x, JSON_ARRAY, "an array or null")) {
        for (size_t k = 0; k < x->n; k++) {
            char sub[LOC];
            join_index(sub, "bbox.labels", k);
            const json_value *label = x->items[k];
            if (label->type != JSON_STRING && !(label->type == JSON_NUMBER && label->is_integer_literal)) {
                problem(c, sub, "wrong_type", "expected a string or an integer");
                ok = 0;
            }
        }
    } else if (present(x)) {
        ok = 0;
    }
    if (!ok) return -1;
    size_t dims = boxes->n ? boxes->items[0]->n : 0;
    for (size_t i = 0; i < boxes->n; i++) {
        const json_value *box = boxes->items[i];
        if (box->n != dims) {
            problem(c, "bbox", "rule_violation", "boxes have different dimensionalities");
            return -1;
        }
        if (box->n == 0) {
            problem(c, "bbox", "rule_violation", "a box must have at least one axis");
            return -1;
        }
        for (size_t a = 0; a < box->n; a++) {
            if (box->items[a]->items[0]->num > box->items[a]->items[1]->num) {
                problem(c, "bbox", "rule_violation", "box %zu, axis %zu: min is greater than max", i, a);
                return -1;
            }
        }
    }
    static const char *const aligned[] = {"scores", "labels"};
    for (size_t k = 0; k < 2; k++) {
        x = json_get(v, aligned[k]);
        if (present(x) && x->n != boxes->n) {
            problem(c, "bbox", "rule_violation", "%s must have one entry per box", aligned[k]);
            return -1;
        }
    }
    return (int)dims;
}

/* scaling (spec 5.10, since 1.1): returns 1 when its members are acceptable. */
static int check_scaling(vctx *c, const json_value *v) {
    static const char *const known[] = {"slope", "intercept", "raw_dtype", "stored", NULL};
    static const char *const stored[] = {"physical", "raw", NULL};
    if (!check_type(c, "scaling", v, JSON_OBJECT, "an object or null")) return 0;
    check_members(c, "scaling", v, known);
    int ok = require(c, "scaling", v, "slope") & require(c, "scaling", v, "intercept") &
             require(c, "scaling", v, "raw_dtype") & require(c, "scaling", v, "stored");
    const json_value *x;
    if ((x = json_get(v, "slope")) != NULL) {
        if (!check_number(c, "scaling.slope", x)) {
            ok = 0;
        } else if (x->num == 0) {
            problem(c, "scaling.slope", "rule_violation", "must not be 0 (raw values could not be recovered)");
            ok = 0;
        }
    }
    if ((x = json_get(v, "intercept")) != NULL) ok &= check_number(c, "scaling.intercept", x);
    if ((x = json_get(v, "raw_dtype")) != NULL) ok &= check_enum(c, "scaling.raw_dtype", x, DTYPES);
    if ((x = json_get(v, "stored")) != NULL) ok &= check_enum(c, "scaling.stored", x, stored);
    return ok;
}

/* class_locations (spec 5.11, since 1.1): returns the largest index + 1 and the largest count
 * (in *need), or -1 when the member is not acceptable. */
static int check_class_locations(vctx *c, const json_value *v, double *need) {
    static const char *const known[] = {"classes", NULL};
    static const char *const entry_known[] = {"label", "count", "indices", NULL};
    *need = 0;
    if (!check_type(c, "class_locations", v, JSON_OBJECT, "an object or null")) return -1;
    check_members(c, "class_locations", v, known);
    if (!require(c, "class_locations", v, "classes")) return -1;
    const json_value *classes = json_get(v, "classes");
    if (!check_type(c, "class_locations.classes", classes, JSON_ARRAY, "an array")) return -1;
    int ok = 1;
    for (size_t i = 0; i < classes->n; i++) {
        char loc[LOC], sub[LOC];
        const json_value *e = classes->items[i];
        join_index(loc, "class_locations.classes", i);
        if (!check_type(c, loc, e, JSON_OBJECT, "an object")) { ok = 0; continue; }
        check_members(c, loc, e, entry_known);
        int e_ok = require(c, loc, e, "label") & require(c, loc, e, "count") & require(c, loc, e, "indices");
        const json_value *label = json_get(e, "label"), *count = json_get(e, "count"), *idx = json_get(e, "indices");
        join(sub, loc, "label");
        if (label) e_ok &= check_int(c, sub, label, -INFINITY, INFINITY);
        join(sub, loc, "count");
        if (count) e_ok &= check_int(c, sub, count, 1, INFINITY);
        join(sub, loc, "indices");
        if (idx) e_ok &= check_int_list(c, sub, idx, 0, INFINITY, 0, 10000);
        if (!e_ok) { ok = 0; continue; }
        if (idx->n > count->num) {
            problem(c, loc, "rule_violation", "more indices than count");
            ok = 0;
        }
        for (size_t k = 1; k < idx->n; k++) {
            if (json_num_cmp(idx->items[k], idx->items[k - 1]) <= 0) {
                problem(c, loc, "rule_violation", "indices must be strictly increasing");
                ok = 0;
                break;
            }
        }
        for (size_t j = 0; j < i; j++) {
            const json_value *other = json_get(classes->items[j], "label");
            if (other && other->type == label->type && json_num_cmp(other, label) == 0) {
                problem(c, "class_locations", "rule_violation", "a label appears more than once");
                ok = 0;
            }
        }
        if (idx->n && idx->items[idx->n - 1]->num + 1 > *need) *need = idx->items[idx->n - 1]->num + 1;
        if (count->num > *need) *need = count->num;
    }
    return ok ? 1 : -1;
}

/* The number of spatial voxels of a valid array: the product of its spatial axes (spec 6.1). */
static double spatial_voxels(const json_value *array, const json_value *spatial) {
    static const char *const names[] = {"spatial", "spatial_x", "spatial_y", "spatial_z"};
    const json_value *shape = json_get(array, "shape");
    const json_value *labels = spatial ? json_get(spatial, "axis_labels") : NULL;
    double voxels = 1;
    if (present(labels) && labels->n != shape->n) return INFINITY; /* rule 2 of 5.9 already failed */
    for (size_t k = 0; k < shape->n; k++) {
        int is_spatial = !present(labels);
        for (size_t m = 0; !is_spatial && m < 4; m++) is_spatial = json_str_is(labels->items[k], names[m]);
        if (is_spatial) voxels *= shape->items[k]->num;
    }
    return voxels;
}

mla_code mla_header_validate(const json_value *header, int lenient, mla_error *err) {
    static const char *const known[] = {"schema_version", "writer", "array", "layout", "integrity", "spatial", "stats",
                                        "bbox", "is_seg", "scaling", "class_locations", "source", "extra", NULL};
    vctx c = {lenient, 0, ""};
    /* Numbers must be finite everywhere, in source/extra and in ignored unknown members too
     * (spec 5.1); the per-member checks below then skip them. */
    check_finite_tree(&c, "", header);
    check_members(&c, "", header, known);
    const json_value *x = json_get(header, "schema_version");
    /* schema_version: "1." followed by 0 or a number without leading zero */
    if (x->len < 3 || memcmp(x->str, "1.", 2) != 0 || (x->str[2] == '0' && x->len > 3))
        problem(&c, "schema_version", "invalid_value", "must match ^1\\.(0|[1-9][0-9]*)$");

    const json_value *array = json_get(header, "array"), *layout = json_get(header, "layout");
    int array_ok = !present(array) || check_array(&c, array);
    int layout_ok = !present(layout) || check_layout(&c, layout);
    if (present(x = json_get(header, "writer"))) check_writer(&c, x);
    const json_value *scaling = json_get(header, "scaling");
    if (present(scaling) && check_scaling(&c, scaling) && array_ok && present(array)) {
        /* spec 5.10: raw values stored means the array has the raw type */
        const json_value *kept = json_get(scaling, "stored"), *raw = json_get(scaling, "raw_dtype");
        const json_value *dtype = json_get(array, "dtype");
        if (json_str_is(kept, "raw") &&
            (raw->len != dtype->len || memcmp(raw->str, dtype->str, raw->len) != 0))
            problem(&c, "scaling", "rule_violation", "stored is 'raw' but array.dtype differs from raw_dtype");
    }
    if (present(x = json_get(header, "integrity"))) check_integrity(&c, x);
    if (present(x = json_get(header, "stats"))) check_stats(&c, x);
    int box_dims = 0;
    if (present(x = json_get(header, "bbox"))) box_dims = check_bbox(&c, x);
    if ((x = json_get(header, "is_seg")) != NULL && x->type != JSON_NULL && x->type != JSON_TRUE && x->type != JSON_FALSE)
        problem(&c, "is_seg", "wrong_type", "expected a boolean or null");
    static const char *const free_form[] = {"source", "extra"};
    for (size_t k = 0; k < 2; k++) {
        if ((x = json_get(header, free_form[k])) == NULL) continue;
        check_type(&c, free_form[k], x, JSON_OBJECT, "an object");
    }
    spatial_info sp;
    int spatial_ok = check_spatial(&c, json_get(header, "spatial"), &sp);

    /* Rules across namespaces (spec 6). */
    if (array_ok && layout_ok && spatial_ok && box_dims >= 0)
        check_cross(&c, present(array) ? array : NULL, present(layout) ? layout : NULL, &sp, box_dims);
    double need = 0;
    const json_value *locations = json_get(header, "class_locations");
    /* spec 5.9 rule 11: indices and counts within the spatial voxels */
    if (present(locations) && check_class_locations(&c, locations, &need) > 0 && array_ok && spatial_ok &&
        present(array) && need > spatial_voxels(array, sp.spatial))
        problem(&c, "class_locations", "rule_violation", "an index or count exceeds the spatial voxels");

    if (c.count == 0) return MLA_OK;
    return mla_fail(err, MLA_HEADER_INVALID, "invalid header (%d problem%s): %s", c.count, c.count == 1 ? "" : "s", c.text);
}
