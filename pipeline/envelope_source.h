// The first stage of import: the issuer file's CMS envelope opened through the HSM
// and turned into numbered batches of records.
//
// The content-encryption key is unwrapped under the profile's transport key inside
// the HSM (a non-extractable session object) and the content decrypted by the HSM in
// 64 KiB single-part calls (hsm::StreamDecryptor): AES-CBC chained block to block;
// AES-GCM as AES-CTR whose tag is checked at the end as E(K, J0) xor GHASH
// (engine/ghash.h), because PKCS#11 GCM decryption would hold the whole file until its
// tag verified.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/ghash.h"
#include "engine/profile.h"
#include "formats/byte_source.h"
#include "formats/cms_envelope.h"
#include "formats/record_splitter.h"
#include "formats/sha256_digest.h"
#include "hsm/hsm_keys.h"

namespace persoflow::pipeline {

struct RecordBatch {
  std::uint64_t seq = 0;  // 0, 1, 2, ... in stream order
  bool last = false;      // no batch follows
  std::vector<formats::SplitItem> items;
};

struct EnvelopeSummary {
  std::string kind;    // "EnvelopedData" / "AuthEnvelopedData"
  std::string cipher;  // "aes-256-cbc", ...
  Bytes kek_id;
  std::string transport_key_uri;
  std::uint64_t envelope_bytes = 0;
  std::uint64_t plaintext_bytes = 0;
};

class EnvelopeSource {
 public:
  // Hashes the file (the XOF header names its SHA-256), parses the envelope header,
  // selects the transport key by kekid and unwraps the content key in the HSM.
  static Result<std::unique_ptr<EnvelopeSource>> open(const std::string& path, const Profile& profile,
                                                      hsm::KeyStore& keys, std::size_t batch_records = 256);
  ~EnvelopeSource();

  // The next batch, or an error (the file, byte offset and reason). After the batch
  // marked `last`, the envelope has been read to its end, the decryption finished,
  // a GCM tag verified and the file checked to be the one that was hashed.
  Result<RecordBatch> next();

  const formats::Sha256Digest& source_sha256() const { return digest_; }
  const EnvelopeSummary& summary() const { return summary_; }
  // Bytes of the issuer file read so far (for progress; read from another thread).
  std::uint64_t bytes_consumed() const { return consumed_.load(std::memory_order_relaxed); }

 private:
  EnvelopeSource() = default;
  Status pump();        // reads, decrypts and splits one chunk
  Status finish_stream();

  std::string path_;
  std::unique_ptr<formats::FdByteSource> source_;
  std::optional<formats::CmsEnvelopeHeader> header_;
  hsm::KeyStore* keys_ = nullptr;
  std::optional<hsm::SessionKey> cek_;
  std::unique_ptr<hsm::StreamDecryptor> decryptor_;
  std::optional<Ghash> ghash_;
  SecureBytes tag_mask_;  // GCM: E(K, J0)
  std::optional<formats::RecordSplitter> splitter_;
  std::optional<formats::SplitItem> pending_;  // read ahead to know which batch is last
  formats::Sha256Digest digest_{};
  struct FileIdentity {
    std::uint64_t device = 0, inode = 0, size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
  };
  FileIdentity identity_;  // at hashing time; checked again at the end of the stream
  std::size_t batch_records_ = 256;
  std::uint64_t next_seq_ = 0;
  std::atomic<std::uint64_t> consumed_{0};
  bool stream_done_ = false;
  EnvelopeSummary summary_;
};

}  // namespace persoflow::pipeline
