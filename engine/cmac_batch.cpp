#include "engine/cmac_batch.h"

#include <algorithm>
#include <string>

#include "engine/aes_cmac.h"

namespace persoflow {
namespace {

std::size_t blocks_of(std::size_t length) { return length == 0 ? 1 : (length + kAesBlockSize - 1) / kAesBlockSize; }

}  // namespace

Result<CmacSubkeys> cmac_subkeys_from_l(std::span<const std::uint8_t> l) {
  if (l.size() != kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument, "CMAC subkeys: L is " + std::to_string(l.size()) + " bytes, not 16");
  }
  CmacSubkeys s{SecureBytes(kAesBlockSize), SecureBytes(kAesBlockSize)};
  cmac_double_block(l.first<kAesBlockSize>(), s.k1.reveal_mutable().first<kAesBlockSize>());
  cmac_double_block(s.k1.reveal().first<kAesBlockSize>(), s.k2.reveal_mutable().first<kAesBlockSize>());
  return s;
}

Result<SecureBytes> one_block_cmac_input(std::span<const std::uint8_t> message, const CmacSubkeys& subkeys) {
  if (message.size() != kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument,
                 "one-block CMAC: the message is " + std::to_string(message.size()) + " bytes, not 16");
  }
  SecureBytes block(message);
  block.xor_with(subkeys.k1.reveal());
  return block;
}

std::size_t cmac_batch_layers(std::span<const std::span<const std::uint8_t>> messages) {
  std::size_t layers = 0;
  for (const auto& m : messages) layers = std::max(layers, blocks_of(m.size()));
  return layers;
}

Result<std::vector<SecureBytes>> cmac_batch(const EcbOracle& ecb, const CmacSubkeys& subkeys,
                                            std::span<const std::span<const std::uint8_t>> messages) {
  if (subkeys.k1.size() != kAesBlockSize || subkeys.k2.size() != kAesBlockSize) {
    return Error(ErrorCode::kInvalidArgument, "CMAC batch: the subkeys are not 16 bytes each");
  }
  const std::size_t n = messages.size();
  // The running CBC-MAC value of every message; a message's result once its last layer ran.
  std::vector<SecureBytes> state(n, SecureBytes(kAesBlockSize));
  const std::size_t layers = cmac_batch_layers(messages);
  const auto k1 = subkeys.k1.reveal();
  const auto k2 = subkeys.k2.reveal();
  std::vector<std::size_t> active;
  active.reserve(n);
  for (std::size_t layer = 0; layer < layers; ++layer) {
    active.clear();
    for (std::size_t m = 0; m < n; ++m) {
      if (blocks_of(messages[m].size()) > layer) active.push_back(m);
    }
    SecureBytes in(active.size() * kAesBlockSize);
    auto dst = in.reveal_mutable();
    for (std::size_t a = 0; a < active.size(); ++a) {
      const auto msg = messages[active[a]];
      const std::size_t at = layer * kAesBlockSize;
      const bool last = blocks_of(msg.size()) == layer + 1;
      const std::size_t take = std::min(kAesBlockSize, msg.size() - std::min(msg.size(), at));
      auto x = dst.subspan(a * kAesBlockSize, kAesBlockSize);
      // The message block, pad80'ed when it is a short last one (or the empty message).
      std::fill(x.begin(), x.end(), 0);
      std::copy_n(msg.begin() + static_cast<std::ptrdiff_t>(std::min(msg.size(), at)), take, x.begin());
      const bool whole = take == kAesBlockSize;
      if (last && !whole) x[take] = 0x80;
      const auto prev = state[active[a]].reveal();
      for (std::size_t i = 0; i < kAesBlockSize; ++i) {
        std::uint8_t v = static_cast<std::uint8_t>(x[i] ^ prev[i]);
        if (last) v ^= whole ? k1[i] : k2[i];
        x[i] = v;
      }
    }
    SecureBytes out(in.size());
    PF_TRY(ecb(in.reveal(), out.reveal_mutable()));
    const auto o = out.reveal();
    for (std::size_t a = 0; a < active.size(); ++a) {
      auto s = state[active[a]].reveal_mutable();
      std::copy_n(o.begin() + static_cast<std::ptrdiff_t>(a * kAesBlockSize), kAesBlockSize, s.begin());
    }
  }
  return state;
}

}  // namespace persoflow
