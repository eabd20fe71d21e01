// KekSet: the key-encryption keys (KEKs) the vault wraps data keys under (storage/envelope.h).
//
// Text format (a file, or an environment variable's value):
//
//   # comments run to the end of the line
//   2024-01:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=
//   2024-07:3q2+78r+ur7erb7vyv66vt6tvu/K/rq+3q2+78r+ur4=
//
// One key per entry; entries are separated by newlines or commas. An entry is `ID:KEY`: ID
// matches [A-Za-z0-9._-]{1,64} and is stored beside every wrapped record; KEY is 32 random
// bytes in standard base64 (padding optional). An entry written `readonly:ID:KEY` is read-only:
// used for reads, never for writes. The LAST entry not marked read-only is the current key, used
// for every new write; all entries are used for reads. A set whose every entry is read-only has
// no current key and is refused, so a replica never starts writing under a key that other
// replicas may not hold.
//
// Rotation takes two phases, because replicas are rolled one at a time and a replica must read
// whatever any other running replica writes (docs/DESIGN.md, "KEKs"):
//   1. append the new key marked `readonly:` and roll every replica (all read it, none writes it);
//   2. remove the marker and roll every replica again (new writes use it; replicas still in
//      phase 1 can read them); run re-wrap (VaultMaintenance::RewrapBatch) until done;
//   3. drop the old entry (or first mark it `readonly:`) and roll once more.
// Generate a key with `openssl rand -base64 32`.
//
// An entry written `token:LABEL` (or `readonly:token:LABEL`) is an AES key inside the
// deployment's PKCS#11 token (crypto/pkcs11.h), labelled LABEL, which is also its id; it never
// leaves the token (data keys are wrapped there with CKM_AES_GCM). Such an entry needs a
// TokenKekLoader; rotation works as above, between any two kinds of key. `acmevaultd token-kek
// LABEL` makes one.
#ifndef ACMEVAULT_STORAGE_KEK_SET_H_
#define ACMEVAULT_STORAGE_KEK_SET_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/kek.h"
#include "crypto/secret.h"

namespace acmevault::storage {

// Environment variables read by KekSet::FromEnvironment.
inline constexpr char kKekFileEnv[] = "ACMEVAULT_KEK_FILE";  // path to a file in the format above
inline constexpr char kKekEnv[] = "ACMEVAULT_KEK";           // the text itself
// The prefix that marks an entry read-only.
inline constexpr char kReadOnlyPrefix[] = "readonly:";
// The prefix of an entry naming a key in the PKCS#11 token.
inline constexpr char kTokenPrefix[] = "token:";

// Opens the token's AES key labelled so (Pkcs11Token::LoadAesKey, bound by main.cc). Its
// errors are the set's: FAILED_PRECONDITION for a key the token lacks.
using TokenKekLoader = std::function<absl::StatusOr<std::unique_ptr<crypto::KeyEncryptionKey>>(
    absl::string_view label)>;

// Immutable after construction; thread-safe for concurrent reads. Move-only (holds secrets,
// wiped on destruction). Token keys borrow the token, which must outlive the set.
class KekSet {
 public:
  // An empty set: stores refuse it (FAILED_PRECONDITION).
  KekSet() = default;
  KekSet(KekSet&&) = default;
  KekSet& operator=(KekSet&&) = default;

  // INVALID_ARGUMENT naming the entry number for a malformed entry, a key that is not 32 bytes
  // or a duplicate id (never echoing key text); FAILED_PRECONDITION if there is no entry, or if
  // every entry is read-only.
  // A `token:` entry without `token` is FAILED_PRECONDITION; `token`'s error otherwise.
  static absl::StatusOr<KekSet> Parse(absl::string_view text, const TokenKekLoader& token = {});
  // NOT_FOUND / PERMISSION_DENIED if the file cannot be read; then as Parse.
  static absl::StatusOr<KekSet> FromFile(const std::string& path,
                                         const TokenKekLoader& token = {});
  // ACMEVAULT_KEK_FILE if set, else ACMEVAULT_KEK. FAILED_PRECONDITION if neither is set,
  // INVALID_ARGUMENT if both are. ACMEVAULT_KEK is wiped and removed from the environment once
  // read (whether it parses or not), so child processes and /proc/<pid>/environ never carry it.
  // Not thread-safe (setenv/getenv): for main(), before any thread starts. Libraries take a
  // KekSet.
  static absl::StatusOr<KekSet> FromEnvironment(const TokenKekLoader& token = {});
  // The text in environment variable `name` (a config's kek_env), wiped and removed from the
  // environment once read, as above. FAILED_PRECONDITION if it is unset or empty; then as Parse.
  static absl::StatusOr<KekSet> FromVariable(const std::string& name,
                                             const TokenKekLoader& token = {});

  bool empty() const { return keys_.empty(); }
  // The id of the key new writes use. REQUIRES: !empty().
  const std::string& current_id() const { return keys_[current_].first; }
  // The key with `id`, or nullptr. Borrowed; valid while this set lives.
  const crypto::KeyEncryptionKey* Find(absl::string_view id) const;
  // All ids, in file order (oldest first).
  std::vector<std::string> ids() const;

 private:
  std::vector<std::pair<std::string, std::unique_ptr<crypto::KeyEncryptionKey>>> keys_;
  size_t current_ = 0;  // index into keys_ of the last entry not marked read-only
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_KEK_SET_H_
