#include "service/dns01_rfc2136.h"

#include <ldns/ldns.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace acmevault::service {
namespace {

std::string Fqdn(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::StripSuffix(name, "."));
  return n + ".";
}

// Owns the ldns objects of one exchange.
struct Exchange {
  ldns_resolver* resolver = nullptr;
  ldns_rdf* zone = nullptr;
  ldns_rr_list* updates = nullptr;
  ldns_pkt* query = nullptr;
  ldns_pkt* answer = nullptr;
  ~Exchange() {
    if (answer) ldns_pkt_free(answer);
    if (query) ldns_pkt_free(query);
    if (updates) ldns_rr_list_deep_free(updates);  // The packet holds a copy.
    if (zone) ldns_rdf_deep_free(zone);
    if (resolver) ldns_resolver_deep_free(resolver);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Rfc2136Solver>> Rfc2136Solver::Create(Rfc2136Options options) {
  auto solver = std::unique_ptr<Rfc2136Solver>(new Rfc2136Solver(std::move(options)));
  const Rfc2136Options& o = solver->options_;
  absl::string_view server = o.server;
  size_t colon = server.rfind(':');
  solver->host_ = std::string(colon == absl::string_view::npos ? server : server.substr(0, colon));
  if (colon != absl::string_view::npos &&
      (!absl::SimpleAtoi(server.substr(colon + 1), &solver->port_) || solver->port_ <= 0 ||
       solver->port_ > 65535)) {
    return absl::InvalidArgumentError("dns01.server: bad port");
  }
  ldns_rdf* addr = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, solver->host_.c_str());
  if (addr == nullptr) return absl::InvalidArgumentError("dns01.server: not an IPv4 address");
  ldns_rdf_deep_free(addr);
  if (o.zone.empty()) return absl::InvalidArgumentError("dns01.zone: required");
  if (o.tsig_name.empty() || o.tsig_secret.empty()) {
    return absl::InvalidArgumentError("dns01: a TSIG key name and secret are required");
  }
  return solver;
}

absl::Status Rfc2136Solver::Publish(absl::string_view name, absl::string_view txt_value) {
  return Update(name, txt_value, /*add=*/true);
}

absl::Status Rfc2136Solver::Remove(absl::string_view name, absl::string_view txt_value) {
  return Update(name, txt_value, /*add=*/false);
}

absl::Status Rfc2136Solver::Update(absl::string_view name, absl::string_view txt_value, bool add) {
  const std::string zone = Fqdn(options_.zone);
  const std::string owner = Fqdn(absl::StrCat("_acme-challenge.", name));
  if (!absl::EndsWith(owner, "." + zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dns-01: ", name, " is outside the configured zone ", options_.zone));
  }
  for (char c : txt_value) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return absl::InvalidArgumentError("dns-01: TXT value has a character that needs quoting");
    }
  }
  Exchange x;
  x.resolver = ldns_resolver_new();
  ldns_rdf* addr = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, host_.c_str());
  if (x.resolver == nullptr || addr == nullptr) {
    if (addr) ldns_rdf_deep_free(addr);
    return absl::InternalError("dns-01: cannot build a resolver");
  }
  ldns_resolver_push_nameserver(x.resolver, addr);
  ldns_rdf_deep_free(addr);  // push_nameserver copies it.
  ldns_resolver_set_port(x.resolver, static_cast<uint16_t>(port_));
  timeval timeout{static_cast<time_t>(absl::ToInt64Seconds(options_.timeout)), 0};
  ldns_resolver_set_timeout(x.resolver, timeout);
  ldns_resolver_set_retry(x.resolver, 2);
  ldns_resolver_set_recursive(x.resolver, false);
  ldns_resolver_set_tsig_keyname(x.resolver, Fqdn(options_.tsig_name).c_str());
  ldns_resolver_set_tsig_keydata(x.resolver, options_.tsig_secret.c_str());
  ldns_resolver_set_tsig_algorithm(x.resolver, Fqdn(options_.tsig_algorithm).c_str());

  ldns_rr* rr = nullptr;
  std::string text = absl::StrCat(owner, " ", add ? options_.ttl_seconds : 0, " IN TXT \"",
                                  txt_value, "\"");
  if (ldns_rr_new_frm_str(&rr, text.c_str(), 0, nullptr, nullptr) != LDNS_STATUS_OK) {
    return absl::InvalidArgumentError("dns-01: cannot build the TXT record");
  }
  // RFC 2136 §2.5.4: class NONE, TTL 0 deletes exactly this record.
  if (!add) ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);
  x.updates = ldns_rr_list_new();
  ldns_rr_list_push_rr(x.updates, rr);
  x.zone = ldns_dname_new_frm_str(zone.c_str());
  // The packet takes over the zone name it is given and copies the update list.
  x.query = ldns_update_pkt_new(ldns_rdf_clone(x.zone), LDNS_RR_CLASS_IN, nullptr, x.updates,
                                nullptr);
  if (x.query == nullptr) return absl::InternalError("dns-01: cannot build the update");
  if (ldns_update_pkt_tsig_add(x.query, x.resolver) != LDNS_STATUS_OK) {
    return absl::InvalidArgumentError("dns-01: cannot sign the update (bad TSIG key?)");
  }
  ldns_status sent = ldns_resolver_send_pkt(&x.answer, x.resolver, x.query);
  if (sent == LDNS_STATUS_CRYPTO_TSIG_BOGUS) {
    return absl::PermissionDeniedError("dns-01: the server's reply carries a bad TSIG signature");
  }
  if (sent != LDNS_STATUS_OK || x.answer == nullptr) {
    return absl::UnavailableError(absl::StrCat("dns-01: no answer from ", options_.server, ": ",
                                               ldns_get_errorstr_by_id(sent)));
  }
  ldns_pkt_rcode rcode = ldns_pkt_get_rcode(x.answer);
  if (rcode == LDNS_RCODE_NOERROR) return absl::OkStatus();
  ldns_lookup_table* entry = ldns_lookup_by_id(ldns_rcodes, rcode);
  std::string rcode_name = entry ? entry->name : absl::StrCat(rcode);
  std::string message = absl::StrCat("dns-01: ", options_.server, " refused the update of ",
                                     owner, ": ", rcode_name);
  if (rcode == LDNS_RCODE_NOTAUTH || rcode == LDNS_RCODE_REFUSED) {
    return absl::PermissionDeniedError(message);
  }
  return absl::FailedPreconditionError(message);
}

}  // namespace acmevault::service
