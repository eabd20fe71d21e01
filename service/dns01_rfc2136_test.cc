// The RFC 2136 solver against the local stack's real BIND 9 (deploy/local/stack add-dns).
#include "service/dns01_rfc2136.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Last: ldns defines macros that break gmock's headers when they come after it.
#include <ldns/ldns.h>

namespace acmevault::service {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(s.str()));
}

// The TXT values at `owner`, asked of the server directly (no recursion, no cache).
std::set<std::string> Txt(const std::string& server, const std::string& owner) {
  std::set<std::string> out;
  ldns_resolver* res = ldns_resolver_new();
  ldns_rdf* addr = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, server.substr(0, server.find(':')).c_str());
  ldns_resolver_push_nameserver(res, addr);
  ldns_rdf_deep_free(addr);
  int port = 0;
  absl::SimpleAtoi(server.substr(server.find(':') + 1), &port);
  ldns_resolver_set_port(res, static_cast<uint16_t>(port));
  ldns_resolver_set_recursive(res, false);
  ldns_rdf* name = ldns_dname_new_frm_str(owner.c_str());
  ldns_pkt* answer = ldns_resolver_query(res, name, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN, 0);
  if (answer != nullptr) {
    ldns_rr_list* txts =
        ldns_pkt_rr_list_by_type(answer, LDNS_RR_TYPE_TXT, LDNS_SECTION_ANSWER);
    for (size_t i = 0; txts != nullptr && i < ldns_rr_list_rr_count(txts); ++i) {
      char* text = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(txts, i), 0));
      out.insert(std::string(absl::StripPrefix(absl::StripSuffix(text, "\""), "\"")));
      free(text);
    }
    if (txts) ldns_rr_list_deep_free(txts);
    ldns_pkt_free(answer);
  }
  ldns_rdf_deep_free(name);
  ldns_resolver_deep_free(res);
  return out;
}

class Rfc2136Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(server, "ACMEVAULT_DNS_SERVER");
    server_ = server;
    options_.server = server;
    options_.zone = testing::StackEnv("ACMEVAULT_DNS_ZONE");
    options_.tsig_name = testing::StackEnv("ACMEVAULT_DNS_TSIG_NAME");
    options_.tsig_algorithm = testing::StackEnv("ACMEVAULT_DNS_TSIG_ALGORITHM");
    options_.tsig_secret = ReadFile(testing::StackEnv("ACMEVAULT_DNS_TSIG_SECRET_FILE"));
  }
  std::string server_;
  Rfc2136Options options_;
};

TEST_F(Rfc2136Test, PublishesAndRemovesExactlyTheTxtRecord) {
  auto solver = Rfc2136Solver::Create(options_);
  ASSERT_TRUE(solver.ok()) << solver.status();
  const std::string name = absl::StrCat("host-", getpid(), ".dns01.test");
  const std::string owner = absl::StrCat("_acme-challenge.", name, ".");
  ASSERT_TRUE((*solver)->Publish(name, "value-one").ok());
  ASSERT_TRUE((*solver)->Publish(name, "value-two").ok());
  EXPECT_EQ(Txt(server_, owner), (std::set<std::string>{"value-one", "value-two"}));
  ASSERT_TRUE((*solver)->Remove(name, "value-one").ok());
  EXPECT_EQ(Txt(server_, owner), (std::set<std::string>{"value-two"}));
  ASSERT_TRUE((*solver)->Remove(name, "value-two").ok());
  EXPECT_TRUE(Txt(server_, owner).empty());
}

TEST_F(Rfc2136Test, AWrongKeyIsRefusedAndNothingChanges) {
  options_.tsig_secret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  auto solver = Rfc2136Solver::Create(options_);
  ASSERT_TRUE(solver.ok());
  const std::string name = absl::StrCat("badkey-", getpid(), ".dns01.test");
  absl::Status s = (*solver)->Publish(name, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("AAAAAAAA")));
  EXPECT_TRUE(Txt(server_, absl::StrCat("_acme-challenge.", name, ".")).empty());
}

TEST_F(Rfc2136Test, NamesOutsideTheZoneAndBadValuesAreRefusedLocally) {
  auto solver = Rfc2136Solver::Create(options_);
  ASSERT_TRUE(solver.ok());
  EXPECT_EQ((*solver)->Publish("example.com", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*solver)->Publish("evildns01.test", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*solver)->Publish("a.dns01.test", "quote\"d").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Rfc2136Create, ValidatesItsOptions) {
  EXPECT_FALSE(Rfc2136Solver::Create({.server = "dns.example:53", .zone = "z", .tsig_name = "k",
                                      .tsig_secret = "s"})
                   .ok());
  EXPECT_FALSE(Rfc2136Solver::Create({.server = "127.0.0.1:99999", .zone = "z", .tsig_name = "k",
                                      .tsig_secret = "s"})
                   .ok());
  EXPECT_FALSE(Rfc2136Solver::Create({.server = "127.0.0.1:53", .zone = "", .tsig_name = "k",
                                      .tsig_secret = "s"})
                   .ok());
  EXPECT_TRUE(Rfc2136Solver::Create({.server = "127.0.0.1:53", .zone = "z", .tsig_name = "k",
                                     .tsig_secret = "s"})
                  .ok());
}

}  // namespace
}  // namespace acmevault::service
