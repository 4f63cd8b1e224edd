#include "tests/unit/formats/cms_test_support.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "tests/support/run_process.h"
#include "tests/support/temp_dir.h"

namespace persoflow::formats::cms_test {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherCtx new_ctx() { return CipherCtx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free); }

int isize(std::size_t n) { return static_cast<int>(n); }

const EVP_CIPHER* wrap_cipher(std::size_t kek_length) {
  switch (kek_length) {
    case 16:
      return EVP_aes_128_wrap();
    case 24:
      return EVP_aes_192_wrap();
    case 32:
      return EVP_aes_256_wrap();
    default:
      throw std::invalid_argument("no AES wrap for this KEK length");
  }
}

const EVP_CIPHER* cbc_cipher(std::size_t key_length) {
  switch (key_length) {
    case 16:
      return EVP_aes_128_cbc();
    case 24:
      return EVP_aes_192_cbc();
    case 32:
      return EVP_aes_256_cbc();
    default:
      throw std::invalid_argument("no AES-CBC for this key length");
  }
}

const EVP_CIPHER* gcm_cipher(std::size_t key_length) {
  switch (key_length) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      throw std::invalid_argument("no AES-GCM for this key length");
  }
}

// One-shot EVP cipher with padding `pad`; nullopt on failure.
std::optional<Bytes> evp(const EVP_CIPHER* cipher, bool encrypt, const Bytes& key, const Bytes& iv,
                         const Bytes& in, bool pad) {
  auto ctx = new_ctx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key.data(), iv.empty() ? nullptr : iv.data(),
                        encrypt ? 1 : 0) != 1) {
    return std::nullopt;
  }
  EVP_CIPHER_CTX_set_padding(ctx.get(), pad ? 1 : 0);
  Bytes out(in.size() + 64);
  int n1 = 0;
  int n2 = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &n1, in.data(), isize(in.size())) != 1) {
    return std::nullopt;
  }
  if (EVP_CipherFinal_ex(ctx.get(), out.data() + n1, &n2) != 1) return std::nullopt;
  out.resize(static_cast<std::size_t>(n1 + n2));
  return out;
}

}  // namespace

Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  if (n > 0 && RAND_bytes(b.data(), isize(n)) != 1) throw std::runtime_error("RAND_bytes");
  return b;
}

Bytes aes_wrap(const Bytes& kek, const Bytes& key) {
  auto out = evp(wrap_cipher(kek.size()), true, kek, {}, key, false);
  if (!out) throw std::runtime_error("AES wrap failed");
  return *out;
}

std::optional<Bytes> aes_unwrap(const Bytes& kek, const Bytes& wrapped) {
  return evp(wrap_cipher(kek.size()), false, kek, {}, wrapped, false);
}

Bytes cbc_encrypt(const Bytes& key, const Bytes& iv, const Bytes& plain) {
  auto out = evp(cbc_cipher(key.size()), true, key, iv, plain, true);
  if (!out) throw std::runtime_error("AES-CBC encrypt failed");
  return *out;
}

std::optional<Bytes> cbc_decrypt(const Bytes& key, const Bytes& iv, const Bytes& cipher) {
  return evp(cbc_cipher(key.size()), false, key, iv, cipher, true);
}

GcmOutput gcm_encrypt(const Bytes& key, const Bytes& nonce, const Bytes& aad, const Bytes& plain,
                      std::size_t tag_length) {
  auto ctx = new_ctx();
  GcmOutput out;
  out.ciphertext.resize(plain.size() + 16);
  out.tag.resize(tag_length);
  int n = 0;
  int n2 = 0;
  bool ok =
      EVP_EncryptInit_ex(ctx.get(), gcm_cipher(key.size()), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, isize(nonce.size()), nullptr) == 1 &&
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) == 1;
  if (ok && !aad.empty()) {
    int ignored = 0;
    ok = EVP_EncryptUpdate(ctx.get(), nullptr, &ignored, aad.data(), isize(aad.size())) == 1;
  }
  ok = ok &&
       EVP_EncryptUpdate(ctx.get(), out.ciphertext.data(), &n, plain.data(), isize(plain.size())) ==
           1 &&
       EVP_EncryptFinal_ex(ctx.get(), out.ciphertext.data() + n, &n2) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, isize(tag_length), out.tag.data()) == 1;
  if (!ok) throw std::runtime_error("AES-GCM encrypt failed");
  out.ciphertext.resize(static_cast<std::size_t>(n + n2));
  return out;
}

std::optional<Bytes> gcm_decrypt(const Bytes& key, const Bytes& nonce, const Bytes& aad,
                                 const Bytes& cipher, const Bytes& tag) {
  auto ctx = new_ctx();
  Bytes out(cipher.size() + 16);
  Bytes tag_copy = tag;
  int n = 0;
  int n2 = 0;
  bool ok =
      EVP_DecryptInit_ex(ctx.get(), gcm_cipher(key.size()), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, isize(nonce.size()), nullptr) == 1 &&
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) == 1;
  if (ok && !aad.empty()) {
    int ignored = 0;
    ok = EVP_DecryptUpdate(ctx.get(), nullptr, &ignored, aad.data(), isize(aad.size())) == 1;
  }
  ok = ok &&
       EVP_DecryptUpdate(ctx.get(), out.data(), &n, cipher.data(), isize(cipher.size())) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, isize(tag_copy.size()),
                           tag_copy.data()) == 1 &&
       EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &n2) == 1;
  if (!ok) return std::nullopt;
  out.resize(static_cast<std::size_t>(n + n2));
  return out;
}

Bytes load(const std::filesystem::path& path) {
  const std::string s = test::read_file(path);
  return Bytes(s.begin(), s.end());
}

void store(const std::filesystem::path& path, const Bytes& bytes) {
  test::write_file(path, std::string(bytes.begin(), bytes.end()));
}

bool openssl(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv{PERSOFLOW_OPENSSL_CLI};
  argv.insert(argv.end(), args.begin(), args.end());
  const test::ProcessResult r = test::run_process(argv);
  std::string joined;
  for (const auto& a : args) joined += " " + a;
  EXPECT_EQ(r.exit_code, 0) << "openssl" << joined << "\n" << r.err;
  if (out != nullptr) *out = r.out;
  return r.exit_code == 0;
}

std::vector<std::string> asn1parse(const std::filesystem::path& der) {
  std::string out;
  openssl({"asn1parse", "-inform", "DER", "-in", der.string()}, &out);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Result<Parsed> parse_all(ByteSource& source, std::size_t chunk) {
  PF_ASSIGN_OR_RETURN(CmsEnvelopeHeader h, read_cms_header(source));
  Parsed p;
  p.params = h;
  p.content_type = h.content_type;
  p.kek_date = h.kek_date;
  p.declared_length = h.content.declared_length();
  Bytes buf(chunk);
  while (true) {
    PF_ASSIGN_OR_RETURN(std::size_t n, h.content.read(buf));
    if (n == 0) break;
    if (n != chunk) {
      // Short reads happen only at the end: the next one must be 0.
      PF_ASSIGN_OR_RETURN(std::size_t again, h.content.read(buf));
      if (again != 0) return Error(ErrorCode::kInternal, "short read before the end");
      p.ciphertext.insert(p.ciphertext.end(), buf.begin(), buf.begin() + static_cast<long>(n));
      break;
    }
    p.ciphertext.insert(p.ciphertext.end(), buf.begin(), buf.end());
  }
  if (h.content.bytes_read() != p.ciphertext.size()) {
    return Error(ErrorCode::kInternal, "bytes_read() disagrees");
  }
  PF_ASSIGN_OR_RETURN(p.trailer, h.content.finish());
  return p;
}

Result<Parsed> parse_bytes(const Bytes& file, std::size_t chunk, std::size_t max_peek) {
  MemoryByteSource src(file, max_peek);
  return parse_all(src, chunk);
}

std::string parse_error(const Bytes& file) {
  auto r = parse_bytes(file);
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse) << r.error().message();
  return r.error().message();
}

std::optional<Bytes> decrypt(const Parsed& parsed, const Bytes& kek) {
  const CmsEnvelopeParams& p = parsed.params;
  if (kek.size() != kek_length(p.key_wrap)) return std::nullopt;
  auto cek = aes_unwrap(kek, p.encrypted_key);
  if (!cek || cek->size() != content_key_length(p.cipher)) return std::nullopt;
  if (is_gcm(p.cipher)) {
    return gcm_decrypt(*cek, p.iv, parsed.trailer.aad, parsed.ciphertext, parsed.trailer.mac);
  }
  return cbc_decrypt(*cek, p.iv, parsed.ciphertext);
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes der(std::uint8_t tag, const Bytes& value) {
  Bytes out{tag};
  const std::size_t n = value.size();
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    Bytes len;
    for (std::size_t v = n; v != 0; v >>= 8) len.insert(len.begin(), static_cast<std::uint8_t>(v));
    out.push_back(static_cast<std::uint8_t>(0x80 | len.size()));
    out.insert(out.end(), len.begin(), len.end());
  }
  out.insert(out.end(), value.begin(), value.end());
  return out;
}

Bytes indefinite(std::uint8_t tag, const Bytes& value) {
  Bytes out{tag, 0x80};
  out.insert(out.end(), value.begin(), value.end());
  out.push_back(0);
  out.push_back(0);
  return out;
}

Bytes oid(const std::string& dotted) {
  std::vector<std::uint64_t> arcs;
  std::istringstream in(dotted);
  for (std::string part; std::getline(in, part, '.');) arcs.push_back(std::stoull(part));
  Bytes value;
  auto put = [&value](std::uint64_t v) {
    Bytes b{static_cast<std::uint8_t>(v & 0x7F)};
    for (v >>= 7; v != 0; v >>= 7)
      b.insert(b.begin(), static_cast<std::uint8_t>(0x80 | (v & 0x7F)));
    value.insert(value.end(), b.begin(), b.end());
  };
  put(arcs.at(0) * 40 + arcs.at(1));
  for (std::size_t i = 2; i < arcs.size(); ++i) put(arcs[i]);
  return der(0x06, value);
}

Bytes integer(std::uint8_t value) { return Bytes{0x02, 0x01, value}; }

std::size_t find(const Bytes& haystack, const Bytes& needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end());
  EXPECT_NE(it, haystack.end()) << "pattern " << to_hex(needle) << " not found";
  return static_cast<std::size_t>(it - haystack.begin());
}

Bytes kek_recipient(const Bytes& kek_id, const std::string& wrap_oid, const Bytes& encrypted_key,
                    std::uint8_t version, const Bytes& extra_kekid, const Bytes& wrap_params) {
  return der(0xA2, cat({integer(version), der(0x30, cat({der(0x04, kek_id), extra_kekid})),
                        der(0x30, cat({oid(wrap_oid), wrap_params})), der(0x04, encrypted_key)}));
}

Bytes cbc_algorithm(const std::string& cipher_oid, const Bytes& iv) {
  return der(0x30, cat({oid(cipher_oid), der(0x04, iv)}));
}

Bytes gcm_algorithm(const std::string& cipher_oid, const Bytes& nonce,
                    std::optional<std::uint8_t> icv_length) {
  Bytes params = der(0x04, nonce);
  if (icv_length) params = cat({params, integer(*icv_length)});
  return der(0x30, cat({oid(cipher_oid), der(0x30, params)}));
}

Bytes build(const Shape& s) {
  auto wrap = [&s](std::uint8_t tag, const Bytes& value) {
    return s.indefinite ? indefinite(tag, value) : der(tag, value);
  };
  Bytes recipients;
  for (const auto& r : s.recipients) recipients = cat({recipients, r});
  const Bytes eci = wrap(0x30, cat({oid(s.content_type_oid), s.algorithm, s.content}));
  const Bytes body = wrap(
      0x30, cat({integer(s.version), s.originator_info, der(0x31, recipients), eci, s.trailer}));
  return wrap(0x30, cat({oid(s.type_oid), wrap(0xA0, body)}));
}

Bytes primitive_content(const Bytes& ciphertext) { return der(0x80, ciphertext); }

Bytes chunked_content(const Bytes& ciphertext, std::vector<std::size_t> sizes, bool indef,
                      std::size_t nest_every) {
  auto wrap = [indef](std::uint8_t tag, const Bytes& value) {
    return indef ? indefinite(tag, value) : der(tag, value);
  };
  std::vector<Bytes> chunks;
  std::size_t pos = 0;
  std::size_t i = 0;
  while (pos < ciphertext.size()) {
    const std::size_t n = std::min(sizes[std::min(i, sizes.size() - 1)], ciphertext.size() - pos);
    chunks.push_back(der(0x04, Bytes(ciphertext.begin() + static_cast<long>(pos),
                                     ciphertext.begin() + static_cast<long>(pos + n))));
    pos += n;
    ++i;
  }
  // Group every `nest_every` chunks into a constructed OCTET STRING (0x24), recursively once.
  Bytes inner;
  if (nest_every == 0) {
    for (const auto& c : chunks) inner = cat({inner, c});
  } else {
    for (std::size_t k = 0; k < chunks.size(); k += nest_every) {
      Bytes group;
      for (std::size_t j = k; j < std::min(k + nest_every, chunks.size()); ++j) {
        group = cat({group, chunks[j]});
      }
      inner = cat({inner, wrap(0x24, group)});
    }
  }
  return wrap(0xA0, inner);
}

Keys make_keys(std::size_t kek_length, std::size_t cek_length) {
  // Not printable, so that asn1parse shows the keyIdentifier as a HEX DUMP.
  return Keys{random_bytes(kek_length), Bytes{0x7E, 0x01, 0x49, 0x53, 0x53, 0x55, 0xE2, 0x00, 0x4B},
              random_bytes(cek_length)};
}

}  // namespace persoflow::formats::cms_test
