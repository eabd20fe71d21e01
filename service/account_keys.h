// AccountKeys: where a tenant's ACME account keys are made and how a stored key signs. A key of
// a tenant whose policy says VAULT is made in memory and sealed in the vault; one whose policy
// says PKCS11 is made inside the deployment's PKCS#11 token and never leaves it (the vault
// keeps its object id and public key). The one place the service turns a stored key into a
// crypto::Signer, so rollover, recovery, deactivation, revocation, the compromise playbook and
// issuance work alike for both. Retired and compromised token keys are destroyed in the token
// once `destroy_grace` has passed since they left service. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ACCOUNT_KEYS_H_
#define ACMEVAULT_SERVICE_ACCOUNT_KEYS_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "crypto/pkcs11.h"
#include "crypto/signer.h"
#include "storage/store.h"

namespace acmevault::service {

// Public facts the store keeps about a key: its JWK and RFC 7638 thumbprint.
storage::PublicKeyInfo KeyInfo(const crypto::PublicKey& key);

// A stored key version ready to sign.
struct SigningKey {
  storage::AccountKey info;
  std::unique_ptr<crypto::Signer> signer;
};

// A key just made, not stored yet: `material` is what AccountStore::CreateAccount or
// AddPendingKey stores (it borrows `signer` for a vault key).
struct NewAccountKey {
  std::unique_ptr<crypto::Signer> signer;
  storage::AccountKeyMaterial material;
  storage::PublicKeyInfo info;
};

class AccountKeys {
 public:
  struct Options {
    storage::AccountStore* accounts = nullptr;  // Borrowed; required.
    // The deployment's token (borrowed; must outlive this). Null: no PKCS#11 token is
    // configured, and a PKCS11 tenant's keys are FAILED_PRECONDITION.
    crypto::Pkcs11Token* token = nullptr;
    const Clock* clock = Clock::Real();
    // How long a retired or compromised token key stays in the token before
    // DestroyRetiredKeys removes it.
    absl::Duration destroy_grace = absl::Hours(24);
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<AccountKeys>> Create(Options options);

  // A fresh key of `algorithm` where `storage` says. FAILED_PRECONDITION for kPkcs11 without a
  // token; the token's errors (UNAVAILABLE while it is away).
  absl::StatusOr<NewAccountKey> Generate(storage::KeyStorage storage,
                                         crypto::KeyAlgorithm algorithm);
  // Removes what Generate made in the token when storing it failed (best effort: a leftover
  // object holds no account's key).
  void Discard(const NewAccountKey& key);

  // The account's active key, or its key `version`, unsealed or opened in the token, through
  // AccountStore::GetActiveKey / GetKey (audited as a key use with `purpose`). A token key
  // whose object is gone is FAILED_PRECONDITION naming the object.
  absl::StatusOr<SigningKey> Active(const storage::Scope& scope, storage::AccountId account,
                                    absl::string_view purpose);
  absl::StatusOr<SigningKey> Version(const storage::Scope& scope, storage::AccountId account,
                                     int version, absl::string_view purpose);

  // A key the store unsealed (or a token key's object id) ready to sign: what Active does after
  // reading it, for callers that read it with other rows (OrderStore::LoadOrderStep).
  absl::StatusOr<SigningKey> Open(storage::UnsealedAccountKey key);

  // Destroys, in the token, every retired or compromised token key of scope.tenant that left
  // service at least `destroy_grace` ago, and records it (MarkKeyDestroyed). Returns how many.
  // OK with 0 when no token is configured. The first error stops it (the rest go next time).
  absl::StatusOr<int> DestroyRetiredKeys(const storage::Scope& scope);

 private:
  explicit AccountKeys(Options options) : options_(std::move(options)) {}
  absl::Status NoToken() const;

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ACCOUNT_KEYS_H_
