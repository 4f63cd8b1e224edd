// `persoflow import`, `gen-issuer` and `inspect`: the command-line side of the import
// (import_command.h, gen_issuer_command.h, inspect_command.h).
#include <cstdio>
#include <memory>
#include <optional>

#include "formats/atomic_file.h"
#include "pipeline/run_journal.h"
#include "pipeline/cli_common.h"
#include "pipeline/gen_issuer_command.h"
#include "pipeline/import_command.h"
#include "pipeline/import_workers.h"
#include "pipeline/inspect_command.h"
#include "pipeline/bundle_inspect.h"

namespace persoflow::pipeline {
namespace {

void add_import(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<ImportOptions>();
  auto max_rejects = std::make_shared<std::string>();
  auto workers = std::make_shared<std::string>("auto");
  CLI::App* cmd = app.add_subcommand(
      "import", "Import an issuer file (CMS, decrypted in the HSM) into an XOF intermediate file");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  // Required unless --resume (checked in the callback: CLI11 has no conditional required).
  cmd->add_option("--profile", o->profile_path, "Product profile (XML, docs/profile.md); required");
  cmd->add_option("--in", o->input_path, "Issuer file: CMS EnvelopedData or AuthEnvelopedData, DER or BER; required");
  cmd->add_option("--out", o->output_path,
                  "XOF file to write (published atomically when the run succeeds); required");
  cmd->add_option("--rejects", o->rejects_path, "JSONL reject report to write (docs/cli.md#rejects)");
  cmd->add_option("--report", o->report_path, "JSON run report to write");
  cmd->add_option("--max-rejects", *max_rejects,
                  "Fail without publishing the XOF when more records are rejected: a count (10) or a share (0.5%); the reject report is still published");
  auto* batch = cmd->add_option("--batch-records", o->batch_records, "Records per pipeline batch (default 256)")
                    ->check(CLI::Range(1, 65536));
  auto* level =
      cmd->add_option("--zstd-level", o->zstd_level, "zstd level of XOF blocks (default 3)")->check(CLI::Range(1, 19));
  cmd->add_option("--run-dir", o->run_dir,
                  "Run directory for the journal and the spooled XOF segments (docs/formats/journal.md; default: "
                  "OUT.run)");
  cmd->add_option("--workers", *workers,
                  "Worker processes for the field-encrypted values (each with its own PKCS#11 module instance): N, "
                  "0 (this process) or auto (default: one per core for SoftHSM, which serializes calls within a "
                  "process, when the profile has field-encrypted attributes and the issuer file is 4 MiB or more; "
                  "0 otherwise). Output is identical whatever the count (docs/cli.md#workers)");
  cmd->add_option("--worker-recycle-cards", o->worker_recycle_cards,
                  "Replace a worker process after it translated the values of this many cards (0: never; default "
                  "25000)");
  cmd->add_option("--resume", o->resume_dir,
                  "Finish the killed import journaled in this run directory; every other option comes from the "
                  "journal");
  cmd->callback([&g, o, max_rejects, workers, batch, level, &exit_code] {
    if (!o->resume_dir.empty()) {
      const bool others = !o->profile_path.empty() || !o->input_path.empty() || !o->output_path.empty() ||
                          !o->rejects_path.empty() || !o->report_path.empty() || !max_rejects->empty() ||
                          batch->count() > 0 || level->count() > 0 || !o->run_dir.empty();
      if (others) {
        exit_code = fail(Error(ErrorCode::kInvalidArgument,
                               "--resume takes every import option from the run's journal: give it alone (with the "
                               "HSM options, --audit-log and --workers, --worker-recycle-cards, which a resume chooses anew)"));
        return;
      }
    } else {
      for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"--profile", &o->profile_path},
                                        {"--in", &o->input_path},
                                        {"--out", &o->output_path}}) {
        if (value->empty()) {
          exit_code = fail(Error(ErrorCode::kInvalidArgument, std::string(name) + " is required (or --resume DIR)"));
          return;
        }
      }
    }
    if (!max_rejects->empty()) {
      auto limit = RejectLimit::parse(*max_rejects);
      if (!limit) {
        exit_code = fail(limit.error());
        return;
      }
      o->max_rejects = *limit;
    }
    auto common = worker_command_settings(g, *workers);
    if (!common) {
      exit_code = fail(common.error());
      return;
    }
    o->workers = common->workers;
    o->hsm = std::move(common->hsm);
    o->audit_log = std::move(common->audit_log);
    exit_code = with_hsm(g, [&](hsm::KeyStore& keys) -> Status {
      PF_ASSIGN_OR_RETURN(ImportResult r, run_import(*o, keys));
      PF_TRY(write_report(r.report_path, r.report_json));
      // Only now is the run over: a kill before this line is finished by --resume.
      PF_TRY(finish_journaled_run(r.run_dir));
      std::printf("imported %llu cards (%llu records, %llu rejected) into %s: %u segments, %.2f s, %.0f cards/s\n",
                  static_cast<unsigned long long>(r.cards), static_cast<unsigned long long>(r.records),
                  static_cast<unsigned long long>(r.rejects), r.output_path.c_str(), r.segments, r.seconds,
                  r.seconds > 0 ? static_cast<double>(r.cards) / r.seconds : 0.0);
      return ok_status();
    });
  });

  // The worker side of import --workers (pipeline/import_workers.h): started by import
  // itself, with the parent's HSM options, talking over the socket on --fd. Hidden.
  auto fd = std::make_shared<int>(-1);
  CLI::App* worker = app.add_subcommand(
      "import-worker", "Internal: one worker process of import --workers, started by import itself (not for operators)");
  worker->group("");
  worker->add_option("--fd", *fd, "The socket to the parent import")->required();
  worker->callback([&g, fd, &exit_code] {
    auto settings = settings_from(g);
    if (!settings) {
      exit_code = fail(settings.error());
      return;
    }
    exit_code = run_import_worker(*settings, *fd);
  });
}

void add_gen_issuer(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<GenIssuerOptions>();
  auto seed = std::make_shared<std::uint64_t>(0);
  auto tk_uri = std::make_shared<std::string>();
  auto tk_hex = std::make_shared<std::string>();
  auto plain = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "gen-issuer", "Generate a synthetic issuer file (valid-looking test cards) encrypted as CMS, for demos and "
                    "tests");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  cmd->add_option("--profile", o->profile_path, "Product profile (XML)")->required();
  cmd->add_option("--cards", o->cards, "Number of cards")->required()->check(CLI::Range(0ULL, 100000000ULL));
  cmd->add_option("--out", o->output_path, "Issuer file to write (DER)")->required();
  cmd->add_option("--kek-id", o->kek_id_hex, "KEKRecipientInfo key identifier, hex (the profile maps it to a TK)")
      ->required();
  auto* uri = cmd->add_option("--tk", *tk_uri, "Transport key in the HSM (PKCS#11 URI; needs the wrap usage)");
  auto* hex = cmd->add_option("--tk-hex", *tk_hex, "Transport key as clear hex (lab use only)");
  uri->excludes(hex);
  cmd->add_option("--content-cipher", o->content_cipher, "aes-128-cbc | aes-256-cbc | aes-128-gcm | aes-256-gcm")
      ->default_str("aes-256-cbc");
  cmd->add_option("--plain", *plain, "Also write the clear records to this file (test fixtures only)");
  auto* seed_opt = cmd->add_option("--seed", *seed,
                                   "Cards from this seed (default 1), and the content key and IV too, "
                                   "for a byte-identical file (test fixtures)");
  cmd->add_option("--bin", o->bin, "BIN (leading PAN digits) of the generated cards")->default_str("476173");
  auto registry_csv = std::make_shared<std::string>();
  cmd->add_option("--registry-csv", *registry_csv,
                  "Also write an SE registry CSV with the SE of every generated card (profiles with <prep>)");
  cmd->callback([&g, o, seed, seed_opt, tk_uri, tk_hex, plain, registry_csv, &exit_code] {
    if (!registry_csv->empty()) o->registry_csv_path = *registry_csv;
    if (!tk_uri->empty()) o->tk_uri = *tk_uri;
    if (!tk_hex->empty()) o->tk_hex = *tk_hex;
    if (!plain->empty()) o->plain_path = *plain;
    if (seed_opt->count() > 0) o->seed = *seed;
    auto report = [&](const GenIssuerResult& r) {
      std::printf("generated %llu cards into %s (%llu bytes of records, %llu bytes of envelope, %s)\n",
                  static_cast<unsigned long long>(r.cards), o->output_path.c_str(),
                  static_cast<unsigned long long>(r.plaintext_bytes), static_cast<unsigned long long>(r.envelope_bytes),
                  o->content_cipher.c_str());
    };
    auto needs = gen_issuer_needs_hsm(*o);
    if (!needs) {
      exit_code = fail(needs.error());
      return;
    }
    if (!*needs) {
      auto r = run_gen_issuer(*o, nullptr);
      if (!r) {
        exit_code = fail(r.error());
        return;
      }
      report(*r);
      exit_code = kExitOk;
      return;
    }
    exit_code = with_hsm(g, [&](hsm::KeyStore& keys) -> Status {
      PF_ASSIGN_OR_RETURN(GenIssuerResult r, run_gen_issuer(*o, &keys));
      report(r);
      return ok_status();
    });
  });
}

void add_inspect(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show an XOF file's or a script bundle's header and counts after checking its footer tag (HSM) "
                 "and every segment's hash; with --card, one card (XOF: attributes; bundle: its script)");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  cmd->add_option("xof", o->path, "XOF file or script bundle")->required();
  auto format = std::make_shared<std::string>();
  cmd->add_option("--format", *format, "Script bundles, with --card: apdu (hex APDUs, the default) or json");
  cmd->add_flag("--json", o->json, "Print as JSON");
  cmd->add_option("--card", o->card_id, "Show one card's attributes (hidden, or masked per --profile)");
  cmd->add_option("--profile", o->profile_path, "The XOF's profile: show --card values per its reveal rules");
  cmd->add_flag("--reveal", o->reveal,
                "With --card: decrypt and show every value in clear through the HSM (operator use; audited)");
  cmd->callback([&g, o, format, &exit_code] {
    auto bundle = is_bundle_file(o->path);
    if (bundle && *bundle) {
      if (!o->profile_path.empty() || o->reveal) {
        exit_code = fail(Error(ErrorCode::kInvalidArgument,
                               "--profile and --reveal apply to XOF files; a script bundle is shown as stored"));
        return;
      }
      const BundleInspectOptions bo{o->path, o->json, o->card_id, *format};
      if (Status s = check_bundle_inspect_options(bo); !s) {
        exit_code = fail(s.error());
        return;
      }
      exit_code = with_hsm(g, [&](hsm::KeyStore& keys) { return run_bundle_inspect(bo, keys, std::cout); });
      return;
    }
    if (!format->empty()) {
      exit_code = fail(Error(ErrorCode::kInvalidArgument, "--format applies to script bundles"));
      return;
    }
    if (!o->profile_path.empty() && o->card_id.empty()) {
      exit_code = fail(Error(ErrorCode::kInvalidArgument, "--profile is used with --card ID"));
      return;
    }
    if (o->reveal && o->card_id.empty()) {
      exit_code = fail(Error(ErrorCode::kInvalidArgument, "--reveal needs --card ID"));
      return;
    }
    // A reveal is recorded in the audit log before any value is shown; without one, the
    // HSM is not even opened.
    std::optional<formats::AuditLog> audit;
    if (o->reveal) {
      auto path = audit_log_from(g);
      if (!path) {
        exit_code = fail(path.error());
        return;
      }
      if (!*path) {
        exit_code = fail(reveal_needs_audit_log());
        return;
      }
      audit.emplace(**path);
    }
    exit_code = with_hsm(g, [&](hsm::KeyStore& keys) {
      return run_inspect(*o, keys, std::cout, audit ? &*audit : nullptr);
    });
  });
}

}  // namespace

void add_import_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  add_import(app, g, exit_code);
  add_gen_issuer(app, g, exit_code);
  add_inspect(app, g, exit_code);
}

}  // namespace persoflow::pipeline
