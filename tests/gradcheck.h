/*
 * gradcheck.h: finite-difference checks of backward passes.
 *
 * A check perturbs every element of one input or parameter x[k] by +-eps, evaluates the
 * scalar loss (sum(out * r) for a random upstream r, accumulated in double) and compares
 * the central difference (L(x+eps) - L(x-eps)) / 2 eps with the analytic gradient[k].
 * The loss function also reports a signature of its kinks (which ReLUs are on, which
 * margin hinges are active); when the signatures at x+eps and x-eps differ, the
 * perturbation crossed a kink and the difference quotient means nothing there.
 */
#ifndef CAPS_GRADCHECK_H
#define CAPS_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "capsnet.h"

/* Evaluates the loss at the current inputs; sets *signature (0 when there are no kinks). */
typedef double (*gc_loss_fn)(void *ctx, uint64_t *signature);

typedef struct {
    size_t checked, skipped, failed;
    size_t resolved;    /* checked elements whose gradient stands 10x above the noise floor;
                           GRADCHECK wants a tenth of them: zeros are legitimate (a ReLU
                           that is off, a masked capsule) but all-zero checks prove nothing */
    double max_rel_err; /* the largest |num - ana| / (|num| + |ana| + floor) seen */
} gc_result;

/* Passes element k when |num - ana| <= rtol * max(|num|, |ana|) + floor, where floor is the
 * larger of atol * max_k |ana_k| and the loss's float32 rounding (4 ulps of |L|) divided
 * by the step: below it the difference quotient cannot resolve anything. When the step
 * crosses a kink, the check retries with eps/4 and eps/16 before skipping the element.
 * Prints the first few failures with name and index. */
gc_result gradcheck(const char *name, float *x, size_t n, const float *analytic, gc_loss_fn f,
                    void *ctx, double eps, double rtol, double atol);

/* The directional derivative along the analytic gradient itself: moves every element of x
 * by step * analytic / |analytic| and compares the central difference with |analytic|.
 * Where single elements are too small to stand out of float32 rounding, their sum along
 * the gradient still does. Returns the relative error, or -1 when every step tried
 * crossed a kink, or -2 when |analytic| * step is below the loss's rounding. */
double gradcheck_along(float *x, size_t n, const float *analytic, gc_loss_fn f, void *ctx,
                       double step);

/* A zeroed array of n floats; aborts when out of memory (tests only). */
float *gc_vec(size_t n);
/* Fills x[n] with uniform values in [lo, hi). */
void gc_fill(float *x, size_t n, float lo, float hi, caps_rng *r);
/* sum_k out[k] * r[k] in double. */
double gc_dot(const float *out, const float *r, size_t n);
/* Mixes the bits of flag into a running kink signature. */
uint64_t gc_mix(uint64_t sig, uint64_t flag);

/* The common case: a layer whose forward fills out[n_out] from its inputs. A test embeds
 * gc_layer as the first member of its own context and points forward at its layer. */
typedef struct gc_layer {
    void (*forward)(struct gc_layer *self);
    uint64_t (*kinks)(struct gc_layer *self); /* NULL for smooth layers */
    float *out;
    const float *r; /* upstream gradient, [n_out] */
    size_t n_out;
} gc_layer;

/* gc_loss_fn for a gc_layer: runs forward, returns sum(out * r). */
double gc_layer_loss(void *ctx, uint64_t *signature);

/* Runs gradcheck and records the outcome as a test expectation (see test.h). */
#define GRADCHECK(name, x, n, analytic, ctx, eps, rtol, atol)                                  \
    do {                                                                                       \
        gc_result gr_ = gradcheck(name, x, n, analytic, gc_layer_loss, ctx, eps, rtol, atol); \
        EXPECT(gr_.failed == 0 && gr_.checked * 10 >= (size_t)(n) * 9 && gr_.resolved * 10 >= (size_t)(n), \
               "%s: %zu of %zu elements failed, %zu skipped, %zu resolved (max rel err %.3g)", \
               name, gr_.failed, (size_t)(n), gr_.skipped, gr_.resolved, gr_.max_rel_err);     \
    } while (0)
#endif /* CAPS_GRADCHECK_H */
