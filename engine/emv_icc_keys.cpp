#include "engine/emv_icc_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <bit>
#include <memory>
#include <string>

#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "engine/key_types.h"

namespace persoflow {
namespace {

constexpr std::size_t kYLengthDes = 8;   // 16 digits
constexpr std::size_t kYLengthAes = 16;  // 32 digits

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Position (1-based) of the first character that is not a decimal digit, 0 if none.
std::size_t first_non_digit(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!is_digit(s[i])) return i + 1;
  }
  return 0;
}

// The rightmost 2*out_bytes digits of a || b as BCD, left-padded with 0 digits.
SecureBytes bcd_right_aligned(std::string_view a, std::string_view b, std::size_t out_bytes) {
  SecureBytes out(out_bytes);
  auto o = out.reveal_mutable();
  const std::size_t n = a.size() + b.size();
  const std::size_t slots = 2 * out_bytes;
  for (std::size_t i = 0; i < slots; ++i) {
    if (i + n < slots) continue;  // left padding: stays 0
    const std::size_t j = i + n - slots;
    const char c = j < a.size() ? a[j] : b[j - a.size()];
    const auto digit = static_cast<std::uint8_t>(c - '0');
    o[i / 2] = static_cast<std::uint8_t>(o[i / 2] | (i % 2 == 0 ? digit << 4 : digit));
  }
  return out;
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// Option B's Y (Book 2 A1.4.2): SHA-1 over BCD(PAN || PSN, left-padded to an even
// digit count), decimalised: the digest's hex digits 0..9 in order, then a..f as 0..5.
Result<SecureBytes> option_b_input(std::string_view pan, std::string_view psn) {
  const SecureBytes x = bcd_right_aligned(pan, psn, (pan.size() + psn.size() + 1) / 2);
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_len = 0;
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), x.reveal().data(), x.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &digest_len) != 1 || digest_len != 20) {
    OPENSSL_cleanse(digest.data(), digest.size());
    return Error(ErrorCode::kInternal, "ICC master key option B: SHA-1 failed");
  }
  SecureBytes y(kYLengthDes);
  auto out = y.reveal_mutable();
  std::size_t count = 0;
  auto put = [&](std::uint8_t digit) {
    out[count / 2] =
        static_cast<std::uint8_t>(out[count / 2] | (count % 2 == 0 ? digit << 4 : digit));
    ++count;
  };
  for (bool letters : {false, true}) {
    for (std::size_t i = 0; i < 2 * digest_len && count < 2 * kYLengthDes; ++i) {
      const auto nibble =
          static_cast<std::uint8_t>(i % 2 == 0 ? digest[i / 2] >> 4 : digest[i / 2] & 0x0F);
      if (!letters && nibble < 10) put(nibble);
      if (letters && nibble >= 10) put(static_cast<std::uint8_t>(nibble - 10));
    }
  }
  OPENSSL_cleanse(digest.data(), digest.size());
  return y;
}

Status check_imk_length(IccDerivationOption option, std::size_t imk_length) {
  const bool aes = option == IccDerivationOption::kC;
  const bool ok = aes ? (imk_length == 16 || imk_length == 24 || imk_length == 32)
                      : (imk_length == 16 || imk_length == 24);
  if (!ok) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string("ICC master key option ") +
                     std::string(icc_derivation_option_name(option)) + " needs " +
                     (aes ? "an AES issuer master key of 16, 24 or 32 bytes"
                          : "a 3DES issuer master key of 16 or 24 bytes") +
                     ", got " + std::to_string(imk_length) + " bytes");
  }
  return ok_status();
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};

// AES-ECB of whole blocks whose output is a key: straight into SecureBytes.
Result<SecureBytes> aes_ecb_derive(const SecureBytes& key, std::span<const std::uint8_t> data) {
  PF_TRY(check_aes_key(key));
  const EVP_CIPHER* cipher = key.size() == 16   ? EVP_aes_128_ecb()
                             : key.size() == 24 ? EVP_aes_192_ecb()
                                                : EVP_aes_256_ecb();
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter> ctx(EVP_CIPHER_CTX_new());
  SecureBytes out(data.size() + kAesBlockSize);
  int len = 0;
  int tail = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.reveal().data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.reveal_mutable().data(), &len, data.data(),
                        static_cast<int>(data.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.reveal_mutable().data() + len, &tail) != 1) {
    return Error(ErrorCode::kInternal, "ICC master key option C: AES-ECB failed");
  }
  out.resize(static_cast<std::size_t>(len + tail));
  return out;
}

}  // namespace

std::string_view icc_derivation_option_name(IccDerivationOption option) {
  switch (option) {
    case IccDerivationOption::kA:
      return "A";
    case IccDerivationOption::kB:
      return "B";
    case IccDerivationOption::kC:
      return "C";
  }
  return "?";
}

Status check_icc_card_id(std::string_view pan, std::string_view psn) {
  if (pan.size() < kIccPanMinDigits || pan.size() > kIccPanMaxDigits) {
    return Error(ErrorCode::kInvalidArgument, "PAN must be " + std::to_string(kIccPanMinDigits) +
                                                  " to " + std::to_string(kIccPanMaxDigits) +
                                                  " decimal digits, got " +
                                                  std::to_string(pan.size()) + " characters");
  }
  if (const std::size_t at = first_non_digit(pan); at != 0) {
    return Error(
        ErrorCode::kInvalidArgument,
        "PAN holds a character that is not a decimal digit at position " + std::to_string(at));
  }
  if (!psn.empty() && psn.size() != kIccPsnDigits) {
    return Error(ErrorCode::kInvalidArgument,
                 "PAN sequence number must be 2 decimal digits (or absent), got " +
                     std::to_string(psn.size()) + " characters");
  }
  if (const std::size_t at = first_non_digit(psn); at != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "PAN sequence number holds a character that is not a decimal digit at position " +
                     std::to_string(at));
  }
  return ok_status();
}

Result<SecureBytes> icc_mk_input(IccDerivationOption option, std::string_view pan,
                                 std::string_view psn) {
  PF_TRY(check_icc_card_id(pan, psn));
  const std::string_view psn_or_00 = psn.empty() ? std::string_view("00") : psn;
  switch (option) {
    case IccDerivationOption::kA:
      return bcd_right_aligned(pan, psn_or_00, kYLengthDes);
    case IccDerivationOption::kB:
      // A PAN of at most 16 digits makes option B option A (Book 2 A1.4.2; pyemv).
      if (pan.size() <= 16) return bcd_right_aligned(pan, psn_or_00, kYLengthDes);
      return option_b_input(pan, psn_or_00);
    case IccDerivationOption::kC:
      return bcd_right_aligned(pan, psn_or_00, kYLengthAes);
  }
  return Error(ErrorCode::kInternal, "unknown ICC master key derivation option");
}

Result<SecureBytes> icc_mk_derivation_data(IccDerivationOption option, std::string_view pan,
                                           std::string_view psn, std::size_t imk_length) {
  PF_TRY(check_imk_length(option, imk_length));
  PF_ASSIGN_OR_RETURN(SecureBytes data, icc_mk_input(option, pan, psn));
  if (option == IccDerivationOption::kC && imk_length == 16) return data;  // one AES block
  const std::size_t n = data.size();
  data.resize(2 * n);
  auto d = data.reveal_mutable();
  for (std::size_t i = 0; i < n; ++i) d[n + i] = static_cast<std::uint8_t>(d[i] ^ 0xFF);
  return data;
}

std::size_t icc_master_key_length(IccDerivationOption option, std::size_t imk_length) {
  return option == IccDerivationOption::kC ? imk_length : 16;
}

bool has_odd_parity(std::span<const std::uint8_t> key) {
  for (std::uint8_t b : key) {
    if (std::popcount(b) % 2 == 0) return false;
  }
  return true;
}

Result<SecureBytes> derive_icc_master_key_kat(IccDerivationOption option, const SecureBytes& imk,
                                              std::string_view pan, std::string_view psn,
                                              DesParity parity) {
  PF_ASSIGN_OR_RETURN(SecureBytes data, icc_mk_derivation_data(option, pan, psn, imk.size()));
  if (option == IccDerivationOption::kC) {
    PF_ASSIGN_OR_RETURN(SecureBytes mk, aes_ecb_derive(imk, data.reveal()));
    mk.resize(icc_master_key_length(option, imk.size()));
    return mk;
  }
  PF_ASSIGN_OR_RETURN(SecureBytes mk, tdes_ecb_derive(imk, data.reveal()));
  if (parity == DesParity::kAdjustOdd) set_odd_parity(mk.reveal_mutable().data(), mk.size());
  return mk;
}

Result<SecureBytes> derive_common_session_key_kat(const SecureBytes& mk,
                                                  std::span<const std::uint8_t> r,
                                                  DesParity parity) {
  if (mk.size() != 16) {
    return Error(ErrorCode::kInvalidArgument,
                 "EMV common session key derivation needs a 16-byte 3DES ICC master key, got " +
                     std::to_string(mk.size()) + " bytes");
  }
  if (r.size() != 8) {
    return Error(ErrorCode::kInvalidArgument,
                 "EMV common session key derivation needs an 8-byte R, got " +
                     std::to_string(r.size()) + " bytes");
  }
  Bytes blocks(r.begin(), r.end());
  blocks.insert(blocks.end(), r.begin(), r.end());
  blocks[2] = 0xF0;
  blocks[8 + 2] = 0x0F;
  PF_ASSIGN_OR_RETURN(SecureBytes sk, tdes_ecb_derive(mk, blocks));
  if (parity == DesParity::kAdjustOdd) set_odd_parity(sk.reveal_mutable().data(), sk.size());
  return sk;
}

}  // namespace persoflow
