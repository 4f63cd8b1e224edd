#include "formats/xof_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace persoflow::formats {

XofReader::XofReader(XofReader&& other) noexcept
    : fd_(other.fd_),
      path_(std::move(other.path_)),
      size_(other.size_),
      header_(std::move(other.header_)),
      table_(std::move(other.table_)),
      index_(std::move(other.index_)) {
  other.fd_ = -1;
}

XofReader& XofReader::operator=(XofReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
    path_ = std::move(other.path_);
    size_ = other.size_;
    header_ = std::move(other.header_);
    table_ = std::move(other.table_);
    index_ = std::move(other.index_);
  }
  return *this;
}

XofReader::~XofReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Bytes> XofReader::read_at(std::uint64_t offset, std::size_t length,
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

std::string XofReader::segment_where(std::size_t i) const {
  return path_ + ": segment " + std::to_string(i);
}

Status XofReader::check_keys(std::span<AeadKey* const> class_keys) const {
  PF_TRY_CTX(check_xof_class_keys(header_, class_keys), path_);
  return ok_status();
}

Result<XofSegment> XofReader::read_segment(std::size_t i) const {
  if (i >= table_.size()) {
    return Error(ErrorCode::kInvalidArgument, path_ + ": segment " + std::to_string(i) + " of " +
                                                  std::to_string(table_.size()) + " requested");
  }
  const XofSegmentEntry& e = table_[i];
  PF_ASSIGN_OR_RETURN(Bytes bytes, read_at(e.offset, e.length, "segment " + std::to_string(i)));
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, sha256(bytes));
  if (digest != e.sha256) {
    return Error(ErrorCode::kIntegrity,
                 segment_where(i) + ": offset " + std::to_string(e.offset) +
                     ": the segment's SHA-256 does not match the segment table "
                     "(modified, moved, or spliced from another file)");
  }
  PF_ASSIGN_OR_RETURN(XofSegment segment,
                      parse_xof_segment(header_, std::move(bytes), e.offset,
                                        static_cast<std::uint32_t>(i), segment_where(i)));
  if (segment.card_ids.size() != e.card_count) {
    return Error(ErrorCode::kParse, segment_where(i) + ": offset " + std::to_string(e.offset + 12) +
                                        ": " + std::to_string(segment.card_ids.size()) +
                                        " cards, the table says " + std::to_string(e.card_count));
  }
  return segment;
}

Result<std::vector<XofCard>> XofReader::decode_segment(const XofSegment& segment,
                                                       std::span<AeadKey* const> class_keys) const {
  return decode_xof_segment(header_, segment, class_keys, segment_where(segment.segment_number));
}

Result<std::vector<XofCard>> XofReader::decode_segment_classes(const XofSegment& segment,
                                                               std::span<AeadKey* const> class_keys) const {
  return decode_xof_segment_classes(header_, segment, class_keys, segment_where(segment.segment_number));
}

Status XofReader::verify_all() {
  std::map<std::string, std::pair<std::size_t, std::size_t>, std::less<>> index;
  for (std::size_t i = 0; i < table_.size(); ++i) {
    PF_ASSIGN_OR_RETURN(XofSegment segment, read_segment(i));
    for (std::size_t k = 0; k < segment.card_ids.size(); ++k) {
      index.emplace(std::move(segment.card_ids[k]), std::make_pair(i, k));  // keeps the first
    }
  }
  index_ = std::move(index);
  return ok_status();
}

Result<std::optional<std::pair<std::size_t, std::size_t>>> XofReader::find_card(
    std::string_view card_id) {
  if (!index_) PF_TRY(verify_all());
  const auto it = index_->find(card_id);
  if (it == index_->end()) return std::optional<std::pair<std::size_t, std::size_t>>{};
  return std::optional<std::pair<std::size_t, std::size_t>>(it->second);
}

}  // namespace persoflow::formats
