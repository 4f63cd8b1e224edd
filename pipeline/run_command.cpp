#include "pipeline/run_command.h"

#include <fcntl.h>
#include <tbb/flow_graph.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/xof_writer.h"
#include "pipeline/import_stages.h"
#include "pipeline/prep_stages.h"
#include "pipeline/progress.h"
#include "pipeline/reject_report.h"
#include "pipeline/run_audit.h"

namespace persoflow::pipeline {
namespace {

namespace fs = std::filesystem;

// Encoded bundle segments, kept on disk until the XOF is finished: the bundle's header
// names the XOF's SHA-256, known only then. An unnamed file in the output directory
// (O_TMPFILE, or a name unlinked at once): it never outlives the process, whatever kills
// it. It holds what the bundle will hold, nothing more.
class SegmentSpool {
 public:
  static Result<SegmentSpool> create(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::string pattern = dir + "/.persoflow-run-spool-XXXXXX";
      fd = ::mkstemp(pattern.data());
      if (fd < 0) return Error(ErrorCode::kIo, "cannot create a spool file in " + dir + ": " + std::strerror(errno));
      ::unlink(pattern.c_str());
    }
    return SegmentSpool(fd, dir);
  }
  SegmentSpool(SegmentSpool&& o) noexcept : fd_(std::exchange(o.fd_, -1)), dir_(std::move(o.dir_)) {}
  SegmentSpool& operator=(SegmentSpool&&) = delete;
  SegmentSpool(const SegmentSpool&) = delete;
  SegmentSpool& operator=(const SegmentSpool&) = delete;
  ~SegmentSpool() {
    if (fd_ >= 0) ::close(fd_);
  }

  // u32 number, u32 card count, per card (u16 length, id), u64 length, the bytes.
  Status append(const formats::BundleEncodedSegment& s) {
    Bytes head;
    put(head, s.segment_number, 4);
    put(head, s.card_count, 4);
    for (const std::string& id : s.card_ids) {
      put(head, id.size(), 2);
      head.insert(head.end(), id.begin(), id.end());
    }
    put(head, s.bytes.size(), 8);
    PF_TRY(write_all(head));
    return write_all(s.bytes);
  }

  // Hands every segment back, in the order appended.
  Status replay(const std::function<Status(formats::BundleEncodedSegment&&)>& sink) {
    std::uint64_t at = 0;
    while (at < size_) {
      formats::BundleEncodedSegment s;
      Bytes fixed(8);
      PF_TRY(read_at(at, fixed));
      s.segment_number = static_cast<std::uint32_t>(get(fixed, 0, 4));
      s.card_count = static_cast<std::uint32_t>(get(fixed, 4, 4));
      for (std::uint32_t c = 0; c < s.card_count; ++c) {
        Bytes len(2);
        PF_TRY(read_at(at, len));
        std::string id(get(len, 0, 2), '\0');
        PF_TRY(read_at(at, {reinterpret_cast<std::uint8_t*>(id.data()), id.size()}));
        s.card_ids.push_back(std::move(id));
      }
      Bytes len(8);
      PF_TRY(read_at(at, len));
      s.bytes.resize(get(len, 0, 8));
      PF_TRY(read_at(at, s.bytes));
      PF_TRY(sink(std::move(s)));
    }
    return ok_status();
  }

 private:
  SegmentSpool(int fd, std::string dir) : fd_(fd), dir_(std::move(dir)) {}

  static void put(Bytes& out, std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  static std::uint64_t get(const Bytes& in, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | in[at + static_cast<std::size_t>(i)];
    return v;
  }
  Status write_all(std::span<const std::uint8_t> bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(size_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error(ErrorCode::kIo, "spool file in " + dir_ + ": write failed: " + std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
    size_ += bytes.size();
    return ok_status();
  }
  Status read_at(std::uint64_t& at, std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(at + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error(ErrorCode::kIo, "spool file in " + dir_ + ": read failed");
      done += static_cast<std::size_t>(n);
    }
    at += out.size();
    return ok_status();
  }

  int fd_ = -1;
  std::string dir_;
  std::uint64_t size_ = 0;
};

// A card of a finished XOF segment, with its counter (after the reservation).
struct RunCard {
  std::uint32_t segment = 0;  // index in RunBatch::assembled.segments
  std::uint32_t index = 0;    // within that segment
  std::uint64_t record = 0;
  std::uint64_t offset = 0;
  formats::SeRecord se;
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
};
using RunBatchPtr = std::shared_ptr<RunBatch>;

std::string default_name(const std::string& input) {
  std::string stem = fs::path(input).stem().string();
  return stem.empty() ? "run" : stem;
}

}  // namespace

Result<RunResult> run_full(const RunOptions& options, hsm::KeyStore& keys) {
  const auto started = std::chrono::steady_clock::now();
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  if (!profile.prep) {
    return Error(ErrorCode::kInvalidArgument, options.profile_path + ": the profile has no <prep> element");
  }
  const PrepSpec& prep = *profile.prep;

  RunResult result;
  const std::string name = options.name.empty() ? default_name(options.input_path) : options.name;
  if (name.find('/') != std::string::npos || name == "." || name == "..") {
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
  for (const std::string& p : {result.xof_path, result.bundle_path}) {
    if (fs::exists(p)) {
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
  PF_ASSIGN_OR_RETURN(SegmentSpool spool, SegmentSpool::create(dir.string()));

  formats::BundleHeader bh;
  bh.profile_sha256 = profile.sha256;
  bh.profile_id = profile.id;
  bh.product = prep.product;
  bh.segment_cards = static_cast<std::uint32_t>(prep.bundle_segment_cards);
  bh.zstd_level = prep.bundle_zstd_level;
  bh.integrity_key_uri = profile.integrity_key_uri;
  bh.integrity_kcv = integrity_kcv;

  // The reservation, opened now (state `reserved`, no counters yet) and filled one XOF
  // segment at a time; from here on any failure burns it.
  formats::ReservationInfo info;
  info.run_id = options.run_id.empty() ? default_run_id("run") : options.run_id;
  info.product = prep.product;
  info.scp = prep.channel.scp;
  info.values_per_card = registry_counters_per_card(prep);
  info.operator_name = options.operator_name.empty() ? default_operator() : options.operator_name;
  info.source_digest = to_hex(source_digest);
  // The audit trail (when configured): the run, its inputs and keys, before anything is
  // reserved; a run that cannot be recorded does not start.
  RunAudit audit(options.audit_log, "run", info.run_id);
  if (audit.enabled()) {
    nlohmann::ordered_json keys_used = import_keys_audit(keys, source->summary().transport_key_uri, xof_header,
                                                         class_kcvs, profile.integrity_key_uri, integrity_kcv);
    for (auto& k2 : prep_keys_audit(prep, k, keys)) keys_used.push_back(std::move(k2));
    PF_TRY(audit.start({{"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
                        {"input", {{"path", fs::absolute(options.input_path).string()}, {"sha256", to_hex(source_digest)}}},
                        {"registry", fs::absolute(options.registry_path).string()},
                        {"keys", keys_used}}));
  }
  auto opened = registry.open_reservation(info);
  if (!opened) return audit.fail(opened.error());
  result.reservation_id = *opened;
  bh.reservation_id = result.reservation_id;
  auto burn = [&](Error e) -> Error {
    (void)registry.mark_burnt(result.reservation_id);
    e.add_context("reservation " + std::to_string(result.reservation_id) + " burnt");
    return audit.fail(std::move(e));
  };

  RunState state;
  RecordParser parser(profile, keys, import_keys, state);
  SegmentAssembler assembler(profile.segment_cards);
  SegmentEncoder encoder(xof.header(), import_keys, state);
  CardPreparer preparer(profile, xof.header(), keys, k);
  const formats::SeLookupKind lookup_kind =
      prep.se.kind == SeKeyKind::kMsi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;
  ProgressLine progress("run");
  std::vector<formats::BundleCard> pending;
  std::uint32_t next_bundle_segment = 0;
  auto flush_pending = [&]() -> Status {
    PF_ASSIGN_OR_RETURN(formats::BundleEncodedSegment enc,
                        formats::encode_bundle_segment(bh, next_bundle_segment++, pending));
    PF_TRY(spool.append(enc));
    pending.clear();
    return ok_status();
  };
  const std::size_t in_flight = options.max_batches_in_flight != 0
                                    ? options.max_batches_in_flight
                                    : 4 * std::max(1u, std::thread::hardware_concurrency());

  {
    using namespace tbb::flow;
    graph g;
    bool done = false;
    input_node<RecordBatch> read(g, [&](tbb::flow_control& fc) -> RecordBatch {
      if (done || state.failed()) {
        fc.stop();
        return {};
      }
      auto batch = source->next();
      if (!batch) {
        state.fail(std::move(batch).error());
        fc.stop();
        return {};
      }
      done = batch->last;
      return std::move(batch).value();
    });
    limiter_node<RecordBatch> limit(g, in_flight);
    function_node<RecordBatch, ParsedBatch> parse(g, unlimited, [&](RecordBatch b) { return parser(std::move(b)); });
    sequencer_node<ParsedBatch> parsed_in_order(g, [](const ParsedBatch& b) { return b.seq; });
    function_node<ParsedBatch, RunBatchPtr> assemble(g, serial, [&](ParsedBatch b) {
      auto rb = std::make_shared<RunBatch>();
      rb->seq = b.seq;
      rb->last = b.last;
      rb->assembled = assembler(std::move(b));
      return rb;
    });
    function_node<RunBatchPtr, RunBatchPtr> encode(g, unlimited, [&](RunBatchPtr rb) {
      rb->encoded = encoder.encode(rb->assembled);
      return rb;
    });
    sequencer_node<RunBatchPtr> encoded_in_order(g, [](const RunBatchPtr& rb) { return rb->seq; });

    // Serial: the XOF segments are appended, then the counters of their cards reserved
    // (one committed transaction) before any of their scripts exists.
    function_node<RunBatchPtr, RunBatchPtr> write_and_reserve(g, serial, [&](RunBatchPtr rb) {
      if (state.failed()) return rb;
      for (Reject& r : rb->encoded.rejects) {
        ++rb->import_rejects;
        if (r.record != 0) ++rb->import_record_rejects;
        rb->rejects.push_back(std::move(r));
      }
      result.imported += rb->encoded.cards;
      for (const auto& seg : rb->encoded.segments) {
        if (auto s = xof.append(seg); !s) {
          state.fail(std::move(s).error());
          return rb;
        }
        ++result.xof_segments;
      }
      std::vector<formats::SeLookup> lookups;
      for (const SegmentWork& seg : rb->assembled.segments) {
        for (const formats::XofCard& card : seg.cards) lookups.push_back({lookup_kind, se_key_of(card, se_index)});
      }
      if (lookups.empty()) return rb;
      auto reserved = registry.reserve_more(result.reservation_id, lookups, info);
      if (!reserved) {
        state.fail(std::move(reserved).error());
        return rb;
      }
      ++result.reservation_batches;
      result.counters_reserved += reserved->reserved * info.values_per_card;
      if (auto a = audit.reserve({{"registry", fs::absolute(options.registry_path).string()},
                                  {"reservation_id", result.reservation_id},
                                  {"batch", reserved->batch},
                                  {"counters", reserved->reserved * info.values_per_card},
                                  {"rejected", lookups.size() - reserved->reserved}});
          !a) {
        state.fail(std::move(a).error());
        return rb;
      }
      std::size_t n = 0;
      for (std::uint32_t s = 0; s < rb->assembled.segments.size(); ++s) {
        const SegmentWork& seg = rb->assembled.segments[s];
        for (std::uint32_t c = 0; c < seg.cards.size(); ++c, ++n) {
          const formats::CardReservation& r = reserved->cards[n];
          const auto [record, offset] = seg.card_records[c];
          if (!r.ok) {
            rb->rejects.push_back(Reject{record, offset, seg.cards[c].card_id, prep.se.attribute, "registry",
                                         r.reject_reason, ""});
            ++rb->prep_rejects;
            continue;
          }
          auto se = registry.get_row(r.se_row);
          if (!se) {
            state.fail(std::move(se).error());
            return rb;
          }
          rb->planned.push_back(RunCard{s, c, record, offset, std::move(*se), r.counter});
        }
      }
      return rb;
    });

    // Parallel: each card's keys, session and wrapped script.
    function_node<RunBatchPtr, RunBatchPtr> prepare(g, unlimited, [&](RunBatchPtr rb) {
      if (!state.failed()) {
        for (const RunCard& p : rb->planned) {
          const formats::XofCard& card = rb->assembled.segments[p.segment].cards[p.index];
          auto prepared = preparer.prepare(card, p.se, p.counter);
          if (prepared) {
            for (const auto& s : prepared->sessions) rb->apdus += s.apdus.size();
            rb->done.push_back(std::move(*prepared));
          } else if (prepared.error().code() == ErrorCode::kInvalidArgument ||
                     prepared.error().code() == ErrorCode::kParse) {
            rb->rejects.push_back(Reject{p.record, p.offset, card.card_id, "", "prep",
                                         prepared.error().message() + " (counter " + std::to_string(p.counter) +
                                             " burnt)",
                                         ""});
            ++rb->prep_rejects;
          } else {
            state.fail(with_context(prepared.error(), "card " + card.card_id));
            break;
          }
        }
      }
      rb->assembled.segments.clear();  // the clear values go (SecureBytes wipe them)
      rb->planned.clear();
      return rb;
    });
    sequencer_node<RunBatchPtr> prepared_in_order(g, [](const RunBatchPtr& rb) { return rb->seq; });

    // Serial, in order: rejects, then bundle segments of segment-cards prepared cards.
    function_node<RunBatchPtr, continue_msg> publish(g, serial, [&](RunBatchPtr rb) {
      if (state.failed()) return continue_msg();
      std::stable_sort(rb->rejects.begin(), rb->rejects.end(),
                       [](const Reject& a, const Reject& b) { return a.offset < b.offset; });
      for (const Reject& r : rb->rejects) {
        if (auto s = rejects.add(r); !s) {
          state.fail(std::move(s).error());
          return continue_msg();
        }
      }
      result.import_rejects += rb->import_rejects;
      result.records += rb->import_record_rejects;
      result.prep_rejects += rb->prep_rejects;
      for (auto& card : rb->done) {
        pending.push_back(std::move(card));
        if (pending.size() == bh.segment_cards) {
          if (auto s = flush_pending(); !s) {
            state.fail(std::move(s).error());
            return continue_msg();
          }
        }
      }
      result.prepared += rb->done.size();
      result.apdus += rb->apdus;
      progress.update(result.prepared, source->bytes_consumed(), source->summary().envelope_bytes);
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
  }
  if (!state.failed() && !pending.empty()) {
    if (auto s = flush_pending(); !s) state.fail(std::move(s).error());
  }
  if (state.failed()) return burn(*state.error());

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
  auto xof_digest = sha256_file_hex(result.xof_path);
  if (!xof_digest) return burn(xof_digest.error());
  result.xof_sha256 = *xof_digest;
  const std::string xof_kept = " (the XOF " + result.xof_path + " is published and complete: `persoflow prep` can "
                               "start from it)";
  bh.xof_sha256 = from_hex(result.xof_sha256).value();
  auto bundle = formats::BundleWriter::create(result.bundle_path, bh);
  if (!bundle) return burn(with_context(bundle.error(), "bundle" + xof_kept));
  if (auto s = spool.replay([&](formats::BundleEncodedSegment&& seg) { return bundle->append(seg); }); !s) {
    return burn(with_context(s.error(), "bundle" + xof_kept));
  }
  auto bundle_digest = bundle->finish(*k.integrity);
  if (!bundle_digest) return burn(with_context(bundle_digest.error(), "bundle" + xof_kept));
  result.bundle_sha256 = to_hex(*bundle_digest);
  if (auto s = registry.mark_published(result.reservation_id, result.bundle_sha256); !s) return audit.fail(s.error());
  if (auto s = rejects.commit(); !s) return audit.fail(s.error());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const EnvelopeSummary& env = source->summary();
  nlohmann::ordered_json report;
  report["command"] = "run";
  report["status"] = "ok";
  report["run_id"] = info.run_id;
  report["operator"] = info.operator_name;
  report["profile"] = {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)},
                       {"product", prep.product}};
  report["key_handling"] = key_handling_report(prep);
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
  report["hsm_retries"] = preparer.retries();
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

}  // namespace persoflow::pipeline
