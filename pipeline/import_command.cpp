#include "pipeline/import_command.h"

#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "pipeline/import_workers.h"
#include "formats/sha256_digest.h"
#include "formats/xof_writer.h"
#include "pipeline/import_graph.h"
#include "pipeline/prep_stages.h"
#include "pipeline/progress.h"
#include "pipeline/run_audit.h"
#include "pipeline/run_journal.h"

namespace persoflow::pipeline {

Result<RejectLimit> RejectLimit::parse(const std::string& text) {
  RejectLimit limit;
  std::string number = text;
  if (!number.empty() && number.back() == '%') {
    limit.percent = true;
    number.pop_back();
  }
  // Digits, and for a percentage at most one decimal point: no signs, spaces or exponents.
  const std::size_t dots = static_cast<std::size_t>(std::count(number.begin(), number.end(), '.'));
  const bool shape_ok = !number.empty() && number.find_first_not_of("0123456789.") == std::string::npos &&
                        number.front() != '.' && number.back() != '.' && (limit.percent ? dots <= 1 : dots == 0);
  char* end = nullptr;
  const double v = shape_ok ? std::strtod(number.c_str(), &end) : -1;
  if (!shape_ok || end == nullptr || *end != '\0' || !std::isfinite(v) || v < 0 || (limit.percent && v > 100)) {
    return Error(ErrorCode::kInvalidArgument,
                 "--max-rejects takes a whole number of records (e.g. 10) or a percentage (e.g. 0.5%), not '" +
                     text + "'");
  }
  limit.value = v;
  return limit;
}

bool RejectLimit::exceeded(std::uint64_t rejects, std::uint64_t records) const {
  if (!percent) return static_cast<double>(rejects) > value;
  if (records == 0) return false;
  return 100.0 * static_cast<double>(rejects) / static_cast<double>(records) > value;
}

std::string RejectLimit::to_string() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, percent ? "%g%%" : "%.0f", value);
  return buf;
}

namespace {

// The journal of an import (docs/formats/journal.md), shared by run_import and its body.
// The options of a journaled import (its `started` record), refusing a run that has
// nothing left to resume. The process moves to the directory the run started in.
Result<ImportOptions> options_from_journal(const RunJournal& j, const ImportOptions& given, std::string& run_id) {
  const std::string where = j.journal_path();
  const nlohmann::json& s = j.records().front();
  if (s.value("record", std::string()) != "started" || s.value("command", std::string()) != "import") {
    return Error(ErrorCode::kIntegrity, where + ": record 1: not the start of an import run");
  }
  run_id = s.value("run_id", std::string("?"));
  if (j.last("finished") != nullptr) {
    return Error(ErrorCode::kAlreadyExists, j.dir() + ": import run '" + run_id + "' already finished (XOF " +
                                                s.value("output", std::string("?")) + "): there is nothing to resume");
  }
  if (const nlohmann::json* f = j.last("failed")) {
    return Error(ErrorCode::kInvalidArgument, j.dir() + ": import run '" + run_id + "' failed (" +
                                                  f->value("error", std::string("?")) +
                                                  "); a failed run cannot be resumed: run import again");
  }
  ImportOptions o;
  try {
    o.profile_path = s.at("profile").at("path").get<std::string>();
    o.input_path = s.at("input").at("path").get<std::string>();
    o.output_path = s.at("output").get<std::string>();
    o.rejects_path = s.at("rejects").get<std::string>();
    o.report_path = s.at("report").get<std::string>();
    if (!s.at("max_rejects").is_null()) {
      PF_ASSIGN_OR_RETURN(o.max_rejects, RejectLimit::parse(s.at("max_rejects").get<std::string>()));
    }
    o.batch_records = s.at("batch_records").get<std::size_t>();
    o.zstd_level = s.at("zstd_level").get<int>();
    const std::string cwd = s.at("cwd").get<std::string>();
    std::error_code ec;
    std::filesystem::current_path(cwd, ec);
    if (ec) {
      return Error(ErrorCode::kNotFound, where + ": the run started in " + cwd + ", which cannot be entered: " + ec.message());
    }
  } catch (const nlohmann::json::exception&) {
    return Error(ErrorCode::kIntegrity, where + ": record 1: a malformed start record");
  }
  if (o.batch_records == 0) return Error(ErrorCode::kIntegrity, where + ": record 1: batch_records is 0");
  o.max_batches_in_flight = given.max_batches_in_flight;
  o.audit_log = given.audit_log;
  o.run_dir = j.dir();
  o.resume_dir = j.dir();
  return o;
}

Result<ImportResult> run_import_body(const ImportOptions& options, hsm::KeyStore& keys, RunAudit& audit,
                                     JournaledRun& jc, const std::string& run_id);

}  // namespace

Result<ImportResult> run_import(const ImportOptions& given, hsm::KeyStore& keys) {
  ImportOptions options = given;
  JournaledRun jc;
  std::string run_id;
  if (!given.resume_dir.empty()) {
    PF_ASSIGN_OR_RETURN(RunJournal journal, RunJournal::open(given.resume_dir));
    PF_ASSIGN_OR_RETURN(options, options_from_journal(journal, given, run_id));
    jc.journal.emplace(std::move(journal));
    jc.resuming = true;
  } else {
    run_id = default_run_id("import");
    if (options.run_dir.empty()) options.run_dir = options.output_path + ".run";
  }
  RunAudit audit(options.audit_log, "import", run_id);
  auto r = run_import_body(options, keys, audit, jc, run_id);
  if (!r) {
    Error e = std::move(r).error();
    jc.record_failure(e, "import", /*has_reservation=*/false);
    return audit.fail(std::move(e));
  }
  r->output_path = options.output_path;
  r->report_path = options.report_path;
  r->run_dir = jc.journal ? jc.journal->dir() : options.run_dir;
  return r;
}

namespace {

Result<ImportResult> run_import_body(const ImportOptions& options, hsm::KeyStore& keys, RunAudit& audit,
                                     JournaledRun& jc, const std::string& run_id) {
  const auto started = std::chrono::steady_clock::now();
  // --resume: only over the inputs the run started with.
  std::optional<nlohmann::json> started_record;
  if (jc.resuming) started_record = jc.journal->records().front();
  auto changed = [&](const std::string& path, const char* what, const std::string& now, const std::string& then) {
    return Error(ErrorCode::kIntegrity, path + ": the " + what + " changed since import run '" + run_id +
                                            "' started (SHA-256 " + now + ", the journal has " + then +
                                            "): a run is resumed only over the inputs it started with");
  };
  if (started_record) {
    PF_ASSIGN_OR_RETURN(const std::string now, sha256_file_hex(options.input_path));
    const std::string then = (*started_record)["input"].value("sha256", std::string());
    if (now != then) return changed(options.input_path, "issuer file", now, then);
  }
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  if (started_record) {
    const std::string then = (*started_record)["profile"].value("sha256", std::string());
    if (to_hex(profile.sha256) != then) return changed(options.profile_path, "profile", to_hex(profile.sha256), then);
  }
  PF_ASSIGN_OR_RETURN(ImportKeys import_keys, ImportKeys::resolve(profile, keys));

  std::vector<Bytes> class_kcvs;
  for (auto* k : import_keys.class_key_ptrs) {
    PF_ASSIGN_OR_RETURN(Bytes kcv, k->kcv());
    class_kcvs.push_back(std::move(kcv));
  }
  PF_ASSIGN_OR_RETURN(Bytes integrity_kcv, import_keys.integrity->kcv());

  PF_ASSIGN_OR_RETURN(auto source, EnvelopeSource::open(options.input_path, profile, keys, options.batch_records));
  const auto& digest = source->source_sha256();
  if (started_record && to_hex(digest) != (*started_record)["input"].value("sha256", std::string())) {
    return changed(options.input_path, "issuer file", to_hex(digest), (*started_record)["input"].value("sha256", std::string()));
  }
  PF_ASSIGN_OR_RETURN(formats::XofHeader header,
                      formats::make_xof_header(profile, Bytes(digest.begin(), digest.end()), class_kcvs,
                                               integrity_kcv, options.zstd_level));
  nlohmann::ordered_json start_details = {
      {"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
      {"input", {{"path", std::filesystem::absolute(options.input_path).string()}, {"sha256", to_hex(digest)}}}};
  if (audit.enabled()) {
    start_details["keys"] = import_keys_audit(keys, source->summary().transport_key_uri, header, class_kcvs,
                                              profile.integrity_key_uri, integrity_kcv);
  }
  if (audit.enabled() && !jc.resuming) {
    PF_TRY(audit.start(std::move(start_details)));
  } else if (audit.enabled()) {
    start_details["run_dir"] = jc.journal->dir();
    start_details["segments_journaled"] = jc.journal->all("segment").size();
    PF_TRY(audit.resume(std::move(start_details)));
  }
  PF_ASSIGN_OR_RETURN(formats::XofWriter writer, formats::XofWriter::create(options.output_path, header));
  PF_ASSIGN_OR_RETURN(RejectReport rejects, RejectReport::create(options.rejects_path));

  if (!jc.resuming) {
    // The journal, once the outputs' temporary files exist (a run with no intact record
    // is started again, not resumed).
    PF_ASSIGN_OR_RETURN(RunJournal created, RunJournal::create(options.run_dir, kXofSpoolFileName));
    jc.journal.emplace(std::move(created));
    jc.failure_ends_run = true;
    std::error_code ec;
    const std::string cwd = std::filesystem::current_path(ec).string();
    PF_TRY(jc.journal->append({{"record", "started"},
                               {"format", 1},
                               {"command", "import"},
                               {"run_id", run_id},
                               {"cwd", cwd},
                               {"profile", {{"path", options.profile_path}, {"sha256", to_hex(profile.sha256)}}},
                               {"input", {{"path", options.input_path}, {"sha256", to_hex(digest)}}},
                               {"output", options.output_path},
                               {"rejects", options.rejects_path},
                               {"report", options.report_path},
                               {"max_rejects", options.max_rejects ? nlohmann::ordered_json(options.max_rejects->to_string())
                                                                   : nlohmann::ordered_json(nullptr)},
                               {"batch_records", options.batch_records},
                               {"zstd_level", options.zstd_level}}));
  }
  RunJournal& journal = *jc.journal;

  ImportResult result;
  RunState state;
  // The field-encrypted values: translated in worker processes or in this one.
  const std::size_t workers =
      options.workers ? *options.workers
                      : (options.hsm ? default_import_workers(*options.hsm, profile, source->summary().envelope_bytes) : 0);
  if (workers > 0 && !options.hsm) {
    return Error(ErrorCode::kInvalidArgument, "--workers: import workers need the HSM settings to start with");
  }
  // Started only when there are records left to parse (a resume of a complete run starts none).
  const bool complete = jc.resuming && jc.journal->last("complete") != nullptr;
  std::unique_ptr<ImportWorkerPool> pool;
  if (workers > 0 && !complete) {
    PF_ASSIGN_OR_RETURN(pool, ImportWorkerPool::start(*options.hsm, options.profile_path, profile, workers,
                                                      options.worker_recycle_cards));
  }
  HsmFieldTranslator in_process(keys, import_keys);
  const FieldTranslator& translator = pool ? static_cast<const FieldTranslator&>(*pool) : in_process;
  result.workers = pool ? workers : 0;
  RecordParser parser(profile, translator, state);
  // The ids seen spill next to the XOF's temporary file (the room the operator gave).
  SegmentAssembler assembler(profile.segment_cards,
                             std::filesystem::path(writer.temp_path()).parent_path().string(), state);

  // --resume: the journaled segments go into the XOF from the spool, with the rejects
  // journaled before them; their records are skipped when the issuer file is read again.
  // An error here leaves the run resumable.
  std::uint64_t spool_end = 0;
  std::uint32_t next_segment = 0;
  auto replay_rejects = [&](const nlohmann::json& record) -> Status {
    for (const auto& j : record.value("rejects", nlohmann::json::array())) {
      PF_ASSIGN_OR_RETURN(Reject r, reject_from_json(j, journal.journal_path()));
      PF_TRY(rejects.add(r));
    }
    return ok_status();
  };
  const std::string bad_journal = journal.journal_path() + ": the journaled segments do not follow each other";
  std::vector<std::string> ids;
  std::optional<std::uint64_t> skip_through;
  for (const nlohmann::json* seg : journal.all("segment")) {
    const auto number = seg->value("number", std::uint32_t{0});
    const auto offset = seg->value("offset", std::uint64_t{0});
    const auto length = seg->value("length", std::uint64_t{0});
    const auto cards = seg->value("cards", std::uint32_t{0});
    const auto last_offset = seg->value("last_offset", std::uint64_t{0});
    if (number != next_segment || offset != spool_end || (skip_through && last_offset <= *skip_through)) {
      return Error(ErrorCode::kIntegrity, bad_journal + " (segment " + std::to_string(number) + ")");
    }
    PF_ASSIGN_OR_RETURN(Bytes bytes, journal.read_spool(offset, length, seg->value("sha256", std::string())));
    PF_ASSIGN_OR_RETURN(formats::XofSegment parsed,
                        formats::parse_xof_segment(header, bytes, offset, number, journal.spool_path()));
    if (parsed.card_ids.size() != cards) return Error(ErrorCode::kIntegrity, bad_journal + " (segment " + std::to_string(number) + ")");
    ids.insert(ids.end(), parsed.card_ids.begin(), parsed.card_ids.end());
    PF_TRY(replay_rejects(*seg));
    PF_TRY(writer.append(formats::EncodedSegment{number, cards, std::move(bytes)}));
    result.cards += cards;
    ++result.segments;
    skip_through = last_offset;
    spool_end = offset + length;
    ++next_segment;
  }
  const bool was_complete = journal.last("complete") != nullptr;
  if (was_complete) PF_TRY(replay_rejects(*journal.last("complete")));
  if (jc.resuming) {
    PF_TRY(journal.cut_spool(spool_end));
    jc.failure_ends_run = true;
  }

  std::uint64_t sealing_retries = 0;  // segments sealed again after a transient HSM error
  if (!was_complete) {
    if (skip_through) parser.skip_through(*skip_through);
    PF_TRY(assembler.resume(next_segment, ids));
    ids.clear();
    SegmentEncoder encoder(writer.header(), import_keys, state);
    ProgressLine progress("import");
    // Rejects added to the report but not yet journaled, in report (stream) order.
    std::vector<Reject> unjournaled;
    std::uint64_t segment_records = next_segment;
    auto sink = [&](EncodedBatch&& batch) {
      for (const Reject& r : batch.rejects) {
        if (auto s = rejects.add(r); !s) state.fail(std::move(s).error());
        unjournaled.push_back(r);
      }
      result.cards += batch.cards;
      progress.update(result.cards, source->bytes_consumed(), source->summary().envelope_bytes);
      if (state.failed()) return;
      for (std::size_t i = 0; i < batch.segments.size(); ++i) {
        const formats::EncodedSegment& seg = batch.segments[i];
        if (auto s = writer.append(seg); !s) {
          state.fail(std::move(s).error());
          return;
        }
        ++result.segments;
        // The segment into the spool (fsynced), then its record (fsynced), with the rejects
        // of the records before its last card: a resume skips every record up to there.
        const auto [last_record, last_offset] = batch.segment_last_records[i];
        auto at = journal.append_spool(seg.bytes);
        auto seg_digest = formats::sha256(seg.bytes);
        if (!at || !seg_digest) {
          state.fail(!at ? at.error() : seg_digest.error());
          return;
        }
        nlohmann::ordered_json journaled = nlohmann::ordered_json::array();
        std::size_t n = 0;
        while (n < unjournaled.size() && unjournaled[n].offset <= last_offset) journaled.push_back(reject_to_json(unjournaled[n++]));
        if (auto s = journal.append({{"record", "segment"},
                                     {"number", seg.segment_number},
                                     {"offset", *at},
                                     {"length", seg.bytes.size()},
                                     {"sha256", to_hex(Bytes(seg_digest->begin(), seg_digest->end()))},
                                     {"cards", seg.card_count},
                                     {"last_record", last_record},
                                     {"last_offset", last_offset},
                                     {"rejects", std::move(journaled)}});
            !s) {
          state.fail(std::move(s).error());
          return;
        }
        unjournaled.erase(unjournaled.begin(), unjournaled.begin() + static_cast<std::ptrdiff_t>(n));
        crash_point_after_segment(++segment_records);
      }
    };
    const std::size_t in_flight = options.max_batches_in_flight != 0
                                      ? options.max_batches_in_flight
                                      : 4 * std::max(1u, std::thread::hardware_concurrency());
    if (pool) {
      // With workers, a parser thread waits for its batch's values: the hardware threads
      // plus one per worker keep every worker fed and the other stages going.
      const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()) + workers);
      tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
      tbb::task_arena arena(threads);
      arena.execute([&] { run_import_graph(*source, parser, assembler, encoder, sink, state, in_flight); });
    } else {
      run_import_graph(*source, parser, assembler, encoder, sink, state, in_flight);
    }
    if (state.failed()) return *state.error();
    sealing_retries = encoder.retries();
    if (pool) {
      result.worker_processes_started = pool->processes_started();
      PF_TRY(pool->stop());
    }
    // Every record is in a journaled segment or a reject: a resume from here only publishes.
    nlohmann::ordered_json rest = nlohmann::ordered_json::array();
    for (const Reject& r : unjournaled) rest.push_back(reject_to_json(r));
    PF_TRY(journal.append({{"record", "complete"}, {"cards", result.cards}, {"rejects", std::move(rest)}}));
  }

  result.rejects = rejects.count();
  result.rejects_by_category = rejects.by_category();
  // Problems between records (record number 0) are reported but are not records.
  result.records = result.cards + rejects.record_count();
  if (options.max_rejects && options.max_rejects->exceeded(result.rejects, result.records)) {
    // The XOF is not published; the reject report is, because it is what the operator
    // needs to see why.
    PF_TRY(rejects.commit());
    return Error(ErrorCode::kRejectLimit,
                 options.input_path + ": " + std::to_string(result.rejects) + " of " +
                     std::to_string(result.records) + " records rejected, more than --max-rejects " +
                     options.max_rejects->to_string() + " allows; no XOF was published" +
                     (options.rejects_path.empty() ? "" : " (rejects: " + options.rejects_path + ")"));
  }
  // The XOF first (the output that matters), then its reject report; each is fsynced and
  // renamed into place, so a reader sees either file whole or not at all.
  PF_TRY(writer.finish(*import_keys.integrity, result.cards, result.rejects));
  // Published: an error from here on leaves the run resumable (the resume writes the same
  // XOF again and finishes the bookkeeping).
  jc.failure_ends_run = false;
  PF_ASSIGN_OR_RETURN(const std::string xof_digest, sha256_file_hex(options.output_path));
  PF_TRY(journal.append({{"record", "published"}, {"sha256", xof_digest}}));
  PF_TRY(rejects.commit());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const EnvelopeSummary& env = source->summary();
  nlohmann::ordered_json report;
  report["command"] = "import";
  report["status"] = "ok";
  report["profile"] = {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}};
  report["input"] = {{"path", options.input_path},
                     {"sha256", to_hex(digest)},
                     {"bytes", env.envelope_bytes},
                     {"envelope", env.kind},
                     {"cipher", env.cipher},
                     {"kek_id", to_hex(env.kek_id)},
                     {"transport_key", env.transport_key_uri}};
  report["output"] = {{"path", options.output_path},
                      {"sha256", xof_digest},
                      {"segments", result.segments},
                      {"cards", result.cards}};
  report["rejects"] = {{"count", result.rejects},
                       {"by_category", result.rejects_by_category},
                       {"path", options.rejects_path.empty() ? nlohmann::ordered_json(nullptr)
                                                             : nlohmann::ordered_json(options.rejects_path)}};
  report["records"] = result.records;
  // This process's (and its workers') retries: the envelope's, the field translations', the
  // segments' sealing.
  report["hsm_retries"] = source->hsm_retries() + translator.retries() + sealing_retries;
  report["workers"] = {{"processes", result.workers},
                       {"started", result.worker_processes_started},
                       {"recycle_cards", result.workers > 0 ? nlohmann::ordered_json(options.worker_recycle_cards)
                                                            : nlohmann::ordered_json(nullptr)}};
  report["seconds"] = result.seconds;
  report["cards_per_second"] = result.seconds > 0 ? static_cast<double>(result.cards) / result.seconds : 0.0;
  result.report_json = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (audit.enabled()) {
    PF_TRY_CTX(audit.finish({{"outputs", {{{"kind", "xof"},
                                           {"path", std::filesystem::absolute(options.output_path).string()},
                                           {"sha256", xof_digest}}}},
                             {"records", result.records},
                             {"cards", result.cards},
                             {"rejects", result.rejects}}),
               "the XOF is published, but the audit log did not record the run's end");
  }
  return result;
}

}  // namespace

}  // namespace persoflow::pipeline
