// `persoflow scp wrap`: a plain APDU script on stdin wrapped into a full SCP02/SCP03
// session (pipeline/scp_wrap_command.h, docs/cli.md "scp wrap"). Needs no HSM with
// --test-keys; --key-enc/--key-mac/--key-dek name token keys, used in the HSM
// (hsm/hsm_card_keys.h) through the same offline-session code.
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <tuple>

#include "engine/secure_bytes.h"
#include "hsm/hsm_card_keys.h"
#include "pipeline/cli_common.h"
#include "pipeline/scp_wrap_command.h"

namespace persoflow::pipeline {
namespace {

struct ScpWrapOptions {
  std::string scp;
  std::string i, level, kvn, requested_kvn, kdd, aid, host_challenge, sequence_counter,
      card_challenge;
  bool s16 = false;
  std::string test_keys;  // clear hex: wiped as soon as it is parsed
  std::string key_enc, key_mac, key_dek;
  bool json = false;
};

void wipe(std::string& s) {
  if (!s.empty()) detail::secure_wipe(s.data(), s.size());
  s.clear();
}

Result<Bytes> hex_option(const char* name, const std::string& text) {
  auto bytes = from_hex(text);
  if (!bytes) return Error(ErrorCode::kInvalidArgument, std::string(name) + ": " + bytes.error().message());
  return bytes;
}

Result<Bytes> hex_option(const char* name, const std::string& text, std::size_t length) {
  PF_ASSIGN_OR_RETURN(Bytes b, hex_option(name, text));
  if (b.size() != length) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(name) + ": expected " + std::to_string(length) +
                     (length == 1 ? " byte (" : " bytes (") + std::to_string(2 * length) +
                     " hex digits), got " + std::to_string(b.size()) +
                     (b.size() == 1 ? " byte" : " bytes"));
  }
  return b;
}

Result<std::uint8_t> byte_option(const char* name, const std::string& text) {
  PF_ASSIGN_OR_RETURN(Bytes b, hex_option(name, text, 1));
  return b[0];
}

// "ENC:MAC:DEK", each clear hex, straight into SecureBytes. Errors never quote the value.
Result<StaticKeySet> parse_test_keys(const std::string& text) {
  const auto first = text.find(':');
  const auto second = first == std::string::npos ? std::string::npos : text.find(':', first + 1);
  if (second == std::string::npos || text.find(':', second + 1) != std::string::npos) {
    return Error(ErrorCode::kInvalidArgument,
                 "--test-keys: expected three hex keys ENC:MAC:DEK separated by ':'");
  }
  const std::string_view all(text);
  const std::string_view parts[3] = {all.substr(0, first), all.substr(first + 1, second - first - 1),
                                     all.substr(second + 1)};
  const char* names[3] = {"--test-keys ENC", "--test-keys MAC", "--test-keys DEK"};
  SecureBytes keys[3];
  for (int k = 0; k < 3; ++k) {
    auto key = secure_from_hex(parts[k]);
    if (!key) {
      return Error(ErrorCode::kInvalidArgument, std::string(names[k]) + ": " + key.error().message());
    }
    keys[k] = std::move(key).value();
  }
  StaticKeySet set;
  set.enc = std::move(keys[0]);
  set.mac = std::move(keys[1]);
  set.dek = std::move(keys[2]);
  return set;
}

struct KeyInfoTriple {
  hsm::KeyInfo enc, mac, dek;
};

Result<ScpWrapRequest> request_from(ScpWrapOptions& o) {
  ScpWrapRequest r;
  r.scp = (o.scp == "02" || o.scp == "2") ? ScpProtocol::kScp02 : ScpProtocol::kScp03;
  PF_ASSIGN_OR_RETURN(r.i, byte_option("--i", o.i));
  if (r.scp == ScpProtocol::kScp03 && ((r.i & 0x01) != 0) != o.s16) {
    return Error(ErrorCode::kInvalidArgument,
                 o.s16 ? "--s16 needs an --i with b1 set (S16 mode), e.g. 71"
                       : "--i " + o.i + " asks for S16 mode (b1 set): add --s16");
  }
  if (r.scp == ScpProtocol::kScp02 && o.s16) {
    return Error(ErrorCode::kInvalidArgument, "--s16 is an SCP03 mode; SCP02 has 8-byte challenges");
  }
  PF_ASSIGN_OR_RETURN(r.level, byte_option("--level", o.level));
  PF_ASSIGN_OR_RETURN(r.kvn, byte_option("--kvn", o.kvn));
  if (o.requested_kvn.empty()) {
    r.requested_kvn = r.kvn;
  } else {
    PF_ASSIGN_OR_RETURN(r.requested_kvn, byte_option("--requested-kvn", o.requested_kvn));
  }
  PF_ASSIGN_OR_RETURN(r.kdd, hex_option("--kdd", o.kdd, 10));
  PF_ASSIGN_OR_RETURN(r.aid, hex_option("--aid", o.aid));
  if (r.aid.size() < 5 || r.aid.size() > 16) {
    return Error(ErrorCode::kInvalidArgument,
                 "--aid: expected 5 to 16 bytes, got " + std::to_string(r.aid.size()));
  }
  const std::size_t challenge = r.scp == ScpProtocol::kScp03 && o.s16 ? 16 : 8;
  PF_ASSIGN_OR_RETURN(r.host_challenge, hex_option("--host-challenge", o.host_challenge, challenge));
  const std::size_t seq_len = r.scp == ScpProtocol::kScp03 ? 3 : 2;
  PF_ASSIGN_OR_RETURN(Bytes seq, hex_option("--sequence-counter", o.sequence_counter, seq_len));
  for (std::uint8_t b : seq) r.sequence_counter = (r.sequence_counter << 8) | b;
  if (!o.card_challenge.empty()) {
    const std::size_t card = r.scp == ScpProtocol::kScp03 ? challenge : 6;
    PF_ASSIGN_OR_RETURN(r.card_challenge, hex_option("--card-challenge", o.card_challenge, card));
  }
  r.s16 = o.s16;
  if (o.test_keys.empty()) return r;  // HSM keys
  auto keys = parse_test_keys(o.test_keys);
  wipe(o.test_keys);
  if (!keys) return std::move(keys).error();
  r.keys = std::move(keys).value();
  return r;
}

Result<KeyInfoTriple> find_card_keys(hsm::KeyStore& ks, const ScpWrapOptions& o) {
  KeyInfoTriple t;
  for (auto [option, uri, info] : {std::tuple{"--key-enc", &o.key_enc, &t.enc}, std::tuple{"--key-mac", &o.key_mac, &t.mac},
                                   std::tuple{"--key-dek", &o.key_dek, &t.dek}}) {
    auto found = ks.find(*uri);
    if (!found) {
      Error e = std::move(found).error();
      e.add_context(option);
      return e;
    }
    *info = std::move(found).value();
  }
  return t;
}

int scp_wrap_main(const GlobalOptions& g, ScpWrapOptions& o, std::istream& in, std::ostream& out) {
  const bool hsm_keys = !o.key_enc.empty() || !o.key_mac.empty() || !o.key_dek.empty();
  if (hsm_keys && (o.key_enc.empty() || o.key_mac.empty() || o.key_dek.empty())) {
    wipe(o.test_keys);
    return fail(Error(ErrorCode::kInvalidArgument,
                      "--key-enc, --key-mac and --key-dek go together: name all three HSM keys"));
  }
  if (!hsm_keys && o.test_keys.empty()) {
    return fail(Error(ErrorCode::kInvalidArgument,
                      "one of --test-keys or --key-enc/--key-mac/--key-dek is required"));
  }
  auto request = request_from(o);
  if (!request) return fail(request.error());
  const std::string script_text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) return fail(Error(ErrorCode::kIo, "script: cannot read standard input"));
  auto script = parse_apdu_script(script_text);
  if (!script) return fail(script.error());
  auto print = [&](const ScpWrapOutput& output) {
    out << (o.json ? format_scp_wrap_json(output) : format_scp_wrap_text(output));
    out.flush();
  };
  if (!hsm_keys) {
    auto output = scp_wrap(*request, *script);
    if (!output) return fail(output.error());
    print(*output);
    return kExitOk;
  }
  return with_hsm(g, [&](hsm::KeyStore& ks) -> Status {
    PF_ASSIGN_OR_RETURN(KeyInfoTriple found, find_card_keys(ks, o));
    PF_ASSIGN_OR_RETURN(hsm::HsmCardKeys keys, hsm::HsmCardKeys::from_token_keys(ks, found.enc, found.mac, found.dek));
    PF_ASSIGN_OR_RETURN(ScpWrapOutput output, scp_wrap(*request, keys, *script));
    print(output);
    return ok_status();
  });
}

}  // namespace

void add_scp_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  CLI::App* scp = app.add_subcommand(
      "scp", "Secure channel tools (SCP02, SCP03): offline sessions with test keys or HSM keys");
  scp->require_subcommand(1);
  scp->fallthrough();

  auto o = std::make_shared<ScpWrapOptions>();
  CLI::App* wrap = scp->add_subcommand(
      "wrap",
      "Wrap a plain APDU script (stdin: one hex APDU per line, '#' comments) into a full\n"
      "secure-channel session: INITIALIZE UPDATE, the expected response, EXTERNAL AUTHENTICATE\n"
      "and every command wrapped");
  wrap->fallthrough();
  wrap->add_option("--scp", o->scp, "Protocol: 02 or 03")
      ->required()
      ->check(CLI::IsMember({"02", "03", "2", "3"}));
  wrap->add_option("--i", o->i,
                   "The card's i parameter, 1 byte hex (SCP03: 10/30/70 pseudo-random, b1 = S16;\n"
                   "SCP02: 04 05 14 15 44 45 54 55, 44..55 pseudo-random)")
      ->required();
  wrap->add_option("--level", o->level,
                   "Security level (EXTERNAL AUTHENTICATE P1), 1 byte hex: SCP03 01 03 11 13 33\n"
                   "(R-MAC declared; responses are not checked offline), SCP02 01 03")
      ->required();
  wrap->add_option("--kvn", o->kvn, "Key version number the card answers with, 1 byte hex")->required();
  wrap->add_option("--requested-kvn", o->requested_kvn,
                   "P1 of INITIALIZE UPDATE, 1 byte hex (default: --kvn; 00 = first available key "
                   "set)");
  wrap->add_option("--kdd", o->kdd, "Key diversification data of the card, 10 bytes hex")->required();
  wrap->add_option("--aid", o->aid,
                   "AID of the application opening the channel (5-16 bytes hex); input of the\n"
                   "pseudo-random card challenge")
      ->required();
  wrap->add_option("--host-challenge", o->host_challenge,
                   "Host challenge, 8 bytes hex (16 with --s16)")
      ->required();
  wrap->add_option("--sequence-counter", o->sequence_counter,
                   "Sequence counter: SCP03 3 bytes hex, the value after the card's increment\n"
                   "(first session: 000001; only in the response for pseudo-random i); SCP02 2\n"
                   "bytes hex")
      ->required();
  wrap->add_option("--card-challenge", o->card_challenge,
                   "Card challenge (SCP03 8/16 bytes, SCP02 6 bytes hex) instead of the pseudo-random\n"
                   "one: required for an i without it, or to replay a session captured from a card");
  wrap->add_flag("--s16", o->s16, "SCP03 S16 mode (16-byte challenges, cryptograms and C-MACs; i.b1 = 1)");
  CLI::Option* test_keys = wrap->add_option(
      "--test-keys", o->test_keys,
      "Clear static keys ENC:MAC:DEK in hex, for lab/test cards only (SCP03: AES 16/24/32\n"
      "bytes; SCP02: 16-byte 3DES). Never printed");
  CLI::Option* key_enc = wrap->add_option(
      "--key-enc", o->key_enc,
      "K-ENC in the HSM (PKCS#11 URI; AES: sign usage, DES: encrypt); with --key-mac, --key-dek");
  CLI::Option* key_mac = wrap->add_option("--key-mac", o->key_mac,
                                          "K-MAC in the HSM (PKCS#11 URI; AES: sign usage, DES: encrypt)");
  CLI::Option* key_dek = wrap->add_option("--key-dek", o->key_dek,
                                          "K-DEK in the HSM (PKCS#11 URI; encrypt usage)");
  test_keys->excludes(key_enc)->excludes(key_mac)->excludes(key_dek);
  wrap->add_flag("--json", o->json,
                 "Print {initialize_update, expected_response, external_authenticate, commands}");
  wrap->footer(
      "Reads the script from standard input. Output: one line per APDU, \"LABEL: HEX\"; the\n"
      "expected response is the INITIALIZE UPDATE response data without SW 9000.\n"
      "A command too long for one APDU once wrapped is chained (P1 b8, C-MAC over the whole\n"
      "command in the last segment): one output line per segment, with the same script line.\n"
      "--key-enc/--key-mac/--key-dek open the HSM like the other commands (HSM options below).\n"
      "Exit codes: 2 bad option, 3 bad script (line named), 4 key not found, 5 HSM.\n"
      "See docs/cli.md \"scp wrap\", docs/scp03.md, docs/scp02.md.\n" +
      std::string(kHsmFooter));
  wrap->callback([o, &g, &exit_code] { exit_code = scp_wrap_main(g, *o, std::cin, std::cout); });
}

}  // namespace persoflow::pipeline
