// The script bundle branch of `persoflow inspect` (docs/formats/bundle.md#inspect): the
// bundle opened with its integrity key from the HSM (the key its header names, as for
// the XOF), a summary after a full check, or one card's script as hex APDUs or JSON.
// `inspect` tells a bundle from an XOF by its first 8 bytes (is_bundle_file).
#pragma once

#include <ostream>
#include <string>

#include "engine/key_ops.h"
#include "engine/result.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

struct BundleInspectOptions {
  std::string path;
  bool json = false;      // the summary as JSON; with --card and no --format: --format json
  std::string card_id;    // empty: the summary
  std::string format;     // with --card: "apdu" (default) or "json"
};

// True when the file starts with the bundle magic "PFBUNDLE"; false for anything else,
// an XOF included (its magic is "\x89PFXOF\r\n"). kNotFound / kIo when it cannot be read.
Result<bool> is_bundle_file(const std::string& path);

// Checks the options alone (before the HSM is opened): kInvalidArgument for a --format
// other than apdu/json, or --format without --card.
Status check_bundle_inspect_options(const BundleInspectOptions& options);

// Finds the integrity key the bundle's header names in `keys` and runs inspect_bundle.
Status run_bundle_inspect(const BundleInspectOptions& options, hsm::KeyStore& keys,
                          std::ostream& out);

// The same with the integrity key given. The summary is printed even when the full check
// fails (its result is part of the summary); the command then fails with that error.
Status inspect_bundle(const BundleInspectOptions& options, MacKey& integrity, std::ostream& out);

}  // namespace persoflow::pipeline
