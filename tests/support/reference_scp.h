// An independent reference verifier of offline GlobalPlatform secure-channel sessions
// (SCP03, SCP02), for the end-to-end tests: it recomputes every cryptogram, C-MAC and
// encrypted field of a prepared script with OpenSSL's EVP API and the standard library
// only, written from ../shared/design/gp-reference.md (§1-§4, §8, §9). It shares no code
// with persoflow's wrapping, KDF, MAC or diversification code (it includes no engine/
// header), so a test that checks the engine with it does not check the engine against
// itself.
//
// What is verified (ref_verify_session):
//   APDU 0  INITIALIZE UPDATE = 80 50 P1 00 Lc host_challenge 00 (Lc 08, or 10 in SCP03
//           S16), P1 = requested_kvn if given, else 00 or kvn; the expected card answer is
//           recomputed field by field (SCP03: KDD, key info kvn 03 i, card challenge,
//           card cryptogram, [sequence counter]; SCP02: KDD, kvn 02, counter, card
//           challenge, card cryptogram).
//   APDU 1  EXTERNAL AUTHENTICATE = 84 82 level 00 Lc host cryptogram || C-MAC, no Le.
//   APDU 2+ every wrapped command: the C-MAC along the chain (SCP03: chaining value = the
//           full 16-byte CMAC; SCP02: retail MAC, ICV = DES-ECB(S-MAC K1, previous C-MAC)
//           when i.b5 is set, first ICV zero), the C-DEC data decrypted and its 80 00..
//           padding checked (SCP03: ICV = AES(S-ENC, counter block), the counter advancing
//           on every command after EXTERNAL AUTHENTICATE; SCP02: 3DES-CBC, zero ICV).
//           Le after the C-MAC is kept. Commands chained with P1 b8 (INSTALL, PUT KEY,
//           DELETE split over several APDUs, GPC v2.3.1 §11.1.5.1) are reassembled: the
//           C-MAC is over the unsegmented command (header with the last segment's P1/P2, Lc'
//           on 3 bytes 00 xx xx) and sits at the end of the last segment;
//           C-DEC covers the unsegmented data and uses one counter value. A command with
//           P1 b8 set is first tried on its own (a DELETE with "more commands" is a complete
//           command), then as the first segment of a chain.
// The first mismatch stops the verification; `failure` names the APDU by its index in
// `apdus` and the field, with the expected and the received hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/reference_crypto.h"

namespace persoflow::test {

struct RefStaticKeys {
  ByteVec enc, mac, dek;
};

// Master key family for the EMV CPS and VISA2 schemes. kAuto: DES for "emv"/"visa2"
// (16-byte 2-key 3DES masters, as engine/key_diversification.h documents), AES for "kdf3".
enum class RefMasterType { kAuto, kDes, kAes };

// Card static keys from a master key and the 10-byte KDD (gp-reference.md §4):
//   "emv" / "emv-cps": K_t = 3DES-ECB(KMC, KDD[4:10] F0 t KDD[4:10] 0F t); with
//                      RefMasterType::kAes (not a scheme the engine documents) the same
//                      16-byte input under AES-ECB, giving 16-byte keys.
//   "visa2":           K_t = 3DES-ECB(MK, KDD[0:2] KDD[4:8] F0 t KDD[0:2] KDD[4:8] 0F t)
//   "kdf3":            K_t = CMAC(MK, 01 000000 t 00 KDD) || CMAC(MK, 02 ...) ..., truncated
//                      to the master key length (AES masters of 16, 24 or 32 bytes)
//   "none":            the master key is the card key (ENC = MAC = DEK = master).
// DES results get odd parity when adjust_des_parity (the engine's default, DesParity::
// kAdjustOdd). Throws std::invalid_argument on a bad scheme, KDD or master length.
RefStaticKeys ref_diversify(std::string_view scheme, const ByteVec& master, const ByteVec& kdd,
                            RefMasterType type = RefMasterType::kAuto,
                            bool adjust_des_parity = true);
// One key; t = 01 ENC, 02 MAC, 03 DEK.
ByteVec ref_diversify_key(std::string_view scheme, const ByteVec& master, const ByteVec& kdd,
                          std::uint8_t t, RefMasterType type = RefMasterType::kAuto,
                          bool adjust_des_parity = true);

struct RefSessionInput {
  int scp = 3;                // 2 or 3
  std::uint8_t i = 0x70;      // SCP03 "i" (b5 pseudo-random, b1 S16); SCP02 "i" (15, 55)
  std::uint8_t level = 0x03;  // EXTERNAL AUTHENTICATE P1
  std::uint8_t kvn = 0x30;    // key version in the card's answer
  std::optional<std::uint8_t> requested_kvn;  // P1 of INITIALIZE UPDATE; unset: 00 or kvn
  ByteVec kdd;                                // 10 bytes
  ByteVec aid;                            // invoking application's AID (pseudo-random challenge)
  std::uint32_t counter = 0;              // SCP03: 3-byte sequence counter (after the card's
                                          // increment); SCP02: 2-byte sequence counter
  ByteVec host_challenge;                 // 8 bytes (SCP02, SCP03 S8) or 16 (SCP03 S16)
  std::optional<ByteVec> card_challenge;  // when the card challenge is not pseudo-random
};

struct RefApdu {
  ByteVec bytes;
};

struct RefVerified {
  bool ok = false;
  std::string failure;  // the first mismatch: APDU index, field, expected vs got
  // What the SE executes: each wrapped command (or chain, reassembled) with its C-MAC
  // removed, C-DEC data decrypted and unpadded, CLA b3 (secure messaging) cleared; Lc on
  // 1 byte up to 255 data bytes, else 00 xx xx; Le kept.
  std::vector<ByteVec> plain_commands;
  std::vector<std::size_t> plain_first_apdu;  // index in `apdus` of each one's first APDU
};

// apdus: INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, then the wrapped commands (no clear
// SELECT). expected_response: the INITIALIZE UPDATE response data the script expects
// (without SW).
RefVerified ref_verify_session(const RefStaticKeys& keys, const RefSessionInput& in,
                               const ByteVec& expected_response, const std::vector<RefApdu>& apdus);

// The INITIALIZE UPDATE response data (without SW) the card must give for `in`, computed
// independently. Throws std::invalid_argument on inconsistent input.
ByteVec ref_expected_response(const RefStaticKeys& keys, const RefSessionInput& in);

// Sensitive data / key decryption, no padding removed: SCP03 AES-CBC, zero ICV, under the
// static K-DEK; SCP02 3DES-ECB under S-DEK (from K-DEK and in.counter).
ByteVec ref_decrypt_sensitive(const RefStaticKeys& keys, const RefSessionInput& in,
                              const ByteVec& ciphertext);

// KCV: DES 3DES-ECB(key, 00 x 8)[0:3]; AES AES-ECB(key, 01 x 16)[0:3].
ByteVec ref_kcv(const ByteVec& key, bool aes);

// Session keys (exposed for tests and for diagnosing a failure).
struct RefSessionKeys {
  ByteVec s_enc, s_mac, s_rmac, s_dek;  // s_dek: SCP02 only (SCP03 uses the static K-DEK)
  ByteVec card_challenge;
};
RefSessionKeys ref_session_keys(const RefStaticKeys& keys, const RefSessionInput& in);

// Primitives, straight on OpenSSL (for tests that build their own cases).
ByteVec ref_aes_cmac(const ByteVec& key, const ByteVec& data);  // 16 bytes
// SCP03 KDF (Amd D §4.1.5): CMAC(K, 00x11 C 00 L i context), i = 1, 2, ...; L/8 bytes.
ByteVec ref_scp03_kdf(const ByteVec& key, std::uint8_t constant, std::uint16_t l_bits,
                      const ByteVec& context);
// SCP02 session key: 3DES-CBC(key, zero ICV, constant(2) || counter(2) || 00 x 12).
ByteVec ref_scp02_session_key(const ByteVec& key, std::uint16_t constant, std::uint16_t counter);
// ISO 9797-1 MAC algorithm 3 (single DES K1 CBC from `icv`, 3DES on the last block) over
// pad80(data).
ByteVec ref_retail_mac(const ByteVec& key, const ByteVec& icv, const ByteVec& data);
ByteVec ref_pad80(const ByteVec& data, std::size_t block);
// Raw block-cipher helpers (no padding; data a multiple of the block size). DES keys are
// 16 (2-key) or 24 bytes; `des1` uses only key[0:8].
enum class RefCipher { kAes, kTdes, kDes1 };
ByteVec ref_ecb(RefCipher c, bool encrypt, const ByteVec& key, const ByteVec& data);
ByteVec ref_cbc(RefCipher c, bool encrypt, const ByteVec& key, const ByteVec& iv,
                const ByteVec& data);

}  // namespace persoflow::test
