#include "clients/cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "clients/lib/enum_names.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace acmevault::cli {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string Units(int64_t n, const char* unit) {
  return absl::StrCat(n, " ", unit, n == 1 ? "" : "s");
}

bool IsTimestamp(const FieldDescriptor& f) {
  return f.type() == FieldDescriptor::TYPE_MESSAGE &&
         f.message_type()->full_name() == "google.protobuf.Timestamp";
}
bool IsDuration(const FieldDescriptor& f) {
  return f.type() == FieldDescriptor::TYPE_MESSAGE &&
         f.message_type()->full_name() == "google.protobuf.Duration";
}
// Key material and other raw bytes (a CSR) are never shown to people.
bool Hidden(const FieldDescriptor& f) { return f.type() == FieldDescriptor::TYPE_BYTES; }

// Whether `message` has a `state` enum whose value is its *_REVOKED.
bool Revoked(const Message& message) {
  const FieldDescriptor* state = message.GetDescriptor()->FindFieldByName("state");
  if (state == nullptr || state->cpp_type() != FieldDescriptor::CPPTYPE_ENUM ||
      state->is_repeated()) {
    return false;
  }
  const auto* value =
      state->enum_type()->FindValueByNumber(message.GetReflection()->GetEnumValue(message, state));
  return value != nullptr && absl::EndsWith(value->name(), "_REVOKED");
}

std::string Label(const std::string& prefix, const FieldDescriptor& f) {
  return absl::StrCat(prefix, absl::StrReplaceAll(f.name(), {{"_", " "}}));
}

}  // namespace

std::string HumanDuration(absl::Duration d) {
  absl::Duration a = absl::AbsDuration(d);
  if (a >= absl::Hours(48)) return Units(absl::ToInt64Hours(a) / 24, "day");
  if (a >= absl::Minutes(90)) return Units(absl::ToInt64Hours(a), "hour");
  if (a >= absl::Seconds(90)) return Units(absl::ToInt64Minutes(a), "minute");
  return Units(absl::ToInt64Seconds(a), "second");
}

std::string Relative(absl::Time t, absl::Time now) {
  absl::Duration d = t - now;
  if (absl::AbsDuration(d) < absl::Seconds(1)) return "now";
  return d > absl::ZeroDuration() ? absl::StrCat("in ", HumanDuration(d))
                                  : absl::StrCat(HumanDuration(d), " ago");
}

std::string LocalTime(absl::Time t, absl::TimeZone zone) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", t, zone);
}

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size() && c < width.size(); ++c) {
      absl::StrAppend(&text, cells[c]);
      if (c + 1 < cells.size()) text.append(width[c] - cells[c].size() + 2, ' ');
    }
    absl::StrAppend(&out, text, "\n");
  };
  line(header);
  for (const auto& row : rows) line(row);
  return out;
}

std::string Formatter::Value(const Message& message, const FieldDescriptor& field,
                             bool brief) const {
  const auto* reflection = message.GetReflection();
  auto scalar = [&](int index) -> std::string {
    bool repeated = field.is_repeated();
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        return repeated ? reflection->GetRepeatedString(message, &field, index)
                        : reflection->GetString(message, &field);
      case FieldDescriptor::CPPTYPE_BOOL:
        return (repeated ? reflection->GetRepeatedBool(message, &field, index)
                         : reflection->GetBool(message, &field))
                   ? "yes"
                   : "no";
      case FieldDescriptor::CPPTYPE_INT32:
        return absl::StrCat(repeated ? reflection->GetRepeatedInt32(message, &field, index)
                                     : reflection->GetInt32(message, &field));
      case FieldDescriptor::CPPTYPE_INT64:
        return absl::StrCat(repeated ? reflection->GetRepeatedInt64(message, &field, index)
                                     : reflection->GetInt64(message, &field));
      case FieldDescriptor::CPPTYPE_UINT32:
        return absl::StrCat(repeated ? reflection->GetRepeatedUInt32(message, &field, index)
                                     : reflection->GetUInt32(message, &field));
      case FieldDescriptor::CPPTYPE_UINT64:
        return absl::StrCat(repeated ? reflection->GetRepeatedUInt64(message, &field, index)
                                     : reflection->GetUInt64(message, &field));
      case FieldDescriptor::CPPTYPE_ENUM: {
        const int value = repeated ? reflection->GetRepeatedEnumValue(message, &field, index)
                                   : reflection->GetEnumValue(message, &field);
        // Zero is proto3's unset (each enum's *_UNSPECIFIED), shown as "-", except in a revoked
        // certificate's reason: RFC 5280's reason code 0 is "unspecified".
        if (value == 0 && !repeated && !(field.name() == "revocation_reason" && Revoked(message))) {
          return "";
        }
        return clients::EnumName(*field.enum_type(), value);
      }
      default:
        return "";
    }
  };
  if (field.is_repeated()) {
    std::vector<std::string> parts;
    for (int i = 0; i < reflection->FieldSize(message, &field); ++i) parts.push_back(scalar(i));
    return absl::StrJoin(parts, ", ");
  }
  if (IsTimestamp(field)) {
    if (!reflection->HasField(message, &field)) return "";
    const auto& ts =
        static_cast<const google::protobuf::Timestamp&>(reflection->GetMessage(message, &field));
    absl::Time t = absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
    std::string relative = Relative(t, now_);
    if (field.name() == "not_after" || field.name() == "expires_at") {
      relative = t > now_ ? absl::StrCat("expires ", relative) : absl::StrCat("expired ", relative);
    }
    return brief ? relative : absl::StrCat(LocalTime(t, zone_), " (", relative, ")");
  }
  if (IsDuration(field)) {
    if (!reflection->HasField(message, &field)) return "";
    const auto& d =
        static_cast<const google::protobuf::Duration&>(reflection->GetMessage(message, &field));
    return HumanDuration(absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos()));
  }
  return scalar(0);
}

void Formatter::AppendFields(const Message& message, const std::string& prefix,
                             const std::vector<std::string>& skip,
                             std::vector<std::pair<std::string, std::string>>* lines,
                             std::vector<std::string>* tables) const {
  const auto* descriptor = message.GetDescriptor();
  const auto* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor& f = *descriptor->field(i);
    if (Hidden(f) || std::find(skip.begin(), skip.end(), f.name()) != skip.end()) continue;
    if (f.type() == FieldDescriptor::TYPE_MESSAGE && !IsTimestamp(f) && !IsDuration(f)) {
      if (f.is_repeated()) {
        std::vector<const Message*> items;
        for (int j = 0; j < reflection->FieldSize(message, &f); ++j) {
          items.push_back(&reflection->GetRepeatedMessage(message, &f, j));
        }
        std::vector<std::string> columns;
        for (int c = 0; c < f.message_type()->field_count(); ++c) {
          const FieldDescriptor& column = *f.message_type()->field(c);
          if (!Hidden(column) &&
              (column.type() != FieldDescriptor::TYPE_MESSAGE || IsTimestamp(column) ||
               IsDuration(column)) &&
              column.name() != "chain_pem") {
            columns.push_back(column.name());
          }
        }
        tables->push_back(items.empty()
                              ? absl::StrCat(Label(prefix, f), ": none\n")
                              : absl::StrCat(Label(prefix, f), ":\n", Rows(items, columns)));
      } else if (reflection->HasField(message, &f)) {
        AppendFields(reflection->GetMessage(message, &f), Label(prefix, f) + " ", skip, lines,
                     tables);
      }
      continue;
    }
    std::string value = Value(message, f);
    lines->emplace_back(Label(prefix, f), value.empty() ? "-" : value);
  }
}

std::string Formatter::Fields(const Message& message, const std::vector<std::string>& skip) const {
  std::vector<std::pair<std::string, std::string>> lines;
  std::vector<std::string> tables;
  AppendFields(message, "", skip, &lines, &tables);
  size_t width = 0;
  for (const auto& [label, value] : lines) width = std::max(width, label.size());
  std::string out;
  for (const auto& [label, value] : lines) {
    absl::StrAppend(&out, label, std::string(width + 2 - label.size(), ' '), value, "\n");
  }
  for (const auto& table : tables) absl::StrAppend(&out, out.empty() ? "" : "\n", table);
  return out;
}

std::string Formatter::Rows(const std::vector<const Message*>& messages,
                            const std::vector<std::string>& columns) const {
  if (messages.empty()) return "";
  std::vector<std::string> header;
  std::vector<const FieldDescriptor*> fields;
  for (const auto& name : columns) {
    const FieldDescriptor* f = messages[0]->GetDescriptor()->FindFieldByName(name);
    if (f == nullptr) continue;
    fields.push_back(f);
    header.push_back(absl::AsciiStrToUpper(absl::StrReplaceAll(name, {{"_", " "}})));
  }
  std::vector<std::vector<std::string>> rows;
  for (const Message* m : messages) {
    std::vector<std::string> row;
    for (const FieldDescriptor* f : fields) {
      std::string v = Value(*m, *f, /*brief=*/true);
      row.push_back(v.empty() ? "-" : v);
    }
    rows.push_back(std::move(row));
  }
  return Table(header, rows);
}

std::string Json(const Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (json.empty() || json.back() != '\n') json += '\n';
  return json;
}

}  // namespace acmevault::cli
