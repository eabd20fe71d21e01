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
// bytes in standard base64 (padding optional). The LAST entry is the current key, used for every
// new write; all entries are used for reads, so rotation is: append a new key, restart, run
// re-wrap (VaultMaintenance::RewrapBatch) until done, then drop the old entry.
// Generate a key with `openssl rand -base64 32`.
#ifndef ACMEVAULT_STORAGE_KEK_SET_H_
#define ACMEVAULT_STORAGE_KEK_SET_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/secret.h"

namespace acmevault::storage {

// Environment variables read by KekSet::FromEnvironment.
inline constexpr char kKekFileEnv[] = "ACMEVAULT_KEK_FILE";  // path to a file in the format above
inline constexpr char kKekEnv[] = "ACMEVAULT_KEK";           // the text itself

// Immutable after construction; thread-safe for concurrent reads. Move-only (holds secrets,
// wiped on destruction).
class KekSet {
 public:
  // An empty set: stores refuse it (FAILED_PRECONDITION).
  KekSet() = default;
  KekSet(KekSet&&) = default;
  KekSet& operator=(KekSet&&) = default;

  // INVALID_ARGUMENT naming the entry number for a malformed entry, a key that is not 32 bytes
  // or a duplicate id (never echoing key text); FAILED_PRECONDITION if there is no entry.
  static absl::StatusOr<KekSet> Parse(absl::string_view text);
  // NOT_FOUND / PERMISSION_DENIED if the file cannot be read; then as Parse.
  static absl::StatusOr<KekSet> FromFile(const std::string& path);
  // ACMEVAULT_KEK_FILE if set, else ACMEVAULT_KEK. FAILED_PRECONDITION if neither is set,
  // INVALID_ARGUMENT if both are. For main(): libraries take a KekSet.
  static absl::StatusOr<KekSet> FromEnvironment();

  bool empty() const { return keys_.empty(); }
  // The id of the key new writes use. REQUIRES: !empty().
  const std::string& current_id() const { return keys_.back().first; }
  // The key with `id`, or nullptr. Borrowed; valid while this set lives.
  const crypto::SecretBytes* Find(absl::string_view id) const;
  // All ids, in file order (oldest first).
  std::vector<std::string> ids() const;

 private:
  std::vector<std::pair<std::string, crypto::SecretBytes>> keys_;
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_KEK_SET_H_
