// Test helper: key-encryption key sets from fixed, well-known (so never secret) keys.
#ifndef ACMEVAULT_STORAGE_TESTING_TEST_KEKS_H_
#define ACMEVAULT_STORAGE_TESTING_TEST_KEKS_H_

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "storage/kek_set.h"

namespace acmevault::storage::testing {

// "ID:<base64 of 32 bytes of `fill`>", one entry of the KekSet text format.
inline std::string KekText(absl::string_view id, char fill) {
  return absl::StrCat(id, ":", absl::Base64Escape(std::string(32, fill)));
}

// The parsed set, or an empty set (which every store refuses) if `text` does not parse.
inline KekSet TestKeks(const std::string& text) {
  auto keks = KekSet::Parse(text);
  if (!keks.ok()) return KekSet();
  return *std::move(keks);
}

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_TEST_KEKS_H_
