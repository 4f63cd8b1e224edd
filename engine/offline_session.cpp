// Offline SCP03 / SCP02 sessions (engine/offline_session.h) over CardKeys: the static
// keys are used only through that interface (KDF blocks MACed, session-key blocks
// encrypted, K-DEK encryption); everything after the session keys is the clear-key code
// of engine/scp03.h and engine/scp02.h, so the bytes are the same wherever the keys live.
#include "engine/offline_session.h"

#include <string>

#include "engine/aes_cbc.h"
#include "engine/aes_cmac.h"
#include "engine/des_mac.h"
#include "engine/scp02.h"
#include "engine/scp03.h"
#include "engine/scp03_kdf.h"

namespace persoflow {
namespace {

constexpr std::size_t kMinAid = 5;
constexpr std::size_t kMaxAid = 16;

Error invalid(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

std::string hex_byte(std::uint8_t b) { return to_hex(std::span<const std::uint8_t>(&b, 1)); }

Status check_common(const ChannelParams& p) {
  if (p.kdd.size() != kKddLength) {
    return invalid("offline session: KDD must be 10 bytes, got " + std::to_string(p.kdd.size()));
  }
  return ok_status();
}

Status check_aid(const ChannelParams& p) {
  if (p.aid.size() < kMinAid || p.aid.size() > kMaxAid) {
    return invalid("offline session: the AID of a pseudo-random card challenge is 5 to 16 bytes, got " +
                   std::to_string(p.aid.size()));
  }
  return ok_status();
}

// ---- SCP03 -------------------------------------------------------------------------------

// SP 800-108 counter mode with the CMAC under the static key in `keys`: as many blocks
// as L needs (one for 64/128 bits, two for AES-192/256 session keys).
Result<SecureBytes> scp03_kdf_via(CardKeys& keys, CardKeyRole role, Scp03Constant constant,
                                  std::uint16_t l_bits, std::span<const std::uint8_t> context) {
  const std::size_t out_len = l_bits / 8u;
  const std::size_t blocks = (out_len + kAesBlockSize - 1) / kAesBlockSize;
  SecureBytes out;
  for (std::size_t i = 1; i <= blocks; ++i) {
    const Bytes input = scp03_kdf_input(static_cast<std::uint8_t>(constant), l_bits,
                                        static_cast<std::uint8_t>(i), context);
    PF_ASSIGN_OR_RETURN(SecureBytes block, keys.aes_cmac(role, input));
    if (block.size() != kAesBlockSize) {
      return Error(ErrorCode::kInternal, "SCP03 KDF: the CMAC is not 16 bytes");
    }
    out.append(block.reveal());
  }
  out.resize(out_len);
  return out;
}

class Scp03Offline final : public OfflineSession {
 public:
  Scp03Offline(CommandApdu iu, Bytes response, CommandApdu ext, Scp03Session session, CardKeys& keys)
      : OfflineSession(std::move(iu), std::move(response), std::move(ext)),
        session_(std::move(session)),
        keys_(keys) {}

  Result<CommandApdu> wrap(const CommandApdu& plain) override { return session_.wrap(plain); }
  Result<std::vector<CommandApdu>> wrap_chained(const CommandApdu& plain) override {
    return session_.wrap_chained(plain);
  }
  // Static K-DEK, zero ICV (Amd D §6.2.8): whole blocks as they are (16/32-byte keys),
  // anything else padded with 80 00.. first.
  Result<Bytes> encrypt_sensitive(std::span<const std::uint8_t> data) override {
    if (data.empty()) return invalid("SCP03: no sensitive data to encrypt");
    const bool whole_blocks = data.size() % kAesBlockSize == 0;
    const SecureBytes padded = whole_blocks ? SecureBytes(data) : pad80_secret(data, kAesBlockSize);
    PF_ASSIGN_OR_RETURN(SecureBytes cipher, keys_.cbc_encrypt(CardKeyRole::kDek, padded.reveal()));
    const auto c = cipher.reveal();
    return Bytes(c.begin(), c.end());  // ciphertext: public
  }

 private:
  Scp03Session session_;
  CardKeys& keys_;
};

Result<std::unique_ptr<OfflineSession>> open_scp03(CardKeys& keys, const ChannelParams& p) {
  if (key_family(keys.type()) != KeyFamily::kAes) {
    return invalid("SCP03 needs AES card keys, got " + std::string(key_type_name(keys.type())));
  }
  if (p.level == 0x00) return invalid("SCP03 security level 00 protects nothing; use 01 03 11 13 33");
  PF_TRY(check_scp03_security_level(p.level));
  const Scp03Mode mode = scp03_mode_of(p.i);
  const std::size_t n = scp03_block_length(mode);
  const auto l_challenge = static_cast<std::uint16_t>(n * 8);
  if (p.host_challenge.size() != n) {
    return invalid("SCP03 i " + hex_byte(p.i) + ": the host challenge is " + std::to_string(n) +
                   " bytes, got " + std::to_string(p.host_challenge.size()));
  }
  if (p.counter > 0xFFFFFF) return invalid("SCP03 sequence counter exceeds 3 bytes");
  const bool pseudo_random = (p.i & kScp03IPseudoRandom) != 0;

  Bytes card_challenge;
  if (p.card_challenge) {
    if (p.card_challenge->size() != n) {
      return invalid("SCP03 i " + hex_byte(p.i) + ": the card challenge is " + std::to_string(n) +
                     " bytes, got " + std::to_string(p.card_challenge->size()));
    }
    card_challenge = *p.card_challenge;
  } else {
    if (!pseudo_random) {
      return invalid("SCP03 i " + hex_byte(p.i) +
                     " has no pseudo-random card challenge (b5 = 0): the card challenge must be given");
    }
    PF_TRY(check_aid(p));
    Bytes context = {static_cast<std::uint8_t>(p.counter >> 16), static_cast<std::uint8_t>(p.counter >> 8),
                     static_cast<std::uint8_t>(p.counter)};
    context.insert(context.end(), p.aid.begin(), p.aid.end());
    PF_ASSIGN_OR_RETURN(SecureBytes challenge, scp03_kdf_via(keys, CardKeyRole::kEnc,
                                                             Scp03Constant::kCardChallenge, l_challenge,
                                                             context));
    card_challenge.assign(challenge.reveal().begin(), challenge.reveal().end());  // public
  }

  Bytes context(p.host_challenge);
  context.insert(context.end(), card_challenge.begin(), card_challenge.end());
  const auto l_key = static_cast<std::uint16_t>(key_bits(keys.type()));
  Scp03SessionKeys session_keys;
  PF_ASSIGN_OR_RETURN(session_keys.s_enc,
                      scp03_kdf_via(keys, CardKeyRole::kEnc, Scp03Constant::kSEnc, l_key, context));
  PF_ASSIGN_OR_RETURN(session_keys.s_mac,
                      scp03_kdf_via(keys, CardKeyRole::kMac, Scp03Constant::kSMac, l_key, context));
  // S-RMAC only serves R-MAC levels; responses are never seen offline, but the level is
  // declared to the card and a verifier may want the key.
  if ((p.level & kScp03RMac) != 0) {
    PF_ASSIGN_OR_RETURN(session_keys.s_rmac,
                        scp03_kdf_via(keys, CardKeyRole::kMac, Scp03Constant::kSRmac, l_key, context));
  }

  Scp03InitUpdateResponse response;
  response.kdd = p.kdd;
  response.kvn = p.kvn;
  response.i = p.i;
  response.card_challenge = card_challenge;
  if (pseudo_random) response.sequence_counter = p.counter;
  // The card and host cryptograms, on the S-MAC schedule the session's C-MACs use.
  PF_ASSIGN_OR_RETURN(Scp03Session session,
                      Scp03Session::from_session_keys_and_challenges(std::move(session_keys), p.i, p.level,
                                                                     p.host_challenge, card_challenge,
                                                                     response.card_cryptogram));

  PF_ASSIGN_OR_RETURN(CommandApdu init_update, scp03_initialize_update(p.requested_kvn, p.host_challenge));
  PF_ASSIGN_OR_RETURN(CommandApdu ext_auth, session.external_authenticate());
  return std::unique_ptr<OfflineSession>(new Scp03Offline(std::move(init_update), response.to_bytes(),
                                                          std::move(ext_auth), std::move(session), keys));
}

// ---- SCP02 -------------------------------------------------------------------------------

constexpr std::uint8_t kScp02IPseudoRandom = 0x40;  // i.b7

class Scp02Offline final : public OfflineSession {
 public:
  Scp02Offline(CommandApdu iu, Bytes response, CommandApdu ext, Scp02Session session)
      : OfflineSession(std::move(iu), std::move(response), std::move(ext)), session_(std::move(session)) {}

  Result<CommandApdu> wrap(const CommandApdu& plain) override { return session_.wrap(plain); }
  Result<std::vector<CommandApdu>> wrap_chained(const CommandApdu& plain) override {
    return session_.wrap_chained(plain);
  }
  // 3DES-ECB under S-DEK, no padding (GPC E.4.7): the data must be whole 8-byte blocks.
  Result<Bytes> encrypt_sensitive(std::span<const std::uint8_t> data) override {
    return session_.encrypt_sensitive(SecureBytes(data));
  }

 private:
  Scp02Session session_;
};

// constant(2) || sequence counter(2) || 00 x 12, encrypted 3DES-CBC with a zero ICV.
Result<SecureBytes> scp02_session_key_via(CardKeys& keys, CardKeyRole role, std::uint16_t constant,
                                          std::uint16_t seq) {
  Bytes data(16, 0x00);
  data[0] = static_cast<std::uint8_t>(constant >> 8);
  data[1] = static_cast<std::uint8_t>(constant);
  data[2] = static_cast<std::uint8_t>(seq >> 8);
  data[3] = static_cast<std::uint8_t>(seq);
  PF_ASSIGN_OR_RETURN(SecureBytes key, keys.cbc_encrypt(role, data));
  if (key.size() != 16) return Error(ErrorCode::kInternal, "SCP02 session key is not 16 bytes");
  return key;
}

Result<std::unique_ptr<OfflineSession>> open_scp02(CardKeys& keys, const ChannelParams& p) {
  if (keys.type() != KeyType::kDes2) {
    return invalid("SCP02 needs 2-key 3DES (16-byte) card keys, got " + std::string(key_type_name(keys.type())));
  }
  if (p.level != kScp02LevelCMac && p.level != kScp02LevelCDecCMac) {
    return invalid("SCP02 security level " + hex_byte(p.level) + " is not served offline (01 or 03)");
  }
  if (p.host_challenge.size() != kScp02HostChallengeLength) {
    return invalid("SCP02: the host challenge is 8 bytes, got " + std::to_string(p.host_challenge.size()));
  }
  if (p.counter > 0xFFFF) return invalid("SCP02 sequence counter exceeds 2 bytes");
  const bool pseudo_random = (p.i & kScp02IPseudoRandom) != 0;
  if (p.card_challenge) {
    if (p.card_challenge->size() != kScp02CardChallengeLength) {
      return invalid("SCP02: the card challenge is 6 bytes, got " + std::to_string(p.card_challenge->size()));
    }
  } else if (!pseudo_random) {
    return invalid("SCP02 i " + hex_byte(p.i) +
                   " has no pseudo-random card challenge (b7 = 0): the card challenge must be given");
  } else {
    PF_TRY(check_aid(p));
  }
  const auto seq = static_cast<std::uint16_t>(p.counter);

  Scp02SessionKeys session_keys;
  PF_ASSIGN_OR_RETURN(session_keys.enc, scp02_session_key_via(keys, CardKeyRole::kEnc, kScp02ConstSEnc, seq));
  PF_ASSIGN_OR_RETURN(session_keys.cmac, scp02_session_key_via(keys, CardKeyRole::kMac, kScp02ConstCMac, seq));
  PF_ASSIGN_OR_RETURN(session_keys.dek, scp02_session_key_via(keys, CardKeyRole::kDek, kScp02ConstDek, seq));
  // No R-MAC key: SCP02 R-MAC levels are not served.

  Scp02InitUpdateResponse response;
  response.key_diversification_data = p.kdd;
  response.key_version = p.kvn;
  response.scp_identifier = 0x02;
  response.sequence_counter = seq;
  if (p.card_challenge) {
    response.card_challenge = *p.card_challenge;
  } else {
    PF_ASSIGN_OR_RETURN(response.card_challenge, scp02_pseudo_random_card_challenge(session_keys.cmac, p.aid));
  }
  PF_ASSIGN_OR_RETURN(response.card_cryptogram,
                      scp02_card_cryptogram(session_keys.enc, p.host_challenge, seq, response.card_challenge));
  PF_ASSIGN_OR_RETURN(Bytes host_cryptogram,
                      scp02_host_cryptogram(session_keys.enc, p.host_challenge, seq, response.card_challenge));

  PF_ASSIGN_OR_RETURN(CommandApdu init_update, scp02_initialize_update(p.requested_kvn, p.host_challenge));
  Scp02Params params;
  params.i = p.i;
  params.security_level = p.level;
  PF_ASSIGN_OR_RETURN(Scp02Session session, Scp02Session::from_session_keys(std::move(session_keys), params, seq,
                                                                            std::move(host_cryptogram)));
  PF_ASSIGN_OR_RETURN(CommandApdu ext_auth, session.external_authenticate());
  return std::unique_ptr<OfflineSession>(
      new Scp02Offline(std::move(init_update), response.to_bytes(), std::move(ext_auth), std::move(session)));
}

}  // namespace

Result<std::unique_ptr<OfflineSession>> open_offline_session(CardKeys& keys, const ChannelParams& params) {
  PF_TRY(check_common(params));
  switch (params.scp) {
    case 3:
      return open_scp03(keys, params);
    case 2:
      return open_scp02(keys, params);
    default:
      return invalid("offline session: SCP " + std::to_string(params.scp) + " is not 02 or 03");
  }
}

}  // namespace persoflow
