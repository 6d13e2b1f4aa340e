// The scan engine's time loops in C++: the same recurrences, buffers and gradients as the Python
// loops of scan.py, with each step's element-wise gate maths in one vectorised pass per batch
// row instead of ~20 tensor operations, and the step's matrix products called straight through
// the dispatcher. Built on first use by native.py (torch.utils.cpp_extension); scan.py runs its
// Python loops wherever this library is not built.
//
// Conventions (as in scan.py): time-major contiguous tensors; xg (T, B, G*H) holds the input
// projection and every bias; w_* are dense weights (N, K) used as x @ w.T, *_packed the same
// weight in oneDNN's layout (undefined: use at::mm). Optional tensors the Python side does not
// use are passed as None; optional outputs not computed are returned as empty tensors.
//
// Length (STYLE.md R10): one file of ~1350 lines, past our 600-line guide, because torch's
// extension builder compiles it as one unit (~10 s) and the row kernels and products must
// inline into the loops; it reads in sections (products, row kernels, LSTM, GRU). The four
// ops run past 50 lines each: a time step's pointer set-up, product and row kernel stay in one
// loop body, as the Python loops of scan.py do.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
constexpr double kLayerNormEps = 1e-5;  // lstmkit.nn.cells.LAYER_NORM_EPS

// ---- matrix products --------------------------------------------------------------------

template <typename S>
using Vec = at::vec::Vectorized<S>;

// Up to this many rows, x @ w.T is our own loop (gemv); above it a library GEMM.
constexpr int64_t kSmallRows = 2;

// The operands of gemv: y (M, N) = x1 (M, K1) @ w1.T [+ x2 (M, K2) @ w2.T] [+ add (M, N)]
// [+ b1 (N,)] [+ b2 (N,)], the weights w (N, K) as stored (row-major); null where absent.
template <typename S>
struct GemvArgs {
  const S *x1 = nullptr, *w1 = nullptr, *x2 = nullptr, *w2 = nullptr;
  int64_t K1 = 0, K2 = 0;
  int64_t ldx1 = 0;  // x1's row stride; 0: K1
  const S *add = nullptr, *b1 = nullptr, *b2 = nullptr;
  S* y = nullptr;
  int64_t M = 0, N = 0;
};

// acc[i] += Σ_k w[i * K + k] x[k] for four consecutive weight rows, vector lanes only (the
// lanes are summed by the caller); the k beyond the last full vector go to tail[i].
template <typename S>
inline void dot4(const S* w, const S* x, int64_t K, Vec<S>* acc, S* tail) {
  constexpr int64_t W = Vec<S>::size();
  const int64_t body = K - K % W;
  Vec<S> a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  for (int64_t k = 0; k < body; k += W) {
    const Vec<S> xv = Vec<S>::loadu(x + k);
    a0 = at::vec::fmadd(Vec<S>::loadu(w + k), xv, a0);
    a1 = at::vec::fmadd(Vec<S>::loadu(w + K + k), xv, a1);
    a2 = at::vec::fmadd(Vec<S>::loadu(w + 2 * K + k), xv, a2);
    a3 = at::vec::fmadd(Vec<S>::loadu(w + 3 * K + k), xv, a3);
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
  for (int64_t k = body; k < K; ++k) {
    for (int i = 0; i < 4; ++i) tail[i] += w[i * K + k] * x[k];
  }
}

// y[m, n] for n in [n0, n0 + count), count <= 4 (the last block reads its rows one at a time).
template <typename S>
inline void gemv_block(const GemvArgs<S>& g, int64_t m, int64_t n0, int64_t count) {
  Vec<S> acc[4] = {Vec<S>(S(0)), Vec<S>(S(0)), Vec<S>(S(0)), Vec<S>(S(0))};
  S tail[4] = {S(0), S(0), S(0), S(0)};
  const int64_t ld1 = g.ldx1 > 0 ? g.ldx1 : g.K1;
  const auto parts = {std::make_tuple(g.x1 + m * ld1, g.w1, g.K1),
                      std::make_tuple(g.x2 + m * g.K2, g.w2, g.K2)};
  for (const auto& [x, w, K] : parts) {
    if (w == nullptr) continue;
    if (count == 4) {
      dot4(w + n0 * K, x, K, acc, tail);
      continue;
    }
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t k = 0; k < K; ++k) tail[i] += w[(n0 + i) * K + k] * x[k];
    }
  }
  const auto add = [](Vec<S> a, Vec<S> b) { return a + b; };
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = n0 + i;
    S v = (count == 4 ? at::vec::vec_reduce_all<S>(add, acc[i]) : S(0)) + tail[i];
    if (g.add != nullptr) v += g.add[m * g.N + n];
    if (g.b1 != nullptr) v += g.b1[n];
    if (g.b2 != nullptr) v += g.b2[n];
    g.y[m * g.N + n] = v;
  }
}

// The product for a few rows: dot products along the weights' rows, which are read in place
// (no transposed copy to keep in step), four outputs at a time. The outputs are split across
// the cores in the same blocks at every call, so at batch 1 each core keeps its half of the
// weight in its own L2 cache from step to step (MKL's GEMV streams all of it through one core).
template <typename S>
void gemv(const GemvArgs<S>& g) {
  // Blocks per thread: at least ~32k weights each, or waking the second core costs more than
  // it saves (measured: H = 64 at batch 1 takes 4.8 us on one core, 7.0 on two).
  const int64_t grain = std::max<int64_t>(1, 32768 / (4 * (g.K1 + (g.w2 ? g.K2 : 0))));
  at::parallel_for(0, (g.N + 3) / 4, grain, [&](int64_t q0, int64_t q1) {
    for (int64_t m = 0; m < g.M; ++m) {
      for (int64_t q = q0; q < q1; ++q) {
        gemv_block(g, m, 4 * q, std::min<int64_t>(4, g.N - 4 * q));
      }
    }
  });
}

// Small products of a few dozen rows by a small weight, y (M, N) = x (M, K) @ wt (K, N) (+ add),
// wt = w.T contiguous: tiles of 4 rows by 2 vectors of columns in 8 accumulators, x broadcast,
// no horizontal sums; the column tiles split across the cores. MKL takes ~13 us for a
// (32 x 64) @ (64 x 256) on the machine we measure on, most of a tiny LSTM's step.
constexpr int64_t kSmallGemmRows = 64;  // up to this many rows,
constexpr int64_t kSmallGemmWeights = 1 << 16;  // and a weight up to this many values

// One tile of small_gemm: ROWS rows from m0, 2 vectors of columns from n0 (ROWS fixed at compile
// time, so that the accumulators stay in registers).
template <typename S, int ROWS>
inline void small_gemm_tile(const S* x, int64_t ldx, const S* wt, const S* add, S* y,
                            int64_t m0, int64_t n0, int64_t K, int64_t N) {
  constexpr int64_t W = Vec<S>::size();
  Vec<S> a0[ROWS], a1[ROWS];
  for (int r = 0; r < ROWS; ++r) a0[r] = a1[r] = Vec<S>(S(0));
  for (int64_t k = 0; k < K; ++k) {
    const Vec<S> w0 = Vec<S>::loadu(wt + k * N + n0), w1 = Vec<S>::loadu(wt + k * N + n0 + W);
    for (int r = 0; r < ROWS; ++r) {
      const Vec<S> xv(x[(m0 + r) * ldx + k]);
      a0[r] = at::vec::fmadd(xv, w0, a0[r]);
      a1[r] = at::vec::fmadd(xv, w1, a1[r]);
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    S* yr = y + (m0 + r) * N + n0;
    if (add != nullptr) {
      const S* ar = add + (m0 + r) * N + n0;
      a0[r] += Vec<S>::loadu(ar);
      a1[r] += Vec<S>::loadu(ar + W);
    }
    a0[r].store(yr);
    a1[r].store(yr + W);
  }
}

template <typename S>
void small_gemm(const S* x, int64_t ldx, const S* wt, const S* add, S* y, int64_t M, int64_t K,
                int64_t N) {
  constexpr int64_t kCols = 2 * Vec<S>::size();
  const int64_t tiles = N / kCols;
  // Column tiles per thread: at least ~32k multiply-adds each.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, M * K * kCols));
  at::parallel_for(0, tiles + 1, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (c < tiles) {
        int64_t m = 0;
        for (; m + 4 <= M; m += 4) small_gemm_tile<S, 4>(x, ldx, wt, add, y, m, c * kCols, K, N);
        for (; m < M; ++m) small_gemm_tile<S, 1>(x, ldx, wt, add, y, m, c * kCols, K, N);
        continue;
      }
      for (int64_t m = 0; m < M; ++m) {  // the columns past the last full tile
        for (int64_t n = tiles * kCols; n < N; ++n) {
          S v = add == nullptr ? S(0) : add[m * N + n];
          for (int64_t k = 0; k < K; ++k) v += x[m * ldx + k] * wt[k * N + n];
          y[m * N + n] = v;
        }
      }
    }
  });
}

// Rows of product()'s `small` buffer for a batch of B rows.
inline int64_t small_rows(int64_t B) {
  return std::max(kSmallRows, std::min(B, kSmallGemmRows));
}

// A weight w (N, K) for repeated products x @ w.T with up to `rows` rows: its oneDNN packing
// (from the Python side, which decides where that pays, engines/gemm.py), or w.T for
// small_gemm where the rows and the weight are small.
struct Product {
  Tensor w, packed, wt;
  Product(const Tensor& w_, const std::optional<Tensor>& packed_, int64_t rows)
      : w(w_.contiguous()) {
    if (packed_.has_value() && packed_->defined()) packed = *packed_;
    // (at least 16 outputs: narrower products would run in small_gemm's scalar tail alone)
    if (rows <= kSmallGemmRows && w.numel() <= kSmallGemmWeights && w.size(0) >= 16) {
      wt = w.t().contiguous();
    }
  }
};

// The Product of an optional weight (a projection, the reset-before GRU's W_hn): none for null.
std::optional<Product> optional_product(const Tensor* w, const OptTensor& packed, int64_t rows) {
  return w == nullptr ? std::nullopt : std::optional<Product>(Product(*w, packed, rows));
}

// x @ w.T (+ add), contiguous: oneDNN where packed, else MKL (product() takes a few rows).
Tensor mm_nt(const Tensor& x, const Product& p, const Tensor* add = nullptr) {
  const Tensor xc = x.contiguous();
  if (p.packed.defined()) {
    if (add == nullptr) {
      static auto op = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                           .typed<Tensor(const Tensor&, const Tensor&, const OptTensor&,
                                         c10::string_view,
                                         c10::List<std::optional<c10::Scalar>>,
                                         std::optional<c10::string_view>)>();
      return op.call(xc, p.packed, std::nullopt, "none",
                     c10::List<std::optional<c10::Scalar>>(), "").contiguous();
    }
    static auto op_add = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_linear_pointwise", "binary")
                             .typed<Tensor(const Tensor&, const Tensor&, const Tensor&,
                                           const OptTensor&, c10::string_view)>();
    return op_add.call(xc, *add, p.packed, std::nullopt, "add").contiguous();
  }
  return (add == nullptr ? at::mm(xc, p.w.t()) : at::addmm(*add, xc, p.w.t())).contiguous();
}

// The time loops' products: M rows at x (row stride ldx) @ p.w.T (+ add (M, N) contiguous), as
// a pointer valid until the next call with the same buffers. A few rows go through gemv, and
// small products through small_gemm, into `small` (M x N values, reused step after step: no
// tensor is made, which at batch 1 is a good part of a step); more through mm_nt, the result
// kept in `held`.
template <typename S>
S* product(const S* x, int64_t ldx, int64_t M, const Product& p, const S* add, S* small,
           Tensor& held) {
  const int64_t K = p.w.size(1), N = p.w.size(0);
  if (M <= kSmallRows) {
    GemvArgs<S> g;
    g.x1 = x;
    g.ldx1 = ldx;
    g.w1 = p.w.data_ptr<S>();
    g.K1 = K;
    g.add = add;
    g.y = small;
    g.M = M;
    g.N = N;
    gemv(g);
    return small;
  }
  if (p.wt.defined()) {
    small_gemm(x, ldx, p.wt.data_ptr<S>(), add, small, M, K, N);
    return small;
  }
  const auto opts = p.w.options();
  const Tensor xt = at::from_blob(const_cast<S*>(x), {M, K}, {ldx, 1}, opts);
  if (add == nullptr) {
    held = mm_nt(xt, p);
  } else {
    const Tensor a = at::from_blob(const_cast<S*>(add), {M, N}, opts);
    held = mm_nt(xt, p, &a);
  }
  return held.data_ptr<S>();
}

// a.T @ b, the weight gradients' shape (a (K, M), b (K, N), the reduction over their rows).
// torch.mm sends it to MKL, which runs at half oneDNN's speed on the AMD EPYC we measure on
// (a 6400-row LSTM(256) gradient: 16.3 ms against 7.2), and torch exposes oneDNN's matmul only
// inside ATen: at::native::mkldnn_matmul, which reads the transposed operand through its
// strides. It is private, so it is looked up by name at run time in torch's CPU library (loaded
// by torch already), never linked; only in torch 2.x, whose releases all have this signature (a
// C++ name does not encode the return type, so a changed one could not be told from the name).
// Where it is missing or disagrees with at::mm, mm_tn falls back to at::mm and
// onednn_matmul_found() says so (tests/nn/test_native.py fails loudly on a build with oneDNN).
using MkldnnMatmul = void (*)(const Tensor&, const Tensor&, const Tensor&, float, float);

MkldnnMatmul find_mkldnn_matmul() {
#if TORCH_VERSION_MAJOR != 2
  return nullptr;
#endif
  void* lib = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
  void* fn = dlsym(lib == nullptr ? RTLD_DEFAULT : lib,
                   "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff");
  MkldnnMatmul found = reinterpret_cast<MkldnnMatmul>(fn);
  if (found == nullptr || !at::hasMKLDNN()) return nullptr;
  // Checked once against at::mm on a small product with a transposed operand.
  const Tensor a = at::arange(35, at::kFloat).reshape({7, 5}).sin(),
               b = at::arange(21, at::kFloat).reshape({7, 3}).cos();
  Tensor out = at::empty({5, 3}, a.options());
  try {
    found(a.t(), b, out, 0.0f, 1.0f);
  } catch (const std::exception&) {
    return nullptr;
  }
  return at::allclose(out, at::mm(a.t(), b), 1e-5, 1e-5) ? found : nullptr;
}

MkldnnMatmul mkldnn_matmul() {
  static const MkldnnMatmul fn = find_mkldnn_matmul();
  return fn;
}

bool onednn_matmul_found() { return mkldnn_matmul() != nullptr; }

Tensor mm_tn(const Tensor& a, const Tensor& b) {
  const MkldnnMatmul fn = mkldnn_matmul();
  if (fn == nullptr || a.scalar_type() != at::kFloat || b.scalar_type() != at::kFloat ||
      !a.is_cpu() || a.size(0) == 0) {
    return at::mm(a.t(), b);
  }
  Tensor out = at::empty({a.size(1), b.size(1)}, a.options());
  try {
    fn(a.t(), b.contiguous(), out, 0.0f, 1.0f);
  } catch (const std::exception&) {  // a shape or layout oneDNN refuses: the library GEMM
    return at::mm(a.t(), b);
  }
  return out;
}

const Tensor* ptr_or_null(const OptTensor& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

template <typename S>
const S* data_or_null(const Tensor* t) {
  return t == nullptr ? nullptr : t->data_ptr<S>();
}

// ---- vectorised row kernels ---------------------------------------------------------------

// σ and tanh from one exponential: torch's exp_u20 (the polynomial its softmax uses, within 20
// ulp; float64 falls back to the exact exp), tanh(x) = 1 - 2 / (1 + e^{2x}). The backward
// differentiates the values these return (σ' = σ (1 - σ), tanh' = 1 - tanh²), so forward and
// backward stay consistent.
template <typename S>
inline void sigmoid_row(const S* x, S* y, int64_t n) {
  const Vec<S> one(S(1));
  at::vec::map([one](Vec<S> v) { return one / (one + v.neg().exp_u20()); }, y, x, n);
}

template <typename S>
inline void tanh_row(const S* x, S* y, int64_t n) {
  const Vec<S> one(S(1)), two(S(2));
  at::vec::map([one, two](Vec<S> v) { return one - two / (one + (v + v).exp_u20()); }, y, x, n);
}

// Σ x and Σ (x - m)², in vector lanes (the order torch's own reductions use, not sequential).
template <typename S>
inline S sum_row(const S* x, int64_t n) {
  Vec<S> acc(S(0));
  int64_t j = 0;
  for (; j + Vec<S>::size() <= n; j += Vec<S>::size()) acc += Vec<S>::loadu(x + j);
  S sum = at::vec::vec_reduce_all<S>([](Vec<S> a, Vec<S> b) { return a + b; }, acc);
  for (; j < n; ++j) sum += x[j];
  return sum;
}

template <typename S>
inline S centered_square_sum_row(const S* x, S m, int64_t n) {
  const Vec<S> mv(m);
  Vec<S> acc(S(0));
  int64_t j = 0;
  for (; j + Vec<S>::size() <= n; j += Vec<S>::size()) {
    const Vec<S> d = Vec<S>::loadu(x + j) - mv;
    acc += d * d;
  }
  S sum = at::vec::vec_reduce_all<S>([](Vec<S> a, Vec<S> b) { return a + b; }, acc);
  for (; j < n; ++j) sum += (x[j] - m) * (x[j] - m);
  return sum;
}

// x̂ = (x - mean) * rstd over n values; returns rstd.
template <typename S>
inline S layer_norm_row(const S* x, S* xhat, int64_t n) {
  const S mean = sum_row(x, n) / S(n);
  const S rstd = S(1) / std::sqrt(centered_square_sum_row(x, mean, n) / S(n) + S(kLayerNormEps));
  at::vec::map([mean, rstd](Vec<S> v) { return (v - Vec<S>(mean)) * Vec<S>(rstd); }, xhat, x, n);
  return rstd;
}

// dL/dy through z = gain ⊙ x̂, x̂ = LN(y): rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)), dx̂ = gain dz.
// dy may alias dz.
template <typename S>
inline void layer_norm_backward_row(const S* dz, const S* gain, const S* xhat, S rstd, S* dy,
                                    int64_t n) {
  Vec<S> acc_d(S(0)), acc_dx(S(0));
  int64_t j = 0;
  for (; j + Vec<S>::size() <= n; j += Vec<S>::size()) {
    const Vec<S> d = Vec<S>::loadu(dz + j) * Vec<S>::loadu(gain + j);
    acc_d += d;
    acc_dx += d * Vec<S>::loadu(xhat + j);
  }
  const auto add = [](Vec<S> a, Vec<S> b) { return a + b; };
  S sum_d = at::vec::vec_reduce_all<S>(add, acc_d), sum_dx = at::vec::vec_reduce_all<S>(add, acc_dx);
  for (; j < n; ++j) {
    sum_d += dz[j] * gain[j];
    sum_dx += dz[j] * gain[j] * xhat[j];
  }
  const S mean_d = sum_d / S(n), mean_dx = sum_dx / S(n);
  for (j = 0; j < n; ++j) dy[j] = rstd * (dz[j] * gain[j] - mean_d - xhat[j] * mean_dx);
}

// y = gain ⊙ LN(raw) + b (or raw + b) over n values; saves x̂ and rstd under layer norm.
template <typename S>
inline void recurrent_row(const S* raw, const S* gain, const S* b, S* xhat, S* rstd, S* y,
                          int64_t n) {
  if (gain != nullptr) {
    *rstd = layer_norm_row(raw, xhat, n);
    for (int64_t j = 0; j < n; ++j) y[j] = xhat[j] * gain[j];
  } else if (y != raw) {
    std::copy(raw, raw + n, y);
  }
  if (b != nullptr) {
    for (int64_t j = 0; j < n; ++j) y[j] += b[j];
  }
}

// h_in = h ⊙ mask: the recurrent-dropout input of W_hh, n values.
template <typename S>
inline void mask_row(const S* h, const S* mask, S* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = h[j] * mask[j];
}

// The gradient reaching a state from the step after it: d_rec ⊙ mask (d_rec = dL/d(h_in) through
// W_hh; no mask: d_rec; null: none) + carry (the paths around W_hh) + grad (dL/dh from the
// output; or null).
template <typename S>
inline void state_grad(const S* d_rec, const S* mask, const S* carry, const S* grad, S* out,
                       int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const S rec = d_rec == nullptr ? S(0) : (mask ? d_rec[j] * mask[j] : d_rec[j]);
    out[j] = rec + carry[j] + (grad ? grad[j] : S(0));
  }
}

// state_grad over B rows of width w when only the first n_rec rows of d_rec exist (the rows
// that ran at the next step; the others passed it by).
template <typename S>
inline void state_grad_rows(const S* d_rec, int64_t n_rec, const S* mask, const S* carry,
                            const S* grad, S* out, int64_t B, int64_t w) {
  state_grad(d_rec, mask, carry, grad, out, n_rec * w);
  const int64_t o = n_rec * w;
  state_grad<S>(nullptr, nullptr, carry + o, grad ? grad + o : nullptr, out + o, (B - n_rec) * w);
}

// Rows per parallel chunk: about 16k values of work each, so small steps stay on one thread.
inline int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

Tensor empty_if(bool keep, at::IntArrayRef sizes, const Tensor& like) {
  return keep ? like.new_empty(sizes) : like.new_empty({0});
}

// Variable lengths: the batch rows are sorted longest first, and active[t] rows still run at
// step t (empty: all B). Rows past their length are skipped: the forward carries their state
// unchanged and zeroes what backward reads of them in the (T, B, ...) buffers; the backward
// passes their gradient by.
inline int64_t rows_at(at::IntArrayRef active, int64_t t, int64_t B) {
  return active.empty() ? B : active[t];
}

void check_active(at::IntArrayRef active, int64_t T, int64_t B) {
  TORCH_CHECK(active.empty() || static_cast<int64_t>(active.size()) == T,
              "lstmkit_native: active has ", active.size(), " entries for ", T, " steps");
  for (const int64_t n : active) {
    TORCH_CHECK(n >= 0 && n <= B, "lstmkit_native: active rows ", n, " outside [0, ", B, "]");
  }
}

// The packed layout of the loops' input xg, its gradients and the inputs of the weight
// gradients (h_in, the GRU's s): step t's running rows at rows [off[t], off[t + 1]) of an
// (N, width) tensor, N = off[T], as PackedSequence.data holds them. With every row running
// (active empty) it is the dense (T * B, width) layout. The GEMMs after the loops (dW_hh, and
// those of the input projection) then cover the rows that ran and no padding. Checks
// `active` against T and B first.
std::vector<int64_t> step_offsets(at::IntArrayRef active, int64_t T, int64_t B) {
  check_active(active, T, B);
  std::vector<int64_t> off(T + 1, 0);
  for (int64_t t = 0; t < T; ++t) off[t + 1] = off[t] + rows_at(active, t, B);
  return off;
}

// The steps of xg: (T, B, G) dense without `active`, (N, G) packed with it (N = Σ active).
int64_t steps_of(const Tensor& xg, at::IntArrayRef active) {
  return active.empty() ? xg.size(0) : static_cast<int64_t>(active.size());
}

// xg's layout against the offsets: (T, B, G), or (N, G) packed.
void check_xg(const Tensor& xg, at::IntArrayRef active, const std::vector<int64_t>& off,
              int64_t B, int64_t G) {
  const int64_t T = static_cast<int64_t>(off.size()) - 1;
  if (active.empty()) {
    TORCH_CHECK(xg.dim() == 3 && xg.size(0) == T && xg.size(1) == B && xg.size(2) == G,
                "lstmkit_native: xg of shape ", xg.sizes(), " for (", T, ", ", B, ", ", G, ")");
  } else {
    TORCH_CHECK(xg.dim() == 2 && xg.size(0) == off[T] && xg.size(1) == G,
                "lstmkit_native: packed xg of shape ", xg.sizes(), " for ", off[T], " rows of ",
                G);
  }
}

// A buffer in the packed layout: (T, B, width) without `active` (the dense shape), else (N, width).
Tensor packed_empty(at::IntArrayRef active, const std::vector<int64_t>& off, int64_t B,
                    int64_t width, const Tensor& like) {
  const int64_t T = static_cast<int64_t>(off.size()) - 1;
  return active.empty() ? like.new_empty({T, B, width}) : like.new_empty({off[T], width});
}

// h_in, the input of W_hh, kept apart from h_all where it differs from h or where backward
// needs it packed: h ⊙ mask under recurrent dropout, or the rows that ran with `active`
// (dW_hh over those rows only). (N, width) packed, or one step's (B, width) without `save`;
// empty where h_all[:-1] serves.
Tensor h_in_buffer(bool has_mask, bool save, at::IntArrayRef active,
                   const std::vector<int64_t>& off, int64_t B, int64_t width, const Tensor& like) {
  const bool keep = has_mask || (save && !active.empty());
  return keep ? like.new_empty({save ? off.back() : B, width}) : like.new_empty({0});
}

// Step t's h_in for its n running rows from h_prev (B, width): written at row `row0` of the
// h_in_buffer and returned there, or h_prev itself where the buffer is empty.
template <typename S>
const S* stage_h_in(const Tensor& buf, const S* h_prev, const S* mask, int64_t row0, int64_t n,
                    int64_t width) {
  if (buf.numel() == 0) return h_prev;
  S* hi = buf.data_ptr<S>() + row0 * width;
  if (mask != nullptr) {
    mask_row(h_prev, mask, hi, n * width);
  } else {
    std::copy(h_prev, h_prev + n * width, hi);
  }
  return hi;
}

// Rows [n, B) of a (B, width) buffer: zeroed (buffers backward reads) or copied from src.
template <typename S>
inline void zero_rows(S* p, int64_t n, int64_t B, int64_t width) {
  if (p != nullptr) std::fill(p + n * width, p + B * width, S(0));
}

template <typename S>
inline void copy_rows(const S* src, S* dst, int64_t n, int64_t B, int64_t width) {
  std::copy(src + n * width, src + B * width, dst + n * width);
}

// Sums over all steps and rows that the backward loops add up while a row is in cache (the
// gradients of layer-norm gains and of the biases beside them), one partial sum per thread:
// at::parallel_for gives each thread the same rows at every step, so the order is fixed.
// Each named sum is a column range [offset, offset + width) of one (threads, total) buffer,
// in float64 whatever the data's type: a float32 running sum over T * B rows would lose what
// torch's pairwise sums keep.
struct ThreadSums {
  Tensor buf;
  at::ScalarType dtype;
  ThreadSums(int64_t total, const Tensor& like) : dtype(like.scalar_type()) {
    buf = like.new_zeros({at::get_num_threads(), std::max<int64_t>(total, 1)}, at::kDouble);
  }
  double* mine() const { return buf.data_ptr<double>() + at::get_thread_num() * buf.size(1); }
  Tensor sum(int64_t offset, int64_t width) const {
    return buf.narrow(1, offset, width).sum(0).to(dtype);
  }
};

// acc_d += d and acc_dx += d ⊙ x (either accumulator may be null), n values.
template <typename S>
inline void accumulate_row(const S* d, const S* x, double* acc_dx, double* acc_d, int64_t n) {
  if (acc_dx != nullptr) {
    for (int64_t j = 0; j < n; ++j) acc_dx[j] += double(d[j]) * double(x[j]);
  }
  if (acc_d != nullptr) {
    for (int64_t j = 0; j < n; ++j) acc_d[j] += d[j];
  }
}

// ---- LSTM ---------------------------------------------------------------------------------

// One forward step's pointers; the row kernel indexes rows itself. Null where an option is off.
template <typename S>
struct LSTMStep {
  int64_t H = 0, R = 0;
  const S* pre = nullptr;  // (B, 4H) xg + W_hh h_in; null under layer norm
  const S* raw = nullptr;  // (B, 4H) W_hh h_in, under layer norm
  const S* xg = nullptr;  // (B, 4H)
  const S* b_hh = nullptr;  // (4H,) under layer norm (added after it)
  const S* ln_hh = nullptr;  // (4H,) gain
  S* xhat_h = nullptr;  // (B, 4H)
  S* rstd_h = nullptr;  // (B,)
  S* act = nullptr;  // (B, 4H): σ(i), σ(f), tanh(g), σ(o)
  const S* c_prev = nullptr;  // (B, H)
  S* c_next = nullptr;  // (B, H), after zoneout
  S* c_new = nullptr;  // (B, H) scratch under zoneout: f c + i g
  const S* ln_cw = nullptr;  // (H,)
  const S* ln_cb = nullptr;  // (H,)
  S* xhat_c = nullptr;  // (B, H)
  S* rstd_c = nullptr;  // (B,)
  S* tanh_c = nullptr;  // (B, H)
  const S* h_prev = nullptr;  // (B, R)
  S* h_next = nullptr;  // (B, R); unused with a projection
  S* r = nullptr;  // (B, H) o ⊙ tanh(ĉ), with a projection
  const S* kh = nullptr;  // (B, R) zoneout / padding keep fraction
  const S* kc = nullptr;  // (B, H)
};

template <typename S>
void lstm_step_rows(const LSTMStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    S* a = p.act + b * G;
    const S* pre = p.pre + b * G;
    if (p.ln_hh != nullptr) {  // gates = xg + gain ⊙ LN(W_hh h_in) + b_hh
      recurrent_row(p.raw + b * G, p.ln_hh, p.b_hh, p.xhat_h + b * G, p.rstd_h + b, a, G);
      const S* x = p.xg + b * G;
      for (int64_t j = 0; j < G; ++j) a[j] += x[j];
      pre = a;
    }
    sigmoid_row(pre, a, 2 * H);
    tanh_row(pre + 2 * H, a + 2 * H, H);
    sigmoid_row(pre + 3 * H, a + 3 * H, H);
    const S *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H;
    const S* c0 = p.c_prev + b * H;
    S* cn = (p.kc == nullptr ? p.c_next : p.c_new) + b * H;
    for (int64_t j = 0; j < H; ++j) cn[j] = f[j] * c0[j] + i[j] * g[j];
    S* tc = p.tanh_c + b * H;
    if (p.ln_cw != nullptr) {
      S* xc = p.xhat_c + b * H;
      p.rstd_c[b] = layer_norm_row(cn, xc, H);
      for (int64_t j = 0; j < H; ++j) tc[j] = xc[j] * p.ln_cw[j];
      if (p.ln_cb != nullptr) {
        for (int64_t j = 0; j < H; ++j) tc[j] += p.ln_cb[j];
      }
      tanh_row(tc, tc, H);
    } else {
      tanh_row(cn, tc, H);
    }
    if (p.r != nullptr) {  // projected: h comes after the product with W_hr
      S* r = p.r + b * H;
      for (int64_t j = 0; j < H; ++j) r[j] = o[j] * tc[j];
    } else if (p.kh == nullptr) {
      S* hn = p.h_next + b * H;
      for (int64_t j = 0; j < H; ++j) hn[j] = o[j] * tc[j];
    } else {  // h = lerp(o ⊙ tanh ĉ, h_prev, k)
      const S *hp = p.h_prev + b * H, *k = p.kh + b * H;
      S* hn = p.h_next + b * H;
      for (int64_t j = 0; j < H; ++j) hn[j] = o[j] * tc[j] + k[j] * (hp[j] - o[j] * tc[j]);
    }
    if (p.kc != nullptr) {
      const S* k = p.kc + b * H;
      S* cx = p.c_next + b * H;
      for (int64_t j = 0; j < H; ++j) cx[j] = cn[j] + k[j] * (c0[j] - cn[j]);
    }
  }
}

// out = lerp(a, b, k) elementwise (k null: a), n values.
template <typename S>
void keep_lerp(const S* a, const S* b, const S* k, S* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = k == nullptr ? a[j] : a[j] + k[j] * (b[j] - a[j]);
}

// xg (T, B, 4H), or (N, 4H) packed with `active` (step_offsets). Returns h_all (T+1, B, R),
// c_T (B, H), and what backward keeps (empty where not saved): c_all (T+1, B, H), acts
// (T, B, 4H), tanh_c (T, B, H), h_in_all (N, R) packed (the input of W_hh, kept with a dropout
// mask or with `active`; otherwise it is h_all[:-1]), xhat_h (T, B, 4H), rstd_h (T, B),
// xhat_c (T, B, H), rstd_c (T, B).
std::vector<Tensor> lstm_forward(const Tensor& xg, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const OptTensor& w_hh_packed,
                                 const OptTensor& b_hh_, const OptTensor& ln_hh_,
                                 const OptTensor& w_hr_, const OptTensor& w_hr_packed,
                                 const OptTensor& ln_cw_, const OptTensor& ln_cb_,
                                 const OptTensor& mask_, const OptTensor& keep_h_,
                                 const OptTensor& keep_c_, at::IntArrayRef active, bool save) {
  at::NoGradGuard no_grad;
  const int64_t T = steps_of(xg, active), B = h0.size(0), G = xg.size(-1), H = G / 4,
                R = h0.size(1);
  const std::vector<int64_t> off = step_offsets(active, T, B);
  check_xg(xg, active, off, B, G);
  const Tensor *b_hh = ptr_or_null(b_hh_), *ln_hh = ptr_or_null(ln_hh_),
               *w_hr = ptr_or_null(w_hr_), *ln_cw = ptr_or_null(ln_cw_),
               *ln_cb = ptr_or_null(ln_cb_), *mask = ptr_or_null(mask_),
               *keep_h = ptr_or_null(keep_h_), *keep_c = ptr_or_null(keep_c_);
  const int64_t steps = save ? T : 1;
  Tensor h_all = xg.new_empty({T + 1, B, R});
  h_all[0].copy_(h0);
  Tensor c_all = xg.new_empty({save ? T + 1 : 2, B, H});
  c_all[0].copy_(c0);
  Tensor acts = xg.new_empty({steps, B, G});
  Tensor tanh_c = xg.new_empty({steps, B, H});
  Tensor h_in_all = h_in_buffer(mask != nullptr, save, active, off, B, R, xg);
  Tensor xhat_h = empty_if(ln_hh != nullptr, {steps, B, G}, xg);
  Tensor rstd_h = empty_if(ln_hh != nullptr, {steps, B}, xg);
  Tensor xhat_c = empty_if(ln_cw != nullptr, {steps, B, H}, xg);
  Tensor rstd_c = empty_if(ln_cw != nullptr, {steps, B}, xg);
  Tensor c_new = empty_if(keep_c != nullptr, {B, H}, xg);
  Tensor r_buf = empty_if(w_hr != nullptr, {B, H}, xg);
  const Product rec(w_hh, w_hh_packed, B);
  const std::optional<Product> proj = optional_product(w_hr, w_hr_packed, B);
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "lstmkit_lstm_forward", [&] {
    using S = scalar_t;
    const int64_t BG = B * G, BH = B * H, BR = B * R;
    LSTMStep<S> p;
    p.H = H;
    p.R = R;
    p.b_hh = data_or_null<S>(b_hh);
    p.ln_hh = data_or_null<S>(ln_hh);
    p.ln_cw = data_or_null<S>(ln_cw);
    p.ln_cb = data_or_null<S>(ln_cb);
    p.c_new = keep_c ? c_new.data_ptr<S>() : nullptr;
    p.r = w_hr ? r_buf.data_ptr<S>() : nullptr;
    Tensor small = xg.new_empty({small_rows(B), G}), held;  // product()'s buffers
    S* small_p = small.data_ptr<S>();
    const S *xg_p = xg.data_ptr<S>(), *mask_p = data_or_null<S>(mask),
            *kh_p = data_or_null<S>(keep_h), *kc_p = data_or_null<S>(keep_c);
    S *h_p = h_all.data_ptr<S>(), *c_p = c_all.data_ptr<S>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t k = save ? t : 0, n = rows_at(active, t, B);
      const int64_t c_in = save ? t : t % 2, c_out = save ? t + 1 : (t + 1) % 2;
      p.h_prev = h_p + t * BR;
      p.h_next = h_p + (t + 1) * BR;
      const S* h_in = stage_h_in<S>(h_in_all, p.h_prev, mask_p, save ? off[t] : 0, n, R);
      p.xg = xg_p + off[t] * G;
      // pre: xg + W_hh h_in; under layer norm raw: W_hh h_in
      const S* prod = product<S>(h_in, R, n, rec, ln_hh ? nullptr : p.xg, small_p, held);
      p.pre = ln_hh ? nullptr : prod;
      p.raw = ln_hh ? prod : nullptr;
      p.xhat_h = ln_hh ? xhat_h.data_ptr<S>() + k * BG : nullptr;
      p.rstd_h = ln_hh ? rstd_h.data_ptr<S>() + k * B : nullptr;
      p.act = acts.data_ptr<S>() + k * BG;
      p.c_prev = c_p + c_in * BH;
      p.c_next = c_p + c_out * BH;
      p.xhat_c = ln_cw ? xhat_c.data_ptr<S>() + k * BH : nullptr;
      p.rstd_c = ln_cw ? rstd_c.data_ptr<S>() + k * B : nullptr;
      p.tanh_c = tanh_c.data_ptr<S>() + k * BH;
      p.kh = kh_p ? kh_p + t * BR : nullptr;
      p.kc = kc_p ? kc_p + t * BH : nullptr;
      at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { lstm_step_rows(p, b0, b1); });
      if (w_hr != nullptr) {
        const S* h_new = product<S>(p.r, H, n, *proj, nullptr, small_p, held);  // (n, P)
        keep_lerp<S>(h_new, p.h_prev, p.kh, p.h_next, n * R);
      }
      if (n < B) {  // rows past their length: state carried, saved buffers zeroed
        copy_rows<S>(p.h_prev, p.h_next, n, B, R);
        copy_rows<S>(p.c_prev, p.c_next, n, B, H);
        zero_rows(p.act, n, B, G);
        zero_rows(p.tanh_c, n, B, H);
        zero_rows(p.xhat_h, n, B, G);
        zero_rows(p.rstd_h, n, B, 1);
        zero_rows(p.xhat_c, n, B, H);
        zero_rows(p.rstd_c, n, B, 1);
      }
    }
  });
  Tensor none = xg.new_empty({0});
  Tensor c_n = c_all[save ? T : T % 2].clone();
  if (!save) return {h_all, c_n, none, none, none, none, none, none, none, none};
  return {h_all, c_n, c_all, acts, tanh_c, h_in_all, xhat_h, rstd_h, xhat_c, rstd_c};
}

// The streaming step of a plain LSTM layer (no projection, no layer norm), inference only:
// x (B, F), h (B, H), c (B, H), the layer's weights and biases as they are (biases or None).
// At a few rows the gates come from one gemv over both weights; above, from the library's
// GEMMs. Then the gate row kernel of the scan. Returns h', c' (B, H).
std::vector<Tensor> lstm_cell_step(const Tensor& x_, const Tensor& h_, const Tensor& c_,
                                   const Tensor& w_ih_, const Tensor& w_hh_,
                                   const OptTensor& b_ih_, const OptTensor& b_hh_) {
  at::NoGradGuard no_grad;
  const Tensor x = x_.contiguous(), h = h_.contiguous(), c = c_.contiguous(),
               w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t B = x.size(0), G = w_hh.size(0), H = G / 4;
  TORCH_CHECK(w_ih.size(1) == x.size(1) && w_hh.size(1) == H && h.size(1) == H &&
                  c.size(1) == H && w_ih.size(0) == G && h.size(0) == B && c.size(0) == B,
              "lstm_cell_step: expected x (B, F), h and c (B, H), w_ih (4H, F), w_hh (4H, H)");
  const OptTensor b_ih_c = b_ih_.has_value() && b_ih_->defined() ? OptTensor(b_ih_->contiguous())
                                                                  : std::nullopt;
  const OptTensor b_hh_c = b_hh_.has_value() && b_hh_->defined() ? OptTensor(b_hh_->contiguous())
                                                                  : std::nullopt;
  const Tensor *b_ih = ptr_or_null(b_ih_c), *b_hh = ptr_or_null(b_hh_c);
  TORCH_CHECK((b_ih == nullptr || b_ih->numel() == G) && (b_hh == nullptr || b_hh->numel() == G),
              "lstm_cell_step: biases must have 4H values");
  Tensor pre;
  if (B <= kSmallRows) {
    pre = x.new_empty({B, G});
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_step_gemv", [&] {
      using S = scalar_t;
      GemvArgs<S> g;
      g.x1 = x.data_ptr<S>();
      g.w1 = w_ih.data_ptr<S>();
      g.K1 = x.size(1);
      g.x2 = h.data_ptr<S>();
      g.w2 = w_hh.data_ptr<S>();
      g.K2 = H;
      g.b1 = data_or_null<S>(b_ih);
      g.b2 = data_or_null<S>(b_hh);
      g.y = pre.data_ptr<S>();
      g.M = B;
      g.N = G;
      gemv(g);
    });
  } else {
    pre = b_ih == nullptr ? at::mm(x, w_ih.t()) : at::addmm(*b_ih, x, w_ih.t());
    pre.addmm_(h, w_hh.t());
    if (b_hh != nullptr) pre.add_(*b_hh);
  }
  Tensor act = x.new_empty({B, G}), tanh_c = x.new_empty({B, H});
  Tensor h_next = x.new_empty({B, H}), c_next = x.new_empty({B, H});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmkit_lstm_cell_step", [&] {
    using S = scalar_t;
    LSTMStep<S> p;
    p.H = H;
    p.R = H;
    p.pre = pre.data_ptr<S>();
    p.act = act.data_ptr<S>();
    p.c_prev = c.data_ptr<S>();
    p.c_next = c_next.data_ptr<S>();
    p.tanh_c = tanh_c.data_ptr<S>();
    p.h_next = h_next.data_ptr<S>();
    at::parallel_for(0, B, grain(G), [&](int64_t b0, int64_t b1) { lstm_step_rows(p, b0, b1); });
  });
  return {h_next, c_next};
}

// One backward step's pointers. dr = dL/d(o ⊙ tanh ĉ) (B, H); dc (B, H) is the cell gradient
// already split by zoneout (dc_prev: the kept part, or null).
template <typename S>
struct LSTMGradStep {
  int64_t H = 0;
  const S* dr = nullptr;
  S* dc = nullptr;
  const S* dc_prev = nullptr;
  const S* act = nullptr;  // (B, 4H)
  const S* tanh_c = nullptr;  // (B, H)
  const S* c_prev = nullptr;  // (B, H)
  const S* ln_cw = nullptr;
  const S* xhat_c = nullptr;
  const S* rstd_c = nullptr;
  S* d_c_hat = nullptr;  // (B, H) scratch: dL/d(gain ⊙ LN(c) + bias)
  const ThreadSums* sums = nullptr;  // under layer norm: columns [G b_hh | G ln_hh | H ln_cw | H ln_cb]
  S* d_gates = nullptr;  // (B, 4H)
  const S* ln_hh = nullptr;
  const S* xhat_h = nullptr;
  const S* rstd_h = nullptr;
  S* d_raw = nullptr;  // (B, 4H), under layer norm
};

template <typename S>
void lstm_backward_rows(const LSTMGradStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 4 * H;
  double* acc = p.sums == nullptr ? nullptr : p.sums->mine();
  for (int64_t b = b0; b < b1; ++b) {
    const S* a = p.act + b * G;
    const S *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H;
    const S *tc = p.tanh_c + b * H, *dr = p.dr + b * H, *cp = p.c_prev + b * H;
    S* dc = p.dc + b * H;
    S* dg = p.d_gates + b * G;
    if (p.ln_cw != nullptr) {
      S* dch = p.d_c_hat + b * H;
      for (int64_t j = 0; j < H; ++j) dch[j] = dr[j] * o[j] * (S(1) - tc[j] * tc[j]);
      accumulate_row<S>(dch, p.xhat_c + b * H, acc + 2 * G, acc + 2 * G + H, H);
      S* scratch = dg;  // the first H of this row's gate gradients, written below
      layer_norm_backward_row(dch, p.ln_cw, p.xhat_c + b * H, p.rstd_c[b], scratch, H);
      for (int64_t j = 0; j < H; ++j) dc[j] += scratch[j];
    } else {
      for (int64_t j = 0; j < H; ++j) dc[j] += dr[j] * o[j] * (S(1) - tc[j] * tc[j]);
    }
    const S* dcp = p.dc_prev == nullptr ? nullptr : p.dc_prev + b * H;
    for (int64_t j = 0; j < H; ++j) {
      const S d = dc[j];
      dg[j] = d * g[j] * i[j] * (S(1) - i[j]);
      dg[H + j] = d * cp[j] * f[j] * (S(1) - f[j]);
      dg[2 * H + j] = d * i[j] * (S(1) - g[j] * g[j]);
      dg[3 * H + j] = dr[j] * tc[j] * o[j] * (S(1) - o[j]);
      dc[j] = dcp == nullptr ? d * f[j] : dcp[j] + d * f[j];
    }
    if (p.ln_hh != nullptr) {
      accumulate_row<S>(dg, p.xhat_h + b * G, acc + G, acc, G);
      layer_norm_backward_row(dg, p.ln_hh, p.xhat_h + b * G, p.rstd_h[b], p.d_raw + b * G, G);
    }
  }
}

// Returns d_gates = dL/dxg and under layer norm d_raw = dL/d(W_hh h_in), (T, B, 4H) or, with
// `active`, (N, 4H) packed (the forward's xg layout); d_h_new (T, B, P) with a projection, dh0, dc0, and under layer norm the sums over steps and
// rows: dL/db_hh and dL/d(ln_hh) (4H,); under cell layer norm dL/d(ln_cw), dL/d(ln_cb) (H,).
std::vector<Tensor> lstm_backward(const Tensor& grad_hs, const Tensor& grad_c_n,
                                  const Tensor& c_all, const Tensor& acts, const Tensor& tanh_c,
                                  const Tensor& w_hh_t, const OptTensor& w_hh_t_packed,
                                  const OptTensor& ln_hh_, const OptTensor& xhat_h_,
                                  const OptTensor& rstd_h_, const OptTensor& w_hr_t_,
                                  const OptTensor& w_hr_t_packed, const OptTensor& ln_cw_,
                                  const OptTensor& xhat_c_, const OptTensor& rstd_c_,
                                  const OptTensor& mask_, const OptTensor& keep_h_,
                                  const OptTensor& keep_c_, at::IntArrayRef active) {
  at::NoGradGuard no_grad;
  const int64_t T = acts.size(0), B = acts.size(1), G = acts.size(2), H = G / 4,
                R = grad_hs.size(2);
  const std::vector<int64_t> off = step_offsets(active, T, B);
  const Tensor *ln_hh = ptr_or_null(ln_hh_), *w_hr_t = ptr_or_null(w_hr_t_),
               *ln_cw = ptr_or_null(ln_cw_), *mask = ptr_or_null(mask_),
               *keep_h = ptr_or_null(keep_h_), *keep_c = ptr_or_null(keep_c_);
  Tensor d_gates = packed_empty(active, off, B, G, acts);
  Tensor d_raw = ln_hh ? packed_empty(active, off, B, G, acts) : d_gates;
  Tensor d_h_new = empty_if(w_hr_t != nullptr, {T, B, R}, acts);
  Tensor d_c_hat = empty_if(ln_cw != nullptr, {B, H}, acts);
  const ThreadSums sums(ln_hh || ln_cw ? 2 * G + 2 * H : 0, acts);
  Tensor dh = acts.new_empty({B, R});  // dL/dh_t through this step's output
  Tensor carry = acts.new_zeros({B, R});  // dL/dh_{t-1} kept by zoneout at step t
  Tensor dc = grad_c_n.contiguous().clone();
  Tensor dc_prev = empty_if(keep_c != nullptr, {B, H}, acts);
  Tensor d_rec = acts.new_zeros({B, R});  // d_raw_{t+1} @ W_hh, before the dropout mask
  const Product rec(w_hh_t, w_hh_t_packed, B);
  const std::optional<Product> proj = optional_product(w_hr_t, w_hr_t_packed, B);
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstmkit_lstm_backward", [&] {
    using S = scalar_t;
    const int64_t BG = B * G, BH = B * H, BR = B * R;
    LSTMGradStep<S> p;
    p.H = H;
    p.dc = dc.data_ptr<S>();
    p.dc_prev = keep_c ? dc_prev.data_ptr<S>() : nullptr;
    p.ln_cw = data_or_null<S>(ln_cw);
    p.ln_hh = data_or_null<S>(ln_hh);
    p.sums = ln_hh || ln_cw ? &sums : nullptr;
    p.d_c_hat = ln_cw ? d_c_hat.data_ptr<S>() : nullptr;
    const S *gh_p = grad_hs.data_ptr<S>(), *mask_p = data_or_null<S>(mask),
            *kh_p = data_or_null<S>(keep_h), *kc_p = data_or_null<S>(keep_c);
    S *dh_p = dh.data_ptr<S>(), *cy = carry.data_ptr<S>();
    Tensor small_a = acts.new_empty({small_rows(B), H});
    Tensor small_b = acts.new_empty({small_rows(B), R});
    Tensor held_a, held_b;  // product()'s buffers: dr's, and d_rec's (read at the next step)
    const S* d_rec_p = d_rec.data_ptr<S>();
    int64_t n_rec = B;  // rows of d_rec: those that ran at step t + 1
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = rows_at(active, t, B);
      state_grad_rows(d_rec_p, n_rec, mask_p, cy, gh_p + t * BR, dh_p, B, R);
      if (kh_p != nullptr) {  // zoneout keeps a part of h_{t-1}: its gradient goes round
        const S* kh = kh_p + t * BR;
        for (int64_t j = 0; j < n * R; ++j) {
          cy[j] = dh_p[j] * kh[j];
          dh_p[j] *= S(1) - kh[j];
        }
      } else if (!active.empty()) {  // what a row carried while past its length is spent
        std::fill(cy, cy + n * R, S(0));
      }
      if (n < B) {  // rows past their length pass their whole gradient to h_{t-1}
        copy_rows<S>(dh_p, cy, n, B, R);
        zero_rows(dh_p, n, B, R);
      }
      if (kc_p != nullptr) {
        const S* kc = kc_p + t * BH;
        S *d = p.dc, *dp = dc_prev.data_ptr<S>();
        for (int64_t j = 0; j < n * H; ++j) {
          dp[j] = d[j] * kc[j];
          d[j] *= S(1) - kc[j];
        }
      }
      p.dr = dh_p;
      if (w_hr_t != nullptr) {
        std::copy(dh_p, dh_p + BR, d_h_new.data_ptr<S>() + t * BR);
        p.dr = product<S>(dh_p, R, n, *proj, nullptr, small_a.data_ptr<S>(), held_a);  // (n, H)
      }
      p.act = acts.data_ptr<S>() + t * BG;
      p.tanh_c = tanh_c.data_ptr<S>() + t * BH;
      p.c_prev = c_all.data_ptr<S>() + t * BH;
      p.xhat_c = ln_cw ? xhat_c_->data_ptr<S>() + t * BH : nullptr;
      p.rstd_c = ln_cw ? rstd_c_->data_ptr<S>() + t * B : nullptr;
      p.d_gates = d_gates.data_ptr<S>() + off[t] * G;
      p.xhat_h = ln_hh ? xhat_h_->data_ptr<S>() + t * BG : nullptr;
      p.rstd_h = ln_hh ? rstd_h_->data_ptr<S>() + t * B : nullptr;
      p.d_raw = d_raw.data_ptr<S>() + off[t] * G;
      at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { lstm_backward_rows(p, b0, b1); });
      d_rec_p = product<S>(p.d_raw, G, n, rec, nullptr, small_b.data_ptr<S>(), held_b);  // (n, R)
      n_rec = n;
    }
    state_grad_rows<S>(d_rec_p, n_rec, mask_p, cy, nullptr, dh_p, B, R);
  });
  Tensor none = acts.new_empty({0});
  return {d_gates, ln_hh ? d_raw : none, d_h_new, dh, dc,
          ln_hh ? sums.sum(0, G) : none, ln_hh ? sums.sum(G, G) : none,
          ln_cw ? sums.sum(2 * G, H) : none, ln_cw ? sums.sum(2 * G + H, H) : none};
}

// ---- GRU ----------------------------------------------------------------------------------

// One GRU step's pointers (rows indexed inside); "rz" and "n" name the gate column blocks.
template <typename S>
struct GRUStep {
  int64_t H = 0;
  const S* xg = nullptr;  // (B, 3H)
  const S* raw = nullptr;  // reset_after: (B, 3H) W h_in; else (B, 2H) W_rz h_in, then (B, H)
  const S* b_hh = nullptr;  // (3H,)
  const S* ln_hh = nullptr;  // (3H,)
  S* xhat = nullptr;  // (B, 3H)
  S* rstd = nullptr;  // (B, 2): group 0 (all gates, or r and z), group 1 (n, reset-before)
  S* rzn = nullptr;  // (B, 3H): σ(r), σ(z), tanh(n)
  S* rec = nullptr;  // reset_after: (B, 3H) recurrent pre-activations; else s = r ⊙ h_in (B, H)
  const S* h_in = nullptr;  // (B, H)
  const S* h_prev = nullptr;  // (B, H)
  S* h_next = nullptr;  // (B, H)
  const S* kh = nullptr;  // (B, H)
};

template <typename S>
inline void gru_update_row(const GRUStep<S>& p, int64_t b) {
  const int64_t H = p.H;
  const S *z = p.rzn + b * 3 * H + H, *n = z + H, *hp = p.h_prev + b * H;
  S* hn = p.h_next + b * H;
  for (int64_t j = 0; j < H; ++j) hn[j] = n[j] + z[j] * (hp[j] - n[j]);
  if (p.kh != nullptr) {
    const S* k = p.kh + b * H;
    for (int64_t j = 0; j < H; ++j) hn[j] = hn[j] + k[j] * (hp[j] - hn[j]);
  }
}

// reset_after (torch's form): n = tanh(x_n + r ⊙ (W_hn h_in + b_hn)).
template <typename S>
void gru_after_rows(const GRUStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  for (int64_t b = b0; b < b1; ++b) {
    S* hg = p.rec + b * G;
    recurrent_row(p.raw + b * G, p.ln_hh, p.b_hh, p.xhat ? p.xhat + b * G : nullptr,
                  p.rstd ? p.rstd + 2 * b : nullptr, hg, G);
    const S* x = p.xg + b * G;
    S* a = p.rzn + b * G;
    for (int64_t j = 0; j < 2 * H; ++j) a[j] = x[j] + hg[j];
    sigmoid_row(a, a, 2 * H);
    for (int64_t j = 0; j < H; ++j) a[2 * H + j] = x[2 * H + j] + a[j] * hg[2 * H + j];
    tanh_row(a + 2 * H, a + 2 * H, H);
    gru_update_row(p, b);
  }
}

// reset-before (Keras' reset_after=False), first half: r, z and s = r ⊙ h_in from W_rz h_in.
template <typename S>
void gru_before_rz_rows(const GRUStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const S* x = p.xg + b * G;
    S* a = p.rzn + b * G;
    recurrent_row(p.raw + b * 2 * H, p.ln_hh, p.b_hh, p.xhat ? p.xhat + b * G : nullptr,
                  p.rstd ? p.rstd + 2 * b : nullptr, a, 2 * H);
    for (int64_t j = 0; j < 2 * H; ++j) a[j] += x[j];
    sigmoid_row(a, a, 2 * H);
    const S* hi = p.h_in + b * H;
    S* s = p.rec + b * H;
    for (int64_t j = 0; j < H; ++j) s[j] = a[j] * hi[j];
  }
}

// Second half: n = tanh(x_n + W_hn s + b_hn), then h.
template <typename S>
void gru_before_n_rows(const GRUStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  for (int64_t b = b0; b < b1; ++b) {
    S* n = p.rzn + b * G + 2 * H;
    recurrent_row(p.raw + b * H, p.ln_hh ? p.ln_hh + 2 * H : nullptr,
                  p.b_hh ? p.b_hh + 2 * H : nullptr, p.xhat ? p.xhat + b * G + 2 * H : nullptr,
                  p.rstd ? p.rstd + 2 * b + 1 : nullptr, n, H);
    const S* x = p.xg + b * G + 2 * H;
    for (int64_t j = 0; j < H; ++j) n[j] += x[j];
    tanh_row(n, n, H);
    gru_update_row(p, b);
  }
}

// w_a: W_hh (3H, H) when reset_after, else W_hh's r and z rows (2H, H); w_b: its n rows (H, H).
// xg (T, B, 3H), or (N, 3H) packed with `active` (step_offsets). Returns h_all (T+1, B, H) and
// what backward keeps (empty where not saved): rzn (T, B, 3H), rec (N, 3H or H) packed,
// h_in_all (N, H) packed (kept with a mask or with `active`; otherwise it is h_all[:-1]),
// xhat (T, B, 3H), rstd (T, B, 2).
std::vector<Tensor> gru_forward(const Tensor& xg, const Tensor& h0, const Tensor& w_a,
                                const OptTensor& w_a_packed, const OptTensor& w_b_,
                                const OptTensor& w_b_packed, const OptTensor& b_hh_,
                                const OptTensor& ln_hh_, const OptTensor& mask_,
                                const OptTensor& keep_h_, bool reset_after,
                                at::IntArrayRef active, bool save) {
  at::NoGradGuard no_grad;
  const int64_t T = steps_of(xg, active), B = h0.size(0), G = xg.size(-1), H = G / 3;
  const std::vector<int64_t> off = step_offsets(active, T, B);
  check_xg(xg, active, off, B, G);
  const Tensor *b_hh = ptr_or_null(b_hh_), *ln_hh = ptr_or_null(ln_hh_),
               *mask = ptr_or_null(mask_), *keep_h = ptr_or_null(keep_h_);
  const int64_t steps = save ? T : 1;
  Tensor h_all = xg.new_empty({T + 1, B, H});
  h_all[0].copy_(h0);
  Tensor rzn = xg.new_empty({steps, B, G});
  const int64_t rec_width = reset_after ? G : H;
  Tensor rec = xg.new_empty({save ? off[T] : B, rec_width});
  Tensor h_in_all = h_in_buffer(mask != nullptr, save, active, off, B, H, xg);
  Tensor xhat = empty_if(ln_hh != nullptr, {steps, B, G}, xg);
  Tensor rstd = empty_if(ln_hh != nullptr, {steps, B, 2}, xg);
  const Product prod_a(w_a, w_a_packed, B);
  const std::optional<Product> prod_b = optional_product(ptr_or_null(w_b_), w_b_packed, B);
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "lstmkit_gru_forward", [&] {
    using S = scalar_t;
    const int64_t BG = B * G, BH = B * H;
    GRUStep<S> p;
    p.H = H;
    p.b_hh = data_or_null<S>(b_hh);
    p.ln_hh = data_or_null<S>(ln_hh);
    const S *mask_p = data_or_null<S>(mask), *kh_p = data_or_null<S>(keep_h);
    S* h_p = h_all.data_ptr<S>();
    Tensor small = xg.new_empty({small_rows(B), G}), held;  // product()'s buffers
    S* small_p = small.data_ptr<S>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t k = save ? t : 0, n = rows_at(active, t, B);
      p.h_prev = h_p + t * BH;
      p.h_next = h_p + (t + 1) * BH;
      const int64_t row0 = save ? off[t] : 0;  // this step's first row in the packed buffers
      p.h_in = stage_h_in<S>(h_in_all, p.h_prev, mask_p, row0, n, H);
      p.xg = xg.data_ptr<S>() + off[t] * G;
      p.xhat = ln_hh ? xhat.data_ptr<S>() + k * BG : nullptr;
      p.rstd = ln_hh ? rstd.data_ptr<S>() + k * 2 * B : nullptr;
      p.rzn = rzn.data_ptr<S>() + k * BG;
      p.rec = rec.data_ptr<S>() + row0 * rec_width;
      p.kh = kh_p ? kh_p + t * BH : nullptr;
      p.raw = product<S>(p.h_in, H, n, prod_a, nullptr, small_p, held);
      if (reset_after) {
        at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_after_rows(p, b0, b1); });
      } else {
        at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_before_rz_rows(p, b0, b1); });
        p.raw = product<S>(p.rec, H, n, *prod_b, nullptr, small_p, held);  // W_hn s
        at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_before_n_rows(p, b0, b1); });
      }
      if (n < B) {  // rows past their length: state carried, saved buffers zeroed
        copy_rows<S>(p.h_prev, p.h_next, n, B, H);
        zero_rows(p.rzn, n, B, G);
        zero_rows(p.xhat, n, B, G);
        zero_rows(p.rstd, n, B, 2);
      }
    }
  });
  Tensor none = xg.new_empty({0});
  if (!save) return {h_all, none, none, none, none, none};
  return {h_all, rzn, rec, h_in_all, xhat, rstd};
}

// One GRU backward step's pointers.
template <typename S>
struct GRUGradStep {
  int64_t H = 0;
  const S* d_in = nullptr;  // (B, H): (d_rec ⊙ mask) + carry + grad_hs[t], before zoneout
  S* carry = nullptr;  // (B, H) out: what reaches h_{t-1} not through W_hh
  S* dh = nullptr;  // (B, H) scratch: dL/dh_t after zoneout
  const S* kh = nullptr;
  const S* rzn = nullptr;
  const S* rec = nullptr;
  const S* h_prev = nullptr;
  const S* h_in = nullptr;
  const S* ds = nullptr;  // reset-before: dL/ds (B, H)
  const S* ln_hh = nullptr;
  const S* xhat = nullptr;
  const S* rstd = nullptr;
  S* d_x = nullptr;  // (B, 3H) dL/dxg
  S* d_hg = nullptr;  // (B, 3H) dL/d(recurrent pre-activations)
  S* d_raw = nullptr;  // (B, 3H) dL/d(W h_in), through the layer norm
  const ThreadSums* sums = nullptr;  // columns [3H b_hh | 3H ln_hh]
};

// dh after zoneout, the carry to h_{t-1}, and the n and z gate gradients of row b.
template <typename S>
inline void gru_common_row(const GRUGradStep<S>& p, int64_t b) {
  const int64_t H = p.H;
  const S *d = p.d_in + b * H, *z = p.rzn + b * 3 * H + H, *n = z + H, *hp = p.h_prev + b * H;
  S *dh = p.dh + b * H, *cy = p.carry + b * H, *dx = p.d_x + b * 3 * H;
  const S* k = p.kh == nullptr ? nullptr : p.kh + b * H;
  for (int64_t j = 0; j < H; ++j) {
    const S g = k == nullptr ? d[j] : d[j] * (S(1) - k[j]);
    dh[j] = g;
    cy[j] = g * z[j] + (k == nullptr ? S(0) : d[j] * k[j]);
    dx[2 * H + j] = g * (S(1) - z[j]) * (S(1) - n[j] * n[j]);  // dL/da_n
    dx[H + j] = g * (hp[j] - n[j]) * z[j] * (S(1) - z[j]);  // dL/da_z
  }
}

template <typename S>
void gru_after_backward_rows(const GRUGradStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  double* acc = p.sums->mine();
  for (int64_t b = b0; b < b1; ++b) {
    gru_common_row(p, b);
    const S *r = p.rzn + b * G, *hn = p.rec + b * G + 2 * H;
    S *dx = p.d_x + b * G, *dg = p.d_hg + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const S dan = dx[2 * H + j];
      dx[j] = dan * hn[j] * r[j] * (S(1) - r[j]);
      dg[j] = dx[j];
      dg[H + j] = dx[H + j];
      dg[2 * H + j] = dan * r[j];
    }
    accumulate_row<S>(dg, p.xhat ? p.xhat + b * G : nullptr, p.ln_hh ? acc + G : nullptr, acc,
                      G);
    if (p.ln_hh != nullptr) {
      layer_norm_backward_row(dg, p.ln_hh, p.xhat + b * G, p.rstd[2 * b], p.d_raw + b * G, G);
    }
  }
}

// reset-before, first half: dh, carry, dL/da_n and dL/da_z; dL/d(W_hn s) under layer norm.
template <typename S>
void gru_before_n_backward_rows(const GRUGradStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  for (int64_t b = b0; b < b1; ++b) {
    gru_common_row(p, b);
    if (p.ln_hh != nullptr) {
      layer_norm_backward_row(p.d_x + b * G + 2 * H, p.ln_hh + 2 * H, p.xhat + b * G + 2 * H,
                              p.rstd[2 * b + 1], p.d_raw + b * G + 2 * H, H);
    }
  }
}

// Second half, given ds = dL/ds: dL/da_r, and dL/d(W_rz h_in) under layer norm.
template <typename S>
void gru_before_rz_backward_rows(const GRUGradStep<S>& p, int64_t b0, int64_t b1) {
  const int64_t H = p.H, G = 3 * H;
  double* acc = p.sums->mine();
  for (int64_t b = b0; b < b1; ++b) {
    const S *r = p.rzn + b * G, *hi = p.h_in + b * H, *ds = p.ds + b * H;
    S* dx = p.d_x + b * G;
    for (int64_t j = 0; j < H; ++j) dx[j] = ds[j] * hi[j] * r[j] * (S(1) - r[j]);
    accumulate_row<S>(dx, p.xhat ? p.xhat + b * G : nullptr, p.ln_hh ? acc + G : nullptr, acc,
                      G);  // the row's r, z and n gradients are all final here
    if (p.ln_hh != nullptr) {
      layer_norm_backward_row(dx, p.ln_hh, p.xhat + b * G, p.rstd[2 * b], p.d_raw + b * G, 2 * H);
    }
  }
}

// w_a_t: W_hh.T (H, 3H) when reset_after, else W_rz.T (H, 2H); w_b_t: W_hn.T (H, H).
// rec and h_in_all as the forward returned them (packed). Returns d_x = dL/dxg, d_hg
// (reset_after; empty otherwise: it is d_x) and d_raw under layer norm (empty otherwise: it is
// d_hg), each (T, B, 3H) or, with `active`, (N, 3H) packed; dh0 (B, H), and the sums
// over steps and rows of d_hg (dL/db_hh, 3H) and, under layer norm, of d_hg ⊙ x̂ (dL/d ln_hh).
std::vector<Tensor> gru_backward(const Tensor& grad_hs, const Tensor& h_all, const Tensor& rzn,
                                 const Tensor& rec, const OptTensor& h_in_all_,
                                 const Tensor& w_a_t, const OptTensor& w_a_t_packed,
                                 const OptTensor& w_b_t_, const OptTensor& w_b_t_packed,
                                 const OptTensor& ln_hh_, const OptTensor& xhat_,
                                 const OptTensor& rstd_, const OptTensor& mask_,
                                 const OptTensor& keep_h_, bool reset_after,
                                 at::IntArrayRef active) {
  at::NoGradGuard no_grad;
  const int64_t T = rzn.size(0), B = rzn.size(1), G = rzn.size(2), H = G / 3;
  const std::vector<int64_t> off = step_offsets(active, T, B);
  const Tensor *ln_hh = ptr_or_null(ln_hh_), *mask = ptr_or_null(mask_),
               *keep_h = ptr_or_null(keep_h_), *h_in_all = ptr_or_null(h_in_all_);
  const int64_t rec_width = reset_after ? G : H;
  TORCH_CHECK(rec.numel() == off[T] * rec_width && (h_in_all == nullptr ||
              h_in_all->numel() == off[T] * H), "lstmkit_native: gru_backward's saved buffers "
              "do not match the steps' rows");
  Tensor d_x = packed_empty(active, off, B, G, rzn);
  Tensor d_hg = reset_after ? packed_empty(active, off, B, G, rzn) : d_x;
  Tensor d_raw = ln_hh ? packed_empty(active, off, B, G, rzn) : d_hg;
  Tensor d_in = rzn.new_empty({B, H}), dh = rzn.new_empty({B, H});
  Tensor carry = rzn.new_zeros({B, H});
  Tensor d_rec = rzn.new_zeros({B, H});  // (d_raw_{t+1} W_hh [+ ds r]), before the mask
  const ThreadSums sums(2 * G, rzn);
  const Product prod_a(w_a_t, w_a_t_packed, B);
  const std::optional<Product> prod_b = optional_product(ptr_or_null(w_b_t_), w_b_t_packed, B);
  AT_DISPATCH_FLOATING_TYPES(rzn.scalar_type(), "lstmkit_gru_backward", [&] {
    using S = scalar_t;
    const int64_t BG = B * G, BH = B * H;
    GRUGradStep<S> p;
    p.H = H;
    p.d_in = d_in.data_ptr<S>();
    p.carry = carry.data_ptr<S>();
    p.dh = dh.data_ptr<S>();
    p.ln_hh = data_or_null<S>(ln_hh);
    p.sums = &sums;
    const S *gh_p = grad_hs.data_ptr<S>(), *mask_p = data_or_null<S>(mask),
            *kh_p = data_or_null<S>(keep_h);
    Tensor small_a = rzn.new_empty({small_rows(B), H}), small_b = rzn.new_empty({small_rows(B), H});
    Tensor held_a, held_b;  // product()'s buffers: ds's, and d_rec's (read at the next step)
    S* d_rec_p = d_rec.data_ptr<S>();
    int64_t n_rec = B;  // rows of d_rec: those that ran at step t + 1
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = rows_at(active, t, B);
      state_grad_rows<S>(d_rec_p, n_rec, mask_p, p.carry, gh_p + t * BH, d_in.data_ptr<S>(), B,
                         H);
      p.kh = kh_p ? kh_p + t * BH : nullptr;
      p.rzn = rzn.data_ptr<S>() + t * BG;
      p.rec = rec.data_ptr<S>() + off[t] * rec_width;
      p.h_prev = h_all.data_ptr<S>() + t * BH;
      p.h_in = h_in_all ? h_in_all->data_ptr<S>() + off[t] * H : p.h_prev;
      p.xhat = ln_hh ? xhat_->data_ptr<S>() + t * BG : nullptr;
      p.rstd = ln_hh ? rstd_->data_ptr<S>() + t * 2 * B : nullptr;
      p.d_x = d_x.data_ptr<S>() + off[t] * G;
      p.d_hg = d_hg.data_ptr<S>() + off[t] * G;
      p.d_raw = d_raw.data_ptr<S>() + off[t] * G;
      if (n < B) {  // rows past their length pass their whole gradient to h_{t-1}
        copy_rows<S>(p.d_in, p.carry, n, B, H);
      }
      n_rec = n;
      S *small_a_p = small_a.data_ptr<S>(), *small_b_p = small_b.data_ptr<S>();
      if (reset_after) {
        at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_after_backward_rows(p, b0, b1); });
        d_rec_p = product<S>(p.d_raw, G, n, prod_a, nullptr, small_b_p, held_b);  // (n, H)
        continue;
      }
      at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_before_n_backward_rows(p, b0, b1); });
      p.ds = product<S>(p.d_raw + 2 * H, G, n, *prod_b, nullptr, small_a_p, held_a);  // dL/ds
      at::parallel_for(0, n, grain(G), [&](int64_t b0, int64_t b1) { gru_before_rz_backward_rows(p, b0, b1); });
      d_rec_p = product<S>(p.d_raw, G, n, prod_a, nullptr, small_b_p, held_b);  // (n, H)
      S* drp = d_rec_p;
      const S* dsp = p.ds;
      for (int64_t b = 0; b < n; ++b) {
        const S* r = p.rzn + b * G;
        for (int64_t j = 0; j < H; ++j) drp[b * H + j] += dsp[b * H + j] * r[j];
      }
    }
    state_grad_rows<S>(d_rec_p, n_rec, mask_p, p.carry, nullptr, dh.data_ptr<S>(), B, H);
  });
  Tensor none = rzn.new_empty({0});
  return {d_x, reset_after ? d_hg : none, ln_hh ? d_raw : none, dh, sums.sum(0, G),
          ln_hh ? sums.sum(G, G) : none};
}

}  // namespace

TORCH_LIBRARY(lstmkit_native, m) {
  m.def("mm_tn(Tensor a, Tensor b) -> Tensor");
  m.def("onednn_matmul_found() -> bool", &onednn_matmul_found);
  m.def(
      "lstm_forward(Tensor xg, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_hh_packed, "
      "Tensor? b_hh, Tensor? ln_hh, Tensor? w_hr, Tensor? w_hr_packed, Tensor? ln_cw, Tensor? ln_cb, "
      "Tensor? mask, Tensor? keep_h, Tensor? keep_c, int[] active, bool save) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor grad_hs, Tensor grad_c_n, Tensor c_all, Tensor acts, "
      "Tensor tanh_c, Tensor w_hh_t, Tensor? w_hh_t_packed, Tensor? ln_hh, Tensor? xhat_h, "
      "Tensor? rstd_h, Tensor? w_hr_t, Tensor? w_hr_t_packed, Tensor? ln_cw, Tensor? xhat_c, "
      "Tensor? rstd_c, Tensor? mask, Tensor? keep_h, Tensor? keep_c, int[] active) -> Tensor[]");
  m.def(
      "lstm_cell_step(Tensor x, Tensor h, Tensor c, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh) "
      "-> Tensor[]");
  m.def(
      "gru_forward(Tensor xg, Tensor h0, Tensor w_a, Tensor? w_a_packed, Tensor? w_b, "
      "Tensor? w_b_packed, Tensor? b_hh, Tensor? ln_hh, Tensor? mask, Tensor? keep_h, "
      "bool reset_after, int[] active, bool save) -> Tensor[]");
  m.def(
      "gru_backward(Tensor grad_hs, Tensor h_all, Tensor rzn, Tensor rec, Tensor? h_in_all, "
      "Tensor w_a_t, Tensor? w_a_t_packed, Tensor? w_b_t, Tensor? w_b_t_packed, Tensor? ln_hh, "
      "Tensor? xhat, Tensor? rstd, Tensor? mask, Tensor? keep_h, bool reset_after, "
      "int[] active) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(lstmkit_native, CompositeExplicitAutograd, m) {
  m.impl("mm_tn", &mm_tn);
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("lstm_cell_step", &lstm_cell_step);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
