#include "pipeline/import_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "formats/xof_writer.h"
#include "pipeline/import_graph.h"
#include "pipeline/prep_stages.h"
#include "pipeline/progress.h"
#include "pipeline/run_audit.h"

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

Result<ImportResult> run_import_body(const ImportOptions& options, hsm::KeyStore& keys, RunAudit& audit);

}  // namespace

Result<ImportResult> run_import(const ImportOptions& options, hsm::KeyStore& keys) {
  RunAudit audit(options.audit_log, "import", default_run_id("import"));
  auto r = run_import_body(options, keys, audit);
  if (!r) return audit.fail(std::move(r).error());
  return r;
}

namespace {

Result<ImportResult> run_import_body(const ImportOptions& options, hsm::KeyStore& keys, RunAudit& audit) {
  const auto started = std::chrono::steady_clock::now();
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  PF_ASSIGN_OR_RETURN(ImportKeys import_keys, ImportKeys::resolve(profile, keys));

  std::vector<Bytes> class_kcvs;
  for (auto* k : import_keys.class_key_ptrs) {
    PF_ASSIGN_OR_RETURN(Bytes kcv, k->kcv());
    class_kcvs.push_back(std::move(kcv));
  }
  PF_ASSIGN_OR_RETURN(Bytes integrity_kcv, import_keys.integrity->kcv());

  PF_ASSIGN_OR_RETURN(auto source, EnvelopeSource::open(options.input_path, profile, keys, options.batch_records));
  const auto& digest = source->source_sha256();
  PF_ASSIGN_OR_RETURN(formats::XofHeader header,
                      formats::make_xof_header(profile, Bytes(digest.begin(), digest.end()), class_kcvs,
                                               integrity_kcv, options.zstd_level));
  if (audit.enabled()) {
    const nlohmann::ordered_json keys_used = import_keys_audit(keys, source->summary().transport_key_uri, header,
                                                               class_kcvs, profile.integrity_key_uri, integrity_kcv);
    PF_TRY(audit.start({{"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
                        {"input", {{"path", std::filesystem::absolute(options.input_path).string()},
                                   {"sha256", to_hex(digest)}}},
                        {"keys", keys_used}}));
  }
  PF_ASSIGN_OR_RETURN(formats::XofWriter writer, formats::XofWriter::create(options.output_path, header));
  PF_ASSIGN_OR_RETURN(RejectReport rejects, RejectReport::create(options.rejects_path));

  RunState state;
  RecordParser parser(profile, keys, import_keys, state);
  SegmentAssembler assembler(profile.segment_cards);
  SegmentEncoder encoder(writer.header(), import_keys, state);
  ImportResult result;
  ProgressLine progress("import");
  auto sink = [&](EncodedBatch&& batch) {
    for (const Reject& r : batch.rejects) {
      if (auto s = rejects.add(r); !s) state.fail(std::move(s).error());
    }
    result.cards += batch.cards;
    progress.update(result.cards, source->bytes_consumed(), source->summary().envelope_bytes);
    if (state.failed()) return;
    for (const auto& seg : batch.segments) {
      if (auto s = writer.append(seg); !s) {
        state.fail(std::move(s).error());
        return;
      }
      ++result.segments;
    }
  };
  const std::size_t in_flight = options.max_batches_in_flight != 0
                                    ? options.max_batches_in_flight
                                    : 4 * std::max(1u, std::thread::hardware_concurrency());
  run_import_graph(*source, parser, assembler, encoder, sink, state, in_flight);
  if (state.failed()) return *state.error();

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
  report["output"] = {{"path", options.output_path}, {"segments", result.segments}, {"cards", result.cards}};
  report["rejects"] = {{"count", result.rejects},
                       {"by_category", result.rejects_by_category},
                       {"path", options.rejects_path.empty() ? nlohmann::ordered_json(nullptr)
                                                             : nlohmann::ordered_json(options.rejects_path)}};
  report["records"] = result.records;
  report["seconds"] = result.seconds;
  report["cards_per_second"] = result.seconds > 0 ? static_cast<double>(result.cards) / result.seconds : 0.0;
  result.report_json = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (audit.enabled()) {
    PF_ASSIGN_OR_RETURN(const std::string xof_digest, sha256_file_hex(options.output_path));
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
