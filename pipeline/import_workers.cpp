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
namespace {

void put(Bytes& out, std::uint64_t v, std::size_t n) {
  const std::size_t at = out.size();
  out.resize(at + n);
  formats::store_be(out.data() + at, v, n);
}

// Reads big-endian fields off a frame, failing on a short one.
struct Cursor {
  std::span<const std::uint8_t> rest;
  const std::string& who;
  Result<std::uint64_t> take(std::size_t n) {
    if (rest.size() < n) return Error(ErrorCode::kParse, who + ": a truncated frame");
    const std::uint64_t v = formats::load_be(rest.data(), n);
    rest = rest.subspan(n);
    return v;
  }
  Result<std::span<const std::uint8_t>> bytes(std::size_t n) {
    if (rest.size() < n) return Error(ErrorCode::kParse, who + ": a truncated frame");
    auto v = rest.first(n);
    rest = rest.subspan(n);
    return v;
  }
};

}  // namespace

std::size_t default_import_workers(const config::HsmSettings& hsm, const Profile& profile, std::uint64_t input_bytes) {
  const bool field_encrypted = std::any_of(profile.attributes.begin(), profile.attributes.end(), [](const AttributeSpec& a) {
    return a.field_encryption != FieldEncryption::kNone;
  });
  if (!field_encrypted || !module_serializes_calls(hsm) || input_bytes < kImportWorkersMinInputBytes) return 0;
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
    Bytes w;
    put(w, seq, 4);
    put(w, cards, 4);
    put(w, requests.size(), 4);
    for (const Request& r : requests) {
      if (r.wrapped.size() > 0xFFFFFFFFu) return Error(ErrorCode::kInvalidArgument, "a field-encrypted value over 4 GiB");
      put(w, r.attribute, 2);
      put(w, r.wrapped.size(), 4);
      w.insert(w.end(), r.wrapped.begin(), r.wrapped.end());
    }
    return w;
  };
  auto answer = [&](std::span<const std::uint8_t> payload, std::uint32_t seq, std::uint64_t&) -> Status {
    const std::string who = "an import worker";
    Cursor c{payload, who};
    PF_ASSIGN_OR_RETURN(const std::uint64_t got_seq, c.take(4));
    PF_ASSIGN_OR_RETURN(const std::uint64_t count, c.take(4));
    if (got_seq != seq || count != requests.size()) {
      return Error(ErrorCode::kInternal, who + ": an answer for other values " + doing);
    }
    out.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      PF_ASSIGN_OR_RETURN(const std::uint64_t status, c.take(1));
      PF_ASSIGN_OR_RETURN(const std::uint64_t length, c.take(4));
      PF_ASSIGN_OR_RETURN(const auto bytes, c.bytes(length));
      if (status == 0) {
        out.emplace_back(Bytes(bytes.begin(), bytes.end()));
        continue;
      }
      const std::uint64_t code = status - 1;
      if (code > static_cast<std::uint64_t>(ErrorCode::kInternal)) {
        return Error(ErrorCode::kParse, who + ": an unknown status " + std::to_string(status) + " " + doing);
      }
      out.emplace_back(Error(static_cast<ErrorCode>(code), std::string(bytes.begin(), bytes.end())));
    }
    if (!c.rest.empty()) return Error(ErrorCode::kParse, who + ": trailing bytes in an answer " + doing);
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
    Cursor c{payload, peer};
    PF_ASSIGN_OR_RETURN(const std::uint64_t seq, c.take(4));
    PF_ASSIGN_OR_RETURN(const std::uint64_t cards, c.take(4));
    PF_ASSIGN_OR_RETURN(const std::uint64_t count, c.take(4));
    std::vector<FieldTranslator::Request> requests;
    requests.reserve(std::min<std::uint64_t>(count, c.rest.size() / 6));  // 6 bytes per value at least
    for (std::uint64_t i = 0; i < count; ++i) {
      PF_ASSIGN_OR_RETURN(const std::uint64_t attribute, c.take(2));
      PF_ASSIGN_OR_RETURN(const std::uint64_t length, c.take(4));
      PF_ASSIGN_OR_RETURN(const auto bytes, c.bytes(length));
      requests.push_back({static_cast<std::uint32_t>(attribute), bytes});
    }
    if (!c.rest.empty()) return Error(ErrorCode::kParse, peer + ": trailing bytes in a work frame");
    PF_ASSIGN_OR_RETURN(auto results, setup->translator->translate(requests, cards));
    WorkerAnswer a;
    put(a.head, seq, 4);
    put(a.head, results.size(), 4);
    for (const Result<Bytes>& r : results) {
      if (r) {
        put(a.head, 0, 1);
        put(a.head, r->size(), 4);
        a.head.insert(a.head.end(), r->begin(), r->end());
      } else {
        const std::string& message = r.error().message();
        put(a.head, 1 + static_cast<std::uint64_t>(r.error().code()), 1);
        put(a.head, message.size(), 4);
        a.head.insert(a.head.end(), message.begin(), message.end());
      }
    }
    return a;
  };
  return serve_worker(fd, "import worker", open, handle);
}

}  // namespace persoflow::pipeline
