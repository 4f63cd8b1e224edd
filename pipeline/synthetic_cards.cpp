#include "pipeline/synthetic_cards.h"

#include <algorithm>
#include <array>

#include "engine/attribute_rules.h"

namespace persoflow::pipeline {
namespace {

// splitmix64: a small, well-mixed generator; seeded per (seed, card, attribute).
class Rng {
 public:
  explicit Rng(std::uint64_t state) : state_(state) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
  char digit() { return static_cast<char>('0' + below(10)); }

 private:
  std::uint64_t state_;
};

constexpr std::array<const char*, 16> kSurnames = {"SMITH", "MARTIN", "GARCIA", "MULLER", "ROSSI", "NOVAK",
                                                   "DUBOIS", "SILVA", "JANSEN", "KOWALSKI", "NIELSEN", "LOPEZ",
                                                   "BERNARD", "FISCHER", "COSTA", "LAURENT"};
constexpr std::array<const char*, 16> kGiven = {"ANNA", "JOHN", "MARIA", "PETER", "SOFIA", "LUCAS", "EMMA", "NOAH",
                                                "MIA", "LEON", "CLARA", "HUGO", "IRIS", "OSCAR", "NORA", "PAUL"};

std::size_t pick_length(const AttributeSpec& a, std::size_t preferred) {
  std::size_t lo = std::max<std::size_t>(a.min_length, 1);
  std::size_t hi = a.max_length == 0 ? std::max(lo, preferred) : a.max_length;
  return std::clamp(preferred, lo, std::max(lo, hi));
}

char luhn_check_digit(const std::string& body) {
  int sum = 0;
  bool dbl = true;  // the check digit is appended on the right: its neighbour is doubled
  for (auto it = body.rbegin(); it != body.rend(); ++it) {
    int d = *it - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string hex_digits(Rng& rng, std::size_t n) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string s(n, '0');
  for (auto& c : s) c = kHex[rng.below(16)];
  return s;
}

}  // namespace

std::string se_id_for(std::uint64_t index) {
  std::string n = std::to_string(index + 1);
  if (n.size() < 10) n.insert(0, 10 - n.size(), '0');
  return "SE" + n;
}

std::string msi_for(std::uint64_t index) {
  std::string n = std::to_string(index + 1);
  if (n.size() < 11) n.insert(0, 11 - n.size(), '0');
  return "2080" + n;  // a test MCC/MNC prefix and a subscriber number
}

SyntheticCards::SyntheticCards(const Profile& profile, SyntheticOptions options)
    : profile_(profile), options_(std::move(options)) {
  if (profile_.records.format == RecordFormat::kFixedWidth) {
    for (const auto& a : profile_.attributes) fixed_width_ = std::max(fixed_width_, a.offset + a.length);
    fixed_width_ = std::max(fixed_width_, profile_.records.record_length);
  }
}

std::vector<std::string> SyntheticCards::values(std::uint64_t index) const {
  auto moved_key_to_key = [this](const std::string& name) {
    if (!profile_.prep) return false;
    bool found = false;
    for_each_command(*profile_.prep, [&](const CommandSpec& c) {
      for (const DgiSpec& d : c.dgis) {
        // Only an AES K-DEK needs whole 16-byte blocks (the host path under SCP02 takes 8);
        // the profile allows key-to-key without via="host" only under an AES K-DEK.
        found |= d.source == DgiSource::kKeyToKey && d.wrapped_attribute == name && !d.via_host;
      }
    });
    return found;
  };
  std::vector<std::string> out;
  out.reserve(profile_.attributes.size());
  for (std::size_t ai = 0; ai < profile_.attributes.size(); ++ai) {
    const AttributeSpec& a = profile_.attributes[ai];
    Rng rng(options_.seed * 0x100000001B3ULL ^ (index * 1315423911ULL) ^ (ai << 56));
    rng.next();
    std::string v;
    if (profile_.prep && a.name == profile_.prep->se.attribute) {
      // The SE this card is personalized on: the registry rows of `gen-issuer
      // --registry-csv` use the same ids (se_id_for / msi_for).
      v = profile_.prep->se.kind == SeKeyKind::kMsi ? msi_for(index) : se_id_for(index);
    } else if (a.name == profile_.card_id_attribute) {
      const std::size_t width = std::clamp<std::size_t>(a.max_length == 0 ? 10 : a.max_length, 1, 12);
      v = std::to_string(index + 1);
      if (v.size() < width - 1) v.insert(0, width - 1 - v.size(), '0');
      v.insert(0, "C");
    } else if (a.field_encryption != FieldEncryption::kNone) {
      // ISO 9564 format 2 PIN block: 2, PIN length, PIN digits, F padding (8 bytes).
      v = "24";
      for (int i = 0; i < 4; ++i) v.push_back(rng.digit());
      v.append(10, 'F');
      // A profile that moves it key-to-key under an AES K-DEK needs whole 16-byte blocks:
      // the issuer pads it (ISO/IEC 9797-1 method 2), as the profile documents.
      if (moved_key_to_key(a.name)) v += "8000000000000000";
    } else {
      switch (a.type) {
        case AttributeType::kDigits:
          if (a.luhn) {
            const std::size_t len = pick_length(a, 16);
            v = options_.bin.substr(0, std::min(options_.bin.size(), len - 1));
            while (v.size() < len - 1) v.push_back(rng.digit());
            v.push_back(luhn_check_digit(v));
          } else {
            const std::size_t len = pick_length(a, a.min_length == 3 && a.max_length == 3 ? 3 : 6);
            if (len == 3 && a.name.find("service") != std::string::npos) {
              v = "201";
            } else {
              for (std::size_t i = 0; i < len; ++i) v.push_back(rng.digit());
            }
          }
          break;
        case AttributeType::kYymm: {
          const int year = options_.expiry_base_year + static_cast<int>(rng.below(4));
          const int month = 1 + static_cast<int>(rng.below(12));
          v = (year < 10 ? "0" : "") + std::to_string(year) + (month < 10 ? "0" : "") + std::to_string(month);
          break;
        }
        case AttributeType::kName: {
          v = std::string(kSurnames[rng.below(kSurnames.size())]) + "/" + kGiven[rng.below(kGiven.size())];
          const std::size_t max = a.max_length == 0 ? 26 : a.max_length;
          if (v.size() > max) v.resize(max);
          break;
        }
        case AttributeType::kHex:
          v = hex_digits(rng, pick_length(a, 16) & ~std::size_t{1});
          break;
        case AttributeType::kAlphanumeric:
        case AttributeType::kText: {
          static constexpr char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
          const std::size_t len = pick_length(a, 8);
          for (std::size_t i = 0; i < len; ++i) v.push_back(kAlnum[rng.below(36)]);
          break;
        }
      }
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string SyntheticCards::render(const std::vector<std::string>& values) const {
  if (profile_.records.format == RecordFormat::kFixedWidth) {
    std::string line(fixed_width_, ' ');
    for (std::size_t i = 0; i < profile_.attributes.size(); ++i) {
      const AttributeSpec& a = profile_.attributes[i];
      const std::string& v = values[i];
      line.replace(a.offset, std::min(v.size(), a.length), v.substr(0, a.length));
    }
    line.push_back('\n');
    return line;
  }
  std::string attrs, children;
  for (std::size_t i = 0; i < profile_.attributes.size(); ++i) {
    const AttributeSpec& a = profile_.attributes[i];
    if (!a.source.empty() && a.source.front() == '@') {
      attrs += " " + a.source.substr(1) + "=\"" + xml_escape(values[i]) + "\"";
    } else {
      children += "<" + a.source + ">" + xml_escape(values[i]) + "</" + a.source + ">";
    }
  }
  return "  <" + profile_.records.record_element + attrs + ">" + children + "</" +
         profile_.records.record_element + ">\n";
}

std::string SyntheticCards::prolog() const {
  if (profile_.records.format == RecordFormat::kFixedWidth) return "";
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<issuer-file profile=\"" + xml_escape(profile_.id) +
         "\">\n";
}

std::string SyntheticCards::epilog() const {
  if (profile_.records.format == RecordFormat::kFixedWidth) return "";
  return "</issuer-file>\n";
}

}  // namespace persoflow::pipeline
