// XofReader::open: every check that needs no DKep, before the reader is returned
// (structure, layout, header hash, footer tag under the integrity key).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "formats/big_endian_codec.h"
#include "formats/xof_reader.h"

namespace persoflow::formats {
namespace {

// magic, footer_length, segment_count, header_sha256, tag
constexpr std::size_t kMinFooterSize = 4 + 4 + 4 + 32 + kXofTagSize;

}  // namespace

Result<XofReader> XofReader::open(const std::string& path, MacKey& integrity) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 path + ": cannot open the XOF: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error(ErrorCode::kIo, path + ": fstat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(ErrorCode::kParse, path + ": offset 0: not a regular file, so not an XOF");
  }
  XofReader reader(fd, path, static_cast<std::uint64_t>(st.st_size));
  PF_TRY(reader.load(integrity));
  return reader;
}

Status XofReader::load(MacKey& integrity) {
  auto parse_error = [&](std::uint64_t offset, const std::string& reason) {
    return Error(ErrorCode::kParse, path_ + ": offset " + std::to_string(offset) + ": " + reason);
  };
  auto integrity_error = [&](std::uint64_t offset, const std::string& reason) {
    return Error(ErrorCode::kIntegrity,
                 path_ + ": offset " + std::to_string(offset) + ": " + reason);
  };

  // Magic and header length.
  PF_ASSIGN_OR_RETURN(
      Bytes start,
      read_at(0, static_cast<std::size_t>(std::min<std::uint64_t>(size_, 12)), "magic"));
  const std::size_t magic_seen = std::min(start.size(), kXofMagic.size());
  if (!std::equal(start.begin(), start.begin() + static_cast<std::ptrdiff_t>(magic_seen),
                  kXofMagic.begin())) {
    return parse_error(0, "not an XOF file (bad magic)");
  }
  if (start.size() < 12) {
    return parse_error(size_, "truncated: " + std::to_string(size_) +
                                  " bytes end inside the magic or header length");
  }
  const std::uint64_t header_end = 12 + load_be(start.data() + kXofHeaderLengthOffset, 4);
  if (header_end < kXofFixedHeaderEnd) {
    return parse_error(kXofHeaderLengthOffset,
                       "header length " + std::to_string(header_end - 12) + " is too short");
  }
  if (header_end + kMinFooterSize + kXofTrailerSize > size_) {
    return parse_error(size_, "truncated: the file has " + std::to_string(size_) +
                                  " bytes; its header alone ends at " + std::to_string(header_end) +
                                  " and a footer and trailer must follow");
  }

  // Trailer, then footer.
  const std::uint64_t trailer_at = size_ - kXofTrailerSize;
  PF_ASSIGN_OR_RETURN(Bytes trailer, read_at(trailer_at, kXofTrailerSize, "trailer"));
  if (!std::equal(kXofTrailerMagic.begin(), kXofTrailerMagic.end(), trailer.begin() + 8)) {
    return parse_error(
        trailer_at, "no trailer \"PFXOFEND\" at the end of the file (truncated, or not finished)");
  }
  const std::uint64_t footer_offset = load_be(trailer.data(), 8);
  if (footer_offset < header_end || footer_offset > trailer_at - kMinFooterSize) {
    return parse_error(trailer_at, "the trailer places the footer at " +
                                       std::to_string(footer_offset) + ", outside " +
                                       std::to_string(header_end) + ".." +
                                       std::to_string(trailer_at - kMinFooterSize));
  }
  PF_ASSIGN_OR_RETURN(
      Bytes footer,
      read_at(footer_offset, static_cast<std::size_t>(trailer_at - footer_offset), "footer"));
  ByteReader fr(footer, footer_offset, path_);
  PF_ASSIGN_OR_RETURN(auto magic, fr.bytes(4, "footer magic"));
  if (!std::equal(magic.begin(), magic.end(), kXofFooterMagic.begin())) {
    return parse_error(footer_offset,
                       "no footer magic \"PFFT\" where the trailer places the footer");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t footer_length, fr.u32("footer length"));
  if (footer_length != fr.remaining()) {
    return parse_error(footer_offset + 4, "footer length " + std::to_string(footer_length) +
                                              " but " + std::to_string(fr.remaining()) +
                                              " bytes lie before the trailer");
  }
  const std::size_t table_start = fr.position();
  PF_ASSIGN_OR_RETURN(std::uint32_t segment_count, fr.u32("segment count"));
  if (footer_length != 4 + std::uint64_t{segment_count} * kXofSegmentEntrySize + 32 + kXofTagSize) {
    return parse_error(footer_offset + 8, "footer of " + std::to_string(footer_length) +
                                              " bytes cannot hold " +
                                              std::to_string(segment_count) + " segment entries");
  }
  std::vector<XofSegmentEntry> table(segment_count);
  for (auto& e : table) {
    PF_ASSIGN_OR_RETURN(e.offset, fr.u64("segment offset"));
    PF_ASSIGN_OR_RETURN(e.length, fr.u32("segment length"));
    PF_ASSIGN_OR_RETURN(e.card_count, fr.u32("segment card count"));
    PF_ASSIGN_OR_RETURN(auto digest, fr.bytes(32, "segment SHA-256"));
    std::copy(digest.begin(), digest.end(), e.sha256.begin());
  }
  const auto table_bytes =
      std::span<const std::uint8_t>(footer).subspan(table_start, fr.position() - table_start);
  PF_ASSIGN_OR_RETURN(auto stored_header_sha256, fr.bytes(32, "header SHA-256"));
  const std::uint64_t tag_at = fr.offset();
  PF_ASSIGN_OR_RETURN(auto tag, fr.bytes(kXofTagSize, "footer tag"));

  // The header is authenticated through its hash, which the tag covers.
  PF_ASSIGN_OR_RETURN(Bytes header_bytes,
                      read_at(0, static_cast<std::size_t>(header_end), "header"));
  PF_ASSIGN_OR_RETURN(Sha256Digest header_sha256, sha256(header_bytes));
  if (!std::equal(header_sha256.begin(), header_sha256.end(), stored_header_sha256.begin())) {
    return integrity_error(
        0, "the header (" + std::to_string(header_end) +
               " bytes) does not match the SHA-256 recorded in the footer: modified");
  }
  XofFileId file_id{};
  std::copy_n(header_bytes.begin() + kXofFileIdOffset, file_id.size(), file_id.begin());
  const Bytes mac_input = xof_footer_mac_input(file_id, header_sha256, table_bytes);
  if (Status verified = integrity.verify(mac_input, tag); !verified) {
    if (verified.error().code() != ErrorCode::kIntegrity) {
      Error e = std::move(verified).error();
      e.add_context(path_ + ": verifying the footer tag");
      return e;
    }
    // Name a wrong key as such: the header (its hash matched) says which key wrote the tag.
    std::string reason = "the footer tag does not verify under the integrity key";
    auto kcv = integrity.kcv();
    auto parsed = parse_xof_header(header_bytes, path_);
    if (kcv && parsed &&
        !std::equal(kcv->begin(), kcv->end(), parsed->integrity_kcv.begin(),
                    parsed->integrity_kcv.end())) {
      reason += ": wrong key (KCV " + to_hex(*kcv) + "; the file was written under " +
                parsed->integrity_key_uri + ", KCV " + to_hex(parsed->integrity_kcv) + ")";
    } else {
      reason +=
          ": the footer, segment table or header was modified, or the file was assembled from "
          "others";
    }
    return integrity_error(tag_at, reason);
  }

  PF_ASSIGN_OR_RETURN(header_, parse_xof_header(header_bytes, path_));
  if (header_.segment_count != segment_count) {
    return parse_error(kXofSegmentCountOffset,
                       "the header counts " + std::to_string(header_.segment_count) +
                           " segments, the footer " + std::to_string(segment_count));
  }
  std::uint64_t expected_offset = header_end;
  std::uint64_t cards = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const XofSegmentEntry& e = table[i];
    if (e.offset != expected_offset) {
      return integrity_error(e.offset, "segment " + std::to_string(i) + " is recorded at offset " +
                                           std::to_string(e.offset) +
                                           " but the previous part ends at " +
                                           std::to_string(expected_offset));
    }
    if (e.length < 4 + 4 + 4 + 4 + 2 + 4) {
      return parse_error(e.offset, "segment " + std::to_string(i) + " is recorded with " +
                                       std::to_string(e.length) +
                                       " bytes, too short for a segment");
    }
    if (e.card_count > header_.segment_cards) {
      return parse_error(e.offset, "segment " + std::to_string(i) + " is recorded with " +
                                       std::to_string(e.card_count) +
                                       " cards, more than the segment size");
    }
    expected_offset += e.length;
    cards += e.card_count;
  }
  if (expected_offset != footer_offset) {
    return integrity_error(footer_offset,
                           "the segment table ends at " + std::to_string(expected_offset) +
                               " but the footer is at " + std::to_string(footer_offset) +
                               ": bytes were inserted or removed");
  }
  if (cards != header_.record_count) {
    return parse_error(kXofRecordCountOffset,
                       "the header counts " + std::to_string(header_.record_count) +
                           " records, the segments " + std::to_string(cards));
  }
  table_ = std::move(table);
  return ok_status();
}

}  // namespace persoflow::formats
