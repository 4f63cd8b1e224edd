// Secret keys of one token: find by PKCS#11 URI (looked up once, then cached),
// list, generate, create from a clear value (key ceremony), and key check values
// computed through the HSM.
//
// Handles after a lost login. SoftHSM (and other modules) give token objects new handles
// when the token logs in again after losing its login (hsm/token.h): a handle cached
// before is CKR_OBJECT_HANDLE_INVALID afterwards. So every KeyInfo the KeyStore gives out
// for a token object (find, list, generate, create_from_value) carries a tracked handle,
// shared by all its copies (the cache's, PrepKeys', HsmMacKey's, HsmCardKeys'...): when
// the token logs in again, the KeyStore (a login listener of the token) finds each such
// key again by class, label and id on the new login session and stores the new handle
// before any caller can use the token. A caller holding a KeyInfo copy therefore needs to
// do nothing but retry the operation that failed (the failure comes back transient:
// rv_is_transient). A key that cannot be found again fails the restoration, and the run
// stops naming it. KeyInfo values made by hand (session objects: `info.handle = h`) are
// not tracked: session objects die with the login and must be made again (prep's card
// retry does).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hex.h"
#include "engine/key_types.h"
#include "engine/pkcs11_uri.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "hsm/token.h"

namespace persoflow::hsm {

// The current handle of a token object, updated by its KeyStore after a new login: the
// secret key on the token whose label and id are these (those given: a URI's object= and
// id=; a generated key's label and id).
struct TrackedHandle {
  TrackedHandle(CK_OBJECT_HANDLE h, std::optional<std::string> l, std::optional<Bytes> i, std::uint64_t g)
      : handle(h), label(std::move(l)), id(std::move(i)), generation(g) {}
  std::atomic<CK_OBJECT_HANDLE> handle;
  const std::optional<std::string> label;
  const std::optional<Bytes> id;
  std::atomic<std::uint64_t> generation;  // the token's login generation it was found in
};

// An object handle as callers use it (a CK_OBJECT_HANDLE, implicitly): either a plain
// value, or a tracked handle shared with the KeyStore that found the key (above).
// Assigning a CK_OBJECT_HANDLE makes it plain.
class KeyHandle {
 public:
  KeyHandle() = default;
  KeyHandle(CK_OBJECT_HANDLE handle) : plain_(handle) {}  // NOLINT(google-explicit-constructor)
  KeyHandle& operator=(CK_OBJECT_HANDLE handle) {
    tracked_.reset();
    plain_ = handle;
    return *this;
  }
  operator CK_OBJECT_HANDLE() const { return get(); }  // NOLINT(google-explicit-constructor)
  CK_OBJECT_HANDLE get() const {
    return tracked_ ? tracked_->handle.load(std::memory_order_acquire) : plain_;
  }
  bool tracked() const { return tracked_ != nullptr; }

 private:
  friend class KeyStore;
  std::shared_ptr<TrackedHandle> tracked_;
  CK_OBJECT_HANDLE plain_ = CK_INVALID_HANDLE;
};

struct KeyInfo {
  KeyHandle handle;
  std::string label;
  Bytes id;
  CK_KEY_TYPE ck_key_type = 0;
  std::optional<KeyType> type;  // nullopt for key types persoflow does not use
  std::size_t bits = 0;
  bool token_object = false;
  bool private_object = false;
  bool sensitive = false;
  bool extractable = false;
  bool always_sensitive = false;
  bool never_extractable = false;
  KeyUsage usage;
  std::string uri;  // canonical "pkcs11:token=...;object=...;id=...;type=secret-key"
};

struct KeySpec {
  std::string label;
  KeyType type = KeyType::kAes128;
  KeyUsage usage;
  std::optional<Bytes> id;  // random 8 bytes when absent
};

// The name of a CKK_ value ("CKK_AES", "CKK_DES2", ...).
std::string ck_key_type_name(CK_KEY_TYPE type);

class KeyStore {
 public:
  // Registers with the token as a login listener (above); unregisters when it dies.
  explicit KeyStore(std::shared_ptr<Token> token);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // The single secret key the URI names. kNotFound names the URI; a URI matching
  // several keys is refused. Results are cached: the HSM is searched once per URI (and
  // once more if the cached entry was found under an older login generation).
  Result<KeyInfo> find(const Pkcs11Uri& uri);
  Result<KeyInfo> find(std::string_view uri_text);

  // Every secret key object on the token, sorted by label then id.
  Result<std::vector<KeyInfo>> list();

  // Generates a key inside the HSM: token object, private, sensitive,
  // non-extractable, with exactly the usages in spec. kAlreadyExists if a secret key
  // with that label is already on the token.
  Result<KeyInfo> generate(const KeySpec& spec);

  // Creates a key from clear bytes (assembled ceremony components), with the same
  // attributes as generate(). DES values are set to odd parity first.
  Result<KeyInfo> create_from_value(const KeySpec& spec, const SecureBytes& value);

  // KCV of a stored key (3 bytes, gp-reference.md §1.2), computed by the HSM.
  // Keys without CKA_ENCRYPT are encrypted through a short-lived session copy that
  // has it (C_CopyObject); a module that refuses the copy gets, for DES keys, the
  // standard CKA_CHECK_VALUE (same convention), and an error for AES keys.
  Result<Bytes> kcv(const KeyInfo& key);

  // KCV of clear key bytes, computed by the HSM on a sensitive session object that
  // is destroyed before returning (ceremony components).
  Result<Bytes> kcv_of_value(KeyType type, const SecureBytes& value);

  Token& token() { return *token_; }

 private:
  Result<KeyInfo> read_info(SessionLease& session, CK_OBJECT_HANDLE handle);
  Result<std::vector<CK_OBJECT_HANDLE>> find_handles(SessionLease& session,
                                                     std::vector<CK_ATTRIBUTE> tmpl);
  Result<Bytes> encrypt_kcv_block(SessionLease& session, CK_OBJECT_HANDLE handle, KeyFamily family);
  Status check_label_free(SessionLease& session, const std::string& label);
  Result<Bytes> new_id(SessionLease& session);
  // spec.id, or a new random one.
  Result<Bytes> spec_id(SessionLease& session, const KeySpec& spec);
  // C_CreateObject of a ceremony-attribute key from clear bytes (DES set to odd parity).
  Result<CK_OBJECT_HANDLE> create_key_object(SessionLease& session, const KeySpec& spec, const Bytes& id,
                                             const SecureBytes& value, bool token_object, const std::string& what);

  // Tracking starts before the search that reads a handle, so that a new login during
  // the search cannot be missed: the cell is registered first (handle unknown: skipped
  // by refresh_handles()), then finish_tracking() stores the handle read, unless the token
  // has started logging in again since (the handle may be of the old login): then it
  // fails with CKR_USER_NOT_LOGGED_IN, transient.
  std::shared_ptr<TrackedHandle> start_tracking(std::optional<std::string> label, std::optional<Bytes> id);
  Status finish_tracking(KeyInfo& info, std::shared_ptr<TrackedHandle> tracked);
  // The login listener: finds every tracked key again on `session` and stores its new
  // handle. kNotFound (or kInvalidArgument, ambiguous) names a key that is gone.
  Status refresh_handles(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE session);

  std::shared_ptr<Token> token_;
  std::uint64_t listener_id_ = 0;
  std::mutex cache_mu_;  // cache_ and tracked_
  std::map<std::string, KeyInfo> cache_;
  std::vector<std::weak_ptr<TrackedHandle>> tracked_;
};

}  // namespace persoflow::hsm
