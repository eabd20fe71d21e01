// Advances one order, one step per call, from whatever state it was left in to a stored
// certificate (valid) or a recorded failure (invalid). The order is a state machine the work
// engine drives (an `order_step` job per order, docs/DESIGN.md "Work engine"): each call looks
// at the CA's status and does what it allows without waiting (create the order at the CA and
// answer its challenges; finalize; download and store the certificate; clean up), records each
// transition in the store, and says when to look again while the CA works. No call sleeps
// waiting for a CA. The CA's own order status decides what to do next, so a replica that dies
// anywhere leaves an order another replica's step resumes: nothing is finalized twice (finalize
// is sent only while the CA says "ready"), and an issued certificate is always downloaded and
// stored. Writes carry the job's lease (its fencing token): a replica that lost the job cannot
// commit over the new owner. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ORDER_RUNNER_H_
#define ACMEVAULT_SERVICE_ORDER_RUNNER_H_

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
#include "acme/client.h"
#include "acme/http.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "service/account_keys.h"
#include "service/ca_limits.h"
#include "service/metrics.h"
#include "service/published_answers.h"
#include "storage/store.h"

namespace acmevault::service {

// FAILED_PRECONDITION naming `account`, marked hijacked (Account::hijacked_at): the attacker
// holds it, so the service issues nothing under it and uses it for nothing until
// AccountService.RespondToCompromise opens a new account (service/accounts.h).
absl::Status HijackedAccountError(const storage::Account& account);

// The job that deactivates one authorization of the ledger at the CA (subject the
// authorization's id, CA the account's directory): scheduled for a deactivation after issuance
// the CA failed, and by the policy sweep (service/policy_scheduler.h); run by AccountManager.
inline constexpr char kDeactivateAuthorizationJob[] = "deactivate_authorization";

// One AcmeClient per CA directory, created on first use; shares one transport. Thread-safe.
class AcmeClients {
 public:
  struct Options {
    acme::CurlTransportOptions transport;
    // When set (tests), used instead of a CurlTransport built from `transport`. Borrowed.
    acme::HttpTransport* transport_instance = nullptr;
    // Applied to every client (directory_url and transport are filled in).
    acme::AcmeClientOptions client;
  };
  static absl::StatusOr<std::unique_ptr<AcmeClients>> Create(Options options);
  // Borrowed; lives as long as this object.
  absl::StatusOr<acme::AcmeClient*> For(const std::string& directory_url);

 private:
  explicit AcmeClients(Options options) : options_(std::move(options)) {}
  const Options options_;
  std::unique_ptr<acme::HttpTransport> owned_transport_;
  acme::HttpTransport* transport_ = nullptr;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<acme::AcmeClient>> clients_ ABSL_GUARDED_BY(mu_);
};

// Publishes dns-01 TXT records (RFC 8555 §8.4). Implementations: RFC 2136 (production), the
// local stack's challtestsrv (tests).
class Dns01Solver {
 public:
  virtual ~Dns01Solver() = default;
  // `name` is the identifier without "*." (the record is _acme-challenge.<name>).
  virtual absl::Status Publish(absl::string_view name, absl::string_view txt_value) = 0;
  virtual absl::Status Remove(absl::string_view name, absl::string_view txt_value) = 0;
};

// The job that deactivates, at the CA, the ephemeral account of an order that ended (subject
// the account id, CA its directory): scheduled when the order's last step could not; run by
// OrderRunner::CloseEphemeralAccount (the issuer registers it).
inline constexpr char kDeactivateEphemeralAccountJob[] = "deactivate_ephemeral_account";

enum class ChallengePreference { kHttp01, kDns01 };

struct OrderJob {
  storage::Scope scope;
  // The order's job lease (storage::Lease::job set): what every write presents.
  storage::Lease lease;
  // Failed steps in a row so far (the job's attempts): a failed download is tried again soon
  // kDownloadRetries times before the order waits for the engine's backoff or ends.
  int failed_attempts = 0;
  // The engine kept the job on this replica since its last step (JobRun::kept): the lease,
  // and so the order as that step left it, is unchanged, and the step may go on from what it
  // kept in memory instead of loading the order again.
  bool kept = false;
  // The caller runs OrderStepResult::unrecorded before the order leaves this replica's memory
  // (the engine does: JobOutcome::SoonAt's `unkept`), so a step may leave the processing state
  // unwritten after finalize for its next step here to record with the certificate. False:
  // every step writes what it learned before it returns.
  bool defers_writes = false;
};

// What one step did with the order.
struct OrderStepResult {
  enum class Kind {
    kFinished,  // the order is terminal: `order` is its row
    kWaiting,   // the CA is working (validating, issuing): step again at `at`
    kStopped,   // a passing failure (`why`) stopped the step; the order stays as it is
    // The order waits for the CA's limits, not its work: a rateLimited hold (any replica's),
    // the account's empty budget, or the CA kept it processing past the timeout (stalled). No
    // request went to the CA for it; step again at `at`. `why` (RESOURCE_EXHAUSTED with the
    // time as a problem's retry_after, or UNAVAILABLE for a stall) is for waiting callers.
    kHeld,
  };
  Kind kind = Kind::kFinished;
  storage::Order order;  // as the step left it
  // kWaiting: when to look again (the CA's Retry-After, else the poll schedule). kStopped: the
  // CA's Retry-After, or soon for a download tried again; InfinitePast for the engine's backoff.
  // kHeld: when the hold passes, the budget has a token, or a stalled order is looked at again.
  absl::Time at = absl::InfinitePast();
  absl::Status why;
  // kStopped: the step will be tried again soon on its own (a failed download), so waiting
  // callers need not hear of it yet.
  bool quiet = false;
  // kFinished with a certificate: the stored certificate. The step then also completed the
  // order's job in the same transaction (OrderStore::FinishOrder): nothing is left to record.
  std::optional<storage::Certificate> certificate;
  // kWaiting, with OrderJob::defers_writes: the write the step left in memory for its next
  // step here (the order's processing state after finalize), which the caller must make before
  // the order leaves this replica's memory (a reschedule through the store, a shutdown).
  std::function<absl::Status()> unrecorded;
  // kWaiting: drops what the step left in memory for its next step here (the loaded order,
  // account, tenant, ledger and the opened key), which the caller calls when the job will not
  // run here again under this lease (the engine: JobOutcome::SoonAt's `unkept`, after
  // `unrecorded`). Without it that state stayed up to a minute for each order whose job went
  // back to the store: about 5 KB of memory per order waiting at the CA.
  std::function<void()> forget;
};

class OrderRunner {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::OrderStore* orders = nullptr;
    storage::AccountStore* accounts = nullptr;
    AccountKeys* keys = nullptr;  // Signs with the account's active key (vault or token).
    storage::AuthorizationStore* authorizations = nullptr;
    storage::ChallengeStore* challenges = nullptr;  // HTTP-01 answers for the responder.
    // Borrowed; may be null: the answers published here, which this replica's responder serves
    // from memory (added once stored, removed before the store's are).
    PublishedAnswers* published = nullptr;
    storage::JobStore* jobs = nullptr;              // Proves the job lease before finalize.
    AcmeClients* clients = nullptr;
    Dns01Solver* dns01 = nullptr;          // Borrowed; may be null (then dns-01 is refused).
    Metrics* metrics = nullptr;            // Borrowed; may be null.
    const Clock* clock = Clock::Real();
    // The job lease's duration (ProveLease renews it for this long right before finalizing an
    // order a step found ready already).
    absl::Duration lease_duration = absl::Minutes(1);
    // While the CA works, the next look comes `poll_first_delay` after the step that started the
    // wait (answering the challenges, finalize), then after as long again as has passed since
    // (exponential backoff), at most `poll_max_delay` apart. A CA's Retry-After always wins.
    absl::Duration poll_first_delay = absl::Milliseconds(10);
    absl::Duration poll_max_delay = absl::Seconds(10);
    // Borrowed; required: the CA's holds and the accounts' budgets, shared by every replica.
    storage::CaLimitStore* limits = nullptr;
    // The CA limits (service/ca_limits.h): before newOrder, the account's new-order budget and
    // the tenant's duplicate-certificate budget for the identifier set; before an ephemeral
    // account's newAccount, the fleet's new-account budget at the CA.
    CaLimitsByDirectory ca_limits;
    // An order the CA keeps processing this long after finalize is set aside as stalled
    // (storage::OrderStore::MarkOrderStalled): new requests for its names no longer join it,
    // and it is looked at again every `stalled_look_interval` (from its stored URL; never
    // finalized again) until the CA issues or gives up.
    absl::Duration processing_timeout = absl::Hours(1);
    absl::Duration stalled_look_interval = absl::Hours(1);
  };
  // INVALID_ARGUMENT naming a missing collaborator, a non-positive poll delay, timeout or look
  // interval, or CA limits that are not valid (CaLimitsByDirectory::Validate).
  static absl::StatusOr<std::unique_ptr<OrderRunner>> Create(Options options);

  // One step of the order of `job.lease` (see the class comment). Errors: FAILED_PRECONDITION
  // when the lease was lost (another replica owns the order now); a store's error when it could
  // not record a transition (the order stays where it was). CA errors are results: a permanent
  // one marks the order invalid first (kFinished), a passing one leaves it (kStopped).
  absl::StatusOr<OrderStepResult> Step(const OrderJob& job);

  // What a step's first load admits with it (storage::StepAdmission): the budgets of the
  // newOrder the step would send for what was loaded, as Step asks LoadOrderStep for them. For
  // storage::NewOrder::first_step.
  storage::StepAdmission FirstStepAdmission();
  // The first step's load made with a new order whose job this replica took as it made it
  // (storage::CreateOrderResult::first_step; `scope` the job's, as its steps run under):
  // that step, when it runs here under the claim's lease, goes on from it instead of loading
  // the order. Given before the job may run (Engine::Adopt). Kept at most kLoadedKept; the
  // admission's tokens of one never taken go back.
  void Preload(const storage::Scope& scope, const storage::ClaimedJob& claimed,
               storage::OrderStepState loaded);
  // Orders whose loaded state is in memory here (preloaded, or left by a waiting step).
  size_t loaded_in_memory() const;

  // Ephemeral-account mode (docs/flows.md, "Ephemeral accounts"): closes the ephemeral account
  // `account` once its order ended. Registered at the CA: deactivated there (RFC 8555 §7.3.6)
  // with its own key, then recorded deactivated (an answer that it is unusable already counts
  // as done), and its authorizations still outstanding in the ledger recorded deactivated. Never registered: asked at the CA by its key first (newAccount
  // onlyReturnExisting: a lost answer may have registered it), then closed. OK, changing
  // nothing, for an account that is not ephemeral or is closed already. A CA or transport
  // error is returned (the caller retries: a kDeactivateEphemeralAccountJob); nothing is
  // forgotten. Counted in acmevault_ephemeral_accounts_total.
  absl::Status CloseEphemeralAccount(const storage::Scope& scope, storage::AccountId account);

  // When a step that found the CA still working on the order (last transition at
  // `phase_start`) looks again: the CA's `retry_after` when given, else the poll schedule.
  absl::Time NextLook(absl::Time phase_start, std::optional<absl::Time> retry_after) const;

  // Failed downloads tried again soon before the order waits for the engine's backoff (or ends,
  // when asking again cannot help), and the pause before each.
  static constexpr int kDownloadRetries = 2;
  static constexpr absl::Duration kDownloadRetryPause = absl::Seconds(1);

 private:
  // The challenge answers a step published, kept here until the order ends so that the step
  // that ends it removes them without asking the CA again, and later steps know the CA is
  // validating. A cache: a step on another replica (or after a restart) asks the CA instead.
  struct Answers {
    std::vector<std::string> http_tokens;
    std::vector<std::pair<std::string, std::string>> dns_records;  // name, TXT value
    absl::Time answered_at;
  };
  // How long answers are kept for an order no step here ends (another replica took it over).
  static constexpr absl::Duration kAnswersKept = absl::Hours(1);
  struct Context;
  // What a step that waits for the CA leaves for the next one on this replica under the same
  // lease (OrderJob::kept): the loaded order, account, tenant, ledger and the opened key. Or
  // the first step's load made with the order (Preload), for its first run here.
  struct Loaded {
    int64_t fencing_token = 0;
    absl::Time at;  // when it was left
    storage::Order order;
    storage::Account account;
    storage::Tenant tenant;
    std::vector<storage::Authorization> authorizations;
    std::optional<SigningKey> key;
    bool processing_unrecorded = false;
    // Preload's: taken by the job's first run (not kept), with the load's admission and why
    // the loaded key did not open.
    bool first = false;
    storage::Scope scope;
    absl::Status key_status;
    std::optional<storage::CaAdmission> admission;
    std::vector<storage::CaBudget> admission_budgets;
  };
  // How long a step's loaded state is kept for a next step that may never come here (the engine
  // rescheduled the job through the store instead): longer than any engine's keep_for.
  static constexpr absl::Duration kLoadedKept = absl::Minutes(1);

  explicit OrderRunner(Options options) : options_(options) {}
  void Remember(const Context& ctx);
  std::optional<Answers> Recall(const storage::Order& order);
  void Forget(const storage::Order& order);
  // Keeps a waiting step's state for the next step under the same lease; takes it back; drops
  // it (OrderStepResult::forget) when that step will not come here.
  void KeepLoaded(Context& ctx);
  void DropLoaded(storage::TenantId tenant, storage::OrderId order, int64_t fencing_token);
  std::optional<Loaded> TakeLoaded(const OrderJob& job);
  // A load as a step goes on from it, its key opened (at: now).
  Loaded Unpack(storage::OrderStepState loaded);
  // Stores `loaded` for its order, dropping what was left longer than kLoadedKept ago.
  void PutLoaded(Loaded loaded);
  // The tokens of the admissions of loads never taken, given back.
  void ReturnUntaken(std::vector<Loaded> dropped);
  absl::StatusOr<OrderStepResult> StepLoaded(Context& ctx);
  // The order's ephemeral account, still pending: registered at the CA with its stored key
  // (terms agreed, no contact; bound with the tenant's kept EAB key when the CA requires
  // External Account Binding, service/eab.h) and its URL recorded. FAILED_PRECONDITION when the
  // CA requires EAB and the tenant keeps no key for it; RESOURCE_EXHAUSTED
  // (HeldUntil), with nothing sent, when the fleet's new-account budget at the CA is spent.
  absl::Status RegisterEphemeral(Context& ctx);
  // After a step that ended the order: its ephemeral account closed (CloseEphemeralAccount),
  // or a job scheduled to retry that.
  void EndEphemeral(Context& ctx);
  absl::Status AnswerAuthorizations(Context& ctx, const acme::Order& order);
  // True when the CA no longer needs an answer to the `type` challenge of the authorization:
  // it is valid, or the challenge is processing or valid.
  bool ChallengeAnswered(Context& ctx, const acme::Order& order, const std::string& authz_url,
                         const std::string& type);
  absl::Status Complete(Context& ctx, const acme::Order& order);
  // Before newOrder: the order's wait when a CA hold (any replica's), the account's empty
  // new-order budget or the identifier set's empty duplicate-certificate budget keeps it from
  // being sent now; nullopt when it may be sent (a token taken from each: their buckets in
  // *taken, for GiveBackBudgetTokens).
  absl::StatusOr<std::optional<OrderStepResult>> HeldBeforeNewOrder(
      Context& ctx, std::vector<storage::CaBudget>* taken);
  // For LoadOrderStep's admission (storage::StepAdmission): the budgets of the order's newOrder
  // when the step that loaded `loaded` will send one, else nullopt.
  std::optional<std::vector<storage::CaBudget>> AdmissionBudgets(
      const storage::OrderStepState& loaded) const;
  // The load's admission, when the step ended without using it: its tokens go back.
  void ReturnUnusedAdmission(Context& ctx);
  // After newOrder failed with `s`: a CA that answered with a problem made no order, so the
  // tokens taken for it (`taken`) go back to their buckets. A request whose fate is unknown (no
  // answer, an answer that is not a problem document) keeps its tokens spent.
  void GiveBackBudgetTokens(Context& ctx, const std::vector<storage::CaBudget>& taken,
                            const absl::Status& s);
  // An order that reached the CA ended with no certificate from it: the identifier set's
  // duplicate-certificate token goes back (the CA counts certificates, not orders).
  void GiveBackDuplicateToken(Context& ctx);
  // Gives a token back to each of `taken` (a failure is logged).
  void ReturnBudgetTokens(Context& ctx, const std::vector<storage::CaBudget>& taken);
  void ReturnBudgetTokens(const storage::Scope& scope, storage::AccountId account,
                          storage::OrderId order, const std::vector<storage::CaBudget>& taken);
  // After a CA answer `s` to `request`: a rateLimited answer with a Retry-After is stored as a
  // hold for every replica (a failure to store it is logged; the step goes on).
  void RecordHold(Context& ctx, storage::CaRequest request, const absl::Status& s);
  // A fenced write of the job's lease (renewed), right before finalizing an order found ready.
  absl::Status ProveLease(Context& ctx);
  // The order's challenge answers, to remove once it ended: as published here, else as the
  // CA's authorizations name them.
  Answers AnswersOf(Context& ctx, const acme::Order& order);
  // Removes the order's challenge answers once it ended without a certificate; only while the
  // job is still this step's.
  void Cleanup(Context& ctx, const acme::Order& order);

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<std::pair<storage::TenantId, storage::OrderId>, Answers> answers_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<storage::TenantId, storage::OrderId>, Loaded> loaded_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ORDER_RUNNER_H_
