// Import's HSM-bound work in worker processes (pipeline/worker_process.h for the
// processes, the wire and recycling; docs/cli.md#workers).
//
// What import does in the HSM per card is translating its field-encrypted values (a PIN
// block): C_UnwrapKey under the issuer's field key, C_WrapKey under the DKep, and
// C_DestroyObject. SoftHSM serializes those within one process, and keeps every
// destroyed object until the process finalizes, so `import --workers N` sends each
// batch's values to the next idle `persoflow import-worker` (recycled every
// --worker-recycle-cards cards) and keeps everything else (the envelope, parsing,
// segments, the journal, the XOF) in the parent. Only wrapped values cross the socket.
//
// 'I' init: JSON {profile}. 'W' work: u32 seq, u32 cards, u32 count, then per value u16
// attribute, u32 length, the wrapped bytes. 'D' done: u32 seq, u32 count, then per value
// u8 status (0: translated; otherwise 1 + the ErrorCode), u32 length, then the value
// wrapped under its DKep or the error's message; last, u64: the HSM calls the worker has
// done again after a transient error since it started (the run report's hsm_retries).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "config/hsm_settings.h"
#include "engine/profile.h"
#include "engine/result.h"
#include "pipeline/import_stages.h"
#include "pipeline/worker_process.h"

namespace persoflow::pipeline {

// Issuer files smaller than this are imported without workers under --workers auto: the
// worker starts (a process, a login, the key lookups) would cost more than they save.
inline constexpr std::uint64_t kImportWorkersMinInputBytes = 4u << 20;

// Whether any attribute of the profile is field-encrypted (the import's per-card HSM work).
bool has_field_encryption(const Profile& profile);

// --workers auto: one per core for a module that serializes calls within a process
// (SoftHSM) when the profile has field-encrypted attributes and the issuer file is at
// least kImportWorkersMinInputBytes; 0 otherwise (the import's other HSM work is per
// segment and per 64 KiB of the file: cheap in one process).
std::size_t default_import_workers(const config::HsmSettings& hsm, const Profile& profile, std::uint64_t input_bytes);

class ImportWorkerPool : public FieldTranslator {
 public:
  // Starts `workers` processes, each opening the HSM and the profile's field keys.
  // `profile` is the run's, read from `profile_path`: a worker refuses the file if it changed.
  static Result<std::unique_ptr<ImportWorkerPool>> start(const config::HsmSettings& hsm, const std::string& profile_path,
                                                         const Profile& profile, std::size_t workers,
                                                         std::uint64_t recycle_cards);
  Result<std::vector<Result<Bytes>>> translate(std::span<const Request> requests, std::size_t cards) const override;
  // Every worker's retries, as reported with its answers (recycled workers' included).
  std::uint64_t retries() const override { return retries_.load(); }
  std::size_t workers() const { return pool_->workers(); }
  std::uint64_t processes_started() const { return pool_->processes_started(); }
  Status stop() { return pool_->stop(); }

 private:
  std::unique_ptr<WorkerPool> pool_;
  mutable std::atomic<std::uint64_t> retries_{0};
};

// `persoflow import-worker --fd N`: the worker's side. Returns the process exit code.
int run_import_worker(const config::HsmSettings& hsm, int fd);

}  // namespace persoflow::pipeline
