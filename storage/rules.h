// The checks both stores (PostgresStore and FakeStore) make before they touch data, so that
// they fail alike: input validation, order and lease rules, page tokens, and the audit events
// that record each state change. Internal to storage/.
#ifndef ACMEVAULT_STORAGE_RULES_H_
#define ACMEVAULT_STORAGE_RULES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/types.h"

namespace acmevault::storage::rules {

absl::Status ValidateTenantSpec(const TenantSpec& spec);
// ALREADY_EXISTS 'tenant name "<name>" is taken': what both stores answer for a taken name.
absl::Status TenantNameTaken(absl::string_view name);
// http:// or https:// followed by a host.
absl::Status ValidateUrl(absl::string_view what, absl::string_view url);
absl::Status ValidatePublicKeyInfo(const PublicKeyInfo& info);
absl::Status ValidateSpiffeId(absl::string_view spiffe_id);
// The longest token object id a key row stores.
inline constexpr size_t kMaxTokenObjectSize = 128;
// Public key facts, and exactly one kind of material: a vault key, or a token object id of 1 to
// kMaxTokenObjectSize printable bytes.
absl::Status ValidateKeyMaterial(const AccountKeyMaterial& key, const PublicKeyInfo& public_key);
// A URL, ValidateKeyMaterial, and a first key state of pending or active.
absl::Status ValidateNewAccount(absl::string_view directory_url, const AccountKeyMaterial& key,
                                const PublicKeyInfo& public_key, KeyState initial_state);
// FAILED_PRECONDITION unless `key` is a token key that is retired or compromised.
absl::Status CheckKeyDestroyable(const AccountKey& key);
// FAILED_PRECONDITION for a compromised key or a destroyed one: never used to sign again.
absl::Status CheckKeyUsable(const AccountKey& key);
// Only kDeactivated and kRevoked may be set.
absl::Status ValidateAccountStatusChange(AccountStatus status);
// Canonical identifiers; a serial of 1-64 hex digits (returned lower-cased); not_after after
// not_before; a chain; a positive key version if given.
absl::StatusOr<NewCertificate> ValidateNewCertificate(const NewCertificate& certificate);
// The certificate a store keeps for `c` (validated) under `id`: its fields, times to the
// microsecond, made at `now`; nothing revoked, superseded, replaced or checked yet.
Certificate StoredCertificate(const NewCertificate& c, TenantId tenant, CertificateId id,
                              bool has_private_key, absl::Time now);
// RFC 5280 §5.3.1: 0-10, 7 unused.
absl::Status ValidateRevocationReason(crypto::RevocationReason reason);
// RFC 8555 §8.3: base64url characters, 1-255 of them.
absl::Status ValidateChallengeToken(absl::string_view token);
// RecordOrderStart's arguments: the order URL, each authorization's URL and identifier, each
// answer's token. The authorizations' identifiers in canonical form, in order.
absl::StatusOr<std::vector<std::string>> ValidateOrderStart(
    absl::string_view url, const std::vector<AuthorizationRecord>& authorizations,
    const std::vector<ChallengeAnswer>& answers);
absl::Status ValidateTokenHash(absl::string_view token_sha256);
// A token's expiry, when set, is after `now`.
absl::Status ValidateTokenExpiry(std::optional<absl::Time> expires_at, absl::Time now);
absl::Status ValidateAuditEvent(const AuditEvent& event);
// Owner set, duration positive.
absl::Status ValidateLeaseRequest(absl::string_view owner, absl::Duration duration);
// Canonical identifiers (returned), a valid lease request, a CSR of at most kMaxCsrDerSize
// bytes, and a valid job kind and CA when it asks for a job.
absl::StatusOr<std::vector<std::string>> ValidateNewOrder(const NewOrder& order);
// A CSR of 1 to kMaxCsrDerSize bytes (AttachOrderMaterial).
absl::Status ValidateOrderCsr(absl::string_view csr_der);
// FAILED_PRECONDITION unless the order is `created` and has no material (AttachOrderMaterial).
absl::Status CheckMaterialAttachable(const Order& order);
// A problem type of at most kMaxProblemTypeSize bytes.
absl::Status ValidateOrderFailure(const OrderFailure& failure);
// FAILED_PRECONDITION unless the order is processing (MarkOrderStalled).
absl::Status CheckStallable(const Order& order);

// The hold key's identifiers made canonical (none stays none), and a problem of at most
// kMaxCaHoldProblemSize bytes (RecordCaHold, GetCaHold).
absl::StatusOr<std::vector<std::string>> ValidateCaHold(const CaHoldKey& key,
                                                        absl::string_view problem = "");
// A name of 1 to 64 bytes, a capacity of at least 1, a positive period and canonical
// identifiers (none stays none): the budget with its identifiers made canonical.
absl::StatusOr<CaBudget> ValidateCaBudget(const CaBudget& budget);
// ValidateCaBudget of each, in order (AdmitCaRequest's budgets).
absl::StatusOr<std::vector<CaBudget>> ValidateCaBudgets(const std::vector<CaBudget>& budgets);
// What LoadOrderStep admits for a StepAdmission, validated as AdmitCaRequest validates its
// arguments: the order's newOrder key, its identifiers made canonical, and the budgets.
struct AdmissionRequest {
  CaHoldKey key;
  std::vector<std::string> ids;
  std::vector<CaBudget> budgets;
};
// nullopt when `admission` is null or has no `budgets`, or they give none for `loaded`.
absl::StatusOr<std::optional<AdmissionRequest>> StepAdmissionOf(const StepAdmission* admission,
                                                                const OrderStepState& loaded);
// A fleet's budget at a CA (TakeCaDirectoryBudgetToken): ValidateCaBudget's checks, no
// identifiers, and a directory URL of 1 to 2048 bytes.
absl::Status ValidateCaDirectoryBudget(absl::string_view directory_url, const CaBudget& budget);
// KeepEabKey's checks: a directory URL of 1 to 2048 bytes, a key id of 1 to kMaxEabKeyIdSize
// bytes, an HMAC key of 1 to kMaxEabHmacKeySize bytes (never named in the error).
// RecordCrlCheck's checks: a CRLReason and a URL of at most 2048 bytes.
absl::Status ValidateCrlCheck(const CrlCheck& check);
// The audit row of a certificate a CRL lists (revoked outside the service).
AuditEvent RevokedOutsideEvent(const Certificate& certificate, const CrlCheck& check);
absl::Status ValidateEabKey(absl::string_view directory_url, absl::string_view key_id,
                            absl::string_view hmac_key);
// The audit rows of a kept EAB key: the key id and the directory (or `purpose`), never the key.
AuditEvent EabKeyEvent(absl::string_view action, const EabKeyInfo& info,
                       absl::string_view purpose = "");
// The bucket's take (TakeCaBudgetToken), as PostgreSQL's statement computes it: `tokens` left
// at `updated_at` refilled to `now` (never for time running backwards), at most the capacity,
// less one when a whole token is there. `tokens` is updated.
CaBudgetTake TakeToken(const CaBudget& budget, double& tokens, absl::Time updated_at,
                       absl::Time now);
// When a bucket with `tokens` (less than one) at `now` has a whole token again.
absl::Time NextTokenAt(const CaBudget& budget, double tokens, absl::Time now);

// ALREADY_EXISTS "the tenant already has a pending or valid account for <directory>": what
// both stores answer when CreateAccount meets the one-live-account rule.
absl::Status LiveAccountExists(absl::string_view directory_url);
// FAILED_PRECONDITION if the account is deactivated or revoked (`already` words the message
// for a repeated status change).
absl::Status CheckAccountOpen(const Account& account, bool already = false);
// MarkAccountHijacked's checks: FAILED_PRECONDITION for an account with no URL.
absl::Status CheckHijackable(const Account& account);
// MarkAccountHijacked's row: what the CA said, clipped to kMaxHijackDetailSize bytes.
AuditEvent AccountHijackedEvent(const Account& account, absl::string_view what);
// ReplaceAccount may replace `old` by an account at `new_account_url`: INVALID_ARGUMENT for a
// malformed URL or the old account's own; FAILED_PRECONDITION unless `old` is valid.
absl::Status CheckReplaceable(const Account& old, absl::string_view new_account_url);
// ReplaceAccount's row, on the new account: which account it replaces and what became of the
// old one's keys.
AuditEvent ReplaceAccountEvent(const Account& old, const Account& replacement, int moved_version,
                               bool old_keys_compromised);
// Whether RecordAccountUrl must write: false if `url` is already recorded; FAILED_PRECONDITION
// if another URL is, or the account is no longer pending.
absl::StatusOr<bool> AccountUrlNeedsWrite(const Account& account, absl::string_view url);
// FAILED_PRECONDITION unless the key is pending.
absl::Status CheckKeyPending(AccountId account, int version, KeyState state);
// A key lease presented for a key write is still current: INVALID_ARGUMENT if it names another
// tenant than the scope; FAILED_PRECONDITION "key lease on account N lost: fencing token T is
// stale (current C)" if the account's token moved on.
absl::Status CheckKeyLease(const Scope& scope, int64_t current_token, const KeyLease& lease);
// Whether a key lease may be taken at `now`: ABORTED "the keys of account N are being changed by
// another caller" while the current one (held until `expires_at`, if it is held) lasts.
absl::Status CheckKeyLeaseFree(AccountId account, std::optional<absl::Time> expires_at,
                               absl::Time now);

// A compromise run may be started at `now` only if it expires later (INVALID_ARGUMENT).
absl::Status ValidateCompromiseRunExpiry(absl::Time now, absl::Time expires_at);
// FAILED_PRECONDITION "compromise run N is finished" once it is.
absl::Status CheckCompromiseRunOpen(const CompromiseRun& run);
// INVALID_ARGUMENT for an empty step name or one longer than 64 bytes.
absl::Status ValidateCompromiseStep(absl::string_view step);

// The lease is for `order` and still current. INVALID_ARGUMENT if the lease names another
// tenant than the scope; FAILED_PRECONDITION "lease on order N lost ..." if the fencing token is
// stale; FAILED_PRECONDITION if the order is terminal. A lease naming a job (Lease::job) is
// checked against `job`, the row of that job as the transaction holds it (null when it is
// gone): still open, for this order, with the lease's fencing token; `job` is ignored otherwise.
absl::Status CheckLease(const Scope& scope, const Order& order, const Lease& lease,
                        const Job* job);
// CheckLease without the terminal check: the lease's fencing token is still current (no other
// replica claimed the order or its job since), whatever the order's state.
absl::Status CheckFence(const Scope& scope, const Order& order, const Lease& lease,
                        const Job* job);
// Forward only, terminal states final; ready and later need the ACME URL; valid only through
// CompleteOrder (INVALID_ARGUMENT). Moving to the current state is allowed (a retried call).
absl::Status CheckOrderTransition(const Order& order, OrderState to);

// Whether `order`, made with an idempotency key, is what the key binds at `now`
// (OrderStore::FindOrderByIdempotencyKey): made less than kIdempotencyKeyLifetime ago and not
// valid with a revoked or expired `certificate` (the order's, when it has one).
bool IdempotencyKeyBinds(const Order& order, const Certificate* certificate, absl::Time now);
// Joining `order`, the one the request's idempotency key binds: ALREADY_EXISTS unless
// scope.actor.identity made it (an order without a recorded creator is nobody's), then
// INVALID_ARGUMENT unless it is for `identifiers` (canonical).
absl::Status CheckIdempotentJoin(const Scope& scope, const Order& order,
                                 const std::vector<std::string>& identifiers);
// ALREADY_EXISTS: the key's order of more than kIdempotencyKeyLifetime ago is still in flight,
// and a tenant has at most one order in flight per key.
absl::Status IdempotencyKeyInFlight(OrderId order);

// Whether RecordOrderUrl must write: false if `url` is already recorded; FAILED_PRECONDITION if
// another URL is.
absl::StatusOr<bool> OrderUrlNeedsWrite(const Order& order, absl::string_view url);
// CompleteOrder needs the order's ACME URL.
absl::Status CheckCompletable(const Order& order);
// LoadOrderStep unseals the account's active key only when a step can use it: the order is in
// flight with its CSR and the account valid.
bool OrderStepUsesKey(const Order& order, const Account& account);
// FinishOrder's arguments: INVALID_ARGUMENT for a lease without a job or a certificate with a
// private key of its own (the order's goes with it).
absl::Status ValidateOrderCompletion(const Lease& lease, const OrderCompletion& completion);
// The audit detail of a transition: "pending -> invalid: why".
std::string TransitionDetail(OrderState from, OrderState to, absl::string_view error);

// Walks one tenant's audit chain in sequence order and reports the first break (DATA_LOSS
// naming the sequence number), as AuditLog::VerifyAuditChain promises.
class AuditChainVerifier {
 public:
  explicit AuditChainVerifier(TenantId tenant);
  // One row, in order: its seq, prev_hash and hash, and the hash recomputed from its fields.
  absl::Status Next(int64_t seq, absl::string_view prev_hash, absl::string_view hash,
                    absl::string_view recomputed);
  // After the last row: the tenant's recorded head (seq 0 and an empty hash if none).
  absl::Status Finish(int64_t head_seq, absl::string_view head_hash) const;
  int64_t last_seq() const { return last_seq_; }

 private:
  const std::string what_;
  int64_t last_seq_ = 0;
  std::string last_hash_;
};

// Page tokens: the decimal id (or sequence number) of the last item returned.
absl::StatusOr<int64_t> DecodeIdToken(absl::string_view token);
std::string EncodeIdToken(int64_t id);
// The due query's cursor: "<not_after micros>:<id>".
absl::StatusOr<std::pair<int64_t, int64_t>> DecodeDueToken(absl::string_view token);
std::string EncodeDueToken(absl::Time not_after, int64_t id);

// Audit rows the stores write for their own state changes.
AuditEvent TenantEvent(absl::string_view action, const TenantSpec& spec);
AuditEvent AccountEvent(absl::string_view action, AccountId account,
                        std::optional<int> key_version, std::string detail);
// SetAccountStatus's row: the account's new status, naming its ACME URL.
AuditEvent AccountStatusEvent(const Account& account, AccountStatus status);
AuditEvent OrderEvent(absl::string_view action, const Order& order, std::string detail);
AuditEvent CertificateEvent(absl::string_view action, const Certificate& certificate,
                            std::string detail);
// RecordReplacedCertificate's checks: INVALID_ARGUMENT when a certificate would replace itself;
// then, with both rows read, whether `renewal` must change (false: it records `replaced`
// already) or FAILED_PRECONDITION when it records another.
absl::Status ValidateReplacement(CertificateId renewal, CertificateId replaced);
absl::StatusOr<bool> CheckReplacement(const Certificate& renewal, const Certificate& replaced);
// RecordAriCheck's check of its window: both ends or neither, end not before start.
absl::Status ValidateAriCheck(const AriCheck& check);
AuditEvent SimpleEvent(absl::string_view action, std::string detail);
// "CompromiseStart" ("run N[ deactivate_account]"), "CompromiseStep" ("run N: step"),
// "CompromiseDone" ("run N").
AuditEvent CompromiseStartEvent(const CompromiseRun& run);
AuditEvent CompromiseStepEvent(CompromiseRunId run, absl::string_view step);
AuditEvent CompromiseDoneEvent(CompromiseRunId run);
// "AddTokenIdentity" for `identity`: its id, role and expiry.
AuditEvent TokenAddedEvent(const Identity& identity);

// Jobs (JobStore). Kind as ValidateJobKind (types.h); subject 1-kMaxJobSubject printable ASCII
// characters without spaces; ca empty or at most kMaxJobCa such characters.
absl::Status ValidateNewJob(const NewJob& job);
absl::Status ValidateJobNotice(const JobNotice& notice);
absl::Status ValidateJobClaim(const JobClaim& claim);
// `error` as a job row keeps it: at most kMaxJobError bytes of valid UTF-8 on one line
// (ClipUtf8).
std::string ClipJobError(absl::string_view error);
// A CA's "contact" as an account keeps it: the first kMaxAccountContacts, each at most
// kMaxAccountContactSize bytes of valid UTF-8 on one line (ClipUtf8); empty ones dropped.
std::vector<std::string> ClipAccountContact(const std::vector<std::string>& contact);
// INVALID_ARGUMENT unless `lease` names a tenant, a job and an owner.
absl::Status ValidateJobLease(const JobLease& lease);
// FAILED_PRECONDITION "job <id> lost: ..." unless `lease` is still `job`'s (same fencing token)
// and the job is open.
absl::Status CheckJobLease(const Job& job, const JobLease& lease);
// What a write presenting `lease` answers when its job has no row (completed, or never there).
absl::Status JobGone(const JobLease& lease);
// The payload of a job notice between replicas ("<tenant> <kind> <subject> done|failed") and
// back. INVALID_ARGUMENT for a payload that is not one.
std::string EncodeJobNotice(const JobNotice& notice);
absl::StatusOr<JobNotice> DecodeJobNotice(absl::string_view payload);

}  // namespace acmevault::storage::rules

#endif  // ACMEVAULT_STORAGE_RULES_H_
