#include "engine/aes_cmac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <memory>
#include <string>

namespace persoflow {
namespace {

struct MacDeleter {
  void operator()(EVP_MAC* mac) const { EVP_MAC_free(mac); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};

// EVP_MAC objects are reference counted and shareable between threads; fetch once.
EVP_MAC* cmac_algorithm() {
  static const std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "CMAC", nullptr));
  return mac.get();
}

const char* cbc_cipher_name(std::size_t key_size) {
  switch (key_size) {
    case 16:
      return "AES-128-CBC";
    case 24:
      return "AES-192-CBC";
    default:
      return "AES-256-CBC";
  }
}

Status cmac_into(const SecureBytes& key, std::span<const std::uint8_t> data,
                 std::span<std::uint8_t, kAesBlockSize> out) {
  PF_TRY(check_aes_key(key));
  EVP_MAC* alg = cmac_algorithm();
  if (alg == nullptr) return Error(ErrorCode::kInternal, "AES-CMAC: OpenSSL has no CMAC");
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(alg));
  if (!ctx) return Error(ErrorCode::kInternal, "AES-CMAC: EVP_MAC_CTX_new failed");
  std::string cipher = cbc_cipher_name(key.size());
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher.data(), 0),
      OSSL_PARAM_construct_end()};
  const auto k = key.reveal();
  if (EVP_MAC_init(ctx.get(), k.data(), k.size(), params) != 1) {
    return Error(ErrorCode::kInternal, "AES-CMAC: EVP_MAC_init failed");
  }
  if (!data.empty() && EVP_MAC_update(ctx.get(), data.data(), data.size()) != 1) {
    return Error(ErrorCode::kInternal, "AES-CMAC: EVP_MAC_update failed");
  }
  std::size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != kAesBlockSize) {
    return Error(ErrorCode::kInternal, "AES-CMAC: EVP_MAC_final failed");
  }
  return ok_status();
}

}  // namespace

Status check_aes_key(const SecureBytes& key) {
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    return Error(ErrorCode::kInvalidArgument,
                 "AES key is " + std::to_string(key.size()) + " bytes; expected 16, 24 or 32");
  }
  return ok_status();
}

Result<Bytes> aes_cmac(const SecureBytes& key, std::span<const std::uint8_t> data) {
  Bytes tag(kAesBlockSize);
  PF_TRY(cmac_into(key, data, std::span<std::uint8_t, kAesBlockSize>(tag.data(), kAesBlockSize)));
  return tag;
}

Result<SecureBytes> aes_cmac_secret(const SecureBytes& key, std::span<const std::uint8_t> data) {
  SecureBytes tag(kAesBlockSize);
  PF_TRY(cmac_into(
      key, data,
      std::span<std::uint8_t, kAesBlockSize>(tag.reveal_mutable().data(), kAesBlockSize)));
  return tag;
}

}  // namespace persoflow
