// Microbenchmarks of the PKCS#11 layer against a real SoftHSM token created for the
// run in a temporary directory: the per-call costs that shape the design
// (../shared/design/hsm-facts.md), measured through persoflow's own code.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "hsm/key_store.h"

namespace persoflow {
namespace {

constexpr const char* kPin = "1234";

struct BenchHsm {
  std::filesystem::path dir;
  std::shared_ptr<hsm::Module> module;
  std::shared_ptr<hsm::Token> token;
  std::unique_ptr<hsm::KeyStore> keys;
  hsm::KeyInfo aes;
  hsm::KeyInfo aes_derive_only;
};

BenchHsm* g_hsm = nullptr;

bool make_token(BenchHsm& h, const std::string& module_path) {
  char tmpl[] = "/tmp/persoflow-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return false;
  h.dir = tmpl;
  std::filesystem::create_directories(h.dir / "tokens");
  std::ofstream(h.dir / "softhsm2.conf") << "directories.tokendir = " << (h.dir / "tokens").string()
                                         << "\nobjectstore.backend = file\nlog.level = ERROR\n";
  setenv("SOFTHSM2_CONF", (h.dir / "softhsm2.conf").c_str(), 1);
  const std::string cmd = "softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin " +
                          std::string(kPin) + " >/dev/null";
  if (std::system(cmd.c_str()) != 0) return false;
  auto module = hsm::Module::load(module_path);
  if (!module) return false;
  h.module = *module;
  const std::string pin = kPin;
  auto token = hsm::Token::open(h.module, "bench",
                                SecureBytes(std::span<const std::uint8_t>(
                                    reinterpret_cast<const std::uint8_t*>(pin.data()), pin.size())));
  if (!token) return false;
  h.token = *token;
  h.keys = std::make_unique<hsm::KeyStore>(h.token);
  auto aes = h.keys->generate({"bench-aes", KeyType::kAes128, KeyUsage{.encrypt = true}, std::nullopt});
  auto derive = h.keys->generate({"bench-derive", KeyType::kAes128, KeyUsage{.derive = true}, std::nullopt});
  if (!aes || !derive) return false;
  h.aes = *aes;
  h.aes_derive_only = *derive;
  return true;
}

// One AES-ECB block through C_EncryptInit + C_Encrypt on a leased session.
void BM_Hsm_AesEcbBlock(benchmark::State& state) {
  auto lease = g_hsm->token->sessions().lease().value();
  CK_MECHANISM mech{CKM_AES_ECB, nullptr, 0};
  std::uint8_t in[16] = {}, out[16];
  for (auto _ : state) {
    CK_ULONG n = sizeof out;
    lease.api()->C_EncryptInit(lease.handle(), &mech, g_hsm->aes.handle);
    lease.api()->C_Encrypt(lease.handle(), in, sizeof in, out, &n);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Hsm_AesEcbBlock);

void BM_Hsm_SessionLease(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_hsm->token->sessions().lease());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Hsm_SessionLease);

void BM_Hsm_FindKeyCached(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_hsm->keys->find("pkcs11:object=bench-aes"));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Hsm_FindKeyCached);

void BM_Hsm_KcvEncryptUsage(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_hsm->keys->kcv(g_hsm->aes));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Hsm_KcvEncryptUsage);

void BM_Hsm_KcvThroughSessionCopy(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_hsm->keys->kcv(g_hsm->aes_derive_only));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Hsm_KcvThroughSessionCopy);

}  // namespace
}  // namespace persoflow

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const char* module = std::getenv("PERSOFLOW_PKCS11_MODULE");
  persoflow::BenchHsm hsm;
  if (!persoflow::make_token(hsm, module != nullptr ? module : "/usr/lib/softhsm/libsofthsm2.so")) {
    std::fprintf(stderr, "bench_hsm: could not create a SoftHSM token\n");
    return 1;
  }
  persoflow::g_hsm = &hsm;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  hsm.keys.reset();
  hsm.token.reset();
  hsm.module.reset();
  std::filesystem::remove_all(hsm.dir);
  return 0;
}
