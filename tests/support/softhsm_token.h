// A real SoftHSM2 token made for one test in its own temporary directory.
//
// The constructor writes a softhsm2.conf whose token directory lives inside a fresh
// TempDir, points SOFTHSM2_CONF at it for this process (children inherit it), and
// initializes a token with softhsm2-util. Nothing is shared between tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace persoflow::test {

class SoftHsmToken {
 public:
  explicit SoftHsmToken(std::string label = "persoflow-test", std::string pin = "1234",
                        std::string so_pin = "12345678");

  const std::string& label() const { return label_; }
  const std::string& pin() const { return pin_; }
  const std::string& so_pin() const { return so_pin_; }
  std::string module() const { return PERSOFLOW_SOFTHSM2_MODULE; }
  std::string conf_path() const { return (dir_.path() / "softhsm2.conf").string(); }
  const TempDir& dir() const { return dir_; }

  // Initializes one more token in the same SoftHSM configuration.
  void add_token(const std::string& label, const std::string& pin);

  // The environment a child persoflow process needs to reach this token with the
  // PIN in PERSOFLOW_PIN (never on the command line).
  std::map<std::string, std::string> env() const;

  // Runs pkcs11-tool against this token's module, logged in; returns stdout+stderr.
  // Throws if it fails.
  std::string pkcs11_tool(const std::vector<std::string>& args) const;

 private:
  TempDir dir_;
  std::string label_;
  std::string pin_;
  std::string so_pin_;
};

}  // namespace persoflow::test
