#include "formats/xof_writer.h"

#include <algorithm>

#include "formats/big_endian_codec.h"

namespace persoflow::formats {

Result<XofWriter> XofWriter::create(const std::string& final_path, XofHeader header) {
  header.record_count = 0;
  header.reject_count = 0;
  header.segment_count = 0;
  PF_TRY_CTX(validate_xof_header(header), final_path);
  PF_ASSIGN_OR_RETURN(XofFileId expected_id, derive_xof_file_id(header));
  if (expected_id != header.file_id) {
    return Error(
        ErrorCode::kInvalidArgument,
        final_path + ": the header's file id is not derived from its fields (use make_xof_header)");
  }
  PF_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(final_path));
  Bytes header_bytes = serialize_xof_header(header);
  PF_TRY(file.write(header_bytes));
  return XofWriter(std::move(file), std::move(header), std::move(header_bytes));
}

Error XofWriter::state_error(const std::string& what) const {
  return Error(ErrorCode::kInternal, file_.final_path() + ": " + what);
}

Status XofWriter::append(const EncodedSegment& segment) {
  if (finished_) return state_error("append after finish");
  if (broken_) return state_error("append after a failed write");
  if (segment.segment_number != table_.size()) {
    return state_error("segment " + std::to_string(segment.segment_number) +
                       " appended where segment " + std::to_string(table_.size()) + " is next");
  }
  if (table_.size() == 0xFFFFFFFFu) return state_error("more than 4294967295 segments");
  if (segment.card_count > header_.segment_cards || segment.bytes.size() < 16 ||
      segment.bytes.size() > 0xFFFFFFFFu ||
      !std::equal(kXofSegmentMagic.begin(), kXofSegmentMagic.end(), segment.bytes.begin())) {
    return state_error("segment " + std::to_string(segment.segment_number) +
                       " was not made by encode_segment");
  }
  PF_ASSIGN_OR_RETURN(Sha256Digest digest, sha256(segment.bytes));
  XofSegmentEntry entry{file_.size(), static_cast<std::uint32_t>(segment.bytes.size()),
                        segment.card_count, digest};
  if (Status written = file_.write(segment.bytes); !written) {
    broken_ = true;
    return written;
  }
  table_.push_back(entry);
  cards_ += segment.card_count;
  return ok_status();
}

Status XofWriter::finish(MacKey& integrity, std::uint64_t record_count,
                         std::uint64_t reject_count) {
  if (finished_) return state_error("finish called twice");
  if (broken_) return state_error("finish after a failed write");
  if (record_count != cards_) {
    return state_error("record count " + std::to_string(record_count) + " but " +
                       std::to_string(cards_) + " cards were appended");
  }
  PF_ASSIGN_OR_RETURN(Bytes kcv, integrity.kcv());
  if (!std::equal(kcv.begin(), kcv.end(), header_.integrity_kcv.begin(),
                  header_.integrity_kcv.end())) {
    return Error(ErrorCode::kInvalidArgument, file_.final_path() + ": the integrity key has KCV " +
                                                  to_hex(kcv) + ", the header names KCV " +
                                                  to_hex(header_.integrity_kcv) + " (" +
                                                  header_.integrity_key_uri + ")");
  }
  header_.record_count = record_count;
  header_.reject_count = reject_count;
  header_.segment_count = segments_written();

  // Patch the counts in place; the header's length does not change.
  std::uint8_t counts[20];
  store_be(counts, record_count, 8);
  store_be(counts + 8, reject_count, 8);
  store_be(counts + 16, header_.segment_count, 4);
  std::copy(std::begin(counts), std::end(counts), header_bytes_.begin() + kXofRecordCountOffset);
  if (Status patched = file_.pwrite(kXofRecordCountOffset, counts); !patched) {
    broken_ = true;
    return patched;
  }

  PF_ASSIGN_OR_RETURN(Sha256Digest header_sha256, sha256(header_bytes_));
  const Bytes table = serialize_xof_segment_table(table_);
  PF_ASSIGN_OR_RETURN(Bytes tag,
                      integrity.mac(xof_footer_mac_input(header_.file_id, header_sha256, table)));
  if (tag.size() != kXofTagSize) {
    return state_error("the integrity key returned a " + std::to_string(tag.size()) +
                       "-byte tag (AES-CMAC: 16)");
  }

  if (table.size() > 0xFFFFFFFFu - header_sha256.size() - tag.size()) {
    return state_error("the segment table does not fit in a footer");
  }
  const std::uint64_t footer_offset = file_.size();
  ByteWriter footer;
  footer.bytes(kXofFooterMagic);
  footer.u32(static_cast<std::uint32_t>(table.size() + header_sha256.size() + tag.size()));
  footer.bytes(table);
  footer.bytes(header_sha256);
  footer.bytes(tag);
  footer.u64(footer_offset);
  footer.bytes(kXofTrailerMagic);
  if (Status written = file_.write(footer.data()); !written) {
    broken_ = true;
    return written;
  }
  if (Status committed = file_.commit(); !committed) {
    broken_ = true;
    return committed;
  }
  finished_ = true;
  return ok_status();
}

}  // namespace persoflow::formats
