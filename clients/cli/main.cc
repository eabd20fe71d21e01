// acmevault: the command-line client of acmevaultd. `acmevault help` lists the commands, their
// flags and the exit codes; clients/README.md shows a session.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "clients/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  acmevault::cli::Environment env{
      .getenv = [](const char* name) -> const char* { return std::getenv(name); },
      .out = std::cout,
      .err = std::cerr,
      .terminal = isatty(STDERR_FILENO) == 1,
  };
  return acmevault::cli::RunCli(args, env);
}
