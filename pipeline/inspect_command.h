// `persoflow inspect X.xof`: header, counts and key classes (with KCVs checked against
// the HSM) after a full integrity check; `--card ID` shows one card; `--reveal`
// decrypts its values through the HSM for an operator.
#pragma once

#include <ostream>
#include <string>

#include "engine/result.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

struct InspectOptions {
  std::string path;
  bool json = false;
  std::string card_id;       // empty: no card
  std::string profile_path;  // optional: masks --card values per the profile's reveal rules
  bool reveal = false;
};

Status run_inspect(const InspectOptions& options, hsm::KeyStore& keys, std::ostream& out);

}  // namespace persoflow::pipeline
