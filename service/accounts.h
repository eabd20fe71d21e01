// The tenant's ACME account: the domain logic behind AccountService. Every operation needs role
// ADMIN and acts on the caller's tenant only. Thread-safe.
//
// Rollover (RFC 8555 §7.3.5) is crash-safe: the new key is stored as pending before keyChange
// is sent, and promoted (old retired, new active, one transaction) only after the CA accepted
// it. A pending key left behind by a crash is resolved by asking the CA which key it knows
// (newAccount with onlyReturnExisting): the one it accepts is the active one. A second rollover
// while one is in progress (a pending key younger than `rollover_grace`) is ABORTED.
//
// RespondToCompromise runs the playbook in order: rollover, deactivate outstanding
// authorizations, reissue every live certificate whose key the service holds, revoke the old
// ones, and only then (if asked) deactivate the account. Each step is recorded in the audit log
// as it completes, so calling it again after a crash resumes with the first unfinished step.
#ifndef ACMEVAULT_SERVICE_ACCOUNTS_H_
#define ACMEVAULT_SERVICE_ACCOUNTS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"
#include "service/auth.h"
#include "service/issuer.h"
#include "service/metrics.h"
#include "service/order_runner.h"
#include "storage/store.h"

namespace acmevault::service {

struct AccountView {
  storage::Account account;
  storage::AccountKey active_key;
};

struct CreateAccountSpec {
  std::vector<std::string> contact;
  bool terms_of_service_agreed = false;
  std::string eab_key_id;
  std::string eab_hmac_key;  // base64url
  std::optional<crypto::KeyAlgorithm> key_algorithm;
};

struct RolloverResult {
  AccountView account;
  int previous_version = 0;
};

struct DeactivationCounts {
  int deactivated = 0;
  int skipped = 0;
  int failed = 0;
};

struct CompromiseStep {
  std::string name;
  bool done = false;
  std::string detail;
  std::optional<absl::Time> finished_at;
};

struct CompromiseReport {
  std::vector<CompromiseStep> steps;
  AccountView account;
};

class AccountManager {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::AccountStore* accounts = nullptr;
    storage::AuthorizationStore* authorizations = nullptr;
    storage::CertificateStore* certificates = nullptr;
    storage::AuditLog* audit = nullptr;
    AcmeClients* clients = nullptr;
    Issuer* issuer = nullptr;    // Reissues certificates in RespondToCompromise.
    Metrics* metrics = nullptr;  // Borrowed; may be null.
    const Clock* clock = Clock::Real();
    // A pending key younger than this belongs to a rollover in progress.
    absl::Duration rollover_grace = absl::Minutes(2);
    // How long RespondToCompromise waits for each reissued certificate.
    absl::Duration reissue_wait = absl::Minutes(2);
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<AccountManager>> Create(Options options);

  // ALREADY_EXISTS when the tenant has a valid account; INVALID_ARGUMENT when the terms are not
  // agreed or the EAB key is not base64url; CA errors as the CA gave them.
  absl::StatusOr<AccountView> CreateAccount(const Caller& caller, const CreateAccountSpec& spec);
  // NOT_FOUND when the tenant has no account.
  absl::StatusOr<AccountView> GetAccount(const Caller& caller);
  absl::StatusOr<RolloverResult> Rollover(const Caller& caller,
                                          std::optional<crypto::KeyAlgorithm> algorithm,
                                          absl::string_view reason);
  // `confirm_account_url` must equal the account URL.
  absl::StatusOr<AccountView> Deactivate(const Caller& caller,
                                         absl::string_view confirm_account_url);
  // Every outstanding authorization in the ledger, or those for `identifiers`.
  absl::StatusOr<DeactivationCounts> DeactivateAuthorizations(
      const Caller& caller, const std::vector<std::string>& identifiers);
  // Revokes a certificate of the tenant at the CA (RFC 8555 §7.6) and records it. Signed with
  // the certificate's own key when `use_certificate_key` (FAILED_PRECONDITION if the service does
  // not hold it) or when the reason is keyCompromise and the service holds it; otherwise with the
  // account key. INVALID_ARGUMENT "serial" when empty; NOT_FOUND for an unknown serial;
  // FAILED_PRECONDITION if already revoked.
  absl::StatusOr<storage::Certificate> RevokeCertificate(const Caller& caller,
                                                         absl::string_view serial,
                                                         crypto::RevocationReason reason,
                                                         bool use_certificate_key);
  // See the class comment: the steps of kPlaybook, in order. A step's error stops the run (call
  // again to resume); steps recorded by an earlier run are reported as done by it.
  absl::StatusOr<CompromiseReport> RespondToCompromise(
      const Caller& caller, bool deactivate_account,
      std::optional<crypto::KeyAlgorithm> algorithm);

 private:
  struct Current;  // The tenant's account, its active key and CA client.
  // One run of RespondToCompromise.
  struct Compromise {
    const Caller& caller;
    storage::Scope scope;
    // When the response began: certificates made from then on are the replacements.
    absl::Time start;
    bool deactivate_account = false;
    std::optional<crypto::KeyAlgorithm> algorithm;
    // Steps an earlier, unfinished run recorded (step name -> when).
    std::map<std::string, absl::Time> done;
  };
  // What a step did, for the report; `done` false: it had nothing to do and is not recorded.
  struct StepOutcome {
    bool done = true;
    std::string detail;
  };
  struct PlaybookStep {
    const char* name;  // As recorded in the audit log and reported; never renamed.
    absl::StatusOr<StepOutcome> (AccountManager::*run)(const Compromise&);
  };

  explicit AccountManager(Options options) : options_(std::move(options)) {}

  // The run to continue: the last CompromiseStart not followed by CompromiseDone and the steps
  // recorded since, or a new start (audited) when there is none.
  absl::StatusOr<Compromise> ResumeCompromise(const Caller& caller, bool deactivate_account,
                                              std::optional<crypto::KeyAlgorithm> algorithm);
  // The playbook's steps. Each returns its report detail, or the error that stops the run.
  // Rolls the account key over and marks the old one compromised (never unsealed again).
  absl::StatusOr<StepOutcome> RollOverCompromisedKey(const Compromise& c);
  // Every outstanding authorization; UNAVAILABLE when the CA could not be reached for some.
  absl::StatusOr<StepOutcome> DeactivateOutstandingAuthorizations(const Compromise& c);
  // A new certificate for each live one older than the run whose key the service holds;
  // DEADLINE_EXCEEDED while one is still being issued. Names that can no longer be issued are
  // reported, not fatal, so revocation is not held up.
  absl::StatusOr<StepOutcome> ReissueLiveCertificates(const Compromise& c);
  // Revokes (reason superseded) the live service-key certificates older than the run.
  absl::StatusOr<StepOutcome> RevokeReplacedCertificates(const Compromise& c);
  // Deactivates the account, last, and only when asked: afterwards it can revoke nothing.
  absl::StatusOr<StepOutcome> DeactivateAccountIfAsked(const Compromise& c);

  static constexpr PlaybookStep kPlaybook[] = {
      {"rollover", &AccountManager::RollOverCompromisedKey},
      {"deactivate_authorizations", &AccountManager::DeactivateOutstandingAuthorizations},
      {"reissue", &AccountManager::ReissueLiveCertificates},
      {"revoke", &AccountManager::RevokeReplacedCertificates},
      {"deactivate_account", &AccountManager::DeactivateAccountIfAsked},
  };

  absl::StatusOr<Current> Load(const storage::Scope& scope);
  absl::StatusOr<AccountView> View(const storage::Scope& scope, storage::AccountId id);
  // Resolves a pending key left by a crash. OK when none is left pending.
  absl::Status RecoverPendingKey(const storage::Scope& scope, Current& current);
  absl::StatusOr<RolloverResult> RolloverScoped(const storage::Scope& scope,
                                                std::optional<crypto::KeyAlgorithm> algorithm,
                                                absl::string_view reason,
                                                bool mark_old_compromised);
  absl::StatusOr<DeactivationCounts> DeactivateAuthorizationsScoped(
      const storage::Scope& scope, const std::vector<std::string>& identifiers);

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ACCOUNTS_H_
