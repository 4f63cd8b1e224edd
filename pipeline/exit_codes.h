// Exit codes of the persoflow command (docs/cli.md). Scripts and schedulers rely on
// them: never renumber, only add.
#pragma once

#include "engine/result.h"

namespace persoflow::pipeline {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,       // a bug in persoflow
  kExitUsage = 2,          // bad command line or invalid argument values
  kExitInput = 3,          // an input exists but is malformed or cannot be read
  kExitNotFound = 4,       // something named by the operator (file, module, token, key) does not exist
  kExitAuth = 5,           // login failed: wrong or locked PIN
  kExitHsm = 6,            // the HSM refused or failed an operation
  kExitIntegrity = 7,      // a check value (KCV, MAC, tag) did not match
  kExitAlreadyExists = 8,  // refusing to replace something that exists
  kExitUnsupported = 9,    // the request is valid but this module or build cannot serve it
  kExitRejectLimit = 10,   // more records rejected than --max-rejects allows; no XOF, reject report published
};

ExitCode exit_code_for(const Error& error);

}  // namespace persoflow::pipeline
