// Reading issuer-file envelopes (docs/formats/issuer-envelope.md). The structure, RFC 5652
// §3, §6 and RFC 5083 §2, as far as this reader walks it:
//
//   ContentInfo SEQUENCE { contentType OID, [0] EXPLICIT
//     EnvelopedData | AuthEnvelopedData SEQUENCE {
//       version INTEGER, originatorInfo [0] OPTIONAL (skipped),
//       recipientInfos SET { KEKRecipientInfo [2] { version 4,
//         kekid SEQUENCE { keyIdentifier OCTET STRING, date OPTIONAL, other OPTIONAL },
//         keyEncryptionAlgorithm SEQUENCE { id-aesNNN-wrap }, encryptedKey OCTET STRING } },
//       EncryptedContentInfo SEQUENCE { contentType OID,
//         contentEncryptionAlgorithm SEQUENCE { OID, IV | GCMParameters },
//         encryptedContent [0] IMPLICIT OCTET STRING }          <- CmsContentReader::read()
//       EnvelopedData:     unprotectedAttrs [1] OPTIONAL (skipped)
//       AuthEnvelopedData: authAttrs [1] OPTIONAL, mac OCTET STRING, unauthAttrs [2] OPTIONAL
//   } }
#include "formats/cms_envelope.h"

#include <algorithm>
#include <utility>

#include "formats/cms_asn1.h"

namespace persoflow::formats {
namespace {

using namespace cms_tag;  // NOLINT(google-build-using-namespace)

constexpr std::size_t kMaxIntegerLength = 8;
constexpr std::size_t kMaxDateLength = 32;
constexpr std::uint64_t kEnvelopedDataVersion = 2;  // RFC 5652 §6.1, KEK recipient
constexpr std::uint64_t kAuthEnvelopedDataVersion = 0;
constexpr std::uint64_t kKekRecipientVersion = 4;

std::string str(std::string_view s) { return std::string(s); }

struct Oid {
  Bytes der;
  std::uint64_t offset = 0;
};

struct Number {
  std::uint64_t value = 0;
  std::uint64_t offset = 0;
};

Result<Oid> read_oid(BerReader& r, std::string_view what) {
  PF_ASSIGN_OR_RETURN(BerElement e, r.expect(kOid, str(what) + " OBJECT IDENTIFIER"));
  PF_ASSIGN_OR_RETURN(Bytes v, r.read_value(e, 1, kCmsMaxOidLength, what));
  if (!cms_oid::to_dotted(v)) {
    return r.error_at(e.offset, str(what) + " is not a well-formed OBJECT IDENTIFIER");
  }
  return Oid{std::move(v), e.offset};
}

// A non-negative INTEGER of at most 8 bytes, minimally encoded.
Result<Number> read_number(BerReader& r, std::string_view what) {
  PF_ASSIGN_OR_RETURN(BerElement e, r.expect(kInteger, str(what) + " INTEGER"));
  PF_ASSIGN_OR_RETURN(Bytes v, r.read_value(e, 1, kMaxIntegerLength, what));
  if ((v[0] & 0x80) != 0) return r.error_at(e.offset, str(what) + " is negative");
  if (v.size() > 1 && v[0] == 0 && (v[1] & 0x80) == 0) {
    return r.error_at(e.offset, str(what) + " INTEGER is not minimally encoded");
  }
  std::uint64_t n = 0;
  for (std::uint8_t b : v) n = (n << 8) | b;
  return Number{n, e.offset};
}

// GeneralizedTime is "YYYYMMDDHH[MM[SS[.fff]]][Z|+hhmm|-hhmm]": digits and a few signs.
bool looks_like_generalized_time(const Bytes& v) {
  if (v.size() < 10) return false;
  return std::all_of(v.begin(), v.end(), [](std::uint8_t c) {
    return (c >= '0' && c <= '9') || c == 'Z' || c == '.' || c == ',' || c == '+' || c == '-';
  });
}

std::string recipient_kind_refusal(BerTag tag) {
  const std::string only = "; only KEKRecipientInfo [2] is supported";
  switch (tag) {
    case kSequence:
      return "RecipientInfo is a KeyTransRecipientInfo (SEQUENCE)" + only;
    case kContext1:
      return "RecipientInfo is a KeyAgreeRecipientInfo [1]" + only;
    case kContext3:
      return "RecipientInfo is a PasswordRecipientInfo [3]" + only;
    case kContext4:
      return "RecipientInfo is an OtherRecipientInfo [4]" + only;
    default:
      return "expected KEKRecipientInfo [2], found tag " + format_ber_tag(tag);
  }
}

struct Recipient {
  Bytes kek_id;
  std::optional<std::string> kek_date;
  CmsKeyWrap wrap = CmsKeyWrap::kAes256Wrap;
  Bytes encrypted_key;
  std::uint64_t encrypted_key_offset = 0;
};

// recipientInfos SET holding exactly one KEKRecipientInfo.
Result<Recipient> read_recipient(BerReader& r) {
  Recipient out;
  PF_ASSIGN_OR_RETURN(BerElement set, r.expect(kSet, "recipientInfos SET"));
  PF_TRY(r.enter(set, "recipientInfos"));
  PF_ASSIGN_OR_RETURN(BerElement ri, r.next("KEKRecipientInfo [2]"));
  if (ri.tag != kContext2) return r.error_at(ri.offset, recipient_kind_refusal(ri.tag));
  PF_TRY(r.enter(ri, "KEKRecipientInfo"));

  PF_ASSIGN_OR_RETURN(Number version, read_number(r, "KEKRecipientInfo version"));
  if (version.value != kKekRecipientVersion) {
    return r.error_at(version.offset, "KEKRecipientInfo version " + std::to_string(version.value) +
                                          "; it must be 4 (RFC 5652 §6.2.3)");
  }

  PF_ASSIGN_OR_RETURN(BerElement kekid, r.expect(kSequence, "kekid SEQUENCE"));
  PF_TRY(r.enter(kekid, "kekid"));
  PF_ASSIGN_OR_RETURN(BerElement key_id, r.expect(kOctetString, "keyIdentifier OCTET STRING"));
  PF_ASSIGN_OR_RETURN(out.kek_id, r.read_value(key_id, 1, kCmsMaxKekIdLength, "keyIdentifier"));
  PF_ASSIGN_OR_RETURN(auto tag, r.peek_tag());
  if (tag == kGeneralizedTime) {
    PF_ASSIGN_OR_RETURN(BerElement date, r.next("date GeneralizedTime"));
    PF_ASSIGN_OR_RETURN(Bytes text, r.read_value(date, 1, kMaxDateLength, "kekid date"));
    if (!looks_like_generalized_time(text)) {
      return r.error_at(date.offset, "kekid date is not a GeneralizedTime");
    }
    out.kek_date = std::string(text.begin(), text.end());
    PF_ASSIGN_OR_RETURN(tag, r.peek_tag());
  }
  if (tag == kSequence) {
    PF_ASSIGN_OR_RETURN(BerElement other, r.next("other OtherKeyAttribute"));
    PF_TRY(r.skip(other, "OtherKeyAttribute"));
  }
  PF_TRY(r.leave());

  PF_ASSIGN_OR_RETURN(BerElement kea, r.expect(kSequence, "keyEncryptionAlgorithm SEQUENCE"));
  PF_TRY(r.enter(kea, "keyEncryptionAlgorithm"));
  PF_ASSIGN_OR_RETURN(Oid wrap_oid, read_oid(r, "keyEncryptionAlgorithm"));
  const auto wrap = cms_oid::wrap_from(wrap_oid.der);
  if (!wrap) {
    return r.error_at(wrap_oid.offset, "keyEncryptionAlgorithm " + cms_oid::describe(wrap_oid.der) +
                                           " is not id-aes128-wrap, id-aes192-wrap or "
                                           "id-aes256-wrap");
  }
  out.wrap = *wrap;
  // RFC 3565 §2.3.2: parameters absent. NULL is tolerated (some toolkits write it).
  PF_ASSIGN_OR_RETURN(tag, r.peek_tag());
  if (tag) {
    PF_ASSIGN_OR_RETURN(BerElement params, r.next("key wrap parameters"));
    if (params.tag != kNull || params.length != 0u) {
      return r.error_at(params.offset, "parameters of " + str(to_string(*wrap)) +
                                           " must be absent (RFC 3565), found tag " +
                                           format_ber_tag(params.tag));
    }
  }
  PF_TRY(r.leave());

  PF_ASSIGN_OR_RETURN(BerElement ek, r.expect(kOctetString, "encryptedKey OCTET STRING"));
  out.encrypted_key_offset = ek.offset;
  PF_ASSIGN_OR_RETURN(out.encrypted_key,
                      r.read_value(ek, 1, kCmsMaxEncryptedKeyLength, "encryptedKey"));
  PF_TRY(r.leave());  // KEKRecipientInfo

  PF_ASSIGN_OR_RETURN(tag, r.peek_tag());
  if (tag) {
    return r.error_at(r.offset(),
                      "a second RecipientInfo; exactly one KEKRecipientInfo is supported");
  }
  PF_TRY(r.leave());  // recipientInfos
  return out;
}

struct ContentAlgorithm {
  CmsContentCipher cipher = CmsContentCipher::kAes256Cbc;
  Bytes iv;
  std::size_t tag_length = 0;
};

Result<ContentAlgorithm> read_content_algorithm(BerReader& r, CmsKind kind) {
  ContentAlgorithm out;
  PF_ASSIGN_OR_RETURN(BerElement alg, r.expect(kSequence, "contentEncryptionAlgorithm SEQUENCE"));
  PF_TRY(r.enter(alg, "contentEncryptionAlgorithm"));
  PF_ASSIGN_OR_RETURN(Oid oid, read_oid(r, "contentEncryptionAlgorithm"));
  const auto cipher = cms_oid::cipher_from(oid.der);
  if (!cipher) {
    return r.error_at(oid.offset, "contentEncryptionAlgorithm " + cms_oid::describe(oid.der) +
                                      (kind == CmsKind::kEnveloped
                                           ? " is not aes-128-cbc, aes-192-cbc or aes-256-cbc"
                                           : " is not aes-128-gcm, aes-192-gcm or aes-256-gcm"));
  }
  if (kind_for(*cipher) != kind) {
    return r.error_at(oid.offset, str(to_string(*cipher)) + " content in " + str(to_string(kind)) +
                                      (kind == CmsKind::kEnveloped
                                           ? "; AES-GCM belongs in AuthEnvelopedData (RFC 5084)"
                                           : "; AuthEnvelopedData needs AES-GCM (RFC 5083)"));
  }
  out.cipher = *cipher;
  if (!is_gcm(*cipher)) {
    PF_ASSIGN_OR_RETURN(BerElement iv, r.expect(kOctetString, "AES-CBC IV OCTET STRING"));
    PF_ASSIGN_OR_RETURN(out.iv, r.read_value(iv, kCmsCbcIvLength, kCmsCbcIvLength, "AES-CBC IV"));
  } else {
    PF_ASSIGN_OR_RETURN(BerElement params, r.expect(kSequence, "GCMParameters SEQUENCE"));
    PF_TRY(r.enter(params, "GCMParameters"));
    PF_ASSIGN_OR_RETURN(BerElement nonce, r.expect(kOctetString, "aes-nonce OCTET STRING"));
    PF_ASSIGN_OR_RETURN(out.iv, r.read_value(nonce, 1, kCmsMaxNonceLength, "aes-nonce"));
    out.tag_length = 12;  // aes-ICVlen DEFAULT 12
    PF_ASSIGN_OR_RETURN(auto tag, r.peek_tag());
    if (tag) {
      PF_ASSIGN_OR_RETURN(Number icv, read_number(r, "aes-ICVlen"));
      if (icv.value < kCmsMinGcmTagLength || icv.value > kCmsMaxGcmTagLength) {
        return r.error_at(icv.offset,
                          "aes-ICVlen " + std::to_string(icv.value) + "; RFC 5084 allows 12 to 16");
      }
      out.tag_length = static_cast<std::size_t>(icv.value);
    }
    PF_TRY(r.leave());
  }
  PF_TRY(r.leave());
  return out;
}

}  // namespace

Result<CmsEnvelopeHeader> read_cms_header(ByteSource& source) {
  BerReader r(source, BerReaderOptions{"CMS", kCmsMaxDepth, false});

  PF_ASSIGN_OR_RETURN(BerElement ci, r.expect(kSequence, "ContentInfo SEQUENCE"));
  PF_TRY(r.enter(ci, "ContentInfo"));
  PF_ASSIGN_OR_RETURN(Oid type, read_oid(r, "contentType"));
  CmsKind kind = CmsKind::kEnveloped;
  if (std::ranges::equal(type.der, cms_oid::of(CmsKind::kEnveloped))) {
    kind = CmsKind::kEnveloped;
  } else if (std::ranges::equal(type.der, cms_oid::of(CmsKind::kAuthEnveloped))) {
    kind = CmsKind::kAuthEnveloped;
  } else {
    return r.error_at(type.offset, "content type " + cms_oid::describe(type.der) +
                                       " is neither EnvelopedData (1.2.840.113549.1.7.3) nor "
                                       "AuthEnvelopedData (1.2.840.113549.1.9.16.1.23)");
  }
  const std::string kind_name(to_string(kind));
  PF_ASSIGN_OR_RETURN(BerElement explicit_content, r.expect(kContext0, "[0] EXPLICIT content"));
  PF_TRY(r.enter(explicit_content, "[0] EXPLICIT content"));
  PF_ASSIGN_OR_RETURN(BerElement body, r.expect(kSequence, kind_name + " SEQUENCE"));
  PF_TRY(r.enter(body, kind_name));

  PF_ASSIGN_OR_RETURN(Number version, read_number(r, kind_name + " version"));
  PF_ASSIGN_OR_RETURN(auto tag, r.peek_tag());
  bool has_originator = false;
  if (tag == kContext0) {
    PF_ASSIGN_OR_RETURN(BerElement originator, r.next("originatorInfo [0]"));
    PF_TRY(r.skip(originator, "originatorInfo"));
    has_originator = true;
  }
  // The recipient first: a KeyTransRecipientInfo file has version 0, and its recipient is
  // the better reason to give.
  PF_ASSIGN_OR_RETURN(Recipient recipient, read_recipient(r));
  if (kind == CmsKind::kEnveloped) {
    // §6.1: 2 with KEK recipients; 3 or 4 only for kinds of certificates in originatorInfo.
    const bool ok = version.value == kEnvelopedDataVersion ||
                    (has_originator && (version.value == 3 || version.value == 4));
    if (!ok) {
      return r.error_at(version.offset, "EnvelopedData version " + std::to_string(version.value) +
                                            "; with a KEK recipient it must be 2 (RFC 5652 §6.1)");
    }
  } else if (version.value != kAuthEnvelopedDataVersion) {
    return r.error_at(version.offset, "AuthEnvelopedData version " + std::to_string(version.value) +
                                          "; it must be 0 (RFC 5083 §2.1)");
  }

  PF_ASSIGN_OR_RETURN(BerElement eci, r.expect(kSequence, "EncryptedContentInfo SEQUENCE"));
  PF_TRY(r.enter(eci, "EncryptedContentInfo"));
  PF_ASSIGN_OR_RETURN(Oid content_type, read_oid(r, "EncryptedContentInfo contentType"));
  PF_ASSIGN_OR_RETURN(ContentAlgorithm alg, read_content_algorithm(r, kind));

  const std::size_t wrapped_length = content_key_length(alg.cipher) + kCmsKeyWrapOverhead;
  if (recipient.encrypted_key.size() != wrapped_length) {
    return r.error_at(recipient.encrypted_key_offset,
                      "encryptedKey of " + std::to_string(recipient.encrypted_key.size()) +
                          " bytes; an AES-wrapped " + str(to_string(alg.cipher)) +
                          " content key is " + std::to_string(wrapped_length) + " bytes");
  }

  PF_ASSIGN_OR_RETURN(tag, r.peek_tag());
  if (!tag) {
    return r.error_at(r.offset(), "encryptedContent is absent (detached content is not supported)");
  }
  PF_ASSIGN_OR_RETURN(BerElement content, r.next("[0] IMPLICIT encryptedContent"));
  if (content.tag == kContext0) {
    PF_TRY(r.enter(content, "encryptedContent"));
  } else if (content.tag != kContext0Primitive) {
    return r.error_at(content.offset, "expected [0] IMPLICIT encryptedContent, found tag " +
                                          format_ber_tag(content.tag));
  }

  CmsEnvelopeParams params;
  params.kind = kind;
  params.kek_id = std::move(recipient.kek_id);
  params.key_wrap = recipient.wrap;
  params.encrypted_key = std::move(recipient.encrypted_key);
  params.cipher = alg.cipher;
  params.iv = std::move(alg.iv);
  params.gcm_tag_length = alg.tag_length;
  CmsContentReader reader(std::move(r), params, content);
  return CmsEnvelopeHeader{std::move(params), *cms_oid::to_dotted(content_type.der),
                           std::move(recipient.kek_date), std::move(reader)};
}

}  // namespace persoflow::formats
