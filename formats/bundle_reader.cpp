// BundleReader: the checks of open() (layout, header, the digest of header + index +
// table, the footer tag under the integrity key), segments on demand, each checked
// against its SHA-256 in the authenticated table and against the index, and
// verify_all() (every segment, then the whole file's SHA-256). docs/formats/bundle.md.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "formats/big_endian_codec.h"
#include "formats/bundle.h"

namespace persoflow::formats {
namespace {

constexpr std::string_view kFooterMacLabel = "persoflow-bundle-footer-v1";
constexpr std::uint64_t kMaxHeaderLength = 16 * 1024;  // 3 texts of at most 1 KiB + 100
constexpr std::size_t kTableEntrySize = 8 + 8 + 4 + 32;
constexpr std::size_t kSegmentFixedSize = 20;
// Offsets within the footer.
constexpr std::size_t kFooterDigestAt = 4 + 8 + 8 + 8 + 32;  // the file SHA-256
constexpr std::size_t kFooterTagAt = kFooterDigestAt + 32;

}  // namespace

BundleReader::BundleReader(BundleReader&& other) noexcept
    : fd_(other.fd_),
      path_(std::move(other.path_)),
      size_(other.size_),
      header_(std::move(other.header_)),
      table_(std::move(other.table_)),
      index_(std::move(other.index_)),
      footer_digest_(std::move(other.footer_digest_)) {
  other.fd_ = -1;
}

BundleReader& BundleReader::operator=(BundleReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
    path_ = std::move(other.path_);
    size_ = other.size_;
    header_ = std::move(other.header_);
    table_ = std::move(other.table_);
    index_ = std::move(other.index_);
    footer_digest_ = std::move(other.footer_digest_);
  }
  return *this;
}

BundleReader::~BundleReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<BundleReader> BundleReader::open(const std::string& path, MacKey& integrity) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 path + ": cannot open the script bundle: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error(ErrorCode::kIo, path + ": fstat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(ErrorCode::kParse, path + ": offset 0: not a regular file, so not a script bundle");
  }
  BundleReader reader(fd, path, static_cast<std::uint64_t>(st.st_size));
  PF_TRY(reader.load(integrity));
  return reader;
}

Result<Bytes> BundleReader::read_at(std::uint64_t offset, std::size_t length,
                                    std::string_view what) const {
  Bytes out(length);
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(fd_, out.data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(ErrorCode::kIo, path_ + ": offset " + std::to_string(offset + done) +
                                       ": reading " + std::string(what) + ": " +
                                       std::strerror(errno));
    }
    if (n == 0) {
      return Error(ErrorCode::kParse, path_ + ": offset " + std::to_string(offset + done) + ": " +
                                          std::string(what) +
                                          " is truncated (the file shrank while being read)");
    }
    done += static_cast<std::size_t>(n);
  }
  return out;
}

std::string BundleReader::segment_where(std::size_t i) const {
  return path_ + ": segment " + std::to_string(i);
}

Status BundleReader::load(MacKey& integrity) {
  auto parse_error = [&](std::uint64_t offset, const std::string& reason) {
    return Error(ErrorCode::kParse, path_ + ": offset " + std::to_string(offset) + ": " + reason);
  };
  auto integrity_error = [&](std::uint64_t offset, const std::string& reason) {
    return Error(ErrorCode::kIntegrity,
                 path_ + ": offset " + std::to_string(offset) + ": " + reason);
  };

  // Magic and header.
  PF_ASSIGN_OR_RETURN(
      Bytes start,
      read_at(0, static_cast<std::size_t>(std::min<std::uint64_t>(size_, 12)), "magic"));
  const std::size_t magic_seen = std::min(start.size(), kBundleMagic.size());
  if (!std::equal(start.begin(), start.begin() + static_cast<std::ptrdiff_t>(magic_seen),
                  kBundleMagic.begin())) {
    return parse_error(0, "not a script bundle (no magic \"PFBUNDLE\")");
  }
  if (start.size() < 12) {
    return parse_error(size_, "truncated: " + std::to_string(size_) +
                                  " bytes end inside the magic or header length");
  }
  const std::uint64_t header_length = load_be(start.data() + 8, 4);
  if (header_length > kMaxHeaderLength) {
    return parse_error(8, "header length " + std::to_string(header_length) + " (at most " +
                              std::to_string(kMaxHeaderLength) + ")");
  }
  const std::uint64_t header_end = 12 + header_length;
  if (header_end + kBundleFooterSize > size_) {
    return parse_error(size_, "truncated: the file has " + std::to_string(size_) +
                                  " bytes; its header alone ends at " + std::to_string(header_end) +
                                  " and a " + std::to_string(kBundleFooterSize) +
                                  "-byte footer must follow");
  }
  PF_ASSIGN_OR_RETURN(Bytes header_bytes,
                      read_at(0, static_cast<std::size_t>(header_end), "header"));
  PF_ASSIGN_OR_RETURN(BundleHeader header, parse_bundle_header(header_bytes, path_));

  // Footer.
  const std::uint64_t footer_offset = size_ - kBundleFooterSize;
  PF_ASSIGN_OR_RETURN(Bytes footer, read_at(footer_offset, kBundleFooterSize, "footer"));
  if (!std::equal(kBundleTrailerMagic.begin(), kBundleTrailerMagic.end(),
                  footer.end() - static_cast<std::ptrdiff_t>(kBundleTrailerMagic.size()))) {
    return parse_error(size_ - kBundleTrailerMagic.size(),
                       "no trailer \"PFBUNEND\" at the end of the file (truncated, or not "
                       "finished)");
  }
  if (!std::equal(kBundleFooterMagic.begin(), kBundleFooterMagic.end(), footer.begin())) {
    return parse_error(footer_offset, "no footer magic \"PFBF\" " +
                                          std::to_string(kBundleFooterSize) +
                                          " bytes before the end of the file");
  }
  const std::uint64_t index_offset = load_be(footer.data() + 4, 8);
  const std::uint64_t table_offset = load_be(footer.data() + 12, 8);
  const std::uint64_t card_count = load_be(footer.data() + 20, 8);
  if (index_offset < header_end || table_offset < index_offset + 12 ||
      footer_offset < table_offset + 12) {
    return parse_error(footer_offset + 4,
                       "the footer places the index at " + std::to_string(index_offset) +
                           " and the segment table at " + std::to_string(table_offset) +
                           ", outside " + std::to_string(header_end) + ".." +
                           std::to_string(footer_offset));
  }
  PF_ASSIGN_OR_RETURN(Bytes index_bytes,
                      read_at(index_offset, static_cast<std::size_t>(table_offset - index_offset),
                              "index"));
  PF_ASSIGN_OR_RETURN(Bytes table_bytes,
                      read_at(table_offset, static_cast<std::size_t>(footer_offset - table_offset),
                              "segment table"));

  // Authentication: header, index and table through their digest, which the tag covers.
  PF_ASSIGN_OR_RETURN(Sha256Digest structure, sha256({header_bytes, index_bytes, table_bytes}));
  if (!std::equal(structure.begin(), structure.end(), footer.begin() + 28)) {
    return integrity_error(footer_offset + 28,
                           "the header, index or segment table (as the footer locates them) does "
                           "not match the SHA-256 recorded in the footer: modified");
  }
  Bytes mac_input(kFooterMacLabel.begin(), kFooterMacLabel.end());
  mac_input.insert(mac_input.end(), footer.begin(),
                   footer.begin() + static_cast<std::ptrdiff_t>(kFooterTagAt));
  const auto tag = std::span<const std::uint8_t>(footer).subspan(kFooterTagAt, kBundleTagSize);
  if (Status verified = integrity.verify(mac_input, tag); !verified) {
    if (verified.error().code() != ErrorCode::kIntegrity) {
      Error e = std::move(verified).error();
      e.add_context(path_ + ": verifying the footer tag");
      return e;
    }
    // Name a wrong key as such: the header (its digest matched) says which key wrote the tag.
    std::string reason = "the footer tag does not verify under the integrity key";
    auto kcv = integrity.kcv();
    if (kcv && *kcv != header.integrity_kcv) {
      reason += ": wrong key (KCV " + to_hex(*kcv) + "; the file was written under " +
                header.integrity_key_uri + ", KCV " + to_hex(header.integrity_kcv) + ")";
    } else {
      reason += ": the footer or its digests were modified, or the file was assembled from others";
    }
    return integrity_error(footer_offset + kFooterTagAt, reason);
  }

  // Segment table: contiguous segments from the header's end to the index.
  ByteReader tr(table_bytes, table_offset, path_);
  PF_ASSIGN_OR_RETURN(auto table_magic, tr.bytes(4, "segment table magic"));
  if (!std::equal(table_magic.begin(), table_magic.end(), kBundleTableMagic.begin())) {
    return parse_error(table_offset, "no segment table magic \"PFBT\"");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t table_length, tr.u32("segment table length"));
  PF_ASSIGN_OR_RETURN(std::uint32_t segment_count, tr.u32("segment count"));
  if (table_length != tr.remaining() + 4 ||
      tr.remaining() != std::uint64_t{segment_count} * kTableEntrySize) {
    return parse_error(table_offset + 4, "segment table of " + std::to_string(table_bytes.size()) +
                                             " bytes cannot hold " +
                                             std::to_string(segment_count) + " entries");
  }
  std::vector<BundleSegmentEntry> table(segment_count);
  std::uint64_t expected_offset = header_end;
  std::uint64_t cards = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    BundleSegmentEntry& e = table[i];
    const std::uint64_t at = tr.offset();
    PF_ASSIGN_OR_RETURN(e.offset, tr.u64("segment offset"));
    PF_ASSIGN_OR_RETURN(e.length, tr.u64("segment length"));
    PF_ASSIGN_OR_RETURN(e.card_count, tr.u32("segment card count"));
    PF_ASSIGN_OR_RETURN(auto digest, tr.bytes(32, "segment SHA-256"));
    std::copy(digest.begin(), digest.end(), e.sha256.begin());
    if (e.offset != expected_offset || e.length < kSegmentFixedSize ||
        e.length > index_offset - e.offset) {
      return parse_error(at, "segment " + std::to_string(i) + " is recorded at " +
                                 std::to_string(e.offset) + " with " + std::to_string(e.length) +
                                 " bytes; it must start at " + std::to_string(expected_offset) +
                                 " and end by the index at " + std::to_string(index_offset));
    }
    if (e.card_count == 0 || e.card_count > header.segment_cards) {
      return parse_error(at + 16, "segment " + std::to_string(i) + " is recorded with " +
                                      std::to_string(e.card_count) + " cards (1.." +
                                      std::to_string(header.segment_cards) + ")");
    }
    expected_offset += e.length;
    cards += e.card_count;
  }
  if (expected_offset != index_offset) {
    return parse_error(index_offset, "the segments end at " + std::to_string(expected_offset) +
                                         " but the index starts at " +
                                         std::to_string(index_offset));
  }
  if (cards != card_count) {
    return parse_error(footer_offset + 20, "the footer counts " + std::to_string(card_count) +
                                               " cards, the segment table " +
                                               std::to_string(cards));
  }

  // Index: sorted strictly by card id, each segment holding as many cards as the table says.
  ByteReader ir(index_bytes, index_offset, path_);
  PF_ASSIGN_OR_RETURN(auto index_magic, ir.bytes(4, "index magic"));
  if (!std::equal(index_magic.begin(), index_magic.end(), kBundleIndexMagic.begin())) {
    return parse_error(index_offset, "no index magic \"PFBI\"");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t index_length, ir.u32("index length"));
  if (index_length != ir.remaining()) {
    return parse_error(index_offset + 4, "index length " + std::to_string(index_length) +
                                             " but " + std::to_string(ir.remaining()) +
                                             " bytes lie before the segment table");
  }
  PF_ASSIGN_OR_RETURN(std::uint32_t entry_count, ir.u32("index entry count"));
  if (entry_count != card_count) {
    return parse_error(index_offset + 8, "the index has " + std::to_string(entry_count) +
                                             " entries for " + std::to_string(card_count) +
                                             " cards");
  }
  std::map<std::string, std::uint32_t, std::less<>> index;
  std::vector<std::uint32_t> per_segment(segment_count, 0);
  const std::string* previous = nullptr;
  for (std::uint32_t k = 0; k < entry_count; ++k) {
    const std::uint64_t at = ir.offset();
    PF_ASSIGN_OR_RETURN(std::string id, ir.str("index card id"));
    PF_ASSIGN_OR_RETURN(std::uint32_t segment, ir.u32("index segment"));
    if (id.empty() || id.size() > kBundleMaxCardId) {
      return parse_error(at, "index entry " + std::to_string(k) + " has a card id of " +
                                 std::to_string(id.size()) + " bytes (1.." +
                                 std::to_string(kBundleMaxCardId) + ")");
    }
    if (previous != nullptr && !(*previous < id)) {
      return parse_error(at, "index entry " + std::to_string(k) + " ('" + id +
                                 "') is not after '" + *previous +
                                 "': the index is sorted by card id, each id once");
    }
    if (segment >= segment_count) {
      return parse_error(at, "index entry '" + id + "' names segment " + std::to_string(segment) +
                                 " of " + std::to_string(segment_count));
    }
    ++per_segment[segment];
    previous = &index.emplace_hint(index.end(), std::move(id), segment)->first;
  }
  PF_TRY(ir.expect_end("the index"));
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (per_segment[i] != table[i].card_count) {
      return parse_error(index_offset, "the index puts " + std::to_string(per_segment[i]) +
                                           " cards in segment " + std::to_string(i) +
                                           ", the segment table " +
                                           std::to_string(table[i].card_count));
    }
  }

  header_ = std::move(header);
  table_ = std::move(table);
  index_ = std::move(index);
  footer_digest_.assign(footer.begin() + kFooterDigestAt, footer.begin() + kFooterTagAt);
  return ok_status();
}

std::uint64_t BundleReader::card_count() const {
  std::uint64_t n = 0;
  for (const auto& e : table_) n += e.card_count;
  return n;
}

Result<std::vector<BundleCard>> BundleReader::read_segment(std::size_t i) const {
  if (i >= table_.size()) {
    return Error(ErrorCode::kInvalidArgument, path_ + ": segment " + std::to_string(i) + " of " +
                                                  std::to_string(table_.size()) + " requested");
  }
  const BundleSegmentEntry& e = table_[i];
  PF_ASSIGN_OR_RETURN(Bytes bytes, read_at(e.offset, static_cast<std::size_t>(e.length),
                                           "segment " + std::to_string(i)));
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, sha256(bytes));
  if (digest != e.sha256) {
    return Error(ErrorCode::kIntegrity,
                 segment_where(i) + ": offset " + std::to_string(e.offset) +
                     ": the segment's SHA-256 does not match the segment table (modified, "
                     "moved, or spliced from another file)");
  }
  PF_ASSIGN_OR_RETURN(std::vector<BundleCard> cards,
                      decode_bundle_segment(header_, bytes, static_cast<std::uint32_t>(i),
                                            segment_where(i), e.offset));
  if (cards.size() != e.card_count) {
    return Error(ErrorCode::kParse, segment_where(i) + ": offset " + std::to_string(e.offset + 8) +
                                        ": " + std::to_string(cards.size()) +
                                        " cards, the segment table says " +
                                        std::to_string(e.card_count));
  }
  // The index was checked to hold card_count distinct ids for this segment: each card
  // found there, and no id twice, means the segment holds exactly the indexed cards.
  std::vector<std::string_view> ids;
  ids.reserve(cards.size());
  for (const BundleCard& card : cards) {
    const auto it = index_.find(card.card_id);
    if (it == index_.end() || it->second != i) {
      return Error(ErrorCode::kIntegrity, segment_where(i) + ": card '" + card.card_id +
                                              "' is not indexed in this segment");
    }
    ids.push_back(card.card_id);
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return Error(ErrorCode::kIntegrity, segment_where(i) + ": a card id appears twice");
  }
  return cards;
}

Result<std::optional<BundleCard>> BundleReader::find_card(std::string_view card_id) const {
  const auto it = index_.find(card_id);
  if (it == index_.end()) return std::optional<BundleCard>();
  PF_ASSIGN_OR_RETURN(std::vector<BundleCard> cards, read_segment(it->second));
  for (BundleCard& card : cards) {
    if (card.card_id == card_id) return std::optional<BundleCard>(std::move(card));
  }
  return Error(ErrorCode::kInternal, segment_where(it->second) + ": card '" + std::string(card_id) +
                                         "' is indexed here but missing");
}

Status BundleReader::verify_all(BundleTotals* totals) {
  BundleTotals counted;
  for (std::size_t i = 0; i < table_.size(); ++i) {
    PF_ASSIGN_OR_RETURN(std::vector<BundleCard> cards, read_segment(i));
    counted.cards += cards.size();
    for (const BundleCard& card : cards) {
      counted.sessions += card.sessions.size();
      for (const BundleSession& s : card.sessions) {
        counted.apdus += s.apdus.size();
        for (const BundleApdu& a : s.apdus) counted.apdu_bytes += a.command.size();
      }
    }
  }
  // Every byte before the file digest, in 1 MiB reads.
  const std::uint64_t digest_at = size_ - kBundleFooterSize + kFooterDigestAt;
  Sha256Stream stream;
  constexpr std::uint64_t kChunk = 1 << 20;
  for (std::uint64_t at = 0; at < digest_at; at += kChunk) {
    PF_ASSIGN_OR_RETURN(Bytes chunk, read_at(at, static_cast<std::size_t>(std::min(kChunk, digest_at - at)),
                                             "the file"));
    PF_TRY(stream.update(chunk));
  }
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, stream.peek());
  if (!std::equal(digest.begin(), digest.end(), footer_digest_.begin(), footer_digest_.end())) {
    return Error(ErrorCode::kIntegrity,
                 path_ + ": offset " + std::to_string(digest_at) +
                     ": the SHA-256 of the file's first " + std::to_string(digest_at) +
                     " bytes does not match the footer: modified");
  }
  if (totals != nullptr) *totals = counted;
  return ok_status();
}

}  // namespace persoflow::formats
