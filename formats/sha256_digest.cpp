#include "formats/sha256_digest.h"

#include <openssl/evp.h>

#include <memory>

namespace persoflow::formats {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

}  // namespace

Result<Sha256Digest> sha256(std::initializer_list<std::span<const std::uint8_t>> parts) {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error(ErrorCode::kInternal, "OpenSSL could not start a SHA-256 digest");
  }
  for (const auto& part : parts) {
    if (!part.empty() && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) {
      return Error(ErrorCode::kInternal, "OpenSSL SHA-256 update failed");
    }
  }
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    return Error(ErrorCode::kInternal, "OpenSSL SHA-256 final failed");
  }
  return out;
}

}  // namespace persoflow::formats
