#include "engine/des_mac.h"

#include <openssl/evp.h>

#include <memory>
#include <string>

namespace persoflow {
namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

enum class Mode : std::uint8_t { kEcb, kCbc };
enum class Direction : std::uint8_t { kDecrypt = 0, kEncrypt = 1 };

Status check_blocks(std::span<const std::uint8_t> data, std::string_view what) {
  if (data.size() % kDesBlockSize != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + ": data length " + std::to_string(data.size()) +
                     " is not a multiple of 8");
  }
  return ok_status();
}

Status check_icv(std::span<const std::uint8_t> icv) {
  if (icv.size() != kDesBlockSize) {
    return Error(ErrorCode::kInvalidArgument,
                 "ICV must be 8 bytes, got " + std::to_string(icv.size()));
  }
  return ok_status();
}

const EVP_CIPHER* tdes_cipher(std::size_t key_size, Mode mode) {
  if (key_size == 16) return mode == Mode::kEcb ? EVP_des_ede_ecb() : EVP_des_ede_cbc();
  if (key_size == 24) return mode == Mode::kEcb ? EVP_des_ede3_ecb() : EVP_des_ede3_cbc();
  return nullptr;
}

// The one place that runs a DES-family cipher: 3DES with a 16- or 24-byte key, no
// padding, output written into `out` (data.size() bytes).
Status run_cipher(std::span<const std::uint8_t> key, Mode mode, Direction dir,
                  std::span<const std::uint8_t> icv, std::span<const std::uint8_t> data,
                  std::span<std::uint8_t> out) {
  const EVP_CIPHER* cipher = tdes_cipher(key.size(), mode);
  if (cipher == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "3DES key must be 16 or 24 bytes, got " + std::to_string(key.size()));
  }
  PF_TRY(check_blocks(data, "3DES"));
  if (mode == Mode::kCbc) PF_TRY(check_icv(icv));
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Error(ErrorCode::kInternal, "EVP_CIPHER_CTX_new failed");
  if (EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key.data(),
                        mode == Mode::kCbc ? icv.data() : nullptr,
                        dir == Direction::kEncrypt ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1) {
    return Error(ErrorCode::kInternal, "3DES cipher initialisation failed");
  }
  if (data.empty()) return ok_status();
  int len = 0;
  int final_len = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &final_len) != 1 ||
      static_cast<std::size_t>(len + final_len) != data.size()) {
    return Error(ErrorCode::kInternal, "3DES cipher operation failed");
  }
  return ok_status();
}

Result<Bytes> encrypt_to_bytes(const SecureBytes& key, Mode mode, std::span<const std::uint8_t> icv,
                               std::span<const std::uint8_t> data) {
  Bytes out(data.size());
  PF_TRY(run_cipher(key.reveal(), mode, Direction::kEncrypt, icv, data, out));
  return out;
}

Result<SecureBytes> run_to_secure(const SecureBytes& key, Mode mode, Direction dir,
                                  std::span<const std::uint8_t> icv,
                                  std::span<const std::uint8_t> data) {
  SecureBytes out(data.size());
  PF_TRY(run_cipher(key.reveal(), mode, dir, icv, data, out.reveal_mutable()));
  return out;
}

// Single DES is computed as 2-key 3DES with K1 = K2 (EDE with identical keys is single
// DES), which the OpenSSL 3 default provider serves; plain EVP_des_* would need the
// legacy provider loaded.
Result<SecureBytes> single_des_key(const SecureBytes& key) {
  const std::size_t n = key.size();
  if (n != 8 && n != 16 && n != 24) {
    return Error(ErrorCode::kInvalidArgument,
                 "DES key must be 8, 16 or 24 bytes, got " + std::to_string(n));
  }
  const auto k1 = key.reveal().first(kDesBlockSize);
  SecureBytes k1k1(k1);
  k1k1.append(k1);
  return k1k1;
}

}  // namespace

Result<std::size_t> unpad80_length(std::span<const std::uint8_t> padded) {
  std::size_t n = padded.size();
  while (n > 0 && padded[n - 1] == 0x00) --n;
  if (n == 0 || padded[n - 1] != 0x80) {
    return Error(ErrorCode::kParse, "no ISO 9797-1 method 2 padding (80 00...) at the end");
  }
  return n - 1;
}

Result<Bytes> tdes_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data) {
  return encrypt_to_bytes(key, Mode::kEcb, {}, data);
}

Result<Bytes> tdes_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                               std::span<const std::uint8_t> data) {
  return encrypt_to_bytes(key, Mode::kCbc, icv, data);
}

Result<SecureBytes> tdes_cbc_decrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                                     std::span<const std::uint8_t> data) {
  return run_to_secure(key, Mode::kCbc, Direction::kDecrypt, icv, data);
}

Result<SecureBytes> tdes_ecb_decrypt(const SecureBytes& key, std::span<const std::uint8_t> data) {
  return run_to_secure(key, Mode::kEcb, Direction::kDecrypt, {}, data);
}

Result<SecureBytes> tdes_ecb_derive(const SecureBytes& key, std::span<const std::uint8_t> data) {
  return run_to_secure(key, Mode::kEcb, Direction::kEncrypt, {}, data);
}

Result<SecureBytes> tdes_cbc_derive(const SecureBytes& key, std::span<const std::uint8_t> icv,
                                    std::span<const std::uint8_t> data) {
  return run_to_secure(key, Mode::kCbc, Direction::kEncrypt, icv, data);
}

Result<Bytes> des_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(SecureBytes k1k1, single_des_key(key));
  return encrypt_to_bytes(k1k1, Mode::kEcb, {}, data);
}

Result<Bytes> des_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> icv,
                              std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(SecureBytes k1k1, single_des_key(key));
  return encrypt_to_bytes(k1k1, Mode::kCbc, icv, data);
}

Result<Bytes> full_3des_mac(const SecureBytes& key, std::span<const std::uint8_t> icv,
                            std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(Bytes ct, tdes_cbc_encrypt(key, icv, pad80(data, kDesBlockSize)));
  return Bytes(ct.end() - kDesBlockSize, ct.end());
}

Result<Bytes> retail_mac(const SecureBytes& key, std::span<const std::uint8_t> icv,
                         std::span<const std::uint8_t> data) {
  PF_TRY(check_icv(icv));
  if (key.size() != 16 && key.size() != 24) {
    return Error(ErrorCode::kInvalidArgument,
                 "retail MAC key must be 16 or 24 bytes, got " + std::to_string(key.size()));
  }
  const Bytes padded = pad80(data, kDesBlockSize);
  const std::size_t head = padded.size() - kDesBlockSize;
  Bytes chain(icv.begin(), icv.end());
  if (head > 0) {
    PF_ASSIGN_OR_RETURN(Bytes ct, des_cbc_encrypt(key, icv, std::span(padded).first(head)));
    chain.assign(ct.end() - kDesBlockSize, ct.end());
  }
  for (std::size_t i = 0; i < kDesBlockSize; ++i) chain[i] ^= padded[head + i];
  return tdes_ecb_encrypt(key, chain);
}

}  // namespace persoflow
