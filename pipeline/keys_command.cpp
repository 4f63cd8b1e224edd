#include "pipeline/keys_command.h"

#include <nlohmann/json.hpp>

#include <iomanip>

#include "formats/key_component_file.h"

namespace persoflow::pipeline {
namespace {

}  // namespace

Result<hsm::KeySpec> make_key_spec(const std::string& label, const std::string& type,
                                   const std::string& usage, const std::optional<std::string>& id_hex) {
  hsm::KeySpec spec;
  if (label.empty()) return Error(ErrorCode::kInvalidArgument, "--label must not be empty");
  spec.label = label;
  PF_ASSIGN_OR_RETURN(spec.type, parse_key_type(type));
  PF_ASSIGN_OR_RETURN(spec.usage, parse_key_usage(usage));
  if (!spec.usage.any()) {
    return Error(ErrorCode::kInvalidArgument, "--usage must name at least one usage");
  }
  if (id_hex) {
    auto id = from_hex(*id_hex);
    if (!id || id->empty()) return Error(ErrorCode::kInvalidArgument, "--id must be non-empty hex");
    spec.id = std::move(*id);
  }
  return spec;
}

namespace {

nlohmann::json key_json(const hsm::KeyInfo& key, const Result<Bytes>& kcv) {
  nlohmann::json j;
  j["label"] = key.label;
  j["id"] = to_hex(key.id);
  j["uri"] = key.uri;
  j["type"] = key.type ? std::string(key_type_name(*key.type)) : hsm::ck_key_type_name(key.ck_key_type);
  j["bits"] = key.bits;
  if (kcv) {
    j["kcv"] = to_hex(*kcv);
  } else {
    j["kcv"] = nullptr;
    j["kcv_error"] = kcv.error().message();
  }
  j["sensitive"] = key.sensitive;
  j["extractable"] = key.extractable;
  j["always_sensitive"] = key.always_sensitive;
  j["never_extractable"] = key.never_extractable;
  j["token_object"] = key.token_object;
  auto usage = nlohmann::json::array();
  std::string list = key_usage_list(key.usage);
  std::size_t start = 0;
  while (start < list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    usage.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  j["usage"] = usage;
  return j;
}

void print_key(std::ostream& out, std::string_view verb, const hsm::KeyInfo& key, const Bytes& kcv) {
  if (!verb.empty()) out << verb << " ";
  out << (key.type ? key_type_name(*key.type) : "?") << " key '" << key.label << "'\n"
      << "  uri:         " << key.uri << "\n"
      << "  usage:       " << key_usage_list(key.usage) << "\n"
      << "  sensitive:   " << (key.sensitive ? "yes" : "NO") << ", extractable: "
      << (key.extractable ? "YES" : "no") << "\n"
      << "  KCV:         " << to_hex(kcv) << "\n";
}

// The label, and the id when one is asked for, must be new on the token.
Status ensure_new(hsm::KeyStore& keys, const hsm::KeySpec& spec) {
  PF_ASSIGN_OR_RETURN(auto existing, keys.list());
  for (const auto& k : existing) {
    if (k.label == spec.label) {
      return Error(ErrorCode::kAlreadyExists, "a secret key labelled '" + spec.label +
                                                  "' already exists on token '" + keys.token().label() +
                                                  "' (" + k.uri + ")");
    }
    if (spec.id && k.id == *spec.id) {
      return Error(ErrorCode::kAlreadyExists, "key id " + to_hex(*spec.id) + " is already used on token '" +
                                                  keys.token().label() + "' by " + k.uri);
    }
  }
  return ok_status();
}

Result<formats::KeyComponent> prompt_component(Prompter& prompter, int index, int total,
                                               std::ostream& log, hsm::KeyStore& keys, KeyType type) {
  const std::string n = std::to_string(index) + " of " + std::to_string(total);
  auto secret = prompter.read_secret("Component " + n + " (hex, not echoed): ");
  if (!secret) return Error(ErrorCode::kInvalidArgument, "component " + n + ": no input");
  formats::KeyComponent c;
  {
    auto text = secret->reveal();
    auto value = secure_from_hex(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()));
    if (!value) return Error(ErrorCode::kParse, "component " + n + ": " + value.error().message());
    c.value = std::move(value).value();
  }
  auto kcv_line = prompter.read_line("KCV of component " + n + " (6 hex digits, Enter if none): ");
  if (kcv_line) {
    PF_ASSIGN_OR_RETURN(c.kcv, formats::parse_kcv_entry(*kcv_line, "component " + n + " KCV"));
  }
  if (!c.kcv) {
    // No KCV to check against: the custodian confirms the one the HSM computed.
    if (c.value.size() != key_length_bytes(type)) return c;  // the length error is reported by the caller
    PF_ASSIGN_OR_RETURN(Bytes kcv, keys.kcv_of_value(type, c.value));
    log << "Component " << n << " KCV computed by the HSM: " << to_hex(kcv) << "\n";
    auto answer = prompter.read_line("Does it match the KCV on the component form? [y/N] ");
    if (!answer || (*answer != "y" && *answer != "Y" && *answer != "yes")) {
      return Error(ErrorCode::kIntegrity, "component " + n + ": KCV not confirmed by the custodian");
    }
    c.kcv = kcv;
  }
  return c;
}

}  // namespace

Status keys_generate(hsm::KeyStore& keys, const KeysGenerateOptions& options, std::ostream& out) {
  PF_ASSIGN_OR_RETURN(hsm::KeySpec spec,
                      make_key_spec(options.label, options.type, options.usage, options.id_hex));
  PF_TRY(ensure_new(keys, spec));
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo key, keys.generate(spec));
  auto kcv = keys.kcv(key);
  if (options.json) {
    out << key_json(key, kcv).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else if (kcv) {
    print_key(out, "generated", key, *kcv);
  }
  if (!kcv) return std::move(kcv).error().add_context("key generated, but its KCV");
  return ok_status();
}

Status keys_import(hsm::KeyStore& keys, const KeysImportOptions& options, Prompter& prompter,
                   std::ostream& out, std::ostream& log) {
  PF_ASSIGN_OR_RETURN(hsm::KeySpec spec,
                      make_key_spec(options.label, options.type, options.usage, options.id_hex));
  const bool interactive = options.component_files.empty();
  const int total = interactive ? options.components : static_cast<int>(options.component_files.size());
  if (total < 2 || total > 3) {
    return Error(ErrorCode::kInvalidArgument,
                 "a key is imported from 2 or 3 components (got " + std::to_string(total) + ")");
  }
  PF_TRY(ensure_new(keys, spec));
  const std::size_t length = key_length_bytes(spec.type);

  SecureBytes combined(length);
  std::vector<Bytes> kcvs;
  for (int i = 1; i <= total; ++i) {
    const std::string name = interactive ? "component " + std::to_string(i)
                                          : options.component_files[static_cast<std::size_t>(i - 1)];
    formats::KeyComponent component;
    if (interactive) {
      PF_ASSIGN_OR_RETURN(component, prompt_component(prompter, i, total, log, keys, spec.type));
    } else {
      PF_ASSIGN_OR_RETURN(component, formats::read_key_component_file(name));
    }
    if (component.value.size() != length) {
      return Error(ErrorCode::kInvalidArgument,
                   name + ": a " + std::string(key_type_name(spec.type)) + " component is " +
                       std::to_string(length) + " bytes, this one is " +
                       std::to_string(component.value.size()));
    }
    PF_ASSIGN_OR_RETURN(Bytes kcv, keys.kcv_of_value(spec.type, component.value));
    if (component.kcv && !constant_time_equal(*component.kcv, kcv)) {
      return Error(ErrorCode::kIntegrity, name + ": KCV mismatch: the component's KCV is " +
                                              to_hex(*component.kcv) + ", the HSM computed " +
                                              to_hex(kcv) + "; the component was mistyped or is the wrong one");
    }
    for (std::size_t j = 0; j < kcvs.size(); ++j) {
      if (kcvs[j] == kcv) {
        return Error(ErrorCode::kInvalidArgument,
                     name + ": same KCV as component " + std::to_string(j + 1) +
                         ": the same component was given twice");
      }
    }
    kcvs.push_back(kcv);
    log << "component " << i << " of " << total << ": KCV " << to_hex(kcv)
        << (component.kcv ? " (checked)" : " (no KCV given to check against)") << "\n";
    combined.xor_with(component.value.reveal());
  }
  bool all_zero = true;
  for (std::uint8_t b : combined.reveal()) all_zero = all_zero && b == 0;
  if (all_zero) return Error(ErrorCode::kInvalidArgument, "the components combine to an all-zero key");

  auto created = keys.create_from_value(spec, combined);
  combined.wipe();
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo key, std::move(created));
  auto kcv = keys.kcv(key);
  if (options.json) {
    nlohmann::json j = key_json(key, kcv);
    auto comp = nlohmann::json::array();
    for (const auto& k : kcvs) comp.push_back(to_hex(k));
    j["component_kcvs"] = comp;
    out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else if (kcv) {
    print_key(out, "imported", key, *kcv);
  }
  if (!kcv) return std::move(kcv).error().add_context("key imported, but its KCV");
  return ok_status();
}

Status keys_list(hsm::KeyStore& keys, bool json, std::ostream& out) {
  PF_ASSIGN_OR_RETURN(auto list, keys.list());
  if (json) {
    auto arr = nlohmann::json::array();
    std::optional<Error> first_failure;
    for (const auto& k : list) {
      auto kcv = keys.kcv(k);
      if (!kcv && !first_failure) first_failure = kcv.error();
      arr.push_back(key_json(k, kcv));
    }
    nlohmann::json doc;
    doc["token"] = keys.token().label();
    doc["keys"] = arr;
    out << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (first_failure) return std::move(*first_failure).add_context("a KCV shown as null could not be computed");
    return ok_status();
  }
  out << std::left << std::setw(24) << "LABEL" << std::setw(18) << "ID" << std::setw(8) << "TYPE"
      << std::setw(6) << "BITS" << std::setw(8) << "KCV" << std::setw(10) << "SENSITIVE"
      << std::setw(12) << "EXTRACTABLE" << "USAGE\n";
  std::optional<Error> first_failure;
  for (const auto& k : list) {
    auto kcv = keys.kcv(k);
    if (!kcv && !first_failure) first_failure = kcv.error();
    out << std::left << std::setw(24) << k.label << std::setw(18) << to_hex(k.id) << std::setw(8)
        << (k.type ? std::string(key_type_name(*k.type)) : hsm::ck_key_type_name(k.ck_key_type))
        << std::setw(6) << k.bits << std::setw(8) << (kcv ? to_hex(*kcv) : "n/a") << std::setw(10)
        << (k.sensitive ? "yes" : "no") << std::setw(12) << (k.extractable ? "yes" : "no")
        << key_usage_list(k.usage) << "\n";
  }
  out << list.size() << (list.size() == 1 ? " key" : " keys") << " on token '" << keys.token().label() << "'\n";
  if (first_failure) {
    // Every key shown must show its KCV (domain.md): say which one could not.
    return std::move(*first_failure).add_context("a KCV shown as n/a could not be computed");
  }
  return ok_status();
}

}  // namespace persoflow::pipeline

namespace persoflow::pipeline {

Status keys_show(hsm::KeyStore& keys, const std::string& uri, bool json, std::ostream& out) {
  PF_ASSIGN_OR_RETURN(hsm::KeyInfo key, keys.find(uri));
  auto kcv = keys.kcv(key);
  if (json) {
    out << key_json(key, kcv).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (!kcv) return std::move(kcv).error();
    return ok_status();
  }
  if (!kcv) return std::move(kcv).error();
  print_key(out, "", key, *kcv);
  return ok_status();
}

}  // namespace persoflow::pipeline
