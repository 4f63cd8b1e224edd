// Secret keys of one token: find by PKCS#11 URI (looked up once, then cached),
// list, generate, create from a clear value (key ceremony), and key check values
// computed through the HSM.
#pragma once

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

struct KeyInfo {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
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
  explicit KeyStore(std::shared_ptr<Token> token) : token_(std::move(token)) {}

  // The single secret key the URI names. kNotFound names the URI; a URI matching
  // several keys is refused. Results are cached: the HSM is searched once per URI.
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

  std::shared_ptr<Token> token_;
  std::mutex cache_mu_;
  std::map<std::string, KeyInfo> cache_;
};

}  // namespace persoflow::hsm
