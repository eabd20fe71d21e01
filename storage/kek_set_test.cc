#include "storage/kek_set.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "crypto/aead.h"
#include "crypto/pkcs11.h"
#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Key(char fill) { return absl::Base64Escape(std::string(32, fill)); }

// The KEK `id` of `set` is the 32-byte `key`: what it wraps, crypto::Open under `key` opens.
bool IsKey(const KekSet& set, absl::string_view id, const std::string& key) {
  const crypto::KeyEncryptionKey* kek = set.Find(id);
  if (kek == nullptr) return false;
  auto wrapped = kek->Wrap("a data key", "aad");
  return wrapped.ok() && crypto::Open(key, *wrapped, "aad").ok();
}

// The process's SoftHSM2 test token, opened once.
crypto::Pkcs11Token& Token() {
  crypto::Pkcs11Token* token = crypto::testing::SharedTestToken();
  if (token == nullptr) std::abort();
  return *token;
}

TokenKekLoader Loader() {
  return [](absl::string_view label) { return Token().LoadAesKey(label); };
}

TEST(KekSet, LastEntryIsCurrentAndAllAreReadable) {
  auto set = KekSet::Parse("# rotation log\n2024-01:" + Key('a') + "  # old\n\n2024-07:" +
                           Key('b') + "\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->current_id(), "2024-07");
  EXPECT_THAT(set->ids(), ElementsAre("2024-01", "2024-07"));
  ASSERT_NE(set->Find("2024-01"), nullptr);
  EXPECT_TRUE(IsKey(*set, "2024-01", std::string(32, 'a')));
  EXPECT_TRUE(IsKey(*set, "2024-07", std::string(32, 'b')));
  EXPECT_EQ(set->Find("2023-01"), nullptr);
}

TEST(KekSet, CommasSeparateEntriesAndPaddingIsOptional) {
  std::string unpadded = Key('c');
  while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
  auto set = KekSet::Parse("one:" + Key('a') + ", two:" + unpadded);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->current_id(), "two");
  EXPECT_TRUE(IsKey(*set, "two", std::string(32, 'c')));
}

TEST(KekSet, EmptyTextIsAFailedPrecondition) {
  for (const char* text : {"", "  \n# only a comment\n,,"}) {
    auto set = KekSet::Parse(text);
    EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition) << text;
  }
  EXPECT_TRUE(KekSet().empty());
}

TEST(KekSet, MalformedEntriesAreRejectedWithoutEchoingKeyText) {
  const std::string short_key = absl::Base64Escape("sixteen byte key");
  struct Case {
    std::string text;
    std::string message;
  } cases[] = {
      {"k1 " + Key('a'), "key-encryption key entry 1 is not ID:BASE64"},
      {"ok:" + Key('a') + "\nbad id:" + Key('b'),
       "key-encryption key entry 2: id must match [A-Za-z0-9._-]{1,64}"},
      {"k1:" + short_key, "key-encryption key \"k1\" is not 32 bytes of base64"},
      {"k1:!!not base64!!", "key-encryption key \"k1\" is not 32 bytes of base64"},
      {"k1:" + Key('a') + ",k1:" + Key('b'), "key-encryption key id \"k1\" appears twice"},
  };
  for (const Case& c : cases) {
    auto set = KekSet::Parse(c.text);
    ASSERT_FALSE(set.ok()) << c.text;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(set.status().message(), c.message);
    EXPECT_THAT(std::string(set.status().message()), Not(HasSubstr(short_key)));
    EXPECT_THAT(std::string(set.status().message()), Not(HasSubstr(Key('a'))));
  }
}

TEST(KekSet, FromFileAndFromEnvironment) {
  std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/keks";
  std::ofstream(path) << "file-key:" << Key('f') << "\n";
  auto from_file = KekSet::FromFile(path);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->current_id(), "file-key");
  EXPECT_EQ(KekSet::FromFile(path + ".missing").status().code(), absl::StatusCode::kNotFound);

  unsetenv(kKekFileEnv);
  unsetenv(kKekEnv);
  auto none = KekSet::FromEnvironment();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("ACMEVAULT_KEK_FILE or ACMEVAULT_KEK"));

  setenv(kKekEnv, ("env-key:" + Key('e')).c_str(), 1);
  auto from_env = KekSet::FromEnvironment();
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->current_id(), "env-key");

  setenv(kKekEnv, ("env-key:" + Key('e')).c_str(), 1);  // the read removed it
  setenv(kKekFileEnv, path.c_str(), 1);
  EXPECT_EQ(KekSet::FromEnvironment().status().code(), absl::StatusCode::kInvalidArgument);
  unsetenv(kKekEnv);
  auto via_file = KekSet::FromEnvironment();
  ASSERT_TRUE(via_file.ok()) << via_file.status();
  EXPECT_EQ(via_file->current_id(), "file-key");
  unsetenv(kKekFileEnv);
}

TEST(KekSet, TheInlineTextLeavesTheEnvironmentOnceRead) {
  unsetenv(kKekFileEnv);
  setenv(kKekEnv, ("env-key:" + Key('e')).c_str(), 1);
  auto set = KekSet::FromEnvironment();
  ASSERT_TRUE(set.ok()) << set.status();
  // Child processes, /proc/<pid>/environ and crash dumps no longer carry the keys.
  EXPECT_EQ(std::getenv(kKekEnv), nullptr);

  setenv("CONFIGURED_KEK", ("named:" + Key('n')).c_str(), 1);
  auto named = KekSet::FromVariable("CONFIGURED_KEK");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->current_id(), "named");
  EXPECT_EQ(std::getenv("CONFIGURED_KEK"), nullptr);
  EXPECT_EQ(KekSet::FromVariable("CONFIGURED_KEK").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(KekSet, AReadOnlyEntryIsReadableButNeverCurrent) {
  auto set = KekSet::Parse("old:" + Key('o') + "\nreadonly:new:" + Key('n') + "\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->current_id(), "old");
  EXPECT_THAT(set->ids(), ElementsAre("old", "new"));
  ASSERT_NE(set->Find("new"), nullptr);
  EXPECT_TRUE(IsKey(*set, "new", std::string(32, 'n')));
  // An id may still be "readonly" itself: the marker needs a second colon.
  auto plain = KekSet::Parse("readonly:" + Key('r'));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->current_id(), "readonly");
}

TEST(KekSet, ASetWhoseEveryEntryIsReadOnlyIsRefused) {
  auto set = KekSet::Parse("readonly:old:" + Key('o') + ",readonly:new:" + Key('n'));
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(set.status().message(),
            "every key-encryption key is marked readonly: there is no current key to write "
            "under");
  EXPECT_THAT(std::string(set.status().message()), Not(HasSubstr(Key('o'))));
}

TEST(KekSet, TokenEntriesNameAesKeysInTheToken) {
  auto made = Token().GenerateAesKey("kek-set-token");
  ASSERT_TRUE(made.ok() || absl::IsAlreadyExists(made)) << made;
  auto set = KekSet::Parse("file:" + Key('f') + "\ntoken:kek-set-token\n", Loader());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->current_id(), "kek-set-token");
  EXPECT_THAT(set->ids(), ElementsAre("file", "kek-set-token"));
  EXPECT_TRUE(IsKey(*set, "file", std::string(32, 'f')));
  const crypto::KeyEncryptionKey* kek = set->Find("kek-set-token");
  ASSERT_NE(kek, nullptr);
  auto wrapped = kek->Wrap(std::string(32, 'd'), "aad");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  auto opened = kek->Unwrap(*wrapped, "aad");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), std::string(32, 'd'));

  // Read-only for the first phase of a rotation, like a file key.
  auto phase1 = KekSet::Parse("file:" + Key('f') + "\nreadonly:token:kek-set-token\n", Loader());
  ASSERT_TRUE(phase1.ok()) << phase1.status();
  EXPECT_EQ(phase1->current_id(), "file");
}

TEST(KekSet, TokenEntriesNeedATokenAndAKeyInIt) {
  auto no_token = KekSet::Parse("token:kek-x");
  EXPECT_EQ(no_token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_token.status().message(), HasSubstr("no token is configured"));
  auto missing = KekSet::Parse("token:kek-not-in-the-token", Loader());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"kek-not-in-the-token\""));
  EXPECT_EQ(KekSet::Parse("token:bad label", Loader()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acmevault::storage
