// Helpers for the CMS envelope tests: reference crypto straight through OpenSSL EVP (never
// persoflow code), the openssl CLI, a parse-everything driver, and a small BER builder for
// envelopes openssl cannot write (two recipients, nested chunks, authAttrs, bad versions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "engine/hex.h"
#include "engine/result.h"
#include "formats/byte_source.h"
#include "formats/cms_envelope.h"

namespace persoflow::formats::cms_test {

// ---- reference crypto (OpenSSL EVP) ----
Bytes random_bytes(std::size_t n);
Bytes aes_wrap(const Bytes& kek, const Bytes& key);  // RFC 3394
std::optional<Bytes> aes_unwrap(const Bytes& kek, const Bytes& wrapped);
Bytes cbc_encrypt(const Bytes& key, const Bytes& iv, const Bytes& plain);  // PKCS#7 padding
std::optional<Bytes> cbc_decrypt(const Bytes& key, const Bytes& iv, const Bytes& cipher);
struct GcmOutput {
  Bytes ciphertext;
  Bytes tag;
};
GcmOutput gcm_encrypt(const Bytes& key, const Bytes& nonce, const Bytes& aad, const Bytes& plain,
                      std::size_t tag_length);
std::optional<Bytes> gcm_decrypt(const Bytes& key, const Bytes& nonce, const Bytes& aad,
                                 const Bytes& cipher, const Bytes& tag);

// ---- files and the openssl CLI ----
Bytes load(const std::filesystem::path& path);
void store(const std::filesystem::path& path, const Bytes& bytes);
// Runs `openssl args...`; fails the current test (and returns false) on a non-zero exit.
bool openssl(const std::vector<std::string>& args, std::string* out = nullptr);
// `openssl asn1parse -inform DER` of a file, one string per line.
std::vector<std::string> asn1parse(const std::filesystem::path& der);

// ---- parsing a whole envelope ----
struct Parsed {
  CmsEnvelopeParams params;
  std::string content_type;
  std::optional<std::string> kek_date;
  std::optional<std::uint64_t> declared_length;
  Bytes ciphertext;
  CmsTrailer trailer;
};
// read_cms_header, read() with a buffer of `chunk` bytes to the end, finish().
Result<Parsed> parse_all(ByteSource& source, std::size_t chunk = 4096);
Result<Parsed> parse_bytes(const Bytes& file, std::size_t chunk = 4096,
                           std::size_t max_peek = MemoryByteSource::kUnlimited);
// The message of the error parse_bytes() gives, "<no error>" when it succeeds. Checks that the
// error is kParse.
std::string parse_error(const Bytes& file);
// Unwraps the content key with `kek` and decrypts; nullopt when anything fails.
std::optional<Bytes> decrypt(const Parsed& parsed, const Bytes& kek);

// ---- BER building ----
Bytes cat(std::initializer_list<Bytes> parts);
Bytes der(std::uint8_t tag, const Bytes& value);               // definite, minimal length
Bytes indefinite(std::uint8_t tag, const Bytes& value);        // tag 80 value 00 00
Bytes oid(const std::string& dotted);                          // whole OBJECT IDENTIFIER element
Bytes integer(std::uint8_t value);                             // whole INTEGER element, value < 128
std::size_t find(const Bytes& haystack, const Bytes& needle);  // first offset; fails if absent

// A KEKRecipientInfo [2]; `extra_kekid` goes after keyIdentifier (date, other).
Bytes kek_recipient(const Bytes& kek_id, const std::string& wrap_oid, const Bytes& encrypted_key,
                    std::uint8_t version = 4, const Bytes& extra_kekid = {},
                    const Bytes& wrap_params = {});
Bytes cbc_algorithm(const std::string& cipher_oid, const Bytes& iv);
Bytes gcm_algorithm(const std::string& cipher_oid, const Bytes& nonce,
                    std::optional<std::uint8_t> icv_length);

// An envelope from its parts; every constructed element definite, or (indefinite = true) in
// indefinite form. `content` is the whole [0] encryptedContent element; `trailer` the
// elements after EncryptedContentInfo (attributes, mac).
struct Shape {
  std::string type_oid = "1.2.840.113549.1.7.3";
  bool indefinite = false;
  std::uint8_t version = 2;
  Bytes originator_info;  // whole element, or empty
  std::vector<Bytes> recipients;
  std::string content_type_oid = "1.2.840.113549.1.7.1";
  Bytes algorithm;
  Bytes content;
  Bytes trailer;
};
Bytes build(const Shape& shape);

// Content encodings of a ciphertext: one primitive [0]; or a constructed [0] of OCTET STRING
// chunks of the given sizes (the last repeats), nested one level deeper every `nest_every`
// chunks (0: flat).
Bytes primitive_content(const Bytes& ciphertext);
Bytes chunked_content(const Bytes& ciphertext, std::vector<std::size_t> sizes, bool indefinite,
                      std::size_t nest_every = 0);

// Fixed test material: a KEK per size and one identifier.
struct Keys {
  Bytes kek;
  Bytes kek_id;
  Bytes cek;
};
Keys make_keys(std::size_t kek_length, std::size_t cek_length);

}  // namespace persoflow::formats::cms_test
