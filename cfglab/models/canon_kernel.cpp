// The Canon convolution's fused CPU loop (cfglab/models/canon_native.py builds and loads it).
//
// out[b, t, c] = sum_{j < n(b, t)} w[j, c] * x[b, t - j, c], with n(b, t) = min(K, t - s + 1) and
// s the last BOS at or before t in row b (0 when the row has none: before 0 lie zeros). The
// eager torch path makes ~17 passes over memory for this (benchmarks/RESULTS.md, "Canon
// layers"); here each output row is read K times from cache and written once, forward and
// backward, accumulating in fp32 whatever the storage (fp32 or bf16).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) {  // round to nearest even, as torch does
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a quiet NaN
    p[i] = static_cast<uint16_t>((bits >> 16) | 0x40u);
    return;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  p[i] = static_cast<uint16_t>(bits >> 16);
}

// taps read at every position of one row: min(K, t - s + 1)
void tap_counts(const uint8_t* flags, int64_t T, int64_t K, int* n) {
  int64_t last = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (flags && flags[t]) last = t;
    n[t] = static_cast<int>(std::min<int64_t>(K, t - last + 1));
  }
}

template <typename S>
void forward_rows(const S* x, const float* w, const uint8_t* flags, S* out, int64_t b0,
                  int64_t b1, int64_t T, int64_t W, int64_t K) {
  std::vector<float> acc(W);
  std::vector<int> n(T);
  for (int64_t b = b0; b < b1; ++b) {
    tap_counts(flags ? flags + b * T : nullptr, T, K, n.data());
    const S* xb = x + b * T * W;
    S* ob = out + b * T * W;
    for (int64_t t = 0; t < T; ++t) {
      const S* xr = xb + t * W;
      for (int64_t c = 0; c < W; ++c) acc[c] = w[c] * load(xr, c);
      for (int64_t j = 1; j < n[t]; ++j) {
        const S* xj = xr - j * W;
        const float* wj = w + j * W;
        for (int64_t c = 0; c < W; ++c) acc[c] += wj[c] * load(xj, c);
      }
      S* orow = ob + t * W;
      for (int64_t c = 0; c < W; ++c) store(orow, c, acc[c]);
    }
  }
}

// dx[s] = sum_j [j < n(s + j)] w[j] * g[s + j];  dw[j] += g[t] * x[t - j] for j < n(t)
template <typename S>
void backward_rows(const S* g, const S* x, const float* w, const uint8_t* flags, S* dx,
                   float* dw, int64_t b0, int64_t b1, int64_t T, int64_t W, int64_t K) {
  std::vector<float> acc(W);
  std::vector<int> n(T);
  for (int64_t b = b0; b < b1; ++b) {
    tap_counts(flags ? flags + b * T : nullptr, T, K, n.data());
    const S* gb = g + b * T * W;
    const S* xb = x + b * T * W;
    S* db = dx + b * T * W;
    for (int64_t s = 0; s < T; ++s) {
      const S* gr = gb + s * W;
      for (int64_t c = 0; c < W; ++c) acc[c] = w[c] * load(gr, c);
      for (int64_t j = 1; j < K && s + j < T; ++j) {
        if (j >= n[s + j]) continue;
        const S* gj = gr + j * W;
        const float* wj = w + j * W;
        for (int64_t c = 0; c < W; ++c) acc[c] += wj[c] * load(gj, c);
      }
      S* drow = db + s * W;
      for (int64_t c = 0; c < W; ++c) store(drow, c, acc[c]);
      for (int64_t j = 0; j < n[s]; ++j) {
        const S* xj = xb + (s - j) * W;
        float* dwj = dw + j * W;
        for (int64_t c = 0; c < W; ++c) dwj[c] += load(gr, c) * load(xj, c);
      }
    }
  }
}

// workers for B rows: at least one, at most one a row
int workers(int64_t B, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, B)));
}

// Split the batch rows over `threads` workers (rows are independent; dw is summed after).
template <typename F>
void over_rows(int64_t B, int threads, F run) {
  if (threads == 1) {
    run(0, int64_t{0}, B);
    return;
  }
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    int64_t b0 = B * i / threads, b1 = B * (i + 1) / threads;
    pool.emplace_back(run, i, b0, b1);
  }
  for (auto& th : pool) th.join();
}

template <typename S>
void forward(const void* x, const float* w, const uint8_t* flags, void* out, int64_t B, int64_t T,
             int64_t W, int64_t K, int threads) {
  over_rows(B, workers(B, threads), [&](int, int64_t b0, int64_t b1) {
    forward_rows(static_cast<const S*>(x), w, flags, static_cast<S*>(out), b0, b1, T, W, K);
  });
}

template <typename S>
void backward(const void* g, const void* x, const float* w, const uint8_t* flags, void* dx,
              float* dw, int64_t B, int64_t T, int64_t W, int64_t K, int threads) {
  threads = workers(B, threads);
  std::vector<std::vector<float>> parts(threads, std::vector<float>(K * W, 0.0f));
  over_rows(B, threads, [&](int i, int64_t b0, int64_t b1) {
    backward_rows(static_cast<const S*>(g), static_cast<const S*>(x), w, flags,
                  static_cast<S*>(dx), parts[i].data(), b0, b1, T, W, K);
  });
  for (int64_t k = 0; k < K * W; ++k) {
    float sum = 0.0f;
    for (auto& part : parts) sum += part[k];
    dw[k] = sum;
  }
}

}  // namespace

extern "C" {

// dtype: 0 = float32, 1 = bfloat16 (x, out, g, dx); w and dw are float32 (K, W); flags may be
// null (no BOS inside the window) or (B, T) bytes.
int canon_forward(int dtype, const void* x, const float* w, const uint8_t* flags, void* out,
                  int64_t B, int64_t T, int64_t W, int64_t K, int threads) {
  if (dtype == 0) forward<float>(x, w, flags, out, B, T, W, K, threads);
  else if (dtype == 1) forward<uint16_t>(x, w, flags, out, B, T, W, K, threads);
  else return 1;
  return 0;
}

int canon_backward(int dtype, const void* g, const void* x, const float* w, const uint8_t* flags,
                   void* dx, float* dw, int64_t B, int64_t T, int64_t W, int64_t K, int threads) {
  if (dtype == 0) backward<float>(g, x, w, flags, dx, dw, B, T, W, K, threads);
  else if (dtype == 1) backward<uint16_t>(g, x, w, flags, dx, dw, B, T, W, K, threads);
  else return 1;
  return 0;
}

int canon_abi_version() { return 1; }
}
