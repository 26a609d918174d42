/*
 * cuda_runtime.h (emulation): the part of the CUDA runtime the CUDA backend uses, on the CPU,
 * for `make cuda-emu` (README.md beside this file). Kernels run on the calling thread as one
 * block of one thread: every kernel of src/cuda/ loops over its elements with a grid-stride
 * loop, so one thread visits them all, in order. Device memory is host memory, filled with
 * NaN bytes when allocated, and every copy, memset and matrix product checks its range
 * against the allocation it lands in.
 */
#ifndef CAPS_CUDA_EMU_RUNTIME_H
#define CAPS_CUDA_EMU_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
       cudaErrorLaunchFailure = 4 };
typedef struct emu_stream *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct dim3 {
    unsigned x, y, z;
};

namespace emu {
extern dim3 blockIdx_, threadIdx_, blockDim_, gridDim_;
extern int launch_error;
/* Aborts with a message when [p, p + bytes) is not inside one allocation. */
void check_range(const void *p, size_t bytes, const char *what);

/* kernel<<<grid, block, shared, stream>>>(args) becomes Launch(grid, block, shared,
 * stream).run(kernel, args): the launch's shape is checked, then the kernel runs once. */
struct Launch {
    Launch(size_t grid, size_t block, size_t shared, cudaStream_t) {
        if (grid == 0 || grid > 2147483647u || block == 0 || block > 1024 || shared > 48 * 1024)
            launch_error = cudaErrorLaunchFailure;
    }
    template <class F, class... A> void run(F kernel, A... args) {
        gridDim_ = blockDim_ = {1, 1, 1};
        blockIdx_ = threadIdx_ = {0, 0, 0};
        kernel(args...);
    }
};
} // namespace emu

#define blockIdx emu::blockIdx_
#define threadIdx emu::threadIdx_
#define blockDim emu::blockDim_
#define gridDim emu::gridDim_
#define __global__
#define __device__

cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamCreate(cudaStream_t *);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

#endif
