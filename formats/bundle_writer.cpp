// BundleWriter: header, segments in order, index, segment table, footer with the file's
// SHA-256 and the CMAC tag, published atomically (docs/formats/bundle.md). Also the
// incremental SHA-256 both the writer and the reader use.
#include <openssl/evp.h>

#include <algorithm>

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

}  // namespace

Result<BundleWriter> BundleWriter::create(const std::string& final_path, BundleHeader header) {
  header.zstd_version = zstd_library_version();
  PF_TRY_CTX(validate_bundle_header(header), final_path);
  // kReplace, as for the XOF: a rerun publishes over the previous bundle of the same name,
  // atomically; a station that has the old one open keeps reading it.
  PF_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(final_path));
  Bytes header_bytes = serialize_bundle_header(header);
  PF_TRY(file.write(header_bytes));
  Sha256Stream digest;
  PF_TRY(digest.update(header_bytes));
  return BundleWriter(std::move(file), std::move(header), std::move(header_bytes), std::move(digest));
}

Error BundleWriter::state_error(const std::string& what) const {
  return Error(ErrorCode::kInternal, file_.final_path() + ": " + what);
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
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, sha256(b));
  const BundleSegmentEntry entry{file_.size(), b.size(), segment.card_count, digest};
  PF_TRY(write(b));
  table_.push_back(entry);
  for (const std::string& id : segment.card_ids) index_.emplace_back(id, segment.segment_number);
  cards_ += segment.card_count;
  return ok_status();
}

Result<Bytes> BundleWriter::finish(MacKey& integrity) {
  if (finished_) return state_error("finish called twice");
  if (broken_) return state_error("finish after a failed write");

  // Sorted by card id (bytewise), then segment: readers binary-search it, and duplicates
  // are neighbours.
  std::sort(index_.begin(), index_.end());
  for (std::size_t k = 1; k < index_.size(); ++k) {
    if (index_[k].first == index_[k - 1].first) {
      broken_ = true;
      return Error(ErrorCode::kInvalidArgument,
                   file_.final_path() + ": card id '" + index_[k].first + "' is in segment " +
                       std::to_string(index_[k - 1].second) + " and again in segment " +
                       std::to_string(index_[k].second) +
                       ": a bundle holds each card once; nothing was published");
    }
  }

  PF_ASSIGN_OR_RETURN(Bytes kcv, integrity.kcv());
  if (kcv != header_.integrity_kcv) {
    return Error(ErrorCode::kInvalidArgument,
                 file_.final_path() + ": the integrity key has KCV " + to_hex(kcv) +
                     ", the header names KCV " + to_hex(header_.integrity_kcv) + " (" +
                     header_.integrity_key_uri + ")");
  }

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

  ByteWriter table;
  table.bytes(kBundleTableMagic);
  table.u32(static_cast<std::uint32_t>(4 + table_.size() * (8 + 8 + 4 + 32)));
  table.u32(static_cast<std::uint32_t>(table_.size()));
  for (const BundleSegmentEntry& e : table_) {
    table.u64(e.offset);
    table.u64(e.length);
    table.u32(e.card_count);
    table.bytes(e.sha256);
  }

  const std::uint64_t index_offset = file_.size();
  const std::uint64_t table_offset = index_offset + index.size();
  PF_ASSIGN_OR_RETURN(Sha256Digest structure,
                      sha256({header_bytes_, index.data(), table.data()}));
  PF_TRY(write(index.data()));
  PF_TRY(write(table.data()));

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
