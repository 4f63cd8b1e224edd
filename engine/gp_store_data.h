// STORE DATA (GPC v2.3.1 §11.11, Table 11-89; EMV CPS; gp-reference.md §5.3, §6.2): turns a
// list of DGIs or BER-TLV objects into the numbered sequence of plain STORE DATA commands.
//
//   80 E2 P1 P2 Lc data [00]
//   P1 b8     1 = last block
//   P1 b7-b6  encryption: 00 none, 01 application-dependent, 11 all DGI/TLV values encrypted
//   P1 b5-b4  structure:  00 none, 01 DGI, 10 BER-TLV (only with signal_structure)
//   P1 b1     1 = response data expected (case 4, Le 00)
//   P2        block number, first_block_number, +1 per command, at most FF
//
// Items keep their order. An item that fits in one block is never split: it starts a new
// block when the current one lacks room. A larger item starts a new block, its header
// (which states the full length) is written once, and its value continues in the next blocks
// (GPC §11.11.2.2); the next item may share the block where the value ends.
//
// Encryption of values is done elsewhere (scp02/scp03 encrypt_sensitive); the builder only
// signals it. In kPerCommand mode, encrypted and clear items never share a command: P1
// b7-b6 = 11 on commands holding encrypted items, 00 on the others (CPS scripts: P1 60/00).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/apdu.h"
#include "engine/dgi.h"
#include "engine/hex.h"
#include "engine/result.h"
#include "engine/tlv.h"

namespace persoflow {

inline constexpr std::uint8_t kStoreDataLastBlock = 0x80;
inline constexpr std::uint8_t kStoreDataEncAppDependent = 0x20;   // b7-b6 = 01
inline constexpr std::uint8_t kStoreDataEncAll = 0x60;            // b7-b6 = 11
inline constexpr std::uint8_t kStoreDataFormatDgi = 0x08;         // b5-b4 = 01
inline constexpr std::uint8_t kStoreDataFormatBerTlv = 0x10;      // b5-b4 = 10
inline constexpr std::uint8_t kStoreDataResponseExpected = 0x01;  // b1

// Smallest max_block_data accepted: a 5-byte DGI header and some value.
inline constexpr std::size_t kMinStoreDataBlock = 8;
// Leaves room for the 8-byte C-MAC and up to 8 bytes of C-DEC padding in a 255-byte Lc.
inline constexpr std::size_t kStoreDataBlockUnderScp = 239;

enum class StoreDataEncryptionSignal : std::uint8_t {
  kPerCommand,            // 11 on commands of encrypted items, 00 otherwise (GPP, CPS)
  kApplicationDependent,  // 01 on every command; encrypted and clear items mix freely
};

struct StoreDataOptions {
  std::size_t max_block_data = kMaxShortApduData;  // 8..255; 239 under SCP with C-DEC
  StoreDataEncryptionSignal encryption = StoreDataEncryptionSignal::kPerCommand;
  bool signal_structure = false;    // set b5-b4 (CPS applets usually expect 00, §9.14)
  bool response_expected = false;   // b1, and Le 00 on every command
  bool one_item_per_block = false;  // never pack two items into one command
  std::uint8_t first_block_number = 0x00;
  bool mark_last_block = true;  // false: more STORE DATA follow from another builder
};

class StoreDataBuilder {
 public:
  static Result<StoreDataBuilder> create(const StoreDataOptions& options = {});

  // One DGI; `encrypted` says its value is already encrypted. Refuses TLVs in the same
  // builder when signal_structure is set (one structure per sequence).
  Status add_dgi(DgiId id, std::span<const std::uint8_t> value, bool encrypted = false);
  // One BER-TLV object (tag 1-3 bytes).
  Status add_tlv(Tag tag, std::span<const std::uint8_t> value, bool encrypted = false);

  std::size_t item_count() const { return items_.size(); }

  // The commands, in order; kInvalidArgument when empty or when more than
  // 256 - first_block_number blocks would be needed.
  Result<std::vector<CommandApdu>> build() const;

 private:
  enum class Kind : std::uint8_t { kDgi, kTlv };
  struct Item {
    Bytes header;
    Bytes value;
    bool encrypted = false;
  };

  explicit StoreDataBuilder(const StoreDataOptions& options) : options_(options) {}
  Status check_kind(Kind kind);

  StoreDataOptions options_;
  std::vector<Item> items_;
  bool has_dgi_ = false;
  bool has_tlv_ = false;
};

}  // namespace persoflow
