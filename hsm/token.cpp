#include "hsm/token.h"

#include "hsm/ck_rv.h"

namespace persoflow::hsm {

Status ObjectSession::check(CK_RV rv, std::string_view function, std::string_view what) const {
  return check_rv(rv, function, what);
}

Token::Token(std::shared_ptr<Module> module, TokenDescription description,
             CK_SESSION_HANDLE login_session, std::size_t max_sessions)
    : module_(std::move(module)),
      description_(std::move(description)),
      login_session_(login_session),
      pool_(std::make_unique<SessionPool>(module_->api(), description_.slot, max_sessions)) {}

Token::~Token() {
  pool_.reset();  // close pooled sessions first
  module_->api()->C_CloseSession(login_session_);
}

Result<std::shared_ptr<Token>> Token::open(std::shared_ptr<Module> module, const std::string& label,
                                           const SecureBytes& pin, TokenOptions options) {
  PF_ASSIGN_OR_RETURN(auto tokens, module->tokens());
  const TokenDescription* found = nullptr;
  std::string present;
  for (const auto& t : tokens) {
    if (t.initialized) {
      if (!present.empty()) present += ", ";
      present += "'" + t.label + "'";
    }
    if (t.label == label) {
      if (found != nullptr) {
        return Error(ErrorCode::kInvalidArgument,
                     "token label '" + label + "' is ambiguous in module " + module->path() +
                         ": more than one token carries it");
      }
      found = &t;
    }
  }
  if (found == nullptr) {
    return Error(ErrorCode::kNotFound,
                 "token '" + label + "' not found in PKCS#11 module " + module->path() +
                     " (tokens present: " + (present.empty() ? "none" : present) + ")");
  }
  CK_FUNCTION_LIST* api = module->api();
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  PF_TRY(check_rv(api->C_OpenSession(found->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                     nullptr, &session),
                  "C_OpenSession", "opening a session on token '" + label + "'"));
  auto pin_bytes = pin.reveal();
  // C_Login takes a non-const pointer in the v2.40 header; it does not write through it.
  CK_RV rv = api->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_bytes.data()),
                          static_cast<CK_ULONG>(pin_bytes.size()));
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    api->C_CloseSession(session);
    return rv_error(rv, "C_Login", "logging in to token '" + label + "'");
  }
  return std::shared_ptr<Token>(
      new Token(std::move(module), *found, session, options.max_sessions));
}

}  // namespace persoflow::hsm
