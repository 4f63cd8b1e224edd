#include "pipeline/run_command.h"

#include <tbb/flow_graph.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/sha256_digest.h"
#include "formats/xof_segment.h"
#include "formats/xof_writer.h"
#include "pipeline/import_graph.h"
#include "pipeline/import_stages.h"
#include "pipeline/import_workers.h"
#include "pipeline/prep_segment.h"
#include "pipeline/prep_stages.h"
#include "pipeline/prep_workers.h"
#include "pipeline/progress.h"
#include "pipeline/reject_report.h"
#include "pipeline/run_audit.h"
#include "pipeline/run_journal.h"

namespace persoflow::pipeline {
namespace {

namespace fs = std::filesystem;

// A bundle segment as spooled in the run directory until the XOF is finished (the
// bundle's header names the XOF's SHA-256, known only then): u32 number, u32 card count,
// per card (u16 length, id), u64 length, the segment's bytes. It holds what the bundle
// will hold, nothing more.
Bytes spooled_segment(const formats::BundleEncodedSegment& s) {
  Bytes out;
  auto put = [&](std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  put(s.segment_number, 4);
  put(s.card_count, 4);
  for (const std::string& id : s.card_ids) {
    put(id.size(), 2);
    out.insert(out.end(), id.begin(), id.end());
  }
  put(s.bytes.size(), 8);
  out.insert(out.end(), s.bytes.begin(), s.bytes.end());
  return out;
}

Result<formats::BundleEncodedSegment> segment_from_spool(const Bytes& in, const std::string& where) {
  std::size_t at = 0;
  auto get = [&](int n) -> Result<std::uint64_t> {
    if (in.size() - at < static_cast<std::size_t>(n)) {
      return Error(ErrorCode::kIntegrity, where + ": a spooled bundle segment is cut short");
    }
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | in[at++];
    return v;
  };
  formats::BundleEncodedSegment s;
  PF_ASSIGN_OR_RETURN(const std::uint64_t number, get(4));
  PF_ASSIGN_OR_RETURN(const std::uint64_t count, get(4));
  s.segment_number = static_cast<std::uint32_t>(number);
  s.card_count = static_cast<std::uint32_t>(count);
  for (std::uint64_t c = 0; c < count; ++c) {
    PF_ASSIGN_OR_RETURN(const std::uint64_t len, get(2));
    if (in.size() - at < len) return Error(ErrorCode::kIntegrity, where + ": a spooled bundle segment is cut short");
    s.card_ids.emplace_back(reinterpret_cast<const char*>(in.data() + at), len);
    at += len;
  }
  PF_ASSIGN_OR_RETURN(const std::uint64_t len, get(8));
  if (in.size() - at != len) return Error(ErrorCode::kIntegrity, where + ": a spooled bundle segment has the wrong length");
  s.bytes.assign(in.begin() + static_cast<std::ptrdiff_t>(at), in.end());
  return s;
}

// Where a piece of the run's spool is, as its journal record names it.
struct SpoolPiece {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string sha256;
};

nlohmann::ordered_json piece_json(const SpoolPiece& p) {
  return {{"offset", p.offset}, {"length", p.length}, {"sha256", p.sha256}};
}

Result<SpoolPiece> spool_piece(RunJournal& journal, std::span<const std::uint8_t> bytes) {
  PF_ASSIGN_OR_RETURN(const std::uint64_t at, journal.append_spool(bytes, false));
  PF_ASSIGN_OR_RETURN(const formats::Sha256Digest digest, formats::sha256(bytes));
  return SpoolPiece{at, bytes.size(), to_hex(Bytes(digest.begin(), digest.end()))};
}

// A card of a finished XOF segment, with its counter (after the reservation).
struct RunCard {
  std::uint32_t segment = 0;  // index in RunBatch::assembled.segments
  std::uint32_t index = 0;    // within that segment
  std::uint64_t record = 0;
  std::uint64_t offset = 0;
  formats::SeRecord se;     // in-process prep: read by the reservation stage
  std::int64_t se_row = 0;  // prep workers: each reads the row itself (by se_key when 0)
  std::string se_key;
  std::uint32_t counter = 0;
};

// One import batch through the whole graph (passed by pointer: the clear cards are not
// copied between nodes).
struct RunBatch {
  std::uint64_t seq = 0;
  bool last = false;
  AssembledBatch assembled;  // the XOF segments this batch completed, clear cards
  EncodedBatch encoded;      // the same segments sealed, and the import's rejects
  std::vector<RunCard> planned;
  std::vector<Reject> rejects;  // import, registry and prep rejects of this batch
  std::uint64_t import_rejects = 0;
  std::uint64_t import_record_rejects = 0;
  std::uint64_t prep_rejects = 0;
  std::vector<formats::BundleCard> done;
  std::uint64_t apdus = 0;
  // This batch's reservation batch (none when it completed no XOF segment).
  struct Reserved {
    std::int64_t batch = 0;
    std::uint64_t cards = 0;
    std::uint64_t counters = 0;
  };
  std::optional<Reserved> reservation;
};
using RunBatchPtr = std::shared_ptr<RunBatch>;

std::string default_name(const std::string& input) {
  std::string stem = fs::path(input).stem().string();
  return stem.empty() ? "run" : stem;
}

// The options of a journaled run (its `started` record), refusing a run that has nothing
// left to resume. The process moves to the directory the run started in.
Result<RunOptions> options_from_journal(const RunJournal& j, const RunOptions& given) {
  const std::string where = j.journal_path();
  const nlohmann::json& s = j.records().front();
  if (s.value("record", std::string()) != "started" || s.value("command", std::string()) != "run") {
    return Error(ErrorCode::kIntegrity, where + ": record 1: not the start of a run");
  }
  const std::string run_id = s.value("run_id", std::string("?"));
  if (j.last("finished") != nullptr) {
    return Error(ErrorCode::kAlreadyExists, j.dir() + ": run '" + run_id + "' already finished (its outputs are in " +
                                                s.value("out_dir", std::string("?")) + "): there is nothing to resume");
  }
  if (const nlohmann::json* f = j.last("failed")) {
    return Error(ErrorCode::kInvalidArgument, j.dir() + ": run '" + run_id + "' failed (" +
                                                  f->value("error", std::string("?")) +
                                                  "); a failed run cannot be resumed: run it again (it reserves "
                                                  "fresh counters)");
  }
  RunOptions o;
  try {
    o.run_id = s.at("run_id").get<std::string>();
    o.operator_name = s.at("operator").get<std::string>();
    o.profile_path = s.at("profile").at("path").get<std::string>();
    o.input_path = s.at("input").at("path").get<std::string>();
    o.registry_path = s.at("registry").get<std::string>();
    o.out_dir = s.at("out_dir").get<std::string>();
    o.name = s.at("name").get<std::string>();
    o.batch_records = s.at("batch_records").get<std::size_t>();
    o.zstd_level = s.at("zstd_level").get<int>();
    if (!s.at("max_rejects").is_null()) {
      PF_ASSIGN_OR_RETURN(o.max_rejects, RejectLimit::parse(s.at("max_rejects").get<std::string>()));
    }
    const std::string cwd = s.at("cwd").get<std::string>();
    std::error_code ec;
    fs::current_path(cwd, ec);
    if (ec) {
      return Error(ErrorCode::kNotFound, where + ": the run started in " + cwd + ", which cannot be entered: " + ec.message());
    }
  } catch (const nlohmann::json::exception&) {
    return Error(ErrorCode::kIntegrity, where + ": record 1: a malformed start record");
  }
  o.max_batches_in_flight = given.max_batches_in_flight;
  o.audit_log = given.audit_log;
  o.workers = given.workers;
  o.worker_recycle_cards = given.worker_recycle_cards;
  o.hsm = given.hsm;
  o.run_dir = j.dir();
  o.resume_dir = j.dir();
  return o;
}

Result<RunResult> run_body(const RunOptions& options, hsm::KeyStore& keys, RunAudit& audit, JournaledRun& jc);

}  // namespace

Result<RunResult> run_full(const RunOptions& given, hsm::KeyStore& keys) {
  RunOptions options = given;
  JournaledRun jc;
  if (!given.resume_dir.empty()) {
    PF_ASSIGN_OR_RETURN(RunJournal journal, RunJournal::open(given.resume_dir));
    PF_ASSIGN_OR_RETURN(options, options_from_journal(journal, given));
    jc.journal.emplace(std::move(journal));
    jc.resuming = true;
  } else {
    if (options.run_id.empty()) options.run_id = default_run_id("run");
    if (options.name.empty()) options.name = default_name(options.input_path);
    if (options.run_dir.empty()) options.run_dir = (fs::path(options.out_dir) / (options.name + ".run")).string();
  }
  RunAudit audit(options.audit_log, "run", options.run_id);
  auto r = run_body(options, keys, audit, jc);
  if (!r) {
    Error e = std::move(r).error();
    jc.record_failure(e, "run", /*has_reservation=*/true);
    return audit.fail(std::move(e));
  }
  r->run_dir = jc.journal ? jc.journal->dir() : options.run_dir;
  return r;
}

std::pair<std::size_t, std::size_t> default_run_workers(const config::HsmSettings& hsm, const Profile& profile,
                                                        std::uint64_t input_bytes) {
  if (input_bytes < kImportWorkersMinInputBytes) return {0, 0};
  const std::size_t prep =
      profile.prep ? default_prep_workers(hsm, std::numeric_limits<std::size_t>::max(), profile.prep->key_handling) : 0;
  return {default_import_workers(hsm, profile, input_bytes), prep};
}

namespace {

Result<RunResult> run_body(const RunOptions& options, hsm::KeyStore& keys, RunAudit& audit, JournaledRun& jc) {
  const auto started = std::chrono::steady_clock::now();
  std::optional<nlohmann::json> started_record;
  if (jc.resuming) started_record = jc.journal->records().front();
  auto changed = [&](const std::string& path, const char* what, const std::string& now, const std::string& then) {
    return Error(ErrorCode::kIntegrity, path + ": the " + what + " changed since run '" + options.run_id +
                                            "' started (SHA-256 " + now + ", the journal has " + then +
                                            "): a run is resumed only over the inputs it started with");
  };
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  if (!profile.prep) {
    return Error(ErrorCode::kInvalidArgument, options.profile_path + ": the profile has no <prep> element");
  }
  if (started_record) {
    const std::string then = (*started_record)["profile"].value("sha256", std::string());
    if (to_hex(profile.sha256) != then) return changed(options.profile_path, "profile", to_hex(profile.sha256), then);
  }
  const PrepSpec& prep = *profile.prep;

  RunResult result;
  const std::string& name = options.name;
  if (name.find('/') != std::string::npos || name == "." || name == ".." || name.empty()) {
    return Error(ErrorCode::kInvalidArgument, "--name '" + name + "' must be a plain file name");
  }
  const fs::path dir(options.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    return Error(ErrorCode::kIo, "--out-dir " + options.out_dir + ": cannot create the directory" +
                                     (ec ? ": " + ec.message() : ""));
  }
  result.xof_path = (dir / (name + ".xof")).string();
  result.bundle_path = (dir / (name + ".bundle")).string();
  result.rejects_path = (dir / (name + ".rejects.jsonl")).string();
  result.report_path = (dir / (name + ".report.json")).string();
  // A resumed run may find the outputs it published itself before it was killed: it
  // publishes the same bytes again.
  for (const std::string& p : {result.xof_path, result.bundle_path}) {
    if (!jc.resuming && fs::exists(p)) {
      return Error(ErrorCode::kAlreadyExists, p + " already exists: a run never replaces a published XOF or "
                                                  "bundle (choose another --out-dir or --name)");
    }
  }

  // The import half, as `persoflow import` sets it up.
  PF_ASSIGN_OR_RETURN(ImportKeys import_keys, ImportKeys::resolve(profile, keys));
  std::vector<Bytes> class_kcvs;
  for (auto* k : import_keys.class_key_ptrs) {
    PF_ASSIGN_OR_RETURN(Bytes kcv, k->kcv());
    class_kcvs.push_back(std::move(kcv));
  }
  PF_ASSIGN_OR_RETURN(Bytes integrity_kcv, import_keys.integrity->kcv());
  PF_ASSIGN_OR_RETURN(auto source, EnvelopeSource::open(options.input_path, profile, keys, options.batch_records));
  const auto& source_digest = source->source_sha256();
  if (started_record) {
    const std::string then = (*started_record)["input"].value("sha256", std::string());
    if (to_hex(source_digest) != then) return changed(options.input_path, "issuer file", to_hex(source_digest), then);
  }
  PF_ASSIGN_OR_RETURN(formats::XofHeader xof_header,
                      formats::make_xof_header(profile, Bytes(source_digest.begin(), source_digest.end()),
                                               class_kcvs, integrity_kcv, options.zstd_level));
  // The prep half's checks, before anything is reserved.
  PF_ASSIGN_OR_RETURN(const std::size_t se_index,
                      check_prep_attributes(prep, xof_header, options.profile_path, options.input_path));
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo integrity_info, keys.find(profile.integrity_key_uri));
  auto integrity = std::make_unique<hsm::HsmMacKey>(keys, integrity_info);
  PF_ASSIGN_OR_RETURN(PrepKeys k, resolve_prep_keys(profile, options.profile_path, xof_header, keys, std::move(integrity), integrity_info));
  PF_ASSIGN_OR_RETURN(formats::SeRegistry registry, formats::SeRegistry::open(options.registry_path, false));

  PF_ASSIGN_OR_RETURN(formats::XofWriter xof, formats::XofWriter::create(result.xof_path, xof_header));
  PF_ASSIGN_OR_RETURN(RejectReport rejects, RejectReport::create(result.rejects_path));

  formats::BundleHeader bh;
  bh.profile_sha256 = profile.sha256;
  bh.profile_id = profile.id;
  bh.product = prep.product;
  bh.segment_cards = static_cast<std::uint32_t>(prep.bundle_segment_cards);
  bh.zstd_level = prep.bundle_zstd_level;
  bh.integrity_key_uri = profile.integrity_key_uri;
  bh.integrity_kcv = integrity_kcv;
  // Prepared cards not yet in a bundle segment are spooled as a segment of their own at
  // zstd level 1 (read back only by a resume).
  formats::BundleHeader carry_header = bh;
  carry_header.zstd_level = 1;

  formats::ReservationInfo info;
  info.run_id = options.run_id;
  info.product = prep.product;
  info.scp = prep.channel.scp;
  info.values_per_card = registry_counters_per_card(prep);
  info.operator_name = options.operator_name.empty() ? default_operator() : options.operator_name;
  info.source_digest = to_hex(source_digest);

  // The journal first (a run that cannot be journaled reserves nothing), then run.start.
  if (!jc.resuming) {
    PF_ASSIGN_OR_RETURN(RunJournal created, RunJournal::create(options.run_dir, kRunSpoolFileName));
    jc.journal.emplace(std::move(created));
    jc.failure_ends_run = true;
    PF_ASSIGN_OR_RETURN(const std::int64_t before, last_reservation_id(registry));
    PF_TRY(jc.journal->append(
        {{"record", "started"},
         {"format", 1},
         {"command", "run"},
         {"run_id", info.run_id},
         {"operator", info.operator_name},
         {"cwd", fs::current_path().string()},
         {"profile", {{"path", options.profile_path}, {"sha256", to_hex(profile.sha256)}}},
         {"input", {{"path", options.input_path}, {"sha256", to_hex(source_digest)}}},
         {"registry", options.registry_path},
         {"out_dir", options.out_dir},
         {"name", name},
         {"max_rejects", options.max_rejects ? nlohmann::ordered_json(options.max_rejects->to_string())
                                             : nlohmann::ordered_json(nullptr)},
         {"batch_records", options.batch_records},
         {"zstd_level", options.zstd_level},
         {"reservations_before", before}}));
  }
  RunJournal& journal = *jc.journal;
  if (audit.enabled()) {
    nlohmann::ordered_json keys_used = import_keys_audit(keys, source->summary().transport_key_uri, xof_header,
                                                         class_kcvs, profile.integrity_key_uri, integrity_kcv);
    for (auto& k2 : prep_keys_audit(prep, k, keys)) keys_used.push_back(std::move(k2));
    nlohmann::ordered_json details = {
        {"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
        {"input", {{"path", fs::absolute(options.input_path).string()}, {"sha256", to_hex(source_digest)}}},
        {"registry", fs::absolute(options.registry_path).string()},
        {"key_handling", key_handling_name(prep.key_handling)},
        {"keys", keys_used}};
    if (!jc.resuming) {
      PF_TRY(audit.start(std::move(details)));
    } else {
      details["run_dir"] = journal.dir();
      details["batches_journaled"] = journal.all("batch").size();
      PF_TRY(audit.resume(std::move(details)));
    }
  }

  // The reservation, opened (state `reserved`, no counters yet) and filled one pipeline
  // batch at a time. The journal records the registry's last reservation id before it
  // (`started`) and the reservation (`reserved`): a run killed in between finds it again
  // by its run id; one killed before the commit opens it on resume, once.
  const nlohmann::json* reserved_record = journal.last("reserved");
  std::int64_t reservation_id = reserved_record != nullptr ? reserved_record->value("reservation_id", std::int64_t{0}) : 0;
  bool fresh = false;
  if (jc.resuming && reservation_id == 0) {
    PF_ASSIGN_OR_RETURN(auto found, find_reservation_of_run(registry, info.run_id,
                                                            started_record->value("reservations_before", std::int64_t{0})));
    if (found) reservation_id = found->id;
  }
  if (reservation_id == 0) {
    PF_ASSIGN_OR_RETURN(reservation_id, registry.open_reservation(info));
    fresh = true;
  } else {
    PF_ASSIGN_OR_RETURN(auto record, registry.reservation(reservation_id));
    const std::string where = "SE registry " + options.registry_path + ": reservation " + std::to_string(reservation_id) +
                              " of run '" + info.run_id + "'";
    if (!record) return Error(ErrorCode::kNotFound, where + " does not exist: not the registry the run started with");
    if (record->run_id != info.run_id) return Error(ErrorCode::kIntegrity, where + " belongs to run '" + record->run_id + "'");
    if (record->state == formats::ReservationState::kBurnt) {
      return Error(ErrorCode::kInvalidArgument,
                   where + " is burnt: the run cannot be resumed (run it again: it reserves fresh counters)");
    }
    const nlohmann::json* last_batch = journal.last("batch");
    if (record->state == formats::ReservationState::kPublished &&
        (last_batch == nullptr || !last_batch->value("last", false))) {
      return Error(ErrorCode::kAlreadyExists, where + " is already published: there is nothing to resume");
    }
  }
  result.reservation_id = reservation_id;
  bh.reservation_id = reservation_id;
  carry_header.reservation_id = reservation_id;
  if (reserved_record == nullptr) {
    PF_TRY(journal.append({{"record", "reserved"}, {"reservation_id", reservation_id}, {"recovered", !fresh}}));
  }

  // --resume: the journaled batches come back from the spool: XOF segments into the XOF,
  // bundle segments kept for the bundle, prepared cards not yet in a bundle segment back
  // into the pending list; the rejects journaled with them. An error here leaves the run
  // resumable (this process has prepared nothing yet).
  std::vector<SpoolPiece> bundle_segments;  // spooled, in order
  std::vector<formats::BundleCard> pending;
  std::size_t pending_spooled = 0;  // pending[0..pending_spooled) are in the spool already
  std::uint32_t next_bundle_segment = 0;
  std::uint32_t next_xof_segment = 0;
  std::int64_t next_reservation_batch = 1;  // the batch reserve_more would number next
  std::int64_t registry_last_batch = 0;     // the largest batch the registry holds for the run
  bool was_complete = false;
  std::optional<std::uint64_t> skip_through;
  std::uint64_t batch_records_written = 0;
  std::uint64_t batches_committed = 0;  // by this process (the test crash point)
  std::uint64_t spool_end = 0;
  std::vector<std::string> xof_ids;
  const std::string bad_journal = journal.journal_path() + ": the journaled batches do not follow each other";
  if (jc.resuming) {
    const std::vector<const nlohmann::json*> batches = journal.all("batch");
    was_complete = !batches.empty() && batches.back()->value("last", false);
    try {
      for (const nlohmann::json* b : batches) {
        ++batch_records_written;
        for (const auto& seg : b->at("xof")) {
          const auto number = seg.at("number").get<std::uint32_t>();
          const auto cards = seg.at("cards").get<std::uint32_t>();
          const auto offset = seg.at("offset").get<std::uint64_t>();
          const auto length = seg.at("length").get<std::uint64_t>();
          if (number != next_xof_segment || offset != spool_end) {
            return Error(ErrorCode::kIntegrity, bad_journal + " (XOF segment " + std::to_string(number) + ")");
          }
          PF_ASSIGN_OR_RETURN(Bytes bytes, journal.read_spool(offset, length, seg.at("sha256").get<std::string>()));
          PF_ASSIGN_OR_RETURN(formats::XofSegment parsed,
                              formats::parse_xof_segment(xof.header(), bytes, offset, number, journal.spool_path()));
          if (parsed.card_ids.size() != cards) {
            return Error(ErrorCode::kIntegrity, bad_journal + " (XOF segment " + std::to_string(number) + ")");
          }
          xof_ids.insert(xof_ids.end(), parsed.card_ids.begin(), parsed.card_ids.end());
          PF_TRY(xof.append(formats::EncodedSegment{number, cards, std::move(bytes)}));
          ++result.xof_segments;
          result.imported += cards;
          skip_through = seg.at("last_offset").get<std::uint64_t>();
          spool_end = offset + length;
          ++next_xof_segment;
        }
        for (const auto& j : b->at("rejects")) {
          PF_ASSIGN_OR_RETURN(Reject r, reject_from_json(j, journal.journal_path()));
          PF_TRY(rejects.add(r));
        }
        result.import_rejects += b->at("import_rejects").get<std::uint64_t>();
        result.records += b->at("import_record_rejects").get<std::uint64_t>();
        result.prep_rejects += b->at("prep_rejects").get<std::uint64_t>();
        result.prepared += b->at("prepared").get<std::uint64_t>();
        result.apdus += b->at("apdus").get<std::uint64_t>();
        if (const auto& res = b->at("reservation"); !res.is_null()) {
          ++result.reservation_batches;
          result.counters_reserved += res.at("counters").get<std::uint64_t>();
          if (res.at("cards").get<std::uint64_t>() > 0) {
            next_reservation_batch = std::max(next_reservation_batch, res.at("batch").get<std::int64_t>() + 1);
          }
        }
        for (const auto& seg : b->at("bundle")) {
          const auto offset = seg.at("offset").get<std::uint64_t>();
          const auto length = seg.at("length").get<std::uint64_t>();
          if (seg.at("number").get<std::uint32_t>() != next_bundle_segment || offset != spool_end) {
            return Error(ErrorCode::kIntegrity, bad_journal + " (bundle segment " + std::to_string(next_bundle_segment) + ")");
          }
          bundle_segments.push_back(SpoolPiece{offset, length, seg.at("sha256").get<std::string>()});
          ++next_bundle_segment;
          pending.clear();
          spool_end = offset + length;
        }
        if (const auto& carry = b->at("carry"); !carry.is_null()) {
          const auto offset = carry.at("offset").get<std::uint64_t>();
          const auto length = carry.at("length").get<std::uint64_t>();
          if (offset != spool_end) return Error(ErrorCode::kIntegrity, bad_journal + " (prepared cards)");
          PF_ASSIGN_OR_RETURN(Bytes bytes, journal.read_spool(offset, length, carry.at("sha256").get<std::string>()));
          PF_ASSIGN_OR_RETURN(auto cards, formats::decode_bundle_segment(carry_header, bytes, next_bundle_segment,
                                                                         journal.spool_path(), offset));
          for (auto& c : cards) pending.push_back(std::move(c));
          spool_end = offset + length;
        }
      }
    } catch (const nlohmann::json::exception& e) {
      return Error(ErrorCode::kIntegrity, journal.journal_path() + ": a malformed batch record: " + e.what());
    }
    pending_spooled = pending.size();
    PF_TRY(journal.cut_spool(spool_end));
    PF_ASSIGN_OR_RETURN(const auto ranges, registry.ranges_of(reservation_id));
    for (const auto& r : ranges) registry_last_batch = std::max(registry_last_batch, r.batch);
  }
  // From here on a failure ends the run and burns the reservation, unless it only
  // interrupts it (interrupts_run: the HSM, the disk; then --resume finishes it).
  jc.failure_ends_run = true;
  auto burn = [&](Error e) -> Error {
    jc.failure_ends_run = true;
    if (interrupts_run(e)) return e;  // resumable: the reservation stays `reserved`
    (void)registry.mark_burnt(reservation_id);
    e.add_context("reservation " + std::to_string(reservation_id) + " burnt");
    return e;
  };

  RunState state;
  // Worker processes (docs/cli.md#workers), started only when records are left to read:
  // the field-encrypted values translated, and the cards prepared, each in N processes.
  const std::uint64_t input_bytes = source->summary().envelope_bytes;
  std::size_t import_workers = 0, prep_workers = 0;
  if (options.workers && *options.workers != 0 && !options.hsm) {
    return burn(Error(ErrorCode::kInvalidArgument, "--workers: run workers need the HSM settings to start with"));
  }
  if (options.hsm && !was_complete) {
    if (options.workers) {
      import_workers = has_field_encryption(profile) ? *options.workers : 0;
      prep_workers = *options.workers;
    } else {
      std::tie(import_workers, prep_workers) = default_run_workers(*options.hsm, profile, input_bytes);
    }
  }
  std::unique_ptr<ImportWorkerPool> import_pool;
  if (import_workers != 0) {
    auto started_pool = ImportWorkerPool::start(*options.hsm, fs::absolute(options.profile_path).string(), profile,
                                                import_workers, options.worker_recycle_cards);
    if (!started_pool) return burn(started_pool.error());
    import_pool = std::move(*started_pool);
  }
  std::unique_ptr<PrepWorkerPool> prep_pool;
  if (prep_workers != 0) {
    PrepWorkerConfig wc;
    wc.hsm = *options.hsm;
    wc.profile_path = fs::absolute(options.profile_path).string();
    wc.profile_sha256 = to_hex(profile.sha256);
    wc.xof_path = fs::absolute(result.xof_path).string();
    wc.xof_header = xof.header();
    wc.registry_path = fs::absolute(options.registry_path).string();
    wc.lookup_kind = prep.se.kind == SeKeyKind::kMsi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;
    wc.transport_header = bh;
    wc.transport_header.zstd_level = 1;  // the cards cross a socket, not a disk: speed over size
    wc.transport_header.segment_cards = formats::kBundleMaxSegmentCards;  // an XOF segment's cards at once
    wc.transport_header.xof_sha256.assign(32, 0);  // known once the XOF is finished; cards do not depend on it
    wc.recycle_cards = options.worker_recycle_cards;
    auto started_pool = PrepWorkerPool::start(std::move(wc), prep_workers);
    if (!started_pool) return burn(started_pool.error());
    prep_pool = std::move(*started_pool);
  }
  result.import_workers = import_pool ? import_workers : 0;
  result.prep_workers = prep_pool ? prep_workers : 0;
  HsmFieldTranslator in_process(keys, import_keys);
  const FieldTranslator& translator = import_pool ? static_cast<const FieldTranslator&>(*import_pool) : in_process;
  RecordParser parser(profile, translator, state);
  // The ids seen spill next to the XOF's temporary file (the room the operator gave).
  SegmentAssembler assembler(profile.segment_cards, fs::path(xof.temp_path()).parent_path().string(), state);
  if (skip_through) parser.skip_through(*skip_through);
  if (auto s = assembler.resume(next_xof_segment, xof_ids); !s) return burn(std::move(s).error());
  xof_ids.clear();
  SegmentEncoder encoder(xof.header(), import_keys, state);
  CardPreparer preparer(profile, xof.header(), keys, k);
  const formats::SeLookupKind lookup_kind =
      prep.se.kind == SeKeyKind::kMsi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;
  ProgressLine progress("run");
  const std::size_t in_flight = options.max_batches_in_flight != 0
                                    ? options.max_batches_in_flight
                                    : 4 * std::max(1u, std::thread::hardware_concurrency());
  // What the next batch record will carry from batches that completed no XOF segment
  // (they journal nothing of their own: their records are read again on resume).
  std::vector<Reject> unjournaled;
  std::uint64_t unjournaled_import = 0, unjournaled_import_records = 0;

  // With prep workers: each XOF segment's planned cards go to the next idle worker with
  // the segment as sealed (the worker decrypts it under its own DKep handles); the parent
  // puts the prepared cards and the rejects back in XOF order.
  auto prepare_in_workers = [&](RunBatch& rb) -> Status {
    for (std::size_t next = 0; next < rb.planned.size();) {
      const std::uint32_t s = rb.planned[next].segment;
      std::size_t end = next;
      while (end < rb.planned.size() && rb.planned[end].segment == s) ++end;
      const formats::EncodedSegment& sealed = rb.encoded.segments.at(s);
      SegmentWork work;
      work.xof_segment = sealed.segment_number;
      work.sealed = sealed.bytes;
      for (std::size_t i = next; i < end; ++i) {
        const RunCard& p = rb.planned[i];
        PlannedCard planned;
        planned.segment = sealed.segment_number;
        planned.index = p.index;
        planned.position = p.record;
        planned.se_row = p.se_row;
        planned.counter = p.counter;
        work.cards.push_back(planned);
        work.se_keys.push_back(p.se_key);
      }
      PF_TRY(prep_pool->prepare(work));
      std::size_t done = 0, rejected = 0;
      for (std::size_t i = next; i < end; ++i) {
        const RunCard& p = rb.planned[i];
        if (work.outcome.at(i - next) != 0) {
          rb.done.push_back(std::move(work.done.at(done++)));
        } else {
          Reject r = std::move(work.rejects.at(rejected++));
          r.record = p.record;
          r.offset = p.offset;
          rb.rejects.push_back(std::move(r));
          ++rb.prep_rejects;
        }
      }
      rb.apdus += work.apdus;
      next = end;
    }
    return ok_status();
  };

  auto run_graph = [&] {
    using namespace tbb::flow;
    graph g;
    bool done = false;
    input_node<RecordBatchPtr> read(g, [&](tbb::flow_control& fc) {
      auto b = read_batch(*source, state, done);
      if (!b) fc.stop();
      return b;
    });
    limiter_node<RecordBatchPtr> limit(g, in_flight);
    function_node<RecordBatchPtr, ParsedBatchPtr> parse(g, unlimited, [&](const RecordBatchPtr& b) { return parse_batch(parser, b); });
    sequencer_node<ParsedBatchPtr> parsed_in_order(g, [](const ParsedBatchPtr& b) { return b->seq; });
    function_node<ParsedBatchPtr, RunBatchPtr> assemble(g, serial, [&](const ParsedBatchPtr& b) {
      auto rb = std::make_shared<RunBatch>();
      rb->seq = b->seq;
      rb->last = b->last;
      rb->assembled = assembler(std::move(*b));
      return rb;
    });
    function_node<RunBatchPtr, RunBatchPtr> encode(g, unlimited, [&](RunBatchPtr rb) {
      rb->encoded = encoder.encode(rb->assembled);
      return rb;
    });
    sequencer_node<RunBatchPtr> encoded_in_order(g, [](const RunBatchPtr& rb) { return rb->seq; });

    // Serial: the XOF segments are appended, then the counters of their cards reserved
    // (one committed transaction) before any of their scripts exists. On resume, a batch
    // the registry committed after the last journal record is taken back from its ranges.
    function_node<RunBatchPtr, RunBatchPtr> write_and_reserve(g, serial, [&](RunBatchPtr rb) {
      if (state.failed()) return rb;
      for (Reject& r : rb->encoded.rejects) {
        ++rb->import_rejects;
        if (r.record != 0) ++rb->import_record_rejects;
        rb->rejects.push_back(std::move(r));
      }
      rb->encoded.rejects.clear();
      for (const auto& seg : rb->encoded.segments) {
        if (auto s = xof.append(seg); !s) {
          state.fail(std::move(s).error());
          return rb;
        }
      }
      std::vector<formats::SeLookup> lookups;
      for (const ImportSegmentWork& seg : rb->assembled.segments) {
        for (const formats::XofCard& card : seg.cards) lookups.push_back({lookup_kind, se_key_of(card, se_index)});
      }
      if (lookups.empty()) return rb;
      const bool recovered = next_reservation_batch <= registry_last_batch;
      auto reserved = recovered ? reservation_from_ranges(registry, lookups, info, reservation_id, next_reservation_batch)
                                : registry.reserve_more(reservation_id, lookups, info);
      if (!reserved) {
        state.fail(std::move(reserved).error());
        return rb;
      }
      if (recovered) {
        reserved->batch = next_reservation_batch;
      } else {
        crash_point_after_reservation_batch(++batches_committed);
      }
      if (reserved->reserved > 0) next_reservation_batch = reserved->batch + 1;
      registry.release_memory();  // the pages this batch touched; the next batch reads its own
      rb->reservation = RunBatch::Reserved{reserved->batch, reserved->reserved, reserved->reserved * info.values_per_card};
      nlohmann::ordered_json audit_details = {{"registry", fs::absolute(options.registry_path).string()},
                                              {"reservation_id", reservation_id},
                                              {"batch", reserved->batch},
                                              {"counters", reserved->reserved * info.values_per_card},
                                              {"rejected", lookups.size() - reserved->reserved}};
      // A batch committed before the kill may or may not have its entry: a duplicate says
      // less than a missing one.
      if (recovered) audit_details["recovered"] = true;
      if (auto a = audit.reserve(std::move(audit_details)); !a) {
        state.fail(std::move(a).error());
        return rb;
      }
      std::size_t n = 0;
      for (std::uint32_t s = 0; s < rb->assembled.segments.size(); ++s) {
        const ImportSegmentWork& seg = rb->assembled.segments[s];
        for (std::uint32_t c = 0; c < seg.cards.size(); ++c, ++n) {
          const formats::CardReservation& r = reserved->cards[n];
          const auto [record, offset] = seg.card_records[c];
          if (!r.ok) {
            rb->rejects.push_back(Reject{record, offset, seg.cards[c].card_id, prep.se.attribute, "registry",
                                         r.reject_reason, ""});
            ++rb->prep_rejects;
            continue;
          }
          if (prep_pool) {  // the worker reads the SE's row (by its key for a take-back without one)
            RunCard card;
            card.segment = s;
            card.index = c;
            card.record = record;
            card.offset = offset;
            card.se_row = r.se_row;
            if (r.se_row == 0) card.se_key = lookups[n].key;
            card.counter = r.counter;
            rb->planned.push_back(std::move(card));
            continue;
          }
          Result<formats::SeRecord> se = Error(ErrorCode::kNotFound, "SE");
          if (r.se) {
            se = *r.se;  // as the reservation read it
          } else if (r.se_row != 0) {
            se = registry.get_row(r.se_row);
          } else if (auto found = registry.find(lookups[n]); !found) {
            se = std::move(found).error();
          } else if (*found) {
            se = std::move(**found);
          } else {
            se = Error(ErrorCode::kIntegrity, "SE registry " + options.registry_path + ": SE '" + lookups[n].key +
                                                  "' of reservation " + std::to_string(reservation_id) + " is gone");
          }
          if (!se) {
            state.fail(std::move(se).error());
            return rb;
          }
          RunCard card;
          card.segment = s;
          card.index = c;
          card.record = record;
          card.offset = offset;
          card.se = std::move(*se);
          card.counter = r.counter;
          rb->planned.push_back(std::move(card));
        }
      }
      // Prep workers decrypt the sealed segments themselves: the clear cards go now (wiped).
      if (prep_pool) rb->assembled.segments.clear();
      return rb;
    });

    // Parallel: each card's keys, session and wrapped script; the batch's cards as one
    // batch (in key-handling="host" the HSM derives all their keys in a few calls).
    function_node<RunBatchPtr, RunBatchPtr> prepare(g, unlimited, [&](RunBatchPtr rb) {
      if (!state.failed() && !rb->planned.empty() && prep_pool) {
        if (auto s = prepare_in_workers(*rb); !s) state.fail(std::move(s).error());
      } else if (!state.failed() && !rb->planned.empty()) {
        std::vector<const formats::XofCard*> cards;
        std::vector<formats::SeRecord> ses;
        std::vector<std::uint32_t> counters;
        cards.reserve(rb->planned.size());
        ses.reserve(rb->planned.size());
        counters.reserve(rb->planned.size());
        for (RunCard& p : rb->planned) {
          cards.push_back(&rb->assembled.segments[p.segment].cards[p.index]);
          ses.push_back(std::move(p.se));
          counters.push_back(p.counter);
        }
        auto results = preparer.prepare_batch(cards, ses, counters);
        for (std::size_t c = 0; c < results.size(); ++c) {
          const RunCard& p = rb->planned[c];
          auto& prepared = results[c];
          if (prepared) {
            for (const auto& s : prepared->sessions) rb->apdus += s.apdus.size();
            rb->done.push_back(std::move(*prepared));
          } else if (prepared.error().code() == ErrorCode::kInvalidArgument ||
                     prepared.error().code() == ErrorCode::kParse) {
            rb->rejects.push_back(Reject{p.record, p.offset, cards[c]->card_id, "", "prep",
                                         prepared.error().message() + " (counter " + std::to_string(p.counter) +
                                             " burnt)",
                                         ""});
            ++rb->prep_rejects;
          } else {
            state.fail(with_context(prepared.error(), "card " + cards[c]->card_id));
            break;
          }
        }
      }
      rb->assembled.segments.clear();  // the clear values go (SecureBytes wipe them)
      rb->planned.clear();
      return rb;
    });
    sequencer_node<RunBatchPtr> prepared_in_order(g, [](const RunBatchPtr& rb) { return rb->seq; });

    // Serial, in order: rejects, bundle segments of segment-cards prepared cards, and the
    // journal: every batch that completed XOF segments spools them, the bundle segments
    // completed with them and its prepared cards not yet in one, then one fsynced record.
    function_node<RunBatchPtr, continue_msg> publish(g, serial, [&](RunBatchPtr rb) {
      if (state.failed()) return continue_msg();
      auto fail = [&](Error e) {
        state.fail(std::move(e));
        return continue_msg();
      };
      std::stable_sort(rb->rejects.begin(), rb->rejects.end(),
                       [](const Reject& a, const Reject& b) { return a.offset < b.offset; });
      for (const Reject& r : rb->rejects) {
        if (auto s = rejects.add(r); !s) return fail(std::move(s).error());
      }
      result.imported += rb->encoded.cards;
      result.xof_segments += static_cast<std::uint32_t>(rb->encoded.segments.size());
      result.import_rejects += rb->import_rejects;
      result.records += rb->import_record_rejects;
      result.prep_rejects += rb->prep_rejects;
      if (rb->reservation) {
        ++result.reservation_batches;
        result.counters_reserved += rb->reservation->counters;
      }
      unjournaled.insert(unjournaled.end(), rb->rejects.begin(), rb->rejects.end());
      unjournaled_import += rb->import_rejects;
      unjournaled_import_records += rb->import_record_rejects;

      nlohmann::ordered_json record = {{"record", "batch"}, {"seq", rb->seq}};
      nlohmann::ordered_json xof_json = nlohmann::ordered_json::array();
      nlohmann::ordered_json bundle_json = nlohmann::ordered_json::array();
      const bool journal_it = !rb->encoded.segments.empty() || rb->last;
      if (journal_it) {
        for (std::size_t i = 0; i < rb->encoded.segments.size(); ++i) {
          const formats::EncodedSegment& seg = rb->encoded.segments[i];
          auto piece = spool_piece(journal, seg.bytes);
          if (!piece) return fail(std::move(piece).error());
          nlohmann::ordered_json j = {{"number", seg.segment_number}, {"cards", seg.card_count}};
          j.update(piece_json(*piece));
          j["last_record"] = rb->encoded.segment_last_records[i].first;
          j["last_offset"] = rb->encoded.segment_last_records[i].second;
          xof_json.push_back(std::move(j));
        }
      }
      rb->encoded.segments.clear();
      auto flush = [&]() -> Status {
        PF_ASSIGN_OR_RETURN(formats::BundleEncodedSegment enc,
                            formats::encode_bundle_segment(bh, next_bundle_segment, pending));
        PF_ASSIGN_OR_RETURN(SpoolPiece piece, spool_piece(journal, spooled_segment(enc)));
        nlohmann::ordered_json j = {{"number", next_bundle_segment}, {"cards", enc.card_count}};
        j.update(piece_json(piece));
        bundle_json.push_back(std::move(j));
        bundle_segments.push_back(std::move(piece));
        ++next_bundle_segment;
        pending.clear();
        pending_spooled = 0;
        return ok_status();
      };
      for (auto& card : rb->done) {
        pending.push_back(std::move(card));
        if (pending.size() == bh.segment_cards) {
          if (auto s = flush(); !s) return fail(std::move(s).error());
        }
      }
      if (rb->last && !pending.empty()) {
        if (auto s = flush(); !s) return fail(std::move(s).error());
      }
      result.prepared += rb->done.size();
      result.apdus += rb->apdus;
      progress.update(result.prepared, source->bytes_consumed(), source->summary().envelope_bytes);
      if (!journal_it) return continue_msg();

      nlohmann::ordered_json carry = nullptr;
      if (pending.size() > pending_spooled) {
        auto enc = formats::encode_bundle_segment(
            carry_header, next_bundle_segment,
            std::span<const formats::BundleCard>(pending).subspan(pending_spooled));
        if (!enc) return fail(std::move(enc).error());
        auto piece = spool_piece(journal, enc->bytes);
        if (!piece) return fail(std::move(piece).error());
        carry = piece_json(*piece);
        carry["cards"] = pending.size() - pending_spooled;
        pending_spooled = pending.size();
      }
      if (auto s = journal.sync_spool(); !s) return fail(std::move(s).error());
      // The rejects of records up to the last card of the batch's last XOF segment (a
      // resume skips those records); those after it are import rejects, the suffix of
      // this batch's list: they wait for the next record (a resume finds them again).
      std::size_t journaled = unjournaled.size();
      if (!rb->last && !xof_json.empty()) {
        const std::uint64_t through = xof_json.back()["last_offset"].get<std::uint64_t>();
        while (journaled > 0 && unjournaled[journaled - 1].offset > through) --journaled;
      }
      std::uint64_t kept_import = 0, kept_records = 0;
      for (std::size_t i = journaled; i < unjournaled.size(); ++i) {
        ++kept_import;
        kept_records += unjournaled[i].record != 0;
      }
      nlohmann::ordered_json rejects_json = nlohmann::ordered_json::array();
      for (std::size_t i = 0; i < journaled; ++i) rejects_json.push_back(reject_to_json(unjournaled[i]));
      record["last"] = rb->last;
      record["xof"] = std::move(xof_json);
      record["rejects"] = std::move(rejects_json);
      record["import_rejects"] = unjournaled_import - kept_import;
      record["import_record_rejects"] = unjournaled_import_records - kept_records;
      record["prep_rejects"] = rb->prep_rejects;
      record["reservation"] = rb->reservation ? nlohmann::ordered_json{{"batch", rb->reservation->batch},
                                                                         {"cards", rb->reservation->cards},
                                                                         {"counters", rb->reservation->counters}}
                                              : nlohmann::ordered_json(nullptr);
      record["bundle"] = std::move(bundle_json);
      record["carry"] = std::move(carry);
      record["prepared"] = rb->done.size();
      record["apdus"] = rb->apdus;
      if (auto s = journal.append(std::move(record)); !s) return fail(std::move(s).error());
      unjournaled.erase(unjournaled.begin(), unjournaled.begin() + static_cast<std::ptrdiff_t>(journaled));
      unjournaled_import = kept_import;
      unjournaled_import_records = kept_records;
      crash_point_after_segment(++batch_records_written);
      return continue_msg();
    });

    make_edge(read, limit);
    make_edge(limit, parse);
    make_edge(parse, parsed_in_order);
    make_edge(parsed_in_order, assemble);
    make_edge(assemble, encode);
    make_edge(encode, encoded_in_order);
    make_edge(encoded_in_order, write_and_reserve);
    make_edge(write_and_reserve, prepare);
    make_edge(prepare, prepared_in_order);
    make_edge(prepared_in_order, publish);
    make_edge(publish, limit.decrementer());
    read.activate();
    g.wait_for_all();
  };
  if (!was_complete && (import_pool || prep_pool)) {
    // With workers, a thread waits for each batch in a worker: the hardware threads plus
    // one per worker keep every worker fed and the other stages going.
    const std::size_t threads = std::max(1u, std::thread::hardware_concurrency()) + result.import_workers +
                                result.prep_workers;
    tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism, threads);
    tbb::task_arena arena(static_cast<int>(threads));
    arena.execute(run_graph);
  } else if (!was_complete) {
    run_graph();
  }
  if (state.failed()) return burn(*state.error());
  std::uint64_t workers_started_import = 0, workers_started_prep = 0, worker_retries = 0;
  if (import_pool) {
    workers_started_import = import_pool->processes_started();
    if (auto s = import_pool->stop(); !s) return burn(s.error());
  }
  if (prep_pool) {
    workers_started_prep = prep_pool->processes_started();
    worker_retries = prep_pool->retries();
    if (auto s = prep_pool->stop(); !s) return burn(s.error());
  }

  result.records += result.imported;
  result.rejects = rejects.count();
  result.rejects_by_category = rejects.by_category();
  result.counters_burnt = result.counters_reserved - result.prepared * info.values_per_card;
  if (options.max_rejects && options.max_rejects->exceeded(result.rejects, result.records)) {
    if (auto s = rejects.commit(); !s) return burn(s.error());
    return burn(Error(ErrorCode::kRejectLimit,
                      options.input_path + ": " + std::to_string(result.rejects) + " of " +
                          std::to_string(result.records) + " records rejected (" +
                          std::to_string(result.import_rejects) + " by the import, " +
                          std::to_string(result.prep_rejects) + " by prep), more than --max-rejects " +
                          options.max_rejects->to_string() +
                          " allows; neither XOF nor bundle was published (rejects: " + result.rejects_path + ")"));
  }

  // Publication: the XOF, then the bundle that names its digest, then the reject report.
  if (auto s = xof.finish(*import_keys.integrity, result.imported, result.import_rejects); !s) {
    return burn(s.error());
  }
  // Published: an error from here on leaves the run resumable (the resume publishes the
  // same outputs again and finishes the bookkeeping).
  jc.failure_ends_run = false;
  PF_ASSIGN_OR_RETURN(result.xof_sha256, sha256_file_hex(result.xof_path));
  const std::string xof_kept = " (the XOF " + result.xof_path + " is published and complete: `persoflow prep` can "
                               "start from it, or `persoflow run --resume " + journal.dir() + "` finish the run)";
  bh.xof_sha256 = from_hex(result.xof_sha256).value();
  auto bundle = formats::BundleWriter::create(result.bundle_path, bh);
  if (!bundle) return with_context(bundle.error(), "bundle" + xof_kept);
  for (const SpoolPiece& piece : bundle_segments) {
    auto bytes = journal.read_spool(piece.offset, piece.length, piece.sha256);
    if (!bytes) return with_context(bytes.error(), "bundle" + xof_kept);
    auto seg = segment_from_spool(*bytes, journal.spool_path());
    if (!seg) return with_context(seg.error(), "bundle" + xof_kept);
    if (auto s = bundle->append(*seg); !s) return with_context(s.error(), "bundle" + xof_kept);
  }
  auto bundle_digest = bundle->finish(*k.integrity);
  if (!bundle_digest) return with_context(bundle_digest.error(), "bundle" + xof_kept);
  result.bundle_sha256 = to_hex(*bundle_digest);
  PF_TRY(registry.mark_published(result.reservation_id, result.bundle_sha256));
  PF_TRY(rejects.commit());
  PF_TRY(journal.append({{"record", "published"}, {"xof_sha256", result.xof_sha256}, {"bundle_sha256", result.bundle_sha256}}));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const EnvelopeSummary& env = source->summary();
  nlohmann::ordered_json report;
  report["command"] = "run";
  report["status"] = "ok";
  report["run_id"] = info.run_id;
  report["operator"] = info.operator_name;
  report["profile"] = {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)},
                       {"product", prep.product}};
  report["key_handling"] = key_handling_report(prep, &k);
  report["input"] = {{"path", options.input_path},
                     {"sha256", to_hex(source_digest)},
                     {"bytes", env.envelope_bytes},
                     {"envelope", env.kind},
                     {"cipher", env.cipher},
                     {"kek_id", to_hex(env.kek_id)},
                     {"transport_key", env.transport_key_uri},
                     {"registry", options.registry_path}};
  report["reservation"] = {{"id", result.reservation_id},
                           {"batches", result.reservation_batches},
                           {"counters_reserved", result.counters_reserved},
                           {"counters_burnt", result.counters_burnt}};
  report["output"] = {
      {"xof", {{"path", result.xof_path}, {"sha256", result.xof_sha256}, {"segments", result.xof_segments},
               {"cards", result.imported}}},
      {"bundle", {{"path", result.bundle_path}, {"sha256", result.bundle_sha256}, {"cards", result.prepared},
                  {"apdus", result.apdus}}}};
  report["rejects"] = {{"count", result.rejects},
                       {"import", result.import_rejects},
                       {"prep", result.prep_rejects},
                       {"by_category", result.rejects_by_category},
                       {"path", result.rejects_path}};
  report["records"] = result.records;
  report["hsm_retries"] = preparer.retries() + source->hsm_retries() + worker_retries + translator.retries() +
                          encoder.retries();
  report["workers"] = {
      {"import", {{"processes", result.import_workers}, {"started", workers_started_import}}},
      {"prep", {{"processes", result.prep_workers}, {"started", workers_started_prep}}},
      {"recycle_cards", result.import_workers + result.prep_workers > 0
                            ? nlohmann::ordered_json(options.worker_recycle_cards)
                            : nlohmann::ordered_json(nullptr)}};
  report["run_dir"] = journal.dir();
  report["resumed"] = jc.resuming;
  report["seconds"] = result.seconds;
  report["cards_per_second"] = result.seconds > 0 ? static_cast<double>(result.prepared) / result.seconds : 0.0;
  result.report_json = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (auto a = audit.finish({{"outputs", {{{"kind", "xof"}, {"path", fs::absolute(result.xof_path).string()},
                                           {"sha256", result.xof_sha256}},
                                          {{"kind", "bundle"}, {"path", fs::absolute(result.bundle_path).string()},
                                           {"sha256", result.bundle_sha256}}}},
                             {"reservation", {{"id", result.reservation_id}, {"state", "published"},
                                              {"counters", result.counters_reserved},
                                              {"burnt", result.counters_burnt}}},
                             {"records", result.records},
                             {"cards", result.prepared},
                             {"rejects", result.rejects}});
      !a) {
    return with_context(a.error(), "the XOF and the bundle are published, but the audit log did not record the run's end");
  }
  return result;
}

}  // namespace

}  // namespace persoflow::pipeline
