// The key ceremony: `persoflow keys generate | import | list` (docs/keys.md).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/result.h"
#include "hsm/key_store.h"
#include "pipeline/prompter.h"

namespace persoflow::pipeline {

inline constexpr std::string_view kDefaultUsage = "encrypt,decrypt";

struct KeysGenerateOptions {
  std::string label;
  std::string type;
  std::string usage = std::string(kDefaultUsage);
  std::optional<std::string> id_hex;
  bool json = false;
};

struct KeysImportOptions {
  std::string label;
  std::string type;
  std::string usage = std::string(kDefaultUsage);
  std::optional<std::string> id_hex;
  std::vector<std::string> component_files;  // empty: interactive
  int components = 2;                        // interactive mode: how many to ask for
  bool json = false;
};

// Checks label, type, usage list and id before anything touches the HSM.
Result<hsm::KeySpec> make_key_spec(const std::string& label, const std::string& type,
                                   const std::string& usage, const std::optional<std::string>& id_hex);

Status keys_generate(hsm::KeyStore& keys, const KeysGenerateOptions& options, std::ostream& out);

// Reads 2 or 3 components (files, or prompts without echo), checks each KCV through
// the HSM, XORs them in SecureBytes and creates the key in the HSM. Progress
// (component KCVs) goes to `log`, the result to `out`.
Status keys_import(hsm::KeyStore& keys, const KeysImportOptions& options, Prompter& prompter,
                   std::ostream& out, std::ostream& log);

Status keys_list(hsm::KeyStore& keys, bool json, std::ostream& out);

// One key, named by PKCS#11 URI: its attributes and KCV.
Status keys_show(hsm::KeyStore& keys, const std::string& uri, bool json, std::ostream& out);

}  // namespace persoflow::pipeline
