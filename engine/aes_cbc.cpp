#include "engine/aes_cbc.h"

#include <openssl/evp.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <type_traits>

#include "engine/aes_cmac.h"

namespace persoflow {
namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};

// Fetched once (engine/aes_cmac.h): EVP_aes_*() would be fetched by name on every init.
const EVP_CIPHER* aes_cipher(std::size_t key_size, bool cbc) { return aes_fetched_cipher(key_size, cbc); }

Result<Bytes> encrypt_blocks(const SecureBytes& key, const std::uint8_t* iv,
                             std::span<const std::uint8_t> data, const char* what) {
  PF_TRY(check_aes_key(key));
  if (data.empty() || data.size() % kAesBlockSize != 0 || data.size() > INT_MAX - kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument, std::string(what) + ": data of " +
                                                  std::to_string(data.size()) +
                                                  " bytes is not a non-empty multiple of 16");
  }
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Error(ErrorCode::kInternal, std::string(what) + ": EVP_CIPHER_CTX_new failed");
  const auto k = key.reveal();
  if (EVP_EncryptInit_ex2(ctx.get(), aes_cipher(k.size(), iv != nullptr), k.data(), iv, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1) {
    return Error(ErrorCode::kInternal, std::string(what) + ": EVP_EncryptInit_ex failed");
  }
  Bytes out(data.size() + kAesBlockSize);
  int len = 0;
  int tail = 0;
  if (EVP_EncryptUpdate(ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &tail) != 1) {
    return Error(ErrorCode::kInternal, std::string(what) + ": EVP_EncryptUpdate failed");
  }
  out.resize(static_cast<std::size_t>(len + tail));
  return out;
}

template <typename Out>
Out pad80_into(std::span<const std::uint8_t> data, std::size_t block) {
  const std::size_t padded = (data.size() / block + 1) * block;
  Out out(padded);
  auto dst = [&out]() {
    if constexpr (std::is_same_v<Out, SecureBytes>) {
      return out.reveal_mutable();
    } else {
      return std::span<std::uint8_t>(out);
    }
  }();
  std::copy(data.begin(), data.end(), dst.begin());
  dst[data.size()] = 0x80;
  return out;
}

}  // namespace

Bytes pad80(std::span<const std::uint8_t> data, std::size_t block) {
  return pad80_into<Bytes>(data, block);
}

SecureBytes pad80_secret(std::span<const std::uint8_t> data, std::size_t block) {
  return pad80_into<SecureBytes>(data, block);
}

Result<Bytes> aes_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data) {
  return encrypt_blocks(key, nullptr, data, "AES-ECB");
}

Result<Bytes> aes_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> iv,
                              std::span<const std::uint8_t> data) {
  if (iv.size() != kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument,
                 "AES-CBC: IV is " + std::to_string(iv.size()) + " bytes; expected 16");
  }
  return encrypt_blocks(key, iv.data(), data, "AES-CBC");
}

}  // namespace persoflow
