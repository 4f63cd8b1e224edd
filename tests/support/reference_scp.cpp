// Reference SCP03/SCP02 verifier: OpenSSL EVP and the standard library only, written from
// ../shared/design/gp-reference.md. Deliberately includes nothing from engine/.
#include "tests/support/reference_scp.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <utility>

namespace persoflow::test {
namespace {

// ---------------------------------------------------------------------------------------
// OpenSSL primitives

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;
using MacPtr = std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)>;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("reference_scp: " + what);
}

// 3DES keys as 24 bytes (K1 K2 K1 for 2-key); single DES as K1 K1 K1, so that the default
// provider (no legacy DES-ECB) is enough.
ByteVec tdes_key24(const ByteVec& key) {
  if (key.size() == 24) return key;
  if (key.size() != 16) fail("3DES key must be 16 or 24 bytes, got " + std::to_string(key.size()));
  ByteVec k(key);
  k.insert(k.end(), key.begin(), key.begin() + 8);
  return k;
}

ByteVec des1_key24(const ByteVec& key) {
  if (key.size() < 8) fail("DES key shorter than 8 bytes");
  ByteVec k;
  for (int r = 0; r < 3; ++r) k.insert(k.end(), key.begin(), key.begin() + 8);
  return k;
}

const EVP_CIPHER* cipher_for(RefCipher c, bool cbc, std::size_t key_len) {
  if (c == RefCipher::kAes) {
    switch (key_len) {
      case 16:
        return cbc ? EVP_aes_128_cbc() : EVP_aes_128_ecb();
      case 24:
        return cbc ? EVP_aes_192_cbc() : EVP_aes_192_ecb();
      case 32:
        return cbc ? EVP_aes_256_cbc() : EVP_aes_256_ecb();
      default:
        fail("AES key must be 16, 24 or 32 bytes, got " + std::to_string(key_len));
    }
  }
  return cbc ? EVP_des_ede3_cbc() : EVP_des_ede3_ecb();
}

std::size_t block_of(RefCipher c) { return c == RefCipher::kAes ? 16 : 8; }

ByteVec run_cipher(RefCipher c, bool cbc, bool encrypt, const ByteVec& key_in, const ByteVec& iv,
                   const ByteVec& data) {
  const ByteVec key = c == RefCipher::kAes
                          ? key_in
                          : (c == RefCipher::kTdes ? tdes_key24(key_in) : des1_key24(key_in));
  const std::size_t bs = block_of(c);
  if (data.size() % bs != 0) fail("cipher input not a multiple of the block size");
  if (cbc && iv.size() != bs) fail("IV must be one block");
  const EVP_CIPHER* cipher = cipher_for(c, cbc, key.size());
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  ByteVec out(data.size() + bs);
  int len = 0;
  int total = 0;
  if (!ctx ||
      EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key.data(), cbc ? iv.data() : nullptr,
                        encrypt ? 1 : 0) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_CipherUpdate(ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())) !=
          1) {
    fail("OpenSSL cipher failed");
  }
  total = len;
  if (EVP_CipherFinal_ex(ctx.get(), out.data() + total, &len) != 1)
    fail("OpenSSL cipher final failed");
  total += len;
  out.resize(static_cast<std::size_t>(total));
  return out;
}

ByteVec cmac(const char* cipher_name, const ByteVec& key, const ByteVec& data) {
  MacPtr mac(EVP_MAC_fetch(nullptr, "CMAC", nullptr), EVP_MAC_free);
  if (!mac) fail("OpenSSL has no CMAC");
  MacCtx ctx(EVP_MAC_CTX_new(mac.get()), EVP_MAC_CTX_free);
  std::string name(cipher_name);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, name.data(), 0),
                         OSSL_PARAM_construct_end()};
  ByteVec out(16);
  std::size_t len = 0;
  if (!ctx || EVP_MAC_init(ctx.get(), key.data(), key.size(), params) != 1 ||
      EVP_MAC_update(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1) {
    fail("OpenSSL CMAC failed");
  }
  out.resize(len);
  return out;
}

ByteVec cat(std::initializer_list<ByteVec> parts) {
  ByteVec out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

ByteVec slice(const ByteVec& b, std::size_t from, std::size_t len) {
  if (from + len > b.size()) fail("slice out of range");
  return ByteVec(b.begin() + static_cast<std::ptrdiff_t>(from),
                 b.begin() + static_cast<std::ptrdiff_t>(from + len));
}

ByteVec be(std::uint64_t v, std::size_t n) {
  ByteVec out(n);
  for (std::size_t k = 0; k < n && k < 8; ++k)
    out[n - 1 - k] = static_cast<std::uint8_t>(v >> (8 * k));
  return out;
}

void set_odd_parity(ByteVec& key) {
  for (auto& b : key) {
    int ones = 0;
    for (int bit = 1; bit < 8; ++bit) ones += (b >> bit) & 1;
    b = static_cast<std::uint8_t>((b & 0xFE) | ((ones % 2 == 0) ? 1 : 0));
  }
}

// Removes ISO 9797-1 method 2 padding; nullopt when the data does not end with 80 00..
// inside its last block.
std::optional<ByteVec> unpad80(const ByteVec& data, std::size_t block) {
  std::size_t k = data.size();
  while (k > 0 && data.size() - k < block && data[k - 1] == 0x00) --k;
  if (k == 0 || data[k - 1] != 0x80 || data.size() - (k - 1) > block) return std::nullopt;
  return ByteVec(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(k - 1));
}

// ---------------------------------------------------------------------------------------
// Session derivation

bool scp03_s16(const RefSessionInput& in) { return (in.i & 0x01) != 0; }
bool scp03_pseudo_random(const RefSessionInput& in) { return (in.i & 0x10) != 0; }
bool scp02_pseudo_random(const RefSessionInput& in) { return (in.i & 0x40) != 0; }

std::size_t challenge_len(const RefSessionInput& in) {
  return in.scp == 3 && scp03_s16(in) ? 16 : 8;
}

void check_input(const RefStaticKeys& keys, const RefSessionInput& in) {
  if (in.scp != 2 && in.scp != 3) fail("scp must be 2 or 3");
  if (in.kdd.size() != 10) fail("KDD must be 10 bytes");
  if (in.host_challenge.size() != challenge_len(in)) {
    fail("host challenge must be " + std::to_string(challenge_len(in)) + " bytes");
  }
  if (in.scp == 3) {
    for (const ByteVec* k : {&keys.enc, &keys.mac, &keys.dek}) {
      if (k->size() != 16 && k->size() != 24 && k->size() != 32)
        fail("SCP03 keys must be AES keys");
    }
    if (keys.enc.size() != keys.mac.size()) fail("SCP03 K-ENC and K-MAC lengths differ");
    if (in.counter > 0xFFFFFF) fail("SCP03 sequence counter exceeds 3 bytes");
  } else {
    for (const ByteVec* k : {&keys.enc, &keys.mac, &keys.dek}) {
      if (k->size() != 16) fail("SCP02 keys must be 16-byte 3DES keys");
    }
    if (in.counter > 0xFFFF) fail("SCP02 sequence counter exceeds 2 bytes");
    if ((in.i & 0x04) == 0)
      fail("SCP02 implicit initiation (i.b3 = 0) is not a session with INITIALIZE UPDATE");
  }
}

struct Derived {
  RefSessionKeys keys;
  ByteVec card_cryptogram, host_cryptogram, response;
};

Derived derive_scp03(const RefStaticKeys& k, const RefSessionInput& in) {
  const bool s16 = scp03_s16(in);
  const std::uint16_t cg_bits = s16 ? 128 : 64;
  Derived d;
  if (in.card_challenge) {
    d.keys.card_challenge = *in.card_challenge;
  } else if (scp03_pseudo_random(in)) {
    if (in.aid.size() < 5 || in.aid.size() > 16) fail("AID must be 5..16 bytes");
    d.keys.card_challenge = ref_scp03_kdf(k.enc, 0x02, cg_bits, cat({be(in.counter, 3), in.aid}));
  } else {
    fail("SCP03 i without b5 (random card challenge) needs card_challenge");
  }
  if (d.keys.card_challenge.size() != challenge_len(in)) fail("card challenge length");
  const ByteVec context = cat({in.host_challenge, d.keys.card_challenge});
  const auto key_bits = static_cast<std::uint16_t>(k.enc.size() * 8);
  d.keys.s_enc = ref_scp03_kdf(k.enc, 0x04, key_bits, context);
  d.keys.s_mac = ref_scp03_kdf(k.mac, 0x06, key_bits, context);
  d.keys.s_rmac = ref_scp03_kdf(k.mac, 0x07, key_bits, context);
  d.card_cryptogram = ref_scp03_kdf(d.keys.s_mac, 0x00, cg_bits, context);
  d.host_cryptogram = ref_scp03_kdf(d.keys.s_mac, 0x01, cg_bits, context);
  d.response = cat({in.kdd, ByteVec{in.kvn, 0x03, in.i}, d.keys.card_challenge, d.card_cryptogram});
  if (scp03_pseudo_random(in)) d.response = cat({d.response, be(in.counter, 3)});
  return d;
}

ByteVec full_3des_mac(const ByteVec& key, const ByteVec& data) {
  const ByteVec ct = ref_cbc(RefCipher::kTdes, true, key, ByteVec(8, 0), ref_pad80(data, 8));
  return slice(ct, ct.size() - 8, 8);
}

Derived derive_scp02(const RefStaticKeys& k, const RefSessionInput& in) {
  const auto seq = static_cast<std::uint16_t>(in.counter);
  Derived d;
  d.keys.s_enc = ref_scp02_session_key(k.enc, 0x0182, seq);
  d.keys.s_mac = ref_scp02_session_key(k.mac, 0x0101, seq);
  d.keys.s_rmac = ref_scp02_session_key(k.mac, 0x0102, seq);
  d.keys.s_dek = ref_scp02_session_key(k.dek, 0x0181, seq);
  if (in.card_challenge) {
    d.keys.card_challenge = *in.card_challenge;
  } else if (scp02_pseudo_random(in)) {
    if (in.aid.size() < 5 || in.aid.size() > 16) fail("AID must be 5..16 bytes");
    d.keys.card_challenge = slice(ref_retail_mac(d.keys.s_mac, ByteVec(8, 0), in.aid), 0, 6);
  } else {
    fail("SCP02 i without b7 (random card challenge) needs card_challenge");
  }
  if (d.keys.card_challenge.size() != 6) fail("SCP02 card challenge must be 6 bytes");
  const ByteVec seq2 = be(seq, 2);
  d.card_cryptogram =
      full_3des_mac(d.keys.s_enc, cat({in.host_challenge, seq2, d.keys.card_challenge}));
  d.host_cryptogram =
      full_3des_mac(d.keys.s_enc, cat({seq2, d.keys.card_challenge, in.host_challenge}));
  d.response = cat({in.kdd, ByteVec{in.kvn, 0x02}, seq2, d.keys.card_challenge, d.card_cryptogram});
  return d;
}

Derived derive(const RefStaticKeys& k, const RefSessionInput& in) {
  check_input(k, in);
  return in.scp == 3 ? derive_scp03(k, in) : derive_scp02(k, in);
}

// ---------------------------------------------------------------------------------------
// APDU parsing and the secure channel state

struct Apdu {
  std::uint8_t cla = 0, ins = 0, p1 = 0, p2 = 0;
  ByteVec data;
  std::optional<std::uint8_t> le;
};

// Short APDUs only (what a wrapped script holds). nullopt + reason on malformed bytes.
std::optional<Apdu> parse_apdu(const ByteVec& b, std::string* why) {
  if (b.size() < 4) {
    *why = "shorter than a 4-byte header (" + hex_upper(b) + ")";
    return std::nullopt;
  }
  Apdu a{b[0], b[1], b[2], b[3], {}, std::nullopt};
  if (b.size() == 4) return a;
  if (b.size() == 5) {
    a.le = b[4];
    return a;
  }
  const std::size_t lc = b[4];
  if (lc == 0) {
    *why = "extended-length or malformed APDU (Lc 00): " + hex_upper(b);
    return std::nullopt;
  }
  if (b.size() != 5 + lc && b.size() != 6 + lc) {
    *why = "length " + std::to_string(b.size()) + " does not match Lc " + std::to_string(lc);
    return std::nullopt;
  }
  a.data = slice(b, 5, lc);
  if (b.size() == 6 + lc) a.le = b.back();
  return a;
}

ByteVec lc_field(std::size_t n) {
  if (n <= 255) return ByteVec{static_cast<std::uint8_t>(n)};
  return ByteVec{0x00, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
}

ByteVec encode_plain(std::uint8_t cla, std::uint8_t ins, std::uint8_t p1, std::uint8_t p2,
                     const ByteVec& data, std::optional<std::uint8_t> le) {
  ByteVec out{cla, ins, p1, p2};
  if (!data.empty()) {
    const ByteVec lc = lc_field(data.size());
    out.insert(out.end(), lc.begin(), lc.end());
    out.insert(out.end(), data.begin(), data.end());
  }
  if (le) {
    if (data.size() > 255) {  // extended form: Le on 2 bytes, short 00 (256) is 01 00
      const unsigned ne = *le == 0 ? 256u : *le;
      out.push_back(static_cast<std::uint8_t>(ne >> 8));
      out.push_back(static_cast<std::uint8_t>(ne & 0xFF));
    } else {
      out.push_back(*le);
    }
  }
  return out;
}

struct Channel {
  int scp = 3;
  std::uint8_t i = 0;
  std::uint8_t level = 0;
  std::size_t mac_len = 8;
  ByteVec s_enc, s_mac;
  ByteVec chain;              // SCP03: MAC chaining value (16); SCP02: previous C-MAC (8)
  std::uint64_t counter = 1;  // SCP03 C-DECRYPTION counter of the next command
};

std::string mismatch(const std::string& field, const ByteVec& expected, const ByteVec& got) {
  return field + ": expected " + hex_upper(expected) + ", got " + hex_upper(got);
}

// Unwraps one logical command (one APDU, or the segments of a P1-b8 chain). On success
// advances `ch` and returns the plain command; on failure returns the reason and leaves
// `ch` as it was.
std::optional<std::string> unwrap(Channel& ch, const std::vector<Apdu>& segs, ByteVec* plain_out) {
  const Apdu& first = segs.front();
  const Apdu& last = segs.back();
  ByteVec wdata;
  for (const auto& s : segs) wdata.insert(wdata.end(), s.data.begin(), s.data.end());
  if ((first.cla & 0x04) == 0) {
    return "CLA " + hex_upper(ByteVec{first.cla}) + " has no secure-messaging bit (04)";
  }
  if (wdata.size() < ch.mac_len) {
    return "data field of " + std::to_string(wdata.size()) + " bytes cannot hold a " +
           std::to_string(ch.mac_len) + "-byte C-MAC";
  }
  const ByteVec body = slice(wdata, 0, wdata.size() - ch.mac_len);
  const ByteVec got_mac = slice(wdata, wdata.size() - ch.mac_len, ch.mac_len);
  const auto plain_cla = static_cast<std::uint8_t>(first.cla & ~0x04);
  const bool c_dec = (ch.level & 0x02) != 0 && !body.empty();
  const bool chained = segs.size() > 1;
  // MAC input CLA: channel bits cleared, b3 set (gp-reference.md §2.6, §3.7).
  const ByteVec header{static_cast<std::uint8_t>((first.cla & 0xFC) | 0x04), first.ins, last.p1,
                       last.p2};
  // Lc of the command as MACed: 1 byte for one APDU, 00 xx xx for an unsegmented chain.
  auto lc_of = [chained](std::size_t n) {
    return chained ? ByteVec{0x00, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)}
                   : ByteVec{static_cast<std::uint8_t>(n)};
  };
  Channel next = ch;
  ByteVec plain_data = body;

  if (ch.scp == 3) {
    const ByteVec mac_in = cat({ch.chain, header, lc_of(body.size() + ch.mac_len), body});
    const ByteVec full = ref_aes_cmac(ch.s_mac, mac_in);
    const ByteVec want = slice(full, 0, ch.mac_len);
    if (want != got_mac) return mismatch("C-MAC", want, got_mac);
    if (c_dec) {
      if (body.size() % 16 != 0) {
        return "C-DEC data of " + std::to_string(body.size()) + " bytes is not a multiple of 16";
      }
      const ByteVec icv = ref_ecb(RefCipher::kAes, true, ch.s_enc, be(ch.counter, 16));
      const ByteVec dec = ref_cbc(RefCipher::kAes, false, ch.s_enc, icv, body);
      auto unpadded = unpad80(dec, 16);
      if (!unpadded) {
        return "C-DEC padding (counter " + std::to_string(ch.counter) +
               "): decrypted data does not end with 80 00..: last block " +
               hex_upper(slice(dec, dec.size() - 16, 16));
      }
      plain_data = std::move(*unpadded);
    }
    next.chain = full;
    next.counter = ch.counter + 1;
  } else {
    if (c_dec) {
      if (body.size() % 8 != 0) {
        return "C-DEC data of " + std::to_string(body.size()) + " bytes is not a multiple of 8";
      }
      const ByteVec dec = ref_cbc(RefCipher::kTdes, false, ch.s_enc, ByteVec(8, 0), body);
      auto unpadded = unpad80(dec, 8);
      if (!unpadded) {
        return "C-DEC padding: decrypted data does not end with 80 00..: last block " +
               hex_upper(slice(dec, dec.size() - 8, 8));
      }
      plain_data = std::move(*unpadded);
    }
    const ByteVec icv =
        (ch.i & 0x10) != 0 ? ref_ecb(RefCipher::kDes1, true, ch.s_mac, ch.chain) : ch.chain;
    ByteVec mac_in;
    if ((ch.i & 0x02) == 0) {  // C-MAC on the modified APDU
      mac_in = cat({header, lc_of(plain_data.size() + 8), plain_data});
    } else {  // unmodified APDU
      const ByteVec plain_header{plain_cla, first.ins, last.p1, last.p2};
      mac_in = cat({plain_header, lc_of(plain_data.size()), plain_data});
    }
    const ByteVec want = ref_retail_mac(ch.s_mac, icv, mac_in);
    if (want != got_mac) return mismatch("C-MAC (ICV " + hex_upper(icv) + ")", want, got_mac);
    next.chain = want;
  }
  *plain_out = encode_plain(plain_cla, first.ins, last.p1, last.p2, plain_data, last.le);
  ch = std::move(next);
  return std::nullopt;
}

std::string apdu_name(std::size_t index) {
  if (index == 0) return "APDU #0 (INITIALIZE UPDATE)";
  if (index == 1) return "APDU #1 (EXTERNAL AUTHENTICATE)";
  return "APDU #" + std::to_string(index) + " (wrapped command " + std::to_string(index - 1) + ")";
}

// Field-by-field comparison of the INITIALIZE UPDATE response.
std::optional<std::string> compare_response(const RefSessionInput& in, const ByteVec& want,
                                            const ByteVec& got) {
  if (want.size() != got.size()) {
    return "expected response length: expected " + std::to_string(want.size()) + " bytes (" +
           hex_upper(want) + "), got " + std::to_string(got.size()) + " (" + hex_upper(got) + ")";
  }
  std::vector<std::pair<std::string, std::size_t>> fields;
  const std::size_t cl = challenge_len(in);
  if (in.scp == 3) {
    fields = {{"KDD", 10}, {"key information", 3}, {"card challenge", cl}, {"card cryptogram", cl}};
    if (scp03_pseudo_random(in)) fields.emplace_back("sequence counter", 3);
  } else {
    fields = {{"KDD", 10},
              {"key information", 2},
              {"sequence counter", 2},
              {"card challenge", 6},
              {"card cryptogram", 8}};
  }
  std::size_t off = 0;
  for (const auto& [name, len] : fields) {
    const ByteVec w = slice(want, off, len);
    const ByteVec g = slice(got, off, len);
    if (w != g) return mismatch("expected response, " + name, w, g);
    off += len;
  }
  return std::nullopt;
}

RefVerified failed(RefVerified v, std::size_t index, const std::string& what) {
  v.ok = false;
  v.failure = apdu_name(index) + ": " + what;
  return v;
}

}  // namespace

// -----------------------------------------------------------------------------------------
// Public primitives

ByteVec ref_ecb(RefCipher c, bool encrypt, const ByteVec& key, const ByteVec& data) {
  return run_cipher(c, false, encrypt, key, {}, data);
}

ByteVec ref_cbc(RefCipher c, bool encrypt, const ByteVec& key, const ByteVec& iv,
                const ByteVec& data) {
  return run_cipher(c, true, encrypt, key, iv, data);
}

ByteVec ref_pad80(const ByteVec& data, std::size_t block) {
  ByteVec out(data);
  out.push_back(0x80);
  while (out.size() % block != 0) out.push_back(0x00);
  return out;
}

ByteVec ref_aes_cmac(const ByteVec& key, const ByteVec& data) {
  switch (key.size()) {
    case 16:
      return cmac("AES-128-CBC", key, data);
    case 24:
      return cmac("AES-192-CBC", key, data);
    case 32:
      return cmac("AES-256-CBC", key, data);
    default:
      fail("AES-CMAC key must be 16, 24 or 32 bytes");
  }
}

ByteVec ref_scp03_kdf(const ByteVec& key, std::uint8_t constant, std::uint16_t l_bits,
                      const ByteVec& context) {
  ByteVec out;
  for (std::uint8_t i = 1; out.size() * 8 < l_bits; ++i) {
    ByteVec block(11, 0x00);
    block.push_back(constant);
    block.push_back(0x00);
    block.push_back(static_cast<std::uint8_t>(l_bits >> 8));
    block.push_back(static_cast<std::uint8_t>(l_bits));
    block.push_back(i);
    block.insert(block.end(), context.begin(), context.end());
    const ByteVec m = ref_aes_cmac(key, block);
    out.insert(out.end(), m.begin(), m.end());
  }
  out.resize(l_bits / 8);
  return out;
}

ByteVec ref_scp02_session_key(const ByteVec& key, std::uint16_t constant, std::uint16_t counter) {
  ByteVec block = cat({be(constant, 2), be(counter, 2), ByteVec(12, 0x00)});
  return ref_cbc(RefCipher::kTdes, true, key, ByteVec(8, 0), block);
}

ByteVec ref_retail_mac(const ByteVec& key, const ByteVec& icv, const ByteVec& data) {
  if (icv.size() != 8) fail("retail MAC ICV must be 8 bytes");
  const ByteVec padded = ref_pad80(data, 8);
  ByteVec running = icv;
  const std::size_t blocks = padded.size() / 8;
  for (std::size_t b = 0; b + 1 < blocks; ++b) {
    ByteVec x = slice(padded, b * 8, 8);
    for (std::size_t k = 0; k < 8; ++k) x[k] ^= running[k];
    running = ref_ecb(RefCipher::kDes1, true, key, x);
  }
  ByteVec x = slice(padded, (blocks - 1) * 8, 8);
  for (std::size_t k = 0; k < 8; ++k) x[k] ^= running[k];
  return ref_ecb(RefCipher::kTdes, true, key, x);
}

ByteVec ref_kcv(const ByteVec& key, bool aes) {
  if (aes) return slice(ref_ecb(RefCipher::kAes, true, key, ByteVec(16, 0x01)), 0, 3);
  return slice(ref_ecb(RefCipher::kTdes, true, key, ByteVec(8, 0x00)), 0, 3);
}

// -----------------------------------------------------------------------------------------
// Diversification

ByteVec ref_diversify_key(std::string_view scheme, const ByteVec& master, const ByteVec& kdd,
                          std::uint8_t t, RefMasterType type, bool adjust_des_parity) {
  if (scheme == "none") return master;
  if (kdd.size() != 10) fail("KDD must be 10 bytes");
  const bool emv = scheme == "emv" || scheme == "emv-cps";
  if (emv || scheme == "visa2") {
    ByteVec part;
    if (emv) {
      part = slice(kdd, 4, 6);
    } else {
      part = cat({slice(kdd, 0, 2), slice(kdd, 4, 4)});
    }
    const ByteVec input = cat({part, ByteVec{0xF0, t}, part, ByteVec{0x0F, t}});
    if (type == RefMasterType::kAes) {
      return ref_ecb(RefCipher::kAes, true, master, input);
    }
    if (master.size() != 16) fail(std::string(scheme) + " DES master key must be 16 bytes");
    ByteVec key = ref_ecb(RefCipher::kTdes, true, master, input);
    if (adjust_des_parity) set_odd_parity(key);
    return key;
  }
  if (scheme == "kdf3") {
    if (type == RefMasterType::kDes) fail("kdf3 needs an AES master key");
    if (master.size() != 16 && master.size() != 24 && master.size() != 32)
      fail("kdf3 master must be AES");
    ByteVec key;
    for (std::uint8_t counter = 1; key.size() < master.size(); ++counter) {
      const ByteVec input = cat({ByteVec{counter, 0x00, 0x00, 0x00, t, 0x00}, kdd});
      const ByteVec m = ref_aes_cmac(master, input);
      key.insert(key.end(), m.begin(), m.end());
    }
    key.resize(master.size());
    return key;
  }
  fail("unknown diversification scheme '" + std::string(scheme) + "'");
}

RefStaticKeys ref_diversify(std::string_view scheme, const ByteVec& master, const ByteVec& kdd,
                            RefMasterType type, bool adjust_des_parity) {
  return RefStaticKeys{ref_diversify_key(scheme, master, kdd, 0x01, type, adjust_des_parity),
                       ref_diversify_key(scheme, master, kdd, 0x02, type, adjust_des_parity),
                       ref_diversify_key(scheme, master, kdd, 0x03, type, adjust_des_parity)};
}

// -----------------------------------------------------------------------------------------
// Sessions

RefSessionKeys ref_session_keys(const RefStaticKeys& keys, const RefSessionInput& in) {
  return derive(keys, in).keys;
}

ByteVec ref_expected_response(const RefStaticKeys& keys, const RefSessionInput& in) {
  return derive(keys, in).response;
}

ByteVec ref_decrypt_sensitive(const RefStaticKeys& keys, const RefSessionInput& in,
                              const ByteVec& ciphertext) {
  if (in.scp == 3) return ref_cbc(RefCipher::kAes, false, keys.dek, ByteVec(16, 0), ciphertext);
  if (in.scp != 2) fail("scp must be 2 or 3");
  if (in.counter > 0xFFFF) fail("SCP02 sequence counter exceeds 2 bytes");
  const ByteVec s_dek =
      ref_scp02_session_key(keys.dek, 0x0181, static_cast<std::uint16_t>(in.counter));
  return ref_ecb(RefCipher::kTdes, false, s_dek, ciphertext);
}

RefVerified ref_verify_session(const RefStaticKeys& keys, const RefSessionInput& in,
                               const ByteVec& expected_response,
                               const std::vector<RefApdu>& apdus) {
  RefVerified v;
  Derived d;
  try {
    d = derive(keys, in);
  } catch (const std::exception& e) {
    v.failure = std::string("input: ") + e.what();
    return v;
  }
  const bool s16 = in.scp == 3 && scp03_s16(in);
  const std::size_t cl = challenge_len(in);
  static constexpr std::array<std::uint8_t, 6> kScp03Levels{0x00, 0x01, 0x03, 0x11, 0x13, 0x33};
  static constexpr std::array<std::uint8_t, 6> kScp02Levels{0x00, 0x01, 0x03, 0x10, 0x11, 0x13};
  const auto& levels = in.scp == 3 ? kScp03Levels : kScp02Levels;
  if (std::find(levels.begin(), levels.end(), in.level) == levels.end()) {
    v.failure = "input: security level " + hex_upper(ByteVec{in.level}) +
                " is not defined for SCP0" + std::to_string(in.scp);
    return v;
  }
  if (apdus.size() < 2) {
    v.failure = "script: " + std::to_string(apdus.size()) +
                " APDUs, expected INITIALIZE UPDATE and EXTERNAL AUTHENTICATE at least";
    return v;
  }
  std::string why;

  // APDU 0: INITIALIZE UPDATE and the expected answer.
  auto iu = parse_apdu(apdus[0].bytes, &why);
  if (!iu) return failed(v, 0, why);
  if (iu->cla != 0x80 || iu->ins != 0x50 || iu->p2 != 0x00) {
    return failed(
        v, 0, mismatch("CLA INS P2", ByteVec{0x80, 0x50, 0x00}, ByteVec{iu->cla, iu->ins, iu->p2}));
  }
  if (in.requested_kvn ? iu->p1 != *in.requested_kvn : (iu->p1 != 0x00 && iu->p1 != in.kvn)) {
    return failed(
        v, 0,
        mismatch("P1 (key version)", ByteVec{in.requested_kvn.value_or(in.kvn)}, ByteVec{iu->p1}));
  }
  if (iu->data != in.host_challenge)
    return failed(v, 0, mismatch("host challenge", in.host_challenge, iu->data));
  if (iu->le != std::optional<std::uint8_t>(0x00)) {
    return failed(
        v, 0,
        "Le: expected 00, got " + (iu->le ? hex_upper(ByteVec{*iu->le}) : std::string("none")));
  }
  if (auto bad = compare_response(in, d.response, expected_response)) return failed(v, 0, *bad);

  // APDU 1: EXTERNAL AUTHENTICATE.
  Channel ch;
  ch.scp = in.scp;
  ch.i = in.i;
  ch.level = in.level;
  ch.mac_len = s16 ? 16 : 8;
  ch.s_enc = d.keys.s_enc;
  ch.s_mac = d.keys.s_mac;
  auto ea = parse_apdu(apdus[1].bytes, &why);
  if (!ea) return failed(v, 1, why);
  const ByteVec ea_header{0x84, 0x82, in.level, 0x00};
  if (ByteVec{ea->cla, ea->ins, ea->p1, ea->p2} != ea_header) {
    return failed(v, 1, mismatch("header", ea_header, ByteVec{ea->cla, ea->ins, ea->p1, ea->p2}));
  }
  if (ea->le) return failed(v, 1, "unexpected Le " + hex_upper(ByteVec{*ea->le}));
  if (ea->data.size() != cl + ch.mac_len) {
    return failed(v, 1,
                  "data length: expected " + std::to_string(cl + ch.mac_len) + ", got " +
                      std::to_string(ea->data.size()));
  }
  const ByteVec got_hc = slice(ea->data, 0, cl);
  const ByteVec got_mac = slice(ea->data, cl, ch.mac_len);
  if (got_hc != d.host_cryptogram)
    return failed(v, 1, mismatch("host cryptogram", d.host_cryptogram, got_hc));
  const ByteVec ea_mac_in =
      cat({ea_header, ByteVec{static_cast<std::uint8_t>(ea->data.size())}, d.host_cryptogram});
  if (in.scp == 3) {
    const ByteVec full = ref_aes_cmac(ch.s_mac, cat({ByteVec(16, 0x00), ea_mac_in}));
    const ByteVec want = slice(full, 0, ch.mac_len);
    if (want != got_mac) return failed(v, 1, mismatch("C-MAC", want, got_mac));
    ch.chain = full;
    ch.counter = 1;
  } else {
    const ByteVec want = ref_retail_mac(ch.s_mac, ByteVec(8, 0x00), ea_mac_in);
    if (want != got_mac) return failed(v, 1, mismatch("C-MAC", want, got_mac));
    ch.chain = want;
  }

  // APDU 2..: the wrapped commands.
  const bool c_mac = (in.level & 0x01) != 0;
  std::size_t k = 2;
  while (k < apdus.size()) {
    auto seg = parse_apdu(apdus[k].bytes, &why);
    if (!seg) return failed(v, k, why);
    if (!c_mac) {  // no secure messaging on commands: what is sent is what runs
      if ((seg->cla & 0x04) != 0)
        return failed(v, k, "CLA has the secure-messaging bit at a level without C-MAC");
      v.plain_commands.push_back(apdus[k].bytes);
      v.plain_first_apdu.push_back(k);
      ++k;
      continue;
    }
    ByteVec plain;
    const auto err = unwrap(ch, {*seg}, &plain);
    if (!err) {
      v.plain_commands.push_back(std::move(plain));
      v.plain_first_apdu.push_back(k);
      ++k;
      continue;
    }
    // Not a complete command: the first segment of a P1-b8 chain?
    bool chained_ok = false;
    if ((seg->p1 & 0x80) != 0) {
      std::vector<Apdu> segs{*seg};
      for (std::size_t j = k + 1; j < apdus.size() && (segs.back().p1 & 0x80) != 0; ++j) {
        std::string ignored;
        auto next = parse_apdu(apdus[j].bytes, &ignored);
        if (!next || next->cla != seg->cla || next->ins != seg->ins) break;
        segs.push_back(*next);
        if (!unwrap(ch, segs, &plain)) {
          v.plain_commands.push_back(std::move(plain));
          v.plain_first_apdu.push_back(k);
          k = j + 1;
          chained_ok = true;
          break;
        }
      }
    }
    if (!chained_ok) return failed(v, k, *err);
  }
  v.ok = true;
  return v;
}

}  // namespace persoflow::test
