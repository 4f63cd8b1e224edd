#include "engine/result.h"

namespace persoflow {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kParse: return "parse";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kIntegrity: return "integrity";
    case ErrorCode::kHsm: return "hsm";
    case ErrorCode::kAuth: return "auth";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kRejectLimit: return "reject_limit";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

Error Error::hsm(unsigned long rv, std::string_view function, std::string message,
                 ErrorCode code) {
  Error e(code, std::move(message));
  e.ck_rv_ = rv;
  e.function_ = std::string(function);
  return e;
}

Error& Error::add_context(std::string_view context) {
  if (!context.empty()) {
    message_ = std::string(context) + ": " + message_;
  }
  return *this;
}

}  // namespace persoflow
