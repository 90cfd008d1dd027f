// model/metrics.cpp: agreement of a predicted binary mask with its ground truth on one slice:
// Dice, the 95th-percentile symmetric Hausdorff distance between the two boundaries, and the
// area (volume) difference. Torch-free; used by samda_adapter_evaluate (train.cpp).
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

struct Px {
    int r, c;
};

/* Boundary pixels: in the mask with a 4-neighbour outside it or outside the image. */
std::vector<Px> boundary(const uint8_t *m, int rows, int cols)
{
    std::vector<Px> b;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const size_t i = (size_t)r * (size_t)cols + (size_t)c;
            if (!m[i])
                continue;
            const bool edge = r == 0 || c == 0 || r == rows - 1 || c == cols - 1 || !m[i - 1] || !m[i + 1] ||
                              !m[i - (size_t)cols] || !m[i + (size_t)cols];
            if (edge)
                b.push_back({r, c});
        }
    return b;
}

/* Distance from each point of a to the nearest point of b (spacing sr x sc), by rows of b sorted
 * by row so that rows farther than the best found so far are skipped. */
std::vector<double> directed(const std::vector<Px> &a, const std::vector<Px> &b, double sr, double sc)
{
    std::vector<Px> bs(b);
    std::sort(bs.begin(), bs.end(), [](const Px &x, const Px &y) { return x.r < y.r || (x.r == y.r && x.c < y.c); });
    std::vector<double> d;
    d.reserve(a.size());
    for (const Px &p : a) {
        // start at the first point of b in p's row and walk outwards both ways
        const size_t mid = (size_t)(std::lower_bound(bs.begin(), bs.end(), p,
                                                     [](const Px &x, const Px &y) { return x.r < y.r; }) -
                                    bs.begin());
        double best = INFINITY;
        for (size_t k = mid; k < bs.size(); k++) {
            const double dr = (bs[k].r - p.r) * sr;
            if (dr * dr >= best)
                break;
            const double dc = (bs[k].c - p.c) * sc;
            best = std::min(best, dr * dr + dc * dc);
        }
        for (size_t k = mid; k-- > 0;) {
            const double dr = (p.r - bs[k].r) * sr;
            if (dr * dr >= best)
                break;
            const double dc = (bs[k].c - p.c) * sc;
            best = std::min(best, dr * dr + dc * dc);
        }
        d.push_back(std::sqrt(best));
    }
    return d;
}

/* q-th percentile (0..100) with linear interpolation between order statistics (numpy's default). */
double percentile(std::vector<double> v, double q)
{
    std::sort(v.begin(), v.end());
    const double pos = q / 100.0 * (double)(v.size() - 1);
    const size_t lo = (size_t)std::floor(pos), hi = std::min(v.size() - 1, lo + 1);
    return v[lo] + (pos - (double)lo) * (v[hi] - v[lo]);
}

}  // namespace

extern "C" samda_status samda_mask_metrics_compute(const uint8_t *pred, const uint8_t *gt, int rows, int cols,
                                                   const double *spacing, samda_mask_metrics *out, samda_error *err)
{
    if (!pred || !gt || !out || rows < 1 || cols < 1)
        return samda_fail(err, SAMDA_EINVAL, "mask metrics: NULL mask or output, or an empty image");
    double sr = 1, sc = 1;
    if (spacing) {
        sr = spacing[0], sc = spacing[1];
        if (!(sr > 0 && sc > 0 && std::isfinite(sr) && std::isfinite(sc)))
            return samda_fail(err, SAMDA_EINVAL, "mask metrics: pixel spacing %g x %g mm is not positive", sr, sc);
    }
    std::memset(out, 0, sizeof *out);
    const size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++) {
        const bool p = pred[i] != 0, g = gt[i] != 0;
        out->n_pred += p, out->n_gt += g, out->n_inter += p && g;
    }
    const int64_t s = out->n_pred + out->n_gt;
    out->dice = s ? 2.0 * (double)out->n_inter / (double)s : 1.0;
    out->volume_diff_pct = out->n_gt ? 100.0 * (double)(out->n_pred - out->n_gt) / (double)out->n_gt : NAN;
    out->hd95 = NAN;
    if (out->n_pred && out->n_gt) {
        std::vector<uint8_t> pb(n), gb(n);
        for (size_t i = 0; i < n; i++)
            pb[i] = pred[i] != 0, gb[i] = gt[i] != 0;
        const std::vector<Px> bp = boundary(pb.data(), rows, cols), bg = boundary(gb.data(), rows, cols);
        out->hd95 = std::max(percentile(directed(bp, bg, sr, sc), 95.0), percentile(directed(bg, bp, sr, sc), 95.0));
    }
    return SAMDA_OK;
}
