#include "pipeline/import_stages.h"

#include <functional>
#include <variant>

#include "engine/attribute_rules.h"
#include "formats/record_fields.h"
#include "hsm/ck_rv.h"

namespace persoflow::pipeline {
namespace {

// Calls `f` up to 3 times while it fails with a transient HSM error
// (hsm::rv_is_transient); the last result otherwise.
template <typename F>
auto with_transient_retry(F&& f) -> decltype(f()) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto r = f();
    if (r.has_value() || attempt == kAttempts) return r;
    const auto rv = r.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) return r;
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

std::optional<formats::XofCard> RecordParser::parse_one(const formats::Record& record,
                                                        std::vector<Reject>& rejects) const {
  auto reject = [&](std::string card_id, std::string field, std::string category, std::string reason,
                    std::string shown = {}) {
    rejects.push_back(Reject{record.number, record.offset, std::move(card_id), std::move(field), std::move(category),
                             std::move(reason), std::move(shown)});
    return std::nullopt;
  };
  auto fields = formats::extract_fields(profile_, record);
  if (!fields) return reject("", "", "malformed", fields.error().message());

  formats::XofCard card;
  if (const SecureBytes* id = fields->value(profile_.card_id_attribute)) card.card_id = std::string(as_text(*id));
  card.values.resize(profile_.attributes.size());
  for (std::size_t i = 0; i < profile_.attributes.size(); ++i) {
    const AttributeSpec& a = profile_.attributes[i];
    const auto& field = fields->fields[i];
    if (!field.value) {
      if (a.required) return reject(card.card_id, a.name, "missing", "required attribute is missing");
      continue;
    }
    const std::string_view text = as_text(*field.value);
    if (auto why = check_attribute(a, text)) {
      // "luhn" only when the Luhn check is the one that failed.
      AttributeSpec without_luhn = a;
      without_luhn.luhn = false;
      const bool luhn = a.luhn && !check_attribute(without_luhn, text).has_value();
      return reject(card.card_id, a.name, luhn ? "luhn" : "invalid", *why, revealed(a, text));
    }
    if (a.field_encryption == FieldEncryption::kNone) {
      card.values[i] = *field.value;
      continue;
    }
    // Field-encrypted: the issuer's blob moves key to key inside the HSM.
    auto blob = from_hex(text);
    if (!blob) return reject(card.card_id, a.name, "field-encryption", "not hex");
    // A transient HSM error (device error, lost session) is retried on a fresh session:
    // the translation is deterministic, so a retried value is the same.
    auto moved = with_transient_retry([&] {
      return hsm::translate_wrapped_secret(keys_, *import_keys_.field_keys[i], *import_keys_.field_targets[i], *blob);
    });
    if (!moved) {
      if (moved.error().code() == ErrorCode::kIntegrity) {
        return reject(card.card_id, a.name, "field-encryption",
                      "the field-encrypted value does not unwrap under its field key");
      }
      state_.fail(std::move(moved).error().add_context("record " + std::to_string(record.number)));
      return std::nullopt;
    }
    card.values[i] = SecureBytes(std::span<const std::uint8_t>(*moved));
  }
  return card;
}

ParsedBatch RecordParser::operator()(RecordBatch batch) const {
  ParsedBatch out;
  out.seq = batch.seq;
  out.last = batch.last;
  if (state_.failed()) return out;
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
    if (auto card = parse_one(record, out.rejects)) {
      out.cards.push_back(std::move(*card));
      out.card_records.push_back({record.number, record.offset});
    }
  }
  return out;
}

void SegmentAssembler::resume(std::uint32_t next_number, const std::vector<std::string>& ids) {
  next_number_ = next_number;
  for (const std::string& id : ids) seen_ids_.insert(id);
}

AssembledBatch SegmentAssembler::operator()(ParsedBatch batch) {
  AssembledBatch out;
  out.seq = batch.seq;
  out.last = batch.last;
  out.rejects = std::move(batch.rejects);
  for (std::size_t i = 0; i < batch.cards.size(); ++i) {
    auto& card = batch.cards[i];
    if (!seen_ids_.insert(card.card_id)) {
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
    auto encoded = with_transient_retry([&] { return formats::encode_segment(header_, seg.number, seg.cards, keys_.class_key_ptrs); });
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
