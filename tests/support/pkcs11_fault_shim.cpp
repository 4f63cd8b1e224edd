// PKCS#11 fault-injection shim (docs/fault-injection.md), for reliability tests only.
//
// A PKCS#11 module that loads the real one (PERSOFLOW_SHIM_MODULE) and forwards every
// call to it, counting the calls of each function. The rules of PERSOFLOW_SHIM_FAULTS
// fail chosen calls: the Nth call of a function (once), or the Nth and every later one,
// with a chosen CK_RV, or by closing the real module's sessions ("drop-sessions") as a
// device reset would. PERSOFLOW_SHIM_COUNTS writes the counts as JSON at C_Finalize.
// PERSOFLOW_SHIM_TRACE writes one JSON line per forwarded call, enough for another process
// to make the same calls against the same token (bench/hsm_floor.cpp replays it).
//
// The standard headers come before p11-kit's: it defines lower-case macros (count,
// value, reserved, slot_id, ...) that would rewrite identifiers in them. No identifier
// below uses one of those names.
#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <p11-kit/pkcs11.h>

namespace {

// What the first argument of a function names: drop-sessions closes the sessions of
// that slot (a session's slot is asked of the real module), or of every slot.
enum class Target { kNone, kSlot, kSession };

// When an injected CK_RV replaces the real call.
//   kBefore: the real function is not called (no side effect in the real module).
//   kAfter:  the real function is called and its CK_RV replaced. These are the calls
//            that continue or end an active operation: PKCS#11 ends the operation when
//            they fail, so the real module must end it too, or the session would answer
//            CKR_OPERATION_ACTIVE to the caller's next ...Init. Output buffers may have
//            been written; a caller ignores them on an error anyway.
enum class When { kBefore, kAfter };

// Every function of CK_FUNCTION_LIST (PKCS#11 2.40), in the order of the structure.
#define PF_SHIM_FUNCTIONS(X)                 \
  X(C_Initialize, kNone, kBefore)            \
  X(C_Finalize, kNone, kBefore)              \
  X(C_GetInfo, kNone, kBefore)               \
  X(C_GetFunctionList, kNone, kBefore)       \
  X(C_GetSlotList, kNone, kBefore)           \
  X(C_GetSlotInfo, kSlot, kBefore)           \
  X(C_GetTokenInfo, kSlot, kBefore)          \
  X(C_GetMechanismList, kSlot, kBefore)      \
  X(C_GetMechanismInfo, kSlot, kBefore)      \
  X(C_InitToken, kSlot, kBefore)             \
  X(C_InitPIN, kSession, kBefore)            \
  X(C_SetPIN, kSession, kBefore)             \
  X(C_OpenSession, kSlot, kBefore)           \
  X(C_CloseSession, kSession, kBefore)       \
  X(C_CloseAllSessions, kSlot, kBefore)      \
  X(C_GetSessionInfo, kSession, kBefore)     \
  X(C_GetOperationState, kSession, kBefore)  \
  X(C_SetOperationState, kSession, kBefore)  \
  X(C_Login, kSession, kBefore)              \
  X(C_Logout, kSession, kBefore)             \
  X(C_CreateObject, kSession, kBefore)       \
  X(C_CopyObject, kSession, kBefore)         \
  X(C_DestroyObject, kSession, kBefore)      \
  X(C_GetObjectSize, kSession, kBefore)      \
  X(C_GetAttributeValue, kSession, kBefore)  \
  X(C_SetAttributeValue, kSession, kBefore)  \
  X(C_FindObjectsInit, kSession, kBefore)    \
  X(C_FindObjects, kSession, kBefore)        \
  X(C_FindObjectsFinal, kSession, kAfter)    \
  X(C_EncryptInit, kSession, kBefore)        \
  X(C_Encrypt, kSession, kAfter)             \
  X(C_EncryptUpdate, kSession, kAfter)       \
  X(C_EncryptFinal, kSession, kAfter)        \
  X(C_DecryptInit, kSession, kBefore)        \
  X(C_Decrypt, kSession, kAfter)             \
  X(C_DecryptUpdate, kSession, kAfter)       \
  X(C_DecryptFinal, kSession, kAfter)        \
  X(C_DigestInit, kSession, kBefore)         \
  X(C_Digest, kSession, kAfter)              \
  X(C_DigestUpdate, kSession, kAfter)        \
  X(C_DigestKey, kSession, kAfter)           \
  X(C_DigestFinal, kSession, kAfter)         \
  X(C_SignInit, kSession, kBefore)           \
  X(C_Sign, kSession, kAfter)                \
  X(C_SignUpdate, kSession, kAfter)          \
  X(C_SignFinal, kSession, kAfter)           \
  X(C_SignRecoverInit, kSession, kBefore)    \
  X(C_SignRecover, kSession, kAfter)         \
  X(C_VerifyInit, kSession, kBefore)         \
  X(C_Verify, kSession, kAfter)              \
  X(C_VerifyUpdate, kSession, kAfter)        \
  X(C_VerifyFinal, kSession, kAfter)         \
  X(C_VerifyRecoverInit, kSession, kBefore)  \
  X(C_VerifyRecover, kSession, kAfter)       \
  X(C_DigestEncryptUpdate, kSession, kAfter) \
  X(C_DecryptDigestUpdate, kSession, kAfter) \
  X(C_SignEncryptUpdate, kSession, kAfter)   \
  X(C_DecryptVerifyUpdate, kSession, kAfter) \
  X(C_GenerateKey, kSession, kBefore)        \
  X(C_GenerateKeyPair, kSession, kBefore)    \
  X(C_WrapKey, kSession, kBefore)            \
  X(C_UnwrapKey, kSession, kBefore)          \
  X(C_DeriveKey, kSession, kBefore)          \
  X(C_SeedRandom, kSession, kBefore)         \
  X(C_GenerateRandom, kSession, kBefore)     \
  X(C_GetFunctionStatus, kSession, kBefore)  \
  X(C_CancelFunction, kSession, kBefore)     \
  X(C_WaitForSlotEvent, kNone, kBefore)

enum class Fn : std::size_t {
#define PF_SHIM_ENUM(name, target, when) name,
  PF_SHIM_FUNCTIONS(PF_SHIM_ENUM)
#undef PF_SHIM_ENUM
};

constexpr const char* kFunctionNames[] = {
#define PF_SHIM_NAME(name, target, when) #name,
    PF_SHIM_FUNCTIONS(PF_SHIM_NAME)
#undef PF_SHIM_NAME
};
constexpr std::size_t kFunctions = std::size(kFunctionNames);

constexpr std::size_t index_of(Fn f) { return static_cast<std::size_t>(f); }

// The CK_RV names a rule may give (any other value in hex).
// clang-format off
#define PF_SHIM_RETURN_VALUES(X)         \
  X(CKR_CANCEL)                          \
  X(CKR_HOST_MEMORY)                     \
  X(CKR_SLOT_ID_INVALID)                 \
  X(CKR_GENERAL_ERROR)                   \
  X(CKR_FUNCTION_FAILED)                 \
  X(CKR_ARGUMENTS_BAD)                   \
  X(CKR_ATTRIBUTE_SENSITIVE)             \
  X(CKR_ATTRIBUTE_VALUE_INVALID)         \
  X(CKR_DATA_INVALID)                    \
  X(CKR_DATA_LEN_RANGE)                  \
  X(CKR_DEVICE_ERROR)                    \
  X(CKR_DEVICE_MEMORY)                   \
  X(CKR_DEVICE_REMOVED)                  \
  X(CKR_ENCRYPTED_DATA_INVALID)          \
  X(CKR_FUNCTION_CANCELED)               \
  X(CKR_FUNCTION_NOT_SUPPORTED)          \
  X(CKR_KEY_HANDLE_INVALID)              \
  X(CKR_KEY_FUNCTION_NOT_PERMITTED)      \
  X(CKR_MECHANISM_INVALID)               \
  X(CKR_OBJECT_HANDLE_INVALID)           \
  X(CKR_OPERATION_ACTIVE)                \
  X(CKR_OPERATION_NOT_INITIALIZED)       \
  X(CKR_PIN_INCORRECT)                   \
  X(CKR_PIN_EXPIRED)                     \
  X(CKR_PIN_LOCKED)                      \
  X(CKR_SESSION_CLOSED)                  \
  X(CKR_SESSION_COUNT)                   \
  X(CKR_SESSION_HANDLE_INVALID)          \
  X(CKR_SIGNATURE_INVALID)               \
  X(CKR_TEMPLATE_INCONSISTENT)           \
  X(CKR_TOKEN_NOT_PRESENT)               \
  X(CKR_TOKEN_NOT_RECOGNIZED)            \
  X(CKR_USER_NOT_LOGGED_IN)              \
  X(CKR_WRAPPED_KEY_INVALID)             \
  X(CKR_BUFFER_TOO_SMALL)                \
  X(CKR_CRYPTOKI_NOT_INITIALIZED)
// clang-format on

struct NamedRv {
  std::string_view name;
  CK_RV rv;
};

constexpr NamedRv kReturnValues[] = {
#define PF_SHIM_RV(name) {#name, name},
    PF_SHIM_RETURN_VALUES(PF_SHIM_RV)
#undef PF_SHIM_RV
};

// One rule of PERSOFLOW_SHIM_FAULTS.
struct Rule {
  Fn function = Fn::C_Initialize;
  unsigned long long nth = 0;  // the call number, from 1
  bool and_later = false;      // "N+": the Nth call and every later one
  bool drop_sessions = false;
  CK_RV rv = CKR_OK;  // what the faulted call returns
  std::string text;   // the rule as written, for messages
};

struct Config {
  std::string module;
  std::vector<Rule> rules;
  std::string counts_path;
  std::string trace_path;
  bool verbose = false;
};

// The shim's state. Rules and paths are written by C_Initialize only (under life_mu,
// before `real` is published) and read-only afterwards; counters are atomics.
struct Shim {
  std::mutex life_mu;  // C_Initialize and C_Finalize
  std::atomic<CK_FUNCTION_LIST*> real{nullptr};
  void* handle = nullptr;
  bool finalize_real = true;  // false when the real module was initialized by someone else
  Config config;
  std::array<std::atomic<unsigned long long>, kFunctions> calls{};
  // Forwarded calls hold it shared, drop-sessions exclusively: the real module's sessions
  // are closed between calls, never under one still running on another thread. A real HSM
  // that loses its sessions fails the calls that come after; SoftHSM freeing a session
  // that another thread is using corrupted the heap (HsmRecoveryTest's concurrent drop
  // crashed a few runs in a hundred).
  std::shared_mutex calls_mu;

  ~Shim();
};

Shim g_shim;

constexpr const char* kPrefix = "persoflow-fault-shim";

// The parts one after the other (message building without "literal" + std::string, on
// which GCC 12 reports a false -Wrestrict).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

bool config_error(const char* variable, const std::string& problem) {
  std::fprintf(stderr, "%s: %s: %s\n", kPrefix, variable, problem.c_str());
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool find_function(std::string_view name, Fn& out) {
  for (std::size_t i = 0; i < kFunctions; ++i) {
    if (name == kFunctionNames[i]) {
      out = static_cast<Fn>(i);
      return true;
    }
  }
  return false;
}

bool parse_return_value(std::string_view text, CK_RV& out) {
  for (const NamedRv& r : kReturnValues) {
    if (text == r.name) {
      out = r.rv;
      return true;
    }
  }
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    unsigned long v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data() + 2, end, v, 16);
    if (ec == std::errc() && ptr == end && v != CKR_OK) {
      out = v;
      return true;
    }
  }
  return false;
}

// FUNCTION:N[+]:ACTION. On error prints the one line and returns false.
bool parse_rule(std::string_view item, Rule& rule) {
  constexpr const char* kVar = "PERSOFLOW_SHIM_FAULTS";
  const std::string quoted = cat("rule '", item, "'");
  const std::size_t c1 = item.find(':');
  const std::size_t c2 = c1 == std::string_view::npos ? c1 : item.find(':', c1 + 1);
  if (c2 == std::string_view::npos || item.find(':', c2 + 1) != std::string_view::npos) {
    return config_error(
        kVar, cat(quoted, " is not FUNCTION:N[+]:ACTION (e.g. C_Sign:5:CKR_DEVICE_ERROR)"));
  }
  const std::string_view function = trim(item.substr(0, c1));
  std::string_view when = trim(item.substr(c1 + 1, c2 - c1 - 1));
  const std::string_view action = trim(item.substr(c2 + 1));

  rule.text = std::string(item);
  if (!find_function(function, rule.function)) {
    return config_error(kVar, cat(quoted, ": unknown PKCS#11 function '", function, "'"));
  }
  if (rule.function == Fn::C_GetFunctionList) {
    return config_error(kVar, cat(quoted,
                                  ": C_GetFunctionList cannot be faulted (it is called before "
                                  "C_Initialize reads the rules)"));
  }
  rule.and_later = !when.empty() && when.back() == '+';
  if (rule.and_later) when.remove_suffix(1);
  const char* end = when.data() + when.size();
  auto [ptr, ec] = std::from_chars(when.data(), end, rule.nth, 10);
  if (when.empty() || ec != std::errc() || ptr != end || rule.nth == 0) {
    return config_error(kVar, cat(quoted, ": call number '", trim(item.substr(c1 + 1, c2 - c1 - 1)),
                                  "' is not N or N+ with N a whole number from 1"));
  }
  if (action == "drop-sessions") {
    if (rule.function == Fn::C_Initialize || rule.function == Fn::C_Finalize) {
      return config_error(
          kVar, cat(quoted, ": drop-sessions needs an initialized module; it cannot apply to ",
                    function));
    }
    rule.drop_sessions = true;
    rule.rv = CKR_SESSION_HANDLE_INVALID;
    return true;
  }
  if (!parse_return_value(action, rule.rv)) {
    return config_error(kVar,
                        cat(quoted, ": unknown action '", action,
                            "' (a CKR_ name such as CKR_DEVICE_ERROR, a non-zero hex value such as "
                            "0x30, or drop-sessions)"));
  }
  return true;
}

bool parse_rules(std::string_view text, std::vector<Rule>& rules) {
  if (trim(text).empty()) return true;
  std::size_t start = 0;
  for (std::size_t number = 1;; ++number) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = trim(text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (item.empty()) {
      return config_error(
          "PERSOFLOW_SHIM_FAULTS",
          cat("rule ", std::to_string(number), " is empty (rules are separated by single commas)"));
    }
    Rule rule;
    if (!parse_rule(item, rule)) return false;
    rules.push_back(std::move(rule));
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

bool read_config(Config& config) {
  config.module = env("PERSOFLOW_SHIM_MODULE");
  if (config.module.empty()) {
    return config_error("PERSOFLOW_SHIM_MODULE",
                        "not set: it must name the real PKCS#11 module to wrap");
  }
  if (!parse_rules(env("PERSOFLOW_SHIM_FAULTS"), config.rules)) return false;
  config.counts_path = env("PERSOFLOW_SHIM_COUNTS");
  config.trace_path = env("PERSOFLOW_SHIM_TRACE");
  const std::string_view verbose = env("PERSOFLOW_SHIM_VERBOSE");
  if (verbose != "" && verbose != "0" && verbose != "1") {
    return config_error("PERSOFLOW_SHIM_VERBOSE", cat("'", verbose, "' is not 0 or 1"));
  }
  config.verbose = verbose == "1";
  return true;
}

// The counts or trace file's path: every "%p" replaced by the process id.
std::string path_with_pid(const std::string& pattern) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'p') {
      out += std::to_string(getpid());
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

// {"C_Initialize": n, ...} for every function but C_GetFunctionList, written to a
// temporary file renamed into place.
void write_counts(const Shim& shim) {
  if (shim.config.counts_path.empty()) return;
  const std::string path = path_with_pid(shim.config.counts_path);
  const std::string tmp = cat(path, ".tmp-", std::to_string(getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f != nullptr;
  if (ok) {
    const char* separator = "{\n";
    for (std::size_t i = 0; i < kFunctions; ++i) {
      if (static_cast<Fn>(i) == Fn::C_GetFunctionList) continue;
      std::fprintf(f, "%s  \"%s\": %llu", separator, kFunctionNames[i],
                   shim.calls[i].load(std::memory_order_relaxed));
      separator = ",\n";
    }
    std::fputs("\n}\n", f);
    ok = std::fclose(f) == 0 && std::rename(tmp.c_str(), path.c_str()) == 0;
  }
  if (!ok) {
    std::fprintf(stderr, "%s: PERSOFLOW_SHIM_COUNTS: cannot write %s: %s\n", kPrefix, path.c_str(),
                 std::strerror(errno));
    std::remove(tmp.c_str());
  }
}

void close_trace();

Shim::~Shim() {
  // The process exits (or the shim is unloaded) without C_Finalize: still leave the counts
  // and the trace.
  if (real.load() != nullptr) {
    write_counts(*this);
    close_trace();
  }
}

// Counts a call; returns its number (from 1).
unsigned long long next_call(Fn f) {
  return g_shim.calls[index_of(f)].fetch_add(1, std::memory_order_relaxed) + 1;
}

// The first rule that fires on call number n of f, if any.
const Rule* rule_for(Fn f, unsigned long long n) {
  for (const Rule& r : g_shim.config.rules) {
    if (r.function == f && (n == r.nth || (r.and_later && n > r.nth))) {
      if (g_shim.config.verbose) {
        std::fprintf(stderr, "%s: %s call %llu: rule '%s' fires\n", kPrefix,
                     kFunctionNames[index_of(f)], n, r.text.c_str());
      }
      return &r;
    }
  }
  return nullptr;
}

const Rule* count_call(Fn f) { return rule_for(f, next_call(f)); }

// Closes every session of the slot the call concerns, or of every slot.
void drop_sessions(CK_FUNCTION_LIST* real, Target target, CK_ULONG id) {
  if (target == Target::kSlot) {
    real->C_CloseAllSessions(id);
    return;
  }
  if (target == Target::kSession) {
    CK_SESSION_INFO info{};
    if (real->C_GetSessionInfo(id, &info) == CKR_OK) {
      real->C_CloseAllSessions(info.slotID);
      return;
    }
  }
  CK_ULONG n = 0;
  if (real->C_GetSlotList(CK_FALSE, nullptr, &n) != CKR_OK || n == 0) return;
  std::vector<CK_SLOT_ID> slots(n);
  if (real->C_GetSlotList(CK_FALSE, slots.data(), &n) != CKR_OK) return;
  for (CK_ULONG i = 0; i < n && i < slots.size(); ++i) real->C_CloseAllSessions(slots[i]);
}

// ---------------------------------------------------------------------------------------
// The call trace (PERSOFLOW_SHIM_TRACE; docs/fault-injection.md "Call trace").
//
// One JSON line per call forwarded to the real module, written once it returns, holding
// what another process needs to make the same call against the same token
// (bench/hsm_floor.cpp replays it): the session as an index, object handles as "made by
// call #n" or as an object whose identity is asked of the real module once, mechanisms
// with their parameters, templates without secret values, and data lengths. Data bytes
// are written only for inputs that are already ciphertext or public (what is decrypted,
// a wrapped key, what is verified): encryption, signing and digest inputs may be clear
// card data, so the trace has their length only.

// How a template attribute's value is written. Values are written for the attributes
// named here only (booleans, class, key type, label, id, lengths, public parameters);
// CKA_VALUE, and any attribute not named here, gets its length only.
enum class AttrKind { kLengthOnly, kBool, kUlong, kText, kHex };

struct AttrInfo {
  CK_ATTRIBUTE_TYPE type;
  const char* name;
  AttrKind kind;
};

constexpr AttrInfo kAttributes[] = {
    {CKA_CLASS, "CKA_CLASS", AttrKind::kUlong},
    {CKA_TOKEN, "CKA_TOKEN", AttrKind::kBool},
    {CKA_PRIVATE, "CKA_PRIVATE", AttrKind::kBool},
    {CKA_LABEL, "CKA_LABEL", AttrKind::kText},
    {CKA_VALUE, "CKA_VALUE", AttrKind::kLengthOnly},
    {CKA_CERTIFICATE_TYPE, "CKA_CERTIFICATE_TYPE", AttrKind::kUlong},
    {CKA_TRUSTED, "CKA_TRUSTED", AttrKind::kBool},
    {CKA_KEY_TYPE, "CKA_KEY_TYPE", AttrKind::kUlong},
    {CKA_ID, "CKA_ID", AttrKind::kHex},
    {CKA_SENSITIVE, "CKA_SENSITIVE", AttrKind::kBool},
    {CKA_ENCRYPT, "CKA_ENCRYPT", AttrKind::kBool},
    {CKA_DECRYPT, "CKA_DECRYPT", AttrKind::kBool},
    {CKA_WRAP, "CKA_WRAP", AttrKind::kBool},
    {CKA_UNWRAP, "CKA_UNWRAP", AttrKind::kBool},
    {CKA_SIGN, "CKA_SIGN", AttrKind::kBool},
    {CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER", AttrKind::kBool},
    {CKA_VERIFY, "CKA_VERIFY", AttrKind::kBool},
    {CKA_VERIFY_RECOVER, "CKA_VERIFY_RECOVER", AttrKind::kBool},
    {CKA_DERIVE, "CKA_DERIVE", AttrKind::kBool},
    {CKA_MODULUS_BITS, "CKA_MODULUS_BITS", AttrKind::kUlong},
    {CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", AttrKind::kHex},
    {CKA_EC_PARAMS, "CKA_EC_PARAMS", AttrKind::kHex},
    {CKA_VALUE_BITS, "CKA_VALUE_BITS", AttrKind::kUlong},
    {CKA_VALUE_LEN, "CKA_VALUE_LEN", AttrKind::kUlong},
    {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", AttrKind::kBool},
    {CKA_LOCAL, "CKA_LOCAL", AttrKind::kBool},
    {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", AttrKind::kBool},
    {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", AttrKind::kBool},
    {CKA_KEY_GEN_MECHANISM, "CKA_KEY_GEN_MECHANISM", AttrKind::kUlong},
    {CKA_MODIFIABLE, "CKA_MODIFIABLE", AttrKind::kBool},
    {CKA_COPYABLE, "CKA_COPYABLE", AttrKind::kBool},
    {CKA_DESTROYABLE, "CKA_DESTROYABLE", AttrKind::kBool},
    {CKA_ALWAYS_AUTHENTICATE, "CKA_ALWAYS_AUTHENTICATE", AttrKind::kBool},
    {CKA_WRAP_WITH_TRUSTED, "CKA_WRAP_WITH_TRUSTED", AttrKind::kBool},
};

const AttrInfo* attribute_info(CK_ATTRIBUTE_TYPE type) {
  for (const AttrInfo& a : kAttributes) {
    if (a.type == type) return &a;
  }
  return nullptr;
}

// Names for the mechanisms persoflow and SoftHSM use, to make a trace readable; the
// replay goes by the number.
// clang-format off
#define PF_SHIM_MECHANISMS(X)                                                           \
  X(CKM_RSA_PKCS) X(CKM_RSA_PKCS_OAEP) X(CKM_SHA256_RSA_PKCS)                          \
  X(CKM_DES2_KEY_GEN) X(CKM_DES3_KEY_GEN) X(CKM_DES3_ECB) X(CKM_DES3_CBC)             \
  X(CKM_DES3_CBC_PAD) X(CKM_DES3_CMAC) X(CKM_DES3_CMAC_GENERAL)                        \
  X(CKM_SHA_1) X(CKM_SHA256) X(CKM_SHA384) X(CKM_SHA512)                               \
  X(CKM_SHA256_HMAC) X(CKM_SHA384_HMAC) X(CKM_SHA512_HMAC)                             \
  X(CKM_GENERIC_SECRET_KEY_GEN) X(CKM_EC_KEY_PAIR_GEN) X(CKM_ECDSA) X(CKM_ECDH1_DERIVE)  \
  X(CKM_AES_KEY_GEN) X(CKM_AES_ECB) X(CKM_AES_CBC) X(CKM_AES_CBC_PAD) X(CKM_AES_CTR)  \
  X(CKM_AES_GCM) X(CKM_AES_CMAC) X(CKM_AES_CMAC_GENERAL)                               \
  X(CKM_DES_ECB_ENCRYPT_DATA) X(CKM_DES_CBC_ENCRYPT_DATA)                              \
  X(CKM_DES3_ECB_ENCRYPT_DATA) X(CKM_DES3_CBC_ENCRYPT_DATA)                            \
  X(CKM_AES_ECB_ENCRYPT_DATA) X(CKM_AES_CBC_ENCRYPT_DATA)                              \
  X(CKM_AES_KEY_WRAP) X(CKM_AES_KEY_WRAP_PAD)
// clang-format on

const char* mechanism_name(CK_MECHANISM_TYPE type) {
  switch (type) {
#define PF_SHIM_MECHANISM_CASE(name) \
  case name:                         \
    return #name;
    PF_SHIM_MECHANISMS(PF_SHIM_MECHANISM_CASE)
#undef PF_SHIM_MECHANISM_CASE
  }
  return nullptr;
}

// --- JSON pieces (the shim has no JSON library; every string written is ASCII) ---

void put_key(std::string& o, std::string_view key) {
  o += ",\"";
  o += key;
  o += "\":";
}

void put_uint(std::string& o, unsigned long long v) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  o.append(buf, end);
}

void put_hex(std::string& o, const void* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto* b = static_cast<const unsigned char*>(bytes);
  o += '"';
  for (std::size_t i = 0; i < n; ++i) {
    o += kDigits[b[i] >> 4];
    o += kDigits[b[i] & 0x0f];
  }
  o += '"';
}

// Bytes that are printable ASCII as a JSON string under `key`; anything else (UTF-8,
// control bytes) as hex under `hex_key`, so that the replay gets the exact bytes back.
void put_text(std::string& o, std::string_view key, std::string_view hex_key, const void* bytes,
              std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(bytes);
  bool printable = true;
  for (std::size_t i = 0; i < n && printable; ++i) printable = b[i] >= 0x20 && b[i] < 0x7f;
  if (!printable) {
    put_key(o, hex_key);
    put_hex(o, bytes, n);
    return;
  }
  put_key(o, key);
  o += '"';
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] == '"' || b[i] == '\\') o += '\\';
    o += static_cast<char>(b[i]);
  }
  o += '"';
}

// One attribute's value, if its kind allows it: ,"value":true | 4 ; ,"text":"..." ; ,"hex":"..."
void put_attribute_value(std::string& o, const CK_ATTRIBUTE& a) {
  const AttrInfo* info = attribute_info(a.type);
  if (info == nullptr || a.pValue == nullptr || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return;
  switch (info->kind) {
    case AttrKind::kLengthOnly:
      return;
    case AttrKind::kBool:
      if (a.ulValueLen == sizeof(CK_BBOOL)) {
        put_key(o, "value");
        o += *static_cast<const CK_BBOOL*>(a.pValue) != CK_FALSE ? "true" : "false";
      }
      return;
    case AttrKind::kUlong:
      if (a.ulValueLen == sizeof(CK_ULONG)) {
        put_key(o, "value");
        put_uint(o, *static_cast<const CK_ULONG*>(a.pValue));
      }
      return;
    case AttrKind::kText:
      put_text(o, "text", "hex", a.pValue, a.ulValueLen);
      return;
    case AttrKind::kHex:
      put_key(o, "hex");
      put_hex(o, a.pValue, a.ulValueLen);
      return;
  }
}

void put_attribute_head(std::string& o, CK_ATTRIBUTE_TYPE type) {
  o += "{\"type\":";
  put_uint(o, type);
  if (const AttrInfo* info = attribute_info(type)) {
    o += ",\"name\":\"";
    o += info->name;
    o += '"';
  }
}

// An input template: [{"type":T,"name":"CKA_...","len":L,"value":...}, ...]
void put_template(std::string& o, std::string_view key, const CK_ATTRIBUTE* tmpl, CK_ULONG n) {
  put_key(o, key);
  o += '[';
  for (CK_ULONG i = 0; tmpl != nullptr && i < n; ++i) {
    if (i != 0) o += ',';
    put_attribute_head(o, tmpl[i].type);
    o += ",\"len\":";
    put_uint(o, tmpl[i].ulValueLen);
    put_attribute_value(o, tmpl[i]);
    o += '}';
  }
  o += ']';
}

// "mech":{"type":N,"name":"CKM_...", parameters}. GCM parameters and the *_ENCRYPT_DATA
// derivation data are taken apart (their structures hold pointers); any other parameter
// is written as its raw bytes.
void put_mechanism(std::string& o, const CK_MECHANISM* m) {
  put_key(o, "mech");
  if (m == nullptr) {
    o += "null";
    return;
  }
  o += "{\"type\":";
  put_uint(o, m->mechanism);
  if (const char* name = mechanism_name(m->mechanism)) {
    o += ",\"name\":\"";
    o += name;
    o += '"';
  }
  const void* p = m->pParameter;
  const CK_ULONG len = m->ulParameterLen;
  if (p != nullptr) {
    put_key(o, "param_len");
    put_uint(o, len);
  }
  auto put_data = [&o](const char* key, const unsigned char* bytes, CK_ULONG n) {
    put_key(o, key);
    if (bytes == nullptr) {
      o += "null";
    } else {
      put_hex(o, bytes, n);
    }
  };
  if (p == nullptr) {
    // no parameter
  } else if (m->mechanism == CKM_AES_GCM && len == sizeof(CK_GCM_PARAMS)) {
    const auto* g = static_cast<const CK_GCM_PARAMS*>(p);
    put_data("iv", g->pIv, g->ulIvLen);
    put_key(o, "iv_bits");
    put_uint(o, g->ulIvBits);
    put_data("aad", g->pAAD, g->ulAADLen);
    put_key(o, "tag_bits");
    put_uint(o, g->ulTagBits);
  } else if ((m->mechanism == CKM_AES_ECB_ENCRYPT_DATA ||
              m->mechanism == CKM_DES_ECB_ENCRYPT_DATA ||
              m->mechanism == CKM_DES3_ECB_ENCRYPT_DATA) &&
             len == sizeof(CK_KEY_DERIVATION_STRING_DATA)) {
    const auto* d = static_cast<const CK_KEY_DERIVATION_STRING_DATA*>(p);
    put_data("data", d->pData, d->ulLen);
  } else if (m->mechanism == CKM_AES_CBC_ENCRYPT_DATA &&
             len == sizeof(CK_AES_CBC_ENCRYPT_DATA_PARAMS)) {
    const auto* d = static_cast<const CK_AES_CBC_ENCRYPT_DATA_PARAMS*>(p);
    put_data("iv", d->iv, sizeof d->iv);
    put_data("data", d->pData, d->length);
  } else if ((m->mechanism == CKM_DES_CBC_ENCRYPT_DATA ||
              m->mechanism == CKM_DES3_CBC_ENCRYPT_DATA) &&
             len == sizeof(CK_DES_CBC_ENCRYPT_DATA_PARAMS)) {
    const auto* d = static_cast<const CK_DES_CBC_ENCRYPT_DATA_PARAMS*>(p);
    put_data("iv", d->iv, sizeof d->iv);
    put_data("data", d->pData, d->length);
  } else {
    put_key(o, "param");
    put_hex(o, p, len);
  }
  o += '}';
}

// --- Sessions and objects ---

// The call that made an object (C_CreateObject, C_CopyObject, C_DeriveKey, C_UnwrapKey,
// C_GenerateKey; part 1 and 2: the public and private key of C_GenerateKeyPair).
struct Made {
  unsigned long long call = 0;
  int part = 0;
  std::size_t session = 0;  // index of the session that made it: a session object dies with it
  bool token = false;
};

// How a line names an object handle.
struct HandleRef {
  enum class Kind { kNull, kMade, kObject };
  Kind kind = Kind::kNull;
  unsigned long long call = 0;  // kMade
  int part = 0;                 // kMade
  std::size_t object = 0;       // kObject: the trace's object number
};

// An object not made by a traced call (a token key found with C_FindObjects): its
// identity is asked of the real module once and written with the first line naming it.
struct ObjectIdentity {
  std::string members;  // ,"class":4,"key_type":31,"label":"...","id":"...",...
  bool written = false;
};

struct SessionSlot {
  bool used = false;
  bool slot_known = false;
  CK_SLOT_ID slot = 0;
};

struct Trace {
  std::atomic<bool> on{false};  // a trace file is open; read without the lock by Forward
  std::mutex mu;                // everything below
  std::FILE* file = nullptr;
  std::string path;
  std::string started_path;  // the file this process already wrote: later cycles append
  std::string buffer;        // lines not yet written to the file
  bool write_failed = false;
  unsigned long long lines = 0;  // call numbers, from 1; they go on across C_Finalize
  std::unordered_map<CK_OBJECT_HANDLE, Made> made;
  std::unordered_map<CK_OBJECT_HANDLE, std::size_t> objects;
  std::vector<ObjectIdentity> identities;
  std::unordered_map<CK_SESSION_HANDLE, std::size_t> sessions;
  std::vector<SessionSlot> session_slots;
};

// Never destroyed: a thread still calling into the shim while the process exits must
// not find it gone (the file is closed, `on` is false, the call is simply not traced).
Trace& g_trace = *new Trace;

constexpr std::size_t kTraceBufferBytes = 1 << 20;

void flush_trace_locked(Trace& t) {
  if (t.file != nullptr && !t.buffer.empty()) {
    if (std::fwrite(t.buffer.data(), 1, t.buffer.size(), t.file) != t.buffer.size()) {
      t.write_failed = true;
    }
  }
  t.buffer.clear();
}

// The lowest free session index, marked used.
std::size_t take_session_index(Trace& t) {
  for (std::size_t i = 0; i < t.session_slots.size(); ++i) {
    if (!t.session_slots[i].used) {
      t.session_slots[i] = SessionSlot{true, false, 0};
      return i;
    }
  }
  t.session_slots.push_back(SessionSlot{true, false, 0});
  return t.session_slots.size() - 1;
}

// The index of a session handle. Indices are reused once a session is closed, so that
// a replay needs as many sessions as the traced process had open at once. A handle the
// trace never saw opened (opened before, or invalid) gets an index too.
std::size_t session_index(Trace& t, CK_SESSION_HANDLE h) {
  const auto it = t.sessions.find(h);
  if (it != t.sessions.end()) return it->second;
  const std::size_t i = take_session_index(t);
  t.sessions[h] = i;
  return i;
}

// Objects that die with their session are forgotten with it: the module may give their
// handle numbers to other objects.
void forget_session_objects(Trace& t, std::size_t index, bool every_session) {
  for (auto it = t.made.begin(); it != t.made.end();) {
    if (!it->second.token && (every_session || it->second.session == index)) {
      it = t.made.erase(it);
    } else {
      ++it;
    }
  }
}

void close_session_index(Trace& t, std::size_t index, CK_SESSION_HANDLE h) {
  if (index < t.session_slots.size()) t.session_slots[index].used = false;
  const auto it = t.sessions.find(h);
  if (it != t.sessions.end() && it->second == index) t.sessions.erase(it);
  forget_session_objects(t, index, false);
}

// After a login ends or begins (C_Login, C_Logout, every session closed), SoftHSM gives
// token objects new handles, and an old number may then name another key: handles are
// identified again (a new object number each) from then on.
void close_slot_sessions(Trace& t, CK_SLOT_ID slot) {
  for (auto it = t.sessions.begin(); it != t.sessions.end();) {
    SessionSlot& s = t.session_slots[it->second];
    if (!s.slot_known || s.slot == slot) {
      s.used = false;
      it = t.sessions.erase(it);
    } else {
      ++it;
    }
  }
  forget_session_objects(t, 0, true);
}

// ,"class":4,"key_type":31,"label":"kmc","id":"01","token":true,"value_len":16, asked of the
// real module (not counted, not traced). What the module does not have is left out; a
// failure is written as "identity_rv".
std::string identify_object(CK_FUNCTION_LIST* real, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE h) {
  CK_OBJECT_CLASS cls = 0;
  CK_KEY_TYPE key_type = 0;
  CK_BBOOL token = CK_FALSE;
  CK_ULONG key_length = 0;
  CK_ATTRIBUTE a[] = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_TOKEN, &token, sizeof token}, {CKA_VALUE_LEN, &key_length, sizeof key_length},
      {CKA_LABEL, nullptr, 0},           {CKA_ID, nullptr, 0},
  };
  constexpr CK_ULONG kAttrs = std::size(a);
  std::string o;
  // Several attributes may not exist for an object (a certificate has no key type):
  // the module still fills the others and marks those CK_UNAVAILABLE_INFORMATION.
  CK_RV rv = real->C_GetAttributeValue(session, h, a, kAttrs);
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
    put_key(o, "identity_rv");
    put_uint(o, rv);
    return o;
  }
  std::vector<unsigned char> label(a[4].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0
                                                                                 : a[4].ulValueLen);
  std::vector<unsigned char> id(a[5].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0
                                                                              : a[5].ulValueLen);
  CK_ATTRIBUTE names[] = {{CKA_LABEL, label.data(), static_cast<CK_ULONG>(label.size())},
                          {CKA_ID, id.data(), static_cast<CK_ULONG>(id.size())}};
  rv = real->C_GetAttributeValue(session, h, names, 2);
  auto known = [](const CK_ATTRIBUTE& x) { return x.ulValueLen != CK_UNAVAILABLE_INFORMATION; };
  if (known(a[0])) {
    put_key(o, "class");
    put_uint(o, cls);
  }
  if (known(a[1])) {
    put_key(o, "key_type");
    put_uint(o, key_type);
  }
  if (rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID) {
    if (known(names[0])) put_text(o, "label", "label_hex", label.data(), names[0].ulValueLen);
    if (known(names[1])) {
      put_key(o, "id");
      put_hex(o, id.data(), names[1].ulValueLen);
    }
  }
  if (known(a[2])) {
    put_key(o, "token");
    o += token != CK_FALSE ? "true" : "false";
  }
  if (known(a[3])) {
    put_key(o, "value_len");
    put_uint(o, key_length);
  }
  return o;
}

HandleRef resolve_handle(Trace& t, CK_FUNCTION_LIST* real, CK_SESSION_HANDLE session,
                         CK_OBJECT_HANDLE h) {
  HandleRef r;
  if (h == CK_INVALID_HANDLE) return r;
  if (const auto m = t.made.find(h); m != t.made.end()) {
    r.kind = HandleRef::Kind::kMade;
    r.call = m->second.call;
    r.part = m->second.part;
    return r;
  }
  r.kind = HandleRef::Kind::kObject;
  if (const auto o = t.objects.find(h); o != t.objects.end()) {
    r.object = o->second;
    return r;
  }
  r.object = t.identities.size();
  t.identities.push_back(ObjectIdentity{identify_object(real, session, h), false});
  t.objects[h] = r.object;
  return r;
}

// {"made_by":12} | {"made_by":12,"part":"private"} | {"object":3[, identity the first time]} | null
void put_ref(Trace& t, std::string& o, const HandleRef& r) {
  switch (r.kind) {
    case HandleRef::Kind::kNull:
      o += "null";
      return;
    case HandleRef::Kind::kMade:
      o += "{\"made_by\":";
      put_uint(o, r.call);
      if (r.part != 0) o += r.part == 1 ? ",\"part\":\"public\"" : ",\"part\":\"private\"";
      o += '}';
      return;
    case HandleRef::Kind::kObject: {
      o += "{\"object\":";
      put_uint(o, r.object);
      ObjectIdentity& id = t.identities[r.object];
      if (!id.written) {
        o += id.members;
        id.written = true;
      }
      o += '}';
      return;
    }
  }
}

// drop-sessions closed the real module's sessions behind the caller's back (no line: the
// faulted call was not forwarded). The trace forgets them, their session objects and the
// token objects' handles, as a C_CloseAllSessions would have.
void trace_sessions_dropped() {
  std::lock_guard lock(g_trace.mu);
  for (SessionSlot& s : g_trace.session_slots) s.used = false;
  g_trace.sessions.clear();
  forget_session_objects(g_trace, 0, true);
  g_trace.objects.clear();
}

bool template_says_token(const CK_ATTRIBUTE* tmpl, CK_ULONG n) {
  for (CK_ULONG i = 0; tmpl != nullptr && i < n; ++i) {
    if (tmpl[i].type == CKA_TOKEN && tmpl[i].pValue != nullptr &&
        tmpl[i].ulValueLen == sizeof(CK_BBOOL)) {
      return *static_cast<const CK_BBOOL*>(tmpl[i].pValue) != CK_FALSE;
    }
  }
  return false;
}

// One call's line, assembled in two steps: what the arguments say before the real call
// (handles must be resolved then: C_DestroyObject ends them), and its outcome after.
struct TraceCall {
  std::string members;  // ,"s":0,"mech":{...},...
  std::vector<std::pair<const char*, HandleRef>> refs;
  CK_SESSION_HANDLE session_handle = CK_INVALID_HANDLE;
  std::size_t session = 0;
  bool has_session = false;
  bool has_out = false;  // an output buffer with a length in/out argument
  bool out_null = false;
  CK_ULONG out_len = 0;  // the buffer length the caller gave (before the call)
  std::vector<std::pair<CK_ULONG, bool>> attr_requests;  // C_GetAttributeValue: length, null
  const CK_ATTRIBUTE* made_template = nullptr;
  CK_ULONG made_template_len = 0;
};

void note_output(TraceCall& c, const void* out, const CK_ULONG* out_len) {
  c.has_out = true;
  c.out_null = out == nullptr;
  c.out_len = out_len != nullptr ? *out_len : 0;
}

void note_input(TraceCall& c, const void* in, CK_ULONG len, bool bytes, const char* key = "in") {
  put_key(c.members, cat(key, "_len"));
  put_uint(c.members, len);
  if (bytes && in != nullptr) {
    put_key(c.members, key);
    put_hex(c.members, in, len);
  }
}

constexpr bool is_operation_init(Fn f) {
  return f == Fn::C_EncryptInit || f == Fn::C_DecryptInit || f == Fn::C_SignInit ||
         f == Fn::C_VerifyInit || f == Fn::C_SignRecoverInit || f == Fn::C_VerifyRecoverInit;
}

// (session, input, input length, output, output length) with an input that may be clear.
constexpr bool is_clear_in_out(Fn f) {
  return f == Fn::C_Encrypt || f == Fn::C_EncryptUpdate || f == Fn::C_Digest || f == Fn::C_Sign ||
         f == Fn::C_SignRecover || f == Fn::C_DigestEncryptUpdate || f == Fn::C_SignEncryptUpdate;
}

// The same shape with an input that is ciphertext or public.
constexpr bool is_public_in_out(Fn f) {
  return f == Fn::C_Decrypt || f == Fn::C_DecryptUpdate || f == Fn::C_DecryptDigestUpdate ||
         f == Fn::C_DecryptVerifyUpdate || f == Fn::C_VerifyRecover;
}

// (session, output, output length).
constexpr bool is_final(Fn f) {
  return f == Fn::C_EncryptFinal || f == Fn::C_DecryptFinal || f == Fn::C_DigestFinal ||
         f == Fn::C_SignFinal || f == Fn::C_GetOperationState;
}

constexpr bool makes_object(Fn f) {
  return f == Fn::C_CreateObject || f == Fn::C_CopyObject || f == Fn::C_DeriveKey ||
         f == Fn::C_UnwrapKey || f == Fn::C_GenerateKey;
}

template <Fn F, Target T, typename... Args>
void trace_before(TraceCall& c, CK_FUNCTION_LIST* real, Args... args) {
  const std::tuple<Args...> a(args...);
  std::lock_guard lock(g_trace.mu);
  std::string& o = c.members;
  auto ref = [&](const char* key, CK_OBJECT_HANDLE h) {
    c.refs.emplace_back(key, resolve_handle(g_trace, real, c.session_handle, h));
  };
  if constexpr (T == Target::kSlot) {
    put_key(o, "slot");
    put_uint(o, std::get<0>(a));
  }
  if constexpr (T == Target::kSession) {
    c.session_handle = std::get<0>(a);
    c.session = session_index(g_trace, c.session_handle);
    c.has_session = true;
    put_key(o, "s");
    put_uint(o, c.session);
  }
  if constexpr (F == Fn::C_GetSlotList) {
    put_key(o, "token_present");
    o += std::get<0>(a) != CK_FALSE ? "true" : "false";
    put_key(o, "out_null");
    o += std::get<1>(a) == nullptr ? "true" : "false";
  } else if constexpr (F == Fn::C_GetMechanismList) {
    put_key(o, "out_null");
    o += std::get<1>(a) == nullptr ? "true" : "false";
  } else if constexpr (F == Fn::C_GetMechanismInfo) {
    put_key(o, "mech");
    o += "{\"type\":";
    put_uint(o, std::get<1>(a));
    o += '}';
  } else if constexpr (F == Fn::C_OpenSession) {
    put_key(o, "flags");
    put_uint(o, std::get<1>(a));
  } else if constexpr (F == Fn::C_Login) {
    put_key(o, "user");  // the user type; never the PIN
    put_uint(o, std::get<1>(a));
  } else if constexpr (F == Fn::C_CreateObject) {
    put_template(o, "template", std::get<1>(a), std::get<2>(a));
    c.made_template = std::get<1>(a);
    c.made_template_len = std::get<2>(a);
  } else if constexpr (F == Fn::C_CopyObject) {
    ref("object", std::get<1>(a));
    put_template(o, "template", std::get<2>(a), std::get<3>(a));
    c.made_template = std::get<2>(a);
    c.made_template_len = std::get<3>(a);
  } else if constexpr (F == Fn::C_DestroyObject || F == Fn::C_GetObjectSize) {
    ref("object", std::get<1>(a));
  } else if constexpr (F == Fn::C_GetAttributeValue) {
    ref("object", std::get<1>(a));
    const CK_ATTRIBUTE* tmpl = std::get<2>(a);
    for (CK_ULONG i = 0; tmpl != nullptr && i < std::get<3>(a); ++i) {
      c.attr_requests.emplace_back(tmpl[i].ulValueLen, tmpl[i].pValue == nullptr);
    }
  } else if constexpr (F == Fn::C_SetAttributeValue) {
    ref("object", std::get<1>(a));
    put_template(o, "template", std::get<2>(a), std::get<3>(a));
  } else if constexpr (F == Fn::C_FindObjectsInit) {
    put_template(o, "template", std::get<1>(a), std::get<2>(a));
  } else if constexpr (F == Fn::C_FindObjects) {
    put_key(o, "max");
    put_uint(o, std::get<2>(a));
  } else if constexpr (is_operation_init(F)) {
    put_mechanism(o, std::get<1>(a));
    ref("key", std::get<2>(a));
  } else if constexpr (F == Fn::C_DigestInit) {
    put_mechanism(o, std::get<1>(a));
  } else if constexpr (F == Fn::C_DigestKey) {
    ref("key", std::get<1>(a));
  } else if constexpr (is_clear_in_out(F)) {
    note_input(c, std::get<1>(a), std::get<2>(a), false);
    note_output(c, std::get<3>(a), std::get<4>(a));
  } else if constexpr (is_public_in_out(F)) {
    note_input(c, std::get<1>(a), std::get<2>(a), true, F == Fn::C_VerifyRecover ? "sig" : "in");
    note_output(c, std::get<3>(a), std::get<4>(a));
  } else if constexpr (is_final(F)) {
    note_output(c, std::get<1>(a), std::get<2>(a));
  } else if constexpr (F == Fn::C_DigestUpdate || F == Fn::C_SignUpdate || F == Fn::C_SeedRandom ||
                       F == Fn::C_SetOperationState) {
    note_input(c, std::get<1>(a), std::get<2>(a), false);
  } else if constexpr (F == Fn::C_VerifyUpdate) {
    note_input(c, std::get<1>(a), std::get<2>(a), true);
  } else if constexpr (F == Fn::C_Verify) {
    note_input(c, std::get<1>(a), std::get<2>(a), true);
    note_input(c, std::get<3>(a), std::get<4>(a), true, "sig");
  } else if constexpr (F == Fn::C_VerifyFinal) {
    note_input(c, std::get<1>(a), std::get<2>(a), true, "sig");
  } else if constexpr (F == Fn::C_GenerateKey) {
    put_mechanism(o, std::get<1>(a));
    put_template(o, "template", std::get<2>(a), std::get<3>(a));
    c.made_template = std::get<2>(a);
    c.made_template_len = std::get<3>(a);
  } else if constexpr (F == Fn::C_GenerateKeyPair) {
    put_mechanism(o, std::get<1>(a));
    put_template(o, "public_template", std::get<2>(a), std::get<3>(a));
    put_template(o, "private_template", std::get<4>(a), std::get<5>(a));
  } else if constexpr (F == Fn::C_WrapKey) {
    put_mechanism(o, std::get<1>(a));
    ref("wrapping_key", std::get<2>(a));
    ref("key", std::get<3>(a));
    note_output(c, std::get<4>(a), std::get<5>(a));
  } else if constexpr (F == Fn::C_UnwrapKey) {
    put_mechanism(o, std::get<1>(a));
    ref("unwrapping_key", std::get<2>(a));
    note_input(c, std::get<3>(a), std::get<4>(a), true);  // the wrapped key: ciphertext
    put_template(o, "template", std::get<5>(a), std::get<6>(a));
    c.made_template = std::get<5>(a);
    c.made_template_len = std::get<6>(a);
  } else if constexpr (F == Fn::C_DeriveKey) {
    put_mechanism(o, std::get<1>(a));
    ref("base_key", std::get<2>(a));
    put_template(o, "template", std::get<3>(a), std::get<4>(a));
    c.made_template = std::get<3>(a);
    c.made_template_len = std::get<4>(a);
  } else if constexpr (F == Fn::C_GenerateRandom) {
    put_key(o, "len");
    put_uint(o, std::get<2>(a));
  } else if constexpr (F == Fn::C_WaitForSlotEvent) {
    put_key(o, "flags");
    put_uint(o, std::get<0>(a));
  }
}

void append_line(Trace& t, const std::string& line) {
  t.buffer += line;
  if (t.buffer.size() >= kTraceBufferBytes) flush_trace_locked(t);
}

template <Fn F, typename... Args>
void trace_after(TraceCall& c, CK_FUNCTION_LIST* real, CK_RV rv, const Rule* rule, Args... args) {
  const std::tuple<Args...> a(args...);
  std::lock_guard lock(g_trace.mu);
  Trace& t = g_trace;
  if (!t.on.load(std::memory_order_relaxed)) return;  // closed meanwhile (C_Finalize, exit)
  const unsigned long long n = ++t.lines;
  std::string o = "{\"n\":";
  put_uint(o, n);
  o += ",\"fn\":\"";
  o += kFunctionNames[index_of(F)];
  o += "\",\"rv\":";
  put_uint(o, rv);
  if (rule != nullptr) {
    put_key(o, "injected");  // what the caller got instead (docs/fault-injection.md)
    put_uint(o, rule->rv);
  }
  o += c.members;
  for (const auto& [key, r] : c.refs) {
    put_key(o, key);
    put_ref(t, o, r);
  }
  if (c.has_out) {
    put_key(o, "out_null");
    o += c.out_null ? "true" : "false";
    put_key(o, "out_len");
    put_uint(o, c.out_len);
  }
  const bool ok = rv == CKR_OK;
  if constexpr (is_clear_in_out(F) || is_public_in_out(F) || is_final(F) || F == Fn::C_WrapKey) {
    constexpr std::size_t kOutLen = is_final(F) ? 2 : (F == Fn::C_WrapKey ? 5 : 4);
    const CK_ULONG* out_len = std::get<kOutLen>(a);
    if ((ok || rv == CKR_BUFFER_TOO_SMALL) && out_len != nullptr) {
      put_key(o, "out_ret");
      put_uint(o, *out_len);
    }
  }
  if constexpr (F == Fn::C_GetSlotList || F == Fn::C_GetMechanismList) {
    if (ok && std::get<2>(a) != nullptr) {
      put_key(o, "out_ret");
      put_uint(o, *std::get<2>(a));
    }
  } else if constexpr (F == Fn::C_OpenSession) {
    if (ok && std::get<4>(a) != nullptr) {
      // A number the module gives again names a new session: the old one is gone.
      const CK_SESSION_HANDLE h = *std::get<4>(a);
      const std::size_t i = session_index(t, h);
      t.session_slots[i].slot_known = true;
      t.session_slots[i].slot = std::get<0>(a);
      put_key(o, "s");
      put_uint(o, i);
    }
  } else if constexpr (F == Fn::C_CloseSession) {
    if (ok) close_session_index(t, c.session, c.session_handle);
  } else if constexpr (F == Fn::C_CloseAllSessions) {
    if (ok) {
      close_slot_sessions(t, std::get<0>(a));
      t.objects.clear();  // the login may have ended with the sessions: see forget_login
    }
  } else if constexpr (F == Fn::C_Login || F == Fn::C_Logout) {
    if (ok) t.objects.clear();
  } else if constexpr (makes_object(F)) {
    constexpr std::size_t kOut = F == Fn::C_CreateObject ? 3
                                 : F == Fn::C_UnwrapKey  ? 7
                                 : F == Fn::C_DeriveKey  ? 5
                                                         : 4;  // C_CopyObject, C_GenerateKey
    const CK_OBJECT_HANDLE* out = std::get<kOut>(a);
    if (ok && out != nullptr) {
      t.made[*out] =
          Made{n, 0, c.session, template_says_token(c.made_template, c.made_template_len)};
      t.objects.erase(*out);
    }
  } else if constexpr (F == Fn::C_GenerateKeyPair) {
    if (ok && std::get<6>(a) != nullptr && std::get<7>(a) != nullptr) {
      t.made[*std::get<6>(a)] =
          Made{n, 1, c.session, template_says_token(std::get<2>(a), std::get<3>(a))};
      t.made[*std::get<7>(a)] =
          Made{n, 2, c.session, template_says_token(std::get<4>(a), std::get<5>(a))};
      t.objects.erase(*std::get<6>(a));
      t.objects.erase(*std::get<7>(a));
    }
  } else if constexpr (F == Fn::C_DestroyObject) {
    if (ok) {
      t.made.erase(std::get<1>(a));
      t.objects.erase(std::get<1>(a));
    }
  } else if constexpr (F == Fn::C_FindObjects) {
    if (ok && std::get<1>(a) != nullptr && std::get<3>(a) != nullptr) {
      put_key(o, "found");
      o += '[';
      for (CK_ULONG i = 0; i < *std::get<3>(a); ++i) {
        if (i != 0) o += ',';
        put_ref(t, o, resolve_handle(t, real, c.session_handle, std::get<1>(a)[i]));
      }
      o += ']';
    }
  } else if constexpr (F == Fn::C_GetAttributeValue) {
    // The lengths asked and returned, and the values the template rules allow (never
    // CKA_VALUE); the module sets each length even when the call fails for another one.
    const CK_ATTRIBUTE* tmpl = std::get<2>(a);
    put_key(o, "template");
    o += '[';
    for (std::size_t i = 0; tmpl != nullptr && i < c.attr_requests.size(); ++i) {
      if (i != 0) o += ',';
      put_attribute_head(o, tmpl[i].type);
      o += ",\"len\":";
      put_uint(o, c.attr_requests[i].first);
      if (c.attr_requests[i].second) o += ",\"null\":true";
      if (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
          rv == CKR_BUFFER_TOO_SMALL) {
        o += ",\"ret_len\":";
        if (tmpl[i].ulValueLen == CK_UNAVAILABLE_INFORMATION) {
          o += "-1";
        } else {
          put_uint(o, tmpl[i].ulValueLen);
          if (!c.attr_requests[i].second && tmpl[i].ulValueLen <= c.attr_requests[i].first) {
            put_attribute_value(o, tmpl[i]);
          }
        }
      }
      o += '}';
    }
    o += ']';
  }
  o += "}\n";
  append_line(t, o);
}

// A line for C_Initialize or C_Finalize, which the shim handles itself.
void trace_lifecycle(Fn f, CK_RV rv) {
  std::lock_guard lock(g_trace.mu);
  if (!g_trace.on.load(std::memory_order_relaxed)) return;
  std::string o = "{\"n\":";
  put_uint(o, ++g_trace.lines);
  o += ",\"fn\":\"";
  o += kFunctionNames[index_of(f)];
  o += "\",\"rv\":";
  put_uint(o, rv);
  o += "}\n";
  append_line(g_trace, o);
}

// Opens the trace file at C_Initialize: the first time in this process it is created
// anew, a later initialization (after C_Finalize) appends to it.
bool open_trace(const std::string& pattern) {
  std::lock_guard lock(g_trace.mu);
  Trace& t = g_trace;
  t.path = path_with_pid(pattern);
  t.file = std::fopen(t.path.c_str(), t.started_path == t.path ? "a" : "w");
  if (t.file == nullptr) {
    return config_error("PERSOFLOW_SHIM_TRACE",
                        cat("cannot write ", t.path, ": ", std::strerror(errno)));
  }
  t.started_path = t.path;
  t.write_failed = false;
  t.buffer.reserve(kTraceBufferBytes + (64 << 10));
  t.on.store(true, std::memory_order_release);
  return true;
}

// Writes what is buffered and closes the file (C_Finalize, or the process exiting).
// Sessions and handles are forgotten (they mean nothing after C_Finalize); object numbers
// and call numbers go on, so that a file with several cycles names each object once.
void close_trace() {
  std::lock_guard lock(g_trace.mu);
  Trace& t = g_trace;
  if (t.file == nullptr) return;
  t.on.store(false, std::memory_order_release);
  flush_trace_locked(t);
  if (std::fclose(t.file) != 0) t.write_failed = true;
  t.file = nullptr;
  if (t.write_failed) {
    std::fprintf(stderr, "%s: PERSOFLOW_SHIM_TRACE: cannot write %s: %s\n", kPrefix, t.path.c_str(),
                 std::strerror(errno));
  }
  t.made.clear();
  t.objects.clear();
  t.sessions.clear();
  t.session_slots.clear();
}

bool tracing() { return g_trace.on.load(std::memory_order_acquire); }

// The forwarding entry of one function, its signature taken from CK_FUNCTION_LIST.
template <Fn F, auto Member, Target T, When W,
          typename Ptr =
              std::remove_reference_t<decltype(std::declval<CK_FUNCTION_LIST&>().*Member)>>
struct Forward;

template <Fn F, auto Member, Target T, When W, typename... Args>
struct Forward<F, Member, T, W, CK_RV (*)(Args...)> {
  static CK_RV call(Args... args) {
    CK_FUNCTION_LIST* real = g_shim.real.load(std::memory_order_acquire);
    if (real == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    const Rule* rule = count_call(F);
    if (rule != nullptr && rule->drop_sessions) {
      std::unique_lock drop(g_shim.calls_mu);
      if constexpr (T == Target::kNone) {
        drop_sessions(real, T, 0);
      } else {
        drop_sessions(real, T, std::get<0>(std::forward_as_tuple(args...)));
      }
      if (tracing()) trace_sessions_dropped();
      return rule->rv;
    }
    if (rule != nullptr && W == When::kBefore) return rule->rv;  // not forwarded: not traced
    std::shared_lock in_flight(g_shim.calls_mu);
    if (!tracing()) {
      const CK_RV rv = (real->*Member)(args...);
      return rule == nullptr ? rv : rule->rv;
    }
    TraceCall trace;
    trace_before<F, T>(trace, real, args...);
    const CK_RV rv = (real->*Member)(args...);
    trace_after<F>(trace, real, rv, rule, args...);
    return rule == nullptr ? rv : rule->rv;
  }
};

CK_RV shim_initialize(void* init_args) {
  std::lock_guard lock(g_shim.life_mu);
  const unsigned long long call = next_call(Fn::C_Initialize);
  if (g_shim.real.load() != nullptr) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  Config config;
  if (!read_config(config)) return CKR_GENERAL_ERROR;
  void* handle = dlopen(config.module.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    config_error(
        "PERSOFLOW_SHIM_MODULE",
        cat("cannot load '", config.module, "': ", why != nullptr ? why : "unknown dlopen error"));
    return CKR_GENERAL_ERROR;
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* real = nullptr;
  std::string problem;
  if (get_list == nullptr) {
    problem = cat("'", config.module, "' is not a PKCS#11 module (no C_GetFunctionList)");
  } else if (get_list == &::C_GetFunctionList) {
    problem = cat("'", config.module, "' is this shim itself; it must name the real module");
  } else if (get_list(&real) != CKR_OK || real == nullptr) {
    problem = cat("C_GetFunctionList of '", config.module, "' failed");
  }
  if (!problem.empty()) {
    dlclose(handle);
    config_error("PERSOFLOW_SHIM_MODULE", problem);
    return CKR_GENERAL_ERROR;
  }

  g_shim.config = std::move(config);
  if (const Rule* rule = rule_for(Fn::C_Initialize, call)) {
    dlclose(handle);
    return rule->rv;
  }
  const CK_RV rv = real->C_Initialize(init_args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    dlclose(handle);
    return rv;
  }
  if (g_shim.config.verbose) {
    std::fprintf(stderr, "%s: wrapping %s with %zu fault rule(s)\n", kPrefix,
                 g_shim.config.module.c_str(), g_shim.config.rules.size());
  }
  if (!g_shim.config.trace_path.empty() && !open_trace(g_shim.config.trace_path)) {
    if (rv == CKR_OK) real->C_Finalize(nullptr);
    dlclose(handle);
    return CKR_GENERAL_ERROR;
  }
  trace_lifecycle(Fn::C_Initialize, rv);
  g_shim.handle = handle;
  g_shim.finalize_real = rv == CKR_OK;  // else another owner in this process finalizes it
  g_shim.real.store(real, std::memory_order_release);
  return CKR_OK;
}

CK_RV shim_finalize(void* reserved_arg) {
  std::lock_guard lock(g_shim.life_mu);
  CK_FUNCTION_LIST* real = g_shim.real.load();
  if (real == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (const Rule* rule = count_call(Fn::C_Finalize)) return rule->rv;
  if (g_shim.finalize_real) {
    const CK_RV rv = real->C_Finalize(reserved_arg);
    if (rv != CKR_OK) return rv;
  } else if (reserved_arg != nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  g_shim.real.store(nullptr, std::memory_order_release);
  write_counts(g_shim);
  trace_lifecycle(Fn::C_Finalize, CKR_OK);
  close_trace();
  for (auto& c : g_shim.calls) c.store(0, std::memory_order_relaxed);  // a new cycle counts anew
  dlclose(g_shim.handle);
  g_shim.handle = nullptr;
  return CKR_OK;
}

template <Fn F, auto Member, Target T, When W>
constexpr auto entry() {
  if constexpr (F == Fn::C_Initialize) {
    return &shim_initialize;
  } else if constexpr (F == Fn::C_Finalize) {
    return &shim_finalize;
  } else if constexpr (F == Fn::C_GetFunctionList) {
    return &::C_GetFunctionList;
  } else {
    return &Forward<F, Member, T, W>::call;
  }
}

// clang-format off
CK_FUNCTION_LIST g_function_list = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
#define PF_SHIM_ENTRY(name, target, when) \
    .name = entry<Fn::name, &CK_FUNCTION_LIST::name, Target::target, When::when>(),
    PF_SHIM_FUNCTIONS(PF_SHIM_ENTRY)
#undef PF_SHIM_ENTRY
};
// clang-format on

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  *list = &g_function_list;
  return CKR_OK;
}
