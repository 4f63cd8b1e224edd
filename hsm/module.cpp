#include "hsm/module.h"

#include <dlfcn.h>

#include <filesystem>

#include "hsm/ck_rv.h"

namespace persoflow::hsm {

std::string trim_padded(const unsigned char* data, std::size_t size) {
  std::size_t n = size;
  while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(data), n);
}

Result<std::shared_ptr<Module>> Module::load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "PKCS#11 module not found: " + path +
                                           " (set --module or PERSOFLOW_PKCS11_MODULE)");
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Error(ErrorCode::kHsm, "cannot load PKCS#11 module " + path + ": " +
                                      (why != nullptr ? why : "unknown dlopen error"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    dlclose(handle);
    return Error(ErrorCode::kHsm, path + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  CK_FUNCTION_LIST* api = nullptr;
  CK_RV rv = get_list(&api);
  if (rv != CKR_OK || api == nullptr) {
    dlclose(handle);
    return rv_error(rv, "C_GetFunctionList", "loading PKCS#11 module " + path);
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  rv = api->C_Initialize(&args);
  bool finalize = true;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    finalize = false;  // someone else in this process owns the initialization
  } else if (rv != CKR_OK) {
    dlclose(handle);
    return rv_error(rv, "C_Initialize", "initializing PKCS#11 module " + path);
  }
  return std::shared_ptr<Module>(new Module(path, handle, api, finalize));
}

Module::~Module() {
  if (finalize_) api_->C_Finalize(nullptr);
  dlclose(handle_);
}

Result<std::vector<TokenDescription>> Module::tokens() const {
  CK_ULONG count = 0;
  PF_TRY(check_rv(api_->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList", "listing slots"));
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) {
    PF_TRY(check_rv(api_->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList",
                    "listing slots"));
    slots.resize(count);
  }
  std::vector<TokenDescription> out;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    CK_RV rv = api_->C_GetTokenInfo(slot, &info);
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) continue;
    PF_TRY(check_rv(rv, "C_GetTokenInfo", "reading token information of slot " + std::to_string(slot)));
    TokenDescription d;
    d.slot = slot;
    d.label = trim_padded(info.label, sizeof info.label);
    d.manufacturer = trim_padded(info.manufacturerID, sizeof info.manufacturerID);
    d.model = trim_padded(info.model, sizeof info.model);
    d.serial = trim_padded(info.serialNumber, sizeof info.serialNumber);
    d.initialized = (info.flags & CKF_TOKEN_INITIALIZED) != 0;
    d.login_required = (info.flags & CKF_LOGIN_REQUIRED) != 0;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace persoflow::hsm
