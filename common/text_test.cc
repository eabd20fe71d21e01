#include "common/text.h"

#include <string>

#include "gtest/gtest.h"

namespace acmevault {
namespace {

TEST(ClipUtf8, KeepsShortTextAndCutsLongTextOnACharacterBoundary) {
  EXPECT_EQ(ClipUtf8("not found", 20), "not found");
  EXPECT_EQ(ClipUtf8("ab\xC3\xA9", 4), "ab\xC3\xA9");
  EXPECT_EQ(ClipUtf8("ab\xC3\xA9", 3), "ab...");
  EXPECT_EQ(ClipUtf8(std::string(1000, 'x'), 100), std::string(100, 'x') + "...");
}

TEST(ClipUtf8, ReplacesIllFormedUtf8AndControlCharacters) {
  // A stray byte, a newline, a surrogate (ED A0 80), an overlong '/' (C0 AF), past U+10FFFF
  // (F4 90 80 80), a NUL, a cut-off sequence at the end.
  EXPECT_EQ(ClipUtf8(std::string("a\xFF" "b\nc\xED\xA0\x80" "d\xC0\xAF" "e\xF4\x90\x80\x80") +
                         std::string(1, '\0') + "\xE2\x82",
                     100),
            "a?b?c???d??e?????" "??");
  EXPECT_EQ(ClipUtf8("\xF0\x9F\x94\x91 ok", 100), "\xF0\x9F\x94\x91 ok");  // 4 bytes, valid
}

}  // namespace
}  // namespace acmevault
