#include "clients/lib/enum_names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace acmevault::clients {
namespace {

// "KEY_ALGORITHM_ECDSA_P256" without "KEY_ALGORITHM_": the enum type's name in upper snake
// case is the prefix every value carries.
std::string ValueSuffix(const google::protobuf::EnumValueDescriptor& value) {
  const std::string& name = value.name();
  std::string prefix;
  for (char c : value.type()->name()) {
    if (absl::ascii_isupper(c) && !prefix.empty()) prefix += '_';
    prefix += absl::ascii_toupper(c);
  }
  prefix += '_';
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

std::string Folded(absl::string_view text) {
  return absl::StrReplaceAll(absl::AsciiStrToLower(text), {{"-", ""}, {"_", ""}});
}

}  // namespace

absl::StatusOr<int> ParseEnumName(const google::protobuf::EnumDescriptor& type,
                                  absl::string_view text, absl::string_view what) {
  const std::string folded = Folded(text);
  for (int i = 0; i < type.value_count(); ++i) {
    const auto& value = *type.value(i);
    if (text == value.name() || (!folded.empty() && folded == Folded(ValueSuffix(value)))) {
      return value.number();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ": unknown value \"", text, "\"; one of ",
                                                 absl::StrJoin(EnumNames(type), ", ")));
}

std::string EnumName(const google::protobuf::EnumDescriptor& type, int value) {
  const auto* v = type.FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  return absl::StrReplaceAll(absl::AsciiStrToLower(ValueSuffix(*v)), {{"_", "-"}});
}

std::vector<std::string> EnumNames(const google::protobuf::EnumDescriptor& type) {
  std::vector<std::string> out;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() != 0) out.push_back(EnumName(type, type.value(i)->number()));
  }
  return out;
}

absl::StatusOr<v1::KeyAlgorithm> ParseKeyAlgorithm(absl::string_view text, absl::string_view what) {
  // "p256" is "ecdsa-p256" without the family, the form the agent documents.
  std::string name(text);
  if (absl::StartsWithIgnoreCase(name, "p")) name = "ecdsa-" + name;
  absl::StatusOr<int> value = ParseEnumName(*v1::KeyAlgorithm_descriptor(), name, what);
  if (!value.ok() || *value == v1::KEY_ALGORITHM_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown key type \"", text, "\"; one of ", KeyAlgorithmChoices()));
  }
  return static_cast<v1::KeyAlgorithm>(*value);
}

std::string KeyAlgorithmChoices() { return "p256|p384|rsa2048|rsa3072|rsa4096"; }

}  // namespace acmevault::clients
