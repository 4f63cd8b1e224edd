// The attribute values of one record, as the profile describes them
// (docs/formats/records.md). Values are cardholder data: they are held in SecureBytes
// only, and an error names the record number, its offset and the element, attribute or
// field concerned, never a value.
//
// XML: `source="pan"` is the text of the record element's child <pan> (at most one such
// child; entities decoded; CDATA included; leading and trailing XML whitespace trimmed);
// `source="@id"` is the record element's attribute id (trimmed).
// Fixed width: bytes [offset, offset + length) of the record, right-trimmed of spaces
// (trim_fixed_width, engine/attribute_rules.h); a field that starts beyond the end of a
// (short) line is absent, one that starts inside it and runs past its end is cut there.
// In both formats a value that is empty after trimming is absent. Characters are not
// checked here (validation does that against AttributeType).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/profile.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"
#include "formats/record_splitter.h"

namespace persoflow::formats {

struct FieldValue {
  std::string name;                  // AttributeSpec::name
  std::optional<SecureBytes> value;  // nullopt: absent from the record (or empty)
};

struct RecordFields {
  std::uint64_t record_number = 0;
  std::uint64_t record_offset = 0;
  std::vector<FieldValue> fields;  // one per AttributeSpec, in profile order

  // nullptr when the profile has no attribute of that name.
  const FieldValue* find(std::string_view name) const;
  // nullptr when the attribute is absent from the record or unknown to the profile.
  const SecureBytes* value(std::string_view name) const;
};

// Errors: kParse for a record that is not well-formed XML (pugixml's description and
// the byte offset inside the record), that holds a NUL byte, whose element is not the
// profile's record element, or that repeats a source element or attribute;
// kInvalidArgument for a profile attribute without a source (XML) or width (fixed width).
//
// XML records of the common shape (the record element's attributes, children holding
// plain text) are read in one pass without a DOM; the others through pugixml. Both give
// the same values, and every error comes from the pugixml path.
Result<RecordFields> extract_fields(const Profile& profile, const Record& record);

// For tests that compare the two XML paths: always through pugixml; and whether
// extract_fields reads `record` without it.
Result<RecordFields> extract_xml_fields_with_dom(const Profile& profile, const Record& record);
bool xml_record_has_common_shape(const Profile& profile, const Record& record);

}  // namespace persoflow::formats
