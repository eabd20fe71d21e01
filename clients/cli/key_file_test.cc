#include "clients/cli/key_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace acmevault::cli {
namespace {

std::string TempPath(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const char kPem[] = "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n";

TEST(WriteKeyFile, IsOwnerOnlyWhateverTheUmaskAndWhateverThePath) {
  mode_t old_umask = umask(0);
  // A quote in the name broke the old `chmod` through a shell, leaving the file 0666.
  for (const std::string& name : {std::string("plain.key"), std::string("it's.key")}) {
    std::string path = TempPath(name);
    ASSERT_TRUE(WriteKeyFile(path, kPem).ok()) << name;
    EXPECT_EQ(ModeOf(path), 0600) << name;
    EXPECT_EQ(Contents(path), kPem) << name;
  }
  umask(077);
  std::string strict = TempPath("strict.key");
  ASSERT_TRUE(WriteKeyFile(strict, kPem).ok());
  EXPECT_EQ(ModeOf(strict), 0600);
  umask(old_umask);
}

TEST(WriteKeyFile, NeverOverwritesOrFollowsWhatIsAlreadyThere) {
  std::string existing = TempPath("existing.key");
  std::ofstream(existing) << "an older key";
  absl::Status status = WriteKeyFile(existing, kPem);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_EQ(Contents(existing), "an older key");

  std::string target = TempPath("elsewhere");
  std::string link = TempPath("link.key");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(WriteKeyFile(link, kPem).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(access(target.c_str(), F_OK), 0);
}

TEST(WipeKey, ZeroesTheWholeBufferAndEmptiesIt) {
  std::string pem(kPem);
  pem.reserve(4 * pem.size());  // Bytes beyond the size are wiped too.
  const size_t capacity = pem.capacity();
  const char* buffer = pem.data();
  WipeKey(&pem);
  EXPECT_TRUE(pem.empty());
  ASSERT_EQ(pem.data(), buffer);  // Still the same allocation: its bytes can be read.
  EXPECT_EQ(std::string(buffer, capacity), std::string(capacity, '\0'));
  WipeKey(&pem);  // Empty: nothing to do.
  EXPECT_TRUE(pem.empty());
}

}  // namespace
}  // namespace acmevault::cli
