#include "pipeline/scp_wrap_command.h"

#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/card_keys.h"
#include "engine/offline_session.h"
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

// What the options must satisfy whatever holds the keys; the messages name the option.
Status check_options(const ScpWrapRequest& r) {
  if (r.scp == ScpProtocol::kScp03) {
    const Scp03Mode mode = r.s16 ? Scp03Mode::kS16 : Scp03Mode::kS8;
    if (scp03_mode_of(r.i) != mode) {
      return usage(r.s16 ? "--s16 needs an i with b1 set (S16 mode), got --i " + hex_byte(r.i)
                         : "--i " + hex_byte(r.i) + " asks for S16 mode (b1 set): add --s16");
    }
    const std::size_t block = scp03_block_length(mode);
    PF_TRY(check_length("--host-challenge", r.host_challenge.size(), block));
    if (r.card_challenge) PF_TRY(check_length("--card-challenge", r.card_challenge->size(), block));
    if (r.level == 0x00 || !check_scp03_security_level(r.level)) {
      return usage("--level " + hex_byte(r.level) + ": SCP03 security levels are 01 03 11 13 33");
    }
    if (r.sequence_counter > 0xFFFFFF) return usage("--sequence-counter: SCP03 counters are 3 bytes");
    if (!r.card_challenge && (r.i & kScp03IPseudoRandom) == 0) {
      return usage("--card-challenge is required: --i " + hex_byte(r.i) +
                   " has no pseudo-random card challenge (b5 = 0)");
    }
    return ok_status();
  }
  if (r.s16) return usage("--s16 is an SCP03 mode; SCP02 has 8-byte challenges");
  PF_TRY(check_length("--host-challenge", r.host_challenge.size(), kScp02HostChallengeLength));
  if (r.card_challenge) {
    PF_TRY(check_length("--card-challenge", r.card_challenge->size(), kScp02CardChallengeLength));
  }
  if (r.level != kScp02LevelCMac && r.level != kScp02LevelCDecCMac) {
    return usage("--level " + hex_byte(r.level) + ": SCP02 security levels served are 01 03");
  }
  if (r.sequence_counter > 0xFFFF) return usage("--sequence-counter: SCP02 counters are 2 bytes");
  if (!r.card_challenge && (r.i & 0x40) == 0) {  // i.b7
    return usage("--card-challenge is required: --i " + hex_byte(r.i) +
                 " has no pseudo-random card challenge (b7 = 0)");
  }
  return ok_status();
}

Status check_test_keys(const ScpWrapRequest& r) {
  for (auto [name, key] : {std::pair{"--test-keys ENC", &r.keys.enc}, std::pair{"--test-keys MAC", &r.keys.mac},
                           std::pair{"--test-keys DEK", &r.keys.dek}}) {
    const std::size_t n = key->size();
    if (r.scp == ScpProtocol::kScp03 && n != 16 && n != 24 && n != 32) {
      return usage(std::string(name) + ": an SCP03 key is 16, 24 or 32 bytes, got " + byte_count(n));
    }
    if (r.scp == ScpProtocol::kScp02 && n != 16) {
      return usage(std::string(name) + ": an SCP02 key is 16 bytes, got " + byte_count(n));
    }
  }
  if (r.keys.enc.size() != r.keys.mac.size() || r.keys.enc.size() != r.keys.dek.size()) {
    return usage("--test-keys: ENC, MAC and DEK must have the same length");
  }
  return ok_status();
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
  PF_TRY(check_options(request));
  PF_TRY(check_test_keys(request));
  const KeyFamily family = request.scp == ScpProtocol::kScp03 ? KeyFamily::kAes : KeyFamily::kDes;
  PF_ASSIGN_OR_RETURN(ClearCardKeys keys, ClearCardKeys::create(request.keys, family));
  return scp_wrap(request, keys, script);
}

Result<ScpWrapOutput> scp_wrap(const ScpWrapRequest& request, CardKeys& keys,
                               const std::vector<ScriptCommand>& script) {
  PF_TRY(check_common(request));
  PF_TRY(check_options(request));
  if (request.scp == ScpProtocol::kScp03 && key_family(keys.type()) != KeyFamily::kAes) {
    return usage("SCP03 needs AES card keys; the keys given are " + std::string(key_type_name(keys.type())));
  }
  if (request.scp == ScpProtocol::kScp02 && keys.type() != KeyType::kDes2) {
    return usage("SCP02 needs 2-key 3DES (des2) card keys; the keys given are " +
                 std::string(key_type_name(keys.type())));
  }
  ChannelParams params;
  params.scp = static_cast<std::uint8_t>(request.scp);
  params.i = request.i;
  params.level = request.level;
  params.kvn = request.kvn;
  params.requested_kvn = request.requested_kvn;
  params.kdd = request.kdd;
  params.aid = request.aid;
  params.counter = request.sequence_counter;
  params.host_challenge = request.host_challenge;
  params.card_challenge = request.card_challenge;
  auto opened = open_offline_session(keys, params);
  if (!opened) {
    Error e = std::move(opened).error();
    // An i this build does not serve is a usage problem of --i, not of the module.
    if (e.code() == ErrorCode::kUnsupported) return usage("--i " + hex_byte(request.i) + ": " + e.message());
    return e;
  }
  OfflineSession& session = **opened;

  ScpWrapOutput out;
  out.initialize_update = session.initialize_update().to_bytes();
  out.expected_response = session.expected_response();
  out.external_authenticate = session.external_authenticate().to_bytes();
  // Every line through wrap_chained: a command that fits is exactly wrap()'s; a longer one
  // becomes its segments, each listed with the line it came from.
  for (const ScriptCommand& c : script) {
    auto wrapped = session.wrap_chained(c.apdu);
    if (!wrapped) return script_error(c.line, "cannot wrap: ", wrapped.error());
    for (const CommandApdu& segment : *wrapped) {
      out.commands.push_back(segment.to_bytes());
      out.lines.push_back(c.line);
    }
  }
  return out;
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
