/* 3-D connected components by breadth-first search with an explicit queue (no recursion, so any
 * volume size is safe); labels are 32-bit component numbers, 0 = background or not yet seen. */
#include "postproc.h"

#include <stdlib.h>
#include <string.h>

samda_status samdad_mask_clean(uint8_t *mask, size_t n_slices, size_t rows, size_t cols, size_t min_voxels,
                               bool largest_only, samdad_mask_stats *stats, samda_error *err)
{
    samdad_mask_stats st = {0};
    if (stats) *stats = st;
    if (!mask || !n_slices || !rows || !cols) return samda_fail(err, SAMDA_EINVAL, "cleaning a mask: empty volume");
    if (rows > SIZE_MAX / cols || rows * cols > SIZE_MAX / n_slices || rows * cols * n_slices > UINT32_MAX - 1)
        return samda_fail(err, SAMDA_EINVAL, "cleaning a mask: %zu x %zu x %zu voxels is too large", n_slices, rows, cols);
    const size_t plane = rows * cols, n = plane * n_slices;
    uint32_t *label = calloc(n, sizeof *label);
    uint32_t *queue = malloc(n * sizeof *queue);
    size_t *sizes = NULL, cap = 0;
    if (!label || !queue) {
        free(label);
        free(queue);
        return samda_fail(err, SAMDA_ENOMEM, "cleaning a mask of %zu voxels: out of memory", n);
    }
    uint32_t ncomp = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mask[i]) continue;
        st.voxels_before++;
        if (label[i]) continue;
        if (ncomp + 1 >= cap) {
            size_t nc = cap ? cap * 2 : 64;
            size_t *ns = realloc(sizes, nc * sizeof *ns);
            if (!ns) {
                free(label);
                free(queue);
                free(sizes);
                return samda_fail(err, SAMDA_ENOMEM, "cleaning a mask: out of memory for components");
            }
            sizes = ns;
            cap = nc;
        }
        const uint32_t id = ++ncomp;
        size_t head = 0, tail = 0, count = 0;
        label[i] = id;
        queue[tail++] = (uint32_t)i;
        while (head < tail) {
            const size_t v = queue[head++];
            count++;
            const size_t s = v / plane, r = (v % plane) / cols, c = v % cols;
            size_t nb[6];
            int k = 0;
            if (c > 0) nb[k++] = v - 1;
            if (c + 1 < cols) nb[k++] = v + 1;
            if (r > 0) nb[k++] = v - cols;
            if (r + 1 < rows) nb[k++] = v + cols;
            if (s > 0) nb[k++] = v - plane;
            if (s + 1 < n_slices) nb[k++] = v + plane;
            for (int j = 0; j < k; j++)
                if (mask[nb[j]] && !label[nb[j]]) {
                    label[nb[j]] = id;
                    queue[tail++] = (uint32_t)nb[j];
                }
        }
        sizes[id] = count;
    }
    uint32_t best = 0;
    for (uint32_t id = 1; id <= ncomp; id++)
        if (!best || sizes[id] > sizes[best]) best = id;
    st.components = ncomp;
    st.largest = best ? sizes[best] : 0;
    for (uint32_t id = 1; id <= ncomp; id++) {
        bool drop = sizes[id] < min_voxels || (largest_only && id != best);
        if (drop) {
            st.removed++;
            sizes[id] = 0; /* marks the component for removal below */
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!mask[i]) continue;
        mask[i] = sizes[label[i]] ? 1 : 0;
        st.voxels_after += mask[i];
    }
    if (st.largest < min_voxels) st.largest = 0;
    free(label);
    free(queue);
    free(sizes);
    if (stats) *stats = st;
    return SAMDA_OK;
}
