/*
 * routing_dynamic.cu: the prediction vectors (eq. 2) and dynamic routing (Procedure 1) on
 * the GPU, forward and backward, as routing_dynamic.c writes them: every u_hat in device
 * memory, one kernel per line of the procedure. This is the plain GPU twin, the reference
 * a fused kernel would be held to; tests/test_cuda.c holds it to the CPU.
 *
 *   u_hat_{j|i} = W_ij u_i
 *   b_ij <- 0; for r = 1..R: c_i <- softmax_j(b_i); s_j <- sum_i c_ij u_hat_{j|i};
 *                            v_j <- squash(s_j); b_ij <- b_ij + u_hat_{j|i} . v_j
 *
 * Backward (routing_dynamic.c derives it): with G the gradient of the logits, rounds from
 * last to first,
 *   dv_r  = dv (r = R-1)  or  sum_i G[i][j] u_hat_{j|i};  du_hat += G[i][j] v_r[j]  (r < R-1)
 *   ds_r  = squash'(s_r) dv_r
 *   dc[i][j] = ds_r[j] . u_hat_{j|i};  du_hat += c_r[i][j] ds_r[j]
 *   G[i][j] += c_r[i][j] (dc[i][j] - sum_k c_r[i][k] dc[i][k])        (r > 0)
 *
 * Sums over the children i run in a loop of one thread per (b, j, e), i ascending, as the
 * CPU adds them: deterministic, and the reads of a warp cover consecutive (j, e). The squash
 * of the parents and its backward are layers.cu's.
 * Letters: B images, I children (1152), J parents (10), E = D_out (16), D = D_in (8), R.
 */
#include "kernels.h"


/* ------------------------------------------------------------------------ prediction vectors */

/* u_hat[b][i][je] = sum_d W[i][je][d] u[b][i][d] */
__global__ static void k_predict(float *u_hat, const float *u, const float *W, int B, int I,
                                 int JE, int D) {
    GRID_STRIDE(k, (size_t)B * I * JE) {
        size_t je = k % JE, i = k / JE % I, b = k / ((size_t)JE * I);
        const float *w = W + (i * JE + je) * D, *ui = u + (b * I + i) * D;
        float acc = 0.0f;
        for (int d = 0; d < D; d++) acc += w[d] * ui[d];
        u_hat[k] = acc;
    }
}

cudaError_t cu_predict_forward(float *u_hat, const float *u, const float *W, int B, int I, int J,
                               int E, int D, cudaStream_t st) {
    LAUNCH_CHECKED(k_predict, (size_t)B * I * J * E, st, u_hat, u, W, B, I, J * E, D);
    return cudaSuccess;
}

/* dW[i][je][d] += sum_b du_hat[b][i][je] u[b][i][d] */
__global__ static void k_predict_dW(float *dW, const float *du_hat, const float *u, int B,
                                    int I, int JE, int D) {
    GRID_STRIDE(k, (size_t)I * JE * D) {
        size_t d = k % D, je = k / D % JE, i = k / ((size_t)D * JE);
        float acc = 0.0f;
        for (int b = 0; b < B; b++)
            acc += du_hat[((size_t)b * I + i) * JE + je] * u[((size_t)b * I + i) * D + d];
        dW[k] += acc;
    }
}

/* du[b][i][d] = sum_je W[i][je][d] du_hat[b][i][je], written (its only producer). */
__global__ static void k_predict_du(float *du, const float *du_hat, const float *W, int B,
                                    int I, int JE, int D) {
    GRID_STRIDE(k, (size_t)B * I * D) {
        size_t d = k % D, i = k / D % I, b = k / ((size_t)D * I);
        const float *g = du_hat + (b * I + i) * JE, *w = W + i * JE * D + d;
        float acc = 0.0f;
        for (int je = 0; je < JE; je++) acc += w[(size_t)je * D] * g[je];
        du[k] = acc;
    }
}

cudaError_t cu_predict_backward(float *du, float *dW, const float *du_hat, const float *u,
                                const float *W, int B, int I, int J, int E, int D,
                                cudaStream_t st) {
    LAUNCH_CHECKED(k_predict_dW, (size_t)I * J * E * D, st, dW, du_hat, u, B, I, J * E, D);
    LAUNCH_CHECKED(k_predict_du, (size_t)B * I * D, st, du, du_hat, W, B, I, J * E, D);
    return cudaSuccess;
}

/* ------------------------------------------------------------------------ forward */

/* Round 0: b_ij = 0, so c_ij = 1/J. Later rounds: softmax over the J parents of each child,
 * the largest logit subtracted first (it cancels; exp cannot overflow). */
__global__ static void k_couplings(float *c, const float *logits, size_t BI, int J, int first) {
    GRID_STRIDE(q, BI) {
        float *ci = c + q * J;
        if (first) {
            for (int j = 0; j < J; j++) ci[j] = 1.0f / J;
            continue;
        }
        const float *lg = logits + q * J;
        float mx = lg[0], sum = 0.0f;
        for (int j = 1; j < J; j++) mx = lg[j] > mx ? lg[j] : mx;
        for (int j = 0; j < J; j++) {
            ci[j] = expf(lg[j] - mx);
            sum += ci[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < J; j++) ci[j] *= inv;
    }
}

/* out[b][j][e] = sum_i w[b][i][j] u_hat[b][i][j][e]: s_j from the couplings (forward), or
 * dv_r from the logit gradients G (backward). */
__global__ static void k_sum_children(float *out, const float *w, const float *u_hat, int B,
                                      int I, int J, int E) {
    size_t JE = (size_t)J * E;
    GRID_STRIDE(k, (size_t)B * JE) {
        size_t b = k / JE, je = k % JE, j = je / E;
        const float *wb = w + b * I * J + j, *ub = u_hat + b * I * JE + je;
        float acc = 0.0f;
        for (int i = 0; i < I; i++) acc += wb[(size_t)i * J] * ub[(size_t)i * JE];
        out[k] = acc;
    }
}

/* b_ij <- b_ij + u_hat_{j|i} . v_j (the first round starts from b = 0). */
__global__ static void k_agree(float *logits, const float *u_hat, const float *v, int B, int I,
                               int J, int E, int first) {
    GRID_STRIDE(k, (size_t)B * I * J) {
        size_t j = k % J, b = k / ((size_t)J * I);
        const float *u = u_hat + k * E, *vj = v + (b * J + j) * E;
        float acc = 0.0f;
        for (int e = 0; e < E; e++) acc += u[e] * vj[e];
        logits[k] = (first ? 0.0f : logits[k]) + acc;
    }
}

cudaError_t cu_routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                               const float *u_hat, int B, int I, int J, int E, int R,
                               cudaStream_t st) {
    size_t BI = (size_t)B * I, IJ = (size_t)I * J, JE = (size_t)J * E;
    for (int r = 0; r < R; r++) {
        float *cr = c + r * B * IJ, *sr = s + r * B * JE, *vr = v + r * B * JE;
        LAUNCH_CHECKED(k_couplings, BI, st, cr, logits, BI, J, r == 0);
        LAUNCH_CHECKED(k_sum_children, (size_t)B * JE, st, sr, cr, u_hat, B, I, J, E);
        cudaError_t e = cu_squash_forward(vr, norm2 + (size_t)r * B * J, sr, B * J, E, st);
        if (e != cudaSuccess) return e;
        if (r < R - 1) LAUNCH_CHECKED(k_agree, BI * J, st, logits, u_hat, vr, B, I, J, E, r == 0);
    }
    return cudaSuccess;
}

/* ------------------------------------------------------------------------ backward */

/* du_hat[b][i][j][e] += G[b][i][j] v_r[b][j][e]  (from the agreement u_hat . v_r) */
__global__ static void k_duhat_agree(float *du_hat, const float *G, const float *vr, int B,
                                     int I, int J, int E) {
    size_t JE = (size_t)J * E;
    GRID_STRIDE(k, (size_t)B * I * JE) {
        size_t je = k % JE, bi = k / JE, b = bi / I;
        du_hat[k] += G[bi * J + je / E] * vr[b * JE + je];
    }
}

/* For each child (b, i), from s_r = sum_i c u_hat: dc[j] = ds_r[j] . u_hat_{j|i} and
 * du_hat += c[j] ds_r[j]; then, but for round 0 whose logits are the constant 0, the
 * softmax's backward G[j] += c[j] (dc[j] - sum_k c[k] dc[k]). */
__global__ static void k_children_back(float *du_hat, float *G, float *dc, const float *cr,
                                       const float *dsr, const float *u_hat, int B, int I, int J,
                                       int E, int update_G) {
    size_t JE = (size_t)J * E;
    GRID_STRIDE(bi, (size_t)B * I) {
        size_t b = bi / I;
        const float *ci = cr + bi * J, *ds = dsr + b * JE, *u = u_hat + bi * JE;
        float *du = du_hat + bi * JE, *dci = dc + bi * J, dot = 0.0f;
        for (int j = 0; j < J; j++) {
            float acc = 0.0f;
            for (int e = 0; e < E; e++) {
                acc += ds[j * E + e] * u[j * E + e];
                du[j * E + e] += ci[j] * ds[j * E + e];
            }
            dci[j] = acc;
            dot += ci[j] * acc;
        }
        if (update_G)
            for (int j = 0; j < J; j++) G[bi * J + j] += ci[j] * (dci[j] - dot);
    }
}

cudaError_t cu_routing_backward(float *du_hat, float *G, float *dc, float *dvr, float *dsr,
                                const float *dv, const float *v, const float *c, const float *s,
                                const float *norm2, const float *u_hat, int B, int I, int J,
                                int E, int R, cudaStream_t st) {
    size_t BI = (size_t)B * I, IJ = (size_t)I * J, JE = (size_t)J * E;
    cudaError_t e = cudaMemsetAsync(G, 0, BI * J * sizeof(float), st); /* G_R = 0 */
    if (e != cudaSuccess) return e;
    for (int r = R - 1; r >= 0; r--) {
        const float *cr = c + r * B * IJ, *sr = s + r * B * JE, *vr = v + r * B * JE;
        const float *dvin = dv;
        if (r < R - 1) {
            LAUNCH_CHECKED(k_sum_children, (size_t)B * JE, st, dvr, G, u_hat, B, I, J, E);
            LAUNCH_CHECKED(k_duhat_agree, BI * JE, st, du_hat, G, vr, B, I, J, E);
            dvin = dvr;
        }
        e = cu_squash_backward(dsr, dvin, sr, norm2 + (size_t)r * B * J, B * J, E, st);
        if (e != cudaSuccess) return e;
        LAUNCH_CHECKED(k_children_back, BI, st, du_hat, G, dc, cr, dsr, u_hat, B, I, J, E, r > 0);
    }
    return cudaSuccess;
}
