#include "pipeline/scp_wrap_command.h"

#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/scp02.h"
#include "engine/scp03.h"

namespace persoflow::pipeline {
namespace {

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\v\f";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

Error script_error(int line, std::string_view what, const Error& cause) {
  return Error(ErrorCode::kParse,
               "script line " + std::to_string(line) + ": " + std::string(what) + cause.message());
}

Error usage(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

std::string byte_count(std::size_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

Status check_length(std::string_view option, std::size_t got, std::size_t want) {
  if (got == want) return ok_status();
  return usage(std::string(option) + ": expected " + byte_count(want) + " (" +
               std::to_string(2 * want) + " hex digits), got " + byte_count(got));
}

std::string hex_byte(std::uint8_t b) { return to_hex(std::span<const std::uint8_t>(&b, 1)); }

Status check_common(const ScpWrapRequest& r) {
  PF_TRY(check_length("--kdd", r.kdd.size(), 10));
  if (r.aid.size() < 5 || r.aid.size() > 16) {
    return usage("--aid: expected 5 to 16 bytes, got " + byte_count(r.aid.size()));
  }
  return ok_status();
}

// The wrapped commands, each error naming its script line.
template <typename Session>
Status wrap_all(Session& session, const std::vector<ScriptCommand>& script, ScpWrapOutput& out) {
  for (const ScriptCommand& c : script) {
    auto wrapped = session.wrap(c.apdu);
    if (!wrapped) return script_error(c.line, "cannot wrap: ", wrapped.error());
    out.commands.push_back(wrapped->to_bytes());
    out.lines.push_back(c.line);
  }
  return ok_status();
}

Result<ScpWrapOutput> wrap_scp03(const ScpWrapRequest& r, const std::vector<ScriptCommand>& script) {
  const Scp03Mode mode = r.s16 ? Scp03Mode::kS16 : Scp03Mode::kS8;
  if (scp03_mode_of(r.i) != mode) {
    return usage(r.s16 ? "--s16 needs an i with b1 set (S16 mode), got --i " + hex_byte(r.i)
                       : "--i " + hex_byte(r.i) + " asks for S16 mode (b1 set): add --s16");
  }
  const std::size_t block = scp03_block_length(mode);
  PF_TRY(check_length("--host-challenge", r.host_challenge.size(), block));
  if (r.card_challenge) PF_TRY(check_length("--card-challenge", r.card_challenge->size(), block));
  for (auto [name, key] : {std::pair{"--test-keys ENC", &r.keys.enc}, std::pair{"--test-keys MAC", &r.keys.mac},
                           std::pair{"--test-keys DEK", &r.keys.dek}}) {
    const std::size_t n = key->size();
    if (n != 16 && n != 24 && n != 32) {
      return usage(std::string(name) + ": an SCP03 key is 16, 24 or 32 bytes, got " + byte_count(n));
    }
  }
  if (r.keys.enc.size() != r.keys.mac.size()) {
    return usage("--test-keys: ENC and MAC must have the same length");
  }
  if (!check_scp03_security_level(r.level)) {
    return usage("--level " + hex_byte(r.level) + ": SCP03 security levels are 00 01 03 11 13 33");
  }
  if (r.sequence_counter > 0xFFFFFF) return usage("--sequence-counter: SCP03 counters are 3 bytes");
  const bool pseudo_random = (r.i & kScp03IPseudoRandom) != 0;

  Scp03InitUpdateResponse response;
  if (r.card_challenge) {
    PF_ASSIGN_OR_RETURN(Scp03SessionKeys keys, scp03_derive_session_keys(r.keys.enc, r.keys.mac,
                                                                         r.host_challenge,
                                                                         *r.card_challenge));
    PF_ASSIGN_OR_RETURN(Bytes cryptogram,
                        scp03_card_cryptogram(keys.s_mac, r.host_challenge, *r.card_challenge));
    response.kdd = r.kdd;
    response.kvn = r.kvn;
    response.i = r.i;
    response.card_challenge = *r.card_challenge;
    response.card_cryptogram = std::move(cryptogram);
    if (pseudo_random) response.sequence_counter = r.sequence_counter;
  } else {
    if (!pseudo_random) {
      return usage("--card-challenge is required: --i " + hex_byte(r.i) +
                   " has no pseudo-random card challenge (b5 = 0)");
    }
    PF_ASSIGN_OR_RETURN(response, scp03_expected_init_update_response(
                                      r.keys.enc, r.keys.mac, r.kdd, r.kvn, r.i,
                                      r.sequence_counter, r.aid, r.host_challenge));
  }

  ScpWrapOutput out;
  PF_ASSIGN_OR_RETURN(CommandApdu init_update, scp03_initialize_update(r.requested_kvn, r.host_challenge));
  out.initialize_update = init_update.to_bytes();
  out.expected_response = response.to_bytes();
  PF_ASSIGN_OR_RETURN(Scp03Session session, Scp03Session::open(r.keys.enc, r.keys.mac, r.host_challenge,
                                                               response, r.level));
  PF_ASSIGN_OR_RETURN(CommandApdu ext_auth, session.external_authenticate());
  out.external_authenticate = ext_auth.to_bytes();
  PF_TRY(wrap_all(session, script, out));
  return out;
}

Result<ScpWrapOutput> wrap_scp02(const ScpWrapRequest& r, const std::vector<ScriptCommand>& script) {
  if (r.s16) return usage("--s16 is an SCP03 mode; SCP02 has 8-byte challenges");
  PF_TRY(check_length("--host-challenge", r.host_challenge.size(), kScp02HostChallengeLength));
  if (r.card_challenge) {
    PF_TRY(check_length("--card-challenge", r.card_challenge->size(), kScp02CardChallengeLength));
  }
  for (auto [name, key] : {std::pair{"--test-keys ENC", &r.keys.enc}, std::pair{"--test-keys MAC", &r.keys.mac},
                           std::pair{"--test-keys DEK", &r.keys.dek}}) {
    if (key->size() != 16) {
      return usage(std::string(name) + ": an SCP02 key is 16 bytes, got " + byte_count(key->size()));
    }
  }
  if (r.level != kScp02LevelNone && r.level != kScp02LevelCMac && r.level != kScp02LevelCDecCMac) {
    return usage("--level " + hex_byte(r.level) + ": SCP02 security levels served are 00 01 03");
  }
  if (r.sequence_counter > 0xFFFF) return usage("--sequence-counter: SCP02 counters are 2 bytes");
  const auto seq = static_cast<std::uint16_t>(r.sequence_counter);
  const bool pseudo_random = (r.i & 0x40) != 0;  // i.b7

  Scp02InitUpdateResponse response;
  std::span<const std::uint8_t> check_aid;
  if (r.card_challenge) {
    PF_ASSIGN_OR_RETURN(Scp02SessionKeys keys, scp02_session_keys(r.keys, seq));
    PF_ASSIGN_OR_RETURN(Bytes cryptogram,
                        scp02_card_cryptogram(keys.enc, r.host_challenge, seq, *r.card_challenge));
    response.key_diversification_data = r.kdd;
    response.key_version = r.kvn;
    response.scp_identifier = 0x02;
    response.sequence_counter = seq;
    response.card_challenge = *r.card_challenge;
    response.card_cryptogram = std::move(cryptogram);
  } else {
    if (!pseudo_random) {
      return usage("--card-challenge is required: --i " + hex_byte(r.i) +
                   " has no pseudo-random card challenge (b7 = 0)");
    }
    PF_ASSIGN_OR_RETURN(response, scp02_expected_init_update_response(r.keys, r.kdd, r.kvn, seq,
                                                                      r.host_challenge, r.aid));
    check_aid = r.aid;
  }

  ScpWrapOutput out;
  PF_ASSIGN_OR_RETURN(CommandApdu init_update, scp02_initialize_update(r.requested_kvn, r.host_challenge));
  out.initialize_update = init_update.to_bytes();
  out.expected_response = response.to_bytes();
  Scp02Params params;
  params.i = r.i;
  params.security_level = r.level;
  auto opened = Scp02Session::open(r.keys, params, r.host_challenge, response, check_aid);
  if (!opened) {
    Error e = std::move(opened).error();
    // An i this build does not serve is a usage problem of --i, not of the module.
    if (e.code() == ErrorCode::kUnsupported) {
      return usage("--i " + hex_byte(r.i) + ": " + e.message());
    }
    return e;
  }
  Scp02Session session = std::move(opened).value();
  PF_ASSIGN_OR_RETURN(CommandApdu ext_auth, session.external_authenticate());
  out.external_authenticate = ext_auth.to_bytes();
  PF_TRY(wrap_all(session, script, out));
  return out;
}

}  // namespace

Result<std::vector<ScriptCommand>> parse_apdu_script(std::string_view text) {
  std::vector<ScriptCommand> commands;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (const auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    auto bytes = from_hex(line);
    if (!bytes) return script_error(line_no, "invalid hex: ", bytes.error());
    auto apdu = CommandApdu::parse(*bytes);
    if (!apdu) return script_error(line_no, "malformed APDU: ", apdu.error());
    commands.push_back(ScriptCommand{line_no, std::move(apdu).value()});
  }
  if (commands.empty()) {
    return Error(ErrorCode::kParse, "script: no command APDU (the script is empty or only comments)");
  }
  return commands;
}

Result<ScpWrapOutput> scp_wrap(const ScpWrapRequest& request, const std::vector<ScriptCommand>& script) {
  PF_TRY(check_common(request));
  return request.scp == ScpProtocol::kScp03 ? wrap_scp03(request, script)
                                            : wrap_scp02(request, script);
}

std::string format_scp_wrap_text(const ScpWrapOutput& output) {
  std::ostringstream out;
  out << "INITIALIZE UPDATE: " << to_hex(output.initialize_update) << "\n";
  out << "EXPECTED RESPONSE: " << to_hex(output.expected_response) << "\n";
  out << "EXTERNAL AUTHENTICATE: " << to_hex(output.external_authenticate) << "\n";
  for (std::size_t k = 0; k < output.commands.size(); ++k) {
    out << "COMMAND " << (k + 1) << " (line " << output.lines[k] << "): " << to_hex(output.commands[k])
        << "\n";
  }
  return out.str();
}

std::string format_scp_wrap_json(const ScpWrapOutput& output) {
  nlohmann::ordered_json j;
  j["initialize_update"] = to_hex(output.initialize_update);
  j["expected_response"] = to_hex(output.expected_response);
  j["external_authenticate"] = to_hex(output.external_authenticate);
  j["commands"] = nlohmann::ordered_json::array();
  for (const Bytes& c : output.commands) j["commands"].push_back(to_hex(c));
  return j.dump(2) + "\n";
}

}  // namespace persoflow::pipeline
