// The first stage of import: the issuer file's CMS envelope opened through the HSM
// and turned into numbered batches of records.
//
// The content-encryption key is unwrapped under the profile's transport key inside
// the HSM (a non-extractable session object) and the content decrypted by the HSM in
// 64 KiB single-part calls (hsm::StreamDecryptor): AES-CBC chained block to block;
// AES-GCM as AES-CTR whose tag is checked at the end as E(K, J0) xor GHASH
// (engine/ghash.h), because PKCS#11 GCM decryption would hold the whole file until its
// tag verified.
//
// HSM faults. The content key is a session object: it dies when the module loses its
// sessions (a device reset; the token logs in again, hsm/token.h). So the key's making in
// open() (the unwrap, and for GCM the two blocks made with the key, H and E(K, J0)) is
// retried as a whole on a transient CK_RV (hsm::rv_is_transient), at most kKeyAttempts
// times; and a chunk whose decryption fails transiently is decrypted again from its own
// starting IV or counter block with the key unwrapped again from the transport key
// (hsm::StreamDecryptor's Recovery: 3 attempts per chunk, 8 retries per file). GHASH and
// the record splitter see each byte once: GHASH the ciphertext as it is read, the splitter
// only plaintext of chunks that decrypted. The output is the undisturbed run's, byte for
// byte. A persistent error, or a bound reached, stops the import with the file, the
// content offset, the call and the transport key's URI in the message.
//
// Test-only: PERSOFLOW_TEST_DECRYPT_CHUNK=N (a multiple of 16, 16 to 65536) decrypts in
// N-byte calls instead of 64 KiB, so that small test files have several chunks
// (docs/fault-injection.md). Never set it in production.
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
  // Attempts at making the content key in open() (a transient error tried again).
  static constexpr int kKeyAttempts = 3;

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
  // HSM operations done again after a transient error: the content key's making in open()
  // and chunks decrypted again. Read it on the thread that calls next(), or after it.
  std::uint64_t hsm_retries() const { return key_retries_ + (decryptor_ ? decryptor_->retries() : 0); }

 private:
  EnvelopeSource() = default;
  Status pump();        // reads, decrypts and splits one chunk
  Status finish_stream();
  // The content key unwrapped under the transport key into cek_ (a new session object;
  // the previous one, if still alive, destroyed), and with `gcm_blocks` GHASH's H and the
  // tag mask made with it. One attempt; open() retries it.
  Status make_content_key(bool gcm_blocks);

  std::string path_;
  std::unique_ptr<formats::FdByteSource> source_;
  std::optional<formats::CmsEnvelopeHeader> header_;
  hsm::KeyStore* keys_ = nullptr;
  std::optional<hsm::KeyInfo> transport_key_;  // tracked: a new login gives it its new handle
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
  std::uint64_t key_retries_ = 0;  // open()'s
  std::atomic<std::uint64_t> consumed_{0};
  bool stream_done_ = false;
  EnvelopeSummary summary_;
};

}  // namespace persoflow::pipeline
