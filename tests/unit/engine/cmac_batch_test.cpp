// AES-CMAC through an ECB oracle (engine/cmac_batch.h), the computation prep's `host`
// key-handling mode has the HSM run for many cards at once: the one-block identity
// CMAC(K, M) = AES(K, M xor K1) against the KDF3 vectors (gp-reference.md §7.7.1,
// tests/vectors/diversification.vec), and the layered batch against the RFC 4493 / SP
// 800-38B vectors and engine's own aes_cmac for every message length up to five blocks.
#include "engine/cmac_batch.h"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/vector_file.h"

namespace persoflow {
namespace {

using test::ByteVec;
using test::hex_bytes;

ByteVec bytes_of(const SecureBytes& s) { return ByteVec(s.reveal().begin(), s.reveal().end()); }

// The subkeys as the HSM path makes them: L = AES-ECB(K, 0^128) through engine code.
CmacSubkeys subkeys_of(const SecureBytes& key) {
  const std::array<std::uint8_t, 16> zero{};
  auto l = aes_ecb_encrypt(key, zero);
  EXPECT_TRUE(l.has_value()) << l.error().message();
  auto s = cmac_subkeys_from_l(*l);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  return std::move(*s);
}

// An ECB oracle over a host key that counts its calls.
struct CountingOracle {
  explicit CountingOracle(const SecureBytes& k) : key(k) {}
  EcbOracle oracle() {
    return [this](std::span<const std::uint8_t> in, std::span<std::uint8_t> out) -> Status {
      ++calls;
      blocks += in.size() / 16;
      PF_ASSIGN_OR_RETURN(Bytes enc, aes_ecb_encrypt(key, in));
      if (enc.size() != out.size()) return Error(ErrorCode::kInternal, "size");
      std::copy(enc.begin(), enc.end(), out.begin());
      return ok_status();
    };
  }
  const SecureBytes& key;
  int calls = 0;
  std::size_t blocks = 0;
};

TEST(CmacBatchTest, SubkeysOfRfc4493) {
  // RFC 4493 §4, "Subkey Generation": K = 2B7E1516..., L = AES-128(K, 0^128).
  const SecureBytes key(hex_bytes("2B7E151628AED2A6ABF7158809CF4F3C"));
  const std::array<std::uint8_t, 16> zero{};
  auto l = aes_ecb_encrypt(key, zero);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(to_hex(*l), "7DF76B0C1AB899B33E42F047B91B546F");
  auto s = cmac_subkeys_from_l(*l);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(test::hex_upper(bytes_of(s->k1)), "FBEED618357133667C85E08F7236A8DE");
  EXPECT_EQ(test::hex_upper(bytes_of(s->k2)), "F7DDAC306AE266CCF90BC11EE46D513B");
  EXPECT_FALSE(cmac_subkeys_from_l(ByteVec(15, 0)).has_value());
}

// The identity the host mode relies on for kdf3: the CMAC input is exactly one block, so
// one ECB encryption of M xor K1 under the master gives each 16-byte part of a card key.
TEST(CmacBatchTest, OneBlockIdentityGivesEveryKdf3Vector) {
  int n = 0;
  for (const auto& v : test::load_vectors("diversification.vec")) {
    if (v.section != "kdf3") continue;
    SCOPED_TRACE("diversification.vec line " + std::to_string(v.line));
    const SecureBytes master(hex_bytes(v.at("Master")));
    const ByteVec kdd = hex_bytes(v.at("KDD"));
    const std::uint8_t t = hex_bytes(v.at("Type")).at(0);
    const ByteVec want = hex_bytes(v.at("Key"));
    const CmacSubkeys subkeys = subkeys_of(master);
    ByteVec got;
    for (std::uint8_t counter = 1; got.size() < want.size(); ++counter) {
      ByteVec m = {counter, 0x00, 0x00, 0x00, t, 0x00};
      m.insert(m.end(), kdd.begin(), kdd.end());
      ASSERT_EQ(m.size(), 16u);
      if (counter == 1 && v.has("Input")) {
        EXPECT_EQ(test::hex_upper(m), v.at("Input"));
      }
      auto x = one_block_cmac_input(m, subkeys);
      ASSERT_TRUE(x.has_value()) << x.error().message();
      auto block = aes_ecb_encrypt(master, x->reveal());
      ASSERT_TRUE(block.has_value()) << block.error().message();
      // The same block as a CMAC through OpenSSL's CMAC.
      auto cmac = aes_cmac(master, m);
      ASSERT_TRUE(cmac.has_value());
      EXPECT_EQ(to_hex(*block), to_hex(*cmac));
      got.insert(got.end(), block->begin(), block->end());
    }
    got.resize(want.size());
    EXPECT_EQ(test::hex_upper(got), v.at("Key"));
    ++n;
  }
  EXPECT_EQ(n, 10);
  const CmacSubkeys s = subkeys_of(SecureBytes(hex_bytes("404142434445464748494A4B4C4D4E4F")));
  EXPECT_FALSE(one_block_cmac_input(ByteVec(17, 0), s).has_value());
}

// The kdf3 keys of three cards in ONE oracle call.
TEST(CmacBatchTest, Kdf3KeysOfABatchInOneCall) {
  const SecureBytes master(hex_bytes("404142434445464748494A4B4C4D4E4F"));
  const CmacSubkeys subkeys = subkeys_of(master);
  CountingOracle ecb(master);
  std::vector<ByteVec> inputs;
  for (const char* kdd : {"00010203040506070809", "D9B1DE5D0362DEDCE4FB", "00004181116665F5B830"}) {
    for (std::uint8_t t = 1; t <= 3; ++t) {
      ByteVec m = {0x01, 0x00, 0x00, 0x00, t, 0x00};
      const ByteVec k = hex_bytes(kdd);
      m.insert(m.end(), k.begin(), k.end());
      inputs.push_back(m);
    }
  }
  std::vector<std::span<const std::uint8_t>> messages(inputs.begin(), inputs.end());
  auto macs = cmac_batch(ecb.oracle(), subkeys, messages);
  ASSERT_TRUE(macs.has_value()) << macs.error().message();
  EXPECT_EQ(ecb.calls, 1);
  EXPECT_EQ(ecb.blocks, 9u);
  ASSERT_EQ(macs->size(), 9u);
  // The first card is the GPP vector's (diversification.vec, [kdf3], AES-128).
  EXPECT_EQ(test::hex_upper(bytes_of((*macs)[0])), "808BC985A1069AD2A9AC94E0FE7B8843");
  EXPECT_EQ(test::hex_upper(bytes_of((*macs)[1])), "65942E0BF4F3F32AEFACBA5671456275");
  EXPECT_EQ(test::hex_upper(bytes_of((*macs)[2])), "6A74F6F6040CCA10D8A3FDC7914FD7CC");
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    auto want = aes_cmac(master, inputs[i]);
    ASSERT_TRUE(want.has_value());
    EXPECT_EQ(test::hex_upper(bytes_of((*macs)[i])), to_hex(*want)) << i;
  }
}

TEST(CmacBatchTest, PublishedVectorsOfEveryKeyLengthInOneBatch) {
  for (const char* file : {"cmac.vec", "aes_cmac.vec"}) {
    std::map<std::string, std::vector<test::VectorRecord>> by_key;
    for (const auto& v : test::load_vectors(file)) by_key[v.at("Key")].push_back(v);
    for (const auto& [k, records] : by_key) {
      SCOPED_TRACE(std::string(file) + " key " + k);
      const SecureBytes key(hex_bytes(k));
      CountingOracle ecb(key);
      std::vector<ByteVec> inputs;
      for (const auto& r : records) inputs.push_back(hex_bytes(r.at("Message")));
      std::vector<std::span<const std::uint8_t>> messages(inputs.begin(), inputs.end());
      auto macs = cmac_batch(ecb.oracle(), subkeys_of(key), messages);
      ASSERT_TRUE(macs.has_value()) << macs.error().message();
      // 0, 16, 40 and 64 bytes: four block positions, one call each.
      EXPECT_EQ(ecb.calls, 4);
      EXPECT_EQ(cmac_batch_layers(messages), 4u);
      for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(test::hex_upper(bytes_of((*macs)[i])), records[i].at("Mac")) << "line " << records[i].line;
      }
    }
  }
}

// Every length from the empty message to five blocks, mixed in one batch, against the
// one-message CMAC: whole and partial last blocks (K1 / K2), messages that end before
// the longest, in any order.
TEST(CmacBatchTest, MixedLengthsEqualOneByOneCmac) {
  const SecureBytes key(hex_bytes("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"));
  std::vector<ByteVec> inputs;
  for (std::size_t len = 0; len <= 80; ++len) {
    ByteVec m(len);
    for (std::size_t i = 0; i < len; ++i) m[i] = static_cast<std::uint8_t>(len * 31 + i * 7);
    inputs.push_back(m);
  }
  std::swap(inputs[3], inputs[77]);
  std::vector<std::span<const std::uint8_t>> messages(inputs.begin(), inputs.end());
  CountingOracle ecb(key);
  auto macs = cmac_batch(ecb.oracle(), subkeys_of(key), messages);
  ASSERT_TRUE(macs.has_value()) << macs.error().message();
  EXPECT_EQ(ecb.calls, 5);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    auto want = aes_cmac(key, inputs[i]);
    ASSERT_TRUE(want.has_value());
    EXPECT_EQ(test::hex_upper(bytes_of((*macs)[i])), to_hex(*want)) << "length " << inputs[i].size();
  }
  // Swapped subkeys (K2 where K1 belongs) give other tags: the test would see it.
  CmacSubkeys wrong = subkeys_of(key);
  std::swap(wrong.k1, wrong.k2);
  auto bad = cmac_batch(ecb.oracle(), wrong, messages);
  ASSERT_TRUE(bad.has_value());
  EXPECT_NE(test::hex_upper(bytes_of((*bad)[16])), test::hex_upper(bytes_of((*macs)[16])));
}

TEST(CmacBatchTest, OracleErrorsComeBack) {
  const SecureBytes key(hex_bytes("2B7E151628AED2A6ABF7158809CF4F3C"));
  const EcbOracle failing = [](std::span<const std::uint8_t>, std::span<std::uint8_t>) -> Status {
    return Error(ErrorCode::kHsm, "module gone");
  };
  const ByteVec m(16, 1);
  const std::span<const std::uint8_t> one[] = {m};
  auto r = cmac_batch(failing, subkeys_of(key), one);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kHsm);
  auto empty = cmac_batch(failing, subkeys_of(key), {});
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace persoflow
