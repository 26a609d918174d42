/*
 * gemm.c: single-precision matrix product, row-major.
 *
 * With BLAS=dnnl (the default) gemm is oneDNN's dnnl_sgemm, with BLAS=openblas it is
 * cblas_sgemm (measured on a 2-core AVX-512 machine with OPENBLAS_CORETYPE=Haswell, the
 * PrimaryCaps products ran at 510 GFLOP/s with oneDNN, 250 with OpenBLAS's AVX2 kernel,
 * 350 with BLIS told its architecture, 83 with BLIS left to detect it; BENCHMARKS.md has
 * the table). With BLAS=none it is a blocked
 * loop below: B is packed into a panel that stays in cache, rows of C are split across
 * threads (each thread owns its rows, so no two threads write the same element), and the
 * innermost loop runs over contiguous columns so the compiler vectorises it.
 *
 * Dimension letters: M rows of C, N columns of C, K the summed dimension.
 */
#include "gemm.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

#if defined(CAPS_USE_DNNL)
#include <dnnl.h>
#elif defined(CAPS_USE_CBLAS)
/* cblas.h pulls in <complex.h>, whose macro I would clash with the dimension letter I used
 * across the library: only this file includes it. */
#include <cblas.h>
#endif

/* Element (i, k) of op(A) and (k, j) of op(B). */
#define OP_A(i, k) (trans_a ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OP_B(k, j) (trans_b ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

void gemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += OP_A(i, k) * OP_B(k, j);
            float *c = &C[(size_t)i * ldc + j];
            *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
        }
    }
}

#if defined(CAPS_USE_DNNL)

/* oneDNN's dnnl_sgemm is row-major, like every matrix here, and picks its kernel from the
 * processor at run time (AVX-512 where there is one), whatever OPENBLAS_CORETYPE says. */
const char *gemm_backend(void) {
    static char name[128];
    const dnnl_version_t *v = dnnl_version();
    static const char *const isa[] = {"default", "sse41", "avx", "avx2", "avx2_vnni",
                                      "avx512_core", "avx512_core_vnni", "avx512_core_bf16"};
    int k = 0;
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: k = 1; break;
    case dnnl_cpu_isa_avx: k = 2; break;
    case dnnl_cpu_isa_avx2: k = 3; break;
    case dnnl_cpu_isa_avx2_vnni: k = 4; break;
    case dnnl_cpu_isa_avx512_core: k = 5; break;
    case dnnl_cpu_isa_avx512_core_vnni: k = 6; break;
    case dnnl_cpu_isa_avx512_core_bf16: k = 7; break;
    default: k = 0; break;
    }
    snprintf(name, sizeof name, "onednn %d.%d.%d (%s kernels)", v->major, v->minor, v->patch,
             isa[k]);
    return name;
}

/* oneDNN runs on OpenMP threads: omp_set_num_threads (caps_set_threads) sets them. */
void gemm_set_threads(int threads) { (void)threads; }

void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda,
                                 B, ldb, beta, C, ldc);
    CAPS_ASSERT(s == dnnl_success);
}

#elif defined(CAPS_USE_CBLAS)

const char *gemm_backend(void) {
    static char name[128];
    snprintf(name, sizeof name, "openblas (%s kernel)", openblas_get_corename());
    return name;
}

void gemm_set_threads(int threads) { openblas_set_num_threads(threads); }

void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

#else

const char *gemm_backend(void) { return "builtin"; }

void gemm_set_threads(int threads) { (void)threads; }

/* Panel sizes: a KC x NC panel of B (256 KiB) stays in L2 while every row of C uses it. */
#define GEMM_KC 128
#define GEMM_NC 512
#define GEMM_MR 4 /* rows of C updated together, so each loaded row of B feeds 4 FMAs */

void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    /* One panel per calling thread; gemm itself is only called from one thread at a time. */
    static _Thread_local float panel[GEMM_KC * GEMM_NC];
    if (M == 0 || N == 0) return;
    for (int i = 0; i < M; i++) {
        float *c = &C[(size_t)i * ldc];
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    }
    for (int j0 = 0; j0 < N; j0 += GEMM_NC) {
        int nc = N - j0 < GEMM_NC ? N - j0 : GEMM_NC;
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            /* panel[k][j] = alpha * op(B)[k0 + k][j0 + j]: contiguous rows for the kernel. */
            for (int k = 0; k < kc; k++)
                for (int j = 0; j < nc; j++) panel[k * nc + j] = alpha * OP_B(k0 + k, j0 + j);
            const float *bp = panel;
#pragma omp parallel for schedule(static)
            for (int i0 = 0; i0 < M; i0 += GEMM_MR) {
                int mr = M - i0 < GEMM_MR ? M - i0 : GEMM_MR;
                if (mr == GEMM_MR) {
                    float *c0 = &C[(size_t)i0 * ldc + j0], *c1 = c0 + ldc, *c2 = c1 + ldc,
                          *c3 = c2 + ldc;
                    for (int k = 0; k < kc; k++) {
                        float a0 = OP_A(i0, k0 + k), a1 = OP_A(i0 + 1, k0 + k);
                        float a2 = OP_A(i0 + 2, k0 + k), a3 = OP_A(i0 + 3, k0 + k);
                        const float *b = &bp[k * nc];
                        for (int j = 0; j < nc; j++) {
                            c0[j] += a0 * b[j];
                            c1[j] += a1 * b[j];
                            c2[j] += a2 * b[j];
                            c3[j] += a3 * b[j];
                        }
                    }
                } else {
                    for (int i = i0; i < i0 + mr; i++) {
                        float *c = &C[(size_t)i * ldc + j0];
                        for (int k = 0; k < kc; k++) {
                            float a = OP_A(i, k0 + k);
                            const float *b = &bp[k * nc];
                            for (int j = 0; j < nc; j++) c[j] += a * b[j];
                        }
                    }
                }
            }
        }
    }
}

#endif

/* ------------------------------------------------------------------------ benchmark */

const char *caps_gemm_backend(void) { return gemm_backend(); }

double caps_gemm_gflops(int n, double min_seconds) {
    float *a = caps_alloc((size_t)n * n, sizeof(float)), *b = caps_alloc((size_t)n * n, sizeof(float));
    float *c = caps_alloc((size_t)n * n, sizeof(float));
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    for (size_t k = 0; k < (size_t)n * n; k++) {
        a[k] = (float)(k % 7) * 0.25f - 0.75f;
        b[k] = (float)(k % 5) * 0.25f - 0.5f;
    }
    double best = 1e30, spent = 0.0;
    for (int rep = 0; rep < 3 || spent < min_seconds; rep++) {
        double t0 = caps_seconds();
        gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double s = caps_seconds() - t0;
        best = s < best ? s : best;
        spent += s;
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}
