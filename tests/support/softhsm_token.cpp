#include "tests/support/softhsm_token.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "tests/support/run_process.h"

namespace persoflow::test {

SoftHsmToken::SoftHsmToken(std::string label, std::string pin, std::string so_pin)
    : dir_("persoflow-hsm"), label_(std::move(label)), pin_(std::move(pin)), so_pin_(std::move(so_pin)) {
  std::filesystem::create_directories(dir_.path() / "tokens");
  write_file(dir_.path() / "softhsm2.conf",
             "directories.tokendir = " + (dir_.path() / "tokens").string() +
                 "\n"
                 "objectstore.backend = file\n"
                 "log.level = ERROR\n"
                 "slots.removable = false\n");
  setenv("SOFTHSM2_CONF", conf_path().c_str(), 1);
  add_token(label_, pin_);
}

void SoftHsmToken::add_token(const std::string& label, const std::string& pin) {
  auto r = run_process({PERSOFLOW_SOFTHSM2_UTIL, "--init-token", "--free", "--label", label,
                        "--so-pin", so_pin_, "--pin", pin},
                       {{"SOFTHSM2_CONF", conf_path()}});
  if (r.exit_code != 0) {
    throw std::runtime_error("softhsm2-util --init-token failed: " + r.out + r.err);
  }
}

std::map<std::string, std::string> SoftHsmToken::env() const {
  return {{"SOFTHSM2_CONF", conf_path()},
          {"PERSOFLOW_PKCS11_MODULE", module()},
          {"PERSOFLOW_TOKEN", label_},
          {"PERSOFLOW_PIN", pin_}};
}

std::string SoftHsmToken::pkcs11_tool(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {PERSOFLOW_PKCS11_TOOL, "--module", module(), "--token-label",
                                   label_, "--login", "--pin", pin_};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, {{"SOFTHSM2_CONF", conf_path()}});
  if (r.exit_code != 0) throw std::runtime_error("pkcs11-tool failed: " + r.out + r.err);
  return r.out + r.err;
}

}  // namespace persoflow::test
