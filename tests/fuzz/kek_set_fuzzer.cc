// The key-encryption key file format (storage/kek_set.h) as KekSet::Parse reads a file or
// ACMEVAULT_KEK. Accepted: it gave a key set.
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "storage/kek_set.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

namespace {

// One entry as the parser splits it (storage/kek_set.h): "readonly:ID:KEY" is read-only,
// "token:LABEL" names a key in a token (LABEL is its id, there is no key text).
struct Entry {
  std::string id;
  std::string key;
  bool read_only = false;
};

std::vector<Entry> SplitEntries(absl::string_view input) {
  std::vector<Entry> entries;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    line = line.substr(0, line.find('#'));
    for (absl::string_view item : absl::StrSplit(line, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (item.empty()) continue;
      Entry entry;
      if (absl::StartsWith(item, storage::kReadOnlyPrefix) &&
          item.find(':', sizeof(storage::kReadOnlyPrefix) - 1) != absl::string_view::npos) {
        entry.read_only = true;
        item = absl::StripLeadingAsciiWhitespace(item.substr(sizeof(storage::kReadOnlyPrefix) - 1));
      }
      if (absl::ConsumePrefix(&item, storage::kTokenPrefix)) {
        entry.id = std::string(absl::StripAsciiWhitespace(item));
      } else {
        size_t colon = item.find(':');
        if (colon == absl::string_view::npos) continue;
        entry.id = std::string(absl::StripAsciiWhitespace(item.substr(0, colon)));
        entry.key = std::string(absl::StripAsciiWhitespace(item.substr(colon + 1)));
      }
      entries.push_back(std::move(entry));
    }
  }
  return entries;
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  auto set = storage::KekSet::Parse(input);
  std::vector<Entry> entries = SplitEntries(input);
  if (!set.ok()) {
    // The error never repeats key text: no entry's KEY part appears in it. Checked for KEY
    // parts of 16 or more base64 characters that are not also part of an id (errors do name
    // ids): no fixed wording in an error holds such a run.
    for (const Entry& entry : entries) {
      const std::string& key = entry.key;
      if (key.size() < 16 || !std::all_of(key.begin(), key.end(), [](char c) {
            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' ||
                   c == '=';
          })) {
        continue;
      }
      bool in_an_id = false;
      for (const Entry& other : entries) in_an_id |= absl::StrContains(other.id, key);
      if (!in_an_id) FUZZ_CHECK(!absl::StrContains(set.status().message(), key));
    }
    return Verdict::kRejected;
  }
  FUZZ_CHECK(!set->empty());
  // Every entry is a key, in file order; the current key is the last one not read-only.
  std::vector<std::string> ids = set->ids();
  FUZZ_CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  FUZZ_CHECK(ids.size() == entries.size());
  std::string current;
  for (size_t i = 0; i < entries.size() && i < ids.size(); ++i) {
    FUZZ_CHECK(ids[i] == entries[i].id);
    if (!entries[i].read_only) current = entries[i].id;
  }
  FUZZ_CHECK(!current.empty() && set->current_id() == current);
  for (const std::string& id : ids) {
    const crypto::KeyEncryptionKey* key = set->Find(id);
    FUZZ_CHECK(key != nullptr);
    auto wrapped = key->Wrap(std::string(32, 'd'), "aad");
    FUZZ_CHECK(wrapped.ok() && wrapped->size() == 60);
  }
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
