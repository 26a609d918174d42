/*
 * test_primary_caps.c: the channels -> capsules reshape. Capsule i = type*G*G + y*G + x,
 * dimension d = channel - D*type, as PyTorch's view(B, T, D, G, G).permute(0, 1, 3, 4, 2),
 * from the convolution output laid out [G][B][G][T*D] (channels last, conv2d.c).
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 2, T = 3, D = 4, G = 3, N = B * T * D * G * G };

typedef struct {
    gc_layer base;
    float *conv;
} reshape_ctx;

static void reshape_fwd(gc_layer *l) {
    primary_caps_forward(l->out, ((reshape_ctx *)l)->conv, B, T, D, G);
}

TEST(capsule_order_matches_pytorch_permute) {
    float conv[N], u[N];
    for (int k = 0; k < N; k++) conv[k] = (float)k;
    primary_caps_forward(u, conv, B, T, D, G);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < T * D; ch++)
            for (int y = 0; y < G; y++)
                for (int x = 0; x < G; x++) {
                    int t = ch / D, d = ch - D * t, i = t * G * G + y * G + x;
                    float want = conv[((y * B + b) * G + x) * T * D + ch];
                    bad += u[(b * T * G * G + i) * D + d] != want;
                }
    EXPECT(bad == 0, "%d elements out of place", bad);
}

TEST(backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 30, 0);
    reshape_ctx c = {{reshape_fwd, NULL, gc_vec(N), gc_vec(N), N}, gc_vec(N)};
    gc_fill(c.conv, N, -1, 1, &r);
    gc_fill((float *)c.base.r, N, -1, 1, &r);
    float *dconv = gc_vec(N);
    primary_caps_backward(dconv, c.base.r, B, T, D, G);
    GRADCHECK("primary reshape", c.conv, N, dconv, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.conv), free(dconv);
}

int main(void) {
    RUN(capsule_order_matches_pytorch_permute);
    RUN(backward_matches_finite_differences);
    return TEST_SUMMARY();
}
