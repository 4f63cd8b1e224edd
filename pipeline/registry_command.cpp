// The bodies of `persoflow registry import|show|reservations` (pipeline/registry_command.h).
#include "pipeline/registry_command.h"

#include <cstdio>
#include <span>

#include <nlohmann/json.hpp>

#include "formats/se_registry.h"

namespace persoflow::pipeline {
namespace {

using Json = nlohmann::ordered_json;

void print_json(std::ostream& out, const Json& j) {
  out << j.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

std::string hex_byte(std::uint8_t v) { return to_hex(std::span<const std::uint8_t>(&v, 1)); }

std::string counter_text(std::uint32_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%u (0x%06X)", v, v);
  return buf;
}

// Values left for the key set: next..max inclusive, none once next passed max.
std::uint32_t remaining(const formats::SeRecord& r) {
  return r.next_counter > r.max_counter ? 0 : r.max_counter - r.next_counter + 1;
}

}  // namespace

Status run_registry_import(const RegistryImportOptions& o, std::ostream& out) {
  PF_ASSIGN_OR_RETURN(formats::SeRegistry reg, formats::SeRegistry::open(o.db, true));
  PF_ASSIGN_OR_RETURN(formats::CsvImportSummary s, reg.import_csv(o.csv));
  PF_ASSIGN_OR_RETURN(std::size_t total, reg.count());
  if (o.json) {
    Json j;
    j["db"] = o.db;
    j["csv"] = o.csv;
    j["inserted"] = s.inserted;
    j["updated"] = s.updated;
    j["unchanged"] = s.unchanged;
    j["ses"] = total;
    print_json(out, j);
  } else {
    out << "registry " << o.db << ": " << s.inserted << " inserted, " << s.updated << " updated, "
        << s.unchanged << " unchanged from " << o.csv << "; " << total << " SEs in the registry\n";
  }
  return ok_status();
}

Status run_registry_show(const RegistryShowOptions& o, std::ostream& out) {
  if (o.se_id.empty() == o.msi.empty()) {
    return Error(ErrorCode::kInvalidArgument, "registry show: give exactly one of --se and --msi");
  }
  PF_ASSIGN_OR_RETURN(formats::SeRegistry reg, formats::SeRegistry::open(o.db, false));
  const bool by_msi = !o.msi.empty();
  const formats::SeLookup lookup{
      by_msi ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId,
      by_msi ? o.msi : o.se_id};
  PF_ASSIGN_OR_RETURN(std::optional<formats::SeRecord> found, reg.find(lookup));
  if (!found) {
    return Error(ErrorCode::kNotFound, std::string(by_msi ? "MSI '" : "SE id '") + lookup.key +
                                           "' is not in the registry " + o.db);
  }
  const formats::SeRecord& r = *found;
  PF_ASSIGN_OR_RETURN(std::vector<formats::CounterRange> ranges, reg.ranges_for_se(r.se_id));
  std::vector<std::string> states;
  for (const formats::CounterRange& range : ranges) {
    PF_ASSIGN_OR_RETURN(std::optional<formats::ReservationRecord> rec,
                        reg.reservation(range.reservation_id));
    states.emplace_back(rec ? formats::reservation_state_name(rec->state) : "unknown");
  }

  if (o.json) {
    Json j;
    j["se_id"] = r.se_id;
    j["msi"] = r.msi;
    j["iccid"] = r.iccid;
    j["kdd"] = to_hex(r.kdd);
    j["isd_aid"] = to_hex(r.isd_aid);
    j["scp"] = r.scp;
    j["i"] = hex_byte(r.i);
    j["kvn"] = hex_byte(r.kvn);
    j["next_counter"] = r.next_counter;
    j["max_counter"] = r.max_counter;
    j["remaining"] = remaining(r);
    j["product"] = r.product;
    Json list = Json::array();
    for (std::size_t k = 0; k < ranges.size(); ++k) {
      list.push_back({{"reservation_id", ranges[k].reservation_id},
                      {"state", states[k]},
                      {"kvn", hex_byte(ranges[k].kvn)},
                      {"first", ranges[k].first},
                      {"last", ranges[k].last}});
    }
    j["ranges"] = std::move(list);
    print_json(out, j);
    return ok_status();
  }
  out << "SE " << r.se_id << "\n"
      << "  msi           " << (r.msi.empty() ? "-" : r.msi) << "\n"
      << "  iccid         " << (r.iccid.empty() ? "-" : r.iccid) << "\n"
      << "  product       " << r.product << "\n"
      << "  kdd           " << to_hex(r.kdd) << "\n"
      << "  isd_aid       " << to_hex(r.isd_aid) << "\n"
      << "  scp           0" << static_cast<int>(r.scp) << "  i " << hex_byte(r.i) << "  kvn "
      << hex_byte(r.kvn) << "\n"
      << "  next_counter  " << counter_text(r.next_counter) << "\n"
      << "  max_counter   " << counter_text(r.max_counter) << "\n"
      << "  remaining     " << remaining(r) << "\n";
  if (ranges.empty()) {
    out << "  no counter reserved yet\n";
  } else {
    out << "  reserved ranges:\n";
    for (std::size_t k = 0; k < ranges.size(); ++k) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "0x%06X-0x%06X", ranges[k].first, ranges[k].last);
      out << "    reservation " << ranges[k].reservation_id << " (" << states[k] << "): " << buf
          << ", kvn " << hex_byte(ranges[k].kvn) << "\n";
    }
  }
  return ok_status();
}

Status run_registry_reservations(const RegistryListOptions& o, std::ostream& out) {
  PF_ASSIGN_OR_RETURN(formats::SeRegistry reg, formats::SeRegistry::open(o.db, false));
  PF_ASSIGN_OR_RETURN(std::vector<formats::ReservationRecord> all, reg.reservations());
  if (o.json) {
    Json list = Json::array();
    for (const auto& r : all) {
      list.push_back({{"id", r.id},
                      {"run_id", r.run_id},
                      {"product", r.product},
                      {"created_utc", r.created_utc},
                      {"state", std::string(formats::reservation_state_name(r.state))},
                      {"counters", r.counters},
                      {"output_digest", r.output_digest}});
    }
    Json j;
    j["db"] = o.db;
    j["reservations"] = std::move(list);
    print_json(out, j);
    return ok_status();
  }
  out << "registry " << o.db << ": " << all.size()
      << (all.size() == 1 ? " reservation\n" : " reservations\n");
  for (const auto& r : all) {
    out << "  " << r.id << "  " << r.created_utc << "  " << formats::reservation_state_name(r.state)
        << "  " << r.counters << (r.counters == 1 ? " counter" : " counters") << "  run "
        << (r.run_id.empty() ? "-" : r.run_id) << "  product "
        << (r.product.empty() ? "-" : r.product);
    if (!r.output_digest.empty()) out << "  output " << r.output_digest;
    out << "\n";
  }
  return ok_status();
}

}  // namespace persoflow::pipeline
