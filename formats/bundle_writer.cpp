// BundleWriter: header, segments in order, index, segment table, footer with the file's
// SHA-256 and the CMAC tag, published atomically (docs/formats/bundle.md). Also the
// incremental SHA-256 both the writer and the reader use.
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cerrno>
#include <cstring>

#include "formats/big_endian_codec.h"
#include "formats/bundle.h"
#include "formats/zstd_codec.h"

namespace persoflow::formats {

struct Sha256Stream::State {
  EVP_MD_CTX* ctx = nullptr;
  bool failed = false;
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256Stream::Sha256Stream() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  state_->failed = state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1;
}
Sha256Stream::Sha256Stream(Sha256Stream&&) noexcept = default;
Sha256Stream& Sha256Stream::operator=(Sha256Stream&&) noexcept = default;
Sha256Stream::~Sha256Stream() = default;

Status Sha256Stream::update(std::span<const std::uint8_t> bytes) {
  if (!state_ || state_->failed) return Error(ErrorCode::kInternal, "SHA-256: OpenSSL failed");
  if (!bytes.empty() && EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1) {
    state_->failed = true;
    return Error(ErrorCode::kInternal, "SHA-256: OpenSSL failed");
  }
  return ok_status();
}

Result<Sha256Digest> Sha256Stream::peek() const {
  if (!state_ || state_->failed) return Error(ErrorCode::kInternal, "SHA-256: OpenSSL failed");
  // Finalizing a copy leaves this stream able to take more bytes.
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  Sha256Digest out{};
  unsigned int len = 0;
  const bool ok = copy != nullptr && EVP_MD_CTX_copy_ex(copy, state_->ctx) == 1 &&
                  EVP_DigestFinal_ex(copy, out.data(), &len) == 1 && len == out.size();
  EVP_MD_CTX_free(copy);
  if (!ok) return Error(ErrorCode::kInternal, "SHA-256: OpenSSL failed");
  return out;
}

namespace {

// The tag covers the footer up to and including the file digest, under this label: the
// footer's offsets and counts, the digest of header + index + table (checked on open, so
// find_card() trusts an authenticated index) and the digest of every preceding byte.
constexpr std::string_view kFooterMacLabel = "persoflow-bundle-footer-v1";

// Bytes gathered before one write, to the run file or (spilled index) to the bundle.
constexpr std::size_t kWriteChunk = std::size_t{64} << 10;
// Read buffers of the merge, all runs together: each run gets its share, between the
// bounds, so that the merge's memory stays small however many runs there are.
constexpr std::size_t kMergeReadBudget = std::size_t{1} << 20;
constexpr std::size_t kMinRunBuffer = std::size_t{4} << 10;
constexpr std::size_t kMaxRunBuffer = std::size_t{64} << 10;

std::string errno_text(int err) { return std::strerror(err); }

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The message of a card id two segments share, the same whether the index was in memory
// or merged from runs. `first` <= `second`: the order of the index.
Error duplicate_card_error(const std::string& final_path, const std::string& card_id,
                           std::uint32_t first, std::uint32_t second) {
  return Error(ErrorCode::kInvalidArgument,
               final_path + ": card id '" + card_id + "' is in segment " + std::to_string(first) +
                   " and again in segment " + std::to_string(second) +
                   ": a bundle holds each card once; nothing was published");
}

// Reads one sorted run of the run file, entry by entry, through a buffer. Entries are
// serialized as in the index (str card id, u32 segment), by spill_run.
class RunCursor {
 public:
  RunCursor(int fd, std::uint64_t begin, std::uint64_t end, std::size_t buffer,
            const std::string& final_path)
      : fd_(fd), next_(begin), end_(end), buf_(buffer), final_path_(&final_path) {}

  // Loads the next entry; false at the end of the run.
  Result<bool> next() {
    if (pos_ == len_ && next_ == end_) return false;
    PF_TRY(fill(2));
    const std::size_t n = static_cast<std::size_t>(load_be(buf_.data() + pos_, 2));
    PF_TRY(fill(2 + n + 4));
    const auto at = buf_.begin() + static_cast<std::ptrdiff_t>(pos_ + 2);
    id_.assign(at, at + static_cast<std::ptrdiff_t>(n));
    segment_ = static_cast<std::uint32_t>(load_be(buf_.data() + pos_ + 2 + n, 4));
    pos_ += 2 + n + 4;
    return true;
  }

  const std::string& id() const { return id_; }
  std::uint32_t segment() const { return segment_; }

  // The order of std::pair<std::string, std::uint32_t>, which sorts the in-memory index:
  // card id bytewise, then segment.
  bool before(const RunCursor& other) const {
    const int c = id_.compare(other.id_);
    return c != 0 ? c < 0 : segment_ < other.segment_;
  }

 private:
  // At least `need` unread bytes in buf_ (reading as many as fit), or an error.
  Status fill(std::size_t need) {
    if (len_ - pos_ >= need) return ok_status();
    std::copy(buf_.begin() + static_cast<std::ptrdiff_t>(pos_),
              buf_.begin() + static_cast<std::ptrdiff_t>(len_), buf_.begin());
    len_ -= pos_;
    pos_ = 0;
    if (buf_.size() < need) buf_.resize(need);
    while (len_ < need) {
      if (next_ == end_) {
        return Error(ErrorCode::kInternal,
                     *final_path_ + ": a run of the card index ends inside an entry");
      }
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size() - len_, end_ - next_));
      const ssize_t got = ::pread(fd_, buf_.data() + len_, want, static_cast<off_t>(next_));
      if (got < 0) {
        if (errno == EINTR) continue;
        return Error(ErrorCode::kIo, *final_path_ + ": reading the card index's run file: " +
                                         errno_text(errno));
      }
      if (got == 0) {
        return Error(ErrorCode::kIo, *final_path_ + ": the card index's run file ends at " +
                                         std::to_string(next_) + ", inside a run");
      }
      len_ += static_cast<std::size_t>(got);
      next_ += static_cast<std::uint64_t>(got);
    }
    return ok_status();
  }

  int fd_;
  std::uint64_t next_;  // run file offset of the first byte not yet in buf_
  std::uint64_t end_;   // of the run
  Bytes buf_;
  std::size_t pos_ = 0;  // next unread byte in buf_
  std::size_t len_ = 0;  // bytes of buf_ holding data
  std::string id_;
  std::uint32_t segment_ = 0;
  const std::string* final_path_;
};

Bytes segment_table_bytes(std::span<const BundleSegmentEntry> segments) {
  ByteWriter table;
  table.bytes(kBundleTableMagic);
  table.u32(static_cast<std::uint32_t>(4 + segments.size() * (8 + 8 + 4 + 32)));
  table.u32(static_cast<std::uint32_t>(segments.size()));
  for (const BundleSegmentEntry& e : segments) {
    table.u64(e.offset);
    table.u64(e.length);
    table.u32(e.card_count);
    table.bytes(e.sha256);
  }
  return table.take();
}

}  // namespace

BundleWriter::RunFile& BundleWriter::RunFile::operator=(RunFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

BundleWriter::RunFile::~RunFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<BundleWriter> BundleWriter::create(const std::string& final_path, BundleHeader header,
                                          BundleWriterOptions options) {
  if (options.index_run_entries == 0) {
    return Error(ErrorCode::kInvalidArgument,
                 final_path + ": index_run_entries is 0 (at least 1 card index entry per run)");
  }
  header.zstd_version = zstd_library_version();
  PF_TRY_CTX(validate_bundle_header(header), final_path);
  // kReplace, as for the XOF: a rerun publishes over the previous bundle of the same name,
  // atomically; a station that has the old one open keeps reading it.
  PF_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(final_path));
  Bytes header_bytes = serialize_bundle_header(header);
  PF_TRY(file.write(header_bytes));
  Sha256Stream digest;
  PF_TRY(digest.update(header_bytes));
  return BundleWriter(std::move(file), std::move(header), std::move(header_bytes),
                      std::move(digest), options);
}

Error BundleWriter::state_error(const std::string& what) const {
  return Error(ErrorCode::kInternal, file_.final_path() + ": " + what);
}

Error BundleWriter::run_file_error(const std::string& what, int err) const {
  return Error(ErrorCode::kIo, file_.final_path() + ": " + what +
                                   " the card index's run file (unnamed, in " +
                                   directory_of(file_.temp_path()) + "): " + errno_text(err));
}

Status BundleWriter::write(std::span<const std::uint8_t> bytes) {
  if (Status written = file_.write(bytes); !written) {
    broken_ = true;
    return written;
  }
  if (Status hashed = digest_.update(bytes); !hashed) {
    broken_ = true;
    return hashed;
  }
  return ok_status();
}

Status BundleWriter::spill_run() {
  if (run_file_.fd() < 0) {
    const int fd = open_unnamed_file(directory_of(file_.temp_path()),
                                     std::filesystem::path(file_.temp_path()).filename().string() + ".index",
                                     options_.run_file_o_tmpfile);
    if (fd < 0) {
      const int err = errno;
      broken_ = true;
      return run_file_error("creating", err);
    }
    run_file_ = RunFile(fd);
  }
  // Sorted as the in-memory index is: the merge of sorted runs gives the same order.
  std::sort(index_.begin(), index_.end());
  const std::uint64_t begin = run_file_size_;
  ByteWriter chunk;
  auto flush = [&]() -> Status {
    if (const int err = pwrite_all(run_file_.fd(), chunk.data().data(), chunk.size(), run_file_size_); err != 0) {
      broken_ = true;
      return run_file_error("writing", err);
    }
    run_file_size_ += chunk.size();
    chunk = ByteWriter();
    return ok_status();
  };
  for (const auto& [id, number] : index_) {
    chunk.str(id);
    chunk.u32(number);
    if (chunk.size() >= kWriteChunk) PF_TRY(flush());
  }
  PF_TRY(flush());
  runs_.push_back({begin, run_file_size_ - begin});
  index_.clear();
  return ok_status();
}

Status BundleWriter::merge_runs(const IndexSink& sink) const {
  const std::size_t buffer =
      std::clamp(kMergeReadBudget / std::max<std::size_t>(runs_.size(), 1), kMinRunBuffer,
                 kMaxRunBuffer);
  std::vector<RunCursor> cursors;
  cursors.reserve(runs_.size());
  std::vector<std::size_t> heap;  // cursors with an entry loaded; the smallest on top
  for (const SpilledRun& run : runs_) {
    cursors.emplace_back(run_file_.fd(), run.offset, run.offset + run.length, buffer,
                         file_.final_path());
    PF_ASSIGN_OR_RETURN(bool loaded, cursors.back().next());
    if (loaded) heap.push_back(cursors.size() - 1);
  }
  const auto after = [&](std::size_t a, std::size_t b) { return cursors[b].before(cursors[a]); };
  std::make_heap(heap.begin(), heap.end(), after);

  std::string previous;
  std::uint32_t previous_segment = 0;
  bool first = true;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), after);
    RunCursor& cursor = cursors[heap.back()];
    // Duplicates are neighbours in the merged order, across runs as within one.
    if (!first && cursor.id() == previous) {
      return duplicate_card_error(file_.final_path(), cursor.id(), previous_segment,
                                  cursor.segment());
    }
    if (sink) PF_TRY(sink(cursor.id(), cursor.segment()));
    previous = cursor.id();
    previous_segment = cursor.segment();
    first = false;
    PF_ASSIGN_OR_RETURN(bool more, cursor.next());
    if (more) {
      std::push_heap(heap.begin(), heap.end(), after);
    } else {
      heap.pop_back();
    }
  }
  return ok_status();
}

Status BundleWriter::append(const BundleEncodedSegment& segment) {
  if (finished_) return state_error("append after finish");
  if (broken_) return state_error("append after a failed write");
  if (segment.segment_number != table_.size()) {
    return state_error("bundle segment " + std::to_string(segment.segment_number) +
                       " appended where segment " + std::to_string(table_.size()) + " is next");
  }
  if (table_.size() == 0xFFFFFFFFu) return state_error("more than 4294967295 segments");
  // The fixed fields must say what the struct says: a segment from another writer or a
  // hand-edited struct would otherwise give an index that disagrees with the segments.
  const Bytes& b = segment.bytes;
  if (segment.card_count == 0 || segment.card_count > header_.segment_cards ||
      segment.card_ids.size() != segment.card_count || b.size() < 20 ||
      !std::equal(kBundleSegmentMagic.begin(), kBundleSegmentMagic.end(), b.begin()) ||
      load_be(b.data() + 4, 4) != segment.segment_number ||
      load_be(b.data() + 8, 4) != segment.card_count) {
    return state_error("bundle segment " + std::to_string(segment.segment_number) +
                       " was not made by encode_bundle_segment for this header");
  }
  Sha256Digest digest{};
  if (segment.sha256) {
    digest = *segment.sha256;
  } else {
    PF_ASSIGN_OR_RETURN(digest, sha256(b));
  }
  const BundleSegmentEntry entry{file_.size(), b.size(), segment.card_count, digest};
  PF_TRY(write(b));
  table_.push_back(entry);
  for (const std::string& id : segment.card_ids) {
    if (index_.size() >= options_.index_run_entries) PF_TRY(spill_run());
    index_.emplace_back(id, segment.segment_number);
    index_length_ += 2 + id.size() + 4;  // str card id, u32 segment
  }
  cards_ += segment.card_count;
  return ok_status();
}

Status BundleWriter::check_integrity_kcv(MacKey& integrity) const {
  PF_ASSIGN_OR_RETURN(Bytes kcv, integrity.kcv());
  if (kcv != header_.integrity_kcv) {
    return Error(ErrorCode::kInvalidArgument,
                 file_.final_path() + ": the integrity key has KCV " + to_hex(kcv) +
                     ", the header names KCV " + to_hex(header_.integrity_kcv) + " (" +
                     header_.integrity_key_uri + ")");
  }
  return ok_status();
}

Result<Bytes> BundleWriter::finish(MacKey& integrity) {
  if (finished_) return state_error("finish called twice");
  if (broken_) return state_error("finish after a failed write");
  if (runs_.empty()) return finish_in_memory(integrity);
  return finish_spilled(integrity);
}

Result<Bytes> BundleWriter::finish_in_memory(MacKey& integrity) {
  // Sorted by card id (bytewise), then segment: readers binary-search it, and duplicates
  // are neighbours.
  std::sort(index_.begin(), index_.end());
  for (std::size_t k = 1; k < index_.size(); ++k) {
    if (index_[k].first == index_[k - 1].first) {
      broken_ = true;
      return duplicate_card_error(file_.final_path(), index_[k].first, index_[k - 1].second,
                                  index_[k].second);
    }
  }

  PF_TRY(check_integrity_kcv(integrity));

  ByteWriter index;
  index.bytes(kBundleIndexMagic);
  index.u32(0);  // length, patched below
  index.u32(static_cast<std::uint32_t>(index_.size()));
  for (const auto& [id, number] : index_) {
    index.str(id);
    index.u32(number);
  }
  if (index.size() - 8 > 0xFFFFFFFFu) return state_error("the index is larger than 4 GiB");
  index.patch_u32(4, static_cast<std::uint32_t>(index.size() - 8));

  const Bytes table = segment_table_bytes(table_);

  const std::uint64_t index_offset = file_.size();
  const std::uint64_t table_offset = index_offset + index.size();
  PF_ASSIGN_OR_RETURN(Sha256Digest structure, sha256({header_bytes_, index.data(), table}));
  PF_TRY(write(index.data()));
  PF_TRY(write(table));
  return write_footer(index_offset, table_offset, structure, integrity);
}

Result<Bytes> BundleWriter::finish_spilled(MacKey& integrity) {
  // The last run joins the others: the merge reads only runs, and the memory of the
  // in-memory run is given back before the merge starts.
  if (!index_.empty()) PF_TRY(spill_run());

  // Refusals known before the index is written: as with the index in memory, a duplicate
  // card id is reported first, found by a merge that writes nothing (only on this path).
  auto refuse = [&](Error error) -> Error {
    if (Status unique = merge_runs(nullptr); !unique) {
      broken_ = true;
      return unique.error();
    }
    return error;
  };
  if (Status key = check_integrity_kcv(integrity); !key) return refuse(key.error());
  if (index_length_ > 0xFFFFFFFFu) return refuse(state_error("the index is larger than 4 GiB"));

  // The index is streamed through write() (file and file digest) and into the structure
  // digest, in chunks: the same bytes as finish_in_memory() writes, never all in memory.
  // Its length was counted as cards arrived, so the section can start with it.
  const std::uint64_t index_offset = file_.size();
  Sha256Stream structure;
  PF_TRY(structure.update(header_bytes_));
  ByteWriter chunk;
  chunk.bytes(kBundleIndexMagic);
  chunk.u32(static_cast<std::uint32_t>(index_length_));
  chunk.u32(static_cast<std::uint32_t>(cards_));
  auto flush = [&]() -> Status {
    PF_TRY(write(chunk.data()));
    if (Status hashed = structure.update(chunk.data()); !hashed) {
      broken_ = true;
      return hashed;
    }
    chunk = ByteWriter();
    return ok_status();
  };
  Status merged = merge_runs([&](std::string_view id, std::uint32_t segment) -> Status {
    chunk.str(id);
    chunk.u32(segment);
    if (chunk.size() >= kWriteChunk) return flush();
    return ok_status();
  });
  if (!merged) {
    // A duplicate, or the run file failed: the index written so far is incomplete.
    broken_ = true;
    return merged.error();
  }
  PF_TRY(flush());
  if (file_.size() - index_offset != 8 + index_length_) {
    broken_ = true;
    return state_error("the card index's runs gave " + std::to_string(file_.size() - index_offset) +
                       " index bytes where " + std::to_string(8 + index_length_) +
                       " were counted");
  }

  const Bytes table = segment_table_bytes(table_);
  const std::uint64_t table_offset = file_.size();
  if (Status hashed = structure.update(table); !hashed) {
    broken_ = true;
    return hashed.error();
  }
  PF_TRY(write(table));
  PF_ASSIGN_OR_RETURN(Sha256Digest structure_digest, structure.peek());
  return write_footer(index_offset, table_offset, structure_digest, integrity);
}

Result<Bytes> BundleWriter::write_footer(std::uint64_t index_offset, std::uint64_t table_offset,
                                         const Sha256Digest& structure, MacKey& integrity) {
  ByteWriter footer;
  footer.bytes(kBundleFooterMagic);
  footer.u64(index_offset);
  footer.u64(table_offset);
  footer.u64(cards_);
  footer.bytes(structure);
  PF_TRY(write(footer.data()));

  // Every byte before the file digest has gone through digest_ on its way to the file.
  PF_ASSIGN_OR_RETURN(Sha256Digest file_digest, digest_.peek());
  Bytes mac_input(kFooterMacLabel.begin(), kFooterMacLabel.end());
  mac_input.insert(mac_input.end(), footer.data().begin(), footer.data().end());
  mac_input.insert(mac_input.end(), file_digest.begin(), file_digest.end());
  PF_ASSIGN_OR_RETURN(Bytes tag, integrity.mac(mac_input));
  if (tag.size() != kBundleTagSize) {
    return state_error("the integrity key returned a " + std::to_string(tag.size()) +
                       "-byte tag (AES-CMAC: 16)");
  }
  ByteWriter tail;
  tail.bytes(file_digest);
  tail.bytes(tag);
  tail.bytes(kBundleTrailerMagic);
  PF_TRY(write(tail.data()));
  PF_ASSIGN_OR_RETURN(Sha256Digest whole, digest_.peek());

  if (Status committed = file_.commit(); !committed) {
    broken_ = true;
    return committed.error();
  }
  finished_ = true;
  return Bytes(whole.begin(), whole.end());
}

}  // namespace persoflow::formats
