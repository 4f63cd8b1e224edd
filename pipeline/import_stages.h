// The node bodies of the import flow graph (pipeline/import_graph.cpp), as named
// functors with plain signatures so that each can be unit-tested without TBB.
//
//   EnvelopeSource (serial)  -> RecordParser (parallel) -> SegmentAssembler (serial, in order)
//   -> SegmentEncoder (parallel) -> OutputWriter (serial, in order)
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/key_ops.h"
#include "engine/profile.h"
#include "formats/record_splitter.h"
#include "formats/xof_format.h"
#include "formats/xof_segment.h"
#include "hsm/hsm_keys.h"
#include "pipeline/card_id_set.h"
#include "pipeline/envelope_source.h"
#include "pipeline/reject_report.h"
#include "pipeline/run_state.h"

namespace persoflow::pipeline {

// The HSM keys of one import, looked up once (by URI, through the key store's cache).
struct ImportKeys {
  std::vector<std::unique_ptr<hsm::HsmAeadKey>> class_keys;  // by key-class index
  std::vector<AeadKey*> class_key_ptrs;
  std::unique_ptr<hsm::HsmMacKey> integrity;
  // Per attribute index: the issuer's field key and the DKep the value moves to, for
  // field-encrypted attributes; nullopt otherwise.
  std::vector<std::optional<hsm::KeyInfo>> field_keys;
  std::vector<std::optional<hsm::KeyInfo>> field_targets;

  static Result<ImportKeys> resolve(const Profile& profile, hsm::KeyStore& keys);
};

// Moves field-encrypted values (wrapped under the issuer's field key) to their key class's
// DKep, inside the HSM: in this process (HsmFieldTranslator), or in import worker
// processes (pipeline/import_workers.h). The values never leave the HSM in clear.
class FieldTranslator {
 public:
  struct Request {
    std::uint32_t attribute = 0;  // index in the profile's attributes
    std::span<const std::uint8_t> wrapped;
  };
  virtual ~FieldTranslator() = default;
  // One result per request, in order: the value wrapped under its DKep, or why not
  // (kIntegrity: it does not unwrap under its field key; anything else stops the run).
  // `cards` is how many cards the requests belong to. The outer error stops the run.
  virtual Result<std::vector<Result<Bytes>>> translate(std::span<const Request> requests, std::size_t cards) const = 0;
  // HSM calls done again after a transient error so far (the run report's hsm_retries).
  virtual std::uint64_t retries() const = 0;
};

// In this process: each value in turn, a transient HSM error (device error, lost session)
// retried on a fresh session (the translation is deterministic: a retried value is the
// same).
class HsmFieldTranslator : public FieldTranslator {
 public:
  HsmFieldTranslator(hsm::KeyStore& keys, const ImportKeys& import_keys) : keys_(keys), import_keys_(import_keys) {}
  Result<std::vector<Result<Bytes>>> translate(std::span<const Request> requests, std::size_t cards) const override;
  std::uint64_t retries() const override { return retries_.load(); }

 private:
  hsm::KeyStore& keys_;
  const ImportKeys& import_keys_;
  mutable std::atomic<std::uint64_t> retries_{0};
};

struct ParsedBatch {
  std::uint64_t seq = 0;
  bool last = false;
  std::vector<formats::XofCard> cards;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> card_records;  // (record number, offset) per card
  std::vector<Reject> rejects;
};

// Parses, validates and (for field-encrypted attributes) translates each record. A
// batch's field-encrypted values go to the translator together, after every record of
// the batch is parsed; a card is rejected for the first of its problems in attribute
// order, whichever translator.
class RecordParser {
 public:
  RecordParser(const Profile& profile, const FieldTranslator& translator, RunState& state)
      : profile_(profile), translator_(translator), state_(state) {}
  ParsedBatch operator()(RecordBatch batch) const;
  // `import --resume`: records and stream problems at stream offsets up to `offset` (the
  // last card of the last journaled segment) are dropped unparsed: their cards are in the
  // spooled segments, their rejects in the journal. Set before the graph runs.
  void skip_through(std::uint64_t offset) { skip_through_ = offset; }

 private:
  // A parsed record waiting for its field-encrypted values.
  struct Pending {
    const formats::Record* record = nullptr;
    formats::XofCard card;
    std::vector<std::pair<std::uint32_t, std::size_t>> values;  // (attribute, index in the batch's blobs)
    std::optional<Reject> reject;  // a problem after those attributes
  };
  // nullopt and a reject, or the card (its field-encrypted values in `blobs`).
  std::optional<Pending> parse_one(const formats::Record& record, std::vector<Reject>& rejects,
                                   std::vector<Bytes>& blobs) const;

  const Profile& profile_;
  const FieldTranslator& translator_;
  RunState& state_;
  std::optional<std::uint64_t> skip_through_;
};

struct ImportSegmentWork {
  std::uint32_t number = 0;
  std::vector<formats::XofCard> cards;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> card_records;  // (record number, offset) per card
};

struct AssembledBatch {
  std::uint64_t seq = 0;
  bool last = false;
  std::vector<ImportSegmentWork> segments;
  std::vector<Reject> rejects;
  std::uint64_t cards = 0;
};

// Groups cards into segments of the profile's size, in record order; rejects a card
// whose id was already seen in this file. The ids seen spill to an unnamed file in
// `spill_directory` (the output's directory; card_id_set.h): an I/O error there fails the
// run through `state`.
class SegmentAssembler {
 public:
  SegmentAssembler(std::size_t segment_cards, std::string spill_directory, RunState& state)
      : segment_cards_(segment_cards), seen_ids_(std::move(spill_directory)), state_(state) {}
  AssembledBatch operator()(ParsedBatch batch);
  // `import --resume`: segments 0..next_number-1 are already written; `ids` are their
  // cards' ids (a later record with one of them is a duplicate).
  Status resume(std::uint32_t next_number, const std::vector<std::string>& ids);

 private:
  std::size_t segment_cards_;
  ImportSegmentWork current_;
  std::uint32_t next_number_ = 0;
  CardIdSet seen_ids_;
  RunState& state_;
};

struct EncodedBatch {
  std::uint64_t seq = 0;
  bool last = false;
  std::vector<formats::EncodedSegment> segments;
  // Per segment: (record number, stream offset) of its last card (the run journal's
  // resume point).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> segment_last_records;
  std::vector<Reject> rejects;
  std::uint64_t cards = 0;
};

// Serializes, compresses and seals each segment under its DKeps in the HSM.
class SegmentEncoder {
 public:
  SegmentEncoder(const formats::XofHeader& header, const ImportKeys& keys, RunState& state)
      : header_(header), keys_(keys), state_(state) {}
  EncodedBatch operator()(AssembledBatch batch) const { return encode(batch); }
  // The same, leaving batch.segments (the clear cards) in place for a later stage
  // (`persoflow run` prepares them); the rejects move to the result.
  EncodedBatch encode(AssembledBatch& batch) const;
  // Segments sealed again after a transient HSM error so far (the run report's hsm_retries).
  std::uint64_t retries() const { return retries_.load(); }

 private:
  const formats::XofHeader& header_;
  const ImportKeys& keys_;
  RunState& state_;
  mutable std::atomic<std::uint64_t> retries_{0};
};

}  // namespace persoflow::pipeline
