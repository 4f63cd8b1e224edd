// Recovery from a lost login (hsm/token.h, docs/fault-injection.md): the fault shim's
// drop-sessions closes every real session of the token, as a device reset would, so the
// login ends and SoftHSM renumbers the token's objects. The hsm layer must notice, log in
// again (a bounded number of times), give the KeyStore's keys their new handles and make
// the failed call transient, so that a caller's retry gives the bytes an undisturbed run
// gives; a PIN error on the new login, or too many lost logins, must stop with a message
// naming the operation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "hsm/ck_rv.h"
#include "hsm/hsm_keys.h"
#include "hsm/key_store.h"
#include "hsm/module.h"
#include "hsm/token.h"
#include "tests/support/reference_crypto.h"
#include "tests/support/run_process.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {
namespace {

// RFC 4493 section 4, example 2: AES-128 key, 16-byte message, its CMAC.
const ByteVec kCmacKey = hex_bytes("2B7E151628AED2A6ABF7158809CF4F3C");
const ByteVec kCmacMessage = hex_bytes("6BC1BEE22E409F96E93D7E117393172A");
const ByteVec kCmacTag = hex_bytes("070A16B46B4D4144F79BDD9DD04A287C");

constexpr int kAttempts = 3;  // as prep's CardPreparer::kAttempts

SecureBytes secret_of(const std::string& s) {
  return SecureBytes(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

void clear_shim_env() {
  for (const char* v : {"PERSOFLOW_SHIM_MODULE", "PERSOFLOW_SHIM_FAULTS", "PERSOFLOW_SHIM_COUNTS",
                        "PERSOFLOW_SHIM_VERBOSE"}) {
    unsetenv(v);
  }
}

std::map<std::string, unsigned long long> parse_counts(const std::string& json) {
  std::map<std::string, unsigned long long> out;
  static const std::regex entry("\"(C_[A-Za-z]+)\": ([0-9]+)");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), entry); it != std::sregex_iterator(); ++it) {
    out[(*it)[1].str()] = std::stoull((*it)[2].str());
  }
  return out;
}

// What prep and import do with an HSM error: try again, at most kAttempts times in all,
// when it is transient.
template <typename F>
auto with_retry(F&& f, std::atomic<int>& retries) -> decltype(f()) {
  for (int attempt = 1;; ++attempt) {
    auto r = f();
    if (r.has_value()) return r;
    const auto rv = r.error().ck_rv();
    if (!rv || !hsm::rv_is_transient(*rv) || attempt == kAttempts) return r;
    ++retries;
  }
}

class HsmRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clear_shim_env();
    token_env_ = std::make_unique<SoftHsmToken>("recovery");
    setenv("PERSOFLOW_SHIM_MODULE", token_env_->module().c_str(), 1);
    counts_path_ = token_env_->dir() / "counts.json";
  }
  void TearDown() override {
    close();
    token_env_.reset();
    clear_shim_env();
  }

  // Loads the shim with `faults`, logs in; the counts file is written at close().
  void open(const std::string& faults, hsm::TokenOptions options = {4, 8}) {
    setenv("PERSOFLOW_SHIM_FAULTS", faults.c_str(), 1);
    setenv("PERSOFLOW_SHIM_COUNTS", counts_path_.c_str(), 1);
    auto module = hsm::Module::load(PERSOFLOW_FAULT_SHIM);
    ASSERT_TRUE(module.has_value()) << module.error().message();
    module_ = *module;
    auto token = hsm::Token::open(module_, token_env_->label(), secret_of(token_env_->pin()), options);
    ASSERT_TRUE(token.has_value()) << token.error().message();
    token_ = *token;
    keys_ = std::make_unique<hsm::KeyStore>(token_);
  }
  void close() {
    keys_.reset();
    token_.reset();
    module_.reset();  // C_Finalize: the shim writes the counts and starts counting again
  }
  std::map<std::string, unsigned long long> counts() { return parse_counts(read_file(counts_path_)); }

  // The RFC 4493 key (sign, encrypt) and an AES-256 DKep-like key (encrypt, decrypt).
  void create_keys() {
    auto cmac = keys_->create_from_value(
        hsm::KeySpec{"cmac", KeyType::kAes128, KeyUsage{.encrypt = true, .sign = true}, std::nullopt},
        SecureBytes(std::span<const std::uint8_t>(kCmacKey)));
    ASSERT_TRUE(cmac.has_value()) << cmac.error().message();
    auto dkep = keys_->generate(
        hsm::KeySpec{"dkep", KeyType::kAes256, KeyUsage{.encrypt = true, .decrypt = true}, std::nullopt});
    ASSERT_TRUE(dkep.has_value()) << dkep.error().message();
  }

  // A key store's find, then CMACs, AES-GCM seals and KCVs, each retried as prep does;
  // every output in order. Fails the test on an error that survives the retries.
  std::vector<Bytes> run_sequence(std::atomic<int>& retries) {
    std::vector<Bytes> out;
    auto mac_info = with_retry([&] { return keys_->find("pkcs11:token=recovery;object=cmac"); }, retries);
    EXPECT_TRUE(mac_info.has_value()) << mac_info.error().message();
    auto dkep_info = with_retry([&] { return keys_->find("pkcs11:object=dkep;type=secret-key"); }, retries);
    EXPECT_TRUE(dkep_info.has_value()) << dkep_info.error().message();
    if (!mac_info || !dkep_info) return out;
    hsm::HsmMacKey mac(*keys_, *mac_info);
    hsm::HsmAeadKey aead(*keys_, *dkep_info);
    const Bytes aad{0xA0, 0xA1};
    for (std::uint8_t i = 0; i < 12; ++i) {
      const Bytes message(20 + i, i);
      auto tag = with_retry([&] { return mac.mac(message); }, retries);
      EXPECT_TRUE(tag.has_value()) << tag.error().message();
      if (!tag) return out;
      out.push_back(*tag);
      Bytes nonce(12, 0x00);
      nonce[11] = i;
      auto sealed = with_retry([&] { return aead.seal(nonce, aad, message); }, retries);
      EXPECT_TRUE(sealed.has_value()) << sealed.error().message();
      if (!sealed) return out;
      out.push_back(*sealed);
    }
    for (const hsm::KeyInfo* key : {&*mac_info, &*dkep_info}) {
      auto kcv = with_retry([&] { return keys_->kcv(*key); }, retries);
      EXPECT_TRUE(kcv.has_value()) << kcv.error().message();
      if (kcv) out.push_back(*kcv);
    }
    return out;
  }

  std::unique_ptr<SoftHsmToken> token_env_;
  std::filesystem::path counts_path_;
  std::shared_ptr<hsm::Module> module_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::KeyStore> keys_;
};

TEST_F(HsmRecoveryTest, DroppedSessionsAreRecoveredAndGiveTheUndisturbedOutput) {
  // Undisturbed: the keys are made and the sequence runs without faults.
  ASSERT_NO_FATAL_FAILURE(open(""));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  std::atomic<int> clean_retries{0};
  const auto clean = run_sequence(clean_retries);
  ASSERT_EQ(clean.size(), 26u);
  EXPECT_EQ(clean_retries.load(), 0);
  EXPECT_EQ(token_->relogins(), 0u);
  close();

  // The same sequence in a new process state (fresh key store, fresh module), the module
  // dropping every session twice: in a CMAC and in an AES-GCM seal.
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:5:drop-sessions,C_Encrypt:9:drop-sessions"));
  std::atomic<int> retries{0};
  const auto disturbed = run_sequence(retries);
  EXPECT_EQ(disturbed, clean) << "the outputs after recovery differ from the undisturbed run";
  EXPECT_EQ(token_->relogins(), 2u) << "one new login per drop";
  EXPECT_EQ(token_->login_generation(), 3u);
  // Each drop costs the one call that met it, and at most one more whose handle or
  // session went with the login.
  EXPECT_GE(retries.load(), 2);
  EXPECT_LE(retries.load(), 4);
  close();
  auto c = counts();
  EXPECT_GE(c["C_Sign"], 5u) << "the first fault was reached";
  EXPECT_GE(c["C_Encrypt"], 9u) << "the second fault was reached";
  EXPECT_EQ(c["C_Login"], 3u) << "the first login and exactly one per drop";
  EXPECT_EQ(c["C_Logout"], 0u);
}

TEST_F(HsmRecoveryTest, KeyInfoCopiesGetTheNewHandlesAndUntrackedOnesDoNot) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:drop-sessions"));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  EXPECT_TRUE(info->handle.tracked());
  const CK_OBJECT_HANDLE before = info->handle;
  hsm::KeyInfo plain = *info;  // what a caller holding a bare number would have
  plain.handle = before;
  EXPECT_FALSE(plain.handle.tracked());
  hsm::HsmMacKey mac(*keys_, *info);  // a copy made before the drop, as prep's PrepKeys

  ASSERT_TRUE(mac.mac(kCmacMessage).has_value());
  auto dropped = mac.mac(kCmacMessage);
  ASSERT_FALSE(dropped.has_value());
  EXPECT_EQ(dropped.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_SESSION_HANDLE_INVALID));
  EXPECT_TRUE(hsm::rv_is_transient(*dropped.error().ck_rv())) << dropped.error().message();
  EXPECT_EQ(token_->relogins(), 1u) << "the failed call restored the login before returning";

  // SoftHSM gives the key a new number after the new login. The copies made before (the
  // cached one, the one inside HsmMacKey) carry it now, and work.
  EXPECT_NE(info->handle.get(), before) << "SoftHSM kept the handle: this test no longer shows the refresh";
  auto again = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_EQ(again->handle.get(), info->handle.get());
  auto tag = mac.mac(kCmacMessage);
  ASSERT_TRUE(tag.has_value()) << tag.error().message();
  EXPECT_EQ(*tag, kCmacTag);

  // A handle kept as a bare number is stale for good: with a module that renumbers
  // objects, only KeyInfo values from the KeyStore survive a lost login. After a new
  // login its error is retried (it might have been a session object to make again), but
  // it fails every time, and the caller's bound stops it.
  hsm::HsmMacKey stale(*keys_, plain);
  std::atomic<int> retries{0};
  auto failed = with_retry([&] { return stale.mac(kCmacMessage); }, retries);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(retries.load(), kAttempts - 1);
  EXPECT_EQ(failed.error().function(), "C_SignInit");
  EXPECT_EQ(failed.error().message(),
            "AES-CMAC under 'cmac': C_SignInit returned CKR_OBJECT_HANDLE_INVALID (the token had lost its "
            "login and has logged in again)");
  EXPECT_EQ(token_->relogins(), 1u) << "a handle error with the login intact does not log in again";
}

TEST_F(HsmRecoveryTest, TheObjectSessionIsRecreatedAndItsObjectsMustBeMadeAgain) {
  // The second C_UnwrapKey (on the token's object session) meets the drop.
  ASSERT_NO_FATAL_FAILURE(open("C_UnwrapKey:2:drop-sessions"));
  auto kek = keys_->generate(
      hsm::KeySpec{"kek", KeyType::kAes128, KeyUsage{.wrap = true, .unwrap = true}, std::nullopt});
  ASSERT_TRUE(kek.has_value()) << kek.error().message();
  const SecureBytes cek{std::span<const std::uint8_t>(kCmacKey)};
  auto wrapped = hsm::wrap_clear_value(*keys_, *kek, cek, CKM_AES_KEY_WRAP);
  ASSERT_TRUE(wrapped.has_value()) << wrapped.error().message();
  const Bytes zero(16, 0x00);

  auto first = hsm::unwrap_content_key(*keys_, *kek, *wrapped);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  auto block = hsm::encrypt_block(*token_, *first, zero);
  ASSERT_TRUE(block.has_value()) << block.error().message();
  const CK_SESSION_HANDLE old_object_session = token_->object_session().handle();

  auto dropped = hsm::unwrap_content_key(*keys_, *kek, *wrapped);
  ASSERT_FALSE(dropped.has_value());
  EXPECT_EQ(dropped.error().function(), "C_UnwrapKey");
  EXPECT_TRUE(hsm::rv_is_transient(dropped.error().ck_rv().value_or(0))) << dropped.error().message();
  EXPECT_EQ(token_->relogins(), 1u);

  // A new object session, logged in.
  {
    auto s = token_->object_session();
    EXPECT_NE(s.handle(), old_object_session);
    CK_SESSION_INFO info{};
    ASSERT_EQ(s.api()->C_GetSessionInfo(s.handle(), &info), static_cast<CK_RV>(CKR_OK));
    EXPECT_EQ(info.state, static_cast<CK_STATE>(CKS_RW_USER_FUNCTIONS));
  }
  // The session object made before died with the old sessions: using it fails, as a
  // transient error (work begun before the new login), so the caller makes it again.
  auto dead = hsm::encrypt_block(*token_, *first, zero);
  ASSERT_FALSE(dead.has_value());
  EXPECT_EQ(dead.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_USER_NOT_LOGGED_IN))
      << dead.error().message();
  EXPECT_NE(dead.error().message().find("the token had lost its login and has logged in again"), std::string::npos)
      << dead.error().message();
  auto remade = hsm::unwrap_content_key(*keys_, *kek, *wrapped);
  ASSERT_TRUE(remade.has_value()) << remade.error().message();
  auto same = hsm::encrypt_block(*token_, *remade, zero);
  ASSERT_TRUE(same.has_value()) << same.error().message();
  EXPECT_TRUE(std::ranges::equal(same->reveal(), block->reveal()));
  EXPECT_EQ(token_->relogins(), 1u);
}

// Known limit: SoftHSM reuses session numbers, so a thread that still holds a lease from
// before the drop can, for one call, reach a session opened afterwards (the token parks
// quarantine sessions on the freed numbers to make this rare, not impossible); such a call
// may fail with a persistent value. So this test asserts no wrong output and one new
// login, not that every call succeeds.
TEST_F(HsmRecoveryTest, ConcurrentCallersLogInAgainOnce) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:37:drop-sessions"));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  hsm::HsmMacKey mac(*keys_, *info);
  std::atomic<int> retries{0}, good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto tag = with_retry([&] { return mac.mac(kCmacMessage); }, retries);
        if (!tag) continue;
        EXPECT_EQ(*tag, kCmacTag) << "a wrong MAC after the drop";
        ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(good.load(), 90);
  EXPECT_GE(retries.load(), 1);
  EXPECT_EQ(token_->relogins(), 1u) << "the threads that met the drop restored the login once";
  close();
  EXPECT_EQ(counts()["C_Login"], 2u);
}

TEST_F(HsmRecoveryTest, ALockedPinOnTheNewLoginStopsWithTheOperationNamed) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:drop-sessions,C_Login:2:CKR_PIN_LOCKED"));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  hsm::HsmMacKey mac(*keys_, *info);
  ASSERT_TRUE(mac.mac(kCmacMessage).has_value());

  auto failed = mac.mac(kCmacMessage);
  ASSERT_FALSE(failed.has_value());
  const Error& e = failed.error();
  EXPECT_EQ(e.code(), ErrorCode::kAuth) << e.message();
  EXPECT_EQ(e.function(), "C_Login");
  EXPECT_EQ(e.ck_rv().value_or(0), static_cast<unsigned long>(CKR_PIN_LOCKED));
  EXPECT_FALSE(hsm::rv_is_transient(CKR_PIN_LOCKED));
  EXPECT_EQ(e.message(),
            "AES-CMAC under 'cmac': C_Sign returned CKR_SESSION_HANDLE_INVALID; then logging in again to "
            "token 'recovery' after the module lost its login: C_Login returned CKR_PIN_LOCKED");

  // The token stays failed: every later call says why, and C_Login is never tried again
  // (each try with a bad PIN would count against it).
  for (int i = 0; i < 3; ++i) {
    auto later = mac.mac(kCmacMessage);
    ASSERT_FALSE(later.has_value());
    EXPECT_EQ(later.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_PIN_LOCKED));
    EXPECT_NE(later.error().message().find("logging in again to token 'recovery'"), std::string::npos)
        << later.error().message();
  }
  auto found = keys_->find("pkcs11:object=dkep");
  ASSERT_FALSE(found.has_value());
  EXPECT_EQ(found.error().code(), ErrorCode::kAuth) << found.error().message();
  {
    auto s = token_->object_session();
    EXPECT_EQ(s.check(CKR_SESSION_HANDLE_INVALID, "C_DeriveKey", "deriving").error().ck_rv().value_or(0),
              static_cast<unsigned long>(CKR_PIN_LOCKED));
  }
  EXPECT_EQ(token_->relogins(), 0u);
  close();
  EXPECT_EQ(counts()["C_Login"], 2u);
}

TEST_F(HsmRecoveryTest, ATransientErrorOnTheNewLoginIsTriedAgainWithinTheRestoration) {
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:drop-sessions,C_Login:2:CKR_DEVICE_ERROR"));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  hsm::HsmMacKey mac(*keys_, *info);
  ASSERT_TRUE(mac.mac(kCmacMessage).has_value());
  auto dropped = mac.mac(kCmacMessage);
  ASSERT_FALSE(dropped.has_value());
  EXPECT_EQ(dropped.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_SESSION_HANDLE_INVALID));
  auto tag = mac.mac(kCmacMessage);
  ASSERT_TRUE(tag.has_value()) << tag.error().message();
  EXPECT_EQ(*tag, kCmacTag);
  EXPECT_EQ(token_->relogins(), 1u);
  close();
  EXPECT_EQ(counts()["C_Login"], 3u) << "the first login, the failed one, the one that worked";
}

TEST_F(HsmRecoveryTest, LoggingInAgainIsBounded) {
  // Every C_Sign from the 2nd on drops the sessions; the token may log in again twice.
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2+:drop-sessions", hsm::TokenOptions{4, 2}));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  hsm::HsmMacKey mac(*keys_, *info);
  ASSERT_TRUE(mac.mac(kCmacMessage).has_value());
  for (int i = 0; i < 2; ++i) {
    auto r = mac.mac(kCmacMessage);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().ck_rv().value_or(0), static_cast<unsigned long>(CKR_SESSION_HANDLE_INVALID));
  }
  EXPECT_EQ(token_->relogins(), 2u);
  auto given_up = mac.mac(kCmacMessage);
  ASSERT_FALSE(given_up.has_value());
  EXPECT_FALSE(given_up.error().ck_rv().has_value()) << "not an HSM return value: nothing retries it";
  EXPECT_EQ(given_up.error().code(), ErrorCode::kHsm);
  EXPECT_NE(given_up.error().message().find("AES-CMAC under 'cmac': C_Sign returned CKR_SESSION_HANDLE_INVALID; "
                                            "then logging in again to token 'recovery' after the module lost "
                                            "its login: it has already tried 2 times"),
            std::string::npos)
      << given_up.error().message();
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(mac.mac(kCmacMessage).has_value());
  EXPECT_EQ(token_->relogins(), 2u);
  close();
  EXPECT_EQ(counts()["C_Login"], 3u);
}

TEST_F(HsmRecoveryTest, ASessionErrorWithTheLoginIntactDoesNotLogInAgain) {
  // One session lost (device error, or a session handle gone) while the token's login
  // session is fine: that session is replaced, nothing else happens.
  ASSERT_NO_FATAL_FAILURE(open("C_Sign:2:CKR_SESSION_HANDLE_INVALID,C_Sign:3:CKR_DEVICE_ERROR"));
  ASSERT_NO_FATAL_FAILURE(create_keys());
  auto info = keys_->find("pkcs11:object=cmac");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  hsm::HsmMacKey mac(*keys_, *info);
  ASSERT_TRUE(mac.mac(kCmacMessage).has_value());
  EXPECT_FALSE(mac.mac(kCmacMessage).has_value());
  EXPECT_FALSE(mac.mac(kCmacMessage).has_value());
  auto tag = mac.mac(kCmacMessage);
  ASSERT_TRUE(tag.has_value()) << tag.error().message();
  EXPECT_EQ(*tag, kCmacTag);
  EXPECT_EQ(token_->relogins(), 0u);
  EXPECT_EQ(token_->login_generation(), 1u);
  EXPECT_EQ(token_->sessions().discarded_sessions(), 2u);
  close();
  EXPECT_EQ(counts()["C_Login"], 1u);
}

}  // namespace
}  // namespace persoflow::test
