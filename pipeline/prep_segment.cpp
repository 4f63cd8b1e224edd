#include "pipeline/prep_segment.h"

#include <algorithm>
#include <utility>

namespace persoflow::pipeline {
namespace {

Status find_ses(SegmentWork& work, formats::SeRegistry& registry, const SegmentContext& context) {
  // Every card's row came with its reservation.
  if (!work.cards.empty() && work.ses.size() == work.cards.size()) return ok_status();
  work.ses.clear();
  const bool by_row = std::all_of(work.cards.begin(), work.cards.end(), [](const PlannedCard& p) { return p.se_row != 0; });
  if (by_row) {
    std::vector<std::int64_t> rows;
    rows.reserve(work.cards.size());
    for (const PlannedCard& p : work.cards) rows.push_back(p.se_row);
    PF_ASSIGN_OR_RETURN(work.ses, registry.get_rows(rows));
    return ok_status();
  }
  // --resume: the reservation's rows are not journaled; each SE is found again by the key
  // its card names (the reservation checked they are the same SEs).
  work.ses.reserve(work.cards.size());
  for (std::size_t c = 0; c < work.cards.size(); ++c) {
    const PlannedCard& p = work.cards[c];
    if (p.se_row != 0) {
      PF_ASSIGN_OR_RETURN(formats::SeRecord se, registry.get_row(p.se_row));
      work.ses.push_back(std::move(se));
      continue;
    }
    const std::string& key = c < work.se_keys.size() ? work.se_keys[c] : std::string();
    PF_ASSIGN_OR_RETURN(auto se, registry.find({context.lookup_kind, key}));
    if (!se) {
      return Error(ErrorCode::kNotFound, "SE registry " + context.registry_path + ": SE '" + key +
                                             "' of a reserved card is no longer in the registry");
    }
    work.ses.push_back(std::move(*se));
  }
  return ok_status();
}

}  // namespace

Status prepare_segment(SegmentWork& work, formats::SeRegistry& registry, const SegmentContext& context) {
  PF_TRY(find_ses(work, registry, context));
  const std::string where = context.xof_path + ": segment " + std::to_string(work.xof_segment);
  PF_ASSIGN_OR_RETURN(std::vector<formats::XofCard> cards,
                      formats::decode_xof_segment(*context.header, work.raw, context.class_keys, where));
  // The segment's cards as one batch: in key-handling="host" the HSM derives all their
  // keys and host challenges in a few calls (CardPreparer).
  std::vector<const formats::XofCard*> batch;
  std::vector<std::uint32_t> counters;
  batch.reserve(work.cards.size());
  counters.reserve(work.cards.size());
  for (const PlannedCard& p : work.cards) {
    if (p.index >= cards.size()) {
      return Error(ErrorCode::kInvalidArgument, where + " has no card " + std::to_string(p.index));
    }
    batch.push_back(&cards[p.index]);
    counters.push_back(p.counter);
  }
  auto results = context.preparer->prepare_batch(batch, work.ses, counters);
  for (std::size_t c = 0; c < work.cards.size(); ++c) {
    const PlannedCard& p = work.cards[c];
    const formats::XofCard& card = *batch[c];
    auto& prepared = results[c];
    if (prepared) {
      for (const auto& s : prepared->sessions) work.apdus += s.apdus.size();
      work.done.push_back(std::move(*prepared));
      work.outcome.push_back(1);
    } else if (prepared.error().code() == ErrorCode::kInvalidArgument ||
               prepared.error().code() == ErrorCode::kParse) {
      // This card's data cannot make a script: it alone is rejected; its counter value
      // stays burnt.
      work.rejects.push_back(Reject{p.position, 0, card.card_id, "", "prep",
                                    prepared.error().message() + " (counter " + std::to_string(p.counter) + " burnt)",
                                    ""});
      work.outcome.push_back(0);
    } else {
      return with_context(prepared.error(), "card " + card.card_id);
    }
  }
  return ok_status();
}

}  // namespace persoflow::pipeline
