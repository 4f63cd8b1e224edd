// GlobalPlatform command builders (gp_commands.h); layouts in docs/gp-commands.md.
#include "engine/gp_commands.h"

#include <string>
#include <utility>

#include "engine/tlv.h"

namespace persoflow {
namespace {

constexpr std::uint32_t kLe256 = 256;  // "Le = 00" of the GP command tables

Error invalid(std::string_view command, std::string_view message) {
  std::string text(command);
  text += ": ";
  text += message;
  return Error(ErrorCode::kInvalidArgument, std::move(text));
}

// Appends LEN || value with a one-byte length (INSTALL/extradition fields, Table 11-43).
Status append_lv(Bytes& out, std::span<const std::uint8_t> value, std::string_view field) {
  if (value.size() > 0xFF) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(field) + ": length " + std::to_string(value.size()) + ", at most 255");
  }
  out.push_back(static_cast<std::uint8_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
  return ok_status();
}

Status check_privileges(std::span<const std::uint8_t> privileges) {
  if (privileges.size() != 1 && privileges.size() != 3) {
    return Error(ErrorCode::kInvalidArgument,
                 "privileges: length " + std::to_string(privileges.size()) + ", expected 1 or 3");
  }
  return ok_status();
}

// The command's data must fit a short APDU (the secure channel adds to it later).
Result<CommandApdu> gp_command(std::string_view name, std::uint8_t cla, std::uint8_t ins,
                               std::uint8_t p1, std::uint8_t p2, const Bytes& data,
                               std::optional<std::uint32_t> le) {
  if (data.size() > kMaxShortApduData) {
    return invalid(name, "data field " + std::to_string(data.size()) + " bytes, at most 255");
  }
  return CommandApdu::create(cla, ins, p1, p2, data, le);
}

Result<Bytes> install_parameters_field(const InstallParameters& params) {
  Bytes out;
  PF_TRY_CTX(append_tlv(out, 0xC9, params.application_specific), "install parameters C9");
  if (params.system_parameters.has_value()) {
    PF_TRY_CTX(append_tlv(out, 0xEF, *params.system_parameters), "install parameters EF");
  }
  return out;
}

Result<CommandApdu> install_for_install_p1(const InstallForInstallFields& f, std::uint8_t p1,
                                           std::string_view name) {
  std::string ctx(name);
  PF_TRY_CTX(check_aid(f.load_file_aid, "load file AID"), ctx);
  PF_TRY_CTX(check_aid(f.module_aid, "module AID"), ctx);
  PF_TRY_CTX(check_aid(f.instance_aid, "instance AID"), ctx);
  PF_TRY_CTX(check_privileges(f.privileges), ctx);
  PF_ASSIGN_OR_RETURN(Bytes params, install_parameters_field(f.parameters));
  Bytes data;
  PF_TRY_CTX(append_lv(data, f.load_file_aid, "load file AID"), ctx);
  PF_TRY_CTX(append_lv(data, f.module_aid, "module AID"), ctx);
  PF_TRY_CTX(append_lv(data, f.instance_aid, "instance AID"), ctx);
  PF_TRY_CTX(append_lv(data, f.privileges, "privileges"), ctx);
  PF_TRY_CTX(append_lv(data, params, "install parameters"), ctx);
  PF_TRY_CTX(append_lv(data, f.token, "install token"), ctx);
  return gp_command(name, kGpCla, kInsInstall, p1, 0x00, data, kLe256);
}

}  // namespace

Status check_aid(std::span<const std::uint8_t> aid, std::string_view field) {
  if (aid.size() < kMinAidLength || aid.size() > kMaxAidLength) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(field) + ": length " + std::to_string(aid.size()) + ", expected 5-16");
  }
  return ok_status();
}

Result<CommandApdu> select_by_aid(std::span<const std::uint8_t> aid, SelectOccurrence occurrence) {
  if (!aid.empty()) PF_TRY_CTX(check_aid(aid, "AID"), "SELECT");
  return CommandApdu::create(0x00, kInsSelect, 0x04, static_cast<std::uint8_t>(occurrence), aid,
                             kLe256);
}

Result<CommandApdu> install_for_install(const InstallForInstallFields& fields) {
  return install_for_install_p1(fields, kInstallForInstall, "INSTALL [for install]");
}

Result<CommandApdu> install_for_install_and_make_selectable(const InstallForInstallFields& fields) {
  return install_for_install_p1(fields, kInstallForInstallAndMakeSelectable,
                                "INSTALL [for install and make selectable]");
}

Result<CommandApdu> install_for_make_selectable(std::span<const std::uint8_t> application_aid,
                                                std::span<const std::uint8_t> privileges,
                                                std::span<const std::uint8_t> parameters,
                                                std::span<const std::uint8_t> token) {
  constexpr std::string_view kName = "INSTALL [for make selectable]";
  PF_TRY_CTX(check_aid(application_aid, "application AID"), std::string(kName));
  PF_TRY_CTX(check_privileges(privileges), std::string(kName));
  Bytes data = {0x00, 0x00};
  PF_TRY_CTX(append_lv(data, application_aid, "application AID"), std::string(kName));
  PF_TRY_CTX(append_lv(data, privileges, "privileges"), std::string(kName));
  PF_TRY_CTX(append_lv(data, parameters, "parameters"), std::string(kName));
  PF_TRY_CTX(append_lv(data, token, "token"), std::string(kName));
  return gp_command(kName, kGpCla, kInsInstall, kInstallForMakeSelectable, 0x00, data, kLe256);
}

Result<CommandApdu> install_for_personalization(std::span<const std::uint8_t> application_aid) {
  constexpr std::string_view kName = "INSTALL [for personalization]";
  PF_TRY_CTX(check_aid(application_aid, "application AID"), std::string(kName));
  Bytes data = {0x00, 0x00};
  PF_TRY(append_lv(data, application_aid, "application AID"));
  data.insert(data.end(), {0x00, 0x00, 0x00});
  return gp_command(kName, kGpCla, kInsInstall, kInstallForPersonalization, 0x00, data, kLe256);
}

Result<CommandApdu> install_for_extradition(std::span<const std::uint8_t> security_domain_aid,
                                            std::span<const std::uint8_t> application_aid,
                                            std::span<const std::uint8_t> parameters,
                                            std::span<const std::uint8_t> token) {
  constexpr std::string_view kName = "INSTALL [for extradition]";
  PF_TRY_CTX(check_aid(security_domain_aid, "security domain AID"), std::string(kName));
  PF_TRY_CTX(check_aid(application_aid, "application AID"), std::string(kName));
  Bytes data;
  PF_TRY(append_lv(data, security_domain_aid, "security domain AID"));
  data.push_back(0x00);
  PF_TRY(append_lv(data, application_aid, "application AID"));
  data.push_back(0x00);
  PF_TRY_CTX(append_lv(data, parameters, "extradition parameters"), std::string(kName));
  PF_TRY_CTX(append_lv(data, token, "token"), std::string(kName));
  return gp_command(kName, kGpCla, kInsInstall, kInstallForExtradition, 0x00, data, kLe256);
}

Result<CommandApdu> put_key(const PutKeyHeader& header, std::span<const std::uint8_t> data_field) {
  constexpr std::string_view kName = "PUT KEY";
  if (header.old_kvn > 0x7F) return invalid(kName, "old KVN above 7F");
  if (header.new_kvn == 0x00 || header.new_kvn > 0x7F) {
    return invalid(kName, "new KVN outside 01-7F");
  }
  if (header.first_key_id == 0x00 || header.first_key_id > 0x7F) {
    return invalid(kName, "key identifier outside 01-7F");
  }
  if (data_field.size() < 2) return invalid(kName, "data field: needs new KVN and key data");
  if (data_field[0] != header.new_kvn) {
    return invalid(kName, "data field: first byte " + to_hex(data_field.first(1)) +
                              " is not the new KVN " + to_hex(std::span(&header.new_kvn, 1)));
  }
  const auto p2 =
      static_cast<std::uint8_t>((header.multiple_keys ? 0x80 : 0x00) | header.first_key_id);
  return gp_command(kName, kGpCla, kInsPutKey, header.old_kvn, p2,
                    Bytes(data_field.begin(), data_field.end()), kLe256);
}

Result<CommandApdu> set_status(SetStatusScope scope, std::uint8_t state,
                               std::span<const std::uint8_t> aid) {
  constexpr std::string_view kName = "SET STATUS";
  const auto p1 = static_cast<std::uint8_t>(scope);
  if (scope == SetStatusScope::kIssuerSecurityDomain) {
    if (!aid.empty()) return invalid(kName, "AID: must be empty for the ISD scope");
    if (state != life_cycle::kCardInitialized && state != life_cycle::kCardSecured &&
        state != life_cycle::kCardLocked && state != life_cycle::kCardTerminated) {
      return invalid(
          kName, "state " + to_hex(std::span(&state, 1)) + ": card state must be 07, 0F, 7F or FF");
    }
    return CommandApdu::create(kGpCla, kInsSetStatus, p1, state);
  }
  PF_TRY_CTX(check_aid(aid, "AID"), std::string(kName));
  const bool locked = (state & life_cycle::kLockedBit) != 0;
  if (!locked && state != life_cycle::kAppInstalled && (state & 0x07) != 0x07) {
    return invalid(kName, "state " + to_hex(std::span(&state, 1)) +
                              ": expected 03, 0xxxx111 or b8 set (locked)");
  }
  return CommandApdu::create(kGpCla, kInsSetStatus, p1, state, aid);
}

Result<CommandApdu> delete_object(std::span<const std::uint8_t> aid, bool with_related_objects) {
  constexpr std::string_view kName = "DELETE";
  PF_TRY_CTX(check_aid(aid, "AID"), std::string(kName));
  Bytes data;
  PF_TRY(append_tlv(data, 0x4F, aid));
  return gp_command(kName, kGpCla, kInsDelete, 0x00, with_related_objects ? 0x80 : 0x00, data,
                    kLe256);
}

Result<CommandApdu> get_status(const GetStatusQuery& query) {
  constexpr std::string_view kName = "GET STATUS";
  if (query.aid_prefix.size() > kMaxAidLength) {
    return invalid(
        kName, "AID prefix: length " + std::to_string(query.aid_prefix.size()) + ", at most 16");
  }
  if (!query.tag_list.empty() && query.format != GetStatusFormat::kTagged) {
    return invalid(kName, "tag list: only with the tagged format (P2 b2 = 1)");
  }
  Bytes data;
  PF_TRY(append_tlv(data, 0x4F, query.aid_prefix));
  if (!query.tag_list.empty()) PF_TRY_CTX(append_tlv(data, 0x5C, query.tag_list), "GET STATUS");
  const auto p2 =
      static_cast<std::uint8_t>(static_cast<std::uint8_t>(query.format) | (query.next ? 1 : 0));
  return gp_command(kName, kGpCla, kInsGetStatus, static_cast<std::uint8_t>(query.scope), p2, data,
                    kLe256);
}

}  // namespace persoflow
