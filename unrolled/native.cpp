// The recurrence of the cells torch has no fused kernel for, as one C++ loop per sequence, with its backward
// written out by hand. The equations, the tensors' shapes and the Python side are in unrolled/native.py.
//
// Per step the forward does one matrix product (two for Cho's GRU) and one pass over the (B, H) elements; the
// backward does the same in reverse and leaves the weight gradients to unrolled/native.py, as one product over all
// steps. Padding: keep[t][b] is 1 on real steps and 0 on padded ones, where the state stays and the output is 0.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <tuple>

namespace {

// LSTM options, as bits of `flags` (unrolled/native.py: LSTM_FLAGS).
constexpr int64_t INPUT_GATE = 1, FORGET_GATE = 2, OUTPUT_GATE = 4, INPUT_ACTIVATION = 8, OUTPUT_ACTIVATION = 16,
                  PEEPHOLES = 32, COUPLED = 64;
// Column block of each gate in the stacked (G*H) rows: i, f, g, o in torch's order, a removed gate has none (-1).
struct Blocks {
  int64_t i = -1, f = -1, g = -1, o = -1, count = 0;
  explicit Blocks(int64_t flags) {
    if (flags & INPUT_GATE) i = count++;
    if ((flags & FORGET_GATE) && !(flags & COUPLED)) f = count++;
    g = count++;
    if (flags & OUTPUT_GATE) o = count++;
  }
};

void check_inputs(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& w_hh, const at::Tensor& keep) {
  TORCH_CHECK(xw.dim() == 3 && xw.is_contiguous() && xw.device().is_cpu(), "xw must be a contiguous CPU (T, B, G*H)");
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == xw.size(1), "h0 must be (B, H)");
  TORCH_CHECK(w_hh.size(0) == xw.size(2) && w_hh.size(1) == h0.size(1), "weight_hh must be (G*H, H)");
  TORCH_CHECK(keep.sizes() == at::IntArrayRef({xw.size(0), xw.size(1)}), "keep must be (T, B)");
}

// The Fortran BLAS that torch's CPU library carries (MKL or OpenBLAS), called on raw pointers: a step's product
// then costs no dispatch. Weak, so that a torch without these symbols still loads this library and `gemm` falls
// back to ATen's addmm on views of the same memory.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

bool blas_enabled = true;  // false: always the ATen fallback (tests use it to check that path)

bool use_blas(bool on) {
  const bool before = blas_enabled;
  blas_enabled = on;
  return before;
}

// C += op(A) op(B) in BLAS's column-major terms: C (m, n) with leading dimension ldc, op(A) (m, k), op(B) (k, n),
// trans_a 'T' when A is stored as (k, m).
template <typename T>
void gemm(char trans_a, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
          int64_t ldc) {
  const int mi = m, ni = n, ki = k, lda_i = lda, ldb_i = ldb, ldc_i = ldc;
  const T one = 1;
  const char no = 'N';
  if constexpr (std::is_same_v<T, float>) {
    if (blas_enabled && sgemm_ != nullptr) return sgemm_(&trans_a, &no, &mi, &ni, &ki, &one, a, &lda_i, b, &ldb_i, &one, c, &ldc_i);
  } else {
    if (blas_enabled && dgemm_ != nullptr) return dgemm_(&trans_a, &no, &mi, &ni, &ki, &one, a, &lda_i, b, &ldb_i, &one, c, &ldc_i);
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto column_major = [&](const T* data, int64_t rows, int64_t cols, int64_t ld) {  // a (rows, cols) matrix
    return at::from_blob(const_cast<T*>(data), {cols, rows}, {ld, 1}, options).t();
  };
  auto op_a = trans_a == 'T' ? column_major(a, k, m, lda).t() : column_major(a, m, k, lda);
  column_major(c, m, n, ldc).addmm_(op_a, column_major(b, k, n, ldb));
}

// The arithmetic of one row (one sequence's H units), as functions whose pointers cannot alias (__restrict__),
// so that the compiler vectorises the loops. Options enter as 0/1 factors and absent gates as rows of ones (values)
// or scratch rows (gradients), never as branches.

template <typename T>
void add_peephole(int64_t H, T* __restrict__ a, const T* __restrict__ p, const T* __restrict__ c) {
  for (int64_t j = 0; j < H; ++j) a[j] += p[j] * c[j];  // a += p C
}

template <typename T>
void scale(int64_t H, T* __restrict__ a, T factor) {
  for (int64_t j = 0; j < H; ++j) a[j] *= factor;
}

// C~ and C_t. g holds sigma(2 a_g) when the input activation is tanh (tanh x = 2 sigma(2x) - 1: the step then needs
// one sigmoid call for all its gates) and a_g itself for NIAF: C~ = g_scale g + g_shift, (2, -1) or (1, 0). Writes
// C~ back into g and C_t into c, and s_scale C_t into s (2 C_t, whose sigmoid gives tanh C_t, or C_t for NOAF).
template <typename T>
void cell_row(int64_t H, T coupled, T g_scale, T g_shift, T s_scale, const T* __restrict__ i,
              const T* __restrict__ fs, T* __restrict__ g, const T* __restrict__ c_prev, T* __restrict__ c,
              T* __restrict__ s) {
  for (int64_t j = 0; j < H; ++j) {
    const T f = coupled * (1 - i[j]) + (1 - coupled) * fs[j];
    const T cand = g_scale * g[j] + g_shift;
    const T c_t = f * c_prev[j] + i[j] * cand;  // C_t = f C_{t-1} + i C~
    g[j] = cand;
    c[j] = c_t;
    s[j] = s_scale * c_t;
  }
}

// h_t = o s_t with s_t = s_scale s + s_shift (s holds sigma(2 C_t), or C_t for NOAF), written back into s;
// padding (kb = 0) keeps the state and outputs 0.
template <typename T>
void output_row(int64_t H, T kb, T s_scale, T s_shift, const T* __restrict__ o, T* __restrict__ s,
                const T* __restrict__ h_prev, const T* __restrict__ c_prev, T* __restrict__ y, T* __restrict__ h_next,
                T* __restrict__ c_next) {
  for (int64_t j = 0; j < H; ++j) {
    const T s_t = s_scale * s[j] + s_shift;
    const T h = o[j] * s_t;
    s[j] = s_t;
    y[j] = kb * h;
    h_next[j] = kb * h + (1 - kb) * h_prev[j];
    c_next[j] = kb * c_next[j] + (1 - kb) * c_prev[j];
  }
}

template <typename T>
void lstm_grad_row(int64_t H, T kb, T coupled, T has_f, T in_act, T out_act, const T* __restrict__ i,
                   const T* __restrict__ fs, const T* __restrict__ g, const T* __restrict__ o, const T* __restrict__ s,
                   const T* __restrict__ c_prev, const T* __restrict__ c, const T* __restrict__ grad_y,
                   const T* __restrict__ dh_next,
                   const T* __restrict__ dc_next, const T* __restrict__ pi, const T* __restrict__ pf,
                   const T* __restrict__ po, T* __restrict__ d_ai, T* __restrict__ d_af, T* __restrict__ d_ag,
                   T* __restrict__ d_ao, T* __restrict__ dh_prev, T* __restrict__ dc_prev, T* __restrict__ dp_i,
                   T* __restrict__ dp_f, T* __restrict__ dp_o) {
  for (int64_t j = 0; j < H; ++j) {
    const T d_h = kb * (grad_y[j] + dh_next[j]);  // dL/dh_t of this step's own output
    const T f = coupled * (1 - i[j]) + (1 - coupled) * fs[j];
    const T ao = d_h * s[j] * o[j] * (1 - o[j]);
    const T d_c = kb * dc_next[j] + d_h * o[j] * (out_act * (1 - s[j] * s[j]) + (1 - out_act)) + ao * po[j];
    const T ai = (d_c * g[j] - coupled * d_c * c_prev[j]) * i[j] * (1 - i[j]);
    const T af = has_f * d_c * c_prev[j] * f * (1 - f);  // 0 for CIFG: its f is no gate of its own
    d_ao[j] = ao;
    d_ag[j] = d_c * i[j] * (in_act * (1 - g[j] * g[j]) + (1 - in_act));
    d_ai[j] = ai;
    d_af[j] = af;
    dc_prev[j] = d_c * f + ai * pi[j] + af * pf[j] + (1 - kb) * dc_next[j];
    dh_prev[j] = (1 - kb) * dh_next[j];
    dp_i[j] += ai * c_prev[j];  // dL/dp_i = sum of dL/da_i C_{t-1}; p_f likewise, p_o with C_t
    dp_f[j] += af * c_prev[j];
    dp_o[j] += ao * c[j];
  }
}

// Forward of the LSTM family. xw (T, B, G*H) holds W_ih x_t + b_ih + b_hh; peep (3, H) holds p_i, p_f, p_o (zeros
// where absent). Returns hs, cs (T+1, B, H): the state before step 0 and after every step; acts (T, B, G*H): the
// gates after their activations (C~ in the g block); squashed (T, B, H): phi_out(C_t), C_t itself for NOAF;
// out (T, B, H): h_t on real steps, 0 on padding. Per step: one GEMM on raw pointers, ATen's vectorised sigmoid
// on the gates and on 2 C_t (two calls; three with peepholes or NIAF), and loops over the rows.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
    const at::Tensor& peep, const at::Tensor& keep, int64_t flags) {
  check_inputs(xw, h0, w_hh, keep);
  const Blocks blocks(flags);
  const int64_t T = xw.size(0), B = xw.size(1), H = h0.size(1), G = blocks.count;
  TORCH_CHECK(xw.size(2) == G * H, "xw has ", xw.size(2), " columns, the flags' gates need ", G * H);
  const bool peepholes = flags & PEEPHOLES, in_act = flags & INPUT_ACTIVATION, out_act = flags & OUTPUT_ACTIVATION;
  auto hs = at::empty({T + 1, B, H}, xw.options());
  auto cs = at::empty({T + 1, B, H}, xw.options());
  auto acts = at::empty_like(xw);
  auto squashed = at::empty({T, B, H}, xw.options());
  auto out = at::empty({T, B, H}, xw.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  const auto w_c = w_hh.contiguous();
  const bool late_o = blocks.o >= 0 && peepholes;  // o sees C_t, so its sigmoid waits for the cell
  const auto gate_views = acts.unbind(0), squashed_views = squashed.unbind(0);
  const int64_t BH = B * H, GH = G * H;
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    const auto peep_c = peep.contiguous();
    const scalar_t* pi = peep_c.data_ptr<scalar_t>();
    const scalar_t *pf = pi + H, *po = pi + 2 * H;
    const auto keep_c = keep.to(xw.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const auto ones_t = at::ones({H}, xw.options());
    const scalar_t* ones = ones_t.data_ptr<scalar_t>();
    const scalar_t coupled = (flags & COUPLED) ? 1 : 0;
    const scalar_t g_scale = in_act ? 2 : 1, g_shift = in_act ? -1 : 0, s_scale = out_act ? 2 : 1;
    const scalar_t* w = w_c.data_ptr<scalar_t>();
    const scalar_t* xw_p = xw.data_ptr<scalar_t>();
    scalar_t* acts_p = acts.data_ptr<scalar_t>();
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* cs_p = cs.data_ptr<scalar_t>();
    scalar_t* sq_p = squashed.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* a = acts_p + t * B * GH;
      scalar_t* sq = sq_p + t * BH;
      const scalar_t* hp = hs_p + t * BH;
      const scalar_t* cp = cs_p + t * BH;
      scalar_t* cn = cs_p + (t + 1) * BH;
      std::copy(xw_p + t * B * GH, xw_p + (t + 1) * B * GH, a);
      // a_t = xw_t + h_{t-1} W_hh^T (B, G*H): column-major, a_t^T = W_hh h_{t-1}^T
      gemm<scalar_t>('T', GH, B, H, w, H, hp, H, a, GH);
      for (int64_t b = 0; b < B; ++b) {
        scalar_t* row = a + b * GH;
        if (peepholes) {  // a_i += p_i C_{t-1}, a_f += p_f C_{t-1}
          if (blocks.i >= 0) add_peephole(H, row + blocks.i * H, pi, cp + b * H);
          if (blocks.f >= 0) add_peephole(H, row + blocks.f * H, pf, cp + b * H);
        }
        if (in_act) scale(H, row + blocks.g * H, scalar_t(2));
      }
      const auto& gates = gate_views[t];
      const int64_t end = late_o ? blocks.o * H : GH;  // the columns that take a sigmoid now
      if (in_act) {
        (end == GH ? gates : gates.narrow(1, 0, end)).sigmoid_();
      } else {  // NIAF: a_g stays linear
        if (blocks.g > 0) gates.narrow(1, 0, blocks.g * H).sigmoid_();
        if (end > (blocks.g + 1) * H) gates.narrow(1, (blocks.g + 1) * H, end - (blocks.g + 1) * H).sigmoid_();
      }
      for (int64_t b = 0; b < B; ++b) {
        scalar_t* row = a + b * GH;
        cell_row(H, coupled, g_scale, g_shift, s_scale, blocks.i >= 0 ? row + blocks.i * H : ones,
                 blocks.f >= 0 ? row + blocks.f * H : ones, row + blocks.g * H, cp + b * H, cn + b * H,
                 sq + b * H);
      }
      if (out_act) squashed_views[t].sigmoid_();  // sigma(2 C_t)
      if (late_o) {
        for (int64_t b = 0; b < B; ++b) add_peephole(H, a + b * GH + blocks.o * H, po, cn + b * H);  // a_o += p_o C_t
        gates.narrow(1, blocks.o * H, H).sigmoid_();
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        output_row(H, k[t * B + b], s_scale, scalar_t(out_act ? -1 : 0), blocks.o >= 0 ? a + b * GH + blocks.o * H : ones,
                   sq + r, hp + r, cp + r, out_p + t * BH + r, hs_p + (t + 1) * BH + r, cn + r);
      }
    }
  });
  return {hs, cs, acts, squashed, out};
}

// Backward of the LSTM family: from dL/d out (T, B, H) and dL/d (h_T, c_T), the gradient of every step's
// pre-activations, which is dL/d xw (T, B, G*H), dL/d (h_0, c_0) and dL/d peep (3, H). The weight gradient is
// one product over these, taken in unrolled/native.py. No transcendental function: the forward kept them.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& hs,
    const at::Tensor& cs, const at::Tensor& acts, const at::Tensor& squashed, const at::Tensor& w_hh,
    const at::Tensor& peep, const at::Tensor& keep, int64_t flags) {
  const Blocks blocks(flags);
  const int64_t T = acts.size(0), B = acts.size(1), H = hs.size(2), G = blocks.count;
  const int64_t BH = B * H, BGH = B * G * H;
  auto grad_a = at::empty_like(acts);
  auto dh = grad_h.contiguous().clone(), dc = grad_c.contiguous().clone();  // dL/d state after step t
  auto dh_prev = at::empty_like(dh), dc_prev = at::empty_like(dc);
  auto grad_peep = at::zeros({3, H}, acts.options());
  const auto w_c = w_hh.contiguous();
  const auto go = grad_out.contiguous();
  const auto sq_c = squashed.contiguous(), acts_c = acts.contiguous(), cs_c = cs.contiguous();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    const auto peep_c = peep.contiguous();
    const scalar_t* pi = peep_c.data_ptr<scalar_t>();
    const auto keep_c = keep.to(acts.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const auto ones_t = at::ones({H}, acts.options());
    const scalar_t* ones = ones_t.data_ptr<scalar_t>();
    auto scratch_t = at::empty({3, H}, acts.options());  // where the gradients of absent i, f, o go
    scalar_t* scratch = scratch_t.data_ptr<scalar_t>();
    const scalar_t coupled = (flags & COUPLED) ? 1 : 0, has_f = blocks.f >= 0 ? 1 : 0;
    const scalar_t in_act = (flags & INPUT_ACTIVATION) ? 1 : 0, out_act = (flags & OUTPUT_ACTIVATION) ? 1 : 0;
    const scalar_t* acts_p = acts_c.data_ptr<scalar_t>();
    const scalar_t* cs_p = cs_c.data_ptr<scalar_t>();
    const scalar_t* sq_p = sq_c.data_ptr<scalar_t>();
    const scalar_t* go_p = go.data_ptr<scalar_t>();
    scalar_t* ga_p = grad_a.data_ptr<scalar_t>();
    scalar_t* dp = grad_peep.data_ptr<scalar_t>();
    const scalar_t* w = w_c.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* dhn = dh.data_ptr<scalar_t>();
      const scalar_t* dcn = dc.data_ptr<scalar_t>();
      scalar_t* dhp = dh_prev.data_ptr<scalar_t>();
      scalar_t* dcp = dc_prev.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        const scalar_t* a = acts_p + t * BGH + b * G * H;
        scalar_t* da = ga_p + t * BGH + b * G * H;
        lstm_grad_row(H, k[t * B + b], coupled, has_f, in_act, out_act, blocks.i >= 0 ? a + blocks.i * H : ones,
                      blocks.f >= 0 ? a + blocks.f * H : ones, a + blocks.g * H,
                      blocks.o >= 0 ? a + blocks.o * H : ones, sq_p + t * BH + r, cs_p + t * BH + r,
                      cs_p + (t + 1) * BH + r, go_p + t * BH + r, dhn + r, dcn + r, pi, pi + H, pi + 2 * H,
                      blocks.i >= 0 ? da + blocks.i * H : scratch, blocks.f >= 0 ? da + blocks.f * H : scratch + H,
                      da + blocks.g * H, blocks.o >= 0 ? da + blocks.o * H : scratch + 2 * H, dhp + r, dcp + r,
                      dp, dp + H, dp + 2 * H);
      }
      // dL/dh_{t-1} += dL/da_t W_hh (B, H): column-major, dh^T += W_hh^T da_t^T
      gemm<scalar_t>('N', H, B, G * H, w, H, ga_p + t * BGH, G * H, dhp, H);
      std::swap(dh, dh_prev);
      std::swap(dc, dc_prev);
    }
  });
  return {grad_a, dh, dc, grad_peep};
}

template <typename T>
void gru_reset_row(int64_t H, const T* __restrict__ r, const T* __restrict__ h_prev, T* __restrict__ rh) {
  for (int64_t j = 0; j < H; ++j) rh[j] = r[j] * h_prev[j];  // r * h_{t-1}
}

template <typename T>
void gru_output_row(int64_t H, T kb, const T* __restrict__ z, const T* __restrict__ n, const T* __restrict__ h_prev,
                    T* __restrict__ y, T* __restrict__ h_next) {
  for (int64_t j = 0; j < H; ++j) {  // h_t = n + z (h_{t-1} - n); padding keeps the state and outputs 0
    const T h = n[j] + z[j] * (h_prev[j] - n[j]);
    y[j] = kb * h;
    h_next[j] = kb * h + (1 - kb) * h_prev[j];
  }
}

template <typename T>
void gru_grad_row(int64_t H, T kb, const T* __restrict__ z, const T* __restrict__ n, const T* __restrict__ h_prev,
                  const T* __restrict__ grad_y, const T* __restrict__ dh_next, T* __restrict__ d_an,
                  T* __restrict__ d_az, T* __restrict__ dh_prev) {
  for (int64_t j = 0; j < H; ++j) {
    const T d_h = kb * (grad_y[j] + dh_next[j]);
    d_an[j] = d_h * (1 - z[j]) * (1 - n[j] * n[j]);
    d_az[j] = d_h * (h_prev[j] - n[j]) * z[j] * (1 - z[j]);
    dh_prev[j] = d_h * z[j] + (1 - kb) * dh_next[j];
  }
}

template <typename T>
void gru_reset_grad_row(int64_t H, const T* __restrict__ d_rh, const T* __restrict__ r, const T* __restrict__ h_prev,
                        T* __restrict__ d_ar, T* __restrict__ dh_prev) {
  for (int64_t j = 0; j < H; ++j) {
    d_ar[j] = d_rh[j] * h_prev[j] * r[j] * (1 - r[j]);
    dh_prev[j] += d_rh[j] * r[j];
  }
}

// Forward of Cho's GRU. xrz (T, B, 2H) holds the r and z blocks of W_ih x_t + b_ih + b_hh; xn (T, B, H) the n block
// of W_ih x_t + b_ih + b_hn; w_rz (2H, H), w_n (H, H) the recurrent weights. Returns hs (T+1, B, H), rz (T, B, 2H)
// the gates r and z, n (T, B, H) the candidate, rh (T, B, H) the product's input r * h_{t-1}, and out (T, B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_cho_forward(
    const at::Tensor& xrz, const at::Tensor& xn, const at::Tensor& h0, const at::Tensor& w_rz,
    const at::Tensor& w_n, const at::Tensor& keep) {
  check_inputs(xrz, h0, w_rz, keep);
  TORCH_CHECK(xn.is_contiguous() && xn.size(2) == h0.size(1), "xn must be a contiguous (T, B, H)");
  const int64_t T = xrz.size(0), B = xrz.size(1), H = h0.size(1), BH = B * H;
  auto hs = at::empty({T + 1, B, H}, xrz.options());
  auto rz = at::empty_like(xrz);
  auto n = at::empty({T, B, H}, xrz.options());
  auto rh = at::empty({T, B, H}, xrz.options());
  auto out = at::empty({T, B, H}, xrz.options());
  hs[0].copy_(h0);
  const auto w_rz_c = w_rz.contiguous(), w_n_c = w_n.contiguous();
  const auto rz_views = rz.unbind(0), n_views = n.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xrz.scalar_type(), "gru_cho_forward", [&] {
    const auto keep_c = keep.to(xrz.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const scalar_t *w_rz_p = w_rz_c.data_ptr<scalar_t>(), *w_n_p = w_n_c.data_ptr<scalar_t>();
    const scalar_t *xrz_p = xrz.data_ptr<scalar_t>(), *xn_p = xn.data_ptr<scalar_t>();
    scalar_t *hs_p = hs.data_ptr<scalar_t>(), *rz_p = rz.data_ptr<scalar_t>(), *n_p = n.data_ptr<scalar_t>();
    scalar_t *rh_p = rh.data_ptr<scalar_t>(), *out_p = out.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* g = rz_p + t * 2 * BH;
      scalar_t* cand = n_p + t * BH;
      scalar_t* q = rh_p + t * BH;
      const scalar_t* hp = hs_p + t * BH;
      std::copy(xrz_p + t * 2 * BH, xrz_p + (t + 1) * 2 * BH, g);
      gemm<scalar_t>('T', 2 * H, B, H, w_rz_p, H, hp, H, g, 2 * H);  // [a_r, a_z] = x_rz + h_{t-1} W_rz^T
      rz_views[t].sigmoid_();
      for (int64_t b = 0; b < B; ++b) gru_reset_row(H, g + b * 2 * H, hp + b * H, q + b * H);
      std::copy(xn_p + t * BH, xn_p + (t + 1) * BH, cand);
      gemm<scalar_t>('T', H, B, H, w_n_p, H, q, H, cand, H);  // a_n = x_n + (r * h_{t-1}) W_n^T
      n_views[t].tanh_();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        gru_output_row(H, k[t * B + b], g + b * 2 * H + H, cand + r, hp + r, out_p + t * BH + r,
                       hs_p + (t + 1) * BH + r);
      }
    }
  });
  return {hs, rz, n, rh, out};
}

// Backward of Cho's GRU: dL/d [a_r, a_z] (T, B, 2H), dL/d a_n (T, B, H) and dL/d h_0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_cho_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& hs, const at::Tensor& rz,
    const at::Tensor& n, const at::Tensor& w_rz, const at::Tensor& w_n, const at::Tensor& keep) {
  const int64_t T = rz.size(0), B = rz.size(1), H = hs.size(2), BH = B * H;
  auto grad_rz = at::empty_like(rz);
  auto grad_n = at::empty_like(n);
  auto dh = grad_h.contiguous().clone(), dh_prev = at::empty_like(dh);
  auto d_rh = at::empty_like(dh);
  const auto go = grad_out.contiguous(), hs_c = hs.contiguous(), rz_c = rz.contiguous(), n_c = n.contiguous();
  const auto w_rz_c = w_rz.contiguous(), w_n_c = w_n.contiguous();
  AT_DISPATCH_FLOATING_TYPES(rz.scalar_type(), "gru_cho_backward", [&] {
    const auto keep_c = keep.to(rz.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const scalar_t *w_rz_p = w_rz_c.data_ptr<scalar_t>(), *w_n_p = w_n_c.data_ptr<scalar_t>();
    const scalar_t *hs_p = hs_c.data_ptr<scalar_t>(), *rz_p = rz_c.data_ptr<scalar_t>();
    const scalar_t *n_p = n_c.data_ptr<scalar_t>(), *go_p = go.data_ptr<scalar_t>();
    scalar_t *grz_p = grad_rz.data_ptr<scalar_t>(), *gn_p = grad_n.data_ptr<scalar_t>();
    scalar_t* dq = d_rh.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* g = rz_p + t * 2 * BH;
      const scalar_t* hp = hs_p + t * BH;
      const scalar_t* dhn = dh.data_ptr<scalar_t>();
      scalar_t* dhp = dh_prev.data_ptr<scalar_t>();
      scalar_t* drz = grz_p + t * 2 * BH;
      scalar_t* dn = gn_p + t * BH;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        gru_grad_row(H, k[t * B + b], g + b * 2 * H + H, n_p + t * BH + r, hp + r, go_p + t * BH + r, dhn + r,
                     dn + r, drz + b * 2 * H + H, dhp + r);
      }
      std::fill(dq, dq + BH, scalar_t(0));
      gemm<scalar_t>('N', H, B, H, w_n_p, H, dn, H, dq, H);  // dL/d(r * h_{t-1}) = dL/da_n W_n   (B, H)
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        gru_reset_grad_row(H, dq + r, g + b * 2 * H, hp + r, drz + b * 2 * H, dhp + r);
      }
      gemm<scalar_t>('N', H, B, 2 * H, w_rz_p, H, drz, 2 * H, dhp, H);  // dL/dh_{t-1} += dL/d[a_r, a_z] W_rz
      std::swap(dh, dh_prev);
    }
  });
  return {grad_rz, grad_n, dh};
}

template <typename T>
void gru_gates_row(int64_t H, const T* __restrict__ x, const T* __restrict__ hh, T* __restrict__ pre,
                   T* __restrict__ h_n) {
  for (int64_t j = 0; j < 2 * H; ++j) pre[j] = x[j] + hh[j];  // x_r + h_r, x_z + h_z (sigmoid follows)
  for (int64_t j = 0; j < H; ++j) h_n[j] = hh[2 * H + j];      // W_hn h_{t-1} + b_hn, kept for the backward
}

template <typename T>
void gru_candidate_row(int64_t H, const T* __restrict__ x_n, const T* __restrict__ r, const T* __restrict__ h_n,
                       T* __restrict__ pre_n) {
  for (int64_t j = 0; j < H; ++j) pre_n[j] = x_n[j] + r[j] * h_n[j];  // x_n + r (W_hn h_{t-1} + b_hn)
}

template <typename T>
void gru_cudnn_grad_row(int64_t H, T kb, const T* __restrict__ gates, const T* __restrict__ h_n,
                        const T* __restrict__ h_prev, const T* __restrict__ grad_y, const T* __restrict__ dh_next,
                        T* __restrict__ d_x, T* __restrict__ d_hh, T* __restrict__ dh_prev) {
  const T *r = gates, *z = gates + H, *n = gates + 2 * H;
  for (int64_t j = 0; j < H; ++j) {
    const T d_h = kb * (grad_y[j] + dh_next[j]);
    const T d_an = d_h * (1 - z[j]) * (1 - n[j] * n[j]);
    const T d_ar = d_an * h_n[j] * r[j] * (1 - r[j]);
    const T d_az = d_h * (h_prev[j] - n[j]) * z[j] * (1 - z[j]);
    d_x[j] = d_ar;
    d_x[H + j] = d_az;
    d_x[2 * H + j] = d_an;
    d_hh[j] = d_ar;
    d_hh[H + j] = d_az;
    d_hh[2 * H + j] = d_an * r[j];
    dh_prev[j] = d_h * z[j] + (1 - kb) * dh_next[j];
  }
}

// Forward of the cuDNN-form GRU (torch's nn.GRU). xw (T, B, 3H) holds W_ih x_t + b_ih; w_hh (3H, H), b_hh (3H).
// Returns hs (T+1, B, H), gates (T, B, 3H) r, z, n after their activations, h_n (T, B, H) W_hn h_{t-1} + b_hn,
// and out (T, B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_cudnn_forward(
    const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& w_hh, const at::Tensor& b_hh,
    const at::Tensor& keep) {
  check_inputs(xw, h0, w_hh, keep);
  const int64_t T = xw.size(0), B = xw.size(1), H = h0.size(1), BH = B * H;
  TORCH_CHECK(xw.size(2) == 3 * H && b_hh.numel() == 3 * H, "xw must be (T, B, 3H) and b_hh (3H)");
  auto hs = at::empty({T + 1, B, H}, xw.options());
  auto gates = at::empty_like(xw);
  auto h_n = at::empty({T, B, H}, xw.options());
  auto out = at::empty({T, B, H}, xw.options());
  auto hh = at::empty({B, 3 * H}, xw.options());
  hs[0].copy_(h0);
  const auto w_c = w_hh.contiguous(), b_c = b_hh.contiguous();
  const auto gate_views = gates.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_cudnn_forward", [&] {
    const auto keep_c = keep.to(xw.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const scalar_t *w = w_c.data_ptr<scalar_t>(), *bias = b_c.data_ptr<scalar_t>(), *xw_p = xw.data_ptr<scalar_t>();
    scalar_t *hs_p = hs.data_ptr<scalar_t>(), *g_p = gates.data_ptr<scalar_t>(), *hn_p = h_n.data_ptr<scalar_t>();
    scalar_t *out_p = out.data_ptr<scalar_t>(), *hh_p = hh.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* hp = hs_p + t * BH;
      scalar_t* g = g_p + t * 3 * BH;
      for (int64_t b = 0; b < B; ++b) std::copy(bias, bias + 3 * H, hh_p + b * 3 * H);
      gemm<scalar_t>('T', 3 * H, B, H, w, H, hp, H, hh_p, 3 * H);  // h_{t-1} W_hh^T + b_hh   (B, 3H)
      for (int64_t b = 0; b < B; ++b) {
        gru_gates_row(H, xw_p + t * 3 * BH + b * 3 * H, hh_p + b * 3 * H, g + b * 3 * H, hn_p + t * BH + b * H);
      }
      gate_views[t].narrow(1, 0, 2 * H).sigmoid_();
      for (int64_t b = 0; b < B; ++b) {
        gru_candidate_row(H, xw_p + t * 3 * BH + b * 3 * H + 2 * H, g + b * 3 * H, hn_p + t * BH + b * H,
                          g + b * 3 * H + 2 * H);
      }
      gate_views[t].narrow(1, 2 * H, H).tanh_();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        gru_output_row(H, k[t * B + b], g + b * 3 * H + H, g + b * 3 * H + 2 * H, hp + r, out_p + t * BH + r,
                       hs_p + (t + 1) * BH + r);
      }
    }
  });
  return {hs, gates, h_n, out};
}

// Backward of the cuDNN-form GRU: dL/d xw (T, B, 3H), dL/d (h_{t-1} W_hh^T + b_hh) (T, B, 3H), dL/d h_0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_cudnn_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& hs, const at::Tensor& gates,
    const at::Tensor& h_n, const at::Tensor& w_hh, const at::Tensor& keep) {
  const int64_t T = gates.size(0), B = gates.size(1), H = hs.size(2), BH = B * H;
  auto grad_x = at::empty_like(gates);
  auto grad_hh = at::empty_like(gates);
  auto dh = grad_h.contiguous().clone(), dh_prev = at::empty_like(dh);
  const auto go = grad_out.contiguous(), hs_c = hs.contiguous(), g_c = gates.contiguous(), hn_c = h_n.contiguous();
  const auto w_c = w_hh.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_cudnn_backward", [&] {
    const auto keep_c = keep.to(gates.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const scalar_t *w = w_c.data_ptr<scalar_t>(), *hs_p = hs_c.data_ptr<scalar_t>(), *g_p = g_c.data_ptr<scalar_t>();
    const scalar_t *hn_p = hn_c.data_ptr<scalar_t>(), *go_p = go.data_ptr<scalar_t>();
    scalar_t *gx_p = grad_x.data_ptr<scalar_t>(), *ghh_p = grad_hh.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* dhn = dh.data_ptr<scalar_t>();
      scalar_t* dhp = dh_prev.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H, r3 = t * 3 * BH + b * 3 * H;
        gru_cudnn_grad_row(H, k[t * B + b], g_p + r3, hn_p + t * BH + r, hs_p + t * BH + r, go_p + t * BH + r,
                           dhn + r, gx_p + r3, ghh_p + r3, dhp + r);
      }
      gemm<scalar_t>('N', H, B, 3 * H, w, H, ghh_p + t * 3 * BH, 3 * H, dhp, H);  // dh_{t-1} += d_hh W_hh
      std::swap(dh, dh_prev);
    }
  });
  return {grad_x, grad_hh, dh};
}

}  // namespace

TORCH_LIBRARY(unrolled_native, m) {
  m.def("use_blas(bool on) -> bool", &use_blas);
  m.def("lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor w_hh, Tensor peep, Tensor keep, int flags)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_backward(Tensor grad_out, Tensor grad_h, Tensor grad_c, Tensor hs, Tensor cs, Tensor acts,"
        " Tensor squashed, Tensor w_hh, Tensor peep, Tensor keep, int flags) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cho_forward(Tensor xrz, Tensor xn, Tensor h0, Tensor w_rz, Tensor w_n, Tensor keep)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cudnn_forward(Tensor xw, Tensor h0, Tensor w_hh, Tensor b_hh, Tensor keep)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cudnn_backward(Tensor grad_out, Tensor grad_h, Tensor hs, Tensor gates, Tensor h_n, Tensor w_hh,"
        " Tensor keep) -> (Tensor, Tensor, Tensor)");
  m.def("gru_cho_backward(Tensor grad_out, Tensor grad_h, Tensor hs, Tensor rz, Tensor n, Tensor w_rz,"
        " Tensor w_n, Tensor keep) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(unrolled_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_cho_forward", &gru_cho_forward);
  m.impl("gru_cho_backward", &gru_cho_backward);
  m.impl("gru_cudnn_forward", &gru_cudnn_forward);
  m.impl("gru_cudnn_backward", &gru_cudnn_backward);
}
