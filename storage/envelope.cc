#include "storage/envelope.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "crypto/aead.h"

namespace acmevault::storage {
namespace {

std::string WrapAad(absl::string_view kek_id, absl::string_view context) {
  return absl::StrCat("acmevault/data-key/v1|", kek_id, "|", context);
}

std::string SealAad(absl::string_view context) {
  return absl::StrCat("acmevault/private-key/v1|", context);
}

absl::Status NotAuthentic(absl::string_view context) {
  return absl::DataLossError(absl::StrCat("sealed key of ", context, " does not authenticate"));
}

}  // namespace

std::string AccountKeyContext(TenantId tenant, AccountId account, int version) {
  return absl::StrCat("account-key|tenant=", tenant, "|account=", account, "|version=", version);
}

std::string CertificateKeyContext(TenantId tenant, CertificateId certificate) {
  return absl::StrCat("certificate-key|tenant=", tenant, "|cert=", certificate);
}

std::string OrderKeyContext(TenantId tenant, OrderId order) {
  return absl::StrCat("order-key|tenant=", tenant, "|order=", order);
}

std::string EabKeyContext(TenantId tenant, int64_t id) {
  return absl::StrCat("eab-key|tenant=", tenant, "|eab=", id);
}

absl::StatusOr<Envelope> Envelope::Create(KekSet keks) {
  if (keks.empty()) {
    return absl::FailedPreconditionError(
        "no key-encryption key configured: the vault never stores keys unencrypted");
  }
  return Envelope(std::move(keks));
}

absl::StatusOr<SealedKey> Envelope::Seal(absl::string_view plaintext,
                                         absl::string_view context) const {
  ASSIGN_OR_RETURN(crypto::SecretBytes data_key, crypto::RandomSecret(crypto::kAeadKeySize));
  SealedKey out;
  out.kek_id = keks_.current_id();
  ASSIGN_OR_RETURN(out.sealed_private_key,
                   crypto::Seal(data_key.view(), plaintext, SealAad(context)));
  ASSIGN_OR_RETURN(out.wrapped_data_key,
                   keks_.Find(out.kek_id)->Wrap(data_key.view(), WrapAad(out.kek_id, context)));
  return out;
}

absl::StatusOr<crypto::SecretBytes> Envelope::UnwrapDataKey(const SealedKey& sealed,
                                                            absl::string_view context) const {
  const crypto::KeyEncryptionKey* kek = keks_.Find(sealed.kek_id);
  if (kek == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sealed key of ", context, " is wrapped under key-encryption key \"",
                     sealed.kek_id, "\", which is not configured"));
  }
  auto data_key = kek->Unwrap(sealed.wrapped_data_key, WrapAad(sealed.kek_id, context));
  // A token KEK that is away (UNAVAILABLE) or gone (FAILED_PRECONDITION) says so; only a
  // refusal of the bytes is DATA_LOSS.
  if (absl::IsInvalidArgument(data_key.status())) return NotAuthentic(context);
  return data_key;
}

absl::StatusOr<crypto::SecretBytes> Envelope::Open(const SealedKey& sealed,
                                                   absl::string_view context) const {
  ASSIGN_OR_RETURN(crypto::SecretBytes data_key, UnwrapDataKey(sealed, context));
  auto plaintext = crypto::Open(data_key.view(), sealed.sealed_private_key, SealAad(context));
  if (!plaintext.ok()) return NotAuthentic(context);
  return plaintext;
}

absl::StatusOr<SealedKey> Envelope::Rewrap(const SealedKey& sealed,
                                           absl::string_view context) const {
  ASSIGN_OR_RETURN(crypto::SecretBytes data_key, UnwrapDataKey(sealed, context));
  if (sealed.kek_id == keks_.current_id()) return sealed;
  SealedKey out;
  out.kek_id = keks_.current_id();
  out.sealed_private_key = sealed.sealed_private_key;
  ASSIGN_OR_RETURN(out.wrapped_data_key,
                   keks_.Find(out.kek_id)->Wrap(data_key.view(), WrapAad(out.kek_id, context)));
  return out;
}

absl::StatusOr<SealedKey> Envelope::SealPrivateKey(const crypto::PrivateKey& key,
                                                   absl::string_view context) const {
  crypto::SecretBytes der = key.ToPkcs8Der();
  if (der.empty()) {
    return absl::InternalError(absl::StrCat("could not encode the private key of ", context));
  }
  return Seal(der.view(), context);
}

absl::StatusOr<crypto::PrivateKey> Envelope::OpenPrivateKey(const SealedKey& sealed,
                                                            absl::string_view context) const {
  ASSIGN_OR_RETURN(crypto::SecretBytes der, Open(sealed, context));
  return crypto::PrivateKey::FromSealedDer(der.view());
}

}  // namespace acmevault::storage
