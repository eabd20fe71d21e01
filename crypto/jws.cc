#include "crypto/jws.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"

namespace acmevault::crypto {
namespace {

nlohmann::json Assemble(const std::string& protected64, const std::string& payload64,
                        const std::string& signature) {
  return nlohmann::json{
      {"protected", protected64}, {"payload", payload64}, {"signature", Base64Url(signature)}};
}

absl::StatusOr<std::string> Field(const nlohmann::json& jws, const char* name) {
  auto it = jws.find(name);
  if (it == jws.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("JWS member \"", name, "\" missing"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::string> Decode(const std::string& in, const char* what) {
  std::string out;
  if (!Base64UrlDecode(in, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("JWS ", what, " is not base64url"));
  }
  return out;
}

}  // namespace

absl::StatusOr<nlohmann::json> SignJwsObject(const Signer& key, const JwsHeaderFields& fields,
                                             absl::string_view payload) {
  if (fields.url.empty()) return absl::InvalidArgumentError("JWS needs a url");
  nlohmann::json header = {{"alg", std::string(key.public_key().JwsAlgorithm())},
                           {"url", fields.url}};
  if (!fields.nonce.empty()) header["nonce"] = fields.nonce;
  if (fields.kid.empty()) {
    header["jwk"] = PublicJwk(key.public_key());
  } else {
    header["kid"] = fields.kid;
  }
  std::string protected64 = Base64Url(header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  std::string payload64 = Base64Url(payload);
  ASSIGN_OR_RETURN(std::string signature, key.Sign(absl::StrCat(protected64, ".", payload64)));
  return Assemble(protected64, payload64, signature);
}

absl::StatusOr<std::string> SignJws(const Signer& key, const JwsHeaderFields& fields,
                                    absl::string_view payload) {
  ASSIGN_OR_RETURN(nlohmann::json jws, SignJwsObject(key, fields, payload));
  return jws.dump();  // Only ASCII (base64url) strings: cannot throw.
}

nlohmann::json SignEabJws(absl::string_view eab_kid, absl::string_view mac_key,
                          absl::string_view new_account_url, const PublicKey& account_key) {
  nlohmann::json header = {{"alg", "HS256"},
                           {"kid", std::string(eab_kid)},
                           {"url", std::string(new_account_url)}};
  std::string protected64 = Base64Url(header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  std::string payload64 = Base64Url(PublicJwk(account_key).dump());
  return Assemble(protected64, payload64,
                  HmacSha256(mac_key, absl::StrCat(protected64, ".", payload64)));
}

absl::StatusOr<ParsedJws> ParseJwsObject(const nlohmann::json& jws) {
  if (!jws.is_object()) return absl::InvalidArgumentError("JWS is not a JSON object");
  ASSIGN_OR_RETURN(std::string protected64, Field(jws, "protected"));
  ASSIGN_OR_RETURN(std::string payload64, Field(jws, "payload"));
  ASSIGN_OR_RETURN(std::string signature64, Field(jws, "signature"));
  ParsedJws out;
  ASSIGN_OR_RETURN(std::string header, Decode(protected64, "protected header"));
  out.header = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!out.header.is_object()) {
    return absl::InvalidArgumentError("JWS protected header is not a JSON object");
  }
  ASSIGN_OR_RETURN(out.payload, Decode(payload64, "payload"));
  ASSIGN_OR_RETURN(out.signature, Decode(signature64, "signature"));
  out.signing_input = absl::StrCat(protected64, ".", payload64);
  return out;
}

absl::StatusOr<ParsedJws> ParseJws(absl::string_view jws) {
  auto json = nlohmann::json::parse(jws, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("JWS is not JSON");
  return ParseJwsObject(json);
}

absl::Status VerifyJws(const ParsedJws& jws, const PublicKey& key) {
  auto alg = jws.header.find("alg");
  if (alg == jws.header.end() || !alg->is_string() ||
      alg->get<std::string>() != key.JwsAlgorithm()) {
    return absl::InvalidArgumentError("JWS alg does not match the key");
  }
  return key.Verify(jws.signing_input, jws.signature);
}

}  // namespace acmevault::crypto
