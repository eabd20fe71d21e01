#include "clients/cli/format.h"

#include "acmevault/v1/account_service.pb.h"
#include "acmevault/v1/certificate_service.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1893456000);  // 2030-01-01T00:00:00Z

TEST(FormatTest, RelativeTimes) {
  EXPECT_EQ(Relative(kNow + absl::Hours(24 * 61) + absl::Minutes(5), kNow), "in 61 days");
  EXPECT_EQ(Relative(kNow - absl::Hours(3), kNow), "3 hours ago");
  EXPECT_EQ(Relative(kNow + absl::Seconds(100), kNow), "in 1 minute");
  EXPECT_EQ(Relative(kNow + absl::Seconds(1), kNow), "in 1 second");
  EXPECT_EQ(Relative(kNow, kNow), "now");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 90)), "90 days");
}

TEST(FormatTest, TablesAreAligned) {
  EXPECT_EQ(Table({"SERIAL", "STATE"}, {{"abc", "valid"}, {"1234567", "revoked"}}),
            "SERIAL   STATE\n"
            "abc      valid\n"
            "1234567  revoked\n");
}

// A rollover at a CA without keyChange: the CLI shows the new account and what was lost.
TEST(FormatTest, ARolloverByANewAccountShowsWhatWasLost) {
  v1::RolloverAccountKeyResponse r;
  r.mutable_account()->set_account_url("https://ca.test/acct/2");
  r.mutable_replacement()->set_previous_account_url("https://ca.test/acct/1");
  r.mutable_replacement()->set_previous_deactivated(true);
  r.mutable_replacement()->set_previous_outcome("deactivated at the CA");
  r.mutable_replacement()->add_lost("authorizations: not carried over");
  r.mutable_replacement()->add_lost("CAA accounturi: no longer matches");
  Formatter f(kNow, absl::UTCTimeZone());
  std::string out = f.Fields(r);
  EXPECT_THAT(out, HasSubstr("https://ca.test/acct/2"));
  EXPECT_THAT(out, HasSubstr("https://ca.test/acct/1"));
  EXPECT_THAT(out, HasSubstr("deactivated at the CA"));
  EXPECT_THAT(out, HasSubstr("authorizations: not carried over, CAA accounturi: no longer matches"));
}

TEST(FormatTest, FieldsShowZeroValuesTimesAndNeverKeys) {
  v1::IssueCertificateResponse r;
  r.set_private_key_pem("-----BEGIN PRIVATE KEY-----secret");
  r.mutable_certificate()->set_serial("fa");
  r.mutable_certificate()->add_identifiers("a.example");
  r.mutable_certificate()->add_identifiers("b.example");
  r.mutable_certificate()->set_state(v1::CERTIFICATE_STATE_VALID);
  r.mutable_certificate()->mutable_not_after()->set_seconds(absl::ToUnixSeconds(kNow) + 61 * 86400);
  r.mutable_certificate()->set_chain_pem("-----BEGIN CERTIFICATE-----");
  Formatter f(kNow, absl::UTCTimeZone());
  std::string text = f.Fields(r, {"chain_pem"});
  EXPECT_THAT(text, HasSubstr("certificate serial               fa\n"));
  EXPECT_THAT(text, HasSubstr("certificate identifiers          a.example, b.example\n"));
  EXPECT_THAT(text, HasSubstr("certificate state                valid\n"));
  EXPECT_THAT(text,
              HasSubstr("certificate not after            2030-03-03 00:00:00 UTC (expires in 61 "
                        "days)\n"));
  EXPECT_THAT(text, HasSubstr("certificate issuing key version  0\n"));
  EXPECT_THAT(text, HasSubstr("reused                           no\n"));
  EXPECT_THAT(text, Not(HasSubstr("PRIVATE")));
  EXPECT_THAT(text, Not(HasSubstr("BEGIN CERTIFICATE")));
}

// An enum's zero value is proto3's unset: a valid certificate has no revocation reason. A
// revoked one's reason 0 is RFC 5280's "unspecified" (the revoke command's default). Before,
// every zero printed "unspecified", so a valid certificate read as revoked for no reason.
TEST(FormatTest, AnUnsetEnumIsADashAndARevokedCertificatesReasonZeroIsUnspecified) {
  Formatter f(kNow, absl::UTCTimeZone());
  v1::Certificate valid;
  valid.set_serial("fa");
  valid.set_state(v1::CERTIFICATE_STATE_VALID);
  EXPECT_THAT(f.Fields(valid), HasSubstr("revocation reason    -\n"));
  v1::Certificate revoked = valid;
  revoked.set_serial("fb");
  revoked.set_state(v1::CERTIFICATE_STATE_REVOKED);
  EXPECT_THAT(f.Fields(revoked), HasSubstr("revocation reason    unspecified\n"));
  v1::Certificate compromised = revoked;
  compromised.set_serial("fc");
  compromised.set_revocation_reason(v1::REVOCATION_REASON_KEY_COMPROMISE);
  EXPECT_THAT(f.Fields(compromised), HasSubstr("revocation reason    key-compromise\n"));
  EXPECT_EQ(f.Rows({&valid, &revoked, &compromised}, {"serial", "state", "revocation_reason"}),
            "SERIAL  STATE    REVOCATION REASON\n"
            "fa      valid    -\n"
            "fb      revoked  unspecified\n"
            "fc      revoked  key-compromise\n");
  v1::Certificate unset;
  EXPECT_THAT(f.Fields(unset), HasSubstr("state                -\n"));
}

TEST(FormatTest, RepeatedMessagesBecomeTables) {
  v1::RespondToCompromiseResponse r;
  auto* step = r.add_steps();
  step->set_name("rollover");
  step->set_done(true);
  step->set_detail("key 2 active");
  r.set_run_id(3);
  std::string text = Formatter(kNow, absl::UTCTimeZone()).Fields(r);
  EXPECT_THAT(text, HasSubstr("steps:\nNAME      DONE  DETAIL        FINISHED AT\n"
                              "rollover  yes   key 2 active  -\n"));
  EXPECT_THAT(text, HasSubstr("run id  3\n"));
}

TEST(FormatTest, JsonKeepsZeroValues) {
  v1::DeactivateAuthorizationsResponse r;
  EXPECT_EQ(Json(r), "{\n \"deactivated\": 0,\n \"skipped\": 0,\n \"failed\": 0\n}\n");
}

}  // namespace
}  // namespace acmevault::cli
