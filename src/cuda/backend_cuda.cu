/*
 * backend_cuda.cu: the CUDA backend: every step of the layer sequence of capsnet.c
 * (backend.h) on an NVIDIA GPU, with the kernels of layers.cu and routing_dynamic.cu and
 * cuBLAS for the matrix products (the convolutions as im2col + one product, the decoder).
 *
 * Memory: the four parameter arenas, then one allocation for every activation, gradient and
 * scratch buffer of a batch of max_batch, carved up by a size table (as backend_cpu.c),
 * sized once at create, plain cudaMalloc. If it does not fit, create says how much it needs
 * and the largest batch that would fit.
 *
 * Errors: every CUDA and cuBLAS call is checked. A step cannot return an error (the CPU's
 * cannot fail), so the first failure is kept, names the call, the kernel and the line, and
 * the steps after it do nothing; capsnet_status reports it (caps_train_epoch asks after
 * every step).
 *
 * Precision: fp32 throughout. With caps_options.tf32, cuBLAS may use TF32 tensor cores
 * for the matrix products (the convolutions and the decoder): faster, about 1e-3 relative.
 * Every sum runs in a fixed order (kernels.h), and cuBLAS's products are deterministic on
 * one GPU model: the same seed gives the same run.
 *
 * Layouts (kernels.h): x NCHW; a1, prim channels last; capsules as on the CPU.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "backend.h"
#include "kernels.h"
#include "util.h"

/* A sticky error: the first failure and where it happened. */
struct cuda_error {
    int failed;
    caps_error err;
};

struct caps_backend_state {
    caps_dims d;
    int max_batch;
    size_t num_params, sizes[CAPS_NUM_PARAM_TENSORS], offs[CAPS_NUM_PARAM_TENSORS];
    cudaStream_t stream;
    cublasHandle_t blas;
    float *arena[4]; /* caps_arena order: parameters, gradients, Adam m, Adam v */
    void *acts;      /* the one allocation below */

    /* forward (B = max_batch) */
    float *x;      /* [B][C][S][S] */
    float *col1;   /* [B*S1*S1][C*K1*K1] */
    float *a1;     /* [B][S1][S1][C1] after ReLU */
    float *col2;   /* [B*G*G][C1*K2*K2]; backward reuses it for its gradient */
    float *prim;   /* [B][G][G][T*D] */
    float *u_pre, *u, *u_n2; /* [B][I][D] x2, [B][I] */
    float *u_hat;  /* [B][I][J][E] */
    float *rc;     /* [R][B][I][J] couplings */
    float *rs, *rv;/* [R][B][J][E] */
    float *rn2;    /* [R][B][J] */
    float *logits; /* [B][I][J] */
    float *lengths;/* [B][J] */
    float *v_in;   /* [B][J][E] capsules the program gives the decoder */
    float *masked, *h1, *h2, *recon; /* [B][J*E], [B][H1], [B][H2], [B][P] */
    float *target;                   /* [B][P] the reconstruction target when not x */
    int own_target;                  /* recon_target gave one: target, not x */
    float *margin, *sse;             /* [B] */
    int *labels, *labels2, *cls, *idx, *dx, *dy; /* [B] */
    /* backward */
    float *da1, *dprim, *du_pre, *du, *du_hat, *dv, *dlengths; /* as their activations */
    float *dmasked, *dh1, *dh2, *drecon;
    float *G, *dc;      /* [B][I][J] routing scratch */
    float *dvr, *dsr;   /* [B][J][E] */
    float *ones;        /* [B * max(S1*S1, G*G)] ones: bias gradients as products */

    /* results in host memory */
    float *h_lengths, *h_v, *h_recon;

    /* Data sets kept on the GPU: two slots (a training and a test set), each known by the
     * size and CRC-32 of its images, so that a set freed and another loaded in its place is
     * never taken for it. */
    struct {
        uint8_t *images;
        size_t bytes;
        uint32_t crc;
    } kept[2];
    int current, next_slot;

    struct cuda_error e;
};

/* ------------------------------------------------------------------------ errors */

static int fail_at(caps_backend_state *s, const char *what, const char *why, const char *file,
                   int line) {
    if (!s->e.failed) {
        s->e.failed = 1;
        caps_fail(&s->e.err, CAPS_ERR_DEVICE, "cuda: %s failed (%s) at %s:%d", what, why, file,
                  line);
        if (strstr(what, "Synchronize") || strstr(what, "cudaMemcpy"))
            caps_hint(&s->e.err, "a kernel queued before this call failed: run with "
                                 "CUDA_LAUNCH_BLOCKING=1 to name it; the last model file saved "
                                 "stays good");
        else
            caps_hint(&s->e.err, "the GPU state is lost; the last model file saved stays good");
    }
    return 0;
}

/* Runs a CUDA call or a kernel launcher unless a step already failed; 1 when all is well. */
#define CU(s, what, call)                                                                   \
    ((s)->e.failed ? 0                                                                      \
                   : cu_ok((s), (call), (what), __FILE__, __LINE__))
#define BLAS(s, what, call)                                                                 \
    ((s)->e.failed ? 0                                                                      \
                   : blas_ok((s), (call), (what), __FILE__, __LINE__))

static int cu_ok(caps_backend_state *s, cudaError_t e, const char *what, const char *file,
                 int line) {
    return e == cudaSuccess ? 1 : fail_at(s, what, cudaGetErrorString(e), file, line);
}

static int blas_ok(caps_backend_state *s, cublasStatus_t e, const char *what, const char *file,
                   int line) {
    return e == CUBLAS_STATUS_SUCCESS ? 1 : fail_at(s, what, cublasGetStatusString(e), file, line);
}

static void cuda_sync(caps_backend_state *s) {
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
}

/* Waits for the steps asked for, so that a kernel that failed while running is seen. */
static int cuda_status(const caps_backend_state *cs, caps_error *err) {
    caps_backend_state *s = (caps_backend_state *)cs; /* the error, if any, is kept */
    CU(s, "a kernel before cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    if (!s->e.failed) return CAPS_OK;
    if (err) *err = s->e.err;
    return s->e.err.code;
}

/* ------------------------------------------------------------------------ matrix products */

/* C[M][N] = alpha op(A) op(B) + beta C, row-major, as gemm.h's gemm. cuBLAS is column-major:
 * a row-major X is the column-major X^T, so this is C^T = op(B)^T op(A)^T. */
static void gemm(caps_backend_state *s, const char *what, int ta, int tb, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    BLAS(s, what,
         cublasSgemm(s->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                     M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

/* out [rows][O] = in [rows][I] . w[O][I]^T + bias (linear_forward). */
static void linear(caps_backend_state *s, const char *what, float *out, const float *in,
                   const float *w, const float *bias, int rows, int I, int O, int relu) {
    gemm(s, what, 0, 1, rows, O, I, 1.0f, in, I, w, I, 0.0f, out, O);
    CU(s, what, cu_add_bias(out, bias, (size_t)rows, O, relu, s->stream));
}

/* linear_backward: dw += dout^T in; dbias += sum over rows of dout (ones^T dout);
 * din = dout w (written), unless din is NULL. */
static void linear_back(caps_backend_state *s, const char *what, float *din, float *dw,
                        float *dbias, const float *dout, const float *in, const float *w,
                        int rows, int I, int O) {
    gemm(s, what, 1, 0, O, I, rows, 1.0f, dout, O, in, I, 1.0f, dw, I);
    gemm(s, what, 0, 0, 1, O, rows, 1.0f, s->ones, rows, dout, O, 1.0f, dbias, O);
    if (din) gemm(s, what, 0, 0, rows, I, O, 1.0f, dout, O, w, I, 0.0f, din, I);
}

/* ------------------------------------------------------------------------ create / free */

static float *param(caps_backend_state *s, caps_arena which, int tensor) {
    return s->arena[which] + s->offs[tensor];
}

/* The buffers of the activation allocation: floats per image and per model. */
typedef struct {
    void **ptr;
    size_t per_image, fixed;
} buffer;

#define ALIGN_FLOATS 64 /* 256 bytes between buffers */

static size_t round_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static int buffer_table(buffer *t, caps_backend_state *s) {
    const caps_dims *d = &s->d;
    size_t S1S1 = (size_t)d->S1 * d->S1, GG = (size_t)d->G * d->G, I = d->I, J = d->J, E = d->E;
    size_t R = d->R, JE = J * E, rows = S1S1 > GG ? S1S1 : GG;
    int n = 0;
#define BUF(p, per, fix) t[n++] = (buffer){(void **)&s->p, (size_t)(per), (size_t)(fix)}
    BUF(x, d->P, 0);
    BUF(col1, S1S1 * d->C * d->K1 * d->K1, 0);
    BUF(a1, S1S1 * d->C1, 0);
    BUF(col2, GG * d->C1 * d->K2 * d->K2, 0);
    BUF(prim, GG * d->TD, 0);
    BUF(u_pre, I * d->D, 0);
    BUF(u, I * d->D, 0);
    BUF(u_n2, I, 0);
    BUF(u_hat, I * JE, 0);
    BUF(rc, R * I * J, 0);
    BUF(rs, R * JE, 0);
    BUF(rv, R * JE, 0);
    BUF(rn2, R * J, 0);
    BUF(logits, I * J, 0);
    BUF(lengths, J, 0);
    BUF(v_in, JE, 0);
    BUF(masked, JE, 0);
    BUF(h1, d->H1, 0);
    BUF(h2, d->H2, 0);
    BUF(recon, d->P, 0);
    BUF(target, d->P, 0);
    BUF(margin, 1, 0);
    BUF(sse, 1, 0);
    BUF(labels, 1, 0); /* ints: 4 bytes, as floats */
    BUF(labels2, 1, 0);
    BUF(cls, 1, 0);
    BUF(idx, 1, 0);
    BUF(dx, 1, 0);
    BUF(dy, 1, 0);
    BUF(da1, S1S1 * d->C1, 0);
    BUF(dprim, GG * d->TD, 0);
    BUF(du_pre, I * d->D, 0);
    BUF(du, I * d->D, 0);
    BUF(du_hat, I * JE, 0);
    BUF(dv, JE, 0);
    BUF(dlengths, J, 0);
    BUF(dmasked, JE, 0);
    BUF(dh1, d->H1, 0);
    BUF(dh2, d->H2, 0);
    BUF(drecon, d->P, 0);
    BUF(G, I * J, 0);
    BUF(dc, I * J, 0);
    BUF(dvr, JE, 0);
    BUF(dsr, JE, 0);
    BUF(ones, rows, 0);
#undef BUF
    return n;
}

#define MAX_BUFFERS 64

/* Bytes of the activation allocation for batches of B. */
static size_t acts_bytes(const buffer *t, int n, size_t B) {
    size_t floats = 0;
    for (int k = 0; k < n; k++) floats += round_up(t[k].per_image * B + t[k].fixed);
    return floats * sizeof(float);
}

static void cuda_destroy(caps_backend_state *s) {
    if (!s) return;
    for (int k = 0; k < 4; k++) cudaFree(s->arena[k]);
    cudaFree(s->acts);
    for (int k = 0; k < 2; k++) cudaFree(s->kept[k].images);
    if (s->blas) cublasDestroy(s->blas);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(s->h_lengths);
    free(s->h_v);
    free(s->h_recon);
    free(s);
}

__global__ static void k_fill(float *p, float v, size_t n) {
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x)
        p[k] = v;
}

static int cuda_create(caps_backend_state **out, const caps_dims *d, const size_t *sizes,
                       int max_batch, const caps_options *opt, caps_error *err) {
    *out = NULL;
    int devices = 0;
    cudaError_t ce = cudaGetDeviceCount(&devices);
    if (ce != cudaSuccess || devices == 0) {
        caps_fail(err, CAPS_ERR_ARG, "cuda: no CUDA device (cudaGetDeviceCount: %s)",
                  ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
        caps_hint(err, "this machine has no NVIDIA GPU or no working driver; use --device cpu");
        return CAPS_ERR_ARG;
    }
    /* CAPS_CUDA_DEVICE picks the GPU, 0 by default; `capsnet train` under mpirun sets it to
     * the process's rank on its machine: one GPU per process. */
    const char *pick = getenv("CAPS_CUDA_DEVICE");
    int device = pick ? atoi(pick) : 0;
    if (device < 0 || device >= devices)
        return caps_fail(err, CAPS_ERR_ARG, "cuda: CAPS_CUDA_DEVICE=%s, but this machine has %d "
                         "device%s (expected 0..%d)", pick, devices, devices == 1 ? "" : "s",
                         devices - 1);
    if ((ce = cudaSetDevice(device)) != cudaSuccess)
        return caps_fail(err, CAPS_ERR_ARG, "cuda: cudaSetDevice(%d): %s", device,
                         cudaGetErrorString(ce));
    /* Row counts of the products and capsule counts are ints (cuBLAS takes int sizes). */
    size_t widest = (size_t)d->S1 * d->S1;
    if ((size_t)d->G * d->G > widest) widest = (size_t)d->G * d->G;
    if ((size_t)d->I > widest) widest = (size_t)d->I;
    if ((size_t)max_batch * widest > (size_t)INT_MAX)
        return caps_fail(err, CAPS_ERR_ARG, "cuda: batch %d too large for this network's shapes "
                         "(expected at most %zu)", max_batch, (size_t)INT_MAX / widest);
    caps_backend_state *s = (caps_backend_state *)calloc(1, sizeof *s);
    if (!s) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory allocating the model");
    s->d = *d;
    s->max_batch = max_batch;
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) {
        s->sizes[k] = sizes[k];
        s->offs[k] = s->num_params;
        s->num_params += sizes[k];
    }
    buffer table[MAX_BUFFERS];
    int nbuf = buffer_table(table, s);
    CAPS_ASSERT(nbuf <= MAX_BUFFERS);
    size_t need = acts_bytes(table, nbuf, (size_t)max_batch),
           params = 4 * s->num_params * sizeof(float), free_b = 0, total_b = 0;
    int rc = CAPS_OK;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && need + params > free_b) {
        /* The largest batch whose buffers fit beside the parameters, with 5% to spare. */
        size_t per = acts_bytes(table, nbuf, 1000) / 1000 + 1, room = free_b / 20 * 19;
        long long fits = room > params ? (long long)((room - params) / per) : 0;
        caps_fail(err, CAPS_ERR_MEMORY,
                  "cuda: out of GPU memory for batch %d (expected %.2f GB, got %.2f GB free "
                  "of %.2f GB)", max_batch, (double)(need + params) / 1e9, (double)free_b / 1e9,
                  (double)total_b / 1e9);
        if (fits > 0)
            caps_hint(err, "the largest batch that fits is about %lld (--batch)", fits);
        else
            caps_hint(err, "even one image does not fit next to the parameters");
        cuda_destroy(s);
        return CAPS_ERR_MEMORY;
    }
    s->h_lengths = (float *)malloc((size_t)max_batch * d->J * sizeof(float));
    s->h_v = (float *)malloc((size_t)max_batch * d->J * d->E * sizeof(float));
    s->h_recon = (float *)malloc((size_t)max_batch * d->P * sizeof(float));
    if (!s->h_lengths || !s->h_v || !s->h_recon) rc = caps_fail(err, CAPS_ERR_MEMORY, "out of memory");
    /* A failed cudaMalloc leaves its error as the runtime's last one: cleared here, or the
     * next check of a launch would report it. */
    for (int k = 0; !rc && k < 4; k++)
        if (cudaMalloc((void **)&s->arena[k], s->num_params * sizeof(float)) != cudaSuccess) {
            s->arena[k] = NULL;
            cudaGetLastError();
            rc = caps_fail(err, CAPS_ERR_MEMORY, "cuda: out of GPU memory for the parameters "
                           "(%.1f MB)", (double)params / 1e6);
        }
    if (!rc && cudaMalloc(&s->acts, need) != cudaSuccess) {
        s->acts = NULL;
        cudaGetLastError();
        rc = caps_fail(err, CAPS_ERR_MEMORY, "cuda: out of GPU memory for batch %d (expected "
                       "%.2f GB)", max_batch, (double)need / 1e9);
    }
    if (!rc && (cudaStreamCreate(&s->stream) != cudaSuccess ||
                cublasCreate(&s->blas) != CUBLAS_STATUS_SUCCESS ||
                cublasSetStream(s->blas, s->stream) != CUBLAS_STATUS_SUCCESS ||
                cublasSetMathMode(s->blas, opt->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                     : CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS))
        rc = caps_fail(err, CAPS_ERR_DEVICE, "cuda: cannot create a stream and a cuBLAS handle");
    if (rc) {
        cuda_destroy(s);
        return rc;
    }
    float *p = (float *)s->acts;
    for (int k = 0; k < nbuf; k++) {
        *table[k].ptr = p;
        p += round_up(table[k].per_image * (size_t)max_batch + table[k].fixed);
    }
    for (int k = 0; k < 4; k++)
        CU(s, "cudaMemset", cudaMemsetAsync(s->arena[k], 0, s->num_params * sizeof(float), s->stream));
    size_t nones = (size_t)max_batch * (d->S1 * d->S1 > d->G * d->G ? d->S1 * d->S1 : d->G * d->G);
    k_fill<<<256, 256, 0, s->stream>>>(s->ones, 1.0f, nones);
    CU(s, "k_fill", cudaGetLastError());
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    if (s->e.failed) {
        if (err) *err = s->e.err;
        cuda_destroy(s);
        return CAPS_ERR_DEVICE;
    }
    *out = s;
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ arenas */

static int cuda_read(const caps_backend_state *cs, caps_arena which, size_t offset, size_t count,
                     float *out, caps_error *err) {
    caps_backend_state *s = (caps_backend_state *)cs; /* the error, if any, is kept */
    CU(s, "cudaMemcpy (read)",
       cudaMemcpyAsync(out, s->arena[which] + offset, count * sizeof(float),
                       cudaMemcpyDeviceToHost, s->stream));
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    return cuda_status(s, err);
}

static int cuda_write(caps_backend_state *s, caps_arena which, size_t offset, size_t count,
                      const float *in, caps_error *err) {
    CU(s, "cudaMemcpy (write)",
       cudaMemcpyAsync(s->arena[which] + offset, in, count * sizeof(float),
                       cudaMemcpyHostToDevice, s->stream));
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    return cuda_status(s, err);
}

/* The arena in device memory, for a CUDA-aware MPI's sums (train.c); the stream has run up to
 * here, so the gradients asked for are there. */
static float *cuda_arena_data(caps_backend_state *s, caps_arena which, int *on_device) {
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    *on_device = 1;
    return s->arena[which];
}

static void cuda_zero(caps_backend_state *s, caps_arena which) {
    CU(s, "cudaMemset",
       cudaMemsetAsync(s->arena[which], 0, s->num_params * sizeof(float), s->stream));
}

/* adam.c's update; the bias corrections in double, as there. */
static void cuda_adam_step(caps_backend_state *s, const caps_adam *hp, float lr, int64_t t) {
    double bc1 = 1.0 - pow((double)hp->beta1, (double)t);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)hp->beta2, (double)t));
    float step = (float)(lr / bc1);
    CU(s, "k_adam",
       cu_adam_update(s->arena[CAPS_PARAMS], s->arena[CAPS_ADAM_M], s->arena[CAPS_ADAM_V],
                      s->arena[CAPS_GRADS], s->num_params, step, bc2_sqrt, hp->beta1, hp->beta2,
                      hp->eps, s->stream));
}

/* ------------------------------------------------------------------------ forward */

static void upload(caps_backend_state *s, void *dst, const void *src, size_t bytes) {
    CU(s, "cudaMemcpy (upload)",
       cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->stream));
}

static void cuda_input(caps_backend_state *s, const float *x, int B) {
    upload(s, s->x, x, (size_t)B * s->d.P * sizeof(float));
}

static int cuda_data_upload(caps_backend_state *s, const caps_dataset *ds, caps_error *err) {
    size_t bytes = (size_t)ds->count * ds->channels * ds->rows * ds->cols;
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        size_t n = bytes - off < ((size_t)1 << 30) ? bytes - off : (size_t)1 << 30;
        crc = crc32(crc, ds->images + off, (uInt)n);
    }
    for (int k = 0; k < 2; k++)
        if (s->kept[k].images && s->kept[k].bytes == bytes && s->kept[k].crc == (uint32_t)crc) {
            s->current = k;
            s->next_slot = 1 - k; /* a third set replaces the other one, not this */
            return cuda_status(s, err);
        }
    int k = s->next_slot;
    s->next_slot = 1 - k;
    cudaFree(s->kept[k].images);
    s->kept[k].images = NULL;
    if (cudaMalloc((void **)&s->kept[k].images, bytes ? bytes : 1) != cudaSuccess) {
        s->kept[k].images = NULL;
        cudaGetLastError(); /* an allocation failure is not sticky */
        return caps_fail(err, CAPS_ERR_MEMORY, "cuda: out of GPU memory for the data set "
                         "(%.1f MB)", (double)bytes / 1e6);
    }
    CU(s, "cudaMemcpy (data)",
       cudaMemcpy(s->kept[k].images, ds->images, bytes, cudaMemcpyHostToDevice));
    s->kept[k].bytes = bytes;
    s->kept[k].crc = (uint32_t)crc;
    s->current = k;
    return cuda_status(s, err);
}

static void cuda_input_batch(caps_backend_state *s, const int *idx, const int *dx,
                             const int *dy, int B) {
    int count = (int)(s->kept[s->current].bytes / s->d.P);
    for (int b = 0; b < B; b++) /* what caps_make_batch_shifted asserts on the CPU */
        CAPS_ASSERT(idx[b] >= 0 && idx[b] < count && dx[b] > -s->d.S && dx[b] < s->d.S &&
                    dy[b] > -s->d.S && dy[b] < s->d.S);
    upload(s, s->idx, idx, (size_t)B * sizeof(int));
    upload(s, s->dx, dx, (size_t)B * sizeof(int));
    upload(s, s->dy, dy, (size_t)B * sizeof(int));
    CU(s, "k_make_batch",
       cu_make_batch(s->x, s->kept[s->current].images, s->idx, s->dx, s->dy, B, s->d.C, s->d.S,
                     s->d.S, s->stream));
}

/* Conv1 + ReLU: im2col, then a1 = col1 . W1^T + b1. */
static void cuda_conv1_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    int rows = B * d->S1 * d->S1, ckk = d->C * d->K1 * d->K1;
    CU(s, "k_im2col_nchw", cu_im2col_nchw(s->col1, s->x, B, d->C, d->S, d->K1, d->ST1, d->S1, s->stream));
    linear(s, "conv1 (cublasSgemm)", s->a1, s->col1, param(s, CAPS_PARAMS, 0),
           param(s, CAPS_PARAMS, 1), rows, ckk, d->C1, 1);
}

static void cuda_primary_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    int rows = B * d->G * d->G, ckk = d->C1 * d->K2 * d->K2;
    CU(s, "k_im2col_nhwc", cu_im2col_nhwc(s->col2, s->a1, B, d->C1, d->S1, d->K2, d->ST2, d->G, s->stream));
    linear(s, "primary (cublasSgemm)", s->prim, s->col2, param(s, CAPS_PARAMS, 2),
           param(s, CAPS_PARAMS, 3), rows, ckk, d->TD, 0);
}

static void cuda_squash_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    CU(s, "k_primary_caps", cu_primary_caps_forward(s->u_pre, s->prim, B, d->T, d->D, d->G, s->stream));
    CU(s, "k_squash_forward", cu_squash_forward(s->u, s->u_n2, s->u_pre, B * d->I, d->D, s->stream));
}

static const float *digit_out(const caps_backend_state *s, int B) {
    return s->rv + (size_t)(s->d.R - 1) * B * s->d.J * s->d.E;
}

static void cuda_digit_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    CU(s, "k_predict", cu_predict_forward(s->u_hat, s->u, param(s, CAPS_PARAMS, 4), B, d->I, d->J, d->E, d->D, s->stream));
    CU(s, "routing (forward)", cu_routing_forward(s->rv, s->rc, s->rs, s->rn2, s->logits, s->u_hat, B, d->I, d->J, d->E, d->R, s->stream));
    CU(s, "k_length_forward", cu_length_forward(s->lengths, digit_out(s, B), B * d->J, d->E, s->stream));
}

static void cuda_decoder_forward(caps_backend_state *s, const float *v_host, const int *cls,
                                 int B) {
    const caps_dims *d = &s->d;
    int JE = d->J * d->E;
    const float *v = digit_out(s, B);
    if (v_host) {
        upload(s, s->v_in, v_host, (size_t)B * JE * sizeof(float));
        v = s->v_in;
    }
    upload(s, s->cls, cls, (size_t)B * sizeof(int));
    CU(s, "k_mask_forward", cu_mask_forward(s->masked, v, s->cls, B, d->J, d->E, s->stream));
    linear(s, "decoder 1 (cublasSgemm)", s->h1, s->masked, param(s, CAPS_PARAMS, 5), param(s, CAPS_PARAMS, 6), B, JE, d->H1, 1);
    linear(s, "decoder 2 (cublasSgemm)", s->h2, s->h1, param(s, CAPS_PARAMS, 7), param(s, CAPS_PARAMS, 8), B, d->H1, d->H2, 1);
    linear(s, "decoder 3 (cublasSgemm)", s->recon, s->h2, param(s, CAPS_PARAMS, 9), param(s, CAPS_PARAMS, 10), B, d->H2, d->P, 0);
    CU(s, "k_sigmoid_forward", cu_sigmoid_forward(s->recon, (size_t)B * d->P, s->stream));
}

static void cuda_recon_target(caps_backend_state *s, const float *target, int B) {
    s->own_target = target != NULL;
    if (target) upload(s, s->target, target, (size_t)B * s->d.P * sizeof(float));
}

static const float *recon_target(const caps_backend_state *s) {
    return s->own_target ? s->target : s->x;
}

/* Per-image losses, copied to the host (the one wait of a training step). */
static void cuda_loss_forward(caps_backend_state *s, float *margin, float *sse,
                              const int *labels, const int *labels2, int decoder, int B) {
    upload(s, s->labels, labels, (size_t)B * sizeof(int));
    if (labels2) upload(s, s->labels2, labels2, (size_t)B * sizeof(int));
    CU(s, "k_margin_forward", cu_margin_loss_forward(s->margin, s->lengths, s->labels, labels2 ? s->labels2 : NULL, B, s->d.J, s->stream));
    CU(s, "cudaMemcpy (margin)", cudaMemcpyAsync(margin, s->margin, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    if (decoder) {
        CU(s, "k_recon_forward", cu_recon_loss_forward(s->sse, s->recon, recon_target(s), B, s->d.P, s->stream));
        CU(s, "cudaMemcpy (sse)", cudaMemcpyAsync(sse, s->sse, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    }
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    if (s->e.failed) /* the host sees NaN, never stale numbers */
        for (int b = 0; b < B; b++) margin[b] = sse[b] = NAN;
}

/* A result, copied to the host buffer kept for it. */
static const float *to_host(caps_backend_state *s, float *host, const float *dev, size_t n) {
    CU(s, "cudaMemcpy (result)", cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    CU(s, "cudaStreamSynchronize", cudaStreamSynchronize(s->stream));
    if (s->e.failed)
        for (size_t k = 0; k < n; k++) host[k] = NAN;
    return host;
}

static const float *cuda_lengths(caps_backend_state *s, int B) {
    return to_host(s, s->h_lengths, s->lengths, (size_t)B * s->d.J);
}

static const float *cuda_capsules(caps_backend_state *s, int B) {
    return to_host(s, s->h_v, digit_out(s, B), (size_t)B * s->d.J * s->d.E);
}

static const float *cuda_reconstruction(caps_backend_state *s, int B) {
    return to_host(s, s->h_recon, s->recon, (size_t)B * s->d.P);
}

/* ------------------------------------------------------------------------ backward */

/* Two gradients have more than one producer: dv (lengths and mask) and du_hat (the rounds
 * of routing); the rest are written by their only producer. */
static void cuda_backward_begin(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    CU(s, "cudaMemset", cudaMemsetAsync(s->dv, 0, (size_t)B * d->J * d->E * sizeof(float), s->stream));
    CU(s, "cudaMemset", cudaMemsetAsync(s->du_hat, 0, (size_t)B * d->I * d->J * d->E * sizeof(float), s->stream));
}

static void cuda_loss_backward(caps_backend_state *s, const int *labels, const int *labels2,
                               float margin_scale, int B) {
    const caps_dims *d = &s->d;
    (void)labels; /* both uploaded by loss_forward of this pass */
    CU(s, "k_margin_backward", cu_margin_loss_backward(s->dlengths, s->lengths, s->labels, labels2 ? s->labels2 : NULL, margin_scale, B, d->J, s->stream));
    CU(s, "k_length_backward", cu_length_backward(s->dv, s->dlengths, digit_out(s, B), s->lengths, B * d->J, d->E, s->stream));
}

/* Every gradient here is written, not added, except v's and the weights': a second
 * decoder backward in a pass (two digits) starts clean. */
static void cuda_decoder_backward(caps_backend_state *s, const int *cls, float recon_scale,
                                  int B) {
    const caps_dims *d = &s->d;
    int JE = d->J * d->E;
    (void)cls; /* uploaded by decoder_forward of this pass */
    CU(s, "k_recon_backward", cu_recon_loss_backward(s->drecon, s->recon, recon_target(s), recon_scale, (size_t)B * d->P, s->stream));
    CU(s, "k_sigmoid_backward", cu_sigmoid_backward(s->drecon, s->drecon, s->recon, (size_t)B * d->P, s->stream));
    linear_back(s, "decoder 3 backward (cublasSgemm)", s->dh2, param(s, CAPS_GRADS, 9), param(s, CAPS_GRADS, 10), s->drecon, s->h2, param(s, CAPS_PARAMS, 9), B, d->H2, d->P);
    CU(s, "k_relu_backward", cu_relu_backward_inplace(s->dh2, s->h2, (size_t)B * d->H2, s->stream));
    linear_back(s, "decoder 2 backward (cublasSgemm)", s->dh1, param(s, CAPS_GRADS, 7), param(s, CAPS_GRADS, 8), s->dh2, s->h1, param(s, CAPS_PARAMS, 7), B, d->H1, d->H2);
    CU(s, "k_relu_backward", cu_relu_backward_inplace(s->dh1, s->h1, (size_t)B * d->H1, s->stream));
    linear_back(s, "decoder 1 backward (cublasSgemm)", s->dmasked, param(s, CAPS_GRADS, 5), param(s, CAPS_GRADS, 6), s->dh1, s->masked, param(s, CAPS_PARAMS, 5), B, JE, d->H1);
    CU(s, "k_mask_backward", cu_mask_backward(s->dv, s->dmasked, s->cls, B, d->J, d->E, s->stream));
}

static void cuda_digit_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    CU(s, "routing (backward)", cu_routing_backward(s->du_hat, s->G, s->dc, s->dvr, s->dsr, s->dv, s->rv, s->rc, s->rs, s->rn2, s->u_hat, B, d->I, d->J, d->E, d->R, s->stream));
    CU(s, "k_predict backward", cu_predict_backward(s->du, param(s, CAPS_GRADS, 4), s->du_hat, s->u, param(s, CAPS_PARAMS, 4), B, d->I, d->J, d->E, d->D, s->stream));
}

static void cuda_squash_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    CU(s, "k_squash_backward", cu_squash_backward(s->du_pre, s->du, s->u_pre, s->u_n2, B * d->I, d->D, s->stream));
    CU(s, "k_primary_caps backward", cu_primary_caps_backward(s->dprim, s->du_pre, B, d->T, d->D, d->G, s->stream));
}

/* prim = col2 . Wp^T + bp: dWp += dprim^T col2, dbp += sum dprim; then the gradient of col2,
 * dprim . Wp, into col2's own buffer (its values are not needed again in this pass), and
 * col2im gathers it into da1. */
static void cuda_primary_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    int rows = B * d->G * d->G, ckk = d->C1 * d->K2 * d->K2;
    linear_back(s, "primary backward (cublasSgemm)", NULL, param(s, CAPS_GRADS, 2), param(s, CAPS_GRADS, 3), s->dprim, s->col2, NULL, rows, ckk, d->TD);
    gemm(s, "primary backward (cublasSgemm)", 0, 0, rows, ckk, d->TD, 1.0f, s->dprim, d->TD, param(s, CAPS_PARAMS, 2), ckk, 0.0f, s->col2, ckk);
    CU(s, "k_col2im_nhwc", cu_col2im_nhwc(s->da1, s->col2, B, d->C1, d->S1, d->K2, d->ST2, d->G, s->stream));
}

/* a1 = relu(col1 . W1^T + b1): the image needs no gradient, only W1 and b1. */
static void cuda_conv1_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    int rows = B * d->S1 * d->S1, ckk = d->C * d->K1 * d->K1;
    CU(s, "k_relu_backward", cu_relu_backward_inplace(s->da1, s->a1, (size_t)rows * d->C1, s->stream));
    linear_back(s, "conv1 backward (cublasSgemm)", NULL, param(s, CAPS_GRADS, 0), param(s, CAPS_GRADS, 1), s->da1, s->col1, NULL, rows, ckk, d->C1);
}

extern "C" const caps_backend caps_backend_cuda = {
    /* name */ "cuda",
    cuda_create,
    cuda_destroy,
    cuda_read,
    cuda_write,
    cuda_zero,
    cuda_adam_step,
    cuda_input,
    cuda_conv1_forward,
    cuda_primary_forward,
    cuda_squash_forward,
    cuda_digit_forward,
    cuda_decoder_forward,
    cuda_recon_target,
    cuda_loss_forward,
    cuda_lengths,
    cuda_capsules,
    cuda_reconstruction,
    cuda_backward_begin,
    cuda_loss_backward,
    cuda_decoder_backward,
    cuda_digit_backward,
    cuda_squash_backward,
    cuda_primary_backward,
    cuda_conv1_backward,
    cuda_status,
    cuda_data_upload,
    cuda_input_batch,
    cuda_sync,
    cuda_arena_data,
};
