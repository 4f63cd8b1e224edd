#include "engine/pkcs11_uri.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace persoflow {
namespace {

using Bytes = std::vector<std::uint8_t>;

}  // namespace

// Failure messages show the canonical form instead of the object's raw bytes.
void PrintTo(const Pkcs11Uri& uri, std::ostream* os) { *os << uri.to_string(); }

namespace {

// The message of a kParse error, or a marker that makes the comparison fail.
std::string parse_error(const Result<Pkcs11Uri>& r) {
  if (r.has_value()) return "<no error>";
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  return r.error().message();
}

// Parses text that must be valid.
Pkcs11Uri parsed(std::string_view text) {
  auto r = Pkcs11Uri::parse(text);
  EXPECT_TRUE(r.has_value()) << text << ": " << r.error().message();
  return r.has_value() ? *r : Pkcs11Uri{};
}

// The whole expected message for `text` failing with `reason` at `offset`.
std::string expected_message(std::string_view text, std::string_view reason, std::size_t offset) {
  return "PKCS#11 URI '" + std::string(text) + "': " + std::string(reason) + " at offset " +
         std::to_string(offset);
}

// parse(to_string(uri)) must give uri back, and the canonical form must be stable.
void expect_round_trip(const Pkcs11Uri& uri) {
  const std::string text = uri.to_string();
  auto back = Pkcs11Uri::parse(text);
  ASSERT_TRUE(back.has_value()) << text << ": " << back.error().message();
  EXPECT_EQ(*back, uri) << text;
  EXPECT_EQ(back->to_string(), text);
}

std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

// ---- RFC 7512 section 3.3 examples -------------------------------------------------

TEST(Pkcs11UriTest, RfcEmptyUriMatchesEverything) {
  const Pkcs11Uri u = parsed("pkcs11:");
  EXPECT_EQ(u, Pkcs11Uri{});
  EXPECT_FALSE(u.names_one_object());
  EXPECT_EQ(u.to_string(), "pkcs11:");
}

TEST(Pkcs11UriTest, RfcObjectAndType) {
  const Pkcs11Uri u = parsed("pkcs11:object=my-pubkey;type=public");
  EXPECT_EQ(u.object, "my-pubkey");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kPublic);
  EXPECT_FALSE(u.token.has_value());
  EXPECT_FALSE(u.id.has_value());
  EXPECT_EQ(u.to_string(), "pkcs11:object=my-pubkey;type=public");
}

TEST(Pkcs11UriTest, RfcPinSourceIsAcceptedAndNotKept) {
  const Pkcs11Uri u = parsed("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
  EXPECT_EQ(u.object, "my-key");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kPrivate);
  EXPECT_FALSE(u.module_path.has_value());
  EXPECT_EQ(u.to_string(), "pkcs11:object=my-key;type=private");
}

TEST(Pkcs11UriTest, RfcFullCertificateExample) {
  const std::string_view text =
      "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
      "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial="
      "?pin-source=file:/etc/token_pin";
  const Pkcs11Uri u = parsed(text);
  EXPECT_EQ(u.token, "The Software PKCS#11 Softtoken");
  EXPECT_EQ(u.manufacturer, "Snake Oil, Inc.");
  EXPECT_EQ(u.model, "1.0");
  EXPECT_EQ(u.object, "my-certificate");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kCert);
  EXPECT_EQ(u.id, (Bytes{0x69, 0x95, 0x3E, 0x5C, 0xF4, 0xBD, 0xEC, 0x91}));
  ASSERT_TRUE(u.serial.has_value());  // "serial=" is present with an empty value
  EXPECT_EQ(*u.serial, "");
  EXPECT_FALSE(u.module_path.has_value());
  EXPECT_TRUE(u.names_one_object());
  EXPECT_EQ(u.to_string(),
            "pkcs11:manufacturer=Snake%20Oil,%20Inc.;model=1.0;serial=;"
            "token=The%20Software%20PKCS%2311%20Softtoken;object=my-certificate;"
            "id=%69%95%3E%5C%F4%BD%EC%91;type=cert");
  expect_round_trip(u);
}

TEST(Pkcs11UriTest, RfcModuleNameIsAcceptedAndNotKept) {
  const Pkcs11Uri u = parsed("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
  EXPECT_EQ(u.object, "my-sign-key");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kPrivate);
  EXPECT_FALSE(u.module_path.has_value());
}

TEST(Pkcs11UriTest, RfcModulePathIsKept) {
  const std::string_view text =
      "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1";
  const Pkcs11Uri u = parsed(text);
  EXPECT_EQ(u.object, "my-sign-key");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kPrivate);
  EXPECT_EQ(u.module_path, "/mnt/libmypkcs11.so.1");
  // Already canonical: '/' stays plain in the query.
  EXPECT_EQ(u.to_string(), text);
}

TEST(Pkcs11UriTest, RfcPinValueExampleIsRefusedWithoutQuotingThePin) {
  const std::string_view text =
      "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc."
      "?pin-value=the-pin";
  auto r = Pkcs11Uri::parse(text);
  const std::string msg = parse_error(r);
  EXPECT_NE(msg.find("pin-value is refused"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("the-pin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pin-value=<redacted>"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at offset 79"), std::string::npos) << msg;
}

TEST(Pkcs11UriTest, RfcSlotAndLibraryAttributesAreAcceptedAndIgnored) {
  EXPECT_EQ(parsed("pkcs11:slot-description=Sun%20Metaslot"), Pkcs11Uri{});
  EXPECT_EQ(parsed("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;"
                   "library-description=Soft%20Token%20Library;library-version=1.23"),
            Pkcs11Uri{});
  EXPECT_EQ(parsed("pkcs11:slot-manufacturer=Acme;slot-id=7"), Pkcs11Uri{});
}

TEST(Pkcs11UriTest, RfcEscapedPercentAndMixedCaseHexInId) {
  const Pkcs11Uri u =
      parsed("pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;"
             "id=%01%02%03%Ba%dd%Ef%0F");
  EXPECT_EQ(u.token, "My token% created by Joe");
  EXPECT_EQ(u.id, (Bytes{0x01, 0x02, 0x03, 0xBA, 0xDD, 0xEF, 0x0F}));
  // Canonical form: upper-case hex, library-version dropped.
  EXPECT_EQ(u.to_string(), "pkcs11:token=My%20token%25%20created%20by%20Joe;id=%01%02%03%BA%DD%EF%0F");
}

TEST(Pkcs11UriTest, RfcEscapedSemicolonInToken) {
  const Pkcs11Uri u = parsed(
      "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert");
  EXPECT_EQ(u.token, "A name with a substring %;");
  EXPECT_EQ(u.object, "my-certificate");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kCert);
  expect_round_trip(u);
}

TEST(Pkcs11UriTest, RfcUtf8InToken) {
  const Pkcs11Uri u = parsed(
      "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;"
      "type=cert");
  EXPECT_EQ(u.token, "Name with a small A with acute: \xC3\xA1");
  EXPECT_EQ(u.to_string(),
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;"
            "object=my-certificate;type=cert");
}

TEST(Pkcs11UriTest, RfcVendorAttributesWithoutXPrefixAreRefused) {
  // RFC 7512's last example uses vendor attributes not prefixed "x-"; persoflow only
  // knows the "x-" convention and refuses anything else it does not understand.
  const std::string_view text =
      "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a"
      "?pin-source=file:/etc/token_pin&vendor-bbb=value-b";
  EXPECT_EQ(parse_error(Pkcs11Uri::parse(text)),
            expected_message(text, "unknown attribute 'vendor-aaa'", 54));
}

// ---- Values --------------------------------------------------------------------------

TEST(Pkcs11UriTest, AllPathAttributesAreRead) {
  const Pkcs11Uri u = parsed(
      "pkcs11:token=perso;object=tk-acme-01;id=%A1%B2;type=secret-key;manufacturer=SoftHSM;"
      "serial=0123abcd;model=v2?module-path=/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(u.token, "perso");
  EXPECT_EQ(u.object, "tk-acme-01");
  EXPECT_EQ(u.id, (Bytes{0xA1, 0xB2}));
  EXPECT_EQ(u.type, Pkcs11ObjectType::kSecretKey);
  EXPECT_EQ(u.manufacturer, "SoftHSM");
  EXPECT_EQ(u.serial, "0123abcd");
  EXPECT_EQ(u.model, "v2");
  EXPECT_EQ(u.module_path, "/usr/lib/softhsm/libsofthsm2.so");
}

TEST(Pkcs11UriTest, EveryObjectTypeIsReadAndWritten) {
  const std::pair<std::string_view, Pkcs11ObjectType> cases[] = {
      {"public", Pkcs11ObjectType::kPublic},
      {"private", Pkcs11ObjectType::kPrivate},
      {"cert", Pkcs11ObjectType::kCert},
      {"secret-key", Pkcs11ObjectType::kSecretKey},
      {"data", Pkcs11ObjectType::kData},
  };
  for (const auto& [name, type] : cases) {
    const std::string text = "pkcs11:type=" + std::string(name);
    const Pkcs11Uri u = parsed(text);
    EXPECT_EQ(u.type, type) << name;
    EXPECT_EQ(u.to_string(), text);
  }
}

TEST(Pkcs11UriTest, TypeValueIsPercentDecodedBeforeMatching) {
  EXPECT_EQ(parsed("pkcs11:type=secret%2Dkey").type, Pkcs11ObjectType::kSecretKey);
}

TEST(Pkcs11UriTest, IdIsPercentDecodedIntoBytes) {
  EXPECT_EQ(parsed("pkcs11:id=%00").id, (Bytes{0x00}));
  EXPECT_EQ(parsed("pkcs11:id=%FF%fe").id, (Bytes{0xFF, 0xFE}));
  // Unescaped characters are taken as their own bytes.
  EXPECT_EQ(parsed("pkcs11:id=ab%01Z").id, (Bytes{0x61, 0x62, 0x01, 0x5A}));
}

TEST(Pkcs11UriTest, IdIsAlwaysWrittenFullyEscaped) {
  Pkcs11Uri u;
  u.id = Bytes{0x00, 0x41, 0x7A, 0xFF};
  EXPECT_EQ(u.to_string(), "pkcs11:id=%00%41%7A%FF");
}

TEST(Pkcs11UriTest, AttributeOrderDoesNotMatterAndCanonicalOrderIsFixed) {
  const Pkcs11Uri a = parsed("pkcs11:type=secret-key;object=tk;token=perso;id=%01");
  const Pkcs11Uri b = parsed("pkcs11:id=%01;token=perso;type=secret-key;object=tk");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.to_string(), "pkcs11:token=perso;object=tk;id=%01;type=secret-key");
  EXPECT_EQ(b.to_string(), a.to_string());
}

TEST(Pkcs11UriTest, EmptyPathSegmentsAreSkipped) {
  const Pkcs11Uri u = parsed("pkcs11:;object=a;;type=data;");
  EXPECT_EQ(u.object, "a");
  EXPECT_EQ(u.type, Pkcs11ObjectType::kData);
  EXPECT_EQ(parsed("pkcs11:object=a?&&module-path=/m&"), parsed("pkcs11:object=a?module-path=/m"));
}

TEST(Pkcs11UriTest, OnlyTheFirstEqualsSeparatesNameAndValue) {
  EXPECT_EQ(parsed("pkcs11:object=a=b").object, "a=b");
}

TEST(Pkcs11UriTest, VendorAttributesAreAcceptedAndIgnored) {
  Pkcs11Uri expected;
  expected.object = "k";
  EXPECT_EQ(parsed("pkcs11:x-vendor=anything%20at%20all;object=k?x-query=1&x-other=2"), expected);
  EXPECT_EQ(parsed("pkcs11:object=k;x-=empty-suffix"), expected);
  EXPECT_EQ(expected.to_string(), "pkcs11:object=k");
}

TEST(Pkcs11UriTest, VendorAttributeValuesMustStillBeWellEscaped) {
  const std::string_view text = "pkcs11:object=k;x-v=%G0";
  EXPECT_EQ(parse_error(Pkcs11Uri::parse(text)), expected_message(text, "invalid percent escape", 20));
}

TEST(Pkcs11UriTest, NamesOneObjectNeedsObjectOrId) {
  EXPECT_FALSE(parsed("pkcs11:").names_one_object());
  EXPECT_FALSE(parsed("pkcs11:token=perso;type=secret-key;manufacturer=m;serial=s;model=x")
                   .names_one_object());
  EXPECT_FALSE(parsed("pkcs11:token=perso?module-path=/m.so").names_one_object());
  EXPECT_TRUE(parsed("pkcs11:object=tk").names_one_object());
  EXPECT_TRUE(parsed("pkcs11:object=").names_one_object());  // present, even if empty
  EXPECT_TRUE(parsed("pkcs11:id=%01").names_one_object());
  EXPECT_TRUE(parsed("pkcs11:token=perso;object=tk;id=%01").names_one_object());
}

// ---- Canonical form and round trip ----------------------------------------------------

TEST(Pkcs11UriTest, ToStringEscapesPathSeparatorsAndKeepsPchars) {
  Pkcs11Uri u;
  u.object = "a b;c?d%e/f=g#h";
  EXPECT_EQ(u.to_string(), "pkcs11:object=a%20b%3Bc%3Fd%25e%2Ff%3Dg%23h");
  u.object = "AZaz09-._~:[]@!$'()*+,&";
  EXPECT_EQ(u.to_string(), "pkcs11:object=AZaz09-._~:[]@!$'()*+,&");
  u.object = "\xC3\xA1\x80\xFF";
  EXPECT_EQ(u.to_string(), "pkcs11:object=%C3%A1%80%FF");
}

TEST(Pkcs11UriTest, ToStringWritesModulePathWithPlainSlashes) {
  Pkcs11Uri u;
  u.module_path = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
  EXPECT_EQ(u.to_string(), "pkcs11:?module-path=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
  u.module_path = "/opt/my lib/p11.so";
  EXPECT_EQ(u.to_string(), "pkcs11:?module-path=/opt/my%20lib/p11.so");
}

TEST(Pkcs11UriTest, ToStringEscapesTheQuerySeparatorInModulePath) {
  // '&' separates query attributes: left plain it would cut the path in two.
  Pkcs11Uri u;
  u.module_path = "/opt/a&b/p11.so";
  EXPECT_EQ(u.to_string(), "pkcs11:?module-path=/opt/a%26b/p11.so");
  expect_round_trip(u);
  // Nor may a module path smuggle in another query attribute.
  u.module_path = "/x&pin-value=1234";
  expect_round_trip(u);
}

TEST(Pkcs11UriTest, RoundTripOfAwkwardValuesInEveryField) {
  const std::string values[] = {
      "",
      "perso",
      "with space",
      "  leading and trailing  ",
      "semi;colon",
      "question?mark",
      "per%cent",
      "%41 looks escaped",
      "slash/in/label",
      "amp&ersand",
      "equals=sign",
      "hash#tag",
      "pkcs11:nested;object=x?pin-value=y",
      "\xC3\xA1\xC3\xA9 utf-8",
      std::string("nul\0byte", 8),
      "\x01\x7F\x80\xFE\xFF",
      "AZaz09-._~:[]@!$'()*+,&",
      all_bytes(),
  };
  for (const std::string& v : values) {
    SCOPED_TRACE(testing::Message() << "value size " << v.size() << ": " << v);
    Pkcs11Uri u;
    u.token = v;
    expect_round_trip(u);
    u = {};
    u.object = v;
    expect_round_trip(u);
    u = {};
    u.manufacturer = v;
    expect_round_trip(u);
    u = {};
    u.serial = v;
    expect_round_trip(u);
    u = {};
    u.model = v;
    expect_round_trip(u);
    u = {};
    u.module_path = v;
    expect_round_trip(u);
    if (!v.empty()) {
      u = {};
      u.id = Bytes(v.begin(), v.end());
      expect_round_trip(u);
    }
    // Everything at once.
    u.token = v;
    u.object = v + "-obj";
    u.manufacturer = v;
    u.serial = v;
    u.model = v;
    u.type = Pkcs11ObjectType::kSecretKey;
    u.module_path = v;
    u.id = Bytes(v.begin(), v.end());
    u.id->push_back(0x00);
    expect_round_trip(u);
  }
}

TEST(Pkcs11UriTest, RoundTripOfEveryTypeWithEverything) {
  for (auto t : {Pkcs11ObjectType::kPublic, Pkcs11ObjectType::kPrivate, Pkcs11ObjectType::kCert,
                 Pkcs11ObjectType::kSecretKey, Pkcs11ObjectType::kData}) {
    Pkcs11Uri u;
    u.token = "perso";
    u.object = "tk acme 01";
    u.id = Bytes{0x00, 0x01, 0xFF};
    u.type = t;
    u.manufacturer = "Snake Oil, Inc.";
    u.serial = "0001";
    u.model = "1.0";
    u.module_path = "/usr/lib/p11.so";
    expect_round_trip(u);
  }
}

TEST(Pkcs11UriTest, EveryByteInIdRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    Pkcs11Uri u;
    u.id = Bytes{static_cast<std::uint8_t>(b)};
    expect_round_trip(u);
  }
}

// ---- Errors, with their offsets -------------------------------------------------------

TEST(Pkcs11UriTest, WrongSchemeIsRefusedAtOffsetZero) {
  for (std::string_view text :
       {"", "pkcs11", "pkcs:object=a", "pkcs11;object=a", "http://example.com", " pkcs11:object=a",
        "file:pkcs11:object=a"}) {
    EXPECT_EQ(parse_error(Pkcs11Uri::parse(text)),
              expected_message(text, "does not start with 'pkcs11:'", 0));
  }
}

TEST(Pkcs11UriTest, MissingEqualsIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object")),
            expected_message("pkcs11:object", "expected 'name=value'", 7));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:token=a;object")),
            expected_message("pkcs11:token=a;object", "expected 'name=value'", 15));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a?module-path")),
            expected_message("pkcs11:object=a?module-path", "expected 'name=value'", 16));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:?pin-source=x&junk")),
            expected_message("pkcs11:?pin-source=x&junk", "expected 'name=value'", 21));
}

TEST(Pkcs11UriTest, EmptyNameIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:=abc")),
            expected_message("pkcs11:=abc", "expected 'name=value'", 7));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a;=b")),
            expected_message("pkcs11:object=a;=b", "expected 'name=value'", 16));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a?=b")),
            expected_message("pkcs11:object=a?=b", "expected 'name=value'", 16));
}

TEST(Pkcs11UriTest, RepeatedAttributeIsRefused) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"pkcs11:token=a;token=b", "token"},
      {"pkcs11:object=a;object=a", "object"},
      {"pkcs11:manufacturer=a;manufacturer=b", "manufacturer"},
      {"pkcs11:serial=a;serial=b", "serial"},
      {"pkcs11:model=a;model=b", "model"},
  };
  for (const auto& [text, name] : cases) {
    // The second occurrence starts right after the first ';'.
    const std::size_t at = text.find(';') + 1;
    EXPECT_EQ(parse_error(Pkcs11Uri::parse(text)),
              expected_message(text, "attribute '" + std::string(name) + "' repeated", at));
  }
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:id=%01;id=%01")),
            expected_message("pkcs11:id=%01;id=%01", "attribute 'id' repeated", 14));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:type=cert;type=data")),
            expected_message("pkcs11:type=cert;type=data", "attribute 'type' repeated", 17));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:?module-path=/a&module-path=/b")),
            expected_message("pkcs11:?module-path=/a&module-path=/b",
                             "attribute 'module-path' repeated", 23));
  // An empty value still counts as present.
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:serial=;serial=")),
            expected_message("pkcs11:serial=;serial=", "attribute 'serial' repeated", 15));
}

TEST(Pkcs11UriTest, UnknownAttributeIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a;colour=blue")),
            expected_message("pkcs11:object=a;colour=blue", "unknown attribute 'colour'", 16));
  // Names are case-sensitive.
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:Object=a")),
            expected_message("pkcs11:Object=a", "unknown attribute 'Object'", 7));
  // A query attribute does not belong in the path.
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:module-path=/m.so")),
            expected_message("pkcs11:module-path=/m.so", "unknown attribute 'module-path'", 7));
}

TEST(Pkcs11UriTest, UnknownTypeIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:type=secret")),
            expected_message("pkcs11:type=secret", "unknown object type 'secret'", 7));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a;type=Cert")),
            expected_message("pkcs11:object=a;type=Cert", "unknown object type 'Cert'", 16));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:type=")),
            expected_message("pkcs11:type=", "unknown object type ''", 7));
}

TEST(Pkcs11UriTest, TruncatedPercentEscapeIsRefusedAtThePercent) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=%")),
            expected_message("pkcs11:object=%", "truncated percent escape", 14));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=ab%4")),
            expected_message("pkcs11:object=ab%4", "truncated percent escape", 16));
  // The ';' ends the value: it does not complete the escape.
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=%4;type=cert")),
            expected_message("pkcs11:object=%4;type=cert", "truncated percent escape", 14));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:id=%01%2")),
            expected_message("pkcs11:id=%01%2", "truncated percent escape", 13));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:?module-path=/a%2")),
            expected_message("pkcs11:?module-path=/a%2", "truncated percent escape", 22));
}

TEST(Pkcs11UriTest, InvalidPercentEscapeIsRefusedAtThePercent) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a%G1")),
            expected_message("pkcs11:object=a%G1", "invalid percent escape", 15));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a%1g")),
            expected_message("pkcs11:object=a%1g", "invalid percent escape", 15));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:token=t;id=%0%41")),
            expected_message("pkcs11:token=t;id=%0%41", "invalid percent escape", 18));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=%%41")),
            expected_message("pkcs11:object=%%41", "invalid percent escape", 14));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a?module-path=/%zz")),
            expected_message("pkcs11:object=a?module-path=/%zz", "invalid percent escape", 29));
}

TEST(Pkcs11UriTest, EmptyIdIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:id=")),
            expected_message("pkcs11:id=", "empty id", 7));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a;id=")),
            expected_message("pkcs11:object=a;id=", "empty id", 16));
}

TEST(Pkcs11UriTest, UnknownQueryAttributeIsRefused) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:object=a?colour=blue")),
            expected_message("pkcs11:object=a?colour=blue", "unknown query attribute 'colour'", 16));
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:?pin-source=x&foo=1")),
            expected_message("pkcs11:?pin-source=x&foo=1", "unknown query attribute 'foo'", 21));
  // A path attribute does not belong in the query.
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:?object=a")),
            expected_message("pkcs11:?object=a", "unknown query attribute 'object'", 8));
}

TEST(Pkcs11UriTest, FirstErrorInTheTextIsReported) {
  EXPECT_EQ(parse_error(Pkcs11Uri::parse("pkcs11:bogus=1;id=?nope=2")),
            expected_message("pkcs11:bogus=1;id=?nope=2", "unknown attribute 'bogus'", 7));
}

// ---- pin-value --------------------------------------------------------------------------

TEST(Pkcs11UriTest, PinValueIsRefusedAndNeverQuoted) {
  const std::string_view pin = "S3cr3t-4711";
  const std::string text = "pkcs11:token=perso;object=tk?pin-value=" + std::string(pin);
  const std::string msg = parse_error(Pkcs11Uri::parse(text));
  EXPECT_EQ(msg, "PKCS#11 URI 'pkcs11:token=perso;object=tk?pin-value=<redacted>': pin-value is "
                 "refused: a PIN never travels in a URI (use --pin-env or --pin-file) at offset 29");
  EXPECT_EQ(msg.find(pin), std::string::npos);
}

TEST(Pkcs11UriTest, PinValueAmongOtherQueryAttributesIsRedactedUpToTheNextAmpersand) {
  const std::string text = "pkcs11:object=k?module-name=m&pin-value=98765432&x-foo=1";
  const std::string msg = parse_error(Pkcs11Uri::parse(text));
  EXPECT_EQ(msg.find("98765432"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'pkcs11:object=k?module-name=m&pin-value=<redacted>&x-foo=1'"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("pin-value is refused"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at offset 30"), std::string::npos) << msg;
}

TEST(Pkcs11UriTest, EmptyPinValueIsRefusedToo) {
  const std::string msg = parse_error(Pkcs11Uri::parse("pkcs11:object=k?pin-value="));
  EXPECT_NE(msg.find("pin-value is refused"), std::string::npos) << msg;
}

TEST(Pkcs11UriTest, PinIsRedactedFromEveryOtherErrorToo) {
  const std::string pin = "246813579";
  const std::string texts[] = {
      // an earlier error in the path
      "pkcs11:bogus=1?pin-value=" + pin,
      "pkcs11:id=?pin-value=" + pin,
      // an earlier error in the query
      "pkcs11:object=k?colour=red&pin-value=" + pin,
      // a bad escape inside the PIN itself
      "pkcs11:object=k?pin-value=" + pin + "%G",
      "pkcs11:object=k?pin-value=" + pin + "%4",
      // pin-value written as a path attribute
      "pkcs11:pin-value=" + pin + ";object=k",
      // given twice
      "pkcs11:object=k?pin-value=" + pin + "&pin-value=" + pin,
  };
  for (const std::string& text : texts) {
    const std::string msg = parse_error(Pkcs11Uri::parse(text));
    EXPECT_NE(msg, "<no error>") << text;
    EXPECT_EQ(msg.find(pin), std::string::npos) << msg;
    EXPECT_NE(msg.find("<redacted>"), std::string::npos) << msg;
  }
}

TEST(Pkcs11UriTest, EscapedPinIsRedactedToo) {
  // %32%34... spells "24..." once decoded; neither form may appear.
  const std::string text = "pkcs11:object=k?pin-value=%32%34%36%38";
  const std::string msg = parse_error(Pkcs11Uri::parse(text));
  EXPECT_EQ(msg.find("%32%34%36%38"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("2468"), std::string::npos) << msg;
}

}  // namespace
}  // namespace persoflow

namespace persoflow {
namespace {

TEST(Pkcs11UriRedactionTest, NearMissPinAttributesAreRedactedToo) {
  for (const char* uri : {"pkcs11:object=k?pin_value=4321", "pkcs11:object=k?PIN-VALUE=4321",
                          "pkcs11:object=k?module-name=m&x-pin=4321"}) {
    auto r = Pkcs11Uri::parse(uri);
    if (r.has_value()) continue;  // x- query attributes are accepted: nothing to print
    EXPECT_EQ(r.error().message().find("4321"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("<redacted>"), std::string::npos) << r.error().message();
  }
}

TEST(Pkcs11UriSchemeTest, SchemeIsCaseInsensitive) {
  auto r = Pkcs11Uri::parse("PKCS11:object=k");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->object, std::optional<std::string>("k"));
  EXPECT_FALSE(Pkcs11Uri::parse("pkcs1:object=k").has_value());
}

}  // namespace
}  // namespace persoflow
