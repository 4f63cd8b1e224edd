#include "pipeline/envelope_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <openssl/evp.h>

#include "hsm/ck_rv.h"

namespace persoflow::pipeline {
namespace {

constexpr std::size_t kChunk = 64 * 1024;  // SoftHSM is fastest at <= 64 KiB per call

Result<std::pair<formats::Sha256Digest, struct stat>> hash_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open issuer file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  fstat(fd, &st);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<std::uint8_t> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Error(ErrorCode::kIo, "cannot read issuer file " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  formats::Sha256Digest d{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), d.data(), &len);
  return std::make_pair(d, st);
}

// The size of each decryption call: 64 KiB, or PERSOFLOW_TEST_DECRYPT_CHUNK (test-only,
// so that small files have several chunks for the fault tests).
Result<std::size_t> decrypt_chunk_size() {
  const char* v = std::getenv("PERSOFLOW_TEST_DECRYPT_CHUNK");
  if (v == nullptr || *v == '\0') return hsm::StreamDecryptor::kChunk;
  char* end = nullptr;
  const unsigned long n = std::strtoul(v, &end, 10);
  if (*end != '\0' || n == 0 || n % 16 != 0 || n > hsm::StreamDecryptor::kChunk) {
    return Error(ErrorCode::kInvalidArgument, std::string("PERSOFLOW_TEST_DECRYPT_CHUNK: '") + v +
                                                  "' is not a multiple of 16 from 16 to " +
                                                  std::to_string(hsm::StreamDecryptor::kChunk));
  }
  return static_cast<std::size_t>(n);
}

}  // namespace

EnvelopeSource::~EnvelopeSource() {
  // The decryptor's session must be released before the content key it uses.
  decryptor_.reset();
  cek_.reset();
}

Result<std::unique_ptr<EnvelopeSource>> EnvelopeSource::open(const std::string& path, const Profile& profile,
                                                             hsm::KeyStore& keys, std::size_t batch_records) {
  std::unique_ptr<EnvelopeSource> s(new EnvelopeSource());
  s->path_ = path;
  s->keys_ = &keys;
  s->batch_records_ = batch_records == 0 ? 1 : batch_records;
  PF_ASSIGN_OR_RETURN(auto hashed, hash_file(path));
  s->digest_ = hashed.first;
  s->identity_ = FileIdentity{static_cast<std::uint64_t>(hashed.second.st_dev),
                              static_cast<std::uint64_t>(hashed.second.st_ino),
                              static_cast<std::uint64_t>(hashed.second.st_size),
                              static_cast<std::int64_t>(hashed.second.st_mtim.tv_sec) * 1000000000LL +
                                  hashed.second.st_mtim.tv_nsec};
  s->summary_.envelope_bytes = s->identity_.size;

  PF_ASSIGN_OR_RETURN(auto src, formats::FdByteSource::open(path));
  s->source_ = std::make_unique<formats::FdByteSource>(std::move(src));
  auto header = formats::read_cms_header(*s->source_);
  if (!header) return std::move(header).error().add_context(path);
  s->header_.emplace(std::move(header).value());
  const formats::CmsEnvelopeHeader& h = *s->header_;
  s->summary_.kind = std::string(formats::to_string(h.kind));
  s->summary_.cipher = std::string(formats::to_string(h.cipher));
  s->summary_.kek_id = h.kek_id;

  const TransportKey* tk = profile.transport_key(h.kek_id);
  if (tk == nullptr) {
    return Error(ErrorCode::kNotFound, path + ": the envelope's key identifier (kekid) " + to_hex(h.kek_id) +
                                           " names no transport key of profile '" + profile.id + "'");
  }
  s->summary_.transport_key_uri = tk->uri;
  PF_ASSIGN_OR_RETURN(const std::size_t chunk, decrypt_chunk_size());
  const bool gcm = formats::is_gcm(h.cipher);
  if (gcm && h.iv.size() != 12) {
    return Error(ErrorCode::kUnsupported, path + ": AES-GCM nonce of " + std::to_string(h.iv.size()) +
                                              " bytes; only the standard 12-byte nonce is supported");
  }
  // The content key (and GCM's H and tag mask, which need it), tried again as a whole on a
  // transient error: a lost login takes the new session object with it.
  for (int attempt = 1;; ++attempt) {
    Status made = ok_status();
    bool finding = false;
    if (!s->transport_key_) {
      auto found = keys.find(tk->uri);
      if (found) {
        s->transport_key_.emplace(std::move(found).value());
      } else {
        made = std::move(found).error();
        finding = true;
      }
    }
    if (made) made = s->make_content_key(gcm);
    if (made) break;
    Error e = std::move(made).error();
    const auto rv = e.ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv)) {
      if (!finding) e.add_context(path);  // the key store names the key it cannot find
      return e;
    }
    if (attempt == kKeyAttempts) {
      return Error::hsm(*rv, e.function(),
                        path + ": " + e.message() + "; still failing after " + std::to_string(attempt) + " attempts",
                        e.code());
    }
    ++s->key_retries_;
  }

  // A chunk that fails transiently is decrypted again with the key made again (H and the
  // tag mask stay). The decryptor belongs to the source it points back to: the pointer
  // never outlives it, and the source is never moved (open() hands out a unique_ptr).
  hsm::StreamDecryptor::Recovery recovery;
  EnvelopeSource* self = s.get();
  recovery.renew_key = [self]() -> Result<const hsm::SessionKey*> {
    PF_TRY(self->make_content_key(false));
    return &*self->cek_;
  };
  recovery.key_description = "the content key unwrapped under '" + tk->uri + "'";
  Bytes iv = h.iv;
  if (gcm) {
    // The content starts at inc32(J0), J0 = nonce || 00000001.
    iv.insert(iv.end(), {0, 0, 0, 2});
  }
  PF_ASSIGN_OR_RETURN(s->decryptor_,
                      hsm::StreamDecryptor::start(keys.token(), *s->cek_,
                                                  gcm ? hsm::StreamDecryptor::Mode::kCtr
                                                      : hsm::StreamDecryptor::Mode::kCbcPad,
                                                  iv, std::move(recovery), chunk));
  PF_ASSIGN_OR_RETURN(auto splitter, formats::RecordSplitter::create(profile.records));
  s->splitter_.emplace(std::move(splitter));
  return s;
}

Status EnvelopeSource::make_content_key(bool gcm_blocks) {
  const formats::CmsEnvelopeHeader& h = *header_;
  auto key = hsm::unwrap_content_key(*keys_, *transport_key_, h.encrypted_key);
  if (!key) return std::move(key).error();
  // The old object goes first (destroyed if it still lives: a device error leaves it);
  // emplace then builds the new one at the same address, which the decryptor points at.
  cek_.reset();
  cek_.emplace(std::move(key).value());
  if (gcm_blocks) {
    // H = E(K, 0^128); the tag mask E(K, J0), J0 = nonce || 00000001. Host values, made
    // once: a later renewal of the key (the same key value) does not change them.
    PF_ASSIGN_OR_RETURN(SecureBytes hkey, hsm::encrypt_block(keys_->token(), *cek_, Bytes(16, 0)));
    Bytes j0 = h.iv;
    j0.insert(j0.end(), {0, 0, 0, 1});
    PF_ASSIGN_OR_RETURN(SecureBytes mask, hsm::encrypt_block(keys_->token(), *cek_, j0));
    ghash_.emplace(hkey.reveal());
    tag_mask_ = std::move(mask);
  }
  return ok_status();
}

Status EnvelopeSource::pump() {
  Bytes ct(kChunk);
  auto n = header_->content.read(ct);
  if (!n) return std::move(n).error().add_context(path_);
  if (*n == 0) return finish_stream();
  ct.resize(*n);
  consumed_.store(source_->offset(), std::memory_order_relaxed);
  if (ghash_) ghash_->update_ciphertext(ct);
  SecureBytes plain;
  auto s = decryptor_->update(ct, plain);
  if (!s) return std::move(s).error().add_context(path_);
  summary_.plaintext_bytes += plain.size();
  splitter_->feed(plain.reveal());
  return ok_status();
}

Status EnvelopeSource::finish_stream() {
  stream_done_ = true;
  const std::uint64_t content_end = source_->offset();
  auto trailer = header_->content.finish();
  if (!trailer) return std::move(trailer).error().add_context(path_);
  SecureBytes plain;
  auto fin = decryptor_->finish(plain);
  if (!fin) {
    return std::move(fin).error().add_context(path_ + ": content ending at byte " + std::to_string(content_end));
  }
  if (ghash_) {
    if (!trailer->aad.empty()) {
      // RFC 5083 puts authAttrs (the AAD) after the content; GHASH needs them first.
      return Error(ErrorCode::kUnsupported, path_ + ": AuthEnvelopedData with authAttrs is not supported");
    }
    const auto s = ghash_->finish();
    ghash_.reset();
    const auto mask = tag_mask_.reveal();
    Bytes tag(16);
    for (std::size_t i = 0; i < 16; ++i) tag[i] = static_cast<std::uint8_t>(s[i] ^ mask[i]);
    tag.resize(header_->gcm_tag_length);
    if (!constant_time_equal(tag, trailer->mac)) {
      return Error(ErrorCode::kIntegrity, path_ + ": byte " + std::to_string(content_end) +
                                              ": the AES-GCM authentication tag does not verify: the file "
                                              "was altered or damaged after encryption; nothing is published");
    }
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0 ||
      !(FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                     static_cast<std::uint64_t>(st.st_size),
                     static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec} ==
        identity_)) {
    return Error(ErrorCode::kIntegrity, path_ + ": the file changed while it was being imported");
  }
  summary_.plaintext_bytes += plain.size();
  splitter_->feed(plain.reveal());
  splitter_->finish();
  return ok_status();
}

Result<RecordBatch> EnvelopeSource::next() {
  RecordBatch batch;
  batch.seq = next_seq_++;
  batch.items.reserve(batch_records_);
  if (pending_) {
    batch.items.push_back(std::move(*pending_));
    pending_.reset();
  }
  while (batch.items.size() < batch_records_) {
    if (auto item = splitter_->next()) {
      batch.items.push_back(std::move(*item));
      continue;
    }
    if (stream_done_) break;
    PF_TRY(pump());
  }
  // Look one item ahead so that the last batch says so.
  while (!pending_) {
    if (auto item = splitter_->next()) {
      pending_ = std::move(*item);
    } else if (stream_done_) {
      break;
    } else {
      PF_TRY(pump());
    }
  }
  batch.last = stream_done_ && !pending_;
  return batch;
}

}  // namespace persoflow::pipeline
