// STORE DATA sequence builder (gp_store_data.h); layouts in docs/gp-commands.md.
#include "engine/gp_store_data.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "engine/gp_commands.h"

namespace persoflow {
namespace {

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, "STORE DATA: " + std::move(message));
}

struct Block {
  Bytes data;
  bool encrypted = false;
};

}  // namespace

Result<StoreDataBuilder> StoreDataBuilder::create(const StoreDataOptions& options) {
  if (options.max_block_data < kMinStoreDataBlock || options.max_block_data > kMaxShortApduData) {
    return invalid("max block data " + std::to_string(options.max_block_data) + ", expected " +
                   std::to_string(kMinStoreDataBlock) + "-255");
  }
  return StoreDataBuilder(options);
}

Status StoreDataBuilder::check_kind(Kind kind) {
  if (options_.signal_structure &&
      ((kind == Kind::kDgi && has_tlv_) || (kind == Kind::kTlv && has_dgi_))) {
    return invalid("DGIs and BER-TLV objects cannot share a sequence that signals its structure");
  }
  return ok_status();
}

Status StoreDataBuilder::add_dgi(DgiId id, std::span<const std::uint8_t> value, bool encrypted) {
  PF_TRY(check_kind(Kind::kDgi));
  Item item;
  item.header = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)};
  PF_ASSIGN_OR_RETURN(Bytes length, encode_dgi_length(value.size()));
  item.header.insert(item.header.end(), length.begin(), length.end());
  item.value.assign(value.begin(), value.end());
  item.encrypted = encrypted;
  items_.push_back(std::move(item));
  has_dgi_ = true;
  return ok_status();
}

Status StoreDataBuilder::add_tlv(Tag tag, std::span<const std::uint8_t> value, bool encrypted) {
  PF_TRY(check_kind(Kind::kTlv));
  Item item;
  PF_ASSIGN_OR_RETURN(item.header, encode_tag(tag));
  PF_ASSIGN_OR_RETURN(Bytes length, encode_tlv_length(value.size()));
  item.header.insert(item.header.end(), length.begin(), length.end());
  item.value.assign(value.begin(), value.end());
  item.encrypted = encrypted;
  items_.push_back(std::move(item));
  has_tlv_ = true;
  return ok_status();
}

Result<std::vector<CommandApdu>> StoreDataBuilder::build() const {
  if (items_.empty()) return invalid("no DGI or TLV to send");
  const std::size_t max = options_.max_block_data;
  const bool per_command = options_.encryption == StoreDataEncryptionSignal::kPerCommand;

  std::vector<Block> blocks;
  Block current;
  auto close = [&] {
    if (!current.data.empty()) blocks.push_back(std::move(current));
    current = Block{};
  };

  for (const Item& item : items_) {
    const std::size_t total = item.header.size() + item.value.size();
    if (!current.data.empty() &&
        (options_.one_item_per_block || (per_command && current.encrypted != item.encrypted) ||
         total > max - current.data.size())) {
      close();
    }
    current.encrypted = current.encrypted || item.encrypted;
    current.data.insert(current.data.end(), item.header.begin(), item.header.end());
    std::span<const std::uint8_t> rest(item.value);
    while (true) {
      const std::size_t take = std::min(rest.size(), max - current.data.size());
      current.data.insert(current.data.end(), rest.begin(),
                          rest.begin() + static_cast<std::ptrdiff_t>(take));
      rest = rest.subspan(take);
      if (rest.empty()) break;
      close();
      current.encrypted = item.encrypted;
    }
  }
  close();

  const std::size_t available = 256 - options_.first_block_number;
  if (blocks.size() > available) {
    return invalid(std::to_string(blocks.size()) + " blocks needed, block numbers allow " +
                   std::to_string(available));
  }

  std::uint8_t structure = 0x00;
  if (options_.signal_structure)
    structure = has_dgi_ ? kStoreDataFormatDgi : kStoreDataFormatBerTlv;
  const std::optional<std::uint32_t> le =
      options_.response_expected ? std::optional<std::uint32_t>(256) : std::nullopt;

  std::vector<CommandApdu> commands;
  commands.reserve(blocks.size());
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    std::uint8_t p1 = structure;
    if (!per_command) {
      p1 |= kStoreDataEncAppDependent;
    } else if (blocks[i].encrypted) {
      p1 |= kStoreDataEncAll;
    }
    if (options_.response_expected) p1 |= kStoreDataResponseExpected;
    if (options_.mark_last_block && i + 1 == blocks.size()) p1 |= kStoreDataLastBlock;
    const auto p2 = static_cast<std::uint8_t>(options_.first_block_number + i);
    PF_ASSIGN_OR_RETURN(CommandApdu command,
                        CommandApdu::create(kGpCla, kInsStoreData, p1, p2, blocks[i].data, le));
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace persoflow
