#include "clients/cli/settings.h"

#include <fstream>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::cli {
namespace {

using ::testing::HasSubstr;

class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = std::string(getenv("TEST_TMPDIR")) + "/home";
    system(("mkdir -p " + home_ + "/.config/acmevault").c_str());
    env_["HOME"] = home_;
    WriteConfig("");
  }
  absl::StatusOr<clients::ClientOptions> Resolve(const std::vector<std::string>& args) {
    auto flags = ParseFlags(ConnectionFlags(), args, nullptr);
    EXPECT_TRUE(flags.ok()) << flags.status();
    return ResolveSettings(*flags, [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    });
  }
  void WriteConfig(const std::string& text) {
    std::ofstream(home_ + "/.config/acmevault/config") << text;
  }

  std::string home_;
  std::map<std::string, std::string> env_;
};

TEST_F(SettingsTest, Defaults) {
  auto o = Resolve({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server, "127.0.0.1:8443");
  EXPECT_EQ(o->token_file, "");
  EXPECT_EQ(o->timeout, absl::Seconds(60));
}

TEST_F(SettingsTest, FlagsBeatEnvironmentBeatsConfigFile) {
  WriteConfig("# comment\nserver = file:1\ntoken_file = /file/token\ntimeout = 5s\n");
  auto o = Resolve({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server, "file:1");
  EXPECT_EQ(o->token_file, "/file/token");
  EXPECT_EQ(o->timeout, absl::Seconds(5));
  env_["ACMEVAULT_SERVER"] = "env:2";
  EXPECT_EQ(Resolve({})->server, "env:2");
  EXPECT_EQ(Resolve({"--server=flag:3"})->server, "flag:3");
}

TEST_F(SettingsTest, TokenFromTheEnvironmentWhenNoFileIsNamed) {
  env_["ACMEVAULT_TOKEN"] = "t0k";
  EXPECT_EQ(Resolve({})->token, "t0k");
  EXPECT_EQ(Resolve({"--token-file=/x"})->token, "");
  env_["ACMEVAULT_TOKEN_FILE"] = "/env/token";
  EXPECT_EQ(Resolve({})->token_file, "/env/token");
}

TEST_F(SettingsTest, BadConfigLinesAndMissingNamedFilesAreErrors) {
  WriteConfig("server = a:1\nsevrer = b:2\n");
  auto o = Resolve({});
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(o.status().message(), HasSubstr("config:2"));
  EXPECT_EQ(Resolve({"--config=/nonexistent"}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace acmevault::cli
