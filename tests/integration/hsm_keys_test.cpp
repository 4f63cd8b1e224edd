// The HSM implementations of engine's key interfaces and the import's session-object
// helpers, each checked against OpenSSL computing the same thing from the same known
// key bytes, and against RFC 4493 vectors.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "hsm/hsm_keys.h"
#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow::test {
namespace {

using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;
CtxPtr new_ctx() { return CtxPtr(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free); }

ByteVec ossl_cipher(const EVP_CIPHER* cipher, const ByteVec& key, const ByteVec& iv, const ByteVec& in, bool pad,
                    bool encrypt = true) {
  auto ctx = new_ctx();
  EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key.data(), iv.empty() ? nullptr : iv.data(), encrypt ? 1 : 0);
  EVP_CIPHER_CTX_set_padding(ctx.get(), pad ? 1 : 0);
  ByteVec out(in.size() + 32);
  int len = 0, total = 0;
  EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size()));
  total = len;
  if (EVP_CipherFinal_ex(ctx.get(), out.data() + total, &len) != 1) return {};
  out.resize(static_cast<std::size_t>(total + len));
  return out;
}

ByteVec random_bytes(std::size_t n) {
  ByteVec v(n);
  if (n > 0) RAND_bytes(v.data(), static_cast<int>(n));
  return v;
}

class HsmKeysTest : public HsmTest {
 protected:
  hsm::KeyInfo make(const std::string& label, KeyType type, KeyUsage usage, const ByteVec& value) {
    auto k = keys_->create_from_value(hsm::KeySpec{label, type, usage, std::nullopt},
                                      SecureBytes(std::span<const std::uint8_t>(value)));
    EXPECT_TRUE(k.has_value()) << k.error().message();
    return *k;
  }
};

TEST_F(HsmKeysTest, AeadSealMatchesOpenSslGcmAndOpensBack) {
  const ByteVec key = hex_bytes("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  hsm::HsmAeadKey aead(*keys_, make("dkep", KeyType::kAes256, KeyUsage{.encrypt = true, .decrypt = true}, key));
  const ByteVec nonce = random_bytes(12), aad = random_bytes(21), pt = random_bytes(1000);
  auto sealed = aead.seal(nonce, aad, pt);
  ASSERT_TRUE(sealed.has_value()) << sealed.error().message();
  // OpenSSL with the same key bytes gives the same ciphertext and tag.
  auto ctx = new_ctx();
  EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data());
  int len = 0;
  EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  ByteVec ct(pt.size());
  EVP_EncryptUpdate(ctx.get(), ct.data(), &len, pt.data(), static_cast<int>(pt.size()));
  EVP_EncryptFinal_ex(ctx.get(), ct.data() + len, &len);
  ByteVec tag(16);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, tag.data());
  ct.insert(ct.end(), tag.begin(), tag.end());
  EXPECT_EQ(*sealed, ct);

  auto opened = aead.open(nonce, aad, *sealed);
  ASSERT_TRUE(opened.has_value()) << opened.error().message();
  EXPECT_EQ(ByteVec(opened->reveal().begin(), opened->reveal().end()), pt);

  for (std::size_t flip : {std::size_t{0}, sealed->size() / 2, sealed->size() - 1}) {
    ByteVec bad = *sealed;
    bad[flip] ^= 0x01;
    auto r = aead.open(nonce, aad, bad);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::kIntegrity) << r.error().message();
  }
  ByteVec other_aad = aad;
  other_aad[0] ^= 1;
  EXPECT_EQ(aead.open(nonce, other_aad, *sealed).error().code(), ErrorCode::kIntegrity);
}

TEST_F(HsmKeysTest, CmacMatchesRfc4493) {
  const auto vectors = load_vectors("cmac.vec");
  hsm::HsmMacKey mac(*keys_, make("cmac", KeyType::kAes128, KeyUsage{.sign = true, .verify = true},
                                  hex_bytes(vectors.front().at("Key"))));
  for (const auto& v : vectors) {
    SCOPED_TRACE("cmac.vec line " + std::to_string(v.line));
    auto tag = mac.mac(hex_bytes(v.at("Message")));
    ASSERT_TRUE(tag.has_value()) << tag.error().message();
    EXPECT_EQ(*tag, hex_bytes(v.at("Mac")));
    EXPECT_TRUE(mac.verify(hex_bytes(v.at("Message")), hex_bytes(v.at("Mac"))).has_value());
    ByteVec wrong = hex_bytes(v.at("Mac"));
    wrong[15] ^= 0x80;
    auto bad = mac.verify(hex_bytes(v.at("Message")), wrong);
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code(), ErrorCode::kIntegrity);
  }
}

TEST_F(HsmKeysTest, ContentKeyUnwrapsUnderTheRightTransportKeyOnly) {
  const ByteVec tk = random_bytes(32), cek = random_bytes(32);
  const hsm::KeyInfo tk_key = make("tk", KeyType::kAes256, KeyUsage{.unwrap = true}, tk);
  const hsm::KeyInfo other = make("tk-other", KeyType::kAes256, KeyUsage{.unwrap = true}, random_bytes(32));
  // RFC 3394 wrap by OpenSSL, as `openssl cms` does for KEKRecipientInfo.
  auto ctx = new_ctx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_wrap(), nullptr, tk.data(), nullptr);
  ByteVec wrapped(40);
  int len = 0;
  EVP_EncryptUpdate(ctx.get(), wrapped.data(), &len, cek.data(), static_cast<int>(cek.size()));
  wrapped.resize(static_cast<std::size_t>(len));

  auto session_key = hsm::unwrap_content_key(*keys_, tk_key, wrapped);
  ASSERT_TRUE(session_key.has_value()) << session_key.error().message();
  // The HSM's CEK encrypts the zero block as OpenSSL's copy does.
  auto h = hsm::encrypt_block(*token_, *session_key, ByteVec(16, 0));
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(ByteVec(h->reveal().begin(), h->reveal().end()),
            ossl_cipher(EVP_aes_256_ecb(), cek, {}, ByteVec(16, 0), false));

  auto wrong = hsm::unwrap_content_key(*keys_, other, wrapped);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kIntegrity) << wrong.error().message();
  EXPECT_NE(wrong.error().message().find("tk-other"), std::string::npos);
}

TEST_F(HsmKeysTest, CbcAndCtrStreamsDecryptLikeOpenSsl) {
  const ByteVec tk = random_bytes(16), cek = random_bytes(16);
  const hsm::KeyInfo tk_key = make("tk", KeyType::kAes128, KeyUsage{.unwrap = true}, tk);
  auto ctx = new_ctx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_wrap(), nullptr, tk.data(), nullptr);
  ByteVec wrapped(24);
  int len = 0;
  EVP_EncryptUpdate(ctx.get(), wrapped.data(), &len, cek.data(), 16);
  auto key = hsm::unwrap_content_key(*keys_, tk_key, wrapped);
  ASSERT_TRUE(key.has_value()) << key.error().message();

  const ByteVec pt = random_bytes(200003), iv = random_bytes(16);
  struct Case {
    hsm::StreamDecryptor::Mode mode;
    const EVP_CIPHER* cipher;
    bool pad;
  };
  for (const Case& c : {Case{hsm::StreamDecryptor::Mode::kCbcPad, EVP_aes_128_cbc(), true},
                        Case{hsm::StreamDecryptor::Mode::kCtr, EVP_aes_128_ctr(), false}}) {
    const ByteVec ct = ossl_cipher(c.cipher, cek, iv, pt, c.pad);
    for (std::size_t chunk : {std::size_t{1000}, std::size_t{65536}, std::size_t{7}}) {
      auto dec = hsm::StreamDecryptor::start(*token_, *key, c.mode, iv);
      ASSERT_TRUE(dec.has_value()) << dec.error().message();
      SecureBytes out;
      for (std::size_t i = 0; i < ct.size(); i += chunk) {
        ASSERT_TRUE((*dec)->update(std::span<const std::uint8_t>(ct).subspan(i, std::min(chunk, ct.size() - i)), out)
                        .has_value());
      }
      ASSERT_TRUE((*dec)->finish(out).has_value());
      EXPECT_EQ(ByteVec(out.reveal().begin(), out.reveal().end()), pt) << "chunk " << chunk;
    }
  }
  // A stream abandoned half-way does not poison the session pool.
  {
    auto dec = hsm::StreamDecryptor::start(*token_, *key, hsm::StreamDecryptor::Mode::kCbcPad, iv);
    ASSERT_TRUE(dec.has_value());
    SecureBytes out;
    ASSERT_TRUE((*dec)->update(ByteVec(32, 1), out).has_value());
  }
  auto h = hsm::encrypt_block(*token_, *key, ByteVec(16, 0));
  EXPECT_TRUE(h.has_value()) << h.error().message();
}

TEST_F(HsmKeysTest, FieldEncryptedSecretMovesKeyToKeyAndStaysTheSame) {
  const ByteVec field_key = random_bytes(16), dkep = random_bytes(32);
  const ByteVec secret = hex_bytes("241234FFFFFFFFFF");  // an ISO format 2 PIN block, 8 bytes
  const hsm::KeyInfo fk = make("pin-tk", KeyType::kAes128, KeyUsage{.unwrap = true}, field_key);
  const hsm::KeyInfo dk = make("dkep-secret", KeyType::kAes256, KeyUsage{.wrap = true, .unwrap = true}, dkep);
  auto wrap_pad = [](const ByteVec& kek, const ByteVec& value) {
    auto ctx = new_ctx();
    EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    EVP_EncryptInit_ex(ctx.get(), kek.size() == 16 ? EVP_aes_128_wrap_pad() : EVP_aes_256_wrap_pad(), nullptr,
                       kek.data(), nullptr);
    ByteVec out(value.size() + 16);
    int n = 0;
    EVP_EncryptUpdate(ctx.get(), out.data(), &n, value.data(), static_cast<int>(value.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
  };
  const ByteVec issuer_blob = wrap_pad(field_key, secret);
  auto moved = hsm::translate_wrapped_secret(*keys_, fk, dk, issuer_blob);
  ASSERT_TRUE(moved.has_value()) << moved.error().message();
  // Unwrapped by OpenSSL under the DKep's known bytes: the same secret.
  auto ctx = new_ctx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, dkep.data(), nullptr);
  ByteVec back(moved->size());
  int n = 0;
  ASSERT_EQ(EVP_DecryptUpdate(ctx.get(), back.data(), &n, moved->data(), static_cast<int>(moved->size())), 1);
  back.resize(static_cast<std::size_t>(n));
  EXPECT_EQ(back, secret);
  // RFC 5649 is deterministic: the same secret under the same DKep gives the same blob.
  EXPECT_EQ(*moved, wrap_pad(dkep, secret));

  ByteVec tampered = issuer_blob;
  tampered[3] ^= 0x10;
  auto bad = hsm::translate_wrapped_secret(*keys_, fk, dk, tampered);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kIntegrity);
  // No session object is left behind (only the two stored keys remain).
  auto all = keys_->list();
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->size(), 2u);
}

}  // namespace
}  // namespace persoflow::test
