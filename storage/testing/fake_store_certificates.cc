// FakeStore: certificates, their sealed keys and the renewal due query (CertificateStore).
#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::Audit;
using fake::FindAccount;
using fake::FindCertificate;
using fake::FindOrder;
using fake::InsertCertificateLocked;
using fake::PageOf;
using fake::RequireTenant;
using fake::State;

// ---------------------------------------------------------------------------------------------
// CertificateStore

absl::StatusOr<Certificate> fake::InsertCertificateLocked(State& s, const Envelope& envelope,
                                                          const Scope& scope,
                                                          const NewCertificate& c, absl::Time now) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  if (c.account.has_value()) RETURN_IF_ERROR(FindAccount(s, scope, *c.account).status());
  if (c.order.has_value()) RETURN_IF_ERROR(FindOrder(s, scope, *c.order).status());
  for (const auto& [id, row] : s.certificates) {
    if (row.certificate.tenant == scope.tenant && row.certificate.serial == c.serial) {
      return absl::AlreadyExistsError(absl::StrCat("serial ", c.serial, " is stored"));
    }
  }
  State::CertificateRow row;
  const CertificateId id = s.next_id++;
  if (c.private_key != nullptr) {
    ASSIGN_OR_RETURN(row.sealed, envelope.SealPrivateKey(*c.private_key,
                                                         CertificateKeyContext(scope.tenant, id)));
  }
  for (auto& [other_id, other] : s.certificates) {
    Certificate& o = other.certificate;
    if (o.tenant == scope.tenant && o.identifiers == c.identifiers && !o.revoked_at &&
        !o.superseded_at) {
      o.superseded_at = now;
    }
  }
  row.certificate = rules::StoredCertificate(c, scope.tenant, id, row.sealed.has_value(), now);
  Certificate result = row.certificate;
  s.certificates[result.id] = std::move(row);
  Audit(s, scope, now, rules::CertificateEvent("InsertCertificate", result, ""));
  return result;
}

absl::StatusOr<Certificate> FakeStore::InsertCertificate(const Scope& scope,
                                                         const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  fake::CertificatesChangedWake changed(*state_);
  fake::StoreLock lock(*state_);
  absl::StatusOr<Certificate> out = InsertCertificateLocked(*state_, envelope_, scope, c, now);
  if (out.ok()) changed.Arm(scope.tenant);
  return out;
}

absl::StatusOr<Certificate> FakeStore::GetCertificate(const Scope& scope, CertificateId id) {
  fake::StoreLock lock(*state_);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(*state_, scope, id));
  return row->certificate;
}

absl::StatusOr<Certificate> FakeStore::GetCertificateBySerial(const Scope& scope,
                                                              absl::string_view serial) {
  std::string lower = absl::AsciiStrToLower(serial);
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  for (const auto& [id, row] : state_->certificates) {
    if (row.certificate.tenant == scope.tenant && row.certificate.serial == lower) {
      return row.certificate;
    }
  }
  return absl::NotFoundError(absl::StrCat("no certificate with serial ", serial));
}

namespace {

// GetCurrentCertificate's work (`ids` canonical), shared with LoadIssueContext.
const Certificate* CurrentLocked(const State& s, const Scope& scope,
                                 const std::vector<std::string>& ids, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  const Certificate* best = nullptr;
  for (const auto& [id, row] : s.certificates) {
    const Certificate& c = row.certificate;
    if (c.tenant != scope.tenant || c.identifiers != ids || c.revoked_at.has_value() ||
        c.not_after <= now) {
      continue;
    }
    if (best == nullptr || c.not_after > best->not_after) best = &c;
  }
  return best;
}

}  // namespace

absl::StatusOr<Certificate> FakeStore::GetCurrentCertificate(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  const Certificate* best = CurrentLocked(*state_, scope, ids, now);
  if (best == nullptr) return absl::NotFoundError("no live certificate for these identifiers");
  return *best;
}

absl::StatusOr<IssueContext> FakeStore::LoadIssueContext(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  IssueContext out;
  out.tenant = state_->tenants.at(scope.tenant);
  for (const auto& [id, a] : state_->accounts) {
    if (a.tenant == scope.tenant) out.accounts.push_back(a);
  }
  if (const Certificate* best = CurrentLocked(*state_, scope, ids, now); best != nullptr) {
    out.current = *best;
  }
  out.order_id = state_->next_id++;
  return out;
}

absl::StatusOr<crypto::PrivateKey> FakeStore::GetCertificateKey(const Scope& scope,
                                                                CertificateId id,
                                                                absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  if (!row->sealed.has_value()) {
    return absl::NotFoundError(absl::StrCat("certificate ", id, " has no stored key"));
  }
  ASSIGN_OR_RETURN(crypto::PrivateKey key,
                   envelope_.OpenPrivateKey(*row->sealed, CertificateKeyContext(scope.tenant, id)));
  Audit(s, scope, now,
        rules::CertificateEvent("UseCertificateKey", row->certificate, std::string(purpose)));
  return key;
}

absl::StatusOr<Page<Certificate>> FakeStore::ListCertificates(const Scope& scope,
                                                              const CertificateFilter& filter,
                                                              const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  return PageOf<Certificate>(
      state_->certificates, after, PageSize(page),
      [&](const State::CertificateRow& row) -> std::optional<Certificate> {
        const Certificate& c = row.certificate;
        bool state_ok = true;
        switch (filter.state) {
          case CertificateState::kAny:
            break;
          case CertificateState::kLive:
            state_ok = !c.revoked_at && !c.superseded_at && c.not_after > now;
            break;
          case CertificateState::kRevoked:
            state_ok = c.revoked_at.has_value();
            break;
          case CertificateState::kExpired:
            state_ok = !c.revoked_at && c.not_after <= now;
            break;
        }
        if (c.tenant != scope.tenant || !state_ok ||
            (filter.expires_before && !(c.not_after < *filter.expires_before)) ||
            (filter.expires_after && !(c.not_after >= *filter.expires_after))) {
          return std::nullopt;
        }
        return c;
      });
}

absl::StatusOr<Page<DueCertificate>> FakeStore::ListCertificatesDueForRenewal(
    const PageRequest& page) {
  std::pair<int64_t, int64_t> cursor = {std::numeric_limits<int64_t>::min(), 0};
  if (!page.page_token.empty()) {
    ASSIGN_OR_RETURN(cursor, rules::DecodeDueToken(page.page_token));
  }
  const int limit = PageSize(page);
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  std::vector<DueCertificate> due;
  for (const auto& [id, row] : state_->certificates) {
    const Certificate& c = row.certificate;
    const Tenant& t = state_->tenants.at(c.tenant);
    if (c.revoked_at || c.superseded_at || t.disabled_at ||
        c.not_after > now + t.spec.policy.renewal_window) {
      continue;
    }
    if (std::make_pair(absl::ToUnixMicros(c.not_after), c.id) <= cursor) continue;
    due.push_back(DueCertificate{c.tenant, c.id, c.identifiers, c.not_after});
  }
  std::sort(due.begin(), due.end(), [](const DueCertificate& a, const DueCertificate& b) {
    return std::tie(a.not_after, a.id) < std::tie(b.not_after, b.id);
  });
  Page<DueCertificate> out;
  for (DueCertificate& d : due) {
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token = rules::EncodeDueToken(out.items.back().not_after, out.items.back().id);
      break;
    }
    out.items.push_back(std::move(d));
  }
  return out;
}

absl::Status FakeStore::RecordReplacedCertificate(const Scope& scope, CertificateId renewal,
                                                  CertificateId replaced) {
  RETURN_IF_ERROR(rules::ValidateReplacement(renewal, replaced));
  const absl::Time now = Now();
  State& s = *state_;
  fake::CertificatesChangedWake changed(s);
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::CertificateRow * old, FindCertificate(s, scope, replaced));
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, renewal));
  ASSIGN_OR_RETURN(bool change, rules::CheckReplacement(row->certificate, old->certificate));
  if (!change) return absl::OkStatus();
  row->certificate.replaces_serial = old->certificate.serial;
  Audit(s, scope, now,
        rules::CertificateEvent("RecordReplacedCertificate", row->certificate,
                                absl::StrCat("replaces ", old->certificate.serial)));
  changed.Arm(scope.tenant);
  return absl::OkStatus();
}

absl::Status FakeStore::RecordAriCheck(const Scope& scope, CertificateId id,
                                       const AriCheck& check) {
  RETURN_IF_ERROR(rules::ValidateAriCheck(check));
  State& s = *state_;
  fake::CertificatesChangedWake changed(s);
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  if (check.window_start.has_value()) {
    row->certificate.ari_window_start = check.window_start;
    row->certificate.ari_window_end = check.window_end;
  }
  row->certificate.ari_next_check = check.next_check;
  changed.Arm(scope.tenant);
  return absl::OkStatus();
}

absl::Status FakeStore::RecordCrlCheck(const Scope& scope, CertificateId id,
                                       const CrlCheck& check) {
  RETURN_IF_ERROR(rules::ValidateCrlCheck(check));
  const absl::Time now = Now();
  State& s = *state_;
  fake::CertificatesChangedWake changed(s);
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  Certificate& c = row->certificate;
  c.crl_next_check = TruncateToMicros(check.next_check);
  if (check.revoked_at.has_value() && !c.revoked_outside_at.has_value()) {
    c.revoked_outside_at = TruncateToMicros(*check.revoked_at);
    c.revoked_outside_reason = check.reason;
    Audit(s, scope, now, rules::RevokedOutsideEvent(c, check));
  }
  changed.Arm(scope.tenant);
  return absl::OkStatus();
}

absl::Status FakeStore::MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                               crypto::RevocationReason reason) {
  RETURN_IF_ERROR(rules::ValidateRevocationReason(reason));
  const absl::Time now = Now();
  State& s = *state_;
  fake::CertificatesChangedWake changed(s);
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  if (row->certificate.revoked_at.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("certificate ", id, " is already revoked"));
  }
  row->certificate.revoked_at = now;
  row->certificate.revocation_reason = reason;
  Audit(s, scope, now,
        rules::CertificateEvent("MarkCertificateRevoked", row->certificate,
                                absl::StrCat("reason ", crypto::RevocationReasonCode(reason))));
  changed.Arm(scope.tenant);
  return absl::OkStatus();
}

}  // namespace acmevault::storage
