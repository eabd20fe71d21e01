// Certificate issuance for a tenant's hosts: the domain logic behind CertificateService.
//
// Issue validates and normalises the identifiers, refuses names outside the tenant's allow-list
// before any ACME request, returns the current certificate when it is not yet due for renewal,
// otherwise joins the tenant's in-flight order for the same identifiers or creates one together
// with its `order_step` job, and hands that job to the work engine (service/engine.h), which
// advances the order one step per run (OrderRunner::Step) on whichever replica claims it. The
// caller waits, on no worker thread and without polling the store, for the order's completion
// notice (JobNotices: from this replica's handler, or from another replica's job notice) until
// shortly before its deadline (IssueWaitUntil), then answers with the certificate or the order
// handle. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ISSUER_H_
#define ACMEVAULT_SERVICE_ISSUER_H_

#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "crypto/secret.h"
#include "crypto/x509.h"
#include "service/account_keys.h"
#include "service/auth.h"
#include "service/certificate_cache.h"
#include "service/engine.h"
#include "service/job_notices.h"
#include "service/metrics.h"
#include "service/order_runner.h"
#include "service/renewal_policy.h"
#include "storage/store.h"

namespace acmevault::service {

struct IssueRequest {
  std::vector<std::string> identifiers;
  // The host's CSR (PEM or DER), when the request carries one (INVALID_ARGUMENT "csr" when it
  // is there but empty); otherwise the service generates a key of `key_algorithm` (when unset,
  // ECDSA P-256, or the tenant's first allowed algorithm when its policy excludes P-256). The
  // CSR's key and `key_algorithm` must be allowed by the tenant's certificate key policy
  // (INVALID_ARGUMENT, audited "IssueDenied"). A generated key is returned only to the request that created its order, or to
  // its caller repeating that order's idempotency key within storage::kIdempotencyKeyLifetime.
  std::optional<std::string> csr;
  std::optional<crypto::KeyAlgorithm> key_algorithm;
  // The RFC 9773 CertID of the certificate this request renews (the background renewal sets
  // it): stored with a new order, whose newOrder then carries `replaces` when the CA offers
  // renewalInfo. Not part of the public API.
  std::string replaces;
  // At most 200 characters.
  std::string idempotency_key;
  ChallengePreference challenge = ChallengePreference::kHttp01;
  // How long Issue waits for the certificate before answering with the order handle (the order
  // goes on either way); see IssueWaitUntil. `deadline` is the caller's (an RPC deadline,
  // wall-clock time); absl::InfiniteFuture() for a caller that has none and bounds its wait
  // with `max_wait` alone. `max_wait` is the request's wait_seconds: zero means none.
  std::optional<absl::Time> deadline;
  absl::Duration max_wait = absl::ZeroDuration();
  // Order a new certificate even when a current one would do (reissue after a compromise).
  bool force_new = false;
  // When set and true, the caller is gone (RPC cancelled, server shutting down): stop waiting.
  std::function<bool()> cancelled;
};

// When Issue stops waiting, measured on the wall clock whose time is `now`: a second before the
// caller's deadline (so it gets the handle rather than an error), or `default_wait` from now when
// it set none; a positive `max_wait` shortens either. INVALID_ARGUMENT "wait_seconds" when
// `max_wait` is negative.
absl::StatusOr<absl::Time> IssueWaitUntil(const IssueRequest& request, absl::Time now,
                                          absl::Duration default_wait);

struct IssueResult {
  storage::Order order;
  std::optional<storage::Certificate> certificate;
  // The renewal decision for `certificate` (service/renewal_policy.h), when there is one.
  std::optional<RenewalDecision> renewal;
  // PKCS#8 PEM of a service-generated key, for this caller.
  crypto::SecretBytes private_key_pem;
  bool reused = false;
};

// An order as its caller sees it.
struct OrderView {
  storage::Order order;
  // The serial of the order's certificate; empty until the order is valid.
  std::string certificate_serial;
  // The order's job while the order is in flight (open: attempts, last error, next attempt) or
  // once the engine gave up on it (failed_at); unset for an ended order, or without
  // Issuer::Options::jobs.
  std::optional<storage::Job> job;
};

// Which certificate GetCertificate returns: the one with `serial`, or the current one for
// exactly `identifiers` (validated and normalised first). INVALID_ARGUMENT "selector" when
// neither is set.
struct CertificateSelector {
  std::optional<std::string> serial;
  std::optional<std::vector<std::string>> identifiers;
};

// The job kind that advances an order; its subject is the order id.
inline constexpr char kOrderStepJob[] = "order_step";

class Issuer {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::AccountStore* accounts = nullptr;
    storage::OrderStore* orders = nullptr;
    storage::CertificateStore* certificates = nullptr;
    storage::AuditLog* audit = nullptr;
    OrderRunner* runner = nullptr;
    // Makes the key of each order's account for a tenant in ephemeral-account mode (its policy's
    // ephemeral_accounts). Borrowed; may be null, and then such a tenant's orders are
    // FAILED_PRECONDITION.
    AccountKeys* keys = nullptr;
    Metrics* metrics = nullptr;  // Borrowed; may be null.
    // Runs the orders' jobs; Create registers the order_step handler on it, so it must not be
    // started yet. The issuer stops it when destroyed (its handler uses the issuer).
    Engine* engine = nullptr;
    // Where callers wait for their order; the engine's on_notice must feed it, so that an order
    // finished on another replica wakes callers here.
    JobNotices* notices = nullptr;
    // Borrowed; optional: GetOrder reads the order's job (attempts, last error, next attempt,
    // give-up) from it. Only GetOrder does: the issuing path reads no job.
    storage::JobStore* jobs = nullptr;
    // "Now" for certificate lifetimes (renewal windows).
    const Clock* clock = Clock::Real();
    // What waits are measured on. A caller's deadline is wall-clock time, so this is the real
    // clock; tests that fake `clock` keep this one real, since the caller really waits for
    // orders that run on the engine's threads.
    const Clock* wait_clock = Clock::Real();
    // Generates the certificate key of a request without a CSR; crypto::PrivateKey::Generate
    // when null. Called only once the order is known to be new (tests count the calls).
    std::function<absl::StatusOr<crypto::PrivateKey>(crypto::KeyAlgorithm)> generate_key;
    // How long Issue waits when the caller set no deadline.
    absl::Duration default_wait = absl::Seconds(25);
    // The longest any Issue waits, whatever the caller's deadline: then it answers with the
    // order handle, so one caller's long deadline holds an RPC thread no longer than this.
    absl::Duration max_wait = absl::Seconds(60);
    // Names this replica in the job leases it takes with new orders.
    std::string replica_id = "replica";
    // The creator's lease on a new order's job, until it hands the job to the engines (should be
    // the engine's lease duration).
    absl::Duration lease_duration = absl::Minutes(1);
    // How long RenewalOf keeps a tenant's policy: a policy change shows in the renewal hints
    // of GetCertificate after at most this long (IssueCertificate reads the policy anew).
    absl::Duration policy_cache_ttl = absl::Seconds(10);
    // Where GetCertificate's answers are kept (it must follow the store's certificate changes:
    // CertificateCache::Follow). Borrowed; optional: without it every read asks the store.
    CertificateCache* certificate_cache = nullptr;
  };
  // INVALID_ARGUMENT naming a missing collaborator; the engine's error when the handlers cannot
  // be registered (it was started, or has one for order_step or
  // deactivate_ephemeral_account).
  static absl::StatusOr<std::unique_ptr<Issuer>> Create(Options options);
  // Stops the engine (Engine::Stop: unstarted jobs released, running steps finished).
  ~Issuer();

  // See the class comment. Errors: INVALID_ARGUMENT naming the field; PERMISSION_DENIED for an
  // identifier outside the allow-list; ALREADY_EXISTS when the idempotency key binds another
  // identity's order; FAILED_PRECONDITION when the tenant has no usable account; UNAVAILABLE
  // or RESOURCE_EXHAUSTED when the order's last step stopped on a CA outage or limit (the order
  // stays and is retried).
  absl::StatusOr<IssueResult> Issue(const Caller& caller, const IssueRequest& request);
  // Issue's first half, for callers that start many orders and wait for them together (the
  // compromise playbook): the reusable certificate, or the order joined or created and handed
  // to the engine, without waiting. The request's wait fields are ignored.
  struct Started {
    std::optional<IssueResult> reused;
    storage::Order order;
    bool created = false;
  };
  absl::StatusOr<Started> Start(const Caller& caller, const IssueRequest& request);

  // Reads for hosts and admins of the caller's tenant (another tenant's rows are NOT_FOUND).
  absl::StatusOr<OrderView> GetOrder(const Caller& caller, storage::OrderId id);
  absl::StatusOr<storage::Certificate> GetCertificate(const Caller& caller,
                                                      const CertificateSelector& selector);
  // When the caller's tenant renews `certificate`: the decision IssueCertificate's reuse and
  // the background renewal make (DecideRenewal, with its stored ARI window). The tenant's
  // policy is read at most once per `policy_cache_ttl` per tenant, so a read (GetCertificate)
  // costs no second transaction. nullopt for a superseded certificate (renewed already) or
  // when the policy cannot be read.
  std::optional<RenewalDecision> RenewalOf(const Caller& caller,
                                           const storage::Certificate& certificate);
  // `page.max_results` is the caller's page size (see CheckPage).
  absl::StatusOr<storage::Page<storage::Certificate>> ListCertificates(
      const Caller& caller, const storage::CertificateFilter& filter,
      const storage::PageRequest& page);

  // Waits until `order` is terminal or `until` (on `wait_clock`), woken by the order's
  // notices; returns its row as it is then.
  absl::StatusOr<storage::Order> WaitForOrder(const storage::Scope& scope, storage::OrderId order,
                                              absl::Time until,
                                              const std::function<bool()>& cancelled = nullptr);

  // The order_step handler (registered by Create): one OrderRunner::Step of the job's order.
  JobOutcome StepOrder(const JobRun& run);
  // The scope an order's steps run under: this replica, for `tenant`.
  storage::Scope StepScope(storage::TenantId tenant) const;
  // The kDeactivateEphemeralAccountJob handler (registered by Create): closes the ephemeral
  // account of an ended order (OrderRunner::CloseEphemeralAccount); a CA or store error is a
  // failed attempt, retried with the engine's backoff.
  JobOutcome CloseEphemeralAccount(const JobRun& run);

 private:
  // A request that passed CheckRequest.
  struct Checked {
    const IssueRequest* request = nullptr;  // Borrowed from Issue's caller.
    std::vector<std::string> identifiers;   // Validated and normalised.
    storage::Tenant tenant;
    // Read with the tenant, in one transaction (storage::CertificateStore::LoadIssueContext).
    std::vector<storage::Account> accounts;
    std::optional<storage::Certificate> current;
    storage::OrderId order_id = 0;       // drawn with them, for the first order made (NewOrder::id)
    std::optional<crypto::CsrInfo> csr;  // None: the service generates the key.
    // The algorithm of the key the service generates (without a CSR): the request's, or the
    // tenant's default (service/key_policy.h); either way one its policy allows.
    crypto::KeyAlgorithm key_algorithm = crypto::KeyAlgorithm::kEcdsaP256;
    absl::Time wait_until;
  };

  explicit Issuer(Options options) : options_(std::move(options)) {}

  // The steps of Issue, in order.
  // Fields, role, identifiers, the tenant's allow-list (a refusal is audited) and the CSR.
  absl::StatusOr<Checked> CheckRequest(const Caller& caller, const storage::Scope& scope,
                                       const IssueRequest& request);
  // The current certificate when it is outside its renewal window and certifies the caller's
  // key; nullopt when a new order is needed.
  absl::StatusOr<std::optional<IssueResult>> FindReusable(const storage::Scope& scope,
                                                          const Checked& checked);
  // The tenant's newest valid account (never an ephemeral one); FAILED_PRECONDITION when it has
  // none. For a tenant in ephemeral-account mode nullopt: each new order gets an account of its
  // own (CreateOrJoinOrder), and the tenant needs none.
  absl::StatusOr<std::optional<storage::Account>> ChooseAccount(const storage::Scope& scope,
                                                                const Checked& checked);
  // An ephemeral account for one new order (docs/flows.md, "Ephemeral accounts"): its key made
  // where the tenant's policy says and stored, active, with the account row (pending) before
  // any CA hears of it; the order's first step registers it with newAccount.
  absl::StatusOr<storage::Account> NewEphemeralAccount(const storage::Scope& scope,
                                                       const storage::Tenant& tenant);
  // A caller's wait on an order: its notices, and the last stop it had heard of (stopped_)
  // when the wait began.
  struct Waiting {
    std::unique_ptr<JobNotices::Watch> watch;
    uint64_t stops_seen = 0;
    // The order was made by this request and its job handed over after the watch began: a
    // look before the first notice would find it as made.
    bool created_here = false;
    // The service key this request made for the order it created (an EC key, made with the
    // order): handed back with the certificate from memory, not read out of the vault.
    std::optional<crypto::PrivateKey> generated_key;
  };
  // Joins the tenant's order in flight for the identifiers, or creates the order row with its
  // job and finalization material (so any replica can finish it) and hands the job to the
  // engine. `waiting`, when given, begins before the job can end or stop.
  // `account` null: the tenant is in ephemeral-account mode, and a new order gets an ephemeral
  // account of its own (one made for an order that was joined instead is closed unused); its
  // order never carries `replaces` (RFC 9773 §5: only the account that holds the replaced
  // certificate may name it). `with_idempotency_key` (the first attempt) also offers the id
  // drawn with the first read (Checked::order_id) for a new order.
  absl::StatusOr<storage::CreateOrderResult> CreateOrJoinOrder(const storage::Scope& scope,
                                                               const Checked& checked,
                                                               const storage::Account* account,
                                                               bool with_idempotency_key,
                                                               Waiting* waiting);
  // After a CreateOrJoinOrder of `spec` whose COMMIT's answer was lost: whether the order it
  // would have made exists, or that cannot be told (then the ephemeral account made for it is
  // kept). A job that transaction leased to this replica as it made it (spec.claim: fencing
  // token 1), which nothing here runs, is given back, so that any replica claims it now rather
  // than when its lease expires; the caller's retry joins the order.
  bool AfterUnknownCreate(const storage::Scope& scope, const storage::NewOrder& spec);
  // A certificate key for a request without a CSR and the CSR for it.
  struct GeneratedKey {
    crypto::PrivateKey key;
    std::string csr_der;
  };
  absl::StatusOr<GeneratedKey> GenerateKey(const Checked& checked);
  // For the new order of a request without a CSR whose key was not made before the order (an
  // RSA key): generates it, builds the CSR and stores both with the order
  // (OrderStore::AttachOrderMaterial).
  absl::Status AttachGeneratedKey(const storage::Scope& scope, const storage::Lease& lease,
                                  const Checked& checked);
  // Waits for the order until the request's wait ends and returns its row; the CA's rate limit
  // or an outage that stopped its last step is returned as that error instead.
  absl::StatusOr<storage::Order> WaitForResult(const storage::Scope& scope, storage::OrderId order,
                                               Waiting& waiting, const Checked& checked);
  // What the caller gets for the order: the handle, or the certificate (and the key, for the
  // request that made it). ABORTED when a joined order certified a key not the caller's.
  // `generated_key`: the key this request made for the order, if it did.
  absl::StatusOr<IssueResult> Finish(const storage::Scope& scope, storage::Order order,
                                     const Checked& checked, bool created_here,
                                     const crypto::PrivateKey* generated_key);

  // Every key of the tenant's `accounts`, which no certificate may certify.
  std::vector<crypto::PublicKey> AccountPublicKeys(const storage::Scope& scope,
                                                   const std::vector<storage::Account>& accounts);
  // Records `thrown` (clipped) on the order: invalid while the CA cannot have issued yet; left
  // for a later step (INTERNAL) from processing on. Returns the order row, or INTERNAL.
  absl::StatusOr<storage::Order> RecordException(const storage::Scope& scope,
                                                 const storage::Lease& lease,
                                                 std::exception_ptr thrown);
  // Wakes this replica's callers waiting on the order (a step ended it or stopped short).
  void Announce(storage::TenantId tenant, storage::OrderId order);
  // An order a step here ended, as the step left it (with the certificate it stored, if any),
  // so that callers waiting here need not read back what the step just wrote.
  struct Ended {
    storage::Order order;
    std::optional<storage::Certificate> certificate;
    absl::Time at;
  };
  std::optional<Ended> EndedHere(storage::TenantId tenant, storage::OrderId order);
  // How long an ended order is kept for the callers waiting on it (they are woken at once).
  static constexpr absl::Duration kEndedKept = absl::Seconds(30);

  const Options options_;
  absl::Mutex mu_;
  // Why the last step of an order stopped short (a CA rate limit, an outage), for the callers
  // waiting on it here, numbered (stops_) so that a caller hears only of a stop that came
  // while it waited; cleared when a later step gets on.
  struct Stop {
    absl::Status why;
    uint64_t number = 0;
  };
  std::map<storage::OrderId, Stop> stopped_ ABSL_GUARDED_BY(mu_);
  uint64_t stops_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<storage::OrderId, Ended> ended_ ABSL_GUARDED_BY(mu_);
  // ended_'s entries in the order they were made, each with its time: the expired ones are at
  // the front, so forgetting them does not walk the entries still kept.
  std::deque<std::pair<absl::Time, storage::OrderId>> ended_order_ ABSL_GUARDED_BY(mu_);
  // RenewalOf's tenant policies, with when each was read (on `clock`).
  struct CachedPolicy {
    storage::TenantPolicy policy;
    absl::Time read_at;
  };
  std::map<storage::TenantId, CachedPolicy> policies_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ISSUER_H_
