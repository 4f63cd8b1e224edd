// The <prep> element of a product profile (docs/profile.md "Prep"): the product, how
// SEs are looked up, the secure channel and its keys, and the commands each card's
// script carries. Checked completely, with the profile file and line of every problem,
// before any card is processed.
#include <map>
#include <set>

#include "config/profile_parser_internal.h"
#include "engine/gp_commands.h"
#include "engine/pkcs11_uri.h"
#include "engine/scp03.h"
#include "engine/tlv.h"

namespace persoflow::config::detail {
namespace {

constexpr std::array kEncodings = {ValueEncoding::kAscii, ValueEncoding::kBcd, ValueEncoding::kNumeric,
                                   ValueEncoding::kHex};
std::string_view encoding_name(ValueEncoding e) {
  switch (e) {
    case ValueEncoding::kAscii: return "ascii";
    case ValueEncoding::kBcd: return "bcd";
    case ValueEncoding::kNumeric: return "numeric";
    case ValueEncoding::kHex: return "hex";
  }
  return "?";
}

constexpr std::array kLookups = {SeKeyKind::kSeId, SeKeyKind::kMsi};
std::string_view lookup_name(SeKeyKind k) { return k == SeKeyKind::kSeId ? "se-id" : "msi"; }

constexpr std::array kKeyHandlings = {KeyHandling::kStrict, KeyHandling::kHost};
std::string_view key_handling_name(KeyHandling k) { return k == KeyHandling::kHost ? "host" : "strict"; }

constexpr std::size_t kMaxScriptCommands = 256;
constexpr std::size_t kMaxSessions = 8;
constexpr std::size_t kMaxDgiValue = 4096;

}  // namespace

Result<Bytes> ProfileParser::hex_value(const pugi::xml_attribute& a, const std::string& ctx,
                                       std::size_t min, std::size_t max) {
  auto bytes = from_hex(a.value());
  if (!bytes) {
    return parse_error(loc_.at(a), ctx + ": " + a.name() + " must be hex digits (" +
                                       bytes.error().message() + ")");
  }
  if (bytes->size() < min || bytes->size() > max) {
    return parse_error(loc_.at(a), ctx + ": " + a.name() + " must be " + std::to_string(min) +
                                       (min == max ? "" : " to " + std::to_string(max)) +
                                       " bytes, got " + std::to_string(bytes->size()));
  }
  return std::move(*bytes);
}

Result<std::uint8_t> ProfileParser::hex_byte(const pugi::xml_attribute& a, const std::string& ctx) {
  PF_ASSIGN_OR_RETURN(const Bytes b, hex_value(a, ctx, 1, 1));
  return b[0];
}

Status ProfileParser::prep(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"product", "key-handling"}));
  PrepSpec spec;
  spec.line = loc_.line(n);
  PF_ASSIGN_OR_RETURN(const auto product, need(n, "product"));
  PF_ASSIGN_OR_RETURN(spec.product, identifier(product, "<prep>"));
  if (const auto kh = n.attribute("key-handling")) {
    PF_ASSIGN_OR_RETURN(spec.key_handling, one_of(kh, "<prep>", kKeyHandlings, key_handling_name));
  }
  std::map<std::string, pugi::xml_node, std::less<>> children;
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside <prep>");
    }
    if (c.type() != pugi::node_element) continue;
    const std::string name = c.name();
    if (name != "se" && name != "secure-channel" && name != "bundle" && name != "script" && name != "icc-keys" &&
        name != "key-set") {
      return parse_error(loc_.at(c), "unknown element " + elem(c) +
                                         " in <prep> (known: bundle, icc-keys, key-set, script, se, secure-channel)");
    }
    if (name == "key-set") {
      PF_ASSIGN_OR_RETURN(KeySetSpec ks, prep_key_set(c));
      if (const KeySetSpec* twin = find_key_set(spec, ks.name)) {
        return parse_error(loc_.at(c), "<key-set name=\"" + ks.name + "\"> repeated (first at line " +
                                           std::to_string(twin->line) + ")");
      }
      spec.key_sets.push_back(std::move(ks));
      continue;
    }
    if (children.count(name) != 0) {
      return parse_error(loc_.at(c), elem(c) + " repeated (first at line " +
                                         std::to_string(loc_.line(children[name])) + ")");
    }
    children[name] = c;
  }
  for (const char* required : {"se", "secure-channel", "script"}) {
    if (children.count(required) == 0) {
      return parse_error(loc_.at(n), "<prep> has no <" + std::string(required) + "> element");
    }
  }

  const pugi::xml_node se = children["se"];
  PF_TRY(check_attributes(se, {"lookup", "attribute"}));
  PF_TRY(check_no_children(se));
  PF_ASSIGN_OR_RETURN(const auto lookup, need(se, "lookup"));
  PF_ASSIGN_OR_RETURN(spec.se.kind, one_of(lookup, "<se>", kLookups, lookup_name));
  PF_ASSIGN_OR_RETURN(const auto se_attr, need(se, "attribute"));
  spec.se.attribute = se_attr.value();
  const AttributeSpec* a = p_.attribute(spec.se.attribute);
  if (a == nullptr) {
    return parse_error(loc_.at(se_attr), "<se>: attribute '" + spec.se.attribute + "' is not declared");
  }
  if (!a->required || a->field_encryption != FieldEncryption::kNone) {
    return parse_error(loc_.at(se_attr), "<se>: attribute '" + spec.se.attribute +
                                             "' must be required and not field-encrypted");
  }

  PF_TRY(prep_channel(children["secure-channel"], spec.channel));
  if (spec.key_handling == KeyHandling::kHost && !spec.channel.diversification) {
    // The host mode reads card keys the HSM computes from a master key; stored static keys
    // (diversification "none") are sensitive token objects whose values never come out.
    return parse_error(loc_.at(n.attribute("key-handling")),
                       "<prep>: key-handling=\"host\" needs a diversification scheme in <secure-channel>: with "
                       "diversification=\"none\" the static keys are token keys whose values the HSM never gives "
                       "out (use key-handling=\"strict\")");
  }

  if (auto it = children.find("bundle"); it != children.end()) {
    const pugi::xml_node b = it->second;
    PF_TRY(check_attributes(b, {"segment-cards", "zstd-level"}));
    PF_TRY(check_no_children(b));
    if (const auto sc = b.attribute("segment-cards")) {
      PF_ASSIGN_OR_RETURN(spec.bundle_segment_cards, number(sc, "<bundle>", 1, 65536));
    }
    if (const auto z = b.attribute("zstd-level")) {
      PF_ASSIGN_OR_RETURN(const std::size_t level, number(z, "<bundle>", 1, 19));
      spec.bundle_zstd_level = static_cast<int>(level);
    }
  }
  if (auto it = children.find("icc-keys"); it != children.end()) {
    const pugi::xml_node k = it->second;
    const std::string ctx = "<icc-keys>";
    PF_TRY(check_attributes(k, {"option", "pan", "psn", "imk-ac", "imk-smi", "imk-smc"}));
    PF_TRY(check_no_children(k));
    IccKeysSpec icc;
    icc.line = loc_.line(k);
    PF_ASSIGN_OR_RETURN(const auto option, need(k, "option"));
    const std::string_view o = option.value();
    if (o == "A") icc.option = IccDerivationOption::kA;
    else if (o == "B") icc.option = IccDerivationOption::kB;
    else if (o == "C") icc.option = IccDerivationOption::kC;
    else return parse_error(loc_.at(option), ctx + ": option must be A, B or C, not '" + std::string(o) + "'");
    for (const char* part : {"pan", "psn"}) {
      const auto pa = k.attribute(part);
      if (!pa) {
        if (std::string_view(part) == "pan") return parse_error(loc_.at(k), ctx + ": missing required pan=");
        continue;
      }
      std::string& target = std::string_view(part) == "pan" ? icc.pan_attribute : icc.psn_attribute;
      target = pa.value();
      PF_TRY(prep_value_attribute(k, target, ctx + " " + part + "=", pa));
      if (p_.attribute(target)->type != AttributeType::kDigits) {
        return parse_error(loc_.at(pa), ctx + ": " + part + "= needs a digits attribute; '" + target + "' is not one");
      }
    }
    for (auto [name, target] : {std::pair{"imk-ac", &icc.imk_ac_uri}, std::pair{"imk-smi", &icc.imk_smi_uri},
                                std::pair{"imk-smc", &icc.imk_smc_uri}}) {
      PF_ASSIGN_OR_RETURN(const auto uri, need(k, name));
      PF_ASSIGN_OR_RETURN(*target, key_uri(uri, ctx));
    }
    spec.icc_keys = std::move(icc);
  }
  PF_TRY(prep_script(children["script"], spec));
  PF_TRY(prep_check_channels(spec));
  // DGIs of other sources against the rest of <prep>.
  // Each command with the SCP of its session: the registry's key set sessions use the
  // <secure-channel> SCP, <key-set> sessions SCP03.
  std::vector<std::pair<const CommandSpec*, std::uint8_t>> commands;
  for (const CommandSpec& c : spec.script) commands.emplace_back(&c, spec.channel.scp);
  for (const SessionSpec& session : spec.sessions) {
    for (const CommandSpec& c : session.commands) {
      commands.emplace_back(&c, session.key_set.empty() ? spec.channel.scp : std::uint8_t{3});
    }
  }
  for (const auto& [cp, scp] : commands) {
    const CommandSpec& c = *cp;
    for (const DgiSpec& d : c.dgis) {
      const std::string ctx = "<dgi id=\"" + format_dgi_id(d.id) + "\">";
      const std::string at = loc_.at_line(d.line);
      if ((d.source == DgiSource::kIccMasterKeys || d.source == DgiSource::kIccKeyKcvs) && !spec.icc_keys) {
        return parse_error(at, ctx + ": source=\"" +
                                   std::string(d.source == DgiSource::kIccMasterKeys ? "icc-master-keys" : "icc-key-kcvs") +
                                   "\" needs an <icc-keys> element in <prep>");
      }
      const bool moved = d.source == DgiSource::kIccMasterKeys || d.source == DgiSource::kKeyToKey;
      if (moved && scp != 3 && !d.via_host) {
        return parse_error(at, ctx + ": keys and secrets move key-to-key under the card's DEK only when it is an "
                                     "AES K-DEK (SCP03): the module cannot wrap under SCP02's 3DES S-DEK; add "
                                     "via=\"host\" to opt in to the host path (the value is read into host memory "
                                     "and encrypted there, and the run report says so)");
      }
      if (d.via_host && scp == 3) {
        return parse_error(at, ctx + ": via=\"host\" is refused with SCP03: the AES K-DEK takes the value "
                                     "key-to-key inside the HSM");
      }
    }
  }
  p_.prep = std::move(spec);
  return ok_status();
}

Status ProfileParser::prep_channel(const pugi::xml_node& n, SecureChannelSpec& ch) {
  const std::string ctx = "<secure-channel>";
  ch.line = loc_.line(n);
  PF_TRY(check_attributes(n, {"scp", "level", "key-type", "diversification", "master-key", "enc-key",
                              "mac-key", "dek-key", "host-challenge-key"}));
  PF_TRY(check_no_children(n));
  PF_ASSIGN_OR_RETURN(const auto scp, need(n, "scp"));
  PF_ASSIGN_OR_RETURN(ch.scp, hex_byte(scp, ctx));
  if (ch.scp != 2 && ch.scp != 3) return parse_error(loc_.at(scp), ctx + ": scp must be 02 or 03");
  PF_ASSIGN_OR_RETURN(const auto level, need(n, "level"));
  PF_ASSIGN_OR_RETURN(ch.level, hex_byte(level, ctx));
  if (ch.scp == 3 && !check_scp03_security_level(ch.level)) {
    return parse_error(loc_.at(level), ctx + ": SCP03 security levels are 01 03 11 13 33");
  }
  if (ch.scp == 2 && ch.level != 0x01 && ch.level != 0x03) {
    return parse_error(loc_.at(level), ctx + ": SCP02 security levels are 01 03");
  }
  PF_ASSIGN_OR_RETURN(const auto kt, need(n, "key-type"));
  auto type = parse_key_type(kt.value());
  if (!type) return parse_error(loc_.at(kt), ctx + ": " + type.error().message());
  ch.key_type = *type;
  const bool aes = key_family(ch.key_type) == KeyFamily::kAes;
  if ((ch.scp == 3) != aes) {
    return parse_error(loc_.at(kt), ctx + ": SCP03 uses AES keys and SCP02 DES keys (des2 or des3), "
                                          "got key-type " + std::string(kt.value()));
  }
  PF_ASSIGN_OR_RETURN(const auto div, need(n, "diversification"));
  const std::string_view div_name = div.value();
  if (div_name != "none") {
    auto scheme = parse_diversification_scheme(div_name);
    if (!scheme) {
      return parse_error(loc_.at(div), ctx + ": unknown diversification '" + std::string(div_name) +
                                           "' (known: emv, visa2, kdf3, none)");
    }
    ch.diversification = *scheme;
    if (*scheme == DiversificationScheme::kKdf3 && !aes) {
      return parse_error(loc_.at(div), ctx + ": kdf3 diversifies AES keys only");
    }
    if (*scheme == DiversificationScheme::kVisa2 && aes) {
      return parse_error(loc_.at(div), ctx + ": visa2 diversifies DES keys only");
    }
    PF_ASSIGN_OR_RETURN(const auto master, need(n, "master-key"));
    PF_ASSIGN_OR_RETURN(ch.master_key_uri, key_uri(master, ctx));
    for (const char* k : {"enc-key", "mac-key", "dek-key"}) {
      if (const auto extra = n.attribute(k)) {
        return parse_error(loc_.at(extra), ctx + ": " + k + "= is for diversification=\"none\"; "
                                               "with a scheme the keys come from master-key=");
      }
    }
  } else {
    if (const auto extra = n.attribute("master-key")) {
      return parse_error(loc_.at(extra), ctx + ": master-key= needs a diversification scheme");
    }
    PF_ASSIGN_OR_RETURN(const auto enc, need(n, "enc-key"));
    PF_ASSIGN_OR_RETURN(ch.enc_key_uri, key_uri(enc, ctx));
    PF_ASSIGN_OR_RETURN(const auto mac, need(n, "mac-key"));
    PF_ASSIGN_OR_RETURN(ch.mac_key_uri, key_uri(mac, ctx));
    PF_ASSIGN_OR_RETURN(const auto dek, need(n, "dek-key"));
    PF_ASSIGN_OR_RETURN(ch.dek_key_uri, key_uri(dek, ctx));
  }
  PF_ASSIGN_OR_RETURN(const auto hc, need(n, "host-challenge-key"));
  PF_ASSIGN_OR_RETURN(ch.host_challenge_key_uri, key_uri(hc, ctx));
  return ok_status();
}

Status ProfileParser::prep_value_attribute(const pugi::xml_node& n, const std::string& name,
                                           const std::string& what, const pugi::xml_attribute& named_by) {
  const pugi::xml_attribute by = named_by ? named_by : n.attribute("attribute");
  const std::string where = by ? loc_.at(by) : loc_.at(n);
  const AttributeSpec* a = p_.attribute(name);
  if (a == nullptr) {
    return parse_error(where,
                       what + ": attribute '" + name + "' is not declared");
  }
  if (a->field_encryption != FieldEncryption::kNone) {
    // The XOF keeps such values wrapped: they only go whole, key-to-key, into a DGI of
    // their own (<dgi attribute= encrypted="true">), never into a TLV or an encoding.
    return parse_error(where, what + ": attribute '" + name +
                                  "' is field-encrypted: it can only fill a whole DGI with encrypted=\"true\" "
                                  "(moved key-to-key under the card's DEK)");
  }
  return ok_status();
}

Result<ValueSpec> ProfileParser::prep_value(const pugi::xml_node& n, const std::string& ctx) {
  ValueSpec v;
  if (const auto derive = n.attribute("derive")) {
    if (std::string_view(derive.value()) != "track2") {
      return parse_error(loc_.at(derive), ctx + ": derive=\"" + std::string(derive.value()) + "\" is not one of: track2");
    }
    for (const char* k : {"attribute", "value", "encoding", "length", "suffix"}) {
      if (const auto extra = n.attribute(k)) {
        return parse_error(loc_.at(extra), ctx + ": " + k + "= does not go with derive=");
      }
    }
    v.derivation = ValueDerivation::kTrack2;
    struct Part {
      const char* name;
      std::string* target;
      bool required;
    };
    for (const Part& part : {Part{"pan", &v.track2.pan, true}, Part{"expiry", &v.track2.expiry, true},
                             Part{"service-code", &v.track2.service_code, true},
                             Part{"discretionary", &v.track2.discretionary, false}}) {
      const auto a = n.attribute(part.name);
      if (!a) {
        if (part.required) return parse_error(loc_.at(n), ctx + ": derive=\"track2\" needs " + part.name + "=");
        continue;
      }
      *part.target = a.value();
      PF_TRY(prep_value_attribute(n, *part.target, ctx + " " + part.name + "=", a));
      const AttributeSpec* spec = p_.attribute(*part.target);
      if (spec->type != AttributeType::kDigits && spec->type != AttributeType::kYymm) {
        return parse_error(loc_.at(a), ctx + ": " + part.name + "= needs a digits or yymm attribute; '" +
                                           *part.target + "' is not one");
      }
    }
    return v;
  }
  for (const char* k : {"pan", "expiry", "service-code", "discretionary"}) {
    if (const auto extra = n.attribute(k)) {
      return parse_error(loc_.at(extra), ctx + ": " + k + "= goes with derive=\"track2\" only");
    }
  }
  const auto attr = n.attribute("attribute");
  const auto value = n.attribute("value");
  if (static_cast<bool>(attr) == static_cast<bool>(value)) {
    return parse_error(loc_.at(n), ctx + ": exactly one of attribute= or value= (hex) is needed");
  }
  if (value) {
    for (const char* k : {"encoding", "length", "suffix"}) {
      if (const auto extra = n.attribute(k)) {
        return parse_error(loc_.at(extra), ctx + ": " + k + "= applies to attribute= values only");
      }
    }
    PF_ASSIGN_OR_RETURN(v.constant, hex_value(value, ctx, 0, kMaxDgiValue));
    return v;
  }
  v.attribute = attr.value();
  PF_TRY(prep_value_attribute(n, v.attribute, ctx));
  if (const auto e = n.attribute("encoding")) {
    PF_ASSIGN_OR_RETURN(v.encoding, one_of(e, ctx, kEncodings, encoding_name));
  }
  const AttributeSpec* spec = p_.attribute(v.attribute);
  const bool digits = spec->type == AttributeType::kDigits || spec->type == AttributeType::kYymm;
  if ((v.encoding == ValueEncoding::kBcd || v.encoding == ValueEncoding::kNumeric) && !digits) {
    return parse_error(loc_.at(n.attribute("encoding")),
                       ctx + ": encoding " + std::string(encoding_name(v.encoding)) +
                           " needs a digits or yymm attribute; '" + v.attribute + "' is not one");
  }
  if (v.encoding == ValueEncoding::kHex && spec->type != AttributeType::kHex) {
    return parse_error(loc_.at(n.attribute("encoding")),
                       ctx + ": encoding hex needs a hex attribute; '" + v.attribute + "' is not one");
  }
  if (const auto l = n.attribute("length")) {
    if (v.encoding != ValueEncoding::kNumeric) {
      return parse_error(loc_.at(l), ctx + ": length= applies to encoding=\"numeric\" only");
    }
    PF_ASSIGN_OR_RETURN(v.length, number(l, ctx, 1, 32));
  } else if (v.encoding == ValueEncoding::kNumeric) {
    return parse_error(loc_.at(n), ctx + ": encoding=\"numeric\" needs length= (bytes)");
  }
  if (const auto s = n.attribute("suffix")) {
    PF_ASSIGN_OR_RETURN(v.suffix, hex_value(s, ctx, 1, 16));
  }
  return v;
}

Status ProfileParser::prep_dgi_via(const pugi::xml_node& n, DgiSpec& d, const std::string& ctx) {
  const auto via = n.attribute("via");
  if (!via) return ok_status();
  if (std::string_view(via.value()) != "host") {
    return parse_error(loc_.at(via), ctx + ": via=\"" + std::string(via.value()) + "\" is not one of: host");
  }
  if (d.source == DgiSource::kIccKeyKcvs) {
    return parse_error(loc_.at(via), ctx + ": via= applies to values encrypted for the card, not to KCVs");
  }
  d.via_host = true;
  return ok_status();
}

Result<DgiSpec> ProfileParser::prep_dgi(const pugi::xml_node& n) {
  DgiSpec d;
  d.line = loc_.line(n);
  PF_TRY(check_attributes(n, {"id", "template", "encrypted", "attribute", "value", "encoding", "length",
                              "suffix", "source", "via"}));
  PF_ASSIGN_OR_RETURN(const auto id, need(n, "id"));
  PF_ASSIGN_OR_RETURN(const Bytes id_bytes, hex_value(id, "<dgi>", 2, 2));
  d.id = static_cast<DgiId>((id_bytes[0] << 8) | id_bytes[1]);
  const std::string ctx = "<dgi id=\"" + to_hex(id_bytes) + "\">";
  if (const auto source = n.attribute("source")) {
    const std::string_view name = source.value();
    if (name == "icc-master-keys") {
      d.source = DgiSource::kIccMasterKeys;
      d.encrypted = true;
    } else if (name == "icc-key-kcvs") {
      d.source = DgiSource::kIccKeyKcvs;
    } else {
      return parse_error(loc_.at(source),
                         ctx + ": source=\"" + std::string(name) + "\" is not one of: icc-master-keys, icc-key-kcvs");
    }
    for (const auto& a : n.attributes()) {
      const std::string_view k = a.name();
      if (k != "id" && k != "source" && k != "via") {
        return parse_error(loc_.at(a), ctx + ": " + std::string(k) + "= does not go with source=");
      }
    }
    PF_TRY(check_no_children(n));
    PF_TRY(prep_dgi_via(n, d, ctx));
    return d;
  }
  // A field-encrypted attribute (held wrapped in the XOF) goes key-to-key under the DEK.
  if (const auto attr = n.attribute("attribute")) {
    const AttributeSpec* spec = p_.attribute(attr.value());
    if (spec != nullptr && spec->field_encryption != FieldEncryption::kNone) {
      for (const char* k : {"template", "value", "encoding", "length", "suffix", "source"}) {
        if (const auto extra = n.attribute(k)) {
          return parse_error(loc_.at(extra), ctx + ": " + k + "= does not apply to the field-encrypted attribute '" +
                                                 spec->name + "' (its value moves key-to-key, unchanged)");
        }
      }
      bool encrypted = false;
      if (const auto e = n.attribute("encrypted")) {
        PF_ASSIGN_OR_RETURN(encrypted, boolean(e, ctx));
      }
      if (!encrypted) {
        return parse_error(loc_.at(attr), ctx + ": attribute '" + spec->name +
                                              "' is field-encrypted: its DGI must say encrypted=\"true\" (it goes "
                                              "key-to-key under the card's DEK, never in clear)");
      }
      PF_TRY(check_no_children(n));
      d.source = DgiSource::kKeyToKey;
      d.encrypted = true;
      d.wrapped_attribute = spec->name;
      PF_TRY(prep_dgi_via(n, d, ctx));
      return d;
    }
  }
  if (const auto via = n.attribute("via")) {
    return parse_error(loc_.at(via), ctx + ": via= applies to source= DGIs and field-encrypted attributes only");
  }
  if (const auto e = n.attribute("encrypted")) {
    PF_ASSIGN_OR_RETURN(d.encrypted, boolean(e, ctx));
  }
  if (const auto t = n.attribute("template")) {
    PF_ASSIGN_OR_RETURN(const Bytes tag, hex_value(t, ctx, 1, 3));
    Tag value = 0;
    for (std::uint8_t b : tag) value = (value << 8) | b;
    if (!tag_is_constructed(value) || tag_size(value) != tag.size()) {
      return parse_error(loc_.at(t), ctx + ": template " + to_hex(tag) + " is not a constructed BER tag");
    }
    d.template_tag = value;
  }
  bool has_element_children = false;
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside " + ctx);
    }
    if (c.type() != pugi::node_element) continue;
    has_element_children = true;
    if (std::string_view(c.name()) != "tlv") {
      return parse_error(loc_.at(c), "unexpected element " + elem(c) + " inside " + ctx + " (known: tlv)");
    }
    PF_TRY(check_attributes(c, {"tag", "attribute", "value", "encoding", "length", "suffix", "derive", "pan",
                                "expiry", "service-code", "discretionary"}));
    PF_TRY(check_no_children(c));
    PF_ASSIGN_OR_RETURN(const auto tag_attr, need(c, "tag"));
    PF_ASSIGN_OR_RETURN(const Bytes tag, hex_value(tag_attr, ctx + " <tlv>", 1, 3));
    TlvSpec t;
    for (std::uint8_t b : tag) t.tag = (t.tag << 8) | b;
    if (tag_size(t.tag) != tag.size() || tag_is_constructed(t.tag)) {
      return parse_error(loc_.at(tag_attr), ctx + " <tlv>: tag " + to_hex(tag) +
                                                " is not a primitive BER tag of that length");
    }
    PF_ASSIGN_OR_RETURN(t.value, prep_value(c, ctx + " <tlv tag=\"" + to_hex(tag) + "\">"));
    d.tlvs.push_back(std::move(t));
  }
  const bool raw = n.attribute("attribute") || n.attribute("value");
  if (has_element_children == raw) {
    return parse_error(loc_.at(n), ctx + ": give either <tlv> children or one attribute=/value=");
  }
  if (raw) {
    if (d.template_tag) {
      return parse_error(loc_.at(n.attribute("template")), ctx + ": template= needs <tlv> children");
    }
    PF_ASSIGN_OR_RETURN(d.value, prep_value(n, ctx));
  }
  return d;
}

Result<CommandSpec> ProfileParser::prep_command(const pugi::xml_node& c) {
  // An AID attribute of a content-management command: required, 5 to 16 bytes.
  auto aid_of = [this](const pugi::xml_node& node, const char* attribute,
                       const std::string& ctx) -> Result<Bytes> {
    PF_ASSIGN_OR_RETURN(const auto a, need(node, attribute));
    return hex_value(a, ctx, kMinAidLength, kMaxAidLength);
  };
  // Privileges (GPC §11.1.2): 1 byte, or 3 bytes (Tables 11-7 to 11-9).
  auto privileges_of = [this](const pugi::xml_attribute& a, const std::string& ctx) -> Result<Bytes> {
    PF_ASSIGN_OR_RETURN(Bytes p, hex_value(a, ctx, 0, kMaxShortApduData));
    if (p.size() != 1 && p.size() != 3) {
      return parse_error(loc_.at(a), ctx + ": privileges must be 1 or 3 bytes, got " + std::to_string(p.size()));
    }
    return p;
  };
  // The command's values are constants: it is built once here, so that what the builder
  // refuses (a data field over 255 bytes) is this file's error, not every card's.
  auto buildable = [this](const pugi::xml_node& node, const std::string& ctx,
                          const Result<CommandApdu>& built) -> Status {
    if (!built) return parse_error(loc_.at(node), ctx + ": " + built.error().message());
    return ok_status();
  };
  const std::string name = c.name();
  CommandSpec cmd;
  cmd.line = loc_.line(c);
  const std::string ctx = elem(c);
  if (name == "select" || name == "install-for-personalization") {
    PF_TRY(check_attributes(c, {"aid"}));
    PF_TRY(check_no_children(c));
    cmd.kind = name == "select" ? CommandKind::kSelect : CommandKind::kInstallForPersonalization;
    PF_ASSIGN_OR_RETURN(const auto aid, need(c, "aid"));
    PF_ASSIGN_OR_RETURN(cmd.aid, hex_value(aid, ctx, kMinAidLength, kMaxAidLength));
  } else if (name == "set-status") {
    PF_TRY(check_attributes(c, {"scope", "aid", "state"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kSetStatus;
    PF_ASSIGN_OR_RETURN(const auto scope, need(c, "scope"));
    const std::string_view s = scope.value();
    if (s == "card") {
      cmd.status_scope = static_cast<std::uint8_t>(SetStatusScope::kIssuerSecurityDomain);
    } else if (s == "application") {
      cmd.status_scope = static_cast<std::uint8_t>(SetStatusScope::kApplicationOrSecurityDomain);
    } else if (s == "domain-and-applications") {
      cmd.status_scope = static_cast<std::uint8_t>(SetStatusScope::kSecurityDomainAndApplications);
    } else {
      return parse_error(loc_.at(scope), ctx + ": unknown scope '" + std::string(s) +
                                             "' (known: card, application, domain-and-applications)");
    }
    const auto aid = c.attribute("aid");
    if (s == "card" && aid) return parse_error(loc_.at(aid), ctx + ": scope card takes no aid=");
    if (s != "card") {
      PF_ASSIGN_OR_RETURN(const auto a, need(c, "aid"));
      PF_ASSIGN_OR_RETURN(cmd.aid, hex_value(a, ctx, kMinAidLength, kMaxAidLength));
    }
    PF_ASSIGN_OR_RETURN(const auto state, need(c, "state"));
    PF_ASSIGN_OR_RETURN(cmd.state, hex_byte(state, ctx));
  } else if (name == "install-for-install") {
    PF_TRY(check_attributes(c, {"load-file", "module", "aid", "privileges", "c9", "ef", "token", "make-selectable"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kInstallForInstall;
    PF_ASSIGN_OR_RETURN(cmd.load_file_aid, aid_of(c, "load-file", ctx));
    PF_ASSIGN_OR_RETURN(cmd.module_aid, aid_of(c, "module", ctx));
    PF_ASSIGN_OR_RETURN(cmd.aid, aid_of(c, "aid", ctx));
    PF_ASSIGN_OR_RETURN(const auto priv, need(c, "privileges"));
    PF_ASSIGN_OR_RETURN(cmd.privileges, privileges_of(priv, ctx));
    if (const auto c9 = c.attribute("c9")) {
      PF_ASSIGN_OR_RETURN(cmd.application_parameters, hex_value(c9, ctx, 0, kMaxShortApduData));
    }
    if (const auto ef = c.attribute("ef")) {
      PF_ASSIGN_OR_RETURN(Bytes system, hex_value(ef, ctx, 0, kMaxShortApduData));
      // The EF value is itself TLVs (C7/C8 quotas, CB, CF implicit selection...).
      auto tlvs = parse_tlvs(system, TlvParseOptions{.skip_zero_padding = false});
      if (!tlvs) {
        return parse_error(loc_.at(ef), ctx + ": ef must be the system parameters as BER-TLVs (C7, C8, CF...): " +
                                            tlvs.error().message());
      }
      cmd.system_parameters = std::move(system);
    }
    if (const auto token = c.attribute("token")) {
      PF_ASSIGN_OR_RETURN(cmd.token, hex_value(token, ctx, 0, kMaxShortApduData));
    }
    if (const auto ms = c.attribute("make-selectable")) {
      PF_ASSIGN_OR_RETURN(cmd.make_selectable, boolean(ms, ctx));
    }
    InstallForInstallFields fields;
    fields.load_file_aid = cmd.load_file_aid;
    fields.module_aid = cmd.module_aid;
    fields.instance_aid = cmd.aid;
    fields.privileges = cmd.privileges;
    fields.parameters.application_specific = cmd.application_parameters;
    fields.parameters.system_parameters = cmd.system_parameters;
    fields.token = cmd.token;
    PF_TRY(buildable(c, ctx, cmd.make_selectable ? install_for_install_and_make_selectable(fields)
                                                 : install_for_install(fields)));
  } else if (name == "install-for-make-selectable") {
    PF_TRY(check_attributes(c, {"aid", "privileges"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kInstallForMakeSelectable;
    PF_ASSIGN_OR_RETURN(cmd.aid, aid_of(c, "aid", ctx));
    cmd.privileges = {0x00};
    if (const auto priv = c.attribute("privileges")) {
      PF_ASSIGN_OR_RETURN(cmd.privileges, privileges_of(priv, ctx));
    }
    PF_TRY(buildable(c, ctx, install_for_make_selectable(cmd.aid, cmd.privileges)));
  } else if (name == "install-for-extradition") {
    PF_TRY(check_attributes(c, {"sd", "aid"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kInstallForExtradition;
    PF_ASSIGN_OR_RETURN(cmd.sd_aid, aid_of(c, "sd", ctx));
    PF_ASSIGN_OR_RETURN(cmd.aid, aid_of(c, "aid", ctx));
    if (cmd.sd_aid == cmd.aid) {
      return parse_error(loc_.at(c.attribute("aid")), ctx + ": aid is the security domain sd= itself");
    }
    PF_TRY(buildable(c, ctx, install_for_extradition(cmd.sd_aid, cmd.aid)));
  } else if (name == "delete") {
    PF_TRY(check_attributes(c, {"aid", "related"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kDelete;
    PF_ASSIGN_OR_RETURN(cmd.aid, aid_of(c, "aid", ctx));
    if (const auto related = c.attribute("related")) {
      PF_ASSIGN_OR_RETURN(cmd.delete_related, boolean(related, ctx));
    }
    PF_TRY(buildable(c, ctx, delete_object(cmd.aid, cmd.delete_related)));
  } else if (name == "apdu") {
    PF_TRY(check_attributes(c, {"hex"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kApdu;
    PF_ASSIGN_OR_RETURN(const auto hex, need(c, "hex"));
    PF_ASSIGN_OR_RETURN(cmd.apdu, hex_value(hex, ctx, 4, 261));
    auto parsed = CommandApdu::parse(cmd.apdu);
    if (!parsed) return parse_error(loc_.at(hex), ctx + ": " + parsed.error().message());
    if ((parsed->cla() & 0x04) != 0) {
      return parse_error(loc_.at(hex), ctx + ": give the plain command (CLA without the secure "
                                             "messaging bit); the session wraps it");
    }
  } else if (name == "put-key") {
    PF_TRY(check_attributes(c, {"key-set", "replace"}));
    PF_TRY(check_no_children(c));
    cmd.kind = CommandKind::kPutKey;
    PF_ASSIGN_OR_RETURN(const auto ks, need(c, "key-set"));
    cmd.key_set = ks.value();
    if (const auto replace = c.attribute("replace")) {
      PF_ASSIGN_OR_RETURN(cmd.old_kvn, hex_byte(replace, ctx));
      if (cmd.old_kvn == 0 || cmd.old_kvn > 0x7F) {
        return parse_error(loc_.at(replace), ctx + ": replace= is the KVN replaced, 01 to 7F");
      }
    }
  } else if (name == "store-data") {
    PF_TRY(check_attributes(c, {}));
    cmd.kind = CommandKind::kStoreData;
    std::set<DgiId> seen;
    for (const auto& d : c.children()) {
      if (d.type() == pugi::node_pcdata || d.type() == pugi::node_cdata) {
        return parse_error(loc_.at_text(d), "unexpected text inside <store-data>");
      }
      if (d.type() != pugi::node_element) continue;
      if (std::string_view(d.name()) != "dgi") {
        return parse_error(loc_.at(d), "unexpected element " + elem(d) + " inside <store-data> (known: dgi)");
      }
      PF_ASSIGN_OR_RETURN(DgiSpec dgi, prep_dgi(d));
      if (!seen.insert(dgi.id).second) {
        return parse_error(loc_.at(d), "<store-data>: DGI " + to_hex(Bytes{static_cast<std::uint8_t>(dgi.id >> 8),
                                                                             static_cast<std::uint8_t>(dgi.id)}) +
                                           " repeated");
      }
      cmd.dgis.push_back(std::move(dgi));
    }
    if (cmd.dgis.empty()) return parse_error(loc_.at(c), "<store-data> holds no <dgi>");
  } else {
    return parse_error(loc_.at(c), "unknown element " + elem(c) +
                                       " in <script> (known: apdu, delete, install-for-extradition, "
                                       "install-for-install, install-for-make-selectable, "
                                       "install-for-personalization, put-key, select, session, set-status, "
                                       "store-data)");
  }
  return cmd;
}

Status ProfileParser::prep_script(const pugi::xml_node& n, PrepSpec& spec) {
  PF_TRY(check_attributes(n, {}));
  std::size_t count = 0;
  auto add = [&](const pugi::xml_node& c, std::vector<CommandSpec>& to) -> Status {
    if (++count > kMaxScriptCommands) return parse_error(loc_.at(c), "<script>: more than 256 commands");
    PF_ASSIGN_OR_RETURN(CommandSpec cmd, prep_command(c));
    to.push_back(std::move(cmd));
    return ok_status();
  };
  for (const auto& c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      return parse_error(loc_.at_text(c), "unexpected text inside <script>");
    }
    if (c.type() != pugi::node_element) continue;
    if (std::string_view(c.name()) != "session") {
      if (!spec.sessions.empty()) {
        return parse_error(loc_.at(c), elem(c) + " after a <session>: the commands of the first session (the "
                                                 "ISD) come first; later ones go inside a <session>");
      }
      PF_TRY(add(c, spec.script));
      continue;
    }
    if (spec.sessions.size() == kMaxSessions) {
      return parse_error(loc_.at(c), "<script>: more than " + std::to_string(kMaxSessions) + " <session> elements");
    }
    PF_TRY(check_attributes(c, {"sd", "keys"}));
    SessionSpec session;
    session.line = loc_.line(c);
    if (const auto sd = c.attribute("sd")) {
      PF_ASSIGN_OR_RETURN(session.sd_aid, hex_value(sd, "<session>", kMinAidLength, kMaxAidLength));
    }
    if (const auto keys = c.attribute("keys")) session.key_set = keys.value();
    for (const auto& k : c.children()) {
      if (k.type() == pugi::node_pcdata || k.type() == pugi::node_cdata) {
        return parse_error(loc_.at_text(k), "unexpected text inside <session>");
      }
      if (k.type() != pugi::node_element) continue;
      if (std::string_view(k.name()) == "session") {
        return parse_error(loc_.at(k), "<session> inside a <session>: sessions follow one another in <script>");
      }
      PF_TRY(add(k, session.commands));
    }
    if (session.commands.empty()) return parse_error(loc_.at(c), "<session> holds no command");
    spec.sessions.push_back(std::move(session));
  }
  if (spec.script.empty()) {
    return parse_error(loc_.at(n), "<script> holds no command for its first session (the ISD, before any <session>)");
  }
  return ok_status();
}

Result<KeySetSpec> ProfileParser::prep_key_set(const pugi::xml_node& n) {
  PF_TRY(check_attributes(n, {"name", "sd", "kvn", "i", "level", "key-type", "diversification", "master-key"}));
  PF_TRY(check_no_children(n));
  KeySetSpec ks;
  ks.line = loc_.line(n);
  PF_ASSIGN_OR_RETURN(const auto name, need(n, "name"));
  PF_ASSIGN_OR_RETURN(ks.name, identifier(name, "<key-set>"));
  const std::string ctx = "<key-set name=\"" + ks.name + "\">";
  if (const auto sd = n.attribute("sd")) {
    PF_ASSIGN_OR_RETURN(ks.sd_aid, hex_value(sd, ctx, kMinAidLength, kMaxAidLength));
  }
  PF_ASSIGN_OR_RETURN(const auto kvn, need(n, "kvn"));
  PF_ASSIGN_OR_RETURN(ks.kvn, hex_byte(kvn, ctx));
  if (ks.kvn == 0 || ks.kvn > 0x7F) return parse_error(loc_.at(kvn), ctx + ": kvn must be 01 to 7F");
  if (const auto i = n.attribute("i")) {
    PF_ASSIGN_OR_RETURN(ks.i, hex_byte(i, ctx));
  }
  // Offline preparation needs the pseudo-random card challenge (i b5), as for the registry's SEs.
  if ((ks.i & 0x10) == 0) {
    return parse_error(loc_.at(n), ctx + ": i=" + to_hex(Bytes{ks.i}) +
                                       " has no pseudo-random card challenge (b5): its sessions cannot be "
                                       "prepared offline");
  }
  if (const auto level = n.attribute("level")) {
    PF_ASSIGN_OR_RETURN(ks.level, hex_byte(level, ctx));
    if (!check_scp03_security_level(ks.level)) {
      return parse_error(loc_.at(level), ctx + ": SCP03 security levels are 01 03 11 13 33");
    }
  }
  PF_ASSIGN_OR_RETURN(const auto kt, need(n, "key-type"));
  auto type = parse_key_type(kt.value());
  if (!type) return parse_error(loc_.at(kt), ctx + ": " + type.error().message());
  if (*type != KeyType::kAes128 && *type != KeyType::kAes256) {
    // PUT KEY carries the key encrypted under the session's AES K-DEK, key-to-key in the
    // HSM: whole AES blocks only (an AES-192 key would need padding the module cannot add).
    return parse_error(loc_.at(kt), ctx + ": a key set the script puts is SCP03 aes128 or aes256, not " +
                                        std::string(kt.value()));
  }
  ks.key_type = *type;
  PF_ASSIGN_OR_RETURN(const auto div, need(n, "diversification"));
  if (std::string_view(div.value()) != "kdf3") {
    return parse_error(loc_.at(div), ctx + ": diversification must be kdf3 (the SCP03 key sets are derived per "
                                           "SE from the service provider's AES master key)");
  }
  ks.diversification = DiversificationScheme::kKdf3;
  PF_ASSIGN_OR_RETURN(const auto master, need(n, "master-key"));
  PF_ASSIGN_OR_RETURN(ks.master_key_uri, key_uri(master, ctx));
  return ks;
}

// Every step in the right channel (docs/profile.md "Sessions"), checked on the profile
// alone: a <put-key> goes to the security domain that owns the key set, in a channel whose
// DEK the module can wrap under; a session opens with a key set only after a <put-key>
// put it on the SE, to that key set's SD; INSTALL [for personalization] goes through the
// SD the application is associated with, as far as the script itself says (installed in a
// session to an SD, or extradited to one).
Status ProfileParser::prep_check_channels(const PrepSpec& spec) {
  const auto sd_name = [](const Bytes& aid) { return aid.empty() ? std::string("the ISD") : to_hex(aid); };
  std::map<std::string, std::size_t> put;                 // key set -> line of its <put-key>
  std::map<Bytes, std::pair<Bytes, std::size_t>> assoc;   // application -> (its SD, line that said so)
  const auto check_session = [&](const std::vector<CommandSpec>& commands, const Bytes& sd, std::uint8_t scp,
                                 const std::string& opened) -> Status {
    for (const CommandSpec& c : commands) {
      const std::string at = loc_.at_line(c.line);
      switch (c.kind) {
        case CommandKind::kPutKey: {
          const KeySetSpec* ks = find_key_set(spec, c.key_set);
          if (ks == nullptr) {
            return parse_error(at, "<put-key>: key-set '" + c.key_set + "' is not declared (<key-set name=...> in <prep>)");
          }
          if (ks->sd_aid != sd) {
            return parse_error(at, "<put-key key-set=\"" + c.key_set + "\">: step in the wrong channel: the key set "
                                   "belongs to " + sd_name(ks->sd_aid) + ", this session is " + opened +
                                   "; PUT KEY goes to the security domain whose keys it loads");
          }
          if (scp != 3) {
            return parse_error(at, "<put-key key-set=\"" + c.key_set + "\">: in an SCP02 channel the new keys would be "
                                   "encrypted under the 3DES S-DEK, which the module cannot wrap under; put them in "
                                   "an SCP03 session");
          }
          put.emplace(c.key_set, c.line);
          break;
        }
        case CommandKind::kInstallForInstall:
          assoc[c.aid] = {sd, c.line};
          break;
        case CommandKind::kInstallForExtradition:
          assoc[c.aid] = {c.sd_aid, c.line};
          break;
        case CommandKind::kInstallForPersonalization:
          if (auto it = assoc.find(c.aid); it != assoc.end() && it->second.first != sd) {
            return parse_error(at, "<install-for-personalization aid=\"" + to_hex(c.aid) +
                                   "\">: step in the wrong channel: the application is associated with " +
                                   sd_name(it->second.first) + " (line " + std::to_string(it->second.second) +
                                   "), this session is " + opened +
                                   "; a security domain personalizes only its own applications (GPC §11.5)");
          }
          break;
        default:
          break;
      }
    }
    return ok_status();
  };
  PF_TRY(check_session(spec.script, Bytes{}, spec.channel.scp, "the first session (the ISD)"));
  for (const SessionSpec& s : spec.sessions) {
    const std::string opened = "<session> at line " + std::to_string(s.line) + " (" + sd_name(s.sd_aid) + ")";
    std::uint8_t scp = spec.channel.scp;
    if (!s.key_set.empty()) {
      const KeySetSpec* ks = find_key_set(spec, s.key_set);
      if (ks == nullptr) {
        return parse_error(loc_.at_line(s.line), "<session keys=\"" + s.key_set + "\">: key set '" + s.key_set +
                                                     "' is not declared (<key-set name=...> in <prep>)");
      }
      if (put.count(s.key_set) == 0) {
        return parse_error(loc_.at_line(s.line), "<session keys=\"" + s.key_set + "\">: step in the wrong channel: "
                                                     "no earlier <put-key key-set=\"" + s.key_set +
                                                     "\"> puts that key set on the SE");
      }
      if (ks->sd_aid != s.sd_aid) {
        return parse_error(loc_.at_line(s.line), "<session keys=\"" + s.key_set + "\">: step in the wrong channel: "
                                                     "the key set belongs to " + sd_name(ks->sd_aid) +
                                                     ", the session selects " + sd_name(s.sd_aid));
      }
      scp = 3;
    }
    PF_TRY(check_session(s.commands, s.sd_aid, scp, opened));
  }
  return ok_status();
}

}  // namespace persoflow::config::detail
