#include "crypto/testing/softhsm.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace acmevault::crypto::testing {
namespace {

constexpr char kDebianModule[] = "/usr/lib/softhsm/libsofthsm2.so";

std::string Quoted(const std::string& s) { return absl::StrCat("'", s, "'"); }

absl::StatusOr<SoftHsmToken> MakeToken() {
  SoftHsmToken token;
  const char* module = getenv("ACMEVAULT_PKCS11_MODULE");
  token.module_path = module != nullptr && *module != '\0' ? module : kDebianModule;
  if (access(token.module_path.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("SoftHSM2 module ", token.module_path, " is missing (apt-get install softhsm2)"));
  }
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/softhsm-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::FailedPreconditionError("could not make a SoftHSM2 directory");
  }
  const std::string tokens = dir + "/tokens";
  token.conf_path = dir + "/softhsm2.conf";
  token.label = "acmevault-test";
  token.pin = "1234-test";
  if (mkdir(tokens.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError("could not make the SoftHSM2 token directory");
  }
  {
    std::ofstream conf(token.conf_path);
    conf << "directories.tokendir = " << tokens << "\n"
         << "objectstore.backend = file\n"
         << "log.level = ERROR\n"
         << "slots.removable = false\n";
    if (!conf) return absl::FailedPreconditionError("could not write the SoftHSM2 config");
  }
  setenv("SOFTHSM2_CONF", token.conf_path.c_str(), 1);
  const std::string command =
      absl::StrCat("softhsm2-util --init-token --free --label ", Quoted(token.label), " --pin ",
                   Quoted(token.pin), " --so-pin ", Quoted(token.pin + "-so"), " >/dev/null 2>&1");
  if (system(command.c_str()) != 0) {
    return absl::FailedPreconditionError("softhsm2-util --init-token failed (is softhsm2 installed?)");
  }
  return token;
}

}  // namespace

absl::StatusOr<SoftHsmToken> TestToken() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::StatusOr<SoftHsmToken>* token = nullptr;
  absl::MutexLock lock(&mu);
  if (token == nullptr) token = new absl::StatusOr<SoftHsmToken>(MakeToken());
  return *token;
}

absl::StatusOr<Pkcs11Options> TestTokenOptions(int session_pool_size) {
  absl::StatusOr<SoftHsmToken> token = TestToken();
  if (!token.ok()) return token.status();
  Pkcs11Options options;
  options.module_path = token->module_path;
  options.token_label = token->label;
  options.pin = SecretBytes(token->pin);
  options.session_pool_size = session_pool_size;
  return options;
}

Pkcs11Token* SharedTestToken() {
  static Pkcs11Token* token = [] {
    auto options = TestTokenOptions();
    if (!options.ok()) return static_cast<Pkcs11Token*>(nullptr);
    auto opened = Pkcs11Token::Open(*std::move(options));
    return opened.ok() ? opened->release() : nullptr;
  }();
  return token;
}

}  // namespace acmevault::crypto::testing
