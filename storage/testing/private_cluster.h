// Test helper: a PostgreSQL 15 cluster of a test's own (initdb and pg_ctl as the postgres user,
// on a free loopback port and a data directory under /tmp), so a test may crash, stop, restart
// or reconfigure it without disturbing any other test. Local connections are trusted: any
// user name the cluster knows (postgres) and any password get in. Not thread-safe.
#ifndef ACMEVAULT_STORAGE_TESTING_PRIVATE_CLUSTER_H_
#define ACMEVAULT_STORAGE_TESTING_PRIVATE_CLUSTER_H_

#include <string>

#include "absl/status/status.h"

namespace acmevault::storage::testing {

class PrivateCluster {
 public:
  PrivateCluster() = default;
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;
  // Stops the server (immediately) and removes its directory.
  ~PrivateCluster();

  // initdb, then starts the server. The binaries come from $ACMEVAULT_PG_BIN (the stack sets
  // it) or /usr/lib/postgresql/15/bin. `server_options` are further "-c name=value" settings.
  absl::Status Start(const std::string& server_options = "");
  // pg_ctl restart -m immediate: the server is killed (no checkpoint, crash recovery on start).
  absl::Status CrashRestart();
  // pg_ctl stop -m immediate: the server is gone, its port refuses connections.
  absl::Status Stop();
  // Starts it again after Stop, with these settings instead of Start's.
  absl::Status Restart(const std::string& server_options);

  int port() const { return port_; }
  // The maintenance database as postgres (the password is ignored).
  std::string url() const;

 private:
  absl::Status AsPostgres(const std::string& command);
  absl::Status PgCtl(const std::string& action);

  std::string bin_;
  std::string dir_;
  std::string server_options_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_PRIVATE_CLUSTER_H_
