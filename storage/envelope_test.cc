#include "storage/envelope.h"

#include <string>

#include "absl/strings/escaping.h"
#include "crypto/pkcs11.h"
#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::storage {
namespace {

using ::testing::HasSubstr;

crypto::Pkcs11Token* Token() { return crypto::testing::SharedTestToken(); }

Envelope Make(const std::string& text) {
  auto keks = KekSet::Parse(text, [](absl::string_view label) {
    if (Token() == nullptr) return absl::StatusOr<std::unique_ptr<crypto::KeyEncryptionKey>>(
                                absl::FailedPreconditionError("the test token did not open"));
    return Token()->LoadAesKey(label);
  });
  EXPECT_TRUE(keks.ok()) << keks.status();
  auto envelope = Envelope::Create(std::move(*keks));
  EXPECT_TRUE(envelope.ok()) << envelope.status();
  return std::move(*envelope);
}

std::string Key(char fill) { return absl::Base64Escape(std::string(32, fill)); }

const std::string kSecret = "private key bytes, DER in real use";

TEST(Envelope, WithoutAKeyEncryptionKeyThereIsNoEnvelope) {
  auto envelope = Envelope::Create(KekSet());
  EXPECT_EQ(envelope.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(envelope.status().message(), HasSubstr("no key-encryption key"));
}

TEST(Envelope, SealsUnderTheCurrentKekAndOpens) {
  Envelope e = Make("old:" + Key('o') + "\nnew:" + Key('n'));
  const std::string context = AccountKeyContext(1, 2, 3);
  EXPECT_EQ(context, "account-key|tenant=1|account=2|version=3");
  auto sealed = e.Seal(kSecret, context);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(sealed->kek_id, "new");
  EXPECT_EQ(sealed->wrapped_data_key.size(), 32u + 28u);
  EXPECT_EQ(sealed->sealed_private_key.size(), kSecret.size() + 28u);
  EXPECT_EQ(sealed->sealed_private_key.find("private key"), std::string::npos);
  auto opened = e.Open(*sealed, context);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), kSecret);
}

TEST(Envelope, AnotherRecordsContextDoesNotOpen) {
  Envelope e = Make("k:" + Key('k'));
  auto sealed = e.Seal(kSecret, AccountKeyContext(1, 2, 3));
  ASSERT_TRUE(sealed.ok());
  for (const std::string& other :
       {AccountKeyContext(2, 2, 3), AccountKeyContext(1, 3, 3), AccountKeyContext(1, 2, 4),
        CertificateKeyContext(1, 2), OrderKeyContext(1, 2)}) {
    auto opened = e.Open(*sealed, other);
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << other;
    EXPECT_EQ(opened.status().message(),
              "sealed key of " + other + " does not authenticate");
  }
}

TEST(Envelope, ContextsNameTheirRecord) {
  EXPECT_EQ(CertificateKeyContext(4, 5), "certificate-key|tenant=4|cert=5");
  EXPECT_EQ(OrderKeyContext(4, 5), "order-key|tenant=4|order=5");
  // An order's key and the certificate with the same id are different records.
  Envelope e = Make("k:" + Key('k'));
  auto sealed = e.Seal(kSecret, OrderKeyContext(4, 5));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(e.Open(*sealed, CertificateKeyContext(4, 5)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(Envelope, SwappedHalvesOrRelabelledKekDoNotOpen) {
  Envelope e = Make("a:" + Key('a') + "\nb:" + Key('b'));
  const std::string context = CertificateKeyContext(4, 5);
  auto one = e.Seal(kSecret, context);
  auto two = e.Seal(kSecret, context);
  ASSERT_TRUE(one.ok() && two.ok());
  SealedKey mixed = *one;
  mixed.sealed_private_key = two->sealed_private_key;  // other record's data key
  EXPECT_EQ(e.Open(mixed, context).status().code(), absl::StatusCode::kDataLoss);
  SealedKey relabelled = *one;
  relabelled.kek_id = "a";
  EXPECT_EQ(e.Open(relabelled, context).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Envelope, UnknownKekIsAFailedPrecondition) {
  Envelope before = Make("retired:" + Key('r'));
  auto sealed = before.Seal(kSecret, CertificateKeyContext(1, 1));
  ASSERT_TRUE(sealed.ok());
  Envelope after = Make("current:" + Key('c'));
  auto opened = after.Open(*sealed, CertificateKeyContext(1, 1));
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(opened.status().message(), HasSubstr("\"retired\", which is not configured"));
}

TEST(Envelope, RewrapMovesTheDataKeyToTheCurrentKekOnly) {
  const std::string context = AccountKeyContext(9, 8, 1);
  Envelope old_only = Make("old:" + Key('o'));
  auto sealed = old_only.Seal(kSecret, context);
  ASSERT_TRUE(sealed.ok());

  Envelope both = Make("old:" + Key('o') + "\nnew:" + Key('n'));
  auto rewrapped = both.Rewrap(*sealed, context);
  ASSERT_TRUE(rewrapped.ok()) << rewrapped.status();
  EXPECT_EQ(rewrapped->kek_id, "new");
  EXPECT_EQ(rewrapped->sealed_private_key, sealed->sealed_private_key);
  EXPECT_NE(rewrapped->wrapped_data_key, sealed->wrapped_data_key);
  auto again = both.Rewrap(*rewrapped, context);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->wrapped_data_key, rewrapped->wrapped_data_key);

  // Once rewrapped, the old KEK can be dropped.
  Envelope new_only = Make("new:" + Key('n'));
  auto opened = new_only.Open(*rewrapped, context);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), kSecret);
  EXPECT_EQ(both.Rewrap(*sealed, AccountKeyContext(9, 8, 2)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(Envelope, SealsAPrivateKeyAsPkcs8AndOpensTheSameKey) {
  Envelope e = Make("k:" + Key('k'));
  auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string context = CertificateKeyContext(1, 2);
  auto sealed = e.SealPrivateKey(*key, context);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(sealed->sealed_private_key.size(), key->ToPkcs8Der().view().size() + 28u);
  auto opened = e.OpenPrivateKey(*sealed, context);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->public_key().ToDer(), key->public_key().ToDer());
  EXPECT_EQ(e.OpenPrivateKey(*sealed, CertificateKeyContext(1, 3)).status().code(),
            absl::StatusCode::kDataLoss);
  // Bytes that open but are no key are not returned as one.
  auto not_a_key = e.Seal(kSecret, context);
  ASSERT_TRUE(not_a_key.ok());
  EXPECT_FALSE(e.OpenPrivateKey(*not_a_key, context).ok());
}

// Two-phase rotation (docs/DESIGN.md): at every step, whatever any running replica writes, every
// other running replica can read.
TEST(Envelope, TwoPhaseRotationKeepsEveryReplicaReadingWhatAnyOtherWrites) {
  const std::string context = AccountKeyContext(1, 2, 3);
  const std::string old_only = "old:" + Key('o');
  const std::string phase1 = old_only + "\nreadonly:new:" + Key('n');
  const std::string phase2 = old_only + "\nnew:" + Key('n');

  // Phase 1: replicas still on the old file and replicas already on the phase-1 file.
  Envelope old_replica = Make(old_only);
  Envelope staged_replica = Make(phase1);
  EXPECT_EQ(staged_replica.current_kek_id(), "old");
  auto from_staged = staged_replica.Seal(kSecret, context);
  ASSERT_TRUE(from_staged.ok()) << from_staged.status();
  auto read_by_old = old_replica.Open(*from_staged, context);
  ASSERT_TRUE(read_by_old.ok()) << read_by_old.status();
  EXPECT_EQ(read_by_old->view(), kSecret);

  // Phase 2 starts only once no replica runs the old file: phase-1 and phase-2 replicas coexist.
  Envelope current_replica = Make(phase2);
  EXPECT_EQ(current_replica.current_kek_id(), "new");
  auto from_current = current_replica.Seal(kSecret, context);
  ASSERT_TRUE(from_current.ok()) << from_current.status();
  auto read_by_staged = staged_replica.Open(*from_current, context);
  ASSERT_TRUE(read_by_staged.ok()) << read_by_staged.status();
  EXPECT_EQ(read_by_staged->view(), kSecret);
  auto staged_by_current = current_replica.Open(*from_staged, context);
  ASSERT_TRUE(staged_by_current.ok()) << staged_by_current.status();

  // What the one-phase rotation did: an old replica cannot read the new key's records.
  EXPECT_EQ(old_replica.Open(*from_current, context).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Envelope, RotationMovesRecordsIntoAndBetweenTokenKeks) {
  ASSERT_NE(Token(), nullptr);
  for (const char* label : {"envelope-kek-1", "envelope-kek-2"}) {
    auto made = Token()->GenerateAesKey(label);
    ASSERT_TRUE(made.ok() || absl::IsAlreadyExists(made)) << made;
  }
  const std::string context = AccountKeyContext(1, 2, 3);
  Envelope file_only = Make("file:" + Key('f'));
  auto sealed = file_only.Seal(kSecret, context);
  ASSERT_TRUE(sealed.ok()) << sealed.status();

  // File KEK -> token KEK: only the wrapped data key changes, and it keeps its size.
  Envelope into_token = Make("file:" + Key('f') + "\ntoken:envelope-kek-1");
  EXPECT_EQ(into_token.current_kek_id(), "envelope-kek-1");
  auto moved = into_token.Rewrap(*sealed, context);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->kek_id, "envelope-kek-1");
  EXPECT_EQ(moved->wrapped_data_key.size(), sealed->wrapped_data_key.size());
  EXPECT_EQ(moved->sealed_private_key, sealed->sealed_private_key);
  auto opened = into_token.Open(*moved, context);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), kSecret);
  EXPECT_EQ(file_only.Open(*moved, context).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Token KEK -> another token KEK; the first may then be dropped.
  Envelope next = Make("token:envelope-kek-1\ntoken:envelope-kek-2");
  auto again = next.Rewrap(*moved, context);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kek_id, "envelope-kek-2");
  Envelope last = Make("token:envelope-kek-2");
  auto final_open = last.Open(*again, context);
  ASSERT_TRUE(final_open.ok()) << final_open.status();
  EXPECT_EQ(final_open->view(), kSecret);

  // A record wrapped in the token is bound to its context and its bytes like any other.
  EXPECT_EQ(last.Open(*again, AccountKeyContext(1, 2, 4)).status().code(),
            absl::StatusCode::kDataLoss);
  SealedKey flipped = *again;
  flipped.wrapped_data_key[30] ^= 1;
  EXPECT_EQ(last.Open(flipped, context).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace acmevault::storage
