// PKCS#11 URIs (RFC 7512) naming keys: "pkcs11:token=perso;object=tk-acme-01;type=secret-key".
//
// Path attributes: token, object, id (percent-encoded bytes) and type
// (public|private|cert|secret-key|data) select objects; manufacturer, serial and model
// are parsed and kept but not used for matching; vendor "x-" attributes and the RFC's
// library-* and slot-* attributes are accepted and ignored. Query attributes:
// pin-value is refused (a PIN never travels in a URI: use --pin-env / --pin-file) and
// redacted from every message; module-path is kept; pin-source and module-name are
// accepted and ignored. Anything else is a parse error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"

namespace persoflow {

enum class Pkcs11ObjectType : std::uint8_t { kPublic, kPrivate, kCert, kSecretKey, kData };

struct Pkcs11Uri {
  std::optional<std::string> token;
  std::optional<std::string> object;
  std::optional<std::vector<std::uint8_t>> id;
  std::optional<Pkcs11ObjectType> type;
  std::optional<std::string> manufacturer;
  std::optional<std::string> serial;
  std::optional<std::string> model;
  std::optional<std::string> module_path;  // query "module-path", informational

  static Result<Pkcs11Uri> parse(std::string_view text);

  // Canonical form: attributes in a fixed order, values percent-encoded where
  // RFC 7512 requires it. parse(to_string()) gives back an equal value, so the
  // string is used as a cache key.
  std::string to_string() const;

  // At least one of object or id: a URI that could match any key is refused where a
  // single key is meant.
  bool names_one_object() const { return object.has_value() || id.has_value(); }

  bool operator==(const Pkcs11Uri&) const = default;
};

}  // namespace persoflow
