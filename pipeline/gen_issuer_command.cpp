#include "pipeline/gen_issuer_command.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "config/profile_parser.h"
#include "formats/atomic_file.h"
#include "formats/cms_envelope.h"
#include "formats/sha256_digest.h"
#include "hsm/hsm_keys.h"
#include "pipeline/synthetic_cards.h"

namespace persoflow::pipeline {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

struct CipherChoice {
  formats::CmsContentCipher cipher;
  const EVP_CIPHER* evp;
  std::size_t key_length;
  bool gcm;
};

Result<CipherChoice> choose_cipher(const std::string& name) {
  if (name == "aes-128-cbc") return CipherChoice{formats::CmsContentCipher::kAes128Cbc, EVP_aes_128_cbc(), 16, false};
  if (name == "aes-256-cbc") return CipherChoice{formats::CmsContentCipher::kAes256Cbc, EVP_aes_256_cbc(), 32, false};
  if (name == "aes-128-gcm") return CipherChoice{formats::CmsContentCipher::kAes128Gcm, EVP_aes_128_gcm(), 16, true};
  if (name == "aes-256-gcm") return CipherChoice{formats::CmsContentCipher::kAes256Gcm, EVP_aes_256_gcm(), 32, true};
  return Error(ErrorCode::kInvalidArgument, "--content-cipher must be aes-128-cbc, aes-256-cbc, aes-128-gcm or "
                                            "aes-256-gcm, not '" + name + "'");
}

// Reproducible bytes for --seed (test data only); random bytes otherwise.
SecureBytes material(const std::optional<std::uint64_t>& seed, std::string_view label, std::size_t n) {
  SecureBytes out(n);
  if (!seed) {
    RAND_bytes(out.reveal_mutable().data(), static_cast<int>(n));
    return out;
  }
  const std::string s = std::to_string(*seed);
  auto d = formats::sha256({formats::as_bytes_view("persoflow-gen-issuer"), formats::as_bytes_view(label),
                            formats::as_bytes_view(s)});
  for (std::size_t i = 0; i < n; ++i) out.reveal_mutable()[i] = (*d)[i % d->size()];
  return out;
}

Status write_string(formats::AtomicFile& f, const std::string& s) {
  return f.write(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

std::size_t kwp_length(std::size_t n) { return ((n + 7) / 8) * 8 + 8; }

}  // namespace

namespace {

// One registry row per generated card: the SE its record names, a KDD derived from the
// seed and the SE id (test data), the ISD A000000151000000, the profile's SCP with the
// usual offline i (70 for SCP03, 55 for SCP02) and KVN (30, 20), counter 1.
Status write_registry_csv(const std::string& path, const Profile& profile, const GenIssuerOptions& options) {
  if (!profile.prep) {
    return Error(ErrorCode::kInvalidArgument, "--registry-csv: the profile has no <prep> element");
  }
  const PrepSpec& prep = *profile.prep;
  const bool scp03 = prep.channel.scp == 3;
  PF_ASSIGN_OR_RETURN(auto file, formats::AtomicFile::create(path));
  PF_TRY(write_string(file, "# SE registry rows for the cards of a generated issuer file (test SEs)\n"
                            "se_id,msi,kdd,isd_aid,scp,i,kvn,next_counter,product\n"));
  for (std::uint64_t i = 0; i < options.cards; ++i) {
    const std::string se_id = se_id_for(i);
    const std::string msi = msi_for(i);
    const std::string seed = std::to_string(options.seed.value_or(1));
    PF_ASSIGN_OR_RETURN(const auto d, formats::sha256({formats::as_bytes_view("persoflow-gen-kdd"),
                                                       formats::as_bytes_view(seed), formats::as_bytes_view(se_id)}));
    const std::string row = se_id + "," + msi + "," + to_hex(std::span<const std::uint8_t>(d.data(), 10)) +
                            ",A000000151000000," + (scp03 ? "03,70,30" : "02,55,20") + ",1," + prep.product + "\n";
    PF_TRY(write_string(file, row));
  }
  return file.commit();
}

}  // namespace

Result<bool> gen_issuer_needs_hsm(const GenIssuerOptions& options) {
  if (options.tk_uri) return true;
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  for (const auto& a : profile.attributes) {
    if (a.field_encryption != FieldEncryption::kNone) return true;
  }
  return false;
}

Result<GenIssuerResult> run_gen_issuer(const GenIssuerOptions& options, hsm::KeyStore* keys) {
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(options.profile_path));
  PF_ASSIGN_OR_RETURN(CipherChoice cipher, choose_cipher(options.content_cipher));
  auto kek_id_hex = from_hex(options.kek_id_hex);
  if (!kek_id_hex) return Error(ErrorCode::kInvalidArgument, "--kek-id: " + kek_id_hex.error().message());
  const Bytes kek_id = std::move(kek_id_hex).value();
  if (kek_id.empty() || kek_id.size() > formats::kCmsMaxKekIdLength) {
    return Error(ErrorCode::kInvalidArgument, "--kek-id must be 1 to 64 bytes of hex");
  }
  if (options.tk_uri.has_value() == options.tk_hex.has_value()) {
    return Error(ErrorCode::kInvalidArgument, "give exactly one of --tk URI and --tk-hex HEX");
  }
  if (options.bin.empty() || options.bin.size() > 11 ||
      options.bin.find_first_not_of("0123456789") != std::string::npos) {
    return Error(ErrorCode::kInvalidArgument, "--bin must be 1 to 11 digits");
  }

  // Field keys for field-encrypted attributes: wrapped in the HSM.
  std::vector<std::optional<hsm::KeyInfo>> field_keys(profile.attributes.size());
  for (std::size_t i = 0; i < profile.attributes.size(); ++i) {
    const auto& a = profile.attributes[i];
    if (a.field_encryption == FieldEncryption::kNone) continue;
    if (keys == nullptr) return Error(ErrorCode::kInternal, "gen-issuer needs the HSM for field keys");
    auto k = keys->find(a.field_key_uri);
    if (!k) return std::move(k).error().add_context("field key of attribute '" + a.name + "'");
    field_keys[i] = *k;
  }

  // Content key and IV / nonce.
  SecureBytes cek = material(options.seed, "cek", cipher.key_length);
  SecureBytes iv = material(options.seed, "iv", cipher.gcm ? 12 : 16);
  formats::CmsEnvelopeParams params;
  params.kind = cipher.gcm ? formats::CmsKind::kAuthEnveloped : formats::CmsKind::kEnveloped;
  params.cipher = cipher.cipher;
  params.kek_id = kek_id;
  params.iv = Bytes(iv.reveal().begin(), iv.reveal().end());
  params.gcm_tag_length = 16;
  if (options.tk_hex) {
    auto tk_parsed = secure_from_hex(*options.tk_hex);
    if (!tk_parsed) return Error(ErrorCode::kInvalidArgument, "--tk-hex: " + tk_parsed.error().message());
    SecureBytes tk = std::move(tk_parsed).value();
    const EVP_CIPHER* wrap = tk.size() == 16   ? EVP_aes_128_wrap()
                             : tk.size() == 24 ? EVP_aes_192_wrap()
                             : tk.size() == 32 ? EVP_aes_256_wrap()
                                               : nullptr;
    if (wrap == nullptr) return Error(ErrorCode::kInvalidArgument, "--tk-hex must be an AES key of 16, 24 or 32 bytes");
    params.key_wrap = tk.size() == 16   ? formats::CmsKeyWrap::kAes128Wrap
                      : tk.size() == 24 ? formats::CmsKeyWrap::kAes192Wrap
                                        : formats::CmsKeyWrap::kAes256Wrap;
    CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    Bytes wrapped(cek.size() + 8);
    int n = 0;
    if (EVP_EncryptInit_ex(ctx.get(), wrap, nullptr, tk.reveal().data(), nullptr) != 1 ||
        EVP_EncryptUpdate(ctx.get(), wrapped.data(), &n, cek.reveal().data(), static_cast<int>(cek.size())) != 1) {
      return Error(ErrorCode::kInternal, "OpenSSL AES key wrap failed");
    }
    wrapped.resize(static_cast<std::size_t>(n));
    params.encrypted_key = std::move(wrapped);
  } else {
    if (keys == nullptr) return Error(ErrorCode::kInternal, "gen-issuer needs the HSM for --tk");
    PF_ASSIGN_OR_RETURN(hsm::KeyInfo tk, keys->find(*options.tk_uri));
    if (!tk.type || key_family(*tk.type) != KeyFamily::kAes) {
      return Error(ErrorCode::kInvalidArgument, "transport key " + tk.uri + " is not an AES key");
    }
    params.key_wrap = tk.bits == 128   ? formats::CmsKeyWrap::kAes128Wrap
                      : tk.bits == 192 ? formats::CmsKeyWrap::kAes192Wrap
                                       : formats::CmsKeyWrap::kAes256Wrap;
    PF_ASSIGN_OR_RETURN(params.encrypted_key, hsm::wrap_clear_value(*keys, tk, cek, CKM_AES_KEY_WRAP));
  }

  SyntheticCards gen(profile, SyntheticOptions{options.seed.value_or(1), options.bin});
  // Pass 1: the plaintext length (wrapped values have a known length), for DER lengths.
  std::uint64_t plain_len = gen.prolog().size() + gen.epilog().size();
  for (std::uint64_t i = 0; i < options.cards; ++i) {
    auto values = gen.values(i);
    for (std::size_t a = 0; a < values.size(); ++a) {
      if (field_keys[a]) values[a] = std::string(2 * kwp_length(values[a].size() / 2), '0');
    }
    plain_len += gen.render(values).size();
  }
  const std::uint64_t content_len = cipher.gcm ? plain_len : (plain_len / 16 + 1) * 16;
  PF_ASSIGN_OR_RETURN(Bytes prefix, formats::encode_cms_prefix(params, content_len));

  PF_ASSIGN_OR_RETURN(auto out, formats::AtomicFile::create(options.output_path));
  std::optional<formats::AtomicFile> plain_out;
  if (options.plain_path) {
    PF_ASSIGN_OR_RETURN(auto p, formats::AtomicFile::create(*options.plain_path));
    plain_out.emplace(std::move(p));
  }
  PF_TRY(out.write(prefix));

  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  if (EVP_EncryptInit_ex(ctx.get(), cipher.evp, nullptr, cek.reveal().data(), iv.reveal().data()) != 1) {
    return Error(ErrorCode::kInternal, "OpenSSL cipher initialization failed");
  }
  std::uint64_t written_plain = 0;
  Bytes ct_buf;
  auto emit = [&](const std::string& text) -> Status {
    written_plain += text.size();
    if (plain_out) PF_TRY(write_string(*plain_out, text));
    ct_buf.resize(text.size() + 32);
    int n = 0;
    if (EVP_EncryptUpdate(ctx.get(), ct_buf.data(), &n, reinterpret_cast<const std::uint8_t*>(text.data()),
                          static_cast<int>(text.size())) != 1) {
      return Error(ErrorCode::kInternal, "OpenSSL encryption failed");
    }
    return out.write(std::span<const std::uint8_t>(ct_buf.data(), static_cast<std::size_t>(n)));
  };
  PF_TRY(emit(gen.prolog()));
  // Pass 2: the same cards, with field-encrypted values wrapped for real.
  for (std::uint64_t i = 0; i < options.cards; ++i) {
    auto values = gen.values(i);
    for (std::size_t a = 0; a < values.size(); ++a) {
      if (!field_keys[a]) continue;
      PF_ASSIGN_OR_RETURN(SecureBytes secret, secure_from_hex(values[a]));
      PF_ASSIGN_OR_RETURN(Bytes wrapped, hsm::wrap_clear_value(*keys, *field_keys[a], secret, CKM_AES_KEY_WRAP_PAD));
      values[a] = to_hex(wrapped);
    }
    PF_TRY(emit(gen.render(values)));
  }
  PF_TRY(emit(gen.epilog()));
  if (written_plain != plain_len) {
    return Error(ErrorCode::kInternal, "gen-issuer: plaintext length changed between passes");
  }
  ct_buf.resize(32);
  int n = 0;
  EVP_EncryptFinal_ex(ctx.get(), ct_buf.data(), &n);
  PF_TRY(out.write(std::span<const std::uint8_t>(ct_buf.data(), static_cast<std::size_t>(n))));
  Bytes tag;
  if (cipher.gcm) {
    tag.resize(16);
    EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, tag.data());
  }
  PF_TRY(out.write(formats::encode_cms_suffix(params.kind, tag)));
  const std::uint64_t envelope_bytes = out.size();
  if (options.registry_csv_path) PF_TRY(write_registry_csv(*options.registry_csv_path, profile, options));
  if (plain_out) PF_TRY(plain_out->commit());
  PF_TRY(out.commit());
  return GenIssuerResult{options.cards, plain_len, envelope_bytes};
}

}  // namespace persoflow::pipeline
