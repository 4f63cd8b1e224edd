// AES-CMAC (NIST SP 800-38B, RFC 4493 for AES-128) over a clear key in SecureBytes, through
// OpenSSL's EVP_MAC "CMAC" with AES-128/192-256-CBC. Full 16-byte tag (GP Amd D §4.1.3).
//
// This and engine/aes_cbc.h are the only places where SCP03 code touches key bytes: the
// KDF, the C-MAC chain, the C-DECRYPTION ICV and the K-DEK encryption all go through
// these three functions (aes_cmac, aes_ecb_encrypt, aes_cbc_encrypt). An HSM-backed key
// path replaces them by the engine's key interfaces (engine/key_ops.h) without changing
// the byte layouts built on top (docs/scp03.md "HSM routing").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

inline constexpr std::size_t kAesBlockSize = 16;

// kInvalidArgument unless the key is 16, 24 or 32 bytes. Never quotes the key.
Status check_aes_key(const SecureBytes& key);

// The 16-byte CMAC tag of `data` (any length, also empty). Use when the tag is public
// (C-MAC, cryptograms).
Result<Bytes> aes_cmac(const SecureBytes& key, std::span<const std::uint8_t> data);

// Same, for a tag that is itself secret (a KDF output block that becomes a session key).
Result<SecureBytes> aes_cmac_secret(const SecureBytes& key, std::span<const std::uint8_t> data);

}  // namespace persoflow
