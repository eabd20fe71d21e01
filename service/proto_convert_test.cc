#include "service/proto_convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;
using ::testing::ElementsAre;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ProtoConvert, EveryKeyAlgorithmRoundTripsAndUnspecifiedIsTheDefault) {
  for (auto a : {crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
                 crypto::KeyAlgorithm::kRsa2048, crypto::KeyAlgorithm::kRsa3072,
                 crypto::KeyAlgorithm::kRsa4096}) {
    auto back = KeyAlgorithmFromProto(KeyAlgorithmToProto(a), "key_algorithm");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, a);
  }
  EXPECT_EQ(KeyAlgorithmToProto(crypto::KeyAlgorithm::kRsa3072), v1::KEY_ALGORITHM_RSA_3072);
  auto unspecified = KeyAlgorithmFromProto(v1::KEY_ALGORITHM_UNSPECIFIED, "key_algorithm");
  ASSERT_TRUE(unspecified.ok());
  EXPECT_FALSE(unspecified->has_value());
  EXPECT_THAT(KeyAlgorithmFromProto(static_cast<v1::KeyAlgorithm>(99), "new_key_algorithm"),
              StatusIs(kInvalid, "new_key_algorithm: 99 is not a KeyAlgorithm"));
}

TEST(ProtoConvert, ChallengeTypes) {
  EXPECT_EQ(*ChallengeFromProto(v1::CHALLENGE_TYPE_UNSPECIFIED, "c"), ChallengePreference::kHttp01);
  EXPECT_EQ(*ChallengeFromProto(v1::CHALLENGE_TYPE_HTTP_01, "c"), ChallengePreference::kHttp01);
  EXPECT_EQ(*ChallengeFromProto(v1::CHALLENGE_TYPE_DNS_01, "c"), ChallengePreference::kDns01);
  EXPECT_THAT(ChallengeFromProto(static_cast<v1::ChallengeType>(77), "challenge_type"),
              StatusIs(kInvalid, "challenge_type: 77"));
}

TEST(ProtoConvert, RolesNeedAValue) {
  EXPECT_EQ(*RoleFromProto(v1::ROLE_HOST, "role"), storage::Role::kHost);
  EXPECT_EQ(*RoleFromProto(v1::ROLE_ADMIN, "role"), storage::Role::kAdmin);
  EXPECT_EQ(*RoleFromProto(v1::ROLE_PLATFORM_ADMIN, "role"), storage::Role::kPlatformAdmin);
  EXPECT_THAT(RoleFromProto(v1::ROLE_UNSPECIFIED, "role"),
              StatusIs(kInvalid, "role: must be HOST, ADMIN or PLATFORM_ADMIN"));
  EXPECT_THAT(RoleFromProto(static_cast<v1::Role>(99), "role"), StatusIs(kInvalid, "role:"));
}

TEST(ProtoConvert, RevocationReasonsAreRfc5280Codes) {
  for (auto r : {v1::REVOCATION_REASON_UNSPECIFIED, v1::REVOCATION_REASON_KEY_COMPROMISE,
                 v1::REVOCATION_REASON_AFFILIATION_CHANGED, v1::REVOCATION_REASON_SUPERSEDED,
                 v1::REVOCATION_REASON_CESSATION_OF_OPERATION}) {
    auto reason = RevocationReasonFromProto(r, "reason");
    ASSERT_TRUE(reason.ok()) << reason.status();
    EXPECT_EQ(crypto::RevocationReasonCode(*reason), static_cast<int>(r));
    EXPECT_EQ(RevocationReasonToProto(*reason), r);
  }
  EXPECT_EQ(*RevocationReasonFromProto(v1::REVOCATION_REASON_SUPERSEDED, "reason"),
            crypto::RevocationReason::kSuperseded);
  // cACompromise exists in RFC 5280, not in what ACME revocation through the API accepts.
  EXPECT_THAT(RevocationReasonFromProto(static_cast<v1::RevocationReason>(2), "reason"),
              StatusIs(kInvalid, "reason: not a reason ACME revocation accepts"));
  EXPECT_EQ(static_cast<int>(RevocationReasonToProto(crypto::RevocationReason::kCaCompromise)), 2);
}

TEST(ProtoConvert, CertificateStatesAndUnknownOnes) {
  EXPECT_EQ(*CertificateStateFromProto(v1::CERTIFICATE_STATE_UNSPECIFIED, "state"),
            storage::CertificateState::kAny);
  EXPECT_EQ(*CertificateStateFromProto(v1::CERTIFICATE_STATE_VALID, "state"),
            storage::CertificateState::kLive);
  EXPECT_EQ(*CertificateStateFromProto(v1::CERTIFICATE_STATE_REVOKED, "state"),
            storage::CertificateState::kRevoked);
  EXPECT_EQ(*CertificateStateFromProto(v1::CERTIFICATE_STATE_EXPIRED, "state"),
            storage::CertificateState::kExpired);
  EXPECT_THAT(CertificateStateFromProto(static_cast<v1::CertificateState>(9), "state"),
              StatusIs(kInvalid, "state: 9"));
}

TEST(ProtoConvert, OrderStatesAndAccountStatuses) {
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kCreated), v1::ORDER_STATE_PENDING);
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kPending), v1::ORDER_STATE_AUTHORIZING);
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kReady), v1::ORDER_STATE_FINALIZING);
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kProcessing), v1::ORDER_STATE_FINALIZING);
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kValid), v1::ORDER_STATE_VALID);
  EXPECT_EQ(OrderStateToProto(storage::OrderState::kInvalid), v1::ORDER_STATE_INVALID);
  EXPECT_EQ(AccountStatusToProto(storage::AccountStatus::kValid), v1::ACCOUNT_STATUS_VALID);
  EXPECT_EQ(AccountStatusToProto(storage::AccountStatus::kDeactivated),
            v1::ACCOUNT_STATUS_DEACTIVATED);
  EXPECT_EQ(AccountStatusToProto(storage::AccountStatus::kRevoked), v1::ACCOUNT_STATUS_REVOKED);
  EXPECT_EQ(AccountStatusToProto(storage::AccountStatus::kPending), v1::ACCOUNT_STATUS_UNSPECIFIED);
}

TEST(ProtoConvert, TimesAndDurationsRoundTripToTheNanosecond) {
  for (absl::Time t : {absl::FromUnixNanos(1'800'000'000'123'456'789),
                       absl::FromUnixNanos(-1'500'000'000), absl::UnixEpoch()}) {
    google::protobuf::Timestamp ts;
    TimeToProto(t, &ts);
    EXPECT_GE(ts.nanos(), 0);  // Timestamp: nanos count forward, also before 1970.
    EXPECT_EQ(TimeFromProto(ts), t);
  }
  google::protobuf::Timestamp before_epoch;
  TimeToProto(absl::FromUnixNanos(-1'500'000'000), &before_epoch);
  EXPECT_EQ(before_epoch.seconds(), -2);
  EXPECT_EQ(before_epoch.nanos(), 500'000'000);

  for (absl::Duration d : {absl::Milliseconds(1500), absl::Milliseconds(-1500), absl::Hours(720),
                           absl::ZeroDuration()}) {
    google::protobuf::Duration pd;
    DurationToProto(d, &pd);
    EXPECT_EQ(DurationFromProto(pd), d);
  }
  google::protobuf::Duration negative;
  DurationToProto(absl::Milliseconds(-1500), &negative);
  EXPECT_EQ(negative.seconds(), -1);  // Duration: seconds and nanos share a sign.
  EXPECT_EQ(negative.nanos(), -500'000'000);
}

TEST(ProtoConvert, IssueRequestCarriesTheFieldsAsSent) {
  v1::IssueCertificateRequest p;
  p.add_identifiers("a.example.com");
  p.add_identifiers("b.example.com");
  p.set_csr("");  // Present but empty: the domain refuses it, so it must arrive as present.
  p.set_idempotency_key(std::string(300, 'k'));
  p.set_challenge_type(v1::CHALLENGE_TYPE_DNS_01);
  p.set_wait_seconds(-3);
  const absl::Time deadline = absl::FromUnixSeconds(1'800'000'000);
  bool cancelled = false;
  auto r = IssueRequestFromProto(p, deadline, [&] { return cancelled; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->identifiers, ElementsAre("a.example.com", "b.example.com"));
  ASSERT_TRUE(r->csr.has_value());
  EXPECT_TRUE(r->csr->empty());
  EXPECT_FALSE(r->key_algorithm.has_value());
  EXPECT_EQ(r->idempotency_key.size(), 300u);
  EXPECT_EQ(r->challenge, ChallengePreference::kDns01);
  EXPECT_EQ(r->max_wait, absl::Seconds(-3));
  EXPECT_EQ(r->deadline, deadline);
  ASSERT_TRUE(r->cancelled);
  cancelled = true;
  EXPECT_TRUE(r->cancelled());

  v1::IssueCertificateRequest by_key;
  by_key.set_key_algorithm(v1::KEY_ALGORITHM_UNSPECIFIED);
  auto service_key = IssueRequestFromProto(by_key, std::nullopt, nullptr);
  ASSERT_TRUE(service_key.ok());
  EXPECT_FALSE(service_key->csr.has_value());
  EXPECT_FALSE(service_key->key_algorithm.has_value());  // ECDSA P-256 by default.
  EXPECT_FALSE(service_key->deadline.has_value());
  by_key.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P384);
  EXPECT_EQ(IssueRequestFromProto(by_key, std::nullopt, nullptr)->key_algorithm,
            crypto::KeyAlgorithm::kEcdsaP384);
  by_key.set_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  EXPECT_THAT(IssueRequestFromProto(by_key, std::nullopt, nullptr),
              StatusIs(kInvalid, "key_algorithm"));
  by_key.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  by_key.set_challenge_type(static_cast<v1::ChallengeType>(77));
  EXPECT_THAT(IssueRequestFromProto(by_key, std::nullopt, nullptr),
              StatusIs(kInvalid, "challenge_type"));
}

TEST(ProtoConvert, ReadRequests) {
  EXPECT_EQ(*OrderIdFromProto("42", "id"), 42);
  for (const char* bad : {"", "0", "-1", "x", "4 2"}) {
    EXPECT_THAT(OrderIdFromProto(bad, "id"), StatusIs(kInvalid, "id: not an order id")) << bad;
  }

  v1::GetCertificateRequest by_serial;
  by_serial.set_serial("8f00");
  CertificateSelector s = CertificateSelectorFromProto(by_serial);
  EXPECT_EQ(s.serial, "8f00");
  EXPECT_FALSE(s.identifiers.has_value());
  v1::GetCertificateRequest by_names;
  by_names.mutable_identifiers()->add_values("a.example.com");
  s = CertificateSelectorFromProto(by_names);
  EXPECT_FALSE(s.serial.has_value());
  ASSERT_TRUE(s.identifiers.has_value());
  EXPECT_THAT(*s.identifiers, ElementsAre("a.example.com"));
  s = CertificateSelectorFromProto({});
  EXPECT_FALSE(s.serial.has_value() || s.identifiers.has_value());

  v1::ListCertificatesRequest list;
  list.set_state(v1::CERTIFICATE_STATE_EXPIRED);
  list.mutable_expires_before()->set_seconds(1'800'000'000);
  list.set_page_size(-5);
  list.set_page_token("next");
  auto filter = CertificateFilterFromProto(list);
  ASSERT_TRUE(filter.ok());
  EXPECT_EQ(filter->state, storage::CertificateState::kExpired);
  EXPECT_EQ(filter->expires_before, absl::FromUnixSeconds(1'800'000'000));
  storage::PageRequest page = PageRequestFromProto(list);
  EXPECT_EQ(page.page_token, "next");
  EXPECT_EQ(page.max_results, -5);  // As sent: the domain refuses it.
  EXPECT_FALSE(CertificateFilterFromProto({})->expires_before.has_value());
}

TEST(ProtoConvert, AccountAndTenantRequests) {
  v1::CreateAccountRequest create;
  create.add_contact("mailto:pki@example.com");
  create.set_terms_of_service_agreed(true);
  create.set_eab_key_id("kid");
  create.set_eab_hmac_key("bWFj");
  create.set_key_algorithm(v1::KEY_ALGORITHM_RSA_2048);
  auto spec = CreateAccountSpecFromProto(create);
  ASSERT_TRUE(spec.ok());
  EXPECT_THAT(spec->contact, ElementsAre("mailto:pki@example.com"));
  EXPECT_TRUE(spec->terms_of_service_agreed);
  EXPECT_EQ(spec->eab_key_id, "kid");
  EXPECT_EQ(spec->eab_hmac_key, "bWFj");
  EXPECT_EQ(spec->key_algorithm, crypto::KeyAlgorithm::kRsa2048);
  create.set_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  EXPECT_THAT(CreateAccountSpecFromProto(create), StatusIs(kInvalid, "key_algorithm"));

  v1::UpdateTenantRequest update;
  update.set_name("acme");
  update.add_allowed_identifiers("*.example.com");
  update.set_directory_url("https://ca.test/dir");
  auto plain = TenantSpecFromProto(update);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->policy.key_algorithm, storage::TenantPolicy().key_algorithm);
  auto* policy = update.mutable_policy();
  policy->set_account_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P384);
  policy->mutable_max_account_key_age()->set_seconds(86400);
  policy->set_deactivate_authorizations_after_issuance(true);
  policy->mutable_renewal_window()->set_seconds(3600);
  policy->set_ephemeral_accounts(true);
  auto tenant = TenantSpecFromProto(update);
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->name, "acme");
  EXPECT_THAT(tenant->allowed_identifiers, ElementsAre("*.example.com"));
  EXPECT_EQ(tenant->acme_directory_url, "https://ca.test/dir");
  EXPECT_EQ(tenant->policy.key_algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_EQ(tenant->policy.max_key_age, absl::Hours(24));
  EXPECT_TRUE(tenant->policy.deactivate_authorizations_after_issuance);
  EXPECT_EQ(tenant->policy.renewal_window, absl::Hours(1));
  EXPECT_TRUE(tenant->policy.ephemeral_accounts);
  policy->set_account_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  EXPECT_THAT(TenantSpecFromProto(update), StatusIs(kInvalid, "policy.account_key_algorithm"));
  v1::CreateTenantRequest create_tenant;
  create_tenant.set_name("other");
  EXPECT_EQ(TenantSpecFromProto(create_tenant)->name, "other");

  // And back: a tenant reads as it was written.
  storage::Tenant stored;
  stored.spec = *tenant;
  stored.created_at = absl::FromUnixSeconds(1'800'000'000);
  v1::Tenant out;
  ToProto(stored, &out);
  EXPECT_EQ(out.name(), "acme");
  EXPECT_EQ(out.policy().account_key_algorithm(), v1::KEY_ALGORITHM_ECDSA_P384);
  EXPECT_EQ(out.policy().max_account_key_age().seconds(), 86400);
  EXPECT_EQ(out.policy().renewal_window().seconds(), 3600);
  EXPECT_TRUE(out.policy().deactivate_authorizations_after_issuance());
  EXPECT_TRUE(out.policy().ephemeral_accounts());
  EXPECT_EQ(out.created_at().seconds(), 1'800'000'000);
}

// Issue 11: deactivation after issuance is on unless the tenant turns it off. A policy that
// names other fields only (the CLI's --max-key-age, say) leaves it on; only an explicit false
// turns it off.
TEST(ProtoConvert, APolicyWithoutTheDeactivationFieldKeepsDeactivationOn) {
  v1::CreateTenantRequest create;
  create.set_name("acme");
  create.mutable_policy()->mutable_max_account_key_age()->set_seconds(86400);
  auto spec = TenantSpecFromProto(create);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->policy.deactivate_authorizations_after_issuance);
  v1::UpdateTenantRequest update;
  update.set_name("acme");
  update.mutable_policy()->set_ephemeral_accounts(true);
  EXPECT_TRUE(TenantSpecFromProto(update)->policy.deactivate_authorizations_after_issuance);

  create.mutable_policy()->set_deactivate_authorizations_after_issuance(false);
  EXPECT_FALSE(TenantSpecFromProto(create)->policy.deactivate_authorizations_after_issuance);
  create.mutable_policy()->set_deactivate_authorizations_after_issuance(true);
  EXPECT_TRUE(TenantSpecFromProto(create)->policy.deactivate_authorizations_after_issuance);
}

storage::Certificate Cert(absl::Time not_after) {
  storage::Certificate c;
  c.serial = "8f00";
  c.identifiers = {"a.example.com"};
  c.not_before = not_after - absl::Hours(24 * 90);
  c.not_after = not_after;
  c.chain_pem = "-----BEGIN CERTIFICATE-----";
  c.account_key_version = 3;
  c.has_private_key = true;
  return c;
}

TEST(ProtoConvert, CertificatesReportTheirStateAtNow) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  v1::Certificate live;
  ToProto(Cert(now + absl::Hours(1)), now, /*with_chain=*/true, &live);
  EXPECT_EQ(live.serial(), "8f00");
  EXPECT_EQ(live.state(), v1::CERTIFICATE_STATE_VALID);
  EXPECT_EQ(live.chain_pem(), "-----BEGIN CERTIFICATE-----");
  EXPECT_EQ(live.issuing_key_version(), 3);
  EXPECT_TRUE(live.service_holds_key());
  EXPECT_EQ(TimeFromProto(live.not_after()), now + absl::Hours(1));

  v1::Certificate expired;
  ToProto(Cert(now), now, /*with_chain=*/false, &expired);
  EXPECT_EQ(expired.state(), v1::CERTIFICATE_STATE_EXPIRED);
  EXPECT_TRUE(expired.chain_pem().empty());

  storage::Certificate revoked = Cert(now + absl::Hours(1));
  revoked.revoked_at = now;
  revoked.revocation_reason = crypto::RevocationReason::kKeyCompromise;
  v1::Certificate r;
  ToProto(revoked, now, false, &r);
  EXPECT_EQ(r.state(), v1::CERTIFICATE_STATE_REVOKED);
  EXPECT_EQ(r.revocation_reason(), v1::REVOCATION_REASON_KEY_COMPROMISE);

  storage::Page<storage::Certificate> page{{Cert(now + absl::Hours(1))}, "next"};
  v1::ListCertificatesResponse list;
  ToProto(page, now, &list);
  ASSERT_EQ(list.certificates_size(), 1);
  EXPECT_TRUE(list.certificates(0).chain_pem().empty());
  EXPECT_EQ(list.next_page_token(), "next");
}

TEST(ProtoConvert, OrdersAndIssueResultsCarryTheSerialAndTheProblemType) {
  storage::Order order;
  order.id = 7;
  order.state = storage::OrderState::kValid;
  order.identifiers = {"a.example.com"};
  order.created_at = absl::FromUnixSeconds(1'800'000'000);
  order.updated_at = order.created_at + absl::Seconds(5);
  v1::Order viewed;
  ToProto(OrderView{order, "8f00"}, &viewed);
  EXPECT_EQ(viewed.id(), "7");
  EXPECT_EQ(viewed.state(), v1::ORDER_STATE_VALID);
  EXPECT_EQ(viewed.certificate_serial(), "8f00");
  EXPECT_EQ(viewed.updated_at().seconds(), 1'800'000'005);

  const absl::Time now = order.created_at;
  IssueResult result;
  result.order = order;
  result.certificate = Cert(now + absl::Hours(1));
  result.private_key_pem = crypto::SecretBytes("placeholder");
  result.reused = true;
  v1::IssueCertificateResponse issued;
  ToProto(result, now, &issued);
  EXPECT_EQ(issued.order().certificate_serial(), "8f00");
  EXPECT_EQ(issued.certificate().chain_pem(), "-----BEGIN CERTIFICATE-----");
  EXPECT_EQ(issued.private_key_pem(), "placeholder");
  EXPECT_TRUE(issued.reused());

  order.state = storage::OrderState::kInvalid;
  order.error = "INVALID_ARGUMENT: acme rejectedIdentifier (HTTP 400): no";
  order.problem_type = "urn:ietf:params:acme:error:rejectedIdentifier";
  v1::Order failed;
  ToProto(OrderView{order, ""}, &failed);
  EXPECT_EQ(failed.state(), v1::ORDER_STATE_INVALID);
  EXPECT_EQ(failed.error(), order.error);
  EXPECT_EQ(failed.problem_type(), "urn:ietf:params:acme:error:rejectedIdentifier");
  EXPECT_FALSE(failed.has_stalled_at());

  order.state = storage::OrderState::kProcessing;
  order.stalled_at = absl::FromUnixSeconds(1'800'000'000);
  v1::Order stalled;
  ToProto(OrderView{order, ""}, &stalled);
  EXPECT_EQ(stalled.state(), v1::ORDER_STATE_FINALIZING);
  EXPECT_EQ(stalled.stalled_at().seconds(), 1'800'000'000);
  EXPECT_EQ(stalled.attempts(), 0);
  EXPECT_FALSE(stalled.has_next_attempt_at());

  // Issue 11 item 5: the job's attempts and last problem; the next attempt while it is open,
  // the give-up once failed for good.
  storage::Job job;
  job.attempts = 3;
  job.last_error = "UNAVAILABLE: acme serverInternal (HTTP 503): down";
  job.not_before = absl::FromUnixSeconds(1'800'000'100);
  order.state = storage::OrderState::kPending;
  order.stalled_at.reset();
  v1::Order retried;
  ToProto(OrderView{order, "", job}, &retried);
  EXPECT_EQ(retried.attempts(), 3);
  EXPECT_EQ(retried.last_error(), job.last_error);
  EXPECT_EQ(retried.next_attempt_at().seconds(), 1'800'000'100);
  EXPECT_FALSE(retried.has_gave_up_at());
  job.failed_at = absl::FromUnixSeconds(1'800'000'200);
  v1::Order given_up;
  ToProto(OrderView{order, "", job}, &given_up);
  EXPECT_EQ(given_up.attempts(), 3);
  EXPECT_EQ(given_up.last_error(), job.last_error);
  EXPECT_EQ(given_up.gave_up_at().seconds(), 1'800'000'200);
  EXPECT_FALSE(given_up.has_next_attempt_at());

  IssueResult pending;
  pending.order.id = 8;
  v1::IssueCertificateResponse handle;
  ToProto(pending, now, &handle);
  EXPECT_EQ(handle.order().id(), "8");
  EXPECT_FALSE(handle.has_certificate());
  EXPECT_TRUE(handle.order().certificate_serial().empty());
  EXPECT_TRUE(handle.private_key_pem().empty());
}

TEST(ProtoConvert, AccountsReportTheirKeyAge) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  AccountView view;
  view.account.account_url = "https://ca.test/acct/1";
  view.account.directory_url = "https://ca.test/dir";
  view.account.status = storage::AccountStatus::kValid;
  view.account.created_at = now - absl::Hours(48);
  view.active_key.version = 2;
  view.active_key.algorithm = crypto::KeyAlgorithm::kEcdsaP384;
  view.active_key.public_key.thumbprint = "thumb";
  view.active_key.created_at = now - absl::Hours(5);
  view.active_key.activated_at = now - absl::Hours(3);
  RolloverResult rolled{view, 1};
  v1::RolloverAccountKeyResponse out;
  ToProto(rolled, now, &out);
  EXPECT_EQ(out.previous_key_version(), 1);
  const v1::Account& a = out.account();
  EXPECT_EQ(a.account_url(), "https://ca.test/acct/1");
  EXPECT_EQ(a.status(), v1::ACCOUNT_STATUS_VALID);
  EXPECT_EQ(a.key_version(), 2);
  EXPECT_EQ(a.key_algorithm(), v1::KEY_ALGORITHM_ECDSA_P384);
  EXPECT_EQ(a.key_thumbprint(), "thumb");
  EXPECT_EQ(TimeFromProto(a.key_created_at()), now - absl::Hours(3));  // When it became active.
  EXPECT_EQ(DurationFromProto(a.key_age()), absl::Hours(3));
  EXPECT_EQ(TimeFromProto(a.created_at()), now - absl::Hours(48));

  // A rollover by a new account says what it lost.
  rolled.replacement = AccountReplacement{"https://ca.test/acct/0", false,
                                          "the CA refused to deactivate it", {"a", "b"}};
  ToProto(rolled, now, &out);
  EXPECT_EQ(out.replacement().previous_account_url(), "https://ca.test/acct/0");
  EXPECT_FALSE(out.replacement().previous_deactivated());
  EXPECT_EQ(out.replacement().previous_outcome(), "the CA refused to deactivate it");
  EXPECT_THAT(out.replacement().lost(), ::testing::ElementsAre("a", "b"));

  CompromiseReport report;
  report.steps = {{"rollover", true, "key version 1 -> 2", now},
                  {"deactivate_account", false, "not requested", std::nullopt}};
  report.account = view;
  v1::RespondToCompromiseResponse compromise;
  ToProto(report, now, &compromise);
  ASSERT_EQ(compromise.steps_size(), 2);
  EXPECT_EQ(compromise.steps(0).name(), "rollover");
  EXPECT_TRUE(compromise.steps(0).done());
  EXPECT_EQ(compromise.steps(0).finished_at().seconds(), 1'800'000'000);
  EXPECT_FALSE(compromise.steps(1).done());
  EXPECT_FALSE(compromise.steps(1).has_finished_at());
  EXPECT_EQ(compromise.account().key_version(), 2);

  v1::DeactivateAuthorizationsResponse counts;
  ToProto(DeactivationCounts{4, 2, 1}, &counts);
  EXPECT_EQ(counts.deactivated(), 4);
  EXPECT_EQ(counts.skipped(), 2);
  EXPECT_EQ(counts.failed(), 1);
  v1::CreateTokenResponse token;
  ToProto(NewToken{"acme:5", "avt_x"}, &token);
  EXPECT_EQ(token.token_id(), "acme:5");
  EXPECT_EQ(token.token(), "avt_x");
}

}  // namespace
}  // namespace acmevault::service
