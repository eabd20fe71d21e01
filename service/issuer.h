// Certificate issuance for a tenant's hosts: the domain logic behind CertificateService.
//
// Issue validates and normalises the identifiers, refuses names outside the tenant's allow-list
// before any ACME request, returns the current certificate when it is not yet due for renewal,
// otherwise joins the tenant's in-flight order for the same identifiers or creates one, and runs
// it on a worker thread (never the RPC's), waiting until shortly before the caller's deadline
// (IssueWaitUntil) before answering with the order handle. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ISSUER_H_
#define ACMEVAULT_SERVICE_ISSUER_H_

#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "crypto/secret.h"
#include "crypto/x509.h"
#include "service/account_keys.h"
#include "service/auth.h"
#include "service/order_runner.h"
#include "storage/store.h"

namespace acmevault::service {

struct IssueRequest {
  std::vector<std::string> identifiers;
  // The host's CSR (PEM or DER), when the request carries one (INVALID_ARGUMENT "csr" when it
  // is there but empty); otherwise the service generates a key of `key_algorithm` (ECDSA P-256
  // when unset). A generated key is returned only to the request that created its order, or to
  // its caller repeating that order's idempotency key within storage::kIdempotencyKeyLifetime.
  std::optional<std::string> csr;
  std::optional<crypto::KeyAlgorithm> key_algorithm;
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
  // PKCS#8 PEM of a service-generated key, for this caller.
  crypto::SecretBytes private_key_pem;
  bool reused = false;
};

// An order as its caller sees it.
struct OrderView {
  storage::Order order;
  // The serial of the order's certificate; empty until the order is valid.
  std::string certificate_serial;
};

// Which certificate GetCertificate returns: the one with `serial`, or the current one for
// exactly `identifiers` (validated and normalised first). INVALID_ARGUMENT "selector" when
// neither is set.
struct CertificateSelector {
  std::optional<std::string> serial;
  std::optional<std::vector<std::string>> identifiers;
};

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
    // "Now" for certificate lifetimes (renewal windows).
    const Clock* clock = Clock::Real();
    // What waits are measured on. A caller's deadline is wall-clock time, so this is the real
    // clock; tests that fake `clock` keep this one real, since the caller really waits for
    // orders that run on the worker threads.
    const Clock* wait_clock = Clock::Real();
    // Generates the certificate key of a request without a CSR; crypto::PrivateKey::Generate
    // when null. Called only once the order is known to be new (tests count the calls).
    std::function<absl::StatusOr<crypto::PrivateKey>(crypto::KeyAlgorithm)> generate_key;
    // How long Issue waits when the caller set no deadline.
    absl::Duration default_wait = absl::Seconds(25);
    // The longest any Issue waits, whatever the caller's deadline: then it answers with the
    // order handle, so one caller's long deadline holds an RPC thread no longer than this.
    absl::Duration max_wait = absl::Seconds(60);
    // The most orders of one tenant queued or running on this replica; more are
    // RESOURCE_EXHAUSTED, so one tenant's burst cannot fill the queue everyone shares.
    size_t max_orders_per_tenant = 100;
    // Names this replica in order leases.
    std::string replica_id = "replica";
    int worker_threads = 4;
    absl::Duration lease_duration = absl::Minutes(2);
  };
  // INVALID_ARGUMENT naming a missing collaborator. Starts the worker threads.
  static absl::StatusOr<std::unique_ptr<Issuer>> Create(Options options);
  // Stops taking work: queued orders are handed over (their leases released for another
  // replica to claim at once); running orders finish their current run; then joins the workers.
  ~Issuer();

  // See the class comment. Errors: INVALID_ARGUMENT naming the field; PERMISSION_DENIED for an
  // identifier outside the allow-list; ALREADY_EXISTS when the idempotency key binds another
  // identity's order; FAILED_PRECONDITION when the tenant has no usable account; UNAVAILABLE
  // when the queue is full or the store is down.
  absl::StatusOr<IssueResult> Issue(const Caller& caller, const IssueRequest& request);
  // Runs an order this replica claimed from a replica that stopped (OrderStore::ClaimStaleOrders)
  // from the material stored with it. Returns once the run is queued. An exception on the way
  // is recorded on the order (see RecordException), not thrown.
  absl::Status Resume(const storage::Lease& lease);

  // Reads for hosts and admins of the caller's tenant (another tenant's rows are NOT_FOUND).
  absl::StatusOr<OrderView> GetOrder(const Caller& caller, storage::OrderId id);
  absl::StatusOr<storage::Certificate> GetCertificate(const Caller& caller,
                                                      const CertificateSelector& selector);
  // `page.max_results` is the caller's page size (see CheckPage).
  absl::StatusOr<storage::Page<storage::Certificate>> ListCertificates(
      const Caller& caller, const storage::CertificateFilter& filter,
      const storage::PageRequest& page);

  // Waits until `order` is terminal or `until` (on `wait_clock`): on this replica's run when it
  // runs here, else by watching the store (another replica, or a resumed order).
  void WaitForOrder(const storage::Scope& scope, storage::OrderId order, absl::Time until,
                    const std::function<bool()>& cancelled = nullptr);

 private:
  struct Job {
    OrderJob order;
    std::unique_ptr<crypto::PrivateKey> certificate_key;
    std::shared_ptr<absl::Notification> done;
  };
  // A request that passed CheckRequest.
  struct Checked {
    const IssueRequest* request = nullptr;  // Borrowed from Issue's caller.
    std::vector<std::string> identifiers;   // Validated and normalised.
    storage::Tenant tenant;
    std::optional<crypto::CsrInfo> csr;  // None: the service generates the key.
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
  // The tenant's newest valid account; FAILED_PRECONDITION when it has none.
  absl::StatusOr<storage::Account> ChooseAccount(const storage::Scope& scope);
  // Joins the tenant's order in flight for the identifiers, or creates the order row (with its
  // finalization material, so any replica can finish it) and queues its run. UNAVAILABLE when
  // the queue is full.
  absl::StatusOr<storage::CreateOrderResult> CreateOrJoinOrder(const storage::Scope& scope,
                                                               const Checked& checked,
                                                               const storage::Account& account,
                                                               bool with_idempotency_key);
  // For the new order of a request without a CSR: generates its certificate key (kept in
  // `job`), builds the CSR and stores both with the order (OrderStore::AttachOrderMaterial).
  // Returns the CSR.
  absl::StatusOr<std::string> AttachGeneratedKey(const storage::Scope& scope,
                                                 const storage::Lease& lease,
                                                 const Checked& checked, Job& job);
  // Waits for the order until the request's wait ends and returns its row; the CA's rate limit
  // or an outage that stopped its last run is returned as that error instead.
  absl::StatusOr<storage::Order> WaitForResult(const storage::Scope& scope, storage::OrderId order,
                                               const Checked& checked);
  // What the caller gets for the order: the handle, or the certificate (and the key, for the
  // request that made it). ABORTED when a joined order certified a key not the caller's.
  absl::StatusOr<IssueResult> Finish(const storage::Scope& scope, storage::Order order,
                                     const Checked& checked, bool created_here);

  // Every key of the tenant's accounts, which no certificate may certify.
  std::vector<crypto::PublicKey> AccountPublicKeys(const storage::Scope& scope);
  void Submit(Job job);
  // One of the tenant's orders left this replica (ran or was handed over).
  void Finished(storage::TenantId tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkLoop();
  // Runs one order on a worker; an exception out of the run becomes a failure recorded on the
  // order (RecordException), never the end of the process.
  absl::StatusOr<storage::Order> RunGuarded(const OrderJob& job);
  // Records `thrown` (clipped) on the order: invalid while the CA cannot have issued yet; left
  // for a later run (INTERNAL) from processing on. Returns the order row, or INTERNAL.
  absl::StatusOr<storage::Order> RecordException(const storage::Scope& scope,
                                                 const storage::Lease& lease,
                                                 std::exception_ptr thrown);
  absl::Status ResumeUnguarded(const storage::Scope& scope, const storage::Lease& lease);

  const Options options_;
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  std::map<storage::OrderId, std::shared_ptr<absl::Notification>> running_ ABSL_GUARDED_BY(mu_);
  // Orders queued or running here, per tenant (for max_orders_per_tenant).
  std::map<storage::TenantId, size_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  // Why the last run of an order stopped short (a CA rate limit, an outage), for the callers
  // waiting on it; cleared when a run ends the order.
  std::map<storage::OrderId, absl::Status> stopped_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ISSUER_H_
