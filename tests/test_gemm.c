/*
 * test_gemm.c: the matrix product every layer uses (BLAS or builtin) equals the plain
 * triple loop, for every transpose combination, odd sizes, leading dimensions and beta.
 */
#include <stdlib.h>

#include "gemm.h"
#include "gradcheck.h"
#include "test.h"

static void check(int ta, int tb, int M, int N, int K, float alpha, float beta) {
    caps_rng r;
    caps_rng_seed(&r, (uint64_t)(M * 131 + N * 17 + K), (uint64_t)(ta * 2 + tb));
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = gc_vec(na), *Bm = gc_vec(nb), *C = gc_vec(nc), *ref = gc_vec(nc);
    gc_fill(A, na, -1, 1, &r);
    gc_fill(Bm, nb, -1, 1, &r);
    gc_fill(C, nc, -1, 1, &r);
    for (size_t k = 0; k < nc; k++) ref[k] = C[k];
    gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C, ldc);
    gemm_naive(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, ref, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            bad += !test_close(C[(size_t)i * ldc + j], ref[(size_t)i * ldc + j], 1e-4,
                               1e-5 * sqrt((double)K));
    /* Padding between rows (j >= N) must be untouched. */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) bad += C[(size_t)i * ldc + j] != ref[(size_t)i * ldc + j];
    EXPECT(bad == 0, "%s: ta=%d tb=%d %dx%dx%d alpha %g beta %g: %d elements differ",
           gemm_backend(), ta, tb, M, N, K, alpha, beta, bad);
    free(A), free(Bm), free(C), free(ref);
}

TEST(all_transposes_and_shapes) {
    const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 33, 65}, {64, 130, 300}, {257, 9, 40}};
    for (int s = 0; s < 5; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
                check(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, 1.0f);
            }
}

/* beta = 0 overwrites C even where it held NaN (BLAS semantics). */
TEST(beta_zero_ignores_nan) {
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {NAN, NAN, NAN, NAN};
    gemm(0, 0, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    EXPECT(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4, "C = %g %g %g %g", C[0], C[1], C[2],
           C[3]);
}

int main(void) {
    RUN(all_transposes_and_shapes);
    RUN(beta_zero_ignores_nan);
    return TEST_SUMMARY();
}
