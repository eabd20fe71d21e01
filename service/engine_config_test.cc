#include "service/engine_config.h"

#include <google/protobuf/text_format.h>

#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

v1::ServerConfig Parse(const std::string& text) {
  v1::ServerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  return config;
}

TEST(EngineSettingsFrom, UnsetFieldsTakeTheDocumentedDefaults) {
  EngineSettings s = EngineSettingsFrom(Parse(""));
  EXPECT_EQ(s.engine.workers, 0);  // Engine::Create makes it the machine's cores.
  EXPECT_EQ(s.engine.claim_batch, 0);
  EXPECT_EQ(s.engine.prefetch, 0);
  EXPECT_EQ(s.engine.per_tenant_limit, 32);
  EXPECT_EQ(s.engine.per_ca_limit, 64);
  EXPECT_EQ(s.engine.idle_poll, absl::Seconds(1));
  EXPECT_EQ(s.engine.lease_duration, absl::Seconds(60));
  EXPECT_EQ(s.engine.initial_backoff, absl::Seconds(1));
  EXPECT_EQ(s.engine.max_backoff, absl::Minutes(5));
  EXPECT_EQ(s.engine.max_attempts, 10);
  EXPECT_EQ(s.engine.keep_within, absl::Seconds(2));
  EXPECT_EQ(s.engine.keep_for, absl::Seconds(10));
  EXPECT_TRUE(s.engine.claim_on_create);
  EXPECT_EQ(s.engine.claim_on_create_queue, 0);  // Engine::Create: 16 per worker and prefetch
  EXPECT_EQ(s.order_poll_first_delay, absl::Milliseconds(10));
  EXPECT_EQ(s.order_poll_max_delay, absl::Seconds(10));
  EXPECT_EQ(s.order_processing_timeout, absl::Hours(1));
  EXPECT_EQ(s.order_stalled_look_interval, absl::Hours(1));
  // Let's Encrypt's published limits: 300 new orders per account per 3 hours, 5 certificates
  // per exact set of identifiers per week, 10 new accounts per IP per 3 hours.
  const CaLimits& limits = s.ca_limits.defaults;
  EXPECT_EQ(limits.new_orders.capacity, 300);
  EXPECT_EQ(limits.new_orders.period, absl::Hours(3));
  EXPECT_EQ(limits.duplicate_certificates.capacity, 5);
  EXPECT_EQ(limits.duplicate_certificates.period, absl::Hours(7 * 24));
  EXPECT_EQ(limits.new_accounts.capacity, 10);
  EXPECT_EQ(limits.new_accounts.period, absl::Hours(3));
  EXPECT_TRUE(s.ca_limits.by_directory.empty());
}

TEST(EngineSettingsFrom, CaLimitsApplyByDirectoryAndANegativeBudgetTurnsItOff) {
  EngineSettings s = EngineSettingsFrom(Parse(R"pb(
    engine { order_processing_timeout_seconds: 600 order_stalled_look_interval_seconds: 7200 }
    ca_limits {
      new_orders: 50
      new_orders_period_seconds: 3600
      duplicate_certificates: 2
      duplicate_certificates_period_seconds: 60
      new_accounts: -1
      new_accounts_period_seconds: 120
    }
    ca_limits_by_directory { directory_url: "https://ca.one/dir" new_orders: 10 }
    ca_limits_by_directory {
      directory_url: "https://ca.two/dir"
      new_orders: -1
      duplicate_certificates: -1
      new_accounts: 3
    }
  )pb"));
  EXPECT_EQ(s.order_processing_timeout, absl::Minutes(10));
  EXPECT_EQ(s.order_stalled_look_interval, absl::Hours(2));
  const CaLimits& any = s.ca_limits.For("https://elsewhere.test/dir");
  EXPECT_EQ(any.new_orders.capacity, 50);
  EXPECT_EQ(any.new_orders.period, absl::Hours(1));
  EXPECT_EQ(any.duplicate_certificates.capacity, 2);
  EXPECT_EQ(any.duplicate_certificates.period, absl::Minutes(1));
  EXPECT_EQ(any.new_accounts.capacity, 0);
  EXPECT_EQ(any.new_accounts.period, absl::Minutes(2));
  ASSERT_EQ(s.ca_limits.by_directory.size(), 2u);
  // Each directory's limits are whole: unset fields take the defaults.
  const CaLimits& one = s.ca_limits.For("https://ca.one/dir");
  EXPECT_EQ(one.new_orders.capacity, 10);
  EXPECT_EQ(one.new_orders.period, absl::Hours(3));
  EXPECT_EQ(one.duplicate_certificates.capacity, 5);
  EXPECT_EQ(one.new_accounts.capacity, 10);
  const CaLimits& two = s.ca_limits.For("https://ca.two/dir");
  EXPECT_EQ(two.new_orders.capacity, 0);
  EXPECT_EQ(two.duplicate_certificates.capacity, 0);
  EXPECT_EQ(two.new_accounts.capacity, 3);
  EXPECT_EQ(two.new_accounts.period, absl::Hours(3));
}

TEST(EngineSettingsFrom, EveryFieldThatIsSetIsUsed) {
  EngineSettings s = EngineSettingsFrom(Parse(R"pb(
    order_lease_seconds: 4
    engine {
      workers: 3
      claim_batch: 5
      prefetch: 2
      per_tenant_limit: 7
      per_ca_limit: 9
      idle_poll_ms: 250
      lease_seconds: 30
      initial_backoff_ms: 500
      max_backoff_ms: 20000
      max_attempts: 4
      order_poll_first_delay_ms: 40
      order_poll_max_delay_ms: 2000
      keep_within_ms: 500
      keep_for_ms: 3000
      claim_on_create: false
      claim_on_create_queue: 12
    }
  )pb"));
  EXPECT_EQ(s.engine.workers, 3);
  EXPECT_EQ(s.engine.claim_batch, 5);
  EXPECT_EQ(s.engine.prefetch, 2);
  EXPECT_EQ(s.engine.per_tenant_limit, 7);
  EXPECT_EQ(s.engine.per_ca_limit, 9);
  EXPECT_EQ(s.engine.idle_poll, absl::Milliseconds(250));
  EXPECT_EQ(s.engine.lease_duration, absl::Seconds(30));  // engine.lease_seconds wins
  EXPECT_EQ(s.engine.initial_backoff, absl::Milliseconds(500));
  EXPECT_EQ(s.engine.max_backoff, absl::Seconds(20));
  EXPECT_EQ(s.engine.max_attempts, 4);
  EXPECT_EQ(s.order_poll_first_delay, absl::Milliseconds(40));
  EXPECT_EQ(s.order_poll_max_delay, absl::Seconds(2));
  EXPECT_EQ(s.engine.keep_within, absl::Milliseconds(500));
  EXPECT_EQ(s.engine.keep_for, absl::Seconds(3));
  EXPECT_FALSE(s.engine.claim_on_create);
  EXPECT_EQ(s.engine.claim_on_create_queue, 12);
}

TEST(EngineSettingsFrom, ANegativeKeepWindowTurnsKeepingOff) {
  EXPECT_EQ(EngineSettingsFrom(Parse("engine { keep_within_ms: -1 }")).engine.keep_within,
            absl::ZeroDuration());
}

TEST(EngineSettingsFrom, TheOrderLeaseIsTheJobLeaseWhenTheEngineNamesNone) {
  EXPECT_EQ(EngineSettingsFrom(Parse("order_lease_seconds: 4")).engine.lease_duration,
            absl::Seconds(4));
}

}  // namespace
}  // namespace acmevault::service
