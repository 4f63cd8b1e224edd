#include "pipeline/prep_command.h"

#include <openssl/evp.h>
#include <tbb/parallel_pipeline.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
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
#include "formats/xof_reader.h"
#include "hsm/hsm_card_keys.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_derivation.h"
#include "pipeline/prep_stages.h"
#include "pipeline/progress.h"
#include "pipeline/reject_report.h"
#include "pipeline/run_audit.h"

namespace persoflow::pipeline {
namespace {

// A card to prepare: where it is in the XOF, and (after the reservation) its counter.
struct PlannedCard {
  std::uint32_t segment = 0;
  std::uint32_t index = 0;      // within the segment
  std::uint64_t position = 0;   // 1-based in the XOF
  std::int64_t se_row = 0;
  std::uint32_t counter = 0;
};

// What the parallel stage needs for one XOF segment.
struct SegmentWork {
  std::uint32_t xof_segment = 0;
  formats::XofSegment raw;
  std::vector<PlannedCard> cards;
  std::vector<formats::SeRecord> ses;  // one per card
  // filled by the parallel stage
  std::vector<formats::BundleCard> done;
  std::vector<Reject> rejects;
  std::uint64_t apdus = 0;
};

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

Result<PrepResult> run_prep_body(const PrepOptions& options, hsm::KeyStore& keys, RunAudit& audit);

}  // namespace

Result<PrepResult> run_prep(const PrepOptions& given, hsm::KeyStore& keys) {
  PrepOptions options = given;
  if (options.run_id.empty()) options.run_id = default_run_id("prep");
  RunAudit audit(options.audit_log, "prep", options.run_id);
  auto r = run_prep_body(options, keys, audit);
  if (!r) return audit.fail(std::move(r).error());
  return r;
}

namespace {

Result<PrepResult> run_prep_body(const PrepOptions& options, hsm::KeyStore& keys, RunAudit& audit) {
  const auto started = std::chrono::steady_clock::now();
  PF_ASSIGN_OR_RETURN(const Profile profile, config::load_profile(options.profile_path));
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

  PF_ASSIGN_OR_RETURN(formats::SeRegistry registry, formats::SeRegistry::open(options.registry_path, false));
  PF_ASSIGN_OR_RETURN(const std::string xof_digest, sha256_file_hex(options.xof_path));

  // Pass 1: which cards, and the SE each one names.
  std::vector<PlannedCard> plan;
  std::vector<formats::SeLookup> lookups;
  std::unordered_map<std::string, bool> wanted;
  for (const auto& id : options.cards.ids) wanted.emplace(id, false);
  std::uint64_t position = 0;
  for (std::size_t s = 0; s < reader.segment_count(); ++s) {
    PF_ASSIGN_OR_RETURN(formats::XofSegment raw, reader.read_segment(s));
    const bool needed = options.cards.kind != CardSelection::Kind::kIds ||
                        std::any_of(raw.card_ids.begin(), raw.card_ids.end(),
                                    [&](const std::string& id) { return wanted.count(id) != 0; });
    if (!needed) {
      position += raw.card_ids.size();
      continue;
    }
    PF_ASSIGN_OR_RETURN(std::vector<formats::XofCard> cards, reader.decode_segment(raw, k.class_ptrs));
    for (std::size_t i = 0; i < cards.size(); ++i) {
      ++position;
      bool take = true;
      if (options.cards.kind == CardSelection::Kind::kRange) {
        take = position >= options.cards.first && position <= options.cards.last;
      } else if (options.cards.kind == CardSelection::Kind::kIds) {
        auto it = wanted.find(cards[i].card_id);
        take = it != wanted.end();
        if (take) it->second = true;
      }
      if (!take) continue;
      plan.push_back({static_cast<std::uint32_t>(s), static_cast<std::uint32_t>(i), position, 0, 0});
      lookups.push_back({prep.se.kind == SeKeyKind::kMsi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId,
                         se_key_of(cards[i], se_index)});
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
  if (options.cards.kind == CardSelection::Kind::kRange && options.cards.last > position) {
    return Error(ErrorCode::kInvalidArgument, "--cards " + std::to_string(options.cards.first) + "-" +
                                                  std::to_string(options.cards.last) + ": the XOF holds " +
                                                  std::to_string(position) + " cards");
  }

  PrepResult result;
  result.selected = plan.size();
  PF_ASSIGN_OR_RETURN(RejectReport rejects, RejectReport::create(options.rejects_path));

  // The reservation: one transaction, committed before any script exists.
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
    PF_TRY(audit.start({{"profile", {{"id", profile.id}, {"version", profile.version}, {"sha256", to_hex(profile.sha256)}}},
                        {"input", {{"path", std::filesystem::absolute(options.xof_path).string()}, {"sha256", xof_digest}}},
                        {"registry", std::filesystem::absolute(options.registry_path).string()},
                        {"selected", plan.size()},
                        {"keys", keys_used}}));
  }
  PF_ASSIGN_OR_RETURN(formats::Reservation reservation, registry.reserve(lookups, info));
  if (auto a = audit.reserve({{"registry", std::filesystem::absolute(options.registry_path).string()},
                              {"reservation_id", reservation.id},
                              {"batch", 0},
                              {"counters", reservation.reserved * info.values_per_card},
                              {"rejected", lookups.size() - reservation.reserved}});
      !a) {
    (void)registry.mark_burnt(reservation.id);
    return with_context(a.error(), "reservation " + std::to_string(reservation.id) + " burnt");
  }
  result.reservation_id = reservation.id;
  result.counters_reserved = reservation.reserved * info.values_per_card;

  // From here on, any failure burns the reservation (its values are never reused anyway;
  // the state says so to the operator).
  auto burn = [&](Error e) -> Error {
    (void)registry.mark_burnt(reservation.id);
    e.add_context("reservation " + std::to_string(reservation.id) + " burnt");
    return e;
  };

  std::vector<PlannedCard> planned;
  planned.reserve(reservation.reserved);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const formats::CardReservation& r = reservation.cards[i];
    if (!r.ok) {
      // The XOF holds the card id in clear-revealable form (the profile requires it).
      if (auto s = rejects.add(Reject{plan[i].position, 0, "", prep.se.attribute, "registry", r.reject_reason, ""}); !s) {
        return burn(s.error());
      }
      continue;
    }
    plan[i].se_row = r.se_row;
    plan[i].counter = r.counter;
    planned.push_back(plan[i]);
  }
  plan.clear();
  plan.shrink_to_fit();
  lookups.clear();
  lookups.shrink_to_fit();

  formats::BundleHeader bh;
  bh.xof_sha256 = from_hex(xof_digest).value();
  bh.profile_sha256 = profile.sha256;
  bh.reservation_id = reservation.id;
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

  CardPreparer preparer(profile, header, keys, k);
  ProgressLine progress("prep");
  std::size_t next = 0;
  std::uint32_t next_bundle_segment = 0;
  std::vector<formats::BundleCard> pending;
  std::optional<Error> failure;
  std::mutex failure_mutex;
  auto fail = [&](Error e) {
    std::lock_guard lock(failure_mutex);
    if (!failure) failure = std::move(e);
  };
  auto flush_pending = [&]() -> bool {
    auto enc = formats::encode_bundle_segment(bh, next_bundle_segment++, pending);
    if (!enc) {
      fail(enc.error());
      return false;
    }
    if (auto s = writer->append(*enc); !s) {
      fail(s.error());
      return false;
    }
    pending.clear();
    return true;
  };
  const std::size_t tokens = options.max_in_flight != 0 ? options.max_in_flight
                                                        : 2 * std::max(1u, std::thread::hardware_concurrency());

  tbb::parallel_pipeline(
      tokens,
      tbb::make_filter<void, std::shared_ptr<SegmentWork>>(
          tbb::filter_mode::serial_in_order,
          [&](tbb::flow_control& fc) -> std::shared_ptr<SegmentWork> {
            if (next >= planned.size() || failure) {
              fc.stop();
              return nullptr;
            }
            auto work = std::make_shared<SegmentWork>();
            work->xof_segment = planned[next].segment;
            while (next < planned.size() && planned[next].segment == work->xof_segment) {
              auto se = registry.get_row(planned[next].se_row);
              if (!se) {
                fail(se.error());
                fc.stop();
                return nullptr;
              }
              work->ses.push_back(std::move(*se));
              work->cards.push_back(planned[next++]);
            }
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
                if (!work || failure) return work;
                auto cards = reader.decode_segment(work->raw, k.class_ptrs);
                if (!cards) {
                  fail(cards.error());
                  return work;
                }
                for (std::size_t c = 0; c < work->cards.size(); ++c) {
                  const PlannedCard& p = work->cards[c];
                  const formats::XofCard& card = (*cards)[p.index];
                  auto prepared = preparer.prepare(card, work->ses[c], p.counter);
                  if (prepared) {
                    for (const auto& s : prepared->sessions) work->apdus += s.apdus.size();
                    work->done.push_back(std::move(*prepared));
                  } else if (prepared.error().code() == ErrorCode::kInvalidArgument ||
                             prepared.error().code() == ErrorCode::kParse) {
                    // This card's data cannot make a script: it alone is rejected; its
                    // counter value stays burnt.
                    work->rejects.push_back(Reject{p.position, 0, card.card_id, "", "prep",
                                                   prepared.error().message() + " (counter " +
                                                       std::to_string(p.counter) + " burnt)",
                                                   ""});
                  } else {
                    fail(with_context(prepared.error(), "card " + card.card_id));
                    return work;
                  }
                }
                return work;
              }) &
          tbb::make_filter<std::shared_ptr<SegmentWork>, void>(
              tbb::filter_mode::serial_in_order, [&](std::shared_ptr<SegmentWork> work) {
                if (!work || failure) return;
                for (const Reject& r : work->rejects) {
                  if (auto s = rejects.add(r); !s) {
                    fail(s.error());
                    return;
                  }
                }
                // Bundle segments hold segment_cards prepared cards each, in XOF order,
                // whatever the XOF segments and the rejects were.
                for (auto& card : work->done) {
                  pending.push_back(std::move(card));
                  if (pending.size() == bh.segment_cards && !flush_pending()) return;
                }
                result.prepared += work->done.size();
                result.apdus += work->apdus;
                progress.update(result.prepared);
              }));
  if (!failure && !pending.empty()) flush_pending();
  if (failure) return burn(*failure);

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
  result.bundle_sha256 = to_hex(*digest);
  PF_TRY(registry.mark_published(reservation.id, result.bundle_sha256));
  PF_TRY(rejects.commit());
  PF_TRY_CTX(audit.finish({{"outputs", {{{"kind", "bundle"}, {"path", std::filesystem::absolute(options.output_path).string()},
                                         {"sha256", result.bundle_sha256}}}},
                           {"reservation", {{"id", reservation.id}, {"state", "published"},
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
  report["key_handling"] = key_handling_report(prep);
  report["input"] = {{"xof", options.xof_path}, {"sha256", xof_digest}, {"registry", options.registry_path}};
  report["reservation"] = {{"id", reservation.id},
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
  report["hsm_retries"] = preparer.retries();
  report["seconds"] = result.seconds;
  report["cards_per_second"] = result.seconds > 0 ? static_cast<double>(result.prepared) / result.seconds : 0.0;
  result.report_json = report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return result;
}

}  // namespace

}  // namespace persoflow::pipeline
