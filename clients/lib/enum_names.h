// The spellings people type for the API's enums, shared by the CLI and the agent: the value's
// name without its type prefix, in lower case with '-' or '_' ("key-compromise",
// "platform_admin", "http-01"), the same with the separators left out ("rsa2048"), or the full
// proto name ("ROLE_ADMIN"). Anything else is an error that lists the accepted names: a
// misspelling never falls back to a default.
#ifndef ACMEVAULT_CLIENTS_LIB_ENUM_NAMES_H_
#define ACMEVAULT_CLIENTS_LIB_ENUM_NAMES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "acmevault/v1/common.pb.h"
#include "google/protobuf/descriptor.h"

namespace acmevault::clients {

// The value of `type` that `text` names (its UNSPECIFIED value only by "unspecified" or the
// full name). INVALID_ARGUMENT "<what>: unknown value "<text>"; one of a, b, c" otherwise.
absl::StatusOr<int> ParseEnumName(const google::protobuf::EnumDescriptor& type,
                                  absl::string_view text, absl::string_view what);

// The short spelling of `value`: "ecdsa-p256", "platform-admin", "key-compromise". The number
// as text for a value the type does not define.
std::string EnumName(const google::protobuf::EnumDescriptor& type, int value);

// The short spellings of every value but UNSPECIFIED.
std::vector<std::string> EnumNames(const google::protobuf::EnumDescriptor& type);

// Key types as the agent and the CLI take them: p256, p384, rsa2048, rsa3072, rsa4096 (and
// every spelling ParseEnumName accepts, e.g. "ecdsa-p256", "rsa-2048"). Never UNSPECIFIED.
absl::StatusOr<v1::KeyAlgorithm> ParseKeyAlgorithm(absl::string_view text, absl::string_view what);
// "p256|p384|rsa2048|rsa3072|rsa4096".
std::string KeyAlgorithmChoices();

}  // namespace acmevault::clients

#endif  // ACMEVAULT_CLIENTS_LIB_ENUM_NAMES_H_
