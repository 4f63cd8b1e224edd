// AES-ECB and AES-CBC encryption without padding, over a clear key in SecureBytes, through
// OpenSSL EVP. The block-cipher half of the SCP03 primitive seam (see engine/aes_cmac.h):
// the C-DECRYPTION ICV is one ECB block, the command data and K-DEK-protected sensitive
// data are CBC. Padding is the caller's (pad80 below, or "arbitrary" padding per Amd D §6.2.8).
#pragma once

#include <cstdint>
#include <span>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

// ISO/IEC 9797-1 method 2: append 80, then 00 until a multiple of `block` (always at least
// one byte added). Public data only; for secret data use pad80_secret.
Bytes pad80(std::span<const std::uint8_t> data, std::size_t block);
SecureBytes pad80_secret(std::span<const std::uint8_t> data, std::size_t block);

// AES-ECB over whole blocks. kInvalidArgument unless data is a non-empty multiple of 16.
Result<Bytes> aes_ecb_encrypt(const SecureBytes& key, std::span<const std::uint8_t> data);

// AES-CBC with the 16-byte `iv` over whole blocks (no padding added). The plaintext may be
// secret (a key component); the ciphertext is public.
Result<Bytes> aes_cbc_encrypt(const SecureBytes& key, std::span<const std::uint8_t> iv,
                              std::span<const std::uint8_t> data);

}  // namespace persoflow
