#include "hsm/hsm_keys.h"

#include "hsm/ck_rv.h"

namespace persoflow::hsm {
namespace {

constexpr CK_ULONG kGcmTagBits = 128;
constexpr std::size_t kGcmTagBytes = 16;
constexpr std::size_t kGcmNonceBytes = 12;

CK_BYTE_PTR mutable_ptr(std::span<const std::uint8_t> s) {
  // PKCS#11 v2.40 takes non-const pointers for input buffers it never writes. An empty
  // span may have a null data(): modules answer CKR_ARGUMENTS_BAD to a null pointer
  // even with length 0, so point at a dummy byte instead.
  static CK_BYTE empty = 0;
  return s.empty() ? &empty : const_cast<CK_BYTE_PTR>(s.data());
}

// Return values that mean "the integrity check failed" for unwrapping (AES key wrap)
// and AEAD decryption. SoftHSM 2.6 reports both failures as CKR_GENERAL_ERROR.
bool integrity_failure(CK_RV rv) {
  return rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_ENCRYPTED_DATA_INVALID ||
         rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_GENERAL_ERROR;
}

CK_GCM_PARAMS gcm_params(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad) {
  CK_GCM_PARAMS p{};
  p.pIv = mutable_ptr(nonce);
  p.ulIvLen = static_cast<CK_ULONG>(nonce.size());
  p.ulIvBits = static_cast<CK_ULONG>(nonce.size() * 8);
  p.pAAD = aad.empty() ? nullptr : mutable_ptr(aad);
  p.ulAADLen = static_cast<CK_ULONG>(aad.size());
  p.ulTagBits = kGcmTagBits;
  return p;
}

Status check_nonce(std::span<const std::uint8_t> nonce) {
  if (nonce.size() != kGcmNonceBytes) {
    return Error(ErrorCode::kInternal, "AES-GCM nonce must be 12 bytes, got " + std::to_string(nonce.size()));
  }
  return ok_status();
}

}  // namespace

Result<Bytes> HsmAeadKey::seal(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                               std::span<const std::uint8_t> plaintext) {
  PF_TRY(check_nonce(nonce));
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_.token().sessions().lease());
  CK_GCM_PARAMS params = gcm_params(nonce, aad);
  CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
  const std::string what = "AES-GCM encryption under '" + key_.label + "'";
  PF_TRY(s.check(s.api()->C_EncryptInit(s.handle(), &mech, key_.handle), "C_EncryptInit", what));
  Bytes out(plaintext.size() + kGcmTagBytes);
  CK_ULONG out_len = static_cast<CK_ULONG>(out.size());
  PF_TRY(s.check(s.api()->C_Encrypt(s.handle(), mutable_ptr(plaintext), static_cast<CK_ULONG>(plaintext.size()),
                                    out.data(), &out_len),
                 "C_Encrypt", what));
  out.resize(out_len);
  return out;
}

Result<SecureBytes> HsmAeadKey::open(std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> aad,
                                     std::span<const std::uint8_t> ciphertext_and_tag) {
  PF_TRY(check_nonce(nonce));
  if (ciphertext_and_tag.size() < kGcmTagBytes) {
    return Error(ErrorCode::kIntegrity, "AES-GCM input shorter than its tag");
  }
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_.token().sessions().lease());
  CK_GCM_PARAMS params = gcm_params(nonce, aad);
  CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
  const std::string what = "AES-GCM decryption under '" + key_.label + "'";
  PF_TRY(s.check(s.api()->C_DecryptInit(s.handle(), &mech, key_.handle), "C_DecryptInit", what));
  SecureBytes out(ciphertext_and_tag.size());
  CK_ULONG out_len = static_cast<CK_ULONG>(out.size());
  CK_RV rv = s.api()->C_Decrypt(s.handle(), mutable_ptr(ciphertext_and_tag),
                                static_cast<CK_ULONG>(ciphertext_and_tag.size()),
                                out.reveal_mutable().data(), &out_len);
  if (integrity_failure(rv)) {
    return Error::hsm(rv, "C_Decrypt", what + ": the authentication tag does not verify (C_Decrypt returned " +
                                           ck_rv_name(rv) + ")",
                      ErrorCode::kIntegrity);
  }
  PF_TRY(s.check(rv, "C_Decrypt", what));
  out.resize(out_len);
  return out;
}

Result<Bytes> HsmMacKey::mac(std::span<const std::uint8_t> data) {
  PF_ASSIGN_OR_RETURN(SessionLease s, keys_.token().sessions().lease());
  CK_MECHANISM mech{CKM_AES_CMAC, nullptr, 0};
  const std::string what = "AES-CMAC under '" + key_.label + "'";
  PF_TRY(s.check(s.api()->C_SignInit(s.handle(), &mech, key_.handle), "C_SignInit", what));
  Bytes tag(16);
  CK_ULONG len = static_cast<CK_ULONG>(tag.size());
  PF_TRY(s.check(s.api()->C_Sign(s.handle(), mutable_ptr(data), static_cast<CK_ULONG>(data.size()), tag.data(), &len),
                 "C_Sign", what));
  tag.resize(len);
  return tag;
}

Status HsmMacKey::verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag) {
  // Computed and compared here (constant time) rather than with C_Verify, so the key
  // needs only the sign usage for both directions and the comparison is ours to audit.
  PF_ASSIGN_OR_RETURN(Bytes expected, mac(data));
  if (!constant_time_equal(expected, tag)) {
    return Error(ErrorCode::kIntegrity, "AES-CMAC under '" + key_.label + "' does not match");
  }
  return ok_status();
}

SessionKey::~SessionKey() {
  if (handle_ == CK_INVALID_HANDLE || token_->login_generation() != generation_) return;
  ObjectSession s = token_->object_session();
  s.api()->C_DestroyObject(s.handle(), handle_);
}

Result<SessionKey> unwrap_content_key(KeyStore& keys, const KeyInfo& kek, std::span<const std::uint8_t> wrapped) {
  if (wrapped.size() < 24 || wrapped.size() % 8 != 0) {
    return Error(ErrorCode::kParse, "wrapped content-encryption key has length " + std::to_string(wrapped.size()) +
                                        " (an RFC 3394 wrap of an AES key is 24, 32 or 40 bytes)");
  }
  ObjectSession s = keys.token().object_session();
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},          {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_TOKEN, &no, sizeof no},            {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_ENCRYPT, &yes, sizeof yes},        {CKA_DECRYPT, &yes, sizeof yes},
  };
  CK_MECHANISM mech{CKM_AES_KEY_WRAP, nullptr, 0};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  const CK_RV rv = s.api()->C_UnwrapKey(s.handle(), &mech, kek.handle, mutable_ptr(wrapped),
                                        static_cast<CK_ULONG>(wrapped.size()), tmpl,
                                        static_cast<CK_ULONG>(std::size(tmpl)), &handle);
  if (integrity_failure(rv)) {
    return Error::hsm(rv, "C_UnwrapKey",
                      "the content-encryption key does not unwrap under '" + kek.label +
                          "' (a transport key other than the issuer's, or a damaged envelope): "
                          "C_UnwrapKey returned " + ck_rv_name(rv),
                      ErrorCode::kIntegrity);
  }
  PF_TRY(s.check(rv, "C_UnwrapKey", "unwrapping the content-encryption key under '" + kek.label + "'"));
  return SessionKey(keys.token(), handle);
}

Result<SecureBytes> encrypt_block(Token& token, const SessionKey& key, std::span<const std::uint8_t> block) {
  if (block.size() != 16) return Error(ErrorCode::kInternal, "encrypt_block needs 16 bytes");
  PF_ASSIGN_OR_RETURN(SessionLease s, token.sessions().lease());
  CK_MECHANISM mech{CKM_AES_ECB, nullptr, 0};
  PF_TRY(s.check(s.api()->C_EncryptInit(s.handle(), &mech, key.handle()), "C_EncryptInit",
                 "AES-ECB block with the content-encryption key"));
  SecureBytes out(16);
  CK_ULONG len = 16;
  PF_TRY(s.check(s.api()->C_Encrypt(s.handle(), mutable_ptr(block), 16, out.reveal_mutable().data(), &len),
                 "C_Encrypt", "AES-ECB block with the content-encryption key"));
  return out;
}

Result<std::unique_ptr<StreamDecryptor>> StreamDecryptor::start(Token& token, const SessionKey& key, Mode mode,
                                                                 std::span<const std::uint8_t> iv, Recovery recovery,
                                                                 std::size_t chunk) {
  if (iv.size() != 16) return Error(ErrorCode::kInternal, "stream decryption needs a 16-byte IV or counter block");
  if (chunk == 0 || chunk % 16 != 0 || chunk > kChunk) {
    return Error(ErrorCode::kInternal, "stream decryption chunks must be a positive multiple of 16 bytes, at most " +
                                           std::to_string(kChunk) + ", not " + std::to_string(chunk));
  }
  return std::unique_ptr<StreamDecryptor>(new StreamDecryptor(token, key, mode, iv, std::move(recovery), chunk));
}

Status StreamDecryptor::decrypt_once(std::span<const std::uint8_t> ct, bool last, const std::string& what,
                                     SecureBytes& out) {
  auto lease = token_.sessions().lease();
  if (!lease) return std::move(lease).error().add_context(what);
  SessionLease& s = *lease;
  // The mechanism gets a copy of the chunk's starting state: whatever a module does with
  // its parameter, iv_ stays the state to decrypt this chunk again from.
  Bytes iv = iv_;
  CK_AES_CTR_PARAMS ctr{};
  CK_MECHANISM mech{last ? CKM_AES_CBC_PAD : CKM_AES_CBC, iv.data(), 16};
  if (mode_ == Mode::kCtr) {
    ctr.ulCounterBits = 32;
    std::copy(iv.begin(), iv.end(), ctr.cb);
    mech = CK_MECHANISM{CKM_AES_CTR, &ctr, sizeof ctr};
  }
  PF_TRY(s.check(s.api()->C_DecryptInit(s.handle(), &mech, key_->handle()), "C_DecryptInit", what));
  const std::size_t before = out.size();
  out.resize(before + ct.size() + 16);
  CK_ULONG len = static_cast<CK_ULONG>(ct.size() + 16);
  const CK_RV rv = s.api()->C_Decrypt(s.handle(), mutable_ptr(ct), static_cast<CK_ULONG>(ct.size()),
                                      out.reveal_mutable().data() + before, &len);
  if (rv != CKR_OK) {
    out.resize(before);  // whatever the failed call wrote is dropped: the chunk is output once or never
    if (last && mode_ == Mode::kCbcPad && integrity_failure(rv)) {
      return Error::hsm(rv, "C_Decrypt",
                        "the issuer file's content does not decrypt: bad CBC padding (C_Decrypt returned " +
                            ck_rv_name(rv) + "): damaged or truncated ciphertext",
                        ErrorCode::kIntegrity);
    }
    return s.check(rv, "C_Decrypt", what);
  }
  out.resize(before + len);
  return ok_status();
}

Status StreamDecryptor::decrypt_chunk(std::span<const std::uint8_t> ct, bool last, SecureBytes& out) {
  if (ct.empty() && !(last && mode_ == Mode::kCbcPad)) return ok_status();
  std::string what = "decrypting the issuer file's content at byte " + std::to_string(offset_) + " (" +
                     std::to_string(ct.size()) + " bytes)";
  if (!recovery_.key_description.empty()) what += " with " + recovery_.key_description;
  // The error that ends the stream after retries: the last attempt's, saying why no more.
  auto give_up = [](const Error& e, const std::string& why) {
    return Error::hsm(*e.ck_rv(), e.function(), e.message() + "; " + why, e.code());
  };
  bool renew = false;
  for (int attempt = 1;; ++attempt) {
    Status s = ok_status();
    if (renew) {
      // The old key may have died with the module's sessions (a lost login), or be fine (a
      // device hiccup): which, the error cannot always tell, so the key is made again.
      auto key = recovery_.renew_key();
      if (key) {
        key_ = *key;
      } else {
        s = std::move(key).error().add_context(what + ": making the content key again");
      }
    }
    if (s) s = decrypt_once(ct, last, what, out);
    if (s) break;
    const auto rv = s.error().ck_rv();
    if (!recovery_.renew_key || !rv || !rv_is_transient(*rv)) return s;
    if (attempt >= recovery_.attempts_per_chunk) {
      return give_up(s.error(), "still failing after " + std::to_string(attempt) + " attempts");
    }
    if (retries_ >= static_cast<std::uint64_t>(recovery_.max_retries)) {
      return give_up(s.error(), "the decryption has already been retried " + std::to_string(retries_) +
                                    " times, the most one file may be; the HSM is not stable enough to go on");
    }
    ++retries_;
    renew = true;
  }
  // The next chunk's IV: CBC chains on the last ciphertext block; CTR advances the
  // 32-bit counter by the number of blocks done (mod 2^32, as inc32 does). Only now, after
  // the chunk decrypted: until then iv_ is the state a retry starts from.
  if (mode_ == Mode::kCbcPad) {
    if (ct.size() >= 16) std::copy(ct.end() - 16, ct.end(), iv_.begin());
  } else {
    std::uint32_t c = (std::uint32_t{iv_[12]} << 24) | (std::uint32_t{iv_[13]} << 16) |
                      (std::uint32_t{iv_[14]} << 8) | iv_[15];
    c += static_cast<std::uint32_t>(ct.size() / 16);
    iv_[12] = static_cast<std::uint8_t>(c >> 24);
    iv_[13] = static_cast<std::uint8_t>(c >> 16);
    iv_[14] = static_cast<std::uint8_t>(c >> 8);
    iv_[15] = static_cast<std::uint8_t>(c);
  }
  offset_ += ct.size();
  return ok_status();
}

Status StreamDecryptor::update(std::span<const std::uint8_t> in, SecureBytes& out) {
  if (finished_) return Error(ErrorCode::kInternal, "StreamDecryptor::update after finish");
  if (failed_) return Error(ErrorCode::kInternal, "StreamDecryptor::update after an error");
  pending_.insert(pending_.end(), in.begin(), in.end());
  // CBC keeps at least one whole block for finish(): the padding is in the last one.
  const std::size_t keep = mode_ == Mode::kCbcPad ? 16 : 0;
  std::size_t done = 0;
  while (pending_.size() - done >= chunk_ + keep) {
    Status s = decrypt_chunk(std::span<const std::uint8_t>(pending_).subspan(done, chunk_), false, out);
    if (!s) {
      failed_ = true;
      return s;
    }
    done += chunk_;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
  return ok_status();
}

Status StreamDecryptor::finish(SecureBytes& out) {
  if (finished_) return Error(ErrorCode::kInternal, "StreamDecryptor::finish called twice");
  if (failed_) return Error(ErrorCode::kInternal, "StreamDecryptor::finish after an error");
  finished_ = true;
  if (mode_ == Mode::kCbcPad && (pending_.empty() || pending_.size() % 16 != 0)) {
    return Error(ErrorCode::kIntegrity, "the issuer file's AES-CBC content is " +
                                            std::string(pending_.empty() ? "empty" : "not a multiple of 16 bytes") +
                                            ": damaged or truncated ciphertext");
  }
  std::size_t done = 0;
  // Everything but the last block(s) in whole chunks, then the rest in one last call.
  while (pending_.size() - done > chunk_) {
    PF_TRY(decrypt_chunk(std::span<const std::uint8_t>(pending_).subspan(done, chunk_), false, out));
    done += chunk_;
  }
  PF_TRY(decrypt_chunk(std::span<const std::uint8_t>(pending_).subspan(done), true, out));
  pending_.clear();
  return ok_status();
}

namespace {

// Unwraps an RFC 5649 (KWP) blob under `kek` into a generic secret session object on the
// leased session: sensitive unless `host_readable`, always extractable (it is wrapped
// again or read). A blob that does not unwrap (wrong key, damage) is kIntegrity, with
// `what` naming the value.
Result<CK_OBJECT_HANDLE> unwrap_generic_secret(SessionLease& s, const KeyInfo& kek, std::span<const std::uint8_t> wrapped,
                                               bool host_readable, const std::string& what) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_BBOOL sensitive = host_readable ? CK_FALSE : CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},                 {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_TOKEN, &no, sizeof no},                   {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &sensitive, sizeof sensitive}, {CKA_EXTRACTABLE, &yes, sizeof yes},
  };
  CK_MECHANISM kwp{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
  const CK_RV rv = s.api()->C_UnwrapKey(s.handle(), &kwp, kek.handle, mutable_ptr(wrapped),
                                        static_cast<CK_ULONG>(wrapped.size()), tmpl,
                                        static_cast<CK_ULONG>(std::size(tmpl)), &secret);
  if (integrity_failure(rv)) {
    return Error::hsm(rv, "C_UnwrapKey",
                      what + " does not unwrap under '" + kek.label + "': C_UnwrapKey returned " + ck_rv_name(rv),
                      ErrorCode::kIntegrity);
  }
  PF_TRY(s.check(rv, "C_UnwrapKey", "unwrapping " + what + " under '" + kek.label + "'"));
  return secret;
}

}  // namespace

Result<Bytes> translate_wrapped_secret(KeyStore& keys, const KeyInfo& field_key, const KeyInfo& dkep,
                                       std::span<const std::uint8_t> wrapped) {
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  PF_ASSIGN_OR_RETURN(const CK_OBJECT_HANDLE secret,
                      unwrap_generic_secret(s, field_key, wrapped, false, "a field-encrypted value"));
  CK_MECHANISM kwp{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
  Bytes out(wrapped.size() + 16);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  const CK_RV wrv = s.api()->C_WrapKey(s.handle(), &kwp, dkep.handle, secret, out.data(), &len);
  s.api()->C_DestroyObject(s.handle(), secret);
  PF_TRY(s.check(wrv, "C_WrapKey", "wrapping a field-encrypted value under '" + dkep.label + "'"));
  out.resize(len);
  return out;
}

Result<Bytes> rewrap_secret_under_dek(KeyStore& keys, const KeyInfo& dkep, std::span<const std::uint8_t> wrapped,
                                      const KeyInfo& dek, std::span<const std::uint8_t> iv) {
  if (iv.size() != 16) return Error(ErrorCode::kInvalidArgument, "an AES-CBC IV is 16 bytes");
  if (!dek.usage.wrap) return Error(ErrorCode::kInvalidArgument, "'" + dek.label + "' lacks the wrap usage (CKA_WRAP)");
  // RFC 5649 output: the value padded to 8 bytes, plus 8. A value of whole 16-byte blocks
  // gives wrapped.size() - 8 a multiple of 16 (the only length AES-CBC can wrap).
  if (wrapped.size() < 24 || (wrapped.size() - 8) % 16 != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "the secret is not a whole number of 16-byte blocks: AES-CBC cannot wrap it under the card's "
                 "DEK inside the HSM (the issuer must send it padded)");
  }
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  PF_ASSIGN_OR_RETURN(const CK_OBJECT_HANDLE secret,
                      unwrap_generic_secret(s, dkep, wrapped, false, "a wrapped value of the XOF"));
  Bytes iv_copy(iv.begin(), iv.end());
  CK_MECHANISM cbc{CKM_AES_CBC, iv_copy.data(), static_cast<CK_ULONG>(iv_copy.size())};
  Bytes out(wrapped.size() + 16);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  const CK_RV wrv = s.api()->C_WrapKey(s.handle(), &cbc, dek.handle, secret, out.data(), &len);
  s.api()->C_DestroyObject(s.handle(), secret);
  PF_TRY(s.check(wrv, "C_WrapKey", "wrapping an XOF secret under '" + dek.label + "' (CKM_AES_CBC)"));
  out.resize(len);
  return out;
}

Result<SecureBytes> unwrap_secret_for_host(KeyStore& keys, const KeyInfo& dkep, std::span<const std::uint8_t> wrapped) {
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  PF_ASSIGN_OR_RETURN(const CK_OBJECT_HANDLE secret,
                      unwrap_generic_secret(s, dkep, wrapped, true, "a wrapped value of the XOF"));
  SecureBytes value(wrapped.size());
  auto v = value.reveal_mutable();
  CK_ATTRIBUTE attr{CKA_VALUE, v.data(), static_cast<CK_ULONG>(v.size())};
  const CK_RV grv = s.api()->C_GetAttributeValue(s.handle(), secret, &attr, 1);
  s.api()->C_DestroyObject(s.handle(), secret);
  PF_TRY(s.check(grv, "C_GetAttributeValue", "reading an XOF secret for the host path"));
  value.resize(attr.ulValueLen);
  return value;
}

Result<Bytes> wrap_clear_value(KeyStore& keys, const KeyInfo& kek, const SecureBytes& value,
                               CK_MECHANISM_TYPE mechanism) {
  PF_ASSIGN_OR_RETURN(SessionLease s, keys.token().sessions().lease());
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = mechanism == CKM_AES_KEY_WRAP ? CKK_AES : CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_TOKEN, &no, sizeof no},       {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &yes, sizeof yes},
      {CKA_VALUE, mutable_ptr(value.reveal()), static_cast<CK_ULONG>(value.size())},
  };
  CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
  PF_TRY(s.check(s.api()->C_CreateObject(s.handle(), tmpl, static_cast<CK_ULONG>(std::size(tmpl)), &obj),
                 "C_CreateObject", "loading a value to wrap under '" + kek.label + "'"));
  CK_MECHANISM mech{mechanism, nullptr, 0};
  Bytes out(value.size() + 16);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  const CK_RV rv = s.api()->C_WrapKey(s.handle(), &mech, kek.handle, obj, out.data(), &len);
  s.api()->C_DestroyObject(s.handle(), obj);
  PF_TRY(s.check(rv, "C_WrapKey", "wrapping under '" + kek.label + "'"));
  out.resize(len);
  return out;
}

}  // namespace persoflow::hsm
