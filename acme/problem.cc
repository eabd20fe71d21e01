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

// BoundedProblemDocument for a document `depth` levels below the top.
nlohmann::json Bounded(const nlohmann::json& j, int depth) {
  nlohmann::json out = nlohmann::json::object();
  if (!j.is_object()) return out;
  auto string = [&](const nlohmann::json& parent, const char* key) -> const std::string* {
    auto it = parent.find(key);
    return it != parent.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  if (const std::string* type = string(j, "type")) out["type"] = CaText(*type);
  if (const std::string* detail = string(j, "detail")) {
    out["detail"] = CaText(*detail, kMaxProblemDetailBytes);
  }
  if (auto it = j.find("status"); it != j.end() && it->is_number_integer()) {
    const int64_t status = it->get<int64_t>();
    if (status >= 100 && status <= 599) out["status"] = status;
  }
  if (auto it = j.find("identifier"); it != j.end() && it->is_object()) {
    const std::string* type = string(*it, "type");
    const std::string* value = string(*it, "value");
    if (type != nullptr && value != nullptr) {
      out["identifier"] = {{"type", CaText(*type)}, {"value", CaText(*value)}};
    }
  }
  if (auto it = j.find("subproblems");
      depth < kMaxSubproblemDepth && it != j.end() && it->is_array()) {
    nlohmann::json subs = nlohmann::json::array();
    for (const auto& sub : *it) {
      if (subs.size() >= kMaxSubproblems) break;
      subs.push_back(Bounded(sub, depth + 1));
    }
    out["subproblems"] = std::move(subs);
  }
  return out;
}

// The Problem of a document BoundedProblemDocument made (so every member has its type);
// `http_status`, when not 0, overrides its "status".
Problem FromBounded(const nlohmann::json& d, int http_status) {
  Problem p;
  p.type = d.value("type", "");
  p.detail = d.value("detail", "");
  p.http_status = http_status != 0 ? http_status : d.value("status", 0);
  if (auto it = d.find("identifier"); it != d.end()) {
    p.identifier = CaText(absl::StrCat(it->value("type", ""), ":", it->value("value", "")));
  }
  if (auto it = d.find("subproblems"); it != d.end()) {
    for (const auto& sub : *it) p.subproblems.push_back(FromBounded(sub, 0));
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

// A Status of `code` and `message` that carries `p` as its payload.
absl::Status Carrying(absl::StatusCode code, absl::string_view message, const Problem& p) {
  absl::Status status(code, message);
  status.SetPayload(kProblemPayloadUrl, absl::Cord(DumpJson(ToJson(p))));
  return status;
}

}  // namespace

nlohmann::json BoundedProblemDocument(const nlohmann::json& document) {
  return Bounded(document, 0);
}

Problem ProblemFromDocument(const nlohmann::json& document) {
  return FromBounded(Bounded(document, 0), 0);
}

std::string Summarize(const Problem& p) {
  // Room kept for "; 32 more subproblems".
  constexpr size_t kCountRoom = 24;
  std::string out = p.ShortType();
  if (p.http_status != 0) absl::StrAppend(&out, " (HTTP ", p.http_status, ")");
  if (!p.detail.empty()) absl::StrAppend(&out, ": ", p.detail);
  size_t shown = 0;
  for (const auto& sub : p.subproblems) {
    // Shorter details than the top level's, so that several subproblems fit.
    std::string part = absl::StrCat("; ", sub.identifier.empty() ? "" : sub.identifier + ": ",
                                    sub.ShortType(), ": ", CaText(sub.detail));
    if (out.size() + part.size() + kCountRoom > kMaxProblemMessageBytes) break;
    out += part;
    ++shown;
  }
  if (shown < p.subproblems.size()) {
    absl::StrAppend(&out, "; ", p.subproblems.size() - shown, " more subproblems");
  }
  return out;
}

nlohmann::json ToJson(const Problem& p) {
  nlohmann::json j = {{"type", p.type}, {"detail", p.detail}, {"status", p.http_status}};
  if (!p.identifier.empty()) j["identifier"] = p.identifier;
  if (p.retry_after) {
    // Whole seconds, rounded up: a "no request before" time must never come out early.
    int64_t seconds = absl::ToUnixSeconds(*p.retry_after);
    if (absl::FromUnixSeconds(seconds) < *p.retry_after) ++seconds;
    j["retry_after_unix"] = seconds;
  }
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
  if (response.status >= 300 && response.status < 400) {
    // Never followed (http.h): RFC 8555 resources do not move, and following would resend a
    // signed request elsewhere. A CA that redirects needs a human to look at it.
    const std::string location = response.Header("Location");
    p.type = absl::StrCat("http:", response.status);
    p.detail = location.empty() ? "redirect without a Location"
                                : absl::StrCat("redirect to ", CaText(location));
    return Carrying(absl::StatusCode::kFailedPrecondition,
                    absl::StrCat(what, ": CA answered HTTP ", response.status, " ", p.detail,
                                 " (redirects are not followed)"),
                    p);
  }
  const bool too_deep = NestedTooDeep(response.body);
  if (!too_deep) {
    // Bad UTF-8 inside a problem document would make the parser refuse all of it; with the bad
    // bytes replaced, the type and detail survive.
    p = FromBounded(Bounded(nlohmann::json::parse(ValidUtf8(response.body), nullptr,
                                                  /*allow_exceptions=*/false),
                            0),
                    response.status);
    // The answer's own status, even 0 (no status line), never the document's "status" member.
    p.http_status = response.status;
  }
  if (p.type.empty()) {
    p.type = absl::StrCat("http:", response.status);
    if (p.detail.empty()) {
      p.detail = too_deep ? std::string(NestedTooDeepError("").message()) : CaText(response.body);
    }
  }
  p.retry_after = ParseRetryAfter(response.Header("Retry-After"), now);
  std::string message = absl::StrCat(what, ": acme ", Summarize(p));
  if (p.retry_after) {
    absl::StrAppend(&message, "; retry after ",
                    absl::FormatTime(absl::RFC3339_sec, *p.retry_after, absl::UTCTimeZone()));
  }
  return Carrying(CodeForType(p.ShortType(), response.status), message, p);
}

absl::Status EmbeddedProblemStatus(absl::StatusCode code, absl::string_view what,
                                   const Problem& problem) {
  return Carrying(code, absl::StrCat(what, ": acme ", Summarize(problem)), problem);
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
