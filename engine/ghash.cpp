#include "engine/ghash.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PERSOFLOW_GHASH_CLMUL 1
#endif

namespace persoflow {
namespace {

#ifdef PERSOFLOW_GHASH_CLMUL
#define PF_CLMUL_TARGET __attribute__((target("pclmul,ssse3")))

bool cpu_has_clmul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("ssse3");
}

// Reverses the 16 bytes: GCM's bit-reflected blocks become values whose carry-less
// product, shifted left by one bit, is the GF(2^128) product before reduction.
PF_CLMUL_TARGET inline __m128i byte_reverse(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

// a * b in GCM's field, both byte-reversed (Gueron and Kounavis, "Intel Carry-Less
// Multiplication Instruction and its Usage for Computing the GCM Mode", algorithms 1
// and 5: a schoolbook 256-bit product, shifted left by one bit, reduced modulo
// x^128 + x^7 + x^2 + x + 1).
PF_CLMUL_TARGET inline __m128i gf_multiply(__m128i a, __m128i b) {
  __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
  __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
  __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
  lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
  hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
  // The 256-bit hi:lo shifted left by one bit.
  __m128i lo_carry = _mm_srli_epi32(lo, 31);
  __m128i hi_carry = _mm_srli_epi32(hi, 31);
  lo = _mm_slli_epi32(lo, 1);
  hi = _mm_slli_epi32(hi, 1);
  const __m128i cross = _mm_srli_si128(lo_carry, 12);
  hi_carry = _mm_slli_si128(hi_carry, 4);
  lo_carry = _mm_slli_si128(lo_carry, 4);
  lo = _mm_or_si128(lo, lo_carry);
  hi = _mm_or_si128(hi, hi_carry);
  hi = _mm_or_si128(hi, cross);
  // Reduction, first phase.
  __m128i t = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
  const __m128i t_high = _mm_srli_si128(t, 4);
  lo = _mm_xor_si128(lo, _mm_slli_si128(t, 12));
  // Second phase.
  __m128i u = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
  u = _mm_xor_si128(u, t_high);
  lo = _mm_xor_si128(lo, u);
  return _mm_xor_si128(hi, lo);
}

PF_CLMUL_TARGET void clmul_absorb(std::uint8_t state[16], const std::uint8_t* h_reversed, const std::uint8_t* data,
                                  std::size_t blocks) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h_reversed));
  __m128i x = byte_reverse(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)));
  for (std::size_t b = 0; b < blocks; ++b, data += 16) {
    const __m128i block = byte_reverse(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data)));
    x = gf_multiply(_mm_xor_si128(x, block), h);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), byte_reverse(x));
}
#endif

std::uint64_t load_be64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void store_be64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}

// Reduction constants for shifting the 128-bit value right by 4 bits (bit-reflected
// GF(2^128) with R = 0xE1 || 0^120), indexed by the 4 bits shifted out.
constexpr std::uint64_t kReduce4[16] = {
    0x0000000000000000ULL, 0x1C20000000000000ULL, 0x3840000000000000ULL, 0x2460000000000000ULL,
    0x7080000000000000ULL, 0x6CA0000000000000ULL, 0x48C0000000000000ULL, 0x54E0000000000000ULL,
    0xE100000000000000ULL, 0xFD20000000000000ULL, 0xD940000000000000ULL, 0xC560000000000000ULL,
    0x9180000000000000ULL, 0x8DA0000000000000ULL, 0xA9C0000000000000ULL, 0xB5E0000000000000ULL,
};

}  // namespace

Ghash::Ghash(std::span<const std::uint8_t> h, Method method) {
#ifdef PERSOFLOW_GHASH_CLMUL
  static const bool has_clmul = cpu_has_clmul();
  if (method == Method::kFastest && has_clmul) {
    clmul_ = true;
    table_.resize(16);
    auto r = table_.reveal_mutable();
    for (std::size_t i = 0; i < 16; ++i) r[i] = h[15 - i];
    return;
  }
#else
  (void)method;
#endif
  table_.resize(16 * 16);
  auto* t = reinterpret_cast<std::uint64_t*>(table_.reveal_mutable().data());
  // t[2*i] = high half, t[2*i+1] = low half of i*H, where the 4-bit index i is read
  // with its most significant bit as the coefficient of x^0 (GCM's bit order).
  std::uint64_t vh = load_be64(h.data());
  std::uint64_t vl = load_be64(h.data() + 8);
  t[2 * 8] = vh;
  t[2 * 8 + 1] = vl;
  for (int i = 4; i > 0; i >>= 1) {  // 4 = H*x, 2 = H*x^2, 1 = H*x^3
    const std::uint64_t carry = vl & 1;
    vl = (vh << 63) | (vl >> 1);
    vh = (vh >> 1) ^ (carry != 0 ? 0xE100000000000000ULL : 0);
    t[2 * i] = vh;
    t[2 * i + 1] = vl;
  }
  for (int i = 2; i < 16; i <<= 1) {
    for (int j = 1; j < i; ++j) {
      t[2 * (i + j)] = t[2 * i] ^ t[2 * j];
      t[2 * (i + j) + 1] = t[2 * i + 1] ^ t[2 * j + 1];
    }
  }
  t[0] = 0;
  t[1] = 0;
}

void Ghash::absorb_blocks(const std::uint8_t* data, std::size_t blocks) {
#ifdef PERSOFLOW_GHASH_CLMUL
  if (clmul_) {
    clmul_absorb(state_, table_.reveal().data(), data, blocks);
    return;
  }
#endif
  for (std::size_t b = 0; b < blocks; ++b, data += 16) {
    for (int k = 0; k < 16; ++k) state_[k] ^= data[k];
    multiply(state_);
  }
}

void Ghash::multiply(std::uint8_t block[16]) {
  const auto* t = reinterpret_cast<const std::uint64_t*>(table_.reveal().data());
  std::uint64_t zh = 0, zl = 0;
  for (int i = 15; i >= 0; --i) {
    for (int half = 0; half < 2; ++half) {
      const int nibble = half == 0 ? (block[i] & 0x0F) : (block[i] >> 4);
      if (!(i == 15 && half == 0)) {
        const int rem = static_cast<int>(zl & 0x0F);
        zl = (zh << 60) | (zl >> 4);
        zh = (zh >> 4) ^ kReduce4[rem];
      }
      zh ^= t[2 * nibble];
      zl ^= t[2 * nibble + 1];
    }
  }
  store_be64(block, zh);
  store_be64(block + 8, zl);
}

void Ghash::absorb(std::span<const std::uint8_t> data) {
  std::size_t i = 0;
  if (partial_len_ > 0) {
    while (partial_len_ < 16 && i < data.size()) partial_[partial_len_++] = data[i++];
    if (partial_len_ < 16) return;
    absorb_blocks(partial_, 1);
    partial_len_ = 0;
  }
  const std::size_t blocks = (data.size() - i) / 16;
  absorb_blocks(data.data() + i, blocks);
  i += blocks * 16;
  while (i < data.size()) partial_[partial_len_++] = data[i++];
}

void Ghash::pad_partial() {
  if (partial_len_ == 0) return;
  std::memset(partial_ + partial_len_, 0, 16 - partial_len_);
  absorb_blocks(partial_, 1);
  partial_len_ = 0;
}

void Ghash::update_aad(std::span<const std::uint8_t> data) {
  aad_bytes_ += data.size();
  absorb(data);
}

void Ghash::update_ciphertext(std::span<const std::uint8_t> data) {
  if (!in_ciphertext_) {
    pad_partial();  // the AAD is zero-padded to a block boundary
    in_ciphertext_ = true;
  }
  ct_bytes_ += data.size();
  absorb(data);
}

std::array<std::uint8_t, 16> Ghash::finish() {
  pad_partial();
  std::uint8_t lengths[16];
  store_be64(lengths, aad_bytes_ * 8);
  store_be64(lengths + 8, ct_bytes_ * 8);
  absorb_blocks(lengths, 1);
  std::array<std::uint8_t, 16> out{};
  std::memcpy(out.data(), state_, 16);
  detail::secure_wipe(state_, sizeof state_);
  detail::secure_wipe(partial_, sizeof partial_);
  return out;
}

}  // namespace persoflow
