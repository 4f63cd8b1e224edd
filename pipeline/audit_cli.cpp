// `persoflow audit verify FILE [--json]`: checks an audit log's hash chain
// (formats/audit_log.h, docs/audit.md). Needs no HSM.
#include <memory>
#include <ostream>

#include <nlohmann/json.hpp>

#include "formats/audit_log.h"
#include "pipeline/cli_common.h"

namespace persoflow::pipeline {
namespace {

struct AuditVerifyOptions {
  std::string path;
  bool json = false;
};

std::string count_of(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Exit 0 when the chain is intact, 7 at the first bad line, 4 when the file is missing.
int audit_verify(const AuditVerifyOptions& o, std::ostream& out) {
  formats::AuditVerifyReport report;
  Status s = formats::verify_audit_log(o.path, report);
  if (!s && s.error().code() != ErrorCode::kIntegrity) return fail(s.error());
  if (o.json) {
    nlohmann::ordered_json j;
    j["file"] = o.path;
    j["intact"] = report.intact();
    j["entries"] = report.entries;
    j["last_seq"] = report.last_seq;
    j["last_hash"] = report.last_hash;
    if (!report.intact()) {
      j["bad_line"] = report.bad_line;
      j["defect"] = std::string(formats::audit_defect_name(report.defect));
      j["reason"] = report.reason;
    }
    out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else if (report.intact()) {
    out << "audit log " << o.path << ": " << count_of(report.entries, "entry", "entries")
        << ", chain intact\n";
    if (report.entries > 0) {
      out << "  last entry: seq " << report.last_seq << ", hash " << report.last_hash << "\n";
    }
  }
  if (!s) {
    const Error& e = s.error();
    if (report.entries == 0) return fail(e);
    const std::string before = report.entries == 1
                                   ? "line 1 verifies"
                                   : "lines 1 to " + std::to_string(report.entries) + " verify";
    return fail(Error(e.code(), e.message() + " (" + before + ")"));
  }
  return kExitOk;
}

}  // namespace

void add_audit_commands(CLI::App& app, GlobalOptions& /*g*/, int& exit_code) {
  CLI::App* audit = app.add_subcommand(
      "audit", "Audit trail: check the hash chain of an audit log (docs/audit.md)");
  audit->require_subcommand(1);
  audit->fallthrough();

  auto o = std::make_shared<AuditVerifyOptions>();
  CLI::App* verify = audit->add_subcommand("verify",
                                           "Check every line of an audit log: JSON, members, seq "
                                           "from 1, prev chain, each line's own hash");
  verify->fallthrough();
  verify->footer(
      "Exit 0: chain intact; 7: the first bad line is named (edited, removed, reordered, "
      "inserted,\n"
      "truncated); 4: no such file. Removal of the newest entries is only seen against a last "
      "hash\n"
      "kept elsewhere (docs/audit.md).");
  verify->add_option("file", o->path, "Audit log (JSONL)")->required();
  verify->add_flag("--json", o->json, "Print the result as JSON");
  verify->callback([o, &exit_code] { exit_code = audit_verify(*o, std::cout); });
}

}  // namespace persoflow::pipeline
