// Writing issuer-file envelopes for generators: the DER bytes before and after a ciphertext
// of known length, so that the ciphertext itself can stream between them.
#include "formats/cms_envelope.h"

#include <limits>
#include <string>

#include "formats/cms_asn1.h"
#include "formats/der_header.h"

namespace persoflow::formats {
namespace {

using namespace cms_tag;  // NOLINT(google-build-using-namespace)

// Far below 2^64 so that no sum of lengths below can overflow.
constexpr std::uint64_t kMaxContentLength = std::uint64_t{1} << 62;

Error invalid(const std::string& message) {
  return Error(ErrorCode::kInvalidArgument, "CMS writer: " + message);
}

void append_element(Bytes& out, std::uint8_t tag, std::span<const std::uint8_t> value) {
  append_der_header(out, tag, value.size());
  out.insert(out.end(), value.begin(), value.end());
}

void append_small_integer(Bytes& out, std::uint8_t value) {  // value < 0x80
  const std::uint8_t v[] = {value};
  append_element(out, kInteger, v);
}

Status validate(const CmsEnvelopeParams& p, std::uint64_t content_length) {
  if (kind_for(p.cipher) != p.kind) {
    return invalid(std::string(to_string(p.cipher)) + " content cannot go in " +
                   std::string(to_string(p.kind)));
  }
  if (p.kek_id.empty() || p.kek_id.size() > kCmsMaxKekIdLength) {
    return invalid("kek_id must be 1 to 64 bytes, not " + std::to_string(p.kek_id.size()));
  }
  const std::size_t wrapped = content_key_length(p.cipher) + kCmsKeyWrapOverhead;
  if (p.encrypted_key.size() != wrapped) {
    return invalid("encrypted_key of " + std::to_string(p.encrypted_key.size()) +
                   " bytes; an AES-wrapped " + std::string(to_string(p.cipher)) + " key is " +
                   std::to_string(wrapped));
  }
  if (content_length > kMaxContentLength) return invalid("content_length beyond 2^62");
  if (is_gcm(p.cipher)) {
    if (p.iv.empty() || p.iv.size() > kCmsMaxNonceLength) {
      return invalid("GCM nonce must be 1 to 64 bytes, not " + std::to_string(p.iv.size()));
    }
    if (p.gcm_tag_length < kCmsMinGcmTagLength || p.gcm_tag_length > kCmsMaxGcmTagLength) {
      return invalid("GCM tag length must be 12 to 16, not " + std::to_string(p.gcm_tag_length));
    }
  } else {
    if (p.iv.size() != kCmsCbcIvLength) {
      return invalid("AES-CBC IV must be 16 bytes, not " + std::to_string(p.iv.size()));
    }
    if (content_length == 0 || content_length % kCmsCbcIvLength != 0) {
      return invalid("AES-CBC content of " + std::to_string(content_length) +
                     " bytes is not a positive multiple of 16");
    }
  }
  return ok_status();
}

}  // namespace

Result<Bytes> encode_cms_prefix(const CmsEnvelopeParams& params, std::uint64_t content_length) {
  PF_TRY(validate(params, content_length));
  const bool gcm = is_gcm(params.cipher);

  // KEKRecipientInfo [2] { 4, kekid { keyIdentifier }, { id-aesNNN-wrap }, encryptedKey }
  Bytes kekri;
  append_small_integer(kekri, 4);
  Bytes kekid;
  append_element(kekid, kOctetString, params.kek_id);
  append_element(kekri, kSequence, kekid);
  Bytes kea;
  append_element(kea, kOid, cms_oid::of(params.key_wrap));
  append_element(kekri, kSequence, kea);
  append_element(kekri, kOctetString, params.encrypted_key);
  Bytes recipient;
  append_element(recipient, kContext2, kekri);

  // contentEncryptionAlgorithm { OID, IV | GCMParameters { nonce, [ICVlen] } }
  Bytes alg;
  append_element(alg, kOid, cms_oid::of(params.cipher));
  if (gcm) {
    Bytes gcm_params;
    append_element(gcm_params, kOctetString, params.iv);
    if (params.gcm_tag_length != 12) {  // DER omits the DEFAULT
      append_small_integer(gcm_params, static_cast<std::uint8_t>(params.gcm_tag_length));
    }
    append_element(alg, kSequence, gcm_params);
  } else {
    append_element(alg, kOctetString, params.iv);
  }

  // EncryptedContentInfo { id-data, alg, [0] IMPLICIT <content_length bytes> }
  Bytes eci_head;
  append_element(eci_head, kOid, cms_oid::kData);
  append_element(eci_head, kSequence, alg);
  append_der_header(eci_head, kContext0Primitive, content_length);
  const std::uint64_t eci_length = eci_head.size() + content_length;

  Bytes body_head;
  append_small_integer(body_head, gcm ? 0 : 2);
  append_element(body_head, kSet, recipient);
  const std::uint64_t mac_size = gcm ? der_element_size(params.gcm_tag_length) : 0;
  const std::uint64_t body_length = body_head.size() + der_element_size(eci_length) + mac_size;
  const std::uint64_t explicit_length = der_element_size(body_length);
  const auto type_oid = cms_oid::of(params.kind);
  const std::uint64_t ci_length =
      der_element_size(type_oid.size()) + der_element_size(explicit_length);

  Bytes out;
  append_der_header(out, kSequence, ci_length);
  append_element(out, kOid, type_oid);
  append_der_header(out, kContext0, explicit_length);
  append_der_header(out, kSequence, body_length);
  out.insert(out.end(), body_head.begin(), body_head.end());
  append_der_header(out, kSequence, eci_length);
  out.insert(out.end(), eci_head.begin(), eci_head.end());
  return out;
}

Bytes encode_cms_suffix(CmsKind kind, std::span<const std::uint8_t> gcm_tag) {
  Bytes out;
  if (kind == CmsKind::kAuthEnveloped) append_element(out, kOctetString, gcm_tag);
  return out;
}

}  // namespace persoflow::formats
