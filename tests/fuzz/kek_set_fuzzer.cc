// The key-encryption key file format (storage/kek_set.h) as KekSet::Parse reads a file or
// ACMEVAULT_KEK. Accepted: it gave a key set.
#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "storage/kek_set.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  auto set = storage::KekSet::Parse(input);
  if (!set.ok()) {
    // The error never repeats key text: no entry's KEY part appears in it. Checked for KEY
    // parts of 16 or more base64 characters that are not also part of an id (errors do name
    // ids): no fixed wording in an error holds such a run. Entries are split as the parser
    // does, "readonly:ID:KEY" included, so an id is never mistaken for key text.
    std::vector<std::string> ids, keys;
    for (absl::string_view line : absl::StrSplit(input, '\n')) {
      line = line.substr(0, line.find('#'));
      for (absl::string_view item : absl::StrSplit(line, ',')) {
        item = absl::StripAsciiWhitespace(item);
        if (absl::StartsWith(item, storage::kReadOnlyPrefix) &&
            item.find(':', sizeof(storage::kReadOnlyPrefix) - 1) != absl::string_view::npos) {
          item.remove_prefix(sizeof(storage::kReadOnlyPrefix) - 1);
        }
        // "token:LABEL" names a key in a token: LABEL is an id, not key text.
        if (absl::ConsumePrefix(&item, storage::kTokenPrefix)) {
          ids.emplace_back(absl::StripAsciiWhitespace(item));
          continue;
        }
        size_t colon = item.find(':');
        if (colon == absl::string_view::npos) continue;
        ids.emplace_back(absl::StripAsciiWhitespace(item.substr(0, colon)));
        keys.emplace_back(absl::StripAsciiWhitespace(item.substr(colon + 1)));
      }
    }
    for (const std::string& key : keys) {
      if (key.size() < 16 || !std::all_of(key.begin(), key.end(), [](char c) {
            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' ||
                   c == '=';
          })) {
        continue;
      }
      bool in_an_id = false;
      for (const std::string& id : ids) in_an_id |= absl::StrContains(id, key);
      if (!in_an_id) FUZZ_CHECK(!absl::StrContains(set.status().message(), key));
    }
    return Verdict::kRejected;
  }
  FUZZ_CHECK(!set->empty());
  std::vector<std::string> ids = set->ids();
  FUZZ_CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  FUZZ_CHECK(set->current_id() == ids.back());
  for (const std::string& id : ids) {
    const crypto::KeyEncryptionKey* key = set->Find(id);
    FUZZ_CHECK(key != nullptr);
    auto wrapped = key->Wrap(std::string(32, 'd'), "aad");
    FUZZ_CHECK(wrapped.ok() && wrapped->size() == 60);
  }
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
