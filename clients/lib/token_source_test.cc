#include "clients/lib/token_source.h"

#include <unistd.h>

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Path(const std::string& name) {
  return std::string(getenv("TEST_TMPDIR")) + "/" + name;
}

TEST(TokenSourceTest, FixedValue) {
  EXPECT_EQ(*TokenSource::FromValue(" abc\n").Token(), "abc");
  EXPECT_EQ(*TokenSource::FromValue("").Token(), "");
}

TEST(TokenSourceTest, FileIsReReadWhenItChanges) {
  const std::string path = Path("token");
  std::ofstream(path) << "first\n";
  TokenSource source = TokenSource::FromFile(path);
  EXPECT_EQ(*source.Token(), "first");
  // Rotated the way a Kubernetes Secret is: a new file renamed over the old one.
  std::ofstream(path + ".new") << "second-token\n";
  ASSERT_EQ(rename((path + ".new").c_str(), path.c_str()), 0);
  EXPECT_EQ(*source.Token(), "second-token");
}

TEST(TokenSourceTest, MissingOrEmptyFileIsAnErrorNamingIt) {
  absl::StatusOr<std::string> missing = TokenSource::FromFile(Path("none")).Token();
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(Path("none")));
  std::ofstream(Path("empty")) << "\n";
  absl::StatusOr<std::string> empty = TokenSource::FromFile(Path("empty")).Token();
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace acmevault::clients
