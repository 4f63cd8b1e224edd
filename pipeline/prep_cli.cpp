// `persoflow prep`: the command-line side of pipeline/prep_command.h.
#include <cstdio>
#include <memory>

#include "pipeline/cli_common.h"
#include "pipeline/prep_command.h"

namespace persoflow::pipeline {

void add_prep_commands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto o = std::make_shared<PrepOptions>();
  auto cards = std::make_shared<std::string>();
  auto max_rejects = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "prep", "Prepare per-card secure-channel scripts from an XOF into a script bundle (SE registry, counter "
              "reservation, keys diversified in the HSM)");
  cmd->fallthrough();
  cmd->footer(kHsmFooter);
  cmd->add_option("--profile", o->profile_path, "Product profile with a <prep> element (docs/profile.md)")
      ->required();
  cmd->add_option("--xof", o->xof_path, "XOF intermediate file written by persoflow import")->required();
  cmd->add_option("--registry", o->registry_path, "SE registry database (docs/registry.md)")->required();
  cmd->add_option("--out", o->output_path, "Script bundle to write (published atomically when the run succeeds)")
      ->required();
  cmd->add_option("--cards", *cards,
                  "Cards to prepare: ID,ID,... | @FILE (one card id per line) | FIRST-LAST (1-based positions in "
                  "the XOF); default: all");
  cmd->add_option("--rejects", o->rejects_path, "JSONL reject report to write (docs/cli.md#rejects)");
  cmd->add_option("--report", o->report_path, "JSON run report to write");
  cmd->add_option("--max-rejects", *max_rejects,
                  "Fail without publishing the bundle when more cards are rejected: a count (10) or a share (0.5%)");
  cmd->add_option("--run-id", o->run_id, "Run id recorded with the counter reservation (default: time and pid)");
  cmd->callback([&g, o, cards, max_rejects, &exit_code] {
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
    auto audit_path = optional_audit_log(g);
    if (!audit_path) {
      exit_code = fail(audit_path.error());
      return;
    }
    o->audit_log = *audit_path;
    exit_code = with_hsm(g, [&](hsm::KeyStore& keys) -> Status {
      PF_ASSIGN_OR_RETURN(PrepResult r, run_prep(*o, keys));
      PF_TRY(write_report(o->report_path, r.report_json));
      std::printf(
          "prepared %llu of %llu cards (%llu rejected) into %s: reservation %lld, %llu APDUs, %.2f s, %.0f cards/s\n",
          static_cast<unsigned long long>(r.prepared), static_cast<unsigned long long>(r.selected),
          static_cast<unsigned long long>(r.rejects), o->output_path.c_str(), static_cast<long long>(r.reservation_id),
          static_cast<unsigned long long>(r.apdus), r.seconds,
          r.seconds > 0 ? static_cast<double>(r.prepared) / r.seconds : 0.0);
      return ok_status();
    });
  });
}

}  // namespace persoflow::pipeline
