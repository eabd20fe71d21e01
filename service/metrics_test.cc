#include "service/metrics.h"

#include "acme/http.h"
#include "acme/problem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, CountsRpcsAcmeErrorsIssuanceAndKeyAge) {
  Metrics m;
  m.RecordRpc("IssueCertificate", absl::StatusCode::kOk, absl::Milliseconds(30));
  m.RecordRpc("IssueCertificate", absl::StatusCode::kOk, absl::Milliseconds(40));
  m.RecordRpc("IssueCertificate", absl::StatusCode::kPermissionDenied, absl::Milliseconds(1));
  acme::HttpResponse r{429, {}, R"({"type":"urn:ietf:params:acme:error:rateLimited"})"};
  m.RecordAcme("newOrder", acme::ProblemStatus(r, "POST newOrder", absl::Now()));
  m.RecordAcme("newOrder", absl::OkStatus());
  m.RecordAcme("finalize", absl::UnavailableError("connection refused"));
  m.RecordIssuance(absl::Seconds(2), true);
  m.SetAccountKeyAge("acme-corp", absl::Hours(2));
  m.RecordKeyRotation("acme-corp", "rotated");
  m.RecordKeyRotation("acme-corp", "failed");
  m.RecordKeyRotation("acme-corp", "failed");
  m.RecordRenewal("acme-corp", "renewed");
  m.SetCertificatesDue(3);
  m.AddRpcsInFlight(1);
  m.AddRpcsInFlight(1);
  m.AddRpcsInFlight(-1);
  m.RecordRpcRejected("threads");
  m.RecordHttp01(200);
  m.RecordHttp01(404);
  m.RecordHttp01(200);
  std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr(
                        "acmevault_rpc_requests_total{code=\"OK\",method=\"IssueCertificate\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_rpc_requests_total{code=\"PERMISSION_DENIED\","
                              "method=\"IssueCertificate\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_rpc_latency_seconds_count{method=\"IssueCertificate\"} 3"));
  EXPECT_THAT(text, HasSubstr("acmevault_acme_requests_total{operation=\"newOrder\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_certificate_renewals_total{result=\"renewed\","
                              "tenant=\"acme-corp\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_certificates_due_for_renewal 3"));
  EXPECT_THAT(text, HasSubstr(
                        "acmevault_acme_errors_total{operation=\"newOrder\",type=\"rateLimited\"} 1"));
  EXPECT_THAT(text, HasSubstr(
                        "acmevault_acme_errors_total{operation=\"finalize\",type=\"UNAVAILABLE\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_issuance_duration_seconds_count{outcome=\"ok\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_account_key_age_seconds{tenant=\"acme-corp\"} 7200"));
  EXPECT_THAT(text, HasSubstr("acmevault_account_key_rotations_total{outcome=\"failed\","
                              "tenant=\"acme-corp\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_account_key_rotations_total{outcome=\"rotated\","
                              "tenant=\"acme-corp\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_rpcs_in_flight 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_rpcs_rejected_total{limit=\"threads\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_http01_requests_total{code=\"200\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_http01_requests_total{code=\"404\"} 1"));
}

TEST(Metrics, CountsTheWorkEnginesJobsByKind) {
  Metrics m;
  m.SetJobsDue("order_step", 12);
  m.RecordJobStart("order_step", absl::Milliseconds(20));
  m.RecordJobStart("order_step", absl::Milliseconds(40));
  m.RecordJobStart("renew", absl::Seconds(3));
  m.RecordJobEnd("order_step", "retried");
  m.RecordJobEnd("renew", "failed");
  m.RecordJobClaim(absl::Milliseconds(2));
  std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_jobs_due{kind=\"order_step\"} 12"));
  EXPECT_THAT(text, HasSubstr("acmevault_jobs_running{kind=\"order_step\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_jobs_running{kind=\"renew\"} 0"));
  EXPECT_THAT(text,
              HasSubstr("acmevault_job_runs_total{kind=\"order_step\",outcome=\"retried\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_job_runs_total{kind=\"renew\",outcome=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_job_queue_age_seconds_count{kind=\"order_step\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_job_claim_seconds_count 1"));
}

TEST(MetricsServer, ServesTheExpositionOnLoopback) {
  Metrics m;
  m.RecordIssuance(absl::Seconds(1), false);
  auto server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.status();
  auto http = acme::CurlTransport::Create({.allow_http = true});
  ASSERT_TRUE(http.ok());
  auto r = (*http)->Send(
      {"GET", "http://127.0.0.1:" + std::to_string((*server)->port()) + "/metrics", {}, ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->body, HasSubstr("acmevault_issuance_duration_seconds_count{outcome=\"error\"} 1"));

  auto busy = MetricsServer::Start("127.0.0.1:" + std::to_string((*server)->port()), m);
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace acmevault::service
