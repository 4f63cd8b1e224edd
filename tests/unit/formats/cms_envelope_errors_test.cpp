// CMS envelopes that must be refused: truncated at every offset, single structural bytes
// changed, trailing data, other content types, recipient kinds and algorithms, broken limits.
// Every message is checked for its byte offset and its reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "formats/cms_envelope.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/formats/cms_test_support.h"

namespace persoflow::formats {
namespace {

using namespace cms_test;  // NOLINT(google-build-using-namespace)
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kAes256Wrap[] = "2.16.840.1.101.3.4.1.45";
constexpr char kAes256Cbc[] = "2.16.840.1.101.3.4.1.42";
constexpr char kAes128Gcm[] = "2.16.840.1.101.3.4.1.6";
constexpr char kAuthEnvelopedData[] = "1.2.840.113549.1.9.16.1.23";

Bytes fill(std::size_t n, std::uint8_t start) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(start + i);
  return b;
}

// Deterministic material, so that offsets and messages are fixed.
const Bytes kKek = fill(32, 0x01);
const Bytes kCek = fill(32, 0x40);
const Bytes kKekId = {0x0A, 0x0B, 0x0C};
const Bytes kIv = fill(16, 0x80);
const Bytes kPlain = fill(40, 0x20);

// The DER file the writer makes for aes-256-cbc, a 3-byte kek id and 48 bytes of content;
// the same layout as `openssl cms -encrypt -aes-256-cbc` (asn1parse offsets):
//     0 SEQUENCE  3 OID envelopedData  14 [0]  17 SEQUENCE  20 INTEGER 2  23 SET
//    25 [2]  27 INTEGER 4  30 SEQUENCE  32 OCTET STRING kek id  37 SEQUENCE  39 OID wrap
//    50 OCTET STRING encryptedKey (40)  92 SEQUENCE  94 OID data  105 SEQUENCE
//   107 OID aes-256-cbc  118 OCTET STRING IV  136 [0] content (48)  186 end
Bytes der_cbc_file() {
  CmsEnvelopeParams p;
  p.kind = CmsKind::kEnveloped;
  p.kek_id = kKekId;
  p.key_wrap = CmsKeyWrap::kAes256Wrap;
  p.encrypted_key = aes_wrap(kKek, kCek);
  p.cipher = CmsContentCipher::kAes256Cbc;
  p.iv = kIv;
  const Bytes ct = cbc_encrypt(kCek, kIv, kPlain);
  auto prefix = encode_cms_prefix(p, ct.size());
  if (!prefix) throw std::runtime_error(prefix.error().message());
  return cat({*prefix, ct});
}

Shape cbc_shape(bool indef) {
  Shape s;
  s.indefinite = indef;
  s.recipients = {kek_recipient(kKekId, kAes256Wrap, aes_wrap(kKek, kCek))};
  s.algorithm = cbc_algorithm(kAes256Cbc, kIv);
  s.content = chunked_content(cbc_encrypt(kCek, kIv, kPlain), {16, 32}, true);
  return s;
}

const Bytes kAttr =
    der(0x30, cat({oid("1.2.840.113549.1.9.3"), der(0x31, oid("1.2.840.113549.1.7.1"))}));

Shape gcm_shape(bool indef) {
  const Bytes nonce = fill(12, 0x90);
  const Bytes cek = fill(16, 0x40);
  const GcmOutput enc = gcm_encrypt(cek, nonce, der(0x31, kAttr), kPlain, 16);
  Shape s;
  s.type_oid = kAuthEnvelopedData;
  s.version = 0;
  s.indefinite = indef;
  s.recipients = {kek_recipient(kKekId, kAes256Wrap, aes_wrap(kKek, cek))};
  s.algorithm = gcm_algorithm(kAes128Gcm, nonce, 16);
  s.content =
      indef ? chunked_content(enc.ciphertext, {7}, true, 2) : primitive_content(enc.ciphertext);
  s.trailer = cat({der(0xA1, kAttr), der(0x04, enc.tag), der(0xA2, kAttr)});
  if (indef) s.originator_info = indefinite(0xA0, der(0xA1, Bytes{0x30, 0x00}));
  return s;
}

Bytes with_byte(Bytes file, std::size_t offset, std::uint8_t value) {
  file.at(offset) = value;
  return file;
}

TEST(CmsErrors, FixturesParseAndDecrypt) {
  const Bytes der_file = der_cbc_file();
  ASSERT_EQ(der_file.size(), 186u);
  for (const Bytes& file : {der_file, build(cbc_shape(false)), build(cbc_shape(true)),
                            build(gcm_shape(false)), build(gcm_shape(true))}) {
    auto parsed = parse_bytes(file);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(decrypt(*parsed, kKek), kPlain);
  }
}

// ---- truncation ----

std::vector<Bytes> small_openssl_files(test::TempDir& dir) {
  std::vector<Bytes> files;
  store(dir / "plain.bin", kPlain);
  for (const std::string cipher : {"aes-128-cbc", "aes-256-gcm"}) {
    for (bool stream : {false, true}) {
      std::vector<std::string> args{"cms",          "-encrypt",
                                    "-binary",      "-outform",
                                    "DER",          "-secretkey",
                                    to_hex(kKek),   "-secretkeyid",
                                    to_hex(kKekId), "-" + cipher,
                                    "-in",          (dir / "plain.bin").string(),
                                    "-out",         (dir / "env.der").string()};
      if (stream) args.push_back("-stream");
      if (!openssl(args)) return files;
      files.push_back(load(dir / "env.der"));
    }
  }
  return files;
}

TEST(CmsErrors, EveryPrefixIsTruncatedAtItsEnd) {
  test::TempDir dir("cms-test");
  std::vector<Bytes> files = small_openssl_files(dir);
  ASSERT_EQ(files.size(), 4u);
  for (const Bytes& f :
       {der_cbc_file(), build(cbc_shape(true)), build(gcm_shape(false)), build(gcm_shape(true))}) {
    files.push_back(f);
  }
  std::size_t checked = 0;
  for (const Bytes& file : files) {
    ASSERT_TRUE(parse_bytes(file).has_value());
    for (std::size_t len = 0; len < file.size(); ++len) {
      const Bytes prefix(file.begin(), file.begin() + static_cast<long>(len));
      for (std::size_t window : {MemoryByteSource::kUnlimited, std::size_t{16}}) {
        auto r = parse_bytes(prefix, 5, window);
        ASSERT_FALSE(r.has_value()) << "a prefix of " << len << " bytes parsed";
        EXPECT_EQ(r.error().code(), ErrorCode::kParse);
        EXPECT_THAT(r.error().message(),
                    StartsWith("CMS: byte " + std::to_string(len) + ": truncated: the file ends "))
            << "prefix of " << len << " of " << file.size();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 2000u);
}

TEST(CmsErrors, TruncatedFileThroughFdSource) {
  test::TempDir dir("cms-test");
  const Bytes file = build(cbc_shape(true));
  store(dir / "t.der", Bytes(file.begin(), file.end() - 3));
  auto src = FdByteSource::open((dir / "t.der").string(), FdByteSource::kMinBufferSize);
  ASSERT_TRUE(src.has_value());
  auto r = parse_all(*src);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(),
            "CMS: byte " + std::to_string(file.size() - 3) +
                ": truncated: the file ends inside the end-of-contents of [0] EXPLICIT content "
                "(started at byte 13)");
}

// ---- one byte changed in the DER file ----

struct Flip {
  std::size_t offset;
  std::uint8_t expect_before;
  std::uint8_t value;
  std::string message;  // the whole message after "CMS: "
};

TEST(CmsErrors, StructuralBytesChangedInDer) {
  const Bytes file = der_cbc_file();
  const std::vector<Flip> flips = {
      {0, 0x30, 0x31, "byte 0: expected ContentInfo SEQUENCE, found tag 0x31"},
      {2, 0xB7, 0xB6,
       "byte 14: length 169 of [0] EXPLICIT content (tag 0xA0) runs past the end of ContentInfo "
       "at byte 185"},
      {13, 0x03, 0x02,
       "byte 3: content type 1.2.840.113549.1.7.2 (signedData) is neither EnvelopedData "
       "(1.2.840.113549.1.7.3) nor AuthEnvelopedData (1.2.840.113549.1.9.16.1.23)"},
      {14, 0xA0, 0xA1, "byte 14: expected [0] EXPLICIT content, found tag 0xA1"},
      {17, 0x30, 0x31, "byte 17: expected EnvelopedData SEQUENCE, found tag 0x31"},
      {22, 0x02, 0x00,
       "byte 20: EnvelopedData version 0; with a KEK recipient it must be 2 (RFC 5652 §6.1)"},
      {22, 0x02, 0x80, "byte 20: EnvelopedData version is negative"},
      {23, 0x31, 0x30, "byte 23: expected recipientInfos SET, found tag 0x30"},
      {25, 0xA2, 0x30,
       "byte 25: RecipientInfo is a KeyTransRecipientInfo (SEQUENCE); only KEKRecipientInfo [2] "
       "is supported"},
      {25, 0xA2, 0xA1,
       "byte 25: RecipientInfo is a KeyAgreeRecipientInfo [1]; only KEKRecipientInfo [2] is "
       "supported"},
      {25, 0xA2, 0xA3,
       "byte 25: RecipientInfo is a PasswordRecipientInfo [3]; only KEKRecipientInfo [2] is "
       "supported"},
      {25, 0xA2, 0xA4,
       "byte 25: RecipientInfo is an OtherRecipientInfo [4]; only KEKRecipientInfo [2] is "
       "supported"},
      {26, 0x41, 0x42,
       "byte 25: length 66 of KEKRecipientInfo [2] (tag 0xA2) runs past the end of recipientInfos "
       "at byte 92"},
      {29, 0x04, 0x02, "byte 27: KEKRecipientInfo version 2; it must be 4 (RFC 5652 §6.2.3)"},
      {32, 0x04, 0x24, "byte 32: expected keyIdentifier OCTET STRING, found tag 0x24"},
      {33, 0x03, 0x04,
       "byte 32: length 4 of keyIdentifier OCTET STRING (tag 0x04) runs past the end of kekid at "
       "byte 37"},
      {33, 0x03, 0x00, "byte 32: keyIdentifier is empty"},
      {49, 0x2D, 0x2E,
       "byte 39: keyEncryptionAlgorithm 2.16.840.1.101.3.4.1.46 (aes-256-gcm) is not "
       "id-aes128-wrap, id-aes192-wrap or id-aes256-wrap"},
      {49, 0x2D, 0x30,
       "byte 39: keyEncryptionAlgorithm 2.16.840.1.101.3.4.1.48 (id-aes256-wrap-pad) is not "
       "id-aes128-wrap, id-aes192-wrap or id-aes256-wrap"},
      {117, 0x2A, 0x01,
       "byte 107: contentEncryptionAlgorithm 2.16.840.1.101.3.4.1.1 (aes-128-ecb) is not "
       "aes-128-cbc, aes-192-cbc or aes-256-cbc"},
      {117, 0x2A, 0x2E,
       "byte 107: aes-256-gcm content in EnvelopedData; AES-GCM belongs in AuthEnvelopedData "
       "(RFC 5084)"},
      {117, 0x2A, 0x02,
       "byte 50: encryptedKey of 40 bytes; an AES-wrapped aes-128-cbc content key is 24 bytes"},
      {119, 0x10, 0x0F, "byte 118: AES-CBC IV of 15 bytes is below the minimum of 16"},
      {119, 0x10, 0x11,
       "byte 118: length 17 of AES-CBC IV OCTET STRING (tag 0x04) runs past the end of "
       "contentEncryptionAlgorithm at byte 136"},
      {136, 0x80, 0x04, "byte 136: expected [0] IMPLICIT encryptedContent, found tag 0x04"},
      {136, 0x80, 0x81, "byte 136: expected [0] IMPLICIT encryptedContent, found tag 0x81"},
      {137, 0x30, 0x31,
       "byte 136: length 49 of [0] IMPLICIT encryptedContent (tag 0x80) runs past the end of "
       "EncryptedContentInfo at byte 186"},
      {137, 0x30, 0x2F,
       "byte 136: encryptedContent of 47 bytes is not a positive multiple of 16 (AES-CBC)"},
      {93, 0x5C, 0x5B,
       "byte 136: length 48 of [0] IMPLICIT encryptedContent (tag 0x80) runs past the end of "
       "EncryptedContentInfo at byte 185"},
      {2, 0xB7, 0xB8,
       "byte 186: truncated: the file ends where the next element or the end of ContentInfo "
       "should be (inside ContentInfo, started at byte 0)"},
      {137, 0x30, 0x80,
       "byte 136: indefinite length on primitive tag 0x80 where [0] IMPLICIT encryptedContent was "
       "expected"},
      {137, 0x30, 0xFF, "byte 137: reserved length byte 0xFF in [0] IMPLICIT encryptedContent"},
      {137, 0x30, 0x89,
       "byte 137: length of [0] IMPLICIT encryptedContent takes 9 bytes (at most 8 are accepted)"},
  };
  for (const Flip& f : flips) {
    ASSERT_EQ(file.at(f.offset), f.expect_before) << "the fixture's layout changed at " << f.offset;
    EXPECT_EQ(parse_error(with_byte(file, f.offset, f.value)), "CMS: " + f.message)
        << "byte " << f.offset << " set to " << int{f.value};
  }
  // Content shortened to 32 bytes: 16 bytes of ciphertext are left inside EncryptedContentInfo.
  EXPECT_THAT(parse_error(with_byte(file, 137, 0x20)),
              StartsWith("CMS: byte 170: expected the end of EncryptedContentInfo, found tag 0x"));
}

TEST(CmsErrors, TrailingGarbage) {
  for (const Bytes& file : {der_cbc_file(), build(cbc_shape(true)), build(gcm_shape(true))}) {
    for (const Bytes& extra :
         {Bytes{0x00}, Bytes{0x00, 0x00}, Bytes{0x30, 0x00}, Bytes{0x1F}, Bytes(5000, 0xFF)}) {
      EXPECT_EQ(parse_error(cat({file, extra})),
                "CMS: byte " + std::to_string(file.size()) +
                    ": trailing data after the end of ContentInfo");
    }
  }
}

// ---- recipients ----

TEST(CmsErrors, KeyTransRecipientFromOpenssl) {
  test::TempDir dir("cms-test");
  store(dir / "plain.bin", kPlain);
  ASSERT_TRUE(openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t", "-keyout",
                       (dir / "k.pem").string(), "-out", (dir / "cert.pem").string()}));
  ASSERT_TRUE(openssl({"cms", "-encrypt", "-binary", "-outform", "DER", "-aes-256-cbc", "-in",
                       (dir / "plain.bin").string(), "-out", (dir / "env.der").string(), "-recip",
                       (dir / "cert.pem").string()}));
  // The RecipientInfo is the element after the SET at depth 3, per asn1parse.
  const auto lines = asn1parse(dir / "env.der");
  std::size_t offset = 0;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    if (lines[i].find("d=3") != std::string::npos && lines[i].find("SET") != std::string::npos) {
      offset = std::stoul(lines[i + 1]);
      break;
    }
  }
  ASSERT_GT(offset, 0u);
  EXPECT_EQ(parse_error(load(dir / "env.der")),
            "CMS: byte " + std::to_string(offset) +
                ": RecipientInfo is a KeyTransRecipientInfo (SEQUENCE); only KEKRecipientInfo [2] "
                "is supported");
}

TEST(CmsErrors, TwoKekRecipientsOrNone) {
  // openssl cms refuses -secretkey twice ("Invalid key (supplied twice)"), so by hand.
  for (bool indef : {false, true}) {
    Shape s = cbc_shape(indef);
    const Bytes second = kek_recipient(Bytes{0x0D, 0x0E}, kAes256Wrap, aes_wrap(kKek, kCek));
    s.recipients.push_back(second);
    const Bytes file = build(s);
    EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, second)) +
                                     ": a second RecipientInfo; exactly one KEKRecipientInfo is "
                                     "supported");
    s.recipients.clear();
    const Bytes none = build(s);
    EXPECT_EQ(parse_error(none), "CMS: byte " + std::to_string(find(none, Bytes{0x31, 0x00}) + 2) +
                                     ": expected KEKRecipientInfo [2], but recipientInfos ends "
                                     "here");
  }
}

TEST(CmsErrors, KekRecipientDetails) {
  Shape s = cbc_shape(false);
  auto with_recipient = [&s](const Bytes& r) {
    Shape t = s;
    t.recipients = {r};
    return build(t);
  };
  const Bytes ek = aes_wrap(kKek, kCek);
  Bytes file = with_recipient(kek_recipient(Bytes(65, 7), kAes256Wrap, ek));
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x04, 0x41, 7})) +
                                   ": keyIdentifier of 65 bytes exceeds the limit of 64");
  file = with_recipient(kek_recipient(kKekId, kAes256Wrap, Bytes(72, 9)));
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x04, 0x48, 9})) +
                                   ": encryptedKey of 72 bytes exceeds the limit of 64");
  file = with_recipient(kek_recipient(kKekId, kAes256Wrap, ek, 4, {}, der(0x04, Bytes{1})));
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x04, 0x01, 0x01})) +
                                   ": parameters of id-aes256-wrap must be absent (RFC 3565), "
                                   "found tag 0x04");
  file = with_recipient(kek_recipient(kKekId, kAes256Wrap, ek, 4, der(0x18, Bytes{'2', '0', 'x'})));
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x18, 0x03})) +
                                   ": kekid date is not a GeneralizedTime");
  file = with_recipient(kek_recipient(kKekId, kAes256Wrap, ek, 4, der(0x04, Bytes{1})));
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x04, 0x01, 0x01})) +
                                   ": expected the end of kekid, found tag 0x04");
}

// ---- versions, algorithms, parameters ----

TEST(CmsErrors, Versions) {
  Shape s = cbc_shape(true);
  s.version = 3;
  Bytes file = build(s);
  EXPECT_EQ(parse_error(file),
            "CMS: byte " + std::to_string(find(file, integer(3))) +
                ": EnvelopedData version 3; with a KEK recipient it must be 2 (RFC 5652 §6.1)");
  s.originator_info = der(0xA0, Bytes{});  // 3 and 4 are allowed with originatorInfo
  EXPECT_EQ(parse_error(build(s)), "<no error>");
  s = gcm_shape(false);
  s.version = 2;
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, integer(2))) +
                                   ": AuthEnvelopedData version 2; it must be 0 (RFC 5083 §2.1)");
  file = build(gcm_shape(false));
  const std::size_t version_at = find(file, integer(0));
  file[version_at] = 0x04;
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(version_at) +
                                   ": expected AuthEnvelopedData version INTEGER, found tag 0x04");
  s = cbc_shape(true);
  file = build(s);
  const std::size_t v = find(file, Bytes{0x02, 0x01, 0x02});
  file =
      cat({Bytes(file.begin(), file.begin() + static_cast<long>(v)), Bytes{0x02, 0x02, 0x00, 0x02},
           Bytes(file.begin() + static_cast<long>(v) + 3, file.end())});
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(v) +
                                   ": EnvelopedData version INTEGER is not minimally encoded");
}

TEST(CmsErrors, ContentTypesAndAlgorithms) {
  Shape s = cbc_shape(false);
  s.type_oid = "1.2.840.113549.1.7.1";
  Bytes file = build(s);
  EXPECT_EQ(parse_error(file),
            "CMS: byte " + std::to_string(find(file, oid(s.type_oid))) +
                ": content type 1.2.840.113549.1.7.1 (data) is neither EnvelopedData "
                "(1.2.840.113549.1.7.3) nor AuthEnvelopedData (1.2.840.113549.1.9.16.1.23)");
  s.type_oid = "1.2.3";
  file = build(s);
  const std::size_t type_at = find(file, oid("1.2.3"));
  file[type_at + 3] = 0x86;  // the last subidentifier now announces a byte that is not there
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(type_at) +
                                   ": contentType is not a well-formed OBJECT IDENTIFIER");

  s = cbc_shape(false);
  std::string long_oid = "1.2";
  for (int i = 0; i < 32; ++i) long_oid += ".5";
  s.type_oid = long_oid;
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, oid(long_oid))) +
                                   ": contentType of 33 bytes exceeds the limit of 32");

  s = cbc_shape(true);
  s.algorithm = cbc_algorithm("1.2.3.4", kIv);
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, oid("1.2.3.4"))) +
                                   ": contentEncryptionAlgorithm 1.2.3.4 is not aes-128-cbc, "
                                   "aes-192-cbc or aes-256-cbc");
  s = gcm_shape(true);
  s.algorithm = cbc_algorithm(kAes256Cbc, kIv);
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, oid(kAes256Cbc))) +
                                   ": aes-256-cbc content in AuthEnvelopedData; AuthEnvelopedData "
                                   "needs AES-GCM (RFC 5083)");
  s.algorithm = gcm_algorithm("1.2.3.4", fill(12, 0), 16);
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, oid("1.2.3.4"))) +
                                   ": contentEncryptionAlgorithm 1.2.3.4 is not aes-128-gcm, "
                                   "aes-192-gcm or aes-256-gcm");
  s.algorithm = gcm_algorithm(kAes128Gcm, fill(12, 0), 17);
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x02, 0x01, 17})) +
                                   ": aes-ICVlen 17; RFC 5084 allows 12 to 16");
  s.algorithm = gcm_algorithm(kAes128Gcm, Bytes(65, 1), 16);
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x04, 0x41, 1})) +
                                   ": aes-nonce of 65 bytes exceeds the limit of 64");
  s.algorithm = der(0x30, cat({oid(kAes128Gcm), der(0x04, fill(12, 0))}));
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, der(0x04, fill(12, 0)))) +
                                   ": expected GCMParameters SEQUENCE, found tag 0x04");
}

TEST(CmsErrors, ContentEncodings) {
  Shape s = cbc_shape(true);
  const Bytes ct = cbc_encrypt(kCek, kIv, kPlain);
  s.content = {};
  Bytes file = build(s);
  EXPECT_EQ(parse_error(file),
            "CMS: byte " + std::to_string(find(file, s.algorithm) + s.algorithm.size()) +
                ": encryptedContent is absent (detached content is not supported)");
  s.content = indefinite(0xA0, cat({der(0x04, Bytes(ct.begin(), ct.begin() + 16)),
                                    der(0x05, Bytes(ct.begin() + 16, ct.end()))}));
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, s.content) + 2 + 18) +
                                   ": expected OCTET STRING chunk of encryptedContent, found tag "
                                   "0x05");
  s.content = der(0xA0, cat({der(0x04, Bytes(ct.begin(), ct.begin() + 16)),
                             indefinite(0x24, der(0x04, Bytes(ct.begin() + 16, ct.end())))}));
  EXPECT_EQ(parse_error(build(s)), "<no error>");  // nesting and mixing are BER
  s.content = indefinite(0xA0, der(0x04, Bytes(ct.begin(), ct.begin() + 17)));
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, s.content)) +
                                   ": encryptedContent of 17 bytes is not a positive multiple of "
                                   "16 (AES-CBC)");
  s.content = indefinite(0xA0, {});
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, s.content)) +
                                   ": encryptedContent of 0 bytes is not a positive multiple of "
                                   "16 (AES-CBC)");
  // A definite chunk longer than its definite [0].
  s.content = cat({Bytes{0xA0, 0x12}, der(0x04, ct)});
  file = build(s);
  const std::size_t content_at = find(file, s.content);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(content_at + 2) +
                                   ": length 48 of OCTET STRING chunk of encryptedContent (tag "
                                   "0x04) runs past the end of encryptedContent at byte " +
                                   std::to_string(content_at + 2 + 0x12));
}

TEST(CmsErrors, AuthEnvelopedTrailer) {
  Shape s = gcm_shape(false);
  const Bytes tag = fill(16, 0x55);
  auto message = [&s](const Bytes& trailer) {
    Shape t = s;
    t.trailer = trailer;
    const Bytes file = build(t);
    return std::make_pair(parse_error(file), file);
  };
  auto [m1, f1] = message(cat({indefinite(0xA1, kAttr), der(0x04, tag)}));
  EXPECT_EQ(m1, "CMS: byte " + std::to_string(find(f1, Bytes{0xA1, 0x80})) +
                    ": authAttrs must be DER (RFC 5083 §2.1); found an indefinite length");
  auto [m2, f2] = message(
      cat({Bytes{0xA1, 0x81, static_cast<std::uint8_t>(kAttr.size())}, kAttr, der(0x04, tag)}));
  EXPECT_EQ(m2, "CMS: byte " + std::to_string(find(f2, Bytes{0xA1, 0x81})) +
                    ": authAttrs must be DER (RFC 5083 §2.1); its length is not in minimal form");
  auto [m3, f3] = message(cat({der(0xA1, cat({kAttr, der(0x04, Bytes{1})})), der(0x04, tag)}));
  EXPECT_EQ(m3, "CMS: byte " +
                    std::to_string(find(f3, cat({kAttr, Bytes{0x04, 0x01}})) + kAttr.size()) +
                    ": expected Attribute SEQUENCE, found tag 0x04");
  auto [m4, f4] =
      message(cat({der(0xA1, indefinite(0x30, Bytes{0x06, 0x01, 0x01})), der(0x04, tag)}));
  EXPECT_EQ(m4, "CMS: byte " + std::to_string(find(f4, Bytes{0xA1, 0x07, 0x30, 0x80}) + 2) +
                    ": indefinite length in Attribute SEQUENCE, which must be DER");
  auto [m5, f5] = message(der(0x04, fill(12, 0x55)));
  EXPECT_EQ(m5, "CMS: byte " + std::to_string(find(f5, Bytes{0x04, 0x0C, 0x55})) +
                    ": mac of 12 bytes; aes-ICVlen says 16");
  auto [m6, f6] = message(der(0xA2, kAttr));
  EXPECT_EQ(m6, "CMS: byte " +
                    std::to_string(find(f6, Bytes{0xA2, static_cast<std::uint8_t>(kAttr.size())})) +
                    ": expected mac OCTET STRING, found tag 0xA2");
  auto [m7, f7] = message({});
  EXPECT_THAT(m7, HasSubstr(": expected mac OCTET STRING, but AuthEnvelopedData ends here"));
  auto [m8, f8] = message(cat({der(0x04, tag), der(0xA3, {})}));
  EXPECT_EQ(m8, "CMS: byte " + std::to_string(f8.size() - 2) +
                    ": expected the end of AuthEnvelopedData, found tag 0xA3");
  auto [m9, f9] = message(cat({der(0xA1, {}), der(0x04, tag)}));
  EXPECT_EQ(m9,
            "CMS: byte " + std::to_string(find(f9, Bytes{0xA1, 0x00})) + ": authAttrs is empty");
}

// ---- limits of the BER layer ----

TEST(CmsErrors, NestingDepthAndTagAndLengthForms) {
  Shape s = cbc_shape(true);
  Bytes deep = Bytes{0x30, 0x00};
  for (int i = 0; i < 40; ++i) deep = indefinite(0x30, deep);
  s.originator_info = indefinite(0xA0, deep);
  Bytes file = build(s);
  EXPECT_THAT(parse_error(file), HasSubstr("nesting deeper than 32 levels"));
  EXPECT_THAT(parse_error(file), StartsWith("CMS: byte "));

  s = cbc_shape(true);
  s.originator_info = indefinite(0xA0, Bytes{0x1F, 0x81, 0x82, 0x83, 0x04, 0x00});
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, Bytes{0x1F, 0x81})) +
                                   ": tag longer than 4 bytes where an element of originatorInfo "
                                   "was expected");
  s.originator_info = indefinite(0xA0, Bytes{0x1F, 0x81, 0x02, 0x00});  // 3-byte tag: fine
  EXPECT_EQ(parse_error(build(s)), "<no error>");
  s.originator_info = indefinite(0xA0, Bytes{0x04, 0x80});
  file = build(s);
  EXPECT_EQ(parse_error(file), "CMS: byte " + std::to_string(find(file, s.originator_info) + 2) +
                                   ": indefinite length on primitive tag 0x04 where an element "
                                   "of originatorInfo was expected");
}

// ---- robustness: random damage never crashes and never escapes as a non-kParse error ----

TEST(CmsErrors, RandomDamageGivesParseErrorsOnly) {
  std::mt19937 rng(20240601);
  const std::vector<Bytes> bases = {der_cbc_file(), build(cbc_shape(true)), build(gcm_shape(false)),
                                    build(gcm_shape(true))};
  int successes = 0;
  for (int i = 0; i < 4000; ++i) {
    Bytes file = bases[static_cast<std::size_t>(i) % bases.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !file.empty(); ++e) {
      const std::size_t at = rng() % file.size();
      switch (rng() % 4) {
        case 0:
          file[at] = static_cast<std::uint8_t>(rng());
          break;
        case 1:
          file[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          file.insert(file.begin() + static_cast<long>(at), static_cast<std::uint8_t>(rng()));
          break;
        default:
          file.erase(file.begin() + static_cast<long>(at));
          break;
      }
    }
    auto r = parse_bytes(file, 1 + rng() % 64, rng() % 2 ? 16 : MemoryByteSource::kUnlimited);
    if (r.has_value()) {
      ++successes;  // a change inside a value (ciphertext, IV, key) keeps the structure valid
      continue;
    }
    ASSERT_EQ(r.error().code(), ErrorCode::kParse) << r.error().message();
    ASSERT_THAT(r.error().message(), StartsWith("CMS: byte "));
  }
  EXPECT_GT(successes, 0);
  EXPECT_LT(successes, 4000);
}

}  // namespace
}  // namespace persoflow::formats
