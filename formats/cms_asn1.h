// ASN.1 constants of issuer-file envelopes shared by the CMS reader and writer: the tags of
// the elements they use, and the object identifiers (content bytes of the DER OBJECT
// IDENTIFIER, without tag and length) with their lookups.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "formats/cms_envelope.h"

namespace persoflow::formats {

namespace cms_tag {
inline constexpr std::uint8_t kInteger = 0x02;
inline constexpr std::uint8_t kOctetString = 0x04;
inline constexpr std::uint8_t kNull = 0x05;
inline constexpr std::uint8_t kOid = 0x06;
inline constexpr std::uint8_t kGeneralizedTime = 0x18;
inline constexpr std::uint8_t kOctetStringConstructed = 0x24;
inline constexpr std::uint8_t kSequence = 0x30;
inline constexpr std::uint8_t kSet = 0x31;
inline constexpr std::uint8_t kContext0Primitive = 0x80;  // [0] IMPLICIT encryptedContent
inline constexpr std::uint8_t kContext0 = 0xA0;
inline constexpr std::uint8_t kContext1 = 0xA1;
inline constexpr std::uint8_t kContext2 = 0xA2;
inline constexpr std::uint8_t kContext3 = 0xA3;
inline constexpr std::uint8_t kContext4 = 0xA4;
}  // namespace cms_tag

namespace cms_oid {

using OidBytes = std::span<const std::uint8_t>;

// 1.2.840.113549.1.7.1 / .3
inline constexpr std::uint8_t kData[] = {0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01};
inline constexpr std::uint8_t kEnvelopedData[] = {0x2A, 0x86, 0x48, 0x86, 0xF7,
                                                  0x0D, 0x01, 0x07, 0x03};
// 1.2.840.113549.1.9.16.1.23
inline constexpr std::uint8_t kAuthEnvelopedData[] = {0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D,
                                                      0x01, 0x09, 0x10, 0x01, 0x17};

// The OID of a kind, cipher or wrap algorithm.
OidBytes of(CmsKind kind);
OidBytes of(CmsContentCipher cipher);
OidBytes of(CmsKeyWrap wrap);

std::optional<CmsContentCipher> cipher_from(OidBytes oid);
std::optional<CmsKeyWrap> wrap_from(OidBytes oid);

// "1.2.840.113549.1.7.3"; nullopt when the bytes are not a well-formed OID encoding (empty,
// a subidentifier with a leading 0x80 or cut short, or beyond 64 bits).
std::optional<std::string> to_dotted(OidBytes oid);

// The dotted form followed by a well-known name when there is one:
// "1.2.840.113549.1.7.2 (signedData)".
std::string describe(OidBytes oid);

}  // namespace cms_oid
}  // namespace persoflow::formats
