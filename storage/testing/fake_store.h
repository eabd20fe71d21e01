// FakeStore: an in-memory Store for tests of the service. Passes the same conformance suite as
// PostgresStore (storage/testing/store_conformance.h): the same validation, state machines,
// uniqueness rules, tenant confinement, envelope encryption (keys are sealed in memory too, so
// a missing KEK fails the same way) and audit rows.
//
// Differences, by design: one mutex serialises every call (so there are no ABORTED retries and
// no connection errors), and the audit chain's digest is a non-cryptographic 256-bit hash: the
// fake detects an edited or deleted row as PostgreSQL does, not with SHA-256's strength.
//
// Thread-safe. Several FakeStores may share one State (see Reopen), as several replicas share
// one database; job wake-ups (WatchJobs) then reach the wakers of every one of them, called
// in-process by the thread that made the change once it is done. The members are defined by
// concern: fake_store.cc (construction, tenants, identities, challenges, audit, re-wrapping),
// fake_store_accounts.cc, fake_store_key_leases.cc (account key leases),
// fake_store_compromise_runs.cc, fake_store_orders.cc (orders, leases, authorizations),
// fake_store_certificates.cc and fake_store_jobs.cc; State and the helpers they share are in
// fake_store_state.h.
#ifndef ACMEVAULT_STORAGE_TESTING_FAKE_STORE_H_
#define ACMEVAULT_STORAGE_TESTING_FAKE_STORE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "storage/envelope.h"
#include "storage/kek_set.h"
#include "storage/store.h"

namespace acmevault::storage {

class FakeStore final : public Store {
 public:
  struct Options {
    // Borrowed; must outlive the store. Tests pass a common/testing FakeClock.
    const Clock* clock = Clock::Real();
  };

  // The data, shareable between stores.
  struct State;

  // FAILED_PRECONDITION if `keks` is empty, as PostgresStore; INVALID_ARGUMENT for a null
  // clock. Both checks apply to Reopen too.
  static absl::StatusOr<std::unique_ptr<FakeStore>> Create(Options options, KekSet keks);
  // A store over `other`'s data with another KEK set (a restarted replica after rotation).
  static absl::StatusOr<std::unique_ptr<FakeStore>> Reopen(const FakeStore& other,
                                                           Options options, KekSet keks);
  ~FakeStore() override;

  // Transactions so far, as PostgresStore would run them for the same calls (every call but
  // ClaimJobs, CountDueJobs and WatchJobs), for tests that hold a flow to its database work.
  int64_t transactions() const;

  // Test hooks that do what only a database superuser could: change or delete an audit row
  // without fixing the chain. NOT_FOUND if there is no such row.
  absl::Status TamperAuditDetailForTesting(TenantId tenant, int64_t seq, std::string detail);
  absl::Status DeleteAuditRowForTesting(TenantId tenant, int64_t seq);

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
  absl::StatusOr<std::vector<AccountKey>> ListKeys(const Scope& scope,
                                                   AccountId account) override;
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
  absl::StatusOr<Page<AuditRecord>> ListAudit(const Scope& scope,
                                              const PageRequest& page) override;
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

  // StoreHealth: always OK (there is no database to lose).
  absl::Status CheckHealth() override;

 private:
  FakeStore(Options options, Envelope envelope, std::shared_ptr<State> state);

  absl::Time Now() const;

  const Options options_;
  const Envelope envelope_;
  const std::shared_ptr<State> state_;
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_TESTING_FAKE_STORE_H_
