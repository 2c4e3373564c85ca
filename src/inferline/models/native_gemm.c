/* inferline's small-row GEMM and whole BERT block: see native_gemm.py (built and loaded from there). */
/* Compiled twice: W=8 (AVX2/FMA, 6 rows x 16 columns a tile) and W=16 (AVX-512, 12 rows x 32 columns). */
#include <omp.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(f, W)                  /* packed_linear8, packed_linear16 */
#define ROWS (W == 8 ? 6 : 12)              /* rows of a tile: 2 * ROWS accumulators in registers */
#define COLS (2 * W)                        /* columns of a tile: two vectors */
#define PREFETCH 32                 /* k steps ahead a tile asks for its weight panels' next lines (2 KB) */

typedef float vf __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));
typedef float vfu __attribute__((vector_size(W * 4), aligned(4)));

static inline vf load(const float *p) { return *(const vfu *)p; }
static inline void store(float *p, vf v) { *(vfu *)p = v; }
static inline vf with_sign(vf magnitude, vi sign) { return (vf)((vi)magnitude | sign); }

#if W == 8
/* w (N, K) row-major -> `panels` panels of 16 output columns, each K rows of 16 floats (w transposed), zero
   past N */
void pack_weight(const float *w, float *packed, int64_t N, int64_t K, int64_t panels) {
    for (int64_t p = 0; p < panels; p++) {
        float *dst = packed + p * K * 16;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < 16; j++) {
                int64_t n = p * 16 + j;
                dst[k * 16 + j] = n < N ? w[n * K + k] : 0.0f;
            }
    }
}
#endif

/* exp(a) for a <= 0 (GELU's exp(-z^2)): 2^n e^r with |r| <= ln2 / 2, e^r by Cephes' expf polynomial */
static inline vf exp_neg(vf a) {
    vi low = a < -87.0f;
    a = (vf)(((vi)a & ~low) | ((vi)((vf){} - 87.0f) & low));
    vf n = (a * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest: 1.5 * 2^23 */
    vf r = a - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + (r + 1.0f);
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

/* 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) */
static inline vf gelu_erf(vf x) {
    vf z = x * 0.70710678118654752f;
    vi sign = (vi)z & INT32_MIN;
    vf a = (vf)((vi)z & INT32_MAX);
    vf t = 1.0f / (a * 0.3275911f + 1.0f);
    vf q = t * 1.061405429f - 1.453152027f;
    q = q * t + 1.421413741f;
    q = q * t - 0.284496736f;
    q = q * t + 0.254829592f;
    vf erf = 1.0f - q * t * exp_neg(-a * a);
    return x * 0.5f * (with_sign(erf, sign) + 1.0f);
}

/* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), tanh(u) = sign(u) (1 - 2 / (exp(2 |u|) + 1)) */
static inline vf gelu_tanh(vf x) {
    vf u = 0.79788456080286536f * (0.044715f * x * (x * x) + x);
    vi sign = (vi)u & INT32_MIN;
    vf e = exp_neg((vf)((vi)u & INT32_MAX) * -2.0f);  /* exp(-2|u|) in (0, 1] */
    vf th = (1.0f - e) / (1.0f + e);
    return x * 0.5f * (with_sign(th, sign) + 1.0f);
}

/* `rows` (1..ROWS, a constant after inlining) rows of x times COLS columns of the packed weight (from `w`: one
   16-column panel, or two consecutive ones), plus their biases, then the activation `act` (0 none, 1 GELU with
   erf, 2 GELU with tanh, 3 ReLU), into the first `cols` columns of y */
static inline __attribute__((always_inline)) void tile(const float *x, int64_t K, const float *w,
        const float *bias, float *y, int64_t N, const int rows, int cols, int act) {
    vf lo[ROWS], hi[ROWS];
    const float *w_hi = w + (W == 16 ? K * 16 : 8);
    vf b0 = load(bias), b1 = load(bias + W);
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) { lo[r] = b0; hi[r] = b1; }
    for (int64_t k = 0; k < K; k++) {
        __builtin_prefetch(w + (k + PREFETCH) * 16);
        __builtin_prefetch(w_hi + (k + PREFETCH) * 16);
        vf w0 = load(w + k * 16), w1 = load(w_hi + k * 16);
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            vf a = x[r * K + k] - (vf){};  /* a broadcast: s - 0 is s */
            lo[r] += a * w0;
            hi[r] += a * w1;
        }
    }
    if (act == 1) {
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) { lo[r] = gelu_erf(lo[r]); hi[r] = gelu_erf(hi[r]); }
    } else if (act == 2) {
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) { lo[r] = gelu_tanh(lo[r]); hi[r] = gelu_tanh(hi[r]); }
    } else if (act == 3) {
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) { lo[r] = (vf)((vi)lo[r] & (lo[r] > 0.0f)); hi[r] = (vf)((vi)hi[r] & (hi[r] > 0.0f)); }
    }
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) {
        if (cols == COLS) {
            store(y + r * N, lo[r]);
            store(y + r * N + W, hi[r]);
        } else {
            float part[COLS];
            store(part, lo[r]);
            store(part + W, hi[r]);
            memcpy(y + r * N, part, cols * sizeof(float));
        }
    }
}

#define ROWS_CASE(n) case n: tile(x, K, w, bias, y, N, n, cols, act); break;

static void tile_rows(const float *x, int64_t K, const float *w, const float *bias, float *y, int64_t N,
                      int rows, int cols, int act) {
    switch (rows) {
#if W == 16
        ROWS_CASE(12) ROWS_CASE(11) ROWS_CASE(10) ROWS_CASE(9) ROWS_CASE(8) ROWS_CASE(7)
#endif
        ROWS_CASE(6) ROWS_CASE(5) ROWS_CASE(4) ROWS_CASE(3) ROWS_CASE(2)
        default: tile(x, K, w, bias, y, N, 1, cols, act); break;
    }
}

/* thread t of nt's share of y (M, N) = act(x (M, K) w^T + bias): its run of the tiles of 32 columns, each
   streaming its part of the weight once; `packed` from pack_weight with panels for whole tiles, `bias` padded
   likewise */
static void product(const float *x, const float *packed, const float *bias, float *y, int64_t M, int64_t K,
                    int64_t N, int act, int t, int nt) {
    int64_t tiles = (N + COLS - 1) / COLS;
    int64_t first = tiles * t / nt, last = tiles * (t + 1) / nt;
    for (int64_t p = first; p < last; p++) {
        int cols = (int)(N - p * COLS < COLS ? N - p * COLS : COLS);
        for (int64_t m = 0; m < M; m += ROWS) {
            int rows = (int)(M - m < ROWS ? M - m : ROWS);
            tile_rows(x + m * K, K, packed + p * K * COLS, bias + p * COLS, y + m * N + p * COLS, N, rows, cols,
                      act);
        }
    }
}

void NAME(packed_linear)(const float *x, const float *packed, const float *bias, float *y, int64_t M, int64_t K,
                         int64_t N, int threads, int act) {
    #pragma omp parallel num_threads(threads)
    product(x, packed, bias, y, M, K, N, act, omp_get_thread_num(), omp_get_num_threads());
}

static inline float lane_sum(vf v) {
    float s = 0.0f;
    for (int j = 0; j < W; j++) s += v[j];
    return s;
}

/* thread t of nt's rows of y = LayerNorm(a + b) over rows of C (weight g, bias beta); y may be a or b */
static void add_norm(const float *a, const float *b, const float *g, const float *beta, float eps, float *y,
                     int64_t M, int64_t C, int t, int nt) {
    int64_t vec = C / W * W;
    for (int64_t r = M * t / nt; r < M * (t + 1) / nt; r++) {
        const float *u = a + r * C, *v = b + r * C;
        float *z = y + r * C;
        vf acc = {};
        for (int64_t c = 0; c < vec; c += W) { vf s = load(u + c) + load(v + c); store(z + c, s); acc += s; }
        float sum = lane_sum(acc);
        for (int64_t c = vec; c < C; c++) { z[c] = u[c] + v[c]; sum += z[c]; }
        float mean = sum / C;
        vf dev = {};
        for (int64_t c = 0; c < vec; c += W) { vf d = load(z + c) - mean; dev += d * d; }
        float var = lane_sum(dev);
        for (int64_t c = vec; c < C; c++) var += (z[c] - mean) * (z[c] - mean);
        float rstd = 1.0f / sqrtf(var / C + eps);
        for (int64_t c = 0; c < vec; c += W) store(z + c, (load(z + c) - mean) * rstd * load(g + c) + load(beta + c));
        for (int64_t c = vec; c < C; c++) z[c] = (z[c] - mean) * rstd * g[c] + beta[c];
    }
}

#define QROWS (W == 8 ? 4 : 8)  /* query rows of an attention tile: 2 * QROWS accumulators, independent FMA chains */

static inline vf vmax(vf a, vf b) { vi gt = a > b; return (vf)(((vi)a & gt) | ((vi)b & ~gt)); }

/* out (rows x cols, stride os) = scale * a b for `rows` (1..QROWS, a constant after inlining) rows of a (stride
   as, n long) against b (n x cols, stride bs), `cols` a whole number of vectors: tiles of the rows x two vectors
   of b's columns (then one), each sum over n taken in order. Attention's q k^T and its probabilities times v. */
static inline __attribute__((always_inline)) void rows_by_vectors(const float *a, int64_t as, const float *b,
        int64_t bs, int64_t n, int64_t cols, float scale, float *out, int64_t os, const int rows) {
    int64_t c = 0;
    for (; c + 2 * W <= cols; c += 2 * W) {
        vf lo[QROWS], hi[QROWS];
        for (int r = 0; r < rows; r++) { lo[r] = (vf){}; hi[r] = (vf){}; }
        for (int64_t i = 0; i < n; i++) {
            vf b0 = load(b + i * bs + c), b1 = load(b + i * bs + c + W);
            for (int r = 0; r < rows; r++) {
                vf x = a[r * as + i] - (vf){};
                lo[r] += x * b0;
                hi[r] += x * b1;
            }
        }
        for (int r = 0; r < rows; r++) {
            store(out + r * os + c, lo[r] * scale);
            store(out + r * os + c + W, hi[r] * scale);
        }
    }
    if (c < cols) {
        vf acc[QROWS];
        for (int r = 0; r < rows; r++) acc[r] = (vf){};
        for (int64_t i = 0; i < n; i++) {
            vf b0 = load(b + i * bs + c);
            for (int r = 0; r < rows; r++) acc[r] += (a[r * as + i] - (vf){}) * b0;
        }
        for (int r = 0; r < rows; r++) store(out + r * os + c, acc[r] * scale);
    }
}

/* out (rows x D, stride C) = p v for `rows` rows of probabilities p (stride Tp) over the T values v (stride C3):
   whole vectors of the head's columns by `rows_by_vectors`, the last D % W one sum at a time */
static inline __attribute__((always_inline)) void mix(const float *p, int64_t Tp, const float *v, int64_t C3,
        int64_t T, int64_t D, float *out, int64_t C, const int rows) {
    int64_t vec = D / W * W;
    rows_by_vectors(p, Tp, v, C3, T, vec, 1.0f, out, C, rows);
    for (int64_t d = vec; d < D; d++)
        for (int r = 0; r < rows; r++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < T; j++) acc += p[r * Tp + j] * v[j * C3 + d];
            out[r * C + d] = acc;
        }
}

/* a row of T scores s (Tp long) -> softmax(s + mask): the additive per-key `mask` (NULL: none) added, the row's
   maximum over its T keys subtracted, exp, divided by the sum of the T; past T: exp(0), never summed or used */
static inline void softmax_row(float *s, const float *mask, int64_t T, int64_t Tp) {
    int64_t vec = T / W * W;
    if (mask) {
        for (int64_t j = 0; j < vec; j += W) store(s + j, load(s + j) + load(mask + j));
        for (int64_t j = vec; j < T; j++) s[j] += mask[j];
    }
    float top = s[0];
    if (vec) {
        vf m = load(s);
        for (int64_t j = W; j < vec; j += W) m = vmax(m, load(s + j));
        for (int j = 0; j < W; j++) top = m[j] > top ? m[j] : top;
    }
    for (int64_t j = vec; j < T; j++) top = s[j] > top ? s[j] : top;
    for (int64_t j = T; j < Tp; j++) s[j] = top;
    vf total = {};
    for (int64_t j = 0; j < Tp; j += W) {
        vf e = exp_neg(load(s + j) - top);
        store(s + j, e);
        if (j + W <= T) total += e;
    }
    float sum = lane_sum(total);
    for (int64_t j = vec; j < T; j++) sum += s[j];
    vf inv = (1.0f / sum) - (vf){};
    for (int64_t j = 0; j < Tp; j += W) store(s + j, load(s + j) * inv);
}

#define QROWS_CASE(n) case n: rows_by_vectors(q, C3, kt, Tp, D, Tp, scale, s, Tp, n); \
    for (int r = 0; r < n; r++) softmax_row(s + r * Tp, keys, T, Tp); \
    mix(s, Tp, v, C3, T, D, out, C, n); break;

/* thread t of nt's (batch row, head) pairs of softmax(q k^T * scale + mask) v over qkv (B * T, 3C) rows
   [q | k | v], heads of D = C / H columns, into ctx (B * T, C), QROWS queries at a time; `mask`: NULL or an
   additive mask per key (B, T); `scratch`: this thread's (D + QROWS) Tp floats (Tp: T rounded up to W) for k
   transposed and the tile's rows of scores */
static void attend(const float *qkv, const float *mask, float *ctx, int64_t B, int64_t T, int64_t C, int64_t H,
                   float scale, float *scratch, int t, int nt) {
    int64_t D = C / H, Tp = (T + W - 1) / W * W, C3 = 3 * C;
    float *kt = scratch, *s = scratch + D * Tp;
    for (int64_t job = B * H * t / nt; job < B * H * (t + 1) / nt; job++) {
        int64_t b = job / H, h = job % H;
        const float *base = qkv + b * T * C3 + h * D, *k = base + C, *v = base + 2 * C;
        const float *keys = mask ? mask + b * T : NULL;
        for (int64_t d = 0; d < D; d++) {
            for (int64_t j = 0; j < T; j++) kt[d * Tp + j] = k[j * C3 + d];
            for (int64_t j = T; j < Tp; j++) kt[d * Tp + j] = 0.0f;
        }
        for (int64_t i = 0; i < T; i += QROWS) {
            const float *q = base + i * C3;
            float *out = ctx + (b * T + i) * C + h * D;
            switch (T - i < QROWS ? T - i : QROWS) {
#if W == 16
                QROWS_CASE(8) QROWS_CASE(7) QROWS_CASE(6) QROWS_CASE(5)
#endif
                QROWS_CASE(4) QROWS_CASE(3) QROWS_CASE(2)
                default: QROWS_CASE(1)
            }
        }
    }
}

/* QROWS at this width: the caller sizes post_norm_block's scratch by it */
int NAME(attention_rows)(void) { return QROWS; }

/* The weights of a BERT block: packed by pack_weight (q/k/v as one product, rows [q; k; v]), LayerNorms as
   weight, bias, eps; act as tile's (the feed-forward's) */
typedef struct {
    int64_t C, H, I;
    float scale, eps1, eps2;
    int act;
    const float *wqkv, *bqkv, *wo, *bo, *g1, *beta1, *wup, *bup, *wdown, *bdown, *g2, *beta2;
} block_weights;

/* The BERT block over x (B, T, C), in one parallel region (a barrier between steps): qkv = x Wqkv + b;
   ctx = attention (`mask`: NULL, or additive per key (B, T)); h = LayerNorm1(x + ctx Wo + bo);
   y = LayerNorm2(h + act(h Wup + bu) Wdown + bd). `work`: B T (6C + I) + threads (C / H + QROWS) Tp floats. */
void NAME(post_norm_block)(const float *x, const float *mask, float *y, float *work, int64_t B, int64_t T,
                           const block_weights *p, int threads) {
    int64_t C = p->C, I = p->I, M = B * T, Tp = (T + W - 1) / W * W;
    float *qkv = work, *ctx = qkv + M * 3 * C, *h = ctx + M * C, *inner = h + M * C, *out = inner + M * I;
    float *scratch = out + M * C;
    #pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        product(x, p->wqkv, p->bqkv, qkv, M, C, 3 * C, 0, t, nt);
        #pragma omp barrier
        attend(qkv, mask, ctx, B, T, C, p->H, p->scale, scratch + t * (C / p->H + QROWS) * Tp, t, nt);
        #pragma omp barrier
        product(ctx, p->wo, p->bo, out, M, C, C, 0, t, nt);
        #pragma omp barrier
        add_norm(x, out, p->g1, p->beta1, p->eps1, h, M, C, t, nt);
        #pragma omp barrier
        product(h, p->wup, p->bup, inner, M, C, I, p->act, t, nt);
        #pragma omp barrier
        product(inner, p->wdown, p->bdown, out, M, I, C, 0, t, nt);
        #pragma omp barrier
        add_norm(h, out, p->g2, p->beta2, p->eps2, y, M, C, t, nt);
    }
}
