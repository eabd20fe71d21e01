// Plain data types of the vault and ledger (storage/store.h): tenants, identities, accounts,
// their keys and key leases, compromise response runs, orders and leases, authorizations,
// certificates, challenges and audit records. Values only; no behaviour beyond names and
// canonical forms. Times are stored at microsecond precision: a time read back equals the time
// written truncated to whole microseconds.
#ifndef ACMEVAULT_STORAGE_TYPES_H_
#define ACMEVAULT_STORAGE_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"
#include "crypto/secret.h"

namespace acmevault::storage {

using TenantId = int64_t;
using IdentityId = int64_t;
using AccountId = int64_t;
using OrderId = int64_t;
using AuthorizationId = int64_t;
using CertificateId = int64_t;
using JobId = int64_t;

// Who acts, for the audit log. Never carries a secret (a bearer token is named by its identity
// id, never by its value).
struct Actor {
  std::string identity;  // e.g. "spiffe://example.org/host/web-1" or "identity:42"
  std::string rpc;       // the RPC or job, e.g. "acmevault.v1.Certificates/Issue"
};

// The tenant a call is confined to (row-level security in PostgreSQL) and who makes it.
struct Scope {
  TenantId tenant = 0;
  Actor actor;
};

// ---------------------------------------------------------------------------------------------
// Tenants

// Where a tenant's account keys live: sealed in the vault (made in memory, stored wrapped), or
// in the deployment's PKCS#11 token (made there, never leaving it; the vault stores the token
// object's id and the public key only).
enum class KeyStorage { kVault, kPkcs11 };
absl::string_view KeyStorageName(KeyStorage storage);  // "vault", "pkcs11"
absl::StatusOr<KeyStorage> ParseKeyStorage(absl::string_view name);

struct TenantPolicy {
  crypto::KeyAlgorithm key_algorithm = crypto::KeyAlgorithm::kEcdsaP256;
  // Where new account keys are made and kept. Existing keys stay where they were made.
  KeyStorage key_storage = KeyStorage::kVault;
  // Roll the account key over once it is this old.
  absl::Duration max_key_age = absl::Hours(24 * 90);
  // Deactivate an order's authorizations once its certificate is stored.
  bool deactivate_authorizations_after_issuance = true;
  // One ACME account per order instead of one per tenant.
  bool ephemeral_accounts = false;
  // A certificate is due for renewal this long before it expires.
  absl::Duration renewal_window = absl::Hours(24 * 30);
  // Key algorithms a host's CSR may use and the service may generate for a certificate; empty
  // means every algorithm the service knows. At most 8, no duplicates.
  std::vector<crypto::KeyAlgorithm> certificate_key_algorithms;
};

struct TenantSpec {
  std::string name;  // [a-z0-9][a-z0-9-]{0,62}; unique
  // Identifier patterns the tenant may request: "example.com" (that name) or "*.example.com"
  // (any name below example.com). Matching is the service's job; storage keeps the list.
  std::vector<std::string> allowed_identifiers;
  TenantPolicy policy;
  std::string acme_directory_url;  // http:// or https://
};

struct Tenant {
  TenantId id = 0;
  TenantSpec spec;
  absl::Time created_at;
  absl::Time updated_at;
  std::optional<absl::Time> disabled_at;  // set: no identity of it authenticates
};

// ---------------------------------------------------------------------------------------------
// Identities: authenticated callers mapped to a tenant and role.

enum class Role { kHost, kAdmin, kPlatformAdmin };
absl::string_view RoleName(Role role);  // "host", "admin", "platform_admin"
absl::StatusOr<Role> ParseRole(absl::string_view name);

struct Identity {
  IdentityId id = 0;
  TenantId tenant = 0;
  Role role = Role::kHost;
  std::string spiffe_id;     // set for mTLS identities
  bool bearer_token = false;  // true for token identities (the hash is never returned)
  std::string description;
  absl::Time created_at;
  std::optional<absl::Time> revoked_at;
  // Tokens only: from this time on the token no longer authenticates. Unset: it never expires.
  std::optional<absl::Time> expires_at;
};

// ---------------------------------------------------------------------------------------------
// Accounts and their keys

enum class AccountStatus { kPending, kValid, kDeactivated, kRevoked };
absl::string_view AccountStatusName(AccountStatus status);  // "pending", "valid", ...
absl::StatusOr<AccountStatus> ParseAccountStatus(absl::string_view name);

struct Account {
  AccountId id = 0;
  TenantId tenant = 0;
  std::string directory_url;
  std::string account_url;  // empty until newAccount succeeded
  AccountStatus status = AccountStatus::kPending;
  absl::Time created_at;
  std::optional<absl::Time> deactivated_at;
  // Made for one order of a tenant in ephemeral-account mode (AccountStore::
  // CreateEphemeralAccount) and deactivated once that order ended: never the tenant's account.
  bool ephemeral = false;
  // When the service found the account taken over at the CA (AccountStore::MarkAccountHijacked):
  // the CA no longer knows our key for it, or reports it closed when we did not close it.
  // Unset for an account never found so. A hijacked account keeps its status but is no longer
  // the tenant's live account: nothing is issued under it and another may be created.
  std::optional<absl::Time> hijacked_at;
  // The contact URLs the CA holds for it, as its newAccount answer gave them (RecordAccountUrl;
  // a replacement account copies the replaced one's). At most kMaxAccountContacts of at most
  // kMaxAccountContactSize bytes each.
  std::vector<std::string> contact;
};

enum class KeyState { kPending, kActive, kRetired, kCompromised };
absl::string_view KeyStateName(KeyState state);  // "pending", "active", "retired", "compromised"
absl::StatusOr<KeyState> ParseKeyState(absl::string_view name);

// Public facts about a key, supplied by the caller (crypto computes them).
struct PublicKeyInfo {
  std::string public_jwk;  // RFC 7517 JSON of the public key
  std::string thumbprint;  // RFC 7638, base64url
};

// A key version without its private half.
struct AccountKey {
  AccountId account = 0;
  int version = 0;
  KeyState state = KeyState::kPending;
  crypto::KeyAlgorithm algorithm = crypto::KeyAlgorithm::kEcdsaP256;
  PublicKeyInfo public_key;
  std::string kek_id;  // the key-encryption key its data key is wrapped under; "" in a token
  // The PKCS#11 object (CKA_ID) that holds the private half; "" for a key sealed in the vault.
  std::string token_object;
  absl::Time created_at;
  std::optional<absl::Time> activated_at;
  std::optional<absl::Time> retired_at;
  std::optional<absl::Time> compromised_at;
  // Token keys only: when the token object was destroyed (AccountStore::MarkKeyDestroyed).
  std::optional<absl::Time> destroyed_at;
};

// A key version ready for use: a vault key unsealed, or a token key's object id (in `info`),
// which the caller opens in the token.
struct UnsealedAccountKey {
  AccountKey info;
  std::optional<crypto::PrivateKey> private_key;  // set iff info.token_object is empty
};

// External Account Binding credentials (RFC 8555 §7.3.4) a tenant keeps for the accounts the
// service opens by itself at a CA that requires them (AccountStore::KeepEabKey).
struct EabKeyInfo {
  std::string directory_url;  // the CA they are for
  std::string key_id;         // the CA's name for the key; not secret
  absl::Time kept_at;
};
inline constexpr size_t kMaxEabKeyIdSize = 512;
inline constexpr size_t kMaxEabHmacKeySize = 1024;
struct EabKey {
  EabKeyInfo info;
  crypto::SecretBytes hmac_key;  // raw bytes (decoded)
};

// The private half of a new key version as the store keeps it. A vault key is sealed before it
// leaves the call; of a token key only the object id is stored.
struct AccountKeyMaterial {
  // A key to seal in the vault. Implicit, so that a PrivateKey is material as it always was.
  AccountKeyMaterial(const crypto::PrivateKey& key)  // NOLINT(google-explicit-constructor)
      : vault_key(&key), algorithm(key.algorithm()) {}
  // A key held in a PKCS#11 token as object `object_id` (at most 128 bytes, printable).
  static AccountKeyMaterial InToken(std::string object_id, crypto::KeyAlgorithm algorithm) {
    return AccountKeyMaterial(std::move(object_id), algorithm);
  }

  const crypto::PrivateKey* vault_key = nullptr;  // borrowed for the call
  std::string token_object;
  crypto::KeyAlgorithm algorithm;

 private:
  AccountKeyMaterial(std::string object_id, crypto::KeyAlgorithm a)
      : token_object(std::move(object_id)), algorithm(a) {}
};

// The right to change an account's keys (AccountStore::AcquireKeyLease), held by one caller at
// a time. Every key write presents it; once another caller has taken the lease (the account's
// fencing token moved past `fencing_token`) the write is refused.
struct KeyLease {
  TenantId tenant = 0;
  AccountId account = 0;
  int64_t fencing_token = 0;
  absl::Time expires_at;
};

// ---------------------------------------------------------------------------------------------
// Compromise responses

// One run of the compromise playbook (AccountService.RespondToCompromise): a call resumes only
// the run it names, while that run is neither finished nor expired.
using CompromiseRunId = int64_t;
struct CompromiseRun {
  CompromiseRunId id = 0;
  TenantId tenant = 0;
  bool deactivate_account = false;
  absl::Time started_at;
  absl::Time expires_at;
  std::optional<absl::Time> finished_at;
  std::map<std::string, absl::Time> steps;  // finished step name -> when
};

// ---------------------------------------------------------------------------------------------
// Orders and leases

// The service's order state machine. Moves forward only (created < pending < ready <
// processing < valid), skipping allowed; any non-terminal state may move to invalid.
// valid and invalid are terminal.
enum class OrderState { kCreated, kPending, kReady, kProcessing, kValid, kInvalid };
absl::string_view OrderStateName(OrderState state);  // "created", "pending", ...
absl::StatusOr<OrderState> ParseOrderState(absl::string_view name);
bool IsTerminal(OrderState state);

struct Order {
  OrderId id = 0;
  TenantId tenant = 0;
  AccountId account = 0;
  std::vector<std::string> identifiers;  // canonical: see CanonicalIdentifiers
  std::string acme_url;                  // empty until recorded; then never changes
  OrderState state = OrderState::kCreated;
  std::string idempotency_key;  // empty if none
  std::string lease_owner;      // empty if unowned
  std::optional<absl::Time> lease_expires_at;
  int64_t fencing_token = 0;  // incremented by every claim
  std::optional<CertificateId> certificate;
  std::string error;  // why it is invalid, if it is
  // The ACME problem type (RFC 8555 §6.7) of the CA's answer that made it invalid; "" when the
  // failure carried none.
  std::string problem_type;
  absl::Time created_at;
  absl::Time updated_at;
  std::string csr_der;               // as given at creation ("" if none)
  bool has_certificate_key = false;  // a sealed certificate key is stored with the order
  // Who made it: the creating call's Scope.actor.identity (the authenticated caller). Its
  // idempotency key binds for this identity only. Empty for orders made before it was recorded.
  std::string created_by;
  // Its authorizations are answered by DNS-01 (the request asked for it); else HTTP-01, but a
  // wildcard's always by DNS-01. Stored, so that every replica's step answers as asked.
  bool prefer_dns01 = false;
  // The RFC 9773 CertID of the certificate this order renews, sent as newOrder's `replaces`
  // when the CA offers renewalInfo; empty when it renews none.
  std::string replaces;
  // When the CA kept it processing past the service's timeout and it was set aside
  // (OrderStore::MarkOrderStalled): still in flight for its job, which looks at it again from
  // its stored URL, but no longer joined by new requests for its identifier set.
  std::optional<absl::Time> stalled_at;
};

// How long an idempotency key binds the order it made (from the order's created_at). After
// that, or once the order's certificate is revoked or expired, the key starts a new order.
inline constexpr absl::Duration kIdempotencyKeyLifetime = absl::Hours(24);

// The right to work on an order. Writes that present a fencing token older than the current
// one are rejected (FAILED_PRECONDITION), so a replica whose lease expired and was claimed by
// another cannot commit over the new owner.
//
// An order whose work is a job (NewOrder::job_kind) is fenced by that job's lease alone: `job`
// names the job and `fencing_token` is the job's (JobLease), checked against the job row in the
// same transaction as the write; the order's own lease columns play no part. With `job` 0 the
// token is the order row's own (orders made without a job).
struct Lease {
  TenantId tenant = 0;
  OrderId order = 0;
  std::string owner;
  int64_t fencing_token = 0;
  absl::Time expires_at;
  JobId job = 0;
};

// The most CSR bytes an order stores.
inline constexpr size_t kMaxCsrDerSize = 16 * 1024;
// The longest problem type an order stores.
inline constexpr size_t kMaxProblemTypeSize = 256;
// The most bytes of what the CA said that MarkAccountHijacked's audit row keeps.
inline constexpr size_t kMaxHijackDetailSize = 1024;
// The most contact URLs an account keeps, and the most bytes of each (Account::contact).
inline constexpr size_t kMaxAccountContacts = 10;
inline constexpr size_t kMaxAccountContactSize = 512;

// Why an order failed, as OrderStore::TransitionOrder records it on a move to kInvalid (and
// ignores otherwise): Order::error and Order::problem_type (at most kMaxProblemTypeSize bytes).
struct OrderFailure {
  std::string error;
  std::string problem_type;
};

// ---------------------------------------------------------------------------------------------
// Jobs: durable units of background work (JobStore, the work engine)

// A job's kind is [a-z][a-z0-9_]{0,31} ("order_step", "rotate", "renew", ...); its subject
// (what it acts on, e.g. an order id) 1-200 printable ASCII characters without spaces; its CA
// the directory URL it counts against for per-CA bounds (at most 2048 bytes, same characters),
// or empty. A job's last error is kept clipped to kMaxJobError bytes (on a UTF-8 boundary).
// INVALID_ARGUMENT unless `kind` is a job kind.
absl::Status ValidateJobKind(absl::string_view kind);
inline constexpr size_t kMaxJobSubject = 200;
inline constexpr size_t kMaxJobCa = 2048;
inline constexpr size_t kMaxJobError = 1024;

struct NewJob {
  std::string kind;
  std::string subject;
  std::string ca;  // "" for no per-CA bound
  absl::Time not_before;
};

// A job that is not finished: due from not_before on, leased (lease_owner set) while a replica
// runs it, or failed for good (failed_at set; kept for inspection, no longer open). A completed
// job has no row.
struct Job {
  JobId id = 0;
  TenantId tenant = 0;
  std::string kind;
  std::string subject;
  std::string ca;
  absl::Time not_before;
  std::string lease_owner;  // "" when not leased
  std::optional<absl::Time> lease_expires_at;
  int64_t fencing_token = 0;  // incremented by every claim
  int attempts = 0;           // failed attempts since the last success (see RescheduleJob)
  std::string last_error;
  std::optional<absl::Time> failed_at;
  absl::Time created_at;
  absl::Time updated_at;
};

// The right to run a job, as a claim grants it. Every write of the job presents it; once
// another owner has claimed the job (a newer fencing token), or the job is gone, the write is
// refused (FAILED_PRECONDITION).
struct JobLease {
  TenantId tenant = 0;
  JobId job = 0;
  std::string owner;
  int64_t fencing_token = 0;
  absl::Time expires_at;
};

// The job lease an order's Lease stands for (Lease::job set), and back.
inline JobLease JobLeaseOf(const Lease& lease) {
  return JobLease{lease.tenant, lease.job, lease.owner, lease.fencing_token, lease.expires_at};
}
inline Lease OrderLeaseOf(const JobLease& lease, OrderId order) {
  return Lease{lease.tenant, order, lease.owner, lease.fencing_token, lease.expires_at, lease.job};
}

struct ClaimedJob {
  Job job;  // as claimed: lease_owner, lease_expires_at and fencing_token are the lease's
  JobLease lease;
};

// What a replica asks of JobStore::ClaimJobs.
struct JobClaim {
  std::string owner;  // the replica
  absl::Time now;     // the caller's clock: what is due, and when leases end
  int max_jobs = 1;   // at most this many jobs (>= 1)
  absl::Duration lease_duration = absl::Minutes(1);
  // Bounds on the jobs leased at once, counting every owner's leases in force: per tenant, and
  // per CA (jobs with a non-empty ca). 0: no bound.
  int per_tenant_limit = 0;
  int per_ca_limit = 0;
  // Only jobs of these kinds (those the caller has handlers for); at least one.
  std::vector<std::string> kinds;
};

struct JobClaimResult {
  // In claim order: round-robin over tenants (see JobStore::ClaimJobs).
  std::vector<ClaimedJob> jobs;
  // The earliest not_before after `now` of an unleased job of the claimed kinds, if any: when
  // something becomes due next.
  std::optional<absl::Time> next_not_before;
  // Due jobs of the claimed kinds were left unclaimed (the batch was full, or a per-tenant or
  // per-CA bound held them back): a claim after one of those leases ends, or right away when
  // the batch was full, may find them. False: nothing is due until next_not_before (or a new
  // job, a release, an expiring lease).
  bool left_due = false;
};

// A job of one kind ended (completed or failed for good), or the service announced that the
// work behind a subject finished: what wakes a caller waiting on another replica.
struct JobNotice {
  TenantId tenant = 0;
  std::string kind;
  std::string subject;
  bool failed = false;
};

struct DueJobCount {
  std::string kind;
  int64_t due = 0;
};

// ---------------------------------------------------------------------------------------------
// Authorizations (the ledger of RFC 8555 authorizations, for deactivation)

enum class AuthorizationStatus { kPending, kValid, kInvalid, kDeactivated, kExpired, kRevoked };
absl::string_view AuthorizationStatusName(AuthorizationStatus status);
absl::StatusOr<AuthorizationStatus> ParseAuthorizationStatus(absl::string_view name);

struct AuthorizationRecord {
  AccountId account = 0;
  std::optional<OrderId> order;
  std::string url;
  std::string identifier;
  AuthorizationStatus status = AuthorizationStatus::kPending;
  std::optional<absl::Time> expires_at;
};

struct Authorization {
  AuthorizationId id = 0;
  TenantId tenant = 0;
  AuthorizationRecord record;
  std::optional<absl::Time> deactivated_at;
  absl::Time updated_at;
};

// Which outstanding (pending or valid, not deactivated, not expired) authorizations to list.
// Unset fields do not filter.
struct AuthorizationFilter {
  std::optional<AccountId> account;
  std::optional<OrderId> order;
  std::vector<std::string> identifiers;  // any of these
  std::optional<AuthorizationId> id;     // this one only
  // Last recorded (updated_at) before this time: what the policy sweep looks at.
  std::optional<absl::Time> updated_before;
  // At most this many (the first by id); 0 means all.
  int limit = 0;
};

// ---------------------------------------------------------------------------------------------
// Certificates

struct NewCertificate {
  std::optional<AccountId> account;
  std::optional<OrderId> order;
  std::vector<std::string> identifiers;
  std::string serial;  // lower-case hex, unique per tenant
  absl::Time not_before;
  absl::Time not_after;
  std::string chain_pem;
  std::optional<int> account_key_version;  // the account key that ordered it
  // The certificate's private key when the service generated it (borrowed for the call);
  // stored sealed, never returned by listing calls.
  const crypto::PrivateKey* private_key = nullptr;
  // Certificate::crl_next_check from the start: set (to not_after) for a certificate that names
  // no CRL, which no revocation-list scan then reads.
  std::optional<absl::Time> crl_next_check;
};

struct Certificate {
  CertificateId id = 0;
  TenantId tenant = 0;
  std::optional<AccountId> account;
  std::optional<OrderId> order;
  std::vector<std::string> identifiers;
  std::string serial;
  absl::Time not_before;
  absl::Time not_after;
  std::string chain_pem;
  std::optional<int> account_key_version;
  bool has_private_key = false;
  std::optional<absl::Time> revoked_at;
  std::optional<crypto::RevocationReason> revocation_reason;
  // Set when a later certificate for the same identifiers was stored.
  std::optional<absl::Time> superseded_at;
  // The serial of the certificate this one renewed (CertificateStore::RecordReplacedCertificate);
  // empty when it renewed none.
  std::string replaces_serial;
  // What the CA last said about renewing it (ARI, RFC 9773; CertificateStore::RecordAriCheck):
  // its suggested window (both set or neither) and when to ask again. Unset until first asked.
  std::optional<absl::Time> ari_window_start;
  std::optional<absl::Time> ari_window_end;
  std::optional<absl::Time> ari_next_check;
  // What its issuer's CRL said (CertificateStore::RecordCrlCheck): when to read it again
  // (unset until first read), and once it listed the certificate, when the CA revoked it and
  // why: revoked outside the service, which renews it at once.
  std::optional<absl::Time> crl_next_check;
  std::optional<absl::Time> revoked_outside_at;
  std::optional<crypto::RevocationReason> revoked_outside_reason;
  absl::Time created_at;
};

// One reading of a certificate's CRL (CertificateStore::RecordCrlCheck).
struct CrlCheck {
  absl::Time next_check;
  // Set when the CRL lists the certificate: the entry's revocation time and reason, and where
  // it was read (for the audit row).
  std::optional<absl::Time> revoked_at;
  crypto::RevocationReason reason = crypto::RevocationReason::kUnspecified;
  std::string crl_url;
};

// One answer of the CA's renewalInfo for a certificate (CertificateStore::RecordAriCheck).
struct AriCheck {
  // The suggested window: both set, start <= end; neither when the CA gave none (its
  // directory offers no renewalInfo, or the fetch failed), which keeps the window stored.
  std::optional<absl::Time> window_start;
  std::optional<absl::Time> window_end;
  // When the CA may be asked again.
  absl::Time next_check;
};

// An ACME request a CA's rateLimited answer can hold back (CaLimitStore).
enum class CaRequest { kNewOrder, kNewAccount, kFinalize };
absl::string_view CaRequestName(CaRequest request);  // "newOrder", "newAccount", "finalize"

// What a hold is for: an account's request for an identifier set (canonical, see
// CanonicalIdentifiers; empty for a request that names none, such as newAccount, whose account
// is 0 until the CA made it).
struct CaHoldKey {
  AccountId account = 0;
  std::vector<std::string> identifiers;
  CaRequest request = CaRequest::kNewOrder;
};

// A stored hold: the request is not sent again before `until`. `problem` is the CA's answer
// summarised (at most kMaxCaHoldProblemSize bytes), never a key.
struct CaHold {
  absl::Time until;
  std::string problem;
};
inline constexpr size_t kMaxCaHoldProblemSize = 1024;

// A token bucket that keeps requests of one kind under a CA's limit: at most `capacity`
// tokens, refilled evenly at `capacity` per `period` (300 per 3 h: one every 36 s).
struct CaBudget {
  std::string name;  // e.g. "new_order"; 1 to 64 bytes
  double capacity = 0;
  absl::Duration period;
  // Empty: the bucket is an account's (CaLimitStore's `account` argument). Set: the bucket is
  // the tenant's for exactly this identifier set, whatever the account (Let's Encrypt counts
  // duplicate certificates by the set of names, not by the account); made canonical.
  std::vector<std::string> identifiers;
};

// The answer of CaLimitStore::TakeCaBudgetToken.
struct CaBudgetTake {
  bool taken = false;
  double tokens_left = 0;  // after the take
  // When not taken: when the next whole token will be there (refill from now).
  absl::Time next_token_at;
};

// The answer of CaLimitStore::AdmitCaRequest: the hold in force (then no token was taken), or
// else the budgets' take (unset when no budget was asked for): taken when every budget gave a
// token (`tokens_left` then the last one's), else the take of the first budget that had none,
// named by `short_budget`, and no bucket lost a token.
struct CaAdmission {
  std::optional<CaHold> hold;
  std::optional<CaBudgetTake> take;
  std::string short_budget;
};

// An HTTP-01 answer to publish (ChallengeStore::PutChallenge's arguments).
struct ChallengeAnswer {
  std::string token;
  std::string key_authorization;
};

// What IssueCertificate reads before it orders (CertificateStore::LoadIssueContext).
struct IssueContext {
  Tenant tenant;
  std::vector<Account> accounts;      // the tenant's, as ListAccounts has them
  std::optional<Certificate> current;  // GetCurrentCertificate's answer, unset when none
  // An id drawn for the order IssueCertificate may make (NewOrder::id): it is then made with
  // one round trip fewer. Never used by anything else; an order not made leaves it unused.
  OrderId order_id = 0;
};

// What one step of an order's job works with, read in one transaction
// (OrderStore::LoadOrderStep).
struct OrderStepState {
  Order order;
  Account account;  // the order's
  Tenant tenant;    // scope.tenant (allow-list and policy)
  // The account's active key, unsealed (audited as "UseAccountKey"), only when a step can use
  // it: the order is not terminal and has its CSR, and the account is valid. Unset otherwise,
  // and when the account has no usable active key (AccountStore::GetActiveKey says why).
  std::optional<UnsealedAccountKey> key;
  // The order's outstanding authorizations (as ListOutstandingAuthorizations with the order as
  // filter), ordered by id.
  std::vector<Authorization> authorizations;
  // Set when LoadOrderStep was given a StepAdmission whose `budgets` asked for one:
  // AdmitCaRequest's answer for the order's newOrder, from the same transaction, and the
  // budgets it was for.
  std::optional<CaAdmission> admission;
  std::vector<CaBudget> admission_budgets;
};

// The admission of an order's newOrder, made in LoadOrderStep's transaction when the step
// that loads the order will send one: a step's first load and the admission are then one
// transaction, not two.
struct StepAdmission {
  // Called inside the transaction with what it loaded (key included): the budgets
  // AdmitCaRequest takes from for the order's newOrder ({order.account, order.identifiers,
  // kNewOrder}), or nullopt when the step will not send one (no admission is made). Must not
  // call the store.
  std::function<std::optional<std::vector<CaBudget>>(const OrderStepState&)> budgets;
  absl::Time now;
};

// The purpose an order's step loads its account key for (LoadOrderStep's, audited with the
// key's use): "order <id>".
std::string OrderStepPurpose(OrderId order);

// ---------------------------------------------------------------------------------------------
// New orders (after jobs and a step's load: an order is made with its job, and may load the
// job's first step)

struct NewOrder {
  AccountId account = 0;
  std::vector<std::string> identifiers;
  // Optional. Binds the new order for kIdempotencyKeyLifetime, for its creator only (see
  // OrderStore::CreateOrJoinOrder); at most one order in flight per tenant and key.
  std::string idempotency_key;
  std::string lease_owner;  // the replica creating it holds its first lease
  absl::Duration lease_duration = absl::Minutes(2);
  // The CSR (DER) the order will be finalized with, stored with the order so any replica can
  // finalize it after a crash. At most kMaxCsrDerSize bytes; not parsed by storage. May be
  // empty (then only its creator can finalize the order).
  std::string csr_der;
  // The certificate's private key when the service generated it (borrowed for the call);
  // stored sealed (storage/envelope.h, OrderKeyContext), never returned by GetOrder: see
  // OrderStore::GetOrderCertificateKey.
  const crypto::PrivateKey* certificate_key = nullptr;
  // When set, the new order's work is a job of this kind (subject: the order id, CA: `job_ca`),
  // inserted in the same transaction, due now and leased to lease_owner for lease_duration: the
  // returned lease is that job's (Lease::job), so the creator may attach material before any
  // replica runs the job, and a creator that dies leaves a job any replica claims once the
  // lease expires. Empty: the order carries a lease of its own.
  std::string job_kind;
  std::string job_ca;
  // Order::prefer_dns01.
  bool prefer_dns01 = false;
  // Order::replaces: base64url "." base64url, at most 256 bytes, or empty.
  std::string replaces;
  // With job_kind, for an order made with all it needs (csr_der set, and the certificate key
  // if the service holds it): the job is made unleased instead, claimable at once by any
  // replica, whose engines are woken as by JobStore::ScheduleJob (NOTIFY on commit). The
  // creator never writes to the order again, so the hand-over (JobStore::ReleaseJob) costs no
  // transaction of its own; CreateOrderResult::lease is then unset.
  bool job_released = false;
  // With job_released, optional: the creator's claim of the new job (JobStore::ClaimJobs's
  // request; max_jobs is not read), made in the same transaction when a claim made then would
  // take it: the tenant is enabled, no job of claim.kinds is due and unleased, and neither
  // per_tenant_limit nor per_ca_limit is reached. The job is then leased to claim.owner until
  // claim.now + claim.lease_duration (fencing token 1), the tenant's turn is recorded as a
  // claim records it, nobody is woken, and CreateOrderResult::claimed holds it. Otherwise the
  // job is made unleased as job_released says.
  std::optional<JobClaim> claim;
  // With claim, optional: when the claim takes the job, the same transaction also loads what
  // the job's first step loads, as LoadOrderStep(scope, <the new order>,
  // OrderStepPurpose(<its id>), &*first_step) would just after it (the account's key unsealed
  // and audited, the newOrder's admission made), into CreateOrderResult::first_step: that step
  // then needs no transaction of its own. A load that fails (a key that does not open) leaves
  // first_step unset and the order made; the step then loads it itself.
  std::optional<StepAdmission> first_step;
  // Optional, without an idempotency key: an order id drawn ahead (IssueContext::order_id). The
  // new order is made under it at once, with no look for one in flight first: a conflict (an
  // order in flight for the identifiers, or an id already taken) inserts nothing, and the
  // order in flight is then joined, or the order made under an id drawn then. 0: drawn here.
  OrderId id = 0;
};

struct CreateOrderResult {
  Order order;
  bool created = false;  // false: an in-flight order (or the idempotency key's) was joined
  // Set when created, unless NewOrder::job_released.
  std::optional<Lease> lease;
  // The new order's job, when NewOrder::claim took it.
  std::optional<ClaimedJob> claimed;
  // With claimed, when NewOrder::first_step asked for it: the job's first step's load (shared,
  // so that a result stays copyable; nobody else holds it).
  std::shared_ptr<OrderStepState> first_step;
};

// How an order run by a job ends with a certificate (OrderStore::FinishOrder).
struct OrderCompletion {
  // Stored as CompleteOrder stores it; `private_key` must be null: the order's own
  // certificate key, when it has one, goes with the certificate.
  NewCertificate certificate;
  // Authorizations (of the order's account) the CA confirmed deactivated (RFC 8555 §7.5.2).
  std::vector<std::string> deactivated_authorizations;
  // HTTP-01 tokens whose answers are removed.
  std::vector<std::string> challenge_tokens;
};

enum class CertificateState {
  kAny,
  kLive,     // not revoked, not superseded, not yet expired
  kRevoked,  // revoked
  kExpired,  // not revoked, not_after in the past
};

struct CertificateFilter {
  CertificateState state = CertificateState::kAny;
  std::optional<absl::Time> expires_before;  // not_after < this
  std::optional<absl::Time> expires_after;   // not_after >= this
};

// A certificate due for renewal, from the cross-tenant due query.
struct DueCertificate {
  TenantId tenant = 0;
  CertificateId id = 0;
  std::vector<std::string> identifiers;
  absl::Time not_after;
};

// ---------------------------------------------------------------------------------------------
// Audit

// What happened. The store fills tenant, actor, time, sequence and hashes.
struct AuditEvent {
  std::string action;  // e.g. "CreateAccount", "UseAccountKey", "Issue"
  std::vector<std::string> identifiers;
  std::optional<AccountId> account;
  std::optional<int> key_version;
  std::string acme_url;
  std::string outcome = "ok";  // "ok", or a short failure reason; never a secret
  std::string detail;          // free text; never a secret
};

struct AuditRecord {
  TenantId tenant = 0;
  int64_t seq = 0;  // 1, 2, 3, ... per tenant
  absl::Time at;
  Actor actor;
  AuditEvent event;
  std::string prev_hash;  // raw bytes; the previous record's hash (zeros for the first)
  std::string hash;       // raw bytes; covers prev_hash and every field above
};

// ---------------------------------------------------------------------------------------------
// Paging

struct PageRequest {
  std::string page_token;  // "" for the first page; else a previous Page's next_page_token
  int max_results = 100;   // clamped to [1, 1000]
};

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // "" when this is the last page
};

// ---------------------------------------------------------------------------------------------
// Canonical forms

// Identifier sets are compared as sets: ASCII lower-cased, sorted, duplicates removed.
// INVALID_ARGUMENT for an empty set, more than 100 identifiers, an empty identifier, one longer
// than 255 bytes, or one containing whitespace, a control character or a comma.
absl::StatusOr<std::vector<std::string>> CanonicalIdentifiers(std::vector<std::string> ids);

// Clamps max_results to [1, 1000].
int PageSize(const PageRequest& page);

// Times at the precision the stores keep (whole microseconds, rounded down).
absl::Time TruncateToMicros(absl::Time t);

// What a store returns for `op` when it sent a transaction's COMMIT and lost the answer: what
// the transaction wrote may or may not be stored (UNAVAILABLE).
absl::Status CommitOutcomeUnknownError(absl::string_view op);
bool IsCommitOutcomeUnknown(const absl::Status& status);

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_TYPES_H_
