#include "engine/card_script.h"

#include "engine/dgi.h"
#include "engine/gp_commands.h"
#include "engine/gp_store_data.h"
#include "engine/tlv.h"

namespace persoflow {
namespace {

bool is_digit(std::uint8_t c) { return c >= '0' && c <= '9'; }

// Digits packed two per byte; `pad_left`: right-aligned in `length` bytes with leading
// zero digits (n format); otherwise left-aligned with a trailing F when odd (cn format).
Result<SecureBytes> pack_digits(std::span<const std::uint8_t> digits, bool n_format, std::size_t length,
                                std::string_view attribute) {
  for (std::uint8_t c : digits) {
    if (!is_digit(c)) {
      return Error(ErrorCode::kInvalidArgument, "attribute '" + std::string(attribute) + "' is not all digits");
    }
  }
  std::size_t nibbles = digits.size();
  std::size_t lead = 0;
  if (n_format) {
    if (nibbles > 2 * length) {
      return Error(ErrorCode::kInvalidArgument, "attribute '" + std::string(attribute) + "' has " +
                                                    std::to_string(nibbles) + " digits, more than fit " +
                                                    std::to_string(length) + " bytes");
    }
    lead = 2 * length - nibbles;
    nibbles = 2 * length;
  } else if (nibbles % 2 != 0) {
    ++nibbles;
  }
  SecureBytes out(nibbles / 2);
  auto o = out.reveal_mutable();
  for (std::size_t k = 0; k < nibbles; ++k) {
    std::uint8_t nib = 0xF;
    if (k >= lead && k - lead < digits.size()) nib = static_cast<std::uint8_t>(digits[k - lead] - '0');
    else if (n_format) nib = 0;
    o[k / 2] = static_cast<std::uint8_t>(o[k / 2] | (k % 2 == 0 ? nib << 4 : nib));
  }
  return out;
}

Result<SecureBytes> hex_bytes(std::span<const std::uint8_t> text, std::string_view attribute) {
  auto nibble = [](std::uint8_t c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (text.size() % 2 != 0) {
    return Error(ErrorCode::kInvalidArgument, "attribute '" + std::string(attribute) + "' has an odd number of hex digits");
  }
  SecureBytes out(text.size() / 2);
  auto o = out.reveal_mutable();
  for (std::size_t k = 0; k < o.size(); ++k) {
    const int hi = nibble(text[2 * k]);
    const int lo = nibble(text[2 * k + 1]);
    if (hi < 0 || lo < 0) {
      return Error(ErrorCode::kInvalidArgument, "attribute '" + std::string(attribute) + "' is not hex");
    }
    o[k] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return out;
}

void append_header(SecureBytes& out, std::span<const std::uint8_t> header) { out.append(header); }

Result<SecureBytes> dgi_value(const DgiSpec& dgi, const AttributeLookup& lookup) {
  const auto where = [&] { return "DGI " + format_dgi_id(dgi.id); };  // for errors only
  if (dgi.value) {
    auto v = encode_value(*dgi.value, lookup);
    if (!v) return with_context(v.error(), where());
    return v;
  }
  SecureBytes body;
  for (const TlvSpec& t : dgi.tlvs) {
    auto v = encode_value(t.value, lookup);
    if (!v) return with_context(v.error(), where());
    PF_ASSIGN_OR_RETURN(const Bytes tag, encode_tag(t.tag));
    PF_ASSIGN_OR_RETURN(const Bytes len, encode_tlv_length(v->size()));
    body.reserve(body.size() + tag.size() + len.size() + v->size());
    append_header(body, tag);
    append_header(body, len);
    body.append(v->reveal());
  }
  if (!dgi.template_tag) return body;
  SecureBytes wrapped;
  PF_ASSIGN_OR_RETURN(const Bytes tag, encode_tag(*dgi.template_tag));
  PF_ASSIGN_OR_RETURN(const Bytes len, encode_tlv_length(body.size()));
  append_header(wrapped, tag);
  append_header(wrapped, len);
  wrapped.append(body.reveal());
  return wrapped;
}

Status add_wrapped(std::vector<ScriptApdu>& out, OfflineSession& session, const CommandApdu& plain,
                   const std::string& label) {
  auto wrapped = session.wrap_chained(plain);
  if (!wrapped) return with_context(wrapped.error(), label);
  const std::size_t n = wrapped->size();
  for (std::size_t k = 0; k < n; ++k) {
    ScriptApdu a;
    a.bytes = (*wrapped)[k].to_bytes();
    a.label = n == 1 ? label : label + " (segment " + std::to_string(k + 1) + "/" + std::to_string(n) + ")";
    out.push_back(std::move(a));
  }
  return ok_status();
}

// Track 2 Equivalent Data from its parts: every part digits only; a missing required part
// or a result over 19 bytes is this card's error (kInvalidArgument), naming the attribute.
Result<SecureBytes> track2(const Track2Parts& parts, const AttributeLookup& lookup) {
  SecureBytes nibbles;  // one digit value per byte first, packed below
  auto add = [&](const std::string& attribute, std::size_t min_digits, std::size_t max_digits,
                 bool required) -> Status {
    if (attribute.empty()) return ok_status();
    PF_ASSIGN_OR_RETURN(const SecureBytes* value, lookup(attribute));
    if (value == nullptr) {
      if (!required) return ok_status();
      return Error(ErrorCode::kInvalidArgument, "track 2: attribute '" + attribute + "' is empty for this card");
    }
    const auto v = value->reveal();
    if (v.size() < min_digits || v.size() > max_digits) {
      return Error(ErrorCode::kInvalidArgument, "track 2: attribute '" + attribute + "' has " +
                                                    std::to_string(v.size()) + " characters, not " +
                                                    std::to_string(min_digits) + "-" + std::to_string(max_digits));
    }
    for (std::uint8_t c : v) {
      if (!is_digit(c)) {
        return Error(ErrorCode::kInvalidArgument, "track 2: attribute '" + attribute + "' is not all digits");
      }
      const std::uint8_t d = static_cast<std::uint8_t>(c - '0');
      nibbles.append(std::span<const std::uint8_t>(&d, 1));
    }
    return ok_status();
  };
  PF_TRY(add(parts.pan, 12, 19, true));
  const std::uint8_t separator = 0xD;
  nibbles.append(std::span<const std::uint8_t>(&separator, 1));
  PF_TRY(add(parts.expiry, 4, 4, true));
  PF_TRY(add(parts.service_code, 3, 3, true));
  PF_TRY(add(parts.discretionary, 0, 38, false));
  const auto n = nibbles.reveal();
  const std::size_t bytes = (n.size() + 1) / 2;
  if (bytes > 19) {
    return Error(ErrorCode::kInvalidArgument,
                 "track 2: " + std::to_string(bytes) + " bytes, more than the 19 of tag 57");
  }
  SecureBytes out(bytes);
  auto o = out.reveal_mutable();
  for (std::size_t k = 0; k < 2 * bytes; ++k) {
    const std::uint8_t nib = k < n.size() ? n[k] : 0xF;
    o[k / 2] = static_cast<std::uint8_t>(o[k / 2] | (k % 2 == 0 ? nib << 4 : nib));
  }
  return out;
}

}  // namespace

Result<SecureBytes> encode_value(const ValueSpec& spec, const AttributeLookup& lookup) {
  if (spec.derivation == ValueDerivation::kTrack2) return track2(spec.track2, lookup);
  if (spec.attribute.empty()) return SecureBytes(spec.constant);
  PF_ASSIGN_OR_RETURN(const SecureBytes* value, lookup(spec.attribute));
  if (value == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "attribute '" + spec.attribute + "' is empty for this card");
  }
  SecureBytes out;
  switch (spec.encoding) {
    case ValueEncoding::kAscii: out = *value; break;
    case ValueEncoding::kBcd: {
      PF_ASSIGN_OR_RETURN(out, pack_digits(value->reveal(), false, 0, spec.attribute));
      break;
    }
    case ValueEncoding::kNumeric: {
      PF_ASSIGN_OR_RETURN(out, pack_digits(value->reveal(), true, spec.length, spec.attribute));
      break;
    }
    case ValueEncoding::kHex: {
      PF_ASSIGN_OR_RETURN(out, hex_bytes(value->reveal(), spec.attribute));
      break;
    }
  }
  out.append(spec.suffix);
  return out;
}

std::size_t store_data_block_size(std::uint8_t scp, std::uint8_t i, std::uint8_t level) {
  const bool s16 = scp == 3 && (i & 0x01) != 0;
  const std::size_t mac = s16 ? 16 : 8;
  const std::size_t block = scp == 3 ? 16 : 8;
  const std::size_t room = kMaxShortApduData - mac;
  if ((level & 0x02) == 0) return room;
  return (room / block) * block - 1;  // pad80 always adds at least one byte
}

Result<std::vector<ScriptApdu>> build_card_script(const PrepSpec& prep, const AttributeLookup& lookup,
                                                  OfflineSession& session, std::uint8_t i,
                                                  const DgiProvider& provider) {
  return build_session_script(prep.script, SessionShape{prep.channel.scp, i, prep.channel.level}, lookup, session,
                              provider);
}

ScriptLabels ScriptLabels::of(std::span<const CommandSpec> commands) {
  ScriptLabels out;
  out.commands.reserve(commands.size());
  for (const CommandSpec& c : commands) {
    Command l;
    l.at = " (profile line " + std::to_string(c.line) + ")";
    switch (c.kind) {
      case CommandKind::kSelect:
        l.label = "SELECT " + to_hex(c.aid) + l.at;
        break;
      case CommandKind::kInstallForPersonalization:
        l.label = "INSTALL [for personalization] " + to_hex(c.aid) + l.at;
        break;
      case CommandKind::kSetStatus: {
        const Bytes state{c.state};
        l.label = "SET STATUS " + (c.aid.empty() ? std::string("card") : to_hex(c.aid)) + " to " + to_hex(state) + l.at;
        break;
      }
      case CommandKind::kInstallForInstall:
        l.label = (c.make_selectable ? "INSTALL [for install and make selectable] " : "INSTALL [for install] ") +
                  to_hex(c.aid) + l.at;
        break;
      case CommandKind::kInstallForMakeSelectable:
        l.label = "INSTALL [for make selectable] " + to_hex(c.aid) + l.at;
        break;
      case CommandKind::kInstallForExtradition:
        l.label = "INSTALL [for extradition] " + to_hex(c.aid) + " to " + to_hex(c.sd_aid) + l.at;
        break;
      case CommandKind::kDelete:
        l.label = "DELETE " + to_hex(c.aid) + (c.delete_related ? " and related objects" : "") + l.at;
        break;
      case CommandKind::kPutKey:
        break;  // the new KVN comes from the key set, per card
      case CommandKind::kApdu:
        l.label = "APDU" + l.at;
        break;
      case CommandKind::kStoreData: {
        std::string dgis;
        for (const DgiSpec& d : c.dgis) (dgis += dgis.empty() ? "" : " ") += format_dgi_id(d.id);
        l.label = " (DGI " + dgis + ")" + l.at;
        break;
      }
    }
    out.commands.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<ScriptApdu>> build_session_script(std::span<const CommandSpec> commands, const SessionShape& shape,
                                                     const AttributeLookup& lookup, OfflineSession& session,
                                                     const DgiProvider& provider, const PutKeyProvider& key_provider,
                                                     const ScriptLabels* labels) {
  std::optional<ScriptLabels> own;
  if (labels == nullptr || labels->commands.size() != commands.size()) labels = &own.emplace(ScriptLabels::of(commands));
  std::vector<ScriptApdu> out;
  for (std::size_t n = 0; n < commands.size(); ++n) {
    const CommandSpec& c = commands[n];
    const std::string& label = labels->commands[n].label;
    const std::string& at = labels->commands[n].at;
    switch (c.kind) {
      case CommandKind::kSelect: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, select_by_aid(c.aid));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kInstallForPersonalization: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, install_for_personalization(c.aid));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kSetStatus: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain,
                            set_status(static_cast<SetStatusScope>(c.status_scope), c.state, c.aid));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kInstallForInstall: {
        InstallForInstallFields fields;
        fields.load_file_aid = c.load_file_aid;
        fields.module_aid = c.module_aid;
        fields.instance_aid = c.aid;
        fields.privileges = c.privileges;
        fields.parameters.application_specific = c.application_parameters;
        fields.parameters.system_parameters = c.system_parameters;
        fields.token = c.token;
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, c.make_selectable
                                                         ? install_for_install_and_make_selectable(fields)
                                                         : install_for_install(fields));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kInstallForMakeSelectable: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, install_for_make_selectable(c.aid, c.privileges));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kInstallForExtradition: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, install_for_extradition(c.sd_aid, c.aid));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kDelete: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, delete_object(c.aid, c.delete_related));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kPutKey: {
        if (!key_provider) {
          return Error(ErrorCode::kUnsupported, "PUT KEY of key set '" + c.key_set + "': no provider");
        }
        auto provided = key_provider(c);
        if (!provided) return with_context(provided.error(), "PUT KEY of key set '" + c.key_set + "'");
        if (provided->data.empty()) return Error(ErrorCode::kInternal, "PUT KEY without a data field");
        PutKeyHeader header;
        header.old_kvn = c.old_kvn;
        header.new_kvn = provided->data[0];
        header.first_key_id = 0x01;
        header.multiple_keys = provided->keys > 1;
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, put_key(header, provided->data));
        const std::size_t first = out.size();
        PF_TRY(add_wrapped(out, session, plain,
                           "PUT KEY key set '" + c.key_set + "' KVN " + to_hex(Bytes{header.new_kvn}) +
                               (c.old_kvn == 0 ? " (added)" : " (replaces KVN " + to_hex(Bytes{c.old_kvn}) + ")") +
                               ", the SE answers KVN and KCVs" + at));
        // The response data (KVN || KCVs) comes with the last APDU of a chained command.
        if (out.size() > first) out.back().expected_data = std::move(provided->expected_response);
        break;
      }
      case CommandKind::kApdu: {
        PF_ASSIGN_OR_RETURN(const CommandApdu plain, CommandApdu::parse(c.apdu));
        PF_TRY(add_wrapped(out, session, plain, label));
        break;
      }
      case CommandKind::kStoreData: {
        StoreDataOptions options;
        options.max_block_data = store_data_block_size(shape.scp, shape.i, shape.level);
        PF_ASSIGN_OR_RETURN(StoreDataBuilder builder, StoreDataBuilder::create(options));
        for (const DgiSpec& d : c.dgis) {
          if (d.source != DgiSource::kProfile) {
            if (!provider) {
              return Error(ErrorCode::kUnsupported, "DGI " + format_dgi_id(d.id) + ": no provider for its source");
            }
            auto provided = provider(d);
            if (!provided) return with_context(provided.error(), "DGI " + format_dgi_id(d.id));
            PF_TRY(builder.add_dgi(d.id, provided->value, provided->encrypted));
            continue;
          }
          PF_ASSIGN_OR_RETURN(SecureBytes value, dgi_value(d, lookup));
          if (d.encrypted) {
            auto enc = session.encrypt_sensitive(value.reveal());
            if (!enc) return with_context(enc.error(), "DGI " + format_dgi_id(d.id));
            PF_TRY(builder.add_dgi(d.id, *enc, true));
          } else {
            PF_TRY(builder.add_dgi(d.id, value.reveal(), false));
          }
        }
        PF_ASSIGN_OR_RETURN(const std::vector<CommandApdu> blocks, builder.build());
        const std::string of = "/" + std::to_string(blocks.size());
        for (std::size_t k = 0; k < blocks.size(); ++k) {
          std::string block_label = "STORE DATA block ";
          block_label.reserve(block_label.size() + 4 + of.size() + label.size());
          (block_label += std::to_string(k + 1)) += of;
          block_label += label;
          PF_TRY(add_wrapped(out, session, blocks[k], block_label));
        }
        break;
      }
    }
  }
  return out;
}

}  // namespace persoflow
