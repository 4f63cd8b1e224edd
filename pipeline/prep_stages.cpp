#include "pipeline/prep_stages.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>

#include "engine/card_script.h"
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
    PF_ASSIGN_OR_RETURN(hsm::IccMasterKeyWrapper wrapper, hsm::IccMasterKeyWrapper::create(keys));
    k.icc_wrapper.emplace(std::move(wrapper));
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
  return k;
}

Result<Bytes> host_challenge(MacKey& key, const formats::SeRecord& se, std::uint32_t counter, std::size_t length,
                             std::span<const std::uint8_t> context, std::optional<std::uint8_t> kvn) {
  Bytes input;
  const std::string_view label = "persoflow host challenge v1";
  input.insert(input.end(), label.begin(), label.end());
  input.push_back(0);
  input.insert(input.end(), se.se_id.begin(), se.se_id.end());
  input.push_back(0);
  input.push_back(kvn.value_or(se.kvn));
  for (int shift = 24; shift >= 0; shift -= 8) input.push_back(static_cast<std::uint8_t>(counter >> shift));
  if (!context.empty()) {
    input.push_back(0);
    input.insert(input.end(), context.begin(), context.end());
  }
  PF_ASSIGN_OR_RETURN(Bytes tag, key.mac(input));
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
  for_each_command(prep_, [&](const CommandSpec& c) {
    for (const DgiSpec& d : c.dgis) icc_host_readable_ |= d.source == DgiSource::kIccMasterKeys && d.via_host;
  });
}

Result<formats::BundleCard> CardPreparer::prepare(const formats::XofCard& card, const formats::SeRecord& se,
                                                std::uint32_t counter) {
  for (int attempt = 1;; ++attempt) {
    auto r = prepare_once(card, se, counter);
    if (r) return r;
    const auto rv = r.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) return r;
    if (attempt == kAttempts) {
      return with_context(r.error(), "still failing after " + std::to_string(kAttempts) + " attempts");
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

namespace {

// A derived key set and the handles the offline session works with (HsmCardKeys points into
// `derived`, hence the fixed address).
struct CardKeySet {
  hsm::DerivedKeySet derived;
  std::optional<hsm::HsmCardKeys> keys;
};

}  // namespace

Result<formats::BundleCard> CardPreparer::prepare_once(const formats::XofCard& card, const formats::SeRecord& se,
                                                     std::uint32_t counter) {
  const SecureChannelSpec& ch = prep_.channel;

  // The card's static keys (the SE's key set in the registry): HSM session objects,
  // destroyed when this card is done.
  std::optional<hsm::DerivedKeySet> derived;
  std::optional<hsm::HsmCardKeys> card_keys;
  if (ch.diversification) {
    PF_ASSIGN_OR_RETURN(hsm::DerivedKeySet d,
                        hsm::derive_static_keys(keys_, *k_.master, *ch.diversification, se.kdd, ch.key_type,
                                                hsm::DeriveOptions{.wrappable = false, .kcvs = false}));
    derived.emplace(std::move(d));
    PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_derived(keys_, *derived, ch.key_type));
    card_keys.emplace(std::move(ck));
  } else {
    PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_token_keys(keys_, *k_.enc, *k_.mac, *k_.dek));
    card_keys.emplace(std::move(ck));
  }
  // Key sets the script puts on the SE (<key-set>), derived from the service provider's
  // master key with the SE's KDD when first needed, wrappable (PUT KEY moves them
  // key-to-key under the session's K-DEK).
  std::vector<std::unique_ptr<CardKeySet>> key_sets(prep_.key_sets.size());
  auto key_set = [&](const std::string& name) -> Result<CardKeySet*> {
    for (std::size_t k = 0; k < prep_.key_sets.size(); ++k) {
      if (prep_.key_sets[k].name != name) continue;
      if (!key_sets[k]) {
        const KeySetSpec& spec = prep_.key_sets[k];
        PF_ASSIGN_OR_RETURN(hsm::DerivedKeySet d,
                            hsm::derive_static_keys(keys_, k_.key_set_masters.at(k), spec.diversification, se.kdd,
                                                    spec.key_type, hsm::DeriveOptions{.wrappable = true, .kcvs = true}));
        auto set = std::make_unique<CardKeySet>(CardKeySet{std::move(d), std::nullopt});
        PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys ck, hsm::HsmCardKeys::from_derived(keys_, set->derived, spec.key_type));
        set->keys.emplace(std::move(ck));
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
  // DGIs that never exist in clear on the host: ICC master keys derived and wrapped in the
  // HSM (8000) and their KCVs (9000); field-encrypted values moved from their DKep to the
  // card's K-DEK (8010).
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

  formats::BundleCard bundle_card;
  bundle_card.card_id = card.card_id;
  bundle_card.se_id = se.se_id;

  // One secure channel: SELECT of its SD in clear, INITIALIZE UPDATE, EXTERNAL
  // AUTHENTICATE, then its commands wrapped.
  struct Channel {
    const std::vector<CommandSpec>* commands = nullptr;
    Bytes sd_aid;
    std::uint8_t scp = 3, i = 0x70, level = 0x03, kvn = 0, requested_kvn = 0;
    std::uint32_t counter = 0;
    Bytes challenge_context;  // empty for the registry's key set
    hsm::HsmCardKeys* keys = nullptr;
  };
  auto run_channel = [&](const Channel& c) -> Status {
    const bool s16 = c.scp == 3 && (c.i & 0x01) != 0;
    ChannelParams params;
    params.scp = c.scp;
    params.i = c.i;
    params.level = c.level;
    params.kvn = c.kvn;
    params.requested_kvn = c.requested_kvn;
    params.kdd = se.kdd;
    params.aid = c.sd_aid;
    params.counter = c.counter;
    PF_ASSIGN_OR_RETURN(params.host_challenge,
                        host_challenge(*k_.host_challenge, se, c.counter, s16 ? 16 : 8, c.challenge_context, c.kvn));
    PF_ASSIGN_OR_RETURN(std::unique_ptr<OfflineSession> session, open_offline_session(*c.keys, params));
    const hsm::KeyInfo& dek = c.keys->key_info(CardKeyRole::kDek);
    const DgiProvider provider = [&](const DgiSpec& d) -> Result<ProvidedDgi> {
      switch (d.source) {
        case DgiSource::kIccMasterKeys: {
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
          ProvidedDgi out{{}, true};
          Bytes iv(16, 0x00);
          for (const hsm::IccMasterKey* mk : {&set->ac, &set->smi, &set->smc}) {
            PF_ASSIGN_OR_RETURN(Bytes part, k_.icc_wrapper->wrap(*mk, dek, iv));
            if (part.size() < 16) return Error(ErrorCode::kHsm, "C_WrapKey returned less than one block");
            iv.assign(part.end() - 16, part.end());
            out.value.insert(out.value.end(), part.begin(), part.end());
          }
          return out;
        }
        case DgiSource::kIccKeyKcvs: {
          PF_ASSIGN_OR_RETURN(const hsm::IccMasterKeySet* set, icc_keys());
          ProvidedDgi out{{}, false};
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
          if (d.via_host) {
            PF_ASSIGN_OR_RETURN(SecureBytes clear, hsm::unwrap_secret_for_host(keys_, dkep, card.values[i]->reveal()));
            auto enc = session->encrypt_sensitive(clear.reveal());
            if (!enc) {
              // A value the session cannot encrypt (not whole cipher blocks) is this card's problem.
              return Error(ErrorCode::kInvalidArgument, "attribute '" + d.wrapped_attribute + "': " + enc.error().message());
            }
            return ProvidedDgi{std::move(*enc), true};
          }
          const Bytes zero(16, 0x00);
          PF_ASSIGN_OR_RETURN(Bytes value, hsm::rewrap_secret_under_dek(keys_, dkep, card.values[i]->reveal(), dek, zero));
          return ProvidedDgi{std::move(value), true};
        }
        case DgiSource::kProfile:
          break;
      }
      return Error(ErrorCode::kInternal, "DGI source without a provider");
    };
    // PUT KEY: the key set's three keys, each AES-CBC (zero ICV) under this session's K-DEK
    // inside the HSM (C_WrapKey), with their KCVs (computed in the HSM when derived).
    const PutKeyProvider put_key = [&](const CommandSpec& command) -> Result<ProvidedPutKey> {
      const KeySetSpec* spec = find_key_set(prep_, command.key_set);
      if (spec == nullptr) return Error(ErrorCode::kInternal, "key set '" + command.key_set + "' is not in the profile");
      PF_ASSIGN_OR_RETURN(CardKeySet * set, key_set(command.key_set));
      ProvidedPutKey out;
      out.data.push_back(spec->kvn);
      out.expected_response.push_back(spec->kvn);
      const std::size_t length = key_length_bytes(spec->key_type);
      const Bytes zero(16, 0x00);
      for (const hsm::DerivedKey* key : {&set->derived.enc, &set->derived.mac, &set->derived.dek}) {
        PF_ASSIGN_OR_RETURN(const Bytes cipher, hsm::wrap_key_aes_cbc(keys_, key->key, length, dek, zero));
        PF_ASSIGN_OR_RETURN(const Bytes component, scp03_put_key_component_from(length, cipher, key->kcv,
                                                                                PutKeyComponentFormat::kAmdDTable710));
        out.data.insert(out.data.end(), component.begin(), component.end());
        out.expected_response.insert(out.expected_response.end(), key->kcv.begin(), key->kcv.end());
      }
      out.keys = 3;
      return out;
    };
    PF_ASSIGN_OR_RETURN(std::vector<ScriptApdu> script,
                        build_session_script(*c.commands, SessionShape{c.scp, c.i, c.level}, lookup, *session, provider,
                                             put_key));
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

  // The first session: the ISD with the SE's key set and the reserved counter.
  Channel first;
  first.commands = &prep_.script;
  first.sd_aid = se.isd_aid;
  first.scp = se.scp;
  first.i = se.i;
  first.level = ch.level;
  first.kvn = se.kvn;
  first.counter = counter;
  first.keys = &*card_keys;
  PF_TRY(run_channel(first));
  // Later sessions: with the registry's key set, the next reserved value each; with a key
  // set the script put, the value a card starts a new key set at (SCP03: 000001), the host
  // challenge keyed on the session that loaded it as well.
  std::uint32_t next_registry_value = counter + 1;
  for (const SessionSpec& spec : prep_.sessions) {
    Channel c;
    c.commands = &spec.commands;
    c.sd_aid = spec.sd_aid.empty() ? se.isd_aid : spec.sd_aid;
    if (spec.key_set.empty()) {
      c.scp = se.scp;
      c.i = se.i;
      c.level = ch.level;
      c.kvn = se.kvn;
      c.counter = next_registry_value++;
      c.keys = &*card_keys;
    } else {
      const KeySetSpec* ks = find_key_set(prep_, spec.key_set);
      if (ks == nullptr) return Error(ErrorCode::kInternal, "key set '" + spec.key_set + "' is not in the profile");
      PF_ASSIGN_OR_RETURN(CardKeySet * set, key_set(spec.key_set));
      c.scp = 3;
      c.i = ks->i;
      c.level = ks->level;
      c.kvn = ks->kvn;
      c.requested_kvn = ks->kvn;
      c.counter = kFirstCounterOfANewKeySet;
      c.keys = &*set->keys;
      c.challenge_context = c.sd_aid;
      for (int shift = 24; shift >= 0; shift -= 8) {
        c.challenge_context.push_back(static_cast<std::uint8_t>(counter >> shift));
      }
    }
    PF_TRY(run_channel(c));
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

nlohmann::ordered_json key_handling_report(const PrepSpec& prep) {
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
