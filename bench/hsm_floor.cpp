// hsm_floor: the two floors under an end-to-end run's throughput, from a PKCS#11 call trace.
//
// The fault shim records every PKCS#11 call a run makes when PERSOFLOW_SHIM_TRACE is set
// (docs/fault-injection.md "Call trace"). This tool reads such a trace, keeps its work calls
// (every crypto and object call after the run has located its keys; the module, session,
// login and key lookup calls are setup) and times R repetitions of them in a tight loop:
//
//   - PKCS#11 mode (default), the HSM floor: the same calls against the same token from
//     this process, with its own sessions and login. Handles the trace's calls made map to
//     the handles these calls make; token keys are found again by their recorded identity;
//     inputs the trace has only the length of are random bytes of that length.
//   - --openssl, the crypto floor: the same primitives through OpenSSL 3 on the host, with
//     one context per primitive made before timing, keyed once with a random key of the
//     recorded type and length, and reused: what the cryptography itself costs with no HSM
//     and no key schedule per card.
//
// With N, the cards the traced run prepared, cards/s = N x R / seconds: a prep's rate over
// these floors says how much of its time is the HSM, the crypto, and everything else.
#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/hex.h"
#include "engine/result.h"
#include "hsm/ck_rv.h"
// Last: p11-kit's lower-case macros (value, count, ...) must not rewrite the headers above;
// this header undefines them after including p11-kit.
#include "hsm/pkcs11_api.h"

namespace persoflow::bench {
namespace {

using Json = nlohmann::json;

constexpr const char* kDefaultModule = "/usr/lib/softhsm/libsofthsm2.so";

// ---------------------------------------------------------------------------------------
// The trace

// Setup calls: what a run does to reach its keys, not per-card work. They are not replayed;
// the replay opens its own sessions, logs in and finds the keys itself.
const std::set<std::string, std::less<>> kSetupFunctions = {
    "C_Initialize",       "C_Finalize",          "C_GetInfo",          "C_GetSlotList",
    "C_GetSlotInfo",      "C_GetTokenInfo",      "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken",        "C_InitPIN",           "C_SetPIN",           "C_OpenSession",
    "C_CloseSession",     "C_CloseAllSessions",  "C_GetSessionInfo",   "C_Login",
    "C_Logout",           "C_FindObjectsInit",   "C_FindObjects",      "C_FindObjectsFinal",
    "C_WaitForSlotEvent", "C_GetFunctionStatus", "C_CancelFunction",
};

// The work calls the replay knows how to make.
// clang-format off
#define PF_FLOOR_WORK_FUNCTIONS(X)                                                   \
  X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) X(C_EncryptFinal)                 \
  X(C_DecryptInit) X(C_Decrypt) X(C_DecryptUpdate) X(C_DecryptFinal)                 \
  X(C_DigestInit) X(C_Digest) X(C_DigestUpdate) X(C_DigestKey) X(C_DigestFinal)      \
  X(C_SignInit) X(C_Sign) X(C_SignUpdate) X(C_SignFinal)                             \
  X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate) X(C_VerifyFinal)                     \
  X(C_GenerateKey) X(C_GenerateKeyPair) X(C_WrapKey) X(C_UnwrapKey) X(C_DeriveKey)  \
  X(C_CreateObject) X(C_CopyObject) X(C_DestroyObject) X(C_GetAttributeValue)        \
  X(C_GetObjectSize) X(C_SetAttributeValue) X(C_GenerateRandom) X(C_SeedRandom)
// clang-format on

enum class Fn {
#define PF_FLOOR_ENUM(name) name,
  PF_FLOOR_WORK_FUNCTIONS(PF_FLOOR_ENUM)
#undef PF_FLOOR_ENUM
};

std::optional<Fn> work_function(std::string_view name) {
#define PF_FLOOR_MATCH(fn) \
  if (name == #fn) return Fn::fn;
  PF_FLOOR_WORK_FUNCTIONS(PF_FLOOR_MATCH)
#undef PF_FLOOR_MATCH
  return std::nullopt;
}

// How a line names an object handle.
struct Ref {
  enum class Kind { kNone, kMade, kObject };
  Kind kind = Kind::kNone;
  std::uint64_t call = 0;    // kMade: the call that made it
  int part = 0;              // kMade: 1 the public, 2 the private key of C_GenerateKeyPair
  std::uint64_t object = 0;  // kObject: the trace's object number
};

// A token object as the shim identified it (written with the first line that names it).
struct Identity {
  std::uint64_t first_call = 0;
  std::optional<CK_OBJECT_CLASS> object_class;
  std::optional<CK_KEY_TYPE> key_type;
  std::optional<Bytes> label;
  std::optional<Bytes> id;
  std::optional<bool> token;
  std::optional<CK_ULONG> value_len;
  std::optional<CK_RV> identity_rv;  // the shim could not read it
};

struct Attr {
  CK_ATTRIBUTE_TYPE type = 0;
  CK_ULONG len = 0;
  bool null = false;           // C_GetAttributeValue: a length query for this attribute
  std::optional<Bytes> bytes;  // the value, when the trace has it
};

struct Mechanism {
  enum class Param { kNone, kRaw, kGcm, kDeriveData, kAesCbcDerive, kDesCbcDerive };
  bool present = false;
  CK_MECHANISM_TYPE type = 0;
  Param param = Param::kNone;
  Bytes raw, iv, aad, data;
  bool iv_null = false, aad_null = false, data_null = false;
  CK_ULONG iv_bits = 0, tag_bits = 0;
};

struct Call {
  std::uint64_t n = 0;
  std::string fn;
  std::optional<Fn> work;  // set for work calls
  CK_RV rv = CKR_OK;
  std::size_t session = 0;  // the trace's session index
  bool has_session = false;
  std::size_t replay_session = 0;  // work calls: the replay's session (see classify)
  Mechanism mech;
  Ref key;                  // "key", "base_key", "unwrapping_key" or "object"
  Ref wrapping;             // C_WrapKey's "wrapping_key"
  std::vector<Attr> tmpl;   // "template", or C_GenerateKeyPair's "public_template"
  std::vector<Attr> tmpl2;  // C_GenerateKeyPair's "private_template"
  std::uint64_t in_len = 0;
  std::optional<Bytes> in;  // only for ciphertext or public inputs
  std::uint64_t sig_len = 0;
  std::optional<Bytes> sig;
  bool out_null = false;
  CK_ULONG out_len = 0;
  CK_ULONG random_len = 0;  // C_GenerateRandom
};

struct Trace {
  std::string path;
  std::vector<Call> calls;
  std::map<std::uint64_t, Identity> objects;
  std::vector<std::size_t> work;  // indices into calls: the work calls replayed, in order
  std::size_t setup = 0;
  std::size_t skipped_failed = 0;
  std::size_t sessions = 0;             // sessions the replay opens
  std::vector<std::size_t> unfinished;  // replay sessions left with an operation in progress
  std::unordered_map<std::uint64_t, std::size_t> by_number;  // call number -> index
};

Error trace_error(const Trace& t, std::uint64_t n, const std::string& what) {
  return Error(ErrorCode::kParse, t.path + ": call #" + std::to_string(n) + ": " + what);
}

Result<Bytes> hex_field(const Trace& t, std::uint64_t n, const Json& j, const char* key) {
  auto b = from_hex(j.at(key).get<std::string>());
  if (!b) return trace_error(t, n, std::string("\"") + key + "\": " + b.error().message());
  return std::move(b).value();
}

Bytes text_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

Result<Ref> parse_ref(Trace& t, std::uint64_t n, const Json& j) {
  Ref r;
  if (j.is_null()) return r;
  if (j.contains("made_by")) {
    r.kind = Ref::Kind::kMade;
    r.call = j.at("made_by").get<std::uint64_t>();
    if (j.contains("part")) r.part = j.at("part").get<std::string>() == "public" ? 1 : 2;
    return r;
  }
  r.kind = Ref::Kind::kObject;
  r.object = j.at("object").get<std::uint64_t>();
  if (j.size() > 1 && !t.objects.contains(r.object)) {
    // The first line naming an object carries its identity.
    Identity id;
    id.first_call = n;
    if (j.contains("class")) id.object_class = j.at("class").get<CK_ULONG>();
    if (j.contains("key_type")) id.key_type = j.at("key_type").get<CK_ULONG>();
    if (j.contains("label")) id.label = text_bytes(j.at("label").get<std::string>());
    if (j.contains("label_hex")) {
      PF_ASSIGN_OR_RETURN(id.label, hex_field(t, n, j, "label_hex"));
    }
    if (j.contains("id")) {
      PF_ASSIGN_OR_RETURN(id.id, hex_field(t, n, j, "id"));
    }
    if (j.contains("token")) id.token = j.at("token").get<bool>();
    if (j.contains("value_len")) id.value_len = j.at("value_len").get<CK_ULONG>();
    if (j.contains("identity_rv")) id.identity_rv = j.at("identity_rv").get<CK_ULONG>();
    t.objects[r.object] = std::move(id);
  }
  return r;
}

Result<std::vector<Attr>> parse_template(const Trace& t, std::uint64_t n, const Json& j) {
  std::vector<Attr> out;
  for (const Json& a : j) {
    Attr attr;
    attr.type = a.at("type").get<CK_ULONG>();
    attr.len = a.at("len").get<CK_ULONG>();
    attr.null = a.value("null", false);
    if (a.contains("hex")) {
      PF_ASSIGN_OR_RETURN(attr.bytes, hex_field(t, n, a, "hex"));
    } else if (a.contains("text")) {
      attr.bytes = text_bytes(a.at("text").get<std::string>());
    } else if (a.contains("value")) {
      const Json& v = a.at("value");
      if (v.is_boolean()) {
        attr.bytes = Bytes{static_cast<std::uint8_t>(v.get<bool>() ? CK_TRUE : CK_FALSE)};
      } else {
        const CK_ULONG u = v.get<CK_ULONG>();
        Bytes b(sizeof u);
        std::memcpy(b.data(), &u, sizeof u);
        attr.bytes = std::move(b);
      }
    }
    out.push_back(std::move(attr));
  }
  return out;
}

Result<Mechanism> parse_mechanism(const Trace& t, std::uint64_t n, const Json& j) {
  Mechanism m;
  if (j.is_null()) return m;
  m.present = true;
  m.type = j.at("type").get<CK_ULONG>();
  auto bytes = [&](const char* key, Bytes& out, bool& was_null) -> Status {
    if (!j.contains(key)) return ok_status();
    if (j.at(key).is_null()) {
      was_null = true;
      return ok_status();
    }
    PF_ASSIGN_OR_RETURN(out, hex_field(t, n, j, key));
    return ok_status();
  };
  bool unused = false;
  if (j.contains("tag_bits")) {
    m.param = Mechanism::Param::kGcm;
    PF_TRY(bytes("iv", m.iv, m.iv_null));
    PF_TRY(bytes("aad", m.aad, m.aad_null));
    m.iv_bits = j.at("iv_bits").get<CK_ULONG>();
    m.tag_bits = j.at("tag_bits").get<CK_ULONG>();
  } else if (j.contains("data")) {
    PF_TRY(bytes("data", m.data, m.data_null));
    if (j.contains("iv")) {
      PF_TRY(bytes("iv", m.iv, unused));
      if (m.type == CKM_AES_CBC_ENCRYPT_DATA) {
        m.param = Mechanism::Param::kAesCbcDerive;
      } else {
        m.param = Mechanism::Param::kDesCbcDerive;
      }
      const std::size_t want = m.param == Mechanism::Param::kAesCbcDerive ? 16 : 8;
      if (m.iv.size() != want) {
        return trace_error(t, n, "the derivation IV is not " + std::to_string(want) + " bytes");
      }
    } else {
      m.param = Mechanism::Param::kDeriveData;
    }
  } else if (j.contains("param")) {
    m.param = Mechanism::Param::kRaw;
    PF_TRY(bytes("param", m.raw, unused));
  }
  return m;
}

bool starts_operation(Fn f) {
  return f == Fn::C_EncryptInit || f == Fn::C_DecryptInit || f == Fn::C_SignInit ||
         f == Fn::C_VerifyInit || f == Fn::C_DigestInit;
}

bool ends_operation(const Call& c) {
  switch (*c.work) {
    case Fn::C_Encrypt:
    case Fn::C_Decrypt:
    case Fn::C_Sign:
    case Fn::C_Digest:
    case Fn::C_EncryptFinal:
    case Fn::C_DecryptFinal:
    case Fn::C_SignFinal:
    case Fn::C_DigestFinal:
      return !c.out_null;  // a length query leaves the operation on
    case Fn::C_Verify:
    case Fn::C_VerifyFinal:
      return true;
    default:
      return false;
  }
}

// Classifies the calls: setup, work (replayed), work that failed in the trace (skipped).
// Calls before the first work call that only read a token key's attributes (a run reads
// them when it looks its keys up) are setup too.
//
// Sessions: the shim gives a session index back once the session is closed, and a run may
// lose its sessions (a dropped login) and open new ones. Each C_OpenSession of an index
// starts a new session for the replay, so that an operation the old session left unfinished
// cannot meet the new one's calls. An operation can also stay unfinished in the replay when
// the call that ended it failed in the trace (skipped): an ...Init that meets one moves its
// trace session to a new replay session. Sessions that end with an unfinished operation
// (a dropped session's) are listed in `unfinished`: the HSM floor replaces them after each
// repetition.
Status classify(Trace& t) {
  bool working = false;
  std::set<std::uint64_t> failed_makers;
  std::vector<std::uint64_t> generation;  // per trace index: C_OpenSession calls seen
  std::map<std::pair<std::size_t, std::uint64_t>, std::size_t> replay_session;
  std::vector<bool> active;  // per replay session: an operation in progress
  for (std::size_t i = 0; i < t.calls.size(); ++i) {
    Call& c = t.calls[i];
    if (c.has_session && c.session >= generation.size()) generation.resize(c.session + 1, 0);
    if (c.fn == "C_OpenSession" && c.rv == CKR_OK && c.has_session) ++generation[c.session];
    if (kSetupFunctions.contains(c.fn)) {
      ++t.setup;
      continue;
    }
    const bool reads_key = (c.fn == "C_GetAttributeValue" || c.fn == "C_GetObjectSize") &&
                           c.key.kind == Ref::Kind::kObject;
    if (!working && reads_key) {
      ++t.setup;
      continue;
    }
    working = true;
    c.work = work_function(c.fn);
    if (!c.work) {
      return trace_error(
          t, c.n,
          c.fn +
              " is a work call hsm_floor cannot replay (docs/fault-injection.md \"Call trace\")");
    }
    if (c.rv != CKR_OK) {
      ++t.skipped_failed;
      failed_makers.insert(c.n);
      continue;
    }
    for (const Ref* r : {&c.key, &c.wrapping}) {
      if (r->kind != Ref::Kind::kMade) continue;
      const auto maker = t.by_number.find(r->call);
      if (maker == t.by_number.end() || !t.calls[maker->second].work ||
          failed_makers.contains(r->call)) {
        return trace_error(
            t, c.n,
            c.fn + " uses the object made by call #" + std::to_string(r->call) +
                ", which is not a work call the replay makes (not in the trace, or it failed)");
      }
    }
    const auto key =
        std::make_pair(c.has_session ? c.session : 0, c.has_session ? generation[c.session] : 0);
    auto rs = replay_session.emplace(key, active.size()).first;
    if (rs->second == active.size()) active.push_back(false);
    if (starts_operation(*c.work) && active[rs->second]) {
      rs->second = active.size();
      active.push_back(false);
    }
    c.replay_session = rs->second;
    if (starts_operation(*c.work)) active[rs->second] = true;
    if (ends_operation(c)) active[rs->second] = false;
    t.work.push_back(i);
  }
  t.sessions = active.size();
  for (std::size_t s = 0; s < active.size(); ++s) {
    if (active[s]) t.unfinished.push_back(s);
  }
  return ok_status();
}

Result<Trace> read_trace(const std::string& path) {
  Trace t;
  t.path = path;
  std::ifstream in(path);
  if (!in) {
    return Error(ErrorCode::kNotFound, path + ": cannot open the trace: " + std::strerror(errno));
  }
  std::string line;
  for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    Call c;
    try {
      const Json j = Json::parse(line);
      c.n = j.at("n").get<std::uint64_t>();
      c.fn = j.at("fn").get<std::string>();
      c.rv = j.at("rv").get<CK_ULONG>();
      if (j.contains("s")) {
        c.has_session = true;
        c.session = j.at("s").get<std::size_t>();
      }
      if (j.contains("mech")) {
        PF_ASSIGN_OR_RETURN(c.mech, parse_mechanism(t, c.n, j.at("mech")));
      }
      for (const char* key : {"key", "base_key", "unwrapping_key", "object"}) {
        if (j.contains(key) && !(c.fn == "C_WrapKey" && std::string_view(key) == "key")) {
          PF_ASSIGN_OR_RETURN(c.key, parse_ref(t, c.n, j.at(key)));
        }
      }
      if (c.fn == "C_WrapKey") {
        PF_ASSIGN_OR_RETURN(c.wrapping, parse_ref(t, c.n, j.at("wrapping_key")));
        PF_ASSIGN_OR_RETURN(c.key, parse_ref(t, c.n, j.at("key")));
      }
      if (j.contains("found")) {
        for (const Json& f : j.at("found")) {
          PF_TRY(parse_ref(t, c.n, f));  // registers identities only
        }
      }
      for (const char* key : {"template", "public_template"}) {
        if (j.contains(key)) {
          PF_ASSIGN_OR_RETURN(c.tmpl, parse_template(t, c.n, j.at(key)));
        }
      }
      if (j.contains("private_template")) {
        PF_ASSIGN_OR_RETURN(c.tmpl2, parse_template(t, c.n, j.at("private_template")));
      }
      c.in_len = j.value("in_len", std::uint64_t{0});
      if (j.contains("in")) {
        PF_ASSIGN_OR_RETURN(c.in, hex_field(t, c.n, j, "in"));
      }
      c.sig_len = j.value("sig_len", std::uint64_t{0});
      if (j.contains("sig")) {
        PF_ASSIGN_OR_RETURN(c.sig, hex_field(t, c.n, j, "sig"));
      }
      c.out_null = j.value("out_null", false);
      c.out_len = j.value("out_len", CK_ULONG{0});
      c.random_len = j.value("len", CK_ULONG{0});
    } catch (const Json::exception& e) {
      return Error(ErrorCode::kParse,
                   path + ": line " + std::to_string(line_no) + ": not a trace line: " + e.what());
    }
    if (!t.by_number.emplace(c.n, t.calls.size()).second) {
      return Error(ErrorCode::kParse, path + ": line " + std::to_string(line_no) +
                                          ": call number " + std::to_string(c.n) +
                                          " appears twice (two processes in one file? use %p)");
    }
    t.calls.push_back(std::move(c));
  }
  if (t.calls.empty()) return Error(ErrorCode::kParse, path + ": the trace is empty");
  PF_TRY(classify(t));
  if (t.work.empty()) {
    return Error(ErrorCode::kParse, path + ": the trace has no work call to replay");
  }
  return t;
}

std::string key_type_text(CK_KEY_TYPE type) {
  switch (type) {
    case CKK_AES:
      return "CKK_AES";
    case CKK_DES:
      return "CKK_DES";
    case CKK_DES2:
      return "CKK_DES2";
    case CKK_DES3:
      return "CKK_DES3";
    case CKK_GENERIC_SECRET:
      return "CKK_GENERIC_SECRET";
    case CKK_RSA:
      return "CKK_RSA";
    case CKK_EC:
      return "CKK_EC";
    default:
      break;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "key type 0x%lx", type);
  return buf;
}

std::string label_text(const Identity& id) {
  if (!id.label) return "(no label)";
  return "'" + std::string(id.label->begin(), id.label->end()) + "'";
}

// ---------------------------------------------------------------------------------------
// Key types and lengths (the crypto floor keys its contexts with random keys of the same
// type and length; the HSM floor does not need them)

struct KeySpec {
  std::optional<CK_KEY_TYPE> type;
  std::size_t len = 0;
};

std::optional<CK_ULONG> template_ulong(const std::vector<Attr>& tmpl, CK_ATTRIBUTE_TYPE type) {
  for (const Attr& a : tmpl) {
    if (a.type == type && a.bytes && a.bytes->size() == sizeof(CK_ULONG)) {
      CK_ULONG v = 0;
      std::memcpy(&v, a.bytes->data(), sizeof v);
      return v;
    }
  }
  return std::nullopt;
}

std::size_t implied_length(CK_KEY_TYPE type) {
  switch (type) {
    case CKK_DES:
      return 8;
    case CKK_DES2:
      return 16;
    case CKK_DES3:
      return 24;
    default:
      return 0;
  }
}

// The key a work call makes: its type from the template, its length from the template,
// the key type, or what the call consumed.
KeySpec made_key_spec(const Call& c, const std::map<std::uint64_t, KeySpec>& made, const Trace& t) {
  KeySpec k;
  if (c.work == Fn::C_CopyObject) {
    if (c.key.kind == Ref::Kind::kMade) {
      if (const auto it = made.find(c.key.call); it != made.end()) return it->second;
    } else if (c.key.kind == Ref::Kind::kObject) {
      if (const auto it = t.objects.find(c.key.object); it != t.objects.end()) {
        k.type = it->second.key_type;
        k.len = it->second.value_len.value_or(k.type ? implied_length(*k.type) : 0);
      }
    }
    return k;
  }
  k.type = template_ulong(c.tmpl, CKA_KEY_TYPE);
  if (const auto len = template_ulong(c.tmpl, CKA_VALUE_LEN)) k.len = *len;
  for (const Attr& a : c.tmpl) {
    if (a.type == CKA_VALUE) k.len = a.len;
  }
  if (k.len == 0 && k.type) k.len = implied_length(*k.type);
  if (k.len == 0 && c.work == Fn::C_DeriveKey) k.len = c.mech.data.size();
  if (k.len == 0 && c.work == Fn::C_UnwrapKey && c.in_len > 8) k.len = c.in_len - 8;
  if (!k.type && c.work == Fn::C_GenerateKey) {
    if (c.mech.type == CKM_DES2_KEY_GEN) k = {CKK_DES2, 16};
    if (c.mech.type == CKM_DES3_KEY_GEN) k = {CKK_DES3, 24};
  }
  return k;
}

// ---------------------------------------------------------------------------------------
// Arguments, results

struct Options {
  std::string trace;
  std::uint64_t cards = 0;
  std::uint64_t repeat = 0;  // 0: chosen so that the timed loop lasts about a second
  std::string module;
  std::string token;
  std::string pin_env = "PERSOFLOW_PIN";
  bool openssl = false;
  bool json = false;
};

struct Measure {
  std::uint64_t repeat = 0;
  double seconds = 0;
  std::size_t no_crypto_calls = 0;    // --openssl: calls that map to no primitive
  std::size_t left_over_objects = 0;  // PKCS#11: objects the trace made and never destroyed
  std::size_t attributes_left_out = 0;
  std::size_t token_keys = 0;
};

// Runs `once` (one repetition; returns its timed seconds or an error) R times. Without R:
// first untimed warm-up rounds, doubling until a round lasts 0.1 s (one repetition of a
// big trace already does), which also estimates a repetition's time; then as many
// repetitions as fill about a second.
template <typename Once>
Result<Measure> repeat_timed(const Options& o, Once&& once) {
  Measure m;
  m.repeat = o.repeat;
  if (m.repeat == 0) {
    std::uint64_t n = 1;
    double round = 0;
    for (;; n *= 2) {
      round = 0;
      for (std::uint64_t r = 0; r < n; ++r) {
        PF_ASSIGN_OR_RETURN(const double s, once());
        round += s;
      }
      if (round >= 0.1 || n >= (1u << 20)) break;
    }
    const double per_repetition = std::max(round / static_cast<double>(n), 1e-9);
    m.repeat = std::clamp<std::uint64_t>(
        static_cast<std::uint64_t>(std::ceil(1.0 / per_repetition)), 1, 100000000);
  }
  for (std::uint64_t r = 0; r < m.repeat; ++r) {
    PF_ASSIGN_OR_RETURN(const double s, once());
    m.seconds += s;
  }
  return m;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Owns every byte a prepared call points to; nothing moves once made.
class Arena {
 public:
  unsigned char* copy(const Bytes& b) { return store_.emplace_back(b.begin(), b.end()).data(); }
  unsigned char* zeros(std::size_t n) {
    return store_.emplace_back(std::max<std::size_t>(n, 1)).data();
  }
  template <typename T>
  T* make(const T& v) {
    return &std::get<T>(params_.emplace_back(v));
  }

 private:
  std::deque<Bytes> store_;
  std::deque<std::variant<CK_GCM_PARAMS, CK_KEY_DERIVATION_STRING_DATA,
                          CK_AES_CBC_ENCRYPT_DATA_PARAMS, CK_DES_CBC_ENCRYPT_DATA_PARAMS>>
      params_;
};

// Random bytes for the inputs the trace has only the length of (one buffer, the longest).
Result<Bytes> random_pool(const Trace& t) {
  std::uint64_t longest = 64;
  for (std::size_t i : t.work) longest = std::max({longest, t.calls[i].in_len, t.calls[i].sig_len});
  Bytes pool(longest);
  if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
    return Error(ErrorCode::kInternal, "RAND_bytes failed for the replay's random inputs");
  }
  return pool;
}

// ---------------------------------------------------------------------------------------
// The HSM floor: the work calls against the token

struct Module {
  void* handle = nullptr;
  CK_FUNCTION_LIST* api = nullptr;
  ~Module() {
    if (api != nullptr) api->C_Finalize(nullptr);
    if (handle != nullptr) dlclose(handle);
  }
};

Error call_error(unsigned long rv, const char* function, const std::string& what) {
  return Error::hsm(rv, function, what + ": " + function + " returned " + hsm::ck_rv_name(rv));
}

Status load_module(Module& m, const std::string& path) {
  m.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (m.handle == nullptr) {
    const char* why = dlerror();
    return Error(ErrorCode::kNotFound, "loading PKCS#11 module " + path + ": " +
                                           (why != nullptr ? why : "dlopen failed"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(m.handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    return Error(ErrorCode::kUnsupported, path + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  CK_FUNCTION_LIST* api = nullptr;
  if (const CK_RV rv = get_list(&api); rv != CKR_OK || api == nullptr) {
    return call_error(rv, "C_GetFunctionList", "loading PKCS#11 module " + path);
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  if (const CK_RV rv = api->C_Initialize(&args); rv != CKR_OK) {
    return call_error(rv, "C_Initialize", "initializing PKCS#11 module " + path);
  }
  m.api = api;
  return ok_status();
}

std::string token_label(const CK_TOKEN_INFO& info) {
  std::string s(reinterpret_cast<const char*>(info.label), sizeof info.label);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

Result<CK_SLOT_ID> find_slot(CK_FUNCTION_LIST* api, const std::string& label) {
  CK_ULONG n = 0;
  if (const CK_RV rv = api->C_GetSlotList(CK_TRUE, nullptr, &n); rv != CKR_OK) {
    return call_error(rv, "C_GetSlotList", "listing slots");
  }
  std::vector<CK_SLOT_ID> slots(n);
  if (const CK_RV rv = api->C_GetSlotList(CK_TRUE, slots.data(), &n); rv != CKR_OK) {
    return call_error(rv, "C_GetSlotList", "listing slots");
  }
  slots.resize(n);
  std::vector<std::pair<CK_SLOT_ID, std::string>> tokens;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info{};
    if (api->C_GetTokenInfo(s, &info) != CKR_OK || (info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      continue;
    }
    tokens.emplace_back(s, token_label(info));
  }
  for (const auto& [slot, name] : tokens) {
    if (!label.empty() && name == label) return slot;
  }
  if (label.empty() && tokens.size() == 1) return tokens[0].first;
  if (label.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 std::to_string(tokens.size()) +
                     " initialized tokens: name one with --token or PERSOFLOW_TOKEN");
  }
  return Error(ErrorCode::kNotFound, "no initialized token labelled '" + label + "'");
}

// Where a prepared call finds a handle at run time.
struct HandleSlot {
  bool made = false;
  CK_OBJECT_HANDLE fixed = CK_INVALID_HANDLE;  // a token object, found before timing
  std::size_t slot = 0;                        // made: the replay's handle of that call
};

struct P11Call {
  const Call* call = nullptr;
  Fn fn = Fn::C_Encrypt;
  std::size_t session = 0;  // index into HsmFloor::sessions_
  CK_MECHANISM mech{};
  bool has_mech = false;
  HandleSlot key, wrapping;
  std::vector<CK_ATTRIBUTE> tmpl, tmpl2;
  unsigned char* in = nullptr;
  CK_ULONG in_len = 0;
  unsigned char* sig = nullptr;
  CK_ULONG sig_len = 0;
  bool out_null = false;
  CK_ULONG out_len = 0;
  std::size_t made_slot = SIZE_MAX, made_slot2 = SIZE_MAX;
};

class HsmFloor {
 public:
  HsmFloor(const Options& o, const Trace& t) : o_(o), t_(t) {}
  ~HsmFloor() {
    if (api() != nullptr) {
      destroy_left_overs();
      for (CK_SESSION_HANDLE s : sessions_) api()->C_CloseSession(s);
    }
  }
  HsmFloor(const HsmFloor&) = delete;
  HsmFloor& operator=(const HsmFloor&) = delete;

  Status open();
  Status prepare();
  Result<Measure> measure();
  std::string describe() const { return module_path_ + ", token '" + token_ + "'"; }

 private:
  CK_FUNCTION_LIST* api() const { return module_.api; }
  Result<CK_OBJECT_HANDLE> find_object(std::uint64_t object, const Call& user);
  Result<HandleSlot> handle_slot(const Ref& r, const Call& user);
  std::vector<CK_ATTRIBUTE> build_template(const std::vector<Attr>& attrs, bool output);
  CK_RV run(const P11Call& c);
  CK_OBJECT_HANDLE handle(const HandleSlot& h) const { return h.made ? made_[h.slot] : h.fixed; }
  void made(std::size_t slot, CK_OBJECT_HANDLE h) {
    made_[slot] = h;
    live_[slot] = true;
  }
  std::size_t destroy_left_overs();
  Status replace_unfinished();

  const Options& o_;
  const Trace& t_;
  Module module_;
  std::string module_path_;
  std::string token_;
  CK_SLOT_ID slot_ = 0;
  std::vector<CK_SESSION_HANDLE> sessions_;
  std::map<std::uint64_t, CK_OBJECT_HANDLE> objects_;  // trace object number -> token handle
  std::map<std::pair<std::uint64_t, int>, std::size_t> slot_of_;  // (call, part) -> made slot
  std::vector<CK_OBJECT_HANDLE> made_;
  std::vector<bool> live_;
  std::vector<P11Call> calls_;
  Arena arena_;
  Bytes pool_;
  Bytes out_;  // every output goes here
  std::vector<CK_ATTRIBUTE> scratch_template_;
  std::size_t attributes_left_out_ = 0;
};

Status HsmFloor::open() {
  module_path_ = o_.module;
  if (module_path_.empty()) {
    const char* env = std::getenv("PERSOFLOW_PKCS11_MODULE");
    module_path_ = env != nullptr && *env != '\0' ? env : kDefaultModule;
  }
  token_ = o_.token;
  if (token_.empty()) {
    const char* env = std::getenv("PERSOFLOW_TOKEN");
    if (env != nullptr) token_ = env;
  }
  const char* pin = std::getenv(o_.pin_env.c_str());
  if (pin == nullptr || *pin == '\0') {
    return Error(ErrorCode::kAuth, "no PIN: environment variable " + o_.pin_env +
                                       " is not set (--pin-env names another)");
  }
  PF_TRY(load_module(module_, module_path_));
  // SoftHSM reads its token files at C_Initialize, and rewrites the token's file at every
  // login: a process started while another logs in (the bench starts N floors together)
  // can find no token (docs/operations.md). As persoflow's worker processes do, finalize
  // and initialize again a few times before giving up.
  auto slot = find_slot(api(), token_);
  for (int attempt = 1; !slot && slot.error().code() == ErrorCode::kNotFound && attempt < 6; ++attempt) {
    api()->C_Finalize(nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(25 << attempt));
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    if (const CK_RV rv = api()->C_Initialize(&args); rv != CKR_OK) {
      return call_error(rv, "C_Initialize", "initializing PKCS#11 module " + module_path_ + " again");
    }
    slot = find_slot(api(), token_);
  }
  PF_ASSIGN_OR_RETURN(slot_, std::move(slot));
  if (token_.empty()) {
    CK_TOKEN_INFO info{};
    api()->C_GetTokenInfo(slot_, &info);
    token_ = token_label(info);
  }
  // One session per session of the trace: calls of concurrent operations interleave in it.
  for (std::size_t i = 0; i < std::max<std::size_t>(t_.sessions, 1); ++i) {
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    if (const CK_RV rv =
            api()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
        rv != CKR_OK) {
      return call_error(rv, "C_OpenSession",
                        "opening session " + std::to_string(i) + " on token '" + token_ + "'");
    }
    sessions_.push_back(s);
  }
  std::string pin_copy(pin);
  const CK_RV rv =
      api()->C_Login(sessions_[0], CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin_copy.data()),
                     static_cast<CK_ULONG>(pin_copy.size()));
  std::fill(pin_copy.begin(), pin_copy.end(), '\0');
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    return Error::hsm(
        rv, "C_Login",
        "logging in to token '" + token_ + "': C_Login returned " + hsm::ck_rv_name(rv),
        ErrorCode::kAuth);
  }
  return ok_status();
}

// A token object of the trace, found by its recorded class, key type, label and id.
Result<CK_OBJECT_HANDLE> HsmFloor::find_object(std::uint64_t object, const Call& user) {
  if (const auto it = objects_.find(object); it != objects_.end()) return it->second;
  const std::string where = t_.path + ": call #" + std::to_string(user.n) + " (" + user.fn + ")";
  const auto it = t_.objects.find(object);
  if (it == t_.objects.end()) {
    return Error(ErrorCode::kParse,
                 where + ": object " + std::to_string(object) + " has no identity in the trace");
  }
  const Identity& id = it->second;
  if (id.identity_rv) {
    return Error(ErrorCode::kParse, where + ": the shim could not read the identity of object " +
                                        std::to_string(object) + " (" +
                                        hsm::ck_rv_name(*id.identity_rv) + ")");
  }
  if (!id.label && !id.id) {
    return Error(ErrorCode::kUnsupported,
                 where + ": object " + std::to_string(object) +
                     " has neither label nor id: it cannot be found on the token");
  }
  if (id.token && !*id.token) {
    return Error(ErrorCode::kUnsupported, where + ": object " + std::to_string(object) + " " +
                                              label_text(id) +
                                              " is a session object the trace did not make (made "
                                              "before the trace, or by an untraced call): "
                                              "another process cannot find it");
  }
  CK_BBOOL yes = CK_TRUE;
  CK_OBJECT_CLASS cls = id.object_class.value_or(0);
  CK_KEY_TYPE type = id.key_type.value_or(0);
  Bytes label = id.label.value_or(Bytes{});
  Bytes ident = id.id.value_or(Bytes{});
  std::vector<CK_ATTRIBUTE> tmpl = {{CKA_TOKEN, &yes, sizeof yes}};
  if (id.object_class) tmpl.push_back({CKA_CLASS, &cls, sizeof cls});
  if (id.key_type) tmpl.push_back({CKA_KEY_TYPE, &type, sizeof type});
  if (id.label) tmpl.push_back({CKA_LABEL, label.data(), static_cast<CK_ULONG>(label.size())});
  if (id.id) tmpl.push_back({CKA_ID, ident.data(), static_cast<CK_ULONG>(ident.size())});
  const CK_SESSION_HANDLE s = sessions_[0];
  if (const CK_RV rv = api()->C_FindObjectsInit(s, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()));
      rv != CKR_OK) {
    return call_error(rv, "C_FindObjectsInit",
                      "finding key " + label_text(id) + " on token '" + token_ + "'");
  }
  CK_OBJECT_HANDLE found[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
  CK_ULONG n = 0;
  const CK_RV rv = api()->C_FindObjects(s, found, 2, &n);
  api()->C_FindObjectsFinal(s);
  if (rv != CKR_OK) {
    return call_error(rv, "C_FindObjects",
                      "finding key " + label_text(id) + " on token '" + token_ + "'");
  }
  const std::string ident_hex = id.id ? to_hex(*id.id) : std::string("none");
  const std::string type_name =
      id.key_type ? key_type_text(*id.key_type) : std::string("no key type");
  if (n == 0) {
    return Error(ErrorCode::kNotFound, where + ": key " + label_text(id) + " (id " + ident_hex +
                                           ", " + type_name + ") is not on token '" + token_ + "'");
  }
  if (n > 1) {
    std::fprintf(
        stderr,
        "hsm_floor: warning: several objects on token '%s' match key %s (id %s); using the first\n",
        token_.c_str(), label_text(id).c_str(), ident_hex.c_str());
  }
  objects_[object] = found[0];
  return found[0];
}

Result<HandleSlot> HsmFloor::handle_slot(const Ref& r, const Call& user) {
  HandleSlot h;
  switch (r.kind) {
    case Ref::Kind::kNone:
      return h;
    case Ref::Kind::kMade: {
      const auto it = slot_of_.find({r.call, r.part});
      if (it == slot_of_.end()) {
        return Error(ErrorCode::kParse, t_.path + ": call #" + std::to_string(user.n) + " (" +
                                            user.fn + ") uses the object made by call #" +
                                            std::to_string(r.call) +
                                            ", which comes after it or made no object");
      }
      h.made = true;
      h.slot = it->second;
      return h;
    }
    case Ref::Kind::kObject: {
      PF_ASSIGN_OR_RETURN(h.fixed, find_object(r.object, user));
      return h;
    }
  }
  return h;
}

// A template for the module: recorded values; random bytes for CKA_VALUE (the trace has
// its length only); other attributes the trace has no value for are left out (counted).
// `output`: C_GetAttributeValue's buffers of the recorded lengths.
std::vector<CK_ATTRIBUTE> HsmFloor::build_template(const std::vector<Attr>& attrs, bool output) {
  std::vector<CK_ATTRIBUTE> out;
  for (const Attr& a : attrs) {
    if (output) {
      out.push_back({a.type, a.null ? nullptr : arena_.zeros(a.len), a.len});
    } else if (a.bytes) {
      out.push_back({a.type, arena_.copy(*a.bytes), static_cast<CK_ULONG>(a.bytes->size())});
    } else if (a.type == CKA_VALUE) {
      Bytes v(a.len);
      RAND_bytes(v.data(), static_cast<int>(v.size()));
      out.push_back({a.type, arena_.copy(v), a.len});
    } else {
      ++attributes_left_out_;
    }
  }
  return out;
}

Status HsmFloor::prepare() {
  PF_ASSIGN_OR_RETURN(pool_, random_pool(t_));
  std::size_t out_size = 64;
  for (std::size_t i : t_.work) {
    const Call& c = t_.calls[i];
    P11Call p;
    p.call = &c;
    p.fn = *c.work;
    p.session = c.replay_session;
    if (c.mech.present) {
      p.has_mech = true;
      p.mech.mechanism = c.mech.type;
      const Mechanism& m = c.mech;
      auto bytes_or_null = [&](const Bytes& b, bool was_null) {
        return was_null ? nullptr : arena_.copy(b);
      };
      switch (m.param) {
        case Mechanism::Param::kNone:
          break;
        case Mechanism::Param::kRaw:
          p.mech.pParameter = arena_.copy(m.raw);
          p.mech.ulParameterLen = static_cast<CK_ULONG>(m.raw.size());
          break;
        case Mechanism::Param::kGcm: {
          CK_GCM_PARAMS g{};
          g.pIv = bytes_or_null(m.iv, m.iv_null);
          g.ulIvLen = static_cast<CK_ULONG>(m.iv.size());
          g.ulIvBits = m.iv_bits;
          g.pAAD = bytes_or_null(m.aad, m.aad_null);
          g.ulAADLen = static_cast<CK_ULONG>(m.aad.size());
          g.ulTagBits = m.tag_bits;
          p.mech.pParameter = arena_.make(g);
          p.mech.ulParameterLen = sizeof g;
          break;
        }
        case Mechanism::Param::kDeriveData: {
          CK_KEY_DERIVATION_STRING_DATA d{bytes_or_null(m.data, m.data_null),
                                          static_cast<CK_ULONG>(m.data.size())};
          p.mech.pParameter = arena_.make(d);
          p.mech.ulParameterLen = sizeof d;
          break;
        }
        case Mechanism::Param::kAesCbcDerive: {
          CK_AES_CBC_ENCRYPT_DATA_PARAMS d{};
          std::memcpy(d.iv, m.iv.data(), sizeof d.iv);
          d.pData = bytes_or_null(m.data, m.data_null);
          d.length = static_cast<CK_ULONG>(m.data.size());
          p.mech.pParameter = arena_.make(d);
          p.mech.ulParameterLen = sizeof d;
          break;
        }
        case Mechanism::Param::kDesCbcDerive: {
          CK_DES_CBC_ENCRYPT_DATA_PARAMS d{};
          std::memcpy(d.iv, m.iv.data(), sizeof d.iv);
          d.pData = bytes_or_null(m.data, m.data_null);
          d.length = static_cast<CK_ULONG>(m.data.size());
          p.mech.pParameter = arena_.make(d);
          p.mech.ulParameterLen = sizeof d;
          break;
        }
      }
    }
    PF_ASSIGN_OR_RETURN(p.key, handle_slot(c.key, c));
    PF_ASSIGN_OR_RETURN(p.wrapping, handle_slot(c.wrapping, c));
    const bool output_template = p.fn == Fn::C_GetAttributeValue;
    p.tmpl = build_template(c.tmpl, output_template);
    p.tmpl2 = build_template(c.tmpl2, false);
    p.in_len = static_cast<CK_ULONG>(c.in_len);
    p.in = c.in ? arena_.copy(*c.in) : pool_.data();
    p.sig_len = static_cast<CK_ULONG>(c.sig_len);
    p.sig = c.sig ? arena_.copy(*c.sig) : pool_.data();
    p.out_null = c.out_null;
    p.out_len = p.fn == Fn::C_GenerateRandom ? c.random_len : c.out_len;
    out_size = std::max<std::size_t>({out_size, p.out_len, p.in_len + 64});
    if (p.fn == Fn::C_CreateObject || p.fn == Fn::C_CopyObject || p.fn == Fn::C_DeriveKey ||
        p.fn == Fn::C_UnwrapKey || p.fn == Fn::C_GenerateKey || p.fn == Fn::C_GenerateKeyPair) {
      p.made_slot = made_.size();
      slot_of_[{c.n, p.fn == Fn::C_GenerateKeyPair ? 1 : 0}] = made_.size();
      made_.push_back(CK_INVALID_HANDLE);
      if (p.fn == Fn::C_GenerateKeyPair) {
        p.made_slot2 = made_.size();
        slot_of_[{c.n, 2}] = made_.size();
        made_.push_back(CK_INVALID_HANDLE);
      }
    }
    if (output_template) {
      scratch_template_.reserve(std::max(scratch_template_.capacity(), p.tmpl.size()));
    }
    calls_.push_back(std::move(p));
  }
  live_.assign(made_.size(), false);
  out_.assign(out_size, 0);
  return ok_status();
}

CK_RV HsmFloor::run(const P11Call& c) {
  CK_FUNCTION_LIST* f = api();
  const CK_SESSION_HANDLE s = sessions_[c.session];
  CK_MECHANISM mech = c.mech;  // the module takes it non-const
  CK_MECHANISM* m = c.has_mech ? &mech : nullptr;
  unsigned char* out = c.out_null ? nullptr : out_.data();
  CK_ULONG out_len = c.out_len;
  CK_ATTRIBUTE* tmpl = const_cast<CK_ATTRIBUTE*>(c.tmpl.data());
  const auto n = static_cast<CK_ULONG>(c.tmpl.size());
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = CKR_OK;
  switch (c.fn) {
    case Fn::C_EncryptInit:
      return f->C_EncryptInit(s, m, handle(c.key));
    case Fn::C_Encrypt:
      return f->C_Encrypt(s, c.in, c.in_len, out, &out_len);
    case Fn::C_EncryptUpdate:
      return f->C_EncryptUpdate(s, c.in, c.in_len, out, &out_len);
    case Fn::C_EncryptFinal:
      return f->C_EncryptFinal(s, out, &out_len);
    case Fn::C_DecryptInit:
      return f->C_DecryptInit(s, m, handle(c.key));
    case Fn::C_Decrypt:
      return f->C_Decrypt(s, c.in, c.in_len, out, &out_len);
    case Fn::C_DecryptUpdate:
      return f->C_DecryptUpdate(s, c.in, c.in_len, out, &out_len);
    case Fn::C_DecryptFinal:
      return f->C_DecryptFinal(s, out, &out_len);
    case Fn::C_DigestInit:
      return f->C_DigestInit(s, m);
    case Fn::C_Digest:
      return f->C_Digest(s, c.in, c.in_len, out, &out_len);
    case Fn::C_DigestUpdate:
      return f->C_DigestUpdate(s, c.in, c.in_len);
    case Fn::C_DigestKey:
      return f->C_DigestKey(s, handle(c.key));
    case Fn::C_DigestFinal:
      return f->C_DigestFinal(s, out, &out_len);
    case Fn::C_SignInit:
      return f->C_SignInit(s, m, handle(c.key));
    case Fn::C_Sign:
      return f->C_Sign(s, c.in, c.in_len, out, &out_len);
    case Fn::C_SignUpdate:
      return f->C_SignUpdate(s, c.in, c.in_len);
    case Fn::C_SignFinal:
      return f->C_SignFinal(s, out, &out_len);
    case Fn::C_VerifyInit:
      return f->C_VerifyInit(s, m, handle(c.key));
    case Fn::C_Verify:
      return f->C_Verify(s, c.in, c.in_len, c.sig, c.sig_len);
    case Fn::C_VerifyUpdate:
      return f->C_VerifyUpdate(s, c.in, c.in_len);
    case Fn::C_VerifyFinal:
      return f->C_VerifyFinal(s, c.sig, c.sig_len);
    case Fn::C_GenerateKey:
      rv = f->C_GenerateKey(s, m, tmpl, n, &h);
      if (rv == CKR_OK) made(c.made_slot, h);
      return rv;
    case Fn::C_GenerateKeyPair: {
      CK_OBJECT_HANDLE h2 = CK_INVALID_HANDLE;
      rv = f->C_GenerateKeyPair(s, m, tmpl, n, const_cast<CK_ATTRIBUTE*>(c.tmpl2.data()),
                                static_cast<CK_ULONG>(c.tmpl2.size()), &h, &h2);
      if (rv == CKR_OK) {
        made(c.made_slot, h);
        made(c.made_slot2, h2);
      }
      return rv;
    }
    case Fn::C_WrapKey:
      return f->C_WrapKey(s, m, handle(c.wrapping), handle(c.key), out, &out_len);
    case Fn::C_UnwrapKey:
      rv = f->C_UnwrapKey(s, m, handle(c.key), c.in, c.in_len, tmpl, n, &h);
      if (rv == CKR_OK) made(c.made_slot, h);
      return rv;
    case Fn::C_DeriveKey:
      rv = f->C_DeriveKey(s, m, handle(c.key), tmpl, n, &h);
      if (rv == CKR_OK) made(c.made_slot, h);
      return rv;
    case Fn::C_CreateObject:
      rv = f->C_CreateObject(s, tmpl, n, &h);
      if (rv == CKR_OK) made(c.made_slot, h);
      return rv;
    case Fn::C_CopyObject:
      rv = f->C_CopyObject(s, handle(c.key), tmpl, n, &h);
      if (rv == CKR_OK) made(c.made_slot, h);
      return rv;
    case Fn::C_DestroyObject:
      rv = f->C_DestroyObject(s, handle(c.key));
      if (rv == CKR_OK && c.key.made) live_[c.key.slot] = false;
      return rv;
    case Fn::C_GetAttributeValue:
      // The module writes the lengths into the template: give it a fresh copy each time.
      scratch_template_.assign(c.tmpl.begin(), c.tmpl.end());
      return f->C_GetAttributeValue(s, handle(c.key), scratch_template_.data(), n);
    case Fn::C_GetObjectSize:
      return f->C_GetObjectSize(s, handle(c.key), &out_len);
    case Fn::C_SetAttributeValue:
      return f->C_SetAttributeValue(s, handle(c.key), tmpl, n);
    case Fn::C_GenerateRandom:
      return f->C_GenerateRandom(s, out_.data(), c.out_len);
    case Fn::C_SeedRandom:
      return f->C_SeedRandom(s, c.in, c.in_len);
  }
  return CKR_FUNCTION_NOT_SUPPORTED;
}

// Objects the trace made and did not destroy (or that a repetition left): destroyed
// outside the timing, so that each repetition starts from the same token.
std::size_t HsmFloor::destroy_left_overs() {
  std::size_t n = 0;
  for (std::size_t i = 0; i < live_.size(); ++i) {
    if (!live_[i]) continue;
    api()->C_DestroyObject(sessions_[0], made_[i]);
    live_[i] = false;
    ++n;
  }
  return n;
}

// A session the trace leaves with an operation in progress (it lost the session before the
// call that ends it): replaced by a new one after each repetition, untimed. The new one is
// opened first, so that the token's login (shared by the sessions) never ends.
Status HsmFloor::replace_unfinished() {
  for (std::size_t i : t_.unfinished) {
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    if (const CK_RV rv =
            api()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
        rv != CKR_OK) {
      return call_error(rv, "C_OpenSession",
                        "replacing session " + std::to_string(i) + " between repetitions");
    }
    api()->C_CloseSession(sessions_[i]);
    sessions_[i] = s;
  }
  return ok_status();
}

Result<Measure> HsmFloor::measure() {
  std::size_t left_over = 0;
  auto once = [&]() -> Result<double> {
    const auto t0 = std::chrono::steady_clock::now();
    for (const P11Call& c : calls_) {
      if (const CK_RV rv = run(c); rv != CKR_OK) {
        return Error::hsm(rv, c.call->fn,
                          t_.path + ": replaying call #" + std::to_string(c.call->n) + " (" +
                              c.call->fn + "): it returned " + hsm::ck_rv_name(rv) +
                              " (CKR_OK in the trace)");
      }
    }
    const double s = seconds_since(t0);
    left_over = destroy_left_overs();
    PF_TRY(replace_unfinished());
    return s;
  };
  PF_ASSIGN_OR_RETURN(Measure m, repeat_timed(o_, once));
  m.left_over_objects = left_over;
  m.attributes_left_out = attributes_left_out_;
  m.token_keys = objects_.size();
  return m;
}

// ---------------------------------------------------------------------------------------
// The crypto floor: the same primitives through OpenSSL

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct CipherDeleter {
  void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
};
struct MacDeleter {
  void operator()(EVP_MAC* c) const { EVP_MAC_free(c); }
};
struct MdDeleter {
  void operator()(EVP_MD* c) const { EVP_MD_free(c); }
};

// One primitive action of the timed loop.
struct SslOp {
  enum class Kind {
    kCipherInit,  // new IV (and AAD), same key
    kCipher,      // a single-part operation: update and final
    kCipherUpdate,
    kCipherFinal,
    kMacInit,  // same key
    kMac,
    kMacUpdate,
    kMacFinal,
    kDigestInit,
    kDigest,
    kDigestUpdate,
    kDigestFinal,
    kRandom,
  };
  Kind kind = Kind::kRandom;
  const Call* call = nullptr;  // for messages
  EVP_CIPHER_CTX* cipher = nullptr;
  EVP_MAC_CTX* mac = nullptr;
  EVP_MD_CTX* md_ctx = nullptr;
  const EVP_MD* md = nullptr;
  const unsigned char* in = nullptr;
  std::size_t in_len = 0;  // kRandom: the bytes to draw
  const unsigned char* iv = nullptr;
  int iv_len = 0;
  const unsigned char* aad = nullptr;
  std::size_t aad_len = 0;
  bool gcm = false;
  bool decrypt = false;
  int tag_len = 0;
};

// The operation a session has in progress (as the trace's Init left it).
struct Active {
  enum class Kind { kNone, kCipher, kMac, kDigest };
  Kind kind = Kind::kNone;
  EVP_CIPHER_CTX* cipher = nullptr;
  EVP_MAC_CTX* mac = nullptr;
  EVP_MD_CTX* md_ctx = nullptr;
  const EVP_MD* md = nullptr;
  bool gcm = false;
  bool decrypt = false;
  int tag_len = 0;
};

std::string mechanism_text(CK_MECHANISM_TYPE m) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "mechanism 0x%lx", m);
  return buf;
}

class CryptoFloor {
 public:
  CryptoFloor(const Options& o, const Trace& t) : o_(o), t_(t) {}
  Status prepare();
  Result<Measure> measure();

 private:
  struct Cipher {
    std::string name;
    bool pad = false;
    bool gcm = false;
    bool wrap = false;
  };
  Result<KeySpec> key_spec(const Ref& r, const Call& user) const;
  Result<Cipher> cipher_for(CK_MECHANISM_TYPE m, const KeySpec& k, const Call& user) const;
  Result<EVP_CIPHER_CTX*> cipher_ctx(std::size_t session, const Cipher& c, bool encrypt);
  Result<EVP_MAC_CTX*> mac_ctx(std::size_t session, CK_MECHANISM_TYPE m, const KeySpec& k,
                               const Call& user);
  Result<std::pair<EVP_MD_CTX*, const EVP_MD*>> digest_ctx(std::size_t session, CK_MECHANISM_TYPE m,
                                                           const Call& user);
  Status add_cipher_init(EVP_CIPHER_CTX* ctx, const Mechanism& m, const Call& c, bool gcm);
  void add_cipher(EVP_CIPHER_CTX* ctx, const Call& c, const unsigned char* in, std::size_t len,
                  const Active& a);
  Status map_call(const Call& c);
  bool run(const SslOp& op);
  Error unmapped(const Call& c, const std::string& what) const {
    return Error(ErrorCode::kUnsupported, t_.path + ": call #" + std::to_string(c.n) + " (" + c.fn +
                                              "): no OpenSSL mapping for " + what);
  }

  const Options& o_;
  const Trace& t_;
  std::map<std::uint64_t, KeySpec> made_;
  std::vector<Active> active_;
  std::vector<SslOp> ops_;
  std::size_t no_crypto_ = 0;
  Bytes pool_;
  Bytes out_;
  Arena arena_;
  std::map<std::string, std::unique_ptr<EVP_CIPHER, CipherDeleter>> ciphers_;
  std::map<std::tuple<std::size_t, std::string, bool>,
           std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>>
      cipher_ctxs_;
  std::unique_ptr<EVP_MAC, MacDeleter> cmac_, hmac_;
  std::map<std::tuple<std::size_t, std::string>, std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>>
      mac_ctxs_;
  std::map<std::string, std::unique_ptr<EVP_MD, MdDeleter>> mds_;
  std::map<std::tuple<std::size_t, std::string>, std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>>
      md_ctxs_;
};

Result<KeySpec> CryptoFloor::key_spec(const Ref& r, const Call& user) const {
  KeySpec k;
  if (r.kind == Ref::Kind::kMade) {
    if (const auto it = made_.find(r.call); it != made_.end()) k = it->second;
  } else if (r.kind == Ref::Kind::kObject) {
    if (const auto it = t_.objects.find(r.object); it != t_.objects.end()) {
      k.type = it->second.key_type;
      k.len = it->second.value_len.value_or(k.type ? implied_length(*k.type) : 0);
    }
  }
  if (!k.type || k.len == 0) {
    return Error(ErrorCode::kUnsupported,
                 t_.path + ": call #" + std::to_string(user.n) + " (" + user.fn +
                     "): the trace does not say the key's type and length");
  }
  return k;
}

// The OpenSSL cipher of a PKCS#11 cipher mechanism for a key of that type and length.
Result<CryptoFloor::Cipher> CryptoFloor::cipher_for(CK_MECHANISM_TYPE m, const KeySpec& k,
                                                    const Call& user) const {
  Cipher c;
  if (*k.type == CKK_AES) {
    if (k.len != 16 && k.len != 24 && k.len != 32) {
      return unmapped(user, "an AES key of " + std::to_string(k.len) + " bytes");
    }
    const std::string aes = "AES-" + std::to_string(k.len * 8);
    switch (m) {
      case CKM_AES_ECB:
      case CKM_AES_ECB_ENCRYPT_DATA:
        c.name = aes + "-ECB";
        return c;
      case CKM_AES_CBC:
      case CKM_AES_CBC_ENCRYPT_DATA:
        c.name = aes + "-CBC";
        return c;
      case CKM_AES_CBC_PAD:
        c = {aes + "-CBC", true, false, false};
        return c;
      case CKM_AES_CTR:
        c.name = aes + "-CTR";
        return c;
      case CKM_AES_GCM:
        c = {aes + "-GCM", false, true, false};
        return c;
      case CKM_AES_KEY_WRAP:
        c = {aes + "-WRAP", false, false, true};
        return c;
      case CKM_AES_KEY_WRAP_PAD:
        c = {aes + "-WRAP-PAD", false, false, true};
        return c;
      default:
        break;
    }
  } else if (*k.type == CKK_DES2 || *k.type == CKK_DES3) {
    const std::string des = *k.type == CKK_DES2 ? "DES-EDE" : "DES-EDE3";
    switch (m) {
      case CKM_DES3_ECB:
      case CKM_DES3_ECB_ENCRYPT_DATA:
        c.name = des + "-ECB";
        return c;
      case CKM_DES3_CBC:
      case CKM_DES3_CBC_ENCRYPT_DATA:
        c.name = des + "-CBC";
        return c;
      case CKM_DES3_CBC_PAD:
        c = {des + "-CBC", true, false, false};
        return c;
      default:
        break;
    }
  }
  return unmapped(user, mechanism_text(m) + " with a " + key_type_text(*k.type) + " key");
}

// One context per session, cipher and direction, keyed once with a random key: every
// operation after that only sets its IV (a session's multi-part operations may interleave
// with another session's, so sessions do not share contexts).
Result<EVP_CIPHER_CTX*> CryptoFloor::cipher_ctx(std::size_t session, const Cipher& c,
                                                bool encrypt) {
  const auto key = std::make_tuple(session, c.name + (c.pad ? "/pad" : ""), encrypt);
  if (const auto it = cipher_ctxs_.find(key); it != cipher_ctxs_.end()) return it->second.get();
  auto& cipher = ciphers_[c.name];
  if (!cipher) cipher.reset(EVP_CIPHER_fetch(nullptr, c.name.c_str(), nullptr));
  if (!cipher) return Error(ErrorCode::kUnsupported, "OpenSSL has no cipher " + c.name);
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Error(ErrorCode::kInternal, "EVP_CIPHER_CTX_new failed");
  if (c.wrap) EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  Bytes k(static_cast<std::size_t>(EVP_CIPHER_get_key_length(cipher.get())));
  RAND_bytes(k.data(), static_cast<int>(k.size()));
  if (EVP_CipherInit_ex(ctx.get(), cipher.get(), nullptr, k.data(), nullptr, encrypt ? 1 : 0) !=
      1) {
    return Error(ErrorCode::kInternal, "EVP_CipherInit_ex failed for " + c.name);
  }
  if (!c.wrap) EVP_CIPHER_CTX_set_padding(ctx.get(), c.pad ? 1 : 0);
  EVP_CIPHER_CTX* raw = ctx.get();
  cipher_ctxs_[key] = std::move(ctx);
  return raw;
}

// CMAC (AES, 3DES) and HMAC contexts, keyed once; each operation re-inits on that key.
Result<EVP_MAC_CTX*> CryptoFloor::mac_ctx(std::size_t session, CK_MECHANISM_TYPE m,
                                          const KeySpec& k, const Call& user) {
  std::string mac_name, param_name, param;
  if ((m == CKM_AES_CMAC || m == CKM_AES_CMAC_GENERAL) && *k.type == CKK_AES) {
    mac_name = "CMAC";
    param_name = OSSL_MAC_PARAM_CIPHER;
    param = "AES-" + std::to_string(k.len * 8) + "-CBC";
  } else if ((m == CKM_DES3_CMAC || m == CKM_DES3_CMAC_GENERAL) &&
             (*k.type == CKK_DES2 || *k.type == CKK_DES3)) {
    mac_name = "CMAC";
    param_name = OSSL_MAC_PARAM_CIPHER;
    param = *k.type == CKK_DES2 ? "DES-EDE-CBC" : "DES-EDE3-CBC";
  } else if (m == CKM_SHA_1_HMAC || m == CKM_SHA256_HMAC || m == CKM_SHA384_HMAC ||
             m == CKM_SHA512_HMAC || m == CKM_SHA224_HMAC) {
    mac_name = "HMAC";
    param_name = OSSL_MAC_PARAM_DIGEST;
    param = m == CKM_SHA_1_HMAC    ? "SHA1"
            : m == CKM_SHA224_HMAC ? "SHA224"
            : m == CKM_SHA256_HMAC ? "SHA256"
            : m == CKM_SHA384_HMAC ? "SHA384"
                                   : "SHA512";
  } else {
    return unmapped(user, mechanism_text(m) + " with a " + key_type_text(*k.type) + " key");
  }
  const auto key = std::make_tuple(session, mac_name + "/" + param + "/" + std::to_string(k.len));
  if (const auto it = mac_ctxs_.find(key); it != mac_ctxs_.end()) return it->second.get();
  auto& mac = mac_name == "CMAC" ? cmac_ : hmac_;
  if (!mac) mac.reset(EVP_MAC_fetch(nullptr, mac_name.c_str(), nullptr));
  if (!mac) return Error(ErrorCode::kUnsupported, "OpenSSL has no MAC " + mac_name);
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) return Error(ErrorCode::kInternal, "EVP_MAC_CTX_new failed");
  Bytes secret(k.len);
  RAND_bytes(secret.data(), static_cast<int>(secret.size()));
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(param_name.c_str(), param.data(), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx.get(), secret.data(), secret.size(), params) != 1) {
    return Error(ErrorCode::kInternal, "EVP_MAC_init failed for " + mac_name + " " + param);
  }
  EVP_MAC_CTX* raw = ctx.get();
  mac_ctxs_[key] = std::move(ctx);
  return raw;
}

Result<std::pair<EVP_MD_CTX*, const EVP_MD*>> CryptoFloor::digest_ctx(std::size_t session,
                                                                      CK_MECHANISM_TYPE m,
                                                                      const Call& user) {
  const char* name = m == CKM_SHA_1    ? "SHA1"
                     : m == CKM_SHA224 ? "SHA224"
                     : m == CKM_SHA256 ? "SHA256"
                     : m == CKM_SHA384 ? "SHA384"
                     : m == CKM_SHA512 ? "SHA512"
                                       : nullptr;
  if (name == nullptr) return unmapped(user, mechanism_text(m));
  auto& md = mds_[name];
  if (!md) md.reset(EVP_MD_fetch(nullptr, name, nullptr));
  if (!md) return Error(ErrorCode::kUnsupported, std::string("OpenSSL has no digest ") + name);
  auto& ctx = md_ctxs_[std::make_tuple(session, std::string(name))];
  if (!ctx) ctx.reset(EVP_MD_CTX_new());
  if (!ctx) return Error(ErrorCode::kInternal, "EVP_MD_CTX_new failed");
  return std::make_pair(ctx.get(), static_cast<const EVP_MD*>(md.get()));
}

// The IV (and for GCM the AAD) the mechanism parameter gives.
Status CryptoFloor::add_cipher_init(EVP_CIPHER_CTX* ctx, const Mechanism& m, const Call& c,
                                    bool gcm) {
  SslOp op;
  op.kind = SslOp::Kind::kCipherInit;
  op.call = &c;
  op.cipher = ctx;
  op.gcm = gcm;
  const int iv_len = EVP_CIPHER_CTX_get_iv_length(ctx);
  switch (m.param) {
    case Mechanism::Param::kGcm:
      op.iv = m.iv_null ? nullptr : arena_.copy(m.iv);
      op.iv_len = static_cast<int>(m.iv.size());
      op.aad = m.aad_null ? nullptr : arena_.copy(m.aad);
      op.aad_len = m.aad.size();
      break;
    case Mechanism::Param::kAesCbcDerive:
    case Mechanism::Param::kDesCbcDerive:
      op.iv = arena_.copy(m.iv);
      break;
    case Mechanism::Param::kRaw:
      if (m.type == CKM_AES_CTR && m.raw.size() == sizeof(CK_AES_CTR_PARAMS)) {
        CK_AES_CTR_PARAMS ctr{};
        std::memcpy(&ctr, m.raw.data(), sizeof ctr);
        op.iv = arena_.copy(Bytes(ctr.cb, ctr.cb + sizeof ctr.cb));
      } else if (static_cast<int>(m.raw.size()) == iv_len) {
        op.iv = arena_.copy(m.raw);
      }
      break;
    default:
      break;
  }
  if (iv_len > 0 && op.iv == nullptr && !gcm && m.type != CKM_AES_KEY_WRAP &&
      m.type != CKM_AES_KEY_WRAP_PAD) {
    return unmapped(
        c, mechanism_text(m.type) + " without an IV of " + std::to_string(iv_len) + " bytes");
  }
  ops_.push_back(op);
  return ok_status();
}

void CryptoFloor::add_cipher(EVP_CIPHER_CTX* ctx, const Call& c, const unsigned char* in,
                             std::size_t len, const Active& a) {
  SslOp op;
  op.kind = SslOp::Kind::kCipher;
  op.call = &c;
  op.cipher = ctx;
  op.in = in;
  op.in_len = len;
  op.gcm = a.gcm;
  op.decrypt = a.decrypt;
  op.tag_len = a.tag_len;
  ops_.push_back(op);
}

Status CryptoFloor::map_call(const Call& c) {
  const std::size_t s = c.replay_session;
  Active& a = active_[s];
  const unsigned char* in = c.in ? arena_.copy(*c.in) : pool_.data();
  auto expect = [&](Active::Kind kind) -> Status {
    if (a.kind == kind) return ok_status();
    return Error(ErrorCode::kParse, t_.path + ": call #" + std::to_string(c.n) + " (" + c.fn +
                                        "): no matching operation in progress in session " +
                                        std::to_string(s));
  };
  auto simple = [&](SslOp::Kind kind, const unsigned char* data, std::size_t len) {
    SslOp op;
    op.kind = kind;
    op.call = &c;
    op.cipher = a.cipher;
    op.mac = a.mac;
    op.md_ctx = a.md_ctx;
    op.md = a.md;
    op.in = data;
    op.in_len = len;
    op.gcm = a.gcm;
    op.decrypt = a.decrypt;
    op.tag_len = a.tag_len;
    ops_.push_back(op);
  };
  switch (*c.work) {
    case Fn::C_EncryptInit:
    case Fn::C_DecryptInit: {
      PF_ASSIGN_OR_RETURN(const KeySpec k, key_spec(c.key, c));
      PF_ASSIGN_OR_RETURN(const Cipher ci, cipher_for(c.mech.type, k, c));
      const bool encrypt = *c.work == Fn::C_EncryptInit;
      PF_ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, cipher_ctx(s, ci, encrypt));
      PF_TRY(add_cipher_init(ctx, c.mech, c, ci.gcm));
      a = Active{};
      a.kind = Active::Kind::kCipher;
      a.cipher = ctx;
      a.gcm = ci.gcm;
      a.decrypt = !encrypt;
      a.tag_len = static_cast<int>(c.mech.tag_bits / 8);
      return ok_status();
    }
    case Fn::C_Encrypt:
    case Fn::C_Decrypt:
      PF_TRY(expect(Active::Kind::kCipher));
      if (c.out_null) break;  // a length query: the operation goes on
      add_cipher(a.cipher, c, in, c.in_len, a);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_EncryptUpdate:
    case Fn::C_DecryptUpdate:
      PF_TRY(expect(Active::Kind::kCipher));
      if (c.out_null) break;
      simple(SslOp::Kind::kCipherUpdate, in, c.in_len);
      return ok_status();
    case Fn::C_EncryptFinal:
    case Fn::C_DecryptFinal:
      PF_TRY(expect(Active::Kind::kCipher));
      if (c.out_null) break;
      simple(SslOp::Kind::kCipherFinal, nullptr, 0);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_SignInit:
    case Fn::C_VerifyInit: {
      PF_ASSIGN_OR_RETURN(const KeySpec k, key_spec(c.key, c));
      PF_ASSIGN_OR_RETURN(EVP_MAC_CTX * mac, mac_ctx(s, c.mech.type, k, c));
      a = Active{};
      a.kind = Active::Kind::kMac;
      a.mac = mac;
      simple(SslOp::Kind::kMacInit, nullptr, 0);
      return ok_status();
    }
    case Fn::C_Sign:
    case Fn::C_Verify:
      PF_TRY(expect(Active::Kind::kMac));
      if (c.out_null) break;
      simple(SslOp::Kind::kMac, in, c.in_len);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_SignUpdate:
    case Fn::C_VerifyUpdate:
      PF_TRY(expect(Active::Kind::kMac));
      simple(SslOp::Kind::kMacUpdate, in, c.in_len);
      return ok_status();
    case Fn::C_SignFinal:
    case Fn::C_VerifyFinal:
      PF_TRY(expect(Active::Kind::kMac));
      if (c.out_null) break;
      simple(SslOp::Kind::kMacFinal, nullptr, 0);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_DigestInit: {
      PF_ASSIGN_OR_RETURN(const auto d, digest_ctx(s, c.mech.type, c));
      a = Active{};
      a.kind = Active::Kind::kDigest;
      a.md_ctx = d.first;
      a.md = d.second;
      simple(SslOp::Kind::kDigestInit, nullptr, 0);
      return ok_status();
    }
    case Fn::C_Digest:
      PF_TRY(expect(Active::Kind::kDigest));
      if (c.out_null) break;
      simple(SslOp::Kind::kDigest, in, c.in_len);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_DigestUpdate:
      PF_TRY(expect(Active::Kind::kDigest));
      simple(SslOp::Kind::kDigestUpdate, in, c.in_len);
      return ok_status();
    case Fn::C_DigestKey: {
      PF_TRY(expect(Active::Kind::kDigest));
      PF_ASSIGN_OR_RETURN(const KeySpec k, key_spec(c.key, c));
      simple(SslOp::Kind::kDigestUpdate, pool_.data(), std::min(k.len, pool_.size()));
      return ok_status();
    }
    case Fn::C_DigestFinal:
      PF_TRY(expect(Active::Kind::kDigest));
      if (c.out_null) break;
      simple(SslOp::Kind::kDigestFinal, nullptr, 0);
      a.kind = Active::Kind::kNone;
      return ok_status();
    case Fn::C_DeriveKey: {
      // *_ECB_ENCRYPT_DATA / *_CBC_ENCRYPT_DATA: the new key is the encryption of the data.
      const CK_MECHANISM_TYPE m = c.mech.type;
      if (m != CKM_AES_ECB_ENCRYPT_DATA && m != CKM_AES_CBC_ENCRYPT_DATA &&
          m != CKM_DES3_ECB_ENCRYPT_DATA && m != CKM_DES3_CBC_ENCRYPT_DATA) {
        return unmapped(c, "key derivation with " + mechanism_text(m));
      }
      PF_ASSIGN_OR_RETURN(const KeySpec k, key_spec(c.key, c));
      PF_ASSIGN_OR_RETURN(const Cipher ci, cipher_for(m, k, c));
      PF_ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, cipher_ctx(s, ci, true));
      PF_TRY(add_cipher_init(ctx, c.mech, c, false));
      add_cipher(ctx, c, arena_.copy(c.mech.data), c.mech.data.size(), Active{});
      made_[c.n] = made_key_spec(c, made_, t_);
      return ok_status();
    }
    case Fn::C_WrapKey: {
      // The wrap cipher over as many bytes as the wrapped key has.
      PF_ASSIGN_OR_RETURN(const KeySpec w, key_spec(c.wrapping, c));
      PF_ASSIGN_OR_RETURN(const KeySpec k, key_spec(c.key, c));
      PF_ASSIGN_OR_RETURN(const Cipher ci, cipher_for(c.mech.type, w, c));
      if (c.out_null) break;
      PF_ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, cipher_ctx(s, ci, true));
      PF_TRY(add_cipher_init(ctx, c.mech, c, false));
      add_cipher(ctx, c, pool_.data(), std::min(k.len, pool_.size()), Active{});
      return ok_status();
    }
    case Fn::C_UnwrapKey: {
      PF_ASSIGN_OR_RETURN(const KeySpec w, key_spec(c.key, c));
      PF_ASSIGN_OR_RETURN(const Cipher ci, cipher_for(c.mech.type, w, c));
      PF_ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, cipher_ctx(s, ci, false));
      PF_TRY(add_cipher_init(ctx, c.mech, c, false));
      Active unwrap;
      unwrap.decrypt = true;
      add_cipher(ctx, c, in, c.in_len, unwrap);
      made_[c.n] = made_key_spec(c, made_, t_);
      return ok_status();
    }
    case Fn::C_GenerateKey: {
      const KeySpec k = made_key_spec(c, made_, t_);
      if (k.len == 0) {
        return unmapped(c, "a key generation whose key length the trace does not give");
      }
      made_[c.n] = k;
      simple(SslOp::Kind::kRandom, nullptr, k.len);
      return ok_status();
    }
    case Fn::C_GenerateKeyPair:
      return unmapped(c, "key pair generation");
    case Fn::C_GenerateRandom:
      simple(SslOp::Kind::kRandom, nullptr, c.random_len);
      return ok_status();
    case Fn::C_CreateObject:
    case Fn::C_CopyObject:
      made_[c.n] = made_key_spec(c, made_, t_);
      break;
    case Fn::C_DestroyObject:
    case Fn::C_GetAttributeValue:
    case Fn::C_GetObjectSize:
    case Fn::C_SetAttributeValue:
    case Fn::C_SeedRandom:
      break;
  }
  ++no_crypto_;  // object management, a length query: no crypto primitive
  return ok_status();
}

Status CryptoFloor::prepare() {
  PF_ASSIGN_OR_RETURN(pool_, random_pool(t_));
  active_.assign(std::max<std::size_t>(t_.sessions, 1), Active{});
  std::size_t out_size = pool_.size() + 64;
  for (std::size_t i : t_.work) {
    const Call& c = t_.calls[i];
    PF_TRY(map_call(c));
    out_size = std::max<std::size_t>(
        {out_size, c.in_len + 64, c.random_len + 64, c.mech.data.size() + 64});
  }
  out_.assign(out_size, 0);
  return ok_status();
}

bool CryptoFloor::run(const SslOp& op) {
  unsigned char* out = out_.data();
  int outl = 0;
  int fin = 0;
  switch (op.kind) {
    case SslOp::Kind::kCipherInit: {
      if (op.gcm && op.iv_len != 12) {
        if (EVP_CipherInit_ex(op.cipher, nullptr, nullptr, nullptr, nullptr, -1) != 1 ||
            EVP_CIPHER_CTX_ctrl(op.cipher, EVP_CTRL_AEAD_SET_IVLEN, op.iv_len, nullptr) != 1) {
          return false;
        }
      }
      if (EVP_CipherInit_ex(op.cipher, nullptr, nullptr, nullptr, op.iv, -1) != 1) return false;
      if (op.gcm && op.aad_len > 0) {
        return EVP_CipherUpdate(op.cipher, nullptr, &outl, op.aad, static_cast<int>(op.aad_len)) ==
               1;
      }
      return true;
    }
    case SslOp::Kind::kCipher: {
      std::size_t len = op.in_len;
      if (op.gcm && op.decrypt) {
        // PKCS#11 GCM decryption takes the tag after the ciphertext.
        const auto tag = static_cast<std::size_t>(op.tag_len);
        len = len >= tag ? len - tag : 0;
        EVP_CIPHER_CTX_ctrl(op.cipher, EVP_CTRL_AEAD_SET_TAG, op.tag_len,
                            const_cast<unsigned char*>(op.in + len));
      }
      bool ok = EVP_CipherUpdate(op.cipher, out, &outl, op.in, static_cast<int>(len)) == 1;
      ok = EVP_CipherFinal_ex(op.cipher, out + outl, &fin) == 1 && ok;
      if (op.gcm && !op.decrypt) {
        ok = EVP_CIPHER_CTX_ctrl(op.cipher, EVP_CTRL_AEAD_GET_TAG, op.tag_len, out + outl + fin) ==
                 1 &&
             ok;
      }
      // A decryption under the host's random key fails its padding, tag or integrity
      // check after doing the same work: only encryptions must succeed.
      return ok || op.decrypt;
    }
    case SslOp::Kind::kCipherUpdate:
      return EVP_CipherUpdate(op.cipher, out, &outl, op.in, static_cast<int>(op.in_len)) == 1 ||
             op.decrypt;
    case SslOp::Kind::kCipherFinal:
      return EVP_CipherFinal_ex(op.cipher, out, &outl) == 1 || op.decrypt;
    case SslOp::Kind::kMacInit:
      return EVP_MAC_init(op.mac, nullptr, 0, nullptr) == 1;
    case SslOp::Kind::kMac: {
      std::size_t n = 0;
      return EVP_MAC_update(op.mac, op.in, op.in_len) == 1 &&
             EVP_MAC_final(op.mac, out, &n, out_.size()) == 1;
    }
    case SslOp::Kind::kMacUpdate:
      return EVP_MAC_update(op.mac, op.in, op.in_len) == 1;
    case SslOp::Kind::kMacFinal: {
      std::size_t n = 0;
      return EVP_MAC_final(op.mac, out, &n, out_.size()) == 1;
    }
    case SslOp::Kind::kDigestInit:
      return EVP_DigestInit_ex(op.md_ctx, op.md, nullptr) == 1;
    case SslOp::Kind::kDigest: {
      unsigned int n = 0;
      return EVP_DigestUpdate(op.md_ctx, op.in, op.in_len) == 1 &&
             EVP_DigestFinal_ex(op.md_ctx, out, &n) == 1;
    }
    case SslOp::Kind::kDigestUpdate:
      return EVP_DigestUpdate(op.md_ctx, op.in, op.in_len) == 1;
    case SslOp::Kind::kDigestFinal: {
      unsigned int n = 0;
      return EVP_DigestFinal_ex(op.md_ctx, out, &n) == 1;
    }
    case SslOp::Kind::kRandom:
      return RAND_bytes(out, static_cast<int>(op.in_len)) == 1;
  }
  return false;
}

Result<Measure> CryptoFloor::measure() {
  auto once = [&]() -> Result<double> {
    const auto t0 = std::chrono::steady_clock::now();
    for (const SslOp& op : ops_) {
      if (!run(op)) {
        return Error(ErrorCode::kInternal, t_.path + ": call #" + std::to_string(op.call->n) +
                                               " (" + op.call->fn +
                                               "): its OpenSSL primitive failed");
      }
    }
    return seconds_since(t0);
  };
  PF_ASSIGN_OR_RETURN(Measure m, repeat_timed(o_, once));
  m.no_crypto_calls = no_crypto_;
  return m;
}

// ---------------------------------------------------------------------------------------
// The command

std::string grouped(double v) {
  std::string digits = std::to_string(static_cast<long long>(std::llround(v)));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<std::size_t>(i), ",");
  }
  return digits;
}

Status floor_main(const Options& o) {
  PF_ASSIGN_OR_RETURN(const Trace t, read_trace(o.trace));
  Measure m;
  std::string what;
  if (o.openssl) {
    CryptoFloor f(o, t);
    PF_TRY(f.prepare());
    PF_ASSIGN_OR_RETURN(m, f.measure());
    what = "crypto floor (OpenSSL " + std::string(OpenSSL_version(OPENSSL_VERSION_STRING)) +
           ", reused contexts)";
  } else {
    HsmFloor f(o, t);
    PF_TRY(f.open());
    PF_TRY(f.prepare());
    PF_ASSIGN_OR_RETURN(m, f.measure());
    what = "HSM floor (PKCS#11: " + f.describe() + ")";
  }
  const std::size_t work = t.work.size();
  const double calls = static_cast<double>(work) * static_cast<double>(m.repeat);
  const double cards = static_cast<double>(o.cards) * static_cast<double>(m.repeat);
  std::map<std::string, std::size_t> by_function;
  for (std::size_t i : t.work) ++by_function[t.calls[i].fn];

  Json j;
  j["mode"] = o.openssl ? "openssl" : "pkcs11";
  j["trace"] = o.trace;
  j["trace_calls"] = t.calls.size();
  j["setup_calls"] = t.setup;
  j["work_calls_per_repeat"] = work;
  j["skipped_failed"] = t.skipped_failed;
  j["sessions"] = t.sessions;
  j["repeat"] = m.repeat;
  j["cards"] = o.cards;
  j["seconds"] = m.seconds;
  j["calls_per_second"] = calls / m.seconds;
  j["cards_per_second"] = cards / m.seconds;
  j["all_ok"] =
      true;  // a call that does not return CKR_OK (or a primitive that fails) stops the run
  if (o.openssl) {
    j["no_crypto_calls_per_repeat"] = m.no_crypto_calls;
  } else {
    j["token_keys"] = m.token_keys;
    j["objects_left_per_repeat"] = m.left_over_objects;
    j["template_attributes_left_out"] = m.attributes_left_out;
  }
  Json per_card = Json::object();
  for (const auto& [fn, count] : by_function) {
    per_card[fn] = static_cast<double>(count) / static_cast<double>(o.cards);
  }
  j["by_function"] = per_card;
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    return ok_status();
  }
  std::printf(
      "trace:     %s: %zu calls: %zu setup, %zu work, %zu failed in the trace (skipped); %zu "
      "session(s)\n",
      o.trace.c_str(), t.calls.size(), t.setup, work, t.skipped_failed, t.sessions);
  std::printf("%s\n", what.c_str());
  std::printf(
      "           %llu x %zu calls in %.3f s: %s calls/s, %s cards/s (%llu cards per repetition)\n",
      static_cast<unsigned long long>(m.repeat), work, m.seconds,
      grouped(calls / m.seconds).c_str(), grouped(cards / m.seconds).c_str(),
      static_cast<unsigned long long>(o.cards));
  if (o.openssl) {
    std::printf(
        "           %zu call(s) per repetition map to no crypto primitive (object management, "
        "length queries)\n",
        m.no_crypto_calls);
  } else if (m.left_over_objects > 0 || m.attributes_left_out > 0) {
    std::printf(
        "           %zu object(s) the trace left were destroyed after each repetition (untimed); "
        "%zu template "
        "attribute(s) without a recorded value were left out\n",
        m.left_over_objects, m.attributes_left_out);
  }
  std::vector<std::pair<std::string, std::size_t>> sorted(by_function.begin(), by_function.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& x, const auto& y) { return x.second > y.second; });
  std::string line = "per card: ";
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s %.3g", i == 0 ? "" : ", ", sorted[i].first.c_str(),
                  static_cast<double>(sorted[i].second) / static_cast<double>(o.cards));
    line += buf;
  }
  std::printf("%s\n", line.c_str());
  return ok_status();
}

}  // namespace
}  // namespace persoflow::bench

int main(int argc, char** argv) {
  using persoflow::bench::Options;
  Options o;
  CLI::App app{
      "hsm_floor: replays the work calls of a PKCS#11 call trace (PERSOFLOW_SHIM_TRACE, "
      "docs/fault-injection.md) "
      "in a tight loop: against the same token (the HSM floor), or with --openssl as the same "
      "primitives through "
      "OpenSSL with reused contexts (the crypto floor). Prints calls/s and cards/s = CARDS x "
      "REPEAT / seconds.",
      "hsm_floor"};
  app.add_option("--trace", o.trace,
                 "Trace file written by the fault shim with PERSOFLOW_SHIM_TRACE; required")
      ->required();
  app.add_option("--cards", o.cards,
                 "Cards the traced run prepared (cards/s = CARDS x REPEAT / seconds); required")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--repeat", o.repeat,
                 "Repetitions of the work calls (default: one untimed warm-up, then as many as "
                 "fill about 1 s)")
      ->check(CLI::PositiveNumber);
  app.add_option(
      "--module", o.module,
      "PKCS#11 module (default: PERSOFLOW_PKCS11_MODULE, else /usr/lib/softhsm/libsofthsm2.so; "
      "SOFTHSM2_CONF as usual)");
  app.add_option("--token", o.token,
                 "Token label (default: PERSOFLOW_TOKEN, else the only initialized token)");
  app.add_option("--pin-env", o.pin_env,
                 "Environment variable holding the PIN (default PERSOFLOW_PIN)");
  app.add_flag("--openssl", o.openssl,
               "The crypto floor: the same primitives through OpenSSL, no HSM");
  app.add_flag("--json", o.json, "Print one JSON object instead of the summary");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; a usage error: 2, as persoflow's
  }
  const persoflow::Status s = persoflow::bench::floor_main(o);
  if (!s) {
    std::fprintf(stderr, "hsm_floor: error: %s\n", s.error().message().c_str());
    return 1;
  }
  return 0;
}
