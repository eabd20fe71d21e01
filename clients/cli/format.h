// How the acmevault CLI shows responses to people: aligned "field  value" lines and tables,
// times in local time with a relative phrase ("expires in 61 days"), enum values by their
// short names, nothing omitted for being zero; and JSON for scripts (every field, zero values
// included). Key material (bytes fields, private_key_pem) is never shown.
#ifndef ACMEVAULT_CLIENTS_CLI_FORMAT_H_
#define ACMEVAULT_CLIENTS_CLI_FORMAT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace acmevault::cli {

// "in 61 days", "3 hours ago", "now": the whole units of the largest that fits (days from
// 48 hours on, hours from 90 minutes, minutes from 90 seconds, seconds).
std::string Relative(absl::Time t, absl::Time now);

// "2026-03-01 14:02:05 CET" in `zone`.
std::string LocalTime(absl::Time t, absl::TimeZone zone);

// "90 days", "36 hours", "5 minutes", "45 seconds", "0 seconds".
std::string HumanDuration(absl::Duration d);

// Rows under a header row, each column as wide as its widest cell, two spaces apart.
std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows);

// Renders messages for people. Times relative to `now`, shown in `zone`.
class Formatter {
 public:
  Formatter(absl::Time now, absl::TimeZone zone) : now_(now), zone_(zone) {}

  // Every field of `message` as aligned "name  value" lines (names with spaces for '_'),
  // nested messages' fields prefixed with their field's name ("account key version"),
  // repeated messages as a table of their scalar fields. `skip` names fields to leave out
  // (e.g. "chain_pem", shown another way).
  std::string Fields(const google::protobuf::Message& message,
                     const std::vector<std::string>& skip = {}) const;

  // A table of `messages` with the given fields as columns (times relative only).
  std::string Rows(const std::vector<const google::protobuf::Message*>& messages,
                   const std::vector<std::string>& columns) const;

  // One field's value as text ("" for an unset message field). Times: local time and the
  // relative phrase ("expires in 61 days" for a field named not_after or expires_at); `brief`
  // gives the relative phrase alone.
  std::string Value(const google::protobuf::Message& message,
                    const google::protobuf::FieldDescriptor& field, bool brief = false) const;

 private:
  void AppendFields(const google::protobuf::Message& message, const std::string& prefix,
                    const std::vector<std::string>& skip,
                    std::vector<std::pair<std::string, std::string>>* lines,
                    std::vector<std::string>* tables) const;

  absl::Time now_;
  absl::TimeZone zone_;
};

// The message as indented JSON with every field, zero values included, and a final newline.
std::string Json(const google::protobuf::Message& message);

}  // namespace acmevault::cli

#endif  // ACMEVAULT_CLIENTS_CLI_FORMAT_H_
