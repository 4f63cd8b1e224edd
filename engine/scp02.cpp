#include "engine/scp02.h"

#include <string>

#include "engine/des_mac.h"
#include "engine/scp03.h"

namespace persoflow {
namespace {

constexpr std::uint8_t kIExplicit = 0x04;        // b3
constexpr std::uint8_t kIUnmodifiedApdu = 0x02;  // b2
constexpr std::uint8_t kIIcvMacOverAid = 0x08;   // b4
constexpr std::uint8_t kIIcvEncryption = 0x10;   // b5
constexpr std::uint8_t kIPseudoRandom = 0x40;    // b7
constexpr std::uint8_t kClaSecureMessaging = 0x04;
constexpr std::uint8_t kClaChannelBits = 0x03;
constexpr std::size_t kMacLength = 8;

Status check_length(std::span<const std::uint8_t> v, std::size_t expected, std::string_view what) {
  if (v.size() != expected) {
    return Error(ErrorCode::kInvalidArgument, std::string(what) + " must be " +
                                                  std::to_string(expected) + " bytes, got " +
                                                  std::to_string(v.size()));
  }
  return ok_status();
}

void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

const Bytes& zero_icv() {
  static const Bytes kZero(kDesBlockSize, 0x00);
  return kZero;
}

Status check_params(const Scp02Params& p) {
  if ((p.i & kIExplicit) == 0 || (p.i & kIUnmodifiedApdu) != 0 || (p.i & kIIcvMacOverAid) != 0) {
    return Error(ErrorCode::kUnsupported,
                 "SCP02 i=" + to_hex(std::span(&p.i, 1)) +
                     " not implemented (only explicit mode, C-MAC on modified APDU, zero ICV)");
  }
  if (p.security_level != kScp02LevelNone && p.security_level != kScp02LevelCMac &&
      p.security_level != kScp02LevelCDecCMac) {
    return Error(ErrorCode::kUnsupported,
                 "SCP02 security level " + to_hex(std::span(&p.security_level, 1)) +
                     " not implemented (00, 01, 03; no R-MAC)");
  }
  return ok_status();
}

Bytes cryptogram_input(std::span<const std::uint8_t> first, std::uint16_t seq,
                       std::span<const std::uint8_t> card_challenge,
                       std::span<const std::uint8_t> last) {
  Bytes in(first.begin(), first.end());
  put_u16(in, seq);
  in.insert(in.end(), card_challenge.begin(), card_challenge.end());
  in.insert(in.end(), last.begin(), last.end());
  return in;
}

}  // namespace

Result<SecureBytes> scp02_derive_session_key(const SecureBytes& static_key, std::uint16_t constant,
                                             std::uint16_t sequence_counter) {
  if (static_key.size() != 16) {
    return Error(ErrorCode::kInvalidArgument,
                 "SCP02 static key must be 16 bytes, got " + std::to_string(static_key.size()));
  }
  Bytes data;
  put_u16(data, constant);
  put_u16(data, sequence_counter);
  data.resize(16, 0x00);
  return tdes_cbc_derive(static_key, zero_icv(), data);
}

Result<Scp02SessionKeys> scp02_session_keys(const StaticKeySet& static_keys,
                                            std::uint16_t sequence_counter) {
  Scp02SessionKeys k;
  PF_ASSIGN_OR_RETURN(k.enc, scp02_derive_session_key(static_keys.enc, kScp02ConstSEnc, sequence_counter));
  PF_ASSIGN_OR_RETURN(k.cmac, scp02_derive_session_key(static_keys.mac, kScp02ConstCMac, sequence_counter));
  PF_ASSIGN_OR_RETURN(k.rmac, scp02_derive_session_key(static_keys.mac, kScp02ConstRMac, sequence_counter));
  PF_ASSIGN_OR_RETURN(k.dek, scp02_derive_session_key(static_keys.dek, kScp02ConstDek, sequence_counter));
  return k;
}

Result<Bytes> scp02_card_cryptogram(const SecureBytes& s_enc, std::span<const std::uint8_t> host_challenge,
                                    std::uint16_t sequence_counter,
                                    std::span<const std::uint8_t> card_challenge) {
  PF_TRY(check_length(host_challenge, kScp02HostChallengeLength, "host challenge"));
  PF_TRY(check_length(card_challenge, kScp02CardChallengeLength, "card challenge"));
  return full_3des_mac(s_enc, zero_icv(),
                       cryptogram_input(host_challenge, sequence_counter, card_challenge, {}));
}

Result<Bytes> scp02_host_cryptogram(const SecureBytes& s_enc, std::span<const std::uint8_t> host_challenge,
                                    std::uint16_t sequence_counter,
                                    std::span<const std::uint8_t> card_challenge) {
  PF_TRY(check_length(host_challenge, kScp02HostChallengeLength, "host challenge"));
  PF_TRY(check_length(card_challenge, kScp02CardChallengeLength, "card challenge"));
  return full_3des_mac(s_enc, zero_icv(),
                       cryptogram_input({}, sequence_counter, card_challenge, host_challenge));
}

Result<Bytes> scp02_pseudo_random_card_challenge(const SecureBytes& s_mac,
                                                 std::span<const std::uint8_t> invoking_aid) {
  if (invoking_aid.size() < 5 || invoking_aid.size() > 16) {
    return Error(ErrorCode::kInvalidArgument,
                 "AID must be 5 to 16 bytes, got " + std::to_string(invoking_aid.size()));
  }
  PF_ASSIGN_OR_RETURN(Bytes mac, retail_mac(s_mac, zero_icv(), invoking_aid));
  mac.resize(kScp02CardChallengeLength);
  return mac;
}

Result<CommandApdu> scp02_initialize_update(std::uint8_t key_version,
                                            std::span<const std::uint8_t> host_challenge) {
  PF_TRY(check_length(host_challenge, kScp02HostChallengeLength, "host challenge"));
  return CommandApdu::create(0x80, 0x50, key_version, 0x00, host_challenge, 256);
}

Result<Scp02InitUpdateResponse> Scp02InitUpdateResponse::parse(std::span<const std::uint8_t> data) {
  if (data.size() != kScp02InitUpdateResponseLength) {
    return Error(ErrorCode::kParse, "SCP02 INITIALIZE UPDATE response must be 28 bytes, got " +
                                        std::to_string(data.size()));
  }
  if (data[11] != 0x02) {
    return Error(ErrorCode::kParse, "INITIALIZE UPDATE response names SCP " +
                                        to_hex(data.subspan(11, 1)) + ", not 02 (offset 11)");
  }
  Scp02InitUpdateResponse r;
  r.key_diversification_data.assign(data.begin(), data.begin() + 10);
  r.key_version = data[10];
  r.scp_identifier = data[11];
  r.sequence_counter = static_cast<std::uint16_t>((data[12] << 8) | data[13]);
  r.card_challenge.assign(data.begin() + 14, data.begin() + 20);
  r.card_cryptogram.assign(data.begin() + 20, data.end());
  return r;
}

Bytes Scp02InitUpdateResponse::to_bytes() const {
  Bytes out(key_diversification_data);
  out.push_back(key_version);
  out.push_back(scp_identifier);
  put_u16(out, sequence_counter);
  out.insert(out.end(), card_challenge.begin(), card_challenge.end());
  out.insert(out.end(), card_cryptogram.begin(), card_cryptogram.end());
  return out;
}

Result<Scp02InitUpdateResponse> scp02_expected_init_update_response(
    const StaticKeySet& static_keys, std::span<const std::uint8_t> kdd, std::uint8_t key_version,
    std::uint16_t sequence_counter, std::span<const std::uint8_t> host_challenge,
    std::span<const std::uint8_t> invoking_aid) {
  PF_TRY(check_length(kdd, 10, "key diversification data"));
  PF_ASSIGN_OR_RETURN(SecureBytes s_enc,
                      scp02_derive_session_key(static_keys.enc, kScp02ConstSEnc, sequence_counter));
  PF_ASSIGN_OR_RETURN(SecureBytes s_mac,
                      scp02_derive_session_key(static_keys.mac, kScp02ConstCMac, sequence_counter));
  Scp02InitUpdateResponse r;
  r.key_diversification_data.assign(kdd.begin(), kdd.end());
  r.key_version = key_version;
  r.scp_identifier = 0x02;
  r.sequence_counter = sequence_counter;
  PF_ASSIGN_OR_RETURN(r.card_challenge, scp02_pseudo_random_card_challenge(s_mac, invoking_aid));
  PF_ASSIGN_OR_RETURN(r.card_cryptogram,
                      scp02_card_cryptogram(s_enc, host_challenge, sequence_counter, r.card_challenge));
  return r;
}

Result<Bytes> scp02_encrypt_sensitive(const SecureBytes& s_dek, const SecureBytes& data) {
  if (data.empty() || data.size() % kDesBlockSize != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "sensitive data must be a non-empty multiple of 8 bytes (no padding is added), got " +
                     std::to_string(data.size()));
  }
  return tdes_ecb_encrypt(s_dek, data.reveal());
}

// ---- Scp02Session ----------------------------------------------------------------------

Result<Scp02Session> Scp02Session::open(const StaticKeySet& static_keys, Scp02Params params,
                                        std::span<const std::uint8_t> host_challenge,
                                        const Scp02InitUpdateResponse& response,
                                        std::span<const std::uint8_t> invoking_aid) {
  PF_TRY(check_params(params));
  PF_TRY(check_length(host_challenge, kScp02HostChallengeLength, "host challenge"));
  PF_TRY(check_length(response.card_challenge, kScp02CardChallengeLength, "card challenge"));
  PF_TRY(check_length(response.card_cryptogram, kScp02CryptogramLength, "card cryptogram"));
  Scp02Session s;
  s.params_ = params;
  s.sequence_counter_ = response.sequence_counter;
  PF_ASSIGN_OR_RETURN(s.keys_, scp02_session_keys(static_keys, response.sequence_counter));
  if ((params.i & kIPseudoRandom) != 0 && !invoking_aid.empty()) {
    PF_ASSIGN_OR_RETURN(Bytes expected, scp02_pseudo_random_card_challenge(s.keys_.cmac, invoking_aid));
    if (!constant_time_equal(expected, response.card_challenge)) {
      return Error(ErrorCode::kIntegrity,
                   "card challenge is not the pseudo-random one for this AID and sequence counter");
    }
  }
  PF_ASSIGN_OR_RETURN(Bytes card_cgram,
                      scp02_card_cryptogram(s.keys_.enc, host_challenge, response.sequence_counter,
                                            response.card_challenge));
  if (!constant_time_equal(card_cgram, response.card_cryptogram)) {
    return Error(ErrorCode::kIntegrity, "SCP02 card cryptogram does not verify (wrong keys or KVN?)");
  }
  PF_ASSIGN_OR_RETURN(s.host_cryptogram_,
                      scp02_host_cryptogram(s.keys_.enc, host_challenge, response.sequence_counter,
                                            response.card_challenge));
  return s;
}

Result<Scp02Session> Scp02Session::from_session_keys(Scp02SessionKeys keys, Scp02Params params,
                                                     std::uint16_t sequence_counter,
                                                     Bytes host_cryptogram) {
  PF_TRY(check_params(params));
  PF_TRY(check_length(host_cryptogram, kScp02CryptogramLength, "host cryptogram"));
  for (const SecureBytes* k : {&keys.enc, &keys.cmac, &keys.dek}) {
    if (k->size() != 16) {
      return Error(ErrorCode::kInvalidArgument, "SCP02 session keys must be 16 bytes");
    }
  }
  Scp02Session s;
  s.params_ = params;
  s.keys_ = std::move(keys);
  s.sequence_counter_ = sequence_counter;
  s.host_cryptogram_ = std::move(host_cryptogram);
  return s;
}

Result<Bytes> Scp02Session::next_icv() {
  if (last_cmac_.empty()) return zero_icv();
  if ((params_.i & kIIcvEncryption) == 0) return last_cmac_;
  return des_ecb_encrypt(keys_.cmac, last_cmac_);
}

Result<CommandApdu> Scp02Session::external_authenticate() {
  if (authenticated_ || !last_cmac_.empty()) {
    return Error(ErrorCode::kInvalidArgument, "EXTERNAL AUTHENTICATE already produced for this session");
  }
  Bytes mac_input = {0x84, 0x82, params_.security_level, 0x00, 0x10};
  mac_input.insert(mac_input.end(), host_cryptogram_.begin(), host_cryptogram_.end());
  PF_ASSIGN_OR_RETURN(Bytes cmac, retail_mac(keys_.cmac, zero_icv(), mac_input));
  Bytes data(host_cryptogram_);
  data.insert(data.end(), cmac.begin(), cmac.end());
  PF_ASSIGN_OR_RETURN(CommandApdu apdu,
                      CommandApdu::create(0x84, 0x82, params_.security_level, 0x00, data));
  last_cmac_ = std::move(cmac);
  authenticated_ = true;
  return apdu;
}

Status Scp02Session::check_wrappable(const CommandApdu& command) const {
  if (!authenticated_) {
    return Error(ErrorCode::kInvalidArgument, "SCP02: wrap() before EXTERNAL AUTHENTICATE");
  }
  const std::uint8_t cla = command.cla();
  if ((cla & 0x40) != 0 || (cla & kClaSecureMessaging) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "SCP02: cannot wrap CLA " + to_hex(std::span(&cla, 1)) +
                     " (further-interindustry class or secure messaging bit already set)");
  }
  return ok_status();
}

Result<CommandApdu> Scp02Session::wrap(const CommandApdu& command) {
  PF_TRY(check_wrappable(command));
  if (params_.security_level == kScp02LevelNone) return command;
  const std::uint8_t cla = command.cla();
  const Bytes& plain = command.data();
  const bool encrypt = params_.security_level == kScp02LevelCDecCMac && !plain.empty();
  const std::size_t wire_len =
      (encrypt ? pad80(plain, kDesBlockSize).size() : plain.size()) + kMacLength;
  if (plain.size() + kMacLength > kMaxShortApduData || wire_len > kMaxShortApduData) {
    return Error(ErrorCode::kInvalidArgument,
                 "SCP02: data of " + std::to_string(plain.size()) +
                     " bytes does not fit a short APDU once wrapped");
  }
  Bytes mac_input = {static_cast<std::uint8_t>((cla & ~kClaChannelBits) | kClaSecureMessaging),
                     command.ins(), command.p1(), command.p2(),
                     static_cast<std::uint8_t>(plain.size() + kMacLength)};
  mac_input.insert(mac_input.end(), plain.begin(), plain.end());
  PF_ASSIGN_OR_RETURN(Bytes icv, next_icv());
  PF_ASSIGN_OR_RETURN(Bytes cmac, retail_mac(keys_.cmac, icv, mac_input));
  Bytes data;
  if (encrypt) {
    PF_ASSIGN_OR_RETURN(data, tdes_cbc_encrypt(keys_.enc, zero_icv(), pad80(plain, kDesBlockSize)));
  } else {
    data = plain;
  }
  data.insert(data.end(), cmac.begin(), cmac.end());
  PF_ASSIGN_OR_RETURN(CommandApdu wrapped,
                      CommandApdu::create(static_cast<std::uint8_t>(cla | kClaSecureMessaging),
                                          command.ins(), command.p1(), command.p2(), data,
                                          command.le()));
  last_cmac_ = std::move(cmac);
  return wrapped;
}

Result<std::vector<CommandApdu>> Scp02Session::wrap_chained(const CommandApdu& command) {
  PF_TRY(check_wrappable(command));
  const Bytes& plain = command.data();
  const bool encrypt = params_.security_level == kScp02LevelCDecCMac && !plain.empty();
  const std::size_t body = encrypt ? pad80(plain, kDesBlockSize).size() : plain.size();
  if (params_.security_level == kScp02LevelNone ||
      (plain.size() + kMacLength <= kMaxShortApduData && body + kMacLength <= kMaxShortApduData)) {
    PF_ASSIGN_OR_RETURN(CommandApdu one, wrap(command));
    return std::vector<CommandApdu>{std::move(one)};
  }
  if ((command.p1() & 0x80) != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "SCP02: a command to chain must have P1 b8 clear (it marks the segments)");
  }
  if (body + kMacLength > kMaxExtendedApduData) {
    return Error(ErrorCode::kInvalidArgument, "SCP02: protected command data exceeds 65535 bytes");
  }
  const std::uint8_t cla = command.cla();
  const std::size_t lc = plain.size() + kMacLength;
  Bytes mac_input = {static_cast<std::uint8_t>((cla & ~kClaChannelBits) | kClaSecureMessaging),
                     command.ins(), command.p1(), command.p2(), 0x00,
                     static_cast<std::uint8_t>(lc >> 8), static_cast<std::uint8_t>(lc)};
  mac_input.insert(mac_input.end(), plain.begin(), plain.end());
  PF_ASSIGN_OR_RETURN(Bytes icv, next_icv());
  PF_ASSIGN_OR_RETURN(Bytes cmac, retail_mac(keys_.cmac, icv, mac_input));
  Bytes data;
  if (encrypt) {
    PF_ASSIGN_OR_RETURN(data, tdes_cbc_encrypt(keys_.enc, zero_icv(), pad80(plain, kDesBlockSize)));
  } else {
    data = plain;
  }
  data.insert(data.end(), cmac.begin(), cmac.end());
  PF_ASSIGN_OR_RETURN(CommandApdu whole,
                      CommandApdu::create(static_cast<std::uint8_t>(cla | kClaSecureMessaging),
                                          command.ins(), command.p1(), command.p2(), data,
                                          command.le()));
  PF_ASSIGN_OR_RETURN(std::vector<CommandApdu> segments, split_chained_command(whole, kMacLength));
  last_cmac_ = std::move(cmac);
  return segments;
}

Result<SecureBytes> Scp02Session::decrypt_command_data(const CommandApdu& wrapped) const {
  const Bytes& data = wrapped.data();
  if (data.size() < kMacLength) {
    return Error(ErrorCode::kParse, "wrapped command has no C-MAC");
  }
  const auto body = std::span(data).first(data.size() - kMacLength);
  if (params_.security_level != kScp02LevelCDecCMac || body.empty()) return SecureBytes(body);
  if (body.size() % kDesBlockSize != 0) {
    return Error(ErrorCode::kParse, "C-DEC ciphertext is not a multiple of 8 bytes");
  }
  PF_ASSIGN_OR_RETURN(SecureBytes plain, tdes_cbc_decrypt(keys_.enc, zero_icv(), body));
  PF_ASSIGN_OR_RETURN(std::size_t n, unpad80_length(plain.reveal()));
  return SecureBytes(plain.reveal().first(n));  // `plain` wipes itself, padding included
}

Result<Bytes> Scp02Session::encrypt_sensitive(const SecureBytes& data) const {
  return scp02_encrypt_sensitive(keys_.dek, data);
}

}  // namespace persoflow
