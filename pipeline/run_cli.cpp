// `persoflow run`: the command-line side of pipeline/run_command.h.
#include <cstdio>
#include <memory>

#include "pipeline/cli_common.h"
#include "pipeline/run_command.h"
#include "pipeline/run_journal.h"

namespace persoflow::pipeline {

void add_run_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<RunOptions>();
  auto max_rejects = std::make_shared<std::string>();
  auto workers = std::make_shared<std::string>("auto");
  CLI::App* cmd = app.add_subcommand(
      "run", "Import an issuer file and prepare every card in one streamed pass: the XOF and the script bundle, "
             "with their reject and run reports, in one output directory");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  // Required unless --resume (checked in the callback: CLI11 has no conditional required).
  cmd->add_option("--profile", o->profile_path, "Product profile with a <prep> element (docs/profile.md); required");
  cmd->add_option("--in", o->input_path, "Issuer file: CMS EnvelopedData or AuthEnvelopedData, DER or BER; required");
  cmd->add_option("--registry", o->registry_path, "SE registry database (docs/registry.md); required");
  cmd->add_option("--out-dir", o->out_dir,
                  "Directory (created if missing) for NAME.xof, NAME.bundle, NAME.rejects.jsonl, NAME.report.json; "
                  "required");
  cmd->add_option("--name", o->name, "Base name of the outputs (default: the issuer file's name without extension)");
  cmd->add_option("--max-rejects", *max_rejects,
                  "Publish nothing when more records are rejected (import and prep together): a count (10) or a "
                  "share (0.5%); the reject report is still published");
  cmd->add_option("--run-id", o->run_id, "Run id recorded with the counter reservation (default: time and pid)");
  cmd->add_option("--batch-records", o->batch_records, "Records per pipeline batch (default 256)")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--zstd-level", o->zstd_level, "zstd level of XOF blocks (default 3)")->check(CLI::Range(1, 19));
  cmd->add_option("--run-dir", o->run_dir,
                  "Run directory for the journal and the spooled XOF and bundle segments (docs/formats/journal.md; "
                  "default: OUT_DIR/NAME.run)");
  cmd->add_option("--workers", *workers,
                  "Worker processes, each with its own PKCS#11 module instance: N translating the field-encrypted "
                  "values (when the profile has some) and N preparing the cards; 0 (this process) or auto (default: "
                  "for SoftHSM, which serializes calls within a process, and an issuer file of 4 MiB or more, one "
                  "per core for the field values and one per core for the cards in key-handling=\"strict\"; 0 "
                  "otherwise). Output is identical whatever the count (docs/cli.md#workers)");
  cmd->add_option("--worker-recycle-cards", o->worker_recycle_cards,
                  "Replace a worker process after it handled this many cards (0: never; default 25000)");
  cmd->add_option("--resume", o->resume_dir,
                  "Finish the killed run journaled in this run directory, with its reservation; every other option "
                  "comes from the journal");
  cmd->callback([&g, o, max_rejects, workers, &exit_code] {
    if (!o->resume_dir.empty()) {
      const RunOptions defaults;
      const bool others = !o->profile_path.empty() || !o->input_path.empty() || !o->registry_path.empty() ||
                          !o->out_dir.empty() || !o->name.empty() || !max_rejects->empty() || !o->run_id.empty() ||
                          !o->run_dir.empty() || o->batch_records != defaults.batch_records ||
                          o->zstd_level != defaults.zstd_level;
      if (others) {
        exit_code = fail(Error(ErrorCode::kInvalidArgument,
                               "--resume takes every run option from the run's journal: give it alone (with the "
                               "HSM options, --audit-log and --workers, --worker-recycle-cards, which a resume chooses anew)"));
        return;
      }
    } else {
      for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"--profile", &o->profile_path},
                                        {"--in", &o->input_path},
                                        {"--registry", &o->registry_path},
                                        {"--out-dir", &o->out_dir}}) {
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
      PF_ASSIGN_OR_RETURN(RunResult r, run_full(*o, keys));
      PF_TRY(write_report(r.report_path, r.report_json));
      // Only now is the run over: a kill before this line is finished by --resume.
      PF_TRY(finish_journaled_run(r.run_dir));
      std::printf(
          "run: %llu records, %llu cards imported into %s, %llu prepared into %s (%llu rejected: %llu import, %llu "
          "prep), reservation %lld, %.2f s, %.0f cards/s\n",
          static_cast<unsigned long long>(r.records), static_cast<unsigned long long>(r.imported),
          r.xof_path.c_str(), static_cast<unsigned long long>(r.prepared), r.bundle_path.c_str(),
          static_cast<unsigned long long>(r.rejects), static_cast<unsigned long long>(r.import_rejects),
          static_cast<unsigned long long>(r.prep_rejects), static_cast<long long>(r.reservation_id), r.seconds,
          r.seconds > 0 ? static_cast<double>(r.prepared) / r.seconds : 0.0);
      return ok_status();
    });
  });
}

}  // namespace persoflow::pipeline
