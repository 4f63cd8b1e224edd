#include "pipeline/prep_workers.h"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "engine/hex.h"
#include "hsm/hsm_keys.h"
#include "pipeline/run_journal.h"

namespace persoflow::pipeline {

struct PrepWorkerPool::State {
  std::unique_ptr<WorkerPool> pool;
  std::mutex mu;
  std::uint64_t retries = 0;
};

std::size_t default_prep_workers(const config::HsmSettings& hsm, std::size_t segments, KeyHandling mode) {
  if (mode == KeyHandling::kHost || !module_serializes_calls(hsm)) return 0;
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t n = std::min(cores, segments);
  return n <= 1 ? 0 : n;
}

Result<std::unique_ptr<PrepWorkerPool>> PrepWorkerPool::start(PrepWorkerConfig config, std::size_t workers) {
  std::unique_ptr<PrepWorkerPool> pool(new PrepWorkerPool(std::move(config)));
  pool->size_ = workers;
  WorkerPoolConfig wc;
  wc.hsm = pool->config_.hsm;
  wc.command = "prep-worker";
  wc.kind = "prep worker";
  wc.recycle_units = pool->config_.recycle_cards;
  wc.init = {{"profile", pool->config_.profile_path},
             {"profile_sha256", pool->config_.profile_sha256},
             {"xof", pool->config_.xof_path},
             {"xof_header", pool->config_.xof_header ? to_hex(formats::serialize_xof_header(*pool->config_.xof_header))
                                                     : std::string()},
             {"registry", pool->config_.registry_path},
             {"lookup_kind", pool->config_.lookup_kind == formats::SeLookupKind::kMsi ? "msi" : "se_id"},
             {"bundle_header", to_hex(formats::serialize_bundle_header(pool->config_.transport_header))}};
  PF_ASSIGN_OR_RETURN(pool->state_->pool, WorkerPool::start(std::move(wc), workers));
  return pool;
}

PrepWorkerPool::PrepWorkerPool(PrepWorkerConfig config)
    : config_(std::move(config)), state_(std::make_unique<State>()) {}

PrepWorkerPool::~PrepWorkerPool() { (void)stop(); }

Status PrepWorkerPool::stop() { return state_->pool ? state_->pool->stop() : ok_status(); }

std::uint64_t PrepWorkerPool::retries() const {
  std::lock_guard lock(state_->mu);
  return state_->retries;
}

std::uint64_t PrepWorkerPool::processes_started() const { return state_->pool->processes_started(); }

Status PrepWorkerPool::prepare(SegmentWork& work) {
  const std::string doing = "while preparing XOF segment " + std::to_string(work.xof_segment);
  auto request = [&](std::uint32_t seq) -> Result<Bytes> {
    nlohmann::ordered_json cards = nlohmann::ordered_json::array();
    for (std::size_t c = 0; c < work.cards.size(); ++c) {
      const PlannedCard& p = work.cards[c];
      nlohmann::ordered_json row = {p.index, p.position, p.se_row, p.counter};
      if (p.se_row == 0) row.push_back(c < work.se_keys.size() ? work.se_keys[c] : std::string());
      cards.push_back(std::move(row));
    }
    Bytes frame = json_head({{"seq", seq}, {"segment", work.xof_segment}, {"cards", std::move(cards)}});
    frame.insert(frame.end(), work.sealed.begin(), work.sealed.end());
    return frame;
  };
  auto answer = [&](std::span<const std::uint8_t> payload, std::uint32_t seq, std::uint64_t& reported) -> Status {
    const std::string who = "a prep worker";
    PF_ASSIGN_OR_RETURN(const JsonFrame frame, split_json_frame(payload, who, "an answer " + doing));
    const nlohmann::json& j = frame.json;
    const std::string outcome = j.value("outcome", std::string());
    if (j.value("seq", std::uint32_t{~0u}) != seq || outcome.size() != work.cards.size()) {
      return Error(ErrorCode::kInternal, who + ": an answer for other cards " + doing);
    }
    const std::size_t prepared = static_cast<std::size_t>(std::count(outcome.begin(), outcome.end(), '1'));
    work.done.clear();
    if (prepared != 0) {  // a segment whose cards were all rejected sends no bundle segment
      PF_ASSIGN_OR_RETURN(work.done, formats::decode_bundle_segment(config_.transport_header, frame.rest, seq, who));
    }
    if (work.done.size() != prepared) return Error(ErrorCode::kInternal, who + ": prepared cards missing " + doing);
    for (const auto& r : j.value("rejects", nlohmann::json::array())) {
      PF_ASSIGN_OR_RETURN(Reject reject, reject_from_json(r, who));
      work.rejects.push_back(std::move(reject));
    }
    if (work.rejects.size() != work.cards.size() - prepared) {
      return Error(ErrorCode::kInternal, who + ": rejects missing " + doing);
    }
    work.outcome.clear();
    for (const char c : outcome) work.outcome.push_back(c == '1' ? 1 : 0);
    work.apdus = j.value("apdus", std::uint64_t{0});
    const std::uint64_t total = j.value("retries", std::uint64_t{0});
    {
      std::lock_guard lock(state_->mu);
      state_->retries += total - std::min(total, reported);
    }
    reported = total;
    return ok_status();
  };
  return state_->pool->exchange(work.cards.size(), doing, request, answer);
}

int run_prep_worker(const config::HsmSettings& hsm, int fd) {
  const std::string peer = "prep worker " + std::to_string(::getpid()) + ": its parent";
  // Everything the parallel stage needs, opened as prep opens it.
  struct Setup {
    HsmSession session;
    Profile profile;
    std::optional<formats::XofReader> reader;  // prep: the published XOF
    formats::XofHeader header;                 // run: the header of the XOF being written
    std::optional<PrepKeys> keys;
    std::optional<formats::SeRegistry> registry;
    std::optional<CardPreparer> preparer;
    formats::BundleHeader transport;
    SegmentContext context;
  };
  auto setup = std::make_unique<Setup>();
  auto open = [&](const nlohmann::json& init) -> Status {
    std::string profile_path, xof_path, xof_header_hex, registry_path, lookup_kind, header_hex;
    try {
      profile_path = init.at("profile").get<std::string>();
      xof_path = init.at("xof").get<std::string>();
      xof_header_hex = init.at("xof_header").get<std::string>();
      registry_path = init.at("registry").get<std::string>();
      lookup_kind = init.at("lookup_kind").get<std::string>();
      header_hex = init.at("bundle_header").get<std::string>();
    } catch (const nlohmann::json::exception&) {
      return Error(ErrorCode::kInternal, peer + ": a malformed init frame");
    }
    PF_ASSIGN_OR_RETURN(setup->session, open_worker_hsm(hsm));
    hsm::KeyStore& keys = *setup->session.keys;
    PF_ASSIGN_OR_RETURN(setup->profile, load_worker_profile(init, peer));
    if (!setup->profile.prep) return Error(ErrorCode::kInvalidArgument, profile_path + ": the profile has no <prep> element");
    PF_ASSIGN_OR_RETURN(hsm::KeyInfo integrity_info, keys.find(setup->profile.integrity_key_uri));
    auto integrity = std::make_unique<hsm::HsmMacKey>(keys, integrity_info);
    if (xof_header_hex.empty()) {
      PF_ASSIGN_OR_RETURN(formats::XofReader reader, formats::XofReader::open(xof_path, *integrity));
      setup->reader.emplace(std::move(reader));
      setup->header = setup->reader->header();
    } else {
      PF_ASSIGN_OR_RETURN(const Bytes bytes, from_hex(xof_header_hex));
      PF_ASSIGN_OR_RETURN(setup->header, formats::parse_xof_header(bytes, peer + "'s XOF header"));
    }
    PF_ASSIGN_OR_RETURN(PrepKeys k, resolve_prep_keys(setup->profile, profile_path, setup->header, keys,
                                                      std::move(integrity), integrity_info));
    setup->keys.emplace(std::move(k));
    PF_TRY_CTX(formats::check_xof_class_keys(setup->header, setup->keys->class_ptrs), xof_path);
    PF_ASSIGN_OR_RETURN(formats::SeRegistry registry, formats::SeRegistry::open(registry_path, false));
    PF_TRY(registry.limit_cache(kReaderCacheKib));
    setup->registry.emplace(std::move(registry));
    PF_ASSIGN_OR_RETURN(const Bytes header_bytes, from_hex(header_hex));
    PF_ASSIGN_OR_RETURN(setup->transport, formats::parse_bundle_header(header_bytes, peer));
    setup->preparer.emplace(setup->profile, setup->header, keys, *setup->keys);
    setup->context.header = &setup->header;
    setup->context.xof_path = xof_path;
    setup->context.class_keys = setup->keys->class_ptrs;
    setup->context.preparer = &*setup->preparer;
    setup->context.lookup_kind = lookup_kind == "msi" ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;
    setup->context.registry_path = registry_path;
    return ok_status();
  };
  auto handle = [&](std::span<const std::uint8_t> payload) -> Result<WorkerAnswer> {
    PF_ASSIGN_OR_RETURN(const JsonFrame frame, split_json_frame(payload, peer, "a work frame"));
    const nlohmann::json& j = frame.json;
    const auto sealed = frame.rest;
    SegmentWork work;
    std::uint32_t seq = 0;
    try {
      seq = j.at("seq").get<std::uint32_t>();
      work.xof_segment = j.at("segment").get<std::uint32_t>();
      for (const auto& row : j.at("cards")) {
        PlannedCard p;
        p.segment = work.xof_segment;
        p.index = row.at(0).get<std::uint32_t>();
        p.position = row.at(1).get<std::uint64_t>();
        p.se_row = row.at(2).get<std::int64_t>();
        p.counter = row.at(3).get<std::uint32_t>();
        work.cards.push_back(p);
        work.se_keys.push_back(row.size() > 4 ? row.at(4).get<std::string>() : std::string());
      }
    } catch (const nlohmann::json::exception&) {
      return Error(ErrorCode::kInternal, peer + ": a malformed work frame");
    }
    if (!sealed.empty()) {  // run: the segment as sealed for the XOF being written
      PF_ASSIGN_OR_RETURN(work.raw, formats::parse_xof_segment(setup->header, Bytes(sealed.begin(), sealed.end()), 0,
                                                               work.xof_segment,
                                                               setup->context.xof_path + ": segment " +
                                                                   std::to_string(work.xof_segment)));
    } else if (setup->reader) {
      PF_ASSIGN_OR_RETURN(work.raw, setup->reader->read_segment(work.xof_segment));
    } else {
      return Error(ErrorCode::kInternal, peer + ": a work frame without the segment's bytes");
    }
    PF_TRY(prepare_segment(work, *setup->registry, setup->context));
    formats::BundleEncodedSegment enc;
    if (!work.done.empty()) {
      PF_ASSIGN_OR_RETURN(enc, formats::encode_bundle_segment(setup->transport, seq, work.done));
    }
    std::string outcome;
    for (const std::uint8_t o : work.outcome) outcome.push_back(o != 0 ? '1' : '0');
    nlohmann::ordered_json rejects = nlohmann::ordered_json::array();
    for (const Reject& r : work.rejects) rejects.push_back(reject_to_json(r));
    WorkerAnswer a;
    a.head = json_head({{"seq", seq},
                        {"outcome", outcome},
                        {"rejects", std::move(rejects)},
                        {"apdus", work.apdus},
                        {"retries", setup->preparer->retries()}});
    a.body = std::move(enc.bytes);
    return a;
  };
  return serve_worker(fd, "prep worker", open, handle);
}

}  // namespace persoflow::pipeline
