#include "hsm/key_store.h"

#include <algorithm>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

CK_BBOOL ck_bool(bool b) { return b ? CK_TRUE : CK_FALSE; }

CK_KEY_TYPE ck_key_type_of(KeyType type) {
  switch (type) {
    case KeyType::kAes128:
    case KeyType::kAes192:
    case KeyType::kAes256: return CKK_AES;
    case KeyType::kDes2: return CKK_DES2;
    case KeyType::kDes3: return CKK_DES3;
  }
  return CKK_AES;
}

CK_MECHANISM_TYPE ecb_mechanism(KeyFamily family) {
  return family == KeyFamily::kDes ? CKM_DES3_ECB : CKM_AES_ECB;
}

// Attribute template builder that owns the storage its pointers point into.
class Template {
 public:
  Template& add_bool(CK_ATTRIBUTE_TYPE type, bool value) {
    bools_.push_back(ck_bool(value));
    attrs_.push_back({type, nullptr, sizeof(CK_BBOOL)});
    ptr_fix_.push_back({attrs_.size() - 1, Kind::kBool, bools_.size() - 1});
    return *this;
  }
  Template& add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
    ulongs_.push_back(value);
    attrs_.push_back({type, nullptr, sizeof(CK_ULONG)});
    ptr_fix_.push_back({attrs_.size() - 1, Kind::kUlong, ulongs_.size() - 1});
    return *this;
  }
  Template& add_bytes(CK_ATTRIBUTE_TYPE type, const void* data, std::size_t size) {
    attrs_.push_back({type, const_cast<void*>(data), static_cast<CK_ULONG>(size)});
    return *this;
  }
  Template& add_usage(const KeyUsage& u) {
    return add_bool(CKA_ENCRYPT, u.encrypt)
        .add_bool(CKA_DECRYPT, u.decrypt)
        .add_bool(CKA_SIGN, u.sign)
        .add_bool(CKA_VERIFY, u.verify)
        .add_bool(CKA_WRAP, u.wrap)
        .add_bool(CKA_UNWRAP, u.unwrap)
        .add_bool(CKA_DERIVE, u.derive);
  }
  // Pointers into the vectors are fixed up last, after every push_back.
  std::vector<CK_ATTRIBUTE>& finish() {
    for (const auto& f : ptr_fix_) {
      attrs_[f.attr].pValue = f.kind == Kind::kBool ? static_cast<void*>(&bools_[f.index])
                                                    : static_cast<void*>(&ulongs_[f.index]);
    }
    return attrs_;
  }

 private:
  enum class Kind { kBool, kUlong };
  struct Fix {
    std::size_t attr;
    Kind kind;
    std::size_t index;
  };
  std::vector<CK_ATTRIBUTE> attrs_;
  std::vector<CK_BBOOL> bools_;
  std::vector<CK_ULONG> ulongs_;
  std::vector<Fix> ptr_fix_;
};

// The attributes of a long-term key made by the ceremony.
Template key_template(const KeySpec& spec, const Bytes& id, bool token_object) {
  Template t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .add_ulong(CKA_KEY_TYPE, ck_key_type_of(spec.type))
      .add_bool(CKA_TOKEN, token_object)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_EXTRACTABLE, false)
      // CKA_MODIFIABLE stays true: with it false, SoftHSM refuses the session copy that
      // kcv() needs for keys without the encrypt usage (CKR_ATTRIBUTE_READ_ONLY). Lock
      // usages with the HSM's own policy in production (docs/keys.md).
      .add_bytes(CKA_LABEL, spec.label.data(), spec.label.size())
      .add_bytes(CKA_ID, id.data(), id.size())
      .add_usage(spec.usage);
  return t;
}

std::string describe(const KeySpec& spec) {
  return std::string(key_type_name(spec.type)) + " key '" + spec.label + "'";
}

}  // namespace

std::string ck_key_type_name(CK_KEY_TYPE type) {
  switch (type) {
    case CKK_AES: return "CKK_AES";
    case CKK_DES: return "CKK_DES";
    case CKK_DES2: return "CKK_DES2";
    case CKK_DES3: return "CKK_DES3";
    case CKK_GENERIC_SECRET: return "CKK_GENERIC_SECRET";
    default: return "CKK_0x" + to_hex(Bytes{static_cast<std::uint8_t>(type >> 8),
                                            static_cast<std::uint8_t>(type)});
  }
}

KeyStore::KeyStore(std::shared_ptr<Token> token) : token_(std::move(token)) {
  listener_id_ = token_->add_login_listener(
      [this](CK_FUNCTION_LIST* api, CK_SESSION_HANDLE session) { return refresh_handles(api, session); });
}

KeyStore::~KeyStore() { token_->remove_login_listener(listener_id_); }

std::shared_ptr<TrackedHandle> KeyStore::start_tracking(std::optional<std::string> label, std::optional<Bytes> id) {
  std::lock_guard lock(cache_mu_);
  auto tracked = std::make_shared<TrackedHandle>(CK_INVALID_HANDLE, std::move(label), std::move(id),
                                                 token_->login_generation());
  if (tracked_.size() >= 64 && (tracked_.size() & (tracked_.size() - 1)) == 0) {
    std::erase_if(tracked_, [](const std::weak_ptr<TrackedHandle>& w) { return w.expired(); });
  }
  tracked_.push_back(tracked);
  return tracked;
}

Status KeyStore::finish_tracking(KeyInfo& info, std::shared_ptr<TrackedHandle> tracked) {
  if (!info.token_object) return ok_status();  // a session object (list() sees those too)
  std::lock_guard lock(cache_mu_);
  if (tracked->generation.load(std::memory_order_acquire) != token_->login_generation()) {
    return Error::hsm(CKR_USER_NOT_LOGGED_IN, "C_FindObjects",
                      "reading the handle of key '" + info.label + "' on token '" + token_->label() +
                          "': the token logged in again meanwhile");
  }
  tracked->handle.store(info.handle.get(), std::memory_order_release);
  info.handle.tracked_ = std::move(tracked);
  return ok_status();
}

Status KeyStore::refresh_handles(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE session) {
  const std::uint64_t generation = token_->login_generation();
  std::lock_guard lock(cache_mu_);
  std::erase_if(tracked_, [](const std::weak_ptr<TrackedHandle>& w) { return w.expired(); });
  for (const auto& weak : tracked_) {
    auto tracked = weak.lock();
    if (!tracked || tracked->handle.load(std::memory_order_acquire) == CK_INVALID_HANDLE) continue;  // in a search
    const std::string name = "key '" + tracked->label.value_or("") + "'" +
                             (tracked->id ? " (id " + to_hex(*tracked->id) + ")" : std::string());
    const std::string what = "finding " + name + " again";
    Template t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bool(CKA_TOKEN, true);
    if (tracked->label) t.add_bytes(CKA_LABEL, tracked->label->data(), tracked->label->size());
    if (tracked->id) t.add_bytes(CKA_ID, tracked->id->data(), tracked->id->size());
    auto& attrs = t.finish();
    PF_TRY(check_rv(api->C_FindObjectsInit(session, attrs.data(), static_cast<CK_ULONG>(attrs.size())),
                    "C_FindObjectsInit", what));
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    const CK_RV rv = api->C_FindObjects(session, found, 2, &n);
    api->C_FindObjectsFinal(session);
    PF_TRY(check_rv(rv, "C_FindObjects", what));
    if (n == 0) {
      return Error(ErrorCode::kNotFound, name + " is no longer on token '" + token_->label() + "'");
    }
    if (n > 1) {
      return Error(ErrorCode::kInvalidArgument, name + " is now ambiguous on token '" + token_->label() + "'");
    }
    tracked->handle.store(found[0], std::memory_order_release);
    tracked->generation.store(generation, std::memory_order_release);
  }
  return ok_status();
}

Result<std::vector<CK_OBJECT_HANDLE>> KeyStore::find_handles(SessionLease& session,
                                                             std::vector<CK_ATTRIBUTE> tmpl) {
  CK_FUNCTION_LIST* api = session.api();
  PF_TRY(session.check(api->C_FindObjectsInit(session.handle(), tmpl.data(),
                                              static_cast<CK_ULONG>(tmpl.size())),
                       "C_FindObjectsInit", "searching keys"));
  std::vector<CK_OBJECT_HANDLE> found;
  CK_OBJECT_HANDLE batch[64];
  for (;;) {
    CK_ULONG n = 0;
    CK_RV rv = api->C_FindObjects(session.handle(), batch, 64, &n);
    if (rv != CKR_OK) {
      api->C_FindObjectsFinal(session.handle());
      return session.check(rv, "C_FindObjects", "searching keys").error();
    }
    if (n == 0) break;
    found.insert(found.end(), batch, batch + n);
  }
  PF_TRY(session.check(api->C_FindObjectsFinal(session.handle()), "C_FindObjectsFinal",
                       "searching keys"));
  return found;
}

Result<KeyInfo> KeyStore::read_info(SessionLease& session, CK_OBJECT_HANDLE handle) {
  CK_FUNCTION_LIST* api = session.api();
  KeyInfo info;
  info.handle = handle;
  CK_KEY_TYPE key_type = CK_UNAVAILABLE_INFORMATION;
  CK_ULONG value_len = CK_UNAVAILABLE_INFORMATION;
  CK_BBOOL flags[13] = {};
  CK_ATTRIBUTE fixed[] = {
      {CKA_KEY_TYPE, &key_type, sizeof key_type},  {CKA_VALUE_LEN, &value_len, sizeof value_len},
      {CKA_TOKEN, &flags[0], 1},     {CKA_PRIVATE, &flags[1], 1},       {CKA_SENSITIVE, &flags[2], 1},
      {CKA_EXTRACTABLE, &flags[3], 1}, {CKA_ALWAYS_SENSITIVE, &flags[4], 1},
      {CKA_NEVER_EXTRACTABLE, &flags[5], 1}, {CKA_ENCRYPT, &flags[6], 1}, {CKA_DECRYPT, &flags[7], 1},
      {CKA_SIGN, &flags[8], 1},      {CKA_VERIFY, &flags[9], 1},        {CKA_WRAP, &flags[10], 1},
      {CKA_UNWRAP, &flags[11], 1},   {CKA_DERIVE, &flags[12], 1},
  };
  CK_RV rv = api->C_GetAttributeValue(session.handle(), handle, fixed,
                                      static_cast<CK_ULONG>(std::size(fixed)));
  // Attributes a key type does not have come back as CK_UNAVAILABLE_INFORMATION.
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
    return session.check(rv, "C_GetAttributeValue", "reading key attributes").error();
  }
  auto flag = [&](int i) { return fixed[2 + i].ulValueLen == 1 && flags[i] == CK_TRUE; };
  info.ck_key_type = key_type;
  info.token_object = flag(0);
  info.private_object = flag(1);
  info.sensitive = flag(2);
  info.extractable = flag(3);
  info.always_sensitive = flag(4);
  info.never_extractable = flag(5);
  info.usage = {flag(6), flag(7), flag(8), flag(9), flag(10), flag(11), flag(12)};

  // Variable-length attributes: ask for the sizes, then the values.
  CK_ATTRIBUTE var[] = {{CKA_LABEL, nullptr, 0}, {CKA_ID, nullptr, 0}};
  rv = api->C_GetAttributeValue(session.handle(), handle, var, 2);
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID) {
    return session.check(rv, "C_GetAttributeValue", "reading key label and id").error();
  }
  std::string label(var[0].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : var[0].ulValueLen, '\0');
  Bytes id(var[1].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : var[1].ulValueLen);
  var[0].pValue = label.data();
  var[0].ulValueLen = label.size();
  var[1].pValue = id.data();
  var[1].ulValueLen = id.size();
  PF_TRY(session.check(api->C_GetAttributeValue(session.handle(), handle, var, 2),
                       "C_GetAttributeValue", "reading key label and id"));
  info.label = std::move(label);
  info.id = std::move(id);

  switch (key_type) {
    case CKK_AES:
      info.bits = value_len == CK_UNAVAILABLE_INFORMATION ? 0 : value_len * 8;
      info.type = key_type_for(KeyFamily::kAes, info.bits / 8);
      break;
    case CKK_DES2:
      info.type = KeyType::kDes2;
      info.bits = key_bits(KeyType::kDes2);
      break;
    case CKK_DES3:
      info.type = KeyType::kDes3;
      info.bits = key_bits(KeyType::kDes3);
      break;
    default:
      info.bits = value_len == CK_UNAVAILABLE_INFORMATION ? 0 : value_len * 8;
      break;
  }
  Pkcs11Uri uri;
  uri.token = token_->label();
  uri.object = info.label;
  if (!info.id.empty()) uri.id = info.id;
  uri.type = Pkcs11ObjectType::kSecretKey;
  info.uri = uri.to_string();
  return info;
}

Result<KeyInfo> KeyStore::find(std::string_view uri_text) {
  PF_ASSIGN_OR_RETURN(Pkcs11Uri uri, Pkcs11Uri::parse(uri_text));
  return find(uri);
}

Result<KeyInfo> KeyStore::find(const Pkcs11Uri& uri) {
  const std::string key = uri.to_string();
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      // Refreshed after every new login; an entry of an older generation (its refresh
      // failed, so the restoration did) is searched again rather than trusted.
      const auto& tracked = it->second.handle.tracked_;
      if (!tracked || tracked->generation.load(std::memory_order_acquire) == token_->login_generation()) {
        return it->second;
      }
      cache_.erase(it);
    }
  }
  if (!uri.names_one_object()) {
    return Error(ErrorCode::kInvalidArgument,
                 "key URI " + key + " names no object: give object= (the label) or id=");
  }
  if (uri.type && *uri.type != Pkcs11ObjectType::kSecretKey) {
    return Error(ErrorCode::kInvalidArgument, "key URI " + key + " must name a secret key (type=secret-key)");
  }
  if (uri.token && *uri.token != token_->label()) {
    return Error(ErrorCode::kNotFound, "key URI " + key + " names token '" + *uri.token +
                                           "' but the configured token is '" + token_->label() + "'");
  }
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  auto tracked = start_tracking(uri.object, uri.id);
  Template t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY);
  if (uri.object) t.add_bytes(CKA_LABEL, uri.object->data(), uri.object->size());
  if (uri.id) t.add_bytes(CKA_ID, uri.id->data(), uri.id->size());
  PF_ASSIGN_OR_RETURN(auto handles, find_handles(session, t.finish()));
  if (handles.empty()) {
    return Error(ErrorCode::kNotFound, "key not found: no secret key on token '" + token_->label() +
                                           "' matches " + key);
  }
  if (handles.size() > 1) {
    return Error(ErrorCode::kInvalidArgument,
                 "key URI " + key + " is ambiguous: it matches " + std::to_string(handles.size()) +
                     " keys on token '" + token_->label() + "' (add id=)");
  }
  PF_ASSIGN_OR_RETURN(KeyInfo info, read_info(session, handles.front()));
  PF_TRY(finish_tracking(info, std::move(tracked)));
  std::lock_guard lock(cache_mu_);
  cache_.insert_or_assign(key, info);
  return info;
}

Result<std::vector<KeyInfo>> KeyStore::list() {
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  Template t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY);
  PF_ASSIGN_OR_RETURN(auto handles, find_handles(session, t.finish()));
  std::vector<KeyInfo> keys;
  for (CK_OBJECT_HANDLE h : handles) {
    PF_ASSIGN_OR_RETURN(KeyInfo info, read_info(session, h));
    // Tracked after the search: a new login during list() leaves these stale (the
    // listing commands use them only to print).
    if (info.token_object) PF_TRY(finish_tracking(info, start_tracking(info.label, info.id)));
    keys.push_back(std::move(info));
  }
  std::sort(keys.begin(), keys.end(), [](const KeyInfo& a, const KeyInfo& b) {
    return a.label != b.label ? a.label < b.label : a.id < b.id;
  });
  return keys;
}

Status KeyStore::check_label_free(SessionLease& session, const std::string& label) {
  Template t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bytes(CKA_LABEL, label.data(), label.size());
  PF_ASSIGN_OR_RETURN(auto handles, find_handles(session, t.finish()));
  if (!handles.empty()) {
    return Error(ErrorCode::kAlreadyExists, "a secret key labelled '" + label +
                                                "' already exists on token '" + token_->label() + "'");
  }
  return ok_status();
}

Result<Bytes> KeyStore::new_id(SessionLease& session) {
  Bytes id(8);
  PF_TRY(session.check(session.api()->C_GenerateRandom(session.handle(), id.data(),
                                                      static_cast<CK_ULONG>(id.size())),
                       "C_GenerateRandom", "choosing a key id"));
  return id;
}

Result<KeyInfo> KeyStore::generate(const KeySpec& spec) {
  if (spec.label.empty()) return Error(ErrorCode::kInvalidArgument, "a key needs a label");
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  PF_TRY(check_label_free(session, spec.label));
  PF_ASSIGN_OR_RETURN(Bytes id, spec_id(session, spec));
  auto tracked = start_tracking(spec.label, id);
  Template t = key_template(spec, id, /*token_object=*/true);
  CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
  if (spec.type == KeyType::kDes2) mech.mechanism = CKM_DES2_KEY_GEN;
  if (spec.type == KeyType::kDes3) mech.mechanism = CKM_DES3_KEY_GEN;
  if (key_family(spec.type) == KeyFamily::kAes) t.add_ulong(CKA_VALUE_LEN, key_length_bytes(spec.type));
  auto& attrs = t.finish();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(session.check(session.api()->C_GenerateKey(session.handle(), &mech, attrs.data(),
                                                    static_cast<CK_ULONG>(attrs.size()), &handle),
                       "C_GenerateKey", "generating " + describe(spec)));
  PF_ASSIGN_OR_RETURN(KeyInfo info, read_info(session, handle));
  PF_TRY(finish_tracking(info, std::move(tracked)));
  return info;
}

Result<KeyInfo> KeyStore::create_from_value(const KeySpec& spec, const SecureBytes& value) {
  if (spec.label.empty()) return Error(ErrorCode::kInvalidArgument, "a key needs a label");
  if (value.size() != key_length_bytes(spec.type)) {
    return Error(ErrorCode::kInvalidArgument,
                 describe(spec) + " needs " + std::to_string(key_length_bytes(spec.type)) +
                     " bytes, got " + std::to_string(value.size()));
  }
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  PF_TRY(check_label_free(session, spec.label));
  PF_ASSIGN_OR_RETURN(Bytes id, spec_id(session, spec));
  auto tracked = start_tracking(spec.label, id);
  PF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE handle,
                      create_key_object(session, spec, id, value, /*token_object=*/true, "creating " + describe(spec)));
  PF_ASSIGN_OR_RETURN(KeyInfo info, read_info(session, handle));
  PF_TRY(finish_tracking(info, std::move(tracked)));
  return info;
}

Result<Bytes> KeyStore::spec_id(SessionLease& session, const KeySpec& spec) {
  if (spec.id) return *spec.id;
  return new_id(session);
}

Result<CK_OBJECT_HANDLE> KeyStore::create_key_object(SessionLease& session, const KeySpec& spec, const Bytes& id,
                                                     const SecureBytes& value, bool token_object,
                                                     const std::string& what) {
  // DES ignores parity bits, so odd parity changes no KCV and no cryptogram; it keeps
  // strict modules from refusing a value typed without it.
  SecureBytes key_value = value;
  if (key_family(spec.type) == KeyFamily::kDes) {
    set_odd_parity(key_value.reveal_mutable().data(), key_value.size());
  }
  Template t = key_template(spec, id, token_object);
  t.add_bytes(CKA_VALUE, key_value.reveal().data(), key_value.size());
  auto& attrs = t.finish();
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  PF_TRY(session.check(session.api()->C_CreateObject(session.handle(), attrs.data(),
                                                     static_cast<CK_ULONG>(attrs.size()), &handle),
                       "C_CreateObject", what));
  return handle;
}

Result<Bytes> KeyStore::encrypt_kcv_block(SessionLease& session, CK_OBJECT_HANDLE handle,
                                          KeyFamily family) {
  CK_FUNCTION_LIST* api = session.api();
  CK_MECHANISM mech{ecb_mechanism(family), nullptr, 0};
  Bytes block = kcv_block(family);
  Bytes out(block.size());
  CK_ULONG out_len = static_cast<CK_ULONG>(out.size());
  PF_TRY(session.check(api->C_EncryptInit(session.handle(), &mech, handle), "C_EncryptInit",
                       "computing a key check value"));
  PF_TRY(session.check(api->C_Encrypt(session.handle(), block.data(),
                                      static_cast<CK_ULONG>(block.size()), out.data(), &out_len),
                       "C_Encrypt", "computing a key check value"));
  out.resize(kKcvLength);
  return out;
}

Result<Bytes> KeyStore::kcv(const KeyInfo& key) {
  if (!key.type) {
    return Error(ErrorCode::kUnsupported,
                 "no KCV convention for key '" + key.label + "' of type " + ck_key_type_name(key.ck_key_type));
  }
  const KeyFamily family = key_family(*key.type);
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  if (key.usage.encrypt) return encrypt_kcv_block(session, key.handle, family);

  // A session copy that may encrypt, destroyed right after: the stored key keeps its usages.
  Template t;
  t.add_bool(CKA_TOKEN, false).add_bool(CKA_ENCRYPT, true);
  auto& attrs = t.finish();
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  CK_RV rv = session.api()->C_CopyObject(session.handle(), key.handle, attrs.data(),
                                         static_cast<CK_ULONG>(attrs.size()), &copy);
  if (rv == CKR_OK) {
    auto result = encrypt_kcv_block(session, copy, family);
    session.api()->C_DestroyObject(session.handle(), copy);
    return result;
  }
  if (family == KeyFamily::kDes) {
    // PKCS#11 defines CKA_CHECK_VALUE for DES keys as 3DES-ECB(00 x 8)[0:3]: the GP KCV.
    Bytes check(kKcvLength);
    CK_ATTRIBUTE a{CKA_CHECK_VALUE, check.data(), static_cast<CK_ULONG>(check.size())};
    if (session.api()->C_GetAttributeValue(session.handle(), key.handle, &a, 1) == CKR_OK &&
        a.ulValueLen == kKcvLength) {
      return check;
    }
  }
  return session.check(rv, "C_CopyObject",
                       "computing the KCV of key '" + key.label + "' (it has no encrypt usage)")
      .error();
}

Result<Bytes> KeyStore::kcv_of_value(KeyType type, const SecureBytes& value) {
  if (value.size() != key_length_bytes(type)) {
    return Error(ErrorCode::kInvalidArgument, std::string(key_type_name(type)) + " key needs " +
                                                  std::to_string(key_length_bytes(type)) +
                                                  " bytes, got " + std::to_string(value.size()));
  }
  PF_ASSIGN_OR_RETURN(SessionLease session, token_->sessions().lease());
  const KeySpec spec{"persoflow-kcv-check", type, KeyUsage{.encrypt = true}, std::nullopt};
  PF_ASSIGN_OR_RETURN(CK_OBJECT_HANDLE handle,
                      create_key_object(session, spec, Bytes{0}, value, /*token_object=*/false,
                                        "loading a key component to check its KCV"));
  auto result = encrypt_kcv_block(session, handle, key_family(type));
  session.api()->C_DestroyObject(session.handle(), handle);
  return result;
}

}  // namespace persoflow::hsm
