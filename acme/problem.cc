#include "acme/problem.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "acme/ca_input.h"

namespace acmevault::acme {
namespace {

constexpr absl::string_view kErrorPrefix = "urn:ietf:params:acme:error:";

absl::StatusCode CodeForType(absl::string_view short_type, int http_status) {
  static const auto* codes = new std::map<std::string, absl::StatusCode, std::less<>>{
      {"badNonce", absl::StatusCode::kAborted},
      {"rateLimited", absl::StatusCode::kResourceExhausted},
      {"unauthorized", absl::StatusCode::kPermissionDenied},
      {"accountDoesNotExist", absl::StatusCode::kNotFound},
      {"malformed", absl::StatusCode::kInvalidArgument},
      {"badCSR", absl::StatusCode::kInvalidArgument},
      {"badPublicKey", absl::StatusCode::kInvalidArgument},
      {"badSignatureAlgorithm", absl::StatusCode::kInvalidArgument},
      {"badRevocationReason", absl::StatusCode::kInvalidArgument},
      {"invalidContact", absl::StatusCode::kInvalidArgument},
      {"unsupportedContact", absl::StatusCode::kInvalidArgument},
      {"rejectedIdentifier", absl::StatusCode::kInvalidArgument},
      {"unsupportedIdentifier", absl::StatusCode::kInvalidArgument},
      {"orderNotReady", absl::StatusCode::kFailedPrecondition},
      {"alreadyRevoked", absl::StatusCode::kFailedPrecondition},
      {"caa", absl::StatusCode::kFailedPrecondition},
      {"dns", absl::StatusCode::kFailedPrecondition},
      {"connection", absl::StatusCode::kFailedPrecondition},
      {"incorrectResponse", absl::StatusCode::kFailedPrecondition},
      {"tls", absl::StatusCode::kFailedPrecondition},
      {"userActionRequired", absl::StatusCode::kFailedPrecondition},
      {"externalAccountRequired", absl::StatusCode::kFailedPrecondition},
      {"serverInternal", absl::StatusCode::kUnavailable},
  };
  if (auto it = codes->find(short_type); it != codes->end()) return it->second;
  if (http_status == 401 || http_status == 403) return absl::StatusCode::kPermissionDenied;
  if (http_status == 404) return absl::StatusCode::kNotFound;
  if (http_status == 409) return absl::StatusCode::kAborted;
  if (http_status == 429) return absl::StatusCode::kResourceExhausted;
  if (http_status >= 500) return absl::StatusCode::kUnavailable;
  if (http_status >= 400) return absl::StatusCode::kInvalidArgument;
  return absl::StatusCode::kUnknown;
}

Problem FromJson(const nlohmann::json& j, int http_status) {
  Problem p;
  p.http_status = http_status;
  if (!j.is_object()) return p;
  if (auto it = j.find("type"); it != j.end() && it->is_string()) {
    p.type = CaText(it->get<std::string>());
  }
  if (auto it = j.find("detail"); it != j.end() && it->is_string()) {
    p.detail = CaText(it->get<std::string>(), kMaxProblemDetailBytes);
  }
  if (auto it = j.find("identifier"); it != j.end() && it->is_object()) {
    auto type = it->find("type");
    auto value = it->find("value");
    if (type != it->end() && type->is_string() && value != it->end() && value->is_string()) {
      p.identifier = CaText(absl::StrCat(type->get<std::string>(), ":", value->get<std::string>()));
    }
  }
  if (auto it = j.find("subproblems"); it != j.end() && it->is_array()) {
    for (const auto& sub : *it) {
      if (p.subproblems.size() >= 32) break;
      p.subproblems.push_back(FromJson(sub, 0));
    }
  }
  return p;
}

Problem FromPayload(const nlohmann::json& j) {
  Problem p;
  p.type = j.value("type", "");
  p.detail = j.value("detail", "");
  p.http_status = j.value("status", 0);
  p.identifier = j.value("identifier", "");
  if (j.contains("retry_after_unix")) {
    p.retry_after = absl::FromUnixSeconds(j["retry_after_unix"].get<int64_t>());
  }
  if (auto it = j.find("subproblems"); it != j.end() && it->is_array()) {
    for (const auto& sub : *it) p.subproblems.push_back(FromPayload(sub));
  }
  return p;
}

}  // namespace

nlohmann::json ToJson(const Problem& p) {
  nlohmann::json j = {{"type", p.type}, {"detail", p.detail}, {"status", p.http_status}};
  if (!p.identifier.empty()) j["identifier"] = p.identifier;
  if (p.retry_after) j["retry_after_unix"] = absl::ToUnixSeconds(*p.retry_after);
  for (const auto& sub : p.subproblems) j["subproblems"].push_back(ToJson(sub));
  return j;
}

std::string Problem::ShortType() const {
  absl::string_view t = type;
  absl::ConsumePrefix(&t, kErrorPrefix);
  return std::string(t);
}

absl::Status ProblemStatus(const HttpResponse& response, absl::string_view what,
                           absl::Time now) {
  Problem p;
  p.http_status = response.status;
  const bool too_deep = NestedTooDeep(response.body);
  if (!too_deep) {
    // Bad UTF-8 inside a problem document would make the parser refuse all of it; with the bad
    // bytes replaced, the type and detail survive.
    p = FromJson(nlohmann::json::parse(ValidUtf8(response.body), nullptr,
                                       /*allow_exceptions=*/false),
                 response.status);
  }
  if (p.type.empty()) {
    p.type = absl::StrCat("http:", response.status);
    if (p.detail.empty()) {
      p.detail = too_deep ? std::string(NestedTooDeepError("").message()) : CaText(response.body);
    }
  }
  p.retry_after = ParseRetryAfter(response.Header("Retry-After"), now);
  std::string message = absl::StrCat(what, ": acme ", p.ShortType(), " (HTTP ", response.status,
                                     ")", p.detail.empty() ? "" : ": ", p.detail);
  for (const auto& sub : p.subproblems) {
    absl::StrAppend(&message, "; ", sub.identifier.empty() ? "" : sub.identifier + ": ",
                    sub.ShortType(), ": ", sub.detail);
  }
  if (p.retry_after) {
    absl::StrAppend(&message, "; retry after ",
                    absl::FormatTime(absl::RFC3339_sec, *p.retry_after, absl::UTCTimeZone()));
  }
  absl::Status status(CodeForType(p.ShortType(), response.status), message);
  status.SetPayload(kProblemPayloadUrl, absl::Cord(DumpJson(ToJson(p))));
  return status;
}

std::optional<Problem> GetProblem(const absl::Status& status) {
  auto payload = status.GetPayload(kProblemPayloadUrl);
  if (!payload) return std::nullopt;
  auto j = nlohmann::json::parse(std::string(*payload), nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return FromPayload(j);
}

bool IsAccountUnusable(const absl::Status& status) {
  auto p = GetProblem(status);
  if (!p) return false;
  std::string t = p->ShortType();
  return t == "accountDoesNotExist" ||
         (t == "unauthorized" && (p->http_status == 401 || p->http_status == 403));
}

std::optional<absl::Time> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t seconds;
  if (absl::SimpleAtoi(value, &seconds)) {
    if (seconds < 0) return std::nullopt;
    return now + absl::Seconds(seconds);
  }
  absl::Time t;
  std::string err;
  // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value), absl::UTCTimeZone(), &t,
                      &err)) {
    return t;
  }
  return std::nullopt;
}

}  // namespace acmevault::acme
