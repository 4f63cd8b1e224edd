#include "engine/scp03.h"

#include <algorithm>
#include <string>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "engine/key_types.h"
#include "engine/scp03_kdf.h"

namespace persoflow {
namespace {

constexpr std::size_t kKddLength = 10;
constexpr std::size_t kSequenceCounterLength = 3;
constexpr std::uint32_t kMaxSequenceCounter = 0xFFFFFF;
constexpr std::uint8_t kScp03Identifier = 0x03;
constexpr std::size_t kMinAid = 5;
constexpr std::size_t kMaxAid = 16;

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, "SCP03: " + std::move(message));
}

// hc || cc, both 8 (S8) or both 16 (S16) bytes.
Result<Bytes> challenge_context(std::span<const std::uint8_t> hc,
                                std::span<const std::uint8_t> cc) {
  if ((hc.size() != 8 && hc.size() != 16) || cc.size() != hc.size()) {
    return invalid("host and card challenges are " + std::to_string(hc.size()) + " and " +
                   std::to_string(cc.size()) + " bytes; expected both 8 (S8) or both 16 (S16)");
  }
  Bytes context(hc.begin(), hc.end());
  context.insert(context.end(), cc.begin(), cc.end());
  return context;
}

std::uint16_t bits_of(std::size_t bytes) { return static_cast<std::uint16_t>(bytes * 8); }

// A KDF output that is public (cryptogram, challenge).
Bytes public_copy(const SecureBytes& value) {
  const auto v = value.reveal();
  return Bytes(v.begin(), v.end());
}

// KDF(S-MAC, constant, L = the challenges' bits, hc || cc). `s_mac` is the key, or the
// session's schedule of it.
template <class Key>
Result<Bytes> cryptogram(Key& s_mac, Scp03Constant constant, std::span<const std::uint8_t> hc,
                         std::span<const std::uint8_t> cc) {
  PF_ASSIGN_OR_RETURN(Bytes context, challenge_context(hc, cc));
  PF_ASSIGN_OR_RETURN(SecureBytes out,
                      scp03_kdf(s_mac, static_cast<std::uint8_t>(constant), bits_of(hc.size()), context));
  return public_copy(out);
}

void push_u24(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

}  // namespace

std::size_t scp03_block_length(Scp03Mode mode) { return mode == Scp03Mode::kS16 ? 16 : 8; }

Status check_scp03_security_level(std::uint8_t level) {
  switch (level) {
    case 0x00:
    case 0x01:
    case 0x03:
    case 0x11:
    case 0x13:
    case 0x33:
      return ok_status();
    default:
      return invalid("security level " + to_hex(std::span<const std::uint8_t>(&level, 1)) +
                     " is not one of 00 01 03 11 13 33 (Amd D Table 7-3)");
  }
}

Result<Scp03SessionKeys> scp03_derive_session_keys(const SecureBytes& k_enc,
                                                   const SecureBytes& k_mac,
                                                   std::span<const std::uint8_t> host_challenge,
                                                   std::span<const std::uint8_t> card_challenge) {
  if (k_enc.size() != k_mac.size()) return invalid("K-ENC and K-MAC differ in length");
  PF_ASSIGN_OR_RETURN(Bytes context, challenge_context(host_challenge, card_challenge));
  const std::uint16_t l = bits_of(k_enc.size());
  Scp03SessionKeys keys;
  PF_ASSIGN_OR_RETURN(keys.s_enc, scp03_kdf(k_enc, Scp03Constant::kSEnc, l, context));
  PF_ASSIGN_OR_RETURN(keys.s_mac, scp03_kdf(k_mac, Scp03Constant::kSMac, l, context));
  PF_ASSIGN_OR_RETURN(keys.s_rmac, scp03_kdf(k_mac, Scp03Constant::kSRmac, l, context));
  return keys;
}

Result<Bytes> scp03_card_cryptogram(const SecureBytes& s_mac,
                                    std::span<const std::uint8_t> host_challenge,
                                    std::span<const std::uint8_t> card_challenge) {
  return cryptogram(s_mac, Scp03Constant::kCardCryptogram, host_challenge, card_challenge);
}

Result<Bytes> scp03_host_cryptogram(const SecureBytes& s_mac,
                                    std::span<const std::uint8_t> host_challenge,
                                    std::span<const std::uint8_t> card_challenge) {
  return cryptogram(s_mac, Scp03Constant::kHostCryptogram, host_challenge, card_challenge);
}

Result<Bytes> scp03_pseudo_random_card_challenge(const SecureBytes& k_enc,
                                                 std::uint32_t sequence_counter,
                                                 std::span<const std::uint8_t> aid,
                                                 Scp03Mode mode) {
  if (sequence_counter > kMaxSequenceCounter) return invalid("sequence counter exceeds 3 bytes");
  if (aid.size() < kMinAid || aid.size() > kMaxAid) {
    return invalid("AID of " + std::to_string(aid.size()) + " bytes; expected 5 to 16");
  }
  Bytes context;
  push_u24(context, sequence_counter);
  context.insert(context.end(), aid.begin(), aid.end());
  PF_ASSIGN_OR_RETURN(SecureBytes out, scp03_kdf(k_enc, Scp03Constant::kCardChallenge,
                                                 bits_of(scp03_block_length(mode)), context));
  return public_copy(out);
}

Result<CommandApdu> scp03_initialize_update(std::uint8_t kvn,
                                            std::span<const std::uint8_t> host_challenge) {
  if (host_challenge.size() != 8 && host_challenge.size() != 16) {
    return invalid("host challenge of " + std::to_string(host_challenge.size()) +
                   " bytes; expected 8 (S8) or 16 (S16)");
  }
  return CommandApdu::create(0x80, 0x50, kvn, 0x00, host_challenge, kMaxShortApduLe);
}

Result<Scp03InitUpdateResponse> Scp03InitUpdateResponse::parse(std::span<const std::uint8_t> data) {
  constexpr std::size_t kKeyInfo = kKddLength;  // KVN at 10, SCP id at 11, i at 12
  if (data.size() < kKeyInfo + 3) {
    return Error(ErrorCode::kParse, "SCP03 INITIALIZE UPDATE response of " +
                                        std::to_string(data.size()) +
                                        " bytes is too short for KDD and key information");
  }
  Scp03InitUpdateResponse r;
  r.kdd.assign(data.begin(), data.begin() + kKddLength);
  r.kvn = data[kKeyInfo];
  r.i = data[kKeyInfo + 2];
  if (data[kKeyInfo + 1] != kScp03Identifier) {
    return Error(ErrorCode::kParse, "SCP03 INITIALIZE UPDATE response names SCP " +
                                        to_hex(data.subspan(kKeyInfo + 1, 1)) + ", not 03");
  }
  const std::size_t n = scp03_block_length(r.mode());
  const bool pseudo = (r.i & kScp03IPseudoRandom) != 0;
  const std::size_t expected = kKeyInfo + 3 + 2 * n + (pseudo ? kSequenceCounterLength : 0);
  if (data.size() != expected) {
    return Error(ErrorCode::kParse, "SCP03 INITIALIZE UPDATE response is " +
                                        std::to_string(data.size()) +
                                        " bytes; i = " + to_hex(data.subspan(kKeyInfo + 2, 1)) +
                                        " needs " + std::to_string(expected));
  }
  std::size_t at = kKeyInfo + 3;
  r.card_challenge.assign(data.begin() + static_cast<std::ptrdiff_t>(at),
                          data.begin() + static_cast<std::ptrdiff_t>(at + n));
  at += n;
  r.card_cryptogram.assign(data.begin() + static_cast<std::ptrdiff_t>(at),
                           data.begin() + static_cast<std::ptrdiff_t>(at + n));
  at += n;
  if (pseudo) {
    r.sequence_counter = (static_cast<std::uint32_t>(data[at]) << 16) |
                         (static_cast<std::uint32_t>(data[at + 1]) << 8) | data[at + 2];
  }
  return r;
}

Bytes Scp03InitUpdateResponse::to_bytes() const {
  Bytes out(kdd);
  out.push_back(kvn);
  out.push_back(kScp03Identifier);
  out.push_back(i);
  out.insert(out.end(), card_challenge.begin(), card_challenge.end());
  out.insert(out.end(), card_cryptogram.begin(), card_cryptogram.end());
  if (sequence_counter.has_value()) push_u24(out, *sequence_counter);
  return out;
}

Result<Scp03InitUpdateResponse> scp03_expected_init_update_response(
    const SecureBytes& k_enc, const SecureBytes& k_mac, std::span<const std::uint8_t> kdd,
    std::uint8_t kvn, std::uint8_t i, std::uint32_t sequence_counter,
    std::span<const std::uint8_t> aid, std::span<const std::uint8_t> host_challenge) {
  if ((i & kScp03IPseudoRandom) == 0) {
    return invalid("the card challenge is predictable only in pseudo-random mode (i.b5 = 1)");
  }
  if (kdd.size() != kKddLength) return invalid("KDD must be 10 bytes");
  const Scp03Mode mode = scp03_mode_of(i);
  if (host_challenge.size() != scp03_block_length(mode)) {
    return invalid("host challenge length does not match the mode of i");
  }
  Scp03InitUpdateResponse r;
  r.kdd.assign(kdd.begin(), kdd.end());
  r.kvn = kvn;
  r.i = i;
  r.sequence_counter = sequence_counter;
  PF_ASSIGN_OR_RETURN(r.card_challenge,
                      scp03_pseudo_random_card_challenge(k_enc, sequence_counter, aid, mode));
  PF_ASSIGN_OR_RETURN(Scp03SessionKeys keys,
                      scp03_derive_session_keys(k_enc, k_mac, host_challenge, r.card_challenge));
  PF_ASSIGN_OR_RETURN(r.card_cryptogram,
                      scp03_card_cryptogram(keys.s_mac, host_challenge, r.card_challenge));
  return r;
}

Result<Scp03Session> Scp03Session::open(const SecureBytes& k_enc, const SecureBytes& k_mac,
                                        std::span<const std::uint8_t> host_challenge,
                                        const Scp03InitUpdateResponse& response,
                                        std::uint8_t security_level) {
  PF_TRY(check_scp03_security_level(security_level));
  if ((security_level & kScp03RMac) != 0 && (response.i & kScp03IRMac) == 0) {
    return invalid("security level asks for R-MAC but i does not offer it");
  }
  if ((security_level & kScp03REnc) != 0 && (response.i & kScp03IREnc) == 0) {
    return invalid("security level asks for R-ENCRYPTION but i does not offer it");
  }
  const Scp03Mode mode = response.mode();
  const std::size_t n = scp03_block_length(mode);
  if (host_challenge.size() != n || response.card_challenge.size() != n ||
      response.card_cryptogram.size() != n) {
    return invalid("challenge or cryptogram length does not match the mode of i");
  }
  PF_ASSIGN_OR_RETURN(Scp03SessionKeys keys, scp03_derive_session_keys(k_enc, k_mac, host_challenge,
                                                                       response.card_challenge));
  PF_ASSIGN_OR_RETURN(Bytes card,
                      scp03_card_cryptogram(keys.s_mac, host_challenge, response.card_challenge));
  if (!constant_time_equal(card, response.card_cryptogram)) {
    return Error(ErrorCode::kIntegrity,
                 "SCP03: card cryptogram does not verify (wrong static keys?)");
  }
  PF_ASSIGN_OR_RETURN(Bytes host,
                      scp03_host_cryptogram(keys.s_mac, host_challenge, response.card_challenge));
  return Scp03Session(std::move(keys), mode, security_level, std::move(host));
}

Result<Scp03Session> Scp03Session::from_session_keys(Scp03SessionKeys keys, std::uint8_t i,
                                                     std::uint8_t security_level,
                                                     Bytes host_cryptogram) {
  PF_TRY(check_scp03_security_level(security_level));
  if ((security_level & kScp03RMac) != 0 && (i & kScp03IRMac) == 0) {
    return invalid("security level asks for R-MAC but i does not offer it");
  }
  if ((security_level & kScp03REnc) != 0 && (i & kScp03IREnc) == 0) {
    return invalid("security level asks for R-ENCRYPTION but i does not offer it");
  }
  const Scp03Mode mode = scp03_mode_of(i);
  if (host_cryptogram.size() != scp03_block_length(mode)) {
    return invalid("host cryptogram length does not match the mode of i");
  }
  PF_TRY_CTX(check_aes_key(keys.s_enc), "SCP03 S-ENC");
  PF_TRY_CTX(check_aes_key(keys.s_mac), "SCP03 S-MAC");
  return Scp03Session(std::move(keys), mode, security_level, std::move(host_cryptogram));
}

Result<Scp03Session> Scp03Session::from_session_keys_and_challenges(Scp03SessionKeys keys, std::uint8_t i,
                                                                    std::uint8_t security_level,
                                                                    std::span<const std::uint8_t> host_challenge,
                                                                    std::span<const std::uint8_t> card_challenge,
                                                                    Bytes& card_cryptogram) {
  const std::size_t n = scp03_block_length(scp03_mode_of(i));
  if (host_challenge.size() != n) return invalid("the challenges' length does not match the mode of i");
  // A placeholder of the right length: the real one needs the session's S-MAC schedule.
  PF_ASSIGN_OR_RETURN(Scp03Session session, from_session_keys(std::move(keys), i, security_level, Bytes(n)));
  PF_ASSIGN_OR_RETURN(AesKeySchedule * mac, session.mac_schedule());
  PF_ASSIGN_OR_RETURN(card_cryptogram, cryptogram(*mac, Scp03Constant::kCardCryptogram, host_challenge, card_challenge));
  PF_ASSIGN_OR_RETURN(session.host_cryptogram_,
                      cryptogram(*mac, Scp03Constant::kHostCryptogram, host_challenge, card_challenge));
  return session;
}

Result<AesKeySchedule*> Scp03Session::mac_schedule() {
  if (!mac_schedule_) {
    PF_ASSIGN_OR_RETURN(AesKeySchedule schedule, AesKeySchedule::create(keys_.s_mac));
    mac_schedule_ = std::make_shared<AesKeySchedule>(std::move(schedule));
  }
  return mac_schedule_.get();
}

Result<CommandApdu> Scp03Session::mac_and_build(const CommandApdu& plain,
                                                std::span<const std::uint8_t> data) {
  const std::size_t mac_len = scp03_block_length(mode_);
  const std::size_t lc = data.size() + mac_len;
  if (lc > kMaxExtendedApduData) return invalid("protected command data exceeds 65535 bytes");
  const auto le = plain.le();
  const bool extended = plain.form() == LengthForm::kExtended || lc > kMaxShortApduData ||
                        (le.has_value() && *le > kMaxShortApduLe);
  const std::uint8_t cla = static_cast<std::uint8_t>(plain.cla() | 0x04);

  Bytes input;
  input.reserve(chaining_.size() + 7 + data.size());
  input.assign(chaining_.begin(), chaining_.end());
  input.push_back(static_cast<std::uint8_t>(cla & 0xFC));  // logical channel bits cleared
  input.push_back(plain.ins());
  input.push_back(plain.p1());
  input.push_back(plain.p2());
  if (extended) {
    input.push_back(0x00);
    input.push_back(static_cast<std::uint8_t>(lc >> 8));
  }
  input.push_back(static_cast<std::uint8_t>(lc));
  input.insert(input.end(), data.begin(), data.end());
  PF_ASSIGN_OR_RETURN(AesKeySchedule * mac, mac_schedule());
  PF_TRY(mac->cmac_into(input, chaining_));  // the full CMAC is the next chaining value

  Bytes& out = input;  // reused: data || C-MAC
  out.assign(data.begin(), data.end());
  out.insert(out.end(), chaining_.begin(), chaining_.begin() + static_cast<std::ptrdiff_t>(mac_len));
  return CommandApdu::create(cla, plain.ins(), plain.p1(), plain.p2(), out, le,
                             extended ? ApduEncoding::kForceExtended : ApduEncoding::kAuto);
}

Result<CommandApdu> Scp03Session::external_authenticate() {
  if (authenticated_) return invalid("EXTERNAL AUTHENTICATE was already built for this session");
  PF_ASSIGN_OR_RETURN(CommandApdu plain,
                      CommandApdu::create(0x80, 0x82, level_, 0x00, host_cryptogram_));
  PF_ASSIGN_OR_RETURN(CommandApdu apdu, mac_and_build(plain, plain.data()));
  authenticated_ = true;
  return apdu;
}

Status Scp03Session::check_wrappable(const CommandApdu& plain) const {
  if (!authenticated_) return invalid("wrap() before EXTERNAL AUTHENTICATE");
  const std::uint8_t plain_cla = plain.cla();
  if ((plain_cla & 0x4C) != 0) {
    return invalid(
        "CLA " + to_hex(std::span<const std::uint8_t>(&plain_cla, 1)) +
        " is already secure messaging or further interindustry; expected 00..03 or 80..83");
  }
  return ok_status();
}

Result<Bytes> Scp03Session::encrypt_data(std::span<const std::uint8_t> data,
                                         std::uint64_t counter) {
  Bytes counter_block(kAesBlockSize, 0x00);
  for (std::size_t b = 0; b < 8; ++b) {
    counter_block[kAesBlockSize - 1 - b] = static_cast<std::uint8_t>(counter >> (8 * b));
  }
  if (!enc_schedule_) {
    PF_ASSIGN_OR_RETURN(AesKeySchedule schedule, AesKeySchedule::create(keys_.s_enc));
    enc_schedule_ = std::make_shared<AesKeySchedule>(std::move(schedule));
  }
  PF_ASSIGN_OR_RETURN(Bytes icv, enc_schedule_->ecb_encrypt(counter_block));
  return enc_schedule_->cbc_encrypt(icv, pad80(data, kAesBlockSize));
}

Result<CommandApdu> Scp03Session::wrap(const CommandApdu& plain) {
  PF_TRY(check_wrappable(plain));
  const std::uint64_t counter = counter_++;  // every command advances it (Amd D §6.2.6)
  if (level_ == 0x00) return plain;
  if ((level_ & kScp03CDec) == 0 || plain.data().empty()) return mac_and_build(plain, plain.data());
  PF_ASSIGN_OR_RETURN(Bytes cipher, encrypt_data(plain.data(), counter));
  return mac_and_build(plain, cipher);
}

Result<std::vector<CommandApdu>> Scp03Session::wrap_chained(const CommandApdu& plain) {
  PF_TRY(check_wrappable(plain));
  const std::size_t mac_len = scp03_block_length(mode_);
  const bool encrypt = (level_ & kScp03CDec) != 0 && !plain.data().empty();
  // pad80 adds 1..16 bytes: up to the next whole block.
  const std::size_t body =
      encrypt ? (plain.data().size() / kAesBlockSize + 1) * kAesBlockSize : plain.data().size();
  if (level_ == 0x00 || body + mac_len <= kMaxShortApduData) {
    PF_ASSIGN_OR_RETURN(CommandApdu one, wrap(plain));
    return std::vector<CommandApdu>{std::move(one)};
  }
  if ((plain.p1() & 0x80) != 0) {
    return invalid("a command to chain must have P1 b8 clear (it marks the segments)");
  }
  if (body + mac_len > kMaxExtendedApduData) {
    return invalid("protected command data exceeds 65535 bytes");
  }
  const std::uint64_t counter = counter_++;  // once for the whole command
  Bytes data;
  if (encrypt) {
    PF_ASSIGN_OR_RETURN(data, encrypt_data(plain.data(), counter));
  } else {
    data = plain.data();
  }
  // The unsegmented command, MACed as one extended APDU; mac_and_build codes Lc' on
  // 3 bytes because it does not fit 255.
  PF_ASSIGN_OR_RETURN(CommandApdu whole, mac_and_build(plain, data));
  return split_chained_command(whole, mac_len);
}
Result<std::vector<CommandApdu>> split_chained_command(const CommandApdu& whole,
                                                       std::size_t mac_length) {
  const Bytes& data = whole.data();
  if (data.size() <= kMaxShortApduData) return invalid("a command that fits one APDU is not chained");
  if (mac_length == 0 || mac_length > kMaxShortApduData) return invalid("C-MAC length out of range");
  // Full segments first; the last is moved forward when it would cut the C-MAC in two.
  const std::size_t count = (data.size() + kMaxShortApduData - 1) / kMaxShortApduData;
  std::vector<std::size_t> sizes(count, kMaxShortApduData);
  sizes.back() = data.size() - kMaxShortApduData * (count - 1);
  if (sizes.back() < mac_length) {
    const std::size_t shift = mac_length - sizes.back();
    sizes[count - 2] -= shift;
    sizes.back() += shift;
  }
  std::vector<CommandApdu> out;
  out.reserve(count);
  std::size_t at = 0;
  for (std::size_t k = 0; k < count; ++k) {
    const bool last = k + 1 == count;
    const auto part = std::span<const std::uint8_t>(data).subspan(at, sizes[k]);
    at += sizes[k];
    PF_ASSIGN_OR_RETURN(CommandApdu segment,
                        CommandApdu::create(whole.cla(), whole.ins(),
                                            static_cast<std::uint8_t>(last ? whole.p1() : whole.p1() | 0x80),
                                            whole.p2(), part, last ? whole.le() : std::nullopt));
    out.push_back(std::move(segment));
  }
  return out;
}

Result<Bytes> scp03_encrypt_sensitive(const SecureBytes& k_dek,
                                      std::span<const std::uint8_t> data) {
  const std::array<std::uint8_t, kAesBlockSize> zero_icv{};
  PF_ASSIGN_OR_RETURN(Bytes out, aes_cbc_encrypt(k_dek, zero_icv, data));
  return out;
}

Result<Bytes> scp03_encrypt_key(const SecureBytes& k_dek, const SecureBytes& key) {
  PF_TRY_CTX(check_aes_key(key), "SCP03 key to load");
  SecureBytes padded(key);
  if (padded.size() % kAesBlockSize != 0) padded.resize(padded.size() + 8);  // 24 -> 32, 00 x 8
  return scp03_encrypt_sensitive(k_dek, padded.reveal());
}

Result<Bytes> aes_kcv(const SecureBytes& key) {
  PF_ASSIGN_OR_RETURN(Bytes block, aes_ecb_encrypt(key, kcv_block(KeyFamily::kAes)));
  block.resize(kKcvLength);
  return block;
}

Result<Bytes> scp03_put_key_component_from(std::size_t key_length, std::span<const std::uint8_t> cipher,
                                           std::span<const std::uint8_t> kcv, PutKeyComponentFormat format) {
  if (key_length != 16 && key_length != 24 && key_length != 32) {
    return invalid("an AES key of " + std::to_string(key_length) + " bytes (16, 24 or 32)");
  }
  const std::size_t padded_length = (key_length + kAesBlockSize - 1) / kAesBlockSize * kAesBlockSize;
  if (cipher.size() != padded_length) {
    return invalid("an encrypted AES-" + std::to_string(key_length * 8) + " key of " + std::to_string(cipher.size()) +
                   " bytes (expected " + std::to_string(padded_length) + ")");
  }
  if (kcv.size() != kKcvLength) return invalid("a KCV of " + std::to_string(kcv.size()) + " bytes (expected 3)");
  const bool padded = cipher.size() != key_length;
  const bool length_byte = format == PutKeyComponentFormat::kAmdDTable710 || padded;
  Bytes out{0x88};
  out.push_back(static_cast<std::uint8_t>(cipher.size() + (length_byte ? 1 : 0)));
  if (length_byte) out.push_back(static_cast<std::uint8_t>(key_length));
  out.insert(out.end(), cipher.begin(), cipher.end());
  out.push_back(static_cast<std::uint8_t>(kKcvLength));
  out.insert(out.end(), kcv.begin(), kcv.end());
  return out;
}

Result<Bytes> scp03_put_key_component(const SecureBytes& k_dek, const SecureBytes& key,
                                      PutKeyComponentFormat format) {
  PF_TRY_CTX(check_aes_key(key), "SCP03 key to load");
  PF_ASSIGN_OR_RETURN(Bytes cipher, scp03_encrypt_key(k_dek, key));
  PF_ASSIGN_OR_RETURN(Bytes kcv, aes_kcv(key));
  return scp03_put_key_component_from(key.size(), cipher, kcv, format);
}

Result<Bytes> scp03_put_key_set_data(const SecureBytes& k_dek, std::uint8_t new_kvn,
                                     const SecureBytes& new_enc, const SecureBytes& new_mac,
                                     const SecureBytes& new_dek, PutKeyComponentFormat format) {
  if (new_enc.size() != new_mac.size() || new_enc.size() != new_dek.size()) {
    return invalid("the keys of one key set must have the same length");
  }
  Bytes out{new_kvn};
  for (const SecureBytes* key : {&new_enc, &new_mac, &new_dek}) {
    PF_ASSIGN_OR_RETURN(Bytes component, scp03_put_key_component(k_dek, *key, format));
    out.insert(out.end(), component.begin(), component.end());
  }
  return out;
}

}  // namespace persoflow
