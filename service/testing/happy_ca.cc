#include "service/testing/happy_ca.h"

#include <fstream>
#include <sstream>

namespace acmevault::service::testing {

using acme::testing::ScriptedServer;
using Call = ScriptedServer::Call;

std::string ReadTestFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

crypto::PrivateKey TestLeafKey() {
  auto key = crypto::PrivateKey::FromPem(ReadTestFile("crypto/testdata/leaf_key.pem"));
  if (!key.ok()) std::abort();  // Test data missing: nothing else can work.
  return *std::move(key);
}

absl::Time TestChainValidTime() { return absl::FromUnixSeconds(1796083200); }

void ScriptHappyCa(ScriptedServer& ca, std::string* state) {
  *state = "pending";
  for (const char* path : {"/chall/1", "/chall/2"}) {
    const std::string type = std::string(path) == "/chall/1" ? "http-01" : "dns-01";
    const std::string url = ScriptedServer::Url(path);
    ca.On("POST", path, [state, type, url](const Call&) {
      *state = "ready";
      return ScriptedServer::Json(
          200, {{"type", type}, {"url", url}, {"status", "processing"}, {"token", "tok"}});
    });
  }
  ca.On("POST", "/new-order", [state](const Call&) {
    *state = "pending";
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  ca.On("POST", "/order/1",
        [state](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order(*state)); });
  ca.On("POST", "/finalize/1", [state](const Call&) {
    *state = "valid";
    return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
  });
}

}  // namespace acmevault::service::testing
