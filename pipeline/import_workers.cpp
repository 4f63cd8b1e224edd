#include "pipeline/import_workers.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>
#include <utility>

#include "config/profile_parser.h"
#include "engine/hex.h"
#include "formats/big_endian_codec.h"

namespace persoflow::pipeline {
bool has_field_encryption(const Profile& profile) {
  return std::any_of(profile.attributes.begin(), profile.attributes.end(),
                     [](const AttributeSpec& a) { return a.field_encryption != FieldEncryption::kNone; });
}

std::size_t default_import_workers(const config::HsmSettings& hsm, const Profile& profile, std::uint64_t input_bytes) {
  if (!has_field_encryption(profile) || !module_serializes_calls(hsm) || input_bytes < kImportWorkersMinInputBytes) return 0;
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  return cores <= 1 ? 0 : cores;
}

Result<std::unique_ptr<ImportWorkerPool>> ImportWorkerPool::start(const config::HsmSettings& hsm,
                                                                  const std::string& profile_path, const Profile& profile,
                                                                  std::size_t workers,
                                                                  std::uint64_t recycle_cards) {
  WorkerPoolConfig wc;
  wc.hsm = hsm;
  wc.command = "import-worker";
  wc.kind = "import worker";
  wc.recycle_units = recycle_cards;
  // Absolute: a worker may not share the parent's working directory.
  wc.init = {{"profile", std::filesystem::absolute(profile_path).string()}, {"profile_sha256", to_hex(profile.sha256)}};
  auto pool = std::unique_ptr<ImportWorkerPool>(new ImportWorkerPool());
  PF_ASSIGN_OR_RETURN(pool->pool_, WorkerPool::start(std::move(wc), workers));
  return pool;
}

Result<std::vector<Result<Bytes>>> ImportWorkerPool::translate(std::span<const Request> requests,
                                                               std::size_t cards) const {
  std::vector<Result<Bytes>> out;
  const std::string doing = "while translating " + std::to_string(requests.size()) + " field-encrypted values";
  auto request = [&](std::uint32_t seq) -> Result<Bytes> {
    formats::ByteWriter w;
    w.u32(seq);
    w.u32(static_cast<std::uint32_t>(cards));
    w.u32(static_cast<std::uint32_t>(requests.size()));
    for (const Request& r : requests) {
      if (r.wrapped.size() > 0xFFFFFFFFu) return Error(ErrorCode::kInvalidArgument, "a field-encrypted value over 4 GiB");
      w.u16(static_cast<std::uint16_t>(r.attribute));
      w.u32(static_cast<std::uint32_t>(r.wrapped.size()));
      w.bytes(r.wrapped);
    }
    return w.take();
  };
  auto answer = [&](std::span<const std::uint8_t> payload, std::uint32_t seq, std::uint64_t& reported) -> Status {
    const std::string who = "an import worker";
    formats::ByteReader c(payload, 0, who + "'s answer");
    PF_ASSIGN_OR_RETURN(const std::uint32_t got_seq, c.u32("the frame number"));
    PF_ASSIGN_OR_RETURN(const std::uint32_t count, c.u32("the value count"));
    if (got_seq != seq || count != requests.size()) {
      return Error(ErrorCode::kInternal, who + ": an answer for other values " + doing);
    }
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      PF_ASSIGN_OR_RETURN(const std::uint8_t status, c.u8("a value's status"));
      PF_ASSIGN_OR_RETURN(const std::uint32_t length, c.u32("a value's length"));
      PF_ASSIGN_OR_RETURN(const auto bytes, c.bytes(length, "a value"));
      if (status == 0) {
        out.emplace_back(Bytes(bytes.begin(), bytes.end()));
        continue;
      }
      const unsigned code = status - 1u;
      if (code > static_cast<unsigned>(ErrorCode::kInternal)) {
        return Error(ErrorCode::kParse, who + ": an unknown status " + std::to_string(status) + " " + doing);
      }
      out.emplace_back(Error(static_cast<ErrorCode>(code), std::string(bytes.begin(), bytes.end())));
    }
    PF_ASSIGN_OR_RETURN(const std::uint64_t total, c.u64("the worker's retries"));
    if (c.remaining() != 0) return Error(ErrorCode::kParse, who + ": trailing bytes in an answer " + doing);
    retries_ += total - std::min(total, reported);
    reported = total;
    return ok_status();
  };
  PF_TRY(pool_->exchange(cards, doing, request, answer));
  return out;
}

int run_import_worker(const config::HsmSettings& hsm, int fd) {
  const std::string peer = "import worker " + std::to_string(::getpid()) + ": its parent";
  struct Setup {
    HsmSession session;
    Profile profile;
    std::optional<ImportKeys> keys;
    std::optional<HsmFieldTranslator> translator;
  };
  auto setup = std::make_unique<Setup>();
  auto open = [&](const nlohmann::json& init) -> Status {
    PF_ASSIGN_OR_RETURN(setup->profile, load_worker_profile(init, peer));
    PF_ASSIGN_OR_RETURN(setup->session, open_worker_hsm(hsm));
    PF_ASSIGN_OR_RETURN(ImportKeys keys, ImportKeys::resolve(setup->profile, *setup->session.keys));
    setup->keys.emplace(std::move(keys));
    setup->translator.emplace(*setup->session.keys, *setup->keys);
    return ok_status();
  };
  auto handle = [&](std::span<const std::uint8_t> payload) -> Result<WorkerAnswer> {
    formats::ByteReader c(payload, 0, peer + ": a work frame");
    PF_ASSIGN_OR_RETURN(const std::uint32_t seq, c.u32("the frame number"));
    PF_ASSIGN_OR_RETURN(const std::uint32_t cards, c.u32("the card count"));
    PF_ASSIGN_OR_RETURN(const std::uint32_t count, c.u32("the value count"));
    std::vector<FieldTranslator::Request> requests;
    requests.reserve(std::min<std::size_t>(count, c.remaining() / 6));  // 6 bytes per value at least
    for (std::uint32_t i = 0; i < count; ++i) {
      PF_ASSIGN_OR_RETURN(const std::uint16_t attribute, c.u16("a value's attribute"));
      PF_ASSIGN_OR_RETURN(const std::uint32_t length, c.u32("a value's length"));
      PF_ASSIGN_OR_RETURN(const auto bytes, c.bytes(length, "a value"));
      requests.push_back({attribute, bytes});
    }
    if (c.remaining() != 0) return Error(ErrorCode::kParse, peer + ": trailing bytes in a work frame");
    PF_ASSIGN_OR_RETURN(auto results, setup->translator->translate(requests, cards));
    formats::ByteWriter w;
    w.u32(seq);
    w.u32(static_cast<std::uint32_t>(results.size()));
    for (const Result<Bytes>& r : results) {
      if (r) {
        w.u8(0);
        w.u32(static_cast<std::uint32_t>(r->size()));
        w.bytes(*r);
      } else {
        w.u8(static_cast<std::uint8_t>(1 + static_cast<unsigned>(r.error().code())));
        w.u32(static_cast<std::uint32_t>(r.error().message().size()));
        w.bytes(r.error().message());
      }
    }
    w.u64(setup->translator->retries());
    WorkerAnswer a;
    a.head = w.take();
    return a;
  };
  return serve_worker(fd, "import worker", open, handle);
}

}  // namespace persoflow::pipeline
