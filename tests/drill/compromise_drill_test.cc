// The compromise drill at scale: RespondToCompromise on a tenant with ACMEVAULT_DRILL_CERTS
// (default 10) live certificates whose keys the service holds, against the e2e service's Pebble,
// end to end, timed step by step. Afterwards Pebble must confirm the playbook: the old account
// key is refused, every authorization outstanding before it is deactivated, every certificate
// was reissued under a new key and every old one is revoked (Pebble's management interface).
// tests/drill/run --certs N runs it at size and records the figures it prints
// (docs/reliability.md); tests/run runs it with 10.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "acme/client.h"
#include "acme/http.h"
#include "acme/testing/pebble.h"
#include "common/testing/stack_env.h"
#include "crypto/x509.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "tests/e2e/e2e_fixture.h"

namespace acmevault {
namespace {

using ::acmevault::testing::StackEnv;
using e2e::ReadFile;

absl::Duration Since(absl::Time t) { return absl::Now() - t; }
std::string Seconds(absl::Duration d) { return absl::StrFormat("%.2f", absl::ToDoubleSeconds(d)); }
absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

class CompromiseDrillTest : public e2e::E2eFixture {
 protected:
  void SetUp() override {
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    certs_wanted_ = 10;
    if (const char* n = std::getenv("ACMEVAULT_DRILL_CERTS")) {
      ASSERT_TRUE(absl::SimpleAtoi(n, &certs_wanted_) && certs_wanted_ > 0) << n;
    }
    const std::string ca_file = StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
    pebble_ = std::make_unique<acme::testing::PebbleManagement>(
        StackEnv("ACMEVAULT_PEBBLE_E2E_MANAGEMENT"), ca_file);
    auto http = acme::CurlTransport::Create({.ca_file = ca_file});
    ASSERT_TRUE(http.ok());
    http_ = *std::move(http);
    auto client = acme::AcmeClient::Create(
        {.directory_url = StackEnv("ACMEVAULT_PEBBLE_E2E_DIRECTORY"), .transport = http_.get()});
    ASSERT_TRUE(client.ok()) << client.status();
    acme_ = *std::move(client);
    auto store = OpenStore();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  int certs_wanted_ = 0;
  std::unique_ptr<acme::testing::PebbleManagement> pebble_;
  std::unique_ptr<acme::CurlTransport> http_;
  std::unique_ptr<acme::AcmeClient> acme_;
  std::unique_ptr<storage::PostgresStore> store_;
};

TEST_F(CompromiseDrillTest, EveryStepConfirmedByPebble) {
  const int n = certs_wanted_;
  // Authorizations kept after issuance, so the playbook has every one of them to deactivate.
  TenantTokens t = NewTenant(/*with_account=*/true, /*keep_authorizations=*/true);
  v1::Account account;
  {
    auto c = Ctx(t.admin);
    ASSERT_TRUE(accounts_->GetAccount(c.get(), {}, &account).ok());
  }

  // 1. N live certificates with service-held keys, 32 callers at a time.
  const absl::Time issue_start = absl::Now();
  std::vector<std::string> old_serials(n), old_spki(n);
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < std::min(n, 32); ++w) {
    workers.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        v1::IssueCertificateResponse r;
        grpc::Status s =
            IssueWithKey(t, {absl::StrCat("c", i, ".", t.name, ".example")}, &r, "", 600);
        auto chain = crypto::ParsePemChain(r.certificate().chain_pem());
        if (!s.ok() || !chain.ok() || r.order().state() != v1::ORDER_STATE_VALID) {
          ++failed;
          continue;
        }
        old_serials[i] = r.certificate().serial();
        old_spki[i] = chain->front().public_key.ToDer();
      }
    });
  }
  for (auto& w : workers) w.join();
  const absl::Duration issue_time = Since(issue_start);
  ASSERT_EQ(failed, 0) << "issuances failed before the drill";

  // What the playbook must act on, read from the ledger and the vault before it runs.
  auto tenant = store_->FindTenantByName(t.name);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  const storage::Scope scope{tenant->id, {"e2e-test", "compromise_drill_test"}};
  auto accounts = store_->ListAccounts(scope);
  ASSERT_TRUE(accounts.ok() && accounts->size() == 1u);
  const storage::AccountId account_id = accounts->front().id;
  auto old_key = store_->GetKey(scope, account_id, account.key_version(), "drill: the leaked key");
  ASSERT_TRUE(old_key.ok() && old_key->private_key) << old_key.status();
  auto outstanding = store_->ListOutstandingAuthorizations(scope, {});
  ASSERT_TRUE(outstanding.ok()) << outstanding.status();
  ASSERT_GE(outstanding->size(), static_cast<size_t>(n));

  // 2. The playbook, timed; resumed by its run id if it stops short of the end.
  v1::RespondToCompromiseResponse report;
  const absl::Time drill_start = absl::Now();
  int64_t run_id = 0;
  int resumed = 0;
  for (;; ++resumed) {
    v1::RespondToCompromiseRequest r;
    r.set_run_id(run_id);
    auto c = Ctx(t.admin, 3600);
    grpc::Status s = accounts_->RespondToCompromise(c.get(), r, &report);
    if (s.ok()) break;
    // A step that outlasts the service's wait stops the call; the error names the run.
    std::cout << "RespondToCompromise stopped: " << s.error_message() << "\n";
    const size_t at = s.error_message().rfind("pass run_id ");
    ASSERT_TRUE(at != std::string::npos && resumed < 4) << s.error_message();
    ASSERT_TRUE(absl::SimpleAtoi(
        absl::string_view(s.error_message()).substr(at + 12).substr(
            0, s.error_message().find(' ', at + 12) - at - 12),
        &run_id));
  }
  const absl::Duration drill_time = Since(drill_start);
  ASSERT_EQ(report.steps_size(), 5);

  // 3. What Pebble says.
  const absl::Time check_start = absl::Now();
  auto refused = acme_->NewAccount(*old_key->private_key, {.only_return_existing = true});
  EXPECT_FALSE(refused.ok()) << "Pebble still accepts the leaked key for " << refused->url;
  auto active = store_->GetKey(scope, account_id, report.account().key_version(), "drill: check");
  ASSERT_TRUE(active.ok() && active->private_key) << active.status();
  const acme::AccountRef ref{&*active->private_key, report.account().account_url()};
  int authz_deactivated = 0;
  for (const auto& a : *outstanding) {
    auto got = acme_->GetAuthorization(ref, a.record.url);
    ASSERT_TRUE(got.ok()) << a.record.url << ": " << got.status();
    EXPECT_EQ(got->status, "deactivated") << a.record.url;
    authz_deactivated += got->status == "deactivated";
  }
  int revoked = 0;
  for (const auto& serial : old_serials) {
    auto st = pebble_->StatusBySerial(serial);
    ASSERT_TRUE(st.ok()) << serial << ": " << st.status();
    EXPECT_EQ(st->status, "Revoked") << serial;
    revoked += st->status == "Revoked";
  }
  // Every name again under a live certificate that is not an old one and has a new key.
  const std::set<std::string> old_serial_set(old_serials.begin(), old_serials.end());
  const std::set<std::string> old_key_set(old_spki.begin(), old_spki.end());
  std::set<std::string> reissued_names;
  int reissued = 0;
  v1::ListCertificatesRequest lr;
  lr.set_state(v1::CERTIFICATE_STATE_VALID);
  lr.set_page_size(1000);
  do {
    v1::ListCertificatesResponse page;
    auto lc = Ctx(t.host);
    ASSERT_TRUE(certs_->ListCertificates(lc.get(), lr, &page).ok());
    for (const auto& listed : page.certificates()) {
      v1::GetCertificateRequest gr;
      gr.set_serial(listed.serial());
      v1::Certificate cert;
      auto gc = Ctx(t.host);
      ASSERT_TRUE(certs_->GetCertificate(gc.get(), gr, &cert).ok());
      auto chain = crypto::ParsePemChain(cert.chain_pem());
      ASSERT_TRUE(chain.ok()) << chain.status();
      EXPECT_FALSE(old_serial_set.count(cert.serial())) << "an old certificate is live";
      EXPECT_FALSE(old_key_set.count(chain->front().public_key.ToDer()))
          << cert.serial() << " was reissued under its old key";
      EXPECT_TRUE(cert.service_holds_key());
      for (const auto& name : cert.identifiers()) reissued_names.insert(name);
      ++reissued;
    }
    lr.set_page_token(page.next_page_token());
  } while (!lr.page_token().empty());
  EXPECT_EQ(reissued, n);
  EXPECT_EQ(reissued_names.size(), static_cast<size_t>(n));
  const absl::Duration check_time = Since(check_start);

  // The figures (tests/drill/run copies the block between the markers).
  std::cout << "DRILL-BEGIN\n"
            << "| certificates | " << n << " |\n"
            << "| issuing them before the drill (32 callers) | " << Seconds(issue_time)
            << " s |\n";
  absl::Time previous = drill_start;
  for (const auto& step : report.steps()) {
    std::cout << "| step " << step.name() << " (" << step.detail() << ") | ";
    if (!step.has_finished_at()) {
      std::cout << "skipped |\n";  // deactivate_account, not asked for
      continue;
    }
    const absl::Time finished = FromProto(step.finished_at());
    std::cout << Seconds(finished - previous) << " s |\n";
    previous = finished;
  }
  std::cout << "| **RespondToCompromise, end to end** | **" << Seconds(drill_time) << " s** |\n"
            << "| calls (resumed by run id) | " << resumed + 1 << " |\n"
            << "| Pebble refuses the old key | " << (refused.ok() ? "no" : "yes") << " |\n"
            << "| authorizations deactivated at Pebble | " << authz_deactivated << " of "
            << outstanding->size() << " |\n"
            << "| old certificates revoked at Pebble | " << revoked << " of " << n << " |\n"
            << "| live certificates, new serial and new key | " << reissued << " of " << n
            << " |\n"
            << "| checking all of that against Pebble | " << Seconds(check_time) << " s |\n"
            << "DRILL-END\n";
}

}  // namespace
}  // namespace acmevault
