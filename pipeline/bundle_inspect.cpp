#include "pipeline/bundle_inspect.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "formats/big_endian_codec.h"
#include "formats/bundle.h"
#include "hsm/hsm_keys.h"

namespace persoflow::pipeline {
namespace {

using nlohmann::ordered_json;

// Reads up to n bytes from offset 0 (fewer for a shorter file).
Result<Bytes> read_start(const std::string& path, std::size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open " + path + ": " + std::strerror(err));
  }
  Bytes out(n);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd, out.data() + done, n - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      return Error(ErrorCode::kIo, path + ": reading: " + std::strerror(err));
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

// The header as stored, before any check: only to learn which integrity key to verify
// the file with. BundleReader::open then authenticates everything, this header included.
Result<formats::BundleHeader> peek_header(const std::string& path) {
  PF_ASSIGN_OR_RETURN(Bytes start, read_start(path, 12));
  if (start.size() < 12) {
    return Error(ErrorCode::kParse, path + ": offset " + std::to_string(start.size()) +
                                        ": truncated inside the bundle's magic or header length");
  }
  const std::uint64_t length = formats::load_be(start.data() + 8, 4);
  if (length > 16 * 1024) {
    return Error(ErrorCode::kParse, path + ": offset 8: header length " + std::to_string(length) +
                                        " is not that of a script bundle");
  }
  PF_ASSIGN_OR_RETURN(Bytes header, read_start(path, static_cast<std::size_t>(12 + length)));
  return formats::parse_bundle_header(header, path);
}

std::string hex(std::span<const std::uint8_t> b) { return b.empty() ? "(none)" : to_hex(b); }

std::string sw_hex(std::uint16_t sw) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "%04X", sw);
  return buf;
}

std::string byte_hex(std::uint8_t v) { return to_hex(std::span<const std::uint8_t>(&v, 1)); }

// SCP02 counters are 2 bytes, SCP03 counters 3 (GPC 2.3 E.5.1.1, Amd D 6.2.1).
std::string counter_hex(const formats::BundleSession& s) {
  std::uint8_t b[4];
  formats::store_be(b, s.counter, 4);
  return to_hex(std::span<const std::uint8_t>(b).subspan(s.scp == 2 ? 2 : 1));
}

ordered_json card_json(const std::string& path, const formats::BundleCard& card) {
  ordered_json sessions = ordered_json::array();
  for (const auto& s : card.sessions) {
    ordered_json apdus = ordered_json::array();
    for (const auto& a : s.apdus) {
      ordered_json apdu = {{"label", a.label}, {"command", to_hex(a.command)}, {"expected_sw", sw_hex(a.expected_sw)}};
      if (!a.expected_data.empty()) apdu["expected_data"] = to_hex(a.expected_data);
      apdus.push_back(std::move(apdu));
    }
    sessions.push_back({{"scp", s.scp},
                        {"i", byte_hex(s.i)},
                        {"security_level", byte_hex(s.level)},
                        {"kvn", byte_hex(s.kvn)},
                        {"kdd", to_hex(s.kdd)},
                        {"sd_aid", to_hex(s.sd_aid)},
                        {"counter", s.counter},
                        {"host_challenge", to_hex(s.host_challenge)},
                        {"expected_response", to_hex(s.expected_response)},
                        {"apdus", apdus}});
  }
  return {{"file", path}, {"card_id", card.card_id}, {"se_id", card.se_id}, {"sessions", sessions}};
}

// One line per APDU, each after a comment with its label and expected status word: what
// a station replays, and what an operator reads.
void print_card_apdus(std::ostream& out, const std::string& path, const formats::BundleCard& card) {
  out << "# persoflow script bundle " << path << "\n"
      << "# card " << card.card_id << ", SE " << card.se_id << ", " << card.sessions.size()
      << (card.sessions.size() == 1 ? " session\n" : " sessions\n")
      << "# before EXTERNAL AUTHENTICATE, compare the INITIALIZE UPDATE response data with the\n"
      << "# expected response below; stop at the first status word (or response data, where one\n"
      << "# is given) that is not the one expected\n";
  for (std::size_t k = 0; k < card.sessions.size(); ++k) {
    const auto& s = card.sessions[k];
    out << "#\n"
        << "# session " << (k + 1) << " of " << card.sessions.size() << ": SCP0"
        << static_cast<int>(s.scp) << " i=" << byte_hex(s.i) << ", security level "
        << byte_hex(s.level) << ", KVN " << byte_hex(s.kvn) << ", SD " << hex(s.sd_aid) << "\n"
        << "# KDD " << hex(s.kdd) << "\n"
        << "# sequence counter " << s.counter << " (" << counter_hex(s) << ")\n"
        << "# host challenge " << hex(s.host_challenge) << "\n"
        << "# expected INITIALIZE UPDATE response (SW excluded) " << hex(s.expected_response) << "\n";
    for (const auto& a : s.apdus) {
      out << "# " << (a.label.empty() ? "(no label)" : a.label) << " (expects "
          << (a.expected_data.empty() ? "" : "data " + to_hex(a.expected_data) + " and ") << "SW "
          << sw_hex(a.expected_sw) << ")\n"
          << to_hex(a.command) << "\n";
    }
  }
}

}  // namespace

Result<bool> is_bundle_file(const std::string& path) {
  PF_ASSIGN_OR_RETURN(Bytes start, read_start(path, formats::kBundleMagic.size()));
  return start.size() == formats::kBundleMagic.size() &&
         std::equal(start.begin(), start.end(), formats::kBundleMagic.begin());
}

Status check_bundle_inspect_options(const BundleInspectOptions& o) {
  if (!o.format.empty() && o.card_id.empty()) {
    return Error(ErrorCode::kInvalidArgument, "--format is used with --card ID");
  }
  if (!o.format.empty() && o.format != "apdu" && o.format != "json") {
    return Error(ErrorCode::kInvalidArgument, "--format " + o.format + ": expected apdu or json");
  }
  return ok_status();
}

Status run_bundle_inspect(const BundleInspectOptions& options, hsm::KeyStore& keys,
                          std::ostream& out) {
  PF_TRY(check_bundle_inspect_options(options));
  PF_ASSIGN_OR_RETURN(formats::BundleHeader peeked, peek_header(options.path));
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo info, keys.find(peeked.integrity_key_uri));
  hsm::HsmMacKey integrity(keys, info);
  return inspect_bundle(options, integrity, out);
}

Status inspect_bundle(const BundleInspectOptions& options, MacKey& integrity, std::ostream& out) {
  PF_TRY(check_bundle_inspect_options(options));
  PF_ASSIGN_OR_RETURN(formats::BundleReader reader,
                      formats::BundleReader::open(options.path, integrity));

  // One card: open() has authenticated the header, index and segment table, and
  // read_segment() checks the card's segment against its digest in that table.
  if (!options.card_id.empty()) {
    PF_ASSIGN_OR_RETURN(auto card, reader.find_card(options.card_id));
    if (!card) {
      return Error(ErrorCode::kNotFound,
                   "card '" + options.card_id + "' is not in " + options.path);
    }
    const std::string format = options.format.empty() ? (options.json ? "json" : "apdu") : options.format;
    if (format == "json") {
      out << card_json(options.path, *card).dump(2) << "\n";
    } else {
      print_card_apdus(out, options.path, *card);
    }
    return ok_status();
  }

  formats::BundleTotals totals;
  Status check = reader.verify_all(&totals);
  const formats::BundleHeader& h = reader.header();
  std::uint64_t bytes = 0;
  for (const auto& e : reader.segment_table()) bytes += e.length;

  if (options.json) {
    ordered_json j;
    j["file"] = options.path;
    j["kind"] = "script bundle";
    j["format_version"] = h.format_version;
    j["integrity"] = "verified";
    j["integrity_key"] = {{"uri", h.integrity_key_uri}, {"kcv", to_hex(h.integrity_kcv)}};
    j["profile"] = {{"id", h.profile_id}, {"sha256", to_hex(h.profile_sha256)}};
    j["product"] = h.product;
    j["xof_sha256"] = to_hex(h.xof_sha256);
    j["reservation_id"] = h.reservation_id;
    j["segments"] = reader.segment_count();
    j["segment_cards"] = h.segment_cards;
    j["segment_bytes"] = bytes;
    j["zstd"] = {{"level", h.zstd_level}, {"version", h.zstd_version}};
    j["cards"] = reader.card_count();
    if (check) {
      j["sessions"] = totals.sessions;
      j["apdus"] = totals.apdus;
      j["apdu_bytes"] = totals.apdu_bytes;
      j["full_check"] = "passed";
    } else {
      j["full_check"] = "failed: " + check.error().message();
    }
    out << j.dump(2, ' ', false, ordered_json::error_handler_t::replace) << "\n";
    return check;
  }

  out << "script bundle " << options.path << " (format " << h.format_version
      << "): footer tag verified\n"
      << "  integrity:    " << h.integrity_key_uri << "  KCV " << to_hex(h.integrity_kcv) << "\n"
      << "  profile:      " << h.profile_id << "  sha256 " << to_hex(h.profile_sha256) << "\n"
      << "  product:      " << h.product << "\n"
      << "  source XOF:   sha256 " << to_hex(h.xof_sha256) << "\n"
      << "  reservation:  " << h.reservation_id << "\n"
      << "  cards:        " << reader.card_count() << " in " << reader.segment_count()
      << " segments of up to " << h.segment_cards << " (" << bytes << " bytes, zstd level "
      << h.zstd_level << ", zstd " << h.zstd_version << ")\n";
  if (check) {
    out << "  sessions:     " << totals.sessions << "\n"
        << "  APDUs:        " << totals.apdus << " (" << totals.apdu_bytes << " bytes)\n"
        << "  full check:   passed (every segment decoded and matched to the index; the file's "
           "SHA-256 matches the footer)\n";
  } else {
    out << "  full check:   FAILED: " << check.error().message() << "\n";
  }
  return check;
}

}  // namespace persoflow::pipeline
