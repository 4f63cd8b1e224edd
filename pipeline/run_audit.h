// The audit trail of a run (docs/audit.md "What is logged"): `import`, `prep` and `run`
// append run.start (inputs' digests, keys by URI and KCV), one counters.reserve per
// committed reservation (or batch of one), and run.end (status, outputs' digests, counts),
// when an audit log is configured. An entry that cannot be appended fails the run: an
// audited operation is never carried out unrecorded. Entries never hold values.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include <optional>

#include "engine/hex.h"
#include "engine/result.h"
#include "formats/audit_log.h"
#include "formats/xof_format.h"
#include "hsm/key_store.h"

namespace persoflow::pipeline {

class RunAudit {
 public:
  // `log_path` empty: no audit log, every call does nothing.
  RunAudit(const std::string& log_path, std::string command, std::string run_id);

  bool enabled() const { return log_.has_value(); }
  const std::string& run_id() const { return run_id_; }

  // run.start: `details` gets "command" and "run_id" first.
  Status start(nlohmann::ordered_json details);
  // run.resume: `persoflow prep --resume` carries on a run whose run.start is earlier in
  // the log (docs/formats/journal.md); its run.end comes after it, as for a started run.
  Status resume(nlohmann::ordered_json details);
  // counters.reserve: a committed reservation (or batch).
  Status reserve(nlohmann::ordered_json details);
  // run.end with status "ok".
  Status finish(nlohmann::ordered_json details);
  // run.end with status "failed" and the error's message, if start() was logged. Returns
  // `error`, with a note added when the entry itself could not be written.
  Error fail(Error error);

 private:
  Status append(std::string_view event, nlohmann::ordered_json details);

  std::optional<formats::AuditLog> log_;
  std::string command_;
  std::string run_id_;
  bool started_ = false;
  bool ended_ = false;
};

// {"uri": ..., "kcv": ...} for the run.start key list (kcv null when it cannot be computed).
nlohmann::ordered_json audit_key(const std::string& uri, const Result<Bytes>& kcv);

// The run.start "keys" entries of an import: the transport key (KCV computed now), each
// DKep and the integrity key with the KCVs the XOF header records.
nlohmann::ordered_json import_keys_audit(hsm::KeyStore& keys, const std::string& transport_key_uri,
                                         const formats::XofHeader& header, const std::vector<Bytes>& class_kcvs,
                                         const std::string& integrity_key_uri, const Bytes& integrity_kcv);

}  // namespace persoflow::pipeline
