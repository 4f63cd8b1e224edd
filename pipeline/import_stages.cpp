#include "pipeline/import_stages.h"

#include <functional>
#include <variant>

#include "engine/attribute_rules.h"
#include "formats/record_fields.h"
#include "hsm/ck_rv.h"

namespace persoflow::pipeline {
namespace {

// Calls `f` up to 3 times while it fails with a transient HSM error
// (hsm::rv_is_transient), counting each new attempt in `retries`; the last result
// otherwise.
template <typename F>
auto with_transient_retry(std::atomic<std::uint64_t>& retries, F&& f) -> decltype(f()) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto r = f();
    if (r.has_value() || attempt == kAttempts) return r;
    const auto rv = r.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) return r;
    ++retries;
  }
}

}  // namespace

namespace {

std::string_view as_text(const SecureBytes& b) {
  auto v = b.reveal();
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

Result<ImportKeys> ImportKeys::resolve(const Profile& profile, hsm::KeyStore& keys) {
  ImportKeys k;
  for (const KeyClass& c : profile.key_classes) {
    auto info = keys.find(c.dkep_uri);
    if (!info) return std::move(info).error().add_context("key class '" + c.name + "'");
    k.class_keys.push_back(std::make_unique<hsm::HsmAeadKey>(keys, *info));
    k.class_key_ptrs.push_back(k.class_keys.back().get());
  }
  auto integrity = keys.find(profile.integrity_key_uri);
  if (!integrity) return std::move(integrity).error().add_context("XOF integrity key");
  k.integrity = std::make_unique<hsm::HsmMacKey>(keys, *integrity);
  for (const AttributeSpec& a : profile.attributes) {
    if (a.field_encryption == FieldEncryption::kNone) {
      k.field_keys.emplace_back();
      k.field_targets.emplace_back();
      continue;
    }
    auto field_key = keys.find(a.field_key_uri);
    if (!field_key) return std::move(field_key).error().add_context("field key of attribute '" + a.name + "'");
    const KeyClass* cls = profile.key_class(a.key_class);
    auto target = keys.find(cls->dkep_uri);
    if (!target) return std::move(target).error().add_context("key class '" + cls->name + "'");
    k.field_keys.emplace_back(*field_key);
    k.field_targets.emplace_back(*target);
  }
  return k;
}

Result<std::vector<Result<Bytes>>> HsmFieldTranslator::translate(std::span<const Request> requests,
                                                                  std::size_t /*cards*/) const {
  std::vector<Result<Bytes>> out;
  out.reserve(requests.size());
  for (const Request& r : requests) {
    if (r.attribute >= import_keys_.field_keys.size() || !import_keys_.field_keys[r.attribute]) {
      return Error(ErrorCode::kInternal, "attribute " + std::to_string(r.attribute) + " is not field-encrypted");
    }
    out.push_back(with_transient_retry(retries_, [&] {
      return hsm::translate_wrapped_secret(keys_, *import_keys_.field_keys[r.attribute],
                                           *import_keys_.field_targets[r.attribute], r.wrapped);
    }));
  }
  return out;
}

std::optional<RecordParser::Pending> RecordParser::parse_one(const formats::Record& record,
                                                             std::vector<Reject>& rejects,
                                                             std::vector<Bytes>& blobs) const {
  Pending p;
  p.record = &record;
  auto make = [&](std::string card_id, std::string field, std::string category, std::string reason,
                  std::string shown = {}) {
    return Reject{record.number, record.offset, std::move(card_id), std::move(field), std::move(category),
                  std::move(reason), std::move(shown)};
  };
  // A problem before any field-encrypted value is the card's reject now; after one, it
  // waits for the translation (a value that does not unwrap comes first).
  auto reject = [&](Reject r) -> std::optional<Pending> {
    if (p.values.empty()) {
      rejects.push_back(std::move(r));
      return std::nullopt;
    }
    p.reject = std::move(r);
    return p;
  };
  auto fields = formats::extract_fields(profile_, record);
  if (!fields) return reject(make("", "", "malformed", fields.error().message()));

  formats::XofCard& card = p.card;
  if (const SecureBytes* id = fields->value(profile_.card_id_attribute)) card.card_id = std::string(as_text(*id));
  card.values.resize(profile_.attributes.size());
  for (std::size_t i = 0; i < profile_.attributes.size(); ++i) {
    const AttributeSpec& a = profile_.attributes[i];
    auto& field = fields->fields[i];
    if (!field.value) {
      if (a.required) return reject(make(card.card_id, a.name, "missing", "required attribute is missing"));
      continue;
    }
    const std::string_view text = as_text(*field.value);
    if (auto why = check_attribute(a, text)) {
      // "luhn" only when the Luhn check is the one that failed.
      AttributeSpec without_luhn = a;
      without_luhn.luhn = false;
      const bool luhn = a.luhn && !check_attribute(without_luhn, text).has_value();
      return reject(make(card.card_id, a.name, luhn ? "luhn" : "invalid", *why, revealed(a, text)));
    }
    if (a.field_encryption == FieldEncryption::kNone) {
      card.values[i] = std::move(field.value);
      continue;
    }
    // Field-encrypted: the issuer's blob moves key to key inside the HSM (below).
    auto blob = from_hex(text);
    if (!blob) return reject(make(card.card_id, a.name, "field-encryption", "not hex"));
    p.values.emplace_back(static_cast<std::uint32_t>(i), blobs.size());
    blobs.push_back(std::move(*blob));
  }
  return p;
}

ParsedBatch RecordParser::operator()(RecordBatch batch) const {
  ParsedBatch out;
  out.seq = batch.seq;
  out.last = batch.last;
  if (state_.failed()) return out;
  std::vector<Pending> pending;
  std::vector<Bytes> blobs;
  for (auto& item : batch.items) {
    if (skip_through_) {
      const std::uint64_t offset = std::visit([](const auto& i) { return i.offset; }, item);
      if (offset <= *skip_through_) continue;
    }
    if (auto* err = std::get_if<formats::RecordError>(&item)) {
      out.rejects.push_back(Reject{err->number, err->offset, "", "", "malformed", err->reason, ""});
      continue;
    }
    const auto& record = std::get<formats::Record>(item);
    if (auto p = parse_one(record, out.rejects, blobs)) pending.push_back(std::move(*p));
  }
  // The batch's field-encrypted values, translated together.
  std::vector<FieldTranslator::Request> requests;
  requests.reserve(blobs.size());
  std::size_t cards_with_values = 0;
  for (const Pending& p : pending) {
    cards_with_values += p.values.empty() ? 0 : 1;
    for (const auto& [attribute, blob] : p.values) requests.push_back({attribute, blobs[blob]});
  }
  std::vector<Result<Bytes>> moved;
  if (!requests.empty()) {
    auto translated = translator_.translate(requests, cards_with_values);
    if (!translated || translated->size() != requests.size()) {
      Error e = translated ? Error(ErrorCode::kInternal, "the translator answered for other values") : translated.error();
      state_.fail(std::move(e).add_context("records " + std::to_string(pending.front().record->number) + "-" +
                                           std::to_string(pending.back().record->number)));
      return out;
    }
    moved = std::move(*translated);
  }
  for (Pending& p : pending) {
    const formats::Record& record = *p.record;
    bool rejected = false;
    for (const auto& [attribute, blob] : p.values) {
      Result<Bytes>& value = moved[blob];
      if (!value) {
        if (value.error().code() == ErrorCode::kIntegrity) {
          out.rejects.push_back(Reject{record.number, record.offset, p.card.card_id, profile_.attributes[attribute].name,
                                       "field-encryption",
                                       "the field-encrypted value does not unwrap under its field key", ""});
          rejected = true;
          break;
        }
        state_.fail(std::move(value).error().add_context("record " + std::to_string(record.number)));
        return out;
      }
      p.card.values[attribute] = SecureBytes(std::span<const std::uint8_t>(*value));
    }
    if (rejected) continue;
    if (p.reject) {
      out.rejects.push_back(std::move(*p.reject));
      continue;
    }
    out.cards.push_back(std::move(p.card));
    out.card_records.push_back({record.number, record.offset});
  }
  return out;
}

Status SegmentAssembler::resume(std::uint32_t next_number, const std::vector<std::string>& ids) {
  next_number_ = next_number;
  for (const std::string& id : ids) PF_TRY(seen_ids_.insert(id));
  return ok_status();
}

AssembledBatch SegmentAssembler::operator()(ParsedBatch batch) {
  AssembledBatch out;
  out.seq = batch.seq;
  out.last = batch.last;
  out.rejects = std::move(batch.rejects);
  for (std::size_t i = 0; i < batch.cards.size(); ++i) {
    auto& card = batch.cards[i];
    auto is_new = seen_ids_.insert(card.card_id);
    if (!is_new) {
      state_.fail(std::move(is_new).error());
      return out;
    }
    if (!*is_new) {
      out.rejects.push_back(Reject{batch.card_records[i].first, batch.card_records[i].second, card.card_id,
                                   "", "duplicate", "card id already used by an earlier record of this file", ""});
      continue;
    }
    current_.cards.push_back(std::move(card));
    current_.card_records.push_back(batch.card_records[i]);
    ++out.cards;
    if (current_.cards.size() == segment_cards_) {
      current_.number = next_number_++;
      out.segments.push_back(std::move(current_));
      current_ = ImportSegmentWork{};
    }
  }
  if (batch.last && !current_.cards.empty()) {
    current_.number = next_number_++;
    out.segments.push_back(std::move(current_));
    current_ = ImportSegmentWork{};
  }
  // Rejects of one batch in stream order, whichever stage found them.
  std::stable_sort(out.rejects.begin(), out.rejects.end(),
                   [](const Reject& a, const Reject& b) { return a.offset < b.offset; });
  return out;
}

EncodedBatch SegmentEncoder::encode(AssembledBatch& batch) const {
  EncodedBatch out;
  out.seq = batch.seq;
  out.last = batch.last;
  out.rejects = std::move(batch.rejects);
  out.cards = batch.cards;
  if (state_.failed()) return out;
  for (auto& seg : batch.segments) {
    // Sealing is deterministic (derived nonces): a retry after a transient HSM error gives
    // the same segment.
    auto encoded = with_transient_retry(
        retries_, [&] { return formats::encode_segment(header_, seg.number, seg.cards, keys_.class_key_ptrs); });
    if (!encoded) {
      state_.fail(std::move(encoded).error().add_context("segment " + std::to_string(seg.number)));
      return out;
    }
    out.segments.push_back(std::move(encoded).value());
    out.segment_last_records.push_back(seg.card_records.empty() ? std::pair<std::uint64_t, std::uint64_t>{0, 0}
                                                                : seg.card_records.back());
  }
  return out;
}

}  // namespace persoflow::pipeline
