#include "storage/testing/private_cluster.h"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/testing/stack_env.h"

namespace acmevault::storage::testing {
namespace {

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace

PrivateCluster::~PrivateCluster() {
  if (running_) Stop().IgnoreError();
  if (!dir_.empty()) std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
}

absl::Status PrivateCluster::Start(const std::string& server_options) {
  std::string bin = ::acmevault::testing::StackEnv("ACMEVAULT_PG_BIN");
  bin_ = bin.empty() ? "/usr/lib/postgresql/15/bin" : bin;
  // TEST_TMPDIR may sit in a 0700 directory the postgres user cannot enter.
  char tmpl[] = "/tmp/acmevault-cluster-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);
  if (getuid() == 0) {
    passwd* pg = getpwnam("postgres");
    if (pg == nullptr) return absl::FailedPreconditionError("no postgres user");
    if (chown(dir_.c_str(), pg->pw_uid, pg->pw_gid) != 0) {
      return absl::InternalError("chown failed");
    }
  }
  port_ = FreeLoopbackPort();
  if (absl::Status s = AsPostgres(absl::StrCat(bin_, "/initdb -D '", dir_,
                                               "/data' -U postgres --auth=trust -E UTF8 "
                                               "--locale=C.UTF-8"));
      !s.ok()) {
    return s;
  }
  return Restart(server_options);
}

absl::Status PrivateCluster::CrashRestart() { return PgCtl("restart -m immediate"); }

absl::Status PrivateCluster::Stop() {
  absl::Status s = PgCtl("stop -m immediate");
  if (s.ok()) running_ = false;
  return s;
}

absl::Status PrivateCluster::Restart(const std::string& server_options) {
  server_options_ = server_options;
  absl::Status s = PgCtl("start");
  if (s.ok()) running_ = true;
  return s;
}

std::string PrivateCluster::url() const {
  return absl::StrCat("postgresql://postgres:unused@127.0.0.1:", port_, "/postgres");
}

absl::Status PrivateCluster::AsPostgres(const std::string& command) {
  std::string log = dir_ + "/command.log";
  // Tests run with PATH=/bin:/usr/bin:/usr/local/bin; runuser lives in /usr/sbin.
  const char* runuser =
      access("/usr/sbin/runuser", X_OK) == 0 ? "/usr/sbin/runuser" : "/sbin/runuser";
  std::string full = getuid() == 0 ? absl::StrCat(runuser, " -u postgres -- ", command) : command;
  int rc = std::system(absl::StrCat(full, " >'", log, "' 2>&1").c_str());
  if (rc != 0) {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    return absl::InternalError(absl::StrCat(command, " failed: ", text.str()));
  }
  return absl::OkStatus();
}

absl::Status PrivateCluster::PgCtl(const std::string& action) {
  return AsPostgres(absl::StrCat(
      bin_, "/pg_ctl -D '", dir_, "/data' -l '", dir_, "/postgres.log' -w -t 60 -o '-c ",
      "listen_addresses=127.0.0.1 -c port=", port_, " -c unix_socket_directories=", dir_, " ",
      server_options_, "' ", action));
}

}  // namespace acmevault::storage::testing
