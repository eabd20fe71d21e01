// The vault and ledger: the interfaces the service uses to keep tenants, identities, ACME
// accounts and their (sealed) keys, compromise response runs, orders, authorizations,
// certificates, HTTP-01 challenges, the audit log and the job table of the work engine. Two
// implementations pass one conformance suite (storage/testing/): PostgresStore
// (storage/postgres_store.h), the production one, and FakeStore
// (storage/testing/fake_store.h), in memory, for tests.
//
// Contracts shared by every method:
// - Thread-safe: any number of threads may call one store at once.
// - Tenant confinement: a method taking a Scope reads and writes only rows of scope.tenant. A row
//   of another tenant behaves as if it did not exist (NOT_FOUND), and in PostgreSQL row-level
//   security enforces this even against a bug in the store. Methods without a Scope are the
//   narrow cross-tenant ones (authentication lookups, lease and job claims, the renewal due
//   query, the HTTP-01 responder's lookup, tenant creation and listing, re-wrapping).
// - Audit: every state change writes one audit row in the same transaction as the change (the
//   action is the method's name unless stated otherwise), so a committed change always has its
//   row and a failed one has none. Unsealing a private key is a key use and is audited too.
//   Lease claims, renewals and releases (of orders and of account keys) are not audited: they
//   change who works on an order or on an account's keys, not their state. A call that changes
//   nothing (a repeated idempotent call) writes no row.
// - Errors: NOT_FOUND (no such row in this tenant), ALREADY_EXISTS (a uniqueness rule),
//   FAILED_PRECONDITION (the state does not allow the change, e.g. a stale fencing token),
//   INVALID_ARGUMENT (malformed input), ABORTED (a conflicting transaction won; retry the
//   operation), UNAVAILABLE (the database could not be reached; retry later), DATA_LOSS (a
//   sealed key does not authenticate, or the audit chain is broken). No error message carries
//   private key material.
// - Time: "now" comes from the store's injected Clock (Options), never from the database;
//   JobStore's calls take it from the caller (the engine's clock) instead.
#ifndef ACMEVAULT_STORAGE_STORE_H_
#define ACMEVAULT_STORAGE_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crypto/keys.h"
#include "storage/types.h"

namespace acmevault::storage {

class TenantStore {
 public:
  virtual ~TenantStore() = default;

  // Creates a tenant. ALREADY_EXISTS if the name is taken. Audited in the new tenant's log.
  virtual absl::StatusOr<Tenant> CreateTenant(const Actor& actor, const TenantSpec& spec) = 0;
  virtual absl::StatusOr<Tenant> GetTenant(const Scope& scope) = 0;
  // Cross-tenant: resolves a name (for platform administration). NOT_FOUND if unknown.
  virtual absl::StatusOr<Tenant> FindTenantByName(absl::string_view name) = 0;
  // Replaces name, allowed identifiers, policy and directory of scope.tenant.
  virtual absl::StatusOr<Tenant> UpdateTenant(const Scope& scope, const TenantSpec& spec) = 0;
  // Soft delete: the tenant's identities stop authenticating, its certificates leave the
  // renewal query and its orders are no longer claimed. Rows (and the audit log) remain.
  virtual absl::Status DisableTenant(const Scope& scope) = 0;
  // Cross-tenant: all tenants, disabled ones included, ordered by id.
  virtual absl::StatusOr<Page<Tenant>> ListTenants(const PageRequest& page) = 0;
};

class IdentityStore {
 public:
  virtual ~IdentityStore() = default;

  // Binds an mTLS SPIFFE ID to scope.tenant. ALREADY_EXISTS if it is bound (to any tenant)
  // and not revoked.
  virtual absl::StatusOr<Identity> AddSpiffeIdentity(const Scope& scope,
                                                     absl::string_view spiffe_id, Role role,
                                                     absl::string_view description) = 0;
  // Records a bearer token by its SHA-256 (32 bytes; the token itself never reaches storage),
  // valid until `expires_at` when set (stored at microsecond precision). INVALID_ARGUMENT if
  // not 32 bytes or `expires_at` is not after now; ALREADY_EXISTS if recorded before.
  virtual absl::StatusOr<Identity> AddTokenIdentity(const Scope& scope,
                                                    absl::string_view token_sha256, Role role,
                                                    absl::string_view description,
                                                    std::optional<absl::Time> expires_at) = 0;
  // Cross-tenant authentication lookups. NOT_FOUND if unknown, revoked, expired (a token whose
  // expires_at is not after now), or the tenant is disabled.
  virtual absl::StatusOr<Identity> AuthenticateSpiffe(absl::string_view spiffe_id) = 0;
  virtual absl::StatusOr<Identity> AuthenticateToken(absl::string_view token_sha256) = 0;
  virtual absl::Status RevokeIdentity(const Scope& scope, IdentityId id) = 0;
  virtual absl::StatusOr<std::vector<Identity>> ListIdentities(const Scope& scope) = 0;
};

class AccountStore {
 public:
  virtual ~AccountStore() = default;

  // Creates an account (status pending, no URL yet) for `directory_url` with `key` as
  // version 1 in `initial_state` (kPending before newAccount, or kActive). A vault key is
  // sealed before it leaves the call; a token key is stored as its object id. ALREADY_EXISTS if
  // the tenant already has a pending or valid account for `directory_url` (so of two concurrent
  // creations only one reaches the CA).
  virtual absl::StatusOr<Account> CreateAccount(const Scope& scope,
                                                absl::string_view directory_url,
                                                const AccountKeyMaterial& key,
                                                const PublicKeyInfo& public_key,
                                                KeyState initial_state) = 0;
  // Creates an ephemeral account (ephemeral-account mode: one account per order, deactivated
  // once the order ended) for `directory_url`, status pending, with `key` as version 1, active:
  // stored before newAccount is sent, so the CA never holds an account whose key is lost.
  // Not subject to CreateAccount's one-live-account rule (a tenant may hold any number, and a
  // main account besides). Audited as "CreateAccount" with "ephemeral" in the detail.
  virtual absl::StatusOr<Account> CreateEphemeralAccount(const Scope& scope,
                                                         absl::string_view directory_url,
                                                         const AccountKeyMaterial& key,
                                                         const PublicKeyInfo& public_key) = 0;
  virtual absl::StatusOr<Account> GetAccount(const Scope& scope, AccountId account) = 0;
  virtual absl::StatusOr<std::vector<Account>> ListAccounts(const Scope& scope) = 0;
  // The ephemeral accounts of scope.tenant left open (docs/flows.md, "Ephemeral accounts"):
  // pending or valid, made before `created_before` (an account is stored just before its
  // order), with no order in flight (every order of theirs valid or invalid, or none) and no
  // open job of `close_job_kind` whose subject is the account id. By id. INVALID_ARGUMENT for a
  // malformed kind.
  virtual absl::StatusOr<std::vector<Account>> ListEphemeralAccountsToClose(
      const Scope& scope, absl::Time created_before, absl::string_view close_job_kind) = 0;
  // Stores the account URL the CA returned and the contact URLs its answer named (clipped by
  // rules::ClipAccountContact), and marks the account valid. Recording the same URL again is OK
  // and changes nothing; a different one is FAILED_PRECONDITION.
  virtual absl::Status RecordAccountUrl(const Scope& scope, AccountId account,
                                        absl::string_view url,
                                        const std::vector<std::string>& contact) = 0;
  // The same without contact URLs.
  absl::Status RecordAccountUrl(const Scope& scope, AccountId account, absl::string_view url) {
    return RecordAccountUrl(scope, account, url, {});
  }
  // kDeactivated or kRevoked (stamps deactivated_at); terminal. INVALID_ARGUMENT for other
  // statuses, FAILED_PRECONDITION if already deactivated or revoked.
  virtual absl::Status SetAccountStatus(const Scope& scope, AccountId account,
                                        AccountStatus status) = 0;
  // Records that the account was taken over at the CA (Account::hijacked_at, stamped once;
  // marking it again is OK and changes nothing), audited "AccountHijackDetected" with `what`
  // (what the CA said; clipped to kMaxHijackDetailSize bytes of valid UTF-8). The account keeps
  // its status; it no longer counts as the tenant's live account, so CreateAccount may make
  // another for the same directory. FAILED_PRECONDITION for an account without a URL (never
  // registered). Returns the account as stored.
  virtual absl::StatusOr<Account> MarkAccountHijacked(const Scope& scope, AccountId account,
                                                      absl::string_view what) = 0;

  // Takes the key lease of `account` until now + `duration`, incrementing its fencing token.
  // One holder at a time: ABORTED while another holder's lease has not expired (the lease of a
  // holder that died expires and can be taken). FAILED_PRECONDITION if the account is
  // deactivated or revoked. Not audited, like order leases: it changes who may write the keys,
  // not the keys.
  virtual absl::StatusOr<KeyLease> AcquireKeyLease(const Scope& scope, AccountId account,
                                                   absl::Duration duration) = 0;
  // Gives the lease up, so the next caller need not wait for it to expire. OK, changing
  // nothing, if it was taken over meanwhile or the account was closed.
  virtual absl::Status ReleaseKeyLease(const Scope& scope, const KeyLease& lease) = 0;

  // The four key writes below present the account's key lease: FAILED_PRECONDITION naming the
  // stale fencing token once another caller has taken it (INVALID_ARGUMENT for a lease of
  // another tenant than the scope). An expired lease nobody took over still writes.
  //
  // Adds the next key version as kPending (RFC 8555 §7.3.5: stored before keyChange is sent).
  // ALREADY_EXISTS if the account already has a pending key.
  virtual absl::StatusOr<AccountKey> AddPendingKey(const Scope& scope, const KeyLease& lease,
                                                   const AccountKeyMaterial& key,
                                                   const PublicKeyInfo& public_key) = 0;
  // In one transaction: the active key (if any) becomes retired and pending `version` becomes
  // active. FAILED_PRECONDITION if `version` is not pending.
  virtual absl::Status PromoteKey(const Scope& scope, const KeyLease& lease, int version) = 0;
  // Abandons a pending key (a keyChange the CA refused): pending -> retired.
  // FAILED_PRECONDITION if `version` is not pending.
  virtual absl::Status DiscardPendingKey(const Scope& scope, const KeyLease& lease,
                                         int version) = 0;
  // Rollover at a CA whose directory offers no keyChange (docs/flows.md, "Rollover by a new
  // account"): the CA registered a new account, `new_account_url`, for pending key `version` of
  // `lease.account`. In one transaction the pending key becomes version 1, active, of a new
  // valid account for the same directory at `new_account_url` (a vault key resealed for the new
  // row, a token key by its object id); the old account's copy of it becomes retired; the old
  // account becomes deactivated (stamped: the service no longer uses it, whatever the CA says of
  // it); and, when `old_keys_compromised`, every other key of the old account compromised.
  // Audited as "ReplaceAccount" on the new account, naming the old one. Returns the new
  // account. FAILED_PRECONDITION if the old account is not valid or `version` is not pending;
  // INVALID_ARGUMENT for a malformed URL or the old account's own.
  virtual absl::StatusOr<Account> ReplaceAccount(const Scope& scope, const KeyLease& lease,
                                                 int version, absl::string_view new_account_url,
                                                 bool old_keys_compromised) = 0;
  // Any state -> compromised (idempotent). A compromised key is never unsealed for signing
  // again by GetActiveKey.
  virtual absl::Status MarkKeyCompromised(const Scope& scope, const KeyLease& lease,
                                          int version) = 0;
  // Unseals the active key for signing (a token key: its object id, for the token to sign
  // with). NOT_FOUND if the account has no active key. Audited as "UseAccountKey" with the key
  // version and `purpose` as detail.
  virtual absl::StatusOr<UnsealedAccountKey> GetActiveKey(const Scope& scope, AccountId account,
                                                          absl::string_view purpose) = 0;
  // Unseals a specific version (rollover recovery probes a pending or retired key).
  // FAILED_PRECONDITION for a compromised key or a destroyed one. Audited as "UseAccountKey".
  virtual absl::StatusOr<UnsealedAccountKey> GetKey(const Scope& scope, AccountId account,
                                                    int version, absl::string_view purpose) = 0;
  // Every version, oldest first, without private material.
  virtual absl::StatusOr<std::vector<AccountKey>> ListKeys(const Scope& scope,
                                                           AccountId account) = 0;
  // Records that the token object of a retired or compromised token key was destroyed (the
  // service destroys it once the grace after retirement passed). Not under the key lease: no
  // other writer needs such a key. OK, changing nothing, if recorded already.
  // FAILED_PRECONDITION for a vault key or a key still pending or active. Audited as
  // "DestroyAccountKey".
  virtual absl::Status MarkKeyDestroyed(const Scope& scope, AccountId account, int version) = 0;

  // Keeps the tenant's External Account Binding credentials for `directory_url`, replacing any
  // kept before: the key id in clear, the HMAC key sealed (EabKeyContext). Audited "KeepEabKey"
  // with the key id and the directory, never the key. INVALID_ARGUMENT for a key id not 1 to
  // kMaxEabKeyIdSize bytes, an HMAC key empty or over kMaxEabHmacKeySize bytes, or an empty
  // directory URL.
  virtual absl::StatusOr<EabKeyInfo> KeepEabKey(const Scope& scope, absl::string_view directory_url,
                                                absl::string_view key_id,
                                                absl::string_view hmac_key) = 0;
  // What is kept, without opening it. NOT_FOUND when nothing is.
  virtual absl::StatusOr<EabKeyInfo> GetEabKeyInfo(const Scope& scope) = 0;
  // The kept credentials, the HMAC key opened; audited "UseEabKey" with the key id and
  // `purpose`. NOT_FOUND when nothing is kept; Open's errors (storage/envelope.h).
  virtual absl::StatusOr<EabKey> GetEabKey(const Scope& scope, absl::string_view purpose) = 0;
  // Drops what is kept; audited "ForgetEabKey" with the key id. NOT_FOUND when nothing is.
  virtual absl::Status ForgetEabKey(const Scope& scope) = 0;
};

class OrderStore {
 public:
  virtual ~OrderStore() = default;

  // Returns, in this order of preference: the order `idempotency_key` binds (see
  // FindOrderByIdempotencyKey; joined: ALREADY_EXISTS "idempotency key in use by another
  // identity" unless its created_by is scope.actor.identity, then INVALID_ARGUMENT if its
  // identifiers differ); the tenant's in-flight order for the same identifier set (joined,
  // whoever made it); or a new order in state created whose first lease `lease_owner` holds,
  // made by scope.actor.identity. At most one non-terminal order exists per tenant and
  // identifier set, and per tenant and idempotency key. A new order stores `csr_der` and the
  // sealed `certificate_key` (if given) with it; a joined order keeps its own and the request's
  // are ignored. INVALID_ARGUMENT if csr_der exceeds kMaxCsrDerSize (joining or not). A new
  // order made without an idempotency key takes NewOrder::id when it is given and free.
  virtual absl::StatusOr<CreateOrderResult> CreateOrJoinOrder(const Scope& scope,
                                                              const NewOrder& order) = 0;
  virtual absl::StatusOr<Order> GetOrder(const Scope& scope, OrderId order) = 0;
  // Unseals the service-generated certificate key stored with an order (for finalize and
  // CompleteOrder by whichever replica holds the order). NOT_FOUND if the order has none (or is
  // another tenant's). Audited as "UseCertificateKey" with the order id and `purpose` as detail.
  // DATA_LOSS if it does not authenticate.
  virtual absl::StatusOr<crypto::PrivateKey> GetOrderCertificateKey(const Scope& scope,
                                                                    OrderId order,
                                                                    absl::string_view purpose) = 0;
  // The order `key` binds in scope.tenant, whoever made it: the newest order made with the key
  // less than kIdempotencyKeyLifetime ago, unless it is valid and its certificate is revoked or
  // expired (then the key binds nothing and starts a new order). NOT_FOUND if none.
  virtual absl::StatusOr<Order> FindOrderByIdempotencyKey(const Scope& scope,
                                                          absl::string_view key) = 0;
  // Stores the finalization material of an order created without any: its CSR (1 to
  // kMaxCsrDerSize bytes) and, if given, the certificate key, sealed as CreateOrJoinOrder seals
  // it. For the service, which generates a certificate key only once CreateOrJoinOrder has
  // created the order (a request that joins one never pays for a key). Audited as
  // "AttachOrderMaterial". INVALID_ARGUMENT for an empty or oversized CSR; FAILED_PRECONDITION
  // if the order has material already, has left `created`, or the lease was lost.
  virtual absl::Status AttachOrderMaterial(const Scope& scope, const Lease& lease,
                                           absl::string_view csr_der,
                                           const crypto::PrivateKey* certificate_key) = 0;

  // Stores the ACME order URL (before finalize) and moves created -> pending. Once set the URL
  // never changes: the same URL again is OK, another is FAILED_PRECONDITION.
  virtual absl::Status RecordOrderUrl(const Scope& scope, const Lease& lease,
                                      absl::string_view url) = 0;
  // The start of an order at the CA, in one transaction fenced by `lease` (all or nothing):
  // RecordOrderUrl(url), then AuthorizationStore::RecordAuthorization of each of
  // `authorizations` (the order's, as the CA reported them), then ChallengeStore::PutChallenge
  // of each of `answers`. Audited as those calls are. The recorded authorizations, in the
  // order given. Errors as those calls'.
  virtual absl::StatusOr<std::vector<Authorization>> RecordOrderStart(
      const Scope& scope, const Lease& lease, absl::string_view url,
      const std::vector<AuthorizationRecord>& authorizations,
      const std::vector<ChallengeAnswer>& answers) = 0;
  // Moves the order to `to` (forward only; see OrderState). `failure` is kept for kInvalid.
  // FAILED_PRECONDITION for a backward move, a terminal order, or a stale fencing token;
  // INVALID_ARGUMENT for a problem type longer than kMaxProblemTypeSize. `seen`, optional, is
  // the order as the lease holder last saw it: a store may then try the move in fewer round
  // trips, the answer being the same whether `seen` is current or not.
  virtual absl::Status TransitionOrder(const Scope& scope, const Lease& lease, OrderState to,
                                       const OrderFailure& failure,
                                       const Order* seen = nullptr) = 0;
  // Stores the certificate and moves the order to valid, in one transaction.
  virtual absl::StatusOr<Certificate> CompleteOrder(const Scope& scope, const Lease& lease,
                                                    const NewCertificate& certificate) = 0;

  // What a step of the order needs, in one transaction: the order, its account, the tenant,
  // the order's outstanding authorizations and, when a step can use it, the account's active
  // key unsealed (see OrderStepState; audited as "UseAccountKey" with `purpose`). NOT_FOUND
  // for an order of another tenant (or none); DATA_LOSS as GetActiveKey. With `admission`
  // (may be null) whose `budgets` give a list for what was loaded, also AdmitCaRequest for the
  // order's newOrder in the same transaction (OrderStepState::admission); its errors are then
  // this call's.
  virtual absl::StatusOr<OrderStepState> LoadOrderStep(const Scope& scope, OrderId order,
                                                       absl::string_view purpose,
                                                       const StepAdmission* admission) = 0;
  // The end of a successful order run by a job, in one transaction fenced by the job's lease
  // (`lease.job` set): CompleteOrder (with the order's certificate key, unsealed and sealed
  // again for the certificate, audited as "UseCertificateKey"), the order's authorizations
  // still recorded pending recorded valid (RFC 8555 §7.1.6: a valid order's authorizations
  // are; not audited, the CompleteOrder row says it), MarkAuthorizationDeactivated
  // for each of `deactivated_authorizations` (an unknown one is skipped), DeleteChallenge for
  // each token, and CompleteJob (the job's row deleted; job_finished reaches every replica's
  // waker once committed). Audit rows as those calls write. INVALID_ARGUMENT for a lease
  // without a job or a certificate with a private key; FAILED_PRECONDITION, nothing written,
  // when the lease was lost or the order cannot complete.
  virtual absl::StatusOr<Certificate> FinishOrder(const Scope& scope, const Lease& lease,
                                                  const OrderCompletion& completion) = 0;

  // Cross-tenant: claims up to `max_orders` non-terminal orders whose lease has expired (or
  // that have no lease) for `owner`, for `lease_duration`, incrementing each fencing token.
  // Orders locked by a concurrent claimer are skipped (FOR UPDATE SKIP LOCKED), so each order
  // goes to exactly one claimer. Orders of disabled tenants are not claimed.
  virtual absl::StatusOr<std::vector<Lease>> ClaimStaleOrders(absl::string_view owner,
                                                              absl::Duration lease_duration,
                                                              int max_orders) = 0;
  // Extends a lease still held (same fencing token). FAILED_PRECONDITION if lost.
  virtual absl::StatusOr<Lease> RenewLease(const Scope& scope, const Lease& lease,
                                           absl::Duration lease_duration) = 0;
  // Gives the order up so any replica may claim it at once. FAILED_PRECONDITION if lost.
  virtual absl::Status ReleaseLease(const Scope& scope, const Lease& lease) = 0;

  // Sets the order aside as stalled at `at` (Order::stalled_at; the first time is kept): the CA
  // kept it processing past the service's timeout. It stays in flight for its job, which looks
  // at it again from its stored URL, but CreateOrJoinOrder no longer joins it: a new request for
  // its identifier set makes a new order. Audited as "StallOrder". FAILED_PRECONDITION when the
  // lease was lost or the order is not processing.
  virtual absl::Status MarkOrderStalled(const Scope& scope, const Lease& lease, absl::Time at) = 0;
};

// What keeps the fleet within a CA's limits, shared by every replica (docs/DESIGN.md "Retries
// that respect the CA"): holds from the CA's rateLimited answers, token buckets per account or
// per identifier set in a tenant, and the fleet's buckets per CA. Not audited (no key or identity
// changes; the holds are logged where they are met).
class CaLimitStore {
 public:
  virtual ~CaLimitStore() = default;

  // Stores that the CA refused `key`'s request until `until` (its Retry-After). A hold already
  // stored for the key keeps the later of the two times; `problem` is the latest answer's
  // summary. INVALID_ARGUMENT for identifiers that are not canonical or a problem longer than
  // kMaxCaHoldProblemSize.
  virtual absl::Status RecordCaHold(const Scope& scope, const CaHoldKey& key, absl::Time until,
                                    absl::string_view problem) = 0;
  // The hold on `key` that has not passed at `now` (until > now). NOT_FOUND when there is none
  // (or it has passed).
  virtual absl::StatusOr<CaHold> GetCaHold(const Scope& scope, const CaHoldKey& key,
                                           absl::Time now) = 0;
  // Before a request for `key` is sent: GetCaHold(key) and, only when no hold is in force,
  // TakeCaBudgetToken(key.account, budget) for each of `budgets` in order, in one transaction:
  // all of them give a token or none does (a token taken before the short one goes back).
  // Errors as those calls'.
  virtual absl::StatusOr<CaAdmission> AdmitCaRequest(const Scope& scope, const CaHoldKey& key,
                                                     const std::vector<CaBudget>& budgets,
                                                     absl::Time now) = 0;
  // Takes one token from `account`'s bucket `budget.name` (the tenant's for `budget.identifiers`
  // when they are set; `account` is then not used) at `now`, atomically: the bucket (full when
  // first used) is refilled by the time since its last take at capacity per period, to at most
  // the capacity, and one token is taken when a whole one is there. A take at a time before
  // the last one refills nothing. INVALID_ARGUMENT for a name not 1 to 64 bytes, a capacity
  // below 1, a period that is not positive or identifiers that are not canonical.
  virtual absl::StatusOr<CaBudgetTake> TakeCaBudgetToken(const Scope& scope, AccountId account,
                                                         const CaBudget& budget,
                                                         absl::Time now) = 0;
  // Gives back a token taken from `account`'s bucket `budget.name` for a request the CA did
  // not take (it answered with a problem, so it made nothing): the bucket gains one, to at
  // most the capacity. A bucket never taken from is left as it is. INVALID_ARGUMENT as
  // TakeCaBudgetToken's.
  virtual absl::Status ReturnCaBudgetToken(const Scope& scope, AccountId account,
                                           const CaBudget& budget) = 0;
  // The fleet's bucket `budget.name` at the CA of `directory_url`, shared by every tenant and
  // replica: for a limit the CA counts by client address (Let's Encrypt: 10 new accounts per
  // IP per 3 hours), since a fleet's replicas usually leave through the same addresses. Takes
  // and gives back as TakeCaBudgetToken and ReturnCaBudgetToken do. INVALID_ARGUMENT as
  // those, and for an empty directory URL or a budget with identifiers.
  virtual absl::StatusOr<CaBudgetTake> TakeCaDirectoryBudgetToken(absl::string_view directory_url,
                                                                  const CaBudget& budget,
                                                                  absl::Time now) = 0;
  virtual absl::Status ReturnCaDirectoryBudgetToken(absl::string_view directory_url,
                                                    const CaBudget& budget) = 0;
};

class AuthorizationStore {
 public:
  virtual ~AuthorizationStore() = default;

  // Inserts or updates (by account and URL) an authorization the CA reported.
  virtual absl::StatusOr<Authorization> RecordAuthorization(
      const Scope& scope, const AuthorizationRecord& authorization) = 0;
  // Pending or valid, not deactivated, not expired, matching `filter`, ordered by id.
  virtual absl::StatusOr<std::vector<Authorization>> ListOutstandingAuthorizations(
      const Scope& scope, const AuthorizationFilter& filter) = 0;
  // After the CA confirmed deactivation (RFC 8555 §7.5.2). NOT_FOUND if unknown.
  virtual absl::Status MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                                    absl::string_view url) = 0;
};

class CertificateStore {
 public:
  virtual ~CertificateStore() = default;

  // Stores a certificate (its private key sealed, when given). Earlier live certificates for
  // the same identifier set become superseded. ALREADY_EXISTS for a duplicate serial.
  virtual absl::StatusOr<Certificate> InsertCertificate(const Scope& scope,
                                                        const NewCertificate& certificate) = 0;
  virtual absl::StatusOr<Certificate> GetCertificate(const Scope& scope, CertificateId id) = 0;
  virtual absl::StatusOr<Certificate> GetCertificateBySerial(const Scope& scope,
                                                             absl::string_view serial) = 0;
  // The live certificate (not revoked, not expired) for exactly this identifier set that
  // expires last. NOT_FOUND if none.
  virtual absl::StatusOr<Certificate> GetCurrentCertificate(
      const Scope& scope, const std::vector<std::string>& identifiers) = 0;
  // GetTenant, ListAccounts and GetCurrentCertificate(identifiers), in one transaction: what
  // IssueCertificate reads first, with an order id drawn for the order it may make
  // (IssueContext::order_id, for NewOrder::id). NOT_FOUND "tenant N not found" as GetTenant.
  virtual absl::StatusOr<IssueContext> LoadIssueContext(
      const Scope& scope, const std::vector<std::string>& identifiers) = 0;
  // Unseals a service-generated certificate key. NOT_FOUND if the certificate has none.
  // Audited as "UseCertificateKey".
  virtual absl::StatusOr<crypto::PrivateKey> GetCertificateKey(const Scope& scope,
                                                               CertificateId id,
                                                               absl::string_view purpose) = 0;
  // Ordered by id.
  virtual absl::StatusOr<Page<Certificate>> ListCertificates(const Scope& scope,
                                                             const CertificateFilter& filter,
                                                             const PageRequest& page) = 0;
  // Cross-tenant: live, not superseded certificates of enabled tenants whose not_after falls
  // within their tenant's renewal window of now (or has passed), ordered by (not_after, id).
  virtual absl::StatusOr<Page<DueCertificate>> ListCertificatesDueForRenewal(
      const PageRequest& page) = 0;
  // Records that `renewal` renewed `replaced` (both scope.tenant's): renewal's replaces_serial
  // becomes replaced's serial. Audited as "RecordReplacedCertificate" on the renewal. The same
  // record again is OK (no change, no audit row); another one is FAILED_PRECONDITION; NOT_FOUND
  // for an unknown id; INVALID_ARGUMENT when both are the same certificate.
  virtual absl::Status RecordReplacedCertificate(const Scope& scope, CertificateId renewal,
                                                 CertificateId replaced) = 0;
  // Stores what the CA's renewalInfo (ARI) said about certificate `id`: the window when
  // `check` has one (replacing the stored one), and always the next check time. Not audited
  // (a routine read of the CA, made about daily per certificate). NOT_FOUND for an unknown id;
  // INVALID_ARGUMENT for a window with one end only or its end before its start.
  virtual absl::Status RecordAriCheck(const Scope& scope, CertificateId id,
                                      const AriCheck& check) = 0;
  // Stores a reading of certificate `id`'s CRL: always the next check time; when the CRL lists
  // it (check.revoked_at), the revocation time and reason, once (a later listing keeps the
  // first), audited "CertificateRevokedOutside" with the CRL's URL. Routine readings are not
  // audited. NOT_FOUND for an unknown id; INVALID_ARGUMENT for a reason that is no CRLReason
  // or a URL over 2048 bytes.
  virtual absl::Status RecordCrlCheck(const Scope& scope, CertificateId id,
                                      const CrlCheck& check) = 0;
  // INVALID_ARGUMENT for a value that is no RFC 5280 CRLReason; FAILED_PRECONDITION if already
  // revoked.
  virtual absl::Status MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                              crypto::RevocationReason reason) = 0;
};

class ChallengeStore {
 public:
  virtual ~ChallengeStore() = default;

  // Publishes an HTTP-01 key authorization (RFC 8555 §8.3). Putting the same pair again is OK;
  // the token with another value is ALREADY_EXISTS.
  virtual absl::Status PutChallenge(const Scope& scope, absl::string_view token,
                                    absl::string_view key_authorization) = 0;
  // Cross-tenant, for every replica's responder. NOT_FOUND if unknown.
  virtual absl::StatusOr<std::string> LookupChallenge(absl::string_view token) = 0;
  // Idempotent: deleting an unknown token is OK.
  virtual absl::Status DeleteChallenge(const Scope& scope, absl::string_view token) = 0;
  // DeleteChallenge for an order run's cleanup, fenced: deletes only while `lease`'s fencing
  // token is still the order's (terminal or not), in one transaction with that check, so a run
  // whose lease was claimed by another replica never removes the answers the new owner serves.
  // FAILED_PRECONDITION (nothing deleted) when the token is stale; NOT_FOUND for an unknown order.
  virtual absl::Status DeleteChallengeFenced(const Scope& scope, const Lease& lease,
                                             absl::string_view token) = 0;
};

class AuditLog {
 public:
  virtual ~AuditLog() = default;

  // Appends a row to scope.tenant's hash chain (for events that are not a store state change:
  // a denied request, an ACME failure, an RPC's outcome).
  virtual absl::Status AppendAudit(const Scope& scope, const AuditEvent& event) = 0;
  // Ordered by sequence number.
  virtual absl::StatusOr<Page<AuditRecord>> ListAudit(const Scope& scope,
                                                      const PageRequest& page) = 0;
  // OK if scope.tenant's chain is intact: sequence numbers 1..n without gaps, each row's
  // prev_hash equal to the previous row's hash, each hash recomputed from the row's fields,
  // and the tenant's recorded head equal to the last row. DATA_LOSS naming the first bad
  // sequence number otherwise (an edited, deleted or inserted row).
  virtual absl::Status VerifyAuditChain(const Scope& scope) = 0;
};

// Progress of compromise responses (AccountService.RespondToCompromise), so that a response
// resumes its own run and never an abandoned one.
class CompromiseRunStore {
 public:
  virtual ~CompromiseRunStore() = default;

  // Starts a run that may be resumed until `expires_at`. Audited as "CompromiseStart" (detail
  // "run <id>", and " deactivate_account" when asked). INVALID_ARGUMENT unless `expires_at` is
  // after now.
  virtual absl::StatusOr<CompromiseRun> StartCompromiseRun(const Scope& scope,
                                                           bool deactivate_account,
                                                           absl::Time expires_at) = 0;
  // The run with its finished steps. NOT_FOUND if the tenant has no such run.
  virtual absl::StatusOr<CompromiseRun> GetCompromiseRun(const Scope& scope,
                                                         CompromiseRunId run) = 0;
  // Records `step` as finished now (once: again is OK and changes nothing). Audited as
  // "CompromiseStep" (detail "run <id>: <step>"). FAILED_PRECONDITION if the run is finished;
  // INVALID_ARGUMENT for an empty step name.
  virtual absl::Status RecordCompromiseStep(const Scope& scope, CompromiseRunId run,
                                            absl::string_view step) = 0;
  // Marks the run finished. Audited as "CompromiseDone". FAILED_PRECONDITION if it already is.
  virtual absl::Status FinishCompromiseRun(const Scope& scope, CompromiseRunId run) = 0;
};

// Key-encryption key rotation (storage/envelope.h).
class VaultMaintenance {
 public:
  virtual ~VaultMaintenance() = default;

  struct RewrapProgress {
    int64_t rewrapped = 0;  // records re-wrapped by this call
    bool done = false;      // true: no record is left under an older key-encryption key
  };
  // Cross-tenant, online and resumable: re-wraps up to `max_records` data keys (account keys,
  // certificate keys and orders' certificate keys) that are wrapped under a key-encryption key
  // other than the current one. Sealed private keys are not touched; only their data keys are
  // re-wrapped. Call until done. Audited per tenant as "RewrapKeys".
  virtual absl::StatusOr<RewrapProgress> RewrapBatch(const Actor& actor, int max_records) = 0;
};

// A running subscription to the store's wake-ups (JobStore::WatchJobs: the job table's, and
// revocations). Destroying it ends the deliveries: no callback runs once the destructor has
// returned.
class JobWaker {
 public:
  virtual ~JobWaker() = default;
};

// What makes remembered authentications stale (JobWakeups::identities_revoked).
struct Revocation {
  // Zero: revocations may have been missed (deliveries started, or PostgreSQL's listener
  // reconnected), so anything remembered may be stale.
  TenantId tenant = 0;
  // The identity RevokeIdentity revoked; unset: every identity of `tenant` (DisableTenant).
  std::optional<IdentityId> identity;
};

// What a JobWaker calls. Callbacks run on a thread of the store's (PostgreSQL: the listener's,
// or WatchJobs' caller for a waker's first calls; the fake: the thread that made the change,
// after the change), one at a time per waker; they must return quickly and must not destroy
// the waker. Any may be empty; a waker is called only for what has a callback.
struct JobWakeups {
  // Jobs were scheduled (by any replica), or wake-ups may have been missed: claiming may find
  // work. Also called once when deliveries start (PostgreSQL: when the listener's connection is
  // up, and again after every reconnection).
  std::function<void()> jobs_scheduled;
  // A job ended or a notice was announced (by any replica). Also called with JobNotice{}
  // (tenant 0, no kind or subject) whenever jobs_scheduled would be for missed wake-ups: a job's
  // end may have gone unheard, so whoever waits for one looks again.
  std::function<void(const JobNotice&)> job_finished;
  // RevokeIdentity or DisableTenant committed (by any replica), so token caches drop what they
  // hold (service/token_cache.h). Also called with tenant 0 whenever jobs_scheduled would be
  // for missed wake-ups.
  std::function<void(const Revocation&)> identities_revoked;
  // A certificate of the tenant was stored, superseded, revoked, or had its renewal window or
  // revocation-list reading recorded (by any replica; on the replica that wrote it, also at once
  // from the writing thread after the commit), so certificate caches drop what they hold for
  // it (service/certificate_cache.h). Also called with tenant 0 whenever jobs_scheduled would
  // be for missed wake-ups.
  std::function<void(TenantId)> certificates_changed;
};

// The durable job table of the work engine (docs/DESIGN.md, "Work engine"). Job bookkeeping is
// not audited (like leases: it changes who works on what, not the state of a tenant's
// objects). Every time comes from the caller. The calls taking a JobLease are confined to
// lease.tenant; a JobLease whose fencing token is no longer the job's (another owner claimed it)
// or whose job is gone (completed, failed, or never there) is FAILED_PRECONDITION "job <id>
// lost ...", and nothing changes.
class JobStore {
 public:
  virtual ~JobStore() = default;

  // Idempotent: the open job of scope.tenant with the same kind and subject if there is one
  // (its not_before moved to job.not_before if that is earlier; the earlier time wins; its ca
  // and any lease kept), else a new job. Wakes every replica's engine once committed (NOTIFY,
  // or in-process for the fake), also for a job due later (it may be the next one due).
  // INVALID_ARGUMENT for a malformed kind, subject or ca.
  virtual absl::StatusOr<Job> ScheduleJob(const Scope& scope, const NewJob& job,
                                          absl::Time now) = 0;
  // A job of scope.tenant, open or failed. NOT_FOUND if there is none (a completed job).
  virtual absl::StatusOr<Job> GetJob(const Scope& scope, JobId id) = 0;
  // The job of scope.tenant about `subject` of `kind`: the open one if there is one, else the
  // last one failed for good. NOT_FOUND if there is neither (never scheduled, or completed).
  // INVALID_ARGUMENT for a malformed kind or subject. For readers (GetOrder's attempts and last
  // problem), never on a job's own path.
  virtual absl::StatusOr<Job> FindJob(const Scope& scope, absl::string_view kind,
                                      absl::string_view subject) = 0;

  // Cross-tenant: leases up to claim.max_jobs due jobs to claim.owner until now +
  // lease_duration, incrementing each fencing token. Due: not_before <= now, not failed, no
  // lease or an expired one (a crashed replica's job is taken over), of an enabled tenant, of
  // one of claim.kinds. No tenant gets more than per_tenant_limit jobs leased at once and no CA
  // more than per_ca_limit, counting every owner's leases in force. Round-robin over tenants:
  // every tenant's first due job comes before any tenant's second, and among equal turns the
  // tenant served longest ago by any claim goes first, then the job due first; so one tenant's
  // thousands of due jobs delay another tenant's one by at most one turn. Concurrent claimers
  // never get the same job (FOR UPDATE SKIP LOCKED), and each sees the others' leases.
  // INVALID_ARGUMENT without an owner or kinds, for a bad kind, max_jobs < 1, a non-positive
  // lease duration or a negative limit.
  virtual absl::StatusOr<JobClaimResult> ClaimJobs(const JobClaim& claim) = 0;
  // Extends a lease still held: expires at now + lease_duration; same fencing token.
  virtual absl::StatusOr<JobLease> RenewJob(const JobLease& lease, absl::Duration lease_duration,
                                            absl::Time now) = 0;
  // The job is done: its row is deleted, and job_finished (failed = false) reaches every
  // replica's waker once committed.
  virtual absl::Status CompleteJob(const JobLease& lease) = 0;
  // Ends the run and makes the job due again at `at` (any time; the past is due at once),
  // unleased. Without an error the run succeeded and there is more to do later (attempts and
  // last_error reset); with one it was a failed attempt (attempts + 1, last_error = error,
  // clipped).
  virtual absl::Status RescheduleJob(const JobLease& lease, absl::Time at,
                                     absl::string_view error, absl::Time now) = 0;
  // Gives the job up for good: kept as failed (failed_at = now, attempts + 1, last_error =
  // error, clipped), no longer open (the same kind and subject may be scheduled anew), and
  // job_finished (failed = true) reaches every replica's waker once committed.
  virtual absl::Status FailJob(const JobLease& lease, absl::string_view error,
                               absl::Time now) = 0;
  // Returns a job unrun (a replica shutting down): unleased, due as before, attempts unchanged,
  // claimable at once.
  virtual absl::Status ReleaseJob(const JobLease& lease, absl::Time now) = 0;
  // Cross-tenant: returns to the queue, as ReleaseJob does, every job leased to `owner` whose
  // lease is in force at `now` and ends before `ending_before`, and says how many; wakes every
  // replica's engine if there were any. For a replica starting again under the id of a run that
  // died: that run's leases end within one lease duration of its last claim or renewal, so
  // `ending_before` = the new run's start + its lease duration spares the leases the new run
  // took itself. INVALID_ARGUMENT without an owner.
  virtual absl::StatusOr<int> ReleaseJobsOf(absl::string_view owner, absl::Time ending_before,
                                            absl::Time now) = 0;

  // Cross-tenant, for metrics: per kind (ordered by kind; kinds without due jobs left out), the
  // jobs due at `now` and not leased, of enabled tenants.
  virtual absl::StatusOr<std::vector<DueJobCount>> CountDueJobs(absl::Time now) = 0;
  // Sends `notice` to every replica's waker (job_finished), as a job's end does: for work that
  // finishes outside a job. INVALID_ARGUMENT for a malformed kind or subject.
  virtual absl::Status AnnounceJobNotice(const JobNotice& notice) = 0;
  // Starts delivering wake-ups to `wakeups` until the returned waker is destroyed; the first
  // jobs_scheduled (or identities_revoked with tenant 0) call says deliveries have started.
  // PostgreSQL: the store's one dedicated connection LISTENing (storage/postgres_listener.h),
  // shared by all its wakers, connecting in the background and reconnecting with backoff for as
  // long as any waker lives (a database that is down is no error here); what was sent while it
  // was not connected is lost, hence those calls after each connection. A waker made while the
  // connection is up gets its first calls from WatchJobs itself.
  // INVALID_ARGUMENT (PostgreSQL) when `wakeups` has no callback.
  virtual absl::StatusOr<std::unique_ptr<JobWaker>> WatchJobs(JobWakeups wakeups) = 0;
};

// Everything above, in one object. Implementations: PostgresStore, FakeStore.
// Whether the database can serve this binary, for health checks.
class StoreHealth {
 public:
  virtual ~StoreHealth() = default;
  // OK when the database answers and its schema is one this binary can use; UNAVAILABLE when it
  // cannot be reached; FAILED_PRECONDITION naming the versions when the schema is behind or
  // too new (as at start-up). One short round trip.
  virtual absl::Status CheckHealth() = 0;
};

class Store : public TenantStore,
              public IdentityStore,
              public AccountStore,
              public OrderStore,
              public AuthorizationStore,
              public CertificateStore,
              public ChallengeStore,
              public AuditLog,
              public CompromiseRunStore,
              public VaultMaintenance,
              public JobStore,
              public CaLimitStore,
              public StoreHealth {};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_STORE_H_
