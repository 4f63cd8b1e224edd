// Shared setup of the XOF tests: a SoftHSM token (HsmTest) holding three DKeps, an
// integrity key and two wrong keys, all created from fixed values so that files are
// byte-for-byte reproducible; a profile with three key classes, optional values and
// field-encrypted (wrapped) attributes; cards with distinctive values; helpers to write
// an XOF and to read one back completely.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/profile.h"
#include "formats/xof_reader.h"
#include "formats/xof_writer.h"
#include "hsm/hsm_keys.h"
#include "tests/integration/hsm_test_fixture.h"
#include "tests/support/temp_dir.h"

namespace persoflow::test {

using formats::XofCard;
using formats::XofHeader;
using formats::XofReader;
using formats::XofWriter;

inline Bytes file_bytes(const std::filesystem::path& path) {
  const std::string s = read_file(path);
  return Bytes(s.begin(), s.end());
}

inline void put_file(const std::filesystem::path& path, const Bytes& bytes) {
  write_file(path, std::string(bytes.begin(), bytes.end()));
}

inline std::optional<SecureBytes> text(const std::string& s) { return secret(s); }

inline bool contains(const Bytes& haystack, const std::string& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

class XofTest : public HsmTest {
 protected:
  // Attribute indexes in profile_ order.
  static constexpr std::size_t kCardId = 0, kName = 1, kPan = 2, kExpiry = 3, kPinBlock = 4,
                               kCvcKey = 5;

  void SetUp() override {
    HsmTest::SetUp();
    if (HasFatalFailure()) return;
    const KeyUsage dkep_usage{.encrypt = true, .decrypt = true, .wrap = true, .unwrap = true};
    ident_ = make_aead("dkep-ident", 0x00, dkep_usage);
    pan_ = make_aead("dkep-pan", 0x10, dkep_usage);
    secret_ = make_aead("dkep-secret", 0x20, dkep_usage);
    wrong_dkep_ = make_aead("dkep-wrong", 0x40, dkep_usage);
    integrity_ = make_mac("xof-integrity", 0x30);
    wrong_integrity_ = make_mac("xof-integrity-wrong", 0x50);
    class_keys_ = {ident_.get(), pan_.get(), secret_.get()};

    profile_.id = "acme-debit";
    profile_.version = "2.1";
    profile_.sha256 = Bytes(32, 0x5A);
    profile_.key_classes = {{"ident", "pkcs11:token=perso;object=dkep-ident"},
                            {"pan", "pkcs11:token=perso;object=dkep-pan"},
                            {"secret", "pkcs11:token=perso;object=dkep-secret"}};
    profile_.attributes = {attr("card_id", "ident"),
                           attr("name", "ident"),
                           attr("pan", "pan"),
                           attr("expiry", "pan"),
                           attr("pin_block", "secret", true),
                           attr("cvc_key", "pan", true)};
    profile_.card_id_attribute = "card_id";
    profile_.integrity_key_uri = "pkcs11:token=perso;object=xof-integrity";
    profile_.segment_cards = 3;
  }

  std::unique_ptr<hsm::HsmAeadKey> make_aead(const std::string& label, std::uint8_t first,
                                             KeyUsage usage) {
    auto key = keys_->create_from_value(hsm::KeySpec{label, KeyType::kAes128, usage, Bytes{first}},
                                        SecureBytes(key_value(first)));
    EXPECT_TRUE(key.has_value()) << key.error().message();
    return std::make_unique<hsm::HsmAeadKey>(*keys_, *key);
  }
  std::unique_ptr<hsm::HsmMacKey> make_mac(const std::string& label, std::uint8_t first) {
    auto key = keys_->create_from_value(
        hsm::KeySpec{label, KeyType::kAes128, KeyUsage{.sign = true, .verify = true}, Bytes{first}},
        SecureBytes(key_value(first)));
    EXPECT_TRUE(key.has_value()) << key.error().message();
    return std::make_unique<hsm::HsmMacKey>(*keys_, *key);
  }
  static Bytes key_value(std::uint8_t first) {
    Bytes v(16);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(first + i);
    return v;
  }
  static AttributeSpec attr(const std::string& name, const std::string& key_class,
                            bool wrapped = false) {
    AttributeSpec a;
    a.name = name;
    a.key_class = key_class;
    if (wrapped) {
      a.field_encryption = FieldEncryption::kAesKwp;
      a.field_key_uri = "pkcs11:token=perso;object=issuer-field-key";
    }
    return a;
  }

  // Card i: a name on even cards only, no PIN block on every third card, values no
  // compressor or cipher would produce by accident.
  static XofCard card(int i) {
    const std::string n = std::to_string(1000 + i);
    XofCard c;
    c.card_id = "CARD-" + n;
    c.values.resize(6);
    c.values[kCardId] = text(c.card_id);
    if (i % 2 == 0) c.values[kName] = text("ZQXNAME HOLDER " + n);
    c.values[kPan] = text("4999PANVALUE" + n);
    c.values[kExpiry] = text("EXPZ2812" + n);
    if (i % 3 != 1)
      c.values[kPinBlock] = SecureBytes(Bytes(24, static_cast<std::uint8_t>(0xB0 + i)));
    c.values[kCvcKey] = SecureBytes(Bytes(40, static_cast<std::uint8_t>(0x60 + i)));
    return c;
  }
  static std::vector<XofCard> cards(int n) {
    std::vector<XofCard> out;
    for (int i = 0; i < n; ++i) out.push_back(card(i));
    return out;
  }

  std::vector<Bytes> class_kcvs() {
    std::vector<Bytes> out;
    for (auto* k : class_keys_) {
      auto kcv = k->kcv();
      EXPECT_TRUE(kcv.has_value());
      out.push_back(kcv.has_value() ? *kcv : Bytes{});
    }
    return out;
  }

  Result<XofHeader> header(Bytes source = Bytes(32, 0xA5), int level = 3) {
    auto integrity_kcv = integrity_->kcv();
    if (!integrity_kcv) return integrity_kcv.error();
    return formats::make_xof_header(profile_, std::move(source), class_kcvs(), *integrity_kcv,
                                    level);
  }

  // Writes `all` in segments of profile_.segment_cards; 2 rejects.
  Status write_xof(const std::filesystem::path& path, const std::vector<XofCard>& all,
                   Bytes source = Bytes(32, 0xA5), int level = 3) {
    PF_ASSIGN_OR_RETURN(XofHeader h, header(std::move(source), level));
    PF_ASSIGN_OR_RETURN(XofWriter w, XofWriter::create(path.string(), h));
    const std::size_t per = profile_.segment_cards;
    for (std::size_t start = 0, n = 0; start < all.size(); start += per, ++n) {
      const std::size_t count = std::min(per, all.size() - start);
      PF_ASSIGN_OR_RETURN(
          auto seg, formats::encode_segment(h, static_cast<std::uint32_t>(n),
                                            std::span(all).subspan(start, count), class_keys_));
      PF_TRY(w.append(seg));
    }
    return w.finish(*integrity_, all.size(), 2);
  }

  // Everything a later run does: open, verify every segment, decrypt every segment.
  Result<std::vector<XofCard>> read_all(const std::filesystem::path& path) {
    PF_ASSIGN_OR_RETURN(XofReader r, XofReader::open(path.string(), *integrity_));
    PF_TRY(r.verify_all());
    std::vector<XofCard> out;
    for (std::size_t i = 0; i < r.segment_count(); ++i) {
      PF_ASSIGN_OR_RETURN(auto seg, r.read_segment(i));
      PF_ASSIGN_OR_RETURN(auto cards, r.decode_segment(seg, class_keys_));
      for (auto& c : cards) out.push_back(std::move(c));
    }
    return out;
  }

  static void expect_same_cards(const std::vector<XofCard>& got, const std::vector<XofCard>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].card_id, want[i].card_id);
      ASSERT_EQ(got[i].values.size(), want[i].values.size());
      for (std::size_t a = 0; a < want[i].values.size(); ++a) {
        ASSERT_EQ(got[i].values[a].has_value(), want[i].values[a].has_value())
            << "card " << i << " attr " << a;
        if (want[i].values[a]) {
          EXPECT_TRUE(got[i].values[a]->equals(*want[i].values[a]))
              << "card " << i << " attr " << a;
        }
      }
    }
  }

  TempDir dir_{"persoflow-xof"};
  Profile profile_;
  std::unique_ptr<hsm::HsmAeadKey> ident_, pan_, secret_, wrong_dkep_;
  std::unique_ptr<hsm::HsmMacKey> integrity_, wrong_integrity_;
  std::vector<AeadKey*> class_keys_;
};

}  // namespace persoflow::test
