#include "formats/cms_asn1.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace persoflow::formats {
namespace {

// NIST AES arc 2.16.840.1.101.3.4.1, then one byte for the algorithm.
constexpr std::array<std::uint8_t, 9> aes_oid(std::uint8_t last) {
  return {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, last};
}

constexpr std::array<std::uint8_t, 9> kAes128Cbc = aes_oid(2);
constexpr std::array<std::uint8_t, 9> kAes192Cbc = aes_oid(22);
constexpr std::array<std::uint8_t, 9> kAes256Cbc = aes_oid(42);
constexpr std::array<std::uint8_t, 9> kAes128Gcm = aes_oid(6);
constexpr std::array<std::uint8_t, 9> kAes192Gcm = aes_oid(26);
constexpr std::array<std::uint8_t, 9> kAes256Gcm = aes_oid(46);
constexpr std::array<std::uint8_t, 9> kAes128Wrap = aes_oid(5);
constexpr std::array<std::uint8_t, 9> kAes192Wrap = aes_oid(25);
constexpr std::array<std::uint8_t, 9> kAes256Wrap = aes_oid(45);

constexpr CmsContentCipher kCiphers[] = {
    CmsContentCipher::kAes128Cbc, CmsContentCipher::kAes192Cbc, CmsContentCipher::kAes256Cbc,
    CmsContentCipher::kAes128Gcm, CmsContentCipher::kAes192Gcm, CmsContentCipher::kAes256Gcm};
constexpr CmsKeyWrap kWraps[] = {CmsKeyWrap::kAes128Wrap, CmsKeyWrap::kAes192Wrap,
                                 CmsKeyWrap::kAes256Wrap};

bool same(cms_oid::OidBytes a, cms_oid::OidBytes b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Well-known names for messages about OIDs that are refused.
struct NamedOid {
  std::string_view dotted;
  std::string_view name;
};
constexpr NamedOid kNames[] = {
    {"1.2.840.113549.1.7.1", "data"},
    {"1.2.840.113549.1.7.2", "signedData"},
    {"1.2.840.113549.1.7.3", "envelopedData"},
    {"1.2.840.113549.1.7.5", "digestedData"},
    {"1.2.840.113549.1.7.6", "encryptedData"},
    {"1.2.840.113549.1.9.16.1.2", "authData"},
    {"1.2.840.113549.1.9.16.1.9", "compressedData"},
    {"1.2.840.113549.1.9.16.1.23", "authEnvelopedData"},
    {"1.2.840.113549.3.7", "des-ede3-cbc"},
    {"1.2.840.113549.1.9.16.3.6", "id-alg-CMS3DESwrap"},
    {"2.16.840.1.101.3.4.1.1", "aes-128-ecb"},
    {"2.16.840.1.101.3.4.1.2", "aes-128-cbc"},
    {"2.16.840.1.101.3.4.1.5", "id-aes128-wrap"},
    {"2.16.840.1.101.3.4.1.6", "aes-128-gcm"},
    {"2.16.840.1.101.3.4.1.7", "aes-128-ccm"},
    {"2.16.840.1.101.3.4.1.8", "id-aes128-wrap-pad"},
    {"2.16.840.1.101.3.4.1.22", "aes-192-cbc"},
    {"2.16.840.1.101.3.4.1.25", "id-aes192-wrap"},
    {"2.16.840.1.101.3.4.1.26", "aes-192-gcm"},
    {"2.16.840.1.101.3.4.1.28", "id-aes192-wrap-pad"},
    {"2.16.840.1.101.3.4.1.42", "aes-256-cbc"},
    {"2.16.840.1.101.3.4.1.45", "id-aes256-wrap"},
    {"2.16.840.1.101.3.4.1.46", "aes-256-gcm"},
    {"2.16.840.1.101.3.4.1.47", "aes-256-ccm"},
    {"2.16.840.1.101.3.4.1.48", "id-aes256-wrap-pad"},
};

}  // namespace

std::string_view to_string(CmsKind kind) {
  return kind == CmsKind::kEnveloped ? "EnvelopedData" : "AuthEnvelopedData";
}

std::string_view to_string(CmsKeyWrap wrap) {
  switch (wrap) {
    case CmsKeyWrap::kAes128Wrap:
      return "id-aes128-wrap";
    case CmsKeyWrap::kAes192Wrap:
      return "id-aes192-wrap";
    case CmsKeyWrap::kAes256Wrap:
      return "id-aes256-wrap";
  }
  return "?";
}

std::string_view to_string(CmsContentCipher cipher) {
  switch (cipher) {
    case CmsContentCipher::kAes128Cbc:
      return "aes-128-cbc";
    case CmsContentCipher::kAes192Cbc:
      return "aes-192-cbc";
    case CmsContentCipher::kAes256Cbc:
      return "aes-256-cbc";
    case CmsContentCipher::kAes128Gcm:
      return "aes-128-gcm";
    case CmsContentCipher::kAes192Gcm:
      return "aes-192-gcm";
    case CmsContentCipher::kAes256Gcm:
      return "aes-256-gcm";
  }
  return "?";
}

std::size_t kek_length(CmsKeyWrap wrap) {
  switch (wrap) {
    case CmsKeyWrap::kAes128Wrap:
      return 16;
    case CmsKeyWrap::kAes192Wrap:
      return 24;
    case CmsKeyWrap::kAes256Wrap:
      return 32;
  }
  return 0;
}

std::size_t content_key_length(CmsContentCipher cipher) {
  switch (cipher) {
    case CmsContentCipher::kAes128Cbc:
    case CmsContentCipher::kAes128Gcm:
      return 16;
    case CmsContentCipher::kAes192Cbc:
    case CmsContentCipher::kAes192Gcm:
      return 24;
    case CmsContentCipher::kAes256Cbc:
    case CmsContentCipher::kAes256Gcm:
      return 32;
  }
  return 0;
}

bool is_gcm(CmsContentCipher cipher) {
  return cipher == CmsContentCipher::kAes128Gcm || cipher == CmsContentCipher::kAes192Gcm ||
         cipher == CmsContentCipher::kAes256Gcm;
}

CmsKind kind_for(CmsContentCipher cipher) {
  return is_gcm(cipher) ? CmsKind::kAuthEnveloped : CmsKind::kEnveloped;
}

namespace cms_oid {

OidBytes of(CmsKind kind) {
  return kind == CmsKind::kEnveloped ? OidBytes(kEnvelopedData) : OidBytes(kAuthEnvelopedData);
}

OidBytes of(CmsContentCipher cipher) {
  switch (cipher) {
    case CmsContentCipher::kAes128Cbc:
      return kAes128Cbc;
    case CmsContentCipher::kAes192Cbc:
      return kAes192Cbc;
    case CmsContentCipher::kAes256Cbc:
      return kAes256Cbc;
    case CmsContentCipher::kAes128Gcm:
      return kAes128Gcm;
    case CmsContentCipher::kAes192Gcm:
      return kAes192Gcm;
    case CmsContentCipher::kAes256Gcm:
      return kAes256Gcm;
  }
  return {};
}

OidBytes of(CmsKeyWrap wrap) {
  switch (wrap) {
    case CmsKeyWrap::kAes128Wrap:
      return kAes128Wrap;
    case CmsKeyWrap::kAes192Wrap:
      return kAes192Wrap;
    case CmsKeyWrap::kAes256Wrap:
      return kAes256Wrap;
  }
  return {};
}

std::optional<CmsContentCipher> cipher_from(OidBytes oid) {
  for (CmsContentCipher c : kCiphers) {
    if (same(oid, of(c))) return c;
  }
  return std::nullopt;
}

std::optional<CmsKeyWrap> wrap_from(OidBytes oid) {
  for (CmsKeyWrap w : kWraps) {
    if (same(oid, of(w))) return w;
  }
  return std::nullopt;
}

std::optional<std::string> to_dotted(OidBytes oid) {
  if (oid.empty() || (oid.back() & 0x80) != 0) return std::nullopt;
  std::string out;
  std::uint64_t value = 0;
  bool first = true;
  bool at_start = true;  // at the first byte of a subidentifier
  for (std::uint8_t b : oid) {
    if (at_start && b == 0x80) return std::nullopt;  // non-minimal subidentifier
    if (value > (UINT64_MAX >> 7)) return std::nullopt;
    value = (value << 7) | (b & 0x7F);
    at_start = (b & 0x80) == 0;
    if (!at_start) continue;
    if (first) {
      const std::uint64_t arc1 = value < 40 ? 0 : (value < 80 ? 1 : 2);
      out = std::to_string(arc1) + "." + std::to_string(value - arc1 * 40);
      first = false;
    } else {
      out += "." + std::to_string(value);
    }
    value = 0;
  }
  return out;
}

std::string describe(OidBytes oid) {
  const auto dotted = to_dotted(oid);
  if (!dotted) return "(malformed OID)";
  for (const auto& n : kNames) {
    if (n.dotted == *dotted) return *dotted + " (" + std::string(n.name) + ")";
  }
  return *dotted;
}

}  // namespace cms_oid
}  // namespace persoflow::formats
