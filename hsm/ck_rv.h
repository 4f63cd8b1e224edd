// CK_RV -> name, and CK_RV -> persoflow Error. Every C_ call's return value passes
// through check_rv() (one checkpoint, as in latchset/pkcs11-provider).
#pragma once

#include <string>
#include <string_view>

#include "engine/result.h"

namespace persoflow::hsm {

// "CKR_PIN_INCORRECT"; "CKR_VENDOR_DEFINED+0x12" or "CKR_0x..." for unknown values.
std::string ck_rv_name(unsigned long rv);

// True for return values after which the session must not be reused.
bool rv_breaks_session(unsigned long rv);

// True for return values worth one more try on a fresh session (a device or session
// hiccup: CKR_DEVICE_ERROR, CKR_DEVICE_MEMORY, CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_SESSION_COUNT; a lost login: CKR_USER_NOT_LOGGED_IN, which the
// token restores by logging in again, see hsm/token.h). Token removal, PIN and key problems
// are persistent: retrying them changes nothing. Once a token has logged in again, an
// object or key handle error reaches callers as CKR_USER_NOT_LOGGED_IN (its likely
// cause: a handle of the old login), so it is retried too; before, it is persistent.
bool rv_is_transient(unsigned long rv);

// True for return values that can mean the module lost the token's login (its sessions
// were closed, the device was reset): a session or device error, CKR_USER_NOT_LOGGED_IN,
// or an object or key handle that is no longer valid. The token then looks at its login
// (one C_GetSessionInfo) and logs in again if it is gone.
bool rv_may_mean_lost_login(unsigned long rv);

// True for CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID and the wrapping and
// unwrapping key variants.
bool rv_is_handle_invalid(unsigned long rv);

// Builds the Error for a failed call: "<what>: <function> returned <CKR_NAME>".
// The ErrorCode is kAuth for PIN problems, kHsm otherwise.
Error rv_error(unsigned long rv, std::string_view function, std::string_view what);

// ok_status() when rv == CKR_OK, the rv_error otherwise.
Status check_rv(unsigned long rv, std::string_view function, std::string_view what);

}  // namespace persoflow::hsm
