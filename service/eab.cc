#include "service/eab.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace acmevault::service {

absl::StatusOr<storage::EabKey> KeptEabKey(storage::AccountStore& accounts,
                                           const storage::Scope& scope,
                                           absl::string_view directory_url, absl::string_view what,
                                           absl::string_view purpose) {
  absl::StatusOr<storage::EabKey> kept = accounts.GetEabKey(scope, purpose);
  if (absl::IsNotFound(kept.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the CA requires External Account Binding for every new account, and ", what,
        " needs the tenant's EAB key: keep one with AccountService.SetEabKey (or CreateAccount's "
        "keep_eab_key)"));
  }
  if (!kept.ok()) return kept.status();
  if (kept->info.directory_url != directory_url) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tenant's kept EAB key (id ", kept->info.key_id, ") is for ", kept->info.directory_url,
        ", not for this CA (", directory_url, "): keep one for it with AccountService.SetEabKey"));
  }
  return kept;
}

void BindWith(const storage::EabKey& key, acme::NewAccountOptions& options) {
  options.eab_kid = key.info.key_id;
  options.eab_mac_key = std::string(key.hmac_key.view());
}

}  // namespace acmevault::service
