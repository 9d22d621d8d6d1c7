/* Validation of the `spatial` namespace and of the rules that tie namespaces together. */
#ifndef MLA_SPATIAL_H
#define MLA_SPATIAL_H

#include "json.h"
#include "vcheck.h"

typedef struct {
    const json_value *spatial; /* the spatial object (NULL when absent) */
    long n_spatial;            /* spatial axes the spatial fields describe, -1 when nothing tells */
} spatial_info;

/* Check `spatial` (absent is allowed; null is not). Returns 1 when it is valid. */
int check_spatial(vctx *c, const json_value *spatial, spatial_info *out);

/* Rules across namespaces: array vs spatial axes, layout vs array, bbox vs spatial axes.
 * array and layout are NULL when absent or null; box_dims is 0 when there are no boxes. */
void check_cross(vctx *c, const json_value *array, const json_value *layout, const spatial_info *sp, int box_dims);

#endif
