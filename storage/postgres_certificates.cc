// PostgresStore: certificates, their sealed keys and the renewal due query (CertificateStore).
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::CertificateOf;
using pg::FirstOf;
using pg::GetById;
using pg::kCertificates;
using pg::kDueRows;
using pg::kSealedColumns;
using pg::Micros;
using pg::Nullable;
using pg::OptionalParam;
using pg::PageOf;

namespace {

std::string CertificateToken(const Certificate& c) { return rules::EncodeIdToken(c.id); }
std::string DueToken(const DueCertificate& d) { return rules::EncodeDueToken(d.not_after, d.id); }

}  // namespace

std::string InsertCertificateSql() {
  // The current certificates of these identifiers are superseded by this one, in the same
  // statement: its WITH part sees the table as it was before the insert, so not the new row.
  // Row-level security keeps it to the tenant's rows. "coalesce(...) IS NULL" is "revoked_at IS
  // NULL AND superseded_at IS NULL" in a form certificates_due's predicate does not follow from:
  // planned without statistics, that partial index was taken, and every live certificate of
  // every tenant read (docs/DESIGN.md).
  return absl::StrCat(
      "WITH superseded AS (UPDATE certificates SET superseded_at = av_ts($14) "
      "WHERE identifiers_hash = ",
      pg::IdentifiersHashOf(5),
      " AND coalesce(revoked_at, superseded_at) IS NULL) "
      "INSERT INTO certificates (id, tenant_id, account_id, order_id, identifiers, serial, "
      "not_before, not_after, chain_pem, account_key_version, kek_id, wrapped_data_key, "
      "sealed_private_key, created_at, crl_next_check) VALUES ($1, $2, $3, $4, "
      "$5::text[], $6, av_ts($7), av_ts($8), $9, $10, $11, $12, $13, av_ts($14), "
      "av_ts($15)) RETURNING ",
      kCertificates.rows.columns,
      // NotifyCertificatesChanged's notification, without a round trip of its own.
      ", pg_notify('", kCertificatesChannel, "', tenant_id::text)");
}

absl::StatusOr<Certificate> PostgresStore::InsertCertificateIn(pqxx::dbtransaction& tx,
                                                               const Scope& scope,
                                                               const NewCertificate& c,
                                                               absl::Time now, CertificateId id) {
  if (id == 0) id = pg::Exec1(tx, pg::kDrawCertificateId)[0].as<int64_t>();
  std::optional<SealedKey> sealed;
  if (c.private_key != nullptr) {
    ASSIGN_OR_RETURN(
        sealed, envelope_.SealPrivateKey(*c.private_key, CertificateKeyContext(scope.tenant, id)));
  }
  std::optional<int64_t> crl_next_check;
  if (c.crl_next_check.has_value()) crl_next_check = Micros(*c.crl_next_check);
  // Nothing reads the insert's answer: it is sent with COMMIT, and the row it makes is known
  // here (no trigger of the table changes a value RETURNING gives, and every column it does
  // not set starts NULL; PostgresStoreTest.AnInsertedCertificateIsTheRowStored). Its
  // notification goes with it. A refused insert fails the COMMIT, which rolls back the rest.
  pg::ExecWithCommit(
      tx, InsertCertificateSql(),
      {absl::StrCat(id), absl::StrCat(scope.tenant), OptionalParam(c.account),
       OptionalParam(c.order), ArrayParam(c.identifiers), c.serial,
       absl::StrCat(Micros(c.not_before)), absl::StrCat(Micros(c.not_after)), c.chain_pem,
       OptionalParam(c.account_key_version),
       sealed ? std::optional<std::string>(sealed->kek_id) : std::nullopt,
       sealed ? std::optional<std::string>(pg::ByteaText(sealed->wrapped_data_key)) : std::nullopt,
       sealed ? std::optional<std::string>(pg::ByteaText(sealed->sealed_private_key))
              : std::nullopt,
       absl::StrCat(Micros(now)), OptionalParam(crl_next_check)});
  const Certificate out = rules::StoredCertificate(c, scope.tenant, id, sealed.has_value(), now);
  Audit(tx, scope, now, rules::CertificateEvent("InsertCertificate", out, ""));
  return out;
}

absl::StatusOr<Certificate> PostgresStore::InsertCertificate(const Scope& scope,
                                                             const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  absl::StatusOr<Certificate> out = InTenant<Certificate>(
      "InsertCertificate", scope,
      [&](pqxx::dbtransaction& tx) { return InsertCertificateIn(tx, scope, c, now); });
  if (out.ok()) CertificatesChangedHere(scope);
  return out;
}

absl::StatusOr<Certificate> PostgresStore::GetCertificate(const Scope& scope, CertificateId id) {
  return ReadInTenant<Certificate>(
      "GetCertificate", scope, [&](pqxx::nontransaction& tx, const std::string& tenant) {
        return FirstOf(tx.exec_prepared(kCertificateById, tenant, id), CertificateOf,
                       pg::NoSuch(kCertificates.noun, id));
      });
}

absl::StatusOr<Certificate> PostgresStore::GetCertificateBySerial(const Scope& scope,
                                                                  absl::string_view serial) {
  return ReadInTenant<Certificate>(
      "GetCertificateBySerial", scope, [&](pqxx::nontransaction& tx, const std::string& tenant) {
        return FirstOf(tx.exec_prepared(kCertificateBySerial, tenant, std::string(serial)),
                       CertificateOf,
                       absl::NotFoundError(absl::StrCat("no certificate with serial ", serial)));
      });
}

absl::StatusOr<Certificate> PostgresStore::GetCurrentCertificate(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  return ReadInTenant<Certificate>(
      "GetCurrentCertificate", scope, [&](pqxx::nontransaction& tx, const std::string& tenant) {
        return FirstOf(tx.exec_prepared(kCurrentCertificate, tenant, ArrayParam(ids), Micros(now)),
                       CertificateOf,
                       absl::NotFoundError("no live certificate for these identifiers"));
      });
}

absl::StatusOr<IssueContext> PostgresStore::LoadIssueContext(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError("LoadIssueContext: no tenant");
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  const std::string tenant = absl::StrCat(scope.tenant);
  // The same prepared reads as GetTenant, ListAccounts and GetCurrentCertificate, each of which
  // sets the tenant itself (pg::kTenantFirst), sent together: one round trip, no transaction
  // block. The tenant's own row tells a missing tenant: no second look. With them, an id for the
  // order the caller may make (IssueContext::order_id): its creation then needs no round trip
  // to draw one.
  return Statement<IssueContext>(
      "LoadIssueContext", [&](pqxx::nontransaction& tx) -> absl::StatusOr<IssueContext> {
        std::vector<pqxx::result> r = pg::Pipelined(
            tx, {{kTenantById, {tenant}},
                 {kAccountsOfTenant, {tenant}},
                 {kCurrentCertificate, {tenant, ArrayParam(ids), absl::StrCat(Micros(now))}},
                 {pg::PreparedName(tx, pg::kDrawOrderId), {}}});
        IssueContext out;
        ASSIGN_OR_RETURN(out.tenant, pg::FirstOf(r[0], pg::TenantOf,
                                                 pg::NoSuch(pg::kTenants.noun, scope.tenant)));
        out.accounts = pg::AllOf(r[1], pg::AccountOf);
        if (!r[2].empty()) out.current = CertificateOf(r[2][0]);
        out.order_id = r[3][0][0].as<int64_t>();
        return out;
      });
}

absl::StatusOr<crypto::PrivateKey> PostgresStore::GetCertificateKey(const Scope& scope,
                                                                    CertificateId id,
                                                                    absl::string_view purpose) {
  const absl::Time now = Now();
  return InTenant<crypto::PrivateKey>(
      "GetCertificateKey", scope,
      [&](pqxx::dbtransaction& tx) -> absl::StatusOr<crypto::PrivateKey> {
        ASSIGN_OR_RETURN(pqxx::row r, pg::GetRowById(tx, kCertificates, id, kSealedColumns));
        std::optional<SealedKey> sealed = pg::SealedKeyOf(r);
        if (!sealed.has_value()) {
          return absl::NotFoundError(absl::StrCat("certificate ", id, " has no stored key"));
        }
        ASSIGN_OR_RETURN(
            crypto::PrivateKey key,
            envelope_.OpenPrivateKey(*sealed, CertificateKeyContext(scope.tenant, id)));
        Audit(tx, scope, now,
              rules::CertificateEvent("UseCertificateKey", CertificateOf(r), std::string(purpose)));
        return key;
      });
}

absl::StatusOr<Page<Certificate>> PostgresStore::ListCertificates(const Scope& scope,
                                                                  const CertificateFilter& filter,
                                                                  const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  const absl::Time now = Now();
  std::optional<int64_t> before, since;
  if (filter.expires_before.has_value()) before = Micros(*filter.expires_before);
  if (filter.expires_after.has_value()) since = Micros(*filter.expires_after);
  const std::string state = filter.state == CertificateState::kLive      ? "live"
                            : filter.state == CertificateState::kRevoked ? "revoked"
                            : filter.state == CertificateState::kExpired ? "expired"
                                                                         : "any";
  return InTenant<Page<Certificate>>("ListCertificates", scope, [&](pqxx::dbtransaction& tx) {
    return PageOf(
        pg::Exec(tx,
            absl::StrCat("SELECT ", kCertificates.rows.columns,
                         " FROM certificates WHERE tenant_id = $1 AND id > $2 "
                         "AND CASE $3 "
                         "  WHEN 'live' THEN revoked_at IS NULL AND superseded_at IS NULL "
                         "                   AND not_after > av_ts($4) "
                         "  WHEN 'revoked' THEN revoked_at IS NOT NULL "
                         "  WHEN 'expired' THEN revoked_at IS NULL AND not_after <= av_ts($4) "
                         "  ELSE true END "
                         "AND ($5::bigint IS NULL OR not_after < av_ts($5)) "
                         "AND ($6::bigint IS NULL OR not_after >= av_ts($6)) "
                         "ORDER BY id LIMIT $7"),
            scope.tenant, after, state, Micros(now), Nullable(OptionalParam(before)),
            Nullable(OptionalParam(since)), limit + 1),
        CertificateOf, limit, CertificateToken);
  });
}

absl::StatusOr<Page<DueCertificate>> PostgresStore::ListCertificatesDueForRenewal(
    const PageRequest& page) {
  std::optional<int64_t> after_time, after_id;
  if (!page.page_token.empty()) {
    ASSIGN_OR_RETURN(auto cursor, rules::DecodeDueToken(page.page_token));
    std::tie(after_time, after_id) = cursor;
  }
  const int limit = PageSize(page);
  const absl::Time now = Now();
  return AcrossTenants<
      Page<DueCertificate>>("ListCertificatesDueForRenewal", [&](pqxx::dbtransaction& tx) {
    return PageOf(pg::Exec(tx, absl::StrCat("SELECT ", kDueRows.columns,
                                              " FROM av_certificates_due(av_ts($1), av_ts($2), "
                                              "$3, $4)"),
                                 Micros(now), Nullable(OptionalParam(after_time)),
                                 Nullable(OptionalParam(after_id)), limit + 1),
                  kDueRows.map, limit, DueToken);
  });
}

absl::Status PostgresStore::RecordReplacedCertificate(const Scope& scope, CertificateId renewal,
                                                      CertificateId replaced) {
  RETURN_IF_ERROR(rules::ValidateReplacement(renewal, replaced));
  const absl::Time now = Now();
  bool changed = false;
  RETURN_IF_ERROR(
      InTenant("RecordReplacedCertificate", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(Certificate old, GetById(tx, kCertificates, replaced));
        ASSIGN_OR_RETURN(Certificate c, GetById(tx, kCertificates, renewal, pg::Lock::kForUpdate));
        ASSIGN_OR_RETURN(changed, rules::CheckReplacement(c, old));
        if (!changed) return absl::OkStatus();
        pg::Exec0(tx, "UPDATE certificates SET replaces_serial = $2 WHERE id = $1", renewal,
                  old.serial);
        NotifyCertificatesChanged(tx, scope);
        Audit(tx, scope, now,
              rules::CertificateEvent("RecordReplacedCertificate", c,
                                      absl::StrCat("replaces ", old.serial)));
        return absl::OkStatus();
      }));
  if (changed) CertificatesChangedHere(scope);
  return absl::OkStatus();
}

absl::Status PostgresStore::RecordAriCheck(const Scope& scope, CertificateId id,
                                           const AriCheck& check) {
  RETURN_IF_ERROR(rules::ValidateAriCheck(check));
  std::optional<int64_t> start, end;
  if (check.window_start.has_value()) start = Micros(*check.window_start);
  if (check.window_end.has_value()) end = Micros(*check.window_end);
  RETURN_IF_ERROR(InTenant("RecordAriCheck", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    pqxx::result r = pg::Exec(tx,
        "UPDATE certificates SET ari_window_start = coalesce(av_ts($2), ari_window_start), "
        "ari_window_end = CASE WHEN $2::bigint IS NULL THEN ari_window_end ELSE av_ts($3) END, "
        "ari_next_check = av_ts($4) WHERE id = $1",
        id, Nullable(OptionalParam(start)), Nullable(OptionalParam(end)),
        Micros(check.next_check));
    if (r.affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("certificate ", id, " not found"));
    }
    NotifyCertificatesChanged(tx, scope);
    return absl::OkStatus();
  }));
  CertificatesChangedHere(scope);
  return absl::OkStatus();
}

absl::Status PostgresStore::RecordCrlCheck(const Scope& scope, CertificateId id,
                                           const CrlCheck& check) {
  RETURN_IF_ERROR(rules::ValidateCrlCheck(check));
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("RecordCrlCheck", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Certificate c, GetById(tx, kCertificates, id, pg::Lock::kForUpdate));
    // The first listing stays (the CA never unlists a revoked certificate).
    const bool newly = check.revoked_at.has_value() && !c.revoked_outside_at.has_value();
    if (newly) {
      pg::Exec0(
          tx,
          "UPDATE certificates SET crl_next_check = av_ts($2), revoked_outside_at = av_ts($3), "
          "revoked_outside_reason = $4 WHERE id = $1",
          id, Micros(check.next_check), Micros(*check.revoked_at),
          crypto::RevocationReasonCode(check.reason));
      Audit(tx, scope, now, rules::RevokedOutsideEvent(c, check));
    } else {
      pg::Exec0(tx, "UPDATE certificates SET crl_next_check = av_ts($2) WHERE id = $1", id,
                Micros(check.next_check));
    }
    NotifyCertificatesChanged(tx, scope);
    return absl::OkStatus();
  }));
  CertificatesChangedHere(scope);
  return absl::OkStatus();
}

absl::Status PostgresStore::MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                                   crypto::RevocationReason reason) {
  RETURN_IF_ERROR(rules::ValidateRevocationReason(reason));
  const absl::Time now = Now();
  RETURN_IF_ERROR(
      InTenant("MarkCertificateRevoked", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(Certificate c, GetById(tx, kCertificates, id, pg::Lock::kForUpdate));
        if (c.revoked_at.has_value()) {
          return absl::FailedPreconditionError(
              absl::StrCat("certificate ", id, " is already revoked"));
        }
        pg::Exec0(
            tx,
            "UPDATE certificates SET revoked_at = av_ts($2), revocation_reason = $3 WHERE id = $1",
            id, Micros(now), crypto::RevocationReasonCode(reason));
        NotifyCertificatesChanged(tx, scope);
        Audit(
            tx, scope, now,
            rules::CertificateEvent("MarkCertificateRevoked", c,
                                    absl::StrCat("reason ", crypto::RevocationReasonCode(reason))));
        return absl::OkStatus();
      }));
  CertificatesChangedHere(scope);
  return absl::OkStatus();
}

}  // namespace acmevault::storage
