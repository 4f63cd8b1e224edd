#include "engine/key_types.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace persoflow {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::array<KeyType, 5> kAllTypes = {KeyType::kAes128, KeyType::kAes192,
                                              KeyType::kAes256, KeyType::kDes2, KeyType::kDes3};

struct TypeFacts {
  KeyType type;
  std::string_view name;
  KeyFamily family;
  std::size_t bytes;
  std::size_t bits;
};

constexpr TypeFacts kFacts[] = {
    {KeyType::kAes128, "aes128", KeyFamily::kAes, 16, 128},
    {KeyType::kAes192, "aes192", KeyFamily::kAes, 24, 192},
    {KeyType::kAes256, "aes256", KeyFamily::kAes, 32, 256},
    {KeyType::kDes2, "des2", KeyFamily::kDes, 16, 112},
    {KeyType::kDes3, "des3", KeyFamily::kDes, 24, 168},
};

// ---- Key types ---------------------------------------------------------------------------

TEST(KeyTypesTest, ParseAndNameRoundTripForAllTypes) {
  for (const TypeFacts& f : kFacts) {
    auto r = parse_key_type(f.name);
    ASSERT_TRUE(r.has_value()) << f.name << ": " << r.error().message();
    EXPECT_EQ(*r, f.type) << f.name;
    EXPECT_EQ(key_type_name(f.type), f.name);
  }
  for (KeyType t : kAllTypes) {
    auto r = parse_key_type(key_type_name(t));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(*r, t);
  }
}

TEST(KeyTypesTest, NamesAreDistinct) {
  for (std::size_t i = 0; i < kAllTypes.size(); ++i) {
    for (std::size_t j = i + 1; j < kAllTypes.size(); ++j) {
      EXPECT_NE(key_type_name(kAllTypes[i]), key_type_name(kAllTypes[j]));
    }
  }
}

TEST(KeyTypesTest, UnknownNamesAreRefusedWithTheNameAndTheChoices) {
  for (std::string_view name : {"", "aes", "AES128", "aes-128", "aes128 ", " des2", "des", "3des",
                                "des1", "aes512", "tdes", "aes1280"}) {
    auto r = parse_key_type(name);
    ASSERT_FALSE(r.has_value()) << "'" << name << "'";
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message(),
              "unknown key type '" + std::string(name) +
                  "' (expected aes128, aes192, aes256, des2 or des3)");
  }
}

TEST(KeyTypesTest, LengthsBitsAndFamilies) {
  for (const TypeFacts& f : kFacts) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(key_family(f.type), f.family);
    EXPECT_EQ(key_length_bytes(f.type), f.bytes);
    EXPECT_EQ(key_bits(f.type), f.bits);
  }
}

TEST(KeyTypesTest, AesBitsAreEightPerByteAndDesBitsExcludeParity) {
  for (KeyType t : kAllTypes) {
    if (key_family(t) == KeyFamily::kAes) {
      EXPECT_EQ(key_bits(t), key_length_bytes(t) * 8);
    } else {
      EXPECT_EQ(key_bits(t), key_length_bytes(t) * 7);
    }
  }
}

TEST(KeyTypesTest, KeyTypeForKnownLengths) {
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 16), KeyType::kAes128);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 24), KeyType::kAes192);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 32), KeyType::kAes256);
  EXPECT_EQ(key_type_for(KeyFamily::kDes, 16), KeyType::kDes2);
  EXPECT_EQ(key_type_for(KeyFamily::kDes, 24), KeyType::kDes3);
}

TEST(KeyTypesTest, KeyTypeForOtherLengthsIsEmpty) {
  EXPECT_EQ(key_type_for(KeyFamily::kDes, 8), std::nullopt);  // single DES is not offered
  EXPECT_EQ(key_type_for(KeyFamily::kDes, 32), std::nullopt);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 8), std::nullopt);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 0), std::nullopt);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 15), std::nullopt);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 17), std::nullopt);
  EXPECT_EQ(key_type_for(KeyFamily::kAes, 64), std::nullopt);
}

TEST(KeyTypesTest, KeyTypeForAgreesWithLengthAndFamilyForEveryLength) {
  for (KeyFamily family : {KeyFamily::kAes, KeyFamily::kDes}) {
    int found = 0;
    for (std::size_t len = 0; len <= 64; ++len) {
      const auto t = key_type_for(family, len);
      if (!t) continue;
      ++found;
      EXPECT_EQ(key_family(*t), family) << len;
      EXPECT_EQ(key_length_bytes(*t), len);
    }
    EXPECT_EQ(found, family == KeyFamily::kAes ? 3 : 2);
  }
  for (KeyType t : kAllTypes) {
    EXPECT_EQ(key_type_for(key_family(t), key_length_bytes(t)), t);
  }
}

// ---- KCV blocks (gp-reference.md §1.2) ------------------------------------------------------

TEST(KeyTypesTest, AesKcvBlockIsSixteenBytesOf01) {
  EXPECT_EQ(kcv_block(KeyFamily::kAes), Bytes(16, 0x01));
}

TEST(KeyTypesTest, DesKcvBlockIsEightBytesOf00) {
  EXPECT_EQ(kcv_block(KeyFamily::kDes), Bytes(8, 0x00));
}

TEST(KeyTypesTest, KcvIsThreeBytes) { EXPECT_EQ(kKcvLength, 3u); }

// ---- Key usage ----------------------------------------------------------------------------

TEST(KeyTypesTest, ParseKeyUsageEachNameSetsOnlyItsFlag) {
  const std::pair<std::string_view, bool KeyUsage::*> cases[] = {
      {"encrypt", &KeyUsage::encrypt}, {"decrypt", &KeyUsage::decrypt},
      {"sign", &KeyUsage::sign},       {"verify", &KeyUsage::verify},
      {"wrap", &KeyUsage::wrap},       {"unwrap", &KeyUsage::unwrap},
      {"derive", &KeyUsage::derive},
  };
  for (const auto& [name, flag] : cases) {
    auto r = parse_key_usage(name);
    ASSERT_TRUE(r.has_value()) << name << ": " << r.error().message();
    KeyUsage expected;
    expected.*flag = true;
    EXPECT_EQ(*r, expected) << name;
    EXPECT_TRUE(r->any());
    EXPECT_EQ(key_usage_list(*r), name);
  }
}

TEST(KeyTypesTest, ParseKeyUsageAllNames) {
  auto r = parse_key_usage("encrypt,decrypt,sign,verify,wrap,unwrap,derive");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  const KeyUsage all{true, true, true, true, true, true, true};
  EXPECT_EQ(*r, all);
}

TEST(KeyTypesTest, ParseKeyUsageTrimsSpacesAndSkipsEmptyItems) {
  auto r = parse_key_usage("  wrap , ,unwrap,,  derive  ,");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  KeyUsage expected;
  expected.wrap = true;
  expected.unwrap = true;
  expected.derive = true;
  EXPECT_EQ(*r, expected);
}

TEST(KeyTypesTest, ParseKeyUsageOfNothingIsNoUsage) {
  for (std::string_view list : {"", ",", " ", " , , "}) {
    auto r = parse_key_usage(list);
    ASSERT_TRUE(r.has_value()) << "'" << list << "': " << r.error().message();
    EXPECT_EQ(*r, KeyUsage{});
    EXPECT_FALSE(r->any());
  }
}

TEST(KeyTypesTest, ParseKeyUsageAcceptsRepeats) {
  auto r = parse_key_usage("sign,sign,verify");
  ASSERT_TRUE(r.has_value());
  KeyUsage expected;
  expected.sign = true;
  expected.verify = true;
  EXPECT_EQ(*r, expected);
}

TEST(KeyTypesTest, ParseKeyUsageRefusesUnknownItemsNamingTheTrimmedItem) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"encrypt,mac", "mac"},
      {"  Encrypt  ", "Encrypt"},
      {"wrap,unwrap,derive key", "derive key"},
      {"sign;verify", "sign;verify"},
      {"\tsign", "\tsign"},  // only spaces are trimmed
  };
  for (const auto& [list, item] : cases) {
    auto r = parse_key_usage(list);
    ASSERT_FALSE(r.has_value()) << list;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message(),
              "unknown key usage '" + std::string(item) +
                  "' (expected encrypt, decrypt, sign, verify, wrap, unwrap, derive)");
  }
}

TEST(KeyTypesTest, KeyUsageListIsInFixedOrder) {
  EXPECT_EQ(key_usage_list(KeyUsage{}), "");
  const KeyUsage all{true, true, true, true, true, true, true};
  EXPECT_EQ(key_usage_list(all), "encrypt,decrypt,sign,verify,wrap,unwrap,derive");
  auto r = parse_key_usage("derive,wrap,sign,encrypt");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(key_usage_list(*r), "encrypt,sign,wrap,derive");
  KeyUsage u;
  u.unwrap = true;
  u.decrypt = true;
  u.verify = true;
  EXPECT_EQ(key_usage_list(u), "decrypt,verify,unwrap");
}

TEST(KeyTypesTest, EveryUsageCombinationRoundTripsThroughItsList) {
  bool KeyUsage::*const flags[] = {&KeyUsage::encrypt, &KeyUsage::decrypt, &KeyUsage::sign,
                                   &KeyUsage::verify,  &KeyUsage::wrap,    &KeyUsage::unwrap,
                                   &KeyUsage::derive};
  for (unsigned mask = 0; mask < (1u << 7); ++mask) {
    KeyUsage u;
    for (unsigned bit = 0; bit < 7; ++bit) {
      if ((mask >> bit) & 1u) u.*flags[bit] = true;
    }
    EXPECT_EQ(u.any(), mask != 0);
    const std::string list = key_usage_list(u);
    auto back = parse_key_usage(list);
    ASSERT_TRUE(back.has_value()) << list;
    EXPECT_EQ(*back, u) << list;
    // One name per set flag.
    const std::size_t commas = static_cast<std::size_t>(std::count(list.begin(), list.end(), ','));
    EXPECT_EQ(list.empty() ? 0u : commas + 1, static_cast<std::size_t>(std::popcount(mask)));
  }
}

// ---- DES parity ----------------------------------------------------------------------------

std::uint8_t with_odd_parity(std::uint8_t b) {
  set_odd_parity(&b, 1);
  return b;
}

TEST(KeyTypesTest, SetOddParityOnKnownBytes) {
  EXPECT_EQ(with_odd_parity(0x40), 0x40);
  EXPECT_EQ(with_odd_parity(0x41), 0x40);
  EXPECT_EQ(with_odd_parity(0x00), 0x01);
  EXPECT_EQ(with_odd_parity(0x01), 0x01);
  EXPECT_EQ(with_odd_parity(0xFE), 0xFE);
  EXPECT_EQ(with_odd_parity(0xFF), 0xFE);
  EXPECT_EQ(with_odd_parity(0x02), 0x02);
  EXPECT_EQ(with_odd_parity(0x03), 0x02);
  EXPECT_EQ(with_odd_parity(0x06), 0x07);
  EXPECT_EQ(with_odd_parity(0x80), 0x80);
  EXPECT_EQ(with_odd_parity(0xC0), 0xC1);
}

TEST(KeyTypesTest, SetOddParityOnEveryByteValue) {
  for (int v = 0; v < 256; ++v) {
    const auto in = static_cast<std::uint8_t>(v);
    const std::uint8_t out = with_odd_parity(in);
    EXPECT_EQ(std::popcount(out) % 2, 1) << "byte " << v;
    EXPECT_EQ(out & 0xFE, in & 0xFE) << "byte " << v;  // only bit 0 may change
    if (std::popcount(in) % 2 == 1) {
      EXPECT_EQ(out, in) << "byte " << v;
    }
    EXPECT_EQ(with_odd_parity(out), out) << "byte " << v;  // idempotent
  }
}

TEST(KeyTypesTest, SetOddParityOnAKeyTouchesExactlySizeBytes) {
  // The well-known test key 0123456789ABCDEF has odd parity in every byte: it
  // must come back unchanged, and the guard bytes around it must not be touched.
  std::array<std::uint8_t, 10> buf = {0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x00};
  set_odd_parity(buf.data() + 1, 8);
  EXPECT_EQ(buf, (std::array<std::uint8_t, 10>{0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD,
                                               0xEF, 0x00}));
  Bytes key = {0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x00, 0xFF, 0x10, 0x11};
  set_odd_parity(key.data(), key.size() - 2);
  EXPECT_EQ(key, (Bytes{0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x01, 0xFE, 0x10, 0x11}));
}

TEST(KeyTypesTest, SetOddParityOfNothingIsANoOp) {
  std::uint8_t b = 0x00;
  set_odd_parity(&b, 0);
  EXPECT_EQ(b, 0x00);
  set_odd_parity(nullptr, 0);
}

}  // namespace
}  // namespace persoflow
