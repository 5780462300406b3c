// kernels.cu: causal flash attention, forward and backward, written by hand.
//
// This is FlashAttention-2 (Dao 2023, "FlashAttention-2: Faster Attention with Better
// Parallelism and Work Partitioning"), algorithms 1 (forward) and 2 (backward), for causal
// self-attention in bf16 with fp32 accumulation on the tensor cores (mma.sync, sm_80 and newer).
// attention.py builds it on first use with torch.utils.cpp_extension (`--attn cuda`) and holds a
// PyTorch mirror of the same tiled algorithm (TiledAttention): read that first, it is the same
// loops without the hardware details, and the CPU tests check it against plain softmax(QK^T)V.
//
// Notation (the paper's). Per batch element and head: Q, K, V, O are N x d (d = head dim, 64 or
// 128), S = tau Q K^T with tau = 1/sqrt(d), P = softmax(S) row by row, O = P V. Standard
// attention writes the N x N matrices S and P to memory; flash attention never does. It cuts
// Q into row blocks Q_i of B_r rows and K, V into blocks K_j, V_j of B_c rows, and for one Q_i
// streams the K_j, V_j through shared memory, keeping for each row only
//     m   the running maximum of the row's scores seen so far,
//     l   the running sum of exp(score - m),
//     O~  the running, unnormalised output.
// When a new block S_ij = tau Q_i K_j^T arrives (the online softmax, paper section 3.1.1):
//     m_new = max(m, rowmax(S_ij))
//     P~_ij = exp(S_ij - m_new)
//     l     = exp(m - m_new) l + rowsum(P~_ij)
//     O~    = exp(m - m_new) O~ + P~_ij V_j          (the rescale: old terms were exp(. - m))
// and at the end O_i = O~ / l, L_i = m + log(l) (the log-sum-exp, saved for the backward).
//
// The backward (paper section 3.2) never stores P either: it recomputes P_ij = exp(S_ij - L_i)
// from the saved L, which is exact (no running max needed: L is already the final one). With
// dO the gradient of the output and D_i = rowsum(dO_i o O_i) (o: elementwise product):
//     dV_j += P_ij^T dO_i
//     dP_ij = dO_i V_j^T
//     dS_ij = P_ij o (dP_ij - D_i)          (the softmax Jacobian, with D standing in for rowsum(P o dP))
//     dK_j += tau dS_ij^T Q_i
//     dQ_i += tau dS_ij K_j
// dK_j and dV_j sum over query blocks i, dQ_i over key blocks j. One thread block per K_j, V_j
// owns dK_j and dV_j outright; dQ is computed by a second kernel with one thread block per Q_i.
// So no two thread blocks ever add into the same output: the backward is deterministic
// (bit-identical from run to run), at the price of computing S and P twice. (FlashAttention-2's
// own kernel instead adds dQ with atomicAdd in the first pass, which is faster and not
// deterministic.)
//
// Causal: row r may only see keys c <= r. A tile entirely above the diagonal (every key after
// every query) contributes nothing and is skipped, which halves the work; a tile entirely below
// is computed unmasked; only tiles that cross the diagonal pay for the mask. Sequence lengths
// need not be multiples of the tile: rows past N are loaded as zeros and never stored.
//
// How the work is laid out:
//   - a thread block is 4 warps (128 threads); a grid covers query blocks x heads x batch;
//   - B_r = B_c = 64: each warp owns 16 rows of the tile (FA2's "split Q", so the warps never
//     need to combine partial softmax statistics through shared memory);
//   - the tensor cores do 16 x 8 x 16 matrix products (mma.sync.m16n8k16, bf16 in, fp32 out);
//     each thread holds pieces ("fragments") of the operands in registers, in a layout the PTX
//     manual fixes (see the fragment helpers below);
//   - P never leaves the registers: the accumulator fragment of S = Q K^T has exactly the layout
//     of the A operand of the next product P V, so exp() is applied in place and P is fed back
//     to the tensor cores after a round to bf16.
//
// What this version does not do (left for a speed pass, measured in bench.py): ldmatrix,
// cp.async double buffering of the next K/V tile, Hopper's wgmma and TMA. Shared memory rows are
// padded by 16 bytes, which is enough to make every fragment load below free of bank conflicts.
//
// This file is plain CUDA C++ with no torch header: the kernels and their launchers, compiled by
// nvcc (for sm_90 by the tests on any machine with nvcc). The PyTorch binding that calls the two
// launchers is kernels_binding.cpp, compiled by the host C++ compiler beside it. With the binding
// in this file, nvcc's passes over torch's headers made the first build take about 2 minutes on a
// 2-core CPU; split, the two files compile in parallel in 13 s (results/gpu_readiness.md).

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

namespace flash {

constexpr int WARPS = 4;
constexpr int THREADS = 32 * WARPS;
constexpr int BLOCK_M = 64;  // B_r: query rows per thread block (16 per warp)
constexpr int BLOCK_N = 64;  // B_c: key/value rows per tile
constexpr int PAD = 8;       // bf16 elements (16 bytes) of padding after each shared-memory row
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// ----------------------------------------------------------------------------- tensor-core helpers
//
// mma.sync.m16n8k16: C (16 x 8, fp32) += A (16 x 16, bf16, row-major) B (16 x 8, bf16, "col": stored
// so that consecutive k are adjacent). Lane l of the warp is in group g = l / 4 (0..7) at position
// t = l % 4 (0..3). Each 32-bit register holds two bf16, the lower-index element in the low half.
//   A: a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//      a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B: b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
//   C: c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// So a thread owns two rows of every accumulator (g and g+8) and the four threads of a group
// together own those whole rows: a row reduction is two shuffles within the group.

__device__ __forceinline__ void mma_16x8x16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Two floats rounded to bf16 and packed into one register, lo in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}

// A fragment of a row-major tile in shared memory: rows r0..r0+15, columns c0..c0+15.
__device__ __forceinline__ void load_a(uint32_t a[4], const uint16_t* tile, int ld, int r0, int c0, int lane) {
  const uint16_t* p = tile + (r0 + lane / 4) * ld + c0 + 2 * (lane % 4);
  a[0] = *reinterpret_cast<const uint32_t*>(p);
  a[1] = *reinterpret_cast<const uint32_t*>(p + 8 * ld);
  a[2] = *reinterpret_cast<const uint32_t*>(p + 8);
  a[3] = *reinterpret_cast<const uint32_t*>(p + 8 * ld + 8);
}

// B fragment where B[k][n] = tile[n][k]: the tile holds B transposed, as K does in S = Q K^T
// (k runs along a row of K, so each register is one 32-bit load).
__device__ __forceinline__ void load_b_transposed(uint32_t b[2], const uint16_t* tile, int ld, int n0, int k0, int lane) {
  const uint16_t* p = tile + (n0 + lane / 4) * ld + k0 + 2 * (lane % 4);
  b[0] = *reinterpret_cast<const uint32_t*>(p);
  b[1] = *reinterpret_cast<const uint32_t*>(p + 8);
}

// B fragment where B[k][n] = tile[k][n], as V is in P V (k runs down a column: two 16-bit loads
// per register; ldmatrix.trans would do this in one instruction).
__device__ __forceinline__ void load_b(uint32_t b[2], const uint16_t* tile, int ld, int k0, int n0, int lane) {
  const uint16_t* p = tile + (k0 + 2 * (lane % 4)) * ld + n0 + lane / 4;
  b[0] = uint32_t(p[0]) | (uint32_t(p[ld]) << 16);
  b[1] = uint32_t(p[8 * ld]) | (uint32_t(p[9 * ld]) << 16);
}

// The A fragment for the 16 columns kk*16.. of a 16 x n accumulator held as C fragments acc[n/8][4]:
// the C layout of two neighbouring 16 x 8 tiles is the A layout of one 16 x 16 tile.
__device__ __forceinline__ void accumulator_as_a(uint32_t a[4], const float (*acc)[4], int kk) {
  a[0] = pack_bf16(acc[2 * kk][0], acc[2 * kk][1]);
  a[1] = pack_bf16(acc[2 * kk][2], acc[2 * kk][3]);
  a[2] = pack_bf16(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
  a[3] = pack_bf16(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
}

// Reduce over the four threads of a group (they hold one row between them).
__device__ __forceinline__ float group_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float group_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Copy rows row0.. row0+rows-1 of an N x D bf16 matrix into shared memory (row stride D + PAD),
// 16 bytes per thread per step, all 128 threads together. Rows at or past N become zeros
// (the predicated load: no read past the end, and zeros keep every later product finite).
template <int D>
__device__ __forceinline__ void load_tile(uint16_t* tile, const __nv_bfloat16* src, int row0, int rows, int N) {
  constexpr int CHUNKS = D / 8;  // 16-byte pieces per row
  for (int c = threadIdx.x; c < rows * CHUNKS; c += THREADS) {
    const int r = c / CHUNKS, col = (c % CHUNKS) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < N) value = *reinterpret_cast<const uint4*>(src + (size_t)(row0 + r) * D + col);
    *reinterpret_cast<uint4*>(tile + r * (D + PAD) + col) = value;
  }
}

// Write rows g and g+8 of a warp's 16 x D accumulator, times `scale`, as bf16; rows past N are not written.
template <int D>
__device__ __forceinline__ void store_rows(__nv_bfloat16* dst, const float (*acc)[4], int row0, int N,
                                           const float scale[2], int lane) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + lane / 4 + 8 * half;
    if (row >= N) continue;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      __nv_bfloat162 pair = __floats2bfloat162_rn(acc[dt][2 * half] * scale[half], acc[dt][2 * half + 1] * scale[half]);
      *reinterpret_cast<__nv_bfloat162*>(dst + (size_t)row * D + dt * 8 + 2 * (lane % 4)) = pair;
    }
  }
}

template <int D>
constexpr int tile_bytes(int rows) { return rows * (D + PAD) * 2; }

// ----------------------------------------------------------------------------- forward (FA2 algorithm 1)
//
// One thread block computes O_i and L_i for one query block i of one (batch, head).
// q, k, v, o: (B, H, N, D) contiguous bf16; lse: (B, H, N) fp32, natural log.
// The scores are kept in base 2: s2 = S log2(e), so every exp is one exp2f (the same softmax).

template <int D>
__global__ void __launch_bounds__(THREADS)
forward_kernel(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
               __nv_bfloat16* o, float* lse, int N, float scale_log2) {
  constexpr int LD = D + PAD;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* q_tile = smem;                   // Q_i   (B_r x D)
  uint16_t* k_tile = q_tile + BLOCK_M * LD;  // K_j   (B_c x D)
  uint16_t* v_tile = k_tile + BLOCK_N * LD;  // V_j   (B_c x D)

  const int i = gridDim.x - 1 - blockIdx.x;  // the last query blocks have the most tiles: start them first
  const size_t head = (size_t)blockIdx.z * gridDim.y + blockIdx.y;
  const size_t offset = head * N * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = i * BLOCK_M, warp_row0 = q0 + warp * 16;  // this warp's 16 query rows

  load_tile<D>(q_tile, q + offset, q0, BLOCK_M, N);

  float acc[D / 8][4] = {};                    // O~: rows g, g+8 of the warp's 16 x D output
  float m[2] = {-INFINITY, -INFINITY};         // running row max (base 2) of rows g and g+8
  float l[2] = {0.0f, 0.0f};                   // running row sum; this thread's columns only, summed over the group at the end

  // Causal: key tiles 0..i (B_c == B_r); tile i is the diagonal one, and the only one with keys
  // after a query or past N (for a row r < N, any key >= N is also a key > r: one test does both).
  for (int j = 0; j <= i; ++j) {
    __syncthreads();  // everyone is done with the previous K_j, V_j
    load_tile<D>(k_tile, k + offset, j * BLOCK_N, BLOCK_N, N);
    load_tile<D>(v_tile, v + offset, j * BLOCK_N, BLOCK_N, N);
    __syncthreads();

    // S_ij = Q_i K_j^T: the warp's 16 rows x 64 keys, as 8 accumulators of 16 x 8.
    float s[BLOCK_N / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, q_tile, LD, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
        uint32_t b[2];
        load_b_transposed(b, k_tile, LD, nt * 8, kk * 16, lane);
        mma_16x8x16(s[nt], a, b);
      }
    }

    // Scale to base 2, mask (diagonal tile only), and take the tile's row max.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * scale_log2;
        if (j == i) {
          const int row = warp_row0 + lane / 4 + 8 * (e / 2);
          const int key = j * BLOCK_N + nt * 8 + 2 * (lane % 4) + (e % 2);
          if (key > row) x = -INFINITY;
        }
        s[nt][e] = x;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
      }
    }

    // The online softmax: m_new = max(m, rowmax(S_ij)); rescale l and O~ by exp(m - m_new).
    float row_base[2], alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], group_max(tile_max[h]));
      row_base[h] = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet: exp2(-inf - 0) = 0, not NaN
      alpha[h] = exp2f(m[h] - row_base[h]);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - row_base[e / 2]);  // P~_ij, in place
        l[e / 2] += s[nt][e];
      }
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[dt][e] *= alpha[e / 2];
    }

    // O~ += P~_ij V_j: P~ goes back into the tensor cores straight from the registers.
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      uint32_t a[4];
      accumulator_as_a(a, s, kk);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        uint32_t b[2];
        load_b(b, v_tile, LD, kk * 16, dt * 8, lane);
        mma_16x8x16(acc[dt], a, b);
      }
    }
  }

  // O_i = O~ / l and L_i = m + log(l) (back from base 2 to natural log).
  float inv_l[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] = group_sum(l[h]);
    inv_l[h] = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
  }
  store_rows<D>(o + offset, acc, warp_row0, N, inv_l, lane);
  if (lane % 4 == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = warp_row0 + lane / 4 + 8 * h;
      if (row < N) lse[head * N + row] = (m[h] + log2f(l[h])) * LN2;
    }
  }
}

// ----------------------------------------------------------------------------- backward (FA2 algorithm 2)
//
// Step 1: D_i = rowsum(dO_i o O_i), one warp per row.

__global__ void __launch_bounds__(THREADS)
delta_kernel(const __nv_bfloat16* o, const __nv_bfloat16* dout, float* delta, size_t rows, int D) {
  const size_t row = (size_t)blockIdx.x * WARPS + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
  for (int c = lane; c < D; c += 32) sum += __bfloat162float(o[row * D + c]) * __bfloat162float(dout[row * D + c]);
  for (int width = 16; width > 0; width /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, width);
  if (lane == 0) delta[row] = sum;
}

// Step 2: dK_j and dV_j. One thread block per key block j (B_c = 64 keys, 16 per warp) walks down
// the query blocks i at or below the diagonal. Each warp works with the transposed scores
// S_ij^T (its 16 keys x the B_r queries), so that P^T and dS^T come out of the accumulators in
// the A layout that dV_j += P^T dO_i and dK_j += dS^T Q_i need: no shared-memory round trip,
// and no two warps touch the same rows of dK, dV.

template <int D, int BLOCK_Q>
__global__ void __launch_bounds__(THREADS)
dkdv_kernel(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* dout,
            const float* lse, const float* delta, __nv_bfloat16* dk, __nv_bfloat16* dv,
            int N, float scale, float scale_log2) {
  constexpr int LD = D + PAD;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* k_tile = smem;                     // K_j   (B_c x D)
  uint16_t* v_tile = k_tile + BLOCK_N * LD;    // V_j   (B_c x D)
  uint16_t* q_tile = v_tile + BLOCK_N * LD;    // Q_i   (B_r x D)
  uint16_t* do_tile = q_tile + BLOCK_Q * LD;   // dO_i  (B_r x D)
  float* lse_tile = reinterpret_cast<float*>(do_tile + BLOCK_Q * LD);  // L_i log2(e)
  float* delta_tile = lse_tile + BLOCK_Q;                                // D_i

  const int j = blockIdx.x;
  const size_t head = (size_t)blockIdx.z * gridDim.y + blockIdx.y;
  const size_t offset = head * N * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k0 = j * BLOCK_N, warp_key0 = k0 + warp * 16;  // this warp's 16 keys

  load_tile<D>(k_tile, k + offset, k0, BLOCK_N, N);
  load_tile<D>(v_tile, v + offset, k0, BLOCK_N, N);

  float dk_acc[D / 8][4] = {}, dv_acc[D / 8][4] = {};  // rows g, g+8 of the warp's 16 keys
  const int n_query_blocks = (N + BLOCK_Q - 1) / BLOCK_Q;
  for (int i = k0 / BLOCK_Q; i < n_query_blocks; ++i) {  // causal: blocks with a query >= k0 only
    const int q0 = i * BLOCK_Q;
    __syncthreads();
    load_tile<D>(q_tile, q + offset, q0, BLOCK_Q, N);
    load_tile<D>(do_tile, dout + offset, q0, BLOCK_Q, N);
    for (int r = threadIdx.x; r < BLOCK_Q; r += THREADS) {
      const bool valid = q0 + r < N;
      lse_tile[r] = valid ? lse[head * N + q0 + r] * LOG2E : 0.0f;
      delta_tile[r] = valid ? delta[head * N + q0 + r] : 0.0f;
    }
    __syncthreads();
    // The mask is needed where the tile crosses the diagonal (some query before some key) or the end.
    const bool needs_mask = q0 < k0 + BLOCK_N - 1 || q0 + BLOCK_Q > N;

    // S_ij^T = K_j Q_i^T, then P_ij^T = exp(S^T - L_i) (recomputed from the saved log-sum-exp).
    float p[BLOCK_Q / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, k_tile, LD, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < BLOCK_Q / 8; ++nt) {
        uint32_t b[2];
        load_b_transposed(b, q_tile, LD, nt * 8, kk * 16, lane);
        mma_16x8x16(p[nt], a, b);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BLOCK_Q / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + 2 * (lane % 4) + (e % 2);  // query within the tile
        float x = exp2f(p[nt][e] * scale_log2 - lse_tile[col]);
        if (needs_mask) {
          const int key = warp_key0 + lane / 4 + 8 * (e / 2), query = q0 + col;
          if (query < key || query >= N) x = 0.0f;
        }
        p[nt][e] = x;
      }
    }

    // dV_j += P_ij^T dO_i
#pragma unroll
    for (int kk = 0; kk < BLOCK_Q / 16; ++kk) {
      uint32_t a[4];
      accumulator_as_a(a, p, kk);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        uint32_t b[2];
        load_b(b, do_tile, LD, kk * 16, dt * 8, lane);
        mma_16x8x16(dv_acc[dt], a, b);
      }
    }

    // dP_ij^T = V_j dO_i^T, then dS_ij^T = P^T o (dP^T - D_i), in place.
    float ds[BLOCK_Q / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, v_tile, LD, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < BLOCK_Q / 8; ++nt) {
        uint32_t b[2];
        load_b_transposed(b, do_tile, LD, nt * 8, kk * 16, lane);
        mma_16x8x16(ds[nt], a, b);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BLOCK_Q / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + 2 * (lane % 4) + (e % 2);
        ds[nt][e] = p[nt][e] * (ds[nt][e] - delta_tile[col]);
      }
    }

    // dK_j += dS_ij^T Q_i   (tau is applied once, at the end)
#pragma unroll
    for (int kk = 0; kk < BLOCK_Q / 16; ++kk) {
      uint32_t a[4];
      accumulator_as_a(a, ds, kk);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        uint32_t b[2];
        load_b(b, q_tile, LD, kk * 16, dt * 8, lane);
        mma_16x8x16(dk_acc[dt], a, b);
      }
    }
  }

  const float tau[2] = {scale, scale}, one[2] = {1.0f, 1.0f};
  store_rows<D>(dk + offset, dk_acc, warp_key0, N, tau, lane);
  store_rows<D>(dv + offset, dv_acc, warp_key0, N, one, lane);
}

// Step 3: dQ_i = tau sum_j dS_ij K_j. One thread block per query block i, laid out like the
// forward (each warp owns 16 query rows), walking the key blocks j at or left of the diagonal.

template <int D>
__global__ void __launch_bounds__(THREADS)
dq_kernel(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* dout,
          const float* lse, const float* delta, __nv_bfloat16* dq, int N, float scale, float scale_log2) {
  constexpr int LD = D + PAD;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* q_tile = smem;                     // Q_i   (B_r x D)
  uint16_t* do_tile = q_tile + BLOCK_M * LD;   // dO_i  (B_r x D)
  uint16_t* k_tile = do_tile + BLOCK_M * LD;   // K_j   (B_c x D)
  uint16_t* v_tile = k_tile + BLOCK_N * LD;    // V_j   (B_c x D)

  const int i = gridDim.x - 1 - blockIdx.x;
  const size_t head = (size_t)blockIdx.z * gridDim.y + blockIdx.y;
  const size_t offset = head * N * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = i * BLOCK_M, warp_row0 = q0 + warp * 16;

  load_tile<D>(q_tile, q + offset, q0, BLOCK_M, N);
  load_tile<D>(do_tile, dout + offset, q0, BLOCK_M, N);
  float lse2[2], delta_row[2];  // L log2(e) and D of rows g and g+8
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = warp_row0 + lane / 4 + 8 * h;
    lse2[h] = row < N ? lse[head * N + row] * LOG2E : 0.0f;
    delta_row[h] = row < N ? delta[head * N + row] : 0.0f;
  }

  float dq_acc[D / 8][4] = {};
  for (int j = 0; j <= i; ++j) {
    __syncthreads();
    load_tile<D>(k_tile, k + offset, j * BLOCK_N, BLOCK_N, N);
    load_tile<D>(v_tile, v + offset, j * BLOCK_N, BLOCK_N, N);
    __syncthreads();

    // P_ij = exp(S_ij - L_i), masked on the diagonal tile
    float p[BLOCK_N / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, q_tile, LD, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
        uint32_t b[2];
        load_b_transposed(b, k_tile, LD, nt * 8, kk * 16, lane);
        mma_16x8x16(p[nt], a, b);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = exp2f(p[nt][e] * scale_log2 - lse2[e / 2]);
        if (j == i) {
          const int row = warp_row0 + lane / 4 + 8 * (e / 2);
          const int key = j * BLOCK_N + nt * 8 + 2 * (lane % 4) + (e % 2);
          if (key > row) x = 0.0f;
        }
        p[nt][e] = x;
      }
    }

    // dP_ij = dO_i V_j^T, then dS_ij = P o (dP - D_i), in place
    float ds[BLOCK_N / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, do_tile, LD, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
        uint32_t b[2];
        load_b_transposed(b, v_tile, LD, nt * 8, kk * 16, lane);
        mma_16x8x16(ds[nt], a, b);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[nt][e] = p[nt][e] * (ds[nt][e] - delta_row[e / 2]);
    }

    // dQ_i += dS_ij K_j
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      uint32_t a[4];
      accumulator_as_a(a, ds, kk);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        uint32_t b[2];
        load_b(b, k_tile, LD, kk * 16, dt * 8, lane);
        mma_16x8x16(dq_acc[dt], a, b);
      }
    }
  }

  const float tau[2] = {scale, scale};
  store_rows<D>(dq + offset, dq_acc, warp_row0, N, tau, lane);
}

// ----------------------------------------------------------------------------- launchers
//
// Plain C++ entry points (no torch types), so that the kernels compile and can be checked on a
// machine without torch's CUDA headers. All tensors are contiguous (batch, heads, N, D).
// The backward's query tile is 64 rows for D = 64 and 32 for D = 128: the dK, dV accumulators
// already take D registers per thread, and with a 64-query tile at D = 128 ptxas needs all 255
// registers (sm_90), one change away from spilling; with 32 it needs 241.

template <typename Kernel>
static cudaError_t set_shared_memory(Kernel kernel, int bytes) {
  // Above 48 KiB of shared memory a kernel must opt in.
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

template <int D>
static cudaError_t forward_launch(const void* q, const void* k, const void* v, void* o, float* lse,
                                  int batch, int heads, int N, cudaStream_t stream) {
  const int bytes = tile_bytes<D>(BLOCK_M) + 2 * tile_bytes<D>(BLOCK_N);
  cudaError_t err = set_shared_memory(forward_kernel<D>, bytes);
  if (err != cudaSuccess) return err;
  const dim3 grid((N + BLOCK_M - 1) / BLOCK_M, heads, batch);
  const float scale_log2 = LOG2E / sqrtf((float)D);
  forward_kernel<D><<<grid, THREADS, bytes, stream>>>(
      (const __nv_bfloat16*)q, (const __nv_bfloat16*)k, (const __nv_bfloat16*)v, (__nv_bfloat16*)o, lse, N, scale_log2);
  return cudaGetLastError();
}

template <int D>
static cudaError_t backward_launch(const void* q, const void* k, const void* v, const void* o, const void* dout,
                                   const float* lse, float* delta, void* dq, void* dk, void* dv,
                                   int batch, int heads, int N, cudaStream_t stream) {
  constexpr int BLOCK_Q = D <= 64 ? 64 : 32;
  const float scale = 1.0f / sqrtf((float)D), scale_log2 = scale * LOG2E;
  const size_t rows = (size_t)batch * heads * N;
  delta_kernel<<<(unsigned)((rows + WARPS - 1) / WARPS), THREADS, 0, stream>>>(
      (const __nv_bfloat16*)o, (const __nv_bfloat16*)dout, delta, rows, D);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const int dkdv_bytes = 2 * tile_bytes<D>(BLOCK_N) + 2 * tile_bytes<D>(BLOCK_Q) + 2 * BLOCK_Q * (int)sizeof(float);
  if ((err = set_shared_memory(dkdv_kernel<D, BLOCK_Q>, dkdv_bytes)) != cudaSuccess) return err;
  const dim3 kv_grid((N + BLOCK_N - 1) / BLOCK_N, heads, batch);
  dkdv_kernel<D, BLOCK_Q><<<kv_grid, THREADS, dkdv_bytes, stream>>>(
      (const __nv_bfloat16*)q, (const __nv_bfloat16*)k, (const __nv_bfloat16*)v, (const __nv_bfloat16*)dout,
      lse, delta, (__nv_bfloat16*)dk, (__nv_bfloat16*)dv, N, scale, scale_log2);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;

  const int dq_bytes = 2 * tile_bytes<D>(BLOCK_M) + 2 * tile_bytes<D>(BLOCK_N);
  if ((err = set_shared_memory(dq_kernel<D>, dq_bytes)) != cudaSuccess) return err;
  const dim3 q_grid((N + BLOCK_M - 1) / BLOCK_M, heads, batch);
  dq_kernel<D><<<q_grid, THREADS, dq_bytes, stream>>>(
      (const __nv_bfloat16*)q, (const __nv_bfloat16*)k, (const __nv_bfloat16*)v, (const __nv_bfloat16*)dout,
      lse, delta, (__nv_bfloat16*)dq, N, scale, scale_log2);
  return cudaGetLastError();
}

}  // namespace flash

// The entry points kernels_binding.cpp calls, for head dims 64 and 128. No torch or CUDA type in
// their signatures (the stream is a void*), so the binding compiles without CUDA's headers. Each
// returns nullptr, or what went wrong.
static const char* error_text(cudaError_t err) { return err == cudaSuccess ? nullptr : cudaGetErrorString(err); }

const char* flash_attention_forward(const void* q, const void* k, const void* v, void* o, float* lse,
                                    int batch, int heads, int N, int D, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (D == 64) return error_text(flash::forward_launch<64>(q, k, v, o, lse, batch, heads, N, s));
  if (D == 128) return error_text(flash::forward_launch<128>(q, k, v, o, lse, batch, heads, N, s));
  return "kernels.cu has head dims 64 and 128";
}

const char* flash_attention_backward(const void* q, const void* k, const void* v, const void* o, const void* dout,
                                     const float* lse, float* delta, void* dq, void* dk, void* dv,
                                     int batch, int heads, int N, int D, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (D == 64) return error_text(flash::backward_launch<64>(q, k, v, o, dout, lse, delta, dq, dk, dv, batch, heads, N, s));
  if (D == 128) return error_text(flash::backward_launch<128>(q, k, v, o, dout, lse, delta, dq, dk, dv, batch, heads, N, s));
  return "kernels.cu has head dims 64 and 128";
}
