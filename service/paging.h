// Paging as the API states it for every List call: page_size 0 means 100, more than 1000 means
// 1000, and a negative size is the caller's mistake.
#ifndef ACMEVAULT_SERVICE_PAGING_H_
#define ACMEVAULT_SERVICE_PAGING_H_

#include "absl/status/statusor.h"
#include "storage/types.h"

namespace acmevault::service {

// `page` with `max_results` as the caller sent it (the request's page_size) -> the page to ask
// the store for. INVALID_ARGUMENT "page_size: negative" below 0.
absl::StatusOr<storage::PageRequest> CheckPage(storage::PageRequest page);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_PAGING_H_
