// The tenant's ACME account: the domain logic behind AccountService. Every operation needs role
// ADMIN and acts on the caller's tenant only. Thread-safe.
//
// Rollover (RFC 8555 §7.3.5) never loses the key the CA accepts. One change of an account's keys
// at a time: the account's key lease (AccountStore::AcquireKeyLease) is taken before any key is
// unsealed, and every key write presents its fencing token, so a concurrent rollover is ABORTED
// before it writes anything. The new key is stored as pending before keyChange is sent and
// promoted (old retired, new active, one transaction) once the CA accepted it or knows it. It is
// discarded only when the CA definitely refused that keyChange (a problem document on a 4xx
// answer, not badNonce) and does not know the new key; after a timeout, a 5xx, a redirect or a
// transport error it stays pending. A pending key is resolved at start-up (ResolvePendingKeys)
// and before the account key is next used here (rollover, deactivation, authorization
// deactivation, revocation): the CA is asked whether it knows the pending key (newAccount with
// onlyReturnExisting) and, if it does not, the same keyChange is sent again and settled the same
// way.
//
// A CA whose directory offers no keyChange (some CAs do not implement it) gets a new account
// instead: the new key is stored pending as above, registered with newAccount (the contact the
// CA holds for the old account, terms agreed), the old account deactivated at the CA with its
// old key, and only then both recorded in one transaction (AccountStore::ReplaceAccount,
// audited "RolloverByNewAccount"). Every step can be repeated (newAccount for a key the CA knows
// answers with its account), so an answer that settles nothing leaves the key pending and the
// next resolution does the steps again; only a definite refusal of newAccount discards the key.
// The old account's authorizations, a CAA accounturi binding to its URL and ARI replacement of
// its certificates do not carry over; RolloverResult::replacement says so. A CA that also
// requires External Account Binding uses the tenant's kept EAB key (service/eab.h; without one,
// FAILED_PRECONDITION and the pending key is discarded).
//
// An answer that the account is unusable (401/403 unauthorized, accountDoesNotExist) to a
// request signed with the account key makes the service ask the CA for the account; when the CA
// reports it deactivated or revoked, or refuses that request too, the account is recorded so
// (audited "AccountUnusableAtCa"), and CreateAccount can make a new one.
//
// Hijack detection (issue 11, item 6). Verifying an account asks its CA two things, signed with
// the active key: newAccount with onlyReturnExisting (RFC 8555 §7.3.1), which must answer with
// the stored account URL, and the account object (POST-as-GET), which must be valid. When the
// CA knows no account for our key (accountDoesNotExist) or answers with another URL, someone
// rolled the account over to a key of theirs; when it reports the account deactivated or
// revoked while our record says valid, someone closed it. Either way the account is marked
// hijacked (AccountStore::MarkAccountHijacked, audited "AccountHijackDetected" with what the CA
// said; a closed one also recorded closed), counted in acmevault_account_hijacks_detected_total
// and acmevault_accounts_hijacked, and logged as an error. Any other answer (an outage, a
// timeout, a 5xx, a rate limit) is no verdict. Issuance stops for a hijacked account (the
// attacker holds it): service/issuer.h refuses it with FAILED_PRECONDITION naming it. The
// policy scheduler has every valid account verified every `account_verify_interval`
// (kVerifyAccountJob, VerifyByPolicy), and RespondToCompromise verifies first.
//
// RespondToCompromise runs the playbook in order: rollover, deactivate outstanding
// authorizations, reissue every live certificate whose key the service holds, revoke the old
// ones, and only then (if asked) deactivate the account. Each response is a run with an id and
// an expiry (`compromise_run_expiry`); each step is recorded with its run as it finishes, so a
// call naming the run resumes it with the first unfinished step. A call naming no run, or a
// finished or expired one, starts a new run.
//
// When the tenant's account is hijacked (marked before, or found so by the verification the run
// starts with), the playbook needs no account key (the attacker holds the account): the run
// records "hijack_detected", opens a new account with a new key (as CreateAccount does, terms
// agreed; the hijacked one stays marked), reissues every live service-held certificate under it,
// revokes the old ones signed by their own certificate keys (RFC 8555 §7.6; reason superseded),
// and reports in "not_done" exactly what could not be done: host-key certificates neither
// reissued nor revoked, the hijacked account's authorizations (deactivating them needs its key)
// and the hijacked account itself (only its key can deactivate it). Reissue comes before
// revocation, as in the playbook, so hosts are never left without a certificate.
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
#include "service/account_keys.h"
#include "service/auth.h"
#include "service/ca_limits.h"
#include "service/issuer.h"
#include "service/metrics.h"
#include "service/order_runner.h"
#include "service/rotation_policy.h"
#include "storage/store.h"

namespace acmevault::service {

struct AccountView {
  storage::Account account;
  storage::AccountKey active_key;
  // When the tenant's rotation policy rolls the active key over (service/rotation_policy.h):
  // already passed while the rotation job is on its way; unset when the policy never does.
  std::optional<absl::Time> next_rotation;
  // The id of the EAB key the tenant keeps (SetEabKey); empty when none is.
  std::string kept_eab_key_id;
};

struct CreateAccountSpec {
  std::vector<std::string> contact;
  bool terms_of_service_agreed = false;
  std::string eab_key_id;
  std::string eab_hmac_key;  // base64url
  std::optional<crypto::KeyAlgorithm> key_algorithm;
  // Keep the EAB key once the CA has accepted it (SetEabKey's, for the accounts the service
  // opens by itself).
  bool keep_eab_key = false;
};

// What a rollover at a CA whose directory offers no keyChange did instead: the new key became
// the key of a new account at the CA, and the old account was closed (docs/flows.md, "Rollover
// by a new account").
struct AccountReplacement {
  std::string previous_account_url;
  // Whether the previous account is deactivated at the CA (by this rollover, or found so);
  // `previous_outcome` says which, or why not.
  bool previous_deactivated = false;
  std::string previous_outcome;
  // What the new account does not carry over from the old one, one sentence each.
  std::vector<std::string> lost;
};

struct RolloverResult {
  AccountView account;
  // The active key version before the rollover (of the previous account after a replacement).
  int previous_version = 0;
  // False only for a rotation by policy that found, under the key lease, that the key was no
  // longer due (another replica's rotation came first): nothing was changed.
  bool rotated = true;
  // Set when the CA offers no keyChange and the rollover made a new account.
  std::optional<AccountReplacement> replacement;
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

// What a verification of an account at its CA found (see the class comment).
struct AccountVerification {
  storage::AccountId account = 0;
  bool hijacked = false;
  // The CA reports the account deactivated after the service asked for that itself (the
  // answer was lost): recorded deactivated, not hijacked.
  bool deactivated = false;
  std::string what;  // What the CA said, one line.
};

struct CompromiseReport {
  storage::CompromiseRunId run_id = 0;  // Pass it to resume this run.
  std::vector<CompromiseStep> steps;
  AccountView account;
};

// The compromise playbook's revocation job; its subject is a certificate id.
inline constexpr char kRevokeJob[] = "revoke_superseded";

class AccountManager {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::AccountStore* accounts = nullptr;
    AccountKeys* keys = nullptr;  // Makes and opens account keys (vault or token).
    storage::AuthorizationStore* authorizations = nullptr;
    storage::CertificateStore* certificates = nullptr;
    storage::AuditLog* audit = nullptr;
    storage::CompromiseRunStore* compromise_runs = nullptr;
    AcmeClients* clients = nullptr;
    Issuer* issuer = nullptr;    // Reissues certificates in RespondToCompromise.
    // Runs the playbook's revocations as jobs (Create registers their handler, so it must not
    // be started yet; the manager stops it when destroyed), and where the playbook waits for
    // them.
    Engine* engine = nullptr;
    JobNotices* notices = nullptr;
    Metrics* metrics = nullptr;  // Borrowed; may be null.
    // Borrowed; may be null (then no holds): a rateLimited answer to newAccount is stored as a
    // hold of the pending account, so that no replica registers it again before its
    // Retry-After passes.
    storage::CaLimitStore* limits = nullptr;
    // With `limits`: the fleet's new-account budget at each CA (service/ca_limits.h), taken
    // before every newAccount that may make an account (creation, the rollover at a CA without
    // keyChange, a hijacked account's replacement) and given back when the CA made none. An
    // empty budget is RESOURCE_EXHAUSTED with the next token's time, nothing sent.
    CaLimitsByDirectory ca_limits;
    const Clock* clock = Clock::Real();
    // How long a call holds an account's key lease (rollover, recovery, creation): longer than
    // the ACME requests it covers (keyChange and the probes around it, each attempt bounded by
    // the transport's timeout; only badNonce answers, which come at once, are retried), so a
    // live holder keeps it while the lease of a holder that died expires.
    absl::Duration key_lease = absl::Minutes(5);
    // keyChange is sent only while this much is left before the caller's deadline, so that its
    // answer normally still reaches the caller; otherwise DEADLINE_EXCEEDED, nothing written.
    absl::Duration key_change_time = absl::Seconds(2);
    // How long a compromise run may be resumed by its id. After that a call naming it starts a
    // new run: an abandoned response must not be taken up days later as if it were current.
    absl::Duration compromise_run_expiry = absl::Hours(24);
    // How long RespondToCompromise waits for the reissued certificates, and again for the
    // revocations (each runs as jobs, all at once within the engine's bounds).
    absl::Duration reissue_wait = absl::Minutes(2);
    // Authorization deactivations one call sends at once (DeactivateAuthorizations and the
    // playbook's step); at least 1. acmevaultd keeps it within the engine's per-CA bound, so a
    // call asks no more of the CA at once than the engine's jobs may.
    int deactivation_concurrency = 16;
  };
  // INVALID_ARGUMENT naming a missing collaborator; the engine's error when the revocation
  // handler cannot be registered.
  static absl::StatusOr<std::unique_ptr<AccountManager>> Create(Options options);
  // Stops the engine (its revocation handler uses the manager).
  ~AccountManager();

  // The compromise playbook's revocation job (kind kRevokeJob, subject a certificate id):
  // revokes the certificate with the account key (reason superseded) and records it.
  JobOutcome RevokeReplaced(const JobRun& run);
  // The rotation job (kind kRotateJob, subject the account id): rolls the account's key over
  // to the tenant's algorithm through Rollover's crash-safe path, audited as "Rollover" with
  // the policy's reason and the job as actor, only if the policy still says it is due once the
  // key lease is held, so a rotation scheduled twice (two replicas' scans) rolls over once.
  // An account that is gone or no longer valid ends the job; any other error is a failed
  // attempt (ABORTED while a rollover by hand holds the key lease; UNAVAILABLE when the CA's
  // answer settled nothing: the pending key is resolved before the next attempt).
  // Counted in acmevault_account_key_rotations_total.
  JobOutcome RotateByPolicy(const JobRun& run);
  // The deactivation job (kind kDeactivateAuthorizationJob, subject an authorization id):
  // deactivates the authorization at the CA with the tenant's account key and records it
  // deactivated. Done without a request when the ledger no longer holds it outstanding or it
  // belongs to an account that is not the tenant's valid one (no key of ours can reach it).
  // A refusal that is not worth retrying is settled by asking the CA for the authorization and
  // recording the status it reports (expired, invalid, deactivated, revoked); a CA outage is a
  // failed attempt (the engine's backoff). Counted in
  // acmevault_authorization_deactivations_total.
  JobOutcome DeactivateByPolicy(const JobRun& run);
  // The verification job (kind kVerifyAccountJob, subject the account id): verifies the account
  // at its CA (see the class comment) and marks it hijacked when the CA says so. Done for an
  // account that is gone, not valid, already marked, or no longer the tenant's account; an
  // answer that is no verdict is a failed attempt (the engine's backoff). Counted in
  // acmevault_account_verifications_total.
  JobOutcome VerifyByPolicy(const JobRun& run);

  // ALREADY_EXISTS when the tenant has a valid account; ABORTED when another CreateAccount of
  // the tenant is under way (it alone talks to the CA); INVALID_ARGUMENT when the terms are not
  // agreed or the EAB key is not base64url; CA errors as the CA gave them.
  absl::StatusOr<AccountView> CreateAccount(const Caller& caller, const CreateAccountSpec& spec);
  // NOT_FOUND when the tenant has no account.
  absl::StatusOr<AccountView> GetAccount(const Caller& caller);
  // Keeps the tenant's EAB key (`hmac_key` base64url) for its CA, sealed, replacing any kept
  // before; both empty: forgets it (NOT_FOUND when none is kept), answering nullopt. Admins
  // only. INVALID_ARGUMENT for one without the other or a key that is not base64url;
  // FAILED_PRECONDITION when the tenant has no CA.
  absl::StatusOr<std::optional<storage::EabKeyInfo>> SetEabKey(const Caller& caller,
                                                               absl::string_view key_id,
                                                               absl::string_view hmac_key);
  // ABORTED "another change of this account's keys is in progress" while one is (nothing
  // written); DEADLINE_EXCEEDED when less than `key_change_time` was left before `deadline` to
  // send keyChange (nothing written); UNAVAILABLE when the CA's answer to keyChange did not
  // settle it: the new key stays pending and is resolved before the account key is next used.
  // At a CA without keyChange: a new account (see the class comment), reported in `replacement`;
  // UNAVAILABLE likewise when newAccount or the old account's deactivation was not settled;
  // FAILED_PRECONDITION, nothing written, when that CA requires External Account Binding.
  absl::StatusOr<RolloverResult> Rollover(const Caller& caller,
                                          std::optional<crypto::KeyAlgorithm> algorithm,
                                          absl::string_view reason,
                                          absl::Time deadline = absl::InfiniteFuture());
  // Resolves every tenant's pending account key (acmevaultd calls it at start-up). Tries them
  // all; the first error, if any, is returned and each is logged.
  absl::Status ResolvePendingKeys(const storage::Actor& actor);
  // Destroys in the token every tenant's retired and compromised token keys whose grace has
  // passed (AccountKeys::DestroyRetiredKeys); acmevaultd calls it periodically. Returns how many
  // went; a tenant's error is logged and the first returned once all were tried.
  absl::StatusOr<int> DestroyRetiredTokenKeys(const storage::Actor& actor);
  // `confirm_account_url` must equal the account URL. OK, and recorded, also when the CA answers
  // that the account is unusable and then reports it deactivated (see the class comment): an
  // earlier deactivation whose answer was lost.
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
  // See the class comment: the steps of kPlaybook, in order. A step's error stops the run; the
  // error names the run ("pass run_id N to resume"). Steps recorded by an earlier call of the
  // same run are reported as done by it. NOT_FOUND for a run id the tenant never had.
  absl::StatusOr<CompromiseReport> RespondToCompromise(
      const Caller& caller, bool deactivate_account, std::optional<crypto::KeyAlgorithm> algorithm,
      std::optional<storage::CompromiseRunId> run_id = std::nullopt);

 private:
  struct Current;  // The tenant's account, its active key and CA client.
  // Before a newAccount that may make an account at `directory_url`: TakeNewAccountToken
  // (service/ca_limits.h) with this manager's store and limits; false without a store.
  absl::StatusOr<bool> NewAccountToken(absl::string_view directory_url);
  // One run of RespondToCompromise.
  struct Compromise {
    const Caller& caller;
    // Set when the run takes the path for a hijacked account (see the class comment).
    std::optional<storage::Account> hijacked;
    std::string hijack_what;  // what the CA said, when found by this call
    storage::Scope scope;
    storage::CompromiseRunId run_id = 0;
    // When the run began: certificates made from then on are the replacements.
    absl::Time start;
    bool deactivate_account = false;
    std::optional<crypto::KeyAlgorithm> algorithm;
    // Steps an earlier call of this run recorded (step name -> when).
    std::map<std::string, absl::Time> done;
  };
  // What a step did, for the report; `done` false: it had nothing to do and is not recorded.
  struct StepOutcome {
    bool done = true;
    std::string detail;
  };
  struct PlaybookStep {
    const char* name;  // As recorded with the run and reported; never renamed.
    absl::StatusOr<StepOutcome> (AccountManager::*run)(const Compromise&);
  };

  explicit AccountManager(Options options) : options_(std::move(options)) {}

  // The run `run_id` names while it is neither finished nor expired, else a new run.
  absl::StatusOr<Compromise> ResumeCompromise(const Caller& caller, bool deactivate_account,
                                              std::optional<crypto::KeyAlgorithm> algorithm,
                                              std::optional<storage::CompromiseRunId> run_id);
  // The playbook's steps. Each returns its report detail, or the error that stops the run.
  // Rolls the account key over and marks the old one compromised (never unsealed again).
  absl::StatusOr<StepOutcome> RollOverCompromisedKey(const Compromise& c);
  // Every outstanding authorization; UNAVAILABLE when the CA could not be reached for some.
  absl::StatusOr<StepOutcome> DeactivateOutstandingAuthorizations(const Compromise& c);
  // A new certificate for each live one older than the run whose key the service holds, all
  // ordered at once (the engine runs the orders within the tenant's and the CA's bounds);
  // DEADLINE_EXCEEDED while one is still being issued. Names that can no longer be issued are
  // reported, not fatal, so revocation is not held up.
  absl::StatusOr<StepOutcome> ReissueLiveCertificates(const Compromise& c);
  // Revokes (reason superseded) the live service-key certificates older than the run: one
  // kRevokeJob each, all scheduled at once; UNAVAILABLE while some are not revoked yet.
  absl::StatusOr<StepOutcome> RevokeReplacedCertificates(const Compromise& c);
  // Deactivates the account, last, and only when asked: afterwards it can revoke nothing.
  absl::StatusOr<StepOutcome> DeactivateAccountIfAsked(const Compromise& c);

  // The path for a hijacked account (see the class comment).
  absl::StatusOr<StepOutcome> RecordHijack(const Compromise& c);
  // A new account with a new key, unless one newer than the hijacked one is valid already.
  absl::StatusOr<StepOutcome> OpenNewAccount(const Compromise& c);
  // Revokes (reason superseded) the live service-key certificates older than the run, each
  // signed by its own key; UNAVAILABLE when some could not be revoked yet.
  absl::StatusOr<StepOutcome> RevokeWithCertificateKeys(const Compromise& c);
  // Never recorded: what the run cannot do without the hijacked account's key.
  absl::StatusOr<StepOutcome> ReportNotDone(const Compromise& c);

  static constexpr PlaybookStep kHijackPlaybook[] = {
      {"hijack_detected", &AccountManager::RecordHijack},
      {"new_account", &AccountManager::OpenNewAccount},
      {"reissue", &AccountManager::ReissueLiveCertificates},
      {"revoke_by_certificate_key", &AccountManager::RevokeWithCertificateKeys},
      {"not_done", &AccountManager::ReportNotDone},
  };

  static constexpr PlaybookStep kPlaybook[] = {
      {"rollover", &AccountManager::RollOverCompromisedKey},
      {"deactivate_authorizations", &AccountManager::DeactivateOutstandingAuthorizations},
      {"reissue", &AccountManager::ReissueLiveCertificates},
      {"revoke", &AccountManager::RevokeReplacedCertificates},
      {"deactivate_account", &AccountManager::DeactivateAccountIfAsked},
  };

  // Verifies `current` at its CA and marks it hijacked when the CA says so (see the class
  // comment); the error of an answer that is no verdict.
  absl::StatusOr<AccountVerification> VerifyAtCa(const storage::Scope& scope,
                                                 const Current& current);
  // Whether the service asked the CA to deactivate `account` (an audit row
  // kDeactivationRequested, written before every deactivation request).
  absl::StatusOr<bool> RequestedDeactivation(const storage::Scope& scope,
                                             storage::AccountId account);
  // Marks `account` hijacked: the store's mark and audit row, the metrics, the error log.
  absl::Status MarkHijacked(const storage::Scope& scope, const storage::Account& account,
                            absl::string_view what);
  // The tenant's hijacked account when it is the one the tenant would use (no valid account
  // made after it), else unset.
  absl::StatusOr<std::optional<storage::Account>> HijackedAccount(const storage::Scope& scope);
  // The tenant's name for metrics (its id when it cannot be read).
  std::string TenantName(const storage::Scope& scope);
  // The tenant's valid account and its CA client, no key unsealed. FAILED_PRECONDITION naming
  // it when that account is marked hijacked.
  absl::StatusOr<Current> FindValid(const storage::Scope& scope);
  // FindValid, its pending key resolved, and the active key unsealed for `scope`'s RPC.
  absl::StatusOr<Current> Load(const storage::Scope& scope);
  absl::StatusOr<AccountView> View(const storage::Scope& scope, storage::AccountId id);
  // The account's key lease; ABORTED "another change of this account's keys ..." while another
  // call holds it.
  absl::StatusOr<storage::KeyLease> TakeKeyLease(const storage::Scope& scope,
                                                 storage::AccountId account);
  // Gives a lease back; a failure is only logged (the lease expires anyway).
  void GiveBack(const storage::Scope& scope, const storage::KeyLease& lease);
  // The version of the account's pending key, if it has one.
  absl::StatusOr<std::optional<int>> PendingVersion(const storage::Scope& scope,
                                                    storage::AccountId account);
  // Resolves the account's pending key (see the class comment) under `held` or, when null, a
  // lease of its own. OK when no key is left pending; UNAVAILABLE, the key kept pending, when
  // the CA's answers do not settle it.
  // At a CA without keyChange the resolution completes the replacement (ReplaceByNewAccount,
  // compromising the old account's keys when `mark_old_compromised`) and reports it in
  // `replaced` when given.
  struct Replaced {
    storage::AccountId account = 0;  // The new account.
    int previous_version = 0;        // The old account's active key version; 0 if none.
    AccountReplacement report;
  };
  absl::Status ResolvePendingKey(const storage::Scope& scope, const Current& current,
                                 const storage::KeyLease* held, bool mark_old_compromised = false,
                                 std::optional<Replaced>* replaced = nullptr);
  // Rollover at a CA whose directory offers no keyChange (see the class comment), for pending
  // key `version` (`candidate`) of the current account under `lease`: newAccount with it,
  // deactivation of the old account at the CA, AccountStore::ReplaceAccount, the audit row.
  // UNAVAILABLE, the key kept pending, when an answer settled nothing; a definite refusal of
  // newAccount discards the key and is returned.
  absl::StatusOr<Replaced> ReplaceByNewAccount(const storage::Scope& scope,
                                               const Current& current,
                                               const storage::KeyLease& lease,
                                               const crypto::Signer& candidate, int version,
                                               bool mark_old_compromised, absl::string_view why);
  // What became of a pending key once keyChange to it was answered.
  enum class Settled { kPromoted, kDiscarded, kPending };
  // Records what keyChange to `candidate` (pending key `version`, under `lease`) answered,
  // `changed`: promoted when the CA accepted it or knows the key when asked; discarded when the
  // refusal was definite and the CA does not know the key; otherwise left pending (audited
  // "RolloverPending").
  absl::StatusOr<Settled> SettleKeyChange(const storage::Scope& scope, const Current& current,
                                          const storage::KeyLease& lease,
                                          const crypto::Signer& candidate, int version,
                                          const absl::Status& changed);
  // UNAVAILABLE: keyChange to key `version` answered `changed`, which settled nothing.
  static absl::Status StillPending(int version, const absl::Status& changed);
  // Whether the account is closed at the CA, given `answer` to a request signed with its key:
  // only when the answer says the account is unusable is the CA asked for the account; when it
  // reports it deactivated or revoked, or refuses that request too, that is recorded (audited
  // "AccountUnusableAtCa") and the result is true.
  absl::StatusOr<bool> ClosedAtCa(const storage::Scope& scope, const Current& current,
                                  const absl::Status& answer);
  // Revokes with the account key (an alreadyRevoked answer is OK); FAILED_PRECONDITION when the
  // answer showed the account closed at the CA (ClosedAtCa).
  absl::Status RevokeWithAccountKey(const storage::Scope& scope, const Current& current,
                                    absl::string_view der, crypto::RevocationReason reason);
  // `only_if_due`: a rotation by policy; under the key lease, nothing is done unless the
  // tenant's policy says the active key is due (rotated false), and the reason is the policy's.
  absl::StatusOr<RolloverResult> RolloverScoped(const storage::Scope& scope,
                                                std::optional<crypto::KeyAlgorithm> algorithm,
                                                absl::string_view reason, bool mark_old_compromised,
                                                absl::Time deadline, bool only_if_due = false);
  absl::StatusOr<DeactivationCounts> DeactivateAuthorizationsScoped(
      const storage::Scope& scope, const std::vector<std::string>& identifiers);

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ACCOUNTS_H_
