// Key component files of the key ceremony (docs/keys.md): one key component in
// hex, optionally followed by its KCV. The file is read into SecureBytes and never
// quoted in an error message.
//
//   # component 1 of tk-acme-01, custodian A
//   0123 4567 89AB CDEF FEDC BA98 7654 3210
//   KCV: 08D7B4
#pragma once

#include <optional>
#include <string>

#include "engine/hex.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow::formats {

struct KeyComponent {
  SecureBytes value;
  std::optional<Bytes> kcv;  // 3 bytes when the file gives one
};

// Parses the text of a component file; `name` is used in messages ("file:line: ...").
Result<KeyComponent> parse_key_component(const SecureBytes& text, const std::string& name);

// Reads and parses a component file. The file's bytes are wiped from memory after
// parsing.
Result<KeyComponent> read_key_component_file(const std::string& path);

// Parses a KCV as an operator types it: 6 hex digits, optional "KCV" prefix and
// ':' or '=' separator, spaces ignored. nullopt for an empty entry.
Result<std::optional<Bytes>> parse_kcv_entry(std::string_view text, const std::string& where);

}  // namespace persoflow::formats
