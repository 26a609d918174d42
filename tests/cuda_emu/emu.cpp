/*
 * emu.cpp: the CPU stand-in for the CUDA runtime and cuBLAS that cuda_runtime.h and
 * cublas_v2.h declare (README.md beside this file says what it can and cannot find).
 */
#include <map>

#include "cublas_v2.h"

namespace emu {
dim3 blockIdx_, threadIdx_, blockDim_, gridDim_;
int launch_error;
static std::map<const char *, size_t> allocations; /* start -> bytes */

void check_range(const void *p, size_t bytes, const char *what) {
    const char *c = (const char *)p;
    auto it = allocations.upper_bound(c);
    if (it == allocations.begin() || c + bytes > (--it)->first + it->second) {
        fprintf(stderr, "cuda emulation: %s: [%p, +%zu) outside every device allocation\n", what,
                p, bytes);
        abort();
    }
}
} // namespace emu

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes); /* NaN: uninitialised device memory must not read as zeros */
    emu::allocations[(const char *)*p] = bytes;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (p) {
        emu::allocations.erase((const char *)p);
        free(p);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes && (!dst || !src)) return cudaErrorInvalidValue;
    if (kind != cudaMemcpyDeviceToHost) emu::check_range(dst, bytes, "cudaMemcpy destination");
    if (kind != cudaMemcpyHostToDevice) emu::check_range(src, bytes, "cudaMemcpy source");
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) {
    emu::check_range(p, bytes, "cudaMemset");
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = (cudaStream_t)0x1;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::launch_error;
    emu::launch_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated error" : "no error"; }

/* CAPS_EMU_NO_DEVICE=1: a machine without a GPU. */
cudaError_t cudaGetDeviceCount(int *n) {
    *n = getenv("CAPS_EMU_NO_DEVICE") ? 0 : 1;
    return cudaSuccess;
}

/* The one emulated device. */
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }

/* An H200's memory, so that the out-of-memory test asks for more than there is. */
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = (size_t)140 << 30;
    *total_bytes = (size_t)141 << 30;
    return cudaSuccess;
}

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)0x1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s) {
    return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS";
}

static int at_least_1(int v) { return v > 1 ? v : 1; }

/* Column-major C[m][n] = alpha op(A) op(B) + beta C, after cuBLAS's argument checks; the
 * operands' extents are checked against their allocations. Sums in double. */
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
    if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? at_least_1(m) : at_least_1(k)) ||
        ldb < (tb == CUBLAS_OP_N ? at_least_1(k) : at_least_1(n)) || ldc < at_least_1(m)) {
        fprintf(stderr, "cuda emulation: cublasSgemm: bad sizes (m %d n %d k %d lda %d ldb %d "
                        "ldc %d)\n", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m && n) emu::check_range(C, ((size_t)(n - 1) * ldc + m) * 4, "cublasSgemm C");
    if (m && k)
        emu::check_range(A, (ta == CUBLAS_OP_N ? (size_t)(k - 1) * lda + m
                                               : (size_t)(m - 1) * lda + k) * 4, "cublasSgemm A");
    if (n && k)
        emu::check_range(B, (tb == CUBLAS_OP_N ? (size_t)(n - 1) * ldb + k
                                               : (size_t)(k - 1) * ldb + n) * 4, "cublasSgemm B");
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0.0;
            for (int l = 0; l < k; l++) {
                float a = ta == CUBLAS_OP_N ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
                float b = tb == CUBLAS_OP_N ? B[l + (size_t)j * ldb] : B[j + (size_t)l * ldb];
                acc += (double)a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = (float)(*alpha * acc + (*beta != 0.0f ? *beta * *c : 0.0f));
        }
    return CUBLAS_STATUS_SUCCESS;
}
