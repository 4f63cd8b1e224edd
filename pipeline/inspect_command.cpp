#include "pipeline/inspect_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "engine/attribute_rules.h"
#include "formats/xof_reader.h"
#include "hsm/hsm_keys.h"

namespace persoflow::pipeline {
namespace {

// The header as stored, before any check: only to learn which integrity key to verify
// the file with. XofReader::open then checks everything, this header included.
Result<formats::XofHeader> peek_header(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open XOF file " + path + ": " + std::strerror(errno));
  }
  Bytes start(12);
  Bytes header;
  const bool ok = ::pread(fd, start.data(), 12, 0) == 12;
  if (ok) {
    const std::uint32_t len = (std::uint32_t{start[8]} << 24) | (std::uint32_t{start[9]} << 16) |
                              (std::uint32_t{start[10]} << 8) | start[11];
    if (len <= 1 << 20) {
      header.resize(12 + len);
      if (::pread(fd, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) header.clear();
    }
  }
  ::close(fd);
  if (header.empty()) return Error(ErrorCode::kParse, path + ": not an XOF file, or truncated in its header");
  return formats::parse_xof_header(header, path);
}

std::string kcv_hex(const formats::XofKcv& k) { return to_hex(std::span<const std::uint8_t>(k)); }

// Records the reveal of `card` before any of its values is shown. Details name the file,
// the card and the attributes shown in clear; never a value.
Status audit_reveal(const formats::AuditLog& audit, const InspectOptions& options, const formats::XofHeader& h,
                    const formats::XofCard& card) {
  nlohmann::ordered_json names = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < h.attributes.size(); ++i) {
    if (card.values[i] && h.attributes[i].kind != formats::XofAttributeKind::kWrapped) {
      names.push_back(h.attributes[i].name);
    }
  }
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(options.path, ec);
  const nlohmann::ordered_json details = {
      {"xof", ec ? options.path : absolute.lexically_normal().string()},
      {"xof_file_id", to_hex(std::span<const std::uint8_t>(h.file_id))},
      {"card_id", options.card_id},
      {"attributes", names},
      {"profile_id", h.profile_id},
      {"profile_version", h.profile_version},
  };
  auto entry = audit.append("reveal", details);
  if (!entry) {
    Error e = std::move(entry).error();
    e.add_context("not revealing card '" + options.card_id + "': the audit log did not record the reveal");
    return e;
  }
  std::cerr << "persoflow: revealing card '" << options.card_id << "' of " << options.path
            << " in clear for the operator (audit log " << audit.path() << ", entry " << entry->seq << ")\n";
  return ok_status();
}

}  // namespace

Error reveal_needs_audit_log() {
  return Error(ErrorCode::kInvalidArgument,
               "inspect --reveal shows card data in clear and must be recorded in an audit log, but none is "
               "configured: give --audit-log FILE, set PERSOFLOW_AUDIT_LOG, or set log in the [audit] section "
               "of the configuration file (docs/audit.md)");
}

Status run_inspect(const InspectOptions& options, hsm::KeyStore& keys, std::ostream& out,
                   const formats::AuditLog* audit) {
  if (options.reveal && audit == nullptr) return reveal_needs_audit_log();
  PF_ASSIGN_OR_RETURN(formats::XofHeader peeked, peek_header(options.path));
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo integrity_info, keys.find(peeked.integrity_key_uri));
  hsm::HsmMacKey integrity(keys, integrity_info);
  PF_ASSIGN_OR_RETURN(formats::XofReader reader, formats::XofReader::open(options.path, integrity));
  PF_TRY(reader.verify_all());
  const formats::XofHeader& h = reader.header();

  // Each class's DKep, and whether the HSM's key is still the one the file was written with.
  std::vector<std::unique_ptr<hsm::HsmAeadKey>> class_keys;
  std::vector<AeadKey*> class_ptrs;
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const auto& c : h.classes) {
    nlohmann::ordered_json jc{{"name", c.name}, {"dkep", c.dkep_uri}, {"kcv", kcv_hex(c.kcv)}};
    auto info = keys.find(c.dkep_uri);
    if (info) {
      auto kcv = keys.kcv(*info);
      jc["hsm_kcv_matches"] = kcv.has_value() && to_hex(*kcv) == kcv_hex(c.kcv);
      class_keys.push_back(std::make_unique<hsm::HsmAeadKey>(keys, *info));
      class_ptrs.push_back(class_keys.back().get());
    } else {
      jc["hsm_kcv_matches"] = false;
      jc["hsm_error"] = info.error().message();
    }
    classes.push_back(jc);
  }
  std::uint64_t bytes = 0;
  for (const auto& e : reader.segment_table()) bytes += e.length;

  nlohmann::ordered_json j;
  j["file"] = options.path;
  j["integrity"] = "verified";
  j["format_version"] = h.format_version;
  j["file_id"] = to_hex(std::span<const std::uint8_t>(h.file_id));
  j["source_sha256"] = to_hex(std::span<const std::uint8_t>(h.source_sha256));
  j["profile"] = {{"id", h.profile_id},
                  {"version", h.profile_version},
                  {"sha256", to_hex(std::span<const std::uint8_t>(h.profile_sha256))}};
  j["records"] = h.record_count;
  j["rejects"] = h.reject_count;
  j["segments"] = h.segment_count;
  j["segment_cards"] = h.segment_cards;
  j["segment_bytes"] = bytes;
  j["key_classes"] = classes;
  j["integrity_key"] = {{"uri", h.integrity_key_uri}, {"kcv", kcv_hex(h.integrity_kcv)}};
  nlohmann::ordered_json attrs = nlohmann::ordered_json::array();
  for (const auto& a : h.attributes) {
    attrs.push_back({{"name", a.name},
                     {"class", h.classes[a.class_index].name},
                     {"kind", a.kind == formats::XofAttributeKind::kWrapped ? "wrapped" : "value"}});
  }
  j["attributes"] = attrs;

  if (!options.card_id.empty()) {
    std::optional<Profile> profile;
    if (!options.profile_path.empty()) {
      PF_ASSIGN_OR_RETURN(profile, config::load_profile(options.profile_path));
      if (!std::equal(profile->sha256.begin(), profile->sha256.end(), h.profile_sha256.begin())) {
        return Error(ErrorCode::kInvalidArgument,
                     "profile " + options.profile_path + " is not the one this XOF was written with");
      }
    }
    if (class_ptrs.size() != h.classes.size()) {
      return Error(ErrorCode::kNotFound, "a DKep of this XOF is missing from the HSM (see key_classes)");
    }
    PF_ASSIGN_OR_RETURN(auto where, reader.find_card(options.card_id));
    if (!where) return Error(ErrorCode::kNotFound, "card '" + options.card_id + "' is not in " + options.path);
    PF_ASSIGN_OR_RETURN(formats::XofSegment seg, reader.read_segment(where->first));
    PF_ASSIGN_OR_RETURN(auto cards, reader.decode_segment(seg, class_ptrs));
    const formats::XofCard& card = cards[where->second];
    if (options.reveal) PF_TRY(audit_reveal(*audit, options, h, card));
    nlohmann::ordered_json values;
    for (std::size_t i = 0; i < h.attributes.size(); ++i) {
      const auto& a = h.attributes[i];
      const auto& v = card.values[i];
      if (!v) {
        values[a.name] = nullptr;
        continue;
      }
      const std::string_view text(reinterpret_cast<const char*>(v->reveal().data()), v->size());
      if (a.kind == formats::XofAttributeKind::kWrapped) {
        values[a.name] = "<wrapped under " + h.classes[a.class_index].name + ", " + std::to_string(v->size()) +
                         " bytes; never revealed>";
      } else if (options.reveal || a.name == h.card_id_attribute) {
        values[a.name] = std::string(text);
      } else if (profile && profile->attribute(a.name) != nullptr) {
        const std::string shown = revealed(*profile->attribute(a.name), text);
        values[a.name] = shown.empty() ? "<hidden, " + std::to_string(v->size()) + " bytes>" : shown;
      } else {
        values[a.name] = "<hidden, " + std::to_string(v->size()) + " bytes>";
      }
    }
    j["card"] = {{"id", options.card_id}, {"segment", where->first}, {"values", values}};
  }

  // The summary is printed either way; a DKep the HSM lacks, or holds with another
  // value, then fails the command: prep from this file would fail too.
  Status keys_ok = ok_status();
  for (const auto& c : classes) {
    if (!c["hsm_kcv_matches"].get<bool>()) {
      keys_ok = Error(ErrorCode::kIntegrity, options.path + ": the HSM's key for class '" +
                                                 c["name"].get<std::string>() + "' (" + c["dkep"].get<std::string>() +
                                                 ") is missing or differs from the one this XOF was written with");
      break;
    }
  }
  if (options.json) {
    out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return keys_ok;
  }
  out << "XOF " << options.path << " (format " << h.format_version << "): integrity verified\n"
      << "  profile:     " << h.profile_id << " version " << h.profile_version << "\n"
      << "  source:      sha256 " << j["source_sha256"].get<std::string>() << "\n"
      << "  cards:       " << h.record_count << " in " << h.segment_count << " segments of up to "
      << h.segment_cards << " (" << h.reject_count << " records rejected at import)\n";
  for (const auto& c : classes) {
    out << "  key class:   " << c["name"].get<std::string>() << "  " << c["dkep"].get<std::string>() << "  KCV "
        << c["kcv"].get<std::string>() << (c["hsm_kcv_matches"].get<bool>() ? "" : "  (HSM KEY DIFFERS OR MISSING)")
        << "\n";
  }
  out << "  integrity:   " << h.integrity_key_uri << "  KCV " << kcv_hex(h.integrity_kcv) << "\n";
  if (j.contains("card")) {
    out << "  card " << options.card_id << " (segment " << j["card"]["segment"].get<std::size_t>() << "):\n";
    for (const auto& [name, value] : j["card"]["values"].items()) {
      out << "    " << name << " = " << (value.is_null() ? "(absent)" : value.get<std::string>()) << "\n";
    }
  }
  return keys_ok;
}

}  // namespace persoflow::pipeline
