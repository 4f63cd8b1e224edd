// `persoflow gen-issuer`: a synthetic issuer file for the demo, tests and benchmarks:
// N valid-looking cards per the profile, encrypted as CMS EnvelopedData (AES-CBC) or
// AuthEnvelopedData (AES-GCM) with a KEKRecipientInfo, exactly as `openssl cms
// -encrypt -secretkey -secretkeyid` makes them. The content key is wrapped under the
// transport key in the HSM (--tk URI) or, for lab use, under clear bytes (--tk-hex).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/result.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

struct GenIssuerOptions {
  std::string profile_path;
  std::uint64_t cards = 0;
  std::string output_path;
  std::string kek_id_hex;
  std::optional<std::string> tk_uri;
  std::optional<std::string> tk_hex;
  std::string content_cipher = "aes-256-cbc";  // aes-128-cbc | aes-256-cbc | aes-128-gcm | aes-256-gcm
  std::optional<std::string> plain_path;       // also write the clear records (test fixtures only)
  std::optional<std::uint64_t> seed;           // reproducible cards, content key and IV
  std::string bin = "476173";
  // Also write an SE registry CSV (docs/registry.md) with one SE per generated card, as
  // the profile's <prep> expects them (product, SCP version; i 70 / 55, KVN 30 / 20).
  std::optional<std::string> registry_csv_path;
};

struct GenIssuerResult {
  std::uint64_t cards = 0;
  std::uint64_t plaintext_bytes = 0;
  std::uint64_t envelope_bytes = 0;
};

// `keys` may be null when neither --tk nor a field key in the HSM is needed.
Result<GenIssuerResult> run_gen_issuer(const GenIssuerOptions& options, hsm::KeyStore* keys);

// Whether the options need an HSM session (a --tk URI, or field-encrypted attributes).
Result<bool> gen_issuer_needs_hsm(const GenIssuerOptions& options);

}  // namespace persoflow::pipeline
