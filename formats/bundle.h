// The script bundle (docs/formats/bundle.md): what prep publishes for the perso
// machines or the TSM. Per card, the SE it was made for and one or more secure-channel
// sessions, each with its channel parameters, the sequence counter it consumed, the
// INITIALIZE UPDATE response the SE must give, and the APDUs (bytes, not hex) with the
// status word each one expects. Cards are grouped in zstd-compressed segments; an index
// gives random access by card id; a footer (SHA-256 of everything before it, CMAC under
// the profile's integrity key in the HSM) closes the file. Written to a temporary file,
// fsynced, renamed (formats/atomic_file.h). Byte-identical for identical inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/hex.h"
#include "engine/key_ops.h"
#include "engine/result.h"
#include "formats/atomic_file.h"
#include "formats/sha256_digest.h"

namespace persoflow::formats {

inline constexpr std::uint16_t kBundleFormatVersion = 2;  // 2: expected response data per APDU
inline constexpr std::string_view kBundleMagic = "PFBUNDLE";        // file offset 0
inline constexpr std::string_view kBundleSegmentMagic = "PFBS";
inline constexpr std::string_view kBundleIndexMagic = "PFBI";
inline constexpr std::string_view kBundleTableMagic = "PFBT";
inline constexpr std::string_view kBundleFooterMagic = "PFBF";
inline constexpr std::string_view kBundleTrailerMagic = "PFBUNEND";  // the last 8 bytes
inline constexpr std::size_t kBundleTagSize = 16;
// "PFBF", u64 index_offset, u64 table_offset, u64 card_count, structure SHA-256, file
// SHA-256, tag, "PFBUNEND" (docs/formats/bundle.md).
inline constexpr std::size_t kBundleFooterSize = 4 + 8 + 8 + 8 + 32 + 32 + kBundleTagSize + 8;

// Bounds every decoder enforces (hostile input never makes it read out of bounds or
// allocate more than these allow), and every encoder checks before writing.
inline constexpr std::size_t kBundleMaxCardId = 64;
inline constexpr std::size_t kBundleMaxSeId = 128;
inline constexpr std::size_t kBundleMaxSessions = 64;        // per card
inline constexpr std::size_t kBundleMaxApdus = 100000;       // per session
inline constexpr std::size_t kBundleMinApdu = 4;             // CLA INS P1 P2
inline constexpr std::size_t kBundleMaxApdu = 65544;         // extended case 4, 65535 data
inline constexpr std::size_t kBundleMaxLabel = 256;
inline constexpr std::size_t kBundleMaxShortField = 32;      // kdd, host challenge
inline constexpr std::size_t kBundleMaxAid = 16;
inline constexpr std::size_t kBundleMaxSegmentBody = std::size_t{256} << 20;  // uncompressed
inline constexpr std::uint32_t kBundleMaxSegmentCards = 65536;
inline constexpr std::size_t kBundleMaxHeaderText = 1024;    // profile id, product, key URI

struct BundleHeader {
  std::uint16_t format_version = kBundleFormatVersion;
  Bytes xof_sha256;            // 32: SHA-256 of the whole source XOF file
  Bytes profile_sha256;        // 32: Profile::sha256
  std::int64_t reservation_id = 0;
  std::string profile_id;      // informational
  std::string product;         // informational
  std::uint32_t segment_cards = 256;  // cards per segment (the last may hold fewer)
  int zstd_level = 3;
  // The AES key whose CMAC is the footer tag (Profile::integrity_key_uri): required, so
  // that `inspect` finds the key the file was written under, as for the XOF.
  std::string integrity_key_uri;
  // Its KCV (3 bytes, KeyStore::kcv): required; finish() refuses a key with another KCV.
  Bytes integrity_kcv;
  // ZSTD_versionNumber() of the writer, set by BundleWriter::create (the compressed bytes,
  // hence the file, are identical only for the same zstd version).
  std::uint32_t zstd_version = 0;
};

struct BundleApdu {
  Bytes command;                       // the APDU exactly as sent, wrapped or clear
  std::uint16_t expected_sw = 0x9000;  // the status word the station must see
  std::string label;                   // "SELECT A000000151000000", "STORE DATA DGI 0101
                                       // (block 1/3)": never holds sensitive data
  Bytes expected_data;                 // the response data the SE must give, without SW (empty:
                                       // not checked); PUT KEY: KVN || KCVs
};

struct BundleSession {
  std::uint8_t scp = 3;      // 2 or 3
  std::uint8_t i = 0x70;
  std::uint8_t level = 0x03; // security level sent in EXTERNAL AUTHENTICATE
  std::uint8_t kvn = 0x30;
  Bytes kdd;                 // 10
  Bytes sd_aid;              // the security domain the channel is opened with
  std::uint32_t counter = 0; // the sequence counter this session consumes
  Bytes host_challenge;
  Bytes expected_response;   // INITIALIZE UPDATE response data, SW excluded
  std::vector<BundleApdu> apdus;  // in order: clear SELECT(s), INITIALIZE UPDATE, EXTERNAL
                                  // AUTHENTICATE, wrapped commands
};

struct BundleCard {
  std::string card_id;
  std::string se_id;
  std::vector<BundleSession> sessions;  // at least one
};

struct BundleEncodedSegment {
  std::uint32_t segment_number = 0;
  std::uint32_t card_count = 0;
  std::vector<std::string> card_ids;  // for the index, in order
  Bytes bytes;                        // the segment as stored
  // SHA-256 of `bytes`, when encode_bundle_segment made them (on the encoding thread);
  // append() computes it otherwise (a segment read back from a spool or a worker).
  std::optional<Sha256Digest> sha256;
};

// Pure function of its inputs (no time, no randomness): runs on worker threads.
Result<BundleEncodedSegment> encode_bundle_segment(const BundleHeader& header,
                                                   std::uint32_t segment_number,
                                                   std::span<const BundleCard> cards);

struct BundleSegmentEntry {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint32_t card_count = 0;
  Sha256Digest sha256{};  // of the segment's bytes: read_segment() checks it
};

// What verify_all() counted while decoding every segment (inspect's summary).
struct BundleTotals {
  std::uint64_t cards = 0;
  std::uint64_t sessions = 0;
  std::uint64_t apdus = 0;
  std::uint64_t apdu_bytes = 0;
};

// Incremental SHA-256 (OpenSSL) for digests over more bytes than one wants in memory:
// the footer's file digest, written and re-checked. peek() gives the digest of what was
// added so far and keeps going. (It belongs next to sha256() in sha256_digest.h; it lives
// here until that file can take it.)
class Sha256Stream {
 public:
  Sha256Stream();
  Sha256Stream(Sha256Stream&&) noexcept;
  Sha256Stream& operator=(Sha256Stream&&) noexcept;
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  ~Sha256Stream();

  Status update(std::span<const std::uint8_t> bytes);
  Result<Sha256Digest> peek() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The header bytes (magic included) and their parsing. kInvalidArgument from
// validate_bundle_header names the field; parse errors read "<where>: offset <n>: ...".
Status validate_bundle_header(const BundleHeader& header);
Bytes serialize_bundle_header(const BundleHeader& header);
Result<BundleHeader> parse_bundle_header(std::span<const std::uint8_t> bytes,
                                         const std::string& where);

// Card index entries BundleWriter keeps in memory before it spills them, sorted, to its
// unnamed run file (docs/formats/bundle.md#index). About 40 bytes each for short ids.
inline constexpr std::size_t kBundleIndexRunEntries = 65536;

struct BundleWriterOptions {
  // Entries per in-memory run, >= 1. Smaller values exist for tests (many runs from few
  // cards); the file written is the same for every value.
  std::size_t index_run_entries = kBundleIndexRunEntries;
  // The run file is opened with O_TMPFILE, or, where the file system refuses that, made
  // with mkstemp and unlinked at once. false takes the second way directly, so that tests
  // exercise it.
  bool run_file_o_tmpfile = true;
};

// Writes a bundle: header at create(), segments as they come, index, table and footer at
// finish(). Its memory does not grow with the card count: the card index is held in
// sorted runs of at most index_run_entries entries, spilled to an unnamed file beside the
// temporary file and merged into the bundle at finish().
class BundleWriter {
 public:
  static Result<BundleWriter> create(const std::string& final_path, BundleHeader header,
                                     BundleWriterOptions options);
  static Result<BundleWriter> create(const std::string& final_path, BundleHeader header) {
    return create(final_path, std::move(header), BundleWriterOptions{});
  }

  BundleWriter(BundleWriter&&) noexcept = default;
  BundleWriter& operator=(BundleWriter&&) noexcept = default;
  BundleWriter(const BundleWriter&) = delete;
  BundleWriter& operator=(const BundleWriter&) = delete;
  ~BundleWriter() = default;  // an unfinished file is abandoned

  // Segments must arrive in segment_number order 0, 1, 2, ...
  Status append(const BundleEncodedSegment& segment);

  // Writes the index and the footer (SHA-256 + CMAC under `integrity`), fsyncs, renames.
  // Returns the SHA-256 of the published file.
  // Refuses (kInvalidArgument, nothing published) a card id that two segments share.
  Result<Bytes> finish(MacKey& integrity);

  const BundleHeader& header() const { return header_; }
  std::uint64_t cards_written() const { return cards_; }
  std::uint32_t segments_written() const { return static_cast<std::uint32_t>(table_.size()); }
  const std::string& final_path() const { return file_.final_path(); }
  const std::string& temp_path() const { return file_.temp_path(); }
  // Sorted runs of the card index spilled to the run file so far (0: the index is still
  // all in memory, and finish() sorts and writes it in one piece).
  std::size_t index_runs_spilled() const { return runs_.size(); }

 private:
  // Owns the descriptor of the unnamed run file: closing it frees the file's blocks, so
  // nothing is left behind whether the writer finishes, is abandoned or the process dies.
  class RunFile {
   public:
    RunFile() = default;
    explicit RunFile(int fd) : fd_(fd) {}
    RunFile(RunFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    RunFile& operator=(RunFile&& other) noexcept;
    RunFile(const RunFile&) = delete;
    RunFile& operator=(const RunFile&) = delete;
    ~RunFile();

    int fd() const { return fd_; }

   private:
    int fd_ = -1;
  };
  struct SpilledRun {
    std::uint64_t offset = 0;  // in the run file
    std::uint64_t length = 0;  // bytes: entries serialized as in the index
  };
  using IndexSink = std::function<Status(std::string_view id, std::uint32_t segment)>;

  BundleWriter(AtomicFile file, BundleHeader header, Bytes header_bytes, Sha256Stream digest,
               BundleWriterOptions options)
      : file_(std::move(file)),
        header_(std::move(header)),
        header_bytes_(std::move(header_bytes)),
        digest_(std::move(digest)),
        options_(options) {}
  Error state_error(const std::string& what) const;
  Error run_file_error(const std::string& what, int err) const;  // kIo
  Status write(std::span<const std::uint8_t> bytes);  // file and digest; broken_ on error
  Status spill_run();  // index_ -> a sorted run in the run file; broken_ on error
  // Every spilled entry in index order, to `sink` (when set); kInvalidArgument at the first
  // card id equal to the one before it.
  Status merge_runs(const IndexSink& sink) const;
  Status check_integrity_kcv(MacKey& integrity) const;
  Result<Bytes> finish_in_memory(MacKey& integrity);
  Result<Bytes> finish_spilled(MacKey& integrity);
  // Footer, file digest, tag, trailer; then publishes.
  Result<Bytes> write_footer(std::uint64_t index_offset, std::uint64_t table_offset,
                             const Sha256Digest& structure, MacKey& integrity);

  AtomicFile file_;
  BundleHeader header_;
  Bytes header_bytes_;   // as written
  Sha256Stream digest_;  // of every byte written
  BundleWriterOptions options_;
  std::vector<BundleSegmentEntry> table_;
  // Card id -> segment, at most options_.index_run_entries of them; the rest are in runs_.
  std::vector<std::pair<std::string, std::uint32_t>> index_;
  // The index section's bytes after its length field (entry count and entries), counted as
  // cards arrive so that finish() can write the length before it streams the entries.
  std::uint64_t index_length_ = 4;
  RunFile run_file_;
  std::uint64_t run_file_size_ = 0;
  std::vector<SpilledRun> runs_;
  std::uint64_t cards_ = 0;
  bool broken_ = false;
  bool finished_ = false;
};

class BundleReader {
 public:
  // Reads header, index and footer; checks the footer CMAC (integrity) and structure.
  // Errors name the path and byte offset.
  static Result<BundleReader> open(const std::string& path, MacKey& integrity);

  BundleReader(BundleReader&&) noexcept;
  BundleReader& operator=(BundleReader&&) noexcept;
  BundleReader(const BundleReader&) = delete;
  BundleReader& operator=(const BundleReader&) = delete;
  ~BundleReader();

  const BundleHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  std::size_t segment_count() const { return table_.size(); }
  std::uint64_t card_count() const;
  const std::vector<BundleSegmentEntry>& segment_table() const { return table_; }

  // Decodes every segment (each checked against its SHA-256 and against the index), then
  // recomputes the SHA-256 of the whole file. Counts into `totals` when given.
  Status verify_all(BundleTotals* totals = nullptr);
  Result<std::vector<BundleCard>> read_segment(std::size_t i) const;
  Result<std::optional<BundleCard>> find_card(std::string_view card_id) const;

 private:
  BundleReader(int fd, std::string path, std::uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  Status load(MacKey& integrity);
  Result<Bytes> read_at(std::uint64_t offset, std::size_t length, std::string_view what) const;
  std::string segment_where(std::size_t i) const;

  int fd_ = -1;
  std::string path_;
  std::uint64_t size_ = 0;
  BundleHeader header_;
  std::vector<BundleSegmentEntry> table_;
  std::map<std::string, std::uint32_t, std::less<>> index_;
  Bytes footer_digest_;
};

// Decodes one stored segment (exposed for the fuzz target and tests). `file_offset` is
// where the segment starts in its file: messages give absolute offsets for the segment's
// own fields and offsets within the decompressed body for the cards. kParse for malformed
// bytes, kIntegrity for a segment carrying another number than `expected_number`.
Result<std::vector<BundleCard>> decode_bundle_segment(const BundleHeader& header,
                                                      std::span<const std::uint8_t> bytes,
                                                      std::uint32_t expected_number,
                                                      const std::string& where,
                                                      std::uint64_t file_offset = 0);

}  // namespace persoflow::formats
