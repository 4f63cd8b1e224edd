#include "pipeline/exit_codes.h"

namespace persoflow::pipeline {

ExitCode exit_code_for(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kInvalidArgument: return kExitUsage;
    case ErrorCode::kParse:
    case ErrorCode::kIo: return kExitInput;
    case ErrorCode::kNotFound: return kExitNotFound;
    case ErrorCode::kAuth: return kExitAuth;
    case ErrorCode::kHsm: return kExitHsm;
    case ErrorCode::kIntegrity: return kExitIntegrity;
    case ErrorCode::kAlreadyExists: return kExitAlreadyExists;
    case ErrorCode::kUnsupported: return kExitUnsupported;
    case ErrorCode::kRejectLimit: return kExitRejectLimit;
    case ErrorCode::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace persoflow::pipeline
