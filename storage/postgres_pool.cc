#include "storage/postgres_pool.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace acmevault::storage {
namespace {

// The server's primary message: first line, without libpq's severity prefix.
std::string PrimaryMessage(const char* what) {
  absl::string_view text(what);
  text = text.substr(0, text.find('\n'));
  for (absl::string_view prefix : {"ERROR:  ", "FATAL:  ", "ERROR: ", "FATAL: "}) {
    if (absl::ConsumePrefix(&text, prefix)) break;
  }
  return std::string(absl::StripAsciiWhitespace(text));
}

absl::StatusCode CodeForSqlState(const std::string& state, bool* retryable) {
  *retryable = false;
  if (state == "40001" || state == "40P01") {
    *retryable = true;
    return absl::StatusCode::kAborted;
  }
  // Connection failures (not 08P01, a protocol violation, nor 08007, an unknown outcome),
  // a server shutting down or starting up, too many connections.
  if (state == "08000" || state == "08001" || state == "08003" || state == "08004" ||
      state == "08006" || state == "57P01" || state == "57P02" || state == "57P03" ||
      state == "53300") {
    *retryable = true;
    return absl::StatusCode::kUnavailable;
  }
  // read_only_sql_transaction: the server stopped taking writes under an open session (an old
  // primary fenced after a fail-over). Retried on a fresh connection, where libpq, asked for
  // target_session_attrs=read-write, finds the new primary. Our READ ONLY snapshots never write,
  // so only such a server raises it.
  if (state == "25006") {
    *retryable = true;
    return absl::StatusCode::kUnavailable;
  }
  // lock_not_available: a lock_timeout expired (migrations set one); the lock holder will end.
  if (state == "55P03") {
    *retryable = true;
    return absl::StatusCode::kUnavailable;
  }
  if (state == "23505" || state == "23P01") return absl::StatusCode::kAlreadyExists;
  if (state == "23503") return absl::StatusCode::kNotFound;
  if (state == "23514" || state == "23502" || absl::StartsWith(state, "22")) {
    return absl::StatusCode::kInvalidArgument;
  }
  if (state == "42501") return absl::StatusCode::kPermissionDenied;
  if (state == "55000") return absl::StatusCode::kFailedPrecondition;
  if (state == "57014") return absl::StatusCode::kDeadlineExceeded;
  return absl::StatusCode::kInternal;
}

// Our words for an integrity constraint violation (SQLSTATE class 23), or "" for other states.
absl::string_view IntegrityViolationWords(const std::string& state) {
  if (state == "23505" || state == "23P01") return "conflicts with an existing record";
  if (state == "23503") return "refers to a record that does not exist";
  if (absl::StartsWith(state, "23")) return "a value is outside what the schema admits";
  return "";
}

// libpqxx 6.4 throws some errors as their own classes without recording the SQLSTATE; take it
// from the class then.
std::string SqlState(const pqxx::sql_error& e) {
  if (!e.sqlstate().empty()) return e.sqlstate();
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) return "23505";
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e) != nullptr) return "23503";
  if (dynamic_cast<const pqxx::check_violation*>(&e) != nullptr) return "23514";
  if (dynamic_cast<const pqxx::not_null_violation*>(&e) != nullptr) return "23502";
  if (dynamic_cast<const pqxx::insufficient_privilege*>(&e) != nullptr) return "42501";
  if (dynamic_cast<const pqxx::data_exception*>(&e) != nullptr) return "22000";
  return "";
}

// Whether `e` is the server's refusal of what was sent, which ended the transaction without
// a commit: a serialization failure or deadlock, or an error with a SQLSTATE other than a
// connection's or a shutdown's (57P01 may come as COMMIT ends). libpq's own errors carry none.
bool RefusedByTheServer(const std::exception& e) {
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) return false;
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) return true;
  const auto* error = dynamic_cast<const pqxx::sql_error*>(&e);
  if (error == nullptr) return false;
  const std::string state = SqlState(*error);
  return !state.empty() && !absl::StartsWith(state, "08") && !absl::StartsWith(state, "57P");
}

}  // namespace

absl::Status StatusOfCurrentException(absl::string_view op, bool* retryable) {
  *retryable = false;
  try {
    throw;
  } catch (const SetUpRefused& e) {
    return e.status();
  } catch (const pqxx::in_doubt_error&) {
    return CommitOutcomeUnknownError(op);
  } catch (const pqxx::statement_completion_unknown& e) {
    return absl::UnavailableError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
  } catch (const pqxx::broken_connection& e) {
    *retryable = true;
    return absl::UnavailableError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
  } catch (const pqxx::sql_error& e) {
    const std::string state = SqlState(e);
    if (state.empty()) {
      // libpq's own error, not the server's (the server names a SQLSTATE in each): the
      // connection failed under the statement, and libpq still took it for open (a server
      // stopped in immediate mode warns its clients before it goes, and libpq reads the warning
      // first). Outside COMMIT (do_commit makes that in doubt) nothing committed.
      *retryable = true;
      return absl::UnavailableError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
    }
    // A statement prepared on this connection (storage/postgres_rows.h, PreparedName) whose
    // result columns a migration changed since: the connections go (their statements with
    // them) and the transaction runs again on a new one, which prepares it anew.
    if (state == "0A000" &&
        absl::StrContains(e.what(), "cached plan must not change result type")) {
      *retryable = true;
      return absl::UnavailableError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
    }
    absl::StatusCode code = CodeForSqlState(state, retryable);
    // Class 23 comes only from PostgreSQL's own constraints (the migrations raise none), whose
    // text names tables, columns and constraints: the schema is not the API.
    const absl::string_view words = IntegrityViolationWords(state);
    if (!words.empty()) return absl::Status(code, absl::StrCat(op, ": ", words));
    return absl::Status(code, absl::StrCat(op, ": ", PrimaryMessage(e.what())));
  } catch (const pqxx::transaction_rollback& e) {
    *retryable = true;
    return absl::AbortedError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(op, ": ", PrimaryMessage(e.what())));
  } catch (...) {
    return absl::InternalError(absl::StrCat(op, ": unknown exception"));
  }
}

absl::StatusOr<std::unique_ptr<PostgresPool>> PostgresPool::Create(PostgresPoolOptions options) {
  if (options.url.empty()) return absl::InvalidArgumentError("PostgreSQL URL is empty");
  if (options.size < 1) return absl::InvalidArgumentError("pool size must be at least 1");
  if (options.clock == nullptr) return absl::InvalidArgumentError("pool clock is null");
  if (options.idle_in_transaction_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the idle-in-transaction timeout is negative");
  }
  uint64_t seed = 0;
  if (options.jitter_seed.has_value()) {
    seed = *options.jitter_seed;
  } else {
    std::random_device entropy;
    seed = (uint64_t{entropy()} << 32) | entropy();
  }
  return std::unique_ptr<PostgresPool>(new PostgresPool(std::move(options), seed));
}

int PostgresPool::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> PostgresPool::Acquire(bool* retryable) {
  *retryable = false;
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.size;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&available), options_.acquire_timeout)) {
      return absl::UnavailableError(
          absl::StrCat("no database connection free within ",
                       absl::FormatDuration(options_.acquire_timeout), " (pool size ",
                       options_.size, ")"));
    }
    if (!idle_.empty()) {
      std::unique_ptr<pqxx::connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
    ++open_;  // Reserved; connect outside the lock.
  }
  try {
    auto connection = std::make_unique<pqxx::connection>(options_.url);
    // Every statement the store runs is prepared (storage/postgres_rows.h, PreparedName) and
    // is the same lookup or write whatever its parameters (no partial index depends on one):
    // its generic plan from the first run, where PostgreSQL would plan each of the first five
    // runs on every connection for its parameters first.
    connection->set_variable("plan_cache_mode", "force_generic_plan");
    if (options_.idle_in_transaction_timeout > absl::ZeroDuration()) {
      // At least 2 ms, so that neither is 0, which the server reads as never. A wait for a lock
      // gives up at half of it, before a stopped holder's session can be ended
      // (PostgresPoolOptions).
      const int64_t idle =
          std::max<int64_t>(2, absl::ToInt64Milliseconds(options_.idle_in_transaction_timeout));
      connection->set_variable("idle_in_transaction_session_timeout", absl::StrCat(idle));
      connection->set_variable("lock_timeout", absl::StrCat(idle / 2));
    }
    connection->prepare(kSetTenantStatement, "SELECT set_config('acmevault.tenant_id', $1, true)");
    for (const auto& [name, sql] : options_.prepared_statements) connection->prepare(name, sql);
    return connection;
  } catch (...) {
    {
      absl::MutexLock lock(&mu_);
      --open_;
    }
    return StatusOfCurrentException("connecting to PostgreSQL", retryable);
  }
}

void PostgresPool::Release(std::unique_ptr<pqxx::connection> connection) {
  bool healthy = connection != nullptr && connection->is_open();
  absl::MutexLock lock(&mu_);
  if (healthy) {
    idle_.push_back(std::move(connection));
  } else {
    --open_;
  }
}

void PostgresPool::DiscardIdle() {
  std::vector<std::unique_ptr<pqxx::connection>> doomed;
  {
    absl::MutexLock lock(&mu_);
    doomed.swap(idle_);
    open_ -= static_cast<int>(doomed.size());
  }
  // Closed here, outside the lock.
}

absl::Duration PostgresPool::WithJitter(absl::Duration backoff) {
  absl::MutexLock lock(&mu_);
  return backoff + absl::Milliseconds(jitter_() % 10);
}

PooledTransaction::PooledTransaction(pqxx::connection_base& connection,
                                     std::vector<std::string> opening, bool deferred,
                                     std::function<absl::Status(const pqxx::result&)> check)
    : pqxx::internal::namedclass("transaction"),
      basic_transaction(connection, "READ COMMITTED", pqxx::read_write),
      opening_(std::move(opening)),
      deferred_(deferred),
      check_(std::move(check)) {
  Begin();
}

PooledTransaction::~PooledTransaction() noexcept { End(); }

void PooledTransaction::SendWithCommit(absl::string_view sql) {
  absl::StrAppend(&with_commit_, with_commit_.empty() ? "" : "; ", sql);
}

void PooledTransaction::RollBackQuietly() {
  try {
    direct_exec("ROLLBACK");
  } catch (...) {
  }
}

void PooledTransaction::CheckOpening(pqxx::result first) {
  if (!check_) return;
  absl::Status status = check_(first);
  if (!status.ok()) throw SetUpRefused(std::move(status));
}

void PooledTransaction::do_begin() {
  if (deferred_) return;  // sent with the first statements (Send), or by Open
  Open();
}

void PooledTransaction::Open() {
  if (opened_) return;
  opened_ = true;
  try {
    CheckOpening(direct_exec(absl::StrJoin(opening_, "; ").c_str()));
  } catch (...) {
    // The set-up failed or was refused after BEGIN: the block is open (or aborted), and
    // libpqxx, which may not have seen the transaction begin, would not end it.
    RollBackQuietly();
    opened_ = false;
    throw;
  }
}

std::vector<pqxx::result> PooledTransaction::Send(const std::vector<std::string>& statements) {
  std::vector<pqxx::result> out;
  if (opened_ && statements.size() == 1) {
    out.push_back(direct_exec(statements[0].c_str()));
    return out;
  }
  if (statements.empty()) {
    Open();
    return out;
  }
  const size_t opening = opened_ ? 0 : opening_.size();
  // libpqxx's pipeline: one simple query of all the texts (after its "SELECT 1"), whose results
  // are read one by one. Should the string not parse, it runs them again one at a time through
  // tx.exec (do_exec below), after the opening.
  pqxx::pipeline pipeline(*this);
  pipeline.retain(static_cast<int>(opening + statements.size()));
  std::vector<pqxx::pipeline::query_id> ids;
  if (opening > 0) {
    for (const std::string& text : opening_) ids.push_back(pipeline.insert(text));
    opened_ = true;
  }
  for (const std::string& text : statements) ids.push_back(pipeline.insert(text));
  pipeline.complete();
  for (size_t i = 0; i < opening; ++i) {
    pqxx::result r = pipeline.retrieve(ids[i]);
    if (i + 1 == opening) CheckOpening(std::move(r));
  }
  for (size_t i = opening; i < ids.size(); ++i) out.push_back(pipeline.retrieve(ids[i]));
  return out;
}

pqxx::result PooledTransaction::do_exec(const char query[]) {
  if (opened_) return basic_transaction::do_exec(query);
  return std::move(Send({query})[0]);
}

void PooledTransaction::do_abort() {
  if (!opened_) return;  // nothing was sent: no block to end
  basic_transaction::do_abort();
}

void PooledTransaction::do_commit() {
  std::string sql = with_commit_.empty() ? "COMMIT" : absl::StrCat(with_commit_, "; COMMIT");
  if (!opened_ && open_with_commit_) {
    // A body that sent nothing: the opening in this round trip, unchecked (OpenWithCommit).
    opened_ = true;
    sql = absl::StrCat(absl::StrJoin(opening_, "; "), "; ", sql);
  } else {
    // The opening, and its check, before COMMIT (a body that sent nothing).
    Open();
  }
  // As libpqxx's own COMMIT: a connection lost here leaves the outcome unknown. Only the
  // server's own refusal, on a connection still open, says that nothing committed; libpq's own
  // errors may come while libpq still takes the connection for open.
  try {
    direct_exec(sql.c_str());
  } catch (const pqxx::in_doubt_error&) {
    throw;
  } catch (const pqxx::statement_completion_unknown& e) {
    throw pqxx::in_doubt_error(e.what());
  } catch (const std::exception& e) {
    if (!conn().is_open() || !RefusedByTheServer(e)) throw pqxx::in_doubt_error(e.what());
    // A statement sent with COMMIT failed, so COMMIT never ran and the block is open and
    // aborted; or COMMIT itself failed and ended it (then ROLLBACK only warns). libpqxx marks
    // the transaction aborted and sends nothing more.
    RollBackQuietly();
    throw;
  }
}

absl::Status PostgresPool::Run(absl::string_view op, const TxOptions& options, const Body& body) {
  // BEGIN and the transaction's set-up go together: the set-up is a statement prepared on the
  // connection, run by SQL EXECUTE (a text carrying the tenant id would be parsed, analyzed and
  // planned again for every transaction; row-level security makes the tenant check's plan the
  // costliest of them, docs/benchmarks.md). With a tenant, they wait for the body's first
  // statements and travel in their round trip (not for a snapshot, below).
  const std::string& setup =
      options.first_prepared.empty() ? std::string(kSetTenantStatement) : options.first_prepared;
  std::vector<std::string> opening = {
      options.snapshot ? "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" : "BEGIN"};
  if (options.tenant.has_value()) {
    // The tenant id is an integer: nothing to quote. The name is one of ours.
    opening.push_back(absl::StrCat("EXECUTE ", setup, "('", *options.tenant, "')"));
  }
  return RunAttempts(op, [&](pqxx::connection& connection) -> absl::Status {
    // SQL EXECUTE finds only statements the server knows: prepare it now (once per
    // connection; libpqxx prepares lazily otherwise).
    if (options.tenant.has_value()) connection.prepare_now(setup);
    // A snapshot's BEGIN is sent alone: libpqxx's pipeline starts with "SELECT 1", and
    // PostgreSQL takes no isolation level after a query of the block.
    PooledTransaction tx(connection, opening,
                         /*deferred=*/options.tenant.has_value() && !options.snapshot,
                         options.tenant.has_value() ? options.check_first : nullptr);
    absl::Status status = body(tx);
    if (status.ok()) {
      tx.commit();
    } else {
      tx.abort();
    }
    return status;
  });
}

absl::Status PostgresPool::RunStatement(absl::string_view op, const StatementBody& body) {
  return RunAttempts(op, [&](pqxx::connection& connection) {
    pqxx::nontransaction tx(connection);
    return body(tx);
  });
}

absl::Status PostgresPool::RunAttempts(
    absl::string_view op, const std::function<absl::Status(pqxx::connection&)>& attempt_once) {
  const Clock& clock = *options_.clock;
  const absl::Time deadline = clock.Now() + options_.retry_budget;
  absl::Duration backoff = absl::Milliseconds(10);
  for (int attempt = 1;; ++attempt) {
    bool retryable = false;
    absl::Status status;
    auto connection = Acquire(&retryable);
    if (!connection.ok()) {
      status = absl::Status(connection.status().code(),
                            absl::StrCat(op, ": ", connection.status().message()));
    } else {
      bool broken = false;
      try {
        status = attempt_once(**connection);
      } catch (...) {
        status = StatusOfCurrentException(op, &retryable);
        broken = !(*connection)->is_open() || absl::IsUnavailable(status);
      }
      if (broken) {
        connection->reset();
        DiscardIdle();
      }
      Release(std::move(*connection));
    }
    if (status.ok() || !retryable || clock.Now() + backoff > deadline) {
      if (!status.ok() && retryable && attempt > 1) {
        return absl::Status(status.code(),
                            absl::StrCat(status.message(), " (after ", attempt, " attempts)"));
      }
      return status;
    }
    clock.SleepFor(WithJitter(backoff));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

}  // namespace acmevault::storage
