// The External Account Binding key a tenant keeps (storage::AccountStore::KeepEabKey;
// AccountService.SetEabKey) for the accounts the service opens by itself at a CA whose
// directory says externalAccountRequired (RFC 8555 §7.3.4): an ephemeral account, the rollover
// at a CA without keyChange, a hijacked account's replacement, and CreateAccount without a key.
//
// Free functions; the store is borrowed per call.
#ifndef ACMEVAULT_SERVICE_EAB_H_
#define ACMEVAULT_SERVICE_EAB_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "acme/client.h"
#include "storage/store.h"
#include "storage/types.h"

namespace acmevault::service {

// The key the tenant keeps for `directory_url`, opened (audited "UseEabKey" with `purpose`).
// FAILED_PRECONDITION when none is kept, saying that `what` needs one and how to keep it, or
// when the kept one is for another CA; the store's error otherwise.
absl::StatusOr<storage::EabKey> KeptEabKey(storage::AccountStore& accounts,
                                           const storage::Scope& scope,
                                           absl::string_view directory_url, absl::string_view what,
                                           absl::string_view purpose);

// newAccount's binding (key id and raw MAC key) from a kept key.
void BindWith(const storage::EabKey& key, acme::NewAccountOptions& options);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_EAB_H_
