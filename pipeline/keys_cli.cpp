// `persoflow keys ...`: the command-line side of the key ceremony (keys_command.h).
#include <memory>

#include "pipeline/cli_common.h"
#include "pipeline/keys_command.h"

namespace persoflow::pipeline {

void add_keys_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  CLI::App* keys = app.add_subcommand("keys", "Key ceremony: generate, import and list keys in the HSM");
  keys->require_subcommand(1);
  keys->fallthrough();
  keys->footer(kHsmFooter);

  auto gen = std::make_shared<KeysGenerateOptions>();
  CLI::App* generate = keys->add_subcommand(
      "generate", "Generate a key inside the HSM (sensitive, non-extractable token object); print its KCV");
  generate->fallthrough();
  generate->footer(kHsmFooter);
  generate->add_option("--label", gen->label, "Key label (CKA_LABEL); must be new on the token")->required();
  generate->add_option("--type", gen->type, "aes128 | aes192 | aes256 | des2 | des3")->required();
  generate->add_option("--usage", gen->usage,
                       "Comma-separated usages: encrypt,decrypt,sign,verify,wrap,unwrap,derive")
      ->default_str(std::string(kDefaultUsage));
  generate->add_option("--id", gen->id_hex, "Key id (CKA_ID) in hex (default: 8 random bytes)");
  generate->add_flag("--json", gen->json, "Print the result as JSON");
  generate->callback([&g, gen, &exit_code] {
    if (auto spec = make_key_spec(gen->label, gen->type, gen->usage, gen->id_hex); !spec) {
      exit_code = fail(spec.error());
      return;
    }
    exit_code = with_hsm(g, [&](hsm::KeyStore& ks) { return keys_generate(ks, *gen, std::cout); });
  });

  auto imp = std::make_shared<KeysImportOptions>();
  CLI::App* import = keys->add_subcommand(
      "import",
      "Import a key from 2 or 3 clear components (files, or typed without echo), each checked by its KCV");
  import->fallthrough();
  import->footer(kHsmFooter);
  import->add_option("--label", imp->label, "Key label (CKA_LABEL); must be new on the token")->required();
  import->add_option("--type", imp->type, "aes128 | aes192 | aes256 | des2 | des3")->required();
  import->add_option("--usage", imp->usage,
                     "Comma-separated usages: encrypt,decrypt,sign,verify,wrap,unwrap,derive")
      ->default_str(std::string(kDefaultUsage));
  import->add_option("--id", imp->id_hex, "Key id (CKA_ID) in hex (default: 8 random bytes)");
  auto* files = import->add_option("--component-file", imp->component_files,
                                   "A component file (hex, then optionally its KCV); give 2 or 3")
                    ->take_all();
  auto interactive_flag = std::make_shared<bool>(false);
  CLI::Option* interactive = import->add_flag("--interactive", *interactive_flag,
                                              "Prompt for each component (no echo) and its KCV");
  import->add_option("--components", imp->components, "Number of components in interactive mode (2 or 3)")
      ->check(CLI::Range(2, 3));
  files->excludes(interactive);
  import->add_flag("--json", imp->json, "Print the result as JSON");
  import->callback([&g, imp, interactive_flag, &exit_code] {
    if (auto spec = make_key_spec(imp->label, imp->type, imp->usage, imp->id_hex); !spec) {
      exit_code = fail(spec.error());
      return;
    }
    if (imp->component_files.empty() && !*interactive_flag) {
      exit_code = fail(Error(ErrorCode::kInvalidArgument,
                             "give 2 or 3 --component-file options, or --interactive"));
      return;
    }
    TerminalPrompter prompter;
    exit_code = with_hsm(g, [&](hsm::KeyStore& ks) {
      return keys_import(ks, *imp, prompter, std::cout, std::cerr);
    });
  });

  auto show_uri = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  CLI::App* show = keys->add_subcommand("show", "Show one key named by its PKCS#11 URI, with its KCV");
  show->fallthrough();
  show->footer(kHsmFooter);
  show->add_option("--uri", *show_uri, "Key URI (RFC 7512), e.g. pkcs11:token=perso;object=tk-acme-01")
      ->required();
  show->add_flag("--json", *show_json, "Print the key as JSON");
  show->callback([&g, show_uri, show_json, &exit_code] {
    exit_code = with_hsm(g, [&](hsm::KeyStore& ks) { return keys_show(ks, *show_uri, *show_json, std::cout); });
  });

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list = keys->add_subcommand(
      "list", "List the secret keys on the token: label, id, type, bits, KCV, sensitive/extractable, usages");
  list->fallthrough();
  list->footer(kHsmFooter);
  list->add_flag("--json", *list_json, "Print the list as JSON");
  list->callback([&g, list_json, &exit_code] {
    exit_code = with_hsm(g, [&](hsm::KeyStore& ks) { return keys_list(ks, *list_json, std::cout); });
  });
}

}  // namespace persoflow::pipeline
