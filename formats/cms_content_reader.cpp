// Reading the encryptedContent of an issuer-file envelope as it streams by, then what follows
// it (docs/formats/issuer-envelope.md). read_cms_header() (cms_envelope.cpp) leaves the
// BerReader on the [0] encryptedContent; this file takes it from there to the end of the file.
#include "formats/cms_envelope.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "formats/cms_asn1.h"
#include "formats/der_header.h"

namespace persoflow::formats {

using namespace cms_tag;  // NOLINT(google-build-using-namespace)

CmsContentReader::CmsContentReader(BerReader ber, const CmsEnvelopeParams& params,
                                   const BerElement& content)
    : ber_(std::move(ber)),
      kind_(params.kind),
      cipher_(params.cipher),
      tag_length_(params.gcm_tag_length),
      content_offset_(content.offset) {
  if (content.constructed) {
    content_depth_ = ber_.depth();
  } else {
    segment_left_ = content.length.value_or(0);
    declared_length_ = segment_left_;
  }
}

Result<std::size_t> CmsContentReader::read(std::span<std::uint8_t> out) {
  if (failure_) return *failure_;
  auto n = read_some(out);
  if (!n) failure_ = n.error();
  return n;
}

Result<std::size_t> CmsContentReader::read_some(std::span<std::uint8_t> out) {
  std::size_t total = 0;
  while (total < out.size() && !done_) {
    if (segment_left_ == 0) {
      PF_TRY(next_segment());
      continue;
    }
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - total, segment_left_));
    PF_ASSIGN_OR_RETURN(auto piece,
                        ber_.read_piece(want, "encryptedContent (started at byte " +
                                                  std::to_string(content_offset_) + ")"));
    std::memcpy(out.data() + total, piece.data(), piece.size());
    total += piece.size();
    segment_left_ -= piece.size();
    bytes_read_ += piece.size();
  }
  return total;
}

// Moves to the next primitive OCTET STRING of a constructed [0], through nested constructed
// OCTET STRINGs, definite or indefinite; sets done_ after the [0] itself is closed.
Status CmsContentReader::next_segment() {
  if (content_depth_ == 0) {  // primitive [0]: one segment only
    done_ = true;
    return ok_status();
  }
  while (true) {
    PF_ASSIGN_OR_RETURN(auto tag, ber_.peek_tag());
    if (!tag) {
      PF_TRY(ber_.leave());
      if (ber_.depth() < content_depth_) {
        done_ = true;
        return ok_status();
      }
      continue;
    }
    PF_ASSIGN_OR_RETURN(BerElement e, ber_.next("OCTET STRING chunk of encryptedContent"));
    if (e.tag == kOctetString) {
      segment_left_ = e.length.value_or(0);
      if (segment_left_ > 0) return ok_status();
    } else if (e.tag == kOctetStringConstructed) {
      PF_TRY(ber_.enter(e, "constructed OCTET STRING in encryptedContent"));
    } else {
      return ber_.error_at(e.offset, "expected OCTET STRING chunk of encryptedContent, found tag " +
                                         format_ber_tag(e.tag));
    }
  }
}

Result<CmsTrailer> CmsContentReader::finish() {
  if (failure_) return *failure_;
  if (finished_) return Error(ErrorCode::kInvalidArgument, "CMS: finish() called twice");
  if (!done_) {
    // The end may be right there (read() filled the caller's buffer exactly).
    std::uint8_t probe = 0;
    PF_ASSIGN_OR_RETURN(std::size_t n, read(std::span<std::uint8_t>(&probe, 1)));
    if (n != 0) {
      failure_ = Error(ErrorCode::kInvalidArgument,
                       "CMS: finish() before read() reached the end of encryptedContent");
      return *failure_;
    }
  }
  auto trailer = parse_trailer();
  if (!trailer) {
    failure_ = trailer.error();
  } else {
    finished_ = true;
  }
  return trailer;
}

Result<CmsTrailer> CmsContentReader::parse_trailer() {
  CmsTrailer t;
  t.content_length = bytes_read_;
  if (!is_gcm(cipher_) && (bytes_read_ == 0 || bytes_read_ % kCmsCbcIvLength != 0)) {
    return ber_.error_at(content_offset_, "encryptedContent of " + std::to_string(bytes_read_) +
                                              " bytes is not a positive multiple of 16 (AES-CBC)");
  }
  PF_TRY(ber_.leave());  // EncryptedContentInfo

  PF_ASSIGN_OR_RETURN(auto tag, ber_.peek_tag());
  if (kind_ == CmsKind::kEnveloped) {
    if (tag == kContext1) {
      PF_ASSIGN_OR_RETURN(BerElement attrs, ber_.next("unprotectedAttrs [1]"));
      PF_TRY(ber_.skip(attrs, "unprotectedAttrs"));
    }
  } else {
    if (tag == kContext1) {
      PF_ASSIGN_OR_RETURN(BerElement attrs, ber_.next("authAttrs [1]"));
      // RFC 5083 §2.1: authAttrs are DER even in a BER file, since their DER is the AAD.
      if (!attrs.length) {
        return ber_.error_at(attrs.offset,
                             "authAttrs must be DER (RFC 5083 §2.1); found an "
                             "indefinite length");
      }
      if (attrs.header_size != 1 + der_length_size(*attrs.length)) {
        return ber_.error_at(attrs.offset,
                             "authAttrs must be DER (RFC 5083 §2.1); its length "
                             "is not in minimal form");
      }
      PF_ASSIGN_OR_RETURN(Bytes value,
                          ber_.read_value(attrs, 1, kCmsMaxAuthAttrsLength, "authAttrs"));
      // Each Attribute is a SEQUENCE; walk them all, definite lengths only.
      MemoryByteSource inner(value, MemoryByteSource::kUnlimited, attrs.value_offset());
      BerReader check(inner, BerReaderOptions{"CMS", kCmsMaxDepth - ber_.depth(), true});
      while (true) {
        PF_ASSIGN_OR_RETURN(auto attr_tag, check.peek_tag());
        if (!attr_tag) break;
        PF_ASSIGN_OR_RETURN(BerElement attr, check.expect(kSequence, "Attribute SEQUENCE"));
        PF_TRY(check.skip(attr, "authAttrs Attribute"));
      }
      t.aad.reserve(attrs.header_size + value.size());
      append_der_header(t.aad, kSet, *attrs.length);
      t.aad.insert(t.aad.end(), value.begin(), value.end());
    }
    PF_ASSIGN_OR_RETURN(BerElement mac, ber_.expect(kOctetString, "mac OCTET STRING"));
    PF_ASSIGN_OR_RETURN(t.mac, ber_.read_value(mac, 0, kCmsMaxGcmTagLength, "mac"));
    if (t.mac.size() != tag_length_) {
      return ber_.error_at(mac.offset, "mac of " + std::to_string(t.mac.size()) +
                                           " bytes; aes-ICVlen says " +
                                           std::to_string(tag_length_));
    }
    PF_ASSIGN_OR_RETURN(tag, ber_.peek_tag());
    if (tag == kContext2) {
      PF_ASSIGN_OR_RETURN(BerElement attrs, ber_.next("unauthAttrs [2]"));
      PF_TRY(ber_.skip(attrs, "unauthAttrs"));
    }
  }
  PF_TRY(ber_.leave());  // EnvelopedData / AuthEnvelopedData
  PF_TRY(ber_.leave());  // [0] EXPLICIT content
  PF_TRY(ber_.leave());  // ContentInfo
  PF_ASSIGN_OR_RETURN(bool at_end, ber_.at_end_of_input());
  if (!at_end) return ber_.error_at(ber_.offset(), "trailing data after the end of ContentInfo");
  return t;
}

}  // namespace persoflow::formats
