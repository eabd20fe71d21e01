// 200 issuances against a Pebble that rejects half of all valid nonces (PEBBLE_WFE_NONCEREJECT=50,
// started by tests/run as the "noncy" instance): every one must succeed, because badNonce is
// retried with the nonce the error carries.
#include <atomic>
#include <thread>
#include <vector>

#include "acme/client.h"
#include "acme/testing/pebble.h"
#include "common/testing/stack_env.h"
#include "gtest/gtest.h"

namespace acmevault::acme {
namespace {

constexpr int kIssuances = 200;
constexpr int kWorkers = 4;

TEST(NonceStress, TwoHundredIssuancesAtFiftyPercentNonceRejectionAllSucceed) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_NONCY_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(reject, "ACMEVAULT_PEBBLE_NONCY_NONCE_REJECT");
  ASSERT_EQ(reject, "50");
  auto transport =
      CurlTransport::Create({.ca_file = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA")});
  ASSERT_TRUE(transport.ok());
  auto client = AcmeClient::Create({.directory_url = directory,
                                    .transport = transport->get(),
                                    .poll_interval = absl::Milliseconds(20),
                                    .exclusive_authorization_requests = true});
  ASSERT_TRUE(client.ok());
  testing::ChallTestSrv challenges(::acmevault::testing::StackEnv("ACMEVAULT_CHALLTESTSRV"));

  std::atomic<int> next{0}, ok{0};
  std::vector<std::string> failures[kWorkers];
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
      if (!key.ok()) return failures[w].push_back(key.status().ToString());
      auto acct = (*client)->NewAccount(*key, {});
      if (!acct.ok()) return failures[w].push_back(acct.status().ToString());
      while (next.fetch_add(1) < kIssuances) {
        auto issued = testing::IssueCertificate(**client, {&*key, acct->url}, challenges,
                                                {testing::UniqueName("noncy")});
        if (issued.ok()) {
          ok.fetch_add(1);
        } else {
          failures[w].push_back(issued.status().ToString());
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  for (const auto& f : failures) {
    for (const auto& msg : f) ADD_FAILURE() << msg;
  }
  EXPECT_EQ(ok.load(), kIssuances);
  // Half the nonces were refused: the retries really happened (at least 7 POSTs an issuance).
  EXPECT_GT((*client)->bad_nonce_retries(), kIssuances * 7 / 4);
  std::printf("issuances=%d requests=%lld badNonce retries=%lld\n", ok.load(),
              static_cast<long long>((*client)->requests_sent()),
              static_cast<long long>((*client)->bad_nonce_retries()));
}

}  // namespace
}  // namespace acmevault::acme
