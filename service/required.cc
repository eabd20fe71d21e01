#include "service/required.h"

#include "absl/strings/str_cat.h"

namespace acmevault::service {

absl::Status RequireCollaborators(
    absl::string_view component,
    std::initializer_list<std::pair<absl::string_view, const void*>> collaborators,
    absl::string_view fields) {
  for (const auto& [name, value] : collaborators) {
    if (value == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(component, ": ", fields, ".", name, " is required"));
    }
  }
  return absl::OkStatus();
}

}  // namespace acmevault::service
