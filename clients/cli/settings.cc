#include "clients/cli/settings.h"

#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace acmevault::cli {
namespace {

// Settings: flag name -> environment variable ("" for none). The config file's keys are the
// flag names ('_' or '-').
const std::vector<std::pair<std::string, std::string>>& Sources() {
  static const auto* sources = new std::vector<std::pair<std::string, std::string>>{
      {"server", "ACMEVAULT_SERVER"},
      {"token-file", "ACMEVAULT_TOKEN_FILE"},
      {"tls-ca", "ACMEVAULT_TLS_CA"},
      {"tls-cert", "ACMEVAULT_TLS_CERT"},
      {"tls-key", "ACMEVAULT_TLS_KEY"},
      {"tls-server-name", "ACMEVAULT_TLS_SERVER_NAME"},
      {"timeout", ""},
  };
  return *sources;
}

absl::StatusOr<std::map<std::string, std::string>> ReadConfig(const std::string& path,
                                                              bool must_exist) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  if (!in) {
    if (must_exist) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
    return out;
  }
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    size_t eq = text.find('=');
    std::string key =
        eq == absl::string_view::npos
            ? ""
            : absl::StrReplaceAll(absl::StripAsciiWhitespace(text.substr(0, eq)), {{"_", "-"}});
    bool known = false;
    for (const auto& [name, env] : Sources()) known |= name == key;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": expected \"key = value\" with key server, token_file, tls_ca, ",
          "tls_cert, tls_key, tls_server_name or timeout"));
    }
    out[key] = std::string(absl::StripAsciiWhitespace(text.substr(eq + 1)));
  }
  return out;
}

}  // namespace

std::vector<FlagSpec> ConnectionFlags() {
  return {
      {"server", FlagKind::kString, "HOST:PORT",
       "acmevaultd's gRPC address ($ACMEVAULT_SERVER; default 127.0.0.1:8443)"},
      {"token-file", FlagKind::kString, "FILE",
       "file holding the bearer token ($ACMEVAULT_TOKEN_FILE, else the token in $ACMEVAULT_TOKEN)"},
      {"tls-ca", FlagKind::kString, "FILE",
       "PEM roots that verify the server ($ACMEVAULT_TLS_CA; plaintext without)"},
      {"tls-cert", FlagKind::kString, "FILE", "client certificate for mTLS ($ACMEVAULT_TLS_CERT)"},
      {"tls-key", FlagKind::kString, "FILE", "its key ($ACMEVAULT_TLS_KEY)"},
      {"tls-server-name", FlagKind::kString, "NAME",
       "the name the server's certificate carries, when not the host of --server"},
      {"timeout",
       FlagKind::kDuration,
       "DURATION",
       "deadline of each call (default 60s)",
       {"timeout-seconds"}},
      {"config", FlagKind::kString, "FILE",
       "settings file of key = value lines ($ACMEVAULT_CONFIG; default "
       "~/.config/acmevault/config)"},
      {"json", FlagKind::kBool, "", "print the response as JSON (every field), for scripts"},
      {"no-progress", FlagKind::kBool, "", "no progress display, even on a terminal"},
  };
}

absl::StatusOr<clients::ClientOptions> ResolveSettings(const ParsedFlags& flags,
                                                       const Getenv& getenv) {
  std::string config = flags.String("config");
  bool must_exist = !config.empty();
  if (config.empty() && getenv("ACMEVAULT_CONFIG") != nullptr) {
    config = getenv("ACMEVAULT_CONFIG");
    must_exist = true;
  }
  if (config.empty()) {
    if (const char* xdg = getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
      config = absl::StrCat(xdg, "/acmevault/config");
    } else if (const char* home = getenv("HOME"); home != nullptr) {
      config = absl::StrCat(home, "/.config/acmevault/config");
    }
  }
  std::map<std::string, std::string> file;
  if (!config.empty()) {
    absl::StatusOr<std::map<std::string, std::string>> read = ReadConfig(config, must_exist);
    if (!read.ok()) return read.status();
    file = *std::move(read);
  }
  ParsedFlags merged = flags;
  for (const auto& [name, env] : Sources()) {
    if (merged.Has(name)) continue;
    const char* value = env.empty() ? nullptr : getenv(env.c_str());
    if (value != nullptr && *value != '\0') {
      merged.Set(name, value);
    } else if (auto it = file.find(name); it != file.end()) {
      merged.Set(name, it->second);
    }
  }
  clients::ClientOptions o;
  o.server = merged.String("server", "127.0.0.1:8443");
  o.token_file = merged.String("token-file");
  // $ACMEVAULT_TOKEN only when no file was named anywhere (flag, environment or config).
  if (o.token_file.empty()) {
    if (const char* token = getenv("ACMEVAULT_TOKEN"); token != nullptr) o.token = token;
  }
  o.tls_ca = merged.String("tls-ca");
  o.tls_cert = merged.String("tls-cert");
  o.tls_key = merged.String("tls-key");
  o.tls_server_name = merged.String("tls-server-name");
  if (merged.Has("timeout")) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(merged.String("timeout"));
    if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat("timeout: ", d.status().message()));
    o.timeout = *d;
  }
  return o;
}

}  // namespace acmevault::cli
