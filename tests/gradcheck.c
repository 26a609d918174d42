/*
 * gradcheck.c: see gradcheck.h.
 */
#include "gradcheck.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Steps tried per element: eps, eps/4, eps/16. A smaller step crosses fewer kinks. */
#define GC_TRIES 3

gc_result gradcheck(const char *name, float *x, size_t n, const float *analytic, gc_loss_fn f,
                    void *ctx, double eps, double rtol, double atol) {
    gc_result res = {0, 0, 0, 0, 0.0};
    double max_ana = 0.0;
    for (size_t k = 0; k < n; k++) max_ana = fmax(max_ana, fabs(analytic[k]));
    /* Float32 rounding makes the loss itself uncertain by a few ulps of its size; divided
     * by the step, that is the resolution of the difference quotient. */
    uint64_t sig0;
    double noise = 4.0 * fabs(f(ctx, &sig0)) * FLT_EPSILON;
    for (size_t k = 0; k < n; k++) {
        float saved = x[k];
        double num = 0.0, step = eps;
        int ok = 0;
        for (int t = 0; t < GC_TRIES && !ok; t++, step /= 4.0) {
            uint64_t sig_plus = 0, sig_minus = 0;
            x[k] = saved + (float)step;
            double lp = f(ctx, &sig_plus);
            double h_plus = (double)x[k] - saved; /* the step float actually took */
            x[k] = saved - (float)step;
            double lm = f(ctx, &sig_minus);
            double h_minus = saved - (double)x[k];
            x[k] = saved;
            if (sig_plus == sig_minus) {
                num = (lp - lm) / (h_plus + h_minus);
                ok = 1;
            }
        }
        if (!ok) {
            res.skipped++;
            continue;
        }
        step *= 4.0; /* the step that was used */
        double floor = fmax(atol * max_ana, noise / step);
        double ana = analytic[k];
        double diff = fabs(num - ana);
        double rel = diff / (fabs(num) + fabs(ana) + floor + 1e-30);
        if (rel > res.max_rel_err) res.max_rel_err = rel;
        res.checked++;
        if (fmax(fabs(num), fabs(ana)) > 10.0 * floor) res.resolved++;
        if (!(diff <= rtol * fmax(fabs(num), fabs(ana)) + floor)) {
            if (res.failed < 5)
                fprintf(stderr, "    gradcheck %s[%zu]: numeric %.6g, analytic %.6g (step %.2g)\n",
                        name, k, num, ana, step);
            res.failed++;
        }
    }
    return res;
}

double gradcheck_along(float *x, size_t n, const float *analytic, gc_loss_fn f, void *ctx,
                       double step) {
    double norm = 0.0;
    for (size_t k = 0; k < n; k++) norm += (double)analytic[k] * analytic[k];
    norm = sqrt(norm);
    uint64_t sig0;
    double noise = 4.0 * fabs(f(ctx, &sig0)) * FLT_EPSILON;
    if (norm == 0.0 || norm * step < 100.0 * noise) return -2.0;
    float *saved = malloc(n * sizeof(float));
    if (!saved) abort();
    memcpy(saved, x, n * sizeof(float));
    double result = -1.0;
    for (int t = 0; t < GC_TRIES; t++, step /= 4.0) {
        if (norm * step < 100.0 * noise) break;
        uint64_t sig_plus = 0, sig_minus = 0;
        for (size_t k = 0; k < n; k++) x[k] = saved[k] + (float)(step * analytic[k] / norm);
        double lp = f(ctx, &sig_plus);
        for (size_t k = 0; k < n; k++) x[k] = saved[k] - (float)(step * analytic[k] / norm);
        double lm = f(ctx, &sig_minus);
        memcpy(x, saved, n * sizeof(float));
        if (sig_plus != sig_minus) continue;
        double num = (lp - lm) / (2.0 * step);
        result = fabs(num - norm) / norm;
        break;
    }
    free(saved);
    return result;
}

float *gc_vec(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

void gc_fill(float *x, size_t n, float lo, float hi, caps_rng *r) {
    for (size_t k = 0; k < n; k++) x[k] = lo + (hi - lo) * caps_rng_uniform(r);
}

double gc_dot(const float *out, const float *r, size_t n) {
    double acc = 0.0;
    for (size_t k = 0; k < n; k++) acc += (double)out[k] * r[k];
    return acc;
}

uint64_t gc_mix(uint64_t sig, uint64_t flag) {
    /* FNV-1a step: order-dependent, so two different kink patterns rarely collide. */
    return (sig ^ (flag + 0x9e3779b97f4a7c15ULL)) * 0x100000001b3ULL;
}

double gc_layer_loss(void *ctx, uint64_t *signature) {
    gc_layer *l = ctx;
    l->forward(l);
    *signature = l->kinks ? l->kinks(l) : 0;
    return gc_dot(l->out, l->r, l->n_out);
}
