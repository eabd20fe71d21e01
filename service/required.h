// The check every component's Create makes before it keeps its borrowed collaborators: a missing
// one is an error at construction, not a null pointer that crashes on the first call.
#ifndef ACMEVAULT_SERVICE_REQUIRED_H_
#define ACMEVAULT_SERVICE_REQUIRED_H_

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace acmevault::service {

// OK when every pointer in `collaborators` (field name, value) is set; otherwise
// INVALID_ARGUMENT naming `component` and the first missing field of its `fields` struct, e.g.
// "Issuer: Options.runner is required".
absl::Status RequireCollaborators(
    absl::string_view component,
    std::initializer_list<std::pair<absl::string_view, const void*>> collaborators,
    absl::string_view fields = "Options");

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_REQUIRED_H_
