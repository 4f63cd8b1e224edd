#include "pipeline/prep_command.h"

#include <openssl/evp.h>
#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <unordered_map>

#include "config/profile_parser.h"
#include "engine/card_script.h"
#include "engine/gp_commands.h"
#include "engine/offline_session.h"
#include "engine/text.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/sha256_digest.h"
#include "formats/xof_reader.h"
#include "hsm/hsm_card_keys.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_derivation.h"
#include "pipeline/prep_segment.h"
#include "pipeline/prep_stages.h"
#include "pipeline/prep_workers.h"
#include "pipeline/progress.h"
#include "pipeline/reject_report.h"
#include "pipeline/run_audit.h"
#include "pipeline/run_journal.h"

namespace persoflow::pipeline {
namespace {

// Calls `stop` when the scope ends, however it ends (a helper thread must be joined before
// the state it uses goes).
template <class Stop>
struct CallOnExit {
  Stop& stop;
  ~CallOnExit() { stop(); }
};

// Read-only use of the SE registry from the parallel stage: one connection per worker,
// opened on first use and kept for the run, each with a small page cache (a segment's
// rows are read once; the pages stay in the OS's cache).
class RegistryReaders {
 public:
  explicit RegistryReaders(std::string path) : path_(std::move(path)) {}

  class Lease {
   public:
    Lease(RegistryReaders* owner, std::unique_ptr<formats::SeRegistry> reg) : owner_(owner), reg_(std::move(reg)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (reg_) owner_->give_back(std::move(reg_));
    }
    formats::SeRegistry* get() const { return reg_.get(); }

   private:
    RegistryReaders* owner_;
    std::unique_ptr<formats::SeRegistry> reg_;
  };

  Result<Lease> lease() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto reg = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(reg));
      }
    }
    PF_ASSIGN_OR_RETURN(formats::SeRegistry reg, formats::SeRegistry::open(path_, false));
    PF_TRY(reg.limit_cache(kReaderCacheKib));
    return Lease(this, std::make_unique<formats::SeRegistry>(std::move(reg)));
  }

 private:
  void give_back(std::unique_ptr<formats::SeRegistry> reg) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(reg));
  }
  std::string path_;
  std::mutex mu_;
  std::vector<std::unique_ptr<formats::SeRegistry>> idle_;
};

// The `format` of a prep journal's `started` record (docs/formats/journal.md). 2: the
// counters are reserved in batches (`batch` records; `next_card` counts selected cards).
constexpr int kPrepJournalFormat = 2;

// The journal of a run (docs/formats/journal.md), shared by run_prep and its body.
nlohmann::ordered_json selection_json(const CardSelection& c) {
  const char* kind = c.kind == CardSelection::Kind::kAll ? "all" : c.kind == CardSelection::Kind::kIds ? "ids" : "range";
  nlohmann::ordered_json j = {{"kind", kind}};
  if (c.kind == CardSelection::Kind::kIds) j["ids"] = c.ids;
  if (c.kind == CardSelection::Kind::kRange) {
    j["first"] = c.first;
    j["last"] = c.last;
  }
  return j;
}

// The options of a journaled run (its `started` record), refusing a run that has nothing
// left to resume. The process moves to the directory the run started in, so that relative
// paths name the same files and the report shows them as the operator gave them.
Result<PrepOptions> options_from_journal(const RunJournal& j, const PrepOptions& given) {
  const std::string where = j.journal_path();
  const nlohmann::json& s = j.records().front();
  if (s.value("record", std::string()) != "started" || s.value("command", std::string()) != "prep") {
    return Error(ErrorCode::kIntegrity, where + ": record 1: not the start of a prep run");
  }
  const std::string run_id = s.value("run_id", std::string("?"));
  if (s.value("format", 0) != kPrepJournalFormat) {
    return Error(ErrorCode::kInvalidArgument,
                 where + ": run '" + run_id + "' was journaled in format " + std::to_string(s.value("format", 0)) +
                     " by an earlier persoflow, which this one cannot resume (format " +
                     std::to_string(kPrepJournalFormat) + "): resume it with that version, or run prep again");
  }
  const nlohmann::json* reserved = j.last("reserved");
  const std::string reservation =
      reserved != nullptr ? "reservation " + std::to_string(reserved->value("reservation_id", std::int64_t{0})) : "no reservation";
  if (j.last("finished") != nullptr) {
    return Error(ErrorCode::kAlreadyExists, j.dir() + ": run '" + run_id + "' already finished (" + reservation +
                                                " published in " + s.value("output", std::string("?")) +
                                                "): there is nothing to resume");
  }
  if (const nlohmann::json* f = j.last("failed")) {
    return Error(ErrorCode::kInvalidArgument,
                 j.dir() + ": run '" + run_id + "' failed (" + reservation + " burnt: " +
                     f->value("error", std::string("?")) +
                     "); a failed run cannot be resumed: run prep again (it reserves fresh counters)");
  }
  PrepOptions o;
  try {
    o.run_id = s.at("run_id").get<std::string>();
    o.operator_name = s.at("operator").get<std::string>();
    o.profile_path = s.at("profile").at("path").get<std::string>();
    o.xof_path = s.at("xof").at("path").get<std::string>();
    o.registry_path = s.at("registry").get<std::string>();
    o.output_path = s.at("output").get<std::string>();
    o.rejects_path = s.at("rejects").get<std::string>();
    o.report_path = s.at("report").get<std::string>();
    const nlohmann::json& c = s.at("cards");
    const std::string kind = c.at("kind").get<std::string>();
    if (kind == "ids") {
      o.cards.kind = CardSelection::Kind::kIds;
      o.cards.ids = c.at("ids").get<std::vector<std::string>>();
    } else if (kind == "range") {
      o.cards.kind = CardSelection::Kind::kRange;
      o.cards.first = c.at("first").get<std::uint64_t>();
      o.cards.last = c.at("last").get<std::uint64_t>();
    } else if (kind != "all") {
      return Error(ErrorCode::kIntegrity, where + ": record 1: unknown card selection '" + kind + "'");
    }
    o.reserve_batch = s.at("reserve_batch").get<std::uint64_t>();
    if (!s.at("max_rejects").is_null()) {
      PF_ASSIGN_OR_RETURN(o.max_rejects, RejectLimit::parse(s.at("max_rejects").get<std::string>()));
    }
    const std::string cwd = s.at("cwd").get<std::string>();
    std::error_code ec;
    std::filesystem::current_path(cwd, ec);
    if (ec) {
      return Error(ErrorCode::kNotFound, where + ": the run started in " + cwd + ", which cannot be entered: " + ec.message());
    }
  } catch (const nlohmann::json::exception&) {
    return Error(ErrorCode::kIntegrity, where + ": record 1: a malformed start record");
  }
  o.max_in_flight = given.max_in_flight;
  o.workers = given.workers;
  o.threads = given.threads;
  o.worker_recycle_cards = given.worker_recycle_cards;
  o.hsm = given.hsm;
  o.audit_log = given.audit_log;
  o.run_dir = j.dir();
  o.resume_dir = j.dir();
  return o;
}

}  // namespace

Result<CardSelection> CardSelection::parse(const std::string& text) {
  CardSelection s;
  if (text.empty()) return Error(ErrorCode::kInvalidArgument, "--cards: empty selection");
  auto all_digits = [](std::string_view v) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (text[0] == '@') {
    const std::string path = text.substr(1);
    std::ifstream in(path);
    if (!in) return Error(ErrorCode::kNotFound, "--cards: cannot open " + path);
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      const std::string_view t = trim_blanks(line);
      if (t.empty() || t[0] == '#') continue;
      if (t.size() > 64) {
        return Error(ErrorCode::kInvalidArgument, path + ":" + std::to_string(n) + ": card id longer than 64 characters");
      }
      s.ids.emplace_back(t);
    }
    if (s.ids.empty()) return Error(ErrorCode::kInvalidArgument, "--cards: " + path + " lists no card id");
    s.kind = Kind::kIds;
    return s;
  }
  if (const auto dash = text.find('-'); dash != std::string::npos) {
    const std::string_view a = std::string_view(text).substr(0, dash);
    const std::string_view b = std::string_view(text).substr(dash + 1);
    if (all_digits(a) && all_digits(b) && a.size() < 19 && b.size() < 19) {
      s.kind = Kind::kRange;
      s.first = std::stoull(std::string(a));
      s.last = std::stoull(std::string(b));
      if (s.first == 0 || s.last < s.first) {
        return Error(ErrorCode::kInvalidArgument, "--cards " + text + ": a range is FIRST-LAST with 1 <= FIRST <= LAST");
      }
      return s;
    }
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view id = trim_blanks(std::string_view(text).substr(start, comma - start));
    if (id.empty()) return Error(ErrorCode::kInvalidArgument, "--cards: empty card id in '" + text + "'");
    s.ids.emplace_back(id);
    start = comma + 1;
  }
  s.kind = Kind::kIds;
  return s;
}

namespace {

Result<PrepResult> run_prep_body(const PrepOptions& options, hsm::KeyStore& keys, RunAudit& audit,
                                 JournaledRun& jc);

}  // namespace

Result<PrepResult> run_prep(const PrepOptions& given, hsm::KeyStore& keys) {
  PrepOptions options = given;
  JournaledRun jc;
  if (!given.resume_dir.empty()) {
    PF_ASSIGN_OR_RETURN(RunJournal journal, RunJournal::open(given.resume_dir));
    PF_ASSIGN_OR_RETURN(options, options_from_journal(journal, given));
    jc.journal.emplace(std::move(journal));
    jc.resuming = true;
  } else {
    if (options.run_id.empty()) options.run_id = default_run_id("prep");
    if (options.run_dir.empty()) options.run_dir = options.output_path + ".run";
  }
  RunAudit audit(options.audit_log, "prep", options.run_id);
  auto r = run_prep_body(options, keys, audit, jc);
  if (!r) {
    Error e = std::move(r).error();
    jc.record_failure(e, "prep", /*has_reservation=*/true);
    return audit.fail(std::move(e));
  }
  r->output_path = options.output_path;
  r->report_path = options.report_path;
  r->run_dir = jc.journal ? jc.journal->dir() : options.run_dir;
  return r;
}

namespace {

Result<PrepResult> run_prep_body(const PrepOptions& options, hsm::KeyStore& keys, RunAudit& audit,
                                 JournaledRun& jc) {
  const auto started = std::chrono::steady_clock::now();
  // --resume: only over the inputs the run started with.
  std::optional<nlohmann::json> started_copy;
  if (jc.resuming) started_copy = jc.journal->records().front();
  const nlohmann::json* started_record = started_copy ? &*started_copy : nullptr;
  auto changed = [&](const std::string& path, const char* what, const std::string& now, const std::string& then) {
    return Error(ErrorCode::kIntegrity, path + ": the " + what + " changed since run '" + options.run_id +
                                            "' started (SHA-256 " + now + ", the journal has " + then +
                                            "): a run is resumed only over the inputs it started with");
  };
  if (started_record != nullptr) {
    PF_ASSIGN_OR_RETURN(const std::string now, sha256_file_hex(options.xof_path));
    const std::string then = (*started_record)["xof"].value("sha256", std::string());
    if (now != then) return changed(options.xof_path, "XOF", now, then);
  }
  PF_ASSIGN_OR_RETURN(const Profile profile, config::load_profile(options.profile_path));
  if (started_record != nullptr) {
    const std::string then = (*started_record)["profile"].value("sha256", std::string());
    if (to_hex(profile.sha256) != then) return changed(options.profile_path, "profile", to_hex(profile.sha256), then);
  }
  if (!profile.prep) {
    return Error(ErrorCode::kInvalidArgument, options.profile_path + ": the profile has no <prep> element");
  }
  const PrepSpec& prep = *profile.prep;

  // The XOF, checked whole (footer CMAC, then every segment's digest) before anything.
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo integrity_info, keys.find(profile.integrity_key_uri));
  auto integrity = std::make_unique<hsm::HsmMacKey>(keys, integrity_info);
  PF_ASSIGN_OR_RETURN(formats::XofReader reader, formats::XofReader::open(options.xof_path, *integrity));
  const formats::XofHeader& header = reader.header();
  PF_ASSIGN_OR_RETURN(PrepKeys k, resolve_prep_keys(profile, options.profile_path, header, keys, std::move(integrity), integrity_info));
  PF_TRY(reader.check_keys(k.class_ptrs));

  // Every attribute the script uses must be a clear value of the XOF.
  PF_ASSIGN_OR_RETURN(const std::size_t se_index,
                      check_prep_attributes(prep, header, options.profile_path, options.xof_path));

  // The planner needs each card's SE key only: it decrypts that attribute's class alone
  // (the index's card ids are clear; prepare_segment decodes every class and checks them).
  const std::uint16_t se_class = header.attributes.at(se_index).class_index;
  std::vector<AeadKey*> se_key_class(k.class_ptrs.size(), nullptr);
  se_key_class.at(se_class) = k.class_ptrs.at(se_class);

  PF_ASSIGN_OR_RETURN(formats::SeRegistry registry, formats::SeRegistry::open(options.registry_path, false));
  PF_ASSIGN_OR_RETURN(const std::string xof_digest, sha256_file_hex(options.xof_path));
  const formats::SeLookupKind lookup_kind =
      prep.se.kind == SeKeyKind::kMsi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;

  // Pass 1, the selection: how many cards each XOF segment gives the run, and nothing per
  // card. The segment table has the counts; --cards ID,... reads the segments' card ids
  // (clear in the XOF: no decryption). The batches below read their segments again.
  const std::vector<formats::XofSegmentEntry>& table = reader.segment_table();
  std::vector<std::uint32_t> seg_selected(table.size(), 0);
  std::vector<std::uint64_t> seg_position(table.size(), 0);  // cards before the segment
  std::uint64_t xof_cards = 0;
  for (std::size_t s = 0; s < table.size(); ++s) {
    seg_position[s] = xof_cards;
    xof_cards += table[s].card_count;
  }
  std::unordered_map<std::string, bool> wanted;
  for (const auto& id : options.cards.ids) wanted.emplace(id, false);
  if (options.cards.kind == CardSelection::Kind::kRange && options.cards.last > xof_cards) {
    return Error(ErrorCode::kInvalidArgument, "--cards " + std::to_string(options.cards.first) + "-" +
                                                  std::to_string(options.cards.last) + ": the XOF holds " +
                                                  std::to_string(xof_cards) + " cards");
  }
  for (std::size_t s = 0; s < table.size(); ++s) {
    const std::uint64_t first = seg_position[s] + 1;
    const std::uint64_t last = seg_position[s] + table[s].card_count;
    if (options.cards.kind == CardSelection::Kind::kAll) {
      seg_selected[s] = table[s].card_count;
    } else if (options.cards.kind == CardSelection::Kind::kRange) {
      const std::uint64_t lo = std::max(first, options.cards.first);
      const std::uint64_t hi = std::min(last, options.cards.last);
      seg_selected[s] = hi >= lo && table[s].card_count != 0 ? static_cast<std::uint32_t>(hi - lo + 1) : 0;
    } else {
      PF_ASSIGN_OR_RETURN(formats::XofSegment raw, reader.read_segment(s));
      for (const std::string& id : raw.card_ids) {
        if (auto it = wanted.find(id); it != wanted.end()) {
          it->second = true;
          ++seg_selected[s];
        }
      }
    }
  }
  if (options.cards.kind == CardSelection::Kind::kIds) {
    std::vector<std::string> missing;
    for (const auto& id : options.cards.ids) {
      if (!wanted[id]) missing.push_back(id);
    }
    if (!missing.empty()) {
      std::string list;
      for (std::size_t i = 0; i < std::min<std::size_t>(missing.size(), 5); ++i) (list += list.empty() ? "" : ", ") += missing[i];
      return Error(ErrorCode::kNotFound, options.xof_path + ": " + std::to_string(missing.size()) +
                                             " selected card(s) not in the XOF: " + list +
                                             (missing.size() > 5 ? ", ..." : ""));
    }
  }
  auto selected_in = [&](std::size_t s, std::size_t i, const std::string& card_id) {
    const std::uint64_t position = seg_position[s] + i + 1;
    switch (options.cards.kind) {
      case CardSelection::Kind::kRange: return position >= options.cards.first && position <= options.cards.last;
      case CardSelection::Kind::kIds: return wanted.count(card_id) != 0;
      case CardSelection::Kind::kAll: break;
    }
    return true;
  };

  // The reservation batches: consecutive XOF segments holding at least reserve_batch
  // selected cards (the last one fewer). Each batch's counters are reserved in one
  // transaction, committed before any of its scripts exists; the run's memory is a
  // batch's, whatever the number of cards.
  struct PrepBatch {
    std::uint32_t first_segment = 0;
    std::uint32_t last_segment = 0;
    std::uint64_t first_card = 0;  // selection index of its first card
    std::uint64_t cards = 0;
  };
  // The first batches are smaller: 1,024 cards, then twice as many each time up to
  // reserve_batch. Nothing is prepared before the first batch is reserved, and a full one
  // kept a core idle for a fifth of a 50,000-card host-mode run.
  auto batch_target = [&](std::size_t index) {
    return std::min<std::uint64_t>(options.reserve_batch, std::uint64_t{kFirstReserveBatch} << std::min<std::size_t>(index, 24));
  };
  std::vector<PrepBatch> batches;
  std::uint64_t selected = 0;
  for (std::size_t s = 0; s < table.size(); ++s) {
    if (seg_selected[s] == 0) continue;
    if (batches.empty() || batches.back().cards >= batch_target(batches.size() - 1)) {
      batches.push_back({static_cast<std::uint32_t>(s), static_cast<std::uint32_t>(s), selected, 0});
    }
    batches.back().last_segment = static_cast<std::uint32_t>(s);
    batches.back().cards += seg_selected[s];
    selected += seg_selected[s];
  }

  PrepResult result;
  result.selected = selected;
  PF_ASSIGN_OR_RETURN(RejectReport rejects, RejectReport::create(options.rejects_path));

  formats::ReservationInfo info;
  info.run_id = options.run_id.empty() ? default_run_id("prep") : options.run_id;
  info.product = prep.product;
  info.scp = prep.channel.scp;
  info.values_per_card = registry_counters_per_card(prep);
  info.operator_name = options.operator_name.empty() ? default_operator() : options.operator_name;
  info.source_digest = xof_digest;
  if (audit.enabled()) {
    nlohmann::ordered_json keys_used = nlohmann::ordered_json::array();
    for (std::size_t c = 0; c < header.classes.size(); ++c) {
      keys_used.push_back(audit_key(header.classes[c].dkep_uri, keys.kcv(k.class_infos[c])));
    }
    keys_used.push_back(audit_key(profile.integrity_key_uri, keys.kcv(k.integrity_info)));
    for (auto& k2 : prep_keys_audit(prep, k, keys)) keys_used.push_back(std::move(k2));
    nlohmann::ordered_json details = {
        {"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
        {"input", {{"path", std::filesystem::absolute(options.xof_path).string()}, {"sha256", xof_digest}}},
        {"registry", std::filesystem::absolute(options.registry_path).string()},
        {"selected", selected},
        {"key_handling", key_handling_name(prep.key_handling)},
        {"keys", keys_used}};
    if (!jc.resuming) {
      // The journal first (a run that cannot be journaled reserves nothing), then run.start.
      PF_ASSIGN_OR_RETURN(RunJournal created, RunJournal::create(options.run_dir));
      jc.journal.emplace(std::move(created));
      jc.failure_ends_run = true;
      PF_TRY(audit.start(std::move(details)));
    } else {
      details["run_dir"] = jc.journal->dir();
      details["segments_journaled"] = jc.journal->all("segment").size();
      PF_TRY(audit.resume(std::move(details)));
    }
  } else if (!jc.resuming) {
    PF_ASSIGN_OR_RETURN(RunJournal created, RunJournal::create(options.run_dir));
    jc.journal.emplace(std::move(created));
    jc.failure_ends_run = true;
  }
  RunJournal& journal = *jc.journal;

  // The reservation, opened (state `reserved`, no counters yet, committed) and filled one
  // batch at a time below. The journal records the registry's last reservation id before
  // it (`started`) and the reservation after it (`reserved`): a run killed in between
  // finds it again by its run id.
  const nlohmann::json* reserved_record = journal.last("reserved");
  std::int64_t reservation_id = reserved_record != nullptr ? (*reserved_record).value("reservation_id", std::int64_t{0}) : 0;
  bool recovered_open = false;
  if (jc.resuming && reservation_id == 0) {
    PF_ASSIGN_OR_RETURN(auto found, find_reservation_of_run(registry, info.run_id,
                                                            (*started_record).value("reservations_before", std::int64_t{0})));
    if (found) {
      reservation_id = found->id;
      recovered_open = true;
    }
  }
  if (reservation_id == 0) {
    if (!jc.resuming) {
      PF_ASSIGN_OR_RETURN(const std::int64_t before, last_reservation_id(registry));
      PF_TRY(journal.append({{"record", "started"},
                             {"format", kPrepJournalFormat},
                             {"command", "prep"},
                             {"run_id", info.run_id},
                             {"operator", info.operator_name},
                             {"cwd", std::filesystem::current_path().string()},
                             {"profile", {{"path", options.profile_path}, {"sha256", to_hex(profile.sha256)}}},
                             {"xof", {{"path", options.xof_path}, {"sha256", xof_digest}}},
                             {"registry", options.registry_path},
                             {"output", options.output_path},
                             {"rejects", options.rejects_path},
                             {"report", options.report_path},
                             {"cards", selection_json(options.cards)},
                             {"max_rejects", options.max_rejects ? nlohmann::ordered_json(options.max_rejects->to_string())
                                                                 : nlohmann::ordered_json(nullptr)},
                             {"reserve_batch", options.reserve_batch},
                             {"reservations_before", before}}));
    }
    PF_ASSIGN_OR_RETURN(reservation_id, registry.open_reservation(info));
  } else {
    PF_ASSIGN_OR_RETURN(auto record, registry.reservation(reservation_id));
    const std::string where = "SE registry " + options.registry_path + ": reservation " + std::to_string(reservation_id) +
                              " of run '" + info.run_id + "'";
    if (!record) return Error(ErrorCode::kNotFound, where + " does not exist: not the registry the run started with");
    if (record->state == formats::ReservationState::kBurnt) {
      return Error(ErrorCode::kInvalidArgument,
                   where + " is burnt: the run cannot be resumed (run prep again: it reserves fresh counters)");
    }
    if (record->state == formats::ReservationState::kPublished && journal.last("complete") == nullptr) {
      return Error(ErrorCode::kAlreadyExists, where + " is already published: there is nothing to resume");
    }
    if (record->run_id != info.run_id) {
      return Error(ErrorCode::kIntegrity, where + " belongs to run '" + record->run_id + "'");
    }
  }
  if (!jc.resuming) jc.failure_ends_run = true;
  if (reserved_record == nullptr) {
    if (auto a = journal.append({{"record", "reserved"}, {"reservation_id", reservation_id}, {"recovered", recovered_open}});
        !a) {
      (void)registry.mark_burnt(reservation_id);
      return with_context(a.error(), "reservation " + std::to_string(reservation_id) + " burnt");
    }
  }
  result.reservation_id = reservation_id;

  // From here on, any failure burns the reservation (its values are never reused anyway;
  // the state says so to the operator).
  auto burn = [&](Error e) -> Error {
    jc.failure_ends_run = true;
    if (interrupts_run(e)) return e;  // resumable: the reservation stays `reserved`
    (void)registry.mark_burnt(reservation_id);
    e.add_context("reservation " + std::to_string(reservation_id) + " burnt");
    return e;
  };

  formats::BundleHeader bh;
  bh.xof_sha256 = from_hex(xof_digest).value();
  bh.profile_sha256 = profile.sha256;
  bh.reservation_id = reservation_id;
  bh.profile_id = profile.id;
  bh.product = prep.product;
  bh.segment_cards = static_cast<std::uint32_t>(prep.bundle_segment_cards);
  bh.zstd_level = prep.bundle_zstd_level;
  bh.integrity_key_uri = profile.integrity_key_uri;
  auto integrity_kcv = keys.kcv(integrity_info);
  if (!integrity_kcv) return burn(integrity_kcv.error());
  bh.integrity_kcv = *integrity_kcv;
  auto writer = formats::BundleWriter::create(options.output_path, bh);
  if (!writer) return burn(writer.error());

  // --resume: the journaled segments go into the bundle from the spool, with the rejects
  // journaled before them; their cards are not prepared again. An error here leaves the
  // run resumable (nothing was prepared yet by this process).
  std::uint64_t next = 0;  // selected cards before it are in the bundle or the reject report
  std::uint32_t next_bundle_segment = 0;
  std::uint64_t retries_before = 0;
  std::uint64_t spool_end = 0;
  nlohmann::ordered_json journal_rejects = nlohmann::ordered_json::array();  // since the last record
  auto replay_rejects = [&](const nlohmann::json& record, std::uint64_t& count) -> Status {
    for (const auto& j : record.value("rejects", nlohmann::json::array())) {
      PF_ASSIGN_OR_RETURN(Reject r, reject_from_json(j, journal.journal_path()));
      PF_TRY(rejects.add(r));
      ++count;
    }
    return ok_status();
  };
  const std::string bad_journal = journal.journal_path() + ": the journaled segments do not follow each other";
  for (const nlohmann::json* seg : journal.all("segment")) {
    const auto number = seg->value("number", std::uint32_t{0});
    const auto offset = seg->value("offset", std::uint64_t{0});
    const auto length = seg->value("length", std::uint64_t{0});
    const auto next_card = seg->value("next_card", std::uint64_t{0});
    if (number != next_bundle_segment || offset != spool_end || next_card < next || next_card > selected) {
      return Error(ErrorCode::kIntegrity, bad_journal);
    }
    PF_ASSIGN_OR_RETURN(Bytes bytes, journal.read_spool(offset, length, seg->value("sha256", std::string())));
    PF_ASSIGN_OR_RETURN(std::vector<formats::BundleCard> cards,
                        formats::decode_bundle_segment(writer->header(), bytes, number, journal.spool_path(), offset));
    formats::BundleEncodedSegment enc;
    enc.segment_number = number;
    enc.card_count = static_cast<std::uint32_t>(cards.size());
    for (const auto& c : cards) enc.card_ids.push_back(c.card_id);
    enc.bytes = std::move(bytes);
    std::uint64_t replayed = 0;
    PF_TRY(replay_rejects(*seg, replayed));
    // Every selected card before next_card is in a journaled segment or a journaled reject.
    if (cards.size() + replayed != next_card - next) return Error(ErrorCode::kIntegrity, bad_journal);
    PF_TRY(writer->append(enc));
    result.prepared += cards.size();
    result.apdus += seg->value("apdus", std::uint64_t{0});
    retries_before = seg->value("hsm_retries", std::uint64_t{0});
    next = next_card;
    spool_end = offset + length;
    ++next_bundle_segment;
  }
  const bool was_complete = journal.last("complete") != nullptr;
  if (was_complete) {
    const nlohmann::json complete = *journal.last("complete");
    std::uint64_t replayed = 0;
    PF_TRY(replay_rejects(complete, replayed));
    if (next + replayed != selected) return Error(ErrorCode::kIntegrity, bad_journal);
    next = selected;
  }
  if (jc.resuming) {
    PF_TRY(journal.cut_spool(spool_end));
    jc.failure_ends_run = true;
  }

  CardPreparer preparer(profile, header, keys, k);
  // The SEs of a segment's cards are read in the parallel stage, each thread on a registry
  // connection of its own (one short read transaction per segment, with a small page
  // cache: reading the whole registry does not grow the process).
  RegistryReaders readers(options.registry_path);
  SegmentContext context;
  context.header = &reader.header();
  context.xof_path = reader.path();
  context.class_keys = k.class_ptrs;
  context.preparer = &preparer;
  context.lookup_kind = lookup_kind;
  context.registry_path = options.registry_path;

  // Worker processes (pipeline/prep_workers.h): the segments' HSM work in N processes, each
  // with its own module, when the module serializes calls within a process.
  std::size_t segments_left = 0;
  for (std::size_t s = 0, first = 0; s < table.size(); first += seg_selected[s], ++s) {
    if (seg_selected[s] != 0 && first + seg_selected[s] > next) ++segments_left;
  }
  std::size_t workers = 0;
  if (options.hsm) {
    workers = options.workers ? *options.workers : default_prep_workers(*options.hsm, segments_left, prep.key_handling);
  } else if (options.workers && *options.workers != 0) {
    return burn(Error(ErrorCode::kInvalidArgument, "--workers: prep workers need the HSM settings to start with"));
  }
  std::unique_ptr<PrepWorkerPool> pool;
  if (workers != 0 && segments_left != 0) {
    PrepWorkerConfig wc;
    wc.hsm = *options.hsm;
    wc.profile_path = std::filesystem::absolute(options.profile_path).string();
    wc.profile_sha256 = to_hex(profile.sha256);
    wc.xof_path = std::filesystem::absolute(options.xof_path).string();
    wc.registry_path = std::filesystem::absolute(options.registry_path).string();
    wc.lookup_kind = context.lookup_kind;
    wc.transport_header = bh;
    wc.transport_header.zstd_level = 1;  // the cards cross a socket, not a disk: speed over size
    wc.transport_header.segment_cards = formats::kBundleMaxSegmentCards;  // an XOF segment's cards at once
    wc.recycle_cards = options.worker_recycle_cards;
    auto started_pool = PrepWorkerPool::start(std::move(wc), workers);
    if (!started_pool) return burn(started_pool.error());
    pool = std::move(*started_pool);
  }
  auto total_retries = [&] { return retries_before + preparer.retries() + (pool ? pool->retries() : 0); };

  ProgressLine progress("prep");
  std::vector<formats::BundleCard> pending;
  std::optional<Error> failure;
  std::atomic<bool> failed{false};
  std::mutex failure_mutex;
  // The planner (below) waits on plan_cv for room; a failure must wake it.
  std::mutex plan_mutex;
  std::condition_variable plan_cv;
  auto fail = [&](Error e) {
    {
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::move(e);
    }
    std::lock_guard lock(plan_mutex);
    failed = true;
    plan_cv.notify_all();
  };
  // The journal gets batch records from the planner and segment records from the write
  // stage.
  std::mutex journal_mutex;

  // The planner: one reservation batch ahead of the pipeline, on a thread of its own. For
  // each batch it reads and decrypts the batch's XOF segments for the SE each card names,
  // reserves their counters in one committed transaction (or, on --resume, takes back the
  // counters a journaled or committed batch already holds), journals the batch, and hands
  // its segments to the pipeline. Memory holds two batches' plans at most.
  std::uint64_t batches_committed = 0;  // by this process (the test crash points)
  std::uint64_t batch_records_written = 0;
  // Set when the journal's batch records disagree with the registry (or cannot be read):
  // most likely a resume over another copy of the registry than the run's. Such a failure
  // leaves the reservation `reserved` and the run resumable over the right registry.
  std::atomic<bool> journal_mismatch{false};
  auto mismatch = [&](Error e) {
    journal_mismatch = true;
    return e;
  };
  std::int64_t next_registry_batch = 1;  // the batch reserve_more numbers next
  std::int64_t registry_last_batch = 0;  // the largest batch the registry holds for the run
  const std::vector<const nlohmann::json*> batch_records = journal.all("batch");
  if (jc.resuming) {
    auto ranges = registry.ranges_of(reservation_id);
    if (!ranges) return ranges.error();
    for (const auto& r : *ranges) registry_last_batch = std::max(registry_last_batch, r.batch);
  }
  const std::string bad_batches = journal.journal_path() + ": the journaled reservation batches do not follow each other";
  using BatchWork = std::vector<std::shared_ptr<SegmentWork>>;
  auto plan_batch = [&](std::size_t b) -> Result<BatchWork> {
    const PrepBatch& batch = batches[b];
    const nlohmann::json* record = b < batch_records.size() ? batch_records[b] : nullptr;
    if (record != nullptr && (record->value("number", std::uint64_t{0}) != b ||
                              record->value("first_card", std::uint64_t{0}) != batch.first_card ||
                              record->value("selected", std::uint64_t{0}) != batch.cards)) {
      return mismatch(Error(ErrorCode::kIntegrity, bad_batches + " (batch " + std::to_string(b) + ")"));
    }
    if (record != nullptr) {
      const auto reserved_cards = record->value("cards", std::uint64_t{0});
      result.counters_reserved += reserved_cards * info.values_per_card;
      if (reserved_cards > 0) next_registry_batch = record->value("registry_batch", std::int64_t{0}) + 1;
      // Every card of it is in the journaled bundle segments or rejects already.
      if (batch.first_card + batch.cards <= next) return BatchWork{};
    } else if (batch.first_card + batch.cards <= next) {
      return mismatch(Error(ErrorCode::kIntegrity, bad_batches + " (batch " + std::to_string(b) + " is not journaled)"));
    }
    // The batch's cards, and the SE each one names.
    std::vector<PlannedCard> cards;
    std::vector<formats::SeLookup> lookups;
    cards.reserve(batch.cards);
    lookups.reserve(batch.cards);
    std::uint64_t selection = batch.first_card;
    for (std::uint32_t s = batch.first_segment; s <= batch.last_segment; ++s) {
      if (seg_selected[s] == 0) continue;
      PF_ASSIGN_OR_RETURN(formats::XofSegment raw, reader.read_segment(s));
      PF_ASSIGN_OR_RETURN(std::vector<formats::XofCard> decoded, reader.decode_segment_classes(raw, se_key_class));
      for (std::size_t i = 0; i < decoded.size(); ++i) {
        if (!selected_in(s, i, decoded[i].card_id)) continue;
        cards.push_back({s, static_cast<std::uint32_t>(i), seg_position[s] + i + 1, 0, 0, selection++});
        lookups.push_back({lookup_kind, se_key_of(decoded[i], se_index)});
      }
    }
    if (selection != batch.first_card + batch.cards) {
      return Error(ErrorCode::kIntegrity, options.xof_path + ": batch " + std::to_string(b) +
                                              " selects a different number of cards than pass 1 counted");
    }
    formats::Reservation reservation;
    bool recovered = false;
    if (record != nullptr) {
      auto taken = reservation_from_ranges(registry, lookups, info, reservation_id,
                                           record->value("registry_batch", std::int64_t{0}));
      if (!taken) {
        if (taken.error().code() != ErrorCode::kIntegrity) return taken.error();
        return mismatch(std::move(taken).error().add_context(journal.journal_path() + ": journaled reservation batch " +
                                                             std::to_string(b)));
      }
      reservation = std::move(*taken);
      // The reasons reserve_more gave, as journaled; the cards they name must be exactly
      // the ones the ranges leave without a counter.
      std::unordered_map<std::uint64_t, std::string> reasons;
      for (const auto& r : record->value("rejects", nlohmann::json::array())) {
        reasons[r.at(0).get<std::uint64_t>()] = r.at(1).get<std::string>();
      }
      std::size_t matched = 0;
      for (std::size_t i = 0; i < cards.size(); ++i) {
        if (reservation.cards[i].ok) continue;
        const auto it = reasons.find(cards[i].position);
        if (it == reasons.end()) break;
        reservation.cards[i].reject_reason = it->second;
        ++matched;
      }
      if (matched != reasons.size() || matched != cards.size() - reservation.reserved ||
          record->value("cards", std::uint64_t{0}) != reservation.reserved) {
        return mismatch(Error(ErrorCode::kIntegrity, journal.journal_path() + ": reservation batch " +
                                                         std::to_string(b) + " of reservation " +
                                                         std::to_string(reservation_id) +
                                                         " does not match its counter ranges in the registry"));
      }
    } else {
      recovered = next_registry_batch <= registry_last_batch;
      if (recovered) {
        // Committed by the killed process after its last journal record: taken back, not
        // reserved again.
        auto taken = reservation_from_ranges(registry, lookups, info, reservation_id, next_registry_batch);
        if (!taken) return taken.error().code() == ErrorCode::kIntegrity ? mismatch(taken.error()) : taken.error();
        reservation = std::move(*taken);
        reservation.batch = next_registry_batch;
      } else {
        PF_ASSIGN_OR_RETURN(reservation, registry.reserve_more(reservation_id, lookups, info));
        crash_point_after_reservation_batch(++batches_committed);
      }
      if (reservation.reserved > 0) next_registry_batch = reservation.batch + 1;
      result.counters_reserved += reservation.reserved * info.values_per_card;
      nlohmann::ordered_json audit_details = {{"registry", std::filesystem::absolute(options.registry_path).string()},
                                              {"reservation_id", reservation_id},
                                              {"batch", reservation.batch},
                                              {"counters", reservation.reserved * info.values_per_card},
                                              {"rejected", lookups.size() - reservation.reserved}};
      // A batch committed before the kill may or may not have its entry: a duplicate says
      // less than a missing one.
      if (recovered) audit_details["recovered"] = true;
      PF_TRY(audit.reserve(std::move(audit_details)));
      nlohmann::ordered_json registry_rejects = nlohmann::ordered_json::array();
      for (std::size_t i = 0; i < cards.size(); ++i) {
        if (!reservation.cards[i].ok) registry_rejects.push_back({cards[i].position, reservation.cards[i].reject_reason});
      }
      std::lock_guard lock(journal_mutex);
      PF_TRY(journal.append({{"record", "batch"},
                             {"number", b},
                             {"first_card", batch.first_card},
                             {"selected", batch.cards},
                             {"registry_batch", reservation.reserved > 0 ? reservation.batch : 0},
                             {"recovered", recovered},
                             {"cards", reservation.reserved},
                             {"rejects", std::move(registry_rejects)}}));
      crash_point_after_batch_record(++batch_records_written);
    }
    registry.release_memory();
    // The batch's segments, without the cards a resumed run has already.
    BatchWork works;
    for (std::size_t i = 0; i < cards.size(); ++i) {
      if (cards[i].selection < next) continue;
      if (works.empty() || works.back()->xof_segment != cards[i].segment) {
        works.push_back(std::make_shared<SegmentWork>());
        works.back()->xof_segment = cards[i].segment;
      }
      SegmentWork& work = *works.back();
      const formats::CardReservation& r = reservation.cards[i];
      if (!r.ok) {
        work.registry_rejects.emplace_back(
            cards[i].selection, Reject{cards[i].position, 0, "", prep.se.attribute, "registry", r.reject_reason, ""});
        continue;
      }
      PlannedCard p = cards[i];
      p.se_row = r.se_row;
      p.counter = r.counter;
      work.cards.push_back(p);
      // A batch taken back has no rows: the SE is found again by the key its card names.
      work.se_keys.push_back(p.se_row == 0 ? lookups[i].key : std::string());
      // The SE's row as the reservation read it: prepare_segment uses it instead of reading
      // it again (a worker reads its own).
      if (!pool && r.se) work.ses.push_back(std::move(*reservation.cards[i].se));
    }
    return works;
  };
  // Planned, not yet in the pipeline: two at most, so that the planner (reading the XOF for
  // the SE keys, reserving in the registry) runs ahead while the pipeline takes a batch.
  constexpr std::size_t kPlannedAhead = 2;
  std::deque<BatchWork> ready;
  bool planner_done = false;
  bool planner_stop = false;
  std::thread planner([&] {
    for (std::size_t b = 0; b < batches.size() && !failed; ++b) {
      // A journaled batch record read with at(): a malformed one must stop the run with a
      // message, not end the process from this thread.
      Result<BatchWork> works = BatchWork{};
      try {
        works = plan_batch(b);
      } catch (const nlohmann::json::exception& e) {
        works = mismatch(Error(ErrorCode::kIntegrity, journal.journal_path() + ": batch record " +
                                                          std::to_string(b) + " is malformed: " + e.what()));
      }
      if (!works) {
        fail(std::move(works).error());
        break;
      }
      if (works->empty()) continue;
      std::unique_lock lock(plan_mutex);
      plan_cv.wait(lock, [&] { return ready.size() < kPlannedAhead || failed || planner_stop; });
      if (failed || planner_stop) break;
      ready.push_back(std::move(*works));
      plan_cv.notify_all();
    }
    std::lock_guard lock(plan_mutex);
    planner_done = true;
    plan_cv.notify_all();
  });
  auto stop_planner = [&] {
    {
      std::lock_guard lock(plan_mutex);
      planner_stop = true;
      plan_cv.notify_all();
    }
    if (planner.joinable()) planner.join();
  };
  const CallOnExit stop_on_exit{stop_planner};

  // A full bundle segment (or the last one) is cut from the pending cards in order
  // (cut_chunk, serial), compressed on any thread (encode_chunk), then written in order
  // (write_chunks, serial): into the bundle's temporary file, the spool (fsynced) and the
  // journal (fsynced), naming the selected cards it completes (`next_card`: every
  // selected card before it is in a segment or a reject). zstd is the largest part of the
  // output work, and would otherwise bound the run on one thread.
  auto cut_chunk = [&](std::uint64_t next_card) {
    BundleChunk chunk;
    chunk.number = next_bundle_segment++;
    chunk.cards = std::move(pending);
    pending.clear();
    chunk.next_card = next_card;
    chunk.journal_rejects = std::move(journal_rejects);
    journal_rejects = nlohmann::ordered_json::array();
    return chunk;
  };
  auto encode_chunk = [&](BundleChunk& chunk) -> bool {
    auto enc = formats::encode_bundle_segment(bh, chunk.number, chunk.cards);
    if (!enc) {
      fail(enc.error());
      return false;
    }
    for (const auto& card : chunk.cards) {
      for (const auto& session : card.sessions) chunk.apdus += session.apdus.size();
    }
    chunk.card_count = chunk.cards.size();
    chunk.cards.clear();
    chunk.cards.shrink_to_fit();
    chunk.encoded = std::move(*enc);
    return true;
  };
  // The segments waiting when the writer takes them, written as one group: each into the
  // bundle's temporary file and the spool, one fdatasync of the spool, then each segment's
  // record, one fdatasync of the journal. A record is written only once the spool bytes it
  // names are on disk, and the group's records are on disk before the writer takes the
  // next group (and before anything is published).
  auto write_chunks = [&](std::vector<BundleChunk>& group) -> bool {
    std::vector<std::uint64_t> offsets;
    for (BundleChunk& chunk : group) {
      const formats::BundleEncodedSegment& enc = chunk.encoded;
      if (auto s = writer->append(enc); !s) {
        fail(s.error());
        return false;
      }
      result.apdus += chunk.apdus;
      std::lock_guard lock(journal_mutex);
      auto offset = journal.append_spool(enc.bytes, false);
      if (!offset) {
        fail(offset.error());
        return false;
      }
      offsets.push_back(*offset);
    }
    std::lock_guard lock(journal_mutex);
    if (auto s = journal.sync_spool(); !s) {
      fail(s.error());
      return false;
    }
    for (std::size_t i = 0; i < group.size(); ++i) {
      BundleChunk& chunk = group[i];
      if (auto s = journal.append({{"record", "segment"},
                                   {"number", chunk.number},
                                   {"offset", offsets[i]},
                                   {"length", chunk.encoded.bytes.size()},
                                   {"sha256", to_hex(*chunk.encoded.sha256)},  // computed by encode_bundle_segment
                                   {"cards", chunk.card_count},
                                   {"apdus", chunk.apdus},
                                   {"next_card", chunk.next_card},
                                   {"hsm_retries", total_retries()},
                                   {"rejects", std::move(chunk.journal_rejects)}},
                                  false);
          !s) {
        fail(s.error());
        return false;
      }
      crash_point_after_segment(chunk.number + 1);  // a kill here: this record written, not yet fsynced
    }
    if (auto s = journal.sync(); !s) {
      fail(s.error());
      return false;
    }
    return true;
  };
  // write_chunks on a thread of its own, in the order the pipeline gives: two fdatasyncs per
  // bundle segment (the spool and the journal) held a pipeline thread for a third of a
  // host-mode prep's time on a virtual disk, while the segments after it waited for a
  // core. The pipeline's last stage only queues; at most kWriteQueue encoded segments wait,
  // and the writer takes all that wait as one group (two fdatasyncs per group).
  constexpr std::size_t kWriteQueue = 4;
  std::mutex write_mutex;
  std::condition_variable write_cv;
  std::deque<BundleChunk> write_queue;
  bool write_closed = false;
  auto queue_chunk = [&](BundleChunk&& chunk) {
    std::unique_lock lock(write_mutex);
    write_cv.wait(lock, [&] { return write_queue.size() < kWriteQueue || failed; });
    if (failed) return;
    write_queue.push_back(std::move(chunk));
    write_cv.notify_all();
  };
  std::thread chunk_writer([&] {
    std::vector<BundleChunk> group;
    while (true) {
      group.clear();
      {
        std::unique_lock lock(write_mutex);
        write_cv.wait(lock, [&] { return !write_queue.empty() || write_closed; });
        if (write_queue.empty()) return;
        while (!write_queue.empty()) {
          group.push_back(std::move(write_queue.front()));
          write_queue.pop_front();
        }
        write_cv.notify_all();
      }
      if (!failed && !write_chunks(group)) {
        std::lock_guard lock(write_mutex);
        write_cv.notify_all();  // a producer waiting for room sees `failed`
      }
    }
  });
  auto stop_chunk_writer = [&] {
    {
      std::lock_guard lock(write_mutex);
      write_closed = true;
      write_cv.notify_all();
    }
    if (chunk_writer.joinable()) chunk_writer.join();
  };
  const CallOnExit stop_writer_on_exit{stop_chunk_writer};

  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  // With workers, a segment in flight is a TBB thread waiting on a worker's socket: one
  // thread per worker plus one for the serial stages, however many cores there are.
  // Without, --threads N (default: the cores) sets this process's threads.
  const std::size_t threads = pool ? std::max(cores, workers + 1) : options.threads != 0 ? options.threads : cores;
  std::optional<tbb::global_control> parallelism;
  if (pool || options.threads != 0) parallelism.emplace(tbb::global_control::max_allowed_parallelism, threads);
  tbb::task_arena arena(static_cast<int>(threads));
  const std::size_t tokens = options.max_in_flight != 0 ? options.max_in_flight : pool ? workers + 1 : 2 * threads;
  BatchWork current;  // the batch the pipeline takes its segments from
  std::size_t current_next = 0;
  arena.execute([&] {
  tbb::parallel_pipeline(
      tokens,
      tbb::make_filter<void, std::shared_ptr<SegmentWork>>(
          tbb::filter_mode::serial_in_order,
          [&](tbb::flow_control& fc) -> std::shared_ptr<SegmentWork> {
            while (current_next >= current.size()) {
              std::unique_lock lock(plan_mutex);
              plan_cv.wait(lock, [&] { return !ready.empty() || planner_done || failed; });
              if (ready.empty() || failed) {
                fc.stop();
                return nullptr;
              }
              current = std::move(ready.front());
              ready.pop_front();
              current_next = 0;
              plan_cv.notify_all();
            }
            if (failed) {
              fc.stop();
              return nullptr;
            }
            std::shared_ptr<SegmentWork> work = std::move(current[current_next++]);
            // The worker reads the segment from the XOF itself.
            if (pool || work->cards.empty()) return work;
            auto raw = reader.read_segment(work->xof_segment);
            if (!raw) {
              fail(raw.error());
              fc.stop();
              return nullptr;
            }
            work->raw = std::move(*raw);
            return work;
          }) &
          tbb::make_filter<std::shared_ptr<SegmentWork>, std::shared_ptr<SegmentWork>>(
              tbb::filter_mode::parallel,
              [&](std::shared_ptr<SegmentWork> work) -> std::shared_ptr<SegmentWork> {
                if (!work || failed || work->cards.empty()) return work;
                if (pool) {
                  if (auto s = pool->prepare(*work); !s) fail(s.error());
                  return work;
                }
                auto reg = readers.lease();
                if (!reg) {
                  fail(reg.error());
                  return work;
                }
                if (auto s = prepare_segment(*work, *reg->get(), context); !s) fail(s.error());
                return work;
              }) &
          tbb::make_filter<std::shared_ptr<SegmentWork>, std::shared_ptr<SegmentWork>>(
              tbb::filter_mode::serial_in_order,
              [&](std::shared_ptr<SegmentWork> work) -> std::shared_ptr<SegmentWork> {
                if (!work || failed) return work;
                // Card by card in XOF order: a reject (the registry's or prep's) goes to
                // the report (and the journal), a prepared card to the pending bundle
                // segment. Bundle segments hold segment_cards prepared cards each,
                // whatever the XOF segments and the rejects were.
                auto add_reject = [&](const Reject& reject) {
                  if (auto s = rejects.add(reject); !s) {
                    fail(s.error());
                    return false;
                  }
                  journal_rejects.push_back(reject_to_json(reject));
                  return true;
                };
                std::size_t d = 0;
                std::size_t r = 0;
                std::size_t g = 0;
                const auto& registry_rejects = work->registry_rejects;
                for (std::size_t c = 0; c < work->outcome.size(); ++c) {
                  const std::uint64_t selection = work->cards[c].selection;
                  for (; g < registry_rejects.size() && registry_rejects[g].first < selection; ++g) {
                    if (!add_reject(registry_rejects[g].second)) return work;
                  }
                  if (work->outcome[c] == 0) {
                    if (!add_reject(work->rejects[r++])) return work;
                    continue;
                  }
                  pending.push_back(std::move(work->done[d++]));
                  ++result.prepared;
                  if (pending.size() == bh.segment_cards) work->chunks.push_back(cut_chunk(selection + 1));
                }
                for (; g < registry_rejects.size(); ++g) {
                  if (!add_reject(registry_rejects[g].second)) return work;
                }
                work->done.clear();
                progress.update(result.prepared);
                return work;
              }) &
          tbb::make_filter<std::shared_ptr<SegmentWork>, std::shared_ptr<SegmentWork>>(
              tbb::filter_mode::parallel,
              [&](std::shared_ptr<SegmentWork> work) -> std::shared_ptr<SegmentWork> {
                if (!work || failed) return work;
                for (auto& chunk : work->chunks) {
                  if (!encode_chunk(chunk)) break;
                }
                return work;
              }) &
          tbb::make_filter<std::shared_ptr<SegmentWork>, void>(
              tbb::filter_mode::serial_in_order, [&](std::shared_ptr<SegmentWork> work) {
                if (!work || failed) return;
                for (auto& chunk : work->chunks) queue_chunk(std::move(chunk));
              }));
  });
  stop_planner();
  if (!failed && !pending.empty()) {
    BundleChunk last = cut_chunk(selected);
    if (encode_chunk(last)) queue_chunk(std::move(last));
  }
  stop_chunk_writer();  // every queued segment written (or the run failed)
  // A journal that disagrees with the registry is the operator's to sort out (the right
  // registry, the right run directory): nothing was reserved or prepared, so the run stays
  // resumable and its reservation `reserved`.
  if (failed && jc.resuming && journal_mismatch) {
    jc.failure_ends_run = false;  // a refused resume: no `failed` record
    return *failure;
  }
  if (failed) return burn(*failure);
  if (pool) {
    // Every worker ends cleanly (a worker that cannot is an error, though its cards are in).
    if (auto s = pool->stop(); !s) return burn(s.error());
  }
  if (!was_complete) {
    // Every card is in a journaled segment or a reject: a resume from here only publishes.
    if (auto s = journal.append({{"record", "complete"},
                                 {"next_card", selected},
                                 {"cards", result.prepared},
                                 {"rejects", std::move(journal_rejects)}});
        !s) {
      return burn(s.error());
    }
  }

  result.rejects = rejects.count();
  result.rejects_by_category = rejects.by_category();
  result.counters_burnt = result.counters_reserved - result.prepared * info.values_per_card;
  if (options.max_rejects && options.max_rejects->exceeded(result.rejects, result.selected)) {
    PF_TRY(rejects.commit());
    return burn(Error(ErrorCode::kRejectLimit,
                      options.xof_path + ": " + std::to_string(result.rejects) + " of " +
                          std::to_string(result.selected) + " cards rejected, more than --max-rejects " +
                          options.max_rejects->to_string() + " allows; no bundle was published" +
                          (options.rejects_path.empty() ? "" : " (rejects: " + options.rejects_path + ")")));
  }
  auto digest = writer->finish(*k.integrity);
  if (!digest) return burn(digest.error());
  // Published: an error from here on leaves the run resumable (the resume writes the
  // same bundle again and finishes the bookkeeping).
  jc.failure_ends_run = false;
  result.bundle_sha256 = to_hex(*digest);
  PF_TRY(registry.mark_published(reservation_id, result.bundle_sha256));
  PF_TRY(journal.append({{"record", "published"}, {"sha256", result.bundle_sha256}}));
  PF_TRY(rejects.commit());
  PF_TRY_CTX(audit.finish({{"outputs", {{{"kind", "bundle"}, {"path", std::filesystem::absolute(options.output_path).string()},
                                         {"sha256", result.bundle_sha256}}}},
                           {"reservation", {{"id", reservation_id}, {"state", "published"},
                                            {"counters", result.counters_reserved},
                                            {"burnt", result.counters_burnt}}},
                           {"cards", result.prepared},
                           {"rejects", result.rejects}}),
             "the bundle is published, but the audit log did not record the run's end");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  nlohmann::ordered_json report;
  report["command"] = "prep";
  report["status"] = "ok";
  report["run_id"] = info.run_id;
  report["operator"] = info.operator_name;
  report["profile"] = {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)},
                       {"product", prep.product}};
  report["key_handling"] = key_handling_report(prep, &k);
  report["input"] = {{"xof", options.xof_path}, {"sha256", xof_digest}, {"registry", options.registry_path}};
  report["reservation"] = {{"id", reservation_id},
                           {"counters_reserved", result.counters_reserved},
                           {"counters_burnt", result.counters_burnt}};
  report["output"] = {{"path", options.output_path},
                      {"sha256", result.bundle_sha256},
                      {"cards", result.prepared},
                      {"apdus", result.apdus}};
  report["rejects"] = {{"count", result.rejects},
                       {"by_category", result.rejects_by_category},
                       {"path", options.rejects_path.empty() ? nlohmann::ordered_json(nullptr)
                                                             : nlohmann::ordered_json(options.rejects_path)}};
  report["selected"] = result.selected;
  report["hsm_retries"] = total_retries();
  report["workers"] = {{"processes", workers}, {"started", pool ? pool->processes_started() : 0},
                       {"recycle_cards", pool ? nlohmann::ordered_json(options.worker_recycle_cards) : nlohmann::ordered_json(nullptr)}};
  report["seconds"] = result.seconds;
  report["cards_per_second"] = result.seconds > 0 ? static_cast<double>(result.prepared) / result.seconds : 0.0;
  result.report_json = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return result;
}

}  // namespace

}  // namespace persoflow::pipeline
