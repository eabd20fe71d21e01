#include "tests/fuzz/fake_ca.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "acme/problem.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

// One line of `text` (without its LF or CRLF); advances `text` past it.
absl::string_view TakeLine(absl::string_view& text) {
  size_t end = text.find('\n');
  absl::string_view line = text.substr(0, end);
  text.remove_prefix(end == absl::string_view::npos ? text.size() : end + 1);
  absl::ConsumeSuffix(&line, "\r");
  return line;
}

acme::HttpResponse Json(std::string body) {
  acme::HttpResponse r;
  r.status = 200;
  r.headers = {{"content-type", "application/json"}, {"replay-nonce", "bm9uY2UtZGly"}};
  r.body = std::move(body);
  return r;
}

}  // namespace

acme::HttpResponse ParseHttpText(absl::string_view text) {
  acme::HttpResponse r;
  absl::string_view status_line = TakeLine(text);
  // The first run of digits on the line: "HTTP/1.1 404 Not Found" has "1" in "HTTP/1.1" first,
  // so a line starting "HTTP/" is read from its first space.
  if (absl::StartsWith(status_line, "HTTP/")) {
    size_t space = status_line.find(' ');
    status_line.remove_prefix(space == absl::string_view::npos ? status_line.size() : space);
  }
  status_line = absl::StripLeadingAsciiWhitespace(status_line);
  size_t digits = 0;
  while (digits < status_line.size() && digits < 4 &&
         absl::ascii_isdigit(static_cast<unsigned char>(status_line[digits]))) {
    ++digits;
  }
  if (!absl::SimpleAtoi(status_line.substr(0, digits), &r.status)) r.status = 0;
  while (!text.empty()) {
    absl::string_view line = TakeLine(text);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    r.headers.emplace_back(absl::AsciiStrToLower(line.substr(0, colon)),
                           std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  r.body = std::string(text);
  return r;
}

FakeCa::FakeCa(acme::HttpResponse fuzzed, bool fuzz_directory)
    : fuzzed_(std::move(fuzzed)), fuzz_directory_(fuzz_directory) {}

absl::StatusOr<acme::HttpResponse> FakeCa::Send(const acme::HttpRequest& request) {
  CheckOnCaOrigin(request.url);
  absl::string_view path = request.url;
  absl::ConsumePrefix(&path, kOrigin);
  if (request.method == "GET" && path == "/dir" && !fuzz_directory_) {
    return Json(absl::StrCat(R"({"newNonce":")", Url("/nonce"), R"(","newAccount":")",
                             Url("/new-acct"), R"(","newOrder":")", Url("/new-order"),
                             R"(","revokeCert":")", Url("/revoke"), R"(","keyChange":")",
                             Url("/key-change"), R"(","renewalInfo":")", Url("/ari"),
                             R"(","meta":{"termsOfService":")", Url("/terms"), R"("}})"));
  }
  if (request.method == "HEAD" && path == "/nonce") {
    acme::HttpResponse r;
    r.status = 200;
    r.headers = {{"replay-nonce", "bm9uY2UtaGVhZA"}};
    return r;
  }
  ++fuzzed_answers_;
  return fuzzed_;
}

AcmeHarness::AcmeHarness(absl::string_view input, bool fuzz_directory)
    : ca(ParseHttpText(input), fuzz_directory) {
  auto created = acme::AcmeClient::Create({.directory_url = FakeCa::Url("/dir"),
                                           .transport = &ca,
                                           .clock = &clock,
                                           .max_bad_nonce_retries = 2});
  FUZZ_CHECK_MSG(created.ok(), created.status().ToString());
  client = *std::move(created);
}

const crypto::PrivateKey& AccountKey() {
  static const crypto::PrivateKey* key = [] {
    auto generated = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    FUZZ_CHECK_MSG(generated.ok(), generated.status().ToString());
    return new crypto::PrivateKey(*std::move(generated));
  }();
  return *key;
}

acme::AccountRef Account() { return {&AccountKey(), FakeCa::Url("/acct/1")}; }

bool RepeatsKnownFinding(const acme::HttpResponse& response, bool any_status) {
  if ((response.status == 200 && !any_status) || !SkipKnownFinding("problem-invalid-utf8")) {
    return false;
  }
  return absl::StrContains(response.body, "\\u") ||
         std::any_of(response.body.begin(), response.body.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

void CheckOnCaOrigin(absl::string_view url) {
  auto origin = acme::UrlOrigin(url);
  FUZZ_CHECK_MSG(origin.ok() && *origin == FakeCa::kNormalOrigin, url);
}

bool CheckProblemMapping(const absl::Status& result, const acme::HttpResponse& response,
                         int success_from, int success_to) {
  if (response.status < success_from || response.status > success_to) {
    FUZZ_CHECK(!result.ok());
    auto problem = acme::GetProblem(result);
    FUZZ_CHECK_MSG(problem.has_value(), result.ToString());
    FUZZ_CHECK(problem->http_status == response.status);
  }
  return result.ok();
}

}  // namespace acmevault::fuzz
