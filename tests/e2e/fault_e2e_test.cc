// End to end through a fault-injecting proxy (tests/testing/fault_proxy.h): a real acmevaultd,
// the stack's PostgreSQL, and a Pebble of its own (no nonce rejection, so a request the proxy
// holds back is still good when it is released) that acmevaultd reaches only through the
// proxy: each tenant's directory is the proxy's. tests/run prepares the service
// (deploy/local/service prepare e2efault) and passes its config as ACMEVAULT_E2E_FAULT_CONFIG.
//
// Each test makes the CA act while its answer is lost (or act later than its client gave up, or
// answer with an HTML error page) and then checks what the database says against what Pebble
// says: keys, accounts and certificates must agree, and no acmevaultd process may die.
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <iterator>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "acme/client.h"
#include "acme/http.h"
#include "acme/testing/pebble.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "storage/postgres_store.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/testing/fault_proxy.h"

namespace acmevault {
namespace {

using ::acmevault::testing::FaultAction;
using ::acmevault::testing::FaultProxy;
using ::acmevault::testing::FaultRule;
using ::acmevault::testing::StackEnv;
using e2e::ReadFile;

// Pebble 2.4.0's resource paths that its directory does not list (its wfe.go constants).
constexpr char kAuthzPath[] = "/authZ/";
constexpr char kChallengePath[] = "/chalZ/";
constexpr char kOrderPath[] = "/my-order/";
constexpr char kFinalizePath[] = "/finalize-order/";
constexpr char kCertificatePath[] = "/certZ/";

// What a misconfigured load balancer in front of a CA answers: HTML, Latin-1 (so not UTF-8),
// longer than the 512 bytes a problem detail is clipped to.
std::string HtmlErrorPage() {
  std::string page =
      "<html><head><title>503 Service Unavailable</title></head><body>"
      "<h1>Dienst vor\xFC"
      "bergehend nicht verf\xFC"
      "gbar</h1><p>";
  for (int i = 0; i < 20; ++i) page += "Bitte versuchen Sie es sp\xE4ter erneut. ";
  return page + "</p><address>\xA9 CA-Betreiber</address></body></html>";
}

bool IsUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const size_t extra = c < 0x80             ? 0
                         : (c & 0xE0) == 0xC0 ? 1
                         : (c & 0xF0) == 0xE0 ? 2
                         : (c & 0xF8) == 0xF0 ? 3
                                              : 4;
    if (extra == 4 || i + extra >= s.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

class FaultE2eTest : public e2e::E2eFixture {
 protected:
  const char* config_env() const override { return "ACMEVAULT_E2E_FAULT_CONFIG"; }
  // Short leases, so an order whose run stopped is resumed within seconds.
  std::string ExtraConfig() const override {
    return "order_lease_seconds: 4\nresume_interval_seconds: 1\n";
  }

  void SetUp() override {
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::string pebble = StackEnv("ACMEVAULT_PEBBLE_E2EFAULT_DIRECTORY");
    const std::string ca_file = StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
    ASSERT_FALSE(pebble.empty()) << "ACMEVAULT_PEBBLE_E2EFAULT_DIRECTORY is not set";
    const size_t path = pebble.find('/', std::string("https://").size());
    // The proxy presents the stack's own server certificate, which acmevaultd's ca_file trusts.
    auto proxy = FaultProxy::Create({.upstream_origin = pebble.substr(0, path),
                                     .upstream_ca_file = ca_file,
                                     .cert_pem = ReadFile(StackEnv("ACMEVAULT_STACK_TLS_CERT")),
                                     .key_pem = ReadFile(StackEnv("ACMEVAULT_STACK_TLS_KEY"))});
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    directory_path_ = pebble.substr(path);
    directory_url_ = proxy_->Url(directory_path_);

    auto http = acme::CurlTransport::Create({.ca_file = ca_file});
    ASSERT_TRUE(http.ok());
    http_ = *std::move(http);
    auto client =
        acme::AcmeClient::Create({.directory_url = directory_url_, .transport = http_.get()});
    ASSERT_TRUE(client.ok());
    acme_ = *std::move(client);
    auto directory = acme_->GetDirectory();
    ASSERT_TRUE(directory.ok()) << directory.status();
    directory_ = *directory;

    auto store = OpenStore();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    pebble_ = std::make_unique<acme::testing::PebbleManagement>(
        StackEnv("ACMEVAULT_PEBBLE_E2EFAULT_MANAGEMENT"), ca_file);
  }

  // A tenant whose CA directory is the proxy's.
  TenantTokens ProxiedTenant(bool with_account = true, bool keep_authorizations = false) {
    return NewTenant(with_account, keep_authorizations, "", directory_url_);
  }

  // For failure messages: every request the proxy saw.
  std::string ProxyLog() {
    std::string out;
    for (const auto& line : proxy_->Log()) absl::StrAppend(&out, "\n  ", line);
    return out;
  }

  grpc::Status Rollover(const TenantTokens& t, v1::RolloverAccountKeyResponse* out = nullptr) {
    v1::RolloverAccountKeyResponse ignored;
    auto c = Ctx(t.admin);
    return accounts_->RolloverAccountKey(c.get(), {}, out ? out : &ignored);
  }
  absl::StatusOr<v1::Account> GetAccount(const TenantTokens& t) {
    v1::Account account;
    auto c = Ctx(t.admin);
    grpc::Status s = accounts_->GetAccount(c.get(), {}, &account);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return account;
  }
  grpc::Status DeactivateAccount(const TenantTokens& t, const std::string& url) {
    v1::DeactivateAccountRequest r;
    r.set_confirm_account_url(url);
    v1::Account account;
    auto c = Ctx(t.admin);
    return accounts_->DeactivateAccount(c.get(), r, &account);
  }

  // The tenant's account row with `url` and all its key versions, as the database has them.
  struct Stored {
    storage::Scope scope;
    storage::Account account;
    std::vector<storage::AccountKey> keys;
  };
  absl::StatusOr<Stored> StoredAccount(const TenantTokens& t, const std::string& url) {
    auto tenant = store_->FindTenantByName(t.name);
    if (!tenant.ok()) return tenant.status();
    Stored s;
    s.scope = {tenant->id, {"e2e-test", "fault_e2e_test"}};
    auto accounts = store_->ListAccounts(s.scope);
    if (!accounts.ok()) return accounts.status();
    for (const auto& a : *accounts) {
      if (a.account_url == url) s.account = a;
    }
    if (s.account.account_url.empty()) return absl::NotFoundError("no stored account " + url);
    auto keys = store_->ListKeys(s.scope, s.account.id);
    if (!keys.ok()) return keys.status();
    s.keys = *std::move(keys);
    return s;
  }

  // The stored key versions Pebble accepts as the account's key: newAccount with
  // onlyReturnExisting (RFC 8555 §7.3.1) signed by each, through the proxy with no rule left.
  std::vector<int> VersionsPebbleAccepts(const Stored& s) {
    std::vector<int> accepted;
    for (const auto& k : s.keys) {
      auto key = store_->GetKey(s.scope, s.account.id, k.version, "fault_e2e_test probe");
      // A compromised key is never unsealed again; these tenants' keys are in the vault.
      if (!key.ok() || !key->private_key) continue;
      auto found = acme_->NewAccount(*key->private_key, {.only_return_existing = true});
      if (found.ok() && found->url == s.account.account_url) accepted.push_back(k.version);
    }
    return accepted;
  }

  // Waits (bounded) until the account has no pending key, then checks that its one active key
  // is the one key Pebble accepts and that GetAccount reports it.
  void ExpectTheStoredActiveKeyIsTheOnePebbleAccepts(const TenantTokens& t,
                                                     const std::string& url) {
    absl::StatusOr<Stored> s;
    for (int i = 0; i < 120; ++i) {
      s = StoredAccount(t, url);
      ASSERT_TRUE(s.ok()) << s.status();
      bool pending = false;
      for (const auto& k : s->keys) pending |= k.state == storage::KeyState::kPending;
      if (!pending) break;
      absl::SleepFor(absl::Milliseconds(500));
    }
    std::vector<int> active;
    std::string states;
    for (const auto& k : s->keys) {
      if (k.state == storage::KeyState::kActive) active.push_back(k.version);
      absl::StrAppend(&states, " v", k.version, "=", storage::KeyStateName(k.state));
    }
    proxy_->ClearRules();
    const std::vector<int> accepted = VersionsPebbleAccepts(*s);
    ASSERT_EQ(accepted.size(), 1u)
        << "Pebble accepts " << accepted.size() << " stored keys; stored:" << states;
    EXPECT_THAT(active, ::testing::ElementsAre(accepted[0]))
        << "the database's active key is not the one Pebble accepts (version " << accepted[0]
        << "); stored:" << states;
    auto account = GetAccount(t);
    ASSERT_TRUE(account.ok()) << account.status();
    EXPECT_EQ(account->key_version(), accepted[0]);
  }

  // How many of the tenant's audit rows record `action` with outcome "ok".
  absl::StatusOr<int> AuditActions(const storage::Scope& scope, absl::string_view action) {
    int n = 0;
    storage::PageRequest page{"", 1000};
    do {
      auto rows = store_->ListAudit(scope, page);
      if (!rows.ok()) return rows.status();
      for (const auto& r : rows->items) n += r.event.action == action && r.event.outcome == "ok";
      page.page_token = rows->next_page_token;
    } while (!page.page_token.empty());
    return n;
  }

  std::unique_ptr<FaultProxy> proxy_;
  std::string directory_path_, directory_url_;
  acme::Directory directory_;
  std::unique_ptr<acme::CurlTransport> http_;
  std::unique_ptr<acme::AcmeClient> acme_;
  std::unique_ptr<storage::PostgresStore> store_;
  std::unique_ptr<acme::testing::PebbleManagement> pebble_;
};

// keyChange reaches Pebble and is applied; its answer never reaches acmevaultd.
TEST_F(FaultE2eTest, KeyChangeAppliedButTheAnswerLost) {
  TenantTokens t = ProxiedTenant();
  auto before = GetAccount(t);
  ASSERT_TRUE(before.ok()) << before.status();
  const int rule = proxy_->AddRule(
      {.method = "POST", .jws_url = directory_.key_change, .action = FaultAction::kDropResponse});
  grpc::Status s = Rollover(t);
  ASSERT_GE(proxy_->Hits(rule), 1) << ProxyLog();
  proxy_->ClearRules();
  (void)s;  // Either answer is acceptable; what the database says afterwards is not.
  ExpectTheStoredActiveKeyIsTheOnePebbleAccepts(t, before->account_url());
}

// Three rollovers of one account at once, round after round, one caller of each round with a
// deadline short enough to cancel it before, during or after its keyChange (whose answer the
// proxy holds back 3 s): the callers whose
// deadline holds either win or are ABORTED (never refused by the CA for a key retired a moment
// earlier); a cancelled call either applied (GetAccount and the audit log show it) or left
// nothing; no key version is burned (versions 1..n, every one but the last retired); the stored
// active key is the one Pebble accepts; issuance works afterwards. Rounds:
// ACMEVAULT_ROLLOVER_ROUNDS (default 5; tests/drill/run --rollovers 50 runs the full drill).
TEST_F(FaultE2eTest, ConcurrentRolloversLeaveTheKeyPebbleAccepts) {
  int rounds = 5;
  if (const char* r = std::getenv("ACMEVAULT_ROLLOVER_ROUNDS")) ASSERT_TRUE(absl::SimpleAtoi(r, &rounds));
  TenantTokens t = ProxiedTenant();
  auto before = GetAccount(t);
  ASSERT_TRUE(before.ok()) << before.status();
  // A cancelled caller's deadline, by round. The service refuses a call with less than its
  // key_change_time (2 s) left before touching anything, and keyChange's answer is held back
  // 3 s here: so the deadline ends before the call starts, before keyChange is sent, while it
  // is in flight (the service goes on and records the outcome), or not at all.
  constexpr int kCancelMs[] = {1, 2300, 50, 2600, 1990, 4500, 2100, 3000};
  int versions = 1, won = 0, cancelled_applied = 0, cancelled_left_nothing = 0, aborted = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<grpc::Status> results(3);
    std::vector<std::thread> threads;
    const int cancel_ms = kCancelMs[round % std::size(kCancelMs)];
    proxy_->AddRule({.method = "POST",
                     .jws_url = directory_.key_change,
                     .action = FaultAction::kDelayResponse,
                     .delay = absl::Seconds(3)});
    // Every other round the cancelled caller starts 50 ms ahead, so it is the one holding the
    // account's key lease when its deadline ends.
    const bool cancelled_first = round % 2 == 1;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] {
        if (cancelled_first && i != 2) absl::SleepFor(absl::Milliseconds(50));
        v1::RolloverAccountKeyResponse ignored;
        auto c = Ctx(t.admin);
        if (i == 2) {
          c->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(cancel_ms));
        }
        results[i] = accounts_->RolloverAccountKey(c.get(), {}, &ignored);
      });
    }
    for (std::thread& th : threads) th.join();
    int won_now = 0, cancelled_now = 0;
    for (int i = 0; i < 3; ++i) {
      const grpc::Status& r = results[i];
      if (r.ok()) {
        ++won_now;
      } else if (i == 2 && r.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        ++cancelled_now;
      } else {
        ++aborted;
        EXPECT_EQ(r.error_code(), grpc::StatusCode::ABORTED)
            << "round " << round << ", caller " << i << ": " << r.error_message();
      }
    }
    ExpectTheStoredActiveKeyIsTheOnePebbleAccepts(t, before->account_url());
    if (HasFatalFailure()) return;
    auto stored = StoredAccount(t, before->account_url());
    ASSERT_TRUE(stored.ok()) << stored.status();
    const int applied = static_cast<int>(stored->keys.size()) - versions;
    EXPECT_GE(applied, won_now) << "round " << round << ": a successful rollover left no key";
    EXPECT_LE(applied, won_now + cancelled_now)
        << "round " << round << ": more keys than rollovers that may have applied";
    if (cancelled_now > 0) ++(applied > won_now ? cancelled_applied : cancelled_left_nothing);
    versions = static_cast<int>(stored->keys.size());
    won += won_now;
    // No version burned: 1..n, the last active (checked above), every other one retired.
    for (size_t k = 0; k < stored->keys.size(); ++k) {
      EXPECT_EQ(stored->keys[k].version, static_cast<int>(k) + 1) << "round " << round;
      if (k + 1 < stored->keys.size()) {
        EXPECT_EQ(stored->keys[k].state, storage::KeyState::kRetired)
            << "round " << round << ", version " << stored->keys[k].version;
      }
    }
    // Every applied rollover, a cancelled caller's too, is in the audit log. Its row follows
    // the promotion, so a cancelled call's may lag its key by a moment: bounded polling.
    int audited = -1;
    for (int i = 0; i < 100 && audited != versions - 1; ++i) {
      if (i > 0) absl::SleepFor(absl::Milliseconds(100));
      auto rows = AuditActions(stored->scope, "Rollover");
      ASSERT_TRUE(rows.ok()) << rows.status();
      audited = *rows;
    }
    EXPECT_EQ(audited, versions - 1) << "round " << round << ": rollovers applied vs audited";
  }
  std::cout << "concurrent rollovers: " << rounds << " rounds of 3 callers: " << won
            << " won, " << aborted << " ABORTED, cancelled callers: " << cancelled_applied
            << " applied, " << cancelled_left_nothing << " left nothing; " << versions
            << " key versions, none burned\n";
  v1::IssueCertificateResponse issued;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("race.", t.name, ".example")}, &issued);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(issued.order().state(), v1::ORDER_STATE_VALID) << issued.order().error();
}

// The CA commits keyChange only after acmevaultd gave up on it (a slow CA; its client timed
// out): the proxy holds the request, cuts acmevaultd's connection, and sends the request on
// once the RPC has answered. The service must not retire the key the CA now holds; once it
// has looked again (a restart probes pending keys), the active key is the one Pebble accepts.
TEST_F(FaultE2eTest, KeyChangeCommittedAfterTheServiceGaveUp) {
  TenantTokens t = ProxiedTenant();
  auto before = GetAccount(t);
  ASSERT_TRUE(before.ok()) << before.status();
  const int rule = proxy_->AddRule(
      {.method = "POST", .jws_url = directory_.key_change, .action = FaultAction::kHold});
  grpc::Status s = Rollover(t);
  EXPECT_FALSE(s.ok()) << "the rollover answered OK although keyChange never got an answer";
  ASSERT_GE(proxy_->Hits(rule), 1) << ProxyLog();
  proxy_->ClearRules();
  auto released = proxy_->ReleaseHeld();
  ASSERT_FALSE(released.empty());
  ASSERT_TRUE(released[0].ok()) << released[0].status();
  ASSERT_EQ(*released[0], 200) << "Pebble did not apply the held keyChange";

  RestartDaemon();
  ExpectTheStoredActiveKeyIsTheOnePebbleAccepts(t, before->account_url());
  // And the account goes on working: a further rollover succeeds and leaves them agreeing.
  grpc::Status again = Rollover(t);
  EXPECT_TRUE(again.ok()) << again.error_message();
  ExpectTheStoredActiveKeyIsTheOnePebbleAccepts(t, before->account_url());
}

// Pebble deactivates the account; acmevaultd never hears so. Once the service has looked again
// (the admin repeats the call), the database says deactivated and a new account can be made.
TEST_F(FaultE2eTest, DeactivationAppliedButTheAnswerLost) {
  TenantTokens t = ProxiedTenant();
  auto before = GetAccount(t);
  ASSERT_TRUE(before.ok()) << before.status();
  const std::string url = before->account_url();
  const int rule = proxy_->AddRule({.method = "POST",
                                    .jws_url = url,
                                    .payload_contains = "deactivated",
                                    .action = FaultAction::kDropResponse});
  grpc::Status first = DeactivateAccount(t, url);
  ASSERT_GE(proxy_->Hits(rule), 1) << ProxyLog();
  EXPECT_FALSE(first.ok()) << "answered OK although the CA's answer was lost";
  proxy_->ClearRules();

  grpc::Status again = DeactivateAccount(t, url);
  EXPECT_TRUE(again.ok() || again.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
      << again.error_code() << ": " << again.error_message();
  auto after = GetAccount(t);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status(), v1::ACCOUNT_STATUS_DEACTIVATED)
      << "the database still says " << v1::AccountStatus_Name(after->status())
      << " for an account Pebble deactivated";

  v1::CreateAccountRequest create;
  create.set_terms_of_service_agreed(true);
  v1::Account created;
  auto c = Ctx(t.admin);
  grpc::Status made = accounts_->CreateAccount(c.get(), create, &created);
  ASSERT_TRUE(made.ok()) << made.error_code() << ": " << made.error_message();
  EXPECT_NE(created.account_url(), url);
  v1::IssueCertificateResponse issued;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("after.", t.name, ".example")}, &issued);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(issued.order().state(), v1::ORDER_STATE_VALID) << issued.order().error();
}

// Finalize reaches Pebble, which issues; the answer is lost. The order is resumed (same
// idempotency key) and its certificate downloaded and stored: one order at Pebble, no reissue.
// With `first_download` set, the resumed run's first download gets that answer instead.
class FinalizeLostTest : public FaultE2eTest {
 protected:
  void Run(const FaultRule* first_download) {
    TenantTokens t = ProxiedTenant();
    const std::string name = absl::StrCat("fin.", t.name, ".example");
    const int new_orders = proxy_->AddRule({.method = "POST", .jws_url = directory_.new_order});
    const int finalize = proxy_->AddRule({.method = "POST",
                                          .jws_url = proxy_->Url(kFinalizePath) + "*",
                                          .action = FaultAction::kDropResponse});
    v1::IssueCertificateResponse first;
    grpc::Status s = IssueWithKey(t, {name}, &first, "fin");
    ASSERT_GE(proxy_->Hits(finalize), 1) << s.error_message() << ProxyLog();
    proxy_->DisableRule(finalize);
    if (first_download != nullptr) proxy_->AddRule(*first_download);

    // The same request again: it joins the order, which a resumed run finishes.
    v1::IssueCertificateResponse done;
    s = IssueWithKey(t, {name}, &done, "fin", /*seconds=*/90);
    ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message() << ProxyLog();
    EXPECT_EQ(done.order().state(), v1::ORDER_STATE_VALID) << done.order().error();
    ASSERT_FALSE(done.certificate().serial().empty()) << "no certificate stored" << ProxyLog();
    EXPECT_EQ(proxy_->Hits(new_orders), 1) << "the certificate was ordered again" << ProxyLog();
    auto at_pebble = pebble_->StatusBySerial(done.certificate().serial());
    ASSERT_TRUE(at_pebble.ok()) << at_pebble.status();
    EXPECT_EQ(at_pebble->status, "Valid");
    v1::ListCertificatesResponse list;
    auto c = Ctx(t.host);
    ASSERT_TRUE(certs_->ListCertificates(c.get(), {}, &list).ok());
    EXPECT_EQ(list.certificates_size(), 1);
  }
};

TEST_F(FinalizeLostTest, TheCertificateIsRecoveredNotReissued) { Run(nullptr); }

// Defect 5 of the hardening issue: the resumed run's first look at the CA says valid, then one
// download fails; the certificate the CA holds must still end up stored, not the order invalid.
TEST_F(FinalizeLostTest, TheCertificateIsRecoveredWhenTheFirstDownloadFails) {
  FaultRule not_found{.method = "POST",
                      .jws_url = proxy_->Url(kCertificatePath) + "*",
                      .action = FaultAction::kRespond};
  not_found.status = 404;
  not_found.headers = {{"Content-Type", "application/problem+json"}};
  not_found.body = R"({"type":"urn:ietf:params:acme:error:malformed",)"
                   R"("detail":"Certificate not found","status":404})";
  not_found.times = 1;
  Run(&not_found);
}

// The default order lease (two minutes): an order whose run stopped on an error page is not
// resumed in the background while later operations are tried, so each death is the operation's.
class HtmlErrorPageTest : public FaultE2eTest {
 protected:
  std::string ExtraConfig() const override { return ""; }

  // True when daemon "a" still answers RPCs; when it does not, waits (bounded) for its process
  // to end, so a crash under way is seen as one.
  bool StillServing(const TenantTokens& t) {
    v1::Account account;
    auto c = Ctx(t.admin, 10);
    grpc::Status s = accounts_->GetAccount(c.get(), {}, &account);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      return daemon_->Alive();
    }
    for (int i = 0; i < 100 && daemon_->Alive(); ++i) absl::SleepFor(absl::Milliseconds(100));
    return false;
  }
};

// An HTML error page (Latin-1, not UTF-8) instead of the CA's answer, on each operation in
// turn: no acmevaultd process dies, and each RPC answers with a clear status.
TEST_F(HtmlErrorPageTest, OnEveryOperation) {
  TenantTokens t = ProxiedTenant(/*with_account=*/false, /*keep_authorizations=*/true);
  auto html = [&](FaultRule match) {
    match.action = FaultAction::kRespond;
    match.status = 503;
    match.headers = {{"Content-Type", "text/html; charset=iso-8859-1"}};
    match.body = HtmlErrorPage();
    return match;
  };
  auto post = [&](const std::string& url, const std::string& payload = "") {
    return html({.method = "POST", .jws_url = url, .payload_contains = payload});
  };
  auto create_account = [&] {
    v1::CreateAccountRequest r;
    r.set_terms_of_service_agreed(true);
    v1::Account a;
    auto c = Ctx(t.admin);
    return accounts_->CreateAccount(c.get(), r, &a);
  };
  int names = 0;
  auto issue = [&] {
    v1::IssueCertificateResponse r;
    grpc::Status s = IssueWithKey(t, {absl::StrCat("h", ++names, ".", t.name, ".example")}, &r);
    if (s.ok() && r.order().state() != v1::ORDER_STATE_VALID) {
      // An order handle is a clear answer only when it says what went wrong.
      return r.order().error().empty()
                 ? grpc::Status(grpc::StatusCode::INTERNAL, "OK with a handle and no error")
                 : grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, r.order().error());
    }
    return s;
  };

  struct Step {
    std::string operation;
    FaultRule rule;
    std::function<grpc::Status()> call;
  };
  auto check = [&](const Step& step) {
    const int id = proxy_->AddRule(step.rule);
    grpc::Status s = step.call();
    proxy_->ClearRules();
    EXPECT_GE(proxy_->Hits(id), 1) << step.operation << ": the page was never served" << ProxyLog();
    if (!StillServing(t)) {
      std::string log = ReadFile(daemon_->log_path());
      ADD_FAILURE() << step.operation << ": acmevaultd died; its log ends:\n"
                    << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
      RestartDaemon();
      return;
    }
    EXPECT_FALSE(s.ok()) << step.operation << ": answered OK";
    EXPECT_NE(s.error_code(), grpc::StatusCode::UNKNOWN)
        << step.operation << ": " << s.error_message();
    EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << step.operation << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << step.operation;
    EXPECT_TRUE(IsUtf8(s.error_message())) << step.operation << ": message is not UTF-8";
  };
  auto must = [&](const char* what, grpc::Status s) {
    ASSERT_TRUE(s.ok()) << what << ": " << s.error_code() << ": " << s.error_message();
  };

  // The directory is fetched first: this proxy's directory is new to the daemon.
  check({"GET directory", html({.method = "GET", .path = directory_path_}), create_account});
  check({"newAccount", post(directory_.new_account), create_account});
  must("CreateAccount without faults", create_account());
  check({"newOrder", post(directory_.new_order), issue});
  check({"authorization", post(proxy_->Url(kAuthzPath) + "*"), issue});
  check({"challenge", post(proxy_->Url(kChallengePath) + "*"), issue});
  check({"order poll", post(proxy_->Url(kOrderPath) + "*"), issue});
  check({"finalize", post(proxy_->Url(kFinalizePath) + "*"), issue});
  check({"certificate download", post(proxy_->Url(kCertificatePath) + "*"), issue});

  // A certificate to revoke, whose authorization stays outstanding (the tenant keeps them).
  v1::IssueCertificateResponse issued;
  must("issuance without faults",
       IssueWithKey(t, {absl::StrCat("clean.", t.name, ".example")}, &issued));
  auto account = GetAccount(t);
  ASSERT_TRUE(account.ok()) << account.status();

  check({"keyChange", post(directory_.key_change), [&] { return Rollover(t); }});
  check({"authorization deactivation", post(proxy_->Url(kAuthzPath) + "*", "deactivated"), [&] {
           v1::DeactivateAuthorizationsResponse counts;
           auto c = Ctx(t.admin);
           grpc::Status s = accounts_->DeactivateAuthorizations(c.get(), {}, &counts);
           // Per-authorization failures are counted, not raised: an answer that counts every
           // one as failed and none as deactivated is as clear as an error.
           if (s.ok() && counts.deactivated() == 0 && counts.failed() + counts.skipped() > 0) {
             return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 absl::StrCat(counts.failed(), " failed"));
           }
           return s;
         }});
  check({"revokeCert", post(directory_.revoke_cert), [&] {
           v1::RevokeCertificateRequest r;
           r.set_serial(issued.certificate().serial());
           r.set_reason(v1::REVOCATION_REASON_SUPERSEDED);
           v1::RevokeCertificateResponse revoked;
           auto c = Ctx(t.admin);
           return certs_->RevokeCertificate(c.get(), r, &revoked);
         }});
  check({"account deactivation", post(account->account_url(), "deactivated"),
         [&] { return DeactivateAccount(t, account->account_url()); }});
}

}  // namespace
}  // namespace acmevault
