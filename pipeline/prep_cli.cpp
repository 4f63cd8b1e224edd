// `persoflow prep`: the command-line side of pipeline/prep_command.h.
#include <cstdio>
#include <memory>
#include <utility>

#include "pipeline/run_journal.h"
#include "pipeline/cli_common.h"
#include "pipeline/prep_command.h"
#include "pipeline/prep_workers.h"

namespace persoflow::pipeline {

void add_prep_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<PrepOptions>();
  auto cards = std::make_shared<std::string>();
  auto max_rejects = std::make_shared<std::string>();
  auto workers = std::make_shared<std::string>("auto");
  CLI::App* cmd = app.add_subcommand(
      "prep", "Prepare per-card secure-channel scripts from an XOF into a script bundle (SE registry, counter "
              "reservation, keys diversified in the HSM)");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  // Required unless --resume (checked in the callback: CLI11 has no conditional required).
  cmd->add_option("--profile", o->profile_path, "Product profile with a <prep> element (docs/profile.md); required");
  cmd->add_option("--xof", o->xof_path, "XOF intermediate file written by persoflow import; required");
  cmd->add_option("--registry", o->registry_path, "SE registry database (docs/registry.md); required");
  cmd->add_option("--out", o->output_path,
                  "Script bundle to write (published atomically when the run succeeds); required");
  cmd->add_option("--cards", *cards,
                  "Cards to prepare: ID,ID,... | @FILE (one card id per line) | FIRST-LAST (1-based positions in "
                  "the XOF); default: all");
  cmd->add_option("--rejects", o->rejects_path, "JSONL reject report to write (docs/cli.md#rejects)");
  cmd->add_option("--report", o->report_path, "JSON run report to write");
  cmd->add_option("--max-rejects", *max_rejects,
                  "Fail without publishing the bundle when more cards are rejected: a count (10) or a share (0.5%)");
  cmd->add_option("--run-id", o->run_id, "Run id recorded with the counter reservation (default: time and pid)");
  cmd->add_option("--run-dir", o->run_dir,
                  "Run directory for the journal and the spooled bundle segments (docs/formats/journal.md; default: "
                  "OUT.run)");
  CLI::Option* reserve_batch = cmd->add_option("--reserve-batch", o->reserve_batch,
                  "Selected cards per reservation batch: each batch's counters are reserved in one committed "
                  "transaction before its scripts exist, and memory holds about three batches' plans whatever the card "
                  "count (default 16384; the batch ends with the XOF segment that reaches it; the first batches ramp up "
                  "from 1024 cards, doubling)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{16777216}));
  cmd->add_option("--resume", o->resume_dir,
                  "Finish the killed run journaled in this run directory, with its reservation; every other option "
                  "comes from the journal");
  cmd->add_option("--workers", *workers,
                  "Worker processes for the HSM work, each with its own PKCS#11 module instance: N, 0 (threads in "
                  "this process) or auto (default: one per core for SoftHSM in key-handling strict, as SoftHSM "
                  "serializes calls within a process; 0 in host mode and for other modules). Output is identical "
                  "whatever the count (docs/cli.md#workers)");
  cmd->add_option("--threads", o->threads,
                  "Threads of this process for the pipeline (0: one per hardware thread; with --workers the "
                  "parent uses one per worker plus one)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--worker-recycle-cards", o->worker_recycle_cards,
                  "Replace a worker process after it prepared this many cards (0: never; default 25000)");
  cmd->callback([&g, o, cards, max_rejects, workers, reserve_batch, &exit_code] {
    if (!o->resume_dir.empty()) {
      const bool others = !o->profile_path.empty() || !o->xof_path.empty() || !o->registry_path.empty() ||
                          !o->output_path.empty() || !cards->empty() || !o->rejects_path.empty() ||
                          !o->report_path.empty() || !max_rejects->empty() || !o->run_id.empty() ||
                          !o->run_dir.empty() || reserve_batch->count() > 0;
      if (others) {
        exit_code = fail(Error(ErrorCode::kInvalidArgument,
                               "--resume takes every prep option from the run's journal: give it alone (with the "
                               "HSM options, --audit-log and --workers, --threads, --worker-recycle-cards, which a resume chooses anew)"));
        return;
      }
    } else {
      for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"--profile", &o->profile_path},
                                        {"--xof", &o->xof_path},
                                        {"--registry", &o->registry_path},
                                        {"--out", &o->output_path}}) {
        if (value->empty()) {
          exit_code = fail(Error(ErrorCode::kInvalidArgument, std::string(name) + " is required (or --resume DIR)"));
          return;
        }
      }
    }
    if (!cards->empty()) {
      auto selection = CardSelection::parse(*cards);
      if (!selection) {
        exit_code = fail(selection.error());
        return;
      }
      o->cards = std::move(*selection);
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
      PF_ASSIGN_OR_RETURN(PrepResult r, run_prep(*o, keys));
      PF_TRY(write_report(r.report_path, r.report_json));
      // Only now is the run over: a kill before this line is finished by --resume.
      PF_TRY(finish_journaled_run(r.run_dir));
      std::printf(
          "prepared %llu of %llu cards (%llu rejected) into %s: reservation %lld, %llu APDUs, %.2f s, %.0f cards/s\n",
          static_cast<unsigned long long>(r.prepared), static_cast<unsigned long long>(r.selected),
          static_cast<unsigned long long>(r.rejects), r.output_path.c_str(), static_cast<long long>(r.reservation_id),
          static_cast<unsigned long long>(r.apdus), r.seconds,
          r.seconds > 0 ? static_cast<double>(r.prepared) / r.seconds : 0.0);
      return ok_status();
    });
  });

  // The worker side of --workers (pipeline/prep_workers.h): started by prep itself, with
  // the parent's HSM options, talking over the socket on --fd. Hidden from --help.
  auto fd = std::make_shared<int>(-1);
  CLI::App* worker = app.add_subcommand(
      "prep-worker", "Internal: one worker process of prep --workers, started by prep itself (not for operators)");
  worker->group("");
  worker->add_option("--fd", *fd, "The socket to the parent prep")->required();
  worker->callback([&g, fd, &exit_code] {
    auto settings = settings_from(g);
    if (!settings) {
      exit_code = fail(settings.error());
      return;
    }
    exit_code = run_prep_worker(*settings, *fd);
  });
}

}  // namespace persoflow::pipeline
