// A loaded PKCS#11 module (any vendor's; SoftHSM2 is only the default): dlopen,
// C_GetFunctionList, C_Initialize with OS locking; C_Finalize and dlclose when the
// last owner lets go.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/result.h"
#include "hsm/pkcs11_api.h"

namespace persoflow::hsm {

struct TokenDescription {
  CK_SLOT_ID slot = 0;
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serial;
  bool initialized = false;
  bool login_required = false;
};

class Module {
 public:
  // Loads the module at `path`. kNotFound when the file does not exist, kHsm when it
  // is not a usable PKCS#11 module (the message carries dlerror() or the CK_RV).
  static Result<std::shared_ptr<Module>> load(const std::string& path);

  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* api() const { return api_; }
  const std::string& path() const { return path_; }

  // Tokens present in the module's slots.
  Result<std::vector<TokenDescription>> tokens() const;

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* api, bool finalize)
      : path_(std::move(path)), handle_(handle), api_(api), finalize_(finalize) {}

  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* api_;
  bool finalize_;
};

// A fixed-width, blank-padded PKCS#11 string (labels, serials) without the padding.
std::string trim_padded(const unsigned char* data, std::size_t size);

}  // namespace persoflow::hsm
