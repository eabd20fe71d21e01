// The acmevault CLI: one command per RPC of acmevault.v1 (commands_test checks none is
// missing), plus health and help. RunCli parses the command line, resolves the connection
// settings (settings.h), calls the service through the client library and prints the answer
// for people (format.h) or as JSON, returning the documented exit code.
#ifndef ACMEVAULT_CLIENTS_CLI_COMMANDS_H_
#define ACMEVAULT_CLIENTS_CLI_COMMANDS_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "clients/cli/flags.h"
#include "clients/cli/format.h"
#include "clients/cli/settings.h"
#include "clients/lib/client.h"
#include "common/clock.h"

namespace acmevault::cli {

// Exit codes (also in `acmevault help`).
inline constexpr int kExitOk = 0;
// The service refused or failed the request; the message names the status.
inline constexpr int kExitFailed = 1;
// Unknown command or flag, a bad value, a missing or unreadable input file: nothing was sent.
inline constexpr int kExitUsage = 2;
// The service could not be reached, or did not answer in time, after the retries.
inline constexpr int kExitUnreachable = 3;
// An output file could not be written (a key or token file is never overwritten).
inline constexpr int kExitOutput = 4;
// issue: the order was still in progress after --wait; it goes on in the service.
inline constexpr int kExitPending = 5;

// What a command's run function works with.
struct Invocation {
  clients::Client& client;
  const ParsedFlags& flags;
  std::ostream& out;
  std::ostream& err;
  bool json;
  // Show progress on err (a terminal, and neither --json nor --no-progress).
  bool progress;
  const Clock& clock;
  absl::TimeZone zone;

  // Shows times relative to now (after the call, so times the call set are not "in 1 second").
  Formatter formatter() const { return Formatter(clock.Now(), zone); }
};

struct Command {
  std::string name;
  std::vector<std::string> aliases;
  // The RPC it calls, e.g. "acmevault.v1.AdminService.CreateTenant"; "" for none.
  std::string rpc;
  // Heading in `acmevault help`.
  std::string group;
  std::string summary;
  // Who may call it and what it prints, for `acmevault CMD --help`.
  std::string details;
  std::vector<FlagSpec> flags;
  // OK, or an error made by UsageError/OutputError, or the service's.
  std::function<absl::Status(Invocation&)> run;
};

// Every command, in help order.
const std::vector<Command>& Commands();

// A local mistake of the caller (exit 2) / a local file that could not be written (exit 4).
absl::Status UsageError(absl::string_view message);
absl::Status OutputError(absl::string_view message);

struct Environment {
  Getenv getenv;
  std::ostream& out;
  std::ostream& err;
  // Whether err is a terminal (progress displays).
  bool terminal = false;
  const Clock* clock = Clock::Real();
  absl::TimeZone zone = absl::LocalTimeZone();
};

// Runs the command line `args` (without the program name). Returns the exit code.
int RunCli(const std::vector<std::string>& args, const Environment& env);

}  // namespace acmevault::cli

#endif  // ACMEVAULT_CLIENTS_CLI_COMMANDS_H_
