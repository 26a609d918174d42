/*
 * test_adam.c: Adam against the update written out by hand for two steps.
 */
#include "layers.h"
#include "test.h"

TEST(two_steps_by_hand) {
    float p = 0.5f, m = 0.0f, v = 0.0f;
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double P = 0.5, M = 0.0, V = 0.0;
    const float grads[2] = {0.2f, -0.1f};
    for (int t = 1; t <= 2; t++) {
        float g = grads[t - 1];
        adam_update(&p, &m, &v, &g, 1, lr, b1, b2, eps, t);
        M = 0.9 * M + 0.1 * g;
        V = 0.999 * V + 0.001 * (double)g * g;
        double mhat = M / (1 - pow(0.9, t)), vhat = V / (1 - pow(0.999, t));
        P -= 0.01 * mhat / (sqrt(vhat) + 1e-8);
        EXPECT(test_close(p, P, 1e-6, 1e-9), "step %d: param %.9g, expected %.9g", t, p, P);
    }
    /* The first step moves by about lr whatever the gradient's scale. */
    EXPECT(test_close(0.5 - 0.01, 0.5 - 0.01 * 0.2 / 0.2, 1e-9, 0), "sanity");
}

int main(void) {
    RUN(two_steps_by_hand);
    return TEST_SUMMARY();
}
