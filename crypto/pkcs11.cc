#include "crypto/pkcs11.h"

#include <dlfcn.h>

// p11-kit's pkcs11.h: the standard names (CK_RV, C_Sign, CKM_ECDSA, ...) in its compatibility
// mode, the default. It #undefs its lower-case helper macros at the end.
#include <p11-kit/pkcs11.h>

#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "crypto/aead.h"
#include "crypto/digest.h"

namespace acmevault::crypto {
namespace {

// Not a PKCS#11 code (vendor range), so never what a module returns: "no object has that id".
constexpr CK_RV kObjectMissing = CKR_VENDOR_DEFINED | 0x0acfe001UL;

constexpr char kObjectIdPrefix[] = "acmevault-";
constexpr absl::Duration kSessionWait = absl::Seconds(30);

// DER of the named curves' OIDs (CKA_EC_PARAMS): prime256v1 and secp384r1.
constexpr unsigned char kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr unsigned char kP384Params[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
// RFC 8017 §9.2 note 1: the DER DigestInfo prefix of a SHA-256 hash, for CKM_RSA_PKCS.
constexpr unsigned char kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                               0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                               0x01, 0x05, 0x00, 0x04, 0x20};

const char* RvName(CK_RV rv) {
  switch (rv) {
#define AV_RV(name) \
  case name:        \
    return #name;
    AV_RV(CKR_OK)
    AV_RV(CKR_HOST_MEMORY)
    AV_RV(CKR_SLOT_ID_INVALID)
    AV_RV(CKR_GENERAL_ERROR)
    AV_RV(CKR_FUNCTION_FAILED)
    AV_RV(CKR_ARGUMENTS_BAD)
    AV_RV(CKR_ATTRIBUTE_SENSITIVE)
    AV_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    AV_RV(CKR_ATTRIBUTE_VALUE_INVALID)
    AV_RV(CKR_DATA_INVALID)
    AV_RV(CKR_DATA_LEN_RANGE)
    AV_RV(CKR_DEVICE_ERROR)
    AV_RV(CKR_DEVICE_MEMORY)
    AV_RV(CKR_DEVICE_REMOVED)
    AV_RV(CKR_ENCRYPTED_DATA_INVALID)
    AV_RV(CKR_ENCRYPTED_DATA_LEN_RANGE)
    AV_RV(CKR_KEY_HANDLE_INVALID)
    AV_RV(CKR_KEY_TYPE_INCONSISTENT)
    AV_RV(CKR_KEY_FUNCTION_NOT_PERMITTED)
    AV_RV(CKR_MECHANISM_INVALID)
    AV_RV(CKR_MECHANISM_PARAM_INVALID)
    AV_RV(CKR_OBJECT_HANDLE_INVALID)
    AV_RV(CKR_OPERATION_ACTIVE)
    AV_RV(CKR_PIN_INCORRECT)
    AV_RV(CKR_PIN_INVALID)
    AV_RV(CKR_PIN_LEN_RANGE)
    AV_RV(CKR_PIN_EXPIRED)
    AV_RV(CKR_PIN_LOCKED)
    AV_RV(CKR_SESSION_CLOSED)
    AV_RV(CKR_SESSION_COUNT)
    AV_RV(CKR_SESSION_HANDLE_INVALID)
    AV_RV(CKR_SESSION_READ_ONLY)
    AV_RV(CKR_SIGNATURE_INVALID)
    AV_RV(CKR_TEMPLATE_INCOMPLETE)
    AV_RV(CKR_TEMPLATE_INCONSISTENT)
    AV_RV(CKR_TOKEN_NOT_PRESENT)
    AV_RV(CKR_TOKEN_NOT_RECOGNIZED)
    AV_RV(CKR_TOKEN_WRITE_PROTECTED)
    AV_RV(CKR_USER_NOT_LOGGED_IN)
    AV_RV(CKR_USER_PIN_NOT_INITIALIZED)
    AV_RV(CKR_BUFFER_TOO_SMALL)
    AV_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    AV_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef AV_RV
    default:
      return nullptr;
  }
}

std::string RvText(CK_RV rv) {
  const char* name = RvName(rv);
  return name != nullptr ? name : absl::StrCat("CKR 0x", absl::Hex(rv));
}

// The token restarted, or the process lost it: worth re-opening the sessions and trying again.
bool ConnectionLost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
         rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
         rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_CRYPTOKI_NOT_INITIALIZED ||
         rv == CKR_DEVICE_ERROR;
}

// One Status per CK_RV class; `what` names the operation (and object), never data.
absl::Status MapRv(CK_RV rv, absl::string_view what, absl::string_view token) {
  std::string message = absl::StrCat(what, " in ", token, ": ", RvText(rv));
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
      return absl::PermissionDeniedError(
          absl::StrCat("the PKCS#11 ", token, " refused the PIN (", RvText(rv), ")"));
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
      return absl::UnimplementedError(message);
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return absl::InvalidArgumentError("sealed data does not authenticate");
    case CKR_DEVICE_MEMORY:
    case CKR_SESSION_COUNT:
      return absl::ResourceExhaustedError(message);
    default:
      if (ConnectionLost(rv)) return absl::UnavailableError(message);
      return absl::InternalError(message);
  }
}

// A fixed-width, space-padded PKCS#11 text field, trimmed.
std::string FieldText(const unsigned char* field, size_t size) {
  return std::string(absl::StripTrailingAsciiWhitespace(
      absl::string_view(reinterpret_cast<const char*>(field), size)));
}

// The point inside CKA_EC_POINT: PKCS#11 wants a DER OCTET STRING around it; some tokens give
// the bare point.
absl::StatusOr<std::string> UnwrapEcPoint(const std::string& value) {
  if (value.size() >= 2 && value[0] == 0x04) {
    size_t header = 2;
    size_t length = static_cast<unsigned char>(value[1]);
    if (length == 0x81 && value.size() >= 3) {
      header = 3;
      length = static_cast<unsigned char>(value[2]);
    }
    if (header + length == value.size()) return value.substr(header);
  }
  if (!value.empty() && value[0] == 0x04) return value;
  return absl::InvalidArgumentError("CKA_EC_POINT is neither a DER OCTET STRING nor a point");
}

class Attribute {
 public:
  Attribute(CK_ATTRIBUTE_TYPE type, const void* value, size_t size) {
    a_.type = type;
    a_.pValue = const_cast<void*>(value);
    a_.ulValueLen = size;
  }
  const CK_ATTRIBUTE& get() const { return a_; }

 private:
  CK_ATTRIBUTE a_;
};

constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;

// What every key this class makes shares: a token object of `object_class` and `key_type`
// (borrowed; they must outlive the template), private, sensitive (never read in clear) and not
// extractable (never wrapped out either), whose CKA_ID and CKA_LABEL are `id` (borrowed too).
std::vector<CK_ATTRIBUTE> KeptInToken(const CK_OBJECT_CLASS& object_class,
                                      const CK_KEY_TYPE& key_type, absl::string_view id) {
  return {
      Attribute(CKA_CLASS, &object_class, sizeof object_class).get(),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof key_type).get(),
      Attribute(CKA_TOKEN, &kTrue, sizeof kTrue).get(),
      Attribute(CKA_PRIVATE, &kTrue, sizeof kTrue).get(),
      Attribute(CKA_SENSITIVE, &kTrue, sizeof kTrue).get(),
      Attribute(CKA_EXTRACTABLE, &kFalse, sizeof kFalse).get(),
      Attribute(CKA_ID, id.data(), id.size()).get(),
      Attribute(CKA_LABEL, id.data(), id.size()).get(),
  };
}

// A loaded module, shared by every Pkcs11Token of the process that names the same path: a
// module is initialised once per process, and finalizing it (on reconnection) affects them all.
struct Module {
  ~Module() {
    if (functions != nullptr) functions->C_Finalize(nullptr);
    if (handle != nullptr) dlclose(handle);
  }
  void* handle = nullptr;
  CK_FUNCTION_LIST* functions = nullptr;
  // Held shared around every call into the module, exclusively while sessions are re-opened or
  // the module re-initialised, so no call of any token is inside the module when it is
  // finalized.
  absl::Mutex mu;
};

absl::StatusOr<std::shared_ptr<Module>> LoadModule(const std::string& path) {
  static absl::Mutex registry_mu(absl::kConstInit);
  static auto* registry = new std::map<std::string, std::weak_ptr<Module>>();
  absl::MutexLock lock(&registry_mu);
  if (auto loaded = (*registry)[path].lock()) return loaded;
  auto module = std::make_shared<Module>();
  // RTLD_DEEPBIND: a module resolves its own dependencies first. Modules link a TLS library
  // of their own (SoftHSM2 links OpenSSL 3); without it, in a binary built against BoringSSL
  // the module's calls would bind to BoringSSL's functions of the same names.
  module->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (module->handle == nullptr) {
    const char* error = dlerror();
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 module \"", path,
                     "\" could not be loaded: ", error != nullptr ? error : "dlopen failed"));
  }
  auto get_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(module->handle, "C_GetFunctionList"));
  if (get_list == nullptr || get_list(&module->functions) != CKR_OK ||
      module->functions == nullptr) {
    module->functions = nullptr;
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module \"", path, "\" could not be loaded: it has no C_GetFunctionList"));
  }
  (*registry)[path] = module;
  return module;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl: the module, the slot, the session pool and reconnection.

class Pkcs11Token::Impl {
 public:
  // One operation on a session. Returns the first failing CK_RV, or CKR_OK.
  using Operation = std::function<CK_RV(CK_SESSION_HANDLE session)>;

  explicit Impl(Pkcs11Options options) : options_(std::move(options)) {}
  ~Impl() {
    if (module_ != nullptr) {
      absl::MutexLock lock(&module_->mu);
      CloseSessions();
    }
  }

  absl::Status Load() {
    if (options_.module_path.empty()) {
      return absl::InvalidArgumentError("PKCS#11: module_path is required");
    }
    if (options_.token_label.empty() && !options_.slot_id) {
      return absl::InvalidArgumentError("PKCS#11: a token label or a slot id is required");
    }
    ASSIGN_OR_RETURN(module_, LoadModule(options_.module_path));
    functions_ = module_->functions;
    absl::MutexLock lock(&module_->mu);
    CK_RV rv = Initialize();
    if (rv != CKR_OK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PKCS#11 module \"", options_.module_path, "\" did not initialise: ", RvText(rv)));
    }
    RETURN_IF_ERROR(FindSlot());
    name_ = absl::StrCat("token \"", label_, "\" (slot ", slot_, ")");
    rv = OpenSessions();
    if (rv != CKR_OK) return MapRv(rv, "opening sessions", name_);
    ReadMechanisms();
    return absl::OkStatus();
  }

  const std::string& name() const { return name_; }
  bool Offers(CK_MECHANISM_TYPE m) const { return mechanisms_.count(m) > 0; }
  CK_FUNCTION_LIST* f() const { return functions_; }

  // Runs `op` on a pooled session. On a lost connection the sessions are re-opened (the module
  // re-initialised if need be) and `op` runs once more; a stale object handle is looked up
  // again once. `what` names the operation for errors.
  absl::Status Run(absl::string_view what, const Operation& op) {
    CK_RV rv = CKR_OK;
    for (int attempt = 0; attempt < 2; ++attempt) {
      int generation = 0;
      ASSIGN_OR_RETURN(CK_SESSION_HANDLE session, Acquire(&generation));
      {
        absl::ReaderMutexLock lock(&module_->mu);
        rv = op(session);
      }
      Release(session, generation);
      if (rv == CKR_OK) return absl::OkStatus();
      if (rv == kObjectMissing) {
        return absl::FailedPreconditionError(
            absl::StrCat(what, ": no such object in ", name_,
                         " (destroyed, or another token is configured)"));
      }
      if (attempt > 0) break;
      if (ConnectionLost(rv)) {
        RETURN_IF_ERROR(Reconnect(generation));
      } else if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID) {
        ForgetHandles();
      } else {
        break;
      }
    }
    return MapRv(rv, what, name_);
  }

  // The handle of the object of `object_class` whose CKA_ID is `id`, cached per connection.
  // kObjectMissing when there is none.
  CK_RV FindObject(CK_SESSION_HANDLE session, CK_OBJECT_CLASS object_class, absl::string_view id,
                   CK_OBJECT_HANDLE* out) {
    const std::string key = absl::StrCat(object_class, ":", id);
    {
      absl::MutexLock lock(&pool_mu_);
      auto it = handles_.find(key);
      if (it != handles_.end()) {
        *out = it->second;
        return CKR_OK;
      }
    }
    std::vector<CK_OBJECT_HANDLE> found;
    CK_RV rv = FindAll(session, object_class, id, &found);
    if (rv != CKR_OK) return rv;
    if (found.empty()) return kObjectMissing;
    *out = found.front();
    absl::MutexLock lock(&pool_mu_);
    handles_[key] = *out;
    return CKR_OK;
  }

  // Every object of `object_class` (any class when 0) whose CKA_ID is `id` (any id when empty).
  CK_RV FindAll(CK_SESSION_HANDLE session, CK_OBJECT_CLASS object_class, absl::string_view id,
                std::vector<CK_OBJECT_HANDLE>* out) {
    std::vector<CK_ATTRIBUTE> query;
    if (object_class != 0) query.push_back(Attribute(CKA_CLASS, &object_class, sizeof object_class).get());
    if (!id.empty()) query.push_back(Attribute(CKA_ID, id.data(), id.size()).get());
    CK_RV rv = functions_->C_FindObjectsInit(session, query.data(), query.size());
    if (rv != CKR_OK) return rv;
    CK_OBJECT_HANDLE batch[32];
    CK_ULONG count = 0;
    do {
      rv = functions_->C_FindObjects(session, batch, 32, &count);
      if (rv != CKR_OK) break;
      out->insert(out->end(), batch, batch + count);
    } while (count == 32);
    CK_RV final_rv = functions_->C_FindObjectsFinal(session);
    return rv != CKR_OK ? rv : final_rv;
  }

  // The value of one attribute; CKR_ATTRIBUTE_SENSITIVE and the like as the token says.
  CK_RV GetAttribute(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                     std::string* out) {
    CK_ATTRIBUTE a = {type, nullptr, 0};
    CK_RV rv = functions_->C_GetAttributeValue(session, object, &a, 1);
    if (rv != CKR_OK) return rv;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return CKR_ATTRIBUTE_SENSITIVE;
    out->assign(a.ulValueLen, '\0');
    a.pValue = out->data();
    return functions_->C_GetAttributeValue(session, object, &a, 1);
  }

  CK_RV GetBool(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type,
                bool* out) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE a = {type, &value, sizeof value};
    CK_RV rv = functions_->C_GetAttributeValue(session, object, &a, 1);
    *out = value == CK_TRUE;
    return rv;
  }

  void ForgetHandles() {
    absl::MutexLock lock(&pool_mu_);
    handles_.clear();
  }

  absl::Status SimulateRestart(bool finalize) {
    absl::MutexLock lock(&module_->mu);
    CK_RV rv = finalize ? functions_->C_Finalize(nullptr) : functions_->C_CloseAllSessions(slot_);
    return rv == CKR_OK ? absl::OkStatus() : MapRv(rv, "simulating a restart", name_);
  }

 private:
  CK_RV Initialize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_->mu) {
    CK_C_INITIALIZE_ARGS args = {};
    args.flags = CKF_OS_LOCKING_OK;  // Called from many threads: the module locks with the OS.
    CK_RV rv = functions_->C_Initialize(&args);
    return rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? CKR_OK : rv;
  }

  absl::Status FindSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_->mu) {
    CK_ULONG count = 0;
    CK_RV rv = functions_->C_GetSlotList(CK_TRUE, nullptr, &count);
    std::vector<CK_SLOT_ID> slots(count);
    if (rv == CKR_OK && count > 0) rv = functions_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv != CKR_OK) return MapRv(rv, "listing slots", options_.module_path);
    slots.resize(count);
    std::vector<std::string> present;
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info;
      if (functions_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      std::string label = FieldText(info.label, sizeof info.label);
      const bool match = options_.token_label.empty() ? slot == *options_.slot_id
                                                      : label == options_.token_label;
      if (match) {
        slot_ = slot;
        label_ = label;
        return absl::OkStatus();
      }
      present.push_back(absl::StrCat("\"", label, "\" (slot ", slot, ")"));
    }
    const std::string wanted =
        options_.token_label.empty() ? absl::StrCat("in slot ", *options_.slot_id)
                                     : absl::StrCat("labelled \"", options_.token_label, "\"");
    return absl::FailedPreconditionError(absl::StrCat(
        "no PKCS#11 token ", wanted, " in module \"", options_.module_path, "\" (tokens present: ",
        present.empty() ? "none" : absl::StrJoin(present, ", "), ")"));
  }

  CK_RV OpenSessions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_->mu) {
    const int size = options_.session_pool_size > 0 ? options_.session_pool_size : 4;
    std::vector<CK_SESSION_HANDLE> opened;
    for (int i = 0; i < size; ++i) {
      CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
      CK_RV rv = functions_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                           nullptr, &session);
      if (rv != CKR_OK) {
        for (CK_SESSION_HANDLE s : opened) functions_->C_CloseSession(s);
        return rv;
      }
      opened.push_back(session);
    }
    // Login is per token and application: one login covers every session.
    std::string pin(options_.pin.view());
    CK_RV rv = functions_->C_Login(opened.front(), CKU_USER,
                                   reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
    WipeString(&pin);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      for (CK_SESSION_HANDLE s : opened) functions_->C_CloseSession(s);
      return rv;
    }
    absl::MutexLock lock(&pool_mu_);
    ++generation_;
    handles_.clear();
    open_ = opened;
    free_ = opened;
    healthy_ = true;
    return CKR_OK;
  }

  void CloseSessions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_->mu) {
    std::vector<CK_SESSION_HANDLE> open;
    {
      absl::MutexLock lock(&pool_mu_);
      open.swap(open_);
      free_.clear();
      handles_.clear();
      healthy_ = false;
      ++generation_;
    }
    for (CK_SESSION_HANDLE s : open) functions_->C_CloseSession(s);
  }

  void ReadMechanisms() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_->mu) {
    CK_ULONG count = 0;
    if (functions_->C_GetMechanismList(slot_, nullptr, &count) != CKR_OK) return;
    std::vector<CK_MECHANISM_TYPE> list(count);
    if (functions_->C_GetMechanismList(slot_, list.data(), &count) != CKR_OK) return;
    mechanisms_.insert(list.begin(), list.begin() + count);
  }

  // Re-opens every session unless another thread already did since `seen_generation`; when that
  // fails, re-initialises the module first. UNAVAILABLE while the token stays away.
  absl::Status Reconnect(int seen_generation) {
    absl::MutexLock lock(&module_->mu);
    {
      absl::MutexLock pool(&pool_mu_);
      if (generation_ != seen_generation && healthy_) return absl::OkStatus();
    }
    CloseSessions();
    CK_RV rv = OpenSessions();
    if (rv != CKR_OK && rv != CKR_PIN_INCORRECT) {
      functions_->C_Finalize(nullptr);
      rv = Initialize();
      if (rv == CKR_OK) {
        absl::Status found = FindSlot();
        if (!found.ok()) return absl::UnavailableError(found.message());
        rv = OpenSessions();
      }
    }
    if (rv != CKR_OK) {
      absl::Status s = MapRv(rv, "reconnecting", name_);
      return absl::IsPermissionDenied(s) ? s : absl::UnavailableError(s.message());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<CK_SESSION_HANDLE> Acquire(int* generation) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      int seen = 0;
      {
        absl::MutexLock lock(&pool_mu_);
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(pool_mu_) {
          return !free_.empty() || !healthy_;
        };
        if (!pool_mu_.AwaitWithTimeout(absl::Condition(&ready), kSessionWait)) {
          return absl::UnavailableError(
              absl::StrCat("no PKCS#11 session of ", name_, " came free within ",
                           absl::FormatDuration(kSessionWait)));
        }
        if (healthy_) {
          *generation = generation_;
          CK_SESSION_HANDLE s = free_.back();
          free_.pop_back();
          return s;
        }
        seen = generation_;
      }
      RETURN_IF_ERROR(Reconnect(seen));
    }
    return absl::UnavailableError(absl::StrCat("PKCS#11 ", name_, " is not reachable"));
  }

  void Release(CK_SESSION_HANDLE session, int generation) {
    absl::MutexLock lock(&pool_mu_);
    // A session of an earlier connection was closed by the reconnection; it is not reused.
    if (generation == generation_) free_.push_back(session);
  }

  const Pkcs11Options options_;
  std::shared_ptr<Module> module_;
  CK_FUNCTION_LIST* functions_ = nullptr;  // module_'s
  CK_SLOT_ID slot_ = 0;
  std::string label_;
  std::string name_;
  std::set<CK_MECHANISM_TYPE> mechanisms_;

  // Taken after module_->mu when both are held.
  absl::Mutex pool_mu_;
  std::vector<CK_SESSION_HANDLE> open_ ABSL_GUARDED_BY(pool_mu_);
  std::vector<CK_SESSION_HANDLE> free_ ABSL_GUARDED_BY(pool_mu_);
  int generation_ ABSL_GUARDED_BY(pool_mu_) = 0;
  bool healthy_ ABSL_GUARDED_BY(pool_mu_) = false;
  std::map<std::string, CK_OBJECT_HANDLE> handles_ ABSL_GUARDED_BY(pool_mu_);
};

// ---------------------------------------------------------------------------------------------
// Signer

class Pkcs11Token::TokenSigner final : public Signer {
 public:
  TokenSigner(Impl* impl, std::string id, PublicKey key)
      : impl_(impl), id_(std::move(id)), key_(std::move(key)) {}

  const PublicKey& public_key() const override { return key_; }

  absl::StatusOr<std::string> Sign(absl::string_view data) const override {
    const KeyAlgorithm algorithm = key_.algorithm();
    const bool ec = algorithm == KeyAlgorithm::kEcdsaP256 || algorithm == KeyAlgorithm::kEcdsaP384;
    CK_MECHANISM mechanism = {CKM_ECDSA, nullptr, 0};
    std::string input;
    if (ec) {
      input = algorithm == KeyAlgorithm::kEcdsaP384 ? Sha384(data) : Sha256(data);
    } else if (impl_->Offers(CKM_SHA256_RSA_PKCS)) {
      mechanism.mechanism = CKM_SHA256_RSA_PKCS;
      input = std::string(data);
    } else {
      mechanism.mechanism = CKM_RSA_PKCS;
      input = absl::StrCat(
          absl::string_view(reinterpret_cast<const char*>(kSha256DigestInfo),
                            sizeof kSha256DigestInfo),
          Sha256(data));
    }
    std::string signature;
    absl::Status s = impl_->Run(absl::StrCat("signing with key object \"", id_, "\""),
                                [&](CK_SESSION_HANDLE session) -> CK_RV {
      CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
      CK_RV rv = impl_->FindObject(session, CKO_PRIVATE_KEY, id_, &key);
      if (rv != CKR_OK) return rv;
      rv = impl_->f()->C_SignInit(session, &mechanism, key);
      if (rv != CKR_OK) return rv;
      auto* in = reinterpret_cast<CK_BYTE*>(input.data());
      CK_ULONG size = 0;
      rv = impl_->f()->C_Sign(session, in, input.size(), nullptr, &size);
      if (rv != CKR_OK) return rv;
      signature.assign(size, '\0');
      rv = impl_->f()->C_Sign(session, in, input.size(),
                              reinterpret_cast<CK_BYTE*>(signature.data()), &size);
      signature.resize(size);
      return rv;
    });
    RETURN_IF_ERROR(s);
    const size_t want = algorithm == KeyAlgorithm::kEcdsaP384 ? 96 : 64;
    if (ec && signature.size() != want) {
      return absl::InternalError(absl::StrCat("the token's ECDSA signature is ", signature.size(),
                                              " bytes, want ", want, " (R||S)"));
    }
    return signature;
  }

 private:
  Impl* const impl_;
  const std::string id_;
  const PublicKey key_;
};

// ---------------------------------------------------------------------------------------------
// Key-encryption key

class Pkcs11Token::TokenKek final : public KeyEncryptionKey {
 public:
  TokenKek(Impl* impl, std::string label) : impl_(impl), label_(std::move(label)) {}

  absl::StatusOr<std::string> Wrap(absl::string_view data_key,
                                   absl::string_view aad) const override {
    std::string nonce = RandomBytes(kAeadNonceSize);
    std::string out;
    ASSIGN_OR_RETURN(out, Crypt(/*encrypt=*/true, nonce, data_key, aad));
    return absl::StrCat(nonce, out);
  }

  absl::StatusOr<SecretBytes> Unwrap(absl::string_view wrapped,
                                     absl::string_view aad) const override {
    if (wrapped.size() < kAeadOverhead) {
      return absl::InvalidArgumentError("sealed data does not authenticate");
    }
    ASSIGN_OR_RETURN(std::string plain, Crypt(/*encrypt=*/false, wrapped.substr(0, kAeadNonceSize),
                                              wrapped.substr(kAeadNonceSize), aad));
    return SecretBytes(std::move(plain));
  }

 private:
  // CKM_AES_GCM (PKCS#11 2.40 CK_GCM_PARAMS: the nonce is ours, 96 bits; a 128-bit tag appended
  // to the ciphertext).
  absl::StatusOr<std::string> Crypt(bool encrypt, absl::string_view nonce, absl::string_view in,
                                    absl::string_view aad) const {
    std::string iv(nonce), aad_copy(aad), input(in), output;
    CK_GCM_PARAMS params = {};
    params.pIv = reinterpret_cast<CK_BYTE*>(iv.data());
    params.ulIvLen = iv.size();
    params.ulIvBits = iv.size() * 8;
    params.pAAD = reinterpret_cast<CK_BYTE*>(aad_copy.data());
    params.ulAADLen = aad_copy.size();
    params.ulTagBits = kAeadTagSize * 8;
    CK_MECHANISM mechanism = {CKM_AES_GCM, &params, sizeof params};
    absl::Status s = impl_->Run(
        absl::StrCat(encrypt ? "wrapping" : "unwrapping", " with key object \"", label_, "\""),
        [&](CK_SESSION_HANDLE session) -> CK_RV {
          CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
          CK_RV rv = impl_->FindObject(session, CKO_SECRET_KEY, label_, &key);
          if (rv != CKR_OK) return rv;
          auto* data = reinterpret_cast<CK_BYTE*>(input.data());
          // Sized generously rather than asked: a GCM size query would need a second init.
          output.assign(input.size() + kAeadTagSize, '\0');
          CK_ULONG size = output.size();
          auto* out = reinterpret_cast<CK_BYTE*>(output.data());
          if (encrypt) {
            rv = impl_->f()->C_EncryptInit(session, &mechanism, key);
            if (rv == CKR_OK) rv = impl_->f()->C_Encrypt(session, data, input.size(), out, &size);
          } else {
            rv = impl_->f()->C_DecryptInit(session, &mechanism, key);
            if (rv == CKR_OK) rv = impl_->f()->C_Decrypt(session, data, input.size(), out, &size);
          }
          output.resize(rv == CKR_OK ? size : 0);
          return rv;
        });
    WipeString(&input);
    if (!s.ok()) {
      WipeString(&output);
      // SoftHSM2 answers a wrong tag with CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED: on decrypt
      // anything but a lost connection means the data does not authenticate.
      if (!encrypt && absl::IsInternal(s)) {
        return absl::InvalidArgumentError("sealed data does not authenticate");
      }
      return s;
    }
    return output;
  }

  Impl* const impl_;
  const std::string label_;
};

// ---------------------------------------------------------------------------------------------
// Pkcs11Token

Pkcs11Token::Pkcs11Token(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  name_ = impl_->name();
}

Pkcs11Token::~Pkcs11Token() = default;

absl::StatusOr<std::unique_ptr<Pkcs11Token>> Pkcs11Token::Open(Pkcs11Options options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  RETURN_IF_ERROR(impl->Load());
  return std::unique_ptr<Pkcs11Token>(new Pkcs11Token(std::move(impl)));
}

absl::StatusOr<TokenKeyPair> Pkcs11Token::GenerateKeyPair(KeyAlgorithm algorithm) {
  const std::string id = absl::StrCat(kObjectIdPrefix, absl::BytesToHexString(RandomBytes(16)));
  const bool ec = algorithm == KeyAlgorithm::kEcdsaP256 || algorithm == KeyAlgorithm::kEcdsaP384;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY, private_class = CKO_PRIVATE_KEY;
  CK_KEY_TYPE key_type = ec ? CKK_EC : CKK_RSA;
  CK_ULONG bits = algorithm == KeyAlgorithm::kRsa4096   ? 4096
                  : algorithm == KeyAlgorithm::kRsa3072 ? 3072
                                                        : 2048;
  const unsigned char exponent[] = {0x01, 0x00, 0x01};
  std::vector<CK_ATTRIBUTE> pub = {
      Attribute(CKA_CLASS, &public_class, sizeof public_class).get(),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof key_type).get(),
      Attribute(CKA_TOKEN, &yes, sizeof yes).get(),
      Attribute(CKA_PRIVATE, &no, sizeof no).get(),
      Attribute(CKA_VERIFY, &yes, sizeof yes).get(),
      Attribute(CKA_ID, id.data(), id.size()).get(),
      Attribute(CKA_LABEL, id.data(), id.size()).get(),
  };
  if (algorithm == KeyAlgorithm::kEcdsaP256) {
    pub.push_back(Attribute(CKA_EC_PARAMS, kP256Params, sizeof kP256Params).get());
  } else if (algorithm == KeyAlgorithm::kEcdsaP384) {
    pub.push_back(Attribute(CKA_EC_PARAMS, kP384Params, sizeof kP384Params).get());
  } else {
    pub.push_back(Attribute(CKA_MODULUS_BITS, &bits, sizeof bits).get());
    pub.push_back(Attribute(CKA_PUBLIC_EXPONENT, exponent, sizeof exponent).get());
  }
  std::vector<CK_ATTRIBUTE> priv = KeptInToken(private_class, key_type, id);
  priv.push_back(Attribute(CKA_SIGN, &yes, sizeof yes).get());
  priv.push_back(Attribute(CKA_DECRYPT, &no, sizeof no).get());
  priv.push_back(Attribute(CKA_DERIVE, &no, sizeof no).get());
  CK_MECHANISM mechanism = {ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  std::string point, modulus, public_exponent;
  RETURN_IF_ERROR(impl_->Run(absl::StrCat("generating ", KeyAlgorithmName(algorithm), " key pair"),
                             [&](CK_SESSION_HANDLE session) -> CK_RV {
    CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE, private_key = CK_INVALID_HANDLE;
    CK_RV rv = impl_->f()->C_GenerateKeyPair(session, &mechanism, pub.data(), pub.size(),
                                             priv.data(), priv.size(), &public_key, &private_key);
    if (rv != CKR_OK) return rv;
    if (ec) return impl_->GetAttribute(session, public_key, CKA_EC_POINT, &point);
    rv = impl_->GetAttribute(session, public_key, CKA_MODULUS, &modulus);
    if (rv != CKR_OK) return rv;
    return impl_->GetAttribute(session, public_key, CKA_PUBLIC_EXPONENT, &public_exponent);
  }));
  absl::StatusOr<PublicKey> key = absl::InternalError("unreachable");
  if (ec) {
    ASSIGN_OR_RETURN(std::string raw, UnwrapEcPoint(point));
    key = PublicKey::FromEcPoint(algorithm, raw);
  } else {
    key = PublicKey::FromRsa(modulus, public_exponent);
  }
  if (!key.ok()) {
    DestroyKeyPair(id).IgnoreError();
    return key.status();
  }
  return TokenKeyPair{id, *std::move(key)};
}

absl::StatusOr<std::unique_ptr<Signer>> Pkcs11Token::LoadSigner(absl::string_view object_id) {
  std::string point, params, modulus, exponent;
  CK_KEY_TYPE key_type = 0;
  RETURN_IF_ERROR(impl_->Run(absl::StrCat("reading key object \"", object_id, "\""),
                             [&](CK_SESSION_HANDLE session) -> CK_RV {
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    // The private key must be there to sign; the public one carries what the JWK needs.
    CK_RV rv = impl_->FindObject(session, CKO_PRIVATE_KEY, object_id, &key);
    if (rv == CKR_OK) rv = impl_->FindObject(session, CKO_PUBLIC_KEY, object_id, &key);
    if (rv != CKR_OK) return rv;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &key_type, sizeof key_type};
    rv = impl_->f()->C_GetAttributeValue(session, key, &a, 1);
    if (rv != CKR_OK) return rv;
    if (key_type == CKK_EC) {
      rv = impl_->GetAttribute(session, key, CKA_EC_PARAMS, &params);
      return rv != CKR_OK ? rv : impl_->GetAttribute(session, key, CKA_EC_POINT, &point);
    }
    rv = impl_->GetAttribute(session, key, CKA_MODULUS, &modulus);
    return rv != CKR_OK ? rv : impl_->GetAttribute(session, key, CKA_PUBLIC_EXPONENT, &exponent);
  }));
  absl::StatusOr<PublicKey> key = absl::InternalError("unreachable");
  if (key_type == CKK_EC) {
    const std::string p256(reinterpret_cast<const char*>(kP256Params), sizeof kP256Params);
    const std::string p384(reinterpret_cast<const char*>(kP384Params), sizeof kP384Params);
    if (params != p256 && params != p384) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key object \"", object_id, "\" in ", name_, " is on a curve other than P-256 or P-384"));
    }
    ASSIGN_OR_RETURN(std::string raw, UnwrapEcPoint(point));
    key = PublicKey::FromEcPoint(
        params == p256 ? KeyAlgorithm::kEcdsaP256 : KeyAlgorithm::kEcdsaP384, raw);
  } else if (key_type == CKK_RSA) {
    key = PublicKey::FromRsa(modulus, exponent);
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("key object \"", object_id, "\" in ", name_, " is neither EC nor RSA"));
  }
  RETURN_IF_ERROR(key.status());
  return std::unique_ptr<Signer>(
      new TokenSigner(impl_.get(), std::string(object_id), *std::move(key)));
}

absl::Status Pkcs11Token::DestroyKeyPair(absl::string_view object_id) {
  RETURN_IF_ERROR(impl_->Run(absl::StrCat("destroying key object \"", object_id, "\""),
                             [&](CK_SESSION_HANDLE session) -> CK_RV {
    std::vector<CK_OBJECT_HANDLE> objects;
    CK_RV rv = impl_->FindAll(session, 0, object_id, &objects);
    for (size_t i = 0; rv == CKR_OK && i < objects.size(); ++i) {
      rv = impl_->f()->C_DestroyObject(session, objects[i]);
    }
    return rv;
  }));
  impl_->ForgetHandles();
  return absl::OkStatus();
}

absl::Status Pkcs11Token::GenerateAesKey(absl::string_view label) {
  CK_BBOOL yes = CK_TRUE;
  CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_ULONG size = kAeadKeySize;
  std::vector<CK_ATTRIBUTE> attributes = KeptInToken(secret_class, key_type, label);
  attributes.push_back(Attribute(CKA_VALUE_LEN, &size, sizeof size).get());
  attributes.push_back(Attribute(CKA_ENCRYPT, &yes, sizeof yes).get());
  attributes.push_back(Attribute(CKA_DECRYPT, &yes, sizeof yes).get());
  bool exists = false;
  RETURN_IF_ERROR(impl_->Run(absl::StrCat("generating AES key \"", label, "\""),
                             [&](CK_SESSION_HANDLE session) -> CK_RV {
    std::vector<CK_OBJECT_HANDLE> found;
    CK_RV rv = impl_->FindAll(session, CKO_SECRET_KEY, label, &found);
    if (rv != CKR_OK) return rv;
    if (!found.empty()) {
      exists = true;
      return CKR_OK;
    }
    CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    return impl_->f()->C_GenerateKey(session, &mechanism, attributes.data(), attributes.size(),
                                     &key);
  }));
  if (exists) {
    return absl::AlreadyExistsError(
        absl::StrCat("", name_, " already has a secret key labelled \"", label, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KeyEncryptionKey>> Pkcs11Token::LoadAesKey(
    absl::string_view label) {
  if (!impl_->Offers(CKM_AES_GCM)) {
    return absl::UnimplementedError(absl::StrCat(name_, " does not offer CKM_AES_GCM"));
  }
  RETURN_IF_ERROR(impl_->Run(absl::StrCat("finding AES key object \"", label, "\""),
                             [&](CK_SESSION_HANDLE session) -> CK_RV {
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    return impl_->FindObject(session, CKO_SECRET_KEY, label, &key);
  }));
  return std::unique_ptr<KeyEncryptionKey>(new TokenKek(impl_.get(), std::string(label)));
}

absl::StatusOr<std::vector<TokenKeyObject>> Pkcs11Token::ListKeyObjects() {
  std::vector<TokenKeyObject> out;
  RETURN_IF_ERROR(impl_->Run("listing key objects", [&](CK_SESSION_HANDLE session) -> CK_RV {
    out.clear();
    for (CK_OBJECT_CLASS object_class : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      std::vector<CK_OBJECT_HANDLE> objects;
      CK_RV rv = impl_->FindAll(session, object_class, "", &objects);
      if (rv != CKR_OK) return rv;
      for (CK_OBJECT_HANDLE object : objects) {
        TokenKeyObject o;
        o.secret_key = object_class == CKO_SECRET_KEY;
        impl_->GetAttribute(session, object, CKA_ID, &o.object_id);
        impl_->GetAttribute(session, object, CKA_LABEL, &o.label);
        rv = impl_->GetBool(session, object, CKA_SENSITIVE, &o.sensitive);
        if (rv == CKR_OK) rv = impl_->GetBool(session, object, CKA_EXTRACTABLE, &o.extractable);
        if (rv == CKR_OK) {
          rv = impl_->GetBool(session, object, CKA_ALWAYS_SENSITIVE, &o.always_sensitive);
        }
        if (rv == CKR_OK) {
          rv = impl_->GetBool(session, object, CKA_NEVER_EXTRACTABLE, &o.never_extractable);
        }
        if (rv != CKR_OK) return rv;
        // Ask for the secret itself: a sensitive key answers CKR_ATTRIBUTE_SENSITIVE.
        std::string value;
        CK_RV read = impl_->GetAttribute(session, object, CKA_VALUE, &value);
        if (read != CKR_OK) {
          read = impl_->GetAttribute(session, object, CKA_PRIVATE_EXPONENT, &value);
        }
        o.value_readable = read == CKR_OK && !value.empty();
        WipeString(&value);
        out.push_back(std::move(o));
      }
    }
    return CKR_OK;
  }));
  return out;
}

absl::Status Pkcs11Token::SimulateRestartForTesting(bool finalize) {
  return impl_->SimulateRestart(finalize);
}

}  // namespace acmevault::crypto
