#include "service/paging.h"

#include <algorithm>

namespace acmevault::service {

absl::StatusOr<storage::PageRequest> CheckPage(storage::PageRequest page) {
  if (page.max_results < 0) return absl::InvalidArgumentError("page_size: negative");
  page.max_results = page.max_results == 0 ? 100 : std::min(page.max_results, 1000);
  return page;
}

}  // namespace acmevault::service
