// GlobalPlatform card content management commands in plain form (GPC v2.3.1 §11;
// gp-reference.md §5): SELECT, INSTALL variants, PUT KEY, SET STATUS, DELETE, GET STATUS.
// STORE DATA lives in engine/gp_store_data.h.
//
// Every builder is a pure function returning a CommandApdu with CLA 80 (00 for SELECT),
// short form, basic logical channel. Secure messaging (SCP02/SCP03 wrap) is applied
// afterwards. Byte layouts and the examples proving them: docs/gp-commands.md.
//
// Fields are validated before any byte is written; errors are kInvalidArgument and name the
// field, e.g. "INSTALL [for install]: instance AID: length 3, expected 5-16".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "engine/apdu.h"
#include "engine/hex.h"
#include "engine/result.h"

namespace persoflow {

inline constexpr std::uint8_t kGpCla = 0x80;
inline constexpr std::uint8_t kInsSelect = 0xA4;
inline constexpr std::uint8_t kInsInstall = 0xE6;
inline constexpr std::uint8_t kInsPutKey = 0xD8;
inline constexpr std::uint8_t kInsStoreData = 0xE2;
inline constexpr std::uint8_t kInsSetStatus = 0xF0;
inline constexpr std::uint8_t kInsDelete = 0xE4;
inline constexpr std::uint8_t kInsGetStatus = 0xF2;

inline constexpr std::size_t kMinAidLength = 5;  // ISO/IEC 7816-5: RID (5) || PIX (0-11)
inline constexpr std::size_t kMaxAidLength = 16;

// kInvalidArgument "<field>: length N, expected 5-16" unless 5 <= aid.size() <= 16.
Status check_aid(std::span<const std::uint8_t> aid, std::string_view field);

// ---- SELECT (ISO/IEC 7816-4; GPC §11.9) ------------------------------------------------

enum class SelectOccurrence : std::uint8_t { kFirst = 0x00, kNext = 0x02 };

// 00 A4 04 {00|02} Lc AID 00. An empty AID selects the ISD (00 A4 04 00 00, case 2).
Result<CommandApdu> select_by_aid(std::span<const std::uint8_t> aid,
                                  SelectOccurrence occurrence = SelectOccurrence::kFirst);

// ---- INSTALL (GPC §11.5, Table 11-41) ----------------------------------------------------

// P1 values; b8 (0x80) = more INSTALL commands follow (not offered here).
inline constexpr std::uint8_t kInstallForLoad = 0x02;
inline constexpr std::uint8_t kInstallForInstall = 0x04;
inline constexpr std::uint8_t kInstallForMakeSelectable = 0x08;
inline constexpr std::uint8_t kInstallForInstallAndMakeSelectable = 0x0C;
inline constexpr std::uint8_t kInstallForExtradition = 0x10;
inline constexpr std::uint8_t kInstallForPersonalization = 0x20;

// Privileges are 1 byte (GPC v2.1.1 style) or 3 bytes (Tables 11-7..11-9).
inline constexpr std::uint8_t kPrivilegeSecurityDomain = 0x80;       // byte 1 b8
inline constexpr std::uint8_t kPrivilegeDapVerification = 0x40;      // byte 1 b7
inline constexpr std::uint8_t kPrivilegeDelegatedManagement = 0x20;  // byte 1 b6
inline constexpr std::uint8_t kPrivilegeCardLock = 0x10;             // byte 1 b5
inline constexpr std::uint8_t kPrivilegeCardTerminate = 0x08;        // byte 1 b4
inline constexpr std::uint8_t kPrivilegeCardReset = 0x04;            // byte 1 b3 (default selected)
inline constexpr std::uint8_t kPrivilegeCvmManagement = 0x02;        // byte 1 b2

// Install parameters field (Table 11-49): C9 L application-specific parameters (always
// present, possibly C9 00), then EF L system parameters when `system_parameters` is set
// (its value is given already coded: C7/C8/CB/CF... TLVs). EA and B6 are not offered.
struct InstallParameters {
  Bytes application_specific;              // value of C9
  std::optional<Bytes> system_parameters;  // value of EF
};

// [for install] / [for install and make selectable] (Table 11-43).
struct InstallForInstallFields {
  Bytes load_file_aid;  // executable load file, 5-16
  Bytes module_aid;     // executable module, 5-16
  Bytes instance_aid;   // application instance, 5-16
  Bytes privileges;     // 1 or 3 bytes
  InstallParameters parameters;
  Bytes token;  // empty: no install token (LEN 00)
};

// 80 E6 04 00 Lc data 00.
Result<CommandApdu> install_for_install(const InstallForInstallFields& fields);
// 80 E6 0C 00 Lc data 00.
Result<CommandApdu> install_for_install_and_make_selectable(const InstallForInstallFields& fields);

// [for make selectable] (Table 11-44): 80 E6 08 00 Lc 00 00 LEN AID LEN privileges
// LEN params LEN token 00. `parameters` is written as given (usually empty).
Result<CommandApdu> install_for_make_selectable(std::span<const std::uint8_t> application_aid,
                                                std::span<const std::uint8_t> privileges,
                                                std::span<const std::uint8_t> parameters = {},
                                                std::span<const std::uint8_t> token = {});

// [for personalization] (Table 11-47): 80 E6 20 00 Lc 00 00 LEN AID 00 00 00 00.
Result<CommandApdu> install_for_personalization(std::span<const std::uint8_t> application_aid);

// [for extradition] (Table 11-45): 80 E6 10 00 Lc LEN SD-AID 00 LEN AID 00 LEN params
// LEN token 00.
Result<CommandApdu> install_for_extradition(std::span<const std::uint8_t> security_domain_aid,
                                            std::span<const std::uint8_t> application_aid,
                                            std::span<const std::uint8_t> parameters = {},
                                            std::span<const std::uint8_t> token = {});

// ---- PUT KEY (GPC §11.8) -------------------------------------------------------------

struct PutKeyHeader {
  std::uint8_t old_kvn = 0x00;       // P1 b7-b1: KVN replaced, 00 = add a new key set
  std::uint8_t new_kvn = 0x01;       // must be the first byte of the data field (checked)
  std::uint8_t first_key_id = 0x01;  // P2 b7-b1, 01-7F
  bool multiple_keys = true;         // P2 b8
};

// 80 D8 P1 P2 Lc data 00. `data_field` = new KVN || key data field(s), as built by
// scp03_put_key_set_data() or the SCP02 equivalents; it is not parsed beyond its first
// byte. P1 b8 "more PUT KEY commands" is never set (one command carries the whole set).
Result<CommandApdu> put_key(const PutKeyHeader& header, std::span<const std::uint8_t> data_field);

// ---- SET STATUS (GPC §11.10) and life-cycle codes (§11.1.1) ----------------------------

enum class SetStatusScope : std::uint8_t {
  kIssuerSecurityDomain = 0x80,  // card life cycle; no AID sent
  kApplicationOrSecurityDomain = 0x40,
  kSecurityDomainAndApplications = 0x60,
};

namespace life_cycle {
// Applications (Table 11-4): 0xxxx111 application-specific, b8 = locked.
inline constexpr std::uint8_t kAppInstalled = 0x03;
inline constexpr std::uint8_t kAppSelectable = 0x07;
inline constexpr std::uint8_t kAppPersonalized = 0x0F;  // the usual application-specific value
inline constexpr std::uint8_t kLockedBit = 0x80;        // set: LOCKED, e.g. 83 or 87
inline constexpr std::uint8_t kAppLocked = 0x83;
// Security domains (Table 11-5).
inline constexpr std::uint8_t kSdInstalled = 0x03;
inline constexpr std::uint8_t kSdSelectable = 0x07;
inline constexpr std::uint8_t kSdPersonalized = 0x0F;
inline constexpr std::uint8_t kSdLocked = 0x83;
// Card (ISD, Table 11-3).
inline constexpr std::uint8_t kCardOpReady = 0x01;
inline constexpr std::uint8_t kCardInitialized = 0x07;
inline constexpr std::uint8_t kCardSecured = 0x0F;
inline constexpr std::uint8_t kCardLocked = 0x7F;
inline constexpr std::uint8_t kCardTerminated = 0xFF;
}  // namespace life_cycle

// 80 F0 P1 state [Lc AID]. For kIssuerSecurityDomain `aid` must be empty (case 1) and the
// state a card code (07, 0F, 7F, FF); otherwise the AID is 5-16 bytes and the state is 03,
// x7-coded (0xxxx111) or has b8 set.
Result<CommandApdu> set_status(SetStatusScope scope, std::uint8_t state,
                               std::span<const std::uint8_t> aid = {});

// ---- DELETE (GPC §11.2) ----------------------------------------------------------------

// 80 E4 00 {00|80} Lc 4F L AID 00; P2 = 80 deletes the object and its related objects
// (an ELF and its applications). Key deletion (D0/D2) and tokens are not offered.
Result<CommandApdu> delete_object(std::span<const std::uint8_t> aid, bool with_related_objects);

// ---- GET STATUS (GPC §11.4) ------------------------------------------------------------

enum class GetStatusScope : std::uint8_t {
  kIssuerSecurityDomain = 0x80,
  kApplicationsAndSecurityDomains = 0x40,
  kLoadFiles = 0x20,
  kLoadFilesAndModules = 0x10,
};

enum class GetStatusFormat : std::uint8_t {
  kDeprecated = 0x00,  // GPC v2.1.1 response layout
  kTagged = 0x02,      // P2 b2 = 1: E3 templates (gp-reference.md §5.5)
};

struct GetStatusQuery {
  GetStatusScope scope = GetStatusScope::kApplicationsAndSecurityDomains;
  GetStatusFormat format = GetStatusFormat::kTagged;
  bool next = false;   // P2 b1: continue after SW 6310
  Bytes aid_prefix{};  // search criterion 4F L prefix; empty = all (4F 00); 0-16 bytes
  Bytes tag_list{};    // when non-empty: 5C L tags (tagged format only)
};

// 80 F2 P1 P2 Lc 4F L prefix [5C L tags] 00.
Result<CommandApdu> get_status(const GetStatusQuery& query);

}  // namespace persoflow
