// `persoflow inspect X.xof`: header, counts and key classes (with KCVs checked against
// the HSM) after a full integrity check; `--card ID` shows one card; `--reveal`
// decrypts its values through the HSM for an operator, and says so in the audit log
// first (docs/audit.md): no audit log, or a failed append, and nothing is revealed.
#pragma once

#include <ostream>
#include <string>

#include "engine/result.h"
#include "formats/audit_log.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

struct InspectOptions {
  std::string path;
  bool json = false;
  std::string card_id;       // empty: no card
  std::string profile_path;  // optional: masks --card values per the profile's reveal rules
  bool reveal = false;
};

// The refusal of --reveal without an audit log (kInvalidArgument: exit 2), saying how to
// configure one.
Error reveal_needs_audit_log();

// `audit` receives the "reveal" event; it must be given when options.reveal is set
// (reveal_needs_audit_log() otherwise).
Status run_inspect(const InspectOptions& options, hsm::KeyStore& keys, std::ostream& out,
                   const formats::AuditLog* audit = nullptr);

}  // namespace persoflow::pipeline
