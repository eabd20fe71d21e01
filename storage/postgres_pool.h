// PostgresPool: a bounded pool of libpqxx connections and the one place that runs a
// transaction, retries it when that is safe, and turns libpqxx exceptions into absl::Status.
// Internal to storage/ (PostgresStore and Migrate use it); nothing outside sees libpqxx.
//
// Retry rule: a transaction is re-run from the start, on a fresh connection where needed, when
// it failed before COMMIT with a serialization failure (40001), a deadlock (40P01), a lost or
// refused connection, a server that is starting or shutting down (57P01-57P03), or a server
// that no longer takes writes (25006: an old primary after a fail-over). Such a transaction did
// not commit, so re-running it is safe. libpq's own errors (no SQLSTATE: "server closed the
// connection unexpectedly" while libpq still took the connection for open) are lost
// connections. A connection that failed with UNAVAILABLE is closed, never pooled again, and the
// idle ones with it; a new one is opened through the URL, so a libpq multi-host URL with
// target_session_attrs=read-write reaches whichever host is the primary now. A connection lost
// during COMMIT, or any error there but the server's own refusal, leaves the outcome unknown:
// that is UNAVAILABLE "commit outcome unknown" and is never re-run here. Between attempts the
// pool waits on its Clock: 10 ms doubling to at most 500 ms, each wait plus a jitter below
// 10 ms drawn from one generator seeded when the pool is created.
#ifndef ACMEVAULT_STORAGE_POSTGRES_POOL_H_
#define ACMEVAULT_STORAGE_POSTGRES_POOL_H_

#include <pqxx/pqxx>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "storage/types.h"

namespace acmevault::storage {

// The name of the statement, prepared on every connection, that confines a transaction to a
// tenant (TxOptions::tenant). Store statement names must differ from it.
inline constexpr char kSetTenantStatement[] = "av_set_tenant";

// What a pool's transaction throws out of the statement that brought its set-up's rows back
// when TxOptions::check_first refused them. Run returns the status as it is.
class SetUpRefused final : public std::exception {
 public:
  explicit SetUpRefused(absl::Status status) : status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }
  const char* what() const noexcept override { return "the transaction's set-up refused it"; }

 private:
  absl::Status status_;
};

// The transactions PostgresPool::Run gives its bodies. Fewer round trips than libpqxx's own
// pqxx::work:
// - the opening (BEGIN and the transaction's set-up, "EXECUTE <statement prepared on the
//   connection>('<tenant>')") is sent at once, or, when deferred, with the first statements
//   the transaction sends (Send, the pipelines of pg::Together, tx.exec), in their round trip;
//   a body that sends none opens it just before COMMIT;
// - statements whose results nobody reads can travel with COMMIT (SendWithCommit).
// Commits and aborts as pqxx::work, and a connection lost during COMMIT is an in_doubt_error
// as there. A deferred opening is sent only through this class: a statement sent past it
// (tx.exec_prepared, tx.exec_params, a pqxx::pipeline of its own) must call Open() first, or
// it runs outside the transaction. storage/postgres_rows.h's helpers do.
class PooledTransaction final : public pqxx::internal::basic_transaction {
 public:
  // `opening`: simple-query texts, BEGIN first. `check` (may be empty) is called with the
  // last opening statement's rows when they arrive; a non-OK status is thrown as SetUpRefused
  // before any later statement's result is given out.
  PooledTransaction(pqxx::connection_base& connection, std::vector<std::string> opening,
                    bool deferred, std::function<absl::Status(const pqxx::result&)> check);
  ~PooledTransaction() noexcept override;

  // Sends `statements` (simple-query texts: values quoted) in one round trip, after the
  // opening if it is still unsent, and returns their results in order. The first that fails
  // stops the rest; its error is thrown.
  std::vector<pqxx::result> Send(const std::vector<std::string>& statements);
  // Sends the opening now if it is still unsent.
  void Open();
  bool opened() const { return opened_; }
  // `sql` (simple-query text: values quoted, statements separated by ";") runs in COMMIT's
  // round trip, just before COMMIT, after what earlier calls sent. When it fails, nothing
  // commits, and commit() throws its error.
  void SendWithCommit(absl::string_view sql);
  // The opening, when still unsent at commit(), goes in COMMIT's round trip before what
  // SendWithCommit queued, and `check` is not called: for a body whose statements sent with
  // COMMIT refuse for themselves (raise) whatever the set-up would refuse. One round trip for
  // the whole transaction.
  void OpenWithCommit() { open_with_commit_ = true; }

 private:
  void do_begin() override;
  pqxx::result do_exec(const char query[]) override;
  void do_commit() override;
  void do_abort() override;
  void RollBackQuietly();
  // Checks the opening's last result (`check`); throws SetUpRefused when it refuses.
  void CheckOpening(pqxx::result first);

  const std::vector<std::string> opening_;
  const bool deferred_;
  const std::function<absl::Status(const pqxx::result&)> check_;
  bool opened_ = false;
  bool open_with_commit_ = false;
  std::string with_commit_;
};

struct PostgresPoolOptions {
  // libpq connection URL, e.g. "postgresql://acmevault@127.0.0.1:5432/acmevault". The password
  // may be in the URL or come from PGPASSFILE; it is never logged or echoed in errors.
  std::string url;
  // At most this many connections are open; each opens on first need and is kept.
  int size = 8;
  // How long a caller waits for a free connection before UNAVAILABLE.
  absl::Duration acquire_timeout = absl::Seconds(5);
  // How long a transaction keeps being re-run after retryable failures (see above) before its
  // last error is returned. Covers a PostgreSQL restart or fail-over.
  absl::Duration retry_budget = absl::Seconds(30);
  // Where the retry loop reads "now" (for retry_budget) and sleeps between attempts. Borrowed;
  // must outlive the pool. Only the retry loop uses it: waiting for a free connection
  // (acquire_timeout) is real time.
  const Clock* clock = Clock::Real();
  // Seed of the backoff jitter. Unset: drawn once from std::random_device by Create.
  std::optional<uint64_t> jitter_seed;
  // The server ends a session of the pool that sits idle inside a transaction this long
  // (idle_in_transaction_session_timeout), so a replica stopped mid-transaction (SIGSTOP, a
  // frozen VM, a cut network) frees its locks: the claims' advisory lock, which every replica's
  // claims and new orders take, a tenant's audit head, rows. The service's transactions wait on
  // their client for milliseconds between round trips. A wait for a lock gives up after half of
  // it (lock_timeout; retried as UNAVAILABLE, SQLSTATE 55P03): a stopped replica's session that
  // waited in a lock's queue would otherwise take the lock once its holder's session was ended
  // and, its client stopped too, hold it for another timeout, and so on through its sessions.
  // Zero: never, and no lock timeout (the server's settings).
  absl::Duration idle_in_transaction_timeout = absl::Seconds(30);
  // Prepared statements (name, SQL) every connection knows: each is sent to the server on its
  // first use on a connection (libpqxx prepares lazily) and run by name after that.
  std::vector<std::pair<std::string, std::string>> prepared_statements;
};

// Thread-safe.
class PostgresPool {
 public:
  // INVALID_ARGUMENT for an empty URL, a size below 1, a null clock or a negative idle timeout.
  // Connects lazily.
  static absl::StatusOr<std::unique_ptr<PostgresPool>> Create(PostgresPoolOptions options);

  struct TxOptions {
    // Confines the transaction to this tenant (SET LOCAL acmevault.tenant_id) before its
    // statements, by a statement prepared on every connection, run by SQL EXECUTE just after
    // BEGIN ("BEGIN; EXECUTE av_set_tenant('<id>')"): planned once per connection. Both travel
    // with the first statements of the transaction (PooledTransaction), in their round trip,
    // unless `snapshot` is set.
    std::optional<TenantId> tenant;
    // REPEATABLE READ, READ ONLY: one snapshot for the whole transaction (said in its BEGIN).
    bool snapshot = false;
    // With `tenant`: a prepared statement (PostgresPoolOptions::prepared_statements) run
    // instead of the pool's own, with the tenant id as its one parameter. It must set the
    // tenant itself, as pg::kTenantFirst does, and so does more in the same round trip.
    // Empty: none.
    std::string first_prepared;
    // With `tenant`: called with the set-up's rows when they come back, with the first
    // statements the body sends (the set-up is deferred to their round trip), or before COMMIT
    // if it sends none (a snapshot's: before the body). A non-OK status ends the transaction:
    // nothing of it commits, and Run returns that status, whatever the body returns. So the body
    // may run although the set-up refuses, but none of its statements' results reach it.
    std::function<absl::Status(const pqxx::result&)> check_first;
  };
  using Body = std::function<absl::Status(pqxx::dbtransaction&)>;
  // One statement outside a transaction block (PostgreSQL runs it as its own transaction).
  using StatementBody = std::function<absl::Status(pqxx::nontransaction&)>;

  // Runs `body` in a transaction and commits if it returns OK; a non-OK status aborts the
  // transaction and is returned as is. libpqxx exceptions are mapped (see class comment and
  // StatusOfCurrentException). `op` names the operation in error messages. `body` may run
  // more than once; it must write its results only through its captures and overwrite them.
  absl::Status Run(absl::string_view op, const TxOptions& options, const Body& body);

  // Runs `body`, which sends one statement, without BEGIN or COMMIT: one round trip, for reads
  // that need no more. Nothing confines it to a tenant: a statement on tenant rows sets the
  // tenant itself (see pg::kSetTenantFirst). Retries and errors as Run.
  absl::Status RunStatement(absl::string_view op, const StatementBody& body);

  // Connections currently open (idle or in use). For tests.
  int open_connections() const;

 private:
  PostgresPool(PostgresPoolOptions options, uint64_t jitter_seed)
      : options_(std::move(options)), jitter_(jitter_seed) {}

  absl::StatusOr<std::unique_ptr<pqxx::connection>> Acquire(bool* retryable);
  void Release(std::unique_ptr<pqxx::connection> connection);
  // Closes every idle connection: after one was found broken, the others likely are too.
  void DiscardIdle();
  // How long to wait before the next attempt: `backoff` plus a jitter below 10 ms.
  absl::Duration WithJitter(absl::Duration backoff);
  // Run and RunStatement: `attempt` runs one try on a connection; retried as the class says.
  absl::Status RunAttempts(absl::string_view op,
                           const std::function<absl::Status(pqxx::connection&)>& attempt);

  const PostgresPoolOptions options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 jitter_ ABSL_GUARDED_BY(mu_);
};

// Maps the libpqxx (or other) exception being handled, inside a catch block, to a Status:
// SetUpRefused -> its status;
// unique or exclusion violation -> ALREADY_EXISTS; foreign key violation -> NOT_FOUND (the row
// referred to is absent, or in another tenant); check, not-null or data errors ->
// INVALID_ARGUMENT; 42501 (including a row-level security WITH CHECK failure) ->
// PERMISSION_DENIED; 55000 (the schema's state-machine triggers) -> FAILED_PRECONDITION;
// serialization failure or deadlock -> ABORTED; lost connection (libpq's own errors, which carry
// no SQLSTATE, among them), server starting or stopping, server no longer taking writes ->
// UNAVAILABLE; commit outcome unknown -> UNAVAILABLE; anything else -> INTERNAL. The message is
// `op`, then the first line of the server's message (never its DETAIL, which may quote row
// values). Sets *retryable for the cases the class comment lists.
absl::Status StatusOfCurrentException(absl::string_view op, bool* retryable);

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_POSTGRES_POOL_H_
