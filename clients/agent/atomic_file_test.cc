#include "clients/agent/atomic_file.h"

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::agent {
namespace {

using ::testing::HasSubstr;

std::string Dir() { return std::string(getenv("TEST_TMPDIR")); }
std::string Read(const std::string& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
int Entries(const std::string& dir) {
  int n = 0;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

TEST(AtomicFileTest, WritesWithExactlyTheModeAndReplaces) {
  const std::string dir = Dir() + "/a";
  mkdir(dir.c_str(), 0755);
  umask(0);
  ASSERT_TRUE(WriteFileAtomically(dir + "/tls.key", "one", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/tls.key", "two", 0600).ok());
  EXPECT_EQ(Read(dir + "/tls.key"), "two");
  struct stat st;
  ASSERT_EQ(stat((dir + "/tls.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  umask(077);
  ASSERT_TRUE(WriteFileAtomically(dir + "/tls.crt", "chain", 0644).ok());
  ASSERT_EQ(stat((dir + "/tls.crt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644);
  EXPECT_EQ(Entries(dir), 2);  // No temporary file left.
}

TEST(AtomicFileTest, FailureNamesThePath) {
  absl::Status s = WriteFileAtomically(Dir() + "/missing/tls.key", "x", 0600);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/missing/tls.key"));
}

}  // namespace
}  // namespace acmevault::agent
