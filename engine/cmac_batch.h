// AES-CMAC (NIST SP 800-38B) of many messages under one key that the caller can only use
// through AES-ECB encryption of whole blocks: a key that stays in the HSM (C_Encrypt with
// CKM_AES_ECB), in the `host` key-handling mode of prep (docs/profile.md "Key handling").
//
// SP 800-38B computes CMAC(K, M) as a CBC-MAC whose last block is first xor'ed with a
// subkey: K1 when M ends on a whole block, K2 after pad80 otherwise (and for the empty
// message), where L = AES(K, 0^128), K1 = dbl(L), K2 = dbl(K1). So with L known, every
// CMAC is a chain of single-block ECB encryptions, and the chains of many messages can
// advance together: block j of every message goes into one ECB call (a "layer"), so n
// messages of at most b blocks cost b ECB calls, not n MAC calls. The one-block case
// (KDF3's input `01 000000 t 00 KDD`, gp-reference.md §4.3) is one layer:
//
//   CMAC(K, M) = AES-ECB(K, M xor K1)      for |M| = 16
//
// K1 and K2 are secret (SecureBytes): with them and ECB access one computes any CMAC
// under K. L itself is never kept. Every intermediate block is held in SecureBytes too:
// the outputs are card keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow {

// SP 800-38B §6.1: the two CMAC subkeys.
struct CmacSubkeys {
  SecureBytes k1;
  SecureBytes k2;
};

// K1 = dbl(L), K2 = dbl(K1) (a left shift with the conditional xor of 0x87, Rb for
// 128-bit blocks). kInvalidArgument unless `l` is 16 bytes.
Result<CmacSubkeys> cmac_subkeys_from_l(std::span<const std::uint8_t> l);

// AES-ECB of whole 16-byte blocks under the MAC key: `in` and `out` have the same, non-zero
// length, a multiple of 16. The oracle may be called concurrently from several threads
// only if the caller's implementation allows it; cmac_batch calls it from one thread.
using EcbOracle = std::function<Status(std::span<const std::uint8_t> in, std::span<std::uint8_t> out)>;

// The input block of a one-block CMAC: M xor K1. kInvalidArgument unless M is 16 bytes.
Result<SecureBytes> one_block_cmac_input(std::span<const std::uint8_t> message, const CmacSubkeys& subkeys);

// CMAC of every message (any lengths, the empty one included), in order, with one oracle
// call per block position ("layer"): max over the messages of ceil(|M| / 16), at least 1.
// Each result is 16 bytes. An oracle error is returned as it is.
Result<std::vector<SecureBytes>> cmac_batch(const EcbOracle& ecb, const CmacSubkeys& subkeys,
                                            std::span<const std::span<const std::uint8_t>> messages);

// How many oracle calls cmac_batch makes for these messages.
std::size_t cmac_batch_layers(std::span<const std::span<const std::uint8_t>> messages);

}  // namespace persoflow
