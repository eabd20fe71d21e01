#include "service/account_keys.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "crypto/jwk.h"
#include "service/log.h"
#include "service/required.h"

namespace acmevault::service {

storage::PublicKeyInfo KeyInfo(const crypto::PublicKey& key) {
  return {crypto::PublicJwk(key).dump(), crypto::Thumbprint(key)};
}

absl::StatusOr<std::unique_ptr<AccountKeys>> AccountKeys::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators(
      "AccountKeys", {{"accounts", options.accounts}, {"clock", options.clock}}));
  return std::unique_ptr<AccountKeys>(new AccountKeys(std::move(options)));
}

absl::Status AccountKeys::NoToken() const {
  return absl::FailedPreconditionError(
      "the tenant's account keys live in a PKCS#11 token (policy key_storage PKCS11), and this "
      "replica has none configured (ServerConfig.pkcs11)");
}

absl::StatusOr<NewAccountKey> AccountKeys::Generate(storage::KeyStorage storage,
                                                    crypto::KeyAlgorithm algorithm) {
  if (storage == storage::KeyStorage::kVault) {
    ASSIGN_OR_RETURN(crypto::PrivateKey generated, crypto::PrivateKey::Generate(algorithm));
    auto key = std::make_unique<crypto::PrivateKey>(std::move(generated));
    storage::AccountKeyMaterial material(*key);
    storage::PublicKeyInfo info = KeyInfo(key->public_key());
    return NewAccountKey{std::move(key), std::move(material), std::move(info)};
  }
  if (options_.token == nullptr) return NoToken();
  ASSIGN_OR_RETURN(crypto::TokenKeyPair pair, options_.token->GenerateKeyPair(algorithm));
  auto signer = options_.token->LoadSigner(pair.object_id);
  if (!signer.ok()) {
    options_.token->DestroyKeyPair(pair.object_id).IgnoreError();
    return signer.status();
  }
  return NewAccountKey{*std::move(signer),
                       storage::AccountKeyMaterial::InToken(pair.object_id, algorithm),
                       KeyInfo(pair.public_key)};
}

void AccountKeys::Discard(const NewAccountKey& key) {
  if (key.material.token_object.empty() || options_.token == nullptr) return;
  absl::Status s = options_.token->DestroyKeyPair(key.material.token_object);
  if (!s.ok()) {
    Log(LogLevel::kWarning, "could not destroy an unused token key; it holds no account's key",
        {{"object", key.material.token_object}, {"error", std::string(s.message())}});
  }
}

absl::StatusOr<SigningKey> AccountKeys::Open(storage::UnsealedAccountKey key) {
  SigningKey out;
  if (key.private_key.has_value()) {
    out.signer = std::make_unique<crypto::PrivateKey>(*std::move(key.private_key));
  } else {
    if (options_.token == nullptr) return NoToken();
    ASSIGN_OR_RETURN(out.signer, options_.token->LoadSigner(key.info.token_object));
    // The row's public key is what the CA knows: a token object that answers with another key
    // (a token swapped under the same label) must not sign for this account.
    if (crypto::Thumbprint(out.signer->public_key()) != key.info.public_key.thumbprint) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key object \"", key.info.token_object, "\" in ", options_.token->name(),
          " holds another key than account key version ", key.info.version));
    }
  }
  out.info = std::move(key.info);
  return out;
}

absl::StatusOr<SigningKey> AccountKeys::Active(const storage::Scope& scope,
                                               storage::AccountId account,
                                               absl::string_view purpose) {
  ASSIGN_OR_RETURN(storage::UnsealedAccountKey key,
                   options_.accounts->GetActiveKey(scope, account, purpose));
  return Open(std::move(key));
}

absl::StatusOr<SigningKey> AccountKeys::Version(const storage::Scope& scope,
                                                storage::AccountId account, int version,
                                                absl::string_view purpose) {
  ASSIGN_OR_RETURN(storage::UnsealedAccountKey key,
                   options_.accounts->GetKey(scope, account, version, purpose));
  return Open(std::move(key));
}

absl::StatusOr<int> AccountKeys::DestroyRetiredKeys(const storage::Scope& scope) {
  if (options_.token == nullptr) return 0;
  const absl::Time cutoff = options_.clock->Now() - options_.destroy_grace;
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts,
                   options_.accounts->ListAccounts(scope));
  int destroyed = 0;
  // A rollover by a new account (AccountStore::ReplaceAccount) leaves the old account's row of
  // the key retired while the new account's row of the same token object is in service.
  std::set<std::string> in_service;
  std::vector<std::pair<storage::AccountId, std::vector<storage::AccountKey>>> all;
  for (const storage::Account& account : accounts) {
    ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys,
                     options_.accounts->ListKeys(scope, account.id));
    for (const storage::AccountKey& key : keys) {
      if (!key.token_object.empty() && (key.state == storage::KeyState::kActive ||
                                        key.state == storage::KeyState::kPending)) {
        in_service.insert(key.token_object);
      }
    }
    all.emplace_back(account.id, std::move(keys));
  }
  for (const auto& [account_id, keys] : all) {
    for (const storage::AccountKey& key : keys) {
      if (key.token_object.empty() || key.destroyed_at || in_service.count(key.token_object)) {
        continue;
      }
      std::optional<absl::Time> left;
      if (key.state == storage::KeyState::kRetired) left = key.retired_at;
      if (key.state == storage::KeyState::kCompromised) left = key.compromised_at;
      if (!left || *left > cutoff) continue;
      RETURN_IF_ERROR(options_.token->DestroyKeyPair(key.token_object));
      RETURN_IF_ERROR(options_.accounts->MarkKeyDestroyed(scope, account_id, key.version));
      ++destroyed;
    }
  }
  return destroyed;
}

}  // namespace acmevault::service
