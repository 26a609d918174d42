/*
 * gemm.h: the one matrix product every layer goes through.
 */
#ifndef CAPS_GEMM_H
#define CAPS_GEMM_H

/* C[M][N] = alpha * op(A)[M][K] op(B)[K][N] + beta * C, all row-major; op(X) = X^T when
 * trans_x != 0 (then X is stored [K][M] or [N][K]). beta = 0 overwrites C, even NaN in it.
 * Called from outside OpenMP parallel regions only: it may use every thread itself. */
void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* The plain triple loop that gemm must equal (tests/test_gemm.c holds them equal). */
void gemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Threads the BLAS may use (the builtin product uses OpenMP's count). */
void gemm_set_threads(int threads);

/* Which implementation gemm is ("openblas" or "builtin"). */
const char *gemm_backend(void);

#endif /* CAPS_GEMM_H */
