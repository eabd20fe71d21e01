// FakeStore: CaLimitStore and MarkOrderStalled, as storage/postgres_ca_limits.cc.
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::State;

absl::Status FakeStore::RecordCaHold(const Scope& scope, const CaHoldKey& key, absl::Time until,
                                     absl::string_view problem) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key, problem));
  until = TruncateToMicros(until);
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  auto [it, inserted] = s.ca_holds.try_emplace({scope.tenant, key.account, ids, key.request},
                                               CaHold{until, std::string(problem)});
  if (!inserted) {
    it->second.until = std::max(it->second.until, until);
    it->second.problem = std::string(problem);
  }
  return absl::OkStatus();
}

namespace {

std::optional<CaHold> CaHoldLocked(State& s, const Scope& scope, const CaHoldKey& key,
                                   const std::vector<std::string>& ids, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.ca_holds.find({scope.tenant, key.account, ids, key.request});
  if (it == s.ca_holds.end() || it->second.until <= TruncateToMicros(now)) return std::nullopt;
  return it->second;
}

using BudgetRow = std::pair<double, absl::Time>;  // tokens, last taken

CaBudgetTake TakeFrom(BudgetRow& row, const CaBudget& budget, absl::Time now) {
  auto& [tokens, updated_at] = row;
  CaBudgetTake take = rules::TakeToken(budget, tokens, updated_at, now);
  updated_at = std::max(updated_at, now);
  return take;
}

void GiveBackTo(BudgetRow& row, const CaBudget& budget) {
  row.first = std::min(budget.capacity, row.first + 1);
}

auto BudgetKey(const Scope& scope, AccountId account, const CaBudget& budget) {
  // A tenant's bucket for an identifier set is no account's.
  return std::make_tuple(scope.tenant, budget.identifiers.empty() ? account : 0, budget.name,
                         budget.identifiers);
}

CaBudgetTake TakeCaBudgetTokenLocked(State& s, const Scope& scope, AccountId account,
                                     const CaBudget& budget, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  now = TruncateToMicros(now);
  auto [it, inserted] =
      s.ca_budgets.try_emplace(BudgetKey(scope, account, budget), budget.capacity, now);
  return TakeFrom(it->second, budget, now);
}

void ReturnCaBudgetTokenLocked(State& s, const Scope& scope, AccountId account,
                               const CaBudget& budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.ca_budgets.find(BudgetKey(scope, account, budget));
  if (it != s.ca_budgets.end()) GiveBackTo(it->second, budget);
}

}  // namespace

absl::StatusOr<CaHold> FakeStore::GetCaHold(const Scope& scope, const CaHoldKey& key,
                                            absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  std::optional<CaHold> hold = CaHoldLocked(s, scope, key, ids, now);
  if (!hold.has_value()) return absl::NotFoundError("no hold from the CA");
  return *std::move(hold);
}

absl::StatusOr<CaBudgetTake> FakeStore::TakeCaBudgetToken(const Scope& scope, AccountId account,
                                                          const CaBudget& budget,
                                                          absl::Time now) {
  ASSIGN_OR_RETURN(CaBudget valid, rules::ValidateCaBudget(budget));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  return TakeCaBudgetTokenLocked(s, scope, account, valid, now);
}

absl::Status FakeStore::ReturnCaBudgetToken(const Scope& scope, AccountId account,
                                            const CaBudget& budget) {
  ASSIGN_OR_RETURN(CaBudget valid, rules::ValidateCaBudget(budget));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  ReturnCaBudgetTokenLocked(s, scope, account, valid);
  return absl::OkStatus();
}

absl::StatusOr<CaAdmission> FakeStore::AdmitCaRequest(const Scope& scope, const CaHoldKey& key,
                                                      const std::vector<CaBudget>& budgets,
                                                      absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  ASSIGN_OR_RETURN(std::vector<CaBudget> valid, rules::ValidateCaBudgets(budgets));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  return fake::AdmitCaRequestLocked(s, scope, key, ids, valid, now);
}

CaAdmission fake::AdmitCaRequestLocked(State& s, const Scope& scope, const CaHoldKey& key,
                                       const std::vector<std::string>& ids,
                                       const std::vector<CaBudget>& budgets, absl::Time now) {
  CaAdmission out;
  out.hold = CaHoldLocked(s, scope, key, ids, now);
  if (out.hold.has_value()) return out;
  for (size_t i = 0; i < budgets.size(); ++i) {
    out.take = TakeCaBudgetTokenLocked(s, scope, key.account, budgets[i], now);
    if (out.take->taken) continue;
    out.short_budget = budgets[i].name;
    for (size_t j = 0; j < i; ++j) ReturnCaBudgetTokenLocked(s, scope, key.account, budgets[j]);
    break;
  }
  return out;
}

absl::StatusOr<CaBudgetTake> FakeStore::TakeCaDirectoryBudgetToken(absl::string_view directory_url,
                                                                   const CaBudget& budget,
                                                                   absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateCaDirectoryBudget(directory_url, budget));
  now = TruncateToMicros(now);
  State& s = *state_;
  fake::StoreLock lock(s);
  auto [it, inserted] = s.ca_directory_budgets.try_emplace(
      {std::string(directory_url), budget.name}, budget.capacity, now);
  return TakeFrom(it->second, budget, now);
}

absl::Status FakeStore::ReturnCaDirectoryBudgetToken(absl::string_view directory_url,
                                                     const CaBudget& budget) {
  RETURN_IF_ERROR(rules::ValidateCaDirectoryBudget(directory_url, budget));
  State& s = *state_;
  fake::StoreLock lock(s);
  auto it = s.ca_directory_budgets.find({std::string(directory_url), budget.name});
  if (it != s.ca_directory_budgets.end()) GiveBackTo(it->second, budget);
  return absl::OkStatus();
}

absl::Status FakeStore::MarkOrderStalled(const Scope& scope, const Lease& lease, absl::Time at) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Order * o, fake::LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckStallable(*o));
  if (o->stalled_at.has_value()) return absl::OkStatus();
  o->stalled_at = TruncateToMicros(at);
  fake::Audit(s, scope, now, rules::OrderEvent("StallOrder", *o, ""));
  return absl::OkStatus();
}

}  // namespace acmevault::storage
