// The ACME client against the real Pebble of the local stack (tests/run starts it). Every test
// makes its own account and names, so the targets may run in parallel.
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "acme/client.h"
#include "acme/problem.h"
#include "acme/testing/pebble.h"
#include "common/testing/stack_env.h"
#include "crypto/digest.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::acme {
namespace {

using crypto::KeyAlgorithm;
using crypto::PrivateKey;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testing::ChallengeKind;
using testing::IssueCertificate;
using testing::UniqueName;

PrivateKey NewKey(KeyAlgorithm a = KeyAlgorithm::kEcdsaP256) {
  auto k = PrivateKey::Generate(a);
  EXPECT_TRUE(k.ok());
  return *std::move(k);
}

class PebbleTest : public ::testing::Test {
 protected:
  // `prefix` selects the Pebble instance: ACMEVAULT_PEBBLE (main) or ACMEVAULT_PEBBLE_EAB.
  void Connect(const std::string& prefix) {
    directory_ = ::acmevault::testing::StackEnv(prefix + "_DIRECTORY");
    management_ = ::acmevault::testing::StackEnv(prefix + "_MANAGEMENT");
    ca_ = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
    auto transport = CurlTransport::Create({.ca_file = ca_});
    ASSERT_TRUE(transport.ok());
    transport_ = *std::move(transport);
    auto client = AcmeClient::Create({.directory_url = directory_,
                                      .transport = transport_.get(),
                                      .poll_interval = absl::Milliseconds(50),
                                      .exclusive_authorization_requests = true});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    challenges_ = std::make_unique<testing::ChallTestSrv>(
        ::acmevault::testing::StackEnv("ACMEVAULT_CHALLTESTSRV"));
    pebble_ = std::make_unique<testing::PebbleManagement>(management_, ca_);
  }

  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(dir, "ACMEVAULT_PEBBLE_DIRECTORY");
    ACMEVAULT_STACK_ENV_OR_SKIP(cts, "ACMEVAULT_CHALLTESTSRV");
    Connect("ACMEVAULT_PEBBLE");
  }

  // A new account on the CA for `key`.
  Account Register(const PrivateKey& key) {
    auto acct = client_->NewAccount(key, {.contact = {"mailto:ops@example.com"}});
    EXPECT_TRUE(acct.ok()) << acct.status();
    return acct.ok() ? *acct : Account{};
  }

  std::string directory_, management_, ca_;
  std::unique_ptr<CurlTransport> transport_;
  std::unique_ptr<AcmeClient> client_;
  std::unique_ptr<testing::ChallTestSrv> challenges_;
  std::unique_ptr<testing::PebbleManagement> pebble_;
};

TEST_F(PebbleTest, CreateAccountThenFindItWithOnlyReturnExisting) {
  PrivateKey key = NewKey();
  Account acct = Register(key);
  EXPECT_EQ(acct.status, "valid");
  EXPECT_THAT(acct.url, ::testing::StartsWith(directory_.substr(0, directory_.find("/dir"))));
  EXPECT_THAT(acct.contact, ::testing::ElementsAre("mailto:ops@example.com"));

  auto found = client_->NewAccount(key, {.only_return_existing = true});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->url, acct.url);

  auto fetched = client_->GetAccount({&key, acct.url});
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->status, "valid");

  auto updated = client_->UpdateContact({&key, acct.url}, {"mailto:other@example.com"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_THAT(updated->contact, ::testing::ElementsAre("mailto:other@example.com"));

  PrivateKey stranger = NewKey();
  auto missing = client_->NewAccount(stranger, {.only_return_existing = true});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  ASSERT_TRUE(GetProblem(missing.status()).has_value());
  EXPECT_EQ(GetProblem(missing.status())->ShortType(), "accountDoesNotExist");
}

TEST_F(PebbleTest, IssuesWithHttp01AndTheChainVerifiesAgainstPebblesRoot) {
  PrivateKey key = NewKey();
  Account acct = Register(key);
  std::string a = UniqueName("http"), b = UniqueName("http");
  auto issued = IssueCertificate(*client_, {&key, acct.url}, *challenges_, {a, b});
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto chain = crypto::ParsePemChain(issued->chain.pem);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_GE(chain->size(), 2u);
  EXPECT_THAT((*chain)[0].dns_names, UnorderedElementsAre(a, b));
  EXPECT_TRUE((*chain)[0].public_key.Equals(issued->certificate_key->public_key()));

  auto root = pebble_->Root(0);
  ASSERT_TRUE(root.ok()) << root.status();
  auto ders = crypto::SplitPemChain(issued->chain.pem);
  ASSERT_TRUE(ders.ok());
  EXPECT_TRUE(crypto::VerifyChain(*ders, *root, absl::Now()).ok());
}

TEST_F(PebbleTest, IssuesAWildcardWithDns01) {
  PrivateKey key = NewKey(KeyAlgorithm::kEcdsaP384);
  Account acct = Register(key);
  std::string base = UniqueName("wild");
  auto issued = IssueCertificate(*client_, {&key, acct.url}, *challenges_, {"*." + base},
                                 ChallengeKind::kDns01);
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto chain = crypto::ParsePemChain(issued->chain.pem);
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT((*chain)[0].dns_names, UnorderedElementsAre("*." + base));

  // The wildcard's authorization is for the base name, marked wildcard, and offers no http-01.
  auto authz = client_->GetAuthorization({&key, acct.url}, issued->authorizations[0]);
  ASSERT_TRUE(authz.ok());
  EXPECT_EQ(authz->identifier.value, base);
  EXPECT_TRUE(authz->wildcard);
  EXPECT_EQ(authz->Find("http-01"), nullptr);
}

TEST_F(PebbleTest, KeyChangeThenTheNewKeyIssuesAndTheOldKeyIsRefused) {
  PrivateKey old_key = NewKey();
  Account acct = Register(old_key);
  PrivateKey new_key = NewKey(KeyAlgorithm::kRsa2048);
  ASSERT_TRUE(client_->KeyChange({&old_key, acct.url}, new_key).ok());

  auto with_old = client_->GetAccount({&old_key, acct.url});
  ASSERT_FALSE(with_old.ok());
  // Pebble answers a stale key with 400 malformed (docs/DESIGN.md, "What Pebble taught us"), not 409.
  EXPECT_EQ(with_old.status().code(), absl::StatusCode::kInvalidArgument) << with_old.status();

  auto found = client_->NewAccount(new_key, {.only_return_existing = true});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->url, acct.url);
  EXPECT_EQ(client_->NewAccount(old_key, {.only_return_existing = true}).status().code(),
            absl::StatusCode::kNotFound);

  auto issued =
      IssueCertificate(*client_, {&new_key, acct.url}, *challenges_, {UniqueName("rolled")});
  EXPECT_TRUE(issued.ok()) << issued.status();
  auto refused = client_->NewOrder({&old_key, acct.url}, {{{"dns", UniqueName("old")}}});
  EXPECT_FALSE(refused.ok());
}

TEST_F(PebbleTest, DeactivatedAccountIsRefusedEverything) {
  PrivateKey key = NewKey();
  Account acct = Register(key);
  auto deactivated = client_->DeactivateAccount({&key, acct.url});
  ASSERT_TRUE(deactivated.ok()) << deactivated.status();
  EXPECT_EQ(deactivated->status, "deactivated");

  auto order = client_->NewOrder({&key, acct.url}, {{{"dns", UniqueName("dead")}}});
  ASSERT_FALSE(order.ok());
  EXPECT_TRUE(IsAccountUnusable(order.status())) << order.status();
  EXPECT_EQ(order.status().code(), absl::StatusCode::kPermissionDenied);
  auto get = client_->GetAccount({&key, acct.url});
  EXPECT_TRUE(IsAccountUnusable(get.status())) << get.status();
  EXPECT_TRUE(IsAccountUnusable(
      client_->KeyChange({&key, acct.url}, NewKey())));
}

TEST_F(PebbleTest, DeactivatesAnAuthorization) {
  PrivateKey key = NewKey();
  Account acct = Register(key);
  auto order = client_->NewOrder({&key, acct.url}, {{{"dns", UniqueName("authz")}}});
  ASSERT_TRUE(order.ok()) << order.status();
  ASSERT_EQ(order->authorizations.size(), 1u);
  auto before = client_->GetAuthorization({&key, acct.url}, order->authorizations[0]);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->status, "pending");
  auto after = client_->DeactivateAuthorization({&key, acct.url}, order->authorizations[0]);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, "deactivated");
  auto again = client_->GetAuthorization({&key, acct.url}, order->authorizations[0]);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, "deactivated");
}

TEST_F(PebbleTest, RevokesByAccountKeyAndByCertificateKeyWithReasons) {
  PrivateKey key = NewKey();
  Account acct = Register(key);
  auto first = IssueCertificate(*client_, {&key, acct.url}, *challenges_, {UniqueName("rev")});
  auto second = IssueCertificate(*client_, {&key, acct.url}, *challenges_, {UniqueName("rev")});
  ASSERT_TRUE(first.ok() && second.ok());
  auto leaf1 = crypto::ParsePemChain(first->chain.pem);
  auto leaf2 = crypto::ParsePemChain(second->chain.pem);
  ASSERT_TRUE(leaf1.ok() && leaf2.ok());

  auto status = pebble_->StatusBySerial((*leaf1)[0].serial_hex);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status, "Valid");

  ASSERT_TRUE(client_
                  ->RevokeCertificate({&key, acct.url}, (*leaf1)[0].der,
                                      RevocationReason::kSuperseded)
                  .ok());
  status = pebble_->StatusBySerial((*leaf1)[0].serial_hex);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->status, "Revoked");
  EXPECT_EQ(status->reason, 4);

  ASSERT_TRUE(client_
                  ->RevokeWithCertificateKey(*second->certificate_key, (*leaf2)[0].der,
                                             RevocationReason::kKeyCompromise)
                  .ok());
  status = pebble_->StatusBySerial((*leaf2)[0].serial_hex);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->status, "Revoked");
  EXPECT_EQ(status->reason, 1);

  // Revoking again is a CA error with its ACME type in the message.
  absl::Status again = client_->RevokeCertificate({&key, acct.url}, (*leaf1)[0].der,
                                                  RevocationReason::kSuperseded);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_THAT(again.message(), HasSubstr("alreadyRevoked"));
}

TEST_F(PebbleTest, AlternateChainIsChosenByIssuerName) {
  ACMEVAULT_STACK_ENV_OR_SKIP(alternates, "ACMEVAULT_PEBBLE_ALTERNATE_ROOTS");
  ASSERT_NE(alternates, "0") << "tests/run starts Pebble with alternate roots";
  PrivateKey key = NewKey();
  Account acct = Register(key);
  auto issued = IssueCertificate(*client_, {&key, acct.url}, *challenges_, {UniqueName("alt")});
  ASSERT_TRUE(issued.ok()) << issued.status();
  ASSERT_EQ(issued->chain.alternates.size(), 1u);

  auto alt_root = pebble_->Root(1);
  ASSERT_TRUE(alt_root.ok());
  auto alt_root_info = crypto::ParsePemChain(*alt_root);
  ASSERT_TRUE(alt_root_info.ok());
  const std::string alt_root_name = (*alt_root_info)[0].subject_cn;

  auto chosen =
      client_->DownloadCertificate({&key, acct.url}, issued->chain.url, alt_root_name);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->url, issued->chain.alternates[0]);
  auto ders = crypto::SplitPemChain(chosen->pem);
  ASSERT_TRUE(ders.ok());
  EXPECT_TRUE(crypto::VerifyChain(*ders, *alt_root, absl::Now()).ok());
  auto root0 = pebble_->Root(0);
  ASSERT_TRUE(root0.ok());
  EXPECT_FALSE(crypto::VerifyChain(*ders, *root0, absl::Now()).ok());

  // An unknown issuer name keeps the default chain.
  auto fallback = client_->DownloadCertificate({&key, acct.url}, issued->chain.url, "Nobody");
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ(fallback->url, issued->chain.url);
}

class PebbleEabTest : public PebbleTest {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(dir, "ACMEVAULT_PEBBLE_EAB_DIRECTORY");
    ACMEVAULT_STACK_ENV_OR_SKIP(cts, "ACMEVAULT_CHALLTESTSRV");
    Connect("ACMEVAULT_PEBBLE_EAB");
    kid_ = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_EAB_EAB_KID");
    std::string encoded = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_EAB_EAB_HMAC");
    ASSERT_TRUE(crypto::Base64UrlDecode(encoded, &mac_key_));
  }
  std::string kid_, mac_key_;
};

TEST_F(PebbleEabTest, ExternalAccountBindingIsRequiredAndChecked) {
  auto dir = client_->GetDirectory();
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(dir->external_account_required);

  PrivateKey key = NewKey();
  auto without = client_->NewAccount(key, {});
  EXPECT_EQ(without.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(without.status().message(), HasSubstr("External Account Binding"));

  auto wrong_mac = client_->NewAccount(
      key, {.eab_kid = kid_, .eab_mac_key = "0123456789abcdef0123456789abcdef"});
  EXPECT_FALSE(wrong_mac.ok());

  auto bound = client_->NewAccount(key, {.eab_kid = kid_, .eab_mac_key = mac_key_});
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(bound->status, "valid");
  auto issued =
      IssueCertificate(*client_, {&key, bound->url}, *challenges_, {UniqueName("eab")});
  EXPECT_TRUE(issued.ok()) << issued.status();
}

}  // namespace
}  // namespace acmevault::acme
