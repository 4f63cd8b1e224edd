#include "hsm/host_key_derivation.h"

#include <algorithm>
#include <array>
#include <string>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

// SoftHSM page-faults heavily above 64 KiB per call (hsm-facts.md); a multiple of both
// block sizes.
constexpr std::size_t kMaxCallBytes = 64 * 1024;

CK_BYTE_PTR mutable_ptr(std::span<const std::uint8_t> s) {
  // PKCS#11 takes non-const input pointers it never writes.
  return const_cast<CK_BYTE_PTR>(s.data());
}

Error invalid(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

const char* type_name(StaticKeyType t) {
  switch (t) {
    case StaticKeyType::kEnc: return "K-ENC";
    case StaticKeyType::kMac: return "K-MAC";
    case StaticKeyType::kDek: return "K-DEK";
  }
  return "K-?";
}

constexpr std::array kTypes = {StaticKeyType::kEnc, StaticKeyType::kMac, StaticKeyType::kDek};

// C_DeriveKey(`mechanism`, `data`) of a session object that is NOT sensitive, its value
// read and the object destroyed at once, on one leased session: the fallback of the host
// mode for a base key without the encrypt usage. The value is host memory from here on,
// which is what the host mode is.
Result<SecureBytes> derive_readable(KeyStore& keys, const KeyInfo& base, CK_MECHANISM_TYPE mechanism,
                                    SecureBytes& data, CK_KEY_TYPE key_type, std::size_t length,
                                    const std::string& what) {
  auto d = data.reveal_mutable();
  CK_KEY_DERIVATION_STRING_DATA params{d.data(), static_cast<CK_ULONG>(d.size())};
  CK_MECHANISM mech{mechanism, &params, sizeof params};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ULONG value_len = static_cast<CK_ULONG>(length);
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof cls},          {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &no, sizeof no},            {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &no, sizeof no},        {CKA_EXTRACTABLE, &yes, sizeof yes},
      {CKA_ENCRYPT, &no, sizeof no},          {CKA_DECRYPT, &no, sizeof no},
      {CKA_SIGN, &no, sizeof no},             {CKA_VERIFY, &no, sizeof no},
      {CKA_WRAP, &no, sizeof no},             {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
  };
  if (key_type == CKK_AES) tmpl.push_back({CKA_VALUE_LEN, &value_len, sizeof value_len});
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(s.check(s.api()->C_DeriveKey(s.handle(), &mech, base.handle, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()),
                                      &handle),
                 "C_DeriveKey", what));
  SecureBytes value(length);
  auto v = value.reveal_mutable();
  CK_ATTRIBUTE attr{CKA_VALUE, v.data(), static_cast<CK_ULONG>(v.size())};
  const CK_RV rv = s.api()->C_GetAttributeValue(s.handle(), handle, &attr, 1);
  // Destroyed whatever the read gave: the object must not outlive this call.
  const CK_RV destroyed = s.api()->C_DestroyObject(s.handle(), handle);
  PF_TRY(s.check(rv, "C_GetAttributeValue", what + " (reading the derived value)"));
  PF_TRY(s.check(destroyed, "C_DestroyObject", what + " (destroying the derived object)"));
  if (attr.ulValueLen != length) {
    return Error(ErrorCode::kHsm, what + ": the module returned " + std::to_string(attr.ulValueLen) + " bytes, not " +
                                      std::to_string(length));
  }
  return value;
}

}  // namespace

Status ecb_encrypt_blocks(KeyStore& keys, const KeyInfo& key, std::span<const std::uint8_t> in,
                          std::span<std::uint8_t> out, std::string_view what) {
  const std::string context = std::string(what) + " under '" + key.label + "'";
  if (!key.type) return invalid(context + ": the key is " + ck_key_type_name(key.ck_key_type));
  if (!key.usage.encrypt) return invalid(context + ": the key lacks the encrypt usage (CKA_ENCRYPT)");
  const bool aes = key_family(*key.type) == KeyFamily::kAes;
  const std::size_t block = aes ? 16 : 8;
  if (in.empty() || in.size() % block != 0 || out.size() != in.size()) {
    return invalid(context + ": " + std::to_string(in.size()) + " bytes are not whole " + std::to_string(block) +
                   "-byte blocks");
  }
  CK_MECHANISM mech{aes ? CKM_AES_ECB : CKM_DES3_ECB, nullptr, 0};
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  for (std::size_t at = 0; at < in.size(); at += kMaxCallBytes) {
    const std::size_t n = std::min(kMaxCallBytes, in.size() - at);
    PF_TRY(s.check(s.api()->C_EncryptInit(s.handle(), &mech, key.handle), "C_EncryptInit", context));
    CK_ULONG len = static_cast<CK_ULONG>(n);
    PF_TRY(s.check(s.api()->C_Encrypt(s.handle(), mutable_ptr(in.subspan(at, n)), static_cast<CK_ULONG>(n),
                                      out.data() + at, &len),
                   "C_Encrypt", context));
    if (len != n) {
      return Error(ErrorCode::kHsm, context + ": C_Encrypt returned " + std::to_string(len) + " bytes for " +
                                        std::to_string(n));
    }
  }
  return ok_status();
}

// ---- HsmBatchCmac --------------------------------------------------------------------------

Result<HsmBatchCmac> HsmBatchCmac::create(KeyStore& keys, const KeyInfo& key) {
  if (!key.type || key_family(*key.type) != KeyFamily::kAes) {
    return invalid("AES-CMAC key '" + key.label + "' is " + ck_key_type_name(key.ck_key_type) + ", not AES");
  }
  if (!key.usage.encrypt) {
    if (!key.usage.sign) {
      return invalid("AES-CMAC key '" + key.label + "' has neither the sign usage (CKA_SIGN) nor the encrypt usage "
                     "(CKA_ENCRYPT, the batched computation)");
    }
    return HsmBatchCmac(keys, key, nullptr);
  }
  // L = AES(K, 0^128): the one value the subkeys come from (SP 800-38B §6.1).
  const std::array<std::uint8_t, 16> zero{};
  SecureBytes l(16);
  PF_TRY(ecb_encrypt_blocks(keys, key, zero, l.reveal_mutable(), "computing the CMAC subkeys"));
  PF_ASSIGN_OR_RETURN(CmacSubkeys subkeys, cmac_subkeys_from_l(l.reveal()));
  return HsmBatchCmac(keys, key, std::make_shared<const CmacSubkeys>(std::move(subkeys)));
}

Result<std::vector<SecureBytes>> HsmBatchCmac::sign_each(std::span<const std::span<const std::uint8_t>> messages) const {
  const std::string what = "AES-CMAC under '" + key_.label + "'";
  if (!key_.usage.sign) return invalid(what + ": the key lacks the sign usage (CKA_SIGN)");
  std::vector<SecureBytes> out;
  out.reserve(messages.size());
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_->token().sessions().lease());
  static CK_BYTE empty = 0;
  for (const auto& m : messages) {
    CK_MECHANISM mech{CKM_AES_CMAC, nullptr, 0};
    PF_TRY(s.check(s.api()->C_SignInit(s.handle(), &mech, key_.handle), "C_SignInit", what));
    SecureBytes tag(16);
    CK_ULONG len = 16;
    PF_TRY(s.check(s.api()->C_Sign(s.handle(), m.empty() ? &empty : mutable_ptr(m), static_cast<CK_ULONG>(m.size()),
                                   tag.reveal_mutable().data(), &len),
                   "C_Sign", what));
    if (len != 16) return Error(ErrorCode::kHsm, what + ": the module returned " + std::to_string(len) + " bytes");
    out.push_back(std::move(tag));
  }
  return out;
}

Result<std::vector<SecureBytes>> HsmBatchCmac::mac(std::span<const std::span<const std::uint8_t>> messages) const {
  if (messages.empty()) return std::vector<SecureBytes>{};
  if (!subkeys_) return sign_each(messages);
  // A layer and a C_Sign cost the same two calls: sign when there are fewer messages than
  // layers (one card's multi-block host challenge).
  if (key_.usage.sign && messages.size() < cmac_batch_layers(messages)) return sign_each(messages);
  const EcbOracle ecb = [this](std::span<const std::uint8_t> in, std::span<std::uint8_t> out) -> Status {
    return ecb_encrypt_blocks(*keys_, key_, in, out, "AES-CMAC (batched AES-ECB)");
  };
  return cmac_batch(ecb, *subkeys_, messages);
}

// ---- HostStaticKeyDeriver -------------------------------------------------------------------

Result<HostStaticKeyDeriver> HostStaticKeyDeriver::create(KeyStore& keys, const KeyInfo& master,
                                                          DiversificationScheme scheme, KeyType target) {
  const std::string scheme_name(diversification_scheme_name(scheme));
  if (scheme == DiversificationScheme::kKdf3) {
    if (key_family(target) != KeyFamily::kAes || !master.type || key_family(*master.type) != KeyFamily::kAes ||
        key_length_bytes(target) != key_length_bytes(*master.type)) {
      return invalid("kdf3 master key '" + master.label + "' and the card keys must be AES keys of the same length");
    }
    auto cmac = HsmBatchCmac::create(keys, master);
    if (!cmac) return with_context(cmac.error(), "kdf3 master key (docs/key-derivation.md)");
    return HostStaticKeyDeriver(keys, master, scheme, target, std::make_shared<const HsmBatchCmac>(std::move(*cmac)));
  }
  if (target != KeyType::kDes2) {
    return Error(ErrorCode::kUnsupported, scheme_name + " diversification produces 2-key 3DES keys (des2), not " +
                                              std::string(key_type_name(target)) + " (docs/key-derivation.md)");
  }
  if (master.ck_key_type != CKK_DES2) {
    return invalid(scheme_name + " master key '" + master.label + "' must be a 16-byte 2-key 3DES key (CKK_DES2), got " +
                   ck_key_type_name(master.ck_key_type));
  }
  if (!master.usage.encrypt && !master.usage.derive) {
    return invalid("master key '" + master.label +
                   "' has neither the encrypt usage (CKA_ENCRYPT, batched) nor the derive usage (CKA_DERIVE)");
  }
  return HostStaticKeyDeriver(keys, master, scheme, target, nullptr);
}

bool HostStaticKeyDeriver::batched() const { return cmac_ ? cmac_->batched() : master_.usage.encrypt; }

std::string HostStaticKeyDeriver::method() const {
  if (scheme_ == DiversificationScheme::kKdf3) {
    return batched() ? "one C_Encrypt (CKM_AES_ECB) per batch of cards: CMAC(MK, M) = AES(MK, M xor K1)"
                     : "one C_Sign (CKM_AES_CMAC) per key: the master key lacks the encrypt usage";
  }
  return batched() ? "one C_Encrypt (CKM_DES3_ECB) per batch of cards"
                   : "one C_DeriveKey (CKM_DES3_ECB_ENCRYPT_DATA, non-sensitive), read and destroyed, per key: the "
                     "master key lacks the encrypt usage";
}

Result<std::vector<Result<StaticKeySet>>> HostStaticKeyDeriver::derive(
    std::span<const std::span<const std::uint8_t>> kdds) const {
  std::vector<Result<StaticKeySet>> out;
  out.reserve(kdds.size());
  std::vector<std::size_t> valid;  // cards whose KDD is one
  for (std::size_t c = 0; c < kdds.size(); ++c) {
    if (kdds[c].size() != kKddLength) {
      out.emplace_back(invalid("key diversification data must be 10 bytes, got " + std::to_string(kdds[c].size())));
      continue;
    }
    out.emplace_back(StaticKeySet{});
    valid.push_back(c);
  }
  if (valid.empty()) return out;
  const std::size_t length = key_length_bytes(target_);
  auto slot = [](StaticKeySet& set, StaticKeyType t) -> SecureBytes& {
    return t == StaticKeyType::kEnc ? set.enc : t == StaticKeyType::kMac ? set.mac : set.dek;
  };

  if (scheme_ == DiversificationScheme::kKdf3) {
    // K_t = CMAC(MK, 01 000000 t 00 KDD) || CMAC(MK, 02 ...) truncated: one-block inputs.
    const std::size_t blocks = (length + 15) / 16;
    std::vector<Bytes> inputs;
    inputs.reserve(valid.size() * kTypes.size() * blocks);
    for (const std::size_t c : valid) {
      for (const StaticKeyType t : kTypes) {
        for (std::size_t b = 1; b <= blocks; ++b) {
          Bytes in{static_cast<std::uint8_t>(b), 0x00, 0x00, 0x00, static_cast<std::uint8_t>(t), 0x00};
          in.insert(in.end(), kdds[c].begin(), kdds[c].end());
          inputs.push_back(std::move(in));
        }
      }
    }
    std::vector<std::span<const std::uint8_t>> messages(inputs.begin(), inputs.end());
    auto macs = cmac_->mac(messages);
    if (!macs) return with_context(macs.error(), "deriving card static keys (kdf3) from '" + master_.label + "'");
    std::size_t m = 0;
    for (const std::size_t c : valid) {
      for (const StaticKeyType t : kTypes) {
        SecureBytes& key = slot(*out[c], t);
        for (std::size_t b = 0; b < blocks; ++b) key.append((*macs)[m++].reveal());
        key.resize(length);
      }
    }
    return out;
  }

  // EMV CPS / VISA2: each key is the 16-byte block encrypted as two 3DES-ECB blocks.
  if (master_.usage.encrypt) {
    Bytes in;
    in.reserve(valid.size() * kTypes.size() * 16);
    for (const std::size_t c : valid) {
      for (const StaticKeyType t : kTypes) {
        PF_ASSIGN_OR_RETURN(const Bytes block, diversification_input(scheme_, kdds[c], t));
        in.insert(in.end(), block.begin(), block.end());
      }
    }
    SecureBytes enc(in.size());
    PF_TRY_CTX(ecb_encrypt_blocks(*keys_, master_, in, enc.reveal_mutable(), "diversifying card static keys"),
               "deriving card static keys (" + std::string(diversification_scheme_name(scheme_)) + ")");
    const auto e = enc.reveal();
    std::size_t at = 0;
    for (const std::size_t c : valid) {
      for (const StaticKeyType t : kTypes) {
        SecureBytes& key = slot(*out[c], t);
        key = SecureBytes(e.subspan(at, 16));
        set_odd_parity(key.reveal_mutable().data(), key.size());
        at += 16;
      }
    }
    return out;
  }
  for (const std::size_t c : valid) {
    for (const StaticKeyType t : kTypes) {
      PF_ASSIGN_OR_RETURN(const Bytes block, diversification_input(scheme_, kdds[c], t));
      SecureBytes data(block);
      PF_ASSIGN_OR_RETURN(SecureBytes key,
                          derive_readable(*keys_, master_, CKM_DES3_ECB_ENCRYPT_DATA, data, CKK_DES2, 16,
                                          std::string("deriving ") + type_name(t) + " (" +
                                              std::string(diversification_scheme_name(scheme_)) + ") from '" +
                                              master_.label + "' for the host"));
      set_odd_parity(key.reveal_mutable().data(), key.size());
      slot(*out[c], t) = std::move(key);
    }
  }
  return out;
}

// ---- HostIccDeriver ---------------------------------------------------------------------------

Result<HostIccDeriver> HostIccDeriver::create(KeyStore& keys, const IccIssuerMasterKeys& imks,
                                              IccDerivationOption option) {
  std::vector<Imk> out;
  const std::string name(icc_derivation_option_name(option));
  for (const KeyInfo* k : {&imks.ac, &imks.smi, &imks.smc}) {
    Imk imk{*k, 16};
    if (!k->usage.encrypt && !k->usage.derive) {
      return invalid("issuer master key '" + k->label +
                     "' has neither the encrypt usage (CKA_ENCRYPT, batched) nor the derive usage (CKA_DERIVE)");
    }
    if (option == IccDerivationOption::kC) {
      if (k->ck_key_type != CKK_AES || !k->type || key_family(*k->type) != KeyFamily::kAes) {
        return invalid("ICC master key option C needs an AES issuer master key; '" + k->label + "' is " +
                       ck_key_type_name(k->ck_key_type));
      }
      imk.length = key_length_bytes(*k->type);
    } else if (k->ck_key_type == CKK_DES2) {
      imk.length = 16;
    } else if (k->ck_key_type == CKK_DES3) {
      imk.length = 24;
    } else {
      return invalid("ICC master key option " + name + " needs a 3DES issuer master key (CKK_DES2 or CKK_DES3); '" +
                     k->label + "' is " + ck_key_type_name(k->ck_key_type));
    }
    out.push_back(std::move(imk));
  }
  return HostIccDeriver(keys, std::move(out), option);
}

bool HostIccDeriver::batched() const {
  return std::all_of(imks_.begin(), imks_.end(), [](const Imk& i) { return i.info.usage.encrypt; });
}

std::string HostIccDeriver::method() const {
  const bool aes = option_ == IccDerivationOption::kC;
  if (batched()) {
    return std::string("one C_Encrypt (") + (aes ? "CKM_AES_ECB" : "CKM_DES3_ECB") + ") per issuer master key and batch of cards";
  }
  return std::string("one C_DeriveKey (") + (aes ? "CKM_AES_ECB_ENCRYPT_DATA" : "CKM_DES3_ECB_ENCRYPT_DATA") +
         ", non-sensitive), read and destroyed, per key of an issuer master key without the encrypt usage";
}

Result<std::vector<Result<HostIccKeys>>> HostIccDeriver::derive(std::span<const IccCardId> cards) const {
  const bool aes = option_ == IccDerivationOption::kC;
  std::vector<Result<HostIccKeys>> out;
  out.reserve(cards.size());
  for (std::size_t c = 0; c < cards.size(); ++c) {
    HostIccKeys k;
    k.type = aes ? *imks_[0].info.type : KeyType::kDes2;
    out.emplace_back(std::move(k));
  }
  for (std::size_t n = 0; n < imks_.size(); ++n) {
    const Imk& imk = imks_[n];
    const std::string what = "deriving an ICC master key (option " + std::string(icc_derivation_option_name(option_)) +
                             ") from '" + imk.info.label + "'";
    const std::size_t mk_length = icc_master_key_length(option_, imk.length);
    auto slot = [n](HostIccKeys& k) -> SecureBytes& { return n == 0 ? k.ac : n == 1 ? k.smi : k.smc; };
    // Each card's derivation data; a card whose PAN or PSN is not one fails alone.
    std::vector<SecureBytes> data(cards.size());
    std::vector<std::size_t> valid;
    for (std::size_t c = 0; c < cards.size(); ++c) {
      if (!out[c]) continue;
      auto d = icc_mk_derivation_data(option_, cards[c].pan, cards[c].psn, imk.length);
      if (!d) {
        out[c] = with_context(std::move(d).error(), what);
        continue;
      }
      data[c] = std::move(*d);
      valid.push_back(c);
    }
    if (valid.empty()) continue;
    if (imk.info.usage.encrypt) {
      SecureBytes in;
      for (const std::size_t c : valid) in.append(data[c].reveal());
      SecureBytes enc(in.size());
      PF_TRY_CTX(ecb_encrypt_blocks(*keys_, imk.info, in.reveal(), enc.reveal_mutable(), "ICC master key derivation"),
                 what);
      const auto e = enc.reveal();
      std::size_t at = 0;
      for (const std::size_t c : valid) {
        SecureBytes& mk = slot(*out[c]);
        mk = SecureBytes(e.subspan(at, mk_length));
        at += data[c].size();
      }
    } else {
      for (const std::size_t c : valid) {
        PF_ASSIGN_OR_RETURN(SecureBytes mk, derive_readable(*keys_, imk.info,
                                                            aes ? CKM_AES_ECB_ENCRYPT_DATA : CKM_DES3_ECB_ENCRYPT_DATA,
                                                            data[c], aes ? CKK_AES : CKK_DES2, mk_length,
                                                            what + " for the host"));
        slot(*out[c]) = std::move(mk);
      }
    }
    if (!aes) {
      for (const std::size_t c : valid) {
        SecureBytes& mk = slot(*out[c]);
        set_odd_parity(mk.reveal_mutable().data(), mk.size());
      }
    }
  }
  return out;
}

}  // namespace persoflow::hsm
