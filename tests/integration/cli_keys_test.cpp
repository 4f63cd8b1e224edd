// The key ceremony through the real `persoflow` binary against a fresh SoftHSM token:
// --help of every command, generate/import/list/show, KCV checks against values
// computed independently with OpenSSL, and the clear errors and exit codes of
// docs/cli.md.
#include <gtest/gtest.h>
#include <pty.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/reference_crypto.h"
#include "tests/support/run_process.h"
#include "tests/support/softhsm_token.h"

namespace persoflow::test {
namespace {

class CliKeysTest : public ::testing::Test {
 protected:
  ProcessResult run(std::vector<std::string> args, const std::string& stdin_data = "",
                    std::map<std::string, std::string> env_overrides = {}) {
    args.insert(args.begin(), PERSOFLOW_CLI_PATH);
    auto env = token_.env();
    for (auto& [k, v] : env_overrides) env[k] = v;
    return run_process(args, env, stdin_data);
  }

  // A component file: hex value and (optionally) a KCV line.
  std::string component_file(const std::string& name, const ByteVec& value, const std::string& kcv_line) {
    const auto path = token_.dir() / name;
    write_file(path, "# test component\n" + hex_upper(value) + "\n" + kcv_line);
    return path.string();
  }

  SoftHsmToken token_;
};

TEST_F(CliKeysTest, HelpExistsForEveryCommand) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> must_mention;
  };
  const std::vector<Case> cases = {
      {{"--help"}, {"Usage: persoflow", "--module", "--token", "--pin-env", "--pin-file", "--config", "keys"}},
      {{"keys", "--help"}, {"generate", "import", "list", "show"}},
      {{"keys", "generate", "--help"}, {"--label", "--type", "--usage", "--id", "--json", "aes128", "des3"}},
      {{"keys", "import", "--help"}, {"--label", "--type", "--component-file", "--interactive", "--components"}},
      {{"keys", "list", "--help"}, {"--json"}},
      {{"keys", "show", "--help"}, {"--uri", "--json"}},
  };
  for (const auto& c : cases) {
    auto r = run(c.args);
    EXPECT_EQ(r.exit_code, 0) << c.args.front();
    for (const auto& word : c.must_mention) {
      EXPECT_NE(r.out.find(word), std::string::npos) << "help of '" << c.args[0] << "...' lacks " << word;
    }
  }
  // No option takes a PIN value on the command line.
  auto r = run({"--pin", "1234", "keys", "list"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(CliKeysTest, GenerateThenListAndShowAsJson) {
  auto gen = run({"keys", "generate", "--label", "tk-acme-01", "--type", "aes256", "--usage", "unwrap", "--json"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  auto g = nlohmann::json::parse(gen.out);
  EXPECT_EQ(g["label"], "tk-acme-01");
  EXPECT_EQ(g["type"], "aes256");
  EXPECT_EQ(g["bits"], 256);
  EXPECT_EQ(g["usage"], nlohmann::json::array({"unwrap"}));
  EXPECT_EQ(g["sensitive"], true);
  EXPECT_EQ(g["extractable"], false);
  ASSERT_TRUE(g["kcv"].is_string());
  EXPECT_EQ(g["kcv"].get<std::string>().size(), 6u);

  auto list = run({"keys", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto l = nlohmann::json::parse(list.out);
  ASSERT_EQ(l["keys"].size(), 1u);
  EXPECT_EQ(l["keys"][0]["kcv"], g["kcv"]);
  EXPECT_EQ(l["keys"][0]["uri"], g["uri"]);

  auto show = run({"keys", "show", "--uri", g["uri"].get<std::string>()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find(g["kcv"].get<std::string>()), std::string::npos);

  auto text = run({"keys", "list"});
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("tk-acme-01"), std::string::npos);
  EXPECT_NE(text.out.find("1 key on token"), std::string::npos);
}

TEST_F(CliKeysTest, ImportFromTwoComponentFilesGivesTheVectorKcv) {
  // GPP test key 404142...4F: AES KCV 504A77 (tests/vectors/kcv.vec).
  const ByteVec key = hex_bytes("404142434445464748494A4B4C4D4E4F");
  const ByteVec c1 = hex_bytes("0F1E2D3C4B5A69788796A5B4C3D2E1F0");
  const ByteVec c2 = xor_bytes(key, c1);
  const auto f1 = component_file("c1.txt", c1, "KCV: " + hex_upper(reference_kcv("aes128", c1)) + "\n");
  const auto f2 = component_file("c2.txt", c2, hex_upper(reference_kcv("aes128", c2)) + "\n");
  auto r = run({"keys", "import", "--label", "kmc-1", "--type", "aes128", "--usage", "derive",
                "--component-file", f1, "--component-file", f2, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kcv"], "504A77");
  EXPECT_EQ(j["usage"], nlohmann::json::array({"derive"}));
  EXPECT_EQ(j["component_kcvs"][0], hex_upper(reference_kcv("aes128", c1)));
  // Neither the components nor the key appear in any output.
  for (const auto& v : {c1, c2, key}) {
    EXPECT_EQ(r.out.find(hex_upper(v)), std::string::npos);
    EXPECT_EQ(r.err.find(hex_upper(v)), std::string::npos);
  }
}

TEST_F(CliKeysTest, ImportThreeDesComponents) {
  const ByteVec key = hex_bytes("11223344006677881122334455007788");  // KCV 97DCB0 (PBOC DGI 9000)
  const ByteVec c1 = hex_bytes("0123456789ABCDEF0123456789ABCDEF");
  const ByteVec c2 = hex_bytes("FEDCBA9876543210FEDCBA9876543210");
  const ByteVec c3 = xor_bytes(xor_bytes(key, c1), c2);
  auto r = run({"keys", "import", "--label", "imk-ac", "--type", "des2", "--usage", "derive",
                "--component-file", component_file("a", c1, ""), "--component-file",
                component_file("b", c2, ""), "--component-file", component_file("c", c3, "")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("KCV:         97DCB0"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("no KCV given to check against"), std::string::npos);
}

TEST_F(CliKeysTest, ComponentWithAWrongKcvIsRefusedAndNothingIsCreated) {
  const ByteVec c1 = hex_bytes("00112233445566778899AABBCCDDEEFF");
  const ByteVec c2 = hex_bytes("FFEEDDCCBBAA99887766554433221100");
  const auto f2 = component_file("bad.txt", c2, "KCV: 000000\n");
  auto r = run({"keys", "import", "--label", "k", "--type", "aes128", "--component-file",
                component_file("good.txt", c1, ""), "--component-file", f2});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find(f2), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("KCV mismatch"), std::string::npos);
  EXPECT_EQ(r.err.find(hex_upper(c2)), std::string::npos);
  auto list = run({"keys", "list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(list.out)["keys"].size(), 0u);
}

TEST_F(CliKeysTest, ImportRefusesBadComponentSets) {
  const ByteVec c = hex_bytes("00112233445566778899AABBCCDDEEFF");
  const auto f = component_file("c.txt", c, "");
  auto one = run({"keys", "import", "--label", "k", "--type", "aes128", "--component-file", f});
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_NE(one.err.find("2 or 3 components"), std::string::npos);

  auto same = run({"keys", "import", "--label", "k", "--type", "aes128", "--component-file", f,
                   "--component-file", f});
  EXPECT_EQ(same.exit_code, 2);
  EXPECT_NE(same.err.find("same component"), std::string::npos);

  auto wrong_length = run({"keys", "import", "--label", "k", "--type", "aes256", "--component-file", f,
                           "--component-file", component_file("d.txt", ByteVec(16, 0x5A), "")});
  EXPECT_EQ(wrong_length.exit_code, 2);
  EXPECT_NE(wrong_length.err.find("32 bytes"), std::string::npos);

  auto missing = run({"keys", "import", "--label", "k", "--type", "aes128", "--component-file", f,
                      "--component-file", "/nonexistent/c2"});
  EXPECT_EQ(missing.exit_code, 4);
  EXPECT_NE(missing.err.find("/nonexistent/c2"), std::string::npos);

  auto garbage = run({"keys", "import", "--label", "k", "--type", "aes128", "--component-file", f,
                      "--component-file", component_file("g.txt", {}, "")});
  EXPECT_EQ(garbage.exit_code, 3);  // a file with no component line is malformed input
  EXPECT_NE(garbage.err.find("no key component"), std::string::npos);

  ASSERT_EQ(run({"keys", "generate", "--label", "taken", "--type", "aes128"}).exit_code, 0);
  auto dup = run({"keys", "import", "--label", "taken", "--type", "aes128", "--component-file", f,
                  "--component-file", component_file("e.txt", ByteVec(16, 0x5A), "")});
  EXPECT_EQ(dup.exit_code, 8);
  EXPECT_NE(dup.err.find("'taken'"), std::string::npos);
}

TEST_F(CliKeysTest, InteractiveImportFromAScriptedStdin) {
  const ByteVec key = hex_bytes("404142434445464748494A4B4C4D4E4F");
  const ByteVec c1 = hex_bytes("A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5");
  const ByteVec c2 = xor_bytes(key, c1);
  // Component 1 with its KCV; component 2 without, confirmed by the custodian.
  const std::string input = hex_upper(c1) + "\n" + hex_upper(reference_kcv("aes128", c1)) + "\n" +
                            hex_upper(c2) + "\n\ny\n";
  auto r = run({"keys", "import", "--label", "tk", "--type", "aes128", "--interactive"}, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("KCV:         504A77"), std::string::npos);
  EXPECT_NE(r.err.find("Component 2 of 2 KCV computed by the HSM: " + hex_upper(reference_kcv("aes128", c2))),
            std::string::npos)
      << r.err;

  // A custodian who does not confirm stops the ceremony.
  const std::string refuse = hex_upper(c1) + "\n\nn\n";
  auto no = run({"keys", "import", "--label", "tk2", "--type", "aes128", "--interactive"}, refuse);
  EXPECT_EQ(no.exit_code, 7);
  EXPECT_NE(no.err.find("not confirmed"), std::string::npos);
}

TEST_F(CliKeysTest, InteractiveImportDoesNotEchoComponentsOnATerminal) {
  const ByteVec c1 = hex_bytes("00112233445566778899AABBCCDDEEFF");
  const ByteVec c2 = hex_bytes("0102030405060708090A0B0C0D0E0F10");
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& [k, v] : token_.env()) setenv(k.c_str(), v.c_str(), 1);
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "keys", "import", "--label", "tty-key", "--type",
          "aes128", "--interactive", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string screen;
  auto read_until = [&](const std::string& marker) {
    char buf[4096];
    while (screen.find(marker) == std::string::npos) {
      const ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) return false;
      screen.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  };
  auto type = [&](const std::string& s) { ASSERT_EQ(write(master, s.data(), s.size()), static_cast<ssize_t>(s.size())); };
  ASSERT_TRUE(read_until("Component 1 of 2"));
  type(hex_upper(c1) + "\n");
  ASSERT_TRUE(read_until("KCV of component 1"));
  type(hex_upper(reference_kcv("aes128", c1)) + "\n");
  ASSERT_TRUE(read_until("Component 2 of 2"));
  type(hex_upper(c2) + "\n");
  ASSERT_TRUE(read_until("KCV of component 2"));
  type(hex_upper(reference_kcv("aes128", c2)) + "\n");
  read_until("\nxx-end-of-output");  // drain until the child closes the terminal
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << screen;
  EXPECT_NE(screen.find("imported aes128 key 'tty-key'"), std::string::npos) << screen;
  EXPECT_EQ(screen.find(hex_upper(c1)), std::string::npos) << "component 1 was echoed";
  EXPECT_EQ(screen.find(hex_upper(c2)), std::string::npos) << "component 2 was echoed";
  // The KCV line is not secret and is echoed.
  EXPECT_NE(screen.find(hex_upper(reference_kcv("aes128", c1))), std::string::npos);
}

TEST_F(CliKeysTest, CtrlCAtAHiddenPromptRestoresTheTerminalEcho) {
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& [k, v] : token_.env()) setenv(k.c_str(), v.c_str(), 1);
    execl(PERSOFLOW_CLI_PATH, PERSOFLOW_CLI_PATH, "keys", "import", "--label", "k", "--type",
          "aes128", "--interactive", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string screen;
  char buf[1024];
  while (screen.find("Component 1 of 2") == std::string::npos) {
    const ssize_t n = read(master, buf, sizeof buf);
    ASSERT_GT(n, 0) << screen;
    screen.append(buf, static_cast<std::size_t>(n));
  }
  termios during{};
  ASSERT_EQ(tcgetattr(master, &during), 0);
  EXPECT_EQ(during.c_lflag & ECHO, 0u) << "echo should be off at the hidden prompt";
  ASSERT_EQ(write(master, "\x03", 1), 1);  // Ctrl-C
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
  termios after{};
  ASSERT_EQ(tcgetattr(master, &after), 0);
  EXPECT_NE(after.c_lflag & ECHO, 0u) << "echo was left off after Ctrl-C";
  close(master);
}

TEST_F(CliKeysTest, ClearErrorsAndExitCodes) {
  auto wrong_pin = run({"keys", "list"}, "", {{"PERSOFLOW_PIN", "9999"}});
  EXPECT_EQ(wrong_pin.exit_code, 5);
  EXPECT_NE(wrong_pin.err.find("C_Login returned CKR_PIN_INCORRECT"), std::string::npos) << wrong_pin.err;
  EXPECT_EQ(wrong_pin.err.find("9999"), std::string::npos);

  auto no_module = run({"--module", "/opt/missing/libp11.so", "keys", "list"});
  EXPECT_EQ(no_module.exit_code, 4);
  EXPECT_NE(no_module.err.find("/opt/missing/libp11.so"), std::string::npos);

  auto no_token = run({"keys", "list", "--token", "absent-token"});
  EXPECT_EQ(no_token.exit_code, 4);
  EXPECT_NE(no_token.err.find("token 'absent-token' not found"), std::string::npos) << no_token.err;

  auto no_key = run({"keys", "show", "--uri", "pkcs11:object=missing-key"});
  EXPECT_EQ(no_key.exit_code, 4);
  EXPECT_NE(no_key.err.find("pkcs11:object=missing-key"), std::string::npos);

  auto no_pin = run({"keys", "list"}, "", {{"PERSOFLOW_PIN", ""}});
  EXPECT_EQ(no_pin.exit_code, 2);
  EXPECT_NE(no_pin.err.find("PERSOFLOW_PIN"), std::string::npos);

  auto bad_type = run({"keys", "generate", "--label", "x", "--type", "rsa2048"});
  EXPECT_EQ(bad_type.exit_code, 2);
  EXPECT_NE(bad_type.err.find("rsa2048"), std::string::npos);

  auto bad_usage = run({"keys", "generate", "--label", "x", "--type", "aes128", "--usage", "encrypt,fly"});
  EXPECT_EQ(bad_usage.exit_code, 2);
  EXPECT_NE(bad_usage.err.find("'fly'"), std::string::npos);

  auto no_command = run({});
  EXPECT_EQ(no_command.exit_code, 2);
}

TEST_F(CliKeysTest, ArgumentsAreCheckedBeforeLoggingIn) {
  // A wrong PIN and a wrong type: the usage error comes first, and the HSM is not touched.
  auto r = run({"keys", "generate", "--label", "x", "--type", "aes99"}, "", {{"PERSOFLOW_PIN", "9999"}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("aes99"), std::string::npos);
}

TEST_F(CliKeysTest, AnExplicitIdMustBeNew) {
  ASSERT_EQ(run({"keys", "generate", "--label", "one", "--type", "aes128", "--id", "0102"}).exit_code, 0);
  auto dup = run({"keys", "generate", "--label", "two", "--type", "aes128", "--id", "0102"});
  EXPECT_EQ(dup.exit_code, 8);
  EXPECT_NE(dup.err.find("key id 0102 is already used"), std::string::npos) << dup.err;
}

TEST_F(CliKeysTest, JsonSurvivesALabelThatIsNotUtf8) {
  auto gen = run({"keys", "generate", "--label", "bad\xff-label", "--type", "aes128", "--json"});
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  auto list = run({"keys", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto j = nlohmann::json::parse(list.out);
  ASSERT_EQ(j["keys"].size(), 1u);
  EXPECT_EQ(j["keys"][0]["label"].get<std::string>().rfind("bad", 0), 0u);
}

TEST_F(CliKeysTest, PinFromFileAndTokenFromConfigFile) {
  const auto pin_file = token_.dir() / "pin";
  write_file(pin_file, token_.pin() + "\n");
  chmod(pin_file.c_str(), 0600);
  const auto conf = token_.dir() / "persoflow.conf";
  write_file(conf, "[hsm]\ntoken = " + token_.label() + "\npin_file = " + pin_file.string() + "\n");
  std::map<std::string, std::string> env = {{"PERSOFLOW_TOKEN", ""}, {"PERSOFLOW_PIN", ""}};
  auto ok = run({"--config", conf.string(), "keys", "list"}, "", env);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;

  chmod(pin_file.c_str(), 0644);
  auto open_pin = run({"--config", conf.string(), "keys", "list"}, "", env);
  EXPECT_EQ(open_pin.exit_code, 2);
  EXPECT_NE(open_pin.err.find("chmod 600"), std::string::npos);

  write_file(conf, "[hsm]\ntoken = x\ncolour = blue\n");
  auto bad_conf = run({"--config", conf.string(), "keys", "list"}, "", env);
  EXPECT_EQ(bad_conf.exit_code, 3);
  EXPECT_NE(bad_conf.err.find(conf.string() + ":3"), std::string::npos) << bad_conf.err;
}

}  // namespace
}  // namespace persoflow::test
