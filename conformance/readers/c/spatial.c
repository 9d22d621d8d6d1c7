/* The `spatial` namespace: lengths, orthonormal direction, affine; and cross-namespace rules.
 *
 * Geometry (spec section 6): with n spatial axes, world = origin + D diag(spacing) index,
 * and affine = [[D diag(spacing), origin], [0 ... 0 1]].
 */
#include "spatial.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ORTHONORMAL_TOL 1e-4
#define AFFINE_TOL 1e-6

static const char *const SPATIAL_LABELS[] = {"spatial", "spatial_x", "spatial_y", "spatial_z", NULL};

static int is_spatial_label(const json_value *label) {
    for (size_t k = 0; SPATIAL_LABELS[k] != NULL; k++) {
        if (json_str_is(label, SPATIAL_LABELS[k])) return 1;
    }
    return 0;
}

/* Number of spatial axes the fields describe: labels decide, else the first list given. */
static long spatial_ndim(const json_value *s) {
    const json_value *labels = json_get(s, "axis_labels");
    if (present(labels)) {
        long n = 0;
        for (size_t k = 0; k < labels->n; k++) n += is_spatial_label(labels->items[k]);
        return n;
    }
    static const char *const lists[] = {"spacing", "origin", "direction", "shape"};
    for (size_t k = 0; k < 4; k++) {
        const json_value *v = json_get(s, lists[k]);
        if (present(v)) return (long)v->n;
    }
    const json_value *affine = json_get(s, "affine");
    if (present(affine)) return (long)affine->n - 1;
    return -1;
}

static int check_square(vctx *c, const char *loc, const json_value *m) {
    if (!check_matrix(c, loc, m)) return 0;
    int ok = m->n > 0;
    for (size_t k = 0; k < m->n; k++) ok &= m->items[k]->n == m->n;
    if (!ok) problem(c, loc, "rule_violation", "must be a non-empty square matrix");
    return ok;
}

static double at(const json_value *m, size_t i, size_t j) { return m->items[i]->items[j]->num; }

/* Determinant by Gaussian elimination with partial pivoting (a is n x n, row-major, destroyed). */
#define SINGULAR_TOL 1e-9

static double determinant(double *a, size_t n) {
    double det = 1.0;
    for (size_t col = 0; col < n; col++) {
        size_t pivot = col;
        for (size_t r = col + 1; r < n; r++) {
            if (fabs(a[r * n + col]) > fabs(a[pivot * n + col])) pivot = r;
        }
        if (a[pivot * n + col] == 0.0) return 0.0;
        if (pivot != col) {
            for (size_t k = 0; k < n; k++) {
                double t = a[col * n + k];
                a[col * n + k] = a[pivot * n + k];
                a[pivot * n + k] = t;
            }
            det = -det;
        }
        det *= a[col * n + col];
        for (size_t r = col + 1; r < n; r++) {
            double f = a[r * n + col] / a[col * n + col];
            for (size_t k = col; k < n; k++) a[r * n + k] -= f * a[col * n + k];
        }
    }
    return det;
}

static void check_direction(vctx *c, const json_value *d, size_t n) {
    if (d->n != n) {
        problem(c, "spatial.direction", "rule_violation", "is %zux%zu but there are %zu spatial axes", d->n, d->n, n);
        return;
    }
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            double dot = 0.0; /* (D^T D)[i][j] = column i . column j */
            for (size_t k = 0; k < n; k++) dot += at(d, k, i) * at(d, k, j);
            double e = fabs(dot - (i == j ? 1.0 : 0.0));
            if (!(e <= worst)) worst = e;
        }
    }
    if (!(worst <= ORTHONORMAL_TOL))
        problem(c, "spatial.direction", "rule_violation", "is not orthonormal (max |D^T D - I| = %.3g > 1e-4)", worst);
}

static void check_affine(vctx *c, const json_value *s, const json_value *a, size_t n) {
    if (a->n != n + 1) {
        problem(c, "spatial.affine", "rule_violation", "must be %zux%zu for %zu spatial axes", n + 1, n + 1, n);
        return;
    }
    for (size_t j = 0; j <= n; j++) {
        if (at(a, n, j) != (j == n ? 1.0 : 0.0)) {
            problem(c, "spatial.affine", "rule_violation", "the last row must be [0, ..., 0, 1]");
            return;
        }
    }
    /* spec 6.5: columns (axis vectors) scaled to length 1; singular when one is 0 or |det| <= 1e-9 */
    double *m = malloc((n ? n * n : 1) * sizeof *m);
    if (m == NULL) return;
    int zero_axis = 0;
    for (size_t j = 0; j < n; j++) {
        double peak = 0.0, sum = 0.0;
        for (size_t i = 0; i < n; i++) peak = fmax(peak, fabs(at(a, i, j)));
        if (!(peak > 0.0)) {
            zero_axis = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) sum += (at(a, i, j) / peak) * (at(a, i, j) / peak); /* no under/overflow */
        double norm = sqrt(sum);
        for (size_t i = 0; i < n; i++) m[i * n + j] = at(a, i, j) / peak / norm;
    }
    double det = zero_axis ? 0.0 : determinant(m, n);
    free(m);
    if (!(fabs(det) > SINGULAR_TOL)) {
        problem(c, "spatial.affine", "rule_violation", "is singular");
        return;
    }
    const json_value *spacing = json_get(s, "spacing"), *origin = json_get(s, "origin"), *dir = json_get(s, "direction");
    if (!present(spacing) && !present(origin) && !present(dir)) return;
    /* implied = [[D diag(spacing), origin], [0, 1]]; missing parts: unit spacing, zero origin, identity */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j <= n; j++) {
            double want;
            if (j == n) {
                want = present(origin) ? origin->items[i]->num : 0.0;
            } else {
                double d = present(dir) ? at(dir, i, j) : (i == j ? 1.0 : 0.0);
                want = d * (present(spacing) ? spacing->items[j]->num : 1.0);
            }
            if (!(fabs(at(a, i, j) - want) <= AFFINE_TOL + AFFINE_TOL * fabs(want))) {
                problem(c, "spatial.affine", "rule_violation", "disagrees with spacing/origin/direction");
                return;
            }
        }
    }
}

int check_spatial(vctx *c, const json_value *s, spatial_info *out) {
    static const char *const known[] = {"spacing", "origin", "direction", "affine", "shape",
                                        "axis_labels", "axis_units", "coord_system", NULL};
    out->spatial = NULL;
    out->n_spatial = -1;
    if (s == NULL) return 1;
    if (!check_type(c, "spatial", s, JSON_OBJECT, "an object")) return 0;
    check_members(c, "spatial", s, known);
    int ok = 1;
    const json_value *x;
    if (present(x = json_get(s, "spacing"))) ok &= check_number_list(c, "spatial.spacing", x, 1);
    if (present(x = json_get(s, "origin"))) ok &= check_number_list(c, "spatial.origin", x, 0);
    if (present(x = json_get(s, "direction"))) ok &= check_square(c, "spatial.direction", x);
    if (present(x = json_get(s, "affine"))) ok &= check_square(c, "spatial.affine", x);
    if (present(x = json_get(s, "shape"))) ok &= check_int_list(c, "spatial.shape", x, 0, INFINITY, 0, SIZE_MAX);
    if (present(x = json_get(s, "axis_labels"))) ok &= check_string_list(c, "spatial.axis_labels", x, 1, 64);
    if (present(x = json_get(s, "axis_units"))) ok &= check_string_list(c, "spatial.axis_units", x, 0, 64);
    if (present(x = json_get(s, "coord_system"))) ok &= check_string(c, "spatial.coord_system", x, 1, 64);
    if (!ok) return 0;

    out->spatial = s;
    long n = out->n_spatial = spatial_ndim(s);
    if (n < 0) return 1;
    int before = c->count;
    static const char *const lists[] = {"spacing", "origin", "shape"};
    for (size_t k = 0; k < 3; k++) {
        x = json_get(s, lists[k]);
        if (present(x) && x->n != (size_t)n) {
            char loc[LOC];
            join(loc, "spatial", lists[k]);
            problem(c, loc, "rule_violation", "has %zu entries but there are %ld spatial axes", x->n, n);
        }
    }
    const json_value *labels = json_get(s, "axis_labels"), *units = json_get(s, "axis_units");
    if (present(labels) && present(units) && labels->n != units->n)
        problem(c, "spatial.axis_units", "rule_violation", "must have one entry per axis label");
    if (c->count != before) return 0;
    if (present(x = json_get(s, "direction"))) check_direction(c, x, (size_t)n);
    if (c->count != before) return 0;
    if (present(x = json_get(s, "affine"))) check_affine(c, s, x, (size_t)n);
    return c->count == before;
}

void check_cross(vctx *c, const json_value *array, const json_value *layout, const spatial_info *sp, int box_dims) {
    const json_value *s = sp->spatial;
    long n_spatial = sp->n_spatial;
    if (array != NULL) {
        const json_value *shape = json_get(array, "shape");
        size_t ndim = shape->n;
        const json_value *labels = json_get(s, "axis_labels"), *units = json_get(s, "axis_units");
        if (present(labels) && labels->n != ndim) {
            problem(c, "spatial.axis_labels", "rule_violation", "has %zu entries for a %zu-d array", labels->n, ndim);
            return;
        }
        if (present(units) && units->n != ndim) {
            problem(c, "spatial.axis_units", "rule_violation", "has %zu entries for a %zu-d array", units->n, ndim);
            return;
        }
        if (!present(labels) && n_spatial >= 0 && (size_t)n_spatial != ndim) {
            problem(c, "spatial", "rule_violation",
                    "spatial fields describe %ld axes but the array has %zu; set axis_labels", n_spatial, ndim);
            return;
        }
        /* the spatial axes: those labelled spatial, or all axes without labels */
        const json_value *sshape = json_get(s, "shape");
        n_spatial = 0;
        for (size_t k = 0; k < ndim; k++) {
            if (present(labels) && !is_spatial_label(labels->items[k])) continue;
            if (present(sshape) && ((size_t)n_spatial >= sshape->n || sshape->items[n_spatial]->num != shape->items[k]->num)) {
                problem(c, "spatial.shape", "rule_violation", "disagrees with the spatial axes of array.shape");
                return;
            }
            n_spatial++;
        }
        if (present(sshape) && sshape->n != (size_t)n_spatial) {
            problem(c, "spatial.shape", "rule_violation", "disagrees with the spatial axes of array.shape");
            return;
        }
        if (layout != NULL && json_get(layout, "chunk_size")->n != ndim) {
            problem(c, "layout.chunk_size", "rule_violation", "must have one entry per array axis");
            return;
        }
    } else if (layout != NULL) {
        problem(c, "layout", "rule_violation", "layout is only allowed together with an array");
        return;
    }
    if (box_dims > 0 && n_spatial >= 0 && box_dims != n_spatial)
        problem(c, "bbox", "rule_violation", "boxes have %d axes but the image has %ld spatial axes", box_dims, n_spatial);
}
