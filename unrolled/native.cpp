// The recurrence of the cells torch has no fused kernel for, as one C++ loop per sequence, with its backward
// written out by hand. The equations, the tensors' shapes and the Python side are in unrolled/native.py.
//
// Per step the forward does one matrix product (two for Cho's GRU) and one pass over the (B, H) elements; the
// backward does the same in reverse and leaves the weight gradients to unrolled/native.py, as one product over all
// steps. Padding: keep[t][b] is 1 on real steps and 0 on padded ones, where the state stays and the output is 0.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
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

// The arithmetic of one row (one sequence's H units), as functions whose pointers cannot alias (__restrict__),
// so that the compiler vectorises the loops. Options enter as 0/1 factors and absent gates as rows of ones (values)
// or scratch rows (gradients), never as branches.

template <typename T>
void add_peephole(int64_t H, T* __restrict__ a, const T* __restrict__ p, const T* __restrict__ c) {
  for (int64_t j = 0; j < H; ++j) a[j] += p[j] * c[j];  // a += p C
}

template <typename T>
void cell_row(int64_t H, T coupled, const T* __restrict__ i, const T* __restrict__ fs, const T* __restrict__ g,
              const T* __restrict__ c_prev, T* __restrict__ c) {
  for (int64_t j = 0; j < H; ++j) {
    const T f = coupled * (1 - i[j]) + (1 - coupled) * fs[j];
    c[j] = f * c_prev[j] + i[j] * g[j];  // C_t = f C_{t-1} + i C~
  }
}

template <typename T>
void output_row(int64_t H, T kb, const T* __restrict__ o, const T* __restrict__ s, const T* __restrict__ h_prev,
                const T* __restrict__ c_prev, T* __restrict__ y, T* __restrict__ h_next, T* __restrict__ c_next) {
  for (int64_t j = 0; j < H; ++j) {  // h_t = o s_t; padding (kb = 0) keeps the state and outputs 0
    const T h = o[j] * s[j];
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
// out (T, B, H): h_t on real steps, 0 on padding. The sigmoids and tanhs are ATen's vectorised ops on whole blocks.
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
  const auto w_t = w_hh.t();
  const int64_t sigmoid_blocks = (blocks.i >= 0) + (blocks.f >= 0);  // i and f lead the rows when present
  const int64_t BH = B * H, BGH = B * G * H;
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    const auto peep_c = peep.contiguous();
    const scalar_t* pi = peep_c.data_ptr<scalar_t>();
    const scalar_t *pf = pi + H, *po = pi + 2 * H;
    const auto keep_c = keep.to(xw.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    const auto ones_t = at::ones({H}, xw.options());
    const scalar_t* ones = ones_t.data_ptr<scalar_t>();
    const scalar_t coupled = (flags & COUPLED) ? 1 : 0;
    scalar_t* acts_p = acts.data_ptr<scalar_t>();
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* cs_p = cs.data_ptr<scalar_t>();
    scalar_t* sq_p = squashed.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      auto a_t = acts[t];
      at::addmm_out(a_t, xw[t], hs[t], w_t);  // a_t = xw_t + h_{t-1} W_hh^T   (B, G*H)
      scalar_t* a = acts_p + t * BGH;
      const scalar_t* cp = cs_p + t * BH;
      scalar_t* cn = cs_p + (t + 1) * BH;
      if (peepholes) {
        for (int64_t b = 0; b < B; ++b) {  // a_i += p_i C_{t-1}, a_f += p_f C_{t-1}
          if (blocks.i >= 0) add_peephole(H, a + b * G * H + blocks.i * H, pi, cp + b * H);
          if (blocks.f >= 0) add_peephole(H, a + b * G * H + blocks.f * H, pf, cp + b * H);
        }
      }
      if (sigmoid_blocks > 0) a_t.narrow(1, 0, sigmoid_blocks * H).sigmoid_();
      if (in_act) a_t.narrow(1, blocks.g * H, H).tanh_();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* row = a + b * G * H;
        cell_row(H, coupled, blocks.i >= 0 ? row + blocks.i * H : ones, blocks.f >= 0 ? row + blocks.f * H : ones,
                 row + blocks.g * H, cp + b * H, cn + b * H);
      }
      auto s_t = squashed[t];
      if (out_act) {
        at::tanh_out(s_t, cs[t + 1]);  // s_t = tanh(C_t)
      } else {
        std::copy(cn, cn + BH, sq_p + t * BH);  // s_t = C_t
      }
      if (blocks.o >= 0) {
        if (peepholes) {
          for (int64_t b = 0; b < B; ++b) add_peephole(H, a + b * G * H + blocks.o * H, po, cn + b * H);  // a_o += p_o C_t
        }
        a_t.narrow(1, blocks.o * H, H).sigmoid_();
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        output_row(H, k[t * B + b], blocks.o >= 0 ? a + b * G * H + blocks.o * H : ones, sq_p + t * BH + r,
                   hs_p + t * BH + r, cp + r, out_p + t * BH + r, hs_p + (t + 1) * BH + r, cn + r);
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
      dh_prev.addmm_(grad_a[t], w_hh);  // dL/dh_{t-1} += dL/da_t W_hh   (B, H)
      std::swap(dh, dh_prev);
      std::swap(dc, dc_prev);
    }
  });
  return {grad_a, dh, dc, grad_peep};
}

// Forward of Cho's GRU. xrz (T, B, 2H) holds the r and z blocks of W_ih x_t + b_ih + b_hh; xn (T, B, H) the n block
// of W_ih x_t + b_ih + b_hn; w_rz (2H, H), w_n (H, H) the recurrent weights. Returns hs (T+1, B, H), rz (T, B, 2H)
// the gates r and z, n (T, B, H) the candidate, rh (T, B, H) the product's input r * h_{t-1}, and out (T, B, H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_cho_forward(
    const at::Tensor& xrz, const at::Tensor& xn, const at::Tensor& h0, const at::Tensor& w_rz,
    const at::Tensor& w_n, const at::Tensor& keep) {
  check_inputs(xrz, h0, w_rz, keep);
  const int64_t T = xrz.size(0), B = xrz.size(1), H = h0.size(1);
  auto hs = at::empty({T + 1, B, H}, xrz.options());
  auto rz = at::empty_like(xrz);
  auto n = at::empty({T, B, H}, xrz.options());
  auto rh = at::empty({T, B, H}, xrz.options());
  auto out = at::empty({T, B, H}, xrz.options());
  hs[0].copy_(h0);
  const auto w_rz_t = w_rz.t(), w_n_t = w_n.t();
  AT_DISPATCH_FLOATING_TYPES(xrz.scalar_type(), "gru_cho_forward", [&] {
    const auto keep_c = keep.to(xrz.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      auto rz_t = rz[t], n_t = n[t], rh_t = rh[t];
      at::addmm_out(rz_t, xrz[t], hs[t], w_rz_t);  // [a_r, a_z] = x_rz + h_{t-1} W_rz^T   (B, 2H)
      rz_t.sigmoid_();
      const scalar_t* g = rz_t.data_ptr<scalar_t>();
      const scalar_t* hp = hs[t].data_ptr<scalar_t>();
      scalar_t* q = rh_t.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* r = g + b * 2 * H;
        for (int64_t j = 0; j < H; ++j) q[b * H + j] = r[j] * hp[b * H + j];
      }
      at::addmm_out(n_t, xn[t], rh_t, w_n_t);  // a_n = x_n + (r * h_{t-1}) W_n^T   (B, H)
      n_t.tanh_();
      const scalar_t* cand = n_t.data_ptr<scalar_t>();
      scalar_t* hn = hs[t + 1].data_ptr<scalar_t>();
      scalar_t* y = out[t].data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* z = g + b * 2 * H + H;
        const scalar_t kb = k[t * B + b];
        const int64_t r = b * H;
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t h = cand[r + j] + z[j] * (hp[r + j] - cand[r + j]);
          y[r + j] = kb * h;
          hn[r + j] = kb * h + (1 - kb) * hp[r + j];
        }
      }
    }
  });
  return {hs, rz, n, rh, out};
}

// Backward of Cho's GRU: dL/d [a_r, a_z] (T, B, 2H), dL/d a_n (T, B, H) and dL/d h_0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_cho_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_h, const at::Tensor& hs, const at::Tensor& rz,
    const at::Tensor& n, const at::Tensor& w_rz, const at::Tensor& w_n, const at::Tensor& keep) {
  const int64_t T = rz.size(0), B = rz.size(1), H = hs.size(2);
  auto grad_rz = at::empty_like(rz);
  auto grad_n = at::empty_like(n);
  auto dh = grad_h.contiguous().clone(), dh_prev = at::empty_like(dh);
  auto d_rh = at::empty_like(dh);
  const auto go = grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES(rz.scalar_type(), "gru_cho_backward", [&] {
    const auto keep_c = keep.to(rz.scalar_type()).contiguous();
    const scalar_t* k = keep_c.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* g = rz[t].data_ptr<scalar_t>();
      const scalar_t* cand = n[t].data_ptr<scalar_t>();
      const scalar_t* hp = hs[t].data_ptr<scalar_t>();
      const scalar_t* gy = go[t].data_ptr<scalar_t>();
      const scalar_t* dhn = dh.data_ptr<scalar_t>();
      scalar_t* dhp = dh_prev.data_ptr<scalar_t>();
      scalar_t* drz = grad_rz[t].data_ptr<scalar_t>();
      scalar_t* dn = grad_n[t].data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t kb = k[t * B + b];
        const int64_t r = b * H;
        const scalar_t* z = g + b * 2 * H + H;
        scalar_t* d_az = drz + b * 2 * H + H;
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t d_h = kb * (gy[r + j] + dhn[r + j]);
          dn[r + j] = d_h * (1 - z[j]) * (1 - cand[r + j] * cand[r + j]);
          d_az[j] = d_h * (hp[r + j] - cand[r + j]) * z[j] * (1 - z[j]);
          dhp[r + j] = d_h * z[j] + (1 - kb) * dhn[r + j];
        }
      }
      at::mm_out(d_rh, grad_n[t], w_n);  // dL/d(r * h_{t-1}) = dL/da_n W_n   (B, H)
      const scalar_t* dq = d_rh.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = b * H;
        const scalar_t* rr = g + b * 2 * H;
        scalar_t* d_ar = drz + b * 2 * H;
        for (int64_t j = 0; j < H; ++j) {
          d_ar[j] = dq[r + j] * hp[r + j] * rr[j] * (1 - rr[j]);
          dhp[r + j] += dq[r + j] * rr[j];
        }
      }
      dh_prev.addmm_(grad_rz[t], w_rz);  // dL/dh_{t-1} += dL/d[a_r, a_z] W_rz   (B, H)
      std::swap(dh, dh_prev);
    }
  });
  return {grad_rz, grad_n, dh};
}

}  // namespace

TORCH_LIBRARY(unrolled_native, m) {
  m.def("lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor w_hh, Tensor peep, Tensor keep, int flags)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_backward(Tensor grad_out, Tensor grad_h, Tensor grad_c, Tensor hs, Tensor cs, Tensor acts,"
        " Tensor squashed, Tensor w_hh, Tensor peep, Tensor keep, int flags) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cho_forward(Tensor xrz, Tensor xn, Tensor h0, Tensor w_rz, Tensor w_n, Tensor keep)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cho_backward(Tensor grad_out, Tensor grad_h, Tensor hs, Tensor rz, Tensor n, Tensor w_rz,"
        " Tensor w_n, Tensor keep) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(unrolled_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_cho_forward", &gru_cho_forward);
  m.impl("gru_cho_backward", &gru_cho_backward);
}
