// Where the acmevault CLI finds its connection settings: flags first, then the environment
// (ACMEVAULT_SERVER, ACMEVAULT_TOKEN_FILE, ACMEVAULT_TOKEN, ACMEVAULT_TLS_CA, ACMEVAULT_TLS_CERT,
// ACMEVAULT_TLS_KEY), then a config file of "key = value" lines (--config FILE, else
// $ACMEVAULT_CONFIG, else ~/.config/acmevault/config when it exists), then the defaults.
#ifndef ACMEVAULT_CLIENTS_CLI_SETTINGS_H_
#define ACMEVAULT_CLIENTS_CLI_SETTINGS_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "clients/cli/flags.h"
#include "clients/lib/client.h"

namespace acmevault::cli {

// The connection flags every command takes (also recognised before the command's name).
std::vector<FlagSpec> ConnectionFlags();

// Reads the environment: getenv, or a fake in tests.
using Getenv = std::function<const char*(const char*)>;

// The client options `flags` (parsed with ConnectionFlags) and the other sources give.
// INVALID_ARGUMENT for a config file line that is not "key = value" or names an unknown key
// (file:line in the message); NOT_FOUND for a --config or $ACMEVAULT_CONFIG file that does
// not exist (a missing default file is no error).
absl::StatusOr<clients::ClientOptions> ResolveSettings(const ParsedFlags& flags,
                                                       const Getenv& getenv);

}  // namespace acmevault::cli

#endif  // ACMEVAULT_CLIENTS_CLI_SETTINGS_H_
