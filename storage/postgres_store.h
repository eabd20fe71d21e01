// PostgresStore: the production Store, on PostgreSQL 15 through libpqxx.
//
// It connects as a member of acmevault_app (see storage/migrations/README.md), so row-level
// security confines every tenant-scoped transaction to the tenant named by its Scope; every
// such call, read or write, is refused alike when the Scope names no tenant (INVALID_ARGUMENT)
// or one that does not exist (NOT_FOUND). The cross-tenant calls go through the SECURITY
// DEFINER functions of migration 0004. Every statement is parameterised. Private keys are
// sealed (storage/envelope.h) before they reach a statement and unsealed only in the calls that
// return them.
//
// Thread-safe. Survives a PostgreSQL restart: a transaction that failed on a lost connection
// (before COMMIT), a serialization failure or a deadlock is re-run on a fresh connection (see
// storage/postgres_pool.h); the process need not restart.
#ifndef ACMEVAULT_STORAGE_POSTGRES_STORE_H_
#define ACMEVAULT_STORAGE_POSTGRES_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/status_macros.h"
#include "storage/envelope.h"
#include "storage/kek_set.h"
#include "storage/postgres_pool.h"
#include "storage/store.h"

namespace acmevault::storage {

namespace pg {
struct Sql;
}  // namespace pg

struct PostgresStoreOptions {
  // Connection pool: URL (of an acmevault_app member), size, acquire timeout, retry budget and
  // the clock its retries wait on (the real one by default; `clock` below only stamps rows).
  PostgresPoolOptions pool;
  // Source of "now" for every timestamp and lease. Borrowed; must outlive the store. Leases
  // compare times from the replicas' clocks, so keep them synchronised (NTP); correctness of
  // lease hand-over rests on fencing tokens, not on clocks.
  const Clock* clock = Clock::Real();
  // Refuse to run as a role that bypasses row-level security (a superuser or BYPASSRLS), which
  // would silently void tenant isolation. Only tests of the definer functions turn this off.
  bool require_row_security = true;
};

// The NOTIFY channels of the job table (JobStore): ScheduleJob sends the job's kind on
// kJobsChannel; a job's end and AnnounceJobNotice send rules::EncodeJobNotice's payload on
// kJobNoticeChannel. Both are sent inside the writing transaction, so they reach listeners only
// once it commits.
inline constexpr char kJobsChannel[] = "acmevault_jobs";
inline constexpr char kJobNoticeChannel[] = "acmevault_job_notices";
// RevokeIdentity and DisableTenant send EncodeRevocation's payload on kIdentitiesChannel, also
// inside their transactions, so that every replica's token cache drops what they made stale.
inline constexpr char kIdentitiesChannel[] = "acmevault_identities";
// Every write to a tenant's certificates (stored, superseded, revoked, renewal window or
// revocation-list reading recorded) sends the tenant's id on kCertificatesChannel inside its
// transaction, so that every replica's certificate cache drops the tenant's entries; the
// replica that wrote also delivers it to its own wakers at once after the commit, so that its
// next read sees the write.
inline constexpr char kCertificatesChannel[] = "acmevault_certificates";
// InsertCertificate's statement: $1 id, $2 tenant, $3 account, $4 order, $5 identifiers,
// $6 serial, $7 and $8 validity (microseconds), $9 chain, $10 account key version, $11-$13 the
// sealed key (kek id, wrapped data key, sealed key; all NULL for none), $14 now, $15 the next
// revocation-list check. It marks the identifiers' live certificates superseded and returns
// the new row's kCertificates columns.
std::string InsertCertificateSql();
// "<tenant> <identity>", or "<tenant>" for a whole tenant; nullopt for anything else.
std::string EncodeRevocation(const Revocation& revocation);
std::optional<Revocation> DecodeRevocation(absl::string_view payload);

class WatchHub;  // postgres_jobs.cc

class PostgresStore final : public Store {
 public:
  // FAILED_PRECONDITION, before touching the database, if `keks` is empty (there is no
  // plaintext mode); INVALID_ARGUMENT for a null clock or invalid pool options. Then connects
  // once to check: UNAVAILABLE if it cannot;
  // FAILED_PRECONDITION if the role bypasses row-level security (unless allowed) or the schema
  // is not at LatestSchemaVersion() (run migrate).
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Create(PostgresStoreOptions options,
                                                               KekSet keks);

  // TenantStore
  absl::StatusOr<Tenant> CreateTenant(const Actor& actor, const TenantSpec& spec) override;
  absl::StatusOr<Tenant> GetTenant(const Scope& scope) override;
  absl::StatusOr<Tenant> FindTenantByName(absl::string_view name) override;
  absl::StatusOr<Tenant> UpdateTenant(const Scope& scope, const TenantSpec& spec) override;
  absl::Status DisableTenant(const Scope& scope) override;
  absl::StatusOr<Page<Tenant>> ListTenants(const PageRequest& page) override;

  // IdentityStore
  absl::StatusOr<Identity> AddSpiffeIdentity(const Scope& scope, absl::string_view spiffe_id,
                                             Role role, absl::string_view description) override;
  absl::StatusOr<Identity> AddTokenIdentity(const Scope& scope, absl::string_view token_sha256,
                                            Role role, absl::string_view description,
                                            std::optional<absl::Time> expires_at) override;
  absl::StatusOr<Identity> AuthenticateSpiffe(absl::string_view spiffe_id) override;
  absl::StatusOr<Identity> AuthenticateToken(absl::string_view token_sha256) override;
  absl::Status RevokeIdentity(const Scope& scope, IdentityId id) override;
  absl::StatusOr<std::vector<Identity>> ListIdentities(const Scope& scope) override;

  // AccountStore
  absl::StatusOr<Account> CreateAccount(const Scope& scope, absl::string_view directory_url,
                                        const AccountKeyMaterial& key,
                                        const PublicKeyInfo& public_key,
                                        KeyState initial_state) override;
  absl::StatusOr<Account> CreateEphemeralAccount(const Scope& scope,
                                                 absl::string_view directory_url,
                                                 const AccountKeyMaterial& key,
                                                 const PublicKeyInfo& public_key) override;
  absl::StatusOr<Account> GetAccount(const Scope& scope, AccountId account) override;
  absl::StatusOr<std::vector<Account>> ListAccounts(const Scope& scope) override;
  absl::StatusOr<std::vector<Account>> ListEphemeralAccountsToClose(
      const Scope& scope, absl::Time created_before, absl::string_view close_job_kind) override;
  using AccountStore::RecordAccountUrl;
  absl::Status RecordAccountUrl(const Scope& scope, AccountId account, absl::string_view url,
                                const std::vector<std::string>& contact) override;
  absl::StatusOr<Account> MarkAccountHijacked(const Scope& scope, AccountId account,
                                              absl::string_view what) override;
  absl::Status SetAccountStatus(const Scope& scope, AccountId account,
                                AccountStatus status) override;
  absl::StatusOr<KeyLease> AcquireKeyLease(const Scope& scope, AccountId account,
                                           absl::Duration duration) override;
  absl::Status ReleaseKeyLease(const Scope& scope, const KeyLease& lease) override;
  absl::StatusOr<AccountKey> AddPendingKey(const Scope& scope, const KeyLease& lease,
                                           const AccountKeyMaterial& key,
                                           const PublicKeyInfo& public_key) override;
  absl::Status PromoteKey(const Scope& scope, const KeyLease& lease, int version) override;
  absl::StatusOr<Account> ReplaceAccount(const Scope& scope, const KeyLease& lease, int version,
                                         absl::string_view new_account_url,
                                         bool old_keys_compromised) override;
  absl::Status DiscardPendingKey(const Scope& scope, const KeyLease& lease, int version) override;
  absl::Status MarkKeyCompromised(const Scope& scope, const KeyLease& lease, int version) override;
  absl::StatusOr<UnsealedAccountKey> GetActiveKey(const Scope& scope, AccountId account,
                                                  absl::string_view purpose) override;
  absl::StatusOr<UnsealedAccountKey> GetKey(const Scope& scope, AccountId account, int version,
                                            absl::string_view purpose) override;
  absl::StatusOr<std::vector<AccountKey>> ListKeys(const Scope& scope, AccountId account) override;
  absl::Status MarkKeyDestroyed(const Scope& scope, AccountId account, int version) override;
  absl::StatusOr<EabKeyInfo> KeepEabKey(const Scope& scope, absl::string_view directory_url,
                                        absl::string_view key_id,
                                        absl::string_view hmac_key) override;
  absl::StatusOr<EabKeyInfo> GetEabKeyInfo(const Scope& scope) override;
  absl::StatusOr<EabKey> GetEabKey(const Scope& scope, absl::string_view purpose) override;
  absl::Status ForgetEabKey(const Scope& scope) override;

  // OrderStore
  absl::StatusOr<CreateOrderResult> CreateOrJoinOrder(const Scope& scope,
                                                      const NewOrder& order) override;
  absl::StatusOr<Order> GetOrder(const Scope& scope, OrderId order) override;
  absl::StatusOr<Order> FindOrderByIdempotencyKey(const Scope& scope,
                                                  absl::string_view key) override;
  absl::StatusOr<crypto::PrivateKey> GetOrderCertificateKey(const Scope& scope, OrderId order,
                                                            absl::string_view purpose) override;
  absl::Status AttachOrderMaterial(const Scope& scope, const Lease& lease,
                                   absl::string_view csr_der,
                                   const crypto::PrivateKey* certificate_key) override;
  absl::StatusOr<std::vector<Authorization>> RecordOrderStart(
      const Scope& scope, const Lease& lease, absl::string_view url,
      const std::vector<AuthorizationRecord>& authorizations,
      const std::vector<ChallengeAnswer>& answers) override;
  absl::Status RecordOrderUrl(const Scope& scope, const Lease& lease,
                              absl::string_view url) override;
  absl::Status TransitionOrder(const Scope& scope, const Lease& lease, OrderState to,
                               const OrderFailure& failure, const Order* seen = nullptr) override;
  absl::StatusOr<Certificate> CompleteOrder(const Scope& scope, const Lease& lease,
                                            const NewCertificate& certificate) override;
  absl::StatusOr<OrderStepState> LoadOrderStep(const Scope& scope, OrderId order,
                                               absl::string_view purpose,
                                               const StepAdmission* admission) override;
  absl::StatusOr<Certificate> FinishOrder(const Scope& scope, const Lease& lease,
                                          const OrderCompletion& completion) override;
  absl::StatusOr<std::vector<Lease>> ClaimStaleOrders(absl::string_view owner,
                                                      absl::Duration lease_duration,
                                                      int max_orders) override;
  absl::StatusOr<Lease> RenewLease(const Scope& scope, const Lease& lease,
                                   absl::Duration lease_duration) override;
  absl::Status ReleaseLease(const Scope& scope, const Lease& lease) override;
  absl::Status MarkOrderStalled(const Scope& scope, const Lease& lease, absl::Time at) override;

  // CaLimitStore
  absl::Status RecordCaHold(const Scope& scope, const CaHoldKey& key, absl::Time until,
                            absl::string_view problem) override;
  absl::StatusOr<CaAdmission> AdmitCaRequest(const Scope& scope, const CaHoldKey& key,
                                             const std::vector<CaBudget>& budgets,
                                             absl::Time now) override;
  absl::StatusOr<CaHold> GetCaHold(const Scope& scope, const CaHoldKey& key,
                                   absl::Time now) override;
  absl::StatusOr<CaBudgetTake> TakeCaBudgetToken(const Scope& scope, AccountId account,
                                                 const CaBudget& budget, absl::Time now) override;
  absl::Status ReturnCaBudgetToken(const Scope& scope, AccountId account,
                                   const CaBudget& budget) override;
  absl::StatusOr<CaBudgetTake> TakeCaDirectoryBudgetToken(absl::string_view directory_url,
                                                          const CaBudget& budget,
                                                          absl::Time now) override;
  absl::Status ReturnCaDirectoryBudgetToken(absl::string_view directory_url,
                                            const CaBudget& budget) override;

  // AuthorizationStore
  absl::StatusOr<Authorization> RecordAuthorization(
      const Scope& scope, const AuthorizationRecord& authorization) override;
  absl::StatusOr<std::vector<Authorization>> ListOutstandingAuthorizations(
      const Scope& scope, const AuthorizationFilter& filter) override;
  absl::Status MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                            absl::string_view url) override;

  // CertificateStore
  absl::StatusOr<Certificate> InsertCertificate(const Scope& scope,
                                                const NewCertificate& certificate) override;
  absl::StatusOr<Certificate> GetCertificate(const Scope& scope, CertificateId id) override;
  absl::StatusOr<Certificate> GetCertificateBySerial(const Scope& scope,
                                                     absl::string_view serial) override;
  absl::StatusOr<IssueContext> LoadIssueContext(
      const Scope& scope, const std::vector<std::string>& identifiers) override;
  absl::StatusOr<Certificate> GetCurrentCertificate(
      const Scope& scope, const std::vector<std::string>& identifiers) override;
  absl::StatusOr<crypto::PrivateKey> GetCertificateKey(const Scope& scope, CertificateId id,
                                                       absl::string_view purpose) override;
  absl::StatusOr<Page<Certificate>> ListCertificates(const Scope& scope,
                                                     const CertificateFilter& filter,
                                                     const PageRequest& page) override;
  absl::StatusOr<Page<DueCertificate>> ListCertificatesDueForRenewal(
      const PageRequest& page) override;
  absl::Status RecordReplacedCertificate(const Scope& scope, CertificateId renewal,
                                         CertificateId replaced) override;
  absl::Status RecordAriCheck(const Scope& scope, CertificateId id,
                              const AriCheck& check) override;
  absl::Status RecordCrlCheck(const Scope& scope, CertificateId id, const CrlCheck& check) override;
  absl::Status MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                      crypto::RevocationReason reason) override;

  // ChallengeStore
  absl::Status PutChallenge(const Scope& scope, absl::string_view token,
                            absl::string_view key_authorization) override;
  absl::StatusOr<std::string> LookupChallenge(absl::string_view token) override;
  absl::Status DeleteChallenge(const Scope& scope, absl::string_view token) override;
  absl::Status DeleteChallengeFenced(const Scope& scope, const Lease& lease,
                                     absl::string_view token) override;

  // AuditLog
  absl::Status AppendAudit(const Scope& scope, const AuditEvent& event) override;
  absl::StatusOr<Page<AuditRecord>> ListAudit(const Scope& scope, const PageRequest& page) override;
  absl::Status VerifyAuditChain(const Scope& scope) override;

  // CompromiseRunStore
  absl::StatusOr<CompromiseRun> StartCompromiseRun(const Scope& scope, bool deactivate_account,
                                                   absl::Time expires_at) override;
  absl::StatusOr<CompromiseRun> GetCompromiseRun(const Scope& scope, CompromiseRunId run) override;
  absl::Status RecordCompromiseStep(const Scope& scope, CompromiseRunId run,
                                    absl::string_view step) override;
  absl::Status FinishCompromiseRun(const Scope& scope, CompromiseRunId run) override;

  // VaultMaintenance
  absl::StatusOr<RewrapProgress> RewrapBatch(const Actor& actor, int max_records) override;

  // JobStore
  absl::StatusOr<Job> ScheduleJob(const Scope& scope, const NewJob& job, absl::Time now) override;
  absl::StatusOr<Job> GetJob(const Scope& scope, JobId id) override;
  absl::StatusOr<Job> FindJob(const Scope& scope, absl::string_view kind,
                              absl::string_view subject) override;
  absl::StatusOr<JobClaimResult> ClaimJobs(const JobClaim& claim) override;
  absl::StatusOr<JobLease> RenewJob(const JobLease& lease, absl::Duration lease_duration,
                                    absl::Time now) override;
  absl::Status CompleteJob(const JobLease& lease) override;
  absl::Status RescheduleJob(const JobLease& lease, absl::Time at, absl::string_view error,
                             absl::Time now) override;
  absl::Status FailJob(const JobLease& lease, absl::string_view error, absl::Time now) override;
  absl::Status ReleaseJob(const JobLease& lease, absl::Time now) override;
  absl::StatusOr<int> ReleaseJobsOf(absl::string_view owner, absl::Time ending_before,
                                    absl::Time now) override;
  absl::StatusOr<std::vector<DueJobCount>> CountDueJobs(absl::Time now) override;
  absl::Status AnnounceJobNotice(const JobNotice& notice) override;
  absl::StatusOr<std::unique_ptr<JobWaker>> WatchJobs(JobWakeups wakeups) override;

  // StoreHealth
  absl::Status CheckHealth() override;

  // The pool, for tests that watch connections.
  PostgresPool& pool() { return *pool_; }

 private:
  // The members are defined by concern: postgres_store.cc (construction, the tenant path,
  // tenants, identities), postgres_accounts.cc, postgres_key_leases.cc (account key leases),
  // postgres_compromise_runs.cc, postgres_orders.cc, postgres_authorizations.cc,
  // postgres_certificates.cc, postgres_challenges.cc, postgres_audit.cc, postgres_rewrap.cc
  // and postgres_jobs.cc.

  // A transaction body that produces a value (see PostgresPool::Body).
  template <typename T>
  using Producer = std::function<absl::StatusOr<T>(pqxx::dbtransaction&)>;

  PostgresStore(PostgresStoreOptions options, Envelope envelope,
                std::unique_ptr<PostgresPool> pool);

  // The one way into a tenant's rows, for reads and writes alike. INVALID_ARGUMENT
  // "<op>: no tenant" unless scope.tenant names one; then, in a transaction confined to that
  // tenant by row-level security (REPEATABLE READ, READ ONLY if `snapshot`), NOT_FOUND
  // "tenant <id> not found" unless it exists; then `body`. A disabled tenant passes: disabling
  // stops authentication and background work, not an authenticated caller's reads and writes.
  absl::Status InTenant(absl::string_view op, const Scope& scope, const PostgresPool::Body& body,
                        bool snapshot = false);
  // The same for a body that produces a value: the value of the attempt that committed.
  template <typename T>
  absl::StatusOr<T> InTenant(absl::string_view op, const Scope& scope, const Producer<T>& body) {
    return Returning<T, pqxx::dbtransaction>(
        [&](const PostgresPool::Body& b) { return InTenant(op, scope, b); }, body);
  }
  // A cross-tenant transaction (no tenant set: only the SECURITY DEFINER functions see rows).
  template <typename T>
  absl::StatusOr<T> AcrossTenants(absl::string_view op, const Producer<T>& body) {
    return Returning<T, pqxx::dbtransaction>(
        [&](const PostgresPool::Body& b) { return pool_->Run(op, {}, b); }, body);
  }
  // One statement and one round trip (PostgresPool::RunStatement), for the reads every call
  // makes. `read` sends a prepared statement (PreparedStatements) on one tenant's rows with the
  // tenant id as its first parameter, which sets the tenant itself (pg::kTenantFirst). Errors
  // as InTenant's: when `read` finds nothing (NOT_FOUND), a second statement tells a tenant
  // that does not exist apart.
  template <typename T>
  absl::StatusOr<T> ReadInTenant(absl::string_view op, const Scope& scope,
                                 const std::function<absl::StatusOr<T>(pqxx::nontransaction&,
                                                                       const std::string&)>& read) {
    if (scope.tenant <= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": no tenant"));
    const std::string tenant = absl::StrCat(scope.tenant);
    absl::StatusOr<T> out =
        Statement<T>(op, [&](pqxx::nontransaction& tx) { return read(tx, tenant); });
    if (absl::IsNotFound(out.status())) RETURN_IF_ERROR(RequireTenant(op, scope));
    return out;
  }
  // The same without a tenant (a SECURITY DEFINER function's answer).
  template <typename T>
  absl::StatusOr<T> Statement(absl::string_view op,
                              const std::function<absl::StatusOr<T>(pqxx::nontransaction&)>& read) {
    return Returning<T, pqxx::nontransaction>(
        [&](const PostgresPool::StatementBody& b) { return pool_->RunStatement(op, b); }, read);
  }
  // NOT_FOUND "tenant <id> not found" unless scope.tenant exists; one statement.
  absl::Status RequireTenant(absl::string_view op, const Scope& scope);
  // The statements every connection prepares: the hot reads and the audit row.
  static std::vector<std::pair<std::string, std::string>> PreparedStatements();
  // Their names. The audit row's SQL is AuditInsertSql().
  static constexpr char kCertificateBySerial[] = "av_certificate_by_serial";
  static constexpr char kCurrentCertificate[] = "av_current_certificate";
  static constexpr char kAuthenticateToken[] = "av_authenticate_token";
  static constexpr char kAuthenticateSpiffe[] = "av_authenticate_spiffe";
  static constexpr char kTenantExists[] = "av_tenant_exists";
  static constexpr char kTenantById[] = "av_tenant";
  static constexpr char kAccountsOfTenant[] = "av_accounts";
  static constexpr char kCertificateById[] = "av_certificate";
  static constexpr char kOrderById[] = "av_order";
  static constexpr char kLookupChallenge[] = "av_lookup_challenge";
  static constexpr char kAuditStatement[] = "av_audit_insert";
  static std::string AuditInsertSql();
  // Runs `body` through `run`, a transaction (or statement) runner that may call it more than
  // once.
  template <typename T, typename Tx = pqxx::dbtransaction>
  static absl::StatusOr<T> Returning(
      const std::function<absl::Status(const std::function<absl::Status(Tx&)>&)>& run,
      const std::function<absl::StatusOr<T>(Tx&)>& body) {
    std::optional<T> out;
    absl::Status status = run([&](Tx& tx) -> absl::Status {
      out.reset();
      absl::StatusOr<T> value = body(tx);
      if (!value.ok()) return value.status();
      out.emplace(*std::move(value));
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return *std::move(out);
  }

  absl::Time Now() const;
  // Appends to scope.tenant's audit chain in the caller's transaction; the trigger of migration
  // 0005 assigns seq, prev_hash and hash. Inside WithAuditBatch for the same transaction and
  // tenant the row is kept and inserted with the others when the body ends; else at once.
  static void Audit(pqxx::dbtransaction& tx, const Scope& scope, absl::Time at,
                    const AuditEvent& event);
  // Runs `body`, then inserts the audit rows it appended for `tenant` in `tx` in one statement,
  // in the order appended (the chain trigger runs per row, in that order). Nothing is inserted
  // when `body` fails. The statement is the transaction's last: in a pool's transaction it is
  // sent with COMMIT, in the same round trip (PooledTransaction::SendWithCommit), and its
  // failure is the commit's. InTenant runs every body inside one.
  static absl::Status WithAuditBatch(pqxx::dbtransaction& tx, TenantId tenant,
                                     const PostgresPool::Body& body);
  // RecordOrderUrl's write after the lease check (`o` locked), shared with RecordOrderStart.
  static absl::Status RecordOrderUrlIn(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                       Order& o, absl::string_view url);
  // RecordAuthorization's transaction body (`identifier` canonical): its statement, then what
  // follows from the statement's result. RecordOrderStart sends several statements together.
  static Authorization RecordAuthorizationIn(pqxx::dbtransaction& tx, const Scope& scope,
                                             absl::Time now,
                                             const AuthorizationRecord& authorization,
                                             const std::string& identifier);
  static pg::Sql RecordAuthorizationSql(const Scope& scope, absl::Time now,
                                        const AuthorizationRecord& authorization,
                                        const std::string& identifier);
  static Authorization RecordedAuthorization(pqxx::dbtransaction& tx, const Scope& scope,
                                             absl::Time now,
                                             const AuthorizationRecord& authorization,
                                             const std::string& identifier,
                                             const pqxx::result& upserted);
  // PutChallenge's transaction body, split the same way for RecordOrderStart.
  static absl::Status PutChallengeIn(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                     absl::string_view token, absl::string_view key_authorization);
  static pg::Sql PutChallengeSql(const Scope& scope, absl::Time now, absl::string_view token,
                                 absl::string_view key_authorization);
  static absl::Status PutChallengeAnswered(pqxx::dbtransaction& tx, const Scope& scope,
                                           absl::Time now, absl::string_view token,
                                           absl::string_view key_authorization,
                                           const pqxx::result& inserted);
  // A CA hold's rows, read ahead in the transaction (CaHoldSql, sent with other statements)
  // for `key` and `ids` at `now`: CaHoldIn takes them instead of reading again.
  struct CaHoldRead {
    CaHoldKey key;
    std::vector<std::string> ids;
    absl::Time now;
    const pqxx::result* rows = nullptr;
  };
  // The statement CaHoldIn reads a hold with.
  static pg::Sql CaHoldSql(const CaHoldKey& key, const std::vector<std::string>& ids,
                           absl::Time now);
  // GetCaHold's, TakeCaBudgetToken's and ReturnCaBudgetToken's transaction bodies, shared
  // with AdmitCaRequest (the budget validated).
  static std::optional<CaHold> CaHoldIn(pqxx::dbtransaction& tx, const CaHoldKey& key,
                                        const std::vector<std::string>& ids, absl::Time now,
                                        const CaHoldRead* ahead = nullptr);
  static CaBudgetTake TakeCaBudgetTokenIn(pqxx::dbtransaction& tx, const Scope& scope,
                                          AccountId account, const CaBudget& budget,
                                          absl::Time now);
  static void ReturnCaBudgetTokenIn(pqxx::dbtransaction& tx, AccountId account,
                                    const CaBudget& budget);
  // AdmitCaRequest's transaction body (`ids` and `budgets` validated), shared with
  // LoadOrderStep.
  static CaAdmission AdmitCaRequestIn(pqxx::dbtransaction& tx, const Scope& scope,
                                      const CaHoldKey& key, const std::vector<std::string>& ids,
                                      const std::vector<CaBudget>& budgets, absl::Time now,
                                      const CaHoldRead* ahead = nullptr);
  // DeleteChallenge's transaction body, shared with DeleteChallengeFenced; its statement, and
  // the audit of its result, for FinishOrder, which sends several statements together.
  static void DeleteChallengeTx(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                absl::string_view token);
  static pg::Sql ChallengeDeletionSql(absl::string_view token);
  static void AuditChallengeDeletion(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                     absl::string_view token, const pqxx::result& deleted);
  // InsertCertificate's transaction body, shared with CompleteOrder: the certificate as `id`
  // (drawn with pg::kDrawCertificateId), or one drawn here if `id` is 0.
  absl::StatusOr<Certificate> InsertCertificateIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                  const NewCertificate& certificate, absl::Time now,
                                                  CertificateId id = 0);
  // The account `lease` is for, its row locked until the transaction ends, if the lease is
  // still current (rules::CheckKeyLease): what every key write starts with.
  static absl::StatusOr<Account> LockLeasedAccount(pqxx::dbtransaction& tx, const Scope& scope,
                                                   const KeyLease& lease);
  // A transaction confined by row-level security to the tenant of a job lease (no tenant
  // lookup: the job row itself is the check). INVALID_ARGUMENT as rules::ValidateJobLease.
  absl::Status InJobTenant(absl::string_view op, const JobLease& lease,
                           const PostgresPool::Body& body);
  // GetActiveKey (no version) and GetKey.
  absl::StatusOr<UnsealedAccountKey> UnsealKey(absl::string_view op, const Scope& scope,
                                               AccountId account, std::optional<int> version,
                                               absl::string_view purpose);
  // CompleteOrder's write after its checks (`linked` names the order; its certificate is
  // `certificate_id`, drawn), shared with FinishOrder.
  absl::StatusOr<Certificate> CompleteOrderIn(pqxx::dbtransaction& tx, const Scope& scope,
                                              absl::Time now, const Order& o,
                                              const NewCertificate& linked,
                                              CertificateId certificate_id);
  // LoadOrderStep's transaction body: the order and OrderStepReadsSql in one round trip, then
  // OrderStepOf.
  absl::StatusOr<OrderStepState> LoadOrderStepIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                 absl::Time now, OrderId order,
                                                 absl::string_view purpose,
                                                 const StepAdmission* admission);
  // The rows an order's step loads beside the order (for Together): its account, the tenant,
  // its outstanding authorizations, and its account's active key. Reads only.
  static std::vector<pg::Sql> OrderStepReadsSql(const Scope& scope, absl::Time now, OrderId order);
  // The step's state from `order` and OrderStepReadsSql's four results (`r`): the key unsealed
  // and its use audited, the admission made. Shared with CreateOrJoinOrder
  // (NewOrder::first_step), which reads those rows in the pipeline of the order's INSERT and
  // the job's, after the job's claim, with the CA hold the admission asks for (`hold_ahead`).
  absl::StatusOr<OrderStepState> OrderStepOf(pqxx::dbtransaction& tx, const Scope& scope,
                                             absl::Time now, Order order, const pqxx::result* r,
                                             absl::string_view purpose,
                                             const StepAdmission* admission,
                                             const CaHoldRead* hold_ahead = nullptr);
  // UnsealKey's transaction body: the key's row, then UnsealKeyRowIn.
  absl::StatusOr<UnsealedAccountKey> UnsealKeyIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                 absl::Time now, AccountId account,
                                                 std::optional<int> version,
                                                 absl::string_view purpose);
  // The key of a row that carries the key material (as ActiveKeyOfOrderSql selects it),
  // checked usable, opened and its use audited; shared with LoadOrderStep.
  absl::StatusOr<UnsealedAccountKey> UnsealKeyRowIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                    absl::Time now, AccountId account,
                                                    const pqxx::row& r, absl::string_view purpose);
  // The active key of order $1's account, with its material.
  static std::string ActiveKeyOfOrderSql();
  // ListOutstandingAuthorizations' transaction body (filter.identifiers canonical), shared
  // with LoadOrderStep.
  static std::vector<Authorization> OutstandingAuthorizationsIn(pqxx::dbtransaction& tx,
                                                                absl::Time now,
                                                                const AuthorizationFilter& filter);
  static pg::Sql OutstandingAuthorizationsSql(absl::Time now, const AuthorizationFilter& filter);
  // MarkAuthorizationDeactivated's transaction body: false (nothing written) when the account
  // has no such authorization.
  static bool MarkAuthorizationDeactivatedIn(pqxx::dbtransaction& tx, const Scope& scope,
                                             absl::Time now, AccountId account,
                                             absl::string_view url);
  // The same deactivation for the account of order `order` (the row holds it), for FinishOrder,
  // which sends it before it reads the order; and the audit of either's result (false: nothing
  // written).
  static pg::Sql OrderDeactivationSql(absl::Time now, OrderId order, absl::string_view url);
  static bool AuditDeactivation(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                AccountId account, absl::string_view url,
                                const pqxx::result& updated);

  // Sends kCertificatesChannel's notification for scope.tenant in `tx`.
  static void NotifyCertificatesChanged(pqxx::dbtransaction& tx, const Scope& scope);
  // After a committed write of scope.tenant's certificates: certificates_changed to this
  // store's own wakers, from the calling thread (the notification reaches them later too).
  void CertificatesChangedHere(const Scope& scope);
  // Every WatchJobs subscription of this store, served by one LISTEN connection
  // (postgres_jobs.cc), and CertificatesChangedHere's way to them. Shared with the wakers, which
  // may outlive the store.
  static std::shared_ptr<WatchHub> NewWatchHub(std::string url);
  const std::shared_ptr<WatchHub> watch_hub_;

  const PostgresStoreOptions options_;
  const Envelope envelope_;
  const std::unique_ptr<PostgresPool> pool_;
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_POSTGRES_STORE_H_
