// GHASH against the GCM specification's test case and against full AES-GCM tags
// computed independently by OpenSSL (tag = E(K, J0) xor GHASH_H(A, C)).
#include "engine/ghash.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::ByteVec;
using test::hex_bytes;

ByteVec aes_ecb(const ByteVec& key, const ByteVec& block) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  ByteVec out(32);
  int len = 0;
  EVP_EncryptInit_ex(ctx.get(), key.size() == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb(), nullptr, key.data(),
                     nullptr);
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  EVP_EncryptUpdate(ctx.get(), out.data(), &len, block.data(), static_cast<int>(block.size()));
  out.resize(16);
  return out;
}

// OpenSSL AES-GCM: returns ciphertext, tag in `tag`.
ByteVec gcm_encrypt(const ByteVec& key, const ByteVec& iv, const ByteVec& aad, const ByteVec& pt, ByteVec& tag) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  EVP_EncryptInit_ex(ctx.get(), key.size() == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm(), nullptr, key.data(),
                     iv.data());
  int len = 0;
  if (!aad.empty()) EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  ByteVec ct(pt.size() + 16);
  int total = 0;
  if (!pt.empty()) {
    EVP_EncryptUpdate(ctx.get(), ct.data(), &len, pt.data(), static_cast<int>(pt.size()));
    total = len;
  }
  EVP_EncryptFinal_ex(ctx.get(), ct.data() + total, &len);
  ct.resize(static_cast<std::size_t>(total + len));
  tag.resize(16);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, tag.data());
  return ct;
}

// Both ways of multiplying: the fastest the CPU allows (CLMUL on x86-64 with it) and
// the portable table.
constexpr Ghash::Method kMethods[] = {Ghash::Method::kFastest, Ghash::Method::kTable};

TEST(GhashTest, SpecificationTestCase2) {
  for (const Ghash::Method method : kMethods) {
  for (const auto& v : test::load_vectors("ghash.vec")) {
    const ByteVec h = hex_bytes(v.at("H"));
    EXPECT_EQ(aes_ecb(hex_bytes(v.at("Key")), ByteVec(16, 0)), h);  // H = E(K, 0)
    Ghash g(h, method);
    g.update_aad(hex_bytes(v.at("AAD")));
    g.update_ciphertext(hex_bytes(v.at("Ciphertext")));
    auto s = g.finish();
    EXPECT_EQ(ByteVec(s.begin(), s.end()), hex_bytes(v.at("Ghash")));
    const ByteVec ekj0 = hex_bytes(v.at("EkJ0"));
    ByteVec tag(16);
    for (int i = 0; i < 16; ++i) tag[i] = static_cast<std::uint8_t>(s[i] ^ ekj0[i]);
    EXPECT_EQ(tag, hex_bytes(v.at("Tag")));
  }
  }
}

TEST(GhashTest, MatchesOpenSslGcmTagsForManyLengthsAndChunkings) {
  for (std::size_t key_len : {16u, 32u}) {
    for (std::size_t aad_len : {0u, 1u, 15u, 16u, 17u, 40u}) {
      for (std::size_t pt_len : {0u, 1u, 15u, 16u, 31u, 32u, 33u, 1000u, 4099u}) {
        ByteVec key(key_len), iv(12), aad(aad_len), pt(pt_len), tag;
        RAND_bytes(key.data(), static_cast<int>(key.size()));
        RAND_bytes(iv.data(), 12);
        if (aad_len) RAND_bytes(aad.data(), static_cast<int>(aad.size()));
        if (pt_len) RAND_bytes(pt.data(), static_cast<int>(pt.size()));
        const ByteVec ct = gcm_encrypt(key, iv, aad, pt, tag);
        ByteVec j0 = iv;
        j0.insert(j0.end(), {0, 0, 0, 1});
        const ByteVec ekj0 = aes_ecb(key, j0);
        for (std::size_t chunk : {1u, 7u, 16u, 5000u}) {
          for (const Ghash::Method method : kMethods) {
          Ghash g(aes_ecb(key, ByteVec(16, 0)), method);
          for (std::size_t i = 0; i < aad.size(); i += chunk) {
            g.update_aad(std::span<const std::uint8_t>(aad).subspan(i, std::min(chunk, aad.size() - i)));
          }
          for (std::size_t i = 0; i < ct.size(); i += chunk) {
            g.update_ciphertext(std::span<const std::uint8_t>(ct).subspan(i, std::min(chunk, ct.size() - i)));
          }
          auto s = g.finish();
          ByteVec computed(16);
          for (int i = 0; i < 16; ++i) computed[i] = static_cast<std::uint8_t>(s[i] ^ ekj0[i]);
          ASSERT_EQ(computed, tag) << "key " << key_len << " aad " << aad_len << " pt " << pt_len << " chunk "
                                   << chunk << " table " << (method == Ghash::Method::kTable);
          }
        }
      }
    }
  }
}

TEST(GhashTest, ClmulAndTableAgreeOnRandomKeysAndData) {
  for (int round = 0; round < 200; ++round) {
    ByteVec h(16), data(static_cast<std::size_t>(round) * 37 % 2048);
    RAND_bytes(h.data(), 16);
    if (round % 50 == 0) h.assign(16, round == 0 ? 0x00 : 0xFF);  // edge keys
    if (!data.empty()) RAND_bytes(data.data(), static_cast<int>(data.size()));
    Ghash fast(h), table(h, Ghash::Method::kTable);
    const std::size_t split = data.size() / 3;
    fast.update_aad(std::span<const std::uint8_t>(data).first(split));
    table.update_aad(std::span<const std::uint8_t>(data).first(split));
    fast.update_ciphertext(std::span<const std::uint8_t>(data).subspan(split));
    table.update_ciphertext(std::span<const std::uint8_t>(data).subspan(split));
    ASSERT_EQ(fast.finish(), table.finish()) << round;
  }
}

TEST(GhashTest, AnyChangedByteChangesTheResult) {
  ByteVec h(16, 0x5A), ct(64, 0x33);
  Ghash a(h);
  a.update_ciphertext(ct);
  const auto base = a.finish();
  for (std::size_t i = 0; i < ct.size(); ++i) {
    ByteVec c2 = ct;
    c2[i] ^= 0x01;
    Ghash b(h);
    b.update_ciphertext(c2);
    EXPECT_NE(b.finish(), base) << i;
  }
  // Moving bytes from the AAD to the ciphertext changes the result (length block).
  Ghash c(h);
  c.update_aad(ByteVec(16, 0x33));
  c.update_ciphertext(ByteVec(48, 0x33));
  EXPECT_NE(c.finish(), base);
}

}  // namespace
}  // namespace persoflow
