// Issuer-file envelopes (docs/formats/issuer-envelope.md): CMS (RFC 5652) EnvelopedData with
// AES-CBC content, or AuthEnvelopedData (RFC 5083) with AES-GCM content (RFC 5084), each with
// exactly one KEKRecipientInfo whose key is AES-wrapped (RFC 3394, RFC 3565). DER, or BER
// with indefinite lengths and chunked content, as `openssl cms -encrypt [-stream]` writes.
//
// Parsing only: unwrapping the content key and decrypting are the caller's (the HSM's).
// The reader streams: the ciphertext goes from the ByteSource's window to the caller's
// buffer, so memory stays bounded whatever the file size.
//
//   FdByteSource src = ...;
//   PF_ASSIGN_OR_RETURN(CmsEnvelopeHeader h, read_cms_header(src));
//   // unwrap h.encrypted_key under the KEK named by h.kek_id, start decrypting with h.iv
//   while (n = h.content.read(buf)) ...  // ciphertext, 0 at the end
//   PF_ASSIGN_OR_RETURN(CmsTrailer t, h.content.finish());  // GCM: t.mac, t.aad
//
// Every parse error is kParse and reads "CMS: byte <offset>: <reason>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/hex.h"
#include "engine/result.h"
#include "formats/ber_reader.h"
#include "formats/byte_source.h"

namespace persoflow::formats {

enum class CmsKind : std::uint8_t {
  kEnveloped,      // id-envelopedData 1.2.840.113549.1.7.3, AES-CBC content
  kAuthEnveloped,  // id-ct-authEnvelopedData 1.2.840.113549.1.9.16.1.23, AES-GCM content
};

enum class CmsKeyWrap : std::uint8_t {
  kAes128Wrap,  // id-aes128-wrap 2.16.840.1.101.3.4.1.5
  kAes192Wrap,  // id-aes192-wrap 2.16.840.1.101.3.4.1.25
  kAes256Wrap,  // id-aes256-wrap 2.16.840.1.101.3.4.1.45
};

enum class CmsContentCipher : std::uint8_t {
  kAes128Cbc,  // 2.16.840.1.101.3.4.1.2
  kAes192Cbc,  // 2.16.840.1.101.3.4.1.22
  kAes256Cbc,  // 2.16.840.1.101.3.4.1.42
  kAes128Gcm,  // 2.16.840.1.101.3.4.1.6
  kAes192Gcm,  // 2.16.840.1.101.3.4.1.26
  kAes256Gcm,  // 2.16.840.1.101.3.4.1.46
};

std::string_view to_string(CmsKind kind);                 // "EnvelopedData"
std::string_view to_string(CmsKeyWrap wrap);              // "id-aes256-wrap"
std::string_view to_string(CmsContentCipher cipher);      // "aes-256-cbc"
std::size_t kek_length(CmsKeyWrap wrap);                  // 16, 24, 32
std::size_t content_key_length(CmsContentCipher cipher);  // 16, 24, 32
bool is_gcm(CmsContentCipher cipher);
// The envelope kind a cipher belongs in: CBC in EnvelopedData, GCM in AuthEnvelopedData.
CmsKind kind_for(CmsContentCipher cipher);

// Limits; anything beyond is refused.
inline constexpr std::size_t kCmsMaxOidLength = 32;               // content bytes of an OID
inline constexpr std::size_t kCmsMaxKekIdLength = 64;             // keyIdentifier
inline constexpr std::size_t kCmsMaxEncryptedKeyLength = 64;      // encryptedKey
inline constexpr std::size_t kCmsMaxNonceLength = 64;             // GCM aes-nonce
inline constexpr std::size_t kCmsMaxAuthAttrsLength = 16 * 1024;  // authAttrs, held for the AAD
inline constexpr std::size_t kCmsMaxDepth = 32;  // constructed elements open at once
inline constexpr std::size_t kCmsCbcIvLength = 16;
inline constexpr std::size_t kCmsMinGcmTagLength = 12;  // aes-ICVlen range, RFC 5084 §3.2
inline constexpr std::size_t kCmsMaxGcmTagLength = 16;
inline constexpr std::size_t kCmsKeyWrapOverhead = 8;  // RFC 3394: wrapped = key + 8

// What an envelope says about its keys and its cipher: read by read_cms_header(), written by
// encode_cms_prefix().
struct CmsEnvelopeParams {
  CmsKind kind = CmsKind::kEnveloped;
  Bytes kek_id;  // KEKIdentifier.keyIdentifier: names the key-encryption key (1..64 bytes)
  CmsKeyWrap key_wrap = CmsKeyWrap::kAes256Wrap;
  Bytes encrypted_key;  // the content key wrapped under the KEK: content_key_length() + 8
  CmsContentCipher cipher = CmsContentCipher::kAes256Cbc;
  Bytes iv;  // CBC: the 16-byte IV; GCM: aes-nonce (1..64 bytes, 12 usual)
  // GCM: aes-ICVlen, the tag length (12..16; OpenSSL writes 16). 0 when read from CBC files.
  std::size_t gcm_tag_length = 16;
};

// What follows the content, returned by CmsContentReader::finish().
struct CmsTrailer {
  // AuthEnvelopedData: the GCM additional authenticated data, i.e. the DER of authAttrs with
  // the SET OF tag 0x31 in place of [1] (RFC 5083 §2.1). Empty when there are no authAttrs.
  Bytes aad;
  Bytes mac;                         // AuthEnvelopedData: the GCM tag. Empty for EnvelopedData.
  std::uint64_t content_length = 0;  // ciphertext bytes that read() yielded
};

struct CmsEnvelopeHeader;
Result<CmsEnvelopeHeader> read_cms_header(ByteSource& source);

// The encryptedContent of an envelope, read as it streams by; then what follows it.
class CmsContentReader {
 public:
  CmsContentReader(CmsContentReader&&) = default;
  CmsContentReader& operator=(CmsContentReader&&) = default;
  CmsContentReader(const CmsContentReader&) = delete;
  CmsContentReader& operator=(const CmsContentReader&) = delete;
  ~CmsContentReader() = default;

  // Fills `out` with the next ciphertext bytes, whether the content is one primitive [0]
  // or OCTET STRING chunks (nested, definite or indefinite). Returns out.size() except at the
  // end of the content: fewer, then 0 (an empty `out` also gives 0). Holds no bytes itself
  // beyond the source's window. After an error every call returns that error again.
  Result<std::size_t> read(std::span<std::uint8_t> out);

  // Once read() has returned 0 (or filled its buffer with the last bytes): parses what follows
  // the content (unprotectedAttrs, or authAttrs, mac and unauthAttrs), every end-of-contents,
  // and checks that the input ends exactly there. For CBC also checks that the ciphertext is a
  // positive multiple of 16 bytes. kInvalidArgument if ciphertext is left unread.
  Result<CmsTrailer> finish();

  std::uint64_t bytes_read() const { return bytes_read_; }

  // The ciphertext length when the encoding states it up front (primitive [0]), else nullopt.
  std::optional<std::uint64_t> declared_length() const { return declared_length_; }

 private:
  friend Result<CmsEnvelopeHeader> read_cms_header(ByteSource& source);
  CmsContentReader(BerReader ber, const CmsEnvelopeParams& params, const BerElement& content);

  Result<std::size_t> read_some(std::span<std::uint8_t> out);
  Status next_segment();
  Result<CmsTrailer> parse_trailer();

  BerReader ber_;
  CmsKind kind_;
  CmsContentCipher cipher_;
  std::size_t tag_length_;
  std::uint64_t content_offset_;    // of the [0] encryptedContent header
  std::size_t content_depth_ = 0;   // frames open inside a constructed [0]; 0 if primitive
  std::uint64_t segment_left_ = 0;  // bytes left in the current primitive segment
  std::uint64_t bytes_read_ = 0;
  std::optional<std::uint64_t> declared_length_;
  bool done_ = false;      // read() reached the end of the content
  bool finished_ = false;  // finish() succeeded
  std::optional<Error> failure_;
};

struct CmsEnvelopeHeader : CmsEnvelopeParams {
  std::string content_type;  // EncryptedContentInfo.contentType, dotted ("…7.1" id-data)
  std::optional<std::string> kek_date;  // KEKIdentifier.date, the GeneralizedTime text
  CmsContentReader content;             // positioned on the first ciphertext byte
};

// Parses a ContentInfo up to the first ciphertext byte. `source` must outlive the returned
// content reader, which goes on reading from it.
Result<CmsEnvelopeHeader> read_cms_header(ByteSource& source);

// Generator side: the DER bytes before the ciphertext of a definite-length envelope whose
// primitive [0] encryptedContent holds `content_length` bytes. EnvelopedData gets version 2
// (RFC 5652 §6.1, KEK recipient), AuthEnvelopedData version 0; contentType is id-data;
// aes-ICVlen is omitted when it is 12 (DER: DEFAULT), which OpenSSL 3.0 cannot read: keep the
// default 16 for files openssl must open. kInvalidArgument for inconsistent params
// (cipher not matching kind, wrong IV/nonce/key lengths, CBC length not a positive multiple
// of 16).
Result<Bytes> encode_cms_prefix(const CmsEnvelopeParams& params, std::uint64_t content_length);

// The bytes after the ciphertext: nothing for EnvelopedData; for AuthEnvelopedData the mac
// OCTET STRING holding `gcm_tag`, which must be params.gcm_tag_length bytes long for the
// prefix's lengths to hold.
Bytes encode_cms_suffix(CmsKind kind, std::span<const std::uint8_t> gcm_tag);

}  // namespace persoflow::formats
