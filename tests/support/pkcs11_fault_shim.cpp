// PKCS#11 fault-injection shim (docs/fault-injection.md), for reliability tests only.
//
// A PKCS#11 module that loads the real one (PERSOFLOW_SHIM_MODULE) and forwards every
// call to it, counting the calls of each function. The rules of PERSOFLOW_SHIM_FAULTS
// fail chosen calls: the Nth call of a function (once), or the Nth and every later one,
// with a chosen CK_RV, or by closing the real module's sessions ("drop-sessions") as a
// device reset would. PERSOFLOW_SHIM_COUNTS writes the counts as JSON at C_Finalize.
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
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
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
  const std::string_view verbose = env("PERSOFLOW_SHIM_VERBOSE");
  if (verbose != "" && verbose != "0" && verbose != "1") {
    return config_error("PERSOFLOW_SHIM_VERBOSE", cat("'", verbose, "' is not 0 or 1"));
  }
  config.verbose = verbose == "1";
  return true;
}

// The counts file's path: every "%p" replaced by the process id.
std::string counts_file(const std::string& pattern) {
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
  const std::string path = counts_file(shim.config.counts_path);
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

Shim::~Shim() {
  // The process exits (or the shim is unloaded) without C_Finalize: still leave the counts.
  if (real.load() != nullptr) write_counts(*this);
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
    if (rule == nullptr) return (real->*Member)(args...);
    if (rule->drop_sessions) {
      if constexpr (T == Target::kNone) {
        drop_sessions(real, T, 0);
      } else {
        drop_sessions(real, T, std::get<0>(std::forward_as_tuple(args...)));
      }
      return rule->rv;
    }
    if constexpr (W == When::kAfter) (void)(real->*Member)(args...);
    return rule->rv;
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
