// A product profile: what an issuer file holds and how persoflow treats each
// attribute (docs/profile.md). Plain immutable data: config/profile_parser.h reads it
// from XML and validates it; formats/ and pipeline/ consume it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/hex.h"
#include "engine/prep_spec.h"

namespace persoflow {

enum class RecordFormat : std::uint8_t {
  kXml,         // one element per card, streamed record by record
  kFixedWidth,  // one fixed-width record per line (or of a fixed byte length)
};

enum class AttributeType : std::uint8_t {
  kDigits,        // 0-9
  kAlphanumeric,  // A-Z a-z 0-9
  kHex,           // 0-9 A-F a-f (even number of digits)
  kYymm,          // four digits, month 01-12
  kName,          // printable ASCII letters, digits, space and . , ' - /
  kText,          // any printable ASCII (0x20-0x7E)
};

// How an issuer protected an attribute inside the (already encrypted) file.
enum class FieldEncryption : std::uint8_t {
  kNone,
  kAesKwp,  // hex of an RFC 5649 AES key wrap with padding under the attribute's field key
};

// How an attribute may be shown in reports and `inspect` (never in logs).
enum class Reveal : std::uint8_t {
  kNever,     // sensitive: never shown, not even masked
  kMaskPan,   // first 6 and last 4 digits, the rest '*'
  kClear,     // not sensitive (the card id, for example)
};

struct KeyClass {
  std::string name;      // "pan", "track", "secret", ...
  std::string dkep_uri;  // PKCS#11 URI of the internal data key (AES) of this class
};

struct AttributeSpec {
  std::string name;                 // unique within the profile
  std::string source;               // XML: child element name, or "@name" for an attribute
                                    //      of the record element; fixed width: unused
  std::size_t offset = 0;           // fixed width: 0-based byte offset in the record
  std::size_t length = 0;           // fixed width: field width (right-padded with spaces)
  AttributeType type = AttributeType::kText;
  bool required = true;
  std::size_t min_length = 0;       // in characters, after trimming
  std::size_t max_length = 0;       // 0: no maximum
  bool luhn = false;                // the value must pass the Luhn check (PANs)
  std::string key_class;            // name of the KeyClass protecting it in the XOF
  FieldEncryption field_encryption = FieldEncryption::kNone;
  std::string field_key_uri;        // with field_encryption: the issuer's field key
  Reveal reveal = Reveal::kNever;
};

struct TransportKey {
  Bytes kek_id;     // the CMS KEKRecipientInfo keyIdentifier this key answers to
  std::string uri;  // PKCS#11 URI of the TK (AES, unwrap usage)
};

struct RecordLayout {
  RecordFormat format = RecordFormat::kXml;
  std::string record_element = "card";  // XML: the element holding one card
  std::size_t record_length = 0;        // fixed width: bytes per record; 0 = one per line
};

struct Profile {
  std::string id;
  std::string version;
  std::string issuer;
  Bytes sha256;  // SHA-256 of the profile file's bytes, as read

  std::vector<TransportKey> transport_keys;
  RecordLayout records;
  std::vector<KeyClass> key_classes;
  std::vector<AttributeSpec> attributes;  // in profile order: the XOF keeps this order
  std::string card_id_attribute;          // the record key; never a PAN
  std::string integrity_key_uri;          // AES key (sign, verify) for the XOF footer tag
  std::size_t segment_cards = 1024;       // cards per XOF segment
  std::optional<PrepSpec> prep;           // <prep>: how `persoflow prep` builds the scripts

  const AttributeSpec* attribute(const std::string& name) const {
    for (const auto& a : attributes) {
      if (a.name == name) return &a;
    }
    return nullptr;
  }
  const KeyClass* key_class(const std::string& name) const {
    for (const auto& k : key_classes) {
      if (k.name == name) return &k;
    }
    return nullptr;
  }
  const TransportKey* transport_key(const Bytes& kek_id) const {
    for (const auto& t : transport_keys) {
      if (t.kek_id == kek_id) return &t;
    }
    return nullptr;
  }
};

}  // namespace persoflow
