#include "pipeline/prep_stages.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>

#include "engine/card_keys.h"
#include "engine/card_script.h"
#include "engine/des_mac.h"
#include "engine/gp_commands.h"
#include "engine/scp03.h"
#include "engine/offline_session.h"
#include "hsm/hsm_card_keys.h"
#include "hsm/ck_rv.h"
#include "hsm/emv_icc_derivation.h"
#include "hsm/key_derivation.h"
#include "pipeline/run_audit.h"

namespace persoflow::pipeline {

Result<std::string> sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kIo, "cannot open " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error(ErrorCode::kInternal, "SHA-256 init failed");
  }
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    if (EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount())) != 1) {
      return Error(ErrorCode::kInternal, "SHA-256 update failed");
    }
  }
  if (in.bad()) return Error(ErrorCode::kIo, "cannot read " + path);
  Bytes out(32);
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1) return Error(ErrorCode::kInternal, "SHA-256 failed");
  return to_hex(out);
}

std::string default_run_id(const std::string& prefix) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  return prefix + "-" + stamp + "-" + std::to_string(::getpid());
}

std::string default_operator() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "unknown";
}

Result<PrepKeys> resolve_prep_keys(const Profile& profile, const std::string& profile_path,
                                   const formats::XofHeader& header, hsm::KeyStore& keys,
                              std::unique_ptr<hsm::HsmMacKey> integrity, hsm::KeyInfo integrity_info) {
  PrepKeys k;
  k.integrity_info = std::move(integrity_info);
  k.integrity = std::move(integrity);
  for (const auto& c : header.classes) {
    auto info = keys.find(c.dkep_uri);
    if (!info) return with_context(info.error(), "DKep of key class '" + c.name + "'");
    k.class_infos.push_back(*info);
    k.class_keys.push_back(std::make_unique<hsm::HsmAeadKey>(keys, *info));
    k.class_ptrs.push_back(k.class_keys.back().get());
  }
  const SecureChannelSpec& ch = profile.prep->channel;
  auto find = [&](const std::string& uri, const char* what) -> Result<hsm::KeyInfo> {
    auto info = keys.find(uri);
    if (!info) {
      return with_context(info.error(), profile_path + ":" + std::to_string(ch.line) + ": <secure-channel> " + what);
    }
    return info;
  };
  if (ch.diversification) {
    PF_ASSIGN_OR_RETURN(k.master, find(ch.master_key_uri, "master-key"));
  } else {
    PF_ASSIGN_OR_RETURN(k.enc, find(ch.enc_key_uri, "enc-key"));
    PF_ASSIGN_OR_RETURN(k.mac, find(ch.mac_key_uri, "mac-key"));
    PF_ASSIGN_OR_RETURN(k.dek, find(ch.dek_key_uri, "dek-key"));
  }
  if (profile.prep->icc_keys) {
    const IccKeysSpec& icc = *profile.prep->icc_keys;
    auto imk = [&](const std::string& uri, const char* what) -> Result<hsm::KeyInfo> {
      auto info = keys.find(uri);
      if (!info) return with_context(info.error(), profile_path + ":" + std::to_string(icc.line) + ": <icc-keys> " + what);
      return info;
    };
    hsm::IccIssuerMasterKeys imks;
    PF_ASSIGN_OR_RETURN(imks.ac, imk(icc.imk_ac_uri, "imk-ac"));
    PF_ASSIGN_OR_RETURN(imks.smi, imk(icc.imk_smi_uri, "imk-smi"));
    PF_ASSIGN_OR_RETURN(imks.smc, imk(icc.imk_smc_uri, "imk-smc"));
    k.imks = std::move(imks);
    if (profile.prep->key_handling == KeyHandling::kStrict) {
      // Only the strict mode wraps ICC master keys in the HSM; the host mode fixes their
      // parity itself and encrypts them in software.
      PF_ASSIGN_OR_RETURN(hsm::IccMasterKeyWrapper wrapper, hsm::IccMasterKeyWrapper::create(keys));
      k.icc_wrapper.emplace(std::move(wrapper));
    }
  }
  for (const KeySetSpec& ks : profile.prep->key_sets) {
    auto info = keys.find(ks.master_key_uri);
    if (!info) {
      return with_context(info.error(), profile_path + ":" + std::to_string(ks.line) + ": <key-set name=\"" + ks.name +
                                            "\"> master-key");
    }
    k.key_set_masters.push_back(*info);
  }
  PF_ASSIGN_OR_RETURN(const hsm::KeyInfo hc, find(ch.host_challenge_key_uri, "host-challenge-key"));
  k.host_challenge = std::make_unique<hsm::HsmMacKey>(keys, hc);
  if (profile.prep->key_handling == KeyHandling::kHost) {
    // The HSM computations of the host mode, prepared once: the CMAC subkeys of every AES
    // key used batched, and each master's checks (type, usages).
    const std::string at = profile_path + ":" + std::to_string(profile.prep->line) + ": key-handling=\"host\": ";
    PrepKeys::Host h;
    if (!k.master || !ch.diversification) {
      return Error(ErrorCode::kInvalidArgument, at + "<secure-channel> needs a master key and a diversification scheme");
    }
    auto channel = hsm::HostStaticKeyDeriver::create(keys, *k.master, *ch.diversification, ch.key_type);
    if (!channel) return with_context(channel.error(), at + "<secure-channel> master-key");
    h.channel.emplace(std::move(*channel));
    for (std::size_t n = 0; n < profile.prep->key_sets.size(); ++n) {
      const KeySetSpec& ks = profile.prep->key_sets[n];
      auto d = hsm::HostStaticKeyDeriver::create(keys, k.key_set_masters[n], ks.diversification, ks.key_type);
      if (!d) return with_context(d.error(), at + "<key-set name=\"" + ks.name + "\"> master-key");
      h.key_sets.push_back(std::move(*d));
    }
    if (k.imks) {
      auto icc = hsm::HostIccDeriver::create(keys, *k.imks, profile.prep->icc_keys->option);
      if (!icc) return with_context(icc.error(), at + "<icc-keys>");
      h.icc.emplace(std::move(*icc));
    }
    auto cmac = hsm::HsmBatchCmac::create(keys, hc);
    if (!cmac) return with_context(cmac.error(), at + "<secure-channel> host-challenge-key");
    h.host_challenge.emplace(std::move(*cmac));
    k.host = std::move(h);
  }
  return k;
}

Bytes host_challenge_input(const formats::SeRecord& se, std::uint32_t counter, std::span<const std::uint8_t> context,
                           std::optional<std::uint8_t> kvn) {
  const std::string_view label = "persoflow host challenge v1";
  // Sized once: the batched host mode builds one per session of every card.
  Bytes input(label.begin(), label.end());
  input.reserve(label.size() + 2 + se.se_id.size() + 5 + 1 + context.size());
  input.push_back(0);
  input.insert(input.end(), se.se_id.begin(), se.se_id.end());
  input.push_back(0);
  input.push_back(kvn.value_or(se.kvn));
  for (int shift = 24; shift >= 0; shift -= 8) input.push_back(static_cast<std::uint8_t>(counter >> shift));
  if (!context.empty()) {
    input.push_back(0);
    input.insert(input.end(), context.begin(), context.end());
  }
  return input;
}

Result<Bytes> host_challenge(MacKey& key, const formats::SeRecord& se, std::uint32_t counter, std::size_t length,
                             std::span<const std::uint8_t> context, std::optional<std::uint8_t> kvn) {
  PF_ASSIGN_OR_RETURN(Bytes tag, key.mac(host_challenge_input(se, counter, context, kvn)));
  if (tag.size() < length) return Error(ErrorCode::kInternal, "host challenge: CMAC shorter than the challenge");
  tag.resize(length);
  return tag;
}

Result<std::size_t> check_prep_attributes(const PrepSpec& prep, const formats::XofHeader& header,
                                          const std::string& profile_path, const std::string& source) {
  std::set<std::string> used{prep.se.attribute};
  std::set<std::string> wrapped_used;
  if (prep.icc_keys) {
    used.insert(prep.icc_keys->pan_attribute);
    if (!prep.icc_keys->psn_attribute.empty()) used.insert(prep.icc_keys->psn_attribute);
  }
  for_each_command(prep, [&](const CommandSpec& c) {
    for (const DgiSpec& d : c.dgis) {
      if (d.source == DgiSource::kKeyToKey) wrapped_used.insert(d.wrapped_attribute);
      if (d.value && !d.value->attribute.empty()) used.insert(d.value->attribute);
      for (const TlvSpec& t : d.tlvs) {
        if (!t.value.attribute.empty()) used.insert(t.value.attribute);
        for (const std::string* part : {&t.value.track2.pan, &t.value.track2.expiry, &t.value.track2.service_code,
                                        &t.value.track2.discretionary}) {
          if (!part->empty()) used.insert(*part);
        }
      }
    }
  });
  for (const std::string& name : used) {
    const std::size_t i = header.attribute_index(name);
    if (i >= header.attributes.size()) {
      return Error(ErrorCode::kInvalidArgument, profile_path + ": <prep> uses attribute '" + name +
                                                    "', which the XOF of " + source + " does not hold");
    }
    if (header.attributes[i].kind != formats::XofAttributeKind::kValue) {
      return Error(ErrorCode::kUnsupported, profile_path + ": <prep> uses attribute '" + name +
                                                "', held wrapped in the XOF: only a key-to-key DGI (<dgi attribute= "
                                                "encrypted=\"true\">) can take it");
    }
  }
  for (const std::string& name : wrapped_used) {
    const std::size_t i = header.attribute_index(name);
    if (i >= header.attributes.size() || header.attributes[i].kind != formats::XofAttributeKind::kWrapped) {
      return Error(ErrorCode::kInvalidArgument, profile_path + ": <prep> moves attribute '" + name +
                                                    "' key-to-key, but the XOF of " + source +
                                                    " does not hold it wrapped");
    }
  }
  return header.attribute_index(prep.se.attribute);
}

std::string se_key_of(const formats::XofCard& card, std::size_t index) {
  if (index >= card.values.size() || !card.values[index]) return {};
  const auto v = card.values[index]->reveal();
  return std::string(v.begin(), v.end());
}

CardPreparer::CardPreparer(const Profile& profile, const formats::XofHeader& header, hsm::KeyStore& keys, PrepKeys& k)
    : prep_(*profile.prep), header_(header), keys_(keys), k_(k) {
  key_set_used_.assign(prep_.key_sets.size(), false);
  auto use_key_set = [&](const std::string& name) {
    for (std::size_t n = 0; n < prep_.key_sets.size(); ++n) {
      if (prep_.key_sets[n].name == name) key_set_used_[n] = true;
    }
  };
  for_each_command(prep_, [&](const CommandSpec& c) {
    for (const DgiSpec& d : c.dgis) {
      icc_host_readable_ |= d.source == DgiSource::kIccMasterKeys && d.via_host;
      uses_icc_keys_ |= d.source == DgiSource::kIccMasterKeys || d.source == DgiSource::kIccKeyKcvs;
    }
    if (c.kind == CommandKind::kPutKey) use_key_set(c.key_set);
  });
  for (const SessionSpec& s : prep_.sessions) {
    if (!s.key_set.empty()) use_key_set(s.key_set);
  }
  script_labels_ = ScriptLabels::of(prep_.script);
  for (const SessionSpec& s : prep_.sessions) session_labels_.push_back(ScriptLabels::of(s.commands));
}

std::vector<CardPreparer::ChannelPlan> CardPreparer::plan_channels(const formats::SeRecord& se,
                                                                   std::uint32_t counter) const {
  std::vector<ChannelPlan> plans;
  plans.reserve(1 + prep_.sessions.size());
  // The first session: the ISD with the SE's key set and the reserved counter.
  ChannelPlan first;
  first.commands = &prep_.script;
  first.labels = &script_labels_;
  first.sd_aid = se.isd_aid;
  first.scp = se.scp;
  first.i = se.i;
  first.level = prep_.channel.level;
  first.kvn = se.kvn;
  first.counter = counter;
  plans.push_back(std::move(first));
  // Later sessions: with the registry's key set, the next reserved value each; with a key
  // set the script put, the value a card starts a new key set at (SCP03: 000001), the host
  // challenge keyed on the session that loaded it as well.
  std::uint32_t next_registry_value = counter + 1;
  for (std::size_t k = 0; k < prep_.sessions.size(); ++k) {
    const SessionSpec& spec = prep_.sessions[k];
    ChannelPlan c;
    c.commands = &spec.commands;
    c.labels = &session_labels_[k];
    c.sd_aid = spec.sd_aid.empty() ? se.isd_aid : spec.sd_aid;
    if (spec.key_set.empty()) {
      c.scp = se.scp;
      c.i = se.i;
      c.level = prep_.channel.level;
      c.kvn = se.kvn;
      c.counter = next_registry_value++;
    } else {
      c.key_set_name = &spec.key_set;
      // The parser checked the name; a plan without its key set fails in prepare_once.
      const KeySetSpec* ks = find_key_set(prep_, spec.key_set);
      c.scp = 3;
      c.i = ks != nullptr ? ks->i : 0x70;
      c.level = ks != nullptr ? ks->level : 0x03;
      c.kvn = ks != nullptr ? ks->kvn : 0;
      c.requested_kvn = c.kvn;
      c.counter = kFirstCounterOfANewKeySet;
      c.challenge_context = c.sd_aid;
      for (int shift = 24; shift >= 0; shift -= 8) {
        c.challenge_context.push_back(static_cast<std::uint8_t>(counter >> shift));
      }
    }
    plans.push_back(std::move(c));
  }
  for (ChannelPlan& c : plans) c.challenge_length = c.scp == 3 && (c.i & 0x01) != 0 ? 16 : 8;  // S16: 16
  return plans;
}

Result<formats::BundleCard> CardPreparer::prepare(const formats::XofCard& card, const formats::SeRecord& se,
                                                std::uint32_t counter) {
  if (prep_.key_handling == KeyHandling::kHost) {
    const formats::XofCard* one[] = {&card};
    auto r = prepare_batch(one, std::span<const formats::SeRecord>(&se, 1), std::span<const std::uint32_t>(&counter, 1));
    return std::move(r.front());
  }
  for (int attempt = 1;; ++attempt) {
    auto r = prepare_once(card, se, counter, nullptr);
    if (r) return r;
    const auto rv = r.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) return r;
    if (attempt == kAttempts) {
      return with_context(r.error(), "still failing after " + std::to_string(kAttempts) + " attempts");
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<Result<formats::BundleCard>> CardPreparer::prepare_batch(std::span<const formats::XofCard* const> cards,
                                                                     std::span<const formats::SeRecord> ses,
                                                                     std::span<const std::uint32_t> counters) {
  std::vector<Result<formats::BundleCard>> out;
  out.reserve(cards.size());
  if (cards.size() != ses.size() || cards.size() != counters.size()) {
    for (std::size_t c = 0; c < cards.size(); ++c) {
      out.emplace_back(Error(ErrorCode::kInternal, "prepare_batch: cards, SEs and counters differ in number"));
    }
    return out;
  }
  if (prep_.key_handling != KeyHandling::kHost) {
    for (std::size_t c = 0; c < cards.size(); ++c) out.push_back(prepare(*cards[c], ses[c], counters[c]));
    return out;
  }
  // The batch's HSM work, retried whole after a transient error (values, not handles, come
  // back: nothing of a failed attempt is kept).
  Result<std::vector<Result<HostCard>>> material = Error(ErrorCode::kInternal, "no attempt");
  for (int attempt = 1;; ++attempt) {
    material = host_material(cards, ses, counters);
    if (material) break;
    const auto rv = material.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) break;
    if (attempt == kAttempts) {
      material = with_context(material.error(), "still failing after " + std::to_string(kAttempts) + " attempts");
      break;
    }
    retries_.fetch_add(cards.size(), std::memory_order_relaxed);
  }
  if (!material) {
    for (std::size_t c = 0; c < cards.size(); ++c) out.emplace_back(material.error());
    return out;
  }
  for (std::size_t c = 0; c < cards.size(); ++c) {
    Result<HostCard>& host = (*material)[c];
    if (!host) {
      out.emplace_back(std::move(host).error());
      continue;
    }
    // The card's own HSM calls (a field-encrypted value unwrapped for the host) may fail
    // transiently too: the card is prepared again from the same values.
    for (int attempt = 1;; ++attempt) {
      auto r = prepare_once(*cards[c], ses[c], counters[c], &*host);
      const auto rv = r ? std::nullopt : r.error().ck_rv();
      if (r || !rv || !hsm::rv_is_transient(*rv)) {
        out.push_back(std::move(r));
        break;
      }
      if (attempt == kAttempts) {
        out.emplace_back(with_context(r.error(), "still failing after " + std::to_string(kAttempts) + " attempts"));
        break;
      }
      retries_.fetch_add(1, std::memory_order_relaxed);
    }
    host = Error(ErrorCode::kInternal, "used");  // the card's keys are wiped now, not at the batch's end
  }
  return out;
}

Result<std::vector<Result<CardPreparer::HostCard>>> CardPreparer::host_material(
    std::span<const formats::XofCard* const> cards, std::span<const formats::SeRecord> ses,
    std::span<const std::uint32_t> counters) {
  if (!k_.host || !k_.host->channel || !k_.host->host_challenge) {
    return Error(ErrorCode::kInternal, "key-handling host: the run's host-mode keys were not resolved");
  }
  const PrepKeys::Host& h = *k_.host;
  const std::size_t n = cards.size();
  std::vector<Result<HostCard>> out(n, HostCard{});
  auto fail = [&](std::size_t c, Error e) {
    if (out[c]) out[c] = std::move(e);
  };

  // Static keys of the SE's key set and of every key set the script uses: one KDD per card.
  std::vector<std::span<const std::uint8_t>> kdds;
  kdds.reserve(n);
  for (const formats::SeRecord& se : ses) kdds.emplace_back(se.kdd);
  {
    PF_ASSIGN_OR_RETURN(auto sets, h.channel->derive(kdds));
    for (std::size_t c = 0; c < n; ++c) {
      if (!sets[c]) {
        fail(c, std::move(sets[c]).error());
      } else if (out[c]) {
        out[c]->isd = std::move(*sets[c]);
      }
    }
  }
  for (std::size_t c = 0; c < n; ++c) {
    if (out[c]) out[c]->key_sets.resize(prep_.key_sets.size());
  }
  for (std::size_t k = 0; k < prep_.key_sets.size(); ++k) {
    if (!key_set_used_[k]) continue;
    PF_ASSIGN_OR_RETURN(auto sets, h.key_sets.at(k).derive(kdds));
    for (std::size_t c = 0; c < n; ++c) {
      if (!sets[c]) {
        fail(c, std::move(sets[c]).error());
      } else if (out[c]) {
        out[c]->key_sets[k] = std::move(*sets[c]);
      }
    }
  }

  // ICC master keys, when a DGI needs them: each card's PAN and PSN.
  if (uses_icc_keys_) {
    if (!h.icc || !prep_.icc_keys) return Error(ErrorCode::kInternal, "key-handling host: no ICC master key deriver");
    const IccKeysSpec& spec = *prep_.icc_keys;
    auto value = [&](const formats::XofCard& card, const std::string& name) -> const SecureBytes* {
      const std::size_t i = header_.attribute_index(name);
      return i < card.values.size() && card.values[i] ? &*card.values[i] : nullptr;
    };
    auto view = [](const SecureBytes* v) {
      if (v == nullptr) return std::string_view();
      const auto b = v->reveal();
      return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
    };
    std::vector<hsm::IccCardId> ids(n);
    std::vector<std::size_t> index;  // cards with a PAN, in order
    for (std::size_t c = 0; c < n; ++c) {
      if (!out[c]) continue;
      const SecureBytes* pan = value(*cards[c], spec.pan_attribute);
      if (pan == nullptr) {
        fail(c, Error(ErrorCode::kInvalidArgument, "attribute '" + spec.pan_attribute + "' is empty"));
        continue;
      }
      ids[index.size()] = {view(pan), spec.psn_attribute.empty() ? std::string_view()
                                                                  : view(value(*cards[c], spec.psn_attribute))};
      index.push_back(c);
    }
    PF_ASSIGN_OR_RETURN(auto keys, h.icc->derive(std::span<const hsm::IccCardId>(ids.data(), index.size())));
    for (std::size_t j = 0; j < index.size(); ++j) {
      if (!keys[j]) {
        fail(index[j], std::move(keys[j]).error());
      } else {
        out[index[j]]->icc = std::move(*keys[j]);
      }
    }
  }

  // Host challenges: one message per channel per card, MACed together.
  std::vector<Bytes> inputs;
  std::vector<std::size_t> lengths;
  std::vector<std::size_t> first(n + 1, 0);
  for (std::size_t c = 0; c < n; ++c) {
    first[c] = inputs.size();
    if (!out[c]) continue;
    for (const ChannelPlan& p : plan_channels(ses[c], counters[c])) {
      inputs.push_back(host_challenge_input(ses[c], p.counter, p.challenge_context, p.kvn));
      lengths.push_back(p.challenge_length);
    }
  }
  first[n] = inputs.size();
  std::vector<std::span<const std::uint8_t>> messages(inputs.begin(), inputs.end());
  PF_ASSIGN_OR_RETURN(auto tags, h.host_challenge->mac(messages));
  for (std::size_t c = 0; c < n; ++c) {
    if (!out[c]) continue;
    for (std::size_t m = first[c]; m < first[c + 1]; ++m) {
      const auto t = tags[m].reveal();
      out[c]->challenges.emplace_back(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(lengths[m]));  // public
    }
  }
  return out;
}

namespace {

// A derived key set and the handles the offline session works with (HsmCardKeys points into
// `derived`, hence the fixed address); in host mode, the values as ClearCardKeys.
struct CardKeySet {
  std::optional<hsm::DerivedKeySet> derived;
  std::optional<hsm::HsmCardKeys> keys;
  std::optional<ClearCardKeys> clear;
  CardKeys* card_keys() { return clear ? static_cast<CardKeys*>(&*clear) : static_cast<CardKeys*>(&*keys); }
};

// The KCV (3 bytes) of an ICC master key held on the host: 3DES of 00 x 8, or AES of
// 01 x 16, as the HSM computes it for the strict mode's session objects.
Result<Bytes> host_kcv(const SecureBytes& key, KeyType type) {
  if (key_family(type) == KeyFamily::kAes) return aes_kcv(key);
  PF_ASSIGN_OR_RETURN(Bytes block, tdes_ecb_encrypt(key, kcv_block(KeyFamily::kDes)));
  block.resize(kKcvLength);
  return block;
}

}  // namespace

Result<formats::BundleCard> CardPreparer::prepare_once(const formats::XofCard& card, const formats::SeRecord& se,
                                                     std::uint32_t counter, HostCard* host) {
  const SecureChannelSpec& ch = prep_.channel;

  // The card's static keys (the SE's key set in the registry). strict: HSM session
  // objects, destroyed when this card is done; host: the values the HSM computed for this
  // card, wiped when it is done.
  CardKeySet card_keys;
  if (host != nullptr) {
    PF_ASSIGN_OR_RETURN(ClearCardKeys ck, ClearCardKeys::create(std::move(host->isd), key_family(ch.key_type)));
    card_keys.clear.emplace(std::move(ck));
  } else if (ch.diversification) {
    PF_ASSIGN_OR_RETURN(hsm::DerivedKeySet d,
                        hsm::derive_static_keys(keys_, *k_.master, *ch.diversification, se.kdd, ch.key_type,
                                                hsm::DeriveOptions{.wrappable = false, .kcvs = false}));
    card_keys.derived.emplace(std::move(d));
    PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_derived(keys_, *card_keys.derived, ch.key_type));
    card_keys.keys.emplace(std::move(ck));
  } else {
    PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_token_keys(keys_, *k_.enc, *k_.mac, *k_.dek));
    card_keys.keys.emplace(std::move(ck));
  }
  // Key sets the script puts on the SE (<key-set>), derived from the service provider's
  // master key with the SE's KDD when first needed; strict: wrappable session objects (PUT
  // KEY moves them key-to-key under the session's K-DEK); host: the values.
  std::vector<std::unique_ptr<CardKeySet>> key_sets(prep_.key_sets.size());
  auto key_set = [&](const std::string& name) -> Result<CardKeySet*> {
    for (std::size_t k = 0; k < prep_.key_sets.size(); ++k) {
      if (prep_.key_sets[k].name != name) continue;
      if (!key_sets[k]) {
        const KeySetSpec& spec = prep_.key_sets[k];
        auto set = std::make_unique<CardKeySet>();
        if (host != nullptr) {
          if (k >= host->key_sets.size() || !host->key_sets[k]) {
            return Error(ErrorCode::kInternal, "key set '" + name + "' was not derived for the host");
          }
          PF_ASSIGN_OR_RETURN(ClearCardKeys ck, ClearCardKeys::create(std::move(*host->key_sets[k]), KeyFamily::kAes));
          host->key_sets[k].reset();
          set->clear.emplace(std::move(ck));
        } else {
          PF_ASSIGN_OR_RETURN(hsm::DerivedKeySet d,
                              hsm::derive_static_keys(keys_, k_.key_set_masters.at(k), spec.diversification, se.kdd,
                                                      spec.key_type, hsm::DeriveOptions{.wrappable = true, .kcvs = true}));
          set->derived.emplace(std::move(d));
          PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_derived(keys_, *set->derived, spec.key_type));
          set->keys.emplace(std::move(ck));
        }
        key_sets[k] = std::move(set);
      }
      return key_sets[k].get();
    }
    return Error(ErrorCode::kInternal, "key set '" + name + "' is not in the profile");
  };

  const AttributeLookup lookup = [&](std::string_view name) -> Result<const SecureBytes*> {
    const std::size_t i = header_.attribute_index(name);
    if (i >= card.values.size()) {
      return Error(ErrorCode::kInvalidArgument, "attribute '" + std::string(name) + "' is not in the XOF");
    }
    return card.values[i] ? &*card.values[i] : nullptr;
  };
  // DGIs that never exist in clear on the host in strict mode: ICC master keys derived and
  // wrapped in the HSM (8000) and their KCVs (9000); field-encrypted values moved from their
  // DKep to the card's K-DEK (8010).
  std::optional<hsm::IccMasterKeySet> icc;
  auto icc_keys = [&]() -> Result<const hsm::IccMasterKeySet*> {
    if (icc) return &*icc;
    const IccKeysSpec& spec = *prep_.icc_keys;
    PF_ASSIGN_OR_RETURN(const SecureBytes* pan, lookup(spec.pan_attribute));
    if (pan == nullptr) return Error(ErrorCode::kInvalidArgument, "attribute '" + spec.pan_attribute + "' is empty");
    const SecureBytes* psn = nullptr;
    if (!spec.psn_attribute.empty()) {
      PF_ASSIGN_OR_RETURN(psn, lookup(spec.psn_attribute));
    }
    auto view = [](const SecureBytes* v) {
      if (v == nullptr) return std::string_view();
      const auto b = v->reveal();
      return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
    };
    PF_ASSIGN_OR_RETURN(hsm::IccMasterKeySet set, hsm::derive_icc_master_keys(keys_, *k_.imks, spec.option,
                                                                             view(pan), view(psn), icc_host_readable_));
    icc.emplace(std::move(set));
    return &*icc;
  };
  auto host_icc = [&]() -> Result<const hsm::HostIccKeys*> {
    if (!host->icc) return Error(ErrorCode::kInternal, "the card's ICC master keys were not derived for the host");
    return &*host->icc;
  };

  formats::BundleCard bundle_card;
  bundle_card.card_id = card.card_id;
  bundle_card.se_id = se.se_id;

  // One secure channel: SELECT of its SD in clear, INITIALIZE UPDATE, EXTERNAL
  // AUTHENTICATE, then its commands wrapped.
  auto run_channel = [&](const ChannelPlan& c, std::size_t index, CardKeySet& keys) -> Status {
    ChannelParams params;
    params.scp = c.scp;
    params.i = c.i;
    params.level = c.level;
    params.kvn = c.kvn;
    params.requested_kvn = c.requested_kvn;
    params.kdd = se.kdd;
    params.aid = c.sd_aid;
    params.counter = c.counter;
    if (host != nullptr) {
      if (index >= host->challenges.size()) return Error(ErrorCode::kInternal, "host challenge missing");
      params.host_challenge = host->challenges[index];
    } else {
      PF_ASSIGN_OR_RETURN(params.host_challenge, host_challenge(*k_.host_challenge, se, c.counter, c.challenge_length,
                                                                c.challenge_context, c.kvn));
    }
    PF_ASSIGN_OR_RETURN(std::unique_ptr<OfflineSession> session, open_offline_session(*keys.card_keys(), params));
    const hsm::KeyInfo* dek = keys.keys ? &keys.keys->key_info(CardKeyRole::kDek) : nullptr;
    const DgiProvider provider = [&](const DgiSpec& d) -> Result<ProvidedDgi> {
      switch (d.source) {
        case DgiSource::kIccMasterKeys: {
          if (host != nullptr) {
            // The values the HSM computed for this card, encrypted for the SE by the session:
            // SCP03 AES-CBC (zero ICV) under the K-DEK, the bytes the strict mode's chained
            // C_WrapKey calls give; SCP02 3DES-ECB under S-DEK.
            PF_ASSIGN_OR_RETURN(const hsm::HostIccKeys* mks, host_icc());
            SecureBytes clear;
            for (const SecureBytes* mk : {&mks->ac, &mks->smi, &mks->smc}) {
              if (c.scp == 3 && mk->size() % 16 != 0) {
                return Error(ErrorCode::kUnsupported,
                             "an ICC master key of " + std::to_string(mk->size()) +
                                 " bytes is not a whole number of AES blocks: AES-CBC cannot wrap it");
              }
              clear.append(mk->reveal());
            }
            PF_ASSIGN_OR_RETURN(Bytes enc, session->encrypt_sensitive(clear.reveal()));
            return ProvidedDgi{std::move(enc), true};
          }
          PF_ASSIGN_OR_RETURN(const hsm::IccMasterKeySet* set, icc_keys());
          if (d.via_host) {
            // The profile's opt-in host path: the keys' values in zeroized host memory for
            // this card, encrypted for the SE by the session (SCP02: 3DES-ECB under S-DEK).
            SecureBytes clear;
            for (const hsm::IccMasterKey* mk : {&set->ac, &set->smi, &set->smc}) {
              PF_ASSIGN_OR_RETURN(SecureBytes v, hsm::read_icc_master_key(keys_, *mk));
              clear.append(v.reveal());
            }
            PF_ASSIGN_OR_RETURN(Bytes enc, session->encrypt_sensitive(clear.reveal()));
            return ProvidedDgi{std::move(enc), true};
          }
          // AES-CBC (zero ICV) over MK-AC || MK-SMI || MK-SMC: each wrap chained on the last
          // ciphertext block of the one before.
          if (dek == nullptr) return Error(ErrorCode::kInternal, "no HSM K-DEK for a key-to-key DGI");
          ProvidedDgi out{{}, true};
          Bytes iv(16, 0x00);
          for (const hsm::IccMasterKey* mk : {&set->ac, &set->smi, &set->smc}) {
            PF_ASSIGN_OR_RETURN(Bytes part, k_.icc_wrapper->wrap(*mk, *dek, iv));
            if (part.size() < 16) return Error(ErrorCode::kHsm, "C_WrapKey returned less than one block");
            iv.assign(part.end() - 16, part.end());
            out.value.insert(out.value.end(), part.begin(), part.end());
          }
          return out;
        }
        case DgiSource::kIccKeyKcvs: {
          ProvidedDgi out{{}, false};
          if (host != nullptr) {
            PF_ASSIGN_OR_RETURN(const hsm::HostIccKeys* mks, host_icc());
            for (const SecureBytes* mk : {&mks->ac, &mks->smi, &mks->smc}) {
              PF_ASSIGN_OR_RETURN(const Bytes kcv, host_kcv(*mk, mks->type));
              out.value.insert(out.value.end(), kcv.begin(), kcv.end());
            }
            return out;
          }
          PF_ASSIGN_OR_RETURN(const hsm::IccMasterKeySet* set, icc_keys());
          for (const hsm::IccMasterKey* mk : {&set->ac, &set->smi, &set->smc}) {
            out.value.insert(out.value.end(), mk->kcv.begin(), mk->kcv.end());
          }
          return out;
        }
        case DgiSource::kKeyToKey: {
          const std::size_t i = header_.attribute_index(d.wrapped_attribute);
          if (i >= card.values.size() || !card.values[i]) {
            return Error(ErrorCode::kInvalidArgument, "attribute '" + d.wrapped_attribute + "' is empty for this card");
          }
          const auto& dkep = k_.class_infos.at(header_.attributes[i].class_index);
          if (d.via_host || host != nullptr) {
            // Unwrapped from its DKep into host memory for this card (the DKep never leaves
            // the HSM) and encrypted by the session. In host mode under SCP03 the value
            // must be whole AES blocks, as the strict mode's C_WrapKey(CKM_AES_CBC)
            // requires: the same cards are rejected and the others get the same bytes.
            PF_ASSIGN_OR_RETURN(SecureBytes clear, hsm::unwrap_secret_for_host(keys_, dkep, card.values[i]->reveal()));
            if (!d.via_host && (clear.empty() || clear.size() % 16 != 0)) {
              return Error(ErrorCode::kInvalidArgument,
                           "attribute '" + d.wrapped_attribute +
                               "': the secret is not a whole number of 16-byte blocks: AES-CBC cannot wrap it under "
                               "the card's K-DEK");
            }
            auto enc = session->encrypt_sensitive(clear.reveal());
            if (!enc) {
              // A value the session cannot encrypt (not whole cipher blocks) is this card's problem.
              return Error(ErrorCode::kInvalidArgument, "attribute '" + d.wrapped_attribute + "': " + enc.error().message());
            }
            return ProvidedDgi{std::move(*enc), true};
          }
          if (dek == nullptr) return Error(ErrorCode::kInternal, "no HSM K-DEK for a key-to-key DGI");
          const Bytes zero(16, 0x00);
          PF_ASSIGN_OR_RETURN(Bytes value, hsm::rewrap_secret_under_dek(keys_, dkep, card.values[i]->reveal(), *dek, zero));
          return ProvidedDgi{std::move(value), true};
        }
        case DgiSource::kProfile:
          break;
      }
      return Error(ErrorCode::kInternal, "DGI source without a provider");
    };
    // PUT KEY: the key set's three keys, each AES-CBC (zero ICV) under this session's K-DEK
    // with their KCVs. strict: inside the HSM (C_WrapKey; KCVs computed when derived);
    // host: by the session (encrypt_sensitive: the static K-DEK, zero ICV, whole blocks).
    const PutKeyProvider put_key = [&](const CommandSpec& command) -> Result<ProvidedPutKey> {
      const KeySetSpec* spec = find_key_set(prep_, command.key_set);
      if (spec == nullptr) return Error(ErrorCode::kInternal, "key set '" + command.key_set + "' is not in the profile");
      PF_ASSIGN_OR_RETURN(CardKeySet * set, key_set(command.key_set));
      ProvidedPutKey out;
      out.data.push_back(spec->kvn);
      out.expected_response.push_back(spec->kvn);
      const std::size_t length = key_length_bytes(spec->key_type);
      auto add = [&](const Bytes& cipher, const Bytes& kcv) -> Status {
        PF_ASSIGN_OR_RETURN(const Bytes component,
                            scp03_put_key_component_from(length, cipher, kcv, PutKeyComponentFormat::kAmdDTable710));
        out.data.insert(out.data.end(), component.begin(), component.end());
        out.expected_response.insert(out.expected_response.end(), kcv.begin(), kcv.end());
        return ok_status();
      };
      if (set->clear) {
        const StaticKeySet& v = set->clear->keys();
        for (const SecureBytes* key : {&v.enc, &v.mac, &v.dek}) {
          if (key->size() != length || length % 16 != 0) {
            return Error(ErrorCode::kUnsupported, "a key of " + std::to_string(key->size()) +
                                                      " bytes is not a whole number of AES blocks: AES-CBC cannot wrap it");
          }
          PF_ASSIGN_OR_RETURN(const Bytes cipher, session->encrypt_sensitive(key->reveal()));
          PF_ASSIGN_OR_RETURN(const Bytes kcv, aes_kcv(*key));
          PF_TRY(add(cipher, kcv));
        }
      } else {
        if (dek == nullptr) return Error(ErrorCode::kInternal, "no HSM K-DEK for PUT KEY");
        const Bytes zero(16, 0x00);
        for (const hsm::DerivedKey* key : {&set->derived->enc, &set->derived->mac, &set->derived->dek}) {
          PF_ASSIGN_OR_RETURN(const Bytes cipher, hsm::wrap_key_aes_cbc(keys_, key->key, length, *dek, zero));
          PF_TRY(add(cipher, key->kcv));
        }
      }
      out.keys = 3;
      return out;
    };
    PF_ASSIGN_OR_RETURN(std::vector<ScriptApdu> script,
                        build_session_script(*c.commands, SessionShape{c.scp, c.i, c.level}, lookup, *session, provider,
                                             put_key, c.labels));
    formats::BundleSession out;
    out.scp = c.scp;
    out.i = c.i;
    out.level = c.level;
    out.kvn = c.kvn;
    out.kdd = se.kdd;
    out.sd_aid = c.sd_aid;
    out.counter = c.counter;
    out.host_challenge = params.host_challenge;
    out.expected_response = session->expected_response();
    PF_ASSIGN_OR_RETURN(const CommandApdu select, select_by_aid(c.sd_aid));
    out.apdus.push_back({select.to_bytes(), 0x9000, "SELECT " + to_hex(c.sd_aid) + " (clear, before the session)", {}});
    out.apdus.push_back({session->initialize_update().to_bytes(), 0x9000,
                         "INITIALIZE UPDATE (response must equal expected_response)", {}});
    out.apdus.push_back({session->external_authenticate().to_bytes(), 0x9000, "EXTERNAL AUTHENTICATE", {}});
    for (ScriptApdu& a : script) {
      out.apdus.push_back({std::move(a.bytes), a.expected_sw, std::move(a.label), std::move(a.expected_data)});
    }
    bundle_card.sessions.push_back(std::move(out));
    return ok_status();
  };

  const std::vector<ChannelPlan> plans = plan_channels(se, counter);
  for (std::size_t index = 0; index < plans.size(); ++index) {
    const ChannelPlan& c = plans[index];
    if (c.key_set_name == nullptr) {
      PF_TRY(run_channel(c, index, card_keys));
      continue;
    }
    PF_ASSIGN_OR_RETURN(CardKeySet * set, key_set(*c.key_set_name));
    PF_TRY(run_channel(c, index, *set));
  }
  return bundle_card;
}

nlohmann::ordered_json prep_keys_audit(const PrepSpec& prep, const PrepKeys& k, hsm::KeyStore& keys) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  auto add = [&](const std::optional<hsm::KeyInfo>& info, const std::string& uri) {
    if (!info) return;
    out.push_back(audit_key(uri, keys.kcv(*info)));
  };
  const SecureChannelSpec& ch = prep.channel;
  add(k.master, ch.master_key_uri);
  add(k.enc, ch.enc_key_uri);
  add(k.mac, ch.mac_key_uri);
  add(k.dek, ch.dek_key_uri);
  for (std::size_t n = 0; n < prep.key_sets.size() && n < k.key_set_masters.size(); ++n) {
    add(k.key_set_masters[n], prep.key_sets[n].master_key_uri);
  }
  if (k.imks && prep.icc_keys) {
    add(k.imks->ac, prep.icc_keys->imk_ac_uri);
    add(k.imks->smi, prep.icc_keys->imk_smi_uri);
    add(k.imks->smc, prep.icc_keys->imk_smc_uri);
  }
  out.push_back({{"uri", ch.host_challenge_key_uri}, {"kcv", nullptr}});
  return out;
}

std::string_view key_handling_name(KeyHandling mode) { return mode == KeyHandling::kHost ? "host" : "strict"; }

namespace {

// key-handling="host": every kind of value that is in host memory during the run.
nlohmann::ordered_json host_key_handling_report(const PrepSpec& prep, const PrepKeys* keys) {
  const PrepKeys::Host* h = keys != nullptr && keys->host ? &*keys->host : nullptr;
  nlohmann::ordered_json exposures = nlohmann::ordered_json::array();
  const std::string scheme =
      prep.channel.diversification ? std::string(diversification_scheme_name(*prep.channel.diversification)) : "none";
  exposures.push_back(
      {{"what", "card static keys K-ENC, K-MAC, K-DEK (" + scheme + ")"},
       {"why", "key-handling=\"host\": computed by the HSM from the master key (which never leaves it) for a "
               "batch of cards (one XOF segment) and returned into SecureBytes (locked memory), each card's "
               "wiped when that card is done; the session keys, MACs and encryptions under the DEK are then "
               "computed on the host"}});
  exposures.push_back(
      {{"what", prep.channel.scp == 3 ? "SCP03 session keys S-ENC, S-MAC, S-RMAC" : "SCP02 session keys S-ENC, C-MAC, R-MAC, S-DEK"},
       {"why", "computed on the host from the card's static keys, held in zeroized host memory for one card"}});
  for (const KeySetSpec& ks : prep.key_sets) {
    exposures.push_back({{"what", "key set '" + ks.name + "' (KVN " + to_hex(Bytes{ks.kvn}) +
                                      ") static keys K-ENC, K-MAC, K-DEK (kdf3), loaded by PUT KEY"},
                         {"why", "computed by the HSM from the service provider's master key (which never leaves "
                                 "it) into host memory with the batch's other card keys, wiped when the card is "
                                 "done; PUT KEY encrypts them under the session's K-DEK on the host"}});
  }
  bool icc_listed = false;
  for_each_command(prep, [&](const CommandSpec& c) {
    for (const DgiSpec& d : c.dgis) {
      if (d.source == DgiSource::kIccMasterKeys) {
        icc_listed = true;
        exposures.push_back({{"what", "DGI " + format_dgi_id(d.id) + ": ICC master keys MK-AC, MK-SMI, MK-SMC"},
                             {"why", "computed by the HSM from the issuer master keys (which never leave it) into "
                                     "host memory with the batch's other card keys, DES parity fixed and encrypted "
                                     "under the card's DEK on the host, wiped when the card is done"}});
      } else if (d.source == DgiSource::kKeyToKey) {
        exposures.push_back({{"what", "DGI " + format_dgi_id(d.id) + ": attribute '" + d.wrapped_attribute + "'"},
                             {"why", "unwrapped from its DKep (which never leaves the HSM) into a non-sensitive "
                                     "object, read into host memory for one card and encrypted under the card's "
                                     "DEK on the host"}});
      }
    }
  });
  if (!icc_listed && prep.icc_keys) {
    for_each_command(prep, [&](const CommandSpec& c) {
      for (const DgiSpec& d : c.dgis) {
        if (d.source != DgiSource::kIccKeyKcvs || icc_listed) continue;
        icc_listed = true;
        exposures.push_back({{"what", "ICC master keys MK-AC, MK-SMI, MK-SMC (the KCVs of DGI " + format_dgi_id(d.id) + ")"},
                             {"why", "computed by the HSM from the issuer master keys into host memory for one "
                                     "card; their KCVs are computed on the host"}});
      }
    });
  }
  // The CMAC subkeys of the AES keys used batched live for the whole run.
  std::vector<std::string> batched_cmac;
  if (h != nullptr) {
    if (h->channel && h->channel->batched() && prep.channel.diversification == DiversificationScheme::kKdf3) {
      batched_cmac.push_back(prep.channel.master_key_uri);
    }
    for (std::size_t n = 0; n < h->key_sets.size() && n < prep.key_sets.size(); ++n) {
      if (h->key_sets[n].batched()) batched_cmac.push_back(prep.key_sets[n].master_key_uri);
    }
    if (h->host_challenge && h->host_challenge->batched()) batched_cmac.push_back(prep.channel.host_challenge_key_uri);
  }
  for (const std::string& uri : batched_cmac) {
    exposures.push_back({{"what", "CMAC subkeys K1, K2 of " + uri},
                         {"why", "held for the whole run (computed from one C_Encrypt of the zero block) so that the "
                                 "HSM computes the CMACs of a batch of cards as AES-ECB calls; they do not reveal "
                                 "the key, but with ECB access to it they give any CMAC under it"}});
  }
  nlohmann::ordered_json out = {{"mode", "host"}, {"host_exposures", exposures}};
  // Never on the host: the long-term keys.
  nlohmann::ordered_json hsm_only = nlohmann::ordered_json::array();
  if (!prep.channel.master_key_uri.empty()) hsm_only.push_back(prep.channel.master_key_uri);
  for (const KeySetSpec& ks : prep.key_sets) hsm_only.push_back(ks.master_key_uri);
  if (prep.icc_keys) {
    for (const std::string* u : {&prep.icc_keys->imk_ac_uri, &prep.icc_keys->imk_smi_uri, &prep.icc_keys->imk_smc_uri}) {
      hsm_only.push_back(*u);
    }
  }
  hsm_only.push_back(prep.channel.host_challenge_key_uri);
  out["never_on_host"] = hsm_only;
  if (h != nullptr) {
    nlohmann::ordered_json derivation = nlohmann::ordered_json::array();
    if (h->channel) {
      derivation.push_back({{"what", "card static keys"}, {"key", prep.channel.master_key_uri},
                            {"batched", h->channel->batched()}, {"method", h->channel->method()}});
    }
    for (std::size_t n = 0; n < h->key_sets.size() && n < prep.key_sets.size(); ++n) {
      derivation.push_back({{"what", "key set '" + prep.key_sets[n].name + "'"}, {"key", prep.key_sets[n].master_key_uri},
                            {"batched", h->key_sets[n].batched()}, {"method", h->key_sets[n].method()}});
    }
    if (h->icc && prep.icc_keys) {
      derivation.push_back({{"what", "ICC master keys"},
                            {"key", prep.icc_keys->imk_ac_uri + ", " + prep.icc_keys->imk_smi_uri + ", " +
                                        prep.icc_keys->imk_smc_uri},
                            {"batched", h->icc->batched()}, {"method", h->icc->method()}});
    }
    if (h->host_challenge) {
      const bool b = h->host_challenge->batched();
      derivation.push_back(
          {{"what", "host challenges"}, {"key", prep.channel.host_challenge_key_uri}, {"batched", b},
           {"method", b ? "one C_Encrypt (CKM_AES_ECB) per block position of the challenge input and batch of cards"
                        : "one C_Sign (CKM_AES_CMAC) per session: the key lacks the encrypt usage"}});
    }
    out["hsm_derivation"] = derivation;
  }
  return out;
}

}  // namespace

nlohmann::ordered_json key_handling_report(const PrepSpec& prep, const PrepKeys* keys) {
  if (prep.key_handling == KeyHandling::kHost) return host_key_handling_report(prep, keys);
  nlohmann::ordered_json exposures = nlohmann::ordered_json::array();
  if (prep.channel.diversification == DiversificationScheme::kKdf3) {
    exposures.push_back({{"what", "card static keys K-ENC, K-MAC, K-DEK (kdf3)"},
                         {"why", "the module has no CMAC-based key derivation: the kdf3 blocks come back from "
                                 "C_Sign on the master key and go into sensitive session objects at once"}});
  }
  exposures.push_back(
      {{"what", prep.channel.scp == 3 ? "SCP03 session keys S-ENC, S-MAC, S-RMAC" : "SCP02 session keys S-ENC, C-MAC, R-MAC, S-DEK"},
       {"why", prep.channel.scp == 3
                   ? "the module has no SP 800-108 KDF: session keys are CMAC calls on the card's static keys "
                     "(HSM session objects), held in zeroized host memory for one card"
                   : "the module has no ISO 9797-1 retail MAC: session keys are 3DES-CBC calls on the card's "
                     "static keys (HSM session objects), held in zeroized host memory for one card"}});
  for (const KeySetSpec& ks : prep.key_sets) {
    exposures.push_back({{"what", "key set '" + ks.name + "' (KVN " + to_hex(Bytes{ks.kvn}) +
                                      ") static keys K-ENC, K-MAC, K-DEK (kdf3), loaded by PUT KEY"},
                         {"why", "the module has no CMAC-based key derivation: the kdf3 blocks come back from "
                                 "C_Sign on the service provider's master key and go into sensitive session objects "
                                 "at once; PUT KEY then wraps them under the session's K-DEK inside the HSM"}});
  }
  for_each_command(prep, [&](const CommandSpec& c) {
    for (const DgiSpec& d : c.dgis) {
      if (!d.via_host) continue;
      const std::string what =
          d.source == DgiSource::kIccMasterKeys
              ? "DGI " + format_dgi_id(d.id) + ": ICC master keys MK-AC, MK-SMI, MK-SMC"
              : "DGI " + format_dgi_id(d.id) + ": attribute '" + d.wrapped_attribute + "'";
      exposures.push_back(
          {{"what", what},
           {"why", "the profile opts in with via=\"host\": the module cannot wrap under the card's DEK (SCP02 "
                   "S-DEK, 3DES), so the value is read from a non-sensitive session object into zeroized host "
                   "memory for one card and encrypted there"}});
    }
  });
  return {{"mode", "strict"}, {"host_exposures", exposures}};
}

}  // namespace persoflow::pipeline
