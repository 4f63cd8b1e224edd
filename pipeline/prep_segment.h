// The unit of prep's parallel work: the planned cards of one XOF segment, prepared as one
// batch. prep runs prepare_segment() in its own threads, or sends the segment to a worker
// process (pipeline/prep_workers.h) that runs the same function against its own PKCS#11
// module; either way the cards' bytes are the same.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/key_ops.h"
#include "engine/result.h"
#include "formats/bundle.h"
#include "formats/se_registry.h"
#include "formats/xof_reader.h"
#include "pipeline/prep_stages.h"
#include "pipeline/reject_report.h"

namespace persoflow::pipeline {

// A card to prepare: where it is in the XOF, and (after the reservation) its counter.
struct PlannedCard {
  std::uint32_t segment = 0;
  std::uint32_t index = 0;      // within the segment
  std::uint64_t position = 0;   // 1-based in the XOF
  std::int64_t se_row = 0;      // 0 on --resume: the SE is found by its lookup key
  std::uint32_t counter = 0;
  std::uint64_t selection = 0;  // 0-based among the run's selected cards (the parent's bookkeeping)
};

// One bundle segment on its way out of prep's pipeline: cut from the prepared cards in
// order, compressed on any thread, written in order (pipeline/prep_command.cpp).
struct BundleChunk {
  std::uint32_t number = 0;
  std::vector<formats::BundleCard> cards;   // until encoded
  std::uint64_t next_card = 0;              // selected cards before it are in a segment or a reject
  nlohmann::ordered_json journal_rejects;   // the rejects since the previous segment record
  formats::BundleEncodedSegment encoded;
  std::size_t card_count = 0;
  std::uint64_t apdus = 0;
};

// What the parallel stage needs for one XOF segment, and what it gives back.
struct SegmentWork {
  std::uint32_t xof_segment = 0;
  formats::XofSegment raw;             // read by the caller when prepared in this process
  // `run`: the segment's bytes as sealed for the XOF being written (no XOF is published
  // yet for a worker to read it from); empty: a worker reads segment xof_segment itself.
  std::span<const std::uint8_t> sealed;
  std::vector<PlannedCard> cards;
  std::vector<std::string> se_keys;    // per card: its SE lookup key where se_row is 0, else empty
  std::vector<formats::SeRecord> ses;  // one per card (filled by prepare_segment)
  // filled by prepare_segment
  std::vector<formats::BundleCard> done;
  std::vector<Reject> rejects;
  std::vector<std::uint8_t> outcome;  // per card, in order: 1 in `done`, 0 in `rejects`
  std::uint64_t apdus = 0;
  // The segment's cards the registry could not serve, with their selection indexes (the
  // parent's bookkeeping: they go to the report in XOF order, between the prepared ones).
  std::vector<std::pair<std::uint64_t, Reject>> registry_rejects;
  std::vector<BundleChunk> chunks;    // the bundle segments its cards completed (prep's output)
};

// The page cache of a registry connection that only reads SE rows (prep's threads and
// workers), in KiB: prepare_segment reads each row once.
inline constexpr std::int64_t kReaderCacheKib = 4096;

// What prepare_segment() works with: one per process, shared by its threads.
struct SegmentContext {
  const formats::XofHeader* header = nullptr;  // the XOF's (its reader's, or the one `run` writes)
  std::string xof_path;                        // for messages
  std::span<AeadKey* const> class_keys;
  CardPreparer* preparer = nullptr;
  formats::SeLookupKind lookup_kind = formats::SeLookupKind::kSeId;
  std::string registry_path;  // for messages
};

// The SEs of the segment's cards (one registry read transaction when every card has its
// row), its cards decoded with the DKeps and prepared as one batch. A card whose data
// cannot make a script is rejected alone (its counter stays burnt); any other error is
// returned and stops the run.
Status prepare_segment(SegmentWork& work, formats::SeRegistry& registry, const SegmentContext& context);

}  // namespace persoflow::pipeline
