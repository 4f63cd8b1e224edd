// Runs a program (no shell) with extra environment variables and optional stdin,
// capturing its exit code, stdout and stderr. Used to drive the persoflow CLI and
// the independent tools (softhsm2-util, pkcs11-tool, openssl) from tests.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace persoflow::test {

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128 + signal number
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& extra_env = {},
                          const std::string& stdin_data = "");

}  // namespace persoflow::test
