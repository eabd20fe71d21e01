#include "service/core_dumps.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

TEST(DisableCoreDumps, TheProcessIsNotDumpableAndWritesNoCore) {
  ASSERT_TRUE(DisableCoreDumps().ok());
  EXPECT_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
  struct rlimit core;
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &core), 0);
  EXPECT_EQ(core.rlim_cur, 0u);
  EXPECT_EQ(core.rlim_max, 0u);
  // As the kernel reports it for the running process.
  std::ifstream limits("/proc/self/limits");
  std::string line;
  bool seen = false;
  while (std::getline(limits, line)) {
    if (line.rfind("Max core file size", 0) != 0) continue;
    seen = true;
    EXPECT_NE(line.find(" 0 "), std::string::npos) << line;
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace acmevault::service
