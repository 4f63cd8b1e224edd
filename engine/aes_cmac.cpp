#include "engine/aes_cmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <string>

namespace persoflow {
namespace {

struct CipherDeleter {
  void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
};
struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }  // cleanses the key schedule
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

// Fetched once per process; EVP_CIPHER objects are reference counted and shareable between
// threads. A provider that lacks AES is not one persoflow can run on.
EVP_CIPHER* fetch_once(const char* name) {
  EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, name, nullptr);
  if (c == nullptr) std::abort();
  return c;
}

// Wipes the stack copies of CMAC's secret intermediate values when it returns.
template <std::size_t N>
struct Wiped {
  std::array<std::uint8_t, N> b{};
  ~Wiped() { OPENSSL_cleanse(b.data(), b.size()); }
};

// One ECB block under the context's key.
bool encrypt_block(EVP_CIPHER_CTX* ctx, const std::uint8_t* in, std::uint8_t* out) {
  int len = 0;
  return EVP_EncryptUpdate(ctx, out, &len, in, static_cast<int>(kAesBlockSize)) == 1 &&
         len == static_cast<int>(kAesBlockSize);
}

}  // namespace

struct AesKeySchedule::State {
  CipherCtx ctx;
  std::array<std::uint8_t, kAesBlockSize> k1{}, k2{};
  ~State() {
    OPENSSL_cleanse(k1.data(), k1.size());
    OPENSSL_cleanse(k2.data(), k2.size());
  }
};

AesKeySchedule::AesKeySchedule(std::unique_ptr<State> state) : state_(std::move(state)) {}
AesKeySchedule::AesKeySchedule(AesKeySchedule&&) noexcept = default;
AesKeySchedule& AesKeySchedule::operator=(AesKeySchedule&&) noexcept = default;
AesKeySchedule::~AesKeySchedule() = default;

Result<AesKeySchedule> AesKeySchedule::create(const SecureBytes& key) {
  PF_TRY(check_aes_key(key));
  auto state = std::make_unique<State>();
  state->ctx.reset(EVP_CIPHER_CTX_new());
  if (!state->ctx) return Error(ErrorCode::kInternal, "AES: EVP_CIPHER_CTX_new failed");
  const auto k = key.reveal();
  if (EVP_EncryptInit_ex2(state->ctx.get(), aes_fetched_cipher(k.size(), false), k.data(), nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(state->ctx.get(), 0) != 1) {
    return Error(ErrorCode::kInternal, "AES: EVP_EncryptInit_ex2 failed");
  }
  Wiped<kAesBlockSize> l;
  if (!encrypt_block(state->ctx.get(), l.b.data(), l.b.data())) return Error(ErrorCode::kInternal, "AES failed");
  cmac_double_block(l.b, state->k1);
  cmac_double_block(state->k1, state->k2);
  return AesKeySchedule(std::move(state));
}

Result<Bytes> AesKeySchedule::cmac(std::span<const std::uint8_t> data) {
  Bytes tag(kAesBlockSize);
  PF_TRY(cmac_into(data, std::span<std::uint8_t, kAesBlockSize>(tag.data(), kAesBlockSize)));
  return tag;
}

// AES-CMAC (SP 800-38B) computed here over AES-ECB: L = E(K, 0), K1 = dbl(L), K2 = dbl(K1)
// (made by create()); a CBC-MAC whose last block is xor'ed with K1 (whole) or, pad80'ed,
// with K2. The same algorithm OpenSSL's EVP_MAC "CMAC" runs (the RFC 4493 / SP 800-38B
// vectors check it), on a cipher fetched once.
Status AesKeySchedule::cmac_into(std::span<const std::uint8_t> data, std::span<std::uint8_t, kAesBlockSize> out) {
  Wiped<kAesBlockSize> x, m;
  const std::size_t blocks = data.empty() ? 1 : (data.size() + kAesBlockSize - 1) / kAesBlockSize;
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::size_t at = i * kAesBlockSize;
    const std::size_t take = std::min(kAesBlockSize, data.size() - std::min(data.size(), at));
    m.b.fill(0);
    std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(std::min(data.size(), at)), take, m.b.begin());
    if (i + 1 == blocks) {
      const bool whole = take == kAesBlockSize;
      if (!whole) m.b[take] = 0x80;
      const auto& sub = whole ? state_->k1 : state_->k2;
      for (std::size_t j = 0; j < kAesBlockSize; ++j) m.b[j] ^= sub[j];
    }
    for (std::size_t j = 0; j < kAesBlockSize; ++j) x.b[j] ^= m.b[j];
    if (!encrypt_block(state_->ctx.get(), x.b.data(), x.b.data())) return Error(ErrorCode::kInternal, "AES-CMAC failed");
  }
  std::copy(x.b.begin(), x.b.end(), out.begin());
  return ok_status();
}

Result<Bytes> AesKeySchedule::ecb_encrypt(std::span<const std::uint8_t> data) {
  if (data.empty() || data.size() % kAesBlockSize != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "AES-ECB: data of " + std::to_string(data.size()) + " bytes is not a non-empty multiple of 16");
  }
  Bytes out(data.size());
  int len = 0;
  if (EVP_EncryptUpdate(state_->ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())) != 1 ||
      static_cast<std::size_t>(len) != data.size()) {
    return Error(ErrorCode::kInternal, "AES-ECB: EVP_EncryptUpdate failed");
  }
  return out;
}

Result<Bytes> AesKeySchedule::cbc_encrypt(std::span<const std::uint8_t> iv, std::span<const std::uint8_t> data) {
  if (iv.size() != kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument, "AES-CBC: IV is " + std::to_string(iv.size()) + " bytes; expected 16");
  }
  if (data.empty() || data.size() % kAesBlockSize != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "AES-CBC: data of " + std::to_string(data.size()) + " bytes is not a non-empty multiple of 16");
  }
  // CBC as chained ECB blocks on the one keyed context. The plaintext may be secret: the
  // running block is wiped; the ciphertext is public.
  Bytes out(data.size());
  Wiped<kAesBlockSize> x;
  std::copy(iv.begin(), iv.end(), x.b.begin());
  for (std::size_t at = 0; at < data.size(); at += kAesBlockSize) {
    for (std::size_t j = 0; j < kAesBlockSize; ++j) x.b[j] ^= data[at + j];
    if (!encrypt_block(state_->ctx.get(), x.b.data(), x.b.data())) return Error(ErrorCode::kInternal, "AES-CBC failed");
    std::copy(x.b.begin(), x.b.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  }
  return out;
}

const EVP_CIPHER* aes_fetched_cipher(std::size_t key_size, bool cbc) {
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> ecb128((fetch_once("AES-128-ECB")));
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> ecb192((fetch_once("AES-192-ECB")));
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> ecb256((fetch_once("AES-256-ECB")));
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> cbc128((fetch_once("AES-128-CBC")));
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> cbc192((fetch_once("AES-192-CBC")));
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> cbc256((fetch_once("AES-256-CBC")));
  switch (key_size) {
    case 16:
      return cbc ? cbc128.get() : ecb128.get();
    case 24:
      return cbc ? cbc192.get() : ecb192.get();
    default:
      return cbc ? cbc256.get() : ecb256.get();
  }
}

void cmac_double_block(std::span<const std::uint8_t, kAesBlockSize> in, std::span<std::uint8_t, kAesBlockSize> out) {
  const auto carry_mask = static_cast<std::uint8_t>(0u - (in[0] >> 7));
  for (std::size_t i = 0; i < kAesBlockSize; ++i) {
    const auto next = i + 1 < kAesBlockSize ? static_cast<std::uint8_t>(in[i + 1] >> 7) : std::uint8_t{0};
    out[i] = static_cast<std::uint8_t>((in[i] << 1) | next);
  }
  out[kAesBlockSize - 1] ^= static_cast<std::uint8_t>(0x87 & carry_mask);
}

Status check_aes_key(const SecureBytes& key) {
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    return Error(ErrorCode::kInvalidArgument,
                 "AES key is " + std::to_string(key.size()) + " bytes; expected 16, 24 or 32");
  }
  return ok_status();
}

// One tag: a schedule made for it, freed (its context cleansed) after it.
Result<Bytes> aes_cmac(const SecureBytes& key, std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(AesKeySchedule schedule, AesKeySchedule::create(key));
  return schedule.cmac(data);
}

Result<SecureBytes> aes_cmac_secret(const SecureBytes& key, std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(AesKeySchedule schedule, AesKeySchedule::create(key));
  SecureBytes tag(kAesBlockSize);
  PF_TRY(schedule.cmac_into(data, std::span<std::uint8_t, kAesBlockSize>(tag.reveal_mutable().data(), kAesBlockSize)));
  return tag;
}

}  // namespace persoflow
