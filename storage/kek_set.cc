#include "storage/kek_set.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "crypto/aead.h"
#include "crypto/kek.h"

namespace acmevault::storage {
namespace {

bool ValidId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

// Text without comments: each '#' starts a comment that runs to the end of its line.
std::string StripComments(absl::string_view text) {
  std::string out;
  // Never reallocated, so no stray copy of key text is left behind in a freed buffer.
  out.reserve(text.size() + 1);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    size_t hash = line.find('#');
    absl::StrAppend(&out, line.substr(0, hash), "\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<KekSet> KekSet::Parse(absl::string_view text, const TokenKekLoader& token) {
  KekSet set;
  // Copies of key text are wiped when this function returns.
  crypto::SecretBytes stripped(StripComments(text));
  int entry = 0;
  bool has_writable = false;
  for (absl::string_view raw : absl::StrSplit(stripped.view(), absl::ByAnyChar(",\n"))) {
    absl::string_view item = absl::StripAsciiWhitespace(raw);
    if (item.empty()) continue;
    ++entry;
    // "readonly:ID:KEY"; "readonly:KEY" (one colon: base64 has none) is a key whose id is
    // "readonly".
    bool read_only = false;
    if (absl::StartsWith(item, kReadOnlyPrefix) &&
        item.find(':', sizeof(kReadOnlyPrefix) - 1) != absl::string_view::npos) {
      read_only = true;
      item = absl::StripLeadingAsciiWhitespace(item.substr(sizeof(kReadOnlyPrefix) - 1));
    }
    if (absl::ConsumePrefix(&item, kTokenPrefix)) {
      absl::string_view label = absl::StripAsciiWhitespace(item);
      if (!ValidId(label)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "key-encryption key entry ", entry, ": token key label must match [A-Za-z0-9._-]{1,64}"));
      }
      if (!token) {
        return absl::FailedPreconditionError(
            absl::StrCat("key-encryption key entry ", entry, " names key \"", label,
                         "\" in a PKCS#11 token, and no token is configured"));
      }
      if (set.Find(label) != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("key-encryption key id \"", label, "\" appears twice"));
      }
      auto kek = token(label);
      if (!kek.ok()) return kek.status();
      if (!read_only) {
        set.current_ = set.keys_.size();
        has_writable = true;
      }
      set.keys_.emplace_back(std::string(label), *std::move(kek));
      continue;
    }
    size_t colon = item.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("key-encryption key entry ", entry, " is not ID:BASE64"));
    }
    absl::string_view id = absl::StripAsciiWhitespace(item.substr(0, colon));
    absl::string_view b64 = absl::StripAsciiWhitespace(item.substr(colon + 1));
    if (!ValidId(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key-encryption key entry ", entry, ": id must match [A-Za-z0-9._-]{1,64}"));
    }
    std::string decoded;
    bool ok = absl::Base64Unescape(b64, &decoded);
    crypto::SecretBytes key(std::move(decoded));
    auto kek = crypto::MemoryKek(std::move(key));
    if (!ok || !kek.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key-encryption key \"", id, "\" is not ", crypto::kAeadKeySize,
                       " bytes of base64"));
    }
    if (set.Find(id) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("key-encryption key id \"", id, "\" appears twice"));
    }
    if (!read_only) {
      set.current_ = set.keys_.size();
      has_writable = true;
    }
    set.keys_.emplace_back(std::string(id), *std::move(kek));
  }
  if (set.keys_.empty()) {
    return absl::FailedPreconditionError("no key-encryption key configured");
  }
  if (!has_writable) {
    return absl::FailedPreconditionError(
        "every key-encryption key is marked readonly: there is no current key to write under");
  }
  return set;
}

absl::StatusOr<KekSet> KekSet::FromFile(const std::string& path, const TokenKekLoader& token) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == EACCES) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot read key-encryption key file ", path));
    }
    return absl::NotFoundError(absl::StrCat("cannot open key-encryption key file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  crypto::SecretBytes text(buffer.str());
  // The stream's own buffer is released unwiped; the key text in it is the file's content,
  // which is on disk anyway.
  auto set = Parse(text.view(), token);
  if (!set.ok()) {
    return absl::Status(set.status().code(),
                        absl::StrCat(path, ": ", set.status().message()));
  }
  return set;
}

absl::StatusOr<KekSet> KekSet::FromEnvironment(const TokenKekLoader& token) {
  const char* file = std::getenv(kKekFileEnv);
  const char* inline_text = std::getenv(kKekEnv);
  bool has_file = file != nullptr && *file != '\0';
  bool has_inline = inline_text != nullptr && *inline_text != '\0';
  if (has_file && has_inline) {
    return absl::InvalidArgumentError(
        absl::StrCat("both ", kKekFileEnv, " and ", kKekEnv, " are set; set one"));
  }
  if (has_file) return FromFile(file, token);
  if (has_inline) return FromVariable(kKekEnv, token);
  return absl::FailedPreconditionError(absl::StrCat(
      "no key-encryption key configured: set ", kKekFileEnv, " or ", kKekEnv,
      " (the vault never stores keys unencrypted)"));
}

absl::StatusOr<KekSet> KekSet::FromVariable(const std::string& name,
                                            const TokenKekLoader& token) {
  char* value = std::getenv(name.c_str());
  if (value == nullptr || *value == '\0') {
    return absl::FailedPreconditionError(
        absl::StrCat("key-encryption keys: $", name, " is not set"));
  }
  crypto::SecretBytes text{std::string(value)};
  // The environment block's copy is overwritten in place before it is dropped: unsetenv only
  // unlinks it.
  crypto::SecureWipe(value, std::strlen(value));
  unsetenv(name.c_str());
  return Parse(text.view(), token);
}

const crypto::KeyEncryptionKey* KekSet::Find(absl::string_view id) const {
  for (const auto& [kid, key] : keys_) {
    if (kid == id) return key.get();
  }
  return nullptr;
}

std::vector<std::string> KekSet::ids() const {
  std::vector<std::string> out;
  for (const auto& entry : keys_) out.push_back(entry.first);
  return out;
}

}  // namespace acmevault::storage
