#include "engine/scp03_kdf.h"

#include <string>

#include "engine/aes_cmac.h"

namespace persoflow {
namespace {

constexpr std::size_t kLabelZeros = 11;
constexpr std::size_t kMaxBlocks = 255;  // the counter i is one byte

}  // namespace

Bytes scp03_kdf_input(std::uint8_t constant, std::uint16_t l_bits, std::uint8_t counter_i,
                      std::span<const std::uint8_t> context) {
  Bytes input;
  input.reserve(kLabelZeros + 5 + context.size());  // one allocation
  input.assign(kLabelZeros, 0x00);
  input.push_back(constant);
  input.push_back(0x00);
  input.push_back(static_cast<std::uint8_t>(l_bits >> 8));
  input.push_back(static_cast<std::uint8_t>(l_bits));
  input.push_back(counter_i);
  input.insert(input.end(), context.begin(), context.end());
  return input;
}

Result<SecureBytes> scp03_kdf(AesKeySchedule& key, std::uint8_t constant, std::uint16_t l_bits,
                              std::span<const std::uint8_t> context) {
  if (l_bits == 0 || l_bits % 8 != 0) {
    return Error(ErrorCode::kInvalidArgument, "SCP03 KDF: L = " + std::to_string(l_bits) +
                                                  " bits is not a positive multiple of 8");
  }
  const std::size_t out_len = l_bits / 8u;
  const std::size_t blocks = (out_len + kAesBlockSize - 1) / kAesBlockSize;
  if (blocks > kMaxBlocks) {
    return Error(ErrorCode::kInvalidArgument, "SCP03 KDF: L needs more than 255 blocks");
  }

  SecureBytes out(blocks * kAesBlockSize);
  auto o = out.reveal_mutable();
  for (std::size_t i = 1; i <= blocks; ++i) {
    const Bytes input = scp03_kdf_input(constant, l_bits, static_cast<std::uint8_t>(i), context);
    PF_TRY(key.cmac_into(input, std::span<std::uint8_t, kAesBlockSize>(o.data() + (i - 1) * kAesBlockSize,
                                                                        kAesBlockSize)));
  }
  out.resize(out_len);
  return out;
}

Result<SecureBytes> scp03_kdf(const SecureBytes& key, std::uint8_t constant, std::uint16_t l_bits,
                              std::span<const std::uint8_t> context) {
  PF_TRY_CTX(check_aes_key(key), "SCP03 KDF");
  PF_ASSIGN_OR_RETURN(AesKeySchedule schedule, AesKeySchedule::create(key));
  return scp03_kdf(schedule, constant, l_bits, context);
}

}  // namespace persoflow
