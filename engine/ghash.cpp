#include "engine/ghash.h"

#include <cstring>

namespace persoflow {
namespace {

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

Ghash::Ghash(std::span<const std::uint8_t> h) : table_(16 * 16) {
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
    for (int k = 0; k < 16; ++k) state_[k] ^= partial_[k];
    multiply(state_);
    partial_len_ = 0;
  }
  for (; i + 16 <= data.size(); i += 16) {
    for (int k = 0; k < 16; ++k) state_[k] ^= data[i + static_cast<std::size_t>(k)];
    multiply(state_);
  }
  while (i < data.size()) partial_[partial_len_++] = data[i++];
}

void Ghash::pad_partial() {
  if (partial_len_ == 0) return;
  std::memset(partial_ + partial_len_, 0, 16 - partial_len_);
  for (int k = 0; k < 16; ++k) state_[k] ^= partial_[k];
  multiply(state_);
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
  for (int k = 0; k < 16; ++k) state_[k] ^= lengths[k];
  multiply(state_);
  std::array<std::uint8_t, 16> out{};
  std::memcpy(out.data(), state_, 16);
  detail::secure_wipe(state_, sizeof state_);
  detail::secure_wipe(partial_, sizeof partial_);
  return out;
}

}  // namespace persoflow
