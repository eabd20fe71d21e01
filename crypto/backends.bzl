"""Builds crypto libraries and tests once per TLS library (OpenSSL 3 and BoringSSL).

crypto_cc_library(name, crypto_deps, ...) makes `name` (OpenSSL) and `name_boringssl`; each
`crypto_deps` label is suffixed the same way, so the two variants never mix in one binary.
Both define OPENSSL_SUPPRESS_DEPRECATED: a few calls (EVP_PKEY_get0_EC_KEY, ...) are deprecated in
OpenSSL 3 but are the only spelling BoringSSL shares, and the define must precede every include.
crypto_cc_test does the same for tests and defines ACMEVAULT_EXPECT_BORINGSSL in the BoringSSL
variant, so a test can assert which library it really runs against.
"""

_BACKENDS = [
    ("", "@system//:openssl", []),
    ("_boringssl", "@system//:boringssl", ["ACMEVAULT_EXPECT_BORINGSSL"]),
]

def crypto_cc_library(name, crypto_deps = [], deps = [], **kwargs):
    for suffix, ssl, _ in _BACKENDS:
        native.cc_library(
            name = name + suffix,
            deps = [d + suffix for d in crypto_deps] + deps + ["@system//:absl", ssl],
            local_defines = ["OPENSSL_SUPPRESS_DEPRECATED"],
            **kwargs
        )

def crypto_cc_test(name, crypto_deps = [], deps = [], size = "small", **kwargs):
    for suffix, ssl, defines in _BACKENDS:
        native.cc_test(
            name = name + suffix,
            size = size,
            deps = [d + suffix for d in crypto_deps] + deps + [
                "@system//:absl",
                "@system//:gtest_main",
                "@system//:gmock",
                ssl,
            ],
            local_defines = defines + ["OPENSSL_SUPPRESS_DEPRECATED"],
            **kwargs
        )
